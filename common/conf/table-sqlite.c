/* table-sqlite.c — sqlite:/path/to/file.cf lookup tables, configured as in Postfix's
 * sqlite_table(5):
 *
 *     dbpath = /var/lib/postern/virtual.sqlite
 *     query = SELECT target FROM aliases WHERE address = '%s'
 *     result_format = %s          (optional; default %s)
 *     domain = example.org, example.net   (optional: only keys in these domains are looked up)
 *     expansion_limit = 0         (optional: more results than this is an error; 0 = no limit)
 *
 * The settings and the results are table-sql.c's (shared with pgsql: and mysql:, including the
 * old select_field/table/where_field form), the file and the %-expansions table-cf.c's;
 * substituted text has single quotes doubled. Several rows (and several columns) give one
 * comma-separated result. The database is opened read-only; a failing query is a temporary
 * error (-EIO). */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/strbuf.h"
#include "table-sql.h"
#include "table-sqlite.h"

struct TableSqlite {
        sqlite3 *db;
        TableSqlConf *conf;
};

/* Closes the database; accepts NULL. */
TableSqlite *table_sqlite_free(TableSqlite *s) {
        if (!s)
                return NULL;
        sqlite3_close_v2(s->db);
        table_sql_conf_free(s->conf);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableSqlite *, table_sqlite_free);

/* Opens the database that path's settings name. */
int table_sqlite_open(const char *path, TableSqlite **ret, char **ret_reason) {
        _cleanup_(table_sqlite_freep) TableSqlite *s = calloc(1, sizeof(TableSqlite));
        if (!s)
                return -ENOMEM;
        int r = table_sql_conf_read(path, TABLE_SQL_SQLITE, &s->conf, ret_reason);
        if (r < 0)
                return r;
        const char *dbpath = s->conf->dbpath;
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

/* Runs the query for key. */
int table_sqlite_lookup(TableSqlite *s, const char *key, char **ret_value) {
        if (!table_cf_domain_ok(s->conf->domains, key))
                return 0;
        _cleanup_strbuf_ StrBuf q = STRBUF_INIT;
        q.limit = 64 * 1024;
        int r = table_cf_expand(s->conf->query, key, NULL, TABLE_ESCAPE_SQL_QUOTE, &q);
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
                for (int col = 0; col < sqlite3_column_count(st) && r >= 0; col++)
                        r = table_sql_result_add(s->conf, key, (const char *) sqlite3_column_text(st, col), &count, &out);
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
