/* test-smtpd-metrics.c — what postern-smtpd's counting calls store: the reject's labels (reply
 * code, enhanced status code as the reason class — "" when the reply has none — and command,
 * escaped), TLS and anvil labels, and the queued message/byte counters in the caller's
 * transaction. */
#include "smtpd.h"
#include "metrics/metrics-store.h"
#include "queue/queue.h"
#include "../../common/queue/test-queue-util.h"

typedef struct Find { const char *name, *labels; double value; } Find;

static int find_fn(const char *name, const char *labels, double value, void *ud) {
        Find *f = ud;
        if (streq(name, f->name) && streq(labels, f->labels))
                f->value = value;
        return 0;
}

static double stored(Queue *q, const char *name, const char *labels) {
        Find f = { name, labels, -1 };
        CHECK_INT(queue_metric_list(q, find_fn, &f), 0);
        return f.value;
}

int main(void) {
        Queue *q = NULL;
        MetricsBatch *b = NULL;

        test_dir_create("test-smtpd-metrics");
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);

        smtpd_metrics_reject("RCPT", "550 5.1.1 <x@y>: Recipient address rejected: User unknown");
        smtpd_metrics_reject("RCPT", "550 5.1.1 <z@y>: Recipient address rejected: User unknown");
        smtpd_metrics_reject("MAIL", "450 4.7.1 <a@b>: Sender address rejected: try later");
        smtpd_metrics_reject("CONNECT", "554 Access denied");          /* no enhanced code */
        smtpd_metrics_reject("DATA", "554 5.5.1. odd");                /* 5.5.1. is not one */
        smtpd_metrics_reject("HELO", "501 4.5.1 mismatched class");    /* class differs from code */
        smtpd_metrics_tls("TLSv1.3", "TLS_AES_256_GCM_SHA384");
        smtpd_metrics_anvil_reject("connect");
        smtpd_metrics_milter("inet:127.0.0.1:8891", "reject");
        smtpd_metrics_milter("inet:127.0.0.1:8891", "reject");
        smtpd_metrics_milter("unix:/run/a\"b", "failed");   /* label values are escaped */
        smtpd_metrics_connect();
        smtpd_metrics_sasl_failure();

        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(smtpd_metrics_queued(q, 3, 12345), 0);
        CHECK_INT(metrics_save(q, &b), 0);
        CHECK_INT(queue_commit(q), 0);
        metrics_saved(b, 0);

        CHECK(stored(q, "postfix_smtpd_messages_rejected_total", "code=\"550\",dsn=\"5.1.1\",command=\"RCPT\"") == 2);
        CHECK(stored(q, "postfix_smtpd_messages_rejected_total", "code=\"450\",dsn=\"4.7.1\",command=\"MAIL\"") == 1);
        CHECK(stored(q, "postfix_smtpd_messages_rejected_total", "code=\"554\",dsn=\"\",command=\"CONNECT\"") == 1);
        CHECK(stored(q, "postfix_smtpd_messages_rejected_total", "code=\"554\",dsn=\"\",command=\"DATA\"") == 1);
        CHECK(stored(q, "postfix_smtpd_messages_rejected_total", "code=\"501\",dsn=\"\",command=\"HELO\"") == 1);
        CHECK(stored(q, "postfix_smtpd_tls_connections_total",
                     "protocol=\"TLSv1.3\",cipher=\"TLS_AES_256_GCM_SHA384\"") == 1);
        CHECK(stored(q, "postern_smtpd_anvil_rejects_total", "limit=\"connect\"") == 1);
        CHECK(stored(q, "postern_smtpd_milter_actions_total", "milter=\"inet:127.0.0.1:8891\",action=\"reject\"") == 2);
        CHECK(stored(q, "postern_smtpd_milter_actions_total", "milter=\"unix:/run/a\\\"b\",action=\"failed\"") == 1);
        CHECK(stored(q, "postfix_smtpd_connects_total", "") == 1);
        CHECK(stored(q, "postfix_smtpd_sasl_authentication_failures_total", "") == 1);
        CHECK(stored(q, "postfix_smtpd_messages_processed_total", "") == 3);
        CHECK(stored(q, "postern_smtpd_received_bytes_total", "") == 12345);

        q = queue_close(q);
        dir_clean(dir);
        return 0;
}
