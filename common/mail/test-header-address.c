/* test-header-address.c — unit tests for address-list parsing and in-place rewriting of
 * address headers: phrases, comments, groups, quoting, routes, folding, malformed values. */
#include <errno.h>

#include "header-address.h"
#include "../basic/tests.h"

/* Rewrites every address to "<ADDR>" upper-cased marker form and collects what it saw. */
typedef struct Seen {
        char buf[1024];
} Seen;

static int mark(const char *addr, void *userdata, char **ret_new) {
        Seen *s = userdata;
        strncat(s->buf, addr, sizeof(s->buf) - strlen(s->buf) - 2);
        strcat(s->buf, "|");
        if (strcmp(addr, "keep@x") == 0)
                return 0;
        return asprintf(ret_new, "new(%s)", addr) < 0 ? -ENOMEM : 1;
}

static void check(const char *value, int expect_r, const char *expect_seen, const char *expect_out) {
        Seen s = {};
        StrBuf out = STRBUF_INIT;
        int r = header_address_rewrite(value, strlen(value), mark, &s, &out);
        if (r != expect_r || strcmp(s.buf, expect_seen) != 0 ||
            (expect_out && strcmp(out.data ? out.data : "", expect_out) != 0)) {
                fprintf(stderr, "value [%s]: r=%d (want %d) seen [%s] (want [%s]) out [%s] (want [%s])\n", value,
                        r, expect_r, s.buf, expect_seen, out.data ? out.data : "", expect_out ? expect_out : "");
                exit(1);
        }
        if (r < 0)
                CHECK_INT(out.len, 0);   /* a refused value leaves the output alone */
        strbuf_done(&out);
}

int main(void) {
        static const struct { const char *value; int r; const char *seen, *out; } ok[] = {
                /* Plain, phrases, comments and quoting are kept around the replaced addr-spec. */
                { " a@b", 1, "a@b|", " new(a@b)" },
                { " John Doe <john@example>", 1, "john@example|", " John Doe <new(john@example)>" },
                { " \"Doe, John\" <john@x> (work), jane@y", 2, "john@x|jane@y|", " \"Doe, John\" <new(john@x)> (work), new(jane@y)" },
                { " jane@y (Jane (the) Doe)", 1, "jane@y|", " new(jane@y) (Jane (the) Doe)" },
                { " \"a b\"@x, \"q\\\"t\"@y", 2, "\"a b\"@x|\"q\\\"t\"@y|", " new(\"a b\"@x), new(\"q\\\"t\"@y)" },
                { " keep@x, c@d", 1, "keep@x|c@d|", " keep@x, new(c@d)" },
                /* Bare local parts, bang paths and percent forms are addresses too (canonical form). */
                { " root", 1, "root|", " new(root)" },
                { " host!user, u%d", 2, "host!user|u%d|", " new(host!user), new(u%d)" },
                /* Groups, empty groups, empty list elements, null address. */
                { " friends: a@x, B <b@y>;, c@z", 3, "a@x|b@y|c@z|", " friends: new(a@x), B <new(b@y)>;, new(c@z)" },
                { " undisclosed-recipients:;", 0, "", " undisclosed-recipients:;" },
                { " a@x, , b@y,", 2, "a@x|b@y|", " new(a@x), , new(b@y)," },
                { " <>", 0, "", " <>" },
                { "", 0, "", "" },
                /* Folding is kept; whitespace/comments inside an addr-spec are dropped from it. */
                { " Long Name\n\t<long@example.org>,\n other@example.org", 2, "long@example.org|other@example.org|", " Long Name\n\t<new(long@example.org)>,\n new(other@example.org)" },
                { " john . doe @ example . org", 1, "john.doe@example.org|", " new(john.doe@example.org)" },
                { " a(c)@b", 1, "a@b|", " new(a@b)" },
                /* Source routes, domain literals, UTF-8. */
                { " <@r1,@r2:u@d>", 1, "@r1,@r2:u@d|", " <new(@r1,@r2:u@d)>" },
                { " u@[192.0.2.1]", 1, "u@[192.0.2.1]|", " new(u@[192.0.2.1])" },
                { " J\xc3\xbcrgen <j\xc3\xbc@b\xc3\xbc.de>", 1, "j\xc3\xbc@b\xc3\xbc.de|", " J\xc3\xbcrgen <new(j\xc3\xbc@b\xc3\xbc.de)>" },
                { " =?utf-8?q?J=C3=BCrgen?= <j@x>", 1, "j@x|", " =?utf-8?q?J=C3=BCrgen?= <new(j@x)>" },
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++)
                check(ok[i].value, ok[i].r, ok[i].seen, ok[i].out);
        /* Malformed: refused whole, the function never called. */
        const char *bad[] = {
                " \"unclosed@x", " (unclosed comment a@b", " a@[1.2.3.4", " John <j@x", " j@x>",
                " John Smith", " a@b c@d", " a@b; c@d", " x: a@b", " g: a@b, h: c@d;;", " a@",
                " @b", " <a@b> c@d", " a\x01@b", " a@b)", " <@r1:>", " <@r1:a b@c>", " j@x]",
                " a@b@c", " x: y: a@b;;",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(bad[i], -EINVAL, "", NULL);

        /* Which headers hold addresses. */
        CHECK_INT(header_address_kind("from", 4), HEADER_ADDRESS_SENDER);
        CHECK_INT(header_address_kind("Resent-Reply-To", 15), HEADER_ADDRESS_SENDER);
        CHECK_INT(header_address_kind("Return-Receipt-To", 17), HEADER_ADDRESS_SENDER);
        CHECK_INT(header_address_kind("Errors-To", 9), HEADER_ADDRESS_SENDER);
        CHECK_INT(header_address_kind("CC", 2), HEADER_ADDRESS_RECIPIENT);
        CHECK_INT(header_address_kind("Resent-Bcc", 10), HEADER_ADDRESS_RECIPIENT);
        CHECK_INT(header_address_kind("Subject", 7), HEADER_ADDRESS_NONE);
        CHECK_INT(header_address_kind("Fro", 3), HEADER_ADDRESS_NONE);
        return 0;
}
