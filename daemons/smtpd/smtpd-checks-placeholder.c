/* smtpd-checks-placeholder.c — stands in for smtpd-dnsbl.c and smtpd-policy.c (written in
 * parallel) so the restriction engine's asynchronous path builds and is tested: every DNS and
 * policy check answers "DUNNO", from a deferred event as the real ones do (after
 * $POSTERN_TEST_CHECK_DELAY_MS milliseconds when set, so tests can see a session wait). The lead
 * deletes this file when the real implementations are merged. */
#include <stdlib.h>

#include "smtpd.h"
#include "log/log.h"

struct SmtpdCheck {
        Session *session;
        sd_event_source *source;
        SmtpdCheckDone done;
        void *userdata;
};

static int on_defer(sd_event_source *src, void *userdata) {
        SmtpdCheck *op = userdata;
        Session *s = op->session;
        SmtpdCheckDone done = op->done;
        void *ud = op->userdata;

        sd_event_source_disable_unref(op->source);
        free(op);
        done(s, "DUNNO", ud);
        return 0;
}

static int on_time(sd_event_source *src, uint64_t usec, void *userdata) {
        return on_defer(src, userdata);
}

static int start(Session *s, SmtpdCheckDone done, void *userdata, SmtpdCheck **ret) {
        const char *delay = getenv("POSTERN_TEST_CHECK_DELAY_MS");
        SmtpdCheck *op = calloc(1, sizeof(SmtpdCheck));
        if (!op)
                return -ENOMEM;
        *op = (SmtpdCheck) { .session = s, .done = done, .userdata = userdata };
        int r = delay ? sd_event_add_time_relative(s->server->event, &op->source, CLOCK_MONOTONIC,
                                                   (uint64_t) atoi(delay) * 1000, 0, on_time, op) :
                sd_event_add_defer(s->server->event, &op->source, on_defer, op);
        if (r < 0) {
                free(op);
                return r;
        }
        *ret = op;
        return 0;
}

int smtpd_check_dns_start(Session *s, const char *what, const char *arg, const char *subject,
                          SmtpdCheckDone done, void *userdata, SmtpdCheck **ret) {
        log_debug("placeholder: %s %s for %s: DUNNO", what, strempty(arg), strempty(subject));
        return start(s, done, userdata, ret);
}

int smtpd_check_policy_start(Session *s, const char *service, const char *protocol_state,
                             const char *sender, const char *recipient,
                             SmtpdCheckDone done, void *userdata, SmtpdCheck **ret) {
        log_debug("placeholder: check_policy_service %s at %s: DUNNO", service, protocol_state);
        return start(s, done, userdata, ret);
}

void smtpd_check_cancel(SmtpdCheck *op) {
        if (!op)
                return;
        sd_event_source_disable_unref(op->source);
        free(op);
}
