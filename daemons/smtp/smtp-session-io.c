/* smtp-session-io.c — a session's bytes and timers: writes (s->out, one flush per batch of
 * commands), reads (plain, or through GnuTLS, including what it already decrypted and holds),
 * reply lines assembled into replies (smtp-reply.c) and handed to smtp_session_handle_reply(),
 * the socket's event handler (connect completion, TLS handshake steps) and the timer, whose
 * expiry says what the session was doing ("timed out while ..."). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "smtp-session.h"

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata);

void smtp_session_set_timer(SmtpSession *s, usec_t timeout, const char *phase) {
        usec_t when = now_usec(CLOCK_MONOTONIC) + timeout;
        s->phase = phase;
        if (!s->timer) {
                if (sd_event_add_time(s->smtp->event, &s->timer, CLOCK_MONOTONIC, when, 0, on_timer, s) < 0)
                        log_warning("cannot arm a timer for %s", s->relay);
                return;
        }
        (void) sd_event_source_set_time(s->timer, when);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

void smtp_session_update_events(SmtpSession *s) {
        if (s->io)
                (void) sd_event_source_set_io_events(s->io, EPOLLIN | (s->out.len ? EPOLLOUT : 0));
}

static ssize_t io_write(SmtpSession *s, const void *p, size_t n) {
        if (s->tls)
                return s->tls_up ? tls_conn_write(s->tls, p, n) : -EPIPE;
        ssize_t k = write(s->fd, p, n);
        return k < 0 ? -errno : k;
}

static ssize_t io_read(SmtpSession *s, void *p, size_t n) {
        if (s->tls)
                return s->tls_up ? tls_conn_read(s->tls, p, n) : -EAGAIN;
        ssize_t k = read(s->fd, p, n);
        return k < 0 ? -errno : k;
}

int smtp_session_flush(SmtpSession *s) {
        while (s->out.len > 0) {
                ssize_t k = io_write(s, s->out.data, s->out.len);
                if (k < 0) {
                        if (k == -EAGAIN || k == -EINTR)
                                break;
                        return (int) k;
                }
                strbuf_consume(&s->out, (size_t) k);
        }
        smtp_session_update_events(s);
        return 0;
}

int smtp_session_send_text(SmtpSession *s, const char *p, size_t n) {
        return strbuf_append(&s->out, p, n);
}

/* Splits s->in into reply lines and handles them. False when s was freed. */
static bool process_lines(SmtpSession *s) {
        for (;;) {
                char *nl = s->in.data ? memchr(s->in.data, '\n', s->in.len) : NULL;
                if (!nl) {
                        if (s->in.len > SMTP_LINE_MAX) {
                                smtp_session_failed(s, "host %s sent a reply line longer than %d bytes while %s",
                                               s->relay, SMTP_LINE_MAX, strna(s->phase));
                                return false;
                        }
                        return true;
                }
                size_t len = (size_t) (nl - s->in.data);
                size_t consumed = len + 1;
                if (len > 0 && s->in.data[len - 1] == '\r')
                        len--;
                if (s->state == ST_IDLE || s->state == ST_CONNECT || s->state == ST_TLS) {
                        smtp_session_free(s);
                        return false;
                }
                int r = smtp_reply_feed(&s->reply, s->in.data, len);
                if (r < 0) {
                        char bad[80];
                        snprintf(bad, sizeof(bad), "%.*s", (int) MIN(len, (size_t) 60), s->in.data);
                        smtp_session_failed(s, "host %s sent a malformed reply while %s: \"%s\"", s->relay,
                                       strna(s->phase), bad);
                        return false;
                }
                strbuf_consume(&s->in, consumed);
                if (r == 0)
                        continue;
                /* The handler may free s (several replies can arrive in one read: PIPELINING). */
                bool alive = true;
                s->alive = &alive;
                smtp_session_handle_reply(s);
                if (!alive)
                        return false;
                s->alive = NULL;
                smtp_reply_reset(&s->reply);
        }
}

/* Reads what there is; false when s was freed. With TLS, also what GnuTLS already decrypted and
 * holds: the socket does not announce those bytes. */
bool smtp_session_on_readable(SmtpSession *s) {
        char buf[16384];
        for (;;) {
                if (s->tls && !s->tls_up)
                        return true;   /* the handshake reads for itself */
                ssize_t k = io_read(s, buf, sizeof(buf));
                if (k == -EAGAIN || k == -EINTR)
                        return true;
                if (k <= 0) {
                        if (s->state == ST_IDLE) {
                                smtp_session_free(s);
                                return false;
                        }
                        smtp_session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
                        return false;
                }
                if (strbuf_append(&s->in, buf, (size_t) k) < 0) {
                        smtp_session_failed(s, "out of memory while %s", strna(s->phase));
                        return false;
                }
                if (!process_lines(s))
                        return false;
                if (!s->tls || !s->tls_up || tls_conn_pending(s->tls) == 0)
                        return true;   /* the socket announces the rest (one record per read) */
        }
}

int smtp_session_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        SmtpSession *s = userdata;

        if (s->state == ST_CONNECT) {
                int err = 0;
                socklen_t l = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        smtp_session_failed(s, "connect to %s: %s", s->relay, strerror(err));
                        return 0;
                }
                if (s->wrapper) {
                        smtp_session_connected(s);   /* may free s */
                        return 0;
                }
                smtp_session_connected(s);
                smtp_session_update_events(s);
                return 0;
        }
        if (s->state == ST_TLS) {
                smtp_session_tls_step(s);
                return 0;
        }
        if (revents & EPOLLOUT) {
                if (smtp_session_flush(s) < 0) {
                        smtp_session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
                        return 0;
                }
                if (s->state == ST_DOT && s->out.len == 0)
                        smtp_session_set_timer(s, cfg(s)->data_done_timeout,
                                  "sending end of data -- message may be sent more than once");
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                (void) smtp_session_on_readable(s);
        return 0;
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        SmtpSession *s = userdata;
        if (s->state == ST_IDLE) {
                smtp_session_quit(s);
                return 0;
        }
        if (s->state == ST_TLS)
                smtp_session_tls_handshake_failed(s, "handshake timeout");
        else if (s->state == ST_CONNECT)
                smtp_session_failed(s, "connect to %s: Connection timed out", s->relay);
        else
                smtp_session_failed(s, "conversation with %s timed out while %s", s->relay, strna(s->phase));
        return 0;
}

