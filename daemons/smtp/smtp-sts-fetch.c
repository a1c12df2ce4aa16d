/* smtp-sts-fetch.c — the HTTPS GET of an MTA-STS policy (RFC 8461 3.3):
 * https://mta-sts.<domain>/.well-known/mta-sts.txt, HTTP/1.1 over TLS on port 443.
 *
 * The fetch runs on a thread of its own with blocking sockets (one fetch per thread, joined when
 * it is done), so that postern-smtp's event loop never waits: the thread writes to a pipe and the
 * loop calls the handler. The whole fetch — name lookup, connect, handshake, request, reply —
 * has one deadline (smtp_mta_sts_fetch_timeout). The server certificate must verify against the
 * system trust store (or smtp_mta_sts_CAfile) for the name mta-sts.<domain>; a reply other than
 * 200 (a redirect included: 3.3 forbids following them), a Content-Type other than text/plain, or
 * a body above the size limit fails the fetch. Chunked bodies are decoded. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "smtp-sts.h"

#define HEADER_MAX 16384

struct StsFetch {
        sd_event_source *io;
        int pipe[2];
        pthread_t thread;
        char *domain;
        StsFetchConfig cfg;
        char *ca_file;
        StsFetchHandler handler;
        void *userdata;
        /* the thread's result */
        int r;
        char why[300];
        char *body;
        size_t len;
};

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static int remaining_ms(uint64_t deadline) {
        uint64_t now = mono_usec();
        return now >= deadline ? 0 : (int) ((deadline - now + 999) / 1000);
}

static int wait_fd(int fd, short events, uint64_t deadline) {
        struct pollfd p = { .fd = fd, .events = events };
        for (;;) {
                int ms = remaining_ms(deadline);
                if (ms == 0)
                        return -ETIMEDOUT;
                int r = poll(&p, 1, ms);
                if (r > 0)
                        return 0;
                if (r == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

static int connect_host(const char *host, unsigned port, uint64_t deadline, char *why, size_t why_size) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
        struct addrinfo *res = NULL;
        char service[16];
        int r = -EHOSTUNREACH;

        snprintf(service, sizeof service, "%u", port);
        int e = getaddrinfo(host, service, &hints, &res);
        if (e != 0) {
                snprintf(why, why_size, "cannot resolve %s: %s", host, gai_strerror(e));
                return -EHOSTUNREACH;
        }
        snprintf(why, why_size, "cannot connect to %s", host);
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        r = -errno;
                        close(fd);
                        continue;
                }
                int err = 0;
                socklen_t el = sizeof err;
                if ((r = wait_fd(fd, POLLOUT, deadline)) < 0 ||
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
                        r = r < 0 ? r : -(err ? err : EIO);
                        close(fd);
                        if (r == -ETIMEDOUT)
                                break;
                        continue;
                }
                freeaddrinfo(res);
                return fd;
        }
        freeaddrinfo(res);
        snprintf(why, why_size, "cannot connect to %s port %u: %s", host, port, strerror(-r));
        return r;
}

/* Reads from the session until EOF, the deadline or limit bytes. */
static int read_all(gnutls_session_t s, int fd, uint64_t deadline, size_t limit, char **ret, size_t *ret_len,
                    char *why, size_t why_size) {
        size_t n = 0, cap = 4096;
        char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (n == cap) {
                        if (cap >= limit) {
                                free(buf);
                                snprintf(why, why_size, "reply larger than %zu bytes", limit);
                                return -EFBIG;
                        }
                        cap = cap * 2 > limit ? limit : cap * 2;
                        char *nb = realloc(buf, cap + 1);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                }
                ssize_t k = gnutls_record_recv(s, buf + n, cap - n);
                if (k > 0) {
                        n += (size_t) k;
                        continue;
                }
                if (k == 0 || k == GNUTLS_E_PREMATURE_TERMINATION)
                        break;
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) {
                        int r = wait_fd(fd, POLLIN, deadline);
                        if (r < 0) {
                                free(buf);
                                snprintf(why, why_size, "timed out reading the reply");
                                return r;
                        }
                        continue;
                }
                free(buf);
                snprintf(why, why_size, "reading the reply: %s", gnutls_strerror((int) k));
                return -EIO;
        }
        buf[n] = '\0';
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* A header's value in the header block hdr (lines after the status line), or NULL. */
static const char *header_value(const char *hdr, const char *name, size_t *ret_len) {
        size_t nl = strlen(name);
        for (const char *p = hdr; p && *p;) {
                const char *eol = strstr(p, "\r\n");
                if (!eol || eol == p)
                        break;
                if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        const char *e = eol;
                        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                                e--;
                        *ret_len = (size_t) (e - v);
                        return v;
                }
                p = eol + 2;
        }
        return NULL;
}

/* Decodes a chunked body in place; -EBADMSG when malformed. */
static int dechunk(char *body, size_t len, size_t *ret_len) {
        size_t in = 0, out = 0;
        for (;;) {
                char *end;
                if (in >= len)
                        return -EBADMSG;
                unsigned long long size = strtoull(body + in, &end, 16);
                if (end == body + in)
                        return -EBADMSG;
                char *crlf = strstr(end, "\r\n");
                if (!crlf)
                        return -EBADMSG;
                in = (size_t) (crlf + 2 - body);
                if (size == 0)
                        break;
                if (size > len - in || len - in - size < 2)
                        return -EBADMSG;
                memmove(body + out, body + in, size);
                out += size;
                in += size + 2;
        }
        body[out] = '\0';
        *ret_len = out;
        return 0;
}

/* Status 200, text/plain, the body within max_size (Content-Length or chunked or to EOF). */
static int parse_reply(char *reply, size_t len, const StsFetchConfig *cfg, char **ret_body, size_t *ret_len,
                       char *why, size_t why_size) {
        int major, minor, status;
        char *hdr_end = strstr(reply, "\r\n\r\n");
        if (!hdr_end || sscanf(reply, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
                snprintf(why, why_size, "not an HTTP reply");
                return -EBADMSG;
        }
        hdr_end[2] = '\0';   /* the header block ends with its last CRLF */
        const char *hdr = strstr(reply, "\r\n") + 2;
        if (status / 100 == 3) {
                size_t l = 0;
                const char *loc = header_value(hdr, "Location", &l);
                snprintf(why, why_size, "redirect (HTTP %d%s%.*s) refused", status, loc ? " to " : "",
                         loc ? (int) (l > 200 ? 200 : l) : 0, loc ? loc : "");
                return -EPROTO;
        }
        if (status != 200) {
                snprintf(why, why_size, "HTTP status %d", status);
                return -EPROTO;
        }
        size_t l = 0;
        const char *ct = header_value(hdr, "Content-Type", &l);
        if (!ct || l < 10 || strncasecmp(ct, "text/plain", 10) != 0 || (l > 10 && ct[10] != ';' && ct[10] != ' ')) {
                snprintf(why, why_size, "Content-Type %.*s is not text/plain", ct ? (int) (l > 80 ? 80 : l) : 6,
                         ct ? ct : "(none)");
                return -EPROTO;
        }
        char *body = hdr_end + 4;
        size_t blen = len - (size_t) (body - reply);
        const char *te = header_value(hdr, "Transfer-Encoding", &l);
        if (te && l == 7 && strncasecmp(te, "chunked", 7) == 0) {
                if (dechunk(body, blen, &blen) < 0) {
                        snprintf(why, why_size, "malformed chunked body");
                        return -EBADMSG;
                }
        } else if ((te = header_value(hdr, "Content-Length", &l))) {
                unsigned long long cl = strtoull(te, NULL, 10);
                if (cl > blen) {
                        snprintf(why, why_size, "body shorter than its Content-Length");
                        return -EBADMSG;
                }
                blen = (size_t) cl;
        }
        if (blen > cfg->max_size) {
                snprintf(why, why_size, "policy larger than %zu bytes", cfg->max_size);
                return -EFBIG;
        }
        char *b = strndup(body, blen);
        if (!b)
                return -ENOMEM;
        *ret_body = b;
        *ret_len = blen;
        return 0;
}

int sts_fetch_blocking(const char *domain, const StsFetchConfig *cfg, char **ret_body, size_t *ret_len,
                       char *why, size_t why_size) {
        uint64_t deadline = mono_usec() + cfg->timeout_usec;
        gnutls_certificate_credentials_t cred = NULL;
        gnutls_session_t s = NULL;
        char host[300], req[600];
        char *reply = NULL;
        size_t reply_len = 0;
        int fd = -1, r;

        if (snprintf(host, sizeof host, "mta-sts.%s", domain) >= (int) sizeof host) {
                snprintf(why, why_size, "domain name too long");
                return -EINVAL;
        }
        if (gnutls_certificate_allocate_credentials(&cred) < 0)
                return -ENOMEM;
        r = !isempty(cfg->ca_file) ? gnutls_certificate_set_x509_trust_file(cred, cfg->ca_file, GNUTLS_X509_FMT_PEM)
                                   : gnutls_certificate_set_x509_system_trust(cred);
        if (r <= 0) {
                snprintf(why, why_size, "no trust anchors (%s): %s", isempty(cfg->ca_file) ? "system store" : cfg->ca_file,
                         r < 0 ? gnutls_strerror(r) : "none loaded");
                r = -EIO;
                goto out;
        }
        fd = connect_host(host, cfg->port, deadline, why, why_size);
        if (fd < 0) {
                r = fd;
                goto out;
        }
        if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 || gnutls_set_default_priority(s) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
            gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host)) < 0) {
                r = -ENOMEM;
                goto out;
        }
        gnutls_session_set_verify_cert(s, host, 0);   /* chain and host name, in the handshake */
        gnutls_transport_set_int(s, fd);
        while ((r = gnutls_handshake(s)) < 0) {
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        int w = wait_fd(fd, gnutls_record_get_direction(s) ? POLLOUT : POLLIN, deadline);
                        if (w < 0) {
                                snprintf(why, why_size, "TLS handshake with %s timed out", host);
                                r = w;
                                goto out;
                        }
                        continue;
                }
                if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
                        gnutls_datum_t txt = {};
                        unsigned status = gnutls_session_get_verify_cert_status(s);
                        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
                                snprintf(why, why_size, "certificate of %s not verified: %s", host, txt.data);
                                gnutls_free(txt.data);
                        } else
                                snprintf(why, why_size, "certificate of %s not verified", host);
                } else
                        snprintf(why, why_size, "TLS handshake with %s: %s", host, gnutls_strerror(r));
                r = -EPERM;
                goto out;
        }
        int n = snprintf(req, sizeof req, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n"
                         "User-Agent: postern-smtp\r\nAccept: text/plain\r\nConnection: close\r\n\r\n", host);
        for (size_t off = 0; off < (size_t) n;) {
                ssize_t k = gnutls_record_send(s, req + off, (size_t) n - off);
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) {
                        if ((r = wait_fd(fd, POLLOUT, deadline)) < 0) {
                                snprintf(why, why_size, "timed out sending the request");
                                goto out;
                        }
                        continue;
                }
                if (k < 0) {
                        snprintf(why, why_size, "sending the request: %s", gnutls_strerror((int) k));
                        r = -EIO;
                        goto out;
                }
                off += (size_t) k;
        }
        r = read_all(s, fd, deadline, cfg->max_size + HEADER_MAX, &reply, &reply_len, why, why_size);
        if (r == -EFBIG)
                snprintf(why, why_size, "policy larger than %zu bytes", cfg->max_size);
        if (r < 0)
                goto out;
        r = parse_reply(reply, reply_len, cfg, ret_body, ret_len, why, why_size);
out:
        free(reply);
        if (s)
                gnutls_deinit(s);
        if (fd >= 0)
                close(fd);
        gnutls_certificate_free_credentials(cred);
        return r;
}

static void *fetch_thread(void *p) {
        StsFetch *f = p;
        f->r = sts_fetch_blocking(f->domain, &f->cfg, &f->body, &f->len, f->why, sizeof f->why);
        if (f->r < 0 && !f->why[0])
                snprintf(f->why, sizeof f->why, "%s", strerror(-f->r));
        char c = 1;
        (void) !write(f->pipe[1], &c, 1);
        return NULL;
}

static void fetch_free(StsFetch *f) {
        sd_event_source_disable_unref(f->io);
        if (f->pipe[0] >= 0)
                close(f->pipe[0]);
        if (f->pipe[1] >= 0)
                close(f->pipe[1]);
        free(f->domain);
        free(f->ca_file);
        free(f->body);
        free(f);
}

static int on_done(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        StsFetch *f = userdata;
        pthread_join(f->thread, NULL);
        f->handler(f, f->r, f->why, f->body, f->len, f->userdata);
        fetch_free(f);
        return 0;
}

int sts_fetch_start(sd_event *e, const char *domain, const StsFetchConfig *cfg, StsFetchHandler handler,
                    void *userdata, StsFetch **ret) {
        StsFetch *f = calloc(1, sizeof(StsFetch));
        int r;
        if (!f)
                return -ENOMEM;
        f->pipe[0] = f->pipe[1] = -1;
        f->cfg = *cfg;
        f->handler = handler;
        f->userdata = userdata;
        if (!(f->domain = strdup(domain)) || (cfg->ca_file && !(f->ca_file = strdup(cfg->ca_file)))) {
                fetch_free(f);
                return -ENOMEM;
        }
        f->cfg.ca_file = f->ca_file;
        if (pipe2(f->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                fetch_free(f);
                return r;
        }
        r = sd_event_add_io(e, &f->io, f->pipe[0], EPOLLIN, on_done, f);
        if (r < 0) {
                fetch_free(f);
                return r;
        }
        r = -pthread_create(&f->thread, NULL, fetch_thread, f);
        if (r < 0) {
                fetch_free(f);
                return r;
        }
        if (ret)
                *ret = f;
        return 0;
}

void sts_fetch_cancel(StsFetch *f) {
        if (!f)
                return;
        pthread_join(f->thread, NULL);
        fetch_free(f);
}
