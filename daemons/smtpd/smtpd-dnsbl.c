/* smtpd-dnsbl.c — the restriction elements that ask DNS (Postfix's behaviour and wording):
 *
 *   reject_rbl_client zone[=filter]       client address, reversed (IPv4 octets, IPv6 nibbles)
 *   reject_rhsbl_client/_reverse_client/_sender/_helo/_recipient zone[=filter]   a domain
 *   permit_dnswl_client zone[=filter]     "OK" when listed
 *   reject_unknown_sender_domain / _recipient_domain   no MX and no A/AAAA, or a null MX
 *   reject_unknown_helo_hostname          no A, AAAA or MX
 *   reject_unknown_client_hostname / _reverse_client_hostname   from the client's name lookup
 *
 * Each check runs as a hook, smtpd_hook_dns (see smtpd.h), and ends with a result in its final wording,
 * which the restriction engine sends as it is (no "<entity>: ... rejected:" decoration): NULL to
 * go on, "OK" (DNSWL hit), a complete reply ("554 5.7.1 Service unavailable; ..."), or
 * "DEFER_IF_PERMIT " and a complete reply ("DEFER_IF_PERMIT 450 4.1.8 <a@b>: Sender address
 * rejected: Domain not found") for temporary DNS failures. A list hit's reply comes from rbl_reply_maps (keyed by zone) or
 * default_rbl_reply, with $rbl_code, $rbl_domain, $rbl_class, $rbl_what, $rbl_reason, $rbl_txt
 * (the zone's TXT record), $client_address, $client_name, $helo_name, $sender, ... expanded.
 * A DNS list that fails temporarily counts as "not listed" (as in Postfix). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "log/log.h"

typedef enum CheckKind {
        CK_RBL_CLIENT,
        CK_DNSWL_CLIENT,
        CK_RHSBL_CLIENT,
        CK_RHSBL_REVERSE_CLIENT,
        CK_RHSBL_SENDER,
        CK_RHSBL_HELO,
        CK_RHSBL_RECIPIENT,
        CK_UNKNOWN_SENDER_DOMAIN,
        CK_UNKNOWN_RECIPIENT_DOMAIN,
        CK_UNKNOWN_HELO_HOSTNAME,
        CK_UNKNOWN_CLIENT_HOSTNAME,
        CK_UNKNOWN_REVERSE_CLIENT_HOSTNAME,
} CheckKind;

static const struct {
        const char *name;
        CheckKind kind;
        const char *rbl_class;
} check_names[] = {
        { "reject_rbl_client",                      CK_RBL_CLIENT,           "Client host" },
        { "permit_dnswl_client",                    CK_DNSWL_CLIENT,         "Client host" },
        { "reject_rhsbl_client",                    CK_RHSBL_CLIENT,         "Client host" },
        { "reject_rhsbl_reverse_client",            CK_RHSBL_REVERSE_CLIENT, "Unverified Client host" },
        { "reject_rhsbl_sender",                    CK_RHSBL_SENDER,         "Sender address" },
        { "reject_rhsbl_helo",                      CK_RHSBL_HELO,           "Helo command" },
        { "reject_rhsbl_recipient",                 CK_RHSBL_RECIPIENT,      "Recipient address" },
        { "reject_unknown_sender_domain",           CK_UNKNOWN_SENDER_DOMAIN, NULL },
        { "reject_unknown_recipient_domain",        CK_UNKNOWN_RECIPIENT_DOMAIN, NULL },
        { "reject_unknown_helo_hostname",           CK_UNKNOWN_HELO_HOSTNAME, NULL },
        { "reject_unknown_client_hostname",         CK_UNKNOWN_CLIENT_HOSTNAME, NULL },
        { "reject_unknown_reverse_client_hostname", CK_UNKNOWN_REVERSE_CLIENT_HOSTNAME, NULL },
};

typedef struct DnsCheck {
        const SmtpdClient *client;
        const SmtpdTransaction *tx;
        const SmtpdSettings *settings;
        Server *server;
        SmtpdHookDone done;
        void *userdata;
        CheckKind kind;
        const char *rbl_class;
        char *zone;               /* DNS lists */
        char *filter;             /* "127.0.0.[2..5]" etc., NULL: any answer */
        char *subject;            /* address or name being checked */
        char *what;               /* $rbl_what */
        char domain[DNS_NAME_MAX];
        char query_name[DNS_NAME_MAX];
        int step;                 /* unknown domain/helo: which record type is being asked */
        DnsQuery *query;
        sd_event_source *defer;   /* delivers results that were known at once */
        char *result;             /* the result for done(), NULL = DUNNO */
} DnsCheck;

static void check_free(DnsCheck *c) {
        if (!c)
                return;
        dns_query_cancel(c->query);
        sd_event_source_disable_unref(c->defer);
        free(c->zone);
        free(c->filter);
        free(c->subject);
        free(c->what);
        free(c->result);
        free(c);
}

static void check_cancel(SmtpdHookOp *op) {
        check_free((DnsCheck *) op);
}

static void check_finish(DnsCheck *c) {
        SmtpdHookDone done = c->done;
        void *userdata = c->userdata;
        char *result = TAKE_PTR(c->result);

        c->query = NULL;
        check_free(c);
        done(result, userdata);
        free(result);
}

static int on_defer(sd_event_source *src, void *userdata) {
        check_finish(userdata);
        return 0;
}

/* Ends the check from the event loop, never inside check_start(). */
static int check_finish_later(DnsCheck *c) {
        int r = sd_event_add_defer(c->server->event, &c->defer, on_defer, c);
        return r < 0 ? r : 0;
}

static void set_result(DnsCheck *c, const char *fmt, ...) _printf_(2, 3);
static void set_result(DnsCheck *c, const char *fmt, ...) {
        va_list ap;
        free(c->result);
        va_start(ap, fmt);
        if (vasprintf(&c->result, fmt, ap) < 0)
                c->result = NULL;
        va_end(ap);
        if (!c->result)
                c->result = strdup("451 4.3.0 Error: out of memory");
}

/* ---- $-expansion of rbl reply templates ---- */

typedef struct ReplyVars {
        DnsCheck *c;
        const char *txt;
} ReplyVars;

static void split_address(const char *a, const char **local, size_t *llen, const char **domain) {
        const char *at = a ? strrchr(a, '@') : NULL;
        *local = strempty(a);
        *llen = at ? (size_t) (at - a) : strlen(*local);
        *domain = at ? at + 1 : "";
}

/* Writes the value of one variable to out; unknown names expand to nothing. */
static void var_value(ReplyVars *v, const char *name, size_t nlen, StrBuf *out) {
        DnsCheck *c = v->c;
        const char *lp, *dom;
        size_t llen;
        char code[8];
#define IS(n) (nlen == strlen(n) && strncmp(name, n, nlen) == 0)
        if (IS("rbl_code")) {
                snprintf(code, sizeof(code), "%d", c->settings->maps_rbl_reject_code);
                (void) strbuf_puts(out, code);
        } else if (IS("rbl_domain"))
                (void) strbuf_puts(out, strempty(c->zone));
        else if (IS("rbl_class"))
                (void) strbuf_puts(out, strempty(c->rbl_class));
        else if (IS("rbl_what"))
                (void) strbuf_puts(out, strempty(c->what));
        else if (IS("rbl_reason") || IS("rbl_txt"))
                (void) strbuf_puts(out, strempty(v->txt));
        else if (IS("client_address"))
                (void) strbuf_puts(out, c->client->addr);
        else if (IS("client_name"))
                (void) strbuf_puts(out, c->client->name);
        else if (IS("reverse_client_name"))
                (void) strbuf_puts(out, c->client->reverse_name);
        else if (IS("helo_name"))
                (void) strbuf_puts(out, strempty(c->client->helo));
        else if (IS("sender") || IS("sender_name") || IS("sender_domain")) {
                split_address(c->tx->sender, &lp, &llen, &dom);
                if (IS("sender"))
                        (void) strbuf_puts(out, strempty(c->tx->sender));
                else if (IS("sender_name"))
                        (void) strbuf_append(out, lp, llen);
                else
                        (void) strbuf_puts(out, dom);
        } else if (IS("recipient") || IS("recipient_name") || IS("recipient_domain")) {
                const char *rcpt = c->kind == CK_RHSBL_RECIPIENT ? c->subject : NULL;
                split_address(rcpt, &lp, &llen, &dom);
                if (IS("recipient"))
                        (void) strbuf_puts(out, strempty(rcpt));
                else if (IS("recipient_name"))
                        (void) strbuf_append(out, lp, llen);
                else
                        (void) strbuf_puts(out, dom);
        }
#undef IS
}

static void expand(ReplyVars *v, const char *t, size_t len, StrBuf *out, unsigned depth) {
        for (size_t i = 0; i < len; i++) {
                if (t[i] != '$' || i + 1 >= len) {
                        (void) strbuf_append(out, t + i, 1);
                        continue;
                }
                i++;
                if (t[i] == '$') {
                        (void) strbuf_append(out, "$", 1);
                        continue;
                }
                if (t[i] != '{' && t[i] != '(') {
                        size_t n = 0;
                        while (i + n < len && (isalnum((unsigned char) t[i + n]) || t[i + n] == '_'))
                                n++;
                        if (n == 0) {
                                (void) strbuf_append(out, "$", 1);
                                i--;
                                continue;
                        }
                        var_value(v, t + i, n, out);
                        i += n - 1;
                        continue;
                }
                /* ${name}, ${name?text}, ${name:text}; text may hold further $-expressions */
                char close = t[i] == '{' ? '}' : ')';
                size_t start = ++i, n = 0, level = 1, end;
                while (start + n < len && (isalnum((unsigned char) t[start + n]) || t[start + n] == '_'))
                        n++;
                for (end = start + n; end < len; end++) {
                        if (t[end] == t[start - 1])
                                level++;
                        else if (t[end] == close && --level == 0)
                                break;
                }
                if (end >= len) {   /* unbalanced: keep the rest literally */
                        (void) strbuf_append(out, t + start - 2, len - start + 2);
                        return;
                }
                _cleanup_strbuf_ StrBuf val = STRBUF_INIT;
                var_value(v, t + start, n, &val);
                bool set = val.len > 0;
                char op = start + n < end ? t[start + n] : '\0';
                if (op == '\0')
                        (void) strbuf_append(out, strempty(val.data), val.len);
                else if ((op == '?' && set) || (op == ':' && !set)) {
                        if (depth < 4)
                                expand(v, t + start + n + 1, end - start - n - 1, out, depth + 1);
                } else if (op != '?' && op != ':')
                        (void) strbuf_append(out, t + start - 2, end - start + 3);
                i = end;
        }
}

/* The reply for a DNS list hit: template from rbl_reply_maps or default_rbl_reply, expanded,
 * with an enhanced status code added after the reply code when the template has none. */
static void rbl_reply(DnsCheck *c, const char *txt) {
        _cleanup_free_ char *mapped = NULL;
        const char *tmpl = c->settings->default_rbl_reply;

        if (c->settings->rbl_reply_maps) {
                int r = table_list_lookup(c->settings->rbl_reply_maps, c->zone, &mapped);
                if (r < 0)
                        log_warning_errno(r, "rbl_reply_maps lookup error for \"%s\": %m", c->zone);
                else if (r > 0 && mapped)
                        tmpl = mapped;
        }
        ReplyVars v = { .c = c, .txt = txt };
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        expand(&v, tmpl, strlen(tmpl), &out, 0);
        const char *t = strempty(out.data);
        for (char *p = out.data; p && *p; p++)   /* one reply line */
                if (*p == '\r' || *p == '\n')
                        *p = ' ';
        if (!(t[0] == '4' || t[0] == '5') || !isdigit((unsigned char) t[1]) ||
            !isdigit((unsigned char) t[2]) || t[3] != ' ') {
                log_warning("rbl reply template for %s does not start with a 4xx or 5xx code: \"%s\"",
                            c->zone, t);
                set_result(c, "%d 5.7.1 Service unavailable; %s [%s] blocked using %s",
                           c->settings->maps_rbl_reject_code, c->rbl_class, c->what, c->zone);
                return;
        }
        const char *rest = t + 4;
        bool has_dsn = (rest[0] == '4' || rest[0] == '5') && rest[1] == '.' && isdigit((unsigned char) rest[2]);
        if (has_dsn)
                set_result(c, "%s", t);
        else
                set_result(c, "%.3s %c.7.1 %s", t, t[0], rest);
}

/* ---- DNS lists ---- */

/* One octet of a filter: "2", "[2..5]" or "[2;4;6]". */
static bool octet_match(const char *pat, size_t len, unsigned v) {
        char buf[64];
        if (len == 0 || len >= sizeof(buf))
                return false;
        memcpy(buf, pat, len);
        buf[len] = '\0';
        if (buf[0] != '[')
                return (unsigned) strtoul(buf, NULL, 10) == v && isdigit((unsigned char) buf[0]);
        if (buf[len - 1] != ']')
                return false;
        buf[len - 1] = '\0';
        char *range = strstr(buf + 1, "..");
        if (range) {
                *range = '\0';
                return v >= strtoul(buf + 1, NULL, 10) && v <= strtoul(range + 2, NULL, 10);
        }
        for (char *save = NULL, *tok = strtok_r(buf + 1, ";", &save); tok; tok = strtok_r(NULL, ";", &save))
                if ((unsigned) strtoul(tok, NULL, 10) == v)
                        return true;
        return false;
}

bool smtpd_dnsbl_filter_match(const char *filter, const uint8_t *a) {
        const char *p = filter;
        for (int i = 0; i < 4; i++) {
                const char *end = p;
                if (*p == '[') {
                        end = strchr(p, ']');
                        if (!end)
                                return false;
                        end++;
                } else
                        while (isdigit((unsigned char) *end))
                                end++;
                if (!octet_match(p, (size_t) (end - p), a[i]))
                        return false;
                if (i < 3 && *end != '.')
                        return false;
                p = i < 3 ? end + 1 : end;
        }
        return *p == '\0';
}

static void on_rbl_txt(DnsQuery *q, const DnsResult *r, void *userdata) {
        DnsCheck *c = userdata;
        c->query = NULL;
        rbl_reply(c, r->status == DNS_FOUND && r->n_records > 0 ? r->records[0].text : NULL);
        check_finish(c);
}

static void on_rbl_a(DnsQuery *q, const DnsResult *r, void *userdata) {
        DnsCheck *c = userdata;
        bool hit = false;

        c->query = NULL;
        if (r->status == DNS_TEMPFAIL)
                log_warning("%s: RBL lookup error: Host or domain name not found. Name service error "
                            "for name=%s type=A: Host not found, try again", c->zone, c->query_name);
        for (size_t i = 0; r->status == DNS_FOUND && i < r->n_records && !hit; i++)
                hit = !c->filter || smtpd_dnsbl_filter_match(c->filter, r->records[i].addr);
        if (!hit) {
                check_finish(c);
                return;
        }
        if (c->kind == CK_DNSWL_CLIENT) {
                set_result(c, "OK");
                check_finish(c);
                return;
        }
        int k = dns_query(c->server->resolver, c->query_name, DNS_TYPE_TXT, on_rbl_txt, c, &c->query);
        if (k < 0) {
                rbl_reply(c, NULL);
                check_finish(c);
        }
}

/* The domain part of an address (or the name itself), "" when there is none to check. */
static const char *domain_of(const char *subject, bool address) {
        if (isempty(subject))
                return "";
        if (!address)
                return subject[0] == '[' ? "" : subject;   /* address literals are not names */
        const char *at = strrchr(subject, '@');
        if (!at || at[1] == '[')
                return "";
        return at + 1;
}

static int start_list(DnsCheck *c, const char *arg) {
        const char *eq = arg ? strchr(arg, '=') : NULL;
        const char *name = NULL;
        int r;

        if (isempty(arg))
                return -EINVAL;
        c->zone = eq ? strndup(arg, (size_t) (eq - arg)) : strdup(arg);
        if (!c->zone || (eq && !(c->filter = strdup(eq + 1))))
                return -ENOMEM;
        switch (c->kind) {
        case CK_RBL_CLIENT:
        case CK_DNSWL_CLIENT:
                if (!c->client->family)
                        return 0;   /* local submission: nothing to look up */
                c->what = strdup(c->client->addr);
                if (dns_reverse_name(c->client->family, c->client->addr_bytes, c->zone, c->query_name, sizeof(c->query_name)) < 0)
                        return 0;
                break;
        case CK_RHSBL_CLIENT:
                name = c->client->name_status == SMTPD_PEER_OK && c->client->family ? c->client->name : "";
                break;
        case CK_RHSBL_REVERSE_CLIENT:
                name = c->client->reverse_name_status == SMTPD_PEER_OK && c->client->family ? c->client->reverse_name : "";
                break;
        case CK_RHSBL_HELO:
                name = domain_of(c->subject ? c->subject : c->client->helo, false);
                break;
        case CK_RHSBL_SENDER:
        case CK_RHSBL_RECIPIENT:
                name = domain_of(c->subject, true);
                break;
        default:
                return -EINVAL;
        }
        if (name) {
                if (isempty(name) || streq(name, "unknown"))
                        return 0;
                if (!c->what)
                        c->what = strdup(c->kind == CK_RHSBL_SENDER || c->kind == CK_RHSBL_RECIPIENT ||
                                         c->kind == CK_RHSBL_HELO ? c->subject ? c->subject : name : name);
                char a[DNS_NAME_MAX];
                if (dns_name_to_alabel(name, a, sizeof(a)) < 0 ||
                    snprintf(c->query_name, sizeof(c->query_name), "%s.%s", a, c->zone) >= (int) sizeof(c->query_name))
                        return 0;   /* not a name DNS could list */
        }
        if (!c->what)
                return -ENOMEM;
        r = dns_query(c->server->resolver, c->query_name, DNS_TYPE_A, on_rbl_a, c, &c->query);
        if (r < 0) {
                log_warning_errno(r, "%s: RBL lookup for %s not started: %m", c->zone, c->query_name);
                return 0;
        }
        return 1;
}

/* ---- unknown domains and HELO names ---- */

/* unknown_*_tempfail_action: "defer" refuses at once, "defer_if_permit" only if nothing else
 * refuses (the engine keeps the reply until the end of the evaluation). */
static const char *tempfail_prefix(const char *action) {
        return action && streq(action, "defer") ? "" : "DEFER_IF_PERMIT ";
}

static void unknown_reply(DnsCheck *c, bool temporary) {
        const SmtpdSettings *set = c->settings;
        bool sender = c->kind == CK_UNKNOWN_SENDER_DOMAIN;

        if (c->kind == CK_UNKNOWN_HELO_HOSTNAME) {
                if (temporary)
                        set_result(c, "%s450 4.7.1 <%s>: Helo command rejected: Host not found",
                                   tempfail_prefix(set->unknown_helo_hostname_tempfail_action), c->subject);
                else
                        set_result(c, "%d %c.7.1 <%s>: Helo command rejected: Host not found",
                                   set->unknown_hostname_reject_code, set->unknown_hostname_reject_code / 100 + '0',
                                   c->subject);
                return;
        }
        const char *what = sender ? "Sender" : "Recipient";
        char detail = sender ? '8' : '2';
        if (temporary)
                set_result(c, "%s450 4.1.%c <%s>: %s address rejected: Domain not found",
                           tempfail_prefix(set->unknown_address_tempfail_action), detail, c->subject, what);
        else
                set_result(c, "%d %c.1.%c <%s>: %s address rejected: Domain not found",
                           set->unknown_address_reject_code, set->unknown_address_reject_code / 100 + '0',
                           detail, c->subject, what);
}

/* Order of lookups: domains MX, A, AAAA; HELO names A, AAAA, MX. */
static int step_type(DnsCheck *c) {
        static const int addr_first[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX };
        static const int mx_first[] = { DNS_TYPE_MX, DNS_TYPE_A, DNS_TYPE_AAAA };
        if (c->step >= 3)
                return 0;
        return c->kind == CK_UNKNOWN_HELO_HOSTNAME ? addr_first[c->step] : mx_first[c->step];
}

static void on_unknown(DnsQuery *q, const DnsResult *r, void *userdata);

static void unknown_next(DnsCheck *c, bool tempfail_seen) {
        int type = step_type(c);
        if (!type) {
                unknown_reply(c, tempfail_seen);
                check_finish(c);
                return;
        }
        int k = dns_query(c->server->resolver, c->domain, type, on_unknown, c, &c->query);
        if (k < 0) {
                unknown_reply(c, true);
                check_finish(c);
        }
}

static void on_unknown(DnsQuery *q, const DnsResult *r, void *userdata) {
        DnsCheck *c = userdata;
        int type = r->type;

        c->query = NULL;
        c->step++;
        if (r->status == DNS_FOUND) {
                bool null_mx = type == DNS_TYPE_MX && r->n_records == 1 &&
                        (streq(r->records[0].text, ".") || isempty(r->records[0].text));
                if (null_mx && c->kind != CK_UNKNOWN_HELO_HOSTNAME) {
                        if (c->kind == CK_UNKNOWN_SENDER_DOMAIN)
                                set_result(c, "550 5.7.27 <%s>: Sender address rejected: Domain %s does not accept mail (nullMX)",
                                           c->subject, c->domain);
                        else
                                set_result(c, "556 5.1.10 <%s>: Recipient address rejected: Domain %s does not accept mail (nullMX)",
                                           c->subject, c->domain);
                }
                check_finish(c);
                return;
        }
        if (r->status == DNS_TEMPFAIL) {
                unknown_reply(c, true);
                check_finish(c);
                return;
        }
        if (r->status == DNS_INVALID || (r->status == DNS_NXDOMAIN && c->kind != CK_UNKNOWN_HELO_HOSTNAME)) {
                unknown_reply(c, false);   /* the domain does not exist: no other type will help */
                check_finish(c);
                return;
        }
        unknown_next(c, false);
}

static int start_unknown(DnsCheck *c) {
        const char *name = domain_of(c->subject, c->kind != CK_UNKNOWN_HELO_HOSTNAME);
        if (isempty(name))
                return 0;   /* null sender, no domain, address literal: nothing to look up */
        snprintf(c->domain, sizeof(c->domain), "%s", name);
        int k = dns_query(c->server->resolver, c->domain, step_type(c), on_unknown, c, &c->query);
        if (k < 0) {
                unknown_reply(c, true);
                return check_finish_later(c) < 0 ? -ENOMEM : 1;
        }
        return 1;
}

/* ---- client names (known since the greeting) ---- */

static void client_name_check(DnsCheck *c) {
        bool reverse = c->kind == CK_UNKNOWN_REVERSE_CLIENT_HOSTNAME;
        int status = reverse ? c->client->reverse_name_status : c->client->name_status;
        const char *which = reverse ? "reverse hostname" : "hostname";

        if (!c->client->family || status == SMTPD_PEER_OK)
                return;
        if (status == SMTPD_PEER_TEMP)
                set_result(c, "DEFER_IF_PERMIT 450 4.7.25 Client host rejected: cannot find your %s, [%s]", which, c->client->addr);
        else
                set_result(c, "%d %c.7.25 Client host rejected: cannot find your %s, [%s]",
                           c->settings->unknown_client_reject_code,
                           c->settings->unknown_client_reject_code / 100 + '0', which, c->client->addr);
}

static int check_start(const SmtpdClient *client, const SmtpdTransaction *tx, const SmtpdHookArgs *a,
                       SmtpdHookDone done, void *userdata, SmtpdHookOp **ret, char **ret_action) {
        const char *what = a->element, *arg = a->arg, *subject = a->subject;
        DnsCheck *c;
        size_t i;
        int r;

        for (i = 0; i < ELEMENTSOF(check_names); i++)
                if (streq(check_names[i].name, what))
                        break;
        if (i >= ELEMENTSOF(check_names) || !done)
                return -EINVAL;
        c = calloc(1, sizeof(DnsCheck));
        if (!c)
                return -ENOMEM;
        c->client = client;
        c->tx = tx;
        c->settings = a->settings;
        c->server = a->server;
        c->done = done;
        c->userdata = userdata;
        c->kind = check_names[i].kind;
        c->rbl_class = check_names[i].rbl_class;
        if (subject && !(c->subject = strdup(subject))) {
                check_free(c);
                return -ENOMEM;
        }
        if (!c->server->resolver && c->kind < CK_UNKNOWN_CLIENT_HOSTNAME)
                r = 0;   /* no resolver (tests without an event loop): nothing is listed */
        else if (c->kind <= CK_RHSBL_RECIPIENT)
                r = start_list(c, arg);
        else if (c->kind <= CK_UNKNOWN_HELO_HOSTNAME)
                r = start_unknown(c);
        else {
                client_name_check(c);
                r = 0;
        }
        if (r == 0)
                r = check_finish_later(c);
        if (r < 0) {
                check_free(c);
                return r;
        }
        *ret = (SmtpdHookOp *) c;
        return 0;
}

const SmtpdHook smtpd_hook_dns = {
        .name = "dns",
        .start = check_start,
        .cancel = check_cancel,
};
