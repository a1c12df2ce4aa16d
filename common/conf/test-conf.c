/* test-conf.c — unit tests for main.cf parsing, $expansion, listener overrides, diagnostics,
 * typed getters, conf_set and conf_edit_file. Each case writes a main.cf into a temporary
 * directory and loads it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "conf.h"
#include "params.h"
#include "basic/tests.h"

static char tmpdir[] = "/tmp/test-conf-XXXXXX";
static char cfpath[4096];

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs(text, f);
        CHECK(fclose(f) == 0);
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        CHECK(f);
        static char buf[65536];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

/* Loads text as main.cf; returns the conf_load result; *ret_conf/ret_msgs as conf_load gives. */
static int load(const char *text, Conf **ret_conf, char ***ret_msgs) {
        write_file(cfpath, text);
        return conf_load(cfpath, ret_conf, ret_msgs);
}

static bool has_message(char **msgs, const char *needle) {
        for (char **m = msgs; m && *m; m++)
                if (strstr(*m, needle))
                        return true;
        return false;
}

static void dump(char **msgs) {
        for (char **m = msgs; m && *m; m++)
                fprintf(stderr, "  message: %s\n", *m);
}

static void test_syntax_and_expansion(void) {
        static const char text[] =
                "# a comment\n"
                "myhostname = mail.example.org   \n"
                "mydomain=example.org\n"
                "\n"
                "mydestination = $myhostname,\n"
                "    localhost.$mydomain,\n"
                "# a comment between continuation lines\n"
                "\tlocalhost\n"
                "  # an indented comment\n"
                "relay_domains =\n"
                "empty_thing =\n"
                "foo = FOO\n"
                "a1 = ${foo}\n"
                "a2 = $(foo)\n"
                "a3 = ${foo?{set}:{unset}}\n"
                "a4 = ${empty_thing?{set}:{unset}}\n"
                "a5 = ${foo?yes}|${empty_thing?yes}\n"
                "a6 = ${foo:no}|${empty_thing:no}\n"
                "a7 = ${foo:{no}}|${empty_thing:{no}}|${undefined_thing:{undef}}\n"
                "a8 = $$foo costs $$5 and $\n"
                "a9 = ${foo?{nested ${foo}}:{x}} ${foo ? {spaced} : {x}}\n"
                "a10 = x${undefined_thing}y$undefined_thing.z\n"
                "a11 = ${foo?{{braces} inside}}\n"
                "smtpd_banner = $myhostname ESMTP $mail_name ($mail_version)\n";
        static const struct {
                const char *name, *expect;
        } cases[] = {
                { "myhostname", "mail.example.org" },
                { "mydomain", "example.org" },
                { "mydestination", "mail.example.org, localhost.example.org, localhost" },
                { "relay_domains", "" },
                { "a1", "FOO" },
                { "a2", "FOO" },
                { "a3", "set" },
                { "a4", "unset" },
                { "a5", "yes|" },
                { "a6", "|no" },
                { "a7", "|no|undef" },
                { "a8", "$foo costs $5 and $" },
                { "a9", "nested FOO spaced" },
                { "a10", "xy.z" },
                { "a11", "{braces} inside" },
                { "myorigin", "mail.example.org" },
                { "smtpd_banner", "mail.example.org ESMTP Postern (" POSTERN_VERSION ")" },
                { "local_transport", "local:mail.example.org" },
        };
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        int r = load(text, &c, &msgs);
        if (r != 0)
                dump(msgs);
        CHECK_INT(r, 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                CHECK_STR(conf_get(c, cases[i].name), cases[i].expect);
        /* $mynetworks, computed (mynetworks_style = host): the loopback networks first */
        CHECK_STR(conf_get(c, "smtpd_forbid_bare_newline_exclusions"), conf_get(c, "mynetworks"));
        CHECK(startswith(conf_get(c, "mynetworks"), "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"));
        CHECK(conf_get(c, "no_such_parameter_at_all") == NULL);
        /* user-defined names referenced elsewhere draw no warning, unreferenced ones do */
        CHECK(!has_message(msgs, ": foo: unknown parameter"));
        CHECK(has_message(msgs, ":13: a1: unknown parameter"));

        bool expl;
        CHECK_STR(conf_get_raw(c, "mydestination", &expl), "$myhostname, localhost.$mydomain, localhost");
        CHECK(expl);
        CHECK_STR(conf_get_raw(c, "myorigin", &expl), "$myhostname");
        CHECK(!expl);
        _cleanup_strv_free_ char **l = conf_get_list(c, NULL, "mydestination");
        CHECK(l && l[0] && l[1] && l[2] && !l[3]);
        CHECK_STR(l[1], "localhost.example.org");
        CHECK_STR(conf_path(c), cfpath);
}

static void test_mydomain_from_myhostname(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load("myhostname = host.sub.example.net\n", &c, &msgs), 0);
        CHECK_STR(conf_get(c, "mydomain"), "sub.example.net");
        CHECK_STR(conf_get(c, "mydestination"), "host.sub.example.net, localhost.sub.example.net, localhost");
        conf_free(TAKE_PTR(c));
        strv_free(TAKE_PTR(msgs));
        CHECK_INT(load("myhostname = nodots\n", &c, &msgs), 0);
        CHECK_STR(conf_get(c, "mydomain"), "localdomain");
        /* config_directory is where main.cf lives */
        CHECK_STR(conf_get(c, "config_directory"), tmpdir);
}

static const char *const explicit_order[] = {
        "smtpd_timeout", "myhostname", "submission/myhostname", "submission/smtpd_helo_required",
        "submission/smtpd_recipient_restrictions", "smtp/smtpd_timeout",
};

typedef struct OrderCheck {
        size_t n;
        bool ok;
} OrderCheck;

static void order_check(const char *name, const char *raw, void *ud) {
        OrderCheck *s = ud;
        if (s->n >= ELEMENTSOF(explicit_order) || !streq(explicit_order[s->n], name))
                s->ok = false;
        s->n++;
}

static void test_listener_overrides(void) {
        static const char text[] =
                "smtpd_timeout = 60\n"
                "myhostname = mx.example.org\n"
                "submission/myhostname = submit.example.org\n"
                "submission/smtpd_helo_required = yes\n"
                "submission/smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
                "smtp/smtpd_timeout = 5m\n";
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load(text, &c, &msgs), 0);
        CHECK(msgs && !msgs[0]);
        CHECK_INT(conf_get_time(c, NULL, "smtpd_timeout"), 60);
        CHECK_INT(conf_get_time(c, "smtp", "smtpd_timeout"), 300);
        CHECK_INT(conf_get_time(c, "submission", "smtpd_timeout"), 60);
        CHECK(conf_get_bool(c, "submission", "smtpd_helo_required"));
        CHECK(!conf_get_bool(c, "smtp", "smtpd_helo_required"));
        CHECK(!conf_get_bool(c, NULL, "smtpd_helo_required"));
        /* expansions in a listener's context see its overrides */
        CHECK_STR(conf_get_listener(c, "submission", "smtpd_banner"), "submit.example.org ESMTP Postern");
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_banner"), "mx.example.org ESMTP Postern");
        CHECK_STR(conf_get(c, "smtpd_banner"), "mx.example.org ESMTP Postern");
        CHECK_STR(conf_get(c, "submission/myhostname"), "submit.example.org");
        CHECK_STR(conf_get_listener(c, "submission", "mydomain"), "example.org");

        /* explicit settings in file order, listener forms included */
        OrderCheck st = { 0, true };
        conf_foreach_explicit(c, order_check, &st);
        CHECK(st.ok);
        CHECK_INT(st.n, ELEMENTSOF(explicit_order));
}

static void test_errors(void) {
        static const struct {
                const char *text;
                int ret;
                const char *message;   /* must appear among the messages */
        } cases[] = {
                { "smtpd_timeout = soon\n", -EINVAL,
                  ":1: smtpd_timeout: invalid value \"soon\": must be a time" },
                { "# c\nmessage_size_limit = -5\n", -EINVAL,
                  ":2: message_size_limit: invalid value \"-5\": must be at least 0" },
                { "\n\nsmtpd_helo_required = maybe\n", -EINVAL,
                  ":3: smtpd_helo_required: invalid value \"maybe\": must be yes or no" },
                { "smtpd_forbid_bare_newline = sometimes\n", -EINVAL,
                  ":1: smtpd_forbid_bare_newline: invalid value \"sometimes\": must be one of: normalize, yes, no" },
                { "unknown_local_recipient_reject_code = 250\n", -EINVAL,
                  ":1: unknown_local_recipient_reject_code: invalid value \"250\": must be at least 400" },
                { "delay_logging_resolution_limit = 7\n", -EINVAL, "must be at most 6" },
                { "smtpd_recipient_limit = 12abc\n", -EINVAL, "must be a whole number" },
                { "limit = abc\nsmtpd_hard_error_limit = $limit\n", -EINVAL,
                  ":2: smtpd_hard_error_limit: invalid value \"abc\": must be a whole number" },
                { "mydestination = {unbalanced\n", -EINVAL, "mydestination: invalid value \"{unbalanced\": must have matching" },
                { "this line has no equals sign\n", -EINVAL, ":1: syntax error" },
                { "bad name = x\n", -EINVAL, ":1: \"bad name\": invalid parameter name" },
                { "a = $b\nb = $a\nmyorigin = $a\n", -EINVAL, "parameter expansion loop: $a -> $b -> $a" },
                { "myhostname = $myhostname.x\n", -EINVAL, ":1: myhostname: parameter expansion loop" },
                { "myorigin = ${myhostname\n", -EINVAL, ":1: myorigin: missing '}'" },
                { "myorigin = ${myhostname?{a}:b}\n", -EINVAL, ":1: myorigin: expected '{'" },
                { "myorigin = ${?x}\n", -EINVAL, ":1: myorigin: bad parameter name" },
                { "no_such_param = 1\n", 0, ":1: no_such_param: unknown parameter" },
                { "submission/no_such_param = 1\n", 0, ":1: submission/no_such_param: unknown parameter" },
                { "  leading = space\n", 0, ":1: line starts with whitespace" },
                { "biff = no\nbiff = yes\n", 0, ":2: biff: overrides the setting at line 1" },
                { "submission/smtpd_timeout = 0\n", -EINVAL, ":1: submission/smtpd_timeout: invalid value \"0\": must be at least 1s" },
                { "maximal_queue_lifetime = 3\nbounce_queue_lifetime = 2w\n", 0, NULL },
                { "smtpd_timeout = 5x\n", -EINVAL, "must be a time" },
                { "smtpd_timeout = 99999999999999999999\n", -EINVAL, "must be a time" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Conf *c = NULL;
                _cleanup_strv_free_ char **msgs = NULL;
                int r = load(cases[i].text, &c, &msgs);
                if (r != cases[i].ret || (cases[i].message && !has_message(msgs, cases[i].message))) {
                        fprintf(stderr, "case %zu: r=%d\n", i, r);
                        dump(msgs);
                }
                CHECK_INT(r, cases[i].ret);
                CHECK(msgs);
                if (cases[i].message)
                        CHECK(has_message(msgs, cases[i].message));
                else
                        CHECK(!msgs[0]);
                /* every message names the file */
                for (char **m = msgs; *m; m++)
                        CHECK(strncmp(*m, cfpath, strlen(cfpath)) == 0);
                CHECK(r < 0 ? c == NULL : c != NULL);
                conf_free(c);
        }
}

static void test_hostile(void) {
        /* deep nesting, exponential expansion, long lines, NUL bytes: errors, never crashes */
        static char big[80000];
        size_t n = 0;
        n += snprintf(big + n, sizeof big - n, "myorigin = ");
        for (int i = 0; i < 2000; i++)
                n += snprintf(big + n, sizeof big - n, "${myhostname?{");
        n += snprintf(big + n, sizeof big - n, "x");
        for (int i = 0; i < 2000; i++)
                n += snprintf(big + n, sizeof big - n, "}}");
        n += snprintf(big + n, sizeof big - n, "\n");
        Conf *c = NULL;
        char **msgs = NULL;
        CHECK_INT(load(big, &c, &msgs), -EINVAL);
        CHECK(has_message(msgs, "nested"));
        strv_free(msgs);

        static const char bomb[] =
                "b0 = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
                "b1 = $b0$b0$b0$b0$b0$b0$b0$b0$b0$b0\n"
                "b2 = $b1$b1$b1$b1$b1$b1$b1$b1$b1$b1\n"
                "b3 = $b2$b2$b2$b2$b2$b2$b2$b2$b2$b2\n"
                "b4 = $b3$b3$b3$b3$b3$b3$b3$b3$b3$b3\n"
                "b5 = $b4$b4$b4$b4$b4$b4$b4$b4$b4$b4\n"
                "myorigin = $b5\n";
        CHECK_INT(load(bomb, &c, &msgs), -EINVAL);
        CHECK(has_message(msgs, "longer than"));
        strv_free(msgs);

        static const char nul[] = "myorigin = a\0b\nmail_name = X\n";
        FILE *f = fopen(cfpath, "we");
        CHECK(f);
        fwrite(nul, 1, sizeof nul - 1, f);
        fclose(f);
        CHECK_INT(conf_load(cfpath, &c, &msgs), 0);
        CHECK_STR(conf_get(c, "myorigin"), "a");
        CHECK_STR(conf_get(c, "mail_name"), "X");
        conf_free(c);
        strv_free(msgs);
}

static void test_missing_file_and_env(void) {
        char path[4200];
        snprintf(path, sizeof path, "%s/none.cf", tmpdir);
        Conf *c = NULL;
        char **msgs = NULL;
        CHECK_INT(conf_load(path, &c, &msgs), 0);
        CHECK(msgs && !msgs[0]);
        CHECK_STR(conf_get(c, "mail_name"), "Postern");
        CHECK_STR(conf_get(c, "queue_directory"), "/var/spool/postern");
        conf_free(c);
        strv_free(msgs);

        write_file(cfpath, "mail_name = FromEnv\n");
        setenv("POSTERN_CONFIG", cfpath, 1);
        CHECK_INT(conf_load(NULL, &c, NULL), 0);
        CHECK_STR(conf_get(c, "mail_name"), "FromEnv");
        CHECK_STR(conf_path(c), cfpath);
        conf_free(c);
        unsetenv("POSTERN_CONFIG");
        CHECK_INT(conf_new(&c), 0);
        CHECK_STR(conf_path(c), POSTERN_SYSCONFDIR "/main.cf");
        conf_free(c);
}

/* /etc/postern-NAME/main.cf is instance NAME's: its queue and socket directories follow; an
 * explicit setting wins; POSTERN_INSTANCE names the file; other directories are no instance. */
static void test_instance(void) {
        Conf *c = NULL;
        CHECK_INT(conf_load(POSTERN_SYSCONFDIR "-unit_1.x/main.cf", &c, NULL), 0);
        CHECK_STR(conf_instance(c), "unit_1.x");
        CHECK_STR(conf_get(c, "config_directory"), POSTERN_SYSCONFDIR "-unit_1.x");
        CHECK_STR(conf_get(c, "queue_directory"), "/var/spool/postern-unit_1.x");
        CHECK_STR(conf_get(c, "postern_socket_directory"), "/run/postern-unit_1.x");
        CHECK_STR(conf_get(c, "address_verify_map"), "sqlite:/var/spool/postern-unit_1.x/verify.db");
        c = conf_free(c);

        setenv("POSTERN_INSTANCE", "second", 1);
        CHECK_INT(conf_load(NULL, &c, NULL), 0);
        CHECK_STR(conf_path(c), POSTERN_SYSCONFDIR "-second/main.cf");
        CHECK_STR(conf_get(c, "queue_directory"), "/var/spool/postern-second");
        c = conf_free(c);
        setenv("POSTERN_INSTANCE", "../x", 1);  /* not a name: the default instance */
        CHECK_INT(conf_load(NULL, &c, NULL), 0);
        CHECK_STR(conf_path(c), POSTERN_SYSCONFDIR "/main.cf");
        CHECK(!conf_instance(c));
        c = conf_free(c);
        unsetenv("POSTERN_INSTANCE");

        CHECK_INT(load("queue_directory = /srv/q\n", &c, NULL), 0);
        CHECK(!conf_instance(c));
        CHECK_STR(conf_get(c, "queue_directory"), "/srv/q");
        CHECK_STR(conf_get(c, "postern_socket_directory"), "/run/postern");
        c = conf_free(c);

        static const char *const bad[] = { "", "-a", ".a", "a/b", "a b", "x%i" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                CHECK(!conf_instance_name_valid(bad[i]));
        CHECK(conf_instance_name_valid("mx-out.2"));
}

static void test_defaults_and_getters(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        CHECK_INT(conf_new(&c), 0);
        static const struct {
                const char *name;
                long long v;
        } ints[] = {
                { "line_length_limit", 2048 },
                { "message_size_limit", 10240000 },
                { "smtpd_recipient_limit", 1000 },
                { "smtpd_hard_error_limit", 20 },
                { "unknown_local_recipient_reject_code", 550 },
        }, times[] = {
                { "smtpd_timeout", 300 },
                { "maximal_queue_lifetime", 5 * 86400 },
                { "bounce_queue_lifetime", 5 * 86400 },
                { "maximal_backoff_time", 4000 },
                { "delay_warning_time", 0 },
                { "daemon_timeout", 18000 },
        };
        for (size_t i = 0; i < ELEMENTSOF(ints); i++)
                CHECK_INT(conf_get_int(c, NULL, ints[i].name), ints[i].v);
        for (size_t i = 0; i < ELEMENTSOF(times); i++)
                CHECK_INT(conf_get_time(c, NULL, times[i].name), times[i].v);
        CHECK(conf_get_bool(c, NULL, "disable_vrfy_command"));
        CHECK(!conf_get_bool(c, NULL, "soft_bounce"));
        CHECK(strchr(conf_get(c, "myhostname"), '.'));
        CHECK(!isempty(conf_get(c, "mydomain")));
        CHECK_STR(conf_get(c, "mail_version"), POSTERN_VERSION);

        _cleanup_strv_free_ char **l = conf_get_list(c, NULL, "smtpd_relay_restrictions");
        CHECK(l && l[0] && l[1] && l[2] && !l[3]);
        CHECK_STR(l[2], "defer_unauth_destination");

        char *reason = NULL;
        CHECK_INT(conf_set(c, "maximal_queue_lifetime", "2", &reason), 0);
        CHECK_INT(conf_get_time(c, NULL, "maximal_queue_lifetime"), 2 * 86400);
        CHECK_INT(conf_set(c, "smtpd_timeout", "never", &reason), -EINVAL);
        CHECK(strstr(reason, "invalid value \"never\": must be a time"));
        free(reason);
        CHECK_INT(conf_get_time(c, NULL, "smtpd_timeout"), 300);
        CHECK_INT(conf_set(c, "no_such_thing", "1", &reason), -ENOENT);
        free(reason);
        CHECK_INT(conf_set(c, "submission/smtpd_timeout", "1m", NULL), 0);
        CHECK_INT(conf_get_time(c, "submission", "smtpd_timeout"), 60);
        CHECK_INT(conf_set(c, "myorigin", "$myorigin", &reason), -EINVAL);
        CHECK(strstr(reason, "loop"));
        free(reason);
        CHECK_INT(conf_set(c, "myhostname", "h.example.com", NULL), 0);
        CHECK_STR(conf_get(c, "myorigin"), "h.example.com");
        CHECK_STR(conf_get(c, "mydomain"), "example.com");
        bool expl;
        CHECK_STR(conf_get_raw(c, "submission/smtpd_timeout", &expl), "1m");
        CHECK(expl);
        CHECK_STR(conf_get_raw(c, "submission/mail_name", &expl), "Postern");
        CHECK(!expl);
}

static void test_split_list(void) {
        static const struct {
                const char *in;
                const char *out[6];
        } cases[] = {
                { "", { NULL } },
                { " , ,", { NULL } },
                { "a b,c ,  d", { "a", "b", "c", "d", NULL } },
                { "inline:{ a=b, c=d }, static:x", { "inline:{ a=b, c=d }", "static:x", NULL } },
                { "{ text with spaces }, b", { "text with spaces", "b", NULL } },
                { "{ {nested} one }", { "{nested} one", NULL } },
                { "{unterminated, x", { "{unterminated, x", NULL } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strv_free_ char **v = conf_split_list(cases[i].in);
                CHECK(v);
                size_t j = 0;
                for (; cases[i].out[j]; j++)
                        CHECK_STR(v[j], cases[i].out[j]);
                CHECK(v[j] == NULL);
        }
}

static void test_edit(void) {
        static const struct {
                const char *before, *name, *value, *after;
        } cases[] = {
                { "# keep me\nmyhostname = old\n  continued\nmail_name = X\n", "myhostname", "new.example",
                  "# keep me\nmyhostname = new.example\nmail_name = X\n" },
                { "a = 1\n", "relayhost", "[smart.example]:587", "a = 1\nrelayhost = [smart.example]:587\n" },
                { "a = 1", "b", "2", "a = 1\nb = 2\n" },
                { "x = 1\nx = 2\ny = 3\n", "x", "9", "x = 9\ny = 3\n" },
                { "myhostname_extra = 1\n", "myhostname", "h", "myhostname_extra = 1\nmyhostname = h\n" },
                { "submission/smtpd_timeout=1\n", "submission/smtpd_timeout", " 2 ", "submission/smtpd_timeout = 2\n" },
                { NULL, "mail_name", "", "mail_name = \n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (cases[i].before)
                        write_file(cfpath, cases[i].before);
                else
                        unlink(cfpath);
                CHECK_INT(conf_edit_file(cfpath, cases[i].name, cases[i].value), 0);
                CHECK_STR(read_file(cfpath), cases[i].after);
        }
        CHECK_INT(conf_edit_file(cfpath, "bad name", "x"), -EINVAL);
        CHECK_INT(conf_edit_file(cfpath, "a", "line\nbreak"), -EINVAL);
        /* the mode survives an edit */
        chmod(cfpath, 0640);
        CHECK_INT(conf_edit_file(cfpath, "a", "b"), 0);
        struct stat st;
        CHECK(stat(cfpath, &st) == 0);
        CHECK_INT(st.st_mode & 0777, 0640);

        /* editing through a symlink changes the target and keeps the link */
        char link_path[4200];
        snprintf(link_path, sizeof link_path, "%s/link.cf", tmpdir);
        CHECK(symlink(cfpath, link_path) == 0);
        CHECK_INT(conf_edit_file(link_path, "a", "c"), 0);
        CHECK(lstat(link_path, &st) == 0 && S_ISLNK(st.st_mode));
        CHECK_STR(read_file(cfpath), "mail_name = \na = c\n");
        unlink(link_path);
}

/* postconf -# and -X: the setting and its continuation lines, nothing else. */
static void test_edit_comment_remove(void) {
        static const struct {
                const char *before, *name;
                ConfEditOp op;
                const char *after;
        } cases[] = {
                { "# keep\nmynetworks = 127.0.0.0/8\n  [::1]/128\nmail_name = X\n", "mynetworks", CONF_EDIT_COMMENT,
                  "# keep\n#mynetworks = 127.0.0.0/8\n#  [::1]/128\nmail_name = X\n" },
                { "# keep\nmynetworks = 127.0.0.0/8\n  [::1]/128\nmail_name = X\n", "mynetworks", CONF_EDIT_REMOVE,
                  "# keep\nmail_name = X\n" },
                { "a = 1\nab = 2\na=3\n", "a", CONF_EDIT_REMOVE, "ab = 2\n" },
                { "#a = 1\nb = 2\n", "a", CONF_EDIT_COMMENT, "#a = 1\nb = 2\n" },
                { "b = 2\n", "a", CONF_EDIT_REMOVE, "b = 2\n" },
                { "a = 1\n\nb = 2\n", "a", CONF_EDIT_COMMENT, "#a = 1\n\nb = 2\n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                write_file(cfpath, cases[i].before);
                CHECK_INT(conf_edit_file_op(cfpath, cases[i].name, NULL, cases[i].op), 0);
                CHECK_STR(read_file(cfpath), cases[i].after);
        }
        unlink(cfpath);
        CHECK_INT(conf_edit_file_op(cfpath, "a", NULL, CONF_EDIT_REMOVE), -ENOENT);
        CHECK_INT(conf_edit_file_op(cfpath, "bad name", NULL, CONF_EDIT_COMMENT), -EINVAL);
}

/* Per-transport parameters of a transport that master.cf defines are not unknown. */
static void test_master_cf_transport_params(void) {
        char master[PATH_MAX + 16], text[PATH_MAX + 256];
        snprintf(master, sizeof master, "%s/master.cf", tmpdir);
        write_file(master, "dovecot unix - n n - - pipe\n  user=vmail argv=/usr/bin/true\n"
                           "smtp-amavis unix - - n - 2 smtp\n");
        snprintf(text, sizeof text, "config_directory = %s\n"
                 "dovecot_destination_recipient_limit = 1\n"
                 "dovecot_time_limit = 100s\n"
                 "other_destination_recipient_limit = 1\n"
                 "smtp-amavis_destination_recipient_limit = 1\n", tmpdir);
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load(text, &c, &msgs), 0);
        CHECK(!has_message(msgs, "dovecot_destination_recipient_limit"));
        CHECK(!has_message(msgs, "dovecot_time_limit"));
        CHECK(has_message(msgs, ":4: other_destination_recipient_limit: unknown parameter"));
        CHECK_STR(conf_get(c, "dovecot_destination_recipient_limit"), "1");
        /* a service name with a '-' (iRedMail's smtp-amavis): its parameters are names too */
        CHECK(!has_message(msgs, "smtp-amavis"));
        CHECK_STR(conf_get(c, "smtp-amavis_destination_recipient_limit"), "1");
        unlink(master);
}

/* Debian's main.cf: myorigin = /etc/mailname is the name in that file, also where $myorigin is
 * referenced; a file that cannot be read is an error naming it. */
static void test_myorigin_from_file(void) {
        char mailname[PATH_MAX + 16], text[PATH_MAX + 256];
        snprintf(mailname, sizeof mailname, "%s/mailname", tmpdir);
        write_file(mailname, "# the host's mail name\n\n  mx.example.net  \nsecond.example\n");
        snprintf(text, sizeof text, "myorigin = %s\nlocal_transport = local:$myorigin\n", mailname);
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        int r = load(text, &c, &msgs);
        if (r != 0)
                dump(msgs);
        CHECK_INT(r, 0);
        CHECK_STR(conf_get(c, "myorigin"), "mx.example.net");
        CHECK_STR(conf_get(c, "local_transport"), "local:mx.example.net");

        _cleanup_conf_free_ Conf *c2 = NULL;
        _cleanup_strv_free_ char **msgs2 = NULL;
        unlink(mailname);
        CHECK(load(text, &c2, &msgs2) < 0);
        char expect[PATH_MAX + 64];
        snprintf(expect, sizeof expect, "cannot read %s: No such file or directory", mailname);
        CHECK(has_message(msgs2, expect));
        /* ... also when nothing else refers to $myorigin (the daemons read it themselves) */
        _cleanup_conf_free_ Conf *c3 = NULL;
        _cleanup_strv_free_ char **msgs3 = NULL;
        snprintf(text, sizeof text, "myorigin = %s\n", mailname);
        CHECK(load(text, &c3, &msgs3) < 0);
        CHECK(has_message(msgs3, expect));
}

/* Postfix parameters that systemd makes meaningless are information, not unknown parameters. */
static void test_postfix_parameters_with_no_meaning(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load("readme_directory = no\ndaemon_directory = /usr/lib/postfix/sbin\n", &c, &msgs), 0);
        CHECK(has_message(msgs, ":1: readme_directory: ignored, no meaning here: Postern's documentation is"));
        CHECK(has_message(msgs, ":2: daemon_directory: ignored, no meaning here: the daemons are started by"));
        CHECK(!has_message(msgs, "unknown parameter"));
        /* the table is sorted (bsearch) and names no parameter Postern has */
        size_t n;
        const ParamIgnored *t = param_ignored_table(&n);
        for (size_t i = 0; i < n; i++) {
                CHECK(i == 0 || strcmp(t[i - 1].name, t[i].name) < 0);
                CHECK(!param_lookup(t[i].name));
                CHECK(param_ignored_lookup(t[i].name) == &t[i]);
        }
}

/* Postfix's installation values in an unchanged main.cf are dropped with a note; other values
 * of the same parameters are used. */
static void test_postfix_installation_values(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load("queue_directory = /var/spool/postfix\nmail_owner = postfix\n", &c, &msgs), 0);
        CHECK(has_message(msgs, ":1: queue_directory = /var/spool/postfix: ignored, Postfix's queue, not Postern's: "
                                "the queue stays in /var/spool/postern"));
        CHECK(has_message(msgs, ":2: mail_owner = postfix: ignored, Postfix's user"));
        CHECK_STR(conf_get(c, "queue_directory"), "/var/spool/postern");
        CHECK_STR(conf_get(c, "mail_owner"), "postern");
        bool explicit = true;
        (void) conf_get_raw(c, "queue_directory", &explicit);
        CHECK(!explicit);
        conf_free(TAKE_PTR(c));
        strv_free(TAKE_PTR(msgs));
        CHECK_INT(load("queue_directory = /srv/queue\nmail_owner = mailer\n", &c, &msgs), 0);
        CHECK_STR(conf_get(c, "queue_directory"), "/srv/queue");
        CHECK_STR(conf_get(c, "mail_owner"), "mailer");
        CHECK(!has_message(msgs, "ignored"));
}

/* compatibility_level below a change of default keeps the older default for unset parameters;
 * levels compare number by number. */
static void test_compatibility_level(void) {
        CHECK(param_compat_level_compare("3.10", "3.9") > 0);
        CHECK(param_compat_level_compare("3.6", "3.6.0") == 0);
        CHECK(param_compat_level_compare("2", "3.6") < 0);
        CHECK(param_compat_level_compare("3.9.1", "3.9") > 0);
        CHECK(param_compat_level_valid("0") && param_compat_level_valid("3.9.1"));
        CHECK(!param_compat_level_valid("3.") && !param_compat_level_valid("three") &&
              !param_compat_level_valid("1.2.3.4") && !param_compat_level_valid(""));

        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(load("compatibility_level = 0\nmydestination = a.example\nsmtputf8_enable = yes\n", &c, &msgs), 0);
        CHECK_STR(conf_get(c, "append_dot_mydomain"), "yes");
        CHECK_STR(conf_get(c, "relay_domains"), "a.example");
        CHECK_STR(conf_get(c, "smtpd_relay_restrictions"), "");
        CHECK_STR(conf_get(c, "smtputf8_enable"), "yes");   /* set explicitly: kept */
        CHECK(has_message(msgs, ":1: compatibility_level = 0: using backwards-compatible default settings "
                                "append_dot_mydomain = yes, smtpd_relay_restrictions = (empty), "
                                "mynetworks_style = subnet, relay_domains = $mydestination (set them"));
        CHECK_STR(conf_get(c, "mynetworks_style"), "subnet");
        CHECK(has_message(msgs, "not applied: the older defaults of lmtp_tls_fingerprint_digest"));

        _cleanup_conf_free_ Conf *c2 = NULL;
        _cleanup_strv_free_ char **msgs2 = NULL;
        CHECK_INT(load("compatibility_level = 2\n", &c2, &msgs2), 0);
        CHECK_STR(conf_get(c2, "append_dot_mydomain"), "no");
        CHECK_STR(conf_get(c2, "relay_domains"), "");
        CHECK(has_message(msgs2, "compatibility_level = 2: not applied: the older defaults of "
                                 "lmtp_tls_fingerprint_digest, smtp_tls_fingerprint_digest, smtpd_tls_fingerprint_digest"));
        CHECK(!has_message(msgs2, "using backwards-compatible"));

        _cleanup_conf_free_ Conf *c3 = NULL;
        _cleanup_strv_free_ char **msgs3 = NULL;
        CHECK_INT(load("compatibility_level = 3.10\n", &c3, &msgs3), 0);
        CHECK(!has_message(msgs3, "compatibility_level"));

        _cleanup_conf_free_ Conf *c4 = NULL;
        _cleanup_strv_free_ char **msgs4 = NULL;
        CHECK(load("compatibility_level = 3.x\n", &c4, &msgs4) < 0);
        CHECK(has_message(msgs4, ":1: compatibility_level: invalid level \"3.x\""));
}

/* conf_load_report keeps what it read when a value is invalid; conf_get_line says where. */
static void test_load_report(void) {
        write_file(cfpath, "# a Postfix main.cf\nmyhostname = mx.example.org\nsmtp_tls_security_level = fingerprint\n"
                           "mynetworks =\n    127.0.0.0/8\nsubmission/smtpd_tls_security_level = encrypt\n");
        Conf *none = NULL;
        _cleanup_strv_free_ char **msgs0 = NULL;
        CHECK_INT(conf_load(cfpath, &none, &msgs0), -EINVAL);
        CHECK(!none);

        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        CHECK_INT(conf_load_report(cfpath, &c, &msgs), -EINVAL);
        CHECK(c);
        CHECK(has_message(msgs, ":3: smtp_tls_security_level: invalid value \"fingerprint\""));
        CHECK_STR(conf_get(c, "myhostname"), "mx.example.org");
        CHECK_INT(conf_get_line(c, "myhostname"), 2);
        CHECK_INT(conf_get_line(c, "smtp_tls_security_level"), 3);
        CHECK_INT(conf_get_line(c, "mynetworks"), 4);
        CHECK_INT(conf_get_line(c, "submission/smtpd_tls_security_level"), 6);
        CHECK_INT(conf_get_line(c, "relayhost"), 0);

        _cleanup_conf_free_ Conf *ok = NULL;
        CHECK_INT(load("myhostname = mx.example.org\n", &ok, NULL), 0);
        conf_free(ok);
        ok = NULL;
        write_file(cfpath, "myhostname = mx.example.org\n");
        CHECK_INT(conf_load_report(cfpath, &ok, NULL), 0);
        CHECK_INT(conf_get_line(ok, "myhostname"), 1);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));
        snprintf(cfpath, sizeof cfpath, "%s/main.cf", tmpdir);

        test_syntax_and_expansion();
        test_mydomain_from_myhostname();
        test_listener_overrides();
        test_errors();
        test_hostile();
        test_missing_file_and_env();
        test_instance();
        test_defaults_and_getters();
        test_split_list();
        test_edit();
        test_edit_comment_remove();
        test_master_cf_transport_params();
        test_myorigin_from_file();
        test_postfix_parameters_with_no_meaning();
        test_postfix_installation_values();
        test_compatibility_level();
        test_load_report();

        unlink(cfpath);
        rmdir(tmpdir);
        return 0;
}
