/* verify-probe.c — one address probe: where the address would be delivered, and what the next
 * hop says about it.
 *
 * Routing is postern-qmgr's own code (qmgr_route_transport(): address classes, relocated_maps,
 * transport_maps, sender_dependent_*_maps, relayhost, the class transports), loaded from a
 * configuration in which Postfix's address_verify_* overrides have replaced the parameters they
 * stand for: address_verify_relayhost → relayhost, address_verify_transport_maps →
 * transport_maps, address_verify_{default,local,virtual,relay}_transport → *_transport,
 * address_verify_sender_dependent_{relayhost,default_transport}_maps. The probe sender
 * (address_verify_sender, address_verify_sender_ttl) takes part in sender-dependent routing.
 *
 * Then, by the transport's agent (qmgr_sched_agent(): master.cf entries count):
 *   smtp, lmtp  postern-smtp's request=verify on its socket: MAIL FROM the probe sender and RCPT
 *               TO the address against the real next hop, QUIT after the RCPT reply
 *               (smtp_address_verify_target = rcpt; data: after DATA's reply, connection
 *               dropped) — nothing is ever delivered. 2xx deliverable, 5xx undeliverable, else
 *               undetermined, with the server's words;
 *   error       undeliverable with the transport's text (relocated_maps: "5.1.6 User has moved");
 *   retry       undetermined with its text; discard and pipe: deliverable;
 *   local, virtual (and any other agent)  decided at once as "undetermined": postern-smtpd
 *               decides local and virtual recipients by its routing tables itself
 *               (smtpd-verify.c) and never asks for them;
 *   a failed table lookup: undetermined (4.3.0), never a guess.
 * Deviation from Postfix: a probe is a request to postern-smtp, not a message in the queue, so it
 * has no queue id, is not scheduled with the destination's concurrency and shows in no mailq. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "log/log.h"
#include "qmgr.h"
#include "verify-probe.h"

/* A probe waits at most this long for postern-smtp (its own timeouts are shorter). */
#define PROBE_TIMEOUT_USEC (VERIFY_PROBE_TTL * USEC_PER_SEC)

typedef struct Probe Probe;
struct Probe {
        Probe *prev, *next;
        VerifyProber *prober;
        char *address;
        IpcCall *call;
        VerifyProbeDone done;
        void *userdata;
};

struct VerifyProber {
        sd_event *event;
        QmgrSettings route;
        char *sender;                  /* address_verify_sender, unqualified as configured */
        char *myorigin;
        int64_t sender_ttl;
        char *smtp_socket, *lmtp_socket;
        Probe *probes;
        size_t n_probes;
};

/* The overrides: verify's own value replaces the parameter it stands for. */
static const char *const overrides[][2] = {
        { "address_verify_relayhost", "relayhost" },
        { "address_verify_transport_maps", "transport_maps" },
        { "address_verify_default_transport", "default_transport" },
        { "address_verify_local_transport", "local_transport" },
        { "address_verify_virtual_transport", "virtual_transport" },
        { "address_verify_relay_transport", "relay_transport" },
        { "address_verify_sender_dependent_relayhost_maps", "sender_dependent_relayhost_maps" },
        { "address_verify_sender_dependent_default_transport_maps", "sender_dependent_default_transport_maps" },
};

int verify_prober_new(sd_event *e, Conf *c, VerifyProber **ret) {
        _cleanup_(verify_prober_freep) VerifyProber *p = calloc(1, sizeof(VerifyProber));
        if (!p)
                return log_oom();
        p->event = sd_event_ref(e);

        /* Expanded values first: an override is usually "$relayhost" itself. */
        char *values[ELEMENTSOF(overrides)] = {};
        for (size_t i = 0; i < ELEMENTSOF(overrides); i++)
                if (!(values[i] = strdup(strempty(conf_get(c, overrides[i][0]))))) {
                        for (size_t k = 0; k < i; k++)
                                free(values[k]);
                        return log_oom();
                }
        int r = 0;
        for (size_t i = 0; i < ELEMENTSOF(overrides); i++) {
                _cleanup_free_ char *why = NULL;
                if (r >= 0 && (r = conf_set(c, overrides[i][1], values[i], &why)) < 0)
                        log_error("%s = %s: %s", overrides[i][0], values[i], why ? why : "cannot apply");
                free(values[i]);
        }
        if (r < 0)
                return r;

        _cleanup_free_ char *why = NULL;
        r = qmgr_route_settings_load(&p->route, c, &why);
        if (r < 0)
                return log_error_errno(r, "Cannot load routing: %s", why ? why : "see above");
        p->sender = strdup(strempty(conf_get(c, "address_verify_sender")));
        p->myorigin = strdup(strempty(conf_get(c, "myorigin")));
        p->sender_ttl = conf_get_time(c, NULL, "address_verify_sender_ttl");
        p->smtp_socket = daemon_socket_path(c, "smtp");
        p->lmtp_socket = daemon_socket_path(c, "lmtp");
        if (!p->sender || !p->myorigin || !p->smtp_socket || !p->lmtp_socket)
                return log_oom();
        *ret = TAKE_PTR(p);
        return 0;
}

static void probe_free(Probe *pr) {
        if (!pr)
                return;
        VerifyProber *p = pr->prober;
        if (pr->prev)
                pr->prev->next = pr->next;
        else if (p->probes == pr)
                p->probes = pr->next;
        if (pr->next)
                pr->next->prev = pr->prev;
        p->n_probes--;
        free(pr->address);
        free(pr);
}

VerifyProber *verify_prober_free(VerifyProber *p) {
        if (!p)
                return NULL;
        while (p->probes) {
                ipc_call_cancel(p->probes->call);
                probe_free(p->probes);
        }
        qmgr_route_settings_done(&p->route);
        free(p->sender);
        free(p->myorigin);
        free(p->smtp_socket);
        free(p->lmtp_socket);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

size_t verify_probes_pending(const VerifyProber *p) {
        return p ? p->n_probes : 0;
}

static void on_reply(int error, const IpcRecord *reply, void *userdata) {
        Probe *pr = userdata;
        VerifyStatus st = VERIFY_UNDETERMINED;
        _cleanup_free_ char *text = NULL;
        const char *reason;

        if (error < 0) {
                if (asprintf(&text, "4.4.1 address verification probe failed: %s", strerror(-error)) < 0)
                        text = NULL;
                reason = text ? text : "4.4.1 address verification probe failed";
        } else if (!streq(strempty(ipc_record_get(reply, "status")), "ok")) {
                if (asprintf(&text, "4.3.0 address verification probe refused: %s",
                             strempty(ipc_record_get(reply, "reason"))) < 0)
                        text = NULL;
                reason = text ? text : "4.3.0 address verification probe refused";
        } else {
                const char *action = strempty(ipc_record_get(reply, "action.0"));
                const char *dsn = strempty(ipc_record_get(reply, "dsn.0"));
                const char *diag = strempty(ipc_record_get(reply, "diag.0"));
                st = streq(action, "deliverable") ? VERIFY_DELIVERABLE :
                     streq(action, "undeliverable") ? VERIFY_UNDELIVERABLE : VERIFY_UNDETERMINED;
                /* The server's words, as Postfix's verify keeps them ("host x said: ..."). */
                if (isempty(diag) && asprintf(&text, "%s", isempty(dsn) ? "no reply text" : dsn) < 0)
                        text = NULL;
                reason = isempty(diag) ? (text ? text : "no reply text") : diag;
        }
        pr->call = NULL;
        VerifyProbeDone done = pr->done;
        void *ud = pr->userdata;
        _cleanup_free_ char *address = TAKE_PTR(pr->address);
        probe_free(pr);
        done(address, st, reason, ud);
}

static int decided(VerifyStatus st, const char *reason, VerifyStatus *ret_status, char **ret_reason) {
        char *copy = strdup(reason);
        if (!copy)
                return -ENOMEM;
        *ret_status = st;
        *ret_reason = copy;
        return 1;
}

int verify_probe_start(VerifyProber *p, const char *address, VerifyProbeDone done, void *userdata,
                       VerifyStatus *ret_status, char **ret_reason) {
        _cleanup_free_ char *sender = verify_probe_sender(p->sender, p->myorigin, p->sender_ttl, time(NULL));
        _cleanup_free_ char *transport = NULL, *nexthop = NULL, *text = NULL;
        if (!sender)
                return -ENOMEM;

        QueueMessage m = { .sender = sender };
        int r = qmgr_route_transport(&p->route, &m, address, &transport, &nexthop);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return decided(VERIFY_UNDETERMINED, "4.3.0 address verification: a routing table lookup failed",
                               ret_status, ret_reason);
        const char *agent = qmgr_sched_agent(&p->route, transport);
        if (streq(transport, "error") || streq(agent, "error")) {
                if (asprintf(&text, "%s", isempty(nexthop) ? "5.0.0 undeliverable" : nexthop) < 0)
                        return -ENOMEM;
                return decided(VERIFY_UNDELIVERABLE, text, ret_status, ret_reason);
        }
        if (streq(transport, "retry") || streq(agent, "retry"))
                return decided(VERIFY_UNDETERMINED, isempty(nexthop) ? "4.0.0 retry" : nexthop, ret_status,
                               ret_reason);
        if (streq(transport, "discard") || streq(agent, "discard") || streq(agent, "pipe")) {
                if (asprintf(&text, "2.0.0 delivers to %s", transport) < 0)
                        return -ENOMEM;
                return decided(VERIFY_DELIVERABLE, text, ret_status, ret_reason);
        }
        if (!streq(agent, "smtp") && !streq(agent, "lmtp")) {
                if (asprintf(&text, "4.3.0 transport %s is not probed: postern-smtpd decides such recipients by "
                             "its routing tables", transport) < 0)
                        return -ENOMEM;
                return decided(VERIFY_UNDETERMINED, text, ret_status, ret_reason);
        }

        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        if (ipc_record_add(&req, "request", "verify") < 0 || ipc_record_add(&req, "sender", sender) < 0 ||
            ipc_record_add(&req, "nexthop", nexthop) < 0 || ipc_record_add(&req, "count", "1") < 0 ||
            ipc_record_add(&req, "rcpt.0", address) < 0 || ipc_record_add(&req, "rcpt_id.0", "1") < 0 ||
            (!streq(transport, agent) && ipc_record_add(&req, "transport", transport) < 0))
                return -ENOMEM;

        Probe *pr = calloc(1, sizeof(Probe));
        if (!pr || !(pr->address = strdup(address))) {
                free(pr);
                return -ENOMEM;
        }
        pr->prober = p;
        pr->done = done;
        pr->userdata = userdata;
        pr->next = p->probes;
        if (p->probes)
                p->probes->prev = pr;
        p->probes = pr;
        p->n_probes++;
        r = ipc_client_call_async(p->event, streq(agent, "lmtp") ? p->lmtp_socket : p->smtp_socket, &req,
                                  PROBE_TIMEOUT_USEC, on_reply, pr, &pr->call);
        if (r < 0) {
                probe_free(pr);
                if (asprintf(&text, "4.4.1 cannot reach postern-%s to probe the address: %s", agent,
                             strerror(-r)) < 0)
                        return -ENOMEM;
                return decided(VERIFY_UNDETERMINED, text, ret_status, ret_reason);
        }
        log_info("probe sent for <%s>: transport %s, next hop %s, sender <%s>", address, transport, nexthop, sender);
        return 0;
}
