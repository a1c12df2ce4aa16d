/* anvil.c — postern-anvil: Postfix's anvil(8), the per-client connection and rate counter that
 * postern-smtpd asks before it lets a client connect, send MAIL, RCPT, start TLS or AUTH.
 *
 * Serves the "anvil" socket (/run/postern/anvil) with the attribute protocol; every request
 * names the listener (service=smtp) and the client address (address=127.0.0.2):
 *
 *   request=connect     a connection started: count=<simultaneous> rate=<connections/unit>
 *   request=disconnect  it ended: count=<simultaneous>
 *   request=message     MAIL: count= rate=<messages/unit>
 *   request=recipient   RCPT: count= rate=<recipients/unit>
 *   request=newtls      a new (not resumed) TLS session: count= rate=
 *   request=auth        AUTH: count= rate=
 *   request=newtls_status  before STARTTLS: count= rate=<new TLS sessions> without counting
 *   request=lookup      nothing changes: count= rate= message_rate= recipient_rate=
 *                       newtls_rate= auth_rate=  (for tests and troubleshooting)
 *
 * Every answer is status=ok (plus tracked=no when the client table is full, see
 * anvil-table.c) or status=error reason=<what was wrong>. Connections are held per anvil client
 * connection: when an smtpd's connection to anvil closes (smtpd restarted or killed), the
 * connections it reported are dropped. Nothing is kept across restarts. The largest counts and
 * rates are logged every anvil_status_update_time, and at exit, in Postfix's wording
 * ("statistics: max connection rate 1/60s for (smtp:127.0.0.2) at Nov 21 17:00:00").
 *
 * The socket is for root and postern only (SocketMode=0600); its requests have the limits of
 * public sockets all the same (IPC_SMALL_RECORD_LIMITS in ipc.h), without connection caps.
 *
 * Parameters: anvil_rate_time_unit, anvil_status_update_time, postern_anvil_client_limit.
 * Runs as a role of common/daemon (daemon-role.h). A reload applies the status interval; the time
 * unit and the client limit are restart parameters (changing them would invalidate the counts). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "anvil.h"
#include "daemon/daemon-role.h"
#include "ipc/ipc.h"
#include "log/log.h"

#define ANVIL_FIELD_MAX 64

typedef struct Anvil {
        Daemon *daemon;
        sd_event *event;
        IpcServer *server;
        AnvilTable table;
        usec_t status_interval;
        sd_event_source *status_timer, *expire_timer;
} Anvil;

static const struct { const char *verb; AnvilEvent ev; } event_verbs[] = {
        { "connect", ANVIL_CONNECT },
        { "message", ANVIL_MESSAGE },
        { "recipient", ANVIL_RECIPIENT },
        { "newtls", ANVIL_NEWTLS },
        { "auth", ANVIL_AUTH },
};

/* service: a listener name; address: an IPv4/IPv6 address as smtpd prints it. Both bounded. */
static const char *check_field(const char *name, const char *v, const char *allowed) {
        static char why[96];
        if (!v) {
                snprintf(why, sizeof why, "missing %s", name);
                return why;
        }
        if (!*v || strlen(v) > ANVIL_FIELD_MAX) {
                snprintf(why, sizeof why, "%s must be 1 to %d characters", name, ANVIL_FIELD_MAX);
                return why;
        }
        if (v[strspn(v, allowed)]) {
                snprintf(why, sizeof why, "invalid character in %s", name);
                return why;
        }
        return NULL;
}

#define ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

static int reply_counts(IpcConn *c, unsigned count, const unsigned *rate, const unsigned *rates, bool tracked) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        int r = ipc_record_add(&reply, "status", "ok");
        if (r >= 0)
                r = ipc_record_addf(&reply, "count", "%u", count);
        if (r >= 0 && rate)
                r = ipc_record_addf(&reply, "rate", "%u", *rate);
        if (r >= 0 && rates) {
                r = ipc_record_addf(&reply, "rate", "%u", rates[ANVIL_CONNECT]);
                if (r >= 0)
                        r = ipc_record_addf(&reply, "message_rate", "%u", rates[ANVIL_MESSAGE]);
                if (r >= 0)
                        r = ipc_record_addf(&reply, "recipient_rate", "%u", rates[ANVIL_RECIPIENT]);
                if (r >= 0)
                        r = ipc_record_addf(&reply, "newtls_rate", "%u", rates[ANVIL_NEWTLS]);
                if (r >= 0)
                        r = ipc_record_addf(&reply, "auth_rate", "%u", rates[ANVIL_AUTH]);
        }
        if (r >= 0 && !tracked)
                r = ipc_record_add(&reply, "tracked", "no");
        if (r >= 0)
                r = ipc_conn_reply(c, &reply);
        return r;
}

static int on_request(IpcConn *c, const IpcRecord *req, void *userdata) {
        Anvil *a = userdata;
        const char *verb = ipc_record_get(req, "request");
        const char *service = ipc_record_get(req, "service");
        const char *address = ipc_record_get(req, "address");
        const char *why;
        char key[2 * ANVIL_FIELD_MAX + 2];
        uint64_t now;
        int r;

        if (!verb)
                return ipc_conn_reply_error(c, "missing request") < 0 ? -ECONNRESET : 0;
        if ((why = check_field("service", service, ALNUM "_.-")) ||
            (why = check_field("address", address, ALNUM ".:%")))
                return ipc_conn_reply_error(c, why) < 0 ? -ECONNRESET : 0;
        snprintf(key, sizeof key, "%s:%s", service, address);
        if (sd_event_now(a->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);

        for (size_t i = 0; i < ELEMENTSOF(event_verbs); i++)
                if (streq(verb, event_verbs[i].verb)) {
                        AnvilResult res;
                        r = anvil_table_event(&a->table, key, event_verbs[i].ev, c, now, &res);
                        if (r < 0) {
                                log_oom();
                                return ipc_conn_reply_error(c, "out of memory") < 0 ? -ECONNRESET : 0;
                        }
                        return reply_counts(c, res.count, &res.rate, NULL, res.tracked) < 0 ? -ECONNRESET : 0;
                }
        if (streq(verb, "disconnect")) {
                AnvilResult res;
                anvil_table_disconnect(&a->table, key, c, now, &res);
                return reply_counts(c, res.count, NULL, NULL, true) < 0 ? -ECONNRESET : 0;
        }
        if (streq(verb, "newtls_status")) {
                unsigned count, rates[_ANVIL_EVENT_MAX];
                anvil_table_lookup(&a->table, key, now, &count, rates);
                return reply_counts(c, count, &rates[ANVIL_NEWTLS], NULL, true) < 0 ? -ECONNRESET : 0;
        }
        if (streq(verb, "lookup")) {
                unsigned count, rates[_ANVIL_EVENT_MAX];
                anvil_table_lookup(&a->table, key, now, &count, rates);
                return reply_counts(c, count, NULL, rates, true) < 0 ? -ECONNRESET : 0;
        }
        return ipc_conn_reply_error(c, "unknown request") < 0 ? -ECONNRESET : 0;
}

static void on_close(IpcConn *c, void *userdata) {
        Anvil *a = userdata;
        anvil_table_drop_peer(&a->table, c);
}

static int on_status_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Anvil *a = userdata;
        anvil_table_log_statistics(&a->table);
        daemon_status(a->daemon, "%zu client(s), %zu connection(s) from smtpd", a->table.n_entries,
                      ipc_server_connections(a->server));
        (void) sd_event_source_set_time(src, usec + a->status_interval);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

static int on_expire_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Anvil *a = userdata;
        (void) anvil_table_expire(&a->table, usec);
        /* Twice per window: an idle client is gone at most 1.5 units after its last event. */
        (void) sd_event_source_set_time(src, usec + MAX(a->table.time_unit / 2, USEC_PER_SEC / 10));
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

static usec_t status_interval(Conf *c) {
        return (usec_t) MAX(1, conf_get_time(c, NULL, "anvil_status_update_time")) * USEC_PER_SEC;
}

/* Reload: the status interval. The time unit and the client limit are restart parameters. */
static int apply(void *userdata, void *old) {
        Anvil *a = userdata;
        a->status_interval = status_interval(daemon_conf(a->daemon));
        (void) sd_event_source_set_time_relative(a->status_timer, a->status_interval);
        return 0;
}

static void on_socket_limit(const IpcLimitEvent *ev, void *userdata) {
        log_warning("anvil socket: %s", ev->text);
}

static int start(void *userdata, Daemon *d) {
        Anvil *a = userdata;
        Conf *c = daemon_conf(d);
        a->daemon = d;
        a->event = daemon_event(d);

        usec_t unit = (usec_t) MAX(1, conf_get_time(c, NULL, "anvil_rate_time_unit")) * USEC_PER_SEC;
        size_t limit = (size_t) MAX(1, conf_get_int(c, NULL, "postern_anvil_client_limit"));
        a->status_interval = status_interval(c);
        int r = anvil_table_init(&a->table, limit, unit);
        if (r < 0)
                return log_oom();

        /* An smtpd keeps its connection for its whole life; closing it would drop its counts. */
        (void) ipc_server_set_idle_timeout(a->server, 0);
        /* Only root and postern may connect (SocketMode=0600), one connection per smtpd, so no
         * connection caps; requests are small (a verb, a service, an address), so the small
         * record limits keep a confused or compromised peer from growing anvil. */
        (void) ipc_server_set_limits(a->server, &(IpcServerLimits) { IPC_SMALL_RECORD_LIMITS });
        ipc_server_set_limit_handler(a->server, on_socket_limit);
        ipc_server_set_close_handler(a->server, on_close);

        r = sd_event_add_time_relative(a->event, &a->status_timer, CLOCK_MONOTONIC, a->status_interval,
                                       USEC_PER_SEC / 10, on_status_timer, a);
        if (r >= 0)
                r = sd_event_add_time_relative(a->event, &a->expire_timer, CLOCK_MONOTONIC,
                                               MAX(unit / 2, USEC_PER_SEC / 10), USEC_PER_SEC / 10,
                                               on_expire_timer, a);
        if (r < 0)
                return log_error_errno(r, "Failed to set up timers: %m");
        log_info("started: rate time unit %llus, statistics every %llus, at most %zu clients",
                 (unsigned long long) (unit / USEC_PER_SEC),
                 (unsigned long long) (a->status_interval / USEC_PER_SEC), limit);
        return 0;
}

static void stop(void *userdata) {
        Anvil *a = userdata;
        anvil_table_log_statistics(&a->table);   /* as Postfix's anvil does when it exits */
        a->status_timer = sd_event_source_disable_unref(a->status_timer);
        a->expire_timer = sd_event_source_disable_unref(a->expire_timer);
        if (a->server)
                ipc_server_set_close_handler(a->server, NULL);
        anvil_table_done(&a->table);
}

static const DaemonRole role = {
        .name = "anvil",
        .sockets = (const DaemonSocket[]) {
                { "anvil", DAEMON_SOCKET_REQUIRED, .ipc = on_request, .server_offset = offsetof(Anvil, server) },
                {},
        },
        /* changing them would invalidate the counts */
        .restart_params = (const char *const[]) { "anvil_rate_time_unit", "postern_anvil_client_limit",
                                                  NULL },
        .start = start, .apply = apply, .stop = stop,
};

int main(int argc, char *argv[]) {
        Anvil a = {};
        return daemon_role_run(&role, &a);
}
