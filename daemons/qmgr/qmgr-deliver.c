/* qmgr-deliver.c — handing recipients to postern-local and recording what happened.
 *
 * qmgr_deliver_message() routes the due recipients of an activated message: local ones become
 * jobs of up to QMGR_LOCAL_RCPT_LIMIT recipients (one "request=deliver" each, see
 * docs/architecture.md), the others are deferred by qmgr itself with 4.3.0 and logged
 * (relay=none). qmgr_dispatch() keeps at most default_process_limit requests in flight to
 * postern-local (one connection each), and at most local_destination_concurrency_limit of them
 * for any one recipient address (Postfix's local destination is the recipient), so deliveries
 * to one mailbox do not pile up on its lock; a job whose recipients are all busy waits while
 * later jobs go ahead. Each reply is recorded in one transaction by qmgr_apply_results() as soon as it
 * arrives, so a restarted qmgr never repeats a recorded delivery. A failed connection, a timeout
 * or a status=error reply defers every recipient of the request with 4.3.0 (and the usual
 * backoff, so a dead agent is not hammered).
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
#include "qmgr.h"

#define REMOTE_DIAG "mail transport unavailable: Postern cannot deliver to remote domains yet " \
                    "(no SMTP client, postern-smtp, is available); the message stays queued"

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

static bool job_startable(Qmgr *q, const QmgrJob *j) {
        for (size_t i = 0; i < j->n; i++)
                if (busy_count(q, j->m->rcpts[j->idx[i]].address) >= q->s.rcpt_concurrency)
                        return false;
        return true;
}

/* Counting is best effort under memory pressure: a missing entry only loosens the limit. */
static void job_count(Qmgr *q, QmgrJob *j, bool up) {
        if (j->counted == up)
                return;
        for (size_t i = 0; i < j->n; i++)
                busy_adjust(q, j->m->rcpts[j->idx[i]].address, up);
        j->counted = up;
}

static void job_free(QmgrJob *j) {
        if (!j)
                return;
        free(j->idx);
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
        LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender, .recipient = rc->address,
                        .relay = "none", .dsn = dsn, .status = "deferred" };
        log_fields(LOG_INFO, &f,
                   "%s: to=<%s>,%s%s%s relay=none, delay=%s, delays=%s/%s/0/0, dsn=%s, "
                   "status=deferred (%s)",
                   m->queue_id, rc->address, orig ? " orig_to=<" : "", orig ? orig : "",
                   orig ? ">," : "", delay, a, b, dsn, strna(rc->diag));
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
        if (r >= 0)
                r = queue_commit(q->queue);
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

/* Records results (one transaction); completes or releases the message when no job is left. */
void qmgr_apply_results(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n) {
        usec_t now = now_usec(CLOCK_REALTIME);
        bool expired = qmgr_message_expired(&q->s, &m->msg, now);

        for (size_t i = 0; i < n; i++) {
                QueueRecipient *rc = &m->rcpts[res[i].idx];
                set_text(&rc->dsn_status, res[i].dsn);
                set_text(&rc->diag, res[i].diag);
                rc->state = res[i].state;
                if (res[i].state == QUEUE_RCPT_DEFERRED) {
                        rc->attempts++;
                        rc->next_attempt_usec = now + qmgr_backoff(&q->s, rc->attempts);
                        if (res[i].log_deferral)
                                log_deferral(q, m, rc, now);
                        if (expired) {
                                rc->state = QUEUE_RCPT_BOUNCED;
                                m->expired = true;
                        }
                }
        }

        bool complete = m->jobs == 0 && !m->broken && !message_unfinished(m);
        char bounce_id[QUEUE_ID_MAX] = "";
        if (!m->broken && (n > 0 || complete) && record(q, m, res, n, &complete, bounce_id) < 0)
                /* The database is the truth: forget this activation once its jobs are done. */
                m->broken = true;
        if (m->jobs > 0)
                return;

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
                        log_fields(LOG_INFO, &f, "%s: sender non-delivery notification: %s",
                                   m->queue_id, bounce_id);
                else if (any_bounced && (m->msg.is_bounce || isempty(m->msg.sender)))
                        log_fields(LOG_NOTICE, &f, "%s: %s undeliverable, discarded "
                                   "(a notification is never returned)",
                                   m->queue_id, m->msg.is_bounce ? "delivery status notification"
                                                                 : "null-sender message");
                log_fields(LOG_INFO, &f, "%s: removed", m->queue_id);
                q->removed_since_checkpoint++;
                qmgr_schedule_checkpoint(q);
                if (bounce_id[0])
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
                        qmgr_schedule_checkpoint(q);
                }
        } else if (!m->broken) {
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

static void defer_job(Qmgr *q, QmgrJob *j, const char *diag) {
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
                                        .dsn = "4.3.0", .diag = diag, .log_deferral = true };
        m->jobs--;
        qmgr_apply_results(q, m, res, j->n);
}

static QueueRcptState parse_action(const char *action) {
        if (action && streq(action, "delivered"))
                return QUEUE_RCPT_DELIVERED;
        if (action && streq(action, "bounced"))
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
        long long count = 0;

        if (!res || !got) {
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
                        res[i] = (QmgrResult) { .idx = j->idx[i], .state = st, .dsn = dsn,
                                                .diag = diag ? diag : "" };
                        got[i] = true;
                        break;
                }
        }
        for (size_t i = 0; i < j->n; i++)
                if (!got[i])
                        res[i] = (QmgrResult) {
                                .idx = j->idx[i], .state = QUEUE_RCPT_DEFERRED, .dsn = "4.3.0",
                                .diag = "delivery agent unavailable: postern-local returned no result "
                                        "for this recipient",
                                .log_deferral = true };
        m->jobs--;
        qmgr_apply_results(q, m, res, j->n);
}

static void unlink_in_flight(Qmgr *q, QmgrJob *j) {
        for (QmgrJob **p = &q->in_flight; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        q->n_in_flight--;
                        return;
                }
}

static void on_reply(int error, const IpcRecord *reply, void *userdata) {
        QmgrJob *j = userdata;
        Qmgr *q = j->qmgr;

        j->call = NULL;   /* freed by ipc after we return */
        unlink_in_flight(q, j);
        job_count(q, j, false);

        if (error < 0) {
                char diag[256];
                if (error == -ETIMEDOUT)
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: no reply from "
                                 "postern-local within %llu s", QMGR_LOCAL_TIMEOUT_USEC / USEC_PER_SEC);
                else
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: postern-local: %s",
                                 strerror(-error));
                log_warning("%s: delivery request to %s failed: %s", j->m->queue_id, q->s.local_socket,
                            strerror(-error));
                defer_job(q, j, diag);
        } else {
                const char *status = ipc_record_get(reply, "status");
                if (!status || !streq(status, "ok")) {
                        const char *reason = ipc_record_get(reply, "reason");
                        char diag[512];
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: postern-local "
                                 "refused the request: %s", reason ? reason : strna(status));
                        log_warning("%s: postern-local answered status=%s: %s", j->m->queue_id,
                                    strna(status), strna(reason));
                        defer_job(q, j, diag);
                } else
                        apply_reply(q, j, reply);
        }
        job_free(j);
        qmgr_dispatch(q);
}

static int job_request(Qmgr *q, QmgrJob *j, IpcRecord *req) {
        QmgrMessage *m = j->m;
        char buf[32];
        int r;

        if ((r = ipc_record_add(req, "request", "deliver")) < 0 ||
            (r = ipc_record_add(req, "queue_id", m->queue_id)) < 0 ||
            (r = ipc_record_add(req, "sender", m->msg.sender)) < 0 ||
            (r = ipc_record_addf(req, "arrival", "%llu", m->msg.arrival_usec)) < 0 ||
            (r = ipc_record_addf(req, "active", "%llu", m->active_usec)) < 0 ||
            (r = ipc_record_add(req, "nexthop", q->s.myhostname)) < 0 ||
            (r = ipc_record_addf(req, "count", "%zu", j->n)) < 0)
                return r;
        for (size_t i = 0; i < j->n; i++) {
                const QueueRecipient *rc = &m->rcpts[j->idx[i]];
                snprintf(buf, sizeof(buf), "%" PRId64, rc->id);
                if ((r = ipc_record_add_indexed(req, "rcpt", i, rc->address)) < 0 ||
                    (r = ipc_record_add_indexed(req, "rcpt_id", i, buf)) < 0)
                        return r;
                if (rc->orcpt && (r = ipc_record_add_indexed(req, "orcpt", i, rc->orcpt)) < 0)
                        return r;
        }
        return 0;
}

/* Starts queued jobs while connection slots are free. */
void qmgr_dispatch(Qmgr *q) {
        QmgrJob **pp = &q->wait_head, *prev = NULL;
        size_t looked = 0;

        while (*pp && q->n_in_flight < q->s.process_limit && looked++ < QMGR_DISPATCH_LOOKAHEAD) {
                QmgrJob *j = *pp;
                if (!job_startable(q, j)) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                *pp = j->next;
                if (q->wait_tail == j)
                        q->wait_tail = prev;
                j->next = NULL;

                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                int r = job_request(q, j, &req);
                if (r >= 0)
                        r = ipc_client_call_async(q->event, q->s.local_socket, &req,
                                                  QMGR_LOCAL_TIMEOUT_USEC, on_reply, j, &j->call);
                if (r < 0) {
                        char diag[512];
                        snprintf(diag, sizeof(diag), "delivery agent unavailable: cannot connect to "
                                 "postern-local at %s: %s", q->s.local_socket, strerror(-r));
                        log_warning("%s: %s", j->m->queue_id, diag);
                        defer_job(q, j, diag);
                        job_free(j);
                        continue;
                }
                job_count(q, j, true);
                j->next = q->in_flight;
                q->in_flight = j;
                q->n_in_flight++;
        }
}

static void enqueue(Qmgr *q, QmgrJob *j) {
        j->next = NULL;
        if (q->wait_tail)
                q->wait_tail->next = j;
        else
                q->wait_head = j;
        q->wait_tail = j;
}

/* Routes the due recipients of a freshly activated message and queues its delivery jobs. */
void qmgr_deliver_message(Qmgr *q, QmgrMessage *m, bool force) {
        usec_t now = m->active_usec;
        _cleanup_free_ QmgrResult *defer = calloc(m->n_rcpts + 1, sizeof(QmgrResult));
        _cleanup_free_ size_t *local = calloc(m->n_rcpts + 1, sizeof(size_t));
        size_t n_defer = 0, n_local = 0;

        if (!defer || !local) {
                log_oom();
                qmgr_message_release(q, m);
                return;
        }
        for (size_t i = 0; i < m->n_rcpts; i++) {
                QueueRecipient *rc = &m->rcpts[i];
                if (rc->state == QUEUE_RCPT_DELIVERED || rc->state == QUEUE_RCPT_BOUNCED)
                        continue;
                if (rc->state == QUEUE_RCPT_DEFERRED && !force && rc->next_attempt_usec > now)
                        continue;
                if (qmgr_route(&q->s, rc->address) == QMGR_ROUTE_LOCAL)
                        local[n_local++] = i;
                else
                        defer[n_defer++] = (QmgrResult) { .idx = i, .state = QUEUE_RCPT_DEFERRED,
                                                          .dsn = "4.3.0", .diag = REMOTE_DIAG,
                                                          .log_deferral = true };
        }

        LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender };
        if (n_local + n_defer > 0)
                log_fields(LOG_INFO, &f, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%zu (queue active)",
                           m->queue_id, m->msg.sender, m->msg.size, m->n_rcpts);

        /* Queue the jobs first: while m->jobs > 0 recording the deferrals cannot release m. */
        for (size_t off = 0; off < n_local; off += QMGR_LOCAL_RCPT_LIMIT) {
                size_t k = MIN(n_local - off, (size_t) QMGR_LOCAL_RCPT_LIMIT);
                QmgrJob *j = calloc(1, sizeof(QmgrJob));
                size_t *idx = calloc(k, sizeof(size_t));
                if (!j || !idx) {
                        /* The rest stay pending and are found again by a later scan. */
                        free(j);
                        free(idx);
                        log_oom();
                        m->broken = true;
                        break;
                }
                memcpy(idx, local + off, k * sizeof(size_t));
                *j = (QmgrJob) { .qmgr = q, .m = m, .idx = idx, .n = k };
                m->jobs++;
                enqueue(q, j);
        }

        qmgr_apply_results(q, m, defer, n_defer);   /* completes or releases m if no job is left */
        qmgr_dispatch(q);
}

/* Drops the jobs of m that have not started yet (finalizing m when none is left). */
void qmgr_cancel_waiting_jobs(Qmgr *q, QmgrMessage *m) {
        QmgrJob **pp = &q->wait_head, *prev = NULL;
        size_t dropped = 0;

        while (*pp) {
                QmgrJob *j = *pp;
                if (j->m != m) {
                        prev = j;
                        pp = &j->next;
                        continue;
                }
                *pp = j->next;
                if (q->wait_tail == j)
                        q->wait_tail = prev;
                job_free(j);
                dropped++;
        }
        if (dropped == 0)
                return;
        m->jobs -= (unsigned) dropped;
        if (m->jobs == 0)
                qmgr_apply_results(q, m, NULL, 0);
}

/* Cancels and frees every job (shutdown). */
void qmgr_jobs_free(Qmgr *q) {
        while (q->in_flight) {
                QmgrJob *j = q->in_flight;
                q->in_flight = j->next;
                ipc_call_cancel(j->call);
                job_free(j);
        }
        q->n_in_flight = 0;
        while (q->wait_head) {
                QmgrJob *j = q->wait_head;
                q->wait_head = j->next;
                job_free(j);
        }
        q->wait_tail = NULL;
        tdestroy(q->busy, busy_free);
        q->busy = NULL;
}
