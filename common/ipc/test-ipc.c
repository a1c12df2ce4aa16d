/* test-ipc.c — unit tests for the attribute protocol: the record codec (hostile values,
 * names, limits), the incremental parser fed byte by byte, and a real IpcServer on a temporary
 * AF_UNIX socket driven both by a forked child with the blocking API (echo, pipelining, delayed
 * reply, malformed and oversized records, mid-request disconnects, one-way wake-ups, idle
 * timeout) and by ipc_client_call_async() in the server's own sd-event loop. Then a server with
 * the limits of a public socket (ipc_server_set_limits): small records, a record trickled in a
 * byte at a time cut at its deadline, the per-uid connection cap, the rate-limited reports;
 * and the accounting underneath (IpcPeers, IpcLogLimit). */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "ipc.h"
#include "../basic/tests.h"

static const char *hostile[] = {
        "", "plain", "a\nb", "\n\n", "x=y", "==", "+", "+2B", "tab\tand space ", "\r\n.\r\n",
        "\xc3\xa4\xff\x01", "request=evil\n\nstatus=ok",
};

static void test_codec(void) {
        _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&r, "request", "test"), 0);
        for (size_t i = 0; i < ELEMENTSOF(hostile); i++)
                CHECK_INT(ipc_record_add_indexed(&r, "v", i, hostile[i]), 0);
        CHECK_INT(ipc_record_addf(&r, "count", "%zu", ELEMENTSOF(hostile)), 0);

        _cleanup_strbuf_ StrBuf wire = STRBUF_INIT;
        CHECK_INT(ipc_record_format(&r, &wire), 0);
        CHECK(wire.len >= 2 && wire.data[wire.len - 1] == '\n' && wire.data[wire.len - 2] == '\n');
        CHECK(strncmp(wire.data, "request=test\n", 13) == 0);
        /* exactly one empty line: at the end */
        CHECK(strstr(wire.data, "\n\n") == wire.data + wire.len - 2);

        /* all at once, then byte by byte */
        for (int mode = 0; mode < 2; mode++) {
                _cleanup_(ipc_parser_done) IpcParser p = IPC_PARSER_INIT;
                _cleanup_ipc_record_ IpcRecord got = IPC_RECORD_INIT;
                int res = 0;
                size_t used = 0, i = 0;
                if (mode == 0) {
                        res = ipc_parser_feed(&p, wire.data, wire.len, &used, &got);
                        CHECK_INT(used, wire.len);
                } else
                        for (i = 0; i < wire.len && res == 0; i++) {
                                res = ipc_parser_feed(&p, wire.data + i, 1, &used, &got);
                                CHECK_INT(used, 1);
                        }
                CHECK_INT(res, 1);
                CHECK_INT(got.n, r.n);
                for (size_t k = 0; k < r.n; k++) {
                        CHECK_STR(got.attrs[k].name, r.attrs[k].name);
                        CHECK_STR(got.attrs[k].value, r.attrs[k].value);
                }
                for (size_t k = 0; k < ELEMENTSOF(hostile); k++)
                        CHECK_STR(ipc_record_get_indexed(&got, "v", k), hostile[k]);
                long long n;
                CHECK_INT(ipc_record_get_int(&got, "count", &n), 0);
                CHECK_INT(n, ELEMENTSOF(hostile));
        }

        /* two records in one buffer: the parser stops after the first */
        _cleanup_strbuf_ StrBuf two = STRBUF_INIT;
        CHECK_INT(strbuf_puts(&two, "a=1\n\nb=2\n\n"), 0);
        _cleanup_(ipc_parser_done) IpcParser p = IPC_PARSER_INIT;
        _cleanup_ipc_record_ IpcRecord r1 = IPC_RECORD_INIT, r2 = IPC_RECORD_INIT;
        size_t used;
        CHECK_INT(ipc_parser_feed(&p, two.data, two.len, &used, &r1), 1);
        CHECK_INT(used, 5);
        CHECK_STR(ipc_record_get(&r1, "a"), "1");
        CHECK_INT(ipc_parser_feed(&p, two.data + used, two.len - used, &used, &r2), 1);
        CHECK_STR(ipc_record_get(&r2, "b"), "2");
        CHECK(ipc_record_get(&r2, "a") == NULL);
}

/* ipc_send/ipc_recv also work on pipes (byte-wise reads, nothing read past a record) */
static void test_pipe(void) {
        int p[2];
        CHECK(pipe(p) == 0);
        for (int i = 0; i < 2; i++) {
                _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_addf(&r, "n", "%d", i), 0);
                CHECK_INT(ipc_send(p[1], &r), 0);
        }
        close(p[1]);
        for (int i = 0; i < 2; i++) {
                _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
                long long n;
                CHECK_INT(ipc_recv(p[0], &r, USEC_PER_SEC), 0);
                CHECK_INT(ipc_record_get_int(&r, "n", &n), 0);
                CHECK_INT(n, i);
        }
        IpcRecord r = IPC_RECORD_INIT;
        CHECK_INT(ipc_recv(p[0], &r, USEC_PER_SEC), -ECONNRESET);
        close(p[0]);

        /* a blocking pipe without data times out */
        CHECK(pipe(p) == 0);
        CHECK(write(p[1], "a=", 2) == 2);
        CHECK_INT(ipc_recv(p[0], &r, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        close(p[0]);
        close(p[1]);

        /* a socket that never answers times out */
        int sp[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
        CHECK(write(sp[1], "a=1\n", 4) == 4);
        CHECK_INT(ipc_recv(sp[0], &r, 100 * USEC_PER_MSEC), -ETIMEDOUT);
        close(sp[0]);
        close(sp[1]);
}

static const struct { const char *name; int expect; } names[] = {
        { "request", 0 }, { "rcpt.0", 0 }, { "a-b_c.D9", 0 }, { "", -EINVAL }, { "a b", -EINVAL },
        { "a=b", -EINVAL }, { "a\n", -EINVAL }, { "\xc3\xa4", -EINVAL },
        { "0123456789012345678901234567890123456789012345678901234567890123", 0 },    /* 64 */
        { "01234567890123456789012345678901234567890123456789012345678901234", -EINVAL }, /* 65 */
};

static const struct { const char *wire; int expect; } bad_wire[] = {
        { "noequals\n\n", -EBADMSG },
        { "=value\n\n", -EBADMSG },
        { "bad name=x\n\n", -EBADMSG },
        { "a=+0\n\n", -EBADMSG },
        { "a=+0a\n\n", -EBADMSG },
        { "a=x y\n\n", -EBADMSG },
        { "a=nul+00byte\n\n", -EBADMSG },
        { "a=cr\r\n\n", -EBADMSG },
        { "ok=1\nthen garbage\n\n", -EBADMSG },
        { "a=1\n\n", 1 },
        { "\n", 1 },   /* an empty record parses; receivers answer status=error */
};

static const struct { const char *v; int expect; long long n; } ints[] = {
        { "0", 0, 0 }, { "17", 0, 17 }, { "-5", 0, -5 }, { "9223372036854775807", 0, 9223372036854775807LL },
        { "9223372036854775808", -EINVAL, 0 }, { "", -EINVAL, 0 }, { "1x", -EINVAL, 0 }, { " 1", -EINVAL, 0 },
        { "+1", -EINVAL, 0 }, { "-", -EINVAL, 0 }, { "0x10", -EINVAL, 0 },
};

static void test_limits(void) {
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                IpcRecord r = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&r, names[i].name, "v"), names[i].expect);
                ipc_record_done(&r);
        }
        IpcRecord r0 = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&r0, "x", NULL), -EINVAL);
        ipc_record_done(&r0);

        for (size_t i = 0; i < ELEMENTSOF(bad_wire); i++) {
                const char *w = bad_wire[i].wire;
                /* whole and byte by byte give the same answer */
                for (int mode = 0; mode < 2; mode++) {
                        IpcParser p = IPC_PARSER_INIT;
                        IpcRecord got = IPC_RECORD_INIT;
                        int res = 0;
                        size_t used;
                        if (mode == 0)
                                res = ipc_parser_feed(&p, w, strlen(w), &used, &got);
                        else
                                for (size_t k = 0; k < strlen(w) && res == 0; k++)
                                        res = ipc_parser_feed(&p, w + k, 1, &used, &got);
                        if (res != bad_wire[i].expect) {
                                fprintf(stderr, "wire %zu mode %d: %d, expected %d\n", i, mode, res,
                                        bad_wire[i].expect);
                                exit(1);
                        }
                        ipc_record_done(&got);
                        ipc_parser_done(&p);
                }
        }

        for (size_t i = 0; i < ELEMENTSOF(ints); i++) {
                _cleanup_ipc_record_ IpcRecord r = IPC_RECORD_INIT;
                long long n = -1;
                CHECK_INT(ipc_record_add(&r, "n", ints[i].v), 0);
                CHECK_INT(ipc_record_get_int(&r, "n", &n), ints[i].expect);
                if (ints[i].expect == 0)
                        CHECK_INT(n, ints[i].n);
                CHECK_INT(ipc_record_get_int(&r, "missing", &n), -ENOENT);
        }

        /* oversized: one endless line, and many lines */
        char *big = malloc(IPC_RECORD_MAX + 2);
        CHECK(big);
        memset(big, 'a', IPC_RECORD_MAX + 1);
        big[0] = 'v';
        big[1] = '=';
        big[IPC_RECORD_MAX + 1] = '\0';
        {
                IpcParser p = IPC_PARSER_INIT;
                IpcRecord got = IPC_RECORD_INIT;
                size_t used;
                int res = 0;
                for (size_t off = 0; off < IPC_RECORD_MAX + 1 && res == 0; off += 4096)
                        res = ipc_parser_feed(&p, big + off, MIN(4096, IPC_RECORD_MAX + 1 - off), &used, &got);
                CHECK_INT(res, -EMSGSIZE);
                ipc_parser_done(&p);

                /* formatting refuses it too, and leaves the buffer alone */
                IpcRecord r = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&r, "v", big + 2), 0);
                StrBuf b = STRBUF_INIT;
                CHECK_INT(strbuf_puts(&b, "keep"), 0);
                CHECK_INT(ipc_record_format(&r, &b), -EMSGSIZE);
                CHECK_STR(b.data, "keep");
                strbuf_done(&b);
                ipc_record_done(&r);

                /* just under the limit works: "v=" + value + "\n\n" */
                big[IPC_RECORD_MAX - 2] = '\0';
                CHECK_INT(ipc_record_add(&r, "v", big + 2), 0);
                CHECK_INT(ipc_record_format(&r, &b), 0);
                CHECK_INT(b.len, IPC_RECORD_MAX);
                CHECK_INT(ipc_parser_feed(&p, b.data, b.len, &used, &got), 1);
                CHECK_INT(strlen(ipc_record_get(&got, "v")), IPC_RECORD_MAX - 4);
                ipc_record_done(&got);
                ipc_parser_done(&p);
                ipc_record_done(&r);
                strbuf_done(&b);
        }
        {
                IpcParser p = IPC_PARSER_INIT;
                IpcRecord got = IPC_RECORD_INIT;
                size_t used;
                int res = 0;
                for (size_t k = 0; k < IPC_RECORD_MAX && res == 0; k++)
                        res = ipc_parser_feed(&p, "a=\n", 3, &used, &got);
                CHECK_INT(res, -EMSGSIZE);
                ipc_parser_done(&p);
        }
        free(big);
}

/* A parser with limits of its own: the size and attribute limits are exact, and say which
 * one was hit. */
static void test_parser_limits(void) {
        static const struct { size_t max_size, max_attrs; const char *wire; int expect; bool attrs; } cases[] = {
                { 16, 0, "a=123456789012\n\n", 1, false },    /* 16 bytes: just fits */
                { 16, 0, "a=1234567890123\n\n", -EMSGSIZE, false },
                { 16, 0, "a=12345678901234567890", -EMSGSIZE, false },   /* unfinished, too long */
                { 0, 3, "a=1\nb=2\nc=3\n\n", 1, false },
                { 0, 3, "a=1\nb=2\nc=3\nd=4\n\n", -EMSGSIZE, true },
                { 4096, 2, "a=1\nb=2\nc\n\n", -EMSGSIZE, true },  /* the limit before the syntax */
                { 4096, 2, "a=1\nbad\n\n", -EBADMSG, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (int mode = 0; mode < 2; mode++) {
                        IpcParser p = IPC_PARSER_INIT;
                        IpcRecord got = IPC_RECORD_INIT;
                        const char *w = cases[i].wire;
                        size_t used;
                        int res = 0;
                        p.max_size = cases[i].max_size;
                        p.max_attrs = cases[i].max_attrs;
                        if (mode == 0)
                                res = ipc_parser_feed(&p, w, strlen(w), &used, &got);
                        else
                                for (size_t k = 0; k < strlen(w) && res == 0; k++)
                                        res = ipc_parser_feed(&p, w + k, 1, &used, &got);
                        if (res != cases[i].expect || (res < 0 && p.too_many_attrs != cases[i].attrs)) {
                                fprintf(stderr, "parser limits case %zu mode %d: %d (attrs %d)\n", i, mode,
                                        res, p.too_many_attrs);
                                exit(1);
                        }
                        /* the limits survive an error and a reset */
                        CHECK_INT(p.max_size, cases[i].max_size);
                        CHECK_INT(p.max_attrs, cases[i].max_attrs);
                        ipc_record_done(&got);
                        ipc_parser_done(&p);
                }
}

/* Connection counts per uid with caps, and the log rate limit. */
static void test_peers(void) {
        IpcPeers p = IPC_PEERS_INIT;
        const IpcPeerCaps caps = { .per_uid = 2, .per_trusted_uid = 3, .ordinary_max = 3, .trusted_uid = 500 };
        static const struct { uid_t uid; int expect; bool trusted; } steps[] = {
                { 1000, 0, false }, { 1000, 0, false }, { 1000, -EUSERS, false },
                { 0, 0, true }, { 0, 0, true }, { 0, 0, true }, { 0, -EUSERS, true },
                { 500, 0, true }, { 500, 0, true }, { 500, 0, true }, { 500, -EUSERS, true },
                { 1001, 0, false }, { 1002, -EMFILE, false },   /* 3 ordinary already */
                { 7, -EMFILE, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                bool trusted = !steps[i].trusted;
                int r = ipc_peers_admit(&p, &caps, steps[i].uid, &trusted);
                if (r != steps[i].expect || (r == 0 && trusted != steps[i].trusted)) {
                        fprintf(stderr, "peers step %zu: %d, expected %d\n", i, r, steps[i].expect);
                        exit(1);
                }
        }
        CHECK_INT(ipc_peers_count(&p, 1000), 2);
        CHECK_INT(ipc_peers_count(&p, 0), 3);
        CHECK_INT(ipc_peers_count(&p, 1002), 0);
        CHECK_INT(p.ordinary, 3);
        CHECK_INT(p.n, 4);   /* 0, 500, 1000, 1001 */
        for (size_t i = 1; i < p.n; i++)
                CHECK(p.v[i - 1].uid < p.v[i].uid);

        /* a released place is free again, for the same uid or another */
        bool trusted;
        ipc_peers_release(&p, 1001, false);
        CHECK_INT(ipc_peers_count(&p, 1001), 0);
        CHECK_INT(p.n, 3);
        CHECK_INT(ipc_peers_admit(&p, &caps, 1002, &trusted), 0);
        CHECK(!trusted);
        ipc_peers_release(&p, 0, true);
        CHECK_INT(ipc_peers_admit(&p, &caps, 0, &trusted), 0);
        CHECK(trusted);
        ipc_peers_release(&p, 4242, false);   /* unknown: ignored */
        CHECK_INT(p.ordinary, 3);
        /* no caps: anything goes */
        const IpcPeerCaps none = {};
        for (int i = 0; i < 100; i++)
                CHECK_INT(ipc_peers_admit(&p, &none, 1000, &trusted), 0);
        CHECK_INT(ipc_peers_count(&p, 1000), 102);
        ipc_peers_done(&p);
        CHECK_INT(p.n, 0);

        /* IPC_LOG_BURST lines per window; the next window's first line counts what was dropped */
        IpcLogLimit l = {};
        unsigned suppressed = 99;
        usec_t t = 5 * USEC_PER_SEC;
        for (int i = 0; i < IPC_LOG_BURST; i++) {
                CHECK(ipc_log_limit_allow(&l, t + (usec_t) i, &suppressed));
                CHECK_INT(suppressed, 0);
        }
        for (int i = 0; i < 1000; i++)
                CHECK(!ipc_log_limit_allow(&l, t + IPC_LOG_INTERVAL_USEC - 1, &suppressed));
        CHECK(ipc_log_limit_allow(&l, t + IPC_LOG_INTERVAL_USEC, &suppressed));
        CHECK_INT(suppressed, 1000);
        CHECK(ipc_log_limit_allow(&l, t + IPC_LOG_INTERVAL_USEC + 1, &suppressed));
        CHECK_INT(suppressed, 0);
}

/* --- server --- */

typedef struct Ctx {
        sd_event *event;
        IpcServer *server;
        IpcConn *delayed;           /* connection waiting for a delayed reply */
        char *delayed_value;
        IpcConn *never;             /* never answered (async timeout test) */
        int delayed_reset;          /* replies that found their peer gone */
        int wakeups;
        int async_done, async_expected;
        bool child_done;
        int child_status;
        int closes;                 /* connections the close handler was told about */
        bool never_closed;
        char path[108];
} Ctx;

static void on_conn_close(IpcConn *c, void *userdata) {
        Ctx *ctx = userdata;
        ctx->closes++;
        if (c == ctx->never)
                ctx->never_closed = true;
}

static int delayed_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        Ctx *ctx = userdata;
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
        CHECK_INT(ipc_record_add(&rep, "value", ctx->delayed_value), 0);
        bool gone = ipc_conn_peer_gone(ctx->delayed);
        int r = ipc_conn_reply(ctx->delayed, &rep);
        if (r == -ECONNRESET) {
                CHECK(gone);   /* whoever holds a reply learns beforehand that it cannot go out */
                ctx->delayed_reset++;
        } else
                CHECK_INT(r, 0);
        ctx->delayed = ipc_conn_unref(ctx->delayed);
        free(ctx->delayed_value);
        ctx->delayed_value = NULL;
        sd_event_source_unref(s);
        return 0;
}

static int handler(IpcConn *c, const IpcRecord *req, void *userdata) {
        Ctx *ctx = userdata;
        const char *verb = ipc_record_get(req, "request");
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;

        if (!verb)
                return ipc_conn_reply_error(c, "missing request");
        if (streq(verb, "echo")) {
                const char *v = ipc_record_get(req, "value");
                if (!v)
                        return ipc_conn_reply_error(c, "missing value");
                CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
                CHECK_INT(ipc_record_add(&rep, "value", v), 0);
                /* a second reply to the same request is refused */
                CHECK_INT(ipc_conn_reply(c, &rep), 0);
                int r = ipc_conn_reply(c, &rep);
                CHECK(r == -EBADE || r == -ECONNRESET);
                return 0;
        }
        if (streq(verb, "delay")) {
                const char *v = ipc_record_get(req, "value");
                CHECK(!ctx->delayed);
                ctx->delayed = ipc_conn_ref(c);
                ctx->delayed_value = strdup(v ? v : "");
                uint64_t now;
                sd_event_source *t;
                CHECK(sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) >= 0);
                CHECK(sd_event_add_time(ctx->event, &t, CLOCK_MONOTONIC, now + 50 * USEC_PER_MSEC, 0,
                                        delayed_fire, ctx) >= 0);
                return 0;
        }
        if (streq(verb, "never")) {
                CHECK(!ctx->never);
                ctx->never = ipc_conn_ref(c);
                return 0;
        }
        if (streq(verb, "whoami")) {
                uid_t uid;
                CHECK_INT(ipc_conn_peer_uid(c, &uid), 0);
                CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
                CHECK_INT(ipc_record_addf(&rep, "uid", "%u", (unsigned) uid), 0);
                return ipc_conn_reply(c, &rep);
        }
        if (streq(verb, "wakeup")) {
                ctx->wakeups++;
                CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
                (void) ipc_conn_reply(c, &rep);   /* the peer may be gone already */
                return 0;
        }
        if (streq(verb, "forget"))
                return 0;   /* neither replies nor keeps a reference */
        if (streq(verb, "drop"))
                return -EPROTO;
        return ipc_conn_reply_error(c, "unknown request");
}

static int connect_raw(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK(connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        return fd;
}

static void write_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
                if (k < 0)
                        return;   /* the server may close on us */
                s += k;
                n -= (size_t) k;
        }
}

/* Reads until EOF; true when EOF came within timeout_ms. */
static bool wait_eof(int fd, int timeout_ms) {
        char buf[4096];
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                if (poll(&pfd, 1, timeout_ms) <= 0)
                        return false;
                ssize_t k = read(fd, buf, sizeof buf);
                if (k <= 0)
                        return true;
        }
}

static void call_echo(const char *path, const char *value) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_record_add(&req, "value", value), 0);
        CHECK_INT(ipc_call(path, &req, &rep, 5 * USEC_PER_SEC), 0);
        CHECK_STR(ipc_record_get(&rep, "status"), "ok");
        CHECK_STR(ipc_record_get(&rep, "value"), value);
}

static int child_main(const char *path) {
        /* plain calls with hostile values */
        for (size_t i = 0; i < ELEMENTSOF(hostile); i++)
                call_echo(path, hostile[i]);

        /* missing attribute, unknown verb, empty record */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT, rep2 = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
                CHECK_INT(ipc_call(path, &req, &rep, 0), 0);
                CHECK_STR(ipc_record_get(&rep, "status"), "error");
                CHECK_STR(ipc_record_get(&rep, "reason"), "missing value");
                IpcRecord empty = IPC_RECORD_INIT;
                CHECK_INT(ipc_call(path, &empty, &rep2, 0), 0);
                CHECK_STR(ipc_record_get(&rep2, "status"), "error");
        }

        /* a handler that forgets to answer does not hang the client */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "forget"), 0);
                CHECK_INT(ipc_call(path, &req, &rep, 5 * USEC_PER_SEC), 0);
                CHECK_STR(ipc_record_get(&rep, "status"), "error");
                CHECK_STR(ipc_record_get(&rep, "reason"), "request not answered");
        }

        /* peer credentials */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "whoami"), 0);
                CHECK_INT(ipc_call(path, &req, &rep, 0), 0);
                long long uid;
                CHECK_INT(ipc_record_get_int(&rep, "uid", &uid), 0);
                CHECK_INT(uid, getuid());
        }

        /* delayed reply */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "delay"), 0);
                CHECK_INT(ipc_record_add(&req, "value", "later"), 0);
                CHECK_INT(ipc_call(path, &req, &rep, 0), 0);
                CHECK_STR(ipc_record_get(&rep, "value"), "later");
        }

        /* pipelining on one connection: three requests at once, replies in order */
        {
                _cleanup_close_ int fd = connect_raw(path);
                _cleanup_strbuf_ StrBuf w = STRBUF_INIT;
                for (int i = 0; i < 3; i++) {
                        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                        CHECK_INT(ipc_record_add(&req, "request", i == 1 ? "delay" : "echo"), 0);
                        CHECK_INT(ipc_record_addf(&req, "value", "n%d", i), 0);
                        CHECK_INT(ipc_record_format(&req, &w), 0);
                }
                write_all(fd, w.data, w.len);
                for (int i = 0; i < 3; i++) {
                        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
                        char want[16];
                        snprintf(want, sizeof want, "n%d", i);
                        CHECK_INT(ipc_recv(fd, &rep, 5 * USEC_PER_SEC), 0);
                        CHECK_STR(ipc_record_get(&rep, "value"), want);
                }
                /* ipc_send on the same connection still works */
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
                CHECK_INT(ipc_record_add(&req, "value", "again"), 0);
                CHECK_INT(ipc_send(fd, &req), 0);
                CHECK_INT(ipc_recv(fd, &rep, 0), 0);
                CHECK_STR(ipc_record_get(&rep, "value"), "again");
        }

        /* many connections at once, each with a request in flight */
        {
                enum { NCONN = 200 };
                int fds[NCONN];
                for (int i = 0; i < NCONN; i++) {
                        char req[64];
                        fds[i] = connect_raw(path);
                        int n = snprintf(req, sizeof req, "request=echo\nvalue=c%d\n\n", i);
                        write_all(fds[i], req, (size_t) n);
                }
                for (int i = NCONN - 1; i >= 0; i--) {
                        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
                        char want[16];
                        snprintf(want, sizeof want, "c%d", i);
                        CHECK_INT(ipc_recv(fds[i], &rep, 5 * USEC_PER_SEC), 0);
                        CHECK_STR(ipc_record_get(&rep, "value"), want);
                        close(fds[i]);
                }
        }

        /* malformed record: status=error, then the server closes */
        {
                _cleanup_close_ int fd = connect_raw(path);
                write_all(fd, "request=echo\ngarbage\n\n", 22);
                _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_recv(fd, &rep, 5 * USEC_PER_SEC), 0);
                CHECK_STR(ipc_record_get(&rep, "status"), "error");
                CHECK(wait_eof(fd, 5000));
        }

        /* oversized record: the server closes without reading it all */
        {
                _cleanup_close_ int fd = connect_raw(path);
                size_t n = IPC_RECORD_MAX + 8192;
                char *big = malloc(n);
                CHECK(big);
                memset(big, 'x', n);
                memcpy(big, "v=", 2);
                write_all(fd, big, n);
                free(big);
                CHECK(wait_eof(fd, 5000));
        }

        /* handler asks to drop the connection */
        {
                _cleanup_close_ int fd = connect_raw(path);
                write_all(fd, "request=drop\n\n", 14);
                CHECK(wait_eof(fd, 5000));
        }

        /* peers that disconnect mid-request and mid-delayed-reply */
        for (int i = 0; i < 20; i++) {
                int fd = connect_raw(path);
                write_all(fd, "request=echo\nvalue=par", 22);
                close(fd);
        }
        {
                int fd = connect_raw(path);
                write_all(fd, "request=delay\nvalue=gone\n\n", 26);
                usleep(10 * 1000);
                close(fd);
        }
        usleep(100 * 1000);

        /* one-way wake-ups never block and the server survives them */
        for (int i = 0; i < 50; i++) {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "wakeup"), 0);
                CHECK_INT(ipc_send_oneway(path, &req), 0);   /* backlog 128: never full here */
        }
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "wakeup"), 0);
                CHECK_INT(ipc_send_oneway("/nonexistent/socket", &req), -ENOENT);
        }

        /* idle connections are closed by the server (idle timeout 300 ms in this test) */
        {
                _cleanup_close_ int fd = connect_raw(path);
                CHECK(wait_eof(fd, 5000));
        }

        /* the server still works after all that */
        call_echo(path, "still alive");

        /* a call to nothing */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
                CHECK_INT(ipc_call("/nonexistent/socket", &req, &rep, 0), -ENOENT);
        }
        return 0;
}

static void async_echo_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, 0);
        CHECK_STR(ipc_record_get(reply, "status"), "ok");
        CHECK_STR(ipc_record_get(reply, "value"), "async\nvalue");
        ctx->async_done++;
}

static void async_delay_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, 0);
        CHECK_STR(ipc_record_get(reply, "value"), "async-later");
        ctx->async_done++;
}

static void async_timeout_done(int error, const IpcRecord *reply, void *userdata) {
        Ctx *ctx = userdata;
        CHECK_INT(error, -ETIMEDOUT);
        CHECK(reply == NULL);
        ctx->async_done++;
}

static void async_never_called(int error, const IpcRecord *reply, void *userdata) {
        fprintf(stderr, "cancelled call's handler ran\n");
        exit(1);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Ctx *ctx = userdata;
        ctx->child_done = true;
        ctx->child_status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        /* now that the child's delayed requests are done, a delayed reply to an async call */
        _cleanup_ipc_record_ IpcRecord dreq = IPC_RECORD_INIT;
        CHECK(!ctx->delayed);
        CHECK_INT(ipc_record_add(&dreq, "request", "delay"), 0);
        CHECK_INT(ipc_record_add(&dreq, "value", "async-later"), 0);
        CHECK_INT(ipc_client_call_async(ctx->event, ctx->path, &dreq, 5 * USEC_PER_SEC, async_delay_done,
                                        ctx, NULL), 0);
        return 0;
}

static int on_check(sd_event_source *s, uint64_t usec, void *userdata) {
        Ctx *ctx = userdata;
        if (ctx->child_done && ctx->async_done == ctx->async_expected) {
                sd_event_exit(ctx->event, 0);
                return 0;
        }
        sd_event_source_set_time(s, usec + 20 * USEC_PER_MSEC);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        fprintf(stderr, "test timed out\n");
        exit(1);
}

static int count_fds(void) {
        int n = 0;
        for (int fd = 0; fd < 4096; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

/* A listening socket <dir>/sock in a new temporary directory (dir: a mkdtemp() template). */
static int listen_temp(char *dir, char *path, size_t size) {
        CHECK(mkdtemp(dir));
        snprintf(path, size, "%s/sock", dir);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(lfd >= 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        CHECK(listen(lfd, 128) == 0);
        return lfd;
}

/* Runs client(path) in a child; SIGCHLD stays blocked here, for sd_event_add_child(). */
static pid_t fork_client(int (*client)(const char *path), const char *path) {
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        CHECK(sigprocmask(SIG_BLOCK, &ss, NULL) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &ss, NULL);
                _exit(client(path));
        }
        return pid;
}

static void test_server(void) {
        Ctx ctx = {};
        int fds_before = count_fds();
        char dir[] = "/tmp/test-ipc-XXXXXX";
        int lfd = listen_temp(dir, ctx.path, sizeof ctx.path);

        CHECK(sd_event_new(&ctx.event) >= 0);
        CHECK_INT(ipc_server_new(ctx.event, lfd, handler, &ctx, &ctx.server), 0);
        CHECK_INT(ipc_server_set_idle_timeout(ctx.server, 300 * USEC_PER_MSEC), 0);
        ipc_server_set_close_handler(ctx.server, on_conn_close);

        pid_t pid = fork_client(child_main, ctx.path);
        CHECK(sd_event_add_child(ctx.event, NULL, pid, WEXITED, on_child, &ctx) >= 0);

        /* async calls from the same loop */
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, nreq = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_record_add(&req, "value", "async\nvalue"), 0);
        CHECK_INT(ipc_client_call_async(ctx.event, ctx.path, &req, 5 * USEC_PER_SEC, async_echo_done, &ctx, NULL), 0);
        for (int i = 0; i < 99; i++)
                CHECK_INT(ipc_client_call_async(ctx.event, ctx.path, &req, 5 * USEC_PER_SEC, async_echo_done, &ctx, NULL), 0);
        IpcCall *cancelled = NULL;
        CHECK_INT(ipc_client_call_async(ctx.event, ctx.path, &req, 0, async_never_called, &ctx, &cancelled), 0);
        ipc_call_cancel(cancelled);
        CHECK_INT(ipc_record_add(&nreq, "request", "never"), 0);
        CHECK_INT(ipc_client_call_async(ctx.event, ctx.path, &nreq, 100 * USEC_PER_MSEC, async_timeout_done, &ctx, NULL), 0);
        CHECK_INT(ipc_client_call_async(ctx.event, "/nonexistent/socket", &req, 0, async_never_called, &ctx, NULL), -ENOENT);

        uint64_t now;
        CHECK(sd_event_now(ctx.event, CLOCK_MONOTONIC, &now) >= 0);
        CHECK(sd_event_add_time(ctx.event, NULL, CLOCK_MONOTONIC, now + 50 * USEC_PER_SEC, 0, on_deadline, NULL) >= 0);
        CHECK(sd_event_add_time(ctx.event, NULL, CLOCK_MONOTONIC, now + 20 * USEC_PER_MSEC, 0, on_check, &ctx) >= 0);

        ctx.async_expected = 102;
        CHECK(sd_event_loop(ctx.event) >= 0);
        CHECK_INT(ctx.child_status, 0);
        CHECK_INT(ctx.async_done, 102);
        CHECK(ctx.delayed_reset >= 1);   /* the peer that left before its delayed reply */
        CHECK(!ctx.delayed);
        CHECK_INT(ctx.wakeups, 50);   /* every one-way record was read although its peer left */

        /* the connection of the "never" request: a late reply after the server is gone fails */
        CHECK(ctx.never);
        CHECK(ipc_server_connections(ctx.server) <= 1);
        int closes = ctx.closes;
        CHECK(closes >= 101);   /* the async calls' connections, at least */
        size_t open_conns = ipc_server_connections(ctx.server);
        ipc_server_free(ctx.server);
        CHECK_INT(ctx.closes, closes + (int) open_conns);   /* told about those closed by free too */
        CHECK(ctx.never_closed);
        _cleanup_ipc_record_ IpcRecord late = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&late, "status", "ok"), 0);
        CHECK_INT(ipc_conn_reply(ctx.never, &late), -ECONNRESET);
        ipc_conn_unref(ctx.never);

        sd_event_unref(ctx.event);
        CHECK_INT(count_fds(), fds_before);   /* no connection, listener or epoll fd leaked */
        unlink(ctx.path);
        rmdir(dir);
}

/* --- a server with the limits of a public socket --- */

#define LIMITED_RECORD_MAX 256
#define LIMITED_ATTRS_MAX 8
#define LIMITED_DEADLINE_USEC (400 * USEC_PER_MSEC)
#define LIMITED_PER_UID 3

typedef struct LimitCtx {
        sd_event *event;
        IpcServer *server;
        int status;
        unsigned events;
        unsigned by_limit[IPC_LIMIT_CONNS_ORDINARY + 1];
        char first[256];
} LimitCtx;

static void on_limit(const IpcLimitEvent *ev, void *userdata) {
        LimitCtx *ctx = userdata;
        if (ctx->events++ == 0)
                snprintf(ctx->first, sizeof ctx->first, "%s", ev->text);
        ctx->by_limit[ev->limit]++;
}

static int limit_handler(IpcConn *c, const IpcRecord *req, void *userdata) {
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
        const char *v = ipc_record_get(req, "value");
        CHECK_INT(ipc_record_add(&rep, "status", "ok"), 0);
        CHECK_INT(ipc_record_add(&rep, "value", v ? v : ""), 0);
        return ipc_conn_reply(c, &rep);
}

/* Reads the answer to a refused request or connection, then EOF. */
static void expect_refused(int fd, const char *reason) {
        _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
        CHECK_INT(ipc_recv(fd, &rep, 3 * USEC_PER_SEC), 0);
        CHECK_STR(ipc_record_get(&rep, "status"), "error");
        CHECK_STR(ipc_record_get(&rep, "reason"), reason);
        CHECK(wait_eof(fd, 3000));
}

/* An echo on an open connection: "ok", or the refusal's reason. */
static const char *echo_on(int fd, char *buf, size_t size) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
        CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
        CHECK_INT(ipc_record_add(&req, "value", "v"), 0);
        if (ipc_send(fd, &req) < 0 && ipc_recv(fd, &rep, 3 * USEC_PER_SEC) < 0)
                return "closed";
        if (rep.n == 0)
                CHECK_INT(ipc_recv(fd, &rep, 3 * USEC_PER_SEC), 0);
        const char *status = ipc_record_get(&rep, "status");
        snprintf(buf, size, "%s", status && streq(status, "ok") ? "ok" : strna(ipc_record_get(&rep, "reason")));
        return buf;
}

/* Connects and sends head, then 'x's and the end of the record: size bytes in all. */
static int send_padded(const char *path, const char *head, size_t size) {
        char req[LIMITED_RECORD_MAX * 2];
        size_t n = strlen(head);
        CHECK(size <= sizeof req && n + 2 <= size);
        memcpy(req, head, n);
        memset(req + n, 'x', size - 2 - n);
        memcpy(req + size - 2, "\n\n", 2);
        int fd = connect_raw(path);
        write_all(fd, req, size);
        return fd;
}

static int limited_child(const char *path) {
        char buf[128];

        /* within the limits: LIMITED_ATTRS_MAX attributes, LIMITED_RECORD_MAX bytes */
        {
                _cleanup_close_ int fd = send_padded(path, "request=echo\na=1\nb=2\nc=3\nd=4\ne=5\nf=6\nvalue=",
                                                     LIMITED_RECORD_MAX);
                _cleanup_ipc_record_ IpcRecord rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_recv(fd, &rep, 3 * USEC_PER_SEC), 0);
                CHECK_STR(ipc_record_get(&rep, "status"), "ok");
        }
        /* one byte more than the size limit; one attribute more than allowed */
        {
                _cleanup_close_ int fd = send_padded(path, "request=echo\nvalue=", LIMITED_RECORD_MAX + 1);
                expect_refused(fd, "record too large");
        }
        {
                _cleanup_close_ int fd = connect_raw(path);
                const char *req = "request=echo\na=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nvalue=v\n\n";
                write_all(fd, req, strlen(req));
                expect_refused(fd, "too many attributes");
        }

        /* a record trickled in one byte every 40 ms is cut at its deadline although bytes keep
         * coming (they used to restart the idle timer); an idle connection opened at the same time
         * stays (only the idle timeout applies between records), and so does one between two
         * requests */
        {
                _cleanup_close_ int fd = connect_raw(path), idle = connect_raw(path), between = connect_raw(path);
                CHECK_STR(echo_on(between, buf, sizeof buf), "ok");
                write_all(fd, "request=echo\nvalue=", 19);
                usec_t t0 = now_usec(CLOCK_MONOTONIC), took = 0;
                bool answered = false;
                while (!answered && took < 3 * USEC_PER_SEC) {
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };
                        answered = poll(&pfd, 1, 40) > 0;
                        took = now_usec(CLOCK_MONOTONIC) - t0;
                        if (!answered)
                                (void) send(fd, "a", 1, MSG_NOSIGNAL);
                }
                /* the server's clock is its loop's last wake-up, a little before the bytes came */
                if (!answered || took < LIMITED_DEADLINE_USEC - 100 * USEC_PER_MSEC ||
                    took > LIMITED_DEADLINE_USEC + 600 * USEC_PER_MSEC) {
                        fprintf(stderr, "trickled record: answered=%d after %llu ms\n", answered,
                                (unsigned long long) (took / USEC_PER_MSEC));
                        exit(1);
                }
                expect_refused(fd, "request not finished in time");
                CHECK(!wait_eof(idle, 0));
                CHECK_STR(echo_on(idle, buf, sizeof buf), "ok");
                CHECK_STR(echo_on(between, buf, sizeof buf), "ok");
        }

        /* per-uid cap: hold LIMITED_PER_UID connections (earlier ones may still be counted until
         * the server has seen them close: retry), then one more is refused right away */
        int held[LIMITED_PER_UID];
        for (int i = 0; i < LIMITED_PER_UID; i++) {
                usec_t t0 = now_usec(CLOCK_MONOTONIC);
                for (;;) {
                        held[i] = connect_raw(path);
                        if (streq(echo_on(held[i], buf, sizeof buf), "ok"))
                                break;
                        CHECK_STR(buf, "too many connections");
                        close(held[i]);
                        CHECK(now_usec(CLOCK_MONOTONIC) - t0 < 3 * USEC_PER_SEC);
                        usleep(20 * 1000);
                }
        }
        for (int i = 0; i < 10; i++) {
                _cleanup_close_ int fd = connect_raw(path);
                expect_refused(fd, "too many connections");
        }
        /* ipc_call() returns the refusal as the reply */
        {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, rep = IPC_RECORD_INIT;
                CHECK_INT(ipc_record_add(&req, "request", "echo"), 0);
                CHECK_INT(ipc_record_add(&req, "value", "v"), 0);
                CHECK_INT(ipc_call(path, &req, &rep, 3 * USEC_PER_SEC), 0);
                CHECK_STR(ipc_record_get(&rep, "status"), "error");
                CHECK_STR(ipc_record_get(&rep, "reason"), "too many connections");
        }
        /* the held ones still work; closing one makes room */
        CHECK_STR(echo_on(held[1], buf, sizeof buf), "ok");
        close(held[0]);
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        for (;;) {
                held[0] = connect_raw(path);
                if (streq(echo_on(held[0], buf, sizeof buf), "ok"))
                        break;
                close(held[0]);
                CHECK(now_usec(CLOCK_MONOTONIC) - t0 < 3 * USEC_PER_SEC);
                usleep(20 * 1000);
        }
        for (int i = 0; i < LIMITED_PER_UID; i++)
                close(held[i]);
        return 0;
}

static int on_limited_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        LimitCtx *ctx = userdata;
        ctx->status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        return sd_event_exit(ctx->event, 0);
}

static void test_server_limits(void) {
        LimitCtx ctx = {};
        char dir[] = "/tmp/test-ipc-XXXXXX", path[108];
        int lfd = listen_temp(dir, path, sizeof path);

        CHECK(sd_event_new(&ctx.event) >= 0);
        CHECK_INT(ipc_server_new(ctx.event, lfd, limit_handler, &ctx, &ctx.server), 0);
        /* idle connections would be closed after 5 s: far beyond the record deadline */
        CHECK_INT(ipc_server_set_idle_timeout(ctx.server, 5 * USEC_PER_SEC), 0);
        /* the test may run as root or not: the same cap for trusted and ordinary uids */
        IpcServerLimits limits = {
                .record_max = LIMITED_RECORD_MAX, .record_attrs_max = LIMITED_ATTRS_MAX,
                .record_deadline = LIMITED_DEADLINE_USEC,
                .conns = { .per_uid = LIMITED_PER_UID, .per_trusted_uid = LIMITED_PER_UID, .ordinary_max = 100 },
        };
        CHECK_INT(ipc_server_set_limits(ctx.server, &limits), 0);
        ipc_server_set_limit_handler(ctx.server, on_limit);

        pid_t pid = fork_client(limited_child, path);
        CHECK(sd_event_add_child(ctx.event, NULL, pid, WEXITED, on_limited_child, &ctx) >= 0);
        uint64_t now;
        CHECK(sd_event_now(ctx.event, CLOCK_MONOTONIC, &now) >= 0);
        CHECK(sd_event_add_time(ctx.event, NULL, CLOCK_MONOTONIC, now + 30 * USEC_PER_SEC, 0, on_deadline, NULL) >= 0);
        CHECK(sd_event_loop(ctx.event) >= 0);
        CHECK_INT(ctx.status, 0);

        /* 14 limits hit at least, IPC_LOG_BURST reported within the window; the first names the
         * peer and the limit */
        CHECK_INT(ctx.events, IPC_LOG_BURST);
        CHECK_INT(ctx.by_limit[IPC_LIMIT_RECORD_SIZE], 1);
        CHECK_INT(ctx.by_limit[IPC_LIMIT_RECORD_ATTRS], 1);
        CHECK_INT(ctx.by_limit[IPC_LIMIT_RECORD_TIME], 1);
        CHECK_INT(ctx.by_limit[IPC_LIMIT_CONNS_PER_UID], IPC_LOG_BURST - 3);
        char want[128];
        snprintf(want, sizeof want, "peer uid=%u pid=%d: request larger than %d bytes; closed",
                 (unsigned) getuid(), (int) pid, LIMITED_RECORD_MAX);
        CHECK_STR(ctx.first, want);

        ipc_server_free(ctx.server);
        sd_event_unref(ctx.event);
        unlink(path);
        rmdir(dir);
}

/* Random byte streams fed in random chunks: the parser never crashes, returns only the
 * documented values, and records it returns hold only valid names and NUL-free values. */
static void test_random(void) {
        static const char alphabet[] = "ab=+0A\n\n.-_ \x00\xff";
        uint64_t x = 0x2545F4914F6CDD1DULL;
        char buf[128];

        for (int iter = 0; iter < 100000; iter++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                size_t n = x % sizeof buf;
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        buf[i] = alphabet[x % (sizeof alphabet - 1)];
                }
                IpcParser p = IPC_PARSER_INIT;
                size_t off = 0;
                while (off < n) {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        size_t chunk = 1 + x % (n - off);
                        IpcRecord rec = IPC_RECORD_INIT;
                        size_t used = 0;
                        int r = ipc_parser_feed(&p, buf + off, chunk, &used, &rec);
                        CHECK(used <= chunk);
                        CHECK(r == 0 || r == 1 || r == -EBADMSG);
                        if (r == 1)
                                for (size_t k = 0; k < rec.n; k++) {
                                        CHECK(strlen(rec.attrs[k].name) > 0);
                                        CHECK(!strpbrk(rec.attrs[k].name, "=+ \n"));
                                }
                        ipc_record_done(&rec);
                        if (r < 0)
                                break;
                        CHECK(r == 1 || used == chunk);
                        off += used;
                }
                ipc_parser_done(&p);
        }
}

int main(void) {
        test_random();
        test_codec();
        test_pipe();
        test_limits();
        test_parser_limits();
        test_peers();
        test_server();
        test_server_limits();
        return 0;
}
