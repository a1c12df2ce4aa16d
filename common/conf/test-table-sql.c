/* test-table-sql.c — unit tests for what the database tables share: the pgsql/mysql settings
 * (hosts, legacy select_field form, intervals, refused settings, a world-readable file with a
 * password), the domain filter, expansion_limit (the %-expansion is table-cf.c's: its tests are in
 * test-table-cf.c); a database that cannot be reached is a temporary error that is retried only
 * after retry_interval; socketmap: and tcp: against a scripted server in a child process
 * (OK/NOTFOUND/TEMP/PERM, 200/500/400, %XX encoding, a server that closes, one that is gone). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "basic/tests.h"
#include "conf/table-socketmap.h"
#include "conf/table-sql.h"
#include "conf/table.h"

static char tmpdir[] = "/tmp/test-table-sql-XXXXXX";

static void test_conf(void) {
        char cf[4200];
        snprintf(cf, sizeof cf, "%s/pg.cf", tmpdir);
        test_write_file(cf, "# comment\n"
                     "hosts = unix:/run/postgresql, inet:db1.example:5433 db2.example [::1]:6000\n"
                     "  postgresql://u@h/db?sslmode=require\n"
                     "user = postern\npassword = s3cret\ndbname = mail\n"
                     "query = SELECT goto FROM alias WHERE address = '%s'\n"
                     "result_format = %s\ndomain = example.org example.net\nexpansion_limit = 3\n"
                     "idle_interval = 2m\nretry_interval = 5\ntimeout = 3s\n", 0640);
        TableSqlConf *c = NULL;
        char *reason = NULL;
        int r = table_sql_conf_read(cf, TABLE_SQL_PGSQL, &c, &reason);
        if (r < 0)
                fprintf(stderr, "%s\n", strna(reason));
        CHECK_INT(r, 0);
        CHECK_INT(c->n_hosts, 5);
        CHECK_STR(c->hosts[0].unix_path, "/run/postgresql");
        CHECK_STR(c->hosts[1].host, "db1.example");
        CHECK_INT(c->hosts[1].port, 5433);
        CHECK_STR(c->hosts[2].host, "db2.example");
        CHECK_INT(c->hosts[2].port, 0);
        CHECK_STR(c->hosts[3].host, "::1");
        CHECK_INT(c->hosts[3].port, 6000);
        CHECK(!c->hosts[4].host && !c->hosts[4].unix_path);
        CHECK_STR(c->hosts[4].spec, "postgresql://u@h/db?sslmode=require");
        CHECK_STR(c->user, "postern");
        CHECK_STR(c->password, "s3cret");
        CHECK_STR(c->dbname, "mail");
        CHECK_INT(c->expansion_limit, 3);
        CHECK_INT(c->idle_interval, 120 * USEC_PER_SEC);
        CHECK_INT(c->retry_interval, 5 * USEC_PER_SEC);
        CHECK_INT(c->timeout, 3 * USEC_PER_SEC);
        CHECK(c->domains && c->domains[1] && streq(c->domains[1], "example.net"));
        CHECK(table_cf_domain_ok(c->domains, "a@example.net"));
        CHECK(table_cf_domain_ok(c->domains, "a@EXAMPLE.org"));
        CHECK(!table_cf_domain_ok(c->domains, "@example.org"));
        CHECK(!table_cf_domain_ok(c->domains, "a@example.com"));
        CHECK(!table_cf_domain_ok(c->domains, "example.org"));
        table_sql_conf_free(c);

        /* defaults; the old-style form builds the query */
        test_write_file(cf, "select_field = goto\ntable = alias\nwhere_field = address\nadditional_conditions = AND active = 1\n", 0644);
        CHECK_INT(table_sql_conf_read(cf, TABLE_SQL_MYSQL, &c, NULL), 0);
        CHECK_STR(c->query, "SELECT goto FROM alias WHERE address = '%s' AND active = 1");
        CHECK_STR(c->result_format, "%s");
        CHECK_INT(c->n_hosts, 1);
        CHECK_STR(c->hosts[0].host, "localhost");
        CHECK_INT(c->idle_interval, 60 * USEC_PER_SEC);
        CHECK_INT(c->retry_interval, 60 * USEC_PER_SEC);
        table_sql_conf_free(c);
        test_write_file(cf, "query = x\ntls_CAfile = /etc/ssl/ca.pem\ntls_verify_cert = yes\ntls_ciphers = HIGH\n", 0644);
        CHECK_INT(table_sql_conf_read(cf, TABLE_SQL_MYSQL, &c, NULL), 0);
        CHECK_STR(c->tls_CAfile, "/etc/ssl/ca.pem");
        CHECK_STR(c->tls_ciphers, "HIGH");
        CHECK(c->tls_verify_cert);
        table_sql_conf_free(c);
        test_write_file(cf, "select_function = lookup_alias\n", 0644);
        CHECK_INT(table_sql_conf_read(cf, TABLE_SQL_PGSQL, &c, NULL), 0);
        CHECK_STR(c->query, "SELECT lookup_alias('%s')");
        table_sql_conf_free(c);

        static const struct {
                TableSqlDialect d;
                const char *text;
                mode_t mode;
                const char *reason;
        } bad[] = {
                { TABLE_SQL_PGSQL, "hosts = x\n", 0600, "needs a query" },
                { TABLE_SQL_PGSQL, "query = x\npassword = p\n", 0644, "pg.cf holds a password and is world-readable" },
                { TABLE_SQL_PGSQL, "query = x\nbogus = 1\n", 0600, ":2: bogus: unknown setting for a pgsql table" },
                { TABLE_SQL_PGSQL, "query = x\noption_file = /x\n", 0600, "option_file: unknown setting for a pgsql table" },
                { TABLE_SQL_MYSQL, "query = x\nselect_function = f\n", 0600, "select_function: unknown setting for a mysql table" },
                { TABLE_SQL_MYSQL, "query = x\ntls_verify_cert = maybe\n", 0600, "tls_verify_cert: \"maybe\" is neither yes nor no" },
                { TABLE_SQL_PGSQL, "query = x\ntls_CAfile = /ca\n", 0600, "tls_CAfile: unknown setting for a pgsql table" },
                { TABLE_SQL_MYSQL, "query = x\nhosts = postgresql://h/db\n", 0600, "a PostgreSQL URI in a mysql table" },
                { TABLE_SQL_PGSQL, "query = x\nhosts = unix:relative\n", 0600, "unix: needs an absolute path" },
                { TABLE_SQL_PGSQL, "query = x\nhosts = h:99999\n", 0600, "bad port" },
                { TABLE_SQL_PGSQL, "query = x\nretry_interval = soon\n", 0600, "retry_interval: \"soon\" is not a time" },
                { TABLE_SQL_PGSQL, "query = x\nexpansion_limit = -1\n", 0600, "expansion_limit: not a number" },
                { TABLE_SQL_PGSQL, "query = x\ndomain = /etc/domains\n", 0600, "list domain names" },
                { TABLE_SQL_PGSQL, "select_field = a\ntable = b\n", 0600, "go together" },
                { TABLE_SQL_MYSQL, "query = x\nrequire_result_set = no\n", 0600, "require_result_set = no: not supported" },
                { TABLE_SQL_PGSQL, "junk\n", 0600, ":1: expected \"name = value\"" },
                { TABLE_SQL_PGSQL, "query = SELECT a WHERE b = '%x'\n", 0600, "query: invalid %-escape \"%x\"" },
                { TABLE_SQL_MYSQL, "query = x\nresult_format = %q\n", 0600, "result_format: invalid %-escape" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                test_write_file(cf, bad[i].text, bad[i].mode);
                reason = NULL;
                CHECK(table_sql_conf_read(cf, bad[i].d, &c, &reason) < 0);
                if (!reason || !strstr(reason, bad[i].reason)) {
                        fprintf(stderr, "bad case %zu: reason \"%s\"\n", i, strna(reason));
                        CHECK(false);
                }
                free(reason);
        }
        /* postern-generator gives postern-local the network only for hosts that need it */
        char spec[4300];
        test_write_file(cf, "hosts = unix:/run/postgresql unix:/run/pg2\nquery = x\n", 0600);
        snprintf(spec, sizeof spec, "proxy:pgsql:%s", cf);
        CHECK(!table_spec_uses_network(spec));
        snprintf(spec, sizeof spec, "unionmap:{ texthash:/x, mysql:%s }", cf);
        CHECK(!table_spec_uses_network(spec));
        test_write_file(cf, "hosts = unix:/run/postgresql db.example\nquery = x\n", 0600);
        CHECK(table_spec_uses_network(spec));
        test_write_file(cf, "query = x\n", 0600);   /* localhost */
        CHECK(table_spec_uses_network(spec));
        CHECK(table_spec_uses_network("pgsql:/nonexistent/x.cf"));
        CHECK(table_spec_uses_network("tcp:127.0.0.1:9000"));

        /* the same password in a file only its owner and group read is fine */
        test_write_file(cf, "query = x\npassword = p\n", 0640);
        CHECK_INT(table_sql_conf_read(cf, TABLE_SQL_PGSQL, &c, NULL), 0);
        table_sql_conf_free(c);
}

static void test_results(void) {
        TableSqlConf c = { .result_format = (char *) "%s@mail.example", .expansion_limit = 2 };
        StrBuf out = STRBUF_INIT;
        long count = 0;
        CHECK_INT(table_sql_result_add(&c, "k", "a", &count, &out), 0);
        CHECK_INT(table_sql_result_add(&c, "k", "", &count, &out), 0);   /* empty: left out, not counted */
        CHECK_INT(table_sql_result_add(&c, "k", "b", &count, &out), 0);
        CHECK_STR(out.data, "a@mail.example,b@mail.example");
        CHECK_INT(table_sql_result_add(&c, "k", "c", &count, &out), -EIO);
        strbuf_done(&out);
}

/* A database that cannot be reached: a temporary error, and no new attempt within retry_interval. */
static void test_unreachable(void) {
        static const char *const types[] = { "pgsql", "mysql" };
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                char cf[4200], spec[4300], text[9000];
                snprintf(cf, sizeof cf, "%s/down.cf", tmpdir);
                snprintf(text, sizeof text, "hosts = unix:%s/no-such-socket\nquery = SELECT 1 WHERE '%%s' = ''\n"
                                            "dbname = x\nuser = x\nretry_interval = 3600\n", tmpdir);
                test_write_file(cf, text, 0600);
                snprintf(spec, sizeof spec, "proxy:%s:%s", types[i], cf);
                Table *t = NULL;
                char *reason = NULL;
                int r = table_open(spec, 0, &t, &reason);
                if ((streq(types[i], "pgsql") && !HAVE_LIBPQ) || (streq(types[i], "mysql") && !HAVE_LIBMARIADB)) {
                        CHECK_INT(r, -EPROTONOSUPPORT);
                        CHECK(reason && strstr(reason, "Postern was built without"));
                        free(reason);
                        continue;
                }
                CHECK_INT(r, 0);
                char *v = NULL;
                r = table_lookup(t, "joe@example.org", &v);
                CHECK(r < 0 && r != -EAGAIN);
                CHECK_INT(table_lookup(t, "joe@example.org", &v), -EAGAIN);
                table_free(t);
        }
}

/* A client library stand-in: which hosts are up, what each connect and query did. */
static struct {
        bool up[4];
        bool broken;            /* the next query finds the connection gone */
        char log[400];
} fake;

static int fake_connect(const TableSqlConf *c, const TableSqlHost *h, void **ret_conn, char **ret_reason) {
        size_t i = (size_t) (h - c->hosts);
        snprintf(fake.log + strlen(fake.log), sizeof fake.log - strlen(fake.log), "c%zu ", i);
        if (!fake.up[i]) {
                reason_printf(ret_reason, "host %zu is down", i);
                return -ECONNREFUSED;
        }
        *ret_conn = (void *) (h + 1);   /* any non-NULL pointer */
        return 0;
}

static void fake_disconnect(void *conn) {
        (void) conn;
        strcat(fake.log, "d ");
}

static int fake_query(void *conn, const TableSqlConf *c, const char *q,
                      int (*each)(void *ud, const char *value), void *ud, char **ret_reason) {
        (void) conn;
        (void) c;
        strcat(fake.log, "q ");
        if (fake.broken) {
                fake.broken = false;
                reason_printf(ret_reason, "server closed the connection");
                return -EPIPE;
        }
        if (strstr(q, "'bad'"))
                return -EIO;
        return each(ud, strstr(q, "'k'") ? "v" : NULL);
}

static int fake_escape(void *conn, StrBuf *out, const char *text, size_t len) {
        (void) conn;
        return table_cf_escape(out, text, len, TABLE_ESCAPE_SQL_QUOTE);
}

static const TableSqlDriver fake_driver = {
        .type = "pgsql", .connect = fake_connect, .disconnect = fake_disconnect,
        .escape = fake_escape, .query = fake_query,
};

static void fake_reset(bool up0, bool up1) {
        fake.log[0] = '\0';
        fake.up[0] = up0;
        fake.up[1] = up1;
}

/* Host order, failover, retry_interval, reconnecting after a broken connection, idle_interval. */
static void test_failover(void) {
        char cf[4200];
        snprintf(cf, sizeof cf, "%s/fail.cf", tmpdir);
        test_write_file(cf, "hosts = h0 h1\nquery = SELECT '%s' -- %u\nretry_interval = 1\nidle_interval = 1\n", 0600);
        TableSql *t = NULL;
        CHECK_INT(table_sql_open(cf, &fake_driver, &t, NULL), 0);
        char *v = NULL;

        fake_reset(true, true);         /* in order: the first host */
        CHECK_INT(table_sql_lookup(t, "k", &v), 1);
        CHECK_STR(v, "v");
        free(v);
        CHECK_INT(table_sql_lookup(t, "x", &v), 0);
        CHECK_STR(fake.log, "c0 q q ");

        fake_reset(false, true);        /* broken, reconnect at once: h0 is down, h1 answers */
        fake.broken = true;
        CHECK_INT(table_sql_lookup(t, "k", &v), 1);
        free(v);
        CHECK_STR(fake.log, "q d c0 c1 q ");
        CHECK(strstr(table_sql_last_error(t), "host 0 is down"));

        fake_reset(false, false);       /* h1 breaks and is down: h0 still waits out its delay */
        fake.broken = true;
        CHECK(table_sql_lookup(t, "k", &v) < 0);
        CHECK_STR(fake.log, "q d c1 ");
        fake_reset(true, true);         /* within retry_interval: nothing is tried */
        CHECK_INT(table_sql_lookup(t, "k", &v), -EAGAIN);
        CHECK_STR(fake.log, "");
        usleep(1100 * 1000);            /* after it: connected again, in order */
        CHECK_INT(table_sql_lookup(t, "k", &v), 1);
        free(v);
        CHECK_STR(fake.log, "c0 q ");

        fake_reset(true, true);         /* a failing query is an error, the connection stays */
        CHECK_INT(table_sql_lookup(t, "bad", &v), -EIO);
        CHECK_STR(fake.log, "q ");
        CHECK_INT(table_sql_lookup(t, "@example.org", &v), 0);   /* no query needed */
        CHECK_STR(fake.log, "q ");

        usleep(1100 * 1000);            /* idle_interval: closed before the next lookup */
        fake_reset(true, true);
        CHECK_INT(table_sql_lookup(t, "k", &v), 1);
        free(v);
        CHECK_STR(fake.log, "d c0 q ");
        table_sql_free(t);
}

/* The fake log of the first lookup of a newly opened table with drv. */
static void first_lookup(const char *cf, const TableSqlDriver *drv, char *ret_log, size_t size) {
        TableSql *t = NULL;
        CHECK_INT(table_sql_open(cf, drv, &t, NULL), 0);
        fake_reset(true, true);
        char *v = NULL;
        CHECK_INT(table_sql_lookup(t, "k", &v), 1);
        free(v);
        snprintf(ret_log, size, "%s", fake.log);
        table_sql_free(t);
}

/* Hosts at random: over many tables, each host comes first some of the time; a unix: socket
 * comes before TCP hosts, however the dice fall. */
static void test_random_order(void) {
        char cf[4200], log[sizeof fake.log];
        snprintf(cf, sizeof cf, "%s/random.cf", tmpdir);
        TableSqlDriver drv = fake_driver;
        drv.random_order = true;
        test_write_file(cf, "hosts = h0 h1\nquery = SELECT '%s'\n", 0600);
        unsigned first[2] = {};
        for (int i = 0; i < 64; i++) {
                first_lookup(cf, &drv, log, sizeof log);
                first[log[1] - '0']++;
        }
        CHECK(first[0] > 0 && first[1] > 0);
        test_write_file(cf, "hosts = h0 unix:/run/db\nquery = SELECT '%s'\n", 0600);
        for (int i = 0; i < 16; i++) {
                first_lookup(cf, &drv, log, sizeof log);
                CHECK_STR(log, "c1 q ");
        }
}

/* The error reporter: the server's reason, once per table until it changes or a minute passes. */
static char reported[600];
static void record_error(const char *spec, const char *reason, void *userdata) {
        (void) userdata;
        snprintf(reported + strlen(reported), sizeof reported - strlen(reported), "%s|%s\n", spec, reason);
}

static void test_report(void) {
        table_error_report_set(record_error, NULL);
        Table *t = NULL;
        CHECK_INT(table_open("tcp:127.0.0.1:1", 0, &t, NULL), 0);
        char *v = NULL;
        CHECK(table_lookup(t, "a", &v) < 0);
        CHECK(table_lookup(t, "b", &v) < 0);
        CHECK_STR(reported, "tcp:127.0.0.1:1|cannot connect: Connection refused\n");
        table_free(t);
        table_error_report_set(NULL, NULL);
}

/* A scripted socketmap/tcp server on a unix socket: one connection, answers from a list, then
 * closes; a second connection gets the rest. */
static int listen_unix(const char *path) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        CHECK(strlen(path) < sizeof sa.sun_path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        unlink(path);
        CHECK(bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        CHECK(listen(fd, 4) == 0);
        return fd;
}

static int listen_tcp(unsigned *ret_port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        CHECK(bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        socklen_t l = sizeof sa;
        CHECK(getsockname(fd, (struct sockaddr *) &sa, &l) == 0);
        CHECK(listen(fd, 4) == 0);
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static pid_t serve(int fd, const char *const *replies) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid > 0) {
                close(fd);
                return pid;
        }
        for (const char *const *r = replies; *r;) {
                int c = accept(fd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                for (; *r && !streq(*r, "CLOSE"); r++) {
                        char buf[4096];
                        if (read(c, buf, sizeof buf) <= 0)
                                _exit(1);
                        if (write(c, *r, strlen(*r)) < 0)
                                _exit(1);
                }
                if (*r)
                        r++;
                close(c);
        }
        _exit(0);
}

static void test_socket(void) {
        char *q = NULL;
        CHECK_INT(table_socket_hex_quote("a b%c\n", &q), 0);
        CHECK_STR(q, "a%20b%25c%0A");
        char *u = NULL;
        CHECK_INT(table_socket_hex_unquote(q, &u), 0);
        CHECK_STR(u, "a b%c\n");
        free(q);
        free(u);
        CHECK_INT(table_socket_hex_unquote("a%2", &u), -EINVAL);
        CHECK_INT(table_socket_hex_unquote("a%00", &u), -EINVAL);

        char path[4200], spec[4300];
        snprintf(path, sizeof path, "%s/map.sock", tmpdir);
        static const char *const sm[] = {
                "9:OK alice,,", "9:NOTFOUND ,", "12:TEMP db down,", "CLOSE",
                "6:OK bob,", "9:PERM nope,", "7:garbage;", NULL,
        };
        pid_t pid = serve(listen_unix(path), sm);
        snprintf(spec, sizeof spec, "socketmap:unix:%s:virtual", path);
        Table *t = NULL;
        char *reason = NULL;
        CHECK_INT(table_open(spec, 0, &t, &reason), 0);
        char *v = NULL;
        CHECK_INT(table_lookup(t, "a@example.org", &v), 1);
        CHECK_STR(v, "alice,");
        free(v);
        CHECK_INT(table_lookup(t, "b@example.org", &v), 0);
        CHECK(table_lookup(t, "c@example.org", &v) < 0);       /* TEMP */
        CHECK_INT(table_lookup(t, "d@example.org", &v), 1);    /* the server closed: reconnected */
        CHECK_STR(v, "bob");
        free(v);
        CHECK(table_lookup(t, "e@example.org", &v) < 0);       /* PERM */
        CHECK(table_lookup(t, "f@example.org", &v) < 0);       /* not a netstring */
        CHECK(waitpid(pid, NULL, 0) == pid);
        CHECK(table_lookup(t, "g@example.org", &v) < 0);       /* nobody listens */
        table_free(t);

        static const char *const tcp[] = {
                "200 alice%40example.org\n", "500 no\n", "400 busy\n", "200 bad%zz\n", NULL,
        };
        unsigned port;
        pid = serve(listen_tcp(&port), tcp);
        CHECK(table_open("tcp:localhost", 0, &t, NULL) < 0);
        CHECK(table_open("tcp:db.example:80", 0, &t, &reason) < 0);
        CHECK(reason && strstr(reason, "numeric address or localhost"));
        free(reason);
        snprintf(spec, sizeof spec, "proxy:tcp:127.0.0.1:%u", port);
        CHECK_INT(table_open(spec, 0, &t, NULL), 0);
        CHECK_INT(table_lookup(t, "a b@example.org", &v), 1);
        CHECK_STR(v, "alice@example.org");
        free(v);
        CHECK_INT(table_lookup(t, "x", &v), 0);
        CHECK(table_lookup(t, "x", &v) < 0);                    /* 400 */
        CHECK(table_lookup(t, "x", &v) < 0);                    /* bad %XX */
        CHECK(waitpid(pid, NULL, 0) == pid);
        CHECK(table_lookup(t, "x", &v) < 0);                    /* connection refused */
        table_free(t);
        CHECK(table_open("socketmap:inet:127.0.0.1:80", 0, &t, NULL) < 0);   /* no map name */
        CHECK(table_open("socketmap:tcp:127.0.0.1:80:x", 0, &t, NULL) < 0);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));
        signal(SIGPIPE, SIG_IGN);
        test_conf();
        test_results();
        test_unreachable();
        test_failover();
        test_random_order();
        test_report();
        test_socket();
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        CHECK(system(cmd) == 0);
        return 0;
}
