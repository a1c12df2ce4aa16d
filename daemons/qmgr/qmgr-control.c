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
 * "removed" or "requeued". ALL walks the queue a page at a time and commits a thousand
 * messages per transaction (a million is a thousand commits, not a million). */
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log/log.h"
#include "qmgr.h"

/* ALL: messages changed per transaction (one commit, one sync of the WAL, for this many). */
#define CONTROL_ALL_CHUNK 1000

/* Sets every deferred recipient's next attempt to now (inside the caller's transaction). */
static int requeue_one(Qmgr *q, const char *id) {
        QueueMessage m = {};
        QueueRecipient *rcpts = NULL;
        size_t n = 0;
        int r = queue_load_message(q->queue, id, &m, &rcpts, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (rcpts[i].state == QUEUE_RCPT_DEFERRED) {
                        rcpts[i].next_attempt_usec = 0;
                        r = queue_update_recipient(q->queue, &rcpts[i]);
                }
        queue_message_done(&m);
        queue_recipients_free(rcpts, n);
        return r;
}

/* A verb on an active message is done in memory (the delivery in progress finishes it): true
 * when it was; hold and release are written like any other. */
static bool act_active(Qmgr *q, const char *verb, QmgrMessage *m) {
        if (streq(verb, "delete")) {
                /* Finish what postern-local is doing; drop what has not started. */
                m->delete_requested = true;
                qmgr_cancel_waiting_jobs(q, m);
                return true;
        }
        if (streq(verb, "requeue")) {
                LogFields f = { .queue_id = m->queue_id };
                log_fields(LOG_INFO, &f, "%s: requeued", m->queue_id);
                qmgr_schedule_scan(q, 0);
                return true;
        }
        return false;
}

/* The write behind a verb, inside the caller's transaction. */
static int write_one(Qmgr *q, const char *verb, const char *id) {
        if (streq(verb, "hold") || streq(verb, "release"))
                return queue_set_hold(q->queue, id, streq(verb, "hold"));
        if (streq(verb, "delete"))
                return queue_delete_message(q->queue, id);
        return requeue_one(q, id);
}

/* After the write committed: the log line, and the scan or checkpoint it calls for. */
static void written(Qmgr *q, const char *verb, const char *id) {
        LogFields f = { .queue_id = id };

        if (streq(verb, "hold") || streq(verb, "release")) {
                bool hold = streq(verb, "hold");
                log_fields(LOG_INFO, &f, "%s: %s", id, hold ? "placed on hold" : "released from hold");
                if (!hold)
                        qmgr_schedule_scan(q, 0);
        } else if (streq(verb, "delete")) {
                log_fields(LOG_INFO, &f, "%s: removed", id);
                q->removed_since_checkpoint++;
                qmgr_schedule_checkpoint(q);
        } else {
                log_fields(LOG_INFO, &f, "%s: requeued", id);
                qmgr_schedule_scan(q, 0);
        }
}

static int act(Qmgr *q, const char *verb, const char *id) {
        QmgrMessage *m = qmgr_active_find(q, id);
        if (m && act_active(q, verb, m))
                return 0;
        int r = queue_begin(q->queue);
        if (r >= 0)
                r = write_one(q, verb, id);
        if (r >= 0)
                r = queue_commit(q->queue);
        if (r < 0) {
                (void) queue_rollback(q->queue);
                return r;
        }
        written(q, verb, id);
        return 0;
}

/* ALL walks the queue (queue_list, in pages) and writes CONTROL_ALL_CHUNK messages per
 * transaction; their log lines follow the commit. It runs in the event loop: a million
 * messages take a while, so it tells the watchdog it is making progress after each commit. */
typedef struct AllPass {
        Qmgr *q;
        const char *verb;
        bool open;                              /* a transaction is open */
        char (*chunk)[QUEUE_ID_MAX];            /* written in it, announced after its commit */
        size_t n_chunk;
        size_t count;
} AllPass;

static int all_commit(AllPass *p) {
        Qmgr *q = p->q;
        if (!p->open)
                return 0;
        p->open = false;
        int r = queue_commit(q->queue);
        if (r < 0) {
                (void) queue_rollback(q->queue);
                return log_error_errno(r, "%s ALL: %zu changes not committed: %s", p->verb, p->n_chunk,
                                       queue_last_error(q->queue));
        }
        for (size_t i = 0; i < p->n_chunk; i++)
                written(q, p->verb, p->chunk[i]);
        p->count += p->n_chunk;
        p->n_chunk = 0;
        (void) sd_notify(false, "WATCHDOG=1");
        return 0;
}

static int all_one(const QueueMessage *msg, const QueueRecipient *rcpts, size_t n, void *userdata) {
        AllPass *p = userdata;
        Qmgr *q = p->q;
        QmgrMessage *m = qmgr_active_find(q, msg->queue_id);
        int r;

        if (m && (streq(p->verb, "delete") || streq(p->verb, "requeue"))) {
                /* Completing a cancelled message commits on its own: none of ours may be open. */
                r = all_commit(p);
                if (r < 0)
                        return r;
                if (act_active(q, p->verb, m))
                        p->count++;
                return 0;
        }
        if (!p->open) {
                r = queue_begin(q->queue);
                if (r < 0)
                        return log_error_errno(r, "%s ALL: cannot begin a transaction: %s", p->verb,
                                               queue_last_error(q->queue));
                p->open = true;
        }
        r = write_one(q, p->verb, msg->queue_id);
        if (r == -ENOENT)
                return 0;   /* gone meanwhile (delivered) */
        if (r < 0) {
                log_error_errno(r, "%s: %s failed: %s", msg->queue_id, p->verb, queue_last_error(q->queue));
                return 0;
        }
        memcpy(p->chunk[p->n_chunk++], msg->queue_id, QUEUE_ID_MAX);
        return p->n_chunk == CONTROL_ALL_CHUNK ? all_commit(p) : 0;
}

/* Runs verb on every message; the number done, or <0 when the walk or a commit failed. */
static int act_all(Qmgr *q, const char *verb, size_t *ret_count) {
        AllPass p = { .q = q, .verb = verb };
        int r;

        p.chunk = calloc(CONTROL_ALL_CHUNK, QUEUE_ID_MAX);
        if (!p.chunk)
                return log_oom();
        r = queue_list(q->queue, all_one, &p);
        if (r < 0)
                log_error_errno(r, "%s ALL: cannot list the queue: %s", verb, queue_last_error(q->queue));
        int k = all_commit(&p);
        free(p.chunk);
        *ret_count = p.count;
        return r < 0 ? r : k;
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
                if (act_all(q, verb, &count) < 0)
                        return ipc_conn_reply_error(c, "cannot update the whole queue");
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
