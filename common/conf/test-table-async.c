/* test-table-async.c — unit tests for lookups through a TableMemo and the workers (table-async.h)
 * against a socketmap server on a unix socket (a thread per connection, answering from a fixed
 * list and logging the keys asked): a run that needs keys the memo lacks gets "not found" for
 * now and sends them as one job; the next run reads the answers; a job stops at the first key
 * found (later ones were guesses); a cleared memo drops answers still on their way, a dropped
 * one is freed by its last job without a call; without
 * may_wait lookups run on the caller's thread and are noted; a server's TEMP is an error. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/tests.h"
#include "conf/table-async.h"
#include "conf/table.h"

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static char asked[64][32];
static int n_asked;

static int asked_count(const char *key) {
        int n = 0;
        pthread_mutex_lock(&log_mutex);
        for (int i = 0; i < n_asked; i++)
                n += strcmp(asked[i], key) == 0;
        pthread_mutex_unlock(&log_mutex);
        return n;
}

static const char *answer(const char *key) {
        if (strcmp(key, "a") == 0)
                return "OK A";
        if (strcmp(key, "t") == 0)
                return "TEMP database busy";
        return "NOTFOUND ";
}

static void *serve(void *arg) {
        int fd = (int) (intptr_t) arg;
        char buf[512];
        size_t have = 0;
        for (;;) {
                ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
                if (n <= 0)
                        break;
                have += (size_t) n;
                buf[have] = '\0';
                char *colon = strchr(buf, ':');
                if (!colon)
                        continue;
                size_t len = strtoul(buf, NULL, 10), head = (size_t) (colon + 1 - buf);
                if (have < head + len + 1)
                        continue;
                char req[256];
                snprintf(req, sizeof req, "%.*s", (int) len, colon + 1);
                const char *key = strchr(req, ' ') ? strchr(req, ' ') + 1 : req;
                pthread_mutex_lock(&log_mutex);
                if (n_asked < 64)
                        snprintf(asked[n_asked++], sizeof asked[0], "%.31s", key);
                pthread_mutex_unlock(&log_mutex);
                const char *a = answer(key);
                char out[300];
                int l = snprintf(out, sizeof out, "%zu:%s,", strlen(a), a);
                if (write(fd, out, (size_t) l) != l)
                        break;
                memmove(buf, buf + head + len + 1, have - head - len - 1);
                have -= head + len + 1;
        }
        close(fd);
        return NULL;
}

static void *accept_loop(void *arg) {
        int lfd = (int) (intptr_t) arg;
        for (;;) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0)
                        return NULL;
                pthread_t t;
                CHECK_INT(pthread_create(&t, NULL, serve, (void *) (intptr_t) fd), 0);
                pthread_detach(t);
        }
}

static bool ready_called;
static void ready(void *userdata) {
        CHECK(!ready_called);
        ready_called = true;
        CHECK(userdata == &ready_called);
}

static void wait_ready(sd_event *e) {
        for (int i = 0; i < 1000 && !ready_called; i++)
                CHECK(sd_event_run(e, 100 * 1000) >= 0);
        CHECK(ready_called);
        ready_called = false;
}

static int reported;
static void on_error(const char *spec, const char *reason, void *userdata) {
        CHECK(strstr(reason, "database busy"));
        reported++;
}

/* One run: looks up key; returns the answer, *ret_wait whether the run must wait. */
static int run(TableMemo *m, Table *t, bool may_wait, const char *key, char **ret_value, bool *ret_wait) {
        table_memo_begin(m, may_wait);
        int r = table_lookup(t, key, ret_value);
        *ret_wait = table_memo_end(m);
        return r;
}

/* A run that needs k1 then k2, neither in the memo: both answer "not found" for now and go to
 * the workers in one job; returns when it has answered. */
static void guess_two(sd_event *e, TableMemo *m, Table *t, const char *k1, const char *k2) {
        char *v = NULL;
        table_memo_begin(m, true);
        CHECK_INT(table_lookup(t, k1, &v), 0);
        CHECK(!v);
        CHECK_INT(table_lookup(t, k2, NULL), 0);
        CHECK(table_memo_end(m));
        CHECK(table_memo_wait(m, ready, &ready_called));
        wait_ready(e);
}

int main(void) {
        char dir[] = "/tmp/test-table-async-XXXXXX", path[128], spec[200];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/map.sock", dir);
        snprintf(spec, sizeof spec, "socketmap:unix:%s:virtual", path);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
        CHECK_INT(bind(lfd, (struct sockaddr *) &sa, sizeof sa), 0);
        CHECK_INT(listen(lfd, 16), 0);
        pthread_t acceptor;
        CHECK_INT(pthread_create(&acceptor, NULL, accept_loop, (void *) (intptr_t) lfd), 0);
        pthread_detach(acceptor);
        table_error_report_set(on_error, NULL);

        sd_event *e = NULL;
        CHECK_INT(sd_event_new(&e), 0);
        Table *t = NULL;
        char *reason = NULL, *v = NULL;
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        TableMemo *m = table_memo_new();
        CHECK(m);
        bool wait;

        /* Without workers a memo that may wait still looks up on this thread, and notes it. */
        CHECK_INT(run(m, t, true, "a", &v, &wait), 1);
        CHECK(!wait);
        CHECK_STR(v, "A");
        free(v), v = NULL;
        CHECK_INT(asked_count("a"), 1);
        CHECK_INT(run(m, t, true, "a", &v, &wait), 1);   /* from the memo */
        free(v), v = NULL;
        CHECK_INT(asked_count("a"), 1);
        table_memo_clear(m);

        CHECK_INT(table_async_start(e, 2), 0);

        /* A run needing b then c: both sent at once, answered "not found" for now. */
        guess_two(e, m, t, "b", "c");
        CHECK_INT(asked_count("b"), 1);
        CHECK_INT(asked_count("c"), 1);
        table_memo_begin(m, true);
        CHECK_INT(table_lookup(t, "b", NULL), 0);
        CHECK_INT(table_lookup(t, "c", NULL), 0);
        CHECK(!table_memo_end(m));   /* the memo answered both */
        CHECK(!table_memo_wait(m, ready, &ready_called));

        /* The memo lasts until cleared: a new transaction asks again. A job stops at the first
         * key found: d was asked after a was taken for "not found", wrongly. */
        table_memo_clear(m);
        guess_two(e, m, t, "a", "d");
        CHECK_INT(asked_count("a"), 2);
        CHECK_INT(asked_count("d"), 0);
        CHECK_INT(run(m, t, true, "a", &v, &wait), 1);
        CHECK(!wait);
        CHECK_STR(v, "A");
        free(v), v = NULL;
        CHECK_INT(run(m, t, true, "d", &v, &wait), 0);   /* needed after all: sent now */
        CHECK(wait);
        CHECK(table_memo_wait(m, ready, &ready_called));
        wait_ready(e);
        CHECK_INT(asked_count("d"), 1);

        /* A server's temporary error is the answer (reported once), and stops the job. */
        guess_two(e, m, t, "t", "e");
        CHECK(run(m, t, true, "t", NULL, &wait) < 0);
        CHECK(!wait);
        CHECK_INT(reported, 1);
        CHECK_INT(asked_count("e"), 0);

        /* Cleared while a job is on its way: no call, no answer kept. */
        CHECK_INT(run(m, t, true, "f", NULL, &wait), 0);
        CHECK(wait);
        CHECK(table_memo_wait(m, ready, &ready_called));
        table_memo_clear(m);
        for (int i = 0; i < 1000 && asked_count("f") == 0; i++)
                CHECK(sd_event_run(e, 10 * 1000) >= 0);
        CHECK(sd_event_run(e, 100 * 1000) >= 0);
        CHECK(!ready_called);
        CHECK_INT(run(m, t, true, "f", NULL, &wait), 0);
        CHECK(wait);   /* asked again */
        CHECK(table_memo_wait(m, ready, &ready_called));
        wait_ready(e);

        /* Without may_wait: on this thread, noted for the next run. */
        CHECK_INT(run(m, t, false, "g", NULL, &wait), 0);
        CHECK(!wait);
        CHECK_INT(asked_count("g"), 1);
        CHECK_INT(run(m, t, true, "g", NULL, &wait), 0);
        CHECK(!wait);
        CHECK_INT(asked_count("g"), 1);

        /* Dropped by its owner while a job is on its way (a message or delivery that goes
         * away): the job keeps the memo until it answers, and calls nothing. */
        TableMemo *gone = table_memo_new();
        CHECK(gone);
        CHECK_INT(run(gone, t, true, "h", NULL, &wait), 0);
        CHECK(wait);
        CHECK(table_memo_wait(gone, ready, &ready_called));
        CHECK(!table_memo_drop(gone));
        for (int i = 0; i < 1000 && asked_count("h") == 0; i++)
                CHECK(sd_event_run(e, 10 * 1000) >= 0);
        CHECK(sd_event_run(e, 100 * 1000) >= 0);
        CHECK(!ready_called);

        /* No current memo: as without this module. */
        CHECK_INT(table_lookup(t, "a", &v), 1);
        free(v);

        table_memo_unref(m);
        table_async_stop();
        table_free(t);
        sd_event_unref(e);
        shutdown(lfd, SHUT_RDWR);
        close(lfd);
        unlink(path);
        rmdir(dir);
        return 0;
}
