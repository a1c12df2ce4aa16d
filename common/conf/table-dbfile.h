/* table-dbfile.h — tables read from the binary files Postfix's postmap writes: lmdb: (/path.lmdb,
 * liblmdb), cdb: (/path.cdb, tinycdb), and hash:/btree: (/path.db, libdb). Internal to
 * common/conf: callers use table.h, which reads the source text /path instead when there is no
 * binary file or no library — and for hash:/btree: whenever the source text is there. */
#pragma once

#include <stdbool.h>

typedef struct TableDbfile TableDbfile;

/* Opens path + ".lmdb" / ".cdb" / ".db" for type "lmdb" / "cdb" / "hash" or "btree". 0 with *ret NULL when the file does not
 * exist or this build cannot read it; <0 with a reason when it exists and cannot be read. */
int table_dbfile_open(const char *type, const char *path, TableDbfile **ret, char **ret_reason);
TableDbfile *table_dbfile_free(TableDbfile *d);
/* Looks key up (as given: postmap folds keys to lower case when it writes them), with and
 * without the trailing NUL that postmap stores for some types; the file is opened again when it
 * changed (checked at most once a second). 1 and *ret_value, 0, or <0. */
int table_dbfile_lookup(TableDbfile *d, const char *key, char **ret_value);
