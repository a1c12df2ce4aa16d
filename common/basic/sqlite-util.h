/* sqlite-util.h — opening the SQLite files Postern keeps besides its queue (postern-verify's
 * verify.db, postern-smtpd's postscreen_cache.db) one way: created when missing, no symlink
 * followed, SQLITE_DBCONFIG_DEFENSIVE and trusted_schema = OFF, a busy timeout, WAL mode for a
 * file ("" or NULL is an in-memory database). Library code: errors come back with the reason. */
#pragma once

#include <sqlite3.h>

/* Opens path into *ret; on failure returns -EIO (or -ENOMEM) with *ret_reason set to
 * "<what failed>: <SQLite's message>" (allocated; may be NULL when out of memory), *ret NULL. */
int sqlite_open_defensive(const char *path, int busy_timeout_ms, sqlite3 **ret, char **ret_reason);
