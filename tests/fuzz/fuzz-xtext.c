/* fuzz-xtext — RFC 3461 xtext (common/mail/xtext.c). Any input that decodes must encode to
 * printable ASCII without '+'-ambiguity and decode back to the same bytes; and any input at all,
 * encoded, must decode back to itself. */
#include <errno.h>

#include "fuzz.h"
#include "mail/xtext.h"

static void check_encoded(const StrBuf *b) {
        FUZZ_CHECK(b->data);
        FUZZ_CHECK(strlen(b->data) == b->len);
        for (size_t i = 0; i < b->len; i++) {
                unsigned char c = (unsigned char) b->data[i];
                FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
                if (c == '+')
                        FUZZ_CHECK(i + 2 < b->len);
        }
}

static void check_roundtrip(const char *bytes, size_t n) {
        StrBuf enc = STRBUF_INIT;
        char *back = NULL;
        size_t back_len = 0;

        FUZZ_CHECK(xtext_encode(bytes, n, &enc) == 0);
        check_encoded(&enc);
        FUZZ_CHECK(enc.len >= n && enc.len <= 3 * n);
        FUZZ_CHECK(xtext_decode(enc.data, enc.len, &back, &back_len) == 0);
        FUZZ_CHECK(back_len == n);
        FUZZ_CHECK(n == 0 || memcmp(back, bytes, n) == 0);
        FUZZ_CHECK(back[back_len] == '\0');
        free(back);
        strbuf_done(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 65536)
                return 0;
        const char *s = (const char *) data;
        char *dec = NULL;
        size_t dec_len = 0;

        int r = xtext_decode(s, size, &dec, &dec_len);
        if (r == 0) {
                FUZZ_CHECK(dec && dec_len <= size);
                FUZZ_CHECK(dec[dec_len] == '\0');
                check_roundtrip(dec, dec_len);
                free(dec);
        } else
                FUZZ_CHECK(r == -EINVAL);

        check_roundtrip(s, size);

        /* Appending to a buffer that already holds text keeps that text. */
        StrBuf b = STRBUF_INIT;
        FUZZ_CHECK(strbuf_puts(&b, "x=") == 0);
        FUZZ_CHECK(xtext_encode(s, size, &b) == 0);
        FUZZ_CHECK(b.len >= 2 && memcmp(b.data, "x=", 2) == 0);
        strbuf_done(&b);
        return 0;
}
