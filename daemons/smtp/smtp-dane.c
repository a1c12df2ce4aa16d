/* smtp-dane.c — DANE for postern-smtp (RFC 7672, Postfix's TLS levels dane and dane-only).
 *
 * For each address of a delivery at level dane or dane-only, before connecting: the TLS level
 * that address gets, from the DNSSEC status of the MX and address lookups (SmtpTarget's
 * mx_secure / addr_secure, set by smtp-nexthop.c from the resolver's AD bit) and the TLSA
 * records at _port._tcp.host (looked up once per host and port of the delivery):
 *
 *   validated TLSA with a usable record (DANE-TA/DANE-EE) → SMTP_TLS_DANE: TLS required, the
 *       certificate checked against the records (common/tls/tls-dane.c), never plaintext
 *   validated TLSA, all unusable (PKIX-TA/PKIX-EE, unknown parameters) → encrypt (RFC 7672 3.1.3)
 *   no TLSA (validated or not), or an address not validated → may (dane), deferred (dane-only)
 *   TLSA lookup failure (SERVFAIL: also what a validating resolver answers for bogus data) →
 *       this address is deferred ("TLSA lookup error"), the next one is tried
 *   MX lookup not validated → smtp_tls_dane_insecure_mx_policy: may, encrypt, or dane (use the
 *       host's TLSA records; success is then logged "Trusted", not "Verified": the MX host name
 *       could have been forged). dane-only always behaves as "dane" here.
 *
 * With smtp_tlsrpt_enable, a TLSA lookup that fails counts as TLSRPT "dnssec-invalid" and a
 * dane-only address without validated TLSA records as "dane-required" (policy type "tlsa"; the
 * sessions' own results come from smtp-session-tls.c through smtp_tlsrpt_dane()).
 *
 * A message whose header says "TLS-Required: No" (RFC 8689 5, without REQUIRETLS) gets level may
 * at every address instead: no TLSA lookup, no DANE check (logged once per delivery).
 *
 * LMTP (lmtp_tls_security_level = dane / dane-only, lmtp_dns_support_level = dnssec) takes the
 * same path: an inet:host next hop has no MX lookup (mx_secure), its address lookup must validate
 * and its TLSA records are at _port._tcp.host.
 *
 * smtp_dns_support_level must be dnssec: otherwise level dane acts as may, and dane-only defers
 * (logged at load). smtp_tls_trust_anchor_file is not DANE's: it serves the verify and secure
 * levels (smtp-tls.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "log/log.h"
#include "smtp.h"
#include "tls/tls.h"
#include "tls/tlsrpt.h"

typedef struct DaneHost {
        struct SmtpDane *dane;
        char host[256];
        unsigned port;
        bool done;
        DnsQuery *query;              /* while the TLSA lookup runs */
        DnsStatus status;
        bool secure;                  /* the TLSA answer was validated */
        TlsDaneRecord *recs;
        size_t n_recs;
        bool usable;                  /* at least one usable record */
} DaneHost;

struct SmtpDane {
        SmtpDelivery *d;
        void (*resume)(SmtpDelivery *d);  /* called when a TLSA lookup answers */
        DaneHost **hosts;
        size_t n_hosts;
        bool required_no_logged;          /* the TLS-Required: No line was logged */
};

int smtp_dane_load(Conf *c, SmtpSettings *s) {
        const char *dns = strempty(smtp_conf_get(c, s, "dns_support_level"));
        s->dnssec = streq(dns, "dnssec");
        s->dane_insecure_mx = SMTP_TLS_DANE;
        const char *level = strempty(smtp_conf_get(c, s, "tls_security_level"));
        if (!s->dnssec && (streq(level, "dane") || streq(level, "dane-only")))
                log_warning("%s%s%s_tls_security_level = %s needs %s_dns_support_level = dnssec; %s",
                            strempty(s->transport), s->transport ? "/" : "", s->prefix, level, s->prefix,
                            streq(level, "dane") ? "using may" : "deliveries will be deferred");
        if (!streq(s->prefix, "smtp"))
                return 0;   /* LMTP looks up no MX: no insecure MX policy */
        const char *p = strempty(smtp_conf_get(c, s, "tls_dane_insecure_mx_policy"));
        if (streq(p, "may"))
                s->dane_insecure_mx = SMTP_TLS_MAY;
        else if (streq(p, "encrypt"))
                s->dane_insecure_mx = SMTP_TLS_ENCRYPT;
        else if (!streq(p, "dane") && !isempty(p)) {
                log_error("%s%ssmtp_tls_dane_insecure_mx_policy = %s: expected may, encrypt or dane", strempty(s->transport),
                          s->transport ? "/" : "", p);
                return -EINVAL;
        }
        return 0;
}

static void host_free(DaneHost *h) {
        if (!h)
                return;
        dns_query_cancel(h->query);
        for (size_t i = 0; i < h->n_recs; i++)
                free((void *) h->recs[i].data);
        free(h->recs);
        free(h);
}

SmtpDane *smtp_dane_free(SmtpDane *dane) {
        if (!dane)
                return NULL;
        for (size_t i = 0; i < dane->n_hosts; i++)
                host_free(dane->hosts[i]);
        free(dane->hosts);
        free(dane);
        return NULL;
}

/* d's DANE state, created at first use; NULL when out of memory. */
static SmtpDane *dane_get(SmtpDelivery *d) {
        if (!d->dane && (d->dane = calloc(1, sizeof(SmtpDane))))
                d->dane->d = d;
        return d->dane;
}

static DaneHost *host_find(SmtpDane *dane, const char *host, unsigned port) {
        for (size_t i = 0; i < dane->n_hosts; i++)
                if (dane->hosts[i]->port == port && strcaseeq(dane->hosts[i]->host, host))
                        return dane->hosts[i];
        return NULL;
}

static void on_tlsa(DnsQuery *q, const DnsResult *res, void *userdata) {
        DaneHost *h = userdata;
        (void) q;
        h->query = NULL;
        h->done = true;
        h->status = res->status;
        h->secure = res->secure;
        if (res->status == DNS_FOUND) {
                h->recs = calloc(res->n_records, sizeof(TlsDaneRecord));
                if (!h->recs)
                        h->status = DNS_TEMPFAIL;
                for (size_t i = 0; h->recs && i < res->n_records; i++) {
                        const DnsRecord *rr = &res->records[i];
                        uint8_t *data = malloc(MAX(rr->data_len, 1));
                        if (!data) {
                                h->status = DNS_TEMPFAIL;
                                break;
                        }
                        memcpy(data, rr->data, rr->data_len);
                        h->recs[h->n_recs++] = (TlsDaneRecord) { rr->usage, rr->selector, rr->mtype, data, rr->data_len };
                        if (tls_dane_usable(&h->recs[h->n_recs - 1]))
                                h->usable = true;
                }
        }
        h->dane->resume(h->dane->d);
}

/* The TLSA decision for target t of d at level dane or dane-only; see the top of the file.
 * *ret_level is the level for t when it returns 1. */
static int decide(SmtpDelivery *d, const SmtpTarget *t, void (*resume)(SmtpDelivery *d), SmtpTlsLevel *ret_level,
                  char *why, size_t size) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        bool only = d->tls.level == SMTP_TLS_DANE_ONLY;
        SmtpTlsLevel mx_policy = only ? SMTP_TLS_DANE : s->dane_insecure_mx;

        if (!s->dnssec) {
                if (!only) {
                        *ret_level = SMTP_TLS_MAY;
                        return 1;
                }
                snprintf(why, size, "TLS security level dane-only needs %s_dns_support_level = dnssec (host %s)",
                         d->lmtp ? "lmtp" : "smtp", t->host);
                return -EINVAL;
        }
        if (!t->addr_secure) {
                if (!only) {
                        *ret_level = SMTP_TLS_MAY;
                        return 1;
                }
                snprintf(why, size, "no DNSSEC-validated address for host %s[%s] (TLS security level dane-only)",
                         t->host, t->addr);
                return -ENOENT;
        }
        if (!t->mx_secure && mx_policy != SMTP_TLS_DANE) {
                *ret_level = mx_policy;
                return 1;
        }
        SmtpDane *dane = dane_get(d);
        if (!dane) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        dane->resume = resume;
        DaneHost *h = host_find(dane, t->host, t->port);
        if (!h) {
                char name[300];
                DaneHost **hosts = reallocarray(dane->hosts, dane->n_hosts + 1, sizeof(DaneHost *));
                if (!hosts) {
                        snprintf(why, size, "out of memory");
                        return -ENOMEM;
                }
                dane->hosts = hosts;
                if (!(h = calloc(1, sizeof(DaneHost)))) {
                        snprintf(why, size, "out of memory");
                        return -ENOMEM;
                }
                h->dane = dane;
                h->port = t->port;
                snprintf(h->host, sizeof(h->host), "%s", t->host);
                dane->hosts[dane->n_hosts++] = h;
                snprintf(name, sizeof(name), "_%u._tcp.%s", t->port, t->host);
                int r = smtp_dns_query(name, DNS_TYPE_TLSA, on_tlsa, h, &h->query);
                if (r < 0) {
                        h->query = NULL;
                        h->done = true;
                        h->status = DNS_TEMPFAIL;
                }
        }
        if (!h->done)
                return 0;
        switch (h->status) {
        case DNS_FOUND:
                if (!h->secure)
                        break;   /* not validated: as if there were none (RFC 7672 2.2) */
                if (h->usable) {
                        *ret_level = SMTP_TLS_DANE;
                        return 1;
                }
                if (!only) {
                        /* RFC 7672 3.1.3: TLS is a must, authentication is not possible */
                        *ret_level = SMTP_TLS_ENCRYPT;
                        return 1;
                }
                snprintf(why, size, "no usable TLSA records for _%u._tcp.%s (TLS security level dane-only)",
                         h->port, h->host);
                return -ENOENT;
        case DNS_NXDOMAIN:
        case DNS_NODATA:
        case DNS_INVALID:
                break;
        case DNS_TEMPFAIL:
        default:
                snprintf(why, size, "TLSA lookup error for _%u._tcp.%s", h->port, h->host);
                return -EIO;
        }
        if (!only) {
                *ret_level = SMTP_TLS_MAY;
                return 1;
        }
        snprintf(why, size, "no TLSA records for _%u._tcp.%s (TLS security level dane-only)", h->port, h->host);
        return -ENOENT;
}

int smtp_dane_target(SmtpDelivery *d, SmtpTarget *t, void (*resume)(SmtpDelivery *d), char *why, size_t size) {
        if (d->tls.level < SMTP_TLS_DANE || t->no_tls)
                return 1;
        SmtpTlsLevel level = SMTP_TLS_MAY;
        if (smtp_tls_required_no(d)) {
                /* RFC 8689 5: the sender asks that the recipient's DANE policy be ignored. */
                SmtpDane *dane = dane_get(d);
                if (dane && !dane->required_no_logged) {
                        dane->required_no_logged = true;
                        log_info("%s: TLS-Required: No: DANE (TLS security level %s) is not applied to %s; "
                                 "TLS security level may (RFC 8689 5)", d->queue_id, smtp_tls_level_name(d->tls.level),
                                 d->nexthop);
                }
                t->dane_level = SMTP_TLS_MAY;
                return 1;
        }
        int r = decide(d, t, resume, &level, why, size);
        if (r > 0)
                t->dane_level = level;
        else if (r == -EIO)
                smtp_tlsrpt_dane(d, t, TLSRPT_DNSSEC_INVALID);   /* SERVFAIL: bogus, or no answer */
        else if (r == -ENOENT)
                smtp_tlsrpt_dane(d, t, TLSRPT_DANE_REQUIRED);    /* dane-only without validated TLSA */
        return r;
}

char *smtp_dane_policy_string(const SmtpDelivery *d, const SmtpTarget *t) {
        DaneHost *h = d->dane ? host_find(d->dane, t->host, t->port) : NULL;
        size_t n = 1;
        for (size_t i = 0; h && i < h->n_recs; i++)
                n += 16 + 2 * h->recs[i].len;
        char *text = calloc(1, n), *p = text;
        for (size_t i = 0; text && h && i < h->n_recs; i++) {
                const TlsDaneRecord *rec = &h->recs[i];
                p += sprintf(p, "%s%u %u %u ", i ? "\n" : "", rec->usage, rec->selector, rec->mtype);
                for (size_t k = 0; k < rec->len; k++)
                        p += sprintf(p, "%02x", rec->data[k]);
        }
        return text;
}

SmtpTlsLevel smtp_dane_level(const SmtpDelivery *d, const SmtpTarget *t) {
        return d->tls.level >= SMTP_TLS_DANE ? (SmtpTlsLevel) t->dane_level : d->tls.level;
}

bool smtp_dane_check(SmtpDelivery *d, const SmtpTarget *t, TlsConn *tls, TlsTrust *ret_trust, const char **ret_why) {
        DaneHost *h = d->dane ? host_find(d->dane, t->host, t->port) : NULL;
        char *names[] = { (char *) t->host, NULL };
        if (!h || !h->usable) {
                *ret_trust = TLS_TRUST_UNTRUSTED;
                *ret_why = "no usable TLSA records";
                return false;
        }
        TlsTrust trust = tls_conn_dane_trust(tls, h->recs, h->n_recs, names, ret_why);
        if (trust != TLS_TRUST_VERIFIED) {
                *ret_trust = trust;
                return false;
        }
        /* An MX host name from an unvalidated MX lookup may be forged: "Trusted" only. */
        *ret_trust = t->mx_secure ? TLS_TRUST_VERIFIED : TLS_TRUST_TRUSTED;
        return true;
}
