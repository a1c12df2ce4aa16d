/* sasl-client.c — the Dovecot auth client protocol (see sasl-client.h): connection, handshake,
 * request ids, CONT/OK/FAIL dispatch, per-request timeouts and reconnection with backoff. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/strbuf.h"
#include "sasl-client.h"

#define RECONNECT_MIN_USEC (1000ULL * 1000ULL)
#define RECONNECT_MAX_USEC (60ULL * 1000ULL * 1000ULL)
#define MECH_MAX 64

struct SaslRequest {
        SaslRequest *prev, *next;
        SaslClient *client;
        uint32_t id;
        SaslReplyFn fn;
        void *userdata;
        sd_event_source *timer;
};

struct SaslClient {
        sd_event *event;
        char *path;
        uint64_t timeout_usec;
        int fd;
        sd_event_source *io;
        sd_event_source *retry;
        uint64_t retry_usec;
        bool handshake_done;
        bool version_ok;
        unsigned generation;        /* counts connections: a callback may reconnect */
        StrBuf in, out;
        SaslMech *mechs;            /* the last complete list */
        size_t n_mechs;
        SaslMech *new_mechs;        /* collected during a handshake */
        size_t n_new_mechs;
        uint32_t next_id;
        SaslRequest *requests;
        SaslStateFn state_fn;
        void *state_userdata;
};

static void mechs_free(SaslMech *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(m[i].name);
        free(m);
}

static void request_free(SaslRequest *r) {
        SaslClient *c = r->client;
        if (r->prev)
                r->prev->next = r->next;
        else
                c->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        sd_event_source_disable_unref(r->timer);
        free(r);
}

void sasl_tab_unescape(char *s) {
        char *w = s;
        for (char *p = s; *p; p++) {
                if (*p != '\001') {
                        *w++ = *p;
                        continue;
                }
                if (!p[1])
                        break;
                p++;
                switch (*p) {
                case '0': *w++ = '\0'; break;   /* cuts the value: a NUL cannot be kept */
                case '1': *w++ = '\001'; break;
                case 't': *w++ = '\t'; break;
                case 'r': *w++ = '\r'; break;
                case 'n': case 'l': *w++ = '\n'; break;
                default: *w++ = *p; break;
                }
        }
        *w = '\0';
}

int sasl_client_new(sd_event *event, const char *path, uint64_t request_timeout_usec, SaslClient **ret) {
        SaslClient *c = calloc(1, sizeof(SaslClient));
        if (!c)
                return -ENOMEM;
        c->path = strdup(path);
        if (!c->path) {
                free(c);
                return -ENOMEM;
        }
        c->event = sd_event_ref(event);
        c->fd = -1;
        c->timeout_usec = request_timeout_usec;
        c->retry_usec = RECONNECT_MIN_USEC;
        c->next_id = 1;
        c->in.limit = SASL_LINE_MAX;
        *ret = c;
        return 0;
}

static void disconnect(SaslClient *c) {
        c->generation++;
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = safe_close(c->fd);
        strbuf_done(&c->in);
        strbuf_done(&c->out);
        mechs_free(c->new_mechs, c->n_new_mechs);
        c->new_mechs = NULL;
        c->n_new_mechs = 0;
        c->handshake_done = false;
        c->version_ok = false;
}

SaslClient *sasl_client_free(SaslClient *c) {
        if (!c)
                return NULL;
        while (c->requests)
                request_free(c->requests);
        disconnect(c);
        sd_event_source_disable_unref(c->retry);
        mechs_free(c->mechs, c->n_mechs);
        sd_event_unref(c->event);
        free(c->path);
        free(c);
        return NULL;
}

void sasl_client_set_state_callback(SaslClient *c, SaslStateFn fn, void *userdata) {
        c->state_fn = fn;
        c->state_userdata = userdata;
}

const char *sasl_client_path(SaslClient *c) {
        return c->path;
}

bool sasl_client_ready(SaslClient *c) {
        return c->fd >= 0 && c->handshake_done;
}

const SaslMech *sasl_client_mechs(SaslClient *c, size_t *ret_n) {
        *ret_n = c->n_mechs;
        return c->mechs;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);

static void schedule_retry(SaslClient *c) {
        if (c->retry)
                return;
        if (sd_event_add_time_relative(c->event, &c->retry, CLOCK_MONOTONIC, c->retry_usec, 0,
                                       on_retry, c) >= 0)
                c->retry_usec = MIN(c->retry_usec * 2, RECONNECT_MAX_USEC);
}

/* Drops the connection: every pending request fails temporarily, the owner hears why, and a
 * reconnection is scheduled. Callbacks run after the state is clean, so they may start new
 * requests (which reconnect at once). */
static void connection_lost(SaslClient *c, int error, const char *why) {
        SaslRequest *pending = c->requests;
        c->requests = NULL;
        disconnect(c);
        while (pending) {
                SaslRequest *r = pending;
                pending = r->next;
                if (pending)
                        pending->prev = NULL;
                r->prev = r->next = NULL;
                r->timer = sd_event_source_disable_unref(r->timer);
                SaslReplyFn fn = r->fn;
                void *ud = r->userdata;
                free(r);
                fn(NULL, SASL_STATUS_TEMPFAIL, why, ud);
        }
        if (c->state_fn)
                c->state_fn(c, error, c->state_userdata);
        if (c->fd < 0)
                schedule_retry(c);
}

static int flush_out(SaslClient *c) {
        while (c->out.len > 0) {
                ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        return -errno;
                }
                strbuf_consume(&c->out, (size_t) n);
        }
        if (c->out.len == 0)
                strbuf_done(&c->out);
        (void) sd_event_source_set_io_events(c->io, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
        return 0;
}

/* Queues one line and tries to send it. A send error is noticed by the read side (EOF/HUP),
 * which tears the connection down from the event loop, never from inside a caller. */
static int send_line(SaslClient *c, const char *fmt, ...) _printf_(2, 3);
static int send_line(SaslClient *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = strbuf_vprintf(&c->out, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        (void) flush_out(c);
        return 0;
}

static SaslRequest *find_request(SaslClient *c, const char *id_text) {
        char *end = NULL;
        unsigned long id = strtoul(id_text, &end, 10);
        if (!end || *end || end == id_text)
                return NULL;
        for (SaslRequest *r = c->requests; r; r = r->next)
                if (r->id == id)
                        return r;
        return NULL;
}

static void finish(SaslRequest *r, SaslStatus st, const char *text) {
        SaslReplyFn fn = r->fn;
        void *ud = r->userdata;
        request_free(r);
        fn(NULL, st, text, ud);
}

/* RFC 4422 §3.1: 1-20 upper-case letters, digits, '-' and '_' (lower case tolerated). Other names
 * are ignored: smtpd copies the list into its EHLO reply and its log. */
static bool mech_name_valid(const char *name) {
        size_t n = strlen(name);
        if (n == 0 || n > 20)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_'))
                        return false;
        return true;
}

static unsigned mech_flag(const char *word) {
        static const struct { const char *name; unsigned flag; } t[] = {
                { "anonymous", SASL_MECH_ANONYMOUS }, { "plaintext", SASL_MECH_PLAINTEXT },
                { "dictionary", SASL_MECH_DICTIONARY }, { "active", SASL_MECH_ACTIVE },
                { "forward-secrecy", SASL_MECH_FORWARD_SECRECY },
                { "mutual-auth", SASL_MECH_MUTUAL_AUTH }, { "private", SASL_MECH_PRIVATE },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (streq(word, t[i].name))
                        return t[i].flag;
        return 0;
}

/* Handles one line from the server; < 0 is a protocol error. */
static int handle_line(SaslClient *c, char *line) {
        char *argv[32];
        size_t argc = 0;
        for (char *save = NULL, *p = strtok_r(line, "\t", &save); p && argc < ELEMENTSOF(argv);
             p = strtok_r(NULL, "\t", &save))
                argv[argc++] = p;
        if (argc == 0)
                return 0;

        if (streq(argv[0], "VERSION")) {
                if (argc < 3 || !streq(argv[1], "1"))
                        return -EPROTO;
                c->version_ok = true;
                return 0;
        }
        if (!c->version_ok)
                return -EPROTO;
        if (streq(argv[0], "MECH")) {
                if (argc < 2 || c->handshake_done)
                        return c->handshake_done ? 0 : -EPROTO;
                if (c->n_new_mechs >= MECH_MAX || !mech_name_valid(argv[1]))
                        return 0;
                SaslMech *n = realloc(c->new_mechs, (c->n_new_mechs + 1) * sizeof(SaslMech));
                if (!n)
                        return -ENOMEM;
                c->new_mechs = n;
                n[c->n_new_mechs] = (SaslMech) { .name = strdup(argv[1]) };
                if (!n[c->n_new_mechs].name)
                        return -ENOMEM;
                for (size_t i = 2; i < argc; i++)
                        n[c->n_new_mechs].flags |= mech_flag(argv[i]);
                c->n_new_mechs++;
                return 0;
        }
        if (streq(argv[0], "DONE")) {
                if (c->handshake_done)
                        return 0;
                mechs_free(c->mechs, c->n_mechs);
                c->mechs = TAKE_PTR(c->new_mechs);
                c->n_mechs = c->n_new_mechs;
                c->n_new_mechs = 0;
                c->handshake_done = true;
                c->retry_usec = RECONNECT_MIN_USEC;
                if (c->state_fn)
                        c->state_fn(c, 0, c->state_userdata);
                return 0;
        }
        if (streq(argv[0], "OK") || streq(argv[0], "FAIL")) {
                if (argc < 2)
                        return -EPROTO;
                SaslRequest *r = find_request(c, argv[1]);
                if (!r)
                        return 0;   /* a request we cancelled */
                bool ok = streq(argv[0], "OK"), temp = false;
                char *user = NULL, *reason = NULL;
                for (size_t i = 2; i < argc; i++) {
                        const char *v;
                        if ((v = startswith(argv[i], "user=")))
                                user = (char *) v;
                        else if ((v = startswith(argv[i], "reason=")))
                                reason = (char *) v;
                        else if (streq(argv[i], "temp") || streq(argv[i], "code=temp_fail"))
                                temp = true;
                }
                if (user)
                        sasl_tab_unescape(user);
                if (reason)
                        sasl_tab_unescape(reason);
                if (ok)
                        finish(r, SASL_STATUS_OK, user);
                else
                        finish(r, temp ? SASL_STATUS_TEMPFAIL : SASL_STATUS_FAIL, reason);
                return 0;
        }
        if (streq(argv[0], "CONT")) {
                if (argc < 2)
                        return -EPROTO;
                SaslRequest *r = find_request(c, argv[1]);
                if (!r)
                        return 0;
                /* The client's think time is not Dovecot's: the timer runs again once the
                 * response goes out. */
                (void) sd_event_source_set_enabled(r->timer, SD_EVENT_OFF);
                r->fn(r, SASL_STATUS_CONTINUE, argc > 2 ? argv[2] : "", r->userdata);
                return 0;
        }
        return 0;   /* SPID, CUID, COOKIE and anything newer: not needed here */
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        SaslClient *c = userdata;

        if (revents & EPOLLOUT) {
                if (flush_out(c) < 0) {
                        connection_lost(c, -EPIPE, "Connection lost to authentication server");
                        return 0;
                }
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;

        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                connection_lost(c, n == 0 ? -ECONNRESET : -errno, "Connection lost to authentication server");
                return 0;
        }
        if (strbuf_append(&c->in, buf, (size_t) n) < 0) {
                connection_lost(c, -EPROTO, "Connection lost to authentication server");
                return 0;
        }
        /* Each line is handled from a copy: a callback may start new requests or tear the
         * connection down (which frees the input buffer). */
        unsigned gen = c->generation;
        while (c->generation == gen && c->in.len > 0) {
                char *nl = memchr(c->in.data, '\n', c->in.len);
                if (!nl)
                        break;
                size_t len = (size_t) (nl - c->in.data);
                char *line = strndup(c->in.data, len);
                if (!line) {
                        connection_lost(c, -ENOMEM, "Connection lost to authentication server");
                        return 0;
                }
                strbuf_consume(&c->in, len + 1);
                int r = handle_line(c, line);
                free(line);
                if (r < 0) {
                        connection_lost(c, r, "Connection lost to authentication server");
                        return 0;
                }
        }
        return 0;
}

static int try_connect(SaslClient *c) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        if (strlen(c->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, c->path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
                return -errno;
        r = sd_event_add_io(c->event, &c->io, fd, EPOLLIN, on_io, c);
        if (r < 0)
                return r;
        c->fd = TAKE_FD(fd);
        c->retry = sd_event_source_disable_unref(c->retry);
        r = send_line(c, "VERSION\t1\t2\nCPID\t%ld\n", (long) getpid());
        if (r < 0) {
                disconnect(c);
                return r;
        }
        return 0;
}

int sasl_client_connect(SaslClient *c) {
        if (c->fd >= 0)
                return 0;
        int r = try_connect(c);
        if (r < 0)
                schedule_retry(c);   /* keep trying in the background, backing off */
        return r;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        SaslClient *c = userdata;
        c->retry = sd_event_source_disable_unref(c->retry);
        int r = sasl_client_connect(c);
        if (r < 0 && c->state_fn)
                c->state_fn(c, r, c->state_userdata);
        return 0;
}

static int on_request_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        SaslRequest *r = userdata;
        finish(r, SASL_STATUS_TEMPFAIL, "Timed out waiting for the authentication server");
        return 0;
}

/* Values go into a tab-separated line: refuse what would break its framing. */
static bool clean_value(const char *v) {
        return v && !strpbrk(v, "\t\r\n\001") && strlen(v) < SASL_LINE_MAX / 2;
}

int sasl_client_auth(SaslClient *c, const SaslAuthInfo *info, SaslReplyFn fn, void *userdata,
                     SaslRequest **ret) {
        int r;

        if (!clean_value(info->mech) || !clean_value(info->service) ||
            (info->local_ip && !clean_value(info->local_ip)) ||
            (info->remote_ip && !clean_value(info->remote_ip)) ||
            (info->initial_response && !clean_value(info->initial_response)))
                return -EINVAL;
        r = sasl_client_connect(c);
        if (r < 0)
                return r;

        SaslRequest *q = calloc(1, sizeof(SaslRequest));
        if (!q)
                return -ENOMEM;
        q->client = c;
        q->id = c->next_id++;
        if (c->next_id == 0)
                c->next_id = 1;
        q->fn = fn;
        q->userdata = userdata;
        r = sd_event_add_time_relative(c->event, &q->timer, CLOCK_MONOTONIC, c->timeout_usec, 0,
                                       on_request_timeout, q);
        if (r < 0) {
                free(q);
                return r;
        }
        q->next = c->requests;
        if (c->requests)
                c->requests->prev = q;
        c->requests = q;

        r = send_line(c, "AUTH\t%u\t%s\tservice=%s\tnologin%s%s%s%s%s%s%s\n", q->id, info->mech,
                      info->service,
                      info->local_ip ? "\tlip=" : "", strempty(info->local_ip),
                      info->remote_ip ? "\trip=" : "", strempty(info->remote_ip),
                      info->secured ? "\tsecured" : "",
                      info->initial_response ? "\tresp=" : "", strempty(info->initial_response));
        if (r < 0) {
                request_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

int sasl_request_continue(SaslRequest *r, const char *response) {
        if (!clean_value(response))
                return -EINVAL;
        if (r->client->fd < 0)
                return -ENOTCONN;
        (void) sd_event_source_set_time_relative(r->timer, r->client->timeout_usec);
        (void) sd_event_source_set_enabled(r->timer, SD_EVENT_ONESHOT);
        return send_line(r->client, "CONT\t%u\t%s\n", r->id, response);
}

void sasl_request_cancel(SaslRequest *r) {
        if (r)
                request_free(r);
}
