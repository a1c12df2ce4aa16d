/* smtpd-commit.c — group commit of received messages into the queue.
 *
 * Sessions that finished DATA hand their message to a dedicated writer thread, which owns its
 * own Queue handle. The thread takes every message waiting, writes them in one transaction
 * (BEGIN; insert all; COMMIT) and posts the batch back to the event loop through an eventfd;
 * while one batch waits for its fsync, the next one gathers. Only after queue_commit() returned
 * 0 does the session answer "250 2.0.0 Ok: queued as ID". If a batch fails, each of its
 * messages is retried in a transaction of its own, so one bad message cannot fail the others.
 * After a successful commit, and after the results were posted back (the 250s do not wait for
 * it), qmgr gets a wake-up (request=wakeup; failures only delay mail). At shutdown,
 * committer_drain() commits whatever is pending and answers those sessions before they close. */
#include <pthread.h>
#include <sys/eventfd.h>

#include "smtpd.h"
#include "ipc/ipc.h"
#include "log/log.h"
#include "metrics/metrics-store.h"
#include "queue/queue.h"

struct Committer {
        Server *server;
        Queue *queue;
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        CommitJob *pending, **pending_tail;
        CommitJob *done, **done_tail;
        bool stop;
        char *wakeup_path;
        int efd;
        sd_event_source *src;
};

/* Inserts the PREPEND headers above our Received: header, after those decided before DATA
 * (already in place; this handles what was added later). */
static int job_prepend(CommitJob *j, size_t at, const StrBuf *add) {
        if (at > j->content_len)
                at = j->content_len;
        char *c = realloc(j->content, j->content_len + add->len + 1);
        if (!c)
                return -ENOMEM;
        memmove(c + at + add->len, c + at, j->content_len - at + 1);
        memcpy(c + at, add->data, add->len);
        j->content = c;
        j->content_len += add->len;
        ((QueueMessage *) j->message)->size = j->content_len;
        return 0;
}

static bool job_has_rcpt(const CommitJob *j, const char *addr) {
        const QueueRecipient *rc = j->rcpts;
        for (size_t i = 0; i < j->n_rcpts; i++)
                if (strcaseeq(rc[i].address, addr))
                        return true;
        return false;
}

int commit_apply_actions(Session *s, CommitJob *j) {
        MessageActions *a = &s->tx.actions;
        QueueMessage *m = j->message;
        int r;

        if (a->discard)
                return 1;
        if (a->hold)
                m->hold = true;
        /* A FILTER action wins over content_filter (as in Postfix); the filter is the message's,
         * for all its recipients. */
        const char *filter = a->filter ? a->filter : s->settings ? s->settings->content_filter : NULL;
        if (!isempty(filter) && !(m->filter = strdup(filter)))
                return -ENOMEM;
        if (a->redirect) {
                /* REDIRECT replaces every recipient, BCC ones included (as Postfix's redirect). */
                QueueRecipient *rc = calloc(1, sizeof(QueueRecipient));
                if (!rc || !(rc->address = strdup(a->redirect))) {
                        free(rc);
                        return -ENOMEM;
                }
                rc->state = QUEUE_RCPT_PENDING;
                queue_recipients_free(j->rcpts, j->n_rcpts);
                j->rcpts = rc;
                j->n_rcpts = 1;
        } else
                for (char **b = a->bcc; b && *b; b++) {
                        if (job_has_rcpt(j, *b))
                                continue;   /* duplicates are ignored */
                        QueueRecipient *rc = realloc(j->rcpts, (j->n_rcpts + 1) * sizeof(QueueRecipient));
                        if (!rc)
                                return -ENOMEM;
                        j->rcpts = rc;
                        rc[j->n_rcpts] = (QueueRecipient) { .state = QUEUE_RCPT_PENDING,
                                                            .notify = QUEUE_NOTIFY_NEVER };
                        if (!(rc[j->n_rcpts].address = strdup(*b)))
                                return -ENOMEM;
                        j->n_rcpts++;
                }
        if (a->prepend.len > 0) {
                r = job_prepend(j, s->tx.data ? s->tx.data->rcvd_start : 0, &a->prepend);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int insert_job(Queue *q, CommitJob *j) {
        return queue_insert_message(q, j->message, j->rcpts, j->n_rcpts, j->content, j->content_len);
}

static uint64_t job_size(const CommitJob *j) {
        return ((const QueueMessage *) j->message)->size;
}

static void commit_batch(Committer *c, CommitJob *batch) {
        Queue *q = c->queue;
        int r;

        MetricsBatch *counted = NULL;
        uint64_t n = 0, bytes = 0;
        r = queue_begin(q);
        for (CommitJob *j = batch; r >= 0 && j; j = j->next, n++) {
                r = insert_job(q, j);
                bytes += job_size(j);
        }
        if (r >= 0)   /* counted exactly when queued: in the same transaction */
                r = smtpd_metrics_queued(q, n, bytes);
        if (r >= 0)
                (void) metrics_save(q, &counted);   /* the events counted meanwhile ride along */
        if (r >= 0)
                r = queue_commit(q);
        metrics_saved(counted, r);
        if (r >= 0) {
                for (CommitJob *j = batch; j; j = j->next)
                        j->result = 0;
                return;
        }
        if (!batch->next) {
                log_warning_errno(r, "%s: queue write failed (%s): %m", batch->queue_id,
                                  strna(queue_last_error(q)));
                (void) queue_rollback(q);
                batch->result = r;
                return;
        }
        log_warning_errno(r, "Group commit failed (%s), retrying messages one by one: %m",
                          strna(queue_last_error(q)));
        (void) queue_rollback(q);
        for (CommitJob *j = batch; j; j = j->next) {
                r = queue_begin(q);
                if (r >= 0)
                        r = insert_job(q, j);
                if (r >= 0)
                        r = smtpd_metrics_queued(q, 1, job_size(j));
                if (r >= 0)
                        r = queue_commit(q);
                if (r < 0) {
                        log_warning_errno(r, "%s: queue write failed (%s): %m", j->queue_id,
                                          strna(queue_last_error(q)));
                        (void) queue_rollback(q);
                }
                j->result = r;
        }
}

static void *committer_thread(void *userdata) {
        Committer *c = userdata;

        for (;;) {
                pthread_mutex_lock(&c->lock);
                while (!c->stop && !c->pending)
                        pthread_cond_wait(&c->cond, &c->lock);
                if (!c->pending) {
                        pthread_mutex_unlock(&c->lock);
                        break;
                }
                CommitJob *batch = c->pending;
                c->pending = NULL;
                c->pending_tail = &c->pending;
                char *wake = c->wakeup_path ? strdup(c->wakeup_path) : NULL;
                pthread_mutex_unlock(&c->lock);

                commit_batch(c, batch);

                bool any = false;
                CommitJob *last = batch;
                for (CommitJob *j = batch; j; j = j->next) {
                        any = any || j->result >= 0;
                        last = j;
                }

                /* Answers first: the clients' 250s must not wait for qmgr's socket. */
                pthread_mutex_lock(&c->lock);
                *c->done_tail = batch;
                c->done_tail = &last->next;
                pthread_mutex_unlock(&c->lock);
                uint64_t one = 1;
                if (write(c->efd, &one, sizeof(one)) < 0)
                        log_debug_errno(-errno, "eventfd write failed: %m");

                if (any && wake) {
                        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                        int r = ipc_record_add(&req, "request", "wakeup");
                        if (r >= 0)
                                r = ipc_send_oneway(wake, &req);
                        if (r < 0)
                                log_debug_errno(r, "Wake-up to qmgr at %s failed: %m", wake);
                }
                free(wake);
        }
        return NULL;
}

static void complete_job(CommitJob *j) {
        Session *s = j->session;
        QueueMessage *m = j->message;

        if (j->result >= 0) {
                LogFields f = { .queue_id = j->queue_id, .sender = m->sender,
                                .client_address = m->client_address };
                /* Recipients to deliver: an alias queued as expanded (smtpd-virtual.c) is not one. */
                size_t nrcpt = 0;
                for (size_t i = 0; i < j->n_rcpts; i++)
                        nrcpt += ((QueueRecipient *) j->rcpts)[i].state == QUEUE_RCPT_PENDING;
                log_fields(LOG_INFO, &f, "%s: from=<%s>, size=%llu, nrcpt=%zu", j->queue_id, m->sender,
                           (unsigned long long) m->size, nrcpt);
        }
        if (j->result >= 0 && s)
                s->server->n_queued++;
        if (!s)
                return;   /* the client left; the message is queued (or not) all the same */
        session_resume(s, SESSION_RESUME_ONLY);   /* back to PHASE_COMMAND */
        if (j->result >= 0) {
                s->cmd_ok[j->cmd]++;
                s->junk_count = 0;
                session_reply(s, "250 2.0.0 Ok: queued as %s", j->queue_id);
        } else
                session_reply(s, "451 4.3.0 Error: queue file write error");
        if (s->server->stopping) {
                /* Shutting down: the answer is flushed by server_done(); no further input. */
                session_close_after_flush(s);
                return;
        }
        session_resume(s, SESSION_RESUME_INPUT);
}

static void complete_done(Committer *c) {
        pthread_mutex_lock(&c->lock);
        CommitJob *list = c->done;
        c->done = NULL;
        c->done_tail = &c->done;
        pthread_mutex_unlock(&c->lock);

        while (list) {
                CommitJob *j = list;
                list = j->next;
                complete_job(j);
                commit_job_free(j);
        }
}

static int on_done(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Committer *c = userdata;
        uint64_t v;

        (void) read(fd, &v, sizeof(v));
        complete_done(c);
        return 0;
}

static void committer_stop_thread(Committer *c) {
        if (!c->thread_started)
                return;
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        /* The thread leaves only once nothing is pending: every submitted job is committed. */
        pthread_join(c->thread, NULL);
        c->thread_started = false;
}

void committer_drain(Committer *c) {
        committer_stop_thread(c);
        complete_done(c);
}

int committer_new(Server *srv, const char *queue_dir, const char *wakeup_path, Committer **ret) {
        Committer *c = calloc(1, sizeof(Committer));
        int r;

        if (!c)
                return log_oom();
        c->server = srv;
        c->efd = -1;
        c->pending_tail = &c->pending;
        c->done_tail = &c->done;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        if (wakeup_path && !(c->wakeup_path = strdup(wakeup_path))) {
                committer_free(c);
                return log_oom();
        }

        r = queue_open(queue_dir, QUEUE_OPEN_CREATE, &c->queue);
        if (r < 0) {
                committer_free(c);
                return log_error_errno(r, "Failed to open the queue in %s: %s", queue_dir,
                                       queue_open_error() ?: strerror(-r));
        }
        c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (c->efd < 0) {
                r = -errno;
                committer_free(c);
                return log_error_errno(r, "Failed to create eventfd: %m");
        }
        r = sd_event_add_io(srv->event, &c->src, c->efd, EPOLLIN, on_done, c);
        if (r < 0) {
                committer_free(c);
                return log_error_errno(r, "Failed to watch eventfd: %m");
        }
        r = -pthread_create(&c->thread, NULL, committer_thread, c);
        if (r < 0) {
                committer_free(c);
                return log_error_errno(r, "Failed to start the commit thread: %m");
        }
        c->thread_started = true;
        *ret = c;
        return 0;
}

Committer *committer_free(Committer *c) {
        if (!c)
                return NULL;
        committer_stop_thread(c);
        /* Whatever finished but was not delivered to sessions any more. */
        for (CommitJob *j = c->done, *n; j; j = n) {
                n = j->next;
                commit_job_free(j);
        }
        for (CommitJob *j = c->pending, *n; j; j = n) {
                n = j->next;
                commit_job_free(j);
        }
        sd_event_source_disable_unref(c->src);
        safe_close(c->efd);
        queue_close(c->queue);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c->wakeup_path);
        free(c);
        return NULL;
}

void committer_set_wakeup_path(Committer *c, const char *path) {
        char *p = strdup(path);
        if (!p)
                return;
        pthread_mutex_lock(&c->lock);
        free(c->wakeup_path);
        c->wakeup_path = p;
        pthread_mutex_unlock(&c->lock);
}

void committer_submit(Committer *c, CommitJob *job) {
        job->next = NULL;
        pthread_mutex_lock(&c->lock);
        *c->pending_tail = job;
        c->pending_tail = &job->next;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
}
