/* addr-canonical.h — Postfix's address rewriting of the queueing step, as pure functions over
 * external-form addresses ("user@domain", "\"a b\"@domain", "" for the null sender):
 *
 *   addr_canonical_form()  trivial-rewrite's "rewrite" step in a context (local: $myorigin and
 *                          $mydomain; remote: $remote_header_rewrite_domain for both): source
 *                          routes dropped, "site!user" -> "user@site" (swap_bangpath),
 *                          "user%domain" -> "user@domain" (allow_percent_hack), "user" ->
 *                          "user@origin" (append_at_myorigin), "user@host" ->
 *                          "user@host.domain" (append_dot_mydomain), a trailing dot dropped;
 *                          and "user%domain@<one of our domains>" -> "user@domain" (the percent
 *                          hack Postfix applies when it resolves a local address).
 *   addr_map_canonical()   canonical(5) lookups: user+ext@domain, user@domain, then (for our
 *                          domains) user+ext, user, then @domain; an unmatched extension is put
 *                          back into the result when propagate_unmatched_extensions says
 *                          "canonical"; a result "@other" keeps the local part; repeated until
 *                          the result maps to itself or nothing (at most 100 steps).
 *   addr_masquerade()      masquerade_domains (first match decides; "!domain" stops without
 *                          stripping) with masquerade_exceptions (local parts never stripped).
 *   addr_rewrite()         the whole chain for one address of a class: canonical form, then
 *                          sender_canonical_maps or recipient_canonical_maps, then
 *                          canonical_maps (each only if its *_classes has the class), then
 *                          masquerading (masquerade_classes).
 *
 * Tables come from common/conf/table.h; a table that fails gives a negative errno (the caller
 * answers 4xx), never a guessed answer. Nothing here logs: oddities in a table entry come back
 * as a warning text for the caller to log. */
#pragma once

#include <stdbool.h>

#include "../conf/table.h"

/* Address classes, as canonical_classes and masquerade_classes name them. */
typedef enum AddrClass {
        ADDR_CLASS_ENVELOPE_SENDER = 1 << 0,
        ADDR_CLASS_ENVELOPE_RECIPIENT = 1 << 1,
        ADDR_CLASS_HEADER_SENDER = 1 << 2,
        ADDR_CLASS_HEADER_RECIPIENT = 1 << 3,
} AddrClass;

/* The class bits of a list of names; -EINVAL with *ret_bad pointing at an unknown name. */
int addr_classes_parse(char *const *names, unsigned *ret, const char **ret_bad);

/* "Is this one of our domains?" — 1 yes, 0 no, <0 a table error. */
typedef int (*AddrDomainFn)(const char *domain, void *userdata);

typedef struct AddrCanonicalContext {
        const char *origin;      /* appended to a bare local part ("" or NULL: nothing) */
        const char *domain;      /* appended to a domain without a dot ("" or NULL: nothing) */
        bool append_at_origin;   /* append_at_myorigin */
        bool append_dot_domain;  /* append_dot_mydomain */
        bool swap_bangpath;
        bool percent_hack;       /* allow_percent_hack */
        AddrDomainFn is_local;   /* for user%domain@local; NULL: never local */
        void *userdata;
} AddrCanonicalContext;

/* The canonical form of addr in *ret (allocated, always set on success). Returns 1 when it
 * differs from addr, 0 when not, <0 on error (-ENOMEM, or is_local's table error). */
int addr_canonical_form(const AddrCanonicalContext *ctx, const char *addr, char **ret);

typedef struct AddrMapOptions {
        const char *delimiters;  /* recipient_delimiter: any of these starts an extension */
        bool propagate;          /* propagate_unmatched_extensions includes "canonical" */
        AddrDomainFn is_ours;    /* domains whose "user" keys apply ($myorigin, $mydestination,
                                  * $inet_interfaces); NULL: only addresses without a domain */
        void *userdata;
} AddrMapOptions;

/* One canonical(5) lookup of addr in maps. Returns 1 with *ret (allocated), 0 when no key
 * matched, -EBADMSG when the entry holds several addresses (*ret_warning says so), or a table
 * error. */
int addr_map_once(TableList *maps, const AddrMapOptions *o, const char *addr, char **ret, char **ret_warning);

/* addr mapped until it stops changing. Returns 1 with *ret when it changed, 0 when not; a
 * multi-valued entry or more than 100 steps leave addr unchanged (0) with *ret_warning set;
 * <0 on a table error. */
int addr_map_canonical(TableList *maps, const AddrMapOptions *o, const char *addr, char **ret, char **ret_warning);

typedef struct AddrMasquerade {
        char **domains;          /* masquerade_domains in order, "!name" kept as written */
        char **except_names;     /* masquerade_exceptions names, lower case */
        TableList *except_tables;   /* ... and its type:table entries, or NULL */
} AddrMasquerade;

/* Builds from the list values (as conf_get_list() returns them); a table that does not open
 * fails with *ret_reason. */
int addr_masquerade_init(AddrMasquerade *m, char *const *domains, char *const *exceptions, char **ret_reason);
void addr_masquerade_done(AddrMasquerade *m);
/* 1 with *ret when addr's domain was stripped to a masquerade domain, 0 when unchanged, <0 on
 * a table error (masquerade_exceptions). */
int addr_masquerade(const AddrMasquerade *m, const char *addr, char **ret);

typedef struct AddrRewrite {
        TableList *canonical_maps, *sender_canonical_maps, *recipient_canonical_maps;
        unsigned canonical_classes, sender_canonical_classes, recipient_canonical_classes;
        unsigned masquerade_classes;
        AddrMasquerade masquerade;
        AddrMapOptions map;
        /* Optional observer of each step ("canonical form", "sender_canonical_maps",
         * "recipient_canonical_maps", "canonical_maps", "masquerade_domains") with the address
         * before and after it (the same text when the step changed nothing); only steps that
         * apply to the class are reported. For `posternctl route`; the daemons leave it NULL. */
        void (*step)(const char *what, const char *before, const char *after, void *userdata);
        void *step_userdata;
} AddrRewrite;

/* The whole chain for addr of class cls in context ctx (the null sender "" is left alone).
 * Returns 1 with *ret when the address changed, 0 when not, <0 on error. Warnings of the map
 * steps (multi-valued entries, loops) are joined in *ret_warning. */
int addr_rewrite(const AddrRewrite *rw, const AddrCanonicalContext *ctx, AddrClass cls, const char *addr,
                 char **ret, char **ret_warning);

/* Splits an external-form address at its last "@" outside quotes: the index of the "@", or -1. */
int addr_domain_at(const char *addr);
