/* qmgr-scan.c — the active set, queue scans and their timer.
 *
 * A scan asks the queue for messages with a pending recipient or a deferred one that is due
 * (oldest first, after the position where the last scan stopped: scans make passes through the
 * queue, so a backlog larger than the active set is read once, not from the start by every
 * scan), skips those already in the in-memory active set (so nothing is handed out twice), and
 * activates at most QMGR_SCAN_BATCH new ones while the active set stays below
 * qmgr_message_active_limit. Scans run at start, on wake-ups (coalesced: many wake-ups in a row
 * give one scan, at most one per QMGR_SCAN_MIN_INTERVAL_USEC), after a notification was queued,
 * and on one timer: the earlier of queue_run_delay and the next deferred recipient's retry time.
 * A flush starts a pass from the oldest message that treats every deferred recipient as due,
 * however many scans (and refills of the active set) it takes to reach the end.
 *
 * The sweep (at start, and after a completion failed) looks for messages whose recipients are
 * all final but which were not removed (a crash or a failed commit between the last result and
 * the removal), and completes each through the usual path (bounce if due, then removal). It
 * never holds the loop for long: batches of one query over QMGR_SWEEP_WINDOW messages and at
 * most QMGR_SWEEP_BATCH completions run from their own timer, with other events in between, so
 * a backlog of 100,000 messages at start does not starve requests or the watchdog. */
#include <search.h>
#include <stdint.h>
#include <string.h>

#include "log/log.h"
#include "qmgr.h"

/* Both keys and tree nodes start with the queue id string. */
static int compare_id(const void *a, const void *b) {
        return strcmp((const char *) a, (const char *) b);
}

/* The active message with this queue id, or NULL. */
QmgrMessage *qmgr_active_find(Qmgr *q, const char *id) {
        void **n = tfind(id, &q->active, compare_id);
        return n ? *n : NULL;
}

static void message_free(void *p) {
        QmgrMessage *m = p;
        if (!m)
                return;
        qmgr_lookup_done(m);   /* set aside while routing: the answers are not waited for */
        queue_message_done(&m->msg);
        queue_recipients_free(m->rcpts, m->n_rcpts);
        free(m);
}

/* Removes a message from the active set and frees it. */
void qmgr_message_release(Qmgr *q, QmgrMessage *m) {
        bool was_full = q->n_active >= q->s.active_limit;
        if (tdelete(m, &q->active, compare_id))
                q->n_active--;
        message_free(m);
        /* Room for messages the last scan had to leave. The active set may also have shrunk
         * during that scan (an activation flushes pending results, which releases messages),
         * so "was full" alone would miss it and leave the backlog waiting for queue_run_delay. */
        if (was_full || q->scan_backlog)
                qmgr_schedule_scan(q, 0);
}

static int activate(Qmgr *q, const char *id, bool force) {
        if (qmgr_active_find(q, id))
                return 0;
        QmgrMessage *m = calloc(1, sizeof(QmgrMessage));
        if (!m)
                return log_oom();
        snprintf(m->queue_id, sizeof(m->queue_id), "%s", id);
        int r = queue_load_message(q->queue, id, &m->msg, &m->rcpts, &m->n_rcpts);
        if (r < 0) {
                free(m);
                if (r == -ENOENT)
                        return 0;
                return log_error_errno(r, "%s: cannot load the message: %s", id,
                                       queue_last_error(q->queue));
        }
        m->active_usec = now_usec(CLOCK_REALTIME);
        if (!tsearch(m, &q->active, compare_id)) {
                message_free(m);
                return log_oom();
        }
        q->n_active++;
        qmgr_deliver_message(q, m, force);
        return 1;
}

/* Activating a finished message runs the usual completion in qmgr_deliver_message(): the
 * bounce when a recipient bounced, and the removal, in one transaction. */
static int sweep_complete(const char *id, void *userdata) {
        Qmgr *q = userdata;
        if (activate(q, id, false) > 0)
                q->sweep_found++;
        return 0;
}

static int arm_sweep(Qmgr *q, usec_t delay_usec) {
        uint64_t now = 0;
        if (sd_event_now(q->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        int r = sd_event_source_set_time(q->sweep_timer, now + delay_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->sweep_timer, SD_EVENT_ONESHOT);
        return r;
}

/* One batch of the sweep: one query over the next QMGR_SWEEP_WINDOW messages, at most
 * QMGR_SWEEP_BATCH completions; then the loop gets its turn before the next batch. */
static int on_sweep_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Qmgr *q = userdata;
        int r = queue_scan_finished(q->queue, q->sweep_cursor, QMGR_SWEEP_WINDOW, QMGR_SWEEP_BATCH,
                                    sweep_complete, q);
        if (r < 0) {
                log_error_errno(r, "Cannot search the queue for finished messages: %s",
                                queue_last_error(q->queue));
                q->sweeping = false;
                q->sweep_needed = true;   /* tried again with a later scan */
                return 0;
        }
        if (r > 0) {
                r = arm_sweep(q, QMGR_SWEEP_GAP_USEC);
                if (r >= 0)
                        return 0;
                log_error_errno(r, "Cannot arm the sweep timer: %m");
                q->sweep_needed = true;
        }
        q->sweeping = false;
        if (q->sweep_found > 0)
                log_info("sweep: %zu finished message%s found (each completed or logged why not)",
                         q->sweep_found, q->sweep_found == 1 ? "" : "s");
        return 0;
}

/* Starts a sweep from the beginning of the queue; its batches run from the sweep timer. */
static void sweep_start(Qmgr *q) {
        q->sweep_cursor[0] = '\0';
        q->sweep_found = 0;
        int r = arm_sweep(q, 0);
        if (r < 0) {
                log_error_errno(r, "Cannot arm the sweep timer: %m");
                q->sweep_needed = true;
                return;
        }
        q->sweeping = true;
}

typedef struct ScanPass {
        Qmgr *q;
        bool force;
        size_t activated;
} ScanPass;

/* Takes one due message: active ones are passed over, new ones activated while the active set
 * and this scan's batch have room; 1 stops the scan before the message (it comes first next
 * time). */
static int scan_take(const char *id, void *userdata) {
        ScanPass *p = userdata;
        Qmgr *q = p->q;
        if (qmgr_active_find(q, id))
                return 0;
        if (q->n_active >= q->s.active_limit || p->activated >= QMGR_SCAN_BATCH)
                return 1;
        if (activate(q, id, p->force) > 0)
                p->activated++;
        return 0;
}

/* Scans go through the due messages in arrival order, from scan_cursor: each one takes up to
 * QMGR_SCAN_BATCH new messages after the last one taken, so a backlog far larger than the active
 * set is read once per pass, a batch at a time, never from the start again. A pass (and a flush,
 * whose scans treat every deferred recipient as due) ends when a scan reaches the end of the
 * due messages; a scan that finds the active set full keeps both for the next. */
static void scan(Qmgr *q) {
        usec_t now = now_usec(CLOCK_REALTIME);
        ScanPass pass = { .q = q, .force = q->scan_force };
        bool more = true;
        int r;

        /* A sweep asked for while one runs starts after it (from a later scan), so a completion
         * that keeps failing is retried at the pace of scans, not in a loop. */
        if (q->sweep_needed && !q->sweeping) {
                q->sweep_needed = false;
                sweep_start(q);
        }

        /* Pages of messages that are all active already (the head of the queue, at the start of
         * a pass) are stepped over in this scan, not one page per scan interval; at most about
         * an active set's worth of them. */
        for (size_t pages = 0; q->n_active < q->s.active_limit && pass.activated < QMGR_SCAN_BATCH &&
                               pages <= q->s.active_limit / QMGR_SCAN_BATCH; pages++) {
                r = queue_scan_due_from(q->queue, pass.force ? (usec_t) INT64_MAX : now, &q->scan_cursor,
                                        QMGR_SCAN_BATCH, scan_take, &pass);
                if (r < 0) {
                        log_error_errno(r, "Queue scan failed: %s", queue_last_error(q->queue));
                        more = false;   /* tried again from the same place by the timer below */
                        break;
                }
                if (r == 0) {
                        more = false;
                        q->scan_cursor = QUEUE_SCAN_CURSOR_START;
                        if (pass.force)
                                q->scan_force = false;
                        break;
                }
        }
        /* More may be due than the active set could take: when it is full, qmgr_message_release()
         * asks for the next scan. */
        q->scan_backlog = more;
        if (more && q->n_active < q->s.active_limit)
                qmgr_schedule_scan(q, 0);

        usec_t delay = q->s.queue_run_delay, due = 0;
        if (queue_next_due(q->queue, &due) >= 0) {
                if (due > now)
                        delay = MIN(delay, due - now);
                else if (q->n_active > 0)
                        /* The earliest retry is one of an active message: it hides the next
                         * one in the future, so look again when active messages leave. */
                        q->scan_backlog = true;
        }
        qmgr_schedule_scan(q, delay);

        if (pass.activated > 0)
                log_debug("scan: %zu activated, %zu active, %zu requests in flight", pass.activated,
                          q->n_active, q->n_in_flight);
        daemon_status(q->daemon, "%zu messages active, %zu delivery requests in flight",
                      q->n_active, q->n_in_flight);
}

/* A flush: the next pass starts from the oldest message and treats every deferred recipient
 * as due. */
void qmgr_scan_flush(Qmgr *q) {
        q->scan_force = true;
        q->scan_cursor = QUEUE_SCAN_CURSOR_START;
        qmgr_schedule_scan(q, 0);
}

/* Recipients behind the cursor became due (flush of one site or message): a pass from the start. */
void qmgr_scan_restart(Qmgr *q) {
        q->scan_cursor = QUEUE_SCAN_CURSOR_START;
        qmgr_schedule_scan(q, 0);
}

static int on_scan_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Qmgr *q = userdata;
        q->last_scan_mono = usec;
        scan(q);
        return 0;
}

/* Asks for a scan after delay_usec (coalesced with any earlier request). */
void qmgr_schedule_scan(Qmgr *q, usec_t delay_usec) {
        uint64_t now = 0, cur = 0;
        int enabled = SD_EVENT_OFF;

        if (!q->scan_timer)
                return;
        if (sd_event_now(q->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        usec_t target = delay_usec > UINT64_MAX / 2 ? UINT64_MAX / 2 : now + delay_usec;
        if (q->last_scan_mono && target < q->last_scan_mono + QMGR_SCAN_MIN_INTERVAL_USEC)
                target = q->last_scan_mono + QMGR_SCAN_MIN_INTERVAL_USEC;
        (void) sd_event_source_get_enabled(q->scan_timer, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(q->scan_timer, &cur) >= 0 && cur <= target)
                return;
        int r = sd_event_source_set_time(q->scan_timer, target);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->scan_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "Cannot arm the scan timer: %m");
}

/* Schedules a scan at a CLOCK_REALTIME time (e.g. a deferred recipient's next attempt). */
void qmgr_schedule_scan_at(Qmgr *q, usec_t realtime_usec) {
        usec_t now = now_usec(CLOCK_REALTIME);
        qmgr_schedule_scan(q, realtime_usec > now ? realtime_usec - now : 0);
}

static int on_checkpoint_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Qmgr *q = userdata;
        int r = queue_checkpoint(q->queue);
        if (r < 0)
                log_warning_errno(r, "WAL checkpoint failed: %s", queue_last_error(q->queue));
        else
                log_debug("WAL checkpoint after %zu removals", q->removed_since_checkpoint);
        q->removed_since_checkpoint = 0;
        return 0;
}

/* Asks for a passive WAL checkpoint soon (after removals). */
void qmgr_schedule_checkpoint(Qmgr *q) {
        int enabled = SD_EVENT_OFF;
        uint64_t now;
        if (!q->checkpoint_timer)
                return;
        (void) sd_event_source_get_enabled(q->checkpoint_timer, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;
        if (sd_event_now(q->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        if (sd_event_source_set_time(q->checkpoint_timer, now + USEC_PER_SEC) >= 0)
                (void) sd_event_source_set_enabled(q->checkpoint_timer, SD_EVENT_ONESHOT);
}

/* Creates the scan and checkpoint timers and schedules the first scan (with the sweep). */
int qmgr_scan_setup(Qmgr *q) {
        /* Accuracy 1 ms: the default (250 ms) would make every refill of a full active set wait
         * that long (a backlog drains in rounds of qmgr_message_active_limit messages). */
        int r = sd_event_add_time(q->event, &q->scan_timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC,
                                  on_scan_timer, q);
        if (r < 0)
                return log_error_errno(r, "Cannot create the scan timer: %m");
        (void) sd_event_source_set_description(q->scan_timer, "qmgr-scan");
        r = sd_event_add_time(q->event, &q->checkpoint_timer, CLOCK_MONOTONIC, 0, 0,
                              on_checkpoint_timer, q);
        if (r < 0)
                return log_error_errno(r, "Cannot create the checkpoint timer: %m");
        (void) sd_event_source_set_enabled(q->checkpoint_timer, SD_EVENT_OFF);
        /* Accuracy 1 us: the default (250 ms) would stretch a sweep of many batches to minutes. */
        r = sd_event_add_time(q->event, &q->sweep_timer, CLOCK_MONOTONIC, 0, 1, on_sweep_timer, q);
        if (r < 0)
                return log_error_errno(r, "Cannot create the sweep timer: %m");
        (void) sd_event_source_set_description(q->sweep_timer, "qmgr-sweep");
        (void) sd_event_source_set_enabled(q->sweep_timer, SD_EVENT_OFF);
        q->sweep_needed = true;
        q->scan_cursor = QUEUE_SCAN_CURSOR_START;
        /* time 0: the first scan runs as soon as the loop starts */
        return 0;
}

/* Frees every active message and job (shutdown). */
void qmgr_scan_done(Qmgr *q) {
        qmgr_jobs_free(q);
        tdestroy(q->active, message_free);
        q->active = NULL;
        q->n_active = 0;
        q->scan_timer = sd_event_source_disable_unref(q->scan_timer);
        q->checkpoint_timer = sd_event_source_disable_unref(q->checkpoint_timer);
        q->sweep_timer = sd_event_source_disable_unref(q->sweep_timer);
        q->sweeping = false;
}
