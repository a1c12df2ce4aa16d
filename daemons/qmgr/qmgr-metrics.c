/* qmgr-metrics.c — what postern-qmgr counts for the metrics endpoint: each recorded delivery
 * result per recipient (postern_deliveries_total by transport and status sent / deferred /
 * bounced, after soft_bounce and queue lifetime had their say; "none" for what qmgr decided
 * itself; address verification probes are not deliveries and are left out), the delay from arrival of each delivered recipient (postern_delivery_delay_seconds
 * by transport), each message taken for delivery (its size and recipients, as Postfix's
 * "(queue active)" line that postfix_exporter reads) and each removed message. Counted in memory and saved by the transaction that
 * records the results (qmgr-deliver.c), see common/metrics/metrics-store.h. */
#include "metrics/metrics-catalog.h"
#include "metrics/metrics-store.h"
#include "metrics/metrics-text.h"
#include "qmgr.h"

void qmgr_metrics_result(const QmgrMessage *m, const QueueRecipient *rc, const char *transport, usec_t now) {
        char l[METRICS_LABELS_MAX], t[METRICS_LABELS_MAX];
        const char *status = rc->state == QUEUE_RCPT_DELIVERED ? "sent" :
                             rc->state == QUEUE_RCPT_BOUNCED ? "bounced" : "deferred";

        if (!transport)
                transport = "none";
        if (metrics_labels(l, sizeof l, "transport", transport, "status", status, NULL) >= 0)
                metrics_add(METRIC_DELIVERIES, l, 1);
        if (rc->state == QUEUE_RCPT_DELIVERED && metrics_labels(t, sizeof t, "transport", transport, NULL) >= 0)
                metrics_observe(METRIC_DELIVERY_DELAY, t,
                                now > m->msg.arrival_usec ? (double) (now - m->msg.arrival_usec) / USEC_PER_SEC : 0);
}

void qmgr_metrics_active(uint64_t size, size_t nrcpt) {
        metrics_observe(METRIC_QMGR_INSERTED_SIZE, NULL, (double) size);
        metrics_observe(METRIC_QMGR_INSERTED_RCPTS, NULL, (double) nrcpt);
}

void qmgr_metrics_removed(void) {
        metrics_add(METRIC_QMGR_REMOVED, NULL, 1);
}
