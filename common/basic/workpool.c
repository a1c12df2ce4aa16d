/* workpool.c — worker threads for blocking calls, see workpool.h.
 *
 * One mutex guards the queue of items to run (todo), the list of answered items (answered) and
 * the counters; workers sleep on a condition variable; an answered item is announced to the loop
 * by writing the eventfd, which the loop drains and then runs done() for the whole list. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "macro.h"
#include "workpool.h"

struct WorkPool {
        pthread_mutex_t mutex;
        pthread_cond_t wake;
        WorkItem *todo_first, *todo_last;
        WorkItem *answered;             /* newest first; reversed when delivered */
        size_t queued, running;
        unsigned n_threads, max_threads, idle;
        pthread_t *threads;
        bool stop;
        int efd;
        sd_event_source *source;
        void (*free_state)(void *state);
};

static void *work_loop(void *arg) {
        WorkPool *p = arg;
        void *state = NULL;

        pthread_mutex_lock(&p->mutex);
        for (;;) {
                if (!p->todo_first) {
                        if (p->stop)
                                break;
                        p->idle++;
                        pthread_cond_wait(&p->wake, &p->mutex);
                        p->idle--;
                        continue;
                }
                WorkItem *it = p->todo_first;
                p->todo_first = it->next;
                if (!p->todo_first)
                        p->todo_last = NULL;
                p->queued--;
                p->running++;
                pthread_mutex_unlock(&p->mutex);

                it->run(it, &state);

                pthread_mutex_lock(&p->mutex);
                p->running--;
                it->next = p->answered;
                p->answered = it;
                uint64_t one = 1;
                (void) !write(p->efd, &one, sizeof one);
        }
        pthread_mutex_unlock(&p->mutex);
        if (state && p->free_state)
                p->free_state(state);
        return NULL;
}

/* Takes the answered items, oldest first. */
static WorkItem *take_answered(WorkPool *p) {
        pthread_mutex_lock(&p->mutex);
        WorkItem *l = p->answered, *rev = NULL;
        p->answered = NULL;
        pthread_mutex_unlock(&p->mutex);
        while (l) {
                WorkItem *n = l->next;
                l->next = rev;
                rev = l;
                l = n;
        }
        return rev;
}

static void deliver(WorkItem *l, bool cancelled) {
        while (l) {
                WorkItem *n = l->next;
                l->next = NULL;
                l->done(l, cancelled);
                l = n;
        }
}

static int on_answer(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        uint64_t v;
        (void) !read(fd, &v, sizeof v);
        deliver(take_answered(userdata), false);
        return 0;
}

int workpool_new(sd_event *event, unsigned max_threads, void (*free_state)(void *state), WorkPool **ret) {
        WorkPool *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->max_threads = MAX(max_threads, 1u);
        p->free_state = free_state;
        p->threads = calloc(p->max_threads, sizeof(pthread_t));
        p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = !p->threads ? -ENOMEM : p->efd < 0 ? -errno : 0;
        if (r == 0)
                r = sd_event_add_io(event, &p->source, p->efd, EPOLLIN, on_answer, p);
        if (r < 0) {
                if (p->efd >= 0)
                        close(p->efd);
                free(p->threads);
                free(p);
                return r;
        }
        pthread_mutex_init(&p->mutex, NULL);
        pthread_cond_init(&p->wake, NULL);
        *ret = p;
        return 0;
}

WorkPool *workpool_free(WorkPool *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->mutex);
        WorkItem *todo = p->todo_first;
        p->todo_first = p->todo_last = NULL;
        p->queued = 0;
        p->stop = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mutex);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        deliver(take_answered(p), true);
        deliver(todo, true);
        sd_event_source_disable_unref(p->source);
        close(p->efd);
        pthread_mutex_destroy(&p->mutex);
        pthread_cond_destroy(&p->wake);
        free(p->threads);
        free(p);
        return NULL;
}

int workpool_submit(WorkPool *p, WorkItem *item) {
        item->next = NULL;
        pthread_mutex_lock(&p->mutex);
        if (p->idle <= p->queued && p->n_threads < p->max_threads &&
            pthread_create(&p->threads[p->n_threads], NULL, work_loop, p) == 0)
                p->n_threads++;
        if (p->n_threads == 0) {
                pthread_mutex_unlock(&p->mutex);
                return -EAGAIN;
        }
        if (p->todo_last)
                p->todo_last->next = item;
        else
                p->todo_first = item;
        p->todo_last = item;
        p->queued++;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->mutex);
        return 0;
}

unsigned workpool_threads(WorkPool *p) {
        pthread_mutex_lock(&p->mutex);
        unsigned n = p->n_threads;
        pthread_mutex_unlock(&p->mutex);
        return n;
}

size_t workpool_busy(WorkPool *p) {
        pthread_mutex_lock(&p->mutex);
        size_t n = p->queued + p->running;
        pthread_mutex_unlock(&p->mutex);
        return n;
}
