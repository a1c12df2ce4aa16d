/* proxy-protocol.h — HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): the header a
 * load balancer sends before the client's first byte, naming the client's and the server's
 * addresses and ports. Pure parsing, no I/O: the caller collects bytes and asks
 * proxy_header_parse() whether they hold a complete header yet.
 *
 * Limits: a v1 header is at most PROXY_V1_MAX bytes (107, the specification's bound, CRLF
 * included); a v2 header at most 16 + PROXY_V2_MAX_PAYLOAD bytes (address block and TLVs).
 * TLVs are walked to check that each one fits, and their contents are skipped. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROXY_V1_MAX 107
#define PROXY_V2_HEADER 16
#define PROXY_V2_MAX_PAYLOAD 4096
/* The most bytes a header may take (a buffer this large always decides). */
#define PROXY_HEADER_MAX (PROXY_V2_HEADER + PROXY_V2_MAX_PAYLOAD)

typedef struct ProxyHeader {
        unsigned version;        /* 1 or 2 */
        /* No addresses to take: v2 LOCAL (the proxy's own health check), v1 UNKNOWN, v2 with an
         * unspecified or AF_UNIX family. The connection's own endpoints stay in effect, as the
         * specification says; local_reason names which of these it was. */
        bool local;
        const char *local_reason;
        int family;              /* AF_INET or AF_INET6 (when !local) */
        uint8_t src_addr[16], dst_addr[16];   /* network byte order; 4 bytes for AF_INET */
        uint16_t src_port, dst_port;
} ProxyHeader;

/* Parses the start of buf (n bytes received so far). Returns the header's length (> 0) with
 * *ret filled, 0 when the bytes are a valid beginning but the header is not complete yet, or
 * -EBADMSG with *ret_error a static text naming what is wrong (not a PROXY header at all, a
 * malformed field, too long, an unsupported command/family/transport). Never reads beyond n. */
ssize_t proxy_header_parse(const void *buf, size_t n, ProxyHeader *ret, const char **ret_error);
