/* smtpd-tls.c — TLS in postern-smtpd: the smtpd_tls_* settings of a snapshot, STARTTLS
 * (RFC 3207) and implicit TLS on the submissions listener (RFC 8314), the non-blocking handshake
 * inside the event loop (PHASE_TLS, bounded by smtpd_starttls_timeout), record I/O for
 * smtpd-session.c, and the log line and Received: clause that name version and cipher.
 *
 * After "220 2.0.0 Ready to start TLS" everything the client sent in plaintext behind STARTTLS
 * is discarded (CVE-2011-0411), and once the handshake completes the SMTP state is reset (HELO,
 * transaction, authentication) as RFC 3207 requires. The GnuTLS work is in common/tls.
 *
 * Client certificates (smtpd_tls_ask_ccert, _req_ccert, _CAfile, _CApath): the certificate a
 * client sent is kept with the session (SmtpdClient.ccert) for permit_tls_clientcerts,
 * permit_tls_all_clientcerts and check_ccert_access, the policy service, the milters and the
 * Received: header; the log line says Trusted, Untrusted or Anonymous as Postfix's does. */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "log/log.h"

static bool is_implicit(Session *s) {
        return smtpd_tls_implicit(s);
}

/* Whether TLS starts with the first byte: the submissions listener, or smtpd_tls_wrappermode. */
bool smtpd_tls_implicit(const Session *s) {
        return s->listener->kind == LISTENER_SUBMISSIONS || s->settings->tls_wrappermode;
}

/* The level, log level, Received: clause and timeout are rows of smtpd-settings.c. */
int smtpd_tls_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **chains = conf_get_list(c, listener, "smtpd_tls_chain_files");
        _cleanup_free_ char *why = NULL, *sni = NULL, *warning = NULL;
        unsigned set;
        int r;

        if (!chains || conf_get_joined(c, listener, "tls_server_sni_maps", &sni) < 0)
                return log_oom();

        /* Postfix's obsolete smtpd_enforce_tls (encrypt) and smtpd_use_tls (may) count only when
         * smtpd_tls_security_level is set neither for the listener nor in main.cf. */
        int explicit_level = conf_is_explicit(c, listener, "smtpd_tls_security_level");
        if (explicit_level < 0)
                return log_oom();
        if (!explicit_level && conf_get_bool(c, listener, "smtpd_enforce_tls"))
                s->tls_level = TLS_LEVEL_ENCRYPT;
        else if (!explicit_level && conf_get_bool(c, listener, "smtpd_use_tls"))
                s->tls_level = TLS_LEVEL_MAY;

        /* Mandatory TLS (encrypt) uses the mandatory protocol and cipher lists, as in Postfix. */
        bool mandatory = s->tls_level == TLS_LEVEL_ENCRYPT;
        const char *pname = mandatory ? "smtpd_tls_mandatory_protocols" : "smtpd_tls_protocols";
        const char *cname = mandatory ? "smtpd_tls_mandatory_ciphers" : "smtpd_tls_ciphers";
        const char *protocols = conf_get_listener(c, listener, pname);
        const char *grade = conf_get_listener(c, listener, cname);
        r = tls_protocols_parse(protocols, &set, &why);
        if (r < 0)
                return log_error_errno(r, "%s = %s: %s", pname, strempty(protocols), why ? why : "out of memory");

        tls_cipherlists_conf(c, listener, s->listener);
        /* *_exclude_ciphers: both lists at level encrypt, the first one otherwise (Postfix) */
        static const char *const exclude[] = { "smtpd_tls_exclude_ciphers", NULL },
                          *const exclude_mandatory[] = { "smtpd_tls_exclude_ciphers", "smtpd_tls_mandatory_exclude_ciphers", NULL };
        _cleanup_free_ char *removals = tls_exclude_ciphers_conf(c, listener, mandatory ? exclude_mandatory : exclude,
                                                                 s->listener);
        if (!removals)
                return log_oom();
        const char *cert = conf_get_listener(c, listener, "smtpd_tls_cert_file");
        bool configured = !isempty(cert) || chains[0];
        /* Credentials are loaded whenever some are configured, even at level none: the
         * submissions listener may share this snapshot and always needs them. */
        if (!configured) {
                if (s->tls_level != TLS_LEVEL_NONE)
                        log_warning("%s: smtpd_tls_security_level = %s but neither smtpd_tls_chain_files nor "
                                    "smtpd_tls_cert_file is set: TLS not available", s->listener,
                                    strempty(conf_get_listener(c, listener, "smtpd_tls_security_level")));
                return 0;
        }
        s->tls_req_ccert = conf_get_bool(c, listener, "smtpd_tls_req_ccert");
        if (s->tls_req_ccert && s->tls_level != TLS_LEVEL_ENCRYPT) {
                log_warning("%s: smtpd_tls_req_ccert = yes needs smtpd_tls_security_level = encrypt; ignored",
                            s->listener);
                s->tls_req_ccert = false;
        }
        s->tls_ask_ccert = s->tls_req_ccert || conf_get_bool(c, listener, "smtpd_tls_ask_ccert");
        const char *digest = conf_get_listener(c, listener, "smtpd_tls_fingerprint_digest");
        s->tls_fingerprint_digest = tls_fingerprint_digest(digest);
        if (s->tls_fingerprint_digest < 0)
                return log_error_errno(-EINVAL, "smtpd_tls_fingerprint_digest = %s: unknown digest", strempty(digest));
        r = conf_get_table_list(c, listener, "relay_clientcerts", 0, &s->relay_clientcerts, &why);
        if (r < 0)
                return log_error_errno(r, "relay_clientcerts: %s", why ? why : "cannot open table");
        TlsServerConfig cfg = {
                .ca_file = conf_get_listener(c, listener, "smtpd_tls_CAfile"),
                .ca_path = conf_get_listener(c, listener, "smtpd_tls_CApath"),
                .ask_ccert = s->tls_ask_ccert,
                .cert_file = cert,
                .key_file = conf_get_listener(c, listener, "smtpd_tls_key_file"),
                .chain_files = chains,
                .protocols = protocols,
                .grade = grade && strcaseeq(grade, "high") ? TLS_GRADE_HIGH : TLS_GRADE_MEDIUM,
                .sni_maps = sni,
                .server_precedence = conf_get_bool(c, listener, "tls_preempt_cipherlist"),
                .cipher_removals = removals,
                .dh_param_file = conf_get_listener(c, listener, "smtpd_tls_dh1024_param_file"),
                .warning = &warning,
                .options = tls_ssl_options_conf(c, listener, s->listener),
        };
        r = tls_server_new(&cfg, &s->tls, &why);
        if (r < 0)
                /* Like Postfix: a key or certificate problem disables TLS (STARTTLS answers 454)
                 * instead of stopping all mail. */
                log_error_errno(r, "%s: cannot load TLS credentials: %s; TLS not available", s->listener,
                                why ? why : "out of memory");
        if (warning)
                log_warning("%s: smtpd_tls_dh1024_param_file: %s", s->listener, warning);
        return 0;
}

bool smtpd_tls_offer(Session *s) {
        return s->settings->tls && s->settings->tls_level != TLS_LEVEL_NONE && !s->client.tls &&
                s->listener->kind != LISTENER_SUBMIT;
}

bool smtpd_tls_required(Session *s) {
        if (s->settings->tls_level != TLS_LEVEL_ENCRYPT || s->client.tls_active || s->listener->kind == LISTENER_SUBMIT)
                return false;
        session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        return true;
}

static void starttls_after_anvil(Session *s, bool allowed, void *userdata);
static void starttls_go(Session *s);

bool smtpd_tls_starttls(Session *s, char *arg) {
        while (*arg == ' ' || *arg == '\t')
                arg++;
        if (*arg) {
                session_reply(s, "501 5.5.4 Syntax: STARTTLS");
                return false;
        }
        if (s->client.tls) {
                session_reply(s, "554 5.5.1 Error: TLS already active");
                return false;
        }
        if (s->settings->tls_level == TLS_LEVEL_NONE || s->listener->kind == LISTENER_SUBMIT ||
            (command_ehlo_discard(s) & EHLO_STARTTLS)) {
                session_reply(s, "502 5.5.1 Error: command not implemented");
                return false;
        }
        if (!s->settings->tls) {
                session_reply(s, "454 4.7.0 TLS not available due to local problem");
                return false;
        }
        if (s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
                return false;
        }
        /* smtpd_client_new_tls_session_rate_limit: ask postern-anvil before the handshake; over
         * the limit it answers 454 4.7.0 and the session goes on without TLS. */
        if (smtpd_anvil_check(s, ANVIL_EVENT_NEWTLS_STATUS, starttls_after_anvil, NULL, NULL))
                return false;
        starttls_go(s);
        return true;
}

static void starttls_after_anvil(Session *s, bool allowed, void *userdata) {
        if (allowed) {
                s->cmd_ok[CMD_STARTTLS]++;
                starttls_go(s);
        }
}

static void starttls_go(Session *s) {
        session_reply(s, "220 2.0.0 Ready to start TLS");
        if (s->in.len > 0) {
                /* Commands pipelined behind STARTTLS were sent in plaintext: never run them
                 * inside TLS (CVE-2011-0411). */
                log_info("improper command pipelining after STARTTLS from %s", s->client.id_text);
                strbuf_done(&s->in);
        }
        s->skip_line = false;
        session_enter_tls(s);  /* session_flush() calls smtpd_tls_start() once the 220 is out */
}

static void set_timer(Session *s, usec_t usec) {
        (void) sd_event_source_set_time_relative(s->timer, usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static void tls_after_anvil(Session *s, bool allowed, void *userdata);

/* The certificate the client sent, if any, into s->client.ccert (logged at smtpd_tls_loglevel 2). */
static void client_certificate(Session *s) {
        TlsPeerCert *cc = calloc(1, sizeof(TlsPeerCert));
        if (!cc) {
                log_oom();
                return;
        }
        int r = tls_conn_peer_cert(s->client.tls, s->settings->tls_fingerprint_digest, cc);
        if (r < 0)
                log_warning_errno(r, "%s: cannot read the client certificate: %m", s->client.id_text);
        if (!cc->present) {
                free(cc);
                return;
        }
        free(s->client.ccert);
        s->client.ccert = cc;
        if (s->settings->tls_loglevel >= 2)
                log_info("%s: client certificate subject CN=\"%s\", issuer CN=\"%s\", %s, fingerprint %s, "
                         "pkey_fingerprint %s", s->client.id_text, cc->subject, cc->issuer,
                         cc->trusted ? "verified" : "not verified", cc->fingerprint, cc->pkey_fingerprint);
}

static void tls_established(Session *s) {
        s->client.tls_active = true;
        s->client.tls_new_session = !tls_conn_resumed(s->client.tls);
        smtpd_metrics_tls(tls_conn_protocol(s->client.tls), tls_conn_cipher(s->client.tls));
        if (s->settings->tls_loglevel >= 2 && !s->client.tls_new_session)
                log_info("%s: reusing TLS session (resumed from a ticket)", s->client.id_text);
        if (s->settings->tls_ask_ccert)
                client_certificate(s);
        const TlsPeerCert *cc = s->client.ccert;
        if (s->settings->tls_loglevel >= 1) {
                int bits = tls_conn_cipher_bits(s->client.tls);
                log_fields(LOG_INFO, &(LogFields) { .client_address = s->client.addr[0] ? s->client.addr : NULL },
                           "%s TLS connection established from %s: %s with cipher %s (%d/%d bits)",
                           !cc ? "Anonymous" : cc->trusted ? "Trusted" : "Untrusted",
                           s->client.id_text, tls_conn_protocol(s->client.tls), tls_conn_cipher(s->client.tls), bits, bits);
        }
        if (s->settings->tls_req_ccert && !(cc && cc->trusted)) {
                /* as Postfix: the handshake completes, the SMTP session does not */
                const char *why = cc ? "Client certificate not trusted" : "No client certificate presented";
                log_info("NOQUEUE: abort: TLS from %s: %s", s->client.id_text, why);
                session_enter_command(s);
                session_reply(s, "421 4.7.1 %s Error: %s", s->settings->myhostname, why);
                session_close_after_flush(s);
                return;
        }

        /* RFC 3207 4.2: forget everything learned from the client before TLS. */
        free(s->client.helo);
        s->client.helo = NULL;
        free(s->client.sasl_username);
        s->client.sasl_username = NULL;
        free(s->client.sasl_method);
        s->client.sasl_method = NULL;
        s->client.esmtp = false;
        smtpd_transaction_reset(&s->tx);

        if (s->screen) {   /* STARTTLS in the screening stage's engine: its tests go on */
                smtpd_screen_tls_established(s);
                return;
        }
        session_enter_command(s);
        set_timer(s, s->settings->timeout_usec);
        /* smtpd_client_new_tls_session_rate_limit counts full handshakes (not resumptions):
         * over the limit anvil answers 421 4.7.0 and the session closes. */
        if (s->client.tls_new_session && smtpd_anvil_check(s, ANVIL_EVENT_NEWTLS, tls_after_anvil, NULL, NULL))
                return;
        tls_after_anvil(s, true, NULL);
}

static void tls_after_anvil(Session *s, bool allowed, void *userdata) {
        if (allowed && is_implicit(s))
                command_greet(s);   /* the 220, or the connect restrictions' refusal */
}

/* One handshake step; false when the session was freed. */
static bool tls_step(Session *s) {
        int r = tls_conn_handshake(s->client.tls);
        if (r == -EAGAIN) {
                (void) sd_event_source_set_io_events(s->io, tls_conn_want_write(s->client.tls) ? EPOLLOUT : EPOLLIN);
                return true;
        }
        if (r < 0) {
                log_info("SSL_accept error from %s: %s", s->client.id_text, tls_conn_error(s->client.tls));
                log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
                session_free(s);
                return false;
        }
        tls_established(s);
        return session_flush(s);
}

/* Called by session_flush() when PHASE_TLS has no TLS session yet; false when freed. */
bool smtpd_tls_start(Session *s) {
        int r;

        if (!s->settings->tls) {
                /* Only the submissions listener gets here without credentials. */
                log_warning("%s: TLS not available (no usable certificate), closing connection from %s",
                            s->listener->name, s->client.id_text);
                session_free(s);
                return false;
        }
        r = tls_conn_new_server(s->settings->tls, s->fd, &s->client.tls);
        if (r < 0) {
                log_warning_errno(r, "Cannot start TLS for %s: %m", s->client.id_text);
                session_free(s);
                return false;
        }
        if (s->settings->tls_loglevel >= 2)
                log_info("setting up TLS connection from %s", s->client.id_text);
        set_timer(s, s->settings->starttls_timeout_usec);
        return tls_step(s);
}

void smtpd_tls_on_io(Session *s) {
        if (s->client.tls)
                (void) tls_step(s);
}

void smtpd_tls_timeout(Session *s) {
        log_info("SSL_accept error from %s: handshake timeout", s->client.id_text);
        log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
        session_free(s);
}

ssize_t smtpd_io_read(Session *s, void *buf, size_t n) {
        if (s->client.tls) {
                if (!s->client.tls_active)
                        return -EAGAIN;
                return tls_conn_read(s->client.tls, buf, n);
        }
        ssize_t r = read(s->fd, buf, n);
        return r < 0 ? -errno : r;
}

ssize_t smtpd_io_write(Session *s, const void *buf, size_t n) {
        if (s->client.tls) {
                if (!s->client.tls_active)
                        return -EPIPE;   /* nothing plaintext may follow a started handshake */
                return tls_conn_write(s->client.tls, buf, n);
        }
        ssize_t r = write(s->fd, buf, n);
        return r < 0 ? -errno : r;
}

int smtpd_tls_received_clause(Session *s, StrBuf *b) {
        if (!s->client.tls_active || !s->settings->tls_received_header)
                return 0;
        int bits = tls_conn_cipher_bits(s->client.tls);
        const TlsPeerCert *cc = s->client.ccert;
        int r = strbuf_printf(b, "\n\t(using %s with cipher %s (%d/%d bits))", tls_conn_protocol(s->client.tls),
                              tls_conn_cipher(s->client.tls), bits, bits);
        if (r < 0)
                return r;
        /* the client certificate clause Postfix writes */
        if (!s->settings->tls_ask_ccert)
                return strbuf_printf(b, "\n\t(No client certificate requested)");
        if (!cc)
                return strbuf_printf(b, "\n\t(Client did not present a certificate)");
        return strbuf_printf(b, "\n\t(Client CN \"%s\", Issuer \"%s\" (%s))", cc->subject, cc->issuer,
                             cc->trusted ? "verified OK" : "not verified");
}

int smtpd_tls_clientcert_permitted(Session *s, bool all) {
        const TlsPeerCert *cc = s->client.ccert;
        if (!cc)
                return 0;
        /* any certificate whose chain verifies; a listed fingerprint needs no trusted issuer */
        if (all)
                return cc->trusted;
        if (!s->settings->relay_clientcerts)
                return 0;
        const char *keys[] = { cc->fingerprint, cc->pkey_fingerprint };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_free_ char *v = NULL;
                int r = table_list_lookup(s->settings->relay_clientcerts, keys[i], &v);
                if (r < 0) {
                        log_warning_errno(r, "relay_clientcerts: lookup of %s failed: %m", keys[i]);
                        return r;
                }
                if (r > 0)
                        return 1;
        }
        return 0;
}
