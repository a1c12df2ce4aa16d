/* domain-list.h — a list of domains as Postfix's mydestination and relay_domains spell it:
 * names (matched case-insensitively, a trailing dot ignored, ".example.org" matching only
 * subdomains), type:name lookup tables (a key that is found matches), and "/file/name" entries,
 * read once when the list is built: the file's names and tables, separated by blanks, commas or
 * newlines, "#" comment lines (docker-mailserver's /etc/postfix/vhost). With parent_matches
 * ("example.org" also matches "sub.example.org", Postfix's parent_domain_matches_subdomains
 * behaviour for relay_domains) tables are also asked for each parent domain. Address literals
 * ("[192.0.2.1]") never match.
 *
 * Every role decides "is this domain ours?" with the same code: smtpd (relay control, local
 * recipient checks), qmgr (routing) and local (alias expansions). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include "../conf/table.h"

typedef struct DomainList {
        char **names;         /* lower case, no trailing dot */
        Table **tables;
        size_t n_tables;
        bool parent_matches;
} DomainList;

/* Builds the list from entries (as conf_get_list() returns them). An entry that cannot be used
 * (a table or file that does not open, a file naming another file: -EOPNOTSUPP) fails with
 * *ret_reason naming it. */
int domain_list_init(DomainList *dl, char **entries, bool parent_matches, char **ret_reason);
void domain_list_done(DomainList *dl);
/* 1 = listed, 0 = not, <0 = a table lookup error (answer 4xx / defer rather than guess). */
int domain_list_match(DomainList *dl, const char *domain);
