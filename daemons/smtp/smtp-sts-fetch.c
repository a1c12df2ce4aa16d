/* smtp-sts-fetch.c — the HTTPS GET of an MTA-STS policy (RFC 8461 3.3):
 * https://mta-sts.<domain>/.well-known/mta-sts.txt, HTTP/1.1 over TLS on port 443.
 *
 * The request itself is common/tls/https.c's. The fetch runs on a thread of its own with
 * blocking sockets (one fetch per thread, joined when it is done), so that postern-smtp's event
 * loop never waits: the thread writes to a pipe and the loop calls the handler. The whole fetch — name lookup, connect, handshake, request, reply —
 * has one deadline (smtp_mta_sts_fetch_timeout). The server certificate must verify against the
 * system trust store (or smtp_mta_sts_CAfile) for the name mta-sts.<domain>; a reply other than
 * 200 (a redirect included: 3.3 forbids following them), a Content-Type other than text/plain, or
 * a body above the size limit fails the fetch. Chunked bodies are decoded. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtp-sts.h"
#include "tls/https.h"

struct StsFetch {
        sd_event_source *io;
        int pipe[2];
        pthread_t thread;
        char *domain;
        StsFetchConfig cfg;
        char *ca_file;
        StsFetchHandler handler;
        void *userdata;
        /* the thread's result */
        int r;
        char why[300];
        char *body;
        size_t len;
};

/* Status 200 (a redirect refused), text/plain, the body within max_size. */
int sts_fetch_blocking(const char *domain, const StsFetchConfig *cfg, char **ret_body, size_t *ret_len,
                       char *why, size_t why_size) {
        char host[300];
        if (snprintf(host, sizeof host, "mta-sts.%s", domain) >= (int) sizeof host) {
                snprintf(why, why_size, "domain name too long");
                return -EINVAL;
        }
        HttpsRequest req = { .method = "GET", .host = host, .port = cfg->port, .path = "/.well-known/mta-sts.txt",
                             .accept = "text/plain", .ca_file = cfg->ca_file, .timeout_usec = cfg->timeout_usec,
                             .max_body = cfg->max_size };
        HttpsReply reply;
        int r = https_request(&req, &reply, why, why_size);
        if (r == -EFBIG)
                snprintf(why, why_size, "policy larger than %zu bytes", cfg->max_size);
        if (r < 0)
                return r;
        const char *ct = reply.content_type;
        size_t l = ct ? strlen(ct) : 0;
        if (reply.status / 100 == 3) {
                snprintf(why, why_size, "redirect (HTTP %d%s%.200s) refused", reply.status, reply.location ? " to " : "",
                         strempty(reply.location));
                r = -EPROTO;
        } else if (reply.status != 200) {
                snprintf(why, why_size, "HTTP status %d", reply.status);
                r = -EPROTO;
        } else if (!ct || l < 10 || strncasecmp(ct, "text/plain", 10) != 0 || (l > 10 && ct[10] != ';' && ct[10] != ' ')) {
                snprintf(why, why_size, "Content-Type %.80s is not text/plain", ct ? ct : "(none)");
                r = -EPROTO;
        } else {
                *ret_body = TAKE_PTR(reply.body);
                *ret_len = reply.body_len;
        }
        https_reply_done(&reply);
        return r;
}

static void *fetch_thread(void *p) {
        StsFetch *f = p;
        f->r = sts_fetch_blocking(f->domain, &f->cfg, &f->body, &f->len, f->why, sizeof f->why);
        if (f->r < 0 && !f->why[0])
                snprintf(f->why, sizeof f->why, "%s", strerror(-f->r));
        char c = 1;
        (void) !write(f->pipe[1], &c, 1);
        return NULL;
}

static void fetch_free(StsFetch *f) {
        sd_event_source_disable_unref(f->io);
        if (f->pipe[0] >= 0)
                close(f->pipe[0]);
        if (f->pipe[1] >= 0)
                close(f->pipe[1]);
        free(f->domain);
        free(f->ca_file);
        free(f->body);
        free(f);
}

static int on_done(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        StsFetch *f = userdata;
        pthread_join(f->thread, NULL);
        f->handler(f, f->r, f->why, f->body, f->len, f->userdata);
        fetch_free(f);
        return 0;
}

int sts_fetch_start(sd_event *e, const char *domain, const StsFetchConfig *cfg, StsFetchHandler handler,
                    void *userdata, StsFetch **ret) {
        StsFetch *f = calloc(1, sizeof(StsFetch));
        int r;
        if (!f)
                return -ENOMEM;
        f->pipe[0] = f->pipe[1] = -1;
        f->cfg = *cfg;
        f->handler = handler;
        f->userdata = userdata;
        if (!(f->domain = strdup(domain)) || (cfg->ca_file && !(f->ca_file = strdup(cfg->ca_file)))) {
                fetch_free(f);
                return -ENOMEM;
        }
        f->cfg.ca_file = f->ca_file;
        if (pipe2(f->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                fetch_free(f);
                return r;
        }
        r = sd_event_add_io(e, &f->io, f->pipe[0], EPOLLIN, on_done, f);
        if (r < 0) {
                fetch_free(f);
                return r;
        }
        r = -pthread_create(&f->thread, NULL, fetch_thread, f);
        if (r < 0) {
                fetch_free(f);
                return r;
        }
        if (ret)
                *ret = f;
        return 0;
}

void sts_fetch_cancel(StsFetch *f) {
        if (!f)
                return;
        pthread_join(f->thread, NULL);
        fetch_free(f);
}
