/* smtp-session-auth.c — SMTP AUTH as a client in a session (smtp_sasl_auth_enable; settings,
 * password lookup and mechanism choice in smtp-sasl.c, the mechanisms in
 * common/sasl/sasl-mech-client.c).
 *
 * After the EHLO that counts (inside TLS when TLS was started), when the server offers AUTH and
 * smtp_sasl_password_maps has a username:password for the sender, the server's host name or the
 * next hop, AUTH runs (ST_AUTH) with the strongest mechanism the security options allow
 * (SCRAM-SHA-256-PLUS with the TLS session's channel binding); a failure defers (or bounces,
 * with smtp_sasl_auth_soft_bounce = no) every recipient with "SASL authentication failed; ..."
 * and closes the connection. A cached connection stays logged in; with
 * smtp_sender_dependent_authentication the cache key carries the sender's login name.
 *
 * The password lookup for the server (its host name, then the next hop) runs inside the session's
 * TableMemo (common/conf/table-async.h): a key in a server table (pgsql:, mysql:, ldap:,
 * socketmap:, tcp:) that the memo does not have goes to the lookup workers, the session sets
 * itself aside (no thread waits; its timer still runs) and smtp_session_after_hello() runs again
 * when the answers are there. Other deliveries go on meanwhile. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/table-async.h"
#include "log/log.h"
#include "smtp-session.h"

/* The login failed or cannot happen here: every recipient gets the result (soft while another
 * server may be tried), the connection closes. */
static void auth_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) _printf_(3, 4);
static void auth_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) {
        char diag[1200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag, sizeof(diag), fmt, ap);
        va_end(ap);
        snprintf(s->d->relay, sizeof(s->d->relay), "%s", s->relay);   /* the server that refused */
        s->d->provisional = smtp_session_more_servers(s->d);
        smtp_all_result(s->d, false, dsn, "%s", diag);
        smtp_session_release(s, false);
        smtp_session_quit(s);
}

static void auth_send(SmtpSession *s, const char *line) {
        if (smtp_session_send_text(s, line, strlen(line)) < 0 || smtp_session_send_text(s, "\r\n", 2) < 0) {
                smtp_session_failed(s, "out of memory while performing SASL authentication");
                return;
        }
        smtp_session_set_timer(s, cfg(s)->helo_timeout, "performing SASL authentication");
        if (smtp_session_flush(s) < 0)
                smtp_session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
}

static bool auth_before_mail(SmtpSession *s);

static void on_auth_answers(void *userdata) {
        smtp_session_after_hello(userdata);
}

/* The password for this server into *ret_value (r as smtp_sasl_lookup_server()), or -EINPROGRESS
 * when the session was set aside for a server table's answer. */
static int auth_lookup(SmtpSession *s, char **ret_value, char *diag, size_t size) {
        SmtpSasl *a = cfg(s)->sasl;
        if (!s->auth_memo && !(s->auth_memo = table_memo_new()))   /* no memory: on the loop */
                return smtp_sasl_lookup_server(a, s->target.host, s->d->nexthop, ret_value, diag, size);
        for (;;) {
                table_memo_begin(s->auth_memo, true);
                int r = smtp_sasl_lookup_server(a, s->target.host, s->d->nexthop, ret_value, diag, size);
                if (!table_memo_end(s->auth_memo)) {
                        table_memo_clear(s->auth_memo);   /* nothing kept for a later delivery */
                        return r;
                }
                /* a guess: wait for the answers, or they came at once (failed): run again */
                if (*ret_value)
                        explicit_bzero(*ret_value, strlen(*ret_value));
                free(*ret_value);
                *ret_value = NULL;
                if (table_memo_wait(s->auth_memo, on_auth_answers, s))
                        return -EINPROGRESS;
        }
}

/* After the EHLO that counts: AUTH when configured, offered and a password is known. True when
 * it took the session over. */
static bool auth_before_mail(SmtpSession *s) {
        SmtpSasl *a = cfg(s)->sasl;
        SmtpDelivery *d = s->d;
        _cleanup_free_ char *value = NULL, *ir = NULL, *line = NULL;
        char diag[700], why[600];
        int r;

        if (!a || s->authenticated || !s->auth_mechs)
                return false;
        if (d->sasl_sender)
                value = strdup(d->sasl_sender);
        else if ((r = auth_lookup(s, &value, diag, sizeof(diag))) == -EINPROGRESS)
                return true;
        else if (r < 0) {
                auth_failed(s, "4.3.0", "%s", diag);
                return true;
        } else if (r == 0)
                return false;   /* no login for this server: on without one, as Postfix */
        if (!value) {
                smtp_session_failed(s, "out of memory while performing SASL authentication");
                return true;
        }
        const char *cb_type = NULL;
        _cleanup_free_ unsigned char *cb = NULL;
        size_t cb_len = 0;
        bool have_cb = s->tls_up && tls_conn_channel_binding(s->tls, &cb_type, &cb, &cb_len) >= 0;
        const char *mech = smtp_sasl_choose(a, s->auth_mechs, s->tls_up, have_cb, why, sizeof(why));
        if (!mech) {
                explicit_bzero(value, strlen(value));
                auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s: no mechanism "
                            "available (%s)", s->relay, why);
                return true;
        }
        /* "username:password": the password may hold ':' (split at the first one). */
        char *colon = strchr(value, ':');
        if (colon)
                *colon = '\0';
        r = sasl_mech_client_new(mech, value, colon ? colon + 1 : "", &s->sasl);
        explicit_bzero(value, strlen(value) + (colon ? strlen(colon + 1) + 1 : 0));
        if (r >= 0 && have_cb && smtp_sasl_wants_channel_binding(s->auth_mechs, mech))
                r = sasl_mech_client_set_channel_binding(s->sasl, cb_type, cb, cb_len);
        if (r >= 0)
                r = sasl_mech_client_start(s->sasl, &ir);
        if (r < 0) {
                auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with %s: %s",
                            s->relay, mech, r == -EINVAL ? "the username or password cannot be sent" : strerror(-r));
                return true;
        }
        unsigned props = 0;
        (void) sasl_mech_client_known(mech, &props);
        if (!s->tls_up && (props & SASL_PROP_PLAINTEXT))
                log_warning("%s: sending a %s password to %s without TLS (%s_sasl_security_options allows plaintext "
                            "mechanisms)", d->queue_id, mech, s->relay, cfg(s)->prefix);
        if (asprintf(&line, "AUTH %s%s%s", mech, ir ? " " : "", ir ? (*ir ? ir : "=") : "") < 0) {
                line = NULL;
                smtp_session_failed(s, "out of memory while performing SASL authentication");
                return true;
        }
        s->state = ST_AUTH;
        auth_send(s, line);
        explicit_bzero(line, strlen(line));
        return true;
}

void smtp_session_auth_reply(SmtpSession *s) {
        const char *mech = sasl_mech_client_name(s->sasl);
        if (s->reply.code == 334) {
                _cleanup_free_ char *resp = NULL;
                const char *challenge = s->reply.n_lines > 0 ? s->reply.lines[0] : s->reply.first_line;
                int r = sasl_mech_client_step(s->sasl, challenge, &resp);
                if (r < 0) {
                        /* End the exchange; the server's reply to "*" does not matter. */
                        auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with "
                                    "%s: %s", s->relay, mech, r == -EPERM ? "the server failed to prove it knows the "
                                    "password (wrong SCRAM server signature)" : "the server sent an invalid challenge");
                        return;
                }
                auth_send(s, resp);
                explicit_bzero(resp, strlen(resp));
                return;
        }
        if (s->reply.code / 100 == 2) {
                if (!sasl_mech_client_verified(s->sasl)) {
                        auth_failed(s, "4.7.0", "SASL authentication failed; cannot authenticate to server %s with %s: "
                                    "the server did not prove it knows the password", s->relay, mech);
                        return;
                }
                s->authenticated = true;
                s->sasl = sasl_mech_client_free(s->sasl);
                log_info("%s: SASL authentication to %s with %s succeeded", s->d->queue_id, s->relay, mech);
                smtp_session_transaction_start(s);
                return;
        }
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        if (dsn[0] == '5' && smtp_sasl_soft_bounce(cfg(s)->sasl))
                dsn[0] = '4';
        auth_failed(s, dsn, "SASL authentication failed; server %s said: %s", s->relay, s->reply.text);
}

/* After the EHLO/HELO that counts (and STARTTLS, if any): AUTH, then the transaction. */
void smtp_session_after_hello(SmtpSession *s) {
        if (auth_before_mail(s))
                return;
        smtp_session_transaction_start(s);
}
