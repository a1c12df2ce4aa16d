/* table-ldap.h — the ldap: lookup table behind table.c (Postfix ldap_table(5) settings).
 * Internal to common/conf: callers use table.h. */
#pragma once

#include <stdbool.h>

typedef struct TableLdap TableLdap;

/* Whether the .cf at path names a server reached over the network (any server_host that is not
 * ldapi://; the default localhost is); true when it cannot be read. Works without libldap. */
bool table_ldap_uses_network(const char *path);
/* Whether this build has libldap (without it ldap: tables are refused at open). */
bool table_ldap_supported(void);
/* Reads the .cf file at path; connects only at the first lookup. */
int table_ldap_open(const char *path, TableLdap **ret, char **ret_reason);
TableLdap *table_ldap_free(TableLdap *t);
/* Searches for key: 1 and *ret_value (results joined with ","), 0, or -EIO when the server is
 * down, slow or refusing (the connection is dropped and made again by a later lookup). */
int table_ldap_lookup(TableLdap *t, const char *key, char **ret_value);
/* Why the last lookup failed (the server's words), or NULL. */
const char *table_ldap_last_error(const TableLdap *t);
