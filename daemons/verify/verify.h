/* verify.h — postern-verify's internal interface (Postfix's verify(8)): the address verification
 * cache and the probes that fill it.
 *
 *   verify-cache.c  the cache (SQLite file verify.db, or memory only): rows, the freshness rules
 *                   (verify_cache_decide(), pure), batched expiry
 *   verify-probe.c  how an address is probed: a probe message queued for postern-qmgr, which
 *                   routes it (address_verify_* overrides), has postern-smtp probe the next
 *                   hop and sends the result back (request=update ... queue_id=)
 *   verify.c        main(): the "verify" socket (attribute protocol), the cleanup timer
 *
 * Results are Postfix's: deliverable, undeliverable, undetermined (a temporary failure), and
 * pending (no result yet: a probe is on its way). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sqlite3.h>

#include "basic/macro.h"
#include "queue/queue.h"

typedef enum VerifyStatus {
        VERIFY_DELIVERABLE,
        VERIFY_UNDELIVERABLE,
        VERIFY_UNDETERMINED,
        VERIFY_PENDING,
        _VERIFY_STATUS_MAX,
} VerifyStatus;

const char *verify_status_name(VerifyStatus s);
/* -EINVAL for an unknown name. */
int verify_status_from_name(const char *name, VerifyStatus *ret);

/* One cache row. Times are seconds since the epoch; 0 = never. */
typedef struct VerifyEntry {
        VerifyStatus status;       /* PENDING: no result yet */
        int64_t updated;           /* when the result arrived */
        int64_t probed;            /* when the last probe was sent */
        char *reason;              /* the probe's reply text */
} VerifyEntry;

/* address_verify_* times in seconds. */
typedef struct VerifyPolicy {
        int64_t positive_expire, positive_refresh;
        int64_t negative_expire, negative_refresh;
        bool negative_cache;
} VerifyPolicy;

/* A probe that got no answer is sent again after this: the time it may stay queued (Postfix's
 * fixed probe lifetime). */
#define VERIFY_PROBE_TTL QUEUE_PROBE_LIFETIME_SEC

/* What a query answers and whether it must send a probe. e is NULL for an unknown address. */
typedef struct VerifyDecision {
        VerifyStatus answer;
        bool probe;
        bool expired;              /* the row is too old to answer: treat as unknown */
} VerifyDecision;
VerifyDecision verify_cache_decide(const VerifyPolicy *p, const VerifyEntry *e, int64_t now);
/* Whether a row may be deleted by the cleanup at now. */
bool verify_cache_expired(const VerifyPolicy *p, const VerifyEntry *e, int64_t now);

typedef struct VerifyCache VerifyCache;
/* Opens (creating) the cache at path, or an in-memory one for NULL/"". Sets WAL and
 * synchronous=FULL, checks the schema. On failure *ret_reason says why (allocated). */
int verify_cache_open(const char *path, VerifyCache **ret, char **ret_reason);
VerifyCache *verify_cache_free(VerifyCache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(VerifyCache *, verify_cache_free);
const char *verify_cache_path(const VerifyCache *c);   /* "(memory)" when in memory */
/* 1 with *ret filled (free with verify_entry_done), 0 when unknown, <0 on a database error. */
int verify_cache_get(VerifyCache *c, const char *address, VerifyEntry *ret);
/* Inserts or replaces a row (one durable commit). */
int verify_cache_put(VerifyCache *c, const char *address, const VerifyEntry *e);
void verify_entry_done(VerifyEntry *e);
/* Deletes at most batch expired rows; returns how many, <0 on error. *ret_more is set when the
 * batch was full (call again). */
int verify_cache_cleanup_batch(VerifyCache *c, const VerifyPolicy *p, int64_t now, unsigned batch,
                               bool *ret_more);
/* Rows in the cache, <0 on error. */
int64_t verify_cache_count(VerifyCache *c);
/* The last SQLite error message (for log lines). */
const char *verify_cache_errmsg(VerifyCache *c);

/* The probe sender: address_verify_sender qualified with @myorigin, "" for the null sender, with
 * the time suffix of address_verify_sender_ttl (ttl 0: none). Allocated. */
char *verify_probe_sender(const char *sender, const char *myorigin, int64_t ttl, int64_t now);
