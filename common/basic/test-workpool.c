/* test-workpool.c — unit tests for the worker pool: items run on workers (several at once, up to
 * the limit, threads started on demand), answers come back on the loop thread through sd-event,
 * each worker keeps its state, and freeing the pool cancels what did not run. */
#include <pthread.h>
#include <unistd.h>

#include "tests.h"
#include "workpool.h"

typedef struct Item {
        WorkItem w;
        int n;
        pthread_t ran_on;
        int state_seen;          /* items this worker ran before this one */
        bool done, cancelled;
} Item;

static pthread_mutex_t gate_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int inside, max_inside, gate_open = 1;
static int done_count, states_freed;
static pthread_t loop_thread;

static void run(WorkItem *w, void **state) {
        Item *it = (Item *) w;
        if (!*state)
                *state = calloc(1, sizeof(int));
        it->state_seen = (*(int *) *state)++;
        it->ran_on = pthread_self();
        pthread_mutex_lock(&gate_mutex);
        inside++;
        max_inside = inside > max_inside ? inside : max_inside;
        pthread_cond_broadcast(&gate_cond);
        while (!gate_open)
                pthread_cond_wait(&gate_cond, &gate_mutex);
        inside--;
        pthread_mutex_unlock(&gate_mutex);
        it->n *= 2;
}

static void done(WorkItem *w, bool cancelled) {
        Item *it = (Item *) w;
        CHECK(pthread_equal(pthread_self(), loop_thread));
        CHECK(!it->done);
        it->done = true;
        it->cancelled = cancelled;
        done_count++;
}

static void free_state(void *state) {
        __atomic_add_fetch(&states_freed, 1, __ATOMIC_SEQ_CST);
        free(state);
}

static void set_gate(int open) {
        pthread_mutex_lock(&gate_mutex);
        gate_open = open;
        pthread_cond_broadcast(&gate_cond);
        pthread_mutex_unlock(&gate_mutex);
}

/* Submits n items behind a closed gate and waits until the pool's three workers hold one each. */
static void submit_blocked(WorkPool *p, Item *v, int n) {
        set_gate(0);
        for (int i = 0; i < n; i++) {
                v[i] = (Item) { .w = { .run = run, .done = done }, .n = i };
                CHECK_INT(workpool_submit(p, &v[i].w), 0);
        }
        pthread_mutex_lock(&gate_mutex);
        while (inside < 3)
                pthread_cond_wait(&gate_cond, &gate_mutex);
        CHECK_INT(inside, 3);
        pthread_mutex_unlock(&gate_mutex);
}

static void run_until(sd_event *e, int count) {
        for (int i = 0; i < 10000 && done_count < count; i++)
                CHECK(sd_event_run(e, 100 * 1000) >= 0);
        CHECK_INT(done_count, count);
}

int main(void) {
        sd_event *e = NULL;
        WorkPool *p = NULL;
        loop_thread = pthread_self();
        CHECK_INT(sd_event_new(&e), 0);
        CHECK_INT(workpool_new(e, 3, free_state, &p), 0);
        CHECK_INT(workpool_threads(p), 0);   /* none until the first item */

        /* One at a time: one thread is enough, and it keeps its state. */
        Item a = { .w = { .run = run, .done = done }, .n = 21 };
        CHECK_INT(workpool_submit(p, &a.w), 0);
        run_until(e, 1);
        CHECK(a.done && !a.cancelled);
        CHECK_INT(a.n, 42);
        CHECK(!pthread_equal(a.ran_on, loop_thread));
        Item b = { .w = { .run = run, .done = done }, .n = 1 };
        CHECK_INT(workpool_submit(p, &b.w), 0);
        run_until(e, 2);
        CHECK_INT(workpool_threads(p), 1);
        CHECK_INT(b.state_seen, 1);

        /* Blocked items: three run at once (the limit), the rest wait for a free worker. */
        Item v[6];
        submit_blocked(p, v, 6);
        CHECK_INT(workpool_threads(p), 3);
        CHECK_INT(workpool_busy(p), 6);
        CHECK_INT(done_count, 2);   /* nothing delivered while the workers are blocked */
        set_gate(1);
        run_until(e, 8);
        CHECK_INT(max_inside, 3);
        for (int i = 0; i < 6; i++)
                CHECK(v[i].done && !v[i].cancelled && v[i].n == 2 * i);
        CHECK_INT(workpool_busy(p), 0);

        /* Freeing the pool: a running item finishes, queued ones are cancelled; done() runs once
         * for each, and every worker's state is freed. */
        Item w[5];
        submit_blocked(p, w, 5);
        set_gate(1);   /* the three running ones may finish; workpool_free() waits for them */
        p = workpool_free(p);
        CHECK_INT(done_count, 13);
        int cancelled = 0;
        for (int i = 0; i < 5; i++)
                cancelled += w[i].cancelled;
        CHECK(cancelled >= 2);   /* at least the two that never started */
        CHECK_INT(states_freed, 3);
        sd_event_unref(e);
        return 0;
}
