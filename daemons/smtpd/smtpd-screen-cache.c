/* smtpd-screen-cache.c — the screening stage's cache of clients that passed its tests
 * (postscreen_cache_map), in SQLite.
 *
 * One table, screen_cache(address, greet, dnsbl, updated), keyed by the client address as text:
 * greet and dnsbl are the times (seconds since the epoch) until which the client's pass of the
 * pregreet test and of the DNS lists hold (postscreen_greet_ttl, and the lists' TTL between
 * postscreen_dnsbl_min_ttl and _max_ttl, after it passed; 0: not passed). A client whose every test still holds is "PASS OLD" and
 * skips the tests (screen_cache_fresh(), which touches no database). The file is in WAL mode with
 * synchronous=NORMAL: a pass lost to a power failure only costs the client one more greet wait,
 * and the event loop never waits for an fsync. Connections set SQLITE_DBCONFIG_DEFENSIVE and
 * trusted_schema = OFF; an empty path keeps the cache in memory.
 *
 * Cleanup (postscreen_cache_cleanup_interval) deletes entries that expired more than
 * postscreen_cache_retention_time ago, in batches (screen_cache_cleanup_batch()), so that the
 * event loop serves connections between them. Library code: it returns errors (with the SQLite
 * reason), smtpd-screen.c logs them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "basic/sqlite-util.h"
#include "smtpd-screen.h"

struct ScreenCache {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *get, *put, *cleanup;
};

bool screen_cache_fresh(const ScreenEntry *e, bool dnsbl, int64_t now) {
        return e && e->greet > now && (!dnsbl || e->dnsbl > now);
}

static int fail(ScreenCache *c, char **ret_reason, const char *what) {
        if (ret_reason && asprintf(ret_reason, "%s: %s", what, c->db ? sqlite3_errmsg(c->db) : "out of memory") < 0)
                *ret_reason = NULL;
        return -EIO;
}

int screen_cache_open(const char *path, ScreenCache **ret, char **ret_reason) {
        _cleanup_(screen_cache_freep) ScreenCache *c = calloc(1, sizeof(ScreenCache));
        if (!c)
                return -ENOMEM;
        c->path = strdup(isempty(path) ? "" : path);
        if (!c->path)
                return -ENOMEM;
        int r = sqlite_open_defensive(path, 100, &c->db, ret_reason);   /* never hold the event loop for long */
        if (r < 0)
                return r;
        if (sqlite3_exec(c->db,
                         "PRAGMA synchronous = NORMAL;"
                         "CREATE TABLE IF NOT EXISTS screen_cache ("
                         " address TEXT PRIMARY KEY NOT NULL,"
                         " greet INTEGER NOT NULL,"
                         " dnsbl INTEGER NOT NULL DEFAULT 0,"
                         " updated INTEGER NOT NULL);"
                         "PRAGMA user_version = 1;",
                         NULL, NULL, NULL) != SQLITE_OK)
                return fail(c, ret_reason, "cannot create the cache table");
        if (sqlite3_prepare_v2(c->db, "SELECT greet, dnsbl, updated FROM screen_cache WHERE address = ?", -1, &c->get,
                               NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO screen_cache (address, greet, dnsbl, updated) VALUES (?, ?, ?, ?)",
                               -1, &c->put, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(c->db, "DELETE FROM screen_cache WHERE address IN (SELECT address FROM screen_cache "
                               "WHERE MAX(greet, dnsbl) < ?1 LIMIT ?2)", -1, &c->cleanup, NULL) != SQLITE_OK)
                return fail(c, ret_reason, "unexpected cache table");
        if (sqlite3_exec(c->db, "SELECT count(*) FROM screen_cache", NULL, NULL, NULL) != SQLITE_OK)
                return fail(c, ret_reason, "cannot read the cache table");
        *ret = TAKE_PTR(c);
        return 0;
}

ScreenCache *screen_cache_free(ScreenCache *c) {
        if (!c)
                return NULL;
        sqlite3_finalize(c->get);
        sqlite3_finalize(c->put);
        sqlite3_finalize(c->cleanup);
        sqlite3_close_v2(c->db);
        free(c->path);
        free(c);
        return NULL;
}

const char *screen_cache_path(const ScreenCache *c) {
        return c->path;
}

const char *screen_cache_errmsg(ScreenCache *c) {
        return c && c->db ? sqlite3_errmsg(c->db) : "out of memory";
}

int screen_cache_get(ScreenCache *c, const char *address, ScreenEntry *ret) {
        sqlite3_reset(c->get);
        sqlite3_bind_text(c->get, 1, address, -1, SQLITE_STATIC);
        int rc = sqlite3_step(c->get);
        if (rc == SQLITE_DONE) {
                sqlite3_reset(c->get);
                return 0;
        }
        if (rc != SQLITE_ROW) {
                sqlite3_reset(c->get);
                return -EIO;
        }
        *ret = (ScreenEntry) { .greet = sqlite3_column_int64(c->get, 0), .dnsbl = sqlite3_column_int64(c->get, 1),
                               .updated = sqlite3_column_int64(c->get, 2) };
        sqlite3_reset(c->get);
        return 1;
}

int screen_cache_put(ScreenCache *c, const char *address, const ScreenEntry *e) {
        sqlite3_reset(c->put);
        sqlite3_bind_text(c->put, 1, address, -1, SQLITE_STATIC);
        sqlite3_bind_int64(c->put, 2, e->greet);
        sqlite3_bind_int64(c->put, 3, e->dnsbl);
        sqlite3_bind_int64(c->put, 4, e->updated);
        int rc = sqlite3_step(c->put);
        sqlite3_reset(c->put);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int screen_cache_cleanup_batch(ScreenCache *c, int64_t now, int64_t retention, unsigned batch) {
        sqlite3_reset(c->cleanup);
        sqlite3_bind_int64(c->cleanup, 1, now - retention);
        sqlite3_bind_int64(c->cleanup, 2, batch);
        int rc = sqlite3_step(c->cleanup);
        sqlite3_reset(c->cleanup);
        if (rc != SQLITE_DONE)
                return -EIO;
        return sqlite3_changes(c->db);
}
