/* xtext.c — RFC 3461 xtext encoding and decoding.
 *
 * Encoding escapes '+', '=' and every byte outside 33..126 as "+XX" (upper-case hex), so the
 * result is printable ASCII without spaces: safe in ESMTP parameters and in IPC attribute
 * values. Decoding is strict: "+" must be followed by two upper-case hex digits, and bytes
 * outside 33..126 are rejected. A literal '=' is accepted on input (it appears in real-world
 * ORCPT values), although the encoder always escapes it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xtext.h"

static int xtext_hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Appends the xtext form of the n bytes at s to out. */
int xtext_encode(const char *s, size_t n, StrBuf *out) {
        static const char hex[] = "0123456789ABCDEF";
        size_t start = out->len;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                int r;

                if (c < 33 || c > 126 || c == '+' || c == '=') {
                        char esc[3] = { '+', hex[c >> 4], hex[c & 15] };
                        r = strbuf_append(out, esc, 3);
                } else
                        r = strbuf_putc(out, (char) c);
                if (r < 0) {
                        /* leave the buffer as it was */
                        out->len = start;
                        if (out->data)
                                out->data[start] = '\0';
                        return r;
                }
        }
        /* make sure an empty encoding still leaves a valid (allocated) string behind */
        if (!out->data)
                return strbuf_append(out, "", 0);
        return 0;
}

/* Decodes n bytes of xtext; *ret is NUL-terminated and may contain NUL bytes (*ret_len). */
int xtext_decode(const char *s, size_t n, char **ret, size_t *ret_len) {
        char *buf = malloc(n + 1);
        size_t k = 0;

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c < 33 || c > 126) {
                        free(buf);
                        return -EINVAL;
                }
                if (c == '+') {
                        int hi, lo;
                        if (n - i < 3 ||
                            (hi = xtext_hexval(s[i + 1])) < 0 ||
                            (lo = xtext_hexval(s[i + 2])) < 0) {
                                free(buf);
                                return -EINVAL;
                        }
                        buf[k++] = (char) (hi << 4 | lo);
                        i += 2;
                } else
                        buf[k++] = (char) c;
        }
        buf[k] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = k;
        return 0;
}
