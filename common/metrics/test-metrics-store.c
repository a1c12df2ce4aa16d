/* test-metrics-store.c — counting into queue.db: deltas written inside the caller's
 * transaction, put back when the commit fails (and written by the next one), histogram
 * observations spread over buckets/_sum/_count, and the once-a-second writer saving what no
 * transaction took (waited for with a deadline, never a fixed sleep). */
#include <errno.h>
#include <time.h>

#include "metrics/metrics-store.h"
#include "queue/queue.h"
#include "../queue/test-queue-util.h"

static double stored(Queue *q, const char *name, const char *labels);

typedef struct Find { const char *name, *labels; double value; bool found; } Find;

static int find_fn(const char *name, const char *labels, double value, void *ud) {
        Find *f = ud;
        if (streq(name, f->name) && streq(labels, f->labels)) {
                f->value = value;
                f->found = true;
        }
        return 0;
}

static double stored(Queue *q, const char *name, const char *labels) {
        Find f = { name, labels };
        CHECK_INT(queue_metric_list(q, find_fn, &f), 0);
        return f.found ? f.value : -1;
}

static void commit_pending(Queue *q, bool fail) {
        MetricsBatch *b = NULL;
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(metrics_save(q, &b), 0);
        int r = fail ? -EIO : queue_commit(q);
        if (fail)
                CHECK_INT(queue_rollback(q), 0);
        metrics_saved(b, r);
}

int main(void) {
        Queue *q = NULL;

        test_dir_create("test-metrics");
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);

        metrics_add("postfix_smtpd_connects_total", NULL, 1);
        metrics_add("postfix_smtpd_connects_total", "", 2);
        metrics_add("postern_deliveries_total", "transport=\"smtp\",status=\"sent\"", 1);
        commit_pending(q, false);
        CHECK(stored(q, "postfix_smtpd_connects_total", "") == 3);
        CHECK(stored(q, "postern_deliveries_total", "transport=\"smtp\",status=\"sent\"") == 1);

        /* A failed commit loses nothing: the next one writes it. */
        metrics_add("postfix_smtpd_connects_total", NULL, 5);
        commit_pending(q, true);
        CHECK(stored(q, "postfix_smtpd_connects_total", "") == 3);
        metrics_add("postfix_smtpd_connects_total", NULL, 1);
        commit_pending(q, false);
        CHECK(stored(q, "postfix_smtpd_connects_total", "") == 9);
        /* Nothing pending: no batch. */
        MetricsBatch *b = (MetricsBatch *) 1;
        CHECK_INT(metrics_save(q, &b), 0);
        CHECK(b == NULL);

        /* 0.5 s and 30 s: buckets are cumulative, +Inf counts both. */
        metrics_observe("postern_delivery_delay_seconds", "transport=\"local\"", 0.5);
        metrics_observe("postern_delivery_delay_seconds", "transport=\"local\"", 30);
        metrics_observe("postfix_smtpd_connects_total", NULL, 1);   /* not a histogram: ignored */
        commit_pending(q, false);
        CHECK(stored(q, "postern_delivery_delay_seconds_bucket", "transport=\"local\",le=\"0.1\"") == -1);
        CHECK(stored(q, "postern_delivery_delay_seconds_bucket", "transport=\"local\",le=\"1\"") == 1);
        CHECK(stored(q, "postern_delivery_delay_seconds_bucket", "transport=\"local\",le=\"10\"") == 1);
        CHECK(stored(q, "postern_delivery_delay_seconds_bucket", "transport=\"local\",le=\"60\"") == 2);
        CHECK(stored(q, "postern_delivery_delay_seconds_bucket", "transport=\"local\",le=\"+Inf\"") == 2);
        CHECK(stored(q, "postern_delivery_delay_seconds_sum", "transport=\"local\"") == 30.5);
        CHECK(stored(q, "postern_delivery_delay_seconds_count", "transport=\"local\"") == 2);
        CHECK(stored(q, "postfix_smtpd_connects_total", "") == 9);

        /* The writer thread saves what no transaction took, within a few seconds. */
        CHECK_INT(metrics_flusher_start(dir), 0);
        metrics_add("postfix_smtpd_disconnects_total", NULL, 4);
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + 20 * USEC_PER_SEC;
        while (stored(q, "postfix_smtpd_disconnects_total", "") != 4) {
                CHECK(now_usec(CLOCK_MONOTONIC) < deadline);
                (void) usleep(50 * 1000);
        }
        /* Stopping writes the rest at once. */
        metrics_add("postfix_smtpd_disconnects_total", NULL, 1);
        metrics_flusher_stop();
        CHECK(stored(q, "postfix_smtpd_disconnects_total", "") == 5);

        q = queue_close(q);
        dir_clean(dir);
        return 0;
}
