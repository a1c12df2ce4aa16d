/* sqlite-util.h — opening the SQLite files Postern keeps besides its queue (postern-verify's
 * verify.db, postern-smtpd's postscreen_cache.db) one way: created when missing, no symlink
 * followed, SQLITE_DBCONFIG_DEFENSIVE and trusted_schema = OFF, a busy timeout, WAL mode for a
 * file ("" or NULL is an in-memory database). Library code: errors come back with the reason. */
#pragma once

#include <sqlite3.h>

/* Opens path into *ret; on failure returns -EIO (or -ENOMEM) with *ret_reason set to
 * "<what failed>: <SQLite's message>" (allocated; may be NULL when out of memory), *ret NULL. */
int sqlite_open_defensive(const char *path, int busy_timeout_ms, sqlite3 **ret, char **ret_reason);

/* A cache file keyed by one text column: the connection, its path as given ("" in memory) and
 * three statements prepared after the schema ran. The SQL comes from the owner; table is read
 * once at open, so that a damaged file fails then rather than at the first lookup. */
typedef struct SqliteCache {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *get, *put, *cleanup;
} SqliteCache;

typedef struct SqliteCacheSql {
        const char *schema;             /* run once (CREATE TABLE IF NOT EXISTS ..., PRAGMAs) */
        const char *get, *put, *cleanup;
        const char *table;              /* its name, for the read check */
        /* optional: run (in one transaction) on a file whose PRAGMA user_version is below
         * version, which it then gets: columns added to the files of an older release */
        const char *upgrade;
        int version;
} SqliteCacheSql;

/* Opens path into c (zeroed by the caller) with sqlite_open_defensive(); on failure c holds
 * nothing and *ret_reason says what failed ("cannot create the cache table: ..."). */
int sqlite_cache_open(SqliteCache *c, const char *path, int busy_timeout_ms, const SqliteCacheSql *sql,
                      char **ret_reason);
void sqlite_cache_close(SqliteCache *c);
/* The same with the SqliteCache allocated (*ret; freed with sqlite_cache_free()). */
int sqlite_cache_new(const char *path, int busy_timeout_ms, const SqliteCacheSql *sql, SqliteCache **ret,
                     char **ret_reason);
SqliteCache *sqlite_cache_free(SqliteCache *c);
/* Runs st (a statement without result rows) once with text bound to its only parameter: 0, -EIO. */
int sqlite_stmt_run_text(sqlite3_stmt *st, const char *text);
/* SQLite's message for the last failure ("out of memory" without a connection). */
const char *sqlite_cache_errmsg(const SqliteCache *c);
