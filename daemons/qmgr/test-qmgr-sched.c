/* test-qmgr-sched.c — table-driven unit tests for the scheduler's pure logic: feedback values,
 * the concurrency window (slow start, positive and negative feedback, dead after failed
 * pseudo-cohorts) and the per-transport limits read from main.cf. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "qmgr.h"

static QmgrTransportLimits limits(size_t initial, size_t limit, const char *pos, const char *neg,
                                  size_t cohorts) {
        QmgrTransportLimits t = { .initial = initial, .dest_concurrency = limit, .rcpt_limit = 50,
                                  .process_limit = 100, .cohort_limit = cohorts };
        CHECK(qmgr_feedback_parse(pos, &t.pos) == 0);
        CHECK(qmgr_feedback_parse(neg, &t.neg) == 0);
        return t;
}

static void test_feedback_parse(void) {
        static const struct { const char *text; int r; double num; bool per; } t[] = {
                { "1", 0, 1, false }, { "0.5", 0, 0.5, false }, { "1/4", 0, 0.25, false },
                { "1/concurrency", 0, 1, true }, { "2 / concurrency", 0, 2, true },
                { "", -EINVAL, 0, false }, { "x", -EINVAL, 0, false }, { "1/0", -EINVAL, 0, false },
                { "-1", -EINVAL, 0, false }, { "1/x", -EINVAL, 0, false }, { "1 2", -EINVAL, 0, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                QmgrFeedback f = {};
                CHECK_INT(qmgr_feedback_parse(t[i].text, &f), t[i].r);
                if (t[i].r == 0) {
                        CHECK(f.num > t[i].num - 1e-9 && f.num < t[i].num + 1e-9);
                        CHECK(f.per_concurrency == t[i].per);
                }
        }
}

static void test_window_slow_start(void) {
        QmgrTransportLimits t = limits(5, 8, "1", "1", 1);
        QmgrWindow w;
        qmgr_window_init(&w, &t);
        CHECK_INT(w.window, 5);
        static const size_t after[] = { 6, 7, 8, 8, 8 };   /* +1 per success, capped at the limit */
        for (size_t i = 0; i < ELEMENTSOF(after); i++) {
                qmgr_window_success(&w, &t);
                CHECK_INT(w.window, after[i]);
        }
        /* an initial concurrency above the limit starts at the limit */
        QmgrTransportLimits small = limits(5, 2, "1", "1", 1);
        qmgr_window_init(&w, &small);
        CHECK_INT(w.window, 2);

        /* 1/concurrency: a window of 4 grows by one after 4 successes */
        QmgrTransportLimits slow = limits(4, 20, "1/concurrency", "1/concurrency", 1);
        qmgr_window_init(&w, &slow);
        for (int i = 0; i < 3; i++) {
                qmgr_window_success(&w, &slow);
                CHECK_INT(w.window, 4);
        }
        qmgr_window_success(&w, &slow);
        CHECK_INT(w.window, 5);
}

static void test_window_failure(void) {
        /* From 5: cohorts 1/5 + 1/4 + 1/3 + 1/2 = 1.28 once the window is down to 1: dead. */
        QmgrTransportLimits t = limits(5, 20, "1", "1", 1);
        QmgrWindow w;
        qmgr_window_init(&w, &t);
        static const struct { size_t window; bool dead; } fail[] = {
                { 4, false }, { 3, false }, { 2, false }, { 1, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(fail); i++) {
                CHECK(qmgr_window_failure(&w, &t) == fail[i].dead);
                CHECK_INT(w.window, fail[i].window);
        }

        /* A success in between resets the cohort count. */
        qmgr_window_init(&w, &t);
        CHECK(!qmgr_window_failure(&w, &t));
        CHECK(!qmgr_window_failure(&w, &t));
        qmgr_window_success(&w, &t);
        CHECK_INT(w.window, 4);
        CHECK(w.fail_cohorts == 0);

        /* At concurrency 1 with a cohort limit of 2: the second failure kills. */
        QmgrTransportLimits two = limits(1, 20, "1", "1", 2);
        qmgr_window_init(&w, &two);
        CHECK(!qmgr_window_failure(&w, &two));
        CHECK(qmgr_window_failure(&w, &two));
        CHECK_INT(w.window, 1);

        /* Negative feedback 1/concurrency at 4: four failures (one cohort) take one step. */
        QmgrTransportLimits gentle = limits(4, 20, "1", "1/concurrency", 3);
        qmgr_window_init(&w, &gentle);
        for (int i = 0; i < 3; i++) {
                CHECK(!qmgr_window_failure(&w, &gentle));
                CHECK_INT(w.window, 4);
        }
        CHECK(!qmgr_window_failure(&w, &gentle));
        CHECK_INT(w.window, 3);
}

static void test_settings(void) {
        char path[] = "/tmp/test-qmgr-sched-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        const char *text =
                "default_destination_concurrency_limit = 7\n"
                "smtp_destination_recipient_limit = 3\n"
                "initial_destination_concurrency = 2\n"
                "slowsmtp_destination_concurrency_limit = 1\n"
                "slowsmtp_process_limit = 4\n"
                "relay_destination_concurrency_positive_feedback = 1/concurrency\n"
                "smtp_destination_rate_delay = 2s\n"
                "slowsmtp_destination_rate_delay = 1m\n"
                "dovecot_destination_recipient_limit = 1\n"
                "filter_process_limit = 3\n";
        CHECK(write(fd, text, strlen(text)) == (ssize_t) strlen(text));
        close(fd);
        Conf *c = NULL;
        CHECK(conf_load(path, &c, NULL) >= 0);
        unlink(path);

        /* pipe entries of master.cf: known transports, maxproc as their process limit */
        MasterCf m = {};
        _cleanup_free_ char *err = NULL;
        CHECK(master_cf_parse("dovecot unix - n n - 5 pipe flags=DRhu user=vmail argv=/bin/true\n"
                              "filter unix - n n - 7 pipe user=nobody argv=/bin/cat\n"
                              "smtp-amavis unix - - n - 2 smtp\n"
                              "dovecot-lmtp unix - - n - 6 lmtp\n"
                              "retry unix - - n - - error\n"
                              "bouncer unix - - n - - error\n"
                              "trash unix - - n - - discard\n"
                              "policy unix - n n - 0 spawn user=nobody argv=/bin/true\n", "master.cf", &m, &err) == 0);
        QmgrSettings s = {};
        CHECK(qmgr_sched_settings_load(&s.sched, c, &m) == 0);
        master_cf_done(&m);
        const QmgrTransportLimits *dovecot = qmgr_sched_limits(&s, "dovecot");
        CHECK_STR(dovecot->name, "dovecot");
        CHECK(dovecot->pipe);
        CHECK_INT(dovecot->rcpt_limit, 1);
        CHECK_INT(dovecot->process_limit, 5);
        CHECK_INT(qmgr_sched_limits(&s, "filter")->process_limit, 3);   /* main.cf wins */
        CHECK(!qmgr_sched_limits(&s, "smtp-amavis")->pipe);
        /* smtp and lmtp entries: postern-smtp's sockets, maxproc as their process limit */
        CHECK_STR(qmgr_sched_agent(&s, "smtp-amavis"), "smtp");
        CHECK_INT(qmgr_sched_limits(&s, "smtp-amavis")->process_limit, 2);
        CHECK_STR(qmgr_sched_agent(&s, "dovecot-lmtp"), "lmtp");
        CHECK_INT(qmgr_sched_limits(&s, "dovecot-lmtp")->process_limit, 6);
        CHECK_STR(qmgr_sched_agent(&s, "dovecot"), "pipe");
        CHECK_STR(qmgr_sched_agent(&s, "relay"), "smtp");
        CHECK_STR(qmgr_sched_agent(&s, "virtual"), "virtual");
        /* error(8) bounces, or defers as "retry"; discard; an unknown command is unavailable */
        CHECK_STR(qmgr_sched_limits(&s, "retry")->builtin, "retry");
        CHECK_STR(qmgr_sched_limits(&s, "bouncer")->builtin, "error");
        CHECK_STR(qmgr_sched_limits(&s, "trash")->builtin, "discard");
        CHECK(qmgr_sched_limits(&s, "bouncer")->agent == NULL);
        CHECK(strstr(qmgr_sched_limits(&s, "policy")->unavailable, "4.3.5 mail transport unavailable: "
                     "master.cf entry policy (line 8) runs \"spawn\""));
        const QmgrTransportLimits *smtp = qmgr_sched_limits(&s, "smtp");
        CHECK_INT(smtp->dest_concurrency, 7);   /* $default_destination_concurrency_limit */
        CHECK_INT(smtp->rcpt_limit, 3);
        CHECK_INT(smtp->initial, 2);
        CHECK_INT(smtp->process_limit, 100);
        const QmgrTransportLimits *slow = qmgr_sched_limits(&s, "slowsmtp");
        CHECK_STR(slow->name, "slowsmtp");
        CHECK_INT(slow->dest_concurrency, 1);
        CHECK_INT(slow->process_limit, 4);
        CHECK_INT(slow->rcpt_limit, 50);
        CHECK_INT(slow->rate_delay, 60 * USEC_PER_SEC);
        CHECK_INT(smtp->rate_delay, 2 * USEC_PER_SEC);
        CHECK_INT(qmgr_sched_limits(&s, "lmtp")->rate_delay, 0);
        CHECK(qmgr_sched_limits(&s, "relay")->pos.per_concurrency);
        CHECK(!smtp->pos.per_concurrency);
        const QmgrTransportLimits *other = qmgr_sched_limits(&s, "unknown");
        CHECK(other->name == NULL);
        CHECK_INT(other->dest_concurrency, 7);
        qmgr_sched_settings_done(&s.sched);
        conf_free(c);
}

int main(void) {
        test_feedback_parse();
        test_window_slow_start();
        test_window_failure();
        test_settings();
        return 0;
}
