/* test-address.c — unit tests for RFC 5321 path parsing: a table of good and hostile paths with
 * the expected external form, parts, ESMTP parameters or failure reason; bare addresses;
 * domain normalisation (IDN, literals, LDH rules); local-part quoting. */
#include <stdint.h>

#include "address.h"
#include "../basic/tests.h"

#define U ADDRESS_SMTPUTF8
#define E ADDRESS_ALLOW_EMPTY

static const struct {
        const char *in;
        AddressFlags flags;
        const char *external;    /* NULL: must fail */
        const char *local;
        const char *domain;      /* "-" = no domain */
        const char *params;
        const char *reason;      /* expected reason on failure (NULL = any) */
} paths[] = {
        { "<user@example.org>", 0, "user@example.org", "user", "example.org", "", NULL },
        { "  <User@EXAMPLE.Org>", 0, "User@example.org", "User", "example.org", "", NULL },
        { "<>", E, "", "", "-", "", NULL },
        { "<>", 0, NULL, NULL, NULL, NULL, "Empty address" },
        { "<> SIZE=100", E, "", "", "-", "SIZE=100", NULL },
        { "<@a,@b:u@c>", 0, "u@c", "u", "c", "", NULL },
        { "<@a.example:u@c.example> BODY=8BITMIME", 0, "u@c.example", "u", "c.example", "BODY=8BITMIME", NULL },
        { "<@a,u@c>", 0, NULL, NULL, NULL, NULL, "Bad source route" },
        { "<@-a:u@c>", 0, NULL, NULL, NULL, NULL, "Bad domain in source route" },
        { "<@a:>", 0, NULL, NULL, NULL, NULL, "Missing mailbox after source route" },
        { "<\"a b\"@x.org>", 0, "\"a b\"@x.org", "a b", "x.org", "", NULL },
        { "<\"a\\\"b\"@x.org>", 0, "\"a\\\"b\"@x.org", "a\"b", "x.org", "", NULL },
        { "<\"user\"@x.org>", 0, "user@x.org", "user", "x.org", "", NULL },
        { "<\"a>b\"@x.org> X=1", 0, "\"a>b\"@x.org", "a>b", "x.org", "X=1", NULL },
        { "<\"user@dom\"@dom>", 0, "\"user@dom\"@dom", "user@dom", "dom", "", NULL },
        { "<\"\"@x.org>", 0, "\"\"@x.org", "", "x.org", "", NULL },
        { "<\"abc@x.org>", 0, NULL, NULL, NULL, NULL, "Missing closing '>'" },
        { "<\"abc\"x@x.org>", 0, NULL, NULL, NULL, NULL, "Junk after quoted local part" },
        { "<u@[127.0.0.1]>", 0, "u@[127.0.0.1]", "u", "[127.0.0.1]", "", NULL },
        { "<u@[IPv6:::1]>", 0, "u@[IPv6:::1]", "u", "[IPv6:::1]", "", NULL },
        { "<u@[ipv6:2001:DB8::1]>", 0, "u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]", "", NULL },
        { "<u@[IPv6:1.2.3.4]>", 0, NULL, NULL, NULL, NULL, "Bad IPv6 address literal" },
        { "<u@[127.0.0.01]>", 0, NULL, NULL, NULL, NULL, "Bad IPv4 address literal" },
        { "<u@[256.0.0.1]>", 0, NULL, NULL, NULL, NULL, "Bad IPv4 address literal" },
        { "<u@[x-tag:stuff]>", 0, NULL, NULL, NULL, NULL, "Unsupported address literal" },
        { "<u@[127.0.0.1>", 0, NULL, NULL, NULL, NULL, "Missing ']' in address literal" },
        { "<u@[]>", 0, NULL, NULL, NULL, NULL, "Empty address literal" },
        { "<u@[>", 0, NULL, NULL, NULL, NULL, "Missing ']' in address literal" },
        { "<u@1.2.3.4>", 0, NULL, NULL, NULL, NULL, "Numeric domain must be an address literal" },
        { "<u@xn--bcher-kva.example>", 0, "u@xn--bcher-kva.example", "u", "xn--bcher-kva.example", "", NULL },
        { "<u@XN--BCHER-KVA.example>", 0, "u@xn--bcher-kva.example", "u", "xn--bcher-kva.example", "", NULL },
        { "<u@xn--zz.example>", 0, NULL, NULL, NULL, NULL, "Bad internationalised domain name" },
        { "<u@B\xc3\xbc" "cher.example>", U, "u@xn--bcher-kva.example", "u", "xn--bcher-kva.example", "", NULL },
        { "<u@B\xc3\x9c" "CHER.Example>", U, "u@xn--bcher-kva.example", "u", "xn--bcher-kva.example", "", NULL },
        { "<u@fa\xc3\x9f.de>", U, "u@xn--fa-hia.de", "u", "xn--fa-hia.de", "", NULL },
        { "<u@\xc3\xbc..de>", U, NULL, NULL, NULL, NULL, "Empty label in domain" },
        { "<u@-\xc3\xbc.de>", U, NULL, NULL, NULL, NULL, NULL },
        { "<\"j\xc3\xb6 rg\"@x.org>", U, "\"j\xc3\xb6 rg\"@x.org", "j\xc3\xb6 rg", "x.org", "", NULL },
        { "<u@B\xc3\xbc" "cher.example>", 0, NULL, NULL, NULL, NULL, "Non-ASCII address requires SMTPUTF8" },
        { "<j\xc3\xb6rg@example.org>", U, "j\xc3\xb6rg@example.org", "j\xc3\xb6rg", "example.org", "", NULL },
        { "<j\xc3\xb6rg@example.org>", 0, NULL, NULL, NULL, NULL, "Non-ASCII address requires SMTPUTF8" },
        { "<j\xc0\xafrg@example.org>", U, NULL, NULL, NULL, NULL, "Invalid UTF-8 in address" },   /* overlong */
        { "<j\xed\xa0\x80@example.org>", U, NULL, NULL, NULL, NULL, "Invalid UTF-8 in address" }, /* surrogate */
        { "<j\xf4\x90\x80\x80@example.org>", U, NULL, NULL, NULL, NULL, "Invalid UTF-8 in address" },
        { "<j\xc3@example.org>", U, NULL, NULL, NULL, NULL, "Invalid UTF-8 in address" },
        { "<j\xff@example.org>", U, NULL, NULL, NULL, NULL, "Invalid UTF-8 in address" },
        { "<user@dom@dom>", 0, NULL, NULL, NULL, NULL, "Extra '@' in address" },
        { "<user@example.org", 0, NULL, NULL, NULL, NULL, "Missing closing '>'" },
        { "user@example.org", 0, NULL, NULL, NULL, NULL, "Missing '<'" },
        { "", 0, NULL, NULL, NULL, NULL, "Missing address" },
        { "<user@example.org>x", 0, NULL, NULL, NULL, NULL, "Missing space after '>'" },
        { "<u\001@x.org>", 0, NULL, NULL, NULL, NULL, "Control character in address" },
        { "<\"u\001\"@x.org>", 0, NULL, NULL, NULL, NULL, "Control character in address" },
        { "<u@x\x7f.org>", 0, NULL, NULL, NULL, NULL, "Control character in address" },
        { "<u\0@x.org>", 0, NULL, NULL, NULL, NULL, "Missing closing '>'" },  /* NUL ends the string */
        { "<u@-bad.org>", 0, NULL, NULL, NULL, NULL, "Domain label starts or ends with '-'" },
        { "<u@bad-.org>", 0, NULL, NULL, NULL, NULL, "Domain label starts or ends with '-'" },
        { "<u@a..b>", 0, NULL, NULL, NULL, NULL, "Empty label in domain" },
        { "<u@.a>", 0, NULL, NULL, NULL, NULL, "Empty label in domain" },
        { "<u@a.>", 0, NULL, NULL, NULL, NULL, "Empty label in domain" },
        { "<u@a_b.org>", 0, NULL, NULL, NULL, NULL, "Bad character in domain" },
        { "<u@>", 0, NULL, NULL, NULL, NULL, "Missing domain" },
        { "<u>", 0, NULL, NULL, NULL, NULL, "Missing domain" },
        { "<postmaster>", ADDRESS_ALLOW_NO_DOMAIN, "postmaster", "postmaster", "-", "", NULL },
        /* fuzz-address: an empty quoted local part without a domain was the null address */
        { "<\"\">", ADDRESS_ALLOW_NO_DOMAIN, NULL, NULL, NULL, NULL, "Empty address" },
        { "\"\"", ADDRESS_ALLOW_NO_DOMAIN | ADDRESS_ALLOW_NO_BRACKETS, NULL, NULL, NULL, NULL, "Empty address" },
        { "<\"\">", ADDRESS_ALLOW_NO_DOMAIN | E, "", "", "-", "", NULL },
        { "<.u@x>", 0, NULL, NULL, NULL, NULL, "Local part starts with '.'" },
        { "<u.@x>", 0, NULL, NULL, NULL, NULL, "Local part ends with '.'" },
        { "<u..v@x>", 0, NULL, NULL, NULL, NULL, "Consecutive dots in local part" },
        { "<u v@x>", 0, NULL, NULL, NULL, NULL, "Bad character in local part" },
        { "<u\"v@x>", 0, NULL, NULL, NULL, NULL, NULL },
        { "<u(c)@x>", 0, NULL, NULL, NULL, NULL, "Bad character in local part" },
        { "<@x.org>", 0, NULL, NULL, NULL, NULL, "Bad source route" },
        { "<u+tag@x.org> NOTIFY=NEVER ORCPT=rfc822;u@x.org", 0, "u+tag@x.org", "u+tag", "x.org",
          "NOTIFY=NEVER ORCPT=rfc822;u@x.org", NULL },
        { "user@example.org SIZE=1", ADDRESS_ALLOW_NO_BRACKETS, "user@example.org", "user", "example.org", "SIZE=1", NULL },
        { "<user@example.org>", ADDRESS_ALLOW_NO_BRACKETS, "user@example.org", "user", "example.org", "", NULL },
        { "<a.b-c_d!#$%&'*+/=?^`{|}~@x.org>", 0, "a.b-c_d!#$%&'*+/=?^`{|}~@x.org", "a.b-c_d!#$%&'*+/=?^`{|}~",
          "x.org", "", NULL },
};

static void check_path(size_t i) {
        Address *a = NULL;
        const char *params = NULL, *reason = NULL;
        int r = address_parse_path(paths[i].in, paths[i].flags, &a, &params, &reason);

        if (!paths[i].external) {
                if (r != -EINVAL || a || !reason) {
                        fprintf(stderr, "entry %zu (%s): expected failure, got %d\n", i, paths[i].in, r);
                        exit(1);
                }
                if (paths[i].reason && strcmp(reason, paths[i].reason) != 0) {
                        fprintf(stderr, "entry %zu (%s): reason \"%s\", expected \"%s\"\n", i, paths[i].in,
                                reason, paths[i].reason);
                        exit(1);
                }
                return;
        }
        if (r != 0) {
                fprintf(stderr, "entry %zu (%s): failed %d (%s)\n", i, paths[i].in, r, strna(reason));
                exit(1);
        }
        CHECK_STR(a->external, paths[i].external);
        CHECK_STR(a->local, paths[i].local);
        if (streq(paths[i].domain, "-"))
                CHECK(a->domain == NULL);
        else
                CHECK_STR(a->domain, paths[i].domain);
        CHECK_STR(params, paths[i].params);
        address_free(a);
}

static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);
        CHECK(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static void check_lengths(void) {
        char buf[1024];
        _cleanup_free_ char *l64 = repeat('a', 64), *l65 = repeat('a', 65);
        _cleanup_free_ char *lab63 = repeat('b', 63), *lab64 = repeat('b', 64);
        Address *a = NULL;
        const char *reason = NULL, *params;

        snprintf(buf, sizeof buf, "<%s@x.org>", l64);
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), 0);
        a = address_free(a);
        snprintf(buf, sizeof buf, "<%s@x.org>", l65);
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), -EINVAL);
        CHECK_STR(reason, "Local part too long");
        snprintf(buf, sizeof buf, "<\"%s\"@x.org>", l64);   /* 66 octets with the quotes */
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), -EINVAL);
        CHECK_STR(reason, "Local part too long");

        snprintf(buf, sizeof buf, "<u@%s.org>", lab63);
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), 0);
        a = address_free(a);
        snprintf(buf, sizeof buf, "<u@%s.org>", lab64);
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), -EINVAL);
        CHECK_STR(reason, "Domain label too long");

        /* 4 labels of 63 + 3 dots = 255: fine as a domain; the whole path stays <= 256 */
        snprintf(buf, sizeof buf, "%s.%s.%s.%s", lab63, lab63, lab63, lab63);
        _cleanup_free_ char *norm = NULL;
        CHECK_INT(domain_normalise(buf, false, &norm, &reason), 0);
        snprintf(buf, sizeof buf, "<u@%s.%s.%s.%s>", lab63, lab63, lab63, lab63);
        CHECK_INT(address_parse_path(buf, 0, &a, &params, &reason), -EINVAL);
        CHECK_STR(reason, "Address too long");
        snprintf(buf, sizeof buf, "%s.%s.%s.%s.x", lab63, lab63, lab63, lab63);
        char *n2 = NULL;
        CHECK_INT(domain_normalise(buf, false, &n2, &reason), -EINVAL);
        CHECK_STR(reason, "Domain name too long");
        CHECK(n2 == NULL);

        /* very long hostile input does not crash */
        _cleanup_free_ char *huge = repeat('<', 100000);
        CHECK_INT(address_parse_path(huge, 0, &a, &params, &reason), -EINVAL);
        _cleanup_free_ char *huge2 = repeat('a', 100000);
        huge2[0] = '<';
        huge2[99999] = '>';
        CHECK_INT(address_parse_path(huge2, 0, &a, &params, &reason), -EINVAL);
        CHECK_STR(reason, "Address too long");
}

static const struct { const char *in; AddressFlags flags; const char *external; } bare[] = {
        { "user@example.org", 0, "user@example.org" },
        { "\"a b\"@example.org", 0, "\"a b\"@example.org" },
        { "postmaster", ADDRESS_ALLOW_NO_DOMAIN, "postmaster" },
        { "postmaster", 0, NULL },
        { "", ADDRESS_ALLOW_EMPTY, "" },
        { "", 0, NULL },
        { "<user@example.org>", 0, NULL },
        { "user@example.org ", 0, NULL },
        { "@example.org", 0, NULL },
};

static const struct { const char *local; const char *quoted; } quotes[] = {
        { "user", "user" },
        { "a.b", "a.b" },
        { "a b", "\"a b\"" },
        { "a\"b", "\"a\\\"b\"" },
        { "a\\b", "\"a\\\\b\"" },
        { ".a", "\".a\"" },
        { "a.", "\"a.\"" },
        { "a..b", "\"a..b\"" },
        { "", "\"\"" },
        { "a@b", "\"a@b\"" },
        { "j\xc3\xb6rg", "j\xc3\xb6rg" },
};

/* Random strings over an alphabet of syntax characters: nothing crashes, results are
 * consistent (success has an external form that parses again to the same address). */
static void check_random(void) {
        static const char alphabet[] = "<>@\"\\.,:[]-aZ09 +=\t\x01\x7f\xc3\xa4\xff\x80xnIPv6";
        uint64_t x = 88172645463325252ULL;
        char buf[80];
        int ok = 0;

        for (int iter = 0; iter < 200000; iter++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                size_t n = x % (sizeof buf - 1);
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        buf[i] = alphabet[x % (sizeof alphabet - 1)];
                }
                buf[n] = '\0';
                AddressFlags flags = (AddressFlags) (x >> 32) & 15;
                Address *a = NULL;
                const char *params = NULL, *reason = NULL;
                int r = address_parse_path(buf, flags, &a, &params, &reason);
                if (r < 0) {
                        CHECK(reason && !a);
                        continue;
                }
                CHECK(a && params && params >= buf && params <= buf + n);
                CHECK(strlen(a->external) <= ADDRESS_PATH_MAX);
                if (a->external[0]) {
                        Address *b = NULL;
                        CHECK_INT(address_parse(a->external, flags, &b, &reason), 0);
                        CHECK_STR(b->external, a->external);
                        CHECK_STR(b->local, a->local);
                        address_free(b);
                }
                ok++;
                address_free(a);
        }
        CHECK(ok > 1000);   /* the generator does reach the success paths */
}

static const struct { const char *s; bool valid; } utf8[] = {
        { "", true },
        { "MAIL FROM:<a@b>", true },
        { "j\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x98\x80", true },   /* 2, 3 and 4 byte forms */
        { "\xf4\x8f\xbf\xbf", true },                            /* U+10FFFF */
        { "\xc0\xaf", false },                                     /* overlong '/' */
        { "\xe0\x80\xaf", false },                                 /* overlong, 3 bytes */
        { "\xf0\x80\x80\xaf", false },                             /* overlong, 4 bytes */
        { "\xed\xa0\x80", false },                                 /* surrogate U+D800 */
        { "\xf4\x90\x80\x80", false },                             /* above U+10FFFF */
        { "a\x80" "b", false },                                       /* bare continuation byte */
        { "\xc3", false },                                         /* truncated */
        { "\xe2\x82", false },
        { "\xc3\x28", false },                                     /* bad continuation */
        { "\xff", false },
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(utf8); i++)
                if (utf8_is_valid(utf8[i].s, strlen(utf8[i].s)) != utf8[i].valid) {
                        fprintf(stderr, "utf8_is_valid(case %zu): expected %d\n", i, utf8[i].valid);
                        return 1;
                }
        check_random();
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                check_path(i);
        check_lengths();

        for (size_t i = 0; i < ELEMENTSOF(bare); i++) {
                Address *a = NULL;
                const char *reason = NULL;
                int r = address_parse(bare[i].in, bare[i].flags, &a, &reason);
                if (!bare[i].external) {
                        CHECK_INT(r, -EINVAL);
                        CHECK(reason != NULL);
                        CHECK(a == NULL);
                } else {
                        CHECK_INT(r, 0);
                        CHECK_STR(a->external, bare[i].external);
                        address_free(a);
                }
        }

        for (size_t i = 0; i < ELEMENTSOF(quotes); i++) {
                _cleanup_free_ char *q = address_quote_local(quotes[i].local);
                CHECK_STR(q, quotes[i].quoted);
        }

        /* quoting and parsing round trip */
        for (size_t i = 0; i < ELEMENTSOF(quotes); i++) {
                _cleanup_address_free_ Address *a = NULL, *b = NULL;
                const char *reason;
                CHECK_INT(address_new(quotes[i].local, "example.org", &a), 0);
                CHECK_INT(address_parse(a->external, ADDRESS_SMTPUTF8, &b, &reason), 0);
                CHECK_STR(b->local, quotes[i].local);
                CHECK_STR(b->external, a->external);
        }

        _cleanup_address_free_ Address *null = NULL;
        CHECK_INT(address_new("", NULL, &null), 0);
        CHECK_STR(null->external, "");

        _cleanup_free_ char *d = NULL;
        const char *reason = NULL;
        CHECK_INT(domain_normalise("Example.ORG", false, &d, &reason), 0);
        CHECK_STR(d, "example.org");
        CHECK(domain_equal("Example.org", "example.ORG"));
        CHECK(!domain_equal("example.org", "example.org."));
        CHECK(!domain_equal("example.org", NULL));
        return 0;
}
