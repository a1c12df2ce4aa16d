/* https.c — the blocking HTTPS client of https.h: connect with one deadline, a verified GnuTLS
 * handshake, one request, the reply read to EOF within a size bound, parsed into status, a few
 * headers and the (de-chunked) body. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "basic/macro.h"
#include "https.h"

#define HEADER_MAX 16384

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

static char *header_dup(const char *hdr, const char *name) {
        size_t l = 0;
        const char *v = header_value(hdr, name, &l);
        return v ? strndup(v, l) : NULL;
}

/* The status, Content-Type, Location and body of the reply (len bytes, NUL-terminated). */
static int parse_reply(char *reply, size_t len, size_t max_body, HttpsReply *ret, char *why, size_t why_size) {
        int major, minor, status;
        char *hdr_end = strstr(reply, "\r\n\r\n");
        if (!hdr_end || sscanf(reply, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
                snprintf(why, why_size, "not an HTTP reply");
                return -EBADMSG;
        }
        hdr_end[2] = '\0';   /* the header block ends with its last CRLF */
        const char *hdr = strstr(reply, "\r\n") + 2;
        char *body = hdr_end + 4;
        size_t blen = len - (size_t) (body - reply), l = 0;
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
        if (blen > max_body) {
                snprintf(why, why_size, "reply body larger than %zu bytes", max_body);
                return -EFBIG;
        }
        HttpsReply r = { .status = status };
        r.content_type = header_dup(hdr, "Content-Type");
        r.location = header_dup(hdr, "Location");
        r.body = strndup(body, blen);
        r.body_len = blen;
        if (!r.body) {
                https_reply_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

static int send_all(gnutls_session_t s, int fd, const void *p, size_t n, uint64_t deadline, char *why,
                    size_t why_size) {
        for (size_t off = 0; off < n;) {
                ssize_t k = gnutls_record_send(s, (const char *) p + off, n - off);
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) {
                        int r = wait_fd(fd, POLLOUT, deadline);
                        if (r < 0) {
                                snprintf(why, why_size, "timed out sending the request");
                                return r;
                        }
                        continue;
                }
                if (k < 0) {
                        snprintf(why, why_size, "sending the request: %s", gnutls_strerror((int) k));
                        return -EIO;
                }
                off += (size_t) k;
        }
        return 0;
}

static int handshake(gnutls_session_t s, int fd, const char *host, uint64_t deadline, char *why, size_t why_size) {
        int r;
        while ((r = gnutls_handshake(s)) < 0) {
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        int w = wait_fd(fd, gnutls_record_get_direction(s) ? POLLOUT : POLLIN, deadline);
                        if (w < 0) {
                                snprintf(why, why_size, "TLS handshake with %s timed out", host);
                                return w;
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
                return -EPERM;
        }
        return 0;
}

int https_request(const HttpsRequest *req, HttpsReply *ret, char *why, size_t why_size) {
        uint64_t deadline = mono_usec() + req->timeout_usec;
        gnutls_certificate_credentials_t cred = NULL;
        gnutls_session_t s = NULL;
        char *head = NULL, *reply = NULL;
        size_t reply_len = 0;
        unsigned port = req->port ? req->port : 443;
        int fd = -1, r;

        *ret = (HttpsReply) {};
        if (gnutls_certificate_allocate_credentials(&cred) < 0)
                return -ENOMEM;
        r = !isempty(req->ca_file) ? gnutls_certificate_set_x509_trust_file(cred, req->ca_file, GNUTLS_X509_FMT_PEM)
                                   : gnutls_certificate_set_x509_system_trust(cred);
        if (r <= 0) {
                snprintf(why, why_size, "no trust anchors (%s): %s", isempty(req->ca_file) ? "system store" : req->ca_file,
                         r < 0 ? gnutls_strerror(r) : "none loaded");
                r = -EIO;
                goto out;
        }
        fd = connect_host(req->host, port, deadline, why, why_size);
        if (fd < 0) {
                r = fd;
                goto out;
        }
        if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 || gnutls_set_default_priority(s) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
            gnutls_server_name_set(s, GNUTLS_NAME_DNS, req->host, strlen(req->host)) < 0) {
                r = -ENOMEM;
                goto out;
        }
        gnutls_session_set_verify_cert(s, req->host, 0);   /* chain and host name, in the handshake */
        gnutls_transport_set_int(s, fd);
        if ((r = handshake(s, fd, req->host, deadline, why, why_size)) < 0)
                goto out;
        char port_part[16] = "";
        if (port != 443)
                snprintf(port_part, sizeof port_part, ":%u", port);
        int n = req->body ? asprintf(&head, "%s %s HTTP/1.1\r\nHost: %s%s\r\nUser-Agent: postern\r\n%s%s%s"
                                     "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                                     req->method, req->path, req->host, port_part,
                                     req->accept ? "Accept: " : "", strempty(req->accept), req->accept ? "\r\n" : "",
                                     strempty(req->content_type), req->body_len)
                          : asprintf(&head, "%s %s HTTP/1.1\r\nHost: %s%s\r\nUser-Agent: postern\r\n%s%s%s"
                                     "Connection: close\r\n\r\n",
                                     req->method, req->path, req->host, port_part,
                                     req->accept ? "Accept: " : "", strempty(req->accept), req->accept ? "\r\n" : "");
        if (n < 0) {
                head = NULL;
                r = -ENOMEM;
                goto out;
        }
        if ((r = send_all(s, fd, head, (size_t) n, deadline, why, why_size)) < 0 ||
            (req->body && (r = send_all(s, fd, req->body, req->body_len, deadline, why, why_size)) < 0))
                goto out;
        r = read_all(s, fd, deadline, req->max_body + HEADER_MAX, &reply, &reply_len, why, why_size);
        if (r == -EFBIG)
                snprintf(why, why_size, "reply body larger than %zu bytes", req->max_body);
        if (r < 0)
                goto out;
        r = parse_reply(reply, reply_len, req->max_body, ret, why, why_size);
out:
        free(head);
        free(reply);
        if (s)
                gnutls_deinit(s);
        if (fd >= 0)
                close(fd);
        gnutls_certificate_free_credentials(cred);
        return r;
}

void https_reply_done(HttpsReply *r) {
        free(r->content_type);
        free(r->location);
        free(r->body);
        *r = (HttpsReply) {};
}

int https_url_parse(const char *url, char *host, size_t host_size, unsigned *ret_port, char *path,
                    size_t path_size) {
        if (strncasecmp(url, "https://", 8) != 0)
                return -EINVAL;
        const char *h = url + 8;
        size_t hl = strcspn(h, ":/?#");
        if (hl == 0 || hl > 253 || hl >= host_size)
                return -EINVAL;
        for (size_t i = 0; i < hl; i++)
                if (!(('a' <= h[i] && h[i] <= 'z') || ('A' <= h[i] && h[i] <= 'Z') || ('0' <= h[i] && h[i] <= '9') ||
                      h[i] == '-' || h[i] == '.'))
                        return -EINVAL;
        const char *p = h + hl;
        unsigned port = 443;
        if (*p == ':') {
                char *end;
                unsigned long v = strtoul(p + 1, &end, 10);
                if (end == p + 1 || v == 0 || v > 65535 || (*end && *end != '/'))
                        return -EINVAL;
                port = (unsigned) v;
                p = end;
        }
        if (*p == '?' || *p == '#')
                return -EINVAL;
        const char *rest = *p ? p : "/";
        size_t rl = strcspn(rest, "#");
        if (rl >= path_size)
                return -EINVAL;
        for (size_t i = 0; i < rl; i++)
                if ((unsigned char) rest[i] <= ' ' || rest[i] == 0x7f)
                        return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = '\0';
        memcpy(path, rest, rl);
        path[rl] = '\0';
        *ret_port = port;
        return 0;
}
