/* address.h — RFC 5321 envelope addresses.
 *
 * address_parse_path() parses the <path> argument of MAIL FROM / RCPT TO: angle brackets, an
 * optional obsolete source route "@a,@b:" (accepted and dropped, as RFC 5321 §4.1.2 requires),
 * a dot-atom or quoted-string local part (max 64 octets), and a domain (max 255 octets) that is
 * either a hostname — checked and normalised with libidn2: lower case, U-labels converted to
 * A-labels — or an address literal ([192.0.2.1], [IPv6:...]). The empty path <> is accepted only
 * with ADDRESS_ALLOW_EMPTY. UTF-8 in the local part is accepted only with ADDRESS_SMTPUTF8.
 * Anything after the closing '>' is returned as the parameter string (ESMTP parameters).
 *
 * Internally an address is kept in its external (RFC 5321) form, local part quoted when it must
 * be, domain normalised: "user@example.org", "\"a b\"@example.org", "" for the null sender. */
#pragma once

#include <stdbool.h>
#include "../basic/macro.h"

#define ADDRESS_LOCAL_MAX 64
#define ADDRESS_DOMAIN_MAX 255
#define ADDRESS_PATH_MAX 256   /* RFC 5321 §4.5.3.1.3, without the angle brackets */

typedef enum AddressFlags {
        ADDRESS_ALLOW_EMPTY   = 1 << 0,  /* <> allowed (MAIL FROM) */
        ADDRESS_SMTPUTF8      = 1 << 1,  /* UTF-8 allowed in local part and domain */
        ADDRESS_ALLOW_NO_BRACKETS = 1 << 2, /* accept "MAIL FROM:user@dom" (Postfix's lenient mode) */
        ADDRESS_ALLOW_NO_DOMAIN = 1 << 3, /* accept a bare local part ("postmaster", sendmail args) */
} AddressFlags;

typedef struct Address {
        char *local;     /* the local part, unquoted (internal form), e.g.  a b  for "a b" */
        char *domain;    /* normalised domain or "[literal]"; NULL when there is none */
        char *external;  /* the whole address in external form; "" for <> */
} Address;

Address *address_free(Address *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(Address *, address_free);
#define _cleanup_address_free_ _cleanup_(address_freep)

/* Parses the text after "FROM:" / "TO:" (leading spaces allowed). On success *ret is the address
 * and *ret_params points into s at the ESMTP parameters (leading spaces skipped, may be "").
 * On failure returns -EINVAL and *ret_reason is a static text naming the problem, suitable for
 * an SMTP reply, e.g. "Domain name too long", "Missing closing '>'", "Bad character in local part". */
int address_parse_path(const char *s, AddressFlags flags, Address **ret, const char **ret_params,
                       const char **ret_reason);

/* Parses a bare address "local@domain" (no angle brackets), e.g. from a sendmail argument or a
 * header's addr-spec, with the same checks. */
int address_parse(const char *s, AddressFlags flags, Address **ret, const char **ret_reason);

/* Builds an Address from an internal-form local part and an optional domain. */
int address_new(const char *local, const char *domain, Address **ret);

/* Normalises a domain: hostname syntax (LDH labels of 1..63, total <= 255), lower case, IDN
 * U-labels to A-labels via libidn2; or an address literal validated with inet_pton. */
int domain_normalise(const char *domain, bool allow_utf8, char **ret, const char **ret_reason);

/* Quotes a local part for external form when it is not a dot-atom. */
char *address_quote_local(const char *local);

/* True when the n bytes at s are strictly valid UTF-8 (no overlongs, surrogates, code points
 * above U+10FFFF or stray continuation bytes); ASCII is valid UTF-8. */
bool utf8_is_valid(const char *s, size_t n);

/* Case-insensitive comparison of a domain against a list entry (exact match). */
bool domain_equal(const char *a, const char *b);
/* A DSN ORCPT value naming address as the client wrote it (RFC 3461 "rfc822;", RFC 6533 "utf-8;"
 * for an address with 8-bit bytes); NULL when out of memory. */
char *address_orcpt(const char *address);
