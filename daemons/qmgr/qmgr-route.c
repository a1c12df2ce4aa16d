/* qmgr-route.c — which transport a recipient goes to.
 *
 * A recipient without a domain, or whose domain matches mydestination (case-insensitively; plain
 * names, or "type:name" lookup tables keyed by the domain), goes to the local transport. Every
 * other recipient is routed to "unavailable": Postern has no SMTP client yet, so qmgr defers it
 * with 4.3.0 and it is returned after maximal_queue_lifetime. Address literals ("[192.0.2.1]")
 * are local only when listed in mydestination (Postfix also checks inet_interfaces). */
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
