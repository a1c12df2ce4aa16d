/* ipc-mux.c — many concurrent calls over one connection (IpcMux, see ipc.h).
 *
 * postern-qmgr keeps thousands of deliveries in flight to one agent. With a connection per call
 * the agent would spend a descriptor per delivery on top of the delivery's own socket; here every
 * request is tagged "id=<n>" (n counts up per IpcMux), written to one shared connection, and
 * matched to its reply by the id the server echoes (ipc_server_set_multiplex).
 *
 * Pending calls sit in a list, oldest first, and in a table by id (ids are sequential, so the
 * low bits index it evenly). Each call keeps its request's bytes until they are written; the
 * writer goes down the list from send_next (the first call not fully written), so a call that
 * is cancelled or times out before its request went out never reaches the agent — only the end
 * of a request already partly written is kept (in rest) to keep the stream whole.
 *
 * Each connection has a generation; a call remembers the one it was sent on. When a connection
 * fails, replies already received are dispatched first, then the calls of its generation fail
 * with the error, oldest first; their handlers may start new calls, which go out on a fresh
 * connection (a newer generation, appended after them), or cancel calls not yet failed. A
 * timed-out or cancelled call is forgotten and its late reply, if one comes, ignored.
 *
 * Nothing is written from ipc_mux_call_async(): requests are written by the io callback, so a
 * write error never tears the connection down under a handler's feet. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ipc-internal.h"

#define IPC_MUX_TABLE_MIN 64
#define IPC_MUX_READS_PER_WAKEUP 16
#define IPC_MUX_IOV 64

struct IpcMux {
        sd_event *event;
        char *path;
        int fd;                        /* -1: no connection (or waiting to retry the connect) */
        sd_event_source *io, *retry, *idle;
        StrBuf rest;                   /* the unwritten end of a request whose call is gone */
        IpcCall *send_next;            /* the first call whose request is not fully written */
        size_t send_off;               /* bytes of send_next's request written already */
        bool broken;                   /* rest could not be kept: the stream is unusable */
        IpcParser parser;
        uint64_t generation;           /* of the current connection */
        uint64_t next_id;
        usec_t last_activity;
        IpcCall **table;               /* pending calls by id & (table_size - 1) */
        size_t table_size, n_pending;
        IpcCall *head, *tail;          /* pending calls, oldest first */
};

static usec_t mux_now(IpcMux *m) {
        uint64_t n = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &n);
        return n;
}

static int mux_table_grow(IpcMux *m) {
        size_t size = m->table_size ? m->table_size * 2 : IPC_MUX_TABLE_MIN;
        IpcCall **t = calloc(size, sizeof *t);
        if (!t)
                return -ENOMEM;
        for (IpcCall *c = m->head; c; c = c->next) {
                size_t i = (size_t) (c->id & (size - 1));
                c->hash_next = t[i];
                t[i] = c;
        }
        free(m->table);
        m->table = t;
        m->table_size = size;
        return 0;
}

static IpcCall *mux_find(IpcMux *m, uint64_t id) {
        if (!m->table)
                return NULL;
        for (IpcCall *c = m->table[id & (m->table_size - 1)]; c; c = c->hash_next)
                if (c->id == id)
                        return c;
        return NULL;
}

/* Takes c out of the table and the list; its request is not written any more (the end of a
 * partly written one is, to keep the stream whole). */
static void mux_forget(IpcMux *m, IpcCall *c) {
        if (c == m->send_next) {
                if (m->send_off > 0 &&
                    strbuf_append(&m->rest, c->out.data + m->send_off, c->out.len - m->send_off) < 0)
                        m->broken = true;
                m->send_next = c->next;
                m->send_off = 0;
        }
        IpcCall **pp = &m->table[c->id & (m->table_size - 1)];
        while (*pp && *pp != c)
                pp = &(*pp)->hash_next;
        if (*pp)
                *pp = c->hash_next;
        c->hash_next = NULL;
        if (c->prev)
                c->prev->next = c->next;
        else
                m->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                m->tail = c->prev;
        c->prev = c->next = NULL;
        m->n_pending--;
        m->last_activity = mux_now(m);
}

static void mux_call_free(IpcCall *c) {
        sd_event_source_disable_unref(c->timer);
        strbuf_done(&c->out);
        sd_event_unref(c->event);
        free(c);
}

/* Runs the handler of a call already forgotten, then frees it. */
static void mux_call_finish(IpcCall *c, int error, const IpcRecord *reply) {
        sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        c->dispatching = true;
        if (c->handler)
                c->handler(error, reply, c->userdata);
        mux_call_free(c);
}

void ipc_mux_call_cancel(IpcCall *c) {
        mux_forget(c->mux, c);
        mux_call_free(c);
}

/* Closes the connection (if any); the next call opens a new one. */
static void mux_disconnect(IpcMux *m) {
        m->io = sd_event_source_disable_unref(m->io);
        m->retry = sd_event_source_disable_unref(m->retry);
        m->fd = safe_close(m->fd);
        strbuf_done(&m->rest);
        m->send_next = NULL;
        m->send_off = 0;
        m->broken = false;
        ipc_parser_done(&m->parser);
        m->generation++;
}

/* Closes the connection and fails every call sent on it with error. */
static void mux_fail(IpcMux *m, int error) {
        uint64_t gen = m->generation;
        mux_disconnect(m);
        while (m->head && m->head->generation == gen) {
                IpcCall *c = m->head;
                mux_forget(m, c);
                mux_call_finish(c, error, NULL);
        }
}

static bool mux_unwritten(const IpcMux *m) {
        return m->rest.len > 0 || m->send_next;
}

/* Matches a reply to its call. Returns <0 for a reply that cannot belong to this connection. */
static int mux_dispatch(IpcMux *m, const IpcRecord *rec) {
        const char *s = ipc_record_get(rec, "id");
        char *end = NULL;
        if (!s || *s < '0' || *s > '9')
                return -EPROTO;
        errno = 0;
        unsigned long long id = strtoull(s, &end, 10);
        if (errno || *end || id >= m->next_id)
                return -EPROTO;
        IpcCall *c = mux_find(m, id);
        if (!c)
                return 0;   /* timed out or cancelled: its reply is of no use any more */
        mux_forget(m, c);
        mux_call_finish(c, 0, rec);
        return 0;
}

/* Reads and dispatches replies, at most max_rounds reads (0: until none is left). Returns <0
 * when the connection failed (its calls have failed then). */
static int mux_read(IpcMux *m, int fd, int max_rounds) {
        uint64_t gen = m->generation;

        for (int rounds = 0; max_rounds == 0 || rounds < max_rounds; rounds++) {
                char buf[16384];
                ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return 0;
                if (k <= 0) {
                        mux_fail(m, k < 0 ? -errno : -ECONNRESET);
                        return -1;
                }
                for (size_t off = 0; off < (size_t) k;) {
                        _cleanup_ipc_record_ IpcRecord rec = IPC_RECORD_INIT;
                        size_t used = 0;
                        int r = ipc_parser_feed(&m->parser, buf + off, (size_t) k - off, &used, &rec);
                        off += used;
                        if (r > 0)
                                r = mux_dispatch(m, &rec);
                        if (r < 0) {
                                mux_fail(m, r);
                                return -1;
                        }
                        if (m->generation != gen)
                                return -1;
                }
        }
        return 0;
}

/* Writes rest, then the requests from send_next on, as far as the socket takes them. Returns
 * <0 (an errno) when the connection cannot be written to. */
static int mux_write(IpcMux *m, int fd) {
        while (mux_unwritten(m)) {
                struct iovec iov[IPC_MUX_IOV];
                size_t n = 0, off = m->send_off;
                if (m->rest.len > 0)
                        iov[n++] = (struct iovec) { m->rest.data, m->rest.len };
                for (IpcCall *c = m->send_next; c && n < IPC_MUX_IOV; c = c->next, off = 0)
                        iov[n++] = (struct iovec) { c->out.data + off, c->out.len - off };
                struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
                ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return errno == EAGAIN ? 0 : -errno;
                size_t left = (size_t) k;
                if (m->rest.len > 0) {
                        size_t t = MIN(left, m->rest.len);
                        strbuf_consume(&m->rest, t);
                        left -= t;
                        if (m->rest.len == 0)
                                strbuf_done(&m->rest);
                }
                while (left > 0 && m->send_next) {
                        IpcCall *c = m->send_next;
                        size_t remain = c->out.len - m->send_off;
                        if (left < remain) {
                                m->send_off += left;
                                break;
                        }
                        left -= remain;
                        strbuf_done(&c->out);   /* written: the bytes are not needed any more */
                        m->send_next = c->next;
                        m->send_off = 0;
                }
        }
        return 0;
}

static int mux_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IpcMux *m = userdata;

        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && mux_read(m, fd, IPC_MUX_READS_PER_WAKEUP) < 0)
                return 0;
        if (m->broken) {
                mux_fail(m, -ENOMEM);
                return 0;
        }
        if (revents & EPOLLOUT) {
                int r = mux_write(m, fd);
                if (r < 0) {
                        /* the peer may have answered before it went away: take those replies first */
                        if (mux_read(m, fd, 0) >= 0)
                                mux_fail(m, r);
                        return 0;
                }
        }
        if (sd_event_source_set_io_events(m->io, EPOLLIN | (mux_unwritten(m) ? EPOLLOUT : 0)) < 0)
                mux_fail(m, -ENOMEM);
        return 0;
}

static int mux_connect(IpcMux *m);

static int mux_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        IpcMux *m = userdata;
        m->retry = sd_event_source_disable_unref(m->retry);
        if (m->n_pending == 0) {
                mux_disconnect(m);   /* nobody waits any more: stop trying */
                return 0;
        }
        int r = mux_connect(m);
        if (r < 0)
                mux_fail(m, r);
        return 0;
}

/* Opens the connection, or arms a retry when the listener's backlog is full. */
static int mux_connect(IpcMux *m) {
        int fd = ipc_connect_nonblock(m->path);
        if (fd == -EAGAIN)
                return sd_event_add_time(m->event, &m->retry, CLOCK_MONOTONIC,
                                         mux_now(m) + IPC_CONNECT_RETRY_USEC, USEC_PER_MSEC, mux_retry, m);
        if (fd < 0)
                return fd;
        m->fd = fd;
        int r = sd_event_add_io(m->event, &m->io, fd, EPOLLIN | EPOLLOUT, mux_io, m);
        if (r < 0) {
                m->fd = safe_close(m->fd);
                return r;
        }
        return 0;
}

static int mux_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        IpcMux *m = userdata;
        bool idle = m->n_pending == 0 && m->fd >= 0;
        if (idle && usec >= m->last_activity + IPC_MUX_IDLE_USEC) {
                mux_disconnect(m);
                idle = false;
        }
        /* an idle connection is looked at again when its time is up, anything else a period later */
        usec_t next = idle ? m->last_activity + IPC_MUX_IDLE_USEC : usec + IPC_MUX_IDLE_USEC;
        (void) sd_event_source_set_time(s, MAX(next, usec + USEC_PER_SEC));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int mux_call_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        IpcCall *c = userdata;
        mux_forget(c->mux, c);
        mux_call_finish(c, -ETIMEDOUT, NULL);
        return 0;
}

int ipc_mux_new(sd_event *e, const char *path, IpcMux **ret) {
        if (!e || !path || !ret)
                return -EINVAL;
        IpcMux *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->fd = -1;
        m->event = sd_event_ref(e);
        m->path = strdup(path);
        int r = m->path ? mux_table_grow(m) : -ENOMEM;
        if (r >= 0)
                r = sd_event_add_time(e, &m->idle, CLOCK_MONOTONIC, mux_now(m) + IPC_MUX_IDLE_USEC,
                                      USEC_PER_SEC, mux_idle, m);
        if (r < 0) {
                ipc_mux_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

IpcMux *ipc_mux_free(IpcMux *m) {
        if (!m)
                return NULL;
        while (m->head)
                ipc_mux_call_cancel(m->head);
        mux_disconnect(m);
        sd_event_source_disable_unref(m->idle);
        sd_event_unref(m->event);
        free(m->table);
        free(m->path);
        free(m);
        return NULL;
}

const char *ipc_mux_path(const IpcMux *m) {
        return m ? m->path : NULL;
}

size_t ipc_mux_pending(const IpcMux *m) {
        return m ? m->n_pending : 0;
}

bool ipc_mux_connected(const IpcMux *m) {
        return m && m->fd >= 0;
}

/* Queues req tagged with a new id; see ipc.h. */
int ipc_mux_call_async(IpcMux *m, const IpcRecord *req, usec_t timeout_usec, IpcReplyHandler handler,
                       void *userdata, IpcCall **ret) {
        if (!m || !req)
                return -EINVAL;
        IpcCall *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->mux = m;
        c->event = sd_event_ref(m->event);
        c->handler = handler;
        c->userdata = userdata;
        c->id = m->next_id++;
        char id[24];
        snprintf(id, sizeof id, "%" PRIu64, c->id);
        c->out.limit = IPC_RECORD_MAX + 1;
        int r = ipc_record_format_tagged(req, id, &c->out);
        if (r >= 0 && m->n_pending >= m->table_size)
                r = mux_table_grow(m);
        if (r >= 0 && m->fd < 0 && !m->retry)
                r = mux_connect(m);
        if (r >= 0 && timeout_usec > 0) {
                c->deadline = mux_now(m) + timeout_usec;
                r = sd_event_add_time(m->event, &c->timer, CLOCK_MONOTONIC, c->deadline, 0, mux_call_timeout, c);
        }
        if (r < 0) {
                mux_call_free(c);
                return r;
        }
        c->generation = m->generation;
        size_t i = (size_t) (c->id & (m->table_size - 1));
        c->hash_next = m->table[i];
        m->table[i] = c;
        c->prev = m->tail;
        if (m->tail)
                m->tail->next = c;
        else
                m->head = c;
        m->tail = c;
        if (!m->send_next)
                m->send_next = c;
        m->n_pending++;
        m->last_activity = mux_now(m);
        if (m->io)
                (void) sd_event_source_set_io_events(m->io, EPOLLIN | EPOLLOUT);
        if (ret)
                *ret = c;
        return 0;
}
