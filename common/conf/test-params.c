/* test-params.c — unit tests for the parameter registry: sorted unique names, non-empty one-line
 * descriptions, every default valid for its own type, and the value checks of each type. */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "params.h"
#include "basic/tests.h"
#include "../basic/macro.h"

static void test_registry(void) {
        CHECK(param_table_size > 80);
        for (size_t i = 0; i < param_table_size; i++) {
                const ParamDef *p = &param_table[i];
                char why[256] = "";
                CHECK(!isempty(p->name));
                /* sorted, hence unique (param_lookup relies on the order) */
                if (i > 0 && strcmp(param_table[i - 1].name, p->name) >= 0) {
                        fprintf(stderr, "%s is out of order or duplicated\n", p->name);
                        CHECK(false);
                }
                CHECK(param_lookup(p->name) == p);
                CHECK(!isempty(p->description));
                CHECK(!strchr(p->description, '\n'));
                CHECK(!strchr(p->description, '|'));   /* keeps the Markdown table intact */
                const char *d = param_default(p);
                CHECK(d);
                /* defaults with $references are checked by test-conf after expansion */
                if (!strchr(d, '$') && param_validate(p, d, why, sizeof why) < 0) {
                        fprintf(stderr, "%s: default \"%s\" is invalid: %s\n", p->name, d, why);
                        CHECK(false);
                }
                if (p->type == PARAM_TIME)
                        CHECK(strchr("smhdw", p->time_unit) && p->time_unit);
                if (p->type == PARAM_ENUM)
                        CHECK(!isempty(p->enum_values));
        }
        CHECK(param_lookup("no_such_parameter") == NULL);
        CHECK(param_lookup("") == NULL);
        CHECK(param_lookup(NULL) == NULL);
}

static void test_required_defaults(void) {
        static const struct {
                const char *name, *def;
        } cases[] = {
                { "mail_name", "Postern" },
                { "compatibility_level", "3.6" },
                { "myorigin", "$myhostname" },
                { "mydestination", "$myhostname, localhost.$mydomain, localhost" },
                { "mynetworks", "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128" },
                { "relay_domains", "" },
                { "queue_directory", "/var/spool/postern" },
                { "postern_socket_directory", "/run/postern" },
                { "smtpd_banner", "$myhostname ESMTP $mail_name" },
                { "smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination" },
                { "local_recipient_maps", "unix:passwd.byname $alias_maps" },
                { "alias_maps", "hash:/etc/aliases" },
                { "line_length_limit", "2048" },
                { "message_size_limit", "10240000" },
                { "smtpd_timeout", "300s" },
                { "disable_vrfy_command", "yes" },
                { "smtpd_forbid_bare_newline", "normalize" },
                { "maximal_queue_lifetime", "5d" },
                { "local_transport", "local:$myhostname" },
                { "mailbox_delivery_lock", "fcntl, dotlock" },
                { "2bounce_notice_recipient", "postmaster" },
                { "mail_version", POSTERN_VERSION },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const ParamDef *p = param_lookup(cases[i].name);
                CHECK(p);
                CHECK_STR(param_default(p), cases[i].def);
        }
        const char *h = param_default(param_lookup("myhostname"));
        CHECK(strchr(h, '.'));
        const char *d = param_default(param_lookup("mydomain"));
        CHECK(!isempty(d));
        CHECK(strstr(h, d));
}

static void test_validate(void) {
        static const ParamDef pint = { "t_int", PARAM_INT, "5", 1, 10, 0, NULL, "x" };
        static const ParamDef psize = { "t_size", PARAM_SIZE, "0", 0, 0, 0, NULL, "x" };
        static const ParamDef pbool = { "t_bool", PARAM_BOOL, "no", 0, 0, 0, NULL, "x" };
        static const ParamDef ptime = { "t_time", PARAM_TIME, "1h", 1, 86400, 'h', NULL, "x" };
        static const ParamDef penum = { "t_enum", PARAM_ENUM, "a", 0, 0, 0, "a|bb|c", "x" };
        static const ParamDef plist = { "t_list", PARAM_LIST, "", 0, 0, 0, NULL, "x" };
        static const struct {
                const ParamDef *p;
                const char *value;
                const char *reason;   /* NULL = valid */
        } cases[] = {
                { &pint, "5", NULL }, { &pint, "1", NULL }, { &pint, "10", NULL },
                { &pint, "0", "must be at least 1" }, { &pint, "11", "must be at most 10" },
                { &pint, "", "must be a whole number" }, { &pint, "5 ", "must be a whole number" },
                { &pint, "0x5", "must be a whole number" }, { &pint, "-", "must be a whole number" },
                { &pint, "99999999999999999999999", "must be a whole number" },
                { &psize, "0", NULL }, { &psize, "123456789012", NULL }, { &psize, "-1", "must be at least 0" },
                { &psize, "10k", "must be a number of bytes" },
                { &pbool, "yes", NULL }, { &pbool, "No", NULL }, { &pbool, "TRUE", NULL }, { &pbool, "off", NULL },
                { &pbool, "0", NULL }, { &pbool, "y", "must be yes or no" }, { &pbool, "", "must be yes or no" },
                { &ptime, "1", NULL }, { &ptime, "24h", NULL }, { &ptime, "1d", NULL }, { &ptime, "3600s", NULL },
                { &ptime, "0s", "must be at least 1s" }, { &ptime, "2d", "must be at most 86400s" },
                { &ptime, "1x", "must be a time" }, { &ptime, "h", "must be a time" }, { &ptime, "1hh", "must be a time" },
                { &ptime, "-1h", "must be a time" },
                { &penum, "a", NULL }, { &penum, "bb", NULL }, { &penum, "c", NULL },
                { &penum, "b", "must be one of: a, bb, c" }, { &penum, "", "must be one of: a, bb, c" },
                { &plist, "a, {b c}", NULL }, { &plist, "a}{", "must have matching { and } braces" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char why[256] = "";
                int r = param_validate(cases[i].p, cases[i].value, why, sizeof why);
                if (cases[i].reason) {
                        CHECK_INT(r, -EINVAL);
                        if (!strstr(why, cases[i].reason)) {
                                fprintf(stderr, "case %zu: \"%s\" does not contain \"%s\"\n", i, why, cases[i].reason);
                                CHECK(false);
                        }
                } else
                        CHECK_INT(r, 0);
        }
        /* a tiny buffer truncates, never overflows */
        char tiny[8];
        CHECK_INT(param_validate(&penum, "zzz", tiny, sizeof tiny), -EINVAL);
        CHECK(strlen(tiny) < sizeof tiny);
}

static void test_parse(void) {
        static const struct {
                const char *v;
                char unit;
                int r;
                long long s;
        } times[] = {
                { "0", 's', 0, 0 }, { "300s", 's', 0, 300 }, { "5m", 's', 0, 300 }, { "2", 'd', 0, 172800 },
                { "1w", 's', 0, 604800 }, { "3", 'h', 0, 10800 }, { "1H", 's', 0, 3600 },
                { "", 's', -EINVAL, 0 }, { "s", 's', -EINVAL, 0 }, { "1 s", 's', -EINVAL, 0 },
                { "99999999999999999w", 's', -ERANGE, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(times); i++) {
                long long s = -1;
                CHECK_INT(param_parse_time(times[i].v, times[i].unit, &s), times[i].r);
                if (times[i].r == 0)
                        CHECK_INT(s, times[i].s);
        }
        bool b;
        CHECK_INT(param_parse_bool("yes", &b), 0);
        CHECK(b);
        CHECK_INT(param_parse_bool("no", &b), 0);
        CHECK(!b);
        CHECK_INT(param_parse_bool("maybe", &b), -EINVAL);
        CHECK_INT(param_parse_bool(NULL, &b), -EINVAL);
}

int main(void) {
        test_registry();
        test_required_defaults();
        test_validate();
        test_parse();
        return 0;
}
