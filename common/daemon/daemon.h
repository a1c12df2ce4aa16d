/* daemon.h — the skeleton every Postern daemon runs on (systemd is the master(8)). Daemons do not
 * call it directly: each declares a role (daemon-role.h) and daemon_role_run() drives this:
 *
 *   _cleanup_daemon_free_ Daemon *d = NULL;
 *   r = daemon_new("smtpd", &d);            // log_open, load main.cf, sd-event, signals, listen fds
 *   fd = daemon_take_fd(d, "smtp");          // a socket passed by systemd, by its FileDescriptorName
 *   daemon_set_reload(d, reload_cb, ud);     // SIGHUP: RELOADING=1, re-read main.cf, call cb, READY=1
 *   return daemon_run(d);                    // READY=1, event loop, STOPPING=1; exit code
 *
 * SIGTERM/SIGINT end the loop. If WATCHDOG_USEC is set, sd-event pings the watchdog. A config
 * error at start is fatal (logged with file/line/parameter); at reload it is logged and the old
 * configuration stays. */
#pragma once

#include <systemd/sd-event.h>
#include "../basic/macro.h"
#include "../conf/conf.h"

typedef struct Daemon Daemon;
typedef int (*DaemonReloadFn)(Daemon *d, Conf *new_conf, void *userdata);

int daemon_new(const char *role, Daemon **ret);
Daemon *daemon_free(Daemon *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Daemon *, daemon_free);
#define _cleanup_daemon_free_ _cleanup_(daemon_freep)

sd_event *daemon_event(Daemon *d);
Conf *daemon_conf(Daemon *d);
const char *daemon_role(Daemon *d);
/* Takes the passed socket named name (ownership moves to the caller); -ENOENT if not passed. */
int daemon_take_fd(Daemon *d, const char *name);
/* Names of all passed sockets not yet taken (borrowed strings), NULL-terminated. */
const char *const *daemon_fd_names(Daemon *d);
/* Called after a successful reload with the new configuration (already installed). */
void daemon_set_reload(Daemon *d, DaemonReloadFn fn, void *userdata);
/* Sends STATUS=<text> (printf-style). */
void daemon_status(Daemon *d, const char *fmt, ...) _printf_(2, 3);
/* READY=1, runs the loop, STOPPING=1. Returns the process exit code. */
int daemon_run(Daemon *d);
/* Ends the loop with an exit code. */
void daemon_exit(Daemon *d, int code);

/* Path of a Postern IPC socket: <postern_socket_directory>/<name> (e.g. "qmgr", "local"). */
char *daemon_socket_path(Conf *c, const char *name);
