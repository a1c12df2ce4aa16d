/* local-transient.h — "|command" deliveries as transient systemd service units.
 *
 * Under systemd, postern-local has no network (PrivateNetwork=yes) and runs no command in its own
 * cgroup: each command runs as its own unit, postern-command-<queue id>-<recipient id>-<random>
 * .service, created by the service manager through StartTransientUnit() on its private socket
 * (/run/systemd/private, root only, no dbus-daemon needed). See local-transient.c for the unit's
 * properties, how completion and time limits are detected, and what is read back. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "basic/macro.h"

/* Bytes of the command's output (stdout and stderr together) kept for the diagnostic. */
#define LOCAL_TRANSIENT_OUTPUT_MAX 512
/* Longest unit name this module makes (systemd allows 255). */
#define LOCAL_TRANSIENT_UNIT_MAX 128

typedef struct LocalTransientCommand {
        const char *queue_id;          /* named in the unit name (escaped) and its description */
        long long rcpt_id;
        const char *recipient;         /* description only (non-printable bytes become '?') */
        const char *user;              /* User= (a name); NULL: the uid as a number */
        uid_t uid;
        gid_t gid;                     /* Group=; the user's supplementary groups are added */
        char *const *argv;             /* argv[0] is the absolute path executed; UTF-8 */
        char *const *envp;             /* NAME=value entries, passed as Environment= */
        const char *working_directory; /* absolute; "/" when NULL or missing */
        const void *input;             /* written to the command's stdin (a pipe) */
        size_t input_len;
        usec_t time_limit;             /* RuntimeMaxSec=; 0 means 1000 s */
        uint64_t file_size_limit;      /* LimitFSIZE= (soft and hard), bytes; 0: not set */
} LocalTransientCommand;

typedef struct LocalTransientResult {
        int code;                      /* CLD_EXITED, CLD_KILLED or CLD_DUMPED */
        int status;                    /* exit status, or the signal */
        bool timed_out;                /* stopped at time_limit (then code/status say how) */
        char unit[LOCAL_TRANSIENT_UNIT_MAX];
        char output[LOCAL_TRANSIENT_OUTPUT_MAX + 1];   /* NUL-terminated; may hold NULs */
        size_t output_len;
} LocalTransientResult;

/* Whether commands should run as transient units: we run as root in a systemd service
 * (sd_booted() and $INVOCATION_ID). $POSTERN_TRANSIENT_COMMANDS=0 or 1 overrides that. */
bool local_transient_available(void);

/* Connects to the service manager's private socket. Call as root, before any uid change: the
 * manager authorises by the uid the socket had when it connected. On failure *ret_reason (may be
 * NULL) gets an allocated explanation. */
int local_transient_connect(sd_bus **ret, char **ret_reason);

/* Runs cmd as a transient service unit and waits for it to finish (never longer than
 * cmd->time_limit plus a few seconds: at that point the unit is killed). Writes the input and
 * drains the output itself, so a command writing a lot cannot block. Returns 0 with *ret filled
 * when the command ran (whatever its exit status), or a negative errno with *ret_reason when it
 * could not be run or its end could not be observed (the caller should try again later). */
int local_transient_run(sd_bus *bus, const LocalTransientCommand *cmd, LocalTransientResult *ret,
                        char **ret_reason);

/* The unit name for queue_id/rcpt_id with random suffix `random` (exported for the unit test):
 * "postern-command-<escaped queue id>-<rcpt id>-<8 hex digits>.service", where only [A-Za-z0-9]
 * of the queue id are kept as they are and every other byte becomes "_xx" (hex). Returns
 * -ENAMETOOLONG when buf is too small. */
int local_transient_unit_name(const char *queue_id, long long rcpt_id, uint32_t random, char *buf,
                              size_t size);

/* Copies s into buf (size > 0) with every byte outside printable ASCII replaced by '?', at most
 * size - 1 bytes (exported for the unit test). */
void local_transient_printable(const char *s, char *buf, size_t size);

/* Whether s is valid UTF-8 without overlong forms or surrogates (D-Bus strings must be). */
bool local_transient_utf8_valid(const char *s);
