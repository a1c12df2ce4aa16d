/* sqlite-util.c — see sqlite-util.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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
