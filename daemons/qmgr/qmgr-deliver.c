/* qmgr-deliver.c — handing recipients to the delivery agents and recording what happened.
 *
 * qmgr_deliver_message() routes the due recipients of an activated message (qmgr-route.c):
 * recipients with the same transport and next hop become jobs of up to QMGR_LOCAL_RCPT_LIMIT
 * recipients for local delivery, <transport>_destination_recipient_limit for the others (one
 * "request=deliver" each to the agent's socket, <postern_socket_directory>/<transport>, see
 * docs/architecture.md); "error:", "retry:" and "discard:" routes and table failures are
 * decided by qmgr itself and logged (relay=none). Remote jobs wait in per-destination queues of
 * qmgr-sched.c (concurrency windows, dead destinations, round-robin); qmgr_dispatch() starts
 * local jobs from the wait queue here, at most <transport>_process_limit in flight, and at most
 * local_destination_concurrency_limit of them for any one recipient address (Postfix's local
 * destination is the recipient), so deliveries to one mailbox do not pile up on its lock; a job
 * whose recipients are all busy waits while later jobs go ahead. When a single-recipient local
 * job starts, the waiting single-recipient jobs of other messages for the same address join its
 * request (bundle_collect(), at most QMGR_LOCAL_BATCH_MAX): one delivery for the limit, one
 * mailbox lock and fsync in postern-local, and each job's results recorded as its own. Replies
 * are group-committed (see "group commit of agent results" below), so a restarted qmgr never
 * repeats a delivery it recorded. A failed connection, a timeout
 * or a status=error reply defers every recipient of the request with 4.3.0 (and the usual
 * backoff, so a dead agent is not hammered).
 *
 * Not yet Postfix's full scheduler: no preemption between messages (in-flight and waiting jobs
 * of one destination are served in FIFO order).
 *
 * A deferred recipient waits minimal_backoff_time, doubled for every further attempt, at most
 * maximal_backoff_time. A deferral of a message older than maximal_queue_lifetime
 * (bounce_queue_lifetime for notifications and null-sender mail) returns the recipient instead:
 * state bounced, keeping its last 4.x.x status and diagnostic. */
#include <ctype.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "mail/delay.h"
#include "metrics/metrics-store.h"
#include "qmgr.h"

/* The daemon behind a transport, for messages ("postern-%s"): the virtual transport and
 * master.cf's pipe(8) transports are postern-local's other sockets, master.cf's smtp and lmtp
 * transports postern-smtp's. */
static const char *agent_daemon(Qmgr *q, const char *transport) {
        const char *agent = qmgr_sched_agent(&q->s, transport);
        return streq(agent, "virtual") || streq(agent, "pipe") ? "local" : agent;
}

/* SMTP deliveries may take the sum of the smtp_*_timeout settings; qmgr waits longer. */
#define QMGR_REMOTE_TIMEOUT_USEC (3600 * USEC_PER_SEC)

/* Retry delay after the given number of attempts: minimal_backoff doubling, capped. */
usec_t qmgr_backoff(const QmgrSettings *s, uint32_t attempts) {
        usec_t b = s->minimal_backoff;
        for (uint32_t i = 1; i < attempts && b < s->maximal_backoff; i++)
                b *= 2;
        return MIN(b, MAX(s->maximal_backoff, s->minimal_backoff));
}

/* Whether a message is past its queue lifetime (bounce_queue_lifetime for notifications). */
bool qmgr_message_expired(const QmgrSettings *s, const QueueMessage *m, usec_t now) {
        usec_t lifetime = (m->is_bounce || isempty(m->sender)) ? s->bounce_queue_lifetime
                                                                : s->maximal_queue_lifetime;
        if (m->is_probe)
                lifetime = MIN(lifetime, (usec_t) QUEUE_PROBE_LIFETIME_SEC * USEC_PER_SEC);
        return now >= m->arrival_usec && now - m->arrival_usec >= lifetime;
}

typedef struct Busy {
        char *address;   /* lower case */
        size_t n;
} Busy;

static int compare_busy(const void *a, const void *b) {
        return strcmp(((const Busy *) a)->address, ((const Busy *) b)->address);
}

static void busy_free(void *p) {
        Busy *b = p;
        if (b)
                free(b->address);
        free(b);
}

static char *lower_dup(const char *s) {
        char *l = strdup(s);
        for (char *p = l; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return l;
}

static size_t busy_count(Qmgr *q, const char *address) {
        _cleanup_free_ char *l = lower_dup(address);
        if (!l)
                return 0;
        Busy key = { .address = l };
        void **n = tfind(&key, &q->busy, compare_busy);
        return n ? (*(Busy **) n)->n : 0;
}

static void busy_adjust(Qmgr *q, const char *address, bool up) {
        _cleanup_free_ char *l = lower_dup(address);
        if (!l)
                return;
        Busy key = { .address = l };
        void **n = tfind(&key, &q->busy, compare_busy);
        if (!up) {
                if (!n)
                        return;
                Busy *b = *(Busy **) n;
                if (--b->n == 0) {
                        tdelete(b, &q->busy, compare_busy);
                        busy_free(b);
                }
                return;
        }
        if (n) {
                (*(Busy **) n)->n++;
                return;
        }
        Busy *b = calloc(1, sizeof(Busy));
        if (!b)
                return;
        b->address = TAKE_PTR(l);
        b->n = 1;
        if (!tsearch(b, &q->busy, compare_busy))
                busy_free(b);
}

/* Local jobs are limited per recipient; remote ones per destination in qmgr-sched.c. */
static bool job_startable(Qmgr *q, const QmgrJob *j) {
        if (!streq(j->transport, "local"))
                return true;
        for (size_t i = 0; i < j->n; i++)
                if (busy_count(q, j->m->rcpts[j->idx[i]].address) >= q->s.rcpt_concurrency)
                        return false;
        return true;
}

/* Counting is best effort under memory pressure: a missing entry only loosens the limit. */
static void job_count(Qmgr *q, QmgrJob *j, bool up) {
        if (j->counted == up)
                return;
        qmgr_sched_transport_count(q, j->transport, up);
        if (!streq(j->transport, "local")) {
                j->counted = up;
                return;
        }
        for (size_t i = 0; i < j->n; i++)
                busy_adjust(q, j->m->rcpts[j->idx[i]].address, up);
        j->counted = up;
}

/* Frees a job (not its message). */
void qmgr_job_free(QmgrJob *j) {
        if (!j)
                return;
        free(j->idx);
        free(j->transport);
        free(j->nexthop);
        free(j);
}

static void log_deferral(Qmgr *q, QmgrMessage *m, const QueueRecipient *rc, usec_t now) {
        char delay[32], a[32], b[32];
        usec_t arrival = m->msg.arrival_usec;
        delay_format(delay_between(now, arrival), delay, sizeof(delay));
        delay_format(delay_between(m->active_usec, arrival), a, sizeof(a));
        delay_format(delay_between(now, m->active_usec), b, sizeof(b));

        const char *orig = NULL;
        if (rc->orcpt) {
                const char *semi = strchr(rc->orcpt, ';');
                orig = semi ? semi + 1 : rc->orcpt;
                while (*orig == ' ')
                        orig++;
                if (streq(orig, rc->address))
                        orig = NULL;
        }
        const char *dsn = strna(rc->dsn_status);
        const char *status = rc->state == QUEUE_RCPT_DELIVERED ? "sent" :
                             rc->state == QUEUE_RCPT_BOUNCED ? "bounced" : "deferred";
        LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender, .recipient = rc->address,
                        .relay = "none", .dsn = dsn, .status = status };
        log_fields(LOG_INFO, &f,
                   "%s: to=<%s>,%s%s%s relay=none, delay=%s, delays=%s/%s/0/0, dsn=%s, "
                   "status=%s (%s)",
                   m->queue_id, rc->address, orig ? " orig_to=<" : "", orig ? orig : "",
                   orig ? ">," : "", delay, a, b, dsn, status, strna(rc->diag));
}

static bool message_unfinished(const QmgrMessage *m) {
        for (size_t i = 0; i < m->n_rcpts; i++)
                if (m->rcpts[i].state == QUEUE_RCPT_PENDING || m->rcpts[i].state == QUEUE_RCPT_DEFERRED)
                        return true;
        return false;
}

static int write_results(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = queue_update_recipient(q->queue, &m->rcpts[res[i].idx]);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot record the result for <%s>: %s",
                                               m->queue_id, m->rcpts[res[i].idx].address,
                                               queue_last_error(q->queue));
        }
        return 0;
}

/* One transaction: the results, and the completion when complete is set (then *complete says
 * whether it happened). Returns <0 when not even the results could be recorded. */
static int record(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n, bool *complete,
                  char bounce_id[QUEUE_ID_MAX]) {
        int r;

        bounce_id[0] = '\0';
        if ((r = queue_begin(q->queue)) < 0)
                return log_error_errno(r, "%s: cannot start a transaction: %s", m->queue_id,
                                       queue_last_error(q->queue));
        r = write_results(q, m, res, n);
        if (r >= 0 && *complete) {
                size_t left = 0;
                r = queue_count_unfinished(q->queue, m->queue_id, &left);
                if (r >= 0 && left > 0) {
                        /* The database knows of work we do not (e.g. requeued meanwhile). */
                        *complete = false;
                } else if (r >= 0) {
                        r = qmgr_complete_in_transaction(q, m, bounce_id);
                        if (r < 0) {
                                /* Record the results alone; the sweep completes it later. */
                                (void) queue_rollback(q->queue);
                                q->sweep_needed = true;
                                *complete = false;
                                bounce_id[0] = '\0';
                                if ((r = queue_begin(q->queue)) < 0)
                                        return log_error_errno(r, "%s: cannot start a transaction: %s",
                                                               m->queue_id, queue_last_error(q->queue));
                                r = write_results(q, m, res, n);
                        }
                }
        }
        MetricsBatch *counted = NULL;
        if (r >= 0)
                (void) metrics_save(q->queue, &counted);   /* what was counted rides along */
        if (r >= 0)
                r = queue_commit(q->queue);
        metrics_saved(counted, r);
        if (r < 0) {
                (void) queue_rollback(q->queue);
                *complete = false;
                bounce_id[0] = '\0';
                return log_error_errno(r, "%s: cannot commit delivery results: %s", m->queue_id,
                                       queue_last_error(q->queue));
        }
        return 0;
}

static void set_text(char **field, const char *value) {
        if (!value)
                return;
        char *c = strdup(value);
        if (!c) {
                log_oom();
                return;
        }
        free(*field);
        *field = c;
}

/* The results in memory (and the relay=none log lines qmgr owes). */
static void update_memory(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n) {
        usec_t now = now_usec(CLOCK_REALTIME);
        bool expired = qmgr_message_expired(&q->s, &m->msg, now);

        for (size_t i = 0; i < n; i++) {
                QueueRecipient *rc = &m->rcpts[res[i].idx];
                set_text(&rc->dsn_status, res[i].dsn);
                set_text(&rc->diag, res[i].diag);
                rc->state = res[i].state;
                qmgr_dsn_note_result(q, rc, &res[i]);   /* soft_bounce may defer it */
                if (rc->state == QUEUE_RCPT_DEFERRED) {
                        rc->attempts++;
                        rc->next_attempt_usec = now + qmgr_backoff(&q->s, rc->attempts);
                        if (res[i].log_deferral)
                                log_deferral(q, m, rc, now);
                        if (expired) {
                                rc->state = QUEUE_RCPT_BOUNCED;
                                m->expired = true;
                        }
                } else if (res[i].log_deferral)
                        log_deferral(q, m, rc, now);   /* error: and discard: routes */
                if (!m->msg.is_probe)   /* probes count in postern_verify_probes_total */
                        qmgr_metrics_result(m, rc, res[i].transport, now);
        }
}

/* After the last job of m was recorded: logs the completion, or schedules the next attempt;
 * releases m. */
static void after_last_job(Qmgr *q, QmgrMessage *m, bool complete, const char *bounce_id) {
        if (complete) {
                bool any_bounced = false;
                for (size_t i = 0; i < m->n_rcpts; i++)
                        if (m->rcpts[i].state == QUEUE_RCPT_BOUNCED)
                                any_bounced = true;
                LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender };
                if (m->expired)
                        log_fields(LOG_INFO, &f, "%s: from=<%s>, status=expired%s",
                                   m->queue_id, m->msg.sender,
                                   bounce_id[0] ? ", returned to sender" : "");
                if (bounce_id[0])
                        log_fields(LOG_INFO, &f, "%s: %s non-delivery notification: %s",
                                   m->queue_id, m->postmaster_notice ? "postmaster" : "sender", bounce_id);
                else if (any_bounced && (m->msg.is_bounce || isempty(m->msg.sender)))
                        log_fields(LOG_NOTICE, &f, "%s: %s undeliverable, discarded "
                                   "(a notification is never returned)",
                                   m->queue_id, m->msg.is_bounce ? "delivery status notification"
                                                                 : "null-sender message");
                if (m->success_id[0])
                        log_fields(LOG_INFO, &f, "%s: sender delivery status notification: %s",
                                   m->queue_id, m->success_id);
                log_fields(LOG_INFO, &f, "%s: removed", m->queue_id);
                q->removed_since_checkpoint++;
                qmgr_metrics_removed();
                qmgr_schedule_checkpoint(q);
                if (bounce_id[0] || m->success_id[0])
                        qmgr_schedule_scan(q, 0);   /* the notification is new mail */
        } else if (m->delete_requested && !m->broken) {
                int r = queue_begin(q->queue);
                if (r >= 0)
                        r = queue_delete_message(q->queue, m->queue_id);
                if (r >= 0)
                        r = queue_commit(q->queue);
                if (r < 0) {
                        (void) queue_rollback(q->queue);
                        log_error_errno(r, "%s: cannot remove the message: %s", m->queue_id,
                                        queue_last_error(q->queue));
                } else {
                        log_fields(LOG_INFO, &(const LogFields) { .queue_id = m->queue_id },
                                   "%s: removed", m->queue_id);
                        q->removed_since_checkpoint++;
                        qmgr_metrics_removed();
                        qmgr_schedule_checkpoint(q);
                }
        } else if (!m->broken) {
                qmgr_delay_warning(q, m);
                /* Come back when the earliest deferred recipient is due. */
                usec_t next = 0;
                for (size_t i = 0; i < m->n_rcpts; i++)
                        if (m->rcpts[i].state == QUEUE_RCPT_DEFERRED &&
                            (next == 0 || m->rcpts[i].next_attempt_usec < next))
                                next = m->rcpts[i].next_attempt_usec;
                if (next > 0)
                        qmgr_schedule_scan_at(q, next);
        }
        qmgr_message_release(q, m);
}

static void batch_flush(Qmgr *q);

/* Records results (one transaction); completes or releases the message when no job is left. */
void qmgr_apply_results(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n) {
        if (qmgr_probe_report(q, m, res, n, false))
                return;   /* applied once postern-verify has them */
        /* Earlier results first: a pending one may be for m, which this call may release. */
        batch_flush(q);
        update_memory(q, m, res, n);
        bool complete = m->jobs == 0 && !m->broken && !message_unfinished(m);
        char bounce_id[QUEUE_ID_MAX] = "";
        if (!m->broken && (n > 0 || complete) && record(q, m, res, n, &complete, bounce_id) < 0)
                /* The database is the truth: forget this activation once its jobs are done. */
                m->broken = true;
        if (m->jobs > 0)
                return;
        after_last_job(q, m, complete, bounce_id);
}

/* --- group commit of agent results ---
 * Agents' replies arrive in bursts (hundreds of deliveries in flight); committing each one
 * alone costs an fsync per delivery and limited relaying to a few hundred messages per second.
 * Replies are applied in memory at once and written in one transaction per
 * QMGR_BATCH_DELAY_USEC (or QMGR_BATCH_MAX replies). If that transaction fails, each reply is
 * recorded on its own, as before. A qmgr killed before the commit forgets those results, which
 * is the same as being killed just before a reply arrived: the deliveries are repeated. */

typedef struct QmgrPending {
        QmgrMessage *m;
        QmgrResult *res;               /* only .idx is used: the values are in m->rcpts */
        size_t n;
        bool last;                     /* the last job of m: finish m after the commit */
        bool complete;
        char bounce_id[QUEUE_ID_MAX];
        struct QmgrPending *next;
} QmgrPending;

static int batch_write(Qmgr *q, QmgrPending *list) {
        int r = queue_begin(q->queue);
        for (QmgrPending *p = list; r >= 0 && p; p = p->next) {
                if (p->m->broken || (p->n == 0 && !p->complete))
                        continue;
                r = write_results(q, p->m, p->res, p->n);
                if (r >= 0 && p->complete) {
                        size_t left = 0;
                        r = queue_count_unfinished(q->queue, p->m->queue_id, &left);
                        if (r >= 0 && left > 0)
                                p->complete = false;
                        else if (r >= 0)
                                r = qmgr_complete_in_transaction(q, p->m, p->bounce_id);
                }
        }
        MetricsBatch *counted = NULL;
        if (r >= 0)
                (void) metrics_save(q->queue, &counted);
        if (r >= 0)
                r = queue_commit(q->queue);
        metrics_saved(counted, r);
        if (r < 0)
                (void) queue_rollback(q->queue);
        return r;
}

static void batch_flush(Qmgr *q) {
        QmgrPending *list = q->pending_head;
        q->pending_head = q->pending_tail = NULL;
        q->n_pending = 0;
        if (!list)
                return;
        int r = batch_write(q, list);
        for (QmgrPending *p = list; r < 0 && p; p = p->next) {
                /* One by one, with record()'s own fallbacks. */
                p->bounce_id[0] = '\0';
                p->complete = p->last && !p->m->broken && !message_unfinished(p->m);
                if (!p->m->broken && (p->n > 0 || p->complete) &&
                    record(q, p->m, p->res, p->n, &p->complete, p->bounce_id) < 0)
                        p->m->broken = true;
        }
        while (list) {
                QmgrPending *p = list;
                list = p->next;
                if (p->last)
                        after_last_job(q, p->m, p->complete && !p->m->broken, p->bounce_id);
                free(p->res);
                free(p);
        }
}

static int on_batch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Qmgr *q = userdata;
        batch_flush(q);
        qmgr_dispatch(q);
        return 0;
}

/* Like qmgr_apply_results(), with the database write joining the next group commit. */
void qmgr_apply_results_batched(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n) {
        if (qmgr_probe_report(q, m, res, n, true))
                return;
        QmgrPending *p = calloc(1, sizeof(QmgrPending));
        QmgrResult *copy = calloc(n + 1, sizeof(QmgrResult));
        if (!p || !copy) {
                free(p);
                free(copy);
                qmgr_apply_results(q, m, res, n);
                return;
        }
        update_memory(q, m, res, n);
        for (size_t i = 0; i < n; i++)
                copy[i].idx = res[i].idx;
        *p = (QmgrPending) { .m = m, .res = copy, .n = n, .last = m->jobs == 0 };
        p->complete = p->last && !m->broken && !message_unfinished(m);
        if (q->pending_tail)
                q->pending_tail->next = p;
        else
                q->pending_head = p;
        q->pending_tail = p;
        if (++q->n_pending >= QMGR_BATCH_MAX) {
                batch_flush(q);
                return;
        }
        if (q->n_pending == 1) {
                usec_t when = now_usec(CLOCK_MONOTONIC) + QMGR_BATCH_DELAY_USEC;
                if (!q->batch_timer) {
                        if (sd_event_add_time(q->event, &q->batch_timer, CLOCK_MONOTONIC, when, 0,
                                              on_batch_timer, q) < 0)
                                batch_flush(q);
                } else {
                        (void) sd_event_source_set_time(q->batch_timer, when);
                        (void) sd_event_source_set_enabled(q->batch_timer, SD_EVENT_ONESHOT);
                }
        }
}

static void defer_job(Qmgr *q, QmgrJob *j, const char *dsn, const char *diag) {
        _cleanup_free_ QmgrResult *res = calloc(j->n, sizeof(QmgrResult));
        QmgrMessage *m = j->m;

        if (!res) {
                /* Nothing recorded: the recipients stay pending and are retried on a later scan. */
                log_oom();
                m->broken = true;
                m->jobs--;
                qmgr_apply_results(q, m, NULL, 0);
                return;
        }
        for (size_t i = 0; i < j->n; i++)
                res[i] = (QmgrResult) { .idx = j->idx[i], .state = QUEUE_RCPT_DEFERRED,
                                        .dsn = dsn, .diag = diag, .log_deferral = true,
                                        .transport = j->transport };
        m->jobs--;
        qmgr_apply_results(q, m, res, j->n);
}

static QueueRcptState parse_action(const char *action) {
        /* deliverable and undeliverable: a probe's (request=verify) */
        if (action && (streq(action, "delivered") || streq(action, "relayed") || streq(action, "deliverable")))
                return QUEUE_RCPT_DELIVERED;
        if (action && (streq(action, "bounced") || streq(action, "undeliverable")))
                return QUEUE_RCPT_BOUNCED;
        return QUEUE_RCPT_DEFERRED;
}

static bool dsn_matches(const char *dsn, QueueRcptState st) {
        if (!dsn || !dsn[0] || dsn[1] != '.')
                return false;
        switch (st) {
        case QUEUE_RCPT_DELIVERED: return dsn[0] == '2';
        case QUEUE_RCPT_BOUNCED: return dsn[0] == '5' || dsn[0] == '4';
        default: return dsn[0] == '4';
        }
}

static void apply_reply(Qmgr *q, QmgrJob *j, const IpcRecord *reply) {
        QmgrMessage *m = j->m;
        _cleanup_free_ QmgrResult *res = calloc(j->n, sizeof(QmgrResult));
        _cleanup_free_ bool *got = calloc(j->n, sizeof(bool));
        _cleanup_free_ char **owned = calloc(2 * j->n + 1, sizeof(char *));
        _cleanup_free_ char (*fdsn)[16] = calloc(j->n + 1, 16);
        long long count = 0;

        if (!res || !got || !owned || !fdsn) {
                log_oom();
                m->broken = true;
                m->jobs--;
                qmgr_apply_results(q, m, NULL, 0);
                return;
        }
        if (ipc_record_get_int(reply, "count", &count) < 0 || count < 0)
                count = 0;
        for (long long k = 0; k < count; k++) {
                const char *id = ipc_record_get_indexed(reply, "rcpt_id", (size_t) k);
                if (!id)
                        continue;
                char *end;
                long long rid = strtoll(id, &end, 10);
                if (*end)
                        continue;
                for (size_t i = 0; i < j->n; i++) {
                        if (got[i] || m->rcpts[j->idx[i]].id != rid)
                                continue;
                        QueueRcptState st = parse_action(ipc_record_get_indexed(reply, "action", (size_t) k));
                        const char *dsn = ipc_record_get_indexed(reply, "dsn", (size_t) k);
                        if (!dsn_matches(dsn, st))
                                dsn = st == QUEUE_RCPT_DELIVERED ? "2.0.0" :
                                      st == QUEUE_RCPT_BOUNCED ? "5.0.0" : "4.0.0";
                        const char *diag = ipc_record_get_indexed(reply, "diag", (size_t) k);
                        if (!diag)
                                diag = "";
                        const char *action = ipc_record_get_indexed(reply, "action", (size_t) k);
                        qmgr_dsn_filter(&q->s, m->queue_id, j->transport, &st, &dsn, &diag, fdsn[i],
                                        &owned[2 * i]);
                        owned[2 * i + 1] = qmgr_dsn_relay_host(ipc_record_get_indexed(reply, "relay", (size_t) k));
                        res[i] = (QmgrResult) { .idx = j->idx[i], .state = st, .dsn = dsn,
                                                .diag = diag, .relayed = action && streq(action, "relayed"),
                                                .remote_mta = owned[2 * i + 1],
                                                .transport = j->transport };
                        got[i] = true;
                        break;
                }
        }
        for (size_t i = 0; i < j->n; i++)
                if (!got[i])
                        res[i] = (QmgrResult) {
                                .idx = j->idx[i], .state = QUEUE_RCPT_DEFERRED, .dsn = "4.3.0",
                                .diag = streq(j->transport, "local") ?
                                        "delivery agent unavailable: postern-local returned no result "
                                        "for this recipient" :
                                        "delivery agent unavailable: the agent returned no result "
                                        "for this recipient",
                                .log_deferral = true, .transport = j->transport };
        m->jobs--;
        qmgr_apply_results_batched(q, m, res, j->n);
        for (size_t i = 0; i < 2 * j->n; i++)
                free(owned[i]);
}

static void unlink_in_flight(Qmgr *q, QmgrJob *j) {
        for (QmgrJob **p = &q->in_flight; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        q->n_in_flight--;
                        return;
                }
}

/* Records the outcome of one job of a request (the request's own job or one bundled with it). */
static void job_outcome(Qmgr *q, QmgrJob *j, int error, const IpcRecord *reply, bool log) {
        if (error < 0) {
                char diag[256];
                if (error == -ETIMEDOUT)
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: no reply from "
                                 "postern-%s within %llu s", agent_daemon(q, j->transport),
                                 (streq(j->transport, "local") ? QMGR_LOCAL_TIMEOUT_USEC : QMGR_REMOTE_TIMEOUT_USEC) / USEC_PER_SEC);
                else
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: postern-%s: %s",
                                 agent_daemon(q, j->transport), strerror(-error));
                if (log)
                        log_warning("%s: delivery request to postern-%s failed: %s", j->m->queue_id, agent_daemon(q, j->transport),
                                    strerror(-error));
                defer_job(q, j, "4.3.0", diag);
                qmgr_sched_job_done(q, j, NULL);
        } else {
                const char *status = ipc_record_get(reply, "status");
                if (!status || !streq(status, "ok")) {
                        const char *reason = ipc_record_get(reply, "reason");
                        char diag[512];
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: postern-%s "
                                 "refused the request: %s", agent_daemon(q, j->transport), reason ? reason : strna(status));
                        if (log)
                                log_warning("%s: postern-%s answered status=%s: %s", j->m->queue_id,
                                            agent_daemon(q, j->transport), strna(status), strna(reason));
                        defer_job(q, j, "4.3.0", diag);
                        qmgr_sched_job_done(q, j, NULL);
                } else {
                        apply_reply(q, j, reply);
                        qmgr_sched_job_done(q, j, reply);   /* may defer the destination's jobs */
                }
        }
}

static void on_reply(int error, const IpcRecord *reply, void *userdata) {
        QmgrJob *j = userdata;
        Qmgr *q = j->qmgr;

        j->call = NULL;   /* freed by ipc after we return */
        unlink_in_flight(q, j);
        job_count(q, j, false);

        /* The jobs bundled with j were answered in the same reply (recipient ids are unique). */
        for (QmgrJob *x = j, *next; x; x = next) {
                next = x->bundle;
                job_outcome(q, x, error, reply, x == j);
                qmgr_job_free(x);
        }
        qmgr_dispatch(q);
}

static int job_request(Qmgr *q, QmgrJob *j, IpcRecord *req) {
        QmgrMessage *m = j->m;
        char buf[32];
        size_t total = 0, i0;
        int r;

        for (QmgrJob *x = j; x; x = x->bundle)
                total += x->n;
        /* A probe: postern-smtp stops at RCPT (or DATA's reply) and sends nothing. */
        if ((r = ipc_record_add(req, "request", m->msg.is_probe ? "verify" : "deliver")) < 0 ||
            (r = ipc_record_add(req, "queue_id", m->queue_id)) < 0 ||
            (r = ipc_record_add(req, "sender", m->msg.sender)) < 0 ||
            (r = ipc_record_addf(req, "arrival", "%llu", m->msg.arrival_usec)) < 0 ||
            (r = ipc_record_addf(req, "active", "%llu", m->active_usec)) < 0 ||
            (r = ipc_record_add(req, "nexthop", j->nexthop)) < 0 ||
            (r = ipc_record_addf(req, "count", "%zu", total)) < 0)
                return r;
        /* A master.cf pipe, smtp or lmtp transport: the agent needs its name. */
        if (qmgr_sched_limits(&q->s, j->transport)->agent &&
            (r = ipc_record_add(req, "transport", j->transport)) < 0)
                return r;
        i0 = 0;
        for (QmgrJob *x = j; x; x = x->bundle) {
                const QmgrMessage *xm = x->m;
                for (size_t k = 0; k < x->n; k++) {
                        const QueueRecipient *rc = &xm->rcpts[x->idx[k]];
                        size_t i = i0 + k;
                        snprintf(buf, sizeof(buf), "%" PRId64, rc->id);
                        if ((r = ipc_record_add_indexed(req, "rcpt", i, rc->address)) < 0 ||
                            (r = ipc_record_add_indexed(req, "rcpt_id", i, buf)) < 0)
                                return r;
                        if (rc->orcpt && (r = ipc_record_add_indexed(req, "orcpt", i, rc->orcpt)) < 0)
                                return r;
                        if (x == j)
                                continue;
                        /* Another message: its own envelope attributes (docs/architecture.md). */
                        if ((r = ipc_record_add_indexed(req, "queue_id", i, xm->queue_id)) < 0 ||
                            (r = ipc_record_add_indexed(req, "sender", i, xm->msg.sender)) < 0)
                                return r;
                        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) xm->msg.arrival_usec);
                        if ((r = ipc_record_add_indexed(req, "arrival", i, buf)) < 0)
                                return r;
                        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) xm->active_usec);
                        if ((r = ipc_record_add_indexed(req, "active", i, buf)) < 0)
                                return r;
                }
                i0 += x->n;
        }
        return 0;
}

/* Unlinks the job at *pp (after prev) from the wait queue and returns it. */
static QmgrJob *wait_take(Qmgr *q, QmgrJob **pp, QmgrJob *prev) {
        QmgrJob *j = *pp;
        *pp = j->next;
        if (q->wait_tail == j)
                q->wait_tail = prev;
        j->next = NULL;
        return j;
}

/* Takes the local jobs of other messages for the same single recipient as j out of the wait
 * queue (up to QMGR_LOCAL_BATCH_MAX jobs in all) and chains them to j, to go in j's request:
 * postern-local then appends them to the mailbox in one child, under one lock, with one fsync.
 * They count as one delivery for local_destination_concurrency_limit, as they are one. */
static void bundle_collect(Qmgr *q, QmgrJob *j) {
        if (!streq(j->transport, "local") || j->n != 1)
                return;
        const char *address = j->m->rcpts[j->idx[0]].address;
        QmgrJob **pp = &q->wait_head, *prev = NULL, **tail = &j->bundle;
        size_t n = 1, looked = 0;

        while (*pp && n < QMGR_LOCAL_BATCH_MAX && looked++ < QMGR_DISPATCH_LOOKAHEAD) {
                QmgrJob *f = *pp;
                if (f->n != 1 || f->m == j->m || !streq(f->transport, "local") ||
                    !strcaseeq(f->nexthop, j->nexthop) || !strcaseeq(f->m->rcpts[f->idx[0]].address, address)) {
                        prev = f;
                        pp = &f->next;
                        continue;
                }
                wait_take(q, pp, prev);
                *tail = f;
                tail = &f->bundle;
                n++;
        }
}

/* The multiplexed connection to the remote agent at path (postern-smtp holds thousands of
 * deliveries: one descriptor for all of them instead of one per request). */
static int agent_mux(Qmgr *q, const char *path, IpcMux **ret) {
        for (size_t i = 0; i < q->n_agents; i++)
                if (streq(ipc_mux_path(q->agents[i]), path)) {
                        *ret = q->agents[i];
                        return 0;
                }
        IpcMux **a = realloc(q->agents, (q->n_agents + 1) * sizeof(IpcMux *));
        if (!a)
                return -ENOMEM;
        q->agents = a;
        int r = ipc_mux_new(q->event, path, &a[q->n_agents]);
        if (r < 0)
                return r;
        *ret = a[q->n_agents++];
        return 0;
}

/* Sends j to its agent and puts it in flight; on failure defers and frees j (returns <0).
 * postern-smtp's sockets (smtp, lmtp; relay is smtp) take every request over one multiplexed
 * connection; postern-local and any other agent socket get a connection per request, which
 * every IPC server understands. */
int qmgr_job_start(Qmgr *q, QmgrJob *j) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        _cleanup_free_ char *path = NULL;
        bool local = streq(j->transport, "local");
        int r = job_request(q, j, &req);
        /* "relay" is postern-smtp under another name (Postfix's master.cf: relay ... smtp), as
         * are master.cf's smtp and lmtp transports; a pipe(8) one is postern-local's pipe socket. */
        const char *agent = qmgr_sched_agent(&q->s, j->transport);
        if (r >= 0 && !local && asprintf(&path, "%s/%s", q->s.socket_directory, agent) < 0) {
                path = NULL;
                r = -ENOMEM;
        }
        IpcMux *mux = NULL;
        bool multiplexed = streq(agent, "smtp") || streq(agent, "lmtp");
        if (r >= 0 && local)
                r = ipc_client_call_async(q->event, q->s.local_socket, &req, QMGR_LOCAL_TIMEOUT_USEC,
                                          on_reply, j, &j->call);
        else if (r >= 0 && !multiplexed)
                r = ipc_client_call_async(q->event, path, &req, QMGR_REMOTE_TIMEOUT_USEC, on_reply, j, &j->call);
        else if (r >= 0 && (r = agent_mux(q, path, &mux)) >= 0)
                r = ipc_mux_call_async(mux, &req, QMGR_REMOTE_TIMEOUT_USEC, on_reply, j, &j->call);
        if (r < 0) {
                char diag[512];
                snprintf(diag, sizeof(diag), "delivery agent unavailable: cannot connect to "
                         "postern-%s at %s: %s", agent_daemon(q, j->transport), local ? q->s.local_socket : strna(path),
                         strerror(-r));
                log_warning("%s: %s", j->m->queue_id, diag);
                for (QmgrJob *x = j, *next; x; x = next) {
                        next = x->bundle;
                        defer_job(q, x, "4.3.0", diag);
                        qmgr_job_free(x);
                }
                return r;
        }
        job_count(q, j, true);
        j->next = q->in_flight;
        q->in_flight = j;
        q->n_in_flight++;
        return 0;
}

/* Defers every recipient of a job that is not in flight (with dsn and diag) and frees it. */
void qmgr_job_defer(Qmgr *q, QmgrJob *j, const char *dsn, const char *diag) {
        defer_job(q, j, dsn, diag);
        qmgr_job_free(j);
}

/* Starts queued jobs while connection slots are free: local ones from the wait queue (in queue
 * order, skipping jobs whose recipients are busy), remote ones through qmgr-sched.c. */
void qmgr_dispatch(Qmgr *q) {
        QmgrJob **pp = &q->wait_head, *prev = NULL;
        size_t looked = 0;

        while (*pp && qmgr_sched_transport_free(q, "local") && looked++ < QMGR_DISPATCH_LOOKAHEAD) {
                QmgrJob *j = *pp;
                if (!job_startable(q, j)) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                wait_take(q, pp, prev);
                bundle_collect(q, j);
                (void) qmgr_job_start(q, j);
        }
        qmgr_sched_dispatch(q);
}

static void enqueue(Qmgr *q, QmgrJob *j) {
        j->next = NULL;
        if (q->wait_tail)
                q->wait_tail->next = j;
        else
                q->wait_head = j;
        q->wait_tail = j;
}

/* An error:/discard: route's text: "5.1.1 text" keeps its status (class forced), else dflt. */
static const char *route_text_dsn(const char *text, char dsn[16], const char *dflt, const char **ret_text) {
        const char *t = strempty(text);
        size_t n = strspn(t, "0123456789.");
        if (n >= 5 && n < 12 && t[1] == '.' && (t[n] == ' ' || t[n] == '\0') && t[0] == dflt[0]) {
                snprintf(dsn, 16, "%.*s", (int) n, t);
                t += n;
                while (*t == ' ')
                        t++;
        } else
                snprintf(dsn, 16, "%s", dflt);
        *ret_text = t;
        return dsn;
}

/* Routes the due recipients of a freshly activated message and queues its delivery jobs. A
 * routing that waits for a server table's answer sets m aside (qmgr-lookup.c) and this runs
 * again when the answers are there. */
void qmgr_deliver_message(Qmgr *q, QmgrMessage *m, bool force) {
        usec_t now = m->active_usec;
        size_t nr = m->n_rcpts + 1;
        _cleanup_free_ QmgrResult *decided = calloc(nr, sizeof(QmgrResult));
        _cleanup_free_ size_t *due = calloc(nr, sizeof(size_t));
        _cleanup_free_ size_t *idx = calloc(nr, sizeof(size_t));
        _cleanup_free_ char **transport = calloc(nr, sizeof(char *));
        _cleanup_free_ char **nexthop = calloc(nr, sizeof(char *));
        _cleanup_free_ char (*dsn)[16] = calloc(nr, 16);
        _cleanup_free_ bool *taken = calloc(nr, sizeof(bool));
        size_t n_decided = 0, n_due = 0;
        const QmgrSettings *rs = qmgr_probe_routing(q, m);

        if (!decided || !due || !idx || !transport || !nexthop || !dsn || !taken) {
                log_oom();
                qmgr_message_release(q, m);
                return;
        }
        bool waiting = false;
        for (size_t i = 0; i < m->n_rcpts; i++) {
                QueueRecipient *rc = &m->rcpts[i];
                if (rc->state == QUEUE_RCPT_DELIVERED || rc->state == QUEUE_RCPT_BOUNCED)
                        continue;
                if (rc->state == QUEUE_RCPT_DEFERRED && !force && rc->next_attempt_usec > now)
                        continue;
                int r = qmgr_lookup_route(m, rs, rc->address, &transport[i], &nexthop[i]);
                if (r == -EINPROGRESS || waiting) {
                        /* the other recipients are routed only to send their keys too */
                        waiting = true;
                        continue;
                }
                if (r < 0) {
                        decided[n_decided++] = (QmgrResult) {
                                .idx = i, .state = QUEUE_RCPT_DEFERRED, .dsn = "4.3.0",
                                .diag = r == -ENOMEM ? "out of memory while routing" :
                                        "transport_maps, sender_dependent_*_maps or domain table lookup failure",
                                .log_deferral = true };
                        continue;
                }
                const char *text;
                if (streq(transport[i], "error")) {
                        route_text_dsn(nexthop[i], dsn[i], "5.0.0", &text);
                        decided[n_decided++] = (QmgrResult) {
                                .idx = i, .state = QUEUE_RCPT_BOUNCED,
                                .dsn = dsn[i], .diag = isempty(text) ? "mail transport unavailable" : text,
                                .log_deferral = true };
                } else if (streq(transport[i], "retry")) {
                        route_text_dsn(nexthop[i], dsn[i], "4.3.0", &text);
                        decided[n_decided++] = (QmgrResult) {
                                .idx = i, .state = QUEUE_RCPT_DEFERRED, .dsn = dsn[i],
                                .diag = isempty(text) ? "delivery temporarily suspended" : text,
                                .log_deferral = true };
                } else if (streq(transport[i], "discard")) {
                        route_text_dsn(nexthop[i], dsn[i], "2.0.0", &text);
                        decided[n_decided++] = (QmgrResult) {
                                .idx = i, .state = QUEUE_RCPT_DELIVERED, .dsn = dsn[i],
                                .diag = isempty(text) ? "discarded" : text, .log_deferral = true };
                } else if (m->msg.is_probe) {
                        decided[n_decided] = (QmgrResult) { .idx = i };
                        if (qmgr_probe_decide(rs, transport[i], &decided[n_decided]))
                                n_decided++;
                        else {
                                LogFields pf = { .queue_id = m->queue_id, .recipient = rc->address };
                                log_fields(LOG_INFO, &pf, "%s: probe of <%s>: transport %s, next hop %s, sender <%s>",
                                           m->queue_id, rc->address, transport[i], nexthop[i], m->msg.sender);
                                due[n_due++] = i;
                        }
                } else
                        due[n_due++] = i;
        }

        if (waiting) {
                for (size_t i = 0; i < m->n_rcpts; i++) {
                        free(transport[i]);
                        free(nexthop[i]);
                }
                if (qmgr_lookup_park(q, m, force))
                        return;   /* routed again when the answers are there */
                qmgr_deliver_message(q, m, force);   /* they are: route again now */
                return;
        }
        qmgr_lookup_done(m);

        LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender };
        if (n_due + n_decided > 0) {
                log_fields(LOG_INFO, &f, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%zu (queue active)",
                           m->queue_id, m->msg.sender, m->msg.size, m->n_rcpts);
                qmgr_metrics_active(m->msg.size, m->n_rcpts);
        }

        /* Queue the jobs first: while m->jobs > 0 recording the decided results cannot release m.
         * One job: recipients with the same transport and next hop, in queue order. */
        for (size_t a = 0; a < n_due && !m->broken; a++) {
                size_t i = due[a], k = 0;
                if (taken[a])
                        continue;
                size_t limit = streq(transport[i], "local") ? QMGR_LOCAL_RCPT_LIMIT :
                               qmgr_sched_limits(&q->s, transport[i])->rcpt_limit;
                for (size_t b = a; b < n_due && k < limit; b++) {
                        size_t x = due[b];
                        if (!taken[b] && streq(transport[x], transport[i]) &&
                            strcaseeq(nexthop[x], nexthop[i])) {
                                taken[b] = true;
                                idx[k++] = x;
                        }
                }
                QmgrJob *j = calloc(1, sizeof(QmgrJob));
                size_t *jidx = calloc(k, sizeof(size_t));
                char *jt = strdup(transport[i]), *jn = strdup(nexthop[i]);
                if (!j || !jidx || !jt || !jn) {
                        /* The rest stay pending and are found again by a later scan. */
                        free(j);
                        free(jidx);
                        free(jt);
                        free(jn);
                        log_oom();
                        m->broken = true;
                        break;
                }
                memcpy(jidx, idx, k * sizeof(size_t));
                *j = (QmgrJob) { .qmgr = q, .m = m, .idx = jidx, .n = k, .transport = jt, .nexthop = jn };
                if (!streq(jt, "local") && qmgr_sched_enqueue(q, j) < 0) {
                        qmgr_job_free(j);
                        log_oom();
                        m->broken = true;
                        break;
                }
                m->jobs++;
                if (streq(jt, "local"))
                        enqueue(q, j);
        }

        size_t n_rcpts = m->n_rcpts;   /* m may be gone after qmgr_apply_results() */
        qmgr_apply_results(q, m, decided, n_decided);   /* completes or releases m if no job is left */
        for (size_t i = 0; i < n_rcpts; i++) {
                free(transport[i]);
                free(nexthop[i]);
        }
        qmgr_dispatch(q);
}

/* Frees the jobs of m in the list head..tail (a wait queue); returns how many. */
size_t qmgr_jobs_drop_message(QmgrJob **head, QmgrJob **tail, QmgrMessage *m) {
        QmgrJob **pp = head, *prev = NULL;
        size_t dropped = 0;

        while (*pp) {
                QmgrJob *j = *pp;
                if (j->m != m) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                *pp = j->next;
                if (*tail == j)
                        *tail = prev;
                qmgr_job_free(j);
                dropped++;
        }
        return dropped;
}

/* Drops the jobs of m that have not started yet (finalizing m when none is left); a message set
 * aside while routing is finalized at once. */
void qmgr_cancel_waiting_jobs(Qmgr *q, QmgrMessage *m) {
        if (qmgr_lookup_parked(m)) {
                /* set aside while routing: no job yet, nothing to finish */
                qmgr_lookup_done(m);
                qmgr_apply_results(q, m, NULL, 0);
                return;
        }
        size_t dropped = qmgr_jobs_drop_message(&q->wait_head, &q->wait_tail, m);
        dropped += qmgr_sched_cancel_message(q, m);
        if (dropped == 0)
                return;
        m->jobs -= (unsigned) dropped;
        if (m->jobs == 0)
                qmgr_apply_results(q, m, NULL, 0);
}

/* Cancels and frees every job (shutdown). */
void qmgr_jobs_free(Qmgr *q) {
        qmgr_probe_reports_free(q);
        batch_flush(q);   /* results already received are kept */
        q->batch_timer = sd_event_source_disable_unref(q->batch_timer);
        while (q->in_flight) {
                QmgrJob *j = q->in_flight;
                q->in_flight = j->next;
                ipc_call_cancel(j->call);
                for (QmgrJob *x = j, *next; x; x = next) {
                        next = x->bundle;
                        qmgr_job_free(x);
                }
        }
        q->n_in_flight = 0;
        for (size_t i = 0; i < q->n_agents; i++)
                ipc_mux_free(q->agents[i]);
        free(q->agents);
        q->agents = NULL;
        q->n_agents = 0;
        while (q->wait_head) {
                QmgrJob *j = q->wait_head;
                q->wait_head = j->next;
                qmgr_job_free(j);
        }
        q->wait_tail = NULL;
        qmgr_sched_free(q);
        tdestroy(q->busy, busy_free);
        q->busy = NULL;
}
