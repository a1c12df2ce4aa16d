/* smtpd.c — postern-smtpd's main(): declares the role (common/daemon/daemon-role.h) that takes the
 * "smtp", "submission", "submissions" and "submit" sockets from systemd (at least one), builds
 * the settings snapshots (smtpd-settings.c: one shared by every listener without overrides in
 * main.cf, one each for the others), accepts connections in the sd-event loop until EAGAIN and
 * starts a Session for each, owns the commit worker, rebuilds the settings on SIGHUP (existing
 * sessions keep the snapshot they started with; a reload that fails changes nothing;
 * queue_directory is a restart parameter) and on SIGTERM answers every message in the commit
 * path before closing (server_done). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "smtpd.h"
#include "conf/master-inet.h"
#include "metrics/metrics-store.h"
#include "daemon/daemon-role.h"
#include "log/log.h"

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata);

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        Listener *l = userdata;
        (void) sd_event_source_set_enabled(l->io, SD_EVENT_ON);
        return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        /* Out of descriptors or memory: pause accepting for a moment rather
                         * than spinning on a level-triggered listener. */
                        log_warning_errno(-errno, "accept() on %s failed, pausing for 1s: %m", l->name);
                        (void) sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
                        if (l->retry)
                                l->retry = sd_event_source_disable_unref(l->retry);
                        (void) sd_event_add_time_relative(l->server->event, &l->retry, CLOCK_MONOTONIC,
                                                          USEC_PER_SEC, 0, on_accept_retry, l);
                        return 0;
                }
                (void) session_new(l, cfd);   /* closes cfd itself on failure */
        }
}

/* Settings: one snapshot per listener, in a NULL-terminated array (Server.settings). */
static int settings_load(void *userdata, Conf *c, void *ret) {
        Server *srv = userdata;
        _cleanup_free_ char **names = calloc(srv->n_listeners + 1, sizeof(char *));
        _cleanup_free_ SmtpdSettings **fresh = calloc(srv->n_listeners + 1, sizeof(SmtpdSettings *));
        if (!names || !fresh)
                return log_oom();
        for (size_t i = 0; i < srv->n_listeners; i++)
                names[i] = srv->listeners[i].name;
        int r = smtpd_settings_build(c, names, srv->n_listeners, fresh);
        if (r < 0)
                return r;   /* logged */
        *(SmtpdSettings ***) ret = TAKE_PTR(fresh);
        return 0;
}

static void settings_done(void *p) {
        SmtpdSettings **v = *(SmtpdSettings ***) p;
        for (size_t i = 0; v && v[i]; i++)
                smtpd_settings_unref(v[i]);
        free(v);
}

/* Start and reload: each listener's new sessions use the new snapshot (sessions keep a reference
 * to theirs); queue_directory is a restart parameter. */
static int apply(void *userdata, void *old) {
        Server *srv = userdata;
        Conf *c = daemon_conf(srv->daemon);
        for (size_t i = 0; i < srv->n_listeners; i++)
                srv->listeners[i].settings = srv->settings[i];
        if (srv->committer) {
                _cleanup_free_ char *wake = daemon_socket_path(c, "qmgr");
                if (wake)
                        committer_set_wakeup_path(srv->committer, wake);
        }
        if (srv->anvil) {
                _cleanup_free_ char *anvil_path = daemon_socket_path(c, "anvil");
                smtpd_anvil_set_path(srv->anvil, anvil_path);
        }
        return 0;
}

/* Worker threads for lookups in server tables (table-async.h): each opens its own connection to
 * each server table it serves, so this is also the size of every table's connection pool. */
#define SMTPD_LOOKUP_THREADS 8
#define STATUS_INTERVAL_USEC (5 * USEC_PER_SEC)

/* Keeps `systemctl status` informative without a notify message per connection. */
static int on_status_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *srv = userdata;
        daemon_status(srv->daemon, "%zu session(s), %llu message(s) queued since start",
                      srv->n_sessions, (unsigned long long) srv->n_queued);
        (void) sd_event_source_set_time_relative(src, STATUS_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

#define SHUTDOWN_FLUSH_USEC (2 * USEC_PER_SEC)

/* Writes what the remaining sessions have buffered (the answers to their commits), waiting at
 * most until deadline for clients that read slowly. */
static void flush_before_exit(Server *srv, usec_t deadline) {
        for (Session *s = srv->sessions; s; s = s->next) {
                while (s->out.len > 0) {
                        ssize_t n = smtpd_io_write(s, s->out.data, s->out.len);
                        if (n > 0) {
                                strbuf_consume(&s->out, (size_t) n);
                                continue;
                        }
                        if (n == -EINTR)
                                continue;
                        usec_t now = now_usec(CLOCK_MONOTONIC);
                        if (n == 0 || (n != -EAGAIN && n != -EWOULDBLOCK) || now >= deadline)
                                break;
                        struct pollfd p = { .fd = s->fd, .events = POLLOUT };
                        (void) poll(&p, 1, (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                }
        }
}

/* SIGTERM: stop accepting; every message already handed to the writer thread is committed and
 * its client gets the answer (250 or 451) before the connection closes, so a client never sees
 * a queued message go unanswered (and sends it again). Sessions without a message in commit
 * get 421 and are closed: nothing of theirs was queued. */
static void server_done(void *userdata) {
        Server *srv = userdata;
        srv->status_timer = sd_event_source_disable_unref(srv->status_timer);
        srv->stopping = true;
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                l->io = sd_event_source_disable_unref(l->io);
                l->retry = sd_event_source_disable_unref(l->retry);
                l->fd = safe_close(l->fd);
        }
        for (Session *s = srv->sessions; s; s = s->next)
                if (session_phase(s) != PHASE_COMMIT && session_phase(s) != PHASE_CLOSING &&
                    session_phase(s) != PHASE_PROXY)
                        /* Includes PHASE_WAIT: the waiting command gets no answer of its own;
                         * session_free() cancels its operation. A session still reading its
                         * PROXY header gets nothing (no byte goes out before the header). */
                        session_reply(s, "421 4.3.2 %s Service shutting down", s->settings->myhostname);
        if (srv->committer)
                committer_drain(srv->committer);
        flush_before_exit(srv, now_usec(CLOCK_MONOTONIC) + SHUTDOWN_FLUSH_USEC);
        while (srv->sessions)
                session_free(srv->sessions);
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                ipc_peers_done(&l->uids);
                free(l->name);
        }
        free(srv->listeners);
        srv->listeners = NULL;
        srv->n_listeners = 0;
        committer_free(srv->committer);
        metrics_flusher_stop();   /* after the last commit: what it counted is written */
        srv->resolver = dns_resolver_free(srv->resolver);
        table_async_stop();
        smtpd_policy_shutdown();
        smtpd_verify_shutdown();
        srv->anvil = smtpd_anvil_free(srv->anvil);
        smtpd_screen_shutdown(srv);
}

/* A passed socket becomes a Listener (its tag is the ListenerKind); watched from start(). */
static int listener_open(void *userdata, const DaemonSocket *socket, int fd) {
        Server *srv = userdata;
        Listener *v = reallocarray(srv->listeners, srv->n_listeners + 1, sizeof(Listener));
        if (!v) {
                safe_close(fd);
                return log_oom();
        }
        srv->listeners = v;
        /* Sockets may arrive blocking; accepting until EAGAIN needs them non-blocking. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                log_warning_errno(-errno, "Failed to make the %s socket non-blocking: %m", socket->name);
        Listener *l = &srv->listeners[srv->n_listeners++];
        *l = (Listener) { .server = srv, .kind = socket->tag, .fd = fd, .name = strdup(socket->name) };
        return l->name ? 0 : log_oom();
}

typedef struct ListenerScan {
        const char *fdname;
        bool found;
} ListenerScan;

static void note_listener(const char *name, const char *raw, void *userdata) {
        ListenerScan *x = userdata;
        const char *rest = startswith(name, x->fdname);
        x->found = x->found || (rest && rest[0] == '/');
}

/* A socket postern-generator made for a master.cf inet smtpd entry (common/conf/master-inet.h),
 * or one main.cf gives settings of its own ("127.0.0.1-10025/content_filter =", e.g. from the
 * template postern-smtpd@10025.socket). */
static bool master_listener(Conf *c, const char *fdname) {
        ListenerScan x = { fdname, false };
        if (master_inet_socket_known(conf_get(c, "config_directory"), fdname))
                return true;
        conf_foreach_explicit(c, note_listener, &x);
        return x.found;
}

static int start(void *userdata, Daemon *d) {
        Server *srv = userdata;
        int r;

        srv->daemon = d;
        srv->event = daemon_event(d);
        (void) apply(srv, NULL);
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                r = sd_event_add_io(srv->event, &l->io, l->fd, EPOLLIN, on_accept, l);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch the %s socket: %m", l->name);
        }
        const char *budget_source = NULL;
        srv->data_budget = data_budget_default(&budget_source);
        log_info("message data budget: %llu bytes (%s)", (unsigned long long) srv->data_budget, budget_source);

        const char *qdir = conf_get(daemon_conf(d), "queue_directory");
        _cleanup_free_ char *wake = daemon_socket_path(daemon_conf(d), "qmgr");
        r = committer_new(srv, strempty(qdir), wake, &srv->committer);
        if (r < 0)
                return r;
        r = metrics_flusher_start(strempty(qdir));
        if (r < 0)
                return log_error_errno(r, "Failed to start the metrics writer: %m");
        r = dns_resolver_new(srv->event, 0, 0, &srv->resolver);
        if (r < 0)
                return log_error_errno(r, "Failed to start the DNS resolver: %m");
        r = table_async_start(srv->event, SMTPD_LOOKUP_THREADS);
        if (r < 0)
                return log_error_errno(r, "Failed to start the lookup workers: %m");
        _cleanup_free_ char *anvil_path = daemon_socket_path(daemon_conf(d), "anvil");
        r = smtpd_anvil_new(srv, anvil_path, &srv->anvil);
        if (r < 0)
                return r;

        r = sd_event_add_time_relative(srv->event, &srv->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       USEC_PER_SEC, on_status_timer, srv);
        if (r < 0)
                log_warning_errno(r, "Failed to set up the status timer: %m");
        daemon_status(d, "Accepting connections on %zu listener(s)", srv->n_listeners);
        return 0;
}

static const DaemonRole role = {
        .name = "smtpd",
        .sockets = (const DaemonSocket[]) {
                { "smtp", DAEMON_SOCKET_ANY, .open = listener_open, .tag = LISTENER_SMTP },
                { "submission", DAEMON_SOCKET_ANY, .open = listener_open, .tag = LISTENER_SUBMISSION },
                { "submit", DAEMON_SOCKET_ANY, .open = listener_open, .tag = LISTENER_SUBMIT },
                { "submissions", DAEMON_SOCKET_ANY, .open = listener_open, .tag = LISTENER_SUBMISSIONS },
                /* master.cf's other inet smtpd entries (postern-generator's socket units) */
                { "master.cf listener", DAEMON_SOCKET_ANY, .open = listener_open, .tag = LISTENER_SMTP,
                  .match = master_listener },
                {},
        },
        .restart_params = (const char *const[]) { "queue_directory", NULL },
        DAEMON_ROLE_SETTINGS(Server, settings, settings_load, settings_done),
        .start = start, .apply = apply, .stop = server_done,
};

int main(int argc, char *argv[]) {
        Server srv = {};
        return daemon_role_run(&role, &srv);
}
