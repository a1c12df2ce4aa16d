/* test-tlsrpt.c — the TLSRPT store and report builder (tlsrpt.c): sessions counted per policy and
 * result, the report's RFC 8460 4.4 fields (parsed back by checking the exact JSON), days and
 * domains kept apart, old days forgotten. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/tests.h"
#include "tlsrpt.h"

int main(void) {
        TlsrptStore *s = NULL;
        CHECK(tlsrpt_open("", &s, NULL) == 0);
        time_t day1 = 1796601600;                /* 2026-12-07T00:00:00Z */
        char day[11];
        tlsrpt_day(day1 + 3600, day);
        CHECK_STR(day, "2026-12-07");

        TlsrptRecord ok = { .policy_domain = "example.com", .policy_type = "sts",
                            .policy_string = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                            .mx_host = "mx.example.com", .result = TLSRPT_SUCCESS,
                            .receiving_mx_hostname = "mx.example.com", .receiving_ip = "192.0.2.1" };
        TlsrptRecord bad = ok;
        bad.result = TLSRPT_VALIDATION_FAILURE;
        bad.receiving_mx_hostname = "mx.attacker.test";
        bad.receiving_ip = "192.0.2.9";
        TlsrptRecord none = { .policy_domain = "example.com", .policy_type = "no-policy-found",
                              .result = TLSRPT_SUCCESS };
        for (int i = 0; i < 3; i++)
                CHECK(tlsrpt_record(s, &ok, day1 + 60 * i) == 0);
        CHECK(tlsrpt_record(s, &bad, day1 + 100) == 0);
        CHECK(tlsrpt_record(s, &bad, day1 + 200) == 0);
        CHECK(tlsrpt_record(s, &none, day1 + 300) == 0);
        CHECK(tlsrpt_record(s, &ok, day1 + 86400) == 0);          /* the next day */
        TlsrptRecord other = ok;
        other.policy_domain = "other.test";
        CHECK(tlsrpt_record(s, &other, day1) == 0);
        TlsrptRecord invalid = ok;
        invalid.result = _TLSRPT_RESULT_MAX;
        CHECK(tlsrpt_record(s, &invalid, day1) == -EINVAL);

        char **domains = NULL;
        CHECK(tlsrpt_domains(s, "2026-12-07", &domains) == 0);
        CHECK(domains[0] && streq(domains[0], "example.com") && domains[1] && streq(domains[1], "other.test") &&
              !domains[2]);
        strv_free(domains);

        TlsrptReportInfo info = { "Postern \"test\"", "mailto:postmaster@sender.test",
                                  "2026-12-07T00:00:00Z_example.com@sender.test" };
        StrBuf b = STRBUF_INIT;
        CHECK(tlsrpt_report_json(s, "2026-12-07", "example.com", &info, &b) == 0);
        CHECK_STR(b.data,
                  "{\"organization-name\":\"Postern \\\"test\\\"\","
                  "\"date-range\":{\"start-datetime\":\"2026-12-07T00:00:00Z\",\"end-datetime\":\"2026-12-07T23:59:59Z\"},"
                  "\"contact-info\":\"mailto:postmaster@sender.test\","
                  "\"report-id\":\"2026-12-07T00:00:00Z_example.com@sender.test\","
                  "\"policies\":["
                  "{\"policy\":{\"policy-type\":\"no-policy-found\",\"policy-domain\":\"example.com\"},"
                  "\"summary\":{\"total-successful-session-count\":1,\"total-failure-session-count\":0}},"
                  "{\"policy\":{\"policy-type\":\"sts\",\"policy-string\":[\"version: STSv1\",\"mode: enforce\","
                  "\"mx: mx.example.com\",\"max_age: 86400\"],\"policy-domain\":\"example.com\","
                  "\"mx-host\":[\"mx.example.com\"]},"
                  "\"summary\":{\"total-successful-session-count\":3,\"total-failure-session-count\":2},"
                  "\"failure-details\":[{\"result-type\":\"validation-failure\",\"receiving-ip\":\"192.0.2.9\","
                  "\"receiving-mx-hostname\":\"mx.attacker.test\",\"failed-session-count\":2}]}]}");
        strbuf_reset(&b);
        CHECK(tlsrpt_report_json(s, "2026-12-08", "example.com", &info, &b) == 0);
        CHECK(strstr(b.data, "\"total-successful-session-count\":1,\"total-failure-session-count\":0"));
        strbuf_reset(&b);
        CHECK(tlsrpt_report_json(s, "2026-12-06", "example.com", &info, &b) == -ENOENT);

        CHECK(tlsrpt_forget_before(s, "2026-12-08") == 0);
        strbuf_reset(&b);
        CHECK(tlsrpt_report_json(s, "2026-12-07", "example.com", &info, &b) == -ENOENT);
        strbuf_done(&b);
        tlsrpt_free(s);
        return 0;
}
