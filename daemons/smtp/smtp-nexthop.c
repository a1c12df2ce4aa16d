/* smtp-nexthop.c — from a next hop to the addresses to try, in order.
 *
 * SMTP: "[host]:port" or "[host]" (no MX lookup; port smtp_tcp_port by default), and
 * "host:port"/"host" (MX lookup first, then each MX host's A/AAAA; the domain's own A/AAAA when
 * it has no MX). LMTP: "unix:/path", "inet:host:port", "inet:[host]:port", or a bare
 * "host:port"; without a port, lmtp_tcp_port (24). A relative "unix:private/dovecot-lmtp" (Postfix's
 * form, relative to its queue directory) is resolved against postern_lmtp_socket_directory
 * (default /var/spool/postfix, where Dovecot's documented listener is; README "LMTP next hops"). Numeric addresses are used as they are; names
 * go through common/dns (worker threads, answers in the event loop), so the handler usually runs
 * later.
 *
 * smtp_dns_support_level: "enabled" (or empty, the default) as above; "disabled" makes no MX
 * lookups and resolves host names the system's way (getaddrinfo: /etc/hosts, then DNS per
 * nsswitch.conf), as Postfix's "native" lookups; "dnssec" looks up as "enabled" and lets DANE
 * (smtp-dane.c) use what the resolver validated: each target says whether its MX lookup and its
 * address lookup came back with the AD bit; an empty level with disable_dns_lookups = yes means
 * "disabled". smtp_mx_address_limit
 * caps the addresses an MX lookup yields (0: no limit). LMTP next hops follow
 * lmtp_dns_support_level. These come from the delivery's settings (a master.cf transport's may
 * differ); $myhostname, $inet_interfaces and the LMTP socket directory are process-wide. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "dns/dns.h"
#include "log/log.h"
#include "mail/lmtp-socket.h"
#include "smtp.h"

static DnsResolver *resolver;   /* one per process: smtp_resolve_init() */

/* Creates the process's resolver (worker threads, completions on e). */
int smtp_resolve_init(sd_event *e) {
        return dns_resolver_new(e, 0, 0, &resolver);
}

int smtp_dns_query(const char *name, int type, DnsCallback cb, void *userdata, DnsQuery **ret) {
        if (!resolver)
                return -ENXIO;
        return dns_query(resolver, name, type, cb, userdata, ret);
}

/* What a delivery resolves with: its settings' port, DNS use and MX address limit (a copy, so
 * that a reload during a lookup changes nothing under it). */
typedef struct ResolveSide {
        unsigned port;               /* smtp_tcp_port / lmtp_tcp_port: a next hop without one */
        bool dns_enabled;            /* *_dns_support_level != disabled */
        unsigned mx_address_limit;   /* smtp_mx_address_limit, 0 = none (LMTP has no MX lookups) */
} ResolveSide;

/* Reads <prefix>_dns_support_level (disable_dns_lookups = yes when it is empty) and
 * smtp_mx_address_limit into s (a bad level: -EINVAL, logged). */
int smtp_resolve_load(Conf *c, SmtpSettings *s) {
        const char *prefix = s->prefix;
        const char *level = strempty(smtp_conf_get(c, s, "dns_support_level"));
        if (!isempty(level) && !streq(level, "enabled") && !streq(level, "disabled") && !streq(level, "dnssec")) {
                log_error("%s_dns_support_level = %s: expected disabled, enabled or dnssec (or empty)", prefix, level);
                return -EINVAL;
        }
        /* Postfix: the older disable_dns_lookups counts only while the level is not set. */
        s->dns_enabled = isempty(level) ? !smtp_conf_global_bool(c, s, "disable_dns_lookups") :
                         !streq(level, "disabled");
        s->mx_address_limit = streq(prefix, "smtp") ? (unsigned) smtp_conf_int(c, s, "mx_address_limit") : 0;
        return 0;
}
static char self_name[256];          /* $myhostname */
static char lmtp_socket_dir[sizeof(((struct sockaddr_un *) NULL)->sun_path)]; /* postern_lmtp_socket_directory */
static char self_addrs[1024];        /* numeric entries of $inet_interfaces, space-separated */

/* $myhostname and $inet_interfaces (our own addresses for loop detection) and the base of
 * relative LMTP socket paths: process-wide, from the plain smtp and lmtp sides. */
void smtp_resolve_configure(const SmtpSettings *smtp, const SmtpSettings *lmtp) {
        const char *myhostname = smtp->myhostname, *inet_interfaces = smtp->inet_interfaces;
        snprintf(self_name, sizeof(self_name), "%s", strempty(myhostname));
        snprintf(lmtp_socket_dir, sizeof(lmtp_socket_dir), "%s", strempty(lmtp->lmtp_socket_directory));
        self_addrs[0] = '\0';
        char buf[1024], *save = NULL;
        snprintf(buf, sizeof(buf), "%s", strempty(inet_interfaces));
        for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
                uint8_t a[16];
                if (inet_pton(AF_INET, w, a) != 1 && inet_pton(AF_INET6, w, a) != 1)
                        continue;   /* "all", "loopback-only": not known addresses */
                size_t l = strlen(self_addrs);
                snprintf(self_addrs + l, sizeof(self_addrs) - l, " %s ", w);
        }
}

static bool is_self_addr(const char *addr) {
        char pat[140];
        snprintf(pat, sizeof(pat), " %s ", addr);
        return !isempty(addr) && strstr(self_addrs, pat);
}

/* Stops the resolver (shutdown). */
void smtp_resolve_done(void) {
        resolver = dns_resolver_free(resolver);
}

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

static void resolve_unix(const char *nexthop_path, SmtpResolveHandler handler, void *userdata) {
        SmtpTarget *t = calloc(1, sizeof(SmtpTarget));
        struct sockaddr_un *un;
        char path[sizeof(un->sun_path)];
        if (!t)
                return fail(handler, userdata, "4.3.0", "out of memory");
        int r = lmtp_socket_path(nexthop_path, lmtp_socket_dir, path, sizeof(path));
        if (r < 0) {
                free(t);
                return fail(handler, userdata, "4.3.5", "bad LMTP socket path in next hop: %s%s", nexthop_path,
                            r == -ENAMETOOLONG ? " (too long)" : isempty(nexthop_path) ? " (empty)" :
                            " (relative, and postern_lmtp_socket_directory is empty)");
        }
        un = (struct sockaddr_un *) &t->sa;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        t->salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        snprintf(t->host, sizeof(t->host), "localhost");
        snprintf(t->addr, sizeof(t->addr), "%s", path);
        handler(NULL, NULL, t, 1, userdata);
}

#define MX_HOSTS_MAX 16

/* One name lookup in progress: MX, then A and AAAA of each host, all in flight at once. */
typedef struct Lookup {
        SmtpResolveHandler handler;
        void *userdata;
        char domain[256];
        unsigned port;
        size_t n_hosts;
        char hosts[MX_HOSTS_MAX][256];
        SmtpTarget *found[MX_HOSTS_MAX];
        size_t n_found[MX_HOSTS_MAX];
        bool tempfail;
        unsigned pending;
        bool mx;                     /* the hosts came from an MX lookup (or its A fallback) */
        bool mx_insecure;            /* that MX lookup was not DNSSEC-validated */
        bool addr_insecure[MX_HOSTS_MAX]; /* an address lookup of the host was not validated */
        ResolveSide side;
} Lookup;

typedef struct AddrQuery {
        Lookup *l;
        size_t host;
} AddrQuery;

static void lookup_free(Lookup *l) {
        for (size_t i = 0; i < l->n_hosts; i++)
                free(l->found[i]);
        free(l);
}

static void lookup_finish(Lookup *l) {
        size_t n = 0;
        /* Hosts from the first one that is us on are not tried (Postfix's smtp_find_self). */
        for (size_t i = 0; i < l->n_hosts; i++)
                for (size_t k = 0; k < l->n_found[i]; k++)
                        if (is_self_addr(l->found[i][k].addr)) {
                                for (size_t j = i; j < l->n_hosts; j++)
                                        l->n_found[j] = 0;
                                if (i == 0) {
                                        fail(l->handler, l->userdata, "5.4.6", "mail for %s loops back to myself",
                                             l->domain);
                                        return lookup_free(l);
                                }
                                goto done_self;
                        }
done_self:
        for (size_t i = 0; i < l->n_hosts; i++)
                n += l->n_found[i];
        if (n == 0) {
                if (l->tempfail)
                        fail(l->handler, l->userdata, "4.4.3", "Host or domain name not found. Name service error "
                             "for name=%s type=A: Host not found, try again", l->hosts[0]);
                else
                        fail(l->handler, l->userdata, "5.4.4", "Host or domain name not found. Name service error "
                             "for name=%s type=A: Host not found", l->hosts[0]);
                return lookup_free(l);
        }
        SmtpTarget *t = calloc(n, sizeof(SmtpTarget));
        if (!t) {
                fail(l->handler, l->userdata, "4.3.0", "out of memory");
                return lookup_free(l);
        }
        n = 0;
        for (size_t i = 0; i < l->n_hosts; i++)
                for (size_t k = 0; k < l->n_found[i]; k++) {
                        t[n] = l->found[i][k];
                        t[n].mx_secure = !l->mx_insecure;
                        t[n++].addr_secure = l->side.dns_enabled && !l->addr_insecure[i];
                }
        if (l->mx && l->side.mx_address_limit > 0 && n > l->side.mx_address_limit)
                n = l->side.mx_address_limit;
        SmtpResolveHandler h = l->handler;
        void *u = l->userdata;
        lookup_free(l);
        h(NULL, NULL, t, n, u);
}

static void on_addr(DnsQuery *q, const DnsResult *res, void *userdata) {
        AddrQuery *aq = userdata;
        Lookup *l = aq->l;
        size_t h = aq->host;
        (void) q;
        free(aq);
        if (!res->secure)
                l->addr_insecure[h] = true;
        if (res->status == DNS_TEMPFAIL)
                l->tempfail = true;
        else if (res->status == DNS_FOUND) {
                SmtpTarget *t = reallocarray(l->found[h], l->n_found[h] + res->n_records, sizeof(SmtpTarget));
                if (t) {
                        l->found[h] = t;
                        for (size_t i = 0; i < res->n_records; i++) {
                                const DnsRecord *rr = &res->records[i];
                                SmtpTarget *x = &t[l->n_found[h]];
                                memset(x, 0, sizeof(*x));
                                if (rr->type == DNS_TYPE_A) {
                                        struct sockaddr_in *in = (struct sockaddr_in *) &x->sa;
                                        in->sin_family = AF_INET;
                                        in->sin_port = htons((uint16_t) l->port);
                                        memcpy(&in->sin_addr, rr->addr, 4);
                                        x->salen = sizeof(*in);
                                } else if (rr->type == DNS_TYPE_AAAA) {
                                        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &x->sa;
                                        in6->sin6_family = AF_INET6;
                                        in6->sin6_port = htons((uint16_t) l->port);
                                        memcpy(&in6->sin6_addr, rr->addr, 16);
                                        x->salen = sizeof(*in6);
                                } else
                                        continue;
                                x->port = l->port;
                                snprintf(x->addr, sizeof(x->addr), "%s", rr->text ? rr->text : "");
                                snprintf(x->host, sizeof(x->host), "%s", l->hosts[h]);
                                l->n_found[h]++;
                        }
                } else
                        l->tempfail = true;
        }
        if (--l->pending == 0)
                lookup_finish(l);
}

/* Asks A and AAAA for every host of l. */
static void lookup_addresses(Lookup *l) {
        static const int dns_types[] = { DNS_TYPE_A, DNS_TYPE_AAAA }, native[] = { DNS_TYPE_HOST };
        const int *types = l->side.dns_enabled ? dns_types : native;
        size_t n_types = l->side.dns_enabled ? ELEMENTSOF(dns_types) : ELEMENTSOF(native);
        l->pending = 1;   /* held until every query is started */
        for (size_t i = 0; i < l->n_hosts; i++)
                for (size_t k = 0; k < n_types; k++) {
                        AddrQuery *aq = calloc(1, sizeof(AddrQuery));
                        if (!aq) {
                                l->tempfail = true;
                                continue;
                        }
                        aq->l = l;
                        aq->host = i;
                        if (dns_query(resolver, l->hosts[i], types[k], on_addr, aq, NULL) < 0) {
                                free(aq);
                                l->tempfail = true;
                                continue;
                        }
                        l->pending++;
                }
        if (--l->pending == 0)
                lookup_finish(l);
}

static void on_mx(DnsQuery *q, const DnsResult *res, void *userdata) {
        Lookup *l = userdata;
        (void) q;
        l->mx_insecure = !res->secure;
        switch (res->status) {
        case DNS_FOUND:
                if (res->n_records == 1 && res->records[0].preference == 0 &&
                    (isempty(res->records[0].text) || streq(res->records[0].text, "."))) {
                        fail(l->handler, l->userdata, "5.1.10", "Host or domain name not found. "
                             "Domain %s has null MX (RFC 7505)", l->domain);
                        return lookup_free(l);
                }
                /* Sorted by preference; shuffle runs of equal preference. MX hosts at or
                 * above our own preference are dropped; when we are the best: a loop. */
                for (size_t i = 0; i < res->n_records && l->n_hosts < MX_HOSTS_MAX; i++) {
                        if (isempty(res->records[i].text) || streq(res->records[i].text, "."))
                                continue;
                        if (self_name[0] && strcaseeq(res->records[i].text, self_name)) {
                                if (l->n_hosts == 0) {
                                        fail(l->handler, l->userdata, "5.4.6", "mail for %s loops back to myself",
                                             l->domain);
                                        return lookup_free(l);
                                }
                                break;
                        }
                        snprintf(l->hosts[l->n_hosts++], sizeof(l->hosts[0]), "%s", res->records[i].text);
                }
                for (size_t i = 0; i < l->n_hosts;) {
                        size_t j = i + 1;
                        while (j < l->n_hosts && res->records[j].preference == res->records[i].preference)
                                j++;
                        for (size_t k = j - 1; k > i; k--) {
                                size_t r = i + (size_t) random() % (k - i + 1);
                                char tmp[256];
                                memcpy(tmp, l->hosts[k], sizeof(tmp));
                                memcpy(l->hosts[k], l->hosts[r], sizeof(tmp));
                                memcpy(l->hosts[r], tmp, sizeof(tmp));
                        }
                        i = j;
                }
                if (l->n_hosts == 0) {
                        fail(l->handler, l->userdata, "5.1.10", "Host or domain name not found. "
                             "Domain %s has null MX (RFC 7505)", l->domain);
                        return lookup_free(l);
                }
                return lookup_addresses(l);
        case DNS_NODATA:
                /* RFC 5321 5.1: no MX, the domain itself is the host. */
                snprintf(l->hosts[0], sizeof(l->hosts[0]), "%s", l->domain);
                l->n_hosts = 1;
                return lookup_addresses(l);
        case DNS_NXDOMAIN:
        case DNS_INVALID:
                fail(l->handler, l->userdata, "5.4.4", "Host or domain name not found. Name service error "
                     "for name=%s type=MX: Host not found", l->domain);
                return lookup_free(l);
        case DNS_TEMPFAIL:
        default:
                fail(l->handler, l->userdata, "4.4.3", "Host or domain name not found. Name service error "
                     "for name=%s type=MX: Host not found, try again", l->domain);
                return lookup_free(l);
        }
}

/* A name: MX first unless literal (or LMTP), then A/AAAA. Answers later, from the loop. */
static int resolve_name(const ResolveSide *side, const char *host, unsigned port, bool mx,
                        SmtpResolveHandler handler, void *userdata) {
        if (!resolver)
                return -ENXIO;
        Lookup *l = calloc(1, sizeof(Lookup));
        if (!l)
                return -ENOMEM;
        l->handler = handler;
        l->userdata = userdata;
        l->port = port;
        l->side = *side;
        if (dns_name_to_alabel(host, l->domain, sizeof(l->domain)) < 0)
                snprintf(l->domain, sizeof(l->domain), "%s", host);
        l->mx = mx;
        if (!mx || !side->dns_enabled) {
                snprintf(l->hosts[0], sizeof(l->hosts[0]), "%s", l->domain);
                l->n_hosts = 1;
                lookup_addresses(l);
                return 0;
        }
        int r = dns_query(resolver, l->domain, DNS_TYPE_MX, on_mx, l, NULL);
        if (r < 0) {
                free(l);
                return r;
        }
        return 0;
}

/* Turns a next hop into addresses (see the top of the file). */
int smtp_resolve(sd_event *e, const char *nexthop, const SmtpSettings *s, SmtpResolveHandler handler,
                 void *userdata) {
        char host[256];
        bool lmtp = streq(s->prefix, "lmtp");
        const ResolveSide side_copy = { .port = s->tcp_port ? s->tcp_port : lmtp ? 24 : 25,
                                        .dns_enabled = s->dns_enabled,
                                        .mx_address_limit = lmtp ? 0 : s->mx_address_limit };
        const ResolveSide *side = &side_copy;
        unsigned port = side->port;
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
        char portstr[16];
        int r;
        snprintf(portstr, sizeof(portstr), "%u", port);
        if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res) {
                /* A name: MX first for "host" and "host:port" (SMTP), A/AAAA only otherwise. */
                r = resolve_name(side, host, port, !literal && !lmtp, handler, userdata);
                if (r < 0)
                        fail(handler, userdata, "4.3.0", "cannot look up %s: %s", host, strerror(-r));
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
