/* metrics-catalog.h — every metric family Postern exposes, in one table: name, type, help text
 * and, for histograms, the bucket bounds. postfix_exporter's names where the meaning is the same
 * (dashboards keep working), postern_* for the rest. The daemons count by these names
 * (metrics-store.h), postern-metrics prints in this order (metrics-text.h); README.md "Metrics"
 * lists them for admins. */
#pragma once

#include <stddef.h>

typedef enum MetricsType {
        METRICS_COUNTER,
        METRICS_GAUGE,
        METRICS_HISTOGRAM,
} MetricsType;

typedef struct MetricsFamily {
        const char *name;          /* counters end in _total */
        MetricsType type;
        const char *help;
        const char *labels;        /* the label names, "a,b" ("" or NULL: none) */
        const double *bounds;      /* histograms: upper bounds, ascending, +Inf implied */
        size_t n_bounds;
} MetricsFamily;

/* Names the daemons use (so a typo is a compile error, not a missing metric). */
#define METRIC_SMTPD_CONNECTS "postfix_smtpd_connects_total"
#define METRIC_SMTPD_DISCONNECTS "postfix_smtpd_disconnects_total"
#define METRIC_SMTPD_MESSAGES "postfix_smtpd_messages_processed_total"
#define METRIC_SMTPD_BYTES "postern_smtpd_received_bytes_total"
#define METRIC_SMTPD_REJECTS "postfix_smtpd_messages_rejected_total"
#define METRIC_SMTPD_SASL_FAILURES "postfix_smtpd_sasl_authentication_failures_total"
#define METRIC_SMTPD_TLS "postfix_smtpd_tls_connections_total"
#define METRIC_SMTPD_ANVIL_REJECTS "postern_smtpd_anvil_rejects_total"
#define METRIC_SMTPD_MILTER "postern_smtpd_milter_actions_total"
#define METRIC_SMTP_TLS "postfix_smtp_tls_connections_total"
#define METRIC_VERIFY_QUERIES "postern_verify_queries_total"
#define METRIC_VERIFY_PROBES "postern_verify_probes_total"
#define METRIC_QMGR_REMOVED "postfix_qmgr_messages_removed_total"
#define METRIC_QMGR_INSERTED_SIZE "postfix_qmgr_messages_inserted_size_bytes"
#define METRIC_QMGR_INSERTED_RCPTS "postfix_qmgr_messages_inserted_receipients"
#define METRIC_DELIVERIES "postern_deliveries_total"
#define METRIC_DELIVERY_DELAY "postern_delivery_delay_seconds"
#define METRIC_SHOWQ_SIZE "postfix_showq_message_size_bytes"
#define METRIC_SHOWQ_AGE "postfix_showq_message_age_seconds"
#define METRIC_QUEUE_RECIPIENTS "postern_queue_recipients"
#define METRIC_UP "postfix_up"

/* The families in output order, ended by an entry without a name. */
extern const MetricsFamily metrics_families[];
/* The family called name, or NULL. */
const MetricsFamily *metrics_family(const char *name);
