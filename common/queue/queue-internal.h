/* queue-internal.h — what queue.c and queue-message.c share and nothing else sees: the Queue
 * struct, the statement cache (each statement prepared once per Queue, on first use) and the
 * error helpers that record SQLite's message for queue_last_error(). */
#pragma once

#include <sqlite3.h>

#include "queue.h"

typedef enum QueueStmtId {
        QUEUE_STMT_BEGIN,
        QUEUE_STMT_COMMIT,
        QUEUE_STMT_ROLLBACK,
        QUEUE_STMT_SAVEPOINT,
        QUEUE_STMT_RELEASE,
        QUEUE_STMT_ROLLBACK_TO,
        QUEUE_STMT_INSERT_MESSAGE,
        QUEUE_STMT_INSERT_RECIPIENT,
        QUEUE_STMT_INSERT_CONTENT,
        QUEUE_STMT_LOAD_MESSAGE,
        QUEUE_STMT_LOAD_RECIPIENTS,
        QUEUE_STMT_LOAD_CONTENT,
        QUEUE_STMT_SCAN_DUE,
        QUEUE_STMT_SCAN_DUE_BY_ARRIVAL,
        QUEUE_STMT_ARRIVAL_AFTER,
        QUEUE_STMT_COUNT_DUE,
        QUEUE_STMT_NEXT_DUE,
        QUEUE_STMT_UPDATE_RECIPIENT,
        QUEUE_STMT_COUNT_UNFINISHED,
        QUEUE_STMT_DELETE_MESSAGE,
        QUEUE_STMT_SET_HOLD,
        QUEUE_STMT_LIST_MESSAGES,
        QUEUE_STMT_SCAN_FINISHED,
        QUEUE_STMT_SET_DELAY_WARNED,
        QUEUE_STMT_REQUEUE_SITE,
        QUEUE_STMT_COUNT_PROBES,
        QUEUE_STMT_METRIC_ADD,
        QUEUE_STMT_METRIC_LIST,
        QUEUE_STMT_METRIC_MESSAGES,
        _QUEUE_STMT_MAX,
} QueueStmtId;

struct Queue {
        sqlite3 *db;
        bool readonly;
        /* Between queue_begin() and queue_commit()/queue_rollback(). SQLite itself may roll the
         * transaction back on some errors (SQLITE_FULL, IOERR, NOMEM); txn_error then holds
         * the first such error, and every later write and the commit fail with it rather than
         * silently running in autocommit mode. */
        bool in_txn;
        int txn_error;
        sqlite3_stmt *stmts[_QUEUE_STMT_MAX];
        char error[256];
};

/* Records SQLite's message and maps its result code to a negative errno (0 for OK/ROW/DONE). */
int queue_error(Queue *q, int sqlite_rc);
/* Records our own message and returns r. */
int queue_errorf(Queue *q, int r, const char *fmt, ...) _printf_(3, 4);
/* The cached prepared statement id (prepared now if this is its first use). */
int queue_stmt(Queue *q, QueueStmtId id, sqlite3_stmt **ret);
/* Fails with the error that aborted the caller's transaction, if SQLite rolled it back. */
int queue_txn_check(Queue *q);
/* The SQL text of a statement (for tests that check query plans). */
const char *queue_stmt_sql(QueueStmtId id);
/* The checks every write makes: a writable queue, and no transaction SQLite aborted. */
int queue_write_check(Queue *q);
/* queue_write_check(), then the cached statement id. */
int queue_write_stmt(Queue *q, QueueStmtId id, sqlite3_stmt **ret);
/* Steps a cached statement without parameters once and resets it. */
int queue_exec_stmt(Queue *q, QueueStmtId id);

int queue_bind_text(sqlite3_stmt *st, int i, const char *s);
int queue_bind_usec(sqlite3_stmt *st, int i, usec_t u);
int queue_column_strdup(sqlite3_stmt *st, int i, char **ret);
usec_t queue_column_usec(sqlite3_stmt *st, int i);

/* Resets a cached statement and drops its bindings (so SQLITE_STATIC buffers are released)
 * when the variable goes out of scope. */
static inline void queue_stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_stmt_reset_ _cleanup_(queue_stmt_resetp)
