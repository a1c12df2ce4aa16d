/* sqlite-util.c — see sqlite-util.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "sqlite-util.h"

static int fail(sqlite3 **db, char **ret_reason, const char *what) {
        if (ret_reason && asprintf(ret_reason, "%s: %s", what, *db ? sqlite3_errmsg(*db) : "out of memory") < 0)
                *ret_reason = NULL;
        sqlite3_close_v2(*db);
        *db = NULL;
        return -EIO;
}

int sqlite_open_defensive(const char *path, int busy_timeout_ms, sqlite3 **ret, char **ret_reason) {
        bool memory = isempty(path);
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(memory ? ":memory:" : path, &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK)
                return fail(&db, ret_reason, "cannot open");
        (void) sqlite3_busy_timeout(db, busy_timeout_ms);
        if (sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *) NULL) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA trusted_schema = OFF", NULL, NULL, NULL) != SQLITE_OK)
                return fail(&db, ret_reason, "cannot set defensive mode");
        if (!memory && sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK)
                return fail(&db, ret_reason, "cannot use WAL mode");
        *ret = db;
        return 0;
}

static int user_version(sqlite3 *db) {
        sqlite3_stmt *st = NULL;
        int v = -1;
        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return v;
}

/* Brings an older file up to sql->version: the upgrade statements and the new user_version in
 * one transaction (another process that upgraded first makes the second check see it done). */
static int upgrade(sqlite3 *db, const SqliteCacheSql *sql) {
        int v = user_version(db);
        if (v < 0)
                return -EIO;
        if (v >= sql->version)
                return 0;
        _cleanup_free_ char *set = NULL;
        if (asprintf(&set, "PRAGMA user_version = %d", sql->version) < 0)
                return -ENOMEM;
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
                return -EIO;
        v = user_version(db);
        if (v >= 0 && v < sql->version && (sqlite3_exec(db, sql->upgrade, NULL, NULL, NULL) != SQLITE_OK ||
                                            sqlite3_exec(db, set, NULL, NULL, NULL) != SQLITE_OK)) {
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                return -EIO;
        }
        return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

int sqlite_cache_open(SqliteCache *c, const char *path, int busy_timeout_ms, const SqliteCacheSql *sql,
                      char **ret_reason) {
        if (!(c->path = strdup(strempty(path))))
                return -ENOMEM;
        int r = sqlite_open_defensive(path, busy_timeout_ms, &c->db, ret_reason);
        if (r < 0) {
                sqlite_cache_close(c);
                return r;
        }
        const char *what = NULL;
        _cleanup_free_ char *check = NULL;
        if (sqlite3_exec(c->db, sql->schema, NULL, NULL, NULL) != SQLITE_OK)
                what = "cannot create the cache table";
        else if (sql->upgrade && upgrade(c->db, sql) < 0)
                what = "cannot upgrade the cache table";
        else if (sqlite3_prepare_v2(c->db, sql->get, -1, &c->get, NULL) != SQLITE_OK ||
                 sqlite3_prepare_v2(c->db, sql->put, -1, &c->put, NULL) != SQLITE_OK ||
                 sqlite3_prepare_v2(c->db, sql->cleanup, -1, &c->cleanup, NULL) != SQLITE_OK)
                what = "unexpected cache table";
        else if (asprintf(&check, "SELECT count(*) FROM %s", sql->table) < 0)
                return sqlite_cache_close(c), -ENOMEM;
        else if (sqlite3_exec(c->db, check, NULL, NULL, NULL) != SQLITE_OK)
                what = "cannot read the cache table";
        if (what) {
                r = fail(&c->db, ret_reason, what);
                sqlite_cache_close(c);
                return r;
        }
        return 0;
}

void sqlite_cache_close(SqliteCache *c) {
        sqlite3_finalize(c->get);
        sqlite3_finalize(c->put);
        sqlite3_finalize(c->cleanup);
        sqlite3_close_v2(c->db);
        free(c->path);
        *c = (SqliteCache) {};
}

int sqlite_cache_new(const char *path, int busy_timeout_ms, const SqliteCacheSql *sql, SqliteCache **ret,
                     char **ret_reason) {
        SqliteCache *c = calloc(1, sizeof(SqliteCache));
        if (!c)
                return -ENOMEM;
        int r = sqlite_cache_open(c, path, busy_timeout_ms, sql, ret_reason);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

SqliteCache *sqlite_cache_free(SqliteCache *c) {
        if (c) {
                sqlite_cache_close(c);
                free(c);
        }
        return NULL;
}

const char *sqlite_cache_errmsg(const SqliteCache *c) {
        return c && c->db ? sqlite3_errmsg(c->db) : "out of memory";
}

int sqlite_stmt_run_text(sqlite3_stmt *st, const char *text) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}
