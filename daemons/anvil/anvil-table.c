/* anvil-table.c — postern-anvil's client table: one entry per "service:address" with its
 * simultaneous connections and its event rates, in a hash table bounded by
 * postern_anvil_client_limit entries.
 *
 * Connections are counted per reporting peer (one smtpd's connection to anvil), so when a peer
 * goes away the connections it reported go with it (as Postfix's anvil does per client stream).
 * Rates are counted in a fixed window of anvil_rate_time_unit that starts at a client's first
 * event; when it has passed, all of the client's rates restart from zero.
 *
 * Memory: an entry without connections is forgotten once its window has passed
 * (anvil_table_expire, run from a timer). When the table is full, the least recently used entry
 * without connections is dropped to make room (its rates restart if it comes back); entries
 * with connections are never dropped, since their counts must stay exact. If none of the 64
 * least recently used entries can be dropped, the new client is answered as a first-time client
 * without being recorded (tracked=false): limits fail open rather than refusing mail because of
 * anvil's own bound. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anvil.h"
#include "log/log.h"

#define EVICT_SCAN_MAX 64

static uint64_t hash_key(const char *k) {
        uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
        for (; *k; k++) {
                h ^= (unsigned char) *k;
                h *= 1099511628211ULL;
        }
        return h;
}

int anvil_table_init(AnvilTable *t, size_t max_entries, usec_t time_unit) {
        *t = (AnvilTable) { .max_entries = MAX(max_entries, (size_t) 1), .time_unit = MAX(time_unit, 1) };
        size_t n = 64;
        while (n < t->max_entries / 4 && n < (1u << 20))
                n *= 2;
        t->buckets = calloc(n, sizeof(AnvilEntry *));
        if (!t->buckets)
                return -ENOMEM;
        t->n_buckets = n;
        return 0;
}

static void entry_free(AnvilEntry *e) {
        free(e->key);
        free(e->holders);
        free(e);
}

void anvil_table_done(AnvilTable *t) {
        for (AnvilEntry *e = t->lru_head, *next; e; e = next) {
                next = e->lru_next;
                entry_free(e);
        }
        free(t->buckets);
        *t = (AnvilTable) {};
}

static AnvilEntry **find_slot(AnvilTable *t, const char *key) {
        AnvilEntry **p = &t->buckets[hash_key(key) & (t->n_buckets - 1)];
        while (*p && !streq((*p)->key, key))
                p = &(*p)->hash_next;
        return p;
}

static void lru_unlink(AnvilTable *t, AnvilEntry *e) {
        if (e->lru_prev)
                e->lru_prev->lru_next = e->lru_next;
        else
                t->lru_head = e->lru_next;
        if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
        else
                t->lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(AnvilTable *t, AnvilEntry *e) {
        e->lru_next = t->lru_head;
        if (t->lru_head)
                t->lru_head->lru_prev = e;
        t->lru_head = e;
        if (!t->lru_tail)
                t->lru_tail = e;
}

static void entry_remove(AnvilTable *t, AnvilEntry *e) {
        AnvilEntry **p = find_slot(t, e->key);
        if (*p == e)
                *p = e->hash_next;
        lru_unlink(t, e);
        t->n_entries--;
        entry_free(e);
}

/* Restarts the rate window when it is over. */
static void entry_window(AnvilTable *t, AnvilEntry *e, usec_t now) {
        if (now >= e->window_start + t->time_unit) {
                memset(e->rate, 0, sizeof e->rate);
                e->window_start = now;
        }
}

static void note_max(AnvilMax *m, unsigned value, const char *key) {
        if (value <= m->value)
                return;
        m->value = value;
        snprintf(m->key, sizeof m->key, "%s", key);
        m->when = time(NULL);
}

/* Makes room for one more entry; false when no entry could be dropped. */
static bool make_room(AnvilTable *t) {
        if (t->n_entries < t->max_entries)
                return true;
        AnvilEntry *e = t->lru_tail;
        for (int i = 0; e && i < EVICT_SCAN_MAX; i++, e = e->lru_prev)
                if (e->count == 0) {
                        entry_remove(t, e);
                        t->evicted++;
                        return true;
                }
        return false;
}

int anvil_table_event(AnvilTable *t, const char *key, AnvilEvent ev, const void *peer, usec_t now,
                      AnvilResult *ret) {
        AnvilEntry **slot = find_slot(t, key);
        AnvilEntry *e = *slot;

        if (!e) {
                if (!make_room(t)) {
                        t->untracked++;
                        *ret = (AnvilResult) { .count = ev == ANVIL_CONNECT, .rate = 1, .tracked = false };
                        return 0;
                }
                e = calloc(1, sizeof *e);
                if (!e || !(e->key = strdup(key))) {
                        free(e);
                        return -ENOMEM;
                }
                e->window_start = now;
                slot = find_slot(t, key);   /* make_room() may have changed the chain */
                *slot = e;
                t->n_entries++;
                lru_push_front(t, e);
                if (t->n_entries > t->max_size) {
                        t->max_size = t->n_entries;
                        t->max_size_when = time(NULL);
                }
        } else {
                lru_unlink(t, e);
                lru_push_front(t, e);
        }

        if (ev == ANVIL_CONNECT) {
                size_t i;
                for (i = 0; i < e->n_holders && e->holders[i].peer != peer; i++)
                        ;
                if (i == e->n_holders) {
                        AnvilHolder *h = realloc(e->holders, (e->n_holders + 1) * sizeof *h);
                        if (!h)
                                return -ENOMEM;
                        e->holders = h;
                        e->holders[e->n_holders++] = (AnvilHolder) { .peer = peer };
                }
                e->holders[i].count++;
                e->count++;
                note_max(&t->max_count, e->count, key);
        }
        entry_window(t, e, now);
        e->rate[ev]++;
        e->last_used = now;
        note_max(&t->max_rate[ev], e->rate[ev], key);
        *ret = (AnvilResult) { .count = e->count, .rate = e->rate[ev], .tracked = true };
        return 0;
}

void anvil_table_disconnect(AnvilTable *t, const char *key, const void *peer, usec_t now,
                            AnvilResult *ret) {
        AnvilEntry *e = *find_slot(t, key);
        *ret = (AnvilResult) { .tracked = e != NULL };
        if (!e)
                return;
        for (size_t i = 0; i < e->n_holders; i++)
                if (e->holders[i].peer == peer) {
                        e->count--;
                        if (--e->holders[i].count == 0)
                                e->holders[i] = e->holders[--e->n_holders];
                        break;
                }
        e->last_used = now;
        ret->count = e->count;
}

void anvil_table_lookup(AnvilTable *t, const char *key, usec_t now, unsigned *ret_count,
                        unsigned ret_rate[_ANVIL_EVENT_MAX]) {
        AnvilEntry *e = *find_slot(t, key);
        *ret_count = 0;
        memset(ret_rate, 0, sizeof(unsigned) * _ANVIL_EVENT_MAX);
        if (!e)
                return;
        *ret_count = e->count;
        if (now < e->window_start + t->time_unit)
                memcpy(ret_rate, e->rate, sizeof e->rate);
}

void anvil_table_drop_peer(AnvilTable *t, const void *peer) {
        for (AnvilEntry *e = t->lru_head; e; e = e->lru_next)
                for (size_t i = 0; i < e->n_holders; i++)
                        if (e->holders[i].peer == peer) {
                                e->count -= e->holders[i].count;
                                e->holders[i] = e->holders[--e->n_holders];
                                break;
                        }
}

size_t anvil_table_expire(AnvilTable *t, usec_t now) {
        size_t n = 0;
        /* The tail holds the least recently used entries: stop at the first one still in use. */
        for (AnvilEntry *e = t->lru_tail, *prev; e && now >= e->last_used + t->time_unit; e = prev) {
                prev = e->lru_prev;
                if (e->count == 0 && now >= e->window_start + t->time_unit) {
                        entry_remove(t, e);
                        n++;
                }
        }
        return n;
}

static const char *stamp(time_t when, char *buf, size_t size) {
        struct tm tm;
        if (!localtime_r(&when, &tm) || strftime(buf, size, "%b %e %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "%lld", (long long) when);
        return buf;
}

void anvil_table_log_statistics(AnvilTable *t) {
        static const char *const what[_ANVIL_EVENT_MAX] = {
                [ANVIL_CONNECT] = "connection", [ANVIL_MESSAGE] = "message",
                [ANVIL_RECIPIENT] = "recipient", [ANVIL_NEWTLS] = "newtls", [ANVIL_AUTH] = "auth",
        };
        unsigned long long unit = t->time_unit / USEC_PER_SEC;
        char when[64];

        for (int ev = 0; ev < _ANVIL_EVENT_MAX; ev++) {
                AnvilMax *m = &t->max_rate[ev];
                if (m->value > 0)
                        log_info("statistics: max %s rate %u/%llus for (%s) at %s", what[ev], m->value,
                                 unit, m->key, stamp(m->when, when, sizeof when));
                if (ev == ANVIL_CONNECT && t->max_count.value > 0)
                        log_info("statistics: max connection count %u for (%s) at %s",
                                 t->max_count.value, t->max_count.key,
                                 stamp(t->max_count.when, when, sizeof when));
        }
        if (t->max_size > 0)
                log_info("statistics: max cache size %zu at %s", t->max_size,
                         stamp(t->max_size_when, when, sizeof when));
        if (t->evicted > 0 || t->untracked > 0)
                log_warning("statistics: client table full (postern_anvil_client_limit = %zu): "
                            "%llu idle client(s) dropped, %llu event(s) not recorded",
                            t->max_entries, (unsigned long long) t->evicted,
                            (unsigned long long) t->untracked);
        memset(t->max_rate, 0, sizeof t->max_rate);
        t->max_count = (AnvilMax) {};
        t->max_size = 0;
        t->evicted = t->untracked = 0;
}
