/* table-cf.h — what the tables configured by a ".cf" file share (ldap:, and through table-sql.c
 * pgsql:, mysql:, sqlite:): reading the file, the "domain" filter, expanding Postfix's %-escapes
 * of query and result templates with each server's escaping, and joining results.
 * Internal to common/conf: callers use table.h.
 *
 *   table_cf_read()     "name = value" lines, "#" comments, blank lines, continuation lines that
 *                       start with whitespace; a name given twice keeps the last value.
 *   table_cf_get()      a setting's value (NULL when absent); remembers that it was asked for,
 *   table_cf_unknown()  so the first setting nobody asked for can be refused by name and line.
 *   table_cf_expand()   %s %u %d %1..%9 %S %U %D %% (see below), escaping what it inserts
 *                       as a TableEscape kind says, or (table_cf_expand_fn) as a server's own
 *                       function does (libpq's and libmariadb's, which know the connection's
 *                       character set).
 *   table_cf_result_add()  one result through result_format, comma-joined to the others.
 *
 * Expansion, as Postfix's *_table(5): in a query (value == key) %s is the key, %u its local part
 * (the whole key when it has no '@'), %d its domain, %1..%9 the domain's labels counted from the
 * right (%1 the top level); %S %U %D are the same as %s %u %d. In a result_format (value = one
 * result, key = the looked-up key) %s %u %d take the result apart, %S %U %D and %1..%9 the key.
 * A part that cannot be filled (no domain, an empty local part, too few labels) suppresses the
 * query or the result: table_cf_expand() then answers 1. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../basic/macro.h"
#include "../basic/strbuf.h"

typedef struct TableCf TableCf;

int table_cf_read(const char *path, TableCf **ret, char **ret_reason);
TableCf *table_cf_free(TableCf *cf);
DEFINE_TRIVIAL_CLEANUP_FUNC(TableCf *, table_cf_free);
const char *table_cf_get(TableCf *cf, const char *name);
/* The same, with the line the setting is on (0 when absent). */
const char *table_cf_get_line(TableCf *cf, const char *name, unsigned *ret_line);
/* The first setting table_cf_get() was never asked for (NULL when none), with its line. */
const char *table_cf_unknown(const TableCf *cf, unsigned *ret_line);
/* Whether every server that path's setting lists (def when it is absent) is reached through a
 * local socket, its name starting with local ("unix:", "ldapi://"); false when the file cannot
 * be read. For postern-generator: postern-local needs no network for such a table. */
bool table_cf_servers_local(const char *path, const char *setting, const char *def, const char *local);
/* Whether the file was readable by everyone when it was read. */
bool table_cf_world_readable(const TableCf *cf);
/* The "domain" setting: whether key (user@domain) is in one of domains; any key when domains is
 * NULL or empty; as in Postfix, none without '@' and none with an empty local part (@domain). */
bool table_cf_domain_ok(char **domains, const char *key);

typedef enum TableEscape {
        TABLE_ESCAPE_NONE,
        TABLE_ESCAPE_SQL_QUOTE,     /* ' doubled: the contents of an SQL string literal */
        TABLE_ESCAPE_LDAP_FILTER,   /* RFC 4515: * ( ) \ NUL as \2a \28 \29 \5c \00 */
        TABLE_ESCAPE_LDAP_DN,       /* RFC 4514: , + " \ < > ; = with a backslash, and a leading
                                     * space or '#' and a trailing space */
} TableEscape;

/* Appends text escaped as esc says. */
int table_cf_escape(StrBuf *out, const char *text, size_t len, TableEscape esc);
/* Checks that fmt holds only the escapes table_cf_expand() knows; -EINVAL with a reason. */
int table_cf_check_format(const char *fmt, const char *what, char **ret_reason);
/* Expands fmt into out: 0, 1 when a part could not be filled (suppressed), <0 on error. */
int table_cf_expand(const char *fmt, const char *value, const char *key, TableEscape esc, StrBuf *out);

/* A server's own escaping: appends text escaped for a string literal; 0 or negative errno. */
typedef int (*TableEscapeFn)(void *userdata, StrBuf *out, const char *text, size_t len);
/* table_cf_expand() with every insertion going through esc(userdata, ...); NULL: unescaped. */
int table_cf_expand_fn(const char *fmt, const char *value, const char *key, TableEscapeFn esc, void *userdata,
                       StrBuf *out);

/* Adds one result value through fmt (result_format; value's %s %u %d, key's %S %U %D %1..%9) to
 * out, comma-separated from what is there: 1 when added, 0 when the value is empty or the format
 * suppressed it, <0 on error. Counting against expansion_limit is the caller's (Postfix counts
 * SQL rows before and LDAP values after formatting). */
int table_cf_result_add(const char *fmt, const char *value, const char *key, StrBuf *out);
