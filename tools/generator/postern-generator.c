/* postern-generator.c — the systemd generator (systemd.generator(7)) that makes master.cf's
 * listeners true: at boot and on `systemctl daemon-reload` it reads main.cf (the daemons' path:
 * $POSTERN_CONFIG, else /etc/postern/main.cf) and $config_directory/master.cf and writes into
 * its output directory (argv[1], /run/systemd/generator):
 *   - postern-smtpd-<fd name>.socket for each inet smtpd entry that is not one of the shipped
 *     sockets, wanted by postern.target (postern.target.wants/ link);
 *   - postern-smtpd.service.d/10-master-cf.conf adding those sockets to Sockets=, Wants=, After=;
 *   - <shipped socket>.d/10-master-cf.conf when master.cf's host or inet_interfaces narrows the
 *     addresses of postern-smtpd.socket, -submission.socket or -submissions.socket;
 *   - <service>.d/20-access.conf with LoadCredential= for TLS files the postern user cannot read
 *     and ReadWritePaths= for directories main.cf moved (generator-access.c) — also without a
 *     master.cf.
 * Then the same for each instance (postern@NAME.target) whose /etc/postern-NAME/main.cf exists,
 * with @NAME in every unit name: postern-smtpd-<fd name>@NAME.socket (also for the port 25, 587
 * and 465 entries, as an instance has no shipped port sockets), wanted by postern@NAME.target,
 * and drop-ins for postern-smtpd@NAME.service etc. The instances are the directories beside the
 * default one's configuration directory: /etc/postern-NAME beside /etc/postern (or beside the
 * directory of $POSTERN_CONFIG, which only tests set: a generator's environment is empty).
 * What it cannot express is logged (stderr, which systemd sends to the kernel log and the journal)
 * and reported by `posternctl check`. The classification is common/conf/master-inet.c, the texts
 * generator-units.c. Generator rules: no network, no daemons,
 * fast, and the exit code is always 0 so that boot never fails because of it. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "generator-access.h"

#include "generator-units.h"
#include "conf/conf.h"

static void say(const char *fmt, ...) _printf_(1, 2);
static void say(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("postern-generator: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

/* Writes text to dir/name (dir/sub/name when sub is non-NULL, creating sub). */
static int write_file(const char *dir, const char *sub, const char *name, const char *text) {
        _cleanup_free_ char *d = NULL, *path = NULL;
        if (asprintf(&d, "%s%s%s", dir, sub ? "/" : "", sub ? sub : "") < 0 ||
            asprintf(&path, "%s/%s", d, name) < 0)
                return -ENOMEM;
        if (sub && mkdir(d, 0755) < 0 && errno != EEXIST)
                return say("%s: %m", d), -errno;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return say("%s: %m", path), -errno;
        size_t len = strlen(text);
        for (size_t done = 0; done < len;) {
                ssize_t w = write(fd, text + done, len - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return say("%s: %m", path), -errno;
                done += (size_t) w;
        }
        return 0;
}

static int want(const char *dir, const char *instance, const char *unit) {
        _cleanup_free_ char *wants = NULL, *link = NULL, *target = NULL;
        if (asprintf(&wants, "%s/postern%s%s.target.wants", dir, instance ? "@" : "", strempty(instance)) < 0 ||
            asprintf(&link, "%s/%s", wants, unit) < 0 ||
            asprintf(&target, "../%s", unit) < 0)
                return -ENOMEM;
        if (mkdir(wants, 0755) < 0 && errno != EEXIST)
                return say("%s: %m", wants), -errno;
        if (symlink(target, link) < 0 && errno != EEXIST)
                return say("%s: %m", link), -errno;
        return 0;
}

/* Whether the daemons can open path themselves, so that it needs no LoadCredential=: true when
 * the user they run as (mail_owner, postern in the units) can read it — checked by a child that
 * takes that user's ids, so directory permissions and groups count as they will — and also when
 * root cannot read it either (a missing file: a credential systemd cannot load would stop the
 * service from starting at all, while smtpd only reports it and goes without TLS). When it
 * cannot be found out (no such user, not root), the answer is true as well. */
static bool daemon_user_can_read(const char *path, void *ud) {
        const char *user = ud;
        struct passwd *pw = getpwnam(user);
        if (!pw || geteuid() != 0 || access(path, R_OK) < 0)
                return true;
        pid_t pid = fork();
        if (pid < 0)
                return true;
        if (pid == 0) {
                if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
                        _exit(2);
                _exit(access(path, R_OK) == 0 ? 0 : 1);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return true;
        return !(WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

static int generate_access(const char *dir, Conf *c, const char *source, const char *instance) {
        GeneratorDropins d = {};
        int r = generator_access_dropins(c, source, daemon_user_can_read, (void *) conf_get(c, "mail_owner"), &d);
        for (size_t i = 0; r >= 0 && i < d.n; i++) {
                _cleanup_free_ char *sub = NULL, *unit = NULL;
                r = generator_instance_unit(d.v[i].unit, instance, &unit);
                if (r >= 0 && asprintf(&sub, "%s.d", unit) < 0)
                        r = -ENOMEM;
                else
                        r = write_file(dir, sub, GENERATOR_ACCESS_DROPIN, d.v[i].text);
        }
        generator_dropins_done(&d);
        return r;
}

static int generate(const char *dir, Conf *c, const char *source, const MasterCf *m, const char *instance) {
        _cleanup_strv_free_ char **interfaces = conf_get_list(c, NULL, "inet_interfaces");
        if (!interfaces)
                return -ENOMEM;
        MasterInetPlan p = {};
        int r = master_inet_plan(m, interfaces, conf_get(c, "inet_protocols"), &p);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < p.n; i++) {
                const MasterInet *l = &p.v[i];
                _cleanup_free_ char *text = NULL, *sub = NULL, *unit = NULL;
                if (l->note)
                        say("%s:%u: %s: %s%s", source, l->entry->line, l->entry->service,
                            l->map == MASTER_INET_SKIP ? "skipped: " : "", l->note);
                r = generator_listener_unit(l, instance, &unit);
                if (r >= 0 && unit) {
                        r = generator_socket_unit(l, source, instance, &text);
                        if (r >= 0)
                                r = write_file(dir, NULL, unit, text);
                        if (r >= 0)
                                r = want(dir, instance, unit);
                } else if (r >= 0 && l->map == MASTER_INET_SHIPPED) {
                        r = generator_socket_dropin(l, source, &text);
                        if (r >= 0 && text && asprintf(&sub, "%s.d", l->unit) < 0)
                                r = -ENOMEM;
                        if (r >= 0 && text)
                                r = write_file(dir, sub, GENERATOR_DROPIN, text);
                }
        }
        _cleanup_free_ char *service = NULL, *sub = NULL;
        if (r >= 0)
                r = generator_service_dropin(&p, source, instance, &service);
        if (r >= 0 && service && asprintf(&sub, "postern-smtpd%s%s.service.d", instance ? "@" : "", strempty(instance)) < 0)
                r = -ENOMEM;
        if (r >= 0 && service)
                r = write_file(dir, sub, GENERATOR_DROPIN, service);
        master_inet_plan_done(&p);
        return r;
}

/* The units of one instance: the default one (path NULL: $POSTERN_CONFIG or the default main.cf,
 * instance NULL) or NAME's (path /etc/postern-NAME/main.cf). */
static void generate_instance(const char *dir, const char *path, const char *instance) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **messages = NULL;
        int r = conf_load(path, &c, &messages);
        if (r < 0) {
                for (char **m = messages; m && *m; m++)
                        say("%s", *m);
                say("%s has errors; master.cf's listeners are not set up (the shipped units apply)",
                    path ? path : "main.cf");
                return;
        }
        r = generate_access(dir, c, conf_path(c), instance);
        if (r < 0)
                say("writing drop-ins to %s failed: %s", dir, strerror(-r));
        _cleanup_free_ char *source = NULL, *err = NULL;
        if (asprintf(&source, "%s/master.cf", strempty(conf_get(c, "config_directory"))) < 0)
                return say("out of memory");
        MasterCf m = {};
        r = master_cf_load(source, &m, &err);
        if (r == -ENOENT)
                return;   /* no master.cf: today's units, unchanged */
        if (r < 0)
                return say("%s; its listeners are not set up (the shipped units apply)", err ? err : strerror(-r));
        r = generate(dir, c, source, &m, instance);
        if (r < 0)
                say("writing units to %s failed: %s", dir, strerror(-r));
        master_cf_done(&m);
}

/* Every instance: each directory <config dir>-NAME with a main.cf next to the default instance's
 * configuration directory (/etc/postern-NAME beside /etc/postern). */
static void generate_instances(const char *dir, const char *config_dir) {
        _cleanup_free_ char *copy = strdup(config_dir), *copy2 = strdup(config_dir);
        if (!copy || !copy2)
                return say("out of memory");
        const char *parent = dirname(copy), *prefix = basename(copy2);
        DIR *d = opendir(parent);
        if (!d)
                return;
        for (struct dirent *e; (e = readdir(d));) {
                const char *name = startswith(e->d_name, prefix);
                if (!name || name[0] != '-' || !conf_instance_name_valid(name + 1))
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s/main.cf", parent, e->d_name) < 0) {
                        say("out of memory");
                        break;
                }
                if (access(path, F_OK) == 0)
                        generate_instance(dir, path, name + 1);
        }
        closedir(d);
}

int main(int argc, char *argv[]) {
        if (argc != 2 && argc != 4) {
                say("usage: postern-generator NORMAL-DIR [EARLY-DIR LATE-DIR]");
                return 0;
        }
        generate_instance(argv[1], NULL, NULL);
        /* the default instance's configuration directory: $POSTERN_CONFIG's (tests), else ours */
        const char *e = getenv("POSTERN_CONFIG");
        _cleanup_free_ char *copy = e ? strdup(e) : NULL;
        generate_instances(argv[1], copy ? dirname(copy) : POSTERN_SYSCONFDIR);
        return 0;
}
