/* test-qmgr-bounce.c — table-driven unit tests for qmgr's pure logic: backoff arithmetic,
 * expiry, delay formatting, routing, and the RFC 3464 report builder. */
#include <string.h>

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
        QmgrSettings s = {};
        CHECK_INT(domain_list_init(&s.mydestination, names, false, NULL), 0);
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
        domain_list_done(&s.mydestination);
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

int main(void) {
        test_backoff();
        test_expired();
        test_route();
        test_bounce();
        return 0;
}
