/* smtp-session.c — one outbound SMTP or LMTP connection, driven by the event loop.
 *
 * connect (non-blocking, smtp_connect_timeout) → greeting → EHLO (HELO after a 5xx; LHLO for
 * LMTP) → [RSET when reused] MAIL FROM, RCPT TO..., DATA — all in one write when the server
 * offers PIPELINING, else one at a time — → the message, CRLF and dot-stuffed, with the final
 * "." in the same write → one reply (SMTP) or one per accepted recipient (LMTP). Every reply
 * that is not a success becomes the result of the recipients it concerns, in Postfix's wording
 * ("host X[Y] said: 550 5.1.1 ... (in reply to RCPT TO command)"); timeouts and lost
 * connections defer with 4.4.2 and say what was going on.
 *
 * After a transaction the connection is kept (Smtp.idle) for the next delivery to the same next
 * hop, for at most smtp_connection_cache_time_limit idle, smtp_connection_reuse_time_limit since
 * it was opened and smtp_connection_reuse_count_limit transactions. A reused connection starts
 * with RSET; if it turns out dead before anything was recorded, the delivery is retried once on
 * a fresh connection.
 *
 * TLS (smtp_tls_security_level, smtp_tls_policy_maps; settings in smtp-tls.c): after EHLO, when
 * the policy asks for it, STARTTLS; whatever the server sent behind its 220 in plaintext is
 * discarded (STARTTLS injection), the handshake runs in the loop (ST_TLS), the certificate is
 * checked, and EHLO is sent again so that only the keywords announced inside TLS count. With
 * smtp_tls_wrappermode the handshake comes first and the greeting is read inside TLS. At level
 * may a failed handshake is retried on the same address in plaintext, as Postfix does; the
 * cache key includes the TLS level so a plaintext connection never carries a "verify" delivery.
 *
 * SMTP AUTH (smtp_sasl_auth_enable; choices in smtp-sasl.c): after the EHLO that counts (inside
 * TLS when TLS was started), when the server offers AUTH and smtp_sasl_password_maps has a
 * username:password for the sender, the server's host name or the next hop, AUTH runs (ST_AUTH)
 * with the strongest mechanism the security options allow; a failure defers (or bounces, with
 * smtp_sasl_auth_soft_bounce = no) every recipient with "SASL authentication failed; ..." and
 * closes the connection. A cached connection stays logged in; with
 * smtp_sender_dependent_authentication the cache key carries the sender's login name.
 *
 * The smtp_* names above are those of the SMTP side; an LMTP session reads the same settings
 * from the lmtp_* twins, and a session for a master.cf transport reads that transport's variant
 * (cfg(): smtp_settings() by side and transport; smtp-settings.c). The cache key names the
 * transport, so a connection opened with one transport's settings never carries another's mail. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "log/log.h"
#include "mail/mime-downgrade.h"
#include "mail/xtext.h"
#include "metrics/metrics-catalog.h"
#include "metrics/metrics-store.h"
#include "sasl/sasl-mech-client.h"
#include "smtp-sts.h"
#include "tls/tlsrpt.h"
#include "smtp.h"
#include "tls/tls.h"

typedef enum SessionState {
        ST_CONNECT,
        ST_GREETING,
        ST_EHLO,
        ST_HELO,
        ST_STARTTLS,  /* STARTTLS sent, waiting for its 220 */
        ST_TLS,       /* TLS handshake in progress (after STARTTLS, or at connect in wrappermode) */
        ST_AUTH,      /* AUTH sent, waiting for 334 (a challenge) or the final reply */
        ST_TXN,       /* RSET/MAIL/RCPT/DATA replies */
        ST_DOT,       /* message sent, waiting for the end-of-data reply (replies for LMTP) */
        ST_IDLE,      /* in the cache */
} SessionState;

typedef enum CmdKind { CMD_RSET, CMD_XFORWARD, CMD_MAIL, CMD_RCPT, CMD_DATA } CmdKind;

typedef struct Cmd {
        CmdKind kind;
        size_t rcpt;         /* CMD_RCPT: index into d->rcpts */
        size_t start, end;   /* its bytes in SmtpSession.cmdtext */
} Cmd;

struct SmtpSession {
        Smtp *smtp;
        SmtpSession *next;           /* Smtp.idle */
        int fd;
        sd_event_source *io, *timer;
        SmtpTarget target;
        char relay[400];
        char *key;                   /* "smtp:<nexthop>" / "lmtp:<nexthop>" */
        bool lmtp;
        char *transport;             /* the deliveries' master.cf transport, or NULL */
        SessionState state;
        StrBuf in, out;
        SmtpReply reply;
        bool pipelining, dsn, eightbitmime, smtputf8;
        bool requiretls;             /* the server offers REQUIRETLS (RFC 8689) */
        bool xforward;               /* the server offers XFORWARD (Postfix's content filter extension) */
        uint64_t size_limit;         /* 0: none announced */
        unsigned uses;
        usec_t created;
        SmtpDelivery *d;
        bool reused;                 /* this transaction runs on a cached connection */
        const char *phase;           /* for "timed out while ..." / "lost connection ... while" */
        /* the current transaction */
        StrBuf cmdtext;
        Cmd *cmds;
        size_t n_cmds, sent, replied;
        bool mail_ok, rset_ok;
        size_t *accepted;            /* rcpt indexes in RCPT order (LMTP replies come in it) */
        size_t n_accepted, dot_replies;
        bool *alive;                 /* set to false when freed (reply handlers may free it) */
        /* TLS */
        SmtpTlsLevel level;          /* the delivery's policy, or none after a failed "may" handshake */
        bool wrapper;                /* smtp_tls_wrappermode: TLS from connect */
        bool starttls;               /* the last EHLO reply offered STARTTLS */
        TlsConn *tls;
        bool tls_up;                 /* handshake completed */
        int sts;                     /* MTA-STS mode applied to this address (STS_MODE_*) */
        TlsTrust trust;
        bool tlsrpt_done;            /* this session's TLSRPT result is counted (smtp-tlsrpt.c) */
        size_t target_index;         /* in d->targets, for the plaintext retry */
        /* SMTP AUTH */
        char *auth_mechs;            /* the mechanisms of the last EHLO's AUTH keyword, or NULL */
        SaslMechClient *sasl;        /* the exchange in progress */
        bool authenticated;
};

/* The settings of the session's side (smtp_* or lmtp_*). */
static SmtpSettings *cfg(const SmtpSession *s) {
        return smtp_settings(s->smtp, s->lmtp, s->transport);
}

/* The next hop as TLS policy, names and SNI see it: an LMTP "inet:host:port" without "inet:". */
static const char *tls_nexthop(const SmtpDelivery *d) {
        const char *p = d->lmtp ? startswith(d->nexthop, "inet:") : NULL;
        return p ? p : d->nexthop;
}

static void session_free(SmtpSession *s);
static void session_failed(SmtpSession *s, const char *fmt, ...) _printf_(2, 3);
static void transaction_start(SmtpSession *s);
static void after_hello(SmtpSession *s);

static void session_unlink_idle(SmtpSession *s) {
        for (SmtpSession **p = &s->smtp->idle; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        s->next = NULL;
}

static void session_free(SmtpSession *s) {
        if (!s)
                return;
        session_unlink_idle(s);
        if (s->alive)
                *s->alive = false;
        if (s->d)
                s->d->session = NULL;
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->timer);
        tls_conn_free(s->tls);
        safe_close(s->fd);
        strbuf_done(&s->in);
        strbuf_done(&s->out);
        strbuf_done(&s->cmdtext);
        smtp_reply_reset(&s->reply);
        free(s->cmds);
        free(s->accepted);
        free(s->key);
        free(s->transport);
        free(s->auth_mechs);
        sasl_mech_client_free(s->sasl);
        s->smtp->n_sessions--;
        free(s);
}

static void session_quit(SmtpSession *s) {
        /* Best effort, no waiting for the 221 (Postfix's smtp_skip_quit_response). */
        if (s->fd >= 0 && s->state != ST_CONNECT && s->out.len == 0) {
                if (!s->tls)
                        (void) !write(s->fd, "QUIT\r\n", 6);
                else if (s->tls_up) {
                        (void) tls_conn_write(s->tls, "QUIT\r\n", 6);
                        tls_conn_bye(s->tls);
                }
        }
        session_free(s);
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata);

static void set_timer(SmtpSession *s, usec_t timeout, const char *phase) {
        usec_t when = now_usec(CLOCK_MONOTONIC) + timeout;
        s->phase = phase;
        if (!s->timer) {
                if (sd_event_add_time(s->smtp->event, &s->timer, CLOCK_MONOTONIC, when, 0, on_timer, s) < 0)
                        log_warning("cannot arm a timer for %s", s->relay);
                return;
        }
        (void) sd_event_source_set_time(s->timer, when);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static void update_events(SmtpSession *s) {
        if (s->io)
                (void) sd_event_source_set_io_events(s->io, EPOLLIN | (s->out.len ? EPOLLOUT : 0));
}

static ssize_t io_write(SmtpSession *s, const void *p, size_t n) {
        if (s->tls)
                return s->tls_up ? tls_conn_write(s->tls, p, n) : -EPIPE;
        ssize_t k = write(s->fd, p, n);
        return k < 0 ? -errno : k;
}

static ssize_t io_read(SmtpSession *s, void *p, size_t n) {
        if (s->tls)
                return s->tls_up ? tls_conn_read(s->tls, p, n) : -EAGAIN;
        ssize_t k = read(s->fd, p, n);
        return k < 0 ? -errno : k;
}

static int flush(SmtpSession *s) {
        while (s->out.len > 0) {
                ssize_t k = io_write(s, s->out.data, s->out.len);
                if (k < 0) {
                        if (k == -EAGAIN || k == -EINTR)
                                break;
                        return (int) k;
                }
                strbuf_consume(&s->out, (size_t) k);
        }
        update_events(s);
        return 0;
}

static int send_text(SmtpSession *s, const char *p, size_t n) {
        return strbuf_append(&s->out, p, n);
}

/* --- results --- */

static void said(SmtpSession *s, bool accepted_only, const char *in_reply_to) {
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        smtp_all_result(s->d, accepted_only, dsn, "host %s said: %s (in reply to %s)", s->relay,
                        s->reply.text, in_reply_to);
}

/* Whether another address may still be tried for d: one is left, and fewer than
 * smtp_mx_session_limit transactions were started (sessions that never got that far, refused
 * connections and greetings, do not count, as in Postfix). */
static bool more_servers(const SmtpDelivery *d) {
        unsigned limit = smtp_settings(d->smtp, d->lmtp, d->transport)->mx_session_limit;
        return d->next_target < d->n_targets && (limit == 0 || d->sessions < limit);
}

/* The session is over for its delivery: finish it (when every recipient has a result) or move
 * on to the next address. */
static void delivery_release(SmtpSession *s, bool try_next) {
        SmtpDelivery *d = s->d;
        if (!d)
                return;
        s->d = NULL;
        d->session = NULL;
        bool open = false, soft = false;
        for (size_t i = 0; i < d->n_rcpts; i++)
                if (!d->rcpts[i].done) {
                        open = true;
                        soft = soft || d->rcpts[i].soft;
                }
        /* Connection-level failures move on to the next address; soft (4xx) results of a
         * transaction do so too, within smtp_mx_session_limit. */
        if (open && (try_next || soft) && more_servers(d)) {
                smtp_session_start(d);
                return;
        }
        smtp_delivery_finish(d);   /* the last server's 4xx is final there */
}

/* The connection broke (timeout, lost, protocol error): defer what has no result, or retry a
 * reused connection once on a fresh one. */
static void session_failed(SmtpSession *s, const char *fmt, ...) {
        SmtpDelivery *d = s->d;
        char diag[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);

        if (d && s->reused && !d->retried && !s->rset_ok && s->state == ST_TXN) {
                log_info("%s: cached connection to %s failed (%s); retrying on a new connection",
                         d->queue_id, s->relay, diag);
                d->retried = true;
                d->next_target = 0;
                s->d = NULL;
                d->session = NULL;
                session_free(s);
                smtp_session_start(d);
                return;
        }
        bool connect_phase = s->state == ST_CONNECT || s->state == ST_GREETING;
        if (d && s->state == ST_DOT)
                d->provisional = false;   /* the message went out: never again elsewhere */
        if (d && (!connect_phase || d->next_target >= d->n_targets))
                smtp_all_result(d, false, s->state == ST_CONNECT ? "4.4.1" : "4.4.2", "%s", diag);
        delivery_release(s, connect_phase);
        session_free(s);
}

/* --- the transaction --- */

static const char *cmd_phase(const Cmd *c) {
        switch (c->kind) {
        case CMD_RSET: return "sending RSET";
        case CMD_XFORWARD: return "sending XFORWARD";
        case CMD_MAIL: return "sending MAIL FROM";
        case CMD_RCPT: return "sending RCPT TO";
        default: return "sending DATA command";
        }
}

static usec_t cmd_timeout(const SmtpSession *s, const Cmd *c) {
        const SmtpSettings *st = cfg(s);
        switch (c->kind) {
        case CMD_RSET: return st->rset_timeout;
        case CMD_XFORWARD: return st->mail_timeout;
        case CMD_MAIL: return st->mail_timeout;
        case CMD_RCPT: return st->rcpt_timeout;
        default: return st->data_init_timeout;
        }
}

/* Sends the next command (without PIPELINING) or all of them (with). */
static void send_commands(SmtpSession *s) {
        while (s->sent < s->n_cmds && (s->pipelining || s->sent == s->replied)) {
                Cmd *c = &s->cmds[s->sent];
                if (c->kind == CMD_DATA && !s->pipelining && (!s->mail_ok || s->n_accepted == 0))
                        break;   /* nothing to send DATA for */
                if (send_text(s, s->cmdtext.data + c->start, c->end - c->start) < 0) {
                        session_failed(s, "out of memory while %s", cmd_phase(c));
                        return;
                }
                s->sent++;
        }
        if (s->replied < s->n_cmds)
                set_timer(s, cmd_timeout(s, &s->cmds[s->replied]), cmd_phase(&s->cmds[s->replied]));
        int r = flush(s);
        if (r < 0)
                session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
}

static bool reuse_allowed(const SmtpSession *s) {
        const SmtpSettings *st = cfg(s);
        if (st->reuse_count_limit > 0 && s->uses >= st->reuse_count_limit)
                return false;
        return now_usec(CLOCK_MONOTONIC) - s->created < st->reuse_time_limit;
}

/* The transaction is over: hand the results back, then cache or close the connection. */
static void transaction_end(SmtpSession *s, bool clean) {
        delivery_release(s, false);
        s->uses++;
        if (!clean || !reuse_allowed(s) || cfg(s)->cache_time_limit == 0) {
                session_quit(s);
                return;
        }
        s->state = ST_IDLE;
        s->reused = false;
        s->next = s->smtp->idle;
        s->smtp->idle = s;
        set_timer(s, cfg(s)->cache_time_limit, "idle");
}

static int append_body(StrBuf *out, const char *p, size_t n) {
        size_t i = 0;
        int r = 0;
        while (i < n && r >= 0) {
                const char *nl = memchr(p + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (p + i)) : n - i;
                if (p[i] == '.')
                        r = strbuf_putc(out, '.');
                if (r >= 0)
                        r = strbuf_append(out, p + i, len);
                if (r >= 0)
                        r = strbuf_append(out, "\r\n", 2);
                i += len + (nl ? 1 : 0);
        }
        if (r >= 0)
                r = strbuf_append(out, ".\r\n", 3);
        return r;
}

static void send_message(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (append_body(&s->out, d->content, d->content_len) < 0) {
                smtp_all_result(d, false, "4.3.0", "out of memory while sending the message to %s", s->relay);
                transaction_end(s, false);
                return;
        }
        s->state = ST_DOT;
        s->dot_replies = 0;
        set_timer(s, cfg(s)->data_xfer_timeout, "sending message body");
        int r = flush(s);
        if (r < 0) {
                session_failed(s, "lost connection with %s while sending message body", s->relay);
                return;
        }
        if (s->out.len == 0)
                set_timer(s, cfg(s)->data_done_timeout,
                          "sending end of data -- message may be sent more than once");
}

static int add_cmd(SmtpSession *s, CmdKind kind, size_t rcpt, const char *fmt, ...) _printf_(4, 5);
static int add_cmd(SmtpSession *s, CmdKind kind, size_t rcpt, const char *fmt, ...) {
        va_list ap;
        size_t start = s->cmdtext.len;
        va_start(ap, fmt);
        int r = strbuf_vprintf(&s->cmdtext, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        s->cmds[s->n_cmds++] = (Cmd) { .kind = kind, .rcpt = rcpt, .start = start, .end = s->cmdtext.len };
        return 0;
}

static int append_xtext_param(StrBuf *b, const char *name, const char *value) {
        int r = strbuf_printf(b, " %s=", name);
        return r < 0 ? r : xtext_encode(value, strlen(value), b);
}

static int build_mail(SmtpSession *s, StrBuf *b) {
        SmtpDelivery *d = s->d;
        int r = strbuf_printf(b, "MAIL FROM:<%s>", strempty(d->msg.sender));
        if (r >= 0 && s->size_limit != UINT64_MAX)
                r = strbuf_printf(b, " SIZE=%llu", (unsigned long long) d->content_len);
        if (r >= 0 && d->eightbit && s->eightbitmime)
                r = strbuf_puts(b, " BODY=8BITMIME");
        if (r >= 0 && d->msg.smtputf8 && s->smtputf8)
                r = strbuf_puts(b, " SMTPUTF8");
        if (r >= 0 && s->dsn && d->msg.ret)
                r = strbuf_puts(b, d->msg.ret == 1 ? " RET=FULL" : " RET=HDRS");
        if (r >= 0 && s->dsn && !isempty(d->msg.envid))
                r = append_xtext_param(b, "ENVID", d->msg.envid);
        if (r >= 0 && d->msg.requiretls && cfg(s)->requiretls && s->requiretls)
                r = strbuf_puts(b, " REQUIRETLS");
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

/* XFORWARD with the message's original client (smtp_send_xforward_command): what postern-smtpd
 * recorded when it queued the message; "[UNAVAILABLE]" for what it does not know. */
static int build_xforward(SmtpSession *s, StrBuf *b) {
        const QueueMessage *m = &s->d->msg;
        bool local = !m->client_address;
        const char *addr = local ? NULL : m->client_address;
        _cleanup_free_ char *v6 = NULL;
        if (addr && strchr(addr, ':') && asprintf(&v6, "IPv6:%s", addr) < 0)
                return -ENOMEM;
        const struct { const char *name, *value; } a[] = {
                { "NAME", local ? "localhost" : m->client_name },
                { "ADDR", local ? "127.0.0.1" : v6 ? v6 : addr },
                { "PROTO", m->protocol },
                { "HELO", m->helo },
                { "IDENT", s->d->queue_id },
                { "SOURCE", local ? "LOCAL" : "REMOTE" },
        };
        int r = strbuf_puts(b, "XFORWARD");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(a); i++)
                r = append_xtext_param(b, a[i].name, isempty(a[i].value) ? "[UNAVAILABLE]" : a[i].value);
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

static int build_rcpt(SmtpSession *s, StrBuf *b, const SmtpRcpt *rc) {
        int r = strbuf_printf(b, "RCPT TO:<%s>", rc->address);
        if (r >= 0 && s->dsn && rc->notify) {
                if (rc->notify & QUEUE_NOTIFY_NEVER)
                        r = strbuf_puts(b, " NOTIFY=NEVER");
                else
                        r = strbuf_printf(b, " NOTIFY=%s%s%s",
                                          rc->notify & QUEUE_NOTIFY_SUCCESS ? "SUCCESS" : "",
                                          (rc->notify & QUEUE_NOTIFY_SUCCESS) && (rc->notify & (QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY)) ? "," : "",
                                          (rc->notify & QUEUE_NOTIFY_FAILURE) && (rc->notify & QUEUE_NOTIFY_DELAY) ? "FAILURE,DELAY" :
                                          rc->notify & QUEUE_NOTIFY_FAILURE ? "FAILURE" :
                                          rc->notify & QUEUE_NOTIFY_DELAY ? "DELAY" : "");
        }
        if (r >= 0 && s->dsn && rc->orcpt) {
                const char *semi = strchr(rc->orcpt, ';');
                if (semi && semi > rc->orcpt) {
                        r = strbuf_printf(b, " ORCPT=%.*s;", (int) (semi - rc->orcpt), rc->orcpt);
                        if (r >= 0)
                                r = xtext_encode(semi + 1, strlen(semi + 1), b);
                }
        }
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

static bool has_non_ascii(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] >= 0x80)
                        return true;
        return false;
}

/* RFC 6531 3.2: a message that needs SMTPUTF8 is not sent to a server without it. The sender or
 * a header with UTF-8 needs it for every recipient; otherwise only recipients whose own address
 * is UTF-8 do (the others go as plain SMTP). A message marked SMTPUTF8 that is all ASCII goes
 * out without the parameter. Returns whether a recipient is left to send to. */
static bool check_smtputf8(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (!d->msg.smtputf8 || s->smtputf8)
                return true;
        const char *hdr_end = d->content_len >= 1 && d->content[0] == '\n' ? d->content :
                              memmem(d->content, d->content_len, "\n\n", 2);
        size_t hdr_len = hdr_end ? (size_t) (hdr_end - d->content) : d->content_len;
        bool all = has_non_ascii(strempty(d->msg.sender), strlen(strempty(d->msg.sender))) ||
                   has_non_ascii(d->content, hdr_len);
        bool left = false;
        for (size_t i = 0; i < d->n_rcpts; i++) {
                SmtpRcpt *rc = &d->rcpts[i];
                if (rc->done)
                        continue;
                if (all || has_non_ascii(rc->address, strlen(rc->address)))
                        smtp_rcpt_result(d, i, "5.6.7", "SMTPUTF8 is required, but was not offered by host %s",
                                         s->relay);
                else
                        left = true;
        }
        return left;
}

static void tls_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) _printf_(3, 4);

/* RFC 8689 4.2: what keeps this session from carrying a REQUIRETLS message, or NULL. The server
 * must be authenticated in a way DNS spoofing cannot subvert — level secure (the name matched is
 * the next hop's), verify towards a [host] next hop (no MX lookup), or an MTA-STS policy in
 * enforce mode (the MX names come from the HTTPS-authenticated policy, RFC 8689 4.2.1) — and must
 * offer REQUIRETLS; an LMTP server need not offer it, and a UNIX-domain socket stays on this host. */
static const char *requiretls_unmet(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (s->lmtp && s->target.sa.ss_family == AF_UNIX)
                return NULL;
        if (!s->tls_up)
                return "no TLS";
        bool bracketed = tls_nexthop(d)[0] == '[';
        if (s->trust != TLS_TRUST_VERIFIED ||
            !(s->level >= SMTP_TLS_SECURE || (s->level == SMTP_TLS_VERIFY && bracketed) || s->sts == STS_MODE_ENFORCE))
                return "the server certificate was not verified at TLS security level secure or by MTA-STS";
        if (!s->lmtp && !s->requiretls)
                return "the server does not offer REQUIRETLS";
        return NULL;
}

static void transaction_start(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (d->msg.requiretls && cfg(s)->requiretls && !d->probe) {
                const char *why = requiretls_unmet(s);
                if (why) {
                        /* another address may do; the last one's failure returns the message */
                        tls_failed(s, "5.7.30", "REQUIRETLS support required: %s (host %s)", why, s->relay);
                        return;
                }
        }
        _cleanup_(strbuf_donep) StrBuf line = STRBUF_INIT;
        int r = 0;

        d->conn_usec = now_usec(CLOCK_REALTIME);
        snprintf(d->relay, sizeof(d->relay), "%s", s->relay);
        d->sessions++;
        d->provisional = more_servers(d);
        for (size_t i = 0; i < d->n_rcpts; i++)
                d->rcpts[i].accepted = false;
        if (s->size_limit > 0 && s->size_limit != UINT64_MAX && d->content_len > s->size_limit) {
                smtp_all_result(d, false, "5.3.4", "message size %zu exceeds size limit %llu of server %s",
                                d->content_len, (unsigned long long) s->size_limit, s->relay);
                transaction_end(s, !s->reused);
                return;
        }
        if (d->eightbit && !s->eightbitmime && !d->downgraded) {
                /* RFC 6152 3: 8-bit bodies become quoted-printable for this server (and stay so
                 * for any later one: 7-bit content is good everywhere). */
                _cleanup_(strbuf_donep) StrBuf conv = STRBUF_INIT;
                if (mime_downgrade(d->content, d->content_len, &conv) < 0) {
                        smtp_all_result(d, false, "4.3.0", "out of memory");
                        transaction_end(s, false);
                        return;
                }
                d->downgraded = true;
                if (conv.len > 0) {
                        free(d->content);
                        d->content_len = conv.len;
                        d->content = strbuf_steal(&conv);
                        log_info("%s: converted 8-bit content to quoted-printable for %s (no 8BITMIME)",
                                 d->queue_id, s->relay);
                }
        }
        if (!check_smtputf8(s)) {
                transaction_end(s, !s->reused);
                return;
        }

        free(s->cmds);
        free(s->accepted);
        s->cmds = calloc(d->n_rcpts + 4, sizeof(Cmd));
        s->accepted = calloc(d->n_rcpts + 1, sizeof(size_t));
        if (!s->cmds || !s->accepted) {
                smtp_all_result(d, false, "4.3.0", "out of memory");
                transaction_end(s, false);
                return;
        }
        strbuf_reset(&s->cmdtext);
        s->n_cmds = s->sent = s->replied = s->n_accepted = 0;
        s->mail_ok = false;
        s->rset_ok = !s->reused;
        s->state = ST_TXN;
        if (s->reused)
                r = add_cmd(s, CMD_RSET, 0, "RSET\r\n");
        if (r >= 0 && s->xforward && cfg(s)->send_xforward && !d->probe && (r = build_xforward(s, &line)) >= 0) {
                r = add_cmd(s, CMD_XFORWARD, 0, "%s", line.data);
                strbuf_reset(&line);
        }
        if (r >= 0 && (r = build_mail(s, &line)) >= 0)
                r = add_cmd(s, CMD_MAIL, 0, "%s", line.data);
        for (size_t i = 0; r >= 0 && i < d->n_rcpts; i++) {
                if (d->rcpts[i].done)
                        continue;
                strbuf_reset(&line);
                if ((r = build_rcpt(s, &line, &d->rcpts[i])) >= 0)
                        r = add_cmd(s, CMD_RCPT, i, "%s", line.data);
        }
        /* An address probe stops at RCPT, or at DATA with smtp_address_verify_target = data. */
        if (r >= 0 && (!d->probe || cfg(s)->verify_target_data))
                r = add_cmd(s, CMD_DATA, 0, "DATA\r\n");
        if (r < 0) {
                smtp_all_result(d, false, "4.3.0", "out of memory");
                transaction_end(s, false);
                return;
        }
        send_commands(s);
}

/* A reply to the command cmds[replied]. */
static void txn_reply(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        Cmd *c = &s->cmds[s->replied++];
        int cls = s->reply.code / 100;

        switch (c->kind) {
        case CMD_RSET:
                if (cls != 2) {
                        session_failed(s, "host %s said: %s (in reply to RSET command)", s->relay, s->reply.text);
                        return;
                }
                s->rset_ok = true;
                break;
        case CMD_XFORWARD:
                if (cls != 2) {
                        session_failed(s, "host %s said: %s (in reply to XFORWARD command)", s->relay, s->reply.text);
                        return;
                }
                break;
        case CMD_MAIL:
                s->rset_ok = true;
                if (cls == 2)
                        s->mail_ok = true;
                else
                        said(s, false, "MAIL FROM command");
                break;
        case CMD_RCPT:
                if (!s->mail_ok)
                        break;
                if (cls == 2) {
                        d->rcpts[c->rcpt].accepted = true;
                        s->accepted[s->n_accepted++] = c->rcpt;
                        if (d->probe && !cfg(s)->verify_target_data)
                                smtp_rcpt_result(d, c->rcpt, "2.1.5", "host %s said: %s (in reply to RCPT TO command)",
                                                 s->relay, s->reply.text);
                } else {
                        char dsn[16];
                        smtp_reply_dsn(&s->reply, dsn);
                        smtp_rcpt_result(d, c->rcpt, dsn, "host %s said: %s (in reply to RCPT TO command)",
                                         s->relay, s->reply.text);
                }
                break;
        case CMD_DATA:
                if (!s->mail_ok || s->n_accepted == 0) {
                        /* The pipelined DATA of a transaction without recipients: its 503/554 is
                         * expected and means nothing; RSET makes the connection usable again. */
                        transaction_end(s, cls != 2 && cls != 3);
                        return;
                }
                if (s->reply.code == 354 && d->probe) {
                        /* Deliverable; the connection in DATA mode is dropped, never ended with
                         * "." (that would deliver an empty message). */
                        smtp_all_result(d, true, "2.0.0", "host %s said: %s (in reply to DATA command)",
                                        s->relay, s->reply.text);
                        delivery_release(s, false);
                        session_free(s);
                        return;
                }
                if (s->reply.code == 354 && ipc_conn_peer_gone(d->conn)) {
                        /* qmgr went away (kill -9, restart) and will deliver this message again:
                         * sending it now would deliver it twice. The connection is dropped in
                         * DATA mode, never ended with ".", so the server discards it. */
                        log_info("%s: delivery to %s abandoned before the message was sent: the queue "
                                 "manager went away (it tries again)", d->queue_id, s->relay);
                        smtp_all_result(d, true, "4.3.0", "delivery abandoned: the queue manager went away");
                        delivery_release(s, false);
                        session_free(s);
                        return;
                }
                if (s->reply.code == 354) {
                        send_message(s);
                        return;
                }
                said(s, true, "DATA command");
                transaction_end(s, true);
                return;
        }
        if (d->probe && s->replied == s->n_cmds) {
                transaction_end(s, true);   /* a probe without DATA: every RCPT answered */
                return;
        }
        if (s->replied == s->sent && s->sent < s->n_cmds &&
            s->cmds[s->sent].kind == CMD_DATA && (!s->mail_ok || s->n_accepted == 0)) {
                transaction_end(s, true);   /* not pipelining: nothing accepted, DATA not sent */
                return;
        }
        send_commands(s);
}

static void dot_reply(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        if (!s->lmtp) {
                for (size_t i = 0; s->reply.code / 100 == 2 && i < d->n_rcpts; i++)
                        if (d->rcpts[i].accepted && !d->rcpts[i].done)
                                d->rcpts[i].relayed = !s->dsn;   /* for Action: relayed */
                if (s->reply.code / 100 == 2)
                        smtp_all_result(d, true, dsn, "%s", s->reply.text);
                else
                        said(s, true, "end of DATA command");
                transaction_end(s, true);
                return;
        }
        size_t i = s->accepted[s->dot_replies++];
        if (s->reply.code / 100 == 2 && !d->rcpts[i].done)
                d->rcpts[i].relayed = !s->dsn;
        if (s->reply.code / 100 == 2)
                smtp_rcpt_result(d, i, dsn, "%s", s->reply.text);
        else
                smtp_rcpt_result(d, i, dsn, "host %s said: %s (in reply to end of DATA command)", s->relay,
                                 s->reply.text);
        if (s->dot_replies == s->n_accepted)
                transaction_end(s, true);
        else
                set_timer(s, cfg(s)->data_done_timeout, "sending end of data -- message may be sent more than once");
}

/* --- handshake --- */

static bool names_me(const SmtpSession *s, const char *text) {
        size_t n = strcspn(text, " \t");
        const char *me = cfg(s)->myhostname;
        return n > 0 && strlen(me) == n && strncasecmp(text, me, n) == 0;
}

static void loops_back(SmtpSession *s) {
        smtp_all_result(s->d, false, "5.4.6", "mail for %s loops back to myself", s->d->nexthop);
        delivery_release(s, false);
        session_quit(s);
}

static void send_hello(SmtpSession *s, const char *verb) {
        char buf[600];
        int n = snprintf(buf, sizeof(buf), "%s %s\r\n", verb, cfg(s)->helo_name);
        if (send_text(s, buf, (size_t) MIN(n, (int) sizeof(buf) - 1)) < 0) {
                session_failed(s, "out of memory while sending %s", verb);
                return;
        }
        set_timer(s, cfg(s)->helo_timeout,
                  streq(verb, "EHLO") ? "performing the EHLO handshake" :
                  streq(verb, "LHLO") ? "performing the LHLO handshake" : "performing the HELO handshake");
        if (flush(s) < 0)
                session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
}

static void parse_ehlo(SmtpSession *s) {
        s->pipelining = s->dsn = s->eightbitmime = s->smtputf8 = s->starttls = s->xforward = false;
        s->requiretls = false;
        s->size_limit = UINT64_MAX;   /* no SIZE keyword */
        free(s->auth_mechs);
        s->auth_mechs = NULL;
        for (size_t i = 1; i < s->reply.n_lines; i++) {
                const char *k = s->reply.lines[i];
                /* "AUTH PLAIN LOGIN", or the pre-RFC "AUTH=PLAIN LOGIN" some servers add */
                if (strncasecmp(k, "AUTH", 4) == 0 && (k[4] == ' ' || k[4] == '=')) {
                        if (!s->auth_mechs)
                                s->auth_mechs = strdup(k + 5);
                        continue;
                }
                if (strcaseeq(k, "PIPELINING"))
                        s->pipelining = true;
                else if (strcaseeq(k, "DSN"))
                        s->dsn = true;
                else if (strcaseeq(k, "8BITMIME"))
                        s->eightbitmime = true;
                else if (strcaseeq(k, "STARTTLS"))
                        s->starttls = true;
                else if (strcaseeq(k, "SMTPUTF8"))
                        s->smtputf8 = true;
                else if (strcaseeq(k, "REQUIRETLS"))
                        s->requiretls = true;
                else if (strncasecmp(k, "XFORWARD", 8) == 0 && (k[8] == '\0' || k[8] == ' '))
                        s->xforward = true;
                else if (strncasecmp(k, "SIZE", 4) == 0 && (k[4] == '\0' || k[4] == ' '))
                        s->size_limit = k[4] ? strtoull(k + 5, NULL, 10) : 0;
        }
}

/* --- SMTP AUTH --- */

/* The login failed or cannot happen here: every recipient gets the result (soft while another
 * server may be tried), the connection closes. */
static void auth_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) _printf_(3, 4);
static void auth_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) {
        char diag[1200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);
        snprintf(s->d->relay, sizeof(s->d->relay), "%s", s->relay);   /* the server that refused */
        s->d->provisional = more_servers(s->d);
        smtp_all_result(s->d, false, dsn, "%s", diag);
        delivery_release(s, false);
        session_quit(s);
}

static void auth_send(SmtpSession *s, const char *line) {
        if (send_text(s, line, strlen(line)) < 0 || send_text(s, "\r\n", 2) < 0) {
                session_failed(s, "out of memory while performing SASL authentication");
                return;
        }
        set_timer(s, cfg(s)->helo_timeout, "performing SASL authentication");
        if (flush(s) < 0)
                session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
}

/* After the EHLO that counts: AUTH when configured, offered and a password is known. True when
 * it took the session over. */
static bool auth_before_mail(SmtpSession *s) {
        SmtpSasl *a = cfg(s)->sasl;
        SmtpDelivery *d = s->d;
        _cleanup_free_ char *value = NULL, *ir = NULL, *line = NULL;
        char diag[700], why[600];
        int r;

        if (!a || s->authenticated || !s->auth_mechs)
                return false;
        if (d->sasl_sender)
                value = strdup(d->sasl_sender);
        else if ((r = smtp_sasl_lookup_server(a, s->target.host, d->nexthop, &value, diag, sizeof(diag))) < 0) {
                auth_failed(s, "4.3.0", "%s", diag);
                return true;
        } else if (r == 0)
                return false;   /* no login for this server: on without one, as Postfix */
        if (!value) {
                session_failed(s, "out of memory while performing SASL authentication");
                return true;
        }
        const char *cb_type = NULL;
        _cleanup_free_ unsigned char *cb = NULL;
        size_t cb_len = 0;
        bool have_cb = s->tls_up && tls_conn_channel_binding(s->tls, &cb_type, &cb, &cb_len) >= 0;
        const char *mech = smtp_sasl_choose(a, s->auth_mechs, s->tls_up, have_cb, why, sizeof(why));
        if (!mech) {
                explicit_bzero(value, strlen(value));
                auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s: no mechanism "
                            "available (%s)", s->relay, why);
                return true;
        }
        /* "username:password": the password may hold ':' (split at the first one). */
        char *colon = strchr(value, ':');
        if (colon)
                *colon = '\0';
        r = sasl_mech_client_new(mech, value, colon ? colon + 1 : "", &s->sasl);
        explicit_bzero(value, strlen(value) + (colon ? strlen(colon + 1) + 1 : 0));
        if (r >= 0 && have_cb && smtp_sasl_wants_channel_binding(s->auth_mechs, mech))
                r = sasl_mech_client_set_channel_binding(s->sasl, cb_type, cb, cb_len);
        if (r >= 0)
                r = sasl_mech_client_start(s->sasl, &ir);
        if (r < 0) {
                auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with %s: %s",
                            s->relay, mech, r == -EINVAL ? "the username or password cannot be sent" : strerror(-r));
                return true;
        }
        unsigned props = 0;
        (void) sasl_mech_client_known(mech, &props);
        if (!s->tls_up && (props & SASL_PROP_PLAINTEXT))
                log_warning("%s: sending a %s password to %s without TLS (%s_sasl_security_options allows plaintext "
                            "mechanisms)", d->queue_id, mech, s->relay, cfg(s)->prefix);
        if (asprintf(&line, "AUTH %s%s%s", mech, ir ? " " : "", ir ? (*ir ? ir : "=") : "") < 0) {
                line = NULL;
                session_failed(s, "out of memory while performing SASL authentication");
                return true;
        }
        s->state = ST_AUTH;
        auth_send(s, line);
        explicit_bzero(line, strlen(line));
        return true;
}

static void auth_reply(SmtpSession *s) {
        const char *mech = sasl_mech_client_name(s->sasl);
        if (s->reply.code == 334) {
                _cleanup_free_ char *resp = NULL;
                const char *challenge = s->reply.n_lines > 0 ? s->reply.lines[0] : s->reply.first_line;
                int r = sasl_mech_client_step(s->sasl, challenge, &resp);
                if (r < 0) {
                        /* End the exchange; the server's reply to "*" does not matter. */
                        auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with "
                                    "%s: %s", s->relay, mech, r == -EPERM ? "the server failed to prove it knows the "
                                    "password (wrong SCRAM server signature)" : "the server sent an invalid challenge");
                        return;
                }
                auth_send(s, resp);
                explicit_bzero(resp, strlen(resp));
                return;
        }
        if (s->reply.code / 100 == 2) {
                if (!sasl_mech_client_verified(s->sasl)) {
                        auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with %s: "
                                    "the server did not prove it knows the password", s->relay, mech);
                        return;
                }
                s->authenticated = true;
                s->sasl = sasl_mech_client_free(s->sasl);
                log_info("%s: SASL authentication to %s with %s succeeded", s->d->queue_id, s->relay, mech);
                transaction_start(s);
                return;
        }
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        if (dsn[0] == '5' && smtp_sasl_soft_bounce(cfg(s)->sasl))
                dsn[0] = '4';
        auth_failed(s, dsn, "SASL authentication failed; server %s said: %s", s->relay, s->reply.text);
}

/* After the EHLO/HELO that counts (and STARTTLS, if any): AUTH, then the transaction. */
static void after_hello(SmtpSession *s) {
        if (auth_before_mail(s))
                return;
        transaction_start(s);
}

/* --- TLS --- */

static bool on_readable(SmtpSession *s);

/* This address cannot be used (TLS missing, failed or not verified): the result when it was the
 * last one, else on to the next address. */
static void tls_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) {
        SmtpDelivery *d = s->d;
        char diag[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);
        if (d && d->next_target >= d->n_targets)
                smtp_all_result(d, false, dsn, "%s", diag);
        else if (d)
                log_info("%s: %s; trying the next address", d->queue_id, diag);
        delivery_release(s, true);
        session_quit(s);
}

/* Counts this session's TLSRPT result, the first one only. */
static void tlsrpt_result(SmtpSession *s, TlsrptResult result) {
        if (s->tlsrpt_done || !s->d)
                return;
        s->tlsrpt_done = true;
        if (s->level == SMTP_TLS_DANE)   /* checked against TLSA records: policy type "tlsa" */
                smtp_tlsrpt_dane(s->d, &s->target, result);
        else
                smtp_tlsrpt_session(s->d, s->target.host, s->target.addr, result);
}

static void log_tls(SmtpSession *s, const char *how) {
        int bits = tls_conn_cipher_bits(s->tls);
        log_info("%s TLS connection %s to %s: %s with cipher %s (%d/%d bits)", tls_trust_name(s->trust), how,
                 s->relay, tls_conn_protocol(s->tls), tls_conn_cipher(s->tls), bits, bits);
}

/* The handshake failed or timed out: at level may the same address again in plaintext (as
 * Postfix does), otherwise this address is unusable. */
static void tls_handshake_failed(SmtpSession *s, const char *why) {
        SmtpDelivery *d = s->d;
        log_info("SSL_connect error to %s: %s", s->relay, why);
        if (d && s->sts != STS_MODE_NONE)
                smtp_sts_log_failure(d, s->relay, "TLS handshake failed");
        tlsrpt_result(s, TLSRPT_VALIDATION_FAILURE);
        if (d && s->level == SMTP_TLS_MAY && !s->wrapper && s->target_index < d->n_targets) {
                log_info("%s: TLS handshake with %s failed; trying again without TLS", d->queue_id, s->relay);
                d->targets[s->target_index].no_tls = true;
                d->next_target = s->target_index;
                delivery_release(s, true);
                session_free(s);
                return;
        }
        tls_failed(s, "4.7.5", "Cannot start TLS: handshake failure");
}

static void tls_established(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        SmtpTls *t = cfg(s)->tls;
        _cleanup_strv_free_ char **match = smtp_tls_target_match(d, s->sts, s->target.host, tls_nexthop(d));
        const char *why = NULL;

        s->tls_up = true;
        bool ok;
        if (s->level == SMTP_TLS_DANE) {
                ok = smtp_dane_check(d, &s->target, s->tls, &s->trust, &why);
                tlsrpt_result(s, ok ? TLSRPT_SUCCESS
                                 : why && startswith(why, "the certificate names do not match") ? TLSRPT_CERTIFICATE_HOST_MISMATCH
                                                                                             : TLSRPT_TLSA_INVALID);
        } else {
                s->trust = tls_conn_peer_trust(s->tls, match, &why);
                if (s->sts != STS_MODE_NONE && s->trust != TLS_TRUST_VERIFIED) {
                        char reason[400];
                        snprintf(reason, sizeof reason, "certificate not verified: %s", strna(why));
                        smtp_sts_log_failure(d, s->relay, reason);
                        tlsrpt_result(s, s->trust == TLS_TRUST_TRUSTED ? TLSRPT_CERTIFICATE_HOST_MISMATCH
                                         : why && strstr(why, "expired")  ? TLSRPT_CERTIFICATE_EXPIRED
                                                                          : TLSRPT_CERTIFICATE_NOT_TRUSTED);
                }
                tlsrpt_result(s, TLSRPT_SUCCESS);
                ok = s->level < SMTP_TLS_VERIFY || s->trust == TLS_TRUST_VERIFIED;
        }
        if (!ok) {
                log_info("server certificate verification failed for %s: %s", s->relay, strna(why));
                tls_failed(s, "4.7.5", "Server certificate not verified");
                return;
        }
        if (smtp_tls_loglevel(t) >= 2 && !isempty(why))
                log_info("certificate verification for %s: %s", s->relay, why);   /* why not Verified */
        metrics_count(METRIC_SMTP_TLS, "protocol", tls_conn_protocol(s->tls), "cipher", tls_conn_cipher(s->tls), NULL);
        if (smtp_tls_loglevel(t) >= 1)
                log_tls(s, "established");
        if (smtp_tls_loglevel(t) >= 1 && s->level == SMTP_TLS_DANE)
                log_info("%s: server certificate matched the DANE TLSA records of _%u._tcp.%s", s->relay,
                         s->target.port, s->target.host);
        if (s->wrapper) {
                s->state = ST_GREETING;
                set_timer(s, cfg(s)->helo_timeout, "receiving the initial server greeting");
                update_events(s);
                (void) on_readable(s);   /* the greeting may already sit in GnuTLS's buffer */
                return;
        }
        /* RFC 3207 4.2: forget the plaintext EHLO; only what the server says inside TLS counts. */
        s->state = ST_EHLO;
        update_events(s);
        send_hello(s, s->lmtp ? "LHLO" : "EHLO");
}

/* One handshake step (the session may be freed). */
static void tls_step(SmtpSession *s) {
        int r = tls_conn_handshake(s->tls);
        if (r == -EAGAIN) {
                if (s->io)
                        (void) sd_event_source_set_io_events(s->io, tls_conn_want_write(s->tls) ? EPOLLOUT : EPOLLIN);
                return;
        }
        if (r < 0) {
                tls_handshake_failed(s, tls_conn_error(s->tls));
                return;
        }
        tls_established(s);
}

static void tls_start(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        SmtpTls *t = cfg(s)->tls;
        _cleanup_free_ char *sni = smtp_tls_sni(t, &d->tls, s->target.host, tls_nexthop(d));
        char cache_key[800];
        int r;

        /* RFC 7672 8.1: with DANE, SNI names the TLSA base domain (the MX host). */
        if (!sni && s->level == SMTP_TLS_DANE && !(sni = strdup(s->target.host))) {
                tls_failed(s, "4.3.0", "Cannot start TLS: out of memory");
                return;
        }

        /* Sessions are resumed only toward the same address, name and protocol settings. */
        snprintf(cache_key, sizeof(cache_key), "%s %s %s", s->relay, strempty(sni),
                 s->level >= SMTP_TLS_ENCRYPT ? "mandatory" : "opportunistic");
        r = tls_conn_new_client(smtp_tls_client(t, s->level), s->fd, sni, cache_key, &s->tls);
        if (r < 0) {
                s->tls = NULL;
                tls_failed(s, "4.3.0", "Cannot start TLS: %s", strerror(-r));
                return;
        }
        if (smtp_tls_loglevel(t) >= 2)
                log_info("setting up TLS connection to %s%s%s", s->relay, sni ? " with SNI " : "", strempty(sni));
        s->state = ST_TLS;
        set_timer(s, smtp_tls_timeout(t), "performing the TLS handshake");
        tls_step(s);
}

/* After EHLO/HELO: STARTTLS when the policy wants TLS. True when it took the session over. */
static bool tls_before_mail(SmtpSession *s) {
        if (s->tls)
                return false;
        if (s->level == SMTP_TLS_NONE) {
                if (s->starttls && smtp_tls_note_starttls_offer(cfg(s)->tls))
                        log_info("Host offered STARTTLS: [%s]", s->target.host);
                return false;
        }
        if (!smtp_tls_client(cfg(s)->tls, s->level)) {
                if (s->level == SMTP_TLS_MAY)
                        return false;
                tls_failed(s, "4.7.5", "TLS is required, but our TLS engine is unavailable");
                return true;
        }
        if (!s->starttls) {
                if (s->sts != STS_MODE_NONE)
                        smtp_sts_log_failure(s->d, s->relay, "STARTTLS not offered");
                tlsrpt_result(s, TLSRPT_STARTTLS_NOT_SUPPORTED);
                if (s->level == SMTP_TLS_MAY)
                        return false;
                tls_failed(s, "4.7.4", "TLS is required, but was not offered by host %s", s->relay);
                return true;
        }
        if (send_text(s, "STARTTLS\r\n", 10) < 0) {
                session_failed(s, "out of memory while sending STARTTLS");
                return true;
        }
        s->state = ST_STARTTLS;
        set_timer(s, cfg(s)->helo_timeout, "sending STARTTLS");
        if (flush(s) < 0)
                session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
        return true;
}

static void starttls_reply(SmtpSession *s) {
        if (s->reply.code / 100 != 2) {
                if (s->level == SMTP_TLS_MAY) {
                        after_hello(s);   /* opportunistic: on in plaintext */
                        return;
                }
                char dsn[16];
                smtp_reply_dsn(&s->reply, dsn);
                dsn[0] = '4';
                tls_failed(s, dsn, "TLS is required, but host %s refused to start TLS: %s", s->relay, s->reply.text);
                return;
        }
        if (s->in.len > 0) {
                /* Plaintext behind the 220 would otherwise be read as if it came inside TLS. */
                log_info("host %s sent %zu bytes after its reply to STARTTLS; discarded", s->relay, s->in.len);
                strbuf_reset(&s->in);
        }
        tls_start(s);
}

static void handle_reply(SmtpSession *s) {
        int cls = s->reply.code / 100;

        switch (s->state) {
        case ST_GREETING:
                if (cls != 2) {
                        /* A 5xx greeting only means "not this server" (smtp_skip_5xx_greeting). */
                        char dsn[16];
                        smtp_reply_dsn(&s->reply, dsn);
                        dsn[0] = '4';
                        if (s->d->next_target >= s->d->n_targets)
                                smtp_all_result(s->d, false, dsn, "host %s refused to talk to me: %s",
                                                s->relay, s->reply.text);
                        delivery_release(s, true);
                        session_quit(s);
                        return;
                }
                if (names_me(s, s->reply.first_line))
                        return loops_back(s);
                s->state = ST_EHLO;
                send_hello(s, s->lmtp ? "LHLO" : "EHLO");
                return;
        case ST_EHLO:
        case ST_HELO:
                if (cls != 2) {
                        if (s->state == ST_EHLO && !s->lmtp && cls == 5) {
                                s->state = ST_HELO;
                                send_hello(s, "HELO");
                                return;
                        }
                        /* Not a session yet (smtp_mx_session_limit): a 4xx moves on. */
                        s->d->provisional = more_servers(s->d);
                        said(s, false, s->state == ST_HELO ? "HELO command" :
                                       s->lmtp ? "LHLO command" : "EHLO command");
                        delivery_release(s, false);
                        session_quit(s);
                        return;
                }
                if (names_me(s, s->reply.first_line))
                        return loops_back(s);
                if (s->state == ST_EHLO)
                        parse_ehlo(s);
                else {
                        s->pipelining = s->dsn = s->eightbitmime = s->smtputf8 = s->starttls = s->xforward = false;
                        s->size_limit = UINT64_MAX;
                        free(s->auth_mechs);
                        s->auth_mechs = NULL;
                }
                if (tls_before_mail(s))
                        return;
                after_hello(s);
                return;
        case ST_STARTTLS:
                starttls_reply(s);
                return;
        case ST_AUTH:
                auth_reply(s);
                return;
        case ST_TXN:
                txn_reply(s);
                return;
        case ST_DOT:
                dot_reply(s);
                return;
        default:
                /* A reply nobody asked for: an idle connection being closed by the server (421). */
                session_free(s);
                return;
        }
}

/* --- I/O --- */

/* Splits s->in into reply lines and handles them. False when s was freed. */
static bool process_lines(SmtpSession *s) {
        for (;;) {
                char *nl = s->in.data ? memchr(s->in.data, '\n', s->in.len) : NULL;
                if (!nl) {
                        if (s->in.len > SMTP_LINE_MAX) {
                                session_failed(s, "host %s sent a reply line longer than %d bytes while %s",
                                               s->relay, SMTP_LINE_MAX, strna(s->phase));
                                return false;
                        }
                        return true;
                }
                size_t len = (size_t) (nl - s->in.data);
                size_t consumed = len + 1;
                if (len > 0 && s->in.data[len - 1] == '\r')
                        len--;
                if (s->state == ST_IDLE || s->state == ST_CONNECT || s->state == ST_TLS) {
                        session_free(s);
                        return false;
                }
                int r = smtp_reply_feed(&s->reply, s->in.data, len);
                if (r < 0) {
                        char bad[80];
                        snprintf(bad, sizeof(bad), "%.*s", (int) MIN(len, (size_t) 60), s->in.data);
                        session_failed(s, "host %s sent a malformed reply while %s: \"%s\"", s->relay,
                                       strna(s->phase), bad);
                        return false;
                }
                strbuf_consume(&s->in, consumed);
                if (r == 0)
                        continue;
                /* The handler may free s (several replies can arrive in one read: PIPELINING). */
                bool alive = true;
                s->alive = &alive;
                handle_reply(s);
                if (!alive)
                        return false;
                s->alive = NULL;
                smtp_reply_reset(&s->reply);
        }
}

/* Reads what there is; false when s was freed. With TLS, also what GnuTLS already decrypted and
 * holds: the socket does not announce those bytes. */
static bool on_readable(SmtpSession *s) {
        char buf[16384];
        for (;;) {
                if (s->tls && !s->tls_up)
                        return true;   /* the handshake reads for itself */
                ssize_t k = io_read(s, buf, sizeof(buf));
                if (k == -EAGAIN || k == -EINTR)
                        return true;
                if (k <= 0) {
                        if (s->state == ST_IDLE) {
                                session_free(s);
                                return false;
                        }
                        session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
                        return false;
                }
                if (strbuf_append(&s->in, buf, (size_t) k) < 0) {
                        session_failed(s, "out of memory while %s", strna(s->phase));
                        return false;
                }
                if (!process_lines(s))
                        return false;
                if (!s->tls || !s->tls_up || tls_conn_pending(s->tls) == 0)
                        return true;   /* the socket announces the rest (one record per read) */
        }
}

static void connected(SmtpSession *s) {
        int one = 1;
        (void) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (s->wrapper) {
                tls_start(s);   /* SMTPS: TLS first, the greeting comes inside it */
                return;
        }
        s->state = ST_GREETING;
        set_timer(s, cfg(s)->helo_timeout, "receiving the initial server greeting");
}

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        SmtpSession *s = userdata;

        if (s->state == ST_CONNECT) {
                int err = 0;
                socklen_t l = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        session_failed(s, "connect to %s: %s", s->relay, strerror(err));
                        return 0;
                }
                if (s->wrapper) {
                        connected(s);   /* may free s */
                        return 0;
                }
                connected(s);
                update_events(s);
                return 0;
        }
        if (s->state == ST_TLS) {
                tls_step(s);
                return 0;
        }
        if (revents & EPOLLOUT) {
                if (flush(s) < 0) {
                        session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
                        return 0;
                }
                if (s->state == ST_DOT && s->out.len == 0)
                        set_timer(s, cfg(s)->data_done_timeout,
                                  "sending end of data -- message may be sent more than once");
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                (void) on_readable(s);
        return 0;
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        SmtpSession *s = userdata;
        if (s->state == ST_IDLE) {
                session_quit(s);
                return 0;
        }
        if (s->state == ST_TLS)
                tls_handshake_failed(s, "handshake timeout");
        else if (s->state == ST_CONNECT)
                session_failed(s, "connect to %s: Connection timed out", s->relay);
        else
                session_failed(s, "conversation with %s timed out while %s", s->relay, strna(s->phase));
        return 0;
}

/* The cache key: side, master.cf transport, next hop and TLS level (a plaintext connection must
 * not carry a delivery that requires TLS, nor a merely encrypted one a "verify" delivery). */
static int session_key(const SmtpDelivery *d, char **ret) {
        /* With sender-dependent logins, a connection is reused only for the same login name. */
        int login = d->sasl_sender ? (int) strcspn(d->sasl_sender, ":") : 0;
        /* ... and MTA-STS: a connection made without (or under another mode) carries none of its mail */
        if (asprintf(ret, "%s:%s:%s:%s:%s:%.*s", d->lmtp ? "lmtp" : "smtp", strempty(d->transport), d->nexthop,
                     smtp_tls_level_name(d->tls.level), d->sts ? sts_mode_name(d->sts->mode) : "-", login,
                     strempty(d->sasl_sender)) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int session_connect(SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel level, int sts, SmtpSession **ret) {
        Smtp *smtp = d->smtp;
        SmtpSession *s = calloc(1, sizeof(SmtpSession));
        int r;

        if (!s)
                return -ENOMEM;
        smtp->n_sessions++;
        s->smtp = smtp;
        s->fd = -1;
        s->target = *t;
        s->lmtp = d->lmtp;
        if (d->transport && !(s->transport = strdup(d->transport))) {
                session_free(s);
                return -ENOMEM;
        }
        s->created = now_usec(CLOCK_MONOTONIC);
        s->state = ST_CONNECT;
        smtp_target_relay(t, s->relay, sizeof(s->relay));
        s->level = level;   /* smtp_tls_target_level(): DANE, else MTA-STS, else the policy */
        s->sts = sts;
        if (sts == STS_MODE_TESTING && cfg(s)->sts_enforce_mx_patterns && !sts_policy_mx_allowed(d->sts, t->host)) {
                /* (smtp_sts_target() logged it; s->d is not set yet) */
                smtp_tlsrpt_session(d, t->host, t->addr, TLSRPT_VALIDATION_FAILURE);
                s->tlsrpt_done = true;
        }
        s->wrapper = smtp_tls_wrappermode(cfg(s)->tls);
        s->target_index = (size_t) (t - d->targets);
        if (session_key(d, &s->key) < 0) {
                s->key = NULL;
                session_free(s);
                return -ENOMEM;
        }
        s->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0) {
                r = -errno;
                session_free(s);
                return r;
        }
        if (t->sa.ss_family != AF_UNIX && !isempty(cfg(s)->bind_address)) {
                struct addrinfo hints = { .ai_family = t->sa.ss_family, .ai_socktype = SOCK_STREAM,
                                          .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
                struct addrinfo *res = NULL;
                if (getaddrinfo(cfg(s)->bind_address, NULL, &hints, &res) == 0 && res) {
                        if (bind(s->fd, res->ai_addr, res->ai_addrlen) < 0)
                                log_warning("%s_bind_address %s: cannot bind: %m", cfg(s)->prefix, cfg(s)->bind_address);
                        freeaddrinfo(res);
                }
        }
        r = sd_event_add_io(smtp->event, &s->io, s->fd, EPOLLOUT, on_io, s);
        if (r < 0) {
                session_free(s);
                return r;
        }
        *ret = s;
        if (connect(s->fd, (const struct sockaddr *) &t->sa, t->salen) < 0 && errno != EINPROGRESS) {
                /* Reported like any other connect failure, from the event loop's point of view. */
                r = errno;
                s->d = d;
                d->session = s;
                session_failed(s, "connect to %s: %s", s->relay, strerror(r));
                *ret = NULL;
                return 0;
        }
        if (cfg(s)->connect_timeout > 0)
                set_timer(s, cfg(s)->connect_timeout, "connecting");
        else
                s->phase = "connecting";   /* lmtp_connect_timeout = 0: the kernel's own limit */
        return 0;
}

/* Starts delivery d: reuses an idle connection to its next hop or connects to the next target. */
void smtp_session_start(SmtpDelivery *d) {
        d->provisional = false;   /* set again by the transaction (or EHLO) that may defer softly */
        Smtp *smtp = d->smtp;
        SmtpTls *tls = smtp_settings(smtp, d->lmtp, d->transport)->tls;
        _cleanup_free_ char *key = NULL;

        if (!d->tls_loaded) {
                const char *dsn = "4.3.0";
                char diag[700];
                d->tls_loaded = true;
                if (smtp_tls_policy(tls, tls_nexthop(d), &d->tls, &dsn, diag, sizeof(diag)) < 0) {
                        smtp_all_result(d, false, dsn, "%s", diag);
                        smtp_delivery_finish(d);
                        return;
                }
                /* SMTPS has no plaintext to fall back to. */
                if (smtp_tls_wrappermode(tls) && d->tls.level < SMTP_TLS_ENCRYPT)
                        d->tls.level = SMTP_TLS_ENCRYPT;
                if (smtp_sasl_lookup_sender(smtp_settings(smtp, d->lmtp, d->transport)->sasl, d->msg.sender,
                                            &d->sasl_sender, diag, sizeof(diag)) < 0) {
                        smtp_all_result(d, false, "4.3.0", "%s", diag);
                        smtp_delivery_finish(d);
                        return;
                }
                /* The next hop's MTA-STS policy (smtp-sts.c): back here when it is known. */
                if (smtp_sts_lookup(d, smtp_session_start) > 0)
                        return;
        }
        if (!d->retried && d->next_target == 0 && session_key(d, &key) >= 0)
                for (SmtpSession *s = smtp->idle; s; s = s->next) {
                        if (!streq(s->key, key))
                                continue;
                        if (!reuse_allowed(s))
                                continue;
                        session_unlink_idle(s);
                        s->d = d;
                        d->session = s;
                        s->reused = true;
                        d->next_target = d->n_targets;   /* a failure here is final or retried */
                        if (s->tls_up && smtp_tls_loglevel(tls) >= 1)
                                log_tls(s, "reused");
                        transaction_start(s);
                        return;
                }

        char skipped[400] = "";
        while (d->next_target < d->n_targets) {
                SmtpSession *s = NULL;
                char why[600];
                int r = smtp_dane_target(d, &d->targets[d->next_target], smtp_session_start, why, sizeof(why));
                if (r == 0)
                        return;   /* a TLSA lookup: called again when it answers */
                const SmtpTarget *t = &d->targets[d->next_target++];
                if (r < 0) {
                        if (d->next_target >= d->n_targets) {
                                smtp_all_result(d, false, "4.7.5", "%s", why);
                                smtp_delivery_finish(d);
                                return;
                        }
                        log_info("%s: %s; trying the next address", d->queue_id, why);
                        continue;
                }
                SmtpTlsLevel level;
                int sts;
                if (!smtp_tls_target_level(d, t, &level, &sts, skipped, sizeof(skipped)))
                        continue;   /* logged; the reason is the result when no address is left */
                r = session_connect(d, t, level, sts, &s);
                if (r < 0) {
                        char relay[400];
                        smtp_target_relay(t, relay, sizeof(relay));
                        if (d->next_target >= d->n_targets) {
                                smtp_all_result(d, false, "4.4.1", "connect to %s: %s", relay, strerror(-r));
                                smtp_delivery_finish(d);
                                return;
                        }
                        continue;
                }
                if (s) {
                        s->d = d;
                        d->session = s;
                }
                return;   /* either connecting, or session_failed() moved on already */
        }
        if (skipped[0])
                smtp_all_result(d, false, "4.7.5", "%s", skipped);
        else
                smtp_all_result(d, false, "4.4.1", "no address to connect to for %s", d->nexthop);
        smtp_delivery_finish(d);
}

/* Detaches d from its session (which is closed). */
void smtp_session_abort(SmtpDelivery *d) {
        if (d->session) {
                d->session->d = NULL;
                session_free(d->session);
                d->session = NULL;
        }
}

/* Frees every cached connection (shutdown). */
void smtp_sessions_done(Smtp *smtp) {
        while (smtp->idle)
                session_quit(smtp->idle);
}
