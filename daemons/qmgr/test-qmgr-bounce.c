/* test-qmgr-bounce.c — table-driven unit tests for qmgr's pure logic: backoff arithmetic,
 * expiry, delay formatting, routing, and the RFC 3464 report builder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "qmgr.h"

#define SEC USEC_PER_SEC

static void test_backoff(void) {
        QmgrSettings s = { .minimal_backoff = 300 * SEC, .maximal_backoff = 4000 * SEC };
        static const struct { uint32_t attempts; usec_t expect; } t[] = {
                { 0, 300 * SEC }, { 1, 300 * SEC }, { 2, 600 * SEC }, { 3, 1200 * SEC },
                { 4, 2400 * SEC }, { 5, 4000 * SEC }, { 6, 4000 * SEC }, { 1000000, 4000 * SEC },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                CHECK_INT(qmgr_backoff(&s, t[i].attempts), t[i].expect);

        QmgrSettings one = { .minimal_backoff = 1 * SEC, .maximal_backoff = 1 * SEC };
        CHECK_INT(qmgr_backoff(&one, 1), 1 * SEC);
        CHECK_INT(qmgr_backoff(&one, 40), 1 * SEC);
}

static void test_expired(void) {
        QmgrSettings s = { .maximal_queue_lifetime = 100 * SEC, .bounce_queue_lifetime = 10 * SEC };
        QueueMessage m = { .sender = (char *) "a@example.org", .arrival_usec = 1000 * SEC };
        CHECK(!qmgr_message_expired(&s, &m, 1050 * SEC));
        CHECK(qmgr_message_expired(&s, &m, 1100 * SEC));
        m.sender = (char *) "";
        CHECK(qmgr_message_expired(&s, &m, 1050 * SEC));
        m.sender = (char *) "a@example.org";
        m.is_bounce = true;
        CHECK(qmgr_message_expired(&s, &m, 1010 * SEC));
        CHECK(!qmgr_message_expired(&s, &m, 1009 * SEC));
        /* a clock that went backwards never expires mail */
        CHECK(!qmgr_message_expired(&s, &m, 10 * SEC));
}

static void test_route(void) {
        /* "example.net." with its trailing dot: smtpd accepted such mail as local while qmgr routed
         * it as remote, until all roles shared common/mail/domain-list.c. */
        char *names[] = { (char *) "postern.test", (char *) "localhost", (char *) "example.net.", NULL };
        char *none[] = { NULL };
        char **const lists[ADDR_CLASS_LISTS] = { names, none, none, none };
        QmgrSettings s = {};
        CHECK_INT(addr_classes_init(&s.classes, lists, NULL, NULL), 0);
        static const struct { const char *addr; const char *domain; QmgrRoute route; } t[] = {
                { "bob@postern.test", "postern.test", QMGR_ROUTE_LOCAL },
                { "bob@POSTERN.Test", "POSTERN.Test", QMGR_ROUTE_LOCAL },
                { "bob@localhost", "localhost", QMGR_ROUTE_LOCAL },
                { "bob", NULL, QMGR_ROUTE_LOCAL },
                { "\"a@b\"", NULL, QMGR_ROUTE_LOCAL },
                { "\"a@b\"@example.org", "example.org", QMGR_ROUTE_UNAVAILABLE },
                { "bob@sub.postern.test", "sub.postern.test", QMGR_ROUTE_UNAVAILABLE },
                { "bob@[192.0.2.1]", "[192.0.2.1]", QMGR_ROUTE_UNAVAILABLE },
                { "", NULL, QMGR_ROUTE_LOCAL },
                { "bob@example.net", "example.net", QMGR_ROUTE_LOCAL },
                { "bob@Example.Net.", "Example.Net.", QMGR_ROUTE_LOCAL },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                const char *d = qmgr_address_domain(t[i].addr);
                if (t[i].domain)
                        CHECK_STR(d, t[i].domain);
                else
                        CHECK(d == NULL);
                CHECK_INT(qmgr_route(&s, t[i].addr), t[i].route);
        }
        addr_classes_done(&s.classes);
}

static const char CONTENT[] =
        "Received: from client (localhost [127.0.0.1])\n"
        "\tby postern.test (Postern) with ESMTP id 4QF2K1C0X7ABZ\n"
        "From: Alice <alice@example.org>\n"
        "Subject: hello\n"
        "Message-ID: <m1@example.org>\n"
        "\n"
        "Body line one.\n"
        "Body line two.\n";

static char *build(const QueueMessage *m, const QmgrBounceRcpt *r, size_t n, size_t limit,
                   const char *content, bool *ret_8bit) {
        StrBuf out = STRBUF_INIT;
        QmgrBounceInput in = {
                .myhostname = "postern.test", .bounce_id = "4QF2K1C0X7BNC", .orig = m,
                .rcpts = r, .n_rcpts = n, .content = content, .content_len = strlen(content),
                .size_limit = limit, .now = 1800000000,
        };
        CHECK_INT(qmgr_bounce_build(&in, &out, ret_8bit), 0);
        return strbuf_steal(&out);
}

static void test_bounce(void) {
        QueueMessage m = { .queue_id = "4QF2K1C0X7ABZ", .sender = (char *) "alice@example.org",
                           .arrival_usec = 1799990000ULL * SEC };
        QmgrBounceRcpt r[] = {
                { .address = "bob@postern.test", .dsn = "5.1.1", .diag = "unknown user: \"bob\"",
                  .diag_type = "x-unix" },
                { .address = "carol@remote.example", .orcpt = "rfc822;Carol@Remote.Example",
                  .dsn = "4.3.0", .diag = "mail transport unavailable\r\nInjected: header",
                  .diag_type = "x-postern" },
                { .address = "dave@postern.test", .dsn = NULL, .diag = NULL },
        };
        bool eight = true;

        char *full = build(&m, r, ELEMENTSOF(r), 50000, CONTENT, &eight);
        CHECK(!eight);
        static const char *const expect_full[] = {
                "Auto-Submitted: auto-replied\n",
                "From: MAILER-DAEMON@postern.test (Mail Delivery System)\n",
                "To: alice@example.org\n",
                "Subject: Undelivered Mail Returned to Sender\n",
                "MIME-Version: 1.0\n",
                "Content-Type: multipart/report; report-type=delivery-status;\n"
                "\tboundary=\"4QF2K1C0X7BNC.1800000000/postern.test\"\n",
                "--4QF2K1C0X7BNC.1800000000/postern.test\n",
                "Content-Type: message/delivery-status\n\nReporting-MTA: dns; postern.test\n",
                "<bob@postern.test>: unknown user: \"bob\"\n",
                "<carol@remote.example> (originally <Carol@Remote.Example>): mail transport unavailable  Injected: header\n",
                "Final-Recipient: rfc822; bob@postern.test\nAction: failed\nStatus: 5.1.1\n"
                "Diagnostic-Code: x-unix; unknown user: \"bob\"\n",
                "Final-Recipient: rfc822; carol@remote.example\n"
                "Original-Recipient: rfc822; Carol@Remote.Example\nAction: failed\nStatus: 4.3.0\n"
                "Diagnostic-Code: x-postern; mail transport unavailable  Injected: header\n",
                "Final-Recipient: rfc822; dave@postern.test\nAction: failed\nStatus: 5.0.0\n",
                "Content-Type: message/rfc822\n\nReceived: from client",
                "Body line two.\n\n--4QF2K1C0X7BNC.1800000000/postern.test--\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(expect_full); i++)
                if (!strstr(full, expect_full[i])) {
                        fprintf(stderr, "missing:\n%s\nin:\n%s\n", expect_full[i], full);
                        CHECK(false);
                }
        CHECK(!strstr(full, "\nInjected:"));
        CHECK(!strstr(full, "\r"));
        free(full);

        /* Too large for bounce_size_limit: the header section only. */
        char *hdrs = build(&m, r, 1, 100, CONTENT, NULL);
        CHECK(strstr(hdrs, "Content-Type: text/rfc822-headers\n\nReceived: from client"));
        CHECK(!strstr(hdrs, "Body line"));
        CHECK(!strstr(hdrs, "message/rfc822"));
        free(hdrs);

        /* RET=HDRS: the header section only, however small. */
        m.ret = 2;
        hdrs = build(&m, r, 1, 50000, CONTENT, NULL);
        CHECK(strstr(hdrs, "Content-Type: text/rfc822-headers\n\nReceived: from client"));
        CHECK(strstr(hdrs, "Message-ID: <m1@example.org>\n\n--"));
        CHECK(!strstr(hdrs, "Body line"));
        free(hdrs);
        m.ret = 0;

        /* REQUIRETLS: the header section only, whatever RET says (the notice goes without it). */
        m.requiretls = true;
        m.ret = 1;
        hdrs = build(&m, r, 1, 50000, CONTENT, NULL);
        CHECK(strstr(hdrs, "Content-Type: text/rfc822-headers\n\nReceived: from client"));
        CHECK(!strstr(hdrs, "Body line"));
        free(hdrs);
        m.requiretls = false;
        m.ret = 0;

        /* 8-bit text in the original marks the report 8bit. */
        char *e = build(&m, r, 1, 50000, "Subject: caf\xc3\xa9\n\nna\xc3\xafve\n", &eight);
        CHECK(eight);
        CHECK(strstr(e, "Content-Transfer-Encoding: 8bit\n"));
        free(e);

        /* A message without a body or final newline still gives a well-formed report. */
        char *t = build(&m, r, 1, 50000, "Subject: x", NULL);
        CHECK(strstr(t, "Subject: x\n\n--4QF2K1C0X7BNC.1800000000/postern.test--\n"));
        free(t);
}

static char *build_kind(const QueueMessage *m, const QmgrBounceRcpt *r, size_t n, QmgrNoticeKind kind,
                        const char *to, time_t retry_until) {
        StrBuf out = STRBUF_INIT;
        QmgrBounceInput in = {
                .myhostname = "postern.test", .bounce_id = "4QF2K1C0X7BNC", .orig = m,
                .rcpts = r, .n_rcpts = n, .content = CONTENT, .content_len = strlen(CONTENT),
                .size_limit = 50000, .now = 1800000000, .kind = kind, .to = to,
                .retry_until = retry_until,
        };
        CHECK_INT(qmgr_bounce_build(&in, &out, NULL), 0);
        return strbuf_steal(&out);
}

static void expect_all(const char *text, const char *const *parts, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strstr(text, parts[i])) {
                        fprintf(stderr, "missing:\n%s\nin:\n%s\n", parts[i], text);
                        CHECK(false);
                }
}

/* Delay warnings, success notices and postmaster notices: their Action, Status (a status of
 * the wrong class falls back to the kind's x.0.0), Remote-MTA, Will-Retry-Until, what is
 * attached per RET, and who they are addressed to. */
static void test_notice_kinds(void) {
        QueueMessage m = { .queue_id = "4QF2K1C0X7ABZ", .sender = (char *) "alice@example.org",
                           .arrival_usec = 1799990000ULL * SEC, .envid = (char *) "env-42", .ret = 1 };
        QmgrBounceRcpt delayed[] = {
                { .address = "bob@remote.example", .dsn = "4.4.1", .diag = "connect to mx: refused",
                  .diag_type = "x-postern", .remote_mta = "mx.remote.example" },
                { .address = "carol@remote.example", .dsn = "5.1.1", .diag = "odd" },
        };
        char *d = build_kind(&m, delayed, ELEMENTSOF(delayed), QMGR_NOTICE_DELAY, NULL, 1800400000);
        static const char *const expect_delay[] = {
                "To: alice@example.org\n",
                "Subject: Delayed Mail (still being retried)\n",
                "Original-Envelope-Id: env-42\n",
                "Final-Recipient: rfc822; bob@remote.example\nAction: delayed\nStatus: 4.4.1\n"
                "Remote-MTA: dns; mx.remote.example\nDiagnostic-Code: x-postern; connect to mx: refused\n",
                "Will-Retry-Until: ",
                "Final-Recipient: rfc822; carol@remote.example\nAction: delayed\nStatus: 4.0.0\n",
                "Content-Type: text/rfc822-headers\n\nReceived: from client",
        };
        expect_all(d, expect_delay, ELEMENTSOF(expect_delay));
        CHECK(!strstr(d, "Body line"));   /* headers only, even with RET=FULL */
        free(d);

        QmgrBounceRcpt ok[] = {
                { .address = "bob@remote.example", .orcpt = "rfc822;Bob@Remote.Example", .dsn = "2.0.0",
                  .diag = "250 2.0.0 queued", .diag_type = "smtp", .action = "relayed",
                  .remote_mta = "mx.remote.example" },
                { .address = "dave@postern.test", .dsn = "2.1.5", .diag = "delivered to mailbox" },
        };
        char *s = build_kind(&m, ok, ELEMENTSOF(ok), QMGR_NOTICE_SUCCESS, NULL, 0);
        static const char *const expect_ok[] = {
                "Subject: Successful Mail Delivery Report\n",
                "Final-Recipient: rfc822; bob@remote.example\nOriginal-Recipient: rfc822; Bob@Remote.Example\n"
                "Action: relayed\nStatus: 2.0.0\nRemote-MTA: dns; mx.remote.example\n"
                "Diagnostic-Code: smtp; 250 2.0.0 queued\n",
                "Final-Recipient: rfc822; dave@postern.test\nAction: delivered\nStatus: 2.1.5\n",
                "Content-Type: message/rfc822\n\nReceived: from client",   /* RET=FULL */
        };
        expect_all(s, expect_ok, ELEMENTSOF(expect_ok));
        CHECK(!strstr(s, "Will-Retry-Until"));
        free(s);
        m.ret = 0;   /* success notices return the headers unless RET=FULL */
        s = build_kind(&m, ok, ELEMENTSOF(ok), QMGR_NOTICE_SUCCESS, NULL, 0);
        CHECK(strstr(s, "Content-Type: text/rfc822-headers\n"));
        free(s);

        m.sender = (char *) "";
        QmgrBounceRcpt failed[] = { { .address = "alice@example.org", .dsn = "5.1.1", .diag = "unknown" } };
        char *p = build_kind(&m, failed, 1, QMGR_NOTICE_POSTMASTER, "postmaster", 0);
        static const char *const expect_pm[] = {
                "To: postmaster\n",
                "Subject: Undeliverable Delivery Status Notification\n",
                "Action: failed\nStatus: 5.1.1\n",
                "Content-Type: message/rfc822\n",
        };
        expect_all(p, expect_pm, ELEMENTSOF(expect_pm));
        free(p);
}

/* The delivery status filter: a found "d.d.d text" replaces status and text; results that
 * are not "d.d.d text" or would turn a success into a failure (or back) are ignored. */
static void test_status_filter(void) {
        char path[] = "/tmp/test-qmgr-dsn-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        static const char rules[] =
                "/^5(\\.1\\.1 .*mailbox full.*)/ 4$1\n"
                "/^2\\.0\\.0 (delivered to file).*/ 2.0.0 $1\n"
                "/^4\\.4\\.1 .*/ 2.0.0 sneaky\n"
                "/^4\\.4\\.2 .*/ bad result\n";
        CHECK(write(fd, rules, strlen(rules)) == (ssize_t) strlen(rules));
        close(fd);
        _cleanup_free_ char *spec = NULL;
        CHECK(asprintf(&spec, "regexp:%s", path) > 0);
        QmgrSettings s = {};
        CHECK_INT(table_list_open(spec, 0, &s.status_filter_smtp, NULL), 0);
        CHECK_INT(table_list_open(spec, 0, &s.status_filter_default, NULL), 0);

#define B QUEUE_RCPT_BOUNCED
#define D QUEUE_RCPT_DEFERRED
#define OK QUEUE_RCPT_DELIVERED
        static const struct {
                const char *transport, *dsn, *diag, *want_dsn, *want_diag;
                QueueRcptState st, want_st;
        } t[] = {
                { "smtp", "5.1.1", "host x said: 550 mailbox full", "4.1.1", "host x said: 550 mailbox full", B, D },
                { "smtp", "5.1.1", "host x said: 550 no such user", "5.1.1", "host x said: 550 no such user", B, B },
                { "pipe", "2.0.0", "delivered to file: /var/x", "2.0.0", "delivered to file", OK, OK },
                { "smtp", "4.4.1", "connection refused", "4.4.1", "connection refused", D, D },
                { "smtp", "4.4.2", "lost connection", "4.4.2", "lost connection", D, D },
                { "local", "5.1.1", "mailbox full", "5.1.1", "mailbox full", B, B },   /* no local filter */
                { "lmtp", "5.1.1", "mailbox full", "5.1.1", "mailbox full", B, B },    /* nor lmtp */
                { "relay2", "5.1.1", "x mailbox full", "4.1.1", "x mailbox full", B, D }, /* default */
        };
#undef B
#undef D
#undef OK
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                const char *dsn = t[i].dsn, *diag = t[i].diag;
                QueueRcptState st = t[i].st;
                char buf[16];
                _cleanup_free_ char *owned = NULL;
                qmgr_dsn_filter(&s, "TESTID", t[i].transport, &st, &dsn, &diag, buf, &owned);
                CHECK(st == t[i].want_st);
                CHECK_STR(dsn, t[i].want_dsn);
                CHECK_STR(diag, t[i].want_diag);
        }
        s.status_filter_smtp = table_list_free(s.status_filter_smtp);
        s.status_filter_default = table_list_free(s.status_filter_default);
        unlink(path);

        /* soft_bounce: bounces become deferrals of class 4; other states are left alone. */
        s.soft_bounce = true;
        QueueRcptState st = QUEUE_RCPT_BOUNCED;
        char *dsn = strdup("5.7.1");
        qmgr_dsn_soft_bounce(&s, &st, &dsn);
        CHECK(st == QUEUE_RCPT_DEFERRED);
        CHECK_STR(dsn, "4.7.1");
        st = QUEUE_RCPT_DELIVERED;
        qmgr_dsn_soft_bounce(&s, &st, &dsn);
        CHECK(st == QUEUE_RCPT_DELIVERED);
        free(dsn);

        char *h = qmgr_dsn_relay_host("mx.example.net[192.0.2.1]:25");
        CHECK_STR(h, "mx.example.net");
        free(h);
        CHECK(!qmgr_dsn_relay_host("none"));
        CHECK(!qmgr_dsn_relay_host(NULL));
}

int main(void) {
        test_backoff();
        test_expired();
        test_route();
        test_bounce();
        test_notice_kinds();
        test_status_filter();
        return 0;
}
