/* posternctl-control.c — the verbs that ask postern-qmgr to act on the queue (DESIGN.md §3, §6),
 * over its socket daemon_socket_path(conf, "qmgr") with the attribute protocol:
 *
 *   posternctl flush [DOMAIN]          retry every deferred message now (sendmail -q, postqueue -f),
 *                                      or only the mail for DOMAIN (sendmail -qR, postqueue -s, ETRN)
 *   posternctl hold ID...|ALL          keep messages out of delivery ("!" in posternctl queue)
 *   posternctl release ID...|ALL       undo hold; delivery is attempted at once
 *   posternctl delete ID...|ALL        remove messages without notifying anyone (postsuper -d)
 *   posternctl requeue ID...|ALL       retry the deferred recipients of messages now
 *
 * qmgr does the work (it owns delivery state, so nothing races a delivery in progress) and logs
 * each action ("<id>: removed", "<id>: placed on hold", ...). Anyone may flush; qmgr lets only
 * root and mail_owner use the other verbs. Each ID is one request; the summary goes to stdout,
 * problems to stderr.
 *
 * Exit codes: 0 done; 1 some ID was refused (e.g. no such message, already gone); EX_USAGE bad
 * arguments; EX_NOPERM not root or mail_owner; EX_UNAVAILABLE qmgr is not running or cannot be
 * reached; EX_TEMPFAIL no answer in time; EX_PROTOCOL an answer qmgr should not give; EX_CONFIG
 * main.cf cannot be read. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "conf/conf.h"
#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "mail/queue-id.h"
#include "posternctl.h"

/* ALL walks the whole queue inside qmgr; give it time. */
#define CONTROL_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define CONTROL_ALL_TIMEOUT_USEC (600 * USEC_PER_SEC)

typedef struct ControlVerb {
        const char *name;
        const char *done;   /* summary: "<done>: N messages" */
        const char *help;
} ControlVerb;

static const ControlVerb control_verbs[] = {
        { "hold",    "Placed on hold", "keep the messages out of delivery until released" },
        { "release", "Released from hold", "undo hold; delivery is attempted at once" },
        { "delete",  "Deleted", "remove the messages without notifying anyone" },
        { "requeue", "Requeued", "retry the deferred recipients of the messages now" },
};

/* Loads main.cf and builds the qmgr socket path; prints why not and returns an exit code. */
static int qmgr_path(const char *verb, char **ret) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        int r = conf_load(NULL, &c, &msgs);
        if (r < 0) {
                for (char **m = msgs; m && *m; m++)
                        fprintf(stderr, "posternctl %s: %s\n", verb, *m);
                return EX_CONFIG;
        }
        *ret = daemon_socket_path(c, "qmgr");
        if (!*ret) {
                fprintf(stderr, "posternctl %s: out of memory\n", verb);
                return EX_OSERR;
        }
        return EX_OK;
}

/* One request and its reply; prints what went wrong and returns an exit code (EX_OK with
 * *ret_refused set when qmgr answered status=error for this one request). */
static int call(const char *path, const char *verb, const char *id, const char *site,
                IpcRecord *reply, bool *ret_refused) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        int r;

        *ret_refused = false;
        r = ipc_record_add(&req, "request", verb);
        if (r >= 0 && id)
                r = ipc_record_add(&req, "queue_id", id);
        if (r >= 0 && site)
                r = ipc_record_add(&req, "site", site);
        if (r < 0) {
                fprintf(stderr, "posternctl %s: %s\n", verb, strerror(-r));
                return EX_SOFTWARE;
        }

        r = ipc_call(path, &req, reply,
                     id && streq(id, "ALL") ? CONTROL_ALL_TIMEOUT_USEC : CONTROL_TIMEOUT_USEC);
        if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTSOCK) {
                fprintf(stderr, "posternctl: qmgr is not running (connect %s: %s)\n", path,
                        strerror(-r));
                return EX_UNAVAILABLE;
        }
        if (r == -EACCES || r == -EPERM) {
                fprintf(stderr, "posternctl: cannot connect to qmgr at %s: %s\n", path, strerror(-r));
                return EX_NOPERM;
        }
        if (r == -ETIMEDOUT) {
                fprintf(stderr, "posternctl: qmgr at %s did not answer within %llu s\n", path,
                        (id && streq(id, "ALL") ? CONTROL_ALL_TIMEOUT_USEC : CONTROL_TIMEOUT_USEC) /
                        USEC_PER_SEC);
                return EX_TEMPFAIL;
        }
        if (r < 0) {
                fprintf(stderr, "posternctl: talking to qmgr at %s: %s\n", path, strerror(-r));
                return EX_UNAVAILABLE;
        }

        const char *status = ipc_record_get(reply, "status");
        if (status && streq(status, "ok"))
                return EX_OK;
        const char *reason = ipc_record_get(reply, "reason");
        if (!status || !streq(status, "error")) {
                fprintf(stderr, "posternctl %s: unexpected answer from qmgr: status=%s\n", verb,
                        strna(status));
                return EX_PROTOCOL;
        }
        fprintf(stderr, "posternctl %s%s%s: %s\n", verb, id ? " " : "", strempty(id),
                reason ? reason : "refused");
        if (reason && startswith(reason, "permission denied"))
                return EX_NOPERM;
        *ret_refused = true;
        return EX_OK;
}

static void flush_help(void) {
        printf("Usage: posternctl flush [DOMAIN]\n\n"
               "Asks postern-qmgr to retry every deferred message now (like sendmail -q or\n"
               "postqueue -f), or with DOMAIN only the deferred recipients at that domain (like\n"
               "sendmail -qRDOMAIN, postqueue -s DOMAIN or SMTP ETRN); any user may. Destinations\n"
               "suspended as dead are tried again at once.\n");
}

int verb_flush(int argc, char *argv[]) {
        _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
        _cleanup_free_ char *path = NULL;
        bool refused;
        int r;

        if (argc > 1 && (streq(argv[1], "-h") || streq(argv[1], "--help")))
                return flush_help(), EX_OK;
        if (argc > 2 || (argc == 2 && (isempty(argv[1]) || argv[1][0] == '-'))) {
                fprintf(stderr, "posternctl flush: expected at most one DOMAIN\n");
                return EX_USAGE;
        }
        r = qmgr_path("flush", &path);
        if (r != EX_OK)
                return r;
        r = call(path, "flush", NULL, argc == 2 ? argv[1] : NULL, &reply, &refused);
        if (r != EX_OK)
                return r;
        if (refused)
                return 1;
        long long count = 0;
        if (argc == 2 && ipc_record_get_int(&reply, "count", &count) >= 0)
                printf("posternctl: flush of %s requested: %lld deferred recipient%s retried now\n",
                       argv[1], count, count == 1 ? " is being" : "s are being");
        else
                printf("posternctl: flush requested: deferred mail is being retried now\n");
        return EX_OK;
}

static void control_help(const ControlVerb *v) {
        printf("Usage: posternctl %s ID...|ALL\n\n"
               "Asks postern-qmgr to %s.\n"
               "ID is a queue id as posternctl queue shows it (a trailing \"!\" is ignored);\n"
               "ALL means every message in the queue. Only root and mail_owner may.\n",
               v->name, v->help);
}

/* hold, release, delete, requeue: argv[0] names the verb. */
int verb_control(int argc, char *argv[]) {
        const ControlVerb *v = NULL;
        _cleanup_free_ char *path = NULL;
        size_t done = 0, failed = 0;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(control_verbs); i++)
                if (streq(argv[0], control_verbs[i].name))
                        v = &control_verbs[i];
        if (!v)
                return EX_SOFTWARE;
        if (argc > 1 && (streq(argv[1], "-h") || streq(argv[1], "--help")))
                return control_help(v), EX_OK;
        if (argc < 2) {
                fprintf(stderr, "posternctl %s: expected a queue id or ALL (see posternctl queue)\n",
                        v->name);
                return EX_USAGE;
        }
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "ALL") && argc > 2) {
                        fprintf(stderr, "posternctl %s: ALL stands alone\n", v->name);
                        return EX_USAGE;
                }

        r = qmgr_path(v->name, &path);
        if (r != EX_OK)
                return r;

        for (int i = 1; i < argc; i++) {
                char id[QUEUE_ID_MAX + 2];
                if (!posternctl_queue_id_arg(argv[i], id) && !streq(argv[i], "ALL")) {
                        fprintf(stderr, "posternctl %s: \"%s\" is not a queue id\n", v->name, argv[i]);
                        failed++;
                        continue;
                }

                _cleanup_ipc_record_ IpcRecord reply = IPC_RECORD_INIT;
                bool refused;
                r = call(path, v->name, id, NULL, &reply, &refused);
                if (r != EX_OK)
                        return r;   /* qmgr unreachable or permission denied: so is the rest */
                if (refused) {
                        failed++;
                        continue;
                }
                long long count = 0;
                if (ipc_record_get_int(&reply, "count", &count) < 0 || count < 0)
                        count = 1;
                done += (size_t) count;
        }
        printf("posternctl: %s: %zu message%s\n", v->done, done, done == 1 ? "" : "s");
        return failed > 0 ? 1 : EX_OK;
}
