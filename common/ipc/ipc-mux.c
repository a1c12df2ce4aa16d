/* ipc-mux.c — many concurrent calls over one connection (IpcMux, see ipc.h).
 *
 * postern-qmgr keeps thousands of deliveries in flight to one agent. With a connection per call
 * the agent would spend a descriptor per delivery on top of the delivery's own socket; here every
 * request is tagged "id=<n>" (n counts up per IpcMux), written to one shared connection, and
 * matched to its reply by the id the server echoes (ipc_server_set_multiplex).
 *
 * Pending calls sit in a list, oldest first, and in a table by id (ids are sequential, so the
 * low bits index it evenly). Each connection has a generation; a call remembers the one it was
 * sent on. When a connection fails, the calls of its generation fail with the error, oldest
 * first; their handlers may start new calls, which go out on a fresh connection (a newer
 * generation, appended after them), or cancel calls not yet failed. A timed-out or cancelled
 * call is forgotten and its late reply, if one comes, ignored.
 *
 * Nothing is written from ipc_mux_call_async(): requests are queued and written by the io
 * callback, so a write error never tears the connection down under a handler's feet. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ipc-internal.h"

#define IPC_MUX_TABLE_MIN 64
#define IPC_MUX_READS_PER_WAKEUP 16

struct IpcMux {
        sd_event *event;
        char *path;
        int fd;                        /* -1: no connection (or waiting to retry the connect) */
        sd_event_source *io, *retry, *idle;
        StrBuf out;                    /* requests not yet written */
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

/* Takes c out of the table and the list. */
static void mux_forget(IpcMux *m, IpcCall *c) {
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
        strbuf_done(&m->out);
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

static void mux_update_events(IpcMux *m) {
        if (m->io && sd_event_source_set_io_events(m->io, EPOLLIN | (m->out.len > 0 ? EPOLLOUT : 0)) < 0)
                mux_fail(m, -ENOMEM);
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

/* What a failed send() or recv() means: 1 try again, 0 wait for the next event, -1 the
 * connection failed (and its calls with it). */
static int mux_io_errno(IpcMux *m) {
        if (errno == EINTR)
                return 1;
        if (errno == EAGAIN || errno == ENOTCONN)
                return 0;
        mux_fail(m, -errno);
        return -1;
}

static int mux_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IpcMux *m = userdata;
        uint64_t gen = m->generation;

        while (m->out.len > 0 && (revents & EPOLLOUT)) {
                ssize_t k = send(fd, m->out.data, m->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        int e = mux_io_errno(m);
                        if (e > 0)
                                continue;
                        if (e < 0)
                                return 0;
                        break;
                }
                strbuf_consume(&m->out, (size_t) k);
        }
        if (m->out.len == 0)
                strbuf_done(&m->out);

        for (int rounds = 0; rounds < IPC_MUX_READS_PER_WAKEUP && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR));
             rounds++) {
                char buf[16384];
                ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k < 0) {
                        int e = mux_io_errno(m);
                        if (e > 0)
                                continue;
                        if (e < 0)
                                return 0;
                        break;
                }
                if (k == 0) {
                        mux_fail(m, -ECONNRESET);
                        return 0;
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
                                return 0;
                        }
                        if (m->generation != gen)
                                return 0;
                }
        }
        mux_update_events(m);
        return 0;
}

static int mux_connect(IpcMux *m);

static int mux_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        IpcMux *m = userdata;
        m->retry = sd_event_source_disable_unref(m->retry);
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
                                         mux_now(m) + IPC_CONNECT_RETRY_USEC, 0, mux_retry, m);
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
        if (m->n_pending == 0 && m->fd >= 0 && usec >= m->last_activity + IPC_MUX_IDLE_USEC)
                mux_disconnect(m);
        (void) sd_event_source_set_time(s, MAX(usec, m->last_activity) + IPC_MUX_IDLE_USEC);
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
        int r;
        if (m->n_pending >= m->table_size && (r = mux_table_grow(m)) < 0)
                return r;
        if (m->fd < 0 && !m->retry && (r = mux_connect(m)) < 0)
                return r;

        IpcCall *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->mux = m;
        c->event = sd_event_ref(m->event);
        c->handler = handler;
        c->userdata = userdata;
        c->id = m->next_id++;   /* used up even on failure: the request may be queued already */
        c->generation = m->generation;
        char id[24];
        snprintf(id, sizeof id, "%" PRIu64, c->id);
        r = ipc_record_format_tagged(req, id, &m->out);
        if (r >= 0 && timeout_usec > 0) {
                c->deadline = mux_now(m) + timeout_usec;
                r = sd_event_add_time(m->event, &c->timer, CLOCK_MONOTONIC, c->deadline, 0, mux_call_timeout, c);
        }
        if (r < 0) {
                /* the request may be queued already: its reply will find no call */
                mux_call_free(c);
                return r;
        }
        size_t i = (size_t) (c->id & (m->table_size - 1));
        c->hash_next = m->table[i];
        m->table[i] = c;
        c->prev = m->tail;
        if (m->tail)
                m->tail->next = c;
        else
                m->head = c;
        m->tail = c;
        m->n_pending++;
        m->last_activity = mux_now(m);
        if (m->io)
                (void) sd_event_source_set_io_events(m->io, EPOLLIN | EPOLLOUT);
        if (ret)
                *ret = c;
        return 0;
}
