/* test-table-cf.c — unit tests for the .cf tables' shared parts and the ldap: configuration:
 * %-expansion of queries and result formats (%s %u %d %1..%9 %S %U %D %%, suppression), RFC 4515
 * filter escaping (a key with * ( ) \ never changes a filter), RFC 4514 DN escaping, SQL quote
 * doubling and a server's own escaping function (pgsql:, mysql:), result joining and the domain
 * filter, the .cf reader (comments, continuation lines, last value wins, unknown settings), ldap:
 * settings that are refused at open (bad values, bind_pw in a world-readable file, no libldap),
 * and lmdb:/cdb:/hash: open without a binary file. Lookups against a real slapd are in
 * tests/integration/test_table_ldap.py. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "table-cf.h"
#include "table.h"
#include "basic/tests.h"

static char tmpdir[] = "/tmp/test-table-cf-XXXXXX";

typedef struct Expand {
        const char *fmt, *value, *key;
        TableEscape esc;
        int r;
        const char *out;
} Expand;

static void test_expand(void) {
        static const Expand cases[] = {
                { "(mail=%s)", "alice@example.org", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(mail=alice@example.org)" },
                { "(&(uid=%u)(dc=%d))", "alice@example.org", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(&(uid=alice)(dc=example.org))" },
                { "%S %U %D", "a@b.c", NULL, TABLE_ESCAPE_NONE, 0, "a@b.c a b.c" },
                { "%1.%2.%3", "u@mail.example.org", NULL, TABLE_ESCAPE_NONE, 0, "org.example.mail" },
                { "%4", "u@mail.example.org", NULL, TABLE_ESCAPE_NONE, 1, NULL },      /* too few labels */
                { "%1", "nodomain", NULL, TABLE_ESCAPE_NONE, 1, NULL },
                { "(d=%d)", "nodomain", NULL, TABLE_ESCAPE_NONE, 1, NULL },           /* no domain: suppressed */
                { "(u=%u)", "@example.org", NULL, TABLE_ESCAPE_NONE, 1, NULL },        /* empty local part */
                { "(u=%u)", "postmaster", NULL, TABLE_ESCAPE_NONE, 0, "(u=postmaster)" }, /* whole key */
                { "100%% %s", "x", NULL, TABLE_ESCAPE_NONE, 0, "100% x" },
                /* filter escaping: none of these can close, widen or extend the filter */
                { "(mail=%s)", "*", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(mail=\\2a)" },
                { "(mail=%s)", "a*)(uid=*", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(mail=a\\2a\\29\\28uid=\\2a)" },
                { "(mail=%s)", "x\\29", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(mail=x\\5c29)" },
                { "(uid=%u)", "a(b)*@x.y", NULL, TABLE_ESCAPE_LDAP_FILTER, 0, "(uid=a\\28b\\29\\2a)" },
                /* DN escaping in search_base */
                { "uid=%u,dc=x", "a,b=c+d@x.y", NULL, TABLE_ESCAPE_LDAP_DN, 0, "uid=a\\,b\\=c\\+d,dc=x" },
                { "cn=%s", " #lead ", NULL, TABLE_ESCAPE_LDAP_DN, 0, "cn=\\ #lead\\ " },
                { "cn=%s", "#x", NULL, TABLE_ESCAPE_LDAP_DN, 0, "cn=\\#x" },
                /* result_format: %s %u %d of the value, %S %U %D %1 of the key */
                { "%d/%u/", "alice@vdomain.test", "k@key.test", TABLE_ESCAPE_NONE, 0, "vdomain.test/alice/" },
                { "%s via %D (%1)", "v", "k@key.test", TABLE_ESCAPE_NONE, 0, "v via key.test (test)" },
                { "%U+%s", "r@x", "who@key.test", TABLE_ESCAPE_NONE, 0, "who+r@x" },
                { "%d", "novalue-domain", "k@key.test", TABLE_ESCAPE_NONE, 1, NULL },
                { "%u+%D@relay.%1", "alice@mail.example", "joe@example.org", TABLE_ESCAPE_NONE, 0, "alice+example.org@relay.org" },
                { "%s", "o'neil", "joe@example.org", TABLE_ESCAPE_NONE, 0, "o'neil" },    /* results are not escaped */
                /* SQL (sqlite:, and pgsql:/mysql: before a connection): quotes doubled */
                { "WHERE a = '%s'", "x' OR '1'='1", NULL, TABLE_ESCAPE_SQL_QUOTE, 0, "WHERE a = 'x'' OR ''1''=''1'" },
                { "%u|%d|%1|%2|%3|%%", "o'n@mx.example.org", NULL, TABLE_ESCAPE_SQL_QUOTE, 0, "o''n|mx.example.org|org|example|mx|%" },
                { "%x", "joe", NULL, TABLE_ESCAPE_SQL_QUOTE, 0, "%x" },   /* unknown: kept (refused at open) */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Expand *c = &cases[i];
                _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
                int r = table_cf_expand(c->fmt, c->value, c->key, c->esc, &b);
                if (r != c->r || (c->out && !streq(strempty(b.data), c->out))) {
                        fprintf(stderr, "case %zu: \"%s\" with \"%s\": r=%d \"%s\", expected %d \"%s\"\n", i, c->fmt,
                                c->value, r, strempty(b.data), c->r, strempty(c->out));
                        exit(1);
                }
        }
        /* every byte a key may hold: the filter keeps exactly one "(" and one ")" */
        char key[256];
        for (int i = 1; i < 256; i++)
                key[i - 1] = (char) i;
        key[255] = '\0';
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        CHECK_INT(table_cf_expand("(mail=%s)", key, NULL, TABLE_ESCAPE_LDAP_FILTER, &b), 0);
        size_t open = 0, close = 0, stars = 0;
        for (const char *p = b.data; *p; p++) {
                open += *p == '(';
                close += *p == ')';
                stars += *p == '*';
                if (*p == '\\')
                        CHECK(strchr("0123456789abcdef", p[1]) && strchr("0123456789abcdef", p[2]));
        }
        CHECK_INT(open, 1);
        CHECK_INT(close, 1);
        CHECK_INT(stars, 0);

        char *why = NULL;
        CHECK_INT(table_cf_check_format("(a=%s)(b=%x)", "query_filter", &why), -EINVAL);
        CHECK(why && strstr(why, "query_filter") && strstr(why, "%x"));
        free(why);
        CHECK_INT(table_cf_check_format("%s%u%d%S%U%D%1%9%%", "x", NULL), 0);
        CHECK_INT(table_cf_check_format("trailing %", "x", NULL), -EINVAL);
}

/* A stand-in for a server's own escaping (libpq, libmariadb) that differs from quote doubling. */
static int backslash_escape(void *userdata, StrBuf *out, const char *text, size_t len) {
        (*(int *) userdata)++;
        int r = 0;
        for (size_t i = 0; i < len && r >= 0; i++)
                r = (text[i] == '\'' || text[i] == '\\') ? strbuf_printf(out, "\\%c", text[i]) : strbuf_putc(out, text[i]);
        return r;
}

/* table_cf_expand_fn(): every part of the key goes through the server's function, with its
 * userdata (the connection); results are never escaped. */
static void test_expand_fn(void) {
        int calls = 0;
        _cleanup_strbuf_ StrBuf a = STRBUF_INIT;
        CHECK_INT(table_cf_expand_fn("'%s'", "x\\' OR 1=1 -- ", NULL, backslash_escape, &calls, &a), 0);
        CHECK_STR(a.data, "'x\\\\\\' OR 1=1 -- '");
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        CHECK_INT(table_cf_expand_fn("'%u' '%D' %%", "o'neil@example.org", NULL, backslash_escape, &calls, &b), 0);
        CHECK_STR(b.data, "'o\\'neil' 'example.org' %");
        CHECK_INT(calls, 3);
        _cleanup_strbuf_ StrBuf c = STRBUF_INIT;
        CHECK_INT(table_cf_expand_fn("'%d'", "joe", NULL, backslash_escape, &calls, &c), 1);
        _cleanup_strbuf_ StrBuf d = STRBUF_INIT;
        CHECK_INT(table_cf_expand_fn("%s", "o'neil", "k", NULL, NULL, &d), 0);
        CHECK_STR(d.data, "o'neil");
}

/* table_cf_result_add(): formatted, comma-joined; empty and suppressed values left out. */
static void test_result_add(void) {
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        CHECK_INT(table_cf_result_add("%u@%D", "a@x", "k@key.test", &out), 1);
        CHECK_INT(table_cf_result_add("%u@%D", "", "k@key.test", &out), 0);
        CHECK_INT(table_cf_result_add("%d", "nodomain", "k@key.test", &out), 0);
        CHECK_INT(table_cf_result_add("%s", "b", "k@key.test", &out), 1);
        CHECK_STR(out.data, "a@key.test,b");
        CHECK(!table_cf_domain_ok((char *[]) { (char *) "key.test", NULL }, "@key.test"));
        CHECK(table_cf_domain_ok((char *[]) { (char *) "key.test", NULL }, "k@KEY.test"));
        CHECK(table_cf_domain_ok(NULL, "anything"));
}

static void test_cf_reader(void) {
        char path[256];
        snprintf(path, sizeof path, "%s/a.cf", tmpdir);
        test_write_file(path,
                   "# comment\n"
                   "\n"
                   "server_host = ldap://one\n"
                   "query_filter = (&(objectClass=x)\n"
                   "    (mail=%s))\n"
                   "server_host = ldap://two   \n"
                   "typo_setting = 1\n", 0600);
        _cleanup_(table_cf_freep) TableCf *cf = NULL;
        CHECK_INT(table_cf_read(path, &cf, NULL), 0);
        CHECK_STR(table_cf_get(cf, "server_host"), "ldap://two");
        CHECK_STR(table_cf_get(cf, "query_filter"), "(&(objectClass=x) (mail=%s))");
        CHECK(!table_cf_get(cf, "missing"));
        CHECK(!table_cf_world_readable(cf));
        unsigned line = 0;
        CHECK_STR(table_cf_unknown(cf, &line), "typo_setting");
        CHECK_INT(line, 7);

        snprintf(path, sizeof path, "%s/bad.cf", tmpdir);
        test_write_file(path, "no equals sign here\n", 0600);
        char *why = NULL;
        _cleanup_(table_cf_freep) TableCf *bad = NULL;
        CHECK_INT(table_cf_read(path, &bad, &why), -EINVAL);
        CHECK(why && strstr(why, "bad.cf:1:"));
        free(why);
}

typedef struct Refuse {
        const char *text;
        mode_t mode;
        const char *reason;   /* part of the reason; NULL = opens */
} Refuse;

static void test_ldap_open(void) {
        char path[256], spec[300];
        snprintf(path, sizeof path, "%s/ldap.cf", tmpdir);
        snprintf(spec, sizeof spec, "ldap:%s", path);
        if (!HAVE_LDAP) {
                test_write_file(path, "search_base = dc=x\n", 0600);
                Table *t = NULL;
                char *why = NULL;
                CHECK_INT(table_open(spec, 0, &t, &why), -EPROTONOSUPPORT);
                CHECK(why && strstr(why, "without libldap"));
                free(why);
                return;
        }
        static const Refuse cases[] = {
                { "server_host = ldap://127.0.0.1:1\nsearch_base = dc=x\n", 0644, NULL },
                { "server_host = a.example b.example:3389, ldapi://%2Ftmp%2Fs\nserver_port = 1389\n", 0644, NULL },
                { "bind = no\nscope = one\nversion = 2\nstart_tls = yes\ntimeout = 3\nsize_limit = 5\n"
                  "expansion_limit = 4\ndomain = a.example, b.example\ndereference = 3\nchase_referrals = yes\n"
                  "special_result_attribute = member\nleaf_result_attribute = mail\n"
                  "terminal_result_attribute = maildrop\nresult_format = %d/%u/\ncache = no\n", 0644, NULL },
                { "bind_dn = cn=admin,dc=x\nbind_pw = secret\n", 0640, NULL },
                { "bind_dn = cn=admin,dc=x\nbind_pw = secret\n", 0644, "readable by everyone" },
                { "scope = tree\n", 0644, "scope = tree: expected sub, one or base" },
                { "bind = sasl\n", 0644, "not supported: bind = sasl" },
                { "bind = maybe\n", 0644, "bind = maybe" },
                { "version = 4\n", 0644, "version = 4" },
                { "server_port = 70000\n", 0644, "server_port = 70000" },
                { "timeout = soon\n", 0644, "timeout = soon" },
                { "query_filter = (mail=%q)\n", 0644, "query_filter: invalid %-escape \"%q\"" },
                { "result_format = %\n", 0644, "result_format" },
                { "start_tls = perhaps\n", 0644, "start_tls = perhaps" },
                { "serverhost = ldap://x\n", 0644, "ldap.cf:1: serverhost: unknown or unsupported setting" },
                { "result_attribute =\n", 0644, "no result_attribute" },
                { "tls_cert = /etc/x.pem\n", 0644, "ldap.cf:1: not supported: tls_cert" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                test_write_file(path, cases[i].text, cases[i].mode);
                Table *t = NULL;
                char *why = NULL;
                int r = table_open(spec, 0, &t, &why);
                if ((r == 0) != !cases[i].reason || (cases[i].reason && (!why || !strstr(why, cases[i].reason)))) {
                        fprintf(stderr, "case %zu: r=%d reason \"%s\", expected \"%s\"\n", i, r, strempty(why),
                                strempty(cases[i].reason));
                        exit(1);
                }
                if (cases[i].reason)   /* the reason names the file */
                        CHECK(strstr(why, path));
                free(why);
                table_free(t);
        }
        /* no server: a temporary error, never "not found"; and again on the next lookup */
        test_write_file(path, "server_host = ldap://127.0.0.1:1\nsearch_base = dc=x\ntimeout = 2\nbind = no\n", 0644);
        Table *t = NULL;
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        char *v = NULL;
        CHECK(table_lookup(t, "alice@example.org", &v) < 0);
        CHECK(table_lookup(t, "alice@example.org", &v) < 0);
        CHECK(!v);
        table_free(t);
        /* a key outside domain is not searched: not found without asking the (absent) server */
        test_write_file(path, "server_host = ldap://127.0.0.1:1\ndomain = example.org\n", 0644);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        CHECK_INT(table_lookup(t, "alice@example.net", &v), 0);
        CHECK_INT(table_lookup(t, "alice", &v), 0);
        CHECK(table_lookup(t, "alice@example.org", &v) < 0);
        table_free(t);
}

static void test_dbfile_fallback(void) {
        char path[256], spec[300];
        snprintf(path, sizeof path, "%s/virtual", tmpdir);
        test_write_file(path, "Alice@Example.org alice/\n", 0644);
        static const char *const types[] = { "lmdb", "cdb", "hash", "btree" };
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                /* only the source text: read like hash: */
                snprintf(spec, sizeof spec, "%s:%s", types[i], path);
                Table *t = NULL;
                char *v = NULL;
                CHECK_INT(table_open(spec, 0, &t, NULL), 0);
                CHECK_INT(table_lookup(t, "alice@example.org", &v), 1);
                CHECK_STR(v, "alice/");
                free(v);
                table_free(t);
        }
        /* a .lmdb/.cdb file that is not one: refused at open, naming it */
        for (size_t i = 0; i < 2; i++) {
                if (i == 0 ? !HAVE_LMDB : !HAVE_CDB)
                        continue;
                char bin[300];
                snprintf(bin, sizeof bin, "%s.%s", path, types[i]);
                test_write_file(bin, "not a database", 0644);
                snprintf(spec, sizeof spec, "%s:%s", types[i], path);
                Table *t = NULL;
                char *why = NULL;
                CHECK(table_open(spec, 0, &t, &why) < 0);
                CHECK(why && strstr(why, bin));
                free(why);
                CHECK(unlink(bin) == 0);
        }
        /* hash: with only a .db file (here not a Berkeley DB one): read with libdb, so refused
         * naming the file; without libdb refused saying to keep the source text */
        char db[300];
        snprintf(path, sizeof path, "%s/transport", tmpdir);
        snprintf(db, sizeof db, "%s.db", path);
        test_write_file(db, "berkeley", 0644);
        snprintf(spec, sizeof spec, "hash:%s", path);
        Table *t = NULL;
        char *why = NULL;
        CHECK_INT(table_open(spec, 0, &t, &why), HAVE_BDB ? -EIO : -ENOENT);
        CHECK(why && strstr(why, db) && (HAVE_BDB || strstr(why, "source text")));
        free(why);
        /* with the source text next to it, the source text is read (the .db is not looked at) */
        test_write_file(path, "example.org smtp:[relay.example]\n", 0644);
        char *v = NULL;
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        CHECK_INT(table_lookup(t, "example.org", &v), 1);
        CHECK_STR(v, "smtp:[relay.example]");
        free(v);
        table_free(t);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));
        test_expand();
        test_expand_fn();
        test_result_add();
        test_cf_reader();
        test_ldap_open();
        test_dbfile_fallback();
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        CHECK(system(cmd) == 0);
        return 0;
}
