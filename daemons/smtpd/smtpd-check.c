/* smtpd-check.c — the restriction engine: evaluates the compiled restriction classes of one
 * SMTP stage, resumably, so that an asynchronous element (DNS list, unknown-domain check,
 * policy service) can pause the session and the list continues where it stopped.
 *
 * Postfix's rules: the classes of a stage are evaluated in order (with smtpd_delay_reject = yes,
 * RCPT runs client, HELO, sender, relay, recipient; otherwise each runs at its own command);
 * in a class the first element that decides wins: OK/permit ends only that class, a refusal
 * ends the evaluation. DEFER_IF_PERMIT is remembered and answers if nothing refuses by the end;
 * DEFER_IF_REJECT turns a later 5xx refusal into its 4xx; warn_if_reject makes the next
 * element's refusal a logged "reject_warning". A table value may itself be a restriction list,
 * and a word of smtpd_restriction_classes stands for its list (nested up to MAX_DEPTH).
 *
 * The elements that look something up are hooks (smtpd.h): check_*_access (smtpd_hook_access,
 * answered at once), DNS checks, policy services and address verification (smtpd_hook_dns,
 * smtpd_hook_policy, smtpd_hook_verify, answered later). run_hook() starts one and applies its answer, at once or when it arrives;
 * access and policy answers go through smtpd_access_apply() alike. VRFY skips the hooks that
 * would wait.
 *
 * smtpd_check_run() always ends in finish(s, rcpt, accepted), either before it returns or,
 * after an asynchronous element, from the event loop while the session waits (session_wait):
 * the refusal, if any, has then already been answered (with its footer) and logged. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/address.h"

#define MAX_DEPTH 8

typedef enum ClassKind {
        CLASS_CLIENT, CLASS_HELO, CLASS_SENDER, CLASS_RELAY, CLASS_RECIPIENT, CLASS_DATA, CLASS_EOD,
        CLASS_ETRN,
} ClassKind;

typedef enum Result { RES_DUNNO, RES_OK, RES_REJECT, RES_ASYNC } Result;

typedef struct Frame {
        const RestrictionList *list;
        size_t i;
        RestrictionList owned;   /* a list found in a table, freed with the frame */
} Frame;

typedef struct SmtpdEval {
        Session *s;
        CheckStage stage;
        SmtpdCheckFinish finish;
        bool sync;               /* VRFY: no asynchronous elements, reply returned, not sent */
        bool waiting;            /* session_wait() was called */
        char *rcpt;
        Address *rcpt_addr;
        Address *sender_addr;
        ClassKind classes[5];
        size_t n_classes, ci;
        ClassKind cur;
        bool in_class;
        Frame stack[MAX_DEPTH];
        size_t depth;
        char *reply;
        char *defer_if_permit, *defer_if_reject;
        bool warn_next, warn_async;
        bool checked_local, checked_sender;
        const SmtpdHook *op_hook;    /* the hook running op for op_elem */
        SmtpdHookOp *op;
        const RestrictionElem *op_elem;
        bool lookup_wait;            /* waiting for server table answers (table_memo_wait) */
        bool prefetched;             /* prefetch() ran */
} SmtpdEval;

static const char *const class_labels[] = {
        [CLASS_CLIENT] = "Client host", [CLASS_HELO] = "Helo command", [CLASS_SENDER] = "Sender address",
        [CLASS_RELAY] = "Recipient address", [CLASS_RECIPIENT] = "Recipient address",
        [CLASS_DATA] = "Data command", [CLASS_EOD] = "End-of-data", [CLASS_ETRN] = "Etrn command",
};

static const RestrictionList *class_list(const SmtpdSettings *st, ClassKind k) {
        switch (k) {
        case CLASS_CLIENT:    return &st->client_restrictions;
        case CLASS_HELO:      return &st->helo_restrictions;
        case CLASS_SENDER:    return &st->sender_restrictions;
        case CLASS_RELAY:     return &st->relay_restrictions;
        case CLASS_RECIPIENT: return &st->recipient_restrictions;
        case CLASS_DATA:      return &st->data_restrictions;
        case CLASS_EOD:       return &st->end_of_data_restrictions;
        case CLASS_ETRN:      return &st->etrn_restrictions;
        }
        return NULL;
}

static const char *class_entity(SmtpdEval *e, ClassKind k) {
        Session *s = e->s;
        switch (k) {
        case CLASS_CLIENT:    return s->client.id_text;
        case CLASS_HELO:      return strempty(s->client.helo);
        case CLASS_SENDER:    return strempty(s->tx.sender);
        case CLASS_RELAY:
        case CLASS_RECIPIENT: return strempty(e->rcpt);
        case CLASS_DATA:      return "DATA";
        case CLASS_EOD:       return "END-OF-MESSAGE";
        case CLASS_ETRN:      return strempty(e->rcpt);   /* the domain */
        }
        return "";
}

static void eval_free(SmtpdEval *e) {
        if (!e)
                return;
        if (e->op)
                e->op_hook->cancel(e->op);
        if (e->lookup_wait && e->s)
                table_memo_unwait(e->s->tx.lookups);
        while (e->depth > 0)
                smtpd_restrictions_done(&e->stack[--e->depth].owned);
        if (e->s && e->s->eval == e)
                e->s->eval = NULL;
        free(e->rcpt);
        address_free(e->rcpt_addr);
        address_free(e->sender_addr);
        free(e->reply);
        free(e->defer_if_permit);
        free(e->defer_if_reject);
        free(e);
}

static void set_reply(SmtpdEval *e, char *reply) {
        free(e->reply);
        e->reply = reply ? reply : strdup("451 4.3.0 Error: out of memory");
}

static void reply_fmt(SmtpdEval *e, int code, const char *dsn, const char *entity, const char *label,
                      const char *text) {
        set_reply(e, smtpd_reply_build(code, dsn, "<%s>: %s rejected: %s", entity, label, text));
}

static void lookup_failure(SmtpdEval *e, const char *entity) {
        set_reply(e, smtpd_reply_build(451, "4.3.0", "<%s>: Temporary lookup failure", entity));
}

static bool push(SmtpdEval *e, const RestrictionList *l, RestrictionList owned) {
        if (e->depth >= MAX_DEPTH) {
                log_warning("restriction lists nested deeper than %d levels; answering 451 4.3.5", MAX_DEPTH);
                smtpd_restrictions_done(&owned);
                set_reply(e, strdup("451 4.3.5 Server configuration error"));
                return false;
        }
        Frame *f = &e->stack[e->depth++];
        *f = (Frame) { .owned = owned };
        f->list = owned.v ? &f->owned : l;
        return true;
}

/* ---- access(5) values ------------------------------------------------------------------- */

static Result apply_value(SmtpdEval *e, const char *value, const char *entity, const char *label) {
        _cleanup_free_ char *text = NULL;
        if (table_memo_guessing())
                return RES_DUNNO;   /* a value found after a guess: not acted on, the element runs again */
        switch (smtpd_access_apply(e->s, e->stage, e->rcpt, value, entity, label, &text)) {
        case ACCESS_OK:
                return RES_OK;
        case ACCESS_DUNNO:
                return RES_DUNNO;
        case ACCESS_REJECT:
                set_reply(e, TAKE_PTR(text));
                return RES_REJECT;
        case ACCESS_DEFER_IF_PERMIT:
                if (!e->defer_if_permit)
                        e->defer_if_permit = TAKE_PTR(text);
                return RES_DUNNO;
        case ACCESS_DEFER_IF_REJECT:
                if (!e->defer_if_reject)
                        e->defer_if_reject = TAKE_PTR(text);
                return RES_DUNNO;
        case ACCESS_LIST: {
                _cleanup_strv_free_ char **words = conf_split_list(text);
                RestrictionList l = {};
                const SmtpdSettings *st = e->s->settings;
                if (!words || smtpd_restrictions_compile("access table result", words, st->classes,
                                                         st->n_classes, &l) < 0 || l.n == 0) {
                        log_warning("access table result \"%s\" for <%s> is not a valid action or restriction "
                                    "list", text, entity);
                        smtpd_restrictions_done(&l);
                        set_reply(e, strdup("451 4.3.5 Server configuration error"));
                        return RES_REJECT;
                }
                return push(e, NULL, l) ? RES_DUNNO : RES_REJECT;
        }
        }
        return RES_DUNNO;
}

/* ---- the synchronous elements -------------------------------------------------------------- */

/* reject_unauth_destination: every address class but the default one is ours to accept. */
static bool domain_authorised(SmtpdEval *e, const char *domain, int *ret_err) {
        AddressClass c = ADDR_CLASS_DEFAULT;
        *ret_err = smtpd_address_class(e->s->settings, domain, &c);
        return *ret_err >= 0 && c != ADDR_CLASS_DEFAULT;
}

/* reject_unlisted_recipient / _sender: the table of the address's class (smtpd-recipient.c). */
static Result check_unlisted(SmtpdEval *e, const Address *a, bool sender) {
        char *reply = NULL;
        /* receive_override_options = no_unknown_recipient_checks: explicit and implicit */
        if (!sender && e->s->settings->no_unknown_recipient_checks)
                return RES_DUNNO;
        int r = smtpd_unlisted_check(e->s->settings, a, sender, &reply);
        if (r == 0 || r == -EINPROGRESS)   /* -EINPROGRESS: eval_loop() runs it again */
                return RES_DUNNO;
        set_reply(e, r < 0 ? NULL : reply);
        return RES_REJECT;
}

static bool hostname_valid(const char *h) {
        if (h[0] == '[') {
                _cleanup_free_ char *n = NULL;
                const char *why = NULL;
                return domain_normalise(h, false, &n, &why) >= 0;
        }
        size_t len = strlen(h);
        if (len == 0 || len > 255)
                return false;
        size_t label = 0;
        for (const char *p = h; *p; p++) {
                if (*p == '.') {
                        if (label == 0 && p[1])
                                return false;
                        label = 0;
                } else if (isalnum((unsigned char) *p) || *p == '-' || *p == '_') {
                        if (++label > 63)
                                return false;
                } else
                        return false;
        }
        return !(h[0] == '-');
}

static bool hostname_fqdn(const char *h) {
        if (h[0] == '[')
                return true;
        const char *dot = strchr(h, '.');
        return dot && dot > h && dot[1];
}

static bool address_fqdn(const Address *a) {
        return a->domain && (a->domain[0] == '[' || hostname_fqdn(a->domain));
}

static Result check_login_mismatch(SmtpdEval *e, Restriction k) {
        Session *s = e->s;
        const SmtpdSettings *st = s->settings;
        const Address *a = e->sender_addr;

        if (!a || isempty(a->external) || !st->sender_login_maps)
                return RES_DUNNO;
        _cleanup_free_ char *owners = NULL;
        int r = table_list_lookup(st->sender_login_maps, a->external, &owners);
        if (r == 0 && a->domain) {
                _cleanup_free_ char *at = NULL;
                if (asprintf(&at, "@%s", a->domain) >= 0)
                        r = table_list_lookup(st->sender_login_maps, at, &owners);
        }
        if (r < 0) {
                lookup_failure(e, a->external);
                return RES_REJECT;
        }
        bool known = r > 0, owned = false;
        if (known && s->client.sasl_username) {
                _cleanup_strv_free_ char **v = conf_split_list(owners);
                for (char **i = v; i && *i && !owned; i++)
                        owned = strcaseeq(*i, s->client.sasl_username);
        }
        bool check_auth = k == RESTRICT_SENDER_LOGIN_MISMATCH || k == RESTRICT_AUTH_SENDER_LOGIN_MISMATCH ||
                (k == RESTRICT_KNOWN_SENDER_LOGIN_MISMATCH && known);
        bool check_unauth = k == RESTRICT_SENDER_LOGIN_MISMATCH || k == RESTRICT_UNAUTH_SENDER_LOGIN_MISMATCH ||
                k == RESTRICT_KNOWN_SENDER_LOGIN_MISMATCH;
        if (s->client.sasl_username && check_auth && !owned) {
                _cleanup_free_ char *t = NULL;
                if (asprintf(&t, "not owned by user %s", s->client.sasl_username) < 0)
                        t = NULL;
                reply_fmt(e, 553, "5.7.1", a->external, "Sender address", t ? t : "not owned by user");
                return RES_REJECT;
        }
        if (!s->client.sasl_username && check_unauth && known) {
                reply_fmt(e, 553, "5.7.1", a->external, "Sender address", "not logged in");
                return RES_REJECT;
        }
        return RES_DUNNO;
}

/* ---- hooks: access tables, DNS checks, policy services -------------------------------------- */

static void eval_resume(SmtpdEval *e);
static void handle_result(SmtpdEval *e, Result r, bool warn);

/* A DNS check's result is final wording (see smtpd.h): "OK", a complete reply to send as it
 * is, or "DEFER_IF_PERMIT " and a complete reply to keep until the end of the evaluation. */
static Result apply_dns_result(SmtpdEval *e, const RestrictionElem *el, const char *result) {
        if (strcaseeq(result, "OK"))
                return RES_OK;
        const char *deferred = startswith(result, "DEFER_IF_PERMIT ");
        const char *reply = deferred ? deferred : result;
        if (!((reply[0] == '4' || reply[0] == '5') && isdigit((unsigned char) reply[1]) &&
              isdigit((unsigned char) reply[2]) && reply[3] == ' ')) {
                log_warning("%s: unexpected DNS check result \"%s\"; answering 451 4.3.5", el->name, result);
                set_reply(e, strdup("451 4.3.5 Server configuration error"));
                return RES_REJECT;
        }
        if (deferred) {
                if (!e->defer_if_permit && !(e->defer_if_permit = strdup(reply))) {
                        set_reply(e, NULL);
                        return RES_REJECT;
                }
                return RES_DUNNO;
        }
        set_reply(e, strdup(reply));
        return RES_REJECT;
}

/* A hook's answer: DNS results are final wording; access table values and policy answers are
 * access(5) actions for entity, with the label of their lookup or class. */
static Result apply_action(SmtpdEval *e, const RestrictionElem *el, const char *action, const char *entity,
                           const char *label) {
        if (!action || strcaseeq(action, "DUNNO"))
                return RES_DUNNO;
        if (el->kind == RESTRICT_DNS || el->kind == RESTRICT_VERIFY)
                return apply_dns_result(e, el, action);
        return apply_value(e, action, entity, label);
}

static void on_check_done(const char *action, void *userdata) {
        SmtpdEval *e = userdata;

        e->op = NULL;
        handle_result(e, apply_action(e, e->op_elem, action, class_entity(e, e->cur), class_labels[e->cur]),
                      e->warn_async);
        eval_resume(e);
}

static void on_wait_cancel(void *userdata) {
        SmtpdEval *e = userdata;
        if (e->lookup_wait)
                table_memo_unwait(e->s->tx.lookups);
        e->lookup_wait = false;
        e->s = NULL;   /* the session is going away */
        eval_free(e);
}

/* Runs one element's hook: its answer at once, or a wait (RES_ASYNC) for hooks that answer
 * later. entity and label word the refusal of an answer given at once. */
static Result run_hook(SmtpdEval *e, const RestrictionElem *el, const SmtpdHook *h, const SmtpdHookArgs *a,
                       const char *entity, const char *label) {
        Session *s = e->s;
        _cleanup_free_ char *action = NULL;
        SmtpdHookOp *op = NULL;

        int r = h->start(&s->client, &s->tx, a, on_check_done, e, &op, &action);
        if (r < 0) {
                if (h->cancel)   /* a hook that answers at once logs its own failures */
                        log_warning_errno(r, "%s %s: cannot start the check: %m", el->name, strempty(el->arg));
                if (r == -ENOMEM && !h->cancel)
                        set_reply(e, NULL);
                else
                        lookup_failure(e, entity);
                return RES_REJECT;
        }
        if (r > 0)
                return apply_action(e, el, action, entity, label);
        e->op_hook = h;
        e->op = op;
        e->op_elem = el;
        if (!e->waiting) {
                e->waiting = true;
                s->eval = e;
                session_wait(s, on_wait_cancel, e);
        }
        return RES_ASYNC;
}

static SmtpdHookArgs hook_args(SmtpdEval *e, const RestrictionElem *el, const char *subject) {
        return (SmtpdHookArgs) {
                .settings = e->s->settings, .server = e->s->server, .stage = e->stage, .element = el->name,
                .arg = el->arg, .subject = subject, .recipient = e->rcpt, .table = el->table,
        };
}

/* check_*_access: subject is the HELO name, sender or recipient (NULL: the client). */
static Result check_access(SmtpdEval *e, const RestrictionElem *el, const char *subject, const char *label) {
        const SmtpdHookArgs args = hook_args(e, el, subject);
        return run_hook(e, el, &smtpd_hook_access, &args, subject ? subject : e->s->client.id_text, label);
}

/* DNS checks and policy services; skipped by VRFY, which cannot wait. */
static Result start_async(SmtpdEval *e, const RestrictionElem *el) {
        Session *s = e->s;
        const char *subject = NULL;

        if (e->sync)
                return RES_DUNNO;
        if (el->kind == RESTRICT_DNS) {
                if (strstr(el->name, "sender")) {
                        if (!e->sender_addr || isempty(e->sender_addr->external))
                                return RES_DUNNO;
                        subject = e->sender_addr->external;
                } else if (strstr(el->name, "recipient")) {
                        if (!e->rcpt)
                                return RES_DUNNO;
                        subject = e->rcpt;
                } else if (strstr(el->name, "helo")) {
                        if (!s->client.helo)
                                return RES_DUNNO;
                        subject = s->client.helo;
                }
        }
        if (el->kind == RESTRICT_VERIFY) {
                /* reject_unverified_sender / _recipient: the address itself */
                const Address *a = strstr(el->name, "sender") ? e->sender_addr : e->rcpt_addr;
                if (!a || isempty(a->external))
                        return RES_DUNNO;
                subject = a->external;
        }
        const SmtpdHookArgs args = hook_args(e, el, subject);
        return run_hook(e, el, el->kind == RESTRICT_DNS ? &smtpd_hook_dns :
                        el->kind == RESTRICT_VERIFY ? &smtpd_hook_verify : &smtpd_hook_policy, &args,
                        class_entity(e, e->cur), class_labels[e->cur]);
}

/* ---- the evaluation loop ------------------------------------------------------------------- */

static Result eval_element(SmtpdEval *e, const RestrictionElem *el) {
        Session *s = e->s;
        const SmtpdSettings *st = s->settings;
        const char *entity = class_entity(e, e->cur), *label = class_labels[e->cur];
        int err = 0, r;

        switch (el->kind) {
        case RESTRICT_PERMIT:
                return RES_OK;
        case RESTRICT_REJECT:
                reply_fmt(e, st->reject_code, "5.7.1", entity, label, "Access denied");
                return RES_REJECT;
        case RESTRICT_DEFER:
                reply_fmt(e, st->defer_code, "4.7.1", entity, label, "Access denied");
                return RES_REJECT;
        case RESTRICT_DEFER_IF_PERMIT:
                if (!e->defer_if_permit)
                        e->defer_if_permit = smtpd_reply_build(st->defer_code, "4.7.1", "<%s>: %s rejected: %s",
                                                               entity, label, "Access denied");
                return RES_DUNNO;
        case RESTRICT_DEFER_IF_REJECT:
                if (!e->defer_if_reject)
                        e->defer_if_reject = smtpd_reply_build(st->defer_code, "4.7.1", "<%s>: %s rejected: %s",
                                                               entity, label, "Access denied");
                return RES_DUNNO;
        case RESTRICT_WARN_IF_REJECT:
                e->warn_next = true;
                return RES_DUNNO;
        case RESTRICT_PERMIT_MYNETWORKS:
                r = smtpd_netlist_match(&st->mynetworks, &s->client);
                if (r < 0) {
                        lookup_failure(e, entity);
                        return RES_REJECT;
                }
                return r > 0 ? RES_OK : RES_DUNNO;
        case RESTRICT_PERMIT_SASL_AUTHENTICATED:
                return s->client.sasl_username ? RES_OK : RES_DUNNO;
        case RESTRICT_REJECT_UNAUTH_DESTINATION:
        case RESTRICT_DEFER_UNAUTH_DESTINATION:
        case RESTRICT_PERMIT_AUTH_DESTINATION: {
                if (!e->rcpt_addr || !e->rcpt_addr->domain)
                        return RES_DUNNO;
                bool ok = domain_authorised(e, e->rcpt_addr->domain, &err);
                if (err < 0) {
                        lookup_failure(e, e->rcpt);
                        return RES_REJECT;
                }
                if (el->kind == RESTRICT_PERMIT_AUTH_DESTINATION)
                        return ok ? RES_OK : RES_DUNNO;
                if (ok)
                        return RES_DUNNO;
                if (el->kind == RESTRICT_DEFER_UNAUTH_DESTINATION)
                        set_reply(e, smtpd_reply_build(454, "4.7.1", "<%s>: Relay access denied", e->rcpt));
                else
                        set_reply(e, smtpd_reply_build(st->relay_code, "5.7.1", "<%s>: Relay access denied", e->rcpt));
                return RES_REJECT;
        }
        case RESTRICT_REJECT_UNLISTED_RECIPIENT:
                if (!e->rcpt_addr || e->checked_local)
                        return RES_DUNNO;
                e->checked_local = true;
                return check_unlisted(e, e->rcpt_addr, false);
        case RESTRICT_REJECT_UNLISTED_SENDER:
                if (!e->sender_addr || e->checked_sender)
                        return RES_DUNNO;
                e->checked_sender = true;
                return check_unlisted(e, e->sender_addr, true);
        case RESTRICT_REJECT_NON_FQDN_HELO:
                if (!s->client.helo || hostname_fqdn(s->client.helo))
                        return RES_DUNNO;
                reply_fmt(e, st->non_fqdn_code, "5.5.2", s->client.helo, "Helo command", "need fully-qualified hostname");
                return RES_REJECT;
        case RESTRICT_REJECT_INVALID_HELO:
                if (!s->client.helo || hostname_valid(s->client.helo))
                        return RES_DUNNO;
                reply_fmt(e, st->invalid_hostname_code, "5.5.2", s->client.helo, "Helo command", "Invalid name");
                return RES_REJECT;
        case RESTRICT_REJECT_NON_FQDN_SENDER:
                if (!e->sender_addr || isempty(e->sender_addr->external) || address_fqdn(e->sender_addr))
                        return RES_DUNNO;
                reply_fmt(e, st->non_fqdn_code, "5.5.2", e->sender_addr->external, "Sender address",
                          "need fully-qualified address");
                return RES_REJECT;
        case RESTRICT_REJECT_NON_FQDN_RECIPIENT:
                if (!e->rcpt_addr || address_fqdn(e->rcpt_addr))
                        return RES_DUNNO;
                reply_fmt(e, st->non_fqdn_code, "5.5.2", e->rcpt, "Recipient address", "need fully-qualified address");
                return RES_REJECT;
        case RESTRICT_CHECK_CLIENT_ACCESS:
        case RESTRICT_CHECK_REVERSE_CLIENT_ACCESS:
                return s->client.family ? check_access(e, el, NULL, "Client host") : RES_DUNNO;
        case RESTRICT_CHECK_HELO_ACCESS:
                return s->client.helo ? check_access(e, el, s->client.helo, "Helo command") : RES_DUNNO;
        case RESTRICT_CHECK_SENDER_ACCESS:
                return s->tx.sender ? check_access(e, el, s->tx.sender, "Sender address") : RES_DUNNO;
        case RESTRICT_CHECK_RECIPIENT_ACCESS:
                return e->rcpt_addr ? check_access(e, el, e->rcpt, "Recipient address") : RES_DUNNO;
        case RESTRICT_CHECK_SASL_ACCESS:
                return s->client.sasl_username ? check_access(e, el, s->client.sasl_username, "SASL login name") : RES_DUNNO;
        case RESTRICT_CHECK_CCERT_ACCESS:
                return s->client.ccert ? check_access(e, el, NULL, "Client certificate") : RES_DUNNO;
        case RESTRICT_PERMIT_TLS_CLIENTCERTS:
        case RESTRICT_PERMIT_TLS_ALL_CLIENTCERTS:
                r = smtpd_tls_clientcert_permitted(s, el->kind == RESTRICT_PERMIT_TLS_ALL_CLIENTCERTS);
                if (r < 0) {
                        lookup_failure(e, entity);
                        return RES_REJECT;
                }
                return r > 0 ? RES_OK : RES_DUNNO;
        case RESTRICT_SENDER_LOGIN_MISMATCH:
        case RESTRICT_AUTH_SENDER_LOGIN_MISMATCH:
        case RESTRICT_KNOWN_SENDER_LOGIN_MISMATCH:
        case RESTRICT_UNAUTH_SENDER_LOGIN_MISMATCH:
                return check_login_mismatch(e, el->kind);
        case RESTRICT_REJECT_UNAUTH_PIPELINING:
                if (!s->ill_pipelining)
                        return RES_DUNNO;
                reply_fmt(e, 503, "5.5.0", entity, label, "Improper use of SMTP command pipelining");
                return RES_REJECT;
        case RESTRICT_DNS:
        case RESTRICT_POLICY:
        case RESTRICT_VERIFY:
                return start_async(e, el);
        case RESTRICT_CLASS:
                return push(e, &st->classes[el->class_index].list, (RestrictionList) {}) ? RES_DUNNO : RES_REJECT;
        }
        return RES_DUNNO;
}

static void handle_result(SmtpdEval *e, Result r, bool warn) {
        switch (r) {
        case RES_OK:
                while (e->depth > 0)
                        smtpd_restrictions_done(&e->stack[--e->depth].owned);
                break;
        case RES_REJECT:
                if (warn && e->reply && !e->sync) {
                        smtpd_log_action(e->s, e->stage, e->rcpt, "reject_warning", e->reply);
                        free(e->reply);
                        e->reply = NULL;
                } else if (e->defer_if_reject && e->reply && e->reply[0] == '5') {
                        free(e->reply);
                        e->reply = TAKE_PTR(e->defer_if_reject);
                }
                break;
        default:
                break;
        }
}

/* Implicit checks at the end of a class: smtpd_reject_unlisted_sender / _recipient. */
static void class_end(SmtpdEval *e) {
        const SmtpdSettings *st = e->s->settings;
        if (e->cur == CLASS_SENDER && st->reject_unlisted_sender && !e->checked_sender && e->sender_addr) {
                e->checked_sender = true;
                handle_result(e, check_unlisted(e, e->sender_addr, true), false);
        }
        if (e->cur == CLASS_RECIPIENT && st->reject_unlisted_recipient && !e->checked_local && e->rcpt_addr) {
                e->checked_local = true;
                handle_result(e, check_unlisted(e, e->rcpt_addr, false), false);
        }
}

/* ---- lookups in server tables (common/conf/table-async.h) ---------------------------------- */

/* What an element may change before a lookup turns out to be on its way: undone, so that the
 * element runs again as if for the first time when the answer is there. */
typedef struct Mark {
        size_t depth;
        char *defer_if_permit, *defer_if_reject;
        bool checked_local, checked_sender;
} Mark;

static Mark mark(SmtpdEval *e) {
        return (Mark) { .depth = e->depth, .defer_if_permit = e->defer_if_permit,
                        .defer_if_reject = e->defer_if_reject, .checked_local = e->checked_local,
                        .checked_sender = e->checked_sender };
}

static void undo(SmtpdEval *e, const Mark *m) {
        /* handle_result() may have moved defer_if_reject into the reply */
        if (e->reply != m->defer_if_reject && e->reply != m->defer_if_permit)
                free(e->reply);
        e->reply = NULL;
        while (e->depth > m->depth)
                smtpd_restrictions_done(&e->stack[--e->depth].owned);
        if (e->defer_if_permit != m->defer_if_permit) {
                free(e->defer_if_permit);
                e->defer_if_permit = m->defer_if_permit;
        }
        if (e->defer_if_reject != m->defer_if_reject) {
                free(e->defer_if_reject);
                e->defer_if_reject = m->defer_if_reject;
        }
        e->checked_local = m->checked_local;
        e->checked_sender = m->checked_sender;
}

static void on_lookups_ready(void *userdata) {
        SmtpdEval *e = userdata;
        e->lookup_wait = false;
        eval_resume(e);
}

/* A lookup went to the workers: the session waits (no thread does) until it answers, and this
 * returns false. True when the answers are there already (the workers could not take the keys:
 * they failed at once), and the caller runs again at once. */
static bool wait_lookups(SmtpdEval *e) {
        Session *s = e->s;
        e->lookup_wait = table_memo_wait(s->tx.lookups, on_lookups_ready, e);
        if (!e->lookup_wait)
                return true;
        if (!e->waiting) {
                e->waiting = true;
                s->eval = e;
                session_wait(s, on_wait_cancel, e);
        }
        return false;
}

/* RCPT: the recipient check's keys (the domain's class, the address in each class table), asked
 * all at once before the evaluation starts: the element that classifies the domain
 * (reject_unauth_destination) and the unlisted-recipient check then find their answers, and an
 * RCPT takes one round trip to the workers rather than one per element. The check itself only
 * looks up and words a reply, which is dropped. */
static bool prefetch(SmtpdEval *e, TableMemo *memo) {
        const SmtpdSettings *st = e->s->settings;
        e->prefetched = true;
        if (e->sync || e->stage != STAGE_RCPT || !e->rcpt_addr || !st->reject_unlisted_recipient ||
            st->no_unknown_recipient_checks)
                return false;
        _cleanup_free_ char *reply = NULL;
        table_memo_begin(memo, true);
        (void) smtpd_unlisted_check(st, e->rcpt_addr, false, &reply);
        return table_memo_end(memo);
}

/* ---- the evaluation loop ------------------------------------------------------------------- */

/* Runs until the evaluation ends (true) or waits for an asynchronous element or a lookup in a
 * server table (false). Elements run with the transaction's memo of lookups: one that needs an
 * answer not yet there is undone and runs again when it arrives. */
static bool eval_loop(SmtpdEval *e) {
        TableMemo *memo = smtpd_lookups(e->s);
        if (!e->prefetched && prefetch(e, memo) && !wait_lookups(e))
                return false;
        for (;;) {
                if (e->reply)
                        return true;
                if (e->depth == 0) {
                        if (e->in_class) {
                                Mark m = mark(e);
                                table_memo_begin(memo, !e->sync);
                                class_end(e);
                                if (table_memo_end(memo)) {
                                        undo(e, &m);
                                        if (wait_lookups(e))
                                                continue;   /* answered already: again */
                                        return false;
                                }
                                e->in_class = false;
                                continue;
                        }
                        if (e->ci == e->n_classes)
                                return true;
                        e->cur = e->classes[e->ci++];
                        e->in_class = true;
                        (void) push(e, class_list(e->s->settings, e->cur), (RestrictionList) {});
                        continue;
                }
                Frame *f = &e->stack[e->depth - 1];
                if (f->i >= f->list->n) {
                        smtpd_restrictions_done(&f->owned);
                        e->depth--;
                        continue;
                }
                const RestrictionElem *el = &f->list->v[f->i++];
                bool warn = e->warn_next;
                e->warn_next = false;
                Mark m = mark(e);
                table_memo_begin(memo, !e->sync);
                Result r = eval_element(e, el);
                if (table_memo_end(memo) && r != RES_ASYNC) {
                        undo(e, &m);
                        f->i--;
                        e->warn_next = warn;
                        if (wait_lookups(e))
                                continue;   /* answered already: again */
                        return false;
                }
                if (r == RES_ASYNC) {
                        e->warn_async = warn;
                        return false;
                }
                handle_result(e, r, warn);
        }
}

/* The evaluation ended: answer a refusal, call finish, and end a wait. */
static void eval_done(SmtpdEval *e) {
        Session *s = e->s;
        bool waiting = e->waiting;
        SmtpdCheckFinish finish = e->finish;
        bool early = e->stage == STAGE_CONNECT || e->stage == STAGE_HELO || e->stage == STAGE_MAIL;

        if (!e->reply && e->defer_if_permit) {
                if (early) {
                        free(s->deferred_permit);
                        s->deferred_permit = TAKE_PTR(e->defer_if_permit);
                } else
                        e->reply = TAKE_PTR(e->defer_if_permit);
        }
        if (!e->reply && e->stage == STAGE_RCPT && s->deferred_permit)
                e->reply = strdup(s->deferred_permit);
        if (e->reply && e->reply[0] == '5' && s->settings->soft_bounce) {
                e->reply[0] = '4';   /* soft_bounce: "5.x.y" follows the reply code */
                if (strlen(e->reply) > 4 && e->reply[4] == '5')
                        e->reply[4] = '4';
        }
        if (e->reply)
                smtpd_reply_reject(s, e->stage, e->rcpt, e->reply);
        _cleanup_free_ char *rcpt = TAKE_PTR(e->rcpt);
        bool accepted = !e->reply;
        eval_free(e);
        /* The wait ends before finish(), which may start another one (postern-anvil at MAIL and
         * RCPT, the connect restrictions after the name lookup). */
        if (waiting)
                session_resume(s, SESSION_RESUME_ONLY);
        if (finish)
                finish(s, rcpt, accepted);
        /* not while a message is being committed (end-of-data restrictions that waited): the
         * committer resumes the session after the 250 */
        if (waiting && !session_waiting(s) && session_phase(s) != PHASE_COMMIT)
                session_resume(s, SESSION_RESUME_INPUT);
}

static void eval_resume(SmtpdEval *e) {
        if (eval_loop(e))
                eval_done(e);
}

static SmtpdEval *eval_new(Session *s, CheckStage stage, const char *rcpt) {
        const SmtpdSettings *st = s->settings;
        SmtpdEval *e = calloc(1, sizeof(SmtpdEval));
        const char *why = NULL;

        if (!e)
                return NULL;
        e->s = s;
        e->stage = stage;
        if (rcpt) {
                if (!(e->rcpt = strdup(rcpt))) {
                        free(e);
                        return NULL;
                }
                (void) address_parse(rcpt, ADDRESS_SMTPUTF8, &e->rcpt_addr, &why);
        }
        if (!isempty(s->tx.sender))
                (void) address_parse(s->tx.sender, ADDRESS_SMTPUTF8, &e->sender_addr, &why);
        else if (s->tx.sender)
                (void) address_new("", NULL, &e->sender_addr);

        size_t n = 0;
        switch (stage) {
        case STAGE_CONNECT:
                if (!st->delay_reject)
                        e->classes[n++] = CLASS_CLIENT;
                break;
        case STAGE_HELO:
                if (!st->delay_reject)
                        e->classes[n++] = CLASS_HELO;
                break;
        case STAGE_MAIL:
                if (!st->delay_reject)
                        e->classes[n++] = CLASS_SENDER;
                break;
        case STAGE_RCPT:
                if (st->delay_reject) {
                        e->classes[n++] = CLASS_CLIENT;
                        if (s->client.helo)   /* as in Postfix: no HELO, no HELO restrictions */
                                e->classes[n++] = CLASS_HELO;
                        e->classes[n++] = CLASS_SENDER;
                }
                e->classes[n++] = CLASS_RELAY;
                e->classes[n++] = CLASS_RECIPIENT;
                break;
        case STAGE_DATA:
                e->classes[n++] = CLASS_DATA;
                break;
        case STAGE_EOD:
                e->classes[n++] = CLASS_EOD;
                break;
        case STAGE_ETRN:
                /* As Postfix: the client and HELO restrictions delayed to RCPT apply here too. */
                if (st->delay_reject) {
                        e->classes[n++] = CLASS_CLIENT;
                        if (s->client.helo)
                                e->classes[n++] = CLASS_HELO;
                }
                e->classes[n++] = CLASS_ETRN;
                break;
        }
        e->n_classes = n;
        return e;
}

void smtpd_check_run(Session *s, CheckStage stage, const char *rcpt, SmtpdCheckFinish finish) {
        SmtpdEval *e = eval_new(s, stage, rcpt);

        if (!e) {
                log_oom();
                session_reply(s, "451 4.3.0 Error: out of memory");
                finish(s, rcpt, false);
                return;
        }
        e->finish = finish;
        if (stage == STAGE_RCPT && !s->settings->can_refuse_relay) {
                log_warning("Neither smtpd_relay_restrictions nor smtpd_recipient_restrictions can refuse "
                            "relaying (add reject_unauth_destination); refusing mail (451 4.3.5)");
                set_reply(e, strdup("451 4.3.5 Server configuration error"));
        }
        eval_resume(e);
}

int smtpd_check_recipient(Session *s, const char *local, const char *domain, const char *external,
                          char **ret_reply) {
        SmtpdEval *e = eval_new(s, STAGE_RCPT, external);
        *ret_reply = NULL;
        if (!e)
                return -ENOMEM;
        e->sync = true;
        /* VRFY: only relay control and the recipient list; asynchronous elements are skipped. */
        e->classes[0] = CLASS_RELAY;
        e->classes[1] = CLASS_RECIPIENT;
        e->n_classes = 2;
        if (!s->settings->can_refuse_relay)
                set_reply(e, strdup("451 4.3.5 Server configuration error"));
        (void) eval_loop(e);
        *ret_reply = TAKE_PTR(e->reply);
        eval_free(e);
        return *ret_reply ? 1 : 0;
}

/* The transaction's memo of server table answers, made when first needed (NULL without memory:
 * lookups then run on the loop thread). */
TableMemo *smtpd_lookups(Session *s) {
        if (!s->tx.lookups)
                s->tx.lookups = table_memo_new();
        return s->tx.lookups;
}

void smtpd_check_session_done(Session *s) {
        s->tx.lookups = table_memo_unref(s->tx.lookups);
        free(s->deferred_permit);
        s->deferred_permit = NULL;
        free(s->access_denied);
        s->access_denied = NULL;
}
