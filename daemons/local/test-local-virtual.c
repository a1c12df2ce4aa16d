/* test-local-virtual.c — unit test of local-virtual.c (virtual(8) resolution: lookup order,
 * Maildir or mbox, owners, what defers and what bounces) and local_mkdir_parents(), with
 * inline:/static: tables built from settings the test sets itself (no configuration file). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "basic/tests.h"
#include "local.h"

static TableList *tables(const char *spec) {
        TableList *l = NULL;
        char *reason = NULL;
        if (!spec)
                return NULL;
        CHECK_INT(table_list_open(spec, 0, &l, &reason), 0);
        free(reason);
        return l;
}

typedef struct Case {
        const char *address;
        TargetKind kind;
        const char *path_or_dsn;   /* kind RESULT: the dsn */
        const char *diag;          /* kind RESULT */
        unsigned uid, gid;
} Case;

static void check_cases(const LocalSettings *s, const Case *c, size_t n) {
        for (size_t i = 0; i < n; i++) {
                Target **t = NULL;
                size_t k = 0;
                CHECK_INT(local_virtual_resolve(s, c[i].address, &t, &k), 0);
                CHECK_INT(k, 1);
                if (t[0]->kind != c[i].kind)
                        fprintf(stderr, "case %zu (%s): kind %d, diag %s\n", i, c[i].address, t[0]->kind,
                                strna(t[0]->diag));
                CHECK_INT(t[0]->kind, c[i].kind);
                if (c[i].kind == TARGET_RESULT) {
                        CHECK(t[0]->done);
                        CHECK_STR(t[0]->dsn, c[i].path_or_dsn);
                        CHECK_STR(t[0]->diag, c[i].diag);
                } else {
                        CHECK(t[0]->virtual && !t[0]->done && !t[0]->user);
                        CHECK_STR(t[0]->path, c[i].path_or_dsn);
                        CHECK_INT(t[0]->uid, c[i].uid);
                        CHECK_INT(t[0]->gid, c[i].gid);
                }
                target_free(t[0]);
                free(t);
        }
}

static void test_resolve(void) {
        LocalSettings s = {
                .recipient_delimiter = (char *) "+-",
                .virtual_mailbox_base = (char *) "/vmail",
                .virtual_minimum_uid = 100,
                .virtual_mailbox_maps = tables("inline:{ a@ex.test=ex/a/, b@ex.test=ex/b, "
                                               "c-x@ex.test=ex/cx/, @ex.test=ex/all/, "
                                               "d@other.test=other/d/, e@other.test=other/e/ }"),
                .virtual_uid_maps = tables("inline:{ a@ex.test=2001, @ex.test=2000, d@other.test=99, "
                                           "e@other.test=x12 }"),
                .virtual_gid_maps = tables("static:3000"),
        };
        static const Case c[] = {
                { "a@ex.test", TARGET_MAILDIR, "/vmail/ex/a/", NULL, 2001, 3000 },
                { "A@EX.test", TARGET_MAILDIR, "/vmail/ex/a/", NULL, 2001, 3000 },
                { "a+tag@ex.test", TARGET_MAILDIR, "/vmail/ex/a/", NULL, 2001, 3000 },
                { "a-tag@ex.test", TARGET_MAILDIR, "/vmail/ex/a/", NULL, 2001, 3000 },
                { "b@ex.test", TARGET_MBOX, "/vmail/ex/b", NULL, 2000, 3000 },
                { "c-x@ex.test", TARGET_MAILDIR, "/vmail/ex/cx/", NULL, 2000, 3000 },
                { "c-y@ex.test", TARGET_MAILDIR, "/vmail/ex/all/", NULL, 2000, 3000 },
                { "zz@ex.test", TARGET_MAILDIR, "/vmail/ex/all/", NULL, 2000, 3000 },
                { "+a@ex.test", TARGET_MAILDIR, "/vmail/ex/all/", NULL, 2000, 3000 },
                { "z@other.test", TARGET_RESULT, "5.1.1", "unknown user: \"z@other.test\"", 0, 0 },
                { "Z@Other.Test", TARGET_RESULT, "5.1.1", "unknown user: \"z@other.test\"", 0, 0 },
                { "nodomain", TARGET_RESULT, "5.1.1", "unknown user: \"nodomain\"", 0, 0 },
                { "d@other.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
                { "e@other.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
        };
        check_cases(&s, c, ELEMENTSOF(c));

        /* A uid below virtual_minimum_uid, a gid of 0, an owner nobody knows, a relative base. */
        s.virtual_minimum_uid = 2001;
        static const Case below[] = {
                { "a@ex.test", TARGET_MAILDIR, "/vmail/ex/a/", NULL, 2001, 3000 },
                { "b@ex.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
        };
        check_cases(&s, below, ELEMENTSOF(below));
        s.virtual_minimum_uid = 100;
        table_list_free(s.virtual_gid_maps);
        s.virtual_gid_maps = tables("inline:{ a@ex.test=0 }");
        static const Case gid[] = {
                { "a@ex.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
                { "b@ex.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
        };
        check_cases(&s, gid, ELEMENTSOF(gid));
        table_list_free(s.virtual_gid_maps);
        s.virtual_gid_maps = NULL;   /* empty: nobody's gid is known */
        check_cases(&s, gid + 1, 1);
        s.virtual_gid_maps = tables("static:3000");
        s.virtual_mailbox_base = (char *) "vmail";
        check_cases(&s, gid + 1, 1);
        s.virtual_mailbox_base = (char *) "/vmail";

        /* No extension handling without recipient_delimiter; no mailbox maps: nobody is known. */
        s.recipient_delimiter = (char *) "";
        static const Case nodelim[] = {
                { "a+tag@ex.test", TARGET_MAILDIR, "/vmail/ex/all/", NULL, 2000, 3000 },
        };
        check_cases(&s, nodelim, ELEMENTSOF(nodelim));
        table_list_free(s.virtual_mailbox_maps);
        s.virtual_mailbox_maps = NULL;
        static const Case nomaps[] = {
                { "a@ex.test", TARGET_RESULT, "5.1.1", "unknown user: \"a@ex.test\"", 0, 0 },
        };
        check_cases(&s, nomaps, ELEMENTSOF(nomaps));

        /* A result with a control character would break a marker line. */
        s.virtual_mailbox_maps = tables("static:{ex/a\tb/}");
        static const Case ctl[] = {
                { "a@ex.test", TARGET_RESULT, "4.3.5", "mail system configuration error", 0, 0 },
        };
        check_cases(&s, ctl, ELEMENTSOF(ctl));

        table_list_free(s.virtual_mailbox_maps);
        table_list_free(s.virtual_uid_maps);
        table_list_free(s.virtual_gid_maps);
}

static void test_mkdir_parents(void) {
        char base[] = "/tmp/test-local-virtual-XXXXXX";
        char path[256];
        struct stat st;

        CHECK(mkdtemp(base));
        snprintf(path, sizeof(path), "%s/a/b/c/", base);
        CHECK_INT(local_mkdir_parents(path), 0);
        snprintf(path, sizeof(path), "%s/a/b", base);
        CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
        snprintf(path, sizeof(path), "%s/a/b/c", base);
        CHECK(stat(path, &st) < 0);                    /* the last component is the caller's */
        snprintf(path, sizeof(path), "%s/a/b/mbox", base);
        CHECK_INT(local_mkdir_parents(path), 0);       /* all there already */
        CHECK_INT(local_mkdir_parents("/"), 0);
        CHECK_INT(local_mkdir_parents("relative"), 0);
        snprintf(path, sizeof(path), "%s/file", base);
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        close(fd);
        snprintf(path, sizeof(path), "%s/file/x/y", base);
        CHECK_INT(local_mkdir_parents(path), -ENOTDIR);

        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
        CHECK_INT(system(cmd), 0);
}

int main(void) {
        test_resolve();
        test_mkdir_parents();
        return 0;
}
