/* test-metrics-http.c — postern-metrics' pure parts: the request parser (complete, incomplete,
 * malformed, oversized, HTTP/1.0 and 1.1, LF-only, query strings, the Accept header), the
 * responses (200 in both formats, HEAD, 404, 405, 400) and a scrape of a real queue.db
 * (queue gauges by queue, stored counters and histograms, postfix_up 0 without a queue). */
#include <errno.h>

#include "metrics.h"
#include "metrics/metrics-store.h"
#include "queue/queue.h"
#include "../../common/queue/test-queue-util.h"

static int parse(const char *s, MetricsRequest *req) {
        return metrics_http_parse(s, strlen(s), req);
}

static void test_parse(void) {
        MetricsRequest req;
        const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n";

        CHECK_INT(parse(get, &req), (int) strlen(get));
        CHECK_STR(req.method, "GET");
        CHECK_STR(req.path, "/metrics");
        CHECK(req.http11);
        CHECK_STR(req.accept, "application/openmetrics-text;version=1.0.0");
        CHECK_INT(parse("GET /metrics?x=1 HTTP/1.0\n\n", &req), 27);
        CHECK_STR(req.path, "/metrics");
        CHECK(!req.http11);
        CHECK_STR(req.accept, "");
        CHECK_INT(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &req), 0);   /* not yet */
        CHECK_INT(parse("GET /metrics HTTP/1.1\r\n", &req), 0);
        CHECK_INT(parse("", &req), 0);
        static const char *const bad[] = {
                "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
                " GET /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
                "GET  /metrics HTTP/1.1\r\n\r\n", "AVERYLONGMETHODNAMEHERE / HTTP/1.1\r\n\r\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK_INT(parse(bad[i], &req), -EBADMSG);
        char big[METRICS_REQUEST_MAX + 10];
        memset(big, 'a', sizeof big);
        memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
        CHECK_INT(metrics_http_parse(big, sizeof big, &req), -EMSGSIZE);
}

static int fake_scrape(MetricsFormat fmt, StrBuf *body, void *ud) {
        return strbuf_puts(body, fmt == METRICS_FORMAT_OPENMETRICS ? "om\n# EOF\n" : "prom\n");
}

static void respond(const char *request, const char *expect_start, const char *expect_end) {
        MetricsRequest req;
        _cleanup_(strbuf_donep) StrBuf out = STRBUF_INIT;
        int r = parse(request, &req);
        CHECK_INT(metrics_http_respond(r > 0 ? &req : NULL, fake_scrape, NULL, &out), 0);
        if (strncmp(out.data, expect_start, strlen(expect_start)) != 0 ||
            strcmp(out.data + out.len - strlen(expect_end), expect_end) != 0) {
                fprintf(stderr, "%s\ngot:\n%s\n", request, out.data);
                CHECK(false);
        }
}

static void test_respond(void) {
        respond("GET /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 5\r\n",
                "Connection: close\r\n\r\nprom\n");
        respond("GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n",
                "\r\n\r\nom\n# EOF\n");
        respond("HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n", "Content-Length: 5\r\nConnection: close\r\n\r\n");
        respond("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n", "try /metrics\n");
        respond("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n", "Method not allowed\n");
        respond("garbage\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", "Bad request\n");
}

static void expect_line(const StrBuf *b, const char *line) {
        char l[512];
        snprintf(l, sizeof l, "\n%s\n", line);
        if (!strstr(b->data, l)) {
                fprintf(stderr, "missing line: %s\nin:\n%s", line, b->data);
                CHECK(false);
        }
}

static void test_scrape(void) {
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT, om = STRBUF_INIT;
        Queue *q = NULL;
        QueueMessage m1, m2;
        QueueRecipient r2[2];
        usec_t now = 1000 * USEC_PER_SEC;

        test_dir_create("test-metrics-http");
        /* No queue yet: postfix_up 0. */
        CHECK_INT(metrics_scrape(dir, now, METRICS_FORMAT_PROMETHEUS, &b), 0);
        expect_line(&b, "postfix_up 0");
        CHECK(!strstr(b.data, "postfix_smtpd_connects_total 0"));
        strbuf_reset(&b);

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        insert_simple(q, &m1, now - 50 * USEC_PER_SEC, 1, NULL);    /* incoming, 50 s */
        insert_simple(q, &m2, now - 500 * USEC_PER_SEC, 2, r2);     /* deferred, 500 s */
        r2[0].state = r2[1].state = QUEUE_RCPT_DEFERRED;
        r2[0].next_attempt_usec = r2[1].next_attempt_usec = now + USEC_PER_SEC;
        CHECK_INT(queue_update_recipient(q, &r2[0]), 0);
        CHECK_INT(queue_update_recipient(q, &r2[1]), 0);
        metrics_add(METRIC_SMTPD_CONNECTS, NULL, 3);
        metrics_add(METRIC_DELIVERIES, "transport=\"smtp\",status=\"sent\"", 2);
        metrics_observe(METRIC_DELIVERY_DELAY, "transport=\"smtp\"", 5);
        MetricsBatch *batch = NULL;
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(metrics_save(q, &batch), 0);
        CHECK_INT(queue_commit(q), 0);
        metrics_saved(batch, 0);
        q = queue_close(q);

        CHECK_INT(metrics_scrape(dir, now, METRICS_FORMAT_PROMETHEUS, &b), 0);
        expect_line(&b, "postfix_up 1");
        expect_line(&b, "# TYPE postfix_smtpd_connects_total counter");
        expect_line(&b, "postfix_smtpd_connects_total 3");
        expect_line(&b, "postfix_smtpd_disconnects_total 0");
        expect_line(&b, "postern_deliveries_total{transport=\"smtp\",status=\"sent\"} 2");
        expect_line(&b, "postern_delivery_delay_seconds_bucket{transport=\"smtp\",le=\"1\"} 0");
        expect_line(&b, "postern_delivery_delay_seconds_bucket{transport=\"smtp\",le=\"10\"} 1");
        expect_line(&b, "postern_delivery_delay_seconds_bucket{transport=\"smtp\",le=\"+Inf\"} 1");
        expect_line(&b, "postern_delivery_delay_seconds_sum{transport=\"smtp\"} 5");
        expect_line(&b, "postern_delivery_delay_seconds_count{transport=\"smtp\"} 1");
        expect_line(&b, "postfix_showq_message_age_seconds_bucket{queue=\"incoming\",le=\"100\"} 1");
        expect_line(&b, "postfix_showq_message_age_seconds_bucket{queue=\"deferred\",le=\"100\"} 0");
        expect_line(&b, "postfix_showq_message_age_seconds_bucket{queue=\"deferred\",le=\"1000\"} 1");
        expect_line(&b, "postfix_showq_message_age_seconds_sum{queue=\"deferred\"} 500");
        expect_line(&b, "postfix_showq_message_size_bytes_count{queue=\"hold\"} 0");
        expect_line(&b, "postern_queue_recipients{queue=\"deferred\"} 2");
        expect_line(&b, "postern_queue_recipients{queue=\"incoming\"} 1");
        expect_line(&b, "postern_queue_recipients{queue=\"active\"} 0");
        CHECK(!strstr(b.data, "# EOF"));

        /* A second later the deferred recipients are due: active. OpenMetrics ends in # EOF. */
        CHECK_INT(metrics_scrape(dir, now + 2 * USEC_PER_SEC, METRICS_FORMAT_OPENMETRICS, &om), 0);
        expect_line(&om, "postern_queue_recipients{queue=\"active\"} 2");
        expect_line(&om, "# TYPE postfix_smtpd_connects counter");
        expect_line(&om, "postfix_smtpd_connects_total 3");
        CHECK(strcmp(om.data + om.len - 7, "\n# EOF\n") == 0);
        dir_clean(dir);
}

int main(void) {
        test_parse();
        test_respond();
        test_scrape();
        return 0;
}
