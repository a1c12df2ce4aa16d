/* mime-downgrade.c — 8-bit MIME bodies to quoted-printable, for servers without 8BITMIME
 * (RFC 6152 section 3, RFC 2045 6.7); see mime-downgrade.h. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "../basic/macro.h"
#include "mime-downgrade.h"
#include "rfc822.h"

/* Nesting deeper than this is copied as it is (and left 8-bit). */
#define MIME_DEPTH_MAX 20
/* Encoded lines stay at most 76 characters, the soft-break "=" included. */
#define QP_LINE_MAX 76

static bool has_8bit(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] >= 0x80)
                        return true;
        return false;
}

int mime_qp_encode(const char *p, size_t n, StrBuf *out) {
        static const char hex[] = "0123456789ABCDEF";
        size_t i = 0;
        int r = 0;
        while (i < n && r >= 0) {
                const char *nl = memchr(p + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (p + i)) : n - i;
                size_t col = 0;
                for (size_t k = 0; k < len && r >= 0; k++) {
                        unsigned char c = (unsigned char) p[i + k];
                        bool last = k + 1 == len;
                        bool enc = c >= 0x7f || c == '=' || (c < 0x20 && c != '\t') ||
                                   ((c == ' ' || c == '\t') && last);
                        size_t w = enc ? 3 : 1;
                        /* Room for this piece plus a soft break, unless it ends the line. */
                        if (col + w > QP_LINE_MAX - (last ? 0 : 1)) {
                                r = strbuf_append(out, "=\n", 2);
                                col = 0;
                        }
                        if (r < 0)
                                break;
                        if (enc) {
                                char e[3] = { '=', hex[c >> 4], hex[c & 15] };
                                r = strbuf_append(out, e, 3);
                        } else
                                r = strbuf_putc(out, (char) c);
                        col += w;
                }
                if (r >= 0 && nl)
                        r = strbuf_putc(out, '\n');
                i += len + (nl ? 1 : 0);
        }
        return r < 0 ? r : 0;
}

/* The value of a parameter ("boundary") in a Content-Type value, unquoted; false if absent. */
static bool content_type_param(const char *v, size_t n, const char *name, char *buf, size_t size) {
        size_t nl = strlen(name);
        for (size_t i = 0; i < n; i++) {
                if (v[i] != ';')
                        continue;
                size_t k = i + 1;
                while (k < n && isspace((unsigned char) v[k]))
                        k++;
                if (k + nl >= n || strncasecmp(v + k, name, nl) != 0)
                        continue;
                k += nl;
                while (k < n && isspace((unsigned char) v[k]))
                        k++;
                if (k >= n || v[k] != '=')
                        continue;
                k++;
                while (k < n && isspace((unsigned char) v[k]))
                        k++;
                size_t o = 0;
                if (k < n && v[k] == '"') {
                        for (k++; k < n && v[k] != '"' && o + 1 < size; k++)
                                buf[o++] = v[k];
                } else
                        for (; k < n && v[k] != ';' && !isspace((unsigned char) v[k]) && o + 1 < size; k++)
                                buf[o++] = v[k];
                buf[o] = '\0';
                return o > 0;
        }
        return false;
}

/* "type/subtype" of a Content-Type value, lower case. */
static void content_type(const char *v, size_t n, char *buf, size_t size) {
        size_t i = 0, o = 0;
        while (i < n && isspace((unsigned char) v[i]))
                i++;
        for (; i < n && v[i] != ';' && !isspace((unsigned char) v[i]) && o + 1 < size; i++)
                buf[o++] = (char) tolower((unsigned char) v[i]);
        buf[o] = '\0';
}

static bool value_is(const char *v, size_t n, const char *word) {
        while (n > 0 && isspace((unsigned char) *v))
                v++, n--;
        while (n > 0 && isspace((unsigned char) v[n - 1]))
                n--;
        return n == strlen(word) && strncasecmp(v, word, n) == 0;
}

static int entity(const char *p, size_t n, bool top, unsigned depth, StrBuf *out);

/* A multipart body: delimiter lines and the preamble/epilogue copied, each part converted. */
static int multipart_body(const char *b, size_t n, const char *boundary, unsigned depth, StrBuf *out) {
        size_t bl = strlen(boundary), i = 0, part = 0;
        bool in_part = false;
        int r = 0;
        while (i < n && r >= 0) {
                const char *nl = memchr(b + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (b + i)) + 1 : n - i;
                bool delim = len >= 2 + bl && b[i] == '-' && b[i + 1] == '-' &&
                             memcmp(b + i + 2, boundary, bl) == 0;
                if (delim) {
                        if (in_part)
                                r = entity(b + part, i - part, false, depth + 1, out);
                        if (r >= 0)
                                r = strbuf_append(out, b + i, len);
                        bool close = len >= 4 + bl && b[i + 2 + bl] == '-' && b[i + 3 + bl] == '-';
                        in_part = !close;
                        part = i + len;
                } else if (!in_part)
                        r = strbuf_append(out, b + i, len);   /* preamble, epilogue */
                i += len;
        }
        if (r >= 0 && in_part)   /* no closing delimiter */
                r = entity(b + part, n - part, false, depth + 1, out);
        return r;
}

/* One MIME entity (a message or a body part) in LF form. */
static int entity(const char *p, size_t n, bool top, unsigned depth, StrBuf *out) {
        size_t pos = 0, hdr_end = 0;
        Rfc822Header h, ct = {}, cte = {};
        bool have_ct = false, have_cte = false, have_mime = false;
        int r;

        while ((r = rfc822_next_header(p, n, &pos, &h)) > 0) {
                hdr_end = (size_t) (h.start - p) + h.total_len;
                if (h.name_len == 12 && strncasecmp(h.name, "Content-Type", 12) == 0)
                        ct = h, have_ct = true;
                else if (h.name_len == 25 && strncasecmp(h.name, "Content-Transfer-Encoding", 25) == 0)
                        cte = h, have_cte = true;
                else if (h.name_len == 12 && strncasecmp(h.name, "MIME-Version", 12) == 0)
                        have_mime = true;
        }
        if (r < 0 || depth > MIME_DEPTH_MAX || !has_8bit(p + pos, n - pos))
                return strbuf_append(out, p, n);   /* nothing to do, or nothing we can do */

        char type[128] = "text/plain", boundary[200];
        if (have_ct)
                content_type(ct.value, ct.value_len, type, sizeof(type));

        if (startswith(type, "multipart/") && have_ct &&
            content_type_param(ct.value, ct.value_len, "boundary", boundary, sizeof(boundary))) {
                if ((r = strbuf_append(out, p, pos)) < 0)
                        return r;
                return multipart_body(p + pos, n - pos, boundary, depth, out);
        }

        bool message = streq(type, "message/rfc822") || streq(type, "message/global");
        if (!message && have_cte && (value_is(cte.value, cte.value_len, "base64") ||
                                     value_is(cte.value, cte.value_len, "quoted-printable")))
                return strbuf_append(out, p, n);   /* already encoded: 8-bit there is damage */

        /* The header section with Content-Transfer-Encoding replaced (or added). */
        const char *new_cte = message ? "Content-Transfer-Encoding: 7bit\n"
                                      : "Content-Transfer-Encoding: quoted-printable\n";
        if (have_cte) {
                size_t a = (size_t) (cte.start - p), z = a + cte.total_len;
                r = strbuf_append(out, p, a);
                if (r >= 0)
                        r = strbuf_puts(out, new_cte);
                if (r >= 0)
                        r = strbuf_append(out, p + z, hdr_end - z);
        } else {
                r = strbuf_append(out, p, hdr_end);
                if (r >= 0 && top && !have_mime)
                        r = strbuf_puts(out, "MIME-Version: 1.0\n");
                if (r >= 0)
                        r = strbuf_puts(out, new_cte);
        }
        if (r >= 0)   /* the empty line, as it was */
                r = strbuf_append(out, p + hdr_end, pos - hdr_end);
        if (r < 0)
                return r;
        if (message)
                return entity(p + pos, n - pos, false, depth + 1, out);
        return mime_qp_encode(p + pos, n - pos, out);
}

int mime_downgrade(const char *msg, size_t len, StrBuf *out) {
        if (!has_8bit(msg, len))
                return 0;
        int r = entity(msg, len, true, 0, out);
        return r < 0 ? r : 1;
}
