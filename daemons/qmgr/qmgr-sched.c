/* qmgr-sched.c — the scheduler for remote deliveries: one queue per destination (Postfix's word;
 * here QmgrDest, keyed by transport and next hop) holding the jobs that wait for it.
 *
 * Each destination has a concurrency window (QmgrWindow): it starts at
 * <transport>_initial_destination_concurrency, grows by the positive feedback after every
 * delivery that did not fail to connect or handshake, up to <transport>_destination_concurrency_
 * limit, and shrinks by the negative feedback after each one that did (never below 1). Every
 * failure adds 1/window to a count of failed pseudo-cohorts (reset by a success); once the window
 * is down to 1 and that count reaches <transport>_destination_concurrency_failed_cohort_limit,
 * the destination is dead: its waiting jobs, and any that arrive later, are deferred at once with
 * "delivery temporarily suspended: <the last failure>" (no connection is made) until
 * minimal_backoff_time has passed; then one probe delivery may go, and its outcome revives the
 * destination (back to the initial window) or kills it again. A flush revives every dead
 * destination at once (qmgr_sched_revive_all()).
 *
 * A failure is a deferral of every recipient of a request whose status is 4.4.x (no connection,
 * lost connection, timeouts) or whose text says the server refused to talk (4xx/5xx greeting) or
 * failed the EHLO/HELO/LHLO handshake. Other outcomes, even 4xx after MAIL, count as success: the
 * site answered.
 *
 * With <transport>_destination_rate_delay (default_destination_rate_delay) above zero, a
 * destination gets one delivery at a time and the next one starts that long after the previous
 * one finished (a timer dispatches again).
 *
 * qmgr_sched_dispatch() visits the destinations that have waiting jobs in a ring, starting one
 * job per destination per round, so a saturated or slow destination never holds back others; <transport>_process_limit
 * (default_process_limit) caps the requests in flight per transport (local included).
 *
 * The settings (qmgr_sched_settings_load()) also say what each unix entry of master.cf is:
 * pipe, smtp and lmtp entries are sent to that agent socket (qmgr_sched_agent()) with their
 * maxproc as process limit; local, virtual, error and discard entries are routed as that built-in
 * transport, and an entry whose command Postern does not have is unavailable (4.3.5);
 * qmgr-route.c applies the last two. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/master-cf.h"
#include "conf/params.h"
#include "log/log.h"
#include "qmgr.h"

#define QMGR_SCHED_EPSILON 1e-9

struct QmgrTransportBusy {
        char *name;
        size_t n;
};

struct QmgrDest {
        char *key;                     /* "transport:nexthop", next hop in lower case */
        char *transport, *nexthop;
        QmgrWindow w;
        size_t busy;                   /* requests in flight */
        QmgrJob *wait_head, *wait_tail;
        bool dead;                     /* suspended until dead_until */
        bool probe;                    /* revived: one delivery decides */
        usec_t dead_until;             /* CLOCK_MONOTONIC */
        usec_t next_start;             /* CLOCK_MONOTONIC: the rate delay ends */
        char dsn[16];                  /* the last failure */
        char reason[512];
        QmgrDest *prev, *next;         /* the ready ring (destinations with waiting jobs) */
        bool in_ring;
        QmgrDest *all_prev, *all_next; /* every destination (for the idle sweep) */
};

/* --- settings --- */

/* The per-transport parameter suffixes ("<transport>_destination_concurrency_limit", ...) are
 * master_param_suffixes (common/conf/master-cf.h), shared with the config loader. */

/* Parses a feedback value ("1", "0.5", "1/4", "1/concurrency"); -EINVAL when invalid. */
int qmgr_feedback_parse(const char *text, QmgrFeedback *ret) {
        char *end;
        if (isempty(text))
                return -EINVAL;
        double num = strtod(text, &end);
        if (end == text || !isfinite(num) || num < 0 || num > 1000)
                return -EINVAL;
        QmgrFeedback f = { .num = num };
        while (*end == ' ')
                end++;
        if (*end == '/') {
                const char *d = end + 1;
                while (*d == ' ')
                        d++;
                if (strcaseeq(d, "concurrency"))
                        f.per_concurrency = true;
                else {
                        double den = strtod(d, &end);
                        if (end == d || !isfinite(den) || den <= 0)
                                return -EINVAL;
                        while (*end == ' ')
                                end++;
                        if (*end)
                                return -EINVAL;
                        f.num = num / den;
                }
        } else if (*end)
                return -EINVAL;
        *ret = f;
        return 0;
}

/* The value of "<transport><suffix>" (*ret_name: that name, for warnings), or of the default
 * parameter when transport is NULL; NULL when unset (or out of memory). */
static const char *setting(Conf *c, const char *transport, const char *suffix, const char *dflt_name,
                           char **ret_name) {
        if (!transport)
                return conf_get(c, dflt_name);
        if (asprintf(ret_name, "%s%s", transport, suffix) < 0) {
                *ret_name = NULL;
                return NULL;
        }
        return conf_get(c, *ret_name);
}

static size_t get_size(Conf *c, const char *transport, const char *suffix, const char *dflt_name,
                       size_t dflt, size_t min) {
        _cleanup_free_ char *name = NULL;
        const char *v = setting(c, transport, suffix, dflt_name, &name);
        if (!v)
                return dflt;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end || n < min || n > 1000000) {
                log_warning("%s = %s: not a number from %zu to 1000000; using %zu",
                            name ? name : dflt_name, v, min, dflt);
                return dflt;
        }
        return (size_t) n;
}

static QmgrFeedback get_feedback(Conf *c, const char *transport, const char *suffix,
                                 const char *dflt_name, QmgrFeedback dflt) {
        _cleanup_free_ char *name = NULL;
        const char *v = setting(c, transport, suffix, dflt_name, &name);
        QmgrFeedback f;
        if (!v)
                return dflt;
        if (qmgr_feedback_parse(v, &f) < 0) {
                log_warning("%s = %s: not a feedback value (a number, a ratio such as 1/4, or "
                            "1/concurrency); using the default", name ? name : dflt_name, v);
                return dflt;
        }
        return f;
}

static usec_t get_time(Conf *c, const char *transport, const char *suffix, const char *dflt_name,
                       usec_t dflt) {
        _cleanup_free_ char *name = NULL;
        const char *v = setting(c, transport, suffix, dflt_name, &name);
        long long sec;
        if (!v)
                return dflt;
        if (param_parse_time(v, 's', &sec) < 0 || sec < 0 || sec > 86400) {
                log_warning("%s = %s: not a time from 0 to 1d; using the default",
                            name ? name : dflt_name, v);
                return dflt;
        }
        return (usec_t) sec * USEC_PER_SEC;
}

static void limits_read(QmgrTransportLimits *t, Conf *c, const QmgrTransportLimits *d) {
        const char *n = t->name;
        t->dest_concurrency = get_size(c, n, master_param_suffixes[MASTER_PARAM_CONCURRENCY_LIMIT], "default_destination_concurrency_limit",
                                       d ? d->dest_concurrency : 20, 1);
        t->rcpt_limit = get_size(c, n, master_param_suffixes[MASTER_PARAM_RECIPIENT_LIMIT], "default_destination_recipient_limit",
                                 d ? d->rcpt_limit : 50, 1);
        t->process_limit = get_size(c, n, master_param_suffixes[MASTER_PARAM_PROCESS_LIMIT], "default_process_limit",
                                    d ? d->process_limit : 100, 1);
        t->initial = get_size(c, n, master_param_suffixes[MASTER_PARAM_INITIAL_CONCURRENCY], "initial_destination_concurrency",
                              d ? d->initial : 5, 1);
        t->cohort_limit = get_size(c, n, master_param_suffixes[MASTER_PARAM_FAILED_COHORT_LIMIT],
                                   "default_destination_concurrency_failed_cohort_limit",
                                   d ? d->cohort_limit : 1, 1);
        t->pos = get_feedback(c, n, master_param_suffixes[MASTER_PARAM_POSITIVE_FEEDBACK], "default_destination_concurrency_positive_feedback",
                              d ? d->pos : (QmgrFeedback) { .num = 1 });
        t->neg = get_feedback(c, n, master_param_suffixes[MASTER_PARAM_NEGATIVE_FEEDBACK], "default_destination_concurrency_negative_feedback",
                              d ? d->neg : (QmgrFeedback) { .num = 1 });
        t->rate_delay = get_time(c, n, master_param_suffixes[MASTER_PARAM_RATE_DELAY], "default_destination_rate_delay",
                                 d ? d->rate_delay : 0);
}

typedef struct NameList {
        char **names;
        size_t n;
        int error;
} NameList;

static void name_add(NameList *l, const char *name, size_t len) {
        if (l->error || len == 0 || len > 64)
                return;
        for (size_t i = 0; i < l->n; i++)
                if (strlen(l->names[i]) == len && strncmp(l->names[i], name, len) == 0)
                        return;
        char **n = realloc(l->names, (l->n + 1) * sizeof(char *));
        if (!n) {
                l->error = -ENOMEM;
                return;
        }
        l->names = n;
        if (!(l->names[l->n] = strndup(name, len))) {
                l->error = -ENOMEM;
                return;
        }
        l->n++;
}

/* A transport named in main.cf through one of the per-transport parameters. */
static void collect_transport(const char *name, const char *raw, void *userdata) {
        size_t len = strlen(name);
        if (strchr(name, '/'))
                return;   /* listener overrides do not apply to qmgr */
        for (size_t i = 0; i < _MASTER_PARAM_SCHEDULER_MAX; i++) {
                size_t sl = strlen(master_param_suffixes[i]);
                if (len > sl && streq(name + len - sl, master_param_suffixes[i])) {
                        if (!(len - sl == 7 && strncmp(name, "default", 7) == 0))
                                name_add(userdata, name, len - sl);
                        return;
                }
        }
}

/* Frees what qmgr_sched_settings_load() allocated. */
void qmgr_sched_settings_done(QmgrSchedSettings *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->t[i].name);
                free(s->t[i].unavailable);
        }
        free(s->t);
        *s = (QmgrSchedSettings) {};
}

/* How a master.cf unix entry is delivered (see QmgrTransportLimits); <0 on no memory. */
static int master_entry_route(QmgrTransportLimits *t, const MasterEntry *e) {
        static const char *const agents[] = { "pipe", "smtp", "lmtp" };
        for (size_t i = 0; i < ELEMENTSOF(agents); i++)
                if (streq(e->command, agents[i]))
                        t->agent = agents[i];
        t->pipe = streq(e->command, "pipe");
        if (streq(e->command, "local") || streq(e->command, "virtual") || streq(e->command, "discard"))
                t->builtin = streq(e->command, "local") ? "local" : streq(e->command, "virtual") ? "virtual" : "discard";
        else if (streq(e->command, "error"))
                /* error(8): bounces, or defers when its service name is "retry" */
                t->builtin = streq(e->service, "retry") ? "retry" : "error";
        else if (e->kind == MASTER_UNKNOWN &&
                 asprintf(&t->unavailable, "4.3.5 mail transport unavailable: master.cf entry %s (line %u) "
                          "runs \"%s\", which is not a delivery agent Postern has", e->service, e->line,
                          e->command) < 0) {
                t->unavailable = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* A unix entry of master.cf that mail can be routed to: a transport, or a command Postern
 * does not have (its mail is deferred rather than sent to a socket that is not there). */
static bool master_routable(const MasterEntry *e) {
        return streq(e->type, "unix") && (e->kind == MASTER_TRANSPORT || e->kind == MASTER_UNKNOWN);
}

/* Reads the per-transport scheduling parameters into s (replacing its contents). The unix
 * entries of master.cf (m, may be empty) are known transports (master_entry_route()); the
 * maxproc column of a pipe, smtp or lmtp entry is its process limit unless
 * <transport>_process_limit says otherwise. */
int qmgr_sched_settings_load(QmgrSchedSettings *s, Conf *c, const MasterCf *m) {
        NameList l = {};
        QmgrSchedSettings n = {};

        limits_read(&n.dflt, c, NULL);
        static const char *const known[] = { "local", "smtp", "lmtp", "relay", "virtual" };
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                name_add(&l, known[i], strlen(known[i]));
        for (size_t i = 0; i < m->n; i++)
                if (master_routable(&m->entries[i]))
                        name_add(&l, m->entries[i].service, strlen(m->entries[i].service));
        conf_foreach_explicit(c, collect_transport, &l);
        if (!l.error && !(n.t = calloc(l.n, sizeof(QmgrTransportLimits))))
                l.error = -ENOMEM;
        for (size_t i = 0; i < l.n; i++) {
                if (!l.error) {
                        n.t[i].name = TAKE_PTR(l.names[i]);
                        limits_read(&n.t[i], c, &n.dflt);
                        const MasterEntry *e = NULL;
                        for (size_t k = 0; k < m->n && !e; k++)
                                if (master_routable(&m->entries[k]) && streq(m->entries[k].service, n.t[i].name))
                                        e = &m->entries[k];
                        n.n++;
                        if (e && master_entry_route(&n.t[i], e) < 0)
                                l.error = -ENOMEM;
                        if (e && n.t[i].agent) {
                                _cleanup_free_ char *pl = NULL;
                                if (e->maxproc > 0 && !setting(c, n.t[i].name,
                                                               master_param_suffixes[MASTER_PARAM_PROCESS_LIMIT], NULL, &pl))
                                        n.t[i].process_limit = (size_t) e->maxproc;
                        }
                }
                free(l.names[i]);
        }
        free(l.names);
        if (l.error) {
                qmgr_sched_settings_done(&n);
                return log_oom();
        }
        qmgr_sched_settings_done(s);
        *s = n;
        return 0;
}

/* qmgr_sched_settings_load() with $config_directory/master.cf: a master.cf that cannot be read
 * or parsed gives *ret_error (caller frees and reports it) and its transports are not used. */
int qmgr_sched_settings_load_master(QmgrSchedSettings *s, Conf *c, char **ret_error) {
        MasterCf master = {};
        _cleanup_free_ char *path = NULL;
        *ret_error = NULL;
        if (asprintf(&path, "%s/master.cf", strempty(conf_get(c, "config_directory"))) < 0)
                return log_oom();
        int r = master_cf_load(path, &master, ret_error);
        if (r < 0 && r != -ENOENT && !*ret_error && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
                *ret_error = NULL;
        r = qmgr_sched_settings_load(s, c, &master);
        master_cf_done(&master);
        return r;
}

/* The limits for a transport (the defaults for one not named in the configuration). */
const QmgrTransportLimits *qmgr_sched_limits(const QmgrSettings *s, const char *transport) {
        for (size_t i = 0; i < s->sched.n; i++)
                if (streq(s->sched.t[i].name, transport))
                        return &s->sched.t[i];
        return &s->sched.dflt;
}

const char *qmgr_sched_agent(const QmgrSettings *s, const char *transport) {
        const char *a = qmgr_sched_limits(s, transport)->agent;
        return a ? a : streq(transport, "relay") ? "smtp" : transport;
}

/* --- the window --- */

static double feedback_amount(QmgrFeedback f, size_t window) {
        return f.per_concurrency ? f.num / (double) MAX(window, (size_t) 1) : f.num;
}

void qmgr_window_init(QmgrWindow *w, const QmgrTransportLimits *t) {
        *w = (QmgrWindow) { .window = MAX((size_t) 1, MIN(t->initial, t->dest_concurrency)) };
}

/* A delivery finished without a connection or handshake failure. */
void qmgr_window_success(QmgrWindow *w, const QmgrTransportLimits *t) {
        w->success += feedback_amount(t->pos, w->window);
        while (w->success >= 1 - QMGR_SCHED_EPSILON) {
                w->success -= 1;
                if (w->window < t->dest_concurrency)
                        w->window++;
        }
        if (w->window >= t->dest_concurrency) {
                w->window = t->dest_concurrency;
                w->success = 0;
        }
        w->failure = 0;
        w->fail_cohorts = 0;
}

/* A delivery failed to connect or handshake; true when the destination is now dead. */
bool qmgr_window_failure(QmgrWindow *w, const QmgrTransportLimits *t) {
        w->fail_cohorts += 1.0 / (double) MAX(w->window, (size_t) 1);
        w->failure += feedback_amount(t->neg, w->window);
        while (w->failure >= 1 - QMGR_SCHED_EPSILON) {
                w->failure -= 1;
                if (w->window > 1)
                        w->window--;
        }
        if (w->window <= 1)
                w->failure = 0;
        w->success = 0;
        return w->window <= 1 && w->fail_cohorts >= (double) t->cohort_limit - QMGR_SCHED_EPSILON;
}

/* --- requests in flight per transport --- */

static struct QmgrTransportBusy *transport_busy(Qmgr *q, const char *transport, bool create) {
        QmgrSched *S = &q->sched;
        for (size_t i = 0; i < S->n_busy; i++)
                if (streq(S->busy[i].name, transport))
                        return &S->busy[i];
        if (!create)
                return NULL;
        struct QmgrTransportBusy *n = realloc(S->busy, (S->n_busy + 1) * sizeof(*n));
        if (!n)
                return NULL;
        S->busy = n;
        if (!(n[S->n_busy].name = strdup(transport)))
                return NULL;
        n[S->n_busy].n = 0;
        return &n[S->n_busy++];
}

/* Whether another request may go to this transport (its process limit). */
bool qmgr_sched_transport_free(Qmgr *q, const char *transport) {
        struct QmgrTransportBusy *b = transport_busy(q, transport, false);
        return !b || b->n < qmgr_sched_limits(&q->s, transport)->process_limit;
}

/* Counts a request to transport in flight (up) or finished. Best effort under memory pressure:
 * a missing entry only loosens the limit. */
void qmgr_sched_transport_count(Qmgr *q, const char *transport, bool up) {
        struct QmgrTransportBusy *b = transport_busy(q, transport, up);
        if (!b)
                return;
        if (up)
                b->n++;
        else if (b->n > 0)
                b->n--;
}

/* --- destinations --- */

static int compare_dest(const void *a, const void *b) {
        return strcmp(((const QmgrDest *) a)->key, ((const QmgrDest *) b)->key);
}

/* The ready ring holds the destinations with waiting jobs: dispatch visits only those. */
static void ring_insert(QmgrSched *S, QmgrDest *d) {
        if (d->in_ring)
                return;
        if (S->ring) {
                d->next = S->ring;
                d->prev = S->ring->prev;
                d->prev->next = d;
                S->ring->prev = d;
        } else {
                d->next = d->prev = d;
                S->ring = d;
        }
        d->in_ring = true;
        S->n_ring++;
}

static void ring_remove(QmgrSched *S, QmgrDest *d) {
        if (!d->in_ring)
                return;
        if (d->next == d)
                S->ring = NULL;
        else {
                d->prev->next = d->next;
                d->next->prev = d->prev;
                if (S->ring == d)
                        S->ring = d->next;
        }
        d->next = d->prev = NULL;
        d->in_ring = false;
        S->n_ring--;
}

static void dest_destroy(QmgrDest *d) {
        free(d->key);
        free(d->transport);
        free(d->nexthop);
        free(d);
}

static void dest_free(Qmgr *q, QmgrDest *d) {
        QmgrSched *S = &q->sched;
        tdelete(d, &S->dests, compare_dest);
        ring_remove(S, d);
        if (d->all_prev)
                d->all_prev->all_next = d->all_next;
        else
                S->all = d->all_next;
        if (d->all_next)
                d->all_next->all_prev = d->all_prev;
        S->n_dests--;
        dest_destroy(d);
}

/* An idle destination is forgotten (its window with it), except while dead or waiting for a
 * probe (for at most maximal_backoff_time after it could revive). */
static bool dest_idle(Qmgr *q, const QmgrDest *d, usec_t now) {
        if (d->wait_head || d->busy > 0 || now < d->next_start)
                return false;
        return (!d->dead && !d->probe) || now >= d->dead_until + q->s.maximal_backoff;
}

/* Frees the idle destinations kept for their dead/probe state (at most once a second). */
static void dest_sweep(Qmgr *q, usec_t now) {
        QmgrSched *S = &q->sched;
        if (now < S->last_sweep + USEC_PER_SEC)
                return;
        S->last_sweep = now;
        for (QmgrDest *d = S->all, *next; d; d = next) {
                next = d->all_next;
                if (!d->in_ring && dest_idle(q, d, now))
                        dest_free(q, d);
        }
}

static QmgrDest *dest_get(Qmgr *q, const char *transport, const char *nexthop) {
        QmgrSched *S = &q->sched;
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s:%s", transport, nexthop) < 0)
                return NULL;
        for (char *p = key + strlen(transport); *p; p++)
                *p = (char) tolower((unsigned char) *p);
        QmgrDest k = { .key = key };
        void **n = tfind(&k, &S->dests, compare_dest);
        if (n)
                return *(QmgrDest **) n;

        QmgrDest *d = calloc(1, sizeof(QmgrDest));
        if (!d)
                return NULL;
        d->transport = strdup(transport);
        d->nexthop = strdup(nexthop);
        d->key = TAKE_PTR(key);
        if (!d->transport || !d->nexthop || !tsearch(d, &S->dests, compare_dest)) {
                dest_destroy(d);
                return NULL;
        }
        qmgr_window_init(&d->w, qmgr_sched_limits(&q->s, transport));
        d->all_next = S->all;
        if (S->all)
                S->all->all_prev = d;
        S->all = d;
        S->n_dests++;
        return d;
}

/* Queues a remote job on its destination (does not start it). <0: out of memory. */
int qmgr_sched_enqueue(Qmgr *q, QmgrJob *j) {
        QmgrDest *d = dest_get(q, j->transport, j->nexthop);
        if (!d)
                return -ENOMEM;
        j->dest = d;
        j->next = NULL;
        if (d->wait_tail)
                d->wait_tail->next = j;
        else
                d->wait_head = j;
        d->wait_tail = j;
        ring_insert(&q->sched, d);
        return 0;
}

static QmgrJob *dest_pop(QmgrDest *d) {
        QmgrJob *j = d->wait_head;
        if (j) {
                d->wait_head = j->next;
                if (!d->wait_head)
                        d->wait_tail = NULL;
                j->next = NULL;
        }
        return j;
}

/* Defers every waiting job of a dead destination, as Postfix words it. */
static void dest_defer_waiting(Qmgr *q, QmgrDest *d) {
        char diag[600];
        snprintf(diag, sizeof(diag), "delivery temporarily suspended: %s", d->reason);
        for (QmgrJob *j; (j = dest_pop(d)); )
                qmgr_job_defer(q, j, d->dsn, diag);
}

/* After d's wait queue or in-flight count shrank: out of the ready ring when nothing waits,
 * forgotten when idle. d may be freed. */
static void dest_settle(Qmgr *q, QmgrDest *d, usec_t now) {
        if (d->wait_head)
                return;
        ring_remove(&q->sched, d);
        if (dest_idle(q, d, now))
                dest_free(q, d);
}

static int on_rate_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        qmgr_dispatch(userdata);
        return 0;
}

/* Dispatch again at when (CLOCK_MONOTONIC), unless an earlier wake-up is armed. */
static void rate_wakeup(Qmgr *q, usec_t when) {
        QmgrSched *S = &q->sched;
        int enabled = SD_EVENT_OFF;
        uint64_t cur;
        int r;

        if (!S->rate_timer) {
                r = sd_event_add_time(q->event, &S->rate_timer, CLOCK_MONOTONIC, when, USEC_PER_MSEC,
                                      on_rate_timer, q);
                if (r < 0)
                        log_error_errno(r, "Cannot create the rate delay timer: %m");
                else
                        (void) sd_event_source_set_description(S->rate_timer, "qmgr-rate-delay");
                return;
        }
        (void) sd_event_source_get_enabled(S->rate_timer, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(S->rate_timer, &cur) >= 0 && cur <= when)
                return;
        r = sd_event_source_set_time(S->rate_timer, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(S->rate_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "Cannot arm the rate delay timer: %m");
}

/* A job for postern-local's virtual socket (virtual(8) mailboxes) takes the jobs of other
 * messages waiting for the same destination into its request, up to
 * <transport>_destination_recipient_limit recipients in all: one request, one delivery for the
 * window, and postern-local writes their Maildirs together (spread over its children), where one
 * request per message kept at most the window's 20 messages in flight. As the local bundles
 * (qmgr-deliver.c bundle_collect()): each job keeps its own results, its own log lines. */
static void dest_bundle(Qmgr *q, QmgrDest *d, QmgrJob *j) {
        const QmgrTransportLimits *t = qmgr_sched_limits(&q->s, d->transport);
        if (!streq(qmgr_sched_agent(&q->s, d->transport), "virtual") || t->rate_delay > 0)
                return;   /* a rate delay is per message, as in Postfix */
        size_t limit = t->rcpt_limit, total = j->n;
        QmgrJob **tail = &j->bundle;
        while (d->wait_head && d->wait_head->m != j->m && total + d->wait_head->n <= limit) {
                QmgrJob *f = dest_pop(d);
                f->dest = NULL;   /* counted once, as j's request */
                total += f->n;
                *tail = f;
                tail = &f->bundle;
        }
}

/* One step for one destination in the ready ring: defer its jobs when dead, else start one job
 * if its window and its transport's process limit allow (the next round then starts after it).
 * Returns whether a job was started. d may be freed. */
static bool dest_step(Qmgr *q, QmgrDest *d, usec_t now) {
        QmgrSched *S = &q->sched;
        /* A retry scheduled for the same moment (by the same backoff) may come a little early. */
        if (d->dead && now + QMGR_SCAN_MIN_INTERVAL_USEC >= d->dead_until) {
                d->dead = false;
                d->probe = true;
                d->w.window = 1;
        }
        if (d->dead) {
                dest_defer_waiting(q, d);
                dest_settle(q, d, now);
                return false;
        }
        const QmgrTransportLimits *t = qmgr_sched_limits(&q->s, d->transport);
        size_t limit = d->probe || t->rate_delay > 0 ? 1 : MIN(d->w.window, t->dest_concurrency);
        if (t->rate_delay > 0 && d->busy == 0 && now < d->next_start) {
                rate_wakeup(q, d->next_start);
                return false;
        }
        if (!d->wait_head || d->busy >= limit || !qmgr_sched_transport_free(q, d->transport))
                return false;
        QmgrJob *j = dest_pop(d);
        dest_bundle(q, d, j);
        d->busy++;
        if (d->wait_head)
                S->ring = d->next;   /* round-robin: the next round starts after d */
        if (qmgr_job_start(q, j) < 0) {   /* deferred and freed */
                d->busy--;
                dest_settle(q, d, now);
                return false;
        }
        dest_settle(q, d, now);
        return true;
}

/* Starts remote jobs, one per destination in turn, while windows and process limits allow. */
void qmgr_sched_dispatch(Qmgr *q) {
        QmgrSched *S = &q->sched;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        bool progress = true;

        while (progress && S->ring) {
                progress = false;
                size_t n = S->n_ring;
                QmgrDest *d = S->ring;
                for (size_t i = 0; i < n && d; i++) {
                        QmgrDest *next = d->next == d ? NULL : d->next;
                        if (dest_step(q, d, now))
                                progress = true;
                        d = S->ring ? next : NULL;
                }
        }
        dest_sweep(q, now);
}

static bool site_failure(const char *dsn, const char *diag) {
        if (dsn && strncmp(dsn, "4.4.", 4) == 0)
                return true;
        if (!diag)
                return false;
        /* A rejected login (postern-smtp's SMTP AUTH) fails every delivery there alike, as
         * Postfix's smtp(8) throttles the site after one. */
        return strstr(diag, " refused to talk to me: ") || startswith(diag, "SASL authentication failed; ") ||
               strstr(diag, "(in reply to EHLO command)") ||
               strstr(diag, "(in reply to HELO command)") ||
               strstr(diag, "(in reply to LHLO command)");
}

/* Feedback from a finished remote job: reply NULL means the agent failed (no feedback). Call
 * after the job's results were applied; may defer the destination's waiting jobs. */
void qmgr_sched_job_done(Qmgr *q, QmgrJob *j, const IpcRecord *reply) {
        QmgrDest *d = j->dest;
        long long count = 0;

        if (!d)
                return;
        j->dest = NULL;
        if (d->busy > 0)
                d->busy--;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        usec_t delay = qmgr_sched_limits(&q->s, d->transport)->rate_delay;
        if (delay > 0)
                d->next_start = now + delay;   /* measured from the end of this delivery */
        if (!reply || ipc_record_get_int(reply, "count", &count) < 0 || count <= 0) {
                dest_settle(q, d, now);
                return;
        }

        const QmgrTransportLimits *t = qmgr_sched_limits(&q->s, d->transport);
        bool failed = true;
        const char *dsn0 = NULL, *diag0 = NULL;
        for (long long k = 0; k < count && failed; k++) {
                const char *action = ipc_record_get_indexed(reply, "action", (size_t) k);
                const char *dsn = ipc_record_get_indexed(reply, "dsn", (size_t) k);
                const char *diag = ipc_record_get_indexed(reply, "diag", (size_t) k);
                if ((action && (streq(action, "delivered") || streq(action, "bounced"))) ||
                    !site_failure(dsn, diag))
                        failed = false;
                if (k == 0) {
                        dsn0 = dsn;
                        diag0 = diag;
                }
        }
        if (!failed) {
                if (d->probe || d->dead) {
                        d->probe = d->dead = false;
                        qmgr_window_init(&d->w, t);
                } else
                        qmgr_window_success(&d->w, t);
                dest_settle(q, d, now);
                return;
        }

        /* The agent's status is recorded for later recipients: only a well-formed 4.x.y. */
        bool dsn_ok = dsn0 && strlen(dsn0) < sizeof(d->dsn) && dsn0[0] == '4' && dsn0[1] == '.' &&
                      strspn(dsn0, "0123456789.") == strlen(dsn0);
        snprintf(d->dsn, sizeof(d->dsn), "%s", dsn_ok ? dsn0 : "4.4.1");
        snprintf(d->reason, sizeof(d->reason), "%s", isempty(diag0) ? "destination unavailable" : diag0);
        bool dead = qmgr_window_failure(&d->w, t) || d->probe;
        if (!dead || d->dead) {
                dest_settle(q, d, now);
                return;
        }
        d->dead = true;
        d->probe = false;
        d->w.window = 1;
        d->dead_until = now + q->s.minimal_backoff;
        log_info("%s: delivery to %s suspended for %llu s: %s", d->transport, d->nexthop,
                 (unsigned long long) (q->s.minimal_backoff / USEC_PER_SEC), d->reason);
        dest_defer_waiting(q, d);
        dest_settle(q, d, now);
}

size_t qmgr_sched_revive_all(Qmgr *q) {
        size_t n = 0;
        for (QmgrDest *d = q->sched.all; d; d = d->all_next) {
                if (!d->dead && !d->probe)
                        continue;
                d->dead = d->probe = false;
                qmgr_window_init(&d->w, qmgr_sched_limits(&q->s, d->transport));
                n++;
        }
        return n;
}

/* Drops m's waiting remote jobs; returns how many (the caller adjusts m->jobs). */
size_t qmgr_sched_cancel_message(Qmgr *q, QmgrMessage *m) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        size_t dropped = 0, n = q->sched.n_ring;
        QmgrDest *d = q->sched.ring;
        for (size_t i = 0; d && i < n; i++) {
                QmgrDest *next = d->next == d ? NULL : d->next;
                dropped += qmgr_jobs_drop_message(&d->wait_head, &d->wait_tail, m);
                dest_settle(q, d, now);
                d = q->sched.ring ? next : NULL;
        }
        return dropped;
}

static void dest_node_free(void *p) {
        QmgrDest *d = p;
        for (QmgrJob *j; (j = dest_pop(d)); )
                qmgr_job_free(j);
        dest_destroy(d);
}

/* Frees every destination and its waiting jobs (shutdown). */
void qmgr_sched_free(Qmgr *q) {
        QmgrSched *S = &q->sched;
        tdestroy(S->dests, dest_node_free);
        S->rate_timer = sd_event_source_disable_unref(S->rate_timer);
        for (size_t i = 0; i < S->n_busy; i++)
                free(S->busy[i].name);
        free(S->busy);
        *S = (QmgrSched) {};
}
