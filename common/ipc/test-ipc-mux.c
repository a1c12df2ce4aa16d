/* test-ipc-mux.c — unit tests for multiplexed calls: an IpcMux client and a multiplexing
 * IpcServer in one sd-event loop on a temporary AF_UNIX socket. Checked: hundreds of concurrent
 * calls over one connection, answered out of order, each handler getting its own reply; the
 * server's max_outstanding bound; cancel; per-call timeouts leaving the connection usable; a
 * dropped connection failing exactly the calls sent on it while a handler's new call goes out
 * on a fresh one; a server that does not multiplex (-EPROTO); untagged requests on a
 * multiplexing server; replies that arrived before the peer left are delivered although a
 * queued write fails; requests of calls that timed out or were cancelled before being written
 * are never sent (connect retried on a full listen backlog, retry stopped when nobody waits); a
 * request the server drops unanswered gets a tagged error at once; a record with its own "id"
 * is refused; a peer that stops reading replies is disconnected; no descriptor leaked. */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ipc.h"
#include "../basic/tests.h"

#define N_CALLS 600

typedef struct Ctx {
        sd_event *event;
        IpcServer *server;
        IpcMux *mux;
        char path[108];
        int outstanding, max_seen;     /* delayed requests the server holds */
        int done;                      /* handler runs */
        int failed_reset, fresh_ok;
        IpcConn *abandoned;            /* a tagged request the handler holds and drops unanswered */
        bool stop;
} Ctx;

typedef struct Delayed { Ctx *ctx; IpcConn *conn; char *value; } Delayed;

static int delayed_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        Delayed *d = userdata;
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
        CHECK_INT(ipc_record_add(&rep, "value", d->value), 0);
        int r = ipc_conn_reply(d->conn, &rep);
        CHECK(r == 0 || r == -ECONNRESET);
        d->ctx->outstanding--;
        ipc_conn_unref(d->conn);
        free(d->value);
        free(d);
        sd_event_source_unref(s);
        return 0;
}

static int handler(IpcConn *c, const IpcRecord *req, void *userdata) {
        Ctx *ctx = userdata;
        const char *verb = ipc_record_get(req, "request");
        const char *v = ipc_record_get(req, "value");
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;

        CHECK(verb);
        if (streq(verb, "echo")) {
                uid_t uid;
                CHECK_INT(ipc_conn_peer_uid(c, &uid), 0);
                CHECK_INT(uid, getuid());
                CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
                CHECK_INT(ipc_record_add(&rep, "value", v ? v : ""), 0);
                CHECK_INT(ipc_conn_reply(c, &rep), 0);
                CHECK_INT(ipc_conn_reply(c, &rep), -EBADE);   /* one reply per request */
                return 0;
        }
        if (streq(verb, "delay")) {
                /* replies after <ms> milliseconds: later requests overtake earlier ones */
                long long ms;
                CHECK_INT(ipc_record_get_int(req, "ms", &ms), 0);
                Delayed *d = calloc(1, sizeof *d);
                CHECK(d);
                d->ctx = ctx;
                d->conn = ipc_conn_ref(c);
                d->value = strdup(v ? v : "");
                uint64_t now;
                CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) >= 0);
                sd_event_source *src;
                CHECK(sd_event_add_time(ctx->event, &src, CLOCK_MONOTONIC, now + (uint64_t) ms * USEC_PER_MSEC,
                                        0, delayed_fire, d) >= 0);
                ctx->outstanding++;
                ctx->max_seen = MAX(ctx->max_seen, ctx->outstanding);
                return 0;
        }
        if (streq(verb, "never"))
                return 0;   /* neither replies nor keeps a reference: "request not answered" */
        if (streq(verb, "big")) {   /* a 256 KiB reply */
                _cleanup_free_ char *big = malloc(256 * 1024 + 1);
                CHECK(big);
                memset(big, 'x', 256 * 1024);
                big[256 * 1024] = '\0';
                CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
                CHECK_INT(ipc_record_add(&rep, "value", big), 0);
                return ipc_conn_reply(c, &rep) == -ECONNRESET ? 0 : 0;
        }
        if (streq(verb, "abandon")) {
                /* kept for a while, then let go without a reply */
                CHECK(!ctx->abandoned);
                ctx->abandoned = ipc_conn_ref(c);
                return 0;
        }
        if (streq(verb, "drop"))
                return -EPROTO;   /* the server drops the whole connection */
        return ipc_conn_reply_error(c, "unknown request");
}

static int listen_on(const char *path) {
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(lfd >= 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        unlink(path);
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        CHECK(listen(lfd, 16) == 0);
        return lfd;
}

static int count_fds(void) {
        int n = 0;
        for (int fd = 0; fd < 4096; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

/* Runs the loop until ctx->stop or 20 s. */
static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        fprintf(stderr, "test timed out\n");
        exit(1);
}

static void run_until_stop(Ctx *ctx) {
        uint64_t now;
        sd_event_source *dl;
        CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) >= 0);
        CHECK(sd_event_add_time(ctx->event, &dl, CLOCK_MONOTONIC, now + 20 * USEC_PER_SEC, 0, on_deadline, NULL) >= 0);
        ctx->stop = false;
        while (!ctx->stop)
                CHECK(sd_event_run(ctx->event, UINT64_MAX) >= 0);
        sd_event_source_disable_unref(dl);
}

typedef struct Expect { Ctx *ctx; char value[32]; int error; int total; } Expect;

static void expect_done(int error, const IpcRecord *reply, void *userdata) {
        Expect *e = userdata;
        CHECK_INT(error, e->error);
        if (error == 0) {
                CHECK_STR(ipc_record_get(reply, "status"), "ok");
                CHECK_STR(ipc_record_get(reply, "value"), e->value);
        } else
                CHECK(!reply);
        e->ctx->done++;
        if (e->ctx->done == e->total)
                e->ctx->stop = true;
}

static void never_called(int error, const IpcRecord *reply, void *userdata) {
        fprintf(stderr, "cancelled call's handler ran\n");
        exit(1);
}

static void call(Ctx *ctx, const char *verb, const char *value, int ms, usec_t timeout, Expect *e) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", verb), 0);
        CHECK_INT(ipc_record_add(&req, "value", value), 0);
        CHECK_INT(ipc_record_addf(&req, "ms", "%d", ms), 0);
        snprintf(e->value, sizeof e->value, "%s", value);
        CHECK_INT(ipc_mux_call_async(ctx->mux, &req, timeout, expect_done, e, NULL), 0);
}

/* Many calls at once, replies in a scrambled order, a bounded number held by the server. */
static void test_concurrent(Ctx *ctx) {
        static Expect e[N_CALLS];
        ctx->done = 0;
        for (int i = 0; i < N_CALLS; i++) {
                char v[32];
                snprintf(v, sizeof v, "call %d\nline", i);
                e[i] = (Expect) { .ctx = ctx, .total = N_CALLS };
                if (i % 3 == 0)
                        call(ctx, "echo", v, 0, 5 * USEC_PER_SEC, &e[i]);
                else
                        call(ctx, "delay", v, (int) ((i * 7919) % 97), 5 * USEC_PER_SEC, &e[i]);
        }
        /* a cancelled call's reply comes but finds nobody */
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        IpcCall *cancelled;
        CHECK_INT(ipc_mux_call_async(ctx->mux, &req, 0, never_called, NULL, &cancelled), 0);
        CHECK_INT(ipc_mux_pending(ctx->mux), N_CALLS + 1);
        ipc_call_cancel(cancelled);
        CHECK_INT(ipc_mux_pending(ctx->mux), N_CALLS);
        run_until_stop(ctx);
        CHECK_INT(ctx->done, N_CALLS);
        CHECK_INT(ipc_mux_pending(ctx->mux), 0);
        CHECK_INT(ipc_server_connections(ctx->server), 1);   /* all of it over one connection */
        CHECK(ctx->max_seen > 1);                             /* really concurrent */
        CHECK(ctx->max_seen <= 50);                           /* and bounded by max_outstanding */
}

/* A call that times out is forgotten; the connection goes on serving. */
static void test_timeout(Ctx *ctx) {
        static Expect slow, fast;
        ctx->done = 0;
        slow = (Expect) { .ctx = ctx, .error = -ETIMEDOUT, .total = 2 };
        fast = (Expect) { .ctx = ctx, .total = 2 };
        call(ctx, "delay", "late", 300, 50 * USEC_PER_MSEC, &slow);
        call(ctx, "delay", "quick", 100, 5 * USEC_PER_SEC, &fast);
        run_until_stop(ctx);
        CHECK(ipc_mux_connected(ctx->mux));
        /* the late reply arrives and is ignored: wait for it, then the connection still works */
        static Expect after;
        ctx->done = 0;
        after = (Expect) { .ctx = ctx, .total = 1 };
        call(ctx, "delay", "after", 400, 5 * USEC_PER_SEC, &after);
        run_until_stop(ctx);
        CHECK_INT(ctx->outstanding, 0);
}

/* The server answers a request nobody answers with an error, tagged. */
static void error_reply_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, 0);
        CHECK_STR(ipc_record_get(reply, "status"), "error");
        CHECK_STR(ipc_record_get(reply, "reason"), "request not answered");
        ctx->done++;
        ctx->stop = true;
}

static void fresh_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, 0);
        CHECK_STR(ipc_record_get(reply, "value"), "fresh");
        ctx->fresh_ok++;
        ctx->stop = true;
}

/* Calls on a dropped connection fail; a handler's new call goes out on a new connection. */
static void reset_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, -ECONNRESET);
        if (ctx->failed_reset++ == 0) {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
                CHECK_INT(ipc_record_add(&req, "value", "fresh"), 0);
                CHECK_INT(ipc_mux_call_async(ctx->mux, &req, 5 * USEC_PER_SEC, fresh_done, ctx, NULL), 0);
        }
}

static void test_drop(Ctx *ctx) {
        _cleanup_ipc_record_ IpcRecord d = IPC_RECORD_INIT, drop = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&d, "request", "delay"), 0);
        CHECK_INT(ipc_record_add(&d, "ms", "200"), 0);
        for (int i = 0; i < 5; i++)
                CHECK_INT(ipc_mux_call_async(ctx->mux, &d, 5 * USEC_PER_SEC, reset_done, ctx, NULL), 0);
        CHECK_INT(ipc_record_add(&drop, "request", "drop"), 0);
        CHECK_INT(ipc_mux_call_async(ctx->mux, &drop, 5 * USEC_PER_SEC, reset_done, ctx, NULL), 0);
        run_until_stop(ctx);
        CHECK_INT(ctx->failed_reset, 6);
        CHECK_INT(ctx->fresh_ok, 1);
        /* the delayed replies to the old connection find it closed */
        while (ctx->outstanding > 0)
                CHECK(sd_event_run(ctx->event, UINT64_MAX) >= 0);
}

/* An untagged request (ipc_client_call_async) on a multiplexing server is served as before. */
static void plain_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, 0);
        CHECK_STR(ipc_record_get(reply, "value"), "plain");
        CHECK(!ipc_record_get(reply, "id"));
        ctx->stop = true;
}

static void test_untagged(Ctx *ctx) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_record_add(&req, "value", "plain"), 0);
        CHECK_INT(ipc_client_call_async(ctx->event, ctx->path, &req, 5 * USEC_PER_SEC, plain_done, ctx, NULL), 0);
        run_until_stop(ctx);
}

static void eproto_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, -EPROTO);
        if (++ctx->done == 3)
                ctx->stop = true;
}

/* A server that does not multiplex answers without an id: every call fails, nothing hangs. */
static void test_not_multiplexed(Ctx *ctx, const char *dir) {
        char path[108];
        snprintf(path, sizeof path, "%s/plain", dir);
        IpcServer *plain;
        CHECK_INT(ipc_server_new(ctx->event, listen_on(path), handler, ctx, &plain), 0);
        IpcMux *m;
        CHECK_INT(ipc_mux_new(ctx->event, path, &m), 0);
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        ctx->done = 0;
        for (int i = 0; i < 3; i++)
                CHECK_INT(ipc_mux_call_async(m, &req, 5 * USEC_PER_SEC, eproto_done, ctx, NULL), 0);
        run_until_stop(ctx);
        CHECK(!ipc_mux_connected(m));
        ipc_mux_free(m);
        ipc_server_free(plain);
        unlink(path);
}

/* Runs the loop for ms milliseconds. */
static void spin(Ctx *ctx, int ms) {
        uint64_t start, now;
        CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &start) >= 0);
        do {
                CHECK(sd_event_run(ctx->event, 10 * USEC_PER_MSEC) >= 0);
                CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) >= 0);
        } while (now < start + (uint64_t) ms * USEC_PER_MSEC);
}

/* Everything that can be read from fd within ms milliseconds (NUL-terminated). */
static size_t drain(int fd, char *buf, size_t size, int ms) {
        size_t n = 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        while (n + 1 < size && poll(&p, 1, ms) > 0) {
                ssize_t k = recv(fd, buf + n, size - 1 - n, MSG_DONTWAIT);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = '\0';
        return n;
}

typedef struct Result { int error; char value[64]; bool done; } Result;

static void result_done(int error, const IpcRecord *reply, void *userdata) {
        Result *r = userdata;
        CHECK(!r->done);
        r->done = true;
        r->error = error;
        snprintf(r->value, sizeof r->value, "%s", reply ? strempty(ipc_record_get(reply, "value")) : "");
}

static void call_value(IpcMux *m, const char *value, usec_t timeout, Result *res, IpcCall **ret) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_record_add(&req, "value", value), 0);
        *res = (Result) {};
        CHECK_INT(ipc_mux_call_async(m, &req, timeout, result_done, res, ret), 0);
}

/* The agent answers A and goes away while B's request is still to be written: A keeps its
 * reply (the old order, write then read, failed it with EPIPE), B fails with ECONNRESET. */
static void test_reply_before_hangup(Ctx *ctx, const char *dir) {
        char path[108], buf[4096];
        snprintf(path, sizeof path, "%s/raw1", dir);
        int lfd = listen_on(path);
        IpcMux *m;
        Result a, b;
        CHECK_INT(ipc_mux_new(ctx->event, path, &m), 0);
        call_value(m, "A", 5 * USEC_PER_SEC, &a, NULL);
        spin(ctx, 20);   /* A's request is written */
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        CHECK(s >= 0);
        CHECK(drain(s, buf, sizeof buf, 200) > 0);
        CHECK(strstr(buf, "value=A\nid=0\n\n"));
        const char *rep = "status=ok\nvalue=A\nid=0\n\n";
        CHECK(write(s, rep, strlen(rep)) == (ssize_t) strlen(rep));
        close(s);
        call_value(m, "B", 5 * USEC_PER_SEC, &b, NULL);
        spin(ctx, 50);
        CHECK(a.done && b.done);
        CHECK_INT(a.error, 0);
        CHECK_STR(a.value, "A");
        CHECK_INT(b.error, -ECONNRESET);
        ipc_mux_free(m);
        close(lfd);
        unlink(path);
}

/* Fills path's listen backlog; returns how many connections that took (their fds in fill). */
static int fill_backlog(const char *path, int *fill, int max) {
        int n = 0;
        for (; n < max; n++) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                        CHECK(errno == EAGAIN);
                        close(fd);
                        break;
                }
                fill[n] = fd;
        }
        CHECK(n < max);
        return n;
}

static void empty_backlog(int lfd, int *fill, int n) {
        for (int i = 0; i < n; i++) {
                int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                CHECK(a >= 0);
                close(a);
                close(fill[i]);
        }
}

/* A full listen backlog: the connect is retried; a call that times out or is cancelled before
 * its request was written never sends it; the retry stops when no call waits. */
static void test_backlog(Ctx *ctx, const char *dir) {
        char path[108], buf[4096];
        int fill[64];
        snprintf(path, sizeof path, "%s/raw2", dir);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        CHECK(listen(lfd, 0) == 0);
        int n = fill_backlog(path, fill, 64);

        IpcMux *m;
        IpcCall *cancelled;
        Result a, b, c;
        CHECK_INT(ipc_mux_new(ctx->event, path, &m), 0);
        call_value(m, "A-times-out", 100 * USEC_PER_MSEC, &a, NULL);
        call_value(m, "B-waits", 5 * USEC_PER_SEC, &b, NULL);
        call_value(m, "C-cancelled", 5 * USEC_PER_SEC, &c, &cancelled);
        ipc_call_cancel(cancelled);
        CHECK(!ipc_mux_connected(m));
        spin(ctx, 200);
        CHECK(a.done && !b.done && !c.done);
        CHECK_INT(a.error, -ETIMEDOUT);
        empty_backlog(lfd, fill, n);
        spin(ctx, 50);   /* the retry connects and writes B */
        CHECK(ipc_mux_connected(m));
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        CHECK(s >= 0);
        CHECK(drain(s, buf, sizeof buf, 200) > 0);
        CHECK_STR(buf, "request=echo\nvalue=B-waits\nid=1\n\n");   /* A and C never went out */
        const char *rep = "status=ok\nvalue=B-waits\nid=1\n\n";
        CHECK(write(s, rep, strlen(rep)) == (ssize_t) strlen(rep));
        spin(ctx, 50);
        CHECK(b.done && !c.done);
        CHECK_INT(b.error, 0);
        close(s);
        spin(ctx, 20);

        /* backlog full again, and the only call times out: the mux stops trying to connect */
        n = fill_backlog(path, fill, 64);
        call_value(m, "D-times-out", 50 * USEC_PER_MSEC, &a, NULL);
        spin(ctx, 150);
        CHECK(a.done);
        CHECK_INT(a.error, -ETIMEDOUT);
        empty_backlog(lfd, fill, n);
        spin(ctx, 100);
        CHECK(!ipc_mux_connected(m));
        CHECK(fcntl(lfd, F_SETFL, O_NONBLOCK) == 0);
        CHECK(accept4(lfd, NULL, NULL, SOCK_CLOEXEC) < 0 && errno == EAGAIN);   /* nobody connected */
        ipc_mux_free(m);
        close(lfd);
        unlink(path);
}

static int abandon_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        Ctx *ctx = userdata;
        ctx->abandoned = ipc_conn_unref(ctx->abandoned);
        return 0;
}

/* A tagged request the handler drops without a reply is answered with an error right away. */
static void test_abandoned(Ctx *ctx) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "abandon"), 0);
        ctx->done = 0;
        CHECK_INT(ipc_mux_call_async(ctx->mux, &req, 60 * USEC_PER_SEC, error_reply_done, ctx, NULL), 0);
        spin(ctx, 30);
        CHECK(ctx->abandoned);
        uint64_t now;
        CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) >= 0);
        CHECK(sd_event_add_time(ctx->event, NULL, CLOCK_MONOTONIC, now + 20 * USEC_PER_MSEC, 0, abandon_fire, ctx) >= 0);
        run_until_stop(ctx);
        CHECK_INT(ctx->done, 1);
        CHECK(!ctx->abandoned);
}

/* A peer that sends requests and never reads the replies is disconnected after the idle time. */
static void test_stalled_reader(Ctx *ctx) {
        CHECK_INT(ipc_server_set_idle_timeout(ctx->server, 300 * USEC_PER_MSEC), 0);
        size_t before = ipc_server_connections(ctx->server);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ctx->path);
        CHECK(connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        for (int i = 0; i < 20; i++) {
                char rec[64];
                int l = snprintf(rec, sizeof rec, "request=big\nid=%d\n\n", i);
                CHECK(write(fd, rec, (size_t) l) == l);
        }
        spin(ctx, 100);
        CHECK_INT(ipc_server_connections(ctx->server), before + 1);
        spin(ctx, 2500);   /* the idle timer has a 1 s accuracy */
        CHECK_INT(ipc_server_connections(ctx->server), before);
        close(fd);
        CHECK_INT(ipc_server_set_idle_timeout(ctx->server, IPC_IDLE_TIMEOUT_USEC), 0);
}

int main(void) {
        Ctx ctx = {};
        int fds_before = count_fds();
        char dir[] = "/tmp/test-ipc-mux-XXXXXX";
        CHECK(mkdtemp(dir));
        snprintf(ctx.path, sizeof ctx.path, "%s/sock", dir);

        CHECK(sd_event_new(&ctx.event) >= 0);
        CHECK_INT(ipc_server_new(ctx.event, listen_on(ctx.path), handler, &ctx, &ctx.server), 0);
        CHECK_INT(ipc_server_set_multiplex(ctx.server, 50), 0);
        CHECK_INT(ipc_mux_new(ctx.event, "/nonexistent/socket", &ctx.mux), 0);
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_mux_call_async(ctx.mux, &req, 0, never_called, NULL, NULL), -ENOENT);
        CHECK_INT(ipc_mux_pending(ctx.mux), 0);
        ipc_mux_free(ctx.mux);
        CHECK_INT(ipc_mux_new(ctx.event, ctx.path, &ctx.mux), 0);
        CHECK(!ipc_mux_connected(ctx.mux));

        test_concurrent(&ctx);
        test_timeout(&ctx);

        ctx.done = 0;
        IpcRecord never = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&never, "request", "never"), 0);
        CHECK_INT(ipc_mux_call_async(ctx.mux, &never, 5 * USEC_PER_SEC, error_reply_done, &ctx, NULL), 0);
        ipc_record_done(&never);
        run_until_stop(&ctx);
        CHECK_INT(ctx.done, 1);

        test_drop(&ctx);
        test_untagged(&ctx);
        test_not_multiplexed(&ctx, dir);
        test_reply_before_hangup(&ctx, dir);
        test_backlog(&ctx, dir);
        test_abandoned(&ctx);
        test_stalled_reader(&ctx);

        /* a record may not carry its own "id": the tag must be the only one */
        CHECK_INT(ipc_record_add(&req, "id", "7"), 0);
        CHECK_INT(ipc_mux_call_async(ctx.mux, &req, 0, never_called, NULL, NULL), -EINVAL);

        ipc_mux_free(ctx.mux);
        ipc_server_free(ctx.server);
        sd_event_unref(ctx.event);
        CHECK_INT(count_fds(), fds_before);
        unlink(ctx.path);
        rmdir(dir);
        return 0;
}
