/* socket-util.h — socket addresses and non-blocking connects for the clients of other services
 * (policy servers, milters): a unix path, or a numeric IPv4/IPv6 host (or "localhost") and port.
 * Host names are not resolved here: a lookup would block an event loop. */
#pragma once

#include <stdint.h>
#include <sys/socket.h>

/* An AF_UNIX address; -EINVAL for an empty or too long path. */
int sockaddr_from_path(const char *path, struct sockaddr_storage *ret, socklen_t *ret_len);
/* An AF_INET/AF_INET6 address from a numeric host or "localhost" (127.0.0.1); -EADDRNOTAVAIL for
 * anything else (a name). */
int sockaddr_from_host(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len);
/* A non-blocking, close-on-exec stream socket connecting to sa (TCP_NODELAY for TCP); the
 * connect usually completes later (EPOLLOUT, then SO_ERROR). Returns 0 with *ret_fd, or -errno. */
int socket_connect_nonblock(const struct sockaddr_storage *sa, socklen_t len, int *ret_fd);
