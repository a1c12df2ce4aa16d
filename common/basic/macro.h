/* macro.h — small language helpers shared by all of Postern: cleanup attributes,
 * ownership transfer, string comparisons and array sizes. No mail knowledge here. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_ __attribute__((sentinel))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Moves ownership out of a variable that has a cleanup attribute. */
#define TAKE_PTR(p) ({ __typeof__(p) _take_ = (p); (p) = NULL; _take_; })
#define TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })

static inline void freep(void *p) { free(*(void **) p); }
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}
static inline void closep(int *fd) { safe_close(*fd); }
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) { if (*f) fclose(*f); }
#define _cleanup_fclose_ _cleanup_(fclosep)

/* A NULL-terminated array of strings (like systemd's strv). */
static inline char **strv_free(char **l) {
        if (l) {
                for (char **i = l; *i; i++)
                        free(*i);
                free(l);
        }
        return NULL;
}
static inline void strv_freep(char ***l) { strv_free(*l); }
#define _cleanup_strv_free_ _cleanup_(strv_freep)
/* Appends item (taken over, even on failure; NULL: out of memory) to the list *l (NULL: empty). */
int strv_consume(char ***l, char *item);

/* Defines foo_freep() for a type whose destructor foo_free() accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                 \
        static inline void func##p(type *p) {                   \
                if (*p)                                         \
                        func(*p);                               \
        }

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strcaseeq(a, b) (strcasecmp((a), (b)) == 0)
#define isempty(s) (!(s) || (s)[0] == '\0')
#define strna(s) ((s) ? (s) : "n/a")
#define strempty(s) ((s) ? (s) : "")

/* Returns the rest of s after prefix, or NULL when s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}
const char *startswith_no_case(const char *s, const char *prefix);

/* Copies n bytes that need not be NUL-terminated into a new NUL-terminated string (unlike
 * strndup(), it never looks past n bytes and keeps embedded NULs). NULL on ENOMEM. */
char *memdup_suffix0(const void *p, size_t n);

/* Removes leading and trailing white space in place; returns the first non-space byte of s. */
char *strstrip(char *s);

/* Sets *ret_reason (when ret_reason is non-NULL) to an allocated, formatted explanation of an
 * error, or NULL when memory runs out. For functions that report "why" beside an errno. */
void reason_printf(char **ret_reason, const char *fmt, ...) _printf_(2, 3);

/* Microseconds, as sd-event counts them. */
typedef unsigned long long usec_t;
#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
usec_t now_usec(int clock_id);
