/* io-util.h — blocking I/O helpers for files, pipes and sockets. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes to fd, retrying on EINTR and short writes. On a socket it uses
 * MSG_NOSIGNAL, so a closed peer is -EPIPE rather than SIGPIPE. Returns 0 or a negative errno
 * (-EAGAIN when a send timeout or a non-blocking fd stopped it). */
int loop_write(int fd, const void *buf, size_t n);

/* Replaces path with the n bytes at data: written to a temporary file next to it with mode (and,
 * when uid is not (uid_t) -1, that owner), synced, then renamed over path, so readers see the old
 * file or the new one, never a part. Returns 0 or a negative errno; nothing is left on failure. */
int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode, uid_t uid, gid_t gid);
