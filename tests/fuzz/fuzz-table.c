/* fuzz-table — every lookup table format that parses text (common/conf/table.c,
 * table-pattern.c, table-sqlite.c). The input is written to a memfd and opened through
 * table_open() as /proc/self/fd/N, or used as the spec string itself; then keys derived from the
 * input (the first word of every line, the network of every cidr rule) and a few fixed keys are
 * looked up.
 *
 * Input:
 *   byte 0  bits 0-2 mode:
 *             0 texthash:FILE          1 texthash:FILE with TABLE_ALIASES ("key: value")
 *             2 regexp:FILE (without stacked repetitions: fuzz_regexp_pathological())
 *             3 cidr:FILE
 *             4 the rest is a table list spec ("inline:{a=b} static:x unionmap:{...}"); inputs
 *               that name a file-backed type (texthash:, hash:, regexp:, sqlite:, ldap:, ...) or
 *               contain '/' are skipped: the target must not read arbitrary files
 *             5 inline:{ rest }
 *             6 sqlite:FILE (the rest is the table's configuration file)
 *             7 the rest is a key for a fixed sqlite: table on :memory: whose queries are
 *               SELECT '%s' / '%u' / '%d' / '%1': checks the key's quoting in SQL
 *   rest    the text
 *
 * Checked beyond "no crash": a refused table always has a reason (except out of memory);
 * lookups answer 0 or 1 (file tables cannot fail here), a found value is non-NULL; texthash:
 * values are trimmed, non-empty, single-line, and every entry an independent model of the
 * source syntax finds (first of duplicate keys) is found with that value; key case never
 * matters for texthash:/inline:/static:; cidr: answers the same for a, [a] and ::ffff:a, and the
 * first rule matches its own network; repeated lookups answer the same; with mode 7 the
 * query result equals the key (or its local part / domain / last label), i.e. quotes in keys
 * cannot break out of the SQL literal. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "basic/macro.h"
#include "conf/table.h"

#define MAX_KEYS 48

static const char *const fixed_keys[] = {
        "", "postmaster", "user@example.org", "USER@Example.ORG", "a", "192.0.2.1", "[192.0.2.1]",
        "2001:db8::1", "::ffff:192.0.2.1", "10.0.0.1", "example.org", "$1", "'", "%s",
};

static int mem_fd(const char *name, char *path, size_t n) {
        int fd = memfd_create(name, MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        snprintf(path, n, "/proc/self/fd/%d", fd);
        return fd;
}

static void set_content(int fd, const char *data, size_t size) {
        FUZZ_CHECK(ftruncate(fd, 0) == 0);
        FUZZ_CHECK(size == 0 || pwrite(fd, data, size, 0) == (ssize_t) size);
}

static char *upper_copy(const char *s) {
        char *u = strdup(s);
        FUZZ_CHECK(u);
        for (char *p = u; *p; p++)
                *p = (char) toupper((unsigned char) *p);
        return u;
}

static bool is_trimmed_value(const char *v) {
        return *v && !isspace((unsigned char) v[0]) && !isspace((unsigned char) v[strlen(v) - 1]) &&
               !strchr(v, '\n');
}

/* table_lookup() with the checks every table type shares; returns r, *ret_value set when 1. */
static int lookup(Table *t, const char *key, char **ret_value) {
        char *v = NULL;
        int r = table_lookup(t, key, &v);
        FUZZ_CHECK(r == 0 || r == 1 || r == -ENOMEM);
        FUZZ_CHECK((r == 1) == (v != NULL));
        *ret_value = v;
        return r;
}

static bool same_answer(int r1, const char *v1, int r2, const char *v2) {
        return r1 == r2 && (r1 != 1 || streq(v1, v2));
}

/* The "same table answers the same way" checks for one key. */
static void check_key(Table *t, int mode, const char *key) {
        char *v = NULL, *v2 = NULL;
        int r = lookup(t, key, &v);
        int r2 = lookup(t, key, &v2);
        if (mode != 4)   /* randmap: may answer differently each time */
                FUZZ_CHECK(same_answer(r, v, r2, v2));
        free(v2);
        v2 = NULL;
        if (r == 1 && mode <= 1)
                FUZZ_CHECK(is_trimmed_value(v));
        if (mode <= 1 || mode == 5) {
                /* keys fold to lower case in every text table */
                char *u = upper_copy(key);
                r2 = lookup(t, u, &v2);
                FUZZ_CHECK(same_answer(r, v, r2, v2));
                free(u);
                free(v2);
                v2 = NULL;
        }
        unsigned char a4[4];
        if (mode == 3 && *key && !strchr(key, '[') && strlen(key) < 100) {
                char alt[128];
                snprintf(alt, sizeof alt, "[%s]", key);
                r2 = lookup(t, alt, &v2);
                FUZZ_CHECK(same_answer(r, v, r2, v2));
                free(v2);
                v2 = NULL;
                if (inet_pton(AF_INET, key, a4) == 1) {
                        snprintf(alt, sizeof alt, "::ffff:%s", key);
                        r2 = lookup(t, alt, &v2);
                        FUZZ_CHECK(same_answer(r, v, r2, v2));
                        free(v2);
                }
        }
        free(v);
}

/* The first word of every line (and for cidr the network without its prefix length). */
static size_t derive_keys(const char *text, int mode, char **keys) {
        size_t n = 0;
        for (const char *line = text; *line && n < MAX_KEYS; ) {
                const char *end = strchrnul(line, '\n');
                const char *p = line;
                while (p < end && (*p == ' ' || *p == '\t' || *p == '!' || *p == '"' || *p == '/'))
                        p++;
                const char *stop = mode == 1 ? ":\"" : mode == 3 ? " \t/]\"" : mode == 5 ? " \t/\"=,{}" : " \t/\"";
                size_t k = 0;
                while (p + k < end && !strchr(stop, p[k]))
                        k++;
                if (mode == 3 && k > 0 && p[0] == '[')
                        p++, k--;
                if (k > 0 && k < 256)
                        FUZZ_CHECK(keys[n++] = strndup(p, k));
                line = *end ? end + 1 : end;
        }
        return n;
}

/* ---- an independent model of the texthash: source syntax --------------------------------- */

typedef struct Entry {
        char *key, *value;
} Entry;

static char *trim_copy(const char *s, size_t n) {
        while (n > 0 && isspace((unsigned char) *s))
                s++, n--;
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                n--;
        char *c = strndup(s, n);
        FUZZ_CHECK(c);
        return c;
}

/* Splits one logical line; false when it is no entry. Quoted keys are not modelled (*quoted). */
static bool model_split(const char *line, bool aliases, Entry *e, bool *quoted) {
        if (line[0] == '"') {
                *quoted = true;
                return false;
        }
        size_t k = strcspn(line, aliases ? ":" : " \t");
        if (aliases && line[k] != ':')
                return false;
        /* plain syntax: the key ends at the first space or tab and is kept as is (a CR or
         * form feed before that stays part of it); aliases(5) keys are trimmed */
        e->key = aliases ? trim_copy(line, k) : strndup(line, k);
        FUZZ_CHECK(e->key);
        e->value = trim_copy(line[k] ? line + k + 1 : line + k, strlen(line[k] ? line + k + 1 : line + k));
        if (!*e->key || !*e->value) {
                free(e->key);
                free(e->value);
                return false;
        }
        for (char *p = e->key; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return true;
}

static void model_check(Table *t, const char *text, bool aliases) {
        Entry entries[64];
        size_t n = 0;
        bool quoted = false;
        char *logical = NULL;
        const char *p = text;

        for (;;) {
                const char *end = p ? strchrnul(p, '\n') : NULL;
                char *line = p ? trim_copy(p, (size_t) (end - p)) : NULL;   /* leading ws checked below */
                bool blank = line && (!*line || *line == '#');
                bool cont = p && !blank && isspace((unsigned char) *p);
                if (blank || cont) {
                        if (cont && logical) {
                                char *j = NULL;
                                FUZZ_CHECK(asprintf(&j, "%s %s", logical, line) >= 0);
                                free(logical);
                                logical = j;
                        }
                        free(line);
                } else {
                        if (logical && !quoted && n < ELEMENTSOF(entries)) {
                                Entry e;
                                if (model_split(logical, aliases, &e, &quoted)) {
                                        bool dup = false;
                                        for (size_t i = 0; i < n; i++)
                                                dup = dup || streq(entries[i].key, e.key);
                                        if (dup) {
                                                free(e.key);
                                                free(e.value);
                                        } else
                                                entries[n++] = e;
                                }
                        }
                        free(logical);
                        logical = line;   /* the trailing whitespace is gone, as in table.c */
                        if (!p)
                                break;
                }
                p = *end ? end + 1 : NULL;
        }
        for (size_t i = 0; i < n; i++) {
                char *v = NULL;
                int r = lookup(t, entries[i].key, &v);
                if (r != 1 || !streq(v, entries[i].value)) {
                        fprintf(stderr, "model: \"%s\" -> \"%s\", table: %d \"%s\"\n", entries[i].key,
                                entries[i].value, r, strna(v));
                        FUZZ_CHECK(!"texthash: an entry is not found as the model says");
                }
                free(v);
                free(entries[i].key);
                free(entries[i].value);
        }
}

/* The first rule of a cidr: table that is a plain "network result" matches its own network. */
static void check_first_cidr_rule(Table *t, const char *text) {
        const char *p = text;
        for (;;) {
                p += strspn(p, " \t\r\f\v");
                if (*p == '\n') {
                        p++;
                        continue;
                }
                if (*p == '#') {
                        p = strchrnul(p, '\n');
                        continue;
                }
                break;
        }
        if (!*p || *p == '!' || (strncmp(p, "if", 2) == 0 && isspace((unsigned char) p[2])))
                return;
        size_t k = strcspn(p, " \t\r\n/");
        if (k == 0 || k >= 100)
                return;
        char addr[128];
        memcpy(addr, p, k);
        addr[k] = '\0';
        char *a = addr;
        if (k >= 2 && a[0] == '[' && a[k - 1] == ']') {
                a[k - 1] = '\0';
                a++;
        }
        char *v = NULL;
        int r = lookup(t, a, &v);
        if (r != 1) {
                fprintf(stderr, "cidr: the first rule does not match its own network \"%s\"\n", a);
                abort();
        }
        free(v);
}

/* ---- mode 7: quoting of keys in sqlite: queries ------------------------------------------ */

static Table *sqlite_tables[4];   /* %s, %u, %d, %1 */

static void sqlite_setup(void) {
        static const char *const fmts[] = { "%s", "%u", "%d", "%1" };
        for (size_t i = 0; i < ELEMENTSOF(fmts); i++) {
                char path[64], spec[80], cf[128];
                int fd = mem_fd("sqlite.cf", path, sizeof path);
                int n = snprintf(cf, sizeof cf, "dbpath = :memory:\nquery = SELECT '%s'\n", fmts[i]);
                set_content(fd, cf, (size_t) n);
                snprintf(spec, sizeof spec, "sqlite:%s", path);
                char *why = NULL;
                if (table_open(spec, 0, &sqlite_tables[i], &why) < 0) {
                        fprintf(stderr, "%s: %s\n", spec, strna(why));
                        abort();
                }
        }
}

static void sqlite_quoting(const char *key) {
        const char *at = strrchr(key, '@');
        char *lower = strdup(key);
        FUZZ_CHECK(lower);
        for (char *p = lower; *p; p++)
                *p = (char) tolower((unsigned char) *p);   /* table.c folds the key */
        const char *lat = at ? lower + (at - key) : NULL;
        for (size_t i = 0; i < ELEMENTSOF(sqlite_tables); i++) {
                char *v = NULL;
                int r = table_lookup(sqlite_tables[i], key, &v);
                FUZZ_CHECK(r == 0 || r == 1 || r == -EIO || r == -ENOMEM);
                char *want = NULL;
                switch (i) {
                case 0: want = strdup(lower); break;
                case 1: want = lat ? strndup(lower, (size_t) (lat - lower)) : strdup(lower); break;
                case 2: want = lat && lat[1] ? strdup(lat + 1) : NULL; break;
                case 3: {
                        if (!lat || !lat[1])
                                break;
                        const char *dot = strrchr(lat + 1, '.');
                        want = strdup(dot ? dot + 1 : lat + 1);
                        break;
                }
                }
                /* An empty result is "not found"; a key that SQLite cannot take as text (invalid
                 * UTF-8 is passed through as bytes) must still never change the query. */
                if (want && *want) {
                        if (r != 1 || !streq(v, want)) {
                                fprintf(stderr, "sqlite %zu: key \"%s\": r=%d \"%s\", want \"%s\"\n", i, key, r,
                                        strna(v), want);
                                FUZZ_CHECK(!"sqlite: the key was not quoted as a literal");
                        }
                } else
                        FUZZ_CHECK(r == 0 || (r == 1 && v && !*v) || r == -EIO);
                free(want);
                free(v);
        }
        free(lower);
}

/* ---- the entry point ----------------------------------------------------------------------- */

static bool names_file_type(const char *s) {
        static const char *const types[] = { "texthash:", "hash:", "btree:", "lmdb:", "cdb:", "dbm:", "sdbm:",
                                             "regexp:", "cidr:", "sqlite:", "pcre:", "ldap:" };
        if (strchr(s, '/'))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (strcasestr(s, types[i]))
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fd = -1;
        static char path[64];

        if (size < 1 || size > 16384)
                return 0;
        if (fd < 0) {
                fd = mem_fd("table", path, sizeof path);
                sqlite_setup();
        }
        int mode = data[0] & 7;
        char *text = fuzz_strndup(data + 1, size - 1);
        bool has_nul = memchr(data + 1, '\0', size - 1) != NULL;

        if (mode == 7) {
                if (!has_nul)
                        sqlite_quoting(text);
                free(text);
                return 0;
        }

        char *spec = NULL;
        TableFlags flags = mode == 1 ? TABLE_ALIASES : 0;
        switch (mode) {
        case 0: case 1: FUZZ_CHECK(asprintf(&spec, "texthash:%s", path) >= 0); break;
        case 2:
                if (fuzz_regexp_pathological(data + 1, size - 1)) {
                        free(text);
                        return 0;
                }
                FUZZ_CHECK(asprintf(&spec, "regexp:%s", path) >= 0);
                break;
        case 3: FUZZ_CHECK(asprintf(&spec, "cidr:%s", path) >= 0); break;
        case 4:
                if (has_nul || names_file_type(text)) {
                        free(text);
                        return 0;
                }
                spec = strdup(text);
                break;
        case 5:
                if (has_nul) {
                        free(text);
                        return 0;
                }
                FUZZ_CHECK(asprintf(&spec, "inline:{%s}", text) >= 0);
                break;
        case 6: FUZZ_CHECK(asprintf(&spec, "sqlite:%s", path) >= 0); break;
        }
        FUZZ_CHECK(spec);
        if (mode <= 3 || mode == 6)
                set_content(fd, (const char *) data + 1, size - 1);

        char *keys[MAX_KEYS];
        size_t n_keys = derive_keys(text, mode, keys);

        if (mode == 4) {
                TableList *l = NULL;
                char *why = NULL;
                int r = table_list_open(spec, flags, &l, &why);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || why);
                if (r >= 0) {
                        for (size_t i = 0; i < n_keys + ELEMENTSOF(fixed_keys); i++) {
                                char *v = NULL;
                                r = table_list_lookup(l, i < n_keys ? keys[i] : fixed_keys[i - n_keys], &v);
                                FUZZ_CHECK(r == 0 || r == 1 || r == -ENOMEM);
                                FUZZ_CHECK((r == 1) == (v != NULL));
                                free(v);
                        }
                        table_list_free(l);
                }
                free(why);
        } else {
                Table *t = NULL;
                char *why = NULL;
                int r = table_open(spec, flags, &t, &why);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || why);
                FUZZ_CHECK((r >= 0) == (t != NULL));
                if (r == 0 && mode == 6) {
                        /* The configuration names the database and the SQL: nothing to check
                         * beyond a bounded, crash-free lookup. Queries that could run long or
                         * write files (VACUUM INTO, ATTACH) are not run. */
                        if (!strcasestr(text, "recursive") && !strcasestr(text, "vacuum") &&
                            !strcasestr(text, "attach") && !strcasestr(text, "pragma") &&
                            !strcasestr(text, "extension"))
                                for (size_t i = 0; i < ELEMENTSOF(fixed_keys); i++) {
                                        char *v = NULL;
                                        r = table_lookup(t, fixed_keys[i], &v);
                                        FUZZ_CHECK(r == 0 || r == 1 || r == -EIO || r == -ENOMEM);
                                        FUZZ_CHECK((r == 1) == (v != NULL));
                                        free(v);
                                }
                } else if (r == 0) {
                        for (size_t i = 0; i < n_keys; i++)
                                check_key(t, mode, keys[i]);
                        for (size_t i = 0; i < ELEMENTSOF(fixed_keys); i++)
                                check_key(t, mode, fixed_keys[i]);
                        if (mode <= 1 && !has_nul)
                                model_check(t, text, mode == 1);
                        if (mode == 3 && n_keys > 0)
                                check_first_cidr_rule(t, text);
                }
                table_free(t);
                free(why);
        }
        for (size_t i = 0; i < n_keys; i++)
                free(keys[i]);
        free(spec);
        free(text);
        return 0;
}
