/* test-queue-util.h — what the queue module's unit tests share: a private test directory, raw
 * SQLite reads and writes beside the module, and messages made and inserted in one call. */
#pragma once

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "queue/queue.h"

#define NOBODY 65534

static char dir[64];

static inline void dir_clean(const char *d) {
        static const char *const names[] = { "queue.db", "queue.db-wal", "queue.db-shm",
                                             "queue.db-journal" };
        char p[128];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(p, sizeof p, "%s/%s", d, names[i]);
                (void) unlink(p);
        }
}

static inline void db_path(char *buf, size_t size) {
        snprintf(buf, size, "%s/queue.db", dir);
}

/* Runs one SQL statement on a raw connection and returns the first column of the first row. */
static inline long long raw_int(const char *sql) {
        char p[128];
        sqlite3 *db;
        sqlite3_stmt *st;
        long long v = -1;

        db_path(p, sizeof p);
        CHECK_INT(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        CHECK_INT(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static inline void raw_exec(const char *sql, int open_flags) {
        char p[128];
        sqlite3 *db;

        db_path(p, sizeof p);
        CHECK_INT(sqlite3_open_v2(p, &db, open_flags, NULL), SQLITE_OK);
        CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static inline void make_message(QueueMessage *m, usec_t arrival) {
        *m = (QueueMessage) {
                .sender = (char *) "alice@example.org",
                .arrival_usec = arrival,
                .size = 5,
                .protocol = (char *) "ESMTP",
        };
        queue_id_new(m->queue_id);
}

/* Inserts a message with nrcpt plain pending recipients (in the open transaction if any). */
static inline void insert_simple(Queue *q, QueueMessage *m, usec_t arrival, size_t nrcpt,
                          QueueRecipient *ret_rcpts) {
        QueueRecipient r[8] = {};

        CHECK(nrcpt <= ELEMENTSOF(r));
        make_message(m, arrival);
        for (size_t i = 0; i < nrcpt; i++)
                r[i].address = (char *) "bob@example.net";
        CHECK_INT(queue_insert_message(q, m, r, nrcpt, "hello", 5), 0);
        if (ret_rcpts)
                memcpy(ret_rcpts, r, nrcpt * sizeof *r);
}

/* What a scan callback collected: up to 16 queue ids. */
typedef struct ScanResult {
        char ids[16][QUEUE_ID_MAX];
        size_t n;
} ScanResult;

static inline int scan_collect(const char *queue_id, void *ud) {
        ScanResult *s = ud;

        CHECK(s->n < ELEMENTSOF(s->ids));
        strcpy(s->ids[s->n++], queue_id);
        return 0;
}

static inline void scan(Queue *q, usec_t now, size_t limit, ScanResult *s) {
        *s = (ScanResult) {};
        CHECK_INT(queue_scan_due(q, now, limit, scan_collect, s), 0);
}

static pid_t test_dir_owner;

/* Also runs when a CHECK fails (exit(1)), so no test directory is left behind; not in forked
 * children, which share the directory. */
static inline void test_dir_remove(void) {
        if (getpid() != test_dir_owner || !dir[0])
                return;
        dir_clean(dir);
        (void) rmdir(dir);
}

/* Makes the private directory dir (under $TMPDIR or /tmp, named after the test) and removes it at
 * exit. */
static inline void test_dir_create(const char *name) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/%s-XXXXXX", tmp && strlen(tmp) < 24 ? tmp : "/tmp", name);
        CHECK(mkdtemp(dir));
        test_dir_owner = getpid();
        CHECK_INT(atexit(test_dir_remove), 0);
}
