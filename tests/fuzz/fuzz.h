/* fuzz.h — what every Postern fuzz target shares: the libFuzzer entry point's prototype and
 * FUZZ_CHECK, an assertion that abort()s (so libFuzzer, ASan and the replay tests all see a
 * crash and keep the input) instead of exit()ing like the unit tests' CHECK.
 *
 * A target is one file tests/fuzz/fuzz-<name>.c defining LLVMFuzzerTestOneInput(). It is linked
 * either with libFuzzer (-Dfuzz=true, clang) or with fuzz-main.c, which replays saved inputs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(expr) do { \
                if (!(expr)) { \
                        fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort(); \
                } \
        } while (0)

/* glibc's regcomp() takes time and memory exponential in stacked repetitions ("a++++", "(a*)*",
 * "a{200}"). Patterns are an administrator's (regexp: tables, header_checks), not input from
 * outside, so targets skip inputs that hold such a rule anywhere (NUL bytes included). */
static inline bool fuzz_regexp_pathological(const uint8_t *p, size_t n) {
        for (size_t i = 0; i + 1 < n; i++) {
                if (strchr("+*?}", p[i]) && p[i] && p[i + 1] && strchr("+*?{", p[i + 1]))
                        return true;
                if (p[i] == ')' && p[i + 1] && strchr("+*{", p[i + 1]))
                        return true;
                if ((p[i] == '{' || p[i] == ',') && p[i + 1] >= '0' && p[i + 1] <= '9') {
                        unsigned long v = 0;
                        for (size_t k = i + 1; k < n && p[k] >= '0' && p[k] <= '9' && v <= 1000; k++)
                                v = v * 10 + (unsigned long) (p[k] - '0');
                        if (v > 20)
                                return true;
                }
        }
        return false;
}

/* A NUL-terminated heap copy of the input (ASan then catches reads past its end). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                abort();
        if (size)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}
