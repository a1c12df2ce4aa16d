/* tests.h — the assertion macros Postern's table-driven unit tests use. A failing check prints
 * file:line and the expression, and exits 1; exit code 77 means "skipped" (meson convention). */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHECK(expr) do { \
                if (!(expr)) { \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        exit(1); \
                } \
        } while (0)

#define CHECK_INT(a, b) do { \
                long long _a = (long long) (a), _b = (long long) (b); \
                if (_a != _b) { \
                        fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
                                __FILE__, __LINE__, #a, _a, #b, _b); \
                        exit(1); \
                } \
        } while (0)

#define CHECK_STR(a, b) do { \
                const char *_a = (a), *_b = (b); \
                if (!_a || !_b || strcmp(_a, _b) != 0) { \
                        fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
                                __FILE__, __LINE__, #a, _a ? _a : "(null)", _b ? _b : "(null)"); \
                        exit(1); \
                } \
        } while (0)

/* Whether a line of the NULL-terminated list v (may be NULL) contains part. */
static inline bool strv_has_part(char **v, const char *part) {
        for (; v && *v; v++)
                if (strstr(*v, part))
                        return true;
        return false;
}

/* Writes text to path with the given mode (a test's input file). */
static inline void test_write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs(text, f);
        CHECK(fclose(f) == 0);
        CHECK(chmod(path, mode) == 0);
}

#define TEST_SKIP 77
