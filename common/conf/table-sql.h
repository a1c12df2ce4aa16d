/* table-sql.h — what the SQL lookup tables (pgsql:, mysql:, sqlite:) share, apart from the client
 * libraries: their settings (read from the .cf file by table-cf.c), the result list with
 * expansion_limit, the hosts list with failover and retry delays, and one lookup driver that a
 * client library plugs into with a TableSqlDriver. The %-expansion of query and result_format and
 * the "domain" filter are table-cf.h's. Internal to common/conf: callers use table.h.
 *
 * A TableSql is one table with its own connection: a lookup is one function call with no hidden
 * global state, so a later worker thread can own one table (or a pool of them) outright. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../basic/macro.h"
#include "../basic/strbuf.h"
#include "table-cf.h"

typedef enum TableSqlDialect {
        TABLE_SQL_PGSQL,
        TABLE_SQL_MYSQL,
        TABLE_SQL_SQLITE,
} TableSqlDialect;

/* One "hosts" entry: unix:/path, inet:host[:port], host[:port], or (pgsql) a postgresql:// URI. */
typedef struct TableSqlHost {
        char *spec;             /* as written */
        char *unix_path;        /* unix:/path; NULL for TCP */
        char *host;             /* TCP host name or address */
        unsigned port;          /* 0 = the client library's default */
        usec_t retry_after;     /* CLOCK_MONOTONIC; skipped until then after a failure */
} TableSqlHost;

typedef struct TableSqlConf {
        char *path;
        TableSqlHost *hosts;
        size_t n_hosts;
        char *user, *password, *dbname, *dbpath;
        char *query;
        char *result_format;            /* default "%s" */
        char **domains;                 /* NULL = every key */
        long expansion_limit;           /* 0 = none */
        usec_t idle_interval, retry_interval, timeout;
        char *option_file, *option_group;       /* mysql */
        char *tls_cert_file, *tls_key_file, *tls_CAfile, *tls_CApath, *tls_ciphers;   /* mysql */
        bool tls_verify_cert;
} TableSqlConf;

/* Reads a Postfix pgsql_table(5) / mysql_table(5) / sqlite_table(5) file. Refuses unknown or
 * unsupported settings, a missing query (or old-style select_field/table/where_field), and a file
 * that holds a password and can be read by anyone (the reason names the file). */
int table_sql_conf_read(const char *path, TableSqlDialect dialect, TableSqlConf **ret, char **ret_reason);
TableSqlConf *table_sql_conf_free(TableSqlConf *c);
/* Whether the pgsql:/mysql: .cf at path names a server reached over the network: any hosts
 * entry that is not unix:/path (the default localhost is); true when it cannot be read. */
bool table_sql_uses_network(const char *path);
DEFINE_TRIVIAL_CLEANUP_FUNC(TableSqlConf *, table_sql_conf_free);

/* Adds one result value to out (comma-separated) through result_format; *count counts against
 * expansion_limit (-EIO when it is exceeded). */
int table_sql_result_add(const TableSqlConf *c, const char *key, const char *value, long *count, StrBuf *out);

/* A client library for table_sql_lookup(). Every function gets the connection it made. */
typedef struct TableSqlDriver {
        const char *type;               /* "pgsql" */
        bool random_order;              /* hosts at random (unix: ones first), else as written */
        /* Connects to h within c->timeout; <0 with *ret_reason (the server's words) on failure. */
        int (*connect)(const TableSqlConf *c, const TableSqlHost *h, void **ret_conn, char **ret_reason);
        void (*disconnect)(void *conn);
        TableEscapeFn escape;           /* userdata = the connection */
        /* Runs q and calls each() for every non-NULL field of every row. -EPIPE when the
         * connection is unusable (a server that went away), another <0 for a failed query. */
        int (*query)(void *conn, const TableSqlConf *c, const char *q,
                     int (*each)(void *ud, const char *value), void *ud, char **ret_reason);
} TableSqlDriver;

typedef struct TableSql TableSql;
/* Reads path's settings; connects only at the first lookup (a server that is down at start-up
 * does not keep a daemon from starting). */
int table_sql_open(const char *path, const TableSqlDriver *drv, TableSql **ret, char **ret_reason);
TableSql *table_sql_free(TableSql *t);
/* Looks key up: 1 and *ret_value, 0, or <0 (server down, slow or refusing: a temporary error).
 * The server's reason of the last failure stays readable with table_sql_last_error(). */
int table_sql_lookup(TableSql *t, const char *key, char **ret_value);
const char *table_sql_last_error(const TableSql *t);

/* Sets *ret_reason to a server's message on one line (libpq's end in newlines). */
void table_sql_reason(char **ret_reason, const char *message);

/* The client libraries' drivers: NULL when Postern was built without the library. */
const TableSqlDriver *table_pgsql_driver(void);
const TableSqlDriver *table_mysql_driver(void);
/* Before mysql: lookups may run on several threads (table-async.c starts its workers). */
void table_mysql_threads_init(void);
