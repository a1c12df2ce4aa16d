/* table-cf.c — reading a table's ".cf" file and expanding its %-templates (see table-cf.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "table-cf.h"

#define TABLE_CF_MAX_LINE (64 * 1024)

typedef struct TableCfEntry {
        char *name;
        char *value;
        unsigned line;
        bool asked;
} TableCfEntry;

struct TableCf {
        TableCfEntry *e;
        size_t n;
        bool world_readable;
};

/* Frees the settings; accepts NULL. */
TableCf *table_cf_free(TableCf *cf) {
        if (!cf)
                return NULL;
        for (size_t i = 0; i < cf->n; i++) {
                free(cf->e[i].name);
                free(cf->e[i].value);
        }
        free(cf->e);
        free(cf);
        return NULL;
}

static int table_cf_set(TableCf *cf, char *logical, const char *path, unsigned line, char **ret_reason) {
        char *eq = strchr(logical, '=');
        if (!eq) {
                reason_printf(ret_reason, "%s:%u: expected \"name = value\"", path, line);
                return -EINVAL;
        }
        *eq = '\0';
        const char *name = strstrip(logical), *value = strstrip(eq + 1);
        if (*name == '\0') {
                reason_printf(ret_reason, "%s:%u: a setting without a name", path, line);
                return -EINVAL;
        }
        for (size_t i = 0; i < cf->n; i++)
                if (streq(cf->e[i].name, name)) {
                        char *v = strdup(value);
                        if (!v)
                                return -ENOMEM;
                        free(cf->e[i].value);
                        cf->e[i].value = v;
                        cf->e[i].line = line;
                        return 0;
                }
        TableCfEntry *e = realloc(cf->e, (cf->n + 1) * sizeof(TableCfEntry));
        if (!e)
                return -ENOMEM;
        cf->e = e;
        e[cf->n] = (TableCfEntry) { .name = strdup(name), .value = strdup(value), .line = line };
        if (!e[cf->n].name || !e[cf->n].value) {
                free(e[cf->n].name);
                free(e[cf->n].value);
                return -ENOMEM;
        }
        cf->n++;
        return 0;
}

/* Reads path's "name = value" settings. */
int table_cf_read(const char *path, TableCf **ret, char **ret_reason) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                reason_printf(ret_reason, "cannot open %s: %s", path, strerror(-r));
                return r;
        }
        _cleanup_(table_cf_freep) TableCf *cf = calloc(1, sizeof(TableCf));
        if (!cf)
                return -ENOMEM;
        struct stat st;
        if (fstat(fileno(f), &st) < 0)
                return -errno;
        cf->world_readable = (st.st_mode & S_IROTH) != 0;

        _cleanup_free_ char *buf = NULL;
        size_t bufsz = 0;
        _cleanup_strbuf_ StrBuf logical = STRBUF_INIT;
        logical.limit = TABLE_CF_MAX_LINE;
        unsigned lineno = 0, start = 0;
        bool have = false;
        for (;;) {
                ssize_t n = getline(&buf, &bufsz, f);
                if (n >= 0) {
                        lineno++;
                        char *first = buf + strspn(buf, " \t\r\n");
                        if (*first == '\0' || *first == '#')
                                continue;
                        if (isspace((unsigned char) buf[0]) && have) {
                                if (strbuf_putc(&logical, ' ') < 0 || strbuf_puts(&logical, strstrip(first)) < 0) {
                                        reason_printf(ret_reason, "%s:%u: line too long", path, start);
                                        return -EINVAL;
                                }
                                continue;
                        }
                }
                if (have) {
                        int r = table_cf_set(cf, logical.data, path, start, ret_reason);
                        if (r < 0)
                                return r;
                }
                if (n < 0)
                        break;
                strbuf_reset(&logical);
                if (strbuf_puts(&logical, strstrip(buf)) < 0) {
                        reason_printf(ret_reason, "%s:%u: line too long", path, lineno);
                        return -EINVAL;
                }
                have = true;
                start = lineno;
        }
        if (ferror(f)) {
                reason_printf(ret_reason, "cannot read %s", path);
                return -EIO;
        }
        *ret = TAKE_PTR(cf);
        return 0;
}

/* The value of name and its line, or NULL. */
const char *table_cf_get_line(TableCf *cf, const char *name, unsigned *ret_line) {
        for (size_t i = 0; i < cf->n; i++)
                if (streq(cf->e[i].name, name)) {
                        cf->e[i].asked = true;
                        if (ret_line)
                                *ret_line = cf->e[i].line;
                        return cf->e[i].value;
                }
        if (ret_line)
                *ret_line = 0;
        return NULL;
}

/* The value of name, or NULL. */
const char *table_cf_get(TableCf *cf, const char *name) {
        return table_cf_get_line(cf, name, NULL);
}

/* The first setting that no one asked for. */
const char *table_cf_unknown(const TableCf *cf, unsigned *ret_line) {
        for (size_t i = 0; i < cf->n; i++)
                if (!cf->e[i].asked) {
                        if (ret_line)
                                *ret_line = cf->e[i].line;
                        return cf->e[i].name;
                }
        return NULL;
}

/* Whether key is in one of domains (any key when there are none); keys without '@' or without a
 * local part are not. */
bool table_cf_domain_ok(char **domains, const char *key) {
        if (!domains || !domains[0])
                return true;
        const char *at = strrchr(key, '@');
        if (!at || at == key)
                return false;
        for (char **d = domains; *d; d++)
                if (strcaseeq(*d, at + 1))
                        return true;
        return false;
}

/* Whether every entry of path's setting (default: def) starts with local. */
bool table_cf_servers_local(const char *path, const char *setting, const char *def, const char *local) {
        _cleanup_(table_cf_freep) TableCf *cf = NULL;
        if (table_cf_read(path, &cf, NULL) < 0)
                return false;
        const char *value = table_cf_get(cf, setting);
        _cleanup_strv_free_ char **v = conf_split_list(value ? value : def);
        if (!v || !v[0])
                return false;
        for (char **h = v; *h; h++)
                if (!startswith(*h, local))
                        return false;
        return true;
}

bool table_cf_world_readable(const TableCf *cf) {
        return cf->world_readable;
}

/* Appends text escaped for where it goes. */
int table_cf_escape(StrBuf *out, const char *text, size_t len, TableEscape esc) {
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) text[i];
                int r;
                if (esc == TABLE_ESCAPE_SQL_QUOTE && c == '\'')
                        r = strbuf_puts(out, "''");
                else if (esc == TABLE_ESCAPE_LDAP_FILTER && (c == '*' || c == '(' || c == ')' || c == '\\' || c == '\0'))
                        r = strbuf_printf(out, "\\%02x", c);
                else if (esc == TABLE_ESCAPE_LDAP_DN &&
                         (strchr(",+\"\\<>;=", c) || (i == 0 && (c == ' ' || c == '#')) || (i == len - 1 && c == ' ')))
                        r = (c == '\0') ? strbuf_puts(out, "\\00") : strbuf_putc(out, '\\') < 0 ? -ENOMEM : strbuf_putc(out, (char) c);
                else
                        r = strbuf_putc(out, (char) c);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Checks fmt's %-escapes. */
int table_cf_check_format(const char *fmt, const char *what, char **ret_reason) {
        for (const char *p = fmt; *p; p++) {
                if (*p != '%')
                        continue;
                if (!p[1] || !strchr("%suSUdD123456789", p[1])) {
                        reason_printf(ret_reason, "%s: invalid %%-escape \"%%%.1s\" in \"%s\"", what, p + 1, fmt);
                        return -EINVAL;
                }
                p++;
        }
        return 0;
}

/* The n-th label of domain from the right; false when it has fewer. */
static bool table_cf_label(const char *dom, int n, const char **ret_start, size_t *ret_len) {
        const char *end = dom + strlen(dom), *start = end;
        for (int k = 0; k < n; k++) {
                if (k > 0) {
                        if (start == dom)
                                return false;
                        end = start - 1;   /* before the dot */
                }
                start = end;
                while (start > dom && start[-1] != '.')
                        start--;
        }
        if (start == end)
                return false;
        *ret_start = start;
        *ret_len = (size_t) (end - start);
        return true;
}

/* Appends text through the escaping function (unescaped without one). */
static int table_cf_put(StrBuf *out, const char *text, size_t len, TableEscapeFn esc, void *userdata) {
        return esc ? esc(userdata, out, text, len) : strbuf_append(out, text, len);
}

/* Expands one of %s %u %d (of text); 1 when the part is missing. */
static int table_cf_part(StrBuf *out, const char *text, char what, TableEscapeFn esc, void *userdata) {
        const char *at = strrchr(text, '@');
        switch (what) {
        case 's':
                return table_cf_put(out, text, strlen(text), esc, userdata);
        case 'u':
                if (at && at == text)
                        return 1;
                return table_cf_put(out, text, at ? (size_t) (at - text) : strlen(text), esc, userdata);
        default:   /* 'd' */
                if (!at || !at[1])
                        return 1;
                return table_cf_put(out, at + 1, strlen(at + 1), esc, userdata);
        }
}

/* Expands fmt for value (and key: see table-cf.h), escaping through esc. */
int table_cf_expand_fn(const char *fmt, const char *value, const char *key, TableEscapeFn esc, void *userdata,
                       StrBuf *out) {
        if (!key)
                key = value;
        for (const char *p = fmt; *p; p++) {
                int r;
                if (*p != '%' || !p[1])
                        r = strbuf_putc(out, *p);
                else {
                        char c = *++p;
                        if (c == '%')
                                r = strbuf_putc(out, '%');
                        else if (c == 's' || c == 'u' || c == 'd')
                                r = table_cf_part(out, value, c, esc, userdata);
                        else if (c == 'S' || c == 'U' || c == 'D')
                                r = table_cf_part(out, key, (char) tolower((unsigned char) c), esc, userdata);
                        else if (c >= '1' && c <= '9') {
                                const char *at = strrchr(key, '@'), *start;
                                size_t len;
                                if (!at || !table_cf_label(at + 1, c - '0', &start, &len))
                                        return 1;
                                r = table_cf_put(out, start, len, esc, userdata);
                        } else
                                r = strbuf_putc(out, '%') < 0 ? -ENOMEM : strbuf_putc(out, c);
                }
                if (r != 0)
                        return r;
        }
        return 0;
}

static int table_cf_escape_kind(void *userdata, StrBuf *out, const char *text, size_t len) {
        return table_cf_escape(out, text, len, *(const TableEscape *) userdata);
}

/* Expands fmt, escaping as esc says. */
int table_cf_expand(const char *fmt, const char *value, const char *key, TableEscape esc, StrBuf *out) {
        return table_cf_expand_fn(fmt, value, key, esc == TABLE_ESCAPE_NONE ? NULL : table_cf_escape_kind, &esc, out);
}

/* Adds value, formatted, to the comma-separated out. */
int table_cf_result_add(const char *fmt, const char *value, const char *key, StrBuf *out) {
        if (isempty(value))
                return 0;
        _cleanup_strbuf_ StrBuf one = STRBUF_INIT;
        one.limit = out->limit;
        int r = table_cf_expand(fmt, value, key, TABLE_ESCAPE_NONE, &one);
        if (r != 0 || one.len == 0)
                return r < 0 ? r : 0;
        if (out->len && (r = strbuf_putc(out, ',')) < 0)
                return r;
        r = strbuf_puts(out, one.data);
        return r < 0 ? r : 1;
}
