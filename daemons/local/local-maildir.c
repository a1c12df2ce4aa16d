/* local-maildir.c — writing messages into a Maildir, in a delivery child that already runs as
 * the recipient.
 *
 * <dir>/{tmp,new,cur} are created 0700 when missing (and, for virtual mailboxes, the directories
 * leading to <dir>: local_mkdir_parents(), also used for virtual mbox files). Each message is written in tmp/ under a
 * unique name "<sec>.M<usec>P<pid>Q<queue id>R<rcpt id>.<host>", fsynced, and renamed into new/;
 * then new/ is fsynced once for all the messages of the call (a batch of one recipient's
 * messages: qmgr hands them over together), and only then are they reported delivered. A
 * redelivery after a crash is recognised by the delivery marker (local-child.c), not by scanning
 * new/ and cur/ (which grow with the mailbox); the queue id and recipient id in the name are for
 * people reading the Maildir. */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "basic/io-util.h"
#include "local.h"

/* lstat() first: mkdir() of a directory that exists (the usual case) still takes the parent's
 * lock exclusively, and the children delivering in parallel would queue on it. */
static int mkdir_if_missing(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0) {
                if (errno != ENOENT || (mkdir(path, 0700) < 0 && errno != EEXIST))
                        return -errno;
                if (lstat(path, &st) < 0)
                        return -errno;
        }
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int local_mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        size_t n = strlen(p);
        while (n > 1 && p[n - 1] == '/')
                p[--n] = '\0';
        char *last = strrchr(p, '/');
        if (!last || last == p)
                return 0;
        *last = '\0';
        struct stat st;
        if (stat(p, &st) == 0)
                return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        for (char *s = p + 1;; s++) {
                if (*s != '/' && *s != '\0')
                        continue;
                char c = *s;
                *s = '\0';
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return -errno;
                if (stat(p, &st) < 0)
                        return -errno;
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                *s = c;
                if (!c)
                        return 0;
        }
}

/* Host name for file names: '/' and ':' are not allowed there (maildir convention escapes them). */
static void safe_hostname(const char *h, char *buf, size_t n) {
        size_t o = 0;
        for (; *h && o + 5 < n; h++) {
                if (*h == '/')
                        o += (size_t) snprintf(buf + o, n - o, "\\057");
                else if (*h == ':')
                        o += (size_t) snprintf(buf + o, n - o, "\\072");
                else
                        buf[o++] = *h;
        }
        buf[o] = '\0';
}

/* Writes in into dir's tmp/ and renames it into new/ (not yet durable there); false with res set
 * when it did not get there. */
static bool maildir_write_one(const DeliveryInput *in, const char *dir, const char *host,
                              DeliveryResult *res) {
        _cleanup_free_ char *tmp = NULL, *new = NULL;
        _cleanup_strbuf_ StrBuf head = STRBUF_INIT;
        struct timeval tv;
        int r;

        gettimeofday(&tv, NULL);
        if (asprintf(&tmp, "%stmp/%lld.M%ldP%dQ%sR%lld.%s", dir, (long long) tv.tv_sec, (long) tv.tv_usec,
                     (int) getpid(), in->queue_id, in->rcpt_id, host) < 0 ||
            asprintf(&new, "%snew/%lld.M%ldP%dQ%sR%lld.%s", dir, (long long) tv.tv_sec, (long) tv.tv_usec,
                     (int) getpid(), in->queue_id, in->rcpt_id, host) < 0 ||
            local_format_headers(in, &head) < 0) {
                delivery_result_set(res, "4.3.0", "out of memory");
                return false;
        }
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                delivery_result_set(res, local_errno_dsn(r), "cannot create maildir file %s: %s", tmp, strerror(-r));
                return false;
        }
        r = loop_write(fd, head.data, head.len);
        if (r == 0)
                r = loop_write(fd, in->content, in->content_len);
        if (r == 0 && in->content_len > 0 && in->content[in->content_len - 1] != '\n')
                r = loop_write(fd, "\n", 1);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, new) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                delivery_result_set(res, local_errno_dsn(r), "cannot update maildir %s: error writing message: %s",
                                    dir, strerror(-r));
                return false;
        }
        return true;
}

void local_maildir_deliver(const LocalSettings *s, const DeliveryInput *in, size_t n, const char *dir,
                           DeliveryResult *res) {
        _cleanup_free_ char *sub = NULL, *newdir = NULL;
        bool moved[LOCAL_BATCH_MAX] = {};
        size_t n_moved = 0;
        char host[256];
        int r;

        assert(n <= LOCAL_BATCH_MAX);
        /* dir ends in '/'. */
        const char *subs[] = { "", "tmp", "new", "cur" };
        for (size_t i = 0; i < ELEMENTSOF(subs); i++) {
                free(sub);
                if (asprintf(&sub, "%s%s", dir, subs[i]) < 0) {
                        sub = NULL;
                        r = -ENOMEM;
                } else
                        r = mkdir_if_missing(sub);
                if (r < 0) {
                        for (size_t k = 0; k < n; k++)
                                delivery_result_set(&res[k], local_errno_dsn(r), "cannot create maildir directory %s: %s",
                                                    strna(sub), strerror(-r));
                        return;
                }
        }
        if (asprintf(&newdir, "%snew", dir) < 0) {
                for (size_t k = 0; k < n; k++)
                        delivery_result_set(&res[k], "4.3.0", "out of memory");
                return;
        }

        safe_hostname(in[0].hostname, host, sizeof(host));
        for (size_t k = 0; k < n; k++)
                if ((moved[k] = maildir_write_one(&in[k], dir, host, &res[k])))
                        n_moved++;
        if (n_moved == 0)
                return;

        /* One directory sync makes every rename above durable. */
        _cleanup_close_ int dfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = dfd < 0 || fsync(dfd) < 0 ? -errno : 0;
        for (size_t k = 0; k < n; k++) {
                if (!moved[k])
                        continue;
                if (r < 0)
                        /* The file is in new/ but maybe not durable: the retry writes it again. */
                        delivery_result_set(&res[k], local_errno_dsn(r), "cannot sync maildir %s: %s", newdir,
                                            strerror(-r));
                else
                        delivery_result_set(&res[k], "2.0.0", "delivered to maildir");
        }
}
