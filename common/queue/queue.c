/* queue.c — the queue database: opening, schema versions and migrations, transactions, error
 * mapping and the per-Queue statement cache. The message operations built on these live in
 * queue-message.c; both share queue-internal.h.
 *
 * queue_open() sets WAL, synchronous=FULL, a busy timeout and foreign keys, then brings the
 * schema to QUEUE_SCHEMA_VERSION by applying the steps in migrations[] (step i takes version i
 * to i+1) in one BEGIN IMMEDIATE transaction, so concurrent openers never both migrate. A
 * database newer than this code is refused with -EPROTONOSUPPORT.
 *
 * queue.db is created 0640 (SQLite gives -wal/-shm the same mode); when root opens a database
 * owned by another user, SQLite chowns the -wal/-shm files it creates to that owner, so root
 * tools never lock the daemons out (test-queue checks both).
 *
 * queue.db is opened defensively, because root (postern-local, posternctl) opens a file in a
 * directory that user postern owns: it must be a regular file with one link, owned by the owner
 * of the queue directory and no symbolic link (SQLITE_OPEN_NOFOLLOW; SQLite itself never follows
 * links for -wal/-shm, test-queue checks both), checked again after the open against the inode
 * seen before; every connection sets SQLITE_DBCONFIG_DEFENSIVE (no writable_schema, no writes to
 * shadow tables or sqlite_dbpage) and trusted_schema = OFF (triggers and views that whoever
 * wrote the file planted may not call functions with side effects), in every process.
 *
 * Failures return negative errno; the SQLite message of the last one is kept for
 * queue_last_error(), and why queue_open() refused a database for queue_open_error().
 * Library code: nothing here logs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "queue-internal.h"

#define QUEUE_BUSY_TIMEOUT_MSEC 10000
#define QUEUE_DB_MODE 0640
/* Keeps an idle WAL from staying at its high-water mark after a burst. */
#define QUEUE_JOURNAL_SIZE_LIMIT (64 * 1024 * 1024)

/* Step i brings a database from user_version i to i+1. Append, never edit a shipped step. */
static const char *const migrations[] = {
        /* 0 -> 1: the initial schema. */
        "CREATE TABLE messages ("
        "  id INTEGER PRIMARY KEY,"
        "  queue_id TEXT NOT NULL UNIQUE,"
        "  sender TEXT NOT NULL,"
        "  arrival_usec INTEGER NOT NULL,"
        "  size INTEGER NOT NULL DEFAULT 0,"
        "  client_address TEXT,"
        "  client_name TEXT,"
        "  helo TEXT,"
        "  protocol TEXT,"
        "  sasl_user TEXT,"
        "  body_type TEXT,"
        "  envid TEXT,"
        "  ret INTEGER NOT NULL DEFAULT 0,"
        "  smtputf8 INTEGER NOT NULL DEFAULT 0,"
        "  requiretls INTEGER NOT NULL DEFAULT 0,"
        "  hold INTEGER NOT NULL DEFAULT 0,"
        "  is_bounce INTEGER NOT NULL DEFAULT 0"
        ");"
        "CREATE INDEX messages_arrival ON messages(arrival_usec, id);"
        "CREATE TABLE recipients ("
        "  id INTEGER PRIMARY KEY,"
        "  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
        "  address TEXT NOT NULL,"
        "  orcpt TEXT,"
        "  notify INTEGER NOT NULL DEFAULT 0,"
        "  state INTEGER NOT NULL DEFAULT 0,"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  next_attempt_usec INTEGER NOT NULL DEFAULT 0,"
        "  dsn_status TEXT,"
        "  diag TEXT"
        ");"
        /* By message, for loads, ON DELETE CASCADE and the arrival-order scan's "has a due
         * recipient" probe (covered: state and retry time are in the index). */
        "CREATE INDEX recipients_message ON recipients(message_id, state, next_attempt_usec);"
        /* Covering index for the scheduler: due recipients and the earliest retry time are
         * found without touching the table, whatever the number of finished or held rows. */
        "CREATE INDEX recipients_due ON recipients(state, next_attempt_usec, message_id);"
        "CREATE TABLE content ("
        "  message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
        "  data BLOB NOT NULL"
        ");",
        /* 1 -> 2: a per-message content filter (FILTER transport:destination from access(5) or
         * header/body checks); NULL when none. qmgr routes by it. */
        "ALTER TABLE messages ADD COLUMN filter TEXT;",
        /* 2 -> 3: delivery status notifications. messages.delay_warned: the one delay warning
         * (delay_warning_time) was sent. recipients.flags: QUEUE_RCPT_F_* (relayed to a server
         * without DSN, named in a delay warning); recipients.remote_mta: the server that gave the
         * last result, for Remote-MTA. */
        "ALTER TABLE messages ADD COLUMN delay_warned INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE recipients ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE recipients ADD COLUMN remote_mta TEXT;",
        /* 3 -> 4: counters for the metrics endpoint (queue-metrics.c): one row per sample
         * (full sample name, its labels in exposition syntax), added to by the daemons inside
         * transactions they run anyway, read by postern-metrics. */
        "CREATE TABLE metrics ("
        "  name TEXT NOT NULL,"
        "  labels TEXT NOT NULL DEFAULT '',"
        "  value REAL NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (name, labels)"
        ") WITHOUT ROWID;",
        /* 4 -> 5: address verification probes (postern-verify's messages, Postfix's verify(8)
         * probes): routed with the address_verify_* overrides, delivered only up to RCPT (or
         * DATA), never bounced; the partial index finds the few there are for
         * address_verify_pending_request_limit however large the queue. */
        "ALTER TABLE messages ADD COLUMN is_probe INTEGER NOT NULL DEFAULT 0;"
        "CREATE INDEX messages_probe ON messages(id) WHERE is_probe = 1;",
};

_Static_assert(ELEMENTSOF(migrations) == QUEUE_SCHEMA_VERSION,
               "one migration step per schema version");

static const char *const statement_sql[_QUEUE_STMT_MAX] = {
        [QUEUE_STMT_BEGIN] = "BEGIN IMMEDIATE",
        [QUEUE_STMT_COMMIT] = "COMMIT",
        [QUEUE_STMT_ROLLBACK] = "ROLLBACK",
        [QUEUE_STMT_SAVEPOINT] = "SAVEPOINT queue_sp",
        [QUEUE_STMT_RELEASE] = "RELEASE queue_sp",
        [QUEUE_STMT_ROLLBACK_TO] = "ROLLBACK TO queue_sp",
        [QUEUE_STMT_INSERT_MESSAGE] =
                "INSERT INTO messages (queue_id, sender, arrival_usec, size, client_address,"
                " client_name, helo, protocol, sasl_user, body_type, envid, ret, smtputf8,"
                " requiretls, hold, is_bounce, filter, is_probe)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        [QUEUE_STMT_INSERT_RECIPIENT] =
                "INSERT INTO recipients (message_id, address, orcpt, notify, state, attempts,"
                " next_attempt_usec, dsn_status, diag, flags)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [QUEUE_STMT_INSERT_CONTENT] =
                "INSERT INTO content (message_id, data) VALUES (?1, ?2)",
        [QUEUE_STMT_LOAD_MESSAGE] =
                "SELECT id, queue_id, sender, arrival_usec, size, client_address, client_name,"
                " helo, protocol, sasl_user, body_type, envid, ret, smtputf8, requiretls, hold,"
                " is_bounce, filter, delay_warned, is_probe FROM messages WHERE queue_id = ?1",
        [QUEUE_STMT_LOAD_RECIPIENTS] =
                "SELECT id, address, orcpt, notify, state, attempts, next_attempt_usec,"
                " dsn_status, diag, flags, remote_mta FROM recipients WHERE message_id = ?1 ORDER BY id",
        [QUEUE_STMT_LOAD_CONTENT] =
                "SELECT c.data FROM content c JOIN messages m ON m.id = c.message_id"
                " WHERE m.queue_id = ?1",
        /* Two plans for one question (queue_scan_due picks by COUNT_DUE). SCAN_DUE is driven by
         * recipients_due: the set of due messages comes from the index, then is sorted by
         * arrival — cheap when few are due. SCAN_DUE_BY_ARRIVAL walks messages oldest first and
         * stops at the limit — cheap when many are due (a backlog), where the first plan would
         * build and sort the whole set. Pending recipients are due whatever their retry time.
         * Both start after the position (arrival_usec, id) = (?3, ?4), so that a scan can go on
         * where the last one stopped (keyset paging, messages_arrival); the second stops at
         * (?5, ?6), so it never walks far over messages that are not due. */
        [QUEUE_STMT_SCAN_DUE] =
                "SELECT m.queue_id, m.arrival_usec, m.id FROM messages m"
                " WHERE m.id IN (SELECT message_id FROM recipients WHERE state = 0"
                "                UNION ALL"
                "                SELECT message_id FROM recipients"
                "                 WHERE state = 1 AND next_attempt_usec <= ?1)"
                "   AND m.hold = 0 AND (m.arrival_usec, m.id) > (?3, ?4)"
                " ORDER BY m.arrival_usec, m.id LIMIT ?2",
        [QUEUE_STMT_SCAN_DUE_BY_ARRIVAL] =
                "SELECT m.queue_id, m.arrival_usec, m.id FROM messages m INDEXED BY messages_arrival"
                " WHERE (m.arrival_usec, m.id) > (?3, ?4) AND (m.arrival_usec, m.id) <= (?5, ?6)"
                "   AND m.hold = 0"
                "   AND EXISTS (SELECT 1 FROM recipients r"
                "   WHERE r.message_id = m.id"
                "     AND (r.state = 0 OR (r.state = 1 AND r.next_attempt_usec <= ?1)))"
                " ORDER BY m.arrival_usec, m.id LIMIT ?2",
        /* The end of SCAN_DUE_BY_ARRIVAL's window: the position ?3 messages after (?1, ?2),
         * from the index alone. */
        [QUEUE_STMT_ARRIVAL_AFTER] =
                "SELECT arrival_usec, id FROM messages INDEXED BY messages_arrival"
                " WHERE (arrival_usec, id) > (?1, ?2)"
                " ORDER BY arrival_usec, id LIMIT 1 OFFSET ?3",
        /* Due recipients, counted from the covering index up to a cap (?2). */
        [QUEUE_STMT_COUNT_DUE] =
                "SELECT count(*) FROM (SELECT 1 FROM recipients WHERE state = 0"
                "                      UNION ALL"
                "                      SELECT 1 FROM recipients"
                "                       WHERE state = 1 AND next_attempt_usec <= ?1"
                "                      LIMIT ?2)",
        [QUEUE_STMT_NEXT_DUE] =
                "SELECT r.next_attempt_usec FROM recipients r"
                " JOIN messages m ON m.id = r.message_id"
                " WHERE r.state = 1 AND m.hold = 0"
                " ORDER BY r.next_attempt_usec LIMIT 1",
        [QUEUE_STMT_UPDATE_RECIPIENT] =
                "UPDATE recipients SET state = ?2, attempts = ?3, next_attempt_usec = ?4,"
                " dsn_status = ?5, diag = ?6, flags = ?7, remote_mta = ?8 WHERE id = ?1",
        [QUEUE_STMT_COUNT_UNFINISHED] =
                "SELECT (SELECT count(*) FROM recipients r"
                "         WHERE r.message_id = m.id AND r.state IN (0, 1))"
                " FROM messages m WHERE m.queue_id = ?1",
        [QUEUE_STMT_DELETE_MESSAGE] = "DELETE FROM messages WHERE queue_id = ?1",
        [QUEUE_STMT_SET_HOLD] = "UPDATE messages SET hold = ?2 WHERE queue_id = ?1",
        [QUEUE_STMT_SET_DELAY_WARNED] = "UPDATE messages SET delay_warned = 1 WHERE queue_id = ?1",
        /* flush DOMAIN / ETRN: the deferred recipients at domain ?1 (any case), and with ?2 at
         * its subdomains too, of messages not on hold, become due now. The domain is the text
         * after the address's last "@", compared as a suffix so no LIKE pattern is involved. */
        [QUEUE_STMT_REQUEUE_SITE] =
                "UPDATE recipients SET next_attempt_usec = 0"
                " WHERE state = 1 AND next_attempt_usec > 0"
                "   AND (lower(substr(address, -length(?1) - 1)) = '@' || lower(?1)"
                "        OR (?2 AND lower(substr(address, -length(?1) - 1)) = '.' || lower(?1)"
                "            AND instr(address, '@') > 0"
                "            AND instr(substr(address, -length(?1) - 1), '@') = 0))"
                "   AND message_id IN (SELECT id FROM messages WHERE hold = 0)",
        /* Keyset paging for queue_list: (arrival_usec, id) after the last one seen. */
        [QUEUE_STMT_LIST_MESSAGES] =
                "SELECT id, queue_id, sender, arrival_usec, size, client_address, client_name,"
                " helo, protocol, sasl_user, body_type, envid, ret, smtputf8, requiretls, hold,"
                " is_bounce, filter, delay_warned, is_probe FROM messages"
                " WHERE (arrival_usec, id) > (?1, ?2)"
                " ORDER BY arrival_usec, id LIMIT ?3",
        /* The sweep's window: the next ?2 messages after queue id ?1, each with whether it still
         * has a pending or deferred recipient (probed in recipients_message). */
        [QUEUE_STMT_SCAN_FINISHED] =
                "SELECT m.queue_id, NOT EXISTS (SELECT 1 FROM recipients r"
                "   WHERE r.message_id = m.id AND r.state IN (0, 1))"
                " FROM messages m WHERE m.queue_id > ?1"
                " ORDER BY m.queue_id LIMIT ?2",
        /* Probes whose recipient was never tried yet (waiting or in flight). */
        [QUEUE_STMT_COUNT_PROBES] =
                "SELECT count(*) FROM messages m INDEXED BY messages_probe WHERE m.is_probe = 1"
                "   AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state = 0)",
        [QUEUE_STMT_METRIC_ADD] =
                "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3)"
                " ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        [QUEUE_STMT_METRIC_LIST] = "SELECT name, labels, value FROM metrics ORDER BY name, labels",
        /* One row per message for the queue gauges: hold, size, arrival, whether it has a
         * never-tried recipient, a deferred one whose retry time came (?1 = now), and how many
         * recipients are unfinished. */
        [QUEUE_STMT_METRIC_MESSAGES] =
                "SELECT m.hold, m.size, m.arrival_usec,"
                " EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state = 0),"
                " EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state = 1"
                "         AND r.next_attempt_usec <= ?1),"
                " (SELECT count(*) FROM recipients r WHERE r.message_id = m.id AND r.state IN (0, 1))"
                " FROM messages m",
};

static int map_sqlite_error(Queue *q, int sqlite_rc) {
        int primary = sqlite_rc & 0xff, sys;

        switch (primary) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CONSTRAINT:
                /* Only a duplicate key means "exists"; NOT NULL or CHECK failures are bad input. */
                if (sqlite_rc == SQLITE_CONSTRAINT_UNIQUE || sqlite_rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                        return -EEXIST;
                if (sqlite_rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                        return -ENOENT;
                return -EINVAL;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_MISUSE:
        case SQLITE_RANGE:
                return -EINVAL;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                /* The OS error behind it is more useful than a generic EIO (ENOENT, EACCES, ENOSPC). */
                sys = sqlite3_system_errno(q->db);
                return sys > 0 ? -sys : -EIO;
        default:
                return -EIO;
        }
}

/* Keeps SQLite's message, maps the code, and notes when it ended the caller's transaction. */
int queue_error(Queue *q, int sqlite_rc) {
        int r;

        snprintf(q->error, sizeof q->error, "%s", sqlite3_errmsg(q->db));
        r = map_sqlite_error(q, sqlite_rc);
        if (r < 0 && q->in_txn && !q->txn_error && sqlite3_get_autocommit(q->db))
                q->txn_error = r;
        return r;
}

/* A transaction SQLite rolled back behind our back fails every later write with its error. */
int queue_txn_check(Queue *q) {
        if (!q->in_txn || !sqlite3_get_autocommit(q->db))
                return 0;
        if (!q->txn_error)
                q->txn_error = -ECANCELED;
        return queue_errorf(q, q->txn_error, "the transaction was rolled back after an error (%s)",
                            strerror(-q->txn_error));
}

/* Sets our own error text; returns r. */
int queue_errorf(Queue *q, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(q->error, sizeof q->error, fmt, ap);
        va_end(ap);
        return r;
}

/* The SQL behind a statement id (tests check its query plan). */
const char *queue_stmt_sql(QueueStmtId id) {
        return id >= 0 && id < _QUEUE_STMT_MAX ? statement_sql[id] : NULL;
}

/* Prepares a statement once per Queue, on first use; later calls get the cached one. */
int queue_stmt(Queue *q, QueueStmtId id, sqlite3_stmt **ret) {
        int rc;

        if (!q->stmts[id]) {
                rc = sqlite3_prepare_v3(q->db, statement_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                        &q->stmts[id], NULL);
                if (rc != SQLITE_OK)
                        return queue_error(q, rc);
        }
        *ret = q->stmts[id];
        return 0;
}

/* Refuses writes to a read-only queue and inside a transaction SQLite rolled back. */
int queue_write_check(Queue *q) {
        if (q->readonly)
                return queue_errorf(q, -EROFS, "queue opened read-only");
        return queue_txn_check(q);
}

/* A write's checks, then its statement. */
int queue_write_stmt(Queue *q, QueueStmtId id, sqlite3_stmt **ret) {
        int r = queue_write_check(q);
        return r < 0 ? r : queue_stmt(q, id, ret);
}

/* Runs a parameterless statement (BEGIN, COMMIT, SAVEPOINT ...) and resets it. */
int queue_exec_stmt(Queue *q, QueueStmtId id) {
        sqlite3_stmt *st = NULL;
        int r, rc;

        r = queue_stmt(q, id, &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : queue_error(q, rc);
        sqlite3_reset(st);
        return r;
}

/* Binds a string without copying, or NULL. */
int queue_bind_text(sqlite3_stmt *st, int i, const char *s) {
        /* The caller's string outlives the statement's use: it is reset before we return. */
        return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Binds a time or size as a signed 64-bit integer. */
int queue_bind_usec(sqlite3_stmt *st, int i, usec_t u) {
        /* SQLite integers are signed: "infinity" saturates rather than wrapping negative. */
        return sqlite3_bind_int64(st, i, u > (usec_t) INT64_MAX ? INT64_MAX : (sqlite3_int64) u);
}

/* Copies a text column; SQL NULL gives NULL. */
int queue_column_strdup(sqlite3_stmt *st, int i, char **ret) {
        const unsigned char *s = sqlite3_column_text(st, i);

        if (!s) {
                if (sqlite3_column_type(st, i) != SQLITE_NULL)
                        return -ENOMEM;
                *ret = NULL;
                return 0;
        }
        *ret = strdup((const char *) s);
        return *ret ? 0 : -ENOMEM;
}

/* Reads a time or size column (negative values, never written by us, read as 0). */
usec_t queue_column_usec(sqlite3_stmt *st, int i) {
        sqlite3_int64 v = sqlite3_column_int64(st, i);
        return v < 0 ? 0 : (usec_t) v;
}

static int exec_sql(Queue *q, const char *sql) {
        int rc;

        rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : queue_error(q, rc);
}

/* Runs a one-row statement (a PRAGMA) and passes its first column to ret_int or ret_text. */
static int query_one(Queue *q, const char *sql, int *ret_int, char *ret_text, size_t text_size) {
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return queue_error(q, rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                if (ret_int)
                        *ret_int = sqlite3_column_int(st, 0);
                if (ret_text)
                        snprintf(ret_text, text_size, "%s",
                                 strempty((const char *) sqlite3_column_text(st, 0)));
        } else
                r = queue_error(q, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc);
        sqlite3_finalize(st);
        return r;
}

static int read_user_version(Queue *q, int *ret) {
        return query_one(q, "PRAGMA user_version", ret, NULL, 0);
}

static int check_version(Queue *q, int version) {
        if (version > QUEUE_SCHEMA_VERSION)
                return queue_errorf(q, -EPROTONOSUPPORT,
                                    "queue schema version %d is newer than this program's (%d)",
                                    version, QUEUE_SCHEMA_VERSION);
        if (version < 0)
                return queue_errorf(q, -EPROTONOSUPPORT, "invalid queue schema version %d", version);
        return 0;
}

/* Reads PRAGMA user_version and refuses a schema newer than this code knows. */
static int read_checked_version(Queue *q, int *ret) {
        int r = read_user_version(q, ret);
        return r < 0 ? r : check_version(q, *ret);
}

/* Brings the schema to QUEUE_SCHEMA_VERSION in one write transaction. The version is read again
 * under the write lock: another process may have migrated while we waited for it. */
static int migrate(Queue *q, bool create) {
        char sql[64];
        int version = 0, r;

        r = queue_exec_stmt(q, QUEUE_STMT_BEGIN);
        if (r < 0)
                return r;

        r = read_checked_version(q, &version);
        if (r < 0)
                goto fail;
        if (version == 0 && !create) {
                r = queue_errorf(q, -ENOENT, "queue database has no schema");
                goto fail;
        }

        for (int v = version; v < QUEUE_SCHEMA_VERSION; v++) {
                r = exec_sql(q, migrations[v]);
                if (r < 0)
                        goto fail;
        }

        if (version != QUEUE_SCHEMA_VERSION) {
                snprintf(sql, sizeof sql, "PRAGMA user_version = %d", QUEUE_SCHEMA_VERSION);
                r = exec_sql(q, sql);
                if (r < 0)
                        goto fail;
        }

        r = queue_exec_stmt(q, QUEUE_STMT_COMMIT);
        if (r < 0)
                goto fail;
        return 0;

fail:
        if (!sqlite3_get_autocommit(q->db))
                (void) queue_exec_stmt(q, QUEUE_STMT_ROLLBACK);
        return r;
}

/* Switching a new database (rollback-journal mode) to WAL takes an exclusive lock; when several
 * processes create the queue at once, SQLite answers SQLITE_BUSY at once instead of calling the
 * busy handler (waiting could deadlock two readers that both want to upgrade). So back off and
 * retry here, within the same overall busy timeout. */
static int switch_to_wal(Queue *q, char *mode, size_t mode_size) {
        usec_t waited = 0, step = 2 * USEC_PER_MSEC;
        int r;

        for (;;) {
                r = query_one(q, "PRAGMA journal_mode = WAL", NULL, mode, mode_size);
                if (r != -EBUSY || waited >= QUEUE_BUSY_TIMEOUT_MSEC * USEC_PER_MSEC)
                        return r;
                (void) usleep(step);
                waited += step;
                step = MIN(step * 2, 100 * USEC_PER_MSEC);
        }
}

static int setup_connection(Queue *q, QueueOpenFlags flags) {
        char sql[64], mode[16];
        int version = 0, r;

        (void) sqlite3_extended_result_codes(q->db, 1);
        (void) sqlite3_busy_timeout(q->db, QUEUE_BUSY_TIMEOUT_MSEC);
        if (sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *) NULL) != SQLITE_OK ||
            sqlite3_db_config(q->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *) NULL) != SQLITE_OK)
                return queue_errorf(q, -EOPNOTSUPP, "cannot make the queue connection defensive");

        r = exec_sql(q, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;

        if (flags & QUEUE_OPEN_READONLY) {
                r = read_user_version(q, &version);
                if (r < 0)
                        return r;
                r = check_version(q, version);
                if (r < 0)
                        return r;
                if (version == 0)
                        return queue_errorf(q, -ENOENT, "queue database has no schema");
                if (version < QUEUE_SCHEMA_VERSION)
                        return queue_errorf(q, -EPROTONOSUPPORT,
                                            "queue schema version %d is older than this program's (%d) "
                                            "and cannot be migrated read-only", version,
                                            QUEUE_SCHEMA_VERSION);
                return 0;
        }

        /* Switching to WAL is a no-op when already in WAL, and persistent once done. SQLite
         * answers with the mode it ended up in: anything else would silently break readers
         * beside writers, so say so. */
        r = switch_to_wal(q, mode, sizeof mode);
        if (r < 0)
                return r;
        if (strcasecmp(mode, "wal") != 0)
                return queue_errorf(q, -EOPNOTSUPP, "cannot switch the queue to WAL mode (it is in %s mode)",
                                    mode);
        r = exec_sql(q, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %d", QUEUE_JOURNAL_SIZE_LIMIT);
        r = exec_sql(q, sql);
        if (r < 0)
                return r;

        /* Fast path: no write lock taken when the schema is already current. */
        r = read_checked_version(q, &version);
        if (r < 0)
                return r;
        if (version == QUEUE_SCHEMA_VERSION)
                return 0;
        return migrate(q, flags & QUEUE_OPEN_CREATE);
}

static _Thread_local char open_error[256];

const char *queue_open_error(void) {
        return open_error[0] ? open_error : NULL;
}

static int open_refused(int r, const char *fmt, ...) _printf_(2, 3);
static int open_refused(int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(open_error, sizeof open_error, fmt, ap);
        va_end(ap);
        return r;
}

/* lstat()s queue.db and refuses anything but a regular file with one link owned by the queue
 * directory's owner. (No open() here: closing a descriptor of a database this process already
 * has open would drop its POSIX locks.) */
static int check_db_file(const char *dir, const char *path, struct stat *ret) {
        struct stat dst, st;

        if (stat(dir, &dst) < 0)
                return open_refused(-errno, "cannot examine the queue directory %s: %s", dir, strerror(errno));
        if (lstat(path, &st) < 0)
                return open_refused(-errno, "cannot examine %s: %s", path, strerror(errno));
        if (S_ISLNK(st.st_mode))
                return open_refused(-ELOOP, "refusing %s: it is a symbolic link", path);
        if (!S_ISREG(st.st_mode))
                return open_refused(-EPERM, "refusing %s: it is not a regular file", path);
        if (st.st_nlink != 1)
                return open_refused(-EPERM, "refusing %s: it has %ju hard links", path, (uintmax_t) st.st_nlink);
        if (st.st_uid != dst.st_uid)
                return open_refused(-EPERM, "refusing %s: it is owned by uid %u, not by the queue directory's owner "
                                    "(uid %u)", path, (unsigned) st.st_uid, (unsigned) dst.st_uid);
        *ret = st;
        return 0;
}

/* Opens <dir>/queue.db, creating and migrating it as flags allow. */
int queue_open(const char *dir, QueueOpenFlags flags, Queue **ret) {
        _cleanup_free_ char *path = NULL;
        Queue *q;
        int oflags, rc, r;

        if (!dir || !ret)
                return -EINVAL;
        if ((flags & QUEUE_OPEN_READONLY) && (flags & QUEUE_OPEN_CREATE))
                return -EINVAL;

        open_error[0] = '\0';
        /* SQLITE_OPEN_NOFOLLOW refuses a link anywhere in the path; the directories above
         * queue.db are the admin's (a queue moved with a symbolic link is fine), only queue.db
         * itself sits where postern may write. */
        _cleanup_free_ char *real = realpath(dir, NULL);
        if (!real)
                return open_refused(-errno, "cannot resolve the queue directory %s: %s", dir, strerror(errno));
        if (asprintf(&path, "%s/%s", real, QUEUE_DB_NAME) < 0)
                return -ENOMEM;
        dir = real;

        if (flags & QUEUE_OPEN_CREATE) {
                /* Mail is private: create the file ourselves, since SQLite would make it 0644
                 * (and gives the -wal and -shm files the database file's mode). O_EXCL: an
                 * existing file is left alone (opening and closing it here could drop POSIX
                 * locks this process holds on it). */
                int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                              QUEUE_DB_MODE);
                if (fd < 0 && errno != EEXIST)
                        return open_refused(-errno, "cannot create %s: %s", path, strerror(errno));
                safe_close(fd);
        }
        /* Also says what a missing file is (SQLite would report a generic CANTOPEN). */
        struct stat before = {}, after;
        r = check_db_file(dir, path, &before);
        if (r < 0)
                return r;

        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->readonly = flags & QUEUE_OPEN_READONLY;

        oflags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW;
        if (flags & QUEUE_OPEN_READONLY)
                oflags |= SQLITE_OPEN_READONLY;
        else
                oflags |= SQLITE_OPEN_READWRITE | ((flags & QUEUE_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0);

        rc = sqlite3_open_v2(path, &q->db, oflags, NULL);
        if (rc != SQLITE_OK) {
                if (!q->db)
                        r = -ENOMEM;
                else
                        r = queue_error(q, rc);
                snprintf(open_error, sizeof open_error, "%s", sqlite3_errmsg(q->db));
                queue_close(q);
                return r;
        }
        if (lstat(path, &after) < 0 || after.st_dev != before.st_dev || after.st_ino != before.st_ino) {
                queue_close(q);
                return open_refused(-EPERM, "refusing %s: it was replaced while being opened", path);
        }

        r = setup_connection(q, flags);
        if (r < 0) {
                snprintf(open_error, sizeof open_error, "%s", queue_last_error(q));
                queue_close(q);
                return r;
        }

        *ret = q;
        return 0;
}

/* Rolls back any open transaction, finalizes the statements and closes the database. */
Queue *queue_close(Queue *q) {
        if (!q)
                return NULL;

        if (q->db && !sqlite3_get_autocommit(q->db))
                (void) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        for (size_t i = 0; i < ELEMENTSOF(q->stmts); i++)
                sqlite3_finalize(q->stmts[i]);
        sqlite3_close(q->db);
        free(q);
        return NULL;
}

/* Starts a write transaction (BEGIN IMMEDIATE: the write lock is taken now, waiting up to the
 * busy timeout, so later statements never fail on lock upgrades). */
int queue_begin(Queue *q) {
        int r;

        if (!q)
                return -EINVAL;
        if (q->readonly)
                return queue_errorf(q, -EROFS, "queue opened read-only");
        if (q->in_txn || !sqlite3_get_autocommit(q->db))
                return queue_errorf(q, -EINPROGRESS, "a transaction is already open");

        r = queue_exec_stmt(q, QUEUE_STMT_BEGIN);
        if (r < 0) {
                if (!sqlite3_get_autocommit(q->db))
                        (void) queue_exec_stmt(q, QUEUE_STMT_ROLLBACK);
                return r;
        }
        q->in_txn = true;
        q->txn_error = 0;
        return 0;
}

/* Commits; with synchronous=FULL the WAL is fsynced before COMMIT returns SQLITE_OK, so 0 means
 * durable. On failure the transaction is rolled back: nothing of it may be acknowledged. */
int queue_commit(Queue *q) {
        int r;

        if (!q)
                return -EINVAL;
        if (!q->in_txn)
                return queue_errorf(q, -EINVAL, "no transaction is open");
        r = queue_txn_check(q);
        if (r < 0) {
                q->in_txn = false;
                return r;
        }

        r = queue_exec_stmt(q, QUEUE_STMT_COMMIT);
        q->in_txn = false;
        if (r < 0 && !sqlite3_get_autocommit(q->db)) {
                char saved[sizeof q->error];

                memcpy(saved, q->error, sizeof saved);
                (void) queue_exec_stmt(q, QUEUE_STMT_ROLLBACK);
                memcpy(q->error, saved, sizeof saved);
        }
        return r;
}

/* Abandons the open transaction; a no-op when none is open. */
int queue_rollback(Queue *q) {
        if (!q)
                return -EINVAL;
        q->in_txn = false;
        if (sqlite3_get_autocommit(q->db))
                return 0;
        return queue_exec_stmt(q, QUEUE_STMT_ROLLBACK);
}

/* Runs a passive WAL checkpoint: copies what it can without waiting for readers or writers. */
int queue_checkpoint(Queue *q) {
        int rc;

        if (!q)
                return -EINVAL;
        if (q->readonly)
                return queue_errorf(q, -EROFS, "queue opened read-only");

        rc = sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return rc == SQLITE_OK ? 0 : queue_error(q, rc);
}

/* The text of the last failure, SQLite's or our own. */
const char *queue_last_error(Queue *q) {
        if (!q)
                return "no queue";
        return q->error[0] ? q->error : "no error";
}
