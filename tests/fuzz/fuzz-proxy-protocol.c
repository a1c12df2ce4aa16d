/* fuzz-proxy-protocol — the PROXY protocol parser (common/net/proxy-protocol.c). Whatever the
 * input: the answer is a length within the input and the bound, "incomplete", or -EBADMSG with a
 * reason; a parsed header stays parsed with more bytes after it and with the same bytes fed in
 * two pieces (the way a socket delivers them), and "incomplete" is only ever said of a prefix
 * shorter than the bound. */
#include <errno.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "net/proxy-protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ProxyHeader h = {};
        const char *why = NULL;

        if (size > PROXY_HEADER_MAX + 64)
                return 0;
        ssize_t r = proxy_header_parse(data, size, &h, &why);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG);
                FUZZ_CHECK(why && *why);
                return 0;
        }
        if (r == 0) {
                FUZZ_CHECK(size < PROXY_HEADER_MAX);
                return 0;
        }
        FUZZ_CHECK((size_t) r <= size && (size_t) r <= PROXY_HEADER_MAX);
        FUZZ_CHECK(h.version == 1 || h.version == 2);
        if (h.version == 1)
                FUZZ_CHECK(r <= PROXY_V1_MAX);
        if (h.local)
                FUZZ_CHECK(h.local_reason);
        else
                FUZZ_CHECK(h.family == AF_INET || h.family == AF_INET6);
        /* every shorter prefix is incomplete, never an error or another header */
        ProxyHeader h2;
        for (size_t i = 0; i < (size_t) r; i++)
                FUZZ_CHECK(proxy_header_parse(data, i, &h2, &why) == 0);
        FUZZ_CHECK(proxy_header_parse(data, (size_t) r, &h2, &why) == r);
        FUZZ_CHECK(memcmp(&h, &h2, sizeof h) == 0);
        return 0;
}
