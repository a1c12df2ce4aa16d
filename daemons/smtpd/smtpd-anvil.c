/* smtpd-anvil.c — client connection and rate limits (Postfix's smtpd_client_*_limit) through
 * postern-anvil.
 *
 * All sessions share one connection to <postern_socket_directory>/anvil, opened on first use.
 * Requests are written in order and anvil answers them in order (its server reads a request only
 * after it answered the previous one), so a FIFO of pending requests matches answers to sessions.
 * Each event that awaits an answer (connect before the greeting, MAIL, RCPT, STARTTLS, new TLS,
 * AUTH) is a hook, smtpd_hook_anvil (see smtpd.h): it needs only the client, and answers at once
 * ("go on") when the client is exempt, the limit is off or anvil is unavailable, else later with
 * the refusal in Postfix's words (logged here). smtpd_anvil_check() runs it for a session: the
 * session pauses with session_wait(), then gets the refusal as its reply (and for connect and
 * newtls closes). Disconnects are sent without waiting.
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

/* One request in the FIFO; while done is set it is also a hook operation (SmtpdHookOp). */
typedef struct AnvilRequest AnvilRequest;
struct AnvilRequest {
        AnvilRequest *next;
        AnvilKind kind;
        SmtpdHookDone done;              /* NULL: nobody waits (disconnect, cancelled) */
        void *userdata;
        const SmtpdClient *client;       /* valid while done is set */
        const SmtpdSettings *settings;
        const char *service;
        usec_t deadline;
};

/* A session waiting for its request (smtpd_anvil_check()). */
typedef struct AnvilWait {
        Session *session;
        SmtpdHookOp *op;
        SmtpdAnvilEvent event;
        SmtpdAnvilDone done;
        void *userdata;
        void (*free_userdata)(void *);
} AnvilWait;

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

/* Local submissions (no address) and excepted clients are never counted (a table error counts
 * them). */
static bool exempt(const SmtpdClient *c, const SmtpdSettings *st) {
        return !c->addr[0] || smtpd_netlist_match(&st->anvil.exceptions, c) > 0;
}

/* The session ended while waiting: its answer will be dropped (the request stays in the FIFO,
 * which matches answers to requests by their order). */
static void request_cancel(SmtpdHookOp *op) {
        AnvilRequest *q = (AnvilRequest *) op;
        q->done = NULL;
        q->userdata = NULL;
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

/* The refusal for anvil's numbers, logged; NULL when the client stays within its limits (or
 * anvil did not answer: reply NULL). */
static char *request_decide(const AnvilRequest *q, const IpcRecord *reply) {
        const SmtpdAnvilLimits *l = &q->settings->anvil;
        const char *id = q->client->id_text, *addr = q->client->addr, *host = q->settings->myhostname;
        const char *svc = q->service;
        long long count = 0, rate = 0;
        char *refusal = NULL;
        int k = 0;

        if (!reply || !streq(strempty(ipc_record_get(reply, "status")), "ok"))
                return NULL;
        (void) ipc_record_get_int(reply, "count", &count);
        (void) ipc_record_get_int(reply, "rate", &rate);
        switch (q->kind) {
        case ANVIL_KIND_CONNECT:
                if (l->connection_count && count > l->connection_count)
                        log_warning("Connection concurrency limit exceeded: %lld from %s for service %s",
                                    count, id, svc);
                else if (l->connection_rate && rate > l->connection_rate)
                        log_warning("Connection rate limit exceeded: %lld from %s for service %s", rate, id, svc);
                else
                        break;
                k = asprintf(&refusal, "421 4.7.0 %s Error: too many connections from %s", host, addr);
                break;
        case ANVIL_KIND_MESSAGE:
                if (!l->message_rate || rate <= l->message_rate)
                        break;
                log_warning("Message delivery request rate limit exceeded: %lld from %s for service %s",
                            rate, id, svc);
                k = asprintf(&refusal, "450 4.7.1 Error: too much mail from %s", addr);
                break;
        case ANVIL_KIND_RECIPIENT:
                if (!l->recipient_rate || rate <= l->recipient_rate)
                        break;
                log_warning("Recipient address rate limit exceeded: %lld from %s for service %s", rate, id, svc);
                k = asprintf(&refusal, "452 4.7.1 Error: too many recipients from %s", addr);
                break;
        case ANVIL_KIND_NEWTLS:
                if (!l->newtls_rate || rate <= l->newtls_rate)
                        break;
                log_warning("New TLS session rate limit exceeded: %lld from %s for service %s", rate, id, svc);
                k = asprintf(&refusal, "421 4.7.0 %s Error: too many new TLS sessions from %s", host, addr);
                break;
        case ANVIL_KIND_NEWTLS_STATUS:
                /* Not counted yet: refuse when one more new session would exceed. */
                if (!l->newtls_rate || rate < l->newtls_rate)
                        break;
                log_warning("New TLS session rate limit exceeded: %lld from %s for service %s", rate, id, svc);
                k = asprintf(&refusal, "454 4.7.0 Error: too many new TLS sessions from %s", addr);
                break;
        case ANVIL_KIND_AUTH:
                if (!l->auth_rate || rate <= l->auth_rate)
                        break;
                log_warning("AUTH command rate limit exceeded: %lld from %s for service %s", rate, id, svc);
                k = asprintf(&refusal, "450 4.7.1 Error: too many AUTH commands from %s", addr);
                break;
        case ANVIL_KIND_DISCONNECT:
                break;
        }
        if (refusal)
                smtpd_metrics_anvil_reject(kind_verb[q->kind]);
        if (k < 0) {
                log_oom();
                return NULL;   /* the limit was logged; the client goes on, as when anvil is down */
        }
        return refusal;
}

/* Ends a request: tells whoever waits for it (if anybody still does) what anvil decided. */
static void request_finish(AnvilRequest *q, const IpcRecord *reply) {
        if (q->done) {
                _cleanup_free_ char *refusal = request_decide(q, reply);
                q->done(refusal, q->userdata);
        }
        free(q);
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

/* Queues one request; NULL when it could not be sent (anvil unavailable). A request without
 * done (disconnect) is only sent; the one returned is the caller's operation until it ends. */
static AnvilRequest *anvil_send(Server *srv, AnvilKind kind, const char *service, const char *addr,
                                SmtpdHookDone done, void *userdata) {
        SmtpdAnvil *a = srv->anvil;
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;

        if (!a || srv->stopping || anvil_connect(a) < 0)
                return NULL;
        if (a->n_pending >= ANVIL_PENDING_MAX || a->out.len > ANVIL_OUTPUT_MAX) {
                anvil_fail(a, "too many requests waiting for an answer");
                return NULL;
        }
        AnvilRequest *q = calloc(1, sizeof *q);
        if (!q || ipc_record_add(&req, "request", kind_verb[kind]) < 0 ||
            ipc_record_add(&req, "service", service) < 0 ||
            ipc_record_add(&req, "address", addr) < 0 || ipc_record_format(&req, &a->out) < 0) {
                free(q);
                log_oom();
                return NULL;
        }
        q->kind = kind;
        q->deadline = now_usec(CLOCK_MONOTONIC) + ANVIL_TIMEOUT_USEC;
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
                /* The request is queued without done: anvil_fail() releases it silently. */
                anvil_fail(a, strerror(-r));
                return NULL;
        }
        q->done = done;
        q->userdata = userdata;
        return q;
}

void smtpd_anvil_disconnect(Session *s) {
        SmtpdAnvil *a = s->server->anvil;
        /* Only on the connection that counted it: a new connection holds none of our counts. */
        if (!a || s->anvil_generation == 0 || s->anvil_generation != a->generation || a->fd < 0)
                return;
        s->anvil_generation = 0;
        (void) anvil_send(s->server, ANVIL_KIND_DISCONNECT, s->listener->name, s->client.addr, NULL, NULL);
}

/* ---- smtpd_hook_anvil -------------------------------------------------------------------- */

static const AnvilKind event_kind[] = {
        [ANVIL_EVENT_CONNECT] = ANVIL_KIND_CONNECT, [ANVIL_EVENT_MESSAGE] = ANVIL_KIND_MESSAGE,
        [ANVIL_EVENT_RECIPIENT] = ANVIL_KIND_RECIPIENT, [ANVIL_EVENT_NEWTLS] = ANVIL_KIND_NEWTLS,
        [ANVIL_EVENT_NEWTLS_STATUS] = ANVIL_KIND_NEWTLS_STATUS, [ANVIL_EVENT_AUTH] = ANVIL_KIND_AUTH,
};

/* Connections are reported when any limit is on (anvil's statistics see them), the other
 * events only when their own limit is. */
static bool event_reported(const SmtpdAnvilLimits *l, SmtpdAnvilEvent ev) {
        switch (ev) {
        case ANVIL_EVENT_CONNECT:       return any_limit(l);
        case ANVIL_EVENT_MESSAGE:       return l->message_rate;
        case ANVIL_EVENT_RECIPIENT:     return l->recipient_rate;
        case ANVIL_EVENT_NEWTLS:
        case ANVIL_EVENT_NEWTLS_STATUS: return l->newtls_rate;
        case ANVIL_EVENT_AUTH:          return l->auth_rate;
        }
        return false;
}

static int anvil_start(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a,
                       SmtpdHookDone done, void *userdata, SmtpdHookOp **ret_op, char **ret_action) {
        if ((size_t) a->anvil_event >= ELEMENTSOF(event_kind) || !done || !a->service)
                return -EINVAL;
        AnvilRequest *q = NULL;
        if (event_reported(&a->settings->anvil, a->anvil_event) && !exempt(c, a->settings))
                q = anvil_send(a->server, event_kind[a->anvil_event], a->service, c->addr, done, userdata);
        if (!q) {
                *ret_action = NULL;   /* go on: not reported, or anvil unavailable */
                return 1;
        }
        q->client = c;
        q->settings = a->settings;
        q->service = a->service;
        *ret_op = (SmtpdHookOp *) q;
        return 0;
}

const SmtpdHook smtpd_hook_anvil = {
        .name = "anvil",
        .start = anvil_start,
        .cancel = request_cancel,
};

/* ---- the session's side: waiting for the hook ---------------------------------------------- */

static void wait_free(AnvilWait *w) {
        if (w->free_userdata && w->userdata)
                w->free_userdata(w->userdata);
        free(w);
}

/* The session ended while waiting. */
static void wait_cancel(void *userdata) {
        AnvilWait *w = userdata;
        smtpd_hook_anvil.cancel(w->op);
        wait_free(w);
}

static void wait_done(const char *refusal, void *userdata) {
        AnvilWait *w = userdata;
        Session *s = w->session;

        if (refusal)
                session_reply(s, "%s", refusal);
        /* The wait ends before done(), which may start another one (the connect restrictions
         * after the greeting check, the recipient restrictions after RCPT's). */
        session_resume(s, SESSION_RESUME_ONLY);
        if (refusal && (w->event == ANVIL_EVENT_CONNECT || w->event == ANVIL_EVENT_NEWTLS))
                session_close_after_flush(s);
        if (w->done) {
                w->done(s, !refusal, w->userdata);
                w->userdata = NULL;
        }
        wait_free(w);
        if (!session_waiting(s))
                session_resume(s, SESSION_RESUME_INPUT);
}

bool smtpd_anvil_check(Session *s, SmtpdAnvilEvent event, SmtpdAnvilDone done, void *userdata,
                       void (*free_userdata)(void *)) {
        const SmtpdHookArgs args = {
                .settings = s->settings, .server = s->server, .service = s->listener->name, .anvil_event = event,
        };
        _cleanup_free_ char *action = NULL;
        AnvilWait *w = calloc(1, sizeof *w);

        if (!w) {
                log_oom();
                return false;
        }
        *w = (AnvilWait) { .session = s, .event = event, .done = done, .userdata = userdata,
                           .free_userdata = free_userdata };
        if (smtpd_hook_anvil.start(&s->client, &s->tx, &args, wait_done, w, &w->op, &action) != 0) {
                free(w);   /* not waiting (anvil answers at once only "go on") */
                return false;
        }
        if (event == ANVIL_EVENT_CONNECT)
                s->anvil_generation = s->server->anvil->generation;   /* the disconnect goes there */
        session_wait(s, wait_cancel, w);
        return true;
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
                free(q);
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
