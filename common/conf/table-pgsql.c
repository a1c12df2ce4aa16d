/* table-pgsql.c — pgsql:/path.cf lookup tables: the libpq part of table-sql.c (connect, escape,
 * query). Hosts are tried as table-sql.c says (unix: first, at random). unix:/path names the
 * server's socket directory (or the socket file itself, .s.PGSQL.<port>); a postgresql:// URI is handed to libpq as it is
 * (that is also how to ask for TLS: ?sslmode=verify-full). Connecting and each query are bounded by
 * the table's timeout; a query runs with PQsendQuery and waits in poll(), so a server that stops
 * answering costs at most that long and then counts as gone. Without libpq (meson -Dpgsql=disabled)
 * the table type is refused at open. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "table-sql.h"

#if HAVE_LIBPQ
#include <libpq-fe.h>

static void pgsql_notice(void *arg, const char *message) {
        (void) arg;
        (void) message;   /* notices are not errors; library code does not log */
}

static int pgsql_connect(const TableSqlConf *c, const TableSqlHost *h, void **ret_conn, char **ret_reason) {
        const char *keys[8], *values[8];
        size_t n = 0;
        char port[16], timeout[16];
        _cleanup_free_ char *dir = NULL;
        snprintf(timeout, sizeof timeout, "%llu", MAX(2ULL, (c->timeout + USEC_PER_SEC - 1) / USEC_PER_SEC));
        int expand = 0;
        if (!h->unix_path && !h->host) {
                keys[n] = "dbname", values[n++] = h->spec;   /* postgresql:// URI */
                expand = 1;
        } else if (h->unix_path) {
                const char *base = strrchr(h->unix_path, '/') + 1, *p = startswith(base, ".s.PGSQL.");
                if (p) {
                        if (!(dir = strndup(h->unix_path, (size_t) (base - h->unix_path))))
                                return -ENOMEM;
                        keys[n] = "host", values[n++] = dir;
                        keys[n] = "port", values[n++] = p;
                } else
                        keys[n] = "host", values[n++] = h->unix_path;
        } else {
                keys[n] = "host", values[n++] = h->host;
                if (h->port) {
                        snprintf(port, sizeof port, "%u", h->port);
                        keys[n] = "port", values[n++] = port;
                }
        }
        if (c->dbname && !expand)
                keys[n] = "dbname", values[n++] = c->dbname;
        if (c->user)
                keys[n] = "user", values[n++] = c->user;
        if (c->password)
                keys[n] = "password", values[n++] = c->password;
        keys[n] = "connect_timeout", values[n++] = timeout;
        keys[n] = NULL, values[n] = NULL;
        PGconn *conn = PQconnectdbParams(keys, values, expand);
        if (!conn)
                return -ENOMEM;
        if (PQstatus(conn) != CONNECTION_OK) {
                table_sql_reason(ret_reason, PQerrorMessage(conn));
                PQfinish(conn);
                return -ECONNREFUSED;
        }
        PQsetNoticeProcessor(conn, pgsql_notice, NULL);
        *ret_conn = conn;
        return 0;
}

static void pgsql_disconnect(void *conn) {
        PQfinish(conn);
}

/* PQescapeStringConn: the connection's encoding and standard_conforming_strings decide. */
static int pgsql_escape(void *userdata, StrBuf *out, const char *text, size_t len) {
        if (len > 64 * 1024)
                return -EMSGSIZE;
        _cleanup_free_ char *buf = malloc(2 * len + 1);
        if (!buf)
                return -ENOMEM;
        int err = 0;
        size_t n = PQescapeStringConn(userdata, buf, text, len, &err);
        if (err)
                return -EILSEQ;   /* not valid in the connection's encoding: never sent */
        return strbuf_append(out, buf, n);
}

/* Waits for the socket within the deadline; false on timeout or a poll error. */
static bool pgsql_wait(PGconn *conn, short events, usec_t deadline) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline)
                return false;
        struct pollfd p = { .fd = PQsocket(conn), .events = events };
        int ms = (int) MIN((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) 3600 * 1000);
        int r;
        do
                r = poll(&p, 1, ms);
        while (r < 0 && errno == EINTR);
        return r > 0;
}

static int pgsql_query(void *c, const TableSqlConf *conf, const char *q,
                       int (*each)(void *ud, const char *value), void *ud, char **ret_reason) {
        PGconn *conn = c;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + conf->timeout;
        if (!PQsendQuery(conn, q)) {
                table_sql_reason(ret_reason, PQerrorMessage(conn));
                return PQstatus(conn) == CONNECTION_OK ? -EIO : -EPIPE;
        }
        int r = 0;
        for (;;) {
                int f;
                while ((f = PQflush(conn)) > 0)
                        if (!pgsql_wait(conn, POLLOUT, deadline))
                                goto timeout;
                if (f < 0)
                        break;
                while (PQisBusy(conn)) {
                        if (!pgsql_wait(conn, POLLIN, deadline))
                                goto timeout;
                        if (!PQconsumeInput(conn))
                                break;
                }
                PGresult *res = PQgetResult(conn);
                if (!res)
                        break;
                ExecStatusType st = PQresultStatus(res);
                if (st == PGRES_TUPLES_OK) {
                        for (int row = 0; row < PQntuples(res) && r >= 0; row++)
                                for (int col = 0; col < PQnfields(res) && r >= 0; col++)
                                        if (!PQgetisnull(res, row, col))
                                                r = each(ud, PQgetvalue(res, row, col));
                } else if (st != PGRES_COMMAND_OK && r >= 0) {
                        table_sql_reason(ret_reason, PQresultErrorMessage(res));
                        r = PQstatus(conn) == CONNECTION_OK ? -EIO : -EPIPE;
                }
                PQclear(res);
        }
        if (PQstatus(conn) != CONNECTION_OK) {
                table_sql_reason(ret_reason, PQerrorMessage(conn));
                return -EPIPE;
        }
        return r;
timeout:
        reason_printf(ret_reason, "no answer within %llu s", conf->timeout / USEC_PER_SEC);
        return -EPIPE;
}

static const TableSqlDriver pgsql_driver = {
        .type = "pgsql",
        .random_order = true,
        .connect = pgsql_connect,
        .disconnect = pgsql_disconnect,
        .escape = pgsql_escape,
        .query = pgsql_query,
};

const TableSqlDriver *table_pgsql_driver(void) {
        return &pgsql_driver;
}
#else
const TableSqlDriver *table_pgsql_driver(void) {
        return NULL;
}
#endif
