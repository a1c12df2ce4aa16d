/* smtpd.h — postern-smtpd's internal interface, shared by its files:
 *
 *   smtpd.c              main(): listeners, accept loop, per-listener settings, SIGHUP reload
 *   smtpd-session.c      one client connection: buffers, reading, replying, timeouts, closing
 *   smtpd-command.c      the SMTP command state machine (EHLO ... QUIT) and the fingerprint
 *   smtpd-restrictions.c mynetworks, relay control and the local recipient check at RCPT
 *   smtpd-data.c         the DATA phase: end-of-data rule, dot-unstuffing, headers, Received:
 *   smtpd-commit.c       group commit: a writer thread that owns its own Queue handle
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
#include "daemon/daemon.h"
#include "mail/queue-id.h"

typedef enum ListenerKind {
        LISTENER_SMTP,        /* port 25: relay restrictions apply */
        LISTENER_SUBMISSION,  /* port 587: same code, its own listener overrides */
        LISTENER_SUBMIT,      /* AF_UNIX from sendmail: uid from SO_PEERCRED, no restrictions */
} ListenerKind;

/* One mynetworks entry: an address family, network bytes and a prefix length. */
typedef struct NetEntry {
        int family;
        uint8_t addr[16];
        unsigned prefix;
        bool negate;
} NetEntry;

enum { BARE_NEWLINE_NORMALIZE, BARE_NEWLINE_YES };

/* The per-listener configuration snapshot; sessions keep a reference so a reload affects only
 * new sessions. */
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
        char **client_restrictions;
        char **helo_restrictions;
        char **sender_restrictions;
        char **relay_restrictions;
        char **recipient_restrictions;
        NetEntry *mynetworks;
        size_t n_mynetworks;
        DomainList mydestination;
        DomainList relay_domains;
        TableList *local_recipient_maps;   /* NULL: check disabled */
        int local_recipient_maps_error;    /* <0: the tables failed to open */
} SmtpdSettings;

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s);
SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(SmtpdSettings *, smtpd_settings_unref);
/* Builds the settings of one listener from a configuration (logs its own errors). */
int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret);

typedef struct Server Server;
typedef struct Session Session;
typedef struct CommitJob CommitJob;
typedef struct Committer Committer;

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
        PHASE_CLOSING,   /* flush output, then close */
} SessionPhase;

/* The DATA phase state (allocated at DATA, freed at its end). */
typedef struct DataState {
        StrBuf content;          /* LF form, starting with our Received: header */
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
        char *message_id;
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

        StrBuf in, out;
        bool skip_line;          /* discarding the rest of an overlong command line */
        bool want_write;         /* output pending: EPOLLOUT armed, input paused */
        bool output_full;        /* processing stopped at the output high-water mark */

        char *helo;
        bool esmtp;
        bool in_mail;
        char *sender;
        char *body_type;
        char **rcpts;
        size_t n_rcpts;
        size_t rcpt_attempts;    /* RCPT commands in this transaction */
        char queue_id[QUEUE_ID_MAX];
        DataState *data;
        CommitJob *job;          /* while PHASE_COMMIT */

        unsigned error_count;
        unsigned junk_count;
        unsigned cmd_ok[_CMD_MAX], cmd_total[_CMD_MAX];
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

/* smtpd-command.c */
void command_execute(Session *s, char *line, size_t len);
void command_reset_transaction(Session *s);
void command_log_disconnect(Session *s);

/* smtpd-restrictions.c */
int smtpd_parse_mynetworks(char **list, NetEntry **ret, size_t *ret_n);
bool smtpd_client_in_mynetworks(Session *s);
/* Checks one recipient; returns 0 when accepted, or sets *ret_reply (allocated) and returns 1. */
int smtpd_check_recipient(Session *s, const char *local, const char *domain, const char *external,
                          char **ret_reply);
/* VRFY: 1 known, 0 unknown, <0 lookup error. */
int smtpd_local_user_known(Session *s, const char *local);
bool smtpd_domain_is_local(Session *s, const char *domain, int *ret_error);

/* smtpd-data.c */
int data_begin(Session *s);
/* Consumes DATA bytes from s->in; returns when more input is needed or the message ended. */
void data_process(Session *s);
void data_state_free(DataState *d);

/* smtpd-commit.c */
struct CommitJob {
        CommitJob *next;
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
/* Hands a job to the writer thread (takes ownership). */
void committer_submit(Committer *c, CommitJob *job);
void commit_job_free(CommitJob *j);
