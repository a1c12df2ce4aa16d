/* rfc822.c — RFC 5322 helpers: the Date: format, field-name checks, and a scanner over a
 * message's header section that works on LF-form (the queue's) and CRLF-form (the wire's)
 * text alike. The scanner never looks past len, keeps folded continuation lines inside the
 * field's value, stops at the first empty line (or at the end of a message without a body),
 * and reports a line that is neither a field nor a continuation as -EBADMSG. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rfc822.h"

/* "Sat, 21 Nov 2026 14:55:56 +0000 (UTC)" for t in local time. */
void rfc822_date(time_t t, char *buf, size_t bufsz) {
        static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        struct tm tm;
        char zone[16];
        size_t z = 0;

        if (!buf || bufsz == 0)
                return;
        if (!localtime_r(&t, &tm)) {
                snprintf(buf, bufsz, "Thu, 1 Jan 1970 00:00:00 +0000");
                return;
        }
        /* the comment holds only safe characters, whatever TZ says */
        for (const char *p = tm.tm_zone ? tm.tm_zone : ""; *p && z < sizeof zone - 1; p++)
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    *p == '+' || *p == '-' || *p == '_' || *p == '/')
                        zone[z++] = *p;
        zone[z] = '\0';

        long off = tm.tm_gmtoff / 60;
        char sign = off < 0 ? '-' : '+';
        if (off < 0)
                off = -off;
        int n = snprintf(buf, bufsz, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
                         days[(unsigned) tm.tm_wday % 7], tm.tm_mday, months[(unsigned) tm.tm_mon % 12],
                         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         sign, (off / 60) % 100, off % 60);
        if (n >= 0 && (size_t) n < bufsz && z > 0)
                snprintf(buf + n, bufsz - (size_t) n, " (%s)", zone);
}

/* True for a non-empty span of printable ASCII other than ':' (RFC 5322 ftext). */
bool rfc822_header_name_valid(const char *name, size_t len) {
        if (!name || len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) name[i];
                if (c < 33 || c > 126 || c == ':')
                        return false;
        }
        return true;
}

/* Length of the line at msg[pos] without its end, and (via *next) where the next line starts. */
static size_t rfc822_line(const char *msg, size_t len, size_t pos, size_t *next) {
        const char *nl = memchr(msg + pos, '\n', len - pos);
        size_t end = nl ? (size_t) (nl - msg) : len;
        *next = nl ? end + 1 : len;
        if (nl && end > pos && msg[end - 1] == '\r')
                end--;
        return end - pos;
}

/* Returns the next header field; see rfc822.h. */
int rfc822_next_header(const char *msg, size_t len, size_t *pos, Rfc822Header *ret) {
        size_t p = *pos, next;

        if (!msg || p >= len)
                return 0;
        size_t l = rfc822_line(msg, len, p, &next);
        if (l == 0) {
                *pos = next;   /* the empty line: body follows */
                return 0;
        }
        const char *line = msg + p;
        if (line[0] == ' ' || line[0] == '\t')
                return -EBADMSG;   /* continuation without a field */
        const char *colon = memchr(line, ':', l);
        if (!colon)
                return -EBADMSG;
        size_t name_len = (size_t) (colon - line);
        while (name_len > 0 && (line[name_len - 1] == ' ' || line[name_len - 1] == '\t'))
                name_len--;   /* obsolete "Name : value" */
        if (!rfc822_header_name_valid(line, name_len))
                return -EBADMSG;

        size_t value_start = (size_t) (colon - msg) + 1;
        size_t value_end = p + l;
        size_t q = next;
        while (q < len && (msg[q] == ' ' || msg[q] == '\t')) {
                size_t n2;
                size_t l2 = rfc822_line(msg, len, q, &n2);
                value_end = q + l2;
                q = n2;
        }
        ret->name = line;
        ret->name_len = name_len;
        ret->value = msg + value_start;
        ret->value_len = value_end - value_start;
        ret->start = line;
        ret->total_len = q - p;
        *pos = q;
        return 1;
}

/* Whether the header section has a field called name (case-insensitive). */
bool rfc822_has_header(const char *msg, size_t len, const char *name) {
        size_t pos = 0, nl = name ? strlen(name) : 0;
        Rfc822Header h;

        if (!name)
                return false;
        while (rfc822_next_header(msg, len, &pos, &h) > 0)
                if (h.name_len == nl && strncasecmp(h.name, name, nl) == 0)
                        return true;
        return false;
}

/* Appends "<queueid.YYYYMMDDHHMMSS@hostname>". */
int rfc822_message_id(const char *queue_id, const char *hostname, StrBuf *out) {
        if (!queue_id || !hostname || !*queue_id || !*hostname || !out)
                return -EINVAL;
        for (const char *p = queue_id; *p; p++)
                if (*p <= ' ' || *p >= 127 || strchr("<>@\"()[]\\,;:", *p))
                        return -EINVAL;
        for (const char *p = hostname; *p; p++)
                if (*p <= ' ' || *p >= 127 || strchr("<>@\"()\\,;:", *p))
                        return -EINVAL;
        time_t t = time(NULL);
        struct tm tm;
        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        return strbuf_printf(out, "<%s.%04d%02d%02d%02d%02d%02d@%s>", queue_id, tm.tm_year + 1900,
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, hostname);
}
