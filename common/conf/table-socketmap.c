/* table-socketmap.c — socketmap: and tcp: lookup tables (Postfix socketmap_table(5), tcp_table(5)).
 *
 *   socketmap:inet:127.0.0.1:8080:virtual   socketmap:unix:/run/map.sock:virtual
 *     request netstring "<mapname> <key>", reply netstring "OK <value>", "NOTFOUND ",
 *     "TEMP <why>", "TIMEOUT <why>" or "PERM <why>" (the last three: a temporary error, as in
 *     Postfix); replies up to 100,000 bytes.
 *   tcp:127.0.0.1:9000
 *     request "get <key>\n" with the key %XX-encoded; reply "200 <value>\n" (value %XX-encoded),
 *     "500 <text>\n" not found, "400 <text>\n" a temporary error.
 *
 * Hosts are numeric addresses or "localhost" (a name would need a resolver that blocks). One
 * connection per table, kept open between lookups and closed after 10 s idle or 100 s of life (as
 * Postfix's socketmap client); a connection the server closed is reopened once at once. Connecting,
 * writing and reading are bounded by a 10 s timeout; anything unexpected closes the connection and
 * fails the lookup with a temporary error, never "not found". */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../basic/io-util.h"
#include "../basic/socket-util.h"
#include "../basic/strbuf.h"
#include "table-socketmap.h"

#define SOCKET_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define SOCKET_IDLE_USEC (10 * USEC_PER_SEC)
#define SOCKET_LIFE_USEC (100 * USEC_PER_SEC)
#define SOCKET_REPLY_MAX 100000

struct TableSocket {
        bool tcp;                       /* tcp_table protocol, else socketmap */
        char *spec;
        char *mapname;                  /* socketmap */
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int fd;
        usec_t opened, last_used;
        StrBuf in;
        char *last_error;
};

TableSocket *table_socket_free(TableSocket *s) {
        if (!s)
                return NULL;
        safe_close(s->fd);
        free(s->spec);
        free(s->mapname);
        strbuf_done(&s->in);
        free(s->last_error);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableSocket *, table_socket_free);

/* host:port with host numeric, [v6], or localhost */
static int socket_parse_inet(const char *s, struct sockaddr_storage *sa, socklen_t *len) {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s)
                return -EINVAL;
        _cleanup_free_ char *host = *s == '[' && colon[-1] == ']' ? strndup(s + 1, (size_t) (colon - s - 2))
                                                                  : strndup(s, (size_t) (colon - s));
        if (!host)
                return -ENOMEM;
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || port == 0 || port > 65535)
                return -EINVAL;
        return sockaddr_from_host(host, (uint16_t) port, sa, len);
}

int table_socket_open(const char *type, const char *name, TableSocket **ret, char **ret_reason) {
        _cleanup_(table_socket_freep) TableSocket *s = calloc(1, sizeof(TableSocket));
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->in.limit = SOCKET_REPLY_MAX + 16;
        s->tcp = streq(type, "tcp");
        if (asprintf(&s->spec, "%s:%s", type, name) < 0) {
                s->spec = NULL;
                return -ENOMEM;
        }
        _cleanup_free_ char *where = strdup(name);
        if (!where)
                return -ENOMEM;
        const char *p;
        int r;
        if (s->tcp) {
                r = socket_parse_inet(where, &s->sa, &s->sa_len);
        } else {
                char *colon = strrchr(where, ':');
                if (!colon || colon[1] == '\0') {
                        reason_printf(ret_reason, "%s: expected socketmap:inet:host:port:name or socketmap:unix:/path:name", s->spec);
                        return -EINVAL;
                }
                *colon = '\0';
                if (!(s->mapname = strdup(colon + 1)))
                        return -ENOMEM;
                if ((p = startswith(where, "inet:")))
                        r = socket_parse_inet(p, &s->sa, &s->sa_len);
                else if ((p = startswith(where, "unix:")))
                        r = sockaddr_from_path(p, &s->sa, &s->sa_len);
                else {
                        reason_printf(ret_reason, "%s: expected socketmap:inet:host:port:name or socketmap:unix:/path:name", s->spec);
                        return -EINVAL;
                }
        }
        if (r == -EADDRNOTAVAIL) {
                reason_printf(ret_reason, "%s: the host must be a numeric address or localhost (names are not resolved)", s->spec);
                return r;
        }
        if (r < 0) {
                reason_printf(ret_reason, "%s: bad address (expected %s)", s->spec,
                              s->tcp ? "tcp:host:port" : "inet:host:port:name or unix:/path:name");
                return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

const char *table_socket_last_error(const TableSocket *s) {
        return s ? s->last_error : NULL;
}

static int socket_fail(TableSocket *s, int r, const char *fmt, const char *detail) {
        free(s->last_error);
        if (asprintf(&s->last_error, "%s%s%s", fmt, detail ? ": " : "", strempty(detail)) < 0)
                s->last_error = NULL;
        return r;
}

static void socket_close(TableSocket *s) {
        s->fd = safe_close(s->fd);
        strbuf_reset(&s->in);
}

static int socket_wait(int fd, short events, usec_t deadline) {
        for (;;) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

static int socket_connect(TableSocket *s, usec_t deadline) {
        int fd = -1;
        int r = socket_connect_nonblock(&s->sa, s->sa_len, &fd);
        if (r < 0)
                return r;
        if ((r = socket_wait(fd, POLLOUT, deadline)) < 0) {
                safe_close(fd);
                return r;
        }
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
                r = err ? -err : -errno;
                safe_close(fd);
                return r;
        }
        s->fd = fd;
        s->opened = now_usec(CLOCK_MONOTONIC);
        return 0;
}

static int socket_write(TableSocket *s, const char *buf, size_t n, usec_t deadline) {
        while (n > 0) {
                ssize_t w = send(s->fd, buf, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EAGAIN) {
                        int r = socket_wait(s->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                buf += w;
                n -= (size_t) w;
        }
        return 0;
}

/* Reads more input; -ECONNRESET when the server closed the connection. */
static int socket_fill(TableSocket *s, usec_t deadline) {
        char buf[4096];
        for (;;) {
                ssize_t n = recv(s->fd, buf, sizeof buf, 0);
                if (n > 0)
                        return strbuf_append(&s->in, buf, (size_t) n);
                if (n == 0)
                        return -ECONNRESET;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                int r = socket_wait(s->fd, POLLIN, deadline);
                if (r < 0)
                        return r;
        }
}

/* One reply: a netstring's contents, or (tcp) one line without its newline. */
static int socket_read_reply(TableSocket *s, usec_t deadline, char **ret) {
        for (;;) {
                if (s->tcp) {
                        char *nl = s->in.data ? memchr(s->in.data, '\n', s->in.len) : NULL;
                        if (nl) {
                                size_t n = (size_t) (nl - s->in.data);
                                if (n > 0 && s->in.data[n - 1] == '\r')
                                        n--;
                                *ret = memdup_suffix0(s->in.data, n);
                                strbuf_consume(&s->in, (size_t) (nl - s->in.data) + 1);
                                return *ret ? 0 : -ENOMEM;
                        }
                } else if (s->in.len > 0) {
                        size_t i = 0, len = 0;
                        while (i < s->in.len && isdigit((unsigned char) s->in.data[i]) && i < 7)
                                len = len * 10 + (size_t) (s->in.data[i++] - '0');
                        if (i < s->in.len) {
                                if (i == 0 || s->in.data[i] != ':' || len > SOCKET_REPLY_MAX)
                                        return -EBADMSG;
                                if (s->in.len >= i + 1 + len + 1) {
                                        if (s->in.data[i + 1 + len] != ',')
                                                return -EBADMSG;
                                        *ret = memdup_suffix0(s->in.data + i + 1, len);
                                        strbuf_consume(&s->in, i + 1 + len + 1);
                                        return *ret ? 0 : -ENOMEM;
                                }
                        }
                }
                int r = socket_fill(s, deadline);
                if (r < 0)
                        return r == -EMSGSIZE ? -EBADMSG : r;
        }
}

int table_socket_hex_quote(const char *in, char **ret) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int r = 0;
        for (const unsigned char *p = (const unsigned char *) in; *p && r >= 0; p++)
                r = *p <= 0x20 || *p >= 0x7f || *p == '%' ? strbuf_printf(&b, "%%%02X", *p) : strbuf_putc(&b, (char) *p);
        if (r < 0 || !(*ret = strbuf_steal(&b)))
                return r < 0 ? r : -ENOMEM;
        return 0;
}

int table_socket_hex_unquote(const char *in, char **ret) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        for (const char *p = in; *p; p++) {
                char c = *p;
                if (c == '%') {
                        if (!isxdigit((unsigned char) p[1]) || !isxdigit((unsigned char) p[2]))
                                return -EINVAL;
                        char hex[3] = { p[1], p[2], 0 };
                        c = (char) strtoul(hex, NULL, 16);
                        if (c == '\0')
                                return -EINVAL;
                        p += 2;
                }
                if (strbuf_putc(&b, c) < 0)
                        return -ENOMEM;
        }
        return (*ret = strbuf_steal(&b)) ? 0 : -ENOMEM;
}

/* Sends the request and reads the reply on the open connection. */
static int socket_exchange(TableSocket *s, const char *key, char **ret_reply) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + SOCKET_TIMEOUT_USEC;
        _cleanup_free_ char *req = NULL;
        int r;
        if (s->tcp) {
                _cleanup_free_ char *q = NULL;
                if ((r = table_socket_hex_quote(key, &q)) < 0)
                        return r;
                r = asprintf(&req, "get %s\n", q);
        } else
                r = asprintf(&req, "%zu:%s %s,", strlen(s->mapname) + 1 + strlen(key), s->mapname, key);
        if (r < 0) {
                req = NULL;
                return -ENOMEM;
        }
        if ((r = socket_write(s, req, strlen(req), deadline)) < 0)
                return r;
        return socket_read_reply(s, deadline, ret_reply);
}

/* What the reply means: 1 with *ret_value, 0, or <0 (with last_error set). */
static int socket_answer(TableSocket *s, const char *reply, char **ret_value) {
        const char *p;
        char *v = NULL;
        if (s->tcp) {
                if (strlen(reply) < 3 || (reply[3] != ' ' && reply[3] != '\0'))
                        return socket_fail(s, -EBADMSG, "malformed reply", reply);
                p = reply[3] ? reply + 4 : "";
                if (startswith(reply, "500"))
                        return 0;
                if (startswith(reply, "400"))
                        return socket_fail(s, -EAGAIN, "temporary error", p);
                if (!startswith(reply, "200"))
                        return socket_fail(s, -EBADMSG, "malformed reply", reply);
                if (table_socket_hex_unquote(p, &v) < 0)
                        return socket_fail(s, -EBADMSG, "bad %XX encoding in reply", reply);
        } else {
                if (startswith(reply, "NOTFOUND ") || streq(reply, "NOTFOUND"))
                        return 0;
                if ((p = startswith(reply, "OK ")) || (p = startswith(reply, "OK")))
                        v = strdup(p);
                else if ((p = startswith(reply, "TEMP ")) || (p = startswith(reply, "TIMEOUT ")) || (p = startswith(reply, "PERM ")))
                        return socket_fail(s, -EAGAIN, "server answered", reply);
                else
                        return socket_fail(s, -EBADMSG, "malformed reply", reply);
                if (!v)
                        return -ENOMEM;
        }
        if (ret_value)
                *ret_value = v;
        else
                free(v);
        return 1;
}

int table_socket_lookup(TableSocket *s, const char *key, char **ret_value) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (s->fd >= 0 && (now - s->last_used >= SOCKET_IDLE_USEC || now - s->opened >= SOCKET_LIFE_USEC))
                socket_close(s);
        for (int attempt = 0; attempt < 2; attempt++) {
                bool fresh = s->fd < 0;
                int r;
                if (fresh && (r = socket_connect(s, now_usec(CLOCK_MONOTONIC) + SOCKET_TIMEOUT_USEC)) < 0)
                        return socket_fail(s, r, "cannot connect", strerror(-r));
                _cleanup_free_ char *reply = NULL;
                r = socket_exchange(s, key, &reply);
                if (r >= 0) {
                        s->last_used = now_usec(CLOCK_MONOTONIC);
                        r = socket_answer(s, reply, ret_value);
                        if (r == -EBADMSG)
                                socket_close(s);
                        return r;
                }
                socket_close(s);
                if (r == -ENOMEM)
                        return r;
                if (fresh || r == -ETIMEDOUT || r == -EBADMSG)
                        return socket_fail(s, r, r == -EBADMSG ? "malformed reply" : "lookup failed", strerror(-r));
                /* the server closed a kept connection: open a new one at once */
        }
        return -EIO;
}
