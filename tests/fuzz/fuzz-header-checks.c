/* fuzz-header-checks — header_checks/body_checks (common/mail/header-checks.c): opening a
 * regexp: (or pcre:, compiled by libpcre2 when the build has it) table, matching message header fields and body lines
 * against it, expanding $n from the message text into the action, and parsing the action
 * (header_check_parse()).
 *
 * Input:
 *   byte 0  bit 0: use the built-in rules below (the rest is all message); otherwise the rest
 *           starts with a rules file that ends at the first line "--" (opened as pcre: when bit
 *           1 is set), followed by the message; inputs with stacked repetitions are skipped
 *           (fuzz_regexp_pathological() in fuzz.h)
 *   rest    [rules "\n--\n"] message: header fields, an empty line, body lines
 * Each logical header field (folded lines joined by their "\n", as smtpd-cleanup.c passes it)
 * is matched with for_header, each body line without; every line of the rules file is also
 * parsed as an action value by itself.
 *
 * Checked: a match answers a known action; DUNNO and IGNORE carry no text; PREPEND/REPLACE text
 * is one line and, for headers, "Name: value" with a valid name; BCC/REDIRECT is one address
 * with '@' and without blanks or angle brackets; FILTER is transport:destination without
 * blanks; action text is trimmed; a refused action says why and hands back the raw value. */
#include <ctype.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "mail/header-checks.h"
#include "mail/rfc822.h"

static const char builtin_rules[] =
        "/^Subject:.*viagra/ REJECT no spam\n"
        "/^Subject: (.*)$/ PREPEND X-Original-Subject: $1\n"
        "/^X-Replace: (.*)/ REPLACE X-Replaced: ${1}\n"
        "/^X-Bcc: (.*)/ BCC $1\n"
        "/^X-Redirect: (.*)/ REDIRECT ${1}\n"
        "/^X-Filter: (.*)/ FILTER $1\n"
        "/^X-Action: (.*)/ $1\n"
        "/^Received: .*\\[(10\\.[0-9.]+)\\]/ HOLD internal $1\n"
        "/^(X-Ignore):/ IGNORE\n"
        "/^body: (.*)/ WARN body $1\n"
        "/^(.*)(.*)(.*)(.*)(.*)(.*)(.*)(.*)(.*)$/ INFO $9$8$7$6$5$4$3$2$1\n"
        "!/^./ DUNNO\n";

static bool trimmed(const char *t) {
        return *t && !isspace((unsigned char) t[0]) && !isspace((unsigned char) t[strlen(t) - 1]);
}

static void check_action(const HeaderCheckAction *a, bool for_header) {
        FUZZ_CHECK(a->type >= 0 && a->type < _HEADER_CHECK_MAX);
        FUZZ_CHECK(!streq(header_check_type_name(a->type), "unknown"));
        if (a->text)
                FUZZ_CHECK(trimmed(a->text));
        switch (a->type) {
        case HEADER_CHECK_DUNNO:
        case HEADER_CHECK_IGNORE:
                FUZZ_CHECK(!a->text);
                break;
        case HEADER_CHECK_PREPEND:
        case HEADER_CHECK_REPLACE:
                FUZZ_CHECK(a->text && !strchr(a->text, '\n'));
                if (for_header) {
                        const char *colon = strchr(a->text, ':');
                        FUZZ_CHECK(colon && rfc822_header_name_valid(a->text, (size_t) (colon - a->text)));
                }
                break;
        case HEADER_CHECK_BCC:
        case HEADER_CHECK_REDIRECT:
                FUZZ_CHECK(a->text && strchr(a->text, '@'));
                for (const char *p = a->text; *p; p++)
                        FUZZ_CHECK(!isspace((unsigned char) *p) && *p != '<' && *p != '>');
                break;
        case HEADER_CHECK_FILTER:
                FUZZ_CHECK(a->text && strchr(a->text, ':') && a->text[0] != ':');
                for (const char *p = a->text; *p; p++)
                        FUZZ_CHECK(!isspace((unsigned char) *p));
                break;
        default:
                break;
        }
}

static void match(HeaderChecks *h, const char *line, size_t n, bool for_header) {
        char *l = strndup(line, n);
        FUZZ_CHECK(l);
        HeaderCheckAction a = {};
        char *raw = NULL;
        const char *why = NULL;
        int r = header_checks_match(h, l, for_header, &a, &raw, &why);
        FUZZ_CHECK(r == 0 || r == 1 || r == -EINVAL || r == -ENOMEM);
        if (r == 1)
                check_action(&a, for_header);
        if (r == -EINVAL)
                FUZZ_CHECK(why && raw);
        header_check_action_done(&a);
        free(raw);
        free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int rules_fd = -1, builtin_fd = -1;
        static char rules_path[64], builtin_path[64];

        if (size < 1 || size > 32768)
                return 0;
        if (rules_fd < 0) {
                rules_fd = memfd_create("header_checks", MFD_CLOEXEC);
                builtin_fd = memfd_create("builtin", MFD_CLOEXEC);
                FUZZ_CHECK(rules_fd >= 0 && builtin_fd >= 0);
                snprintf(rules_path, sizeof rules_path, "/proc/self/fd/%d", rules_fd);
                snprintf(builtin_path, sizeof builtin_path, "/proc/self/fd/%d", builtin_fd);
                FUZZ_CHECK(pwrite(builtin_fd, builtin_rules, strlen(builtin_rules), 0) == (ssize_t) strlen(builtin_rules));
        }
        const char *in = (const char *) data + 1;
        size_t n = size - 1;
        const char *msg = in;
        size_t msg_len = n;
        char spec[96];

        if (data[0] & 1)
                snprintf(spec, sizeof spec, "regexp:%s", builtin_path);
        else {
                if (fuzz_regexp_pathological(data + 1, size - 1))
                        return 0;
                const char *sep = memmem(in, n, "\n--\n", 4);
                size_t rl = sep ? (size_t) (sep - in) + 1 : n;
                FUZZ_CHECK(ftruncate(rules_fd, 0) == 0);
                FUZZ_CHECK(rl == 0 || pwrite(rules_fd, in, rl, 0) == (ssize_t) rl);
                msg = sep ? sep + 4 : in + n;
                msg_len = (size_t) (in + n - msg);
                snprintf(spec, sizeof spec, "%s:%s", data[0] & 2 ? "pcre" : "regexp", rules_path);
                /* every rules line as an action value by itself */
                char *rules = fuzz_strndup((const uint8_t *) in, rl);
                char *save = NULL;
                for (char *line = strtok_r(rules, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                        for (int fh = 0; fh < 2; fh++) {
                                HeaderCheckAction a = {};
                                const char *why = NULL;
                                int r = header_check_parse(line, fh, &a, &why);
                                FUZZ_CHECK(r == 0 || r == -ENOMEM || (r == -EINVAL && why));
                                if (r == 0)
                                        check_action(&a, fh);
                                header_check_action_done(&a);
                        }
                free(rules);
        }

        HeaderChecks *h = NULL;
        char *reason = NULL;
        int r = header_checks_open(spec, &h, &reason);
        /* -EPROTONOSUPPORT: pcre: in a build without libpcre2 */
        FUZZ_CHECK(r == 0 || r == -ENOMEM || ((r == -EINVAL || r == -EPROTONOSUPPORT) && reason));
        FUZZ_CHECK(r < 0 || h);   /* the spec is never empty */
        free(reason);
        if (r == 0) {
                FUZZ_CHECK(strncmp(header_checks_spec(h), spec, strlen(spec)) == 0);   /* never rewritten */
                /* a NUL-free exact-size copy of the message */
                char *m = fuzz_strndup((const uint8_t *) msg, msg_len);
                size_t len = strlen(m), pos = 0, k = 0;
                Rfc822Header hd;
                while (k++ < 200 && rfc822_next_header(m, len, &pos, &hd) > 0) {
                        /* the field without its final line end, folds kept */
                        size_t fl = (size_t) (hd.value + hd.value_len - hd.name);
                        match(h, hd.name, fl, true);
                }
                for (const char *p = m + MIN(pos, len); *p && k++ < 400; ) {
                        const char *e = strchrnul(p, '\n');
                        match(h, p, (size_t) (e - p), false);
                        p = *e ? e + 1 : e;
                }
                free(m);
                header_checks_free(h);
        }
        return 0;
}
