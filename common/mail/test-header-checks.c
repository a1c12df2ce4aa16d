/* test-header-checks.c — unit tests for header/body check actions: parsing every action word
 * with and without arguments, argument validation, and matching folded headers and body lines
 * against a regexp: (and pcre:) table with $n substitution; pcre: tables are Perl-compatible
 * (\d matches digits) and, in a build without libpcre2, refused rather than read as regexp:. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "header-checks.h"
#include "../basic/tests.h"

/* value, for_header, expected type (-1: -EINVAL), expected text (NULL: none) */
static const struct { const char *value; bool hdr; int type; const char *text; } parses[] = {
        { "REJECT", true, HEADER_CHECK_REJECT, NULL },
        { "reject  no spam here ", true, HEADER_CHECK_REJECT, "no spam here" },
        { "DISCARD", true, HEADER_CHECK_DISCARD, NULL },
        { "HOLD quarantine", true, HEADER_CHECK_HOLD, "quarantine" },
        { "WARN", false, HEADER_CHECK_WARN, NULL },
        { "INFO seen it", false, HEADER_CHECK_INFO, "seen it" },
        { "IGNORE", true, HEADER_CHECK_IGNORE, NULL },
        { "IGNORE extra", true, -1, NULL },
        { "PREPEND X-Tag: 1", true, HEADER_CHECK_PREPEND, "X-Tag: 1" },
        { "PREPEND not a header", true, -1, NULL },
        { "PREPEND any body text", false, HEADER_CHECK_PREPEND, "any body text" },
        { "PREPEND", false, -1, NULL },
        { "REPLACE Subject: clean", true, HEADER_CHECK_REPLACE, "Subject: clean" },
        { "REPLACE : x", true, -1, NULL },
        { "BCC audit@example.com", true, HEADER_CHECK_BCC, "audit@example.com" },
        { "BCC two words@x", true, -1, NULL },
        { "BCC nodomain", true, -1, NULL },
        { "REDIRECT <a@b>", true, -1, NULL },
        { "REDIRECT a@b", false, HEADER_CHECK_REDIRECT, "a@b" },
        { "FILTER smtp:[127.0.0.1]:10025", true, HEADER_CHECK_FILTER, "smtp:[127.0.0.1]:10025" },
        { "FILTER scan:", true, HEADER_CHECK_FILTER, "scan:" },
        { "FILTER noColon", true, -1, NULL },
        { "DUNNO", true, HEADER_CHECK_DUNNO, NULL },
        { "OK", true, HEADER_CHECK_DUNNO, NULL },
        { "BOUNCE it", true, -1, NULL },
        { "", true, -1, NULL },
};

static void test_parse(void) {
        for (size_t i = 0; i < sizeof(parses) / sizeof(parses[0]); i++) {
                HeaderCheckAction a = {};
                const char *why = NULL;
                int r = header_check_parse(parses[i].value, parses[i].hdr, &a, &why);
                if (parses[i].type < 0) {
                        if (r != -EINVAL)
                                fprintf(stderr, "parse #%zu \"%s\" accepted\n", i, parses[i].value);
                        CHECK_INT(r, -EINVAL);
                        CHECK(why != NULL);
                        continue;
                }
                if (r < 0)
                        fprintf(stderr, "parse #%zu \"%s\": %s\n", i, parses[i].value, why);
                CHECK_INT(r, 0);
                CHECK_INT(a.type, parses[i].type);
                if (parses[i].text)
                        CHECK_STR(a.text, parses[i].text);
                else
                        CHECK(a.text == NULL);
                header_check_action_done(&a);
        }
        CHECK_STR(header_check_type_name(HEADER_CHECK_WARN), "warning");
        CHECK_STR(header_check_type_name(HEADER_CHECK_REJECT), "reject");
}

static void test_match(const char *type) {
        char path[] = "/tmp/test-header-checks-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        FILE *f = fdopen(fd, "w");
        CHECK(f);
        fputs("# header checks\n"
              "/^Subject:.*viagra/ REJECT no pills\n"
              "/^Subject: (fold)\\s+ed line/ REPLACE Subject: was $1\n"
              "/^X-Bad-Action:/ FROB\n"
              "/^X-Ok:/ OK\n"
              "/^body line ([0-9]+)$/ PREPEND before $1\n", f);
        fclose(f);

        char spec[128];
        snprintf(spec, sizeof(spec), "%s:%s", type, path);
        HeaderChecks *h = NULL;
        char *reason = NULL;
        CHECK_INT(header_checks_open(spec, &h, &reason), 0);
        CHECK(h != NULL);

        HeaderCheckAction a = {};
        char *raw = NULL;
        const char *why = NULL;
        CHECK_INT(header_checks_match(h, "Subject: cheap VIAGRA now", true, &a, &raw, &why), 1);
        CHECK_INT(a.type, HEADER_CHECK_REJECT);
        CHECK_STR(a.text, "no pills");
        header_check_action_done(&a);

        /* a folded header is one string with its line breaks */
        CHECK_INT(header_checks_match(h, "Subject: fold\n\ted line", true, &a, &raw, &why), 1);
        CHECK_INT(a.type, HEADER_CHECK_REPLACE);
        CHECK_STR(a.text, "Subject: was fold");
        header_check_action_done(&a);

        CHECK_INT(header_checks_match(h, "Subject: harmless", true, &a, &raw, &why), 0);
        CHECK_INT(header_checks_match(h, "X-Ok: 1", true, &a, &raw, &why), 1);
        CHECK_INT(a.type, HEADER_CHECK_DUNNO);

        CHECK_INT(header_checks_match(h, "X-Bad-Action: 1", true, &a, &raw, &why), -EINVAL);
        CHECK_STR(raw, "FROB");
        CHECK_STR(why, "unknown action");
        free(raw);

        CHECK_INT(header_checks_match(h, "body line 42", false, &a, NULL, &why), 1);
        CHECK_INT(a.type, HEADER_CHECK_PREPEND);
        CHECK_STR(a.text, "before 42");
        header_check_action_done(&a);

        /* the same rule as a header action: the text is not a header */
        CHECK_INT(header_checks_match(h, "body line 42", true, &a, NULL, &why), -EINVAL);

        header_checks_free(h);
        unlink(path);
}

/* Issue 10: read as a POSIX regexp, \d is the letter d and this rule never fired. */
static void test_pcre_digits(void) {
        char path[] = "/tmp/test-header-checks-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        FILE *f = fdopen(fd, "w");
        CHECK(f);
        fputs("/^Subject:.*\\d{6}/ REJECT six digits\n", f);
        fclose(f);
        char spec[128];
        snprintf(spec, sizeof(spec), "pcre:%s", path);
        HeaderChecks *h = NULL;
        char *reason = NULL;
#if HAVE_PCRE2
        CHECK_INT(header_checks_open(spec, &h, &reason), 0);
        HeaderCheckAction a = {};
        const char *why = NULL;
        CHECK_INT(header_checks_match(h, "Subject: code 123456", true, &a, NULL, &why), 1);
        CHECK_INT(a.type, HEADER_CHECK_REJECT);
        CHECK_STR(a.text, "six digits");
        header_check_action_done(&a);
        CHECK_INT(header_checks_match(h, "Subject: dddddd", true, &a, NULL, &why), 0);
        CHECK_STR(header_checks_spec(h), spec);
        header_checks_free(h);
#else
        CHECK_INT(header_checks_open(spec, &h, &reason), -EPROTONOSUPPORT);
        CHECK(h == NULL && strstr(reason, "built without libpcre2"));
        free(reason);
#endif
        unlink(path);
}

int main(void) {
        test_parse();
        test_match("regexp");
#if HAVE_PCRE2
        test_match("pcre");
#endif
        test_pcre_digits();

        HeaderChecks *h = (HeaderChecks *) 1;
        char *reason = NULL;
        CHECK_INT(header_checks_open("  ", &h, &reason), 0);
        CHECK(h == NULL);
        CHECK(header_checks_open("regexp:/nonexistent/header_checks", &h, &reason) < 0 || h != NULL);
        header_checks_free(h);
        free(reason);
        return 0;
}
