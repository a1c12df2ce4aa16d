/* metrics-catalog.c — the table of metric families (see metrics-catalog.h). Bucket bounds follow
 * postfix_exporter's for the families it has, so histograms from both line up. */
#include <string.h>

#include "basic/macro.h"
#include "metrics-catalog.h"

static const double delay_bounds[] = { 1e-3, 1e-2, 1e-1, 1, 10, 60, 3600, 86400, 172800 };
static const double size_bounds[] = { 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
static const double age_bounds[] = { 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8 };
static const double rcpt_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128 };

#define HIST(b) .bounds = b, .n_bounds = ELEMENTSOF(b)

const MetricsFamily metrics_families[] = {
        { METRIC_UP, METRICS_GAUGE, "Whether postern-metrics could read the queue (1) or not (0)." },
        { METRIC_SHOWQ_SIZE, METRICS_HISTOGRAM, "Size of messages in the queue, in bytes, by queue.", "queue",
          HIST(size_bounds) },
        { METRIC_SHOWQ_AGE, METRICS_HISTOGRAM, "Age of messages in the queue, in seconds, by queue.", "queue",
          HIST(age_bounds) },
        { METRIC_QUEUE_RECIPIENTS, METRICS_GAUGE, "Unfinished recipients in the queue, by queue.", "queue" },
        { METRIC_SMTPD_CONNECTS, METRICS_COUNTER, "Incoming SMTP connections." },
        { METRIC_SMTPD_DISCONNECTS, METRICS_COUNTER, "Incoming SMTP connections that ended." },
        { METRIC_SMTPD_MESSAGES, METRICS_COUNTER, "Messages postern-smtpd queued." },
        { METRIC_SMTPD_BYTES, METRICS_COUNTER, "Bytes of the messages postern-smtpd queued." },
        { METRIC_SMTPD_REJECTS, METRICS_COUNTER,
          "Commands postern-smtpd rejected (NOQUEUE: reject), by reply code, enhanced status code and command.", "code,dsn,command" },
        { METRIC_SMTPD_SASL_FAILURES, METRICS_COUNTER, "Failed SASL authentications." },
        { METRIC_SMTPD_TLS, METRICS_COUNTER, "Incoming TLS handshakes, by protocol and cipher.", "protocol,cipher" },
        { METRIC_SMTPD_ANVIL_REJECTS, METRICS_COUNTER,
          "Clients postern-smtpd refused for an anvil limit, by limit.", "limit" },
        { METRIC_SMTPD_MILTER, METRICS_COUNTER,
          "Milter decisions, by milter and action: accept, reject, tempfail, discard, quarantine, failed.",
          "milter,action" },
        { METRIC_VERIFY_QUERIES, METRICS_COUNTER,
          "Address verification queries postern-verify answered, by result and whether the cache had the answer.",
          "result,cache" },
        { METRIC_VERIFY_PROBES, METRICS_COUNTER, "Address verification probes finished, by result.", "result" },
        { METRIC_QMGR_INSERTED_SIZE, METRICS_HISTOGRAM,
          "Size of messages postern-qmgr took for delivery (queue active), in bytes.", NULL,
          HIST(size_bounds) },
        /* sic: postfix_exporter's spelling, kept so its dashboards find it */
        { METRIC_QMGR_INSERTED_RCPTS, METRICS_HISTOGRAM,
          "Recipients of messages postern-qmgr took for delivery (queue active).", NULL,
          HIST(rcpt_bounds) },
        { METRIC_QMGR_REMOVED, METRICS_COUNTER, "Messages removed from the queue when finished." },
        { METRIC_SMTP_TLS, METRICS_COUNTER, "Outgoing TLS handshakes of postern-smtp, by protocol and cipher.",
          "protocol,cipher" },
        { METRIC_DELIVERIES, METRICS_COUNTER,
          "Delivery results recorded by postern-qmgr, per recipient, by transport and status.", "transport,status" },
        { METRIC_DELIVERY_DELAY, METRICS_HISTOGRAM,
          "Time from arrival to delivery of delivered recipients, in seconds, by transport.", "transport",
          HIST(delay_bounds) },
        {},
};

const MetricsFamily *metrics_family(const char *name) {
        for (const MetricsFamily *f = metrics_families; f->name; f++)
                if (strcmp(f->name, name) == 0)
                        return f;
        return NULL;
}
