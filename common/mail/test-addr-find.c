/* test-addr-find.c — unit tests for address lookups in Postfix's key order: full address,
 * without the extension, the local part (only for local domains), @domain; pattern tables see
 * only the full address; the first key found wins; a failing table is an error; which key
 * matched and the lazy local-domain test of addr_find_match(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "addr-find.h"
#include "../basic/tests.h"

static void check(TableList *maps, const char *local, const char *domain, const char *delim,
                  AddrFindFlags flags, int expect_r, const char *expect) {
        _cleanup_free_ char *v = NULL;
        int r = addr_find(maps, local, domain, delim, flags, &v);
        if (r != expect_r || (r > 0 && (!v || !streq(v, expect)))) {
                fprintf(stderr, "%s@%s (delim %s, flags %d): got %d \"%s\", expected %d \"%s\"\n", local,
                        strempty(domain), strempty(delim), flags, r, strempty(v), expect_r, strempty(expect));
                exit(1);
        }
}

static int calls;

/* is_local() for addr_find_match(): d.example is local, fail.example cannot be told. */
static int is_local(const char *domain, void *userdata) {
        calls++;
        if (streq(domain, "fail.example"))
                return -EIO;
        return streq(domain, userdata);
}

/* addr_find_match(): which key matched, whether without the extension, the local test asked
 * only when steps 1-2 found nothing. */
static void test_match(TableList *maps) {
        static const struct {
                const char *local, *domain;
                int r;
                const char *key;
                bool without_extension;
                int calls;
        } t[] = {
                { "full+ext", "d.example", 1, "full+ext@d.example", false, 0 },
                { "base+ext", "d.example", 1, "base@d.example", true, 0 },
                { "lp+x", "d.example", 1, "lp+x", false, 1 },
                { "lp+y", "d.example", 1, "lp", true, 1 },
                { "nobody", "d.example", 1, "@d.example", false, 1 },
                { "lp", "other.example", 0, NULL, false, 1 },      /* not local: no "lp" key */
                { "lp", "fail.example", -EIO, "fail.example", false, 1 },
                { "lp+y", NULL, 1, "lp", true, 0 },                /* no domain: nothing to ask */
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                AddrFindMatch m = { .is_local = is_local, .userdata = (void *) "d.example" };
                _cleanup_free_ char *v = NULL;
                calls = 0;
                CHECK_INT(addr_find_match(maps, t[i].local, t[i].domain, "+", 0, &m, &v), t[i].r);
                if (t[i].key)
                        CHECK_STR(m.key, t[i].key);
                else
                        CHECK(!m.key);
                CHECK_INT(m.without_extension, t[i].without_extension);
                CHECK_INT(calls, t[i].calls);
                free(m.key);
        }
        /* ADDR_FIND_LOCALPART decides without asking */
        AddrFindMatch m = { .is_local = is_local, .userdata = (void *) "none" };
        calls = 0;
        CHECK_INT(addr_find_match(maps, "lp", "other.example", "+", ADDR_FIND_LOCALPART, &m, NULL), 1);
        CHECK_STR(m.key, "lp");
        CHECK_INT(calls, 0);
        free(m.key);
}

int main(void) {
        CHECK_INT(addr_find_base_length("user+ext", "+"), 4);
        CHECK_INT(addr_find_base_length("user-ext+x", "+-"), 4);
        CHECK_INT(addr_find_base_length("+user", "+"), 5);   /* not at the first character */
        CHECK_INT(addr_find_base_length("user", "+"), 4);
        CHECK_INT(addr_find_base_length("user+ext", ""), 8);
        CHECK_INT(addr_find_base_length("user+ext", NULL), 8);

        TableList *maps = NULL;
        CHECK_INT(table_list_open("inline:{ full+ext@d.example=1, base@d.example=2, lp=3, lp+x=4, "
                                  "@d.example=5, both@d.example=6, both=7, Mixed@D.Example=8 }",
                                  0, &maps, NULL), 0);
        static const struct {
                const char *local, *domain, *delim;
                AddrFindFlags flags;
                int r;
                const char *v;
        } t[] = {
                { "full+ext", "d.example", "+", 0, 1, "1" },
                { "base+ext", "d.example", "+", 0, 1, "2" },      /* without the extension */
                { "base+ext", "d.example", "", 0, 1, "5" },       /* no delimiter: @domain */
                { "base-ext", "d.example", "+-", 0, 1, "2" },     /* several delimiters */
                { "lp", "d.example", "+", 0, 1, "5" },            /* local part: local domains only */
                { "lp", "d.example", "+", ADDR_FIND_LOCALPART, 1, "3" },
                { "lp+x", "d.example", "+", ADDR_FIND_LOCALPART, 1, "4" },
                { "lp+y", "d.example", "+", ADDR_FIND_LOCALPART, 1, "3" },
                { "both", "d.example", "+", ADDR_FIND_LOCALPART, 1, "6" }, /* user@domain first */
                { "nobody", "d.example", "+", ADDR_FIND_LOCALPART, 1, "5" },
                { "nobody", "other.example", "+", ADDR_FIND_LOCALPART, 0, NULL },
                { "lp", "other.example", "+", 0, 0, NULL },
                { "MIXED", "d.EXAMPLE", "+", 0, 1, "8" },         /* tables fold case */
                { "lp", NULL, "+", 0, 1, "3" },                   /* no domain: the local part */
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                check(maps, t[i].local, t[i].domain, t[i].delim, t[i].flags, t[i].r, t[i].v);
        CHECK_INT(addr_find(maps, "base", "d.example", "+", 0, NULL), 1);   /* ret_value optional */
        test_match(maps);
        CHECK_INT(addr_find(NULL, "base", "d.example", "+", 0, NULL), 0);
        table_list_free(maps);

        /* pattern tables see only the full address */
        char dir[] = "/tmp/test-addr-find-XXXXXX", path[256], spec[300];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/re", dir);
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs("/^u@r\\.example$/ full\n/^u$/ localpart\n/^@r\\.example$/ atdomain\n/^v@r\\.example$/ base\n", f);
        CHECK(fclose(f) == 0);
        snprintf(spec, sizeof spec, "regexp:%s", path);
        CHECK_INT(table_list_open(spec, 0, &maps, NULL), 0);
        check(maps, "u", "r.example", "+", ADDR_FIND_LOCALPART, 1, "full");
        check(maps, "x", "r.example", "+", ADDR_FIND_LOCALPART, 0, NULL);   /* not "atdomain" */
        check(maps, "v+e", "r.example", "+", 0, 0, NULL);                   /* not "base" */

        /* a table that fails is an error, not "unknown" */
        CHECK(unlink(path) == 0);
        sleep(2);   /* file tables are checked for changes at most once a second */
        CHECK(addr_find(maps, "x", "r.example", "+", 0, NULL) < 0);
        table_list_free(maps);
        rmdir(dir);
        return 0;
}
