/* posternctl-verify.c — `posternctl verify [-p] ADDRESS...`: what postern-verify's cache says
 * about each address (request=lookup: nothing is probed), or with -p what reject_unverified_*
 * would get (request=query: an unknown or stale address is probed, and the answer is then
 * "pending" until the probe's result is in; ask again).
 *
 * One line per address: "<address>: <deliverable|undeliverable|undetermined|pending>[: reason]".
 * Exit 0 when every address got an answer, EX_UNAVAILABLE when postern-verify is not running,
 * EX_NOPERM for a caller other than root and postern (the socket is 0600),
 * EX_TEMPFAIL when it answered with an error (its cache is unusable: the reason is printed). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "posternctl.h"

#define VERIFY_TIMEOUT_USEC (10 * USEC_PER_SEC)

int verb_verify(int argc, char *argv[]) {
        bool probe = argc > 1 && streq(argv[1], "-p");
        int first = probe ? 2 : 1;
        if (first >= argc) {
                fprintf(stderr, "Usage: posternctl verify [-p] ADDRESS...\n");
                return EX_USAGE;
        }
        _cleanup_(conf_freep) Conf *c = NULL;
        if (posternctl_load_main_cf(NULL, &c) < 0)
                return EX_CONFIG;
        _cleanup_free_ char *path = daemon_socket_path(c, strempty(conf_get(c, "address_verify_service_name")));
        if (!path)
                return EX_OSERR;

        int ret = EX_OK;
        for (int i = first; i < argc; i++) {
                _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, reply = IPC_RECORD_INIT;
                if (ipc_record_add(&req, "request", probe ? "query" : "lookup") < 0 ||
                    ipc_record_add(&req, "address", argv[i]) < 0)
                        return EX_OSERR;
                int r = ipc_call(path, &req, &reply, VERIFY_TIMEOUT_USEC);
                if (r == -EACCES || r == -EPERM) {
                        fprintf(stderr, "posternctl verify: %s is for root and postern only: %s\n", path, strerror(-r));
                        return EX_NOPERM;
                }
                if (r < 0) {
                        fprintf(stderr, "posternctl verify: postern-verify is not available at %s: %s\n", path,
                                strerror(-r));
                        return EX_UNAVAILABLE;
                }
                if (!streq(strempty(ipc_record_get(&reply, "status")), "ok")) {
                        fprintf(stderr, "posternctl verify: %s: %s\n", argv[i], strempty(ipc_record_get(&reply, "reason")));
                        ret = EX_TEMPFAIL;
                        continue;
                }
                const char *reason = ipc_record_get(&reply, "reason");
                printf("%s: %s%s%s\n", argv[i], strempty(ipc_record_get(&reply, "result")), isempty(reason) ? "" : ": ",
                       strempty(reason));
        }
        return ret;
}
