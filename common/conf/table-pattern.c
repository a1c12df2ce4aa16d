/* table-pattern.c — regexp: and cidr: lookup tables: an ordered list of rules, the first match
 * wins.
 *
 * regexp: (POSIX extended regular expressions, Postfix regexp_table syntax)
 *     /pattern/flags result        $1..$9 (or ${1}) in result insert the matched groups, $$ a $
 *     !/pattern/flags result       matches when the pattern does not (no groups then)
 *     if /pattern/flags            the rules up to the matching endif apply only on a match
 *     endif
 *   The delimiter is the first character (usually /); "\<delimiter>" stands for the delimiter.
 *   Flags toggle: i case-insensitive (on by default), x extended syntax (on by default),
 *   m multi-line matching.
 * cidr: (Postfix cidr_table syntax)
 *     192.0.2.0/24 result    2001:db8::/32 result    [::1] result    198.51.100.7 result
 *     if / endif around network patterns, and !network to negate, as for regexp:.
 *
 * Comment lines ("#"), blank lines and continuation lines (leading whitespace) are as in every
 * Postfix table. A rule that does not parse makes the whole table fail to load, with file, line
 * and reason: a half-understood access table is worse than a clear error. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/strbuf.h"
#include "table-pattern.h"

#define PATTERN_MAX_LINE (64 * 1024)
#define PATTERN_MAX_NESTING 100

typedef enum PatternOp {
        PATTERN_MATCH,
        PATTERN_IF,
        PATTERN_ENDIF,
} PatternOp;

typedef struct PatternRule {
        PatternOp op;
        bool negate;
        bool compiled;          /* regexp: re holds a compiled pattern */
        regex_t re;
        int family;             /* cidr: AF_INET or AF_INET6 */
        unsigned char net[16];
        unsigned prefix;
        char *result;
        size_t skip_to;         /* IF: index of its ENDIF */
} PatternRule;

struct TablePatterns {
        bool cidr;
        PatternRule *rules;
        size_t n, cap;
};

/* Frees the rules; accepts NULL. */
TablePatterns *table_patterns_free(TablePatterns *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n; i++) {
                if (p->rules[i].compiled)
                        regfree(&p->rules[i].re);
                free(p->rules[i].result);
        }
        free(p->rules);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TablePatterns *, table_patterns_free);

/* Checks $n references in a result against the number of groups. */
static const char *pattern_check_result(const char *result, size_t nsub) {
        for (const char *s = result; (s = strchr(s, '$')); ) {
                s++;
                if (*s == '$') {
                        s++;
                        continue;
                }
                bool brace = *s == '{';
                if (brace)
                        s++;
                if (!isdigit((unsigned char) *s))
                        return "'$' must be followed by a group number or another '$'";
                unsigned long n = strtoul(s, (char **) &s, 10);
                if (brace && *s++ != '}')
                        return "missing '}' after ${number";
                if (n == 0 || n > nsub)
                        return "refers to a group ($number) that the pattern does not have";
        }
        return NULL;
}

/* Parses "/pattern/flags" at *s; leaves *s after the flags. */
static int pattern_parse_regexp(char **s, PatternRule *rule, const char **ret_why) {
        char *p = *s;
        char delim = *p;
        if (delim == '\0' || isspace((unsigned char) delim) || isalnum((unsigned char) delim) || delim == '\\') {
                *ret_why = "expected /pattern/";
                return -EINVAL;
        }
        _cleanup_free_ char *pat = malloc(strlen(p) + 1);
        if (!pat)
                return -ENOMEM;
        size_t k = 0;
        for (p++; *p && *p != delim; p++) {
                if (*p == '\\' && p[1] == delim)
                        p++;
                else if (*p == '\\' && p[1])
                        pat[k++] = *p++;
                pat[k++] = *p;
        }
        pat[k] = '\0';
        if (*p != delim) {
                *ret_why = "missing the closing delimiter of the pattern";
                return -EINVAL;
        }
        p++;
        int cflags = REG_EXTENDED | REG_ICASE;
        for (; *p && !isspace((unsigned char) *p); p++)
                switch (*p) {
                case 'i': cflags ^= REG_ICASE; break;
                case 'x': cflags ^= REG_EXTENDED; break;
                case 'm': cflags ^= REG_NEWLINE; break;
                default:
                        *ret_why = "unknown pattern flag (use i, x or m)";
                        return -EINVAL;
                }
        if (regcomp(&rule->re, pat, cflags) != 0) {
                *ret_why = "invalid regular expression";
                return -EINVAL;
        }
        rule->compiled = true;
        *s = p;
        return 0;
}

/* Parses "net[/prefix]" (IPv6 optionally in brackets) at *s. */
static int pattern_parse_cidr(char **s, PatternRule *rule, const char **ret_why) {
        char *p = *s;
        size_t len = strcspn(p, " \t");
        char buf[128];
        if (len == 0 || len >= sizeof buf) {
                *ret_why = "expected network/prefix";
                return -EINVAL;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        char *addr = buf, *slash = strchr(buf, '/');
        if (slash)
                *slash = '\0';
        size_t al = strlen(addr);
        if (al >= 2 && addr[0] == '[' && addr[al - 1] == ']') {
                addr[al - 1] = '\0';
                addr++;
        }
        unsigned max;
        if (inet_pton(AF_INET, addr, rule->net) == 1)
                rule->family = AF_INET, max = 32;
        else if (inet_pton(AF_INET6, addr, rule->net) == 1)
                rule->family = AF_INET6, max = 128;
        else {
                *ret_why = "bad network address";
                return -EINVAL;
        }
        rule->prefix = max;
        if (slash) {
                char *end;
                if (!isdigit((unsigned char) slash[1])) {
                        *ret_why = "bad prefix length";
                        return -EINVAL;
                }
                unsigned long n = strtoul(slash + 1, &end, 10);
                if (*end || n > max) {
                        *ret_why = "bad prefix length";
                        return -EINVAL;
                }
                rule->prefix = (unsigned) n;
        }
        /* Like Postfix: host bits must be zero, or the rule is probably a typo. */
        for (unsigned bit = rule->prefix; bit < max; bit++)
                if (rule->net[bit / 8] & (0x80 >> (bit % 8))) {
                        *ret_why = "address has bits set outside the prefix length";
                        return -EINVAL;
                }
        *s = p + len;
        return 0;
}

static int pattern_add_line(TablePatterns *t, char *line, size_t *stack, size_t *depth, const char **ret_why) {
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 16;
                PatternRule *n = realloc(t->rules, ncap * sizeof(PatternRule));
                if (!n)
                        return -ENOMEM;
                t->rules = n;
                t->cap = ncap;
        }
        PatternRule *rule = &t->rules[t->n];
        *rule = (PatternRule) {};

        char *s = line;
        if (strncmp(s, "endif", 5) == 0 && (s[5] == '\0' || isspace((unsigned char) s[5]))) {
                if (*depth == 0) {
                        *ret_why = "endif without if";
                        return -EINVAL;
                }
                rule->op = PATTERN_ENDIF;
                t->rules[stack[--*depth]].skip_to = t->n;
                t->n++;
                return 0;
        }
        if (strncmp(s, "if", 2) == 0 && isspace((unsigned char) s[2])) {
                rule->op = PATTERN_IF;
                s += 2;
                s += strspn(s, " \t");
        }
        if (*s == '!') {
                rule->negate = true;
                s++;
        }
        int r = t->cidr ? pattern_parse_cidr(&s, rule, ret_why) : pattern_parse_regexp(&s, rule, ret_why);
        if (r < 0)
                return r;
        t->n++;   /* owned by the table from here on (regfree on failure) */

        s += strspn(s, " \t");
        if (rule->op == PATTERN_IF) {
                if (*s) {
                        *ret_why = "text after an if pattern";
                        return -EINVAL;
                }
                if (*depth >= PATTERN_MAX_NESTING) {
                        *ret_why = "if nested too deeply";
                        return -EINVAL;
                }
                stack[(*depth)++] = t->n - 1;
                return 0;
        }
        if (*s == '\0') {
                *ret_why = "missing the result after the pattern";
                return -EINVAL;
        }
        if (!t->cidr) {
                const char *why = pattern_check_result(s, rule->negate ? 0 : rule->re.re_nsub);
                if (why) {
                        *ret_why = why;
                        return -EINVAL;
                }
        }
        rule->result = strdup(s);
        return rule->result ? 0 : -ENOMEM;
}

/* Parses a whole regexp: or cidr: file. */
int table_patterns_parse(FILE *f, bool cidr, const char *path, TablePatterns **ret, char **ret_reason) {
        _cleanup_(table_patterns_freep) TablePatterns *t = calloc(1, sizeof(TablePatterns));
        if (!t)
                return -ENOMEM;
        t->cidr = cidr;
        _cleanup_free_ char *buf = NULL;
        size_t bufsz = 0;
        _cleanup_strbuf_ StrBuf logical = STRBUF_INIT;
        logical.limit = PATTERN_MAX_LINE;
        unsigned lineno = 0, start = 0;
        bool have = false;
        size_t stack[PATTERN_MAX_NESTING], depth = 0;

        for (;;) {
                ssize_t n = getline(&buf, &bufsz, f);
                if (n >= 0) {
                        lineno++;
                        size_t l = strlen(buf);
                        while (l > 0 && isspace((unsigned char) buf[l - 1]))
                                buf[--l] = '\0';
                        const char *first = buf + strspn(buf, " \t\r\f\v");
                        if (*first == '\0' || *first == '#')
                                continue;
                        if (isspace((unsigned char) buf[0]) && have) {
                                if (strbuf_putc(&logical, ' ') < 0 || strbuf_puts(&logical, first) < 0) {
                                        reason_printf(ret_reason, "%s:%u: rule too long", path, start);
                                        return -EINVAL;
                                }
                                continue;
                        }
                }
                if (have) {
                        const char *why = NULL;
                        int r = pattern_add_line(t, logical.data, stack, &depth, &why);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                reason_printf(ret_reason, "%s:%u: %s", path, start, why);
                                return r;
                        }
                }
                if (n < 0)
                        break;
                strbuf_reset(&logical);
                if (strbuf_puts(&logical, buf + strspn(buf, " \t")) < 0)
                        return -ENOMEM;
                have = true;
                start = lineno;
        }
        if (ferror(f))
                return -EIO;
        if (depth > 0) {
                reason_printf(ret_reason, "%s: if without endif", path);
                return -EINVAL;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

static bool pattern_cidr_match(const PatternRule *rule, int family, const unsigned char *a) {
        if (family != rule->family)
                return false;
        unsigned full = rule->prefix / 8, rest = rule->prefix % 8;
        if (memcmp(a, rule->net, full) != 0)
                return false;
        if (rest == 0)
                return true;
        unsigned char mask = (unsigned char) (0xff << (8 - rest));
        return (a[full] & mask) == (rule->net[full] & mask);
}

static int pattern_expand(const char *result, const char *key, const regmatch_t *m, size_t nm, char **ret) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int r = 0;
        for (const char *s = result; *s && r >= 0; ) {
                if (*s != '$') {
                        r = strbuf_putc(&b, *s++);
                        continue;
                }
                s++;
                if (*s == '$') {
                        r = strbuf_putc(&b, '$');
                        s++;
                        continue;
                }
                bool brace = *s == '{';
                if (brace)
                        s++;
                unsigned long n = strtoul(s, (char **) &s, 10);
                if (brace && *s == '}')
                        s++;
                if (n < nm && m[n].rm_so >= 0)
                        r = strbuf_append(&b, key + m[n].rm_so, (size_t) (m[n].rm_eo - m[n].rm_so));
        }
        if (r < 0)
                return r;
        char *v = strbuf_steal(&b);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/* First matching rule wins. */
int table_patterns_lookup(TablePatterns *t, const char *key, char **ret_value) {
        unsigned char addr[16];
        int family = 0;
        if (t->cidr) {
                char buf[128];
                size_t l = strlen(key);
                if (l >= sizeof buf)
                        return 0;
                memcpy(buf, key, l + 1);
                char *a = buf;
                if (l >= 2 && a[0] == '[' && a[l - 1] == ']') {
                        a[l - 1] = '\0';
                        a++;
                }
                if (inet_pton(AF_INET, a, addr) == 1)
                        family = AF_INET;
                else if (inet_pton(AF_INET6, a, addr) == 1) {
                        family = AF_INET6;
                        /* an IPv4-mapped address also matches IPv4 rules */
                        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
                        if (memcmp(addr, mapped, 12) == 0) {
                                memmove(addr, addr + 12, 4);
                                family = AF_INET;
                        }
                } else
                        return 0;
        }

        for (size_t i = 0; i < t->n; i++) {
                PatternRule *rule = &t->rules[i];
                if (rule->op == PATTERN_ENDIF)
                        continue;
                regmatch_t m[10];
                bool hit;
                if (t->cidr)
                        hit = pattern_cidr_match(rule, family, addr);
                else
                        hit = regexec(&rule->re, key, ELEMENTSOF(m), m, 0) == 0;
                if (rule->negate)
                        hit = !hit;
                if (rule->op == PATTERN_IF) {
                        if (!hit)
                                i = rule->skip_to;
                        continue;
                }
                if (!hit)
                        continue;
                if (!ret_value)
                        return 1;
                if (t->cidr || rule->negate) {
                        char *v = strdup(rule->result);
                        if (!v)
                                return -ENOMEM;
                        *ret_value = v;
                        return 1;
                }
                int r = pattern_expand(rule->result, key, m, ELEMENTSOF(m), ret_value);
                return r < 0 ? r : 1;
        }
        return 0;
}
