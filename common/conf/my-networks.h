/* my-networks.h — the default of mynetworks, computed from mynetworks_style as Postfix does when
 * main.cf does not set mynetworks: the loopback networks (127.0.0.0/8, [::ffff:127.0.0.0]/104,
 * [::1]/128) and, for each address of a non-loopback interface,
 *   host    the address itself (/32, /128): only this machine (Postfix's default since 3.0);
 *   subnet  the interface's network (address and netmask);
 *   class   IPv4's class A, B or C network of the address (IPv6: the interface's network).
 * mynetworks_format() is the pure part; mynetworks_compute() reads the interfaces. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct NetIface {
        int family;                     /* AF_INET or AF_INET6 */
        unsigned char addr[16];         /* network byte order (IPv4: first 4 bytes) */
        unsigned char mask[16];
        bool loopback;
} NetIface;

/* The mynetworks text for style ("host", "subnet", "class"); -EINVAL for another style. Each
 * network once, in interface order, after the loopback ones. */
int mynetworks_format(const char *style, const NetIface *v, size_t n, char **ret);
/* The same for this host's interfaces (getifaddrs()); when they cannot be listed, the loopback
 * networks alone. */
int mynetworks_compute(const char *style, char **ret);
