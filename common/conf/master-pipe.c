/* master-pipe.c — what a master.cf pipe(8) entry says, and what it expands to.
 *
 * pipe_spec_parse() reads the command attributes (flags=, user=, argv= and the words after it,
 * size=, eol=, null_sender=; chroot= and directory= are refused, as Postern does not change
 * roots or directories for commands); pipe_argv_expand() expands the $name and ${name} macros of
 * argv= word by word, never through a shell: a word that names a recipient-dependent macro is
 * repeated once per recipient; pipe_format_input() builds what the command reads on stdin.
 * Pure functions, no logging (test-master-pipe.c). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master-pipe.h"

static const struct { char c; unsigned f; } pipe_flags[] = {
        { 'B', PIPE_F_BLANK }, { 'D', PIPE_F_DELIVERED }, { 'F', PIPE_F_FROM },
        { 'O', PIPE_F_ORIG_TO }, { 'R', PIPE_F_RETURN_PATH }, { 'X', PIPE_F_FINAL },
        { 'h', PIPE_F_FOLD_HOST }, { 'q', PIPE_F_QUOTE }, { 'u', PIPE_F_FOLD_USER },
        { '.', PIPE_F_DOT }, { '>', PIPE_F_QUOTE_FROM },
};

void pipe_spec_done(PipeSpec *p) {
        free(p->user);
        free(p->group);
        strv_free(p->argv);
        free(p->eol);
        free(p->null_sender);
        *p = (PipeSpec) {};
}

/* Decodes the C-style escapes of eol= (\n \r \t \\ and octal \ooo). */
static char *eol_decode(const char *s) {
        char *out = malloc(strlen(s) + 1), *o = out;
        if (!out)
                return NULL;
        for (; *s; s++) {
                if (*s != '\\' || !s[1]) {
                        *o++ = *s;
                        continue;
                }
                s++;
                switch (*s) {
                case 'n': *o++ = '\n'; break;
                case 'r': *o++ = '\r'; break;
                case 't': *o++ = '\t'; break;
                default:
                        if (*s >= '0' && *s <= '7') {
                                int v = 0, k = 0;
                                for (; k < 3 && *s >= '0' && *s <= '7'; k++, s++)
                                        v = v * 8 + (*s - '0');
                                s--;
                                *o++ = (char) v;
                        } else
                                *o++ = *s;
                }
        }
        *o = '\0';
        return out;
}

static int fail(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

int pipe_spec_parse(const MasterEntry *e, PipeSpec *ret, char **ret_error) {
        PipeSpec p = {};
        size_t n = 0;
        int r = -ENOMEM;

        *ret_error = NULL;
        for (char **a = e->args; a && *a; a++) {
                const char *v;
                if ((v = startswith(*a, "flags="))) {
                        for (const char *c = v; *c; c++) {
                                size_t k = 0;
                                while (k < ELEMENTSOF(pipe_flags) && pipe_flags[k].c != *c)
                                        k++;
                                if (k == ELEMENTSOF(pipe_flags)) {
                                        r = fail(ret_error, "unknown flag '%c' in %s", *c, *a);
                                        goto out;
                                }
                                p.flags |= pipe_flags[k].f;
                        }
                } else if ((v = startswith(*a, "user="))) {
                        const char *colon = strchr(v, ':');
                        free(p.user);
                        free(p.group);
                        p.group = NULL;
                        if (!(p.user = colon ? strndup(v, (size_t) (colon - v)) : strdup(v)) ||
                            (colon && !(p.group = strdup(colon + 1))))
                                goto out;
                } else if ((v = startswith(*a, "size="))) {
                        char *end = NULL;
                        errno = 0;
                        p.size_limit = strtoll(v, &end, 10);
                        if (errno || !end || end == v || *end || p.size_limit < 0) {
                                r = fail(ret_error, "invalid %s", *a);
                                goto out;
                        }
                } else if ((v = startswith(*a, "eol="))) {
                        free(p.eol);
                        if (!(p.eol = eol_decode(v)))
                                goto out;
                } else if ((v = startswith(*a, "null_sender="))) {
                        free(p.null_sender);
                        if (!(p.null_sender = strdup(v)))
                                goto out;
                } else if ((v = startswith(*a, "argv="))) {
                        size_t rest = 1;
                        for (char **b = a + 1; *b; b++)
                                rest++;
                        if (!(p.argv = calloc(rest + 1, sizeof(char *))) || !(p.argv[n++] = strdup(v)))
                                goto out;
                        for (char **b = a + 1; *b; b++)
                                if (!(p.argv[n++] = strdup(*b)))
                                        goto out;
                        break;   /* argv= is the last attribute */
                } else if (startswith(*a, "chroot=") || startswith(*a, "directory=")) {
                        r = fail(ret_error, "not supported: %s (commands run in the user's home directory, "
                                 "without chroot)", *a);
                        goto out;
                } else {
                        r = fail(ret_error, "unknown attribute \"%s\"", *a);
                        goto out;
                }
        }
        if (!p.argv || isempty(p.argv[0])) {
                r = fail(ret_error, "%s", "argv= is missing");
                goto out;
        }
        if (isempty(p.user)) {
                r = fail(ret_error, "%s", "user= is missing");
                goto out;
        }
        if (streq(p.user, "root") || (p.group && streq(p.group, "root"))) {
                r = fail(ret_error, "user=%s: delivery as root is not allowed", p.user);
                goto out;
        }
        if (!p.eol && !(p.eol = strdup("\n")))
                goto out;
        if (!p.null_sender && !(p.null_sender = strdup("MAILER-DAEMON")))
                goto out;
        *ret = p;
        return 0;
out:
        pipe_spec_done(&p);
        if (r == -ENOMEM)
                *ret_error = NULL;
        return r;
}

/* --- macros --- */

enum { PER_MESSAGE, PER_RECIPIENT };

static const struct { const char *name; int scope; } pipe_macros[] = {
        { "client_address", PER_MESSAGE }, { "client_helo", PER_MESSAGE },
        { "client_hostname", PER_MESSAGE }, { "client_port", PER_MESSAGE },
        { "client_protocol", PER_MESSAGE }, { "domain", PER_RECIPIENT },
        { "extension", PER_RECIPIENT }, { "mailbox", PER_RECIPIENT },
        { "nexthop", PER_MESSAGE }, { "original_recipient", PER_RECIPIENT },
        { "queue_id", PER_MESSAGE }, { "recipient", PER_RECIPIENT },
        { "sasl_method", PER_MESSAGE }, { "sasl_sender", PER_MESSAGE },
        { "sasl_username", PER_MESSAGE }, { "sender", PER_MESSAGE },
        { "size", PER_MESSAGE }, { "user", PER_RECIPIENT },
};

static int macro_scope(const char *name, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(pipe_macros); i++)
                if (strlen(pipe_macros[i].name) == len && strncmp(pipe_macros[i].name, name, len) == 0)
                        return pipe_macros[i].scope;
        return -1;
}

/* Finds the next macro in s at or after *pos: name and length, and where it ends. */
static int next_macro(const char *s, size_t *pos, const char **ret_name, size_t *ret_len, size_t *ret_end) {
        for (size_t i = *pos; s[i]; i++) {
                if (s[i] != '$')
                        continue;
                if (s[i + 1] == '$') {
                        i++;
                        continue;
                }
                if (s[i + 1] == '{') {
                        const char *close = strchr(s + i + 2, '}');
                        if (!close)
                                return -EINVAL;
                        *ret_name = s + i + 2;
                        *ret_len = (size_t) (close - (s + i + 2));
                        *ret_end = (size_t) (close - s) + 1;
                } else {
                        size_t k = i + 1;
                        while (isalnum((unsigned char) s[k]) || s[k] == '_')
                                k++;
                        if (k == i + 1)
                                return -EINVAL;
                        *ret_name = s + i + 1;
                        *ret_len = k - i - 1;
                        *ret_end = k;
                }
                *pos = i;
                return 1;
        }
        return 0;
}

/* Appends a local part: the queue holds addresses in their external (quoted) form; flag q keeps
 * or adds RFC 5322 quoting where the local part needs it, without q the quotes are taken off (as
 * Postfix passes the internal form). */
static int put_local(StrBuf *b, const char *s, size_t len, bool quote) {
        bool special = false;
        if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
                if (quote)
                        return strbuf_append(b, s, len);
                int r = 0;
                for (size_t i = 1; r >= 0 && i + 1 < len; i++) {
                        if (s[i] == '\\' && i + 2 < len)
                                i++;
                        r = strbuf_putc(b, s[i]);
                }
                return r;
        }
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr("!#$%&'*+-/=?^_`{|}~.", s[i]))
                        special = true;
        if (!quote || !special)
                return strbuf_append(b, s, len);
        int r = strbuf_putc(b, '"');
        for (size_t i = 0; r >= 0 && i < len; i++) {
                if (s[i] == '"' || s[i] == '\\')
                        r = strbuf_putc(b, '\\');
                if (r >= 0)
                        r = strbuf_putc(b, s[i]);
        }
        return r < 0 ? r : strbuf_putc(b, '"');
}

/* Appends an address with the q, u and h flags applied. */
static int put_address(StrBuf *b, const PipeSpec *p, const char *a) {
        const char *at = strrchr(a, '@');
        size_t ll = at ? (size_t) (at - a) : strlen(a);
        size_t start = b->len;
        int r = put_local(b, a, ll, p->flags & PIPE_F_QUOTE);
        if (r >= 0 && (p->flags & PIPE_F_FOLD_USER))
                for (size_t i = start; i < b->len; i++)
                        b->data[i] = (char) tolower((unsigned char) b->data[i]);
        if (r < 0 || !at)
                return r;
        start = b->len;
        r = strbuf_puts(b, at);
        if (r >= 0 && (p->flags & PIPE_F_FOLD_HOST))
                for (size_t i = start; i < b->len; i++)
                        b->data[i] = (char) tolower((unsigned char) b->data[i]);
        return r;
}

static int put_folded(StrBuf *b, const char *s, size_t len, bool fold) {
        size_t start = b->len;
        int r = strbuf_append(b, s, len);
        if (r >= 0 && fold)
                for (size_t i = start; i < b->len; i++)
                        b->data[i] = (char) tolower((unsigned char) b->data[i]);
        return r;
}

/* Appends the value of macro name for recipient i. */
static int put_macro(StrBuf *b, const PipeSpec *p, const PipeVars *v, const char *name, size_t i) {
        const char *rcpt = v->n_recipients > 0 ? v->recipients[i] : "";
        const char *at = strrchr(rcpt, '@');
        size_t ll = at ? (size_t) (at - rcpt) : strlen(rcpt);
        size_t base = ll;
        if (!isempty(v->recipient_delimiter) && ll > 1) {
                size_t k = 1 + strcspn(rcpt + 1, v->recipient_delimiter);
                if (k < ll)
                        base = k;
        }
        bool fold_user = p->flags & PIPE_F_FOLD_USER, fold_host = p->flags & PIPE_F_FOLD_HOST;

        if (streq(name, "sender"))
                return isempty(v->sender) ? strbuf_puts(b, p->null_sender) : put_address(b, p, v->sender);
        if (streq(name, "recipient"))
                return put_address(b, p, rcpt);
        if (streq(name, "original_recipient")) {
                const char *o = v->orig_recipients && v->orig_recipients[i] ? v->orig_recipients[i] : rcpt;
                return put_address(b, p, o);
        }
        if (streq(name, "user"))
                return put_folded(b, rcpt, base, fold_user);
        if (streq(name, "mailbox"))
                return put_folded(b, rcpt, ll, fold_user);
        if (streq(name, "extension"))
                return base < ll ? put_folded(b, rcpt + base + 1, ll - base - 1, fold_user) : 0;
        if (streq(name, "domain"))
                return at ? put_folded(b, at + 1, strlen(at + 1), fold_host) : 0;
        if (streq(name, "nexthop"))
                return put_folded(b, strempty(v->nexthop), strlen(strempty(v->nexthop)), fold_host);
        if (streq(name, "size"))
                return strbuf_printf(b, "%llu", (unsigned long long) v->size);
        /* The plain per-message values, as they are. */
        static const struct { const char *name; size_t offset; } plain[] = {
                { "queue_id", offsetof(PipeVars, queue_id) },
                { "client_address", offsetof(PipeVars, client_address) },
                { "client_hostname", offsetof(PipeVars, client_hostname) },
                { "client_helo", offsetof(PipeVars, client_helo) },
                { "client_protocol", offsetof(PipeVars, client_protocol) },
                { "sasl_method", offsetof(PipeVars, sasl_method) },
                { "sasl_username", offsetof(PipeVars, sasl_username) },
                { "sasl_sender", offsetof(PipeVars, sasl_sender) },
        };
        for (size_t k = 0; k < ELEMENTSOF(plain); k++)
                if (streq(name, plain[k].name))
                        return strbuf_puts(b, strempty(*(const char *const *) ((const char *) v + plain[k].offset)));
        return 0;   /* client_port: not in the queue */
}

/* Appends literal text, "$$" standing for one "$". */
static int put_literal(StrBuf *b, const char *s, size_t len) {
        int r = 0;
        for (size_t k = 0; r >= 0 && k < len; k++) {
                r = strbuf_putc(b, s[k]);
                if (s[k] == '$' && k + 1 < len && s[k + 1] == '$')
                        k++;
        }
        return r;
}

/* Expands word for recipient i into b (NUL-terminated). */
static int expand_word(const PipeSpec *p, const PipeVars *v, const char *w, size_t i, StrBuf *b) {
        size_t pos = 0, copied = 0, end, len;
        const char *name;
        int r;
        strbuf_reset(b);
        while ((r = next_macro(w, &pos, &name, &len, &end)) > 0) {
                char nm[64];
                snprintf(nm, sizeof(nm), "%.*s", (int) MIN(len, sizeof(nm) - 1), name);
                if ((r = put_literal(b, w + copied, pos - copied)) < 0 || (r = put_macro(b, p, v, nm, i)) < 0)
                        return r;
                pos = copied = end;
        }
        if (r < 0 || (r = put_literal(b, w + copied, strlen(w + copied))) < 0)
                return r;
        return strbuf_putc(b, '\0');
}

int pipe_argv_expand(const PipeSpec *p, const PipeVars *v, char ***ret, char **ret_error) {
        _cleanup_strv_free_ char **out = NULL;
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT;
        size_t n = 0, cap = 0;

        *ret_error = NULL;
        for (char **w = p->argv; *w; w++) {
                bool per_rcpt = false;
                size_t pos = 0, end, len;
                const char *name;
                int r;
                while ((r = next_macro(*w, &pos, &name, &len, &end)) > 0) {
                        int s = macro_scope(name, len);
                        if (s < 0) {
                                char nm[64];
                                snprintf(nm, sizeof(nm), "%.*s", (int) MIN(len, sizeof(nm) - 1), name);
                                return fail(ret_error, "unknown macro \"%s\" in argv=", nm);
                        }
                        per_rcpt = per_rcpt || s == PER_RECIPIENT;
                        pos = end;
                }
                if (r < 0)
                        return fail(ret_error, "malformed macro in argv word \"%s\"", *w);
                size_t times = per_rcpt ? v->n_recipients : 1;
                for (size_t i = 0; i < times; i++) {
                        if (n + 2 > cap) {
                                size_t nc = cap ? cap * 2 : 16;
                                char **nn = realloc(out, nc * sizeof(char *));
                                if (!nn)
                                        return -ENOMEM;
                                out = nn;
                                cap = nc;
                        }
                        out[n] = NULL;
                        if ((r = expand_word(p, v, *w, i, &b)) < 0)
                                return r;
                        if (!(out[n] = strdup(b.data)))
                                return -ENOMEM;
                        out[++n] = NULL;
                }
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* --- the command's input --- */

static int put_line(StrBuf *out, const PipeSpec *p, const char *s, size_t len) {
        int r = 0;
        if ((p->flags & PIPE_F_DOT) && len > 0 && s[0] == '.')
                r = strbuf_putc(out, '.');
        if (r >= 0 && (p->flags & PIPE_F_QUOTE_FROM) && len >= 5 && memcmp(s, "From ", 5) == 0)
                r = strbuf_putc(out, '>');
        if (r >= 0)
                r = strbuf_append(out, s, len);
        return r < 0 ? r : strbuf_puts(out, p->eol);
}

int pipe_format_input(const PipeSpec *p, const PipeVars *v, const char *content, size_t len,
                      const char *timestamp, StrBuf *out) {
        _cleanup_(strbuf_donep) StrBuf h = STRBUF_INIT;
        const char *sender = isempty(v->sender) ? p->null_sender : v->sender;
        const char *rcpt = v->n_recipients > 0 ? v->recipients[0] : "";
        const char *orig = v->n_recipients > 0 && v->orig_recipients && v->orig_recipients[0] ?
                                   v->orig_recipients[0] : rcpt;
        int r = 0;

        /* Header lines are made without the content's quoting; only eol= applies to them. */
        if (p->flags & PIPE_F_FROM) {
                strbuf_reset(&h);
                if ((r = strbuf_printf(&h, "From %s  %s", sender, timestamp)) < 0 ||
                    (r = strbuf_append(out, h.data, h.len)) < 0 || (r = strbuf_puts(out, p->eol)) < 0)
                        return r;
        }
        if (p->flags & PIPE_F_RETURN_PATH) {
                strbuf_reset(&h);
                if ((r = strbuf_puts(&h, "Return-Path: <")) < 0 ||
                    (!isempty(v->sender) && (r = put_address(&h, p, v->sender)) < 0) ||
                    (r = strbuf_putc(&h, '>')) < 0 ||
                    (r = strbuf_append(out, h.data, h.len)) < 0 || (r = strbuf_puts(out, p->eol)) < 0)
                        return r;
        }
        if (p->flags & PIPE_F_ORIG_TO) {
                strbuf_reset(&h);
                if ((r = strbuf_puts(&h, "X-Original-To: ")) < 0 || (r = put_address(&h, p, orig)) < 0 ||
                    (r = strbuf_append(out, h.data, h.len)) < 0 || (r = strbuf_puts(out, p->eol)) < 0)
                        return r;
        }
        if (p->flags & PIPE_F_DELIVERED) {
                strbuf_reset(&h);
                if ((r = strbuf_puts(&h, "Delivered-To: ")) < 0 || (r = put_address(&h, p, rcpt)) < 0 ||
                    (r = strbuf_append(out, h.data, h.len)) < 0 || (r = strbuf_puts(out, p->eol)) < 0)
                        return r;
        }
        for (size_t a = 0; a < len;) {
                const char *nl = memchr(content + a, '\n', len - a);
                size_t l = nl ? (size_t) (nl - (content + a)) : len - a;
                if ((r = put_line(out, p, content + a, l)) < 0)
                        return r;
                a += l + (nl ? 1 : 0);
        }
        if (p->flags & PIPE_F_BLANK)
                r = strbuf_puts(out, p->eol);
        return r;
}
