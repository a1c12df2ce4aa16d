/* anvil.h — postern-anvil's internal interface (Postfix's anvil(8)): per-client connection
 * counts and event rates, kept in memory only (nothing survives a restart, as in Postfix).
 *
 *   anvil-table.c  the bounded hash table of clients ("service:address") with their counts,
 *                  rates, per-peer holdings, the maxima for the statistics log and expiry
 *   anvil.c        main(): the "anvil" socket (attribute protocol), the verbs, the timers
 *
 * Rates are counted in fixed windows of anvil_rate_time_unit per client, as Postfix's anvil
 * does: all of a client's rates restart when its window is over. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "basic/macro.h"

typedef enum AnvilEvent {
        ANVIL_CONNECT,      /* connection rate (the count is kept apart) */
        ANVIL_MESSAGE,
        ANVIL_RECIPIENT,
        ANVIL_NEWTLS,
        ANVIL_AUTH,
        _ANVIL_EVENT_MAX,
} AnvilEvent;

typedef struct AnvilHolder {
        const void *peer;        /* the IpcConn that reported the connections */
        unsigned count;
} AnvilHolder;

typedef struct AnvilEntry AnvilEntry;
struct AnvilEntry {
        AnvilEntry *hash_next;
        AnvilEntry *lru_prev, *lru_next;   /* most recently used first */
        char *key;                         /* "service:address" */
        unsigned count;                    /* simultaneous connections (sum of holders) */
        unsigned rate[_ANVIL_EVENT_MAX];   /* events in the current window */
        usec_t window_start;
        usec_t last_used;
        AnvilHolder *holders;
        size_t n_holders;
};

typedef struct AnvilMax {
        unsigned value;
        char key[160];
        time_t when;
} AnvilMax;

typedef struct AnvilTable {
        AnvilEntry **buckets;
        size_t n_buckets;
        size_t n_entries;
        size_t max_entries;          /* postern_anvil_client_limit */
        usec_t time_unit;            /* anvil_rate_time_unit */
        AnvilEntry *lru_head, *lru_tail;
        /* maxima since the last statistics line */
        AnvilMax max_rate[_ANVIL_EVENT_MAX];
        AnvilMax max_count;
        size_t max_size;
        time_t max_size_when;
        uint64_t evicted;            /* idle clients dropped to make room */
        uint64_t untracked;          /* events not recorded: the table was full of connected clients */
} AnvilTable;

/* The answer to one request. */
typedef struct AnvilResult {
        unsigned count;
        unsigned rate;
        bool tracked;                /* false: the table is full and the client was not recorded */
} AnvilResult;

int anvil_table_init(AnvilTable *t, size_t max_entries, usec_t time_unit);
void anvil_table_done(AnvilTable *t);
/* Records one event for key; ANVIL_CONNECT also counts a connection held by peer. */
int anvil_table_event(AnvilTable *t, const char *key, AnvilEvent ev, const void *peer, usec_t now,
                      AnvilResult *ret);
/* One connection of key held by peer ended (ignored when peer holds none). */
void anvil_table_disconnect(AnvilTable *t, const char *key, const void *peer, usec_t now,
                            AnvilResult *ret);
/* Counts and rates of key without changing them; all zero for an unknown client. */
void anvil_table_lookup(AnvilTable *t, const char *key, usec_t now, unsigned *ret_count,
                        unsigned ret_rate[_ANVIL_EVENT_MAX]);
/* Drops every connection peer held (its smtpd went away). */
void anvil_table_drop_peer(AnvilTable *t, const void *peer);
/* Forgets clients without connections whose window ended; returns how many. */
size_t anvil_table_expire(AnvilTable *t, usec_t now);
/* Logs the maxima since the last call in Postfix's wording and resets them. */
void anvil_table_log_statistics(AnvilTable *t);
