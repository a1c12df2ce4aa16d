/* queue-message.c — the message operations of the queue module: insert, load, scan for due
 * work and for finished messages, record delivery results, hold, delete and list. All SQL is in
 * queue.c's statement table; every statement here is a cached one, reset (and its bindings
 * cleared) on scope exit.
 *
 * Writes are atomic per call: inside the caller's transaction a failed insert is undone with a
 * savepoint, so one bad message never spoils the others of a group commit; outside one, the
 * call runs in a transaction of its own. Callbacks (scan, list) are only called while no
 * statement is active, so they may use the same Queue, writes included. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "queue-internal.h"

#define QUEUE_LIST_BATCH 128
/* queue_scan_due's plan choice (see choose_scan_plan). */
#define QUEUE_SCAN_BACKLOG_MIN 1000
#define QUEUE_SCAN_BACKLOG_MAX_LIMIT 100000
/* How many messages the arrival-order plan may walk per message asked for (see find_due). */
#define QUEUE_SCAN_WINDOW_FACTOR 8

/* Frees the strings of a message filled by queue_load_message() and clears it. */
void queue_message_done(QueueMessage *m) {
        if (!m)
                return;
        free(m->sender);
        free(m->client_address);
        free(m->client_name);
        free(m->helo);
        free(m->protocol);
        free(m->sasl_user);
        free(m->body_type);
        free(m->envid);
        free(m->filter);
        memset(m, 0, sizeof *m);
}

/* Frees an array of n recipients filled by queue_load_message(). */
void queue_recipients_free(QueueRecipient *r, size_t n) {
        if (!r)
                return;
        for (size_t i = 0; i < n; i++) {
                free(r[i].address);
                free(r[i].orcpt);
                free(r[i].dsn_status);
                free(r[i].diag);
                free(r[i].remote_mta);
        }
        free(r);
}

/* Rolls back to a clean state without losing the message of the failure that caused it. */
static void undo_keep_error(Queue *q, QueueStmtId id) {
        char saved[sizeof q->error];

        memcpy(saved, q->error, sizeof saved);
        (void) queue_exec_stmt(q, id);
        if (id == QUEUE_STMT_ROLLBACK_TO)
                (void) queue_exec_stmt(q, QUEUE_STMT_RELEASE);
        memcpy(q->error, saved, sizeof saved);
}

static int write_begin(Queue *q, bool *ret_own) {
        int r = queue_write_check(q);

        if (r < 0)
                return r;
        if (!q->in_txn) {
                r = queue_begin(q);
                *ret_own = true;
        } else {
                r = queue_exec_stmt(q, QUEUE_STMT_SAVEPOINT);
                *ret_own = false;
        }
        return r;
}

static int write_end(Queue *q, bool own, int r) {
        if (r < 0) {
                if (own)
                        q->in_txn = false;
                /* Nothing to undo if SQLite already rolled the whole transaction back. */
                if (!sqlite3_get_autocommit(q->db))
                        undo_keep_error(q, own ? QUEUE_STMT_ROLLBACK : QUEUE_STMT_ROLLBACK_TO);
                return r;
        }
        return own ? queue_commit(q) : queue_exec_stmt(q, QUEUE_STMT_RELEASE);
}

/* A consistent snapshot for multi-statement reads (a deferred transaction when none is open).
 * *ret_outer says whether it opened one, so read_end() can make sure it is gone: a snapshot
 * left open would keep checkpoints from ever finishing. */
static int read_begin(Queue *q, bool *ret_outer) {
        *ret_outer = sqlite3_get_autocommit(q->db);
        return queue_exec_stmt(q, QUEUE_STMT_SAVEPOINT);
}

static void read_end(Queue *q, bool outer) {
        char saved[sizeof q->error];

        memcpy(saved, q->error, sizeof saved);
        if (queue_exec_stmt(q, QUEUE_STMT_RELEASE) < 0 && outer && !sqlite3_get_autocommit(q->db))
                (void) queue_exec_stmt(q, QUEUE_STMT_ROLLBACK);
        memcpy(q->error, saved, sizeof saved);
}

/* A bind that fails (too big, out of memory) must not silently store NULL instead. */
#define BIND(call)                                              \
        do {                                                    \
                int _brc = (call);                              \
                if (_brc != SQLITE_OK)                          \
                        return queue_error(q, _brc);            \
        } while (0)

static int insert_rows(Queue *q, const QueueMessage *m, QueueRecipient *rcpts, size_t n,
                       const void *content, size_t content_len, int64_t *ids) {
        sqlite3_int64 message_id;
        int rc, r;

        {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                r = queue_stmt(q, QUEUE_STMT_INSERT_MESSAGE, &st);
                if (r < 0)
                        return r;
                BIND(queue_bind_text(st, 1, m->queue_id));
                BIND(queue_bind_text(st, 2, strempty(m->sender)));
                BIND(queue_bind_usec(st, 3, m->arrival_usec));
                BIND(queue_bind_usec(st, 4, m->size));
                BIND(queue_bind_text(st, 5, m->client_address));
                BIND(queue_bind_text(st, 6, m->client_name));
                BIND(queue_bind_text(st, 7, m->helo));
                BIND(queue_bind_text(st, 8, m->protocol));
                BIND(queue_bind_text(st, 9, m->sasl_user));
                BIND(queue_bind_text(st, 10, m->body_type));
                BIND(queue_bind_text(st, 11, m->envid));
                BIND(sqlite3_bind_int(st, 12, m->ret));
                BIND(sqlite3_bind_int(st, 13, m->smtputf8));
                BIND(sqlite3_bind_int(st, 14, m->requiretls));
                BIND(sqlite3_bind_int(st, 15, m->hold));
                BIND(sqlite3_bind_int(st, 16, m->is_bounce));
                BIND(queue_bind_text(st, 17, m->filter));
                BIND(sqlite3_bind_int(st, 18, m->is_probe));
                rc = sqlite3_step(st);
                if (rc != SQLITE_DONE)
                        return queue_error(q, rc);
                message_id = sqlite3_last_insert_rowid(q->db);
        }

        for (size_t i = 0; i < n; i++) {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                if (!rcpts[i].address)
                        return queue_errorf(q, -EINVAL, "recipient %zu has no address", i);

                r = queue_stmt(q, QUEUE_STMT_INSERT_RECIPIENT, &st);
                if (r < 0)
                        return r;
                BIND(sqlite3_bind_int64(st, 1, message_id));
                BIND(queue_bind_text(st, 2, rcpts[i].address));
                BIND(queue_bind_text(st, 3, rcpts[i].orcpt));
                BIND(sqlite3_bind_int64(st, 4, rcpts[i].notify));
                BIND(sqlite3_bind_int(st, 5, rcpts[i].state));
                BIND(sqlite3_bind_int64(st, 6, rcpts[i].attempts));
                BIND(queue_bind_usec(st, 7, rcpts[i].next_attempt_usec));
                BIND(queue_bind_text(st, 8, rcpts[i].dsn_status));
                BIND(queue_bind_text(st, 9, rcpts[i].diag));
                BIND(sqlite3_bind_int64(st, 10, rcpts[i].flags));
                rc = sqlite3_step(st);
                if (rc != SQLITE_DONE)
                        return queue_error(q, rc);
                ids[i] = sqlite3_last_insert_rowid(q->db);
        }

        {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                r = queue_stmt(q, QUEUE_STMT_INSERT_CONTENT, &st);
                if (r < 0)
                        return r;
                BIND(sqlite3_bind_int64(st, 1, message_id));
                /* Static: the bindings are cleared before we return. "" keeps empty content a
                 * zero-length blob rather than NULL. */
                BIND(sqlite3_bind_blob64(st, 2, content_len > 0 ? content : "", content_len,
                                         SQLITE_STATIC));
                rc = sqlite3_step(st);
                if (rc != SQLITE_DONE)
                        return queue_error(q, rc);
        }

        return 0;
}

/* Inserts one message, its recipients and content atomically; fills rcpts[i].id on success. */
int queue_insert_message(Queue *q, const QueueMessage *m, QueueRecipient *rcpts, size_t n,
                         const void *content, size_t content_len) {
        _cleanup_free_ int64_t *ids = NULL;
        bool own = false;
        int r;

        if (!q || !m || (n > 0 && !rcpts) || (content_len > 0 && !content))
                return -EINVAL;
        if (isempty(m->queue_id) || strnlen(m->queue_id, QUEUE_ID_MAX) >= QUEUE_ID_MAX)
                return queue_errorf(q, -EINVAL, "invalid queue id");

        if (n > 0) {
                ids = calloc(n, sizeof *ids);
                if (!ids)
                        return -ENOMEM;
        }

        r = write_begin(q, &own);
        if (r < 0)
                return r;
        r = insert_rows(q, m, rcpts, n, content, content_len, ids);
        r = write_end(q, own, r);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++)
                rcpts[i].id = ids[i];
        return 0;
}

/* Fills m from a row of LOAD_MESSAGE or LIST_MESSAGES (same columns); id is column 0. */
static int read_envelope(Queue *q, sqlite3_stmt *st, QueueMessage *m, int64_t *ret_id) {
        const char *qid = (const char *) sqlite3_column_text(st, 1);
        int r;

        if (!qid || strlen(qid) >= QUEUE_ID_MAX)
                return queue_errorf(q, -EBADMSG, "malformed queue id in the queue database");

        *m = (QueueMessage) {};
        strcpy(m->queue_id, qid);
        m->arrival_usec = queue_column_usec(st, 3);
        m->size = (uint64_t) queue_column_usec(st, 4);
        m->ret = sqlite3_column_int(st, 12);
        m->smtputf8 = sqlite3_column_int(st, 13);
        m->requiretls = sqlite3_column_int(st, 14);
        m->hold = sqlite3_column_int(st, 15);
        m->is_bounce = sqlite3_column_int(st, 16);
        m->delay_warned = sqlite3_column_int(st, 18);
        m->is_probe = sqlite3_column_int(st, 19);

        struct { int col; char **field; } strings[] = {
                { 2, &m->sender },
                { 5, &m->client_address },
                { 6, &m->client_name },
                { 7, &m->helo },
                { 8, &m->protocol },
                { 9, &m->sasl_user },
                { 10, &m->body_type },
                { 11, &m->envid },
                { 17, &m->filter },
        };
        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                r = queue_column_strdup(st, strings[i].col, strings[i].field);
                if (r < 0) {
                        queue_message_done(m);
                        return r;
                }
        }

        *ret_id = sqlite3_column_int64(st, 0);
        return 0;
}

static int read_recipients(Queue *q, int64_t message_id, QueueRecipient **ret, size_t *ret_n) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        QueueRecipient *list = NULL;
        size_t n = 0, allocated = 0;
        int rc, r;

        r = queue_stmt(q, QUEUE_STMT_LOAD_RECIPIENTS, &st);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, message_id);

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                QueueRecipient *rcpt;

                if (n == allocated) {
                        size_t k = allocated ? allocated * 2 : 4;
                        QueueRecipient *l = reallocarray(list, k, sizeof *l);
                        if (!l) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        list = l;
                        allocated = k;
                }

                rcpt = &list[n];
                *rcpt = (QueueRecipient) {
                        .id = sqlite3_column_int64(st, 0),
                        .notify = (unsigned) sqlite3_column_int64(st, 3),
                        .state = (QueueRcptState) sqlite3_column_int(st, 4),
                        .attempts = (uint32_t) sqlite3_column_int64(st, 5),
                        .next_attempt_usec = queue_column_usec(st, 6),
                        .flags = (unsigned) sqlite3_column_int64(st, 9),
                };
                n++;   /* counted now so that a failure below frees what was copied */
                if ((r = queue_column_strdup(st, 1, &rcpt->address)) < 0 ||
                    (r = queue_column_strdup(st, 2, &rcpt->orcpt)) < 0 ||
                    (r = queue_column_strdup(st, 7, &rcpt->dsn_status)) < 0 ||
                    (r = queue_column_strdup(st, 8, &rcpt->diag)) < 0 ||
                    (r = queue_column_strdup(st, 10, &rcpt->remote_mta)) < 0)
                        goto fail;
        }
        if (rc != SQLITE_DONE) {
                r = queue_error(q, rc);
                goto fail;
        }

        *ret = list;
        *ret_n = n;
        return 0;

fail:
        queue_recipients_free(list, n);
        return r;
}

/* Runs statement id for queue_id up to its first row (*st is the caller's to reset): 0 on a
 * row, -ENOENT ("no <what> <queue_id> in the queue") when there is none, <0 on an error. */
static int step_queue_id(Queue *q, QueueStmtId id, const char *queue_id, const char *what,
                         sqlite3_stmt **st) {
        int r = queue_stmt(q, id, st);
        if (r < 0)
                return r;
        queue_bind_text(*st, 1, queue_id);
        int rc = sqlite3_step(*st);
        if (rc == SQLITE_DONE)
                return queue_errorf(q, -ENOENT, "no %s %s in the queue", what, queue_id);
        if (rc != SQLITE_ROW)
                return queue_error(q, rc);
        return 0;
}

static int load_message_locked(Queue *q, const char *queue_id, QueueMessage *ret,
                               QueueRecipient **ret_rcpts, size_t *ret_n) {
        QueueMessage m = {};
        QueueRecipient *rcpts = NULL;
        size_t n = 0;
        int64_t id;
        int r;

        {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                r = step_queue_id(q, QUEUE_STMT_LOAD_MESSAGE, queue_id, "message", &st);
                if (r < 0)
                        return r;
                r = read_envelope(q, st, &m, &id);
                if (r < 0)
                        return r;
        }

        r = read_recipients(q, id, &rcpts, &n);
        if (r < 0) {
                queue_message_done(&m);
                return r;
        }
        m.nrcpt = (uint32_t) n;

        *ret = m;
        if (ret_rcpts) {
                *ret_rcpts = rcpts;
                *ret_n = n;
        } else
                queue_recipients_free(rcpts, n);
        return 0;
}

/* Loads the envelope and every recipient of one message; ret_rcpts may be NULL. */
int queue_load_message(Queue *q, const char *queue_id, QueueMessage *ret,
                       QueueRecipient **ret_rcpts, size_t *ret_n) {
        bool outer;
        int r;

        if (!q || !queue_id || !ret || (ret_rcpts && !ret_n))
                return -EINVAL;

        r = read_begin(q, &outer);
        if (r < 0)
                return r;
        r = load_message_locked(q, queue_id, ret, ret_rcpts, ret_n);
        read_end(q, outer);
        return r;
}

/* Loads a message's content into a NUL-terminated buffer the caller frees. */
int queue_load_content(Queue *q, const char *queue_id, char **ret, size_t *ret_len) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        const void *data;
        size_t len;
        char *buf;
        int r;

        if (!q || !queue_id || !ret)
                return -EINVAL;

        r = step_queue_id(q, QUEUE_STMT_LOAD_CONTENT, queue_id, "content for", &st);
        if (r < 0)
                return r;

        data = sqlite3_column_blob(st, 0);
        len = (size_t) sqlite3_column_bytes(st, 0);
        if (!data && len > 0)
                return -ENOMEM;

        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        if (len > 0)
                memcpy(buf, data, len);
        buf[len] = '\0';

        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* With a limit and a backlog of due recipients (at least a few times the limit), walking
 * messages by arrival finds the limit quickly; otherwise the due index is the short way. */
static int choose_scan_plan(Queue *q, usec_t now, size_t limit, QueueStmtId *ret) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        sqlite3_int64 cap;
        int rc, r;

        *ret = QUEUE_STMT_SCAN_DUE;
        if (limit == 0 || limit > QUEUE_SCAN_BACKLOG_MAX_LIMIT)
                return 0;
        cap = (sqlite3_int64) limit * 4 + QUEUE_SCAN_BACKLOG_MIN;

        r = queue_stmt(q, QUEUE_STMT_COUNT_DUE, &st);
        if (r < 0)
                return r;
        queue_bind_usec(st, 1, now);
        sqlite3_bind_int64(st, 2, cap);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return queue_error(q, rc);
        if (sqlite3_column_int64(st, 0) >= cap)
                *ret = QUEUE_STMT_SCAN_DUE_BY_ARRIVAL;
        return 0;
}

typedef struct DueRow {
        char queue_id[QUEUE_ID_MAX];
        QueueScanCursor at;
} DueRow;

typedef struct DueRows {
        DueRow *rows;
        size_t n, allocated;
        size_t seen;               /* rows the statement returned, ours or not */
        QueueScanCursor last;      /* the position of the last of them */
} DueRows;

static void due_rows_done(DueRows *d) {
        free(d->rows);
}

/* The position `offset` messages after *from in arrival order (from the index alone); 0 with
 * *ret set, or 1 when the queue ends before it. */
static int arrival_after(Queue *q, const QueueScanCursor *from, size_t offset, QueueScanCursor *ret) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = queue_stmt(q, QUEUE_STMT_ARRIVAL_AFTER, &st);
        if (r < 0)
                return r;
        queue_bind_usec(st, 1, from->arrival_usec);
        sqlite3_bind_int64(st, 2, from->id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64) offset);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return 1;
        if (rc != SQLITE_ROW)
                return queue_error(q, rc);
        *ret = (QueueScanCursor) {
                .arrival_usec = queue_column_usec(st, 0),
                .id = sqlite3_column_int64(st, 1),
        };
        return 0;
}

/* Runs one of the two due plans from *from (SCAN_DUE_BY_ARRIVAL up to *until, inclusive) and
 * appends its rows to out. */
static int collect_due(Queue *q, QueueStmtId plan, usec_t now, const QueueScanCursor *from,
                       const QueueScanCursor *until, size_t limit, DueRows *out) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = queue_stmt(q, plan, &st);
        if (r < 0)
                return r;
        queue_bind_usec(st, 1, now);
        sqlite3_bind_int64(st, 2, limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64) limit);
        queue_bind_usec(st, 3, from->arrival_usec);
        sqlite3_bind_int64(st, 4, from->id);
        if (plan == QUEUE_STMT_SCAN_DUE_BY_ARRIVAL) {
                queue_bind_usec(st, 5, until->arrival_usec);
                sqlite3_bind_int64(st, 6, until->id);
        }

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *qid = (const char *) sqlite3_column_text(st, 0);

                out->seen++;
                out->last = (QueueScanCursor) {
                        .arrival_usec = queue_column_usec(st, 1),
                        .id = sqlite3_column_int64(st, 2),
                };
                if (!qid || strlen(qid) >= QUEUE_ID_MAX)
                        continue;   /* not ours; never hand out a truncated id */
                if (out->n == out->allocated) {
                        size_t k = out->allocated ? out->allocated * 2 : 64;
                        DueRow *l = reallocarray(out->rows, k, sizeof *l);
                        if (!l)
                                return -ENOMEM;
                        out->rows = l;
                        out->allocated = k;
                }
                strcpy(out->rows[out->n].queue_id, qid);
                out->rows[out->n++].at = out->last;
        }
        return rc == SQLITE_DONE ? 0 : queue_error(q, rc);
}

/* Finds up to limit due messages after *cursor. The arrival-order plan walks a window of
 * QUEUE_SCAN_WINDOW_FACTOR x limit messages at most: when the window holds fewer due ones, they
 * are sparse there (a burst of new mail behind a deferred backlog), and the due index finds
 * them without stepping over every message in between. */
static int find_due(Queue *q, usec_t now, const QueueScanCursor *cursor, size_t limit, DueRows *out) {
        QueueScanCursor until = { .arrival_usec = (usec_t) INT64_MAX, .id = INT64_MAX };
        QueueStmtId plan;
        int r;

        out->last = *cursor;
        r = choose_scan_plan(q, now, limit, &plan);
        if (r < 0)
                return r;
        if (plan == QUEUE_STMT_SCAN_DUE_BY_ARRIVAL) {
                r = arrival_after(q, cursor, limit * QUEUE_SCAN_WINDOW_FACTOR - 1, &until);
                if (r < 0)
                        return r;
                bool bounded = r == 0;
                r = collect_due(q, plan, now, cursor, &until, limit, out);
                if (r < 0 || !bounded || out->seen >= limit)
                        return r;
                out->n = out->seen = 0;
                out->last = *cursor;
        }
        return collect_due(q, QUEUE_STMT_SCAN_DUE, now, cursor, NULL, limit, out);
}

/* Collects the due queue ids first and calls fn after the statements are reset, so that fn may
 * write through the same connection. */
int queue_scan_due_from(Queue *q, usec_t now, QueueScanCursor *cursor, size_t limit,
                        int (*fn)(const char *queue_id, void *ud), void *ud) {
        _cleanup_(due_rows_done) DueRows due = {};
        int r;

        if (!q || !cursor || !fn)
                return -EINVAL;

        r = find_due(q, now, cursor, limit, &due);
        if (r < 0)
                return r;

        for (size_t i = 0; i < due.n; i++) {
                r = fn(due.rows[i].queue_id, ud);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 1;
                *cursor = due.rows[i].at;
        }
        *cursor = due.last;   /* past rows that were not ours, too */
        return limit > 0 && due.seen >= limit;
}

/* queue_scan_due_from() from the start of the queue. */
int queue_scan_due(Queue *q, usec_t now, size_t limit,
                   int (*fn)(const char *queue_id, void *ud), void *ud) {
        QueueScanCursor cursor = QUEUE_SCAN_CURSOR_START;
        int r = queue_scan_due_from(q, now, &cursor, limit, fn, ud);
        return MIN(r, 0);
}

/* One query per call: walks at most window messages in queue-id order after cursor, keeps the
 * finished ones (at most limit), and calls fn after the statement is reset, so that fn may write
 * (complete and delete the message) through the same connection. */
int queue_scan_finished(Queue *q, char cursor[QUEUE_ID_MAX], size_t window, size_t limit,
                        int (*fn)(const char *queue_id, void *ud), void *ud) {
        typedef char QueueIdBuf[QUEUE_ID_MAX];
        _cleanup_free_ QueueIdBuf *ids = NULL;
        char last[QUEUE_ID_MAX];
        size_t n = 0, allocated = 0, seen = 0;
        bool more = false;
        int rc, r;

        if (!q || !cursor || !fn || strnlen(cursor, QUEUE_ID_MAX) >= QUEUE_ID_MAX)
                return -EINVAL;
        snprintf(last, sizeof last, "%s", cursor);

        {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                r = queue_stmt(q, QUEUE_STMT_SCAN_FINISHED, &st);
                if (r < 0)
                        return r;
                queue_bind_text(st, 1, cursor);
                sqlite3_bind_int64(st, 2, window == 0 || window > INT64_MAX ? -1 : (sqlite3_int64) window);

                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        const char *qid = (const char *) sqlite3_column_text(st, 0);

                        seen++;
                        if (!qid || strlen(qid) >= QUEUE_ID_MAX)
                                continue;   /* not ours; never hand out a truncated id */
                        strcpy(last, qid);
                        if (!sqlite3_column_int(st, 1))
                                continue;
                        if (n == allocated) {
                                size_t k = allocated ? allocated * 2 : 64;
                                QueueIdBuf *l = reallocarray(ids, k, sizeof *l);
                                if (!l)
                                        return -ENOMEM;
                                ids = l;
                                allocated = k;
                        }
                        strcpy(ids[n++], qid);
                        if (limit > 0 && n >= limit) {
                                more = true;
                                break;
                        }
                }
                if (!more && rc != SQLITE_DONE)
                        return queue_error(q, rc);
                /* Only with progress: a window of ids too long to be ours must not loop. */
                if (window > 0 && seen >= window && !streq(last, cursor))
                        more = true;
        }

        for (size_t i = 0; i < n; i++) {
                r = fn(ids[i], ud);
                if (r < 0)
                        return r;
        }
        memcpy(cursor, last, QUEUE_ID_MAX);
        return more;
}

/* The earliest retry time of a deferred recipient of a message not on hold. */
int queue_next_due(Queue *q, usec_t *ret_usec) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int rc, r;

        if (!q || !ret_usec)
                return -EINVAL;

        r = queue_stmt(q, QUEUE_STMT_NEXT_DUE, &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                *ret_usec = 0;
                return -ENOENT;
        }
        if (rc != SQLITE_ROW)
                return queue_error(q, rc);
        *ret_usec = queue_column_usec(st, 0);
        return 0;
}

/* Stores a recipient's state, attempts, next attempt, DSN status and diagnostic (by r->id). */
int queue_update_recipient(Queue *q, const QueueRecipient *rcpt) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int rc, r;

        if (!q || !rcpt)
                return -EINVAL;
        r = queue_write_stmt(q, QUEUE_STMT_UPDATE_RECIPIENT, &st);
        if (r < 0)
                return r;
        BIND(sqlite3_bind_int64(st, 1, rcpt->id));
        BIND(sqlite3_bind_int(st, 2, rcpt->state));
        BIND(sqlite3_bind_int64(st, 3, rcpt->attempts));
        BIND(queue_bind_usec(st, 4, rcpt->next_attempt_usec));
        BIND(queue_bind_text(st, 5, rcpt->dsn_status));
        BIND(queue_bind_text(st, 6, rcpt->diag));
        BIND(sqlite3_bind_int64(st, 7, rcpt->flags));
        BIND(queue_bind_text(st, 8, rcpt->remote_mta));
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return queue_error(q, rc);
        if (sqlite3_changes(q->db) == 0)
                return queue_errorf(q, -ENOENT, "no recipient %" PRId64 " in the queue", rcpt->id);
        return 0;
}

/* Counts the message's recipients still pending or deferred; -ENOENT if the message is gone. */
int queue_count_unfinished(Queue *q, const char *queue_id, size_t *ret) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!q || !queue_id || !ret)
                return -EINVAL;

        r = step_queue_id(q, QUEUE_STMT_COUNT_UNFINISHED, queue_id, "message", &st);
        if (r < 0)
                return r;
        *ret = (size_t) sqlite3_column_int64(st, 0);
        return 0;
}

/* Counts the probes whose recipient was never tried yet. */
int queue_count_probes_untried(Queue *q, size_t *ret) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

        if (!q || !ret)
                return -EINVAL;
        int r = queue_stmt(q, QUEUE_STMT_COUNT_PROBES, &st);
        if (r < 0)
                return r;
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return queue_error(q, rc);
        *ret = (size_t) sqlite3_column_int64(st, 0);
        return 0;
}

/* Runs a write statement with ?1 = text and, when it has a ?2, ?2 = value; *ret_changes is the
 * number of rows it changed. */
static int write_stmt(Queue *q, QueueStmtId id, const char *text, int value, size_t *ret_changes) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int rc, r;

        if (!q || isempty(text))
                return -EINVAL;
        r = queue_write_stmt(q, id, &st);
        if (r < 0)
                return r;
        queue_bind_text(st, 1, text);
        if (sqlite3_bind_parameter_count(st) >= 2)
                sqlite3_bind_int(st, 2, value);
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return queue_error(q, rc);
        *ret_changes = (size_t) sqlite3_changes(q->db);
        return 0;
}

static int write_by_queue_id(Queue *q, QueueStmtId id, const char *queue_id, int value) {
        size_t changes = 0;
        int r = write_stmt(q, id, queue_id, value, &changes);
        if (r < 0)
                return r;
        if (changes == 0)
                return queue_errorf(q, -ENOENT, "no message %s in the queue", queue_id);
        return 0;
}

/* Deletes a message; its recipients and content go with it (ON DELETE CASCADE). */
int queue_delete_message(Queue *q, const char *queue_id) {
        return write_by_queue_id(q, QUEUE_STMT_DELETE_MESSAGE, queue_id, 0);
}

/* Marks the message's delay warning as sent (it is sent once). */
int queue_set_delay_warned(Queue *q, const char *queue_id) {
        return write_by_queue_id(q, QUEUE_STMT_SET_DELAY_WARNED, queue_id, 0);
}

/* Puts a message on hold (never scanned as due) or releases it. */
int queue_set_hold(Queue *q, const char *queue_id, bool hold) {
        return write_by_queue_id(q, QUEUE_STMT_SET_HOLD, queue_id, hold);
}

/* Deferred recipients at one destination domain become due now (flush DOMAIN, ETRN). */
int queue_requeue_site(Queue *q, const char *site, bool subdomains, size_t *ret_count) {
        size_t changes = 0;
        int r = write_stmt(q, QUEUE_STMT_REQUEUE_SITE, site, subdomains, &changes);
        if (r >= 0 && ret_count)
                *ret_count = changes;
        return r;
}

typedef struct ListEntry {
        QueueMessage m;
        int64_t id;
        QueueRecipient *rcpts;
        size_t n;
} ListEntry;

static void list_entries_free(ListEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                queue_message_done(&e[i].m);
                queue_recipients_free(e[i].rcpts, e[i].n);
        }
}

/* Reads the next batch after (after_usec, after_id) under one snapshot. */
static int list_batch(Queue *q, usec_t after_usec, int64_t after_id, ListEntry *batch,
                      size_t *ret_n) {
        size_t n = 0;
        int rc, r;

        {
                _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;

                r = queue_stmt(q, QUEUE_STMT_LIST_MESSAGES, &st);
                if (r < 0)
                        return r;
                queue_bind_usec(st, 1, after_usec);
                sqlite3_bind_int64(st, 2, after_id);
                sqlite3_bind_int(st, 3, QUEUE_LIST_BATCH);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        r = read_envelope(q, st, &batch[n].m, &batch[n].id);
                        if (r < 0)
                                goto fail;
                        batch[n].rcpts = NULL;
                        batch[n].n = 0;
                        n++;
                }
                if (rc != SQLITE_DONE) {
                        r = queue_error(q, rc);
                        goto fail;
                }
        }

        for (size_t i = 0; i < n; i++) {
                r = read_recipients(q, batch[i].id, &batch[i].rcpts, &batch[i].n);
                if (r < 0)
                        goto fail;
                batch[i].m.nrcpt = (uint32_t) batch[i].n;
        }

        *ret_n = n;
        return 0;

fail:
        list_entries_free(batch, n);
        return r;
}

/* One batch of messages after *cursor (oldest first), read under one snapshot, then given to fn
 * with no statement active; moves the cursor past them. 1: there may be more, 0: the end. */
int queue_list_page(Queue *q, QueueListCursor *cursor,
                    int (*fn)(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *ud),
                    void *ud) {
        _cleanup_free_ ListEntry *batch = NULL;
        size_t n = 0;
        bool outer;
        int r;

        if (!q || !cursor || !fn)
                return -EINVAL;
        if (!cursor->started) {
                cursor->after_usec = 0;
                cursor->after_id = -1;
                cursor->started = true;
        }
        batch = calloc(QUEUE_LIST_BATCH, sizeof *batch);
        if (!batch)
                return -ENOMEM;
        r = read_begin(q, &outer);
        if (r < 0)
                return r;
        r = list_batch(q, cursor->after_usec, cursor->after_id, batch, &n);
        read_end(q, outer);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        cursor->after_usec = batch[n - 1].m.arrival_usec;
        cursor->after_id = batch[n - 1].id;
        r = 0;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = fn(&batch[i].m, batch[i].rcpts, batch[i].n, ud);
        list_entries_free(batch, n);
        if (r < 0)
                return r;
        return n == QUEUE_LIST_BATCH;
}

/* Every message with its recipients, oldest first, a page at a time. */
int queue_list(Queue *q, int (*fn)(const QueueMessage *m, const QueueRecipient *rcpts, size_t n,
                                   void *ud), void *ud) {
        QueueListCursor cursor = {};
        int r;

        while ((r = queue_list_page(q, &cursor, fn, ud)) > 0)
                ;
        return r;
}
