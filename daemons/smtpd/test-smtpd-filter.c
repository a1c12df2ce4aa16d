/* test-smtpd-filter.c — unit tests for smtpd-filter.c's pure parts: receive_override_options
 * (each value sets its flag, case does not matter, an unknown value is named) and the form of a
 * content_filter value, smtpd_proxy_filter as an endpoint. */
#include "smtpd.h"
#include "basic/tests.h"

static void test_receive_override(void) {
        SmtpdSettings s = {};
        const char *bad = NULL;
        char *none[] = { NULL };
        CHECK_INT(smtpd_receive_override_parse(none, &s, &bad), 0);
        CHECK(!s.no_unknown_recipient_checks && !s.no_address_mappings && !s.no_header_body_checks && !s.no_milters);

        char *amavis[] = { "no_unknown_recipient_checks", "no_header_body_checks", "NO_MILTERS", NULL };
        CHECK_INT(smtpd_receive_override_parse(amavis, &s, &bad), 0);
        CHECK(s.no_unknown_recipient_checks && s.no_header_body_checks && s.no_milters);
        CHECK(!s.no_address_mappings);

        char *all[] = { "no_address_mappings", NULL };
        CHECK_INT(smtpd_receive_override_parse(all, &s, &bad), 0);
        CHECK(s.no_address_mappings);

        SmtpdSettings t = {};
        char *wrong[] = { "no_milters", "no_unknown_recipient_check", NULL };
        CHECK_INT(smtpd_receive_override_parse(wrong, &t, &bad), -EINVAL);
        CHECK_STR(bad, "no_unknown_recipient_check");
}

static void test_content_filter(void) {
        static const struct {
                const char *value;
                bool valid;
        } t[] = {
                { "smtp-amavis:[127.0.0.1]:10024", true },
                { "scan:127.0.0.1:10025", true },
                { "lmtp:unix:/run/filter", true },
                { "dfilt:", true },
                { "filter", true },
                { ":[127.0.0.1]:10024", false },
                { "smtp amavis:[127.0.0.1]", false },
                { "smtp/x:[127.0.0.1]", false },
                { "smtp:[127.0.0.1]: 10024", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                const char *why = NULL;
                bool ok = smtpd_content_filter_valid(t[i].value, &why);
                if (ok != t[i].valid)
                        fprintf(stderr, "content_filter \"%s\": expected %s\n", t[i].value, t[i].valid ? "valid" : "invalid");
                CHECK(ok == t[i].valid);
                CHECK(ok || why);
        }
}

static void test_proxy_service(void) {
        static const struct {
                const char *value, *service;
        } t[] = {
                { "127.0.0.1:10025", "inet:127.0.0.1:10025" },
                { "inet:127.0.0.1:10025", "inet:127.0.0.1:10025" },
                { "[::1]:10025", "inet:[::1]:10025" },
                { "localhost:10025", "inet:localhost:10025" },
                { "unix:/run/proxy.sock", "unix:/run/proxy.sock" },
                { "127.0.0.1", NULL },
                { "inet:127.0.0.1:", NULL },
                { "127.0.0.1:smtp", NULL },
                { "unix:", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                const char *why = NULL;
                char *v = smtpd_proxy_service(t[i].value, &why);
                if (t[i].service)
                        CHECK_STR(v, t[i].service);
                else
                        CHECK(!v && why);
                free(v);
        }
}

int main(void) {
        test_receive_override();
        test_content_filter();
        test_proxy_service();
        return 0;
}
