/* ipc-client.c — the client side of the attribute protocol.
 *
 * ipc_call()/ipc_send()/ipc_recv() block (with a deadline) and suit tools and tests. When the
 * server closes before ipc_call() has sent all of its request, the record it answered with (if
 * any: status=error reason=...) is returned as the reply.
 * ipc_recv() never reads past the end of the record it returns (it peeks, then consumes exactly
 * the record's bytes), so several records can be exchanged on one connection.
 * ipc_client_call_async() does one request/reply inside an sd-event loop without blocking.
 * ipc_send_oneway() is for fire-and-forget wake-ups: non-blocking connect, one write attempt,
 * close; it never waits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "ipc-internal.h"

#define IPC_DEFAULT_TIMEOUT_USEC (30ULL * USEC_PER_SEC)

static int ipc_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *ret_len) {
        size_t l;

        if (!path || (l = strlen(path)) == 0 || l >= sizeof(sa->sun_path))
                return -EINVAL;
        memset(sa, 0, sizeof *sa);
        sa->sun_family = AF_UNIX;
        memcpy(sa->sun_path, path, l);
        *ret_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
        return 0;
}

/* Starts a non-blocking connect (see ipc-internal.h). */
int ipc_connect_nonblock(const char *path) {
        struct sockaddr_un sa;
        socklen_t salen;
        int r = ipc_sockaddr(path, &sa, &salen);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, salen) < 0 && errno != EINPROGRESS)
                return -errno;
        return TAKE_FD(fd);
}

static int ipc_wait(int fd, short events, usec_t deadline) {
        for (;;) {
                usec_t n = now_usec(CLOCK_MONOTONIC);
                if (n >= deadline)
                        return -ETIMEDOUT;
                usec_t left = deadline - n;
                int ms = (int) MIN((left + 999) / 1000, (usec_t) INT32_MAX);
                struct pollfd pfd = { .fd = fd, .events = events };
                int r = poll(&pfd, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return pfd.revents;
        }
}

static int ipc_connect_blocking(const char *path, usec_t deadline) {
        for (;;) {
                int fd = ipc_connect_nonblock(path);
                if (fd != -EAGAIN)
                        return fd;
                if (now_usec(CLOCK_MONOTONIC) + IPC_CONNECT_RETRY_USEC >= deadline)
                        return -ETIMEDOUT;
                struct timespec ts = { 0, (long) (IPC_CONNECT_RETRY_USEC * 1000) };
                nanosleep(&ts, NULL);
        }
}

static ssize_t ipc_write_some(int fd, const char *p, size_t n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == ENOTSOCK)
                k = write(fd, p, n);
        return k;
}

static int ipc_send_deadline(int fd, const IpcRecord *r, usec_t deadline) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int ret = ipc_record_format(r, &b);
        if (ret < 0)
                return ret;

        size_t off = 0;
        while (off < b.len) {
                ssize_t k = ipc_write_some(fd, b.data + off, b.len - off);
                if (k >= 0) {
                        off += (size_t) k;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                int w = ipc_wait(fd, POLLOUT, deadline);
                if (w < 0)
                        return w;
        }
        return 0;
}

static int ipc_recv_deadline(int fd, IpcRecord *ret, usec_t deadline) {
        _cleanup_(ipc_parser_done) IpcParser p = IPC_PARSER_INIT;
        char buf[16384];
        bool peek = true;

        for (;;) {
                ssize_t k;
                if (peek) {
                        k = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
                        if (k < 0 && errno == ENOTSOCK)
                                peek = false;
                }
                if (!peek) {
                        /* not a socket: one byte at a time, waiting first so a blocking fd
                         * still honours the deadline */
                        int w = ipc_wait(fd, POLLIN, deadline);
                        if (w < 0)
                                return w;
                        k = read(fd, buf, 1);
                }
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        int w = ipc_wait(fd, POLLIN, deadline);
                        if (w < 0)
                                return w;
                        continue;
                }
                if (k == 0)
                        return -ECONNRESET;   /* EOF before a complete record */

                IpcRecord rec = IPC_RECORD_INIT;
                size_t used = 0;
                int r = ipc_parser_feed(&p, buf, (size_t) k, &used, &rec);
                if (peek && used > 0) {
                        /* consume exactly what the parser used */
                        size_t done = 0;
                        while (done < used) {
                                ssize_t d = recv(fd, buf, used - done, MSG_DONTWAIT);
                                if (d < 0 && errno == EINTR)
                                        continue;
                                if (d <= 0) {
                                        ipc_record_done(&rec);
                                        return d < 0 ? -errno : -ECONNRESET;
                                }
                                done += (size_t) d;
                        }
                }
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret = rec;
                        return 0;
                }
        }
}

static usec_t ipc_deadline(usec_t timeout_usec) {
        return now_usec(CLOCK_MONOTONIC) + (timeout_usec ? timeout_usec : IPC_DEFAULT_TIMEOUT_USEC);
}

/* Writes one record to a connected fd, waiting up to 30 s for the socket to take it. */
int ipc_send(int fd, const IpcRecord *r) {
        return ipc_send_deadline(fd, r, ipc_deadline(0));
}

/* Reads one record from a connected fd; timeout_usec 0 = 30 s. -ECONNRESET on EOF. */
int ipc_recv(int fd, IpcRecord *ret, usec_t timeout_usec) {
        return ipc_recv_deadline(fd, ret, ipc_deadline(timeout_usec));
}

/* Connects, sends req and reads one reply, all within timeout_usec (0 = 30 s). */
int ipc_call(const char *path, const IpcRecord *req, IpcRecord *ret_reply, usec_t timeout_usec) {
        usec_t deadline = ipc_deadline(timeout_usec);
        _cleanup_close_ int fd = ipc_connect_blocking(path, deadline);
        if (fd < 0)
                return fd;
        int r = ipc_send_deadline(fd, req, deadline);
        if (r == -EPIPE || r == -ECONNRESET) {
                /* a server that refused the connection (too many connections) or the request
                 * (too large) may have said why before it closed: that answer is the reply */
                IpcRecord reply = IPC_RECORD_INIT;
                if (ipc_recv_deadline(fd, &reply, deadline) < 0)
                        return r;
                *ret_reply = reply;
                return 0;
        }
        if (r < 0)
                return r;
        return ipc_recv_deadline(fd, ret_reply, deadline);
}

/* Fire and forget: never blocks. -EAGAIN when the listener or the socket buffer is full. */
int ipc_send_oneway(const char *path, const IpcRecord *req) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int r = ipc_record_format(req, &b);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = ipc_connect_nonblock(path);
        if (fd < 0)
                return fd;
        ssize_t k;
        do
                k = send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        if ((size_t) k < b.len)
                return -EAGAIN;
        return 0;
}

/* --- asynchronous client --- */

static void ipc_call_free(IpcCall *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->retry);
        safe_close(c->fd);
        strbuf_done(&c->out);
        ipc_parser_done(&c->parser);
        sd_event_unref(c->event);
        free(c->path);
        free(c);
}

/* Runs the handler once, then frees the call. */
static void ipc_call_finish(IpcCall *c, int error, const IpcRecord *reply) {
        sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(c->retry, SD_EVENT_OFF);
        c->dispatching = true;
        if (c->handler)
                c->handler(error, reply, c->userdata);
        ipc_call_free(c);
}

static int ipc_call_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IpcCall *c = userdata;

        if (c->out.len > 0) {
                ssize_t k = ipc_write_some(fd, c->out.data, c->out.len);
                if (k < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ENOTCONN) {
                                ipc_call_finish(c, -errno, NULL);
                                return 0;
                        }
                } else
                        strbuf_consume(&c->out, (size_t) k);
                if (c->out.len == 0)
                        sd_event_source_set_io_events(c->io, EPOLLIN);
                if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                        return 0;
        }

        /* read the reply; anything after it is ignored */
        for (int rounds = 0; rounds < 16; rounds++) {
                char buf[16384];
                ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        ipc_call_finish(c, -errno, NULL);
                        return 0;
                }
                if (k == 0) {
                        ipc_call_finish(c, -ECONNRESET, NULL);
                        return 0;
                }
                _cleanup_ipc_record_ IpcRecord rec = IPC_RECORD_INIT;
                int r = ipc_parser_feed(&c->parser, buf, (size_t) k, NULL, &rec);
                if (r < 0) {
                        ipc_call_finish(c, r, NULL);
                        return 0;
                }
                if (r > 0) {
                        ipc_call_finish(c, 0, &rec);
                        return 0;
                }
        }
        return 0;
}

static int ipc_call_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        ipc_call_finish(userdata, -ETIMEDOUT, NULL);
        return 0;
}

static int ipc_call_start_io(IpcCall *c) {
        return sd_event_add_io(c->event, &c->io, c->fd, EPOLLIN | EPOLLOUT, ipc_call_io, c);
}

static int ipc_call_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        IpcCall *c = userdata;
        int fd = ipc_connect_nonblock(c->path);

        if (fd == -EAGAIN) {
                if (c->deadline && usec + IPC_CONNECT_RETRY_USEC >= c->deadline) {
                        ipc_call_finish(c, -ETIMEDOUT, NULL);
                        return 0;
                }
                sd_event_source_set_time(s, usec + IPC_CONNECT_RETRY_USEC);
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        if (fd < 0) {
                ipc_call_finish(c, fd, NULL);
                return 0;
        }
        c->fd = fd;
        int r = ipc_call_start_io(c);
        if (r < 0)
                ipc_call_finish(c, r, NULL);
        return 0;
}

/* Starts an asynchronous call; see ipc.h. When this returns <0 the handler is never called. */
int ipc_client_call_async(sd_event *e, const char *path, const IpcRecord *req, usec_t timeout_usec,
                          IpcReplyHandler handler, void *userdata, IpcCall **ret) {
        if (!e || !path || !req)
                return -EINVAL;

        IpcCall *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->event = sd_event_ref(e);
        c->handler = handler;
        c->userdata = userdata;
        c->out.limit = IPC_RECORD_MAX + 1;

        int r = ipc_record_format(req, &c->out);
        if (r < 0)
                goto fail;
        c->path = strdup(path);
        if (!c->path) {
                r = -ENOMEM;
                goto fail;
        }
        if (timeout_usec > 0) {
                uint64_t n;
                r = sd_event_now(e, CLOCK_MONOTONIC, &n);
                if (r < 0)
                        goto fail;
                c->deadline = n + timeout_usec;
                r = sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC, c->deadline, 0,
                                      ipc_call_timeout, c);
                if (r < 0)
                        goto fail;
        }

        int fd = ipc_connect_nonblock(path);
        if (fd == -EAGAIN) {
                uint64_t n;
                r = sd_event_now(e, CLOCK_MONOTONIC, &n);
                if (r >= 0)
                        r = sd_event_add_time(e, &c->retry, CLOCK_MONOTONIC, n + IPC_CONNECT_RETRY_USEC,
                                              USEC_PER_MSEC, ipc_call_retry, c);
                if (r < 0)
                        goto fail;
        } else if (fd < 0) {
                r = fd;
                goto fail;
        } else {
                c->fd = fd;
                r = ipc_call_start_io(c);
                if (r < 0)
                        goto fail;
        }
        if (ret)
                *ret = c;
        return 0;

fail:
        ipc_call_free(c);
        return r;
}

/* Drops a pending call without running its handler. */
void ipc_call_cancel(IpcCall *c) {
        if (!c || c->dispatching)
                return;
        if (c->mux)
                ipc_mux_call_cancel(c);
        else
                ipc_call_free(c);
}
