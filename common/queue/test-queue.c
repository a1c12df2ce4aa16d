/* test-queue.c — unit tests for the queue module: open/create/reopen, schema migration and
 * refusal of newer schemas, envelope/recipient/content round trips (NULLs, NUL bytes, 10 MB),
 * results, hold, delete cascade, list, read-only opens beside a writer, busy waits and -EBUSY,
 * rollbacks, group commits with one bad message or a full disk, query plans (no table scans),
 * file modes, concurrent creators and writers in several processes, and -wal/-shm ownership
 * when root opens a database owned by someone else (run as root; that part is skipped
 * otherwise). Which files queue_open() refuses: test-queue-open.c; the scheduling queries: test-queue-scan.c. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/tests.h"
#include "queue/queue-internal.h"   /* white box: the connection's pragmas, SQLITE_FULL */
#include "queue/queue.h"

#include "test-queue-util.h"

static void test_open(void) {
        Queue *q = NULL;

        dir_clean(dir);
        /* Nothing there yet: refuse without CREATE, in both modes. */
        CHECK_INT(queue_open(dir, 0, &q), -ENOENT);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), -ENOENT);
        CHECK(!q);
        CHECK_INT(queue_open("/nonexistent/dir", QUEUE_OPEN_CREATE, &q), -ENOENT);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE | QUEUE_OPEN_READONLY, &q), -EINVAL);

        mode_t old_umask = umask(0);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        umask(old_umask);
        CHECK(q);
        CHECK_STR(queue_last_error(q), "no error");
        /* Private files, whatever the umask: the -wal/-shm files take the database's mode. */
        static const char *const files[] = { "queue.db", "queue.db-wal", "queue.db-shm" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char p[128];
                struct stat st;
                snprintf(p, sizeof p, "%s/%s", dir, files[i]);
                CHECK_INT(stat(p, &st), 0);
                CHECK_INT(st.st_mode & 07777, 0640);
        }
        q = queue_close(q);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                          "name IN ('messages', 'recipients', 'content')"), 3);
        CHECK_INT(raw_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);

        /* Reopen, with and without CREATE, and read-only; data survives. */
        QueueMessage m;
        CHECK_INT(queue_open(dir, 0, &q), 0);
        insert_simple(q, &m, 1000, 1, NULL);
        q = queue_close(q);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        q = queue_close(q);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), 0);
        QueueMessage l;
        CHECK_INT(queue_load_message(q, m.queue_id, &l, NULL, NULL), 0);
        CHECK_INT(l.nrcpt, 1);
        queue_message_done(&l);
        q = queue_close(q);
        CHECK(queue_close(NULL) == NULL);
}

static void test_migration(void) {
        Queue *q = NULL;

        /* A hand-made version-0 database: a valid, empty SQLite file in rollback-journal mode. */
        dir_clean(dir);
        raw_exec("PRAGMA user_version = 0; CREATE TABLE unrelated (x); DROP TABLE unrelated;",
                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
        CHECK_INT(raw_int("PRAGMA user_version"), 0);

        /* Without CREATE a schemaless database is "not there"; read-only cannot migrate it. */
        CHECK_INT(queue_open(dir, 0, &q), -ENOENT);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), -ENOENT);
        CHECK_INT(raw_int("PRAGMA user_version"), 0);

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        q = queue_close(q);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                          "name = 'recipients_due'"), 1);
        CHECK_INT(raw_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);

        /* A newer schema than ours is refused, in every mode, and left untouched. */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", QUEUE_SCHEMA_VERSION + 1);
        raw_exec(sql, SQLITE_OPEN_READWRITE);
        CHECK_INT(queue_open(dir, 0, &q), -EPROTONOSUPPORT);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), -EPROTONOSUPPORT);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), -EPROTONOSUPPORT);
        CHECK(!q);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION + 1);

        /* A failing migration step leaves the database exactly as it was. */
        dir_clean(dir);
        raw_exec("CREATE TABLE content (x); INSERT INTO content VALUES (42);",
                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), -EIO);
        CHECK_INT(raw_int("PRAGMA user_version"), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM sqlite_master"), 1);
        CHECK_INT(raw_int("SELECT x FROM content"), 42);

        /* Garbage where the database should be. */
        dir_clean(dir);
        char p[128];
        db_path(p, sizeof p);
        FILE *f = fopen(p, "w");
        CHECK(f);
        for (int i = 0; i < 200; i++)
                fputs("this is not an SQLite database\n", f);
        fclose(f);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), -EIO);
        dir_clean(dir);
}

/* Schema 1 -> 2 adds messages.filter: a version-1 queue keeps its messages (filter NULL) and
 * takes filters afterwards. */
/* Turns a current database back into one without the probe column (version 4). */
#define DROP_PROBE "DROP INDEX messages_probe; ALTER TABLE messages DROP COLUMN is_probe;"

/* A fresh queue holding one message (m, nrcpt recipients, r filled when given), then turned
 * back into an older schema by sql, as an older Postern left it. */
static void queue_downgraded(QueueMessage *m, size_t nrcpt, QueueRecipient *r, const char *sql) {
        Queue *q = NULL;

        dir_clean(dir);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        insert_simple(q, m, 1000, nrcpt, r);
        q = queue_close(q);
        raw_exec(sql, SQLITE_OPEN_READWRITE);
}

/* Version 4 -> 5: is_probe appears (0 for the mail already queued), probes are stored, loaded,
 * listed and counted while their recipient is untried. */
static void test_migration_probe(void) {
        Queue *q = NULL;
        QueueMessage m, l, p;
        QueueRecipient r[1], *lr = NULL;
        size_t n = 0, count = 99;

        queue_downgraded(&m, 1, NULL, DROP_PROBE "PRAGMA user_version = 4;");
        CHECK_INT(raw_int("SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'is_probe'"), 0);

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(queue_load_message(q, m.queue_id, &l, NULL, NULL), 0);
        CHECK(!l.is_probe);
        queue_message_done(&l);
        CHECK_INT(queue_count_probes_untried(q, &count), 0);
        CHECK_INT((int) count, 0);

        make_message(&p, 2000);
        p.is_probe = true;
        r[0] = (QueueRecipient) { .address = (char *) "x@example.net", .notify = QUEUE_NOTIFY_NEVER };
        CHECK_INT(queue_insert_message(q, &p, r, 1, NULL, 0), 0);
        CHECK_INT(queue_count_probes_untried(q, &count), 0);
        CHECK_INT((int) count, 1);
        CHECK_INT(queue_load_message(q, p.queue_id, &l, &lr, &n), 0);
        CHECK(l.is_probe);
        queue_message_done(&l);
        /* Tried once and deferred: no longer counted. */
        lr[0].state = QUEUE_RCPT_DEFERRED;
        CHECK_INT(queue_update_recipient(q, &lr[0]), 0);
        CHECK_INT(queue_count_probes_untried(q, &count), 0);
        CHECK_INT((int) count, 0);
        queue_recipients_free(lr, n);
        q = queue_close(q);
        dir_clean(dir);
}

static void test_migration_filter(void) {
        Queue *q = NULL;
        QueueMessage m, l;

        /* Turn it back into a version-1 database. */
        queue_downgraded(&m, 1, NULL, DROP_PROBE "ALTER TABLE messages DROP COLUMN filter; ALTER TABLE messages DROP COLUMN delay_warned;"
                 "ALTER TABLE recipients DROP COLUMN flags; ALTER TABLE recipients DROP COLUMN remote_mta;"
                 "DROP TABLE metrics; PRAGMA user_version = 1;");
        CHECK_INT(raw_int("SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'filter'"), 0);

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(queue_load_message(q, m.queue_id, &l, NULL, NULL), 0);
        CHECK(l.filter == NULL);
        queue_message_done(&l);

        QueueMessage f;
        QueueRecipient r = { .address = (char *) "bob@example.net" };
        make_message(&f, 2000);
        f.filter = (char *) "scan:[127.0.0.1]:10025";
        CHECK_INT(queue_insert_message(q, &f, &r, 1, "x", 1), 0);
        CHECK_INT(queue_load_message(q, f.queue_id, &l, NULL, NULL), 0);
        CHECK_STR(l.filter, "scan:[127.0.0.1]:10025");
        queue_message_done(&l);
        q = queue_close(q);
        dir_clean(dir);
}

/* Version 2 -> 3: the DSN columns (delay_warned, recipient flags and remote MTA) are added with
 * their defaults, and queue_update_recipient()/queue_set_delay_warned() store them. */
static int sum_metric(const char *name, const char *labels, double value, void *ud) {
        char key[128];
        snprintf(key, sizeof key, "%s{%s}", name, labels);
        if (streq(key, "postfix_smtpd_connects_total{}"))
                ((double *) ud)[0] += value;
        else if (streq(key, "x_total{a=\"b\"}"))
                ((double *) ud)[1] += value;
        return 0;
}

static int count_metric_message(const QueueMetricMessage *m, void *ud) {
        unsigned *n = ud;
        n[0]++;
        n[1] += m->has_pending;
        n[2] += m->unfinished;
        n[3] += m->hold;
        return 0;
}

/* Version 3 -> 4: the metrics table appears with existing mail untouched; counters add up
 * inside and outside transactions, a rolled-back add is gone, and the message reader classifies. */
static void test_migration_metrics(void) {
        Queue *q = NULL;
        QueueMessage m;
        double v[2] = {};
        unsigned n[4] = {};

        queue_downgraded(&m, 2, NULL, DROP_PROBE "DROP TABLE metrics; PRAGMA user_version = 3;");
        CHECK_INT(raw_int("SELECT count(*) FROM sqlite_master WHERE name = 'metrics'"), 0);
        /* A reader cannot migrate: it says so. */
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), -EPROTONOSUPPORT);

        CHECK_INT(queue_open(dir, 0, &q), 0);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(queue_metric_add(q, "postfix_smtpd_connects_total", "", 2), 0);
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(queue_metric_add(q, "postfix_smtpd_connects_total", NULL, 1), 0);
        CHECK_INT(queue_metric_add(q, "x_total", "a=\"b\"", 0.5), 0);
        CHECK_INT(queue_commit(q), 0);
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(queue_metric_add(q, "x_total", "a=\"b\"", 100), 0);
        CHECK_INT(queue_rollback(q), 0);
        CHECK_INT(queue_metric_add(q, "", "", 1), -EINVAL);
        CHECK_INT(queue_metric_list(q, sum_metric, v), 0);
        CHECK(v[0] == 3 && v[1] == 0.5);
        CHECK_INT(queue_metric_messages(q, 2000, count_metric_message, n), 0);
        CHECK_INT((int) n[0], 1);
        CHECK_INT((int) n[1], 1);
        CHECK_INT((int) n[2], 2);
        CHECK_INT((int) n[3], 0);
        q = queue_close(q);

        /* Read-only: both readers work, adding is refused. */
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &q), 0);
        v[0] = v[1] = 0;
        CHECK_INT(queue_metric_list(q, sum_metric, v), 0);
        CHECK(v[0] == 3);
        CHECK_INT(queue_metric_add(q, "y", "", 1), -EROFS);
        q = queue_close(q);
        dir_clean(dir);
}

static void test_migration_dsn(void) {
        Queue *q = NULL;
        QueueMessage m, l;
        QueueRecipient r[1], *lr = NULL;
        size_t n = 0;

        queue_downgraded(&m, 1, r, DROP_PROBE "ALTER TABLE messages DROP COLUMN delay_warned;"
                 "ALTER TABLE recipients DROP COLUMN flags; ALTER TABLE recipients DROP COLUMN remote_mta;"
                 "DROP TABLE metrics; PRAGMA user_version = 2;");

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(queue_load_message(q, m.queue_id, &l, &lr, &n), 0);
        CHECK(n == 1);
        CHECK(!l.delay_warned);
        CHECK_INT((int) lr[0].flags, 0);
        CHECK(lr[0].remote_mta == NULL);
        queue_message_done(&l);

        lr[0].flags = QUEUE_RCPT_F_RELAYED | QUEUE_RCPT_F_DELAY_WARNED;
        free(lr[0].remote_mta);
        lr[0].remote_mta = strdup("mx.example.net");
        lr[0].state = QUEUE_RCPT_DELIVERED;
        CHECK_INT(queue_update_recipient(q, &lr[0]), 0);
        CHECK_INT(queue_set_delay_warned(q, m.queue_id), 0);
        CHECK_INT(queue_set_delay_warned(q, "NOSUCHID"), -ENOENT);
        queue_recipients_free(lr, n);
        lr = NULL;

        CHECK_INT(queue_load_message(q, m.queue_id, &l, &lr, &n), 0);
        CHECK(l.delay_warned);
        CHECK_INT((int) lr[0].flags, QUEUE_RCPT_F_RELAYED | QUEUE_RCPT_F_DELAY_WARNED);
        CHECK_STR(lr[0].remote_mta, "mx.example.net");
        queue_message_done(&l);
        queue_recipients_free(lr, n);
        q = queue_close(q);
        dir_clean(dir);
}

static void check_str_or_null(const char *a, const char *b) {
        if (!b)
                CHECK(!a);
        else
                CHECK_STR(a, b);
}

static void test_round_trip(Queue *q) {
        static const struct {
                QueueMessage m;
                QueueRecipient r[3];
                size_t n;
        } table[] = {
                {
                        .m = {
                                .sender = (char *) "Alice.Ünïcode@example.org",
                                .arrival_usec = 1700000000123456ULL,
                                .size = 12345678901ULL,
                                .client_address = (char *) "2001:db8::1",
                                .client_name = (char *) "mail.example.org",
                                .helo = (char *) "[192.0.2.1]",
                                .protocol = (char *) "ESMTPSA",
                                .sasl_user = (char *) "alice",
                                .body_type = (char *) "8BITMIME",
                                .envid = (char *) "env+2Bid",
                                .ret = 2,
                                .smtputf8 = true,
                                .requiretls = true,
                                .hold = true,
                                .is_bounce = true,
                                .is_probe = true,
                        },
                        .r = {
                                { .address = (char *) "bob@example.net",
                                  .orcpt = (char *) "rfc822;Bob@Example.NET",
                                  .notify = QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY,
                                  .state = QUEUE_RCPT_DEFERRED, .attempts = 7,
                                  .next_attempt_usec = 1700000999000000ULL,
                                  .dsn_status = (char *) "4.4.1", .diag = (char *) "connection refused" },
                                { .address = (char *) "carol@example.net", .notify = QUEUE_NOTIFY_NEVER,
                                  .state = QUEUE_RCPT_DELIVERED, .attempts = 1,
                                  .dsn_status = (char *) "2.0.0", .diag = (char *) "250 ok" },
                                { .address = (char *) "dave@example.net", .state = QUEUE_RCPT_BOUNCED,
                                  .attempts = UINT32_MAX, .next_attempt_usec = UINT64_MAX,
                                  .dsn_status = (char *) "5.1.1" },
                        },
                        .n = 3,
                },
                {
                        /* Null sender, every optional field NULL, no recipients at all. */
                        .m = { .sender = (char *) "" },
                        .n = 0,
                },
                {
                        /* A NULL sender pointer is stored as the null sender. */
                        .m = { .sender = NULL, .arrival_usec = 1 },
                        .r = { { .address = (char *) "" } },
                        .n = 1,
                },
        };

        for (size_t t = 0; t < ELEMENTSOF(table); t++) {
                QueueMessage m = table[t].m, l;
                QueueRecipient r[3], *lr = NULL;
                size_t n = 99;

                memcpy(r, table[t].r, sizeof r);
                queue_id_new(m.queue_id);
                CHECK_INT(queue_begin(q), 0);
                CHECK_INT(queue_insert_message(q, &m, r, table[t].n, NULL, 0), 0);
                CHECK_INT(queue_commit(q), 0);
                for (size_t i = 0; i < table[t].n; i++) {
                        CHECK(r[i].id > 0);
                        if (i > 0)
                                CHECK(r[i].id > r[i - 1].id);
                }

                CHECK_INT(queue_load_message(q, m.queue_id, &l, &lr, &n), 0);
                CHECK_STR(l.queue_id, m.queue_id);
                CHECK_STR(l.sender, strempty(m.sender));
                CHECK(l.arrival_usec == m.arrival_usec);
                CHECK(l.size == m.size);
                check_str_or_null(l.client_address, m.client_address);
                check_str_or_null(l.client_name, m.client_name);
                check_str_or_null(l.helo, m.helo);
                check_str_or_null(l.protocol, m.protocol);
                check_str_or_null(l.sasl_user, m.sasl_user);
                check_str_or_null(l.body_type, m.body_type);
                check_str_or_null(l.envid, m.envid);
                CHECK_INT(l.ret, m.ret);
                CHECK_INT(l.smtputf8, m.smtputf8);
                CHECK_INT(l.requiretls, m.requiretls);
                CHECK_INT(l.hold, m.hold);
                CHECK_INT(l.is_bounce, m.is_bounce);
                CHECK_INT(l.is_probe, m.is_probe);
                CHECK_INT(l.nrcpt, table[t].n);
                CHECK_INT(n, table[t].n);
                CHECK(n == 0 || lr);

                for (size_t i = 0; i < n; i++) {
                        CHECK_INT(lr[i].id, r[i].id);
                        CHECK_STR(lr[i].address, r[i].address);
                        check_str_or_null(lr[i].orcpt, r[i].orcpt);
                        CHECK_INT(lr[i].notify, r[i].notify);
                        CHECK_INT(lr[i].state, r[i].state);
                        CHECK_INT(lr[i].attempts, r[i].attempts);
                        /* Times beyond INT64_MAX saturate ("never") instead of wrapping. */
                        CHECK(lr[i].next_attempt_usec ==
                              MIN(r[i].next_attempt_usec, (usec_t) INT64_MAX));
                        check_str_or_null(lr[i].dsn_status, r[i].dsn_status);
                        check_str_or_null(lr[i].diag, r[i].diag);
                }
                queue_recipients_free(lr, n);
                queue_message_done(&l);
                CHECK(!l.sender);

                /* Content of an insert with none is an empty buffer, not an error. */
                char *c = NULL;
                size_t len = 99;
                CHECK_INT(queue_load_content(q, m.queue_id, &c, &len), 0);
                CHECK_INT(len, 0);
                CHECK_STR(c, "");
                free(c);

                CHECK_INT(queue_delete_message(q, m.queue_id), 0);
        }

        /* Missing messages. */
        QueueMessage l;
        char *c = NULL;
        size_t n;
        CHECK_INT(queue_load_message(q, "NOSUCHID", &l, NULL, NULL), -ENOENT);
        CHECK_INT(queue_load_content(q, "NOSUCHID", &c, &n), -ENOENT);
        CHECK(!c);
        CHECK_INT(queue_count_unfinished(q, "NOSUCHID", &n), -ENOENT);
        CHECK_INT(queue_delete_message(q, "NOSUCHID"), -ENOENT);
        CHECK_INT(queue_set_hold(q, "NOSUCHID", true), -ENOENT);
        CHECK(strstr(queue_last_error(q), "NOSUCHID"));
        QueueRecipient gone = { .id = INT64_MAX, .address = (char *) "x" };
        CHECK_INT(queue_update_recipient(q, &gone), -ENOENT);

        /* Bad input. */
        QueueMessage m = {};
        QueueRecipient noaddr = {};
        CHECK_INT(queue_insert_message(q, &m, NULL, 0, NULL, 0), -EINVAL);  /* no queue id */
        queue_id_new(m.queue_id);
        CHECK_INT(queue_insert_message(q, &m, &noaddr, 1, NULL, 0), -EINVAL);
        CHECK_INT(queue_insert_message(q, &m, NULL, 0, NULL, 10), -EINVAL);
        CHECK_INT(queue_load_message(q, m.queue_id, &l, NULL, NULL), -ENOENT);
        CHECK_INT(queue_commit(q), -EINVAL);  /* no transaction */
        CHECK_INT(queue_rollback(q), 0);
}

static void test_content(Queue *q) {
        static const size_t sizes[] = { 1, 4096, 10 * 1024 * 1024 };

        for (size_t t = 0; t < ELEMENTSOF(sizes); t++) {
                size_t size = sizes[t], len = 0;
                char *data = malloc(size), *c = NULL;
                QueueMessage m;
                QueueRecipient r = { .address = (char *) "bob@example.net" };

                CHECK(data);
                for (size_t i = 0; i < size; i++)
                        data[i] = (char) (i * 7 + t);   /* NUL bytes every 256 */
                data[0] = '\0';

                make_message(&m, 5000 + t);
                m.size = size;
                CHECK_INT(queue_begin(q), 0);
                CHECK_INT(queue_insert_message(q, &m, &r, 1, data, size), 0);
                CHECK_INT(queue_commit(q), 0);

                CHECK_INT(queue_load_content(q, m.queue_id, &c, &len), 0);
                CHECK_INT(len, size);
                CHECK(memcmp(c, data, size) == 0);
                CHECK_INT(c[size], 0);   /* NUL-terminated for convenience */
                free(c);
                /* ret_len is optional */
                CHECK_INT(queue_load_content(q, m.queue_id, &c, NULL), 0);
                free(c);

                CHECK_INT(queue_delete_message(q, m.queue_id), 0);
                free(data);
        }
}

static long long conn_int(Queue *q, const char *sql) {
        sqlite3_stmt *st;
        long long v = -1;

        CHECK_INT(sqlite3_prepare_v2(q->db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void test_pragmas(Queue *q) {
        CHECK_INT(conn_int(q, "PRAGMA synchronous"), 2);   /* FULL */
        CHECK_INT(conn_int(q, "PRAGMA foreign_keys"), 1);
        CHECK_INT(conn_int(q, "PRAGMA busy_timeout"), 10000);
        CHECK_INT(conn_int(q, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
        CHECK_INT(conn_int(q, "PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        /* Defensive in every process: planted triggers and views may not call functions with
         * side effects, and the schema cannot be written behind SQLite's back. */
        int on = -1;
        CHECK_INT(conn_int(q, "PRAGMA trusted_schema"), 0);
        CHECK_INT(sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, -1, &on), SQLITE_OK);
        CHECK_INT(on, 1);
        CHECK(sqlite3_exec(q->db, "PRAGMA writable_schema = ON; "
                           "UPDATE sqlite_schema SET sql = 'x' WHERE name = 'messages'", NULL, NULL, NULL) != SQLITE_OK);
        (void) sqlite3_exec(q->db, "PRAGMA writable_schema = OFF", NULL, NULL, NULL);

        /* Queries that run per message or per scan must find rows through an index: no plan
         * step may be a full table scan ("SCAN t" without "USING ... INDEX"). */
        static const struct {
                QueueStmtId id;
                const char *index;   /* an index the plan must mention */
        } plans[] = {
                { QUEUE_STMT_SCAN_DUE, "recipients_due" },
                { QUEUE_STMT_SCAN_DUE_BY_ARRIVAL, "messages_arrival" },
                { QUEUE_STMT_ARRIVAL_AFTER, "messages_arrival" },
                { QUEUE_STMT_COUNT_DUE, "recipients_due" },
                { QUEUE_STMT_NEXT_DUE, "recipients_due" },
                { QUEUE_STMT_LOAD_MESSAGE, "sqlite_autoindex_messages_1" },
                { QUEUE_STMT_LOAD_RECIPIENTS, "recipients_message" },
                { QUEUE_STMT_LOAD_CONTENT, "sqlite_autoindex_messages_1" },
                { QUEUE_STMT_COUNT_UNFINISHED, "recipients_message" },
                { QUEUE_STMT_DELETE_MESSAGE, "sqlite_autoindex_messages_1" },
                { QUEUE_STMT_SET_HOLD, "sqlite_autoindex_messages_1" },
                { QUEUE_STMT_LIST_MESSAGES, "messages_arrival" },
                { QUEUE_STMT_UPDATE_RECIPIENT, "INTEGER PRIMARY KEY" },
                { QUEUE_STMT_SCAN_FINISHED, "recipients_message" },
        };
        for (size_t i = 0; i < ELEMENTSOF(plans); i++) {
                char sql[2048];
                sqlite3_stmt *st;
                bool found = false;

                snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", queue_stmt_sql(plans[i].id));
                CHECK_INT(sqlite3_prepare_v2(q->db, sql, -1, &st, NULL), SQLITE_OK);
                while (sqlite3_step(st) == SQLITE_ROW) {
                        const char *detail = (const char *) sqlite3_column_text(st, 3);
                        /* "SCAN (subquery-N)" walks a result set, not a table. */
                        if (strncmp(detail, "SCAN ", 5) == 0 && detail[5] != '(' &&
                            !strstr(detail, "INDEX")) {
                                fprintf(stderr, "statement %d: full scan: %s\n", plans[i].id, detail);
                                CHECK(false);
                        }
                        found = found || strstr(detail, plans[i].index);
                }
                sqlite3_finalize(st);
                if (!found)
                        fprintf(stderr, "statement %d: plan does not use %s\n", plans[i].id,
                                plans[i].index);
                CHECK(found);
        }
}

/* A full disk in the middle of a group commit: the failing message is undone alone, the
 * transaction goes on and commits the others. */
static void test_disk_full(Queue *q) {
        QueueMessage m1, m2, m3;
        QueueRecipient r = { .address = (char *) "bob@example.net" };
        long long pages = conn_int(q, "PRAGMA page_count");
        /* Big enough to need more than the free pages earlier deletions left plus the margin. */
        size_t big = (conn_int(q, "PRAGMA freelist_count") + 128) * conn_int(q, "PRAGMA page_size");
        char *data = calloc(1, big);
        char sql[64];

        CHECK(data);
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", pages + 64);
        CHECK_INT(conn_int(q, sql), pages + 64);

        CHECK_INT(queue_begin(q), 0);
        insert_simple(q, &m1, 1, 1, NULL);
        make_message(&m2, 2);
        CHECK_INT(queue_insert_message(q, &m2, &r, 1, data, big), -ENOSPC);
        CHECK(strstr(queue_last_error(q), "full"));

        /* SQLite may roll the whole transaction back on SQLITE_FULL. Then every later write and
         * the commit must fail with the same error (never run silently in autocommit mode, which
         * would commit m3 alone); otherwise the transaction goes on without m2. */
        QueueMessage l;
        QueueRecipient r3 = { .address = (char *) "bob@example.net" };
        bool aborted = sqlite3_get_autocommit(q->db);
        make_message(&m3, 3);
        CHECK_INT(queue_insert_message(q, &m3, &r3, 1, "x", 1), aborted ? -ENOSPC : 0);
        if (aborted) {
                CHECK_INT(queue_update_recipient(q, &r3), -ENOSPC);
                CHECK_INT(queue_set_hold(q, m1.queue_id, true), -ENOSPC);
                CHECK_INT(queue_delete_message(q, m1.queue_id), -ENOSPC);
                CHECK_INT(queue_begin(q), -EINPROGRESS);
        }
        CHECK_INT(queue_commit(q), aborted ? -ENOSPC : 0);
        CHECK_INT(queue_load_message(q, m1.queue_id, &l, NULL, NULL), aborted ? -ENOENT : 0);
        if (!aborted)
                queue_message_done(&l);
        CHECK_INT(queue_load_message(q, m2.queue_id, &l, NULL, NULL), -ENOENT);
        CHECK_INT(queue_load_message(q, m3.queue_id, &l, NULL, NULL), aborted ? -ENOENT : 0);
        if (!aborted)
                queue_message_done(&l);
        CHECK_INT(queue_commit(q), -EINVAL);   /* the transaction is over either way */

        /* The same after a rollback instead of a commit. */
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(queue_insert_message(q, &m2, &r, 1, data, big), -ENOSPC);
        CHECK_INT(queue_rollback(q), 0);
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(queue_rollback(q), 0);
        if (!aborted) {
                CHECK_INT(queue_delete_message(q, m1.queue_id), 0);
                CHECK_INT(queue_delete_message(q, m3.queue_id), 0);
        }

        /* Outside a transaction too. */
        CHECK_INT(queue_insert_message(q, &m2, &r, 1, data, big), -ENOSPC);
        CHECK_INT(queue_load_message(q, m2.queue_id, &l, NULL, NULL), -ENOENT);
        CHECK(sqlite3_get_autocommit(q->db));

        CHECK(conn_int(q, "PRAGMA max_page_count = 1073741823") > pages);
        CHECK_INT(queue_insert_message(q, &m2, &r, 1, data, big), 0);
        CHECK_INT(queue_delete_message(q, m2.queue_id), 0);
        free(data);
}

static int wait_children(pid_t *pids, size_t n) {
        int failed = 0;

        for (size_t i = 0; i < n; i++) {
                int status;
                CHECK_INT(waitpid(pids[i], &status, 0), pids[i]);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "child %zu: status %d\n", i, status);
                        failed++;
                }
        }
        return failed;
}

static void concurrent_create_round(void) {
        pid_t pids[6];
        int gate[2];

        dir_clean(dir);
        CHECK_INT(pipe(gate), 0);
        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                CHECK(pids[i] >= 0);
                if (pids[i] == 0) {
                        Queue *q = NULL;
                        QueueMessage m;
                        char c;
                        /* All start together when the parent closes the gate. */
                        close(gate[1]);
                        if (read(gate[0], &c, 1) != 0)
                                _exit(2);
                        if (queue_open(dir, QUEUE_OPEN_CREATE, &q) < 0)
                                _exit(3);
                        insert_simple(q, &m, i, 1, NULL);
                        queue_close(q);
                        _exit(0);
                }
        }
        close(gate[0]);
        close(gate[1]);
        CHECK_INT(wait_children(pids, ELEMENTSOF(pids)), 0);
        CHECK_INT(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), ELEMENTSOF(pids));
        dir_clean(dir);
}

/* Several processes create the same new database at once: all succeed, one schema results.
 * (Switching a new database to WAL used to fail with an immediate SQLITE_BUSY here: no busy
 * handler is called for that lock. Several rounds, since it is a race.) */
static void test_concurrent_create(void) {
        for (int round = 0; round < 12; round++)
                concurrent_create_round();
}


/* Writers in several processes with group commits, a reader scanning meanwhile: every insert
 * lands, no call fails with -EBUSY. */
static void test_concurrent_writers(void) {
        enum { WRITERS = 4, COMMITS = 25, PER_COMMIT = 8 };
        pid_t pids[WRITERS + 1];
        Queue *q = NULL;

        dir_clean(dir);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        q = queue_close(q);

        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                CHECK(pids[i] >= 0);
                if (pids[i] > 0)
                        continue;
                if (queue_open(dir, i < WRITERS ? 0 : QUEUE_OPEN_READONLY, &q) < 0)
                        _exit(3);
                if (i < WRITERS) {
                        for (int c = 0; c < COMMITS; c++) {
                                if (queue_begin(q) < 0)
                                        _exit(4);
                                for (int k = 0; k < PER_COMMIT; k++) {
                                        QueueMessage m;
                                        insert_simple(q, &m, c, 1, NULL);
                                }
                                if (queue_commit(q) < 0)
                                        _exit(5);
                        }
                } else {
                        for (int k = 0; k < 50; k++) {
                                ScanResult s = {};
                                if (queue_scan_due(q, 0, ELEMENTSOF(s.ids), scan_collect, &s) < 0)
                                        _exit(6);
                                usec_t t;
                                (void) queue_next_due(q, &t);
                        }
                }
                queue_close(q);
                _exit(0);
        }
        CHECK_INT(wait_children(pids, ELEMENTSOF(pids)), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), WRITERS * COMMITS * PER_COMMIT);
        CHECK_INT(raw_int("SELECT count(*) FROM content"), WRITERS * COMMITS * PER_COMMIT);
        dir_clean(dir);
}

typedef struct ListCtx {
        size_t messages, rcpts;
        usec_t last_arrival;
        bool ordered;
        Queue *q;
} ListCtx;

static int list_cb(const QueueMessage *m, const QueueRecipient *r, size_t n, void *ud) {
        ListCtx *c = ud;

        if (m->arrival_usec < c->last_arrival)
                c->ordered = false;
        c->last_arrival = m->arrival_usec;
        CHECK_INT(m->nrcpt, n);
        CHECK_STR(m->sender, "alice@example.org");
        for (size_t i = 0; i < n; i++)
                CHECK_STR(r[i].address, "bob@example.net");
        c->messages++;
        c->rcpts += n;
        /* Writing from the callback is allowed: no statement is active. */
        if (c->q && c->messages % 100 == 1)
                CHECK_INT(queue_set_hold(c->q, m->queue_id, true), 0);
        return 0;
}

static int list_stop(const QueueMessage *m, const QueueRecipient *r, size_t n, void *ud) {
        return -EINTR;
}

static void test_list(Queue *q) {
        ListCtx c = { .ordered = true };
        size_t expect_rcpts = 0;

        CHECK_INT(queue_list(q, list_cb, &c), 0);
        CHECK_INT(c.messages, 0);

        /* More than one internal batch, with equal arrival times across its boundary. */
        CHECK_INT(queue_begin(q), 0);
        for (size_t i = 0; i < 300; i++) {
                QueueMessage m;
                insert_simple(q, &m, 10000 + (300 - i) / 3, i % 4, NULL);
                expect_rcpts += i % 4;
        }
        CHECK_INT(queue_commit(q), 0);

        c = (ListCtx) { .ordered = true, .q = q };
        CHECK_INT(queue_list(q, list_cb, &c), 0);
        CHECK_INT(c.messages, 300);
        CHECK_INT(c.rcpts, expect_rcpts);
        CHECK(c.ordered);
        CHECK_INT(raw_int("SELECT count(*) FROM messages WHERE hold = 1"), 3);
        CHECK_INT(queue_list(q, list_stop, NULL), -EINTR);

        raw_exec("PRAGMA foreign_keys = ON; DELETE FROM messages", SQLITE_OPEN_READWRITE);
}

static void test_transactions(Queue *q) {
        QueueMessage m1, m2, dup;
        long long before = raw_int("SELECT count(*) FROM messages");

        /* A rollback leaves nothing behind: no message, recipient or content row. */
        CHECK_INT(queue_begin(q), 0);
        CHECK_INT(queue_begin(q), -EINPROGRESS);
        insert_simple(q, &m1, 1, 2, NULL);
        insert_simple(q, &m2, 2, 1, NULL);
        CHECK_INT(queue_rollback(q), 0);
        CHECK_INT(queue_rollback(q), 0);   /* no-op */
        QueueMessage l;
        CHECK_INT(queue_load_message(q, m1.queue_id, &l, NULL, NULL), -ENOENT);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), before);
        CHECK_INT(raw_int("SELECT count(*) FROM recipients"), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM content"), 0);

        /* Group commit: a duplicate queue id fails alone, the others still commit. */
        CHECK_INT(queue_begin(q), 0);
        insert_simple(q, &m1, 1, 2, NULL);
        dup = m1;
        QueueRecipient r = { .address = (char *) "x@example.net", .id = 4242 };
        CHECK_INT(queue_insert_message(q, &dup, &r, 1, "abc", 3), -EEXIST);
        CHECK_INT(r.id, 4242);   /* untouched on failure */
        CHECK(strstr(queue_last_error(q), "UNIQUE"));
        insert_simple(q, &m2, 2, 1, NULL);
        CHECK_INT(queue_commit(q), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), before + 2);
        CHECK_INT(raw_int("SELECT count(*) FROM recipients"), 3);
        CHECK_INT(raw_int("SELECT count(*) FROM content"), 2);

        /* Outside a transaction a failed insert leaves nothing, too. */
        QueueRecipient bad[2] = { { .address = (char *) "ok@example.net" }, { .address = NULL } };
        QueueMessage m3;
        make_message(&m3, 3);
        CHECK_INT(queue_insert_message(q, &m3, bad, 2, "abc", 3), -EINVAL);
        CHECK_INT(raw_int("SELECT count(*) FROM recipients"), 3);
        CHECK_INT(queue_load_message(q, m3.queue_id, &l, NULL, NULL), -ENOENT);

        CHECK_INT(queue_delete_message(q, m1.queue_id), 0);
        CHECK_INT(queue_delete_message(q, m2.queue_id), 0);
        CHECK_INT(queue_checkpoint(q), 0);
}

static void test_readonly(Queue *w) {
        Queue *ro = NULL;
        QueueMessage m1, m2, l;
        ScanResult s;

        insert_simple(w, &m1, 10, 1, NULL);

        /* Open read-only while the writer holds the write lock with uncommitted work. */
        CHECK_INT(queue_begin(w), 0);
        insert_simple(w, &m2, 20, 1, NULL);
        CHECK_INT(queue_open(dir, QUEUE_OPEN_READONLY, &ro), 0);
        CHECK_INT(queue_load_message(ro, m1.queue_id, &l, NULL, NULL), 0);
        queue_message_done(&l);
        CHECK_INT(queue_load_message(ro, m2.queue_id, &l, NULL, NULL), -ENOENT);
        scan(ro, 0, 0, &s);
        CHECK_INT(s.n, 1);
        CHECK_INT(queue_commit(w), 0);
        scan(ro, 0, 0, &s);
        CHECK_INT(s.n, 2);
        char *c;
        size_t len;
        CHECK_INT(queue_load_content(ro, m2.queue_id, &c, &len), 0);
        CHECK_INT(len, 5);
        free(c);

        /* A reader's snapshot does not block the writer. */
        ListCtx lc = { .ordered = true };
        CHECK_INT(queue_list(ro, list_cb, &lc), 0);
        CHECK_INT(lc.messages, 2);
        CHECK_INT(queue_delete_message(w, m1.queue_id), 0);

        /* Every write is refused read-only. */
        QueueMessage m3;
        QueueRecipient r = { .id = 1, .address = (char *) "x" };
        make_message(&m3, 30);
        CHECK_INT(queue_begin(ro), -EROFS);
        CHECK_INT(queue_insert_message(ro, &m3, NULL, 0, NULL, 0), -EROFS);
        CHECK_INT(queue_update_recipient(ro, &r), -EROFS);
        CHECK_INT(queue_set_hold(ro, m2.queue_id, true), -EROFS);
        CHECK_INT(queue_delete_message(ro, m2.queue_id), -EROFS);
        CHECK_INT(queue_checkpoint(ro), -EROFS);
        ro = queue_close(ro);

        CHECK_INT(queue_delete_message(w, m2.queue_id), 0);
}

/* A second process holds the write lock for a while; BEGIN waits for it instead of failing. */
static void test_busy(void) {
        int p[2];
        pid_t pid;
        char ch;

        CHECK_INT(pipe(p), 0);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                Queue *q = NULL;
                close(p[0]);
                if (queue_open(dir, 0, &q) < 0 || queue_begin(q) < 0)
                        _exit(1);
                QueueMessage m;
                insert_simple(q, &m, 1, 1, NULL);
                if (write(p[1], "x", 1) != 1)
                        _exit(1);
                usleep(400 * 1000);
                if (queue_commit(q) < 0)
                        _exit(1);
                queue_close(q);
                _exit(0);
        }
        close(p[1]);
        CHECK_INT(read(p[0], &ch, 1), 1);
        close(p[0]);

        Queue *q = NULL;
        struct timespec t0, t1;
        CHECK_INT(queue_open(dir, 0, &q), 0);

        /* With a short timeout (white box) the lock is not had: -EBUSY, and the Queue is left
         * clean, with no transaction half open. */
        QueueRecipient rcpt = { .id = 1, .address = (char *) "x" };
        CHECK_INT(sqlite3_busy_timeout(q->db, 20), SQLITE_OK);
        CHECK_INT(queue_begin(q), -EBUSY);
        CHECK(sqlite3_get_autocommit(q->db) && !q->in_txn);
        CHECK_INT(queue_commit(q), -EINVAL);
        CHECK_INT(queue_update_recipient(q, &rcpt), -EBUSY);
        QueueMessage m;
        make_message(&m, 1);
        CHECK_INT(queue_insert_message(q, &m, NULL, 0, "x", 1), -EBUSY);
        CHECK(sqlite3_get_autocommit(q->db) && !q->in_txn);
        CHECK_INT(sqlite3_busy_timeout(q->db, 10000), SQLITE_OK);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_INT(queue_begin(q), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECK(t1.tv_sec * 1000 + t1.tv_nsec / 1000000 - t0.tv_sec * 1000 - t0.tv_nsec / 1000000 >= 100);
        /* The child's message committed before we got the lock. */
        CHECK_INT(raw_int("SELECT count(*) FROM messages"), 1);
        CHECK_INT(queue_rollback(q), 0);
        q = queue_close(q);

        int status;
        CHECK_INT(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        raw_exec("PRAGMA foreign_keys = ON; DELETE FROM messages", SQLITE_OPEN_READWRITE);
}

/* Runs fn(as_uid) in a child that switched to uid/gid; returns its exit status. */
static int run_as(uid_t uid, int (*fn)(void)) {
        pid_t pid = fork();
        int status;

        CHECK(pid >= 0);
        if (pid == 0) {
                if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(2);
                _exit(fn());
        }
        CHECK_INT(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static int nobody_create(void) {
        Queue *q = NULL;
        QueueMessage m;

        if (queue_open(dir, QUEUE_OPEN_CREATE, &q) < 0)
                return 3;
        insert_simple(q, &m, 1, 1, NULL);
        queue_close(q);
        return 0;
}

static int nobody_open_denied(void) {
        Queue *q = NULL;
        int r = queue_open(dir, 0, &q);

        if (r != -EACCES) {
                fprintf(stderr, "open: %d\n", r);
                return 3;
        }
        r = queue_open(dir, QUEUE_OPEN_READONLY, &q);
        return r == -EACCES ? 0 : 4;
}

static int nobody_write(void) {
        Queue *q = NULL;
        QueueMessage m;
        size_t n = 0;

        if (queue_open(dir, 0, &q) < 0)
                return 3;
        insert_simple(q, &m, 2, 1, NULL);
        if (queue_checkpoint(q) < 0)
                return 4;
        if (queue_count_unfinished(q, m.queue_id, &n) < 0 || n != 1)
                return 5;
        queue_close(q);
        return 0;
}

/* Checks the owner of queue.db<suffix>; returns false if the file does not exist. */
static bool check_owner(const char *suffix, uid_t uid) {
        char p[128];
        struct stat st;

        snprintf(p, sizeof p, "%s/queue.db%s", dir, suffix);
        if (stat(p, &st) < 0) {
                CHECK_INT(errno, ENOENT);
                return false;
        }
        CHECK_INT(st.st_uid, uid);
        CHECK_INT(st.st_gid, uid);
        return true;
}

/* Root opening a database owned by another user must not leave root-owned -wal/-shm files
 * that lock that user out. */
static void test_root_ownership(void) {
        if (geteuid() != 0) {
                fprintf(stderr, "not root: skipping the -wal/-shm ownership test\n");
                return;
        }

        dir_clean(dir);
        CHECK_INT(chown(dir, NOBODY, NOBODY), 0);
        CHECK_INT(run_as(NOBODY, nobody_create), 0);
        check_owner("", NOBODY);

        for (int mode = 0; mode < 2; mode++) {
                Queue *q = NULL;
                QueueMessage m;

                /* Root first in: it creates the -wal and -shm files itself. */
                CHECK_INT(queue_open(dir, mode ? QUEUE_OPEN_READONLY : 0, &q), 0);
                if (!mode)
                        insert_simple(q, &m, 3, 1, NULL);
                else {
                        ScanResult s;
                        scan(q, 0, 0, &s);
                        CHECK(s.n >= 1);
                }
                CHECK(check_owner("-wal", NOBODY) || mode);
                CHECK(check_owner("-shm", NOBODY));
                /* While root still has it open, the owner writes. */
                CHECK_INT(run_as(NOBODY, nobody_write), 0);
                q = queue_close(q);
                check_owner("-wal", NOBODY);
                check_owner("-shm", NOBODY);
                check_owner("", NOBODY);
                CHECK_INT(run_as(NOBODY, nobody_write), 0);
        }

        /* A database the user may not read is -EACCES, not a generic error. */
        char p[128];
        db_path(p, sizeof p);
        CHECK_INT(chown(dir, 0, 0), 0);
        CHECK_INT(chown(p, 0, 0), 0);
        CHECK_INT(chmod(p, 0600), 0);
        CHECK_INT(run_as(NOBODY, nobody_open_denied), 0);

        dir_clean(dir);
        CHECK_INT(chown(dir, 0, 0), 0);
}

int main(void) {
        Queue *q = NULL;

        test_dir_create("test-queue");
        CHECK_INT(chmod(dir, 0755), 0);

        test_open();
        test_migration();
        test_migration_filter();
        test_migration_dsn();
        test_migration_metrics();
        test_migration_probe();

        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);
        CHECK_INT(raw_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
        test_pragmas(q);
        test_round_trip(q);
        test_content(q);
        test_list(q);
        test_transactions(q);
        test_readonly(q);
        test_disk_full(q);
        q = queue_close(q);

        test_busy();
        test_concurrent_create();
        test_concurrent_writers();
        test_root_ownership();

        dir_clean(dir);
        CHECK_INT(rmdir(dir), 0);
        dir[0] = '\0';
        return 0;
}
