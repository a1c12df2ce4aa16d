/* fuzz.h — what every Postern fuzz target shares: the libFuzzer entry point's prototype and
 * FUZZ_CHECK, an assertion that abort()s (so libFuzzer, ASan and the replay tests all see a
 * crash and keep the input) instead of exit()ing like the unit tests' CHECK.
 *
 * A target is one file tests/fuzz/fuzz-<name>.c defining LLVMFuzzerTestOneInput(). It is linked
 * either with libFuzzer (-Dfuzz=true, clang) or with fuzz-main.c, which replays saved inputs. */
#pragma once

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
