/* smtpd-verify.c — reject_unverified_recipient and reject_unverified_sender (Postfix's address
 * verification, ADDRESS_VERIFICATION_README), as the hook smtpd_hook_verify.
 *
 * Local and virtual addresses (address class local, virtual alias, virtual mailbox) are decided
 * here by the routing tables, as reject_unlisted_recipient decides them (smtpd_unlisted_check()):
 * known → go on, unknown → the reject code. Every other address is asked of postern-verify
 * (<postern_socket_directory>/<address_verify_service_name>, request=query, one multiplexed
 * connection for all sessions): deliverable → go on; undeliverable → unverified_*_reject_code
 * "<a>: Recipient address rejected: unverified address: <the probe's reply or
 * unverified_*_reject_reason>"; pending (a probe on its way) → asked again every
 * address_verify_poll_delay, address_verify_poll_count times in all, so a quick probe answers
 * within the session; still pending, or undetermined → unverified_*_defer_code "... unverified
 * address: Address verification in progress" (or the temporary reply) with
 * unverified_*_tempfail_action. postern-verify missing, failing or not answering within
 * VERIFY_TIMEOUT_USEC: "450 4.1.1 <a>: Recipient address rejected: address verification problem"
 * with the tempfail action (logged "verify service failure"), never a 5xx. A "deliverable" answer
 * is remembered for VERIFY_MEMO_USEC (per service socket and address, at most VERIFY_MEMO_MAX
 * addresses): the mail of a busy recipient costs one round trip per 10 s, not one per message; no
 * other answer is remembered, so a refusal or a probe on its way is always asked again. The sender's replies
 * use x.1.7 instead of x.1.1; the null sender is never verified. Answers use the DNS checks' final
 * wording (smtpd.h): a complete reply, or "DEFER_IF_PERMIT " and one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "basic/strmap.h"
#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "log/log.h"

#define VERIFY_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define VERIFY_MEMO_USEC (10 * USEC_PER_SEC)
#define VERIFY_MEMO_MAX 4096

typedef struct VerifyOp {
        SmtpdHookDone done;
        void *userdata;
        const SmtpdSettings *st;
        sd_event *event;
        int who;                 /* 0 recipient, 1 sender */
        char *address;
        unsigned polls_left;
        IpcCall *call;
        sd_event_source *timer;
} VerifyOp;

static IpcMux *verify_mux;
static StrMap *deliverable_memo;   /* "<socket>\n<address>" → the monotonic time it expires */

static char *memo_key(const SmtpdSettings *st, const char *address) {
        char *k = NULL;
        return asprintf(&k, "%s\n%s", st->verify.socket, address) < 0 ? NULL : k;
}

/* true when postern-verify said "deliverable" for address less than VERIFY_MEMO_USEC ago */
static bool memo_deliverable(const SmtpdSettings *st, const char *address) {
        if (!deliverable_memo)
                return false;
        _cleanup_free_ char *k = memo_key(st, address);
        const uint64_t *until = k ? strmap_get(deliverable_memo, k) : NULL;
        return until && now_usec(CLOCK_MONOTONIC) < *until;
}

static void memo_remember(const SmtpdSettings *st, const char *address) {
        if (!deliverable_memo && !(deliverable_memo = strmap_new(free)))
                return;   /* no memo: every answer is asked for */
        if (strmap_size(deliverable_memo) >= VERIFY_MEMO_MAX)
                strmap_clear(deliverable_memo);
        _cleanup_free_ char *k = memo_key(st, address);
        uint64_t *until = malloc(sizeof(*until));
        if (!k || !until) {
                free(until);
                return;
        }
        *until = now_usec(CLOCK_MONOTONIC) + VERIFY_MEMO_USEC;
        if (strmap_put(deliverable_memo, k, until) < 0)
                free(until);
}

int smtpd_verify_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        const char *name = conf_get_listener(c, listener, "address_verify_service_name");
        if (isempty(name) || strchr(name, '/'))
                return log_error_errno(-EINVAL, "address_verify_service_name = %s: must be a socket name",
                                       strempty(name));
        s->verify.socket = daemon_socket_path(c, name);
        return s->verify.socket ? 0 : log_oom();
}

void smtpd_verify_settings_done(SmtpdSettings *s) {
        free(s->verify.socket);
        s->verify.socket = NULL;
}

void smtpd_verify_shutdown(void) {
        verify_mux = ipc_mux_free(verify_mux);
        deliverable_memo = strmap_free(deliverable_memo);
}

static const char *const labels[2] = { "Recipient address", "Sender address" };

/* "450 4.1.1 <a>: Recipient address rejected: <text>", with the tempfail action's prefix when
 * tempfail. Allocated. */
static char *answer(const SmtpdSettings *st, int who, int code, const char *address, const char *text, bool tempfail) {
        char dsn[32];
        snprintf(dsn, sizeof dsn, "%d.1.%d", code / 100, who ? 7 : 1);
        _cleanup_free_ char *reply = smtpd_reply_build(code, dsn, "<%s>: %s rejected: %s", address, labels[who], text);
        if (!reply)
                return NULL;
        if (!tempfail || !streq(strempty(st->verify.tempfail_action[who]), "defer_if_permit"))
                return TAKE_PTR(reply);
        char *out = NULL;
        if (asprintf(&out, "DEFER_IF_PERMIT %s", reply) < 0)
                return NULL;
        return out;
}

static char *unverified(const SmtpdSettings *st, int who, int code, const char *address, const char *why,
                        bool tempfail) {
        _cleanup_free_ char *text = NULL;
        if (asprintf(&text, "unverified address: %s", why) < 0)
                return NULL;
        return answer(st, who, code, address, text, tempfail);
}

static void op_free(VerifyOp *op) {
        if (!op)
                return;
        if (op->call)
                ipc_call_cancel(op->call);
        sd_event_source_disable_unref(op->timer);
        sd_event_unref(op->event);
        free(op->address);
        free(op);
}

static void finish(VerifyOp *op, char *action) {
        SmtpdHookDone done = op->done;
        void *ud = op->userdata;
        op->call = NULL;
        op_free(op);
        done(action, ud);
        free(action);
}

static int send_query(VerifyOp *op);

static int on_poll(sd_event_source *src, uint64_t usec, void *userdata) {
        VerifyOp *op = userdata;
        if (send_query(op) < 0) {
                log_warning("%s service failure: cannot ask about <%s>", "verify", op->address);
                finish(op, answer(op->st, op->who, 450, op->address, "address verification problem", true));
        }
        return 0;
}

static void on_reply(int error, const IpcRecord *reply, void *userdata) {
        VerifyOp *op = userdata;
        const SmtpdSettings *st = op->st;
        int who = op->who;
        op->call = NULL;

        const char *status = reply ? strempty(ipc_record_get(reply, "status")) : "";
        if (error < 0 || !streq(status, "ok")) {
                if (error < 0)
                        log_warning_errno(error, "verify service failure: <%s>: %m", op->address);
                else
                        log_warning("verify service failure: <%s>: %s", op->address,
                                    strempty(ipc_record_get(reply, "reason")));
                finish(op, answer(st, who, 450, op->address, "address verification problem", true));
                return;
        }
        const char *result = strempty(ipc_record_get(reply, "result"));
        const char *reason = strempty(ipc_record_get(reply, "reason"));
        if (streq(result, "deliverable")) {
                memo_remember(st, op->address);
                finish(op, NULL);
                return;
        }
        if (streq(result, "undeliverable")) {
                const char *why = !isempty(st->verify.reject_reason[who]) ? st->verify.reject_reason[who] : reason;
                finish(op, unverified(st, who, st->verify.reject_code[who], op->address, why, false));
                return;
        }
        if (streq(result, "pending") && op->polls_left > 1) {
                op->polls_left--;
                int r = op->timer ? sd_event_source_set_time_relative(op->timer, st->verify.poll_delay_usec) :
                        sd_event_add_time_relative(op->event, &op->timer, CLOCK_MONOTONIC,
                                                   st->verify.poll_delay_usec, 0, on_poll, op);
                if (r >= 0)
                        r = sd_event_source_set_enabled(op->timer, SD_EVENT_ONESHOT);
                if (r >= 0)
                        return;
        }
        finish(op, unverified(st, who, st->verify.defer_code[who], op->address,
                              streq(result, "pending") ? "Address verification in progress" : reason, true));
}

static int send_query(VerifyOp *op) {
        const char *path = op->st->verify.socket;
        if (verify_mux && !streq(ipc_mux_path(verify_mux), path) && ipc_mux_pending(verify_mux) == 0)
                verify_mux = ipc_mux_free(verify_mux);
        if (!verify_mux) {
                int r = ipc_mux_new(op->event, path, &verify_mux);
                if (r < 0)
                        return r;
        }
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        if (ipc_record_add(&req, "request", "query") < 0 || ipc_record_add(&req, "address", op->address) < 0)
                return -ENOMEM;
        return ipc_mux_call_async(verify_mux, &req, VERIFY_TIMEOUT_USEC, on_reply, op, &op->call);
}

/* Local and virtual classes: the routing tables decide. 1 with *ret_action when decided. */
static int decide_by_tables(const SmtpdSettings *st, int who, const char *address, char **ret_action) {
        const char *at = strrchr(address, '@');
        if (!at || !at[1])
                return 0;
        AddressClass cls;
        if (smtpd_address_class(st, at + 1, &cls) < 0) {
                *ret_action = smtpd_reply_build(451, "4.3.0", "<%s>: Temporary lookup failure", address);
                return 1;
        }
        if (cls != ADDR_CLASS_LOCAL && cls != ADDR_CLASS_VIRTUAL_ALIAS && cls != ADDR_CLASS_VIRTUAL_MAILBOX)
                return 0;
        _cleanup_free_ char *local = strndup(address, (size_t) (at - address));
        if (!local)
                return -ENOMEM;
        Address a = { .local = local, .domain = (char *) at + 1, .external = (char *) address };
        _cleanup_free_ char *reply = NULL;
        int r = smtpd_unlisted_check(st, &a, who == 1, &reply);
        if (r < 0)
                return r;
        if (r == 0) {
                *ret_action = NULL;
                return 1;
        }
        if (reply[0] != '5') {   /* a table failed: its 4xx as it is */
                *ret_action = TAKE_PTR(reply);
                return 1;
        }
        /* "550 5.1.1 <a>: Recipient address rejected: User unknown in ..." → its reason */
        const char *why = strstr(reply, " rejected: ");
        why = why ? why + strlen(" rejected: ") : reply;
        *ret_action = unverified(st, who, st->verify.reject_code[who], address, why, false);
        return 1;
}

static int verify_start(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a, SmtpdHookDone done,
                        void *userdata, SmtpdHookOp **ret_op, char **ret_action) {
        const SmtpdSettings *st = a->settings;
        int who = strstr(a->element, "sender") ? 1 : 0;

        if (isempty(a->subject)) {   /* the null sender is not verified */
                *ret_action = NULL;
                return 1;
        }
        int r = decide_by_tables(st, who, a->subject, ret_action);
        if (r != 0)
                return r;
        if (memo_deliverable(st, a->subject)) {
                *ret_action = NULL;
                return 1;
        }

        VerifyOp *op = calloc(1, sizeof(VerifyOp));
        if (!op || !(op->address = strdup(a->subject))) {
                free(op);
                return -ENOMEM;
        }
        op->done = done;
        op->userdata = userdata;
        op->st = st;
        op->who = who;
        op->event = sd_event_ref(a->server->event);
        op->polls_left = MAX(st->verify.poll_count, 1u);
        r = send_query(op);
        if (r < 0) {
                log_warning_errno(r, "verify service failure: cannot connect to %s: %m", st->verify.socket);
                op_free(op);
                *ret_action = answer(st, who, 450, a->subject, "address verification problem", true);
                return 1;
        }
        *ret_op = (SmtpdHookOp *) op;
        return 0;
}

static void verify_cancel(SmtpdHookOp *o) {
        op_free((VerifyOp *) o);
}

const SmtpdHook smtpd_hook_verify = { "verify", verify_start, verify_cancel };
