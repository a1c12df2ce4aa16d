/* metrics-scrape.c — one scrape: opens queue.db read-only, computes the queue gauges from the
 * messages (postfix_showq_* histograms and postern_queue_recipients, by queue) and prints the
 * counters the daemons stored (queue_metric_list()), every family in the catalogue's order.
 *
 * Queues are posternctl qshape's names for Postern's one table, decided per message: hold (on
 * hold), incoming (a recipient never tried), active (a deferred recipient whose retry time came),
 * deferred (the rest that is unfinished). Counters without labels print 0 before their first
 * event; histograms print every bucket of each label set they have. When the queue cannot be
 * read, postfix_up is 0 and only the families are printed. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "basic/strmap.h"
#include "metrics.h"
#include "queue/queue.h"

static const char *const queue_names[] = { "incoming", "active", "deferred", "hold" };
#define N_QUEUES 4
#define MAX_BOUNDS 16

typedef struct QueueHist {
        double size[MAX_BOUNDS + 1], size_sum;
        double age[MAX_BOUNDS + 1], age_sum;
        double recipients;
} QueueHist;

typedef struct Scrape {
        usec_t now;
        const MetricsFamily *size_f, *age_f;
        QueueHist q[N_QUEUES];
        /* stored counters */
        StrMap *index;           /* "name\x01labels" -> row number + 1 */
        struct Row { char *name, *labels; double value; } *rows;
        size_t n_rows, cap_rows;
} Scrape;

static void observe(const MetricsFamily *f, double *cum, double *sum, double v) {
        for (size_t i = 0; i <= f->n_bounds; i++)
                if (i == f->n_bounds || v <= f->bounds[i])
                        cum[i]++;
        *sum += v;
}

static int on_message(const QueueMetricMessage *m, void *ud) {
        Scrape *s = ud;
        int k;

        if (m->hold)
                k = 3;
        else if (m->has_pending)
                k = 0;
        else if (m->has_due)
                k = 1;
        else if (m->unfinished > 0)
                k = 2;
        else
                return 0;   /* finished, waiting for qmgr's removal */
        double age = m->arrival_usec < s->now ? (double) (s->now - m->arrival_usec) / USEC_PER_SEC : 0;
        observe(s->size_f, s->q[k].size, &s->q[k].size_sum, (double) m->size);
        observe(s->age_f, s->q[k].age, &s->q[k].age_sum, age);
        s->q[k].recipients += m->unfinished;
        return 0;
}

static int on_counter(const char *name, const char *labels, double value, void *ud) {
        Scrape *s = ud;

        if (s->n_rows == s->cap_rows) {
                size_t cap = s->cap_rows ? 2 * s->cap_rows : 64;
                struct Row *r = realloc(s->rows, cap * sizeof *r);
                if (!r)
                        return -ENOMEM;
                s->rows = r;
                s->cap_rows = cap;
        }
        struct Row *row = &s->rows[s->n_rows];
        size_t nl = strlen(name), ll = strlen(labels);
        char key[nl + ll + 2];
        memcpy(key, name, nl);
        key[nl] = '\x01';
        memcpy(key + nl + 1, labels, ll + 1);
        row->name = strdup(name);
        row->labels = strdup(labels);
        row->value = value;
        if (!row->name || !row->labels || strmap_put(s->index, key, (void *) (uintptr_t) (s->n_rows + 1)) < 0) {
                free(row->name);
                free(row->labels);
                return -ENOMEM;
        }
        s->n_rows++;
        return 0;
}

/* The stored value of name{labels}, 0 when there is none. */
static double stored(Scrape *s, const char *name, const char *labels) {
        size_t nl = strlen(name), ll = strlen(labels);
        char key[nl + ll + 2];
        memcpy(key, name, nl);
        key[nl] = '\x01';
        memcpy(key + nl + 1, labels, ll + 1);
        uintptr_t i = (uintptr_t) strmap_get(s->index, key);
        return i ? s->rows[i - 1].value : 0;
}

static bool has_suffix(const char *name, const char *family, const char *suffix) {
        size_t fl = strlen(family);
        return strncmp(name, family, fl) == 0 && streq(name + fl, suffix);
}

static int print_stored(Scrape *s, const MetricsFamily *f, StrBuf *b) {
        int r = 0;
        bool any = false;

        if (f->type != METRICS_HISTOGRAM) {
                for (size_t i = 0; r >= 0 && i < s->n_rows; i++)
                        if (streq(s->rows[i].name, f->name)) {
                                r = metrics_text_sample(b, f->name, NULL, s->rows[i].labels, s->rows[i].value);
                                any = true;
                        }
                if (r >= 0 && !any && isempty(f->labels))
                        r = metrics_text_sample(b, f->name, NULL, "", 0);
                return r;
        }
        /* A histogram: each label set that has a _count. */
        char bucket[strlen(f->name) + 8], l[METRICS_LABELS_MAX + 64];
        snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
        for (size_t i = 0; r >= 0 && i < s->n_rows; i++) {
                if (!has_suffix(s->rows[i].name, f->name, "_count"))
                        continue;
                const char *labels = s->rows[i].labels;
                double cum[MAX_BOUNDS + 1];
                for (size_t k = 0; k <= f->n_bounds && k <= MAX_BOUNDS; k++) {
                        (void) metrics_bucket_labels(l, sizeof l, labels, k < f->n_bounds ? f->bounds[k] : INFINITY);
                        cum[k] = stored(s, bucket, l);
                }
                char sum[strlen(f->name) + 8];
                snprintf(sum, sizeof sum, "%s_sum", f->name);
                r = metrics_text_histogram(b, f, labels, cum, stored(s, sum, labels));
        }
        return r;
}

static int print_queue(Scrape *s, const MetricsFamily *f, StrBuf *b) {
        char l[64];
        int r = 0;

        for (size_t k = 0; r >= 0 && k < N_QUEUES; k++) {
                (void) metrics_labels(l, sizeof l, "queue", queue_names[k], NULL);
                if (f == s->size_f)
                        r = metrics_text_histogram(b, f, l, s->q[k].size, s->q[k].size_sum);
                else if (f == s->age_f)
                        r = metrics_text_histogram(b, f, l, s->q[k].age, s->q[k].age_sum);
                else
                        r = metrics_text_sample(b, f->name, NULL, l, s->q[k].recipients);
        }
        return r;
}

int metrics_scrape(const char *queue_directory, usec_t now_usec, MetricsFormat fmt, StrBuf *b) {
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_(strmap_freep) StrMap *index = strmap_new(NULL);
        Scrape s = { .now = now_usec, .size_f = metrics_family(METRIC_SHOWQ_SIZE),
                     .age_f = metrics_family(METRIC_SHOWQ_AGE), .index = index };
        int r;

        if (!index)
                return -ENOMEM;
        if (s.size_f->n_bounds > MAX_BOUNDS || s.age_f->n_bounds > MAX_BOUNDS)
                return -EINVAL;
        r = queue_open(queue_directory, QUEUE_OPEN_READONLY, &q);
        if (r >= 0)
                r = queue_metric_messages(q, now_usec, on_message, &s);
        if (r >= 0)
                r = queue_metric_list(q, on_counter, &s);
        if (r == -ENOMEM)
                goto out;
        bool up = r >= 0;

        r = 0;
        for (const MetricsFamily *f = metrics_families; r >= 0 && f->name; f++) {
                r = metrics_text_family(b, fmt, f);
                if (r < 0)
                        break;
                if (streq(f->name, METRIC_UP))
                        r = metrics_text_sample(b, f->name, NULL, "", up);
                else if (!up)
                        continue;
                else if (f == s.size_f || f == s.age_f || streq(f->name, METRIC_QUEUE_RECIPIENTS))
                        r = print_queue(&s, f, b);
                else
                        r = print_stored(&s, f, b);
        }
        if (r >= 0)
                r = metrics_text_eof(b, fmt);
out:
        for (size_t i = 0; i < s.n_rows; i++) {
                free(s.rows[i].name);
                free(s.rows[i].labels);
        }
        free(s.rows);
        return r;
}
