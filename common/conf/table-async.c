/* table-async.c — server table lookups on worker threads, answered through per-session memos
 * (see table-async.h). Each worker keeps a map spec -> its own Table instance; a lookup job
 * carries the memo (referenced), the generation of the memo it was asked for, and comes back
 * with the answer and the server's reason of a failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/strmap.h"
#include "../basic/workpool.h"
#include "table-async.h"
#include "table-sql.h"

typedef struct LookupJob LookupJob;
static void job_free(LookupJob *j);
static void memo_send(TableMemo *m);

typedef struct MemoEntry {
        bool answered;
        bool pending;           /* sent, not answered yet; neither: asked under a wrong guess */
        int r;
        char *value;
} MemoEntry;

struct TableMemo {
        unsigned refs;
        unsigned generation;
        StrMap *answers;        /* "spec\nkey" -> MemoEntry */
        size_t pending;         /* jobs of this generation on their way */
        bool may_wait, sent;    /* of the current bracket */
        LookupJob *batch;       /* the current bracket's keys, sent at table_memo_end() */
        void (*ready)(void *userdata);
        void *userdata;
};

/* One key of a job; the answer comes back in r, value and reason. */
typedef struct LookupKey {
        char *spec, *key, *memo_key;
        TableFlags flags;
        int r;
        bool skipped;           /* not looked up: an earlier key of the job was found or failed */
        char *value, *reason;
} LookupKey;

/* The keys one run of the caller's code asked for, looked up one after the other by one worker. */
struct LookupJob {
        WorkItem w;
        TableMemo *memo;
        unsigned generation;
        unsigned opened;        /* opened_generation when it was sent */
        LookupKey *keys;
        size_t n;
};

/* Keys one run may send at once; more make the lookup answer -EINPROGRESS (the run stops). */
#define BATCH_MAX 16

/* A worker's own instances of the tables it served, of one opened_generation. */
typedef struct WorkerTables {
        StrMap *tables;
        unsigned opened;
} WorkerTables;

static WorkPool *pool;
static _Thread_local TableMemo *current;
static _Thread_local bool on_worker;
static unsigned opened_generation;      /* atomic: server tables opened outside the workers */

void table_async_opened(void) {
        if (!on_worker)
                __atomic_add_fetch(&opened_generation, 1, __ATOMIC_RELAXED);
}

static void entry_free(void *v) {
        MemoEntry *e = v;
        if (e)
                free(e->value);
        free(e);
}

static void worker_tables_free(void *state) {
        WorkerTables *w = state;
        strmap_free(w->tables);
        free(w);
}

static void worker_table_free(void *t) {
        table_free(t);
}

int table_async_start(sd_event *event, unsigned max_threads) {
        if (pool)
                return 0;
        table_mysql_threads_init();
        return workpool_new(event, max_threads, worker_tables_free, &pool);
}

void table_async_stop(void) {
        pool = workpool_free(pool);
}

TableMemo *table_memo_new(void) {
        TableMemo *m = calloc(1, sizeof *m);
        if (!m || !(m->answers = strmap_new(entry_free))) {
                free(m);
                return NULL;
        }
        m->refs = 1;
        return m;
}

TableMemo *table_memo_ref(TableMemo *m) {
        if (m)
                m->refs++;
        return m;
}

TableMemo *table_memo_unref(TableMemo *m) {
        if (!m || --m->refs > 0)
                return NULL;
        if (current == m)
                current = NULL;
        job_free(m->batch);
        strmap_free(m->answers);
        free(m);
        return NULL;
}

void table_memo_clear(TableMemo *m) {
        if (!m)
                return;
        strmap_clear(m->answers);
        m->generation++;
        m->pending = 0;
        m->ready = NULL;
        m->userdata = NULL;
}

void table_memo_begin(TableMemo *m, bool may_wait) {
        current = m;
        if (m) {
                m->may_wait = may_wait;
                m->sent = false;
        }
}

bool table_memo_end(TableMemo *m) {
        current = NULL;
        if (!m)
                return false;
        memo_send(m);
        bool sent = m->sent;
        m->sent = m->may_wait = false;
        return sent;   /* pending == 0: answered already (failed), run again at once */
}

bool table_memo_guessing(void) {
        return current && current->sent;
}

bool table_memo_wait(TableMemo *m, void (*ready)(void *userdata), void *userdata) {
        if (!m || m->pending == 0)
                return false;
        m->ready = ready;
        m->userdata = userdata;
        return true;
}

void table_memo_unwait(TableMemo *m) {
        if (!m)
                return;
        m->ready = NULL;
        m->userdata = NULL;
}

TableMemo *table_memo_drop(TableMemo *m) {
        table_memo_unwait(m);
        return table_memo_unref(m);
}

static void job_free(LookupJob *j) {
        if (!j)
                return;
        table_memo_unref(j->memo);
        for (size_t i = 0; i < j->n; i++) {
                free(j->keys[i].spec);
                free(j->keys[i].key);
                free(j->keys[i].memo_key);
                free(j->keys[i].value);
                free(j->keys[i].reason);
        }
        free(j->keys);
        free(j);
}

/* On a worker: its own instance of each table answers. */
static void key_run(LookupKey *k, StrMap *tables) {
        Table *t = strmap_get(tables, k->spec);
        if (!t) {
                k->r = table_open(k->spec, k->flags, &t, &k->reason);
                if (k->r < 0)
                        return;
                if (strmap_put(tables, k->spec, t) < 0) {
                        table_free(t);
                        k->r = -ENOMEM;
                        return;
                }
        }
        k->r = table_lookup_server(t, k->key, &k->value, &k->reason);
}

static void job_run(WorkItem *w, void **state) {
        LookupJob *j = (LookupJob *) w;
        WorkerTables *wt = *state;
        on_worker = true;
        if (!wt && (wt = calloc(1, sizeof *wt)) && !(wt->tables = strmap_new(worker_table_free))) {
                free(wt);
                wt = NULL;
        }
        *state = wt;
        if (wt && wt->opened != j->opened) {
                strmap_clear(wt->tables);   /* the settings were read again: so are the tables */
                wt->opened = j->opened;
        }
        /* The run asked for key i + 1 taking key i for "not found" (table_memo_lookup()): once
         * a key is found or fails, the keys after it were guesses the run will not need. */
        bool guessed_wrong = false;
        for (size_t i = 0; i < j->n; i++) {
                LookupKey *k = &j->keys[i];
                if (guessed_wrong)
                        k->skipped = true;
                else if (wt)
                        key_run(k, wt->tables);
                else
                        k->r = -ENOMEM;
                guessed_wrong = guessed_wrong || k->r != 0;
        }
}

/* Stores one answer in the memo (whose entry the send made). */
static void key_answer(TableMemo *m, LookupKey *k) {
        MemoEntry *e = strmap_get(m->answers, k->memo_key);
        if (!e || e->answered)
                return;
        e->pending = false;
        if (k->skipped)
                return;   /* asked again if a run needs it */
        if (k->r < 0)
                table_report_failure(k->spec, k->reason);
        e->answered = true;
        e->r = k->r == -EINPROGRESS ? -EIO : k->r;
        e->value = k->r > 0 ? TAKE_PTR(k->value) : NULL;
        if (k->r > 0 && !e->value)
                e->r = -ENOMEM;
}

/* On the loop: the answers go into the memo, unless the memo moved on (a new transaction). */
static void job_done(WorkItem *w, bool cancelled) {
        LookupJob *j = (LookupJob *) w;
        TableMemo *m = j->memo;
        if (!cancelled && m->generation == j->generation) {
                for (size_t i = 0; i < j->n; i++)
                        key_answer(m, &j->keys[i]);
                if (m->pending > 0 && --m->pending == 0 && m->ready) {
                        void (*ready)(void *) = m->ready;
                        void *userdata = m->userdata;
                        table_memo_unwait(m);
                        job_free(j);   /* ready() may drop the memo's last other reference */
                        ready(userdata);
                        return;
                }
        }
        job_free(j);
}

static char *memo_key(const char *spec, const char *key) {
        char *k = NULL;
        return asprintf(&k, "%s\n%s", spec, key) < 0 ? NULL : k;
}

/* Adds key to the bracket's batch, with an unanswered memo entry. */
static int memo_add(TableMemo *m, const char *spec, TableFlags flags, const char *key, const char *mk) {
        if (!m->batch) {
                LookupJob *j = calloc(1, sizeof(LookupJob));
                if (!j || !(j->keys = calloc(BATCH_MAX, sizeof(LookupKey)))) {
                        free(j);
                        return -ENOMEM;
                }
                m->batch = j;
                m->batch->w = (WorkItem) { .run = job_run, .done = job_done };
        }
        LookupJob *j = m->batch;
        if (j->n >= BATCH_MAX)
                return -EINPROGRESS;
        MemoEntry *old = strmap_get(m->answers, mk), *e = old ? old : calloc(1, sizeof *e);
        LookupKey *k = &j->keys[j->n];
        *k = (LookupKey) { .flags = flags };
        if (!e || !(k->spec = strdup(spec)) || !(k->key = strdup(key)) || !(k->memo_key = strdup(mk)) ||
            (!old && strmap_put(m->answers, mk, e) < 0)) {
                if (!old)
                        free(e);
                free(k->spec);
                free(k->key);
                free(k->memo_key);
                *k = (LookupKey) {};
                return -ENOMEM;
        }
        e->pending = true;
        j->n++;
        return 0;
}

/* Sends the bracket's batch; a pool that cannot start a thread fails its keys at once. */
static void memo_send(TableMemo *m) {
        LookupJob *j = TAKE_PTR(m->batch);
        if (!j)
                return;
        if (j->n == 0) {
                job_free(j);
                return;
        }
        j->memo = table_memo_ref(m);
        j->generation = m->generation;
        j->opened = __atomic_load_n(&opened_generation, __ATOMIC_RELAXED);
        int r = workpool_submit(pool, &j->w);
        if (r < 0) {
                for (size_t i = 0; i < j->n; i++) {
                        j->keys[i].r = r;
                        key_answer(m, &j->keys[i]);
                }
                job_free(j);
                return;
        }
        m->pending++;
}

/* With may_wait, a key the memo does not have yet is sent and answers "not found" for now: the
 * run goes on as if, to find the other keys it needs (the next key of an address lookup, the
 * next table), and they all go to one worker at once, which looks them up in order and stops at
 * the first one found (or failing): the keys after it were asked under a wrong guess. The caller
 * throws the run's decisions away and runs again with the answers; a key it still needs is sent
 * again. So an RCPT usually costs one round trip to the workers and no query that the same
 * lookups one at a time would not have made. */
bool table_memo_lookup(const char *spec, TableFlags flags, const char *key, int *ret_r, char **ret_value) {
        TableMemo *m = current;
        if (!m)
                return false;
        _cleanup_free_ char *mk = memo_key(spec, key);
        if (!mk) {
                *ret_r = -ENOMEM;
                return true;
        }
        MemoEntry *e = strmap_get(m->answers, mk);
        if (e && e->answered) {
                *ret_r = e->r;
                if (e->r > 0 && ret_value && !(*ret_value = strdup(e->value)))
                        *ret_r = -ENOMEM;
                return true;
        }
        if (!m->may_wait || !pool)
                return false;   /* looked up on the caller's thread, then noted */
        if (!(e && e->pending)) {
                int r = memo_add(m, spec, flags, key, mk);
                if (r < 0) {
                        m->sent = m->sent || r == -EINPROGRESS;   /* a full batch: the run stops */
                        *ret_r = r;
                        return true;
                }
        }
        /* sent now, or earlier in this run (a run waits until every answer is there) */
        m->sent = true;
        *ret_r = 0;
        return true;
}

void table_memo_note(const char *spec, const char *key, int r, const char *value) {
        TableMemo *m = current;
        if (!m || r == -EINPROGRESS || (r > 0 && !value))
                return;
        _cleanup_free_ char *mk = memo_key(spec, key);
        MemoEntry *e = mk ? calloc(1, sizeof *e) : NULL;
        if (!e || (r > 0 && !(e->value = strdup(value))) || strmap_put(m->answers, mk, e) < 0) {
                entry_free(e);
                return;   /* not remembered: asked again next time */
        }
        e->answered = true;
        e->r = r;
}
