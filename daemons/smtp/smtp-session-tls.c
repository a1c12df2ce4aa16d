/* smtp-session-tls.c — TLS in a session (smtp_tls_security_level, smtp_tls_policy_maps; the
 * settings and policy are smtp-tls.c's, GnuTLS is common/tls).
 *
 * After EHLO, when the level asks for it, STARTTLS; whatever the server sent behind its 220 in
 * plaintext is discarded (STARTTLS injection), the handshake runs in the loop (ST_TLS), and the
 * certificate is judged: against the TLSA records at level DANE (smtp-dane.c), else the chain
 * and the names the level and MTA-STS ask for; then EHLO is sent again so that only the keywords
 * announced inside TLS count. With smtp_tls_wrappermode the handshake comes first and the
 * greeting is read inside TLS. At level may a failed handshake is retried on the same address in
 * plaintext, as Postfix does. Each session's TLSRPT result (smtp-tlsrpt.c) is counted here, and
 * the REQUIRETLS (RFC 8689) condition a session must meet is decided here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "metrics/metrics-catalog.h"
#include "metrics/metrics-store.h"
#include "smtp-session.h"
#include "smtp-sts.h"
#include "tls/tlsrpt.h"

/* RFC 8689 4.2: what keeps this session from carrying a REQUIRETLS message, or NULL. The server
 * must be authenticated in a way DNS spoofing cannot subvert — level secure (the name matched is
 * the next hop's), verify towards a [host] next hop (no MX lookup), or an MTA-STS policy in
 * enforce mode (the MX names come from the HTTPS-authenticated policy, RFC 8689 4.2.1) — and must
 * offer REQUIRETLS; an LMTP server need not offer it, and a UNIX-domain socket stays on this host. */
const char *smtp_session_requiretls_unmet(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (s->lmtp && s->target.sa.ss_family == AF_UNIX)
                return NULL;
        if (!s->tls_up)
                return "no TLS";
        bool bracketed = tls_nexthop(d)[0] == '[';
        if (s->trust != TLS_TRUST_VERIFIED ||
            !(s->level >= SMTP_TLS_SECURE || (s->level == SMTP_TLS_VERIFY && bracketed) || s->sts == STS_MODE_ENFORCE))
                return "the server certificate was not verified at TLS security level secure or by MTA-STS";
        if (!s->lmtp && !s->requiretls)
                return "the server does not offer REQUIRETLS";
        return NULL;
}

/* This address cannot be used (TLS missing, failed or not verified): the result when it was the
 * last one, else on to the next address. */
void smtp_session_tls_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) {
        SmtpDelivery *d = s->d;
        char diag[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);
        if (d && d->next_target >= d->n_targets)
                smtp_all_result(d, false, dsn, "%s", diag);
        else if (d)
                log_info("%s: %s; trying the next address", d->queue_id, diag);
        smtp_session_release(s, true);
        smtp_session_quit(s);
}

/* Counts this session's TLSRPT result, the first one only. */
static void tlsrpt_result(SmtpSession *s, TlsrptResult result) {
        if (s->tlsrpt_done || !s->d)
                return;
        s->tlsrpt_done = true;
        if (s->level == SMTP_TLS_DANE)   /* checked against TLSA records: policy type "tlsa" */
                smtp_tlsrpt_dane(s->d, &s->target, result);
        else
                smtp_tlsrpt_session(s->d, s->target.host, s->target.addr, result);
}

void smtp_session_log_tls(SmtpSession *s, const char *how) {
        int bits = tls_conn_cipher_bits(s->tls);
        log_info("%s TLS connection %s to %s: %s with cipher %s (%d/%d bits)", tls_trust_name(s->trust), how,
                 s->relay, tls_conn_protocol(s->tls), tls_conn_cipher(s->tls), bits, bits);
}

/* The handshake failed or timed out: at level may the same address again in plaintext (as
 * Postfix does), otherwise this address is unusable. */
void smtp_session_tls_handshake_failed(SmtpSession *s, const char *why) {
        SmtpDelivery *d = s->d;
        log_info("SSL_connect error to %s: %s", s->relay, why);
        if (d && s->sts != STS_MODE_NONE)
                smtp_sts_log_failure(d, s->relay, "TLS handshake failed");
        tlsrpt_result(s, TLSRPT_VALIDATION_FAILURE);
        if (d && s->level == SMTP_TLS_MAY && !s->wrapper && s->target_index < d->n_targets) {
                log_info("%s: TLS handshake with %s failed; trying again without TLS", d->queue_id, s->relay);
                d->targets[s->target_index].no_tls = true;
                d->next_target = s->target_index;
                smtp_session_release(s, true);
                smtp_session_free(s);
                return;
        }
        smtp_session_tls_failed(s, "4.7.5", "Cannot start TLS: handshake failure");
}

static void tls_established(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        SmtpTls *t = cfg(s)->tls;
        _cleanup_strv_free_ char **match = smtp_tls_target_match(d, s->sts, s->target.host, tls_nexthop(d));
        const char *why = NULL;

        s->tls_up = true;
        bool ok;
        if (s->level == SMTP_TLS_DANE) {
                ok = smtp_dane_check(d, &s->target, s->tls, &s->trust, &why);
                tlsrpt_result(s, ok ? TLSRPT_SUCCESS
                                 : why && startswith(why, "the certificate names do not match") ? TLSRPT_CERTIFICATE_HOST_MISMATCH
                                                                                             : TLSRPT_TLSA_INVALID);
        } else {
                s->trust = tls_conn_peer_trust(s->tls, match, &why);
                if (s->sts != STS_MODE_NONE && s->trust != TLS_TRUST_VERIFIED) {
                        char reason[400];
                        snprintf(reason, sizeof reason, "certificate not verified: %s", strna(why));
                        smtp_sts_log_failure(d, s->relay, reason);
                        tlsrpt_result(s, s->trust == TLS_TRUST_TRUSTED ? TLSRPT_CERTIFICATE_HOST_MISMATCH
                                         : why && strstr(why, "expired")  ? TLSRPT_CERTIFICATE_EXPIRED
                                                                          : TLSRPT_CERTIFICATE_NOT_TRUSTED);
                }
                tlsrpt_result(s, TLSRPT_SUCCESS);
                ok = s->level < SMTP_TLS_VERIFY || s->trust == TLS_TRUST_VERIFIED;
        }
        if (!ok) {
                log_info("server certificate verification failed for %s: %s", s->relay, strna(why));
                smtp_session_tls_failed(s, "4.7.5", "Server certificate not verified");
                return;
        }
        if (smtp_tls_loglevel(t) >= 2 && !isempty(why))
                log_info("certificate verification for %s: %s", s->relay, why);   /* why not Verified */
        metrics_count(METRIC_SMTP_TLS, "protocol", tls_conn_protocol(s->tls), "cipher", tls_conn_cipher(s->tls), NULL);
        if (smtp_tls_loglevel(t) >= 1)
                smtp_session_log_tls(s, "established");
        if (smtp_tls_loglevel(t) >= 1 && s->level == SMTP_TLS_DANE)
                log_info("%s: server certificate matched the DANE TLSA records of _%u._tcp.%s", s->relay,
                         s->target.port, s->target.host);
        if (s->wrapper) {
                s->state = ST_GREETING;
                smtp_session_set_timer(s, cfg(s)->helo_timeout, "receiving the initial server greeting");
                smtp_session_update_events(s);
                (void) smtp_session_on_readable(s);   /* the greeting may already sit in GnuTLS's buffer */
                return;
        }
        /* RFC 3207 4.2: forget the plaintext EHLO; only what the server says inside TLS counts. */
        s->state = ST_EHLO;
        smtp_session_update_events(s);
        smtp_session_send_hello(s, s->lmtp ? "LHLO" : "EHLO");
}

/* One handshake step (the session may be freed). */
void smtp_session_tls_step(SmtpSession *s) {
        int r = tls_conn_handshake(s->tls);
        if (r == -EAGAIN) {
                if (s->io)
                        (void) sd_event_source_set_io_events(s->io, tls_conn_want_write(s->tls) ? EPOLLOUT : EPOLLIN);
                return;
        }
        if (r < 0) {
                smtp_session_tls_handshake_failed(s, tls_conn_error(s->tls));
                return;
        }
        tls_established(s);
}

void smtp_session_tls_start(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        SmtpTls *t = cfg(s)->tls;
        _cleanup_free_ char *sni = smtp_tls_sni(t, &d->tls, s->target.host, tls_nexthop(d));
        char cache_key[800];
        int r;

        /* RFC 7672 8.1: with DANE, SNI names the TLSA base domain (the MX host). */
        if (!sni && s->level == SMTP_TLS_DANE && !(sni = strdup(s->target.host))) {
                smtp_session_tls_failed(s, "4.3.0", "Cannot start TLS: out of memory");
                return;
        }

        /* Sessions are resumed only toward the same address, name and protocol settings. */
        snprintf(cache_key, sizeof(cache_key), "%s %s %s", s->relay, strempty(sni),
                 s->level >= SMTP_TLS_ENCRYPT ? "mandatory" : "opportunistic");
        TlsClient *cl = smtp_tls_client(t, &d->tls, s->level);
        if (!cl) {   /* reached in wrappermode (STARTTLS checks before it asks) */
                smtp_session_tls_failed(s, "4.7.5", "TLS is required, but our TLS engine is unavailable");
                return;
        }
        r = tls_conn_new_client(cl, s->fd, sni, cache_key, &s->tls);
        if (r < 0) {
                s->tls = NULL;
                smtp_session_tls_failed(s, "4.3.0", "Cannot start TLS: %s", strerror(-r));
                return;
        }
        if (smtp_tls_loglevel(t) >= 2)
                log_info("setting up TLS connection to %s%s%s", s->relay, sni ? " with SNI " : "", strempty(sni));
        s->state = ST_TLS;
        smtp_session_set_timer(s, smtp_tls_timeout(t), "performing the TLS handshake");
        smtp_session_tls_step(s);
}

/* After EHLO/HELO: STARTTLS when the policy wants TLS. True when it took the session over. */
bool smtp_session_tls_before_mail(SmtpSession *s) {
        if (s->tls)
                return false;
        if (s->level == SMTP_TLS_NONE) {
                if (s->starttls && smtp_tls_note_starttls_offer(cfg(s)->tls))
                        log_info("Host offered STARTTLS: [%s]", s->target.host);
                return false;
        }
        if (!smtp_tls_client(cfg(s)->tls, &s->d->tls, s->level)) {
                if (s->level == SMTP_TLS_MAY)
                        return false;
                smtp_session_tls_failed(s, "4.7.5", "TLS is required, but our TLS engine is unavailable");
                return true;
        }
        if (!s->starttls) {
                if (s->sts != STS_MODE_NONE)
                        smtp_sts_log_failure(s->d, s->relay, "STARTTLS not offered");
                tlsrpt_result(s, TLSRPT_STARTTLS_NOT_SUPPORTED);
                if (s->level == SMTP_TLS_MAY)
                        return false;
                smtp_session_tls_failed(s, "4.7.4", "TLS is required, but was not offered by host %s", s->relay);
                return true;
        }
        if (smtp_session_send_text(s, "STARTTLS\r\n", 10) < 0) {
                smtp_session_failed(s, "out of memory while sending STARTTLS");
                return true;
        }
        s->state = ST_STARTTLS;
        smtp_session_set_timer(s, cfg(s)->helo_timeout, "sending STARTTLS");
        if (smtp_session_flush(s) < 0)
                smtp_session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
        return true;
}

void smtp_session_starttls_reply(SmtpSession *s) {
        if (s->reply.code / 100 != 2) {
                if (s->level == SMTP_TLS_MAY) {
                        smtp_session_after_hello(s);   /* opportunistic: on in plaintext */
                        return;
                }
                char dsn[16];
                smtp_reply_dsn(&s->reply, dsn);
                dsn[0] = '4';
                smtp_session_tls_failed(s, dsn, "TLS is required, but host %s refused to start TLS: %s", s->relay, s->reply.text);
                return;
        }
        if (s->in.len > 0) {
                /* Plaintext behind the 220 would otherwise be read as if it came inside TLS. */
                log_info("host %s sent %zu bytes after its reply to STARTTLS; discarded", s->relay, s->in.len);
                strbuf_reset(&s->in);
        }
        smtp_session_tls_start(s);
}
