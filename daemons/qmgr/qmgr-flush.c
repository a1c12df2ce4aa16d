/* qmgr-flush.c — request=flush on the qmgr socket: Postfix's postqueue -f / -s site / -i id,
 * sendmail -q / -qRsite / -qIid, and ETRN (postern-smtpd hands it on). Anyone may ask.
 *
 *   request=flush                   every deferred recipient is retried now (a forced pass)
 *   request=flush site=<domain>     only the deferred recipients at <domain> (exact, any case);
 *                 [subdomains=yes]  also those at its subdomains (ETRN @domain)
 *   request=flush queue_id=<id>     only that message's deferred recipients
 *
 * Every flush also revives the destinations suspended as dead (qmgr-sched.c), so what it makes
 * due is tried at once instead of being deferred again with "delivery temporarily suspended".
 * Replies status=ok count=<recipients made due> (site), or status=error reason=... for a site
 * that is not a domain name or [address], or an unknown message. Log lines are rate-limited:
 * "flush requested by uid U: retrying every deferred recipient",
 * "flush of <site> requested by uid U: N deferred recipient(s) due now",
 * "flush: N suspended destination(s) may be tried again". */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "dns/dns.h"
#include "log/log.h"
#include "qmgr.h"

/* A domain name, or an address literal in brackets. */
static bool site_valid(const char *site) {
        size_t l = strlen(site);
        if (l > 2 && site[0] == '[' && site[l - 1] == ']' && l < 64) {
                char a[64];
                unsigned char buf[16];
                memcpy(a, site + 1, l - 2);
                a[l - 2] = '\0';
                const char *v6 = startswith(a, "IPv6:");
                return v6 ? inet_pton(AF_INET6, v6, buf) == 1 : inet_pton(AF_INET, a, buf) == 1;
        }
        return l <= 253 && dns_valid_hostname(site);
}

int qmgr_flush(Qmgr *q, IpcConn *c, const IpcRecord *req) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        const char *site = ipc_record_get(req, "site"), *id = ipc_record_get(req, "queue_id");
        const char *sub = ipc_record_get(req, "subdomains");
        bool subdomains = sub && streq(sub, "yes");
        char who[32] = "";
        size_t count = 0;
        unsigned dropped;
        uid_t uid;
        int r;

        if (site && !site_valid(site))
                return ipc_conn_reply_error(c, "invalid site: expected a domain name or [address]");
        if (id && !queue_id_valid(id))
                return ipc_conn_reply_error(c, "invalid queue id");

        /* Anyone may ask: rate-limited, so a loop of flushes cannot drown the journal. */
        bool log = ipc_log_limit_allow(&q->flush_log, now_usec(CLOCK_MONOTONIC), &dropped);
        if (ipc_conn_peer_uid(c, &uid) >= 0)
                snprintf(who, sizeof who, " by uid %u", (unsigned) uid);

        if (site) {
                r = queue_requeue_site(q->queue, site, subdomains, &count);
                if (r < 0) {
                        log_error_errno(r, "flush of %s failed: %s", site, queue_last_error(q->queue));
                        return ipc_conn_reply_error(c, "queue update failed");
                }
                if (log)
                        log_info("flush of %s%s requested%s: %zu deferred recipient(s) due now%s", site,
                                 subdomains ? " and its subdomains" : "", who, count,
                                 dropped ? " (and more requests not logged)" : "");
        } else if (id) {
                r = qmgr_requeue(q, id);
                if (r == -ENOENT)
                        return ipc_conn_reply_error(c, "no such message in the queue");
                if (r < 0) {
                        log_error_errno(r, "%s: flush failed: %s", id, queue_last_error(q->queue));
                        return ipc_conn_reply_error(c, "queue update failed");
                }
                count = 1;
        } else if (log)
                log_info("flush requested%s: retrying every deferred recipient%s", who,
                         dropped ? " (and more requests not logged)" : "");

        size_t revived = qmgr_sched_revive_all(q);
        if (revived > 0 && log)
                log_info("flush: %zu suspended destination(s) may be tried again", revived);
        if (site || id)
                qmgr_scan_restart(q);
        else
                qmgr_scan_flush(q);

        if ((r = ipc_record_add(&reply, "status", "ok")) < 0 ||
            (site && (r = ipc_record_addf(&reply, "count", "%zu", count)) < 0))
                return r;
        return ipc_conn_reply(c, &reply);
}
