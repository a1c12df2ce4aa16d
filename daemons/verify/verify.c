/* verify.c — postern-verify: Postfix's verify(8), the address verification service that
 * postern-smtpd asks for reject_unverified_recipient and reject_unverified_sender.
 *
 * Serves the "verify" socket (/run/postern/verify, address_verify_service_name) with the
 * attribute protocol; requests may be tagged id= (multiplexed, smtpd's IpcMux):
 *
 *   request=query address=A   the cached result, probing A when it is unknown or stale:
 *                             status=ok result=deliverable|undeliverable|undetermined|pending
 *                             reason=<the probe's reply>; pending means a probe is on its way
 *                             (smtpd asks again after address_verify_poll_delay)
 *   request=lookup address=A  the same without ever probing (posternctl verify)
 *   request=update address=A result=R reason=T   stores a result (tests, administrators)
 *
 * A malformed request is answered status=error reason=<what>. When the cache cannot be used
 * (verify.db corrupt, unreadable or read-only at start: logged once with the reason) every query
 * is answered status=error reason="verify cache unavailable: ...", so smtpd applies its
 * unverified_*_tempfail_action (4xx, never 5xx); postern-verify keeps running and tries to open
 * the cache again at most every CACHE_RETRY_USEC. A result that cannot be stored (the disk
 * full, the file made read-only later) is logged and still answered.
 *
 * A probe's result replaces the row, except that a temporary failure ("undetermined") does not
 * replace a definite result that has not expired (as Postfix's verify does). Cleanup runs every
 * address_verify_cache_cleanup_interval in batches of CLEANUP_BATCH rows, one batch per event
 * loop turn, so queries are answered between batches; its end is logged as Postfix does
 * ("cache /var/spool/postern/verify.db full cleanup: retained=12 dropped=3 entries").
 *
 * A probe is a message queued for postern-qmgr (verify-probe.c); its result comes back as
 * request=update with queue_id= (counted in postern_verify_probes_total). At most
 * address_verify_pending_request_limit probes wait untried in the queue; a query that would
 * queue another is answered with what the cache has (pending for a new address), logged once
 * until a probe result arrives, and the next query of that address tries again: a flood of
 * random recipients cannot flood the queue.
 *
 * Reload: the cache times and the probe sender (the probes' routing is postern-qmgr's).
 * address_verify_map needs a restart. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon-role.h"
#include "ipc/ipc.h"
#include "log/log.h"
#include "metrics/metrics-catalog.h"
#include "metrics/metrics-store.h"
#include "verify-probe.h"
#include "verify.h"

#define CLEANUP_BATCH 500
#define CACHE_RETRY_USEC (10 * USEC_PER_SEC)
#define ADDRESS_MAX 1000

typedef struct Verify {
        Daemon *daemon;
        sd_event *event;
        IpcServer *server;
        VerifyCache *cache;
        char *cache_path;              /* "" = memory */
        usec_t cache_retry_at;
        VerifyPolicy policy;
        usec_t cleanup_interval;
        size_t pending_limit;              /* address_verify_pending_request_limit */
        bool limit_logged;                 /* ... its warning, once until probes drain */
        VerifyProber *prober;
        sd_event_source *cleanup_timer, *cleanup_batch;
        int64_t cleanup_dropped;
        bool cleanup_running;    /* a pass's batches are being run */
        uint64_t cleanup_started;
} Verify;

static int64_t now_seconds(void) {
        return (int64_t) time(NULL);
}

/* address_verify_map: "sqlite:/path" or "/path" is used; empty is memory; Postfix's other types
 * (btree:, hash:, lmdb:, also behind proxy:) are replaced by $queue_directory/verify.db. */
static char *cache_path(Conf *c) {
        const char *v = strempty(conf_get(c, "address_verify_map"));
        char *p = NULL;
        if (!*v)
                return strdup("");
        if (v[0] == '/')
                return strdup(v);
        if (startswith(v, "sqlite:"))
                return strdup(v + strlen("sqlite:"));
        if (asprintf(&p, "%s/verify.db", strempty(conf_get(c, "queue_directory"))) < 0)
                return NULL;
        log_notice("not supported: address_verify_map type of \"%s\" (Postern keeps the cache in SQLite): using %s",
                   v, p);
        return p;
}

static void load_policy(Verify *v, Conf *c) {
        v->policy = (VerifyPolicy) {
                .positive_expire = conf_get_time(c, NULL, "address_verify_positive_expire_time"),
                .positive_refresh = conf_get_time(c, NULL, "address_verify_positive_refresh_time"),
                .negative_expire = conf_get_time(c, NULL, "address_verify_negative_expire_time"),
                .negative_refresh = conf_get_time(c, NULL, "address_verify_negative_refresh_time"),
                .negative_cache = conf_get_bool(c, NULL, "address_verify_negative_cache"),
        };
        v->cleanup_interval = (usec_t) conf_get_time(c, NULL, "address_verify_cache_cleanup_interval") * USEC_PER_SEC;
        v->pending_limit = (size_t) MAX(1, conf_get_int(c, NULL, "address_verify_pending_request_limit"));
}

/* The cache, opened on first need and again after a failure (at most every CACHE_RETRY_USEC). */
static VerifyCache *cache(Verify *v) {
        if (v->cache)
                return v->cache;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now < v->cache_retry_at)
                return NULL;
        _cleanup_free_ char *why = NULL;
        int r = verify_cache_open(v->cache_path, &v->cache, &why);
        if (r < 0) {
                v->cache_retry_at = now + CACHE_RETRY_USEC;
                log_error("verify cache %s is not usable (%s): answering queries with a temporary error until it is "
                          "fixed", *v->cache_path ? v->cache_path : "(memory)", why ? why : strerror(-r));
                return NULL;
        }
        log_info("verify cache %s opened (%lld entries)", verify_cache_path(v->cache),
                 (long long) verify_cache_count(v->cache));
        return v->cache;
}

static void store(Verify *v, const char *address, const VerifyEntry *e) {
        if (!v->cache)
                return;
        if (verify_cache_put(v->cache, address, e) < 0)
                log_warning("verify cache %s: cannot store the result for <%s>: %s", verify_cache_path(v->cache),
                            address, verify_cache_errmsg(v->cache));
}

/* A result for address: stored unless it is a temporary failure and a definite result that has
 * not expired is there. */
static void record_result(Verify *v, const char *address, VerifyStatus st, const char *reason) {
        int64_t now = now_seconds();
        VerifyEntry old = {};
        int have = v->cache ? verify_cache_get(v->cache, address, &old) : 0;
        log_info("<%s>: %s (%s)", address, verify_status_name(st), reason);
        if (have > 0 && st == VERIFY_UNDETERMINED &&
            (old.status == VERIFY_DELIVERABLE || old.status == VERIFY_UNDELIVERABLE) &&
            !verify_cache_expired(&v->policy, &old, now)) {
                old.probed = 0;   /* the probe is over; the next query may send another when due */
                store(v, address, &old);
        } else
                store(v, address, &(VerifyEntry) { .status = st, .updated = now, .probed = have > 0 ? old.probed : now,
                                                    .reason = (char *) reason });
        verify_entry_done(&old);
}

static int reply(IpcConn *c, VerifyStatus st, const char *reason) {
        _cleanup_ipc_record_ IpcRecord rec = IPC_RECORD_INIT;
        if (ipc_record_add(&rec, "status", "ok") < 0 || ipc_record_add(&rec, "result", verify_status_name(st)) < 0 ||
            ipc_record_add(&rec, "reason", strempty(reason)) < 0)
                return ipc_conn_reply_error(c, "out of memory") < 0 ? -ECONNRESET : 0;
        return ipc_conn_reply(c, &rec) < 0 ? -ECONNRESET : 0;
}

static int reply_error(IpcConn *c, const char *reason) {
        return ipc_conn_reply_error(c, reason) < 0 ? -ECONNRESET : 0;
}

static const char *check_address(const char *a) {
        if (isempty(a))
                return "missing address";
        if (strlen(a) > ADDRESS_MAX)
                return "address too long";
        for (const unsigned char *p = (const unsigned char *) a; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return "invalid character in address";
        return NULL;
}

static int on_query(Verify *v, IpcConn *c, const char *address, bool may_probe) {
        VerifyCache *vc = cache(v);
        if (!vc) {
                _cleanup_free_ char *why = NULL;
                if (asprintf(&why, "verify cache unavailable: %s", *v->cache_path ? v->cache_path : "(memory)") < 0)
                        why = NULL;
                return reply_error(c, why ? why : "verify cache unavailable");
        }
        VerifyEntry e = {};
        int r = verify_cache_get(vc, address, &e);
        if (r < 0) {
                log_error("verify cache %s: lookup of <%s> failed: %s", verify_cache_path(vc), address,
                          verify_cache_errmsg(vc));
                return reply_error(c, "verify cache lookup failed");
        }
        bool known = r > 0;
        int64_t now = now_seconds();
        VerifyDecision d = verify_cache_decide(&v->policy, r > 0 ? &e : NULL, now);
        _cleanup_free_ char *reason = d.answer == VERIFY_PENDING ? strdup("address verification in progress") :
                                      TAKE_PTR(e.reason);
        size_t untried = 0;
        if (d.probe && may_probe && (r = verify_probes_untried(v->prober, &untried)) < 0)
                log_warning_errno(r, "Cannot count the probes in the queue: %m");
        if (d.probe && may_probe && untried >= v->pending_limit) {
                /* Nothing is marked: the next query of this address tries again. */
                if (!v->limit_logged)
                        log_warning("address_verify_pending_request_limit (%zu) reached: <%s> and others not probed now",
                                    v->pending_limit, address);
                v->limit_logged = true;
        } else if (d.probe && may_probe) {
                char queue_id[QUEUE_ID_MAX];
                _cleanup_free_ char *why = NULL;
                r = verify_probe_start(v->prober, address, queue_id, &why);
                if (r >= 0) {
                        VerifyEntry upd = e;
                        if (!known || d.expired) {
                                upd.status = VERIFY_PENDING;
                                upd.updated = 0;
                        }
                        upd.probed = now;
                        upd.reason = reason;
                        store(v, address, &upd);
                } else
                        log_error("<%s>: cannot start a probe: %s", address, why ? why : strerror(-r));
        }
        verify_entry_done(&e);
        /* a hit: the cache held the answer given (a stale one being refreshed included) */
        if (may_probe)
                metrics_count(METRIC_VERIFY_QUERIES, "result", verify_status_name(d.answer), "cache",
                              known && d.answer != VERIFY_PENDING ? "hit" : "miss", NULL);
        return reply(c, d.answer, reason);
}

static int on_request(IpcConn *c, const IpcRecord *req, void *userdata) {
        Verify *v = userdata;
        const char *verb = ipc_record_get(req, "request");
        const char *address = ipc_record_get(req, "address");
        const char *why;

        if (!verb)
                return reply_error(c, "missing request");
        if ((why = check_address(address)))
                return reply_error(c, why);
        if (streq(verb, "query") || streq(verb, "lookup"))
                return on_query(v, c, address, streq(verb, "query"));
        if (streq(verb, "update")) {
                VerifyStatus st;
                if (verify_status_from_name(ipc_record_get(req, "result"), &st) < 0 || st == VERIFY_PENDING)
                        return reply_error(c, "missing or invalid result (deliverable, undeliverable, undetermined)");
                if (!cache(v))
                        return reply_error(c, "verify cache unavailable");
                const char *reason = strempty(ipc_record_get(req, "reason"));
                if (ipc_record_get(req, "queue_id")) {
                        /* a probe's result, from postern-qmgr */
                        metrics_count(METRIC_VERIFY_PROBES, "result", verify_status_name(st), NULL);
                        v->limit_logged = false;
                }
                record_result(v, address, st, reason);
                return reply(c, st, reason);
        }
        return reply_error(c, "unknown request");
}

/* ---- cleanup ----------------------------------------------------------------------------- */

static int on_cleanup_batch(sd_event_source *src, uint64_t usec, void *userdata) {
        Verify *v = userdata;
        bool more = false;
        int n = v->cache ? verify_cache_cleanup_batch(v->cache, &v->policy, now_seconds(), CLEANUP_BATCH, &more) : 0;
        if (n < 0) {
                log_warning("verify cache %s: cleanup failed: %s", verify_cache_path(v->cache),
                            verify_cache_errmsg(v->cache));
                more = false;
        } else
                v->cleanup_dropped += n;
        if (more) {
                (void) sd_event_source_set_time(src, 0);   /* the next turn, after pending queries */
                (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
                return 0;
        }
        if (v->cache)
                log_info("cache %s full cleanup: retained=%lld dropped=%lld entries", verify_cache_path(v->cache),
                         (long long) verify_cache_count(v->cache), (long long) v->cleanup_dropped);
        v->cleanup_running = false;
        return 0;
}

static int on_cleanup_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Verify *v = userdata;
        if (v->cleanup_interval == 0)
                return 0;
        /* A pass still running (a big cache, a busy machine) is left to finish: starting over
         * would lose its count. */
        if (!v->cleanup_running && cache(v)) {
                v->cleanup_running = true;
                v->cleanup_dropped = 0;
                (void) sd_event_source_set_time(v->cleanup_batch, 0);
                (void) sd_event_source_set_enabled(v->cleanup_batch, SD_EVENT_ONESHOT);
        }
        (void) sd_event_source_set_time(src, usec + v->cleanup_interval);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

static void arm_cleanup(Verify *v) {
        if (v->cleanup_interval == 0) {
                (void) sd_event_source_set_enabled(v->cleanup_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time_relative(v->cleanup_timer, v->cleanup_interval);
        (void) sd_event_source_set_enabled(v->cleanup_timer, SD_EVENT_ONESHOT);
}

/* ---- the role ------------------------------------------------------------------------------ */

static int apply(void *userdata, void *old) {
        Verify *v = userdata;
        Conf *c = daemon_conf(v->daemon);
        VerifyProber *p = NULL;
        int r = verify_prober_new(c, &p);
        if (r < 0)
                return r;
        load_policy(v, c);
        verify_prober_free(v->prober);
        v->prober = p;
        arm_cleanup(v);
        return 0;
}

static void on_socket_limit(const IpcLimitEvent *ev, void *userdata) {
        log_warning("verify socket: %s", ev->text);
}

static int start(void *userdata, Daemon *d) {
        Verify *v = userdata;
        Conf *c = daemon_conf(d);
        v->daemon = d;
        v->event = daemon_event(d);

        load_policy(v, c);
        if (!(v->cache_path = cache_path(c)))
                return log_oom();
        int r = verify_prober_new(c, &v->prober);
        if (r < 0)
                return r;
        (void) cache(v);   /* logs what is wrong now rather than at the first query */
        r = metrics_flusher_start(strempty(conf_get(c, "queue_directory")));   /* into queue.db */
        if (r < 0)
                return log_error_errno(r, "Failed to start the metrics writer: %m");

        (void) ipc_server_set_idle_timeout(v->server, 0);   /* smtpd keeps one connection */
        (void) ipc_server_set_limits(v->server, &(IpcServerLimits) { IPC_SMALL_RECORD_LIMITS });
        ipc_server_set_limit_handler(v->server, on_socket_limit);

        r = sd_event_add_time_relative(v->event, &v->cleanup_timer, CLOCK_MONOTONIC, 1, USEC_PER_SEC,
                                       on_cleanup_timer, v);
        if (r >= 0)
                r = sd_event_add_time(v->event, &v->cleanup_batch, CLOCK_MONOTONIC, 0, 0, on_cleanup_batch, v);
        if (r < 0)
                return log_error_errno(r, "Failed to set up timers: %m");
        (void) sd_event_source_set_enabled(v->cleanup_batch, SD_EVENT_OFF);
        arm_cleanup(v);
        log_info("started: cache %s, cleanup every %llus", *v->cache_path ? v->cache_path : "in memory",
                 (unsigned long long) (v->cleanup_interval / USEC_PER_SEC));
        return 0;
}

static void stop(void *userdata) {
        Verify *v = userdata;
        metrics_flusher_stop();
        v->cleanup_timer = sd_event_source_disable_unref(v->cleanup_timer);
        v->cleanup_batch = sd_event_source_disable_unref(v->cleanup_batch);
        v->prober = verify_prober_free(v->prober);
        v->cache = verify_cache_free(v->cache);
        free(v->cache_path);
        v->cache_path = NULL;
}

static const DaemonRole role = {
        .name = "verify",
        .sockets = (const DaemonSocket[]) {
                { "verify", DAEMON_SOCKET_REQUIRED, .ipc = on_request, .server_offset = offsetof(Verify, server),
                  .multiplex = 1024 },
                {},
        },
        .restart_params = (const char *const[]) { "address_verify_map", "queue_directory", NULL },
        .start = start, .apply = apply, .stop = stop,
};

int main(int argc, char *argv[]) {
        Verify v = {};
        return daemon_role_run(&role, &v);
}
