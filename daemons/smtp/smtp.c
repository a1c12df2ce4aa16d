/* smtp.c — postern-smtp, the SMTP and LMTP delivery agent (Postfix's smtp(8)/lmtp(8)).
 *
 * Serves request=deliver (docs/architecture.md "IPC verbs") on the "smtp-client" socket
 * (/run/postern/smtp) and, when passed, the "lmtp-client" socket (/run/postern/lmtp): loads the
 * envelope and content from the queue, resolves the next hop (smtp-nexthop.c), runs the
 * conversation on a new or cached connection (smtp-session*.c) and answers with one result per
 * recipient, same indexes, as postern-local does. Logs Postfix's
 * "<id>: to=<...>, relay=host[addr]:port, delay=..., delays=a/b/c/d, dsn=..., status=..." line
 * for each recipient. Everything runs in one sd-event loop; many deliveries at once.
 *
 * Settings are loaded by smtp-settings.c: the smtp_* side, the lmtp_* side for deliveries on the
 * lmtp socket, and the variant of a master.cf transport a request names (transport=) with that
 * entry's -o overrides; a variant made unavailable by an invalid -o defers its mail with 4.3.5.
 * Runs as a role of common/daemon (daemon-role.h); SIGHUP reloads everything but
 * queue_directory, a restart parameter. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "conf/table-async.h"
#include "daemon/daemon-role.h"
#include "log/log.h"
#include "mail/delay.h"
#include "metrics/metrics-store.h"
#include "smtp.h"

/* Smtp.cfg: both sides and the master.cf variants, as the role's settings (daemon-role.h). */
static void config_done(void *p) {
        smtp_config_done(p);
}

static int config_load(void *userdata, Conf *c, void *p) {
        _cleanup_strv_free_ char **warnings = NULL, **errors = NULL;
        int r = smtp_config_load(c, p, &warnings, &errors);
        for (char **w = warnings; w && *w; w++)
                log_warning("%s", *w);
        for (char **e = errors; e && *e; e++)
                log_error("%s; mail for that transport is deferred", *e);
        return r;
}

static void delivery_free(SmtpDelivery *d) {
        if (!d)
                return;
        smtp_session_abort(d);
        for (size_t i = 0; i < d->n_rcpts; i++) {
                free(d->rcpts[i].address);
                free(d->rcpts[i].orcpt);
                free(d->rcpts[i].relay);
                free(d->rcpts[i].diag);
        }
        free(d->rcpts);
        free(d->targets);
        smtp_tls_policy_done(&d->tls);
        smtp_sts_delivery_done(d);
        smtp_lookup_delivery_done(d);
        d->dane = smtp_dane_free(d->dane);
        if (d->sasl_sender)
                explicit_bzero(d->sasl_sender, strlen(d->sasl_sender));
        free(d->sasl_sender);
        free(d->nexthop);
        free(d->transport);
        free(d->content);
        if (d->have_msg)
                queue_message_done(&d->msg);
        if (d->conn)
                ipc_conn_unref(d->conn);
        if (d->leader)
                for (SmtpDelivery **f = &d->leader->followers; *f; f = &(*f)->next_follower)
                        if (*f == d) {
                                *f = d->next_follower;
                                break;
                        }
        for (SmtpDelivery *f = d->followers; f; f = f->next_follower)
                f->leader = NULL;   /* only at shutdown: smtp_delivery_finish() hands them on */
        if (d->smtp) {
                if (d->prev)
                        d->prev->next = d->next;
                else
                        d->smtp->deliveries = d->next;
                if (d->next)
                        d->next->prev = d->prev;
        }
        free(d);
}

/* Records a result for rc unless it has one, with the server it came from (results of one
 * delivery may come from several). A 4xx while d->provisional (another server follows) is kept
 * as the recipient's soft result: the next server is tried, and the last soft result is what
 * the recipient gets if none takes it. */
static void rcpt_vresult(SmtpDelivery *d, SmtpRcpt *rc, const char *dsn, const char *fmt, va_list ap) _printf_(4, 0);
static void rcpt_vresult(SmtpDelivery *d, SmtpRcpt *rc, const char *dsn, const char *fmt, va_list ap) {
        if (rc->done)
                return;
        char *diag = NULL;
        if (vasprintf(&diag, fmt, ap) < 0)
                diag = NULL;
        snprintf(rc->dsn, sizeof(rc->dsn), "%s", dsn);
        free(rc->diag);
        rc->diag = diag;
        rc->soft = d->provisional && dsn[0] == '4';
        rc->done = !rc->soft;
        free(rc->relay);
        rc->relay = d->relay[0] ? strdup(d->relay) : NULL;
}

/* Records a result for recipient i unless it has one. */
void smtp_rcpt_result(SmtpDelivery *d, size_t i, const char *dsn, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        rcpt_vresult(d, &d->rcpts[i], dsn, fmt, ap);
        va_end(ap);
}

/* Records a result for every recipient without one (accepted_only: only those accepted). */
void smtp_all_result(SmtpDelivery *d, bool accepted_only, const char *dsn, const char *fmt, ...) {
        for (size_t i = 0; i < d->n_rcpts; i++) {
                if (accepted_only && !d->rcpts[i].accepted)
                        continue;
                va_list ap;
                va_start(ap, fmt);
                rcpt_vresult(d, &d->rcpts[i], dsn, fmt, ap);
                va_end(ap);
        }
}

static void log_rcpt(SmtpDelivery *d, const SmtpRcpt *rc, usec_t end) {
        char d0[32], d1[32], d2[32], d3[32], d4[32];
        usec_t conn = d->conn_usec ? d->conn_usec : end;
        const char *status = rc->dsn[0] == '2' ? (d->probe ? "deliverable" : "sent") :
                             rc->dsn[0] == '5' ? (d->probe ? "undeliverable" : "bounced") : "deferred";
        const char *relay = rc->relay ? rc->relay : d->relay[0] ? d->relay : "none";
        const char *orig = NULL;
        if (rc->orcpt) {
                const char *semi = strchr(rc->orcpt, ';');
                orig = semi ? semi + 1 : NULL;
                if (orig && strcaseeq(orig, rc->address))
                        orig = NULL;
        }
        log_fields(LOG_INFO, &((LogFields) { .queue_id = d->queue_id, .sender = d->msg.sender,
                                             .recipient = rc->address, .relay = relay,
                                             .dsn = rc->dsn, .status = status }),
                   "%s: to=<%s>%s%s%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
                   d->queue_id, rc->address, orig ? ", orig_to=<" : "", orig ? orig : "", orig ? ">" : "",
                   relay,
                   delay_format(delay_between(end, d->arrival), d0, sizeof(d0)),
                   delay_format(delay_between(d->active, d->arrival), d1, sizeof(d1)),
                   delay_format(delay_between(d->received, d->active), d2, sizeof(d2)),
                   delay_format(delay_between(conn, d->received), d3, sizeof(d3)),
                   delay_format(delay_between(end, conn), d4, sizeof(d4)),
                   rc->dsn, status, strna(rc->diag));
}

static void delivery_begin(SmtpDelivery *d);

/* Frees a finished delivery; the requests that waited for it go on, answered from what it
 * remembered where they can be. */
static void delivery_end(SmtpDelivery *d) {
        SmtpDelivery *f = d->followers;
        d->followers = NULL;
        delivery_free(d);
        while (f) {
                SmtpDelivery *next = f->next_follower;
                f->leader = NULL;
                f->next_follower = NULL;
                delivery_begin(f);
                f = next;
        }
}

/* Replies to qmgr and frees d. */
void smtp_delivery_finish(SmtpDelivery *d) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        usec_t end = now_usec(CLOCK_REALTIME);
        int r;

        d->session = NULL;
        d->provisional = false;
        if ((r = ipc_record_add(&reply, "status", "ok")) < 0 ||
            (r = ipc_record_addf(&reply, "count", "%zu", d->n_rcpts)) < 0)
                goto fail;
        for (size_t i = 0; i < d->n_rcpts; i++) {
                SmtpRcpt *rc = &d->rcpts[i];
                char id[32];
                if (!rc->done && rc->soft)
                        rc->done = true;   /* a soft result no other server replaced */
                if (!rc->done)
                        smtp_rcpt_result(d, i, "4.3.0", "internal error: no result");
                const char *rrelay = rc->relay ? rc->relay : d->relay;
                if (rc->recalled)
                        log_info("%s: to=<%s>: not sent again: the queue manager asked again for a "
                                 "result already reported (dsn=%s, %s)", d->queue_id, rc->address,
                                 rc->dsn, strna(rc->diag));
                else {
                        log_rcpt(d, rc, end);
                        if (!d->probe)
                                smtp_remember(&d->smtp->memory, d->queue_id, rc,
                                              rrelay[0] && !streq(rrelay, "none") ? rrelay : NULL);
                }
                snprintf(id, sizeof(id), "%" PRId64, rc->id);
                const char *action = rc->dsn[0] == '2' ? (d->probe ? "deliverable" : "delivered") :
                                     rc->dsn[0] == '5' ? (d->probe ? "undeliverable" : "bounced") : "deferred";
                /* DSN: the server took it without offering DSN, and the sender asked for SUCCESS. */
                if (rc->dsn[0] == '2' && rc->relayed && (rc->notify & QUEUE_NOTIFY_SUCCESS))
                        action = "relayed";
                if ((r = ipc_record_add_indexed(&reply, "rcpt_id", i, id)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "action", i, action)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "dsn", i, rc->dsn)) < 0 ||
                    (r = ipc_record_add_indexed(&reply, "diag", i, strna(rc->diag))) < 0)
                        goto fail;
                if (rrelay[0] && !streq(rrelay, "none") &&
                    (r = ipc_record_add_indexed(&reply, "relay", i, rrelay)) < 0)
                        goto fail;
        }
        r = ipc_conn_reply(d->conn, &reply);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send delivery results to the queue manager: %m", d->queue_id);
        delivery_end(d);
        return;
fail:
        log_error_errno(r, "%s: cannot build reply: %m", d->queue_id);
        (void) ipc_conn_reply_error(d->conn, "out of memory");
        delivery_end(d);
}

static void on_resolved(const char *dsn, const char *diag, SmtpTarget *targets, size_t n, void *userdata) {
        SmtpDelivery *d = userdata;
        if (dsn || n == 0) {
                free(targets);
                smtp_all_result(d, false, dsn ? dsn : "4.4.3", "%s", diag ? diag : "no address for next hop");
                smtp_delivery_finish(d);
                return;
        }
        d->targets = targets;
        d->n_targets = n;
        smtp_session_start(d);
}

static int ensure_queue(Smtp *s) {
        if (s->queue)
                return 0;
        int r = queue_open(s->cfg.side[0].queue_directory, 0, &s->queue);
        if (r < 0)
                log_error_errno(r, "Cannot open the queue in %s: %s", s->cfg.side[0].queue_directory,
                                queue_open_error() ?: strerror(-r));
        return r;
}

static bool has_8bit(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] >= 0x80)
                        return true;
        return false;
}

static int reply_error(IpcConn *c, const char *reason) {
        (void) ipc_conn_reply_error(c, reason);
        return 0;
}

/* request=verify (an address probe, Postfix's verify(8) asking smtp(8)): the envelope comes in
 * the request, nothing is read from the queue and no message is sent; each recipient is
 * "deliverable" (2.x.x: accepted at RCPT, or at DATA with smtp_address_verify_target = data),
 * "undeliverable" (5.x.x) or "deferred" (4.x.x), with the server's words. */
static int probe_start(SmtpDelivery *d, const IpcRecord *rec) {
        d->probe = true;
        d->have_msg = true;
        d->msg.sender = strdup(strempty(ipc_record_get(rec, "sender")));
        d->content = strdup("");
        if (!d->msg.sender || !d->content) {
                smtp_all_result(d, false, "4.3.0", "out of memory");
                smtp_delivery_finish(d);
                return 0;
        }
        d->arrival = d->active = d->received;
        int r = smtp_resolve(d->smtp->event, d->nexthop, smtp_settings(d->smtp, d->lmtp, d->transport),
                             on_resolved, d);
        if (r < 0) {
                smtp_all_result(d, false, "4.3.0", "cannot resolve %s: %s", d->nexthop, strerror(-r));
                smtp_delivery_finish(d);
        }
        return 0;
}

static int on_request(IpcConn *c, const IpcRecord *rec, Smtp *smtp, bool lmtp) {
        long long count;
        int r;

        const char *verb = ipc_record_get(rec, "request");
        if (!verb || (!streq(verb, "deliver") && !streq(verb, "verify")))
                return reply_error(c, "unknown request");
        bool probe = streq(verb, "verify");
        const char *queue_id = ipc_record_get(rec, "queue_id");
        if (probe && !queue_id)
                queue_id = "NOQUEUE";
        else if (!queue_id || !queue_id_valid(queue_id))
                return reply_error(c, "missing or invalid queue_id");
        const char *nexthop = ipc_record_get(rec, "nexthop");
        if (isempty(nexthop))
                return reply_error(c, "missing nexthop");
        r = ipc_record_get_int(rec, "count", &count);
        if (r < 0 || count < 1 || count > SMTP_MAX_RCPT)
                return reply_error(c, "missing or invalid count");
        for (long long i = 0; i < count; i++) {
                const char *a = ipc_record_get_indexed(rec, "rcpt", (size_t) i);
                const char *id = ipc_record_get_indexed(rec, "rcpt_id", (size_t) i);
                char *end = NULL;
                if (isempty(a) || isempty(id) || (strtoll(id, &end, 10), !end || *end))
                        return reply_error(c, "missing or invalid rcpt/rcpt_id");
        }

        SmtpDelivery *d = calloc(1, sizeof(SmtpDelivery));
        if (!d)
                return reply_error(c, "out of memory");
        d->smtp = smtp;
        d->next = smtp->deliveries;
        if (smtp->deliveries)
                smtp->deliveries->prev = d;
        smtp->deliveries = d;
        d->conn = ipc_conn_ref(c);
        d->lmtp = lmtp;
        snprintf(d->queue_id, sizeof(d->queue_id), "%s", queue_id);
        d->received = now_usec(CLOCK_REALTIME);
        d->nexthop = strdup(nexthop);
        d->rcpts = calloc((size_t) count, sizeof(SmtpRcpt));
        const char *transport = ipc_record_get(rec, "transport");
        d->transport = isempty(transport) ? NULL : strdup(transport);
        if (!d->nexthop || !d->rcpts || (!isempty(transport) && !d->transport)) {
                delivery_free(d);
                return reply_error(c, "out of memory");
        }
        d->n_rcpts = (size_t) count;
        for (size_t i = 0; i < d->n_rcpts; i++) {
                SmtpRcpt *rc = &d->rcpts[i];
                const char *orcpt = ipc_record_get_indexed(rec, "orcpt", i);
                rc->id = strtoll(ipc_record_get_indexed(rec, "rcpt_id", i), NULL, 10);
                rc->address = strdup(ipc_record_get_indexed(rec, "rcpt", i));
                rc->orcpt = orcpt ? strdup(orcpt) : NULL;
                if (!rc->address || (orcpt && !rc->orcpt)) {
                        delivery_free(d);
                        return reply_error(c, "out of memory");
                }
        }

        if (probe)
                return probe_start(d, rec);
        long long v;
        d->arrival = ipc_record_get_int(rec, "arrival", &v) >= 0 && v >= 0 ? (usec_t) v : 0;
        d->active = ipc_record_get_int(rec, "active", &v) >= 0 && v >= 0 ? (usec_t) v : d->received;
        delivery_begin(d);
        return 0;
}

/* Another delivery of d's message still working on one of d's recipients, or NULL. */
static SmtpDelivery *delivery_twin(SmtpDelivery *d) {
        for (SmtpDelivery *e = d->smtp->deliveries; e; e = e->next) {
                if (e == d || e->leader || e->probe || !streq(e->queue_id, d->queue_id))
                        continue;
                for (size_t i = 0; i < d->n_rcpts; i++)
                        for (size_t k = 0; k < e->n_rcpts; k++)
                                if (!d->rcpts[i].done && d->rcpts[i].id == e->rcpts[k].id)
                                        return e;
        }
        return NULL;
}

/* Starts a delivery request: recipients whose success was already reported get it again
 * (smtp-remember.c); while another delivery is still sending to one of them, d waits for it;
 * the rest is delivered. */
static void delivery_begin(SmtpDelivery *d) {
        Smtp *smtp = d->smtp;
        const char *queue_id = d->queue_id;
        size_t open = 0;
        int r;

        for (size_t i = 0; i < d->n_rcpts; i++)
                if (!d->rcpts[i].done && !smtp_recall(&smtp->memory, queue_id, &d->rcpts[i]))
                        open++;
        if (open == 0) {
                smtp_delivery_finish(d);
                return;
        }
        SmtpDelivery *twin = delivery_twin(d);
        if (twin) {
                log_info("%s: a delivery of this message is still in progress; the repeated request "
                         "waits for its results", queue_id);
                d->leader = twin;
                d->next_follower = twin->followers;
                twin->followers = d;
                return;
        }

        QueueRecipient *qr = NULL;
        size_t n_qr = 0;
        r = ensure_queue(smtp);
        if (r >= 0)
                r = queue_load_message(smtp->queue, queue_id, &d->msg, &qr, &n_qr);
        if (r == -ENOENT) {
                log_warning("%s: delivery request for a message that is not in the queue", queue_id);
                (void) reply_error(d->conn, "no such message");
                delivery_end(d);
                return;
        }
        if (r >= 0) {
                d->have_msg = true;
                r = queue_load_content(smtp->queue, queue_id, &d->content, &d->content_len);
        }
        if (r < 0) {
                if (smtp->queue)
                        log_error_errno(r, "%s: cannot read message from the queue: %s", queue_id,
                                        queue_last_error(smtp->queue));
                smtp->queue = queue_close(smtp->queue);   /* reopened by the next request */
                queue_recipients_free(qr, n_qr);
                smtp_all_result(d, false, "4.3.0", "queue read error");
                smtp_delivery_finish(d);
                return;
        }
        /* NOTIFY= lives in the queue's recipient rows, not in the request. */
        for (size_t i = 0; i < d->n_rcpts; i++)
                for (size_t k = 0; k < n_qr; k++)
                        if (qr[k].id == d->rcpts[i].id)
                                d->rcpts[i].notify = qr[k].notify;
        queue_recipients_free(qr, n_qr);

        if (!d->arrival)
                d->arrival = d->msg.arrival_usec;
        d->eightbit = has_8bit(d->content, d->content_len);

        const SmtpSettings *st = smtp_settings(smtp, d->lmtp, d->transport);
        if (st->unavailable) {
                /* a master.cf transport whose -o overrides are invalid (logged at load) */
                smtp_all_result(d, false, "4.3.5", "%s", st->unavailable);
                smtp_delivery_finish(d);
                return;
        }
        r = smtp_resolve(smtp->event, d->nexthop, st, on_resolved, d);
        if (r < 0) {
                smtp_all_result(d, false, "4.3.0", "cannot resolve %s: %s", d->nexthop, strerror(-r));
                smtp_delivery_finish(d);
        }
}

static int on_request_smtp(IpcConn *c, const IpcRecord *rec, void *userdata) {
        return on_request(c, rec, userdata, false);
}

static int on_request_lmtp(IpcConn *c, const IpcRecord *rec, void *userdata) {
        return on_request(c, rec, userdata, true);
}

/* Reload: both sides' new settings are in place (queue_directory is a restart parameter). */
static int apply(void *userdata, void *old) {
        Smtp *s = userdata;
        smtp_resolve_configure(&s->cfg.side[0], &s->cfg.side[1]);
        return 0;
}

static int start(void *userdata, Daemon *dm) {
        Smtp *smtp = userdata;
        smtp->event = daemon_event(dm);
        int r = smtp_resolve_init(smtp->event);
        if (r < 0)
                return log_error_errno(r, "Cannot start the DNS resolver: %m");
        smtp_resolve_configure(&smtp->cfg.side[0], &smtp->cfg.side[1]);
        smtp_memory_open(&smtp->memory, smtp->cfg.side[0].queue_directory);
        smtp_sts_init(smtp->event, smtp->cfg.side[0].queue_directory);
        r = table_async_start(smtp->event, SMTP_LOOKUP_THREADS);   /* threads start on the first lookup */
        if (r < 0)
                return log_error_errno(r, "Failed to start the lookup workers: %m");
        smtp_tlsrpt_init(smtp->cfg.side[0].queue_directory);
        if (queue_open(smtp->cfg.side[0].queue_directory, 0, &smtp->queue) < 0)
                smtp->queue = NULL;   /* qmgr creates it; reopened lazily */
        /* the TLS handshake counts (the only queue.db write postern-smtp makes) */
        r = metrics_flusher_start(smtp->cfg.side[0].queue_directory);
        if (r < 0)
                return log_error_errno(r, "Failed to start the metrics writer: %m");
        return 0;
}

static void stop(void *userdata) {
        Smtp *smtp = userdata;
        while (smtp->deliveries)
                delivery_free(smtp->deliveries);
        smtp_sessions_done(smtp);
        table_async_stop();   /* after the deliveries: none waits any more */
        smtp_sts_done();
        smtp_tlsrpt_done();
        smtp_resolve_done();
        smtp_memory_done(&smtp->memory);
        metrics_flusher_stop();
        smtp->queue = queue_close(smtp->queue);
}

/* qmgr multiplexes its deliveries over one connection (IpcMux). The fd names are not "smtp"
 * and "lmtp": postern-smtpd's port 25 socket is "smtp". */
static const DaemonRole role = {
        .name = "smtp",
        .sockets = (const DaemonSocket[]) {
                { "smtp-client", DAEMON_SOCKET_ANY, .ipc = on_request_smtp,
                  .server_offset = offsetof(Smtp, server[0]), .multiplex = SMTP_MAX_OUTSTANDING },
                { "lmtp-client", DAEMON_SOCKET_ANY, .ipc = on_request_lmtp,
                  .server_offset = offsetof(Smtp, server[1]), .multiplex = SMTP_MAX_OUTSTANDING },
                {},
        },
        .restart_params = (const char *const[]) { "queue_directory", NULL },
        DAEMON_ROLE_SETTINGS(Smtp, cfg, config_load, config_done),
        .start = start, .apply = apply, .stop = stop,
};

int main(int argc, char **argv) {
        Smtp smtp = { .memory.fd = -EBADF };
        return daemon_role_run(&role, &smtp);
}
