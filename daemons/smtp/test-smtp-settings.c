/* test-smtp-settings.c — unit tests for smtp-settings.c: the variants of master.cf smtp and
 * lmtp transports (an -o applied to its transport only, $name references seeing it, lmtp entries
 * on the lmtp side, disable_dns_lookups), what is reported not supported (unknown parameters,
 * parameters postern-smtp does not read, syslog_name) and an invalid -o making its transport
 * unavailable without failing the load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "smtp.h"

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        CHECK(f);
        CHECK(fputs(text, f) >= 0);
        CHECK(fclose(f) == 0);
}

int main(void) {
        char dir[] = "/tmp/test-smtp-settings-XXXXXX";
        CHECK(mkdtemp(dir));
        char main_cf[1024], path[600];
        snprintf(main_cf, sizeof(main_cf), "config_directory = %s\nqueue_directory = %s\n"
                 "myhostname = mx.example.org\nsmtp_data_done_timeout = 600s\n", dir, dir);
        write_file(dir, "main.cf", main_cf);
        write_file(dir, "master.cf",
                   "smtp      unix  -  -  n  -  -  smtp\n"
                   "sink-a    unix  -  -  n  -  2  smtp -o smtp_helo_name=override.test\n"
                   "  -o smtp_data_done_timeout=1200 -o disable_dns_lookups=yes\n"
                   "  -o syslog_name=postfix/$service_name -o smtp_fallback_relay=relay.test\n"
                   "  -o local_header_rewrite_clients= -o sink-a_destination_concurrency_limit=3\n"
                   "renamed   unix  -  -  n  -  -  smtp -o myhostname=other.example.org\n"
                   "inbox     unix  -  -  n  -  -  lmtp -o lmtp_lhlo_name=lhlo.test\n"
                   "broken    unix  -  -  n  -  -  smtp -o smtp_helo_timeout=banana\n");
        snprintf(path, sizeof(path), "%s/main.cf", dir);
        Conf *c = NULL;
        CHECK(conf_load(path, &c, NULL) >= 0);

        SmtpConfig cfg = {};
        char **warnings = NULL, **errors = NULL;
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) == 0);

        /* the plain sides are untouched by any entry's -o */
        SmtpSettings *plain = smtp_config_settings(&cfg, false, NULL);
        CHECK_STR(plain->helo_name, "mx.example.org");
        CHECK_INT(plain->data_done_timeout, 600 * USEC_PER_SEC);
        CHECK(plain->dns_enabled);
        /* the smtp entry has no -o: no variant, the plain side */
        CHECK(smtp_config_settings(&cfg, false, "smtp") == plain);
        CHECK(smtp_config_settings(&cfg, false, "nosuch") == plain);

        SmtpSettings *a = smtp_config_settings(&cfg, false, "sink-a");
        CHECK(a != plain);
        CHECK_STR(a->transport, "sink-a");
        CHECK_STR(a->helo_name, "override.test");
        CHECK_INT(a->data_done_timeout, 1200 * USEC_PER_SEC);
        CHECK(!a->dns_enabled);
        CHECK(!a->unavailable);
        CHECK(!a->read);                          /* the record is dropped after loading */
        /* an -o of myhostname reaches $myhostname in smtp_helo_name's default */
        CHECK_STR(smtp_config_settings(&cfg, false, "renamed")->helo_name, "other.example.org");
        /* lmtp entries are on the lmtp side only */
        CHECK_STR(smtp_config_settings(&cfg, true, "inbox")->helo_name, "lhlo.test");
        CHECK_STR(smtp_config_settings(&cfg, true, "inbox")->prefix, "lmtp");
        CHECK(smtp_config_settings(&cfg, false, "inbox") == plain);
        CHECK_STR(smtp_config_settings(&cfg, true, NULL)->helo_name, "mx.example.org");

        /* never silent */
        CHECK(strv_has_part(warnings, "master.cf:2: sink-a: not supported: -o syslog_name on sink-a (postern-smtp "
                                 "logs every transport's deliveries as postern/smtp)"));
        CHECK(strv_has_part(warnings, "sink-a: not supported: -o smtp_fallback_relay on sink-a (a parameter "
                                 "Postern does not know)"));
        CHECK(strv_has_part(warnings, "sink-a: not supported: -o local_header_rewrite_clients on sink-a (postern-smtp "
                                 "does not read it"));
        CHECK(strv_has_part(warnings, "sink-a: not supported: -o sink-a_destination_concurrency_limit on sink-a (a "
                                 "queue manager setting: postern-qmgr reads it from main.cf only; set it there)"));
        CHECK(!strv_has_part(warnings, "smtp_helo_name"));
        CHECK(!strv_has_part(warnings, "disable_dns_lookups"));
        CHECK(!strv_has_part(warnings, "renamed"));

        /* an invalid value: the transport is unavailable, the load is not failed */
        SmtpSettings *b = smtp_config_settings(&cfg, false, "broken");
        CHECK(b->unavailable);
        CHECK(strstr(b->unavailable, "mail transport unavailable: master.cf entry broken: -o "
                                     "smtp_helo_timeout=banana: "));
        CHECK(strv_has_part(errors, "master.cf:8: broken: -o smtp_helo_timeout=banana: "));
        CHECK(errors[1] == NULL);

        strv_free(warnings);
        strv_free(errors);
        smtp_config_done(&cfg);
        conf_free(c);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        CHECK(system(path) == 0);
        return 0;
}
