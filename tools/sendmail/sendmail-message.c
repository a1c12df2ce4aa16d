/* sendmail-message.c — the message side of postern-sendmail: reading the text from standard
 * input (LF or CRLF, sendmail's "." convention), finding the header section, taking recipients
 * from To:/Cc:/Bcc: for -t (removing Bcc:), adding From: for -F, and splitting RFC 5322 address
 * lists into the bare addresses that address_parse() checks. The message is kept in LF form, as
 * the queue stores it; sendmail-smtp.c turns it into CRLF with dot-stuffing on the way out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mail/rfc822.h"
#include "sendmail.h"

size_t strv_length(char * const *l) {
        size_t n = 0;
        if (l)
                while (l[n])
                        n++;
        return n;
}

int strv_push_dup(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        *l = nl;
        nl[n] = strdup(s);
        if (!nl[n])
                return -ENOMEM;
        nl[n + 1] = NULL;
        return 0;
}

/* Appends one input line (without its line end) in LF form, or reports the "." end marker. */
static int add_line(StrBuf *out, const char *line, size_t n, bool ignore_dots, bool first,
                    size_t limit, bool *ret_end) {
        if (n > 0 && line[n - 1] == '\r')
                n--;
        if (!ignore_dots && n == 1 && line[0] == '.') {
                *ret_end = true;
                return 0;
        }
        if (first && n >= 5 && memcmp(line, "From ", 5) == 0)
                return 0;   /* an mbox separator someone piped in: not part of the message */
        if (limit > 0 && out->len + n + 1 > limit)
                return -EFBIG;
        int r = strbuf_append(out, line, n);
        if (r < 0)
                return r;
        return strbuf_putc(out, '\n');
}

int sendmail_read_message(int fd, bool ignore_dots, size_t limit, StrBuf *out) {
        _cleanup_strbuf_ StrBuf pending = STRBUF_INIT;
        char buf[65536];
        bool first = true, end = false;
        int r;

        for (;;) {
                ssize_t k = read(fd, buf, sizeof buf);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                r = strbuf_append(&pending, buf, (size_t) k);
                if (r < 0)
                        return r;
                size_t start = 0;
                for (;;) {
                        char *nl = memchr(pending.data + start, '\n', pending.len - start);
                        if (!nl)
                                break;
                        size_t n = (size_t) (nl - (pending.data + start));
                        r = add_line(out, pending.data + start, n, ignore_dots, first, limit, &end);
                        if (r < 0)
                                return r;
                        first = false;
                        start += n + 1;
                        if (end)
                                return 0;
                }
                strbuf_consume(&pending, start);
                if (limit > 0 && pending.len > limit)
                        return -EFBIG;
        }
        /* A last line without a line end still counts. */
        if (pending.len > 0)
                return add_line(out, pending.data, pending.len, ignore_dots, first, limit, &end);
        return 0;
}

size_t sendmail_header_end(const char *msg, size_t len, bool *ret_has_separator) {
        size_t pos = 0, last = 0;
        Rfc822Header h;
        int r;

        *ret_has_separator = false;
        if (len == 0)
                return 0;
        if (msg[0] == '\n') {
                *ret_has_separator = true;
                return 1;
        }
        while ((r = rfc822_next_header(msg, len, &pos, &h)) > 0)
                last = pos;
        if (r < 0 || pos < last)
                pos = last;     /* a line that is no header field ends the header section */
        if (pos == last) {
                /* The separator (if any) was not consumed yet. */
                if (pos > 0 && pos < len && msg[pos] == '\n') {
                        *ret_has_separator = true;
                        return pos + 1;
                }
                return pos;
        }
        /* The scanner stepped over the empty line: pos indexes the body. */
        *ret_has_separator = pos >= 2 && msg[pos - 1] == '\n' && msg[pos - 2] == '\n';
        return pos;
}

/* --- RFC 5322 address lists --- */

typedef struct ListScan {
        StrBuf plain;       /* text outside <>, comments dropped, whitespace folded */
        StrBuf angle;       /* the route-addr inside <> */
        bool have_angle;
        bool pending_space;
        char **result;
} ListScan;

static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int plain_put(ListScan *s, char c) {
        if (s->pending_space && s->plain.len > 0) {
                char prev = s->plain.data[s->plain.len - 1];
                /* obsolete syntax allows "user @ host" and "a . b": no space around @ and . */
                if (prev != '@' && prev != '.' && c != '@' && c != '.') {
                        int r = strbuf_putc(&s->plain, ' ');
                        if (r < 0)
                                return r;
                }
        }
        s->pending_space = false;
        return strbuf_putc(&s->plain, c);
}

static int scan_put(ListScan *s, bool in_angle, char c) {
        if (in_angle)
                return strbuf_putc(&s->angle, c);
        return plain_put(s, c);
}

static int scan_emit(ListScan *s) {
        const char *addr;
        int r = 0;

        if (s->have_angle) {
                addr = s->angle.data ? s->angle.data : "";
                /* Drop an obsolete source route "@a,@b:" in front of the mailbox. */
                if (addr[0] == '@') {
                        const char *colon = strchr(addr, ':');
                        addr = colon ? colon + 1 : addr;
                }
        } else
                addr = s->plain.data ? s->plain.data : "";
        if (!isempty(addr))
                r = strv_push_dup(&s->result, addr);
        strbuf_reset(&s->plain);
        strbuf_reset(&s->angle);
        s->have_angle = false;
        s->pending_space = false;
        return r;
}

int sendmail_split_address_list(const char *v, size_t len, char ***ret) {
        ListScan s = { STRBUF_INIT, STRBUF_INIT, false, false, NULL };
        bool in_quote = false, in_angle = false, in_literal = false, in_group = false;
        unsigned comment = 0;
        int r = 0;

        for (size_t i = 0; i < len && r >= 0; i++) {
                char c = v[i];

                if (comment > 0) {
                        if (c == '\\')
                                i++;
                        else if (c == '(')
                                comment++;
                        else if (c == ')' && --comment == 0)
                                s.pending_space = true;
                        continue;
                }
                if (in_quote || in_literal) {
                        /* Folding inside a quoted string is just whitespace: drop the line end. */
                        if (c == '\r' || c == '\n')
                                continue;
                        r = scan_put(&s, in_angle, c);
                        if (c == '\\' && in_quote && i + 1 < len && r >= 0) {
                                /* Unfolding comes first: a line end after the backslash goes,
                                 * and the quoted-pair takes the blank that follows it. */
                                while (i + 1 < len && (v[i + 1] == '\r' || v[i + 1] == '\n'))
                                        i++;
                                if (i + 1 < len)
                                        r = scan_put(&s, in_angle, v[++i]);
                        } else if (c == '"' && in_quote)
                                in_quote = false;
                        else if (c == ']' && in_literal)
                                in_literal = false;
                        continue;
                }
                switch (c) {
                case '(':
                        comment = 1;
                        break;
                case '"':
                        in_quote = true;
                        r = scan_put(&s, in_angle, c);
                        break;
                case '[':
                        in_literal = true;
                        r = scan_put(&s, in_angle, c);
                        break;
                case '<':
                        if (!in_angle) {
                                in_angle = true;
                                s.have_angle = true;
                                strbuf_reset(&s.angle);
                        }
                        break;
                case '>':
                        in_angle = false;
                        break;
                case ',':
                        if (in_angle)
                                r = strbuf_putc(&s.angle, c);   /* inside a source route */
                        else
                                r = scan_emit(&s);
                        break;
                case ':':
                        if (in_angle)
                                r = strbuf_putc(&s.angle, c);
                        else if (!in_group) {
                                /* "name: a, b;" — what came before was the group's name. */
                                in_group = true;
                                strbuf_reset(&s.plain);
                                s.pending_space = false;
                        } else
                                r = plain_put(&s, c);
                        break;
                case ';':
                        if (in_angle)
                                r = strbuf_putc(&s.angle, c);
                        else {
                                r = scan_emit(&s);
                                in_group = false;
                        }
                        break;
                default:
                        if (is_ws(c)) {
                                if (!in_angle)
                                        s.pending_space = true;
                        } else
                                r = scan_put(&s, in_angle, c);
                }
        }
        if (r >= 0)
                r = scan_emit(&s);
        strbuf_done(&s.plain);
        strbuf_done(&s.angle);
        if (r < 0) {
                strv_free(s.result);
                return r;
        }
        if (!s.result) {
                s.result = calloc(1, sizeof(char *));
                if (!s.result)
                        return -ENOMEM;
        }
        *ret = s.result;
        return 0;
}

/* --- header edits --- */

static bool name_is(const Rfc822Header *h, const char *name) {
        return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

int sendmail_extract_recipients(StrBuf *msg, char ***rcpts) {
        static const char *const plain_fields[] = { "To", "Cc", "Bcc" };
        static const char *const resent_fields[] = { "Resent-To", "Resent-Cc", "Resent-Bcc" };
        const char *const *fields = plain_fields;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        bool sep;
        size_t hend, pos = 0;
        Rfc822Header h;
        int r;

        if (!msg->data)
                return 0;
        hend = sendmail_header_end(msg->data, msg->len, &sep);

        /* RFC 5322 §3.6.6: a resent message is addressed by its Resent- fields. */
        while (pos < hend && rfc822_next_header(msg->data, hend, &pos, &h) > 0)
                if (h.name_len > 7 && strncasecmp(h.name, "Resent-", 7) == 0) {
                        fields = resent_fields;
                        break;
                }

        pos = 0;
        while (pos < hend) {
                size_t before = pos;
                r = rfc822_next_header(msg->data, hend, &pos, &h);
                if (r <= 0) {
                        pos = before;
                        break;
                }
                bool take = false, drop = false;
                for (size_t i = 0; i < 3; i++)
                        if (name_is(&h, fields[i])) {
                                take = true;
                                drop = i == 2;
                        }
                if (take) {
                        _cleanup_strv_free_ char **l = NULL;
                        r = sendmail_split_address_list(h.value, h.value_len, &l);
                        if (r < 0)
                                return r;
                        for (char **a = l; *a; a++) {
                                r = strv_push_dup(rcpts, *a);
                                if (r < 0)
                                        return r;
                        }
                }
                if (!drop) {
                        r = strbuf_append(&out, msg->data + before, pos - before);
                        if (r < 0)
                                return r;
                }
        }
        r = strbuf_append(&out, msg->data + pos, msg->len - pos);
        if (r < 0)
                return r;
        strbuf_done(msg);
        *msg = out;
        out = (StrBuf) STRBUF_INIT;
        return 0;
}

/* A display name as a quoted-string unless it is plain words (atext and spaces). */
static int put_display_name(StrBuf *b, const char *name) {
        bool plain = true;
        for (const char *p = name; *p; p++)
                if (!(((unsigned char) *p >= 0x80) || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr(" !#$%&'*+-/=?^_`{|}~", *p)))
                        plain = false;
        if (plain && name[0] != ' ')
                return strbuf_puts(b, name);
        int r = strbuf_putc(b, '"');
        for (const char *p = name; *p && r >= 0; p++) {
                if (*p == '\r' || *p == '\n')
                        continue;
                if (*p == '"' || *p == '\\')
                        r = strbuf_putc(b, '\\');
                if (r >= 0)
                        r = strbuf_putc(b, *p);
        }
        return r < 0 ? r : strbuf_putc(b, '"');
}

int sendmail_add_from(StrBuf *msg, const char *full_name, const char *sender) {
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        bool sep = false;
        size_t hend = 0;
        int r;

        if (msg->data) {
                hend = sendmail_header_end(msg->data, msg->len, &sep);
                if (hend > 0 && rfc822_has_header(msg->data, hend, "From"))
                        return 0;
        }
        r = strbuf_puts(&out, "From: ");
        if (r >= 0 && !isempty(full_name)) {
                r = put_display_name(&out, full_name);
                if (r >= 0)
                        r = strbuf_putc(&out, ' ');
        }
        if (r >= 0)
                r = strbuf_printf(&out, "<%s>\n", sender);
        /* With no header section at all the message was all body: keep it so. */
        if (r >= 0 && hend == 0 && msg->len > 0 && msg->data[0] != '\n')
                r = strbuf_putc(&out, '\n');
        if (r >= 0 && msg->len > 0)
                r = strbuf_append(&out, msg->data, msg->len);
        if (r < 0)
                return r;
        strbuf_done(msg);
        *msg = out;
        out = (StrBuf) STRBUF_INIT;
        return 0;
}
