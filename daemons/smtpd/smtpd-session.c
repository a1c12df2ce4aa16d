/* smtpd-session.c — one SMTP client connection inside the event loop.
 *
 * A session reads whatever the socket has into its input buffer, runs every complete command
 * (or DATA line) it finds, collects all replies in its output buffer and writes them in one
 * write() — so a pipelined batch is answered in one segment, also when a command of it waits
 * (session_wait(), a commit): the replies so far are held until the answer's (see smtpd.h).
 * While output is pending (the client does not read) or while its message is being committed,
 * input is paused. Buffers are
 * allocated on demand and released when empty, so an idle session costs a few hundred bytes.
 *
 * This file owns the session's phase: the only code that writes it. Other files read it with
 * session_phase()/session_waiting() and ask for transitions with session_enter_command/data/
 * bdat/commit/tls() and session_close_after_flush(); asynchronous work pauses the session with
 * session_wait() and ends with session_resume() (see smtpd.h), as does a commit.
 *
 * Client names: set to "unknown" here; smtpd-peername.c looks them up before the greeting
 * (loopback clients are "localhost" without smtpd_peername_lookup). Behind a load balancer
 * (smtpd_upstream_proxy_protocol) the session starts in PHASE_PROXY: smtpd-proxy.c reads the
 * header and session_proxy_done() replaces the addresses before anything else happens.
 *
 * The submit socket is world-writable and its sessions are never reported to postern-anvil
 * (there is no client address): so the per-client smtpd_client_connection_count_limit of the
 * "submit" listener is applied here per peer uid, root exempt. A session over it is answered
 * "421 4.7.0 <myhostname> Error: too many connections from uid N" and closed, and logged as
 * "Connection concurrency limit exceeded: ... for service submit" (instead of its "disconnect
 * from" line), at most IPC_LOG_BURST lines per IPC_LOG_INTERVAL_USEC. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "smtpd.h"
#include "log/log.h"

#define READ_CHUNK 16384
#define OUTPUT_HIGH_WATER (64 * 1024)

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *src, uint64_t usec, void *userdata);
static void session_connect(Session *s);
static void session_connect_client(Session *s);
static void session_update_events(Session *s);

/* Restarts the idle timer (a fired one-shot timer source must be re-enabled too). */
static void session_touch(Session *s) {
        if (!s->timer)
                return;
        (void) sd_event_source_set_time_relative(s->timer, s->settings->timeout_usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

/* The address and port the client connected to, and the client's port (policy requests). */
static void session_describe_server(Session *s) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        if (getsockname(s->fd, (struct sockaddr *) &ss, &sl) < 0 || ss.ss_family == AF_UNIX)
                return;
        void *a = ss.ss_family == AF_INET ? (void *) &((struct sockaddr_in *) &ss)->sin_addr
                                          : (void *) &((struct sockaddr_in6 *) &ss)->sin6_addr;
        inet_ntop(ss.ss_family, a, s->client.server_addr, sizeof(s->client.server_addr));
        s->client.server_port = ntohs(((struct sockaddr_in *) &ss)->sin_port);   /* same offset in both */
        sl = sizeof(ss);
        if (getpeername(s->fd, (struct sockaddr *) &ss, &sl) == 0)
                s->client.port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
}

/* family and bytes as the socket or a PROXY header gives them, an IPv4-mapped IPv6 address as
 * the IPv4 address it stands for; *ret_family 0 for anything else. */
static void addr_normalize(int family, const uint8_t *bytes, int *ret_family, uint8_t ret[16]) {
        *ret_family = 0;
        if (family == AF_INET) {
                *ret_family = AF_INET;
                memcpy(ret, bytes, 4);
        } else if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) bytes)) {
                *ret_family = AF_INET;
                memcpy(ret, bytes + 12, 4);
        } else if (family == AF_INET6) {
                *ret_family = AF_INET6;
                memcpy(ret, bytes, 16);
        }
}

/* The client's address and what follows from it before any lookup: the text form, the name
 * ("localhost" for loopback clients, "unknown" until smtpd-peername.c knows better) and the
 * "name[addr]" of the log lines. */
static void client_set_address(SmtpdClient *c, int family, const uint8_t *bytes) {
        snprintf(c->addr, sizeof(c->addr), "unknown");
        addr_normalize(family, bytes, &c->family, c->addr_bytes);
        if (c->family)
                inet_ntop(c->family, c->addr_bytes, c->addr, sizeof(c->addr));
        bool loopback = (c->family == AF_INET && c->addr_bytes[0] == 127) ||
                (c->family == AF_INET6 && IN6_IS_ADDR_LOOPBACK((struct in6_addr *) c->addr_bytes));
        snprintf(c->name, sizeof(c->name), "%s", loopback ? "localhost" : "unknown");
        snprintf(c->reverse_name, sizeof(c->reverse_name), "%s", c->name);
        c->name_status = c->reverse_name_status = loopback ? SMTPD_PEER_OK : SMTPD_PEER_PERM;
        snprintf(c->id_text, sizeof(c->id_text), "%s[%s]", c->name, c->addr);
}

static void session_describe_peer(Session *s) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        if (s->listener->kind == LISTENER_SUBMIT) {
                struct ucred cred;
                socklen_t cl = sizeof(cred);
                s->client.uid = (uid_t) -1;
                if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
                        s->client.uid = cred.uid;
                snprintf(s->client.name, sizeof(s->client.name), "local");
                s->client.addr[0] = '\0';
                snprintf(s->client.id_text, sizeof(s->client.id_text), "local[uid=%ld]", (long) (int) s->client.uid);
                return;
        }

        if (getpeername(s->fd, (struct sockaddr *) &ss, &sl) < 0)
                ss.ss_family = AF_UNSPEC;
        if (ss.ss_family == AF_INET)
                client_set_address(&s->client, AF_INET, (const uint8_t *) &((struct sockaddr_in *) &ss)->sin_addr);
        else if (ss.ss_family == AF_INET6)
                client_set_address(&s->client, AF_INET6, ((struct sockaddr_in6 *) &ss)->sin6_addr.s6_addr);
        else
                client_set_address(&s->client, AF_UNSPEC, NULL);
        session_describe_server(s);
}

/* Closes the connection so that the client reads our last reply: unread input (a pipelined
 * command after QUIT, a TLS record) would make the kernel answer close() with a reset, and a
 * reset discards what the client has not read yet. So: no more writes (FIN), then drop what has
 * arrived, then close. Bounded: at most a few reads of what is already there. */
static void session_close_socket(Session *s) {
        char buf[4096];

        if (s->fd < 0)
                return;
        if (s->listener->kind != LISTENER_SUBMIT) {
                (void) shutdown(s->fd, SHUT_WR);
                for (int i = 0; i < 16 && recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
                        ;
        }
        s->fd = safe_close(s->fd);
}

/* The submit listener's per-uid cap (see the top of this file). false: refused, the 421 is
 * queued and the session closes after it. */
static bool session_submit_admit(Session *s) {
        Listener *l = s->listener;
        const IpcPeerCaps caps = { .per_uid = s->settings->anvil.connection_count };
        int r = ipc_peers_admit(&l->uids, &caps, s->client.uid, &s->client.uid_trusted);
        if (r >= 0) {
                s->client.uid_counted = true;
                return true;
        }
        unsigned suppressed;
        if (r == -ENOMEM)
                log_oom();
        else if (ipc_log_limit_allow(&l->refusals, now_usec(CLOCK_MONOTONIC), &suppressed)) {
                struct ucred cred = {};
                socklen_t cl = sizeof(cred);
                (void) getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
                char tail[64] = "";
                if (suppressed > 0)
                        snprintf(tail, sizeof(tail), " (%u similar lines not logged)", suppressed);
                log_warning("Connection concurrency limit exceeded: %zu from %s pid=%d for service %s; "
                            "more than %u (smtpd_client_connection_count_limit)%s",
                            ipc_peers_count(&l->uids, s->client.uid) + 1, s->client.id_text, (int) cred.pid, l->name,
                            s->settings->anvil.connection_count, tail);
        }
        session_reply(s, "421 4.7.0 %s Error: too many connections from uid %u", s->settings->myhostname,
                      (unsigned) s->client.uid);
        session_close_after_flush(s);
        return false;
}

int session_new(Listener *l, int fd) {
        Server *srv = l->server;
        Session *s = calloc(1, sizeof(Session));
        int r;

        if (!s) {
                safe_close(fd);
                return log_oom();
        }
        s->server = srv;
        s->listener = l;
        s->fd = fd;
        s->settings = smtpd_settings_ref(l->settings);
        s->phase = PHASE_COMMAND;
        s->last_cmd = "CONNECT";
        s->in.limit = 0;
        session_describe_peer(s);
        if (smtpd_proxy_expected(s))
                s->phase = PHASE_PROXY;   /* the addresses come from the load balancer's header */

        s->next = srv->sessions;
        if (srv->sessions)
                srv->sessions->prev = s;
        srv->sessions = s;
        srv->n_sessions++;

        r = sd_event_add_io(srv->event, &s->io, fd, EPOLLIN, on_io, s);
        if (r >= 0)
                r = sd_event_add_time_relative(srv->event, &s->timer, CLOCK_MONOTONIC,
                                               s->phase == PHASE_PROXY ? s->settings->upstream_proxy_timeout_usec
                                                                       : s->settings->timeout_usec,
                                               USEC_PER_SEC, on_timer, s);
        if (r < 0) {
                log_warning_errno(r, "Failed to set up session for %s: %m", s->client.id_text);
                session_free(s);
                return r;
        }
        if (l->kind == LISTENER_SUBMIT && !session_submit_admit(s)) {
                (void) session_flush(s);
                return 0;
        }
        if (s->phase == PHASE_PROXY)
                (void) smtpd_proxy_start(s);   /* the header comes next, unless the peer may not send one */
        else
                session_connect(s);
        return 0;
}

/* The client's address is final (from the socket or a PROXY header): the screening stage
 * first (smtpd-screen.c; session_screen_done() comes back here), then its exclusions, its name,
 * "connect from", anvil and the greeting. May free the session. */
static void session_connect(Session *s) {
        if (smtpd_screen_start(s))
                return;
        session_connect_client(s);
}

void session_enter_screen(Session *s, usec_t wait_usec) {
        s->phase = PHASE_SCREEN;
        (void) sd_event_source_set_time_relative(s->timer, wait_usec);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        session_update_events(s);
}

void session_screen_done(Session *s) {
        assert(s->phase == PHASE_SCREEN);
        s->phase = PHASE_COMMAND;
        session_touch(s);
        session_connect_client(s);
}

static void session_connect_client(Session *s) {
        s->client.bare_newline = s->settings->bare_newline;
        if (s->client.bare_newline == BARE_NEWLINE_YES &&
            smtpd_netlist_match(&s->settings->bare_newline_exclusions, &s->client) > 0)
                s->client.bare_newline = BARE_NEWLINE_NORMALIZE;   /* smtpd_forbid_bare_newline_exclusions */
        if (smtpd_peername_start(s) > 0)
                return;   /* greeted when the client's name is known */
        session_start(s);
        if (s->phase != PHASE_WAIT)
                (void) session_flush(s);
}

void session_proxy_done(Session *s, bool local, int family, const uint8_t *client_addr, unsigned client_port,
                        const uint8_t *server_addr, unsigned server_port) {
        assert(s->phase == PHASE_PROXY);
        s->phase = PHASE_COMMAND;
        if (!local) {
                int server_family;
                uint8_t server_bytes[16];
                client_set_address(&s->client, family, client_addr);
                s->client.port = client_port;
                addr_normalize(family, server_addr, &server_family, server_bytes);
                inet_ntop(server_family, server_bytes, s->client.server_addr, sizeof(s->client.server_addr));
                s->client.server_port = server_port;
        }
        session_touch(s);   /* from the proxy's timeout to smtpd_timeout */
        session_connect(s);
}

/* The greeting once postern-anvil allowed the connection (smtpd_anvil_check; when it refused,
 * it has replied 421 and the session is closing). Implicit TLS: the handshake starts at the next
 * session_flush(), and the greeting follows it. */
static void session_after_anvil(Session *s, bool allowed, void *userdata) {
        if (!allowed)
                return;
        if (smtpd_tls_implicit(s)) {
                session_enter_tls(s);
                return;
        }
        command_greet(s);   /* the 220, or the connect restrictions' refusal; may wait */
}

void session_start(Session *s) {
        log_fields(LOG_INFO, &(LogFields) { .client_address = s->client.addr[0] ? s->client.addr : NULL },
                   "connect from %s", s->client.id_text);
        smtpd_metrics_connect();
        if (!smtpd_anvil_check(s, ANVIL_EVENT_CONNECT, session_after_anvil, NULL, NULL))
                session_after_anvil(s, true, NULL);
}

void session_free(Session *s) {
        if (!s)
                return;
        Server *srv = s->server;

        /* a refused submit session logged its (rate-limited) line instead; a session that never
         * got past its PROXY header logged why, and no "connect from" */
        if (s->screen)
                smtpd_screen_session_free(s);   /* "DISCONNECT [addr]:port" instead */
        else if ((s->listener->kind != LISTENER_SUBMIT || s->client.uid_counted) && s->phase != PHASE_PROXY)
                command_log_disconnect(s);
        if (s->prev)
                s->prev->next = s->next;
        else
                srv->sessions = s->next;
        if (s->next)
                s->next->prev = s->prev;
        srv->n_sessions--;
        if (s->screen_post)
                srv->screen_post--;

        if (s->job)
                s->job->session = NULL;   /* the committer finishes it and frees it */
        if (s->phase == PHASE_WAIT && s->wait_cancel)
                s->wait_cancel(s->wait_userdata);   /* the operation forgets the session */
        smtpd_anvil_disconnect(s);   /* after the cancel: it may resume other sessions */
        smtpd_milter_session_free(s);
        if (s->client.uid_counted)
                ipc_peers_release(&s->listener->uids, s->client.uid, s->client.uid_trusted);
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->timer);
        if (s->client.tls && s->client.tls_active)
                tls_conn_bye(s->client.tls);   /* close_notify if the socket takes it now */
        tls_conn_free(s->client.tls);
        free(s->client.ccert);
        session_close_socket(s);
        strbuf_done(&s->in);
        strbuf_done(&s->out);
        smtpd_auth_session_done(s);
        smtpd_transaction_reset(&s->tx);
        free(s->client.helo);
        free(s->client.sasl_username);
        free(s->client.sasl_method);
        free(s->client.screen_refusal);
        free(s->filtered_command);
        smtpd_check_session_done(s);
        smtpd_settings_unref(s->settings);
        free(s);
}

void session_reply_raw(Session *s, const char *text) {
        if (strbuf_puts(&s->out, text) < 0) {
                log_oom();
                s->phase = PHASE_CLOSING;
        }
}

void session_reply(Session *s, const char *fmt, ...) {
        char buf[1024];
        va_list ap;

        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        size_t len = MIN((size_t) n, sizeof(buf) - 3);
        if (len > 4 && (command_ehlo_discard(s) & EHLO_ENHANCEDSTATUSCODES)) {
                /* ENHANCEDSTATUSCODES is hidden: "250 2.1.0 Ok" goes out as "250 Ok". */
                size_t code = 4;
                while (code < len && (isdigit((unsigned char) buf[code]) || buf[code] == '.'))
                        code++;
                if (code > 4 && code < len && buf[code] == ' ' && memchr(buf + 4, '.', code - 4)) {
                        memmove(buf + 4, buf + code + 1, len - code - 1);
                        len -= code - 3;
                }
        }
        /* Never let client-supplied text break the reply framing. */
        for (size_t i = 0; i < len; i++)
                if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\0')
                        buf[i] = ' ';
        buf[len++] = '\r';
        buf[len++] = '\n';
        buf[len] = '\0';
        s->last_code = atoi(buf);
        if (s->last_code >= 400)
                s->error_count++;
        session_reply_raw(s, buf);
}

static void session_update_events(Session *s) {
        uint32_t ev = 0;
        if (s->want_write)
                ev = EPOLLOUT;
        else if (s->phase == PHASE_COMMAND || s->phase == PHASE_DATA || s->phase == PHASE_BDAT)
                ev = EPOLLIN;
        else if (s->phase == PHASE_PROXY || s->phase == PHASE_SCREEN)
                ev = EPOLLIN;
        else if (s->phase == PHASE_TLS && s->client.tls)
                ev = tls_conn_want_write(s->client.tls) ? EPOLLOUT : EPOLLIN;   /* handshake */
        (void) sd_event_source_set_io_events(s->io, ev);
}

bool session_flush(Session *s) {
        while (s->out.len > 0) {
                ssize_t n = smtpd_io_write(s, s->out.data, s->out.len);
                if (n < 0) {
                        if (n == -EINTR)
                                continue;
                        if (n == -EAGAIN || n == -EWOULDBLOCK) {
                                s->want_write = true;
                                session_update_events(s);
                                return true;
                        }
                        log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
                        session_free(s);
                        return false;
                }
                strbuf_consume(&s->out, (size_t) n);
        }
        strbuf_done(&s->out);
        s->want_write = false;
        if (s->phase == PHASE_CLOSING) {
                session_free(s);
                return false;
        }
        if (s->phase == PHASE_TLS && !s->client.tls)
                return smtpd_tls_start(s);   /* the 220 to STARTTLS is out */
        session_update_events(s);
        return true;
}

void session_close_after_flush(Session *s) {
        s->phase = PHASE_CLOSING;
}

static void session_take_line(Session *s, size_t eol) {
        /* eol indexes the '\n'; the command is [0, eol) without a trailing '\r'. */
        size_t len = eol;
        bool crlf = len > 0 && s->in.data[len - 1] == '\r';
        if (crlf)
                len--;
        if (!crlf && s->client.bare_newline == BARE_NEWLINE_YES) {
                session_reply(s, "521 5.5.2 %s Error: bare <LF> received", s->settings->myhostname);
                log_info("disconnect: bare <LF> received from %s", s->client.id_text);
                strbuf_reset(&s->in);
                session_close_after_flush(s);
                return;
        }
        _cleanup_free_ char *line = malloc(len + 1);
        if (!line) {
                log_oom();
                session_close_after_flush(s);
                return;
        }
        memcpy(line, s->in.data, len);
        line[len] = '\0';
        strbuf_consume(&s->in, eol + 1);
        command_execute(s, line, len);
}

static void session_line_too_long(Session *s) {
        if (s->auth) {
                smtpd_auth_line_too_long(s);   /* ends the AUTH exchange */
                return;
        }
        s->cmd_total[CMD_UNKNOWN]++;
        session_reply(s, "500 5.5.0 Error: line too long");
}

void session_process_input(Session *s) {
        for (;;) {
                if (s->out.len > OUTPUT_HIGH_WATER) {
                        s->output_full = true;   /* write first; session_run() comes back */
                        return;
                }

                if (s->phase == PHASE_DATA) {
                        data_process(s);
                        if (s->phase == PHASE_DATA)
                                return;
                        continue;
                }
                if (s->phase == PHASE_BDAT) {
                        bdat_process(s);
                        if (s->phase == PHASE_BDAT)
                                return;
                        continue;
                }
                if (s->phase != PHASE_COMMAND || s->in.len == 0)
                        return;

                char *nl = memchr(s->in.data, '\n', s->in.len);
                if (s->skip_line) {
                        if (!nl) {
                                strbuf_reset(&s->in);
                                return;
                        }
                        strbuf_consume(&s->in, (size_t) (nl - s->in.data) + 1);
                        s->skip_line = false;
                        continue;
                }
                if (s->error_count >= s->settings->hard_error_limit) {
                        log_info("too many errors after %s from %s", s->last_cmd, s->client.id_text);
                        session_reply(s, "421 4.7.0 %s Error: too many errors", s->settings->myhostname);
                        session_close_after_flush(s);
                        return;
                }
                size_t limit = s->auth ? smtpd_auth_line_limit(s) : s->settings->line_length_limit;
                if (!nl) {
                        if (s->in.len > limit) {
                                session_line_too_long(s);
                                strbuf_reset(&s->in);
                                s->skip_line = true;
                        }
                        return;
                }
                size_t eol = (size_t) (nl - s->in.data);
                if (eol > limit) {
                        session_line_too_long(s);
                        strbuf_consume(&s->in, eol + 1);
                        continue;
                }
                session_take_line(s, eol);
        }
}

/* Processes input and writes replies until the input is used up, the session pauses, or the
 * client stops reading. May free the session. */
static void session_run(Session *s) {
        for (;;) {
                s->output_full = false;
                session_process_input(s);
                if ((s->phase == PHASE_WAIT || s->phase == PHASE_COMMIT) && !s->output_full)
                        return;   /* replies held: they go out with the answer's (see session_wait()) */
                bool full = s->output_full;
                if (!session_flush(s))
                        return;
                if (!full || s->want_write)
                        return;
        }
}

SessionPhase session_phase(const Session *s) {
        return s->phase;
}

bool session_waiting(const Session *s) {
        return s->phase == PHASE_WAIT;
}

/* The phase a transition applies to: the one the session returns to when it is waiting (a
 * restriction's finish callback may run inside a wait of its own). */
static SessionPhase *session_next_phase(Session *s) {
        return s->phase == PHASE_WAIT ? &s->wait_prev : &s->phase;
}

void session_enter_command(Session *s) {
        *session_next_phase(s) = PHASE_COMMAND;
}

void session_enter_data(Session *s) {
        *session_next_phase(s) = PHASE_DATA;
}

void session_enter_bdat(Session *s) {
        *session_next_phase(s) = PHASE_BDAT;
}

void session_enter_commit(Session *s, CommitJob *job) {
        s->job = job;
        *session_next_phase(s) = PHASE_COMMIT;
}

void session_enter_tls(Session *s) {
        *session_next_phase(s) = PHASE_TLS;
}

void session_wait(Session *s, void (*cancel)(void *userdata), void *userdata) {
        assert(s->phase != PHASE_WAIT);
        s->wait_prev = s->phase;
        s->wait_cancel = cancel;
        s->wait_userdata = userdata;
        s->phase = PHASE_WAIT;
        session_update_events(s);
}

void session_resume(Session *s, SessionResume how) {
        if (s->phase == PHASE_WAIT) {
                s->phase = s->wait_prev;
                s->wait_cancel = NULL;
                s->wait_userdata = NULL;
                session_update_events(s);
        } else if (s->phase == PHASE_COMMIT) {
                s->job = NULL;
                s->phase = PHASE_COMMAND;
        }
        if (how == SESSION_RESUME_ONLY)
                return;
        if (s->server->stopping) {
                session_close_after_flush(s);
                (void) session_flush(s);
                return;
        }
        session_touch(s);
        session_run(s);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Session *s = userdata;

        if (s->want_write && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                if (!session_flush(s))
                        return 0;
                if (s->want_write)
                        return 0;
                /* Output drained: continue with input that was left waiting. */
                session_run(s);
                return 0;
        }
        if (s->phase == PHASE_TLS) {
                smtpd_tls_on_io(s);   /* handshake step; may free the session */
                return 0;
        }
        if (s->phase == PHASE_PROXY) {
                smtpd_proxy_on_io(s);   /* may free the session, or greet */
                return 0;
        }
        if (s->phase == PHASE_SCREEN) {
                smtpd_screen_on_io(s);   /* may free the session */
                return 0;
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        if (s->phase != PHASE_COMMAND && s->phase != PHASE_DATA && s->phase != PHASE_BDAT) {
                /* Paused (commit in progress): only a dead peer matters. */
                if (revents & (EPOLLHUP | EPOLLERR)) {
                        log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
                        session_free(s);
                }
                return 0;
        }

        char buf[READ_CHUNK];
        ssize_t n = smtpd_io_read(s, buf, sizeof(buf));
        if (n < 0) {
                if (n == -EAGAIN || n == -EINTR)
                        return 0;
                log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
                session_free(s);
                return 0;
        }
        if (n == 0) {
                log_info("lost connection after %s from %s", s->last_cmd, s->client.id_text);
                session_free(s);
                return 0;
        }
        if (s->skip_line && s->phase == PHASE_COMMAND && !memchr(buf, '\n', (size_t) n)) {
                /* Still inside an overlong line: drop it without buffering. */
        } else if (strbuf_append(&s->in, buf, (size_t) n) < 0) {
                log_oom();
                session_free(s);
                return 0;
        }
        /* GnuTLS may hold the rest of a record it decrypted; the socket will not announce it. */
        while (s->client.tls && tls_conn_pending(s->client.tls) > 0) {
                n = smtpd_io_read(s, buf, sizeof(buf));
                if (n <= 0)
                        break;
                if (strbuf_append(&s->in, buf, (size_t) n) < 0) {
                        log_oom();
                        session_free(s);
                        return 0;
                }
        }
        session_touch(s);
        session_run(s);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Session *s = userdata;

        if (s->phase == PHASE_TLS) {
                smtpd_tls_timeout(s);   /* smtpd_starttls_timeout */
                return 0;
        }
        if (s->phase == PHASE_PROXY) {
                smtpd_proxy_timeout(s);   /* smtpd_upstream_proxy_timeout */
                return 0;
        }
        if (s->phase == PHASE_SCREEN) {
                smtpd_screen_timeout(s);   /* postscreen_greet_wait: the verdict */
                return 0;
        }
        if (s->phase == PHASE_COMMIT || s->phase == PHASE_WAIT || s->phase == PHASE_CLOSING) {
                /* Our own work (a commit, a lookup) or a final flush is not the client's
                 * idleness; lookups bound their own time. */
                session_touch(s);
                if (s->phase == PHASE_CLOSING && s->want_write) {
                        session_free(s);   /* the client stopped reading our last words */
                }
                return 0;
        }
        log_info("timeout after %s from %s", s->last_cmd, s->client.id_text);
        session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->settings->myhostname);
        session_close_after_flush(s);
        (void) session_flush(s);
        return 0;
}
