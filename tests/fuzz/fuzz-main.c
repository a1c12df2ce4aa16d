/* fuzz-main.c — a stand-alone driver for the fuzz targets when libFuzzer is not linked (gcc
 * builds, and the replay tests in suite "unit"): runs LLVMFuzzerTestOneInput() once for every
 * file named on the command line and every regular file in the directories named there (not
 * recursive; names starting with '.' and README* are skipped). A target that finds a bug aborts,
 * so the test fails; a path that cannot be read fails it too.
 *
 *   fuzz-address-replay tests/fuzz/corpus/fuzz-address tests/fuzz/regressions/fuzz-address */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static int run_file(const char *path, size_t *count) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        size_t cap = 4096, len = 0;
        uint8_t *buf = malloc(cap);
        for (;;) {
                if (!buf) {
                        close(fd);
                        fprintf(stderr, "%s: out of memory\n", path);
                        return -1;
                }
                if (len == cap) {
                        uint8_t *n = realloc(buf, cap *= 2);
                        if (!n)
                                free(buf);
                        buf = n;
                        continue;
                }
                ssize_t k = read(fd, buf + len, cap - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        fprintf(stderr, "%s: %s\n", path, strerror(errno));
                        free(buf);
                        close(fd);
                        return -1;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        close(fd);
        /* An exact-size copy, as libFuzzer passes it, so over-reads hit the redzone. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                free(buf);
                return -1;
        }
        if (len)
                memcpy(exact, buf, len);
        free(buf);
        if (getenv("FUZZ_VERBOSE"))
                fprintf(stderr, "running %s (%zu bytes)\n", path, len);
        (void) LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        (*count)++;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int run_dir(const char *path, size_t *count) {
        DIR *d = opendir(path);
        if (!d) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        int ret = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || strncmp(de->d_name, "README", 6) == 0)
                        continue;
                if (n == cap) {
                        char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(char *));
                        if (!nn) {
                                ret = -1;
                                break;
                        }
                        names = nn;
                }
                if (!(names[n] = strdup(de->d_name))) {
                        ret = -1;
                        break;
                }
                n++;
        }
        closedir(d);
        if (n > 1)
                qsort(names, n, sizeof(char *), name_cmp);   /* a stable order for reproducible runs */
        for (size_t i = 0; i < n; i++) {
                char *p = NULL;
                struct stat st;
                if (ret == 0 && asprintf(&p, "%s/%s", path, names[i]) >= 0) {
                        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && run_file(p, count) < 0)
                                ret = -1;
                } else
                        ret = -1;
                free(p);
                free(names[i]);
        }
        free(names);
        return ret;
}

int main(int argc, char *argv[]) {
        size_t count = 0;
        bool failed = false;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        failed = true;
                } else if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) < 0 : run_file(argv[i], &count) < 0)
                        failed = true;
        }
        printf("%s: %zu input(s) replayed%s\n", argv[0], count, failed ? ", some paths failed" : "");
        return failed ? 1 : 0;
}
