/* test-my-networks.c — mynetworks from mynetworks_style for a made-up set of interfaces: host
 * keeps each address, subnet its interface's network, class IPv4's class network; loopback
 * interfaces add nothing beyond the fixed loopback networks; each network once. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "my-networks.h"
#include "basic/macro.h"
#include "basic/tests.h"

static NetIface iface(int family, const char *addr, const char *mask, bool loopback) {
        NetIface f = { .family = family, .loopback = loopback };
        CHECK(inet_pton(family, addr, f.addr) == 1);
        CHECK(inet_pton(family, mask, f.mask) == 1);
        return f;
}

static void check(const char *style, const NetIface *v, size_t n, const char *want) {
        char *text = NULL;
        CHECK_INT(mynetworks_format(style, v, n, &text), 0);
        CHECK_STR(text, want);
        free(text);
}

int main(void) {
        NetIface v[] = {
                iface(AF_INET, "127.0.0.1", "255.0.0.0", true),
                iface(AF_INET, "192.0.2.77", "255.255.255.0", false),
                iface(AF_INET, "10.1.2.3", "255.255.0.0", false),
                iface(AF_INET, "172.16.9.9", "255.255.255.252", false),
                iface(AF_INET6, "2001:db8:1:2::5", "ffff:ffff:ffff:ffff::", false),
                iface(AF_INET6, "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
                iface(AF_INET, "192.0.2.78", "255.255.255.0", false),
        };
        const char *lo = "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128";
        char want[512];
        snprintf(want, sizeof want, "%s 192.0.2.77/32 10.1.2.3/32 172.16.9.9/32 [2001:db8:1:2::5]/128 192.0.2.78/32", lo);
        check("host", v, ELEMENTSOF(v), want);
        snprintf(want, sizeof want, "%s 192.0.2.0/24 10.1.0.0/16 172.16.9.8/30 [2001:db8:1:2::]/64", lo);
        check("subnet", v, ELEMENTSOF(v), want);
        snprintf(want, sizeof want, "%s 192.0.2.0/24 10.0.0.0/8 172.16.0.0/16 [2001:db8:1:2::]/64", lo);
        check("class", v, ELEMENTSOF(v), want);
        check("host", NULL, 0, lo);
        char *none = NULL;
        CHECK_INT(mynetworks_format("everything", v, ELEMENTSOF(v), &none), -EINVAL);
        /* the real interfaces: at least the loopback networks, whatever this host has */
        CHECK_INT(mynetworks_compute("subnet", &none), 0);
        CHECK(strncmp(none, lo, strlen(lo)) == 0);
        free(none);
        return 0;
}
