/* fuzz-rfc822 — the header scanner of common/mail/rfc822.c: rfc822_next_header() over the whole
 * input until it returns <= 0, checking every span it hands out lies inside the message and that
 * the scan always advances; then rfc822_has_header() for the first field found and a few
 * fixed names (it must agree with the scan). */
#include <errno.h>
#include <strings.h>

#include "fuzz.h"
#include "mail/rfc822.h"

static bool inside(const char *msg, size_t len, const char *p, size_t n) {
        return p >= msg && p <= msg + len && n <= (size_t) (msg + len - p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 65536)
                return 0;
        /* exact-size copy without a terminator: the scanner must respect len */
        char *msg = malloc(size ? size : 1);
        FUZZ_CHECK(msg);
        if (size)
                memcpy(msg, data, size);

        size_t pos = 0, n_fields = 0;
        char first[256] = "";
        bool seen_from = false;
        Rfc822Header h;
        int r;

        for (;;) {
                size_t before = pos;
                memset(&h, 0, sizeof h);
                r = rfc822_next_header(msg, size, &pos, &h);
                if (r <= 0)
                        break;
                FUZZ_CHECK(r == 1);
                FUZZ_CHECK(pos > before && pos <= size);
                FUZZ_CHECK(h.start == msg + before);
                FUZZ_CHECK(h.total_len == pos - before);
                FUZZ_CHECK(inside(msg, size, h.name, h.name_len));
                FUZZ_CHECK(inside(msg, size, h.value, h.value_len));
                FUZZ_CHECK(h.name == h.start && h.value >= h.name + h.name_len + 1);
                FUZZ_CHECK(h.value + h.value_len <= h.start + h.total_len);
                FUZZ_CHECK(rfc822_header_name_valid(h.name, h.name_len));
                if (n_fields++ == 0 && h.name_len < sizeof first) {
                        memcpy(first, h.name, h.name_len);
                        first[h.name_len] = '\0';
                }
                if (h.name_len == 4 && strncasecmp(h.name, "From", 4) == 0)
                        seen_from = true;
        }
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        FUZZ_CHECK(pos <= size);

        if (first[0])
                FUZZ_CHECK(rfc822_has_header(msg, size, first));
        /* A scan that stopped at a malformed line may not have seen a later From: — but one that
         * saw it must agree. */
        if (seen_from)
                FUZZ_CHECK(rfc822_has_header(msg, size, "from"));
        (void) rfc822_has_header(msg, size, "Message-ID");
        (void) rfc822_has_header(msg, size, "");
        (void) rfc822_header_name_valid(msg, size < 80 ? size : 80);
        free(msg);
        return 0;
}
