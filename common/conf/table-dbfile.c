/* table-dbfile.c — reading postmap's binary lmdb: and cdb: files, and hash:/btree: Berkeley DB
 * .db files whose source text is gone (see table-dbfile.h).
 *
 * What postmap writes (Postfix 3.7, checked with Debian's postfix, postfix-lmdb and
 * postfix-cdb): keys folded to lower case; lmdb and Berkeley DB keys and values end in a NUL
 * byte, cdb ones do not. Both forms are
 * tried, so files written with other settings work too. lmdb files are opened read-only without
 * a lock file (MDB_NOLOCK, as Postfix does: it locks the file itself while postmap rewrites it);
 * a file that changed (inode, size or mtime) is opened again at the next lookup. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conf.h"
#include "table-dbfile.h"

#if HAVE_LMDB
#include <lmdb.h>
#endif
#if HAVE_CDB
#include <cdb.h>
#endif
#if HAVE_BDB
#include <db.h>
#endif

typedef enum DbfileKind { DBFILE_LMDB, DBFILE_CDB, DBFILE_BDB } DbfileKind;

struct TableDbfile {
        DbfileKind kind;
        char *file;
        struct stat st;
        usec_t last_check;
        bool open;
#if HAVE_LMDB
        MDB_env *env;
        MDB_dbi dbi;
#endif
#if HAVE_CDB
        int fd;
        struct cdb cdb;
#endif
#if HAVE_BDB
        DB *db;
        DBTYPE dbtype;
#endif
};

static void dbfile_close(TableDbfile *d) {
        if (!d->open)
                return;
#if HAVE_LMDB
        if (d->kind == DBFILE_LMDB)
                mdb_env_close(d->env);
#endif
#if HAVE_CDB
        if (d->kind == DBFILE_CDB) {
                cdb_free(&d->cdb);
                close(d->fd);
        }
#endif
#if HAVE_BDB
        if (d->kind == DBFILE_BDB)
                d->db->close(d->db, 0);
#endif
        d->open = false;
}

/* Closes the file; accepts NULL. */
TableDbfile *table_dbfile_free(TableDbfile *d) {
        if (!d)
                return NULL;
        dbfile_close(d);
        free(d->file);
        free(d);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableDbfile *, table_dbfile_free);

static int dbfile_open_file(TableDbfile *d, char **ret_reason) {
        struct stat st;
        if (stat(d->file, &st) < 0) {
                int r = -errno;
                reason_printf(ret_reason, "cannot stat %s: %s", d->file, strerror(-r));
                return r;
        }
#if HAVE_LMDB
        if (d->kind == DBFILE_LMDB) {
                MDB_env *env = NULL;
                MDB_txn *txn = NULL;
                int rc = mdb_env_create(&env);
                if (rc == 0)
                        rc = mdb_env_open(env, d->file, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0);
                if (rc == 0)
                        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
                if (rc == 0)
                        rc = mdb_dbi_open(txn, NULL, 0, &d->dbi);
                if (txn)
                        mdb_txn_abort(txn);
                if (rc != 0) {
                        if (env)
                                mdb_env_close(env);
                        reason_printf(ret_reason, "cannot open %s: %s", d->file, mdb_strerror(rc));
                        return -EIO;
                }
                d->env = env;
        }
#endif
#if HAVE_CDB
        if (d->kind == DBFILE_CDB) {
                int fd = open(d->file, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || cdb_init(&d->cdb, fd) < 0) {
                        int r = -errno;
                        if (fd >= 0)
                                close(fd);
                        reason_printf(ret_reason, "cannot open %s: %s", d->file, strerror(-r));
                        return r ? r : -EIO;
                }
                d->fd = fd;
        }
#endif
#if HAVE_BDB
        if (d->kind == DBFILE_BDB) {
                DB *db = NULL;
                int rc = db_create(&db, NULL, 0);
                if (rc == 0)
                        rc = db->open(db, NULL, d->file, NULL, d->dbtype, DB_RDONLY, 0);
                if (rc != 0) {
                        if (db)
                                db->close(db, 0);
                        reason_printf(ret_reason, "cannot open %s: %s", d->file, db_strerror(rc));
                        return -EIO;
                }
                d->db = db;
        }
#endif
        d->st = st;
        d->open = true;
        d->last_check = now_usec(CLOCK_MONOTONIC);
        return 0;
}

/* Opens the binary file of type for path, when it is there and this build reads it. */
int table_dbfile_open(const char *type, const char *path, TableDbfile **ret, char **ret_reason) {
        *ret = NULL;
        DbfileKind kind;
        if (streq(type, "lmdb") && HAVE_LMDB)
                kind = DBFILE_LMDB;
        else if (streq(type, "cdb") && HAVE_CDB)
                kind = DBFILE_CDB;
        else if ((streq(type, "hash") || streq(type, "btree")) && HAVE_BDB)
                kind = DBFILE_BDB;
        else
                return 0;
        _cleanup_(table_dbfile_freep) TableDbfile *d = calloc(1, sizeof(TableDbfile));
        if (!d)
                return -ENOMEM;
        d->kind = kind;
#if HAVE_BDB
        d->dbtype = streq(type, "hash") ? DB_HASH : DB_BTREE;
#endif
        if (asprintf(&d->file, "%s.%s", path, kind == DBFILE_BDB ? "db" : type) < 0) {
                d->file = NULL;
                return -ENOMEM;
        }
        if (access(d->file, F_OK) < 0)
                return 0;
        int r = dbfile_open_file(d, ret_reason);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(d);
        return 0;
}

/* 1 with the value (a trailing NUL dropped), 0 when absent, <0 on error. */
static int dbfile_get(TableDbfile *d, const char *key, size_t klen, char **ret_value) {
#if HAVE_LMDB
        if (d->kind == DBFILE_LMDB) {
                MDB_txn *txn = NULL;
                int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
                if (rc != 0)
                        return -EIO;
                MDB_val k = { .mv_size = klen, .mv_data = (void *) key }, v;
                rc = mdb_get(txn, d->dbi, &k, &v);
                int r = rc == MDB_NOTFOUND ? 0 : rc != 0 ? -EIO : 1;
                if (r > 0 && ret_value) {
                        size_t len = v.mv_size;
                        if (len > 0 && ((const char *) v.mv_data)[len - 1] == '\0')
                                len--;
                        if (!(*ret_value = strndup(v.mv_data, len)))
                                r = -ENOMEM;
                }
                mdb_txn_abort(txn);
                return r;
        }
#endif
#if HAVE_CDB
        if (d->kind == DBFILE_CDB) {
                int rc = cdb_find(&d->cdb, key, (unsigned) klen);
                if (rc <= 0)
                        return rc < 0 ? -EIO : 0;
                const char *v = cdb_getdata(&d->cdb);
                size_t len = cdb_datalen(&d->cdb);
                if (!v)
                        return -EIO;
                if (len > 0 && v[len - 1] == '\0')
                        len--;
                if (ret_value && !(*ret_value = strndup(v, len)))
                        return -ENOMEM;
                return 1;
        }
#endif
#if HAVE_BDB
        if (d->kind == DBFILE_BDB) {
                DBT k = { .data = (void *) key, .size = (u_int32_t) klen }, v = { .flags = 0 };
                int rc = d->db->get(d->db, NULL, &k, &v, 0);
                if (rc == DB_NOTFOUND)
                        return 0;
                if (rc != 0)
                        return -EIO;
                size_t len = v.size;
                if (len > 0 && ((const char *) v.data)[len - 1] == '\0')
                        len--;
                if (ret_value && !(*ret_value = strndup(v.data, len)))
                        return -ENOMEM;
                return 1;
        }
#endif
        return -EPROTONOSUPPORT;
}

/* Looks key up, with its NUL first and then without. */
int table_dbfile_lookup(TableDbfile *d, const char *key, char **ret_value) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (!d->open || now - d->last_check >= USEC_PER_SEC) {
                struct stat st;
                if (stat(d->file, &st) < 0)
                        return -errno;
                d->last_check = now;
                if (!d->open || st.st_ino != d->st.st_ino || st.st_size != d->st.st_size ||
                    st.st_mtim.tv_sec != d->st.st_mtim.tv_sec || st.st_mtim.tv_nsec != d->st.st_mtim.tv_nsec) {
                        dbfile_close(d);
                        int r = dbfile_open_file(d, NULL);
                        if (r < 0)
                                return r;
                }
        }
        int r = dbfile_get(d, key, strlen(key) + 1, ret_value);
        if (r == 0)
                r = dbfile_get(d, key, strlen(key), ret_value);
        return r;
}
