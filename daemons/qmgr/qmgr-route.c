/* qmgr-route.c — which transport a recipient goes to.
 *
 * A recipient without a domain, or whose domain matches mydestination (case-insensitively; plain
 * names, or "type:name" lookup tables keyed by the domain), is local. Address literals
 * ("[192.0.2.1]") are local only when listed in mydestination (Postfix also checks
 * inet_interfaces).
 *
 * qmgr_route_transport() picks the transport and next hop as Postfix's trivial-rewrite does:
 * local domains go to $local_transport (next hop $myhostname), $relay_domains to
 * $relay_transport, everything else to $default_transport; a remote next hop is $relayhost, or
 * the recipient domain when relayhost is empty. transport_maps overrides that: looked up with
 * the full address, then the domain, then ".parent" domains, then "*"; its "transport:nexthop"
 * replaces either part that is not empty. Transports: "local", "smtp" ("relay" is smtp, as in
 * Postfix's stock master.cf), "lmtp", "error" (bounce with the text), "retry" (defer with the
 * text, Postfix's retry(8)) and "discard" (delivered, nothing sent); any other name is sent to the agent socket of that name. A table that fails
 * defers the recipient (4.3.0) rather than guess. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qmgr.h"

/* The domain of an external-form address, or NULL when it has none. */
const char *qmgr_address_domain(const char *address) {
        if (isempty(address))
                return NULL;
        size_t l = strlen(address);
        /* "\"a@b\"" is a quoted local part without a domain. */
        if (address[l - 1] == '"')
                return NULL;
        const char *at = strrchr(address, '@');
        if (!at || at[1] == '\0')
                return NULL;
        return at + 1;
}

/* A table error must not send mail elsewhere: a domain whose lookup failed is not local, and
 * every non-local recipient is deferred today, which is the right answer to a temporary failure. */
static bool domain_matches(const QmgrSettings *s, const char *domain) {
        return domain_list_match((DomainList *) &s->mydestination, domain) > 0;
}

/* Routes one recipient address. */
QmgrRoute qmgr_route(const QmgrSettings *s, const char *address) {
        const char *domain = qmgr_address_domain(address);
        if (!domain)
                return QMGR_ROUTE_LOCAL;
        return domain_matches(s, domain) ? QMGR_ROUTE_LOCAL : QMGR_ROUTE_UNAVAILABLE;
}

/* Splits "transport:nexthop" into parts (either may be empty). */
static int split_route(const char *value, char **ret_transport, char **ret_nexthop) {
        const char *colon = strchr(value, ':');
        size_t tl = colon ? (size_t) (colon - value) : strlen(value);
        char *t = strndup(value, tl);
        char *n = strdup(colon ? colon + 1 : "");
        if (!t || !n) {
                free(t);
                free(n);
                return -ENOMEM;
        }
        /* Surrounding blanks are not part of either (table values may carry them). */
        while (*t && isspace((unsigned char) t[strlen(t) - 1]))
                t[strlen(t) - 1] = '\0';
        *ret_transport = t;
        *ret_nexthop = n;
        return 0;
}

/* transport_maps: the first of address, domain, .parent domains, "*" that is found. */
static int transport_lookup(const QmgrSettings *s, const char *address, const char *domain,
                            char **ret_value) {
        if (!s->transport_maps)
                return 0;
        _cleanup_free_ char *lower = strdup(address);
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        int r = table_list_lookup(s->transport_maps, lower, ret_value);
        if (r != 0 || !domain)
                return r;
        const char *ld = lower + (domain - address);
        r = table_list_lookup(s->transport_maps, ld, ret_value);
        for (const char *p = strchr(ld, '.'); r == 0 && p; p = strchr(p + 1, '.'))
                r = table_list_lookup(s->transport_maps, p, ret_value);
        if (r == 0)
                r = table_list_lookup(s->transport_maps, "*", ret_value);
        return r;
}

/* Picks transport and next hop for a recipient (see the top of the file); <0 on a table error. */
int qmgr_route_transport(const QmgrSettings *s, const char *address, char **ret_transport,
                         char **ret_nexthop) {
        const char *domain = qmgr_address_domain(address);
        int m = domain ? domain_list_match((DomainList *) &s->mydestination, domain) : 1;
        if (m < 0)
                return -EIO;
        bool local = m > 0;
        int rm = 0;
        if (!local && domain && s->relay_domains_set) {
                rm = domain_list_match((DomainList *) &s->relay_domains, domain);
                if (rm < 0)
                        return -EIO;
        }
        const char *def = local ? s->local_transport : rm > 0 ? s->relay_transport : s->default_transport;
        _cleanup_free_ char *t = NULL, *n = NULL, *value = NULL;
        int r = split_route(def, &t, &n);
        if (r < 0)
                return r;
        if (isempty(n)) {
                free(n);
                n = strdup(local ? s->myhostname : !isempty(s->relayhost) ? s->relayhost : domain ? domain : s->myhostname);
                if (!n)
                        return -ENOMEM;
        }
        r = transport_lookup(s, address, domain, &value);
        if (r < 0)
                return -EIO;
        if (r > 0) {
                _cleanup_free_ char *mt = NULL, *mn = NULL;
                if ((r = split_route(value, &mt, &mn)) < 0)
                        return r;
                if (!isempty(mt)) {
                        bool was_local = streq(t, "local");
                        free(t);
                        t = TAKE_PTR(mt);
                        /* A transport change without a next hop: the default hop of that kind. */
                        if (isempty(mn) && was_local != streq(t, "local")) {
                                free(n);
                                n = strdup(streq(t, "local") ? s->myhostname :
                                           !isempty(s->relayhost) ? s->relayhost : domain ? domain : s->myhostname);
                                if (!n)
                                        return -ENOMEM;
                        }
                }
                if (!isempty(mn)) {
                        free(n);
                        n = TAKE_PTR(mn);
                }
        }
        if (streq(t, "relay")) {
                free(t);
                if (!(t = strdup("smtp")))
                        return -ENOMEM;
        }
        *ret_transport = TAKE_PTR(t);
        *ret_nexthop = TAKE_PTR(n);
        return 0;
}
