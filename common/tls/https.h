/* https.h — a small blocking HTTPS/1.1 client with GnuTLS: one request per connection
 * ("Connection: close"), used by postern-smtp's MTA-STS policy fetch (GET, on a thread of its
 * own) and by `posternctl tlsrpt send` (POST of a report to an https: rua, RFC 8460 3).
 *
 * The whole exchange — name lookup, connect, handshake, request, reply — has one deadline. The
 * server certificate must verify (chain against ca_file or the system trust store, and the host
 * name), or the request fails. Redirects are never followed: a 3xx is returned as a status like
 * any other (with its Location), for the caller to refuse. The reply is read to the end of the
 * connection and bounded: a body above max_body fails with -EFBIG. Chunked bodies are decoded.
 *
 * Library code: nothing here logs; errors are negative errno with a reason in why. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct HttpsRequest {
        const char *method;               /* "GET" or "POST" */
        const char *host;                 /* DNS name: looked up, sent as SNI and Host:, verified */
        unsigned port;                    /* 0: 443 */
        const char *path;                 /* "/…" */
        const char *accept;               /* the Accept: header, or NULL */
        const char *content_type;         /* POST: the body's Content-Type */
        const void *body;                 /* POST: the body */
        size_t body_len;
        const char *ca_file;              /* PEM trust anchors; NULL or "": the system store */
        uint64_t timeout_usec;            /* the whole exchange */
        size_t max_body;                  /* the reply body, bytes */
} HttpsRequest;

typedef struct HttpsReply {
        int status;                       /* 200, 301, 500, … */
        char *content_type;               /* the header's value, or NULL */
        char *location;                   /* ditto, for a redirect */
        char *body;                       /* NUL-terminated */
        size_t body_len;
} HttpsReply;

/* Sends the request and reads the reply into *ret (zeroed first; free with https_reply_done()):
 * 0 whatever the HTTP status, or <0 (connect, TLS, certificate, timeout, -EFBIG, a malformed
 * reply) with the reason in why. */
int https_request(const HttpsRequest *req, HttpsReply *ret, char *why, size_t why_size);
void https_reply_done(HttpsReply *r);

/* Splits "https://host[:port][/path]" into host (DNS name characters only, at most 253),
 * port (443 when absent) and path ("/" when absent; no spaces or control characters).
 * 0, or -EINVAL. host_size >= 254, path_size for the path. */
int https_url_parse(const char *url, char *host, size_t host_size, unsigned *ret_port, char *path,
                    size_t path_size);
