/* smtpd-screen-dnsbl.c — the screening stage's DNS list scoring (postscreen_dnsbl_sites), for
 * smtpd-screen.c.
 *
 * postscreen_dnsbl_sites entries are domain[=filter][*weight]. screen_dnsbl_start() asks every
 * distinct domain at once (the client address reversed under it, type A, through the server's
 * resolver: the queries run in parallel on its worker threads and answer in the event loop);
 * each answer adds the weight of every entry of that domain whose filter matches one of the
 * answer's addresses (the filter syntax and matching are reject_rbl_client's,
 * smtpd_dnsbl_filter_match()). The stage reads the score when its greet wait ends; a list that
 * has not answered by then, or failed temporarily, counts as not listed and makes the result
 * incomplete (it is not cached). When the last answer is in, done() is called, so the stage can
 * end the wait early for a client whose score is at or below postscreen_dnsbl_allowlist_threshold.
 *
 * It owns the ScreenDnsbl state (the queries, the score) and the parsed site list of a settings
 * snapshot. It logs temporary failures; the verdict and its log line are the stage's. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "log/log.h"

typedef struct ScreenLookup {
        ScreenDnsbl *owner;
        size_t index;                   /* into dnsbl_domains */
        DnsQuery *query;                /* NULL once answered (or never started) */
} ScreenLookup;

struct ScreenDnsbl {
        Session *session;
        void (*done)(Session *s);
        ScreenLookup *lookups;
        size_t n_lookups, n_pending;
        int score;
        bool incomplete;                /* a list failed or never answered */
        int best_weight;                /* the largest weight that counted ... */
        const char *best_site;          /* ... and its domain (borrowed from the settings) */
        int64_t ttl;                    /* the smallest TTL of the answers; -1: none */
        usec_t deadline;                /* postscreen_dnsbl_timeout: later answers do not count */
};

/* ---- settings ------------------------------------------------------------------------------ */

static bool filter_valid(const char *f) {
        /* four parts, each a number or [..] of numbers with ".." or ";" */
        int parts = 0;
        for (const char *p = f; ; ) {
                if (*p == '[') {
                        const char *end = strchr(p, ']');
                        if (!end || end == p + 1 || strspn(p + 1, "0123456789.;") != (size_t) (end - p - 1))
                                return false;
                        p = end + 1;
                } else {
                        size_t n = strspn(p, "0123456789");
                        if (n == 0 || n > 3)
                                return false;
                        p += n;
                }
                parts++;
                if (*p == '\0')
                        return parts == 4;
                if (*p != '.' || parts == 4)
                        return false;
                p++;
        }
}

int screen_site_parse(const char *text, ScreenSite *ret, const char **ret_why) {
        ScreenSite s = { .weight = 1 };
        const char *star = strrchr(text, '*'), *end = star ? star : text + strlen(text);
        if (star) {
                char *e;
                errno = 0;
                long w = strtol(star + 1, &e, 10);
                if (star[1] == '\0' || *e != '\0' || errno || w < -1000000 || w > 1000000)
                        return *ret_why = "the weight after \"*\" is not a whole number", -EINVAL;
                s.weight = (int) w;
        }
        const char *eq = memchr(text, '=', (size_t) (end - text));
        const char *dend = eq ? eq : end;
        if (dend == text)
                return *ret_why = "no domain", -EINVAL;
        if (eq) {
                s.filter = strndup(eq + 1, (size_t) (end - eq - 1));
                if (!s.filter)
                        return -ENOMEM;
                if (!filter_valid(s.filter)) {
                        free(s.filter);
                        return *ret_why = "the reply filter is not four dotted octets (2, [2..11] or [2;4] each)", -EINVAL;
                }
        }
        s.domain = strndup(text, (size_t) (dend - text));
        if (!s.domain) {
                free(s.filter);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

void screen_site_done(ScreenSite *s) {
        free(s->domain);
        free(s->filter);
        *s = (ScreenSite) {};
}

int smtpd_screen_dnsbl_settings(Conf *c, const char *listener, SmtpdScreenSettings *st) {
        _cleanup_strv_free_ char **list = conf_get_list(c, listener, "postscreen_dnsbl_sites");
        if (!list)
                return log_oom();
        size_t n = 0;
        while (list[n])
                n++;
        st->sites = calloc(n + 1, sizeof(ScreenSite));
        st->dnsbl_domains = calloc(n + 1, sizeof(char *));
        if (!st->sites || !st->dnsbl_domains)
                return log_oom();
        for (char **i = list; *i; i++) {
                const char *why = NULL;
                ScreenSite s;
                int r = screen_site_parse(*i, &s, &why);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        return log_error_errno(r, "postscreen_dnsbl_sites: \"%s\": %s", *i, why);
                size_t k = 0;
                while (k < st->n_dnsbl_domains && strcasecmp(st->dnsbl_domains[k], s.domain) != 0)
                        k++;
                if (k == st->n_dnsbl_domains && !(st->dnsbl_domains[st->n_dnsbl_domains++] = strdup(s.domain))) {
                        screen_site_done(&s);
                        return log_oom();
                }
                s.domain_index = k;
                st->sites[st->n_sites++] = s;
        }
        _cleanup_free_ char *reason = NULL;
        int r = conf_get_table_list(c, listener, "postscreen_dnsbl_reply_map", 0, &st->dnsbl_reply_map, &reason);
        if (r < 0)
                return r == -ENOMEM ? log_oom() : log_error_errno(r, "%s", reason ? reason : "postscreen_dnsbl_reply_map");
        return 0;
}

void smtpd_screen_dnsbl_settings_done(SmtpdScreenSettings *st) {
        for (size_t i = 0; i < st->n_sites; i++)
                screen_site_done(&st->sites[i]);
        free(st->sites);
        strv_free(st->dnsbl_domains);
        table_list_free(st->dnsbl_reply_map);
        st->sites = NULL;
        st->dnsbl_domains = NULL;
        st->dnsbl_reply_map = NULL;
        st->n_sites = st->n_dnsbl_domains = 0;
}

/* ---- lookups ------------------------------------------------------------------------------- */

static void on_answer(DnsQuery *q, const DnsResult *r, void *userdata) {
        ScreenLookup *l = userdata;
        ScreenDnsbl *d = l->owner;
        const SmtpdScreenSettings *st = &d->session->settings->screen;
        l->query = NULL;
        d->n_pending--;
        bool found = r->status == DNS_FOUND;
        if (now_usec(CLOCK_MONOTONIC) > d->deadline) {
                d->incomplete = true;   /* too late: not listed, and not cached */
                found = false;
                log_warning("dnsblog: %s: DNSBL answer after postscreen_dnsbl_timeout (counted as not listed)", r->name);
        } else if (r->status == DNS_TEMPFAIL || r->status == DNS_INVALID) {
                d->incomplete = true;
                log_warning("dnsblog: %s: DNSBL lookup error: %s (counted as not listed)", r->name,
                            dns_status_to_string(r->status));
        }
        for (size_t i = 0; found && i < st->n_sites; i++) {
                const ScreenSite *s = &st->sites[i];
                if (s->domain_index != l->index)
                        continue;
                for (size_t k = 0; k < r->n_records; k++) {
                        const DnsRecord *rec = &r->records[k];
                        if (rec->type != DNS_TYPE_A || (s->filter && !smtpd_dnsbl_filter_match(s->filter, rec->addr)))
                                continue;
                        d->score += s->weight;
                        if (!d->best_site || s->weight > d->best_weight) {
                                d->best_weight = s->weight;
                                d->best_site = s->domain;
                        }
                        break;   /* an entry counts once, however many answers match */
                }
        }
        for (size_t k = 0; found && k < r->n_records; k++)
                if (d->ttl < 0 || (int64_t) r->records[k].ttl < d->ttl)
                        d->ttl = r->records[k].ttl;
        if (d->n_pending == 0)
                d->done(d->session);   /* may free d (the stage ends) */
}

ScreenDnsbl *screen_dnsbl_start(Session *s, void (*done)(Session *s)) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        if (st->n_dnsbl_domains == 0 || !s->server->resolver)
                return NULL;
        ScreenDnsbl *d = calloc(1, sizeof(ScreenDnsbl));
        if (!d || !(d->lookups = calloc(st->n_dnsbl_domains, sizeof(ScreenLookup)))) {
                free(d);
                log_oom();
                return NULL;
        }
        d->session = s;
        d->done = done;
        d->ttl = -1;
        d->deadline = now_usec(CLOCK_MONOTONIC) + st->dnsbl_timeout_usec;
        d->n_lookups = st->n_dnsbl_domains;
        for (size_t i = 0; i < d->n_lookups; i++) {
                ScreenLookup *l = &d->lookups[i];
                char name[DNS_NAME_MAX];
                *l = (ScreenLookup) { .owner = d, .index = i };
                if (dns_reverse_name(s->client.family, s->client.addr_bytes, st->dnsbl_domains[i], name,
                                     sizeof(name)) < 0 ||
                    dns_query(s->server->resolver, name, DNS_TYPE_A, on_answer, l, &l->query) < 0) {
                        d->incomplete = true;   /* too long a name, or the resolver's queue is full */
                        continue;
                }
                d->n_pending++;
        }
        return d;
}

ScreenDnsbl *screen_dnsbl_free(ScreenDnsbl *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_lookups; i++)
                if (d->lookups[i].query)
                        dns_query_cancel(d->lookups[i].query);
        free(d->lookups);
        free(d);
        return NULL;
}

ScreenDnsblResult screen_dnsbl_result(const ScreenDnsbl *d) {
        if (!d)
                return (ScreenDnsblResult) { .ttl = -1 };
        return (ScreenDnsblResult) { .score = d->score, .complete = !d->incomplete && d->n_pending == 0,
                                     .site = d->best_site, .ttl = d->ttl };
}

char *screen_dnsbl_display_name(const SmtpdScreenSettings *st, const char *site) {
        _cleanup_free_ char *v = NULL;
        if (st->dnsbl_reply_map) {
                int r = table_list_lookup(st->dnsbl_reply_map, site, &v);
                if (r < 0)
                        log_warning("postscreen_dnsbl_reply_map: lookup of %s failed; the reply names it", site);
                if (r > 0 && !isempty(v))
                        return TAKE_PTR(v);
        }
        return strdup(site);
}
