/* smtpd-access.c — what an access(5) answer means, and how the restriction engine's refusals
 * reach the client and the log.
 *
 * smtpd_access_apply() turns a value found by check_*_access (or answered by a DNS or policy
 * check) into a verdict: OK, REJECT/DEFER/4NN/5NN text (a reply), DEFER_IF_PERMIT,
 * DEFER_IF_REJECT, DUNNO, a restriction list to evaluate in place, or one of the message-wide
 * actions (HOLD, DISCARD, BCC, PREPEND, REDIRECT, FILTER; INFO and WARN only log) which only set
 * fields of s->tx.actions. Replies follow Postfix: "554 5.7.1 <entity>: Sender address rejected:
 * text"; an enhanced status code at the start of the text replaces the default one and takes the
 * class of the reply code.
 *
 * smtpd_hook_access (see smtpd.h) is the lookup half of check_*_access: it builds the keys of
 * the client, HELO name, sender or recipient as Postfix does and answers at once with the first
 * value found; the restriction engine then applies it with smtpd_access_apply(), as it applies
 * a policy service's answer.
 *
 * smtpd_reply_reject() sends a refusal with smtpd_reject_footer (or the footer that
 * smtpd_reject_footer_maps finds for the reply text) and logs it in Postfix's words. A footer is
 * a new reply line unless it starts with "\c" (then it continues the last line); "\n" in it
 * starts another line; $client_address, $client_name, $localtime and $server_name expand. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/address.h"

#define FOOTER_MAX_LINES 16
#define REPLY_LINE_MAX 512

/* Length of an RFC 3463 code "d.ddd.ddd" at the start of p followed by a space or the end, else 0. */
static size_t dsn_length(const char *p) {
        const char *q = p;
        if (*q != '2' && *q != '4' && *q != '5')
                return 0;
        q++;
        for (int part = 0; part < 2; part++) {
                if (*q++ != '.')
                        return 0;
                size_t n = 0;
                while (isdigit((unsigned char) *q) && n < 3)
                        q++, n++;
                if (n == 0 || isdigit((unsigned char) *q))
                        return 0;
        }
        if (*q && *q != ' ')
                return 0;
        return (size_t) (q - p);
}

/* Splits an optional leading enhanced code off text into dsn (class forced to code's). */
static const char *take_dsn(int code, const char *text, const char *dflt, char dsn[static 16]) {
        size_t n = dsn_length(text);
        if (n > 0 && n < 16) {
                memcpy(dsn, text, n);
                dsn[n] = '\0';
                text += n;
                while (*text == ' ')
                        text++;
        } else
                snprintf(dsn, 16, "%s", dflt);
        dsn[0] = (char) ('0' + code / 100);
        return text;
}

char *smtpd_reply_build(int code, const char *dsn, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        char d[16];
        char *ret = NULL;
        va_list ap;

        va_start(ap, fmt);
        int r = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        const char *rest = take_dsn(code, text, dsn, d);
        if (asprintf(&ret, "%d %s %s", code, d, rest) < 0)
                return NULL;
        return ret;
}

static const char *stage_command(Session *s, CheckStage stage) {
        switch (stage) {
        case STAGE_CONNECT: return "CONNECT";
        case STAGE_HELO:    return s->client.esmtp ? "EHLO" : "HELO";
        case STAGE_MAIL:    return "MAIL";
        case STAGE_RCPT:    return "RCPT";
        case STAGE_DATA:    return "DATA";
        case STAGE_EOD:     return "END-OF-MESSAGE";
        case STAGE_ETRN:    return "ETRN";
        }
        return "UNKNOWN";
}

void smtpd_log_action(Session *s, CheckStage stage, const char *rcpt, const char *what, const char *text) {
        char tail[1024];
        size_t n = 0;

        if (s->tx.in_mail || s->tx.sender)
                n += (size_t) snprintf(tail + n, sizeof(tail) - n, " from=<%s>", strempty(s->tx.sender));
        if (rcpt && n < sizeof(tail))
                n += (size_t) snprintf(tail + n, sizeof(tail) - n, " to=<%s>", rcpt);
        if (n < sizeof(tail))
                n += (size_t) snprintf(tail + n, sizeof(tail) - n, " proto=%s", s->client.esmtp ? "ESMTP" : "SMTP");
        if (s->client.helo && n < sizeof(tail))
                snprintf(tail + n, sizeof(tail) - n, " helo=<%s>", s->client.helo);
        LogFields f = { .queue_id = s->tx.queue_id[0] ? s->tx.queue_id : NULL,
                        .client_address = s->client.addr[0] ? s->client.addr : NULL,
                        .sender = s->tx.sender, .recipient = rcpt };
        log_fields(LOG_INFO, &f, "%s: %s: %s from %s: %s;%s", s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE",
                   what, stage_command(s, stage), s->client.id_text, text, tail);
}

/* Expands $name and ${name} of the footer variables; unknown names stay as they are. */
static int footer_expand(Session *s, const char *in, StrBuf *out) {
        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(now, sizeof(now), "%b %e %H:%M:%S", localtime_r(&t, &tm));
        const struct { const char *name, *value; } vars[] = {
                { "client_address", s->client.addr }, { "client_name", s->client.name },
                { "localtime", now }, { "server_name", s->settings->myhostname },
        };

        for (const char *p = in; *p; p++) {
                if (*p == '$') {
                        bool brace = p[1] == '{';
                        const char *n = p + 1 + brace;
                        size_t len = strspn(n, "abcdefghijklmnopqrstuvwxyz_");
                        bool done = false;
                        for (size_t i = 0; i < ELEMENTSOF(vars) && !done; i++)
                                if (strlen(vars[i].name) == len && strncmp(n, vars[i].name, len) == 0 &&
                                    (!brace || n[len] == '}')) {
                                        if (strbuf_puts(out, vars[i].value) < 0)
                                                return -ENOMEM;
                                        p = n + len + brace - 1;
                                        done = true;
                                }
                        if (done)
                                continue;
                }
                if (strbuf_append(out, p, 1) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int append_line(StrBuf *out, int code, const char *dsn, bool last, const char *text, size_t len) {
        char buf[REPLY_LINE_MAX + 32];
        len = MIN(len, (size_t) REPLY_LINE_MAX);
        int n = snprintf(buf, sizeof(buf), "%d%c%s%s%.*s\r\n", code, last ? ' ' : '-', dsn, *dsn ? " " : "",
                         (int) len, text);
        for (int i = 0; i < n - 2; i++)
                if (buf[i] == '\r' || buf[i] == '\n')
                        buf[i] = ' ';
        return strbuf_append(out, buf, (size_t) MIN(n, (int) sizeof(buf) - 1));
}

int smtpd_reply_with_footer(Session *s, const char *reply, const char *footer, TableList *footer_maps,
                            const char *maps_name, StrBuf *out) {
        _cleanup_free_ char *mapped = NULL;
        int code = atoi(reply);
        char dsn[16] = "";
        const char *text = reply + MIN(strlen(reply), (size_t) 4);
        size_t dl = dsn_length(text);

        if (dl > 0 && dl < sizeof(dsn)) {
                memcpy(dsn, text, dl);
                dsn[dl] = '\0';
                text += dl + (text[dl] == ' ');
        }
        if (command_ehlo_discard(s) & EHLO_ENHANCEDSTATUSCODES)
                dsn[0] = '\0';   /* ENHANCEDSTATUSCODES hidden: "550 text" */
        if (footer_maps) {
                int r = table_list_lookup(footer_maps, reply, &mapped);
                if (r < 0)
                        log_warning_errno(r, "%s lookup of \"%s\" failed: %m", maps_name, reply);
                if (r > 0)
                        footer = mapped;
        }
        if (isempty(footer))
                return append_line(out, code, dsn, true, text, strlen(text));

        _cleanup_(strbuf_done) StrBuf exp = {};
        if (footer_expand(s, footer, &exp) < 0 || strbuf_puts(&exp, "") < 0)
                return -ENOMEM;
        const char *f = exp.data;
        _cleanup_(strbuf_done) StrBuf first = {};
        if (strbuf_puts(&first, text) < 0)
                return -ENOMEM;
        bool cont = startswith(f, "\\c") != NULL;
        if (cont)
                f += 2;
        /* The footer's segments, separated by the two characters "\n". */
        const char *seg[FOOTER_MAX_LINES];
        size_t seglen[FOOTER_MAX_LINES], nseg = 0;
        for (const char *p = f;;) {
                const char *e = strstr(p, "\\n");
                size_t len = e ? (size_t) (e - p) : strlen(p);
                if (nseg < FOOTER_MAX_LINES) {
                        seg[nseg] = p;
                        seglen[nseg++] = len;
                }
                if (!e)
                        break;
                p = e + 2;
        }
        size_t start = 0;
        if (cont) {
                if (strbuf_append(&first, seg[0], seglen[0]) < 0)
                        return -ENOMEM;
                start = 1;
        } else if (nseg > 0 && seglen[0] == 0)
                start = 1;   /* a leading "\n" only says "new line", which is the default */
        int r = append_line(out, code, dsn, start >= nseg, first.data ? first.data : "", first.len);
        for (size_t i = start; r >= 0 && i < nseg; i++)
                r = append_line(out, code, dsn, i + 1 == nseg, seg[i], seglen[i]);
        return r;
}

void smtpd_reply_reject(Session *s, CheckStage stage, const char *rcpt, const char *reply) {
        _cleanup_(strbuf_done) StrBuf out = {};

        smtpd_log_action(s, stage, rcpt, "reject", reply);
        smtpd_metrics_reject(stage_command(s, stage), reply);
        if (smtpd_reply_with_footer(s, reply, s->settings->reject_footer, s->settings->reject_footer_maps,
                                    "smtpd_reject_footer_maps", &out) < 0 || strbuf_puts(&out, "") < 0) {
                session_reply(s, "%s", reply);
                return;
        }
        session_reply_raw(s, out.data);
        s->last_code = atoi(reply);
        s->error_count++;
}

/* Appends "text\n" unless the same line is there already (see message_actions_add_bcc). */
static int prepend_once(StrBuf *b, const char *text) {
        size_t len = strlen(text);
        for (size_t i = 0; b->data && i + len < b->len; ) {
                if (strncmp(b->data + i, text, len) == 0 && b->data[i + len] == '\n')
                        return 0;
                const char *nl = memchr(b->data + i, '\n', b->len - i);
                if (!nl)
                        break;
                i = (size_t) (nl - b->data) + 1;
        }
        int r = strbuf_puts(b, text);
        return r < 0 ? r : strbuf_puts(b, "\n");
}

static int set_text(char **field, const char *text) {
        char *t = strdup(text);
        if (!t)
                return -ENOMEM;
        free(*field);
        *field = t;
        return 0;
}

AccessVerdict smtpd_access_apply(Session *s, CheckStage stage, const char *rcpt, const char *value,
                                 const char *entity, const char *label, char **ret_text) {
        const SmtpdSettings *st = s->settings;
        char cmd[32], dsn[16];
        _cleanup_free_ char *logtext = NULL;

        *ret_text = NULL;
        while (isspace((unsigned char) *value))
                value++;
        size_t cl = strcspn(value, " \t");
        const char *text = value + cl;
        while (isspace((unsigned char) *text))
                text++;
        snprintf(cmd, sizeof(cmd), "%.*s", (int) MIN(cl, sizeof(cmd) - 1), value);

        if (strcaseeq(cmd, "OK") || (cl > 0 && strspn(value, "0123456789") == cl && !*text))
                return ACCESS_OK;
        if (strcaseeq(cmd, "DUNNO"))
                return ACCESS_DUNNO;
        if (strcaseeq(cmd, "REJECT") || strcaseeq(cmd, "DEFER") || strcaseeq(cmd, "DEFER_IF_PERMIT") ||
            strcaseeq(cmd, "DEFER_IF_REJECT")) {
                bool reject = strcaseeq(cmd, "REJECT"), defer = strcaseeq(cmd, "DEFER");
                int code = reject ? st->access_reject_code : defer ? st->access_defer_code : st->defer_code;
                const char *rest = take_dsn(code, text, code >= 500 ? "5.7.1" : "4.7.1", dsn);
                *ret_text = smtpd_reply_build(code, dsn, "<%s>: %s rejected: %s", entity, label,
                                              *rest ? rest : "Access denied");
                if (!*ret_text)
                        return ACCESS_REJECT;   /* the caller answers 451 for NULL */
                return reject || defer ? ACCESS_REJECT :
                        strcaseeq(cmd, "DEFER_IF_PERMIT") ? ACCESS_DEFER_IF_PERMIT : ACCESS_DEFER_IF_REJECT;
        }
        if (cl == 3 && (value[0] == '4' || value[0] == '5') && isdigit((unsigned char) value[1]) &&
            isdigit((unsigned char) value[2])) {
                int code = atoi(value);
                const char *rest = take_dsn(code, text, code >= 500 ? "5.7.1" : "4.7.1", dsn);
                *ret_text = smtpd_reply_build(code, dsn, "<%s>: %s rejected: %s", entity, label,
                                              *rest ? rest : "Access denied");
                return ACCESS_REJECT;
        }

        /* The message-wide actions: recorded, logged, and evaluation goes on. */
        bool is_warn = strcaseeq(cmd, "WARN"), is_info = strcaseeq(cmd, "INFO");
        if (is_warn || is_info) {
                if (asprintf(&logtext, "<%s>: %s %s", entity, label, text) >= 0)
                        smtpd_log_action(s, stage, rcpt, is_warn ? "warn" : "info", logtext);
                return ACCESS_DUNNO;
        }
        const struct { const char *name, *log; bool need_arg; } acts[] = {
                { "HOLD", "hold", false }, { "DISCARD", "discard", false }, { "FILTER", "filter", true },
                { "REDIRECT", "redirect", true }, { "BCC", "bcc", true }, { "PREPEND", NULL, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(acts); i++) {
                if (!strcaseeq(cmd, acts[i].name))
                        continue;
                int r = 0;
                if (acts[i].need_arg && !*text) {
                        log_warning("access table action %s for <%s> has no argument; ignored", cmd, entity);
                        return ACCESS_DUNNO;
                }
                switch (i) {
                case 0: r = set_text(&s->tx.actions.hold, text); break;
                case 1: r = set_text(&s->tx.actions.discard, text); break;
                case 2: r = set_text(&s->tx.actions.filter, text); break;
                case 3: r = set_text(&s->tx.actions.redirect, text); break;
                case 4: r = message_actions_add_bcc(&s->tx.actions, text); break;
                case 5:
                        r = prepend_once(&s->tx.actions.prepend, text);
                        break;
                }
                if (r < 0) {
                        /* Accepting the message without the action would be worse than a retry. */
                        log_oom();
                        *ret_text = NULL;
                        return ACCESS_REJECT;   /* the caller answers 451 4.3.0 for NULL */
                }
                if (acts[i].log) {
                        int k;
                        if (i <= 1)
                                k = asprintf(&logtext, "<%s>: %s %s", entity, label,
                                             *text ? text : i == 0 ? "triggers HOLD action" : "triggers DISCARD action");
                        else
                                k = asprintf(&logtext, "<%s>: %s triggers %s %s", entity, label, cmd, text);
                        if (k >= 0)
                                smtpd_log_action(s, stage, rcpt, acts[i].log, logtext);
                        else
                                logtext = NULL;
                }
                /* DISCARD accepts the message (and ends this restriction list) like OK. */
                return i == 1 ? ACCESS_OK : ACCESS_DUNNO;
        }
        /* Anything else is a restriction list ("permit_mynetworks, reject"). */
        *ret_text = strdup(value);
        return ACCESS_LIST;
}

/* ---- smtpd_hook_access: the keys and the lookup -------------------------------------------- */

/* Adds key (lower-cased) to a NULL-terminated key vector; false when out of memory. */
static bool key_add(char ***keys, size_t *n, const char *a, const char *sep, const char *b) {
        char *k = NULL;
        if (asprintf(&k, "%s%s%s", a, sep, b) < 0)
                return false;
        for (char *p = k; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        char **v = reallocarray(*keys, *n + 2, sizeof(char *));
        if (!v) {
                free(k);
                return false;
        }
        v[(*n)++] = k;
        v[*n] = NULL;
        *keys = v;
        return true;
}

/* A domain and its parents: "a.b.c", then "b.c", "c" (or ".b.c", ".c" when smtpd_access_maps is
 * not in parent_domain_matches_subdomains). */
static bool keys_domain(const SmtpdSettings *st, char ***keys, size_t *n, const char *domain) {
        if (!key_add(keys, n, domain, "", ""))
                return false;
        if (domain[0] == '[')
                return true;
        for (const char *d = strchr(domain, '.'); d && d[1]; d = strchr(d + 1, '.'))
                if (!key_add(keys, n, st->parent_matches_access ? d + 1 : d, "", ""))
                        return false;
        return true;
}

/* The client's name and parents, then its address and network prefixes; reverse: only the PTR
 * name, verified or not (check_reverse_client_hostname_access). */
static bool keys_client(const SmtpdSettings *st, const SmtpdClient *c, bool reverse, char ***keys, size_t *n) {
        const char *name = reverse ? c->reverse_name : c->name;
        if (!isempty(name) && !streq(name, "unknown") && !keys_domain(st, keys, n, name))
                return false;
        if (reverse)
                return true;
        if (!key_add(keys, n, c->addr, "", ""))
                return false;
        _cleanup_free_ char *a = strdup(c->addr);
        if (!a)
                return false;
        char sep = c->family == AF_INET ? '.' : ':';
        for (char *p; (p = strrchr(a, sep)) && p > a;) {
                *p = '\0';
                if (p[-1] == ':')
                        continue;   /* "::" would make a meaningless key */
                if (!key_add(keys, n, a, "", ""))
                        return false;
        }
        return true;
}

/* The address, user+ext@domain without the extension, the domain and its parents, user@ (and
 * without the extension); the null sender is smtpd_null_access_lookup_key. */
static bool keys_address(const SmtpdSettings *st, const Address *a, bool null_sender, char ***keys, size_t *n) {
        if (null_sender)
                return key_add(keys, n, st->null_access_key, "", "");
        if (!a)
                return true;
        const char *delim = st->recipient_delimiter;
        size_t cut = isempty(delim) ? 0 : strcspn(a->local, delim);
        _cleanup_free_ char *base = cut > 0 && a->local[cut] ? strndup(a->local, cut) : NULL;
        if (cut > 0 && a->local[cut] && !base)
                return false;
        return key_add(keys, n, a->external, "", "") &&
                (!base || !a->domain || key_add(keys, n, base, "@", a->domain)) &&
                (!a->domain || keys_domain(st, keys, n, a->domain)) &&
                key_add(keys, n, a->local, "@", "") &&
                (!base || key_add(keys, n, base, "@", ""));
}

static int access_start(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a,
                        SmtpdHookDone done, void *userdata, SmtpdHookOp **ret_op, char **ret_action) {
        const SmtpdSettings *st = a->settings;
        const char *el = a->element;
        _cleanup_strv_free_ char **keys = NULL;
        _cleanup_(address_freep) Address *addr = NULL;
        const char *why = NULL;
        size_t n = 0;
        bool ok = true;

        if (!a->table || !el)
                return -EINVAL;
        if (streq(el, "check_client_access") || streq(el, "check_reverse_client_hostname_access")) {
                if (c->family)
                        ok = keys_client(st, c, streq(el, "check_reverse_client_hostname_access"), &keys, &n);
        } else if (streq(el, "check_helo_access")) {
                if (a->subject)
                        ok = keys_domain(st, &keys, &n, a->subject);
        } else if (streq(el, "check_sender_access") || streq(el, "check_recipient_access") ||
                   streq(el, "check_sasl_access")) {
                /* check_sasl_access: the login name, looked up as Postfix's check_mail_access does */
                bool null_sender = streq(el, "check_sender_access") && isempty(a->subject);
                if (a->subject && !null_sender)
                        (void) address_parse(a->subject, ADDRESS_SMTPUTF8, &addr, &why);
                if (null_sender || addr)
                        ok = keys_address(st, addr, null_sender, &keys, &n);
                else if (a->subject && streq(el, "check_sasl_access"))
                        ok = key_add(&keys, &n, a->subject, "", "");   /* a login that is no address ("alice") */
        } else if (streq(el, "check_ccert_access")) {
                /* the certificate's fingerprint, then its public key's (Postfix's order) */
                if (c->ccert)
                        ok = key_add(&keys, &n, c->ccert->fingerprint, "", "") &&
                             key_add(&keys, &n, c->ccert->pkey_fingerprint, "", "");
        } else
                return -EINVAL;
        if (!ok)
                return -ENOMEM;

        for (char **k = keys; k && *k; k++) {
                _cleanup_free_ char *v = NULL;
                int r = table_lookup(a->table, *k, &v);
                if (r == -EINPROGRESS)
                        return r;   /* the evaluation runs again with the answer (table-async.h) */
                if (r < 0) {
                        log_warning_errno(r, "%s: lookup of \"%s\" failed: %m", table_spec(a->table), *k);
                        return -EIO;
                }
                if (r > 0) {
                        *ret_action = TAKE_PTR(v);
                        return 1;
                }
        }
        *ret_action = NULL;
        return 1;
}

const SmtpdHook smtpd_hook_access = {
        .name = "access",
        .start = access_start,
};
