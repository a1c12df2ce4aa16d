/* rfc822.h — message-format helpers (RFC 5322): dates, header names, header scanning. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "../basic/strbuf.h"

/* "Sat, 21 Nov 2026 14:55:56 +0000 (UTC)" in local time; buf >= 64 bytes. */
void rfc822_date(time_t t, char *buf, size_t bufsz);

/* True when [name, name+len) is a valid field name (printable ASCII except ':' and space). */
bool rfc822_header_name_valid(const char *name, size_t len);

/* Iterates over the header section of a message in wire form (CRLF line ends) or LF form.
 * Returns 1 with the field's name/value spans (value without the line end, folding kept), 0 at
 * the end of the header section (*pos then indexes the body), <0 on malformed input. */
typedef struct Rfc822Header {
        const char *name; size_t name_len;
        const char *value; size_t value_len;   /* after "name:" up to the end of the last fold */
        const char *start; size_t total_len;   /* the whole field including its line ends */
} Rfc822Header;
int rfc822_next_header(const char *msg, size_t len, size_t *pos, Rfc822Header *ret);

/* Whether a message's header section contains a field named name (case-insensitive). */
bool rfc822_has_header(const char *msg, size_t len, const char *name);

/* A Message-ID value "<queueid.time@host>" for local submissions. */
int rfc822_message_id(const char *queue_id, const char *hostname, StrBuf *out);
