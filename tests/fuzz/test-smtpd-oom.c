/* test-smtpd-oom — a HOLD, DISCARD or REDIRECT action that cannot be recorded for lack of memory
 * makes postern-smtpd answer 451 4.3.0 instead of accepting the message without the action:
 * from a check_recipient_access table (smtpd-access.c, answered at RCPT) and from header_checks
 * (smtpd-cleanup.c, answered at the end of DATA). The SMTP dialogue runs through the real
 * smtpd code in the harness of tests/fuzz/fuzz-smtpd-command.c; the link wraps strdup() (meson:
 * -Wl,--wrap=strdup) so that copying the action's text "oom@trigger.example" fails while armed. Without
 * the failure the same actions are accepted (250), so the test tells the two cases apart. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "smtpd.h"

int smtpd_test_session(const uint8_t *data, size_t size);
static SmtpdSettings *oom_settings(SmtpdSettings *dflt);
static void record_reply(const char *line, size_t n);
#define SMTPD_FUZZ_ENTRY smtpd_test_session
#define SMTPD_FUZZ_REPLY_HOOK record_reply
#define SMTPD_FUZZ_SETTINGS oom_settings
#include "fuzz-smtpd-command.c"

#define TRIGGER "oom@trigger.example"

static bool armed;
char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);
char *__wrap_strdup(const char *s) {
        if (armed && strcmp(s, TRIGGER) == 0) {
                errno = ENOMEM;
                return NULL;
        }
        return __real_strdup(s);
}

static SmtpdSettings *current;
static char replies[16][64];
static size_t n_replies;

static void record_reply(const char *line, size_t n) {
        if (n_replies < ELEMENTSOF(replies))
                snprintf(replies[n_replies++], sizeof replies[0], "%.*s", (int) n, line);
}

static SmtpdSettings *oom_settings(SmtpdSettings *dflt) {
        return current;
}

/* A table file in a memfd, named for the table type: "regexp:/proc/self/fd/N". */
static char *table_in_memfd(const char *type, const char *text) {
        int fd = memfd_create("table", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t) strlen(text));
        char *spec = NULL;
        FUZZ_CHECK(asprintf(&spec, "%s:/proc/self/fd/%d", type, fd) >= 0);
        return spec;
}

/* Runs one session with param = value set and returns the reply of index at
 * (0 greeting, 1 EHLO, 2 MAIL, 3 RCPT, 4 DATA, 5 end of data). */
static const char *run_session(const char *param, const char *value, size_t at, bool fail) {
        static const char transcript[] =
                "\0\0EHLO client.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@relay.example>\r\n"
                "DATA\r\nSubject: oom\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        Conf *c = NULL;
        FUZZ_CHECK(conf_new(&c) == 0);
        for (const char *const *p = base_settings; *p; p += 2)
                FUZZ_CHECK(conf_set(c, p[0], p[1], NULL) == 0);
        FUZZ_CHECK(conf_set(c, "smtpd_forbid_unauth_pipelining", "no", NULL) == 0);
        FUZZ_CHECK(conf_set(c, param, value, NULL) == 0);
        current = NULL;
        FUZZ_CHECK(smtpd_settings_new(c, "smtp", &current) == 0);
        conf_free(c);

        n_replies = 0;
        armed = fail;
        smtpd_test_session((const uint8_t *) transcript, sizeof transcript - 1);
        armed = false;
        current = smtpd_settings_unref(current);
        FUZZ_CHECK(n_replies > at);
        return replies[at];
}

static void expect(const char *what, const char *got, const char *want) {
        if (strncmp(got, want, strlen(want)) != 0) {
                fprintf(stderr, "%s: got \"%s\", want \"%s...\"\n", what, got, want);
                abort();
        }
        printf("ok: %s: %s\n", what, got);
}

int main(void) {
        static const char *const actions[] = { "HOLD", "DISCARD", "REDIRECT" };

        setvbuf(stdout, NULL, _IOLBF, 0);

        for (size_t i = 0; i < ELEMENTSOF(actions); i++) {
                char *text = NULL, *restriction = NULL, *what = NULL;

                /* check_recipient_access: RCPT (reply 3) */
                FUZZ_CHECK(asprintf(&text, "r@relay.example %s " TRIGGER "\n", actions[i]) >= 0);
                char *table = table_in_memfd("texthash", text);
                FUZZ_CHECK(asprintf(&restriction, "check_recipient_access %s, permit_mynetworks, "
                                    "reject_unauth_destination", table) >= 0);
                FUZZ_CHECK(asprintf(&what, "access %s, memory", actions[i]) >= 0);
                expect(what, run_session("smtpd_recipient_restrictions", restriction, 3, false), "250 ");
                free(what);
                FUZZ_CHECK(asprintf(&what, "access %s, out of memory", actions[i]) >= 0);
                expect(what, run_session("smtpd_recipient_restrictions", restriction, 3, true),
                       "451 4.3.0 ");
                free(what), free(text), free(table), free(restriction);

                /* header_checks: end of data (reply 5) */
                FUZZ_CHECK(asprintf(&text, "/^Subject: oom/ %s " TRIGGER "\n", actions[i]) >= 0);
                table = table_in_memfd("regexp", text);
                FUZZ_CHECK(asprintf(&what, "header_checks %s, memory", actions[i]) >= 0);
                expect(what, run_session("header_checks", table, 5, false), "250 ");
                free(what);
                FUZZ_CHECK(asprintf(&what, "header_checks %s, out of memory", actions[i]) >= 0);
                expect(what, run_session("header_checks", table, 5, true), "451 4.3.0 ");
                free(what), free(text), free(table);
        }
        return 0;
}
