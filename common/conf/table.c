/* table.c — Postfix-style lookup tables: inline:, static:, texthash: and hash: (and the other
 * indexed types btree:, dbm:, sdbm:, read from their source text; lmdb: and cdb: from postmap's
 * binary file when there is one, hash: and btree: when the text is gone, table-dbfile.c), regexp:, pcre: and cidr: (rule lists, see
 * table-pattern.c), sqlite: (table-sqlite.c), ldap: (table-ldap.c), pgsql: and mysql:
 * (table-sql.c with table-pgsql.c / table-mysql.c), socketmap: and tcp: (table-socketmap.c),
 * unionmap:{a, b} (all results joined with commas),
 * pipemap:{a, b} (a's result is b's key), randmap:{v1, v2} (a random value), and
 * unix:passwd.byname / unix:group.byname. A "proxy:" prefix is accepted and ignored, so Postfix
 * settings like proxy:unix:passwd.byname keep working.
 *
 * File tables are parsed into an in-memory hash table. Before a lookup the file is stat()ed at
 * most once a second; a changed inode, size, mtime or ctime makes the next lookup re-read it.
 * When the file can no longer be read the lookup answers the error (so callers can defer) and the
 * old contents are kept for when it comes back unchanged.
 *
 * Keys are folded to lower case (as Postfix does for these tables); the first of duplicate keys
 * wins (as postmap does). Source syntax: "key value" lines, or with aliases(5) syntax
 * "key: value, value"; a key may be written in double quotes; "#" comment lines and blank lines
 * are skipped; lines that begin with whitespace continue the previous entry. Values are kept as
 * written (quotes included), because the local delivery agent parses alias values itself. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../basic/strbuf.h"
#include "conf.h"
#include "../basic/strmap.h"
#include "table-pattern.h"
#include "table-dbfile.h"
#include "table-ldap.h"
#include "table-socketmap.h"
#include "table-sql.h"
#include "table-sqlite.h"
#include "table-async.h"
#include <pthread.h>
#include "table.h"

#define TABLE_RECHECK_USEC USEC_PER_SEC
#define TABLE_MAX_LINE (1024 * 1024)

typedef enum TableKind {
        TABLE_KIND_INLINE,
        TABLE_KIND_STATIC,
        TABLE_KIND_FILE,
        TABLE_KIND_PASSWD,
        TABLE_KIND_GROUP,
        TABLE_KIND_REGEXP,
        TABLE_KIND_PCRE,
        TABLE_KIND_CIDR,
        TABLE_KIND_UNION,
        TABLE_KIND_PIPE,
        TABLE_KIND_RAND,
        TABLE_KIND_SQLITE,
        TABLE_KIND_LDAP,
        TABLE_KIND_DBFILE,
        TABLE_KIND_SQL,
        TABLE_KIND_SOCKET,
} TableKind;

struct Table {
        char *spec;
        TableKind kind;
        TableFlags flags;
        bool aliases;
        char *value;            /* static: */
        StrMap *map;            /* inline: and file tables: lower-case key -> char* */
        TablePatterns *patterns; /* regexp:, pcre:, cidr: */
        TableList *members;     /* unionmap:, pipemap: */
        char **choices;         /* randmap: */
        TableSqlite *sqlite;    /* sqlite: */
        TableLdap *ldap;        /* ldap: */
        TableDbfile *dbfile;    /* lmdb:, cdb: with postmap's binary file */
        TableSql *sql;          /* pgsql:, mysql: */
        TableSocket *socket;    /* socketmap:, tcp: */
        char *path;
        bool loaded;            /* file tables: read at least once */
        struct stat st;         /* of the file as last read */
        usec_t last_check;
};

struct TableList {
        Table **tables;
        size_t n;
};

static const char *const table_file_types[] = { "texthash", "hash", "btree", "lmdb", "cdb", "dbm", "sdbm" };

static void table_lower(char *s) {
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

/* Adds key -> value unless key is present; key is lower-cased in place. */
static int table_add(StrMap *map, char *key, const char *value) {
        table_lower(key);
        if (strmap_get(map, key))
                return 0;
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        int r = strmap_put(map, key, v);
        if (r < 0)
                free(v);
        return r;
}

/* Splits one logical line into key and value; returns false for a line that is not an entry. */
static bool table_split_entry(char *line, bool aliases, char **ret_key, char **ret_value) {
        char *key, *rest;
        if (*line == '"') {
                /* "quoted key" */
                char *w = line, *r = line + 1;
                for (; *r && *r != '"'; r++) {
                        if (*r == '\\' && r[1])
                                r++;
                        *w++ = *r;
                }
                if (*r != '"')
                        return false;
                *w = '\0';
                key = line;
                rest = r + 1;
        } else {
                key = line;
                rest = line + strcspn(line, aliases ? ":" : " \t");
        }
        if (aliases) {
                rest += strspn(rest, " \t");
                if (*rest != ':')
                        return false;
                *rest++ = '\0';
                key = strstrip(key);
        } else {
                if (*rest != '\0' && *rest != ' ' && *rest != '\t')
                        return false;
                if (*rest)
                        *rest++ = '\0';
        }
        char *value = strstrip(rest);
        if (*key == '\0' || *value == '\0')
                return false;
        *ret_key = key;
        *ret_value = value;
        return true;
}

static int table_parse_stream(FILE *f, bool aliases, StrMap *map) {
        _cleanup_free_ char *buf = NULL;
        size_t bufsz = 0;
        _cleanup_strbuf_ StrBuf logical = STRBUF_INIT;
        logical.limit = TABLE_MAX_LINE;
        bool have = false, too_long = false;

        for (;;) {
                ssize_t n = getline(&buf, &bufsz, f);
                if (n >= 0) {
                        size_t l = strlen(buf);
                        while (l > 0 && isspace((unsigned char) buf[l - 1]))
                                buf[--l] = '\0';
                        const char *first = buf + strspn(buf, " \t\r\f\v");
                        if (*first == '\0' || *first == '#')
                                continue;
                        if (isspace((unsigned char) buf[0])) {
                                if (have && (strbuf_putc(&logical, ' ') < 0 || strbuf_puts(&logical, first) < 0))
                                        too_long = true;
                                continue;
                        }
                }
                if (have && !too_long && logical.data) {
                        char *key, *value;
                        if (table_split_entry(logical.data, aliases, &key, &value)) {
                                int r = table_add(map, key, value);
                                if (r < 0)
                                        return r;
                        }
                }
                if (n < 0)
                        break;
                strbuf_reset(&logical);
                too_long = strbuf_puts(&logical, buf) < 0;
                have = true;
        }
        return ferror(f) ? -EIO : 0;
}

/* (Re)reads a file table; on failure the old contents stay. */
static int table_load_file(Table *t, char **ret_reason) {
        _cleanup_fclose_ FILE *f = fopen(t->path, "re");
        if (!f) {
                int r = -errno;
                reason_printf(ret_reason, "%s: cannot open %s: %s", t->spec, t->path, strerror(-r));
                return r;
        }
        struct stat st;
        if (fstat(fileno(f), &st) < 0) {
                int r = -errno;
                reason_printf(ret_reason, "%s: cannot stat %s: %s", t->spec, t->path, strerror(-r));
                return r;
        }
        if (S_ISDIR(st.st_mode)) {
                reason_printf(ret_reason, "%s: %s is a directory", t->spec, t->path);
                return -EISDIR;
        }
        int r;
        if (t->kind == TABLE_KIND_REGEXP || t->kind == TABLE_KIND_PCRE || t->kind == TABLE_KIND_CIDR) {
                TablePatterns *p = NULL;
                _cleanup_free_ char *why = NULL;
                TablePatternKind kind = t->kind == TABLE_KIND_CIDR ? TABLE_PATTERN_CIDR :
                                        t->kind == TABLE_KIND_PCRE ? TABLE_PATTERN_PCRE : TABLE_PATTERN_REGEXP;
                r = table_patterns_parse(f, kind, t->path, &p, &why);
                if (r < 0) {
                        reason_printf(ret_reason, "%s: %s", t->spec, why ? why : strerror(-r));
                        return r;
                }
                table_patterns_free(t->patterns);
                t->patterns = p;
        } else {
                _cleanup_(strmap_freep) StrMap *map = strmap_new(free);
                if (!map)
                        return -ENOMEM;
                r = table_parse_stream(f, t->aliases, map);
                if (r < 0) {
                        reason_printf(ret_reason, "%s: cannot read %s: %s", t->spec, t->path, strerror(-r));
                        return r;
                }
                strmap_free(t->map);
                t->map = TAKE_PTR(map);
        }
        t->loaded = true;
        t->st = st;
        t->last_check = now_usec(CLOCK_MONOTONIC);
        return 0;
}

static bool table_stat_changed(const struct stat *a, const struct stat *b) {
        return a->st_ino != b->st_ino || a->st_dev != b->st_dev || a->st_size != b->st_size ||
               a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec ||
               a->st_ctim.tv_sec != b->st_ctim.tv_sec || a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}

static int table_refresh(Table *t) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (t->loaded && now - t->last_check < TABLE_RECHECK_USEC)
                return 0;
        struct stat st;
        if (stat(t->path, &st) < 0)
                return -errno;
        t->last_check = now;
        if (t->loaded && !table_stat_changed(&st, &t->st))
                return 0;
        return table_load_file(t, NULL);
}

static int table_open_inline(Table *t, const char *name, char **ret_reason) {
        size_t l = strlen(name);
        if (l < 2 || name[0] != '{' || name[l - 1] != '}') {
                reason_printf(ret_reason, "%s: expected inline:{ key=value, ... }", t->spec);
                return -EINVAL;
        }
        _cleanup_free_ char *inner = strndup(name + 1, l - 2);
        if (!inner)
                return -ENOMEM;
        _cleanup_strv_free_ char **items = conf_split_list(inner);
        if (!items)
                return -ENOMEM;
        t->map = strmap_new(free);
        if (!t->map)
                return -ENOMEM;
        for (char **i = items; *i; i++) {
                char *eq = strchr(*i, '=');
                if (!eq) {
                        reason_printf(ret_reason, "%s: entry \"%s\" has no '='", t->spec, *i);
                        return -EINVAL;
                }
                *eq = '\0';
                char *key = strstrip(*i);
                if (*key == '\0') {
                        reason_printf(ret_reason, "%s: entry with an empty key", t->spec);
                        return -EINVAL;
                }
                int r = table_add(t->map, key, strstrip(eq + 1));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int table_open_static(Table *t, const char *name) {
        size_t l = strlen(name);
        _cleanup_free_ char *v = NULL;
        if (l >= 2 && name[0] == '{' && name[l - 1] == '}') {
                v = strndup(name + 1, l - 2);
                if (!v)
                        return -ENOMEM;
                t->value = strdup(strstrip(v));
        } else
                t->value = strdup(name);
        return t->value ? 0 : -ENOMEM;
}

/* unionmap:{ a, b }, pipemap:{ a, b }, randmap:{ a, b } */
static int table_open_composite(Table *t, const char *name, TableFlags flags, char **ret_reason) {
        size_t l = strlen(name);
        if (l < 2 || name[0] != '{' || name[l - 1] != '}') {
                reason_printf(ret_reason, "%s: expected a list in braces, e.g. {type:name, type:name}", t->spec);
                return -EINVAL;
        }
        _cleanup_free_ char *inner = strndup(name + 1, l - 2);
        if (!inner)
                return -ENOMEM;
        if (t->kind == TABLE_KIND_RAND) {
                t->choices = conf_split_list(inner);
                if (!t->choices)
                        return -ENOMEM;
                if (!t->choices[0]) {
                        reason_printf(ret_reason, "%s: needs at least one value", t->spec);
                        return -EINVAL;
                }
                return 0;
        }
        int r = table_list_open(inner, flags, &t->members, ret_reason);
        if (r < 0)
                return r;
        if (table_list_size(t->members) == 0) {
                reason_printf(ret_reason, "%s: needs at least one table", t->spec);
                return -EINVAL;
        }
        return 0;
}

/* lmdb:, cdb: read postmap's binary file when there is one; hash:, btree: the source text when
 * it is there, else the .db file (with libdb; without it refused with a reason). */
static int table_open_dbfile(Table *t, const char *type, char **ret_reason) {
        bool bdb = streq(type, "hash") || streq(type, "btree");
        if (bdb && access(t->path, F_OK) == 0)
                return 0;   /* the source text is what Postern reads */
        _cleanup_free_ char *why = NULL;
        int r = table_dbfile_open(type, t->path, &t->dbfile, &why);
        if (r < 0) {
                reason_printf(ret_reason, "%s: %s", t->spec, why ? why : strerror(-r));
                return r;
        }
        if (t->dbfile) {
                t->kind = TABLE_KIND_DBFILE;
                return 0;
        }
        if (bdb) {
                _cleanup_free_ char *db = NULL;
                if (asprintf(&db, "%s.db", t->path) < 0)
                        return -ENOMEM;
                if (access(db, F_OK) == 0) {
                        reason_printf(ret_reason, "%s: only %s exists, and this Postern was built without libdb: it reads the source text %s (keep the file postmap was run on; no postmap is needed)",
                                      t->spec, db, t->path);
                        return -ENOENT;
                }
        }
        return 0;
}

static bool table_name_is_aliases(const char *path) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t l = strlen(base);
        return l >= 7 && streq(base + l - 7, "aliases");
}

/* Opens "type:name". */
int table_open(const char *spec, TableFlags flags, Table **ret, char **ret_reason) {
        if (isempty(spec)) {
                reason_printf(ret_reason, "empty lookup table name");
                return -EINVAL;
        }
        const char *s = spec;
        const char *p;
        while ((p = startswith(s, "proxy:")))
                s = p;
        const char *colon = strchr(s, ':');
        if (!colon || colon == s) {
                reason_printf(ret_reason, "\"%s\": a lookup table must be written type:name", spec);
                return -EINVAL;
        }
        _cleanup_free_ char *type = strndup(s, (size_t) (colon - s));
        if (!type)
                return -ENOMEM;
        const char *name = colon + 1;

        _cleanup_(table_freep) Table *t = calloc(1, sizeof(Table));
        if (!t)
                return -ENOMEM;
        t->spec = strdup(spec);
        if (!t->spec)
                return -ENOMEM;
        t->flags = flags;

        int r;
        bool file = false;
        for (size_t i = 0; i < ELEMENTSOF(table_file_types); i++)
                if (streq(type, table_file_types[i]))
                        file = true;

        if (streq(type, "inline")) {
                t->kind = TABLE_KIND_INLINE;
                r = table_open_inline(t, name, ret_reason);
        } else if (streq(type, "static")) {
                t->kind = TABLE_KIND_STATIC;
                r = table_open_static(t, name);
        } else if (streq(type, "unix")) {
                if (streq(name, "passwd.byname"))
                        t->kind = TABLE_KIND_PASSWD;
                else if (streq(name, "group.byname"))
                        t->kind = TABLE_KIND_GROUP;
                else {
                        reason_printf(ret_reason, "%s: unknown unix: table (use unix:passwd.byname or unix:group.byname)", spec);
                        return -EINVAL;
                }
                r = 0;
        } else if (streq(type, "sqlite")) {
                t->kind = TABLE_KIND_SQLITE;
                _cleanup_free_ char *why = NULL;
                r = table_sqlite_open(name, &t->sqlite, &why);
                if (r < 0)
                        reason_printf(ret_reason, "%s: %s", spec, why ? why : strerror(-r));
        } else if (streq(type, "ldap")) {
                if (!table_ldap_supported()) {
                        reason_printf(ret_reason, "%s: ldap: tables are not supported: Postern was built without libldap", spec);
                        return -EPROTONOSUPPORT;
                }
                t->kind = TABLE_KIND_LDAP;
                _cleanup_free_ char *why = NULL;
                r = table_ldap_open(name, &t->ldap, &why);
                if (r < 0)
                        reason_printf(ret_reason, "%s: %s", spec, why ? why : strerror(-r));
        } else if (streq(type, "pgsql") || streq(type, "mysql")) {
                t->kind = TABLE_KIND_SQL;
                const TableSqlDriver *drv = streq(type, "pgsql") ? table_pgsql_driver() : table_mysql_driver();
                if (!drv) {
                        reason_printf(ret_reason, "%s: %s: tables are not supported: Postern was built without %s", spec, type,
                                      streq(type, "pgsql") ? "libpq" : "libmariadb");
                        return -EPROTONOSUPPORT;
                }
                _cleanup_free_ char *why = NULL;
                r = table_sql_open(name, drv, &t->sql, &why);
                if (r < 0)
                        reason_printf(ret_reason, "%s: %s", spec, why ? why : strerror(-r));
        } else if (streq(type, "socketmap") || streq(type, "tcp")) {
                t->kind = TABLE_KIND_SOCKET;
                r = table_socket_open(type, name, &t->socket, ret_reason);
        } else if (streq(type, "unionmap") || streq(type, "pipemap") || streq(type, "randmap")) {
                t->kind = streq(type, "unionmap") ? TABLE_KIND_UNION :
                          streq(type, "pipemap") ? TABLE_KIND_PIPE : TABLE_KIND_RAND;
                r = table_open_composite(t, name, flags, ret_reason);
        } else if (streq(type, "pcre") && !table_patterns_have_pcre()) {
                reason_printf(ret_reason, "%s: pcre: tables are not supported: Postern was built without libpcre2", spec);
                return -EPROTONOSUPPORT;
        } else if (file || streq(type, "regexp") || streq(type, "pcre") || streq(type, "cidr")) {
                if (*name == '\0') {
                        reason_printf(ret_reason, "%s: missing file name", spec);
                        return -EINVAL;
                }
                t->kind = file ? TABLE_KIND_FILE : streq(type, "regexp") ? TABLE_KIND_REGEXP :
                          streq(type, "pcre") ? TABLE_KIND_PCRE : TABLE_KIND_CIDR;
                t->path = strdup(name);
                if (!t->path)
                        return -ENOMEM;
                t->aliases = (flags & TABLE_ALIASES) || table_name_is_aliases(name);
                r = table_open_dbfile(t, type, ret_reason);
                if (r == 0 && !t->dbfile)
                        r = table_load_file(t, ret_reason);
        } else {
                reason_printf(ret_reason,
                             "%s: unsupported lookup table type \"%s\" (Postern supports inline, static, texthash, hash, btree, lmdb, cdb, regexp, pcre, cidr, sqlite, ldap, pgsql, mysql, socketmap, tcp, unionmap, pipemap, randmap and unix)",
                             spec, type);
                return -EPROTONOSUPPORT;
        }
        if (r < 0)
                return r;
        if (t->kind == TABLE_KIND_LDAP || t->kind == TABLE_KIND_SQL || t->kind == TABLE_KIND_SOCKET)
                table_async_opened();   /* workers re-open theirs: the settings may have changed */
        *ret = TAKE_PTR(t);
        return 0;
}

bool table_spec_uses_network(const char *spec) {
        const char *s = spec, *p;
        while ((p = startswith(s, "proxy:")))
                s = p;
        if ((p = startswith(s, "ldap:")))
                return table_ldap_uses_network(p);
        if ((p = startswith(s, "pgsql:")) || (p = startswith(s, "mysql:")))
                return table_sql_uses_network(p);
        static const char *const net[] = { "tcp:", "memcache:", "socketmap:inet:" };
        for (size_t i = 0; i < ELEMENTSOF(net); i++)
                if (startswith(s, net[i]))
                        return true;
        const char *brace = strchr(s, '{');
        size_t l = strlen(s);
        if (!brace || l < 2 || s[l - 1] != '}' || !(startswith(s, "unionmap:") || startswith(s, "pipemap:")))
                return false;
        _cleanup_free_ char *inner = strndup(brace + 1, (size_t) (s + l - 1 - brace - 1));
        _cleanup_strv_free_ char **v = inner ? conf_split_list(inner) : NULL;
        if (!v)
                return true;
        for (char **i = v; *i; i++)
                if (table_spec_uses_network(*i))
                        return true;
        return false;
}

/* Closes a table; accepts NULL. */
Table *table_free(Table *t) {
        if (!t)
                return NULL;
        strmap_free(t->map);
        table_patterns_free(t->patterns);
        table_list_free(t->members);
        strv_free(t->choices);
        table_sqlite_free(t->sqlite);
        table_ldap_free(t->ldap);
        table_dbfile_free(t->dbfile);
        table_sql_free(t->sql);
        table_socket_free(t->socket);
        free(t->spec);
        free(t->value);
        free(t->path);
        free(t);
        return NULL;
}

/* The spec the table was opened with. */
const char *table_spec(const Table *t) {
        return t->spec;
}

static int table_lookup_unix(Table *t, const char *key, char **ret_value) {
        long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t bufsz = sz > 0 ? (size_t) sz : 16384;
        for (;;) {
                _cleanup_free_ char *buf = malloc(bufsz);
                if (!buf)
                        return -ENOMEM;
                int r;
                char *line = NULL;
                if (t->kind == TABLE_KIND_PASSWD) {
                        struct passwd pw, *res = NULL;
                        r = getpwnam_r(key, &pw, buf, bufsz, &res);
                        if (r == 0 && !res)
                                return 0;
                        if (r == 0 && asprintf(&line, "%s:%s:%u:%u:%s:%s:%s", pw.pw_name, strempty(pw.pw_passwd),
                                               (unsigned) pw.pw_uid, (unsigned) pw.pw_gid, strempty(pw.pw_gecos),
                                               strempty(pw.pw_dir), strempty(pw.pw_shell)) < 0)
                                return -ENOMEM;
                } else {
                        struct group gr, *res = NULL;
                        r = getgrnam_r(key, &gr, buf, bufsz, &res);
                        if (r == 0 && !res)
                                return 0;
                        if (r == 0) {
                                _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
                                int q = strbuf_printf(&b, "%s:%s:%u:", gr.gr_name, strempty(gr.gr_passwd), (unsigned) gr.gr_gid);
                                for (char **m = gr.gr_mem; q >= 0 && m && *m; m++)
                                        q = strbuf_printf(&b, "%s%s", m == gr.gr_mem ? "" : ",", *m);
                                if (q < 0 || !(line = strbuf_steal(&b)))
                                        return -ENOMEM;
                        }
                }
                if (r == ERANGE && bufsz < 1024 * 1024) {
                        bufsz *= 2;
                        continue;
                }
                if (r == ENOENT || r == ESRCH)   /* some NSS modules say "no such entry" this way */
                        return 0;
                if (r != 0)
                        return -r;
                *ret_value = line;
                return 1;
        }
}

/* A private xorshift generator, so randmap: neither uses nor disturbs random()'s state. */
static size_t table_random(void) {
        static uint64_t state;
        if (state == 0)
                state = (now_usec(CLOCK_REALTIME) ^ ((uint64_t) getpid() << 32)) | 1;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return (size_t) (state >> 11);
}

static int table_lookup_union(TableList *l, const char *key, char **ret_value, TableNotes *notes) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        bool found = false;
        for (size_t i = 0; i < l->n; i++) {
                _cleanup_free_ char *v = NULL;
                int r = table_lookup_full(l->tables[i], key, &v, notes);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                if ((found && strbuf_putc(&b, ',') < 0) || strbuf_puts(&b, v) < 0)
                        return -ENOMEM;
                found = true;
        }
        if (!found)
                return 0;
        if (ret_value && !(*ret_value = strbuf_steal(&b)))
                return -ENOMEM;
        return 1;
}

/* A value that a stage built from its key stays "substituted" through later stages. */
static int table_lookup_pipe(TableList *l, const char *key, char **ret_value, TableNotes *notes) {
        _cleanup_free_ char *cur = strdup(key);
        if (!cur)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                char *next = NULL;
                int r = table_lookup_full(l->tables[i], cur, &next, notes);
                if (r <= 0)
                        return r;
                free(cur);
                cur = next;
        }
        if (ret_value)
                *ret_value = TAKE_PTR(cur);
        return 1;
}

/* Frees the warnings; the struct may be reused afterwards. */
void table_notes_done(TableNotes *n) {
        if (!n)
                return;
        strv_free(n->warnings);
        *n = (TableNotes) {};
}

/* Appends one warning line. */
int table_notes_add(TableNotes *notes, const char *fmt, ...) {
        if (!notes)
                return 0;
        size_t n = 0;
        while (notes->warnings && notes->warnings[n])
                n++;
        char **w = realloc(notes->warnings, (n + 2) * sizeof(char *));
        if (!w)
                return -ENOMEM;
        notes->warnings = w;
        w[n] = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&w[n], fmt, ap);
        va_end(ap);
        if (r < 0) {
                w[n] = NULL;
                return -ENOMEM;
        }
        w[n + 1] = NULL;
        return 0;
}

/* Looks key up (case-insensitively). */
int table_lookup(Table *t, const char *key, char **ret_value) {
        return table_lookup_full(t, key, ret_value, NULL);
}

static TableErrorFn error_fn;
static void *error_userdata;

void table_error_report_set(TableErrorFn fn, void *userdata) {
        error_fn = fn;
        error_userdata = userdata;
}

/* What was last handed to the reporter per table spec (lookups may answer on worker threads of
 * their own Table, and are reported from the loop thread). */
typedef struct Reported {
        char *reason;
        usec_t at;
} Reported;
static StrMap *reported;
static pthread_mutex_t reported_lock = PTHREAD_MUTEX_INITIALIZER;

static void reported_free(void *v) {
        Reported *p = v;
        if (p)
                free(p->reason);
        free(p);
}

/* Hands a server table's failure to the reporter: once a minute, or when the reason changes. */
void table_report_failure(const char *spec, const char *reason) {
        if (!error_fn || !reason)
                return;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_lock(&reported_lock);
        Reported *p = reported ? strmap_get(reported, spec) : NULL;
        bool report = !p || !p->reason || !streq(p->reason, reason) || now - p->at >= 60 * USEC_PER_SEC;
        if (report && !p && (reported || (reported = strmap_new(reported_free))) &&
            (p = calloc(1, sizeof *p)) && strmap_put(reported, spec, p) < 0) {
                free(p);
                p = NULL;
        }
        if (report && p) {
                free(p->reason);
                p->reason = strdup(reason);
                p->at = now;
        }
        pthread_mutex_unlock(&reported_lock);
        if (report)
                error_fn(spec, reason, error_userdata);
}

/* A server table's own lookup; *ret_reason (may be NULL) gets the server's reason of a failure. */
int table_lookup_server(Table *t, const char *key, char **ret_value, char **ret_reason) {
        int r = t->kind == TABLE_KIND_LDAP ? table_ldap_lookup(t->ldap, key, ret_value) :
                t->kind == TABLE_KIND_SQL ? table_sql_lookup(t->sql, key, ret_value) :
                t->kind == TABLE_KIND_SOCKET ? table_socket_lookup(t->socket, key, ret_value) : -EINVAL;
        if (r < 0 && ret_reason) {
                const char *why = t->kind == TABLE_KIND_LDAP ? table_ldap_last_error(t->ldap) :
                                  t->kind == TABLE_KIND_SQL ? table_sql_last_error(t->sql) :
                                  t->kind == TABLE_KIND_SOCKET ? table_socket_last_error(t->socket) : NULL;
                free(*ret_reason);
                *ret_reason = why ? strdup(why) : NULL;
        }
        return r;
}

/* Looks key up; notes collects the rules skipped on the way and how the value was made. */
static int table_lookup_one(Table *t, const char *key, char **ret_value, TableNotes *notes) {
        if (!t || !key)
                return -EINVAL;
        _cleanup_free_ char *k = strdup(key);
        if (!k)
                return -ENOMEM;
        table_lower(k);

        const char *v = NULL;
        int r;
        switch (t->kind) {
        case TABLE_KIND_STATIC:
                v = t->value;
                break;
        case TABLE_KIND_FILE:
                r = table_refresh(t);
                if (r < 0)
                        return r;
                __attribute__((fallthrough));
        case TABLE_KIND_INLINE:
                v = strmap_get(t->map, k);
                if (!v)
                        return 0;
                break;
        case TABLE_KIND_PASSWD:
        case TABLE_KIND_GROUP:
                r = table_lookup_unix(t, k, ret_value);
                if (r == 0 && !streq(k, key))
                        r = table_lookup_unix(t, key, ret_value);
                return r;
        case TABLE_KIND_REGEXP:
        case TABLE_KIND_PCRE:
        case TABLE_KIND_CIDR:
                r = table_refresh(t);
                if (r < 0)
                        return r;
                /* patterns see the key as given: regexp matching is case-insensitive itself */
                return table_patterns_lookup(t->patterns, key, t->flags, t->spec, ret_value, notes);
        case TABLE_KIND_SQLITE:
                return table_sqlite_lookup(t->sqlite, k, ret_value);
        case TABLE_KIND_DBFILE:
                return table_dbfile_lookup(t->dbfile, k, ret_value);
        case TABLE_KIND_LDAP:
        case TABLE_KIND_SQL:
        case TABLE_KIND_SOCKET: {
                /* server tables: the current memo may answer or send the key to the workers
                 * (table-async.h); a failure is reported with the server's reason */
                if (table_memo_lookup(t->spec, t->flags, k, &r, ret_value))
                        return r;
                _cleanup_free_ char *reason = NULL, *value = NULL;
                r = table_lookup_server(t, k, &value, &reason);
                if (r < 0)
                        table_report_failure(t->spec, reason);
                table_memo_note(t->spec, k, r, value);
                if (r > 0 && ret_value)
                        *ret_value = TAKE_PTR(value);
                return r;
        }
        case TABLE_KIND_UNION:
                return table_lookup_union(t->members, key, ret_value, notes);
        case TABLE_KIND_PIPE:
                return table_lookup_pipe(t->members, key, ret_value, notes);
        case TABLE_KIND_RAND: {
                size_t n = 0;
                while (t->choices[n])
                        n++;
                v = t->choices[table_random() % n];
                break;
        }
        }
        if (ret_value) {
                char *copy = strdup(v);
                if (!copy)
                        return -ENOMEM;
                *ret_value = copy;
        }
        return 1;
}

static TableTraceFn trace_fn;
static void *trace_userdata;
static unsigned trace_depth;   /* union:/pipemap: members are not reported on their own */

void table_trace_set(TableTraceFn fn, void *userdata) {
        trace_fn = fn;
        trace_userdata = userdata;
}

int table_lookup_full(Table *t, const char *key, char **ret_value, TableNotes *notes) {
        if (!trace_fn || trace_depth > 0)
                return table_lookup_one(t, key, ret_value, notes);
        _cleanup_free_ char *value = NULL;
        trace_depth++;
        int r = table_lookup_one(t, key, &value, notes);
        trace_depth--;
        if (r != 0 && t && key)
                trace_fn(t->spec, key, r, value, trace_userdata);
        if (r > 0 && ret_value)
                *ret_value = TAKE_PTR(value);
        return r;
}

/* Opens every table in a list such as "hash:/etc/aliases, texthash:/x". */
int table_list_open(const char *specs, TableFlags flags, TableList **ret, char **ret_reason) {
        _cleanup_strv_free_ char **v = conf_split_list(strempty(specs));
        if (!v)
                return -ENOMEM;
        _cleanup_(table_list_freep) TableList *l = calloc(1, sizeof(TableList));
        if (!l)
                return -ENOMEM;
        size_t n = 0;
        while (v[n])
                n++;
        l->tables = calloc(n + 1, sizeof(Table *));
        if (!l->tables)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = table_open(v[i], flags, &l->tables[l->n], ret_reason);
                if (r < 0)
                        return r;
                l->n++;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Closes every table of a list; accepts NULL. */
TableList *table_list_free(TableList *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                table_free(l->tables[i]);
        free(l->tables);
        free(l);
        return NULL;
}

/* The first table that has key answers; an error stops the search. */
int table_list_lookup(TableList *l, const char *key, char **ret_value) {
        return table_list_lookup_full(l, key, ret_value, NULL);
}

/* The same, with notes (may be NULL) about what the lookup skipped. */
int table_list_lookup_full(TableList *l, const char *key, char **ret_value, TableNotes *notes) {
        for (size_t i = 0; i < l->n; i++) {
                int r = table_lookup_full(l->tables[i], key, ret_value, notes);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* The same, only in the tables that look keys up as they are (not regexp:, pcre:, cidr:). */
int table_list_lookup_fixed(TableList *l, const char *key, char **ret_value) {
        for (size_t i = 0; i < l->n; i++) {
                TableKind k = l->tables[i]->kind;
                if (k == TABLE_KIND_REGEXP || k == TABLE_KIND_PCRE || k == TABLE_KIND_CIDR)
                        continue;
                int r = table_lookup_full(l->tables[i], key, ret_value, NULL);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* How many tables the list holds. */
size_t table_list_size(const TableList *l) {
        return l ? l->n : 0;
}
