/* strmap.c — string-keyed hash map with linear probing. See strmap.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

typedef struct StrMapSlot {
        char *key;    /* NULL = empty slot (no deletions, so no tombstones) */
        void *value;
} StrMapSlot;

struct StrMap {
        StrMapSlot *slots;
        size_t cap;   /* power of two, or 0 */
        size_t n;
        void (*free_value)(void *v);
};

static uint64_t strmap_hash(const char *s) {
        /* FNV-1a, 64 bit */
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= 1099511628211ULL;
        }
        return h;
}

/* An empty map. */
StrMap *strmap_new(void (*free_value)(void *v)) {
        StrMap *m = calloc(1, sizeof(StrMap));
        if (m)
                m->free_value = free_value;
        return m;
}

/* Removes (and frees) every entry. */
void strmap_clear(StrMap *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->cap; i++) {
                if (!m->slots[i].key)
                        continue;
                free(m->slots[i].key);
                if (m->free_value)
                        m->free_value(m->slots[i].value);
                m->slots[i] = (StrMapSlot) {};
        }
        m->n = 0;
}

/* Frees the map and its entries; accepts NULL. */
StrMap *strmap_free(StrMap *m) {
        if (!m)
                return NULL;
        strmap_clear(m);
        free(m->slots);
        free(m);
        return NULL;
}

static StrMapSlot *strmap_find(const StrMap *m, const char *key) {
        if (m->cap == 0)
                return NULL;
        size_t mask = m->cap - 1;
        for (size_t i = strmap_hash(key) & mask;; i = (i + 1) & mask) {
                StrMapSlot *s = &m->slots[i];
                if (!s->key || streq(s->key, key))
                        return s;
        }
}

static int strmap_grow(StrMap *m) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        if (ncap > SIZE_MAX / sizeof(StrMapSlot))
                return -ENOMEM;
        StrMapSlot *old = m->slots;
        size_t ocap = m->cap;
        m->slots = calloc(ncap, sizeof(StrMapSlot));
        if (!m->slots) {
                m->slots = old;
                return -ENOMEM;
        }
        m->cap = ncap;
        for (size_t i = 0; i < ocap; i++)
                if (old[i].key)
                        *strmap_find(m, old[i].key) = old[i];
        free(old);
        return 0;
}

/* Inserts or replaces a value. */
int strmap_put(StrMap *m, const char *key, void *value) {
        StrMapSlot *s = strmap_find(m, key);
        if (s && s->key) {
                if (m->free_value && s->value != value)
                        m->free_value(s->value);
                s->value = value;
                return 0;
        }
        /* keep the load factor at most 1/2 */
        if ((m->n + 1) * 2 > m->cap) {
                int r = strmap_grow(m);
                if (r < 0)
                        return r;
                s = strmap_find(m, key);
        }
        char *k = strdup(key);
        if (!k)
                return -ENOMEM;
        s->key = k;
        s->value = value;
        m->n++;
        return 0;
}

/* The value for key, or NULL. */
void *strmap_get(const StrMap *m, const char *key) {
        StrMapSlot *s = strmap_find(m, key);
        return s && s->key ? s->value : NULL;
}

/* Number of entries. */
size_t strmap_size(const StrMap *m) {
        return m->n;
}
