/* test-smtp-sasl.c — unit tests for smtp-sasl.c: the password table's key order (sender, @domain,
 * server host, next hop as written), which key wins in a real table, the mechanism choice under
 * smtp_sasl_security_options / smtp_sasl_tls_security_options and smtp_sasl_mechanism_filter,
 * the notes (world-readable password file, smtp_sasl_auth_cache_name) and a bad option. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "basic/tests.h"
#include "smtp.h"

static void check_keys(bool by_sender, const char *sender, const char *host, const char *nexthop,
                       const char *want) {
        char **keys = NULL, got[512] = "";
        CHECK(smtp_sasl_keys(by_sender, sender, host, nexthop, &keys) == 0);
        for (char **k = keys; *k; k++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k == keys ? "" : " ", *k);
        CHECK_STR(got, want);
        strv_free(keys);
}

static Conf *load(const char *dir, const char *extra) {
        char path[600], text[2048];
        snprintf(text, sizeof(text), "config_directory = %s\nqueue_directory = %s\nmyhostname = mx.example.org\n"
                 "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:%s/sasl_passwd\n%s", dir, dir,
                 dir, extra);
        snprintf(path, sizeof(path), "%s/main.cf", dir);
        FILE *f = fopen(path, "we");
        CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
        Conf *c = NULL;
        CHECK(conf_load(path, &c, NULL) >= 0);
        return c;
}

int main(void) {
        /* Postfix's order: sender (full, then @domain) only when sender-dependent; host; next hop */
        check_keys(true, "alice@example.org", "smtp.example.net", "[smtp.example.net]:587",
                   "alice@example.org @example.org smtp.example.net [smtp.example.net]:587");
        check_keys(false, "alice@example.org", "smtp.example.net", "[smtp.example.net]:587",
                   "smtp.example.net [smtp.example.net]:587");
        check_keys(true, "", "mx1.example.com", "example.com", "mx1.example.com example.com");
        check_keys(true, "postmaster", "127.0.0.1", "127.0.0.1", "postmaster 127.0.0.1");

        char dir[] = "/tmp/test-smtp-sasl-XXXXXX", path[600];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/sasl_passwd", dir);
        FILE *f = fopen(path, "we");
        CHECK(f && fputs("[smtp.example.net]:587 relay:by-nexthop\nsmtp.example.net relay:by-host\n"
                         "alice@example.org alice:a:b:c\n@example.com domain:pw\n", f) >= 0 && fclose(f) == 0);
        CHECK(chmod(path, 0644) == 0);

        Conf *c = load(dir, "smtp_sasl_auth_cache_name = btree:/var/lib/postfix/sasl_auth_cache\n"
                            "smtp_sender_dependent_authentication = yes\n");
        SmtpConfig cfg = {};
        char **warnings = NULL, **errors = NULL, *v = NULL, diag[300], why[600];
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) == 0);
        CHECK(strv_has_part(warnings, "smtp_sasl_password_maps: "));
        CHECK(strv_has_part(warnings, "is readable by every user of this host, and it holds passwords"));
        CHECK(strv_has_part(warnings, "not supported: smtp_sasl_auth_cache_name (Postern keeps no cache"));
        CHECK(!cfg.side[1].sasl);   /* lmtp_sasl_auth_enable = no */
        SmtpSasl *a = cfg.side[0].sasl;
        CHECK(a && smtp_sasl_by_sender(a) && smtp_sasl_soft_bounce(a));

        CHECK(smtp_sasl_lookup_sender(a, "alice@example.org", &v, diag, sizeof(diag)) == 1);
        CHECK_STR(v, "alice:a:b:c");
        free(v);
        CHECK(smtp_sasl_lookup_sender(a, "bob@example.com", &v, diag, sizeof(diag)) == 1);
        CHECK_STR(v, "domain:pw");
        free(v);
        CHECK(smtp_sasl_lookup_sender(a, "bob@example.org", &v, diag, sizeof(diag)) == 0 && !v);
        CHECK(smtp_sasl_lookup_sender(a, "", &v, diag, sizeof(diag)) == 0 && !v);
        CHECK(smtp_sasl_lookup_server(a, "smtp.example.net", "[smtp.example.net]:587", &v, diag, sizeof(diag)) == 1);
        CHECK_STR(v, "relay:by-host");   /* the host name comes before the next hop */
        free(v);
        CHECK(smtp_sasl_lookup_server(a, "other.example.net", "[smtp.example.net]:587", &v, diag, sizeof(diag)) == 1);
        CHECK_STR(v, "relay:by-nexthop");
        free(v);
        CHECK(smtp_sasl_lookup_server(a, "other.example.net", "[smtp.example.net]", &v, diag, sizeof(diag)) == 0);

        /* default options: noplaintext, noanonymous, with or without TLS (Postfix's default) */
        CHECK_STR(smtp_sasl_choose(a, "PLAIN LOGIN SCRAM-SHA-256", false, false, why, sizeof(why)), "SCRAM-SHA-256");
        CHECK(!smtp_sasl_choose(a, "PLAIN LOGIN", true, true, why, sizeof(why)));
        CHECK(strstr(why, "PLAIN LOGIN excluded by smtp_sasl_tls_security_options = noplaintext, noanonymous"));
        CHECK(!smtp_sasl_choose(a, "PLAIN LOGIN", false, false, why, sizeof(why)));
        CHECK(strstr(why, "excluded by smtp_sasl_security_options = noplaintext, noanonymous (no TLS)"));
        CHECK(!smtp_sasl_choose(a, "CRAM-MD5 GSSAPI", false, false, why, sizeof(why)));
        CHECK(strstr(why, "server offers CRAM-MD5 GSSAPI"));
        /* -PLUS first, but only inside TLS with channel binding data */
        CHECK_STR(smtp_sasl_choose(a, "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", true, true, why, sizeof(why)),
                  "SCRAM-SHA-256-PLUS");
        CHECK_STR(smtp_sasl_choose(a, "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", true, false, why, sizeof(why)),
                  "SCRAM-SHA-256");
        CHECK_STR(smtp_sasl_choose(a, "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", false, true, why, sizeof(why)),
                  "SCRAM-SHA-256");
        CHECK(!smtp_sasl_choose(a, "SCRAM-SHA-256-PLUS", false, false, why, sizeof(why)));
        CHECK(smtp_sasl_wants_channel_binding("SCRAM-SHA-256 SCRAM-SHA-256-PLUS", "SCRAM-SHA-256-PLUS"));
        CHECK(smtp_sasl_wants_channel_binding("PLAIN SCRAM-SHA-256", "SCRAM-SHA-256"));        /* "y" */
        CHECK(!smtp_sasl_wants_channel_binding("SCRAM-SHA-256 SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")); /* "n" */
        CHECK(!smtp_sasl_wants_channel_binding("PLAIN LOGIN", "PLAIN"));
        smtp_config_done(&cfg);
        strv_free(warnings);
        strv_free(errors);
        conf_free(c);

        /* plaintext allowed inside TLS only, as SASL_README's example; a filter */
        CHECK(chmod(path, 0640) == 0);
        c = load(dir, "smtp_sasl_tls_security_options = noanonymous\nsmtp_sasl_mechanism_filter = login\n");
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) == 0);
        CHECK(!strv_has_part(warnings, "readable by every user"));
        a = cfg.side[0].sasl;
        CHECK_STR(smtp_sasl_choose(a, "PLAIN LOGIN SCRAM-SHA-256", true, true, why, sizeof(why)), "LOGIN");
        CHECK(!smtp_sasl_choose(a, "PLAIN SCRAM-SHA-256", true, true, why, sizeof(why)));
        CHECK(strstr(why, "smtp_sasl_mechanism_filter = login"));
        /* a filter without SCRAM-SHA-256-PLUS leaves it out, even when offered with TLS */
        CHECK(!smtp_sasl_choose(a, "SCRAM-SHA-256-PLUS", true, true, why, sizeof(why)));
        CHECK(!smtp_sasl_choose(a, "PLAIN LOGIN", false, false, why, sizeof(why)));
        smtp_config_done(&cfg);
        strv_free(warnings);
        strv_free(errors);
        conf_free(c);

        /* the LMTP side reads its own lmtp_sasl_* twins; a table as filter is noted */
        c = load(dir, "lmtp_sasl_auth_enable = yes\nlmtp_sasl_password_maps = inline:{ lmtp.test=u:p }\n"
                      "lmtp_sasl_security_options = noanonymous\nsmtp_sasl_mechanism_filter = hash:/etc/filter\n");
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) == 0);
        CHECK(strv_has_part(warnings, "not supported: smtp_sasl_mechanism_filter element hash:/etc/filter"));
        a = cfg.side[1].sasl;
        CHECK(a && !smtp_sasl_by_sender(a));
        CHECK(smtp_sasl_lookup_server(a, "lmtp.test", "inet:lmtp.test:24", &v, diag, sizeof(diag)) == 1);
        CHECK_STR(v, "u:p");
        free(v);
        CHECK_STR(smtp_sasl_choose(a, "PLAIN", false, false, why, sizeof(why)), "PLAIN");
        CHECK(!smtp_sasl_choose(cfg.side[0].sasl, "PLAIN SCRAM-SHA-256", true, true, why, sizeof(why)));
        smtp_config_done(&cfg);
        strv_free(warnings);
        strv_free(errors);
        conf_free(c);

        /* mailcow's proxy:mysql: table whose .cf file is missing here: noted, and every lookup fails
         * (the mail is deferred) */
        c = load(dir, "smtp_sasl_password_maps = proxy:mysql:/etc/postfix/sql/sasl.cf\n");
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) == 0);
        CHECK(strv_has_part(warnings, "smtp_sasl_password_maps = proxy:mysql:/etc/postfix/sql/sasl.cf: "));
        CHECK(smtp_sasl_lookup_server(cfg.side[0].sasl, "h", "[h]:587", &v, diag, sizeof(diag)) < 0 && !v);
        /* (a build without libmariadb refuses the type before it looks for the file) */
        CHECK(strstr(diag, HAVE_LIBMARIADB ? "cannot open /etc/postfix/sql/sasl.cf" : "built without libmariadb"));
        smtp_config_done(&cfg);
        strv_free(warnings);
        strv_free(errors);
        conf_free(c);

        c = load(dir, "smtp_sasl_security_options = noplaintext, nosuchthing\n");
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) < 0);
        conf_free(c);
        c = load(dir, "smtp_sasl_type = dovecot\n");
        CHECK(smtp_config_load(c, &cfg, &warnings, &errors) < 0);
        conf_free(c);

        char cmd[700];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        return 0;
}
