/* smtpd-data.c — the DATA phase: turns the client's dot-stuffed CRLF text into the LF-form
 * content the queue stores (docs/architecture.md), then hands the message to the committer.
 *
 * End of data: only a line "." that ended in CRLF and whose preceding line also ended in CRLF
 * (or that is the first line). With smtpd_forbid_bare_newline = normalize a line ending in a
 * bare LF is an ordinary line; a "." line next to a bare LF is content and is stored as "." (a
 * lone dot is not unstuffed, since the client did not stuff it), so \n.\n, \r\n.\n and \n.\r\n
 * can never end a message early (no SMTP smuggling). With = yes a bare LF is answered
 * "521 5.5.2 <host> Error: bare <LF> received" and the session ends, as Postfix 3.9 does (clients
 * in smtpd_forbid_bare_newline_exclusions get normalize; "no" is normalize too).
 *
 * Lines longer than line_length_limit are not an error in DATA (as in Postfix): they are
 * buffered in pieces and stored whole. The message size is counted as it arrives; beyond
 * message_size_limit the content is dropped but reading continues to the end, then 552 5.3.4.
 * The header section ends at the first empty line, at the first line that is not a header, or
 * once it exceeds header_size_limit (the rest is then body; no message is refused for it).
 * Missing From:/Date:/Message-ID: (local submissions) are added at the end of the headers, when
 * the header section ends, so the content is built in place and never copied whole.
 *
 * Memory: all sessions together buffer at most Server.data_budget bytes of content (the
 * allocations, including messages waiting for the commit thread). Over budget a message is read
 * to its end with its content discarded and answered "452 4.3.1 Insufficient system storage". */
#include <pwd.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/address.h"
#include "mail/rfc822.h"
#include "queue/queue.h"

#define MESSAGE_ID_LOG_MAX 256

#define DATA_BUDGET_MAX (1ULL << 30)

/* Half of the memory limit of our own cgroup (cgroup v2), or 0 when there is none. */
static uint64_t cgroup_memory_half(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        char line[4096], path[4200], val[64];

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                if (!startswith(line, "0::"))
                        continue;
                line[strcspn(line, "\n")] = '\0';
                snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
                _cleanup_fclose_ FILE *m = fopen(path, "re");
                if (!m || !fgets(val, sizeof(val), m))
                        return 0;
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(val, &end, 10);
                if (errno || end == val || (*end && *end != '\n'))
                        return 0;   /* "max": no limit */
                return v / 2;
        }
        return 0;
}

uint64_t data_budget_default(const char **ret_source) {
        const char *e = getenv("POSTERN_SMTPD_DATA_BUDGET");
        if (!isempty(e)) {
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(e, &end, 10);
                if (!errno && *end == '\0' && v > 0) {
                        *ret_source = "$POSTERN_SMTPD_DATA_BUDGET";
                        return v;
                }
                log_warning("Ignoring invalid POSTERN_SMTPD_DATA_BUDGET=%s", e);
        }
        uint64_t half = cgroup_memory_half();
        if (half > 0 && half < DATA_BUDGET_MAX) {
                *ret_source = "half of the cgroup's memory.max";
                return half;
        }
        *ret_source = "1 GiB default";
        return DATA_BUDGET_MAX;
}

/* Drops the content (oversized or over budget) and gives its bytes back to the budget. */
static void content_drop(DataState *d) {
        strbuf_done(&d->content);
        d->server->data_in_use -= d->charged;
        d->charged = 0;
}

void data_state_free(DataState *d) {
        if (!d)
                return;
        content_drop(d);
        strbuf_done(&d->carry);
        free(d->message_id);
        free(d->reject);
        free(d);
}

/* Frees a finished or abandoned commit job and returns its share of the data budget. */
void commit_job_free(CommitJob *j) {
        if (!j)
                return;
        if (j->message) {
                queue_message_done(j->message);
                free(j->message);
        }
        queue_recipients_free(j->rcpts, j->n_rcpts);
        free(j->content);
        if (j->server)
                j->server->data_in_use -= j->charged;
        free(j);
}

/* Appends to the content within the global data budget. The budget is charged with the
 * allocation (strbuf doubles its capacity, mirrored here), so the sum over all sessions bounds
 * what smtpd really holds. Over budget (or out of memory) the content is dropped and the
 * message is answered 452 4.3.1 at its end; the rest of it is still read and counted. */
static void content_add(Session *s, const void *p, size_t n) {
        DataState *d = s->tx.data;
        Server *srv = d->server;

        if (d->too_big || d->no_storage)
                return;
        size_t need = d->content.len + n + 1, cap = d->content.cap;
        if (need > cap) {
                cap = cap ? cap : 256;
                while (cap < need && cap <= SIZE_MAX / 2)
                        cap *= 2;
        }
        uint64_t extra = cap - d->charged;
        bool fits = srv->data_in_use + extra <= srv->data_budget;
        if (!fits || strbuf_append(&d->content, p, n) < 0) {
                if (fits)
                        log_oom();
                else
                        log_warning("%s: message data budget of %llu bytes exhausted; discarding the content "
                                    "from %s, answering 452 4.3.1", s->tx.queue_id,
                                    (unsigned long long) srv->data_budget, s->client.id_text);
                d->no_storage = true;
                content_drop(d);
                return;
        }
        srv->data_in_use += d->content.cap - d->charged;
        d->charged = d->content.cap;
}

void data_content_add(Session *s, const void *p, size_t n) {
        content_add(s, p, n);
}

/* The "with" word of our Received: header (RFC 3848): SMTP, ESMTP or UTF8SMTP (RFC 6531), then
 * S under TLS and A after AUTH. */
static const char *received_protocol(Session *s, char *buf, size_t n) {
        snprintf(buf, n, "%s%s%s", s->tx.smtputf8 ? "UTF8SMTP" : s->client.esmtp ? "ESMTP" : "SMTP",
                 s->client.tls_active ? "S" : "", s->client.sasl_username ? "A" : "");
        return buf;
}

int data_begin(Session *s) {
        _cleanup_strbuf_ StrBuf rcvd = STRBUF_INIT;
        DataState *d = calloc(1, sizeof(DataState));
        char date[128], proto[16];
        int r;

        if (!d)
                return -ENOMEM;
        d->server = s->server;
        d->in_headers = true;
        d->prev_crlf = true;
        rfc822_date(time(NULL), date, sizeof(date));

        if (s->listener->kind == LISTENER_SUBMIT)
                r = strbuf_printf(&rcvd, "Received: by %s (Postern, from userid %ld)\n\tid %s; %s\n",
                                  s->settings->myhostname, (long) (int) s->client.uid, s->tx.queue_id, date);
        else {
                SmtpdClientView v = smtpd_client_view(s);   /* XFORWARD's client, if any */
                r = strbuf_printf(&rcvd, "Received: from %s (%s [%s%s])", v.helo ? v.helo : v.name, v.name,
                                  v.ipv6 ? "IPv6:" : "", v.addr);
                if (r >= 0)
                        r = smtpd_tls_received_clause(s, &rcvd);   /* (using TLSv1.3 with cipher ...) */
                if (r >= 0 && s->client.sasl_username && s->settings->sasl_authenticated_header)
                        r = strbuf_printf(&rcvd, "\n\t(Authenticated sender: %s)", s->client.sasl_username);
                if (r >= 0)
                        r = strbuf_printf(&rcvd, "\n\tby %s (Postern) with %s id %s", s->settings->myhostname,
                                          received_protocol(s, proto, sizeof(proto)), s->tx.queue_id);
                if (r >= 0 && s->tx.n_rcpts == 1)
                        r = strbuf_printf(&rcvd, "\n\tfor <%s>", s->tx.rcpts[0].address);
                if (r >= 0)
                        r = strbuf_printf(&rcvd, "; %s\n", date);
        }
        if (r < 0) {
                free(d);
                return r;
        }
        data_state_free(s->tx.data);
        s->tx.data = d;
        /* Which header addresses are rewritten (local_header_rewrite_clients): decided once. */
        r = smtpd_rewrite_header_mode(s);
        if (r < 0 && !(d->reject = strdup("451 4.3.0 Error: queue file write error")))
                d->out_of_memory = true;
        d->hdr_rewrite = r < 0 ? REWRITE_HEADERS_NONE : r;
        /* Through smtpd_proxy_filter the message is queued by the listener the filter relays
         * it to, whose content checks and rewriting apply (as Postfix's cleanup does there). */
        d->proxied = smtpd_proxy_active(s);
        if (d->proxied)
                d->hdr_rewrite = REWRITE_HEADERS_NONE;
        /* PREPEND headers decided before DATA (access(5), a policy server such as postgrey's
         * X-Greylist:) go above our Received:, as Postfix's smtpd writes them; our Received: is
         * the first header the content checks see. */
        if (s->tx.actions.prepend.len > 0) {
                content_add(s, s->tx.actions.prepend.data, s->tx.actions.prepend.len);
                strbuf_reset(&s->tx.actions.prepend);
        }
        d->rcvd_start = d->content.len;
        cleanup_header_begin(s);
        content_add(s, rcvd.data, rcvd.len);
        cleanup_header_end(s);
        return 0;
}

static void note_header(DataState *d, const char *p, size_t n) {
        const char *colon = memchr(p, ':', n);
        size_t nl = colon ? (size_t) (colon - p) : 0;

        /* "Name :" with space before the colon is obsolete syntax but still a header. */
        while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
                nl--;
        if (!colon || nl == 0 || !rfc822_header_name_valid(p, nl)) {
                d->in_headers = false;   /* the body starts here, without an empty line */
                return;
        }
        d->seen_header = true;
        if (nl == 4 && strncasecmp(p, "From", 4) == 0)
                d->has_from = true;
        else if (nl == 4 && strncasecmp(p, "Date", 4) == 0)
                d->has_date = true;
        else if (nl == 10 && strncasecmp(p, "Message-ID", 10) == 0) {
                d->has_message_id = true;
                if (!d->message_id) {
                        const char *v = colon + 1, *end = p + n;
                        while (v < end && (*v == ' ' || *v == '\t'))
                                v++;
                        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                                end--;
                        size_t vl = MIN((size_t) (end - v), (size_t) MESSAGE_ID_LOG_MAX);
                        d->message_id = strndup(v, vl);
                        for (char *c = d->message_id; c && *c; c++)
                                if ((unsigned char) *c < 0x20 || (unsigned char) *c == 0x7f)
                                        *c = '?';
                }
        }
}

static int add_missing_headers(Session *s, bool at_end);

/* One line (or a piece of an overlong one when partial) without its line end and without
 * dot-stuffing: the content processing DATA and BDAT share. */
void data_content_line(Session *s, const char *p, size_t n, bool partial) {
        DataState *d = s->tx.data;
        bool at_start = !d->mid_line;
        uint64_t limit = s->settings->message_size_limit;

        d->mid_line = partial;
        d->bytes += n + (partial ? 0 : 1);
        if (limit && d->bytes > limit && !d->too_big) {
                d->too_big = true;
                content_drop(d);
        }
        if (d->too_big || d->no_storage)
                return;   /* refused at the end; only the size is still counted */

        bool separator = false;   /* the empty line that ends the header section */
        if (d->in_headers) {
                d->header_bytes += n + (partial ? 0 : 1);
                if (at_start) {
                        bool folded = n > 0 && (p[0] == ' ' || p[0] == '\t') && d->seen_header &&
                                d->header_bytes <= s->settings->header_size_limit;
                        if (!folded)
                                cleanup_header_end(s);   /* the previous logical header is complete */
                        if (d->header_bytes > s->settings->header_size_limit)
                                d->in_headers = false;
                        else if (n == 0) {
                                d->in_headers = false;
                                d->blank_after_headers = true;
                                separator = true;
                        } else if ((p[0] == ' ' || p[0] == '\t') && d->seen_header)
                                ;   /* folded continuation */
                        else
                                note_header(d, p, n);
                        if (d->in_headers && !partial && s->tx.smtputf8 && !utf8_is_valid(p, n))
                                d->bad_utf8_header = true;   /* RFC 6532 headers must be UTF-8 */
                        if (!d->in_headers) {
                                /* The header section ends here: what Postern adds goes in now,
                                 * so the content is built in place (never copied). */
                                d->hdr_end = d->content.len;
                                if (add_missing_headers(s, false) < 0) {
                                        log_oom();
                                        d->no_storage = true;
                                        content_drop(d);
                                        return;
                                }
                        } else if (!folded)
                                cleanup_header_begin(s);
                }
        }
        /* body_checks see complete lines; pieces of an overlong line are stored unchecked. */
        if (!d->in_headers && !separator && at_start && !partial && !cleanup_body_line(s, p, n))
                return;
        content_add(s, p, n);
        if (!partial)
                content_add(s, "\n", 1);
}

static int format_from(Session *s, StrBuf *out) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        const char *gecos = NULL, *user = NULL;

        if (getpwuid_r(s->client.uid, &pw, buf, sizeof(buf), &res) == 0 && res) {
                gecos = res->pw_gecos;
                user = res->pw_name;
        }
        _cleanup_free_ char *sender = NULL;
        if (!isempty(s->tx.sender))
                sender = strdup(s->tx.sender);
        else if (asprintf(&sender, "%s@%s", user ? user : "MAILER-DAEMON", s->settings->myorigin) < 0)
                sender = NULL;
        if (!sender)
                return -ENOMEM;

        size_t gl = gecos ? strcspn(gecos, ",") : 0;
        if (gl == 0)
                return strbuf_printf(out, "From: %s\n", sender);

        int r = strbuf_puts(out, "From: \"");
        for (size_t i = 0; r >= 0 && i < gl; i++) {
                char c = gecos[i];
                if ((unsigned char) c < 0x20)
                        continue;
                if (c == '"' || c == '\\')
                        r = strbuf_putc(out, '\\');
                if (r >= 0)
                        r = strbuf_putc(out, c);
        }
        if (r >= 0)
                r = strbuf_printf(out, "\" <%s>\n", sender);
        return r;
}

/* The From: Postern adds (the first line of add) is rewritten like one the client sent, so it
 * shows the sender as canonical maps and masquerading make it (as Postfix's cleanup adds the
 * rewritten sender). A table error refuses the message for now (451 4.3.0). */
static int rewrite_added_from(Session *s, StrBuf *add) {
        DataState *d = s->tx.data;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;

        if (add->len == 0 || add->data[add->len - 1] != '\n')
                return 0;
        int r = smtpd_rewrite_header(s, add->data, add->len - 1, &out);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                if (!d->reject && !(d->reject = strdup("451 4.3.0 Error: queue file write error")))
                        return -ENOMEM;
                return 0;
        }
        if (r == 0)
                return 0;
        strbuf_reset(add);
        r = strbuf_append(add, out.data, out.len);
        return r < 0 ? r : strbuf_putc(add, '\n');
}

/* Adds missing headers (local submissions) and, unless the message ends inside its header
 * section, the empty line that separates a body which started without one. Called once, when
 * the header section ends (its last byte is the last byte of the content so far). */
static int add_missing_headers(Session *s, bool at_end) {
        DataState *d = s->tx.data;
        _cleanup_strbuf_ StrBuf add = STRBUF_INIT;
        int r = 0;

        bool local = s->listener->kind == LISTENER_SUBMIT;
        if (local || s->settings->always_add_missing_headers) {
                if (!d->has_from && local)
                        r = format_from(s, &add);
                else if (!d->has_from)
                        r = isempty(s->tx.sender) ? strbuf_printf(&add, "From: MAILER-DAEMON@%s\n", s->settings->myorigin)
                                               : strbuf_printf(&add, "From: %s\n", s->tx.sender);
                if (r >= 0 && !d->has_from)
                        r = rewrite_added_from(s, &add);
                if (r >= 0 && !d->has_date) {
                        char date[128];
                        rfc822_date(time(NULL), date, sizeof(date));
                        r = strbuf_printf(&add, "Date: %s\n", date);
                }
                if (r >= 0 && !d->has_message_id) {
                        _cleanup_strbuf_ StrBuf id = STRBUF_INIT;
                        r = rfc822_message_id(s->tx.queue_id, s->settings->myhostname, &id);
                        if (r >= 0)
                                r = strbuf_printf(&add, "Message-ID: %s\n", strempty(id.data));
                        if (r >= 0 && !d->message_id)
                                d->message_id = strdup(strempty(id.data));
                }
                if (r >= 0)
                        r = cleanup_missing_to(s, &add);
        }
        if (r >= 0 && !at_end && !d->blank_after_headers)
                r = strbuf_putc(&add, '\n');
        if (r < 0)
                return r;
        if (add.len > 0)
                content_add(s, add.data, add.len);
        return 0;
}

static CommitJob *make_job(Session *s) {
        DataState *d = s->tx.data;
        CommitJob *j = calloc(1, sizeof(CommitJob));
        QueueMessage *m = calloc(1, sizeof(QueueMessage));
        QueueRecipient *rc = calloc(s->tx.n_rcpts, sizeof(QueueRecipient));
        bool fail = !j || !m || !rc;

        if (fail) {
                free(j);
                free(m);
                free(rc);
                return NULL;
        }
        j->message = m;
        j->rcpts = rc;
        j->n_rcpts = s->tx.n_rcpts;
        memcpy(j->queue_id, s->tx.queue_id, QUEUE_ID_MAX);
        memcpy(m->queue_id, s->tx.queue_id, QUEUE_ID_MAX);
        m->sender = strdup(strempty(s->tx.sender));
        m->arrival_usec = now_usec(CLOCK_REALTIME);
        m->size = d->content.len;
        bool local = s->listener->kind == LISTENER_SUBMIT;
        SmtpdClientView v = smtpd_client_view(s);   /* XFORWARD's client, if any */
        m->client_address = local ? NULL : strdup(v.addr);
        m->client_name = strdup(v.name);
        m->helo = v.helo ? strdup(v.helo) : NULL;
        m->protocol = strdup(local ? "LOCAL" : v.proto);
        m->body_type = s->tx.body_type ? strdup(s->tx.body_type) : NULL;
        m->smtputf8 = s->tx.smtputf8;
        m->requiretls = s->tx.requiretls;
        m->ret = s->tx.dsn_ret;
        m->envid = s->tx.dsn_envid ? strdup(s->tx.dsn_envid) : NULL;
        m->sasl_user = s->client.sasl_username ? strdup(s->client.sasl_username) : NULL;
        fail = !m->sender || (!local && !m->client_address) || !m->client_name ||
                (v.helo && !m->helo) || !m->protocol || (s->tx.body_type && !m->body_type) ||
                (s->tx.dsn_envid && !m->envid) || (s->client.sasl_username && !m->sasl_user);
        for (size_t i = 0; i < s->tx.n_rcpts; i++) {
                rc[i].address = strdup(s->tx.rcpts[i].address);
                rc[i].state = QUEUE_RCPT_PENDING;
                rc[i].notify = s->tx.rcpts[i].notify;
                rc[i].orcpt = s->tx.rcpts[i].orcpt ? strdup(s->tx.rcpts[i].orcpt) : NULL;
                fail = fail || !rc[i].address || (s->tx.rcpts[i].orcpt && !rc[i].orcpt);
        }
        j->cmd = d->bdat ? CMD_BDAT : CMD_DATA;
        j->server = s->server;
        j->content_len = d->content.len;
        j->content = strbuf_steal(&d->content);
        j->charged = d->charged;   /* the budget stays charged until the job is freed */
        d->charged = 0;
        if (fail || !j->content) {
                commit_job_free(j);
                return NULL;
        }
        return j;
}

static void data_end_checked(Session *s, const char *rcpt, bool accepted);

void data_finish(Session *s) {
        DataState *d = s->tx.data;
        LogFields f = { .queue_id = s->tx.queue_id, .client_address = s->client.addr[0] ? s->client.addr : NULL,
                        .sender = s->tx.sender };

        session_enter_command(s);
        if (d->too_big) {
                session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
                log_fields(LOG_INFO, &f, "%s: reject: END-OF-MESSAGE from %s: 552 5.3.4 Message size exceeds "
                           "fixed limit; from=<%s> proto=%s helo=<%s>", s->tx.queue_id, s->client.id_text,
                           strempty(s->tx.sender), s->client.esmtp ? "ESMTP" : "SMTP", strempty(s->client.helo));
                smtpd_transaction_reset(&s->tx);
                return;
        }
        if (d->bad_utf8_header) {
                session_reply(s, "554 5.6.0 Malformed UTF-8 in message header");
                log_fields(LOG_INFO, &f, "%s: reject: END-OF-MESSAGE from %s: 554 5.6.0 Malformed UTF-8 in "
                           "message header; from=<%s> proto=%s helo=<%s>", s->tx.queue_id, s->client.id_text,
                           strempty(s->tx.sender), s->client.esmtp ? "ESMTP" : "SMTP", strempty(s->client.helo));
                smtpd_transaction_reset(&s->tx);
                return;
        }
        if (d->in_headers) {
                cleanup_header_end(s);
                d->in_headers = false;
                d->hdr_end = d->content.len;
                if (add_missing_headers(s, true) < 0) {
                        d->no_storage = true;
                        content_drop(d);
                }
        }
        if (d->no_storage) {
                session_reply(s, "452 4.3.1 Insufficient system storage");
                log_fields(LOG_INFO, &f, "%s: reject: END-OF-MESSAGE from %s: 452 4.3.1 Insufficient system "
                           "storage; from=<%s> proto=%s helo=<%s>", s->tx.queue_id, s->client.id_text,
                           strempty(s->tx.sender), s->client.esmtp ? "ESMTP" : "SMTP", strempty(s->client.helo));
                smtpd_transaction_reset(&s->tx);
                return;
        }
        /* The content checks' decision (already logged where it was taken, as Postfix's cleanup
         * does: smtpd adds no second line). */
        _cleanup_free_ char *refusal = NULL;
        SmtpdHookOp *op = NULL;
        const SmtpdHookArgs args = { .settings = s->settings, .server = s->server, .stage = STAGE_EOD };
        if (smtpd_hook_cleanup.start(&s->client, &s->tx, &args, NULL, NULL, &op, &refusal) < 0 || refusal) {
                session_reply(s, "%s", refusal ? refusal : "451 4.3.0 Error: out of memory");
                smtpd_transaction_reset(&s->tx);
                return;
        }
        /* smtpd_end_of_data_restrictions: the commit goes on in data_end_checked(). */
        if (s->listener->kind == LISTENER_SUBMIT)
                data_end_checked(s, NULL, true);
        else
                smtpd_check_run(s, STAGE_EOD, s->tx.n_rcpts == 1 ? s->tx.rcpts[0].address : NULL, data_end_checked);
}

/* The filter's answer to the message (or, with speed_adjust, to the first of MAIL, RCPT and
 * DATA it refused) is the client's; logged as Postfix's proxy-accept / proxy-reject lines. */
static void data_end_proxied(Session *s, const char *reply, bool ok) {
        const char *rcpt = s->tx.n_rcpts == 1 ? s->tx.rcpts[0].address : "";
        LogFields f = { .queue_id = s->tx.queue_id[0] ? s->tx.queue_id : NULL,
                        .client_address = s->client.addr[0] ? s->client.addr : NULL, .sender = s->tx.sender,
                        .recipient = rcpt };
        _cleanup_free_ char *line = smtpd_proxy_log_text(reply);
        log_fields(LOG_INFO, &f, "%s: %s: END-OF-MESSAGE from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                   s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE", ok ? "proxy-accept" : "proxy-reject",
                   s->client.id_text, line ? line : reply, strempty(s->tx.sender), rcpt,
                   s->client.esmtp ? "ESMTP" : "SMTP", strempty(s->client.helo));
        command_reply_proxied(s, reply);
        if (ok)
                s->cmd_ok[s->tx.data && s->tx.data->bdat ? CMD_BDAT : CMD_DATA]++;
        smtpd_transaction_reset(&s->tx);
}

/* The end of a message for smtpd_proxy_filter: the rest of the transaction goes to the filter
 * (all of it with speed_adjust; BDAT's content also needs the DATA the client never sent). */
static void data_end_proxy(Session *s) {
        const MessageActions *a = &s->tx.actions;
        if (a->hold || a->discard || a->redirect || a->filter || a->bcc)
                log_warning("%s: HOLD, DISCARD, REDIRECT, FILTER and BCC actions do not apply to mail that goes "
                            "to smtpd_proxy_filter; ignored", s->tx.queue_id);
        bool all = s->settings->proxy_speed_adjust;
        size_t n = all ? s->tx.n_rcpts + 3 : 2, k = 0;
        _cleanup_free_ SmtpdProxyStep *steps = calloc(n, sizeof(SmtpdProxyStep));
        if (!steps) {
                log_oom();
                session_reply(s, "451 4.3.0 Error: out of memory");
                smtpd_transaction_reset(&s->tx);
                return;
        }
        if (all)
                steps[k++].kind = PROXY_STEP_MAIL;
        for (size_t i = 0; all && i < s->tx.n_rcpts; i++) {
                const SmtpdRecipient *r = &s->tx.rcpts[i];
                steps[k] = (SmtpdProxyStep) { .kind = PROXY_STEP_RCPT, .rcpt = { .address = strdup(r->address),
                                              .orcpt = r->orcpt ? strdup(r->orcpt) : NULL, .notify = r->notify } };
                if (!steps[k++].rcpt.address) {
                        for (size_t j = 0; j < k; j++)
                                smtpd_recipient_done(&steps[j].rcpt);
                        session_reply(s, "451 4.3.0 Error: out of memory");
                        smtpd_transaction_reset(&s->tx);
                        return;
                }
        }
        if (all || s->tx.bdat_active)
                steps[k++].kind = PROXY_STEP_DATA;
        steps[k++].kind = PROXY_STEP_MESSAGE;
        smtpd_proxy_run(s, steps, k, data_end_proxied);
}

static void data_end_milters(Session *s, const char *arg, const char *refusal);
static void data_end_expand(Session *s, CommitJob *j, int ra);

/* After smtpd_end_of_data_restrictions: the milters' end of message (headers, body, EOB). */
static void data_end_checked(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                smtpd_transaction_reset(&s->tx);
                return;
        }
        smtpd_milter_run(s, MILTER_STAGE_EOM, NULL, data_end_milters);
}

static void data_end_milters(Session *s, const char *arg, const char *milter_refusal) {
        DataState *d = s->tx.data;

        if (milter_refusal) {
                smtpd_milter_reply(s, milter_refusal);
                smtpd_transaction_reset(&s->tx);
                return;
        }
        if (d->proxied) {
                data_end_proxy(s);
                return;
        }
        /* milter_header_checks' actions join the message's others before they are applied */
        if (smtpd_milter_header_checks(s) < 0) {
                session_reply(s, "451 4.3.0 Error: queue file write error");
                smtpd_transaction_reset(&s->tx);
                return;
        }
        CommitJob *j = make_job(s);
        int ra = j ? commit_apply_actions(s, j) : -ENOMEM;
        /* The milters' edits (headers, body, recipients, sender) before the envelope is
         * rewritten, as Postfix's cleanup applies them. */
        if (ra == 0 && smtpd_milter_apply(s, j) < 0)
                ra = -ENOMEM;
        /* The envelope as it becomes queue records: canonical form, canonical maps and
         * masquerading (smtpd-rewrite.c); virtual alias expansion comes right after it. */
        table_memo_begin(smtpd_lookups(s), false);   /* the answers RCPT got, if any */
        int rw = ra >= 0 && ra != 1 ? smtpd_rewrite_envelope(s, j) : 0;
        (void) table_memo_end(smtpd_lookups(s));
        if (ra < 0 || rw < 0) {
                commit_job_free(j);
                j = NULL;
        }
        if (!j) {
                if (ra < 0 || rw == -ENOMEM)
                        log_oom();
                session_reply(s, "451 4.3.0 Error: queue file write error");
                smtpd_transaction_reset(&s->tx);
                return;
        }
        data_end_expand(s, j, ra);
}

static void expand_ready(void *userdata) {
        Session *s = userdata;
        DataState *d = s->tx.data;
        CommitJob *j = TAKE_PTR(d->expanding);
        session_resume(s, SESSION_RESUME_ONLY);
        data_end_expand(s, j, d->expanding_actions);
        if (!session_waiting(s) && session_phase(s) != PHASE_COMMIT)
                session_resume(s, SESSION_RESUME_INPUT);
}

static void expand_cancel(void *userdata) {
        Session *s = userdata;
        table_memo_unwait(s->tx.lookups);
        commit_job_free(TAKE_PTR(s->tx.data->expanding));
}

/* Virtual alias expansion: after canonical rewriting and masquerading (Postfix's cleanup order)
 * and the access actions, on the recipients as they will be queued; then the commit. A lookup in
 * a server table that has not answered yet (not one RCPT already asked for) parks the session
 * with the job, without a thread, and the expansion runs again when the answer is there. */
static void data_end_expand(Session *s, CommitJob *j, int ra) {
        DataState *d = s->tx.data;
        LogFields f = { .queue_id = s->tx.queue_id, .client_address = s->client.addr[0] ? s->client.addr : NULL,
                        .sender = s->tx.sender };
        const char *refusal = NULL;
        if (ra == 0) {
                TableMemo *memo = smtpd_lookups(s);
                int r;
                for (;;) {
                        table_memo_begin(memo, true);
                        r = smtpd_virtual_expand(s->settings, j, &refusal);
                        if (!table_memo_end(memo))
                                break;
                        if (table_memo_wait(memo, expand_ready, s)) {
                                d->expanding = j;
                                d->expanding_actions = ra;
                                session_wait(s, expand_cancel, s);
                                return;
                        }
                        /* answered already (the workers could not take the keys): run again */
                }
                if (r < 0) {
                        commit_job_free(j);
                        session_reply(s, "%s", refusal ? refusal : "451 4.3.0 Error: queue file write error");
                        smtpd_transaction_reset(&s->tx);
                        return;
                }
        }
        if (d->message_id)
                log_fields(LOG_INFO, &f, "%s: message-id=%s", s->tx.queue_id, d->message_id);
        if (ra == 1) {
                /* DISCARD: the client is told it was queued; nothing is stored. */
                s->cmd_ok[j->cmd]++;
                commit_job_free(j);
                session_reply(s, "250 2.0.0 Ok: queued as %s", s->tx.queue_id);
                smtpd_transaction_reset(&s->tx);
                return;
        }

        j->session = s;
        session_enter_commit(s, j);
        smtpd_transaction_reset(&s->tx);
        committer_submit(s->server->committer, j);
}

/* Removes the dot a DATA client stuffed before a line starting with "." (a lone "." that is
 * not the end of data stays: the client did not stuff it). */
static void dot_line(Session *s, const char *p, size_t n, bool partial) {
        if (!s->tx.data->mid_line && n > 1 && p[0] == '.') {
                p++;
                n--;
        }
        data_content_line(s, p, n, partial);
}

void data_process(Session *s) {
        DataState *d = s->tx.data;
        size_t pos = 0, chunk = MAX(s->settings->line_length_limit, (size_t) 2048);

        while (session_phase(s) == PHASE_DATA && pos < s->in.len) {
                const char *start = s->in.data + pos;
                size_t avail = s->in.len - pos;
                const char *nl = memchr(start, '\n', avail);

                if (!nl) {
                        if (avail <= chunk)
                                break;
                        /* An overlong line: store a piece now, keep a trailing CR for its LF. */
                        size_t take = avail - (start[avail - 1] == '\r' ? 1 : 0);
                        dot_line(s, start, take, true);
                        pos += take;
                        break;
                }
                size_t llen = (size_t) (nl - start);
                bool crlf = llen > 0 && start[llen - 1] == '\r';
                size_t clen = llen - (crlf ? 1 : 0);

                if (!crlf && s->client.bare_newline == BARE_NEWLINE_YES) {
                        session_reply(s, "521 5.5.2 %s Error: bare <LF> received", s->settings->myhostname);
                        log_info("disconnect: bare <LF> received from %s", s->client.id_text);
                        smtpd_transaction_reset(&s->tx);
                        strbuf_reset(&s->in);
                        session_close_after_flush(s);
                        return;
                }
                if (!d->mid_line && crlf && d->prev_crlf && clen == 1 && start[0] == '.') {
                        pos += llen + 1;
                        strbuf_consume(&s->in, pos);
                        data_finish(s);
                        return;
                }
                dot_line(s, start, clen, false);
                d->prev_crlf = crlf;
                pos += llen + 1;
        }
        strbuf_consume(&s->in, pos);
}
