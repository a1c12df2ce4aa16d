/* test-ipc-mux.c — unit tests for multiplexed calls: an IpcMux client and a multiplexing
 * IpcServer in one sd-event loop on a temporary AF_UNIX socket. Checked: hundreds of concurrent
 * calls over one connection, answered out of order, each handler getting its own reply; the
 * server's max_outstanding bound; cancel; per-call timeouts leaving the connection usable; a
 * dropped connection failing exactly the calls sent on it while a handler's new call goes out
 * on a fresh one; a server that does not multiplex (-EPROTO); untagged requests on a
 * multiplexing server; no descriptor leaked. */
#include <fcntl.h>
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

        ipc_mux_free(ctx.mux);
        ipc_server_free(ctx.server);
        sd_event_unref(ctx.event);
        CHECK_INT(count_fds(), fds_before);
        unlink(ctx.path);
        rmdir(dir);
        return 0;
}
