/* smtp-sts-cache.c — the MTA-STS policy cache: $queue_directory/mta-sts.db, an SQLite file of
 * postern-smtp's own (like postern-verify's verify.db; DESIGN §2 keeps queue.db for the queue).
 * One row per policy domain: the TXT id the policy was fetched under, when it was fetched, and
 * the policy text as served (parsed again when read, so the file holds nothing the parser has
 * not checked). Expired rows are removed when looked up. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/sqlite-util.h"
#include "smtp-sts.h"

static const SqliteCacheSql cache_sql = {
        .schema = "CREATE TABLE IF NOT EXISTS sts_policy ("
                  " domain TEXT PRIMARY KEY NOT NULL,"
                  " id TEXT NOT NULL,"
                  " fetched INTEGER NOT NULL,"
                  " policy TEXT NOT NULL);"
                  "PRAGMA user_version = 1;",
        .get = "SELECT id, fetched, policy FROM sts_policy WHERE domain = ?",
        .put = "INSERT OR REPLACE INTO sts_policy (domain, id, fetched, policy) VALUES (?, ?, ?, ?)",
        .cleanup = "DELETE FROM sts_policy WHERE domain = ?",
        .table = "sts_policy",
};

int sts_cache_open(const char *path, StsCache **ret, char **ret_reason) {
        return sqlite_cache_new(path, 5000, &cache_sql, ret, ret_reason);
}

StsCache *sts_cache_free(StsCache *c) {
        return sqlite_cache_free(c);
}

int sts_cache_delete(StsCache *c, const char *domain) {
        return sqlite_stmt_run_text(c->cleanup, domain);
}

int sts_cache_get(StsCache *c, const char *domain, StsPolicy *ret) {
        sqlite3_stmt *st = c->get;
        char why[100];
        int r;

        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        if (r == SQLITE_DONE) {
                sqlite3_reset(st);
                return 0;
        }
        if (r != SQLITE_ROW) {
                sqlite3_reset(st);
                return -EIO;
        }
        const char *id = (const char *) sqlite3_column_text(st, 0);
        int64_t fetched = sqlite3_column_int64(st, 1);
        const char *text = (const char *) sqlite3_column_text(st, 2);
        r = sts_policy_parse(text ? text : "", text ? strlen(text) : 0, ret, why, sizeof why);
        if (r >= 0) {
                snprintf(ret->id, sizeof ret->id, "%s", id ? id : "");
                ret->fetched = (uint64_t) fetched;
        }
        sqlite3_reset(st);
        if (r == -EINVAL || (r >= 0 && ret->fetched + ret->max_age <= (uint64_t) time(NULL))) {
                /* unreadable or expired: as good as absent */
                if (r >= 0)
                        sts_policy_done(ret);
                (void) sts_cache_delete(c, domain);
                return 0;
        }
        return r < 0 ? r : 1;
}

int sts_cache_put(StsCache *c, const char *domain, const StsPolicy *p) {
        sqlite3_stmt *st = c->put;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (int64_t) p->fetched);
        sqlite3_bind_text(st, 4, p->text, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}
