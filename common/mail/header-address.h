/* header-address.h — the addresses of RFC 5322 address headers (From:, To:, Cc:, Resent-*, ...),
 * found and replaced without disturbing anything else in the header.
 *
 * header_address_rewrite() parses a header value as an address-list (mailboxes, name-addrs with
 * phrases, groups "name: a, b;", comments, quoted strings, domain literals, obsolete source
 * routes and empty list elements; folding whitespace anywhere CFWS may stand) and calls a
 * function for each address with the addr-spec as written minus comments and whitespace
 * ("john.doe@example.org", "\"a b\"@x", "@a,@b:u@c", "user"). What the function returns replaces
 * only that addr-spec: phrases, comments, separators, quoting and line folding around it are
 * copied unchanged. A value that does not parse (an unclosed quote, comment, domain literal or
 * angle bracket, two words where an address should be, a control character) is refused as a
 * whole with -EINVAL before the function is called once, so a header is never half rewritten.
 * "<>" is not an address and is left alone. Text is bytes: UTF-8 (RFC 6532) counts as atom text.
 *
 * header_address_kind() says which headers hold sender or recipient addresses (Postfix's list). */
#pragma once

#include <stddef.h>

#include "../basic/strbuf.h"

typedef enum HeaderAddressKind {
        HEADER_ADDRESS_NONE,
        HEADER_ADDRESS_SENDER,      /* From, Sender, Reply-To, Errors-To, Return-Receipt-To, Resent-From/-Sender/-Reply-To */
        HEADER_ADDRESS_RECIPIENT,   /* To, Cc, Bcc, Apparently-To, Resent-To/-Cc/-Bcc */
} HeaderAddressKind;

/* The kind of the header named by the n bytes at name (case-insensitive). */
HeaderAddressKind header_address_kind(const char *name, size_t n);

/* Called with each addr-spec (NUL-terminated). Returns 1 and sets *ret_new (allocated) to replace
 * it, 0 to keep it, or a negative errno that ends the rewrite. */
typedef int (*HeaderAddressFn)(const char *addr, void *userdata, char **ret_new);

/* Appends value (n bytes) with its addresses replaced as fn says to out. Returns how many were
 * replaced, -EINVAL when the value is not an address-list (out untouched, fn never called),
 * fn's error, or -ENOMEM (out may then hold part of the result). */
int header_address_rewrite(const char *value, size_t n, HeaderAddressFn fn, void *userdata, StrBuf *out);
