/* smtpd.h — postern-smtpd's internal interface, shared by its files:
 *
 *   smtpd.c              main(): listeners, accept loop, per-listener settings, SIGHUP reload
 *   smtpd-session.c      one client connection: buffers, reading, replying, timeouts, closing
 *   smtpd-command.c      the SMTP command state machine (EHLO ... QUIT) and the fingerprint
 *   smtpd-restrictions.c mynetworks, relay control and the local recipient check at RCPT
 *   smtpd-data.c         the DATA phase: end-of-data rule, dot-unstuffing, headers, Received:
 *   smtpd-commit.c       group commit: a writer thread that owns its own Queue handle
 *   smtpd-anvil.c        client connection/rate limits through postern-anvil
 *   smtpd-cleanup.c      header/body checks, dropped headers, hop count (the cleanup step)
 *
 * Everything except the commit worker runs in the one sd-event loop thread. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"
#include "basic/strbuf.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "mail/domain-list.h"
#include "mail/header-checks.h"
#include "daemon/daemon.h"
#include "mail/queue-id.h"

typedef enum ListenerKind {
        LISTENER_SMTP,        /* port 25: relay restrictions apply */
        LISTENER_SUBMISSION,  /* port 587: same code, its own listener overrides */
        LISTENER_SUBMIT,      /* AF_UNIX from sendmail: uid from SO_PEERCRED, no restrictions */
} ListenerKind;

/* One entry of an address list (mynetworks, smtpd_forbid_bare_newline_exclusions): a network
 * (family, bytes, prefix length) or a lookup table keyed by the client address, maybe negated. */
typedef struct NetEntry {
        int family;
        uint8_t addr[16];
        unsigned prefix;
        bool negate;
        Table *table;            /* "type:name" entries; NULL for networks */
} NetEntry;

typedef struct NetList {
        NetEntry *v;
        size_t n;
} NetList;

/* smtpd_forbid_bare_newline: "no" is accepted for Postfix compatibility and behaves like
 * normalize (CRLF.CRLF stays the only end of DATA in every mode). */
enum { BARE_NEWLINE_NORMALIZE, BARE_NEWLINE_YES };

/* Restriction elements, compiled from their names when the settings are built. */
typedef enum Restriction {
        RESTRICT_PERMIT_MYNETWORKS,
        RESTRICT_PERMIT_SASL_AUTHENTICATED,
        RESTRICT_REJECT_UNAUTH_DESTINATION,
        RESTRICT_DEFER_UNAUTH_DESTINATION,
        RESTRICT_REJECT_UNLISTED_RECIPIENT,
        RESTRICT_PERMIT,
        RESTRICT_REJECT,
        RESTRICT_DEFER,
} Restriction;

typedef struct RestrictionList {
        Restriction *v;
        size_t n;
} RestrictionList;

/* smtpd_client_*_limit (0 = off) and smtpd_client_event_limit_exceptions (smtpd-anvil.c). */
typedef struct SmtpdAnvilLimits {
        unsigned connection_count;
        unsigned connection_rate;
        unsigned message_rate;
        unsigned recipient_rate;
        unsigned newtls_rate;
        unsigned auth_rate;
        NetList exceptions;
} SmtpdAnvilLimits;

/* A configuration snapshot, shared by all listeners without overrides in main.cf; sessions
 * keep a reference so a reload affects only new sessions. */
typedef struct SmtpdSettings {
        unsigned n_ref;
        char *listener;       /* "smtp", "submission", "submit" */
        char *myhostname;
        char *myorigin;
        char *banner;
        uint64_t message_size_limit;   /* 0 = unlimited */
        uint64_t header_size_limit;
        size_t line_length_limit;
        unsigned recipient_limit;
        unsigned hard_error_limit;
        unsigned junk_command_limit;
        usec_t timeout_usec;
        bool disable_vrfy;
        bool helo_required;
        bool reject_unlisted_recipient;
        int bare_newline;
        int unknown_local_code;
        char *recipient_delimiter;
        RestrictionList client_restrictions;
        RestrictionList helo_restrictions;
        RestrictionList sender_restrictions;
        RestrictionList relay_restrictions;
        RestrictionList recipient_restrictions;
        bool can_refuse_relay;             /* relay or recipient list holds a refusing element */
        NetList mynetworks;
        NetList bare_newline_exclusions;   /* clients that get normalize instead of "yes" */
        DomainList mydestination;
        DomainList relay_domains;
        TableList *local_recipient_maps;   /* NULL: check disabled */
        int local_recipient_maps_error;    /* <0: the tables failed to open */
        SmtpdAnvilLimits anvil;
        /* content checks (smtpd-cleanup.c) */
        HeaderChecks *header_checks;       /* NULL: none */
        HeaderChecks *body_checks;
        uint64_t body_checks_size_limit;
        char **drop_headers;               /* message_drop_headers */
        unsigned hopcount_limit;
        bool always_add_missing_headers;
        char *undisclosed_recipients_header;
} SmtpdSettings;

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s);
SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(SmtpdSettings *, smtpd_settings_unref);
/* Builds the settings of one listener (NULL: the main.cf values without listener overrides)
 * from a configuration; logs its own errors, naming parameter and offending entry. */
int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret);
/* Builds the settings of every listener, sharing one snapshot among listeners without
 * overrides in main.cf. ret[i] belongs to names[i]; all or nothing. */
int smtpd_settings_build(Conf *c, char *const *names, size_t n, SmtpdSettings **ret);

typedef struct Server Server;
typedef struct Session Session;
typedef struct CommitJob CommitJob;
typedef struct Committer Committer;
typedef struct SmtpdAnvil SmtpdAnvil;

typedef struct Listener {
        Server *server;
        ListenerKind kind;
        char *name;
        int fd;
        sd_event_source *io;
        sd_event_source *retry;      /* re-enables accepting after EMFILE */
        SmtpdSettings *settings;
} Listener;

struct Server {
        Daemon *daemon;
        sd_event *event;
        Listener *listeners;
        size_t n_listeners;
        Committer *committer;
        Session *sessions;           /* all live sessions, freed at shutdown */
        size_t n_sessions;
        uint64_t n_queued;           /* messages committed since start */
        sd_event_source *status_timer;
        uint64_t data_budget;        /* bytes of message content all sessions may buffer */
        uint64_t data_in_use;        /* bytes buffered now: DATA in progress + awaiting commit */
        bool stopping;               /* SIGTERM: answer commits, read no further input */
        SmtpdAnvil *anvil;           /* the connection to postern-anvil (smtpd-anvil.c) */
};

/* The fingerprint counters, in Postfix's logging order. */
typedef enum SmtpCmd {
        CMD_HELO, CMD_EHLO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT, CMD_BDAT, CMD_DATA,
        CMD_RSET, CMD_NOOP, CMD_VRFY, CMD_ETRN, CMD_HELP, CMD_QUIT, CMD_UNKNOWN, _CMD_MAX,
} SmtpCmd;

typedef enum SessionPhase {
        PHASE_COMMAND,
        PHASE_DATA,
        PHASE_COMMIT,    /* message handed to the committer; input paused until it answers */
        PHASE_WAIT,      /* waiting for an asynchronous answer (DNS, policy, anvil, SASL, ...):
                          * input paused until session_wait_done(); see session_wait() */
        PHASE_CLOSING,   /* flush output, then close */
} SessionPhase;

/* What access(5) restrictions and header/body checks decided for the message of the current
 * transaction, applied when it is committed (smtpd-commit.c) and reset with the transaction.
 * Restrictions (smtpd-restrictions.c) and content checks (smtpd-data.c) only set fields here. */
typedef struct MessageActions {
        char *hold;              /* HOLD [text]: queued on hold; the text ("" if none) is logged */
        char *discard;           /* DISCARD [text]: answered 250 as if queued, nothing queued */
        char *redirect;          /* REDIRECT addr: the message goes to addr instead of all rcpts */
        char *filter;            /* FILTER transport:destination: content_filter for this message */
        char **bcc;              /* BCC addr: extra recipients (NULL-terminated, may be NULL) */
        StrBuf prepend;          /* PREPEND header lines, each ending in "\n", put at the top */
} MessageActions;
void message_actions_reset(MessageActions *a);

/* The DATA phase state (allocated at DATA, freed at its end). */
typedef struct DataState {
        Server *server;          /* whose data budget the content is charged to */
        StrBuf content;          /* LF form, starting with our Received: header */
        size_t charged;          /* bytes of the budget this content holds (its allocation) */
        uint64_t bytes;          /* message bytes received (without our headers) */
        size_t hdr_end;          /* offset in content where the header section ends */
        size_t header_bytes;
        bool in_headers;
        bool seen_header;        /* at least one header line so far */
        bool blank_after_headers;
        bool has_from, has_date, has_message_id;
        bool prev_crlf;          /* the previous line ended in CRLF */
        bool mid_line;           /* a long line was split; the next bytes continue it */
        bool too_big;
        bool no_storage;         /* the data budget ran out: content dropped, answer 452 4.3.1 */
        char *message_id;
        /* content checks (smtpd-cleanup.c) */
        size_t hdr_start;        /* content offset of the logical header being collected */
        bool hdr_pending;        /* content[hdr_start..] is a header not checked yet */
        size_t rcvd_end;         /* end of our Received: header (MessageActions.prepend goes here) */
        bool has_to;             /* a To:, Cc: or Bcc: header was seen */
        unsigned hops;           /* Received: headers, ours included */
        bool hops_exceeded;
        uint64_t body_bytes;     /* body bytes seen by body_checks */
        char *reject;            /* "550 5.7.1 text" from a REJECT action: refused at end of data */
} DataState;

struct Session {
        Session *prev, *next;
        Server *server;
        Listener *listener;
        SmtpdSettings *settings;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        SessionPhase phase;

        char addr[64];           /* "127.0.0.2", or "" for a local submission */
        char name[64];           /* "localhost", "unknown", or "local" */
        char id_text[136];       /* "name[addr]" for logs; "local uid=1000" for submit */
        int family;
        uint8_t addr_bytes[16];
        uid_t uid;               /* submit only */
        int bare_newline;        /* smtpd_forbid_bare_newline after its exclusions */

        StrBuf in, out;
        bool skip_line;          /* discarding the rest of an overlong command line */
        bool want_write;         /* output pending: EPOLLOUT armed, input paused */
        bool output_full;        /* processing stopped at the output high-water mark */

        char *helo;
        char *sasl_username;     /* set by a successful AUTH (smtpd-auth.c), else NULL */
        char *sasl_method;
        bool esmtp;
        bool in_mail;
        char *sender;
        char *body_type;
        char **rcpts;
        size_t n_rcpts;
        size_t rcpt_attempts;    /* RCPT commands in this transaction */
        char queue_id[QUEUE_ID_MAX];
        DataState *data;
        MessageActions actions;  /* this transaction's access/content-check decisions */
        CommitJob *job;          /* while PHASE_COMMIT */
        SessionPhase wait_prev;  /* while PHASE_WAIT: the phase to return to */
        void (*wait_cancel)(void *userdata);   /* while PHASE_WAIT: called if the session ends */
        void *wait_userdata;

        unsigned error_count;
        unsigned junk_count;
        unsigned cmd_ok[_CMD_MAX], cmd_total[_CMD_MAX];
        unsigned anvil_generation; /* anvil connection that counted this session (0: none) */
        const char *last_cmd;    /* for "timeout after X" */
        int last_code;
};

/* smtpd-session.c */
int session_new(Listener *l, int fd);
void session_free(Session *s);
/* Appends one reply line ("250 2.0.0 Ok"); counts 4xx/5xx replies as errors. */
void session_reply(Session *s, const char *fmt, ...) _printf_(2, 3);
/* Appends raw text (multi-line replies) without error accounting. */
void session_reply_raw(Session *s, const char *text);
/* Writes what is buffered and re-arms the event source; may free the session (returns false). */
bool session_flush(Session *s);
/* Ends the session after the output drained. */
void session_close_after_flush(Session *s);
/* Resumes input processing after a commit finished (called from the commit completion). */
void session_resume(Session *s);
/* Processes buffered input until it runs out or the session pauses. */
void session_process_input(Session *s);
/* Asynchronous work inside a command (a DNS lookup, a policy or anvil query, a SASL step):
 * the command handler starts the operation, calls session_wait() and returns without a reply.
 * Input stays paused (pipelined commands wait in the buffer) and the idle timer does not run.
 * The operation's completion callback appends the reply and calls session_wait_done(), which
 * returns to the previous phase and goes on with buffered input. If the session ends first
 * (client gone, shutdown), cancel(userdata) is called once so the operation drops its pointer to
 * the session; the completion callback must then not run for it. Only one wait at a time. */
void session_wait(Session *s, void (*cancel)(void *userdata), void *userdata);
void session_wait_done(Session *s);

/* smtpd-command.c */
void command_execute(Session *s, char *line, size_t len);
void command_reset_transaction(Session *s);
void command_log_disconnect(Session *s);

/* smtpd-restrictions.c */
/* Parses an address list; any entry it cannot honour is an error (logged with param). */
int smtpd_netlist_parse(const char *param, char **list, NetList *ret);
void smtpd_netlist_done(NetList *l);
/* 1 when the session's client matches the list, 0 when not, <0 on a table lookup error. */
int smtpd_netlist_match(const NetList *l, Session *s);
/* Compiles restriction names; an unknown name is an error (logged with param and word). */
int smtpd_restrictions_compile(const char *param, char **names, RestrictionList *ret);
bool smtpd_restrictions_can_refuse(const RestrictionList *l);
/* Checks one recipient; returns 0 when accepted, or sets *ret_reply (allocated) and returns 1. */
int smtpd_check_recipient(Session *s, const char *local, const char *domain, const char *external,
                          char **ret_reply);
/* VRFY: 1 known, 0 unknown, <0 lookup error. */
int smtpd_local_user_known(Session *s, const char *local);
bool smtpd_domain_is_local(Session *s, const char *domain, int *ret_error);

/* Asynchronous restriction elements (DNSBL/RHSBL lookups, unknown-domain and client-name
 * checks, policy delegation). The restriction engine (smtpd-restrictions.c) starts one with
 * the element's argument and the address being checked, calls session_wait(), and continues
 * the restriction list when done() is called. done() gets the element's result as an access(5)
 * action text — NULL or "DUNNO" to go on, else e.g. "OK", "REJECT text", "DEFER text",
 * "DEFER_IF_PERMIT text", "450 4.7.1 text", "554 5.7.1 text", "PREPEND hdr: v", "HOLD text" —
 * which the engine applies exactly as if check_*_access had found it in a table. done() is
 * never called from inside the start function (results known at once are delivered from a
 * deferred event). smtpd_check_cancel() stops an operation whose session went away; done() is
 * then not called. An operation bounds its own time (DNS, policy timeouts). */
typedef struct SmtpdCheck SmtpdCheck;
typedef void (*SmtpdCheckDone)(Session *s, const char *action, void *userdata);
/* smtpd-dnsbl.c. what: "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender",
 * "reject_rhsbl_helo", "reject_rhsbl_recipient", "reject_rhsbl_reverse_client",
 * "permit_dnswl_client", "reject_unknown_sender_domain", "reject_unknown_recipient_domain",
 * "reject_unknown_helo_hostname", "reject_unknown_client_hostname",
 * "reject_unknown_reverse_client_hostname"; arg: the element's argument ("zone[=d.d.d.d]" for
 * the DNS lists, NULL otherwise); subject: the address or name checked (sender, recipient,
 * HELO name; NULL for client checks, which use the session). */
int smtpd_check_dns_start(Session *s, const char *what, const char *arg, const char *subject,
                          SmtpdCheckDone done, void *userdata, SmtpdCheck **ret);
/* smtpd-policy.c: check_policy_service SERVICE (unix:path, inet:host:port or a path), with the
 * protocol state ("RCPT", "DATA", "END-OF-MESSAGE", ...) and the sender/recipient in question. */
int smtpd_check_policy_start(Session *s, const char *service, const char *protocol_state,
                             const char *sender, const char *recipient,
                             SmtpdCheckDone done, void *userdata, SmtpdCheck **ret);
void smtpd_check_cancel(SmtpdCheck *op);

/* smtpd-anvil.c: client limits through postern-anvil (one shared connection, see the file).
 * Each smtpd_anvil_<event>() reports an event of the session's client; it returns true when the
 * session now waits for anvil's answer (session_wait() was called): done(s, allowed, userdata)
 * then runs later, followed by session_wait_done(). When allowed is false the refusal has been
 * replied and logged in Postfix's words (and for connect/newtls the session is closing); when
 * true the caller goes on. false means no wait (exempt client, limit off, anvil unavailable):
 * the caller goes on at once and done is not called. If the session ends while waiting,
 * free_userdata(userdata) is called instead of done (either may be NULL). */
typedef void (*SmtpdAnvilDone)(Session *s, bool allowed, void *userdata);
int smtpd_anvil_settings(Conf *c, const char *listener, SmtpdAnvilLimits *ret);
void smtpd_anvil_settings_done(SmtpdAnvilLimits *l);
int smtpd_anvil_new(Server *srv, const char *path, SmtpdAnvil **ret);
SmtpdAnvil *smtpd_anvil_free(SmtpdAnvil *a);
void smtpd_anvil_set_path(SmtpdAnvil *a, const char *path);
/* Session start: connection count and rate (421 4.7.0 ... too many connections). */
bool smtpd_anvil_connect(Session *s, SmtpdAnvilDone done, void *userdata);
/* Session end: no answer awaited. */
void smtpd_anvil_disconnect(Session *s);
/* MAIL: 450 4.7.1 Error: too much mail from ADDR. */
bool smtpd_anvil_message(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *));
/* RCPT: 452 4.7.1 Error: too many recipients from ADDR. */
bool smtpd_anvil_recipient(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *));
/* After a new (not resumed) TLS handshake: 421 4.7.0 ... too many new TLS sessions (closes). */
bool smtpd_anvil_newtls(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *));
/* STARTTLS, before the handshake (nothing counted): 454 4.7.0 Error: too many new TLS sessions
 * from ADDR when the client already reached the limit; the session goes on without TLS. */
bool smtpd_anvil_newtls_status(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *));
/* AUTH: 450 4.7.1 Error: too many AUTH commands from ADDR. */
bool smtpd_anvil_auth(Session *s, SmtpdAnvilDone done, void *userdata, void (*free_userdata)(void *));

/* smtpd-data.c */
/* The data budget: $POSTERN_SMTPD_DATA_BUDGET (tests only), else min(1 GiB, half of the
 * cgroup's memory.max), else 1 GiB. */
uint64_t data_budget_default(const char **ret_source);
int data_begin(Session *s);
/* Consumes DATA bytes from s->in; returns when more input is needed or the message ended. */
void data_process(Session *s);
void data_state_free(DataState *d);

/* Appends content bytes within the data budget (used by the content checks). */
void data_content_add(Session *s, const void *p, size_t n);

/* smtpd-cleanup.c: the content checks, called from the content path of smtpd-data.c. */
int smtpd_cleanup_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_cleanup_settings_done(SmtpdSettings *s);
/* A logical header starts at the current end of the content. */
void cleanup_header_begin(Session *s);
/* The header that began last is complete: hop count, header_checks, message_drop_headers. */
void cleanup_header_end(Session *s);
/* One complete body line: true when the caller stores it, false when it was stored (or
 * dropped) by body_checks. */
bool cleanup_body_line(Session *s, const char *p, size_t n);
/* Appends undisclosed_recipients_header when no To:/Cc:/Bcc: was seen. */
int cleanup_missing_to(Session *s, StrBuf *add);
/* At end of data: true when header/body checks or the hop count refused the message (the
 * reply is queued; the caller resets the transaction). */
bool cleanup_end_of_data(Session *s);

/* smtpd-commit.c */
/* Applies s->actions to the job built from s's message: hold, filter, redirect (replaces all
 * recipients), bcc (adds recipients, NOTIFY=NEVER), prepend (after our Received:). Returns 1
 * when the message is to be discarded (answered 250, not queued), 0, or -ENOMEM. */
int commit_apply_actions(Session *s, CommitJob *j);
struct CommitJob {
        CommitJob *next;
        Server *server;
        size_t charged;          /* data budget bytes held by content, released when freed */
        Session *session;        /* NULL once the client went away */
        char queue_id[QUEUE_ID_MAX];
        void *message;           /* QueueMessage */
        void *rcpts;             /* QueueRecipient[] */
        size_t n_rcpts;
        char *content;
        size_t content_len;
        int result;
};
int committer_new(Server *srv, const char *queue_dir, const char *wakeup_path, Committer **ret);
Committer *committer_free(Committer *c);
void committer_set_wakeup_path(Committer *c, const char *path);
/* Shutdown: lets the writer thread finish every job it has, then answers their sessions
 * (replies are only queued in their output buffers) and stops the thread. */
void committer_drain(Committer *c);
/* Hands a job to the writer thread (takes ownership). */
void committer_submit(Committer *c, CommitJob *job);
void commit_job_free(CommitJob *j);
