/* local-pipe.c — pipe(8) deliveries of postern-local (the "pipe" socket).
 *
 * At settings load the pipe entries of $config_directory/master.cf are read (local-pipe-spec.c):
 * a wrong entry is logged once and kept with its error, so that mail for it is deferred with the
 * reason instead of going elsewhere. The time limit is <transport>_time_limit, else
 * command_time_limit.
 *
 * In a delivery child (local-child.c: marker locks taken, effective uid and groups switched to
 * user=) local_pipe_deliver() runs the command once for the recipients of one message: argv
 * expanded word by word (no shell), the message on stdin as the flags ask, a small environment
 * (HOME USER LOGNAME SHELL PATH), through local_command_run() (a transient unit under systemd,
 * else a process that gives up root). Its end is mapped as pipe(8) does: 0 delivered, a
 * sysexits.h status per local_sysexits_dsn() (EX_TEMPFAIL defers), any other status bounces
 * (5.3.0), a signal or the time limit defers (4.3.0); the command's first output line goes into
 * the diagnostic. */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "local.h"
#include "conf/params.h"
#include "log/log.h"

int local_pipe_settings_load(Conf *c, LocalSettings *s) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        MasterCf m = {};
        const char *dir = conf_get(c, "config_directory");

        if (asprintf(&path, "%s/master.cf", strempty(dir)) < 0)
                return -ENOMEM;
        int r = master_cf_load(path, &m, &err);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                /* qmgr reports it too; pipe transports are then unknown here, mail to them deferred */
                log_error("%s", err ? err : strerror(-r));
                return 0;
        }
        size_t n = 0;
        for (size_t i = 0; i < m.n; i++)
                n += m.entries[i].kind == MASTER_TRANSPORT && streq(m.entries[i].command, "pipe");
        if (n > 0 && !(s->pipes = calloc(n, sizeof(PipeTransport)))) {
                master_cf_done(&m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m.n; i++) {
                const MasterEntry *e = &m.entries[i];
                if (e->kind != MASTER_TRANSPORT || !streq(e->command, "pipe"))
                        continue;
                PipeTransport *t = &s->pipes[s->n_pipes++];
                _cleanup_free_ char *why = NULL, *tl = NULL;
                if (!(t->name = strdup(e->service)) || asprintf(&tl, "%s_time_limit", e->service) < 0) {
                        master_cf_done(&m);
                        return -ENOMEM;
                }
                r = pipe_spec_parse(e, &t->spec, &why);
                if (r == -ENOMEM) {
                        master_cf_done(&m);
                        return r;
                }
                if (r < 0) {
                        if (asprintf(&t->error, "%s:%u: %s: %s", path, e->line, e->service, strna(why)) < 0)
                                t->error = NULL;
                        log_error("%s", strna(t->error));
                }
                t->time_limit = s->command_time_limit;
                const char *v = conf_get(c, tl);
                long long sec;
                if (v && (param_parse_time(v, 's', &sec) < 0 || sec <= 0))
                        log_warning("%s = %s: not a time; using command_time_limit", tl, v);
                else if (v)
                        t->time_limit = sec;
        }
        master_cf_done(&m);
        return 0;
}

void local_pipe_settings_done(LocalSettings *s) {
        for (size_t i = 0; i < s->n_pipes; i++) {
                free(s->pipes[i].name);
                free(s->pipes[i].error);
                pipe_spec_done(&s->pipes[i].spec);
        }
        free(s->pipes);
        s->pipes = NULL;
        s->n_pipes = 0;
}

const PipeTransport *local_pipe_find(const LocalSettings *s, const char *name) {
        for (size_t i = 0; i < s->n_pipes; i++)
                if (streq(s->pipes[i].name, name))
                        return &s->pipes[i];
        return NULL;
}

static void set_all(DeliveryResult *res, size_t n, const char *dsn, const char *diag) {
        for (size_t i = 0; i < n; i++)
                delivery_result_set(&res[i], dsn, "%s", diag);
}

/* Gives the n recipients res[0]'s result. */
static void copy_first(DeliveryResult *res, size_t n) {
        for (size_t i = 1; i < n; i++)
                res[i] = res[0];
}

static void pipe_result(const PipeTransport *t, const char *argv0, LocalCommandOutcome *o, size_t n,
                        DeliveryResult *res) {
        const char *out = local_command_first_line(o->output);
        const char *sep = *out ? ". Command output: " : "";

        if (o->timed_out)
                delivery_result_set(&res[0], "4.3.0", "command time limit exceeded: \"%s\"%s%s", argv0, sep, out);
        else if (o->code != CLD_EXITED)
                delivery_result_set(&res[0], "4.3.0", "command died with signal %d: \"%s\"%s%s", o->status,
                                    argv0, sep, out);
        else if (o->status == 0)
                delivery_result_set(&res[0], "2.0.0", "delivered via %s service%s%s%s", t->name,
                                    *out ? " (" : "", out, *out ? ")" : "");
        else {
                const char *text, *dsn = local_sysexits_dsn(o->status, &text);
                if (dsn)
                        delivery_result_set(&res[0], dsn, "%s", *out ? out : text);
                else
                        delivery_result_set(&res[0], "5.3.0", "command died with status %d: \"%s\"%s%s",
                                            o->status, argv0, sep, out);
        }
        copy_first(res, n);
}

/* A command named without a "/" is looked for in LOCAL_COMMAND_PATH (Postfix runs pipe(8)
 * commands with execvp() and no PATH of their own: the system default). */
#define PIPE_COMMAND_PATH LOCAL_COMMAND_PATH

void local_pipe_deliver(const LocalSettings *s, const PipeTransport *t, const DeliveryInput *in, size_t n, sd_bus *bus,
                        DeliveryResult *res) {
        const PipeSpec *p = &t->spec;
        const char *rcpts[LOCAL_BATCH_MAX], *origs[LOCAL_BATCH_MAX];
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *why = NULL;
        _cleanup_(strbuf_donep) StrBuf input = STRBUF_INIT;
        const QueueMessage *m = in[0].msg;
        char stamp[64];
        struct tm tm;
        time_t now = time(NULL);

        if (t->error)
                return set_all(res, n, "4.3.5", t->error);
        if (n > 1 && (p->flags & (PIPE_F_DELIVERED | PIPE_F_ORIG_TO))) {
                char diag[256];
                snprintf(diag, sizeof(diag), "mail system configuration error: flags D and O need "
                         "%s_destination_recipient_limit = 1", t->name);
                return set_all(res, n, "4.3.5", diag);
        }
        if (p->size_limit > 0 && in[0].content_len > (size_t) p->size_limit)
                return set_all(res, n, "5.2.3", "message too large for the command (size= limit)");
        for (size_t i = 0; i < n; i++) {
                rcpts[i] = in[i].recipient;
                origs[i] = in[i].orig_recipient;
        }
        PipeVars v = {
                .sender = in[0].sender, .recipients = rcpts, .orig_recipients = origs, .n_recipients = n,
                .nexthop = in[0].nexthop, .recipient_delimiter = s->recipient_delimiter, .queue_id = in[0].queue_id,
                .size = m ? m->size : in[0].content_len,
                .client_address = m ? m->client_address : NULL, .client_hostname = m ? m->client_name : NULL,
                .client_helo = m ? m->helo : NULL, .client_protocol = m ? m->protocol : NULL,
                .sasl_username = m ? m->sasl_user : NULL,
        };
        int r = pipe_argv_expand(p, &v, &argv, &why);
        if (r < 0)
                return set_all(res, n, "4.3.5", why ? why : "out of memory");
        char *path = local_command_path(argv[0]);
        if (!path) {
                delivery_result_set(&res[0], "4.3.0", "cannot execute %s: not found in %s", argv[0],
                                    PIPE_COMMAND_PATH);
                return copy_first(res, n);
        }
        free(argv[0]);
        argv[0] = path;   /* the transient unit wants an absolute path too */
        if (!asctime_r(localtime_r(&now, &tm), stamp))
                snprintf(stamp, sizeof(stamp), "Thu Jan  1 00:00:00 1970\n");
        stamp[strcspn(stamp, "\n")] = '\0';
        if (pipe_format_input(p, &v, in[0].content, in[0].content_len, stamp, &input) < 0)
                return set_all(res, n, "4.3.0", "out of memory");

        struct passwd *pw = getpwuid(geteuid());
        const char *home = pw ? pw->pw_dir : "/";
        char *envp[] = {
                local_env_entry("HOME", home),
                local_env_entry("USER", pw ? pw->pw_name : p->user),
                local_env_entry("LOGNAME", pw ? pw->pw_name : p->user),
                local_env_entry("SHELL", pw && !isempty(pw->pw_shell) ? pw->pw_shell : "/bin/sh"),
                local_env_entry("PATH", PIPE_COMMAND_PATH),
                NULL,
        };
        bool ok = true;
        for (size_t i = 0; i + 1 < ELEMENTSOF(envp); i++)
                ok = ok && envp[i];
        LocalCommand cmd = {
                .argv = argv, .envp = envp, .working_directory = home,
                .input = input.data, .input_len = input.len, .time_limit = t->time_limit,
                .queue_id = in[0].queue_id, .rcpt_id = in[0].rcpt_id, .recipient = in[0].recipient,
                .user = pw ? pw->pw_name : p->user,
        };
        LocalCommandOutcome o;
        _cleanup_free_ char *fail = NULL;
        r = ok ? local_command_run(&cmd, bus, &o, &fail) : -ENOMEM;
        if (r < 0) {
                delivery_result_set(&res[0], "4.3.0", "cannot run command %s: %s", argv[0],
                                    fail ? fail : strerror(-r));
                copy_first(res, n);
        } else
                pipe_result(t, argv[0], &o, n, res);
        for (size_t i = 0; i + 1 < ELEMENTSOF(envp); i++)
                free(envp[i]);
}
