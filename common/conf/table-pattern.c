/* table-pattern.c — regexp:, pcre: and cidr: lookup tables: an ordered list of rules, the
 * first match wins.
 *
 * regexp: (POSIX extended regular expressions, Postfix regexp_table syntax)
 *     /pattern/flags result        $1..$9 (or ${1}) in result insert the matched groups, $$ a $
 *     !/pattern/flags result       matches when the pattern does not (no groups then)
 *     if /pattern/flags            the rules up to the matching endif apply only on a match
 *     endif
 *   The delimiter is the first character (usually /); "\<delimiter>" stands for the delimiter.
 *   Flags toggle: i case-insensitive (on by default), x extended syntax (on by default),
 *   m multi-line matching.
 * pcre: (Perl-compatible regular expressions through libpcre2, Postfix pcre_table syntax)
 *   The same rule forms. The pattern goes to PCRE as written ("\/" is PCRE's own escape of the
 *   delimiter). Flags toggle: i case-insensitive (on by default), m multi-line, s "." matches a
 *   newline, x extended (pattern whitespace and # comments ignored), A anchored at the start,
 *   E "$" matches only at the very end, U ungreedy; X is accepted and changes nothing (PCRE2
 *   always refuses unknown escapes such as \k). Keys are matched as bytes (no UTF mode) and
 *   without JIT (the services forbid writable executable memory). A match that needs more than
 *   PCRE_MATCH_LIMIT steps or PCRE_HEAP_LIMIT_KIB of memory fails the lookup with -ERANGE, a
 *   temporary error, never "no match": an expensive header must not slip past a REJECT rule.
 *   Without libpcre2 (meson -Dpcre2=disabled) pcre: tables do not load.
 * cidr: (Postfix cidr_table syntax)
 *     192.0.2.0/24 result    2001:db8::/32 result    [::1] result    198.51.100.7 result
 *     if / endif around network patterns, and !network to negate, as for regexp:.
 *
 * Comment lines ("#"), blank lines and continuation lines (leading whitespace) are as in every
 * Postfix table. A rule that does not parse makes the whole table fail to load, with file, line
 * and reason: a half-understood access table is worse than a clear error. $number references
 * are checked then too (a group the pattern lacks, a number above 9). TABLE_NO_REGSUB and
 * TABLE_REGSUB_SAFE (table.h) apply at lookup to the rule that matched; a rule they skip is
 * reported as a warning "<spec>:<line>: ..." in the lookup's TableNotes. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#if HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include "../basic/macro.h"
#include "../basic/strbuf.h"
#include "table-pattern.h"

#define PATTERN_MAX_LINE (64 * 1024)
#define PATTERN_MAX_NESTING 100
#define PATTERN_GROUPS 10               /* $0..$9 */
#define PCRE_MATCH_LIMIT 1000000
#define PCRE_HEAP_LIMIT_KIB (64 * 1024)

/* Bytes that TABLE_REGSUB_SAFE refuses in substituted text, besides controls and space (see
 * table.h): separators and quoting of lists, commands, files, routes and addresses. */
static const char pattern_unsafe[] = "\"'`,;:|/\\<>()[]{}$@%!";

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
#if HAVE_PCRE2
        pcre2_code *pcre;       /* pcre: */
#endif
        int family;             /* cidr: AF_INET or AF_INET6 */
        unsigned char net[16];
        unsigned prefix;
        char *result;
        unsigned groups_used;   /* bit n: the result refers to $n */
        unsigned line;          /* where the rule starts in its file */
        size_t skip_to;         /* IF: index of its ENDIF */
} PatternRule;

struct TablePatterns {
        TablePatternKind kind;
        PatternRule *rules;
        size_t n, cap;
#if HAVE_PCRE2
        pcre2_match_context *match_context;
#endif
};

/* Where each group matched in the key; -1 for a group that did not take part. */
typedef struct PatternGroups {
        long start[PATTERN_GROUPS], end[PATTERN_GROUPS];
} PatternGroups;

bool table_patterns_have_pcre(void) {
        return HAVE_PCRE2;
}

/* Frees the rules; accepts NULL. */
TablePatterns *table_patterns_free(TablePatterns *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n; i++) {
                if (p->rules[i].compiled)
                        regfree(&p->rules[i].re);
#if HAVE_PCRE2
                pcre2_code_free(p->rules[i].pcre);
#endif
                free(p->rules[i].result);
        }
#if HAVE_PCRE2
        pcre2_match_context_free(p->match_context);
#endif
        free(p->rules);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TablePatterns *, table_patterns_free);

/* Checks $n references in a result against the number of groups; notes which are used. */
static const char *pattern_check_result(const char *result, size_t nsub, unsigned *ret_used) {
        unsigned used = 0;
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
                if (n >= PATTERN_GROUPS)
                        return "only $1 to $9 can be substituted";
                used |= 1u << n;
        }
        *ret_used = used;
        return NULL;
}

/* Copies the text between the delimiters at *p into pat; leaves *p after the closing one.
 * regexp: "\<delimiter>" becomes the delimiter; pcre: every escape goes to PCRE unchanged. */
static bool pattern_extract(char **p, TablePatternKind kind, char *pat) {
        char *s = *p;
        char delim = *s;
        size_t k = 0;
        for (s++; *s && *s != delim; s++) {
                if (*s == '\\' && s[1] == delim && kind == TABLE_PATTERN_REGEXP)
                        s++;
                else if (*s == '\\' && s[1])
                        pat[k++] = *s++;
                pat[k++] = *s;
        }
        pat[k] = '\0';
        if (*s != delim)
                return false;
        *p = s + 1;
        return true;
}

/* A flag letter after "/pattern/" and the compile option it toggles (0: accepted, no effect). */
typedef struct PatternFlag {
        char letter;
        uint32_t option;
} PatternFlag;

static const PatternFlag posix_flags[] = { { 'i', REG_ICASE }, { 'x', REG_EXTENDED }, { 'm', REG_NEWLINE } };
#if HAVE_PCRE2
static const PatternFlag pcre_flags[] = {
        { 'i', PCRE2_CASELESS }, { 'm', PCRE2_MULTILINE }, { 's', PCRE2_DOTALL }, { 'x', PCRE2_EXTENDED },
        { 'A', PCRE2_ANCHORED }, { 'E', PCRE2_DOLLAR_ENDONLY }, { 'U', PCRE2_UNGREEDY }, { 'X', 0 },
};
#endif

/* Toggles *options for each flag letter at *s; leaves *s after them. False on an unknown one. */
static bool pattern_parse_flags(char **s, const PatternFlag *flags, size_t n, uint32_t *options) {
        char *p = *s;
        for (; *p && !isspace((unsigned char) *p); p++) {
                size_t i = 0;
                while (i < n && flags[i].letter != *p)
                        i++;
                if (i == n)
                        return false;
                *options ^= flags[i].option;
        }
        *s = p;
        return true;
}

static int pattern_compile_posix(PatternRule *rule, const char *pat, uint32_t options, char *why, size_t why_size,
                                 size_t *ret_groups, const char **ret_why) {
        int e = regcomp(&rule->re, pat, (int) options);
        if (e != 0) {
                char msg[160];
                regerror(e, NULL, msg, sizeof msg);
                snprintf(why, why_size, "invalid regular expression: %s", msg);
                *ret_why = why;
                return -EINVAL;
        }
        rule->compiled = true;
        *ret_groups = rule->re.re_nsub;
        return 0;
}

#if HAVE_PCRE2
static int pattern_compile_pcre(PatternRule *rule, const char *pat, uint32_t options, char *why, size_t why_size,
                                size_t *ret_groups, const char **ret_why) {
        int error;
        PCRE2_SIZE offset;
        rule->pcre = pcre2_compile((PCRE2_SPTR) pat, PCRE2_ZERO_TERMINATED, options, &error, &offset, NULL);
        if (!rule->pcre) {
                if (error == PCRE2_ERROR_NOMEMORY)
                        return -ENOMEM;
                PCRE2_UCHAR msg[160];
                if (pcre2_get_error_message(error, msg, sizeof msg) < 0)
                        snprintf((char *) msg, sizeof msg, "error %d", error);
                snprintf(why, why_size, "invalid regular expression: %s (at offset %zu)", (char *) msg,
                         (size_t) offset);
                *ret_why = why;
                return -EINVAL;
        }
        uint32_t groups = 0;
        (void) pcre2_pattern_info(rule->pcre, PCRE2_INFO_CAPTURECOUNT, &groups);
        *ret_groups = groups;
        return 0;
}
#endif

/* Parses "/pattern/flags" at *s; leaves *s after the flags. */
static int pattern_parse_regexp(char **s, TablePatternKind kind, PatternRule *rule, char *why, size_t why_size,
                                size_t *ret_groups, const char **ret_why) {
        char *p = *s;
        char delim = *p;
        if (delim == '\0' || isspace((unsigned char) delim) || isalnum((unsigned char) delim) || delim == '\\') {
                *ret_why = "expected /pattern/";
                return -EINVAL;
        }
        _cleanup_free_ char *pat = malloc(strlen(p) + 1);
        if (!pat)
                return -ENOMEM;
        if (!pattern_extract(&p, kind, pat)) {
                *ret_why = "missing the closing delimiter of the pattern";
                return -EINVAL;
        }
        int r;
#if HAVE_PCRE2
        if (kind == TABLE_PATTERN_PCRE) {
                uint32_t options = PCRE2_CASELESS;
                if (!pattern_parse_flags(&p, pcre_flags, ELEMENTSOF(pcre_flags), &options)) {
                        *ret_why = "unknown pattern flag (use i, m, s, x, A, E, U or X)";
                        return -EINVAL;
                }
                r = pattern_compile_pcre(rule, pat, options, why, why_size, ret_groups, ret_why);
        } else
#endif
        {
                uint32_t options = REG_EXTENDED | REG_ICASE;
                if (!pattern_parse_flags(&p, posix_flags, ELEMENTSOF(posix_flags), &options)) {
                        *ret_why = "unknown pattern flag (use i, x or m)";
                        return -EINVAL;
                }
                r = pattern_compile_posix(rule, pat, options, why, why_size, ret_groups, ret_why);
        }
        if (r < 0)
                return r;
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

static int pattern_add_line(TablePatterns *t, char *line, unsigned lineno, size_t *stack, size_t *depth,
                            char *why, size_t why_size, const char **ret_why) {
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 16;
                PatternRule *n = realloc(t->rules, ncap * sizeof(PatternRule));
                if (!n)
                        return -ENOMEM;
                t->rules = n;
                t->cap = ncap;
        }
        PatternRule *rule = &t->rules[t->n];
        *rule = (PatternRule) { .line = lineno };

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
        size_t groups = 0;
        int r = t->kind == TABLE_PATTERN_CIDR ? pattern_parse_cidr(&s, rule, ret_why) :
                pattern_parse_regexp(&s, t->kind, rule, why, why_size, &groups, ret_why);
        if (r < 0)
                return r;
        t->n++;   /* owned by the table from here on (freed with it on failure) */

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
        if (t->kind != TABLE_PATTERN_CIDR) {
                const char *bad = pattern_check_result(s, rule->negate ? 0 : groups, &rule->groups_used);
                if (bad) {
                        *ret_why = bad;
                        return -EINVAL;
                }
        }
        rule->result = strdup(s);
        return rule->result ? 0 : -ENOMEM;
}

/* Parses a whole regexp:, pcre: or cidr: file. */
int table_patterns_parse(FILE *f, TablePatternKind kind, const char *path, TablePatterns **ret, char **ret_reason) {
        if (kind == TABLE_PATTERN_PCRE && !table_patterns_have_pcre()) {
                reason_printf(ret_reason, "%s: pcre: tables are not supported: built without libpcre2", path);
                return -EPROTONOSUPPORT;
        }
        _cleanup_(table_patterns_freep) TablePatterns *t = calloc(1, sizeof(TablePatterns));
        if (!t)
                return -ENOMEM;
        t->kind = kind;
#if HAVE_PCRE2
        if (kind == TABLE_PATTERN_PCRE) {
                t->match_context = pcre2_match_context_create(NULL);
                if (!t->match_context)
                        return -ENOMEM;
                pcre2_set_match_limit(t->match_context, PCRE_MATCH_LIMIT);
                pcre2_set_heap_limit(t->match_context, PCRE_HEAP_LIMIT_KIB);
        }
#endif
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
                        char why_buf[256];
                        int r = pattern_add_line(t, logical.data, start, stack, &depth, why_buf, sizeof why_buf, &why);
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

#if HAVE_PCRE2
DEFINE_TRIVIAL_CLEANUP_FUNC(pcre2_match_data *, pcre2_match_data_free);

/* 1 on a match (groups filled), 0 on none, -ERANGE/-ENOMEM/-EIO when PCRE gave up. */
static int pattern_match_pcre(TablePatterns *t, PatternRule *rule, const char *key, pcre2_match_data *md,
                              PatternGroups *g, TableNotes *notes, const char *label) {
        int rc = pcre2_match(rule->pcre, (PCRE2_SPTR) key, strlen(key), 0, 0, md, t->match_context);
        if (rc == PCRE2_ERROR_NOMATCH)
                return 0;
        if (rc < 0) {
                PCRE2_UCHAR msg[160];
                if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
                        snprintf((char *) msg, sizeof msg, "error %d", rc);
                int r = table_notes_add(notes, "%s:%u: the match gave up (%s): answering a temporary error",
                                        label, rule->line, (char *) msg);
                if (r < 0)
                        return r;
                return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM :
                       rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                       rc == PCRE2_ERROR_HEAPLIMIT ? -ERANGE : -EIO;
        }
        /* rc is the highest group set plus one; 0 when the ovector is too small for all groups */
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t count = MIN((size_t) pcre2_get_ovector_count(md), (size_t) PATTERN_GROUPS);
        for (size_t i = 0; i < PATTERN_GROUPS; i++) {
                bool set = i < count && (rc == 0 || i < (size_t) rc) && ov[2 * i] != PCRE2_UNSET;
                g->start[i] = set ? (long) ov[2 * i] : -1;
                g->end[i] = set ? (long) ov[2 * i + 1] : -1;
        }
        return 1;
}
#endif

static bool pattern_match_posix(PatternRule *rule, const char *key, PatternGroups *g) {
        regmatch_t m[PATTERN_GROUPS];
        if (regexec(&rule->re, key, ELEMENTSOF(m), m, 0) != 0)
                return false;
        for (size_t i = 0; i < PATTERN_GROUPS; i++) {
                g->start[i] = m[i].rm_so;
                g->end[i] = m[i].rm_so >= 0 ? m[i].rm_eo : -1;
        }
        return true;
}

static int pattern_expand(const char *result, const char *key, const PatternGroups *g, char **ret) {
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
                if (n < PATTERN_GROUPS && g->start[n] >= 0)
                        r = strbuf_append(&b, key + g->start[n], (size_t) (g->end[n] - g->start[n]));
        }
        if (r < 0)
                return r;
        char *v = strbuf_steal(&b);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/* Applies TABLE_NO_REGSUB / TABLE_REGSUB_SAFE to a matching rule that substitutes: 1 when it may
 * be used, 0 when it is skipped (with a warning in notes). */
static int pattern_substitution_allowed(const PatternRule *rule, const char *key, const PatternGroups *g,
                                        TableFlags flags, const char *label, TableNotes *notes) {
        int r;
        if (flags & TABLE_NO_REGSUB) {
                r = table_notes_add(notes, "%s:%u: $number substitution is not allowed in this table (text from "
                                    "the lookup key could become a command, a file or another address): "
                                    "skipping this rule", label, rule->line);
                return r < 0 ? r : 0;
        }
        if (!(flags & TABLE_REGSUB_SAFE))
                return 1;
        for (unsigned n = 1; n < PATTERN_GROUPS; n++) {
                if (!(rule->groups_used & (1u << n)) || g->start[n] < 0)
                        continue;
                for (long i = g->start[n]; i < g->end[n]; i++) {
                        unsigned char c = (unsigned char) key[i];
                        if (c > 0x20 && c != 0x7f && !strchr(pattern_unsafe, c))
                                continue;
                        char what[16];
                        if (c > 0x20 && c != 0x7f)
                                snprintf(what, sizeof what, "'%c'", c);
                        else
                                snprintf(what, sizeof what, "byte 0x%02x", c);
                        r = table_notes_add(notes, "%s:%u: the text for $%u contains %s, which is not allowed in "
                                            "substituted text here: skipping this rule", label, rule->line, n, what);
                        return r < 0 ? r : 0;
                }
        }
        return 1;
}

/* First matching rule wins. */
int table_patterns_lookup(TablePatterns *t, const char *key, TableFlags flags, const char *label,
                          char **ret_value, TableNotes *notes) {
        unsigned char addr[16];
        int family = 0;
        if (t->kind == TABLE_PATTERN_CIDR) {
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
#if HAVE_PCRE2
        _cleanup_(pcre2_match_data_freep) pcre2_match_data *md = NULL;
        if (t->kind == TABLE_PATTERN_PCRE && !(md = pcre2_match_data_create(PATTERN_GROUPS, NULL)))
                return -ENOMEM;
#endif

        for (size_t i = 0; i < t->n; i++) {
                PatternRule *rule = &t->rules[i];
                if (rule->op == PATTERN_ENDIF)
                        continue;
                PatternGroups g;
                int hit;
                if (t->kind == TABLE_PATTERN_CIDR)
                        hit = pattern_cidr_match(rule, family, addr);
#if HAVE_PCRE2
                else if (t->kind == TABLE_PATTERN_PCRE)
                        hit = pattern_match_pcre(t, rule, key, md, &g, notes, label);
#endif
                else
                        hit = pattern_match_posix(rule, key, &g);
                if (hit < 0)
                        return hit;
                if (rule->negate)
                        hit = !hit;
                if (rule->op == PATTERN_IF) {
                        if (!hit)
                                i = rule->skip_to;
                        continue;
                }
                if (!hit)
                        continue;
                bool substitutes = rule->groups_used != 0;
                if (substitutes) {
                        int r = pattern_substitution_allowed(rule, key, &g, flags, label, notes);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                continue;
                }
                if (!ret_value)
                        return 1;
                if (t->kind == TABLE_PATTERN_CIDR || rule->negate) {
                        char *v = strdup(rule->result);
                        if (!v)
                                return -ENOMEM;
                        *ret_value = v;
                        return 1;
                }
                int r = pattern_expand(rule->result, key, &g, ret_value);
                if (r < 0)
                        return r;
                if (notes && substitutes)
                        notes->substituted = true;
                return 1;
        }
        return 0;
}
