/* test-rfc822.c — unit tests for the RFC 5322 helpers: the header scanner over LF and CRLF
 * messages (folding, end of headers, no body, malformed lines, truncated input), header name
 * checks, rfc822_has_header, the Date: format and Message-ID. */
#include <stdint.h>
#include <time.h>

#include "rfc822.h"
#include "../basic/tests.h"

/* expected: "name=value|name=value|" then "#<body offset>" or "!" for -EBADMSG */
static const struct { const char *msg; const char *expect; } scans[] = {
        { "Subject: hi\nFrom: a@b\n\nbody\n", "Subject= hi|From= a@b|#23" },
        { "Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n", "Subject= hi|From= a@b|#26" },
        { "Subject: one\n two\n\tthree\nX: y\n\nB", "Subject= one\n two\n\tthree|X= y|#31" },
        { "Subject: one\r\n two\r\n\r\n", "Subject= one\r\n two|#22" },
        { "Subject: no body\n", "Subject= no body|#17" },
        { "Subject: no newline", "Subject= no newline|#19" },
        { "", "#0" },
        { "\nbody", "#1" },
        { "\r\nbody", "#2" },
        { "X-Empty:\nY:z\n\n", "X-Empty=|Y=z|#14" },
        { "Old : style\n\n", "Old= style|#13" },
        { "no colon here\n\n", "!" },
        { " leading: space\n", "!" },
        { "Good: 1\nbad line\n\n", "Good= 1|!" },
        { ": empty name\n", "!" },
        { "Bad Name: x\n", "!" },
        { "Bad\x01: x\n", "!" },
        { "Subject: a\n\nNot: a header\n", "Subject= a|#12" },
        { "A: 1\n \n\nx", "A= 1\n |#8" },
};

static void check_scan(size_t i) {
        const char *msg = scans[i].msg;
        size_t len = strlen(msg), pos = 0;
        char got[512] = "";
        Rfc822Header h;
        int r;

        while ((r = rfc822_next_header(msg, len, &pos, &h)) > 0) {
                CHECK(h.start >= msg && h.start + h.total_len <= msg + len);
                CHECK(h.value >= msg && h.value + h.value_len <= msg + len);
                size_t g = strlen(got);
                snprintf(got + g, sizeof got - g, "%.*s=%.*s|", (int) h.name_len, h.name,
                         (int) h.value_len, h.value);
        }
        size_t g = strlen(got);
        if (r < 0) {
                CHECK_INT(r, -EBADMSG);
                snprintf(got + g, sizeof got - g, "!");
        } else
                snprintf(got + g, sizeof got - g, "#%zu", pos);
        if (strcmp(got, scans[i].expect) != 0) {
                fprintf(stderr, "scan %zu: got \"%s\", expected \"%s\"\n", i, got, scans[i].expect);
                exit(1);
        }
}

static const struct { const char *name; bool valid; } names[] = {
        { "Subject", true }, { "X-Foo_Bar.1", true }, { "", false }, { "a b", false },
        { "a:b", false }, { "\x7f", false }, { "\xc3\xa4", false }, { "~!", true },
};

/* Random messages over an alphabet of structural bytes: the scanner stays in bounds, always
 * advances, and ends with 0 or -EBADMSG. */
static void check_random(void) {
        static const char alphabet[] = "A:\r\n \t\x01b\x80";
        uint64_t x = 0x9E3779B97F4A7C15ULL;
        char buf[64];

        for (int iter = 0; iter < 200000; iter++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                size_t n = x % sizeof buf;
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        buf[i] = alphabet[x % (sizeof alphabet - 1)];
                }
                size_t pos = 0, prev;
                Rfc822Header h;
                int r;
                do {
                        prev = pos;
                        r = rfc822_next_header(buf, n, &pos, &h);
                        CHECK(pos <= n);
                        if (r > 0) {
                                CHECK(pos > prev);
                                CHECK(h.name_len > 0 && h.start == buf + prev && h.total_len == pos - prev);
                                CHECK(h.value + h.value_len <= buf + n);
                        }
                } while (r > 0);
                CHECK(r == 0 || r == -EBADMSG);
                (void) rfc822_has_header(buf, n, "A");
        }
}

int main(void) {
        check_random();
        for (size_t i = 0; i < ELEMENTSOF(scans); i++)
                check_scan(i);

        /* a prefix of any length never reads out of bounds */
        const char *m = "Subject: one\r\n two\r\nFrom: x\r\n\r\nbody";
        for (size_t n = 0; n <= strlen(m); n++) {
                char *copy = malloc(n ? n : 1);
                CHECK(copy);
                memcpy(copy, m, n);
                size_t pos = 0;
                Rfc822Header h;
                while (rfc822_next_header(copy, n, &pos, &h) > 0)
                        CHECK(pos <= n);
                CHECK(pos <= n);
                free(copy);
        }

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                CHECK_INT(rfc822_header_name_valid(names[i].name, strlen(names[i].name)), names[i].valid);

        const char *msg = "Received: x\n\ty\nFROM: a\nmessage-id: <1@x>\n\nDate: in body\n";
        CHECK(rfc822_has_header(msg, strlen(msg), "From"));
        CHECK(rfc822_has_header(msg, strlen(msg), "Message-ID"));
        CHECK(rfc822_has_header(msg, strlen(msg), "received"));
        CHECK(!rfc822_has_header(msg, strlen(msg), "Date"));
        CHECK(!rfc822_has_header(msg, strlen(msg), "Fro"));

        /* Date: fixed zone so the text is predictable */
        setenv("TZ", "UTC", 1);
        tzset();
        char buf[64];
        rfc822_date(1795273956, buf, sizeof buf);   /* 2026-11-21 15:12:36 UTC */
        CHECK_STR(buf, "Sat, 21 Nov 2026 15:12:36 +0000 (UTC)");
        rfc822_date(0, buf, sizeof buf);
        CHECK_STR(buf, "Thu, 1 Jan 1970 00:00:00 +0000 (UTC)");
        setenv("TZ", "EST5EDT,M3.2.0,M11.1.0", 1);
        tzset();
        rfc822_date(1795273956, buf, sizeof buf);
        CHECK_STR(buf, "Sat, 21 Nov 2026 10:12:36 -0500 (EST)");
        setenv("TZ", "<+0530>-5:30", 1);
        tzset();
        rfc822_date(1795273956, buf, sizeof buf);
        CHECK_STR(buf, "Sat, 21 Nov 2026 20:42:36 +0530 (+0530)");
        char small[8];
        rfc822_date(0, small, sizeof small);
        CHECK(strlen(small) == 7);

        _cleanup_strbuf_ StrBuf id = STRBUF_INIT;
        CHECK_INT(rfc822_message_id("4QF2K1C0X7ABZ", "mail.example.org", &id), 0);
        CHECK(strncmp(id.data, "<4QF2K1C0X7ABZ.", 15) == 0);
        CHECK(id.len == 15 + 14 + 1 + 16 + 1);
        CHECK_STR(id.data + 29, "@mail.example.org>");
        StrBuf bad = STRBUF_INIT;
        CHECK_INT(rfc822_message_id("ID", "bad host", &bad), -EINVAL);
        CHECK_INT(rfc822_message_id("ID", "", &bad), -EINVAL);
        CHECK_INT(rfc822_message_id("I>D", "h", &bad), -EINVAL);
        CHECK(bad.len == 0);
        strbuf_done(&bad);
        return 0;
}
