/* metrics-http.c — just enough HTTP/1.0 and 1.1 for a scraper: one request per connection
 * (the answer says Connection: close), GET or HEAD, the request line and headers bounded by
 * METRICS_REQUEST_MAX, a body never read (a GET has none). Pure functions, unit-tested. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "metrics.h"

/* Finds the end of the header: the empty line (CRLF CRLF, or LF LF from lenient clients). */
static size_t header_end(const char *buf, size_t len) {
        for (size_t i = 0; i + 1 < len; i++) {
                if (buf[i] != '\n')
                        continue;
                if (buf[i + 1] == '\n')
                        return i + 2;
                if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
                        return i + 3;
        }
        return 0;
}

static bool token_char(char c) {
        return c > ' ' && c < 127;
}

int metrics_http_parse(const char *buf, size_t len, MetricsRequest *ret) {
        size_t end = header_end(buf, MIN(len, (size_t) METRICS_REQUEST_MAX));
        MetricsRequest req = {};

        if (end == 0)
                return len >= METRICS_REQUEST_MAX ? -EMSGSIZE : 0;
        if (memchr(buf, '\0', end))
                return -EBADMSG;

        /* Request line: METHOD SP target SP HTTP/1.x */
        const char *p = buf, *eol = memchr(buf, '\n', end);
        size_t n = 0;
        while (p + n < eol && token_char(p[n]))
                n++;
        if (n == 0 || n >= sizeof req.method || p[n] != ' ')
                return -EBADMSG;
        memcpy(req.method, p, n);
        p += n + 1;
        for (n = 0; p + n < eol && token_char(p[n]); n++)
                ;
        if (n == 0 || p[0] != '/' || p[n] != ' ')
                return -EBADMSG;
        size_t plen = strcspn(p, "? ");
        if (plen > n)
                plen = n;
        if (plen >= sizeof req.path)
                plen = sizeof req.path - 1;   /* too long for /metrics anyway: a 404 */
        memcpy(req.path, p, plen);
        p += n + 1;
        size_t vlen = (size_t) (eol - p);
        if (vlen > 0 && p[vlen - 1] == '\r')
                vlen--;
        if (vlen == 8 && strncmp(p, "HTTP/1.1", 8) == 0)
                req.http11 = true;
        else if (!(vlen == 8 && strncmp(p, "HTTP/1.0", 8) == 0))
                return -EBADMSG;

        /* Headers: only Accept matters; each must be "name: value". */
        for (p = eol + 1; p < buf + end; p = eol + 1) {
                eol = memchr(p, '\n', (size_t) (buf + end - p));
                size_t l = (size_t) (eol - p);
                if (l > 0 && p[l - 1] == '\r')
                        l--;
                if (l == 0)
                        break;
                const char *colon = memchr(p, ':', l);
                if (!colon || colon == p || p[0] == ' ' || p[0] == '\t')
                        return -EBADMSG;
                if ((size_t) (colon - p) == 6 && strncasecmp(p, "accept", 6) == 0) {
                        const char *v = colon + 1;
                        while (v < p + l && (*v == ' ' || *v == '\t'))
                                v++;
                        size_t vl = MIN((size_t) (p + l - v), sizeof req.accept - 1);
                        memcpy(req.accept, v, vl);
                        req.accept[vl] = '\0';
                }
        }
        *ret = req;
        return (int) end;
}

static int respond(StrBuf *out, const char *status, const char *extra, const char *type,
                   const char *body, size_t body_len, bool head) {
        int r = strbuf_printf(out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                              "Connection: close\r\n\r\n", status, type, body_len, extra);
        if (r >= 0 && !head && body_len > 0)
                r = strbuf_append(out, body, body_len);
        return r;
}

#define PLAIN "text/plain; charset=utf-8"

int metrics_http_respond(const MetricsRequest *req, int (*scrape)(MetricsFormat fmt, StrBuf *body, void *ud),
                         void *ud, StrBuf *out) {
        if (!req)
                return respond(out, "400 Bad Request", "", PLAIN, "Bad request\n", 12, false);
        bool head = streq(req->method, "HEAD");
        if (!head && !streq(req->method, "GET"))
                return respond(out, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", PLAIN,
                               "Method not allowed\n", 19, false);
        if (!streq(req->path, "/metrics"))
                return respond(out, "404 Not Found", "", PLAIN, "Not found: try /metrics\n", 24, head);

        _cleanup_(strbuf_donep) StrBuf body = STRBUF_INIT;
        MetricsFormat fmt = metrics_format_for_accept(req->accept);
        int r = scrape(fmt, &body, ud);
        if (r < 0)
                return respond(out, "500 Internal Server Error", "", PLAIN, "Internal error\n", 15, head);
        return respond(out, "200 OK", "", metrics_content_type(fmt), body.data ? body.data : "", body.len, head);
}
