/* smtpd-screen-cache.c — the screening stage's cache of clients that passed its tests
 * (postscreen_cache_map), in SQLite.
 *
 * One table, screen_cache(address, greet, dnsbl, updated, pipelining, non_smtp, bare_newline),
 * keyed by the client address as text: each test column is the time (seconds since the epoch)
 * until which the client's pass of that test holds (postscreen_greet_ttl; the lists' TTL between
 * postscreen_dnsbl_min_ttl and _max_ttl; postscreen_pipelining_ttl, _non_smtp_command_ttl,
 * _bare_newline_ttl of the deep tests after the greeting; 0: not passed). A client whose every
 * enabled test still holds is "PASS OLD" and skips the tests (screen_cache_fresh() and
 * screen_cache_deep_todo(), which touch no database). Files of the release before the deep tests
 * (user_version 1: no deep columns) get the three columns, 0, when first opened (user_version 2). The file is in WAL mode with
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
        SqliteCache s;
};

bool screen_cache_fresh(const ScreenEntry *e, bool dnsbl, int64_t now) {
        return e && e->greet > now && (!dnsbl || e->dnsbl > now);
}

unsigned screen_cache_deep_todo(const ScreenEntry *e, unsigned enabled, int64_t now) {
        unsigned todo = 0;
        if ((enabled & SCREEN_TEST_PIPELINING) && (!e || e->pipelining <= now))
                todo |= SCREEN_TEST_PIPELINING;
        if ((enabled & SCREEN_TEST_NON_SMTP) && (!e || e->non_smtp <= now))
                todo |= SCREEN_TEST_NON_SMTP;
        if ((enabled & SCREEN_TEST_BARE_NEWLINE) && (!e || e->bare_newline <= now))
                todo |= SCREEN_TEST_BARE_NEWLINE;
        return todo;
}

static const SqliteCacheSql cache_sql = {
        .schema = "PRAGMA synchronous = NORMAL;"
                  "CREATE TABLE IF NOT EXISTS screen_cache ("
                  " address TEXT PRIMARY KEY NOT NULL,"
                  " greet INTEGER NOT NULL,"
                  " dnsbl INTEGER NOT NULL DEFAULT 0,"
                  " updated INTEGER NOT NULL);",
        .upgrade = "ALTER TABLE screen_cache ADD COLUMN pipelining INTEGER NOT NULL DEFAULT 0;"
                   "ALTER TABLE screen_cache ADD COLUMN non_smtp INTEGER NOT NULL DEFAULT 0;"
                   "ALTER TABLE screen_cache ADD COLUMN bare_newline INTEGER NOT NULL DEFAULT 0;",
        .version = 2,
        .get = "SELECT greet, dnsbl, updated, pipelining, non_smtp, bare_newline FROM screen_cache WHERE address = ?",
        .put = "INSERT OR REPLACE INTO screen_cache (address, greet, dnsbl, updated, pipelining, non_smtp, bare_newline) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
        .cleanup = "DELETE FROM screen_cache WHERE address IN (SELECT address FROM screen_cache "
                   "WHERE MAX(greet, dnsbl, pipelining, non_smtp, bare_newline) < ?1 LIMIT ?2)",
        .table = "screen_cache",
};

int screen_cache_open(const char *path, ScreenCache **ret, char **ret_reason) {
        ScreenCache *c = calloc(1, sizeof(ScreenCache));
        if (!c)
                return -ENOMEM;
        /* a short busy timeout: never hold the event loop for long */
        int r = sqlite_cache_open(&c->s, path, 100, &cache_sql, ret_reason);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

ScreenCache *screen_cache_free(ScreenCache *c) {
        if (!c)
                return NULL;
        sqlite_cache_close(&c->s);
        free(c);
        return NULL;
}

const char *screen_cache_path(const ScreenCache *c) {
        return c->s.path;
}

const char *screen_cache_errmsg(ScreenCache *c) {
        return sqlite_cache_errmsg(c ? &c->s : NULL);
}

int screen_cache_get(ScreenCache *c, const char *address, ScreenEntry *ret) {
        sqlite3_reset(c->s.get);
        sqlite3_bind_text(c->s.get, 1, address, -1, SQLITE_STATIC);
        int rc = sqlite3_step(c->s.get);
        if (rc == SQLITE_DONE) {
                sqlite3_reset(c->s.get);
                return 0;
        }
        if (rc != SQLITE_ROW) {
                sqlite3_reset(c->s.get);
                return -EIO;
        }
        *ret = (ScreenEntry) { .greet = sqlite3_column_int64(c->s.get, 0), .dnsbl = sqlite3_column_int64(c->s.get, 1),
                               .updated = sqlite3_column_int64(c->s.get, 2),
                               .pipelining = sqlite3_column_int64(c->s.get, 3),
                               .non_smtp = sqlite3_column_int64(c->s.get, 4),
                               .bare_newline = sqlite3_column_int64(c->s.get, 5) };
        sqlite3_reset(c->s.get);
        return 1;
}

int screen_cache_put(ScreenCache *c, const char *address, const ScreenEntry *e) {
        sqlite3_reset(c->s.put);
        sqlite3_bind_text(c->s.put, 1, address, -1, SQLITE_STATIC);
        sqlite3_bind_int64(c->s.put, 2, e->greet);
        sqlite3_bind_int64(c->s.put, 3, e->dnsbl);
        sqlite3_bind_int64(c->s.put, 4, e->updated);
        sqlite3_bind_int64(c->s.put, 5, e->pipelining);
        sqlite3_bind_int64(c->s.put, 6, e->non_smtp);
        sqlite3_bind_int64(c->s.put, 7, e->bare_newline);
        int rc = sqlite3_step(c->s.put);
        sqlite3_reset(c->s.put);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int screen_cache_cleanup_batch(ScreenCache *c, int64_t now, int64_t retention, unsigned batch) {
        sqlite3_reset(c->s.cleanup);
        sqlite3_bind_int64(c->s.cleanup, 1, now - retention);
        sqlite3_bind_int64(c->s.cleanup, 2, batch);
        int rc = sqlite3_step(c->s.cleanup);
        sqlite3_reset(c->s.cleanup);
        if (rc != SQLITE_DONE)
                return -EIO;
        return sqlite3_changes(c->s.db);
}
