/* test-milter.c — unit tests for the milter codec and specifications: the bytes of every command
 * the MTA sends, framing limits, every reply (good and malformed), option negotiation with
 * macro lists, milter specifications and macro lists. */
#include <errno.h>

#include "milter.h"
#include "../basic/macro.h"
#include "../basic/tests.h"

static void check_bytes(const StrBuf *b, const char *want, size_t n) {
        if (b->len != n || memcmp(b->data, want, n) != 0) {
                fprintf(stderr, "got %zu bytes:", b->len);
                for (size_t i = 0; i < b->len; i++)
                        fprintf(stderr, " %02x", (unsigned char) b->data[i]);
                fprintf(stderr, "\n");
        }
        CHECK_INT(b->len, n);
        CHECK(memcmp(b->data, want, n) == 0);
}
#define CHECK_BYTES(b, lit) check_bytes(b, lit, sizeof(lit) - 1)

static const char *macro_get(const char *name, void *userdata) {
        if (streq(name, "j"))
                return "mx.example.org";
        if (streq(name, "{client_addr}"))
                return "127.0.0.2";
        return NULL;
}

static void test_encode(void) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;

        CHECK(milter_put_optneg(&b, 6, MILTER_A_ALL, MILTER_P_ALL) == 0);
        CHECK_BYTES(&b, "\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff");
        strbuf_reset(&b);

        char *names[] = { "j", "{nothing}", "{client_addr}", NULL };
        CHECK(milter_put_macros(&b, 'C', names, macro_get, NULL) == 0);
        CHECK_BYTES(&b, "\0\0\0\x2b" "DCj\0mx.example.org\0{client_addr}\0" "127.0.0.2\0");
        strbuf_reset(&b);
        char *none[] = { "{nothing}", NULL };
        CHECK(milter_put_macros(&b, 'C', none, macro_get, NULL) == 0);
        CHECK_INT(b.len, 0);

        CHECK(milter_put_connect(&b, "host.example", '4', 2525, "127.0.0.2") == 0);
        CHECK_BYTES(&b, "\0\0\0\x1b" "Chost.example\0" "4\x09\xdd" "127.0.0.2\0");
        strbuf_reset(&b);
        CHECK(milter_put_connect(&b, "localhost", 'U', 0, NULL) == 0);
        CHECK_BYTES(&b, "\0\0\0\x0c" "Clocalhost\0U");
        strbuf_reset(&b);

        CHECK(milter_put_strings(&b, MILTER_CMD_MAIL, (const char *const[]) { "<a@b>", "SIZE=10", NULL }) == 0);
        CHECK_BYTES(&b, "\0\0\0\x0f" "M<a@b>\0SIZE=10\0");
        strbuf_reset(&b);
        CHECK(milter_put_header(&b, "Subject", "hi") == 0);
        CHECK_BYTES(&b, "\0\0\0\x0c" "LSubject\0hi\0");
        strbuf_reset(&b);
        CHECK(milter_put_packet(&b, MILTER_CMD_EOH, NULL, 0) == 0);
        CHECK_BYTES(&b, "\0\0\0\x01N");
        strbuf_reset(&b);

        /* body chunks of at most 65535 bytes */
        char *big = malloc(70000);
        CHECK(big);
        memset(big, 'x', 70000);
        CHECK(milter_put_body(&b, big, 70000) == 0);
        CHECK_INT(b.len, 5 + 65535 + 5 + (70000 - 65535));
        CHECK(memcmp(b.data, "\0\x01\0\0" "B", 5) == 0);
        CHECK(memcmp(b.data + 5 + 65535, "\0\0\x11\x72" "B", 5) == 0);
        free(big);
        strbuf_reset(&b);
        CHECK(milter_put_body(&b, "", 0) == 0);
        CHECK_INT(b.len, 0);

        /* slices: the same packet as from NUL-terminated strings */
        CHECK(milter_put_header_n(&b, "Subject: hi", 7, "hi there", 2) == 0);
        CHECK_BYTES(&b, "\0\0\0\x0c" "LSubject\0hi\0");
        strbuf_reset(&b);
}

/* LF → CRLF body packets: a chunk ends once it holds 65534 bytes or more (a CRLF may make it
 * 65535), so the chunks are those the MTA sent before. */
static void test_body_crlf(void) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        size_t used;

        CHECK(milter_put_body_crlf(&b, "a\nbc\n", 5, &used) == 0);
        CHECK_INT(used, 5);
        CHECK_BYTES(&b, "\0\0\0\x08" "Ba\r\nbc\r\n");
        strbuf_reset(&b);
        CHECK(milter_put_body_crlf(&b, "no newline", 10, &used) == 0);
        CHECK_INT(used, 10);
        CHECK_BYTES(&b, "\0\0\0\x0b" "Bno newline");
        strbuf_reset(&b);

        /* 65533 bytes, then a newline: 65535 bytes of data */
        char *big = malloc(70000);
        CHECK(big);
        memset(big, 'x', 70000);
        big[65533] = '\n';
        CHECK(milter_put_body_crlf(&b, big, 70000, &used) == 0);
        CHECK_INT(used, 65534);
        CHECK_INT(b.len, 5 + 65535);
        CHECK(memcmp(b.data, "\0\x01\0\0" "B", 5) == 0);
        CHECK(memcmp(b.data + 5 + 65533, "\r\n", 2) == 0);
        strbuf_reset(&b);
        /* without newlines: 65534 bytes a chunk */
        memset(big, 'x', 70000);
        CHECK(milter_put_body_crlf(&b, big, 70000, &used) == 0);
        CHECK_INT(used, 65534);
        CHECK_INT(b.len, 5 + 65534);
        CHECK(milter_put_body_crlf(&b, big + used, 70000 - used, &used) == 0);
        CHECK_INT(used, 70000 - 65534);
        CHECK_INT(b.len, 5 + 65534 + 5 + (70000 - 65534));
        free(big);
}

static void test_frame(void) {
        char cmd;
        const uint8_t *d;
        size_t n, used;
        char err[MILTER_ERR_MAX] = "";

        CHECK_INT(milter_frame_next("\0\0\0", 3, &cmd, &d, &n, &used, err), 0);
        CHECK_INT(milter_frame_next("\0\0\0\x02y", 5, &cmd, &d, &n, &used, err), 0);
        CHECK_INT(milter_frame_next("\0\0\0\x01" "cXX", 7, &cmd, &d, &n, &used, err), 1);
        CHECK_INT(cmd, 'c');
        CHECK_INT(n, 0);
        CHECK_INT(used, 5);
        CHECK_INT(milter_frame_next("\0\0\0\0c", 5, &cmd, &d, &n, &used, err), -EBADMSG);
        CHECK(strstr(err, "length 0"));
        CHECK_INT(milter_frame_next("\x7f\0\0\0c", 5, &cmd, &d, &n, &used, err), -EBADMSG);
        CHECK(strstr(err, "exceeds the limit"));
        CHECK_INT(milter_frame_next("\0\x10\0\x11" "c", 5, &cmd, &d, &n, &used, err), -EBADMSG);
}

static const struct {
        char cmd;
        const char *data;
        size_t n;
        int want;           /* 0 or -EBADMSG */
        const char *field;  /* text / name expected, or the error part */
} replies[] = {
        { 'a', "", 0, 0, NULL },
        { 'c', "", 0, 0, NULL },
        { 'd', "", 0, 0, NULL },
        { 'r', "", 0, 0, NULL },
        { 't', "", 0, 0, NULL },
        { 'p', "", 0, 0, NULL },
        { 's', "", 0, 0, NULL },
        { 'c', "x", 1, -EBADMSG, "unexpected data" },
        { 'y', "550 5.7.1 go away", 18, 0, "550 5.7.1 go away" },
        { 'y', "451 4.7.1 later", 16, 0, "451 4.7.1 later" },
        { 'y', "550-5.7.1 one\r\n550 5.7.1 two", 29, 0, "550-5.7.1 one\r\n550 5.7.1 two" },
        { 'y', "550", 4, 0, "550" },
        { 'y', "250 2.0.0 ok", 13, -EBADMSG, "not a 4xx or 5xx" },
        { 'y', "650 x", 6, -EBADMSG, "not a 4xx or 5xx" },
        { 'y', "55 x", 5, -EBADMSG, "not a 4xx or 5xx" },
        { 'y', "550 4.7.1 mixed", 16, -EBADMSG, "enhanced status class" },
        { 'y', "550-a\r\n451 b", 13, -EBADMSG, "different codes" },
        { 'y', "550 a\r\n550 b", 13, -EBADMSG, "without \"-\"" },
        { 'y', "550-a", 6, -EBADMSG, "ends the reply" },
        { 'y', "550 a\nb", 8, -EBADMSG, "bare line break" },
        { 'y', "550 no nul", 10, -EBADMSG, "without terminating NUL" },
        { 'y', "550 a\0" "550 b", 12, -EBADMSG, "strings" },
        { 'h', "X-Spam\0yes", 11, 0, "X-Spam" },
        { 'h', "X-Spam\0", 7, -EBADMSG, "strings" },
        { 'h', "\0yes", 5, -EBADMSG, "empty header name" },
        { 'h', "Bad Name\0yes", 13, -EBADMSG, "invalid header name" },
        { 'i', "\0\0\0\x01X-A\0v", 10, 0, "X-A" },
        { 'i', "\0\0", 2, -EBADMSG, "no index" },
        { 'm', "\0\0\0\x02Subject\0", 13, 0, "Subject" },
        { '+', "<new@x>", 8, 0, "<new@x>" },
        { '+', "", 1, -EBADMSG, "empty address" },
        { '2', "<new@x>\0NOTIFY=NEVER", 21, 0, "<new@x>" },
        { '2', "<new@x>", 8, 0, "<new@x>" },
        { '-', "<old@x>", 8, 0, "<old@x>" },
        { 'e', "<s@x>\0SIZE=1", 13, 0, "<s@x>" },
        { 'e', "", 1, 0, "" },
        { 'q', "spam", 5, 0, "spam" },
        { 'b', "new body", 8, 0, NULL },
        { 'z', "", 0, -EBADMSG, "unknown reply command 'z'" },
        { '\x01', "", 0, -EBADMSG, "unknown reply command 0x01" },
};

static void test_replies(void) {
        for (size_t i = 0; i < ELEMENTSOF(replies); i++) {
                MilterReply r = {};
                char err[MILTER_ERR_MAX] = "";
                int k = milter_reply_parse(replies[i].cmd, (const uint8_t *) replies[i].data, replies[i].n, &r, err);
                if (k != replies[i].want)
                        fprintf(stderr, "reply %zu: %d (%s)\n", i, k, err);
                CHECK_INT(k, replies[i].want);
                if (k < 0) {
                        if (!strstr(err, replies[i].field))
                                fprintf(stderr, "reply %zu: error \"%s\"\n", i, err);
                        CHECK(strstr(err, replies[i].field));
                        continue;
                }
                if (replies[i].field)
                        CHECK_STR(r.name ? r.name : r.text, replies[i].field);
                milter_reply_done(&r);
        }
        MilterReply r = {};
        CHECK(milter_reply_parse('y', (const uint8_t *) "451 4.7.1 later", 16, &r, NULL) == 0);
        CHECK_INT(r.code, 451);
        milter_reply_done(&r);
        CHECK(milter_reply_parse('i', (const uint8_t *) "\0\0\0\x03X-A\0v", 10, &r, NULL) == 0);
        CHECK_INT(r.index, 3);
        CHECK_STR(r.value, "v");
        milter_reply_done(&r);
        CHECK(milter_reply_parse('2', (const uint8_t *) "<n@x>\0NOTIFY=NEVER", 19, &r, NULL) == 0);
        CHECK_STR(r.value, "NOTIFY=NEVER");
        milter_reply_done(&r);
        CHECK(milter_reply_parse('b', (const uint8_t *) "abc", 3, &r, NULL) == 0);
        CHECK_INT(r.body_len, 3);
        milter_reply_done(&r);
}

static void test_neg(void) {
        MilterNeg n = {};
        char err[MILTER_ERR_MAX] = "";
        static const char ok[] = "\0\0\0\x06\0\0\0\x11\0\0\0\x42" "\0\0\0\x02i {mail_addr}\0" "\0\0\0\x05i\0";
        CHECK(milter_neg_parse((const uint8_t *) ok, sizeof(ok) - 1, MILTER_A_ALL, MILTER_P_ALL, &n, err) == 0);
        CHECK_INT(n.version, 6);
        CHECK_INT(n.actions, 0x11);
        CHECK_INT(n.protocol, 0x42);
        CHECK_STR(n.symlist[MILTER_M_MAIL], "i {mail_addr}");
        CHECK_STR(n.symlist[MILTER_M_EOM], "i");
        CHECK(!n.symlist[MILTER_M_CONNECT]);
        milter_neg_done(&n);

        CHECK_INT(milter_neg_parse((const uint8_t *) ok, 11, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "11 bytes"));
        CHECK_INT(milter_neg_parse((const uint8_t *) "\0\0\0\x07\0\0\0\0\0\0\0\0", 12, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "version 7"));
        CHECK_INT(milter_neg_parse((const uint8_t *) ok, 12, 0x1, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "actions 0x10"));
        CHECK_INT(milter_neg_parse((const uint8_t *) ok, 12, MILTER_A_ALL, 0x2, &n, err), -EBADMSG);
        CHECK(strstr(err, "protocol steps 0x40"));
        static const char bad1[] = "\0\0\0\x06\0\0\0\0\0\0\0\0" "\0\0\0\x09i\0";
        CHECK_INT(milter_neg_parse((const uint8_t *) bad1, sizeof(bad1) - 1, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "unknown stage 9"));
        static const char bad2[] = "\0\0\0\x06\0\0\0\0\0\0\0\0" "\0\0\0\x01i";
        CHECK_INT(milter_neg_parse((const uint8_t *) bad2, sizeof(bad2) - 1, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "without NUL"));
        static const char bad3[] = "\0\0\0\x06\0\0\0\0\0\0\0\0" "\0\0";
        CHECK_INT(milter_neg_parse((const uint8_t *) bad3, sizeof(bad3) - 1, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "truncated"));
        static const char bad4[] = "\0\0\0\x06\0\0\0\0\0\0\0\0" "\0\0\0\x01i\0" "\0\0\0\x01j\0";
        CHECK_INT(milter_neg_parse((const uint8_t *) bad4, sizeof(bad4) - 1, MILTER_A_ALL, MILTER_P_ALL, &n, err), -EBADMSG);
        CHECK(strstr(err, "twice"));
}

static const struct {
        const char *entry;
        const char *name;        /* NULL: invalid, then the reason's part */
        const char *reason;
        long long connect_timeout;
        int default_action;
} specs[] = {
        { "unix:/run/opendkim/opendkim.sock", "unix:/run/opendkim/opendkim.sock", NULL, -1, MILTER_DEFAULT_UNSET },
        { "local:/var/run/x.sock", "unix:/var/run/x.sock", NULL, -1, MILTER_DEFAULT_UNSET },
        { "inet:127.0.0.1:8891", "inet:127.0.0.1:8891", NULL, -1, MILTER_DEFAULT_UNSET },
        { "inet:localhost:11332", "inet:localhost:11332", NULL, -1, MILTER_DEFAULT_UNSET },
        { "inet:[::1]:8891", "inet:[::1]:8891", NULL, -1, MILTER_DEFAULT_UNSET },
        { "{ inet:127.0.0.1:8891, connect_timeout=10s, default_action=tempfail }", "inet:127.0.0.1:8891", NULL, 10, MILTER_DEFAULT_TEMPFAIL },
        { "inet:127.0.0.1:8891, connect_timeout = 2m, command_timeout=5, content_timeout=1h, default_action=quarantine, protocol=2",
          "inet:127.0.0.1:8891", NULL, 120, MILTER_DEFAULT_QUARANTINE },
        { "inet:127.0.0.1", NULL, "no port", 0, 0 },
        { "inet::25", NULL, "no port", 0, 0 },
        { "inet:127.0.0.1:0", NULL, "invalid port", 0, 0 },
        { "inet:127.0.0.1:99999", NULL, "invalid port", 0, 0 },
        { "inet:::1:25", NULL, "[addr]:port", 0, 0 },
        { "inet:[::1:25", NULL, "unbalanced", 0, 0 },
        { "unix:relative", NULL, "absolute", 0, 0 },
        { "tcp:1.2.3.4:5", NULL, "expected unix:", 0, 0 },
        { "{ inet:127.0.0.1:8891, bogus=1 }", NULL, "unknown setting \"bogus\"", 0, 0 },
        { "{ inet:127.0.0.1:8891, default_action=maybe }", NULL, "invalid default_action", 0, 0 },
        { "{ inet:127.0.0.1:8891, connect_timeout=soon }", NULL, "invalid connect_timeout", 0, 0 },
        { "{ inet:127.0.0.1:8891, protocol=7 }", NULL, "invalid protocol", 0, 0 },
        { "{ inet:127.0.0.1:8891, noequals }", NULL, "not name=value", 0, 0 },
        { "{ inet:127.0.0.1:8891", NULL, "missing closing", 0, 0 },
        { "{ }", NULL, "no address", 0, 0 },
};

static void test_specs(void) {
        for (size_t i = 0; i < ELEMENTSOF(specs); i++) {
                MilterSpec s = {};
                _cleanup_free_ char *reason = NULL;
                int k = milter_spec_parse(specs[i].entry, &s, &reason);
                if (!specs[i].name) {
                        if (k != -EINVAL || !reason || !strstr(reason, specs[i].reason))
                                fprintf(stderr, "spec %zu: %d %s\n", i, k, strna(reason));
                        CHECK_INT(k, -EINVAL);
                        CHECK(strstr(reason, specs[i].reason));
                        continue;
                }
                if (k < 0)
                        fprintf(stderr, "spec %zu: %s\n", i, strna(reason));
                CHECK_INT(k, 0);
                CHECK_STR(s.name, specs[i].name);
                CHECK_INT(s.connect_timeout, specs[i].connect_timeout);
                CHECK_INT(s.default_action, specs[i].default_action);
                milter_spec_done(&s);
        }
        MilterSpec s = {};
        CHECK(milter_spec_parse("inet:127.0.0.1:8891, connect_timeout=2m, command_timeout=5, content_timeout=1h, protocol=2", &s, NULL) == 0);
        CHECK_INT(s.command_timeout, 5);
        CHECK_INT(s.content_timeout, 3600);
        CHECK_INT(s.protocol, 2);
        CHECK_INT(s.port, 8891);
        CHECK_STR(s.host, "127.0.0.1");
        milter_spec_done(&s);

        CHECK_INT(milter_default_action_parse("TempFail"), MILTER_DEFAULT_TEMPFAIL);
        CHECK_INT(milter_default_action_parse("shutdown"), MILTER_DEFAULT_SHUTDOWN);
        CHECK_INT(milter_default_action_parse("x"), -EINVAL);
}

static void test_macro_list(void) {
        _cleanup_strv_free_ char **l = milter_macro_list("i {auth_type}, {client_addr}\tj");
        CHECK(l);
        CHECK_STR(l[0], "i");
        CHECK_STR(l[1], "{auth_type}");
        CHECK_STR(l[2], "{client_addr}");
        CHECK_STR(l[3], "j");
        CHECK(!l[4]);
        _cleanup_strv_free_ char **e = milter_macro_list("");
        CHECK(e && !e[0]);
}

static void add_edit(MilterEdits *e, char cmd, const char *data, size_t n) {
        MilterReply r = {};
        CHECK(milter_reply_parse(cmd, (const uint8_t *) data, n, &r, NULL) == 0);
        CHECK(milter_edits_add(e, &r) == 0);
        milter_reply_done(&r);
}

static void test_edits(void) {
        static const char msg[] = "Received: by x\n\tfolded\nSubject: a\nTo: t@x\nSubject: b\n\nbody\n";
        MilterEdits e = {};
        char *out = NULL;
        size_t len = 0;

        /* nothing to do for the content (a recipient edit only) */
        add_edit(&e, '+', "<r@x>", sizeof("<r@x>"));
        CHECK_INT(milter_edits_apply_content(&e, msg, sizeof(msg) - 1, &out, &len), 1);

        add_edit(&e, 'h', "X-End\0e", sizeof("X-End\0e"));
        add_edit(&e, 'i', "\0\0\0\0X-Top\0 t", sizeof("\0\0\0\0X-Top\0 t"));
        add_edit(&e, 'm', "\0\0\0\x02Subject\0second", sizeof("\0\0\0\x02Subject\0second"));
        add_edit(&e, 'm', "\0\0\0\x01To\0", sizeof("\0\0\0\x01To\0"));
        add_edit(&e, 'm', "\0\0\0\x01X-New\0v", sizeof("\0\0\0\x01X-New\0v"));          /* not there: added */
        add_edit(&e, 'm', "\0\0\0\x01X-Gone\0", sizeof("\0\0\0\x01X-Gone\0"));          /* not there: nothing */
        add_edit(&e, 'h', "X-Fold\0a\r\nBcc: b", sizeof("X-Fold\0a\r\nBcc: b"));
        CHECK_INT(milter_edits_apply_content(&e, msg, sizeof(msg) - 1, &out, &len), 0);
        CHECK_INT(len, strlen(out));
        CHECK_STR(out, "X-Top: t\nReceived: by x\n\tfolded\nSubject: a\nSubject: second\n"
                       "X-End: e\nX-New: v\nX-Fold: a\n\tBcc: b\n\nbody\n");
        free(out);

        add_edit(&e, 'b', "new\r\nbody\r\n", 11);
        add_edit(&e, 'b', "more\r\n", 6);
        CHECK_INT(milter_edits_apply_content(&e, msg, sizeof(msg) - 1, &out, &len), 0);
        CHECK(strstr(out, "\n\nnew\nbody\nmore\n") && strlen(strstr(out, "\n\nnew")) == 16);
        free(out);

        /* a message without a body */
        static const char nobody[] = "Subject: a\n";
        milter_edits_reset(&e);
        add_edit(&e, 'h', "X-A\0v", sizeof("X-A\0v"));
        CHECK_INT(milter_edits_apply_content(&e, nobody, sizeof(nobody) - 1, &out, &len), 0);
        CHECK_STR(out, "Subject: a\nX-A: v\n");
        free(out);
        milter_edits_reset(&e);
        CHECK_INT(e.n, 0);
}

int main(void) {
        test_encode();
        test_body_crlf();
        test_frame();
        test_replies();
        test_neg();
        test_specs();
        test_macro_list();
        test_edits();
        return 0;
}
