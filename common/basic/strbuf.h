/* strbuf.h — a growable byte buffer, always NUL-terminated, with an optional size limit.
 * Used for protocol input/output buffers and for building strings. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include "macro.h"

typedef struct StrBuf {
        char *data;     /* NUL-terminated; NULL until the first append */
        size_t len;     /* bytes in use, without the NUL */
        size_t cap;     /* bytes allocated */
        size_t limit;   /* 0 = unlimited; appends beyond it fail with -EMSGSIZE */
} StrBuf;

#define STRBUF_INIT { NULL, 0, 0, 0 }

/* Appends n bytes; returns 0, -ENOMEM, or -EMSGSIZE when limit would be exceeded. */
int strbuf_append(StrBuf *b, const void *p, size_t n);
int strbuf_puts(StrBuf *b, const char *s);
int strbuf_putc(StrBuf *b, char c);
int strbuf_printf(StrBuf *b, const char *fmt, ...) _printf_(2, 3);
int strbuf_vprintf(StrBuf *b, const char *fmt, va_list ap) _printf_(2, 0);
/* Drops the first n bytes (consumed input). */
void strbuf_consume(StrBuf *b, size_t n);
void strbuf_reset(StrBuf *b);
/* Frees the storage; the struct may be reused afterwards. */
void strbuf_done(StrBuf *b);
/* Returns the data (caller owns it; "" if empty) and empties the buffer; NULL on ENOMEM. */
char *strbuf_steal(StrBuf *b);
static inline void strbuf_donep(StrBuf *b) { strbuf_done(b); }
#define _cleanup_strbuf_ _cleanup_(strbuf_donep)
