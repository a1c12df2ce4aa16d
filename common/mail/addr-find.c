/* addr-find.c — address lookups in Postfix's key order. See addr-find.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr-find.h"

size_t addr_find_base_length(const char *local, const char *delimiters) {
        size_t l = strlen(local);
        if (isempty(delimiters) || l < 2)
                return l;
        return 1 + strcspn(local + 1, delimiters);
}

/* The keys of addr-find.h's order, tried in this order. */
typedef enum FindStep {
        FIND_FULL,             /* user+ext@domain (no domain: user+ext) */
        FIND_BARE,             /* user@domain (user), when there is an extension */
        FIND_LOCAL_FULL,       /* user+ext, for local domains */
        FIND_LOCAL_BARE,       /* user, likewise, when there is an extension */
        FIND_AT_DOMAIN,        /* @domain */
        _FIND_STEP_MAX,
} FindStep;

int addr_find_match(TableList *maps, const char *local, const char *domain, const char *delimiters,
                    AddrFindFlags flags, AddrFindMatch *m, char **ret_value) {
        m->key = NULL;
        m->without_extension = false;
        if (!maps || !local)
                return 0;
        if (isempty(domain))
                domain = NULL;
        size_t len = strlen(local), base = addr_find_base_length(local, delimiters);
        int localpart = (flags & ADDR_FIND_LOCALPART) ? 1 : 0;
        bool ask = !localpart && m->is_local;
        int r;

        for (FindStep s = FIND_FULL; s < _FIND_STEP_MAX; s++) {
                bool bare = s == FIND_BARE || s == FIND_LOCAL_BARE;
                _cleanup_free_ char *key = NULL;

                if ((bare && base == len) || (s > FIND_BARE && !domain))
                        continue;
                if (s == FIND_LOCAL_FULL && ask) {
                        /* Asked only now: a domain test that fails does not matter when a full
                         * address matched. */
                        if ((localpart = m->is_local(domain, m->userdata)) < 0) {
                                m->key = strdup(domain);
                                return m->key ? localpart : -ENOMEM;
                        }
                }
                if ((s == FIND_LOCAL_FULL || s == FIND_LOCAL_BARE) && !localpart)
                        continue;
                int n = (int) (bare ? base : len);
                if (s == FIND_AT_DOMAIN)
                        r = asprintf(&key, "@%s", domain);
                else if (domain && s <= FIND_BARE)
                        r = asprintf(&key, "%.*s@%s", n, local, domain);
                else
                        r = asprintf(&key, "%.*s", n, local);
                if (r < 0) {
                        key = NULL;
                        return -ENOMEM;
                }
                /* The first key goes to every table (pattern tables may note skipped rules);
                 * partial keys only to those that look keys up as they are. */
                r = s == FIND_FULL ? table_list_lookup_full(maps, key, ret_value, m->notes)
                                   : table_list_lookup_fixed(maps, key, ret_value);
                if (r != 0) {
                        m->without_extension = r > 0 && bare;
                        m->key = TAKE_PTR(key);
                        return r;
                }
        }
        return 0;
}

int addr_find(TableList *maps, const char *local, const char *domain, const char *delimiters,
              AddrFindFlags flags, char **ret_value) {
        AddrFindMatch m = {};
        int r = addr_find_match(maps, local, domain, delimiters, flags, &m, ret_value);
        free(m.key);
        return r;
}
