/* table-async.c — server table lookups on worker threads, answered through per-session memos
 * (see table-async.h). Each worker keeps a map spec -> its own Table instance; a lookup job
 * carries the memo (referenced), the generation of the memo it was asked for, and comes back
 * with the answer and the server's reason of a failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/strmap.h"
#include "../basic/workpool.h"
#include "table-async.h"

typedef struct MemoEntry {
        bool answered;
        int r;
        char *value;
} MemoEntry;

struct TableMemo {
        unsigned refs;
        unsigned generation;
        StrMap *answers;        /* "spec\nkey" -> MemoEntry */
        size_t pending;         /* lookups of this generation on their way */
        bool may_wait, sent;    /* of the current bracket */
        void (*ready)(void *userdata);
        void *userdata;
};

typedef struct LookupJob {
        WorkItem w;
        TableMemo *memo;
        unsigned generation;
        char *spec, *key, *memo_key;
        TableFlags flags;
        int r;
        char *value, *reason;
} LookupJob;

static WorkPool *pool;
static _Thread_local TableMemo *current;

static void entry_free(void *v) {
        MemoEntry *e = v;
        if (e)
                free(e->value);
        free(e);
}

static void worker_tables_free(void *state) {
        strmap_free(state);
}

static void worker_table_free(void *t) {
        table_free(t);
}

int table_async_start(sd_event *event, unsigned max_threads) {
        if (pool)
                return 0;
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
        bool sent = m->sent;
        m->sent = m->may_wait = false;
        return sent && m->pending > 0;
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

static void job_free(LookupJob *j) {
        table_memo_unref(j->memo);
        free(j->spec);
        free(j->key);
        free(j->memo_key);
        free(j->value);
        free(j->reason);
        free(j);
}

/* On a worker: its own instance of the table answers. */
static void job_run(WorkItem *w, void **state) {
        LookupJob *j = (LookupJob *) w;
        if (!*state && !(*state = strmap_new(worker_table_free))) {
                j->r = -ENOMEM;
                return;
        }
        Table *t = strmap_get(*state, j->spec);
        if (!t) {
                j->r = table_open(j->spec, j->flags, &t, &j->reason);
                if (j->r < 0)
                        return;
                if (strmap_put(*state, j->spec, t) < 0) {
                        table_free(t);
                        j->r = -ENOMEM;
                        return;
                }
        }
        j->r = table_lookup_server(t, j->key, &j->value, &j->reason);
}

/* On the loop: the answer goes into the memo, unless the memo moved on (a new transaction). */
static void job_done(WorkItem *w, bool cancelled) {
        LookupJob *j = (LookupJob *) w;
        TableMemo *m = j->memo;
        if (!cancelled && m->generation == j->generation) {
                if (j->r < 0)
                        table_report_failure(j->spec, j->reason);
                MemoEntry *e = strmap_get(m->answers, j->memo_key);
                if (e) {
                        e->answered = true;
                        e->r = j->r == -EINPROGRESS ? -EIO : j->r;
                        e->value = j->r > 0 ? TAKE_PTR(j->value) : NULL;
                }
                if (m->pending > 0 && --m->pending == 0 && m->ready) {
                        void (*ready)(void *) = m->ready;
                        void *userdata = m->userdata;
                        table_memo_unwait(m);
                        job_free(j);   /* ready() may free the memo's last other reference */
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

static int memo_send(TableMemo *m, const char *spec, TableFlags flags, const char *key, char *mk) {
        MemoEntry *e = calloc(1, sizeof *e);
        LookupJob *j = calloc(1, sizeof *j);
        if (!e || !j || !(j->spec = strdup(spec)) || !(j->key = strdup(key)) || !(j->memo_key = strdup(mk)))
                goto oom;
        if (strmap_put(m->answers, mk, e) < 0)
                goto oom;
        j->w = (WorkItem) { .run = job_run, .done = job_done };
        j->memo = table_memo_ref(m);
        j->generation = m->generation;
        j->flags = flags;
        int r = workpool_submit(pool, &j->w);
        if (r < 0) {
                e->answered = true;   /* no thread: the lookup fails as a temporary error */
                e->r = r;
                job_free(j);
                return r;
        }
        m->pending++;
        m->sent = true;
        return -EINPROGRESS;
oom:
        free(e);
        if (j)
                job_free(j);
        return -ENOMEM;
}

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
        if (e && !e->answered) {
                m->sent = true;   /* asked by an earlier run and still on its way */
                *ret_r = -EINPROGRESS;
                return true;
        }
        if (e) {
                *ret_r = e->r;
                if (e->r > 0 && ret_value && !(*ret_value = strdup(e->value)))
                        *ret_r = -ENOMEM;
                return true;
        }
        if (!m->may_wait || !pool)
                return false;
        *ret_r = memo_send(m, spec, flags, key, mk);
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
