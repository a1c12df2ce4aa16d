/* queue-metrics.c — the queue side of the metrics endpoint: the counters table the daemons add
 * to (queue_metric_add(), inside transactions they run anyway, so counting costs no fsync of its
 * own) and the two reads postern-metrics makes per scrape (queue_metric_list() for the counters,
 * queue_metric_messages() for the queue gauges). The table (schema version 4) holds one row per
 * sample: its full name (histograms as name_bucket / _sum / _count) and its labels in exposition
 * syntax; common/metrics decides names and labels, nothing here knows them. */
#include <errno.h>

#include "queue-internal.h"

/* Adds delta to name{labels}; a new sample starts at 0. */
int queue_metric_add(Queue *q, const char *name, const char *labels, double delta) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!q || !name || !*name)
                return -EINVAL;
        r = queue_write_stmt(q, QUEUE_STMT_METRIC_ADD, &st);
        if (r < 0)
                return r;
        queue_bind_text(st, 1, name);
        queue_bind_text(st, 2, labels ? labels : "");
        sqlite3_bind_double(st, 3, delta);
        rc = sqlite3_step(st);
        return rc == SQLITE_DONE ? 0 : queue_error(q, rc);
}

/* Every counter sample, ordered by name and labels. */
int queue_metric_list(Queue *q, int (*fn)(const char *name, const char *labels, double value, void *ud),
                      void *ud) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!q || !fn)
                return -EINVAL;
        r = queue_stmt(q, QUEUE_STMT_METRIC_LIST, &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *) sqlite3_column_text(st, 0);
                const char *labels = (const char *) sqlite3_column_text(st, 1);
                if (!name)
                        continue;
                r = fn(name, labels ? labels : "", sqlite3_column_double(st, 2), ud);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : queue_error(q, rc);
}

/* Every message, as the queue gauges classify it. */
int queue_metric_messages(Queue *q, usec_t now_usec,
                          int (*fn)(const QueueMetricMessage *m, void *ud), void *ud) {
        _cleanup_stmt_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!q || !fn)
                return -EINVAL;
        r = queue_stmt(q, QUEUE_STMT_METRIC_MESSAGES, &st);
        if (r < 0)
                return r;
        queue_bind_usec(st, 1, now_usec);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                QueueMetricMessage m = {
                        .hold = sqlite3_column_int(st, 0) != 0,
                        .size = queue_column_usec(st, 1),
                        .arrival_usec = queue_column_usec(st, 2),
                        .has_pending = sqlite3_column_int(st, 3) != 0,
                        .has_due = sqlite3_column_int(st, 4) != 0,
                        .unfinished = (uint32_t) sqlite3_column_int64(st, 5),
                };
                r = fn(&m, ud);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : queue_error(q, rc);
}
