/* smtp-session-hello.c — the start of a conversation and the dispatch of replies.
 *
 * After connect: the greeting (a non-2xx greeting only means "not this server": always 4xx,
 * smtp_skip_5xx_greeting), EHLO $smtp_helo_name (HELO after a 5xx; LHLO for LMTP) and the
 * keywords of its reply (PIPELINING, SIZE, DSN, 8BITMIME, SMTPUTF8, STARTTLS, REQUIRETLS,
 * XFORWARD, AUTH); a greeting or EHLO reply naming $myhostname bounces everything as a mail
 * loop. Then STARTTLS (smtp-session-tls.c) or AUTH and the transaction. Every complete reply
 * goes to the handler of the session's state from smtp_session_handle_reply(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "smtp-session.h"

static bool names_me(const SmtpSession *s, const char *text) {
        size_t n = strcspn(text, " \t");
        const char *me = cfg(s)->myhostname;
        return n > 0 && strlen(me) == n && strncasecmp(text, me, n) == 0;
}

static void loops_back(SmtpSession *s) {
        smtp_all_result(s->d, false, "5.4.6", "mail for %s loops back to myself", s->d->nexthop);
        smtp_session_release(s, false);
        smtp_session_quit(s);
}

void smtp_session_send_hello(SmtpSession *s, const char *verb) {
        char buf[600];
        int n = snprintf(buf, sizeof(buf), "%s %s\r\n", verb, cfg(s)->helo_name);
        if (smtp_session_send_text(s, buf, (size_t) MIN(n, (int) sizeof(buf) - 1)) < 0) {
                smtp_session_failed(s, "out of memory while sending %s", verb);
                return;
        }
        smtp_session_set_timer(s, cfg(s)->helo_timeout,
                  streq(verb, "EHLO") ? "performing the EHLO handshake" :
                  streq(verb, "LHLO") ? "performing the LHLO handshake" : "performing the HELO handshake");
        if (smtp_session_flush(s) < 0)
                smtp_session_failed(s, "lost connection with %s while %s", s->relay, s->phase);
}

static void parse_ehlo(SmtpSession *s) {
        s->pipelining = s->dsn = s->eightbitmime = s->smtputf8 = s->starttls = s->xforward = false;
        s->requiretls = false;
        s->size_limit = UINT64_MAX;   /* no SIZE keyword */
        free(s->auth_mechs);
        s->auth_mechs = NULL;
        for (size_t i = 1; i < s->reply.n_lines; i++) {
                const char *k = s->reply.lines[i];
                /* "AUTH PLAIN LOGIN", or the pre-RFC "AUTH=PLAIN LOGIN" some servers add */
                if (strncasecmp(k, "AUTH", 4) == 0 && (k[4] == ' ' || k[4] == '=')) {
                        if (!s->auth_mechs)
                                s->auth_mechs = strdup(k + 5);
                        continue;
                }
                if (strcaseeq(k, "PIPELINING"))
                        s->pipelining = true;
                else if (strcaseeq(k, "DSN"))
                        s->dsn = true;
                else if (strcaseeq(k, "8BITMIME"))
                        s->eightbitmime = true;
                else if (strcaseeq(k, "STARTTLS"))
                        s->starttls = true;
                else if (strcaseeq(k, "SMTPUTF8"))
                        s->smtputf8 = true;
                else if (strcaseeq(k, "REQUIRETLS"))
                        s->requiretls = true;
                else if (strncasecmp(k, "XFORWARD", 8) == 0 && (k[8] == '\0' || k[8] == ' '))
                        s->xforward = true;
                else if (strncasecmp(k, "SIZE", 4) == 0 && (k[4] == '\0' || k[4] == ' '))
                        s->size_limit = k[4] ? strtoull(k + 5, NULL, 10) : 0;
        }
}

void smtp_session_connected(SmtpSession *s) {
        int one = 1;
        (void) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (s->wrapper) {
                smtp_session_tls_start(s);   /* SMTPS: TLS first, the greeting comes inside it */
                return;
        }
        s->state = ST_GREETING;
        smtp_session_set_timer(s, cfg(s)->helo_timeout, "receiving the initial server greeting");
}

void smtp_session_handle_reply(SmtpSession *s) {
        int cls = s->reply.code / 100;

        switch (s->state) {
        case ST_GREETING:
                if (cls != 2) {
                        /* A 5xx greeting only means "not this server" (smtp_skip_5xx_greeting). */
                        char dsn[16];
                        smtp_reply_dsn(&s->reply, dsn);
                        dsn[0] = '4';
                        if (s->d->next_target >= s->d->n_targets)
                                smtp_all_result(s->d, false, dsn, "host %s refused to talk to me: %s",
                                                s->relay, s->reply.text);
                        smtp_session_release(s, true);
                        smtp_session_quit(s);
                        return;
                }
                if (names_me(s, s->reply.first_line))
                        return loops_back(s);
                s->state = ST_EHLO;
                smtp_session_send_hello(s, s->lmtp ? "LHLO" : "EHLO");
                return;
        case ST_EHLO:
        case ST_HELO:
                if (cls != 2) {
                        if (s->state == ST_EHLO && !s->lmtp && cls == 5) {
                                s->state = ST_HELO;
                                smtp_session_send_hello(s, "HELO");
                                return;
                        }
                        /* Not a session yet (smtp_mx_session_limit): a 4xx moves on. */
                        s->d->provisional = smtp_session_more_servers(s->d);
                        smtp_session_said(s, false, s->state == ST_HELO ? "HELO command" :
                                       s->lmtp ? "LHLO command" : "EHLO command");
                        smtp_session_release(s, false);
                        smtp_session_quit(s);
                        return;
                }
                if (names_me(s, s->reply.first_line))
                        return loops_back(s);
                if (s->state == ST_EHLO)
                        parse_ehlo(s);
                else {
                        s->pipelining = s->dsn = s->eightbitmime = s->smtputf8 = s->starttls = s->xforward = false;
                        s->size_limit = UINT64_MAX;
                        free(s->auth_mechs);
                        s->auth_mechs = NULL;
                }
                if (smtp_session_tls_before_mail(s))
                        return;
                smtp_session_after_hello(s);
                return;
        case ST_STARTTLS:
                smtp_session_starttls_reply(s);
                return;
        case ST_AUTH:
                smtp_session_auth_reply(s);
                return;
        case ST_TXN:
                smtp_session_txn_reply(s);
                return;
        case ST_DOT:
                smtp_session_dot_reply(s);
                return;
        default:
                /* A reply nobody asked for: an idle connection being closed by the server (421). */
                smtp_session_free(s);
                return;
        }
}
