/* test-proxy-protocol.c — unit tests for the PROXY protocol parser: v1 and v2 headers that
 * parse (addresses, ports, LOCAL/UNKNOWN, TLVs skipped), every prefix of a valid header being
 * "incomplete", and malformed, overlong and foreign input refused with its reason. */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>

#include "proxy-protocol.h"
#include "../basic/macro.h"
#include "../basic/tests.h"

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header: ver_cmd, fam, then payload of len bytes. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *payload, size_t len) {
        memcpy(out, sig, 12);
        out[12] = ver_cmd;
        out[13] = fam;
        out[14] = (uint8_t) (len >> 8);
        out[15] = (uint8_t) len;
        if (len)
                memcpy(out + 16, payload, len);
        return 16 + len;
}

static void check_prefixes(const void *buf, size_t n) {
        ProxyHeader h;
        const char *why = NULL;
        for (size_t i = 0; i < n; i++)
                CHECK_INT(proxy_header_parse(buf, i, &h, &why), 0);
}

static void check_addr(const ProxyHeader *h, const char *src, const char *dst) {
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        CHECK(inet_ntop(h->family, h->src_addr, a, sizeof a));
        CHECK(inet_ntop(h->family, h->dst_addr, b, sizeof b));
        CHECK_STR(a, src);
        CHECK_STR(b, dst);
}

/* buf (n bytes, maybe more after the header) holds a header of expect_len bytes with these fields;
 * every shorter prefix is incomplete. */
static void check_header(const void *buf, size_t n, size_t expect_len, unsigned version, int family,
                         const char *src, const char *dst, unsigned sport, unsigned dport) {
        ProxyHeader h;
        const char *why = NULL;
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), expect_len);
        CHECK_INT(h.version, version);
        CHECK(!h.local);
        CHECK_INT(h.family, family);
        check_addr(&h, src, dst);
        CHECK_INT(h.src_port, sport);
        CHECK_INT(h.dst_port, dport);
        check_prefixes(buf, expect_len);
}

static void test_v1(void) {
        ProxyHeader h;
        const char *why = NULL;
        const char *ok4 = "PROXY TCP4 192.0.2.7 127.0.0.1 40123 25\r\nEHLO x\r\n";
        size_t hl = strlen("PROXY TCP4 192.0.2.7 127.0.0.1 40123 25\r\n");
        check_header(ok4, strlen(ok4), hl, 1, AF_INET, "192.0.2.7", "127.0.0.1", 40123, 25);
        const char *ok6 = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        check_header(ok6, strlen(ok6), strlen(ok6), 1, AF_INET6, "2001:db8::1", "::1", 65535, 0);

        const char *unk = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        CHECK_INT(proxy_header_parse(unk, strlen(unk), &h, &why), strlen(unk));
        CHECK(h.local);
        CHECK_STR(h.local_reason, "v1 UNKNOWN protocol");
        CHECK_INT(proxy_header_parse("PROXY UNKNOWN\r\n", 15, &h, &why), 15);
        CHECK(h.local);

        /* the longest possible header is exactly 107 bytes */
        const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        CHECK_INT(strlen(longest), 104);
        char buf[200];
        snprintf(buf, sizeof buf, "PROXY UNKNOWN %091d\r\n", 0);
        CHECK_INT(strlen(buf), 107);
        CHECK_INT(proxy_header_parse(buf, strlen(buf), &h, &why), 107);
        snprintf(buf, sizeof buf, "PROXY UNKNOWN %092d\r\n", 0);
        CHECK_INT(proxy_header_parse(buf, strlen(buf), &h, &why), -EBADMSG);
        CHECK_STR(why, "v1 header longer than 107 bytes");
        memset(buf, 'A', sizeof buf);
        memcpy(buf, "PROXY ", 6);
        CHECK_INT(proxy_header_parse(buf, sizeof buf, &h, &why), -EBADMSG);
        CHECK_STR(why, "v1 header longer than 107 bytes");
        /* 105 bytes without CR may still end in CRLF at 107; 106 cannot */
        CHECK_INT(proxy_header_parse(buf, 105, &h, &why), 0);
        CHECK_INT(proxy_header_parse(buf, 106, &h, &why), -EBADMSG);

        static const struct { const char *in; const char *why; } bad[] = {
                { "EHLO client.example\r\n", "not a PROXY protocol header" },
                { "PROXX", "not a PROXY protocol header" },
                { "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "not a PROXY protocol header" },
                { "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "v1 header names a protocol other than TCP4, TCP6 or UNKNOWN" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "v1 header does not have 5 fields after PROXY" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "v1 header does not have 5 fields after PROXY" },
                { "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "v1 header does not have 5 fields after PROXY" },
                { "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "v1 header has a malformed source address" },
                { "PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "v1 header has a malformed source address" },
                { "PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "v1 header has a malformed destination address" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "v1 header has a malformed source port" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "v1 header has a malformed source port" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "v1 header has a malformed source port" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1 x\r\n", "v1 header has a malformed destination port" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1 \r\n", "v1 header has a malformed destination port" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "v1 header line ends without CR" },
                { "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", "v1 header line has a CR without LF" },
                { "PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n", "v1 header holds a control or non-ASCII character" },
                { "PROXY \xff", "v1 header holds a control or non-ASCII character" },
                { "PROXY \r\n", "v1 header names a protocol other than TCP4, TCP6 or UNKNOWN" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                why = NULL;
                CHECK_INT(proxy_header_parse(bad[i].in, strlen(bad[i].in), &h, &why), -EBADMSG);
                CHECK_STR(why, bad[i].why);
        }
}

static void test_v2(void) {
        uint8_t buf[PROXY_HEADER_MAX + 64], pl[PROXY_V2_MAX_PAYLOAD + 8];
        ProxyHeader h;
        const char *why = NULL;

        /* PROXY, INET, STREAM: 192.0.2.9:1025 -> 127.0.0.1:25, then two TLVs (ALPN, NOOP) */
        uint8_t in4[] = { 192, 0, 2, 9, 127, 0, 0, 1, 0x04, 0x01, 0x00, 25,
                          0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00 };
        size_t n = v2(buf, 0x21, 0x11, in4, sizeof in4);
        memcpy(buf + n, "EHLO", 4);
        check_header(buf, n + 4, n, 2, AF_INET, "192.0.2.9", "127.0.0.1", 1025, 25);

        uint8_t in6[36] = {};
        in6[0] = 0x20, in6[1] = 0x01, in6[2] = 0x0d, in6[3] = 0xb8, in6[15] = 5;
        in6[31] = 1;
        in6[32] = 0xff, in6[33] = 0xfe, in6[34] = 0x02, in6[35] = 0x4b;
        n = v2(buf, 0x21, 0x21, in6, sizeof in6);
        check_header(buf, n, n, 2, AF_INET6, "2001:db8::5", "::1", 65534, 587);

        /* LOCAL (health check): anything after it is ignored */
        n = v2(buf, 0x20, 0x00, NULL, 0);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), 16);
        CHECK(h.local);
        CHECK_STR(h.local_reason, "v2 LOCAL command");
        n = v2(buf, 0x20, 0x11, in4, sizeof in4);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), n);
        CHECK(h.local);
        /* PROXY with AF_UNSPEC, and AF_UNIX */
        n = v2(buf, 0x21, 0x00, in4, 3);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), n);
        CHECK_STR(h.local_reason, "v2 unspecified address family");
        memset(pl, 0, 216);
        n = v2(buf, 0x21, 0x31, pl, 216);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), n);
        CHECK_STR(h.local_reason, "v2 AF_UNIX address family");

        /* the largest payload is accepted, one byte more is not (decided from 16 bytes) */
        memset(pl, 0, sizeof pl);
        memcpy(pl, in4, 12);
        pl[12] = 0x04;   /* one NOOP TLV padding the rest */
        pl[13] = (uint8_t) ((PROXY_V2_MAX_PAYLOAD - 15) >> 8);
        pl[14] = (uint8_t) (PROXY_V2_MAX_PAYLOAD - 15);
        n = v2(buf, 0x21, 0x11, pl, PROXY_V2_MAX_PAYLOAD);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), PROXY_HEADER_MAX);
        v2(buf, 0x21, 0x11, pl, PROXY_V2_MAX_PAYLOAD + 1);
        CHECK_INT(proxy_header_parse(buf, 16, &h, &why), -EBADMSG);
        CHECK_STR(why, "v2 header longer than 16 + 4096 bytes");

        static const struct { uint8_t ver_cmd, fam; size_t len; const char *why; } bad[] = {
                { 0x11, 0x11, 12, "v2 header has a version other than 2" },
                { 0x22, 0x11, 12, "v2 header has an unknown command (neither LOCAL nor PROXY)" },
                { 0x21, 0x41, 12, "v2 header has an unknown address family" },
                { 0x21, 0x12, 12, "v2 header names a transport other than STREAM" },
                { 0x21, 0x10, 12, "v2 header names a transport other than STREAM" },
                { 0x21, 0x11, 11, "v2 header length is too short for its address family" },
                { 0x21, 0x21, 35, "v2 header length is too short for its address family" },
                { 0x21, 0x31, 215, "v2 header length is too short for its address family" },
                { 0x21, 0x11, 14, "v2 header ends inside a TLV" },
        };
        memset(pl, 0, sizeof pl);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                why = NULL;
                n = v2(buf, bad[i].ver_cmd, bad[i].fam, pl, bad[i].len);
                CHECK_INT(proxy_header_parse(buf, n, &h, &why), -EBADMSG);
                CHECK_STR(why, bad[i].why);
        }
        /* a TLV whose length runs past the header */
        memcpy(pl, in4, 12);
        pl[12] = 0x05, pl[13] = 0x00, pl[14] = 0x09;
        n = v2(buf, 0x21, 0x11, pl, 12 + 3 + 8);
        CHECK_INT(proxy_header_parse(buf, n, &h, &why), -EBADMSG);
        CHECK_STR(why, "v2 header has a TLV longer than the header");

        /* a broken signature is refused as soon as it differs */
        memcpy(buf, sig, 12);
        buf[5] = 'X';
        CHECK_INT(proxy_header_parse(buf, 6, &h, &why), -EBADMSG);
        CHECK_STR(why, "not a PROXY protocol header");
        CHECK_INT(proxy_header_parse("\r\n", 2, &h, &why), 0);
        CHECK_INT(proxy_header_parse("\r\nQUIT\r\n", 8, &h, &why), -EBADMSG);
}

int main(void) {
        test_v1();
        test_v2();
        return 0;
}
