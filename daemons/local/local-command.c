/* local-command.c — "|command" alias destinations and mailbox_command deliveries, in a delivery
 * child whose effective uid is already the default_privs user's (an alias) or the recipient's
 * (mailbox_command; default_privs for root) — its real and saved uid are still root
 * (local-child.c).
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
 * Either way the command runs as Postfix runs it (local_command_argv()): with local_command_shell
 * when that is set (its words, then the command as one argument), else directly (split on
 * blanks, no shell) when it has no shell syntax and its program is found, else /bin/sh -c. The
 * message is on stdin ("From sender  date" line, Return-Path:, X-Original-To:, Delivered-To:,
 * then the content unquoted, as Postfix does for commands), with Postfix's environment: HOME,
 * USER and LOGNAME (the bare recipient name), SHELL, SENDER, RECIPIENT, LOCAL (the whole local
 * part), DOMAIN, EXTENSION (only when there is one), ORIGINAL_RECIPIENT (X-Original-To's value:
 * the client's ORCPT address, else the envelope recipient; absent with
 * enable_original_recipient = no), CLIENT_HOSTNAME, CLIENT_ADDRESS, CLIENT_HELO,
 * CLIENT_PROTOCOL and SASL_USERNAME (each only when known), PATH=/usr/bin:/bin; every value's
 * characters outside command_expansion_filter become '_'. command_time_limit (default 1000 s)
 * bounds it, mailbox_size_limit the files it writes (RLIMIT_FSIZE). Its exit status maps to a
 * DSN per sysexits.h; the first line of its output becomes the diagnostic of a failure. */
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
                rlim_t fsize = cmd->file_size_limit > 0 ? (rlim_t) cmd->file_size_limit : RLIM_INFINITY;
                struct rlimit rl;
                /* The delivery child lowered only the soft limit: set both (raising the soft limit
                 * back up to the hard one when there is no limit). */
                if (getrlimit(RLIMIT_FSIZE, &rl) == 0) {
                        rl.rlim_cur = MIN(fsize, rl.rlim_max);
                        if (fsize != RLIM_INFINITY)
                                rl.rlim_max = rl.rlim_cur;
                        (void) setrlimit(RLIMIT_FSIZE, &rl);
                }
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
                .file_size_limit = cmd->file_size_limit > 0 ? (uint64_t) cmd->file_size_limit : 0,
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

char *local_command_path(const char *program) {
        if (strchr(program, '/'))
                return strdup(program);
        const char *dirs = LOCAL_COMMAND_PATH;
        while (*dirs) {
                size_t n = strcspn(dirs, ":");
                char *path = NULL;
                struct stat st;
                if (asprintf(&path, "%.*s/%s", (int) n, dirs, program) < 0)
                        return NULL;
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
                        return path;
                free(path);
                dirs += n + (dirs[n] == ':');
        }
        return NULL;
}

/* Appends the blank-separated words of text to *l. */
static int list_push_words(char ***l, const char *text) {
        for (const char *p = text;;) {
                p += strspn(p, " \t");
                if (!*p)
                        return 0;
                size_t n = strcspn(p, " \t");
                if (strv_consume(l, strndup(p, n)) < 0)
                        return -ENOMEM;
                p += n;
        }
}

/* Characters that never need a shell (Postfix runs a command without one when it has no others). */
#define COMMAND_PLAIN_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t-_/.,:@=+%"

char **local_command_argv(const char *shell, const char *command) {
        _cleanup_strv_free_ char **argv = NULL;
        bool plain = !isempty(shell) || command[strspn(command, COMMAND_PLAIN_CHARS)] == '\0';

        if (plain) {
                if (list_push_words(&argv, isempty(shell) ? command : shell) < 0 ||
                    (!isempty(shell) && strv_consume(&argv, strdup(command)) < 0))
                        return NULL;
        }
        if (argv && argv[0]) {
                char *path = local_command_path(argv[0]);
                if (path) {
                        free(argv[0]);
                        argv[0] = path;
                        return TAKE_PTR(argv);
                }
                if (!isempty(shell))
                        return TAKE_PTR(argv);   /* fails to execute: "cannot execute ..." defers */
        }
        /* Shell syntax, a shell built-in, or a program that is not found: the shell decides. */
        argv = strv_free(argv);
        if (strv_consume(&argv, strdup("/bin/sh")) < 0 || strv_consume(&argv, strdup("-c")) < 0 ||
            strv_consume(&argv, strdup(command)) < 0)
                return NULL;
        return TAKE_PTR(argv);
}

/* Adds NAME=value to env (value == NULL or "" with optional: nothing), its characters outside
 * filter replaced by '_' as Postfix censors exported data. */
static int env_add(char ***env, const char *name, const char *value, bool optional, const char *filter) {
        if (optional && isempty(value))
                return 0;
        char *e = local_env_entry(name, value);
        if (!e)
                return -ENOMEM;
        for (char *c = e + strlen(name) + 1; *(c += strspn(c, strempty(filter))); c++)
                *c = '_';
        return strv_consume(env, e);
}

/* Postfix's environment for the command of t (see the top of this file). */
static char **command_environment(const LocalSettings *s, const Target *t, const DeliveryInput *in) {
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *local = NULL, *user = NULL;
        const char *f = s->command_expansion_filter;
        const char *rcpt = in->delivered_to, *at = strrchr(rcpt, '@');
        const QueueMessage *m = in->msg;
        struct passwd *pw = t->mailbox_command ? NULL : getpwuid(geteuid());
        const char *home = t->mailbox_command ? t->home : pw ? pw->pw_dir : "/";
        const char *shell = t->mailbox_command ? t->shell : "/bin/sh";

        local = at ? strndup(rcpt, (size_t) (at - rcpt)) : strdup(rcpt);
        if (!local)
                return NULL;
        size_t base = local_base_length(s, local);
        if (!(user = strndup(local, base)))
                return NULL;
        const char *ext = local[base] ? local + base + 1 : NULL;
        if (env_add(&env, "HOME", home, false, f) < 0 || env_add(&env, "LOGNAME", user, false, f) < 0 ||
            env_add(&env, "USER", user, false, f) < 0 || env_add(&env, "SENDER", in->sender, false, f) < 0 ||
            env_add(&env, "RECIPIENT", rcpt, false, f) < 0 || env_add(&env, "LOCAL", local, false, f) < 0 ||
            env_add(&env, "SHELL", isempty(shell) ? "/bin/sh" : shell, false, f) < 0 ||
            env_add(&env, "DOMAIN", at ? at + 1 : NULL, true, f) < 0 ||
            env_add(&env, "EXTENSION", ext, true, f) < 0 ||
            /* Postfix exports its original recipient only when it keeps one. */
            env_add(&env, "ORIGINAL_RECIPIENT", in->original_to, true, f) < 0 ||
            env_add(&env, "CLIENT_HOSTNAME", m ? m->client_name : NULL, true, f) < 0 ||
            env_add(&env, "CLIENT_ADDRESS", m ? m->client_address : NULL, true, f) < 0 ||
            env_add(&env, "CLIENT_HELO", m ? m->helo : NULL, true, f) < 0 ||
            env_add(&env, "CLIENT_PROTOCOL", m ? m->protocol : NULL, true, f) < 0 ||
            env_add(&env, "SASL_USERNAME", m ? m->sasl_user : NULL, true, f) < 0 ||
            strv_consume(&env, strdup("PATH=" LOCAL_COMMAND_PATH)) < 0)
                return NULL;
        return TAKE_PTR(env);
}

void local_command_deliver(const LocalSettings *s, const Target *t, const DeliveryInput *in, const char *command,
                           sd_bus *bus, DeliveryResult *res) {
        _cleanup_strbuf_ StrBuf input = STRBUF_INIT;
        _cleanup_strv_free_ char **envp = NULL, **argv = NULL;
        struct passwd *pw = getpwuid(geteuid());

        if (format_input(in, &input) < 0 || !(envp = command_environment(s, t, in)) ||
            !(argv = local_command_argv(s->local_command_shell, command))) {
                delivery_result_set(res, "4.3.0", "out of memory");
                return;
        }
        LocalCommand cmd = {
                .argv = argv, .envp = envp,
                .working_directory = t->mailbox_command ? t->home : pw ? pw->pw_dir : "/",
                .input = input.data, .input_len = input.len, .time_limit = s->command_time_limit,
                .file_size_limit = s->mailbox_size_limit,
                .queue_id = in->queue_id, .rcpt_id = in->rcpt_id, .recipient = in->delivered_to,
                .user = pw ? pw->pw_name : NULL,
        };
        LocalCommandOutcome o;
        _cleanup_free_ char *why = NULL;
        int r = local_command_run(&cmd, bus, &o, &why);
        if (r < 0)
                delivery_result_set(res, "4.3.0", "cannot run command: %s", why ? why : strerror(-r));
        else
                command_result(command, o.timed_out, o.code, o.status, o.output, res);
}
