/* test-sendmail-message.c — table-driven tests for postern-sendmail's message handling:
 * RFC 5322 address lists (display names, groups, comments, quoted strings, routes), reading
 * input in LF/CRLF form with and without -i, -t extraction with Bcc: removal, and -F's From:. */
#include <fcntl.h>
#include <unistd.h>

#include "basic/tests.h"
#include "sendmail.h"

static const struct {
        const char *list;
        const char *expect;   /* addresses joined with "|" */
} lists[] = {
        { "alice@example.org", "alice@example.org" },
        { "Alice <alice@example.org>, bob@example.org", "alice@example.org|bob@example.org" },
        { "\"Doe, John\" <john@example.org>", "john@example.org" },
        { "\"a b\"@example.org", "\"a b\"@example.org" },
        { "friends: carol@example.org, Dan <dan@x.org>;, eve@y.org", "carol@example.org|dan@x.org|eve@y.org" },
        { "undisclosed-recipients:;", "" },
        { "bob@example.org (Bob Smith)", "bob@example.org" },
        { "Bob (the (nested) one) <bob@example.org>", "bob@example.org" },
        { "<@relay.example,@b.example:frank@example.org>", "frank@example.org" },
        { "user@[IPv6:::1], x@[127.0.0.1]", "user@[IPv6:::1]|x@[127.0.0.1]" },
        { "alice @ example.org", "alice@example.org" },
        { "a@b.org,\n  c@d.org", "a@b.org|c@d.org" },
        { "ptest1", "ptest1" },
        { "  ,, ", "" },
        { "Name \"quoted <not@addr>\" <real@example.org>", "real@example.org" },
        { "\"a\\\r\n b\"@example.org", "\"a\\ b\"@example.org" },   /* no line end in a quoted-pair */
};

static const struct {
        const char *in;
        bool ignore_dots;
        const char *out;
} reads[] = {
        { "Subject: x\r\n\r\nbody\r\n", false, "Subject: x\n\nbody\n" },
        { "Subject: x\n\nbody\n.\nafter\n", false, "Subject: x\n\nbody\n" },
        { "Subject: x\n\nbody\n.\nafter\n", true, "Subject: x\n\nbody\n.\nafter\n" },
        { "From someone Sat Nov 21 10:00:00 2026\nSubject: y\n\nz", false, "Subject: y\n\nz\n" },
        { "no newline at end", true, "no newline at end\n" },
        { "..leading dot\r\n.\r\n", false, "..leading dot\n" },
};

static void join(char **l, StrBuf *b) {
        strbuf_reset(b);
        (void) strbuf_puts(b, "");
        for (char **a = l; *a; a++) {
                if (a != l)
                        (void) strbuf_putc(b, '|');
                (void) strbuf_puts(b, *a);
        }
}

static void read_string(const char *s, bool ignore_dots, StrBuf *out) {
        int p[2];
        CHECK(pipe(p) == 0);
        CHECK(write(p[1], s, strlen(s)) == (ssize_t) strlen(s));
        close(p[1]);
        CHECK_INT(sendmail_read_message(p[0], ignore_dots, 0, out), 0);
        close(p[0]);
}

int main(void) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;

        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                _cleanup_strv_free_ char **l = NULL;
                CHECK_INT(sendmail_split_address_list(lists[i].list, strlen(lists[i].list), &l), 0);
                join(l, &b);
                CHECK_STR(b.data, lists[i].expect);
        }

        for (size_t i = 0; i < ELEMENTSOF(reads); i++) {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                read_string(reads[i].in, reads[i].ignore_dots, &m);
                CHECK_STR(m.data ? m.data : "", reads[i].out);
        }

        /* Size limit. */
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                int p[2];
                CHECK(pipe(p) == 0);
                CHECK(write(p[1], "0123456789\n0123456789\n", 22) == 22);
                close(p[1]);
                CHECK_INT(sendmail_read_message(p[0], true, 15, &m), -EFBIG);
                close(p[0]);
        }

        /* -t: To, Cc and Bcc are read; Bcc is removed, folded or not. */
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                _cleanup_strv_free_ char **r = NULL;
                (void) strbuf_puts(&m, "From: me@x.org\nTo: A <a@x.org>,\n b@x.org\nBcc: hidden@x.org,\n"
                                       " other@x.org\nCc: c@x.org\nSubject: s\n\nTo: not@header.org\n");
                CHECK_INT(sendmail_extract_recipients(&m, &r), 0);
                join(r, &b);
                CHECK_STR(b.data, "a@x.org|b@x.org|hidden@x.org|other@x.org|c@x.org");
                CHECK_STR(m.data, "From: me@x.org\nTo: A <a@x.org>,\n b@x.org\nCc: c@x.org\nSubject: s\n\n"
                                  "To: not@header.org\n");
        }
        /* Resent- fields take over when present. */
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                _cleanup_strv_free_ char **r = NULL;
                (void) strbuf_puts(&m, "To: old@x.org\nResent-To: new@x.org\nResent-Bcc: nb@x.org\n\nbody\n");
                CHECK_INT(sendmail_extract_recipients(&m, &r), 0);
                join(r, &b);
                CHECK_STR(b.data, "new@x.org|nb@x.org");
                CHECK_STR(m.data, "To: old@x.org\nResent-To: new@x.org\n\nbody\n");
        }

        /* -F: From: only when missing; a message without header stays all body. */
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                (void) strbuf_puts(&m, "Subject: hi\n\nbody\n");
                CHECK_INT(sendmail_add_from(&m, "Jane Q. Doe", "jane@x.org"), 0);
                CHECK_STR(m.data, "From: \"Jane Q. Doe\" <jane@x.org>\nSubject: hi\n\nbody\n");
                CHECK_INT(sendmail_add_from(&m, "Other", "o@x.org"), 0);
                CHECK_STR(m.data, "From: \"Jane Q. Doe\" <jane@x.org>\nSubject: hi\n\nbody\n");
        }
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                (void) strbuf_puts(&m, "just a body line\n");
                CHECK_INT(sendmail_add_from(&m, "Jane", "jane@x.org"), 0);
                CHECK_STR(m.data, "From: Jane <jane@x.org>\n\njust a body line\n");
        }
        {
                _cleanup_strbuf_ StrBuf m = STRBUF_INIT;
                (void) strbuf_puts(&m, "from: x@y.org\n\nb\n");
                CHECK_INT(sendmail_add_from(&m, "Jane", "jane@x.org"), 0);
                CHECK_STR(m.data, "from: x@y.org\n\nb\n");
        }
        return 0;
}
