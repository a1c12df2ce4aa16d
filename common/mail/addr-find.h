/* addr-find.h — looks a mail address up in address tables in the order Postfix uses for them
 * (virtual(5), relocated(5), virtual_mailbox_maps, relay_recipient_maps):
 *
 *   1. user+ext@domain   in every table; regexp:, pcre: and cidr: tables see only this key
 *   2. user@domain       without the extension, when recipient_delimiter splits one off
 *   3. user+ext, user    only with ADDR_FIND_LOCALPART (the domain is local or $myorigin), or
 *                        when addr_find_match()'s is_local() says so
 *   4. @domain
 *
 * Keys 2-4 are asked only of tables that look keys up as they are (table_list_lookup_fixed).
 * The extension starts at the first recipient_delimiter character that is not the first
 * character of the local part (several delimiter characters may be given, as Postfix 2.11+).
 * Tables fold case themselves. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../conf/table.h"

typedef enum AddrFindFlags {
        ADDR_FIND_LOCALPART = 1 << 0,   /* also try the local part alone (steps 3) */
} AddrFindFlags;

/* The length of local without its extension (strlen(local) when it has none). */
size_t addr_find_base_length(const char *local, const char *delimiters);

/* Searches maps for local@domain (domain NULL: the local part alone, as for step 3).
 * 1 and *ret_value (caller frees; ret_value may be NULL) when found, 0 when not, <0 when a
 * table failed (the search stops there: answer 4xx, never "unknown"). */
int addr_find(TableList *maps, const char *local, const char *domain, const char *delimiters,
              AddrFindFlags flags, char **ret_value);

/* What addr_find_match() asks and tells besides addr_find()'s arguments (virtual(5) expansion
 * needs it). Set the inputs, zero the rest. */
typedef struct AddrFindMatch {
        /* Without ADDR_FIND_LOCALPART: asked, only when steps 1-2 found nothing, whether step 3
         * applies to domain: 1 yes, 0 no, <0 an error that ends the search. May be NULL. */
        int (*is_local)(const char *domain, void *userdata);
        void *userdata;
        TableNotes *notes;          /* what the step 1 lookup noted (pattern tables); may be NULL */
        char *key;                  /* out: the key that matched or failed (the domain when is_local
                                     * failed); caller frees */
        bool without_extension;     /* out: the key that matched lacked the extension */
} AddrFindMatch;

/* addr_find() with *m; m->key and m->without_extension are set on every return but -ENOMEM. */
int addr_find_match(TableList *maps, const char *local, const char *domain, const char *delimiters,
                    AddrFindFlags flags, AddrFindMatch *m, char **ret_value);
