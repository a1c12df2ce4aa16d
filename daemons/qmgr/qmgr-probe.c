/* qmgr-probe.c — address verification probes in the queue (Postfix's verify(8) probes).
 *
 * postern-verify queues a probe as a message of its own (messages.is_probe, one recipient, the
 * probe sender) and wakes qmgr. qmgr schedules it like any mail (destination concurrency
 * windows, process limits, backoff), with three differences, all decided here:
 *
 *   routing    qmgr_probe_routing(): the settings with Postfix's address_verify_* overrides
 *              (address_verify_relayhost, _transport_maps, _{default,local,virtual,relay}_transport,
 *              _sender_dependent_{relayhost,default_transport}_maps; qmgr-route.c loads them);
 *   delivery   smtp and lmtp destinations get request=verify (postern-smtp stops at RCPT, or at
 *              DATA's reply with smtp_address_verify_target = data: nothing is delivered);
 *              error/retry/discard routes are decided as for mail; pipe is deliverable, and
 *              local, virtual and any other agent are not probed (qmgr_probe_decide(): postern-smtpd
 *              decides such recipients by its routing tables and never asks);
 *   results    qmgr_probe_report(): before a probe's result is recorded it goes to postern-verify
 *              (request=update address= result= reason= queue_id=), deliverable for 2.x.x,
 *              undeliverable for 5.x.x, undetermined otherwise. Only once verify has answered
 *              is the result recorded: a delivered or bounced probe is then removed (never a
 *              bounce, DSN or delay warning: qmgr-bounce.c and qmgr-delay.c skip probes), a
 *              deferred one is retried as mail is. When verify cannot be told (down, restarting
 *              after kill -9) the result is recorded as a deferral instead, so the probe is
 *              tried again and its result reaches the cache once verify is back.
 *
 * A probe lives at most QUEUE_PROBE_LIFETIME_SEC (qmgr_message_expired()); an expired probe is
 * removed quietly like a delivered one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "qmgr.h"

/* How long qmgr waits for postern-verify to take a result. */
#define QMGR_PROBE_REPORT_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef struct ReportCall {
        QmgrProbeReport *report;
        IpcCall *call;                 /* NULL once answered */
} ReportCall;

struct QmgrProbeReport {
        Qmgr *q;
        QmgrMessage *m;                /* held until verify answers; NULL: recorded already */
        QmgrResult *res;
        char **texts;                  /* copies of res[].dsn, .diag, .transport (3 per result) */
        ReportCall *calls;             /* one request per result */
        IpcRecord *reqs;               /* ... and its record */
        char queue_id[QUEUE_ID_MAX];
        size_t n, outstanding;
        bool failed, batched;
        QmgrProbeReport *next;
};

const QmgrSettings *qmgr_probe_routing(Qmgr *q, const QmgrMessage *m) {
        return m->msg.is_probe && q->s.probe ? q->s.probe : &q->s;
}

bool qmgr_probe_decide(const QmgrSettings *rs, const char *transport, QmgrResult *ret) {
        const char *agent = qmgr_sched_agent(rs, transport);
        if (streq(agent, "smtp") || streq(agent, "lmtp"))
                return false;
        if (streq(agent, "pipe")) {
                ret->state = QUEUE_RCPT_DELIVERED;
                ret->dsn = "2.0.0";
                ret->diag = "delivered by a pipe(8) transport";
        } else {
                /* Final (the probe is removed), reported as undetermined (4.x.x). */
                ret->state = QUEUE_RCPT_BOUNCED;
                ret->dsn = "4.3.0";
                ret->diag = "not probed: postern-smtpd decides recipients of this transport by its routing tables";
        }
        ret->log_deferral = true;
        return true;
}

/* What verify stores for a result. */
static const char *verify_result(const QmgrResult *r) {
        const char *dsn = strempty(r->dsn);
        if (r->state == QUEUE_RCPT_DELIVERED)
                return "deliverable";
        if (r->state == QUEUE_RCPT_BOUNCED && dsn[0] == '5')
                return "undeliverable";
        return "undetermined";
}

static void report_free(QmgrProbeReport *p) {
        if (!p)
                return;
        for (size_t i = 0; i < 3 * p->n && p->texts; i++)
                free(p->texts[i]);
        for (size_t i = 0; i < p->n && p->reqs; i++)
                ipc_record_done(&p->reqs[i]);
        free(p->reqs);
        free(p->texts);
        free(p->calls);
        free(p->res);
        free(p);
}

static void report_unlink(QmgrProbeReport *p) {
        for (QmgrProbeReport **pp = &p->q->probe_reports; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

/* Every answer is in: held results are recorded (as deferrals when verify did not take them). */
static void report_finish(QmgrProbeReport *p) {
        Qmgr *q = p->q;
        QmgrMessage *m = p->m;
        report_unlink(p);
        if (!m) {   /* recorded before the report */
                report_free(p);
                return;
        }
        for (size_t i = 0; i < p->n; i++) {
                p->res[i].reported = true;
                if (p->failed && p->res[i].state != QUEUE_RCPT_DEFERRED) {
                        p->res[i].state = QUEUE_RCPT_DEFERRED;
                        p->res[i].dsn = "4.3.0";
                        p->res[i].diag = "address verification service unavailable: the result is "
                                         "found again by a new attempt";
                        p->res[i].log_deferral = true;
                }
        }
        m->jobs--;
        if (p->batched)
                qmgr_apply_results_batched(q, m, p->res, p->n);
        else
                qmgr_apply_results(q, m, p->res, p->n);
        report_free(p);
        qmgr_dispatch(q);
}

static void on_reply(int error, const IpcRecord *reply, void *userdata) {
        ReportCall *c = userdata;
        QmgrProbeReport *p = c->report;
        c->call = NULL;   /* freed by ipc after we return */
        const char *status = error < 0 ? NULL : ipc_record_get(reply, "status");
        if (!status || !streq(status, "ok")) {
                log_warning("%s: cannot report the probe result to postern-verify: %s; the probe is tried again",
                            p->queue_id, error < 0 ? strerror(-error) : strna(ipc_record_get(reply, "reason")));
                p->failed = true;
        }
        if (--p->outstanding == 0)
                report_finish(p);
}

bool qmgr_probe_report(Qmgr *q, QmgrMessage *m, const QmgrResult *res, size_t n, bool batched) {
        if (!m->msg.is_probe || n == 0 || res[0].reported)
                return false;
        QmgrProbeReport *p = calloc(1, sizeof(QmgrProbeReport));
        if (!p || !(p->res = calloc(n, sizeof(QmgrResult))) || !(p->texts = calloc(3 * n, sizeof(char *))) ||
            !(p->calls = calloc(n, sizeof(ReportCall))) || !(p->reqs = calloc(n, sizeof(IpcRecord)))) {
                report_free(p);
                log_oom();
                return false;   /* recorded without a report: verify probes again later */
        }
        p->q = q;
        p->n = n;
        p->batched = batched;
        memcpy(p->queue_id, m->queue_id, QUEUE_ID_MAX);
        memcpy(p->res, res, n * sizeof(QmgrResult));
        bool final = false;
        int e = 0;
        for (size_t i = 0; i < n; i++) {
                QmgrResult *r = &p->res[i];
                /* The texts may be the caller's stack or its job's: copied (NULL when out of
                 * memory: recorded without them), and the reply-owned relay dropped. */
                char **t = &p->texts[3 * i];
                t[0] = res[i].dsn ? strdup(res[i].dsn) : NULL;
                t[1] = res[i].diag ? strdup(res[i].diag) : NULL;
                t[2] = res[i].transport ? strdup(res[i].transport) : NULL;
                r->dsn = t[0];
                r->diag = t[1];
                r->transport = t[2];
                r->remote_mta = NULL;
                r->reported = true;
                p->calls[i].report = p;
                final = final || r->state != QUEUE_RCPT_DEFERRED;
                const char *reason = !isempty(r->diag) ? r->diag : strempty(r->dsn);
                if (e >= 0 && (ipc_record_add(&p->reqs[i], "request", "update") < 0 ||
                               ipc_record_add(&p->reqs[i], "address", m->rcpts[r->idx].address) < 0 ||
                               ipc_record_add(&p->reqs[i], "result", verify_result(r)) < 0 ||
                               ipc_record_add(&p->reqs[i], "reason", reason) < 0 ||
                               ipc_record_add(&p->reqs[i], "queue_id", m->queue_id) < 0))
                        e = -ENOMEM;
        }
        if (e < 0) {
                report_free(p);
                log_oom();
                return false;
        }
        p->next = q->probe_reports;
        q->probe_reports = p;
        if (final) {
                /* Told first, then recorded: a probe is removed only once its result is safe. */
                p->m = m;
                m->jobs++;   /* m stays active until the results are recorded */
        } else
                /* A deferral is recorded first (it ends nothing): when verify hears of it, the
                 * queue already shows the probe as tried. m may be gone after this. */
                qmgr_apply_results(q, m, p->res, n);
        p->outstanding = n;
        for (size_t i = 0; i < n; i++) {
                e = ipc_client_call_async(q->event, q->s.verify_socket, &p->reqs[i], QMGR_PROBE_REPORT_TIMEOUT_USEC,
                                          on_reply, &p->calls[i], &p->calls[i].call);
                if (e < 0) {
                        log_warning("%s: cannot report the probe result to postern-verify at %s: %s; the probe is "
                                    "tried again", p->queue_id, q->s.verify_socket, strerror(-e));
                        p->failed = true;
                        p->outstanding--;
                }
        }
        if (p->outstanding == 0)
                report_finish(p);
        return true;
}

void qmgr_probe_reports_free(Qmgr *q) {
        while (q->probe_reports) {
                QmgrProbeReport *p = q->probe_reports;
                q->probe_reports = p->next;
                for (size_t i = 0; i < p->n; i++)
                        if (p->calls[i].call)
                                ipc_call_cancel(p->calls[i].call);
                report_free(p);
        }
}
