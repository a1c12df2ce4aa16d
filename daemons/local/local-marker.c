/* local-marker.c — the per-recipient delivery markers that make local delivery exactly-once.
 *
 * <queue_directory>/local-delivered/<queue id>.<rcpt id> lists, one per line, the mailboxes,
 * files and commands ("|cmd") a recipient was delivered to and the addresses it was forwarded to
 * ("forward:<address>"). The directory sits in the postern-owned queue directory, so root never
 * takes it on trust: local_marker_dir_open() uses it only when it is a real directory (no
 * symlink) owned by root with mode 0700, and otherwise moves it aside and makes a new one;
 * local_marker_open() uses a marker only when it is a regular file owned by root with exactly
 * one link. Both are called as root; local_marker_open() runs in delivery children too, which
 * must not log, so it returns the problem as text.
 *
 * A line is made durable after the mailbox write it records was synced: one fdatasync() for one
 * marker; a child that delivered a batch into one mbox appends to each recipient's marker and
 * then makes them all durable with one syncfs() of the marker directory's file system — one
 * journal commit instead of one per marker. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "local.h"
#include "log/log.h"

/* Why a marker directory opened as fd cannot be trusted, or NULL. */
static const char *marker_dir_problem(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return "cannot be examined";
        if (!S_ISDIR(st.st_mode))
                return "is not a directory";
        if (st.st_uid != geteuid())
                return "is not owned by root";
        if ((st.st_mode & 07777) != 0700)
                return "does not have mode 0700";
        return NULL;
}

int local_marker_dir_open(const char *queue_directory) {
        _cleanup_close_ int qfd = open(queue_directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (qfd < 0)
                return log_warning_errno(-errno, "Cannot open %s, delivery markers unavailable: %m", queue_directory);

        for (int attempt = 0; attempt < 2; attempt++) {
                const char *problem;
                if (mkdirat(qfd, LOCAL_MARKER_DIR, 0700) < 0 && errno != EEXIST)
                        return log_error_errno(-errno, "Cannot create %s/%s: %m", queue_directory, LOCAL_MARKER_DIR);
                int fd = openat(qfd, LOCAL_MARKER_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0) {
                        problem = marker_dir_problem(fd);
                        if (!problem)
                                return fd;
                        safe_close(fd);
                } else if (errno == ELOOP || errno == ENOTDIR)
                        problem = "is a symbolic link or not a directory";
                else
                        return log_error_errno(-errno, "Cannot open %s/%s: %m", queue_directory, LOCAL_MARKER_DIR);

                /* Someone else made it (the queue directory belongs to postern): its markers could
                 * make us skip deliveries or append to files of their choice. Keep it for the
                 * admin to look at, and start a new one. */
                char aside[64];
                snprintf(aside, sizeof(aside), "%s.untrusted-%llu", LOCAL_MARKER_DIR,
                         (unsigned long long) now_usec(CLOCK_REALTIME));
                if (renameat(qfd, LOCAL_MARKER_DIR, qfd, aside) < 0)
                        return log_error_errno(-errno, "%s/%s %s and cannot be moved aside: %m",
                                               queue_directory, LOCAL_MARKER_DIR, problem);
                log_error("%s/%s %s; refusing to use it: moved it to %s and creating a new one",
                          queue_directory, LOCAL_MARKER_DIR, problem, aside);
        }
        return log_error_errno(-EPERM, "Cannot get a trustworthy %s/%s; deliveries are deferred",
                               queue_directory, LOCAL_MARKER_DIR);
}

int local_marker_open(int dirfd, const char *queue_id, long long rcpt_id, const char **ret_problem) {
        char name[QUEUE_ID_MAX + 32];
        struct stat st;

        *ret_problem = NULL;
        if (dirfd < 0) {
                *ret_problem = "delivery marker directory unavailable";
                return -EBADF;
        }
        snprintf(name, sizeof(name), "%s.%lld", queue_id, rcpt_id);
        int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
        if (fd < 0) {
                int r = -errno;
                *ret_problem = r == -ELOOP ? "delivery marker is a symbolic link" : "cannot open delivery marker";
                return r;
        }
        *ret_problem = fstat(fd, &st) < 0 ? "cannot examine delivery marker" :
                       !S_ISREG(st.st_mode) ? "delivery marker is not a regular file" :
                       st.st_uid != geteuid() ? "delivery marker is not owned by root" :
                       st.st_nlink != 1 ? "delivery marker has more than one hard link" : NULL;
        if (*ret_problem) {
                safe_close(fd);
                return -EPERM;
        }
        return fd;
}

bool local_marker_has(int fd, const char *line) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        char buf[4096];
        ssize_t n;
        off_t off = 0;

        while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
                if (strbuf_append(&b, buf, (size_t) n) < 0)
                        return false;
                off += n;
        }
        size_t l = strlen(line);
        for (const char *p = b.data; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t ll = nl ? (size_t) (nl - p) : strlen(p);
                if (ll == l && memcmp(p, line, l) == 0)
                        return true;
                p = nl ? nl + 1 : p + ll;
        }
        return false;
}

int local_marker_append(int fd, const char *line) {
        _cleanup_free_ char *l = NULL;
        if (asprintf(&l, "%s\n", line) < 0)
                return -ENOMEM;
        ssize_t n = write(fd, l, strlen(l));
        if (n < 0)
                return -errno;
        if ((size_t) n != strlen(l))
                return -EIO;
        return 0;
}

int local_marker_add(int fd, const char *line) {
        int r = local_marker_append(fd, line);
        if (r < 0)
                return r;
        return fdatasync(fd) < 0 ? -errno : 0;
}

int local_marker_sync(const int *fds, size_t n) {
        if (n == 0)
                return 0;
        if (n == 1)
                return fdatasync(fds[0]) < 0 ? -errno : 0;
        /* All markers are in one directory, so on one file system. */
        return syncfs(fds[0]) < 0 ? -errno : 0;
}
