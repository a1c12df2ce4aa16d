/* local-child.c — the forked delivery child of postern-local.
 *
 * local_child_spawn() forks; the child
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
 *      file (initgroups, setresgid, setresuid(-1, uid, -1)): files are opened and created with
 *      the recipient's rights, but the real and saved uid stay root, so the recipient cannot
 *      signal, stop or trace the process that holds the marker lock (kill(2) needs a matching
 *      real or saved uid) — the way Postfix's local(8) changes only its effective uid. A
 *      "|command" runs in a grandchild that gives up root completely (local-command.c), and only
 *      that process is the recipient's to signal; this child waits for it with a deadline.
 *      Under systemd the command runs as a transient unit instead (local-transient.c): before
 *      the switch, while its effective uid is still root, the child connects to the service
 *      manager, which trusts the uid a connection was made with;
 *   4. applies mailbox_size_limit as RLIMIT_FSIZE, writes the mailbox, records it in the marker
 *      after it was fsynced, and writes one line "<dsn>\t<diag>\n" to the result pipe.
 * The parent reaps it from sd-event (sd_event_add_child), kills it when it is still running after
 * daemon_timeout (local.c), and reads the pipe with local_child_collect(). The child closes every
 * descriptor it does not need right after the fork, the journal socket included: it must not log
 * (its result line is what gets logged). */
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
        else if (t->kind == TARGET_FILE)
                delivery_result_set(res, "2.0.0", "delivered to file: %s", t->path);
        else
                delivery_result_set(res, "2.0.0", "%s",
                                    t->kind == TARGET_MAILDIR ? "delivered to maildir" : "delivered to mailbox");
}

/* Takes the recipient's groups and effective uid; real and saved uid stay root (step 3 above). */
static int switch_to_recipient(const Target *t, gid_t extra_gid) {
        if (geteuid() != 0)
                /* Not root (a test run by hand): only the same user can be served. */
                return geteuid() == t->uid ? 0 : -EPERM;
        if (initgroups(t->user, t->gid) < 0)
                return -errno;
        if (extra_gid != (gid_t) -1) {
                gid_t groups[NGROUPS_MAX + 1];
                int n = getgroups(NGROUPS_MAX, groups);
                if (n < 0)
                        return -errno;
                groups[n++] = extra_gid;
                if (setgroups((size_t) n, groups) < 0)
                        return -errno;
        }
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

static void child_deliver(const LocalSettings *s, const DeliveryInput *in, int marker_dirfd,
                          const Target *t, DeliveryResult *res) {
        _cleanup_close_ int mfd = -1;
        bool may_dotlock = true;
        gid_t extra_gid = (gid_t) -1;
        int r;

        const char *problem = NULL;
        mfd = local_marker_open(marker_dirfd, in->queue_id, in->rcpt_id, &problem);
        /* The user's process has no business with the marker directory. */
        safe_close(marker_dirfd);
        if (mfd < 0) {
                /* Without a trustworthy marker a retry could deliver twice: keep the mail queued. */
                delivery_result_set(res, "4.3.0", "%s (%s/%s/%s.%lld)", problem ? problem : strerror(-mfd),
                                    s->queue_directory, LOCAL_MARKER_DIR, in->queue_id, in->rcpt_id);
                return;
        }
        r = marker_lock(s, mfd);
        if (r < 0) {
                delivery_result_set(res, "4.3.0", "%s (%s/%s/%s.%lld)",
                                    r == -EWOULDBLOCK ? "delivery marker is locked: an earlier delivery of this "
                                                        "recipient is still in progress" :
                                                        "cannot lock delivery marker",
                                    s->queue_directory, LOCAL_MARKER_DIR, in->queue_id, in->rcpt_id);
                return;
        }
        if (local_marker_has(mfd, t->path)) {
                success_result(t, res);
                return;
        }

        if (t->kind == TARGET_MBOX)
                prepare_spool(s, t, &may_dotlock, &extra_gid);

        /* The service manager trusts the uid a connection was made with: connect as root. */
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        if (t->kind == TARGET_COMMAND && local_transient_available()) {
                _cleanup_free_ char *why = NULL;
                r = local_transient_connect(&bus, &why);
                if (r < 0) {
                        delivery_result_set(res, "4.3.0", "cannot run command: %s", why ? why : strerror(-r));
                        return;
                }
        }

        r = switch_to_recipient(t, extra_gid);
        if (r < 0) {
                delivery_result_set(res, "4.3.0", "cannot switch to user %s (uid %u): %s", t->user,
                                    (unsigned) t->uid, strerror(-r));
                return;
        }
        if (s->mailbox_size_limit > 0) {
                /* Soft limit only: a "|command" may raise it again (the limit is for mailboxes). */
                struct rlimit rl = { (rlim_t) s->mailbox_size_limit, RLIM_INFINITY };
                (void) setrlimit(RLIMIT_FSIZE, &rl);
        }

        switch (t->kind) {
        case TARGET_MAILDIR:
                local_maildir_deliver(s, in, t->path, res);
                break;
        case TARGET_COMMAND:
                local_command_deliver(s, in, t->path + 1, bus, res);
                break;
        case TARGET_FILE:
                if (t->path[strlen(t->path) - 1] == '/')
                        local_maildir_deliver(s, in, t->path, res);
                else
                        local_mbox_deliver(s, in, t->path, false, false, res);
                if (res->dsn[0] == '2')
                        success_result(t, res);
                break;
        default:
                local_mbox_deliver(s, in, t->path, may_dotlock, true, res);
        }

        if (res->dsn[0] == '2')
                (void) local_marker_add(mfd, t->path);
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

int local_child_spawn(const LocalSettings *s, const DeliveryInput *in, int marker_dirfd, Target *t) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(fds[0]);
                close(fds[1]);
                return r;
        }
        if (pid == 0) {
                DeliveryResult res = {};
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
                child_deliver(s, in, marker_dirfd, t, &res);
                char line[LOCAL_DIAG_MAX + LOCAL_DSN_MAX + 4];
                int n = snprintf(line, sizeof(line), "%s\t%s\n", res.dsn[0] ? res.dsn : "4.3.0",
                                 res.diag[0] ? res.diag : "delivery child produced no result");
                if (n > 0)
                        (void) !write(fds[1], line, MIN((size_t) n, sizeof(line) - 1));
                _exit(EXIT_SUCCESS);
        }
        close(fds[1]);
        t->pid = pid;
        t->result_fd = fds[0];
        return 0;
}

void local_child_collect(Target *t, int code, int status) {
        char buf[LOCAL_DIAG_MAX + LOCAL_DSN_MAX + 4];
        size_t have = 0;

        if (t->result_fd >= 0) {
                (void) fcntl(t->result_fd, F_SETFL, O_NONBLOCK);
                for (;;) {
                        ssize_t n = read(t->result_fd, buf + have, sizeof(buf) - 1 - have);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        have += (size_t) n;
                        if (have >= sizeof(buf) - 1)
                                break;
                }
                t->result_fd = safe_close(t->result_fd);
        }
        buf[have] = '\0';
        char *tab = strchr(buf, '\t');
        char *nl = strchr(buf, '\n');
        if (tab && nl && tab < nl && tab - buf < LOCAL_DSN_MAX && (buf[0] == '2' || buf[0] == '4' || buf[0] == '5')) {
                *tab = '\0';
                *nl = '\0';
                (void) target_set_result(t, buf, "%s", tab + 1);
                return;
        }
        if (code == CLD_EXITED)
                (void) target_set_result(t, "4.3.0", "delivery child exited with status %d and no result",
                                         status);
        else
                (void) target_set_result(t, "4.3.0", "delivery child killed by signal %d", status);
}
