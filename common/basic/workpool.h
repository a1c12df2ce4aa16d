/* workpool.h — a pool of worker threads for blocking calls (database lookups), answers handed
 * back to an sd-event loop.
 *
 * The loop thread submits a WorkItem; a worker calls item->run() (on the worker thread, with
 * that worker's private state slot), then the loop calls item->done() (on the loop thread, from
 * an eventfd). Threads start on demand, up to max_threads: a process that never submits starts
 * none. Each worker keeps *state across items (e.g. its own database connections) and frees it
 * with free_state() when the pool stops. Items run in submission order as workers become free.
 *
 * Only the loop thread calls workpool_submit() and workpool_free(). workpool_free() waits for
 * the running items, then calls done() with cancelled = true for every item that did not run
 * or whose answer was not yet delivered: done() always runs exactly once per item. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

typedef struct WorkItem WorkItem;
struct WorkItem {
        WorkItem *next;   /* the pool's */
        void (*run)(WorkItem *item, void **state);
        void (*done)(WorkItem *item, bool cancelled);
};

typedef struct WorkPool WorkPool;

int workpool_new(sd_event *event, unsigned max_threads, void (*free_state)(void *state), WorkPool **ret);
WorkPool *workpool_free(WorkPool *p);
/* Queues item; a thread is started when every running one is busy (and max_threads allows).
 * <0 only when not even one thread could be started (the item was not queued). */
int workpool_submit(WorkPool *p, WorkItem *item);
/* Threads started so far, and items queued or running (for tests and metrics). */
unsigned workpool_threads(WorkPool *p);
size_t workpool_busy(WorkPool *p);
