/* test-verify-cache.c — unit tests for postern-verify's cache: the freshness rules
 * (verify_cache_decide), the probe sender, rows surviving a reopen of the file, batched cleanup,
 * and a file that is not a database. */
#include <fcntl.h>
#include <unistd.h>

#include "basic/tests.h"
#include "verify.h"

#define DAY 86400

static const VerifyPolicy policy = {
        .positive_expire = 31 * DAY, .positive_refresh = 7 * DAY,
        .negative_expire = 3 * DAY, .negative_refresh = 3 * 3600, .negative_cache = true,
};

static void test_decide(void) {
        const int64_t now = 100 * DAY;
        static const struct {
                VerifyStatus status;
                int64_t updated_ago, probed_ago;   /* -1: never */
                bool negative_cache;
                VerifyStatus answer;
                bool probe;
        } cases[] = {
                /* fresh results answer without a probe */
                { VERIFY_DELIVERABLE, DAY, -1, true, VERIFY_DELIVERABLE, false },
                { VERIFY_UNDELIVERABLE, 60, -1, true, VERIFY_UNDELIVERABLE, false },
                /* older than the refresh time: still answered, refreshed once */
                { VERIFY_DELIVERABLE, 8 * DAY, -1, true, VERIFY_DELIVERABLE, true },
                { VERIFY_DELIVERABLE, 8 * DAY, 10, true, VERIFY_DELIVERABLE, false },
                { VERIFY_DELIVERABLE, 8 * DAY, VERIFY_PROBE_TTL + 1, true, VERIFY_DELIVERABLE, true },
                { VERIFY_UNDELIVERABLE, 4 * 3600, -1, true, VERIFY_UNDELIVERABLE, true },
                /* expired: no answer, a probe */
                { VERIFY_DELIVERABLE, 32 * DAY, -1, true, VERIFY_PENDING, true },
                { VERIFY_UNDELIVERABLE, 4 * DAY, -1, true, VERIFY_PENDING, true },
                /* no negative cache: every query probes (unless one is in flight) */
                { VERIFY_UNDELIVERABLE, 60, -1, false, VERIFY_UNDELIVERABLE, true },
                { VERIFY_UNDELIVERABLE, 60, 30, false, VERIFY_UNDELIVERABLE, false },
                /* pending: a lost probe is sent again after VERIFY_PROBE_TTL */
                { VERIFY_PENDING, -1, 10, true, VERIFY_PENDING, false },
                { VERIFY_PENDING, -1, VERIFY_PROBE_TTL + 1, true, VERIFY_PENDING, true },
                /* undetermined: answered, retried like a lost probe */
                { VERIFY_UNDETERMINED, 60, -1, true, VERIFY_UNDETERMINED, false },
                { VERIFY_UNDETERMINED, VERIFY_PROBE_TTL + 5, -1, true, VERIFY_UNDETERMINED, true },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                VerifyPolicy p = policy;
                p.negative_cache = cases[i].negative_cache;
                VerifyEntry e = {
                        .status = cases[i].status,
                        .updated = cases[i].updated_ago < 0 ? 0 : now - cases[i].updated_ago,
                        .probed = cases[i].probed_ago < 0 ? 0 : now - cases[i].probed_ago,
                };
                VerifyDecision d = verify_cache_decide(&p, &e, now);
                if (d.answer != cases[i].answer || d.probe != cases[i].probe) {
                        fprintf(stderr, "case %zu: answer %s probe %d\n", i, verify_status_name(d.answer), d.probe);
                        exit(1);
                }
        }
        VerifyDecision d = verify_cache_decide(&policy, NULL, now);
        CHECK_INT(d.answer, VERIFY_PENDING);
        CHECK(d.probe);
}

static void test_sender(void) {
        char *s;
        CHECK_STR(s = verify_probe_sender("double-bounce", "example.org", 0, 1000), "double-bounce@example.org");
        free(s);
        CHECK_STR(s = verify_probe_sender("probe@x.example", "example.org", 0, 1000), "probe@x.example");
        free(s);
        CHECK_STR(s = verify_probe_sender("<>", "example.org", 0, 1000), "");
        free(s);
        CHECK_STR(s = verify_probe_sender("", "example.org", 0, 1000), "");
        free(s);
        /* 31 * 31 + 1 periods: "101" in base 31; the same within a period, another after */
        CHECK_STR(s = verify_probe_sender("double-bounce", "example.org", 60, 962 * 60 + 59),
                  "double-bounce101@example.org");
        free(s);
        CHECK_STR(s = verify_probe_sender("double-bounce", "example.org", 60, 963 * 60), "double-bounce102@example.org");
        free(s);
}

static void test_file(void) {
        char dir[] = "/tmp/test-verify-XXXXXX";
        CHECK(mkdtemp(dir));
        char path[256];
        snprintf(path, sizeof path, "%s/verify.db", dir);

        VerifyCache *c = NULL;
        char *why = NULL;
        CHECK_INT(verify_cache_open(path, &c, &why), 0);
        const int64_t now = 100 * DAY;
        CHECK_INT(verify_cache_put(c, "good@example.org", &(VerifyEntry) { VERIFY_DELIVERABLE, now, now, "250 ok" }), 0);
        CHECK_INT(verify_cache_put(c, "old@example.org", &(VerifyEntry) { VERIFY_DELIVERABLE, now - 40 * DAY, 0, "" }), 0);
        CHECK_INT(verify_cache_put(c, "bad@example.org", &(VerifyEntry) { VERIFY_UNDELIVERABLE, now - 4 * DAY, 0, "550" }), 0);
        CHECK_INT(verify_cache_put(c, "lost@example.org", &(VerifyEntry) { VERIFY_PENDING, 0, now - 2000, "" }), 0);
        for (int i = 0; i < 25; i++) {
                char a[64];
                snprintf(a, sizeof a, "gone%d@example.org", i);
                CHECK_INT(verify_cache_put(c, a, &(VerifyEntry) { VERIFY_UNDETERMINED, now - 5 * DAY, 0, "" }), 0);
        }
        c = verify_cache_free(c);

        /* reopened: the rows are there */
        CHECK_INT(verify_cache_open(path, &c, &why), 0);
        VerifyEntry e = {};
        CHECK_INT(verify_cache_get(c, "good@example.org", &e), 1);
        CHECK_INT(e.status, VERIFY_DELIVERABLE);
        CHECK_STR(e.reason, "250 ok");
        verify_entry_done(&e);
        CHECK_INT(verify_cache_get(c, "nobody@example.org", &e), 0);
        CHECK_INT(verify_cache_count(c), 29);

        /* cleanup in batches of 10: 28 expired rows take three batches */
        bool more = false;
        int total = 0, batches = 0, n;
        do {
                CHECK((n = verify_cache_cleanup_batch(c, &policy, now, 10, &more)) >= 0);
                total += n;
                batches++;
        } while (more);
        CHECK_INT(total, 28);
        CHECK_INT(batches, 3);
        CHECK_INT(verify_cache_count(c), 1);
        c = verify_cache_free(c);

        /* a file that is not a database */
        int fd = open(path, O_WRONLY | O_TRUNC);
        CHECK(fd >= 0);
        char junk[4096];
        memset(junk, 'x', sizeof junk);
        CHECK_INT(write(fd, junk, sizeof junk), (long long) sizeof junk);
        close(fd);
        char wal[300];
        snprintf(wal, sizeof wal, "%s-wal", path);
        unlink(wal);
        CHECK(verify_cache_open(path, &c, &why) < 0);
        CHECK(why && strstr(why, "not a database"));
        free(why);
        why = NULL;

        /* in memory */
        CHECK_INT(verify_cache_open(NULL, &c, &why), 0);
        CHECK_STR(verify_cache_path(c), "(memory)");
        CHECK_INT(verify_cache_put(c, "a@b", &(VerifyEntry) { VERIFY_DELIVERABLE, now, now, "" }), 0);
        CHECK_INT(verify_cache_count(c), 1);
        c = verify_cache_free(c);

        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK_INT(system(cmd), 0);
}

static void test_status_names(void) {
        VerifyStatus s;
        for (int i = 0; i < _VERIFY_STATUS_MAX; i++) {
                CHECK_INT(verify_status_from_name(verify_status_name((VerifyStatus) i), &s), 0);
                CHECK_INT(s, i);
        }
        CHECK_INT(verify_status_from_name("ok", &s), -EINVAL);
        CHECK_INT(verify_status_from_name(NULL, &s), -EINVAL);
}

int main(void) {
        test_decide();
        test_sender();
        test_file();
        test_status_names();
        return 0;
}
