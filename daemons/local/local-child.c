/* local-child.c — the forked delivery child of postern-local.
 *
 * local_child_spawn() forks; the child delivers one target, a batch of mbox targets of one user
 * and mailbox, a batch of Maildir targets of one or more users, or the recipients of one message
 * for a pipe(8) transport, which share one run of its command (several messages, one marker
 * each; a Maildir batch is written user by user: step 3 and the write of step 4 for each). It
 *   1. opens the delivery marker <queue_directory>/local-delivered/<queue id>.<rcpt id> (as root,
 *      through the directory descriptor the parent verified; local-marker.c refuses a marker that
 *      is not a plain root-owned file) and takes its flock() — without blocking, in at most
 *      deliver_lock_attempts tries deliver_lock_delay apart, else the delivery is deferred — and
 *      stops with success when the mailbox is already listed there: this is what makes a
 *      redelivery after a crash (kill -9 of postern-local, or of the parent while this child
 *      still writes) deliver exactly once;
 *   2. for a mailbox in mail_spool_directory that the user cannot create (a /var/mail that is
 *      neither world- nor group-writable) creates the empty mailbox 0600 for the user — through
 *      a descriptor of the spool directory, never by path, and nowhere else: a mailbox under a
 *      home directory is only ever touched after the switch to the user — and keeps the spool's
 *      group as a supplementary group when it is group-writable (Debian: 2775 root:mail), so the
 *      dotlock can be made as the user;
 *   3. switches its groups and its *effective* uid to the recipient before opening any mailbox
 *      file (setgroups with the groups the parent looked up with getgrouplist() before the
 *      fork — for a virtual mailbox, which has no user name, the mailbox's gid alone —, setresgid,
 *      setresuid(-1, uid, -1)): files are opened and created with
 *      the recipient's rights, but the real and saved uid stay root, so the recipient cannot
 *      signal, stop or trace the process that holds the marker lock (kill(2) needs a matching
 *      real or saved uid) — the way Postfix's local(8) changes only its effective uid. A
 *      "|command" runs in a grandchild that gives up root completely (local-command.c), and only
 *      that process is the recipient's to signal; this child waits for it with a deadline.
 *      Under systemd the command runs as a transient unit instead (local-transient.c): before
 *      the switch, while its effective uid is still root, the child connects to the service
 *      manager, which trusts the uid a connection was made with;
 *   4. applies mailbox_size_limit (virtual_mailbox_limit for a virtual mailbox, which is also
 *      locked per virtual_mailbox_lock and whose missing directories it creates first, as the
 *      owner) as RLIMIT_FSIZE, writes the mailbox (a batch: every message not
 *      yet in its marker; an mbox under one lock with one fsync, a Maildir with one fsync of new/
 *      after the files' own), records it in the marker(s) after it was
 *      fsynced (local_marker_sync(): one sync for all), and writes one line "<dsn>\t<diag>\n" per
 *      target, in order, to the result pipe. After a local (not virtual) mbox write it tells
 *      comsat of each new message when biff = yes (local-biff.c).
 * The parent reaps it from sd-event (sd_event_add_child), kills it when it is still running after
 * daemon_timeout (local.c), and reads the pipe with local_child_collect(). The child closes every
 * descriptor it does not need right after the fork, the journal socket included: it must not log
 * (its result line is what gets logged). */
#include <assert.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "local-transient.h"
#include "local.h"

static void success_result(const Target *t, DeliveryResult *res) {
        if (t->kind == TARGET_COMMAND)
                delivery_result_set(res, "2.0.0", "delivered to command: %s", t->path + 1);
        else if (t->kind == TARGET_PIPE)
                delivery_result_set(res, "2.0.0", "delivered via %s service", t->pipe->name);
        else if (t->kind == TARGET_FILE)
                delivery_result_set(res, "2.0.0", "delivered to file: %s", t->path);
        else
                delivery_result_set(res, "2.0.0", "%s",
                                    t->kind == TARGET_MAILDIR ? "delivered to maildir" : "delivered to mailbox");
}

/* The recipient's groups as initgroups() would set them (*ret_n entries, with room for one more),
 * looked up by the parent before the fork: the name service modules are loaded once in
 * postern-local rather than in every child. */
static int recipient_groups(const Target *t, gid_t **ret, int *ret_n) {
        int n = 32;
        if (t->virtual) {
                /* No user name: the mailbox's gid is the only group, as in Postfix's virtual(8). */
                gid_t *g = calloc(2, sizeof(gid_t));
                if (!g)
                        return -ENOMEM;
                g[0] = t->gid;
                *ret = g;
                *ret_n = 1;
                return 0;
        }
        for (;;) {
                _cleanup_free_ gid_t *g = calloc((size_t) n + 1, sizeof(gid_t));
                if (!g)
                        return -ENOMEM;
                int k = n;
                if (getgrouplist(t->user, t->gid, g, &k) >= 0) {
                        *ret = TAKE_PTR(g);
                        *ret_n = k;
                        return 0;
                }
                if (k <= n || k > NGROUPS_MAX)
                        return -EINVAL;
                n = k;
        }
}

/* Takes the recipient's groups (groups[0..n_groups-1], room for extra_gid after them) and
 * effective uid; real and saved uid stay root (step 3 above). */
static int switch_to_recipient(const Target *t, gid_t *groups, int n_groups, gid_t extra_gid) {
        if (geteuid() != 0)
                /* Not root (a test run by hand): only the same user can be served. */
                return geteuid() == t->uid ? 0 : -EPERM;
        if (n_groups < 0)
                return n_groups;   /* the parent's lookup failed */
        if (extra_gid != (gid_t) -1)
                groups[n_groups++] = extra_gid;
        if (setgroups((size_t) n_groups, groups) < 0)
                return -errno;
        if (setresgid(t->gid, t->gid, t->gid) < 0)
                return -errno;
        if (setresuid((uid_t) -1, t->uid, (uid_t) -1) < 0)
                return -errno;
        uid_t ru, eu, su;
        if (getresuid(&ru, &eu, &su) < 0 || ru != 0 || eu != t->uid || su != 0)
                return -EPERM;
        (void) prctl(PR_SET_DUMPABLE, 0);
        return 0;
}

/* flock() on the marker without ever blocking: deliver_lock_attempts tries. */
static int marker_lock(const LocalSettings *s, int fd) {
        for (long long i = 0; i < s->lock_attempts; i++) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        return 0;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                if (i + 1 < s->lock_attempts)
                        local_lock_pause(s);
        }
        return -EWOULDBLOCK;
}

/* Decides, as root, how the spool directory can be used by the user: whether a dotlock is
 * possible and which group to keep; creates the missing mailbox for the user when the user may
 * not. Only for mailboxes in mail_spool_directory: that directory is the admin's, so it is
 * resolved once and then used through a descriptor; the mailbox name is the user name. */
static void prepare_spool(const LocalSettings *s, const Target *t, bool *ret_may_dotlock,
                          gid_t *ret_extra_gid) {
        struct stat st;

        *ret_may_dotlock = true;
        *ret_extra_gid = (gid_t) -1;
        if (geteuid() != 0 || !t->spool || isempty(t->user) || strchr(t->user, '/') ||
            streq(t->user, ".") || streq(t->user, ".."))
                return;   /* the open as the user reports any problem */
        _cleanup_free_ char *dir = realpath(s->mail_spool_directory, NULL);
        if (!dir)
                return;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0 || fstat(dfd, &st) < 0 || st.st_uid != 0)
                return;   /* not root's: nothing is done as root there */

        bool writable = (st.st_mode & S_IWOTH) ||
                        (st.st_uid == t->uid && (st.st_mode & S_IWUSR)) ||
                        (st.st_gid == t->gid && (st.st_mode & S_IWGRP));
        if (!writable && (st.st_mode & S_IWGRP) && st.st_gid != 0) {
                *ret_extra_gid = st.st_gid;
                writable = true;
        }
        if (writable)
                return;

        *ret_may_dotlock = false;
        /* Create the empty mailbox for the user, as Postfix does in a root-owned spool. */
        int fd = openat(dfd, t->user, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
        if (fd >= 0) {
                if (fchown(fd, t->uid, t->gid) < 0 || fchmod(fd, 0600) < 0)
                        (void) unlinkat(dfd, t->user, 0);
                close(fd);
        }
}

/* The line that records t in its recipient's marker: the mailbox path; for a command or a file
 * prefixed with the uid it runs as ("1001:|procmail"), since the .forward files of two users
 * reached through one alias may name the same command. NULL when out of memory. */
static char *marker_line(const Target *t) {
        char *line = NULL;
        if (t->kind != TARGET_COMMAND && t->kind != TARGET_FILE)
                return strdup(t->path);
        return asprintf(&line, "%lu:%s", (unsigned long) t->uid, t->path) < 0 ? NULL : line;
}

/* Opens and locks the marker of in and says whether t was already delivered there (then res is
 * set to success). Returns the marker fd, or <0 with res set to a deferral. */
static int child_marker(const LocalSettings *s, const DeliveryInput *in, int marker_dirfd,
                        const Target *t, DeliveryResult *res, bool *ret_done) {
        const char *problem = NULL;
        int r;

        *ret_done = false;
        int mfd = local_marker_open(marker_dirfd, in->queue_id, in->rcpt_id, &problem);
        if (mfd < 0) {
                /* Without a trustworthy marker a retry could deliver twice: keep the mail queued. */
                delivery_result_set(res, "4.3.0", "%s (%s/%s/%s.%lld)", problem ? problem : strerror(-mfd),
                                    s->queue_directory, LOCAL_MARKER_DIR, in->queue_id, in->rcpt_id);
                return mfd;
        }
        r = marker_lock(s, mfd);
        if (r < 0) {
                delivery_result_set(res, "4.3.0", "%s (%s/%s/%s.%lld)",
                                    r == -EWOULDBLOCK ? "delivery marker is locked: an earlier delivery of this "
                                                        "recipient is still in progress" :
                                                        "cannot lock delivery marker",
                                    s->queue_directory, LOCAL_MARKER_DIR, in->queue_id, in->rcpt_id);
                safe_close(mfd);
                return r;
        }
        _cleanup_free_ char *line = marker_line(t);
        if (!line) {
                delivery_result_set(res, "4.3.0", "out of memory");
                safe_close(mfd);
                return -ENOMEM;
        }
        if (local_marker_has(mfd, line)) {
                success_result(t, res);
                *ret_done = true;
        }
        return mfd;
}

/* The order in which a child locks its markers (see child_deliver()). */
static bool marker_order_before(const DeliveryInput *a, const DeliveryInput *b) {
        int c = strcmp(a->queue_id, b->queue_id);
        return c < 0 || (c == 0 && a->rcpt_id < b->rcpt_id);
}

/* The groups the parent looked up for each target: one list per run of targets of one user
 * (name, uid and gid alike). */
typedef struct ChildGroups {
        gid_t *list[LOCAL_BATCH_MAX];   /* list[i]: the groups of t[i]'s user (shared within a run) */
        int n[LOCAL_BATCH_MAX];         /* their number, or <0: the lookup failed */
} ChildGroups;

static bool same_mailbox(const Target *a, const Target *b) {
        return a->kind == b->kind && a->uid == b->uid && streq(a->path, b->path);
}

/* Delivers t[0..n-1] and sets res[i] for each. n > 1: mbox targets of one user and one mailbox,
 * or Maildir targets of one or more users, sorted so that each mailbox's targets are adjacent:
 * the child switches to each user in turn and back to root in between (its real and saved uid
 * stay root throughout, so it can), as Postfix's long-lived local(8) does between deliveries. */
static void child_deliver(const LocalSettings *s, const DeliveryInput *in, size_t n, int marker_dirfd,
                          Target **t, ChildGroups *groups, DeliveryResult *res) {
        int mfd[LOCAL_BATCH_MAX];
        const Target *t0 = t[0];
        DeliveryInput todo_in[LOCAL_BATCH_MAX];
        DeliveryResult todo_res[LOCAL_BATCH_MAX];
        size_t todo[LOCAL_BATCH_MAX], n_todo = 0;
        int synced[LOCAL_BATCH_MAX];
        size_t n_synced = 0;
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        bool may_dotlock = true;
        gid_t extra_gid = (gid_t) -1;
        int r;

        assert(n >= 1 && n <= LOCAL_BATCH_MAX);
        /* Markers are locked in one order, that of (queue id, recipient id), by every child: two
         * children with overlapping batches (a request repeated after a crash while the first
         * is still delivered) then never hold one marker each while retrying the other's. */
        size_t order[LOCAL_BATCH_MAX];
        bool done[LOCAL_BATCH_MAX];
        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                for (; k > 0 && marker_order_before(&in[i], &in[order[k - 1]]); k--)
                        order[k] = order[k - 1];
                order[k] = i;
        }
        for (size_t k = 0; k < n; k++)
                mfd[order[k]] = child_marker(s, &in[order[k]], marker_dirfd, t[order[k]], &res[order[k]],
                                             &done[order[k]]);
        for (size_t i = 0; i < n; i++) {
                if (mfd[i] >= 0 && !done[i]) {
                        todo_in[n_todo] = in[i];
                        todo_res[n_todo] = (DeliveryResult) {};
                        todo[n_todo++] = i;
                }
        }
        /* The user's process has no business with the marker directory. */
        safe_close(marker_dirfd);
        if (n_todo == 0)
                goto out;

        if (t0->kind == TARGET_MBOX)
                prepare_spool(s, t0, &may_dotlock, &extra_gid);

        /* The service manager trusts the uid a connection was made with: connect as root. */
        if ((t0->kind == TARGET_COMMAND || t0->kind == TARGET_PIPE) && local_transient_available()) {
                _cleanup_free_ char *why = NULL;
                r = local_transient_connect(&bus, &why);
                if (r < 0) {
                        delivery_result_set(&res[todo[0]], "4.3.0", "cannot run command: %s", why ? why : strerror(-r));
                        goto out;
                }
        }

        for (size_t a = 0, b; a < n_todo; a = b) {
                const Target *u = t[todo[a]];
                /* A virtual mailbox has its own lock methods and size limit. */
                LocalSettings us = *s;
                if (u->virtual) {
                        us.lock_methods = s->virtual_lock_methods;
                        us.mailbox_size_limit = s->virtual_mailbox_limit;
                }
                for (b = a + 1; b < n_todo && same_mailbox(t[todo[b]], u); b++)
                        ;
                r = a == 0 ? 0 : setresuid((uid_t) -1, 0, (uid_t) -1) < 0 ? -errno : 0;   /* back to root */
                /* Soft limit only: a "|command" may raise it again (the limit is for mailboxes);
                 * set for each mailbox, as a shared child may serve local and virtual ones. */
                struct rlimit rl;
                if (getrlimit(RLIMIT_FSIZE, &rl) == 0) {
                        rl.rlim_cur = us.mailbox_size_limit > 0 ? MIN((rlim_t) us.mailbox_size_limit, rl.rlim_max) :
                                                                  rl.rlim_max;
                        (void) setrlimit(RLIMIT_FSIZE, &rl);
                }
                if (r >= 0)
                        r = switch_to_recipient(u, groups->list[todo[a]], groups->n[todo[a]], extra_gid);
                if (r < 0) {
                        for (size_t k = a; k < b; k++)
                                delivery_result_set(&todo_res[k], "4.3.0", "cannot switch to %s %s (uid %u): %s",
                                                    u->virtual ? "the owner of" : "user",
                                                    u->virtual ? u->path : u->user, (unsigned) u->uid, strerror(-r));
                        continue;
                }
                /* virtual(8) creates a mailbox's missing directories as its owner. */
                if (u->virtual && (r = local_mkdir_parents(u->path)) < 0) {
                        for (size_t k = a; k < b; k++)
                                delivery_result_set(&todo_res[k], local_errno_dsn(r),
                                                    "cannot create the directories of %s: %s", u->path, strerror(-r));
                        continue;
                }
                switch (u->kind) {
                case TARGET_MAILDIR:
                        local_maildir_deliver(&us, todo_in + a, b - a, u->path, todo_res + a);
                        break;
                case TARGET_COMMAND:
                        local_command_deliver(s, u, &todo_in[a], u->path + 1, bus, &todo_res[a]);
                        break;
                case TARGET_PIPE:
                        /* One command for the recipients of one message (the parent's group). */
                        local_pipe_deliver(s, u->pipe, todo_in + a, b - a, bus, todo_res + a);
                        break;
                case TARGET_FILE:
                        if (u->path[strlen(u->path) - 1] == '/')
                                local_maildir_deliver(s, &todo_in[a], 1, u->path, &todo_res[a]);
                        else
                                local_mbox_deliver(s, &todo_in[a], u->path, false, false, &todo_res[a]);
                        if (todo_res[a].dsn[0] == '2')
                                success_result(u, &todo_res[a]);
                        break;
                default:
                        local_mbox_deliver_many(&us, todo_in + a, b - a, u->path, may_dotlock, true, todo_res + a);
                        /* Postfix's local(8) tells comsat of each new message; virtual(8) does not. */
                        for (size_t k = a; k < b && s->biff && !u->virtual; k++)
                                if (todo_res[k].dsn[0] == '2')
                                        local_biff_notify(u->user, todo_res[k].mbox_offset);
                }
        }

        /* Recorded only after the mailbox was synced; all markers made durable at once. */
        for (size_t k = 0; k < n_todo; k++) {
                res[todo[k]] = todo_res[k];
                _cleanup_free_ char *line = todo_res[k].dsn[0] == '2' ? marker_line(t[todo[k]]) : NULL;
                if (line && local_marker_append(mfd[todo[k]], line) >= 0)
                        synced[n_synced++] = mfd[todo[k]];
        }
        (void) local_marker_sync(synced, n_synced);
out:
        for (size_t i = 0; i < n; i++)
                safe_close(mfd[i]);
}

/* Closes every descriptor from 3 up except a and b (the daemon's sockets, the queue database and
 * other children's pipes have no business in a process running as a user). */
static void close_all_but(int a, int b) {
        int lo = MIN(a, b), hi = MAX(a, b);
        int next = 3;
        if (lo >= next) {
                if (lo > next)
                        (void) close_range((unsigned) next, (unsigned) lo - 1, 0);
                next = lo + 1;
        }
        if (hi >= next) {
                if (hi > next)
                        (void) close_range((unsigned) next, (unsigned) hi - 1, 0);
                next = hi + 1;
        }
        (void) close_range((unsigned) next, ~0U, 0);
}

int local_child_spawn(const LocalSettings *s, const DeliveryInput *in, size_t n, int marker_dirfd,
                      Target **t) {
        int fds[2];
        if (n < 1 || n > LOCAL_BATCH_MAX)
                return -EINVAL;
        for (size_t i = 1; i < n; i++)
                if (t[i]->kind != t[0]->kind ||
                    ((t[0]->kind == TARGET_MBOX || t[0]->kind == TARGET_PIPE) && !same_mailbox(t[i], t[0])) ||
                    (t[0]->kind != TARGET_MBOX && t[0]->kind != TARGET_MAILDIR && t[0]->kind != TARGET_PIPE))
                        return -EINVAL;
        ChildGroups groups = {};
        for (size_t i = 0; i < n && geteuid() == 0; i++) {
                if (i > 0 && t[i]->uid == t[i - 1]->uid && t[i]->gid == t[i - 1]->gid &&
                    t[i]->virtual == t[i - 1]->virtual && (t[i]->virtual || streq(t[i]->user, t[i - 1]->user))) {
                        groups.list[i] = groups.list[i - 1];
                        groups.n[i] = groups.n[i - 1];
                        continue;
                }
                int r = recipient_groups(t[i], &groups.list[i], &groups.n[i]);
                if (r < 0)
                        groups.n[i] = r;   /* reported by the child, as a failed switch */
        }
        int r = pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
        pid_t pid = r < 0 ? -1 : fork();
        if (r >= 0 && pid < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
        }
        for (size_t i = 0; i < n && pid != 0; i++)
                if (i == 0 || groups.list[i] != groups.list[i - 1])
                        free(groups.list[i]);
        if (r < 0)
                return r;
        if (pid == 0) {
                DeliveryResult res[LOCAL_BATCH_MAX] = {};
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                signal(SIGXFSZ, SIG_IGN);
                signal(SIGPIPE, SIG_IGN);
                /* A stop of the service must not cut a mailbox write in half: finish, then exit. */
                signal(SIGTERM, SIG_IGN);
                signal(SIGINT, SIG_IGN);
                signal(SIGHUP, SIG_IGN);
                close_all_but(fds[1], marker_dirfd);
                child_deliver(s, in, n, marker_dirfd, t, &groups, res);
                /* One line per target, in order (the parent reads them as they come). */
                for (size_t i = 0; i < n; i++) {
                        char line[LOCAL_DIAG_MAX + LOCAL_DSN_MAX + 4];
                        for (char *c = res[i].diag; *c; c++)
                                if (*c == '\n')
                                        *c = ' ';   /* one line per target */
                        int k = snprintf(line, sizeof(line), "%s\t%s\n", res[i].dsn[0] ? res[i].dsn : "4.3.0",
                                         res[i].diag[0] ? res[i].diag : "delivery child produced no result");
                        if (k > 0)
                                (void) !write(fds[1], line, MIN((size_t) k, sizeof(line) - 1));
                }
                _exit(EXIT_SUCCESS);
        }
        close(fds[1]);
        t[0]->pid = pid;
        t[0]->result_fd = fds[0];
        return 0;
}

/* Sets t's result from one "<dsn>\t<diag>" line; false when the line is not one. */
static bool result_line(Target *t, char *line) {
        char *tab = strchr(line, '\t');
        if (!tab || tab - line >= LOCAL_DSN_MAX || (line[0] != '2' && line[0] != '4' && line[0] != '5'))
                return false;
        *tab = '\0';
        (void) target_set_result(t, line, "%s", tab + 1);
        return true;
}

bool local_child_read(Target *t) {
        char chunk[4096];

        if (t->result_fd < 0)
                return false;
        (void) fcntl(t->result_fd, F_SETFL, O_NONBLOCK);
        for (;;) {
                ssize_t k = read(t->result_fd, chunk, sizeof(chunk));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return true;
                if (k <= 0 || t->result.len > (size_t) LOCAL_BATCH_MAX * (LOCAL_DIAG_MAX + LOCAL_DSN_MAX + 4) ||
                    strbuf_append(&t->result, chunk, (size_t) k) < 0)
                        return false;
        }
}

void local_child_collect(Target **t, size_t n, int code, int status) {
        if (t[0]->result_fd >= 0) {
                (void) local_child_read(t[0]);
                t[0]->result_fd = safe_close(t[0]->result_fd);
        }
        char *p = t[0]->result.data;
        for (size_t i = 0; i < n; i++) {
                char *nl = p ? strchr(p, '\n') : NULL;
                if (nl) {
                        *nl = '\0';
                        bool ok = result_line(t[i], p);
                        p = nl + 1;
                        if (ok)
                                continue;
                }
                if (code == CLD_EXITED)
                        (void) target_set_result(t[i], "4.3.0", "delivery child exited with status %d and no result",
                                                 status);
                else
                        (void) target_set_result(t[i], "4.3.0", "delivery child killed by signal %d", status);
        }
}
