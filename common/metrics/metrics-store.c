/* metrics-store.c — the process's pending counter deltas and the once-a-second writer (see
 * metrics-store.h). Deltas live in a StrMap keyed "name\x01labels"; a batch is a map taken out
 * whole, so saving never holds the lock across SQLite calls. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/strmap.h"
#include "log/log.h"
#include "metrics-catalog.h"
#include "metrics-store.h"
#include "metrics-text.h"

#define KEY_SEP '\x01'

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

/* Adds delta under key in b (created as needed); -ENOMEM leaves b as it was. */
static int batch_add(MetricsBatch **bp, const char *key, double delta) {
        MetricsBatch *b = *bp;

        if (!b) {
                b = calloc(1, sizeof *b);
                if (!b || !(b->deltas = strmap_new(free))) {
                        free(b);
                        return -ENOMEM;
                }
                *bp = b;
        }
        double *v = strmap_get(b->deltas, key);
        if (v) {
                *v += delta;
                return 0;
        }
        if (b->n == b->cap) {
                size_t cap = b->cap ? 2 * b->cap : 16;
                char **k = realloc(b->keys, cap * sizeof *k);
                if (!k)
                        return -ENOMEM;
                b->keys = k;
                b->cap = cap;
        }
        char *kc = strdup(key);
        v = malloc(sizeof *v);
        if (!kc || !v || strmap_put(b->deltas, key, v) < 0) {
                free(kc);
                free(v);
                return -ENOMEM;
        }
        *v = delta;
        b->keys[b->n++] = kc;
        return 0;
}

static void add_locked(const char *name, const char *labels, double delta) {
        size_t nl = strlen(name), ll = labels ? strlen(labels) : 0;
        char key[nl + ll + 2];

        memcpy(key, name, nl);
        key[nl] = KEY_SEP;
        memcpy(key + nl + 1, labels ? labels : "", ll + 1);
        /* Out of memory loses a count, never a message. */
        (void) batch_add(&pending, key, delta);
}

void metrics_add(const char *name, const char *labels, double delta) {
        pthread_mutex_lock(&lock);
        add_locked(name, labels, delta);
        pthread_mutex_unlock(&lock);
}

void metrics_observe(const char *name, const char *labels, double value) {
        const MetricsFamily *f = metrics_family(name);
        size_t nl = strlen(name);
        char series[nl + 8], l[METRICS_LABELS_MAX + 64];

        if (!f || f->type != METRICS_HISTOGRAM)
                return;
        if (!labels)
                labels = "";
        pthread_mutex_lock(&lock);
        snprintf(series, sizeof series, "%s_bucket", name);
        for (size_t i = 0; i <= f->n_bounds; i++) {
                double le = i < f->n_bounds ? f->bounds[i] : INFINITY;
                if (value <= le && metrics_bucket_labels(l, sizeof l, labels, le) >= 0)
                        add_locked(series, l, 1);
        }
        snprintf(series, sizeof series, "%s_sum", name);
        add_locked(series, labels, value);
        snprintf(series, sizeof series, "%s_count", name);
        add_locked(series, labels, 1);
        pthread_mutex_unlock(&lock);
}

/* Puts b's deltas back into pending (a failed commit). */
static void merge_back(MetricsBatch *b) {
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < b->n; i++)
                (void) batch_add(&pending, b->keys[i], *(double *) strmap_get(b->deltas, b->keys[i]));
        pthread_mutex_unlock(&lock);
        batch_free(b);
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
                double delta = *(double *) strmap_get(b->deltas, b->keys[i]);
                char *sep = strchr(b->keys[i], KEY_SEP);
                *sep = '\0';
                r = queue_metric_add(q, b->keys[i], sep + 1, delta);
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
