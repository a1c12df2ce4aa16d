/* tlsrpt.h — TLS reporting (RFC 8460): the results postern-smtp records per policy domain and day,
 * kept in $queue_directory/tlsrpt.db, and the JSON report built from them.
 *
 * Recording is policy-type neutral: MTA-STS (smtp-sts.c) records "sts" and "no-policy-found"
 * results; DANE records "tlsa" results through the same call. */
#pragma once

#include <stdint.h>
#include <time.h>

#include "basic/sqlite-util.h"
#include "basic/strbuf.h"

typedef enum TlsrptResult {
        TLSRPT_SUCCESS,
        /* RFC 8460 4.3.1 negotiation failures */
        TLSRPT_STARTTLS_NOT_SUPPORTED,
        TLSRPT_CERTIFICATE_HOST_MISMATCH,
        TLSRPT_CERTIFICATE_EXPIRED,
        TLSRPT_CERTIFICATE_NOT_TRUSTED,
        TLSRPT_VALIDATION_FAILURE,
        /* 4.3.2 policy failures: DANE */
        TLSRPT_TLSA_INVALID,
        TLSRPT_DNSSEC_INVALID,
        TLSRPT_DANE_REQUIRED,
        /* 4.3.2 policy failures: MTA-STS */
        TLSRPT_STS_POLICY_FETCH_ERROR,
        TLSRPT_STS_POLICY_INVALID,
        TLSRPT_STS_WEBPKI_INVALID,
        _TLSRPT_RESULT_MAX,
} TlsrptResult;

/* The RFC's result-type string ("success" for TLSRPT_SUCCESS), NULL when out of range. */
const char *tlsrpt_result_name(TlsrptResult r);

/* One session's outcome under one policy. Strings may be NULL (stored as ""). */
typedef struct TlsrptRecord {
        const char *policy_domain;        /* the next-hop domain the policy belongs to */
        const char *policy_type;          /* "sts", "tlsa" or "no-policy-found" */
        const char *policy_string;        /* the policy's lines joined with '\n' (sts: the file; tlsa: the records) */
        const char *mx_host;              /* sts: the policy's mx patterns joined with '\n' */
        TlsrptResult result;
        const char *receiving_mx_hostname;
        const char *receiving_ip;
} TlsrptRecord;

typedef SqliteCache TlsrptStore;

/* Opens (creates) the store; "" keeps it in memory. <0 with the reason (allocated) in *ret_reason. */
int tlsrpt_open(const char *path, TlsrptStore **ret, char **ret_reason);
TlsrptStore *tlsrpt_free(TlsrptStore *s);
/* Adds one session at time when (its UTC day). 0, or -EIO. */
int tlsrpt_record(TlsrptStore *s, const TlsrptRecord *rec, time_t when);
/* Forgets the days before day ("YYYY-MM-DD"). */
int tlsrpt_forget_before(TlsrptStore *s, const char *day);

/* The policy domains with results on day, NULL-terminated (strv_free), in *ret. 0, <0. */
int tlsrpt_domains(TlsrptStore *s, const char *day, char ***ret);

typedef struct TlsrptReportInfo {
        const char *organization_name;
        const char *contact_info;
        const char *report_id;
} TlsrptReportInfo;

/* The RFC 8460 4.4 JSON report of policy_domain for day ("YYYY-MM-DD", a UTC day) appended to out.
 * 0 (with at least one policy), -ENOENT when nothing was recorded, -EIO, -ENOMEM. */
int tlsrpt_report_json(TlsrptStore *s, const char *day, const char *policy_domain, const TlsrptReportInfo *info,
                       StrBuf *out);

/* The UTC day of when as "YYYY-MM-DD" (11 bytes). */
void tlsrpt_day(time_t when, char day[static 11]);
