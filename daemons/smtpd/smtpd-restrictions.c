/* smtpd-restrictions.c — compiling the restriction lists, and the address and domain tests
 * they share.
 *
 * Each smtpd_*_restrictions parameter (and each class named in smtpd_restriction_classes) is
 * compiled once, when the settings are built, into an array of elements: the element kind, its
 * argument (check_*_access opens its table here; DNS zones and policy services are kept as
 * text) or a reference to a named class. An unknown word or a missing argument is a
 * configuration error naming parameter and word, at start or reload (Postfix answers 451 4.3.5
 * at run time instead). Evaluation is in smtpd-check.c, access(5) actions in smtpd-access.c.
 *
 * Address lists (mynetworks, smtpd_forbid_bare_newline_exclusions) take addresses,
 * address/prefix, [ipv6]/prefix and type:table entries (looked up with the client address, e.g.
 * cidr:), each optionally negated with "!"; the first matching entry decides. Anything else
 * (host names, /file patterns, garbage) is a configuration error, never silently dropped.
 *
 * An "authorised destination" is a domain of any address class but the default one
 * (smtpd-recipient.c): mydestination, virtual_alias_domains, virtual_mailbox_domains (exact,
 * case-insensitive) or relay_domains (also its subdomains: Postfix's
 * parent_domain_matches_subdomains default). Address literals ([127.0.0.1]) are local only for
 * this host's addresses ($inet_interfaces, $proxy_interfaces), so otherwise they are relayed only for
 * clients that may relay anyway. Routing syntax inside local parts (user%host, host!user,
 * "user@host") is never interpreted (allow_percent_hack, swap_bangpath and
 * resolve_dequoted_address in their safe settings): such addresses are local parts that fail the
 * local recipient check. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"

static int parse_net(const char *entry, NetEntry *ret) {
        char buf[128];
        const char *p = entry;
        NetEntry n = {};

        if (*p == '!') {
                n.negate = true;
                p++;
        }
        if (strlen(p) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, p);

        char *slash = strrchr(buf, '/');
        long prefix = -1;
        if (slash) {
                char *end = NULL;
                *slash = '\0';
                errno = 0;
                prefix = strtol(slash + 1, &end, 10);
                if (!isdigit((unsigned char) slash[1]) || *end || errno)
                        return -EINVAL;
        }
        char *a = buf;
        size_t l = strlen(a);
        if (l >= 2 && a[0] == '[' && a[l - 1] == ']') {
                a[l - 1] = '\0';
                a++;
        }
        if (inet_pton(AF_INET, a, n.addr) == 1) {
                n.family = AF_INET;
                if (prefix < 0)
                        prefix = 32;
                if (prefix > 32)
                        return -EINVAL;
        } else if (inet_pton(AF_INET6, a, n.addr) == 1) {
                n.family = AF_INET6;
                if (prefix < 0)
                        prefix = 128;
                if (prefix > 128)
                        return -EINVAL;
                if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *) n.addr) && prefix >= 96) {
                        memmove(n.addr, n.addr + 12, 4);
                        n.family = AF_INET;
                        prefix -= 96;
                }
        } else
                return -EINVAL;
        n.prefix = (unsigned) prefix;
        *ret = n;
        return 0;
}

static bool net_match(const NetEntry *n, int family, const uint8_t *addr) {
        if (n->family != family)
                return false;
        unsigned bits = n->prefix, i = 0;
        for (; bits >= 8; bits -= 8, i++)
                if (n->addr[i] != addr[i])
                        return false;
        if (bits == 0)
                return true;
        uint8_t mask = (uint8_t) (0xff << (8 - bits));
        return (n->addr[i] & mask) == (addr[i] & mask);
}

/* An entry Postfix would read as a host or domain name (matched against the client's name):
 * Postern has no client names. */
static const char *unsupported_why(const char *entry) {
        if (entry[0] == '/')
                return "a file may not name another file";
        return "not an address, address/prefix, [ipv6]/prefix or type:table "
               "(host and domain names are not supported: Postern does no client name lookups)";
}

int smtpd_netlist_parse(const char *param, char **given, NetList *ret) {
        _cleanup_strv_free_ char **list = NULL;
        _cleanup_free_ char *file_why = NULL;
        NetList l = {};
        int r = conf_list_expand_files(given, &list, &file_why);

        if (r < 0)
                return log_error_errno(r, "%s: %s", param, file_why ? file_why : strerror(-r));
        for (char **i = list; i && *i; i++) {
                NetEntry e = {};
                const char *p = *i;
                bool neg = *p == '!';
                const char *colon = strchr(p, ':');

                /* An address first (so "dead:beef::1" is not read as a table), then
                 * "type:name" (the type is lower-case letters only). */
                if (parse_net(p, &e) >= 0)
                        ;
                else if (colon && colon > p + neg &&
                         strspn(p + neg, "abcdefghijklmnopqrstuvwxyz") == (size_t) (colon - p - neg)) {
                        _cleanup_free_ char *why = NULL;
                        r = table_open(p + neg, 0, &e.table, &why);
                        if (r < 0) {
                                log_error_errno(r, "%s: cannot open table \"%s\": %s", param, *i,
                                                why ? why : "failed");
                                break;
                        }
                        e.negate = neg;
                } else {
                        r = log_error_errno(-EINVAL, "%s: unsupported entry \"%s\": %s", param, *i,
                                            unsupported_why(p + neg));
                        break;
                }
                NetEntry *nv = reallocarray(l.v, l.n + 1, sizeof(NetEntry));
                if (!nv) {
                        table_free(e.table);
                        r = log_oom();
                        break;
                }
                l.v = nv;
                l.v[l.n++] = e;
        }
        if (r < 0) {
                smtpd_netlist_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void smtpd_netlist_done(NetList *l) {
        for (size_t i = 0; i < l->n; i++)
                table_free(l->v[i].table);
        free(l->v);
        *l = (NetList) {};
}

/* First matching entry decides, as in Postfix's match lists ("!" makes it a non-match). */
int smtpd_netlist_match(const NetList *l, const SmtpdClient *c) {
        if (!c->family)
                return 0;
        for (size_t i = 0; i < l->n; i++) {
                const NetEntry *n = &l->v[i];
                if (n->table) {
                        _cleanup_free_ char *v = NULL;
                        int r = table_lookup(n->table, c->addr, &v);
                        if (r < 0) {
                                log_warning_errno(r, "Lookup of %s in %s failed: %m", c->addr,
                                                  table_spec(n->table));
                                return r;
                        }
                        if (r > 0)
                                return !n->negate;
                } else if (net_match(n, c->family, c->addr_bytes))
                        return !n->negate;
        }
        return 0;
}

typedef enum ArgType { ARG_NONE, ARG_TABLE, ARG_TEXT } ArgType;

typedef struct ElementDef {
        const char *name;
        Restriction kind;
        ArgType arg;
} ElementDef;

static const ElementDef elements[] = {
        { "permit_mynetworks", RESTRICT_PERMIT_MYNETWORKS, ARG_NONE },
        { "permit_sasl_authenticated", RESTRICT_PERMIT_SASL_AUTHENTICATED, ARG_NONE },
        { "reject_unauth_destination", RESTRICT_REJECT_UNAUTH_DESTINATION, ARG_NONE },
        { "defer_unauth_destination", RESTRICT_DEFER_UNAUTH_DESTINATION, ARG_NONE },
        { "permit_auth_destination", RESTRICT_PERMIT_AUTH_DESTINATION, ARG_NONE },
        { "reject_unlisted_recipient", RESTRICT_REJECT_UNLISTED_RECIPIENT, ARG_NONE },
        { "check_recipient_maps", RESTRICT_REJECT_UNLISTED_RECIPIENT, ARG_NONE },
        { "reject_unlisted_sender", RESTRICT_REJECT_UNLISTED_SENDER, ARG_NONE },
        { "permit", RESTRICT_PERMIT, ARG_NONE },
        { "reject", RESTRICT_REJECT, ARG_NONE },
        { "defer", RESTRICT_DEFER, ARG_NONE },
        { "defer_if_permit", RESTRICT_DEFER_IF_PERMIT, ARG_NONE },
        { "defer_if_reject", RESTRICT_DEFER_IF_REJECT, ARG_NONE },
        { "warn_if_reject", RESTRICT_WARN_IF_REJECT, ARG_NONE },
        { "reject_non_fqdn_helo_hostname", RESTRICT_REJECT_NON_FQDN_HELO, ARG_NONE },
        { "reject_non_fqdn_hostname", RESTRICT_REJECT_NON_FQDN_HELO, ARG_NONE },
        { "reject_invalid_helo_hostname", RESTRICT_REJECT_INVALID_HELO, ARG_NONE },
        { "reject_invalid_hostname", RESTRICT_REJECT_INVALID_HELO, ARG_NONE },
        { "reject_non_fqdn_sender", RESTRICT_REJECT_NON_FQDN_SENDER, ARG_NONE },
        { "reject_non_fqdn_recipient", RESTRICT_REJECT_NON_FQDN_RECIPIENT, ARG_NONE },
        { "check_client_access", RESTRICT_CHECK_CLIENT_ACCESS, ARG_TABLE },
        { "check_reverse_client_hostname_access", RESTRICT_CHECK_REVERSE_CLIENT_ACCESS, ARG_TABLE },
        { "check_helo_access", RESTRICT_CHECK_HELO_ACCESS, ARG_TABLE },
        { "check_sender_access", RESTRICT_CHECK_SENDER_ACCESS, ARG_TABLE },
        { "check_recipient_access", RESTRICT_CHECK_RECIPIENT_ACCESS, ARG_TABLE },
        { "check_ccert_access", RESTRICT_CHECK_CCERT_ACCESS, ARG_TABLE },
        { "permit_tls_clientcerts", RESTRICT_PERMIT_TLS_CLIENTCERTS, ARG_NONE },
        { "permit_tls_all_clientcerts", RESTRICT_PERMIT_TLS_ALL_CLIENTCERTS, ARG_NONE },
        { "reject_sender_login_mismatch", RESTRICT_SENDER_LOGIN_MISMATCH, ARG_NONE },
        { "reject_authenticated_sender_login_mismatch", RESTRICT_AUTH_SENDER_LOGIN_MISMATCH, ARG_NONE },
        { "reject_known_sender_login_mismatch", RESTRICT_KNOWN_SENDER_LOGIN_MISMATCH, ARG_NONE },
        { "reject_unauthenticated_sender_login_mismatch", RESTRICT_UNAUTH_SENDER_LOGIN_MISMATCH, ARG_NONE },
        { "reject_unauth_pipelining", RESTRICT_REJECT_UNAUTH_PIPELINING, ARG_NONE },
        { "reject_rbl_client", RESTRICT_DNS, ARG_TEXT },
        { "reject_rhsbl_client", RESTRICT_DNS, ARG_TEXT },
        { "reject_rhsbl_reverse_client", RESTRICT_DNS, ARG_TEXT },
        { "reject_rhsbl_sender", RESTRICT_DNS, ARG_TEXT },
        { "reject_rhsbl_helo", RESTRICT_DNS, ARG_TEXT },
        { "reject_rhsbl_recipient", RESTRICT_DNS, ARG_TEXT },
        { "permit_dnswl_client", RESTRICT_DNS, ARG_TEXT },
        { "reject_unknown_sender_domain", RESTRICT_DNS, ARG_NONE },
        { "reject_unknown_recipient_domain", RESTRICT_DNS, ARG_NONE },
        { "reject_unknown_helo_hostname", RESTRICT_DNS, ARG_NONE },
        { "reject_unknown_client_hostname", RESTRICT_DNS, ARG_NONE },
        { "reject_unknown_client", RESTRICT_DNS, ARG_NONE },
        { "reject_unknown_reverse_client_hostname", RESTRICT_DNS, ARG_NONE },
        { "check_policy_service", RESTRICT_POLICY, ARG_TEXT },
        { "reject_unverified_recipient", RESTRICT_VERIFY, ARG_NONE },
        { "reject_unverified_sender", RESTRICT_VERIFY, ARG_NONE },
};

void smtpd_restrictions_done(RestrictionList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].arg);
                table_free(l->v[i].table);
        }
        free(l->v);
        *l = (RestrictionList) {};
}

static int compile_word(const char *param, char **words, size_t *k, const RestrictionClass *classes,
                        size_t n_classes, RestrictionElem *ret) {
        const char *w = words[*k];
        RestrictionElem e = {};

        for (size_t c = 0; c < n_classes; c++)
                if (streq(w, classes[c].name)) {
                        e.kind = RESTRICT_CLASS;
                        e.name = classes[c].name;
                        e.class_index = c;
                        *ret = e;
                        return 0;
                }
        const ElementDef *d = NULL;
        for (size_t j = 0; j < ELEMENTSOF(elements); j++)
                if (strcaseeq(w, elements[j].name)) {
                        d = &elements[j];
                        break;
                }
        if (!d)
                return log_error_errno(-EINVAL, "%s: unknown restriction \"%s\"", param, w);
        e.kind = d->kind;
        e.name = d->name;
        if (d->arg != ARG_NONE) {
                const char *arg = words[*k + 1];
                if (!arg)
                        return log_error_errno(-EINVAL, "%s: restriction \"%s\" needs an argument",
                                               param, w);
                (*k)++;
                if (d->arg == ARG_TABLE) {
                        _cleanup_free_ char *why = NULL;
                        int r = table_open(arg, 0, &e.table, &why);
                        if (r < 0)
                                return log_error_errno(r, "%s: %s: cannot open table \"%s\": %s", param,
                                                       w, arg, why ? why : "failed");
                } else if (!(e.arg = strdup(arg)))
                        return log_oom();
        }
        *ret = e;
        return 0;
}

int smtpd_restrictions_compile(const char *param, char **words, const RestrictionClass *classes,
                               size_t n_classes, RestrictionList *ret) {
        RestrictionList l = {};
        size_t n = 0;
        int r = 0;

        for (char **i = words; i && *i; i++)
                n++;
        l.v = calloc(n ? n : 1, sizeof(RestrictionElem));
        if (!l.v)
                return log_oom();
        for (size_t k = 0; k < n; k++) {
                r = compile_word(param, words, &k, classes, n_classes, &l.v[l.n]);
                if (r < 0)
                        break;
                l.n++;
        }
        if (r < 0) {
                smtpd_restrictions_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void smtpd_restriction_classes_free(SmtpdSettings *s) {
        for (size_t i = 0; i < s->n_classes; i++) {
                free(s->classes[i].name);
                smtpd_restrictions_done(&s->classes[i].list);
        }
        free(s->classes);
        s->classes = NULL;
        s->n_classes = 0;
}

int smtpd_restriction_classes_build(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **names = conf_get_list(c, listener, "smtpd_restriction_classes");
        size_t n = 0;
        int r;

        if (!names)
                return log_oom();
        for (char **i = names; *i; i++)
                n++;
        if (n == 0)
                return 0;
        s->classes = calloc(n, sizeof(RestrictionClass));
        if (!s->classes)
                return log_oom();
        /* All names first, so classes may refer to each other. */
        for (size_t i = 0; i < n; i++) {
                for (const ElementDef *d = elements; d < elements + ELEMENTSOF(elements); d++)
                        if (strcaseeq(names[i], d->name))
                                return log_error_errno(-EINVAL, "smtpd_restriction_classes: \"%s\" is the "
                                                       "name of a restriction", names[i]);
                if (!(s->classes[i].name = strdup(names[i])))
                        return log_oom();
                s->n_classes++;
        }
        for (size_t i = 0; i < n; i++) {
                const char *raw = conf_get_raw(c, names[i], NULL);
                if (!raw)
                        return log_error_errno(-EINVAL, "smtpd_restriction_classes: class \"%s\" has no "
                                               "definition in main.cf", names[i]);
                _cleanup_strv_free_ char **words = conf_get_list(c, listener, names[i]);
                if (!words)
                        return log_oom();
                r = smtpd_restrictions_compile(names[i], words, s->classes, s->n_classes,
                                               &s->classes[i].list);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Postfix's safety net: relay control needs one of these in the relay or recipient list. */
bool smtpd_restrictions_can_refuse(const RestrictionList *l) {
        for (size_t i = 0; i < l->n; i++)
                switch (l->v[i].kind) {
                case RESTRICT_REJECT_UNAUTH_DESTINATION:
                case RESTRICT_DEFER_UNAUTH_DESTINATION:
                case RESTRICT_REJECT:
                case RESTRICT_DEFER:
                case RESTRICT_DEFER_IF_PERMIT:
                        return true;
                default:
                        break;
                }
        return false;
}
