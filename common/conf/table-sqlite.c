/* table-sqlite.c — sqlite:/path/to/file.cf lookup tables, configured as in Postfix's
 * sqlite_table(5):
 *
 *     dbpath = /var/lib/postern/virtual.sqlite
 *     query = SELECT target FROM aliases WHERE address = '%s'
 *     result_format = %s          (optional; default %s)
 *     domain = example.org, example.net   (optional: only keys in these domains are looked up)
 *     expansion_limit = 0         (optional: more results than this is an error; 0 = no limit)
 *
 * In query: %s is the key, %u its local part, %d its domain (a query whose %d or %u cannot be
 * filled is not run), %1..%9 the domain's labels counted from the right, %% a percent sign.
 * Substituted text has single quotes doubled. In result_format, %s/%u/%d refer to the result
 * value. Several rows (and several columns) give one comma-separated result. The database is
 * opened read-only; a failing query is a temporary error (-EIO). */
#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/strbuf.h"
#include "conf.h"
#include "table-sqlite.h"

struct TableSqlite {
        sqlite3 *db;
        char *query;
        char *result_format;
        char **domains;
        long expansion_limit;
};

/* Closes the database; accepts NULL. */
TableSqlite *table_sqlite_free(TableSqlite *s) {
        if (!s)
                return NULL;
        sqlite3_close_v2(s->db);
        free(s->query);
        free(s->result_format);
        strv_free(s->domains);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableSqlite *, table_sqlite_free);

static char *sqlite_trim(char *s) {
        while (isspace((unsigned char) *s))
                s++;
        size_t l = strlen(s);
        while (l > 0 && isspace((unsigned char) s[l - 1]))
                s[--l] = '\0';
        return s;
}

/* Reads "name = value" lines (comments, continuation lines) into the settings we know. */
static int sqlite_read_config(TableSqlite *s, const char *path, char **ret_dbpath, char **ret_reason) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                reason_printf(ret_reason, "cannot open %s: %s", path, strerror(-r));
                return r;
        }
        _cleanup_free_ char *buf = NULL;
        size_t bufsz = 0;
        _cleanup_strbuf_ StrBuf logical = STRBUF_INIT;
        logical.limit = 64 * 1024;
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
                                if (strbuf_putc(&logical, ' ') < 0 || strbuf_puts(&logical, sqlite_trim(first)) < 0) {
                                        reason_printf(ret_reason, "%s:%u: line too long", path, start);
                                        return -EINVAL;
                                }
                                continue;
                        }
                }
                if (have) {
                        char *eq = strchr(logical.data, '=');
                        if (!eq) {
                                reason_printf(ret_reason, "%s:%u: expected \"name = value\"", path, start);
                                return -EINVAL;
                        }
                        *eq = '\0';
                        char *name = sqlite_trim(logical.data), *value = sqlite_trim(eq + 1);
                        char **slot = streq(name, "dbpath") ? ret_dbpath :
                                      streq(name, "query") ? &s->query :
                                      streq(name, "result_format") ? &s->result_format : NULL;
                        if (slot) {
                                free(*slot);
                                if (!(*slot = strdup(value)))
                                        return -ENOMEM;
                        } else if (streq(name, "domain")) {
                                strv_free(s->domains);
                                if (!(s->domains = conf_split_list(value)))
                                        return -ENOMEM;
                        } else if (streq(name, "expansion_limit")) {
                                char *end;
                                s->expansion_limit = strtol(value, &end, 10);
                                if (*end || s->expansion_limit < 0) {
                                        reason_printf(ret_reason, "%s:%u: expansion_limit: not a number", path, start);
                                        return -EINVAL;
                                }
                        } else {
                                reason_printf(ret_reason, "%s:%u: %s: unknown or unsupported setting", path, start, name);
                                return -EINVAL;
                        }
                }
                if (n < 0)
                        break;
                strbuf_reset(&logical);
                if (strbuf_puts(&logical, sqlite_trim(buf)) < 0)
                        return -ENOMEM;
                have = true;
                start = lineno;
        }
        return ferror(f) ? -EIO : 0;
}

/* Opens the database that path's settings name. */
int table_sqlite_open(const char *path, TableSqlite **ret, char **ret_reason) {
        _cleanup_(table_sqlite_freep) TableSqlite *s = calloc(1, sizeof(TableSqlite));
        if (!s)
                return -ENOMEM;
        _cleanup_free_ char *dbpath = NULL;
        int r = sqlite_read_config(s, path, &dbpath, ret_reason);
        if (r < 0)
                return r;
        if (!dbpath || !s->query) {
                reason_printf(ret_reason, "%s: needs both dbpath and query", path);
                return -EINVAL;
        }
        if (!s->result_format && !(s->result_format = strdup("%s")))
                return -ENOMEM;
        if (sqlite3_open_v2(dbpath, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
                reason_printf(ret_reason, "%s: cannot open database %s: %s", path, dbpath,
                              s->db ? sqlite3_errmsg(s->db) : "out of memory");
                return -EIO;
        }
        /* Lookups may run in root's postern-local: views in someone else's file may not call
         * functions with side effects, and the file is only read. */
        if (sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *) NULL) != SQLITE_OK ||
            sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *) NULL) != SQLITE_OK) {
                reason_printf(ret_reason, "%s: cannot open database %s defensively", path, dbpath);
                return -EIO;
        }
        sqlite3_busy_timeout(s->db, 1000);
        *ret = TAKE_PTR(s);
        return 0;
}

/* Appends text with single quotes doubled (SQL string literal contents). */
static int sqlite_put_quoted(StrBuf *b, const char *text, size_t len, bool quote) {
        int r = 0;
        for (size_t i = 0; i < len && r >= 0; i++)
                r = (quote && text[i] == '\'') ? strbuf_puts(b, "''") : strbuf_putc(b, text[i]);
        return r;
}

/* Expands %s %u %d %1..%9 %% in fmt for value; returns 0, or 1 when a part is missing. */
static int sqlite_expand(const char *fmt, const char *value, bool quote, StrBuf *out) {
        const char *at = strrchr(value, '@');
        for (const char *p = fmt; *p; p++) {
                int r;
                if (*p != '%' || !p[1]) {
                        r = strbuf_putc(out, *p);
                } else switch (*++p) {
                case '%':
                        r = strbuf_putc(out, '%');
                        break;
                case 's':
                        r = sqlite_put_quoted(out, value, strlen(value), quote);
                        break;
                case 'u':
                        r = sqlite_put_quoted(out, value, at ? (size_t) (at - value) : strlen(value), quote);
                        break;
                case 'd':
                        if (!at || !at[1])
                                return 1;
                        r = sqlite_put_quoted(out, at + 1, strlen(at + 1), quote);
                        break;
                case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9': {
                        if (!at || !at[1])
                                return 1;
                        /* %1 is the rightmost label of the domain, %2 the one before, ...:
                         * counted from the right, however many labels there are */
                        const char *dom = at + 1, *end = dom + strlen(dom), *start = end;
                        for (int k = 0; k < *p - '0'; k++) {
                                if (k > 0) {
                                        if (start == dom)
                                                return 1;
                                        end = start - 1;   /* before the dot */
                                }
                                start = end;
                                while (start > dom && start[-1] != '.')
                                        start--;
                        }
                        r = sqlite_put_quoted(out, start, (size_t) (end - start), quote);
                        break;
                }
                default:
                        r = strbuf_putc(out, '%') < 0 ? -ENOMEM : strbuf_putc(out, *p);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool sqlite_domain_ok(TableSqlite *s, const char *key) {
        if (!s->domains || !s->domains[0])
                return true;
        const char *at = strrchr(key, '@');
        if (!at)
                return false;
        for (char **d = s->domains; *d; d++)
                if (strcaseeq(*d, at + 1))
                        return true;
        return false;
}

/* Runs the query for key. */
int table_sqlite_lookup(TableSqlite *s, const char *key, char **ret_value) {
        if (!sqlite_domain_ok(s, key))
                return 0;
        _cleanup_strbuf_ StrBuf q = STRBUF_INIT;
        q.limit = 64 * 1024;
        int r = sqlite_expand(s->query, key, true, &q);
        if (r != 0)
                return r > 0 ? 0 : r;

        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, q.data, -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        out.limit = 1024 * 1024;
        long count = 0;
        int rc = SQLITE_DONE;
        r = 0;
        while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                for (int col = 0; col < sqlite3_column_count(st) && r >= 0; col++) {
                        const unsigned char *v = sqlite3_column_text(st, col);
                        if (!v || !*v)
                                continue;
                        if (s->expansion_limit && ++count > s->expansion_limit) {
                                r = -EIO;
                                break;
                        }
                        _cleanup_strbuf_ StrBuf one = STRBUF_INIT;
                        int e = sqlite_expand(s->result_format, (const char *) v, false, &one);
                        if (e < 0)
                                r = e;
                        else if (e == 0 && one.len > 0)
                                r = (out.len && strbuf_putc(&out, ',') < 0) ? -ENOMEM : strbuf_puts(&out, one.data);
                }
        }
        if (r >= 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
                r = -EIO;
        sqlite3_finalize(st);
        if (r < 0)
                return r == -EMSGSIZE ? -EIO : r;
        if (out.len == 0)
                return 0;
        if (ret_value && !(*ret_value = strbuf_steal(&out)))
                return -ENOMEM;
        return 1;
}
