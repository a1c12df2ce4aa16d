/* mac-expand.c — Postfix-style $name / ${name?text} / ${name:text} expansion with values from a
 * callback; the syntax is in mac-expand.h. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "mac-expand.h"

#define MAC_MAX_NESTING 10

typedef struct MacState {
        MacLookup lookup;
        void *userdata;
        const char *filter;
        StrBuf *out;
        unsigned flags;
} MacState;

static bool name_char(char c) {
        return isalnum((unsigned char) c) || c == '_';
}

/* Appends the value of name[0..n-1]; returns 1 when it had a non-empty one, 0 when not, <0. */
static int put_value(MacState *m, const char *name, size_t n, bool append) {
        char key[256];
        if (n >= sizeof(key))
                return 0;
        memcpy(key, name, n);
        key[n] = '\0';
        const char *v = m->lookup(key, m->userdata);
        if (!v || !*v)
                return 0;
        if (!append)
                return 1;
        for (const char *p = v; *p; p++) {
                char c = m->filter && !strchr(m->filter, *p) ? '_' : *p;
                int r = strbuf_putc(m->out, c);
                if (r < 0)
                        return r;
        }
        return 1;
}

/* The index of the bracket that closes the one opened just before t[i] (close), or len. */
static size_t find_close(const char *t, size_t i, size_t len, char open, char close) {
        for (int depth = 0; i < len; i++) {
                if (t[i] == open)
                        depth++;
                else if (t[i] == close && depth-- == 0)
                        return i;
        }
        return len;
}

static int expand(MacState *m, const char *t, size_t len, unsigned nesting);

/* "${name...}" or "$(name...)" with t[i] at the opening bracket; *ret_end is past the closer. */
static int expand_bracketed(MacState *m, const char *t, size_t i, size_t len, unsigned nesting, size_t *ret_end) {
        char open = t[i], close = open == '{' ? '}' : ')';
        size_t end = find_close(t, i + 1, len, open, close);
        size_t start = i + 1, n = 0;
        while (start + n < end && name_char(t[start + n]))
                n++;
        if (end >= len || n == 0) {
                m->flags |= MAC_EXPAND_ERROR;
                *ret_end = len;
                return 0;
        }
        *ret_end = end + 1;
        size_t j = start + n;
        while (j < end && isspace((unsigned char) t[j]))
                j++;
        if (j == end) {   /* ${name} */
                int r = put_value(m, t + start, n, true);
                if (r == 0)
                        m->flags |= MAC_EXPAND_UNDEF;
                return r < 0 ? r : 0;
        }
        char op = t[j++];
        if (op != '?' && op != ':') {
                m->flags |= MAC_EXPAND_ERROR;
                return 0;
        }
        const char *when_set = NULL, *when_unset = NULL;
        size_t l_set = 0, l_unset = 0;
        size_t k = j;
        while (k < end && isspace((unsigned char) t[k]))
                k++;
        if (k < end && t[k] == '{') {
                /* ${name?{a}}, ${name:{b}}, ${name?{a}:{b}} */
                size_t e = find_close(t, k + 1, end, '{', '}');
                if (e >= end) {
                        m->flags |= MAC_EXPAND_ERROR;
                        return 0;
                }
                if (op == '?')
                        when_set = t + k + 1, l_set = e - k - 1;
                else
                        when_unset = t + k + 1, l_unset = e - k - 1;
                k = e + 1;
                while (k < end && isspace((unsigned char) t[k]))
                        k++;
                if (op == '?' && k < end && t[k] == ':') {
                        k++;
                        while (k < end && isspace((unsigned char) t[k]))
                                k++;
                        e = k < end && t[k] == '{' ? find_close(t, k + 1, end, '{', '}') : end;
                        if (e >= end) {
                                m->flags |= MAC_EXPAND_ERROR;
                                return 0;
                        }
                        when_unset = t + k + 1, l_unset = e - k - 1;
                        k = e + 1;
                        while (k < end && isspace((unsigned char) t[k]))
                                k++;
                }
                if (k != end) {
                        m->flags |= MAC_EXPAND_ERROR;
                        return 0;
                }
        } else if (op == '?')
                when_set = t + j, l_set = end - j;
        else
                when_unset = t + j, l_unset = end - j;

        int set = put_value(m, t + start, n, false);
        if (set < 0)
                return set;
        if (set && when_set)
                return expand(m, when_set, l_set, nesting + 1);
        if (!set && when_unset)
                return expand(m, when_unset, l_unset, nesting + 1);
        return 0;
}

static int expand(MacState *m, const char *t, size_t len, unsigned nesting) {
        int r = 0;

        if (nesting > MAC_MAX_NESTING) {
                m->flags |= MAC_EXPAND_ERROR;
                return 0;
        }
        for (size_t i = 0; i < len && r >= 0;) {
                const char *dollar = memchr(t + i, '$', len - i);
                size_t lit = dollar ? (size_t) (dollar - (t + i)) : len - i;
                if ((r = strbuf_append(m->out, t + i, lit)) < 0)
                        break;
                i += lit;
                if (i >= len)
                        break;
                if (i + 1 < len && t[i + 1] == '$') {
                        r = strbuf_putc(m->out, '$');
                        i += 2;
                } else if (i + 1 < len && (t[i + 1] == '{' || t[i + 1] == '(')) {
                        r = expand_bracketed(m, t, i + 1, len, nesting, &i);
                } else {
                        size_t n = 0;
                        while (i + 1 + n < len && name_char(t[i + 1 + n]))
                                n++;
                        if (n == 0) {   /* a lone '$' */
                                r = strbuf_putc(m->out, '$');
                                i++;
                                continue;
                        }
                        r = put_value(m, t + i + 1, n, true);
                        if (r == 0)
                                m->flags |= MAC_EXPAND_UNDEF;
                        i += 1 + n;
                }
        }
        return r < 0 ? r : 0;
}

int mac_expand(const char *template, MacLookup lookup, void *userdata, const char *filter, StrBuf *out,
               unsigned *ret_flags) {
        MacState m = { .lookup = lookup, .userdata = userdata, .filter = filter, .out = out };
        int r = expand(&m, template ? template : "", template ? strlen(template) : 0, 0);
        if (r >= 0 && !out->data)
                r = strbuf_puts(out, "");   /* a valid (empty) string even when nothing was appended */
        if (ret_flags)
                *ret_flags = m.flags;
        return r;
}
