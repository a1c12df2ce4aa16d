/* test-ipc.c — unit tests for the attribute protocol: the record codec (hostile values,
 * names, limits), the incremental parser fed byte by byte, and a real IpcServer on a temporary
 * AF_UNIX socket driven both by a forked child with the blocking API (echo, pipelining, delayed
 * reply, malformed and oversized records, mid-request disconnects, one-way wake-ups, idle
 * timeout) and by ipc_client_call_async() in the server's own sd-event loop. */
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
        int r = ipc_conn_reply(ctx->delayed, &rep);
        if (r == -ECONNRESET)
                ctx->delayed_reset++;
        else
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

static void test_server(void) {
        Ctx ctx = {};
        int fds_before = count_fds();
        char dir[] = "/tmp/test-ipc-XXXXXX";
        CHECK(mkdtemp(dir));
        snprintf(ctx.path, sizeof ctx.path, "%s/sock", dir);

        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(lfd >= 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ctx.path);
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        CHECK(listen(lfd, 128) == 0);

        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        CHECK(sigprocmask(SIG_BLOCK, &ss, NULL) == 0);

        CHECK(sd_event_new(&ctx.event) >= 0);
        CHECK_INT(ipc_server_new(ctx.event, lfd, handler, &ctx, &ctx.server), 0);
        CHECK_INT(ipc_server_set_idle_timeout(ctx.server, 300 * USEC_PER_MSEC), 0);
        ipc_server_set_close_handler(ctx.server, on_conn_close);

        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &ss, NULL);
                _exit(child_main(ctx.path));
        }
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
        test_server();
        return 0;
}
