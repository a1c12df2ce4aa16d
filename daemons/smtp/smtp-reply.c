/* smtp-reply.c — assembling multi-line SMTP/LMTP server replies ("250-a" ... "250 z") and
 * deriving the enhanced status code (RFC 3463) used in per-recipient results. Text is bounded
 * by SMTP_REPLY_TEXT_MAX; continuation lines are joined with a space, as Postfix reports them. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

#define SMTP_REPLY_LINES_MAX 64

void smtp_reply_reset(SmtpReply *r) {
        for (size_t i = 0; i < r->n_lines; i++)
                free(r->lines[i]);
        free(r->lines);
        *r = (SmtpReply) {};
}

/* Feeds one line (without CRLF). Returns 1 when the reply is complete, 0 when more lines
 * follow, -EBADMSG for a line that is not a reply line. */
int smtp_reply_feed(SmtpReply *r, const char *line, size_t len) {
        if (len < 3 || !isdigit((unsigned char) line[0]) || !isdigit((unsigned char) line[1]) ||
            !isdigit((unsigned char) line[2]) || line[0] < '2' || line[0] > '5' ||
            (len > 3 && line[3] != ' ' && line[3] != '-'))
                return -EBADMSG;
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        const char *text = len > 4 ? line + 4 : "";
        size_t tlen = len > 4 ? len - 4 : 0;

        if (r->n_lines == 0) {
                size_t k = MIN(tlen, sizeof(r->first_line) - 1);
                memcpy(r->first_line, text, k);
                r->first_line[k] = '\0';
                r->len = (size_t) snprintf(r->text, sizeof(r->text), "%.3s", line);
        }
        if (r->len + 1 < sizeof(r->text)) {
                size_t k = MIN(tlen, sizeof(r->text) - r->len - 2);
                r->text[r->len++] = ' ';
                memcpy(r->text + r->len, text, k);
                r->len += k;
                r->text[r->len] = '\0';
        }
        if (r->n_lines < SMTP_REPLY_LINES_MAX) {
                char **nl = realloc(r->lines, (r->n_lines + 1) * sizeof(char *));
                if (nl) {
                        r->lines = nl;
                        r->lines[r->n_lines] = memdup_suffix0(text, tlen);   /* text is not NUL-terminated */
                        if (r->lines[r->n_lines])
                                r->n_lines++;
                }
        }
        if (len > 3 && line[3] == '-')
                return 0;
        /* Trailing blanks of a bare "250 " reply. */
        while (r->len > 3 && r->text[r->len - 1] == ' ')
                r->text[--r->len] = '\0';
        r->code = code;
        return 1;
}

/* The enhanced status for a reply: its own d.d.d (class forced to the reply's) or X.0.0. */
void smtp_reply_dsn(const SmtpReply *r, char dsn[16]) {
        char cls = (char) ('0' + r->code / 100);
        const char *t = r->text + MIN(r->len, (size_t) 4);
        size_t a = 0, b = 0, c = 0;

        /* d.ddd.ddd followed by a blank or the end */
        if (isdigit((unsigned char) t[0]) && t[1] == '.') {
                a = 2;
                while (b < 3 && isdigit((unsigned char) t[a + b]))
                        b++;
                if (b > 0 && t[a + b] == '.') {
                        size_t s = a + b + 1;
                        while (c < 3 && isdigit((unsigned char) t[s + c]))
                                c++;
                        if (c > 0 && (t[s + c] == ' ' || t[s + c] == '\0') && (t[0] == '2' ||
                            t[0] == '4' || t[0] == '5')) {
                                snprintf(dsn, 16, "%c.%.*s.%.*s", cls, (int) b, t + 2, (int) c, t + s);
                                return;
                        }
                }
        }
        snprintf(dsn, 16, "%c.0.0", cls);
}
