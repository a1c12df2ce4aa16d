/* test-metrics-text.c — the exposition writer: label escaping, value formatting, # HELP/# TYPE
 * lines in both formats (OpenMetrics drops a counter's _total from the family name), histogram
 * _bucket/_sum/_count, # EOF only for OpenMetrics, and the Accept header choice. */
#include <errno.h>
#include <math.h>

#include "basic/tests.h"
#include "metrics/metrics-text.h"

static void test_values(void) {
        static const struct { double v; const char *text; } cases[] = {
                { 0, "0" }, { 3, "3" }, { -2, "-2" }, { 0.5, "0.5" }, { 0.001, "0.001" },
                { 1e9, "1000000000" }, { 0.1, "0.1" }, { 2.25, "2.25" }, { 1e20, "1e+20" },
        };
        char buf[64];
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                metrics_format_value(cases[i].v, buf, sizeof buf);
                CHECK_STR(buf, cases[i].text);
        }
        metrics_format_value(INFINITY, buf, sizeof buf);
        CHECK_STR(buf, "+Inf");
        metrics_format_value(-INFINITY, buf, sizeof buf);
        CHECK_STR(buf, "-Inf");
        metrics_format_value(NAN, buf, sizeof buf);
        CHECK_STR(buf, "NaN");
}

static void test_labels(void) {
        char buf[64], small[12];

        CHECK_INT(metrics_labels(buf, sizeof buf, NULL), 0);
        CHECK_STR(buf, "");
        CHECK_INT(metrics_labels(buf, sizeof buf, "transport", "smtp", "status", "sent", NULL), 0);
        CHECK_STR(buf, "transport=\"smtp\",status=\"sent\"");
        /* Backslash, double quote and newline are escaped; other bytes (UTF-8) pass. */
        CHECK_INT(metrics_labels(buf, sizeof buf, "cipher", "a\\b\"c\nd\xc3\xa9", NULL), 0);
        CHECK_STR(buf, "cipher=\"a\\\\b\\\"c\\nd\xc3\xa9\"");
        CHECK_INT(metrics_labels(buf, sizeof buf, "x", NULL, NULL), 0);
        CHECK_STR(buf, "x=\"\"");
        CHECK_INT(metrics_labels(small, sizeof small, "transport", "smtp", NULL), -ENOBUFS);
        CHECK_STR(small, "");
        CHECK_INT(metrics_bucket_labels(buf, sizeof buf, "", 0.001), 0);
        CHECK_STR(buf, "le=\"0.001\"");
        CHECK_INT(metrics_bucket_labels(buf, sizeof buf, "queue=\"hold\"", INFINITY), 0);
        CHECK_STR(buf, "queue=\"hold\",le=\"+Inf\"");
}

static const double bounds[] = { 1, 10 };
static const MetricsFamily counter = { "x_requests_total", METRICS_COUNTER, "Requests \\ \"seen\"\nhere." };
static const MetricsFamily gauge = { "x_queue", METRICS_GAUGE, "Queue." };
static const MetricsFamily hist = { "x_delay_seconds", METRICS_HISTOGRAM, "Delay.", "", bounds, 2 };

static void test_prometheus(void) {
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT;
        double cum[] = { 1, 3, 4 };

        CHECK_INT(metrics_text_family(&b, METRICS_FORMAT_PROMETHEUS, &counter), 0);
        CHECK_INT(metrics_text_sample(&b, counter.name, NULL, "code=\"550\"", 2), 0);
        CHECK_INT(metrics_text_family(&b, METRICS_FORMAT_PROMETHEUS, &gauge), 0);
        CHECK_INT(metrics_text_sample(&b, gauge.name, NULL, "", 7), 0);
        CHECK_INT(metrics_text_family(&b, METRICS_FORMAT_PROMETHEUS, &hist), 0);
        CHECK_INT(metrics_text_histogram(&b, &hist, "transport=\"smtp\"", cum, 12.5), 0);
        CHECK_INT(metrics_text_eof(&b, METRICS_FORMAT_PROMETHEUS), 0);
        CHECK_STR(b.data,
                  "# HELP x_requests_total Requests \\\\ \"seen\"\\nhere.\n"
                  "# TYPE x_requests_total counter\n"
                  "x_requests_total{code=\"550\"} 2\n"
                  "# HELP x_queue Queue.\n"
                  "# TYPE x_queue gauge\n"
                  "x_queue 7\n"
                  "# HELP x_delay_seconds Delay.\n"
                  "# TYPE x_delay_seconds histogram\n"
                  "x_delay_seconds_bucket{transport=\"smtp\",le=\"1\"} 1\n"
                  "x_delay_seconds_bucket{transport=\"smtp\",le=\"10\"} 3\n"
                  "x_delay_seconds_bucket{transport=\"smtp\",le=\"+Inf\"} 4\n"
                  "x_delay_seconds_sum{transport=\"smtp\"} 12.5\n"
                  "x_delay_seconds_count{transport=\"smtp\"} 4\n");
}

static void test_openmetrics(void) {
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT;
        double cum[] = { 0, 0, 0 };

        CHECK_INT(metrics_text_family(&b, METRICS_FORMAT_OPENMETRICS, &counter), 0);
        CHECK_INT(metrics_text_sample(&b, counter.name, NULL, NULL, 0), 0);
        CHECK_INT(metrics_text_family(&b, METRICS_FORMAT_OPENMETRICS, &hist), 0);
        CHECK_INT(metrics_text_histogram(&b, &hist, "", cum, 0), 0);
        CHECK_INT(metrics_text_eof(&b, METRICS_FORMAT_OPENMETRICS), 0);
        CHECK_STR(b.data,
                  "# HELP x_requests Requests \\\\ \\\"seen\\\"\\nhere.\n"
                  "# TYPE x_requests counter\n"
                  "x_requests_total 0\n"
                  "# HELP x_delay_seconds Delay.\n"
                  "# TYPE x_delay_seconds histogram\n"
                  "x_delay_seconds_bucket{le=\"1\"} 0\n"
                  "x_delay_seconds_bucket{le=\"10\"} 0\n"
                  "x_delay_seconds_bucket{le=\"+Inf\"} 0\n"
                  "x_delay_seconds_sum 0\n"
                  "x_delay_seconds_count 0\n"
                  "# EOF\n");
}

static void test_accept(void) {
        CHECK_INT(metrics_format_for_accept(NULL), METRICS_FORMAT_PROMETHEUS);
        CHECK_INT(metrics_format_for_accept("*/*"), METRICS_FORMAT_PROMETHEUS);
        CHECK_INT(metrics_format_for_accept("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), METRICS_FORMAT_PROMETHEUS);
        CHECK_INT(metrics_format_for_accept("application/openmetrics-text;version=1.0.0,"
                                            "text/plain;version=0.0.4;q=0.5"), METRICS_FORMAT_OPENMETRICS);
        CHECK(strstr(metrics_content_type(METRICS_FORMAT_PROMETHEUS), "text/plain; version=0.0.4"));
        CHECK(strstr(metrics_content_type(METRICS_FORMAT_OPENMETRICS), "application/openmetrics-text; version=1.0.0"));
}

static void test_catalog(void) {
        /* Every family is found by name; counters end in _total, histograms have bounds. */
        for (const MetricsFamily *f = metrics_families; f->name; f++) {
                CHECK(metrics_family(f->name) == f);
                size_t n = strlen(f->name);
                CHECK((f->type == METRICS_COUNTER) == (n > 6 && streq(f->name + n - 6, "_total")));
                CHECK((f->type == METRICS_HISTOGRAM) == (f->n_bounds > 0));
                for (size_t i = 1; i < f->n_bounds; i++)
                        CHECK(f->bounds[i - 1] < f->bounds[i]);
        }
        CHECK(!metrics_family("nope"));
}

int main(void) {
        test_values();
        test_labels();
        test_prometheus();
        test_openmetrics();
        test_accept();
        test_catalog();
        return 0;
}
