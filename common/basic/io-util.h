/* io-util.h — blocking I/O helpers for files, pipes and sockets. */
#pragma once

#include <stddef.h>

/* Writes all n bytes to fd, retrying on EINTR and short writes. On a socket it uses
 * MSG_NOSIGNAL, so a closed peer is -EPIPE rather than SIGPIPE. Returns 0 or a negative errno
 * (-EAGAIN when a send timeout or a non-blocking fd stopped it). */
int loop_write(int fd, const void *buf, size_t n);
