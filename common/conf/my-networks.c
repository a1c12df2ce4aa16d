/* my-networks.c — mynetworks from mynetworks_style (my-networks.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "my-networks.h"
#include "basic/macro.h"
#include "basic/strbuf.h"

#define LOOPBACK_NETWORKS "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"

static unsigned prefix_len(const unsigned char *mask, size_t bytes) {
        unsigned bits = 0;
        for (size_t i = 0; i < bytes; i++)
                for (int b = 7; b >= 0 && (mask[i] >> b) & 1; b--)
                        bits++;
        return bits;
}

/* One network as mynetworks writes it: "192.0.2.0/24", "[2001:db8::]/64". */
static int network_text(const NetIface *f, const char *style, StrBuf *out) {
        size_t bytes = f->family == AF_INET ? 4 : 16;
        unsigned char net[16] = {};
        unsigned bits;
        if (streq(style, "host"))
                bits = (unsigned) bytes * 8;
        else if (streq(style, "class") && f->family == AF_INET)
                bits = f->addr[0] < 128 ? 8 : f->addr[0] < 192 ? 16 : 24;
        else
                bits = prefix_len(f->mask, bytes);
        for (size_t i = 0; i < bytes; i++) {
                unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - (unsigned) i * 8 : 0;
                net[i] = f->addr[i] & (unsigned char) (0xff << (8 - keep));
        }
        char text[INET6_ADDRSTRLEN];
        if (!inet_ntop(f->family, net, text, sizeof text))
                return -EINVAL;
        return f->family == AF_INET ? strbuf_printf(out, "%s/%u", text, bits)
                                    : strbuf_printf(out, "[%s]/%u", text, bits);
}

int mynetworks_format(const char *style, const NetIface *v, size_t n, char **ret) {
        if (!style || (!streq(style, "host") && !streq(style, "subnet") && !streq(style, "class")))
                return -EINVAL;
        _cleanup_strv_free_ char **seen = NULL;     /* the networks written so far */
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        int r = strbuf_puts(&out, LOOPBACK_NETWORKS);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (v[i].loopback || (v[i].family != AF_INET && v[i].family != AF_INET6))
                        continue;
                _cleanup_strbuf_ StrBuf one = STRBUF_INIT;
                r = network_text(&v[i], style, &one);
                if (r == -EINVAL) {
                        r = 0;
                        continue;
                }
                bool again = false;
                for (char **k = seen; r >= 0 && k && *k && !again; k++)
                        again = streq(*k, one.data);
                if (r < 0 || again)
                        continue;
                r = strbuf_printf(&out, " %s", one.data);
                if (r >= 0)
                        r = strv_consume(&seen, strbuf_steal(&one));
        }
        if (r < 0)
                return r;
        *ret = strbuf_steal(&out);
        return *ret ? 0 : -ENOMEM;
}

int mynetworks_compute(const char *style, char **ret) {
        struct ifaddrs *ifa = NULL;
        NetIface *v = NULL;
        size_t n = 0;
        if (getifaddrs(&ifa) == 0) {
                size_t cap = 0;
                for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
                        cap++;
                v = cap ? calloc(cap, sizeof(NetIface)) : NULL;
                for (struct ifaddrs *i = ifa; v && i; i = i->ifa_next) {
                        if (!i->ifa_addr || !i->ifa_netmask || !(i->ifa_flags & IFF_UP))
                                continue;
                        NetIface *f = &v[n];
                        f->family = i->ifa_addr->sa_family;
                        f->loopback = i->ifa_flags & IFF_LOOPBACK;
                        if (f->family == AF_INET) {
                                memcpy(f->addr, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, 4);
                                memcpy(f->mask, &((struct sockaddr_in *) i->ifa_netmask)->sin_addr, 4);
                        } else if (f->family == AF_INET6) {
                                memcpy(f->addr, &((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr, 16);
                                memcpy(f->mask, &((struct sockaddr_in6 *) i->ifa_netmask)->sin6_addr, 16);
                        } else
                                continue;
                        n++;
                }
                freeifaddrs(ifa);
        }
        int r = mynetworks_format(style, v, n, ret);
        free(v);
        return r;
}
