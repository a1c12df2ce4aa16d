/* test-master-pipe.c — unit tests for pipe(8) entries: attribute parsing and its errors, argv
 * macro expansion (one word per recipient, $name and ${name}, the q/u/h flags, unknown macros)
 * and the command's input (F R D O B . > and eol=). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "master-pipe.h"
#include "basic/tests.h"

static int parse(const char *line, PipeSpec *ret, char **ret_error) {
        MasterCf m = {};
        _cleanup_free_ char *err = NULL;
        CHECK(master_cf_parse(line, "master.cf", &m, &err) == 0);
        CHECK(m.n == 1);
        int r = pipe_spec_parse(&m.entries[0], ret, ret_error);
        master_cf_done(&m);
        return r;
}

static void test_parse(void) {
        PipeSpec p = {};
        char *err = NULL;
        CHECK(parse("dovecot unix - n n - - pipe flags=DRhu user=vmail:mail size=1000 eol=\\r\\n "
                    "null_sender= argv=/usr/lib/dovecot/deliver -f ${sender} -d ${recipient}\n", &p, &err) == 0);
        CHECK_INT(p.flags, PIPE_F_DELIVERED | PIPE_F_RETURN_PATH | PIPE_F_FOLD_HOST | PIPE_F_FOLD_USER);
        CHECK_STR(p.user, "vmail");
        CHECK_STR(p.group, "mail");
        CHECK_INT(p.size_limit, 1000);
        CHECK_STR(p.eol, "\r\n");
        CHECK_STR(p.null_sender, "");
        CHECK_STR(p.argv[0], "/usr/lib/dovecot/deliver");
        CHECK_STR(p.argv[4], "${recipient}");
        CHECK(p.argv[5] == NULL);
        pipe_spec_done(&p);

        static const struct { const char *line; const char *error; } bad[] = {
                { "x unix - n n - - pipe flags=DZ user=a argv=/bin/true\n", "unknown flag 'Z' in flags=DZ" },
                { "x unix - n n - - pipe flags=D argv=/bin/true\n", "user= is missing" },
                { "x unix - n n - - pipe user=root argv=/bin/true\n", "user=root: delivery as root is not allowed" },
                { "x unix - n n - - pipe user=a:root argv=/bin/true\n", "user=a: delivery as root is not allowed" },
                { "x unix - n n - - pipe user=a\n", "argv= is missing" },
                { "x unix - n n - - pipe user=a size=big argv=/bin/true\n", "invalid size=big" },
                { "x unix - n n - - pipe user=a bogus=1 argv=/bin/true\n", "unknown attribute \"bogus=1\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                err = NULL;
                CHECK(parse(bad[i].line, &p, &err) == -EINVAL);
                CHECK_STR(err, bad[i].error);
                free(err);
        }
}

static void test_expand(void) {
        PipeSpec p = {};
        char *err = NULL;
        CHECK(parse("x unix - n n - - pipe user=a argv=/bin/x -f $sender -d${recipient} ${user}+${extension} "
                    "${domain} ${nexthop} $size ${mailbox} ${original_recipient} $$5 ${client_address}\n",
                    &p, &err) == 0);
        const char *rcpts[] = { "Alice+Box@Example.ORG", "bob@example.org" };
        const char *origs[] = { "orig@example.org", NULL };
        PipeVars v = { .sender = "s@example.net", .recipients = rcpts, .orig_recipients = origs, .n_recipients = 2,
                       .nexthop = "Example.ORG", .recipient_delimiter = "+", .size = 1234,
                       .client_address = "127.0.0.1" };
        char **argv = NULL;
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == 0);
        static const char *const want[] = {
                "/bin/x", "-f", "s@example.net", "-dAlice+Box@Example.ORG", "-dbob@example.org", "Alice+Box",
                "bob+", "Example.ORG", "example.org", "Example.ORG", "1234", "Alice+Box", "bob",
                "orig@example.org", "bob@example.org", "$5", "127.0.0.1",
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                CHECK_STR(argv[i], want[i]);
        CHECK(argv[ELEMENTSOF(want)] == NULL);
        strv_free(argv);

        /* h and u fold, q quotes; the null sender is null_sender= */
        p.flags = PIPE_F_FOLD_HOST | PIPE_F_FOLD_USER | PIPE_F_QUOTE;
        strv_free(p.argv);
        p.argv = calloc(4, sizeof(char *));
        p.argv[0] = strdup("/bin/x");
        p.argv[1] = strdup("${recipient}");
        p.argv[2] = strdup("$sender");
        const char *r1[] = { "Odd Name@Example.ORG" };
        v = (PipeVars) { .sender = "", .recipients = r1, .n_recipients = 1 };
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == 0);
        CHECK_STR(argv[1], "\"odd name\"@example.org");
        CHECK_STR(argv[2], "MAILER-DAEMON");
        strv_free(argv);
        /* quoted in the queue: kept with q, taken off without */
        const char *r2[] = { "\"a b\"@example.org" };
        v = (PipeVars) { .sender = "", .recipients = r2, .n_recipients = 1 };
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == 0);
        CHECK_STR(argv[1], "\"a b\"@example.org");
        strv_free(argv);
        p.flags = 0;
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == 0);
        CHECK_STR(argv[1], "a b@example.org");
        strv_free(argv);

        free(p.argv[1]);
        p.argv[1] = strdup("${nosuch}");
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == -EINVAL);
        CHECK_STR(err, "unknown macro \"nosuch\" in argv=");
        free(err);
        free(p.argv[1]);
        p.argv[1] = strdup("${sender");
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == -EINVAL);
        free(err);
        pipe_spec_done(&p);
}

/* Debian's stock uucp entry: a relative command, $name forms ended by punctuation. */
static void test_debian_uucp(void) {
        PipeSpec p = {};
        char *err = NULL;
        CHECK(parse("uucp unix - n n - - pipe\n  flags=Fqhu user=uucp argv=uux -r -n -z -a$sender - "
                    "$nexthop!rmail ($recipient)\n", &p, &err) == 0);
        const char *rcpts[] = { "A@Example.ORG", "b@example.org" };
        PipeVars v = { .sender = "s@x.org", .recipients = rcpts, .n_recipients = 2, .nexthop = "Gate.Example" };
        char **argv = NULL;
        CHECK(pipe_argv_expand(&p, &v, &argv, &err) == 0);
        static const char *const want[] = { "uux", "-r", "-n", "-z", "-as@x.org", "-", "gate.example!rmail",
                                            "(a@example.org)", "(b@example.org)" };
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                CHECK_STR(argv[i], want[i]);
        CHECK(argv[ELEMENTSOF(want)] == NULL);
        strv_free(argv);
        pipe_spec_done(&p);
}

static void test_input(void) {
        PipeSpec p = {};
        char *err = NULL;
        CHECK(parse("x unix - n n - - pipe flags=FRDOB.> eol=\\r\\n user=a argv=/bin/cat\n", &p, &err) == 0);
        const char *rcpts[] = { "a@example.org" };
        const char *origs[] = { "orig@example.org" };
        PipeVars v = { .sender = "s@example.net", .recipients = rcpts, .orig_recipients = origs, .n_recipients = 1 };
        const char content[] = "Subject: x\n\nFrom here\n.dot\nlast";
        _cleanup_(strbuf_donep) StrBuf out = STRBUF_INIT;
        CHECK(pipe_format_input(&p, &v, content, strlen(content), "Mon Dec  7 09:00:00 2026", &out) == 0);
        CHECK(strbuf_putc(&out, '\0') == 0);
        CHECK_STR(out.data, "From s@example.net  Mon Dec  7 09:00:00 2026\r\n"
                            "Return-Path: <s@example.net>\r\n"
                            "X-Original-To: orig@example.org\r\n"
                            "Delivered-To: a@example.org\r\n"
                            "Subject: x\r\n\r\n>From here\r\n..dot\r\nlast\r\n\r\n");
        pipe_spec_done(&p);

        /* no flags: the content as it is */
        CHECK(parse("x unix - n n - - pipe user=a argv=/bin/cat\n", &p, &err) == 0);
        strbuf_reset(&out);
        CHECK(pipe_format_input(&p, &v, content, strlen(content), "", &out) == 0);
        CHECK(strbuf_putc(&out, '\0') == 0);
        CHECK_STR(out.data, "Subject: x\n\nFrom here\n.dot\nlast\n");
        pipe_spec_done(&p);
}

int main(void) {
        test_parse();
        test_expand();
        test_debian_uucp();
        test_input();
        return 0;
}
