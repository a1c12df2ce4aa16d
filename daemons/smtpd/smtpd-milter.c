/* smtpd-milter.c — the milter client: smtpd_milters (SMTP listeners) and non_smtpd_milters (the
 * submit socket), Sendmail's milter protocol version 6 (common/milter holds the codec).
 *
 * Each session opens one non-blocking connection per milter at its connect stage (negotiation
 * included) and keeps it until the session ends. A stage (connect, HELO, MAIL, RCPT, DATA, an
 * unknown command, end of message with the headers, end of headers and body chunks before it)
 * asks the milters one after the other: its packets are sent one at a time, each awaited unless
 * the milter negotiated not to answer it (NR_*), and steps the milter does not want (NO*) are not
 * sent at all. The session waits (session_wait()) meanwhile; nothing blocks the event loop.
 *
 * Outcomes: continue; accept (this milter is skipped for the rest of the transaction, or of the
 * session at connect/HELO); reject, tempfail and replycode become the stage's reply (at RCPT only
 * that recipient is refused), logged "milter-reject: RCPT from host[addr]: 550 5.7.1 ...;
 * from=<> to=<> proto=ESMTP helo=<>"; discard (the message is answered 250 and dropped,
 * "milter-discard"); quarantine (the message is held, "milter-hold"); the edits of the end of
 * message go to smtpd-milter-edit.c. A milter that cannot be reached, times out
 * (milter_connect_timeout, milter_command_timeout, milter_content_timeout, or a milter's own) or
 * breaks the protocol is logged with what was wrong, closed, and its default_action
 * (milter_default_action) applies now and at every later stage of the session: accept (go on
 * without it), reject (550 5.7.1), tempfail (451 4.7.1), quarantine (hold every message),
 * shutdown (421 and disconnect). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtpd.h"
#include "basic/socket-util.h"
#include "conf/conf-fields.h"
#include "log/log.h"

typedef enum ConnState {
        CONN_NEW,          /* not opened yet */
        CONN_CONNECTING,   /* connect() in progress */
        CONN_NEGOTIATING,  /* OPTNEG sent */
        CONN_READY,
        CONN_FAILED,       /* closed after an error: its default action applies at every stage */
        CONN_DONE,         /* accepted the session (or failed with default accept): not asked again */
} ConnState;

/* The packets of a stage are kept in a buffer reused by the next stage, up to this size. */
#define STEPS_BUF_KEEP (128 * 1024)

typedef struct Step {
        size_t off, len;
        char cmd;
        bool await;
        bool content;            /* body or end of message: milter_content_timeout */
} Step;

typedef struct SmtpdMilters SmtpdMilters;

typedef struct MilterConn {
        SmtpdMilters *owner;
        const MilterSpec *spec;
        int default_action;
        usec_t connect_usec, command_usec, content_usec;
        int fd;
        sd_event_source *io, *timer;
        ConnState state;
        StrBuf out, in;
        size_t out_off;
        uint32_t version, actions, protocol;
        char **symlist[_MILTER_M_MAX];   /* the milter's own macro requests, or NULL */
        bool skip_tx;            /* accepted the current transaction */
        bool in_tx;              /* MAIL was sent: ABORT when the transaction ends early */
        /* the current stage's packets (the storage is kept from stage to stage) */
        StrBuf steps_buf;
        Step *steps;
        size_t n_steps, step, cap_steps;
        bool awaiting;
} MilterConn;

struct SmtpdMilters {
        Session *session;
        MilterConn *v;
        size_t n;
        MilterSpec *own;         /* specs from smtpd_milter_maps (else the settings' are borrowed) */
        size_t n_own;
        MilterEdits edits;
        bool hold_session;       /* quarantine at connect/HELO: every message is held */
        bool discard_session;
        /* the stage in progress */
        bool running, waiting;
        SmtpdMilterStage stage;
        char *arg;
        SmtpdMilterDone done;
        size_t cur;
        char *reply;             /* the stage's refusal, or NULL */
        bool shutdown;           /* reply is a 421: close after it */
        sd_event_source *finish; /* the stage ends from the loop, never inside a conn's handler */
};

static const char *const stage_names[] = {
        [MILTER_STAGE_CONNECT] = "connect", [MILTER_STAGE_HELO] = "helo", [MILTER_STAGE_MAIL] = "mail",
        [MILTER_STAGE_RCPT] = "rcpt", [MILTER_STAGE_DATA] = "data", [MILTER_STAGE_UNKNOWN] = "unknown",
        [MILTER_STAGE_EOM] = "end-of-message",
};

static CheckStage check_stage(SmtpdMilterStage st) {
        switch (st) {
        case MILTER_STAGE_CONNECT: return STAGE_CONNECT;
        case MILTER_STAGE_HELO: return STAGE_HELO;
        case MILTER_STAGE_MAIL: return STAGE_MAIL;
        case MILTER_STAGE_RCPT: return STAGE_RCPT;
        case MILTER_STAGE_DATA: case MILTER_STAGE_UNKNOWN: return STAGE_DATA;
        case MILTER_STAGE_EOM: return STAGE_EOD;
        }
        return STAGE_EOD;
}

/* ---- settings ---- */

static int specs_parse(const char *param, char **entries, MilterSpec **ret, size_t *ret_n) {
        size_t n = 0;
        for (char **e = entries; e && *e; e++)
                n++;
        MilterSpec *v = calloc(n + 1, sizeof(MilterSpec));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *reason = NULL;
                int r = milter_spec_parse(entries[i], &v[i], &reason);
                if (r < 0) {
                        if (reason)
                                log_error("%s: %s", param, reason);
                        for (size_t k = 0; k < i; k++)
                                milter_spec_done(&v[k]);
                        free(v);
                        return r;
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* inet:name:port with a host name: resolved once here (a blocking lookup at start and reload,
 * as Postfix's milter client does per connection), so that sessions connect without a lookup. A
 * name that does not resolve is logged; the milter then fails at each session (default_action). */
static void specs_resolve(const char *param, MilterSpec *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                struct in6_addr a6;
                struct in_addr a4;
                MilterSpec *sp = &v[i];
                if (sp->unix_socket || streq(sp->host, "localhost") || inet_pton(AF_INET, sp->host, &a4) == 1 ||
                    inet_pton(AF_INET6, sp->host, &a6) == 1)
                        continue;
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
                int r = getaddrinfo(sp->host, NULL, &hints, &res);
                char buf[INET6_ADDRSTRLEN] = "";
                if (r == 0 && res)
                        (void) getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf, NULL, 0, NI_NUMERICHOST);
                if (res)
                        freeaddrinfo(res);
                if (!buf[0]) {
                        log_warning("%s: milter %s: cannot resolve \"%s\": %s", param, sp->name, sp->host,
                                    r ? gai_strerror(r) : "no address");
                        continue;
                }
                char *h = strdup(buf);
                if (h) {
                        free(sp->host);
                        sp->host = h;
                }
        }
}

static void specs_free(MilterSpec *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                milter_spec_done(&v[i]);
        free(v);
}

static const char *const macro_params[_MILTER_M_MAX] = {
        [MILTER_M_CONNECT] = "milter_connect_macros", [MILTER_M_HELO] = "milter_helo_macros",
        [MILTER_M_MAIL] = "milter_mail_macros", [MILTER_M_RCPT] = "milter_rcpt_macros",
        [MILTER_M_DATA] = "milter_data_macros", [MILTER_M_EOM] = "milter_end_of_data_macros",
        [MILTER_M_EOH] = "milter_end_of_header_macros", [MILTER_M_UNKNOWN] = "milter_unknown_command_macros",
};

int smtpd_milter_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        SmtpdMilterSettings *m = &s->milter;
        _cleanup_strv_free_ char **smtpd = conf_get_list(c, listener, "smtpd_milters");
        _cleanup_strv_free_ char **non_smtpd = conf_get_list(c, listener, "non_smtpd_milters");
        _cleanup_free_ char *reason = NULL;
        int r;

        if (!smtpd || !non_smtpd)
                return log_oom();
        if ((r = specs_parse("smtpd_milters", smtpd, &m->smtpd, &m->n_smtpd)) < 0 ||
            (r = specs_parse("non_smtpd_milters", non_smtpd, &m->non_smtpd, &m->n_non_smtpd)) < 0)
                return r == -ENOMEM ? log_oom() : r;
        specs_resolve("smtpd_milters", m->smtpd, m->n_smtpd);
        specs_resolve("non_smtpd_milters", m->non_smtpd, m->n_non_smtpd);
        m->connect_timeout_usec = (usec_t) conf_get_time(c, listener, "milter_connect_timeout") * USEC_PER_SEC;
        m->command_timeout_usec = (usec_t) conf_get_time(c, listener, "milter_command_timeout") * USEC_PER_SEC;
        m->content_timeout_usec = (usec_t) conf_get_time(c, listener, "milter_content_timeout") * USEC_PER_SEC;
        m->default_action = milter_default_action_parse(conf_get_listener(c, listener, "milter_default_action"));
        if (m->default_action < 0)
                m->default_action = MILTER_DEFAULT_TEMPFAIL;
        m->protocol = (int) conf_get_int(c, listener, "milter_protocol");
        for (size_t i = 0; i < _MILTER_M_MAX; i++)
                if (!(m->macros[i] = milter_macro_list(conf_get_listener(c, listener, macro_params[i]))))
                        return log_oom();
        m->daemon_name = strdup(strempty(conf_get_listener(c, listener, "milter_macro_daemon_name")));
        m->macro_v = strdup(strempty(conf_get_listener(c, listener, "milter_macro_v")));
        if (!m->daemon_name || !m->macro_v)
                return log_oom();
        r = conf_get_table_list(c, listener, "smtpd_milter_maps", 0, &m->maps, &reason);
        if (r < 0)
                return log_error_errno(r, "%s", reason ? reason : "smtpd_milter_maps: cannot open");
        return 0;
}

void smtpd_milter_settings_done(SmtpdSettings *s) {
        SmtpdMilterSettings *m = &s->milter;
        specs_free(m->smtpd, m->n_smtpd);
        specs_free(m->non_smtpd, m->n_non_smtpd);
        table_list_free(m->maps);
        for (size_t i = 0; i < _MILTER_M_MAX; i++)
                strv_free(m->macros[i]);
        free(m->daemon_name);
        free(m->macro_v);
        *m = (SmtpdMilterSettings) {};
}

/* ---- macros ---- */

typedef struct MacroCtx {
        Session *s;
        const char *rcpt;
        char buf[DNS_NAME_MAX + 128];
} MacroCtx;

static const char *addr_domain(const char *a) {
        const char *at = a ? strrchr(a, '@') : NULL;
        return at ? at + 1 : NULL;
}

static const char *macro_get(const char *name, void *userdata) {
        MacroCtx *x = userdata;
        Session *s = x->s;
        SmtpdClient *c = &s->client;
        const SmtpdSettings *st = s->settings;
        bool local = s->listener->kind == LISTENER_SUBMIT;
        /* names may be written with or without braces: "{i}" is "i" */
        char n[64];
        size_t l = strlen(name);
        if (l >= 2 && name[0] == '{' && name[l - 1] == '}')
                snprintf(n, sizeof n, "%.*s", (int) (l - 2), name + 1);
        else
                snprintf(n, sizeof n, "%s", name);

        if (streq(n, "i"))
                return s->tx.queue_id[0] ? s->tx.queue_id : NULL;
        if (streq(n, "j"))
                return st->myhostname;
        if (streq(n, "v"))
                return st->milter.macro_v;
        if (streq(n, "_")) {
                /* as Postfix: the PTR name and address, and a warning when it did not verify */
                if (local)
                        return "localhost [127.0.0.1]";
                snprintf(x->buf, sizeof x->buf, "%s [%s]%s", c->reverse_name, c->addr,
                         strcaseeq(c->name, c->reverse_name) ? "" : " (may be forged)");
                return x->buf;
        }
        if (streq(n, "daemon_name"))
                return st->milter.daemon_name;
        if (streq(n, "daemon_addr") || streq(n, "if_addr"))
                return c->server_addr[0] ? c->server_addr : NULL;
        if (streq(n, "if_name"))
                return c->server_addr[0] ? st->myhostname : NULL;
        if (streq(n, "daemon_port")) {
                if (!c->server_port)
                        return NULL;
                snprintf(x->buf, sizeof x->buf, "%u", c->server_port);
                return x->buf;
        }
        if (streq(n, "client_addr"))
                return local ? "127.0.0.1" : c->addr;
        if (streq(n, "client_name"))
                return local ? "localhost" : c->name;
        if (streq(n, "client_ptr"))
                return local ? "localhost" : c->reverse_name;
        if (streq(n, "client_port")) {
                snprintf(x->buf, sizeof x->buf, "%u", local ? 0 : c->port);
                return x->buf;
        }
        if (streq(n, "auth_type"))
                return c->sasl_method;
        if (streq(n, "auth_authen"))
                return c->sasl_username;
        if (streq(n, "auth_author"))
                return s->tx.auth_author;
        if (streq(n, "mail_addr"))
                return s->tx.sender;
        if (streq(n, "mail_host"))
                return addr_domain(s->tx.sender);
        if (streq(n, "mail_mailer"))
                return s->tx.sender ? (addr_domain(s->tx.sender) ? "smtp" : "local") : NULL;
        if (streq(n, "rcpt_addr"))
                return x->rcpt;
        if (streq(n, "rcpt_host"))
                return addr_domain(x->rcpt);
        if (streq(n, "rcpt_mailer"))
                return x->rcpt ? (addr_domain(x->rcpt) ? "smtp" : "local") : NULL;
        bool tls = c->tls && c->tls_active;
        if (streq(n, "tls_version"))
                return tls ? tls_conn_protocol(c->tls) : NULL;
        if (streq(n, "cipher"))
                return tls ? tls_conn_cipher(c->tls) : NULL;
        if (streq(n, "cipher_bits")) {
                if (!tls)
                        return NULL;
                snprintf(x->buf, sizeof x->buf, "%d", tls_conn_cipher_bits(c->tls));
                return x->buf;
        }
        /* the client certificate (smtpd_tls_ask_ccert), when one was sent */
        if (streq(n, "cert_subject"))
                return tls && c->ccert ? c->ccert->subject : NULL;
        if (streq(n, "cert_issuer"))
                return tls && c->ccert ? c->ccert->issuer : NULL;
        return NULL;
}

/* ---- connections ---- */

static void stage_next(SmtpdMilters *m);
static void conn_fail(MilterConn *c, const char *fmt, ...) _printf_(2, 3);
static void conn_pump(MilterConn *c);

static void conn_close(MilterConn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        c->fd = safe_close(c->fd);
        strbuf_done(&c->in);
        strbuf_done(&c->out);
        c->out_off = 0;
        c->awaiting = false;
}

static void conn_steps_reset(MilterConn *c) {
        if (c->steps_buf.cap > STEPS_BUF_KEEP)
                strbuf_done(&c->steps_buf);   /* a large message's: not kept for the session */
        else
                strbuf_reset(&c->steps_buf);
        c->n_steps = c->step = 0;
        c->awaiting = false;
}

static void conn_done(MilterConn *c) {
        conn_close(c);
        conn_steps_reset(c);
        strbuf_done(&c->steps_buf);
        free(c->steps);
        c->steps = NULL;
        c->cap_steps = 0;
        for (size_t i = 0; i < _MILTER_M_MAX; i++)
                c->symlist[i] = strv_free(c->symlist[i]);
}

static int on_conn_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        MilterConn *c = userdata;
        const char *what = c->state == CONN_CONNECTING ? "connecting" :
                           c->state == CONN_NEGOTIATING ? "option negotiation" : "a reply";
        conn_fail(c, "timeout while waiting for %s", what);
        return 0;
}

/* (Re)arms the connection's timeout; one event source per connection, re-armed at every step. */
static int conn_timer(MilterConn *c, usec_t usec) {
        if (c->timer) {
                int r = sd_event_source_set_time_relative(c->timer, usec);
                return r < 0 ? r : sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        }
        return sd_event_add_time_relative(c->owner->session->server->event, &c->timer, CLOCK_MONOTONIC,
                                          usec, 1000, on_conn_timeout, c);
}

static void conn_timer_stop(MilterConn *c) {
        if (c->timer)
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
}

/* Writes what is buffered; EPOLLOUT stays armed while some is left. */
static int conn_write(MilterConn *c) {
        while (c->out_off < c->out.len) {
                ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                if (n < 0)
                        return -errno;
                c->out_off += (size_t) n;
        }
        if (c->out_off >= c->out.len) {
                strbuf_reset(&c->out);
                c->out_off = 0;
        }
        return sd_event_source_set_io_events(c->io, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
}

/* What the milter is offered (less for older protocol versions). */
static void offered(int protocol, uint32_t *ret_actions, uint32_t *ret_protocol) {
        switch (protocol) {
        case 2: *ret_actions = 0x1F; *ret_protocol = 0x7F; break;
        case 3: *ret_actions = 0x3F; *ret_protocol = 0x7F; break;
        case 4: *ret_actions = 0x3F; *ret_protocol = 0x3FF; break;
        default: *ret_actions = MILTER_A_ALL; *ret_protocol = MILTER_P_ALL; break;
        }
}

static int conn_protocol_version(MilterConn *c) {
        SmtpdSettings *st = c->owner->session->settings;
        return c->spec->protocol ? c->spec->protocol : st->milter.protocol;
}

static int conn_put_optneg(MilterConn *c) {
        uint32_t a, p;
        int v = conn_protocol_version(c);
        offered(v, &a, &p);
        return milter_put_optneg(&c->out, (uint32_t) v, a, p);
}

static void conn_connected(MilterConn *c) {
        c->state = CONN_NEGOTIATING;
        if (conn_put_optneg(c) < 0) {
                conn_fail(c, "out of memory");
                return;
        }
        int r = conn_write(c);
        if (r < 0) {
                conn_fail(c, "cannot send option negotiation: %s", strerror(-r));
                return;
        }
        if (conn_timer(c, c->connect_usec) < 0)
                conn_fail(c, "cannot set a timer");
}

static int handle_packet(MilterConn *c, char cmd, const uint8_t *d, size_t n);

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        MilterConn *c = userdata;
        char buf[16384];

        if (c->state == CONN_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                        conn_fail(c, "cannot connect: %s", strerror(err ? err : errno));
                        return 0;
                }
                conn_connected(c);
                return 0;
        }
        if (revents & EPOLLOUT) {
                int r = conn_write(c);
                if (r < 0) {
                        conn_fail(c, "write error: %s", strerror(-r));
                        return 0;
                }
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                conn_fail(c, n == 0 ? "connection closed by the milter%s" : "read error%s",
                          c->awaiting || c->state == CONN_NEGOTIATING ? " while waiting for a reply" : "");
                return 0;
        }
        if (strbuf_append(&c->in, buf, (size_t) n) < 0) {
                conn_fail(c, "out of memory");
                return 0;
        }
        for (;;) {
                char cmd, err[MILTER_ERR_MAX] = "";
                const uint8_t *d;
                size_t len, used;
                int k = milter_frame_next(c->in.data, c->in.len, &cmd, &d, &len, &used, err);
                if (k < 0) {
                        conn_fail(c, "malformed reply: %s", err);
                        return 0;
                }
                if (k == 0)
                        break;
                /* handle_packet() may move the stage on; the packet stays valid meanwhile */
                if (handle_packet(c, cmd, d, len) < 0 || c->fd < 0)
                        return 0;   /* the connection failed (and was closed) */
                strbuf_consume(&c->in, used);
        }
        return 0;
}

/* A connection to a local milter is often up as soon as connect() returns: the option
 * negotiation is sent at once then, without waiting for the socket to become writable (one
 * loop iteration and two system calls less per session). Returns 1 when it went out (the rest,
 * if any, stays buffered), 0 when the connection is still being set up (or the send would
 * block), or the connection's error (as connect() would have reported it). */
static int conn_optneg_now(MilterConn *c) {
        if (conn_put_optneg(c) < 0)
                return -ENOMEM;
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
                strbuf_reset(&c->out);
                return errno == EAGAIN || errno == EINTR || errno == ENOTCONN ? 0 : -errno;
        }
        c->out_off = (size_t) n;
        if (c->out_off >= c->out.len) {
                strbuf_reset(&c->out);
                c->out_off = 0;
        }
        c->state = CONN_NEGOTIATING;
        return 1;
}

/* Opens the connection (non-blocking) and starts the negotiation. */
static void conn_open(MilterConn *c) {
        const MilterSpec *sp = c->spec;
        struct sockaddr_storage ss;
        socklen_t sl;
        int r;

        r = sp->unix_socket ? sockaddr_from_path(sp->path, &ss, &sl) : sockaddr_from_host(sp->host, sp->port, &ss, &sl);
        if (r < 0) {
                conn_fail(c, sp->unix_socket ? "socket path too long" :
                          "host is not an address (its name did not resolve at start)");
                return;
        }
        c->state = CONN_CONNECTING;
        r = socket_connect_nonblock(&ss, sl, &c->fd);
        if (r >= 0)
                r = conn_optneg_now(c);
        if (r < 0) {
                conn_fail(c, "cannot connect: %s", strerror(-r));
                return;
        }
        uint32_t events = c->state == CONN_CONNECTING ? EPOLLOUT : EPOLLIN | (c->out.len ? EPOLLOUT : 0);
        if (sd_event_add_io(c->owner->session->server->event, &c->io, c->fd, events, on_conn_io, c) < 0 ||
            conn_timer(c, c->connect_usec) < 0)
                conn_fail(c, "cannot watch the socket");
}

/* ---- stages ---- */

static bool skip_flag(MilterConn *c, uint32_t flag) {
        return (c->protocol & flag) != 0;
}

static int add_step(MilterConn *c, char cmd, bool await, bool content, int (*put)(MilterConn *c, StrBuf *b, void *ud),
                    void *ud) {
        size_t off = c->steps_buf.len;
        int r = put(c, &c->steps_buf, ud);
        if (r < 0)
                return r;
        if (c->steps_buf.len == off)
                return 0;   /* nothing to send (a macro packet without values) */
        if (c->n_steps == c->cap_steps) {
                size_t cap = c->cap_steps ? 2 * c->cap_steps : 16;
                Step *v = reallocarray(c->steps, cap, sizeof(Step));
                if (!v)
                        return -ENOMEM;
                c->steps = v;
                c->cap_steps = cap;
        }
        c->steps[c->n_steps++] = (Step) { .off = off, .len = c->steps_buf.len - off, .cmd = cmd, .await = await,
                                   .content = content };
        return 0;
}

typedef struct StageArgs {
        MilterMacroStage macro_stage;
        const char *const *strings;
        const char *name, *value;     /* a header: slices of the message */
        size_t name_len, value_len;
        const char *body;             /* body content in LF form, what is left of it */
        size_t body_len, body_used;
        char cmd;
} StageArgs;

static int put_macros(MilterConn *c, StrBuf *b, void *ud) {
        StageArgs *a = ud;
        Session *s = c->owner->session;
        MacroCtx x = { .s = s, .rcpt = c->owner->stage == MILTER_STAGE_RCPT ? c->owner->arg : NULL };
        char **names = c->symlist[a->macro_stage] ? c->symlist[a->macro_stage] : s->settings->milter.macros[a->macro_stage];
        return milter_put_macros(b, milter_macro_stage_cmd(a->macro_stage), names, macro_get, &x);
}

static int put_strings(MilterConn *c, StrBuf *b, void *ud) {
        StageArgs *a = ud;
        return milter_put_strings(b, a->cmd, a->strings);
}

static int put_connect(MilterConn *c, StrBuf *b, void *ud) {
        Session *s = c->owner->session;
        SmtpdClient *cl = &s->client;
        if (s->listener->kind == LISTENER_SUBMIT)
                return milter_put_connect(b, "localhost", '4', 0, "127.0.0.1");
        char host[DNS_NAME_MAX + 8];
        if (streq(cl->name, "unknown"))
                snprintf(host, sizeof host, "[%s]", cl->addr);
        else
                snprintf(host, sizeof host, "%s", cl->name);
        char fam = cl->family == AF_INET6 ? '6' : cl->family == AF_INET ? '4' : 'U';
        return milter_put_connect(b, host, fam, (uint16_t) cl->port, cl->addr);
}

static int put_header(MilterConn *c, StrBuf *b, void *ud) {
        StageArgs *a = ud;
        return milter_put_header_n(b, a->name, a->name_len, a->value, a->value_len);
}

static int put_empty(MilterConn *c, StrBuf *b, void *ud) {
        StageArgs *a = ud;
        return milter_put_packet(b, a->cmd, NULL, 0);
}

static int put_body(MilterConn *c, StrBuf *b, void *ud) {
        StageArgs *a = ud;
        return milter_put_body_crlf(b, a->body, a->body_len, &a->body_used);
}

/* The headers of the message (our Received: first), one step each. */
static int add_header_steps(MilterConn *c, const char *p, size_t len, size_t *ret_body) {
        size_t i = 0;
        bool nr = skip_flag(c, MILTER_P_NR_HDR), send = !skip_flag(c, MILTER_P_NOHDRS);
        while (i < len) {
                const char *nl = memchr(p + i, '\n', len - i);
                size_t end = nl ? (size_t) (nl - p) + 1 : len;
                if (end - i <= 1 || p[i] == ' ' || p[i] == '\t')
                        break;
                while (end < len && (p[end] == ' ' || p[end] == '\t')) {
                        nl = memchr(p + end, '\n', len - end);
                        end = nl ? (size_t) (nl - p) + 1 : len;
                }
                const char *colon = memchr(p + i, ':', end - i);
                if (!colon)
                        break;
                if (send) {
                        size_t nlen = (size_t) (colon - (p + i));
                        while (nlen && (p[i + nlen - 1] == ' ' || p[i + nlen - 1] == '\t'))
                                nlen--;
                        const char *v = colon + 1, *ve = p + end;
                        if (ve > v && ve[-1] == '\n')
                                ve--;
                        if (!skip_flag(c, MILTER_P_HDR_LEADSPC))
                                while (v < ve && (*v == ' ' || *v == '\t'))
                                        v++;
                        int r = add_step(c, MILTER_CMD_HEADER, !nr, false, put_header,
                                         &(StageArgs) { .name = p + i, .name_len = nlen, .value = v,
                                                        .value_len = (size_t) (ve - v) });
                        if (r < 0)
                                return r;
                }
                i = end;
        }
        if (i < len && p[i] == '\n')
                i++;   /* the empty line */
        *ret_body = i;
        return 0;
}

/* The body in CRLF form, in chunks of at most MILTER_CHUNK_MAX bytes. */
static int add_body_steps(MilterConn *c, const char *p, size_t len) {
        bool nr = skip_flag(c, MILTER_P_NR_BODY);
        for (size_t i = 0; i < len;) {
                StageArgs a = { .body = p + i, .body_len = len - i };
                int r = add_step(c, MILTER_CMD_BODY, !nr, true, put_body, &a);
                if (r < 0)
                        return r;
                i += a.body_used;
        }
        return 0;
}

/* Builds the packets of the current stage for c (none when c does not take part). */
static int conn_build_stage(MilterConn *c) {
        SmtpdMilters *m = c->owner;
        Session *s = m->session;
        int r = 0;
        bool v4 = c->version >= 4;

        conn_steps_reset(c);
        switch (m->stage) {
        case MILTER_STAGE_CONNECT:
                if (skip_flag(c, MILTER_P_NOCONNECT))
                        return 0;
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_CONNECT })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_CONNECT, !skip_flag(c, MILTER_P_NR_CONN), false, put_connect, NULL);
        case MILTER_STAGE_HELO:
                if (skip_flag(c, MILTER_P_NOHELO))
                        return 0;
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_HELO })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_HELO, !skip_flag(c, MILTER_P_NR_HELO), false, put_strings,
                                &(StageArgs) { .cmd = MILTER_CMD_HELO, .strings = (const char *const[]) { m->arg, NULL } });
        case MILTER_STAGE_MAIL: {
                c->in_tx = true;
                if (skip_flag(c, MILTER_P_NOMAIL))
                        return 0;
                char sender[1024], body[64] = "";
                snprintf(sender, sizeof sender, "<%s>", strempty(s->tx.sender));
                if (s->tx.body_type)
                        snprintf(body, sizeof body, "BODY=%s", s->tx.body_type);
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_MAIL })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_MAIL, !skip_flag(c, MILTER_P_NR_MAIL), false, put_strings,
                                &(StageArgs) { .cmd = MILTER_CMD_MAIL,
                                               .strings = (const char *const[]) { sender, body[0] ? body : NULL, NULL } });
        }
        case MILTER_STAGE_RCPT: {
                if (skip_flag(c, MILTER_P_NORCPT))
                        return 0;
                char rcpt[1024];
                snprintf(rcpt, sizeof rcpt, "<%s>", m->arg);
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_RCPT })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_RCPT, !skip_flag(c, MILTER_P_NR_RCPT), false, put_strings,
                                &(StageArgs) { .cmd = MILTER_CMD_RCPT, .strings = (const char *const[]) { rcpt, NULL } });
        }
        case MILTER_STAGE_DATA:
                if (!v4 || skip_flag(c, MILTER_P_NODATA))
                        return 0;
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_DATA })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_DATA, !skip_flag(c, MILTER_P_NR_DATA), false, put_empty,
                                &(StageArgs) { .cmd = MILTER_CMD_DATA });
        case MILTER_STAGE_UNKNOWN:
                if (!v4 || skip_flag(c, MILTER_P_NOUNKNOWN))
                        return 0;
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_UNKNOWN })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_UNKNOWN, !skip_flag(c, MILTER_P_NR_UNKN), false, put_strings,
                                &(StageArgs) { .cmd = MILTER_CMD_UNKNOWN, .strings = (const char *const[]) { m->arg, NULL } });
        case MILTER_STAGE_EOM: {
                DataState *d = s->tx.data;
                const char *p = d && d->content.data ? d->content.data : "";
                size_t len = d ? d->content.len : 0, body = 0;
                if ((r = add_header_steps(c, p, len, &body)) < 0)
                        return r;
                if (!skip_flag(c, MILTER_P_NOEOH)) {
                        if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_EOH })) < 0 ||
                            (r = add_step(c, MILTER_CMD_EOH, !skip_flag(c, MILTER_P_NR_EOH), false, put_empty,
                                          &(StageArgs) { .cmd = MILTER_CMD_EOH })) < 0)
                                return r;
                }
                if (!skip_flag(c, MILTER_P_NOBODY) && (r = add_body_steps(c, p + body, len - body)) < 0)
                        return r;
                if ((r = add_step(c, 'D', false, false, put_macros, &(StageArgs) { .macro_stage = MILTER_M_EOM })) < 0)
                        return r;
                return add_step(c, MILTER_CMD_EOB, true, true, put_empty, &(StageArgs) { .cmd = MILTER_CMD_EOB });
        }
        }
        return 0;
}

static const char *default_reply(int action) {
        switch (action) {
        case MILTER_DEFAULT_REJECT: return "550 5.7.1 Command rejected";
        case MILTER_DEFAULT_TEMPFAIL: return "451 4.7.1 Service unavailable - try again later";
        case MILTER_DEFAULT_SHUTDOWN: return "421 4.7.0 Server closing connection";
        }
        return NULL;
}

/* Hold the message: the transaction's actions, or every message of the session. */
static void quarantine(SmtpdMilters *m, const char *reason) {
        Session *s = m->session;
        if (m->stage == MILTER_STAGE_CONNECT || m->stage == MILTER_STAGE_HELO) {
                m->hold_session = true;
                return;
        }
        if (!s->tx.actions.hold) {
                s->tx.actions.hold = strdup(strempty(reason));
                smtpd_log_action(s, check_stage(m->stage), m->stage == MILTER_STAGE_RCPT ? m->arg : NULL,
                                 "milter-hold", "milter triggers HOLD action");
        }
}

static void discard(SmtpdMilters *m) {
        Session *s = m->session;
        if (m->stage == MILTER_STAGE_CONNECT || m->stage == MILTER_STAGE_HELO) {
                m->discard_session = true;
                return;
        }
        if (!s->tx.actions.discard) {
                s->tx.actions.discard = strdup("");
                smtpd_log_action(s, check_stage(m->stage), m->stage == MILTER_STAGE_RCPT ? m->arg : NULL,
                                 "milter-discard", "milter triggers DISCARD action");
        }
}

/* The stage's outcome from milter c: a refusal ends the stage (other milters are not asked). */
static void stage_refuse(SmtpdMilters *m, const char *reply) {
        free(m->reply);
        m->reply = strdup(reply);
        m->shutdown = startswith(reply, "421") != NULL;
        m->cur = m->n;   /* no further milter */
}

/* A failed milter's default action at the current stage; true when the stage goes on. */
static bool apply_default(SmtpdMilters *m, MilterConn *c) {
        if (c->default_action == MILTER_DEFAULT_QUARANTINE) {
                quarantine(m, "milter default action");
                return true;
        }
        const char *reply = default_reply(c->default_action);
        if (!reply)
                return true;
        stage_refuse(m, reply);
        return false;
}

static void conn_fail(MilterConn *c, const char *fmt, ...) {
        SmtpdMilters *m = c->owner;
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);

        bool current = m->running && m->cur < m->n && &m->v[m->cur] == c;
        smtpd_metrics_milter(c->spec->name, "failed");
        log_warning("milter %s: %s (%s stage of %s); default_action=%s", c->spec->name, why,
                    stage_names[m->stage], m->session->client.id_text, milter_default_action_name(c->default_action));
        conn_close(c);
        conn_steps_reset(c);
        c->state = c->default_action == MILTER_DEFAULT_ACCEPT ? CONN_DONE : CONN_FAILED;
        if (!current)
                return;   /* idle: the default action applies at its next stage */
        if (apply_default(m, c))
                m->cur++;
        stage_next(m);
}

/* Sends the steps up to the next awaited one; when none is left, this milter is done. */
static void conn_pump(MilterConn *c) {
        SmtpdMilters *m = c->owner;
        while (c->step < c->n_steps && !c->awaiting) {
                const Step *st = &c->steps[c->step];
                if (strbuf_append(&c->out, c->steps_buf.data + st->off, st->len) < 0) {
                        conn_fail(c, "out of memory");
                        return;
                }
                if (st->await) {
                        c->awaiting = true;
                        break;
                }
                c->step++;
        }
        int r = conn_write(c);
        if (r < 0) {
                conn_fail(c, "write error: %s", strerror(-r));
                return;
        }
        if (c->awaiting) {
                const Step *st = &c->steps[c->step];
                if (conn_timer(c, st->content ? c->content_usec : c->command_usec) < 0)
                        conn_fail(c, "cannot set a timer");
                return;
        }
        conn_timer_stop(c);
        conn_steps_reset(c);
        m->cur++;
        stage_next(m);
}

static bool is_edit(char cmd) {
        return strchr("hib+2-emq", cmd) != NULL;
}

static uint32_t edit_action(char cmd) {
        switch (cmd) {
        case MILTER_R_ADDHEADER: return MILTER_A_ADDHDRS;
        case MILTER_R_INSHEADER: case MILTER_R_CHGHEADER: return MILTER_A_CHGHDRS;
        case MILTER_R_REPLBODY: return MILTER_A_CHGBODY;
        case MILTER_R_ADDRCPT: return MILTER_A_ADDRCPT;
        case MILTER_R_ADDRCPT_PAR: return MILTER_A_ADDRCPT_PAR;
        case MILTER_R_DELRCPT: return MILTER_A_DELRCPT;
        case MILTER_R_CHGFROM: return MILTER_A_CHGFROM;
        case MILTER_R_QUARANTINE: return MILTER_A_QUARANTINE;
        }
        return 0;
}

/* One packet from the milter; <0 when the connection failed (and the stage moved on). */
static int handle_packet(MilterConn *c, char cmd, const uint8_t *d, size_t n) {
        SmtpdMilters *m = c->owner;
        char err[MILTER_ERR_MAX] = "";

        if (c->state == CONN_NEGOTIATING) {
                MilterNeg neg = {};
                uint32_t a, p;
                offered(conn_protocol_version(c), &a, &p);
                if (cmd != MILTER_R_OPTNEG) {
                        conn_fail(c, "expected an option negotiation reply, got '%c'", cmd);
                        return -EBADMSG;
                }
                if (milter_neg_parse(d, n, a, p, &neg, err) < 0) {
                        conn_fail(c, "%s", err);
                        return -EBADMSG;
                }
                c->version = neg.version;
                c->actions = neg.actions;
                c->protocol = neg.protocol;
                for (size_t i = 0; i < _MILTER_M_MAX; i++)
                        if (neg.symlist[i] && !(c->symlist[i] = milter_macro_list(neg.symlist[i]))) {
                                milter_neg_done(&neg);
                                conn_fail(c, "out of memory");
                                return -ENOMEM;
                        }
                milter_neg_done(&neg);
                c->state = CONN_READY;
                conn_timer_stop(c);
                /* the connect stage's packets, now that the flags are known */
                if (conn_build_stage(c) < 0) {
                        conn_fail(c, "out of memory");
                        return -ENOMEM;
                }
                conn_pump(c);
                return 0;
        }
        if (!c->awaiting) {
                conn_fail(c, "unexpected '%c' reply when none was asked for", cmd);
                return -EBADMSG;
        }
        MilterReply r = {};
        if (milter_reply_parse(cmd, d, n, &r, err) < 0) {
                conn_fail(c, "%s", err);
                return -EBADMSG;
        }
        const Step *st = &c->steps[c->step];
        int k = 0;
        if (is_edit(cmd)) {
                if (st->cmd != MILTER_CMD_EOB || !(c->actions & edit_action(cmd))) {
                        conn_fail(c, "%s reply %s", milter_reply_name(cmd),
                                  st->cmd != MILTER_CMD_EOB ? "before the end of the message" : "for an action not negotiated");
                        milter_reply_done(&r);
                        return -EBADMSG;
                }
                if (cmd == MILTER_R_QUARANTINE) {
                        smtpd_metrics_milter(c->spec->name, "quarantine");
                        quarantine(m, r.text);
                }
                else
                        k = milter_edits_add(&m->edits, &r);
                milter_reply_done(&r);
                if (k < 0) {
                        conn_fail(c, "out of memory");
                        return k;
                }
                return 0;   /* the final answer is still to come */
        }
        switch (cmd) {
        case MILTER_R_PROGRESS:
                if (conn_timer(c, st->content ? c->content_usec : c->command_usec) < 0) {
                        conn_fail(c, "cannot set a timer");
                        return -ENOMEM;
                }
                return 0;
        case MILTER_R_SKIP:
                if (st->cmd != MILTER_CMD_BODY) {
                        conn_fail(c, "skip reply to a command that is not a body chunk");
                        return -EBADMSG;
                }
                c->awaiting = false;
                while (c->step < c->n_steps && c->steps[c->step].cmd == MILTER_CMD_BODY)
                        c->step++;
                conn_pump(c);
                return 0;
        case MILTER_R_CONTINUE:
                if (st->cmd == MILTER_CMD_EOB)
                        smtpd_metrics_milter(c->spec->name, "accept");   /* the message, as it is now */
                c->awaiting = false;
                c->step++;
                conn_pump(c);
                return 0;
        case MILTER_R_ACCEPT:
                smtpd_metrics_milter(c->spec->name, "accept");
                if (m->stage == MILTER_STAGE_CONNECT || m->stage == MILTER_STAGE_HELO)
                        c->state = CONN_DONE;
                else
                        c->skip_tx = m->stage != MILTER_STAGE_EOM;
                break;
        case MILTER_R_DISCARD:
                smtpd_metrics_milter(c->spec->name, "discard");
                discard(m);
                m->cur = m->n;
                break;
        case MILTER_R_REJECT:
                smtpd_metrics_milter(c->spec->name, "reject");
                stage_refuse(m, "550 5.7.1 Command rejected");
                break;
        case MILTER_R_TEMPFAIL:
                smtpd_metrics_milter(c->spec->name, "tempfail");
                stage_refuse(m, "451 4.7.1 Service unavailable - try again later");
                break;
        case MILTER_R_REPLYCODE:
                smtpd_metrics_milter(c->spec->name, r.text && r.text[0] == '4' ? "tempfail" : "reject");
                stage_refuse(m, r.text);
                break;
        default:
                conn_fail(c, "%s reply where a command reply was expected", strna(milter_reply_name(cmd)));
                milter_reply_done(&r);
                return -EBADMSG;
        }
        milter_reply_done(&r);
        if (m->stage == MILTER_STAGE_EOM || (m->stage == MILTER_STAGE_MAIL && m->reply))
                c->in_tx = false;   /* the milter forgot the transaction itself */
        conn_timer_stop(c);
        conn_steps_reset(c);
        if (m->cur < m->n)
                m->cur++;
        stage_next(m);
        return 0;
}

static void stage_free(SmtpdMilters *m) {
        m->running = m->waiting = false;
        m->done = NULL;
        free(m->arg);
        free(m->reply);
        m->arg = m->reply = NULL;
        m->shutdown = false;
        m->finish = sd_event_source_disable_unref(m->finish);
}

/* "milter-reject: RCPT from ...: 550 5.7.1 text; from=<> to=<> ..." (lines of a multi-line
 * reply joined by a space). */
static void log_reject(Session *s, SmtpdMilterStage stage, const char *arg, const char *reply) {
        _cleanup_free_ char *flat = strdup(reply);
        if (flat)
                for (char *p = flat; *p; p++)
                        if (*p == '\r' || *p == '\n')
                                *p = ' ';
        smtpd_log_action(s, check_stage(stage), stage == MILTER_STAGE_RCPT ? arg : NULL, "milter-reject",
                         flat ? flat : reply);
}

static void stage_report(SmtpdMilters *m) {
        if (m->reply)
                log_reject(m->session, m->stage, m->arg, m->reply);
}

static int on_finish(sd_event_source *src, void *userdata) {
        SmtpdMilters *m = userdata;
        Session *s = m->session;
        SmtpdMilterDone done = m->done;
        _cleanup_free_ char *arg = TAKE_PTR(m->arg), *reply = TAKE_PTR(m->reply);
        bool shutdown = m->shutdown;

        stage_free(m);
        session_resume(s, SESSION_RESUME_ONLY);
        done(s, arg, reply);
        if (shutdown)
                session_close_after_flush(s);
        /* A message handed to the committer keeps the session paused until its 250: the
         * committer resumes it (pipelined commands must not be answered before). */
        if (!session_waiting(s) && session_phase(s) != PHASE_COMMIT)
                session_resume(s, SESSION_RESUME_INPUT);
        return 0;
}

/* The next milter that takes part in the stage, or the end of the stage. */
static void stage_next(SmtpdMilters *m) {
        while (m->cur < m->n) {
                MilterConn *c = &m->v[m->cur];
                bool tx_stage = m->stage >= MILTER_STAGE_MAIL && m->stage != MILTER_STAGE_UNKNOWN;
                if (m->stage == MILTER_STAGE_MAIL)
                        c->skip_tx = false;
                if (c->state == CONN_DONE || (tx_stage && c->skip_tx) ||
                    c->state == CONN_CONNECTING || c->state == CONN_NEGOTIATING) {
                        m->cur++;
                        continue;
                }
                if (c->state == CONN_FAILED) {
                        if (apply_default(m, c))
                                m->cur++;
                        continue;
                }
                if (c->state == CONN_NEW) {
                        conn_open(c);   /* the connect stage continues when it negotiated */
                        return;
                }
                if (conn_build_stage(c) < 0) {
                        conn_fail(c, "out of memory");
                        return;
                }
                if (c->n_steps == 0) {
                        m->cur++;
                        continue;
                }
                conn_pump(c);
                return;
        }
        /* All asked. */
        if (!m->waiting)
                return;   /* smtpd_milter_run() finishes it at once */
        stage_report(m);
        if (!m->finish && sd_event_add_defer(m->session->server->event, &m->finish, on_finish, m) < 0)
                log_oom();   /* the session then times out */
}

static void on_wait_cancel(void *userdata) {
        SmtpdMilters *m = userdata;
        stage_free(m);
}

static int milters_new(Session *s, SmtpdMilters **ret) {
        const SmtpdMilterSettings *ms = &s->settings->milter;
        bool local = s->listener->kind == LISTENER_SUBMIT;
        const MilterSpec *specs = local ? ms->non_smtpd : ms->smtpd;
        size_t n = local ? ms->n_non_smtpd : ms->n_smtpd;
        MilterSpec *own = NULL;
        size_t n_own = 0;

        *ret = NULL;
        if (s->settings->no_milters)    /* receive_override_options = no_milters */
                return 0;
        if (!local && ms->maps && s->client.addr[0]) {
                _cleanup_free_ char *value = NULL;
                int r = table_list_lookup(ms->maps, s->client.addr, &value);
                if (r < 0)
                        log_warning("smtpd_milter_maps: lookup of %s failed; using smtpd_milters", s->client.addr);
                else if (r > 0 && value) {
                        if (strcaseeq(value, "DISABLE"))
                                return 0;
                        _cleanup_strv_free_ char **l = conf_split_list(value);
                        if (!l || specs_parse("smtpd_milter_maps", l, &own, &n_own) < 0) {
                                log_warning("smtpd_milter_maps: invalid result \"%s\" for %s; using smtpd_milters",
                                            value, s->client.addr);
                                own = NULL;
                        } else {
                                specs = own;
                                n = n_own;
                        }
                }
        }
        if (n == 0) {
                specs_free(own, n_own);
                return 0;
        }
        SmtpdMilters *m = calloc(1, sizeof(SmtpdMilters));
        if (!m || !(m->v = calloc(n, sizeof(MilterConn)))) {
                free(m);
                specs_free(own, n_own);
                return -ENOMEM;
        }
        m->session = s;
        m->own = own;
        m->n_own = n_own;
        m->n = n;
        for (size_t i = 0; i < n; i++) {
                MilterConn *c = &m->v[i];
                const MilterSpec *sp = &specs[i];
                c->owner = m;
                c->spec = sp;
                c->fd = -1;
                c->default_action = sp->default_action != MILTER_DEFAULT_UNSET ? sp->default_action : ms->default_action;
                c->connect_usec = sp->connect_timeout > 0 ? (usec_t) sp->connect_timeout * USEC_PER_SEC : ms->connect_timeout_usec;
                c->command_usec = sp->command_timeout > 0 ? (usec_t) sp->command_timeout * USEC_PER_SEC : ms->command_timeout_usec;
                c->content_usec = sp->content_timeout > 0 ? (usec_t) sp->content_timeout * USEC_PER_SEC : ms->content_timeout_usec;
        }
        *ret = m;
        return 0;
}

void smtpd_milter_run(Session *s, SmtpdMilterStage stage, const char *arg, SmtpdMilterDone done) {
        SmtpdMilters *m = s->milters;

        if (stage == MILTER_STAGE_CONNECT && !m) {
                if (milters_new(s, &s->milters) < 0)
                        log_oom();
                m = s->milters;
        }
        if (stage == MILTER_STAGE_MAIL && m)
                milter_edits_reset(&m->edits);
        if (m && (stage == MILTER_STAGE_MAIL || stage == MILTER_STAGE_EOM)) {
                if (m->hold_session && !s->tx.actions.hold)
                        s->tx.actions.hold = strdup("");
                if (m->discard_session && !s->tx.actions.discard)
                        s->tx.actions.discard = strdup("");
        }
        if (!m || m->running) {
                done(s, arg, NULL);
                return;
        }
        m->running = true;
        m->stage = stage;
        m->done = done;
        m->cur = 0;
        m->arg = arg ? strdup(arg) : NULL;
        stage_next(m);
        if (m->cur >= m->n && !m->finish) {
                /* decided without waiting for any milter */
                _cleanup_free_ char *a = TAKE_PTR(m->arg), *reply = TAKE_PTR(m->reply);
                bool shutdown = m->shutdown;
                if (reply)
                        log_reject(s, stage, a, reply);
                stage_free(m);
                done(s, a, reply);
                if (shutdown)
                        session_close_after_flush(s);
                return;
        }
        m->waiting = true;
        session_wait(s, on_wait_cancel, m);
        if (m->cur >= m->n)
                stage_next(m);   /* finished while it was setting up: end from the loop */
}

void smtpd_milter_reply(Session *s, const char *reply) {
        /* a milter's multi-line reply: the lines as they are, the last one counted as the reply */
        const char *p = reply;
        for (const char *eol; (eol = strstr(p, "\r\n")); p = eol + 2) {
                _cleanup_free_ char *line = strndup(p, (size_t) (eol - p) + 2);
                if (line)
                        session_reply_raw(s, line);
        }
        session_reply(s, "%s", p);
}

bool smtpd_milter_active(Session *s) {
        return s->milters != NULL;
}

static void send_now(MilterConn *c, char cmd) {
        if (c->fd < 0 || c->state != CONN_READY)
                return;
        if (milter_put_packet(&c->out, cmd, NULL, 0) < 0 || conn_write(c) < 0)
                conn_fail(c, "write error");
}

void smtpd_milter_abort(Session *s) {
        SmtpdMilters *m = s->milters;
        if (!m)
                return;
        milter_edits_reset(&m->edits);
        for (size_t i = 0; i < m->n; i++) {
                MilterConn *c = &m->v[i];
                if (c->in_tx && !c->awaiting)
                        send_now(c, MILTER_CMD_ABORT);
                c->in_tx = false;
                c->skip_tx = false;
        }
}

void smtpd_milter_session_free(Session *s) {
        SmtpdMilters *m = s->milters;
        if (!m)
                return;
        stage_free(m);
        for (size_t i = 0; i < m->n; i++) {
                MilterConn *c = &m->v[i];
                if (c->fd >= 0 && c->state == CONN_READY && !c->awaiting) {
                        /* best effort: QUIT is not answered */
                        (void) milter_put_packet(&c->out, MILTER_CMD_QUIT, NULL, 0);
                        (void) send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                conn_done(c);
        }
        free(m->v);
        specs_free(m->own, m->n_own);
        milter_edits_reset(&m->edits);
        free(m);
        s->milters = NULL;
}

MilterEdits *smtpd_milter_edits(Session *s) {
        return s->milters ? &s->milters->edits : NULL;
}
