/* smtpd-cleanup.c — the content checks of the queueing step (Postfix's cleanup(8) inside smtpd):
 * header_checks on each logical header (folded lines are one string), body_checks on each body
 * line (up to body_checks_size_limit bytes of body), message_drop_headers, hopcount_limit and the
 * To: header of always_add_missing_headers/undisclosed_recipients_header. After header_checks
 * saw a header as it came, its addresses are rewritten (smtpd_rewrite_header(), smtpd-rewrite.c)
 * in the same tail position.
 *
 * smtpd-data.c calls these from its content path: cleanup_header_begin() where a header
 * starts, cleanup_header_end() when it is complete (the next header starts or the header section
 * ends), cleanup_body_line() for each body line; before the commit it runs smtpd_hook_cleanup
 * (see smtpd.h), which answers at once with the refusal the checks decided, or NULL. The
 * header being checked is always the tail of the content buffer, so IGNORE, REPLACE and PREPEND
 * rewrite the tail in place and the message is never copied. Actions that concern the whole
 * message (HOLD, DISCARD, BCC, REDIRECT, FILTER) are recorded in s->tx.actions and applied at the
 * commit (smtpd-commit.c); REJECT and the hop count refuse the message at end of data. Each
 * action is logged in Postfix's words:
 *   ID: reject: header Subject: xxx from NAME[ADDR]; from=<a> to=<b> proto=ESMTP helo=<h>: 550 5.7.1 text */
#include <strings.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "log/log.h"
#include "mail/header-checks.h"
#include "mail/rfc822.h"

#define CLEANUP_LOG_TEXT_MAX 200
#define HOPS_REPLY "554 5.4.0 Error: too many hops"

static int open_checks(Conf *c, const char *listener, const char *param, HeaderChecks **ret) {
        _cleanup_free_ char *specs = NULL, *reason = NULL;

        if (conf_get_joined(c, listener, param, &specs) < 0)
                return log_oom();
        int r = header_checks_open(specs, ret, &reason);
        if (r < 0)
                return log_error_errno(r, "%s = %s: %s", param, specs, reason ? reason : "cannot open table");
        return 0;
}

/* The plain values (dropped headers, size and hop limits, ...) are rows of smtpd-settings.c. */
int smtpd_cleanup_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        int r;

        /* receive_override_options = no_header_body_checks: neither table is opened */
        if (s->no_header_body_checks)
                return 0;
        if ((r = open_checks(c, listener, "header_checks", &s->header_checks)) < 0 ||
            (r = open_checks(c, listener, "body_checks", &s->body_checks)) < 0 ||
            (r = open_checks(c, listener, "milter_header_checks", &s->milter_header_checks)) < 0)
                return r;
        /* mime_header_checks and nested_header_checks default to $header_checks; without MIME
         * parsing only the top-level header section is checked, so a different value cannot
         * be honoured. */
        _cleanup_strv_free_ char **hc = conf_get_list(c, listener, "header_checks");
        static const char *const unused[] = { "mime_header_checks", "nested_header_checks" };
        for (size_t i = 0; hc && i < ELEMENTSOF(unused); i++) {
                _cleanup_strv_free_ char **v = conf_get_list(c, listener, unused[i]);
                bool same = v != NULL;
                size_t k = 0;
                for (; same && v[k] && hc[k]; k++)
                        same = streq(v[k], hc[k]);
                if (!same || (v && (v[k] || hc[k])))
                        log_warning("%s: %s differs from header_checks; Postern does not parse MIME parts "
                                    "and ignores it", s->listener, unused[i]);
        }
        return 0;
}

void smtpd_cleanup_settings_done(SmtpdSettings *s) {
        header_checks_free(s->header_checks);
        header_checks_free(s->body_checks);
        header_checks_free(s->milter_header_checks);
}

/* Logs one action: "ID: hold: header Subject: x from NAME[ADDR]; from=<a> to=<b> proto=P
 * helo=<h>: text". what is "header" or "body"; the line is cut and made printable. */
static void log_action(Session *s, const char *action, const char *what, const char *line, size_t n,
                       const char *text) {
        char shown[CLEANUP_LOG_TEXT_MAX + 1];
        size_t k = 0;

        for (size_t i = 0; i < n && k < CLEANUP_LOG_TEXT_MAX; i++) {
                unsigned char c = (unsigned char) line[i];
                if (c == '\n')
                        continue;   /* a folded header is logged as one line */
                shown[k++] = c < 0x20 || c == 0x7f ? ' ' : (char) c;
        }
        shown[k] = '\0';
        LogFields f = { .queue_id = s->tx.queue_id, .client_address = s->client.addr[0] ? s->client.addr : NULL,
                        .sender = s->tx.sender, .recipient = s->tx.n_rcpts > 0 ? s->tx.rcpts[0].address : NULL };
        log_fields(streq(action, "warning") ? LOG_WARNING : LOG_INFO, &f,
                   "%s: %s: %s %s from %s; from=<%s> to=<%s> proto=%s helo=<%s>%s%s",
                   s->tx.queue_id, action, what, shown, s->client.id_text, strempty(s->tx.sender),
                   s->tx.n_rcpts > 0 ? s->tx.rcpts[0].address : "",
                   s->listener->kind == LISTENER_SUBMIT ? "LOCAL" : s->client.esmtp ? "ESMTP" : "SMTP",
                   strempty(s->client.helo), isempty(text) ? "" : ": ", strempty(text));
}

static int set_text(char **field, const char *text) {
        char *t = strdup(strempty(text));
        if (!t)
                return -ENOMEM;
        free(*field);
        *field = t;
        return 0;
}

/* The message-wide action a header or body check sets (DISCARD, HOLD, REDIRECT, FILTER): its
 * field in s->tx.actions, or NULL for an action of another kind. */
static char **message_action_field(Session *s, HeaderCheckType t) {
        switch (t) {
        case HEADER_CHECK_DISCARD:
                return &s->tx.actions.discard;
        case HEADER_CHECK_HOLD:
                return &s->tx.actions.hold;
        case HEADER_CHECK_REDIRECT:
                return &s->tx.actions.redirect;
        case HEADER_CHECK_FILTER:
                return &s->tx.actions.filter;
        default:
                return NULL;
        }
}

/* Cuts the content back to len (the header or line being replaced or dropped). */
static void content_truncate(DataState *d, size_t len) {
        if (d->content.data && len <= d->content.len) {
                d->content.len = len;
                d->content.data[len] = '\0';
        }
}

/* Looks line up in checks and applies the action. The line is content[start..content.len)
 * without its final "\n" (n bytes). Message-wide actions go to s->tx.actions; IGNORE, REPLACE and
 * PREPEND rewrite the tail. Returns where the original line now starts, SIZE_MAX when it is
 * gone (IGNORE, REPLACE). */
static size_t check_line(Session *s, HeaderChecks *checks, size_t start, size_t n, bool header) {
        DataState *d = s->tx.data;
        const char *what = header ? "header" : "body";
        _cleanup_free_ char *line = strndup(d->content.data + start, n), *raw = NULL;
        HeaderCheckAction a = {};
        const char *why = NULL;
        int r = 0;

        if (!line) {
                d->out_of_memory = true;
                log_oom();
                return start;
        }
        r = header_checks_match(checks, line, header, &a, &raw, &why);
        if (r == -EINVAL) {
                /* A bad entry is the admin's error: warn and go on, as Postfix does. */
                log_warning("%s: %s_checks %s: \"%s\": %s; ignoring it", s->tx.queue_id, what,
                            header_checks_spec(checks), strempty(raw), strna(why));
                return start;
        }
        if (r < 0) {
                /* A table that cannot be read: refuse for now rather than skip the policy. */
                log_warning_errno(r, "%s: %s_checks lookup failed: %m", s->tx.queue_id, what);
                if (!d->reject && !(d->reject = strdup("451 4.3.0 Error: queue file write error"))) {
                        d->out_of_memory = true;
                        log_oom();
                }
                return start;
        }
        if (r == 0 || a.type == HEADER_CHECK_DUNNO) {
                header_check_action_done(&a);
                return start;
        }
        size_t now = start;

        const char *name = header_check_type_name(a.type);
        switch (a.type) {
        case HEADER_CHECK_REJECT:
                if (!d->reject) {
                        _cleanup_free_ char *reply = NULL;
                        if (asprintf(&reply, "550 5.7.1 %s", a.text ? a.text : "Message content rejected") < 0)
                                r = -ENOMEM;
                        else {
                                log_action(s, name, what, line, n, reply);
                                d->reject = TAKE_PTR(reply);
                        }
                }
                break;
        case HEADER_CHECK_DISCARD:
        case HEADER_CHECK_HOLD:
        case HEADER_CHECK_REDIRECT:
        case HEADER_CHECK_FILTER:
                log_action(s, name, what, line, n, a.text);
                r = set_text(message_action_field(s, a.type), a.text);
                break;
        case HEADER_CHECK_WARN:
        case HEADER_CHECK_INFO:
                log_action(s, name, what, line, n, a.text);
                break;
        case HEADER_CHECK_IGNORE:
                content_truncate(d, start);
                now = SIZE_MAX;
                break;
        case HEADER_CHECK_REPLACE:
                log_action(s, name, what, line, n, a.text);
                content_truncate(d, start);
                now = SIZE_MAX;
                data_content_add(s, a.text, strlen(a.text));
                data_content_add(s, "\n", 1);
                break;
        case HEADER_CHECK_PREPEND:
                log_action(s, name, what, line, n, a.text);
                content_truncate(d, start);
                data_content_add(s, a.text, strlen(a.text));
                data_content_add(s, "\n", 1);
                now = start + strlen(a.text) + 1;
                data_content_add(s, line, n);
                data_content_add(s, "\n", 1);
                break;
        case HEADER_CHECK_BCC:
                log_action(s, name, what, line, n, a.text);
                r = message_actions_add_bcc(&s->tx.actions, a.text);
                break;
        default:
                break;
        }
        if (r < 0) {
                /* The action is lost: the message must not be accepted without it. */
                d->out_of_memory = true;
                log_oom();
        }
        header_check_action_done(&a);
        return now;
}

/* milter_header_checks: one header a milter added or changed, as "Name: value". Postfix applies
 * only message-wide actions here (DISCARD, FILTER, HOLD, REDIRECT, WARN; INFO too): they go to
 * s->tx.actions like header_checks' own; any other action is logged and ignored. */
int cleanup_milter_header(Session *s, const char *name, const char *value) {
        HeaderChecks *checks = s->settings->milter_header_checks;
        _cleanup_free_ char *line = NULL, *raw = NULL;
        HeaderCheckAction a = {};
        const char *why = NULL;
        int r;

        if (!checks)
                return 0;
        if (asprintf(&line, "%s: %s", name, strempty(value)) < 0)
                return -ENOMEM;
        r = header_checks_match(checks, line, true, &a, &raw, &why);
        if (r == -EINVAL) {
                log_warning("%s: milter_header_checks %s: \"%s\": %s; ignoring it", s->tx.queue_id,
                            header_checks_spec(checks), strempty(raw), strna(why));
                return 0;
        }
        if (r < 0) {
                /* as for header_checks: a table that cannot be read refuses the message for now */
                log_warning_errno(r, "%s: milter_header_checks lookup failed: %m", s->tx.queue_id);
                return r;
        }
        if (r == 0 || a.type == HEADER_CHECK_DUNNO) {
                header_check_action_done(&a);
                return 0;
        }
        const char *action = header_check_type_name(a.type);
        char **field = message_action_field(s, a.type);
        if (!field && a.type != HEADER_CHECK_WARN && a.type != HEADER_CHECK_INFO) {
                log_warning("%s: milter_header_checks %s: action %s is not supported for headers from "
                            "milters (only discard, filter, hold, redirect, warn); ignoring it",
                            s->tx.queue_id, header_checks_spec(checks), action);
                header_check_action_done(&a);
                return 0;
        }
        r = field ? set_text(field, a.text) : 0;
        if (r >= 0)
                log_action(s, action, "header", line, strlen(line), a.text);
        header_check_action_done(&a);
        return r == -ENOMEM ? log_oom() : r;
}

/* Address rewriting of the header at content[start..] (smtpd-rewrite.c), after header_checks
 * saw the original, as Postfix's cleanup does; the header is the tail, so it is replaced there. */
static void rewrite_addresses(Session *s, size_t start) {
        DataState *d = s->tx.data;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        size_t n = d->content.len - start;
        const char *h = d->content.data + start;

        if (n > 0 && h[n - 1] == '\n')
                n--;
        int r = smtpd_rewrite_header(s, h, n, &out);
        if (r == -ENOMEM)
                d->out_of_memory = true;
        else if (r < 0 && !d->reject && !(d->reject = strdup("451 4.3.0 Error: queue file write error")))
                d->out_of_memory = true;
        if (r <= 0)
                return;
        content_truncate(d, start);
        data_content_add(s, out.data, out.len);
        data_content_add(s, "\n", 1);
}

void cleanup_header_begin(Session *s) {
        DataState *d = s->tx.data;
        d->hdr_start = d->content.len;
        d->hdr_pending = true;
}

static bool header_is(const char *p, size_t nl, const char *name) {
        return strlen(name) == nl && strncasecmp(p, name, nl) == 0;
}

void cleanup_header_end(Session *s) {
        DataState *d = s->tx.data;
        SmtpdSettings *set = s->settings;

        if (!d->hdr_pending)
                return;
        d->hdr_pending = false;
        if (d->too_big || d->no_storage || !d->content.data || d->hdr_start >= d->content.len)
                return;

        size_t start = d->hdr_start, n = d->content.len - start;
        const char *p = d->content.data + start;
        if (n > 0 && p[n - 1] == '\n')
                n--;
        const char *colon = memchr(p, ':', n);
        size_t nl = colon ? (size_t) (colon - p) : 0;
        while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
                nl--;

        if (header_is(p, nl, "To") || header_is(p, nl, "Cc") || header_is(p, nl, "Bcc"))
                d->has_to = true;
        if (header_is(p, nl, "Received") && ++d->hops >= set->hopcount_limit && !d->hops_exceeded) {
                d->hops_exceeded = true;
                log_warning("%s: message rejected: hopcount exceeded", s->tx.queue_id);
        }

        bool drop = false;
        for (char **h = set->drop_headers; nl > 0 && h && *h && !drop; h++)
                drop = header_is(p, nl, *h);

        size_t orig = start;
        if (set->header_checks && !d->reject && !d->proxied)
                orig = check_line(s, set->header_checks, start, n, true);

        /* message_drop_headers apply after header_checks (as in Postfix), to the original
         * header wherever a PREPEND moved it; a removed or replaced one is gone already. */
        if (drop && orig != SIZE_MAX)
                content_truncate(d, orig);
        else if (orig != SIZE_MAX && d->hdr_rewrite != REWRITE_HEADERS_NONE)
                rewrite_addresses(s, orig);
}

bool cleanup_body_line(Session *s, const char *p, size_t n) {
        DataState *d = s->tx.data;
        SmtpdSettings *set = s->settings;

        if (!set->body_checks || d->reject || d->proxied)
                return true;
        uint64_t seen = d->body_bytes;
        d->body_bytes += n + 1;
        if (seen >= set->body_checks_size_limit)
                return true;
        /* The line is appended, then checked as the tail, like a header. */
        size_t start = d->content.len;
        data_content_add(s, p, n);
        data_content_add(s, "\n", 1);
        if (d->too_big || d->no_storage)
                return false;
        (void) check_line(s, set->body_checks, start, n, false);
        return false;   /* stored (or dropped) here */
}

int cleanup_missing_to(Session *s, StrBuf *add) {
        DataState *d = s->tx.data;
        const char *h = s->settings->undisclosed_recipients_header;

        if (d->has_to || isempty(h))
                return 0;
        return strbuf_printf(add, "%s\n", h);
}

/* smtpd_hook_cleanup: the end-of-data decision, from what the line checks recorded in t->data. */
static int cleanup_start(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a,
                         SmtpdHookDone done, void *userdata, SmtpdHookOp **ret_op, char **ret_action) {
        const DataState *d = t->data;
        if (!d)
                return -EINVAL;
        const char *reply = d->hops_exceeded ? HOPS_REPLY : d->reject ? d->reject :
                d->out_of_memory ? "451 4.3.0 Error: out of memory" : NULL;
        char *action = NULL;
        if (reply && !(action = strdup(reply)))
                return -ENOMEM;
        *ret_action = action;
        return 1;
}

const SmtpdHook smtpd_hook_cleanup = {
        .name = "cleanup",
        .start = cleanup_start,
};
