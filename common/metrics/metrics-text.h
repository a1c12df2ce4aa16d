/* metrics-text.h — the Prometheus text exposition format (version 0.0.4) and OpenMetrics 1.0
 * text, written into a StrBuf. Pure functions: no I/O, no state.
 *
 * Labels travel as one string in exposition syntax, `transport="smtp",status="sent"` (""
 * for none): metrics_labels() builds it with the value escaping both formats want (\\ \" \n).
 * metrics_text_family() writes the # HELP / # TYPE lines (OpenMetrics names a counter family
 * without its _total suffix), metrics_text_sample() one sample line, metrics_text_histogram() a
 * histogram's _bucket lines (cumulative, le ascending, then +Inf), _sum and _count, and
 * metrics_text_eof() the `# EOF` line OpenMetrics ends with (nothing for 0.0.4). */
#pragma once

#include <stdarg.h>

#include <stddef.h>
#include "basic/strbuf.h"
#include "metrics-catalog.h"

#define METRICS_LABELS_MAX 512

typedef enum MetricsFormat {
        METRICS_FORMAT_PROMETHEUS,   /* text/plain; version=0.0.4 */
        METRICS_FORMAT_OPENMETRICS,  /* application/openmetrics-text; version=1.0.0 */
} MetricsFormat;

/* OpenMetrics when the Accept header (may be NULL) names application/openmetrics-text. */
MetricsFormat metrics_format_for_accept(const char *accept);
const char *metrics_content_type(MetricsFormat fmt);

/* A sample value as both formats write it: integers without a fraction, +Inf, -Inf, NaN. */
void metrics_format_value(double v, char *buf, size_t size);

/* Builds `k1="v1",k2="v2"` from NULL-terminated name/value pairs into buf, escaping the values.
 * -ENOBUFS when it does not fit (buf then holds ""). */
int metrics_labels(char *buf, size_t size, ...);
/* The same with the pairs in ap. */
int metrics_labels_va(char *buf, size_t size, va_list ap);
/* labels plus le="<bound>" (as metrics_format_value writes it), for a histogram bucket. */
int metrics_bucket_labels(char *buf, size_t size, const char *labels, double le);

int metrics_text_family(StrBuf *b, MetricsFormat fmt, const MetricsFamily *f);
/* name + suffix (may be NULL) {labels} value */
int metrics_text_sample(StrBuf *b, const char *name, const char *suffix, const char *labels, double value);
/* cumulative[i]: observations <= f->bounds[i]; cumulative[f->n_bounds]: all of them (+Inf,
 * also _count). */
int metrics_text_histogram(StrBuf *b, const MetricsFamily *f, const char *labels,
                           const double *cumulative, double sum);
int metrics_text_eof(StrBuf *b, MetricsFormat fmt);
