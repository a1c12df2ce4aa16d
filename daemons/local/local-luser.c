/* local-luser.c — luser_relay: a local name that is neither an alias nor a user goes to the
 * luser_relay address instead of bouncing, as in Postfix's local(8). The template is expanded
 * with local-expand.c's attributes ($user is the name, $home and $shell have no value) and the
 * result is taken as one address, never as a command, a file or a list (the attributes hold text
 * from the recipient address): an address in a local domain is resolved again like an alias
 * member (aliases, .forward, mailbox), any other is forwarded. A name that is unknown while
 * luser_relay's own address is being resolved bounces (no relay of the relay). */
#include <string.h>

#include "basic/mac-expand.h"
#include "local-expander.h"
#include "log/log.h"

int local_luser_relay(Expander *e, const char *name, const char *address) {
        const char *sender = e->sender;
        unsigned depth = e->depth;
        _cleanup_free_ char *relay = NULL;
        unsigned flags = 0;
        int r;

        if (isempty(e->s->luser_relay) || e->in_luser_relay)
                return 0;
        r = local_expand(e->s, e->s->luser_relay, name, address, NULL, NULL, &relay, &flags);
        if (r < 0)
                return r;
        char *a = relay + strspn(relay, " \t");
        for (size_t l = strlen(a); l > 0 && (a[l - 1] == ' ' || a[l - 1] == '\t'); l--)
                a[l - 1] = '\0';
        if ((flags & MAC_EXPAND_ERROR) || !*a) {
                log_warning("luser_relay = %s: %s for %s", e->s->luser_relay,
                            (flags & MAC_EXPAND_ERROR) ? "bad syntax" : "empty result", address);
                return 0;
        }
        e->in_luser_relay = true;
        r = local_expander_address(e, a, address, sender, depth + 1);
        e->in_luser_relay = false;
        return r < 0 ? r : 1;
}
