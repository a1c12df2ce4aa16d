/* smtpd-anvil.c — client connection and rate limits (Postfix's smtpd_client_*_limit) through
 * postern-anvil.
 *
 * All sessions share one connection to <postern_socket_directory>/anvil, opened on first use.
 * Requests are written in order and anvil answers them in order (its server reads a request only
 * after it answered the previous one), so a FIFO of pending requests matches answers to sessions.
 * A session that must wait (connect before the greeting, MAIL, RCPT, new TLS, AUTH) pauses with
 * session_wait(); disconnects are sent without waiting.
 *
 * Anvil counts a session's connection per anvil connection: when ours closes, anvil drops what
 * we reported. So every session remembers the connection generation that counted it and sends
 * its disconnect only on that same connection.
 *
 * If anvil is missing, refuses, closes, or does not answer within ANVIL_TIMEOUT_USEC, smtpd logs
 * one warning for the outage, lets every waiting session go on without limits, and tries again
 * on the first event after ANVIL_RETRY_USEC; the first good answer ends the outage (logged).
 * Clients in smtpd_client_event_limit_exceptions (default $mynetworks) and local submissions are
 * never reported; MAIL/RCPT/newtls/AUTH are reported only when their limit is on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "smtpd.h"
#include "ipc/ipc.h"
#include "log/log.h"

#define ANVIL_TIMEOUT_USEC (500 * USEC_PER_MSEC)
#define ANVIL_RETRY_USEC (1 * USEC_PER_SEC)
#define ANVIL_PENDING_MAX 100000          /* requests in flight; more means anvil is stuck */
#define ANVIL_OUTPUT_MAX (4 * 1024 * 1024)

typedef enum AnvilKind {
        ANVIL_KIND_CONNECT,
        ANVIL_KIND_DISCONNECT,
        ANVIL_KIND_MESSAGE,
        ANVIL_KIND_RECIPIENT,
        ANVIL_KIND_NEWTLS,
        ANVIL_KIND_AUTH,
        ANVIL_KIND_NEWTLS_STATUS,
} AnvilKind;

static const char *const kind_verb[] = {
        [ANVIL_KIND_CONNECT] = "connect", [ANVIL_KIND_DISCONNECT] = "disconnect",
        [ANVIL_KIND_MESSAGE] = "message", [ANVIL_KIND_RECIPIENT] = "recipient",
        [ANVIL_KIND_NEWTLS] = "newtls", [ANVIL_KIND_AUTH] = "auth",
        [ANVIL_KIND_NEWTLS_STATUS] = "newtls_status",
};

typedef struct AnvilRequest AnvilRequest;
struct AnvilRequest {
        AnvilRequest *next;
        AnvilKind kind;
        Session *session;                /* NULL: nobody waits (disconnect, session gone) */
        SmtpdAnvilDone done;
        void *userdata;
        void (*free_userdata)(void *);
        usec_t deadline;
};

struct SmtpdAnvil {
        Server *server;
        char *path;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;          /* the oldest request's deadline */
        StrBuf out;
        IpcParser parser;
        AnvilRequest *head, *tail;
        size_t n_pending;
        unsigned generation;             /* of the current connection; 0 before the first */
        usec_t retry_at;                 /* no new connection before this */
        bool down;                       /* the outage was logged; cleared by a good answer */
};

static void anvil_fail(SmtpdAnvil *a, const char *why);

/* The limits themselves are rows of smtpd-settings.c. */
int smtpd_anvil_settings(Conf *c, const char *listener, SmtpdAnvilLimits *l) {
        _cleanup_strv_free_ char **entries = conf_get_list(c, listener, "smtpd_client_event_limit_exceptions");
        if (!entries)
                return log_oom();
        return smtpd_netlist_parse("smtpd_client_event_limit_exceptions", entries, &l->exceptions);
}

void smtpd_anvil_settings_done(SmtpdAnvilLimits *l) {
        smtpd_netlist_done(&l->exceptions);
}

static bool any_limit(const SmtpdAnvilLimits *l) {
        return l->connection_count || l->connection_rate || l->message_rate || l->recipient_rate ||
                l->newtls_rate || l->auth_rate;
}

/* Local submissions and excepted clients are never counted (a table error counts them). */
static bool exempt(Session *s) {
        return s->listener->kind == LISTENER_SUBMIT || !s->client.addr[0] ||
                smtpd_netlist_match(&s->settings->anvil.exceptions, s) > 0;
}

static void request_free(AnvilRequest *q) {
        if (q->free_userdata && q->userdata)
                q->free_userdata(q->userdata);
        free(q);
}

/* The session ended while waiting: its answer will be dropped. */
static void request_cancel(void *userdata) {
        AnvilRequest *q = userdata;
        q->session = NULL;
}

static void anvil_close(SmtpdAnvil *a) {
        a->io = sd_event_source_disable_unref(a->io);
        a->fd = safe_close(a->fd);
        strbuf_done(&a->out);
        ipc_parser_done(&a->parser);
        a->parser = (IpcParser) IPC_PARSER_INIT;
        if (a->timer)
                (void) sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
}

static void arm_timer(SmtpdAnvil *a) {
        if (!a->timer)
                return;
        if (!a->head) {
                (void) sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(a->timer, a->head->deadline);
        (void) sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
}

/* Ends a request: for a waiting session, decides with anvil's numbers (or lets it go on when
 * reply is NULL), calls done and resumes the session. */
static void request_finish(AnvilRequest *q, const IpcRecord *reply) {
        Session *s = q->session;
        if (!s) {
                request_free(q);
                return;
        }
        const SmtpdAnvilLimits *l = &s->settings->anvil;
        long long count = 0, rate = 0;
        bool allowed = true;
        if (reply && streq(strempty(ipc_record_get(reply, "status")), "ok")) {
                (void) ipc_record_get_int(reply, "count", &count);
                (void) ipc_record_get_int(reply, "rate", &rate);
                const char *host = s->settings->myhostname, *svc = s->listener->name;
                switch (q->kind) {
                case ANVIL_KIND_CONNECT:
                        if (l->connection_count && count > l->connection_count) {
                                log_warning("Connection concurrency limit exceeded: %lld from %s for service %s",
                                            count, s->client.id_text, svc);
                                allowed = false;
                        } else if (l->connection_rate && rate > l->connection_rate) {
                                log_warning("Connection rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                allowed = false;
                        }
                        if (!allowed)
                                session_reply(s, "421 4.7.0 %s Error: too many connections from %s", host, s->client.addr);
                        break;
                case ANVIL_KIND_MESSAGE:
                        if (l->message_rate && rate > l->message_rate) {
                                log_warning("Message delivery request rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                session_reply(s, "450 4.7.1 Error: too much mail from %s", s->client.addr);
                                allowed = false;
                        }
                        break;
                case ANVIL_KIND_RECIPIENT:
                        if (l->recipient_rate && rate > l->recipient_rate) {
                                log_warning("Recipient address rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                session_reply(s, "452 4.7.1 Error: too many recipients from %s", s->client.addr);
                                allowed = false;
                        }
                        break;
                case ANVIL_KIND_NEWTLS:
                        if (l->newtls_rate && rate > l->newtls_rate) {
                                log_warning("New TLS session rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                session_reply(s, "421 4.7.0 %s Error: too many new TLS sessions from %s",
                                              host, s->client.addr);
                                allowed = false;
                        }
                        break;
                case ANVIL_KIND_NEWTLS_STATUS:
                        /* Not counted yet: refuse when one more new session would exceed. */
                        if (l->newtls_rate && rate >= l->newtls_rate) {
                                log_warning("New TLS session rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                session_reply(s, "454 4.7.0 Error: too many new TLS sessions from %s", s->client.addr);
                                allowed = false;
                        }
                        break;
                case ANVIL_KIND_AUTH:
                        if (l->auth_rate && rate > l->auth_rate) {
                                log_warning("AUTH command rate limit exceeded: %lld from %s for service %s",
                                            rate, s->client.id_text, svc);
                                session_reply(s, "450 4.7.1 Error: too many AUTH commands from %s", s->client.addr);
                                allowed = false;
                        }
                        break;
                case ANVIL_KIND_DISCONNECT:
                        break;
                }
        }
        /* The wait ends before done(), which may start another one (the connect restrictions
         * after the greeting check, the recipient restrictions after RCPT's). */
        session_resume(s, SESSION_RESUME_ONLY);
        if (!allowed && (q->kind == ANVIL_KIND_CONNECT || q->kind == ANVIL_KIND_NEWTLS))
                session_close_after_flush(s);
        if (q->done)
                q->done(s, allowed, q->userdata);
        else if (q->free_userdata && q->userdata)
                q->free_userdata(q->userdata);
        q->userdata = NULL;
        request_free(q);
        if (!session_waiting(s))
                session_resume(s, SESSION_RESUME_INPUT);
}

/* Takes the whole queue so that sessions resumed below may queue new requests safely. */
static void release_all(SmtpdAnvil *a) {
        AnvilRequest *q = a->head;
        a->head = a->tail = NULL;
        a->n_pending = 0;
        while (q) {
                AnvilRequest *next = q->next;
                request_finish(q, NULL);
                q = next;
        }
}

static void anvil_fail(SmtpdAnvil *a, const char *why) {
        if (!a->down)
                log_warning("problem talking to server %s: %s; client rate limits are off until it answers",
                            a->path, why);
        a->down = true;
        anvil_close(a);
        a->retry_at = now_usec(CLOCK_MONOTONIC) + ANVIL_RETRY_USEC;
        release_all(a);
}

static int anvil_flush(SmtpdAnvil *a) {
        while (a->out.len > 0) {
                ssize_t n = send(a->fd, a->out.data, a->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                strbuf_consume(&a->out, (size_t) n);
        }
        if (a->out.len == 0)
                strbuf_done(&a->out);
        (void) sd_event_source_set_io_events(a->io, a->out.len > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
        return 0;
}

static void handle_reply(SmtpdAnvil *a, IpcRecord *reply) {
        AnvilRequest *q = a->head;
        if (!q) {
                anvil_fail(a, "answer without a request");
                return;
        }
        a->head = q->next;
        if (!a->head)
                a->tail = NULL;
        a->n_pending--;
        if (a->down) {
                log_info("server %s answers again; client rate limits apply", a->path);
                a->down = false;
        }
        arm_timer(a);
        request_finish(q, reply);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        SmtpdAnvil *a = userdata;
        unsigned gen = a->generation;

        if (revents & EPOLLOUT) {
                int r = anvil_flush(a);
                if (r < 0) {
                        errno = -r;
                        anvil_fail(a, strerror(-r));
                        return 0;
                }
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;

        char buf[16384];
        ssize_t n = recv(a->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                anvil_fail(a, strerror(errno));
                return 0;
        }
        if (n == 0) {
                anvil_fail(a, "connection closed");
                return 0;
        }
        size_t off = 0;
        while (off < (size_t) n && a->fd >= 0 && a->generation == gen) {
                _cleanup_ipc_record_ IpcRecord rec = IPC_RECORD_INIT;
                size_t used = 0;
                int r = ipc_parser_feed(&a->parser, buf + off, (size_t) n - off, &used, &rec);
                off += used;
                if (r < 0) {
                        anvil_fail(a, "malformed answer");
                        return 0;
                }
                if (r == 0)
                        break;
                handle_reply(a, &rec);   /* may resume sessions, which may send more */
        }
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        SmtpdAnvil *a = userdata;
        if (a->head && usec >= a->head->deadline)
                anvil_fail(a, "timeout");
        else
                arm_timer(a);
        return 0;
}

/* Connects unless connected, or within the retry delay after a failure. */
static int anvil_connect(SmtpdAnvil *a) {
        if (a->fd >= 0)
                return 0;
        if (!a->path)
                return -ENOENT;
        if (now_usec(CLOCK_MONOTONIC) < a->retry_at)
                return -EAGAIN;

        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(a->path) >= sizeof sa.sun_path) {
                anvil_fail(a, "socket path too long");
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, a->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                safe_close(fd);
                anvil_fail(a, strerror(-r));
                return r;
        }
        int r = sd_event_add_io(a->server->event, &a->io, fd, EPOLLIN, on_io, a);
        if (r < 0) {
                safe_close(fd);
                anvil_fail(a, strerror(-r));
                return r;
        }
        a->fd = fd;
        a->generation++;
        if (a->generation == 0)
                a->generation = 1;
        return 0;
}

/* Queues one request; false when it could not be sent (anvil unavailable). */
static bool anvil_send(Session *s, AnvilKind kind, SmtpdAnvilDone done, void *userdata,
                       void (*free_userdata)(void *)) {
        SmtpdAnvil *a = s->server->anvil;
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;

        if (!a || s->server->stopping || anvil_connect(a) < 0)
                return false;
        if (a->n_pending >= ANVIL_PENDING_MAX || a->out.len > ANVIL_OUTPUT_MAX) {
                anvil_fail(a, "too many requests waiting for an answer");
                return false;
        }
        AnvilRequest *q = calloc(1, sizeof *q);
        if (!q || ipc_record_add(&req, "request", kind_verb[kind]) < 0 ||
            ipc_record_add(&req, "service", s->listener->name) < 0 ||
            ipc_record_add(&req, "address", s->client.addr) < 0 || ipc_record_format(&req, &a->out) < 0) {
                free(q);
                log_oom();
                return false;
        }
        q->kind = kind;
        q->deadline = now_usec(CLOCK_MONOTONIC) + ANVIL_TIMEOUT_USEC;
        if (done) {
                q->session = s;
                q->done = done;
                q->userdata = userdata;
                q->free_userdata = free_userdata;
        }
        if (a->tail)
                a->tail->next = q;
        else
                a->head = q;
        a->tail = q;
        a->n_pending++;
        if (a->head == q)
                arm_timer(a);

        int r = anvil_flush(a);
        if (r < 0) {
                /* The request is queued: anvil_fail() releases it (a waiting session goes on). */
                q->session = NULL;
                q->userdata = NULL;
                anvil_fail(a, strerror(-r));
                return false;
        }
        if (kind == ANVIL_KIND_CONNECT)
                s->anvil_generation = a->generation;
        if (done)
                session_wait(s, request_cancel, q);
        return !!done;
}

bool smtpd_anvil_connect(Session *s, SmtpdAnvilDone done, void *userdata) {
        if (!any_limit(&s->settings->anvil) || exempt(s))
                return false;
        return anvil_send(s, ANVIL_KIND_CONNECT, done, userdata, NULL);
}

void smtpd_anvil_disconnect(Session *s) {
        SmtpdAnvil *a = s->server->anvil;
        /* Only on the connection that counted it: a new connection holds none of our counts. */
        if (!a || s->anvil_generation == 0 || s->anvil_generation != a->generation || a->fd < 0)
                return;
        s->anvil_generation = 0;
        (void) anvil_send(s, ANVIL_KIND_DISCONNECT, NULL, NULL, NULL);
}

static bool rate_event(Session *s, AnvilKind kind, unsigned limit, SmtpdAnvilDone done, void *userdata,
                       void (*free_userdata)(void *)) {
        if (!limit || exempt(s))
                return false;
        return anvil_send(s, kind, done, userdata, free_userdata);
}

bool smtpd_anvil_message(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *)) {
        return rate_event(s, ANVIL_KIND_MESSAGE, s->settings->anvil.message_rate, done, userdata, free_userdata);
}

bool smtpd_anvil_recipient(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *)) {
        return rate_event(s, ANVIL_KIND_RECIPIENT, s->settings->anvil.recipient_rate, done, userdata, free_userdata);
}

bool smtpd_anvil_newtls(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *)) {
        return rate_event(s, ANVIL_KIND_NEWTLS, s->settings->anvil.newtls_rate, done, userdata, free_userdata);
}

bool smtpd_anvil_newtls_status(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *)) {
        return rate_event(s, ANVIL_KIND_NEWTLS_STATUS, s->settings->anvil.newtls_rate, done, userdata, free_userdata);
}

bool smtpd_anvil_auth(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *)) {
        return rate_event(s, ANVIL_KIND_AUTH, s->settings->anvil.auth_rate, done, userdata, free_userdata);
}

int smtpd_anvil_new(Server *srv, const char *path, SmtpdAnvil **ret) {
        SmtpdAnvil *a = calloc(1, sizeof *a);
        if (!a)
                return log_oom();
        a->server = srv;
        a->fd = -1;
        a->parser = (IpcParser) IPC_PARSER_INIT;
        a->path = path ? strdup(path) : NULL;
        int r = sd_event_add_time(srv->event, &a->timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC * 10, on_timer, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
        if (r < 0 || (path && !a->path)) {
                smtpd_anvil_free(a);
                return log_error_errno(r < 0 ? r : -ENOMEM, "Failed to set up the anvil client: %m");
        }
        *ret = a;
        return 0;
}

/* Waiting sessions must be gone first (server_done frees them before). */
SmtpdAnvil *smtpd_anvil_free(SmtpdAnvil *a) {
        if (!a)
                return NULL;
        anvil_close(a);
        for (AnvilRequest *q = a->head, *next; q; q = next) {
                next = q->next;
                request_free(q);
        }
        sd_event_source_disable_unref(a->timer);
        free(a->path);
        free(a);
        return NULL;
}

/* A reload may move postern_socket_directory: the next connection uses the new path. */
void smtpd_anvil_set_path(SmtpdAnvil *a, const char *path) {
        if (!a || !path || (a->path && streq(a->path, path)))
                return;
        char *p = strdup(path);
        if (!p)
                return;
        free(a->path);
        a->path = p;
}
