/* proxy-protocol.c — the PROXY protocol header parser (see proxy-protocol.h). Version 1 is one
 * text line "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n"; version 2 is a
 * 12-byte signature, a version/command byte, a family/transport byte, a 16-bit length and that
 * many bytes of address block and TLVs. Every field is checked strictly: bad input is refused
 * with a reason, never guessed at. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy-protocol.h"

static const uint8_t v2_signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
static const char v1_prefix[] = "PROXY ";

static ssize_t fail(const char **ret_error, const char *why) {
        if (ret_error)
                *ret_error = why;
        return -EBADMSG;
}

/* A decimal port 0..65535 without sign or leading zeros. */
static bool parse_port(const char *s, uint16_t *ret) {
        unsigned long v = 0;
        size_t n = strlen(s);
        if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned long) (s[i] - '0');
        }
        if (v > 65535)
                return false;
        *ret = (uint16_t) v;
        return true;
}

static ssize_t parse_v1(const char *p, size_t n, ProxyHeader *ret, const char **ret_error) {
        size_t len = 0;
        /* Only printable ASCII before the CRLF: binary or an overlong line is refused early. */
        for (; len < n && len < PROXY_V1_MAX; len++) {
                unsigned char c = (unsigned char) p[len];
                if (c == '\r')
                        break;
                if (c == '\n')
                        return fail(ret_error, "v1 header line ends without CR");
                if (c < 0x20 || c > 0x7e)
                        return fail(ret_error, "v1 header holds a control or non-ASCII character");
        }
        if (len + 2 > PROXY_V1_MAX)   /* the line and its CRLF cannot fit any more */
                return fail(ret_error, "v1 header longer than 107 bytes");
        if (len + 1 >= n)
                return 0;
        if (p[len + 1] != '\n')
                return fail(ret_error, "v1 header line has a CR without LF");

        char line[PROXY_V1_MAX + 1];
        memcpy(line, p, len);
        line[len] = '\0';
        char *f[6];
        size_t nf = 0;
        char *s = line + strlen(v1_prefix);
        /* Fields separated by single spaces; UNKNOWN may be followed by anything. */
        f[nf++] = s;
        for (char *q = s; *q && nf < 6; q++)
                if (*q == ' ') {
                        *q = '\0';
                        f[nf++] = q + 1;
                }
        ProxyHeader h = { .version = 1 };
        if (strcmp(f[0], "UNKNOWN") == 0) {
                h.local = true;
                h.local_reason = "v1 UNKNOWN protocol";
        } else {
                if (strcmp(f[0], "TCP4") == 0)
                        h.family = AF_INET;
                else if (strcmp(f[0], "TCP6") == 0)
                        h.family = AF_INET6;
                else
                        return fail(ret_error, "v1 header names a protocol other than TCP4, TCP6 or UNKNOWN");
                if (nf != 5)
                        return fail(ret_error, "v1 header does not have 5 fields after PROXY");
                if (inet_pton(h.family, f[1], h.src_addr) != 1)
                        return fail(ret_error, "v1 header has a malformed source address");
                if (inet_pton(h.family, f[2], h.dst_addr) != 1)
                        return fail(ret_error, "v1 header has a malformed destination address");
                if (!parse_port(f[3], &h.src_port))
                        return fail(ret_error, "v1 header has a malformed source port");
                if (!parse_port(f[4], &h.dst_port))
                        return fail(ret_error, "v1 header has a malformed destination port");
        }
        *ret = h;
        return (ssize_t) len + 2;
}

static ssize_t parse_v2(const uint8_t *p, size_t n, ProxyHeader *ret, const char **ret_error) {
        if (n < PROXY_V2_HEADER)
                return 0;
        if ((p[12] >> 4) != 2)
                return fail(ret_error, "v2 header has a version other than 2");
        unsigned cmd = p[12] & 0x0f, fam = p[13] >> 4, transport = p[13] & 0x0f;
        size_t len = (size_t) p[14] << 8 | p[15];
        if (cmd > 1)
                return fail(ret_error, "v2 header has an unknown command (neither LOCAL nor PROXY)");
        if (len > PROXY_V2_MAX_PAYLOAD)
                return fail(ret_error, "v2 header longer than 16 + 4096 bytes");
        if (n < PROXY_V2_HEADER + len)
                return 0;

        ProxyHeader h = { .version = 2 };
        const uint8_t *a = p + PROXY_V2_HEADER;
        size_t addr_len = 0;
        if (cmd == 0) {
                /* LOCAL: the proxy speaks for itself; whatever follows is ignored. */
                h.local = true;
                h.local_reason = "v2 LOCAL command";
                *ret = h;
                return (ssize_t) (PROXY_V2_HEADER + len);
        }
        switch (fam) {
        case 0:
                h.local = true;
                h.local_reason = "v2 unspecified address family";
                *ret = h;
                return (ssize_t) (PROXY_V2_HEADER + len);
        case 1:
                h.family = AF_INET;
                addr_len = 12;
                break;
        case 2:
                h.family = AF_INET6;
                addr_len = 36;
                break;
        case 3:
                h.local = true;
                h.local_reason = "v2 AF_UNIX address family";
                addr_len = 216;
                break;
        default:
                return fail(ret_error, "v2 header has an unknown address family");
        }
        if (transport != 1)
                return fail(ret_error, "v2 header names a transport other than STREAM");
        if (len < addr_len)
                return fail(ret_error, "v2 header length is too short for its address family");
        if (h.family) {
                size_t alen = h.family == AF_INET ? 4 : 16;
                memcpy(h.src_addr, a, alen);
                memcpy(h.dst_addr, a + alen, alen);
                h.src_port = (uint16_t) (a[2 * alen] << 8 | a[2 * alen + 1]);
                h.dst_port = (uint16_t) (a[2 * alen + 2] << 8 | a[2 * alen + 3]);
        }
        /* TLVs: type, 16-bit length, value; each must fit in what the header length covers. */
        for (size_t off = addr_len; off < len;) {
                if (len - off < 3)
                        return fail(ret_error, "v2 header ends inside a TLV");
                size_t tlen = (size_t) a[off + 1] << 8 | a[off + 2];
                if (tlen > len - off - 3)
                        return fail(ret_error, "v2 header has a TLV longer than the header");
                off += 3 + tlen;
        }
        *ret = h;
        return (ssize_t) (PROXY_V2_HEADER + len);
}

ssize_t proxy_header_parse(const void *buf, size_t n, ProxyHeader *ret, const char **ret_error) {
        const uint8_t *p = buf;
        size_t v1n = sizeof(v1_prefix) - 1;

        if (n == 0)
                return 0;
        if (p[0] == v2_signature[0]) {
                size_t k = n < sizeof(v2_signature) ? n : sizeof(v2_signature);
                if (memcmp(p, v2_signature, k) != 0)
                        return fail(ret_error, "not a PROXY protocol header");
                if (n < sizeof(v2_signature))
                        return 0;
                return parse_v2(p, n, ret, ret_error);
        }
        size_t k = n < v1n ? n : v1n;
        if (memcmp(p, v1_prefix, k) != 0)
                return fail(ret_error, "not a PROXY protocol header");
        if (n < v1n)
                return 0;
        return parse_v1((const char *) p, n, ret, ret_error);
}
