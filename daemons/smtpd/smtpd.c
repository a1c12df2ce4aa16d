/* smtpd.c — postern-smtpd's main(): takes the "smtp", "submission" and "submit" sockets from
 * systemd (common/daemon), builds one settings snapshot per listener, accepts connections in
 * the sd-event loop until EAGAIN and starts a Session for each, owns the commit worker, and
 * rebuilds the settings on SIGHUP (existing sessions keep the snapshot they started with). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "smtpd.h"
#include "log/log.h"

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s) {
        if (s)
                s->n_ref++;
        return s;
}

SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        free(s->listener);
        free(s->myhostname);
        free(s->myorigin);
        free(s->banner);
        free(s->recipient_delimiter);
        strv_free(s->client_restrictions);
        strv_free(s->helo_restrictions);
        strv_free(s->sender_restrictions);
        strv_free(s->relay_restrictions);
        strv_free(s->recipient_restrictions);
        free(s->mynetworks);
        domain_list_done(&s->mydestination);
        domain_list_done(&s->relay_domains);
        table_list_free(s->local_recipient_maps);
        free(s);
        return NULL;
}

static char *dup_param(Conf *c, const char *listener, const char *name, const char *fallback) {
        const char *v = conf_get_listener(c, listener, name);
        return strdup(v ? v : fallback);
}

static long long int_param(Conf *c, const char *listener, const char *name, long long fallback) {
        if (!conf_get_listener(c, listener, name))
                return fallback;
        return conf_get_int(c, listener, name);
}

/* A list parameter; an empty list when the registry does not know it. */
static char **list_param(Conf *c, const char *listener, const char *name) {
        if (!conf_get_listener(c, listener, name))
                return calloc(1, sizeof(char *));
        return conf_get_list(c, listener, name);
}

int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret) {
        _cleanup_(smtpd_settings_unrefp) SmtpdSettings *s = calloc(1, sizeof(SmtpdSettings));
        int r;

        if (!s)
                return log_oom();
        s->n_ref = 1;
        s->listener = strdup(listener);
        s->myhostname = dup_param(c, listener, "myhostname", "localhost");
        s->myorigin = dup_param(c, listener, "myorigin", s->myhostname ? s->myhostname : "localhost");
        s->recipient_delimiter = dup_param(c, listener, "recipient_delimiter", "");
        if (!s->listener || !s->myhostname || !s->myorigin || !s->recipient_delimiter)
                return log_oom();
        const char *banner = conf_get_listener(c, listener, "smtpd_banner");
        if (asprintf(&s->banner, "%s", banner ? banner : s->myhostname) < 0)
                return log_oom();

        s->message_size_limit = (uint64_t) MAX(0, int_param(c, listener, "message_size_limit", 10240000));
        s->header_size_limit = (uint64_t) MAX(1, int_param(c, listener, "header_size_limit", 102400));
        s->line_length_limit = (size_t) MAX(80, int_param(c, listener, "line_length_limit", 2048));
        s->recipient_limit = (unsigned) MAX(1, int_param(c, listener, "smtpd_recipient_limit", 1000));
        s->hard_error_limit = (unsigned) MAX(1, int_param(c, listener, "smtpd_hard_error_limit", 20));
        s->junk_command_limit = (unsigned) MAX(1, int_param(c, listener, "smtpd_junk_command_limit", 100));
        s->unknown_local_code = (int) int_param(c, listener, "unknown_local_recipient_reject_code", 550);
        if (s->unknown_local_code < 400 || s->unknown_local_code > 599)
                s->unknown_local_code = 550;
        long long t = conf_get_listener(c, listener, "smtpd_timeout") ?
                conf_get_time(c, listener, "smtpd_timeout") : 300;
        s->timeout_usec = (usec_t) MAX(1, t) * USEC_PER_SEC;
        s->disable_vrfy = conf_get_listener(c, listener, "disable_vrfy_command") ?
                conf_get_bool(c, listener, "disable_vrfy_command") : true;
        s->helo_required = conf_get_listener(c, listener, "smtpd_helo_required") ?
                conf_get_bool(c, listener, "smtpd_helo_required") : false;
        s->reject_unlisted_recipient = conf_get_listener(c, listener, "smtpd_reject_unlisted_recipient") ?
                conf_get_bool(c, listener, "smtpd_reject_unlisted_recipient") : true;
        const char *bn = conf_get_listener(c, listener, "smtpd_forbid_bare_newline");
        s->bare_newline = bn && strcaseeq(bn, "yes") ? BARE_NEWLINE_YES : BARE_NEWLINE_NORMALIZE;

        s->relay_restrictions = list_param(c, listener, "smtpd_relay_restrictions");
        s->recipient_restrictions = list_param(c, listener, "smtpd_recipient_restrictions");
        s->client_restrictions = list_param(c, listener, "smtpd_client_restrictions");
        s->helo_restrictions = list_param(c, listener, "smtpd_helo_restrictions");
        s->sender_restrictions = list_param(c, listener, "smtpd_sender_restrictions");
        if (!s->relay_restrictions || !s->recipient_restrictions || !s->client_restrictions ||
            !s->helo_restrictions || !s->sender_restrictions)
                return log_oom();
        _cleanup_strv_free_ char **data_r = list_param(c, listener, "smtpd_data_restrictions");
        if (data_r && data_r[0])
                log_warning("%s: smtpd_data_restrictions is not supported yet and is ignored.", listener);

        _cleanup_strv_free_ char **nets = list_param(c, listener, "mynetworks");
        if (!nets)
                return log_oom();
        r = smtpd_parse_mynetworks(nets, &s->mynetworks, &s->n_mynetworks);
        if (r < 0)
                return r;

        _cleanup_strv_free_ char **dest = list_param(c, listener, "mydestination");
        _cleanup_strv_free_ char **relay = list_param(c, listener, "relay_domains");
        if (!dest || !relay)
                return log_oom();
        _cleanup_free_ char *why = NULL;
        r = domain_list_init(&s->mydestination, dest, false, &why);
        if (r < 0)
                return log_error_errno(r, "mydestination: %s", why ? why : "out of memory");
        r = domain_list_init(&s->relay_domains, relay, true, &why);
        if (r < 0)
                return log_error_errno(r, "relay_domains: %s", why ? why : "out of memory");

        _cleanup_strv_free_ char **maps = list_param(c, listener, "local_recipient_maps");
        if (!maps)
                return log_oom();
        if (maps[0]) {
                _cleanup_free_ char *joined = NULL, *reason = NULL;
                size_t len = 1;
                for (char **i = maps; *i; i++)
                        len += strlen(*i) + 1;
                joined = calloc(1, len);
                if (!joined)
                        return log_oom();
                for (char **i = maps; *i; i++) {
                        if (i != maps)
                                strcat(joined, " ");
                        strcat(joined, *i);
                }
                r = table_list_open(joined, 0, &s->local_recipient_maps, &reason);
                if (r < 0) {
                        /* Like a table that fails at lookup time: local recipients get 451 until
                         * the table is fixed and smtpd is reloaded; other mail keeps flowing. */
                        log_error_errno(r, "local_recipient_maps = %s: %s; answering 451 4.3.0 for local "
                                        "recipients", joined, reason ? reason : "cannot open table");
                        s->local_recipient_maps_error = r;
                }
        }

        *ret = TAKE_PTR(s);
        return 0;
}

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

static int reload(Daemon *d, Conf *nc, void *userdata) {
        Server *srv = userdata;
        SmtpdSettings **fresh = calloc(srv->n_listeners + 1, sizeof(SmtpdSettings *));
        int r = 0;

        if (!fresh)
                return log_oom();
        for (size_t i = 0; i < srv->n_listeners; i++) {
                r = smtpd_settings_new(nc, srv->listeners[i].name, &fresh[i]);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                for (size_t i = 0; i < srv->n_listeners; i++)
                        smtpd_settings_unref(fresh[i]);
                free(fresh);
                return r;
        }
        for (size_t i = 0; i < srv->n_listeners; i++) {
                smtpd_settings_unref(srv->listeners[i].settings);
                srv->listeners[i].settings = fresh[i];
        }
        free(fresh);
        _cleanup_free_ char *wake = daemon_socket_path(nc, "qmgr");
        if (wake)
                committer_set_wakeup_path(srv->committer, wake);
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

static void server_done(Server *srv) {
        srv->status_timer = sd_event_source_disable_unref(srv->status_timer);
        while (srv->sessions)
                session_free(srv->sessions);
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                sd_event_source_disable_unref(l->io);
                sd_event_source_disable_unref(l->retry);
                safe_close(l->fd);
                smtpd_settings_unref(l->settings);
                free(l->name);
        }
        free(srv->listeners);
        committer_free(srv->committer);
}

static int run(void) {
        static const struct { const char *name; ListenerKind kind; } wanted[] = {
                { "smtp", LISTENER_SMTP },
                { "submission", LISTENER_SUBMISSION },
                { "submit", LISTENER_SUBMIT },
        };
        _cleanup_daemon_free_ Daemon *d = NULL;
        _cleanup_free_ char *wake = NULL;
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
                r = smtpd_settings_new(daemon_conf(d), l->name, &l->settings);
                if (r < 0)
                        goto finish;
                r = sd_event_add_io(srv.event, &l->io, fd, EPOLLIN, on_accept, l);
                if (r < 0) {
                        log_error_errno(r, "Failed to watch the %s socket: %m", l->name);
                        goto finish;
                }
        }
        if (srv.n_listeners == 0) {
                r = log_error_errno(-ENOENT, "None of the sockets smtp, submission, submit was passed; nothing to do.");
                goto finish;
        }

        const char *qdir = conf_get(daemon_conf(d), "queue_directory");
        wake = daemon_socket_path(daemon_conf(d), "qmgr");
        r = committer_new(&srv, qdir ? qdir : "/var/spool/postern", wake, &srv.committer);
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
