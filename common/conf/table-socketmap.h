/* table-socketmap.h — socketmap: and tcp: lookup tables behind table.c: a lookup server reached
 * over a stream socket. Internal to common/conf: callers use table.h. */
#pragma once

#include "../basic/macro.h"

typedef struct TableSocket TableSocket;

/* type is "socketmap" (name: inet:host:port:mapname or unix:/path:mapname) or "tcp"
 * (name: host:port). Connects only at the first lookup. */
int table_socket_open(const char *type, const char *name, TableSocket **ret, char **ret_reason);
TableSocket *table_socket_free(TableSocket *s);
/* 1 and *ret_value, 0 (NOTFOUND / 500), or <0 (server down, slow, TEMP/TIMEOUT/PERM / 400, or a
 * malformed reply): a temporary error. The last failure's reason: table_socket_last_error(). */
int table_socket_lookup(TableSocket *s, const char *key, char **ret_value);
const char *table_socket_last_error(const TableSocket *s);

/* tcp_table's encoding: bytes <= 0x20, >= 0x7f and '%' as %XX. */
int table_socket_hex_quote(const char *in, char **ret);
/* The reverse; -EINVAL for a bad %XX or a NUL byte. */
int table_socket_hex_unquote(const char *in, char **ret);
