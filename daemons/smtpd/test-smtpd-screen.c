/* test-smtpd-screen.c — unit tests for the screening stage's pure parts (smtpd-screen.c: the
 * values of postscreen_access_list tables, where postscreen_cache_map puts the cache, the client
 * text of a PREGREET line) and its cache (smtpd-screen-cache.c): entries found, replaced, fresh
 * until their pregreet pass expires, removed by the cleanup only after the retention time and in
 * batches, kept across a reopen, and a file that is not a database refused with the reason; the
 * deep tests' columns (due when expired or never passed) and the non-SMTP command test's matcher
 * of postscreen_forbidden_commands (smtpd-screen-engine.c). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "smtpd.h"
#include "basic/tests.h"

static void test_access_value(void) {
        static const struct {
                const char *value;
                int r;
                ScreenVerdict v;
        } t[] = {
                { "permit", 0, SCREEN_PERMIT },
                { "PERMIT", 0, SCREEN_PERMIT },
                { "reject", 0, SCREEN_REJECT },
                { "REJECT spammer", 0, SCREEN_REJECT },
                { "dunno", 0, SCREEN_DUNNO },
                { "OK", -EINVAL, 0 },
                { "rejected", -EINVAL, 0 },
                { "", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                ScreenVerdict v = SCREEN_DUNNO;
                CHECK_INT(screen_access_value(t[i].value, &v), t[i].r);
                if (t[i].r == 0)
                        CHECK_INT(v, t[i].v);
        }
}

static void test_site_parse(void) {
        static const struct {
                const char *text, *domain, *filter;
                int weight;
                const char *why;   /* NULL: valid */
        } t[] = {
                { "zen.example", "zen.example", NULL, 1, NULL },
                { "zen.example*3", "zen.example", NULL, 3, NULL },
                { "zen.example=127.0.0.[2..11]*3", "zen.example", "127.0.0.[2..11]", 3, NULL },
                { "zen.example=127.0.0.[2;14;13]", "zen.example", "127.0.0.[2;14;13]", 1, NULL },
                { "list.dnswl.example=127.0.[0..255].[1..3]*-2", "list.dnswl.example", "127.0.[0..255].[1..3]", -2, NULL },
                { "=127.0.0.2", NULL, NULL, 0, "no domain" },
                { "zen.example*", NULL, NULL, 0, "weight" },
                { "zen.example*x", NULL, NULL, 0, "weight" },
                { "zen.example=127.0.0", NULL, NULL, 0, "filter" },
                { "zen.example=127.0.0.[2..", NULL, NULL, 0, "filter" },
                { "zen.example=127.0.0.2.5", NULL, NULL, 0, "filter" },
                { "zen.example=127.0.0.x", NULL, NULL, 0, "filter" },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                ScreenSite s = {};
                const char *why = NULL;
                int r = screen_site_parse(t[i].text, &s, &why);
                if (t[i].why) {
                        CHECK_INT(r, -EINVAL);
                        CHECK(why && strstr(why, t[i].why));
                        continue;
                }
                CHECK_INT(r, 0);
                CHECK_STR(s.domain, t[i].domain);
                CHECK(!s.filter == !t[i].filter);
                if (t[i].filter)
                        CHECK_STR(s.filter, t[i].filter);
                CHECK_INT(s.weight, t[i].weight);
                screen_site_done(&s);
        }
        /* the filter syntax is reject_rbl_client's matcher's */
        CHECK(smtpd_dnsbl_filter_match("127.0.0.[2..11]", (const uint8_t[]) { 127, 0, 0, 11 }));
        CHECK(!smtpd_dnsbl_filter_match("127.0.0.[2..11]", (const uint8_t[]) { 127, 0, 0, 12 }));
        CHECK(smtpd_dnsbl_filter_match("127.0.0.[2;14;13]", (const uint8_t[]) { 127, 0, 0, 14 }));
}

static void test_cache_path(void) {
        static const struct {
                const char *map, *path;
                bool replaced;
        } t[] = {
                { "sqlite:/var/lib/ps.db", "/var/lib/ps.db", false },
                { "/srv/cache.db", "/srv/cache.db", false },
                { "", "", false },
                { "btree:$data_directory/postscreen_cache", "/q/postscreen_cache.db", true },
                { "proxy:btree:/var/lib/postfix/postscreen_cache", "/q/postscreen_cache.db", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                bool replaced = !t[i].replaced;
                _cleanup_free_ char *p = screen_cache_path_for(t[i].map, "/q", &replaced);
                CHECK_STR(p, t[i].path);
                CHECK(replaced == t[i].replaced);
        }
}

static void test_pregreet_text(void) {
        char buf[512];
        screen_pregreet_text("EHLO x\r\n", 8, buf, sizeof buf);
        CHECK_STR(buf, "EHLO x\\r\\n");
        screen_pregreet_text("\x16\x03\x01\\", 4, buf, sizeof buf);   /* a TLS ClientHello, a backslash */
        CHECK_STR(buf, "\\026\\003\\001\\134");
        char big[300];
        memset(big, 'A', sizeof big);
        screen_pregreet_text(big, sizeof big, buf, sizeof buf);
        CHECK_INT(strlen(buf), 100);   /* at most 100 bytes of what came */
        char small[8];
        screen_pregreet_text("\r\r\r\r\r", 5, small, sizeof small);
        CHECK(strlen(small) < sizeof small);
}

static void test_cache(void) {
        char dir[] = "/tmp/test-smtpd-screen-XXXXXX";
        CHECK(mkdtemp(dir));
        char path[256];
        snprintf(path, sizeof path, "%s/postscreen_cache.db", dir);

        _cleanup_free_ char *why = NULL;
        ScreenCache *c = NULL;
        CHECK_INT(screen_cache_open(path, &c, &why), 0);
        CHECK_STR(screen_cache_path(c), path);
        ScreenEntry e = {};
        CHECK_INT(screen_cache_get(c, "192.0.2.1", &e), 0);
        CHECK(!screen_cache_fresh(NULL, false, 1000));

        CHECK_INT(screen_cache_put(c, "192.0.2.1", &(ScreenEntry) { .greet = 2000, .updated = 1000 }), 0);
        CHECK_INT(screen_cache_put(c, "192.0.2.1", &(ScreenEntry) { .greet = 5000, .dnsbl = 3000, .updated = 1500 }), 0);
        CHECK_INT(screen_cache_get(c, "192.0.2.1", &e), 1);
        CHECK(e.greet == 5000 && e.dnsbl == 3000 && e.updated == 1500);   /* replaced */
        CHECK(screen_cache_fresh(&e, false, 4999));
        CHECK(!screen_cache_fresh(&e, false, 5000));
        /* with DNS lists configured their pass must hold too */
        CHECK(screen_cache_fresh(&e, true, 2999));
        CHECK(!screen_cache_fresh(&e, true, 3000));

        /* retention: an entry that expired at 5000 stays until 5000 + retention */
        CHECK_INT(screen_cache_cleanup_batch(c, 5500, 1000, 100), 0);
        CHECK_INT(screen_cache_cleanup_batch(c, 6001, 1000, 100), 1);
        CHECK_INT(screen_cache_get(c, "192.0.2.1", &e), 0);

        /* batches */
        for (int i = 0; i < 25; i++) {
                char a[32];
                snprintf(a, sizeof a, "198.51.100.%d", i);
                CHECK_INT(screen_cache_put(c, a, &(ScreenEntry) { .greet = 100, .updated = 50 }), 0);
        }
        CHECK_INT(screen_cache_put(c, "2001:db8::1", &(ScreenEntry) { .greet = 99999, .updated = 50 }), 0);
        CHECK_INT(screen_cache_cleanup_batch(c, 1000, 0, 10), 10);
        CHECK_INT(screen_cache_cleanup_batch(c, 1000, 0, 10), 10);
        CHECK_INT(screen_cache_cleanup_batch(c, 1000, 0, 10), 5);
        CHECK_INT(screen_cache_cleanup_batch(c, 1000, 0, 10), 0);
        c = screen_cache_free(c);

        /* kept across a reopen */
        CHECK_INT(screen_cache_open(path, &c, &why), 0);
        CHECK_INT(screen_cache_get(c, "2001:db8::1", &e), 1);
        CHECK(e.greet == 99999);
        c = screen_cache_free(c);

        /* in memory */
        CHECK_INT(screen_cache_open("", &c, &why), 0);
        CHECK_INT(screen_cache_put(c, "192.0.2.9", &(ScreenEntry) { .greet = 1, .updated = 1 }), 0);
        c = screen_cache_free(c);

        /* not a database */
        char junk[256];
        snprintf(junk, sizeof junk, "%s/junk.db", dir);
        FILE *f = fopen(junk, "w");
        CHECK(f);
        fputs("this is not an SQLite database, just text that is long enough to look like a header......\n", f);
        fclose(f);
        CHECK_INT(screen_cache_open(junk, &c, &why), -EIO);
        CHECK(why && strstr(why, "not a database"));
        CHECK(!c);

        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK_INT(system(cmd), 0);
}

static void test_forbidden_command(void) {
        char *list[] = { "CONNECT", "GET", "post", "X-Probe:", NULL };
        static const struct {
                const char *line;
                bool forbidden;
        } t[] = {
                { "CONNECT mail.example:443 HTTP/1.0", true },
                { "connect mail.example:443 HTTP/1.0", true },   /* no case */
                { "GET / HTTP/1.0", true },
                { "GET", true },
                { "POST /cgi-bin/x HTTP/1.1", true },
                { "GETX /", false },                              /* the whole word */
                { "X-Probe: 1", true },                          /* a "Word:" entry */
                { "x-probe: 1", true },
                { "Host: mail.example", true },                  /* any header form */
                { "User-Agent:curl", true },
                { "Subject : hi", true },                        /* blanks before the colon */
                { "MAIL FROM:<a@example.org>", false },          /* a space before the colon */
                { "RCPT TO:<b@example.org>", false },
                { "EHLO client.test", false },
                { ": no label", false },
                { "", false },
                { "XYZZY", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                if (screen_forbidden_command(list, t[i].line) != t[i].forbidden)
                        fprintf(stderr, "line \"%s\"\n", t[i].line);
                CHECK(screen_forbidden_command(list, t[i].line) == t[i].forbidden);
        }
        CHECK(!screen_forbidden_command(NULL, "GET /"));   /* an empty list: only headers */
        CHECK(screen_forbidden_command(NULL, "Host: x"));
}

static void test_deep_todo(void) {
        unsigned all = SCREEN_TEST_PIPELINING | SCREEN_TEST_NON_SMTP | SCREEN_TEST_BARE_NEWLINE;
        ScreenEntry e = { .greet = 2000, .pipelining = 2000, .non_smtp = 500, .bare_newline = 0 };
        CHECK_INT(screen_cache_deep_todo(NULL, all, 1000), all);
        CHECK_INT(screen_cache_deep_todo(&e, all, 1000), SCREEN_TEST_NON_SMTP | SCREEN_TEST_BARE_NEWLINE);
        CHECK_INT(screen_cache_deep_todo(&e, SCREEN_TEST_PIPELINING, 1000), 0);
        CHECK_INT(screen_cache_deep_todo(&e, SCREEN_TEST_PIPELINING, 2000), SCREEN_TEST_PIPELINING);
        CHECK_INT(screen_cache_deep_todo(&e, 0, 1000), 0);

        /* the columns round-trip, and an entry whose deep pass still holds survives the cleanup */
        _cleanup_(screen_cache_freep) ScreenCache *c = NULL;
        _cleanup_free_ char *why = NULL;
        CHECK_INT(screen_cache_open("", &c, &why), 0);
        CHECK_INT(screen_cache_put(c, "192.0.2.50", &(ScreenEntry) { .greet = 10, .updated = 5, .pipelining = 90000,
                                                                      .non_smtp = 80000, .bare_newline = 70000 }), 0);
        CHECK_INT(screen_cache_put(c, "192.0.2.51", &(ScreenEntry) { .greet = 10, .updated = 5 }), 0);
        CHECK_INT(screen_cache_cleanup_batch(c, 1000, 0, 100), 1);
        ScreenEntry got = {};
        CHECK_INT(screen_cache_get(c, "192.0.2.50", &got), 1);
        CHECK(got.pipelining == 90000 && got.non_smtp == 80000 && got.bare_newline == 70000 && got.greet == 10);
        CHECK_INT(screen_cache_get(c, "192.0.2.51", &got), 0);
}

int main(void) {
        test_forbidden_command();
        test_deep_todo();
        test_access_value();
        test_site_parse();
        test_cache_path();
        test_pregreet_text();
        test_cache();
        return 0;
}
