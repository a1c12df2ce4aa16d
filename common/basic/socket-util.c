/* socket-util.c — socket addresses and non-blocking connects (see socket-util.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "socket-util.h"

int sockaddr_from_path(const char *path, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct sockaddr_un *un = (struct sockaddr_un *) ret;
        if (!path || !*path || strlen(path) >= sizeof(un->sun_path))
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        *ret_len = sizeof(*un);
        return 0;
}

int sockaddr_from_host(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct sockaddr_in *in4 = (struct sockaddr_in *) ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
        memset(ret, 0, sizeof(*ret));
        if (streq(host, "localhost") || inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                if (streq(host, "localhost"))
                        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                *ret_len = sizeof(*in4);
                return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                *ret_len = sizeof(*in6);
                return 0;
        }
        return -EADDRNOTAVAIL;
}

int socket_connect_nonblock(const struct sockaddr_storage *sa, socklen_t len, int *ret_fd) {
        int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (sa->ss_family != AF_UNIX)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
        if (connect(fd, (const struct sockaddr *) sa, len) < 0 && errno != EINPROGRESS) {
                int e = -errno;
                close(fd);
                return e;
        }
        *ret_fd = fd;
        return 0;
}
