/* local-userfile.c — reads a .forward or :include: file for postern-local's resolver, which runs
 * as root in the event loop: with the file-system rights of the user the file is read for
 * (setfsuid/setfsgid, which also drop root's file capabilities for the duration; per thread, and
 * restored before returning), so root's rights never reach a file the user could not read
 * (a hard link to a root-only file, a directory the user cannot search). The path is looked at
 * first and only a regular file is opened (O_NONBLOCK, O_NOCTTY): a FIFO or device named as a
 * .forward is never opened, so nothing blocks or has side effects; the opened file must be the
 * one looked at. Size bounded by LOCAL_USER_FILE_MAX. Logs nothing: callers decide. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "local-expander.h"

/* Switches the file-system ids to uid/gid (root: no change); false when that did not happen. */
static bool fs_rights_enter(uid_t uid, gid_t gid) {
        if (uid == 0 || geteuid() != 0)
                return true;   /* as root; or not root (a test run by hand): our own rights */
        (void) setfsgid(gid);
        (void) setfsuid(uid);
        return (uid_t) setfsuid((uid_t) -1) == uid && (gid_t) setfsgid((gid_t) -1) == gid;
}

static void fs_rights_leave(void) {
        if (geteuid() != 0)
                return;
        (void) setfsuid(0);
        (void) setfsgid(0);
}

static int read_as(const char *path, bool follow, char **ret_text, struct stat *ret_st) {
        struct stat st, fst;
        if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
        if (fd < 0)
                return errno == ELOOP ? -EBADF : -errno;
        if (fstat(fd, &fst) < 0)
                return -errno;
        if (!S_ISREG(fst.st_mode) || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino)
                return -EBADF;   /* replaced between the look and the open */
        if (fst.st_size > LOCAL_USER_FILE_MAX)
                return -EFBIG;
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        b.limit = LOCAL_USER_FILE_MAX;
        for (;;) {
                char chunk[8192];
                ssize_t k = read(fd, chunk, sizeof(chunk));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                int r = strbuf_append(&b, chunk, (size_t) k);
                if (r < 0)
                        return r == -EMSGSIZE ? -EFBIG : r;
        }
        if (!b.data && strbuf_puts(&b, "") < 0)
                return -ENOMEM;
        *ret_text = strbuf_steal(&b);
        if (!*ret_text)
                return -ENOMEM;
        *ret_st = fst;
        return 0;
}

int local_user_file_read(const char *path, uid_t uid, gid_t gid, bool follow, char **ret_text, struct stat *ret_st) {
        if (!fs_rights_enter(uid, gid)) {
                fs_rights_leave();
                return -EPERM;
        }
        int r = read_as(path, follow, ret_text, ret_st);
        fs_rights_leave();
        return r;
}
