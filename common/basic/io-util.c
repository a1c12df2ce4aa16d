/* io-util.c — blocking I/O helpers. See io-util.h. */
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io-util.h"

int loop_write(int fd, const void *buf, size_t n) {
        const char *p = buf;
        bool is_socket = true;
        while (n > 0) {
                ssize_t k = is_socket ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
                if (k < 0) {
                        if (errno == ENOTSOCK && is_socket) {
                                is_socket = false;
                                continue;
                        }
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}
