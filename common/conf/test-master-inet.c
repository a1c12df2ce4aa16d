/* test-master-inet.c — master.cf listeners classified for socket units (master-inet.c): the
 * shipped sockets, listeners of their own and their fd names, postscreen and pass entries,
 * what is skipped and why, listen addresses; and conf_load() turning the -o options of those
 * listeners into "<fd name>/<name>" settings (main.cf's own listener settings win, $name
 * expands in the listener's context, options Postern lacks are reported). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "master-inet.h"
#include "basic/tests.h"

static void plan(const char *text, char *const *interfaces, MasterCf *m, MasterInetPlan *p) {
        char *err = NULL;
        if (master_cf_parse(text, "master.cf", m, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        CHECK_INT(master_inet_plan(m, interfaces, "all", p), 0);
}

static void test_classify(void) {
        static const char text[] =
                "smtp       inet  n - n - 1 postscreen\n"                       /* 1 */
                "smtpd      pass  - - n - - smtpd\n"                            /* 2 */
                "  -o smtpd_sasl_auth_enable=no\n"
                "10025      inet  n - n - 1 postscreen\n"                       /* 4 */
                "submission inet  n - n - - smtpd\n"                            /* 5 */
                "smtps      inet  n - n - - smtpd -o smtpd_tls_wrappermode=yes\n" /* 6 */
                "10465      inet  n - n - - smtpd -o smtpd_tls_wrappermode=yes\n" /* 7 */
                "127.0.0.1:10025 inet n - n - - smtpd\n"                        /* 8 */
                "[127.0.0.1]:10025 inet n - n - - smtpd\n"                      /* 9 */
                "mail.example.com:2525 inet n - n - - smtpd\n"                  /* 10 */
                "nosuchservice inet n - n - - smtpd\n"                          /* 11 */
                "local-smtpd unix n - n - - smtpd\n"                            /* 12 */
                "628        inet  n - n - - qmqpd\n"                            /* 13 */
                "pickup     fifo  n - n 60 1 pickup\n"                          /* built in */
                "relay      unix  - - n - - smtp\n";                            /* a transport */
        MasterCf m = {};
        MasterInetPlan p = {};
        plan(text, NULL, &m, &p);
        CHECK_INT(p.n, 12);
        static const struct {
                MasterInetMap map;
                const char *fdname, *unit, *note;
        } expect[] = {
                { MASTER_INET_SHIPPED, "smtp", "postern-smtpd.socket",
                  "postscreen's screening runs inside postern-smtpd on this port (smtp/postern_postscreen_enable = "
                  "yes), with the -o options of the smtpd pass entry at line 2" },
                { MASTER_INET_USED, NULL, NULL, NULL },
                { MASTER_INET_SKIP, NULL, NULL,
                  "postscreen's screening runs only inside postern-smtpd's port-25 listener (postern-smtpd.socket); "
                  "a postscreen on another port is not replaced" },
                { MASTER_INET_SHIPPED, "submission", "postern-submission.socket", NULL },
                { MASTER_INET_SHIPPED, "submissions", "postern-submissions.socket", NULL },
                { MASTER_INET_SOCKET, "10465", "postern-smtpd-10465.socket", NULL },
                { MASTER_INET_SOCKET, "127.0.0.1-10025", "postern-smtpd-127.0.0.1-10025.socket", NULL },
                { MASTER_INET_SOCKET, "127.0.0.1-10025-9", "postern-smtpd-127.0.0.1-10025-9.socket", NULL },
                { MASTER_INET_SKIP, NULL, NULL, "host \"mail.example.com\": the generator does not resolve host names "
                  "(no network at boot); use the address" },
                { MASTER_INET_SKIP, NULL, NULL, "port \"nosuchservice\" is neither a number nor a tcp service in "
                  "/etc/services" },
                { MASTER_INET_SKIP, NULL, NULL, "unix listeners (smtpd) are not supported; only inet entries become "
                  "socket units" },
                { MASTER_INET_SKIP, NULL, NULL, "command \"qmqpd\" on inet is not part of Postern" },
        };
        for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
                const MasterInet *l = &p.v[i];
                CHECK_INT(l->map, expect[i].map);
                CHECK(!l->fdname == !expect[i].fdname);
                if (expect[i].fdname) {
                        CHECK_STR(l->fdname, expect[i].fdname);
                        CHECK_STR(l->unit, expect[i].unit);
                }
                CHECK(!l->note == !expect[i].note);
                if (expect[i].note)
                        CHECK_STR(l->note, expect[i].note);
        }
        /* the postscreen listener takes the pass entry's options */
        CHECK(p.v[0].options == &m.entries[1]);
        CHECK_INT(p.v[0].port, 25);
        CHECK_STR(p.v[6].host, "127.0.0.1");
        CHECK_INT(p.v[6].port, 10025);
        CHECK(master_inet_find(&p, "10465") == &p.v[5]);
        CHECK(!master_inet_find(&p, "submit"));
        master_inet_plan_done(&p);
        master_cf_done(&m);

        /* an unused pass entry is skipped with its reason; 465 without wrappermode is plain */
        plan("smtpd pass - - n - - smtpd\n465 inet n - n - - smtpd\n", NULL, &m, &p);
        CHECK_INT(p.v[0].map, MASTER_INET_SKIP);
        CHECK(strstr(p.v[0].note, "take connections from a postscreen process"));
        CHECK_INT(p.v[1].map, MASTER_INET_SOCKET);
        CHECK_STR(p.v[1].fdname, "465");
        master_inet_plan_done(&p);
        master_cf_done(&m);
}

static void test_listen(void) {
        MasterCf m = {};
        MasterInetPlan p = {};
        char *loopback[] = { (char *) "loopback-only", NULL };
        plan("smtp inet n - n - - smtpd\n10.0.0.1:2525 inet n - n - - smtpd\n", loopback, &m, &p);
        CHECK_STR(p.v[0].listen[0], "127.0.0.1:25");
        CHECK_STR(p.v[0].listen[1], "[::1]:25");
        CHECK(!p.v[0].listen[2] && p.v[0].narrowed);
        CHECK_STR(p.v[1].listen[0], "10.0.0.1:2525");   /* the entry's host wins */
        CHECK(!p.v[1].listen[1]);
        master_inet_plan_done(&p);
        master_cf_done(&m);

        /* names in inet_interfaces need DNS: left out and said; none left skips the entry */
        char *names[] = { (char *) "mail.example.com", NULL };
        plan("smtp inet n - n - - smtpd\n", names, &m, &p);
        CHECK_INT(p.v[0].map, MASTER_INET_SKIP);
        CHECK_STR(p.v[0].note, "inet_interfaces \"mail.example.com\" left out: the generator does not resolve "
                  "host names (no network at boot); use the address");
        master_inet_plan_done(&p);
        master_cf_done(&m);

        /* inet_protocols = ipv4: the IPv4 wildcard, a drop-in even for a shipped socket */
        char *all[] = { (char *) "all", NULL };
        CHECK_INT(master_cf_parse("smtp inet n - n - - smtpd\n", "master.cf", &m, &(char *) { NULL }), 0);
        CHECK_INT(master_inet_plan(&m, all, "ipv4", &p), 0);
        CHECK_STR(p.v[0].listen[0], "0.0.0.0:25");
        CHECK(p.v[0].narrowed);
        master_inet_plan_done(&p);
        master_cf_done(&m);

        CHECK_INT(master_inet_port("submission"), 587);
        CHECK_INT(master_inet_port("10025"), 10025);
        CHECK_INT(master_inet_port("70000"), 0);
        CHECK_INT(master_inet_port("no-such-service"), 0);
}

static char tmpdir[] = "/tmp/test-master-inet-XXXXXX";

static void write_file(const char *name, const char *text) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", tmpdir, name);
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs(text, f);
        fclose(f);
}

static bool has_message(char **messages, const char *text) {
        for (char **m = messages; m && *m; m++)
                if (strstr(*m, text))
                        return true;
        return false;
}

/* Writes main.cf and master.cf, loads them (expecting success) and returns the Conf. */
static Conf *load_pair(const char *main_text, const char *master_text, char ***ret_messages) {
        char main_cf[256];
        snprintf(main_cf, sizeof main_cf, "%s/main.cf", tmpdir);
        write_file("main.cf", main_text);
        write_file("master.cf", master_text);
        Conf *c = NULL;
        CHECK_INT(conf_load(main_cf, &c, ret_messages), 0);
        return c;
}

/* A port-25 postscreen that smtpd replaces gives its PROXY protocol (its own -o, else main.cf's)
 * to the smtp listener; without one, main.cf's setting is said to do nothing. */
static void test_postscreen_proxy(void) {
        char **messages = NULL;
        Conf *c = load_pair("postscreen_upstream_proxy_protocol = haproxy\npostscreen_upstream_proxy_timeout = 9s\n",
                            "smtp inet n - n - 1 postscreen -o postscreen_upstream_proxy_timeout=3s "
                            "-o postscreen_greet_wait=2s\nsmtpd pass - - n - - smtpd\n", &messages);
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_upstream_proxy_protocol"), "haproxy");
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_upstream_proxy_timeout"), "3s");
        CHECK_STR(conf_get_listener(c, "submission", "smtpd_upstream_proxy_protocol"), "");
        CHECK(!has_message(messages, "not supported: postscreen_upstream_proxy"));
        /* the listener screens, with the postscreen entry's own postscreen_* options */
        CHECK_STR(conf_get_listener(c, "smtp", "postern_postscreen_enable"), "yes");
        CHECK_STR(conf_get_listener(c, "submission", "postern_postscreen_enable"), "no");
        CHECK_STR(conf_get_listener(c, "smtp", "postscreen_greet_wait"), "2s");
        CHECK_STR(conf_get(c, "postscreen_greet_wait"), "6s");
        strv_free(messages);
        conf_free(c);

        /* main.cf can switch the screening off for the listener */
        c = load_pair("smtp/postern_postscreen_enable = no\n",
                      "smtp inet n - n - 1 postscreen -o postscreen_no_such_thing=1\n", &messages);
        CHECK_STR(conf_get_listener(c, "smtp", "postern_postscreen_enable"), "no");
        CHECK(has_message(messages, "not supported: -o postscreen_no_such_thing on smtp (Postern has no parameter"));
        strv_free(messages);
        conf_free(c);

        /* main.cf's own listener setting wins */
        c = load_pair("smtp/smtpd_upstream_proxy_protocol =\n",
                      "smtp inet n - n - 1 postscreen -o postscreen_upstream_proxy_protocol=haproxy\n", &messages);
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_upstream_proxy_protocol"), "");
        strv_free(messages);
        conf_free(c);

        /* no postscreen: accepted, and said to do nothing */
        c = load_pair("postscreen_upstream_proxy_protocol = haproxy\n", "smtp inet n - n - - smtpd\n", &messages);
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_upstream_proxy_protocol"), "");
        CHECK(has_message(messages, "postscreen_upstream_proxy_protocol: not supported: postscreen_upstream_proxy_protocol "
                          "(master.cf has no port-25 postscreen entry"));
        strv_free(messages);
        conf_free(c);
        char path[256];
        snprintf(path, sizeof path, "%s/main.cf", tmpdir);
        unlink(path);
        snprintf(path, sizeof path, "%s/master.cf", tmpdir);
        unlink(path);
}

static void test_conf_overrides(void) {
        char main_cf[256], master_cf[256];
        snprintf(main_cf, sizeof main_cf, "%s/main.cf", tmpdir);
        snprintf(master_cf, sizeof master_cf, "%s/master.cf", tmpdir);
        write_file("main.cf",
                   "mua_client_restrictions = permit_sasl_authenticated, reject\n"
                   "smtpd_tls_security_level = may\n"
                   "127.0.0.1-10025/smtpd_helo_required = no\n");
        write_file("master.cf",
                   "submission inet n - n - - smtpd\n"
                   "  -o syslog_name=postfix/submission\n"
                   "  -o smtpd_tls_security_level=encrypt\n"
                   "  -o smtpd_client_restrictions=$mua_client_restrictions\n"
                   "  -o { smtpd_sender_restrictions = reject_sender_login_mismatch, permit }\n"
                   "127.0.0.1:10025 inet n - n - - smtpd\n"
                   "  -o smtpd_tls_security_level=${no_such?{encrypt}:{may}}\n"
                   "  -o content_filter=\n"
                   "  -o receive_override_options=no_unknown_recipient_checks\n"
                   "  -o mynetworks=127.0.0.0/8\n"
                   "  -o smtpd_helo_required=yes\n"
                   "  -o smtpd_helo_restrictions={permit_mynetworks, reject}\n");
        Conf *c = NULL;
        char **messages = NULL;
        CHECK_INT(conf_load(main_cf, &c, &messages), 0);
        CHECK_STR(conf_get_listener(c, "submission", "smtpd_tls_security_level"), "encrypt");
        CHECK_STR(conf_get_listener(c, "smtp", "smtpd_tls_security_level"), "may");
        CHECK_STR(conf_get_listener(c, "submission", "smtpd_client_restrictions"), "permit_sasl_authenticated, reject");
        CHECK_STR(conf_get_listener(c, "submission", "smtpd_sender_restrictions"), "reject_sender_login_mismatch, permit");
        CHECK_STR(conf_get_listener(c, "submission", "syslog_name"), "postfix/submission");
        CHECK_STR(conf_get_listener(c, "127.0.0.1-10025", "mynetworks"), "127.0.0.0/8");
        /* main.cf's own listener setting wins over master.cf's -o */
        CHECK_STR(conf_get_listener(c, "127.0.0.1-10025", "smtpd_helo_required"), "no");
        char expect[512];
        /* a content filter's return listener: its -o content_filter= (empty) and
         * receive_override_options are listener settings like the others */
        CHECK_STR(conf_get_listener(c, "127.0.0.1-10025", "content_filter"), "");
        CHECK_STR(conf_get_listener(c, "127.0.0.1-10025", "receive_override_options"), "no_unknown_recipient_checks");
        CHECK(!has_message(messages, "-o content_filter"));
        /* braces: an expansion is fine, "name={a b}" (split into words by master.cf) is said */
        CHECK_STR(conf_get_listener(c, "127.0.0.1-10025", "smtpd_tls_security_level"), "may");
        CHECK(has_message(messages, "not supported: -o smtpd_helo_restrictions on 127.0.0.1:10025 (unbalanced \"{\" "
                          "or \"}\" in \"{permit_mynetworks,\"; write -o { smtpd_helo_restrictions = value with spaces })"));
        CHECK(strcmp(conf_get_listener(c, "127.0.0.1-10025", "smtpd_helo_restrictions"), "{permit_mynetworks,") != 0);
        CHECK(has_message(messages, "not supported: \"reject}\" on 127.0.0.1:10025 (an argument; smtpd entries take "
                          "only -o name=value)"));
        CHECK(!has_message(messages, "-o receive_override_options"));
        CHECK(!has_message(messages, "unknown parameter"));
        strv_free(messages);
        conf_free(c);

        /* an invalid value is an error naming master.cf and the entry's line */
        write_file("master.cf", "\n10587 inet n - n - - smtpd -o smtpd_tls_security_level=always\n");
        c = NULL;
        CHECK_INT(conf_load(main_cf, &c, &messages), -EINVAL);
        snprintf(expect, sizeof expect, "%s:2: 10587/smtpd_tls_security_level: invalid value", master_cf);
        CHECK(has_message(messages, expect));
        strv_free(messages);

        unlink(main_cf);
        unlink(master_cf);
}

int main(void) {
        test_classify();
        test_listen();
        CHECK(mkdtemp(tmpdir));
        test_conf_overrides();
        test_postscreen_proxy();
        rmdir(tmpdir);
        return 0;
}
