/* smtpd-screen-engine.c — the screening stage's own small SMTP engine (postscreen's "dummy"
 * engine) that runs the deep protocol tests after the greeting: postscreen_pipelining_enable,
 * postscreen_non_smtp_command_enable and postscreen_bare_newline_enable.
 *
 * smtpd-screen.c starts it (screen_engine_start()) when an enabled deep test has no valid
 * cached pass for the client, after the pregreet test and the DNS lists (or at once, when their
 * passes are cached). The engine sends "220 $smtpd_banner" (nothing to a client that pregreeted)
 * and answers commands itself; the client never reaches the real SMTP session in this connection:
 * RCPT gets "450 4.3.2 Service currently unavailable" (or the 550 of an "enforce" failure), and
 * a client that got there without failing is cached with each test's TTL and logged PASS NEW,
 * so that its next connection goes straight on (PASS OLD).
 *
 * The tests, as postscreen's:
 *   pipelining    the engine does not announce PIPELINING; input already waiting behind a
 *                 command line when it is read fails ("COMMAND PIPELINING from [A]:P after CMD: …")
 *   non-SMTP      an unknown command whose word is in postscreen_forbidden_commands, or which
 *                 has the form of a header ("Host: x") ("NON-SMTP COMMAND from [A]:P after CMD: …")
 *   bare newline  a command line that ends in LF alone ("BARE NEWLINE from [A]:P after CMD")
 * The deep tests pass when the client gets to RCPT TO; a later failure still counts. Actions:
 * ignore (logged; passed for the shortest of the stage's TTLs), enforce (RCPT gets 550 5.5.1
 * Protocol error), drop (521 and close). postscreen_command_count_limit and
 * postscreen_command_time_limit (per command line) end the session with 421. No AUTH, XCLIENT,
 * XFORWARD, BDAT: clients that need them are allowlisted, as with postscreen.
 *
 * STARTTLS (postscreen_tls_security_level, default smtpd's level): at may or encrypt, with
 * smtpd's TLS credentials loaded, EHLO offers it (unless postscreen_discard_ehlo_keywords hides
 * it) and the handshake is smtpd-tls.c's own; smtpd_screen_tls_established() brings the session
 * back here, the tests go on inside TLS with HELO/EHLO forgotten (RFC 3207). Whatever arrived
 * behind the STARTTLS line is discarded, never run inside TLS (STARTTLS injection,
 * CVE-2011-0411). At encrypt MAIL before STARTTLS gets 530 5.7.0. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "smtpd.h"
#include "log/log.h"

#define ENGINE_READ 4096
#define ENGINE_LINE_MAX 2048   /* longer: COMMAND LENGTH LIMIT (Postfix's line_length_limit) */

struct ScreenEngine {
        unsigned todo;           /* the tests still running (SCREEN_TEST_*) */
        unsigned failed;         /* failed tests (also the ignored ones) */
        unsigned ignored;        /* failed with action ignore */
        bool enforce;            /* a deep test failed with enforce */
        bool done;               /* RCPT reached: the passes are recorded */
        char *refusal;           /* the RCPT reply of an earlier "enforce" failure */
        bool helo, mail;
        bool starttls;           /* STARTTLS answered: the rest of the input is discarded */
        char *sender;
        unsigned commands;
        char last[16];           /* the last command word, for the log ("CONNECT" at first) */
        char line[ENGINE_LINE_MAX + 2];
        size_t len;
};

ScreenEngine *screen_engine_free(ScreenEngine *e) {
        if (!e)
                return NULL;
        free(e->refusal);
        free(e->sender);
        free(e);
        return NULL;
}

unsigned screen_deep_enabled(const SmtpdScreenSettings *st) {
        return (st->pipelining.enable ? SCREEN_TEST_PIPELINING : 0) | (st->non_smtp.enable ? SCREEN_TEST_NON_SMTP : 0) |
               (st->bare_newline.enable ? SCREEN_TEST_BARE_NEWLINE : 0);
}

/* "Label:" with optional blanks before the colon: a header name (printable, no ':'). */
static bool is_header(const char *line) {
        const char *p = line;
        while (*p > ' ' && *p < 127 && *p != ':')
                p++;
        if (p == line)
                return false;
        while (*p == ' ' || *p == '\t')
                p++;
        return *p == ':';
}

bool screen_forbidden_command(char *const *forbidden, const char *line) {
        size_t n = strcspn(line, " \t");
        for (char *const *f = forbidden; f && *f; f++)
                if (strlen(*f) == n && strncasecmp(*f, line, n) == 0)
                        return true;
        return is_header(line);
}

/* The text of a log line: printable, at most 100 bytes, "\r\n" written out. */
static void printable(const char *data, size_t n, char *buf, size_t size) {
        screen_pregreet_text(data, n, buf, size);
}

static const char *footer_of(Session *s) {
        const char *f = s->settings->screen.reject_footer;
        if (f && (streq(f, "$smtpd_reject_footer") || streq(f, "${smtpd_reject_footer}")))
                return s->settings->reject_footer;
        return f;
}

static char *mfree_str(char *p) {
        free(p);
        return NULL;
}

/* One reply; 4xx/5xx with postscreen_reject_footer(_maps). */
static void reply(Session *s, const char *text) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        if (text[0] == '4' || text[0] == '5') {
                _cleanup_(strbuf_done) StrBuf out = {};
                if (smtpd_reply_with_footer(s, text, footer_of(s), st->reject_footer_maps, "postscreen_reject_footer_maps",
                                            &out) >= 0 && strbuf_puts(&out, "") >= 0) {
                        session_reply_raw(s, out.data);
                        return;
                }
        }
        session_reply(s, "%s", text);
}

/* A 421/521 and the end of the connection (may free the session). */
static void finish(Session *s, const char *text) {
        reply(s, text);
        session_close_after_flush(s);
        (void) session_flush(s);
}

ScreenEngine *screen_engine_start(Session *s, unsigned todo, const char *refusal, bool greet) {
        ScreenEngine *e = calloc(1, sizeof(ScreenEngine));
        if (!e || (refusal && !(e->refusal = strdup(refusal)))) {
                log_oom();
                return screen_engine_free(e);
        }
        e->todo = todo;
        strcpy(e->last, "CONNECT");
        if (greet) {
                char line[1024];
                snprintf(line, sizeof(line), "220 %s", s->settings->banner);
                session_reply(s, "%s", line);
        }
        session_enter_screen(s, s->settings->screen.command_time_limit_usec);
        return e;
}

/* A deep test failed: logged by the caller; false when the session was dropped (maybe freed). */
static bool test_failed(Session *s, ScreenEngine *e, unsigned test, const ScreenDeepTest *t, const char *drop) {
        e->todo &= ~test;
        e->failed |= test;
        switch (t->action) {
        case SCREEN_ACTION_DROP:
                finish(s, drop);
                return false;
        case SCREEN_ACTION_ENFORCE:
                e->enforce = true;
                break;
        default:
                e->ignored |= test;
                break;
        }
        return true;
}

/* STARTTLS is possible: a TLS level, smtpd's credentials, not inside TLS already. */
static bool tls_offered(Session *s) {
        return s->settings->screen.tls_level != TLS_LEVEL_NONE && s->settings->tls && !s->client.tls;
}

/* postscreen_discard_ehlo_keywords, or what postscreen_discard_ehlo_keyword_address_maps gives
 * for this client. */
static unsigned ehlo_discard(Session *s) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        return command_ehlo_discard_for(s, st->ehlo_discard, st->ehlo_discard_maps,
                                        "postscreen_discard_ehlo_keyword_address_maps");
}

static void starttls(Session *s, ScreenEngine *e, const char *args) {
        if (*args)
                reply(s, "501 5.5.4 Syntax: STARTTLS");
        else if (s->client.tls)
                reply(s, "554 5.5.1 Error: TLS already active");
        else if (s->settings->screen.tls_level == TLS_LEVEL_NONE || (ehlo_discard(s) & EHLO_STARTTLS))
                reply(s, "502 5.5.1 Error: command not implemented");
        else if (!s->settings->tls)
                reply(s, "454 4.7.0 TLS not available due to local problem");
        else {
                session_reply(s, "220 2.0.0 Ready to start TLS");
                e->starttls = true;
        }
}

void screen_engine_tls_established(Session *s, ScreenEngine *e) {
        e->helo = e->mail = e->starttls = false;
        e->sender = mfree_str(e->sender);
        e->len = 0;
        session_enter_screen(s, s->settings->screen.command_time_limit_usec);
}

static void ehlo(Session *s, ScreenEngine *e) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        unsigned discard = ehlo_discard(s);
        char size[48];
        if (s->settings->message_size_limit)
                snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long) s->settings->message_size_limit);
        else
                snprintf(size, sizeof(size), "SIZE");
        const struct { const char *text; unsigned bit; bool on; } kw[] = {   /* NOT PIPELINING */
                { size, EHLO_SIZE, true }, { "VRFY", EHLO_VRFY, !st->disable_vrfy }, { "ETRN", EHLO_ETRN, true },
                { "ENHANCEDSTATUSCODES", EHLO_ENHANCEDSTATUSCODES, true }, { "8BITMIME", EHLO_8BITMIME, true },
                { "DSN", EHLO_DSN, true }, { "STARTTLS", EHLO_STARTTLS, tls_offered(s) },
        };
        const char *show[ELEMENTSOF(kw)];
        size_t n = 0;
        char hidden[128] = "";
        for (size_t i = 0; i < ELEMENTSOF(kw); i++) {
                if (!kw[i].on)
                        continue;
                if (discard & kw[i].bit) {
                        size_t l = strlen(hidden);
                        snprintf(hidden + l, sizeof(hidden) - l, "%s%.*s", l ? " " : "", (int) strcspn(kw[i].text, " "),
                                 kw[i].text);
                        continue;
                }
                show[n++] = kw[i].text;
        }
        if (hidden[0] && !(discard & EHLO_SILENT_DISCARD))
                smtpd_screen_log(s, "discarding EHLO keywords: %s", hidden);
        char line[256];
        snprintf(line, sizeof(line), "250%c%s\r\n", n ? '-' : ' ', s->settings->myhostname);
        session_reply_raw(s, line);
        for (size_t i = 0; i < n; i++) {
                snprintf(line, sizeof(line), "250%c%s\r\n", i + 1 == n ? ' ' : '-', show[i]);
                session_reply_raw(s, line);
        }
        e->helo = true;
        e->mail = false;
}

/* The address of "FROM:<a>" / "TO:<a>", unquoted (never used for mail: only logged). */
static void extract_addr(const char *arg, char *buf, size_t size) {
        const char *p = arg;
        while (*p == ' ')
                p++;
        char stop = ' ';
        if (*p == '<') {
                p++;
                stop = '>';
        }
        size_t k = 0;
        bool quoted = false;
        for (; *p && k + 1 < size; p++) {
                if (!quoted && *p == stop)
                        break;
                if (*p == '"')
                        quoted = !quoted;
                else
                        buf[k++] = *p;
        }
        buf[k] = '\0';
}

/* What RCPT (and VRFY) get: an enforce failure's reply, else "come back later". */
static const char *rcpt_reply(ScreenEngine *e) {
        if (e->enforce)
                return "550 5.5.1 Protocol error";
        if (e->refusal)
                return e->refusal;
        return "450 4.3.2 Service currently unavailable";
}

static void rcpt(Session *s, ScreenEngine *e, const char *args) {
        const char *colon = strchr(args, ':');
        if (!e->mail) {
                reply(s, "503 5.5.1 Error: need MAIL command");
                return;
        }
        if (!colon || strncasecmp(args, "TO", 2) != 0) {
                reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
                return;
        }
        char to[256];
        extract_addr(colon + 1, to, sizeof(to));
        if (!e->done) {
                /* the client got here: the tests still running are passed */
                e->done = true;
                smtpd_screen_deep_done(s, e->todo, e->ignored, e->enforce);
                e->todo = 0;
        }
        const char *r = rcpt_reply(e);
        smtpd_screen_log(s, "NOQUEUE: reject: RCPT from %s: %s; from=<%s>, to=<%s>, proto=%s, helo=<%s>",
                         smtpd_screen_peer(s), r, strempty(e->sender), to, s->client.esmtp ? "ESMTP" : "SMTP",
                         strempty(s->client.helo));
        reply(s, r);
}

/* Runs one command line (without its line end). False: the session is closing or freed. */
static bool command(Session *s, ScreenEngine *e, char *line, bool pipelined, const char *rest, size_t nrest) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        char *filtered = command_filtered(s, st->command_filter, "postscreen_command_filter", line,
                                          smtpd_screen_peer(s));
        if (filtered)
                line = filtered;
        char *args = line + strcspn(line, " ");
        char word[16];
        snprintf(word, sizeof(word), "%.*s", (int) MIN((size_t) (args - line), sizeof(word) - 1), line);
        while (*args == ' ')
                args++;
        static const char *const known[] = { "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "ETRN",
                                             "QUIT", "XCLIENT", "XFORWARD", "AUTH", "STARTTLS", "BDAT" };
        bool is_known = false;
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strcaseeq(word, known[i]))
                        is_known = true;
        char text[512];

        if ((e->todo & SCREEN_TEST_NON_SMTP) && !is_known && screen_forbidden_command(st->forbidden_commands, line)) {
                printable(line, strlen(line), text, sizeof(text));
                smtpd_screen_log(s, "NON-SMTP COMMAND from %s after %s: %s", smtpd_screen_peer(s), e->last, text);
                if (!test_failed(s, e, SCREEN_TEST_NON_SMTP, &st->non_smtp,
                                 "521 5.7.0 Error: I can break rules, too. Goodbye."))
                        return false;
        }
        if ((e->todo & SCREEN_TEST_PIPELINING) && pipelined) {
                printable(rest, nrest, text, sizeof(text));
                smtpd_screen_log(s, "COMMAND PIPELINING from %s after %.100s: %s", smtpd_screen_peer(s), word, text);
                if (!test_failed(s, e, SCREEN_TEST_PIPELINING, &st->pipelining, "521 5.5.1 Protocol error"))
                        return false;
        }
        if (is_known)
                for (char *p = word; *p; p++)
                        *p = (char) toupper((unsigned char) *p);
        if (++e->commands > st->command_count_limit && !strcaseeq(word, "QUIT")) {
                smtpd_screen_log(s, "COMMAND COUNT LIMIT from %s after %s", smtpd_screen_peer(s), e->last);
                char r[512];
                snprintf(r, sizeof(r), "421 4.7.0 %s Error: too many commands", s->settings->myhostname);
                finish(s, r);
                return false;
        }
        if (is_known)
                snprintf(e->last, sizeof(e->last), "%s", word);
        else
                snprintf(e->last, sizeof(e->last), "UNKNOWN");

        if (strcaseeq(word, "HELO") || strcaseeq(word, "EHLO")) {
                if (!*args) {
                        reply(s, strcaseeq(word, "HELO") ? "501 Syntax: HELO hostname" : "501 Syntax: EHLO hostname");
                        return true;
                }
                free(s->client.helo);
                s->client.helo = strndup(args, strcspn(args, " "));
                s->client.esmtp = strcaseeq(word, "EHLO");
                e->sender = mfree_str(e->sender);
                if (s->client.esmtp)
                        ehlo(s, e);
                else {
                        e->helo = true;
                        e->mail = false;
                        session_reply(s, "250 %s", s->settings->myhostname);
                }
        } else if (strcaseeq(word, "MAIL")) {
                const char *colon = strchr(args, ':');
                if (st->helo_required && !e->helo)
                        reply(s, "503 5.5.1 Error: send HELO/EHLO first");
                else if (st->tls_level == TLS_LEVEL_ENCRYPT && !s->client.tls_active)
                        reply(s, "530 5.7.0 Must issue a STARTTLS command first");
                else if (e->mail)
                        reply(s, "503 5.5.1 Error: nested MAIL command");
                else if (!colon || strncasecmp(args, "FROM", 4) != 0)
                        reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
                else {
                        char from[256];
                        extract_addr(colon + 1, from, sizeof(from));
                        free(e->sender);
                        e->sender = strdup(from);
                        e->mail = true;
                        reply(s, "250 2.1.0 Ok");
                }
        } else if (strcaseeq(word, "STARTTLS"))
                starttls(s, e, args);
        else if (strcaseeq(word, "RCPT"))
                rcpt(s, e, args);
        else if (strcaseeq(word, "DATA"))
                reply(s, *args ? "501 5.5.4 Syntax: DATA" : !e->mail ? "503 5.5.1 Error: need RCPT command"
                                                                     : "554 5.5.1 Error: no valid recipients");
        else if (strcaseeq(word, "RSET")) {
                e->mail = false;
                e->sender = mfree_str(e->sender);
                reply(s, "250 2.0.0 Ok");
        } else if (strcaseeq(word, "NOOP"))
                reply(s, "250 2.0.0 Ok");
        else if (strcaseeq(word, "VRFY"))
                reply(s, !*args ? "501 5.5.4 Syntax: VRFY address" : st->disable_vrfy ? "502 5.5.1 VRFY command is disabled"
                                                                                         : rcpt_reply(e));
        else if (strcaseeq(word, "ETRN"))
                reply(s, st->helo_required && !e->helo ? "503 5.5.1 Error: send HELO/EHLO first"
                         : !*args                      ? "500 Syntax: ETRN domain"
                                                       : "458 Unable to queue messages");
        else if (strcaseeq(word, "QUIT")) {
                session_reply(s, "221 2.0.0 Bye");
                session_close_after_flush(s);
                (void) session_flush(s);
                return false;
        } else
                reply(s, "502 5.5.2 Error: command not recognized");
        return true;
}

void screen_engine_on_io(Session *s, ScreenEngine *e) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        char buf[ENGINE_READ];
        bool progress = false;
        for (;;) {
                ssize_t n = smtpd_io_read(s, buf, sizeof(buf));
                if (n == -EAGAIN || n == -EINTR)
                        break;
                if (n <= 0) {
                        char t[16];
                        smtpd_screen_elapsed(s, t, sizeof(t));
                        smtpd_screen_log(s, "HANGUP after %s from %s in tests after SMTP handshake", t,
                                         smtpd_screen_peer(s));
                        session_free(s);
                        return;
                }
                /* GnuTLS may hold more decrypted input that the socket will not announce */
                bool more = s->client.tls_active && tls_conn_pending(s->client.tls) > 0;
                for (ssize_t i = 0; i < n; i++) {
                        char c = buf[i];
                        if (c != '\n') {
                                if (e->len >= ENGINE_LINE_MAX) {
                                        smtpd_screen_log(s, "COMMAND LENGTH LIMIT from %s after %s", smtpd_screen_peer(s),
                                                         e->last);
                                        char r[512];
                                        snprintf(r, sizeof(r), "421 4.7.0 %s Error: command too long",
                                                 s->settings->myhostname);
                                        finish(s, r);
                                        return;
                                }
                                e->line[e->len++] = c;
                                continue;
                        }
                        bool bare = e->len == 0 || e->line[e->len - 1] != '\r';
                        if (!bare)
                                e->len--;
                        e->line[e->len] = '\0';
                        e->len = 0;
                        progress = true;
                        if (bare && (e->todo & SCREEN_TEST_BARE_NEWLINE)) {
                                smtpd_screen_log(s, "BARE NEWLINE from %s after %s", smtpd_screen_peer(s), e->last);
                                if (!test_failed(s, e, SCREEN_TEST_BARE_NEWLINE, &st->bare_newline,
                                                 "521 5.5.1 Protocol error"))
                                        return;
                        }
                        if (!command(s, e, e->line, i + 1 < n || more, buf + i + 1, (size_t) (n - i - 1)))
                                return;
                        if (e->starttls) {
                                if (i + 1 < n || more)   /* sent in plaintext: never run inside TLS */
                                        smtpd_screen_log(s, "improper command pipelining after STARTTLS from %s",
                                                         smtpd_screen_peer(s));
                                session_enter_tls(s);
                                (void) session_flush(s);   /* the 220, then smtpd_tls_start(); may free */
                                return;
                        }
                }
                if (!more)
                        break;
        }
        if (progress) {
                session_enter_screen(s, st->command_time_limit_usec);   /* a whole command line per limit */
                (void) session_flush(s);   /* may free the session */
        }
}

void screen_engine_timeout(Session *s, ScreenEngine *e) {
        smtpd_screen_log(s, "COMMAND TIME LIMIT from %s after %s", smtpd_screen_peer(s), e->last);
        char r[512];
        snprintf(r, sizeof(r), "421 4.4.2 %s Error: timeout exceeded", s->settings->myhostname);
        finish(s, r);
}
