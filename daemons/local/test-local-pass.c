/* test-local-pass.c — unit test of local-pass.c: the order of mailbox_transport_maps,
 * mailbox_transport, fallback_transport_maps and fallback_transport, the routes they give, and
 * the values that defer (no transport, the local transport, a table that fails). */
#include <stdio.h>
#include <unistd.h>

#include "basic/tests.h"
#include "local.h"

static TableList *tables(const char *spec) {
        TableList *l = NULL;
        char *reason = NULL;
        int r = table_list_open(spec, 0, &l, &reason);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", spec, strna(reason));
        CHECK_INT(r, 0);
        free(reason);
        return l;
}

typedef struct Case {
        const char *user;
        bool known;
        int r;                   /* 0: no pass */
        TargetKind kind;
        const char *via_or_dsn;  /* TARGET_PASS: the route; TARGET_RESULT: the dsn */
} Case;

static void check(const LocalSettings *s, const Case *c) {
        Target *t = NULL;
        int r = local_pass_target(s, c->user, "addr@example.test", c->known, &t);
        if (r != c->r || (t && t->kind != c->kind))
                fprintf(stderr, "user %s known %d: r %d kind %d\n", c->user, c->known, r, t ? (int) t->kind : -1);
        CHECK_INT(r, c->r);
        if (r == 0) {
                CHECK(!t);
                return;
        }
        CHECK_INT(t->kind, c->kind);
        CHECK_STR(t->address, "addr@example.test");
        if (c->kind == TARGET_PASS) {
                CHECK(!t->done);
                CHECK_STR(t->via, c->via_or_dsn);
        } else {
                CHECK(t->done);
                CHECK_STR(t->dsn, c->via_or_dsn);
        }
        target_free(t);
}

static void test_order(void) {
        LocalSettings s = {
                .mailbox_transport = (char *) "lmtp:unix:private/dovecot-lmtp",
                .mailbox_transport_maps = tables("inline:{ alice=dovecot, bob=relay:[mx.test]:25, "
                                                 "loop=local:x, empty=:nexthop, bad=a/b }"),
                .fallback_transport = (char *) "error:5.1.1 gone",
                .fallback_transport_maps = tables("inline:{ ghost=smtp:[192.0.2.1] }"),
        };
        static const Case c[] = {
                { "alice", true, 1, TARGET_PASS, "dovecot:" },
                { "Alice", true, 1, TARGET_PASS, "dovecot:" },                /* keyed lower-case */
                { "bob", true, 1, TARGET_PASS, "relay:[mx.test]:25" },
                { "carol", true, 1, TARGET_PASS, "lmtp:unix:private/dovecot-lmtp" },
                { "ghost", false, 1, TARGET_PASS, "lmtp:unix:private/dovecot-lmtp" }, /* mailbox_ first */
                { "loop", true, 1, TARGET_RESULT, "4.3.5" },
                { "empty", true, 1, TARGET_RESULT, "4.3.5" },
                { "bad", true, 1, TARGET_RESULT, "4.3.5" },
        };
        for (size_t i = 0; i < ELEMENTSOF(c); i++)
                check(&s, &c[i]);

        /* Without mailbox_transport: users in passwd keep their mailbox, the others fall back. */
        s.mailbox_transport = (char *) "";
        static const Case f[] = {
                { "carol", true, 0, 0, NULL },
                { "ghost", true, 0, 0, NULL },
                { "ghost", false, 1, TARGET_PASS, "smtp:[192.0.2.1]" },
                { "nobody-else", false, 1, TARGET_PASS, "error:5.1.1 gone" },
                { "alice", false, 1, TARGET_PASS, "dovecot:" },
        };
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                check(&s, &f[i]);

        s.fallback_transport = (char *) " retry:later ";   /* blanks trimmed */
        check(&s, &(const Case) { "nobody-else", false, 1, TARGET_PASS, "retry:later" });
        s.fallback_transport = (char *) "local";
        check(&s, &(const Case) { "nobody-else", false, 1, TARGET_RESULT, "4.3.5" });
        s.fallback_transport = NULL;
        check(&s, &(const Case) { "nobody-else", false, 0, 0, NULL });
        table_list_free(s.mailbox_transport_maps);
        table_list_free(s.fallback_transport_maps);
}

/* A table that fails defers (4.3.0), never falls through to the next step: an sqlite: table
 * whose query names a table the (empty) database lacks. */
static void test_table_failure(void) {
        char dir[] = "/tmp/test-local-pass-XXXXXX";
        CHECK(mkdtemp(dir));
        _cleanup_free_ char *db = NULL, *cf = NULL, *spec = NULL;
        CHECK(asprintf(&db, "%s/empty.sqlite", dir) > 0);
        CHECK(asprintf(&cf, "%s/sqlite.cf", dir) > 0);
        CHECK(asprintf(&spec, "sqlite:%s", cf) > 0);
        FILE *f = fopen(db, "we");
        CHECK(f && fclose(f) == 0);
        f = fopen(cf, "we");
        CHECK(f);
        fprintf(f, "dbpath = %s\nquery = SELECT transport FROM missing WHERE user = '%%s'\n", db);
        CHECK(fclose(f) == 0);
        LocalSettings s = { .mailbox_transport = (char *) "lmtp:inet:[127.0.0.1]:24",
                            .mailbox_transport_maps = tables(spec) };
        check(&s, &(const Case) { "carol", true, 1, TARGET_RESULT, "4.3.0" });
        Target *t = NULL;
        CHECK_INT(local_pass_target(&s, "Carol", "carol@x", true, &t), 1);
        CHECK(strstr(t->diag, "mailbox_transport_maps lookup failure for \"carol\""));
        target_free(t);
        table_list_free(s.mailbox_transport_maps);
        CHECK_INT(unlink(cf), 0);
        CHECK_INT(unlink(db), 0);
        CHECK_INT(rmdir(dir), 0);
}

int main(void) {
        test_order();
        test_table_failure();
        return 0;
}
