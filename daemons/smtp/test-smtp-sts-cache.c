/* test-smtp-sts-cache.c — the MTA-STS policy cache (smtp-sts-cache.c) in a file: a policy stored
 * comes back with its id and fetch time, survives reopening, is replaced by a newer one, and is
 * gone once its max_age has passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/tests.h"
#include "smtp-sts.h"

static void policy(StsPolicy *p, const char *id, const char *mx, uint64_t max_age, uint64_t fetched) {
        char text[300], why[100];
        snprintf(text, sizeof text, "version: STSv1\nmode: enforce\nmx: %s\nmax_age: %llu\n", mx,
                 (unsigned long long) max_age);
        CHECK(sts_policy_parse(text, strlen(text), p, why, sizeof why) == 0);
        snprintf(p->id, sizeof p->id, "%s", id);
        p->fetched = fetched;
}

int main(void) {
        char dir[] = "/tmp/test-sts-cache-XXXXXX", path[100];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/mta-sts.db", dir);
        uint64_t now = (uint64_t) time(NULL);
        StsCache *c = NULL;
        StsPolicy p, got;

        CHECK(sts_cache_open(path, &c, NULL) == 0);
        CHECK(sts_cache_get(c, "example.com", &got) == 0);
        policy(&p, "one", "mx.example.com", 86400, now - 10);
        CHECK(sts_cache_put(c, "example.com", &p) == 0);
        sts_policy_done(&p);
        c = sts_cache_free(c);

        CHECK(sts_cache_open(path, &c, NULL) == 0);   /* kept in the file */
        CHECK(sts_cache_get(c, "example.com", &got) == 1);
        CHECK_STR(got.id, "one");
        CHECK(got.fetched == now - 10 && got.max_age == 86400 && got.mode == STS_MODE_ENFORCE);
        CHECK(sts_policy_mx_allowed(&got, "mx.example.com"));
        sts_policy_done(&got);

        policy(&p, "two", "mx2.example.com", 3600, now);
        CHECK(sts_cache_put(c, "example.com", &p) == 0);
        sts_policy_done(&p);
        CHECK(sts_cache_get(c, "example.com", &got) == 1);
        CHECK_STR(got.id, "two");
        CHECK(!sts_policy_mx_allowed(&got, "mx.example.com"));
        sts_policy_done(&got);

        /* expired: fetched two hours ago with max_age one hour */
        policy(&p, "old", "mx.example.org", 3600, now - 7200);
        CHECK(sts_cache_put(c, "example.org", &p) == 0);
        sts_policy_done(&p);
        CHECK(sts_cache_get(c, "example.org", &got) == 0);
        CHECK(sts_cache_get(c, "example.org", &got) == 0);   /* and removed */
        CHECK(sts_cache_get(c, "example.com", &got) == 1);
        sts_policy_done(&got);

        c = sts_cache_free(c);
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        return 0;
}
