/* metrics-store.h — the counters a daemon keeps for the metrics endpoint, one set per process.
 *
 * Events call metrics_add() / metrics_observe() (any thread; a mutex, a hash lookup, no I/O).
 * The deltas reach the queue's metrics table (queue_metric_add()) in a transaction the daemon
 * commits anyway: the writer calls metrics_save() after its own writes and metrics_saved() with
 * the commit's result, which puts the deltas back when the commit failed. When no transaction
 * comes along, metrics_flusher_start()'s thread writes what is left at most once a second (a
 * small transaction of its own, only while there is something to write). So counters live in
 * queue.db, survive restarts, and never cost a message an fsync of their own. */
#pragma once

#include "queue/queue.h"

typedef struct MetricsBatch MetricsBatch;

/* Adds delta to the counter name{labels} (labels in exposition syntax, NULL or "" for none). */
void metrics_add(const char *name, const char *labels, double delta);
/* Adds 1 to the counter name{k1="v1",...} (NULL-terminated name/value pairs; nothing is counted
 * when the labels do not fit). */
void metrics_count(const char *name, ...) _sentinel_;
/* Counts one observation of value in the histogram family name (buckets, _sum, _count). */
void metrics_observe(const char *name, const char *labels, double value);

/* Inside the caller's open transaction: writes every pending delta and takes them out of memory
 * (*ret: NULL when nothing was pending). On a write failure the deltas are back in memory,
 * *ret is NULL and the error is returned (the caller's own writes are unaffected only if it
 * ignores the error, which it may: counting never makes a message fail). */
int metrics_save(Queue *q, MetricsBatch **ret);
/* After the commit: r >= 0 forgets the batch, r < 0 puts its deltas back. Takes NULL. */
void metrics_saved(MetricsBatch *batch, int r);

/* Starts the once-a-second writer on <queue_directory>/queue.db (its own connection). */
int metrics_flusher_start(const char *queue_directory);
/* Writes what is pending one last time and stops the thread. */
void metrics_flusher_stop(void);
