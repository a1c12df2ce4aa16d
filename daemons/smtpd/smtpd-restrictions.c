/* smtpd-restrictions.c — relay control and recipient validation at RCPT time.
 *
 * smtpd_client_restrictions, smtpd_helo_restrictions and smtpd_sender_restrictions (all at RCPT
 * time, as with Postfix's default smtpd_delay_reject = yes), then smtpd_relay_restrictions and
 * smtpd_recipient_restrictions, are evaluated in order; each
 * element either decides (permit ends that list, reject/defer answer the client) or passes to
 * the next. Supported: permit_mynetworks, permit_sasl_authenticated (never true without SASL),
 * reject_unauth_destination, defer_unauth_destination, reject_unlisted_recipient, permit,
 * reject, defer. An unknown element is a server configuration error (451 4.3.5), as in Postfix,
 * and so is a configuration in which neither list can ever refuse relaying.
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

int smtpd_parse_mynetworks(char **list, NetEntry **ret, size_t *ret_n) {
        size_t n = 0, cap = 0;
        NetEntry *v = NULL;

        for (char **i = list; i && *i; i++) {
                NetEntry e;
                if (parse_net(*i, &e) < 0) {
                        log_warning("mynetworks: ignoring unsupported entry \"%s\" "
                                    "(only address and address/prefix forms are supported)", *i);
                        continue;
                }
                if (n == cap) {
                        cap = cap ? cap * 2 : 8;
                        NetEntry *nv = realloc(v, cap * sizeof(NetEntry));
                        if (!nv) {
                                free(v);
                                return log_oom();
                        }
                        v = nv;
                }
                v[n++] = e;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

bool smtpd_client_in_mynetworks(Session *s) {
        if (!s->family)
                return false;
        for (size_t i = 0; i < s->settings->n_mynetworks; i++) {
                const NetEntry *n = &s->settings->mynetworks[i];
                if (net_match(n, s->family, s->addr_bytes))
                        return !n->negate;
        }
        return false;
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

static bool list_can_refuse(char **l) {
        for (char **i = l; i && *i; i++)
                if (strcaseeq(*i, "reject_unauth_destination") || strcaseeq(*i, "defer_unauth_destination") ||
                    strcaseeq(*i, "reject") || strcaseeq(*i, "defer") || strcaseeq(*i, "defer_if_permit"))
                        return true;
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

static Verdict eval_list(Session *s, char **list, const Stage *stage, const char *local, const char *domain,
                         const char *external, bool *checked_local, char **ret_reply) {
        for (char **i = list; i && *i; i++) {
                const char *e = *i;
                int err = 0;

                if (strcaseeq(e, "permit_mynetworks")) {
                        if (smtpd_client_in_mynetworks(s))
                                return VERDICT_PERMIT;
                } else if (strcaseeq(e, "permit_sasl_authenticated")) {
                        continue;
                } else if (strcaseeq(e, "reject_unauth_destination") || strcaseeq(e, "defer_unauth_destination")) {
                        bool defer = e[0] == 'd' || e[0] == 'D';
                        bool ok = smtpd_domain_is_local(s, domain, &err);
                        if (!ok && err == 0) {
                                int r = domain_list_match(&s->settings->relay_domains, domain);
                                if (r < 0)
                                        err = r;
                                ok = r > 0;
                        }
                        if (err < 0) {
                                log_warning_errno(err, "Domain lookup for %s failed: %m", domain);
                                if (asprintf(ret_reply, "451 4.3.0 <%s>: Temporary lookup failure", external) < 0)
                                        *ret_reply = NULL;
                                return VERDICT_REPLY;
                        }
                        if (!ok) {
                                if (asprintf(ret_reply, defer ? "454 4.7.1 <%s>: Relay access denied" :
                                             "554 5.7.1 <%s>: Relay access denied", external) < 0)
                                        *ret_reply = NULL;
                                return VERDICT_REPLY;
                        }
                } else if (strcaseeq(e, "reject_unlisted_recipient")) {
                        if (*checked_local)
                                continue;
                        bool local_dom = smtpd_domain_is_local(s, domain, &err);
                        if (err < 0) {
                                if (asprintf(ret_reply, "451 4.3.0 <%s>: Temporary lookup failure", external) < 0)
                                        *ret_reply = NULL;
                                return VERDICT_REPLY;
                        }
                        if (local_dom) {
                                *checked_local = true;
                                int r = check_local_recipient(s, local, external, ret_reply);
                                if (r != 0)
                                        return VERDICT_REPLY;
                        }
                } else if (strcaseeq(e, "permit")) {
                        return VERDICT_PERMIT;
                } else if (strcaseeq(e, "reject")) {
                        if (asprintf(ret_reply, "554 5.7.1 <%s>: %s rejected: Access denied",
                                     stage->entity, stage->label) < 0)
                                *ret_reply = NULL;
                        return VERDICT_REPLY;
                } else if (strcaseeq(e, "defer")) {
                        if (asprintf(ret_reply, "450 4.7.1 <%s>: %s rejected: Access denied",
                                     stage->entity, stage->label) < 0)
                                *ret_reply = NULL;
                        return VERDICT_REPLY;
                } else {
                        log_warning("Unknown smtpd restriction \"%s\" in %s; answering 451 4.3.5", e,
                                    s->settings->listener);
                        *ret_reply = strdup("451 4.3.5 Server configuration error");
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
        if (!list_can_refuse(st->relay_restrictions) && !list_can_refuse(st->recipient_restrictions)) {
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
        char **lists[] = { st->client_restrictions, st->helo_restrictions, st->sender_restrictions,
                           st->relay_restrictions, st->recipient_restrictions };
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
