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
 * messages per transaction (a million is a thousand commits, not a million), one transaction per
 * turn of the event loop at idle priority: deliveries, results and other requests go on
 * meanwhile, and the reply comes when the pass is done. A pass covers the messages that arrived
 * before it started (a delete ALL does not take mail accepted while it runs). */
#include <stdio.h>
#include <string.h>

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

/* One ALL pass: walks the queue (queue_list_page) in turns of at most CONTROL_ALL_CHUNK
 * messages, each turn one transaction whose log lines follow its commit. */
typedef struct ControlAll {
        Qmgr *q;
        IpcConn *conn;                          /* answered when the pass is done */
        char verb[16];
        usec_t started;                         /* CLOCK_REALTIME: later arrivals are not ours */
        QueueListCursor cursor;
        bool at_end;
        bool open;                              /* a transaction is open (within one turn) */
        char (*chunk)[QUEUE_ID_MAX];            /* written in it, announced after its commit */
        size_t n_chunk;
        size_t count;
        sd_event_source *turn;
        struct ControlAll *next;
} ControlAll;

static int all_commit(ControlAll *p) {
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
        return 0;
}

static int all_one(const QueueMessage *msg, const QueueRecipient *rcpts, size_t n, void *userdata) {
        ControlAll *p = userdata;
        Qmgr *q = p->q;
        int r;

        if (msg->arrival_usec > p->started) {
                p->at_end = true;   /* arrived after the request: not part of this pass */
                return 0;
        }
        if (p->at_end)
                return 0;
        QmgrMessage *m = qmgr_active_find(q, msg->queue_id);
        if (m && (streq(p->verb, "delete") || streq(p->verb, "requeue"))) {
                /* Completing a cancelled message commits on its own: none of ours may be open. */
                r = all_commit(p);
                if (r < 0)
                        return r;
                if (act_active(q, p->verb, m))
                        p->count++;
                return 0;
        }
        if (p->n_chunk == CONTROL_ALL_CHUNK && (r = all_commit(p)) < 0)
                return r;   /* (a page may end past the chunk: its rest goes in the next one) */
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
        return 0;
}

static ControlAll *all_free(ControlAll *p) {
        if (!p)
                return NULL;
        for (ControlAll **i = &p->q->control_all; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        break;
                }
        sd_event_source_disable_unref(p->turn);
        if (p->conn)
                ipc_conn_unref(p->conn);
        free(p->chunk);
        free(p);
        return NULL;
}

static void all_reply(ControlAll *p, int r) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        if (r < 0)
                (void) ipc_conn_reply_error(p->conn, "cannot update the whole queue");
        else if (ipc_record_add(&reply, "status", "ok") < 0 ||
                 ipc_record_addf(&reply, "count", "%zu", p->count) < 0 ||
                 ipc_conn_reply(p->conn, &reply) < 0)
                log_warning("%s ALL: %zu messages done; cannot tell the requester", p->verb, p->count);
        all_free(p);
}

/* One turn: pages until a chunk's worth was written or the pass is at its end, then commit. */
static int on_all_turn(sd_event_source *s, void *userdata) {
        ControlAll *p = userdata;
        int r = 1;

        while (r > 0 && !p->at_end && p->n_chunk < CONTROL_ALL_CHUNK)
                r = queue_list_page(p->q->queue, &p->cursor, all_one, p);
        if (r < 0)
                log_error_errno(r, "%s ALL: cannot list the queue: %s", p->verb, queue_last_error(p->q->queue));
        int k = all_commit(p);
        if (r < 0 || k < 0)
                all_reply(p, r < 0 ? r : k);
        else if (r == 0 || p->at_end) {
                log_info("%s ALL: %zu message(s)", p->verb, p->count);
                all_reply(p, 0);
        }
        return 0;
}

/* Starts verb on every message queued now; the reply follows when the pass is done. */
static int all_start(Qmgr *q, IpcConn *c, const char *verb) {
        ControlAll *p = calloc(1, sizeof(ControlAll));
        if (!p)
                return log_oom();
        p->q = q;
        snprintf(p->verb, sizeof(p->verb), "%s", verb);
        p->started = now_usec(CLOCK_REALTIME);
        p->chunk = calloc(CONTROL_ALL_CHUNK, QUEUE_ID_MAX);
        int r = p->chunk ? sd_event_add_defer(q->event, &p->turn, on_all_turn, p) : -ENOMEM;
        if (r >= 0)
                r = sd_event_source_set_priority(p->turn, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->turn, SD_EVENT_ON);
        if (r < 0) {
                free(p->chunk);
                sd_event_source_disable_unref(p->turn);
                free(p);
                return log_error_errno(r, "%s ALL: cannot start: %m", verb);
        }
        p->conn = ipc_conn_ref(c);
        p->next = q->control_all;
        q->control_all = p;
        return 0;
}

/* requeue of one message, for anyone's flush of it (sendmail -qI, postqueue -i). */
int qmgr_requeue(Qmgr *q, const char *queue_id) {
        return act(q, "requeue", queue_id);
}

void qmgr_control_done(Qmgr *q) {
        while (q->control_all)
                all_free(q->control_all);
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

        if (streq(id, "ALL"))
                return all_start(q, c, verb) < 0 ? ipc_conn_reply_error(c, "cannot update the whole queue") : 0;
        else {
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
