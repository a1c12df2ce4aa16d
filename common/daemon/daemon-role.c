/* daemon-role.c — daemon_role_run(): start-up, reload and teardown written once for every role.
 * See daemon-role.h for the sequence and the log lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon-role.h"
#include "../basic/strbuf.h"
#include "../log/log.h"

typedef struct RoleRun {
        const DaemonRole *role;
        void *userdata;
        Daemon *daemon;
        char **pinned;            /* the values of role->restart_params in use, same order */
        bool have_settings;
} RoleRun;

static void *settings_of(const RoleRun *run) {
        return (char *) run->userdata + run->role->settings_offset;
}

static IpcServer **server_slot(const RoleRun *run, const DaemonSocket *s) {
        return (IpcServer **) ((char *) run->userdata + s->server_offset);
}

static bool socket_is_ipc(const DaemonSocket *s) {
        return s->ipc != NULL;
}

/* `"smtp-client" or "lmtp-client"` / `"a", "b" or "c"`: the ANY group, for the one wording. */
static char *any_names(const DaemonRole *role) {
        size_t n = 0, k = 0;
        for (const DaemonSocket *s = role->sockets; s && s->name; s++)
                n += s->need == DAEMON_SOCKET_ANY && !s->match;
        _cleanup_(strbuf_donep) StrBuf b = {};
        for (const DaemonSocket *s = role->sockets; s && s->name; s++) {
                if (s->need != DAEMON_SOCKET_ANY || s->match)
                        continue;
                k++;
                if (strbuf_printf(&b, "%s\"%s\"", k == 1 ? "" : k == n ? " or " : ", ", s->name) < 0)
                        return NULL;
        }
        return strbuf_steal(&b);
}

/* The one wording for a socket that is not there, whichever role and socket. */
static int missing_socket(const char *quoted) {
        return log_error_errno(-ENOENT, "No %s socket was passed; nothing to do.", quoted);
}

/* The passed sockets that s->match accepts, each handed to s->open under its own name; returns
 * how many. */
static int serve_matching(RoleRun *run, const DaemonSocket *s) {
        const char *const *left = daemon_fd_names(run->daemon);
        size_t n = 0;
        while (left[n])
                n++;
        _cleanup_strv_free_ char **names = calloc(n + 1, sizeof(char *));
        if (!names)
                return log_oom();
        for (size_t i = 0; i < n; i++)
                if (!(names[i] = strdup(left[i])))
                        return log_oom();
        int k = 0;
        for (size_t i = 0; i < n; i++) {
                if (!s->match(daemon_conf(run->daemon), names[i]))
                        continue;
                int fd = daemon_take_fd(run->daemon, names[i]);
                if (fd < 0)
                        continue;
                DaemonSocket named = *s;
                named.name = names[i];
                int r = s->open(run->userdata, &named, fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot serve the %s socket: %m", names[i]);
                k++;
        }
        return k;
}

static int serve_sockets(RoleRun *run) {
        const DaemonRole *role = run->role;
        bool any_wanted = false, any_passed = false;
        int r;

        for (const DaemonSocket *s = role->sockets; s && s->name; s++) {
                if (s->match)
                        continue;
                any_wanted |= s->need == DAEMON_SOCKET_ANY;
                int fd = daemon_take_fd(run->daemon, s->name);
                if (fd < 0) {
                        if (s->need != DAEMON_SOCKET_REQUIRED)
                                continue;
                        _cleanup_free_ char *q = NULL;
                        if (asprintf(&q, "\"%s\"", s->name) < 0)
                                return log_oom();
                        return missing_socket(q);
                }
                any_passed |= s->need == DAEMON_SOCKET_ANY;
                if (socket_is_ipc(s)) {
                        IpcServer **slot = server_slot(run, s);
                        r = ipc_server_new(daemon_event(run->daemon), fd, s->ipc, run->userdata, slot);
                        if (r >= 0 && s->multiplex > 0)
                                r = ipc_server_set_multiplex(*slot, s->multiplex);
                } else
                        r = s->open(run->userdata, s, fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot serve the %s socket: %m", s->name);
        }
        for (const DaemonSocket *s = role->sockets; s && s->name; s++) {
                if (!s->match)
                        continue;
                r = serve_matching(run, s);
                if (r < 0)
                        return r;
                any_passed |= r > 0;
        }
        if (any_wanted && !any_passed) {
                _cleanup_free_ char *names = any_names(role);
                if (!names)
                        return log_oom();
                return missing_socket(names);
        }
        return 0;
}

static void free_servers(RoleRun *run) {
        for (const DaemonSocket *s = run->role->sockets; s && s->name; s++)
                if (socket_is_ipc(s)) {
                        IpcServer **slot = server_slot(run, s);
                        *slot = ipc_server_free(*slot);
                }
}

/* The values the restart parameters have at start; they stay in force until a restart. */
static int pin_restart_params(RoleRun *run, Conf *c) {
        size_t n = 0;
        for (const char *const *p = run->role->restart_params; p && *p; p++)
                n++;
        run->pinned = calloc(n + 1, sizeof(char *));
        if (!run->pinned)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                run->pinned[i] = strdup(strempty(conf_get(c, run->role->restart_params[i])));
                if (!run->pinned[i])
                        return log_oom();
        }
        return 0;
}

/* A restart parameter that changed is said once per reload and keeps its value in nc (the
 * expanded value in use, so that what it referred to through $name cannot move it either). */
static int keep_restart_params(RoleRun *run, Conf *nc) {
        for (size_t i = 0; run->pinned && run->pinned[i]; i++) {
                const char *name = run->role->restart_params[i];
                if (streq(strempty(conf_get(nc, name)), run->pinned[i]))
                        continue;
                log_warning("%s changed: restart postern-%s to apply (still using %s)", name,
                            run->role->name, run->pinned[i]);
                _cleanup_free_ char *why = NULL;
                int r = conf_set(nc, name, run->pinned[i], &why);
                if (r < 0)
                        return log_error_errno(r, "Cannot keep %s = %s: %s", name, run->pinned[i],
                                               why ? why : strerror(-r));
        }
        return 0;
}

static int on_reload(Daemon *d, Conf *nc, void *userdata) {
        RoleRun *run = userdata;
        const DaemonRole *role = run->role;
        int r = keep_restart_params(run, nc);
        if (r < 0)
                return r;
        if (!run->have_settings)   /* the role reads daemon_conf() itself */
                return role->apply ? role->apply(run->userdata, NULL) : 0;

        size_t size = role->settings_size;
        _cleanup_free_ void *fresh = calloc(1, size), *old = malloc(size);
        if (!fresh || !old)
                return log_oom();
        r = role->load(run->userdata, nc, fresh);
        if (r < 0)
                return r;   /* logged by the loader; daemon.c says the old configuration stays */
        void *cur = settings_of(run);
        memcpy(old, cur, size);
        memcpy(cur, fresh, size);
        if (role->apply && (r = role->apply(run->userdata, old)) < 0) {
                memcpy(fresh, cur, size);
                memcpy(cur, old, size);
                role->done(fresh);
                return r;
        }
        role->done(old);
        return 0;
}

int daemon_role_run(const DaemonRole *role, void *userdata) {
        _cleanup_daemon_free_ Daemon *d = NULL;
        RoleRun run = { .role = role, .userdata = userdata };
        int r;

        r = daemon_new(role->name, &d);
        if (r < 0)
                return EXIT_FAILURE;
        run.daemon = d;
        r = pin_restart_params(&run, daemon_conf(d));
        if (r >= 0)
                r = serve_sockets(&run);
        if (r >= 0 && role->settings_size > 0) {
                r = role->load(userdata, daemon_conf(d), settings_of(&run));
                if (r < 0)
                        log_error_errno(r, "Fatal configuration error, refusing to start.");
                else
                        run.have_settings = true;
        }
        if (r >= 0 && role->start)
                r = role->start(userdata, d);
        if (r >= 0) {
                daemon_set_reload(d, on_reload, &run);
                r = daemon_run(d);
        } else
                r = EXIT_FAILURE;

        if (role->stop)
                role->stop(userdata);
        free_servers(&run);
        if (run.have_settings)
                role->done(settings_of(&run));
        strv_free(run.pinned);
        return r;
}
