/* sendmail-smtp.c — a small blocking ESMTP client for postern-sendmail: connect to
 * postern-smtpd's submit socket (AF_UNIX; the server learns our uid from SO_PEERCRED), read
 * replies (multi-line aware), send commands, learn the EHLO extensions, and send a message as
 * DATA content in CRLF form with dot-stuffing, buffered into large writes. Timeouts come from
 * SO_RCVTIMEO/SO_SNDTIMEO, so a stuck server turns into -EAGAIN rather than a hang. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/io-util.h"
#include "sendmail.h"

#define SMTP_REPLY_MAX (64 * 1024)
#define SMTP_OUT_CHUNK (64 * 1024)

void smtp_client_done(SmtpClient *c) {
        c->fd = safe_close(c->fd);
        strbuf_done(&c->in);
}

int smtp_write_all(int fd, const void *buf, size_t n) {
        int r = loop_write(fd, buf, n);
        return r == -EAGAIN ? -ETIMEDOUT : r;   /* SO_SNDTIMEO expired */
}

int smtp_client_connect(SmtpClient *c, const char *path, unsigned timeout_sec) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = timeout_sec };
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        c->fd = TAKE_FD(fd);
        return 0;
}

/* Reads one line (without CRLF) into *ret (caller frees). */
static int read_line(SmtpClient *c, char **ret) {
        for (;;) {
                char *nl = c->in.data ? memchr(c->in.data, '\n', c->in.len) : NULL;
                if (nl) {
                        size_t n = (size_t) (nl - c->in.data);
                        size_t keep = n > 0 && c->in.data[n - 1] == '\r' ? n - 1 : n;
                        char *line = strndup(c->in.data, keep);
                        if (!line)
                                return -ENOMEM;
                        strbuf_consume(&c->in, n + 1);
                        *ret = line;
                        return 0;
                }
                if (c->in.len > SMTP_REPLY_MAX)
                        return -EBADMSG;
                char buf[4096];
                ssize_t k = read(c->fd, buf, sizeof buf);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                int r = strbuf_append(&c->in, buf, (size_t) k);
                if (r < 0)
                        return r;
        }
}

int smtp_read_reply(SmtpClient *c, int *ret_code, char **ret_text) {
        _cleanup_strbuf_ StrBuf text = STRBUF_INIT;
        int code = 0, r;

        for (;;) {
                _cleanup_free_ char *line = NULL;
                r = read_line(c, &line);
                if (r < 0)
                        return r;
                if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
                    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
                    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
                        return -EBADMSG;
                code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
                if (text.len > 0 && (r = strbuf_putc(&text, '\n')) < 0)
                        return r;
                if ((r = strbuf_puts(&text, line[3] ? line + 4 : "")) < 0)
                        return r;
                if (text.len > SMTP_REPLY_MAX)
                        return -EBADMSG;
                if (line[3] != '-')
                        break;
        }
        *ret_code = code;
        if (ret_text) {
                char *t = strbuf_steal(&text);
                if (!t)
                        return -ENOMEM;
                *ret_text = t;
        }
        return 0;
}

int smtp_command(SmtpClient *c, int *ret_code, char **ret_text, const char *fmt, ...) {
        _cleanup_strbuf_ StrBuf cmd = STRBUF_INIT;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = strbuf_vprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        if ((r = strbuf_puts(&cmd, "\r\n")) < 0)
                return r;
        if ((r = smtp_write_all(c->fd, cmd.data, cmd.len)) < 0)
                return r;
        return smtp_read_reply(c, ret_code, ret_text);
}

int smtp_ehlo(SmtpClient *c, const char *name, int *ret_code, char **ret_text) {
        _cleanup_free_ char *text = NULL;
        int r = smtp_command(c, ret_code, &text, "EHLO %s", name);
        if (r < 0)
                return r;
        if (*ret_code == 250) {
                /* The first line is the greeting; each following line one extension. */
                char *save = NULL;
                _cleanup_free_ char *copy = strdup(text);
                if (!copy)
                        return -ENOMEM;
                char *line = strtok_r(copy, "\n", &save);
                while (line && (line = strtok_r(NULL, "\n", &save))) {
                        char *kw = line;
                        size_t n = strcspn(kw, " =");
                        if (n == 4 && strncasecmp(kw, "SIZE", 4) == 0)
                                c->ext_size = true;
                        else if (n == 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
                                c->ext_8bitmime = true;
                        else if (n == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
                                c->ext_smtputf8 = true;
                        else if (n == 3 && strncasecmp(kw, "DSN", 3) == 0)
                                c->ext_dsn = true;
                }
        }
        if (ret_text)
                *ret_text = TAKE_PTR(text);
        return 0;
}

static int flush_out(SmtpClient *c, StrBuf *out, bool force) {
        if (out->len == 0 || (!force && out->len < SMTP_OUT_CHUNK))
                return 0;
        int r = smtp_write_all(c->fd, out->data, out->len);
        strbuf_reset(out);
        return r;
}

int smtp_send_content(SmtpClient *c, const char *msg, size_t len) {
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        size_t pos = 0;
        int r;

        while (pos < len) {
                const char *nl = memchr(msg + pos, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - (msg + pos)) : len - pos;
                if (n > 0 && msg[pos] == '.' && (r = strbuf_putc(&out, '.')) < 0)
                        return r;
                if ((r = strbuf_append(&out, msg + pos, n)) < 0 ||
                    (r = strbuf_puts(&out, "\r\n")) < 0 ||
                    (r = flush_out(c, &out, false)) < 0)
                        return r;
                pos += n + (nl ? 1 : 0);
        }
        if ((r = strbuf_puts(&out, ".\r\n")) < 0)
                return r;
        return flush_out(c, &out, true);
}
