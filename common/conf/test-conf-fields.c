/* test-conf-fields.c — unit tests for the field-table loader (every kind, registry defaults,
 * listener overrides, rows that do not fit their parameter, values that expand to something
 * invalid) and for conf_get_joined / conf_get_table_list. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conf-fields.h"
#include "basic/tests.h"

typedef struct Settings {
        char *banner, *footer, *action;
        bool vrfy;
        int loglevel, code, level;
        unsigned recipients;
        size_t line_length;
        uint64_t message_size;
        usec_t timeout;
        char **drop;
        TableList *maps, *filter;
} Settings;

enum { LEVEL_NONE, LEVEL_MAY, LEVEL_ENCRYPT };
static const ConfFieldEnum levels[] = {
        { "none", LEVEL_NONE }, { "may", LEVEL_MAY }, { "encrypt", LEVEL_ENCRYPT }, { NULL },
};

#define F(...) CONF_FIELD(Settings, __VA_ARGS__)
static const ConfField fields[] = {
        F("smtpd_banner", STRING, banner),
        F("smtpd_reject_footer", RAW, footer),
        F("unknown_address_tempfail_action", STRING, action),
        F("disable_vrfy_command", BOOL, vrfy),
        F("smtpd_tls_loglevel", INT, loglevel),
        F("reject_code", REPLY_CODE, code),
        F("smtpd_tls_security_level", ENUM, level, .values = levels),
        F("smtpd_recipient_limit", UINT, recipients),
        F("line_length_limit", SIZE, line_length),
        F("message_size_limit", U64, message_size),
        F("smtpd_timeout", USEC, timeout),
        F("message_drop_headers", LIST, drop),
        F("smtpd_sender_login_maps", TABLES, maps),
        F("default_delivery_status_filter", TABLES, filter),   /* a STRING naming tables */
};

static void set(Conf *c, const char *name, const char *value) {
        char *reason = NULL;
        int r = conf_set(c, name, value, &reason);
        if (r < 0)
                fprintf(stderr, "conf_set %s = %s: %s\n", name, value, reason ? reason : "?");
        CHECK_INT(r, 0);
        free(reason);
}

static void test_defaults(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        Settings s = {};

        CHECK_INT(conf_new(&c), 0);
        set(c, "myhostname", "mx.example.org");
        CHECK_INT(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s), 0);
        CHECK_STR(s.banner, "mx.example.org ESMTP Postern");
        CHECK_STR(s.footer, "");
        CHECK_STR(s.action, "defer_if_permit");
        CHECK(s.vrfy);
        CHECK_INT(s.loglevel, 0);
        CHECK_INT(s.code, 554);
        CHECK_INT(s.level, LEVEL_NONE);
        CHECK_INT(s.recipients, 1000);
        CHECK_INT(s.line_length, 2048);
        CHECK_INT(s.message_size, 10240000);
        CHECK_INT(s.timeout, 300 * USEC_PER_SEC);
        CHECK_STR(s.drop[0], "bcc");
        CHECK_STR(s.drop[3], "return-path");
        CHECK(!s.drop[4]);
        CHECK(!s.maps && !s.filter);
        conf_fields_done(fields, ELEMENTSOF(fields), &s);
        CHECK(!s.banner && !s.footer && !s.drop && !s.maps && !s.filter);
        conf_fields_done(fields, ELEMENTSOF(fields), &s);   /* twice is harmless */
}

static void test_values_and_overrides(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        Settings s = {}, sub = {};

        CHECK_INT(conf_new(&c), 0);
        set(c, "smtpd_banner", "$myhostname hello");
        set(c, "myhostname", "a.example");
        set(c, "smtpd_reject_footer", "see $client_address");
        set(c, "disable_vrfy_command", "no");
        set(c, "smtpd_tls_loglevel", "2");
        set(c, "reject_code", "550");
        set(c, "smtpd_tls_security_level", "may");
        set(c, "smtpd_recipient_limit", "99999999999");
        set(c, "message_size_limit", "0");
        set(c, "smtpd_timeout", "2m");
        set(c, "message_drop_headers", "x-a, { x b }");
        set(c, "smtpd_sender_login_maps", "inline:{ a=b }, static:c");
        set(c, "default_delivery_status_filter", "static:{4.0.0 x}");
        set(c, "submission/smtpd_tls_security_level", "encrypt");
        set(c, "submission/smtpd_reject_footer", "sub $name");
        set(c, "submission/smtpd_timeout", "7");
        set(c, "submission/smtpd_sender_login_maps", "");

        CHECK_INT(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s), 0);
        CHECK_STR(s.banner, "a.example hello");
        CHECK_STR(s.footer, "see $client_address");   /* unexpanded */
        CHECK(!s.vrfy);
        CHECK_INT(s.loglevel, 2);
        CHECK_INT(s.code, 550);
        CHECK_INT(s.level, LEVEL_MAY);
        CHECK_INT(s.recipients, UINT_MAX);   /* saturated to the field's type, not clamped */
        CHECK_INT(s.message_size, 0);
        CHECK_INT(s.timeout, 120 * USEC_PER_SEC);
        CHECK_STR(s.drop[0], "x-a");
        CHECK_STR(s.drop[1], "x b");
        CHECK(s.maps);
        CHECK_INT(table_list_size(s.maps), 2);
        CHECK_INT(table_list_size(s.filter), 1);

        CHECK_INT(conf_fields_load(c, "submission", fields, ELEMENTSOF(fields), &sub), 0);
        CHECK_INT(sub.level, LEVEL_ENCRYPT);
        CHECK_STR(sub.footer, "sub $name");
        CHECK_INT(sub.timeout, 7 * USEC_PER_SEC);
        CHECK(!sub.maps);
        CHECK_INT(sub.code, 550);   /* no override: the global value */

        /* Loading again replaces the values without leaking them (ASan checks). */
        CHECK_INT(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s), 0);
        conf_fields_done(fields, ELEMENTSOF(fields), &s);
        conf_fields_done(fields, ELEMENTSOF(fields), &sub);
}

static void test_bad_rows_and_values(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        Settings s = {};
        static const ConfFieldEnum partial[] = { { "none", 0 }, { "may", 1 }, { NULL } };
        static const ConfField bad[] = {
                F("no_such_parameter", STRING, banner),
                F("smtpd_timeout", UINT, recipients),         /* TIME into a number */
                F("smtpd_recipient_limit", INT, loglevel),     /* unbounded into int */
                F("smtpd_tls_loglevel", REPLY_CODE, code),     /* 0..4 is no reply code */
                F("smtpd_tls_security_level", ENUM, level, .values = partial),
                F("smtpd_tls_security_level", ENUM, level),   /* no map */
                F("smtpd_banner", LIST, drop),
                F("smtpd_timeout", TABLES, maps),
                F("unknown_address_tempfail_action", RAW, footer),
        };

        CHECK_INT(conf_new(&c), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK_INT(conf_fields_load(c, NULL, bad + i, 1, &s), -EINVAL);

        /* A value conf_set accepted that expands to something invalid later. */
        set(c, "myorigin", "10s");
        set(c, "smtpd_timeout", "$myorigin");
        CHECK_INT(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s), 0);
        CHECK_INT(s.timeout, 10 * USEC_PER_SEC);
        set(c, "myorigin", "soon");
        CHECK_INT(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s), -EINVAL);
        set(c, "smtpd_timeout", "300s");

        /* A table that cannot be opened. */
        set(c, "smtpd_sender_login_maps", "static:x, nosuchtype:/x");
        CHECK(conf_fields_load(c, NULL, fields, ELEMENTSOF(fields), &s) < 0);
        conf_fields_done(fields, ELEMENTSOF(fields), &s);
}

static void test_list_helpers(void) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_free_ char *joined = NULL, *reason = NULL;
        TableList *l = (TableList *) &l;   /* left alone on failure */

        CHECK_INT(conf_new(&c), 0);
        CHECK_INT(conf_get_joined(c, NULL, "rbl_reply_maps", &joined), 0);
        CHECK_STR(joined, "");
        free(joined);
        set(c, "rbl_reply_maps", "  static:a,static:b ,\n inline:{ x=y }");
        CHECK_INT(conf_get_joined(c, NULL, "rbl_reply_maps", &joined), 0);
        CHECK_STR(joined, "static:a static:b inline:{ x=y }");

        CHECK_INT(conf_get_table_list(c, NULL, "rbl_reply_maps", 0, &l, &reason), 0);
        CHECK_INT(table_list_size(l), 3);
        table_list_free(l);
        CHECK_INT(conf_get_table_list(c, NULL, "smtpd_reject_footer_maps", 0, &l, &reason), 0);
        CHECK(!l);

        l = (TableList *) &l;
        set(c, "submission/rbl_reply_maps", "static:a, nosuchtype:/x");
        CHECK(conf_get_table_list(c, "submission", "rbl_reply_maps", 0, &l, &reason) < 0);
        CHECK(l == (TableList *) &l);
        CHECK(reason);
        CHECK(strncmp(reason, "rbl_reply_maps = static:a nosuchtype:/x: ", 41) == 0);
}

int main(void) {
        test_defaults();
        test_values_and_overrides();
        test_bad_rows_and_values();
        test_list_helpers();
        return 0;
}
