/* smtpd-peername.c — the client's host name, looked up before the greeting as Postfix does:
 * the PTR record of the address gives the reverse name; it becomes the client name only when
 * that name's A (IPv4 client) or AAAA (IPv6) records contain the address (forward-confirmed).
 * Otherwise the client is "unknown", with the reason kept for reject_unknown_client_hostname
 * (temporary failure, no name, or a forged name) and the PTR name kept for
 * reject_unknown_reverse_client_hostname and policy servers. The session waits (session_wait)
 * while the lookups run, for at most PEERNAME_TIMEOUT_USEC. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "log/log.h"

/* Bounds the greeting delay even when the system resolver's own timeouts are longer. */
#define PEERNAME_TIMEOUT_USEC (10 * USEC_PER_SEC)

typedef struct PeerLookup {
        Session *session;
        DnsQuery *query;
        sd_event_source *timer;
        char ptr_name[DNS_NAME_MAX];
} PeerLookup;

static void lookup_free(PeerLookup *p) {
        if (p->query)
                dns_query_cancel(p->query);
        sd_event_source_disable_unref(p->timer);
        free(p);
}

static void on_cancel(void *userdata) {
        lookup_free(userdata);
}

static void set_id(Session *s) {
        snprintf(s->client.id_text, sizeof(s->client.id_text), "%s[%s]", s->client.name, s->client.addr);
}

/* Ends the lookup: final names, the greeting, back to reading commands. */
static void finish(PeerLookup *p, const char *name, int name_status, const char *rname, int rstatus) {
        Session *s = p->session;

        p->query = NULL;   /* finished or cancelled by the caller */
        snprintf(s->client.name, sizeof(s->client.name), "%s", name);
        s->client.name_status = name_status;
        snprintf(s->client.reverse_name, sizeof(s->client.reverse_name), "%s", rname);
        s->client.reverse_name_status = rstatus;
        set_id(s);
        lookup_free(p);
        session_resume(s, SESSION_RESUME_ONLY);
        session_start(s);   /* anvil, then the greeting: either may wait again */
        if (!session_waiting(s))
                session_resume(s, SESSION_RESUME_INPUT);
}

static int status_of(DnsStatus st) {
        return st == DNS_TEMPFAIL ? SMTPD_PEER_TEMP : SMTPD_PEER_PERM;
}

static void on_forward(DnsQuery *q, const DnsResult *r, void *userdata) {
        PeerLookup *p = userdata;
        Session *s = p->session;
        size_t alen = s->client.family == AF_INET ? 4 : 16;

        p->query = NULL;
        if (r->status != DNS_FOUND) {
                log_warning("hostname %s does not resolve to address %s: %s", p->ptr_name, s->client.addr,
                            dns_status_to_string(r->status));
                finish(p, "unknown", status_of(r->status), p->ptr_name, SMTPD_PEER_OK);
                return;
        }
        for (size_t i = 0; i < r->n_records; i++)
                if (memcmp(r->records[i].addr, s->client.addr_bytes, alen) == 0) {
                        finish(p, p->ptr_name, SMTPD_PEER_OK, p->ptr_name, SMTPD_PEER_OK);
                        return;
                }
        log_warning("hostname %s does not resolve to address %s", p->ptr_name, s->client.addr);
        finish(p, "unknown", SMTPD_PEER_FORGED, p->ptr_name, SMTPD_PEER_OK);
}

static void on_ptr(DnsQuery *q, const DnsResult *r, void *userdata) {
        PeerLookup *p = userdata;
        Session *s = p->session;
        int k;

        p->query = NULL;
        if (r->status != DNS_FOUND) {
                int st = status_of(r->status);
                finish(p, "unknown", st, "unknown", st);
                return;
        }
        /* The first PTR that is a plausible host name (not numeric, letters/digits/hyphens). */
        const char *name = NULL;
        for (size_t i = 0; i < r->n_records && !name; i++)
                if (dns_valid_hostname(r->records[i].text))
                        name = r->records[i].text;
        if (!name) {
                log_warning("%s: address not listed for hostname %s (malformed or numeric)", s->client.addr,
                            r->records[0].text);
                finish(p, "unknown", SMTPD_PEER_PERM, "unknown", SMTPD_PEER_PERM);
                return;
        }
        if (dns_name_to_alabel(name, p->ptr_name, sizeof(p->ptr_name)) < 0)
                snprintf(p->ptr_name, sizeof(p->ptr_name), "%s", name);
        k = dns_query(s->server->resolver, p->ptr_name, s->client.family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA,
                      on_forward, p, &p->query);
        if (k < 0) {
                log_warning_errno(k, "%s: cannot verify hostname %s: %m", s->client.addr, p->ptr_name);
                finish(p, "unknown", SMTPD_PEER_TEMP, p->ptr_name, SMTPD_PEER_OK);
        }
}

static int on_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        PeerLookup *p = userdata;
        bool had_ptr = p->ptr_name[0] != '\0';

        log_warning("%s: timeout looking up the client's hostname", p->session->client.addr);
        dns_query_cancel(p->query);
        finish(p, "unknown", SMTPD_PEER_TEMP, had_ptr ? p->ptr_name : "unknown",
               had_ptr ? SMTPD_PEER_OK : SMTPD_PEER_TEMP);
        return 0;
}

int smtpd_peername_start(Session *s) {
        char rev[DNS_NAME_MAX];
        PeerLookup *p;
        int r;

        if (s->listener->kind == LISTENER_SUBMIT || !s->client.family || !s->settings->peername_lookup ||
            !s->server->resolver)
                return 0;
        /* 127.0.0.1 and ::1 are "localhost" (session_describe_peer), as every hosts file says:
         * Postfix asks the system resolver, which reads /etc/hosts first, while our lookups go to
         * DNS only — and a host without DNS must not wait a resolver timeout per local client. */
        static const uint8_t v6_loopback[16] = { [15] = 1 };
        if ((s->client.family == AF_INET && memcmp(s->client.addr_bytes, (const uint8_t[]) { 127, 0, 0, 1 }, 4) == 0) ||
            (s->client.family == AF_INET6 && memcmp(s->client.addr_bytes, v6_loopback, 16) == 0))
                return 0;
        /* Until the answer: unknown (also what a failed lookup leaves). */
        snprintf(s->client.name, sizeof(s->client.name), "unknown");
        snprintf(s->client.reverse_name, sizeof(s->client.reverse_name), "unknown");
        s->client.name_status = s->client.reverse_name_status = SMTPD_PEER_TEMP;
        set_id(s);
        if (dns_reverse_name(s->client.family, s->client.addr_bytes, s->client.family == AF_INET ? "in-addr.arpa" : "ip6.arpa",
                             rev, sizeof(rev)) < 0)
                return 0;
        p = calloc(1, sizeof(PeerLookup));
        if (!p)
                return 0;
        p->session = s;
        r = sd_event_add_time_relative(s->server->event, &p->timer, CLOCK_MONOTONIC, PEERNAME_TIMEOUT_USEC,
                                       100 * USEC_PER_MSEC, on_timeout, p);
        if (r >= 0)
                r = dns_query(s->server->resolver, rev, DNS_TYPE_PTR, on_ptr, p, &p->query);
        if (r < 0) {
                log_warning_errno(r, "%s: cannot look up the client's hostname: %m", s->client.addr);
                lookup_free(p);
                return 0;
        }
        session_wait(s, on_cancel, p);
        return 1;
}
