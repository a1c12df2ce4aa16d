/* verify-probe.c — one address probe, as Postfix's verify(8) sends it: a message in the queue.
 *
 * verify_probe_start() inserts into queue.db (common/queue, the one owner of queue SQL) a
 * message marked is_probe: sender the probe sender (address_verify_sender qualified with
 * @myorigin, with the address_verify_sender_ttl suffix: verify_probe_sender()), the address as
 * its one recipient (NOTIFY=NEVER), no content; then sends postern-qmgr the wake-up smtpd sends
 * after each commit. From there postern-qmgr routes it with the address_verify_* overrides,
 * schedules it like mail, has postern-smtp probe the next hop (request=verify: RCPT, or DATA's
 * reply with smtp_address_verify_target = data; nothing delivered), and reports the result
 * back on the verify socket (request=update ... queue_id=), see daemons/qmgr/qmgr-probe.c.
 *
 * postern-verify writes queue.db as user postern through the same file it already writes
 * metrics to (no new privilege); it never reads or changes other mail. The queue is opened on
 * first use and again after a failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "log/log.h"
#include "queue/queue.h"
#include "verify-probe.h"

struct VerifyProber {
        char *sender;                  /* address_verify_sender, unqualified as configured */
        char *myorigin;
        int64_t sender_ttl;
        char *queue_directory;
        char *qmgr_socket;
        Queue *queue;                  /* opened on first use */
};

int verify_prober_new(Conf *c, VerifyProber **ret) {
        _cleanup_(verify_prober_freep) VerifyProber *p = calloc(1, sizeof(VerifyProber));
        if (!p)
                return log_oom();
        p->sender = strdup(strempty(conf_get(c, "address_verify_sender")));
        p->myorigin = strdup(strempty(conf_get(c, "myorigin")));
        p->sender_ttl = conf_get_time(c, NULL, "address_verify_sender_ttl");
        p->queue_directory = strdup(strempty(conf_get(c, "queue_directory")));
        p->qmgr_socket = daemon_socket_path(c, "qmgr");
        if (!p->sender || !p->myorigin || !p->queue_directory || !p->qmgr_socket)
                return log_oom();
        *ret = TAKE_PTR(p);
        return 0;
}

VerifyProber *verify_prober_free(VerifyProber *p) {
        if (!p)
                return NULL;
        queue_close(p->queue);
        free(p->sender);
        free(p->myorigin);
        free(p->queue_directory);
        free(p->qmgr_socket);
        free(p);
        return NULL;
}

static int queue_ready(VerifyProber *p, char **ret_reason) {
        if (p->queue)
                return 0;
        int r = queue_open(p->queue_directory, QUEUE_OPEN_CREATE, &p->queue);
        if (r < 0 && asprintf(ret_reason, "cannot open the queue in %s: %s", p->queue_directory,
                              queue_open_error() ?: strerror(-r)) < 0)
                *ret_reason = NULL;
        return r;
}

int verify_probe_start(VerifyProber *p, const char *address, char ret_queue_id[QUEUE_ID_MAX], char **ret_reason) {
        _cleanup_free_ char *sender = verify_probe_sender(p->sender, p->myorigin, p->sender_ttl, time(NULL));
        if (!sender)
                return -ENOMEM;
        int r = queue_ready(p, ret_reason);
        if (r < 0)
                return r;

        QueueMessage m = { .sender = sender, .arrival_usec = now_usec(CLOCK_REALTIME), .is_probe = true };
        QueueRecipient rc = { .address = (char *) address, .notify = QUEUE_NOTIFY_NEVER };
        queue_id_new(m.queue_id);
        r = queue_insert_message(p->queue, &m, &rc, 1, NULL, 0);   /* its own durable commit */
        if (r < 0) {
                if (asprintf(ret_reason, "cannot queue the probe: %s", queue_last_error(p->queue)) < 0)
                        *ret_reason = NULL;
                p->queue = queue_close(p->queue);   /* opened again next time */
                return r;
        }
        memcpy(ret_queue_id, m.queue_id, QUEUE_ID_MAX);
        LogFields f = { .queue_id = m.queue_id, .sender = sender, .recipient = address };
        log_fields(LOG_INFO, &f, "%s: probe queued for <%s>, sender <%s>", m.queue_id, address, sender);

        _cleanup_ipc_record_ IpcRecord wake = IPC_RECORD_INIT;
        if (ipc_record_add(&wake, "request", "wakeup") >= 0 && (r = ipc_send_oneway(p->qmgr_socket, &wake)) < 0)
                log_debug_errno(r, "Wake-up to qmgr at %s failed: %m", p->qmgr_socket);   /* its scan finds it */
        return 0;
}

int verify_probes_untried(VerifyProber *p, size_t *ret) {
        _cleanup_free_ char *why = NULL;
        int r = queue_ready(p, &why);
        if (r >= 0 && (r = queue_count_probes_untried(p->queue, ret)) < 0)
                p->queue = queue_close(p->queue);
        return r;
}
