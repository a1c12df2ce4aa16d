/* test-xtext.c — unit tests for RFC 3461 xtext: encode/decode round trips (including NUL,
 * newlines, '+', '=' and 8-bit bytes) and rejection of malformed escapes. */
#include "xtext.h"
#include "../basic/tests.h"

static const struct {
        const char *raw;
        size_t raw_len;
        const char *enc;
} round_trip[] = {
        { "", 0, "" },
        { "abc", 3, "abc" },
        { "a+b", 3, "a+2Bb" },
        { "a=b", 3, "a+3Db" },
        { "a b", 3, "a+20b" },
        { "line\nnext\r\n", 11, "line+0Anext+0D+0A" },
        { "nul\0byte", 8, "nul+00byte" },
        { "\x7f\x80\xff", 3, "+7F+80+FF" },
        { "rfc822;bob@example.org", 22, "rfc822;bob@example.org" },
        { "~!", 2, "~!" },
};

static const char *bad_decode[] = {
        "+", "+4", "+4g", "+4a", "a+zz", "a b", "tab\there", "+G0", "x\x7f", "\x80", "end+",
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(round_trip); i++) {
                _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
                CHECK_INT(xtext_encode(round_trip[i].raw, round_trip[i].raw_len, &b), 0);
                CHECK_STR(b.data, round_trip[i].enc);

                _cleanup_free_ char *d = NULL;
                size_t dl = 0;
                CHECK_INT(xtext_decode(b.data, b.len, &d, &dl), 0);
                CHECK_INT(dl, round_trip[i].raw_len);
                CHECK(memcmp(d, round_trip[i].raw, dl) == 0);
                CHECK(d[dl] == '\0');
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_decode); i++) {
                char *d = NULL;
                size_t dl = 0;
                if (xtext_decode(bad_decode[i], strlen(bad_decode[i]), &d, &dl) != -EINVAL) {
                        fprintf(stderr, "decoding \"%s\" should fail\n", bad_decode[i]);
                        return 1;
                }
                CHECK(d == NULL);
        }

        /* a literal '=' is tolerated on input */
        _cleanup_free_ char *d = NULL;
        CHECK_INT(xtext_decode("a=b", 3, &d, NULL), 0);
        CHECK_STR(d, "a=b");

        /* every byte value survives a round trip */
        char all[256];
        for (int i = 0; i < 256; i++)
                all[i] = (char) i;
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        CHECK_INT(xtext_encode(all, sizeof all, &b), 0);
        for (size_t i = 0; i < b.len; i++)
                CHECK(b.data[i] >= 33 && b.data[i] <= 126 && b.data[i] != '=');
        _cleanup_free_ char *back = NULL;
        size_t bl;
        CHECK_INT(xtext_decode(b.data, b.len, &back, &bl), 0);
        CHECK_INT(bl, 256);
        CHECK(memcmp(back, all, 256) == 0);

        /* a limited buffer is left untouched on failure */
        StrBuf l = STRBUF_INIT;
        l.limit = 5;
        CHECK_INT(strbuf_puts(&l, "ab"), 0);
        CHECK_INT(xtext_encode("+++", 3, &l), -EMSGSIZE);
        CHECK_STR(l.data, "ab");
        CHECK_INT(l.len, 2);
        strbuf_done(&l);
        return 0;
}
