/* metrics-text.c — writes the Prometheus 0.0.4 and OpenMetrics 1.0 text formats (see
 * metrics-text.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics-text.h"

MetricsFormat metrics_format_for_accept(const char *accept) {
        return accept && strstr(accept, "application/openmetrics-text") ? METRICS_FORMAT_OPENMETRICS
                                                                       : METRICS_FORMAT_PROMETHEUS;
}

const char *metrics_content_type(MetricsFormat fmt) {
        return fmt == METRICS_FORMAT_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                                 : "text/plain; version=0.0.4; charset=utf-8";
}

void metrics_format_value(double v, char *buf, size_t size) {
        if (isnan(v))
                snprintf(buf, size, "NaN");
        else if (isinf(v))
                snprintf(buf, size, "%sInf", v > 0 ? "+" : "-");
        else if (v == floor(v) && fabs(v) < 1e15)
                snprintf(buf, size, "%.0f", v);
        else {
                /* The shortest text that reads back as the same double. */
                for (int prec = 6; prec <= 17; prec++) {
                        snprintf(buf, size, "%.*g", prec, v);
                        if (strtod(buf, NULL) == v)
                                break;
                }
        }
}

/* Appends value to buf at *at, escaped for a label value; false when it does not fit. */
static bool put_escaped(char *buf, size_t size, size_t *at, const char *value) {
        for (const char *p = value; *p; p++) {
                const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
                size_t n = rep ? 2 : 1;
                if (*at + n >= size)
                        return false;
                memcpy(buf + *at, rep ? rep : p, n);
                *at += n;
        }
        return true;
}

static bool put_raw(char *buf, size_t size, size_t *at, const char *s) {
        size_t n = strlen(s);
        if (*at + n >= size)
                return false;
        memcpy(buf + *at, s, n);
        *at += n;
        return true;
}

int metrics_labels_va(char *buf, size_t size, va_list ap) {
        size_t at = 0;
        bool ok = size > 0;
        const char *k;

        while (ok && (k = va_arg(ap, const char *))) {
                const char *v = va_arg(ap, const char *);
                ok = (at == 0 || put_raw(buf, size, &at, ",")) && put_raw(buf, size, &at, k) &&
                     put_raw(buf, size, &at, "=\"") && put_escaped(buf, size, &at, v ? v : "") &&
                     put_raw(buf, size, &at, "\"");
        }
        if (size > 0)
                buf[ok ? at : 0] = '\0';
        return ok ? 0 : -ENOBUFS;
}

int metrics_labels(char *buf, size_t size, ...) {
        va_list ap;
        va_start(ap, size);
        int r = metrics_labels_va(buf, size, ap);
        va_end(ap);
        return r;
}

int metrics_bucket_labels(char *buf, size_t size, const char *labels, double le) {
        char v[64];
        int n;

        metrics_format_value(le, v, sizeof v);
        n = snprintf(buf, size, "%s%sle=\"%s\"", labels, *labels ? "," : "", v);
        if (n < 0 || (size_t) n >= size) {
                if (size > 0)
                        buf[0] = '\0';
                return -ENOBUFS;
        }
        return 0;
}

/* HELP text: backslash and newline escaped (and the double quote for OpenMetrics). */
static int put_help(StrBuf *b, MetricsFormat fmt, const char *help) {
        int r = 0;
        for (const char *p = help; r >= 0 && *p; p++) {
                if (*p == '\\')
                        r = strbuf_puts(b, "\\\\");
                else if (*p == '\n')
                        r = strbuf_puts(b, "\\n");
                else if (*p == '"' && fmt == METRICS_FORMAT_OPENMETRICS)
                        r = strbuf_puts(b, "\\\"");
                else
                        r = strbuf_putc(b, *p);
        }
        return r;
}

int metrics_text_family(StrBuf *b, MetricsFormat fmt, const MetricsFamily *f) {
        static const char *const types[] = {
                [METRICS_COUNTER] = "counter", [METRICS_GAUGE] = "gauge", [METRICS_HISTOGRAM] = "histogram",
        };
        size_t len = strlen(f->name);
        int r;

        /* OpenMetrics: a counter family is named without the _total its sample carries. */
        if (fmt == METRICS_FORMAT_OPENMETRICS && f->type == METRICS_COUNTER && len > 6 &&
            strcmp(f->name + len - 6, "_total") == 0)
                len -= 6;
        r = strbuf_printf(b, "# HELP %.*s ", (int) len, f->name);
        if (r >= 0)
                r = put_help(b, fmt, f->help);
        if (r >= 0)
                r = strbuf_printf(b, "\n# TYPE %.*s %s\n", (int) len, f->name, types[f->type]);
        return r;
}

int metrics_text_sample(StrBuf *b, const char *name, const char *suffix, const char *labels, double value) {
        char v[64];

        metrics_format_value(value, v, sizeof v);
        if (labels && *labels)
                return strbuf_printf(b, "%s%s{%s} %s\n", name, suffix ? suffix : "", labels, v);
        return strbuf_printf(b, "%s%s %s\n", name, suffix ? suffix : "", v);
}

int metrics_text_histogram(StrBuf *b, const MetricsFamily *f, const char *labels,
                           const double *cumulative, double sum) {
        char l[METRICS_LABELS_MAX + 64];
        int r = 0;

        for (size_t i = 0; r >= 0 && i <= f->n_bounds; i++) {
                r = metrics_bucket_labels(l, sizeof l, labels, i < f->n_bounds ? f->bounds[i] : INFINITY);
                if (r >= 0)
                        r = metrics_text_sample(b, f->name, "_bucket", l, cumulative[i]);
        }
        if (r >= 0)
                r = metrics_text_sample(b, f->name, "_sum", labels, sum);
        if (r >= 0)
                r = metrics_text_sample(b, f->name, "_count", labels, cumulative[f->n_bounds]);
        return r;
}

int metrics_text_eof(StrBuf *b, MetricsFormat fmt) {
        return fmt == METRICS_FORMAT_OPENMETRICS ? strbuf_puts(b, "# EOF\n") : 0;
}
