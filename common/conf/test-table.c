/* test-table.c — unit tests for lookup tables: inline:, static:, texthash:/hash: (plain and
 * aliases(5) syntax, continuation lines, quoted keys and values, comments, key folding, first
 * duplicate wins, reload when the file changes), regexp:, pcre: (Perl syntax, flags; refused
 * without libpcre2), cidr:, sqlite:, unionmap:, pipemap:, randmap:, unix:passwd.byname, lists and
 * bad specs; $number substitution under TABLE_NO_REGSUB and TABLE_REGSUB_SAFE. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "table.h"
#include "basic/tests.h"

static char tmpdir[] = "/tmp/test-table-XXXXXX";

static void write_file(const char *path, const char *text) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "we");
        CHECK(f);
        fputs(text, f);
        CHECK(fclose(f) == 0);
        CHECK(rename(tmp, path) == 0);
}

typedef struct Expect {
        const char *key;
        const char *value;   /* NULL = not found */
} Expect;

static void check_lookups(Table *t, const Expect *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *v = NULL;
                int r = table_lookup(t, e[i].key, &v);
                if (r != (e[i].value ? 1 : 0) || (e[i].value && !streq(v, e[i].value))) {
                        fprintf(stderr, "%s: lookup \"%s\": r=%d value=\"%s\", expected \"%s\"\n",
                                table_spec(t), e[i].key, r, strna(v), strna(e[i].value));
                        exit(1);
                }
                free(v);
        }
}

typedef struct BadTable {
        const char *text;       /* the file's contents */
        const char *reason;     /* substring of the open error */
} BadTable;

/* Writes each text to path and checks that opening spec fails with -EINVAL and the reason. */
static void check_bad_tables(const char *path, const char *spec, const BadTable *bad, size_t n) {
        for (size_t i = 0; i < n; i++) {
                Table *t = NULL;
                char *reason = NULL;
                write_file(path, bad[i].text);
                CHECK_INT(table_open(spec, 0, &t, &reason), -EINVAL);
                if (!strstr(reason, bad[i].reason)) {
                        fprintf(stderr, "%s case %zu: reason \"%s\"\n", spec, i, reason);
                        CHECK(false);
                }
                free(reason);
        }
}

static void test_inline_static(void) {
        static const struct {
                const char *spec;
                Expect e[4];
        } cases[] = {
                { "inline:{ a=1, B=two , { c = with spaces } }",
                  { { "a", "1" }, { "b", "two" }, { "C", "with spaces" }, { "d", NULL } } },
                { "inline:{}", { { "a", NULL } } },
                { "static:OK", { { "anything", "OK" }, { "", "OK" } } },
                { "static:{ some text }", { { "x", "some text" } } },
                { "proxy:static:x", { { "y", "x" } } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Table *t = NULL;
                char *reason = NULL;
                CHECK_INT(table_open(cases[i].spec, 0, &t, &reason), 0);
                CHECK_STR(table_spec(t), cases[i].spec);
                size_t n = 0;
                while (n < ELEMENTSOF(cases[i].e) && cases[i].e[n].key)
                        n++;
                check_lookups(t, cases[i].e, n);
                table_free(t);
        }
}

static void test_bad_specs(void) {
        static const struct {
                const char *spec;
                int r;
                const char *reason;
        } cases[] = {
                { "nis:mail.aliases", -EPROTONOSUPPORT, "unsupported lookup table type \"nis\"" },
                { "ldap:/nonexistent/ldap.cf", HAVE_LDAP ? -ENOENT : -EPROTONOSUPPORT,
                  HAVE_LDAP ? "cannot open /nonexistent/ldap.cf" : "built without libldap" },
                { "nocolon", -EINVAL, "type:name" },
                { ":x", -EINVAL, "type:name" },
                { "", -EINVAL, "empty" },
                { "inline:a=b", -EINVAL, "expected inline:{" },
                { "inline:{ a }", -EINVAL, "has no '='" },
                { "inline:{ =b }", -EINVAL, "empty key" },
                { "hash:/nonexistent/aliases", -ENOENT, "cannot open /nonexistent/aliases" },
                { "texthash:", -EINVAL, "missing file name" },
                { "unix:shadow.byname", -EINVAL, "unknown unix: table" },
                { "hash:/tmp", -EISDIR, "is a directory" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Table *t = NULL;
                char *reason = NULL;
                CHECK_INT(table_open(cases[i].spec, 0, &t, &reason), cases[i].r);
                CHECK(t == NULL);
                CHECK(reason);
                if (!strstr(reason, cases[i].reason)) {
                        fprintf(stderr, "case %zu: reason \"%s\"\n", i, reason);
                        CHECK(false);
                }
                free(reason);
        }
}

static void test_texthash(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/virtual", tmpdir);
        write_file(path,
                   "   orphan continuation\n"
                   "# virtual alias table\n"
                   "info@example.org    alice\n"
                   "Sales@Example.org\tbob, carol\n"
                   "\n"
                   "long@example.org   first,\n"
                   "    second,\n"
                   "# comment inside\n"
                   "\tthird\n"
                   "info@example.org    duplicate-ignored\n"
                   "\"quoted key\"   quoted value\n"
                   "nokeyvalue\n"
                   "trailing@example.org   x   \r\n");
        static const Expect e[] = {
                { "info@example.org", "alice" },
                { "INFO@EXAMPLE.ORG", "alice" },
                { "sales@example.org", "bob, carol" },
                { "long@example.org", "first, second, third" },
                { "quoted key", "quoted value" },
                { "nokeyvalue", NULL },
                { "orphan", NULL },
                { "trailing@example.org", "x" },
                { "missing@example.org", NULL },
        };
        for (int hash = 0; hash < 2; hash++) {
                snprintf(spec, sizeof spec, "%s:%s", hash ? "hash" : "texthash", path);
                Table *t = NULL;
                CHECK_INT(table_open(spec, 0, &t, NULL), 0);
                check_lookups(t, e, ELEMENTSOF(e));
                table_free(t);
        }
}

static void test_aliases(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/aliases", tmpdir);
        write_file(path,
                   "# /etc/aliases\n"
                   "postmaster:    root\n"
                   "MAILER-DAEMON: postmaster\n"
                   "staff: alice,\n"
                   "  bob,\n"
                   "\tcarol\n"
                   "pipe: \"|/usr/bin/procmail -d x\"\n"
                   "\"odd name\": root\n"
                   "nospace:root\n"
                   "spaced   :   root  \n"
                   "broken line without colon\n"
                   "file: /var/log/mail.archive\n");
        static const Expect e[] = {
                { "postmaster", "root" },
                { "mailer-daemon", "postmaster" },
                { "staff", "alice, bob, carol" },
                { "pipe", "\"|/usr/bin/procmail -d x\"" },
                { "odd name", "root" },
                { "nospace", "root" },
                { "spaced", "root" },
                { "broken line without colon", NULL },
                { "broken", NULL },
                { "file", "/var/log/mail.archive" },
        };
        /* file name ends in "aliases": aliases(5) syntax without the flag */
        snprintf(spec, sizeof spec, "hash:%s", path);
        Table *t = NULL;
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        /* another name needs TABLE_ALIASES */
        char other[4200];
        snprintf(other, sizeof other, "%s/local-list", tmpdir);
        CHECK(link(path, other) == 0);
        snprintf(spec, sizeof spec, "texthash:%s", other);
        CHECK_INT(table_open(spec, TABLE_ALIASES, &t, NULL), 0);
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        static const Expect plain[] = { { "postmaster:", "root" }, { "postmaster", NULL } };
        check_lookups(t, plain, ELEMENTSOF(plain));
        table_free(t);
        unlink(other);
}

static void test_reload(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/reload", tmpdir);
        write_file(path, "a 1\n");
        snprintf(spec, sizeof spec, "texthash:%s", path);
        Table *t = NULL;
        usec_t opened = now_usec(CLOCK_MONOTONIC);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        static const Expect before[] = { { "a", "1" }, { "b", NULL } };
        static const Expect after[] = { { "a", "2" }, { "b", "3" } };
        check_lookups(t, before, ELEMENTSOF(before));

        write_file(path, "a 2\nb 3\n");
        /* checked at most once a second: still the old contents right away (unless this machine
         * is so loaded that a second has passed already) */
        if (now_usec(CLOCK_MONOTONIC) - opened < USEC_PER_SEC / 2)
                check_lookups(t, before, ELEMENTSOF(before));
        usleep(1100 * 1000);
        check_lookups(t, after, ELEMENTSOF(after));

        /* a vanished file is a temporary error, not "not found" */
        CHECK(unlink(path) == 0);
        usleep(1100 * 1000);
        char *v = NULL;
        CHECK_INT(table_lookup(t, "a", &v), -ENOENT);
        write_file(path, "a 4\n");
        static const Expect back[] = { { "a", "4" }, { "b", NULL } };
        check_lookups(t, back, ELEMENTSOF(back));
        table_free(t);
}

static void test_large(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/large", tmpdir);
        FILE *f = fopen(path, "we");
        CHECK(f);
        for (int i = 0; i < 100000; i++)
                fprintf(f, "user%d@example.org user%d\n", i, i);
        CHECK(fclose(f) == 0);
        snprintf(spec, sizeof spec, "hash:%s", path);
        Table *t = NULL;
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        static const Expect e[] = { { "user0@example.org", "user0" }, { "user99999@example.org", "user99999" },
                                    { "user100000@example.org", NULL } };
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        /* hostile: an enormous continued line, binary junk; must not crash */
        f = fopen(path, "we");
        CHECK(f);
        fputs("big ", f);
        for (int i = 0; i < 200000; i++)
                fputs(" xxxxxxxxxxxxxxxxxxxx\n", f);
        fputs("k\001\002\377 v\n", f);
        CHECK(fclose(f) == 0);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        static const Expect h[] = { { "big", NULL }, { "k\001\002\377", "v" } };
        check_lookups(t, h, ELEMENTSOF(h));
        table_free(t);
        unlink(path);
}

static void test_regexp(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/regexp", tmpdir);
        write_file(path,
                   "# header checks style\n"
                   "/^(.*)@example\\.org$/     local:$1\n"
                   "/^postmaster@/            OK\n"
                   "/^CaseSensitive$/i        case-sensitive-hit\n"
                   "if /@lists\\./\n"
                   "!/^owner-/                list-member\n"
                   "/^owner-(.*)@(.*)$/       owner of ${1} at $2, costs $$5\n"
                   "endif\n"
                   "/a\\/b/                   slash\n"
                   "#/^never/                 commented\n"
                   "/^multi/\n"
                   "    continued result\n");
        static const Expect e[] = {
                { "alice@example.org", "local:alice" },
                { "ALICE@EXAMPLE.ORG", "local:ALICE" },
                { "postmaster@else.where", "OK" },
                { "CaseSensitive", "case-sensitive-hit" },
                { "casesensitive", NULL },
                { "bob@lists.example.net", "list-member" },
                { "owner-x@lists.example.net", "owner of x at lists.example.net, costs $5" },
                { "owner-x@other.example.net", NULL },
                { "a/b", "slash" },
                { "never", NULL },
                { "multiline", "continued result" },
        };
        snprintf(spec, sizeof spec, "regexp:%s", path);
        Table *t = NULL;
        char *reason = NULL;
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        static const BadTable bad[] = {
                { "/(a/ x\n", ":1: invalid regular expression" },
                { "# c\n/a/ $1\n", ":2: refers to a group" },
                { "/a/q x\n", ":1: unknown pattern flag" },
                { "/a x\n", ":1: missing the closing delimiter" },
                { "/a/\n", ":1: missing the result" },
                { "if /a/\n/b/ c\n", "if without endif" },
                { "endif\n", ":1: endif without if" },
                { "abc def\n", ":1: expected /pattern/" },
                { "!/(a)/ $1\n", ":1: refers to a group" },
        };
        check_bad_tables(path, spec, bad, ELEMENTSOF(bad));
}

/* One lookup with notes: the answer, whether it was substituted, and a warning expected among
 * the notes (NULL: there must be none). */
typedef struct NotedExpect {
        const char *key;
        const char *value;      /* NULL = not found */
        bool substituted;
        const char *warning;    /* substring of the warnings; NULL = no warnings */
} NotedExpect;

static void check_noted(Table *t, const NotedExpect *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *v = NULL;
                TableNotes notes = {};
                int r = table_lookup_full(t, e[i].key, &v, &notes);
                char all[4096] = "";
                for (char **w = notes.warnings; w && *w; w++)
                        snprintf(all + strlen(all), sizeof all - strlen(all), "%s\n", *w);
                bool ok = r == (e[i].value ? 1 : 0) && (!e[i].value || streq(v, e[i].value)) &&
                          notes.substituted == e[i].substituted &&
                          (e[i].warning ? strstr(all, e[i].warning) != NULL : notes.warnings == NULL);
                if (!ok) {
                        fprintf(stderr, "%s: lookup \"%s\": r=%d value=\"%s\" substituted=%d warnings=\"%s\"; "
                                "expected \"%s\" substituted=%d warning \"%s\"\n", table_spec(t), e[i].key, r,
                                strna(v), notes.substituted, all, strna(e[i].value), e[i].substituted,
                                strna(e[i].warning));
                        exit(1);
                }
                free(v);
                table_notes_done(&notes);
        }
}

/* Issue 10: the alias rule "/^(.+)-archive$/ $1, archive" turned a recipient address into a
 * command. Under TABLE_NO_REGSUB such a rule is skipped; under TABLE_REGSUB_SAFE it is skipped
 * when the substituted text holds a separator or routing character. */
static void test_regsub_flags(const char *type) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/regsub.%s", tmpdir, type);
        snprintf(spec, sizeof spec, "%s:%s", type, path);
        write_file(path,
                   "# line 1\n"
                   "/^(.+)-archive$/            $1, archive\n"
                   "/^only-(.+)$/               $1\n"
                   "/^([^,]*),(.*)-two$/        got $2\n"
                   "/^(.*)@(.*)$/               smtp:[$2]\n"
                   "/^price$/                   costs $$5\n"
                   "/^plain-/                   fixed value\n"
                   "/-archive$/                 catch-all\n");
        char line2[4400], line3[4400];
        snprintf(line2, sizeof line2, "%s:2: ", spec);
        snprintf(line3, sizeof line3, "%s:3: ", spec);

        /* No flag: free substitution (header checks, access tables), reported as substituted. */
        Table *t = NULL;
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        const NotedExpect free_sub[] = {
                { "a,\"|touch x\"-archive", "a,\"|touch x\", archive", true, NULL },
                { "alice-archive", "alice, archive", true, NULL },
                { "plain-x", "fixed value", false, NULL },
                { "price", "costs $5", false, NULL },
        };
        check_noted(t, free_sub, ELEMENTSOF(free_sub));
        table_free(t);

        /* TABLE_NO_REGSUB: every matching rule with $number is skipped, whatever the key. */
        CHECK_INT(table_open(spec, TABLE_NO_REGSUB, &t, NULL), 0);
        const NotedExpect no_sub[] = {
                { "a,\"|touch x\"-archive", "catch-all", false, "$number substitution is not allowed" },
                { "alice-archive", "catch-all", false, line2 },
                { "only-x", NULL, false, "skipping this rule" },
                { "plain-x", "fixed value", false, NULL },
                { "price", "costs $5", false, NULL },     /* $$ is not a substitution */
                { "nothing", NULL, false, NULL },
        };
        check_noted(t, no_sub, ELEMENTSOF(no_sub));
        CHECK_INT(table_lookup(t, "only-x", NULL), 0);
        CHECK_INT(table_lookup(t, "plain-y", NULL), 1);
        table_free(t);

        /* TABLE_REGSUB_SAFE: substituted text must not hold a separator or routing character. */
        CHECK_INT(table_open(spec, TABLE_REGSUB_SAFE, &t, NULL), 0);
        const NotedExpect safe_sub[] = {
                { "alice-archive", "alice, archive", true, NULL },
                { "first.last+tag=x_y-archive", "first.last+tag=x_y, archive", true, NULL },
                { "j\xc3\xbcrgen-archive", "j\xc3\xbcrgen, archive", true, NULL },
                { "a,\"|touch x\"-archive", "catch-all", false, "the text for $1 contains ','" },
                { "a b-archive", "catch-all", false, "contains byte 0x20" },
                { "a\tb-archive", "catch-all", false, "contains byte 0x09" },
                { "a\x7f" "b-archive", "catch-all", false, "contains byte 0x7f" },
                { "|cmd-archive", "catch-all", false, "contains '|'" },
                { "/etc/passwd-archive", "catch-all", false, "contains '/'" },
                { "a\\b-archive", "catch-all", false, "contains '\\'" },
                { "a\"b-archive", "catch-all", false, "contains '\"'" },
                { "a'b-archive", "catch-all", false, "contains '''" },
                { "a`b-archive", "catch-all", false, "contains '`'" },
                { "a:b-archive", "catch-all", false, "contains ':'" },
                { "a;b-archive", "catch-all", false, "contains ';'" },
                { "a<b-archive", "catch-all", false, "contains '<'" },
                { "a>b-archive", "catch-all", false, "contains '>'" },
                { "a(b-archive", "catch-all", false, "contains '('" },
                { "a{b-archive", "catch-all", false, "contains '{'" },
                { "a$b-archive", "catch-all", false, "contains '$'" },
                { "a%b-archive", "catch-all", false, "contains '%'" },
                { "a!b-archive", "catch-all", false, "contains '!'" },
                { "only-x]", NULL, false, line3 },
                { "a|b,c-two", "got c", true, NULL },              /* $1 is not used */
                { "a,b|c-two", NULL, false, "the text for $2 contains '|'" },
                { "user@example.org", "smtp:[example.org]", true, NULL },
                { "user@[192.0.2.1]", NULL, false, "the text for $2 contains '['" },
                { "price", "costs $5", false, NULL },
        };
        check_noted(t, safe_sub, ELEMENTSOF(safe_sub));
        table_free(t);

        /* The flags reach the members of composite tables and lists. */
        char list[9000];
        snprintf(list, sizeof list, "unionmap:{ inline:{alice-archive=inline}, %s }", spec);
        TableList *l = NULL;
        CHECK_INT(table_list_open(list, TABLE_NO_REGSUB, &l, NULL), 0);
        char *v = NULL;
        TableNotes notes = {};
        CHECK_INT(table_list_lookup_full(l, "alice-archive", &v, &notes), 1);
        CHECK_STR(v, "inline,catch-all");
        CHECK(!notes.substituted && notes.warnings && strstr(notes.warnings[0], line2) && !notes.warnings[1]);
        free(v);
        table_notes_done(&notes);
        CHECK(notes.warnings == NULL);
        table_list_free(l);
        /* A stage's substituted value stays substituted through the pipe. */
        snprintf(list, sizeof list, "pipemap:{ %s, inline:{alice=final} }, static:none", spec);
        CHECK_INT(table_list_open(list, 0, &l, NULL), 0);
        CHECK_INT(table_list_lookup_full(l, "only-alice", &v, &notes), 1);
        CHECK_STR(v, "final");
        CHECK(notes.substituted && !notes.warnings);
        free(v);
        table_notes_done(&notes);
        CHECK_INT(table_list_lookup(l, "only-alice", &v), 1);
        CHECK_STR(v, "final");
        free(v);
        table_list_free(l);
        unlink(path);
}

static void test_pcre(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/pcre", tmpdir);
        snprintf(spec, sizeof spec, "pcre:%s", path);
        write_file(path, "/^Subject:.*\\d{6}/ six digits\n");
        Table *t = NULL;
        char *reason = NULL;
#if !HAVE_PCRE2
        /* Never read as something else: refused with a clear reason. */
        CHECK_INT(table_open(spec, 0, &t, &reason), -EPROTONOSUPPORT);
        CHECK(t == NULL);
        CHECK(strstr(reason, "pcre: tables are not supported: Postern was built without libpcre2"));
        free(reason);
        unlink(path);
#else
        write_file(path,
                   "# as POSIX regexps these would be errors or match something else\n"
                   "/^Subject:.*\\d{6}/             six digits\n"
                   "/^(?-i)CaseOnly$/               inline option\n"
                   "/^foo(?=bar)/                   lookahead\n"
                   "/^(?<!x)neg(?!ative)\\b/        lookarounds\n"
                   "/^(\\w+)\\s+(\\w+)!$/            $2 $1\n"
                   "/^dot.all$/s                    dotall\n"
                   "/^second$/m                     multiline\n"
                   "/^Exact$/i                      case-sensitive\n"
                   "/ e x t e n d e d # comment/x   extended\n"
                   "/^(u+)/U                        ungreedy $1\n"
                   "/^endonly$/E                    dollar end only\n"
                   "/z/A                            anchored\n"
                   "/^strict$/X                     X accepted\n"
                   "/^a\\/b$/                       escaped delimiter\n"
                   "#/^never/                       commented\n"
                   "if /@lists\\./\n"
                   "!/^owner-/                      list-member\n"
                   "/^owner-(.*)@(.*)$/             owner of ${1} at $2, costs $$5\n"
                   "endif\n"
                   "/^multi/\n"
                   "    continued result\n");
        static const Expect e[] = {
                { "Subject: code 123456", "six digits" },
                { "Subject: code 12345", NULL },
                { "Subject: dddddd", NULL },
                { "CaseOnly", "inline option" },
                { "caseonly", NULL },
                { "foobar", "lookahead" },
                { "foobaz", NULL },
                { "neg here", "lookarounds" },
                { "negative", NULL },
                { "hello \t world!", "world hello" },
                { "dot\nall", "dotall" },
                { "first\nsecond\nthird", "multiline" },
                { "Exact", "case-sensitive" },
                { "exact", NULL },
                { "extended", "extended" },
                { "uuuu", "ungreedy u" },
                { "endonly", "dollar end only" },
                { "endonly\n", NULL },
                { "zebra", "anchored" },
                { "gaze", NULL },
                { "strict", "X accepted" },
                { "a/b", "escaped delimiter" },
                { "never", NULL },
                { "bob@lists.example.net", "list-member" },
                { "owner-x@lists.example.net", "owner of x at lists.example.net, costs $5" },
                { "owner-x@other.example.net", NULL },
                { "multiline", "continued result" },
        };
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        static const BadTable bad[] = {
                { "/(a/ x\n", ":1: invalid regular expression: missing closing parenthesis (at offset 2)" },
                { "# c\n/a/ $1\n", ":2: refers to a group" },
                { "/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)/ $10\n", ":1: only $1 to $9" },
                { "/a/q x\n", ":1: unknown pattern flag (use i, m, s, x, A, E, U or X)" },
                { "/a x\n", ":1: missing the closing delimiter" },
                { "/(?<=a+)b/ x\n", ":1: invalid regular expression" },
                { "/\\k/ x\n", ":1: invalid regular expression" },
                { "/a/\n", ":1: missing the result" },
                { "if /a/\n/b/ c\n", "if without endif" },
                { "!/(a)/ $1\n", ":1: refers to a group" },
        };
        check_bad_tables(path, spec, bad, ELEMENTSOF(bad));

        /* Catastrophic backtracking gives up with a temporary error and a note, never "no match". */
        write_file(path, "/^(a+)+$/ REJECT\n");
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        char key[64];
        memset(key, 'a', sizeof key - 2);
        key[sizeof key - 2] = 'b';
        key[sizeof key - 1] = '\0';
        TableNotes notes = {};
        char *v = NULL;
        CHECK_INT(table_lookup_full(t, key, &v, &notes), -ERANGE);
        CHECK(v == NULL && notes.warnings && strstr(notes.warnings[0], ":1: the match gave up ("));
        table_notes_done(&notes);
        CHECK_INT(table_lookup(t, "aaaa", &v), 1);
        CHECK_STR(v, "REJECT");
        free(v);
        table_free(t);
        unlink(path);
#endif
}

static void test_cidr(void) {
        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/cidr", tmpdir);
        write_file(path,
                   "127.0.0.1        loopback-host\n"
                   "127.0.0.0/8      loopback-net\n"
                   "192.168.0.0/16   lan\n"
                   "[::1]            v6-loopback\n"
                   "2001:db8::/32    doc\n"
                   "if 10.0.0.0/8\n"
                   "!10.1.0.0/16     ten-not-one\n"
                   "endif\n"
                   "0.0.0.0/0        everyone-v4\n");
        static const Expect e[] = {
                { "127.0.0.1", "loopback-host" },
                { "127.0.0.2", "loopback-net" },
                { "192.168.44.1", "lan" },
                { "::1", "v6-loopback" },
                { "[::1]", "v6-loopback" },
                { "2001:db8:1::5", "doc" },
                { "2001:db9::5", NULL },
                { "::ffff:192.168.1.1", "lan" },
                { "10.2.3.4", "ten-not-one" },
                { "10.1.3.4", "everyone-v4" },
                { "8.8.8.8", "everyone-v4" },
                { "not-an-address", NULL },
                { "", NULL },
        };
        snprintf(spec, sizeof spec, "cidr:%s", path);
        Table *t = NULL;
        char *reason = NULL;
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        static const BadTable bad[] = {
                { "10.0.0.1/8 x\n", ":1: address has bits set outside the prefix" },
                { "10.0.0.0/33 x\n", ":1: bad prefix length" },
                { "10.0.0.0/ x\n", ":1: bad prefix length" },
                { "ten x\n", ":1: bad network address" },
                { "\n\n10.0.0.0/8\n", ":3: missing the result" },
        };
        check_bad_tables(path, spec, bad, ELEMENTSOF(bad));
}

static void test_sqlite(void) {
        char db[4200], cf[4200], spec[4300];
        snprintf(db, sizeof db, "%s/virtual.sqlite", tmpdir);
        snprintf(cf, sizeof cf, "%s/sqlite.cf", tmpdir);
        sqlite3 *h = NULL;
        CHECK(sqlite3_open(db, &h) == SQLITE_OK);
        CHECK(sqlite3_exec(h,
                "CREATE TABLE aliases (address TEXT, target TEXT);"
                "INSERT INTO aliases VALUES ('info@example.org', 'alice');"
                "INSERT INTO aliases VALUES ('team@example.org', 'bob');"
                "INSERT INTO aliases VALUES ('team@example.org', 'carol');"
                "INSERT INTO aliases VALUES ('o''neil@example.org', 'quoted');"
                "CREATE TABLE domains (name TEXT, tld TEXT);"
                "INSERT INTO domains VALUES ('example', 'org');",
                NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(h);

        FILE *f = fopen(cf, "we");
        CHECK(f);
        fprintf(f, "# virtual aliases\ndbpath = %s\nquery = SELECT target FROM aliases\n"
                   "    WHERE address = '%%s'\nresult_format = %%s@mail.example\ndomain = example.org\n", db);
        CHECK(fclose(f) == 0);
        snprintf(spec, sizeof spec, "sqlite:%s", cf);
        Table *t = NULL;
        char *reason = NULL;
        int r = table_open(spec, 0, &t, &reason);
        if (r < 0)
                fprintf(stderr, "%s\n", strna(reason));
        CHECK_INT(r, 0);
        static const Expect e[] = {
                { "info@example.org", "alice@mail.example" },
                { "INFO@Example.org", "alice@mail.example" },
                { "team@example.org", "bob@mail.example,carol@mail.example" },
                { "o'neil@example.org", "quoted@mail.example" },
                { "x' OR '1'='1@example.org", NULL },
                { "info@other.org", NULL },
                { "info", NULL },
        };
        check_lookups(t, e, ELEMENTSOF(e));
        table_free(t);

        f = fopen(cf, "we");
        CHECK(f);
        fprintf(f, "dbpath = %s\nquery = SELECT name || '/' || '%%u' FROM domains WHERE name = '%%2' AND tld = '%%1'\n", db);
        CHECK(fclose(f) == 0);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        static const Expect e2[] = {
                { "joe@mx.example.org", "example/joe" },
                { "joe@example.net", NULL },
                { "joe@org", NULL },
                { "joe", NULL },
        };
        check_lookups(t, e2, ELEMENTSOF(e2));
        table_free(t);

        static const struct {
                const char *text, *reason;
        } bad[] = {
                { "query = SELECT 1\n", "needs both dbpath and query" },
                { "dbpath = /nonexistent/x.sqlite\nquery = SELECT 1\n", "cannot open database" },
                { "hosts = x\n", ":1: hosts: unknown setting for a sqlite table" },
                { "junk\n", ":1: expected" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                f = fopen(cf, "we");
                CHECK(f);
                fputs(bad[i].text, f);
                CHECK(fclose(f) == 0);
                CHECK(table_open(spec, 0, &t, &reason) < 0);
                if (!reason || !strstr(reason, bad[i].reason)) {
                        fprintf(stderr, "sqlite case %zu: reason \"%s\"\n", i, strna(reason));
                        CHECK(false);
                }
                free(reason);
        }

        /* a broken query is a temporary error, not "not found" */
        f = fopen(cf, "we");
        CHECK(f);
        fprintf(f, "dbpath = %s\nquery = SELECT nope FROM missing WHERE x = '%%s'\n", db);
        CHECK(fclose(f) == 0);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        char *v = NULL;
        CHECK_INT(table_lookup(t, "a", &v), -EIO);
        table_free(t);
}

static void test_composite(void) {
        static const struct {
                const char *spec;
                Expect e[3];
        } cases[] = {
                { "unionmap:{ inline:{a=1, b=2}, inline:{a=3}, static:s }",
                  { { "a", "1,3,s" }, { "b", "2,s" }, { "c", "s" } } },
                { "unionmap:{ inline:{a=1}, inline:{a=3} }", { { "a", "1,3" }, { "z", NULL } } },
                { "pipemap:{ inline:{a=b, x=y}, inline:{b=final} }", { { "a", "final" }, { "x", NULL }, { "q", NULL } } },
                { "randmap:{ only }", { { "anything", "only" } } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Table *t = NULL;
                char *reason = NULL;
                int r = table_open(cases[i].spec, 0, &t, &reason);
                if (r < 0)
                        fprintf(stderr, "%s: %s\n", cases[i].spec, strna(reason));
                CHECK_INT(r, 0);
                size_t n = 0;
                while (n < ELEMENTSOF(cases[i].e) && cases[i].e[n].key)
                        n++;
                check_lookups(t, cases[i].e, n);
                table_free(t);
        }
        Table *t = NULL;
        CHECK_INT(table_open("randmap:{ a, b, c }", 0, &t, NULL), 0);
        bool seen[3] = {};
        for (int i = 0; i < 200; i++) {
                char *v = NULL;
                CHECK_INT(table_lookup(t, "k", &v), 1);
                CHECK(strlen(v) == 1 && v[0] >= 'a' && v[0] <= 'c');
                seen[v[0] - 'a'] = true;
                free(v);
        }
        CHECK(seen[0] && seen[1] && seen[2]);
        table_free(t);

        static const char *const bad[] = { "unionmap:inline:{a=1}", "pipemap:{}", "randmap:{ }", "unionmap:{ nis:x }" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *reason = NULL;
                CHECK(table_open(bad[i], 0, &t, &reason) < 0);
                CHECK(reason);
                free(reason);
        }
}

static void test_unix(void) {
        Table *t = NULL;
        CHECK_INT(table_open("unix:passwd.byname", 0, &t, NULL), 0);
        char *v = NULL;
        CHECK_INT(table_lookup(t, "root", &v), 1);
        CHECK(strncmp(v, "root:", 5) == 0);
        CHECK(strstr(v, ":0:0:"));
        free(v);
        CHECK_INT(table_lookup(t, "ROOT", &v), 1);
        free(v);
        CHECK_INT(table_lookup(t, "no-such-user-xyzzy", &v), 0);
        table_free(t);

        CHECK_INT(table_open("proxy:unix:group.byname", 0, &t, NULL), 0);
        CHECK_INT(table_lookup(t, "root", &v), 1);
        CHECK(strncmp(v, "root:", 5) == 0);
        free(v);
        table_free(t);
}

static void test_list(void) {
        char path[4200], specs[9000];
        snprintf(path, sizeof path, "%s/aliases", tmpdir);
        write_file(path, "postmaster: root\nalice: bob\n");
        snprintf(specs, sizeof specs, "inline:{ alice=override }, hash:%s,\n static:fallback", path);
        TableList *l = NULL;
        CHECK_INT(table_list_open(specs, 0, &l, NULL), 0);
        CHECK_INT(table_list_size(l), 3);
        static const struct { const char *k, *v; } cases[] = {
                { "alice", "override" }, { "postmaster", "root" }, { "nobody", "fallback" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *v = NULL;
                CHECK_INT(table_list_lookup(l, cases[i].k, &v), 1);
                CHECK_STR(v, cases[i].v);
                free(v);
        }
        table_list_free(l);

        CHECK_INT(table_list_open("", 0, &l, NULL), 0);
        CHECK_INT(table_list_size(l), 0);
        char *v = NULL;
        CHECK_INT(table_list_lookup(l, "x", &v), 0);
        table_list_free(l);

        /* Partial keys skip pattern tables (Postfix's fixed-string lookups). */
        char rx[4200];
        snprintf(rx, sizeof rx, "%s/rx", tmpdir);
        write_file(rx, "/^alice/ from-regexp\n");
        snprintf(specs, sizeof specs, "regexp:%s, inline:{ alice=from-inline }", rx);
        CHECK_INT(table_list_open(specs, 0, &l, NULL), 0);
        CHECK_INT(table_list_lookup(l, "alice", &v), 1);
        CHECK_STR(v, "from-regexp");
        free(v);
        CHECK_INT(table_list_lookup_fixed(l, "alice", &v), 1);
        CHECK_STR(v, "from-inline");
        free(v);
        CHECK_INT(table_list_lookup_fixed(l, "alice2", &v), 0);
        table_list_free(l);
        unlink(rx);

        char *reason = NULL;
        CHECK_INT(table_list_open("static:x, nis:mail.aliases", 0, &l, &reason), -EPROTONOSUPPORT);
        CHECK(strstr(reason, "nis"));
        free(reason);
        unlink(path);
}

static void record_lookup(const char *spec, const char *key, int r, const char *value, void *userdata) {
        char *buf = userdata;
        size_t l = strlen(buf);
        snprintf(buf + l, 512 - l, "%s %s %d %s; ", spec, key, r, value ? value : "-");
}

/* table_trace_set(): hits and failures, once per outer lookup (not per union: member), off again. */
static void test_trace(void) {
        char log[512] = "";
        TableList *l = NULL;
        CHECK_INT(table_list_open("inline:{ a=1 }, unionmap:{ inline:{b=2} }", 0, &l, NULL), 0);
        table_trace_set(record_lookup, log);
        char *v = NULL;
        CHECK_INT(table_list_lookup(l, "a", &v), 1);
        free(v);
        CHECK_INT(table_list_lookup(l, "B", NULL), 1);
        CHECK_INT(table_list_lookup(l, "c", NULL), 0);
        CHECK_STR(log, "inline:{ a=1 } a 1 1; unionmap:{ inline:{b=2} } B 1 2; ");
        table_trace_set(NULL, NULL);
        CHECK_INT(table_list_lookup(l, "a", NULL), 1);
        CHECK_STR(log, "inline:{ a=1 } a 1 1; unionmap:{ inline:{b=2} } B 1 2; ");
        table_list_free(l);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));
        test_trace();
        test_inline_static();
        test_bad_specs();
        test_texthash();
        test_aliases();
        test_reload();
        test_large();
        test_regexp();
        test_pcre();
        test_regsub_flags("regexp");
#if HAVE_PCRE2
        test_regsub_flags("pcre");
#endif
        test_cidr();
        test_sqlite();
        test_composite();
        test_unix();
        test_list();
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        (void) !system(cmd);
        return 0;
}
