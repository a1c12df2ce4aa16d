/* qmgr-control.c — the administrative verbs on the qmgr socket (Postfix's postsuper -h/-H/-d/-r,
 * done by the one process that owns delivery state, so they cannot race a delivery):
 *
 *   request=hold     queue_id=<id>|ALL   keep the message(s) out of delivery
 *   request=release  queue_id=<id>|ALL   undo hold; delivery is attempted at once
 *   request=delete   queue_id=<id>|ALL   remove without notifying anyone
 *   request=requeue  queue_id=<id>|ALL   retry every deferred recipient now
 *
 * Only root and mail_owner (SO_PEERCRED of the connection; the uid is looked up when settings
 * load) may use them, as only they may run Postfix's postsuper; anyone may ask for wakeup and
 * flush (sendmail -q, postqueue -f), which qmgr.c serves. A refused request is answered
 * status=error reason="permission denied: only root or <mail_owner> may <verb> queued mail"
 * and logged with the peer's uid.
 *
 * Replies: status=ok count=<messages affected>, or status=error reason=... (e.g. an unknown id).
 * A message being delivered right now finishes the requests already handed to postern-local;
 * a delete then removes it instead of recording its next attempt, and a hold keeps later scans
 * away from it. Each action is logged as "<id>: placed on hold", "released from hold",
 * "removed" or "requeued". */
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "qmgr.h"

typedef struct IdVec {
        char **v;      /* NULL-terminated */
        size_t n, cap;
} IdVec;

static int collect_all(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *userdata) {
        IdVec *ids = userdata;
        if (ids->n + 2 > ids->cap) {
                size_t cap = ids->cap ? ids->cap * 2 : 64;
                char **nv = realloc(ids->v, cap * sizeof(char *));
                if (!nv)
                        return -ENOMEM;
                ids->v = nv;
                ids->cap = cap;
        }
        if (!(ids->v[ids->n] = strdup(m->queue_id)))
                return -ENOMEM;
        ids->v[++ids->n] = NULL;
        return 0;
}

static int requeue_one(Qmgr *q, const char *id) {
        QueueMessage m = {};
        QueueRecipient *rcpts = NULL;
        size_t n = 0;
        int r = queue_load_message(q->queue, id, &m, &rcpts, &n);
        if (r < 0)
                return r;
        r = queue_begin(q->queue);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (rcpts[i].state == QUEUE_RCPT_DEFERRED) {
                        rcpts[i].next_attempt_usec = 0;
                        r = queue_update_recipient(q->queue, &rcpts[i]);
                }
        if (r >= 0)
                r = queue_commit(q->queue);
        if (r < 0)
                (void) queue_rollback(q->queue);
        queue_message_done(&m);
        queue_recipients_free(rcpts, n);
        return r;
}

static int delete_one(Qmgr *q, const char *id) {
        int r = queue_begin(q->queue);
        if (r >= 0)
                r = queue_delete_message(q->queue, id);
        if (r >= 0)
                r = queue_commit(q->queue);
        if (r < 0)
                (void) queue_rollback(q->queue);
        return r;
}

static int act(Qmgr *q, const char *verb, const char *id) {
        QmgrMessage *m = qmgr_active_find(q, id);
        LogFields f = { .queue_id = id };
        int r;

        if (streq(verb, "hold") || streq(verb, "release")) {
                bool hold = streq(verb, "hold");
                r = queue_set_hold(q->queue, id, hold);
                if (r < 0)
                        return r;
                log_fields(LOG_INFO, &f, "%s: %s", id, hold ? "placed on hold" : "released from hold");
                if (!hold)
                        qmgr_schedule_scan(q, 0);
                return 0;
        }
        if (streq(verb, "delete")) {
                if (m) {
                        /* Finish what postern-local is doing; drop what has not started. */
                        m->delete_requested = true;
                        qmgr_cancel_waiting_jobs(q, m);
                        return 0;
                }
                r = delete_one(q, id);
                if (r < 0)
                        return r;
                log_fields(LOG_INFO, &f, "%s: removed", id);
                q->removed_since_checkpoint++;
                qmgr_schedule_checkpoint(q);
                return 0;
        }
        /* requeue */
        if (!m) {
                r = requeue_one(q, id);
                if (r < 0)
                        return r;
        }
        log_fields(LOG_INFO, &f, "%s: requeued", id);
        qmgr_schedule_scan(q, 0);
        return 0;
}

static bool peer_allowed(Qmgr *q, IpcConn *c, uid_t *ret_uid) {
        uid_t uid = (uid_t) -1;
        if (ipc_conn_peer_uid(c, &uid) < 0)
                return false;   /* no credentials: nobody we know */
        *ret_uid = uid;
        return uid == 0 || (q->s.mail_owner_known && uid == q->s.mail_owner_uid);
}

/* Runs an administrative verb; replies status=ok count=N or status=error. */
int qmgr_control(Qmgr *q, IpcConn *c, const char *verb, const IpcRecord *req) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        IdVec all = {};
        _cleanup_strv_free_ char **ids = NULL;
        const char *id = ipc_record_get(req, "queue_id");
        size_t count = 0;
        uid_t uid = (uid_t) -1;
        int r;

        if (!peer_allowed(q, c, &uid)) {
                char reason[256];
                /* Anyone may connect: log only what cannot forge a log line. */
                if (id && !streq(id, "ALL") && !queue_id_valid(id))
                        id = "(invalid id)";
                snprintf(reason, sizeof reason, "permission denied: only root or %s may %s queued mail",
                         q->s.mail_owner, verb);
                unsigned dropped;
                /* Rate-limited: anyone may send these. */
                bool log = ipc_log_limit_allow(&q->refusal_log, now_usec(CLOCK_MONOTONIC), &dropped);
                if (log && uid == (uid_t) -1)
                        log_warning("refused %s %s from a peer without credentials: %s", verb,
                                    strna(id), reason);
                else if (log)
                        log_warning("refused %s %s from uid %u: %s%s", verb, strna(id), (unsigned) uid,
                                    reason, dropped ? " (more refusals not logged)" : "");
                return ipc_conn_reply_error(c, reason);
        }

        if (isempty(id))
                return ipc_conn_reply_error(c, "missing queue_id");

        if (streq(id, "ALL")) {
                r = queue_list(q->queue, collect_all, &all);
                ids = all.v;
                if (r >= 0 && !ids)
                        ids = calloc(1, sizeof(char *));   /* an empty queue */
                if (r >= 0 && !ids)
                        r = -ENOMEM;
                if (r < 0) {
                        log_error_errno(r, "%s ALL: cannot list the queue: %s", verb,
                                        queue_last_error(q->queue));
                        return ipc_conn_reply_error(c, "cannot list the queue");
                }
                for (char **i = ids; *i; i++) {
                        r = act(q, verb, *i);
                        if (r >= 0)
                                count++;
                        else if (r != -ENOENT)
                                log_error_errno(r, "%s: %s failed: %s", *i, verb, queue_last_error(q->queue));
                }
        } else {
                r = act(q, verb, id);
                if (r == -ENOENT)
                        return ipc_conn_reply_error(c, "no such message in the queue");
                if (r < 0) {
                        log_error_errno(r, "%s: %s failed: %s", id, verb, queue_last_error(q->queue));
                        return ipc_conn_reply_error(c, "queue update failed");
                }
                count = 1;
        }

        if ((r = ipc_record_add(&reply, "status", "ok")) < 0 ||
            (r = ipc_record_addf(&reply, "count", "%zu", count)) < 0)
                return r;
        return ipc_conn_reply(c, &reply);
}
