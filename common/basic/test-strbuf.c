/* test-strbuf.c — unit tests for the growable buffer: appends, limits, consume, steal. */
#include "strbuf.h"
#include "tests.h"

int main(void) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        CHECK_INT(strbuf_puts(&b, "hello"), 0);
        CHECK_INT(strbuf_printf(&b, " %d", 42), 0);
        CHECK_STR(b.data, "hello 42");
        strbuf_consume(&b, 6);
        CHECK_STR(b.data, "42");
        CHECK_INT(b.len, 2);
        for (int i = 0; i < 10000; i++)
                CHECK_INT(strbuf_putc(&b, 'x'), 0);
        CHECK_INT(b.len, 10002);

        StrBuf l = STRBUF_INIT;
        l.limit = 4;
        CHECK_INT(strbuf_puts(&l, "abcd"), 0);
        CHECK_INT(strbuf_putc(&l, 'e'), -EMSGSIZE);
        CHECK_STR(l.data, "abcd");
        char *s = strbuf_steal(&l);
        CHECK_STR(s, "abcd");
        CHECK(l.data == NULL);
        free(s);
        strbuf_done(&l);

        /* memdup_suffix0 copies exactly n bytes of an unterminated buffer */
        static const char raw[4] = { 'a', '\0', 'b', 'c' };
        char *m = memdup_suffix0(raw, 4);
        CHECK(m && memcmp(m, raw, 4) == 0 && m[4] == '\0');
        free(m);
        m = memdup_suffix0(raw + 2, 2);
        CHECK_STR(m, "bc");
        free(m);
        return 0;
}
