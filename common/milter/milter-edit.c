/* milter-edit.c — the message edits milters ask for at end of message, collected in order
 * (milter_edits_add()) and applied to a message in LF form (milter_edits_apply_content()); pure
 * code, see milter.h. Recipients and the sender are the caller's (its envelope).
 *
 * Headers: addheader appends at the end of the header section, insheader inserts before the
 * index-th header (0: at the top), chgheader replaces the index-th header of that name (1-based)
 * or deletes it when the value is empty, and adds it when there is no such header. A value keeps
 * its leading white space (one without gets ": " after the name); a line break in a value that
 * the milter did not fold is folded, so a value never ends the header section or starts another
 * header. replbody chunks (CRLF, as milters send them) replace the body. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "milter.h"

void milter_edits_reset(MilterEdits *e) {
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++) {
                free(e->v[i].name);
                free(e->v[i].value);
        }
        free(e->v);
        strbuf_done(&e->body);
        *e = (MilterEdits) {};
}

/* CRLF and bare CR become LF (the queue keeps content in LF form). */
static char *to_lf(const char *p, size_t n, size_t *ret_len) {
        char *o = malloc(n + 1);
        size_t k = 0;
        if (!o)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\r') {
                        o[k++] = '\n';
                        if (i + 1 < n && p[i + 1] == '\n')
                                i++;
                } else
                        o[k++] = p[i];
        }
        o[k] = '\0';
        if (ret_len)
                *ret_len = k;
        return o;
}

int milter_edits_add(MilterEdits *e, const MilterReply *r) {
        if (r->cmd == MILTER_R_REPLBODY) {
                e->body_replaced = true;
                return strbuf_append(&e->body, r->body, r->body_len);
        }
        MilterEdit *v = reallocarray(e->v, e->n + 1, sizeof(MilterEdit));
        if (!v)
                return -ENOMEM;
        e->v = v;
        MilterEdit *x = &v[e->n];
        *x = (MilterEdit) { .cmd = r->cmd, .index = r->index };
        const char *name = r->name ? r->name : r->text;
        x->name = name ? strdup(name) : NULL;
        x->value = r->value ? to_lf(r->value, strlen(r->value), NULL) : NULL;
        if ((name && !x->name) || (r->value && !x->value)) {
                free(x->name);
                free(x->value);
                return -ENOMEM;
        }
        e->n++;
        return 0;
}

/* The header section as a list of logical headers (each with its line ends). */
typedef struct Headers {
        char **v;
        size_t n;
} Headers;

static void headers_done(Headers *h) {
        for (size_t i = 0; i < h->n; i++)
                free(h->v[i]);
        free(h->v);
}

static int headers_insert(Headers *h, size_t at, char *text) {
        if (!text)
                return -ENOMEM;
        char **v = reallocarray(h->v, h->n + 1, sizeof(char *));
        if (!v) {
                free(text);
                return -ENOMEM;
        }
        h->v = v;
        if (at > h->n)
                at = h->n;
        memmove(v + at + 1, v + at, (h->n - at) * sizeof(char *));
        v[at] = text;
        h->n++;
        return 0;
}

/* "Name: value\n"; a line break in the value that a milter did not fold is folded here, so a
 * value can never end the header section or start another header. */
static char *header_text(const char *name, const char *value) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int r = strbuf_printf(&b, "%s%s", name, value[0] == ' ' || value[0] == '\t' ? ":" : ": ");
        for (const char *p = value; r >= 0 && *p; p++) {
                r = strbuf_putc(&b, *p);
                if (r >= 0 && *p == '\n' && p[1] != ' ' && p[1] != '\t')
                        r = strbuf_putc(&b, '\t');
        }
        if (r >= 0 && (b.len == 0 || b.data[b.len - 1] != '\n'))
                r = strbuf_putc(&b, '\n');
        return r < 0 ? NULL : strbuf_steal(&b);
}

static bool header_is(const char *h, const char *name) {
        size_t n = strlen(name);
        if (strncasecmp(h, name, n) != 0)
                return false;
        h += n;
        while (*h == ' ' || *h == '\t')
                h++;
        return *h == ':';
}

/* Splits content into headers and the offset where the rest (separator and body) starts. */
static int headers_split(const char *c, size_t len, Headers *h, size_t *ret_rest) {
        size_t i = 0;
        while (i < len) {
                const char *nl = memchr(c + i, '\n', len - i);
                size_t end = nl ? (size_t) (nl - c) + 1 : len;
                if (end - i <= 1 || ((c[i] == ' ' || c[i] == '\t') && h->n == 0) ||
                    (!memchr(c + i, ':', end - i) && c[i] != ' ' && c[i] != '\t'))
                        break;   /* the empty line (or something that is not a header) */
                /* continuation lines belong to the header */
                while (end < len && (c[end] == ' ' || c[end] == '\t')) {
                        nl = memchr(c + end, '\n', len - end);
                        end = nl ? (size_t) (nl - c) + 1 : len;
                }
                if (c[i] == ' ' || c[i] == '\t')
                        break;
                int r = headers_insert(h, h->n, strndup(c + i, end - i));
                if (r < 0)
                        return r;
                i = end;
        }
        *ret_rest = i;
        return 0;
}

static int header_edit(Headers *h, const MilterEdit *x) {
        switch (x->cmd) {
        case MILTER_R_ADDHEADER:
                return headers_insert(h, h->n, header_text(x->name, x->value));
        case MILTER_R_INSHEADER:
                return headers_insert(h, x->index, header_text(x->name, x->value));
        case MILTER_R_CHGHEADER: {
                uint32_t seen = 0;
                for (size_t i = 0; i < h->n; i++) {
                        if (!header_is(h->v[i], x->name) || ++seen < MAX(x->index, 1u))
                                continue;
                        if (!*x->value) {
                                free(h->v[i]);
                                memmove(h->v + i, h->v + i + 1, (h->n - i - 1) * sizeof(char *));
                                h->n--;
                                return 0;
                        }
                        char *t = header_text(x->name, x->value);
                        if (!t)
                                return -ENOMEM;
                        free(h->v[i]);
                        h->v[i] = t;
                        return 0;
                }
                /* no such header: a change adds it, a deletion has nothing to do */
                return *x->value ? headers_insert(h, h->n, header_text(x->name, x->value)) : 0;
        }
        }
        return 0;
}

int milter_edits_apply_content(const MilterEdits *e, const char *content, size_t len, char **ret,
                               size_t *ret_len) {
        _cleanup_(headers_done) Headers h = {};
        bool headers_changed = false;
        size_t rest = 0;
        int r;

        r = headers_split(content, len, &h, &rest);
        for (size_t i = 0; r >= 0 && i < e->n; i++) {
                const MilterEdit *x = &e->v[i];
                if (x->cmd == MILTER_R_ADDHEADER || x->cmd == MILTER_R_INSHEADER || x->cmd == MILTER_R_CHGHEADER) {
                        headers_changed = true;
                        r = header_edit(&h, x);
                }
        }
        if (r < 0)
                return r;
        if (!headers_changed && !e->body_replaced)
                return 1;
        /* Rebuild: the headers, then the separator and body (replaced or as they were). */
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        for (size_t i = 0; r >= 0 && i < h.n; i++)
                r = strbuf_puts(&out, h.v[i]);
        if (r >= 0 && e->body_replaced) {
                size_t bl = 0;
                _cleanup_free_ char *body = to_lf(e->body.data ? e->body.data : "", e->body.len, &bl);
                if (!body)
                        return -ENOMEM;
                r = strbuf_puts(&out, "\n");
                if (r >= 0)
                        r = strbuf_append(&out, body, bl);
        } else if (r >= 0)
                r = strbuf_append(&out, content + rest, len - rest);
        if (r < 0)
                return r;
        size_t n = out.len;
        char *c = strbuf_steal(&out);
        if (!c)
                return -ENOMEM;
        *ret = c;
        *ret_len = n;
        return 0;
}
