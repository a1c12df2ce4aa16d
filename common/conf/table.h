/* table.h — Postfix-style lookup tables named "type:name".
 *   inline:{ key=value, { key = value with spaces } }
 *   static:value (or static:{value with spaces})
 *   texthash:/path and hash:/path — both read the *source text* (an existing /etc/postfix/virtual
 *     or /etc/aliases works without postmap); "key value" per line, "#" comments, continuation
 *     lines starting with whitespace; for files whose name ends in "aliases" (or when opened with TABLE_ALIASES)
 *     aliases(5) syntax "name: value, value" applies. Keys compare case-insensitively.
 *     The file is re-read when its mtime/size/inode changes (checked at most once a second).
 *   regexp:/path — POSIX ERE rules "/pattern/flags result" with $1.., !/pattern/, if/endif.
 *   pcre:/path — the same rules with Perl-compatible patterns (libpcre2; Postfix pcre_table
 *     flags). A build without libpcre2 refuses pcre: tables at open (-EPROTONOSUPPORT).
 *   cidr:/path — "network/prefix result" rules (IPv4 and IPv6), !network, if/endif.
 *   sqlite:/path.cf — dbpath, query ('%s' etc.), result_format, domain, as Postfix sqlite_table.
 *   pgsql:/path.cf (libpq) and mysql:/path.cf (libmariadb) — Postfix pgsql_table(5) and
 *     mysql_table(5): hosts (unix: first, at random; a failed host is skipped for retry_interval), user,
 *     password, dbname, query with %s %u %d %S %U %D %1..%9 escaped by the server's own function,
 *     result_format, domain, expansion_limit, idle_interval, mysql's tls_* (TLS then required);
 *     connects at the first lookup. A
 *     world-readable .cf holding a password is refused. A build without the library refuses the
 *     type at open (-EPROTONOSUPPORT). The .cf reader and %-expansion are table-cf.c's.
 *   socketmap:inet:host:port:name, socketmap:unix:/path:name (netstring protocol) and
 *     tcp:host:port (tcp_table protocol, %XX encoding) — table-socketmap.c.
 *   Database and server tables answer a server that is down, slow (10 s timeout by default) or
 *   refusing with a negative errno, never "not found"; they run on the caller's thread and block
 *   it for the time a lookup takes, unless a TableMemo is current (table-async.h: the lookup goes
 *   to worker threads and the caller runs again when it has answered).
 *   unionmap:{ t1, t2 } (every result, comma-joined), pipemap:{ t1, t2 } (t1's result is t2's
 *     key), randmap:{ v1, v2 } (one value at random).
 *   unix:passwd.byname — getpwnam(); the value is the passwd line (unix:group.byname likewise).
 *   lmdb:/path and cdb:/path — postmap's binary file /path.lmdb (liblmdb) or /path.cdb (tinycdb)
 *     when it exists, else the source text /path like hash: (table-dbfile.c; re-opened when it
 *     changes). btree:, dbm:, sdbm: read their source text like hash:. hash:/btree: where only
 *     /path.db exists read it with libdb (a build without libdb refuses them at open with a
 *     reason saying to keep the source file).
 *   ldap:/path.cf — Postfix ldap_table(5) settings (server_host URLs with failover, search_base,
 *     query_filter with the key RFC 4515-escaped, result_attribute, special_/leaf_/terminal_
 *     result_attribute, result_format, scope, bind, start_tls, timeout, domain, expansion_limit
 *     …: see table-ldap.c). A server that is down, slow or refusing is a temporary error; the
 *     next lookup connects again. A .cf holding bind_pw that everyone may read is refused. A
 *     build without libldap refuses ldap: tables at open (-EPROTONOSUPPORT).
 *   "proxy:" in front of any type is ignored (no proxymap daemon is needed).
 * A lookup answers found (1), not found (0) or a temporary error (negative errno, e.g. a file
 * that cannot be read), so callers can answer 4xx rather than guess.
 *
 * $number substitution: a regexp:/pcre: rule copies text from the lookup key into its result.
 * Where a result becomes commands, files, addresses or routes, that text must not carry meaning:
 *   TABLE_NO_REGSUB    a matching rule whose result has $1..$9 is skipped (the lookup goes on
 *                      with the next rule), as Postfix's local(8) does for alias tables.
 *   TABLE_REGSUB_SAFE  a matching rule is skipped when a substituted group holds a byte that
 *                      could act as a separator or change the result's meaning: a control
 *                      character, space, or one of  " ' ` , ; : | / \ < > ( ) [ ] { } $ @ % !
 *                      Letters, digits, bytes >= 0x80 and  . - _ + = & * ? # ~ ^  pass.
 * Skipped rules come back as warnings from the _full lookups ("<spec>:<line>: ... skipping this
 * rule"); callers that set these flags use them and log the warnings (this module never logs).
 * Header/body checks and access tables keep free substitution, as in Postfix. */
#pragma once

#include <stdbool.h>

#include "../basic/macro.h"

typedef struct Table Table;

typedef enum TableFlags {
        TABLE_ALIASES = 1 << 0,      /* parse source text as aliases(5): "key: value" */
        TABLE_NO_REGSUB = 1 << 1,    /* skip regexp:/pcre: rules whose result needs $number */
        TABLE_REGSUB_SAFE = 1 << 2,  /* skip rules whose $number would insert an unsafe byte */
} TableFlags;

/* What a lookup noticed besides its answer. */
typedef struct TableNotes {
        bool substituted;       /* the value holds text copied from the key ($1..$9) */
        char **warnings;        /* NULL-terminated lines, "<spec>:<line>: ...", one per rule that was
                                 * skipped or whose match gave up; NULL when none */
} TableNotes;
void table_notes_done(TableNotes *n);

/* Opens a table from its "type:name" spec. Unknown type: -EPROTONOSUPPORT with *ret_reason. */
int table_open(const char *spec, TableFlags flags, Table **ret, char **ret_reason);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
#define _cleanup_table_free_ _cleanup_(table_freep)
const char *table_spec(const Table *t);

/* Looks key up. Returns 1 and *ret_value (caller frees) when found, 0 when not, <0 on error. */
int table_lookup(Table *t, const char *key, char **ret_value);
/* The same; notes (may be NULL; caller frees with table_notes_done()) collects what happened. */
int table_lookup_full(Table *t, const char *key, char **ret_value, TableNotes *notes);

/* A process-wide observer of lookups, for `posternctl route` (daemons never set one): called
 * after each lookup that found a value (r = 1, value) or failed (r < 0, value NULL), with the
 * spec of the table that answered and the key as asked. NULL turns it off. */
typedef void (*TableTraceFn)(const char *spec, const char *key, int r, const char *value, void *userdata);
void table_trace_set(TableTraceFn fn, void *userdata);

/* Whether a table of this spec talks to a server over the network (ldap: with a server_host other
 * than ldapi://; pgsql:, mysql: with a host other than unix:/path; tcp:, memcache:,
 * socketmap:inet:), also inside unionmap:/pipemap: and behind proxy:. For postern-generator: postern-local runs without a network otherwise. */
bool table_spec_uses_network(const char *spec);
/* A process-wide reporter of failed lookups in server tables (pgsql:, mysql:, ldap:, socketmap:,
 * tcp:): called with the table's spec and the server's reason, at most once a minute per table unless
 * the reason changes. common/daemon sets one that logs a warning; NULL turns it off. */
typedef void (*TableErrorFn)(const char *spec, const char *reason, void *userdata);
void table_error_report_set(TableErrorFn fn, void *userdata);

/* A list of tables searched in order (e.g. alias_maps = hash:/etc/aliases, texthash:/x). */
typedef struct TableList TableList;
int table_list_open(const char *specs, TableFlags flags, TableList **ret, char **ret_reason);
TableList *table_list_free(TableList *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(TableList *, table_list_free);
#define _cleanup_table_list_free_ _cleanup_(table_list_freep)
/* First table that has key wins. Same return convention as table_lookup. */
int table_list_lookup(TableList *l, const char *key, char **ret_value);
int table_list_lookup_full(TableList *l, const char *key, char **ret_value, TableNotes *notes);
size_t table_list_size(const TableList *l);
/* Like table_list_lookup, but skips the tables that match patterns against a whole key (regexp:,
 * pcre:, cidr:): Postfix gives those only the full address, never the partial keys of an address
 * lookup (user@domain without its extension, user, @domain). */
int table_list_lookup_fixed(TableList *l, const char *key, char **ret_value);
