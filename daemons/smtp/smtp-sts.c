/* smtp-sts.c — MTA-STS (RFC 8461) for a delivery: which policy its next-hop domain has, and what
 * that policy asks of each MX host.
 *
 * Discovery (smtp_sts_lookup(), before the first connection of a delivery whose next hop is a
 * domain reached through MX records, when smtp_mta_sts_enable = yes and smtp_tls_policy_maps has
 * no entry for it): the TXT record at _mta-sts.<domain> — exactly one "v=STSv1; id=...;" record
 * counts, anything else means no (new) policy (3.1) — and the cache (smtp-sts-cache.c):
 *   - a cached policy under the same id is used as it is;
 *   - a new id (or none cached) fetches the policy (smtp-sts-fetch.c, on a thread) and the
 *     delivery waits for it; the fetched policy replaces the cached one and is logged
 *     ("MTA-STS policy for example.com: mode=enforce, id=..., max_age=...");
 *   - a failed fetch, a missing TXT record or a DNS failure keeps using a cached policy that has
 *     not expired (3.3, 5.1); without one the domain has no policy;
 *   - a cached policy older than half its max_age (at most a day) is fetched again in the
 *     background while the delivery goes on with it, so that a policy in use does not expire.
 *   - one fetch per domain and id at a time: a lookup that finds one under way waits for it.
 *
 * Enforcement (smtp_sts_target(), called from smtp_tls_target_level(), the one place where the
 * TLS level of one MX address is decided): mode enforce — the MX host must match one of the
 * policy's mx patterns (else the address is skipped) and TLS must verify with the MX host name
 * (level verify, never plaintext); testing — TLS is tried (at least level may) and a pattern or
 * certificate failure is logged, the mail goes anyway; none — nothing. With
 * smtp_tls_enforce_sts_mx_patterns = no the MX host name is not checked and the certificate is
 * matched against the patterns instead. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>

#include "dns/dns.h"
#include "log/log.h"
#include "smtp-sts.h"
#include "smtp.h"
#include "tls/tlsrpt.h"

typedef struct StsLookup {
        SmtpDelivery *d;                  /* NULL: a background refresh, or the delivery is gone */
        void (*done)(SmtpDelivery *d);
        DnsQuery *query;
        StsFetch *fetch;
        char domain[256];
        char id[STS_ID_MAX + 1];
        StsPolicy cached;
        bool have_cached;
        struct StsLookup *prev, *next;
        /* One fetch per domain and id at a time: later lookups wait on the one fetching. */
        struct StsLookup *owner;          /* the lookup whose fetch this one waits for */
        struct StsLookup *waiters, *next_waiter;
} StsLookup;

static struct {
        sd_event *event;
        StsCache *cache;
        StsLookup *lookups;
} sts;

void smtp_sts_init(sd_event *e, const char *queue_directory) {
        _cleanup_free_ char *path = NULL, *why = NULL;
        sts.event = e;
        if (asprintf(&path, "%s/mta-sts.db", strempty(queue_directory)) < 0) {
                log_oom();
                return;
        }
        /* Without the file, policies are kept in memory until postern-smtp stops. */
        if (sts_cache_open(path, &sts.cache, &why) < 0) {
                log_warning("MTA-STS policy cache %s: %s; keeping policies in memory", path, strna(why));
                if (sts_cache_open("", &sts.cache, NULL) < 0)
                        sts.cache = NULL;
        }
}

static void lookup_free(StsLookup *l) {
        if (l->query)
                dns_query_cancel(l->query);
        if (l->fetch)
                sts_fetch_cancel(l->fetch);
        if (l->owner)
                for (StsLookup **w = &l->owner->waiters; *w; w = &(*w)->next_waiter)
                        if (*w == l) {
                                *w = l->next_waiter;
                                break;
                        }
        for (StsLookup *w = l->waiters; w; w = w->next_waiter)
                w->owner = NULL;   /* (only at shutdown: a fetch ends by finishing its waiters) */
        if (l->prev)
                l->prev->next = l->next;
        else
                sts.lookups = l->next;
        if (l->next)
                l->next->prev = l->prev;
        if (l->d)
                l->d->sts_lookup = NULL;
        sts_policy_done(&l->cached);
        free(l);
}

void smtp_sts_done(void) {
        while (sts.lookups)
                lookup_free(sts.lookups);
        sts.cache = sts_cache_free(sts.cache);
}

int smtp_sts_load(Conf *c, SmtpSettings *s) {
        if (!streq(s->prefix, "smtp"))
                return 0;   /* LMTP delivers to a mailbox server of its own: no MTA-STS */
        s->sts_enable = smtp_conf_bool(c, s, "mta_sts_enable");
        s->sts_enforce_mx_patterns = smtp_conf_bool(c, s, "tls_enforce_sts_mx_patterns");
        s->sts_fetch_timeout = smtp_conf_usec(c, s, "mta_sts_fetch_timeout");
        s->sts_max_size = (size_t) smtp_conf_int(c, s, "mta_sts_max_policy_size");
        s->tlsrpt_enable = smtp_conf_bool(c, s, "tlsrpt_enable");
        if (!isempty(smtp_conf_get(c, s, "tlsrpt_socket_name"))) {
                char *note = strdup("not supported: smtp_tlsrpt_socket_name (postern-smtp records TLSRPT results "
                                    "itself in $queue_directory/tlsrpt.db; there is no outside tlsrpt daemon)");
                if (note && smtp_note_add(&s->notes, note) < 0)
                        free(note);
        }
        s->sts_ca_file = strdup(strempty(smtp_conf_get(c, s, "mta_sts_CAfile")));
        return s->sts_ca_file ? 0 : log_oom();
}

/* The policy a delivery goes on with (taken over), then on to its connections. */
static void lookup_finish(StsLookup *l, StsPolicy *p) {
        SmtpDelivery *d = l->d;
        if (d) {
                d->sts_lookup = NULL;
                l->d = NULL;
                if (p && p->mode != STS_MODE_NONE && (d->sts = malloc(sizeof(StsPolicy)))) {
                        *d->sts = *p;
                        *p = (StsPolicy) {};
                }
                l->done(d);
        }
}

static void log_policy(const char *domain, const StsPolicy *p, const char *how) {
        log_info("MTA-STS policy for %s%s: mode=%s, id=%s, max_age=%llu", domain, how, sts_mode_name(p->mode), p->id,
                 (unsigned long long) p->max_age);
}

static StsFetchConfig fetch_config(const SmtpSettings *s) {
        return (StsFetchConfig) { .ca_file = s->sts_ca_file, .timeout_usec = s->sts_fetch_timeout,
                                  .max_size = s->sts_max_size, .port = 443 };
}

/* The lookups waiting for l's fetch go on with its result (NULL: their own cached policy). */
static void finish_waiters(StsLookup *l, const StsPolicy *p) {
        while (l->waiters) {
                StsLookup *w = l->waiters;
                StsPolicy copy = {};
                l->waiters = w->next_waiter;
                w->owner = NULL;
                if (p && sts_policy_copy(p, &copy) >= 0)
                        lookup_finish(w, &copy);
                else
                        lookup_finish(w, w->have_cached ? &w->cached : NULL);
                sts_policy_done(&copy);
                lookup_free(w);
        }
}

static void on_fetched(StsFetch *f, int r, const char *why, const char *body, size_t len, void *userdata) {
        StsLookup *l = userdata;
        StsPolicy p = {};
        char perr[200];

        l->fetch = NULL;
        TlsrptResult result = TLSRPT_STS_POLICY_FETCH_ERROR;
        if (r >= 0 && (r = sts_policy_parse(body, len, &p, perr, sizeof perr)) < 0) {
                why = r == -ENOMEM ? "out of memory" : perr;
                result = TLSRPT_STS_POLICY_INVALID;
        } else if (r < 0 && why && strstr(why, "certificate"))
                result = TLSRPT_STS_WEBPKI_INVALID;
        if (r < 0) {
                /* RFC 8460 4.3.2.2: counted for the deliveries that went on without a policy */
                if (!l->have_cached) {
                        if (l->d)
                                smtp_tlsrpt_fetch_failed(l->d, l->domain, result);
                        for (StsLookup *w = l->waiters; w; w = w->next_waiter)
                                if (w->d && !w->have_cached)
                                        smtp_tlsrpt_fetch_failed(w->d, l->domain, result);
                }
                if (l->have_cached)
                        log_warning("MTA-STS policy for %s: fetch failed: %s; using the cached policy (id=%s)",
                                    l->domain, why, l->cached.id);
                else
                        log_warning("MTA-STS policy for %s: fetch failed: %s; no policy", l->domain, why);
                finish_waiters(l, NULL);
                lookup_finish(l, l->have_cached ? &l->cached : NULL);
                lookup_free(l);
                return;
        }
        snprintf(p.id, sizeof p.id, "%s", l->id);
        p.fetched = (uint64_t) time(NULL);
        log_policy(l->domain, &p, l->have_cached ? " (refreshed)" : "");
        if (sts.cache && sts_cache_put(sts.cache, l->domain, &p) < 0)
                log_warning("MTA-STS policy for %s: cannot store it in the cache", l->domain);
        finish_waiters(l, &p);
        lookup_finish(l, &p);
        sts_policy_done(&p);
        lookup_free(l);
}

static int fetch_start(StsLookup *l, const SmtpSettings *s) {
        StsFetchConfig cfg = fetch_config(s);
        return sts_fetch_start(sts.event, l->domain, &cfg, on_fetched, l, &l->fetch);
}

/* A policy still in use is fetched again before it expires: after half its max_age, at most a day. */
static bool refresh_due(const StsPolicy *p) {
        uint64_t after = p->max_age / 2 < 86400 ? p->max_age / 2 : 86400;
        return p->fetched + after <= (uint64_t) time(NULL);
}

/* The lookup fetching domain's policy under id, if one is. */
static StsLookup *fetching(const char *domain, const char *id) {
        for (StsLookup *o = sts.lookups; o; o = o->next)
                if (o->fetch && streq(o->domain, domain) && streq(o->id, id))
                        return o;
        return NULL;
}

static StsLookup *lookup_new(const char *domain) {
        StsLookup *l = calloc(1, sizeof(StsLookup));
        if (!l)
                return NULL;
        snprintf(l->domain, sizeof l->domain, "%s", domain);
        l->next = sts.lookups;
        if (l->next)
                l->next->prev = l;
        sts.lookups = l;
        return l;
}

static void on_txt(DnsQuery *q, const DnsResult *res, void *userdata) {
        StsLookup *l = userdata;
        SmtpDelivery *d = l->d;
        size_t valid = 0;
        char id[STS_ID_MAX + 1] = "";

        l->query = NULL;
        if (res->status == DNS_FOUND)
                for (size_t i = 0; i < res->n_records; i++) {
                        char one[STS_ID_MAX + 1];
                        int r = sts_txt_parse(res->records[i].text, one);
                        if (r == -ENOENT)
                                continue;   /* not an STS record: ignored (3.1) */
                        valid++;
                        if (r < 0)
                                valid = 99;   /* a broken STSv1 record: as if there were none */
                        else
                                memcpy(id, one, sizeof id);
                }
        if (valid != 1 || !d) {
                /* No usable TXT record (or a DNS failure): a cached policy stays in force. */
                if (valid > 1 && valid != 99)
                        log_info("MTA-STS: %zu TXT records for _mta-sts.%s; treated as none", valid, l->domain);
                lookup_finish(l, l->have_cached ? &l->cached : NULL);
                lookup_free(l);
                return;
        }
        memcpy(l->id, id, sizeof l->id);
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        if (l->have_cached && streq(l->cached.id, id)) {
                if (refresh_due(&l->cached) && !fetching(l->domain, id)) {
                        /* the delivery goes on with the cached policy; a lookup of its own refreshes it */
                        StsLookup *bg = lookup_new(l->domain);
                        if (bg) {
                                memcpy(bg->id, id, sizeof bg->id);
                                bg->have_cached = sts_policy_copy(&l->cached, &bg->cached) >= 0;
                                if (fetch_start(bg, s) < 0)
                                        lookup_free(bg);
                        }
                }
                lookup_finish(l, &l->cached);
                lookup_free(l);
                return;
        }
        StsLookup *o = fetching(l->domain, id);
        if (o) {
                l->owner = o;
                l->next_waiter = o->waiters;
                o->waiters = l;
                return;
        }
        int r = fetch_start(l, s);
        if (r < 0) {
                log_warning("MTA-STS policy for %s: cannot start the fetch: %s", l->domain, strerror(-r));
                lookup_finish(l, l->have_cached ? &l->cached : NULL);
                lookup_free(l);
        }
}

int smtp_sts_lookup(SmtpDelivery *d, void (*done)(SmtpDelivery *d)) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        char domain[256];
        unsigned char a[16];

        if (!s->sts_enable || d->lmtp || !s->dns_enabled || d->nexthop[0] == '[' || d->tls.from_table)
                return 0;
        /* DANE (a TLSA-secured MX) takes precedence over MTA-STS (RFC 8461 2): its hook goes here. */
        smtp_nexthop_domain(d->nexthop, domain, sizeof domain);
        size_t n = strlen(domain);
        if (n > 0 && domain[n - 1] == '.')
                domain[--n] = '\0';
        for (char *c = domain; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char) (*c - 'A' + 'a');
        if (n == 0 || !strchr(domain, '.') || inet_pton(AF_INET, domain, a) == 1 || inet_pton(AF_INET6, domain, a) == 1)
                return 0;
        if (smtp_tls_required_no(d)) {
                log_info("%s: TLS-Required: No: the MTA-STS policy of %s is not applied (RFC 8689 5)", d->queue_id,
                         domain);
                return 0;
        }
        snprintf(d->sts_domain, sizeof d->sts_domain, "%s", domain);

        StsLookup *l = lookup_new(domain);
        if (!l)
                return 0;
        l->d = d;
        l->done = done;
        d->sts_lookup = l;
        if (sts.cache) {
                int r = sts_cache_get(sts.cache, domain, &l->cached);
                if (r < 0)
                        log_warning("MTA-STS policy cache: cannot read the policy of %s", domain);
                l->have_cached = r > 0;
        }
        char name[300];
        snprintf(name, sizeof name, "_mta-sts.%s", domain);
        int r = smtp_dns_query(name, DNS_TYPE_TXT, on_txt, l, &l->query);
        if (r < 0) {
                l->query = NULL;
                l->d = NULL;
                d->sts_lookup = NULL;
                if (l->have_cached && (d->sts = malloc(sizeof(StsPolicy)))) {
                        *d->sts = l->cached;
                        l->cached = (StsPolicy) {};
                        l->have_cached = false;
                }
                lookup_free(l);
                return 0;
        }
        return 1;
}

void smtp_sts_delivery_done(SmtpDelivery *d) {
        if (d->sts_lookup) {
                StsLookup *l = d->sts_lookup;
                l->d = NULL;   /* a fetch under way still fills the cache */
                d->sts_lookup = NULL;
                if (l->query || l->owner)
                        lookup_free(l);
        }
        if (d->sts) {
                sts_policy_done(d->sts);
                free(d->sts);
                d->sts = NULL;
        }
}

int smtp_sts_target(const SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel *level, char *why, size_t size) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        const StsPolicy *p = d->sts;
        if (!p || p->mode == STS_MODE_NONE)
                return STS_MODE_NONE;
        if (s->sts_enforce_mx_patterns && !sts_policy_mx_allowed(p, t->host)) {
                char relay[400];
                smtp_target_relay(t, relay, sizeof relay);
                smtp_sts_log_failure(d, relay, "MX host does not match the policy's mx patterns");
                if (p->mode == STS_MODE_ENFORCE) {
                        /* no session is made: counted here (testing mode: by the session) */
                        smtp_tlsrpt_session(d, t->host, t->addr, TLSRPT_VALIDATION_FAILURE);
                        snprintf(why, size, "MTA-STS policy for %s: MX host %s does not match the policy's mx patterns",
                                 d->sts_domain, t->host);
                        return -EPERM;
                }
        }
        if (p->mode == STS_MODE_ENFORCE) {
                if (*level < SMTP_TLS_VERIFY)
                        *level = SMTP_TLS_VERIFY;
        } else if (*level < SMTP_TLS_MAY && !t->no_tls)
                *level = SMTP_TLS_MAY;
        return (int) p->mode;
}

char **smtp_sts_match_names(const SmtpDelivery *d, const char *host) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        size_t n = 0;
        if (s->sts_enforce_mx_patterns) {
                char **v = calloc(2, sizeof(char *));
                if (v && !(v[0] = strdup(host)))
                        return strv_free(v);
                return v;
        }
        while (d->sts->mx && d->sts->mx[n])
                n++;
        char **v = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++) {
                const char *m = d->sts->mx[i];
                /* "*.example.net" as a name below example.net (tls_name_matches' ".example.net") */
                if (!(v[i] = strdup(startswith(m, "*") ? m + 1 : m)))
                        return strv_free(v);
        }
        return v;
}

void smtp_sts_log_failure(const SmtpDelivery *d, const char *relay, const char *reason) {
        if (!d->sts)
                return;
        log_warning("%s: MTA-STS policy for %s (mode=%s): MX %s: %s%s", d->queue_id, d->sts_domain,
                    sts_mode_name(d->sts->mode), relay, reason,
                    d->sts->mode == STS_MODE_TESTING ? "; delivering anyway (testing)" : "");
}
