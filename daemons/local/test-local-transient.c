/* test-local-transient.c — unit test of local-transient.c's names and text helpers.
 *
 * Without arguments: the table-driven checks (no systemd needed).
 * `test-local-transient run [--user NAME] [--time-limit SEC] [--input-size N] [--queue-id ID]
 *  [--drop-to USER] -- PATH ARG…` (as root, under systemd) runs one command through
 * local_transient_connect() and local_transient_run() (switching to USER in between, as the
 * delivery child does) and prints one line, "code=… status=… timed_out=… unit=… output_len=…
 * output=<first line>" or "error=<errno> reason=…" (exit 0 either way; 2 on a usage error). Its
 * input is --input-size bytes of text; its environment has a SENDER that is not UTF-8.
 * tests/system/run copies it into its container to check the API's edges (exit codes, signals,
 * the time limit, large input and output, a user that does not exist). */
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>

#include "basic/tests.h"
#include "local-transient.h"

static void test_unit_name(void) {
        static const struct { const char *qid; long long rid; uint32_t rnd; const char *want; } t[] = {
                { "1LG3DA8NOUQL6803", 7, 0xdeadbeef, "postern-command-1LG3DA8NOUQL6803-7-deadbeef.service" },
                { "a-b/c", 0, 1, "postern-command-a_2db_2fc-0-00000001.service" },
                { "", 12, 0, "postern-command-_-12-00000000.service" },
                { "x\n.\xc3\xa9", 3, 0xff, "postern-command-x_0a_2e_c3_a9-3-000000ff.service" },
        };
        char buf[LOCAL_TRANSIENT_UNIT_MAX];
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                CHECK_INT(local_transient_unit_name(t[i].qid, t[i].rid, t[i].rnd, buf, sizeof(buf)), 0);
                CHECK_STR(buf, t[i].want);
                /* Only characters systemd accepts in a unit name, and no '-' from the queue id. */
                CHECK(strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == strlen(buf));
        }
        char longid[200];
        memset(longid, '-', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        CHECK_INT(local_transient_unit_name(longid, 1, 1, buf, sizeof(buf)), -ENAMETOOLONG);
        CHECK_INT(local_transient_unit_name("ABC", 1, 1, buf, 20), -ENAMETOOLONG);
}

static void test_printable(void) {
        char buf[8];
        local_transient_printable("a\nb\x80" "c", buf, sizeof(buf));
        CHECK_STR(buf, "a?b?c");
        local_transient_printable("0123456789", buf, sizeof(buf));
        CHECK_STR(buf, "0123456");
        local_transient_printable(NULL, buf, sizeof(buf));
        CHECK_STR(buf, "");
}

static void test_utf8(void) {
        static const struct { const char *s; bool valid; } t[] = {
                { "", true }, { "plain ascii", true }, { "caf\xc3\xa9", true },
                { "\xe2\x82\xac", true }, { "\xf0\x9f\x93\xa8", true },
                { "\xc3", false },                 /* truncated */
                { "\xc0\x80", false },             /* overlong NUL */
                { "\xe0\x80\xaf", false },         /* overlong '/' */
                { "\xed\xa0\x80", false },         /* surrogate */
                { "\xf4\x90\x80\x80", false },     /* above U+10FFFF */
                { "\xff", false }, { "a\x80", false },
                /* noncharacters sd-bus refuses: U+FDD0, U+FFFE, U+FFFF, U+1FFFF */
                { "\xef\xb7\x90", false }, { "\xef\xbf\xbe", false }, { "\xef\xbf\xbf", false },
                { "\xf0\x9f\xbf\xbf", false }, { "\xef\xb7\xb0", true },   /* U+FDF0 is a character */
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                CHECK_INT(local_transient_utf8_valid(t[i].s), t[i].valid);
}

static void test_available(void) {
        setenv("POSTERN_TRANSIENT_COMMANDS", "0", 1);
        CHECK(!local_transient_available());
        setenv("POSTERN_TRANSIENT_COMMANDS", "yes", 1);
        CHECK(local_transient_available());
        unsetenv("POSTERN_TRANSIENT_COMMANDS");
}

static int run(int argc, char **argv) {
        static const struct option opts[] = {
                { "user", required_argument, NULL, 'u' },
                { "time-limit", required_argument, NULL, 't' },
                { "input-size", required_argument, NULL, 'i' },
                { "queue-id", required_argument, NULL, 'q' },
                { "drop-to", required_argument, NULL, 'd' },
                {}
        };
        const char *user = "nobody", *qid = "TESTQUEUEID", *drop = NULL;
        long long limit = 30, input_size = 100;
        int c;
        while ((c = getopt_long(argc, argv, "+", opts, NULL)) >= 0)
                switch (c) {
                case 'u': user = optarg; break;
                case 't': limit = atoll(optarg); break;
                case 'i': input_size = atoll(optarg); break;
                case 'q': qid = optarg; break;
                case 'd': drop = optarg; break;
                default: return 2;
                }
        if (optind >= argc || input_size < 0)
                return 2;
        struct passwd *pw = getpwnam(user);
        _cleanup_free_ char *input = malloc((size_t) input_size + 1);
        if (!input)
                return 2;
        for (long long i = 0; i < input_size; i++)
                input[i] = i % 64 == 63 ? '\n' : 'x';
        char *envp[] = { (char *) "HOME=/", (char *) "PATH=/usr/bin:/bin", (char *) "SENDER=a\xff@example.org", NULL };
        LocalTransientCommand cmd = {
                .queue_id = qid, .rcpt_id = 1, .recipient = "test@example.org",
                .user = user, .uid = pw ? pw->pw_uid : 65534, .gid = pw ? pw->pw_gid : 65534,
                .argv = argv + optind, .envp = envp, .working_directory = pw ? pw->pw_dir : "/",
                .input = input, .input_len = (size_t) input_size,
                .time_limit = (usec_t) limit * USEC_PER_SEC,
        };
        _cleanup_free_ char *reason = NULL;
        sd_bus *bus = NULL;
        int r = local_transient_connect(&bus, &reason);
        struct passwd *dp = drop ? getpwnam(drop) : NULL;
        if (r >= 0 && drop) {
                /* As the delivery child does: connected as root, then another user. */
                if (!dp || setgroups(0, NULL) < 0 || setresgid(dp->pw_gid, dp->pw_gid, dp->pw_gid) < 0 ||
                    setresuid(dp->pw_uid, dp->pw_uid, dp->pw_uid) < 0) {
                        printf("error=drop reason=cannot switch to %s\n", drop);
                        return 0;
                }
        }
        if (r >= 0) {
                LocalTransientResult res;
                r = local_transient_run(bus, &cmd, &res, &reason);
                if (r >= 0) {
                        res.output[strcspn(res.output, "\n")] = '\0';
                        printf("code=%s status=%d timed_out=%d unit=%s output_len=%zu output=%s\n",
                               res.code == CLD_EXITED ? "exited" : res.code == CLD_KILLED ? "killed" : "dumped",
                               res.status, res.timed_out, res.unit, res.output_len, res.output);
                }
                sd_bus_unref(bus);
        }
        if (r < 0)
                printf("error=%d reason=%s\n", -r, strna(reason));
        return 0;
}

int main(int argc, char **argv) {
        if (argc > 1 && streq(argv[1], "run"))
                return run(argc - 1, argv + 1);
        test_unit_name();
        test_printable();
        test_utf8();
        test_available();
        return 0;
}
