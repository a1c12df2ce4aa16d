/* local-transient.c — running a "|command" delivery as a transient systemd service unit.
 *
 * Called from postern-local's delivery child: local_transient_connect() as root (the service
 * manager's private socket, unix:path=/run/systemd/private, accepts root only and remembers the
 * uid the socket had when it connected, so the child may switch uid afterwards), then
 * local_transient_run(), which returns when the command's unit has finished.
 *
 * The unit, "postern-command-<queue id>-<recipient id>-<8 random hex digits>.service" (the queue
 * id escaped to [A-Za-z0-9_]; nothing from the message or an address goes into the name), is a
 * Type=exec service running argv with ExecStart= (every '$' doubled: systemd must not expand
 * $VARIABLES of a shell command line, and "$$" is its escape), User=/Group= of the delivery
 * (systemd adds the user's supplementary groups), Environment=, WorkingDirectory=-<home>, stdin
 * a pipe we fill, stdout and stderr one pipe we drain, RuntimeMaxSec= the time limit with
 * KillSignal=SIGKILL (the fork path kills at the limit too), LimitFSIZE= mailbox_size_limit for
 * local(8) commands (not pipe(8)'s), CollectMode=inactive-or-failed (it
 * is gone from the manager as soon as it ended) and LogExtraFields=POSTERN_QUEUE_ID=… (systemd's
 * helper process tags what it logs while setting the command up, e.g. "Failed at step USER";
 * the manager's own "Started"/"Deactivated" lines are found with
 * `journalctl -u 'postern-command-<queue id>-*'`). Its sandbox is the one commands had inside
 * postern-local's unit — read-only system, writable /var/mail, /var/spool/mail, /home and /root,
 * private /tmp and /dev, no capabilities, NoNewPrivileges, @system-service, kernel and
 * control-group protections — minus the queue directory, plus the network (AF_INET, AF_INET6)
 * that postern-local itself no longer has; TasksMax=256 and MemoryMax=1G per command. An admin
 * changes any of it for all commands with a drop-in in
 * /etc/systemd/system/postern-command-.service.d/.
 *
 * Completion: before the unit is started we subscribe to the manager's JobRemoved signal and to
 * PropertiesChanged on the unit's object path (the path is known from the name in advance), so
 * nothing can finish unseen. The manager sends the unit's pending property changes before a job's
 * JobRemoved and a final change before it unloads a unit, and the Service interface's values
 * (ExecMainCode, ExecMainStatus, Result) before the Unit interface's (ActiveState): the run is over
 * when our start job has been removed and ActiveState is "inactive" or "failed", and the values
 * seen last are the command's. Every 5 s the same properties are also read directly, in case a
 * signal was lost; a unit that is gone (LoadState "not-found") before an end was seen is an
 * error. Result "timeout" means the time limit killed it. A start job that failed with
 * ExecMainStatus 200..243 (systemd's own exit codes: user, namespace, exec … setup failed) or
 * Result "resources" is an error, not the command's answer.
 *
 * Deadlines: every D-Bus call has one (at most 30 s); the wait ends at time_limit + 15 s, when
 * we kill the unit ourselves (KillUnit SIGKILL, StopUnit) and report a timeout; a D-Bus failure
 * returns a negative errno and a reason (the caller defers; the unit may then still run until
 * its own RuntimeMaxSec= ends it).
 *
 * Output: stdout and stderr go into one pipe that this module reads while it waits; the first
 * LOCAL_TRANSIENT_OUTPUT_MAX bytes are kept, the rest is read and dropped, so a chatty command
 * never blocks. The manager keeps its own copies of both pipes for the unit's lifetime, so the
 * end of the output is never seen as EOF: the unit's state decides when it is over. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "local-transient.h"

#define PRIVATE_BUS "unix:path=/run/systemd/private"
#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define MANAGER_IFACE "org.freedesktop.systemd1.Manager"
#define UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_IFACE "org.freedesktop.systemd1.Service"

#define CALL_TIMEOUT (30 * USEC_PER_SEC)
#define DEADLINE_SLACK (15 * USEC_PER_SEC)   /* beyond time_limit before we kill it ourselves */
#define KILL_WAIT (10 * USEC_PER_SEC)        /* for the end after our own kill */
#define POLL_INTERVAL (5 * USEC_PER_SEC)     /* direct property reads, in case a signal was lost */
#define DEFAULT_TIME_LIMIT (1000 * USEC_PER_SEC)

/* systemd's own exit codes for a failed setup of the process (systemd.exec(5), "Process Exit
 * Codes": 200 EXIT_CHDIR … 243 EXIT_CREDENTIALS). */
#define SYSTEMD_EXIT_FIRST 200
#define SYSTEMD_EXIT_LAST 243

/* What we have seen of the unit. */
typedef struct Watch {
        const char *unit;
        bool job_removed;
        char job_result[32];
        char active_state[32];
        char load_state[32];
        char result[32];
        int exec_code;
        int exec_status;
} Watch;

static void copy_str(char *buf, size_t size, const char *s) {
        snprintf(buf, size, "%s", strempty(s));
}

bool local_transient_utf8_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        while (*p) {
                unsigned c = *p, n;
                uint32_t cp;
                if (c < 0x80) {
                        p++;
                        continue;
                } else if ((c & 0xe0) == 0xc0)
                        n = 1, cp = c & 0x1f;
                else if ((c & 0xf0) == 0xe0)
                        n = 2, cp = c & 0x0f;
                else if ((c & 0xf8) == 0xf0)
                        n = 3, cp = c & 0x07;
                else
                        return false;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                /* Noncharacters: valid UTF-8, but sd-bus refuses them in strings. */
                if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
                        return false;
                p += n + 1;
        }
        return true;
}

void local_transient_printable(const char *s, char *buf, size_t size) {
        size_t o = 0;
        for (; s && *s && o + 1 < size; s++)
                buf[o++] = (unsigned char) *s >= 32 && (unsigned char) *s < 127 ? *s : '?';
        buf[o] = '\0';
}

int local_transient_unit_name(const char *queue_id, long long rcpt_id, uint32_t random, char *buf,
                              size_t size) {
        static const char hex[] = "0123456789abcdef";
        char esc[64];
        size_t o = 0;
        for (const char *c = strempty(queue_id); *c; c++) {
                unsigned char u = (unsigned char) *c;
                bool plain = (u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z');
                if (o + (plain ? 1 : 3) >= sizeof(esc))
                        return -ENAMETOOLONG;
                if (plain)
                        esc[o++] = (char) u;
                else {
                        esc[o++] = '_';
                        esc[o++] = hex[u >> 4];
                        esc[o++] = hex[u & 15];
                }
        }
        esc[o] = '\0';
        int n = snprintf(buf, size, "postern-command-%s-%lld-%08x.service", o ? esc : "_", rcpt_id,
                         (unsigned) random);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

static bool env_true(const char *v) {
        return streq(v, "1") || strcaseeq(v, "yes") || strcaseeq(v, "true") || strcaseeq(v, "on");
}

bool local_transient_available(void) {
        const char *o = getenv("POSTERN_TRANSIENT_COMMANDS");
        if (!isempty(o))
                return env_true(o);
        return geteuid() == 0 && sd_booted() > 0 && !isempty(getenv("INVOCATION_ID"));
}

static int bus_reason(char **ret_reason, int r, const sd_bus_error *e, const char *what) {
        if (e && sd_bus_error_is_set(e))
                reason_printf(ret_reason, "%s: %s", what, e->message ? e->message : e->name);
        else
                reason_printf(ret_reason, "%s: %s", what, strerror(-r));
        return r < 0 ? r : -EIO;
}

int local_transient_connect(sd_bus **ret, char **ret_reason) {
        sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);
        if (r < 0)
                return bus_reason(ret_reason, r, NULL, "cannot allocate a bus connection");
        if ((r = sd_bus_set_address(bus, PRIVATE_BUS)) < 0 ||
            (r = sd_bus_negotiate_fds(bus, true)) < 0 ||
            (r = sd_bus_start(bus)) < 0) {
                sd_bus_unref(bus);
                return bus_reason(ret_reason, r, NULL, "cannot connect to the service manager at /run/systemd/private");
        }
        *ret = bus;
        return 0;
}

/* ---- building StartTransientUnit's properties ---- */

static int append_strv_property(sd_bus_message *m, const char *name, char *const *l) {
        int r;
        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", name)) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "as")) < 0 ||
            (r = sd_bus_message_append_strv(m, (char **) l)) < 0 ||
            (r = sd_bus_message_close_container(m)) < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* systemd expands $NAME and ${NAME} in ExecStart= arguments when it runs them; "$$" is its
 * escape for a literal '$', so the shell gets the command exactly as written. */
static char **escape_dollars(char *const *argv) {
        size_t n = 0;
        for (char *const *a = argv; *a; a++)
                n++;
        char **l = calloc(n + 1, sizeof(char *));
        if (!l)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(argv[i]), d = 0;
                for (const char *c = argv[i]; *c; c++)
                        d += *c == '$';
                char *e = malloc(len + d + 1), *o = e;
                if (!e)
                        return strv_free(l);
                for (const char *c = argv[i]; *c; c++) {
                        if (*c == '$')
                                *o++ = '$';
                        *o++ = *c;
                }
                *o = '\0';
                l[i] = e;
        }
        return l;
}

static int append_exec_start(sd_bus_message *m, char *const *argv) {
        _cleanup_strv_free_ char **args = escape_dollars(argv);
        int r;
        if (!args)
                return -ENOMEM;
        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", "ExecStart")) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "a(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'r', "sasb")) < 0 ||
            (r = sd_bus_message_append(m, "s", argv[0])) < 0 ||
            (r = sd_bus_message_append_strv(m, args)) < 0 ||
            (r = sd_bus_message_append(m, "b", 0)) < 0)
                return r;
        for (int i = 0; i < 4; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

static int append_log_fields(sd_bus_message *m, const char *queue_id, long long rcpt_id) {
        char qid[128], rid[64];
        int r;
        snprintf(qid, sizeof(qid), "POSTERN_QUEUE_ID=%s", queue_id);
        snprintf(rid, sizeof(rid), "POSTERN_RECIPIENT_ID=%lld", rcpt_id);
        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", "LogExtraFields")) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "aay")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "ay")) < 0 ||
            (r = sd_bus_message_append_array(m, 'y', qid, strlen(qid))) < 0 ||
            (r = sd_bus_message_append_array(m, 'y', rid, strlen(rid))) < 0)
                return r;
        for (int i = 0; i < 3; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

/* Environment= entries must be NAME=value with a UTF-8 value: other bytes become '?'. */
static char **clean_environment(char *const *envp) {
        size_t n = 0;
        for (char *const *e = envp; e && *e; e++)
                n++;
        char **l = calloc(n + 1, sizeof(char *));
        if (!l)
                return NULL;
        size_t k = 0;
        for (char *const *e = envp; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq || eq == *e)
                        continue;
                char *v = strdup(*e);
                if (!v)
                        return strv_free(l);
                if (!local_transient_utf8_valid(v))
                        for (char *c = v; *c; c++)
                                if ((unsigned char) *c >= 0x80)
                                        *c = '?';
                l[k++] = v;
        }
        return l;
}

static int append_properties(sd_bus_message *m, const LocalTransientCommand *cmd, const char *unit,
                             int stdin_fd, int output_fd, char **ret_reason) {
        static char *const rw_paths[] = { (char *) "-/var/mail", (char *) "-/var/spool/mail",
                                          (char *) "-/home", (char *) "-/root", NULL };
        static char *const native[] = { (char *) "native", NULL };
        char desc[256], rcpt[160], user[64], group[32], wd[4096];
        int r;

        local_transient_printable(cmd->recipient, rcpt, sizeof(rcpt));
        snprintf(desc, sizeof(desc), "Postern command delivery of %s, recipient %lld (%s)",
                 strempty(cmd->queue_id), cmd->rcpt_id, rcpt);
        /* The name (systemd then applies its supplementary groups), unless it would not fit: a
         * truncated name could be another account's. */
        if (cmd->user && local_transient_utf8_valid(cmd->user) && strlen(cmd->user) < sizeof(user))
                copy_str(user, sizeof(user), cmd->user);
        else
                snprintf(user, sizeof(user), "%u", (unsigned) cmd->uid);
        snprintf(group, sizeof(group), "%u", (unsigned) cmd->gid);
        const char *dir = cmd->working_directory;
        if (isempty(dir) || dir[0] != '/' || !local_transient_utf8_valid(dir) || strlen(dir) + 2 > sizeof(wd))
                dir = "/";
        snprintf(wd, sizeof(wd), "-%s", dir);

        _cleanup_strv_free_ char **env = clean_environment(cmd->envp);
        if (!env)
                return -ENOMEM;
        usec_t limit = cmd->time_limit > 0 ? cmd->time_limit : DEFAULT_TIME_LIMIT;

        if ((r = sd_bus_message_append(m, "ss", unit, "fail")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "(sv)")) < 0 ||
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)",
                                       "Description", "s", desc,
                                       "Type", "s", "exec",
                                       "CollectMode", "s", "inactive-or-failed",
                                       "User", "s", user,
                                       "Group", "s", group)) < 0 ||
            (r = append_exec_start(m, cmd->argv)) < 0 ||
            (r = append_strv_property(m, "Environment", env)) < 0 ||
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)",
                                       "WorkingDirectory", "s", wd,
                                       "StandardInputFileDescriptor", "h", stdin_fd,
                                       "StandardOutputFileDescriptor", "h", output_fd,
                                       "StandardErrorFileDescriptor", "h", output_fd)) < 0 ||
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)",
                                       "Slice", "s", "postern-commands.slice",
                                       "RuntimeMaxUSec", "t", (uint64_t) limit,
                                       "KillMode", "s", "control-group",
                                       "KillSignal", "i", SIGKILL,
                                       "TimeoutStopUSec", "t", (uint64_t) (5 * USEC_PER_SEC),
                                       "TasksMax", "t", (uint64_t) 256,
                                       "MemoryMax", "t", (uint64_t) 1024 * 1024 * 1024)) < 0 ||
            (cmd->file_size_limit > 0 &&
             (r = sd_bus_message_append(m, "(sv)(sv)", "LimitFSIZE", "t", cmd->file_size_limit,
                                        "LimitFSIZESoft", "t", cmd->file_size_limit)) < 0) ||
            (r = append_log_fields(m, cmd->queue_id, cmd->rcpt_id)) < 0 ||
            /* The sandbox commands had inside postern-local.service, minus the queue, plus the
             * network: see the file comment. */
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)",
                                       "NoNewPrivileges", "b", 1,
                                       "CapabilityBoundingSet", "t", (uint64_t) 0,
                                       "AmbientCapabilities", "t", (uint64_t) 0,
                                       "ProtectSystem", "s", "strict",
                                       "PrivateTmp", "b", 1,
                                       "PrivateDevices", "b", 1,
                                       "ProtectKernelTunables", "b", 1,
                                       "ProtectKernelModules", "b", 1)) < 0 ||
            (r = append_strv_property(m, "ReadWritePaths", rw_paths)) < 0 ||
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)",
                                       "ProtectKernelLogs", "b", 1,
                                       "ProtectControlGroups", "b", 1,
                                       "ProtectClock", "b", 1,
                                       "ProtectHostname", "b", 1,
                                       "RestrictNamespaces", "t", (uint64_t) 0,
                                       "RestrictRealtime", "b", 1,
                                       "RestrictSUIDSGID", "b", 1,
                                       "LockPersonality", "b", 1,
                                       "MemoryDenyWriteExecute", "b", 1)) < 0 ||
            (r = sd_bus_message_append(m, "(sv)(sv)(sv)",
                                       "RestrictAddressFamilies", "(bas)", 1, 3, "AF_UNIX", "AF_INET", "AF_INET6",
                                       "SystemCallFilter", "(bas)", 1, 1, "@system-service",
                                       "SystemCallErrorNumber", "i", EPERM)) < 0 ||
            (r = append_strv_property(m, "SystemCallArchitectures", native)) < 0 ||
            (r = sd_bus_message_close_container(m)) < 0 ||
            (r = sd_bus_message_append(m, "a(sa(sv))", 0)) < 0)
                return bus_reason(ret_reason, r, NULL, "cannot build the command's unit properties");
        return 0;
}

/* ---- watching the unit ---- */

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Watch *w = userdata;
        uint32_t id;
        const char *path, *unit, *result;
        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) >= 0 && streq(unit, w->unit)) {
                w->job_removed = true;
                copy_str(w->job_result, sizeof(w->job_result), result);
        }
        return 0;
}

static int read_changed(sd_bus_message *m, Watch *w, bool service) {
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *s;
                if ((r = sd_bus_message_read(m, "s", &name)) < 0)
                        return r;
                if (!service && streq(name, "ActiveState")) {
                        if ((r = sd_bus_message_read(m, "v", "s", &s)) < 0)
                                return r;
                        copy_str(w->active_state, sizeof(w->active_state), s);
                } else if (service && streq(name, "Result")) {
                        if ((r = sd_bus_message_read(m, "v", "s", &s)) < 0)
                                return r;
                        copy_str(w->result, sizeof(w->result), s);
                } else if (service && streq(name, "ExecMainCode")) {
                        if ((r = sd_bus_message_read(m, "v", "i", &w->exec_code)) < 0)
                                return r;
                } else if (service && streq(name, "ExecMainStatus")) {
                        if ((r = sd_bus_message_read(m, "v", "i", &w->exec_status)) < 0)
                                return r;
                } else if ((r = sd_bus_message_skip(m, "v")) < 0)
                        return r;
                if ((r = sd_bus_message_exit_container(m)) < 0)
                        return r;
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *iface;
        if (sd_bus_message_read(m, "s", &iface) < 0)
                return 0;
        if (streq(iface, SERVICE_IFACE) || streq(iface, UNIT_IFACE))
                (void) read_changed(m, userdata, streq(iface, SERVICE_IFACE));
        return 0;
}

/* Reads the same properties directly (a fallback for lost signals). */
static int poll_properties(sd_bus *bus, const char *path, Watch *w) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char *load = NULL, *active = NULL, *result = NULL;
        int code = 0, status = 0, r;

        r = sd_bus_get_property_string(bus, SYSTEMD_DEST, path, UNIT_IFACE, "LoadState", &e, &load);
        if (r >= 0 && streq(load, "loaded"))
                r = sd_bus_get_property_string(bus, SYSTEMD_DEST, path, UNIT_IFACE, "ActiveState", &e, &active);
        if (r >= 0 && active)
                r = sd_bus_get_property_string(bus, SYSTEMD_DEST, path, SERVICE_IFACE, "Result", &e, &result);
        if (r >= 0 && result)
                r = sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, SERVICE_IFACE, "ExecMainCode", &e, 'i', &code);
        if (r >= 0 && result)
                r = sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, SERVICE_IFACE, "ExecMainStatus", &e, 'i', &status);
        if (r >= 0) {
                copy_str(w->load_state, sizeof(w->load_state), load);
                if (active && result) {
                        copy_str(w->active_state, sizeof(w->active_state), active);
                        copy_str(w->result, sizeof(w->result), result);
                        w->exec_code = code;
                        w->exec_status = status;
                }
        }
        free(load);
        free(active);
        free(result);
        sd_bus_error_free(&e);
        return r;
}

static bool watch_final(const Watch *w) {
        return w->job_removed && (streq(w->active_state, "inactive") || streq(w->active_state, "failed"));
}

/* Asks the manager to end the unit now (our own deadline passed). */
static int kill_unit(sd_bus *bus, const char *unit, char **ret_reason) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, MANAGER_IFACE, "KillUnit", &e, NULL,
                                   "ssi", unit, "all", SIGKILL);
        if (r >= 0) {
                sd_bus_error_free(&e);
                r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, MANAGER_IFACE, "StopUnit", &e, NULL,
                                       "ss", unit, "replace");
        }
        if (r < 0 && !sd_bus_error_has_name(&e, "org.freedesktop.systemd1.NoSuchUnit"))
                r = bus_reason(ret_reason, r, &e, "cannot stop the command's unit after its time limit");
        else
                r = 0;
        sd_bus_error_free(&e);
        return r;
}

/* ---- running it ---- */

typedef struct Io {
        const char *input;
        size_t input_len, sent;
        int in_fd, out_fd;
        LocalTransientResult *res;
} Io;

static void io_write(Io *io) {
        ssize_t n = write(io->in_fd, io->input + io->sent, io->input_len - io->sent);
        if (n > 0)
                io->sent += (size_t) n;
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || io->sent >= io->input_len)
                io->in_fd = safe_close(io->in_fd);   /* all written, or the command is gone */
}

static void io_read(Io *io) {
        for (;;) {
                char buf[4096];
                ssize_t n = read(io->out_fd, buf, sizeof(buf));
                if (n > 0) {
                        size_t keep = MIN((size_t) n, LOCAL_TRANSIENT_OUTPUT_MAX - io->res->output_len);
                        memcpy(io->res->output + io->res->output_len, buf, keep);
                        io->res->output_len += keep;
                        continue;
                }
                if (n == 0 || (errno != EAGAIN && errno != EINTR))
                        io->out_fd = safe_close(io->out_fd);
                if (n < 0 && errno == EINTR)
                        continue;
                return;
        }
}

/* Waits for the end of the unit, feeding stdin and draining the output. */
static int wait_for_end(sd_bus *bus, const char *path, Watch *w, Io *io, usec_t deadline,
                        bool *ret_killed, char **ret_reason) {
        usec_t next_poll = now_usec(CLOCK_MONOTONIC) + POLL_INTERVAL;
        bool killed = false;
        int r;

        for (;;) {
                while ((r = sd_bus_process(bus, NULL)) > 0)
                        ;
                if (r < 0)
                        return bus_reason(ret_reason, r, NULL, "lost the service manager connection");
                if (watch_final(w))
                        break;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= next_poll) {
                        next_poll = now + POLL_INTERVAL;
                        r = poll_properties(bus, path, w);
                        if (r < 0)
                                return bus_reason(ret_reason, r, NULL, "cannot read the command unit's state");
                        /* The call left signals that arrived meanwhile in the queue: the unit's
                         * last PropertiesChanged/JobRemoved may be among them, and a collected
                         * unit reads as not loaded. Take them before deciding it vanished. */
                        while ((r = sd_bus_process(bus, NULL)) > 0)
                                ;
                        if (r < 0)
                                return bus_reason(ret_reason, r, NULL, "lost the service manager connection");
                        if (!streq(w->load_state, "loaded") && !watch_final(w)) {
                                reason_printf(ret_reason, "the command's unit %s vanished before its end was seen", w->unit);
                                return -ESRCH;
                        }
                        continue;
                }
                if (now >= deadline) {
                        if (killed) {
                                reason_printf(ret_reason, "the command's unit %s did not end after SIGKILL", w->unit);
                                return -ETIMEDOUT;
                        }
                        r = kill_unit(bus, w->unit, ret_reason);
                        if (r < 0)
                                return r;
                        killed = true;
                        deadline = now + KILL_WAIT;
                        continue;
                }

                struct pollfd p[3];
                int np = 0, be = sd_bus_get_events(bus);
                if (be < 0)
                        return bus_reason(ret_reason, be, NULL, "lost the service manager connection");
                p[np++] = (struct pollfd) { .fd = sd_bus_get_fd(bus), .events = (short) be };
                if (io->out_fd >= 0)
                        p[np++] = (struct pollfd) { .fd = io->out_fd, .events = POLLIN };
                if (io->in_fd >= 0)
                        p[np++] = (struct pollfd) { .fd = io->in_fd, .events = POLLOUT };
                usec_t until = MIN(deadline, next_poll);
                uint64_t bus_timeout = 0;
                if (sd_bus_get_timeout(bus, &bus_timeout) > 0 && bus_timeout != UINT64_MAX &&
                    bus_timeout < until)
                        until = bus_timeout > now ? bus_timeout : now;
                int k = poll(p, (nfds_t) np, (int) ((until - now) / USEC_PER_MSEC + 1));
                if (k < 0 && errno != EINTR)
                        return bus_reason(ret_reason, -errno, NULL, "poll");
                for (int i = 1; i < np && k > 0; i++) {
                        if (!p[i].revents)
                                continue;
                        if (p[i].fd == io->out_fd)
                                io_read(io);
                        else if (p[i].fd == io->in_fd)
                                io_write(io);
                }
        }
        if (io->out_fd >= 0)
                io_read(io);   /* what the command wrote last */
        *ret_killed = killed;
        return 0;
}

/* Fills *res from what was seen; an error when systemd could not start the command at all. */
static int interpret(const Watch *w, bool killed, LocalTransientResult *res, char **ret_reason) {
        if (streq(w->result, "resources") || streq(w->result, "start-limit-hit") ||
            streq(w->result, "protocol") || (w->exec_code == 0 && !killed)) {
                reason_printf(ret_reason, "systemd could not start the command's unit %s (result %s, job %s)",
                              w->unit, w->result, w->job_result);
                return -EIO;
        }
        if (!streq(w->job_result, "done") && w->exec_code == CLD_EXITED &&
            w->exec_status >= SYSTEMD_EXIT_FIRST && w->exec_status <= SYSTEMD_EXIT_LAST) {
                reason_printf(ret_reason, "systemd could not set up the command's unit %s (exit status %d, "
                              "see systemd.exec(5))", w->unit, w->exec_status);
                return -EIO;
        }
        res->timed_out = killed || streq(w->result, "timeout");
        res->code = w->exec_code ? w->exec_code : CLD_KILLED;
        res->status = w->exec_code ? w->exec_status : SIGKILL;
        return 0;
}

static void restore_sigpipe(struct sigaction *old) {
        (void) sigaction(SIGPIPE, old, NULL);
}

int local_transient_run(sd_bus *bus, const LocalTransientCommand *cmd, LocalTransientResult *ret,
                        char **ret_reason) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *job_slot = NULL, *props_slot = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_close_ int in_r = -1, in_w = -1, out_r = -1, out_w = -1;
        _cleanup_free_ char *path = NULL;
        LocalTransientResult res = {};
        Watch w = {};
        uint32_t random = 0;
        int fds[2], r;

        if (!cmd->argv || !cmd->argv[0] || cmd->argv[0][0] != '/') {
                reason_printf(ret_reason, "the command's argv[0] must be an absolute path");
                return -EINVAL;
        }
        for (char *const *a = cmd->argv; *a; a++)
                if (!local_transient_utf8_valid(*a)) {
                        reason_printf(ret_reason, "the command is not valid UTF-8, so it cannot be run as a systemd unit");
                        return -EINVAL;
                }
        if (getrandom(&random, sizeof(random), GRND_NONBLOCK) != sizeof(random))
                random = (uint32_t) now_usec(CLOCK_MONOTONIC) ^ ((uint32_t) getpid() << 16);
        r = local_transient_unit_name(cmd->queue_id, cmd->rcpt_id, random, res.unit, sizeof(res.unit));
        if (r < 0) {
                reason_printf(ret_reason, "queue id too long for a unit name");
                return r;
        }
        w.unit = res.unit;
        r = sd_bus_path_encode(SYSTEMD_PATH "/unit", res.unit, &path);
        if (r < 0)
                return bus_reason(ret_reason, r, NULL, "cannot encode the unit's object path");

        if (pipe2(fds, O_CLOEXEC) < 0)
                return bus_reason(ret_reason, -errno, NULL, "cannot make a pipe");
        in_r = fds[0], in_w = fds[1];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return bus_reason(ret_reason, -errno, NULL, "cannot make a pipe");
        out_r = fds[0], out_w = fds[1];
        (void) fcntl(in_w, F_SETFL, O_NONBLOCK);
        (void) fcntl(out_r, F_SETFL, O_NONBLOCK);

        /* Subscribe before starting, so no signal about the unit can be missed. */
        r = sd_bus_match_signal(bus, &job_slot, SYSTEMD_DEST, SYSTEMD_PATH, MANAGER_IFACE, "JobRemoved",
                                on_job_removed, &w);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &props_slot, SYSTEMD_DEST, path,
                                        "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                        on_properties_changed, &w);
        if (r < 0)
                return bus_reason(ret_reason, r, NULL, "cannot subscribe to the service manager's signals");
        /* Direct connections get signals anyway; this makes it explicit (errors do not matter). */
        (void) sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, MANAGER_IFACE, "Subscribe", NULL, NULL, "");

        r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST, SYSTEMD_PATH, MANAGER_IFACE,
                                           "StartTransientUnit");
        if (r < 0)
                return bus_reason(ret_reason, r, NULL, "cannot build StartTransientUnit");
        r = append_properties(m, cmd, res.unit, in_r, out_w, ret_reason);
        if (r < 0)
                return r;
        r = sd_bus_call(bus, m, CALL_TIMEOUT, &e, &reply);
        if (r < 0)
                return bus_reason(ret_reason, r, &e, "StartTransientUnit");
        /* The manager holds its own copies now. */
        in_r = safe_close(in_r);
        out_w = safe_close(out_w);
        if (cmd->input_len == 0)
                in_w = safe_close(in_w);

        /* A command that stops reading its input must not kill us with SIGPIPE. */
        struct sigaction ign = { .sa_handler = SIG_IGN };
        _cleanup_(restore_sigpipe) struct sigaction old_pipe = { .sa_handler = SIG_DFL };
        (void) sigaction(SIGPIPE, &ign, &old_pipe);

        Io io = { .input = cmd->input, .input_len = cmd->input_len, .in_fd = in_w, .out_fd = out_r,
                  .res = &res };
        usec_t limit = cmd->time_limit > 0 ? cmd->time_limit : DEFAULT_TIME_LIMIT;
        bool killed = false;
        r = wait_for_end(bus, path, &w, &io, now_usec(CLOCK_MONOTONIC) + limit + DEADLINE_SLACK,
                         &killed, ret_reason);
        /* io closed what it finished with; the cleanup closes the rest once. */
        in_w = io.in_fd;
        out_r = io.out_fd;
        if (r < 0)
                return r;
        r = interpret(&w, killed, &res, ret_reason);
        if (r < 0)
                return r;
        res.output[res.output_len] = '\0';
        *ret = res;
        return 0;
}
