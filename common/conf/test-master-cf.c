/* test-master-cf.c — unit tests for the master.cf reader: fields, continuation lines, comments,
 * -o options (plain, "{ name = value }", last one wins), "{ }" arguments, classification of
 * transports, built-ins, listeners and unknown commands, and each syntax error's message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "master-cf.h"
#include "basic/tests.h"

static const char sample[] =
        "# a comment\n"
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "submission inet n       -       y       -       -       smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n"
        "\n"
        "qmgr      unix  n       -       n       300     1       qmgr\n"
        "tlsmgr    unix  -       -       y       1000?   1       tlsmgr\n"
        "relay     unix  -       -       y       -       -       smtp\n"
        "    -o smtp_helo_timeout=5 -o smtp_helo_timeout=7\n"
        "smtp-amavis unix -      -       n       -       2       smtp\n"
        "   -o smtp_data_done_timeout=1200\n"
        "dovecot   unix  -       n       n       -       -       pipe\n"
        "  flags=DRhu user=vmail:vmail argv=/usr/lib/dovecot/deliver -f ${sender} -d ${recipient}\n"
        "spamc     unix  -       n       n       -       -       pipe\n"
        "  user=nobody argv=/usr/bin/spamc -f -e /usr/sbin/sendmail -oi -f ${sender} ${recipient}\n"
        "spaced    unix  -       n       n       -       -       pipe\n"
        "  flags=R user=nobody argv=/bin/echo { two words } end\n"
        "policyd-spf unix -      n       n       -       0       spawn\n"
        "  user=nobody argv=/usr/bin/policyd-spf\n"
        "127.0.0.1:10025 inet n  -       n       -       -       smtpd\n";

static void check_error(const char *text, const char *expect) {
        MasterCf m = {};
        char *err = NULL;
        CHECK_INT(master_cf_parse(text, "master.cf", &m, &err), -EINVAL);
        CHECK_STR(err, expect);
        CHECK(m.n == 0 && !m.entries);
        free(err);
}

int main(void) {
        MasterCf m = {};
        char *err = NULL;

        CHECK_INT(master_cf_parse(sample, "master.cf", &m, &err), 0);
        CHECK(!err);
        CHECK_INT(m.n, 11);

        CHECK_STR(m.entries[0].service, "smtp");
        CHECK_INT(m.entries[0].kind, MASTER_LISTENER);
        CHECK_INT(m.entries[0].line, 2);
        CHECK_STR(m.entries[0].fields[0], "n");
        CHECK_STR(m.entries[0].fields[2], "y");
        CHECK_STR(m.entries[3].fields[3], "1000?");

        const MasterEntry *sub = &m.entries[1];
        CHECK_INT(sub->line, 3);
        CHECK_INT(sub->n_options, 2);
        CHECK_STR(master_entry_option(sub, "syslog_name"), "postfix/submission");
        CHECK_STR(master_entry_option(sub, "smtpd_client_restrictions"), "permit_sasl_authenticated, reject");

        CHECK_INT(m.entries[2].kind, MASTER_BUILTIN);
        CHECK_STR(m.entries[2].builtin, "postern-qmgr");
        CHECK_INT(m.entries[2].maxproc, 1);
        CHECK_INT(m.entries[3].kind, MASTER_BUILTIN);

        /* per-transport parameters of the transports it defines are known */
        CHECK(master_cf_transport_param(&m, "dovecot_destination_recipient_limit"));
        CHECK(master_cf_transport_param(&m, "dovecot_time_limit"));
        CHECK(master_cf_transport_param(&m, "smtp-amavis_destination_concurrency_limit"));
        CHECK(!master_cf_transport_param(&m, "dovecot_bogus_limit"));
        CHECK(!master_cf_transport_param(&m, "nosuch_destination_recipient_limit"));
        CHECK(!master_cf_transport_param(&m, "qmgr_destination_recipient_limit"));   /* built in */
        CHECK(!master_cf_transport_param(&m, "_time_limit"));

        const MasterEntry *relay = master_cf_transport(&m, "relay");
        CHECK(relay && relay->maxproc == -1);
        CHECK_STR(relay->command, "smtp");
        CHECK_STR(master_entry_option(relay, "smtp_helo_timeout"), "7");   /* the last one wins */

        const MasterEntry *amavis = master_cf_transport(&m, "smtp-amavis");
        CHECK(amavis && amavis->maxproc == 2);
        CHECK_STR(master_entry_option(amavis, "smtp_data_done_timeout"), "1200");
        CHECK(!master_entry_option(amavis, "smtp_helo_timeout"));

        const MasterEntry *dovecot = master_cf_transport(&m, "dovecot");
        CHECK(dovecot);
        CHECK_STR(dovecot->command, "pipe");
        const char *const want[] = { "flags=DRhu", "user=vmail:vmail", "argv=/usr/lib/dovecot/deliver", "-f",
                                     "${sender}", "-d", "${recipient}", NULL };
        for (size_t i = 0; want[i] || dovecot->args[i]; i++)
                CHECK_STR(dovecot->args[i], want[i]);

        /* -o after the first argument belongs to the command (getopt's order). */
        const MasterEntry *spamc = master_cf_transport(&m, "spamc");
        CHECK_INT(spamc->n_options, 0);
        CHECK_STR(spamc->args[5], "-oi");
        const MasterEntry *spaced = master_cf_transport(&m, "spaced");
        CHECK_STR(spaced->args[3], "two words");
        CHECK_STR(spaced->args[4], "end");

        CHECK(!master_cf_transport(&m, "policyd-spf"));
        CHECK_INT(m.entries[9].kind, MASTER_UNKNOWN);
        CHECK_INT(m.entries[10].kind, MASTER_LISTENER);
        CHECK(!master_cf_transport(&m, "smtp"));   /* the inet listener is not a transport */
        CHECK_STR(master_kind_name(MASTER_BUILTIN), "built in");
        master_cf_done(&m);

        /* Empty and comment-only files have no entries. */
        CHECK_INT(master_cf_parse("", "master.cf", &m, &err), 0);
        CHECK_INT(m.n, 0);
        CHECK_INT(master_cf_parse("# only\n\n   \n", "master.cf", &m, &err), 0);
        CHECK_INT(m.n, 0);

        check_error("  -o x=y\n", "master.cf:1: a continuation line (it starts with white space) with no entry before it");
        check_error("smtp inet n - y - - \n",
                    "master.cf:1: expected at least 8 fields (service, type, private, unpriv, chroot, wakeup, "
                    "maxproc, command), found 7");
        check_error("# x\nsmtp tcp n - y - - smtpd\n",
                    "master.cf:2: smtp: unknown service type \"tcp\" (expected inet, unix, unix-dgram, fifo or pass)");
        check_error("smtp inet maybe - y - - smtpd\n", "master.cf:1: smtp: private field \"maybe\" is not y, n or -");
        check_error("qmgr unix n - n 3x 1 qmgr\n",
                    "master.cf:1: qmgr: wakeup field \"3x\" is not a number of seconds, N? or -");
        check_error("relay unix - - y - many smtp\n", "master.cf:1: relay: maxproc field \"many\" is not a number or -");
        check_error("relay unix - - y - -1 smtp\n", "master.cf:1: relay: maxproc field \"-1\" is not a number or -");
        check_error("relay unix - - y - - smtp -o\n", "master.cf:1: relay: -o without name=value");
        check_error("relay unix - - y - - smtp -o novalue\n", "master.cf:1: relay: -o \"novalue\" is not name=value");
        check_error("relay unix - - y - - smtp\n  -o { a = b\n", "master.cf:1: a \"{\" without its \"}\"");
        check_error("relay unix - - y - - smtp {a}b\n", "master.cf:1: text right after a \"}\"");
        check_error("relay unix - - y - - smtp\n\nrelay unix - - y - - smtp\n",
                    "master.cf:3: relay/unix: defined again (first at line 1)");

        /* A missing file is -ENOENT without an error text. */
        CHECK_INT(master_cf_load("/nonexistent/master.cf", &m, &err), -ENOENT);
        CHECK(!err);
        return 0;
}
