/* test-mime-downgrade.c — unit tests for the 8-bit to quoted-printable conversion: a plain
 * message (MIME-Version and Content-Transfer-Encoding added), an existing 8bit CTE replaced,
 * multipart with an 8-bit part, an ASCII part and a base64 part, a nested message/rfc822, line
 * length and trailing blanks, and a decode round trip of every byte value. */
#include "mime-downgrade.h"
#include "../basic/tests.h"

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A strict decoder for the checks: soft breaks removed, =XX decoded; -1 on bad input. */
static int qp_decode(const char *p, size_t n, StrBuf *out) {
        for (size_t i = 0; i < n; i++) {
                if (p[i] != '=') {
                        if ((unsigned char) p[i] >= 0x80)
                                return -1;
                        strbuf_putc(out, p[i]);
                        continue;
                }
                if (i + 1 < n && p[i + 1] == '\n') {
                        i++;
                        continue;
                }
                if (i + 2 >= n || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0)
                        return -1;
                strbuf_putc(out, (char) (hexval(p[i + 1]) * 16 + hexval(p[i + 2])));
                i += 2;
        }
        return 0;
}

static bool lines_short(const char *p) {
        for (const char *l = p; *l;) {
                const char *nl = strchr(l, '\n');
                size_t len = nl ? (size_t) (nl - l) : strlen(l);
                if (len > 76)
                        return false;
                l += len + (nl ? 1 : 0);
        }
        return true;
}

static const char *body_of(const char *m) {
        const char *b = strstr(m, "\n\n");
        return b ? b + 2 : NULL;
}

int main(void) {
        /* Nothing 8-bit: nothing to do. */
        {
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade("Subject: x\n\nhello\n", 18, &o), 0);
                CHECK_INT(o.len, 0);
        }
        /* A plain message. */
        {
                const char *m = "From: a@b\nSubject: s\n\nGr\xc3\xbc\xc3\x9f" "e = fine \nnext\t\n";
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade(m, strlen(m), &o), 1);
                CHECK_STR(o.data, "From: a@b\nSubject: s\nMIME-Version: 1.0\n"
                                  "Content-Transfer-Encoding: quoted-printable\n\n"
                                  "Gr=C3=BC=C3=9Fe =3D fine=20\nnext=09\n");
        }
        /* An existing 8bit CTE is replaced, the Content-Type kept; no second MIME-Version. */
        {
                const char *m = "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                                "Content-Transfer-Encoding: 8bit\nSubject: s\n\n\xe2\x82\xac\n";
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade(m, strlen(m), &o), 1);
                CHECK_STR(o.data, "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                                  "Content-Transfer-Encoding: quoted-printable\nSubject: s\n\n=E2=82=AC\n");
        }
        /* Multipart: only the 8-bit part changes; delimiters, preamble, epilogue stay. */
        {
                const char *m = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
                                "preamble\n--b1\nContent-Type: text/plain\n\nascii\n"
                                "--b1\nContent-Type: text/plain; charset=latin1\n\ncaf\xe9\n"
                                "--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC\n"
                                "--b1--\nepilogue\n";
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade(m, strlen(m), &o), 1);
                CHECK_STR(o.data, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
                                  "preamble\n--b1\nContent-Type: text/plain\n\nascii\n"
                                  "--b1\nContent-Type: text/plain; charset=latin1\n"
                                  "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9\n"
                                  "--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC\n"
                                  "--b1--\nepilogue\n");
        }
        /* message/rfc822: converted inside, marked 7bit. */
        {
                const char *m = "Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n"
                                "Subject: inner\n\n\xc3\xa9t\xc3\xa9\n";
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade(m, strlen(m), &o), 1);
                CHECK_STR(o.data, "Content-Type: message/rfc822\nContent-Transfer-Encoding: 7bit\n\n"
                                  "Subject: inner\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A9t=C3=A9\n");
        }
        /* Long lines get soft breaks within 76 characters and decode back exactly. */
        {
                _cleanup_strbuf_ StrBuf in = STRBUF_INIT, o = STRBUF_INIT, back = STRBUF_INIT;
                strbuf_puts(&in, "Subject: long\n\n");
                for (int i = 0; i < 500; i++)
                        strbuf_puts(&in, i % 7 == 0 ? "\xc3\xa4" : i % 11 == 0 ? " " : "x");
                strbuf_puts(&in, "\n");
                for (int c = 1; c < 256; c++)
                        if (c != '\n')
                                strbuf_putc(&in, (char) c);
                strbuf_puts(&in, "\nend with blank \n");
                CHECK_INT(mime_downgrade(in.data, in.len, &o), 1);
                CHECK(lines_short(o.data));
                const char *ob = body_of(o.data), *ib = body_of(in.data);
                CHECK(ob && ib);
                CHECK_INT(qp_decode(ob, strlen(ob), &back), 0);
                CHECK_INT(back.len, strlen(ib));
                CHECK(memcmp(back.data, ib, back.len) == 0);
        }
        /* 8-bit only in a header: copied as it is (nothing in the body to convert). */
        {
                const char *m = "Subject: Gr\xc3\xbc\xc3\x9f" "e\n\nascii\n";
                _cleanup_strbuf_ StrBuf o = STRBUF_INIT;
                CHECK_INT(mime_downgrade(m, strlen(m), &o), 1);
                CHECK_STR(o.data, m);
        }
        return 0;
}
