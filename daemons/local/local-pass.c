/* local-pass.c — mailbox_transport, mailbox_transport_maps, fallback_transport and
 * fallback_transport_maps: local(8) hands a user's mail to another transport instead of writing
 * the mailbox itself.
 *
 * local_pass_target() is asked by the passwd step of the alias resolution (local-alias.c) for
 * every user that is left after alias expansion, in Postfix's order: mailbox_transport_maps
 * (keyed by the lower-case user name), then mailbox_transport, for every user; and, for a user
 * not in passwd, then fallback_transport_maps and fallback_transport (before the "unknown user"
 * bounce). A value is "transport[:nexthop]" as in transport(5). The answer is a TARGET_PASS whose
 * via is the route ("transport:nexthop", the next hop possibly empty). local-forward.c then queues
 * one copy of the message per route with that route as the message's filter (an empty next hop
 * becomes $myhostname, local's own), so postern-qmgr
 * delivers it with that transport without asking local again (docs/architecture.md, "Passing
 * to mailbox_transport").
 *
 * A table that fails defers (4.3.0). A value that names no transport, or a transport name that is
 * not a plain word, or the local transport itself (which would loop), defers with 4.3.5 "mail
 * system configuration error" and a log line naming the parameter, as Postfix does for its
 * configuration errors. The tables are opened without $number substitution (as Postfix allows
 * none here). */
#include <ctype.h>
#include <stdio.h>

#include "local.h"
#include "log/log.h"

/* A transport name: a master.cf service name, also a socket name below postern_socket_directory. */
static bool transport_name_valid(const char *t, size_t n) {
        if (n == 0 || n > 64 || t[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) t[i]) && t[i] != '-' && t[i] != '_' && t[i] != '.')
                        return false;
        return true;
}

/* The target for value (found in parameter what): a TARGET_PASS, or a 4.3.5 result. */
static int pass_new(const char *what, const char *value, const char *address, Target **ret) {
        const char *v = value;
        while (isspace((unsigned char) *v))
                v++;
        size_t l = strlen(v);
        while (l > 0 && isspace((unsigned char) v[l - 1]))
                l--;
        size_t tl = strcspn(v, ":");
        if (tl > l)
                tl = l;
        _cleanup_(target_freep) Target *t = NULL;
        const char *problem = !transport_name_valid(v, tl) ? "no valid transport name" :
                              tl == 5 && strncasecmp(v, "local", 5) == 0 ? "the local transport itself (a loop)" :
                              NULL;
        if (problem) {
                log_warning("%s: value \"%.*s\" for <%s> names %s", what, (int) MIN(l, (size_t) 200), v,
                            address, problem);
                if (!(t = target_new(TARGET_RESULT, address)) ||
                    target_set_result(t, "4.3.5", "mail system configuration error") < 0)
                        return -ENOMEM;
        } else {
                if (!(t = target_new(TARGET_PASS, address)))
                        return -ENOMEM;
                /* Always "transport:nexthop": qmgr takes a filter without ':' as no route. */
                if (asprintf(&t->via, "%.*s:%.*s", (int) tl, v, tl < l ? (int) (l - tl - 1) : 0,
                             tl < l ? v + tl + 1 : "") < 0) {
                        t->via = NULL;
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(t);
        return 1;
}

/* One step: the per-user table (maps, parameter maps_name), then the single value. */
static int pass_step(TableList *maps, const char *maps_name, const char *value, const char *value_name,
                     const char *user, const char *address, Target **ret) {
        if (maps) {
                _cleanup_free_ char *found = NULL;
                _cleanup_(table_notes_done) TableNotes notes = {};
                int r = table_list_lookup_full(maps, user, &found, &notes);
                for (char **w = notes.warnings; w && *w; w++)
                        log_warning("%s: %s", maps_name, *w);
                if (r < 0) {
                        log_warning("table %s: lookup %s: %s", maps_name, user, strerror(-r));
                        _cleanup_(target_freep) Target *t = target_new(TARGET_RESULT, address);
                        if (!t || target_set_result(t, "4.3.0", "%s lookup failure for \"%s\": %s", maps_name,
                                                    user, strerror(-r)) < 0)
                                return -ENOMEM;
                        *ret = TAKE_PTR(t);
                        return 1;
                }
                if (r > 0)
                        return pass_new(maps_name, found, address, ret);
        }
        if (!isempty(value))
                return pass_new(value_name, value, address, ret);
        return 0;
}

int local_pass_target(const LocalSettings *s, const char *user, const char *address, bool known, Target **ret) {
        _cleanup_free_ char *key = strdup(user);
        if (!key)
                return -ENOMEM;
        local_ascii_lower(key);
        int r = pass_step(s->mailbox_transport_maps, "mailbox_transport_maps", s->mailbox_transport,
                          "mailbox_transport", key, address, ret);
        if (r != 0 || known)
                return r;
        return pass_step(s->fallback_transport_maps, "fallback_transport_maps", s->fallback_transport,
                         "fallback_transport", key, address, ret);
}
