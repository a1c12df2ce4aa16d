/* host-addresses.c — this host's addresses ($inet_interfaces, $proxy_interfaces). See
 * host-addresses.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host-addresses.h"

/* "192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]", "::1" as a family byte and 16 address
 * bytes; with bracketed, only the [...] forms. False when it is not numeric. */
static bool parse_address(const char *text, bool bracketed, unsigned char ret[17]) {
        char buf[INET6_ADDRSTRLEN + 8];
        size_t l = strlen(text);
        if (l >= 2 && text[0] == '[' && text[l - 1] == ']') {
                text++;
                l -= 2;
        } else if (bracketed)
                return false;
        if (l >= sizeof buf)
                return false;
        memcpy(buf, text, l);
        buf[l] = '\0';
        const char *a = startswith_no_case(buf, "IPv6:") ?: buf;
        memset(ret, 0, 17);
        if (inet_pton(AF_INET, a, ret + 1) == 1)
                ret[0] = 4;
        else if (inet_pton(AF_INET6, a, ret + 1) == 1)
                ret[0] = 6;
        else
                return false;
        return true;
}

static bool has(const HostAddresses *h, const unsigned char a[17]) {
        for (size_t i = 0; i < h->n; i++)
                if (memcmp(h->v[i], a, 17) == 0)
                        return true;
        return false;
}

static int add(HostAddresses *h, const unsigned char a[17]) {
        if (has(h, a))
                return 0;
        unsigned char (*v)[17] = reallocarray(h->v, h->n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        h->v = v;
        memcpy(v[h->n++], a, 17);
        return 0;
}

static int add_text(HostAddresses *h, const char *text) {
        unsigned char a[17];
        return parse_address(text, false, a) ? add(h, a) : -EINVAL;
}

static int add_loopback(HostAddresses *h) {
        int r = add_text(h, "127.0.0.1");
        return r < 0 ? r : add_text(h, "::1");
}

static int add_interfaces(HostAddresses *h) {
        struct ifaddrs *ifa = NULL;
        int r = 0;

        if (getifaddrs(&ifa) < 0) {
                h->ifaddrs_error = -errno;
                return add_loopback(h);
        }
        for (struct ifaddrs *i = ifa; i && r >= 0; i = i->ifa_next) {
                unsigned char a[17] = {};
                int family = i->ifa_addr ? i->ifa_addr->sa_family : AF_UNSPEC;
                if (family == AF_INET) {
                        a[0] = 4;
                        memcpy(a + 1, &((const struct sockaddr_in *) (const void *) i->ifa_addr)->sin_addr, 4);
                } else if (family == AF_INET6) {
                        a[0] = 6;
                        memcpy(a + 1, &((const struct sockaddr_in6 *) (const void *) i->ifa_addr)->sin6_addr, 16);
                } else
                        continue;
                r = add(h, a);
        }
        freeifaddrs(ifa);
        return r;
}

int host_addresses_add(HostAddresses *h, char *const *list, char ***ret_unsupported) {
        for (char *const *e = list; e && *e; e++) {
                int r;
                if (strcaseeq(*e, "all"))
                        r = add_interfaces(h);
                else if (strcaseeq(*e, "loopback-only"))
                        r = add_loopback(h);
                else if ((r = add_text(h, *e)) == -EINVAL)
                        r = ret_unsupported ? strv_consume(ret_unsupported, strdup(*e)) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

int host_addresses_load(HostAddresses *h, Conf *c, const char *listener, bool proxy, char ***ret_unsupported) {
        static const char *const params[] = { "inet_interfaces", "proxy_interfaces" };
        for (size_t p = 0; p < (proxy ? 2u : 1u); p++) {
                _cleanup_strv_free_ char **list = conf_get_list(c, listener, params[p]);
                int r = list ? host_addresses_add(h, list, ret_unsupported) : -ENOMEM;
                if (r < 0)
                        return r;
        }
        return 0;
}

void host_addresses_done(HostAddresses *h) {
        free(h->v);
        *h = (HostAddresses) {};
}

bool host_addresses_has(const HostAddresses *h, const char *text) {
        unsigned char a[17];
        return text && parse_address(text, false, a) && has(h, a);
}

bool host_addresses_has_literal(const HostAddresses *h, const char *domain) {
        unsigned char a[17];
        return domain && parse_address(domain, true, a) && has(h, a);
}
