/* smtpd-metrics.c — what postern-smtpd counts for the metrics endpoint, one call per event so
 * the code that has the event stays as it was: connections, their ends, rejected commands (by
 * reply code and command), failed SASL logins, TLS handshakes (by protocol and cipher), anvil
 * refusals (by limit), milter decisions (by milter and action), and each queued message with its bytes. The last is written straight
 * into the group commit's transaction (smtpd-commit.c), so it is counted exactly when the
 * message is; the others are kept in memory (common/metrics/metrics-store.h) and ride on the
 * next commit, or the once-a-second writer when no mail comes. Names: metrics-catalog.h. */
#include "smtpd.h"
#include "metrics/metrics-catalog.h"
#include "metrics/metrics-store.h"
#include "metrics/metrics-text.h"
#include "queue/queue.h"

void smtpd_metrics_connect(void) {
        metrics_add(METRIC_SMTPD_CONNECTS, NULL, 1);
}

void smtpd_metrics_disconnect(void) {
        metrics_add(METRIC_SMTPD_DISCONNECTS, NULL, 1);
}

/* Length of the RFC 3463 status code class.subject.detail (1, 1-3 and 1-3 digits) that p starts
 * with, followed by a space or the end; 0 when there is none. */
static size_t status_code_len(const char *p) {
        size_t at = 0;
        for (int part = 0; part < 3; part++) {
                size_t n = strspn(p + at, "0123456789");
                if (n == 0 || n > (part == 0 ? 1u : 3u))
                        return 0;
                at += n;
                if (part < 2 && p[at++] != '.')
                        return 0;
        }
        return p[at] == ' ' || p[at] == '\0' ? at : 0;
}

/* The reason class is the reply's enhanced status code (RFC 3463: 5.1.1 unknown user, 5.7.1
 * policy, 4.7.1 ...), "" when the reply has none or one of another class than the reply's. */
void smtpd_metrics_reject(const char *command, const char *reply) {
        char code[4] = "", dsn[16] = "", l[METRICS_LABELS_MAX];

        if (reply && strlen(reply) >= 3)
                memcpy(code, reply, 3);
        if (reply && strlen(reply) > 4 && reply[3] == ' ' && reply[4] == reply[0]) {
                size_t n = status_code_len(reply + 4);
                if (n > 0)
                        memcpy(dsn, reply + 4, n);
        }
        if (metrics_labels(l, sizeof l, "code", code, "dsn", dsn, "command", command, NULL) >= 0)
                metrics_add(METRIC_SMTPD_REJECTS, l, 1);
}

void smtpd_metrics_sasl_failure(void) {
        metrics_add(METRIC_SMTPD_SASL_FAILURES, NULL, 1);
}

void smtpd_metrics_tls(const char *protocol, const char *cipher) {
        metrics_count(METRIC_SMTPD_TLS, "protocol", protocol, "cipher", cipher, NULL);
}

void smtpd_metrics_anvil_reject(const char *limit) {
        metrics_count(METRIC_SMTPD_ANVIL_REJECTS, "limit", limit, NULL);
}

void smtpd_metrics_milter(const char *milter, const char *action) {
        metrics_count(METRIC_SMTPD_MILTER, "milter", milter, "action", action, NULL);
}

int smtpd_metrics_queued(Queue *q, uint64_t messages, uint64_t bytes) {
        int r = queue_metric_add(q, METRIC_SMTPD_MESSAGES, "", (double) messages);
        return r < 0 ? r : queue_metric_add(q, METRIC_SMTPD_BYTES, "", (double) bytes);
}
