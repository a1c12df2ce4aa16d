/* smtp-session.c — one outbound SMTP or LMTP connection, driven by the event loop: its life.
 *
 * connect (non-blocking, smtp_connect_timeout) → greeting → EHLO (smtp-session-hello.c) →
 * [STARTTLS (smtp-session-tls.c)] → [AUTH (smtp-session-auth.c)] → the transaction
 * (smtp-session-txn.c); reads, writes and timers are smtp-session-io.c's (smtp-session.h lists
 * them all). This file creates sessions, picks the address to connect to, and ends a session for
 * its delivery: on to the next address, or the results. Timeouts and lost connections defer
 * with 4.4.2 and say what was going on.
 *
 * After a transaction the connection is kept (Smtp.idle) for the next delivery to the same next
 * hop, for at most smtp_connection_cache_time_limit idle, smtp_connection_reuse_time_limit since
 * it was opened and smtp_connection_reuse_count_limit transactions. A reused connection starts
 * with RSET; if it turns out dead before anything was recorded, the delivery is retried once on
 * a fresh connection.
 *
 * The smtp_* names above are those of the SMTP side; an LMTP session reads the same settings
 * from the lmtp_* twins, and a session for a master.cf transport reads that transport's variant
 * (cfg(): smtp_settings() by side and transport; smtp-settings.c). The cache key names the
 * transport, TLS level, MTA-STS mode and sender login, so a connection opened with one
 * transport's settings never carries another's mail. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/table-async.h"
#include "log/log.h"
#include "smtp-session.h"
#include "smtp-sts.h"
#include "tls/tlsrpt.h"

static void session_unlink_idle(SmtpSession *s) {
        for (SmtpSession **p = &s->smtp->idle; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        s->next = NULL;
}

void smtp_session_free(SmtpSession *s) {
        if (!s)
                return;
        session_unlink_idle(s);
        if (s->alive)
                *s->alive = false;
        if (s->d)
                s->d->session = NULL;
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->timer);
        tls_conn_free(s->tls);
        safe_close(s->fd);
        strbuf_done(&s->in);
        strbuf_done(&s->out);
        strbuf_done(&s->cmdtext);
        smtp_reply_reset(&s->reply);
        free(s->cmds);
        free(s->accepted);
        table_memo_drop(s->auth_memo);
        free(s->key);
        free(s->transport);
        free(s->auth_mechs);
        sasl_mech_client_free(s->sasl);
        s->smtp->n_sessions--;
        free(s);
}

void smtp_session_quit(SmtpSession *s) {
        /* Best effort, no waiting for the 221 (Postfix's smtp_skip_quit_response). */
        if (s->fd >= 0 && s->state != ST_CONNECT && s->out.len == 0) {
                if (!s->tls)
                        (void) !write(s->fd, "QUIT\r\n", 6);
                else if (s->tls_up) {
                        (void) tls_conn_write(s->tls, "QUIT\r\n", 6);
                        tls_conn_bye(s->tls);
                }
        }
        smtp_session_free(s);
}

/* --- results --- */

void smtp_session_said(SmtpSession *s, bool accepted_only, const char *in_reply_to) {
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        smtp_all_result(s->d, accepted_only, dsn, "host %s said: %s (in reply to %s)", s->relay,
                        s->reply.text, in_reply_to);
}

/* Whether another address may still be tried for d: one is left, and fewer than
 * smtp_mx_session_limit transactions were started (sessions that never got that far, refused
 * connections and greetings, do not count, as in Postfix). */
bool smtp_session_more_servers(const SmtpDelivery *d) {
        unsigned limit = smtp_settings(d->smtp, d->lmtp, d->transport)->mx_session_limit;
        return d->next_target < d->n_targets && (limit == 0 || d->sessions < limit);
}

/* The session is over for its delivery: finish it (when every recipient has a result) or move
 * on to the next address. */
void smtp_session_release(SmtpSession *s, bool try_next) {
        SmtpDelivery *d = s->d;
        if (!d)
                return;
        s->d = NULL;
        d->session = NULL;
        bool open = false, soft = false;
        for (size_t i = 0; i < d->n_rcpts; i++)
                if (!d->rcpts[i].done) {
                        open = true;
                        soft = soft || d->rcpts[i].soft;
                }
        /* Connection-level failures move on to the next address; soft (4xx) results of a
         * transaction do so too, within smtp_mx_session_limit. */
        if (open && (try_next || soft) && smtp_session_more_servers(d)) {
                smtp_session_start(d);
                return;
        }
        smtp_delivery_finish(d);   /* the last server's 4xx is final there */
}

/* The connection broke (timeout, lost, protocol error): defer what has no result, or retry a
 * reused connection once on a fresh one. */
void smtp_session_failed(SmtpSession *s, const char *fmt, ...) {
        SmtpDelivery *d = s->d;
        char diag[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);

        if (d && s->reused && !d->retried && !s->rset_ok && s->state == ST_TXN) {
                log_info("%s: cached connection to %s failed (%s); retrying on a new connection",
                         d->queue_id, s->relay, diag);
                d->retried = true;
                d->next_target = 0;
                s->d = NULL;
                d->session = NULL;
                smtp_session_free(s);
                smtp_session_start(d);
                return;
        }
        bool connect_phase = s->state == ST_CONNECT || s->state == ST_GREETING;
        if (d && s->state == ST_DOT)
                d->provisional = false;   /* the message went out: never again elsewhere */
        if (d && (!connect_phase || d->next_target >= d->n_targets))
                smtp_all_result(d, false, s->state == ST_CONNECT ? "4.4.1" : "4.4.2", "%s", diag);
        smtp_session_release(s, connect_phase);
        smtp_session_free(s);
}

bool smtp_session_reuse_allowed(const SmtpSession *s) {
        const SmtpSettings *st = cfg(s);
        if (st->reuse_count_limit > 0 && s->uses >= st->reuse_count_limit)
                return false;
        return now_usec(CLOCK_MONOTONIC) - s->created < st->reuse_time_limit;
}


/* The cache key: side, master.cf transport, next hop and TLS level (a plaintext connection must
 * not carry a delivery that requires TLS, nor a merely encrypted one a "verify" delivery). */
static int session_key(const SmtpDelivery *d, char **ret) {
        /* With sender-dependent logins, a connection is reused only for the same login name. */
        int login = d->sasl_sender ? (int) strcspn(d->sasl_sender, ":") : 0;
        /* ... and MTA-STS: a connection made without (or under another mode) carries none of its mail */
        if (asprintf(ret, "%s:%s:%s:%s:%s:%.*s", d->lmtp ? "lmtp" : "smtp", strempty(d->transport), d->nexthop,
                     smtp_tls_level_name(d->tls.level), d->sts ? sts_mode_name(d->sts->mode) : "-", login,
                     strempty(d->sasl_sender)) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int session_connect(SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel level, int sts, SmtpSession **ret) {
        Smtp *smtp = d->smtp;
        SmtpSession *s = calloc(1, sizeof(SmtpSession));
        int r;

        if (!s)
                return -ENOMEM;
        smtp->n_sessions++;
        s->smtp = smtp;
        s->fd = -1;
        s->target = *t;
        s->lmtp = d->lmtp;
        if (d->transport && !(s->transport = strdup(d->transport))) {
                smtp_session_free(s);
                return -ENOMEM;
        }
        s->created = now_usec(CLOCK_MONOTONIC);
        s->state = ST_CONNECT;
        smtp_target_relay(t, s->relay, sizeof(s->relay));
        s->level = level;   /* smtp_tls_target_level(): DANE, else MTA-STS, else the policy */
        s->sts = sts;
        if (sts == STS_MODE_TESTING && cfg(s)->sts_enforce_mx_patterns && !sts_policy_mx_allowed(d->sts, t->host)) {
                /* (smtp_sts_target() logged it; s->d is not set yet) */
                smtp_tlsrpt_session(d, t->host, t->addr, TLSRPT_VALIDATION_FAILURE);
                s->tlsrpt_done = true;
        }
        s->wrapper = smtp_tls_wrappermode(cfg(s)->tls);
        s->target_index = (size_t) (t - d->targets);
        if (session_key(d, &s->key) < 0) {
                s->key = NULL;
                smtp_session_free(s);
                return -ENOMEM;
        }
        s->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0) {
                r = -errno;
                smtp_session_free(s);
                return r;
        }
        if (t->sa.ss_family != AF_UNIX && !isempty(cfg(s)->bind_address)) {
                struct addrinfo hints = { .ai_family = t->sa.ss_family, .ai_socktype = SOCK_STREAM,
                                          .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
                struct addrinfo *res = NULL;
                if (getaddrinfo(cfg(s)->bind_address, NULL, &hints, &res) == 0 && res) {
                        if (bind(s->fd, res->ai_addr, res->ai_addrlen) < 0)
                                log_warning("%s_bind_address %s: cannot bind: %m", cfg(s)->prefix, cfg(s)->bind_address);
                        freeaddrinfo(res);
                }
        }
        r = sd_event_add_io(smtp->event, &s->io, s->fd, EPOLLOUT, smtp_session_on_io, s);
        if (r < 0) {
                smtp_session_free(s);
                return r;
        }
        *ret = s;
        if (connect(s->fd, (const struct sockaddr *) &t->sa, t->salen) < 0 && errno != EINPROGRESS) {
                /* Reported like any other connect failure, from the event loop's point of view. */
                r = errno;
                s->d = d;
                d->session = s;
                smtp_session_failed(s, "connect to %s: %s", s->relay, strerror(r));
                *ret = NULL;
                return 0;
        }
        if (cfg(s)->connect_timeout > 0)
                smtp_session_set_timer(s, cfg(s)->connect_timeout, "connecting");
        else
                s->phase = "connecting";   /* lmtp_connect_timeout = 0: the kernel's own limit */
        return 0;
}

/* Starts delivery d: reuses an idle connection to its next hop or connects to the next target. */
void smtp_session_start(SmtpDelivery *d) {
        d->provisional = false;   /* set again by the transaction (or EHLO) that may defer softly */
        Smtp *smtp = d->smtp;
        SmtpTls *tls = smtp_settings(smtp, d->lmtp, d->transport)->tls;
        _cleanup_free_ char *key = NULL;

        if (!d->tls_loaded) {
                const char *dsn = "4.3.0";
                char diag[700];
                /* the TLS policy and the sender's SASL password (smtp-lookup.c) */
                int r = smtp_lookup_start(d, tls_nexthop(d), smtp_session_start, &dsn, diag, sizeof(diag));
                if (r > 0)
                        return;   /* a server table's answer: back here when it is there */
                d->tls_loaded = true;
                if (r < 0) {
                        smtp_all_result(d, false, dsn, "%s", diag);
                        smtp_delivery_finish(d);
                        return;
                }
                /* SMTPS has no plaintext to fall back to. */
                if (smtp_tls_wrappermode(tls) && d->tls.level < SMTP_TLS_ENCRYPT)
                        d->tls.level = SMTP_TLS_ENCRYPT;
                /* The next hop's MTA-STS policy (smtp-sts.c): back here when it is known. */
                if (smtp_sts_lookup(d, smtp_session_start) > 0)
                        return;
        }
        if (!d->retried && d->next_target == 0 && session_key(d, &key) >= 0)
                for (SmtpSession *s = smtp->idle; s; s = s->next) {
                        if (!streq(s->key, key))
                                continue;
                        if (!smtp_session_reuse_allowed(s))
                                continue;
                        session_unlink_idle(s);
                        s->d = d;
                        d->session = s;
                        s->reused = true;
                        d->next_target = d->n_targets;   /* a failure here is final or retried */
                        if (s->tls_up && smtp_tls_loglevel(tls) >= 1)
                                smtp_session_log_tls(s, "reused");
                        smtp_session_transaction_start(s);
                        return;
                }

        char skipped[400] = "";
        while (d->next_target < d->n_targets) {
                SmtpSession *s = NULL;
                char why[600];
                int r = smtp_dane_target(d, &d->targets[d->next_target], smtp_session_start, why, sizeof(why));
                if (r == 0)
                        return;   /* a TLSA lookup: called again when it answers */
                const SmtpTarget *t = &d->targets[d->next_target++];
                if (r < 0) {
                        if (d->next_target >= d->n_targets) {
                                smtp_all_result(d, false, "4.7.5", "%s", why);
                                smtp_delivery_finish(d);
                                return;
                        }
                        log_info("%s: %s; trying the next address", d->queue_id, why);
                        continue;
                }
                SmtpTlsLevel level;
                int sts;
                if (!smtp_tls_target_level(d, t, &level, &sts, skipped, sizeof(skipped)))
                        continue;   /* logged; the reason is the result when no address is left */
                r = session_connect(d, t, level, sts, &s);
                if (r < 0) {
                        char relay[400];
                        smtp_target_relay(t, relay, sizeof(relay));
                        if (d->next_target >= d->n_targets) {
                                smtp_all_result(d, false, "4.4.1", "connect to %s: %s", relay, strerror(-r));
                                smtp_delivery_finish(d);
                                return;
                        }
                        continue;
                }
                if (s) {
                        s->d = d;
                        d->session = s;
                }
                return;   /* either connecting, or smtp_session_failed() moved on already */
        }
        if (skipped[0])
                smtp_all_result(d, false, "4.7.5", "%s", skipped);
        else
                smtp_all_result(d, false, "4.4.1", "no address to connect to for %s", d->nexthop);
        smtp_delivery_finish(d);
}

/* Detaches d from its session (which is closed). */
void smtp_session_abort(SmtpDelivery *d) {
        if (d->session) {
                d->session->d = NULL;
                smtp_session_free(d->session);
                d->session = NULL;
        }
}

/* Frees every cached connection (shutdown). */
void smtp_sessions_done(Smtp *smtp) {
        while (smtp->idle)
                smtp_session_quit(smtp->idle);
}
