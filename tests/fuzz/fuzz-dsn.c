/* fuzz-dsn — the ESMTP DSN parameters postern-smtpd takes from clients (RFC 3461 RET=, ENVID= on
 * MAIL FROM; NOTIFY=, ORCPT= on RCPT TO, and RFC 6533 ORCPT=utf-8;...), through the real command
 * code of smtpd-command.c with the harness of fuzz-smtpd-command.c (included below), checked
 * against an independent model of what RFC 3461 allows.
 *
 * Input:
 *   byte 0  bit 0: MAIL FROM also declares SMTPUTF8
 *   line 1  the MAIL FROM parameters
 *   line 2… the RCPT TO parameters of recipients r0@relay.example, r1@… (at most 8)
 * The target sends EHLO, MAIL FROM:<s@example.org> PARAMS, RCPT TO:<ri@relay.example> PARAMS…,
 * DATA, a short message and QUIT from 127.0.0.1 on the smtp listener.
 *
 * Checked (besides everything fuzz-smtpd-command checks): MAIL FROM is accepted exactly when the
 * model accepts its parameters (SIZE, BODY, SMTPUTF8, RET once, ENVID once: xtext, printable
 * ASCII, at most 100 characters); a RCPT TO whose parameters are NOTIFY=/ORCPT= only is accepted
 * exactly when the model accepts them (NOTIFY: NEVER alone or SUCCESS/FAILURE/DELAY each once;
 * ORCPT: atom;xtext decoding to printable ASCII, or utf-8;UTF-8 only after SMTPUTF8, at most 500
 * characters); the queued message carries the model's RET and decoded ENVID, and each queued
 * recipient the model's NOTIFY bits and "type;decoded" ORCPT. */
#include <ctype.h>
#include <errno.h>

#include "fuzz.h"
#include "smtpd.h"
#include "mail/xtext.h"

int smtpd_fuzz_session(const uint8_t *data, size_t size);
static void dsn_reply_hook(const char *line, size_t n);
static void dsn_job_hook(const CommitJob *j);
#define SMTPD_FUZZ_ENTRY smtpd_fuzz_session
#define SMTPD_FUZZ_REPLY_HOOK dsn_reply_hook
#define SMTPD_FUZZ_JOB_HOOK dsn_job_hook
#include "fuzz-smtpd-command.c"

#include <strings.h>

#define MAX_RCPTS 8
#define MODEL_UNKNOWN (-1)

/* What the model expects of one command. */
typedef struct Expect {
        int valid;              /* 1, 0, or MODEL_UNKNOWN (not modelled) */
        int ret;                /* MAIL: 0, 1 FULL, 2 HDRS */
        char *envid;            /* MAIL */
        unsigned notify;        /* RCPT */
        char *orcpt;            /* RCPT */
} Expect;

static Expect mail_expect, rcpt_expect[MAX_RCPTS];
static size_t n_rcpt_lines;
static char reply_codes[64][4];
static size_t n_replies;
static bool job_seen;

static void dsn_reply_hook(const char *line, size_t n) {
        if (n_replies < ELEMENTSOF(reply_codes))
                memcpy(reply_codes[n_replies++], line, 3);
}

/* ---- the model ---------------------------------------------------------------------------- */

/* xtext that decodes to printable US-ASCII; NULL when not. */
static char *model_printable_xtext(const char *v) {
        char *d = NULL;
        size_t n = 0;
        if (!*v || xtext_decode(v, strlen(v), &d, &n) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) d[i] < 0x20 || (unsigned char) d[i] > 0x7e) {
                        free(d);
                        return NULL;
                }
        return d;
}

static void model_mail(char *params, bool *utf8) {
        Expect *e = &mail_expect;
        e->valid = 1;
        *utf8 = false;
        char *save = NULL;
        for (char *p = strtok_r(params, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                if (strncasecmp(p, "SIZE=", 5) == 0) {
                        char *end = NULL;
                        errno = 0;
                        unsigned long long n = strtoull(p + 5, &end, 10);
                        if (!isdigit((unsigned char) p[5]) || *end || errno == ERANGE || n > 10240000)
                                e->valid = 0;
                } else if (strncasecmp(p, "BODY=", 5) == 0) {
                        if (strcasecmp(p + 5, "7BIT") != 0 && strcasecmp(p + 5, "8BITMIME") != 0)
                                e->valid = 0;
                } else if (strcasecmp(p, "SMTPUTF8") == 0) {
                        *utf8 = true;
                } else if (strncasecmp(p, "RET=", 4) == 0) {
                        int r = strcasecmp(p + 4, "FULL") == 0 ? 1 : strcasecmp(p + 4, "HDRS") == 0 ? 2 : 0;
                        if (!r || e->ret)
                                e->valid = 0;
                        e->ret = r;
                } else if (strncasecmp(p, "ENVID=", 6) == 0) {
                        char *d = strlen(p + 6) <= 300 ? model_printable_xtext(p + 6) : NULL;
                        if (!d || strlen(d) > 100 || e->envid)
                                e->valid = 0;
                        if (!e->envid)
                                e->envid = d;
                        else
                                free(d);
                } else if (strncasecmp(p, "AUTH=", 5) == 0) {
                        e->valid = MODEL_UNKNOWN;   /* depends on the AUTH state; not modelled */
                        return;
                } else
                        e->valid = 0;
                if (!e->valid)
                        return;
        }
}

static unsigned model_notify(const char *v) {
        static const char *const words[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
        unsigned bits = 0;
        if (!*v)
                return 0;
        for (;;) {
                size_t l = strcspn(v, ",");
                unsigned b = 0;
                for (unsigned i = 0; i < ELEMENTSOF(words); i++)
                        if (strlen(words[i]) == l && strncasecmp(v, words[i], l) == 0)
                                b = 1u << i;   /* QUEUE_NOTIFY_NEVER .. _DELAY */
                if (!b || (bits & b))
                        return 0;
                bits |= b;
                if (!v[l])
                        break;
                v += l + 1;
        }
        if ((bits & QUEUE_NOTIFY_NEVER) && bits != QUEUE_NOTIFY_NEVER)
                return 0;
        return bits;
}

static bool model_utf8_valid(const unsigned char *s) {
        while (*s) {
                unsigned c = *s, n;
                if (c < 0x80) {
                        s++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1;
                else if (c >= 0xe0 && c <= 0xef)
                        n = 2;
                else if (c >= 0xf0 && c <= 0xf4)
                        n = 3;
                else
                        return false;
                unsigned cp = c & (0x3f >> n);
                for (unsigned i = 1; i <= n; i++) {
                        if ((s[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                s += n + 1;
        }
        return true;
}

/* "type;value": the stored "type;decoded", or NULL when invalid. */
static char *model_orcpt(const char *v, bool utf8) {
        const char *semi = strchr(v, ';');
        if (!semi || semi == v || strlen(v) > 500)
                return NULL;
        for (const char *c = v; c < semi; c++)
                if (!isalnum((unsigned char) *c) && *c != '-')
                        return NULL;
        char *addr;
        if (semi - v == 5 && strncasecmp(v, "utf-8", 5) == 0) {
                const char *a = semi + 1;
                if (!utf8 || !*a || !model_utf8_valid((const unsigned char *) a))
                        return NULL;
                for (const char *c = a; *c; c++)
                        if ((unsigned char) *c <= ' ' || *c == 0x7f)
                                return NULL;
                addr = strdup(a);
        } else
                addr = model_printable_xtext(semi + 1);
        if (!addr)
                return NULL;
        char *out = NULL;
        FUZZ_CHECK(asprintf(&out, "%.*s;%s", (int) (semi - v), v, addr) >= 0);
        free(addr);
        return out;
}

static void model_rcpt(Expect *e, char *params, bool utf8) {
        bool have_notify = false;
        char *save = NULL;
        e->valid = 1;
        for (char *p = strtok_r(params, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                if (strncasecmp(p, "NOTIFY=", 7) == 0) {
                        unsigned b = model_notify(p + 7);
                        if (!b || have_notify)
                                e->valid = 0;
                        have_notify = true;
                        if (!e->notify)
                                e->notify = b;
                } else if (strncasecmp(p, "ORCPT=", 6) == 0) {
                        char *o = model_orcpt(p + 6, utf8);
                        if (!o || e->orcpt)
                                e->valid = 0;
                        if (!e->orcpt)
                                e->orcpt = o;
                        else
                                free(o);
                } else {
                        e->valid = MODEL_UNKNOWN;   /* other parameters: fuzz-smtpd-command's job */
                        return;
                }
                if (!e->valid)
                        return;
        }
}

/* ---- checks on the outcome ---------------------------------------------------------------- */

static void dsn_job_hook(const CommitJob *j) {
        const QueueMessage *m = j->message;
        const QueueRecipient *rc = j->rcpts;

        job_seen = true;
        FUZZ_CHECK(m->ret >= 0 && m->ret <= 2);
        if (m->envid) {
                FUZZ_CHECK(strlen(m->envid) <= 100);
                for (const char *c = m->envid; *c; c++)
                        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f);
        }
        if (mail_expect.valid == 1) {
                FUZZ_CHECK(m->ret == mail_expect.ret);
                FUZZ_CHECK(!m->envid == !mail_expect.envid);
                FUZZ_CHECK(!m->envid || streq(m->envid, mail_expect.envid));
        }
        for (size_t i = 0; i < j->n_rcpts; i++) {
                unsigned n = rc[i].notify;
                FUZZ_CHECK(n == QUEUE_NOTIFY_NEVER || (n & ~(unsigned) (QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
                                                                        QUEUE_NOTIFY_DELAY)) == 0);
                if (rc[i].orcpt) {
                        const char *semi = strchr(rc[i].orcpt, ';');
                        FUZZ_CHECK(semi && semi > rc[i].orcpt);
                        bool utf8_type = strncasecmp(rc[i].orcpt, "utf-8;", 6) == 0;
                        for (const char *c = semi + 1; *c; c++)
                                FUZZ_CHECK(*c != 0x7f && (unsigned char) *c >= (utf8_type ? 0x21 : 0x20));
                }
                unsigned k;
                FUZZ_CHECK(sscanf(rc[i].address, "r%u@relay.example", &k) == 1 && k < n_rcpt_lines);
                const Expect *e = &rcpt_expect[k];
                FUZZ_CHECK(e->valid != 0);
                if (e->valid == 1) {
                        FUZZ_CHECK(n == e->notify);
                        FUZZ_CHECK(!rc[i].orcpt == !e->orcpt);
                        FUZZ_CHECK(!e->orcpt || streq(rc[i].orcpt, e->orcpt));
                }
        }
}

static void expect_done(Expect *e) {
        free(e->envid);
        free(e->orcpt);
        *e = (Expect) {};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 8192)
                return 0;
        char *text = fuzz_strndup(data + 1, size - 1);
        bool declare_utf8 = data[0] & 1;
        /* CR and NUL would change the command lines themselves; they become spaces */
        for (size_t i = 0; i < size - 1; i++)
                if (text[i] == '\r' || text[i] == '\0')
                        text[i] = ' ';

        char *lines[1 + MAX_RCPTS];
        size_t n_lines = 0;
        for (char *p = text; n_lines < ELEMENTSOF(lines); ) {
                char *nl = strchr(p, '\n');
                lines[n_lines++] = p;
                if (!nl)
                        break;
                *nl = '\0';
                p = nl + 1;
        }
        n_rcpt_lines = n_lines - 1;

        StrBuf in = STRBUF_INIT;
        FUZZ_CHECK(strbuf_append(&in, "\x08\0", 2) == 0);   /* fuzz-smtpd-command: variant 0, the submit listener */
        FUZZ_CHECK(strbuf_printf(&in, "EHLO client.example\r\nMAIL FROM:<s@example.org> %s%s\r\n", lines[0],
                                 declare_utf8 ? " SMTPUTF8" : "") >= 0);
        for (size_t i = 1; i < n_lines; i++)
                FUZZ_CHECK(strbuf_printf(&in, "RCPT TO:<r%zu@relay.example> %s\r\n", i - 1, lines[i]) >= 0);
        FUZZ_CHECK(strbuf_puts(&in, "DATA\r\nSubject: dsn\r\n\r\ntext\r\n.\r\nQUIT\r\n") == 0);

        /* the model, on copies (strtok_r writes) */
        bool utf8 = false;
        char *copy = strdup(lines[0]);
        FUZZ_CHECK(copy);
        model_mail(copy, &utf8);
        free(copy);
        utf8 = utf8 || declare_utf8;
        if (declare_utf8 && mail_expect.valid == 1 && strlen(lines[0]) + 9 > 1000)
                mail_expect.valid = MODEL_UNKNOWN;
        for (size_t i = 0; i < n_rcpt_lines; i++) {
                copy = strdup(lines[1 + i]);
                FUZZ_CHECK(copy);
                model_rcpt(&rcpt_expect[i], copy, utf8);
                free(copy);
                if (strlen(lines[1 + i]) > 1000)
                        rcpt_expect[i].valid = MODEL_UNKNOWN;   /* line_length_limit territory */
        }
        if (strlen(lines[0]) > 1000)
                mail_expect.valid = MODEL_UNKNOWN;

        n_replies = 0;
        job_seen = false;
        smtpd_fuzz_session((const uint8_t *) in.data, in.len);

        /* replies: 220, EHLO, MAIL, then one per RCPT */
        FUZZ_CHECK(n_replies >= 3 + n_rcpt_lines);
        bool mail_ok = reply_codes[2][0] == '2';
        if (mail_expect.valid != MODEL_UNKNOWN)
                FUZZ_CHECK(mail_ok == (mail_expect.valid == 1));
        if (mail_ok)
                for (size_t i = 0; i < n_rcpt_lines; i++)
                        if (rcpt_expect[i].valid != MODEL_UNKNOWN) {
                                bool ok = reply_codes[3 + i][0] == '2';
                                if (ok != (rcpt_expect[i].valid == 1)) {
                                        fprintf(stderr, "RCPT %zu: reply %.3s, model %d\n", i, reply_codes[3 + i],
                                                rcpt_expect[i].valid);
                                        abort();
                                }
                        }

        expect_done(&mail_expect);
        for (size_t i = 0; i < MAX_RCPTS; i++)
                expect_done(&rcpt_expect[i]);
        strbuf_done(&in);
        free(text);
        return 0;
}
