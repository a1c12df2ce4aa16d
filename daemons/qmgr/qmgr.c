/* qmgr.c — postern-qmgr: the queue manager (Postfix's qmgr, with bounce and flush built in).
 *
 * Runs as a role of common/daemon (daemon-role.h: Type=notify, watchdog, SIGHUP reload). Serves the "qmgr"
 * socket with the attribute protocol:
 *   request=wakeup   new mail was committed: scan soon (many wake-ups make one scan)
 *   request=flush [site=<domain>|queue_id=<id>]   retry deferred recipients now: all, those at one
 *                    domain, or one message's (anyone: sendmail -q/-qR/-qI, posternctl flush,
 *                    ETRN through postern-smtpd; qmgr-flush.c)
 *   request=hold|release|delete|requeue queue_id=<id>|ALL   (qmgr-control.c, for posternctl;
 *                    root and mail_owner only, by the peer's SO_PEERCRED uid)
 * Without a "qmgr" socket (run by hand) it works from its timer alone. The socket is world-writable
 * (anyone may flush), so it has the IpcServer's limits for public sockets (IPC_SMALL_RECORD_LIMITS
 * and IPC_PUBLIC_CONN_LIMITS in ipc.h) with mail_owner trusted besides root; each limit hit is
 * logged as a warning ("qmgr socket: peer uid=... pid=...: ..."), rate-limited. Scanning, delivery and
 * bounces live in qmgr-scan.c, qmgr-deliver.c and qmgr-bounce.c (see qmgr.h).
 *
 * Parameters: queue_directory, myhostname, mydestination, queue_run_delay,
 * minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime, bounce_queue_lifetime,
 * qmgr_message_active_limit, default_process_limit, local_destination_concurrency_limit,
 * bounce_size_limit, mail_owner,
 * postern_socket_directory, and for routing (qmgr-route.c) the address classes (mydestination,
 * inet_interfaces, proxy_interfaces, virtual_alias_domains, virtual_mailbox_domains, relay_domains),
 * local_transport, virtual_transport, relay_transport, default_transport, relayhost,
 * relocated_maps (with myorigin and recipient_delimiter), transport_maps,
 * default_destination_concurrency_limit (per remote next hop), and the scheduler's parameters
 * (qmgr-sched.c). A reload applies all but queue_directory, a restart parameter. */
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf-fields.h"
#include "conf/table-async.h"
#include "daemon/daemon-role.h"
#include "log/log.h"
#include "metrics/metrics-store.h"
#include "qmgr.h"

#define F(...) CONF_FIELD(QmgrSettings, __VA_ARGS__)
/* The routing parameters (myhostname, myorigin, the transports, transport_maps, ...) are
 * qmgr-route.c's rows: qmgr_route_fields_load(). */
static const ConfField qmgr_fields[] = {
        F("queue_directory", STRING, queue_directory),
        F("mail_owner", STRING, mail_owner),
        F("queue_run_delay", USEC, queue_run_delay),
        F("minimal_backoff_time", USEC, minimal_backoff),
        F("maximal_backoff_time", USEC, maximal_backoff),
        F("maximal_queue_lifetime", USEC, maximal_queue_lifetime),
        F("bounce_queue_lifetime", USEC, bounce_queue_lifetime),
        F("qmgr_message_active_limit", SIZE, active_limit),
        F("default_process_limit", SIZE, process_limit),
        F("local_destination_concurrency_limit", SIZE, rcpt_concurrency),
        F("default_destination_concurrency_limit", SIZE, dest_concurrency),
        F("bounce_size_limit", SIZE, bounce_size_limit),
        F("postern_socket_directory", STRING, socket_directory),
};
#undef F

/* Frees what qmgr_settings_load() allocated. */
void qmgr_settings_done(QmgrSettings *s) {
        conf_fields_done(qmgr_fields, ELEMENTSOF(qmgr_fields), s);
        qmgr_route_fields_done(s);
        addr_classes_done(&s->classes);
        free(s->local_socket);
        free(s->verify_socket);
        qmgr_sched_settings_done(&s->sched);
        qmgr_dsn_settings_done(s);
        *s = (QmgrSettings) {};
}

/* Reads the parameters qmgr uses from c into s (replacing its contents). */
int qmgr_settings_load(QmgrSettings *s, Conf *c) {
        _cleanup_(qmgr_settings_done) QmgrSettings n = {};

        /* The registry gives the default for anything main.cf does not set. */
        int r = conf_fields_load(c, NULL, qmgr_fields, ELEMENTSOF(qmgr_fields), &n);
        if (r >= 0)
                r = qmgr_route_fields_load(&n, c);
        if (r < 0)
                return r;
        if (isempty(n.queue_directory) || isempty(n.myhostname) || isempty(n.mail_owner))
                return log_error_errno(-EINVAL, "%s must not be empty",
                                       isempty(n.queue_directory) ? "queue_directory" :
                                       isempty(n.myhostname) ? "myhostname" : "mail_owner");

        n.local_socket = daemon_socket_path(c, "local");
        if (!n.local_socket)
                return log_oom();

        /* The address classes decide routing; a list whose table does not open defers the mail
         * it would decide, as a table that fails later does. */
        _cleanup_free_ char *why = NULL;
        r = addr_classes_load(&n.classes, c, NULL, &why);
        if (r < 0)
                return log_error_errno(r, "%s", why ? why : "address classes: out of memory");
        for (AddressClass k = 0; k < ADDR_CLASS_LISTS; k++)
                if (addr_classes_problem(&n.classes, k))
                        log_error("%s; deferring mail for the domains this list would decide",
                                  addr_classes_problem(&n.classes, k));

        /* The administrative verbs are for root and mail_owner; looked up once per load. */
        errno = 0;
        struct passwd *pw = getpwnam(n.mail_owner);
        if (pw) {
                n.mail_owner_uid = pw->pw_uid;
                n.mail_owner_known = true;
        } else
                log_warning("mail_owner %s: %s; only root may hold, release, delete or requeue mail",
                            n.mail_owner, errno ? strerror(errno) : "no such user");

        /* Per-transport scheduling limits, and the transports an existing master.cf defines. */
        _cleanup_free_ char *merr = NULL;
        r = qmgr_sched_settings_load_master(&n.sched, c, &merr);
        if (merr)
                log_error("%s; its transports are not used", merr);
        if (r < 0)
                return r;
        if ((r = qmgr_dsn_settings_load(&n, c)) < 0)
                return r;
        if (n.maximal_backoff < n.minimal_backoff) {
                log_warning("maximal_backoff_time is below minimal_backoff_time; using %llu s",
                            n.minimal_backoff / USEC_PER_SEC);
                n.maximal_backoff = n.minimal_backoff;
        }
        /* Last: the probes' routing borrows everything above. */
        const char *vname = conf_get(c, "address_verify_service_name");
        if (!(n.verify_socket = daemon_socket_path(c, isempty(vname) ? "verify" : vname)))
                return log_oom();
        if ((r = qmgr_route_probe_load(&n, c)) < 0)
                return r;

        qmgr_settings_done(s);
        *s = n;
        n = (QmgrSettings) {};
        return 0;
}

/* The limits of the public qmgr socket; mail_owner is trusted besides root. */
static void qmgr_socket_limits(Qmgr *q) {
        IpcServerLimits l = { IPC_SMALL_RECORD_LIMITS, IPC_PUBLIC_CONN_LIMITS };
        if (q->s.mail_owner_known)
                l.conns.trusted_uid = q->s.mail_owner_uid;
        (void) ipc_server_set_limits(q->server, &l);
}

static void on_socket_limit(const IpcLimitEvent *ev, void *userdata) {
        log_warning("qmgr socket: %s", ev->text);
}

/* Reload: the new settings are in place (queue_directory is a restart parameter). */
static int apply(void *userdata, void *old) {
        Qmgr *q = userdata;
        /* As after Postfix's reload (a new qmgr): no destination stays suspended. */
        size_t revived = qmgr_sched_revive_all(q);
        if (revived > 0)
                log_info("reload: %zu suspended destination(s) may be tried again", revived);
        if (q->server)
                qmgr_socket_limits(q);   /* mail_owner may have changed */
        qmgr_schedule_scan(q, 0);
        qmgr_dispatch(q);   /* default_process_limit may have grown */
        return 0;
}

static int on_request(IpcConn *c, const IpcRecord *req, void *userdata) {
        Qmgr *q = userdata;
        const char *verb = ipc_record_get(req, "request");
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;

        if (verb && streq(verb, "wakeup")) {
                qmgr_schedule_scan(q, 0);
        } else if (verb && streq(verb, "flush")) {
                return qmgr_flush(q, c, req) < 0 ? -ECONNRESET : 0;
        } else if (verb && (streq(verb, "hold") || streq(verb, "release") || streq(verb, "delete") ||
                            streq(verb, "requeue"))) {
                return qmgr_control(q, c, verb, req) < 0 ? -ECONNRESET : 0;
        } else {
                (void) ipc_conn_reply_error(c, verb ? "unknown request" : "missing request");
                return 0;
        }
        if (ipc_record_add(&reply, "status", "ok") < 0 || ipc_conn_reply(c, &reply) < 0)
                return -ECONNRESET;   /* drop this connection only */
        return 0;
}

static int settings_load(void *userdata, Conf *c, void *ret) {
        return qmgr_settings_load(ret, c);
}

static void settings_done(void *s) {
        qmgr_settings_done(s);
}

static int start(void *userdata, Daemon *d) {
        Qmgr *q = userdata;
        q->daemon = d;
        q->event = daemon_event(d);

        int r = queue_open(q->s.queue_directory, QUEUE_OPEN_CREATE, &q->queue);
        if (r < 0)
                return log_error_errno(r, "Cannot open the queue in %s: %s", q->s.queue_directory,
                                       queue_open_error() ?: strerror(-r));
        r = metrics_flusher_start(q->s.queue_directory);
        if (r < 0)
                return log_error_errno(r, "Failed to start the metrics writer: %m");
        if (q->server) {
                qmgr_socket_limits(q);
                ipc_server_set_limit_handler(q->server, on_socket_limit);
        } else
                log_info("no \"qmgr\" socket passed; working from the timer alone");
        /* Server-table lookups while routing run on these (threads start on the first one). */
        r = table_async_start(q->event, QMGR_LOOKUP_THREADS);
        if (r < 0)
                return log_error_errno(r, "Failed to start the lookup workers: %m");
        r = qmgr_scan_setup(q);
        if (r < 0)
                return r;
        log_info("started: queue %s, local delivery agent at %s", q->s.queue_directory,
                 q->s.local_socket);
        return 0;
}

static void stop(void *userdata) {
        Qmgr *q = userdata;
        qmgr_control_done(q);
        qmgr_scan_done(q);   /* messages set aside for lookups stop waiting */
        table_async_stop();
        metrics_flusher_stop();
        q->queue = queue_close(q->queue);
}

static const DaemonRole role = {
        .name = "qmgr",
        .sockets = (const DaemonSocket[]) {
                { "qmgr", DAEMON_SOCKET_OPTIONAL, .ipc = on_request, .server_offset = offsetof(Qmgr, server) },
                {},
        },
        .restart_params = (const char *const[]) { "queue_directory", NULL },
        DAEMON_ROLE_SETTINGS(Qmgr, s, settings_load, settings_done),
        .start = start, .apply = apply, .stop = stop,
};

int main(int argc, char *argv[]) {
        Qmgr q = {};
        return daemon_role_run(&role, &q);
}
