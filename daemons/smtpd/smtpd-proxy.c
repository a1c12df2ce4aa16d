/* smtpd-proxy.c — smtpd_upstream_proxy_protocol = haproxy: a load balancer (HAProxy's
 * send-proxy / send-proxy-v2, or any PROXY protocol v1/v2 sender) opens each connection with a
 * header naming the real client and the address it connected to. The session waits in
 * PHASE_PROXY, without a greeting, until the header is complete (the parser is
 * common/net/proxy-protocol.c), then session_proxy_done() makes those addresses the session's:
 * mynetworks, access maps, anvil, DNS lists, the client name lookup, policy requests,
 * Received: and every log line see the proxied client.
 *
 * Reading never goes past the header: the socket is peeked, and only bytes that are certainly
 * part of the header are taken (all of them while it is incomplete, exactly its length once it
 * is complete), so what follows — SMTP commands, or the TLS ClientHello of an implicit-TLS
 * listener — stays in the socket for the session.
 *
 * A header that is malformed, too long, not a PROXY header at all, or that does not arrive
 * within smtpd_upstream_proxy_timeout ends the connection without a reply (a load balancer
 * that misspeaks would otherwise pass our greeting to a client we know nothing of), logged as
 *   warning: PROXY protocol: bad header from [ADDR]:PORT: <reason>; closing the connection
 *   warning: PROXY protocol: no complete header from [ADDR]:PORT within 5s; closing the connection
 *   lost connection while reading the PROXY header from [ADDR]:PORT
 * where ADDR:PORT is the connection's own peer (the load balancer). With
 * postern_upstream_proxy_networks set, a peer outside it may not send a header at all:
 *   warning: PROXY protocol: connection from [ADDR]:PORT, which is not in postern_upstream_proxy_networks; closing the connection
 * (a table that fails: "... postern_upstream_proxy_networks lookup failed; ..."). A v2 LOCAL command (the
 * balancer's own health check), v1 UNKNOWN and v2 headers without an IP family keep the
 * connection's own addresses, as the protocol says, and log
 *   PROXY protocol: <v2 LOCAL command> from [ADDR]:PORT; using the connection's own addresses */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "smtpd.h"
#include "log/log.h"
#include "net/proxy-protocol.h"

bool smtpd_proxy_expected(const Session *s) {
        return s->settings->upstream_proxy == UPSTREAM_PROXY_HAPROXY && s->listener->kind != LISTENER_SUBMIT;
}

/* "[ADDR]:PORT" of the connection's peer (the load balancer). */
static void peer_text(const Session *s, char *buf, size_t n) {
        snprintf(buf, n, "[%s]:%u", s->client.addr, s->client.port);
}

bool smtpd_proxy_start(Session *s) {
        const NetList *allowed = &s->settings->upstream_proxy_networks;
        if (allowed->n == 0)
                return true;
        int r = smtpd_netlist_match(allowed, &s->client);
        if (r > 0)
                return true;
        char peer[96];
        peer_text(s, peer, sizeof(peer));
        if (r < 0)
                log_warning("PROXY protocol: connection from %s: postern_upstream_proxy_networks lookup failed; "
                            "closing the connection", peer);
        else
                log_warning("PROXY protocol: connection from %s, which is not in postern_upstream_proxy_networks; "
                            "closing the connection", peer);
        session_free(s);
        return false;
}

/* The first bytes of what arrived instead of a header, printable, for the log line. */
static void sample_text(const uint8_t *p, size_t n, char *buf, size_t size) {
        size_t k = 0;
        for (size_t i = 0; i < n && k + 5 < size && i < 32; i++) {
                if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                        break;
                buf[k++] = isprint(p[i]) && p[i] != '"' && p[i] != '\\' ? (char) p[i] : '?';
        }
        buf[k] = '\0';
}

void smtpd_proxy_on_io(Session *s) {
        uint8_t buf[PROXY_HEADER_MAX];
        char peer[96];
        size_t have = s->in.len;

        peer_text(s, peer, sizeof(peer));
        assert(have < sizeof(buf));   /* the parser decides before PROXY_HEADER_MAX bytes */
        if (have > 0)
                memcpy(buf, s->in.data, have);
        ssize_t n = recv(s->fd, buf + have, sizeof(buf) - have, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                log_info("lost connection while reading the PROXY header from %s", peer);
                session_free(s);
                return;
        }

        ProxyHeader h;
        const char *why = NULL;
        ssize_t r = proxy_header_parse(buf, have + (size_t) n, &h, &why);
        if (r < 0) {
                char sample[40];
                sample_text(buf, have + (size_t) n, sample, sizeof(sample));
                log_warning("PROXY protocol: bad header from %s: %s (it began with \"%s\"); closing the connection",
                            peer, why, sample);
                session_free(s);
                return;
        }
        /* Take the header bytes out of the socket: all we peeked while incomplete, else the rest
         * of the header. They are in the socket buffer already, so one recv() returns them. */
        size_t take = r == 0 ? (size_t) n : (size_t) r - have;
        ssize_t got = recv(s->fd, buf + have, take, MSG_DONTWAIT);
        if (got != (ssize_t) take) {
                log_warning("PROXY protocol: reading the header from %s: %s; closing the connection", peer,
                            got < 0 ? strerror(errno) : "short read");
                session_free(s);
                return;
        }
        if (r == 0) {
                if (strbuf_append(&s->in, buf + have, take) < 0) {
                        log_oom();
                        session_free(s);
                }
                return;
        }
        strbuf_done(&s->in);
        if (h.local)
                log_info("PROXY protocol: %s from %s; using the connection's own addresses", h.local_reason, peer);
        session_proxy_done(s, h.local, h.family, h.src_addr, h.src_port, h.dst_addr, h.dst_port);
}

void smtpd_proxy_timeout(Session *s) {
        char peer[96];
        peer_text(s, peer, sizeof(peer));
        log_warning("PROXY protocol: no complete header from %s within %llus; closing the connection", peer,
                    (unsigned long long) (s->settings->upstream_proxy_timeout_usec / USEC_PER_SEC));
        session_free(s);
}
