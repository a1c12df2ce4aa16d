/* local-command.c — "|command" alias destinations, in a delivery child whose effective uid is
 * already the default_privs user's (its real and saved uid are still root, local-child.c).
 *
 * Under systemd (a bus connection from local-child.c, made before the uid switch) the command is
 * not a process of ours at all: it runs as a transient service unit of its own
 * (local-transient.c) as the user, with the network postern-local does not have; the service
 * manager ends it at command_time_limit, and this child waits for its end with a deadline (when
 * this child dies first, the unit still ends at its own time limit).
 *
 * Otherwise (no systemd, a test, a developer running postern-local by hand) the command's process
 * gives up root completely before it runs (real, effective and saved uid and gid all the user's):
 * it is the only process of a delivery that the user may signal, and this child, which the user
 * cannot signal, kills it at command_time_limit. It also gets SIGKILL when this child dies
 * (PR_SET_PDEATHSIG), e.g. killed by the parent at daemon_timeout.
 *
 * Either way the command runs as /bin/sh -c <command>, with the message on stdin
 * ("From sender  date" line, Return-Path:, Delivered-To:, then the content unquoted, as Postfix
 * does for commands), a small environment (HOME USER LOGNAME SHELL PATH SENDER RECIPIENT LOCAL
 * DOMAIN EXTENSION), and command_time_limit (default 1000 s) to finish. Its exit status maps to a
 * DSN per sysexits.h; the first line of its output becomes the diagnostic of a failure. */
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>

#include "local-transient.h"
#include "local.h"

#define OUTPUT_MAX 512
_Static_assert(OUTPUT_MAX == LOCAL_DIAG_MAX && LOCAL_TRANSIENT_OUTPUT_MAX == LOCAL_DIAG_MAX,
               "LocalCommandOutcome.output holds what either runner collects");

static const struct { int code; const char *dsn; const char *text; } sysexits_map[] = {
        { EX_USAGE, "5.3.0", "command line usage error" },
        { EX_DATAERR, "5.6.0", "data format error" },
        { EX_NOINPUT, "5.3.0", "cannot open input" },
        { EX_NOUSER, "5.1.1", "user unknown" },
        { EX_NOHOST, "5.1.2", "host name unknown" },
        { EX_UNAVAILABLE, "5.3.0", "service unavailable" },
        { EX_SOFTWARE, "5.3.0", "internal software error" },
        { EX_OSERR, "4.3.0", "system resource problem" },
        { EX_OSFILE, "5.3.0", "critical OS file missing" },
        { EX_CANTCREAT, "5.2.0", "can't create user output file" },
        { EX_IOERR, "5.3.0", "input/output error" },
        { EX_TEMPFAIL, "4.3.0", "temporary failure" },
        { EX_PROTOCOL, "5.5.0", "remote error in protocol" },
        { EX_NOPERM, "5.7.0", "permission denied" },
        { EX_CONFIG, "5.3.5", "local configuration error" },
};

const char *local_sysexits_dsn(int status, const char **ret_text) {
        for (size_t i = 0; i < ELEMENTSOF(sysexits_map); i++)
                if (sysexits_map[i].code == status) {
                        *ret_text = sysexits_map[i].text;
                        return sysexits_map[i].dsn;
                }
        return NULL;
}

static int format_input(const DeliveryInput *in, StrBuf *out) {
        int r = local_format_envelope(in, out);
        return r < 0 ? r : strbuf_append(out, in->content, in->content_len);
}

char *local_env_entry(const char *name, const char *value) {
        char *e = NULL;
        return asprintf(&e, "%s=%s", name, strempty(value)) < 0 ? NULL : e;
}

char *local_command_first_line(char *output) {
        output[strcspn(output, "\r\n")] = '\0';
        for (char *c = output; *c; c++)
                if ((unsigned char) *c < 32 || (unsigned char) *c > 126)
                        *c = '?';
        return output;
}

/* Maps how the command ended (code CLD_EXITED with its exit status, or CLD_KILLED/CLD_DUMPED
 * with the signal) to a DSN per sysexits.h. */
static void command_result(const char *command, bool timed_out, int code, int status, char *output,
                           DeliveryResult *res) {
        /* The first line of output, printable only, explains a failure. */
        local_command_first_line(output);

        if (timed_out) {
                delivery_result_set(res, "5.3.0", "command time limit exceeded: \"%s\"", command);
                return;
        }
        if (code != CLD_EXITED) {
                delivery_result_set(res, "4.3.0", "command died with signal %d: \"%s\"", status, command);
                return;
        }
        if (status == 0) {
                delivery_result_set(res, "2.0.0", "delivered to command: %s", command);
                return;
        }
        const char *text, *dsn = local_sysexits_dsn(status, &text);
        if (dsn) {
                delivery_result_set(res, dsn, "%s", *output ? output : text);
                return;
        }
        delivery_result_set(res, "5.3.0", "command died with status %d: \"%s\"%s%s", status, command,
                            *output ? ". Command output: " : "", output);
}

/* Runs cmd below this process with its input on stdin; collects up to OUTPUT_MAX bytes of its
 * output. */
static int run_command(const LocalCommand *cmd, LocalCommandOutcome *ret) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0) {
                close(in[0]), close(in[1]);
                return -errno;
        }
        pid_t self = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                close(in[0]), close(in[1]), close(out[0]), close(out[1]);
                return e;
        }
        if (pid == 0) {
                uid_t uid = geteuid();
                gid_t gid = getegid();
                if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(EX_OSERR);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != self)
                        _exit(EX_OSERR);
                struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
                (void) setrlimit(RLIMIT_FSIZE, &unlimited);
                (void) setpgid(0, 0);
                signal(SIGPIPE, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                signal(SIGHUP, SIG_DFL);
                signal(SIGXFSZ, SIG_DFL);
                if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
                    dup2(out[1], STDERR_FILENO) < 0)
                        _exit(EX_OSERR);
                /* Nothing of the daemon (sockets, the queue database) reaches the command. */
                (void) close_range(3, ~0U, 0);
                if (!cmd->working_directory || chdir(cmd->working_directory) < 0)
                        (void) !chdir("/");
                execve(cmd->argv[0], cmd->argv, cmd->envp);
                /* A command that is not there is a configuration problem: keep the mail queued. */
                dprintf(STDOUT_FILENO, "cannot execute %s: %s", cmd->argv[0], strerror(errno));
                _exit(EX_TEMPFAIL);
        }
        close(in[0]);
        close(out[1]);
        (void) fcntl(in[1], F_SETFL, O_NONBLOCK);
        (void) fcntl(out[0], F_SETFL, O_NONBLOCK);

        char output[OUTPUT_MAX + 1];
        size_t have = 0, sent = 0;
        bool timed_out = false;
        long long limit = cmd->time_limit > 0 ? cmd->time_limit : 1000;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + (usec_t) limit * USEC_PER_SEC;
        int wfd = in[1], rfd = out[0];
        if (cmd->input_len == 0)
                wfd = safe_close(wfd);
        while (rfd >= 0 || wfd >= 0) {
                struct pollfd p[2];
                int np = 0;
                if (wfd >= 0)
                        p[np++] = (struct pollfd) { .fd = wfd, .events = POLLOUT };
                if (rfd >= 0)
                        p[np++] = (struct pollfd) { .fd = rfd, .events = POLLIN };
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline) {
                        timed_out = true;
                        break;
                }
                int k = poll(p, (nfds_t) np, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, 60000ULL));
                if (k < 0 && errno != EINTR)
                        break;
                for (int i = 0; i < np && k > 0; i++) {
                        if (!p[i].revents)
                                continue;
                        if (p[i].fd == wfd) {
                                ssize_t n = write(wfd, cmd->input + sent, cmd->input_len - sent);
                                if (n > 0)
                                        sent += (size_t) n;
                                if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent >= cmd->input_len)
                                        wfd = safe_close(wfd);   /* EPIPE: the command stopped reading */
                        } else {
                                char buf[4096];
                                ssize_t n = read(rfd, buf, sizeof(buf));
                                if (n > 0 && have < OUTPUT_MAX) {
                                        size_t c = MIN((size_t) n, OUTPUT_MAX - have);
                                        memcpy(output + have, buf, c);
                                        have += c;
                                }
                                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                        rfd = safe_close(rfd);
                        }
                }
        }
        safe_close(wfd);
        safe_close(rfd);

        /* A command that closed its output (">/dev/null 2>&1") or was stopped by its owner is
         * still held to the deadline: wait for it in small steps, never without one. */
        int status = 0;
        bool reaped = false;
        while (!timed_out) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid) {
                        reaped = true;
                        break;
                }
                if (w < 0 && errno != EINTR)
                        break;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline) {
                        timed_out = true;
                        break;
                }
                struct timespec ts = { 0, (long) MIN(deadline - now, 50 * USEC_PER_MSEC) * 1000 };
                (void) nanosleep(&ts, NULL);
        }
        if (timed_out)
                (void) kill(-pid, SIGKILL), (void) kill(pid, SIGKILL);
        while (!reaped && waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        output[have] = '\0';
        memcpy(ret->output, output, have + 1);
        ret->timed_out = timed_out;
        ret->code = WIFSIGNALED(status) ? CLD_KILLED : CLD_EXITED;
        ret->status = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
        return 0;
}

/* Runs cmd as a transient unit of the service manager (bus connected as root), as the current
 * (effective) user. */
static int run_command_unit(const LocalCommand *cmd, sd_bus *bus, LocalCommandOutcome *ret, char **ret_why) {
        long long limit = cmd->time_limit > 0 ? cmd->time_limit : 1000;
        LocalTransientCommand tc = {
                .queue_id = cmd->queue_id, .rcpt_id = cmd->rcpt_id, .recipient = cmd->recipient,
                .user = cmd->user, .uid = geteuid(), .gid = getegid(),
                .argv = cmd->argv, .envp = cmd->envp, .working_directory = cmd->working_directory,
                .input = cmd->input, .input_len = cmd->input_len,
                .time_limit = (usec_t) limit * USEC_PER_SEC,
        };
        LocalTransientResult r;
        int k = local_transient_run(bus, &tc, &r, ret_why);
        if (k < 0)
                return k;
        ret->timed_out = r.timed_out;
        ret->code = r.code;
        ret->status = r.status;
        memcpy(ret->output, r.output, sizeof(ret->output));
        return 0;
}

int local_command_run(const LocalCommand *cmd, sd_bus *bus, LocalCommandOutcome *ret, char **ret_why) {
        *ret = (LocalCommandOutcome) {};
        *ret_why = NULL;
        return bus ? run_command_unit(cmd, bus, ret, ret_why) : run_command(cmd, ret);
}

void local_command_deliver(const LocalSettings *s, const DeliveryInput *in, const char *command,
                           sd_bus *bus, DeliveryResult *res) {
        _cleanup_strbuf_ StrBuf input = STRBUF_INIT;
        _cleanup_free_ char *local = NULL, *ext = NULL;
        struct passwd *pw = getpwuid(geteuid());
        const char *at = strrchr(in->delivered_to, '@');
        const char *delim = s->recipient_delimiter;

        if (format_input(in, &input) < 0) {
                delivery_result_set(res, "4.3.0", "out of memory");
                return;
        }
        local = at ? strndup(in->delivered_to, (size_t) (at - in->delivered_to)) : strdup(in->delivered_to);
        if (!local) {
                delivery_result_set(res, "4.3.0", "out of memory");
                return;
        }
        if (!isempty(delim) && local[0]) {
                char *d = local + 1 + strcspn(local + 1, delim);
                if (*d) {
                        ext = strdup(d + 1);
                        *d = '\0';
                }
        }
        const char *home = pw ? pw->pw_dir : "/";
        char *envp[] = {
                local_env_entry("HOME", home),
                local_env_entry("USER", pw ? pw->pw_name : ""),
                local_env_entry("LOGNAME", pw ? pw->pw_name : ""),
                local_env_entry("SHELL", "/bin/sh"),
                local_env_entry("PATH", "/usr/bin:/bin"),
                local_env_entry("SENDER", in->sender),
                local_env_entry("RECIPIENT", in->delivered_to),
                local_env_entry("LOCAL", local),
                local_env_entry("DOMAIN", at ? at + 1 : ""),
                local_env_entry("EXTENSION", ext),
                NULL,
        };
        bool ok = true;
        for (size_t i = 0; i + 1 < ELEMENTSOF(envp); i++)
                ok = ok && envp[i];
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) command, NULL };
        LocalCommand cmd = {
                .argv = argv, .envp = envp, .working_directory = home,
                .input = input.data, .input_len = input.len, .time_limit = s->command_time_limit,
                .queue_id = in->queue_id, .rcpt_id = in->rcpt_id, .recipient = in->delivered_to,
                .user = pw ? pw->pw_name : NULL,
        };
        LocalCommandOutcome o;
        _cleanup_free_ char *why = NULL;
        int r = ok ? local_command_run(&cmd, bus, &o, &why) : -ENOMEM;
        if (r < 0)
                delivery_result_set(res, "4.3.0", "cannot run command: %s", why ? why : strerror(-r));
        else
                command_result(command, o.timed_out, o.code, o.status, o.output, res);
        for (size_t i = 0; i + 1 < ELEMENTSOF(envp); i++)
                free(envp[i]);
}
