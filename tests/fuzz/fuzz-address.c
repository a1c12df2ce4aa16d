/* fuzz-address — address_parse_path() and address_parse() (common/mail/address.c).
 *
 * Input: byte 0 picks the AddressFlags (low 4 bits) and the entry point (bit 4: bare address,
 * else MAIL/RCPT path); the rest is the text. Whatever parses must be self-consistent and
 * round-trip: its external form parses again (bare and in <...>) to the same local part, domain
 * and external form, and its domain is a fixed point of domain_normalise(). */
#include <errno.h>

#include "fuzz.h"
#include "mail/address.h"

static bool same(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const Address *a, const Address *b) {
        FUZZ_CHECK(same(a->external, b->external));
        FUZZ_CHECK(same(a->local, b->local));
        FUZZ_CHECK(same(a->domain, b->domain));
}

static void check_roundtrip(const Address *a, AddressFlags flags) {
        const char *why = NULL;

        FUZZ_CHECK(a->external && a->local);
        if (a->external[0] == '\0') {
                /* only <> (or an empty bare address) gives the null address */
                FUZZ_CHECK(flags & ADDRESS_ALLOW_EMPTY);
                FUZZ_CHECK(a->local[0] == '\0' && !a->domain);
                return;
        }
        FUZZ_CHECK(strlen(a->external) <= ADDRESS_PATH_MAX);
        FUZZ_CHECK(strlen(a->local) <= ADDRESS_LOCAL_MAX);
        FUZZ_CHECK(a->domain || (flags & ADDRESS_ALLOW_NO_DOMAIN));

        Address *b = NULL;
        int r = address_parse(a->external, flags, &b, &why);
        if (r < 0)
                fprintf(stderr, "re-parse of \"%s\" failed: %s\n", a->external, why ? why : "?");
        FUZZ_CHECK(r == 0 && b);
        check_same(a, b);
        address_free(b);

        char *bracketed = NULL;
        FUZZ_CHECK(asprintf(&bracketed, "<%s> X=1", a->external) >= 0);
        const char *params = NULL;
        b = NULL;
        r = address_parse_path(bracketed, flags & ~ADDRESS_ALLOW_NO_BRACKETS, &b, &params, &why);
        if (r < 0)
                fprintf(stderr, "re-parse of \"%s\" failed: %s\n", bracketed, why ? why : "?");
        FUZZ_CHECK(r == 0 && b);
        FUZZ_CHECK(params && strcmp(params, "X=1") == 0);
        check_same(a, b);
        address_free(b);
        free(bracketed);

        if (a->domain) {
                char *d = NULL;
                r = domain_normalise(a->domain, flags & ADDRESS_SMTPUTF8, &d, &why);
                FUZZ_CHECK(r == 0 && d && strcmp(d, a->domain) == 0);
                free(d);
                FUZZ_CHECK(domain_equal(a->domain, a->domain));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 4096)
                return 0;
        AddressFlags flags = (AddressFlags) (data[0] & 0x0F);
        bool bare = data[0] & 0x10;
        char *s = fuzz_strndup(data + 1, size - 1);
        Address *a = NULL;
        const char *why = NULL, *params = NULL;
        int r;

        if (bare)
                r = address_parse(s, flags, &a, &why);
        else
                r = address_parse_path(s, flags, &a, &params, &why);
        if (r == 0) {
                FUZZ_CHECK(a);
                if (!bare)
                        FUZZ_CHECK(params && params >= s && params <= s + strlen(s));
                check_roundtrip(a, flags);
        } else {
                FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
                FUZZ_CHECK(!a);
                if (r == -EINVAL)
                        FUZZ_CHECK(why && *why);
        }
        address_free(a);

        /* The quoting helper takes any local part (it only fails on ENOMEM). */
        if (!bare && strlen(s) <= ADDRESS_LOCAL_MAX && s[0]) {
                char *q = address_quote_local(s);
                FUZZ_CHECK(q);
                free(q);
        }
        free(s);
        return 0;
}
