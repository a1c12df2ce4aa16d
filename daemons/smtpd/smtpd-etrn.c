/* smtpd-etrn.c — ETRN (RFC 1985): a client asks that the mail queued for its domain be sent now.
 * postern-smtpd checks the request and hands it to postern-qmgr as a flush of that domain
 * (request=flush site=<domain>, qmgr-flush.c), which retries only the deferred recipients at it
 * and revives the destinations suspended as dead. The mail goes out over new connections, never
 * the one that sent ETRN. Replies, as Postfix's:
 *
 *   250 Queuing started                         qmgr took the flush
 *   458 4.3.0 Unable to queue messages          qmgr unreachable, fast_flush_domains lookup
 *                                               failure, or "#queue" (queue names: unsupported)
 *   459 4.3.0 <domain>: service unavailable     the domain is not in fast_flush_domains
 *   501 5.5.4 Syntax: ETRN domain               no argument, or more than one
 *   501 5.1.2 Error: invalid parameter syntax   not a domain name or address literal
 *   503 5.5.1 Error: send HELO/EHLO first       (always required for ETRN, as in Postfix)
 *   503 5.5.1 Error: MAIL transaction in progress
 *
 * and the refusals of smtpd_etrn_restrictions ("<domain>: Etrn command rejected: ..."), which
 * are evaluated by smtpd-check.c after the client and HELO restrictions when smtpd_delay_reject
 * = yes, as in Postfix. "@domain" (RFC 1985: the domain and its subdomains) flushes the
 * subdomains too. On the submit listener (local sendmail) no restrictions apply.
 * Parameters: fast_flush_domains (default $relay_domains; parent_domain_matches_subdomains
 * decides whether a listed parent covers subdomains), smtpd_etrn_restrictions. Logs
 * "ETRN <domain> from <client>: queuing started" or the reason it was not. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "smtpd.h"

#define ETRN_QMGR_TIMEOUT_USEC (10 * USEC_PER_SEC)

int smtpd_etrn_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **restrictions = conf_get_list(c, listener, "smtpd_etrn_restrictions");
        _cleanup_strv_free_ char **domains = conf_get_list(c, listener, "fast_flush_domains");
        _cleanup_strv_free_ char **pdms = conf_get_list(c, listener, "parent_domain_matches_subdomains");
        _cleanup_free_ char *why = NULL;
        bool parent = false;
        int r;

        if (!restrictions || !domains || !pdms)
                return log_oom();
        r = smtpd_restrictions_compile("smtpd_etrn_restrictions", restrictions, s->classes, s->n_classes,
                                       &s->etrn_restrictions);
        if (r < 0)
                return r;
        for (char **i = pdms; *i; i++)
                parent = parent || streq(*i, "fast_flush_domains");
        r = domain_list_init(&s->fast_flush_domains, domains, parent, &why);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error_errno(r, "fast_flush_domains: %s; answering ETRN with 458", why ? why : "unusable");
                s->fast_flush_domains_error = r;
        }
        s->qmgr_socket = daemon_socket_path(c, "qmgr");
        return s->qmgr_socket ? 0 : log_oom();
}

void smtpd_etrn_settings_done(SmtpdSettings *s) {
        smtpd_restrictions_done(&s->etrn_restrictions);
        domain_list_done(&s->fast_flush_domains);
        free(s->qmgr_socket);
        s->qmgr_socket = NULL;
}

/* The flush request in flight, owned by the session's wait. */
typedef struct EtrnCall {
        Session *session;
        IpcCall *call;
        char domain[256];
} EtrnCall;

static void etrn_cancel(void *userdata) {
        EtrnCall *e = userdata;
        ipc_call_cancel(e->call);
        free(e);
}

static void etrn_replied(int error, const IpcRecord *reply, void *userdata) {
        EtrnCall *e = userdata;
        Session *s = e->session;
        const char *status = error >= 0 && reply ? ipc_record_get(reply, "status") : NULL;

        session_resume(s, SESSION_RESUME_ONLY);
        if (status && streq(status, "ok")) {
                log_info("ETRN %s from %s: queuing started", e->domain, s->client.id_text);
                session_reply(s, "250 Queuing started");
        } else {
                const char *reason = reply ? ipc_record_get(reply, "reason") : NULL;
                log_warning("ETRN %s from %s: the queue manager at %s %s: %s", e->domain, s->client.id_text,
                            s->settings->qmgr_socket, error < 0 ? "cannot be reached" : "refused",
                            error < 0 ? strerror(-error) : strna(reason));
                session_reply(s, "458 4.3.0 Unable to queue messages");
        }
        free(e);
        session_resume(s, SESSION_RESUME_INPUT);
}

/* After the restrictions: fast_flush_domains, then the flush. */
static void etrn_checked(Session *s, const char *arg, bool accepted) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT;
        bool subdomains = arg[0] == '@';
        const char *domain = arg + subdomains;
        int r;

        if (!accepted)
                return;   /* answered and logged by the restriction engine */
        r = s->settings->fast_flush_domains_error;
        if (r >= 0)
                r = domain_list_match(&s->settings->fast_flush_domains, domain);
        if (r < 0) {
                log_warning("ETRN %s from %s: fast_flush_domains lookup failed", domain, s->client.id_text);
                session_reply(s, "458 4.3.0 Unable to queue messages");
                return;
        }
        if (r == 0) {
                log_info("ETRN %s from %s: not in fast_flush_domains", domain, s->client.id_text);
                session_reply(s, "459 4.3.0 <%s>: service unavailable", domain);
                return;
        }

        EtrnCall *e = calloc(1, sizeof(EtrnCall));
        if (!e) {
                log_oom();
                session_reply(s, "458 4.3.0 Unable to queue messages");
                return;
        }
        e->session = s;
        snprintf(e->domain, sizeof e->domain, "%s", domain);
        r = ipc_record_add(&req, "request", "flush");
        if (r >= 0)
                r = ipc_record_add(&req, "site", domain);
        if (r >= 0 && subdomains)
                r = ipc_record_add(&req, "subdomains", "yes");
        if (r >= 0)
                r = ipc_client_call_async(s->server->event, s->settings->qmgr_socket, &req,
                                          ETRN_QMGR_TIMEOUT_USEC, etrn_replied, e, &e->call);
        if (r < 0) {
                log_warning("ETRN %s from %s: the queue manager at %s cannot be reached: %s", domain,
                            s->client.id_text, s->settings->qmgr_socket, strerror(-r));
                free(e);
                session_reply(s, "458 4.3.0 Unable to queue messages");
                return;
        }
        session_wait(s, etrn_cancel, e);
}

bool smtpd_etrn_command(Session *s, char *arg) {
        _cleanup_free_ char *normal = NULL, *site = NULL;
        const char *reason = NULL;

        if (!s->client.helo) {
                session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
                return false;
        }
        if (s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
                return false;
        }
        while (*arg == ' ')
                arg++;
        size_t l = strlen(arg);
        while (l > 0 && arg[l - 1] == ' ')
                arg[--l] = '\0';
        if (l == 0 || strchr(arg, ' ')) {
                session_reply(s, "501 5.5.4 Syntax: ETRN domain");
                return false;
        }
        if (arg[0] == '#') {
                session_reply(s, "458 4.3.0 Unable to queue messages");
                return false;
        }
        bool subdomains = arg[0] == '@';
        if (domain_normalise(arg + subdomains, false, &normal, &reason) < 0 || isempty(normal)) {
                session_reply(s, "501 5.1.2 Error: invalid parameter syntax");
                return false;
        }
        if (asprintf(&site, "%s%s", subdomains ? "@" : "", normal) < 0) {
                site = NULL;
                session_reply(s, "458 4.3.0 Unable to queue messages");
                return false;
        }
        if (s->listener->kind == LISTENER_SUBMIT)
                etrn_checked(s, site, true);
        else
                smtpd_check_run(s, STAGE_ETRN, site, etrn_checked);
        return true;
}
