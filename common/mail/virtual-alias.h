/* virtual-alias.h — virtual(5) alias expansion of one recipient through virtual_alias_maps, as
 * Postfix's cleanup(8) does it before a message is queued. Pure: no logging, no settings of its
 * own; the caller (postern-smtpd's smtpd-virtual.c) passes the tables, limits and the local
 * domain test, and decides what an error means for the message.
 *
 * Lookup order (addr-find.h's, through addr_find_match()) for user+ext@domain (the extension
 * starts at the first character of recipient_delimiter found after the first character of the
 * local part; several delimiter characters are allowed, as in Postfix 2.11+): user+ext@domain,
 * user@domain, then — only when domain is $myorigin or local_domain() says it is ours
 * ($mydestination, $inet_interfaces, $proxy_interfaces) — user+ext and user, and last @domain.
 * Pattern tables (regexp:, pcre:, cidr:) are asked only for the full address. The first key
 * found wins.
 *
 * A result is a list of addresses separated by commas or white space ("<a@b>" and quoted local
 * parts are understood). A first result "@otherdomain" means the same user (without an unmatched
 * extension) in otherdomain. A result without a domain gets "@$myorigin" (append_at_myorigin).
 * When the key matched only without the extension and propagate is set, the extension (with its
 * delimiter) is appended to the local part of every result address. Each result is parsed and
 * normalised like an envelope address; one that cannot be parsed is a table error.
 *
 * Recursion: each result is looked up again; the first result of an address takes its place and
 * the others are appended and expanded in turn. An address whose expansion includes itself (the
 * "a@x  a@x, b@y" idiom) is kept and not expanded again. Limits: more than expansion_limit
 * addresses in one expansion, more than recursion_limit nested lookups for one address, or a
 * result longer than address_length_limit fail the expansion; so does an address met again in
 * its own chain of first results (a loop: a -> b -> a), which Postfix would only notice at the
 * recursion limit. Duplicate results (compared case-insensitively) are removed, first one kept. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../conf/table.h"

typedef struct VirtualAlias {
        TableList *maps;                 /* virtual_alias_maps; NULL or empty: nothing is aliased */
        const char *delimiters;          /* recipient_delimiter; NULL or "": no extensions */
        bool propagate;                  /* propagate_unmatched_extensions lists "virtual" */
        unsigned recursion_limit;        /* virtual_alias_recursion_limit (0 = 1000) */
        unsigned expansion_limit;        /* virtual_alias_expansion_limit (0 = 1000) */
        size_t address_length_limit;     /* virtual_alias_address_length_limit (0 = 1000) */
        const char *myorigin;            /* "user" lookups for this domain; appended to bare results */
        /* Whether domain is ours for "user" lookups: 1 yes, 0 no, <0 an error (a failed table). */
        int (*local_domain)(const char *domain, void *userdata);
        /* Called with each table warning (a regexp: rule skipped for an unsafe $number); may be
         * NULL. Open the tables with TABLE_REGSUB_SAFE: text copied from an address must not
         * become a list separator or a second address. */
        void (*warn)(const char *line, void *userdata);
        /* Called after each lookup that aliased an address (before recursion and before
         * duplicates are removed): the address, the key that matched, the table's value and the
         * result addresses. For `posternctl route`'s tree; may be NULL. */
        void (*expanded)(const char *address, const char *key, const char *value, char *const *results,
                         size_t n_results, void *userdata);
        void *userdata;
} VirtualAlias;

typedef enum VirtualAliasError {
        VIRTUAL_ALIAS_OK,
        VIRTUAL_ALIAS_TABLE,        /* a lookup failed or gave no usable address: try again later */
        VIRTUAL_ALIAS_EXPANSION,    /* more than expansion_limit addresses */
        VIRTUAL_ALIAS_NESTING,      /* more than recursion_limit nested lookups */
        VIRTUAL_ALIAS_LOOP,         /* an address came back in its own chain */
        VIRTUAL_ALIAS_LENGTH,       /* a result longer than address_length_limit */
} VirtualAliasError;

/* One lookup of address in Postfix's search order, without recursion or result processing:
 * 1 with *ret_value (the table's value, caller frees), 0 when no key matched, <0 when a lookup
 * (or the local domain test) failed. For RCPT-time "is this address known?" checks, which
 * Postfix answers yes for any address virtual_alias_maps has. */
int virtual_alias_find(const VirtualAlias *va, const char *address, char **ret_value);

/* Expands address (external form, "user@domain"). Returns 1 when it was aliased, 0 when not;
 * either way *ret_list is the final list of recipients (NULL-terminated, at least one entry; the
 * address itself when not aliased; caller frees with strv_free()). On failure returns -EIO (a
 * table error: *ret_error is VIRTUAL_ALIAS_TABLE) or -ELOOP (a limit or a loop), sets *ret_error
 * and *ret_reason (allocated, e.g. "unreasonable virtual_alias_maps map nesting for a@example.org",
 * "virtual_alias_maps loop for a@x: a@x -> b@x -> a@x"), and leaves *ret_list alone; -ENOMEM when
 * memory runs out. ret_error and ret_reason may be NULL. */
int virtual_alias_expand(const VirtualAlias *va, const char *address, char ***ret_list,
                         VirtualAliasError *ret_error, char **ret_reason);
