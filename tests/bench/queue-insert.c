/* queue-insert.c — measures the queue module: durable inserts per second (one message per commit
 * versus several per commit, 4 KiB content, synchronous=FULL), then the scheduler queries
 * (queue_scan_due, queue_next_due) on a large queue, all due, half due and mostly deferred,
 * and a full queue_list.
 *
 * Not a unit test. Build by hand, e.g.:
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Icommon -Ibuild tests/bench/queue-insert.c \
 *       common/queue/queue*.c common/mail/queue-id.c common/basic/util.c -lsqlite3 -o /tmp/qbench
 *   /tmp/qbench [DIR] [N-single] [N-batched] [BATCH] [N-scan]
 * DIR defaults to a fresh directory under /var/tmp (a real disk, not tmpfs). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int r, Queue *q) {
        fprintf(stderr, "%s: %s (%s)\n", what, strerror(-r), q ? queue_last_error(q) : "");
        exit(1);
}

static void insert(Queue *q, const char *content, size_t len, usec_t arrival) {
        QueueMessage m = {
                .sender = (char *) "sender@example.org",
                .arrival_usec = arrival,
                .size = len,
                .client_address = (char *) "127.0.0.1",
                .client_name = (char *) "localhost",
                .helo = (char *) "client.example.org",
                .protocol = (char *) "ESMTP",
        };
        QueueRecipient r = { .address = (char *) "rcpt@example.net" };
        int k;

        queue_id_new(m.queue_id);
        k = queue_insert_message(q, &m, &r, 1, content, len);
        if (k < 0)
                die("insert", k, q);
}

/* Inserts n messages, batch per commit; returns messages per second. */
static double run_inserts(Queue *q, size_t n, size_t batch, const char *content, size_t len) {
        double t0 = now_sec();
        int r;

        for (size_t i = 0; i < n; i += batch) {
                r = queue_begin(q);
                if (r < 0)
                        die("begin", r, q);
                for (size_t j = i; j < n && j < i + batch; j++)
                        insert(q, content, len, now_usec(CLOCK_REALTIME));
                r = queue_commit(q);
                if (r < 0)
                        die("commit", r, q);
        }
        return n / (now_sec() - t0);
}

static int count_cb(const char *queue_id, void *ud) {
        (*(size_t *) ud)++;
        return 0;
}

static int list_cb(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *ud) {
        (*(size_t *) ud)++;
        return 0;
}

static void time_scan(Queue *q, const char *label, usec_t now, size_t limit) {
        size_t n = 0;
        usec_t next = 0;
        double t0 = now_sec(), t1;
        int r;

        r = queue_scan_due(q, now, limit, count_cb, &n);
        if (r < 0)
                die("scan", r, q);
        t1 = now_sec();
        r = queue_next_due(q, &next);
        if (r < 0 && r != -ENOENT)
                die("next_due", r, q);
        printf("  %-38s scan_due(limit %zu): %zu ids in %.2f ms; next_due %.3f ms\n", label, limit, n,
               (t1 - t0) * 1e3, (now_sec() - t1) * 1e3);
}

/* Defers recipients first..last an hour past now, except every due_every-th (due now). */
static void defer(Queue *q, int64_t first, int64_t last, usec_t now, int64_t due_every) {
        QueueRecipient rcpt = {
                .state = QUEUE_RCPT_DEFERRED,
                .attempts = 1,
                .dsn_status = (char *) "4.4.1",
                .diag = (char *) "connection refused",
        };
        int r;

        r = queue_begin(q);
        if (r < 0)
                die("begin", r, q);
        for (int64_t id = first; id <= last; id++) {
                bool due = due_every > 0 && id % due_every == 0;
                rcpt.id = id;
                rcpt.next_attempt_usec = now + (due ? 0 : 3600 * USEC_PER_SEC) + id;
                r = queue_update_recipient(q, &rcpt);
                if (r < 0 && r != -ENOENT)
                        die("update", r, q);
        }
        r = queue_commit(q);
        if (r < 0)
                die("commit", r, q);
}

int main(int argc, char **argv) {
        char tmpl[] = "/var/tmp/queue-bench-XXXXXX";
        const char *dir = argc > 1 && argv[1][0] ? argv[1] : mkdtemp(tmpl);
        size_t n_single = argc > 2 ? strtoul(argv[2], NULL, 10) : 500;
        size_t n_batched = argc > 3 ? strtoul(argv[3], NULL, 10) : 5000;
        size_t batch = argc > 4 ? strtoul(argv[4], NULL, 10) : 50;
        size_t n_scan = argc > 5 ? strtoul(argv[5], NULL, 10) : 100000;
        char content[4096];
        Queue *q = NULL;
        int r;

        if (!dir) {
                perror("mkdtemp");
                return 1;
        }
        memset(content, 'x', sizeof content);
        for (size_t i = 76; i < sizeof content; i += 78)
                content[i] = '\n';

        r = queue_open(dir, QUEUE_OPEN_CREATE, &q);
        if (r < 0)
                die("open", r, NULL);

        printf("queue in %s, 4 KiB content, synchronous=FULL\n", dir);
        printf("  1 message per commit:   %8.0f msg/s (%zu messages)\n",
               run_inserts(q, n_single, 1, content, sizeof content), n_single);
        printf("  %zu messages per commit: %8.0f msg/s (%zu messages)\n", batch,
               run_inserts(q, n_batched, batch, content, sizeof content), n_batched);

        /* Scheduler queries on a big queue: fill it (fast, large commits), then time them. */
        size_t have = n_single + n_batched;
        if (have < n_scan)
                run_inserts(q, n_scan - have, 1000, content, 512);

        usec_t now = now_usec(CLOCK_REALTIME);
        time_scan(q, "all pending:", now, 1000);
        time_scan(q, "all pending:", now, 0);

        /* Older half deferred into the future, newer half pending: the worst case for the
         * arrival-order plan, which must step over the deferred half. */
        size_t total = n_scan > have ? n_scan : have;
        defer(q, 1, total / 2, now, 0);
        time_scan(q, "older 50% deferred, newer 50% pending:", now + 1000000, 1000);
        time_scan(q, "older 50% deferred, newer 50% pending:", now + 1000000, 0);

        /* Every recipient deferred into the future except 1%. */
        defer(q, 1, total, now, 100);
        time_scan(q, "1% deferred-due, 99% deferred later:", now + 1000000, 1000);
        time_scan(q, "1% deferred-due, 99% deferred later:", now + 1000000, 0);
        time_scan(q, "nothing due:", now - 1, 0);

        size_t listed = 0;
        double t0 = now_sec();
        r = queue_list(q, list_cb, &listed);
        if (r < 0)
                die("list", r, q);
        printf("  queue_list: %zu messages with recipients in %.0f ms\n", listed, (now_sec() - t0) * 1e3);

        queue_close(q);
        if (argc <= 1 || !argv[1][0]) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "failed to remove %s\n", dir);
        }
        return 0;
}
