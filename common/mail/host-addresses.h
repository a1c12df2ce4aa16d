/* host-addresses.h — this host's addresses, as Postfix's $inet_interfaces and $proxy_interfaces
 * name them: their numeric entries ("192.0.2.1", "2001:db8::1", also "[...]" and "[IPv6:...]"),
 * every address of every interface for "all" (getifaddrs(), read when the set is built), and
 * 127.0.0.1 and ::1 for "loopback-only". Host names are not resolved: they are handed back as
 * unsupported for the caller to report. When "all" cannot list the interfaces, the loopback
 * addresses stand in and ifaddrs_error says why.
 *
 * Used for Postfix's "this host's addresses": [address] literals of them are local destinations
 * (addr-class.c, and smtpd's virtual(5) "user" keys), and permit_inet_interfaces clients
 * (local_header_rewrite_clients). Pure: no logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../conf/conf.h"

typedef struct HostAddresses {
        unsigned char (*v)[17];   /* family byte (4 or 6) + 16 address bytes, no duplicates */
        size_t n;
        int ifaddrs_error;        /* <0: "all" could not list the interfaces (only loopback counts) */
} HostAddresses;

/* Adds the addresses the entries of list name (NULL: none). Entries that name no address (host
 * names) are appended to *ret_unsupported (NULL-terminated, caller frees with strv_free(); may
 * stay NULL; ret_unsupported may be NULL). Only -ENOMEM fails. */
int host_addresses_add(HostAddresses *h, char *const *list, char ***ret_unsupported);
/* The same for $inet_interfaces, and $proxy_interfaces too when proxy is set (listener
 * overrides apply when listener is not NULL). */
int host_addresses_load(HostAddresses *h, Conf *c, const char *listener, bool proxy, char ***ret_unsupported);
void host_addresses_done(HostAddresses *h);

/* Whether text is one of the addresses: "192.0.2.1", "::1" (a client address), or an entry as
 * $inet_interfaces spells it. */
bool host_addresses_has(const HostAddresses *h, const char *text);
/* Whether domain is an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") of one of them. */
bool host_addresses_has_literal(const HostAddresses *h, const char *domain);
