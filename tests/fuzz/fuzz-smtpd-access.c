/* fuzz-smtpd-access — access(5) results as postern-smtpd applies them (smtpd_access_apply() in
 * smtpd-access.c, apply_value() in smtpd-check.c): "OK", "REJECT text", "4NN/5NN text",
 * "DEFER_IF_PERMIT", "PREPEND header", "HOLD", "FILTER", "REDIRECT", restriction lists and
 * class names. The same parser takes a policy server's action= answer, i.e. text from outside
 * the process. The value is the result of a check_*_access texthash: table (a memfd) in one of four
 * restriction lists, through the harness of fuzz-smtpd-command.c (included below) with settings
 * built for each input.
 *
 * Input:
 *   byte 0  bits 0-1 where the table is asked: check_recipient_access in
 *           smtpd_recipient_restrictions (key r@relay.example), check_sender_access in
 *           smtpd_sender_restrictions (s@example.org), check_client_access in
 *           smtpd_client_restrictions (127.0.0.1), check_helo_access in smtpd_helo_restrictions
 *           (client.example); bit 2 smtpd_delay_reject = no (the check answers its own command)
 *   rest    the table's value for that key (line ends become blanks)
 * The client (127.0.0.1, smtp listener) sends EHLO, MAIL, RCPT, DATA, a message and QUIT.
 * Values naming DNS or policy checks are skipped: the harness has no resolver and must not
 * connect anywhere.
 *
 * Checked (besides fuzz-smtpd-command's reply, message and budget checks): a value "4NN text" or
 * "5NN text" makes the command the check answers (RCPT, or with bit 2 the command of
 * the check's own stage) fail with exactly that code; OK (and an all-numerical value) makes RCPT
 * succeed; REJECT and DEFER make it fail with 5xx and 4xx. */
#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "smtpd.h"

int smtpd_fuzz_session(const uint8_t *data, size_t size);
static SmtpdSettings *access_settings(SmtpdSettings *dflt);
static void access_reply_hook(const char *line, size_t n);
#define SMTPD_FUZZ_ENTRY smtpd_fuzz_session
#define SMTPD_FUZZ_REPLY_HOOK access_reply_hook
#define SMTPD_FUZZ_SETTINGS access_settings
#define SMTPD_FUZZ_ALLOW_PREPEND
#include "fuzz-smtpd-command.c"

static SmtpdSettings *current;
static char reply_codes[32][4];
static size_t n_replies;

static void access_reply_hook(const char *line, size_t n) {
        if (n_replies < ELEMENTSOF(reply_codes))
                memcpy(reply_codes[n_replies++], line, 3);
}

static SmtpdSettings *access_settings(SmtpdSettings *dflt) {
        return current;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const lists[] = { "smtpd_recipient_restrictions", "smtpd_sender_restrictions",
                                             "smtpd_client_restrictions", "smtpd_helo_restrictions" };
        static const char *const checks[] = { "check_recipient_access", "check_sender_access",
                                              "check_client_access", "check_helo_access" };
        static const char *const keys[] = { "r@relay.example", "s@example.org", "127.0.0.1", "client.example" };
        static int fd = -1;
        static char table[64];

        if (size < 1 || size > 4096 || memchr(data + 1, '\0', size - 1))
                return 0;
        if (fd < 0) {
                fd = memfd_create("access", MFD_CLOEXEC);
                FUZZ_CHECK(fd >= 0);
                snprintf(table, sizeof table, "texthash:/proc/self/fd/%d", fd);
        }
        unsigned where = data[0] & 3;
        bool early = data[0] & 4;
        char *value = fuzz_strndup(data + 1, size - 1);
        for (char *p = value; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        static const char *const skip[] = { "policy", "rbl", "unknown", "dnsbl", "reverse_client" };
        for (size_t i = 0; i < ELEMENTSOF(skip); i++)
                if (strcasestr(value, skip[i])) {
                        free(value);
                        return 0;
                }

        char *file = NULL;
        int fl = asprintf(&file, "%s %s\n", keys[where], value);
        FUZZ_CHECK(fl >= 0);
        FUZZ_CHECK(ftruncate(fd, 0) == 0);
        FUZZ_CHECK(pwrite(fd, file, (size_t) fl, 0) == fl);
        free(file);

        Conf *c = NULL;
        FUZZ_CHECK(conf_new(&c) == 0);
        for (const char *const *p = base_settings; *p; p += 2)
                FUZZ_CHECK(conf_set(c, p[0], p[1], NULL) == 0);
        char *restriction = NULL;
        FUZZ_CHECK(asprintf(&restriction, "%s %s", checks[where], table) >= 0);
        FUZZ_CHECK(conf_set(c, lists[where], restriction, NULL) == 0);
        free(restriction);
        FUZZ_CHECK(conf_set(c, "smtpd_forbid_unauth_pipelining", "no", NULL) == 0);
        FUZZ_CHECK(conf_set(c, "smtpd_delay_reject", early ? "no" : "yes", NULL) == 0);
        current = NULL;
        int r = smtpd_settings_new(c, "smtp", &current);
        conf_free(c);
        if (r < 0) {
                free(value);
                return 0;
        }

        static const char transcript[] =
                "\0\0EHLO client.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@relay.example>\r\n"
                "DATA\r\nSubject: access\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        n_replies = 0;
        smtpd_fuzz_session((const uint8_t *) transcript, sizeof transcript - 1);
        current = smtpd_settings_unref(current);

        /* 220, EHLO, MAIL, RCPT: which reply answers the check */
        static const size_t stage_reply[] = { 3, 2, 0, 1 };
        size_t at = early ? stage_reply[where] : 3;
        if (at == 0)
                at = 3;   /* client restrictions answer at the next command that can be refused */
        if (n_replies > at && !(early && where == 2)) {
                const char *got = reply_codes[at];
                const char *v = value + strspn(value, " \t");
                size_t vl = strlen(v);
                while (vl > 0 && isspace((unsigned char) v[vl - 1]))
                        vl--;
                /* "4NN text" / "5NN text" (an all-numerical value alone means OK, as in Postfix) */
                if (vl > 3 && (v[0] == '4' || v[0] == '5') && isdigit((unsigned char) v[1]) &&
                    isdigit((unsigned char) v[2]) && (v[3] == ' ' || v[3] == '\t')) {
                        if (strncmp(got, v, 3) != 0) {
                                fprintf(stderr, "value \"%s\": reply %zu is %.3s\n", v, at, got);
                                abort();
                        }
                } else if (((vl == 2 && strncasecmp(v, "OK", 2) == 0) || (vl > 0 && strspn(v, "0123456789") == vl)) &&
                           !early)
                        FUZZ_CHECK(got[0] == '2');
                else if (vl == 6 && strncasecmp(v, "REJECT", 6) == 0)
                        FUZZ_CHECK(got[0] == '5');
                else if (vl == 5 && strncasecmp(v, "DEFER", 5) == 0)
                        FUZZ_CHECK(got[0] == '4');
        }
        free(value);
        return 0;
}
