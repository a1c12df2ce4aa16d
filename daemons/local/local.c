/* local.c — postern-local, the local delivery agent (Postfix's local(8)).
 *
 * Serves request=deliver on the "local" socket (docs/architecture.md), as Postfix's virtual(8)
 * on the "virtual" socket and as pipe(8) on the "pipe" socket (both optional): the same service,
 * the same children, markers and batches; only the resolution differs (local-virtual.c, or for a
 * pipe request pipe_resolve() with the master.cf entry transport= names, local-pipe.c, whose
 * recipients of one message share one child and one command run) and the log says
 * relay=virtual or relay=<transport>. It loads the message from
 * the queue, resolves each recipient (local-alias.c), queues forwarded copies for remote alias
 * members (local-forward.c), forks one child per mailbox delivery (local-child.c) and answers
 * with one result per recipient, same indexes, once every child has reported. A request may hold
 * recipients of several messages (queue_id.N, sender.N, arrival.N, active.N: qmgr's batch of the
 * messages waiting for one recipient); the mbox deliveries of one request to the same user and
 * mailbox share one child (up to LOCAL_BATCH_MAX), which appends them under one lock with one
 * fsync and one marker sync, and Maildir deliveries share a child with those of the other requests
 * that arrived with them, whatever their user (up to LOCAL_MAILDIR_SHARE_MAX, maildir_enqueue());
 * each is still logged and answered on its own. Only one child writes a given mbox at a time: a child for an mbox that another child is writing is started
 * when that one exits, instead of sleeping deliver_lock_delay on its lock (the lock still
 * serialises against everyone else: mail readers, other MTAs). The event loop
 * never waits for a mailbox lock or a mailbox fsync (children are reaped with
 * sd_event_add_child()); it does wait for the queue when it forwards, see below.
 * Logs Postfix's "<id>: to=<...>, relay=local, delay=..., status=..." line for every target
 * (relay=virtual for the virtual socket's).
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
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/epoll.h>
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
        IpcServer *virtual_server;
        IpcServer *pipe_server;
        int marker_dirfd;
        sd_event_source *cleanup_timer;
        struct LocalRequest *requests;   /* in progress, for the cleanup at exit */
        size_t n_requests;
        size_t n_children;
        /* mbox children by their first target: one runs per mailbox at a time, the others wait
         * here for it instead of sleeping on its lock (deliver_lock_delay) */
        Target *mbox_running;
        Target *mbox_waiting;
        /* Maildir targets of any request waiting for a child: collected while requests keep
         * arriving, then delivered together (maildir_flush()) */
        Target *maildir_ready[LOCAL_MAILDIR_SHARE_MAX];
        size_t n_maildir_ready;
        sd_event_source *maildir_source;
} Local;

/* One queued message of a request (qmgr may put recipients of several messages into one request:
 * queue_id.N and friends). */
typedef struct LocalMsg {
        char queue_id[QUEUE_ID_MAX];
        char *sender;
        QueueMessage msg;
        bool have_msg;
        bool missing;                  /* not (or no longer) in the queue */
        char *content;
        size_t content_len;
        usec_t arrival, active;
        DeliveredSet delivered;
} LocalMsg;

typedef struct LocalRcpt {
        long long id;
        char *address;
        char *orcpt;                   /* the ORCPT address (without "rfc822;"), or NULL */
        LocalMsg *msg;
        Target **targets;
        size_t n_targets;
} LocalRcpt;

typedef struct LocalRequest {
        Local *local;
        struct LocalRequest *prev, *next;
        IpcConn *conn;
        const char *transport;         /* "local", "virtual" or the pipe transport's name (relay=) */
        char *pipe_name;               /* a pipe request's transport= (transport points to it) */
        char *nexthop;
        char queue_id[QUEUE_ID_MAX];   /* the request's first message (for log lines about it) */
        LocalMsg *msgs;
        size_t n_msgs;
        usec_t received;
        LocalRcpt *rcpts;
        size_t n_rcpts;
        size_t pending;                /* targets given to children that have not reported yet */
} LocalRequest;

static LocalRequest *request_free(LocalRequest *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_rcpts; i++) {
                for (size_t j = 0; j < r->rcpts[i].n_targets; j++)
                        target_free(r->rcpts[i].targets[j]);
                free(r->rcpts[i].targets);
                free(r->rcpts[i].address);
                free(r->rcpts[i].orcpt);
        }
        free(r->pipe_name);
        free(r->nexthop);
        free(r->rcpts);
        for (size_t i = 0; i < r->n_msgs; i++) {
                LocalMsg *m = &r->msgs[i];
                if (m->have_msg)
                        queue_message_done(&m->msg);
                free(m->content);
                free(m->sender);
                delivered_set_done(&m->delivered);
        }
        free(r->msgs);
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
        const LocalMsg *m = rc->msg;
        char d0[32], d1[32], d2[32], d3[32], d4[32];
        usec_t end = t->end_usec ? t->end_usec : now_usec(CLOCK_REALTIME);
        usec_t start = t->start_usec ? t->start_usec : end;
        const char *status = t->dsn[0] == '2' ? "sent" : t->dsn[0] == '5' ? "bounced" : "deferred";
        _cleanup_free_ char *orig = NULL;

        if (!strcaseeq(t->address, rc->address) && asprintf(&orig, ", orig_to=<%s>", rc->address) < 0)
                orig = NULL;
        log_fields(LOG_INFO, &((LogFields) { .queue_id = m->queue_id, .sender = m->sender,
                                             .recipient = t->address, .relay = req->transport,
                                             .dsn = t->dsn, .status = status }),
                   "%s: to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
                   m->queue_id, t->address, strempty(orig), req->transport,
                   delay_format(delay_between(end, m->arrival), d0, sizeof(d0)),
                   delay_format(delay_between(m->active, m->arrival), d1, sizeof(d1)),
                   delay_format(delay_between(req->received, m->active), d2, sizeof(d2)),
                   delay_format(delay_between(start, req->received), d3, sizeof(d3)),
                   delay_format(delay_between(end, start), d4, sizeof(d4)),
                   t->dsn, status, strna(t->diag));
}

/* Logs t's result with the request and recipient it belongs to. */
static void target_log(Target *t) {
        log_target(t->request, &t->request->rcpts[t->rcpt_index], t);
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

/* The targets one child delivered: the group of its first target (or that target alone). */
static Target **child_targets(Target **t, size_t *ret_n) {
        *ret_n = t[0]->n_group > 0 ? t[0]->n_group : 1;
        return t[0]->n_group > 0 ? t[0]->group : t;
}

static bool start_group(Local *l, Target *t);

static void mbox_list_remove(Target **head, Target *t) {
        for (Target **p = head; *p; p = &(*p)->mbox_next)
                if (*p == t) {
                        *p = t->mbox_next;
                        t->mbox_next = NULL;
                        return;
                }
}

static bool mbox_same(const Target *a, uid_t uid, const char *path) {
        return a->kind == TARGET_MBOX && a->uid == uid && streq(a->path, path);
}

/* Counts the n targets of a finished (or failed) child off their requests and finishes the
 * requests left with nothing pending, which frees their targets: all[] is not used afterwards. */
static void requests_release(Target **all, size_t n) {
        LocalRequest *reqs[LOCAL_BATCH_MAX];
        size_t counts[LOCAL_BATCH_MAX], n_reqs = 0;

        assert(n <= LOCAL_BATCH_MAX);
        for (size_t i = 0; i < n; i++) {
                size_t k = 0;
                while (k < n_reqs && reqs[k] != all[i]->request)
                        k++;
                if (k == n_reqs) {
                        reqs[n_reqs] = all[i]->request;
                        counts[n_reqs++] = 0;
                }
                counts[k]++;
        }
        for (size_t k = 0; k < n_reqs; k++) {
                reqs[k]->pending -= counts[k];
                if (reqs[k]->pending == 0)
                        request_finish(reqs[k]);
        }
}

/* Starts the first waiting child for the mailbox (uid, path), if any. */
static void mbox_start_next(Local *l, uid_t uid, const char *path) {
        for (;;) {
                Target *w = l->mbox_waiting;
                while (w && !mbox_same(w, uid, path))
                        w = w->mbox_next;
                if (!w)
                        return;
                mbox_list_remove(&l->mbox_waiting, w);
                if (start_group(l, w))
                        return;
                /* Failed at once (results logged): that request may be complete now. */
                size_t n;
                Target **g = child_targets(&w, &n);
                requests_release(g, n);
        }
}

static void spawn_group(Local *l, Target **g, size_t k);

/* Whether the targets of a child belong to more than one user. */
static bool group_is_shared(Target **g, size_t k) {
        for (size_t i = 1; i < k; i++)
                if (g[i]->uid != g[0]->uid)
                        return true;
        return false;
}

/* A shared child killed at its deadline: its targets go on in one child per user (sorted by
 * user already); the markers skip what the killed child had delivered, so nothing twice. */
static void split_shared_child(Local *l, Target *t) {
        Target *g[LOCAL_BATCH_MAX];
        size_t n;
        Target **all = child_targets(&t, &n);

        memcpy(g, all, n * sizeof(Target *));
        free(t->group);
        t->group = NULL;
        t->n_group = 0;
        t->shared_expired = false;
        t->result_fd = safe_close(t->result_fd);
        strbuf_reset(&t->result);
        for (size_t a = 0, b; a < n; a = b) {
                for (b = a + 1; b < n && g[b]->uid == g[a]->uid; b++)
                        ;
                spawn_group(l, g + a, b - a);
        }
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Target *t = userdata;
        Local *l = t->request->local;
        size_t n;
        Target **all = child_targets(&t, &n);

        t->result_source = sd_event_source_disable_unref(t->result_source);
        if (t->shared_expired) {
                t->deadline_source = sd_event_source_disable_unref(t->deadline_source);
                t->child_source = sd_event_source_disable_unref(t->child_source);
                t->pid = 0;
                l->n_children--;
                split_shared_child(l, t);
                return 0;
        }
        if (t->timed_out) {
                for (size_t i = 0; i < n; i++)
                        (void) target_set_result(all[i], "4.3.0", "delivery process still running after daemon_timeout "
                                                 "(%llds); killed", l->settings.daemon_timeout);
                t->result_fd = safe_close(t->result_fd);
        } else
                local_child_collect(all, n, si->si_code, si->si_status);
        t->deadline_source = sd_event_source_disable_unref(t->deadline_source);
        usec_t end = now_usec(CLOCK_REALTIME);
        t->child_source = sd_event_source_disable_unref(t->child_source);
        t->pid = 0;
        l->n_children--;
        for (size_t i = 0; i < n; i++) {
                all[i]->end_usec = end;
                target_log(all[i]);
        }
        /* The next child for this mailbox may belong to another request, or fail at once and
         * finish this one: keep the key, not t. */
        char path[PATH_MAX];
        bool mbox = t->kind == TARGET_MBOX;
        uid_t uid = t->uid;
        if (mbox) {
                mbox_list_remove(&l->mbox_running, t);   /* (a no-op when it was never in it) */
                snprintf(path, sizeof(path), "%s", t->path);   /* shorter: spawn_group() */
        }
        requests_release(all, n);   /* may free t */
        if (mbox)
                mbox_start_next(l, uid, path);
        return 0;
}

static int on_child_result(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Target *t = userdata;
        if (!local_child_read(t))
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);   /* EOF: on_child() follows */
        return 0;
}

/* daemon_timeout: nothing a recipient does can keep a delivery child (and the marker lock it
 * holds) alive for longer; the retry finds the marker unlocked. */
static int on_child_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Target *t = userdata;
        size_t n;
        Target **all = child_targets(&t, &n);

        if (t->pid > 0 && !t->timed_out && !t->shared_expired && group_is_shared(all, n) &&
            t->request->local->settings.daemon_timeout > LOCAL_SHARED_CHILD_TIMEOUT_SEC) {
                log_warning("%s: delivery process %d for %zu recipients of several users still running "
                            "after %ds; killing it, its deliveries go on one user per process",
                            t->request->rcpts[t->rcpt_index].msg->queue_id, (int) t->pid, n,
                            LOCAL_SHARED_CHILD_TIMEOUT_SEC);
                t->shared_expired = true;
                (void) kill(t->pid, SIGKILL);
                return 0;
        }
        if (t->pid > 0 && !t->timed_out) {
                log_warning("%s: delivery process %d for <%s> still running after daemon_timeout (%llds); killing it",
                            t->request->rcpts[t->rcpt_index].msg->queue_id, (int) t->pid, t->address,
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

/* The attribute name.i when the request has it, else the request-wide name (one message). */
static const char *rcpt_attr(const IpcRecord *rec, const char *name, size_t i) {
        const char *v = ipc_record_get_indexed(rec, name, i);
        return v ? v : ipc_record_get(rec, name);
}

static int parse_usec(const char *v, usec_t def, usec_t *ret) {
        if (!v) {
                *ret = def;
                return 0;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (errno != 0 || !end || end == v || *end || v[0] == '-')
                return -EINVAL;
        *ret = (usec_t) u;
        return 0;
}

/* Queues the copies of rc's forward and pass targets (local-forward.c), recorded in its marker. */
static void forward_targets(Local *l, LocalRcpt *rc) {
        LocalMsg *m = rc->msg;
        _cleanup_close_ int mfd = -1;
        const char *problem = NULL;
        bool any = false;

        for (size_t j = 0; j < rc->n_targets; j++)
                if (local_target_is_copy(rc->targets[j]) && !rc->targets[j]->done)
                        any = true;
        if (!any)
                return;
        mfd = local_marker_open(l->marker_dirfd, m->queue_id, rc->id, &problem);
        if (mfd < 0 || flock(mfd, LOCK_EX | LOCK_NB) < 0) {
                /* No marker: a retry could forward twice. A lock held by a delivery child of an
                 * earlier (crashed) run for this recipient: never wait for it in the event loop. */
                const char *why = mfd < 0 ? problem : "earlier delivery attempt still in progress";
                if (mfd < 0)
                        log_error("%s: %s (%s/%s/%s.%lld)", m->queue_id, problem, l->settings.queue_directory,
                                  LOCAL_MARKER_DIR, m->queue_id, rc->id);
                for (size_t j = 0; j < rc->n_targets; j++)
                        if (local_target_is_copy(rc->targets[j]) && !rc->targets[j]->done)
                                (void) target_set_result(rc->targets[j], "4.3.0", "%s", why);
                return;
        }
        for (size_t j = 0; j < rc->n_targets; j++) {
                Target *t = rc->targets[j];
                if (!local_target_is_copy(t) || t->done)
                        continue;
                _cleanup_free_ char *line = local_copy_marker_line(t);
                if (line && local_marker_has(mfd, line))
                        (void) target_set_result(t, "2.0.0", "%s (already queued earlier)",
                                                 t->kind == TARGET_PASS ? "passed" : "forwarded");
        }
        if (local_forward(&l->settings, l->queue, &m->msg, rc->id, rc->orcpt ? rc->orcpt : rc->address,
                          m->content, m->content_len, rc->targets, rc->n_targets) > 0) {
                _cleanup_free_ char *qmgr = daemon_socket_path(daemon_conf(l->daemon), "qmgr");
                _cleanup_ipc_record_ IpcRecord wake = IPC_RECORD_INIT;
                if (qmgr && ipc_record_add(&wake, "request", "wakeup") >= 0)
                        (void) ipc_send_oneway(qmgr, &wake);
        }
        for (size_t j = 0; j < rc->n_targets; j++) {
                Target *t = rc->targets[j];
                if (!local_target_is_copy(t) || !t->copied)
                        continue;
                /* If this is lost, the retry's insert finds the same queue id (local-forward.c). */
                _cleanup_free_ char *line = local_copy_marker_line(t);
                if (line)
                        (void) local_marker_add(mfd, line);
        }
}

/* Loads message m (queue id set) for recipient i of rec: envelope, content, Delivered-To: set,
 * sender and times. m->missing when it is not in the queue; <0 on other failures (logged). */
static int msg_load(Local *l, LocalRequest *req, LocalMsg *m, const IpcRecord *rec, size_t i) {
        int r = queue_load_message(l->queue, m->queue_id, &m->msg, NULL, NULL);   /* the envelope is enough */
        if (r >= 0) {
                m->have_msg = true;
                r = queue_load_content(l->queue, m->queue_id, &m->content, &m->content_len);
        }
        if (r == -ENOENT) {
                log_warning("%s: delivery request for a message that is not in the queue", m->queue_id);
                m->missing = true;
        } else if (r < 0) {
                log_error_errno(r, "%s: cannot read message from the queue: %s", m->queue_id,
                                queue_last_error(l->queue));
                return r;
        }
        const char *sender = rcpt_attr(rec, "sender", i);
        m->sender = strdup(sender ? sender : m->have_msg ? strempty(m->msg.sender) : "");
        if (!m->sender)
                return log_oom();
        if (parse_usec(rcpt_attr(rec, "arrival", i), m->have_msg ? m->msg.arrival_usec : req->received,
                       &m->arrival) < 0 ||
            parse_usec(rcpt_attr(rec, "active", i), req->received, &m->active) < 0)
                return -EINVAL;
        if (!m->missing && (r = delivered_set_load(m->content, m->content_len, &m->delivered)) < 0)
                return log_oom();
        return 0;
}

/* Forks the child for t's targets (t->group, or t alone); false when it could not (the results
 * are set and logged then), true when on_child() will collect it. */
static bool start_group(Local *l, Target *t) {
        LocalRequest *req = t->request;   /* (the group's targets may belong to several) */
        size_t k;
        Target **g = child_targets(&t, &k);
        DeliveryInput in[LOCAL_BATCH_MAX];
        char *dt[LOCAL_BATCH_MAX] = {};
        const char *fail = NULL;
        int r = 0;

        for (size_t i = 0; i < k; i++) {
                const LocalRcpt *rc = &g[i]->request->rcpts[g[i]->rcpt_index];
                if (!(dt[i] = strdup(g[i]->address)))
                        fail = "out of memory";
                in[i] = (DeliveryInput) {
                        .queue_id = rc->msg->queue_id,
                        .rcpt_id = rc->id,
                        .sender = rc->msg->sender,
                        .delivered_to = dt[i] ? local_ascii_lower(dt[i]) : "",
                        /* The address the client gave (smtpd keeps it as ORCPT when it rewrites). */
                        .original_to = !l->settings.enable_original_recipient ? NULL :
                                       rc->orcpt ? rc->orcpt : rc->address,
                        .content = rc->msg->content,
                        .content_len = rc->msg->content_len,
                        .hostname = l->settings.myhostname,
                        .recipient = rc->address,
                        .orig_recipient = rc->orcpt,
                        .nexthop = g[i]->request->nexthop,
                        .msg = &rc->msg->msg,
                };
                g[i]->start_usec = now_usec(CLOCK_REALTIME);
        }
        if (!fail && (r = local_child_spawn(&l->settings, in, k, l->marker_dirfd, g)) < 0)
                fail = "cannot fork delivery process";
        for (size_t i = 0; i < k; i++)
                free(dt[i]);
        if (fail) {
                for (size_t i = 0; i < k; i++) {
                        if (r < 0)
                                (void) target_set_result(g[i], "4.3.0", "%s: %s", fail, strerror(-r));
                        else
                                (void) target_set_result(g[i], "4.3.0", "%s", fail);
                        target_log(g[i]);
                }
                return false;
        }
        r = sd_event_add_child(l->event, &t->child_source, t->pid, WEXITED, on_child, t);
        if (r < 0) {
                /* Rare: wait for it here rather than lose track of a mailbox write. */
                siginfo_t si = {};
                log_warning_errno(r, "Cannot watch delivery child %d, waiting for it: %m", (int) t->pid);
                while (waitid(P_PID, (id_t) t->pid, &si, WEXITED) < 0 && errno == EINTR)
                        ;
                local_child_collect(g, k, si.si_code, si.si_status);
                usec_t end = now_usec(CLOCK_REALTIME);
                for (size_t i = 0; i < k; i++) {
                        g[i]->end_usec = end;
                        target_log(g[i]);
                }
                return false;
        }
        long long limit = l->settings.daemon_timeout;
        if (group_is_shared(g, k) && limit > LOCAL_SHARED_CHILD_TIMEOUT_SEC)
                limit = LOCAL_SHARED_CHILD_TIMEOUT_SEC;   /* then split: on_child_deadline() */
        r = sd_event_add_time_relative(l->event, &t->deadline_source, CLOCK_MONOTONIC,
                                       (uint64_t) limit * USEC_PER_SEC, USEC_PER_SEC, on_child_deadline, t);
        if (r < 0)
                log_warning_errno(r, "%s: cannot arm the deadline of delivery process %d: %m",
                                  req->rcpts[t->rcpt_index].msg->queue_id, (int) t->pid);
        /* A batch's result lines may not fit in the pipe: read them as they come. */
        r = sd_event_add_io(l->event, &t->result_source, t->result_fd, EPOLLIN, on_child_result, t);
        if (r < 0)
                log_warning_errno(r, "%s: cannot watch the result pipe of delivery process %d: %m",
                                  req->rcpts[t->rcpt_index].msg->queue_id, (int) t->pid);
        l->n_children++;
        if (t->kind == TARGET_MBOX && strlen(t->path) < PATH_MAX) {
                t->mbox_next = l->mbox_running;
                l->mbox_running = t;
        }
        return true;
}

/* Delivers the targets g[0..k-1] (counted in their requests' pending already; k > 1: mbox targets
 * of one user and mailbox, or Maildir targets) in one child, at once or, for an mbox another
 * child of ours is writing, when that child has finished. */
static void spawn_group(Local *l, Target **g, size_t k) {
        Target *t = g[0];

        if (k > 1 || t->kind == TARGET_MBOX) {
                t->group = calloc(k, sizeof(Target *));
                if (!t->group) {
                        for (size_t i = 0; i < k; i++) {
                                (void) target_set_result(g[i], "4.3.0", "out of memory");
                                target_log(g[i]);
                        }
                        requests_release(g, k);
                        return;
                }
                memcpy(t->group, g, k * sizeof(Target *));
                t->n_group = k;
        }
        if (t->kind == TARGET_MBOX && strlen(t->path) < PATH_MAX) {
                Target *busy = l->mbox_running;
                while (busy && !mbox_same(busy, t->uid, t->path))
                        busy = busy->mbox_next;
                if (busy) {
                        Target **p = &l->mbox_waiting;
                        while (*p)
                                p = &(*p)->mbox_next;
                        *p = t;
                        return;
                }
        }
        if (!start_group(l, t))
                requests_release(g, k);   /* results logged */
}

/* Whether g[0..k-1] holds a target of t's recipient (one marker, so one lock, per recipient and
 * child). */
static bool group_has_rcpt(Target **g, size_t k, const Target *t) {
        const LocalRcpt *rt = &t->request->rcpts[t->rcpt_index];
        for (size_t i = 0; i < k; i++) {
                const LocalRcpt *ri = &g[i]->request->rcpts[g[i]->rcpt_index];
                /* By queue id: two requests for one message (a request repeated after a crash)
                 * each load it, and one child must not lock the same marker twice. */
                if (ri->id == rt->id && (ri->msg == rt->msg || streq(ri->msg->queue_id, rt->msg->queue_id)))
                        return true;
        }
        return false;
}

/* Whether mbox target t may join the child of g[0..k-1]: same user and mailbox, a recipient not
 * yet in the group. */
static bool group_fits(Target **g, size_t k, const Target *t) {
        if (k >= LOCAL_BATCH_MAX || t->kind != g[0]->kind || group_has_rcpt(g, k, t))
                return false;
        if (t->kind == TARGET_PIPE)   /* one command run per message */
                return t->pipe == g[0]->pipe && t->request == g[0]->request &&
                       t->request->rcpts[t->rcpt_index].msg == g[0]->request->rcpts[g[0]->rcpt_index].msg;
        return t->kind == TARGET_MBOX && t->uid == g[0]->uid && streq(t->path, g[0]->path);
}

/* Sorts g[0..k-1] by user and mailbox, keeping the order within one mailbox. */
static void sort_by_mailbox(Target **g, size_t k) {
        for (size_t i = 1; i < k; i++) {
                Target *x = g[i];
                size_t j = i;
                for (; j > 0 && (g[j - 1]->uid > x->uid ||
                                 (g[j - 1]->uid == x->uid && strcmp(g[j - 1]->path, x->path) > 0)); j--)
                        g[j] = g[j - 1];
                g[j] = x;
        }
}

/* Starts children for the waiting Maildir targets, whatever request and user they belong to (one
 * fork, one marker sync for each child's share): one child per CPU, each with at least
 * LOCAL_MAILDIR_SHARE_MIN of them (at most LOCAL_MAILDIR_SHARE_MAX). A child spends most of its
 * time waiting for the disk (creating inodes, fsync), so with one child for all of them, the other
 * CPU would sit idle meanwhile (tests/bench/vdomain: about half the time). */
static void maildir_flush(Local *l) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t per = l->n_maildir_ready / (size_t) (cpus > 1 ? cpus : 1) + 1;
        if (per < LOCAL_MAILDIR_SHARE_MIN)
                per = LOCAL_MAILDIR_SHARE_MIN;
        while (l->n_maildir_ready > 0) {
                Target *g[LOCAL_BATCH_MAX];
                size_t k = 0, keep = 0;
                for (size_t i = 0; i < l->n_maildir_ready; i++) {
                        Target *x = l->maildir_ready[i];
                        if (k >= per || group_has_rcpt(g, k, x))
                                l->maildir_ready[keep++] = x;   /* in the next child */
                        else
                                g[k++] = x;
                }
                l->n_maildir_ready = keep;
                sort_by_mailbox(g, k);
                spawn_group(l, g, k);
        }
}

static int on_maildir_ready(sd_event_source *s, void *userdata) {
        maildir_flush(userdata);
        return 0;
}

/* Hands Maildir target t to the next shared child: started once the requests that are ready now
 * have been read (the event source runs below the normal priority), or at once when
 * LOCAL_MAILDIR_SHARE_MAX are waiting. Under load one child serves many requests; alone, t waits
 * for nothing. A home directory that hangs (a dead NFS server, a FUSE mount) holds up the other
 * deliveries of its child for LOCAL_SHARED_CHILD_TIMEOUT_SEC: then the child is killed and its
 * deliveries go on one user per child (split_shared_child()). */
static void maildir_enqueue(Local *l, Target *t) {
        if (l->n_maildir_ready == LOCAL_MAILDIR_SHARE_MAX)
                maildir_flush(l);
        l->maildir_ready[l->n_maildir_ready++] = t;
        t->request->pending++;
        if (!l->maildir_source || sd_event_source_set_enabled(l->maildir_source, SD_EVENT_ONESHOT) < 0)
                maildir_flush(l);
}

typedef enum LocalSocket { SOCKET_LOCAL, SOCKET_VIRTUAL, SOCKET_PIPE } LocalSocket;

/* The target of a pipe transport's recipient: the command's user from user=, or a deferral. */
static int pipe_resolve(const PipeTransport *p, const char *name, const char *address, Target ***ret,
                        size_t *ret_n) {
        _cleanup_(target_freep) Target *t = target_new(TARGET_PIPE, address);
        Target **v = calloc(1, sizeof(Target *));
        if (!t || !v) {
                free(v);
                return -ENOMEM;
        }
        if (!p)
                (void) target_set_result(t, "4.3.5", "mail system configuration error: no pipe transport "
                                         "\"%s\" in master.cf", name);
        else if (p->error)
                (void) target_set_result(t, "4.3.5", "mail system configuration error: %s", p->error);
        else {
                struct passwd *pw = getpwnam(p->spec.user);
                struct group *gr = p->spec.group ? getgrnam(p->spec.group) : NULL;
                if (!pw || (p->spec.group && !gr))
                        (void) target_set_result(t, "4.3.5", "mail system configuration error: %s: unknown %s "
                                                 "\"%s\" in user=", name, pw ? "group" : "user",
                                                 pw ? p->spec.group : p->spec.user);
                else if (pw->pw_uid == 0 || (gr ? gr->gr_gid : pw->pw_gid) == 0)
                        (void) target_set_result(t, "4.3.5", "mail system configuration error: %s: user= "
                                                 "must not be root", name);
                else {
                        t->uid = pw->pw_uid;
                        t->gid = gr ? gr->gr_gid : pw->pw_gid;
                        t->pipe = p;
                        if (!(t->user = strdup(pw->pw_name)) || asprintf(&t->path, "pipe:%s", name) < 0) {
                                t->path = NULL;
                                free(v);
                                return -ENOMEM;
                        }
                }
        }
        v[0] = TAKE_PTR(t);
        *ret = v;
        *ret_n = 1;
        return 0;
}

/* A request=deliver on the "local" socket (local(8)), the "virtual" one (virtual(8)) or the
 * "pipe" one (pipe(8), transport= naming the master.cf entry). */
static int serve_request(Local *l, IpcConn *c, const IpcRecord *rec, LocalSocket sock) {
        _cleanup_(request_freep) LocalRequest *req = NULL;
        _cleanup_free_ Target **all = NULL;
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
                const char *qid = rcpt_attr(rec, "queue_id", (size_t) i);
                char *end = NULL;
                if (isempty(a) || isempty(id) || (strtoll(id, &end, 10), !end || *end))
                        return ipc_conn_reply_error(c, "missing or invalid rcpt/rcpt_id"), 0;
                if (!queue_id_valid(qid))
                        return ipc_conn_reply_error(c, "invalid queue_id"), 0;
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
        req->transport = sock == SOCKET_VIRTUAL ? "virtual" : "local";
        if (sock == SOCKET_PIPE) {
                const char *tn = ipc_record_get(rec, "transport");
                if (isempty(tn) || strlen(tn) > 64 || strchr(tn, '/'))
                        return ipc_conn_reply_error(c, "missing or invalid transport"), 0;
                if (!(req->pipe_name = strdup(tn)))
                        return ipc_conn_reply_error(c, "out of memory"), 0;
                req->transport = req->pipe_name;
        }
        if (!(req->nexthop = strdup(strempty(ipc_record_get(rec, "nexthop")))))
                return ipc_conn_reply_error(c, "out of memory"), 0;
        snprintf(req->queue_id, sizeof(req->queue_id), "%s", queue_id);
        req->received = now_usec(CLOCK_REALTIME);

        if (ensure_queue(l) < 0)
                return reply_all_deferred(c, rec, (size_t) count, "queue database unavailable"), 0;

        req->rcpts = calloc((size_t) count, sizeof(LocalRcpt));
        req->msgs = calloc((size_t) count, sizeof(LocalMsg));
        if (!req->rcpts || !req->msgs)
                return ipc_conn_reply_error(c, "out of memory"), 0;
        req->n_rcpts = (size_t) count;
        for (size_t i = 0; i < req->n_rcpts; i++) {
                LocalRcpt *rc = &req->rcpts[i];
                const char *qid = rcpt_attr(rec, "queue_id", i);
                rc->id = strtoll(ipc_record_get_indexed(rec, "rcpt_id", i), NULL, 10);
                rc->address = strdup(ipc_record_get_indexed(rec, "rcpt", i));
                if (!rc->address)
                        return ipc_conn_reply_error(c, "out of memory"), 0;
                const char *orcpt = ipc_record_get_indexed(rec, "orcpt", i);
                if (orcpt) {
                        const char *semi = strchr(orcpt, ';');
                        if (!(rc->orcpt = strdup(semi ? semi + 1 : orcpt)))
                                return ipc_conn_reply_error(c, "out of memory"), 0;
                }
                for (size_t k = 0; k < req->n_msgs && !rc->msg; k++)
                        if (streq(req->msgs[k].queue_id, qid))
                                rc->msg = &req->msgs[k];
                if (rc->msg)
                        continue;
                rc->msg = &req->msgs[req->n_msgs++];
                snprintf(rc->msg->queue_id, sizeof(rc->msg->queue_id), "%s", qid);
                r = msg_load(l, req, rc->msg, rec, i);
                if (r == -EINVAL)
                        return ipc_conn_reply_error(c, "invalid arrival/active"), 0;
                if (r == -ENOMEM)
                        return ipc_conn_reply_error(c, "out of memory"), 0;
                if (r < 0) {
                        l->queue = queue_close(l->queue);   /* reopened by the next request */
                        return reply_all_deferred(c, rec, (size_t) count, "queue read error"), 0;
                }
        }
        if (req->n_msgs == 1 && req->msgs[0].missing)
                return ipc_conn_reply_error(c, "no such message"), 0;

        for (size_t i = 0; i < req->n_rcpts; i++) {
                LocalRcpt *rc = &req->rcpts[i];
                if (rc->msg->missing) {
                        /* Deleted meanwhile (several messages in this request): only its recipients wait. */
                        if (!(rc->targets = calloc(1, sizeof(Target *))) ||
                            !(rc->targets[0] = target_new(TARGET_RESULT, rc->address)))
                                return log_oom(), ipc_conn_reply_error(c, "out of memory"), 0;
                        rc->n_targets = 1;
                        (void) target_set_result(rc->targets[0], "4.3.0", "message is not in the queue");
                } else {
                        if (sock == SOCKET_PIPE)
                                r = pipe_resolve(local_pipe_find(&l->settings, req->transport), req->transport,
                                                 rc->address, &rc->targets, &rc->n_targets);
                        else if (sock == SOCKET_VIRTUAL)
                                r = local_virtual_resolve(&l->settings, rc->address, &rc->targets, &rc->n_targets);
                        else
                                r = local_resolve(&l->settings, rc->address, rc->msg->sender, &rc->msg->delivered,
                                                  &rc->targets, &rc->n_targets);
                        if (r < 0)
                                return log_oom(), ipc_conn_reply_error(c, "out of memory"), 0;
                }
                for (size_t j = 0; j < rc->n_targets; j++) {
                        rc->targets[j]->request = req;
                        rc->targets[j]->rcpt_index = i;
                }
        }

        marker_dir_open(l);
        size_t n_all = 0;
        for (size_t i = 0; i < req->n_rcpts; i++)
                n_all += req->rcpts[i].n_targets;
        all = calloc(n_all + 1, sizeof(Target *));
        if (!all)
                return log_oom(), ipc_conn_reply_error(c, "out of memory"), 0;
        n_all = 0;
        for (size_t i = 0; i < req->n_rcpts; i++) {
                LocalRcpt *rc = &req->rcpts[i];
                if (!rc->msg->missing)
                        forward_targets(l, rc);
                for (size_t j = 0; j < rc->n_targets; j++) {
                        Target *t = rc->targets[j];
                        if (t->done) {
                                log_target(req, rc, t);
                                continue;
                        }
                        if (t->kind != TARGET_MBOX && t->kind != TARGET_MAILDIR && t->kind != TARGET_COMMAND &&
                            t->kind != TARGET_FILE && t->kind != TARGET_PIPE) {
                                (void) target_set_result(t, "4.3.0", "internal error: unexpected target");
                                log_target(req, rc, t);
                                continue;
                        }
                        all[n_all++] = t;
                }
        }

        /* One child per delivery, except that mbox deliveries to the same user and mailbox share
         * one (one lock, one fsync, one marker sync; qmgr hands over the messages that queued up
         * for one recipient behind local_destination_concurrency_limit in one request), and
         * Maildir deliveries share a child with those of other requests (maildir_enqueue()).
         * The request holds one pending count of its own meanwhile: a child that fails at once
         * must not finish it under our feet. */
        req->pending = 1;
        for (size_t a = 0; a < n_all; a++) {
                Target *g[LOCAL_BATCH_MAX];
                size_t k = 0;
                if (!all[a])
                        continue;
                if (all[a]->kind == TARGET_MAILDIR) {
                        maildir_enqueue(l, all[a]);
                        continue;
                }
                g[k++] = all[a];
                for (size_t b = a + 1; b < n_all; b++)
                        if (all[b] && group_fits(g, k, all[b])) {
                                g[k++] = all[b];
                                all[b] = NULL;
                        }
                req->pending += k;
                spawn_group(l, g, k);
        }

        if (--req->pending == 0)
                request_finish(TAKE_PTR(req));
        else
                TAKE_PTR(req);   /* finished by on_child() */
        return 0;
}

static int on_request(IpcConn *c, const IpcRecord *rec, void *userdata) {
        return serve_request(userdata, c, rec, SOCKET_LOCAL);
}

static int on_virtual_request(IpcConn *c, const IpcRecord *rec, void *userdata) {
        return serve_request(userdata, c, rec, SOCKET_VIRTUAL);
}

static int on_pipe_request(IpcConn *c, const IpcRecord *rec, void *userdata) {
        return serve_request(userdata, c, rec, SOCKET_PIPE);
}

static int settings_load(void *userdata, Conf *c, void *ret) {
        int r = local_settings_load(c, ret);
        if (r >= 0)
                local_biff_check(((LocalSettings *) ret)->biff);
        return r;
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
        int r = sd_event_add_defer(l->event, &l->maildir_source, on_maildir_ready, l);
        if (r >= 0)
                r = sd_event_source_set_priority(l->maildir_source, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->maildir_source, SD_EVENT_OFF);
        if (r < 0) {
                log_warning_errno(r, "Cannot set up shared Maildir delivery, one child per message: %m");
                l->maildir_source = sd_event_source_disable_unref(l->maildir_source);
        }
        r = sd_event_add_time(l->event, &l->cleanup_timer, CLOCK_MONOTONIC,
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
        l->mbox_running = l->mbox_waiting = NULL;
        l->maildir_source = sd_event_source_disable_unref(l->maildir_source);
        l->n_maildir_ready = 0;   /* the requests own the targets */
        while (l->requests)
                request_free(l->requests);
        l->queue = queue_close(l->queue);
        l->marker_dirfd = safe_close(l->marker_dirfd);
}

static const DaemonRole role = {
        .name = "local",
        .sockets = (const DaemonSocket[]) {
                { "local", DAEMON_SOCKET_REQUIRED, .ipc = on_request, .server_offset = offsetof(Local, server) },
                { "virtual", DAEMON_SOCKET_OPTIONAL, .ipc = on_virtual_request,
                  .server_offset = offsetof(Local, virtual_server) },
                { "pipe", DAEMON_SOCKET_OPTIONAL, .ipc = on_pipe_request,
                  .server_offset = offsetof(Local, pipe_server) },
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
