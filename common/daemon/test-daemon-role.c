/* test-daemon-role.c — daemon_role_run() with a test role: a missing required socket stops the
 * run before any settings are loaded; a passed one is handed over; at SIGHUP a restart parameter
 * keeps its value, the others apply, and a reload whose load fails changes nothing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon-role.h"
#include "../basic/tests.h"

typedef struct TestSettings {
        char *queue_directory;
        char *myhostname;
} TestSettings;

typedef struct TestRole {
        Daemon *daemon;
        int fd;
        TestSettings s;
        unsigned loads, applies, stops;
        unsigned step;
        sd_event_source *timer;
} TestRole;

static char config_path[] = "/tmp/test-daemon-role-XXXXXX";

static void write_config(const char *queue_directory, const char *myhostname) {
        FILE *f = fopen(config_path, "we");
        CHECK(f);
        fprintf(f, "queue_directory = %s\nmyhostname = %s\n", queue_directory, myhostname);
        CHECK(fclose(f) == 0);
}

static int load(void *userdata, Conf *c, void *ret) {
        TestRole *t = userdata;
        TestSettings *s = ret;
        t->loads++;
        if (streq(conf_get(c, "myhostname"), "fail.example"))
                return -EINVAL;
        s->queue_directory = strdup(conf_get(c, "queue_directory"));
        s->myhostname = strdup(conf_get(c, "myhostname"));
        CHECK(s->queue_directory && s->myhostname);
        return 0;
}

static void done(void *p) {
        TestSettings *s = p;
        free(s->queue_directory);
        free(s->myhostname);
        *s = (TestSettings) {};
}

static int apply(void *userdata, void *old) {
        TestRole *t = userdata;
        t->applies++;
        CHECK(old);
        return 0;
}

static int open_socket(void *userdata, const DaemonSocket *socket, int fd) {
        TestRole *t = userdata;
        CHECK_STR(socket->name, "test");
        t->fd = fd;
        return 0;
}

/* Each step checks what the previous SIGHUP did, then sends the next one. */
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        TestRole *t = userdata;
        switch (t->step++) {
        case 0:
                write_config("/tmp/elsewhere", "new.example");
                break;
        case 1:   /* queue_directory kept, myhostname applied */
                CHECK_INT(t->loads, 2);
                CHECK_INT(t->applies, 1);
                CHECK_STR(t->s.queue_directory, "/tmp/queue");
                CHECK_STR(t->s.myhostname, "new.example");
                CHECK_STR(conf_get(daemon_conf(t->daemon), "queue_directory"), "/tmp/queue");
                write_config("/tmp/queue", "fail.example");
                break;
        case 2:   /* the failed load changed nothing */
                CHECK_INT(t->loads, 3);
                CHECK_INT(t->applies, 1);
                CHECK_STR(t->s.myhostname, "new.example");
                CHECK_STR(conf_get(daemon_conf(t->daemon), "myhostname"), "new.example");
                daemon_exit(t->daemon, 0);
                return 0;
        }
        CHECK(raise(SIGHUP) == 0);
        (void) sd_event_source_set_time_relative(s, USEC_PER_SEC / 20);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int start(void *userdata, Daemon *d) {
        TestRole *t = userdata;
        t->daemon = d;
        return sd_event_add_time_relative(daemon_event(d), &t->timer, CLOCK_MONOTONIC, 0, 0, on_timer, t);
}

static void stop(void *userdata) {
        TestRole *t = userdata;
        t->stops++;
        t->timer = sd_event_source_disable_unref(t->timer);
        if (t->fd >= 0)
                t->fd = safe_close(t->fd);
}

static const DaemonSocket sockets[] = {
        { "test", DAEMON_SOCKET_REQUIRED, .open = open_socket },
        {}
};

static const char *const restart_params[] = { "queue_directory", NULL };

static const DaemonRole role = {
        .name = "test",
        .sockets = sockets,
        .restart_params = restart_params,
        DAEMON_ROLE_SETTINGS(TestRole, s, load, done),
        .apply = apply,
        .start = start,
        .stop = stop,
};

int main(void) {
        int fd = mkstemp(config_path);
        CHECK(fd >= 0);
        close(fd);
        setenv("POSTERN_CONFIG", config_path, 1);
        setenv("POSTERN_LOG_STDERR", "1", 1);
        write_config("/tmp/queue", "old.example");

        /* No socket: fatal before settings are loaded; stop() is still called. */
        unsetenv("LISTEN_FDS");
        TestRole t = { .fd = -1 };
        CHECK_INT(daemon_role_run(&role, &t), EXIT_FAILURE);
        CHECK_INT(t.loads, 0);
        CHECK_INT(t.stops, 1);

        /* A passed "test" socket, then three reloads driven by the timer. */
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        CHECK(dup2(sv[0], SD_LISTEN_FDS_START) == SD_LISTEN_FDS_START);
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int) getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_FDNAMES", "test", 1);
        t = (TestRole) { .fd = -1 };
        CHECK_INT(daemon_role_run(&role, &t), 0);
        CHECK_INT(t.step, 3);
        CHECK_INT(t.stops, 1);
        CHECK(t.s.queue_directory == NULL);   /* done() ran */

        close(sv[0]);
        close(sv[1]);
        unlink(config_path);
        return 0;
}
