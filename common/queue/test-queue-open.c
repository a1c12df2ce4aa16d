/* test-queue-open.c — unit tests for how queue_open() treats the file it is given: root opens a
 * queue.db in a directory that user postern owns, so a symbolic link, a second hard link, a
 * non-file or a file of another owner is refused with a reason (queue_open_error()), nothing is
 * written where a link points (also for SQLite's -wal/-shm), and a queue directory reached
 * through a symbolic link still works. (The rest of the queue module: test-queue.c.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/tests.h"
#include "queue/queue.h"

#define NOBODY 65534

static char dir[64];

static void dir_clean(const char *d) {
        static const char *const names[] = { "queue.db", "queue.db-wal", "queue.db-shm" };
        char p[128];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(p, sizeof p, "%s/%s", d, names[i]);
                (void) unlink(p);
        }
}

static void db_path(char *buf, size_t size) {
        snprintf(buf, size, "%s/queue.db", dir);
}

/* queue.db as a symbolic link, with a second hard link, or owned by someone other than the
 * directory's owner is refused with a reason, and nothing is written where a link points; a
 * -wal or -shm link is never followed either (SQLite's own O_NOFOLLOW, checked here so an update
 * of SQLite that changed it would be noticed). */
static void test_refuse_untrusted_files(void) {
        char p[128], target[128], other[160], wal[160];
        Queue *q = NULL;
        struct stat st;

        dir_clean(dir);
        db_path(p, sizeof p);
        snprintf(target, sizeof target, "%s/elsewhere.db", dir);
        snprintf(other, sizeof other, "%s-wal", target);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);   /* a valid database to point at */
        q = queue_close(q);
        CHECK_INT(rename(p, target), 0);
        dir_clean(dir);
        CHECK_INT(symlink(target, p), 0);
        for (int flags = 0; flags < 3; flags++) {
                CHECK_INT(queue_open(dir, flags == 2 ? QUEUE_OPEN_READONLY : flags ? QUEUE_OPEN_CREATE : 0, &q),
                          -ELOOP);
                CHECK(!q);
                CHECK(strstr(queue_open_error(), "symbolic link"));
        }
        CHECK(lstat(other, &st) < 0 && errno == ENOENT);   /* SQLite never opened the target */
        CHECK_INT(unlink(p), 0);

        /* A second hard link. */
        CHECK_INT(link(target, p), 0);
        CHECK_INT(queue_open(dir, 0, &q), -EPERM);
        CHECK(strstr(queue_open_error(), "hard links"));
        CHECK_INT(unlink(target), 0);

        /* Not a regular file. */
        CHECK_INT(rename(p, target), 0);
        CHECK_INT(mkfifo(p, 0600), 0);
        CHECK_INT(queue_open(dir, 0, &q), -EPERM);
        CHECK(strstr(queue_open_error(), "not a regular file"));
        CHECK_INT(unlink(p), 0);
        CHECK_INT(rename(target, p), 0);

        /* -wal and -shm links are not followed: the open (or the first read) fails, the target
         * stays untouched. */
        static const char *const suffixes[] = { "-wal", "-shm" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                snprintf(wal, sizeof wal, "%s%s", p, suffixes[i]);
                (void) unlink(wal);
                int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                CHECK(fd >= 0);
                CHECK_INT(write(fd, "keep", 4), 4);
                close(fd);
                CHECK_INT(symlink(target, wal), 0);
                if (queue_open(dir, 0, &q) == 0) {
                        QueueMessage m;
                        CHECK(queue_load_message(q, "NOSUCHID", &m, NULL, NULL) < 0);
                        q = queue_close(q);
                }
                CHECK_INT(stat(target, &st), 0);
                CHECK_INT(st.st_size, 4);
                CHECK_INT(unlink(wal), 0);
        }
        CHECK_INT(unlink(target), 0);

        /* A queue directory reached through a symbolic link (an admin moved the spool) is fine:
         * only queue.db itself must not be a link. */
        char linkdir[96];
        snprintf(linkdir, sizeof linkdir, "%s.link", dir);
        (void) unlink(linkdir);
        CHECK_INT(symlink(dir, linkdir), 0);
        CHECK_INT(queue_open(linkdir, 0, &q), 0);
        q = queue_close(q);
        CHECK_INT(queue_open(linkdir, QUEUE_OPEN_READONLY, &q), 0);
        q = queue_close(q);
        CHECK_INT(unlink(linkdir), 0);

        /* Owned by another user than the directory (root only: chown). */
        if (geteuid() == 0) {
                CHECK_INT(chown(p, NOBODY, NOBODY), 0);
                CHECK_INT(queue_open(dir, 0, &q), -EPERM);
                CHECK(strstr(queue_open_error(), "not by the queue directory's owner"));
                CHECK_INT(chown(p, 0, 0), 0);
        }
        CHECK_INT(queue_open(dir, 0, &q), 0);
        CHECK(!queue_open_error());
        q = queue_close(q);
        dir_clean(dir);
}

int main(void) {
        const char *tmp = getenv("TMPDIR");

        snprintf(dir, sizeof dir, "%s/test-queue-open-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
        CHECK(mkdtemp(dir));
        CHECK_INT(chmod(dir, 0755), 0);
        test_refuse_untrusted_files();
        dir_clean(dir);
        CHECK_INT(rmdir(dir), 0);
        return 0;
}
