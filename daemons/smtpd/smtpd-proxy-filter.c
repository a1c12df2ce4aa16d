/* smtpd-proxy-filter.c — the before-queue content filter (Postfix's smtpd_proxy_filter, SMTPD_PROXY_README):
 * a listener with smtpd_proxy_filter passes its mail transactions through an SMTP session with
 * the filter, which relays the mail on to a listener that queues it; the filter's replies become
 * the client's. One connection per transaction, owned by the transaction (SmtpdTransaction.proxy,
 * closed with QUIT when the transaction ends), driven by the session's event loop.
 *
 *   smtpd_proxy_run(s, steps, n, done)   sends the steps (MAIL, RCPT, DATA, the message) one at a
 *                                        time, connecting first (greeting, EHLO $smtpd_proxy_ehlo)
 *                                        when the transaction has no connection yet; the session
 *                                        waits (session_wait) and done(s, reply, ok) runs once
 *                                        with the filter's last reply, ok when each step got the
 *                                        class it expects (2xx, 3xx for DATA). A step refused
 *                                        ends the run with that reply.
 *
 * Without smtpd_proxy_options = speed_adjust smtpd-command.c runs MAIL at MAIL, each RCPT at
 * RCPT and DATA at DATA, and smtpd-data.c the message at its end; with speed_adjust smtpd answers
 * MAIL, RCPT and DATA itself and runs everything at the end of the message (seed 003). The
 * message is the received content (our Received: on top), dot-stuffed and in CRLF form.
 *
 * A filter that cannot be reached, closes the connection, answers out of protocol or lets
 * smtpd_proxy_timeout pass is logged ("warning: <id>: proxy filter inet:127.0.0.1:10025: timeout
 * after RCPT") and that step and every later one of the transaction get "451 4.3.0 Error: queue
 * file write error" (Postfix's reply). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/xtext.h"
#include "queue/queue.h"

#define PROXY_REPLY_MAX 65536
#define PROXY_FAILURE "451 4.3.0 Error: queue file write error"

enum { EXT_8BITMIME = 1, EXT_SMTPUTF8 = 2, EXT_DSN = 4, EXT_XFORWARD = 8 };

struct SmtpdProxy {
        Session *session;          /* NULL once the session went away */
        int fd;
        bool connected, greeted;
        bool in_xforward, xforward_done;   /* XFORWARD before MAIL, when the filter offers it */
        unsigned ext;              /* EXT_* from the filter's EHLO reply */
        sd_event_source *io, *timer;
        StrBuf out;
        size_t out_off;
        StrBuf in;                 /* unparsed reply bytes */
        StrBuf reply;              /* the reply being read, lines joined by CRLF */
        SmtpdProxyStep *steps;     /* this run's steps (greeting and EHLO included) */
        size_t n_steps, step;
        bool running;              /* inside a run (the session waits) */
        char *error;               /* set once the connection failed: every later step's reply */
        SmtpdProxyDone done;
};

static const char *step_name(const SmtpdProxyStep *st) {
        static const char *const names[] = {
                [PROXY_STEP_GREETING] = "greeting", [PROXY_STEP_EHLO] = "EHLO", [PROXY_STEP_MAIL] = "MAIL",
                [PROXY_STEP_RCPT] = "RCPT", [PROXY_STEP_DATA] = "DATA", [PROXY_STEP_MESSAGE] = "END-OF-MESSAGE",
        };
        return names[st->kind];
}

static void steps_free(SmtpdProxy *p) {
        for (size_t i = 0; i < p->n_steps; i++)
                smtpd_recipient_done(&p->steps[i].rcpt);
        free(p->steps);
        p->steps = NULL;
        p->n_steps = p->step = 0;
}

static void disconnect(SmtpdProxy *p) {
        p->io = sd_event_source_disable_unref(p->io);
        p->timer = sd_event_source_disable_unref(p->timer);
        p->fd = safe_close(p->fd);
}

SmtpdProxy *smtpd_proxy_free(SmtpdProxy *p) {
        if (!p)
                return NULL;
        if (p->fd >= 0 && p->connected && !p->error)
                (void) send(p->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);   /* best effort */
        disconnect(p);
        steps_free(p);
        strbuf_done(&p->out);
        strbuf_done(&p->in);
        strbuf_done(&p->reply);
        free(p->error);
        free(p);
        return NULL;
}

static void proxy_cancel(void *userdata) {
        SmtpdProxy *p = userdata;
        p->session = NULL;
        p->running = false;
        disconnect(p);
        steps_free(p);
}

/* Ends the run: the session goes on with done()'s reply. p may be gone afterwards (done() may
 * end the transaction). */
static void finish(SmtpdProxy *p, const char *reply, bool ok) {
        Session *s = p->session;
        SmtpdProxyDone done = p->done;
        _cleanup_free_ char *text = strdup(reply);

        p->running = false;
        p->timer = sd_event_source_disable_unref(p->timer);
        if (p->io)
                (void) sd_event_source_set_enabled(p->io, SD_EVENT_OFF);
        steps_free(p);
        session_resume(s, SESSION_RESUME_ONLY);
        done(s, text ? text : PROXY_FAILURE, ok && text);
        if (!session_waiting(s))
                session_resume(s, SESSION_RESUME_INPUT);
}

static void fail(SmtpdProxy *p, const char *why) {
        Session *s = p->session;
        const SmtpdProxyStep *st = p->connected && p->step < p->n_steps ? &p->steps[p->step] : NULL;
        log_warning("%s: proxy filter %s: %s%s%s", s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE",
                    s->settings->proxy_filter, why, st ? " at " : "", st ? step_name(st) : "");
        disconnect(p);
        free(p->error);
        p->error = strdup(PROXY_FAILURE);
        finish(p, PROXY_FAILURE, false);
}

/* The client's message as SMTP DATA: CRLF line ends, dot-stuffed, the final dot. */
static int message_text(const Session *s, StrBuf *out) {
        const DataState *d = s->tx.data;
        const char *p = d ? d->content.data : NULL, *end = p ? p + d->content.len : NULL;
        int r = 0;
        while (r >= 0 && p && p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                if (*p == '.')
                        r = strbuf_putc(out, '.');
                if (r >= 0)
                        r = strbuf_append(out, p, n);
                if (r >= 0)
                        r = strbuf_puts(out, "\r\n");
                p += n + (nl != NULL);
        }
        return r < 0 ? r : strbuf_puts(out, ".\r\n");
}

static int mail_text(const SmtpdProxy *p, const Session *s, StrBuf *out) {
        int r = strbuf_printf(out, "MAIL FROM:<%s>", strempty(s->tx.sender));
        if (r >= 0 && s->tx.body_type && (p->ext & EXT_8BITMIME))
                r = strbuf_printf(out, " BODY=%s", s->tx.body_type);
        if (r >= 0 && s->tx.smtputf8 && (p->ext & EXT_SMTPUTF8))
                r = strbuf_puts(out, " SMTPUTF8");
        if (r >= 0 && s->tx.dsn_ret && (p->ext & EXT_DSN))
                r = strbuf_puts(out, s->tx.dsn_ret == 1 ? " RET=FULL" : " RET=HDRS");
        if (r >= 0 && s->tx.dsn_envid && (p->ext & EXT_DSN) && (r = strbuf_puts(out, " ENVID=")) >= 0)
                r = xtext_encode(s->tx.dsn_envid, strlen(s->tx.dsn_envid), out);
        return r < 0 ? r : strbuf_puts(out, "\r\n");
}

/* XFORWARD with the client as this transaction shows it (Postfix's smtpd sends it to a proxy
 * that offers it, so the listener behind the proxy can name the real client). */
static int xforward_text(const Session *s, StrBuf *out) {
        SmtpdClientView v = smtpd_client_view(s);
        char port[16];
        snprintf(port, sizeof port, "%u", s->client.port);
        const struct { const char *name, *value; } a[] = {
                { "NAME", v.name }, { "ADDR", v.addr }, { "PORT", s->tx.xforward.set ? s->tx.xforward.attr[XFORWARD_PORT] : port },
                { "PROTO", v.proto }, { "HELO", v.helo }, { "SOURCE", "REMOTE" },
        };
        int r = strbuf_puts(out, "XFORWARD");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(a); i++) {
                const char *val = isempty(a[i].value) ? "[UNAVAILABLE]" : a[i].value;
                if ((r = strbuf_printf(out, " %s=%s", a[i].name, streq(a[i].name, "ADDR") && v.ipv6 ? "IPv6:" : "")) >= 0)
                        r = xtext_encode(val, strlen(val), out);
        }
        return r < 0 ? r : strbuf_puts(out, "\r\n");
}

static int rcpt_text(const SmtpdProxy *p, const SmtpdRecipient *rc, StrBuf *out) {
        int r = strbuf_printf(out, "RCPT TO:<%s>", rc->address);
        if (r >= 0 && rc->notify && (p->ext & EXT_DSN)) {
                static const struct { unsigned bit; const char *name; } n[] = {
                        { QUEUE_NOTIFY_NEVER, "NEVER" }, { QUEUE_NOTIFY_SUCCESS, "SUCCESS" },
                        { QUEUE_NOTIFY_FAILURE, "FAILURE" }, { QUEUE_NOTIFY_DELAY, "DELAY" },
                };
                const char *sep = " NOTIFY=";
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(n); i++)
                        if (rc->notify & n[i].bit) {
                                r = strbuf_printf(out, "%s%s", sep, n[i].name);
                                sep = ",";
                        }
        }
        if (r >= 0 && rc->orcpt && (p->ext & EXT_DSN)) {
                const char *semi = strchr(rc->orcpt, ';');
                if (semi && (r = strbuf_printf(out, " ORCPT=%.*s;", (int) (semi - rc->orcpt), rc->orcpt)) >= 0)
                        r = xtext_encode(semi + 1, strlen(semi + 1), out);
        }
        return r < 0 ? r : strbuf_puts(out, "\r\n");
}

static int on_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        fail(userdata, "timeout");
        return 0;
}

/* Sends the current step (or finishes the run after the last). */
static void step_start(SmtpdProxy *p) {
        Session *s = p->session;
        if (p->step >= p->n_steps) {
                finish(p, p->reply.len ? p->reply.data : "250 2.0.0 Ok", true);
                return;
        }
        const SmtpdProxyStep *st = &p->steps[p->step];
        int r = 0;
        strbuf_reset(&p->out);
        p->out_off = 0;
        switch (st->kind) {
        case PROXY_STEP_GREETING:
                break;
        case PROXY_STEP_EHLO:
                r = strbuf_printf(&p->out, "EHLO %s\r\n", s->settings->proxy_ehlo);
                break;
        case PROXY_STEP_MAIL:
                p->in_xforward = (p->ext & EXT_XFORWARD) && !p->xforward_done;
                r = p->in_xforward ? xforward_text(s, &p->out) : mail_text(p, s, &p->out);
                break;
        case PROXY_STEP_RCPT:
                r = rcpt_text(p, &st->rcpt, &p->out);
                break;
        case PROXY_STEP_DATA:
                r = strbuf_puts(&p->out, "DATA\r\n");
                break;
        case PROXY_STEP_MESSAGE:
                r = message_text(s, &p->out);
                break;
        }
        if (r < 0) {
                fail(p, "out of memory");
                return;
        }
        strbuf_reset(&p->reply);
        p->timer = sd_event_source_disable_unref(p->timer);
        r = sd_event_add_time_relative(s->server->event, &p->timer, CLOCK_MONOTONIC,
                                       s->settings->proxy_timeout_usec, 0, on_timeout, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->io, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_source_set_io_events(p->io, EPOLLIN | (p->out.len || !p->connected ? EPOLLOUT : 0));
        if (r < 0)
                fail(p, "cannot arm the event loop");
}

static void ehlo_keywords(SmtpdProxy *p) {
        for (const char *l = p->reply.data; l && *l;) {
                const char *e = strstr(l, "\r\n");
                size_t n = e ? (size_t) (e - l) : strlen(l);
                const char *kw = n > 4 ? l + 4 : "";
                size_t kn = strcspn(kw, " \r\n");
                if (kn == 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
                        p->ext |= EXT_8BITMIME;
                else if (kn == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
                        p->ext |= EXT_SMTPUTF8;
                else if (kn == 3 && strncasecmp(kw, "DSN", 3) == 0)
                        p->ext |= EXT_DSN;
                else if (kn == 8 && strncasecmp(kw, "XFORWARD", 8) == 0)
                        p->ext |= EXT_XFORWARD;
                l = e ? e + 2 : NULL;
        }
}

/* One complete reply: on to the next step, or the end of the run. */
static void reply_done(SmtpdProxy *p, char code) {
        const SmtpdProxyStep *st = &p->steps[p->step];
        char expect = st->kind == PROXY_STEP_DATA ? '3' : '2';
        if (st->kind == PROXY_STEP_EHLO && code == expect)
                ehlo_keywords(p);
        if (p->in_xforward) {   /* then the MAIL this step is about */
                p->in_xforward = false;
                p->xforward_done = true;
                if (code != '2') {
                        _cleanup_free_ char *why = NULL;
                        if (asprintf(&why, "refused XFORWARD: %s", p->reply.data) < 0)
                                why = NULL;
                        fail(p, why ? why : "refused XFORWARD");
                } else
                        step_start(p);
                return;
        }
        if (code != expect) {
                if (st->kind == PROXY_STEP_GREETING || st->kind == PROXY_STEP_EHLO) {
                        /* the client did not send these: it gets our 451, the log the filter's words */
                        _cleanup_free_ char *why = NULL;
                        if (asprintf(&why, "refused the %s: %s", step_name(st), p->reply.data) < 0)
                                why = NULL;
                        fail(p, why ? why : "refused the connection");
                        return;
                }
                finish(p, p->reply.data, false);
                return;
        }
        p->step++;
        step_start(p);
}

/* Takes the complete lines of p->in; false when the run ended (p may be gone). */
static bool parse_lines(SmtpdProxy *p) {
        for (;;) {
                if (p->in.len == 0)
                        return true;
                char *nl = memchr(p->in.data, '\n', p->in.len);
                if (!nl)
                        return true;
                size_t n = (size_t) (nl - p->in.data);
                size_t len = n > 0 && p->in.data[n - 1] == '\r' ? n - 1 : n;
                const char *l = p->in.data;
                bool valid = len >= 3 && l[0] >= '2' && l[0] <= '5' && isdigit((unsigned char) l[1]) &&
                             isdigit((unsigned char) l[2]) && (len == 3 || l[3] == ' ' || l[3] == '-');
                if (!valid || (p->reply.len && strncmp(p->reply.data, l, 3) != 0)) {
                        fail(p, "malformed reply");
                        return false;
                }
                bool last = len == 3 || l[3] == ' ';
                char code = l[0];
                int r = p->reply.len ? strbuf_puts(&p->reply, "\r\n") : 0;
                if (r >= 0)
                        r = strbuf_append(&p->reply, l, len);
                if (r < 0) {
                        fail(p, "out of memory");
                        return false;
                }
                memmove(p->in.data, nl + 1, p->in.len - n - 1);
                p->in.len -= n + 1;
                p->in.data[p->in.len] = '\0';
                if (last) {
                        if (p->in.len > 0) {   /* a reply nobody asked for yet */
                                fail(p, "reply out of turn");
                                return false;
                        }
                        reply_done(p, code);
                        return false;
                }
        }
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        SmtpdProxy *p = userdata;
        char buf[4096];

        if (!p->running)
                return 0;
        if (!p->connected && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                        _cleanup_free_ char *why = NULL;
                        if (asprintf(&why, "cannot connect: %s", strerror(err ? err : errno)) < 0)
                                why = NULL;
                        fail(p, why ? why : "cannot connect");
                        return 0;
                }
                p->connected = true;
        }
        if (p->connected && p->out_off < p->out.len && (revents & EPOLLOUT)) {
                ssize_t n = send(fd, p->out.data + p->out_off, p->out.len - p->out_off, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        fail(p, strerror(errno));
                        return 0;
                }
                if (n > 0)
                        p->out_off += (size_t) n;
        }
        if (p->connected && p->out_off >= p->out.len)
                (void) sd_event_source_set_io_events(p->io, EPOLLIN);
        if (p->connected && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0) {
                        fail(p, n == 0 ? "connection closed by the filter" : strerror(errno));
                        return 0;
                }
                if (p->in.len + p->reply.len + (size_t) n > PROXY_REPLY_MAX) {
                        fail(p, "reply too long");
                        return 0;
                }
                if (strbuf_append(&p->in, buf, (size_t) n) < 0) {
                        fail(p, "out of memory");
                        return 0;
                }
                (void) parse_lines(p);
        }
        return 0;
}

static int proxy_open(Session *s, SmtpdProxy **ret) {
        _cleanup_(smtpd_proxy_freep) SmtpdProxy *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->fd = -1;
        int r = smtpd_service_connect(s->settings->proxy_filter, &p->fd, &p->connected);
        if (r < 0)
                return r;
        r = sd_event_add_io(s->server->event, &p->io, p->fd, EPOLLOUT | EPOLLIN, on_io, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

void smtpd_proxy_run(Session *s, SmtpdProxyStep *steps, size_t n, SmtpdProxyDone done) {
        SmtpdProxy *p = s->tx.proxy;
        int r = 0;

        if (!p) {
                r = proxy_open(s, &s->tx.proxy);
                if (r < 0) {
                        log_warning_errno(r, "%s: proxy filter %s: cannot connect: %m",
                                          s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE", s->settings->proxy_filter);
                        for (size_t i = 0; i < n; i++)
                                smtpd_recipient_done(&steps[i].rcpt);
                        done(s, PROXY_FAILURE, false);   /* answered now, no wait */
                        return;
                }
                p = s->tx.proxy;
        }
        if (p->error) {
                for (size_t i = 0; i < n; i++)
                        smtpd_recipient_done(&steps[i].rcpt);
                done(s, p->error, false);
                return;
        }
        size_t pre = p->greeted ? 0 : 2;
        p->steps = calloc(n + pre, sizeof(SmtpdProxyStep));
        if (!p->steps) {
                for (size_t i = 0; i < n; i++)
                        smtpd_recipient_done(&steps[i].rcpt);
                log_oom();
                done(s, "451 4.3.0 Error: out of memory", false);
                return;
        }
        if (pre) {
                p->steps[0].kind = PROXY_STEP_GREETING;
                p->steps[1].kind = PROXY_STEP_EHLO;
                p->greeted = true;
        }
        for (size_t i = 0; i < n; i++) {
                p->steps[pre + i] = steps[i];
                steps[i].rcpt = (SmtpdRecipient) {};
        }
        p->n_steps = n + pre;
        p->step = 0;
        p->session = s;
        p->done = done;
        p->running = true;
        session_wait(s, proxy_cancel, p);
        step_start(p);   /* p may be gone when it returns */
}

bool smtpd_proxy_active(const Session *s) {
        return s->listener && s->listener->kind != LISTENER_SUBMIT && !isempty(s->settings->proxy_filter);
}

char *smtpd_proxy_log_text(const char *reply) {
        char *t = strdup(reply);
        for (char *c = t; c && *c; c++)
                if (*c == '\r' || *c == '\n')
                        *c = ' ';
        return t;
}
