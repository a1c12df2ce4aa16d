/* test-host-addresses.c — unit tests for this host's addresses: numeric entries in each
 * spelling, loopback-only, "all" (every interface address getifaddrs() lists), host names handed
 * back as unsupported, client addresses and [address] literals matched in any spelling. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include "host-addresses.h"
#include "../basic/tests.h"

#define L(s) ((char *) (s))

static void test_entries(void) {
        char *list[] = { L("192.0.2.7"), L("[2001:db8::7]"), L("mail.example.org"), L("[IPv6:2001:db8::8]"),
                         L("192.0.2.7"), L("[192.0.2.300]"), NULL };
        HostAddresses h = {};
        _cleanup_strv_free_ char **unsupported = NULL;

        CHECK_INT(host_addresses_add(&h, list, &unsupported), 0);
        CHECK_INT(h.n, 3);                                     /* the duplicate counted once */
        CHECK(unsupported && unsupported[0] && unsupported[1] && !unsupported[2]);
        CHECK_STR(unsupported[0], "mail.example.org");
        CHECK_STR(unsupported[1], "[192.0.2.300]");
        CHECK(host_addresses_has(&h, "192.0.2.7"));
        CHECK(host_addresses_has(&h, "2001:DB8:0::7"));
        CHECK(host_addresses_has(&h, "2001:db8::8"));
        CHECK(!host_addresses_has(&h, "192.0.2.8"));
        CHECK(!host_addresses_has(&h, "mail.example.org"));
        CHECK(!host_addresses_has(&h, NULL));
        CHECK(host_addresses_has_literal(&h, "[192.0.2.7]"));
        CHECK(host_addresses_has_literal(&h, "[IPv6:2001:db8::7]"));
        CHECK(host_addresses_has_literal(&h, "[ipv6:2001:DB8:0::8]"));
        CHECK(!host_addresses_has_literal(&h, "192.0.2.7"));   /* a domain, not a literal */
        CHECK(!host_addresses_has_literal(&h, "[192.0.2.8]"));
        CHECK(!host_addresses_has_literal(&h, "[mail.example.org]"));
        CHECK(!host_addresses_has_literal(&h, "[192.0.2.7"));
        CHECK(!host_addresses_has_literal(&h, NULL));
        host_addresses_done(&h);
        CHECK(h.n == 0 && !h.v);

        /* without a place for them, host names are just skipped */
        CHECK_INT(host_addresses_add(&h, list, NULL), 0);
        CHECK_INT(h.n, 3);
        host_addresses_done(&h);
        CHECK_INT(host_addresses_add(&h, NULL, NULL), 0);
        CHECK_INT(h.n, 0);
}

static void test_loopback_only(void) {
        char *list[] = { L("loopback-only"), NULL };
        HostAddresses h = {};
        CHECK_INT(host_addresses_add(&h, list, NULL), 0);
        CHECK_INT(h.n, 2);
        CHECK(host_addresses_has_literal(&h, "[127.0.0.1]"));
        CHECK(host_addresses_has_literal(&h, "[IPv6:::1]"));
        CHECK(!host_addresses_has_literal(&h, "[127.0.0.2]"));
        host_addresses_done(&h);
}

/* "all": every IPv4 and IPv6 address getifaddrs() lists now, nothing else. */
static void test_all(void) {
        char *list[] = { L("ALL"), NULL };
        HostAddresses h = {};
        struct ifaddrs *ifa = NULL;
        size_t found = 0;

        CHECK_INT(host_addresses_add(&h, list, NULL), 0);
        if (getifaddrs(&ifa) < 0) {
                CHECK(h.ifaddrs_error < 0);
                CHECK(host_addresses_has(&h, "127.0.0.1"));   /* loopback stands in */
                host_addresses_done(&h);
                return;
        }
        CHECK_INT(h.ifaddrs_error, 0);
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
                char buf[INET6_ADDRSTRLEN + 8];
                int family = i->ifa_addr ? i->ifa_addr->sa_family : AF_UNSPEC;
                if (family == AF_INET)
                        inet_ntop(family, &((struct sockaddr_in *) (void *) i->ifa_addr)->sin_addr, buf, sizeof buf);
                else if (family == AF_INET6)
                        inet_ntop(family, &((struct sockaddr_in6 *) (void *) i->ifa_addr)->sin6_addr, buf, sizeof buf);
                else
                        continue;
                CHECK(host_addresses_has(&h, buf));
                found++;
        }
        freeifaddrs(ifa);
        CHECK(found > 0 && h.n <= found);
        CHECK(h.n > 0);
        CHECK(!host_addresses_has_literal(&h, "[192.0.2.99]"));   /* TEST-NET: no interface has it */
        host_addresses_done(&h);
}

int main(void) {
        test_entries();
        test_loopback_only();
        test_all();
        return 0;
}
