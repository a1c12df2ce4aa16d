/* table-sqlite.h — the sqlite: lookup table behind table.c (Postfix sqlite_table syntax).
 * Internal to common/conf: callers use table.h. */
#pragma once

typedef struct TableSqlite TableSqlite;

/* Reads the table's configuration file and opens its database read-only. */
int table_sqlite_open(const char *path, TableSqlite **ret, char **ret_reason);
TableSqlite *table_sqlite_free(TableSqlite *s);
/* Runs the query for key: 1 and *ret_value (results joined with ","), 0, or -EIO / -ENOMEM. */
int table_sqlite_lookup(TableSqlite *s, const char *key, char **ret_value);
