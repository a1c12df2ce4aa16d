/* test-queue-id.c — unit tests for queue ids: format, validity checks, uniqueness of 100,000
 * ids made in a tight loop, ids from two processes, and sort order following creation time. */
#include <sys/wait.h>
#include <time.h>

#include "queue-id.h"
#include "../basic/macro.h"
#include "../basic/tests.h"

#define N 100000

static int cmp(const void *a, const void *b) {
        return strcmp(*(char * const *) a, *(char * const *) b);
}

static const struct { const char *s; bool valid; } valid_table[] = {
        { "4QF2K1C0X7ABZ", true },
        { "0", true },
        { "ABCDEFGHIJKLMNOPQRST", true },     /* 20 */
        { "ABCDEFGHIJKLMNOPQRSTU", false },   /* 21 */
        { "", false },
        { "abc", false },
        { "AB-C", false },
        { "../etc", false },
        { "AB C", false },
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(valid_table); i++)
                CHECK_INT(queue_id_valid(valid_table[i].s), valid_table[i].valid);
        CHECK(!queue_id_valid(NULL));

        /* one process, tight loop: unique and strictly increasing */
        char (*ids)[QUEUE_ID_MAX] = calloc(N, QUEUE_ID_MAX);
        CHECK(ids);
        for (size_t i = 0; i < N; i++) {
                queue_id_new(ids[i]);
                CHECK(queue_id_valid(ids[i]));
                CHECK(strlen(ids[i]) <= 20);
                if (i > 0)
                        CHECK(strcmp(ids[i - 1], ids[i]) < 0);
        }

        /* ids taken over time sort by time, across a sleep */
        char a[QUEUE_ID_MAX], b[QUEUE_ID_MAX];
        queue_id_new(a);
        struct timespec ts = { 0, 2 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        queue_id_new(b);
        CHECK(strcmp(a, b) < 0);

        /* two processes at once: no id of the child equals one of the parent */
        int pfd[2];
        CHECK(pipe(pfd) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                for (size_t i = 0; i < N / 2; i++) {
                        char id[QUEUE_ID_MAX];
                        queue_id_new(id);
                        id[16] = '\n';
                        if (write(pfd[1], id, 17) != 17)
                                _exit(1);
                }
                _exit(0);
        }
        close(pfd[1]);
        char **all = calloc(N, sizeof(char *));
        CHECK(all);
        size_t n = 0;
        for (size_t i = 0; i < N / 2; i++)
                queue_id_new(ids[i]);
        for (size_t i = 0; i < N / 2; i++)
                all[n++] = strdup(ids[i]);
        FILE *f = fdopen(pfd[0], "r");
        CHECK(f);
        char line[64];
        while (n < N && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = '\0';
                CHECK(queue_id_valid(line));
                all[n++] = strdup(line);
        }
        fclose(f);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_INT(n, N);
        qsort(all, n, sizeof(char *), cmp);
        for (size_t i = 1; i < n; i++)
                CHECK(strcmp(all[i - 1], all[i]) != 0);
        for (size_t i = 0; i < n; i++)
                free(all[i]);
        free(all);
        free(ids);
        return 0;
}
