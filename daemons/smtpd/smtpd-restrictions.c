/* smtpd-restrictions.c — relay control and recipient validation at RCPT time.
 *
 * smtpd_client_restrictions, smtpd_helo_restrictions and smtpd_sender_restrictions (all at RCPT
 * time, as with Postfix's default smtpd_delay_reject = yes), then smtpd_relay_restrictions and
 * smtpd_recipient_restrictions, are evaluated in order; each
 * element either decides (permit ends that list, reject/defer answer the client) or passes to
 * the next. Supported: permit_mynetworks, permit_sasl_authenticated (never true without SASL),
 * reject_unauth_destination, defer_unauth_destination, reject_unlisted_recipient, permit,
 * reject, defer. The lists are compiled into enum arrays when the settings are built: an unknown
 * element is a configuration error at start or reload (Postfix answers 451 4.3.5 at run time
 * instead). A configuration in which neither list can ever refuse relaying answers 451 4.3.5.
 *
 * Address lists (mynetworks, smtpd_forbid_bare_newline_exclusions) take addresses,
 * address/prefix, [ipv6]/prefix and type:table entries (looked up with the client address, e.g.
 * cidr:), each optionally negated with "!"; the first matching entry decides. Anything else
 * (host names, /file patterns, garbage) is a configuration error, never silently dropped.
 *
 * An "authorised destination" is a domain listed in mydestination (exact, case-insensitive) or
 * in relay_domains (also its subdomains: Postfix's parent_domain_matches_subdomains default).
 * Address literals ([127.0.0.1]) are never local here, so they are relayed only for clients
 * that may relay anyway. Routing syntax inside local parts (user%host, host!user, "user@host")
 * is never interpreted: such addresses are local parts that fail the local recipient check. */
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

/* An entry Postfix would read as a host or domain name (matched against the client's name),
 * or as a file of patterns: Postern has no client names yet and reads no pattern files. */
static const char *unsupported_why(const char *entry) {
        if (entry[0] == '/')
                return "pattern files are not supported; list the networks or use a cidr: table";
        return "not an address, address/prefix, [ipv6]/prefix or type:table "
               "(host and domain names are not supported: Postern does no client name lookups)";
}

int smtpd_netlist_parse(const char *param, char **list, NetList *ret) {
        NetList l = {};
        int r = 0;

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
int smtpd_netlist_match(const NetList *l, Session *s) {
        if (!s->family)
                return 0;
        for (size_t i = 0; i < l->n; i++) {
                const NetEntry *n = &l->v[i];
                if (n->table) {
                        _cleanup_free_ char *v = NULL;
                        int r = table_lookup(n->table, s->addr, &v);
                        if (r < 0) {
                                log_warning_errno(r, "Lookup of %s in %s failed: %m", s->addr,
                                                  table_spec(n->table));
                                return r;
                        }
                        if (r > 0)
                                return !n->negate;
                } else if (net_match(n, s->family, s->addr_bytes))
                        return !n->negate;
        }
        return 0;
}

bool smtpd_domain_is_local(Session *s, const char *domain, int *ret_error) {
        int r = domain_list_match(&s->settings->mydestination, domain);
        if (r < 0 && ret_error)
                *ret_error = r;
        return r > 0;
}

int smtpd_local_user_known(Session *s, const char *local) {
        TableList *maps = s->settings->local_recipient_maps;
        _cleanup_free_ char *key = strdup(local), *v = NULL;
        int r;

        if (s->settings->local_recipient_maps_error < 0)
                return s->settings->local_recipient_maps_error;
        if (!maps)
                return 1;
        if (!key)
                return -ENOMEM;
        for (char *p = key; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        r = table_list_lookup(maps, key, &v);
        if (r != 0)
                return r;
        const char *delim = s->settings->recipient_delimiter;
        if (!isempty(delim)) {
                size_t cut = strcspn(key, delim);
                if (cut > 0 && key[cut]) {
                        key[cut] = '\0';
                        r = table_list_lookup(maps, key, &v);
                }
        }
        return r;
}

typedef enum Verdict { VERDICT_DUNNO, VERDICT_PERMIT, VERDICT_REPLY } Verdict;

static const char *const restriction_names[] = {
        [RESTRICT_PERMIT_MYNETWORKS] = "permit_mynetworks",
        [RESTRICT_PERMIT_SASL_AUTHENTICATED] = "permit_sasl_authenticated",
        [RESTRICT_REJECT_UNAUTH_DESTINATION] = "reject_unauth_destination",
        [RESTRICT_DEFER_UNAUTH_DESTINATION] = "defer_unauth_destination",
        [RESTRICT_REJECT_UNLISTED_RECIPIENT] = "reject_unlisted_recipient",
        [RESTRICT_PERMIT] = "permit",
        [RESTRICT_REJECT] = "reject",
        [RESTRICT_DEFER] = "defer",
};

int smtpd_restrictions_compile(const char *param, char **names, RestrictionList *ret) {
        size_t n = 0;
        for (char **i = names; i && *i; i++)
                n++;
        Restriction *v = calloc(n ? n : 1, sizeof(Restriction));
        if (!v)
                return log_oom();
        for (size_t k = 0; k < n; k++) {
                size_t j = 0;
                while (j < ELEMENTSOF(restriction_names) && !strcaseeq(names[k], restriction_names[j]))
                        j++;
                if (j == ELEMENTSOF(restriction_names)) {
                        free(v);
                        return log_error_errno(-EINVAL, "%s: unknown restriction \"%s\" (supported: "
                                               "permit_mynetworks, permit_sasl_authenticated, "
                                               "reject_unauth_destination, defer_unauth_destination, "
                                               "reject_unlisted_recipient, permit, reject, defer)",
                                               param, names[k]);
                }
                v[k] = (Restriction) j;
        }
        *ret = (RestrictionList) { .v = v, .n = n };
        return 0;
}

bool smtpd_restrictions_can_refuse(const RestrictionList *l) {
        for (size_t i = 0; i < l->n; i++)
                switch (l->v[i]) {
                case RESTRICT_REJECT_UNAUTH_DESTINATION:
                case RESTRICT_DEFER_UNAUTH_DESTINATION:
                case RESTRICT_REJECT:
                case RESTRICT_DEFER:
                        return true;
                default:
                        break;
                }
        return false;
}

static int check_local_recipient(Session *s, const char *local, const char *external, char **ret_reply) {
        int r = smtpd_local_user_known(s, local), k;
        if (r > 0)
                return 0;
        if (r < 0) {
                log_warning_errno(r, "local_recipient_maps lookup of \"%s\" failed: %m", local);
                k = asprintf(ret_reply, "451 4.3.0 <%s>: Temporary lookup failure", external);
        } else {
                int code = s->settings->unknown_local_code;
                k = asprintf(ret_reply, "%d %d.1.1 <%s>: Recipient address rejected: User unknown in local "
                             "recipient table", code, code / 100, external);
        }
        if (k < 0) {
                *ret_reply = NULL;
                return -ENOMEM;
        }
        return 1;
}

/* What a list's own reject/defer refers to: "<%s>: Client host rejected" and so on. */
typedef struct Stage {
        const char *entity;
        const char *label;
} Stage;

static Verdict reply_lookup_failure(const char *external, char **ret_reply) {
        if (asprintf(ret_reply, "451 4.3.0 <%s>: Temporary lookup failure", external) < 0)
                *ret_reply = NULL;
        return VERDICT_REPLY;
}

static Verdict eval_list(Session *s, const RestrictionList *list, const Stage *stage, const char *local,
                         const char *domain, const char *external, bool *checked_local, char **ret_reply) {
        for (size_t i = 0; i < list->n; i++) {
                Restriction e = list->v[i];
                int err = 0, r;

                switch (e) {
                case RESTRICT_PERMIT_MYNETWORKS:
                        r = smtpd_netlist_match(&s->settings->mynetworks, s);
                        if (r < 0)
                                return reply_lookup_failure(external, ret_reply);
                        if (r > 0)
                                return VERDICT_PERMIT;
                        break;
                case RESTRICT_PERMIT_SASL_AUTHENTICATED:
                        if (s->sasl_username)
                                return VERDICT_PERMIT;
                        break;
                case RESTRICT_REJECT_UNAUTH_DESTINATION:
                case RESTRICT_DEFER_UNAUTH_DESTINATION: {
                        bool defer = e == RESTRICT_DEFER_UNAUTH_DESTINATION;
                        bool ok = smtpd_domain_is_local(s, domain, &err);
                        if (!ok && err == 0) {
                                r = domain_list_match(&s->settings->relay_domains, domain);
                                if (r < 0)
                                        err = r;
                                ok = r > 0;
                        }
                        if (err < 0) {
                                log_warning_errno(err, "Domain lookup for %s failed: %m", domain);
                                return reply_lookup_failure(external, ret_reply);
                        }
                        if (!ok) {
                                if (asprintf(ret_reply, defer ? "454 4.7.1 <%s>: Relay access denied" :
                                             "554 5.7.1 <%s>: Relay access denied", external) < 0)
                                        *ret_reply = NULL;
                                return VERDICT_REPLY;
                        }
                        break;
                }
                case RESTRICT_REJECT_UNLISTED_RECIPIENT: {
                        if (*checked_local)
                                break;
                        bool local_dom = smtpd_domain_is_local(s, domain, &err);
                        if (err < 0)
                                return reply_lookup_failure(external, ret_reply);
                        if (local_dom) {
                                *checked_local = true;
                                if (check_local_recipient(s, local, external, ret_reply) != 0)
                                        return VERDICT_REPLY;
                        }
                        break;
                }
                case RESTRICT_PERMIT:
                        return VERDICT_PERMIT;
                case RESTRICT_REJECT:
                        if (asprintf(ret_reply, "554 5.7.1 <%s>: %s rejected: Access denied",
                                     stage->entity, stage->label) < 0)
                                *ret_reply = NULL;
                        return VERDICT_REPLY;
                case RESTRICT_DEFER:
                        if (asprintf(ret_reply, "450 4.7.1 <%s>: %s rejected: Access denied",
                                     stage->entity, stage->label) < 0)
                                *ret_reply = NULL;
                        return VERDICT_REPLY;
                }
        }
        return VERDICT_DUNNO;
}

int smtpd_check_recipient(Session *s, const char *local, const char *domain, const char *external,
                          char **ret_reply) {
        SmtpdSettings *st = s->settings;
        bool checked_local = false;

        *ret_reply = NULL;
        if (!st->can_refuse_relay) {
                log_warning("Neither smtpd_relay_restrictions nor smtpd_recipient_restrictions can refuse "
                            "relaying (add reject_unauth_destination); refusing mail (451 4.3.5)");
                *ret_reply = strdup("451 4.3.5 Server configuration error");
                return 1;
        }
        /* smtpd_delay_reject = yes: client, HELO and sender restrictions are decided here too,
         * in Postfix's order; a permit in one list ends only that list. */
        const Stage stages[] = {
                { s->id_text, "Client host" },
                { strempty(s->helo), "Helo command" },
                { strempty(s->sender), "Sender address" },
                { external, "Recipient address" },
                { external, "Recipient address" },
        };
        const RestrictionList *lists[] = { &st->client_restrictions, &st->helo_restrictions,
                                           &st->sender_restrictions, &st->relay_restrictions,
                                           &st->recipient_restrictions };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                if (eval_list(s, lists[i], &stages[i], local, domain, external, &checked_local, ret_reply) ==
                    VERDICT_REPLY)
                        return 1;

        if (st->reject_unlisted_recipient && !checked_local) {
                int err = 0;
                bool local_dom = smtpd_domain_is_local(s, domain, &err);
                if (err < 0) {
                        if (asprintf(ret_reply, "451 4.3.0 <%s>: Temporary lookup failure", external) < 0)
                                *ret_reply = NULL;
                        return 1;
                }
                if (local_dom) {
                        int r = check_local_recipient(s, local, external, ret_reply);
                        if (r != 0) {
                                if (r < 0)
                                        *ret_reply = NULL;
                                return 1;
                        }
                }
        }
        return 0;
}
