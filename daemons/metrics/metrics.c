/* metrics.c — postern-metrics: the metrics endpoint (Prometheus text / OpenMetrics over HTTP).
 *
 * Takes the listening socket "metrics" from postern-metrics.socket (127.0.0.1:9154 by default,
 * the port postfix_exporter uses; the socket is off until the admin enables it), accepts
 * connections on its sd-event loop and answers one request per connection (metrics-http.c):
 * GET /metrics reads queue.db read-only (metrics-scrape.c) and answers with the exposition text;
 * OpenMetrics when the Accept header asks for application/openmetrics-text. A request has
 * METRICS_REQUEST_TIMEOUT_USEC to arrive and be answered, its header at most
 * METRICS_REQUEST_MAX bytes; at most METRICS_CONNECTIONS_MAX connections are served at once
 * (more wait in the listen backlog). It never writes to the queue: the counters are written by
 * the daemons that count (common/metrics/metrics-store.h).
 *
 * Parameters: queue_directory (a restart parameter). Runs as a role of common/daemon. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon-role.h"
#include "log/log.h"
#include "metrics.h"

#define METRICS_CONNECTIONS_MAX 64

typedef struct Metrics {
        Daemon *daemon;
        sd_event *event;
        sd_event_source *listen_src;
        int listen_fd;
        size_t n_conns;
        struct Conn *conns;
} Metrics;

typedef struct Conn {
        Metrics *m;
        int fd;
        sd_event_source *io, *timer;
        char in[METRICS_REQUEST_MAX];
        size_t in_len;
        StrBuf out;
        size_t out_done;
        struct Conn *next, **prevp;
} Conn;

static void listen_resume(Metrics *m) {
        if (m->listen_src && m->n_conns < METRICS_CONNECTIONS_MAX)
                (void) sd_event_source_set_enabled(m->listen_src, SD_EVENT_ON);
}

static void conn_free(Conn *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        strbuf_done(&c->out);
        *c->prevp = c->next;
        if (c->next)
                c->next->prevp = c->prevp;
        c->m->n_conns--;
        listen_resume(c->m);
        free(c);
}

static int scrape(MetricsFormat fmt, StrBuf *body, void *ud) {
        Metrics *m = ud;
        int r = metrics_scrape(conf_get(daemon_conf(m->daemon), "queue_directory"),
                               now_usec(CLOCK_REALTIME), fmt, body);
        if (r < 0)
                log_warning_errno(r, "Cannot build the metrics: %m");
        return r;
}

/* Writes what the answer has left; closes when done or when the client is gone. */
static void conn_write(Conn *c) {
        while (c->out_done < c->out.len) {
                ssize_t n = send(c->fd, c->out.data + c->out_done, c->out.len - c->out_done,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EAGAIN) {
                        (void) sd_event_source_set_io_events(c->io, EPOLLOUT);
                        return;
                }
                if (n <= 0)
                        break;
                c->out_done += (size_t) n;
        }
        /* Done: half-close so the client sees the end before the close. */
        (void) shutdown(c->fd, SHUT_WR);
        conn_free(c);
}

static void conn_answer(Conn *c, const MetricsRequest *req) {
        int r = metrics_http_respond(req, scrape, c->m, &c->out);
        if (r < 0) {
                log_oom();
                conn_free(c);
                return;
        }
        c->out_done = 0;
        conn_write(c);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        MetricsRequest req;

        if (c->out.len > 0) {   /* answering */
                conn_write(c);
                return 0;
        }
        ssize_t n = recv(fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {           /* gone before a whole request */
                conn_free(c);
                return 0;
        }
        c->in_len += (size_t) n;
        int r = metrics_http_parse(c->in, c->in_len, &req);
        if (r == 0 && c->in_len < sizeof c->in)
                return 0;
        conn_answer(c, r > 0 ? &req : NULL);
        return 0;
}

static int on_conn_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        conn_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Metrics *m = userdata;

        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_errno(-errno, "accept() failed: %m");
                return 0;
        }
        Conn *c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(cfd);
                log_oom();
                return 0;
        }
        *c = (Conn) { .m = m, .fd = cfd, .out = STRBUF_INIT, .next = m->conns, .prevp = &m->conns };
        if (m->conns)
                m->conns->prevp = &c->next;
        m->conns = c;
        m->n_conns++;
        if (m->n_conns >= METRICS_CONNECTIONS_MAX)
                (void) sd_event_source_set_enabled(m->listen_src, SD_EVENT_OFF);
        if (sd_event_add_io(m->event, &c->io, cfd, EPOLLIN, on_conn_io, c) < 0 ||
            sd_event_add_time_relative(m->event, &c->timer, CLOCK_MONOTONIC, METRICS_REQUEST_TIMEOUT_USEC,
                                       USEC_PER_SEC / 10, on_conn_timeout, c) < 0) {
                log_oom();
                conn_free(c);
        }
        return 0;
}

static int take_socket(void *userdata, const DaemonSocket *socket, int fd) {
        Metrics *m = userdata;
        /* A client that resets before accept() must not leave accept() blocking the loop. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                log_warning_errno(-errno, "Failed to make the metrics socket non-blocking: %m");
        m->listen_fd = fd;
        return 0;
}

static int start(void *userdata, Daemon *d) {
        Metrics *m = userdata;
        m->daemon = d;
        m->event = daemon_event(d);
        int r = sd_event_add_io(m->event, &m->listen_src, m->listen_fd, EPOLLIN, on_accept, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the metrics socket: %m");
        log_info("started: serving /metrics from %s", conf_get(daemon_conf(d), "queue_directory"));
        return 0;
}

static void stop(void *userdata) {
        Metrics *m = userdata;
        while (m->conns)
                conn_free(m->conns);
        m->listen_src = sd_event_source_disable_unref(m->listen_src);
        m->listen_fd = safe_close(m->listen_fd);
}

static const DaemonRole role = {
        .name = "metrics",
        .sockets = (const DaemonSocket[]) {
                { "metrics", DAEMON_SOCKET_REQUIRED, .open = take_socket },
                {},
        },
        .restart_params = (const char *const[]) { "queue_directory", NULL },
        .start = start, .stop = stop,
};

int main(int argc, char *argv[]) {
        Metrics m = { .listen_fd = -EBADF };
        return daemon_role_run(&role, &m);
}
