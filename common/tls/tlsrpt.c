/* tlsrpt.c — TLS reporting (RFC 8460) store and report builder: one row per day, policy, result
 * type and receiving MX with a session count in $queue_directory/tlsrpt.db, and the day's JSON
 * report of one policy domain (RFC 8460 4.4) built from those rows.
 *
 * A file of its own rather than a table in mta-sts.db: the MTA-STS cache may be deleted at any
 * time (it only costs fetches), the counters may not; and the report command reads and prunes it
 * while the cache belongs to postern-smtp alone. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "tlsrpt.h"

static const char *const result_names[_TLSRPT_RESULT_MAX] = {
        [TLSRPT_SUCCESS] = "success",
        [TLSRPT_STARTTLS_NOT_SUPPORTED] = "starttls-not-supported",
        [TLSRPT_CERTIFICATE_HOST_MISMATCH] = "certificate-host-mismatch",
        [TLSRPT_CERTIFICATE_EXPIRED] = "certificate-expired",
        [TLSRPT_CERTIFICATE_NOT_TRUSTED] = "certificate-not-trusted",
        [TLSRPT_VALIDATION_FAILURE] = "validation-failure",
        [TLSRPT_TLSA_INVALID] = "tlsa-invalid",
        [TLSRPT_DNSSEC_INVALID] = "dnssec-invalid",
        [TLSRPT_DANE_REQUIRED] = "dane-required",
        [TLSRPT_STS_POLICY_FETCH_ERROR] = "sts-policy-fetch-error",
        [TLSRPT_STS_POLICY_INVALID] = "sts-policy-invalid",
        [TLSRPT_STS_WEBPKI_INVALID] = "sts-webpki-invalid",
};

const char *tlsrpt_result_name(TlsrptResult r) {
        return r >= 0 && r < _TLSRPT_RESULT_MAX ? result_names[r] : NULL;
}

/* get: the day's rows of one domain, grouped so that one policy's rows follow each other */
static const SqliteCacheSql store_sql = {
        .schema = "CREATE TABLE IF NOT EXISTS tlsrpt_result ("
                  " day TEXT NOT NULL,"
                  " policy_domain TEXT NOT NULL,"
                  " policy_type TEXT NOT NULL,"
                  " policy_string TEXT NOT NULL,"
                  " mx_host TEXT NOT NULL,"
                  " result_type TEXT NOT NULL,"
                  " receiving_mx_hostname TEXT NOT NULL,"
                  " receiving_ip TEXT NOT NULL,"
                  " count INTEGER NOT NULL,"
                  " PRIMARY KEY (day, policy_domain, policy_type, policy_string, mx_host, result_type,"
                  "  receiving_mx_hostname, receiving_ip));"
                  "PRAGMA user_version = 1;",
        .get = "SELECT policy_type, policy_string, mx_host, result_type, receiving_mx_hostname, receiving_ip, count"
               " FROM tlsrpt_result WHERE day = ? AND policy_domain = ?"
               " ORDER BY policy_type, policy_string, mx_host, result_type, receiving_mx_hostname, receiving_ip",
        .put = "INSERT INTO tlsrpt_result (day, policy_domain, policy_type, policy_string, mx_host, result_type,"
               " receiving_mx_hostname, receiving_ip, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
               " ON CONFLICT DO UPDATE SET count = count + 1",
        .cleanup = "DELETE FROM tlsrpt_result WHERE day < ?",
        .table = "tlsrpt_result",
};

int tlsrpt_open(const char *path, TlsrptStore **ret, char **ret_reason) {
        return sqlite_cache_new(path, 5000, &store_sql, ret, ret_reason);
}

TlsrptStore *tlsrpt_free(TlsrptStore *s) {
        return sqlite_cache_free(s);
}

void tlsrpt_day(time_t when, char day[static 11]) {
        struct tm tm;
        gmtime_r(&when, &tm);
        strftime(day, 11, "%Y-%m-%d", &tm);
}

int tlsrpt_record(TlsrptStore *s, const TlsrptRecord *rec, time_t when) {
        const char *result = tlsrpt_result_name(rec->result);
        char day[11];
        if (!result || isempty(rec->policy_domain) || isempty(rec->policy_type))
                return -EINVAL;
        tlsrpt_day(when, day);
        const char *v[] = { day, rec->policy_domain, rec->policy_type, rec->policy_string, rec->mx_host, result,
                            rec->result == TLSRPT_SUCCESS ? NULL : rec->receiving_mx_hostname,
                            rec->result == TLSRPT_SUCCESS ? NULL : rec->receiving_ip };
        sqlite3_stmt *st = s->put;
        sqlite3_reset(st);
        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                sqlite3_bind_text(st, (int) i + 1, strempty(v[i]), -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}

int tlsrpt_forget_before(TlsrptStore *s, const char *day) {
        return sqlite_stmt_run_text(s->cleanup, day);
}

int tlsrpt_domains(TlsrptStore *s, const char *day, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        sqlite3_stmt *st = NULL;
        int r = sqlite3_prepare_v2(s->db, "SELECT DISTINCT policy_domain FROM tlsrpt_result WHERE day = ?"
                                          " ORDER BY policy_domain", -1, &st, NULL);
        if (r != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, day, -1, SQLITE_STATIC);
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                char *d = strdup((const char *) sqlite3_column_text(st, 0));
                if (!d || strv_consume(&l, d) < 0) {
                        sqlite3_finalize(st);
                        return -ENOMEM;
                }
        }
        sqlite3_finalize(st);
        if (r != SQLITE_DONE)
                return -EIO;
        if (!l && !(l = calloc(1, sizeof(char *))))
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

static int json_string(StrBuf *b, const char *s) {
        int r = strbuf_putc(b, '"');
        for (const unsigned char *p = (const unsigned char *) s; r >= 0 && *p; p++) {
                if (*p == '"' || *p == '\\')
                        r = strbuf_printf(b, "\\%c", *p);
                else if (*p < 0x20)
                        r = strbuf_printf(b, "\\u%04x", *p);
                else
                        r = strbuf_putc(b, (char) *p);
        }
        return r < 0 ? r : strbuf_putc(b, '"');
}

/* A '\n'-separated text as a JSON array of its non-empty lines. */
static int json_lines(StrBuf *b, const char *text) {
        int r = strbuf_putc(b, '[');
        bool first = true;
        for (const char *p = text; r >= 0 && *p;) {
                size_t n = strcspn(p, "\n");
                char line[1024];
                snprintf(line, sizeof line, "%.*s", (int) MIN(n, sizeof line - 1), p);
                size_t l = strlen(line);
                if (l > 0 && line[l - 1] == '\r')
                        line[--l] = 0;
                if (l > 0) {
                        r = strbuf_puts(b, first ? "" : ",");
                        if (r >= 0)
                                r = json_string(b, line);
                        first = false;
                }
                p += n;
                if (*p)
                        p++;
        }
        return r < 0 ? r : strbuf_putc(b, ']');
}

typedef struct Policy {
        char *type, *string, *mx;
        int64_t ok, failed;
        StrBuf details;
} Policy;

static void policy_clear(Policy *p) {
        free(p->type);
        free(p->string);
        free(p->mx);
        strbuf_done(&p->details);
        *p = (Policy) {};
}

static int policy_write(StrBuf *out, const Policy *p, const char *domain, bool first) {
        int r = strbuf_puts(out, first ? "{\"policy\":{\"policy-type\":" : ",{\"policy\":{\"policy-type\":");
        if (r >= 0)
                r = json_string(out, p->type);
        if (r >= 0 && !isempty(p->string)) {
                r = strbuf_puts(out, ",\"policy-string\":");
                if (r >= 0)
                        r = json_lines(out, p->string);
        }
        if (r >= 0)
                r = strbuf_puts(out, ",\"policy-domain\":");
        if (r >= 0)
                r = json_string(out, domain);
        if (r >= 0 && !isempty(p->mx)) {
                r = strbuf_puts(out, ",\"mx-host\":");
                if (r >= 0)
                        r = json_lines(out, p->mx);
        }
        if (r >= 0)
                r = strbuf_printf(out, "},\"summary\":{\"total-successful-session-count\":%lld,"
                                       "\"total-failure-session-count\":%lld}",
                                  (long long) p->ok, (long long) p->failed);
        if (r >= 0 && p->details.len > 0)
                r = strbuf_printf(out, ",\"failure-details\":[%s]", p->details.data);
        return r < 0 ? r : strbuf_putc(out, '}');
}

static int detail_write(StrBuf *b, const char *result, const char *mx, const char *ip, int64_t count) {
        int r = strbuf_puts(b, b->len > 0 ? ",{\"result-type\":" : "{\"result-type\":");
        if (r >= 0)
                r = json_string(b, result);
        if (r >= 0 && !isempty(ip)) {
                r = strbuf_puts(b, ",\"receiving-ip\":");
                if (r >= 0)
                        r = json_string(b, ip);
        }
        if (r >= 0 && !isempty(mx)) {
                r = strbuf_puts(b, ",\"receiving-mx-hostname\":");
                if (r >= 0)
                        r = json_string(b, mx);
        }
        return r < 0 ? r : strbuf_printf(b, ",\"failed-session-count\":%lld}", (long long) count);
}

int tlsrpt_report_json(TlsrptStore *s, const char *day, const char *policy_domain, const TlsrptReportInfo *info,
                       StrBuf *out) {
        _cleanup_(policy_clear) Policy p = {};
        sqlite3_stmt *st = s->get;
        size_t n = 0;
        int r;

        r = strbuf_puts(out, "{\"organization-name\":");
        if (r >= 0)
                r = json_string(out, strempty(info->organization_name));
        if (r >= 0)
                r = strbuf_printf(out, ",\"date-range\":{\"start-datetime\":\"%sT00:00:00Z\","
                                       "\"end-datetime\":\"%sT23:59:59Z\"},\"contact-info\":", day, day);
        if (r >= 0)
                r = json_string(out, strempty(info->contact_info));
        if (r >= 0)
                r = strbuf_puts(out, ",\"report-id\":");
        if (r >= 0)
                r = json_string(out, strempty(info->report_id));
        if (r >= 0)
                r = strbuf_puts(out, ",\"policies\":[");
        if (r < 0)
                return r;

        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, day, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, policy_domain, -1, SQLITE_STATIC);
        while (r >= 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *col[6];
                for (int i = 0; i < 6; i++)
                        col[i] = strempty((const char *) sqlite3_column_text(st, i));
                int64_t count = sqlite3_column_int64(st, 6);
                if (!p.type || !streq(p.type, col[0]) || !streq(p.string, col[1]) || !streq(p.mx, col[2])) {
                        if (p.type && (r = policy_write(out, &p, policy_domain, n++ == 0)) < 0)
                                break;
                        policy_clear(&p);
                        p.type = strdup(col[0]);
                        p.string = strdup(col[1]);
                        p.mx = strdup(col[2]);
                        if (!p.type || !p.string || !p.mx) {
                                r = -ENOMEM;
                                break;
                        }
                }
                if (streq(col[3], "success"))
                        p.ok += count;
                else {
                        p.failed += count;
                        r = detail_write(&p.details, col[3], col[4], col[5], count);
                }
        }
        sqlite3_reset(st);
        if (r < 0)
                return r == -ENOMEM || r == -EMSGSIZE ? r : -EIO;
        if (r != SQLITE_DONE)
                return -EIO;
        if (!p.type)
                return -ENOENT;
        r = policy_write(out, &p, policy_domain, n == 0);
        return r < 0 ? r : strbuf_puts(out, "]}");
}
