/* util.c — the few out-of-line helpers declared in macro.h. */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "macro.h"

const char *startswith_no_case(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncasecmp(s, prefix, l) == 0 ? s + l : NULL;
}

usec_t now_usec(int clock_id) {
        struct timespec ts;
        clock_gettime(clock_id, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

char *strstrip(char *s) {
        while (isspace((unsigned char) *s))
                s++;
        size_t l = strlen(s);
        while (l > 0 && isspace((unsigned char) s[l - 1]))
                s[--l] = '\0';
        return s;
}

void reason_printf(char **ret_reason, const char *fmt, ...) {
        if (!ret_reason)
                return;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_reason, fmt, ap) < 0)
                *ret_reason = NULL;
        va_end(ap);
}

int strv_consume(char ***l, char *item) {
        size_t n = 0;
        while (*l && (*l)[n])
                n++;
        char **nl = item ? reallocarray(*l, n + 2, sizeof(char *)) : NULL;
        if (!nl) {
                free(item);
                return -ENOMEM;
        }
        nl[n] = item;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

char *memdup_suffix0(const void *p, size_t n) {
        if (n == SIZE_MAX)
                return NULL;
        char *d = malloc(n + 1);
        if (!d)
                return NULL;
        memcpy(d, p, n);
        d[n] = '\0';
        return d;
}
