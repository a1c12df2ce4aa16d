/* test-anvil-table.c — unit tests for postern-anvil's client table: rate windows, connections
 * held per peer, the entry limit (eviction of idle clients, untracked clients when every entry
 * has connections) and expiry. */
#include "basic/tests.h"
#include "anvil.h"

#define SEC USEC_PER_SEC

static const int peer1, peer2;   /* peers are identities only */

static void test_rates_and_window(void) {
        AnvilTable t;
        AnvilResult r;
        CHECK_INT(anvil_table_init(&t, 100, 60 * SEC), 0);
        for (unsigned i = 1; i <= 3; i++) {
                CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_MESSAGE, &peer1, 10 * SEC, &r), 0);
                CHECK_INT(r.rate, i);
                CHECK_INT(r.count, 0);
                CHECK(r.tracked);
        }
        CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_RECIPIENT, &peer1, 20 * SEC, &r), 0);
        CHECK_INT(r.rate, 1);
        /* another service is another client */
        CHECK_INT(anvil_table_event(&t, "submission:192.0.2.1", ANVIL_MESSAGE, &peer1, 20 * SEC, &r), 0);
        CHECK_INT(r.rate, 1);
        unsigned count, rates[_ANVIL_EVENT_MAX];
        anvil_table_lookup(&t, "smtp:192.0.2.1", 69 * SEC, &count, rates);
        CHECK_INT(rates[ANVIL_MESSAGE], 3);
        CHECK_INT(rates[ANVIL_RECIPIENT], 1);
        /* the window started at 10 s: at 70 s every rate restarts */
        anvil_table_lookup(&t, "smtp:192.0.2.1", 70 * SEC, &count, rates);
        CHECK_INT(rates[ANVIL_MESSAGE], 0);
        CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_MESSAGE, &peer1, 70 * SEC, &r), 0);
        CHECK_INT(r.rate, 1);
        CHECK_INT(t.max_rate[ANVIL_MESSAGE].value, 3);
        CHECK_STR(t.max_rate[ANVIL_MESSAGE].key, "smtp:192.0.2.1");
        anvil_table_done(&t);
}

static void test_connections_per_peer(void) {
        AnvilTable t;
        AnvilResult r;
        CHECK_INT(anvil_table_init(&t, 100, 60 * SEC), 0);
        CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_CONNECT, &peer1, SEC, &r), 0);
        CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_CONNECT, &peer1, SEC, &r), 0);
        CHECK_INT(anvil_table_event(&t, "smtp:192.0.2.1", ANVIL_CONNECT, &peer2, SEC, &r), 0);
        CHECK_INT(r.count, 3);
        CHECK_INT(r.rate, 3);
        /* a peer cannot end what another one reported */
        anvil_table_disconnect(&t, "smtp:192.0.2.1", &peer2, SEC, &r);
        CHECK_INT(r.count, 2);
        anvil_table_disconnect(&t, "smtp:192.0.2.1", &peer2, SEC, &r);
        CHECK_INT(r.count, 2);
        anvil_table_disconnect(&t, "smtp:192.0.2.9", &peer2, SEC, &r);
        CHECK_INT(r.count, 0);
        CHECK(!r.tracked);
        /* peer1 goes away: its two connections go with it */
        anvil_table_drop_peer(&t, &peer1);
        unsigned count, rates[_ANVIL_EVENT_MAX];
        anvil_table_lookup(&t, "smtp:192.0.2.1", SEC, &count, rates);
        CHECK_INT(count, 0);
        CHECK_INT(rates[ANVIL_CONNECT], 3);   /* the rate stays */
        CHECK_INT(t.max_count.value, 3);
        anvil_table_done(&t);
}

static void test_limit_and_expiry(void) {
        AnvilTable t;
        AnvilResult r;
        CHECK_INT(anvil_table_init(&t, 2, 60 * SEC), 0);
        CHECK_INT(anvil_table_event(&t, "smtp:a", ANVIL_CONNECT, &peer1, 1 * SEC, &r), 0);
        CHECK_INT(anvil_table_event(&t, "smtp:b", ANVIL_MESSAGE, &peer1, 2 * SEC, &r), 0);
        /* full: the least recently used client without connections (b) makes room */
        CHECK_INT(anvil_table_event(&t, "smtp:c", ANVIL_CONNECT, &peer1, 3 * SEC, &r), 0);
        CHECK(r.tracked);
        CHECK_INT(t.n_entries, 2);
        CHECK_INT(t.evicted, 1);
        unsigned count, rates[_ANVIL_EVENT_MAX];
        anvil_table_lookup(&t, "smtp:b", 3 * SEC, &count, rates);
        CHECK_INT(rates[ANVIL_MESSAGE], 0);
        anvil_table_lookup(&t, "smtp:a", 3 * SEC, &count, rates);
        CHECK_INT(count, 1);
        /* every entry has a connection: the newcomer is answered but not recorded */
        CHECK_INT(anvil_table_event(&t, "smtp:d", ANVIL_CONNECT, &peer1, 4 * SEC, &r), 0);
        CHECK(!r.tracked);
        CHECK_INT(r.count, 1);
        CHECK_INT(r.rate, 1);
        CHECK_INT(t.n_entries, 2);
        CHECK_INT(t.untracked, 1);
        /* expiry keeps connected clients and forgets idle ones after the time unit */
        anvil_table_disconnect(&t, "smtp:c", &peer1, 5 * SEC, &r);
        CHECK_INT(anvil_table_expire(&t, 30 * SEC), 0);
        CHECK_INT(anvil_table_expire(&t, 70 * SEC), 1);
        CHECK_INT(t.n_entries, 1);
        anvil_table_lookup(&t, "smtp:a", 70 * SEC, &count, rates);
        CHECK_INT(count, 1);
        anvil_table_log_statistics(&t);
        CHECK_INT(t.max_count.value, 0);
        CHECK_INT(t.evicted, 0);
        anvil_table_done(&t);
}

int main(void) {
        test_rates_and_window();
        test_connections_per_peer();
        test_limit_and_expiry();
        return 0;
}
