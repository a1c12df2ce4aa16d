/* metrics-store.c — the process's pending counter deltas and the once-a-second writer (see
 * metrics-store.h). Deltas live in a StrMap keyed "name\x01labels": a counter's is one number, a
 * histogram's its per-bucket counts, sum and count, expanded into the _bucket/_sum/_count rows
 * only when saved (an observation is one lookup and three additions). A batch is a map taken
 * out whole, so saving never holds the lock across SQLite calls. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/strmap.h"
#include "log/log.h"
#include "metrics-catalog.h"
#include "metrics-store.h"
#include "metrics-text.h"

#define KEY_SEP '\x01'

typedef struct Entry {
        const MetricsFamily *hist;  /* NULL: a counter */
        double value;               /* counter delta, or the histogram's sum */
        double count;               /* histogram: observations */
        double buckets[];           /* histogram: observations per bucket (not cumulative), +Inf last */
} Entry;

struct MetricsBatch {
        StrMap *deltas;
        char **keys;       /* the keys, for walking (StrMap has no iterator) */
        size_t n, cap;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static MetricsBatch *pending;

static MetricsBatch *batch_free(MetricsBatch *b) {
        if (!b)
                return NULL;
        strmap_free(b->deltas);
        for (size_t i = 0; i < b->n; i++)
                free(b->keys[i]);
        free(b->keys);
        free(b);
        return NULL;
}

/* The entry for key in *bp (created, and the batch too, as needed); NULL when out of memory. */
static Entry *batch_entry(MetricsBatch **bp, const char *key, const MetricsFamily *hist) {
        MetricsBatch *b = *bp;

        if (!b) {
                b = calloc(1, sizeof *b);
                if (!b || !(b->deltas = strmap_new(free))) {
                        free(b);
                        return NULL;
                }
                *bp = b;
        }
        Entry *e = strmap_get(b->deltas, key);
        if (e)
                return e;
        if (b->n == b->cap) {
                size_t cap = b->cap ? 2 * b->cap : 16;
                char **k = realloc(b->keys, cap * sizeof *k);
                if (!k)
                        return NULL;
                b->keys = k;
                b->cap = cap;
        }
        char *kc = strdup(key);
        e = calloc(1, sizeof *e + (hist ? hist->n_bounds + 1 : 0) * sizeof(double));
        if (!kc || !e || strmap_put(b->deltas, key, e) < 0) {
                free(kc);
                free(e);
                return NULL;
        }
        e->hist = hist;
        b->keys[b->n++] = kc;
        return e;
}

/* Adds src's deltas to the entry for key in *bp. */
static void entry_merge(MetricsBatch **bp, const char *key, const Entry *src) {
        Entry *e = batch_entry(bp, key, src->hist);
        if (!e)
                return;   /* out of memory loses a count, never a message */
        e->value += src->value;
        e->count += src->count;
        for (size_t i = 0; src->hist && i <= src->hist->n_bounds; i++)
                e->buckets[i] += src->buckets[i];
}

/* The entry for name{labels} in pending; the caller holds the lock. */
static Entry *pending_entry(const char *name, const char *labels, const MetricsFamily *hist) {
        size_t nl = strlen(name), ll = labels ? strlen(labels) : 0;
        char key[nl + ll + 2];

        memcpy(key, name, nl);
        key[nl] = KEY_SEP;
        memcpy(key + nl + 1, labels ? labels : "", ll + 1);
        return batch_entry(&pending, key, hist);
}

void metrics_count(const char *name, ...) {
        char l[METRICS_LABELS_MAX];
        va_list ap;
        va_start(ap, name);
        int r = metrics_labels_va(l, sizeof l, ap);
        va_end(ap);
        if (r >= 0)
                metrics_add(name, l, 1);
}

void metrics_add(const char *name, const char *labels, double delta) {
        pthread_mutex_lock(&lock);
        Entry *e = pending_entry(name, labels, NULL);
        if (e && !e->hist)
                e->value += delta;
        pthread_mutex_unlock(&lock);
}

void metrics_observe(const char *name, const char *labels, double value) {
        const MetricsFamily *f = metrics_family(name);
        size_t i = 0;

        if (!f || f->type != METRICS_HISTOGRAM)
                return;
        while (i < f->n_bounds && value > f->bounds[i])
                i++;
        pthread_mutex_lock(&lock);
        Entry *e = pending_entry(name, labels, f);
        if (e && e->hist == f) {
                e->buckets[i]++;
                e->value += value;
                e->count++;
        }
        pthread_mutex_unlock(&lock);
}

/* Puts b's deltas back into pending (a failed commit). */
static void merge_back(MetricsBatch *b) {
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < b->n; i++)
                entry_merge(&pending, b->keys[i], strmap_get(b->deltas, b->keys[i]));
        pthread_mutex_unlock(&lock);
        batch_free(b);
}

/* Writes one entry: a counter's row, or a histogram's cumulative _bucket rows (those that
 * change), _sum and _count. */
static int save_entry(Queue *q, const char *name, const char *labels, const Entry *e) {
        if (!e->hist)
                return queue_metric_add(q, name, labels, e->value);

        const MetricsFamily *f = e->hist;
        char series[strlen(name) + 8], l[METRICS_LABELS_MAX + 64];
        double cum = 0;
        int r = 0;

        snprintf(series, sizeof series, "%s_bucket", name);
        for (size_t i = 0; r >= 0 && i <= f->n_bounds; i++) {
                cum += e->buckets[i];
                if (cum == 0)
                        continue;
                r = metrics_bucket_labels(l, sizeof l, labels, i < f->n_bounds ? f->bounds[i] : INFINITY);
                if (r >= 0)
                        r = queue_metric_add(q, series, l, cum);
        }
        snprintf(series, sizeof series, "%s_sum", name);
        if (r >= 0)
                r = queue_metric_add(q, series, labels, e->value);
        snprintf(series, sizeof series, "%s_count", name);
        if (r >= 0)
                r = queue_metric_add(q, series, labels, e->count);
        return r;
}

int metrics_save(Queue *q, MetricsBatch **ret) {
        MetricsBatch *b;
        int r = 0;

        *ret = NULL;
        pthread_mutex_lock(&lock);
        b = pending;
        pending = NULL;
        pthread_mutex_unlock(&lock);
        if (!b)
                return 0;
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                const Entry *e = strmap_get(b->deltas, b->keys[i]);
                char *sep = strchr(b->keys[i], KEY_SEP);
                *sep = '\0';
                r = save_entry(q, b->keys[i], sep + 1, e);
                *sep = KEY_SEP;
        }
        if (r < 0) {
                merge_back(b);
                return r;
        }
        *ret = b;
        return 0;
}

void metrics_saved(MetricsBatch *b, int r) {
        if (!b)
                return;
        if (r < 0)
                merge_back(b);
        else
                batch_free(b);
}

/* --- the once-a-second writer --- */

static struct {
        pthread_t thread;
        bool started, stop;
        pthread_cond_t cond;
        char *dir;
} flusher = { .cond = PTHREAD_COND_INITIALIZER };

static bool have_pending(void) {
        pthread_mutex_lock(&lock);
        bool any = pending != NULL;
        pthread_mutex_unlock(&lock);
        return any;
}

/* One transaction with whatever is pending. */
static void flush_once(Queue **qp) {
        MetricsBatch *b = NULL;
        int r;

        if (!have_pending())
                return;
        if (!*qp) {
                r = queue_open(flusher.dir, 0, qp);
                if (r < 0) {
                        log_debug_errno(r, "Metrics: cannot open the queue in %s: %m", flusher.dir);
                        return;
                }
        }
        r = queue_begin(*qp);
        if (r >= 0)
                r = metrics_save(*qp, &b);
        if (r >= 0)
                r = queue_commit(*qp);
        if (r < 0) {
                log_debug_errno(r, "Metrics: cannot save the counters (%s): %m", queue_last_error(*qp));
                (void) queue_rollback(*qp);
        }
        metrics_saved(b, r);
}

static void *flusher_thread(void *userdata) {
        Queue *q = NULL;

        pthread_mutex_lock(&lock);
        while (!flusher.stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&flusher.cond, &lock, &ts);
                pthread_mutex_unlock(&lock);
                flush_once(&q);
                pthread_mutex_lock(&lock);
        }
        pthread_mutex_unlock(&lock);
        flush_once(&q);
        queue_close(q);
        return NULL;
}

int metrics_flusher_start(const char *queue_directory) {
        if (flusher.started)
                return 0;
        flusher.dir = strdup(queue_directory);
        if (!flusher.dir)
                return -ENOMEM;
        flusher.stop = false;
        int r = pthread_create(&flusher.thread, NULL, flusher_thread, NULL);
        if (r != 0) {
                free(flusher.dir);
                flusher.dir = NULL;
                return -r;
        }
        flusher.started = true;
        return 0;
}

void metrics_flusher_stop(void) {
        if (!flusher.started)
                return;
        pthread_mutex_lock(&lock);
        flusher.stop = true;
        pthread_cond_signal(&flusher.cond);
        pthread_mutex_unlock(&lock);
        pthread_join(flusher.thread, NULL);
        flusher.started = false;
        free(flusher.dir);
        flusher.dir = NULL;
}
