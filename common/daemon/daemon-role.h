/* daemon-role.h — a daemon declared as a role: its sockets, its settings and the parameters that
 * need a restart; daemon_role_run() does everything else, the same way for every role:
 *
 *   static const DaemonRole role = {
 *           .name = "qmgr",
 *           .sockets = (const DaemonSocket[]) {
 *                   { "qmgr", DAEMON_SOCKET_OPTIONAL, .ipc = on_request,
 *                     .server_offset = offsetof(Qmgr, server) },
 *                   {},
 *           },
 *           .restart_params = (const char *const[]) { "queue_directory", NULL },
 *           DAEMON_ROLE_SETTINGS(Qmgr, s, settings_load, settings_done),
 *           .start = start, .apply = apply, .stop = stop,
 *   };
 *   int main(int argc, char *argv[]) { Qmgr q = {}; return daemon_role_run(&role, &q); }
 *
 * daemon_role_run(role, userdata):
 *   1. daemon_new(role->name): log, main.cf, sd-event, signals, passed sockets;
 *   2. sockets: a DAEMON_SOCKET_REQUIRED one that was not passed, or none of the
 *      DAEMON_SOCKET_ANY ones, is fatal with one wording: `No "anvil" socket was passed; nothing to
 *      do.` (`No "smtp-client" or "lmtp-client" socket …` for a group). A socket with .ipc gets an
 *      IpcServer (stored in userdata at .server_offset, multiplexed when .multiplex > 0); one with
 *      .open is handed to the role as a file descriptor; a socket with .match takes every other
 *      passed socket whose name it accepts (postern-smtpd's master.cf listeners);
 *   3. settings: load(userdata, conf, settings) into the struct at .settings_offset; a failure is
 *      fatal ("Fatal configuration error, refusing to start.", after the loader's own lines);
 *   4. start(userdata, daemon): the role's own set-up (queue, timers, server limits);
 *   5. daemon_run(): READY=1, the loop, STOPPING=1 at SIGTERM/SIGINT;
 *   6. stop(userdata), then the IpcServers are freed, then done(settings), then the daemon.
 * On SIGHUP (common/daemon re-reads main.cf): each restart parameter whose value changed is logged
 * once, as "queue_directory changed: restart postern-qmgr to apply (still using /var/spool/postern)",
 * and keeps its old value in the new configuration; then settings are loaded anew into a scratch
 * struct and, on success, swapped in and apply(userdata, old) is called with the previous ones,
 * which are freed afterwards. A failed load or apply changes nothing (the old settings are put
 * back; daemon.c logs it).
 *
 * Like daemon.c this is program code: it logs where it decides, with the role's identifier. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>
#include "daemon.h"
#include "../ipc/ipc.h"

typedef enum DaemonSocketNeed {
        DAEMON_SOCKET_REQUIRED,   /* fatal when not passed */
        DAEMON_SOCKET_OPTIONAL,   /* served when passed */
        DAEMON_SOCKET_ANY,        /* at least one of the role's ANY sockets must be passed */
} DaemonSocketNeed;

typedef struct DaemonSocket {
        const char *name;              /* FileDescriptorName= in the .socket unit; NULL ends the list */
        DaemonSocketNeed need;
        /* Either: an IpcServer calling ipc with the role's userdata, stored at server_offset */
        IpcHandler ipc;
        size_t server_offset;
        size_t multiplex;              /* ipc_server_set_multiplex(), 0 = one request at a time */
        /* or: the descriptor itself, owned by the role from then on (tag: the role's own) */
        int (*open)(void *userdata, const struct DaemonSocket *socket, int fd);
        int tag;
        /* With match: every passed socket not taken by name whose fd name match() accepts is
         * handed to open(), with a copy of this entry whose name is that fd name (name is
         * otherwise only a description). A matched socket counts for the ANY group. */
        bool (*match)(Conf *c, const char *fdname);
} DaemonSocket;

typedef struct DaemonRole {
        const char *name;                   /* "qmgr": postern/qmgr in the log, postern-qmgr unit */
        const DaemonSocket *sockets;        /* ended by an entry without a name */
        const char *const *restart_params;  /* NULL-terminated; may be NULL */
        /* The settings struct inside userdata (DAEMON_ROLE_SETTINGS); size 0 = none */
        size_t settings_offset, settings_size;
        /* Fills a zeroed struct from c; on failure logs what is wrong, returns <0 and leaves
         * nothing to free. */
        int (*load)(void *userdata, Conf *c, void *settings);
        void (*done)(void *settings);
        /* Reload: the new settings are in place, old are the previous ones (freed after). */
        int (*apply)(void *userdata, void *old);
        int (*start)(void *userdata, Daemon *d);
        /* Always called at the end, also after a failed start (so it copes with a partial
         * set-up); runs before the IpcServers are freed. */
        void (*stop)(void *userdata);
} DaemonRole;

#define DAEMON_ROLE_SETTINGS(type, field, load_fn, done_fn)                   \
        .settings_offset = offsetof(type, field),                             \
        .settings_size = sizeof(((type *) NULL)->field),                       \
        .load = load_fn, .done = done_fn

/* Runs the role to the end; returns the process exit code. */
int daemon_role_run(const DaemonRole *role, void *userdata);
