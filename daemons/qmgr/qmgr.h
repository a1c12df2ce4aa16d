/* qmgr.h — postern-qmgr's internal interface, shared by its files (not by other roles).
 *
 *   qmgr.c          main(): settings, the "qmgr" IPC socket (wakeup, flush), reload
 *   qmgr-scan.c     the active set, queue scans and the scan timer, the sweep (in batches)
 *   qmgr-route.c    which transport and next hop a recipient goes to (transport_maps, relayhost)
 *   qmgr-deliver.c  delivery requests to the agents (local, smtp, lmtp), recording results, backoff, expiry
 *   qmgr-sched.c    per-destination queues of remote jobs: concurrency windows, dead destinations,
 *                   per-transport limits, round-robin dispatch
 *   qmgr-bounce.c   RFC 3464 notices (failure, delay, success, postmaster) and the completion transaction
 *   qmgr-dsn.c      DSN settings; delivery status filters and soft_bounce applied to agent results
 *   qmgr-delay.c    the one delay warning per message (delay_warning_time)
 *   qmgr-control.c  hold, release, delete, requeue (for posternctl; root and mail_owner only)
 *   qmgr-probe.c    address verification probes (postern-verify's is_probe messages): routing
 *                   overrides, request=verify, results to postern-verify, no notices
 *
 * A message enters the in-memory active set when a scan finds it due; its due recipients are
 * routed, qmgr's own deferrals are recorded at once, local ones are handed to postern-local in
 * jobs of at most QMGR_LOCAL_RCPT_LIMIT recipients; single-recipient jobs of other messages for the
 * same recipient that wait behind local_destination_concurrency_limit go along in one request
 * (at most QMGR_LOCAL_BATCH_MAX), so postern-local writes them under one lock with one fsync. Agent results are group-committed: queued
 * as they arrive and written in one transaction at most QMGR_BATCH_DELAY_USEC after the first
 * (or once QMGR_BATCH_MAX are waiting). When the last job of the message is done it leaves
 * the active set; if no recipient is pending or deferred any more, the same transaction that
 * records the last result also inserts the bounce (if one is due) and deletes the message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "mail/addr-class.h"
#include "mail/domain-list.h"
#include "basic/macro.h"
#include "conf/conf.h"
#include "conf/master-cf.h"
#include "conf/table.h"
#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "queue/queue.h"

/* Recipients per request to postern-local (Postfix's local agent takes one; batching a message's
 * local recipients saves a round trip per recipient and the agent still reports each). */
#define QMGR_LOCAL_RCPT_LIMIT 50
/* Local jobs of different messages for one recipient that go in one request (qmgr-deliver.c's
 * bundle_collect(); at most postern-local's LOCAL_BATCH_MAX). */
#define QMGR_LOCAL_BATCH_MAX 50
/* How long qmgr waits for postern-local to answer one request. */
#define QMGR_LOCAL_TIMEOUT_USEC (600 * USEC_PER_SEC)
/* At most this many messages are activated per scan; the rest wait for the next scan, which is
 * scheduled at once, so the event loop (and the watchdog) never stalls on a large queue. */
#define QMGR_SCAN_BATCH 500
/* How far down the wait queue dispatching looks for a job whose recipients are not busy. */
#define QMGR_DISPATCH_LOOKAHEAD 5000
/* Wake-ups arriving faster than this are folded into one scan. */
#define QMGR_SCAN_MIN_INTERVAL_USEC (20 * USEC_PER_MSEC)
/* The sweep for finished messages runs in batches between other events: each batch looks at
 * most QMGR_SWEEP_WINDOW messages (one query) and completes at most QMGR_SWEEP_BATCH of them
 * (one commit each), then yields to the event loop for QMGR_SWEEP_GAP_USEC, so requests and the
 * watchdog are answered however large the queue is. */
#define QMGR_SWEEP_WINDOW 5000
#define QMGR_SWEEP_BATCH 50
#define QMGR_SWEEP_GAP_USEC (1 * USEC_PER_MSEC)
/* Agent results are committed in groups: at most this long after the first, or this many. */
#define QMGR_BATCH_DELAY_USEC (2 * USEC_PER_MSEC)
#define QMGR_BATCH_MAX 256
/* Worker threads for lookups in server tables while routing (qmgr-lookup.c): each opens its own
 * connection to each table it serves, so this is also the size of each table's pool. */
#define QMGR_LOOKUP_THREADS 8

typedef struct Qmgr Qmgr;
typedef struct QmgrDest QmgrDest;

/* A feedback amount (Postfix syntax): "1", "0.5", "1/4" or "1/concurrency" (per_concurrency:
 * the amount is num divided by the destination's current concurrency). */
typedef struct QmgrFeedback {
        double num;
        bool per_concurrency;
} QmgrFeedback;

/* Scheduling limits of one transport (name NULL: the default_* values). */
typedef struct QmgrTransportLimits {
        char *name;
        bool pipe;                     /* a master.cf pipe(8) entry: postern-local's "pipe" socket */
        const char *agent;             /* a master.cf pipe, smtp or lmtp entry: the agent socket
                                        * ("pipe", "smtp", "lmtp"; static), sent transport=<name> */
        const char *builtin;           /* a master.cf local, virtual, error or discard entry: the
                                        * transport that delivers it ("local", "retry", ...; static) */
        char *unavailable;             /* a master.cf unix entry whose command Postern does not have:
                                        * the 4.3.5 text its mail is deferred with */
        size_t dest_concurrency;       /* <transport>_destination_concurrency_limit */
        size_t rcpt_limit;             /* <transport>_destination_recipient_limit */
        size_t process_limit;          /* <transport>_process_limit */
        size_t initial;                /* <transport>_initial_destination_concurrency */
        size_t cohort_limit;           /* <transport>_destination_concurrency_failed_cohort_limit */
        usec_t rate_delay;             /* <transport>_destination_rate_delay (0: none) */
        QmgrFeedback pos, neg;         /* <transport>_destination_concurrency_{positive,negative}_feedback */
} QmgrTransportLimits;

typedef struct QmgrSchedSettings {
        QmgrTransportLimits dflt;
        QmgrTransportLimits *t;
        size_t n;
} QmgrSchedSettings;

/* The scheduler's state (qmgr-sched.c). */
typedef struct QmgrSched {
        void *dests;                   /* tsearch tree of QmgrDest, by "transport:nexthop" */
        QmgrDest *ring;                /* destinations with waiting jobs, circular; dispatch starts here */
        size_t n_ring;
        QmgrDest *all;                 /* every destination (list) */
        size_t n_dests;
        usec_t last_sweep;             /* CLOCK_MONOTONIC: idle destinations were last freed */
        sd_event_source *rate_timer;   /* dispatch again when a rate delay ends */
        struct QmgrTransportBusy *busy;/* requests in flight per transport */
        size_t n_busy;
} QmgrSched;

typedef struct QmgrSettings {
        char *queue_directory;
        char *myhostname;
        char *myorigin;
        AddrClasses classes;           /* mydestination, virtual_*_domains, relay_domains */
        char *local_socket;            /* daemon_socket_path(conf, "local") */
        char *mail_owner;              /* may use the administrative verbs, besides root */
        uid_t mail_owner_uid;
        bool mail_owner_known;         /* getpwnam(mail_owner) found it */
        usec_t queue_run_delay;
        usec_t minimal_backoff;
        usec_t maximal_backoff;
        usec_t maximal_queue_lifetime;
        usec_t bounce_queue_lifetime;
        size_t active_limit;           /* qmgr_message_active_limit */
        size_t process_limit;          /* default_process_limit (unused: see sched.t[].process_limit) */
        size_t rcpt_concurrency;       /* local_destination_concurrency_limit, per recipient */
        size_t dest_concurrency;       /* default_destination_concurrency_limit (unused: see sched) */
        size_t bounce_size_limit;
        /* routing (qmgr-route.c) */
        char *socket_directory;        /* postern_socket_directory: agent sockets by transport */
        char *local_transport, *relay_transport, *default_transport, *virtual_transport;
        char *relayhost;
        char *default_filter_nexthop;  /* for a filter "transport:" without a next hop */
        char *recipient_delimiter;
        TableList *transport_maps;     /* NULL when empty */
        TableList *relocated_maps;     /* NULL when empty */
        QmgrSchedSettings sched;       /* per-transport limits (qmgr-sched.c) */
        /* delivery status notifications (qmgr-bounce.c, qmgr-dsn.c) */
        char *double_bounce_sender;
        char *bounce_notice_recipient; /* 2bounce_notice_recipient */
        bool confirm_delay_cleared;
        bool soft_bounce;
        usec_t delay_warning_time;     /* 0: no delay warnings */
        TableList *status_filter_default, *status_filter_smtp, *status_filter_lmtp,
                  *status_filter_local; /* *_delivery_status_filter, NULL when empty */
        TableList *sender_relayhost_maps;          /* sender_dependent_relayhost_maps */
        TableList *sender_default_transport_maps;  /* sender_dependent_default_transport_maps */
        char *empty_relayhost_key;                 /* empty_address_relayhost_maps_lookup_key */
        char *empty_default_transport_key;         /* empty_address_default_transport_maps_lookup_key */
        /* address verification probes (qmgr-probe.c) */
        struct QmgrSettings *probe;    /* routing with the address_verify_* overrides, or NULL */
        char *verify_socket;           /* postern-verify's socket: probe results go there */
} QmgrSettings;

typedef struct QmgrMessage {
        char queue_id[QUEUE_ID_MAX];   /* first member: the active set compares it as a string */
        QueueMessage msg;
        QueueRecipient *rcpts;
        size_t n_rcpts;
        usec_t active_usec;            /* CLOCK_REALTIME when it entered the active set */
        unsigned jobs;                 /* delivery jobs queued or in flight */
        bool expired;                  /* a recipient was returned because the message expired */
        bool broken;                   /* recording a result failed: never complete in memory */
        bool delete_requested;         /* an administrator deleted it during delivery */
        char success_id[QUEUE_ID_MAX]; /* the success notice queued at completion, or "" */
        bool postmaster_notice;        /* the failure notice went to the postmaster */
        struct QmgrLookup *lookup;     /* while routing: server-table answers, and whether m is
                                        * set aside until they arrive (qmgr-lookup.c) */
} QmgrMessage;

typedef struct QmgrJob QmgrJob;
typedef struct QmgrProbeReport QmgrProbeReport;
struct QmgrJob {
        Qmgr *qmgr;
        QmgrMessage *m;
        size_t *idx;                   /* indexes into m->rcpts */
        size_t n;
        IpcCall *call;
        bool counted;                  /* its recipients are counted in Qmgr.busy */
        char *transport;               /* the agent: "local", "smtp", "lmtp" */
        char *nexthop;
        QmgrDest *dest;                /* remote jobs: the destination queue (qmgr-sched.c) */
        QmgrJob *next;                 /* in the wait queue or the in-flight list */
        QmgrJob *bundle;               /* local jobs of other messages sent in this job's request */
};

struct Qmgr {
        Daemon *daemon;
        sd_event *event;
        Queue *queue;
        QmgrSettings s;
        IpcServer *server;

        sd_event_source *scan_timer;   /* CLOCK_MONOTONIC, one shot */
        sd_event_source *checkpoint_timer;
        usec_t last_scan_mono;
        bool scan_force;               /* scans treat every deferred recipient as due until the
                                        * pass ends (flush) */
        QueueScanCursor scan_cursor;   /* where the next scan goes on (the pass's position) */
        IpcLogLimit flush_log;         /* "flush requested" lines (anyone may ask) */
        IpcLogLimit refusal_log;       /* refused control requests (anyone may send them) */
        struct ControlAll *control_all; /* hold/release/delete/requeue ALL passes under way */
        bool scan_backlog;             /* the last scan may have left due messages behind */
        bool sweep_needed;             /* look for finished messages that were not removed */
        sd_event_source *sweep_timer;  /* CLOCK_MONOTONIC, one shot: the next sweep batch */
        bool sweeping;                 /* a sweep is under way (sweep_cursor is its position) */
        char sweep_cursor[QUEUE_ID_MAX];
        size_t sweep_found;
        size_t removed_since_checkpoint;

        void *active;                  /* tsearch tree of QmgrMessage, by queue id */
        size_t n_active;

        QmgrJob *wait_head, *wait_tail; /* jobs waiting for a connection slot */
        QmgrJob *in_flight;
        size_t n_in_flight;
        IpcMux **agents;               /* one multiplexed connection per remote agent socket */
        size_t n_agents;
        void *busy;                    /* tsearch tree: recipient address -> requests in flight */

        QmgrSched sched;               /* remote destinations (qmgr-sched.c) */
        struct QmgrPending *pending_head, *pending_tail; /* agent results awaiting the group commit */
        size_t n_pending;
        sd_event_source *batch_timer;
        QmgrProbeReport *probe_reports; /* probe results on their way to postern-verify */
};

/* A result for one recipient (by index into m->rcpts), as reported or decided. */
typedef struct QmgrResult {
        size_t idx;
        QueueRcptState state;          /* DELIVERED, DEFERRED or BOUNCED */
        const char *dsn;
        const char *diag;
        bool log_deferral;             /* qmgr decided it: log the relay=none line */
        bool relayed;                  /* the agent said "relayed" (the server lacked DSN) */
        const char *remote_mta;        /* host name of the server that answered, or NULL */
        const char *transport;         /* the agent's transport, NULL when qmgr decided (metrics) */
        bool reported;                 /* a probe's result postern-verify has seen (qmgr-probe.c) */
} QmgrResult;

typedef enum QmgrRoute {
        QMGR_ROUTE_LOCAL,
        QMGR_ROUTE_UNAVAILABLE,        /* not in the local address class (see qmgr_route_transport) */
} QmgrRoute;

/* qmgr-metrics.c: what qmgr counts for the metrics endpoint (kept in memory, saved by the next
 * transaction that records results, common/metrics/metrics-store.h). */
void qmgr_metrics_result(const QmgrMessage *m, const QueueRecipient *rc, const char *transport, usec_t now);
void qmgr_metrics_active(uint64_t size, size_t nrcpt);
void qmgr_metrics_removed(void);

/* qmgr.c */
/* Reads the parameters qmgr uses from c into s (replacing its contents). */
int qmgr_settings_load(QmgrSettings *s, Conf *c);
/* Frees what qmgr_settings_load() allocated. */
void qmgr_settings_done(QmgrSettings *s);

/* qmgr-route.c */
/* The domain of an external-form address, or NULL when it has none. */
const char *qmgr_address_domain(const char *address);
/* The routing parameters' rows (myhostname, myorigin, recipient_delimiter, the transports,
 * relayhost, transport_maps, relocated_maps, sender_dependent_*_maps, the empty-address keys):
 * loaded into s (logged errors, as conf_fields_load()) and freed. */
int qmgr_route_fields_load(QmgrSettings *s, Conf *c);
void qmgr_route_fields_done(QmgrSettings *s);
/* s->probe: the routing of address verification probes, s with the address_verify_* overrides
 * (address_verify_relayhost for relayhost, ..._transport_maps, the class transports, the
 * sender-dependent maps) in place of what they replace; the rest borrowed from s. */
int qmgr_route_probe_load(QmgrSettings *s, Conf *c);
void qmgr_route_probe_done(QmgrSettings *s);
/* Only the settings qmgr_route_transport() uses (for `posternctl route`; a table that does not
 * open fails the load, logged by conf_fields_load()); free with qmgr_route_settings_done(). */
int qmgr_route_settings_load(QmgrSettings *s, Conf *c, char **ret_reason);
void qmgr_route_settings_done(QmgrSettings *s);
/* Routes one recipient address. */
QmgrRoute qmgr_route(const QmgrSettings *s, const char *address);
/* Picks transport ("local", "smtp", "lmtp", "error", "discard", ...) and next hop for a
 * recipient of msg (its sender and content filter count; msg may be NULL) (caller frees both);
 * <0 when a table lookup failed. */
int qmgr_route_transport(const QmgrSettings *s, const QueueMessage *msg, const char *address,
                         char **ret_transport, char **ret_nexthop);

/* qmgr-lookup.c: routing that never waits on the event loop for a server table (pgsql:, mysql:,
 * ldap:, socketmap:, tcp:; common/conf/table-async.h) */
/* Routes one recipient of m as qmgr_route_transport() does, the server tables' answers coming
 * from m's memo; -EINPROGRESS when an answer is on its way (nothing is returned then). */
int qmgr_lookup_route(QmgrMessage *m, const QmgrSettings *rs, const char *address, char **ret_transport,
                      char **ret_nexthop);
/* After a routing pass that got -EINPROGRESS: sets m aside (no thread waits) until the answers
 * are there, then calls qmgr_deliver_message(q, m, force) again. False when they are there
 * already (route again now). */
bool qmgr_lookup_park(Qmgr *q, QmgrMessage *m, bool force);
/* Whether m is set aside waiting for answers. */
bool qmgr_lookup_parked(const QmgrMessage *m);
/* Routing is over (or m is going away): forgets m's answers and any wait. */
void qmgr_lookup_done(QmgrMessage *m);

/* qmgr-scan.c */
/* Asks for a scan after delay_usec (coalesced with any earlier request). */
void qmgr_schedule_scan(Qmgr *q, usec_t delay_usec);
/* Schedules a scan at a CLOCK_REALTIME time (e.g. a deferred recipient's next attempt). */
void qmgr_schedule_scan_at(Qmgr *q, usec_t realtime_usec);
/* A flush: a pass from the oldest message that treats every deferred recipient as due. */
void qmgr_scan_flush(Qmgr *q);
/* Starts the next pass from the oldest message (recipients made due behind the cursor, by a
 * flush of one destination or message, are found by it). */
void qmgr_scan_restart(Qmgr *q);
/* Creates the scan and checkpoint timers and schedules the first scan (with the sweep). */
int qmgr_scan_setup(Qmgr *q);
/* The active message with this queue id, or NULL. */
QmgrMessage *qmgr_active_find(Qmgr *q, const char *queue_id);
/* Removes a message from the active set and frees it. */
void qmgr_message_release(Qmgr *q, QmgrMessage *m);
/* Frees every active message and job (shutdown). */
void qmgr_scan_done(Qmgr *q);
/* Asks for a passive WAL checkpoint soon (after removals). */
void qmgr_schedule_checkpoint(Qmgr *q);

/* qmgr-deliver.c */
/* Routes the due recipients of a freshly activated message and queues its delivery jobs. */
void qmgr_deliver_message(Qmgr *q, QmgrMessage *m, bool force);
/* Starts queued jobs while connection slots are free. */
void qmgr_dispatch(Qmgr *q);
/* Records results (one transaction); completes or releases the message when no job is left. */
void qmgr_apply_results(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n);
/* The same, with the database write joining the next group commit. */
void qmgr_apply_results_batched(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n);
/* Retry delay after the given number of attempts: minimal_backoff doubling, capped. */
usec_t qmgr_backoff(const QmgrSettings *s, uint32_t attempts);
/* Whether a message is past its queue lifetime (bounce_queue_lifetime for notifications). */
bool qmgr_message_expired(const QmgrSettings *s, const QueueMessage *m, usec_t now);
/* Frees the jobs of m in the wait queue head..tail; returns how many. */
size_t qmgr_jobs_drop_message(QmgrJob **head, QmgrJob **tail, QmgrMessage *m);
/* Drops the jobs of m that have not started yet (finalizing m when none is left); a message set
 * aside while routing (qmgr-lookup.c) is finalized at once. */
void qmgr_cancel_waiting_jobs(Qmgr *q, QmgrMessage *m);
/* Cancels and frees every job (shutdown). */
void qmgr_jobs_free(Qmgr *q);
/* Sends j to its agent and puts it in flight; on failure defers and frees j (returns <0). */
int qmgr_job_start(Qmgr *q, QmgrJob *j);
/* Defers every recipient of a job that is not in flight (with dsn and diag) and frees it. */
void qmgr_job_defer(Qmgr *q, QmgrJob *j, const char *dsn, const char *diag);
/* Frees a job (not its message). */
void qmgr_job_free(QmgrJob *j);

/* qmgr-probe.c: address verification probes (messages postern-verify queued, is_probe) */
/* The routing settings for m: the address_verify_* overrides for a probe, else q->s. */
const QmgrSettings *qmgr_probe_routing(Qmgr *q, const QmgrMessage *m);
/* For a probe routed to transport: true with *ret's state, dsn and diag filled when the probe
 * is decided without a delivery agent (not smtp or lmtp), false when postern-smtp probes it. */
bool qmgr_probe_decide(const QmgrSettings *rs, const char *transport, QmgrResult *ret);
/* Results of a probe go to postern-verify before they are recorded: true when this took them
 * (they are applied, batched or not, once verify answered), false when the caller applies them
 * now (not a probe, or already reported). */
bool qmgr_probe_report(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n, bool batched);
/* Drops the reports under way (shutdown): their probes stay unfinished in the queue. */
void qmgr_probe_reports_free(Qmgr *q);

/* qmgr-sched.c */
/* Reads the per-transport scheduling parameters into s (replacing its contents). */
int qmgr_sched_settings_load(QmgrSchedSettings *s, Conf *c, const MasterCf *m);
/* The same with $config_directory/master.cf; *ret_error (caller frees) when it could not be used. */
int qmgr_sched_settings_load_master(QmgrSchedSettings *s, Conf *c, char **ret_error);
/* Frees what qmgr_sched_settings_load() allocated. */
void qmgr_sched_settings_done(QmgrSchedSettings *s);
/* The limits for a transport (the defaults for one not named in the configuration). */
const QmgrTransportLimits *qmgr_sched_limits(const QmgrSettings *s, const char *transport);
/* The agent socket a transport's requests go to: "smtp" for relay and master.cf smtp entries,
 * "lmtp" and "pipe" for master.cf lmtp and pipe entries, else the transport's own name. */
const char *qmgr_sched_agent(const QmgrSettings *s, const char *transport);
/* Parses a feedback value ("1", "0.5", "1/4", "1/concurrency"); -EINVAL when invalid. */
int qmgr_feedback_parse(const char *text, QmgrFeedback *ret);

/* A destination's concurrency window (pure arithmetic, unit-tested). */
typedef struct QmgrWindow {
        size_t window;                 /* deliveries allowed in parallel now, >= 1 */
        double success, failure;       /* feedback accumulated towards the next step */
        double fail_cohorts;           /* pseudo-cohorts of failures since the last success */
} QmgrWindow;
void qmgr_window_init(QmgrWindow *w, const QmgrTransportLimits *t);
/* A delivery finished without a connection or handshake failure. */
void qmgr_window_success(QmgrWindow *w, const QmgrTransportLimits *t);
/* A delivery failed to connect or handshake; true when the destination is now dead. */
bool qmgr_window_failure(QmgrWindow *w, const QmgrTransportLimits *t);

/* Queues a remote job on its destination (does not start it). <0: out of memory. */
int qmgr_sched_enqueue(Qmgr *q, QmgrJob *j);
/* Starts remote jobs, one per destination in turn, while windows and process limits allow. */
void qmgr_sched_dispatch(Qmgr *q);
/* Whether another request may go to this transport (its process limit). */
bool qmgr_sched_transport_free(Qmgr *q, const char *transport);
/* Counts a request to transport in flight (up) or finished. */
void qmgr_sched_transport_count(Qmgr *q, const char *transport, bool up);
/* Feedback from a finished remote job: reply NULL means the agent failed (no feedback). Call
 * after the job's results were applied; may defer the destination's waiting jobs. */
void qmgr_sched_job_done(Qmgr *q, QmgrJob *j, const IpcRecord *reply);
/* A flush (or reload): every dead or probing destination is live again with its initial window,
 * as Postfix's qmgr does for `postqueue -f`; returns how many were revived. */
size_t qmgr_sched_revive_all(Qmgr *q);
/* Drops m's waiting remote jobs; returns how many (the caller adjusts m->jobs). */
size_t qmgr_sched_cancel_message(Qmgr *q, QmgrMessage *m);
/* Frees every destination and its waiting jobs (shutdown). */
void qmgr_sched_free(Qmgr *q);

/* qmgr-dsn.c */
/* Reads the DSN parameters into s (a fresh QmgrSettings being loaded). */
int qmgr_dsn_settings_load(QmgrSettings *s, Conf *c);
/* Frees what qmgr_dsn_settings_load() allocated. */
void qmgr_dsn_settings_done(QmgrSettings *s);
/* Applies the transport's delivery status filter to *dsn and *diag (and *state, when the class
 * changes between 4 and 5). New strings go to ret_dsn (16 bytes) and *ret_diag_owned (caller
 * frees); the pointers are redirected to them. */
void qmgr_dsn_filter(const QmgrSettings *s, const char *queue_id, const char *transport,
                     QueueRcptState *state, const char **dsn, const char **diag, char ret_dsn[16],
                     char **ret_diag_owned);
/* soft_bounce = yes: turns a bounce into a deferral with status class 4 (in place). */
void qmgr_dsn_soft_bounce(const QmgrSettings *s, QueueRcptState *state, char **dsn_status);
/* The host name in an agent's relay attribute ("host[addr]:port"), or NULL (caller frees). */
char *qmgr_dsn_relay_host(const char *relay);
/* Applies soft_bounce and keeps the DSN facts of a result (relayed, Remote-MTA) in rc. */
void qmgr_dsn_note_result(Qmgr *q, QueueRecipient *rc, const QmgrResult *res);

/* qmgr-delay.c */
/* After an attempt left m with deferred recipients: sends the one delay warning when
 * delay_warning_time has passed since arrival (its own transaction). */
void qmgr_delay_warning(Qmgr *q, QmgrMessage *m);

/* qmgr-flush.c */
/* request=flush [site=DOMAIN | queue_id=ID], from anyone; replies on c. */
int qmgr_flush(Qmgr *q, IpcConn *c, const IpcRecord *req);

/* qmgr-control.c */
/* Runs an administrative verb (hold, release, delete, requeue) for a peer that is root or
 * mail_owner, or answers "permission denied"; replies on c. */
int qmgr_control(Qmgr *q, IpcConn *c, const char *verb, const IpcRecord *req);
/* Makes one message's deferred recipients due now (posternctl requeue ID, sendmail -qI). */
int qmgr_requeue(Qmgr *q, const char *queue_id);
/* Stops the ALL passes under way (shutdown): what they committed stays, their peers get no reply. */
void qmgr_control_done(Qmgr *q);

/* qmgr-bounce.c */
typedef enum QmgrNoticeKind {
        QMGR_NOTICE_FAILURE,           /* to the sender: Action: failed */
        QMGR_NOTICE_DELAY,             /* to the sender: Action: delayed (delay_warning_time) */
        QMGR_NOTICE_SUCCESS,           /* to the sender: Action: delivered/relayed (NOTIFY=SUCCESS) */
        QMGR_NOTICE_POSTMASTER,        /* an undeliverable notification, to 2bounce_notice_recipient */
} QmgrNoticeKind;

typedef struct QmgrBounceRcpt {
        const char *address;
        const char *orcpt;             /* "rfc822;addr" or NULL */
        const char *dsn;
        const char *diag;
        const char *diag_type;         /* "x-unix", "x-postern", "smtp" */
        const char *action;            /* NULL: the kind's ("failed", "delayed", "delivered") */
        const char *remote_mta;        /* host name for Remote-MTA, or NULL */
} QmgrBounceRcpt;

typedef struct QmgrBounceInput {
        const char *myhostname;
        const char *bounce_id;         /* queue id of the notification (for Message-ID, boundary) */
        const QueueMessage *orig;
        const QmgrBounceRcpt *rcpts;
        size_t n_rcpts;
        const char *content;           /* the original message, LF form */
        size_t content_len;
        size_t size_limit;             /* bounce_size_limit */
        time_t now;
        QmgrNoticeKind kind;
        const char *to;                /* the notice's To: (NULL: the original sender) */
        time_t retry_until;            /* Will-Retry-Until of a delay warning (0: none) */
} QmgrBounceInput;

/* Builds an RFC 3464 report in LF form; *ret_8bit says whether it contains 8-bit text. */
int qmgr_bounce_build(const QmgrBounceInput *in, StrBuf *out, bool *ret_8bit);
/* Inside an open transaction: inserts the notifications due for m and deletes m.
 * ret_bounce_id receives the failure notice's id (to the sender, or to the postmaster for an
 * undeliverable notification) or ""; m->success_id the success notice's. */
int qmgr_complete_in_transaction(Qmgr *q, QmgrMessage *m, char ret_bounce_id[QUEUE_ID_MAX]);
/* Builds and queues one notice of the given kind about m (inside the caller's transaction).
 * ret_id is "" when no recipient belongs in it. */
int qmgr_notice_insert(Qmgr *q, QmgrMessage *m, QmgrNoticeKind kind, char ret_id[QUEUE_ID_MAX]);
/* Whether sender is the double_bounce_sender address (ours: no domain or $myhostname). */
bool qmgr_is_double_bounce_sender(const QmgrSettings *s, const char *sender);
