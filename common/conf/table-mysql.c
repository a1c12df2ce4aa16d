/* table-mysql.c — mysql:/path.cf lookup tables (MySQL and MariaDB): the libmariadb part of
 * table-sql.c (connect, escape, query). Hosts are tried as table-sql.c says (unix: first, at
 * random), as Postfix does. unix:/path is
 * the server's socket file. Connecting, sending and reading are each bounded by the table's
 * timeout (MYSQL_OPT_CONNECT/READ/WRITE_TIMEOUT); option_file and option_group are read as the
 * client library's defaults files. Any tls_* setting makes TLS required (MYSQL_OPT_SSL_ENFORCE),
 * with the server's certificate checked against tls_CAfile/tls_CApath when tls_verify_cert = yes. Without libmariadb (meson -Dmysql=disabled) the table type is
 * refused at open. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "table-sql.h"

#if HAVE_LIBMARIADB
#include <mysql.h>

static int mysql_connect_host(const TableSqlConf *c, const TableSqlHost *h, void **ret_conn, char **ret_reason) {
        MYSQL *m = mysql_init(NULL);
        if (!m)
                return -ENOMEM;
        unsigned timeout = (unsigned) MAX(1ULL, (c->timeout + USEC_PER_SEC - 1) / USEC_PER_SEC);
        mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
        mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
        mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
        if (c->option_file)
                mysql_options(m, MYSQL_READ_DEFAULT_FILE, c->option_file);
        if (c->option_group)
                mysql_options(m, MYSQL_READ_DEFAULT_GROUP, c->option_group);
        if (c->tls_cert_file || c->tls_key_file || c->tls_CAfile || c->tls_CApath || c->tls_ciphers || c->tls_verify_cert) {
                /* any TLS setting: TLS is required, never a silent fall-back to plain text */
                my_bool yes = 1, verify = c->tls_verify_cert;
                mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &yes);
                mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
                if (c->tls_key_file)
                        mysql_options(m, MYSQL_OPT_SSL_KEY, c->tls_key_file);
                if (c->tls_cert_file)
                        mysql_options(m, MYSQL_OPT_SSL_CERT, c->tls_cert_file);
                if (c->tls_CAfile)
                        mysql_options(m, MYSQL_OPT_SSL_CA, c->tls_CAfile);
                if (c->tls_CApath)
                        mysql_options(m, MYSQL_OPT_SSL_CAPATH, c->tls_CApath);
                if (c->tls_ciphers)
                        mysql_options(m, MYSQL_OPT_SSL_CIPHER, c->tls_ciphers);
        }
        if (!mysql_real_connect(m, h->unix_path ? NULL : h->host, c->user, c->password, c->dbname,
                                h->port, h->unix_path, CLIENT_MULTI_RESULTS)) {
                table_sql_reason(ret_reason, mysql_error(m));
                mysql_close(m);
                return -ECONNREFUSED;
        }
        *ret_conn = m;
        return 0;
}

static void mysql_disconnect(void *conn) {
        mysql_close(conn);
}

/* mysql_real_escape_string: the connection's character set decides. */
static int mysql_escape(void *userdata, StrBuf *out, const char *text, size_t len) {
        if (len > 64 * 1024)
                return -EMSGSIZE;
        _cleanup_free_ char *buf = malloc(2 * len + 1);
        if (!buf)
                return -ENOMEM;
        unsigned long n = mysql_real_escape_string(userdata, buf, text, (unsigned long) len);
        if (n == (unsigned long) -1)
                return -EILSEQ;
        return strbuf_append(out, buf, n);
}

/* Client-side errors (CR_*, 2000 and up) mean the connection is gone; server errors do not. */
static int mysql_failure(MYSQL *m, char **ret_reason) {
        table_sql_reason(ret_reason, mysql_error(m));
        return mysql_errno(m) >= 2000 ? -EPIPE : -EIO;
}

static int mysql_query_rows(void *conn, const TableSqlConf *c, const char *q,
                            int (*each)(void *ud, const char *value), void *ud, char **ret_reason) {
        (void) c;
        MYSQL *m = conn;
        if (mysql_real_query(m, q, (unsigned long) strlen(q)) != 0)
                return mysql_failure(m, ret_reason);
        int r = 0, next;
        do {
                MYSQL_RES *res = mysql_store_result(m);
                if (!res) {
                        if (mysql_field_count(m) != 0)
                                return mysql_failure(m, ret_reason);
                } else {
                        unsigned nf = mysql_num_fields(res);
                        MYSQL_ROW row;
                        while (r >= 0 && (row = mysql_fetch_row(res)))
                                for (unsigned i = 0; i < nf && r >= 0; i++)
                                        if (row[i])
                                                r = each(ud, row[i]);
                        mysql_free_result(res);
                }
                next = mysql_next_result(m);
                if (next > 0)
                        return mysql_failure(m, ret_reason);
        } while (next == 0);
        return r;
}

static const TableSqlDriver mysql_driver = {
        .type = "mysql",
        .random_order = true,
        .connect = mysql_connect_host,
        .disconnect = mysql_disconnect,
        .escape = mysql_escape,
        .query = mysql_query_rows,
};

const TableSqlDriver *table_mysql_driver(void) {
        return &mysql_driver;
}

/* mysql_init() initialises the library on first use, which is not thread-safe: done once here. */
void table_mysql_threads_init(void) {
        (void) mysql_library_init(0, NULL, NULL);
}
#else
void table_mysql_threads_init(void) {
}

const TableSqlDriver *table_mysql_driver(void) {
        return NULL;
}
#endif
