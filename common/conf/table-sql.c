/* table-sql.c — the SQL lookup tables' shared part (see table-sql.h): the settings of Postfix's
 * pgsql_table(5), mysql_table(5) and sqlite_table(5) (the file itself is read by table-cf.c, which
 * also expands the %-escapes), results, and the lookup driver with host failover. No client
 * library code lives here.
 *
 * Host failover: as in Postfix, unix: sockets are tried before TCP hosts, each group in random
 * order (PGSQL_README: "the rest of the hosts will be tried in random order"); a host that fails to
 * connect, or whose connection breaks during a query, is skipped for retry_interval. When every
 * host is skipped the lookup fails at once with a temporary error; the first lookup after the
 * interval connects again, so lookups resume without a restart. A connection that was idle for
 * idle_interval is closed before the next lookup. A connection that worked before and breaks
 * (a restarted server) is reconnected once at once before its host is marked down. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "table-cf.h"
#include "table-sql.h"

#define SQL_QUERY_MAX (64 * 1024)
#define SQL_RESULT_MAX (1024 * 1024)

/* Which settings each dialect knows (bits of 1 << TableSqlDialect). */
#define P (1 << TABLE_SQL_PGSQL)
#define M (1 << TABLE_SQL_MYSQL)
#define S (1 << TABLE_SQL_SQLITE)

typedef enum SqlKind { SQL_STR, SQL_LIST, SQL_HOSTS, SQL_LONG, SQL_SECONDS, SQL_LEGACY, SQL_YES, SQL_BOOL } SqlKind;

static const struct SqlSetting {
        const char *name;
        unsigned dialects;
        SqlKind kind;
        size_t offset;
} sql_settings[] = {
        { "additional_conditions", P | M | S, SQL_LEGACY, 3 },
        { "dbname",             P | M,     SQL_STR,     offsetof(TableSqlConf, dbname) },
        { "dbpath",             S,         SQL_STR,     offsetof(TableSqlConf, dbpath) },
        { "domain",             P | M | S, SQL_LIST,    offsetof(TableSqlConf, domains) },
        { "expansion_limit",    P | M | S, SQL_LONG,    offsetof(TableSqlConf, expansion_limit) },
        { "hosts",              P | M,     SQL_HOSTS,   0 },
        { "idle_interval",      P | M,     SQL_SECONDS, offsetof(TableSqlConf, idle_interval) },
        { "option_file",        M,         SQL_STR,     offsetof(TableSqlConf, option_file) },
        { "option_group",       M,         SQL_STR,     offsetof(TableSqlConf, option_group) },
        { "password",           P | M,     SQL_STR,     offsetof(TableSqlConf, password) },
        { "query",              P | M | S, SQL_STR,     offsetof(TableSqlConf, query) },
        { "require_result_set", M,         SQL_YES,     0 },
        { "result_format",      P | M | S, SQL_STR,     offsetof(TableSqlConf, result_format) },
        { "retry_interval",     P | M,     SQL_SECONDS, offsetof(TableSqlConf, retry_interval) },
        { "select_field",       P | M | S, SQL_LEGACY,  0 },
        { "select_function",    P,         SQL_LEGACY,  4 },
        { "table",              P | M | S, SQL_LEGACY,  1 },
        { "timeout",            P | M,     SQL_SECONDS, offsetof(TableSqlConf, timeout) },
        { "tls_CAfile",         M,         SQL_STR,     offsetof(TableSqlConf, tls_CAfile) },
        { "tls_CApath",         M,         SQL_STR,     offsetof(TableSqlConf, tls_CApath) },
        { "tls_cert_file",      M,         SQL_STR,     offsetof(TableSqlConf, tls_cert_file) },
        { "tls_ciphers",        M,         SQL_STR,     offsetof(TableSqlConf, tls_ciphers) },
        { "tls_key_file",       M,         SQL_STR,     offsetof(TableSqlConf, tls_key_file) },
        { "tls_verify_cert",    M,         SQL_BOOL,    offsetof(TableSqlConf, tls_verify_cert) },
        { "user",               P | M,     SQL_STR,     offsetof(TableSqlConf, user) },
        { "where_field",        P | M | S, SQL_LEGACY,  2 },
};
#undef P
#undef M
#undef S

static const char *const sql_dialect_names[] = { "pgsql", "mysql", "sqlite" };

/* Frees a configuration; accepts NULL. */
TableSqlConf *table_sql_conf_free(TableSqlConf *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_hosts; i++) {
                free(c->hosts[i].spec);
                free(c->hosts[i].unix_path);
                free(c->hosts[i].host);
        }
        free(c->hosts);
        free(c->path);
        free(c->user);
        free(c->password);
        free(c->dbname);
        free(c->dbpath);
        free(c->query);
        free(c->result_format);
        strv_free(c->domains);
        free(c->option_file);
        free(c->option_group);
        free(c->tls_cert_file);
        free(c->tls_key_file);
        free(c->tls_CAfile);
        free(c->tls_CApath);
        free(c->tls_ciphers);
        free(c);
        return NULL;
}

/* One hosts entry: unix:/path, inet:host[:port], host[:port], [v6addr]:port, postgresql://... */
static int sql_host_parse(const char *spec, TableSqlDialect d, TableSqlHost *h, char **ret_reason) {
        *h = (TableSqlHost) {};
        if (!(h->spec = strdup(spec)))
                return -ENOMEM;
        const char *p;
        if ((p = startswith(spec, "unix:"))) {
                if (*p != '/') {
                        reason_printf(ret_reason, "hosts: \"%s\": unix: needs an absolute path", spec);
                        return -EINVAL;
                }
                return (h->unix_path = strdup(p)) ? 0 : -ENOMEM;
        }
        if (startswith(spec, "postgresql://") || startswith(spec, "postgres://")) {
                if (d != TABLE_SQL_PGSQL) {
                        reason_printf(ret_reason, "hosts: \"%s\": a PostgreSQL URI in a %s table", spec, sql_dialect_names[d]);
                        return -EINVAL;
                }
                return 0;   /* handed to libpq as it is */
        }
        if ((p = startswith(spec, "inet:")))
                spec = p;
        const char *colon;
        if (*spec == '[') {
                const char *close = strchr(spec, ']');
                if (!close || (close[1] != '\0' && close[1] != ':')) {
                        reason_printf(ret_reason, "hosts: \"%s\": expected [address]:port", h->spec);
                        return -EINVAL;
                }
                if (!(h->host = strndup(spec + 1, (size_t) (close - spec - 1))))
                        return -ENOMEM;
                colon = close[1] == ':' ? close + 1 : NULL;
        } else {
                colon = strrchr(spec, ':');
                if (!(h->host = strndup(spec, colon ? (size_t) (colon - spec) : strlen(spec))))
                        return -ENOMEM;
        }
        if (colon) {
                char *end;
                unsigned long port = strtoul(colon + 1, &end, 10);
                if (colon[1] == '\0' || *end || port == 0 || port > 65535) {
                        reason_printf(ret_reason, "hosts: \"%s\": bad port", h->spec);
                        return -EINVAL;
                }
                h->port = (unsigned) port;
        }
        if (isempty(h->host)) {
                reason_printf(ret_reason, "hosts: \"%s\": no host name", h->spec);
                return -EINVAL;
        }
        return 0;
}

static int sql_parse_seconds(const char *value, usec_t *ret) {
        char *end;
        unsigned long long n = strtoull(value, &end, 10);
        unsigned long long mult = streq(end, "") || streq(end, "s") ? 1 : streq(end, "m") ? 60 :
                                  streq(end, "h") ? 3600 : 0;
        if (end == value || mult == 0 || *value == '-' || n > 86400 * 365)
                return -EINVAL;
        *ret = n * mult * USEC_PER_SEC;
        return 0;
}

/* Stores one setting's value; legacy holds the old-style query parts. */
static int sql_set(TableSqlConf *c, TableSqlDialect d, const struct SqlSetting *s, const char *value,
                   char *legacy[5], unsigned line, char **ret_reason) {
        const char *name = s->name;
        void *field = (char *) c + s->offset;
        switch (s->kind) {
        case SQL_STR:
                free(*(char **) field);
                return (*(char **) field = strdup(value)) ? 0 : -ENOMEM;
        case SQL_LIST:
                strv_free(*(char ***) field);
                if (!(*(char ***) field = conf_split_list(value)))
                        return -ENOMEM;
                for (char **v = *(char ***) field; *v; v++)
                        if (strchr(*v, '/') || strchr(*v, ':')) {
                                reason_printf(ret_reason, "%s:%u: %s: \"%s\": not supported (list domain names, not files or tables)",
                                              c->path, line, name, *v);
                                return -EINVAL;
                        }
                return 0;
        case SQL_LEGACY:
                free(legacy[s->offset]);
                return (legacy[s->offset] = strdup(value)) ? 0 : -ENOMEM;
        case SQL_LONG: {
                char *end;
                long n = strtol(value, &end, 10);
                if (end == value || *end || n < 0) {
                        reason_printf(ret_reason, "%s:%u: %s: not a number", c->path, line, name);
                        return -EINVAL;
                }
                *(long *) field = n;
                return 0;
        }
        case SQL_SECONDS:
                if (sql_parse_seconds(value, field) < 0) {
                        reason_printf(ret_reason, "%s:%u: %s: \"%s\" is not a time (seconds, or with s, m, h)", c->path, line, name, value);
                        return -EINVAL;
                }
                return 0;
        case SQL_YES:
                if (strcaseeq(value, "yes"))
                        return 0;
                reason_printf(ret_reason, "%s:%u: %s = %s: not supported (an empty result set is always \"not found\")", c->path, line, name, value);
                return -EINVAL;
        case SQL_BOOL:
                if (strcaseeq(value, "yes") || strcaseeq(value, "no")) {
                        *(bool *) field = strcaseeq(value, "yes");
                        return 0;
                }
                reason_printf(ret_reason, "%s:%u: %s: \"%s\" is neither yes nor no", c->path, line, name, value);
                return -EINVAL;
        case SQL_HOSTS: {
                _cleanup_strv_free_ char **v = conf_split_list(value);
                if (!v)
                        return -ENOMEM;
                for (size_t i = 0; i < c->n_hosts; i++) {
                        free(c->hosts[i].spec);
                        free(c->hosts[i].unix_path);
                        free(c->hosts[i].host);
                }
                c->n_hosts = 0;
                size_t n = 0;
                while (v[n])
                        n++;
                TableSqlHost *h = realloc(c->hosts, (n + 1) * sizeof(TableSqlHost));
                if (!h)
                        return -ENOMEM;
                c->hosts = h;
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *why = NULL;
                        int r = sql_host_parse(v[i], d, &c->hosts[c->n_hosts++], &why);
                        if (r < 0) {
                                reason_printf(ret_reason, "%s:%u: %s", c->path, line, why ? why : strerror(-r));
                                return r;
                        }
                }
                return 0;
        }
        }
        return -EINVAL;
}

/* Builds the query from select_field, table, where_field, additional_conditions (or the pgsql
 * select_function), as Postfix does for files that predate "query". */
static int sql_legacy_query(TableSqlConf *c, char *legacy[5], char **ret_reason) {
        if (legacy[4]) {
                if (asprintf(&c->query, "SELECT %s('%%s')", legacy[4]) < 0)
                        return -ENOMEM;
                return 0;
        }
        if (!legacy[0] && !legacy[1] && !legacy[2])
                return 0;
        if (!legacy[0] || !legacy[1] || !legacy[2]) {
                reason_printf(ret_reason, "%s: select_field, table and where_field go together", c->path);
                return -EINVAL;
        }
        if (asprintf(&c->query, "SELECT %s FROM %s WHERE %s = '%%s' %s", legacy[0], legacy[1], legacy[2], strempty(legacy[3])) < 0)
                return -ENOMEM;
        return 0;
}

/* Reads the file (table-cf.c) and takes the settings this dialect knows. */
int table_sql_conf_read(const char *path, TableSqlDialect dialect, TableSqlConf **ret, char **ret_reason) {
        _cleanup_(table_sql_conf_freep) TableSqlConf *c = calloc(1, sizeof(TableSqlConf));
        if (!c || !(c->path = strdup(path)))
                return -ENOMEM;
        c->idle_interval = 60 * USEC_PER_SEC;
        c->retry_interval = 60 * USEC_PER_SEC;
        c->timeout = 10 * USEC_PER_SEC;
        _cleanup_(table_cf_freep) TableCf *cf = NULL;
        int r = table_cf_read(path, &cf, ret_reason);
        if (r < 0)
                return r;
        char *legacy[5] = {};
        unsigned line = 0;
        const char *unknown;
        for (size_t i = 0; i < ELEMENTSOF(sql_settings) && r >= 0; i++) {
                const char *v = (sql_settings[i].dialects & (1u << dialect)) ?
                                table_cf_get_line(cf, sql_settings[i].name, &line) : NULL;
                if (v)
                        r = sql_set(c, dialect, &sql_settings[i], v, legacy, line, ret_reason);
        }
        if (r >= 0 && (unknown = table_cf_unknown(cf, &line))) {
                reason_printf(ret_reason, "%s:%u: %s: unknown setting for a %s table", path, line, unknown, sql_dialect_names[dialect]);
                r = -EINVAL;
        }
        if (r >= 0 && !c->query)
                r = sql_legacy_query(c, legacy, ret_reason);
        for (size_t i = 0; i < ELEMENTSOF(legacy); i++)
                free(legacy[i]);
        if (r < 0)
                return r;
        if (!c->query) {
                reason_printf(ret_reason, "%s: needs a query", path);
                return -EINVAL;
        }
        if (dialect == TABLE_SQL_SQLITE && !c->dbpath) {
                reason_printf(ret_reason, "%s: needs both dbpath and query", path);
                return -EINVAL;
        }
        if (dialect != TABLE_SQL_SQLITE && c->n_hosts == 0) {
                /* Postfix's default: the local server */
                c->hosts = calloc(1, sizeof(TableSqlHost));
                if (!c->hosts || !(c->hosts[0].spec = strdup("localhost")) || !(c->hosts[0].host = strdup("localhost")))
                        return -ENOMEM;
                c->n_hosts = 1;
        }
        if (c->password && table_cf_world_readable(cf)) {
                reason_printf(ret_reason, "%s holds a password and is world-readable: refusing to use it (chmod o-r %s)", path, path);
                return -EPERM;
        }
        if (!c->result_format && !(c->result_format = strdup("%s")))
                return -ENOMEM;
        _cleanup_free_ char *why = NULL;
        if (table_cf_check_format(c->query, "query", &why) < 0 ||
            table_cf_check_format(c->result_format, "result_format", &why) < 0) {
                reason_printf(ret_reason, "%s: %s", path, strempty(why));
                return -EINVAL;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

bool table_sql_uses_network(const char *path) {
        return !table_cf_servers_local(path, "hosts", "localhost", "unix:");
}

/* Counts value against expansion_limit, then adds it through result_format. */
int table_sql_result_add(const TableSqlConf *c, const char *key, const char *value, long *count, StrBuf *out) {
        if (isempty(value))
                return 0;
        if (c->expansion_limit && ++*count > c->expansion_limit)
                return -EIO;
        int r = table_cf_result_add(c->result_format, value, key, out);
        return r < 0 ? r : 0;
}

struct TableSql {
        TableSqlConf *conf;
        const TableSqlDriver *drv;
        void *conn;
        usec_t last_used;
        size_t host;            /* the hosts entry conn is connected to */
        char *last_error;
        uint64_t rng;
};

TableSql *table_sql_free(TableSql *t) {
        if (!t)
                return NULL;
        if (t->conn)
                t->drv->disconnect(t->conn);
        table_sql_conf_free(t->conf);
        free(t->last_error);
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableSql *, table_sql_free);

int table_sql_open(const char *path, const TableSqlDriver *drv, TableSql **ret, char **ret_reason) {
        _cleanup_(table_sql_freep) TableSql *t = calloc(1, sizeof(TableSql));
        if (!t)
                return -ENOMEM;
        t->drv = drv;
        int r = table_sql_conf_read(path, streq(drv->type, "pgsql") ? TABLE_SQL_PGSQL : TABLE_SQL_MYSQL, &t->conf, ret_reason);
        if (r < 0)
                return r;
        /* splitmix64 of time, pid and address, so tables opened together start apart */
        uint64_t z = now_usec(CLOCK_REALTIME) ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) t;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        t->rng = (z ^ (z >> 31)) | 1;
        *ret = TAKE_PTR(t);
        return 0;
}

void table_sql_reason(char **ret_reason, const char *message) {
        if (!ret_reason)
                return;
        char *m = strdup(strempty(message));
        if (!m)
                return;
        for (char *p = m; *p; p++)
                if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
        free(*ret_reason);
        *ret_reason = strdup(strstrip(m));
        free(m);
}

const char *table_sql_last_error(const TableSql *t) {
        return t ? t->last_error : NULL;
}

static void sql_error(TableSql *t, const char *host, const char *what, const char *why) {
        free(t->last_error);
        if (asprintf(&t->last_error, "%s%s%s%s%s", what, host ? " " : "", strempty(host),
                     isempty(why) ? "" : ": ", strempty(why)) < 0)
                t->last_error = NULL;
}

static void sql_disconnect(TableSql *t) {
        if (t->conn)
                t->drv->disconnect(t->conn);
        t->conn = NULL;
}

static void sql_shuffle(TableSql *t, size_t *v, size_t n) {
        for (size_t i = n; i > 1; i--) {
                t->rng ^= t->rng << 13;
                t->rng ^= t->rng >> 7;
                t->rng ^= t->rng << 17;
                size_t j = (size_t) ((t->rng >> 11) % i), tmp = v[i - 1];
                v[i - 1] = v[j];
                v[j] = tmp;
        }
}

/* Connects to the first host (unix: first, at random within each group when the driver says so)
 * that is not waiting out its retry delay. */
static int sql_connect(TableSql *t, size_t *ret_host) {
        TableSqlConf *c = t->conf;
        /* unix: sockets first, then the others; each group shuffled when the driver says so */
        size_t order[c->n_hosts], n_unix = 0;
        for (size_t i = 0; i < c->n_hosts; i++)
                if (c->hosts[i].unix_path)
                        order[n_unix++] = i;
        for (size_t i = 0, k = n_unix; i < c->n_hosts; i++)
                if (!c->hosts[i].unix_path)
                        order[k++] = i;
        if (t->drv->random_order) {
                sql_shuffle(t, order, n_unix);
                sql_shuffle(t, order + n_unix, c->n_hosts - n_unix);
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        int r = -EAGAIN;
        bool tried = false;
        for (size_t k = 0; k < c->n_hosts; k++) {
                TableSqlHost *h = &c->hosts[order[k]];
                if (h->retry_after > now)
                        continue;
                tried = true;
                _cleanup_free_ char *why = NULL;
                r = t->drv->connect(c, h, &t->conn, &why);
                if (r >= 0) {
                        h->retry_after = 0;
                        t->last_used = now;
                        *ret_host = order[k];
                        return 0;
                }
                t->conn = NULL;
                h->retry_after = now + c->retry_interval;
                sql_error(t, h->spec, "cannot connect to", why);
        }
        if (!tried) {
                /* keep the server's last reason: it is what the admin needs to see */
                if (!t->last_error)
                        sql_error(t, NULL, "every host is waiting out retry_interval", NULL);
                return -EAGAIN;
        }
        return r < 0 ? r : -EIO;
}

struct SqlRows {
        const TableSqlConf *conf;
        const char *key;
        long count;
        StrBuf out;
};

static int sql_each(void *ud, const char *value) {
        struct SqlRows *rows = ud;
        return table_sql_result_add(rows->conf, rows->key, value, &rows->count, &rows->out);
}

int table_sql_lookup(TableSql *t, const char *key, char **ret_value) {
        TableSqlConf *c = t->conf;
        if (!table_cf_domain_ok(c->domains, key))
                return 0;
        /* a query that cannot be filled (%d of a bare name) is not run, and needs no server */
        _cleanup_strbuf_ StrBuf dry = STRBUF_INIT;
        dry.limit = SQL_QUERY_MAX;
        int r = table_cf_expand(c->query, key, NULL, TABLE_ESCAPE_SQL_QUOTE, &dry);
        if (r != 0)
                return r > 0 ? 0 : r == -EMSGSIZE ? -EIO : r;

        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (t->conn && c->idle_interval && now - t->last_used >= c->idle_interval)
                sql_disconnect(t);
        for (size_t attempt = 0; attempt <= c->n_hosts; attempt++) {
                bool fresh = !t->conn;
                if (!t->conn && (r = sql_connect(t, &t->host)) < 0)
                        return r;
                _cleanup_strbuf_ StrBuf q = STRBUF_INIT;
                q.limit = SQL_QUERY_MAX;
                r = table_cf_expand_fn(c->query, key, NULL, t->drv->escape, t->conn, &q);
                if (r == -EILSEQ)
                        sql_error(t, NULL, "the key is not valid in the connection's character set", NULL);
                if (r != 0)
                        return r > 0 ? 0 : r == -EMSGSIZE ? -EIO : r;
                struct SqlRows rows = { .conf = c, .key = key, .out = { .limit = SQL_RESULT_MAX } };
                _cleanup_free_ char *why = NULL;
                r = t->drv->query(t->conn, c, q.data, sql_each, &rows, &why);
                if (r >= 0) {
                        t->last_used = now_usec(CLOCK_MONOTONIC);
                        if (rows.out.len == 0) {
                                strbuf_done(&rows.out);
                                return 0;
                        }
                        if (ret_value && !(*ret_value = strbuf_steal(&rows.out))) {
                                strbuf_done(&rows.out);
                                return -ENOMEM;
                        }
                        strbuf_done(&rows.out);
                        return 1;
                }
                strbuf_done(&rows.out);
                if (r != -EPIPE) {
                        sql_error(t, c->hosts[t->host].spec, r == -EIO && rows.count > c->expansion_limit && c->expansion_limit ?
                                  "more results than expansion_limit from" : "query failed on", why);
                        return r == -EMSGSIZE ? -EIO : r;
                }
                sql_error(t, c->hosts[t->host].spec, "lost the connection to", why);
                sql_disconnect(t);
                if (!fresh)
                        continue;       /* a restarted server: reconnect at once */
                c->hosts[t->host].retry_after = now_usec(CLOCK_MONOTONIC) + c->retry_interval;
        }
        return -EIO;
}
