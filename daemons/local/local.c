/* local.c — postern-local, the local delivery agent (Postfix's local(8)).
 *
 * Serves request=deliver on the "local" socket (docs/architecture.md): loads the message from
 * the queue, resolves each recipient (local-alias.c), queues forwarded copies for remote alias
 * members (local-forward.c), forks one child per mailbox delivery (local-child.c) and answers
 * with one result per recipient, same indexes, once every child has reported. The event loop
 * never waits for a mailbox lock or a mailbox fsync (children are reaped with
 * sd_event_add_child()); it does wait for the queue when it forwards, see below.
 * Logs Postfix's "<id>: to=<...>, relay=local, delay=..., status=..." line for every target.
 * Runs as a role of common/daemon (daemon-role.h); a reload applies every parameter but
 * queue_directory, a restart parameter.
 *
 * Exactly once across crashes: <queue_directory>/local-delivered/<queue id>.<rcpt id> (0600,
 * root; local-marker.c) lists the mailboxes, files, commands and forwards a recipient was already
 * delivered to; the child checks and extends it under flock(), so a request repeated after a
 * kill -9 (of this process, whose children finish their writes on their own, or of qmgr before it
 * recorded the result) skips what was done. Without a trustworthy marker directory deliveries are
 * deferred. A sweep shortly after start and then hourly removes the markers of messages that
 * left the queue — only those: a marker must outlive every retry of its message.
 *
 * Forwarding (local-forward.c) runs here in the event loop, not in a child: one queue
 * transaction per forwarded group — BEGIN IMMEDIATE (which waits up to the queue's 10 s busy
 * timeout while another role writes), insert, commit with fsync — during which no other request
 * is served. It only happens for alias members in remote domains; moving it into a child with
 * its own Queue handle would remove the stall. */
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "local.h"
#include "daemon/daemon-role.h"
#include "ipc/ipc.h"
#include "log/log.h"
#include "mail/delay.h"

#define LOCAL_MAX_RCPT 10000
#define MARKER_MIN_AGE_SEC 3600LL   /* qmgr has recorded the result long before */

typedef struct Local {
        Daemon *daemon;
        sd_event *event;
        LocalSettings settings;
        Queue *queue;
        IpcServer *server;
        int marker_dirfd;
        sd_event_source *cleanup_timer;
        struct LocalRequest *requests;   /* in progress, for the cleanup at exit */
        size_t n_requests;
        size_t n_children;
} Local;

typedef struct LocalRcpt {
        long long id;
        char *address;
        Target **targets;
        size_t n_targets;
} LocalRcpt;

typedef struct LocalRequest {
        Local *local;
        struct LocalRequest *prev, *next;
        IpcConn *conn;
        char queue_id[QUEUE_ID_MAX];
        char *sender;
        QueueMessage msg;
        bool have_msg;
        char *content;
        size_t content_len;
        usec_t arrival, active, received;
        LocalRcpt *rcpts;
        size_t n_rcpts;
        size_t pending;
} LocalRequest;

static LocalRequest *request_free(LocalRequest *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_rcpts; i++) {
                for (size_t j = 0; j < r->rcpts[i].n_targets; j++)
                        target_free(r->rcpts[i].targets[j]);
                free(r->rcpts[i].targets);
                free(r->rcpts[i].address);
        }
        free(r->rcpts);
        if (r->have_msg)
                queue_message_done(&r->msg);
        free(r->content);
        free(r->sender);
        if (r->conn)
                ipc_conn_unref(r->conn);
        if (r->local) {
                r->local->n_requests--;
                if (r->prev)
                        r->prev->next = r->next;
                else
                        r->local->requests = r->next;
                if (r->next)
                        r->next->prev = r->prev;
        }
        free(r);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(LocalRequest *, request_free);

static void log_target(LocalRequest *req, LocalRcpt *rc, Target *t) {
        char d0[32], d1[32], d2[32], d3[32], d4[32];
        usec_t end = t->end_usec ? t->end_usec : now_usec(CLOCK_REALTIME);
        usec_t start = t->start_usec ? t->start_usec : end;
        const char *status = t->dsn[0] == '2' ? "sent" : t->dsn[0] == '5' ? "bounced" : "deferred";
        _cleanup_free_ char *orig = NULL;

        if (!strcaseeq(t->address, rc->address) && asprintf(&orig, ", orig_to=<%s>", rc->address) < 0)
                orig = NULL;
        log_fields(LOG_INFO, &((LogFields) { .queue_id = req->queue_id, .sender = req->sender,
                                             .recipient = t->address, .relay = "local",
                                             .dsn = t->dsn, .status = status }),
                   "%s: to=<%s>%s, relay=local, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
                   req->queue_id, t->address, strempty(orig),
                   delay_format(delay_between(end, req->arrival), d0, sizeof(d0)),
                   delay_format(delay_between(req->active, req->arrival), d1, sizeof(d1)),
                   delay_format(delay_between(req->received, req->active), d2, sizeof(d2)),
                   delay_format(delay_between(start, req->received), d3, sizeof(d3)),
                   delay_format(delay_between(end, start), d4, sizeof(d4)),
                   t->dsn, status, strna(t->diag));
}

/* The recipient's answer: any deferral wins (the whole recipient is retried; mailboxes already
 * written are skipped through the delivery marker), then a bounce, else delivered. */
static const Target *rcpt_outcome(const LocalRcpt *rc) {
        const Target *delivered = NULL, *bounced = NULL;
        for (size_t i = 0; i < rc->n_targets; i++) {
                const Target *t = rc->targets[i];
                if (t->dsn[0] == '4' || !t->done)
                        return t;
                if (t->dsn[0] == '5' && !bounced)
                        bounced = t;
                if (t->dsn[0] == '2' && !delivered)
                        delivered = t;
        }
        return bounced ? bounced : delivered;
}

static void request_finish(LocalRequest *req) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        int r;

        if ((r = ipc_record_add(&reply, "status", "ok")) < 0 ||
            (r = ipc_record_addf(&reply, "count", "%zu", req->n_rcpts)) < 0)
                goto fail;
        for (size_t i = 0; i < req->n_rcpts; i++) {
                const Target *t = rcpt_outcome(&req->rcpts[i]);
                char id[32];
                snprintf(id, sizeof(id), "%lld", req->rcpts[i].id);
                const char *dsn = t && t->done ? t->dsn : "4.3.0";
                const char *action = dsn[0] == '2' ? "delivered" : dsn[0] == '5' ? "bounced" : "deferred";
                const char *diag = t && t->done ? strna(t->diag) : "internal error: no result";
                if ((r = ipc_record_add_indexed(&reply, "rcpt_id", i, id)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "action", i, action)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "dsn", i, dsn)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "diag", i, diag)) < 0)
                        goto fail;
        }
        r = ipc_conn_reply(req->conn, &reply);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send delivery results to the queue manager: %m", req->queue_id);
        request_free(req);
        return;
fail:
        log_error_errno(r, "%s: cannot build reply: %m", req->queue_id);
        (void) ipc_conn_reply_error(req->conn, "out of memory");
        request_free(req);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Target *t = userdata;
        LocalRequest *req = t->request;

        if (t->timed_out)
                (void) target_set_result(t, "4.3.0", "delivery process still running after daemon_timeout "
                                         "(%llds); killed", req->local->settings.daemon_timeout);
        else
                local_child_collect(t, si->si_code, si->si_status);
        t->deadline_source = sd_event_source_disable_unref(t->deadline_source);
        t->end_usec = now_usec(CLOCK_REALTIME);
        t->child_source = sd_event_source_disable_unref(t->child_source);
        t->pid = 0;
        req->local->n_children--;
        log_target(req, &req->rcpts[t->rcpt_index], t);
        if (--req->pending == 0)
                request_finish(req);
        return 0;
}

/* daemon_timeout: nothing a recipient does can keep a delivery child (and the marker lock it
 * holds) alive for longer; the retry finds the marker unlocked. */
static int on_child_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Target *t = userdata;

        if (t->pid > 0 && !t->timed_out) {
                log_warning("%s: delivery process %d for <%s> still running after daemon_timeout (%llds); killing it",
                            t->request->queue_id, (int) t->pid, t->address,
                            t->request->local->settings.daemon_timeout);
                t->timed_out = true;
                (void) kill(t->pid, SIGKILL);
        }
        return 0;
}

static int ensure_queue(Local *l) {
        if (l->queue)
                return 0;
        int r = queue_open(l->settings.queue_directory, 0, &l->queue);
        if (r < 0)
                log_error_errno(r, "Cannot open the queue in %s: %s", l->settings.queue_directory,
                                queue_open_error() ?: strerror(-r));
        return r;
}

/* --- delivery markers (parent side: the directory, forwards, the sweep) --- */

static void marker_dir_open(Local *l) {
        if (l->marker_dirfd >= 0)
                return;
        int fd = local_marker_dir_open(l->settings.queue_directory);
        l->marker_dirfd = fd >= 0 ? fd : -1;
}

static int marker_name_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names of the markers older than MARKER_MIN_AGE_SEC, sorted (so one message's markers are
 * adjacent). */
static int marker_list(Local *l, char ***ret, size_t *ret_n) {
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0, cap = 0;
        time_t now = time(NULL);
        int fd = dup(l->marker_dirfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!d) {
                safe_close(fd);
                return -errno;
        }
        rewinddir(d);
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.' ||
                    fstatat(l->marker_dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    now - st.st_mtime < MARKER_MIN_AGE_SEC)
                        continue;
                if (n + 1 >= cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        char **nn = realloc(names, nc * sizeof(char *));
                        if (!nn) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        names = nn;
                        cap = nc;
                }
                if (!(names[n] = strdup(de->d_name))) {
                        closedir(d);
                        return -ENOMEM;
                }
                names[++n] = NULL;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(char *), marker_name_compare);
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

/* Removes the markers of messages that left the queue, looking each message up once. A marker
 * of a message still queued stays however old it is: a retry must still find it. */
static void marker_sweep(Local *l) {
        _cleanup_strv_free_ char **names = NULL;
        char last[QUEUE_ID_MAX] = "";
        bool gone = false;
        size_t n = 0, removed = 0;
        int r;

        r = marker_list(l, &names, &n);
        if (r < 0) {
                log_warning_errno(r, "Cannot list %s/%s: %m", l->settings.queue_directory, LOCAL_MARKER_DIR);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                char qid[QUEUE_ID_MAX];
                size_t k = strcspn(names[i], ".");
                if (k == 0 || k >= sizeof(qid) || names[i][k] != '.')
                        continue;
                memcpy(qid, names[i], k);
                qid[k] = '\0';
                if (!queue_id_valid(qid))
                        continue;
                if (!streq(qid, last)) {
                        size_t unfinished;
                        r = queue_count_unfinished(l->queue, qid, &unfinished);
                        if (r < 0 && r != -ENOENT) {
                                log_warning_errno(r, "Cannot check the queue for old delivery markers: %s",
                                                  queue_last_error(l->queue));
                                break;
                        }
                        gone = r == -ENOENT;
                        memcpy(last, qid, sizeof(qid));
                }
                if (gone && unlinkat(l->marker_dirfd, names[i], 0) >= 0)
                        removed++;
        }
        if (removed > 0)
                log_info("removed %zu delivery markers of messages that left the queue", removed);
}

static int on_cleanup(sd_event_source *s, uint64_t usec, void *userdata) {
        Local *l = userdata;
        marker_dir_open(l);
        if (l->marker_dirfd >= 0 && ensure_queue(l) >= 0)
                marker_sweep(l);
        (void) sd_event_source_set_time(s, now_usec(CLOCK_MONOTONIC) + 3600 * USEC_PER_SEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* --- requests --- */

/* Answers every recipient with the same temporary failure (queue trouble). */
static int reply_all_deferred(IpcConn *c, const IpcRecord *req, size_t count, const char *diag) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        int r;
        if ((r = ipc_record_add(&reply, "status", "ok")) < 0 ||
            (r = ipc_record_addf(&reply, "count", "%zu", count)) < 0)
                return ipc_conn_reply_error(c, "out of memory");
        for (size_t i = 0; i < count; i++)
                if ((r = ipc_record_add_indexed(&reply, "rcpt_id", i, ipc_record_get_indexed(req, "rcpt_id", i))) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "action", i, "deferred")) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "dsn", i, "4.3.0")) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "diag", i, diag)) < 0)
                        return ipc_conn_reply_error(c, "out of memory");
        return ipc_conn_reply(c, &reply);
}

static int parse_usec(const IpcRecord *req, const char *name, usec_t def, usec_t *ret) {
        long long v;
        int r = ipc_record_get_int(req, name, &v);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0 || v < 0)
                return -EINVAL;
        *ret = (usec_t) v;
        return 0;
}

static void forward_targets(Local *l, LocalRequest *req, LocalRcpt *rc) {
        _cleanup_close_ int mfd = -1;
        const char *problem = NULL;
        bool any = false;

        for (size_t j = 0; j < rc->n_targets; j++)
                if (rc->targets[j]->kind == TARGET_FORWARD && !rc->targets[j]->done)
                        any = true;
        if (!any)
                return;
        mfd = local_marker_open(l->marker_dirfd, req->queue_id, rc->id, &problem);
        if (mfd < 0 || flock(mfd, LOCK_EX | LOCK_NB) < 0) {
                /* No marker: a retry could forward twice. A lock held by a delivery child of an
                 * earlier (crashed) run for this recipient: never wait for it in the event loop. */
                const char *why = mfd < 0 ? problem : "earlier delivery attempt still in progress";
                if (mfd < 0)
                        log_error("%s: %s (%s/%s/%s.%lld)", req->queue_id, problem, l->settings.queue_directory,
                                  LOCAL_MARKER_DIR, req->queue_id, rc->id);
                for (size_t j = 0; j < rc->n_targets; j++)
                        if (rc->targets[j]->kind == TARGET_FORWARD && !rc->targets[j]->done)
                                (void) target_set_result(rc->targets[j], "4.3.0", "%s", why);
                return;
        }
        for (size_t j = 0; j < rc->n_targets; j++) {
                Target *t = rc->targets[j];
                _cleanup_free_ char *line = NULL;
                if (t->kind != TARGET_FORWARD || t->done || asprintf(&line, "forward:%s", t->address) < 0)
                        continue;
                if (local_marker_has(mfd, line))
                        (void) target_set_result(t, "2.0.0", "forwarded (already queued earlier)");
        }
        if (local_forward(&l->settings, l->queue, &req->msg, rc->id, req->content, req->content_len,
                          rc->targets, rc->n_targets) > 0) {
                _cleanup_free_ char *qmgr = daemon_socket_path(daemon_conf(l->daemon), "qmgr");
                _cleanup_ipc_record_ IpcRecord wake = IPC_RECORD_INIT;
                if (qmgr && ipc_record_add(&wake, "request", "wakeup") >= 0)
                        (void) ipc_send_oneway(qmgr, &wake);
        }
        for (size_t j = 0; j < rc->n_targets; j++) {
                Target *t = rc->targets[j];
                _cleanup_free_ char *line = NULL;
                if (t->kind != TARGET_FORWARD || t->dsn[0] != '2' || !startswith(strna(t->diag), "forwarded as"))
                        continue;
                /* If this is lost, the retry's insert finds the same queue id (local-forward.c). */
                if (asprintf(&line, "forward:%s", t->address) >= 0)
                        (void) local_marker_add(mfd, line);
        }
}

static int on_request(IpcConn *c, const IpcRecord *rec, void *userdata) {
        Local *l = userdata;
        _cleanup_(request_freep) LocalRequest *req = NULL;
        _cleanup_(delivered_set_done) DeliveredSet delivered = {};
        long long count;
        int r;

        const char *verb = ipc_record_get(rec, "request");
        if (!verb || !streq(verb, "deliver"))
                return ipc_conn_reply_error(c, "unknown request"), 0;
        const char *queue_id = ipc_record_get(rec, "queue_id");
        if (!queue_id || !queue_id_valid(queue_id))
                return ipc_conn_reply_error(c, "missing or invalid queue_id"), 0;
        r = ipc_record_get_int(rec, "count", &count);
        if (r < 0 || count < 1 || count > LOCAL_MAX_RCPT)
                return ipc_conn_reply_error(c, "missing or invalid count"), 0;
        for (long long i = 0; i < count; i++) {
                const char *a = ipc_record_get_indexed(rec, "rcpt", (size_t) i);
                const char *id = ipc_record_get_indexed(rec, "rcpt_id", (size_t) i);
                char *end = NULL;
                if (isempty(a) || isempty(id) || (strtoll(id, &end, 10), !end || *end))
                        return ipc_conn_reply_error(c, "missing or invalid rcpt/rcpt_id"), 0;
        }

        req = calloc(1, sizeof(LocalRequest));
        if (!req)
                return ipc_conn_reply_error(c, "out of memory"), 0;
        req->local = l;
        l->n_requests++;
        req->next = l->requests;
        if (l->requests)
                l->requests->prev = req;
        l->requests = req;
        req->conn = ipc_conn_ref(c);
        snprintf(req->queue_id, sizeof(req->queue_id), "%s", queue_id);
        req->received = now_usec(CLOCK_REALTIME);

        if (ensure_queue(l) < 0)
                return reply_all_deferred(c, rec, (size_t) count, "queue database unavailable"), 0;
        r = queue_load_message(l->queue, queue_id, &req->msg, NULL, NULL);   /* the envelope is enough */
        if (r == -ENOENT) {
                log_warning("%s: delivery request for a message that is not in the queue", queue_id);
                return ipc_conn_reply_error(c, "no such message"), 0;
        }
        if (r >= 0) {
                req->have_msg = true;
                r = queue_load_content(l->queue, queue_id, &req->content, &req->content_len);
                if (r == -ENOENT)
                        return ipc_conn_reply_error(c, "no such message"), 0;
        }
        if (r < 0) {
                log_error_errno(r, "%s: cannot read message from the queue: %s", queue_id, queue_last_error(l->queue));
                l->queue = queue_close(l->queue);   /* reopened by the next request */
                return reply_all_deferred(c, rec, (size_t) count, "queue read error"), 0;
        }

        const char *sender = ipc_record_get(rec, "sender");
        req->sender = strdup(sender ? sender : strempty(req->msg.sender));
        if (!req->sender ||
            parse_usec(rec, "arrival", req->msg.arrival_usec, &req->arrival) < 0 ||
            parse_usec(rec, "active", req->received, &req->active) < 0)
                return ipc_conn_reply_error(c, req->sender ? "invalid arrival/active" : "out of memory"), 0;

        r = delivered_set_load(req->content, req->content_len, &delivered);
        if (r < 0)
                return ipc_conn_reply_error(c, "out of memory"), 0;

        req->rcpts = calloc((size_t) count, sizeof(LocalRcpt));
        if (!req->rcpts)
                return ipc_conn_reply_error(c, "out of memory"), 0;
        req->n_rcpts = (size_t) count;
        for (size_t i = 0; i < req->n_rcpts; i++) {
                LocalRcpt *rc = &req->rcpts[i];
                rc->id = strtoll(ipc_record_get_indexed(rec, "rcpt_id", i), NULL, 10);
                rc->address = strdup(ipc_record_get_indexed(rec, "rcpt", i));
                if (!rc->address)
                        return ipc_conn_reply_error(c, "out of memory"), 0;
                r = local_resolve(&l->settings, rc->address, req->sender, &delivered, &rc->targets, &rc->n_targets);
                if (r < 0)
                        return log_oom(), ipc_conn_reply_error(c, "out of memory"), 0;
                for (size_t j = 0; j < rc->n_targets; j++) {
                        rc->targets[j]->request = req;
                        rc->targets[j]->rcpt_index = i;
                }
        }

        marker_dir_open(l);
        for (size_t i = 0; i < req->n_rcpts; i++) {
                LocalRcpt *rc = &req->rcpts[i];
                forward_targets(l, req, rc);
                for (size_t j = 0; j < rc->n_targets; j++) {
                        Target *t = rc->targets[j];
                        if (t->done) {
                                log_target(req, rc, t);
                                continue;
                        }
                        if (t->kind != TARGET_MBOX && t->kind != TARGET_MAILDIR && t->kind != TARGET_COMMAND &&
                            t->kind != TARGET_FILE) {
                                (void) target_set_result(t, "4.3.0", "internal error: unexpected target");
                                log_target(req, rc, t);
                                continue;
                        }
                        _cleanup_free_ char *dt = strdup(t->address);
                        if (!dt) {
                                (void) target_set_result(t, "4.3.0", "out of memory");
                                log_target(req, rc, t);
                                continue;
                        }
                        DeliveryInput in = {
                                .queue_id = req->queue_id,
                                .rcpt_id = rc->id,
                                .sender = req->sender,
                                .delivered_to = local_ascii_lower(dt),
                                .content = req->content,
                                .content_len = req->content_len,
                                .hostname = l->settings.myhostname,
                        };
                        t->start_usec = now_usec(CLOCK_REALTIME);
                        r = local_child_spawn(&l->settings, &in, l->marker_dirfd, t);
                        if (r < 0) {
                                (void) target_set_result(t, "4.3.0", "cannot fork delivery process: %s", strerror(-r));
                                log_target(req, rc, t);
                                continue;
                        }
                        r = sd_event_add_child(l->event, &t->child_source, t->pid, WEXITED, on_child, t);
                        if (r < 0) {
                                /* Rare: wait for it here rather than lose track of a mailbox write. */
                                siginfo_t si = {};
                                log_warning_errno(r, "Cannot watch delivery child %d, waiting for it: %m", (int) t->pid);
                                while (waitid(P_PID, (id_t) t->pid, &si, WEXITED) < 0 && errno == EINTR)
                                        ;
                                local_child_collect(t, si.si_code, si.si_status);
                                t->end_usec = now_usec(CLOCK_REALTIME);
                                log_target(req, rc, t);
                                continue;
                        }
                        r = sd_event_add_time_relative(l->event, &t->deadline_source, CLOCK_MONOTONIC,
                                                       (uint64_t) l->settings.daemon_timeout * USEC_PER_SEC,
                                                       USEC_PER_SEC, on_child_deadline, t);
                        if (r < 0)
                                log_warning_errno(r, "%s: cannot arm the deadline of delivery process %d: %m",
                                                  req->queue_id, (int) t->pid);
                        l->n_children++;
                        req->pending++;
                }
        }

        if (req->pending == 0)
                request_finish(TAKE_PTR(req));
        else
                TAKE_PTR(req);   /* finished by on_child() */
        return 0;
}

static int settings_load(void *userdata, Conf *c, void *ret) {
        return local_settings_load(c, ret);
}

static void settings_done(void *s) {
        local_settings_done(s);
}

static int start(void *userdata, Daemon *d) {
        Local *l = userdata;
        l->daemon = d;
        l->event = daemon_event(d);

        /* sd_event_add_child() needs SIGCHLD blocked before any child exists. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        /* The queue may not exist yet (qmgr creates it); requests reopen it lazily. */
        if (queue_open(l->settings.queue_directory, 0, &l->queue) < 0)
                l->queue = NULL;   /* qmgr creates it; ensure_queue() retries and logs why not */
        marker_dir_open(l);
        int r = sd_event_add_time(l->event, &l->cleanup_timer, CLOCK_MONOTONIC,
                                  now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC, USEC_PER_SEC, on_cleanup, l);
        if (r < 0)
                log_warning_errno(r, "Cannot arm the marker cleanup timer: %m");
        return 0;
}

static void stop(void *userdata) {
        Local *l = userdata;
        if (l->n_children > 0)
                log_info("exiting with %zu delivery children still running; they finish on their own",
                         l->n_children);
        l->cleanup_timer = sd_event_source_disable_unref(l->cleanup_timer);
        while (l->requests)
                request_free(l->requests);
        l->queue = queue_close(l->queue);
        l->marker_dirfd = safe_close(l->marker_dirfd);
}

static const DaemonRole role = {
        .name = "local",
        .sockets = (const DaemonSocket[]) {
                { "local", DAEMON_SOCKET_REQUIRED, .ipc = on_request, .server_offset = offsetof(Local, server) },
                {},
        },
        .restart_params = (const char *const[]) { "queue_directory", NULL },
        DAEMON_ROLE_SETTINGS(Local, settings, settings_load, settings_done),
        .start = start, .stop = stop,
};

int main(int argc, char **argv) {
        Local l = { .marker_dirfd = -1 };
        return daemon_role_run(&role, &l);
}
