/* queue-fill.c — fills a queue with copies of one message that postern-smtpd accepted and
 * postern-qmgr deferred, for tests/bench/backlog --curve: filling a million messages through
 * SMTP would take the better part of an hour on the bench VM, most of it spent re-measuring
 * what the SMTP part of the fill already measured.
 *
 *   queue-fill QUEUE_DIR TEMPLATE_QUEUE_ID COUNT [PER_COMMIT]
 *
 * Each copy is the template as the queue holds it — envelope (sender, client, HELO, protocol,
 * size, DSN fields), content (with the template's queue id in its Received: header replaced by
 * the copy's own, so every copy names itself) and recipients in the template's state (deferred,
 * attempts, next attempt time, DSN status and diagnostic) — with a fresh queue id and the time
 * of the copy as arrival time. Written through queue_insert_message(), PER_COMMIT messages per
 * transaction (default 1000), the way smtpd's group commit writes them. Postern's daemons may
 * run meanwhile (qmgr is best stopped: the copies get no wake-up, and a restart is what a
 * backlog after an outage looks like). Prints the insert rate on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/queue.h"

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Replaces every occurrence of from with to (same length) in buf. */
static void replace_all(char *buf, size_t len, const char *from, const char *to) {
        size_t n = strlen(from);
        if (n == 0 || n != strlen(to))
                return;
        for (char *p = buf; (p = memmem(p, len - (size_t) (p - buf), from, n)); p += n)
                memcpy(p, to, n);
}

int main(int argc, char **argv) {
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_free_ char *content = NULL;
        QueueMessage m = {};
        QueueRecipient *rcpts = NULL;
        size_t n_rcpts = 0, len = 0, count, per_commit;
        char last_id[QUEUE_ID_MAX];
        int r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s QUEUE_DIR TEMPLATE_QUEUE_ID COUNT [PER_COMMIT]\n", argv[0]);
                return 2;
        }
        count = strtoul(argv[3], NULL, 10);
        per_commit = argc > 4 ? strtoul(argv[4], NULL, 10) : 1000;
        if (per_commit == 0)
                per_commit = 1;

        r = queue_open(argv[1], 0, &q);
        if (r < 0) {
                fprintf(stderr, "cannot open the queue in %s: %s (%s)\n", argv[1], strerror(-r),
                        strempty(queue_open_error()));
                return 1;
        }
        r = queue_load_message(q, argv[2], &m, &rcpts, &n_rcpts);
        if (r >= 0)
                r = queue_load_content(q, argv[2], &content, &len);
        if (r < 0) {
                fprintf(stderr, "cannot load %s: %s (%s)\n", argv[2], strerror(-r), queue_last_error(q));
                return 1;
        }
        snprintf(last_id, sizeof last_id, "%s", m.queue_id);

        double t0 = now_sec();
        for (size_t i = 0; i < count; i += per_commit) {
                r = queue_begin(q);
                for (size_t j = i; r >= 0 && j < count && j < i + per_commit; j++) {
                        queue_id_new(m.queue_id);
                        m.arrival_usec = now_usec(CLOCK_REALTIME);
                        replace_all(content, len, last_id, m.queue_id);
                        memcpy(last_id, m.queue_id, sizeof last_id);
                        r = queue_insert_message(q, &m, rcpts, n_rcpts, content, len);
                }
                if (r >= 0)
                        r = queue_commit(q);
                if (r < 0) {
                        fprintf(stderr, "insert failed after %zu messages: %s (%s)\n", i, strerror(-r),
                                queue_last_error(q));
                        return 1;
                }
        }
        double t = now_sec() - t0;
        printf("%zu messages (%zu recipients each, %zu bytes) in %.1f s = %.0f msg/s\n", count, n_rcpts,
               len, t, t > 0 ? count / t : 0.0);

        queue_message_done(&m);
        queue_recipients_free(rcpts, n_rcpts);
        return 0;
}
