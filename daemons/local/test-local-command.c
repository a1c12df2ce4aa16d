/* test-local-command.c — unit test of how local(8) commands are run and what precedes a copy:
 * local_command_argv() (local_command_shell, direct execution, /bin/sh -c),
 * local_format_headers() (X-Original-To: in Postfix's order) and
 * local_mailbox_command_target() (mailbox_command_maps over mailbox_command, root as
 * default_privs, a failing table defers). */
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>

#include "basic/tests.h"
#include "local.h"

static void check_argv(const char *shell, const char *command, const char *const *expect) {
        char **argv = local_command_argv(shell, command);
        CHECK(argv);
        size_t i = 0;
        for (; expect[i]; i++)
                CHECK_STR(argv[i], expect[i]);
        CHECK(!argv[i]);
        strv_free(argv);
}

static void test_argv(void) {
        /* local_command_shell: its words, then the command as one argument, always. */
        check_argv("/usr/sbin/smrsh -c", "/bin/true a b", (const char *const[]) {
                           "/usr/sbin/smrsh", "-c", "/bin/true a b", NULL });
        /* Plain words and a program that is found: executed directly. */
        check_argv("", "/bin/true a  b", (const char *const[]) { "/bin/true", "a", "b", NULL });
        check_argv(NULL, "/usr/bin/env -i FOO=bar user@example.org 100%", (const char *const[]) {
                           "/usr/bin/env", "-i", "FOO=bar", "user@example.org", "100%", NULL });
        /* Shell syntax, a built-in, a program not in /usr/bin:/bin: the shell. */
        check_argv("", "/usr/bin/procmail -a \"$EXTENSION\"", (const char *const[]) {
                           "/bin/sh", "-c", "/usr/bin/procmail -a \"$EXTENSION\"", NULL });
        check_argv("", "exit 75", (const char *const[]) { "/bin/sh", "-c", "exit 75", NULL });
        check_argv("", "cat > out", (const char *const[]) { "/bin/sh", "-c", "cat > out", NULL });
        check_argv("", "no-such-program-here x", (const char *const[]) {
                           "/bin/sh", "-c", "no-such-program-here x", NULL });
        /* A name without "/" is looked for in /usr/bin:/bin. */
        char **argv = local_command_argv("", "true");
        CHECK(argv && argv[0][0] == '/' && access(argv[0], X_OK) == 0 && !argv[1]);
        strv_free(argv);
}

static void test_headers(void) {
        DeliveryInput in = { .sender = "s@example.org", .delivered_to = "bob@example.com",
                             .original_to = "Info@Example.com" };
        StrBuf b = STRBUF_INIT;
        CHECK_INT(local_format_headers(&in, &b), 0);
        CHECK_STR(b.data, "Return-Path: <s@example.org>\nX-Original-To: Info@Example.com\n"
                          "Delivered-To: bob@example.com\n");
        strbuf_reset(&b);
        in.original_to = NULL;
        in.sender = "";
        CHECK_INT(local_format_headers(&in, &b), 0);
        CHECK_STR(b.data, "Return-Path: <>\nDelivered-To: bob@example.com\n");
        strbuf_done(&b);
}

static TableList *tables(const char *spec) {
        TableList *l = NULL;
        char *reason = NULL;
        CHECK_INT(table_list_open(spec, TABLE_NO_REGSUB, &l, &reason), 0);
        free(reason);
        return l;
}

static void test_target(void) {
        struct passwd alice = { .pw_name = (char *) "alice", .pw_uid = 1234, .pw_gid = 2345,
                                .pw_dir = (char *) "/home/alice", .pw_shell = (char *) "/bin/zsh" };
        struct passwd root = { .pw_name = (char *) "root", .pw_uid = 0, .pw_gid = 0,
                               .pw_dir = (char *) "/root", .pw_shell = (char *) "/bin/bash" };
        LocalSettings s = { .default_privs = (char *) "nobody" };
        Target *t = NULL;

        /* Neither set: mailbox delivery goes on. */
        CHECK_INT(local_mailbox_command_target(&s, &alice, "alice@example.com", &t), 0);
        CHECK(!t);

        s.mailbox_command = (char *) "/usr/bin/procmail -a \"$EXTENSION\"";
        CHECK_INT(local_mailbox_command_target(&s, &alice, "alice+x@example.com", &t), 1);
        CHECK_INT(t->kind, TARGET_COMMAND);
        CHECK(t->mailbox_command && !t->done);
        CHECK_STR(t->path, "|/usr/bin/procmail -a \"$EXTENSION\"");   /* no $name expansion */
        CHECK_STR(t->address, "alice+x@example.com");
        CHECK_STR(t->user, "alice");
        CHECK_STR(t->home, "/home/alice");
        CHECK_STR(t->shell, "/bin/zsh");
        CHECK_INT(t->uid, 1234);
        CHECK_INT(t->gid, 2345);
        t = target_free(t);

        /* The table wins for the users it knows; the others get mailbox_command. */
        s.mailbox_command_maps = tables("inline:{ alice=/usr/bin/maildrop }");
        CHECK_INT(local_mailbox_command_target(&s, &alice, "alice@example.com", &t), 1);
        CHECK_STR(t->path, "|/usr/bin/maildrop");
        t = target_free(t);
        struct passwd bob = alice;
        bob.pw_name = (char *) "bob";
        CHECK_INT(local_mailbox_command_target(&s, &bob, "bob@example.com", &t), 1);
        CHECK_STR(t->path, "|/usr/bin/procmail -a \"$EXTENSION\"");
        t = target_free(t);

        /* root: default_privs' rights, root's home and shell. */
        struct passwd *nobody = getpwnam("nobody");
        if (nobody) {
                CHECK_INT(local_mailbox_command_target(&s, &root, "root@example.com", &t), 1);
                CHECK_INT(t->kind, TARGET_COMMAND);
                CHECK_STR(t->user, "nobody");
                CHECK_INT(t->uid, nobody->pw_uid);
                CHECK_STR(t->home, "/root");
                t = target_free(t);
        }
        s.default_privs = (char *) "no-such-user-postern-test";
        CHECK_INT(local_mailbox_command_target(&s, &root, "root@example.com", &t), 1);
        CHECK_INT(t->kind, TARGET_RESULT);
        CHECK_STR(t->dsn, "4.3.5");
        t = target_free(t);
        table_list_free(s.mailbox_command_maps);
}

int main(void) {
        test_argv();
        test_headers();
        test_target();
        return 0;
}
