/* smtpd-policy.c — check_policy_service: Postfix's SMTPD policy delegation protocol.
 *
 * A request is "name=value" lines (request=smtpd_access_policy, protocol_state, sender,
 * recipient, client_address, ...) ended by an empty line; the server answers "action=..." and
 * an empty line, and the action is handed to the restriction engine like an access(5) result.
 * Connections (unix:/path or inet:host:port, numeric host or localhost) are non-blocking on
 * sd-event and kept per service for reuse: at most one request at a time on each, closed after
 * smtpd_policy_service_max_idle unused, smtpd_policy_service_max_ttl after opening, or
 * smtpd_policy_service_request_limit requests. Each attempt may take
 * smtpd_policy_service_timeout; a failed attempt (cannot connect, closed, timeout, an answer
 * without action=) is retried after smtpd_policy_service_retry_delay up to
 * smtpd_policy_service_try_limit times, then smtpd_policy_service_default_action applies. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"
#include "basic/socket-util.h"
#include "log/log.h"
#include "config.h"

#define POLICY_ANSWER_MAX 8192

typedef struct PolicyRequest PolicyRequest;

typedef struct PolicyConn {
        struct PolicyConn *next;
        char *service;
        int fd;
        sd_event_source *io;
        sd_event_source *idle_timer;
        usec_t opened;
        unsigned n_requests;
        bool connected;
        PolicyRequest *req;        /* NULL while idle */
        size_t out_off;
        StrBuf in;
} PolicyConn;

struct PolicyRequest {
        const SmtpdClient *client;
        const SmtpdSettings *settings;
        Server *server;
        SmtpdHookDone done;
        void *userdata;
        char *service;
        char *text;                /* the request record */
        unsigned attempts;
        PolicyConn *conn;
        sd_event_source *timer;    /* attempt timeout or retry delay */
};

static PolicyConn *idle_conns;     /* reusable connections of all services */

static usec_t now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static void conn_free(PolicyConn *c) {
        if (!c)
                return;
        for (PolicyConn **p = &idle_conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->idle_timer);
        safe_close(c->fd);
        strbuf_done(&c->in);
        free(c->service);
        free(c);
}

static void request_free(PolicyRequest *r) {
        if (!r)
                return;
        if (r->conn) {
                r->conn->req = NULL;
                conn_free(r->conn);   /* an answer may still come: never reuse this one */
        }
        sd_event_source_disable_unref(r->timer);
        free(r->service);
        free(r->text);
        free(r);
}

static void request_cancel(SmtpdHookOp *op) {
        request_free((PolicyRequest *) op);
}

static void request_finish(PolicyRequest *r, const char *action) {
        SmtpdHookDone done = r->done;
        void *userdata = r->userdata;
        _cleanup_free_ char *copy = action ? strdup(action) : NULL;

        request_free(r);
        done(copy, userdata);
}

static void attempt(PolicyRequest *r);

static int on_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        PolicyRequest *r = userdata;
        r->timer = sd_event_source_disable_unref(r->timer);
        attempt(r);
        return 0;
}

/* One attempt failed: drop its connection, retry or give up with the default action. */
static void attempt_failed(PolicyRequest *r, const char *why) {
        const SmtpdSettings *set = r->settings;

        if (r->conn) {
                r->conn->req = NULL;
                conn_free(r->conn);
                r->conn = NULL;
        }
        r->timer = sd_event_source_disable_unref(r->timer);
        log_warning("problem talking to server %s: %s", r->service, why);
        if (r->attempts < set->policy_try_limit &&
            sd_event_add_time_relative(r->server->event, &r->timer, CLOCK_MONOTONIC,
                                       set->policy_retry_delay_usec, 1000, on_retry, r) >= 0)
                return;
        log_warning("%s: policy service %s unavailable after %u attempt(s); using "
                    "smtpd_policy_service_default_action", r->client->id_text, r->service, r->attempts);
        request_finish(r, set->policy_default_action);
}

static int on_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        attempt_failed(userdata, "timeout");
        return 0;
}

static int on_idle_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        conn_free(userdata);
        return 0;
}

/* The answer is complete (ends in an empty line): find action=. */
static void answer_done(PolicyRequest *r, PolicyConn *c) {
        const SmtpdSettings *set = r->settings;
        _cleanup_free_ char *action = NULL;
        char *save = NULL;

        for (char *line = strtok_r(c->in.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                size_t n = strlen(line);
                if (n && line[n - 1] == '\r')
                        line[n - 1] = '\0';
                const char *v = startswith(line, "action=");
                if (v && !action)
                        action = strdup(v);
        }
        strbuf_reset(&c->in);
        if (!action || !*action) {
                attempt_failed(r, "policy server answer without action= attribute");
                return;
        }
        /* Keep the connection for the next request, unless it has served its time. */
        r->conn = NULL;
        c->req = NULL;
        c->n_requests++;
        if ((set->policy_request_limit > 0 && c->n_requests >= set->policy_request_limit) ||
            now() - c->opened >= set->policy_max_ttl_usec ||
            sd_event_source_set_io_events(c->io, EPOLLIN) < 0 ||
            sd_event_add_time_relative(r->server->event, &c->idle_timer, CLOCK_MONOTONIC,
                                       set->policy_max_idle_usec, USEC_PER_SEC, on_idle_timeout, c) < 0)
                conn_free(c);
        else {
                c->next = idle_conns;
                idle_conns = c;
        }
        request_finish(r, action);
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        PolicyConn *c = userdata;
        PolicyRequest *r = c->req;
        char buf[2048];

        if (!r) {   /* idle: the server closed it (or sent junk); forget it */
                conn_free(c);
                return 0;
        }
        if (!c->connected && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                        attempt_failed(r, strerror(err ? err : errno));
                        return 0;
                }
                c->connected = true;
        }
        if (c->connected && c->out_off < strlen(r->text) && (revents & EPOLLOUT)) {
                ssize_t n = send(fd, r->text + c->out_off, strlen(r->text) - c->out_off, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        attempt_failed(r, strerror(errno));
                        return 0;
                }
                if (n > 0)
                        c->out_off += (size_t) n;
                if (c->out_off >= strlen(r->text))
                        (void) sd_event_source_set_io_events(c->io, EPOLLIN);
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0) {
                        attempt_failed(r, n == 0 ? "connection closed by server" : strerror(errno));
                        return 0;
                }
                if (c->in.len + (size_t) n > POLICY_ANSWER_MAX) {
                        attempt_failed(r, "policy server answer too long");
                        return 0;
                }
                if (strbuf_append(&c->in, buf, (size_t) n) < 0) {
                        attempt_failed(r, "out of memory");
                        return 0;
                }
                const char *d = c->in.data;
                size_t l = c->in.len;
                if ((l >= 2 && d[l - 2] == '\n' && d[l - 1] == '\n') ||
                    (l == 1 && d[0] == '\n') ||
                    (l >= 4 && memcmp(d + l - 4, "\r\n\r\n", 4) == 0) || (l >= 3 && memcmp(d + l - 3, "\n\r\n", 3) == 0))
                        answer_done(r, c);
        }
        return 0;
}

/* Opens a non-blocking connection to unix:/path, inet:host:port or a plain path (also for
 * smtpd_proxy_filter, smtpd-proxy-filter.c). */
int smtpd_service_connect(const char *service, int *ret_fd, bool *ret_connected) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        const char *rest;
        int r;

        if ((rest = startswith(service, "inet:"))) {
                _cleanup_free_ char *host = NULL;
                const char *colon = strrchr(rest, ':');
                if (!colon || !colon[1])
                        return -EINVAL;
                host = rest[0] == '[' ? strndup(rest + 1, (size_t) (colon - rest - 2)) : strndup(rest, (size_t) (colon - rest));
                if (!host)
                        return -ENOMEM;
                char *end;
                unsigned long port = strtoul(colon + 1, &end, 10);
                if (*end || port == 0 || port > 65535)
                        return -EINVAL;
                r = sockaddr_from_host(host, (uint16_t) port, &ss, &sl);   /* names would need a blocking lookup */
        } else
                r = sockaddr_from_path(startswith(service, "unix:") ? service + 5 : service, &ss, &sl);
        if (r < 0)
                return r;
        r = socket_connect_nonblock(&ss, sl, ret_fd);
        if (r < 0)
                return r;
        *ret_connected = false;   /* learnt from EPOLLOUT + SO_ERROR */
        return 0;
}

static void attempt(PolicyRequest *r) {
        const SmtpdSettings *set = r->settings;
        Server *srv = r->server;
        PolicyConn *c = NULL;
        int k;

        r->attempts++;
        /* A reusable connection of this service, if one is still young enough. */
        for (PolicyConn **p = &idle_conns; *p; ) {
                PolicyConn *i = *p;
                if (streq(i->service, r->service)) {
                        *p = i->next;
                        i->next = NULL;
                        if (now() - i->opened < set->policy_max_ttl_usec) {
                                c = i;
                                break;
                        }
                        conn_free(i);
                        continue;
                }
                p = &i->next;
        }
        if (c) {
                c->idle_timer = sd_event_source_disable_unref(c->idle_timer);
        } else {
                c = calloc(1, sizeof(PolicyConn));
                if (!c || !(c->service = strdup(r->service))) {
                        free(c);
                        attempt_failed(r, "out of memory");
                        return;
                }
                c->fd = -1;
                c->opened = now();
                k = smtpd_service_connect(r->service, &c->fd, &c->connected);
                if (k >= 0)
                        k = sd_event_add_io(srv->event, &c->io, c->fd, EPOLLOUT, on_conn_io, c);
                if (k < 0) {
                        conn_free(c);
                        attempt_failed(r, strerror(-k));
                        return;
                }
        }
        c->req = r;
        c->out_off = 0;
        strbuf_reset(&c->in);
        r->conn = c;
        if (c->connected)
                (void) sd_event_source_set_io_events(c->io, EPOLLIN | EPOLLOUT);
        k = sd_event_add_time_relative(srv->event, &r->timer, CLOCK_MONOTONIC, set->policy_timeout_usec,
                                       1000, on_timeout, r);
        if (k < 0)
                attempt_failed(r, strerror(-k));
}

/* Appends "name=value\n" with line breaks in the value replaced (they would end the record). */
static void attr(StrBuf *b, const char *name, const char *value) {
        (void) strbuf_puts(b, name);
        (void) strbuf_puts(b, "=");
        size_t start = b->len;
        (void) strbuf_puts(b, strempty(value));
        for (size_t i = start; i < b->len; i++)
                if (b->data[i] == '\n' || b->data[i] == '\r')
                        b->data[i] = ' ';
        (void) strbuf_puts(b, "\n");
}

static void attr_num(StrBuf *b, const char *name, unsigned long long v) {
        char t[32];
        snprintf(t, sizeof(t), "%llu", v);
        attr(b, name, t);
}

static char *build_request(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdSettings *set,
                           const char *state, const char *recipient) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        char instance[64];

        /* One value for all requests of a mail transaction (Postfix: instance); not the queue ID,
         * which the first accepted recipient brings. */
        snprintf(instance, sizeof(instance), "%lx.%" PRIx64, (unsigned long) getpid(), t->number);

        attr(&b, "request", "smtpd_access_policy");
        attr(&b, "protocol_state", state);
        attr(&b, "protocol_name", c->esmtp ? "ESMTP" : "SMTP");
        attr(&b, "helo_name", c->helo);
        attr(&b, "queue_id", t->queue_id);
        attr(&b, "sender", t->sender);
        bool etrn = streq(state, "ETRN");   /* the evaluator's "recipient" is then the domain */
        attr(&b, "recipient", etrn ? "" : recipient);
        attr_num(&b, "recipient_count", t->n_rcpts);
        attr(&b, "client_address", c->addr);
        attr(&b, "client_name", c->name);
        attr(&b, "reverse_client_name", c->reverse_name);
        attr(&b, "instance", instance);
        attr(&b, "sasl_method", c->sasl_method);
        attr(&b, "sasl_username", c->sasl_username);
        attr(&b, "sasl_sender", t->auth_author);
        attr_num(&b, "size", t->data ? t->data->bytes : 0);
        /* as Postfix: subject and issuer of a trusted certificate only, fingerprints of any */
        bool tls = c->tls && c->tls_active;
        const TlsPeerCert *cc = tls ? c->ccert : NULL;
        attr(&b, "ccert_subject", cc && cc->trusted ? cc->subject : "");
        attr(&b, "ccert_issuer", cc && cc->trusted ? cc->issuer : "");
        attr(&b, "ccert_fingerprint", cc ? cc->fingerprint : "");
        attr(&b, "ccert_pubkey_fingerprint", cc ? cc->pkey_fingerprint : "");
        attr(&b, "encryption_protocol", tls ? tls_conn_protocol(c->tls) : "");
        attr(&b, "encryption_cipher", tls ? tls_conn_cipher(c->tls) : "");
        attr_num(&b, "encryption_keysize", tls ? (uint64_t) tls_conn_cipher_bits(c->tls) : 0);
        attr(&b, "etrn_domain", etrn ? recipient : "");
        attr(&b, "stress", "");
        attr(&b, "server_address", c->server_addr);
        if (c->server_port)
                attr_num(&b, "server_port", c->server_port);
        else
                attr(&b, "server_port", "");
        if (c->port)
                attr_num(&b, "client_port", c->port);
        else
                attr(&b, "client_port", "");
        attr(&b, "policy_context", set->policy_context);
        attr(&b, "compatibility_level", "3.6");
        attr(&b, "mail_version", POSTERN_VERSION);
        if (strbuf_puts(&b, "\n") < 0)
                return NULL;
        return TAKE_PTR(b.data);
}

static int request_start(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a,
                         SmtpdHookDone done, void *userdata, SmtpdHookOp **ret, char **ret_action) {
        static const char *const states[] = {
                [STAGE_CONNECT] = "CONNECT", [STAGE_HELO] = "HELO", [STAGE_MAIL] = "MAIL",
                [STAGE_RCPT] = "RCPT", [STAGE_DATA] = "DATA", [STAGE_EOD] = "END-OF-MESSAGE",
                [STAGE_ETRN] = "ETRN",
        };
        const char *service = a->arg;

        if (isempty(service) || !done)
                return -EINVAL;
        PolicyRequest *r = calloc(1, sizeof(PolicyRequest));
        if (!r)
                return -ENOMEM;
        r->client = c;
        r->settings = a->settings;
        r->server = a->server;
        r->done = done;
        r->userdata = userdata;
        r->service = strdup(service);
        r->text = build_request(c, t, a->settings, states[a->stage], a->recipient);
        if (!r->service || !r->text) {
                request_free(r);
                return -ENOMEM;
        }
        /* Connecting and sending only start from the loop (connect may fail at once). */
        r->attempts = 0;
        int k = sd_event_add_time_relative(a->server->event, &r->timer, CLOCK_MONOTONIC, 0, 1, on_retry, r);
        if (k < 0) {
                request_free(r);
                return k;
        }
        *ret = (SmtpdHookOp *) r;
        return 0;
}

const SmtpdHook smtpd_hook_policy = {
        .name = "policy",
        .start = request_start,
        .cancel = request_cancel,
};

void smtpd_policy_shutdown(void) {
        while (idle_conns)
                conn_free(idle_conns);
}
