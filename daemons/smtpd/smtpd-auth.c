/* smtpd-auth.c — SMTP AUTH (RFC 4954) through Dovecot's auth service (common/sasl).
 *
 * Each settings snapshot with smtpd_sasl_auth_enable = yes owns one connection to Dovecot
 * (smtpd_sasl_path), shared by all its sessions. AUTH asks Dovecot, waits (session_wait()),
 * relays Dovecot's base64 challenges as "334" replies and the client's responses back, and ends
 * with 235 (s->client.sasl_username/s->client.sasl_method set), 535, 454 (Dovecot unreachable or silent) or
 * 501 (cancel, bad base64). The EHLO AUTH line lists Dovecot's mechanisms minus those that
 * smtpd_sasl_security_options (smtpd_sasl_tls_security_options under TLS) exclude. With
 * smtpd_tls_auth_only (Postern default yes) AUTH is offered only under TLS: smtpd_auth_offered()
 * is the one place that decides. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "basic/base64.h"
#include "log/log.h"
#include "mail/xtext.h"

#define SASL_REQUEST_TIMEOUT_USEC (30 * USEC_PER_SEC)

struct SmtpdAuth {
        Session *session;
        SaslRequest *req;
        char *mech;
        bool lost;               /* Dovecot failed while the client owed a response: 454 then */
};

/* Whether the session is protected by TLS (STARTTLS done, or implicit TLS). */
static bool session_secured(Session *s) {
        return s->client.tls_active;
}

/* smtpd_sasl_security_options words, as mechanism properties to exclude or require. */
static int parse_security_options(const char *param, char **words, unsigned *ret_exclude,
                                  unsigned *ret_require) {
        static const struct { const char *word; unsigned flag; bool require; } t[] = {
                { "noanonymous", SASL_MECH_ANONYMOUS, false },
                { "noplaintext", SASL_MECH_PLAINTEXT, false },
                { "nodictionary", SASL_MECH_DICTIONARY, false },
                { "noactive", SASL_MECH_ACTIVE, false },
                { "mutual_auth", SASL_MECH_MUTUAL_AUTH, true },
                { "forward_secrecy", SASL_MECH_FORWARD_SECRECY, true },
        };
        unsigned ex = 0, req = 0;
        for (char **w = words; *w; w++) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(t); i++)
                        if (strcaseeq(*w, t[i].word))
                                break;
                if (i == ELEMENTSOF(t))
                        return log_error_errno(-EINVAL, "%s: unknown security option \"%s\"", param, *w);
                if (t[i].require)
                        req |= t[i].flag;
                else
                        ex |= t[i].flag;
        }
        *ret_exclude = ex;
        *ret_require = req;
        return 0;
}

static void on_sasl_state(SaslClient *c, int error, void *userdata) {
        if (error == 0) {
                size_t n;
                const SaslMech *m = sasl_client_mechs(c, &n);
                char list[512] = "";
                for (size_t i = 0, len = 0; i < n && len < sizeof(list); i++)
                        len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s", i ? " " : "", m[i].name);
                log_info("SASL: connected to %s, mechanisms: %s", sasl_client_path(c), list);
        } else if (error == -ECONNRESET || error == -EPIPE || error == -EPROTO)
                log_warning_errno(error, "SASL: Connection lost to authentication server %s: %m",
                                  sasl_client_path(c));
        else
                log_warning_errno(error, "SASL: Connect to %s failed: %m", sasl_client_path(c));
}

/* The switches, the response limit and the service name are rows of smtpd-settings.c. */
int smtpd_auth_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        int r;

        if (!s->sasl_enable)
                return 0;

        const char *type = strempty(conf_get_listener(c, listener, "smtpd_sasl_type"));
        if (!strcaseeq(type, "dovecot"))
                return log_error_errno(-EINVAL, "smtpd_sasl_type = %s: unsupported SASL type; Postern supports only dovecot",
                                       type);
        _cleanup_strv_free_ char **opts = conf_get_list(c, listener, "smtpd_sasl_security_options");
        _cleanup_strv_free_ char **tls_opts = conf_get_list(c, listener, "smtpd_sasl_tls_security_options");
        if (!opts || !tls_opts)
                return log_oom();
        if ((r = parse_security_options("smtpd_sasl_security_options", opts, &s->sasl_exclude,
                                        &s->sasl_require)) < 0 ||
            (r = parse_security_options("smtpd_sasl_tls_security_options", tls_opts, &s->sasl_tls_exclude,
                                        &s->sasl_tls_require)) < 0)
                return r;

        /* Like Postfix, a relative path names a socket below the queue directory. */
        const char *path = strempty(conf_get_listener(c, listener, "smtpd_sasl_path"));
        _cleanup_free_ char *abs = NULL;
        if (!*path)
                return log_error_errno(-EINVAL, "smtpd_sasl_path is empty");
        if (path[0] == '/')
                abs = strdup(path);
        else if (asprintf(&abs, "%s/%s", strempty(conf_get(c, "queue_directory")), path) < 0)
                abs = NULL;
        if (!abs)
                return log_oom();

        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        r = sd_event_default(&e);
        if (r < 0)
                return log_error_errno(r, "Failed to get the event loop: %m");
        r = sasl_client_new(e, abs, SASL_REQUEST_TIMEOUT_USEC, &s->sasl);
        if (r < 0)
                return log_oom();
        sasl_client_set_state_callback(s->sasl, on_sasl_state, NULL);
        /* Connect now so the mechanism list is known by the first EHLO; failures are logged
         * by the state callback and retried. */
        r = sasl_client_connect(s->sasl);
        if (r < 0)
                on_sasl_state(s->sasl, r, NULL);
        return 0;
}

void smtpd_auth_settings_done(SmtpdSettings *s) {
        s->sasl = sasl_client_free(s->sasl);
}

bool smtpd_auth_offered(Session *s) {
        return s->settings->sasl_enable && s->settings->sasl && s->listener->kind != LISTENER_SUBMIT &&
                (!s->settings->tls_auth_only || session_secured(s));
}

/* Whether the security options allow a mechanism in this session. */
static bool mech_allowed(Session *s, const SaslMech *m) {
        bool tls = session_secured(s);
        unsigned ex = tls ? s->settings->sasl_tls_exclude : s->settings->sasl_exclude;
        unsigned req = tls ? s->settings->sasl_tls_require : s->settings->sasl_require;
        return !(m->flags & SASL_MECH_PRIVATE) && !(m->flags & ex) && (m->flags & req) == req;
}

/* The mechanisms this session may use, space-separated, in list; returns its length (0: none:
 * no list from Dovecot yet, or all excluded). */
static size_t auth_mech_list(Session *s, char *list, size_t size) {
        size_t n, len = 0;
        const SaslMech *m = sasl_client_mechs(s->settings->sasl, &n);

        list[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                if (!mech_allowed(s, &m[i]) || len + strlen(m[i].name) + 2 >= size)
                        continue;
                len += (size_t) snprintf(list + len, size - len, "%s%s", len ? " " : "", m[i].name);
        }
        return len;
}

/* EHLO keyword table hooks (smtpd-command.c): "AUTH PLAIN LOGIN", and with
 * broken_sasl_auth_clients also "AUTH=PLAIN LOGIN". */
bool smtpd_auth_ehlo_offered(Session *s) {
        char list[SMTPD_EHLO_ARG_MAX];
        return smtpd_auth_offered(s) && auth_mech_list(s, list, sizeof(list)) > 0;
}

bool smtpd_auth_ehlo_broken_offered(Session *s) {
        return s->settings->broken_sasl_auth_clients && smtpd_auth_ehlo_offered(s);
}

void smtpd_auth_ehlo_arg(Session *s, char *buf, size_t n) {
        buf[0] = ' ';
        (void) auth_mech_list(s, buf + 1, n - 1);
}

void smtpd_auth_ehlo_broken_arg(Session *s, char *buf, size_t n) {
        (void) auth_mech_list(s, buf, n);
}

static void auth_free(SmtpdAuth *a) {
        if (!a)
                return;
        sasl_request_cancel(a->req);
        if (a->session && a->session->auth == a)
                a->session->auth = NULL;
        free(a->mech);
        free(a);
}

void smtpd_auth_session_done(Session *s) {
        auth_free(s->auth);
}

/* session_wait() cancel hook: the session is going away while Dovecot works. */
static void auth_cancel(void *userdata) {
        auth_free(userdata);
}

static void log_auth_failure(Session *s, const char *mech, const char *reason) {
        log_fields(LOG_WARNING, &(LogFields) { .client_address = s->client.addr[0] ? s->client.addr : NULL },
                   "%s: SASL %s authentication failed: %s", s->client.id_text, mech, reason);
        smtpd_metrics_sasl_failure();
}

/* Dovecot's user names and reasons go into logs, replies, Received: and the queue: keep them
 * printable and short. */
static char *printable_copy(const char *u) {
        char *c = strndup(strempty(u), 255);
        if (c)
                for (char *p = c; *p; p++)
                        if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                *p = '?';
        return c;
}

static void on_reply(SaslRequest *r, SaslStatus st, const char *text, void *userdata) {
        SmtpdAuth *a = userdata;
        Session *s = a->session;
        _cleanup_free_ char *why = st == SASL_STATUS_FAIL || st == SASL_STATUS_TEMPFAIL ?
                printable_copy(text) : NULL;
        if (why)
                text = why;

        if (!session_waiting(s)) {
                /* The connection to Dovecot broke while the client still owes its response to a
                 * 334: nothing may be said now; the response gets 454. */
                a->req = NULL;
                a->lost = true;
                log_auth_failure(s, a->mech, isempty(text) ? "authentication server failure" : text);
                return;
        }

        switch (st) {
        case SASL_STATUS_CONTINUE: {
                /* Challenges may be long (GSSAPI): written whole, not through session_reply()'s
                 * line buffer. Anything but base64 would break the reply framing. */
                a->req = r;
                if (!base64_valid(text) || strbuf_printf(&s->out, "334 %s\r\n", text) < 0) {
                        log_auth_failure(s, a->mech, "bad challenge from the authentication server");
                        session_reply(s, "454 4.7.0 Temporary authentication failure");
                        break;
                }
                s->last_code = 334;
                session_resume(s, SESSION_RESUME_INPUT);   /* the next input line is the client's response */
                return;
        }
        case SASL_STATUS_OK: {
                a->req = NULL;
                char *user = printable_copy(text);
                char *method = strdup(a->mech);
                if (!user || !method) {
                        free(user);
                        free(method);
                        session_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
                        break;
                }
                free(s->client.sasl_username);
                free(s->client.sasl_method);
                s->client.sasl_username = user;
                s->client.sasl_method = method;
                s->cmd_ok[CMD_AUTH]++;
                session_reply(s, "235 2.7.0 Authentication successful");
                break;
        }
        case SASL_STATUS_FAIL:
                a->req = NULL;
                text = isempty(text) ? "authentication failure" : text;
                log_auth_failure(s, a->mech, text);
                session_reply(s, "535 5.7.8 Error: authentication failed: %.200s", text);
                break;
        case SASL_STATUS_TEMPFAIL:
                a->req = NULL;
                text = isempty(text) ? "authentication server failure" : text;
                log_auth_failure(s, a->mech, text);
                session_reply(s, "454 4.7.0 Temporary authentication failure: %.200s", text);
                break;
        }
        auth_free(a);
        session_resume(s, SESSION_RESUME_INPUT);
}

/* Dovecot answered nothing yet (cannot be sent): a temporary failure, told at once. */
static void auth_send_failed(Session *s, SmtpdAuth *a, int error) {
        log_warning_errno(error, "%s: SASL %s authentication failed: cannot talk to %s: %m", s->client.id_text,
                          a->mech, sasl_client_path(s->settings->sasl));
        session_reply(s, "454 4.7.0 Temporary authentication failure");
        auth_free(a);
}

static bool auth_start(Session *s, char *arg);
static void auth_after_anvil(Session *s, bool allowed, void *userdata);

bool smtpd_auth_command(Session *s, char *arg) {
        if (!smtpd_auth_offered(s)) {
                session_reply(s, "503 5.5.1 Error: authentication not enabled");
                return false;
        }
        if (!s->client.helo) {
                session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
                return false;
        }
        if (s->client.sasl_username) {
                session_reply(s, "503 5.5.1 Error: already authenticated");
                return false;
        }
        if (s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
                return false;
        }
        /* smtpd_client_auth_rate_limit: postern-anvil counts the AUTH before any SASL step. */
        char *copy = strdup(arg);
        if (!copy) {
                session_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
                return false;
        }
        if (smtpd_anvil_check(s, ANVIL_EVENT_AUTH, auth_after_anvil, copy, free))
                return false;   /* goes on in auth_after_anvil() */
        free(copy);
        return auth_start(s, arg);
}

/* AUTH after postern-anvil counted it: refused with its 450 already replied, or on. */
static void auth_after_anvil(Session *s, bool allowed, void *userdata) {
        if (allowed)
                (void) auth_start(s, userdata);
        free(userdata);
}

/* The AUTH command once it may proceed: mechanism, initial response, the request to Dovecot. */
static bool auth_start(Session *s, char *arg) {
        const SaslMech *mech = NULL;
        int r;
        char *save = NULL;
        char *name = strtok_r(arg, " \t", &save);
        char *init = name ? strtok_r(NULL, " \t", &save) : NULL;
        if (!name || strtok_r(NULL, " \t", &save)) {
                session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
                return false;
        }
        size_t n;
        const SaslMech *m = sasl_client_mechs(s->settings->sasl, &n);
        if (n == 0) {
                /* Dovecot was never reached: nothing known to offer or check against. */
                log_warning("%s: SASL %s authentication failed: no mechanism list from %s", s->client.id_text,
                            name, sasl_client_path(s->settings->sasl));
                (void) sasl_client_connect(s->settings->sasl);
                session_reply(s, "454 4.7.0 Temporary authentication failure");
                return false;
        }
        for (size_t i = 0; i < n && !mech; i++)
                if (strcaseeq(m[i].name, name) && mech_allowed(s, &m[i]))
                        mech = &m[i];
        if (!mech) {
                session_reply(s, "504 5.5.4 Unsupported authentication mechanism");
                return false;
        }
        if (init && streq(init, "="))
                init = (char *) "";   /* RFC 4954: "=" is an empty initial response */
        else if (init && !base64_valid(init)) {
                session_reply(s, "501 5.5.2 Invalid base64 data in initial response");
                return false;
        }

        SmtpdAuth *a = calloc(1, sizeof(SmtpdAuth));
        if (!a || !(a->mech = strdup(mech->name))) {
                free(a);
                session_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
                return false;
        }
        a->session = s;
        char local[INET6_ADDRSTRLEN] = "";
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(s->fd, (struct sockaddr *) &ss, &sl) == 0) {
                if (ss.ss_family == AF_INET)
                        inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, local, sizeof(local));
                else if (ss.ss_family == AF_INET6)
                        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, local, sizeof(local));
        }
        r = sasl_client_auth(s->settings->sasl,
                             &(SaslAuthInfo) { .mech = a->mech, .service = s->settings->sasl_service,
                                               .local_ip = local[0] ? local : NULL,
                                               .remote_ip = s->client.family ? s->client.addr : NULL,
                                               .secured = session_secured(s), .initial_response = init },
                             on_reply, a, &a->req);
        if (r < 0) {
                auth_send_failed(s, a, r);
                return false;
        }
        s->auth = a;
        session_wait(s, auth_cancel, a);
        return false;   /* counted as ok when Dovecot says OK */
}

size_t smtpd_auth_line_limit(Session *s) {
        return MAX(s->settings->line_length_limit, s->settings->sasl_response_limit);
}

void smtpd_auth_line_too_long(Session *s) {
        SmtpdAuth *a = s->auth;
        log_auth_failure(s, a->mech, "response too long");
        session_reply(s, "500 5.5.6 Authentication exchange line is too long");
        auth_free(a);
}

void smtpd_auth_response(Session *s, char *line, size_t len) {
        SmtpdAuth *a = s->auth;
        int r;

        if (len == 1 && line[0] == '*') {
                session_reply(s, "501 5.7.0 Authentication aborted");
                auth_free(a);
                return;
        }
        if (a->lost) {
                session_reply(s, "454 4.7.0 Temporary authentication failure");
                auth_free(a);
                return;
        }
        if (strlen(line) != len || !base64_valid(line)) {
                session_reply(s, "501 5.5.2 Invalid base64 data in continued response");
                auth_free(a);
                return;
        }
        r = sasl_request_continue(a->req, line);
        if (r < 0) {
                auth_send_failed(s, a, r);
                return;
        }
        session_wait(s, auth_cancel, a);
}

bool smtpd_auth_mail_param(Session *s, const char *value) {
        if (!s->settings->sasl_enable || s->listener->kind == LISTENER_SUBMIT) {
                session_reply(s, "503 5.7.4 Error: authentication disabled");
                return false;
        }
        if (s->tx.auth_author) {
                session_reply(s, "503 5.5.4 Error: multiple AUTH= options");
                return false;
        }
        /* RFC 4954 section 5: "<>" or an xtext-encoded mailbox. The value is checked and kept
         * for the milters' {auth_author} (as Postfix does); it is not relayed onwards. */
        _cleanup_free_ char *decoded = NULL;
        size_t dlen = 0;
        if (streq(value, "<>"))
                decoded = strdup(value);
        else if (!*value || xtext_decode(value, strlen(value), &decoded, &dlen) < 0 || strlen(decoded) != dlen) {
                session_reply(s, "501 5.5.4 Syntax error in AUTH parameter");
                return false;
        }
        if (!decoded) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        s->tx.auth_author = TAKE_PTR(decoded);
        return true;
}
