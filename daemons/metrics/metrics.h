/* metrics.h — postern-metrics' modules: the HTTP request parser (metrics-http.c) and the scrape
 * that turns queue.db into exposition text (metrics-scrape.c). main() and the connections are in
 * metrics.c. */
#pragma once

#include <stddef.h>
#include "basic/strbuf.h"
#include "basic/macro.h"
#include "metrics/metrics-text.h"

#define METRICS_REQUEST_MAX 8192                   /* request line and headers */
#define METRICS_REQUEST_TIMEOUT_USEC (10 * USEC_PER_SEC)

typedef struct MetricsRequest {
        char method[16];
        char path[256];        /* without the query string */
        bool http11;
        char accept[512];      /* the Accept header, "" when none */
} MetricsRequest;

/* Parses the request in buf[0..len): 0 when the header is not complete yet, the length of the
 * header (> 0) when it is and *ret is filled, -EBADMSG for a malformed request, -EMSGSIZE when a
 * complete header cannot fit in METRICS_REQUEST_MAX. */
int metrics_http_parse(const char *buf, size_t len, MetricsRequest *ret);

/* The whole response for a request (ret is NULL for a malformed one): 200 with the body from
 * scrape() for GET/HEAD /metrics, 404 other paths, 405 other methods, 400 malformed. */
int metrics_http_respond(const MetricsRequest *req, int (*scrape)(MetricsFormat fmt, StrBuf *body, void *ud),
                         void *ud, StrBuf *out);

/* The exposition text for the queue in queue_directory, at now_usec (CLOCK_REALTIME). */
int metrics_scrape(const char *queue_directory, usec_t now_usec, MetricsFormat fmt, StrBuf *body);
