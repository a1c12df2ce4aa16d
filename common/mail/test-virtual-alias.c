/* test-virtual-alias.c — unit tests for virtual(5) alias expansion (virtual-alias.c): one-to-one
 * and one-to-many, recursion, the "a  a, b" self-reference idiom, user and @domain keys, the
 * @otherdomain result, $myorigin for bare results, extensions with several delimiter characters
 * and propagate_unmatched_extensions, pattern tables asked only for full addresses, duplicates,
 * the expansion, recursion and address length limits, loops, and lookup failures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtual-alias.h"
#include "basic/tests.h"

static char tmpdir[] = "/tmp/test-virtual-alias-XXXXXX";

/* example.com is ours besides $myorigin (example.org); "fail.example" makes the test fail. */
static int local_domain(const char *domain, void *userdata) {
        (void) userdata;
        if (streq(domain, "fail.example"))
                return -EIO;
        return streq(domain, "example.com");
}

typedef struct Case {
        const char *maps;
        const char *delimiters;
        bool propagate;
        unsigned recursion_limit, expansion_limit, length_limit;
        const char *address;
        int ret;                  /* 0, 1, -ELOOP, -EIO */
        const char *expect;       /* the list joined by spaces, or a piece of the reason */
        VirtualAliasError error;
} Case;

static const Case cases[] = {
        /* Not aliased; no tables at all. */
        { "inline:{ x@example.org=y@example.org }", .address = "a@example.org", .ret = 0, .expect = "a@example.org" },
        { "", .address = "a@example.org", .ret = 0, .expect = "a@example.org" },
        /* One to one, one to many (commas and spaces, angle brackets), recursion. */
        { "inline:{ a@example.org=b@example.net }", .address = "a@example.org", .ret = 1, .expect = "b@example.net" },
        { "inline:{ { list@example.org = x@a.example, y@b.example  <z@c.example> } }", .address = "List@Example.org",
          .ret = 1, .expect = "x@a.example y@b.example z@c.example" },
        { "inline:{ a@example.org=b@example.org, b@example.org=c@example.net }", .address = "a@example.org",
          .ret = 1, .expect = "c@example.net" },
        { "inline:{ { a@example.org = b@example.org, c@example.org }, b@example.org=d@example.net,"
          " c@example.org=e@example.net }", .address = "a@example.org", .ret = 1, .expect = "d@example.net e@example.net" },
        /* Self reference: kept, not expanded again; the others still are. */
        { "inline:{ { a@example.org = a@example.org, b@example.org }, b@example.org=c@example.net }",
          .address = "a@example.org", .ret = 1, .expect = "a@example.org c@example.net" },
        { "inline:{ a@example.org=A@example.org }", .address = "a@example.org", .ret = 1, .expect = "A@example.org" },
        /* Duplicates go, the first stays. */
        { "inline:{ { a@example.org = b@example.net, c@example.org, B@example.net }, c@example.org=b@example.net }",
          .address = "a@example.org", .ret = 1, .expect = "b@example.net" },
        /* user keys only for $myorigin and local domains; @domain last. */
        { "inline:{ alice=bob@example.net }", .address = "alice@example.org", .ret = 1, .expect = "bob@example.net" },
        { "inline:{ alice=bob@example.net }", .address = "alice@example.com", .ret = 1, .expect = "bob@example.net" },
        { "inline:{ alice=bob@example.net }", .address = "alice@remote.example", .ret = 0, .expect = "alice@remote.example" },
        { "inline:{ @example.net=catch@example.org, x@example.net=x@example.org }", .address = "any@example.net",
          .ret = 1, .expect = "catch@example.org" },
        { "inline:{ @example.net=catch@example.org, x@example.net=x@example.org }", .address = "x@example.net",
          .ret = 1, .expect = "x@example.org" },
        { "inline:{ alice=from-user@example.net, @example.org=catch@example.net }", .address = "alice@example.org",
          .ret = 1, .expect = "from-user@example.net" },
        /* @otherdomain: the same user there; bare results get @$myorigin. */
        { "inline:{ @old.example=@new.example }", .address = "joe@old.example", .ret = 1, .expect = "joe@new.example" },
        { "inline:{ a@example.net=postmaster }", .address = "a@example.net", .ret = 1, .expect = "postmaster@example.org" },
        /* Extensions: several delimiters; the full address first; propagation on and off. */
        { "inline:{ user@example.net=u@example.org }", "+-", true, .address = "user+foo@example.net",
          .ret = 1, .expect = "u+foo@example.org" },
        { "inline:{ user@example.net=u@example.org }", "+-", true, .address = "user-foo@example.net",
          .ret = 1, .expect = "u-foo@example.org" },
        { "inline:{ user@example.net=u@example.org }", "+-", false, .address = "user+foo@example.net",
          .ret = 1, .expect = "u@example.org" },
        { "inline:{ user@example.net=u@example.org, user+foo@example.net=special@example.org }", "+", true,
          .address = "user+foo@example.net", .ret = 1, .expect = "special@example.org" },
        { "inline:{ user@example.net=u@example.org }", "+", true, .address = "user.foo@example.net",
          .ret = 0, .expect = "user.foo@example.net" },
        { "inline:{ +foo@example.net=u@example.org }", "+", true, .address = "+foo@example.net",
          .ret = 1, .expect = "u@example.org" },
        { "inline:{ { user@example.net = a@example.org, b@example.org } }", "+", true, .address = "user+x@example.net",
          .ret = 1, .expect = "a+x@example.org b+x@example.org" },
        { "inline:{ alice=bob@example.net }", "+", true, .address = "alice+x@example.com", .ret = 1,
          .expect = "bob+x@example.net" },
        { "inline:{ alice+x=bob@example.net }", "+", true, .address = "alice+x@example.com", .ret = 1,
          .expect = "bob@example.net" },
        /* The catch-all matched the whole address: its user part keeps the extension. A key
         * matched without it: @otherdomain takes the bare user, the extension is propagated. */
        { "inline:{ @example.net=@example.org }", "+", true, .address = "user+x@example.net", .ret = 1,
          .expect = "user+x@example.org" },
        { "inline:{ user@example.net=@example.org }", "+", true, .address = "user+x@example.net", .ret = 1,
          .expect = "user+x@example.org" },
        { "inline:{ user@example.net=@example.org }", "+", false, .address = "user+x@example.net", .ret = 1,
          .expect = "user@example.org" },
        /* Limits and loops. */
        { "inline:{ { a@example.org = b@x.example c@x.example d@x.example e@x.example } }", .expansion_limit = 3,
          .address = "a@example.org", .ret = -ELOOP, .error = VIRTUAL_ALIAS_EXPANSION,
          .expect = "unreasonable virtual_alias_maps map expansion size for a@example.org" },
        { "inline:{ { a@example.org = b@x.example c@x.example d@x.example } }", .expansion_limit = 3,
          .address = "a@example.org", .ret = 1, .expect = "b@x.example c@x.example d@x.example" },
        { "inline:{ a@x.example=b@x.example, b@x.example=c@x.example, c@x.example=d@x.example }", .recursion_limit = 2,
          .address = "a@x.example", .ret = -ELOOP, .error = VIRTUAL_ALIAS_NESTING,
          .expect = "unreasonable virtual_alias_maps map nesting for a@x.example" },
        /* Three lookups: a, b and c (not found); Postfix counts the last one too. */
        { "inline:{ a@x.example=b@x.example, b@x.example=c@x.example }", .recursion_limit = 3,
          .address = "a@x.example", .ret = 1, .expect = "c@x.example" },
        { "inline:{ a@x.example=b@x.example, b@x.example=c@x.example, c@x.example=b@x.example }",
          .address = "a@x.example", .ret = -ELOOP, .error = VIRTUAL_ALIAS_LOOP,
          .expect = "virtual_alias_maps loop for a@x.example: b@x.example -> c@x.example -> b@x.example" },
        { "inline:{ { a@x.example = a@x.example, b@x.example }, b@x.example=a@x.example }",
          .address = "a@x.example", .ret = 0, .expect = "a@x.example" },
        { "inline:{ a@x.example=long-address@x.example }", .length_limit = 20, .address = "a@x.example",
          .ret = -ELOOP, .error = VIRTUAL_ALIAS_LENGTH,
          .expect = "unreasonable virtual_alias_maps result long-address@x.example..." },
        /* Lookup failures and results that hold no address: temporary errors. */
        { "inline:{ @other.example=x@example.org }", .address = "a@fail.example", .ret = -EIO,
          .error = VIRTUAL_ALIAS_TABLE, .expect = "map lookup problem for a@fail.example (key fail.example)" },
        { "inline:{ { a@example.net = , , } }", .address = "a@example.net", .ret = -EIO,
          .error = VIRTUAL_ALIAS_TABLE, .expect = "returns non-address result" },
        { "inline:{ a@example.net=b@bad..example }", .address = "a@example.net", .ret = -EIO,
          .error = VIRTUAL_ALIAS_TABLE, .expect = "returns an invalid address \"b@bad..example\"" },
};

static char *join(char **list) {
        static char buf[4096];
        buf[0] = '\0';
        for (char **p = list; *p; p++)
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", p == list ? "" : " ", *p);
        return buf;
}

static void run(const Case *c, TableList *maps) {
        VirtualAlias va = {
                .maps = maps, .delimiters = c->delimiters, .propagate = c->propagate,
                .recursion_limit = c->recursion_limit, .expansion_limit = c->expansion_limit,
                .address_length_limit = c->length_limit, .myorigin = "example.org",
                .local_domain = local_domain,
        };
        char **list = NULL, *reason = NULL;
        VirtualAliasError e = VIRTUAL_ALIAS_OK;
        int r = virtual_alias_expand(&va, c->address, &list, &e, &reason);
        if (r != c->ret) {
                fprintf(stderr, "%s (%s): returned %d, expected %d (%s)\n", c->address, c->maps, r, c->ret,
                        strna(reason));
                exit(1);
        }
        if (r >= 0) {
                CHECK(list);
                CHECK_STR(join(list), c->expect);
                CHECK(!reason);
                strv_free(list);
        } else {
                CHECK(!list);
                CHECK_INT(e, c->error);
                if (!reason || !strstr(reason, c->expect)) {
                        fprintf(stderr, "%s: reason \"%s\", expected \"%s\"\n", c->address, strna(reason), c->expect);
                        exit(1);
                }
        }
        free(reason);
}

static void test_cases(void) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TableList *maps = NULL;
                char *why = NULL;
                CHECK_INT(table_list_open(cases[i].maps, TABLE_REGSUB_SAFE, &maps, &why), 0);
                run(&cases[i], maps);
                table_list_free(maps);
        }
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs(text, f);
        CHECK(fclose(f) == 0);
}

/* A regexp: table sees only full addresses, and an unsafe $1 skips its rule (with a warning). */
static unsigned warnings;
static void count_warning(const char *line, void *userdata) {
        (void) userdata;
        CHECK(strstr(line, "rx"));
        warnings++;
}

static void test_regexp(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/rx", tmpdir);
        write_file(path, "/^bob@example\\.net$/ carol@example.org\n"
                         "/^(.*)@split\\.example$/ $1@example.org\n");
        snprintf(spec, sizeof spec, "regexp:%s", path);
        TableList *maps = NULL;
        CHECK_INT(table_list_open(spec, TABLE_REGSUB_SAFE, &maps, NULL), 0);
        static const Case rx[] = {
                { "", "+", true, .address = "bob@example.net", .ret = 1, .expect = "carol@example.org" },
                /* bob@example.net would be the key without the extension: never asked of regexp: */
                { "", "+", true, .address = "bob+x@example.net", .ret = 0, .expect = "bob+x@example.net" },
                { "", .address = "dave@split.example", .ret = 1, .expect = "dave@example.org" },
                /* "a,b" would become two addresses: the rule is skipped. */
                { "", .address = "\"a,b\"@split.example", .ret = 0, .expect = "\"a,b\"@split.example" },
        };
        VirtualAlias va = { .maps = maps, .myorigin = "example.org", .warn = count_warning };
        for (size_t i = 0; i < ELEMENTSOF(rx); i++) {
                va.delimiters = rx[i].delimiters;
                va.propagate = rx[i].propagate;
                char **list = NULL;
                int r = virtual_alias_expand(&va, rx[i].address, &list, NULL, NULL);
                CHECK_INT(r, rx[i].ret);
                CHECK_STR(join(list), rx[i].expect);
                strv_free(list);
        }
        CHECK_INT(warnings, 1);
        table_list_free(maps);
        unlink(path);
}

/* A table file that disappears after it was opened fails its lookups: a temporary error. */
static void test_table_error(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/virtual", tmpdir);
        write_file(path, "a@example.net b@example.net\n");
        snprintf(spec, sizeof spec, "texthash:%s", path);
        TableList *maps = NULL;
        CHECK_INT(table_list_open(spec, 0, &maps, NULL), 0);
        CHECK_INT(unlink(path), 0);
        VirtualAlias va = { .maps = maps, .myorigin = "example.org" };
        char **list = NULL, *reason = NULL;
        VirtualAliasError e;
        int r;
        /* The file is checked at most once a second: until then the old contents answer. */
        for (unsigned i = 0; (r = virtual_alias_expand(&va, "a@example.net", &list, &e, &reason)) == 1 && i < 100; i++) {
                list = strv_free(list);
                usleep(50 * 1000);
        }
        CHECK_INT(r, -EIO);
        CHECK_INT(e, VIRTUAL_ALIAS_TABLE);
        CHECK(!list);
        CHECK(strstr(reason, "virtual_alias_maps map lookup problem for a@example.net (key a@example.net)"));
        free(reason);
        table_list_free(maps);
}

/* One address expanding to the expansion limit, each entry looked up again. */
static void test_large(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/big", tmpdir);
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs("all@example.net", f);
        for (unsigned i = 0; i < 1000; i++)
                fprintf(f, " u%u@example.net", i);
        fputs("\n", f);
        for (unsigned i = 0; i < 1000; i++)
                fprintf(f, "u%u@example.net m%u@example.org\n", i, i);
        CHECK(fclose(f) == 0);
        snprintf(spec, sizeof spec, "texthash:%s", path);
        TableList *maps = NULL;
        CHECK_INT(table_list_open(spec, 0, &maps, NULL), 0);
        VirtualAlias va = { .maps = maps, .myorigin = "example.org" };
        char **list = NULL;
        CHECK_INT(virtual_alias_expand(&va, "all@example.net", &list, NULL, NULL), 1);
        size_t n = 0;
        while (list[n])
                n++;
        CHECK_INT(n, 1000);
        CHECK_STR(list[999], "m999@example.org");
        strv_free(list);
        va.expansion_limit = 999;
        CHECK_INT(virtual_alias_expand(&va, "all@example.net", &list, NULL, NULL), -ELOOP);
        table_list_free(maps);
        unlink(path);
}

/* One lookup, no recursion: what a RCPT-time check asks. */
static void test_find(void) {
        TableList *maps = NULL;
        CHECK_INT(table_list_open("inline:{ a@example.net=b@example.net, b@example.net=c@example.net, "
                                  "alice=x@example.net }", 0, &maps, NULL), 0);
        VirtualAlias va = { .maps = maps, .myorigin = "example.org", .delimiters = "+",
                            .local_domain = local_domain };
        char *v = NULL;
        CHECK_INT(virtual_alias_find(&va, "a+x@example.net", &v), 1);
        CHECK_STR(v, "b@example.net");
        free(v);
        CHECK_INT(virtual_alias_find(&va, "alice@example.com", &v), 1);
        CHECK_STR(v, "x@example.net");
        free(v);
        CHECK_INT(virtual_alias_find(&va, "alice@example.net", &v), 0);
        CHECK_INT(virtual_alias_find(&va, "alice@fail.example", &v), -EIO);
        table_list_free(maps);
        va.maps = NULL;
        CHECK_INT(virtual_alias_find(&va, "a@example.net", &v), 0);
}

static void record_expansion(const char *address, const char *key, const char *value, char *const *results,
                             size_t n, void *userdata) {
        char *buf = userdata;
        size_t l = strlen(buf);
        l += (size_t) snprintf(buf + l, 512 - l, "%s [%s = %s] ->", address, key, value);
        for (size_t i = 0; i < n; i++)
                l += (size_t) snprintf(buf + l, 512 - l, " %s", results[i]);
        snprintf(buf + l, 512 - l, "; ");
}

/* VirtualAlias.expanded: each lookup that aliased, with the key that matched, in order. */
static void test_expanded_hook(void) {
        char log[512] = "";
        TableList *maps = NULL;
        CHECK_INT(table_list_open("inline:{ { team@example.net = a@example.net, list@example.net }, "
                                  "{ list@example.net = c@example.org, list@example.net }, @example.org=d@example.com }",
                                  0, &maps, NULL), 0);
        VirtualAlias va = { .maps = maps, .delimiters = "+", .local_domain = local_domain,
                            .expanded = record_expansion, .userdata = log };
        char **list = NULL;
        CHECK_INT(virtual_alias_expand(&va, "team+x@example.net", &list, NULL, NULL), 1);
        CHECK_STR(log, "team+x@example.net [team@example.net = a@example.net, list@example.net] -> a@example.net "
                       "list@example.net; list@example.net [list@example.net = c@example.org, list@example.net] -> "
                       "c@example.org list@example.net; c@example.org [@example.org = d@example.com] -> d@example.com; ");
        strv_free(list);
        table_list_free(maps);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));
        test_expanded_hook();
        test_cases();
        test_find();
        test_regexp();
        test_large();
        test_table_error();
        rmdir(tmpdir);
        return 0;
}
