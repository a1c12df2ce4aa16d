/* smtp-sts.h — MTA-STS (RFC 8461) for postern-smtp.
 *
 *   smtp-sts-policy.c  the text formats: the _mta-sts TXT record ("v=STSv1; id=...;") and the
 *                      policy file (version, mode, mx, max_age), and MX pattern matching
 *   smtp-sts-fetch.c   the HTTPS GET of https://mta-sts.<domain>/.well-known/mta-sts.txt on a
 *                      thread of its own (GnuTLS, certificate and host name verified, no
 *                      redirects, text/plain, size and time limits), answered in the event loop
 *   smtp-sts-cache.c   the policy cache: $queue_directory/mta-sts.db (SQLite)
 *   smtp-sts.c         discovery for a delivery: TXT lookup, cache, fetch, refresh; the policy
 *                      a delivery enforces, and the log lines */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"

#define STS_MAX_AGE_LIMIT 31557600        /* RFC 8461 3.2: at most one year */
#define STS_ID_MAX 32

typedef enum StsMode {
        STS_MODE_NONE,
        STS_MODE_TESTING,
        STS_MODE_ENFORCE,
} StsMode;

typedef struct StsPolicy {
        StsMode mode;
        char **mx;                        /* patterns, lower case ("mx.example.net", "*.example.net") */
        uint64_t max_age;                 /* seconds */
        char id[STS_ID_MAX + 1];          /* the TXT record's id this policy was fetched under */
        uint64_t fetched;                 /* CLOCK_REALTIME seconds */
        char *text;                       /* the policy file as fetched (for the cache) */
} StsPolicy;

/* smtp-sts-policy.c */
const char *sts_mode_name(StsMode m);
/* The id of a "v=STSv1; id=...;" TXT record into id (STS_ID_MAX + 1 bytes): 0, or -EINVAL when
 * the record is not a valid STSv1 record (-ENOENT when it does not start with v=STSv1). */
int sts_txt_parse(const char *txt, char *id);
/* Parses a policy file into *ret (zeroed first; free with sts_policy_done()). -EINVAL with the
 * reason in why when it is not a valid policy, -ENOMEM. */
int sts_policy_parse(const char *text, size_t len, StsPolicy *ret, char *why, size_t why_size);
void sts_policy_done(StsPolicy *p);
/* A deep copy (text included); -ENOMEM. */
int sts_policy_copy(const StsPolicy *p, StsPolicy *ret);
/* Whether MX host name host matches pattern ("*.example.net" stands for exactly one label). */
bool sts_mx_matches(const char *pattern, const char *host);
/* Whether host matches one of the policy's mx patterns. */
bool sts_policy_mx_allowed(const StsPolicy *p, const char *host);

/* smtp-sts-fetch.c */
typedef struct StsFetchConfig {
        const char *ca_file;              /* trust anchors; NULL or "": the system store */
        uint64_t timeout_usec;            /* the whole fetch: connect, handshake, request, reply */
        size_t max_size;                  /* the policy body, bytes */
        unsigned port;                    /* 443 (tests use no other, as the RFC says) */
} StsFetchConfig;
typedef struct StsFetch StsFetch;
/* Called in the event loop: r 0 with the body (NUL-terminated, len bytes; valid during the call),
 * or r < 0 with what went wrong in why. */
typedef void (*StsFetchHandler)(StsFetch *f, int r, const char *why, const char *body, size_t len,
                                void *userdata);
/* Starts fetching the policy of domain on a thread; the handler always runs later. */
int sts_fetch_start(sd_event *e, const char *domain, const StsFetchConfig *cfg, StsFetchHandler handler,
                    void *userdata, StsFetch **ret);
/* Waits for the thread (it ends within the fetch timeout) and forgets the fetch: the handler
 * will not run. */
void sts_fetch_cancel(StsFetch *f);
/* The blocking fetch itself (what the thread runs; for tests): 0 with *ret_body (caller frees),
 * or <0 with the reason in why. */
int sts_fetch_blocking(const char *domain, const StsFetchConfig *cfg, char **ret_body, size_t *ret_len,
                       char *why, size_t why_size);

/* smtp-sts-cache.c */
typedef struct SqliteCache StsCache;
/* Opens (creates) the cache file; "" keeps it in memory. <0 with the reason. */
int sts_cache_open(const char *path, StsCache **ret, char **ret_reason);
StsCache *sts_cache_free(StsCache *c);
/* 1 with *ret filled (its text parsed again), 0 none, <0 an error. */
int sts_cache_get(StsCache *c, const char *domain, StsPolicy *ret);
int sts_cache_put(StsCache *c, const char *domain, const StsPolicy *p);
int sts_cache_delete(StsCache *c, const char *domain);
