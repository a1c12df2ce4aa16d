/* verify-cache.c — postern-verify's address cache (Postfix's address_verify_map), in SQLite.
 *
 * One table, verify_cache(address, status, updated, probed, reason), keyed by the address as
 * smtpd asked for it. The file (verify.db next to the queue, DESIGN §2) is in WAL mode with
 * synchronous=FULL, so a result that was answered survives a restart and kill -9; an empty path
 * keeps the cache in memory (lost at restart). Connections set SQLITE_DBCONFIG_DEFENSIVE and
 * trusted_schema = OFF, like the queue's. A file that is not a database, or holds a table of
 * another shape, fails verify_cache_open() with the reason; verify.c decides what to do.
 *
 * Freshness follows Postfix's verify(8): a result is answered until it expires
 * (address_verify_positive_expire_time / _negative_expire_time) and refreshed by a new probe once
 * it is older than the refresh time, the old result answering meanwhile; a probe that got no
 * answer in VERIFY_PROBE_TTL seconds is sent again. verify_cache_decide() holds these rules and
 * touches no database (unit-tested in test-verify-cache.c). Cleanup deletes expired rows in
 * batches (verify_cache_cleanup_batch()) so that the event loop answers queries between them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/sqlite-util.h"
#include "verify.h"

struct VerifyCache {
        SqliteCache s;
};

static const char *const status_names[_VERIFY_STATUS_MAX] = {
        [VERIFY_DELIVERABLE] = "deliverable",
        [VERIFY_UNDELIVERABLE] = "undeliverable",
        [VERIFY_UNDETERMINED] = "undetermined",
        [VERIFY_PENDING] = "pending",
};

const char *verify_status_name(VerifyStatus s) {
        return s >= 0 && s < _VERIFY_STATUS_MAX ? status_names[s] : "pending";
}

int verify_status_from_name(const char *name, VerifyStatus *ret) {
        for (int i = 0; i < _VERIFY_STATUS_MAX; i++)
                if (name && streq(name, status_names[i])) {
                        *ret = (VerifyStatus) i;
                        return 0;
                }
        return -EINVAL;
}

/* A probe is in flight: sent after the last result and not yet timed out. */
static bool probe_in_flight(const VerifyEntry *e, int64_t now) {
        return e->probed > 0 && e->probed > e->updated && now - e->probed < VERIFY_PROBE_TTL;
}

bool verify_cache_expired(const VerifyPolicy *p, const VerifyEntry *e, int64_t now) {
        switch (e->status) {
        case VERIFY_DELIVERABLE:
                return now - e->updated > p->positive_expire;
        case VERIFY_UNDELIVERABLE:
        case VERIFY_UNDETERMINED:
                return now - e->updated > p->negative_expire;
        default:
                return now - e->probed > VERIFY_PROBE_TTL;
        }
}

VerifyDecision verify_cache_decide(const VerifyPolicy *p, const VerifyEntry *e, int64_t now) {
        if (!e || e->status == VERIFY_PENDING || verify_cache_expired(p, e, now))
                return (VerifyDecision) { .answer = VERIFY_PENDING, .probe = !e || !probe_in_flight(e, now),
                                          .expired = e && e->status != VERIFY_PENDING };
        VerifyDecision d = { .answer = e->status };
        int64_t age = now - e->updated, refresh;
        switch (e->status) {
        case VERIFY_DELIVERABLE:
                refresh = p->positive_refresh;
                break;
        case VERIFY_UNDELIVERABLE:
                refresh = p->negative_cache ? p->negative_refresh : 0;
                break;
        default:   /* a temporary failure is retried as soon as a lost probe would be */
                refresh = VERIFY_PROBE_TTL;
                break;
        }
        d.probe = age >= refresh && !probe_in_flight(e, now);
        return d;
}

char *verify_probe_sender(const char *sender, const char *myorigin, int64_t ttl, int64_t now) {
        if (isempty(sender) || streq(sender, "<>"))
                return strdup("");
        const char *at = strrchr(sender, '@');
        size_t local_len = at ? (size_t) (at - sender) : strlen(sender);
        const char *domain = at ? at + 1 : strempty(myorigin);
        char suffix[32] = "";
        if (ttl > 0) {
                /* base 31 of the period number, as short as Postfix's */
                static const char digits[] = "0123456789abcdefghijklmnopqrstu";
                uint64_t n = (uint64_t) (now / ttl);
                char tmp[32];
                size_t k = 0;
                do {
                        tmp[k++] = digits[n % 31];
                        n /= 31;
                } while (n && k < sizeof tmp - 1);
                for (size_t i = 0; i < k; i++)
                        suffix[i] = tmp[k - 1 - i];
                suffix[k] = '\0';
        }
        char *out = NULL;
        if (isempty(domain)) {
                if (asprintf(&out, "%.*s%s", (int) local_len, sender, suffix) < 0)
                        return NULL;
        } else if (asprintf(&out, "%.*s%s@%s", (int) local_len, sender, suffix, domain) < 0)
                return NULL;
        return out;
}

/* ---- the database --------------------------------------------------------------------------- */

static const SqliteCacheSql cache_sql = {
        .schema = "PRAGMA synchronous = FULL;"
                  "CREATE TABLE IF NOT EXISTS verify_cache ("
                  " address TEXT PRIMARY KEY NOT NULL,"
                  " status INTEGER NOT NULL,"
                  " updated INTEGER NOT NULL,"
                  " probed INTEGER NOT NULL,"
                  " reason TEXT NOT NULL DEFAULT '');"
                  "PRAGMA user_version = 1;",
        .get = "SELECT status, updated, probed, reason FROM verify_cache WHERE address = ?",
        .put = "INSERT OR REPLACE INTO verify_cache (address, status, updated, probed, reason) VALUES (?, ?, ?, ?, ?)",
        .cleanup = "DELETE FROM verify_cache WHERE address IN (SELECT address FROM verify_cache "
                   "WHERE (status = 0 AND updated < ?1) OR (status IN (1, 2) AND updated < ?2) "
                   "OR (status = 3 AND probed < ?3) LIMIT ?4)",
        .table = "verify_cache",   /* a damaged file may open and still fail the first read */
};

int verify_cache_open(const char *path, VerifyCache **ret, char **ret_reason) {
        VerifyCache *c = calloc(1, sizeof(VerifyCache));
        if (!c)
                return -ENOMEM;
        int r = sqlite_cache_open(&c->s, path, 5000, &cache_sql, ret_reason);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

VerifyCache *verify_cache_free(VerifyCache *c) {
        if (!c)
                return NULL;
        sqlite_cache_close(&c->s);
        free(c);
        return NULL;
}

const char *verify_cache_path(const VerifyCache *c) {
        return isempty(c->s.path) ? "(memory)" : c->s.path;
}

const char *verify_cache_errmsg(VerifyCache *c) {
        return sqlite_cache_errmsg(c ? &c->s : NULL);
}

void verify_entry_done(VerifyEntry *e) {
        free(e->reason);
        e->reason = NULL;
}

int verify_cache_get(VerifyCache *c, const char *address, VerifyEntry *ret) {
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
        int st = sqlite3_column_int(c->s.get, 0);
        const unsigned char *reason = sqlite3_column_text(c->s.get, 3);
        VerifyEntry e = {
                .status = st >= 0 && st < _VERIFY_STATUS_MAX ? (VerifyStatus) st : VERIFY_PENDING,
                .updated = sqlite3_column_int64(c->s.get, 1),
                .probed = sqlite3_column_int64(c->s.get, 2),
                .reason = strdup(reason ? (const char *) reason : ""),
        };
        sqlite3_reset(c->s.get);
        if (!e.reason)
                return -ENOMEM;
        *ret = e;
        return 1;
}

int verify_cache_put(VerifyCache *c, const char *address, const VerifyEntry *e) {
        sqlite3_reset(c->s.put);
        sqlite3_bind_text(c->s.put, 1, address, -1, SQLITE_STATIC);
        sqlite3_bind_int(c->s.put, 2, (int) e->status);
        sqlite3_bind_int64(c->s.put, 3, e->updated);
        sqlite3_bind_int64(c->s.put, 4, e->probed);
        sqlite3_bind_text(c->s.put, 5, strempty(e->reason), -1, SQLITE_STATIC);
        int rc = sqlite3_step(c->s.put);
        sqlite3_reset(c->s.put);
        sqlite3_clear_bindings(c->s.put);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int verify_cache_cleanup_batch(VerifyCache *c, const VerifyPolicy *p, int64_t now, unsigned batch,
                               bool *ret_more) {
        sqlite3_reset(c->s.cleanup);
        sqlite3_bind_int64(c->s.cleanup, 1, now - p->positive_expire);
        sqlite3_bind_int64(c->s.cleanup, 2, now - p->negative_expire);
        sqlite3_bind_int64(c->s.cleanup, 3, now - VERIFY_PROBE_TTL);
        sqlite3_bind_int64(c->s.cleanup, 4, batch);
        int rc = sqlite3_step(c->s.cleanup);
        sqlite3_reset(c->s.cleanup);
        if (rc != SQLITE_DONE)
                return -EIO;
        int n = sqlite3_changes(c->s.db);
        *ret_more = (unsigned) n >= batch;
        return n;
}

int64_t verify_cache_count(VerifyCache *c) {
        sqlite3_stmt *st = NULL;
        int64_t n = -EIO;
        if (sqlite3_prepare_v2(c->s.db, "SELECT count(*) FROM verify_cache", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return n;
}
