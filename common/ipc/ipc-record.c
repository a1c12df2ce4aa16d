/* ipc-record.c — the IPC record codec: building records, looking attributes up, formatting
 * them as "name=xtext\n" lines ended by an empty line, and the incremental parser that turns a
 * byte stream back into records. No I/O here; see ipc-client.c and ipc-server.c.
 *
 * Limits: a name is 1..IPC_ATTR_NAME_MAX bytes of [A-Za-z0-9_.-]; a record's wire form is at
 * most IPC_RECORD_MAX bytes and IPC_RECORD_ATTRS_MAX attributes (a parser may be given smaller
 * limits: IpcParser.max_size, max_attrs); a decoded value never contains a NUL byte ("+00" is
 * rejected) because values are handed out as C strings. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc-internal.h"
#include "../mail/xtext.h"

static bool ipc_name_valid(const char *name, size_t len) {
        if (len == 0 || len > IPC_ATTR_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

/* Frees every attribute; the record may be reused afterwards. */
void ipc_record_done(IpcRecord *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                free(r->attrs[i].name);
                free(r->attrs[i].value);
        }
        free(r->attrs);
        r->attrs = NULL;
        r->n = r->cap = 0;
}

/* Takes ownership of name and value (both freed on failure). */
static int ipc_record_push(IpcRecord *r, char *name, char *value) {
        if (r->n >= IPC_RECORD_ATTRS_MAX) {
                free(name);
                free(value);
                return -EMSGSIZE;
        }
        if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 8;
                IpcAttr *a = realloc(r->attrs, cap * sizeof(IpcAttr));
                if (!a) {
                        free(name);
                        free(value);
                        return -ENOMEM;
                }
                r->attrs = a;
                r->cap = cap;
        }
        r->attrs[r->n].name = name;
        r->attrs[r->n].value = value;
        r->n++;
        return 0;
}

/* Appends name=value; -EINVAL for a bad name or a NULL value. */
int ipc_record_add(IpcRecord *r, const char *name, const char *value) {
        if (!r || !name || !value || !ipc_name_valid(name, strlen(name)))
                return -EINVAL;
        char *n = strdup(name), *v = strdup(value);
        if (!n || !v) {
                free(n);
                free(v);
                return -ENOMEM;
        }
        return ipc_record_push(r, n, v);
}

/* Appends name=<printf result>. */
int ipc_record_addf(IpcRecord *r, const char *name, const char *fmt, ...) {
        va_list ap;
        char *v = NULL;

        va_start(ap, fmt);
        int k = vasprintf(&v, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        int ret = ipc_record_add(r, name, v);
        free(v);
        return ret;
}

/* Appends "<name>.<index>=value". */
int ipc_record_add_indexed(IpcRecord *r, const char *name, size_t index, const char *value) {
        char n[IPC_ATTR_NAME_MAX + 2];
        int k = snprintf(n, sizeof n, "%s.%zu", name, index);
        if (k < 0 || (size_t) k > IPC_ATTR_NAME_MAX)
                return -EINVAL;
        return ipc_record_add(r, n, value);
}

/* The first value of name, or NULL. */
const char *ipc_record_get(const IpcRecord *r, const char *name) {
        if (!r || !name)
                return NULL;
        for (size_t i = 0; i < r->n; i++)
                if (streq(r->attrs[i].name, name))
                        return r->attrs[i].value;
        return NULL;
}

/* The first value of "<name>.<index>", or NULL. */
const char *ipc_record_get_indexed(const IpcRecord *r, const char *name, size_t index) {
        char n[IPC_ATTR_NAME_MAX + 2];
        int k = snprintf(n, sizeof n, "%s.%zu", name, index);
        if (k < 0 || (size_t) k > IPC_ATTR_NAME_MAX)
                return NULL;
        return ipc_record_get(r, n);
}

/* Parses a decimal attribute strictly: optional '-', digits only, no overflow. */
int ipc_record_get_int(const IpcRecord *r, const char *name, long long *ret) {
        const char *v = ipc_record_get(r, name);
        if (!v)
                return -ENOENT;
        const char *p = v[0] == '-' ? v + 1 : v;
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (const char *q = p; *q; q++)
                if (*q < '0' || *q > '9')
                        return -EINVAL;
        errno = 0;
        char *end;
        long long x = strtoll(v, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = x;
        return 0;
}

/* Appends one "name=xtext\n" line of a record that starts at out[start]. */
static int ipc_attr_format(const IpcAttr *a, StrBuf *out, size_t start) {
        if (!ipc_name_valid(a->name, strlen(a->name)))
                return -EINVAL;
        int ret = strbuf_puts(out, a->name);
        if (ret >= 0)
                ret = strbuf_putc(out, '=');
        if (ret >= 0)
                ret = xtext_encode(a->value, strlen(a->value), out);
        if (ret >= 0)
                ret = strbuf_putc(out, '\n');
        if (ret >= 0 && out->len - start > IPC_RECORD_MAX)
                ret = -EMSGSIZE;
        return ret;
}

/* The wire form of r's attributes, then extra (if any), then the empty line; -EMSGSIZE beyond
 * the limits. out is unchanged on failure. */
static int ipc_record_format_with(const IpcRecord *r, const IpcAttr *extra, StrBuf *out) {
        size_t start = out->len;
        int ret = 0;

        if (r->n + (extra ? 1 : 0) > IPC_RECORD_ATTRS_MAX)
                return -EMSGSIZE;
        for (size_t i = 0; i < r->n && ret >= 0; i++)
                ret = ipc_attr_format(&r->attrs[i], out, start);
        if (ret >= 0 && extra)
                ret = ipc_attr_format(extra, out, start);
        if (ret >= 0)
                ret = strbuf_putc(out, '\n');
        if (ret >= 0 && out->len - start > IPC_RECORD_MAX)
                ret = -EMSGSIZE;
        if (ret < 0) {
                out->len = start;
                if (out->data)
                        out->data[start] = '\0';
                return ret;
        }
        return 0;
}

/* Appends the wire form; -EMSGSIZE when it would exceed IPC_RECORD_MAX. out is unchanged on
 * failure. */
int ipc_record_format(const IpcRecord *r, StrBuf *out) {
        return ipc_record_format_with(r, NULL, out);
}

/* The wire form of r with "id=<id>" added last. */
int ipc_record_format_tagged(const IpcRecord *r, const char *id, StrBuf *out) {
        if (ipc_record_get(r, "id"))
                return -EINVAL;   /* the tag would not be the only "id" */
        IpcAttr tag = { (char *) "id", (char *) id };
        return ipc_record_format_with(r, &tag, out);
}

/* Frees the parser's buffers; it may be reused afterwards (with the same limits). */
void ipc_parser_done(IpcParser *p) {
        if (!p)
                return;
        strbuf_done(&p->line);
        ipc_record_done(&p->cur);
        p->size = 0;
}

static size_t ipc_parser_max_size(const IpcParser *p) {
        return p->max_size > 0 && p->max_size < IPC_RECORD_MAX ? p->max_size : IPC_RECORD_MAX;
}

static int ipc_parser_line(IpcParser *p, const char *line, size_t len) {
        if (p->max_attrs > 0 && p->cur.n >= p->max_attrs) {
                p->too_many_attrs = true;
                return -EMSGSIZE;
        }
        const char *eq = memchr(line, '=', len);
        if (!eq || !ipc_name_valid(line, (size_t) (eq - line)))
                return -EBADMSG;

        char *value;
        size_t vlen;
        int r = xtext_decode(eq + 1, len - (size_t) (eq - line) - 1, &value, &vlen);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        if (memchr(value, '\0', vlen)) {
                free(value);
                return -EBADMSG;
        }
        char *name = memdup_suffix0(line, (size_t) (eq - line));
        if (!name) {
                free(value);
                return -ENOMEM;
        }
        return ipc_record_push(&p->cur, name, value);
}

/* Feeds bytes; see ipc.h. After an error the parser is reset (the stream cannot be resynced,
 * callers drop the connection). */
int ipc_parser_feed(IpcParser *p, const char *data, size_t n, size_t *ret_consumed, IpcRecord *ret) {
        size_t i = 0, max = ipc_parser_max_size(p);
        int r = 0;

        p->too_many_attrs = false;
        while (i < n) {
                const char *nl = memchr(data + i, '\n', n - i);
                size_t chunk = nl ? (size_t) (nl - (data + i)) : n - i;

                if (chunk + (nl ? 1 : 0) > max - p->size) {
                        r = -EMSGSIZE;
                        goto fail;
                }
                p->size += chunk + (nl ? 1 : 0);
                if (!nl) {
                        r = strbuf_append(&p->line, data + i, chunk);
                        if (r < 0)
                                goto fail;
                        i = n;
                        break;
                }

                const char *line;
                size_t len;
                if (p->line.len > 0) {
                        r = strbuf_append(&p->line, data + i, chunk);
                        if (r < 0)
                                goto fail;
                        line = p->line.data;
                        len = p->line.len;
                } else {
                        line = data + i;
                        len = chunk;
                }
                i += chunk + 1;

                if (len == 0) {
                        /* end of record */
                        *ret = p->cur;
                        p->cur = (IpcRecord) IPC_RECORD_INIT;
                        p->size = 0;
                        /* don't keep a big record's line buffer around on an idle connection */
                        if (p->line.cap > 65536)
                                strbuf_done(&p->line);
                        else
                                strbuf_reset(&p->line);
                        if (ret_consumed)
                                *ret_consumed = i;
                        return 1;
                }
                r = ipc_parser_line(p, line, len);
                strbuf_reset(&p->line);
                if (r < 0)
                        goto fail;
        }
        if (ret_consumed)
                *ret_consumed = i;
        return 0;

fail:
        ipc_parser_done(p);   /* too_many_attrs stays for the caller */
        if (ret_consumed)
                *ret_consumed = i;
        return r;
}
