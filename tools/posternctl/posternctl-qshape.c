/* posternctl-qshape.c — `posternctl qshape [-s] [-n N] [QUEUE...]`: Postfix's qshape table, the
 * queue by domain and age, from queue.db:
 *
 *                        T  5 10 20 40 80 160 320 640 1280 1280+
 *                 TOTAL  6  2  0  0  0  0   0   1   0    0     3
 *           example.com  4  2  0  0  0  0   0   1   0    0     1
 *           example.net  2  0  0  0  0  0   0   0   0    0     2
 *
 * Columns: T (total), then the age buckets in minutes since arrival — "5" counts ages under 5
 * minutes, "10" from 5 to under 10, each bucket twice as long as the one before, up to 1280;
 * "1280+" is older. Rows: TOTAL, then the domains by their total, largest first (ties by name).
 * By default each unfinished recipient counts at its domain (the text after the last "@", in
 * lower case); -s counts each message at its sender's domain instead (MAILER-DAEMON for the
 * null sender), as qshape -s does. -n N shows only the top N domains.
 *
 * Postern's queue is one table, so qshape's queue names map onto recipient states:
 *   incoming   pending: never tried yet            active   deferred, retry time come
 *   deferred   deferred, waiting for its retry     hold     any unfinished, message on hold
 * With none named, incoming and active, as qshape's default. The pure parts (qshape_bucket,
 * QShape and its printing) are unit-tested (test-posternctl-qshape.c). */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "basic/strmap.h"
#include "queue/queue.h"
#include "posternctl.h"

static const unsigned bucket_minutes[QSHAPE_BUCKETS - 1] = { 5, 10, 20, 40, 80, 160, 320, 640, 1280 };

/* The column of an age: 0 for under 5 minutes ... QSHAPE_BUCKETS - 1 for 1280 minutes and more. */
size_t qshape_bucket(usec_t age_usec) {
        for (size_t i = 0; i < ELEMENTSOF(bucket_minutes); i++)
                if (age_usec < (usec_t) bucket_minutes[i] * 60 * USEC_PER_SEC)
                        return i;
        return QSHAPE_BUCKETS - 1;
}

void qshape_done(QShape *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->rows[i].key);
        free(s->rows);
        strmap_free(s->index);
        *s = (QShape) {};
}

/* Counts one recipient (or message) of the domain with this age. */
int qshape_add(QShape *s, const char *domain, usec_t age_usec) {
        size_t b = qshape_bucket(age_usec), i;

        if (!s->index && !(s->index = strmap_new(NULL)))
                return -ENOMEM;
        void *v = strmap_get(s->index, domain);
        if (v)
                i = (size_t) (uintptr_t) v - 1;
        else {
                if (s->n == s->allocated) {
                        size_t a = s->allocated ? s->allocated * 2 : 16;
                        QShapeRow *rows = reallocarray(s->rows, a, sizeof *rows);
                        if (!rows)
                                return -ENOMEM;
                        s->rows = rows;
                        s->allocated = a;
                }
                i = s->n;
                s->rows[i] = (QShapeRow) { .key = strdup(domain) };
                if (!s->rows[i].key)
                        return -ENOMEM;
                if (strmap_put(s->index, domain, (void *) (uintptr_t) (i + 1)) < 0) {
                        free(s->rows[i].key);
                        return -ENOMEM;
                }
                s->n++;
        }
        s->rows[i].counts[b]++;
        s->rows[i].total++;
        s->all.counts[b]++;
        s->all.total++;
        return 0;
}

static int row_cmp(const void *a, const void *b) {
        const QShapeRow *x = a, *y = b;
        if (x->total != y->total)
                return x->total > y->total ? -1 : 1;
        return strcmp(x->key, y->key);
}

static int digits(uint64_t v) {
        int d = 1;
        while (v >= 10) {
                v /= 10;
                d++;
        }
        return d;
}

static void print_row(FILE *f, int dw, const int *w, const char *name, const QShapeRow *r) {
        fprintf(f, "%*s %*llu", dw, name, w[0], (unsigned long long) r->total);
        for (size_t b = 0; b < QSHAPE_BUCKETS; b++)
                fprintf(f, " %*llu", w[b + 1], (unsigned long long) r->counts[b]);
        fputc('\n', f);
}

void qshape_sort(QShape *s) {
        if (s->n > 0)
                qsort(s->rows, s->n, sizeof *s->rows, row_cmp);
}

/* Prints the table: the header, TOTAL, then the top domains (top 0 = all). Sorts s->rows. */
void qshape_print(FILE *f, QShape *s, size_t top) {
        char head[QSHAPE_BUCKETS + 1][16];
        int w[QSHAPE_BUCKETS + 1], dw = (int) strlen("TOTAL");
        size_t shown = top > 0 && top < s->n ? top : s->n;

        qshape_sort(s);
        snprintf(head[0], sizeof head[0], "T");
        for (size_t b = 0; b < QSHAPE_BUCKETS; b++)
                snprintf(head[b + 1], sizeof head[b + 1], "%u%s",
                         bucket_minutes[b < QSHAPE_BUCKETS - 1 ? b : b - 1],
                         b < QSHAPE_BUCKETS - 1 ? "" : "+");
        /* Each column as wide as its header or its largest number (the TOTAL row's). */
        w[0] = MAX((int) strlen(head[0]), digits(s->all.total));
        for (size_t b = 0; b < QSHAPE_BUCKETS; b++)
                w[b + 1] = MAX((int) strlen(head[b + 1]), digits(s->all.counts[b]));
        for (size_t i = 0; i < shown; i++)
                dw = MAX(dw, (int) strlen(s->rows[i].key));

        fprintf(f, "%*s", dw, "");
        for (size_t c = 0; c <= QSHAPE_BUCKETS; c++)
                fprintf(f, " %*s", w[c], head[c]);
        fputc('\n', f);
        print_row(f, dw, w, "TOTAL", &s->all);
        for (size_t i = 0; i < shown; i++)
                print_row(f, dw, w, s->rows[i].key, &s->rows[i]);
}

/* The lower-case domain of an address (after its last "@"; the whole address without one). */
static char *domain_of(const char *address) {
        const char *at = strrchr(address, '@');
        char *d = strdup(at ? at + 1 : address);
        for (char *p = d; p && *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        return d;
}

typedef struct QShapeScan {
        QShape shape;
        unsigned queues;   /* QSHAPE_Q_* */
        bool senders;
        usec_t now;
} QShapeScan;

enum { QSHAPE_Q_INCOMING = 1, QSHAPE_Q_ACTIVE = 2, QSHAPE_Q_DEFERRED = 4, QSHAPE_Q_HOLD = 8 };

/* Which of qshape's queues a recipient is in (0: finished, in none). */
static unsigned recipient_queue(const QueueMessage *m, const QueueRecipient *r, usec_t now) {
        if (r->state != QUEUE_RCPT_PENDING && r->state != QUEUE_RCPT_DEFERRED)
                return 0;
        if (m->hold)
                return QSHAPE_Q_HOLD;
        if (r->state == QUEUE_RCPT_PENDING)
                return QSHAPE_Q_INCOMING;
        return r->next_attempt_usec <= now ? QSHAPE_Q_ACTIVE : QSHAPE_Q_DEFERRED;
}

static void scan_done(QShapeScan *s) {
        qshape_done(&s->shape);
}

static int scan_one(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *ud) {
        QShapeScan *s = ud;
        usec_t age = s->now > m->arrival_usec ? s->now - m->arrival_usec : 0;
        bool counted = false;

        for (size_t i = 0; i < n; i++) {
                if (!(recipient_queue(m, &rcpts[i], s->now) & s->queues))
                        continue;
                if (s->senders && counted)
                        break;   /* a message counts once, at its sender's domain */
                _cleanup_free_ char *d = s->senders ?
                        (isempty(m->sender) ? strdup("MAILER-DAEMON") : domain_of(m->sender)) :
                        domain_of(rcpts[i].address);
                if (!d || qshape_add(&s->shape, d, age) < 0)
                        return -ENOMEM;
                counted = true;
        }
        return 0;
}

static void help(void) {
        printf("Usage: posternctl qshape [-s] [-n N] [--queue-directory DIR] [QUEUE...]\n\n"
               "Shows the queue by domain and age like Postfix's qshape: recipients (-s: messages\n"
               "by sender domain) in age buckets of 5, 10, 20 ... 1280 minutes and older.\n"
               "QUEUE: incoming (never tried), active (retry due), deferred (waiting to retry),\n"
               "hold; default incoming and active.\n"
               "  -s   sender domains instead of recipient domains\n"
               "  -n N only the N largest domains\n");
}

int verb_qshape(int argc, char *argv[]) {
        static const struct option options[] = {
                { "queue-directory", required_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const struct { const char *name; unsigned bit; } names[] = {
                { "incoming", QSHAPE_Q_INCOMING }, { "active", QSHAPE_Q_ACTIVE },
                { "deferred", QSHAPE_Q_DEFERRED }, { "hold", QSHAPE_Q_HOLD },
        };
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_(scan_done) QShapeScan s = { .now = now_usec(CLOCK_REALTIME) };
        const char *dir = NULL;
        unsigned long top = 0;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "sn:q:h", options, NULL)) >= 0)
                switch (opt) {
                case 's': s.senders = true; break;
                case 'n': {
                        char *end;
                        errno = 0;
                        top = strtoul(optarg, &end, 10);
                        if (errno || *end || end == optarg || optarg[0] == '-') {
                                fprintf(stderr, "posternctl qshape: -n expects a number, not \"%s\"\n", optarg);
                                return EX_USAGE;
                        }
                        break;
                }
                case 'q': dir = optarg; break;
                case 'h': help(); return EX_OK;
                default: return EX_USAGE;
                }
        for (int i = optind; i < argc; i++) {
                size_t k;
                for (k = 0; k < ELEMENTSOF(names) && !streq(argv[i], names[k].name); k++)
                        ;
                if (k == ELEMENTSOF(names)) {
                        fprintf(stderr, "posternctl qshape: unknown queue \"%s\" (incoming, active, "
                                "deferred or hold)\n", argv[i]);
                        return EX_USAGE;
                }
                s.queues |= names[k].bit;
        }
        if (s.queues == 0)
                s.queues = QSHAPE_Q_INCOMING | QSHAPE_Q_ACTIVE;

        r = posternctl_queue_open("qshape", dir, &q);
        if (r != EX_OK)
                return r;
        r = q ? queue_list(q, scan_one, &s) : 0;
        if (r < 0) {
                fprintf(stderr, "posternctl qshape: reading the queue: %s (%s)\n", strerror(-r),
                        queue_last_error(q));
                return EX_SOFTWARE;
        }
        qshape_print(stdout, &s.shape, top);
        return EX_OK;
}
