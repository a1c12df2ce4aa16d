/* fuzz-header-address — address-list parsing of address headers (common/mail/header-address.c)
 * and the canonical form of each address found (common/mail/addr-canonical.c).
 *
 * Input: a header value (folding, comments, quotes, groups, bytes of any kind).
 * Checked: a refused value (-EINVAL) leaves the output empty and the function is never called;
 * keeping every address gives back the value byte for byte; replacing every address with a
 * plain one gives a value that parses again with the same number of addresses; the canonical
 * form of every address found succeeds. */
#include <errno.h>

#include "fuzz.h"
#include "mail/addr-canonical.h"
#include "mail/header-address.h"

typedef struct Count {
        size_t calls;
        int mode;   /* 0 keep, 1 replace, 2 canonical form */
} Count;

static int visit(const char *addr, void *userdata, char **ret_new) {
        Count *c = userdata;
        c->calls++;
        if (c->mode == 0)
                return 0;
        if (c->mode == 1)
                return (*ret_new = strdup("x@y.example")) ? 1 : -ENOMEM;
        AddrCanonicalContext ctx = { .origin = "example.org", .domain = "example.org", .append_at_origin = true,
                                     .append_dot_domain = true, .swap_bangpath = true, .percent_hack = true };
        char *out = NULL;
        int r = addr_canonical_form(&ctx, addr, &out);
        FUZZ_CHECK(r >= 0 && out);
        free(out);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *v = (const char *) data;
        StrBuf out = STRBUF_INIT;
        Count keep = { .mode = 0 };

        int r = header_address_rewrite(v, size, visit, &keep, &out);
        if (r == -EINVAL) {
                FUZZ_CHECK(out.len == 0 && keep.calls == 0);
                strbuf_done(&out);
                return 0;
        }
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(out.len == size && memcmp(out.data ? out.data : "", v, size) == 0);
        strbuf_reset(&out);

        Count repl = { .mode = 1 };
        r = header_address_rewrite(v, size, visit, &repl, &out);
        FUZZ_CHECK(r >= 0 && (size_t) r == keep.calls && repl.calls == keep.calls);
        StrBuf again = STRBUF_INIT;
        Count check = { .mode = 0 };
        r = header_address_rewrite(out.data ? out.data : "", out.len, visit, &check, &again);
        FUZZ_CHECK(r == 0 && check.calls == keep.calls);
        strbuf_done(&again);

        Count canon = { .mode = 2 };
        strbuf_reset(&out);
        FUZZ_CHECK(header_address_rewrite(v, size, visit, &canon, &out) == 0);
        strbuf_done(&out);
        return 0;
}
