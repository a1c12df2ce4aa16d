/* smtp-tlsrpt.c — postern-smtp's side of TLS reporting (RFC 8460): with smtp_tlsrpt_enable, each
 * session of a delivery that went through policy discovery is counted in
 * $queue_directory/tlsrpt.db (common/tls/tlsrpt.c) under its policy domain: "sts" with the
 * MTA-STS policy's text and mx patterns, or "no-policy-found". A session checked by DANE (level
 * dane with usable TLSA records) is counted as "tlsa" instead (smtp_tlsrpt_dane()), under the
 * next-hop domain, with the host's TLSA records and the host as mx-host; smtp-dane.c adds the
 * addresses DANE rules out before connecting. One result per session: the first failure, or
 * success once TLS is up (and verified, under a policy). `posternctl tlsrpt send` makes and mails
 * the daily reports. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log/log.h"
#include "smtp-sts.h"
#include "smtp.h"
#include "tls/tlsrpt.h"

static struct {
        char *path;
        TlsrptStore *store;
        bool failed;                      /* opening failed once: logged, not tried again */
} rpt;

void smtp_tlsrpt_init(const char *queue_directory) {
        if (asprintf(&rpt.path, "%s/tlsrpt.db", strempty(queue_directory)) < 0)
                rpt.path = NULL;
}

void smtp_tlsrpt_done(void) {
        rpt.store = tlsrpt_free(rpt.store);
        free(rpt.path);
        rpt.path = NULL;
        rpt.failed = false;
}

void smtp_tlsrpt_record(const TlsrptRecord *rec) {
        if (!rpt.store && !rpt.failed) {
                _cleanup_free_ char *why = NULL;
                /* opened at the first result: nothing is created while TLSRPT is off */
                if (!rpt.path || tlsrpt_open(rpt.path, &rpt.store, &why) < 0) {
                        log_warning("TLSRPT results %s: %s; not recording", strna(rpt.path), strna(why));
                        rpt.failed = true;
                }
        }
        if (rpt.store && tlsrpt_record(rpt.store, rec, time(NULL)) < 0)
                log_warning("TLSRPT results: cannot record a result for %s: %s", rec->policy_domain,
                            sqlite_cache_errmsg(rpt.store));
}

void smtp_tlsrpt_session(const SmtpDelivery *d, const char *mx_host, const char *ip, int result) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        if (!s->tlsrpt_enable || isempty(d->sts_domain))
                return;
        _cleanup_free_ char *mx = NULL;
        if (d->sts) {
                size_t n = 0;
                for (char **m = d->sts->mx; m && *m; m++)
                        n += strlen(*m) + 1;
                if (!(mx = calloc(1, n + 1)))
                        return (void) log_oom();
                for (char **m = d->sts->mx; m && *m; m++) {
                        strcat(mx, *m);
                        strcat(mx, "\n");
                }
        }
        TlsrptRecord rec = {
                .policy_domain = d->sts_domain,
                .policy_type = d->sts ? "sts" : "no-policy-found",
                .policy_string = d->sts ? d->sts->text : NULL,
                .mx_host = mx,
                .result = (TlsrptResult) result,
                .receiving_mx_hostname = mx_host,
                .receiving_ip = ip,
        };
        smtp_tlsrpt_record(&rec);
}

void smtp_tlsrpt_dane(const SmtpDelivery *d, const SmtpTarget *t, int result) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        char domain[256];
        if (!s->tlsrpt_enable)
                return;
        smtp_nexthop_domain(d->nexthop, domain, sizeof domain);
        size_t n = strlen(domain);
        if (n > 0 && domain[n - 1] == '.')
                domain[n - 1] = '\0';
        for (char *c = domain; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        _cleanup_free_ char *records = smtp_dane_policy_string(d, t);
        if (!records)
                return (void) log_oom();
        TlsrptRecord rec = {
                .policy_domain = domain,
                .policy_type = "tlsa",
                .policy_string = records,
                .mx_host = t->host,
                .result = (TlsrptResult) result,
                .receiving_mx_hostname = t->host,
                .receiving_ip = t->addr,
        };
        smtp_tlsrpt_record(&rec);
}

void smtp_tlsrpt_fetch_failed(const SmtpDelivery *d, const char *domain, int result) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        if (!s->tlsrpt_enable)
                return;
        TlsrptRecord rec = { .policy_domain = domain, .policy_type = "sts", .result = (TlsrptResult) result };
        smtp_tlsrpt_record(&rec);
}
