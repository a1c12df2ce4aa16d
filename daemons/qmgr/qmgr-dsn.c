/* qmgr-dsn.c — what qmgr does to a delivery agent's result before recording it, and the DSN
 * settings.
 *
 * qmgr_dsn_filter() applies <transport>_delivery_status_filter (smtp — also for relay and
 * master.cf smtp transports —, lmtp — also for master.cf lmtp transports —, local; any other
 * transport uses default_delivery_status_filter) to one result: the lookup key is
 * "d.d.d text" (status and diagnostic), and a found value "d.d.d text" replaces both. As in
 * Postfix a filter may turn 4.x.x into 5.x.x and back, or rewrite a success's text, but never
 * turns a success into a failure or the reverse (such results are ignored with a warning).
 * Results qmgr decides itself (error:, retry:, discard:, expiry) are not filtered.
 *
 * qmgr_dsn_soft_bounce() is soft_bounce = yes: a would-be bounce becomes a deferral whose
 * status class is 4 ("5.1.1" -> "4.1.1"). It runs after the filter, so a filter cannot undo it,
 * and before the expiry check, so expired mail is still returned. */
#include <ctype.h>
#include <string.h>

#include "conf/conf-fields.h"
#include "log/log.h"
#include "qmgr.h"

#define F(...) CONF_FIELD(QmgrSettings, __VA_ARGS__)
static const ConfField dsn_fields[] = {
        F("double_bounce_sender", STRING, double_bounce_sender),
        F("2bounce_notice_recipient", STRING, bounce_notice_recipient),
        F("confirm_delay_cleared", BOOL, confirm_delay_cleared),
        F("soft_bounce", BOOL, soft_bounce),
        F("delay_warning_time", USEC, delay_warning_time),
        F("default_delivery_status_filter", TABLES, status_filter_default),
        F("smtp_delivery_status_filter", TABLES, status_filter_smtp),
        F("lmtp_delivery_status_filter", TABLES, status_filter_lmtp),
        F("local_delivery_status_filter", TABLES, status_filter_local),
};
#undef F

/* Reads the DSN parameters into s (a fresh QmgrSettings being loaded). */
int qmgr_dsn_settings_load(QmgrSettings *s, Conf *c) {
        return conf_fields_load(c, NULL, dsn_fields, ELEMENTSOF(dsn_fields), s);
}

/* Frees what qmgr_dsn_settings_load() allocated. */
void qmgr_dsn_settings_done(QmgrSettings *s) {
        conf_fields_done(dsn_fields, ELEMENTSOF(dsn_fields), s);
}

/* Length of a leading "d.d.d" status (class 2, 4 or 5), 0 when there is none. */
static size_t status_length(const char *s) {
        if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
                return 0;
        size_t i = 2;
        for (int part = 0; part < 2; part++) {
                size_t d = 0;
                while (isdigit((unsigned char) s[i]) && d < 4)
                        i++, d++;
                if (d == 0 || d > 3)
                        return 0;
                if (part == 0 && s[i++] != '.')
                        return 0;
        }
        return (s[i] == '\0' || s[i] == ' ') ? i : 0;
}

static TableList *filter_for(const QmgrSettings *s, const char *transport) {
        /* relay and master.cf smtp/lmtp transports are smtp and lmtp clients too */
        const char *agent = qmgr_sched_agent(s, transport);
        if (streq(agent, "smtp"))
                return s->status_filter_smtp;
        if (streq(agent, "lmtp"))
                return s->status_filter_lmtp;
        if (streq(transport, "local"))
                return s->status_filter_local;
        return s->status_filter_default;
}

/* Applies the transport's delivery status filter to *dsn and *diag (and *state, when the class
 * changes between 4 and 5). New strings go to ret_dsn (16 bytes) and *ret_diag_owned (caller
 * frees); the pointers are redirected to them. */
void qmgr_dsn_filter(const QmgrSettings *s, const char *queue_id, const char *transport,
                     QueueRcptState *state, const char **dsn, const char **diag, char ret_dsn[16],
                     char **ret_diag_owned) {
        TableList *t = filter_for(s, transport);
        _cleanup_free_ char *key = NULL, *value = NULL;

        if (!t || !*dsn)
                return;
        if (asprintf(&key, "%s %s", *dsn, strempty(*diag)) < 0) {
                key = NULL;
                log_oom();
                return;
        }
        int r = table_list_lookup(t, key, &value);
        if (r < 0) {
                log_warning("%s: %s_delivery_status_filter lookup failed; the result is kept as is",
                            queue_id, transport);
                return;
        }
        if (r == 0)
                return;
        size_t n = status_length(value);
        if (n == 0) {
                log_warning("%s: %s_delivery_status_filter: result \"%s\" does not start with a "
                            "d.d.d status; ignored", queue_id, transport, value);
                return;
        }
        if ((value[0] == '2') != ((*dsn)[0] == '2')) {
                log_warning("%s: %s_delivery_status_filter: result \"%s\" would turn %s into %s; "
                            "a filter cannot change success into failure or back; ignored",
                            queue_id, transport, value, (*dsn)[0] == '2' ? "a success" : "a failure",
                            value[0] == '2' ? "a success" : "a failure");
                return;
        }
        const char *text = value + n;
        while (*text == ' ')
                text++;
        char *d = strdup(text);
        if (!d) {
                log_oom();
                return;
        }
        snprintf(ret_dsn, 16, "%.*s", (int) n, value);
        free(*ret_diag_owned);
        *ret_diag_owned = d;
        *dsn = ret_dsn;
        *diag = d;
        if (value[0] == '4' && *state == QUEUE_RCPT_BOUNCED)
                *state = QUEUE_RCPT_DEFERRED;
        else if (value[0] == '5' && *state == QUEUE_RCPT_DEFERRED)
                *state = QUEUE_RCPT_BOUNCED;
}

/* soft_bounce = yes: turns a bounce into a deferral with status class 4 (in place). */
void qmgr_dsn_soft_bounce(const QmgrSettings *s, QueueRcptState *state, char **dsn_status) {
        if (!s->soft_bounce || *state != QUEUE_RCPT_BOUNCED)
                return;
        *state = QUEUE_RCPT_DEFERRED;
        if (*dsn_status && (*dsn_status)[0] == '5')
                (*dsn_status)[0] = '4';
}

/* The host name in an agent's relay attribute ("host[addr]:port"), or NULL (caller frees). */
char *qmgr_dsn_relay_host(const char *relay) {
        if (isempty(relay) || streq(relay, "none"))
                return NULL;
        size_t n = strcspn(relay, "[");
        if (n == 0 || n > 255)
                return NULL;
        return strndup(relay, n);
}

/* Applies soft_bounce and keeps the DSN facts of a result (relayed, Remote-MTA) in rc. */
void qmgr_dsn_note_result(Qmgr *q, QueueRecipient *rc, const QmgrResult *res) {
        qmgr_dsn_soft_bounce(&q->s, &rc->state, &rc->dsn_status);
        if (res->relayed)
                rc->flags |= QUEUE_RCPT_F_RELAYED;
        else if (res->state == QUEUE_RCPT_DELIVERED)
                rc->flags &= ~(unsigned) QUEUE_RCPT_F_RELAYED;
        char *mta = res->remote_mta ? strdup(res->remote_mta) : NULL;
        free(rc->remote_mta);
        rc->remote_mta = mta;
}
