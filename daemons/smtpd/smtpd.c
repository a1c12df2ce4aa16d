/* smtpd.c — postern-smtpd's main(): takes the "smtp", "submission", "submissions" and "submit"
 * sockets from systemd (common/daemon), builds the settings snapshots (smtpd-settings.c: one
 * shared by every listener without overrides in main.cf, one each for the others), accepts connections in the sd-event loop until
 * EAGAIN and starts a Session for each, owns the commit worker, rebuilds the settings on SIGHUP
 * (existing sessions keep the snapshot they started with; a reload that fails changes nothing)
 * and on SIGTERM answers every message in the commit path before closing (server_done). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "smtpd.h"
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

static int build_all(Server *srv, Conf *c, SmtpdSettings **ret) {
        _cleanup_free_ char **names = calloc(srv->n_listeners + 1, sizeof(char *));
        if (!names)
                return log_oom();
        for (size_t i = 0; i < srv->n_listeners; i++)
                names[i] = srv->listeners[i].name;
        return smtpd_settings_build(c, names, srv->n_listeners, ret);
}

static int reload(Daemon *d, Conf *nc, void *userdata) {
        Server *srv = userdata;
        _cleanup_free_ SmtpdSettings **fresh = calloc(srv->n_listeners + 1, sizeof(SmtpdSettings *));
        int r;

        if (!fresh)
                return log_oom();
        r = build_all(srv, nc, fresh);
        if (r < 0)
                return r;   /* logged; the daemon keeps the old configuration */
        for (size_t i = 0; i < srv->n_listeners; i++) {
                smtpd_settings_unref(srv->listeners[i].settings);
                srv->listeners[i].settings = fresh[i];
        }
        _cleanup_free_ char *wake = daemon_socket_path(nc, "qmgr");
        if (wake)
                committer_set_wakeup_path(srv->committer, wake);
        _cleanup_free_ char *anvil_path = daemon_socket_path(nc, "anvil");
        smtpd_anvil_set_path(srv->anvil, anvil_path);
        return 0;
}

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
static void server_done(Server *srv) {
        srv->status_timer = sd_event_source_disable_unref(srv->status_timer);
        srv->stopping = true;
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                l->io = sd_event_source_disable_unref(l->io);
                l->retry = sd_event_source_disable_unref(l->retry);
                l->fd = safe_close(l->fd);
        }
        for (Session *s = srv->sessions; s; s = s->next)
                if (s->phase != PHASE_COMMIT && s->phase != PHASE_CLOSING)
                        /* Includes PHASE_WAIT: the waiting command gets no answer of its own;
                         * session_free() cancels its operation. */
                        session_reply(s, "421 4.3.2 %s Service shutting down", s->settings->myhostname);
        if (srv->committer)
                committer_drain(srv->committer);
        flush_before_exit(srv, now_usec(CLOCK_MONOTONIC) + SHUTDOWN_FLUSH_USEC);
        while (srv->sessions)
                session_free(srv->sessions);
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                smtpd_settings_unref(l->settings);
                ipc_peers_done(&l->uids);
                free(l->name);
        }
        free(srv->listeners);
        committer_free(srv->committer);
        srv->resolver = dns_resolver_free(srv->resolver);
        smtpd_policy_shutdown();
        srv->anvil = smtpd_anvil_free(srv->anvil);
}

static int run(void) {
        static const struct { const char *name; ListenerKind kind; } wanted[] = {
                { "smtp", LISTENER_SMTP },
                { "submission", LISTENER_SUBMISSION },
                { "submit", LISTENER_SUBMIT },
                { "submissions", LISTENER_SUBMISSIONS },
        };
        _cleanup_daemon_free_ Daemon *d = NULL;
        _cleanup_free_ char *wake = NULL, *anvil_path = NULL;
        _cleanup_free_ SmtpdSettings **settings = NULL;
        Server srv = {};
        int r;

        r = daemon_new("smtpd", &d);
        if (r < 0)
                return EXIT_FAILURE;
        srv.daemon = d;
        srv.event = daemon_event(d);
        srv.listeners = calloc(ELEMENTSOF(wanted), sizeof(Listener));
        if (!srv.listeners)
                return log_oom(), EXIT_FAILURE;

        for (size_t i = 0; i < ELEMENTSOF(wanted); i++) {
                int fd = daemon_take_fd(d, wanted[i].name);
                if (fd < 0)
                        continue;
                /* Sockets may arrive blocking; accepting until EAGAIN needs them non-blocking. */
                int fl = fcntl(fd, F_GETFL);
                if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                        log_warning_errno(-errno, "Failed to make the %s socket non-blocking: %m",
                                          wanted[i].name);
                Listener *l = &srv.listeners[srv.n_listeners++];
                l->server = &srv;
                l->kind = wanted[i].kind;
                l->fd = fd;
                l->name = strdup(wanted[i].name);
                if (!l->name) {
                        r = log_oom();
                        goto finish;
                }
        }
        if (srv.n_listeners == 0) {
                r = log_error_errno(-ENOENT, "None of the sockets smtp, submission, submit was passed; nothing to do.");
                goto finish;
        }
        settings = calloc(srv.n_listeners + 1, sizeof(SmtpdSettings *));
        if (!settings) {
                r = log_oom();
                goto finish;
        }
        r = build_all(&srv, daemon_conf(d), settings);
        if (r < 0) {
                log_error("Fatal configuration error, refusing to start.");
                goto finish;
        }
        for (size_t i = 0; i < srv.n_listeners; i++) {
                Listener *l = &srv.listeners[i];
                l->settings = settings[i];
                r = sd_event_add_io(srv.event, &l->io, l->fd, EPOLLIN, on_accept, l);
                if (r < 0) {
                        log_error_errno(r, "Failed to watch the %s socket: %m", l->name);
                        goto finish;
                }
        }
        const char *budget_source = NULL;
        srv.data_budget = data_budget_default(&budget_source);
        log_info("message data budget: %llu bytes (%s)", (unsigned long long) srv.data_budget, budget_source);

        const char *qdir = conf_get(daemon_conf(d), "queue_directory");
        wake = daemon_socket_path(daemon_conf(d), "qmgr");
        r = committer_new(&srv, strempty(qdir), wake, &srv.committer);
        if (r < 0)
                goto finish;
        r = dns_resolver_new(srv.event, 0, 0, &srv.resolver);
        if (r < 0) {
                log_error_errno(r, "Failed to start the DNS resolver: %m");
                goto finish;
        }
        anvil_path = daemon_socket_path(daemon_conf(d), "anvil");
        r = smtpd_anvil_new(&srv, anvil_path, &srv.anvil);
        if (r < 0)
                goto finish;

        r = sd_event_add_time_relative(srv.event, &srv.status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       USEC_PER_SEC, on_status_timer, &srv);
        if (r < 0)
                log_warning_errno(r, "Failed to set up the status timer: %m");
        daemon_set_reload(d, reload, &srv);
        daemon_status(d, "Accepting connections on %zu listener(s)", srv.n_listeners);
        r = daemon_run(d);
        server_done(&srv);
        return r;

finish:
        server_done(&srv);
        return EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        return run();
}
