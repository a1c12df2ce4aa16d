/* strmap.h — a small string-keyed hash map (open addressing, linear probing): main.cf entries,
 * expansion caches and lookup tables in common/conf, postern-smtp's remembered results. Keys are
 * copied; values are opaque pointers freed with the free_value callback given at creation (may be
 * NULL). There is no removal: a bounded cache keeps two generations and drops the older whole. */
#pragma once

#include <stddef.h>
#include "../basic/macro.h"

typedef struct StrMap StrMap;

/* Creates an empty map; free_value (may be NULL) releases values on replace/remove/free. */
StrMap *strmap_new(void (*free_value)(void *v));
StrMap *strmap_free(StrMap *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(StrMap *, strmap_free);
/* Inserts or replaces key's value (the old value is freed). Returns 0 or -ENOMEM; on failure the
 * value is NOT freed (it still belongs to the caller). */
int strmap_put(StrMap *m, const char *key, void *value);
/* Returns the value for key or NULL. */
void *strmap_get(const StrMap *m, const char *key);
/* Removes every entry. */
void strmap_clear(StrMap *m);
size_t strmap_size(const StrMap *m);
