/* smtp-session.h — the inside of one outbound SMTP/LMTP session, shared by the files that drive
 * it (what the rest of postern-smtp calls, smtp_session_start() and friends, is in smtp.h).
 *
 *   smtp-session.c       a session's life: connecting, the cache of idle connections, the end of
 *                        a session for its delivery (next address, or the results)
 *   smtp-session-io.c    reads and writes (plain or through TLS), timers, reply lines → replies
 *   smtp-session-hello.c the greeting, EHLO/HELO/LHLO and its keywords, and which handler a reply
 *                        goes to in each state
 *   smtp-session-tls.c   STARTTLS and wrappermode, the handshake, the certificate/DANE/MTA-STS
 *                        decision after it, TLSRPT results, REQUIRETLS
 *   smtp-session-auth.c  SMTP AUTH (the SASL client exchange)
 *   smtp-session-txn.c   the mail transaction: RSET, XFORWARD, MAIL, RCPT, DATA (pipelined), the
 *                        message and its end-of-data replies */
#pragma once

#include "sasl/sasl-mech-client.h"
#include "smtp.h"
#include "tls/tls.h"


typedef enum SessionState {
        ST_CONNECT,
        ST_GREETING,
        ST_EHLO,
        ST_HELO,
        ST_STARTTLS,  /* STARTTLS sent, waiting for its 220 */
        ST_TLS,       /* TLS handshake in progress (after STARTTLS, or at connect in wrappermode) */
        ST_AUTH,      /* AUTH sent, waiting for 334 (a challenge) or the final reply */
        ST_TXN,       /* RSET/MAIL/RCPT/DATA replies */
        ST_DOT,       /* message sent, waiting for the end-of-data reply (replies for LMTP) */
        ST_IDLE,      /* in the cache */
} SessionState;

typedef enum CmdKind { CMD_RSET, CMD_XFORWARD, CMD_MAIL, CMD_RCPT, CMD_DATA } CmdKind;

typedef struct Cmd {
        CmdKind kind;
        size_t rcpt;         /* CMD_RCPT: index into d->rcpts */
        size_t start, end;   /* its bytes in SmtpSession.cmdtext */
} Cmd;

struct SmtpSession {
        Smtp *smtp;
        SmtpSession *next;           /* Smtp.idle */
        int fd;
        sd_event_source *io, *timer;
        SmtpTarget target;
        char relay[400];
        char *key;                   /* "smtp:<nexthop>" / "lmtp:<nexthop>" */
        struct TableMemo *auth_memo;  /* the AUTH-time password answers (smtp-session-auth.c) */
        bool lmtp;
        char *transport;             /* the deliveries' master.cf transport, or NULL */
        SessionState state;
        StrBuf in, out;
        SmtpReply reply;
        bool pipelining, dsn, eightbitmime, smtputf8;
        bool requiretls;             /* the server offers REQUIRETLS (RFC 8689) */
        bool xforward;               /* the server offers XFORWARD (Postfix's content filter extension) */
        uint64_t size_limit;         /* 0: none announced */
        unsigned uses;
        usec_t created;
        SmtpDelivery *d;
        bool reused;                 /* this transaction runs on a cached connection */
        const char *phase;           /* for "timed out while ..." / "lost connection ... while" */
        /* the current transaction */
        StrBuf cmdtext;
        Cmd *cmds;
        size_t n_cmds, sent, replied;
        bool mail_ok, rset_ok;
        size_t *accepted;            /* rcpt indexes in RCPT order (LMTP replies come in it) */
        size_t n_accepted, dot_replies;
        bool *alive;                 /* set to false when freed (reply handlers may free it) */
        /* TLS */
        SmtpTlsLevel level;          /* the delivery's policy, or none after a failed "may" handshake */
        bool wrapper;                /* smtp_tls_wrappermode: TLS from connect */
        bool starttls;               /* the last EHLO reply offered STARTTLS */
        TlsConn *tls;
        bool tls_up;                 /* handshake completed */
        int sts;                     /* MTA-STS mode applied to this address (STS_MODE_*) */
        TlsTrust trust;
        bool tlsrpt_done;            /* this session's TLSRPT result is counted (smtp-tlsrpt.c) */
        size_t target_index;         /* in d->targets, for the plaintext retry */
        /* SMTP AUTH */
        char *auth_mechs;            /* the mechanisms of the last EHLO's AUTH keyword, or NULL */
        SaslMechClient *sasl;        /* the exchange in progress */
        bool authenticated;
};

/* The settings of the session's side (smtp_* or lmtp_*). */
static inline SmtpSettings *cfg(const SmtpSession *s) {
        return smtp_settings(s->smtp, s->lmtp, s->transport);
}

/* The next hop as TLS policy, names and SNI see it: an LMTP "inet:host:port" without "inet:". */
static inline const char *tls_nexthop(const SmtpDelivery *d) {
        const char *p = d->lmtp ? startswith(d->nexthop, "inet:") : NULL;
        return p ? p : d->nexthop;
}

/* smtp-session.c */
void smtp_session_free(SmtpSession *s);
/* QUIT (without waiting for the 221) and free. */
void smtp_session_quit(SmtpSession *s);
/* The reply in s->reply is the result of every recipient without one (accepted_only: those
 * accepted): "host X said: ... (in reply to <in_reply_to>)". */
void smtp_session_said(SmtpSession *s, bool accepted_only, const char *in_reply_to);
/* Whether another address may still be tried for d: one is left, and fewer than
 * smtp_mx_session_limit transactions were started. */
bool smtp_session_more_servers(const SmtpDelivery *d);
/* The session is over for its delivery: finish it (when every recipient has a result) or move
 * on to the next address (try_next: also when nothing soft was recorded). */
void smtp_session_release(SmtpSession *s, bool try_next);
/* The connection broke (timeout, lost, protocol error): defer what has no result, or retry a
 * reused connection once on a fresh one. Frees s. */
void smtp_session_failed(SmtpSession *s, const char *fmt, ...) _printf_(2, 3);
/* Whether the connection may carry another transaction (reuse count and time limits). */
bool smtp_session_reuse_allowed(const SmtpSession *s);

/* smtp-session-io.c */
/* Arms the session's timer; phase names what is going on for "timed out while ...". */
void smtp_session_set_timer(SmtpSession *s, usec_t timeout, const char *phase);
void smtp_session_update_events(SmtpSession *s);
/* Writes what s->out holds (what the socket takes now); <0 when the connection is lost. */
int smtp_session_flush(SmtpSession *s);
/* Queues bytes in s->out (smtp_session_flush() sends them). */
int smtp_session_send_text(SmtpSession *s, const char *p, size_t n);
/* Reads what there is and handles complete replies; false when s was freed. */
bool smtp_session_on_readable(SmtpSession *s);
/* The socket's event handler (connect, TLS handshake, reads and writes). */
int smtp_session_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata);

/* smtp-session-hello.c */
/* The connection is up: the greeting (or, in wrappermode, the TLS handshake first). */
void smtp_session_connected(SmtpSession *s);
/* Sends "<verb> <helo name>" (EHLO, HELO, LHLO). */
void smtp_session_send_hello(SmtpSession *s, const char *verb);
/* A complete reply in s->reply, to the handler of the session's state (may free s). */
void smtp_session_handle_reply(SmtpSession *s);

/* smtp-session-tls.c */
/* RFC 8689 4.2: what keeps this session from carrying a REQUIRETLS message, or NULL. */
const char *smtp_session_requiretls_unmet(SmtpSession *s);
/* This address cannot be used (TLS missing, failed or not verified; REQUIRETLS unmet): the result
 * when it was the last one, else on to the next address. */
void smtp_session_tls_failed(SmtpSession *s, const char *dsn, const char *fmt, ...) _printf_(3, 4);
/* "<Trust> TLS connection <how> to ...". */
void smtp_session_log_tls(SmtpSession *s, const char *how);
/* The handshake failed or timed out. */
void smtp_session_tls_handshake_failed(SmtpSession *s, const char *why);
/* Starts the TLS handshake on the connection (after STARTTLS's 220, or at connect). */
void smtp_session_tls_start(SmtpSession *s);
/* One handshake step (the session may be freed). */
void smtp_session_tls_step(SmtpSession *s);
/* After EHLO/HELO: STARTTLS when the policy wants TLS. True when it took the session over. */
bool smtp_session_tls_before_mail(SmtpSession *s);
/* The reply to STARTTLS. */
void smtp_session_starttls_reply(SmtpSession *s);

/* smtp-session-auth.c */
/* After the EHLO/HELO that counts (and STARTTLS, if any): AUTH, then the transaction. */
void smtp_session_after_hello(SmtpSession *s);
/* A reply during AUTH (334 challenge or the final one). */
void smtp_session_auth_reply(SmtpSession *s);

/* smtp-session-txn.c */
/* Starts a transaction for s->d on s: RSET (reused), XFORWARD, MAIL, RCPT..., DATA. */
void smtp_session_transaction_start(SmtpSession *s);
/* A reply to the next command of the transaction. */
void smtp_session_txn_reply(SmtpSession *s);
/* A reply after the message (one per accepted recipient for LMTP). */
void smtp_session_dot_reply(SmtpSession *s);
