/* test-queue-scan.c — unit tests for the queue module's scheduling queries: scan_due with both
 * of its plans against a brute-force model, next_due, deletes from inside a scan, the paged
 * cursor (scan_due_from) and its walk over sparse backlogs, and the sweep's paged search for
 * finished messages (scan_finished, against the same kind of model). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue-internal.h"   /* white box: SQLite steps of a scan */
#include "test-queue-util.h"

static int scan_stop(const char *queue_id, void *ud) {
        (*(int *) ud)++;
        return -ECANCELED;
}

typedef struct DeleteCtx {
        Queue *q;
        size_t n;
} DeleteCtx;

/* Writes through the scanning connection from inside the callback. */
static int scan_delete(const char *queue_id, void *ud) {
        DeleteCtx *d = ud;

        CHECK_INT(queue_delete_message(d->q, queue_id), 0);
        d->n++;
        return 0;
}


static void test_schedule(Queue *q) {
        /* Inserted out of arrival order on purpose. */
        QueueMessage a, b, c, d, e;
        QueueRecipient ra[2], rb[1], rc[1], rd[1], re[1];
        ScanResult s;
        usec_t t;
        size_t n;

        insert_simple(q, &c, 300, 1, rc);
        insert_simple(q, &a, 100, 2, ra);
        insert_simple(q, &b, 200, 1, rb);
        insert_simple(q, &d, 400, 1, rd);
        insert_simple(q, &e, 500, 1, re);

        CHECK_INT(queue_next_due(q, &t), -ENOENT);   /* pending only: no retry time */

        /* All pending: every message due, oldest first, one row per message. */
        scan(q, 0, 0, &s);
        CHECK_INT(s.n, 5);
        CHECK_STR(s.ids[0], a.queue_id);
        CHECK_STR(s.ids[1], b.queue_id);
        CHECK_STR(s.ids[2], c.queue_id);
        CHECK_STR(s.ids[3], d.queue_id);
        CHECK_STR(s.ids[4], e.queue_id);
        scan(q, 0, 2, &s);
        CHECK_INT(s.n, 2);
        CHECK_STR(s.ids[1], b.queue_id);

        /* a: one deferred until 1000, one delivered. b: deferred until 2000. c: delivered.
         * d: on hold. e: pending still. */
        ra[0].state = QUEUE_RCPT_DEFERRED;
        ra[0].attempts = 1;
        ra[0].next_attempt_usec = 1000;
        ra[0].dsn_status = (char *) "4.4.1";
        ra[0].diag = (char *) "try later";
        ra[1].state = QUEUE_RCPT_DELIVERED;
        rb[0].state = QUEUE_RCPT_DEFERRED;
        rb[0].next_attempt_usec = 2000;
        rc[0].state = QUEUE_RCPT_DELIVERED;
        CHECK_INT(queue_update_recipient(q, &ra[0]), 0);
        CHECK_INT(queue_begin(q), 0);       /* inside a transaction, too */
        CHECK_INT(queue_update_recipient(q, &ra[1]), 0);
        CHECK_INT(queue_update_recipient(q, &rb[0]), 0);
        CHECK_INT(queue_update_recipient(q, &rc[0]), 0);
        CHECK_INT(queue_commit(q), 0);
        CHECK_INT(queue_set_hold(q, d.queue_id, true), 0);

        CHECK_INT(queue_count_unfinished(q, a.queue_id, &n), 0);
        CHECK_INT(n, 1);
        CHECK_INT(queue_count_unfinished(q, c.queue_id, &n), 0);
        CHECK_INT(n, 0);
        CHECK_INT(queue_count_unfinished(q, d.queue_id, &n), 0);
        CHECK_INT(n, 1);

        static const struct {
                usec_t now;
                size_t limit;
                size_t n;
                char expect[3];   /* message letters in order */
        } cases[] = {
                { 0,    0, 1, "e" },
                { 999,  0, 1, "e" },
                { 1000, 0, 2, "ae" },     /* <= now is due */
                { 1999, 0, 2, "ae" },
                { 2000, 0, 3, "abe" },
                { 9999, 0, 3, "abe" },
                { 9999, 1, 1, "a" },
                { 9999, 2, 2, "ab" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                scan(q, cases[i].now, cases[i].limit, &s);
                CHECK_INT(s.n, cases[i].n);
                for (size_t j = 0; j < s.n; j++) {
                        const QueueMessage *want = cases[i].expect[j] == 'a' ? &a :
                                                   cases[i].expect[j] == 'b' ? &b : &e;
                        CHECK_STR(s.ids[j], want->queue_id);
                }
        }

        CHECK_INT(queue_next_due(q, &t), 0);
        CHECK_INT(t, 1000);

        /* Held messages count neither for scans nor for the next retry time. */
        CHECK_INT(queue_set_hold(q, a.queue_id, true), 0);
        CHECK_INT(queue_next_due(q, &t), 0);
        CHECK_INT(t, 2000);
        scan(q, 9999, 0, &s);
        CHECK_INT(s.n, 2);
        CHECK_STR(s.ids[0], b.queue_id);
        CHECK_INT(queue_set_hold(q, a.queue_id, false), 0);
        CHECK_INT(queue_set_hold(q, d.queue_id, false), 0);
        scan(q, 0, 0, &s);
        CHECK_INT(s.n, 2);
        CHECK_STR(s.ids[0], d.queue_id);
        QueueMessage l;
        CHECK_INT(queue_load_message(q, d.queue_id, &l, NULL, NULL), 0);
        CHECK(!l.hold);
        queue_message_done(&l);

        /* Loaded recipients carry the recorded results. */
        QueueRecipient *lr;
        CHECK_INT(queue_load_message(q, a.queue_id, &l, &lr, &n), 0);
        CHECK_INT(n, 2);
        CHECK_INT(lr[0].state, QUEUE_RCPT_DEFERRED);
        CHECK_INT(lr[0].attempts, 1);
        CHECK_INT(lr[0].next_attempt_usec, 1000);
        CHECK_STR(lr[0].dsn_status, "4.4.1");
        CHECK_STR(lr[0].diag, "try later");
        CHECK_INT(lr[1].state, QUEUE_RCPT_DELIVERED);
        queue_recipients_free(lr, n);
        queue_message_done(&l);

        /* A callback error stops the scan and is returned. */
        int calls = 0;
        CHECK_INT(queue_scan_due(q, 9999, 0, scan_stop, &calls), -ECANCELED);
        CHECK_INT(calls, 1);

        /* Delete cascades to recipients and content. */
        long long rcpts_before = raw_int("SELECT count(*) FROM recipients");
        long long content_before = raw_int("SELECT count(*) FROM content");
        CHECK_INT(queue_delete_message(q, a.queue_id), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM recipients"), rcpts_before - 2);
        CHECK_INT(raw_int("SELECT count(*) FROM content"), content_before - 1);
        CHECK_INT(queue_load_message(q, a.queue_id, &l, NULL, NULL), -ENOENT);
        CHECK_INT(queue_update_recipient(q, &ra[0]), -ENOENT);

        /* The callback may write through the same Queue. */
        DeleteCtx del = { .q = q };
        CHECK_INT(queue_scan_due(q, UINT64_MAX, 0, scan_delete, &del), 0);
        CHECK_INT(del.n, 3);   /* b, d, e; c is finished */
        CHECK_INT(queue_delete_message(q, c.queue_id), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM recipients"), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM content"), 0);
}


typedef struct IdList {
        char (*ids)[QUEUE_ID_MAX];
        size_t n, max;
} IdList;

static int idlist_add(const char *queue_id, void *ud) {
        IdList *l = ud;

        CHECK(l->n < l->max);
        strcpy(l->ids[l->n++], queue_id);
        return 0;
}

/* Both scan plans (due-index driven and arrival driven, chosen by backlog size) must give the
 * same answer as a brute-force evaluation of the rule, for every mix of states. */
static void test_scan_plans(Queue *q) {
        enum { N = 1500 };
        static struct {
                QueueMessage m;
                QueueRecipient r[2];
                size_t n;
        } msgs[N];
        char (*want)[QUEUE_ID_MAX] = calloc(N, QUEUE_ID_MAX);
        IdList got = { .ids = calloc(N, QUEUE_ID_MAX), .max = N };
        unsigned seed = 12345;

        CHECK(want && got.ids);
        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < N; i++) {
                /* Distinct arrivals in shuffled order: i * 7919 mod N is a permutation. */
                make_message(&msgs[i].m, 1000000 + (i * 7919) % N);
                msgs[i].m.hold = rand_r(&seed) % 10 == 0;
                msgs[i].n = 1 + rand_r(&seed) % 2;
                for (size_t j = 0; j < msgs[i].n; j++) {
                        int k = rand_r(&seed) % 10;
                        msgs[i].r[j] = (QueueRecipient) {
                                .address = (char *) "bob@example.net",
                                /* mostly pending early on, deferred later: a realistic skew */
                                .state = k < (i < N / 2 ? 6 : 1) ? QUEUE_RCPT_PENDING :
                                         k < 8 ? QUEUE_RCPT_DEFERRED : QUEUE_RCPT_DELIVERED,
                                .next_attempt_usec = rand_r(&seed) % 1000,
                        };
                }
                CHECK_INT(queue_insert_message(q, &msgs[i].m, msgs[i].r, msgs[i].n, "x", 1), 0);
        }
        CHECK_INT(queue_commit(q), 0);

        static const struct { usec_t now; size_t limit; } cases[] = {
                { 0, 0 }, { 0, 1 }, { 0, 10 }, { 0, 100 }, { 0, 5000 },
                { 500, 0 }, { 500, 7 }, { 500, 200 },
                { 999, 0 }, { 999, 1 }, { 999, 10 }, { 999, 300 }, { UINT64_MAX, 20 },
        };
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                size_t nwant = 0;

                /* Brute force, in arrival order. */
                for (size_t a = 0; a < N; a++)
                        for (size_t i = 0; i < N; i++) {
                                bool due = false;
                                if (msgs[i].m.arrival_usec != 1000000 + a || msgs[i].m.hold)
                                        continue;
                                for (size_t j = 0; j < msgs[i].n; j++)
                                        due = due || msgs[i].r[j].state == QUEUE_RCPT_PENDING ||
                                              (msgs[i].r[j].state == QUEUE_RCPT_DEFERRED &&
                                               msgs[i].r[j].next_attempt_usec <= cases[c].now);
                                if (due)
                                        strcpy(want[nwant++], msgs[i].m.queue_id);
                        }
                /* Paging with a cursor, limit messages at a time, gives the whole answer. */
                if (cases[c].limit > 0) {
                        QueueScanCursor cursor = QUEUE_SCAN_CURSOR_START;
                        size_t pages = 0;
                        int more;

                        got.n = 0;
                        do {
                                more = queue_scan_due_from(q, cases[c].now, &cursor, cases[c].limit,
                                                           idlist_add, &got);
                                CHECK(more >= 0);
                                CHECK(++pages <= N + 1);
                        } while (more > 0);
                        CHECK_INT(got.n, nwant);
                        for (size_t i = 0; i < nwant; i++)
                                CHECK_STR(got.ids[i], want[i]);
                }

                if (cases[c].limit && nwant > cases[c].limit)
                        nwant = cases[c].limit;

                got.n = 0;
                CHECK_INT(queue_scan_due(q, cases[c].now, cases[c].limit, idlist_add, &got), 0);
                CHECK_INT(got.n, nwant);
                for (size_t i = 0; i < nwant; i++)
                        CHECK_STR(got.ids[i], want[i]);
        }

        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < N; i++)
                CHECK_INT(queue_delete_message(q, msgs[i].m.queue_id), 0);
        CHECK_INT(queue_commit(q), 0);
        free(want);
        free(got.ids);
}

/* Takes ids until it has max of them, then asks the scan to stop before the next. */
static int idlist_take_until_full(const char *queue_id, void *ud) {
        IdList *l = ud;

        if (l->n == l->max)
                return 1;
        strcpy(l->ids[l->n++], queue_id);
        return 0;
}

/* A scan goes on after the last message its callback took: messages that arrived in the same
 * microsecond are told apart by their row, and one the callback refused comes first next time. */
static void test_scan_cursor(Queue *q) {
        QueueMessage m[5];
        QueueRecipient r[5][1];
        char ids[5][QUEUE_ID_MAX];
        IdList got = { .ids = ids, .max = 2 };
        QueueScanCursor cursor = QUEUE_SCAN_CURSOR_START;

        for (size_t i = 0; i < ELEMENTSOF(m); i++)
                insert_simple(q, &m[i], 700, 1, r[i]);   /* one arrival time for all */

        CHECK_INT(queue_scan_due_from(q, 0, &cursor, 0, idlist_take_until_full, &got), 1);
        CHECK_INT(got.n, 2);
        CHECK_STR(ids[0], m[0].queue_id);
        CHECK_STR(ids[1], m[1].queue_id);
        CHECK_INT(cursor.arrival_usec, 700);

        got = (IdList) { .ids = ids, .max = 5 };
        CHECK_INT(queue_scan_due_from(q, 0, &cursor, 2, idlist_take_until_full, &got), 1);
        CHECK_INT(got.n, 2);
        CHECK_STR(ids[0], m[2].queue_id);   /* the one refused above */
        CHECK_STR(ids[1], m[3].queue_id);
        got.n = 0;
        CHECK_INT(queue_scan_due_from(q, 0, &cursor, 2, idlist_take_until_full, &got), 0);
        CHECK_INT(got.n, 1);
        CHECK_STR(ids[0], m[4].queue_id);
        got.n = 0;
        CHECK_INT(queue_scan_due_from(q, 0, &cursor, 2, idlist_take_until_full, &got), 0);
        CHECK_INT(got.n, 0);

        for (size_t i = 0; i < ELEMENTSOF(m); i++)
                CHECK_INT(queue_delete_message(q, m[i].queue_id), 0);
}

/* A scan never walks the whole queue in arrival order: due messages behind many that are not
 * (new mail after an outage's deferred backlog) are found through the due index instead of by
 * stepping over every old message at every scan. Counted in SQLite's virtual machine steps of
 * the arrival-order statement. */
static void test_scan_sparse(Queue *q) {
        enum { OLD = 20000, NEW = 3000, LIMIT = 100 };
        char (*ids)[QUEUE_ID_MAX] = calloc(OLD + NEW, QUEUE_ID_MAX);
        char (*got_ids)[QUEUE_ID_MAX] = calloc(LIMIT, QUEUE_ID_MAX);
        IdList got = { .ids = got_ids, .max = LIMIT };
        QueueScanCursor cursor = QUEUE_SCAN_CURSOR_START;
        sqlite3_stmt *st = NULL;

        CHECK(ids && got_ids);
        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < OLD + NEW; i++) {
                QueueMessage m;
                QueueRecipient r = {
                        .address = (char *) "bob@example.net",
                        .state = i < OLD ? QUEUE_RCPT_DEFERRED : QUEUE_RCPT_PENDING,
                        .next_attempt_usec = i < OLD ? 5000 : 0,
                };
                make_message(&m, 100 + i);
                CHECK_INT(queue_insert_message(q, &m, &r, 1, "x", 1), 0);
                strcpy(ids[i], m.queue_id);
        }
        CHECK_INT(queue_commit(q), 0);

        CHECK_INT(queue_stmt(q, QUEUE_STMT_SCAN_DUE_BY_ARRIVAL, &st), 0);
        (void) sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
        CHECK_INT(queue_scan_due_from(q, 1000, &cursor, LIMIT, idlist_add, &got), 1);
        /* About 25 steps per message walked: a walk over all old ones took 480,000, the window
         * of 8 x LIMIT messages takes about 23,000. */
        int steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
        if (steps >= 2 * OLD)
                fprintf(stderr, "arrival-order scan: %d steps for %d messages\n", steps, LIMIT);
        CHECK(steps < 2 * OLD);
        CHECK_INT(got.n, LIMIT);
        for (size_t i = 0; i < LIMIT; i++)
                CHECK_STR(got_ids[i], ids[OLD + i]);

        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < OLD + NEW; i++)
                CHECK_INT(queue_delete_message(q, ids[i]), 0);
        CHECK_INT(queue_commit(q), 0);
        free(ids);
        free(got_ids);
}

static int compare_ids(const void *a, const void *b) {
        return strcmp(a, b);
}

static int finished_fail(const char *queue_id, void *ud) {
        return -EIO;
}

/* queue_scan_finished against a brute-force model: every mix of recipient states, messages
 * without recipients, held ones; paged by window and limit it finds each finished message once,
 * in id order, never more than limit a call, and fn may delete what it is given. */
static void test_scan_finished(Queue *q) {
        enum { N = 400 };
        static struct {
                QueueMessage m;
                QueueRecipient r[3];
                size_t n;
                bool finished;
        } msgs[N];
        char (*want)[QUEUE_ID_MAX] = calloc(N, QUEUE_ID_MAX);
        IdList got = { .ids = calloc(N, QUEUE_ID_MAX), .max = N };
        char cursor[QUEUE_ID_MAX] = "";
        size_t nwant = 0;
        unsigned seed = 4242;

        CHECK(want && got.ids);
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, idlist_add, &got), 0);
        CHECK_INT(got.n, 0);
        CHECK_STR(cursor, "");

        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < N; i++) {
                make_message(&msgs[i].m, 2000000 + i);
                msgs[i].m.hold = rand_r(&seed) % 7 == 0;
                msgs[i].n = rand_r(&seed) % 4;   /* 0..3 recipients */
                msgs[i].finished = true;
                for (size_t j = 0; j < msgs[i].n; j++) {
                        /* mostly final, so that about a third of the messages are finished */
                        int k = rand_r(&seed) % 10;
                        QueueRcptState st = k < 1 ? QUEUE_RCPT_PENDING : k < 2 ? QUEUE_RCPT_DEFERRED :
                                            k < 6 ? QUEUE_RCPT_DELIVERED : QUEUE_RCPT_BOUNCED;
                        msgs[i].r[j] = (QueueRecipient) { .address = (char *) "bob@example.net",
                                                          .state = st };
                        if (st == QUEUE_RCPT_PENDING || st == QUEUE_RCPT_DEFERRED)
                                msgs[i].finished = false;
                }
                CHECK_INT(queue_insert_message(q, &msgs[i].m, msgs[i].r, msgs[i].n, "x", 1), 0);
                if (msgs[i].finished)
                        strcpy(want[nwant++], msgs[i].m.queue_id);
        }
        CHECK_INT(queue_commit(q), 0);
        qsort(want, nwant, QUEUE_ID_MAX, compare_ids);
        CHECK(nwant > 50 && nwant < N - 50);

        /* Unbounded: everything at once, then the cursor sits on the last id of the queue. */
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, idlist_add, &got), 0);
        CHECK_INT(got.n, nwant);
        for (size_t i = 0; i < nwant; i++)
                CHECK_STR(got.ids[i], want[i]);
        CHECK(cursor[0]);
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, idlist_add, &got), 0);
        CHECK_INT(got.n, nwant);   /* nothing after the end */

        /* Paged: small windows and limits, resumed from the cursor. */
        static const struct { size_t window, limit; } pages[] = {
                { 1, 0 }, { 7, 3 }, { 50, 1 }, { 0, 5 }, { 64, 0 }, { N, 1000 },
        };
        for (size_t p = 0; p < ELEMENTSOF(pages); p++) {
                size_t calls = 0;
                int r;

                cursor[0] = '\0';
                got.n = 0;
                do {
                        size_t before = got.n;
                        CHECK(++calls <= 2 * N + 2);
                        r = queue_scan_finished(q, cursor, pages[p].window, pages[p].limit,
                                                idlist_add, &got);
                        CHECK(r == 0 || r == 1);
                        if (pages[p].limit)
                                CHECK(got.n - before <= pages[p].limit);
                } while (r == 1);
                CHECK_INT(got.n, nwant);
                for (size_t i = 0; i < nwant; i++)
                        CHECK_STR(got.ids[i], want[i]);
        }

        /* fn's failure is returned and the cursor stays where it was. */
        cursor[0] = '\0';
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, finished_fail, NULL), -EIO);
        CHECK_STR(cursor, "");
        memset(cursor, 'A', sizeof cursor);   /* no terminating NUL */
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, idlist_add, &got), -EINVAL);

        /* fn may delete the message it is given (what qmgr's completion does). */
        DeleteCtx d = { .q = q };
        int r;
        cursor[0] = '\0';
        do
                r = queue_scan_finished(q, cursor, 16, 4, scan_delete, &d);
        while (r == 1);
        CHECK_INT(r, 0);
        CHECK_INT(d.n, nwant);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), N - nwant);
        got.n = 0;
        cursor[0] = '\0';
        CHECK_INT(queue_scan_finished(q, cursor, 0, 0, idlist_add, &got), 0);
        CHECK_INT(got.n, 0);

        raw_exec("PRAGMA foreign_keys = ON; DELETE FROM messages", SQLITE_OPEN_READWRITE);
        free(want);
        free(got.ids);
}

/* flush DOMAIN / ETRN: only the deferred recipients at that domain (any case), with subdomains
 * only when asked, of messages not on hold, become due; "notexample.net" is not "example.net". */
static void test_requeue_site(Queue *q) {
        static const char *const addrs[] = {
                "bob@Example.NET", "c@sub.example.net", "d@notexample.net", "e@example.net",
                "f@other.org", "\"g@x\"@example.net",
        };
        static const QueueRcptState states[] = {
                QUEUE_RCPT_DEFERRED, QUEUE_RCPT_DEFERRED, QUEUE_RCPT_DEFERRED, QUEUE_RCPT_PENDING,
                QUEUE_RCPT_DEFERRED, QUEUE_RCPT_DEFERRED,
        };
        /* next attempt expected after: nothing, "example.net", "example.net" with subdomains */
        static const bool due[3][6] = {
                { false, false, false, true, false, false },
                { true, false, false, true, false, true },
                { true, true, false, true, false, true },
        };
        QueueRecipient r[6] = {}, held = { .address = (char *) "h@example.net",
                                           .state = QUEUE_RCPT_DEFERRED, .next_attempt_usec = 1ULL << 50 };
        QueueMessage m, h;
        size_t count = 99;

        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                r[i] = (QueueRecipient) { .address = (char *) addrs[i], .state = states[i],
                                          .next_attempt_usec = states[i] == QUEUE_RCPT_PENDING ? 0 : 1ULL << 50 };
        make_message(&m, 1);
        CHECK_INT(queue_insert_message(q, &m, r, ELEMENTSOF(r), "hello", 5), 0);
        make_message(&h, 2);
        h.hold = true;
        CHECK_INT(queue_insert_message(q, &h, &held, 1, "hello", 5), 0);

        CHECK_INT(queue_requeue_site(q, "", false, &count), -EINVAL);
        for (size_t pass = 0; pass < 3; pass++) {
                if (pass > 0) {
                        CHECK_INT(queue_requeue_site(q, "EXAMPLE.net", pass == 2, &count), 0);
                        CHECK_INT(count, pass == 1 ? 2 : 1);
                }
                QueueMessage l = {};
                QueueRecipient *lr = NULL;
                size_t n = 0;
                CHECK_INT(queue_load_message(q, m.queue_id, &l, &lr, &n), 0);
                CHECK_INT(n, ELEMENTSOF(r));
                for (size_t i = 0; i < n; i++)
                        CHECK_INT(lr[i].next_attempt_usec == 0, due[pass][i]);
                queue_message_done(&l);
                queue_recipients_free(lr, n);
        }
        /* the held message's recipient waits for its release */
        QueueMessage l = {};
        QueueRecipient *lr = NULL;
        size_t n = 0;
        CHECK_INT(queue_load_message(q, h.queue_id, &l, &lr, &n), 0);
        CHECK(lr[0].next_attempt_usec != 0);
        queue_message_done(&l);
        queue_recipients_free(lr, n);
        CHECK_INT(queue_delete_message(q, m.queue_id), 0);
        CHECK_INT(queue_delete_message(q, h.queue_id), 0);
}

int main(void) {
        Queue *q = NULL;

        test_dir_create("test-queue-scan");
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        test_schedule(q);
        test_scan_plans(q);
        test_scan_cursor(q);
        test_scan_sparse(q);
        test_scan_finished(q);
        test_requeue_site(q);
        q = queue_close(q);
        return 0;
}
