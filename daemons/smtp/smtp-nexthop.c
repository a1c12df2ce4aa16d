/* smtp-nexthop.c — from a next hop to the addresses to try, in order.
 *
 * SMTP: "[host]:port" or "[host]" (no MX lookup; port 25 by default), and "host:port"/"host"
 * (MX lookup first). LMTP: "unix:/path", "inet:host:port", "inet:[host]:port" (port 24 by
 * default), or a bare "host:port". Only numeric addresses are resolved today (getaddrinfo with
 * AI_NUMERICHOST, never a blocking DNS query in the event loop): any other name is answered
 * "4.4.3 ... no resolver" until common/dns (asynchronous, with MX) replaces the body of
 * smtp_resolve(). The interface is already asynchronous: the handler may run later. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "smtp.h"

/* "host[addr]:port" or "host[path]" for logs and diagnostics. */
void smtp_target_relay(const SmtpTarget *t, char *buf, size_t size) {
        if (t->port)
                snprintf(buf, size, "%s[%s]:%u", t->host, t->addr, t->port);
        else
                snprintf(buf, size, "%s[%s]", t->host, t->addr);
}

static void fail(SmtpResolveHandler handler, void *userdata, const char *dsn, const char *fmt, ...) _printf_(4, 5);
static void fail(SmtpResolveHandler handler, void *userdata, const char *dsn, const char *fmt, ...) {
        char diag[600];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);
        handler(dsn, diag, NULL, 0, userdata);
}

/* Splits "[host]:port", "[host]", "host:port", "host" (IPv6 only inside brackets). */
static int split_hostport(const char *s, char *host, size_t hsize, unsigned *port, bool *literal) {
        const char *p;
        size_t hl;
        *literal = false;
        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return -EINVAL;
                hl = (size_t) (close - s - 1);
                if (hl == 0 || hl >= hsize)
                        return -EINVAL;
                memcpy(host, s + 1, hl);
                host[hl] = '\0';
                *literal = true;
                p = close + 1;
                if (*p == '\0')
                        return 0;
                if (*p != ':')
                        return -EINVAL;
        } else {
                p = strrchr(s, ':');
                hl = p ? (size_t) (p - s) : strlen(s);
                if (hl == 0 || hl >= hsize)
                        return -EINVAL;
                memcpy(host, s, hl);
                host[hl] = '\0';
                if (!p)
                        return 0;
        }
        char *end;
        unsigned long v = strtoul(p + 1, &end, 10);
        if (p[1] == '\0' || *end || v == 0 || v > 65535)
                return -EINVAL;
        *port = (unsigned) v;
        return 0;
}

static void resolve_unix(const char *path, SmtpResolveHandler handler, void *userdata) {
        SmtpTarget *t = calloc(1, sizeof(SmtpTarget));
        struct sockaddr_un *un;
        if (!t)
                return fail(handler, userdata, "4.3.0", "out of memory");
        if (path[0] != '/' || strlen(path) >= sizeof(un->sun_path)) {
                free(t);
                return fail(handler, userdata, "4.3.5", "bad LMTP socket path in next hop: %s", path);
        }
        un = (struct sockaddr_un *) &t->sa;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        t->salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        snprintf(t->host, sizeof(t->host), "localhost");
        snprintf(t->addr, sizeof(t->addr), "%s", path);
        handler(NULL, NULL, t, 1, userdata);
}

/* Turns a next hop into addresses (see the top of the file). */
int smtp_resolve(sd_event *e, const char *nexthop, bool lmtp, SmtpResolveHandler handler,
                 void *userdata) {
        char host[256];
        unsigned port = lmtp ? 24 : 25;
        bool literal;
        const char *hp = nexthop;

        if (lmtp) {
                const char *p;
                if ((p = startswith(nexthop, "unix:"))) {
                        resolve_unix(p, handler, userdata);
                        return 0;
                }
                if ((p = startswith(nexthop, "inet:")))
                        hp = p;
        }
        if (isempty(hp) || split_hostport(hp, host, sizeof(host), &port, &literal) < 0) {
                fail(handler, userdata, "5.4.4", "bad next hop \"%s\": expected %s", nexthop,
                     lmtp ? "unix:/path, inet:host:port or inet:[address]:port" : "[address]:port, [address], host:port or host");
                return 0;
        }

        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *res = NULL;
        char portstr[8];
        snprintf(portstr, sizeof(portstr), "%u", port);
        if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res) {
                /* A name: it needs DNS (A/AAAA for literals and LMTP, MX first for SMTP). */
                fail(handler, userdata, "4.4.3", "Host or domain name not found: %s: no resolver "
                     "(postern-smtp resolves only numeric addresses until DNS support is merged)", host);
                return 0;
        }
        size_t n = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
                n++;
        SmtpTarget *t = calloc(n, sizeof(SmtpTarget));
        if (!t) {
                freeaddrinfo(res);
                fail(handler, userdata, "4.3.0", "out of memory");
                return 0;
        }
        n = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                if (ai->ai_addrlen > sizeof(t[n].sa))
                        continue;
                memcpy(&t[n].sa, ai->ai_addr, ai->ai_addrlen);
                t[n].salen = ai->ai_addrlen;
                t[n].port = port;
                (void) getnameinfo(ai->ai_addr, ai->ai_addrlen, t[n].addr, sizeof(t[n].addr), NULL, 0,
                                   NI_NUMERICHOST);
                snprintf(t[n].host, sizeof(t[n].host), "%s", t[n].addr);
                n++;
        }
        freeaddrinfo(res);
        (void) e;
        (void) literal;
        handler(NULL, NULL, t, n, userdata);
        return 0;
}
