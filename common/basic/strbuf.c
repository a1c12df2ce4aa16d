/* strbuf.c — growable NUL-terminated byte buffer with an optional limit. See strbuf.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static int strbuf_reserve(StrBuf *b, size_t extra) {
        if (b->limit && (extra > b->limit || b->len > b->limit - extra))
                return -EMSGSIZE;
        if (b->len + extra + 1 <= b->cap)
                return 0;
        size_t want = b->cap ? b->cap : 256;
        while (want < b->len + extra + 1) {
                if (want > SIZE_MAX / 2)
                        return -ENOMEM;
                want *= 2;
        }
        char *n = realloc(b->data, want);
        if (!n)
                return -ENOMEM;
        b->data = n;
        b->cap = want;
        return 0;
}

int strbuf_append(StrBuf *b, const void *p, size_t n) {
        int r = strbuf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int strbuf_puts(StrBuf *b, const char *s) {
        return strbuf_append(b, s, strlen(s));
}

int strbuf_putc(StrBuf *b, char c) {
        return strbuf_append(b, &c, 1);
}

int strbuf_vprintf(StrBuf *b, const char *fmt, va_list ap) {
        va_list aq;
        va_copy(aq, ap);
        int n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;
        int r = strbuf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        b->len += (size_t) n;
        return 0;
}

int strbuf_printf(StrBuf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = strbuf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

void strbuf_consume(StrBuf *b, size_t n) {
        if (n >= b->len) {
                strbuf_reset(b);
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = '\0';
}

void strbuf_reset(StrBuf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = '\0';
}

void strbuf_done(StrBuf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

char *strbuf_steal(StrBuf *b) {
        char *s = b->data ? b->data : strdup("");
        b->data = NULL;
        b->len = b->cap = 0;
        return s;
}
