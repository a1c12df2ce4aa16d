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

/* One key: in every table (first key) or only in the fixed-key tables. */
static int find_key(TableList *maps, bool all, const char *key, char **ret_value) {
        return all ? table_list_lookup(maps, key, ret_value) : table_list_lookup_fixed(maps, key, ret_value);
}

int addr_find(TableList *maps, const char *local, const char *domain, const char *delimiters,
              AddrFindFlags flags, char **ret_value) {
        if (!maps || !local)
                return 0;
        size_t base = addr_find_base_length(local, delimiters);
        bool ext = base < strlen(local);
        _cleanup_free_ char *key = NULL;
        int r;

        if (!isempty(domain)) {
                if (asprintf(&key, "%s@%s", local, domain) < 0)
                        return -ENOMEM;
                if ((r = find_key(maps, true, key, ret_value)) != 0)
                        return r;
                if (ext) {
                        free(key);
                        if (asprintf(&key, "%.*s@%s", (int) base, local, domain) < 0) {
                                key = NULL;
                                return -ENOMEM;
                        }
                        if ((r = find_key(maps, false, key, ret_value)) != 0)
                                return r;
                }
        }
        if ((flags & ADDR_FIND_LOCALPART) || isempty(domain)) {
                /* Without a domain the local part is the whole address: every table sees it. */
                if ((r = find_key(maps, isempty(domain), local, ret_value)) != 0)
                        return r;
                if (ext) {
                        free(key);
                        if (!(key = strndup(local, base)))
                                return -ENOMEM;
                        if ((r = find_key(maps, false, key, ret_value)) != 0)
                                return r;
                }
        }
        if (isempty(domain))
                return 0;
        free(key);
        if (asprintf(&key, "@%s", domain) < 0) {
                key = NULL;
                return -ENOMEM;
        }
        return find_key(maps, false, key, ret_value);
}
