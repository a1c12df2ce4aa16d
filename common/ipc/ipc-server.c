/* ipc-server.c — the non-blocking attribute-protocol server inside sd-event.
 *
 * One IpcServer serves one listening AF_UNIX stream socket. Each accepted connection is an
 * IpcConn with its own io source, idle timer, parser and output buffer. A connection carries
 * one request at a time: once a record is complete the server stops reading (the request's
 * remaining bytes stay in the kernel, which gives natural back-pressure) until the handler's
 * reply is queued, immediately or later through a reference taken with ipc_conn_ref().
 * Input is peeked and consumed exactly up to the end of each record, so no per-connection
 * input buffer beyond the parser's (bounded by IPC_RECORD_MAX) is needed.
 *
 * A server set up with ipc_server_set_multiplex() also takes pipelined requests tagged "id=" (from
 * an IpcMux): each gets its own IpcConn, a lightweight child holding a reference to the
 * connection, whose reply is tagged with the same id and queued on the connection in whatever
 * order replies come. Reading goes on while fewer than max_outstanding tagged requests are
 * unanswered and less than IPC_RECORD_MAX of replies wait to be written. An untagged request on
 * such a connection is handled one at a time as above.
 *
 * Per-connection failures (EOF, ECONNRESET, EPIPE, a malformed or oversized record, a handler
 * returning <0, idle timeout) close that connection and never surface as an error from an
 * sd-event callback, which would disable the source.
 *
 * Limits (ipc_server_set_limits, see ipc.h): the parser of each connection gets the server's
 * record size and attribute limits; one timer per connection watches both the idle timeout
 * (between records, restarted by activity) and the record deadline (from the first byte of a
 * record, never restarted); connection caps are checked when a connection is accepted, before
 * anything is allocated for it, with the counts kept in an IpcPeers. Every limit event goes to
 * the limit handler through one IpcLogLimit per server. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "ipc-internal.h"

#define IPC_ACCEPT_BURST 64
#define IPC_RECORDS_PER_WAKEUP 16
#define IPC_ACCEPT_RETRY_USEC (100ULL * USEC_PER_MSEC)

struct IpcConn {
        unsigned n_ref;
        IpcServer *server;          /* NULL once closed */
        int fd;
        sd_event_source *io, *timer;
        IpcParser parser;
        StrBuf out;
        struct ucred cred;
        bool have_cred;
        bool busy;                  /* a request is outstanding */
        bool closed;
        bool counted;               /* holds a place in the server's IpcPeers */
        bool trusted;               /* ... as a trusted peer */
        usec_t last_activity;
        usec_t record_start;        /* the first byte of the record being read came; 0: none */
        IpcConn *prev, *next;
        size_t max_outstanding;     /* >0: tagged requests are taken concurrently */
        size_t n_outstanding;       /* tagged requests not answered yet */
        unsigned n_children;        /* tagged requests alive (each holds a reference) */
        /* a tagged request (child): replies go to parent, tagged with id; no fd of its own */
        IpcConn *parent;
        char *id;
};

struct IpcServer {
        sd_event *event;
        int fd;
        sd_event_source *listen_source, *accept_retry;
        IpcHandler handler;
        IpcCloseHandler close_handler;
        void *userdata;
        usec_t idle_timeout;
        size_t max_outstanding;
        IpcConn *conns;
        size_t n_conns;
        IpcServerLimits limits;
        IpcPeers peers;
        IpcLogLimit log_limit;
        IpcLimitHandler limit_handler;
};

static void ipc_conn_close(IpcConn *c);
static void ipc_conn_update_events(IpcConn *c);
static void ipc_conn_record_started(IpcConn *c);

static void ipc_conn_free(IpcConn *c) {
        if (c->parent) {
                /* dropped unanswered: tell the peer, which would otherwise wait for its timeout */
                if (c->busy)
                        (void) ipc_conn_reply_error(c, "request not answered");
                if (c->busy) {   /* the connection is gone: just free the slot */
                        c->parent->n_outstanding--;
                        ipc_conn_update_events(c->parent);
                }
                c->parent->n_children--;
                ipc_conn_unref(c->parent);
                free(c->id);
                free(c);
                return;
        }
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        ipc_parser_done(&c->parser);
        strbuf_done(&c->out);
        free(c);
}

/* Takes a reference (for a delayed reply). */
IpcConn *ipc_conn_ref(IpcConn *c) {
        if (c)
                c->n_ref++;
        return c;
}

/* Drops a reference; the connection is freed with the last one. */
IpcConn *ipc_conn_unref(IpcConn *c) {
        if (!c)
                return NULL;
        if (--c->n_ref == 0) {
                ipc_conn_close(c);
                ipc_conn_free(c);
        }
        return NULL;
}

bool ipc_conn_peer_gone(const IpcConn *c) {
        if (c->parent)
                c = c->parent;
        if (c->closed || c->fd < 0)
                return true;
        /* The server reads a connection only while it has room for requests: ask the socket. */
        struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Closes the socket and detaches from the server; the server's reference is dropped by the
 * caller (ipc_conn_drop). Holders of other references see -ECONNRESET on reply. */
static void ipc_conn_close(IpcConn *c) {
        if (c->closed || c->parent)
                return;
        c->closed = true;
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        c->fd = safe_close(c->fd);
        ipc_parser_done(&c->parser);
        strbuf_done(&c->out);
        IpcServer *s = c->server;
        if (s) {
                if (c->counted)
                        ipc_peers_release(&s->peers, c->have_cred ? c->cred.uid : (uid_t) -1, c->trusted);
                if (s->close_handler)
                        s->close_handler(c, s->userdata);
                if (c->prev)
                        c->prev->next = c->next;
                else
                        s->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->prev = c->next = NULL;
                s->n_conns--;
                c->server = NULL;
        }
}

/* Closes and drops the server's reference. */
static void ipc_conn_drop(IpcConn *c) {
        if (c->closed)
                return;
        ipc_conn_close(c);
        ipc_conn_unref(c);
}

/* Whether the next request may be read: untagged requests are read only when the previous reply
 * is out (one reply buffered at most); a multiplexed connection reads on while it has free slots
 * and its peer keeps reading replies. */
static bool ipc_conn_can_read(const IpcConn *c) {
        if (c->closed || c->busy)
                return false;
        if (c->max_outstanding == 0)
                return c->out.len == 0;
        return c->n_outstanding < c->max_outstanding && c->out.len < IPC_RECORD_MAX;
}

static void ipc_conn_update_events(IpcConn *c) {
        if (c->closed)
                return;
        uint32_t ev = (c->out.len > 0 ? EPOLLOUT : 0) | (ipc_conn_can_read(c) ? EPOLLIN : 0);
        if (sd_event_source_set_io_events(c->io, ev) < 0)
                ipc_conn_drop(c);
}

static usec_t ipc_server_now(IpcServer *s) {
        uint64_t n;
        return sd_event_now(s->event, CLOCK_MONOTONIC, &n) >= 0 ? n : now_usec(CLOCK_MONOTONIC);
}

/* Tells the limit handler, within the server's log rate limit. cred NULL: unknown peer. */
static void ipc_server_report(IpcServer *s, const struct ucred *cred, IpcLimit limit) {
        unsigned suppressed;
        if (!s->limit_handler || !ipc_log_limit_allow(&s->log_limit, ipc_server_now(s), &suppressed))
                return;

        const IpcServerLimits *l = &s->limits;
        char what[128], text[256];
        switch (limit) {
        case IPC_LIMIT_RECORD_SIZE:
                snprintf(what, sizeof what, "request larger than %zu bytes; closed",
                         l->record_max ? l->record_max : (size_t) IPC_RECORD_MAX);
                break;
        case IPC_LIMIT_RECORD_ATTRS:
                snprintf(what, sizeof what, "request with more than %zu attributes; closed",
                         l->record_attrs_max ? l->record_attrs_max : (size_t) IPC_RECORD_ATTRS_MAX);
                break;
        case IPC_LIMIT_RECORD_TIME:
                if (l->record_deadline % USEC_PER_SEC == 0)
                        snprintf(what, sizeof what, "request not finished within %llu s; closed",
                                 (unsigned long long) (l->record_deadline / USEC_PER_SEC));
                else
                        snprintf(what, sizeof what, "request not finished within %llu ms; closed",
                                 (unsigned long long) (l->record_deadline / USEC_PER_MSEC));
                break;
        case IPC_LIMIT_CONNS_PER_UID:
                snprintf(what, sizeof what, "more than %zu connections from this uid; refused",
                         cred && (cred->uid == 0 || cred->uid == l->conns.trusted_uid)
                         ? l->conns.per_trusted_uid : l->conns.per_uid);
                break;
        case IPC_LIMIT_CONNS_ORDINARY:
                snprintf(what, sizeof what, "more than %zu connections from unprivileged users; refused",
                         l->conns.ordinary_max);
                break;
        }
        char peer[64] = "peer with unknown credentials";
        if (cred)
                snprintf(peer, sizeof peer, "peer uid=%u pid=%d", (unsigned) cred->uid, (int) cred->pid);
        char tail[64] = "";
        if (suppressed > 0)
                snprintf(tail, sizeof tail, " (%u similar events not logged)", suppressed);
        snprintf(text, sizeof text, "%s: %s%s", peer, what, tail);

        IpcLimitEvent ev = {
                .limit = limit,
                .uid = cred ? cred->uid : (uid_t) -1,
                .pid = cred ? cred->pid : 0,
                .suppressed = suppressed,
                .text = text,
        };
        s->limit_handler(&ev, s->userdata);
}

/* A request over a limit: reported, answered status=error reason=<reason> as far as the socket
 * takes it, and the connection closed. */
static void ipc_conn_refuse(IpcConn *c, IpcLimit limit, const char *reason) {
        ipc_server_report(c->server, c->have_cred ? &c->cred : NULL, limit);
        c->busy = true;
        (void) ipc_conn_reply_error(c, reason);
        ipc_conn_drop(c);
}

static void ipc_conn_touch(IpcConn *c) {
        uint64_t n;
        if (c->server && sd_event_now(c->server->event, CLOCK_MONOTONIC, &n) >= 0)
                c->last_activity = n;
}

/* Writes as much of the output as the socket takes; closes on a hard error. Returns <0 when
 * the connection was closed. */
static int ipc_conn_flush(IpcConn *c) {
        while (c->out.len > 0) {
                ssize_t k = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        ipc_conn_drop(c);
                        return -ECONNRESET;
                }
                strbuf_consume(&c->out, (size_t) k);
                ipc_conn_touch(c);
        }
        if (c->out.len == 0)
                strbuf_done(&c->out);   /* idle connections hold no buffer */
        ipc_conn_update_events(c);
        return c->closed ? -ECONNRESET : 0;
}

/* Hands a tagged request to the handler as a child connection of c (the caller holds a
 * reference on c). */
static void ipc_conn_dispatch_tagged(IpcConn *c, const char *id, const IpcRecord *req) {
        IpcServer *s = c->server;
        IpcConn *rq = calloc(1, sizeof *rq);
        if (!rq || !(rq->id = strdup(id))) {
                free(rq);
                ipc_conn_drop(c);
                return;
        }
        rq->n_ref = 1;
        rq->fd = -1;
        rq->busy = true;
        rq->parent = ipc_conn_ref(c);
        c->n_children++;
        c->n_outstanding++;
        int r = s->handler ? s->handler(rq, req, s->userdata) : -EOPNOTSUPP;
        if (r < 0)
                ipc_conn_drop(c);
        else if (rq->busy && !c->closed && rq->n_ref <= 1)
                (void) ipc_conn_reply_error(rq, "request not answered");
        ipc_conn_unref(rq);
}

/* Reads and dispatches requests. */
static void ipc_conn_read(IpcConn *c) {
        IpcServer *s = c->server;

        for (int rounds = 0; rounds < IPC_RECORDS_PER_WAKEUP && ipc_conn_can_read(c); rounds++) {
                char buf[16384];
                ssize_t k = recv(c->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        ipc_conn_drop(c);
                        return;
                }
                if (k == 0) {
                        ipc_conn_drop(c);   /* EOF, possibly mid-request */
                        return;
                }
                ipc_conn_touch(c);

                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                size_t used = 0;
                int r = ipc_parser_feed(&c->parser, buf, (size_t) k, &used, &req);
                /* consume exactly the bytes the parser used; the rest stays queued */
                if (used > 0 && recv(c->fd, buf, used, MSG_DONTWAIT) != (ssize_t) used) {
                        ipc_conn_drop(c);
                        return;
                }
                if (r == -EMSGSIZE && c->parser.too_many_attrs) {
                        ipc_conn_refuse(c, IPC_LIMIT_RECORD_ATTRS, "too many attributes");
                        return;
                }
                if (r == -EMSGSIZE) {
                        ipc_conn_refuse(c, IPC_LIMIT_RECORD_SIZE, "record too large");
                        return;
                }
                if (r < 0) {
                        /* malformed: tell the peer if we can, then close */
                        c->busy = true;
                        (void) ipc_conn_reply_error(c, "malformed record");
                        ipc_conn_drop(c);
                        return;
                }
                if (r == 0) {
                        if (c->record_start == 0 && c->parser.size > 0)
                                ipc_conn_record_started(c);
                        continue;
                }
                c->record_start = 0;

                const char *id = c->max_outstanding > 0 ? ipc_record_get(&req, "id") : NULL;
                if (id) {
                        ipc_conn_ref(c);
                        ipc_conn_dispatch_tagged(c, id, &req);
                        bool gone = c->closed;
                        ipc_conn_unref(c);
                        if (gone)
                                return;
                        ipc_conn_update_events(c);
                        continue;
                }
                c->busy = true;
                ipc_conn_update_events(c);
                if (c->closed)
                        return;
                ipc_conn_ref(c);
                /* references the handler holds, not counting tagged requests' */
                unsigned refs = c->n_ref - c->n_children;
                r = s->handler ? s->handler(c, &req, s->userdata) : -EOPNOTSUPP;
                if (r < 0)
                        ipc_conn_drop(c);
                else if (c->busy && !c->closed && c->n_ref - c->n_children <= refs)
                        /* neither replied nor kept a reference: nobody ever will */
                        (void) ipc_conn_reply_error(c, "request not answered");
                bool gone = c->closed;
                ipc_conn_unref(c);
                if (gone)
                        return;
        }
}

static int ipc_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        IpcConn *c = userdata;

        ipc_conn_ref(c);
        if (revents & EPOLLOUT)
                (void) ipc_conn_flush(c);
        if (!c->closed && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                if (ipc_conn_can_read(c))
                        ipc_conn_read(c);
                else if (revents & (EPOLLHUP | EPOLLERR))
                        ipc_conn_drop(c);   /* peer gone while its request is outstanding */
        }
        ipc_conn_unref(c);
        return 0;
}

/* Idle, or replies waiting that the peer does not read: the idle timeout applies. */
static bool ipc_conn_watched(const IpcConn *c) {
        bool idle = !c->busy && c->n_outstanding == 0 && c->out.len == 0;
        return idle || c->out.len > 0;
}

/* Sets the timer to the next moment it must look at the connection: the idle timeout is checked
 * lazily (activity only moves last_activity; the timer comes back and looks), the record
 * deadline exactly. */
static void ipc_conn_schedule(IpcConn *c, usec_t now) {
        IpcServer *s = c->server;
        usec_t next = UINT64_MAX;

        if (!c->timer)
                return;
        if (s->idle_timeout > 0)
                next = ipc_conn_watched(c) ? MAX(c->last_activity + s->idle_timeout, now + USEC_PER_SEC)
                                           : now + s->idle_timeout;
        if (c->record_start > 0 && s->limits.record_deadline > 0)
                next = MIN(next, c->record_start + s->limits.record_deadline);
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(c->timer, next);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

/* The first bytes of a record arrived (and not all of it): its deadline starts now. */
static void ipc_conn_record_started(IpcConn *c) {
        c->record_start = c->last_activity;
        if (c->server->limits.record_deadline > 0)
                ipc_conn_schedule(c, c->record_start);
}

static int ipc_conn_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        IpcConn *c = userdata;
        IpcServer *s = c->server;

        if (!s)
                return 0;
        if (c->record_start > 0 && s->limits.record_deadline > 0 &&
            usec >= c->record_start + s->limits.record_deadline) {
                ipc_conn_refuse(c, IPC_LIMIT_RECORD_TIME, "request not finished in time");
                return 0;
        }
        if (s->idle_timeout > 0 && ipc_conn_watched(c) && usec >= c->last_activity + s->idle_timeout) {
                ipc_conn_drop(c);
                return 0;
        }
        ipc_conn_schedule(c, usec);
        return 0;
}

/* status=error reason=<reason>. */
static int ipc_error_record(IpcRecord *r, const char *reason) {
        int k = ipc_record_add(r, "status", "error");
        return k < 0 ? k : ipc_record_add(r, "reason", reason ? reason : "error");
}

/* A connection over a cap: reported, told why in one non-blocking write, closed. */
static void ipc_server_refuse(IpcServer *s, int fd, const struct ucred *cred, IpcLimit limit) {
        _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;

        ipc_server_report(s, cred, limit);
        if (ipc_error_record(&r, "too many connections") >= 0 && ipc_record_format(&r, &b) >= 0)
                (void) send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        safe_close(fd);
}

static bool ipc_server_has_caps(const IpcServer *s) {
        const IpcPeerCaps *c = &s->limits.conns;
        return c->per_uid > 0 || c->per_trusted_uid > 0 || c->ordinary_max > 0;
}

static int ipc_conn_new(IpcServer *s, int fd) {
        struct ucred cred = {};
        socklen_t l = sizeof cred;
        bool have_cred = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) >= 0;
        uid_t uid = have_cred ? cred.uid : (uid_t) -1;
        bool counted = false, trusted = false;

        if (ipc_server_has_caps(s)) {
                int r = ipc_peers_admit(&s->peers, &s->limits.conns, uid, &trusted);
                if (r == -EUSERS || r == -EMFILE) {
                        ipc_server_refuse(s, fd, have_cred ? &cred : NULL,
                                          r == -EUSERS ? IPC_LIMIT_CONNS_PER_UID : IPC_LIMIT_CONNS_ORDINARY);
                        return r;
                }
                if (r < 0) {
                        safe_close(fd);
                        return r;
                }
                counted = true;
        }
        IpcConn *c = calloc(1, sizeof *c);
        if (!c) {
                if (counted)
                        ipc_peers_release(&s->peers, uid, trusted);
                safe_close(fd);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->fd = fd;
        c->server = s;
        c->cred = cred;
        c->have_cred = have_cred;
        c->counted = counted;
        c->trusted = trusted;
        c->max_outstanding = s->max_outstanding;
        /* a multiplexed connection may queue a reply per outstanding request */
        c->out.limit = c->max_outstanding > 0 ? 0 : IPC_RECORD_MAX + 1;
        c->parser.max_size = s->limits.record_max;
        c->parser.max_attrs = s->limits.record_attrs_max;
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        ipc_conn_touch(c);

        int r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, ipc_conn_io, c);
        if (r >= 0 && (s->idle_timeout > 0 || s->limits.record_deadline > 0)) {
                /* a short record deadline needs a finer timer than the idle timeout */
                usec_t accuracy = s->limits.record_deadline > 0
                        ? MIN(USEC_PER_SEC, MAX(s->limits.record_deadline / 20, USEC_PER_MSEC)) : USEC_PER_SEC;
                r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, c->last_activity, accuracy,
                                      ipc_conn_timer, c);
                if (r >= 0)
                        ipc_conn_schedule(c, c->last_activity);
        }
        if (r < 0) {
                ipc_conn_drop(c);
                return r;
        }
        return 0;
}

static int ipc_server_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        IpcServer *s = userdata;
        (void) sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
        return 0;
}

static int ipc_server_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        IpcServer *s = userdata;

        for (int i = 0; i < IPC_ACCEPT_BURST; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* out of resources: pause accepting instead of spinning */
                                uint64_t n;
                                (void) sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
                                if (sd_event_now(s->event, CLOCK_MONOTONIC, &n) >= 0) {
                                        if (!s->accept_retry)
                                                (void) sd_event_add_time(s->event, &s->accept_retry, CLOCK_MONOTONIC,
                                                                         n + IPC_ACCEPT_RETRY_USEC, 0,
                                                                         ipc_server_accept_retry, s);
                                        else {
                                                (void) sd_event_source_set_time(s->accept_retry, n + IPC_ACCEPT_RETRY_USEC);
                                                (void) sd_event_source_set_enabled(s->accept_retry, SD_EVENT_ONESHOT);
                                        }
                                }
                        }
                        return 0;   /* EAGAIN, ECONNABORTED, EINTR, ...: nothing to do now */
                }
                (void) ipc_conn_new(s, cfd);
        }
        return 0;
}

/* Serves listen_fd (owned from now on, even on failure). */
int ipc_server_new(sd_event *e, int listen_fd, IpcHandler handler, void *userdata, IpcServer **ret) {
        if (!e || listen_fd < 0 || !ret) {
                safe_close(listen_fd);
                return -EINVAL;
        }
        IpcServer *s = calloc(1, sizeof *s);
        if (!s) {
                safe_close(listen_fd);
                return -ENOMEM;
        }
        s->event = sd_event_ref(e);
        s->fd = listen_fd;
        /* sockets passed by systemd are blocking; accept() must never block the loop */
        int fl = fcntl(listen_fd, F_GETFL);
        if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                int r = -errno;
                ipc_server_free(s);
                return r;
        }
        s->handler = handler;
        s->userdata = userdata;
        s->idle_timeout = IPC_IDLE_TIMEOUT_USEC;

        int r = sd_event_add_io(e, &s->listen_source, listen_fd, EPOLLIN, ipc_server_accept, s);
        if (r < 0) {
                ipc_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* Closes the listener and every connection; handlers holding references keep their IpcConn
 * (replies then fail with -ECONNRESET). */
IpcServer *ipc_server_free(IpcServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                ipc_conn_drop(s->conns);
        ipc_peers_done(&s->peers);
        sd_event_source_disable_unref(s->listen_source);
        sd_event_source_disable_unref(s->accept_retry);
        safe_close(s->fd);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

/* Number of open connections. */
size_t ipc_server_connections(const IpcServer *s) {
        return s ? s->n_conns : 0;
}

/* Sets the handler told about each closing connection. */
void ipc_server_set_close_handler(IpcServer *s, IpcCloseHandler fn) {
        if (s)
                s->close_handler = fn;
}

/* Changes the idle timeout for connections accepted from now on. */
int ipc_server_set_idle_timeout(IpcServer *s, usec_t usec) {
        if (!s)
                return -EINVAL;
        s->idle_timeout = usec;
        return 0;
}

/* Sets the limits for connections accepted from now on. */
int ipc_server_set_limits(IpcServer *s, const IpcServerLimits *limits) {
        if (!s || !limits)
                return -EINVAL;
        s->limits = *limits;
        return 0;
}

/* Sets the handler told about limit events. */
void ipc_server_set_limit_handler(IpcServer *s, IpcLimitHandler fn) {
        if (s)
                s->limit_handler = fn;
}

/* Lets connections accepted from now on carry up to max_outstanding tagged requests at once. */
int ipc_server_set_multiplex(IpcServer *s, size_t max_outstanding) {
        if (!s)
                return -EINVAL;
        s->max_outstanding = max_outstanding;
        return 0;
}

/* A tagged request's reply: tagged with its id and queued on the connection. */
static int ipc_conn_reply_tagged(IpcConn *rq, const IpcRecord *reply) {
        IpcConn *c = rq->parent;
        if (c->closed)
                return -ECONNRESET;
        if (!rq->busy)
                return -EBADE;
        int r = ipc_record_format_tagged(reply, rq->id, &c->out);
        if (r < 0)
                return r;
        rq->busy = false;
        c->n_outstanding--;
        ipc_conn_touch(c);
        return ipc_conn_flush(c);
}

/* Queues a reply to the outstanding request and writes what the socket takes. */
int ipc_conn_reply(IpcConn *c, const IpcRecord *reply) {
        if (!c || !reply)
                return -EINVAL;
        if (c->parent)
                return ipc_conn_reply_tagged(c, reply);
        if (c->closed)
                return -ECONNRESET;
        if (!c->busy)
                return -EBADE;   /* no request outstanding */
        int r = ipc_record_format(reply, &c->out);
        if (r < 0)
                return r;
        c->busy = false;
        ipc_conn_touch(c);
        return ipc_conn_flush(c);
}

/* Replies status=error reason=<reason>. */
int ipc_conn_reply_error(IpcConn *c, const char *reason) {
        _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
        int k = ipc_error_record(&r, reason);
        return k < 0 ? k : ipc_conn_reply(c, &r);
}

/* The peer's uid from SO_PEERCRED. */
int ipc_conn_peer_uid(const IpcConn *c, uid_t *ret) {
        if (!c || !ret)
                return -EINVAL;
        if (c->parent)
                c = c->parent;
        if (!c->have_cred)
                return -ENODATA;
        *ret = c->cred.uid;
        return 0;
}
