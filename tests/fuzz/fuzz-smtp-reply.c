/* fuzz-smtp-reply — postern-smtp's reply parser (daemons/smtp/smtp-reply.c): the lines a remote
 * SMTP/LMTP server sends, fed to smtp_reply_feed() one by one (CRLF removed, as the session's
 * line reader does), and smtp_reply_dsn() for each complete reply. Server replies are outside
 * input that ends up in logs, DSNs and the next hop's decisions.
 *
 * Input: the server's byte stream; lines end at LF (a CR before it is removed).
 *
 * Checked: a line is refused (-EBADMSG) exactly when it is not "[2-5]DD", "[2-5]DD " or
 * "[2-5]DD-..."; a complete reply has the code of its last line and a text starting with that code,
 * within SMTP_REPLY_TEXT_MAX and NUL-terminated at len (for NUL-free input), with at most 64
 * lines kept; the enhanced status is "C.x.y" (1-3 digits each) with C the reply's class, and
 * when the text starts with a well-formed status of a valid class its detail is kept. */
#include <ctype.h>
#include <errno.h>

#include "fuzz.h"
#include "smtp.h"

static bool reply_line_ok(const char *l, size_t n) {
        return n >= 3 && l[0] >= '2' && l[0] <= '5' && isdigit((unsigned char) l[1]) &&
               isdigit((unsigned char) l[2]) && (n == 3 || l[3] == ' ' || l[3] == '-');
}

static void check_dsn(const SmtpReply *r) {
        char dsn[16];
        memset(dsn, 'x', sizeof dsn);
        smtp_reply_dsn(r, dsn);
        FUZZ_CHECK(memchr(dsn, '\0', sizeof dsn));
        unsigned c, a, b;
        int used = 0;
        FUZZ_CHECK(sscanf(dsn, "%1u.%3u.%3u%n", &c, &a, &b, &used) == 3 && dsn[used] == '\0');
        FUZZ_CHECK(c == (unsigned) r->code / 100);
        FUZZ_CHECK(strlen(dsn) <= 9);
        /* "250 2.1.5 Ok": the detail comes from the text */
        const char *t = r->text + MIN(r->len, (size_t) 4);
        if (r->len > 4 && (t[0] == '2' || t[0] == '4' || t[0] == '5') && t[1] == '.') {
                size_t i = 2, d1 = 0, d2 = 0;
                while (d1 < 3 && isdigit((unsigned char) t[i + d1]))
                        d1++;
                if (d1 > 0 && t[i + d1] == '.') {
                        size_t j = i + d1 + 1;
                        while (d2 < 3 && isdigit((unsigned char) t[j + d2]))
                                d2++;
                        if (d2 > 0 && (t[j + d2] == ' ' || t[j + d2] == '\0')) {
                                char want[16];
                                snprintf(want, sizeof want, "%c.%.*s.%.*s", (char) ('0' + r->code / 100),
                                         (int) d1, t + i, (int) d2, t + j);
                                FUZZ_CHECK(streq(dsn, want));
                                return;
                        }
                }
        }
        FUZZ_CHECK(a == 0 && b == 0);   /* X.0.0 otherwise */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 65536)
                return 0;
        const char *in = (const char *) data;
        bool has_nul = memchr(data, '\0', size) != NULL;
        SmtpReply r = {};
        size_t lines_in_reply = 0;

        for (size_t off = 0; off < size; ) {
                const char *nl = memchr(in + off, '\n', size - off);
                size_t n = nl ? (size_t) (nl - (in + off)) : size - off;
                /* an exact-size copy without the line end, as the session hands it over */
                size_t ln = n > 0 && in[off + n - 1] == '\r' ? n - 1 : n;
                char *line = malloc(ln ? ln : 1);
                FUZZ_CHECK(line);
                if (ln)
                        memcpy(line, in + off, ln);
                off += n + (nl ? 1 : 0);

                int k = smtp_reply_feed(&r, line, ln);
                FUZZ_CHECK(k == 0 || k == 1 || k == -EBADMSG);
                FUZZ_CHECK((k == -EBADMSG) == !reply_line_ok(line, ln));
                if (k >= 0)
                        lines_in_reply++;
                FUZZ_CHECK(r.len < sizeof r.text && r.n_lines <= 64 && r.n_lines <= lines_in_reply);
                if (k == 0)
                        FUZZ_CHECK(ln > 3 && line[3] == '-' && r.code == 0);
                if (k == 1) {
                        FUZZ_CHECK(r.code == (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
                        FUZZ_CHECK(r.len >= 3 && memcmp(r.text, lines_in_reply == 1 ? line : r.text, 3) == 0);
                        FUZZ_CHECK(isdigit((unsigned char) r.text[0]) && r.text[r.len] == '\0');
                        if (!has_nul)
                                FUZZ_CHECK(strlen(r.text) == r.len && strlen(r.first_line) < sizeof r.first_line);
                        check_dsn(&r);
                        smtp_reply_reset(&r);
                        lines_in_reply = 0;
                } else if (k < 0) {
                        smtp_reply_reset(&r);
                        lines_in_reply = 0;
                }
                free(line);
        }
        smtp_reply_reset(&r);
        return 0;
}
