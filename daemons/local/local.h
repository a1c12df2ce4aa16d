/* local.h — internal interfaces of postern-local, the local delivery agent.
 *
 * The parent process (local.c) serves request=deliver on the "local" IPC socket (and on the
 * "virtual" one, as Postfix's virtual(8): recipients resolved by local-virtual.c into one
 * mailbox target each, then delivered like local ones), loads the
 * message from the queue, resolves every recipient into delivery targets (local-alias.c),
 * forwards remote alias members through a new queue message (local-forward.c) and forks one
 * child per mailbox target, per batch of mbox targets for one mailbox (one such child per mbox at
 * a time), or per batch of Maildir targets of any requests and users (local-child.c). The child
 * takes the per-recipient delivery marker locks, switches to the recipient user (to each in
 * turn, for a Maildir batch) and writes the mailbox (local-mbox.c, local-maildir.c); its results
 * come back through a pipe, one line per target. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "mail/domain-list.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "queue/queue.h"
#include "local-pipe.h"

#define LOCAL_DSN_MAX 16
#define LOCAL_DIAG_MAX 512
#define LOCAL_MAX_TARGETS 1000   /* per recipient, after alias expansion */
#define LOCAL_MAX_DEPTH 20       /* nested alias levels */
/* At most this many deliveries to one mbox are made by one child, under one lock, with one fsync. */
#define LOCAL_BATCH_MAX 64
/* At most this many Maildir deliveries, of any requests and users, are made by one child. */
#define LOCAL_MAILDIR_SHARE_MAX 64
#define LOCAL_MAILDIR_SHARE_MIN 8   /* ... but spread over one child per CPU down to this many */
_Static_assert(LOCAL_MAILDIR_SHARE_MAX <= LOCAL_BATCH_MAX, "a shared child is a batch");
/* A child writing the Maildirs of several users that runs longer than this (or daemon_timeout,
 * if shorter) is killed and its deliveries go on one user per child: one user's mailbox that hangs
 * (a dead NFS server, a FUSE mount in a home directory) delays the others by this much, not by
 * daemon_timeout. A healthy shared child needs well under a second; a slow one that is split
 * only redoes, per user, what it had not yet recorded in its markers. */
#define LOCAL_SHARED_CHILD_TIMEOUT_SEC 10

/* Lock methods of mailbox_delivery_lock. */
enum {
        LOCAL_LOCK_FCNTL = 1 << 0,
        LOCAL_LOCK_DOTLOCK = 1 << 1,
        LOCAL_LOCK_FLOCK = 1 << 2,
};

/* Settings derived from main.cf; rebuilt on reload. */
typedef struct LocalSettings {
        char *queue_directory;
        char *mail_spool_directory;
        char *home_mailbox;
        char *recipient_delimiter;
        char *myhostname;
        char *myorigin;
        DomainList mydestination;
        char *default_privs;
        char **allow_mail_to_commands;
        char **allow_mail_to_files;
        unsigned lock_methods;
        long long mailbox_size_limit;
        long long lock_attempts;
        long long lock_delay;         /* seconds */
        long long stale_lock_time;    /* seconds */
        long long command_time_limit; /* seconds */
        long long daemon_timeout;     /* seconds: a delivery child is killed after this */
        TableList *aliases;           /* NULL when alias_maps is empty */
        /* passing users to another transport (local-pass.c) */
        char *mailbox_transport;
        char *fallback_transport;
        TableList *mailbox_transport_maps;    /* NULL when empty */
        TableList *fallback_transport_maps;   /* NULL when empty */
        /* mailbox_command (local-mboxcmd.c) and the commands' environment (local-command.c) */
        char *mailbox_command;        /* raw text: never $name-expanded */
        TableList *mailbox_command_maps;   /* NULL when empty */
        char *local_command_shell;
        char *command_expansion_filter;
        bool biff;
        bool enable_original_recipient;
        char *forward_path;           /* unexpanded ($home, $user ...: local-expand.c) */
        char *forward_expansion_filter;
        char *luser_relay;            /* unexpanded */
        bool owner_request_special;
        bool expand_owner_alias;
        /* virtual(8) deliveries (local-virtual.c) */
        char *virtual_mailbox_base;
        TableList *virtual_mailbox_maps;   /* NULL when empty: every virtual recipient is unknown */
        TableList *virtual_uid_maps;
        TableList *virtual_gid_maps;
        long long virtual_minimum_uid;
        long long virtual_mailbox_limit;
        unsigned virtual_lock_methods;
        /* pipe(8) transports of $config_directory/master.cf (local-pipe.c) */
        PipeTransport *pipes;
        size_t n_pipes;
} LocalSettings;

/* Reads the settings (and opens alias_maps); defaults are the parameter registry's. */
int local_settings_load(Conf *c, LocalSettings *ret);
/* Frees what local_settings_load() allocated. */
void local_settings_done(LocalSettings *s);

typedef enum TargetKind {
        TARGET_RESULT,    /* resolved to a final answer without delivery (bounce, defer) */
        TARGET_MBOX,      /* mbox file (spool or home) */
        TARGET_MAILDIR,   /* Maildir/ in the home directory */
        TARGET_FORWARD,   /* remote address: re-queued */
        TARGET_COMMAND,   /* "|command" alias destination, run as default_privs */
        TARGET_FILE,      /* "/file" (mbox style) or "/dir/" (Maildir) alias destination */
        TARGET_PIPE,      /* a recipient of a pipe(8) transport (path "pipe:<transport>") */
        TARGET_PASS,      /* mailbox_transport & co: re-queued for the route in via (local-pass.c) */
} TargetKind;

/* One place a recipient's copy goes to, with its own outcome. */
typedef struct Target {
        TargetKind kind;
        char *address;        /* address at this level, logged as to= and used for Delivered-To */
        char *path;           /* mailbox file, Maildir directory (with trailing '/'), "|command" */
        char *user;
        uid_t uid;
        gid_t gid;
        char *home;
        char *shell;          /* mailbox_command: the recipient's login shell (SHELL=) */
        bool spool;           /* TARGET_MBOX in mail_spool_directory (root may create it there) */
        bool virtual;         /* a virtual(8) mailbox: uid/gid from virtual_uid/gid_maps, no user
                               * name (groups: gid alone), virtual_mailbox_limit and _lock, missing
                               * directories created as the owner */
        bool mailbox_command; /* TARGET_COMMAND: a user's mailbox_command(_maps), run as the user */
        char *sender;         /* TARGET_FORWARD, TARGET_PASS: envelope sender of the queued copy */
        char *via;            /* TARGET_FORWARD: the local address whose alias expanded to it;
                               * TARGET_PASS: the route "transport:nexthop" */
        bool copied;          /* TARGET_FORWARD, TARGET_PASS: queued by this attempt (marker due) */
        const PipeTransport *pipe;   /* TARGET_PIPE: its transport (in the settings) */
        /* outcome */
        bool done;
        char dsn[LOCAL_DSN_MAX];
        char *diag;
        /* child bookkeeping (parent side); a child delivering several targets (a batch into one
         * mailbox) is tracked by the first of them, which holds the batch in group */
        struct Target **group;
        size_t n_group;
        struct Target *mbox_next;           /* in postern-local's running or waiting mbox children */
        pid_t pid;
        int result_fd;
        sd_event_source *result_source;     /* reads result_fd while the child runs */
        StrBuf result;                      /* what was read from it so far */
        sd_event_source *child_source;
        sd_event_source *deadline_source;   /* kills the child at daemon_timeout */
        bool timed_out;
        bool shared_expired;                /* killed at LOCAL_SHARED_CHILD_TIMEOUT_SEC: split */
        usec_t start_usec;
        usec_t end_usec;
        struct LocalRequest *request;
        size_t rcpt_index;
} Target;

/* A new target of kind for address, without outcome; NULL when out of memory. */
Target *target_new(TargetKind kind, const char *address);
/* Frees a target (disabling its child watch and closing its pipe); accepts NULL. */
Target *target_free(Target *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Target *, target_free);
/* Sets a target's final outcome (dsn "2.0.0", "4.2.0", "5.1.1" ...). */
int target_set_result(Target *t, const char *dsn, const char *fmt, ...) _printf_(3, 4);

/* Delivered-To: values found in the message header, lower-cased. */
typedef struct DeliveredSet {
        char **values;
        size_t n;
} DeliveredSet;

/* Collects the Delivered-To: values of a message's header section. */
int delivered_set_load(const char *content, size_t len, DeliveredSet *ret);
/* Frees the values. */
void delivered_set_done(DeliveredSet *s);
/* Whether the message was already delivered to address (case-insensitive, <> optional). */
bool delivered_set_has(const DeliveredSet *s, const char *address);

/* Resolves one envelope recipient (in a local domain) into delivery targets: aliases expanded,
 * users looked up, loops by Delivered-To detected. Always yields at least one target. */
int local_resolve(const LocalSettings *s, const char *recipient, const char *orig_sender,
                  const DeliveredSet *delivered, Target ***ret, size_t *ret_n);

/* The pass target (local-pass.c) for a user left after alias expansion (known: found in passwd):
 * mailbox_transport_maps, mailbox_transport, and for an unknown user fallback_transport_maps,
 * fallback_transport. 1 with *ret (a TARGET_PASS, or a TARGET_RESULT that defers), 0 when none
 * applies, <0 out of memory. */
int local_pass_target(const LocalSettings *s, const char *user, const char *address, bool known, Target **ret);

/* Resolves one recipient of the virtual transport (virtual(8)): virtual_mailbox_maps gives the
 * mailbox path below virtual_mailbox_base, virtual_uid_maps/virtual_gid_maps its owner. Always
 * yields exactly one target (a failure is a TARGET_RESULT); fails only on out-of-memory. */
int local_virtual_resolve(const LocalSettings *s, const char *recipient, Target ***ret, size_t *ret_n);

/* The length of local part "local+ext" before its recipient_delimiter (never at position 0). */
size_t local_base_length(const LocalSettings *s, const char *local);

/* Creates the missing directories leading to path's last component (a trailing '/' ignored),
 * mode 0700, with the caller's rights; 0 or negative errno. */
int local_mkdir_parents(const char *path);

/* Input of one mailbox write, shared by the mbox and Maildir writers. */
typedef struct DeliveryInput {
        const char *queue_id;
        long long rcpt_id;
        const char *sender;           /* "" for the null sender */
        const char *delivered_to;     /* Delivered-To: value (lower-cased) */
        const char *original_to;      /* X-Original-To: value, NULL for none (enable_original_recipient) */
        const char *content;          /* LF form */
        size_t content_len;
        const char *hostname;
        /* pipe(8) deliveries */
        const char *recipient;        /* the envelope recipient as queued */
        const char *orig_recipient;   /* the client's (ORCPT) address, or NULL */
        const char *nexthop;
        const QueueMessage *msg;      /* client attributes, size */
} DeliveryInput;

typedef struct DeliveryResult {
        char dsn[LOCAL_DSN_MAX];
        char diag[LOCAL_DIAG_MAX];
        long long mbox_offset;        /* an mbox delivery: where the message starts (for biff) */
} DeliveryResult;

/* Sets a child's result (dsn and printf-style diagnostic, truncated to LOCAL_DIAG_MAX). */
void delivery_result_set(DeliveryResult *r, const char *dsn, const char *fmt, ...) _printf_(3, 4);
/* The enhanced status for a failed write/lock with errno e (negative or positive). */
const char *local_errno_dsn(int e);

/* Waits deliver_lock_delay between two attempts to take a lock (200 ms when it is 0). */
void local_lock_pause(const LocalSettings *s);

/* Appends Return-Path:, X-Original-To: (when in->original_to) and Delivered-To:, the header
 * lines every local and virtual delivery prepends, in Postfix's order. */
int local_format_headers(const DeliveryInput *in, StrBuf *out);
/* Appends the From_ line and local_format_headers(): what precedes an mbox or command copy. */
int local_format_envelope(const DeliveryInput *in, StrBuf *out);

/* Appends to an mbox file with locking; truncates back on failure; fsyncs. Runs as the user.
 * owner_check: refuse a mailbox not owned by the user (off for "/file" alias destinations). */
void local_mbox_deliver(const LocalSettings *s, const DeliveryInput *in, const char *path,
                        bool may_dotlock, bool owner_check, DeliveryResult *res);
/* The same for n messages: one lock, each message appended (a message that fails is truncated
 * away and gets its own result), one fsync for all; res[i] is in[i]'s result. */
void local_mbox_deliver_many(const LocalSettings *s, const DeliveryInput *in, size_t n,
                             const char *path, bool may_dotlock, bool owner_check,
                             DeliveryResult *res);
/* Runs command (directly, with /bin/sh -c when it needs a shell, or with local_command_shell),
 * the message on stdin, Postfix's environment for target t; maps its exit status per
 * sysexits.h. With bus (connected by local_transient_connect() before the switch to the user)
 * it runs as a transient systemd unit, without it below the calling process. */
void local_command_deliver(const LocalSettings *s, const Target *t, const DeliveryInput *in, const char *command,
                           sd_bus *bus, DeliveryResult *res);
/* The argv that runs command: local_command_shell's words and command, else the command's own
 * words when it has no shell syntax and its program is found (absolute, or in /usr/bin:/bin),
 * else /bin/sh -c command. NULL when out of memory. */
char **local_command_argv(const char *shell, const char *command);
/* The absolute path of program: as it is with a "/", else the first executable file of that
 * name in LOCAL_COMMAND_PATH; NULL when there is none (or out of memory). */
char *local_command_path(const char *program);
/* The search path of commands named without a "/" (Postfix: the system's default path). */
#define LOCAL_COMMAND_PATH "/usr/bin:/bin"

struct passwd;
/* mailbox_command_maps, then mailbox_command, for the local user pw reached as address: 1 with
 * *ret a TARGET_COMMAND run as that user (as default_privs for root) or, when a table failed, a
 * deferral; 0 when neither applies (mailbox delivery goes on); <0 out of memory. */
int local_mailbox_command_target(const LocalSettings *s, const struct passwd *pw, const char *address,
                                 Target **ret);

/* Tells comsat on localhost's biff/udp port "user@offset" (fire and forget; errors ignored). */
void local_biff_notify(const char *user, long long offset);
void local_biff_check(bool biff);
/* One command run by a delivery child as its current effective user ("|command" aliases with
 * /bin/sh -c, pipe(8) transports with their own argv). */
typedef struct LocalCommand {
        char *const *argv;               /* argv[0]: the absolute path executed; no shell */
        char *const *envp;
        const char *working_directory;   /* "/" when NULL or not usable */
        const char *input;               /* the command's stdin */
        size_t input_len;
        long long time_limit;            /* seconds; 0 means 1000 */
        long long file_size_limit;       /* bytes a file it writes may grow to (RLIMIT_FSIZE); 0: none */
        const char *queue_id;            /* for the transient unit's name and description */
        long long rcpt_id;
        const char *recipient;
        const char *user;
} LocalCommand;

typedef struct LocalCommandOutcome {
        bool timed_out;                  /* killed at the time limit */
        int code;                        /* CLD_EXITED, CLD_KILLED or CLD_DUMPED */
        int status;                      /* exit status or signal */
        char output[LOCAL_DIAG_MAX + 1]; /* the start of stdout and stderr, NUL-terminated */
} LocalCommandOutcome;

/* Runs cmd and waits for it (never past its time limit): as a transient unit with bus, else in a
 * process below the caller that gives up root completely. <0 (with *ret_why, caller frees, when
 * known) when it could not be started. */
int local_command_run(const LocalCommand *cmd, sd_bus *bus, LocalCommandOutcome *ret, char **ret_why);
/* "NAME=value" (value NULL: empty), or NULL when out of memory. */
char *local_env_entry(const char *name, const char *value);
/* Cuts output (NUL-terminated) to its first line and replaces what is not printable ASCII. */
char *local_command_first_line(char *output);
/* The DSN of sysexits.h exit status (and its text), or NULL when status is not one of them. */
const char *local_sysexits_dsn(int status, const char **ret_text);

/* Writes n messages (at most LOCAL_BATCH_MAX) into a Maildir (tmp/ then new/), fsyncs each file
 * and then the directory once; res[i] is in[i]'s result. */
void local_maildir_deliver(const LocalSettings *s, const DeliveryInput *in, size_t n, const char *dir,
                           DeliveryResult *res);

/* Reads the pipe transports of $config_directory/master.cf into s (errors logged, kept per
 * transport); a missing master.cf is none. */
int local_pipe_settings_load(Conf *c, LocalSettings *s);
void local_pipe_settings_done(LocalSettings *s);
/* The pipe transport called name, or NULL. */
const PipeTransport *local_pipe_find(const LocalSettings *s, const char *name);
/* Runs t's command once for the n recipients in[0..n-1] (one message), as the current effective
 * user, and sets res[i] for each: exit status per sysexits.h as pipe(8) maps it. */
void local_pipe_deliver(const LocalSettings *s, const PipeTransport *t, const DeliveryInput *in, size_t n, sd_bus *bus,
                        DeliveryResult *res);

/* The marker directory's name inside queue_directory. */
#define LOCAL_MARKER_DIR "local-delivered"
/* Opens <queue_directory>/local-delivered (creating it 0700), only if it is a directory owned by
 * root with mode 0700; an untrusted one is moved aside and replaced. Logs; returns fd or <0. */
int local_marker_dir_open(const char *queue_directory);
/* Opens (creating) the marker of queue_id/rcpt_id in dirfd; refuses anything but a regular file
 * owned by root with one link (-EPERM). On failure *ret_problem says why (for a diagnostic). */
int local_marker_open(int dirfd, const char *queue_id, long long rcpt_id, const char **ret_problem);
/* Whether the marker lists line. */
bool local_marker_has(int fd, const char *line);
/* Appends line to the marker and syncs it. */
int local_marker_add(int fd, const char *line);
/* Appends line to the marker without syncing it (local_marker_sync() follows). */
int local_marker_append(int fd, const char *line);
/* Makes the lines appended to the n markers durable: fdatasync for one, one syncfs() of the
 * marker directory's file system for several (one journal commit instead of n). */
int local_marker_sync(const int *fds, size_t n);

/* Forks one delivery child for the n targets t[0..n-1] (n > 1 only for TARGET_MBOX targets of
 * the same user and mailbox, or TARGET_MAILDIR targets sorted by user and Maildir; at most
 * LOCAL_BATCH_MAX, one recipient marker each) with inputs in[0..n-1]; fills t[0]->pid and
 * t[0]->result_fd. */
int local_child_spawn(const LocalSettings *s, const DeliveryInput *in, size_t n, int marker_dirfd,
                      Target **t);
/* Reads what is waiting in t[0]->result_fd into t[0]->result (while the child runs, so that a
 * batch's result lines never fill the pipe); false at its end. */
bool local_child_read(Target *t);
/* Reads the rest of the child's result lines after the child exited (code and status from its
 * siginfo) and sets the results of t[0..n-1]; a target without a result line is deferred. */
void local_child_collect(Target **t, size_t n, int code, int status);

/* Creates new queue messages for the TARGET_FORWARD entries among the targets of recipient
 * rcpt_id (one per envelope sender and alias, with "Delivered-To: <alias address>" prepended) and
 * for its TARGET_PASS entries (one per route, the content unchanged, the route as the message's
 * filter, ORCPT the recipient's orcpt or address), and sets their results; the new queue ids
 * derive from (kind, orig, rcpt_id, sender, alias or route, addresses), so a repeated call finds
 * its earlier copy (-EEXIST) and reports it done. Targets queued by this call get t->copied.
 * Returns the number of messages queued (the caller wakes qmgr when > 0). */
int local_forward(const LocalSettings *s, Queue *q, const QueueMessage *orig, long long rcpt_id,
                  const char *orcpt, const char *content, size_t content_len, Target **targets, size_t n);
/* Whether t is delivered by queueing a copy (TARGET_FORWARD, TARGET_PASS). */
bool local_target_is_copy(const Target *t);
/* The marker line recording that t's copy was queued ("forward:<addr>", "pass:<route> <addr>"). */
char *local_copy_marker_line(const Target *t);

/* Lower-cases s in place (ASCII). */
char *local_ascii_lower(char *s);
