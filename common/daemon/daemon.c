/* daemon.c — the shared daemon skeleton: configuration, sockets from systemd, sd-event loop,
 * signals, reload and readiness notification. See daemon.h. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "../conf/table.h"
#include "../log/log.h"

struct Daemon {
        char *role;
        sd_event *event;
        Conf *conf;
        char **fd_names;      /* from sd_listen_fds_with_names(); taken entries become "" */
        int *fds;
        size_t n_fds;
        const char **untaken; /* scratch for daemon_fd_names() */
        DaemonReloadFn reload;
        void *reload_userdata;
        int exit_code;
};

/* Server tables (pgsql:, mysql:, ldap:, socketmap:, tcp:) report why a lookup failed; table.c limits
 * how often. */
static void log_table_error(const char *spec, const char *reason, void *userdata) {
        (void) userdata;
        log_warning("%s: lookup failed: %s", spec, reason);
}

static void log_conf_messages(char **messages) {
        for (char **m = messages; m && *m; m++)
                log_warning("%s", *m);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        _cleanup_strv_free_ char **messages = NULL;
        Conf *nc = NULL;

        sd_notify(false, "RELOADING=1\nSTATUS=Reloading configuration");
        int r = conf_load(d->conf ? conf_path(d->conf) : NULL, &nc, &messages);
        log_conf_messages(messages);
        if (r < 0) {
                log_error_errno(r, "Configuration reload failed, keeping the old configuration: %m");
        } else {
                Conf *old = d->conf;
                d->conf = nc;
                if (d->reload && (r = d->reload(d, nc, d->reload_userdata)) < 0) {
                        log_error_errno(r, "Applying the new configuration failed, keeping the old one: %m");
                        d->conf = old;
                        conf_free(nc);
                } else {
                        conf_free(old);
                        log_info("reload -- configuration %s", conf_path(d->conf));
                }
        }
        sd_notify(false, "READY=1\nSTATUS=Running");
        return 0;
}

int daemon_new(const char *role, Daemon **ret) {
        _cleanup_strv_free_ char **messages = NULL;
        int r;

        log_open(role);
        table_error_report_set(log_table_error, NULL);
        Daemon *d = calloc(1, sizeof(Daemon));
        if (!d)
                return log_oom();
        d->role = strdup(role);
        if (!d->role) {
                daemon_free(d);
                return log_oom();
        }

        r = conf_load(NULL, &d->conf, &messages);
        log_conf_messages(messages);
        if (r < 0) {
                daemon_free(d);
                return log_error_errno(r, "Fatal configuration error, refusing to start.");
        }

        r = sd_event_default(&d->event);
        if (r < 0) {
                daemon_free(d);
                return log_error_errno(r, "Failed to allocate event loop: %m");
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, NULL, NULL)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGINT, NULL, NULL)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload, d)) < 0) {
                daemon_free(d);
                return log_error_errno(r, "Failed to install signal handlers: %m");
        }
        (void) sd_event_set_watchdog(d->event, true);

        r = sd_listen_fds_with_names(true, &d->fd_names);
        if (r < 0) {
                daemon_free(d);
                return log_error_errno(r, "Failed to receive sockets from systemd: %m");
        }
        d->n_fds = (size_t) r;
        d->fds = calloc(d->n_fds + 1, sizeof(int));
        d->untaken = calloc(d->n_fds + 1, sizeof(char *));
        if (!d->fds || !d->untaken) {
                daemon_free(d);
                return log_oom();
        }
        for (size_t i = 0; i < d->n_fds; i++)
                d->fds[i] = SD_LISTEN_FDS_START + (int) i;

        *ret = d;
        return 0;
}

Daemon *daemon_free(Daemon *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_fds; i++)
                safe_close(d->fds[i]);
        free(d->fds);
        free(d->untaken);
        strv_free(d->fd_names);
        sd_event_unref(d->event);
        conf_free(d->conf);
        free(d->role);
        free(d);
        return NULL;
}

sd_event *daemon_event(Daemon *d) { return d->event; }
Conf *daemon_conf(Daemon *d) { return d->conf; }
const char *daemon_role(Daemon *d) { return d->role; }

int daemon_take_fd(Daemon *d, const char *name) {
        for (size_t i = 0; i < d->n_fds; i++)
                if (d->fds[i] >= 0 && d->fd_names && d->fd_names[i] && streq(d->fd_names[i], name))
                        return TAKE_FD(d->fds[i]);
        return -ENOENT;
}

const char *const *daemon_fd_names(Daemon *d) {
        size_t k = 0;
        for (size_t i = 0; i < d->n_fds; i++)
                if (d->fds[i] >= 0 && d->fd_names && d->fd_names[i])
                        d->untaken[k++] = d->fd_names[i];
        d->untaken[k] = NULL;
        return d->untaken;
}

void daemon_set_reload(Daemon *d, DaemonReloadFn fn, void *userdata) {
        d->reload = fn;
        d->reload_userdata = userdata;
}

void daemon_status(Daemon *d, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        sd_notifyf(false, "STATUS=%s", buf);
}

int daemon_run(Daemon *d) {
        /* Sockets passed but not claimed by the role are a unit misconfiguration worth a word. */
        for (const char *const *n = daemon_fd_names(d); *n; n++)
                log_warning("Ignoring passed socket \"%s\" that %s does not serve.", *n, d->role);
        sd_notify(false, "READY=1\nSTATUS=Running");
        int r = sd_event_loop(d->event);
        sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), EXIT_FAILURE;
        return r;
}

void daemon_exit(Daemon *d, int code) {
        d->exit_code = code;
        sd_event_exit(d->event, code);
}

char *daemon_socket_path(Conf *c, const char *name) {
        const char *dir = conf_get(c, "postern_socket_directory");
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir ? dir : "/run/postern", name) < 0)
                return NULL;
        return p;
}
