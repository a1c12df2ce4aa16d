/* master-cf.h — reading an existing Postfix master.cf (DESIGN.md §4): its entries, classified.
 *
 * Postern has no master(8): systemd starts its daemons. What a master.cf still says that matters
 * is which transports exist (unix entries running smtp, lmtp, local, virtual, pipe, discard or
 * error, with their -o overrides and process limits) and which listeners an admin had (inet
 * entries, which become socket units). Entries for Postfix's own internals (pickup, cleanup, qmgr,
 * trivial-rewrite, bounce, ...) are recognised as built in. The syntax is Postfix's: eight or more
 * whitespace-separated fields (service, type, private, unpriv, chroot, wakeup, maxproc, command
 * and its arguments), "#" comments, continuation lines that start with whitespace, "-o name=value"
 * and "-o { name = value }", and "{ ... }" arguments that keep their spaces. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../basic/macro.h"

typedef enum MasterKind {
        MASTER_TRANSPORT,     /* a delivery transport: command smtp, lmtp, local, virtual, pipe, discard, error */
        MASTER_BUILTIN,       /* a Postfix internal that Postern has built in (qmgr, cleanup, ...) */
        MASTER_LISTENER,      /* inet / unix-dgram / fifo / pass entries and smtpd/postscreen on unix:
                               * systemd socket units in Postern */
        MASTER_UNKNOWN,       /* a command Postern does not know (spawn, a third-party daemon) */
} MasterKind;

/* The per-transport parameters "<transport><suffix>" a master.cf transport may have in main.cf:
 * qmgr's scheduling limits (daemons/qmgr/qmgr-sched.c), then pipe(8)'s time limit. */
typedef enum MasterParam {
        MASTER_PARAM_CONCURRENCY_LIMIT,
        MASTER_PARAM_RECIPIENT_LIMIT,
        MASTER_PARAM_PROCESS_LIMIT,
        MASTER_PARAM_INITIAL_CONCURRENCY,
        MASTER_PARAM_FAILED_COHORT_LIMIT,
        MASTER_PARAM_POSITIVE_FEEDBACK,
        MASTER_PARAM_NEGATIVE_FEEDBACK,
        MASTER_PARAM_RATE_DELAY,
        _MASTER_PARAM_SCHEDULER_MAX,          /* the ones above are qmgr's */
        MASTER_PARAM_TIME_LIMIT = _MASTER_PARAM_SCHEDULER_MAX,
        _MASTER_PARAM_MAX,
} MasterParam;
extern const char *const master_param_suffixes[_MASTER_PARAM_MAX];

typedef struct MasterOption {
        char *name;
        char *value;
} MasterOption;

typedef struct MasterEntry {
        unsigned line;            /* where the entry starts */
        char *service;            /* "smtp", "127.0.0.1:10025", "dovecot" */
        char *type;               /* inet, unix, unix-dgram, fifo, pass */
        char *command;            /* "smtpd", "pipe", ... */
        char *fields[4];          /* private, unpriv, chroot, wakeup as written ("n", "-", "60?") */
        int maxproc;              /* the process limit; -1 = "-" (default_process_limit), 0 = none */
        MasterOption *options;    /* the -o overrides, in order */
        size_t n_options;
        char **args;              /* the other arguments, "{ }" groups unwrapped (pipe's flags=, argv=...) */
        MasterKind kind;
        const char *builtin;      /* MASTER_BUILTIN: what does the job in Postern (static text) */
} MasterEntry;

typedef struct MasterCf {
        MasterEntry *entries;
        size_t n;
} MasterCf;

/* Parses master.cf text (name is used in error messages). On a syntax error returns -EINVAL with
 * *ret_error = "NAME:LINE: what is wrong" (caller frees); nothing is kept. */
int master_cf_parse(const char *text, const char *name, MasterCf *ret, char **ret_error);
/* Reads and parses a file; -ENOENT when there is none (no error text then). */
int master_cf_load(const char *path, MasterCf *ret, char **ret_error);
void master_cf_done(MasterCf *m);
/* The transport entry named service (a unix entry whose command delivers mail), or NULL. */
const MasterEntry *master_cf_transport(const MasterCf *m, const char *service);
/* The value of -o name on e, or NULL. The last one wins, as in Postfix. */
const char *master_entry_option(const MasterEntry *e, const char *name);
const char *master_kind_name(MasterKind k);
/* Whether name is a per-transport parameter that Postern acts on ("<transport>_destination_
 * recipient_limit", "..._concurrency_limit", "..._process_limit", "..._time_limit", ...) for a
 * transport that m defines: main.cf may set those without them being unknown. */
bool master_cf_transport_param(const MasterCf *m, const char *name);
