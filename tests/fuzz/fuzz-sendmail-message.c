/* fuzz-sendmail-message — the message and header handling of postern-sendmail
 * (tools/sendmail/sendmail-message.c), which reads whatever a local user pipes in:
 * sendmail_read_message() (CRLF/LF, the "." end line, a leading mbox "From " line),
 * sendmail_header_end(), sendmail_extract_recipients() (-t: To/Cc/Bcc or the Resent- fields,
 * Bcc removal), sendmail_split_address_list() and sendmail_add_from() (-F full name).
 *
 * Input:
 *   byte 0  bit 0: -i (a "." line does not end the message)
 *   line 1  the -F full name
 *   rest    the message as piped in
 *
 * Checked: the message read is no longer than the input, every line ends in LF (one CR before
 * it is removed; "a\r\r\n" keeps its data CR), no line is "." without -i;
 * the header end lies within the message and a separator is an empty line; extracting
 * recipients leaves the body untouched and no Bcc: (or Resent-Bcc:) in the header section,
 * and yields non-empty addresses without CR or LF (they go into RCPT TO:); addresses without
 * specials joined with ", " split into the same addresses again; adding From: (when there is none) adds exactly
 * one header field, a From: without line breaks inside, whatever the full name holds. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "sendmail.h"
#include "mail/rfc822.h"

static size_t count_fields(const char *msg, size_t len) {
        size_t pos = 0, n = 0;
        Rfc822Header h;
        while (n < 100000 && rfc822_next_header(msg, len, &pos, &h) > 0)
                n++;
        return n;
}

static void check_split_again(char **l) {
        StrBuf joined = STRBUF_INIT;
        for (char **a = l; *a; a++)
                FUZZ_CHECK(strbuf_printf(&joined, "%s%s", a == l ? "" : ", ", *a) >= 0);
        char **again = NULL;
        FUZZ_CHECK(sendmail_split_address_list(joined.data ? joined.data : "", joined.len, &again) == 0);
        size_t i = 0;
        for (; l[i] && again[i]; i++)
                if (!streq(l[i], again[i])) {
                        fprintf(stderr, "split(\"%s\"): \"%s\" became \"%s\"\n", strempty(joined.data), l[i], again[i]);
                        abort();
                }
        FUZZ_CHECK(!l[i] && !again[i]);
        strv_free(again);
        strbuf_done(&joined);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fd = -1;
        if (size < 1 || size > 65536)
                return 0;
        if (fd < 0) {
                fd = memfd_create("message", MFD_CLOEXEC);
                FUZZ_CHECK(fd >= 0);
        }
        bool ignore_dots = data[0] & 1;
        const char *in = (const char *) data + 1;
        size_t n = size - 1;
        const char *nl = memchr(in, '\n', n);
        size_t name_len = nl ? (size_t) (nl - in) : n;
        char *full_name = fuzz_strndup((const uint8_t *) in, name_len);
        const char *body = nl ? nl + 1 : in + n;
        size_t body_len = (size_t) (in + n - body);

        FUZZ_CHECK(ftruncate(fd, 0) == 0);
        FUZZ_CHECK(body_len == 0 || pwrite(fd, body, body_len, 0) == (ssize_t) body_len);
        FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);

        StrBuf msg = STRBUF_INIT;
        int r = sendmail_read_message(fd, ignore_dots, 0, &msg);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(msg.len <= body_len + 1);
        FUZZ_CHECK(msg.len == 0 || msg.data[msg.len - 1] == '\n');
        if (!ignore_dots)
                for (size_t i = 0; i + 1 < msg.len; i++)
                        FUZZ_CHECK(!((i == 0 || msg.data[i - 1] == '\n') && msg.data[i] == '.' && msg.data[i + 1] == '\n'));

        /* the header end */
        bool sep = false;
        size_t hend = sendmail_header_end(msg.data ? msg.data : "", msg.len, &sep);
        FUZZ_CHECK(hend <= msg.len);
        if (sep)
                FUZZ_CHECK((hend == 1 && msg.data[0] == '\n') || (hend >= 2 && msg.data[hend - 1] == '\n' && msg.data[hend - 2] == '\n'));

        /* -t */
        char *old_body = fuzz_strndup((const uint8_t *) (msg.data ? msg.data + hend : ""), msg.len - hend);
        size_t old_body_len = msg.len - hend;
        bool resent = false;
        {
                size_t pos = 0;
                Rfc822Header h;
                while (pos < hend && rfc822_next_header(msg.data, hend, &pos, &h) > 0)
                        if (h.name_len > 7 && strncasecmp(h.name, "Resent-", 7) == 0)
                                resent = true;
        }
        char **rcpts = NULL;
        r = sendmail_extract_recipients(&msg, &rcpts);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(msg.len >= old_body_len);
        FUZZ_CHECK(old_body_len == 0 || memcmp(msg.data + msg.len - old_body_len, old_body, old_body_len) == 0);
        if (msg.data) {
                size_t h2 = sendmail_header_end(msg.data, msg.len, &sep);
                FUZZ_CHECK(!rfc822_has_header(msg.data, h2, resent ? "Resent-Bcc" : "Bcc"));
        }
        /* each goes into "RCPT TO:<...>\r\n": no line ends (a malformed address is smtpd's to refuse) */
        for (char **a = rcpts; a && *a; a++)
                FUZZ_CHECK(**a && !strpbrk(*a, "\r\n"));
        /* addresses without specials (what well-formed input gives) must survive a re-split */
        bool simple = rcpts != NULL;
        for (char **a = rcpts; a && *a; a++)
                simple = simple && !strpbrk(*a, "<>,;:()\"[]\\ \t");
        if (simple)
                check_split_again(rcpts);
        strv_free(rcpts);
        free(old_body);

        /* -F */
        size_t before = msg.data ? count_fields(msg.data, sendmail_header_end(msg.data, msg.len, &sep)) : 0;
        bool had_from = msg.data && rfc822_has_header(msg.data, sendmail_header_end(msg.data, msg.len, &sep), "From");
        r = sendmail_add_from(&msg, full_name, "user@example.org");
        FUZZ_CHECK(r == 0);
        if (!had_from) {
                size_t h3 = sendmail_header_end(msg.data, msg.len, &sep);
                FUZZ_CHECK(rfc822_has_header(msg.data, h3, "From"));
                size_t pos = 0;
                Rfc822Header h;
                FUZZ_CHECK(rfc822_next_header(msg.data, msg.len, &pos, &h) > 0);
                FUZZ_CHECK(h.name_len == 4 && strncmp(h.name, "From", 4) == 0);
                FUZZ_CHECK(!memchr(h.value, '\n', h.value_len) && !memchr(h.value, '\r', h.value_len));
                FUZZ_CHECK(count_fields(msg.data, h3) == before + 1);
        }
        strbuf_done(&msg);
        free(full_name);
        return 0;
}
