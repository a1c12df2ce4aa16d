/* smtpd-virtual.c — virtual alias expansion (virtual_alias_maps, virtual(5)) of a message's
 * recipients when they become queue records, as Postfix's cleanup(8) does before it queues mail.
 * The expansion of one address is common/mail/virtual-alias.c; this file holds the settings
 * (smtpd_virtual_settings()) and applies the expansion to a commit job (smtpd_virtual_expand()),
 * after canonical rewriting and the access(5) actions (REDIRECT, BCC) and before the commit.
 *
 * Per recipient: each address of its expansion becomes a recipient with the original's NOTIFY
 * and ORCPT; without a client ORCPT, "rfc822;<original>" ("utf-8;" for an SMTPUTF8 address,
 * RFC 6533) is recorded as ORCPT, so delivery
 * logs show orig_to=<original>, notices name the original as Original-Recipient, and the SMTP
 * client passes it on (Postfix's original recipient). A recipient that asked for NOTIFY=SUCCESS
 * and was aliased gets Postfix's "expanded" success notice instead: it is queued once more,
 * already delivered ("2.0.0 alias expanded", QUEUE_RCPT_F_EXPANDED), and SUCCESS is taken off its
 * expansion (SUCCESS alone becomes NEVER). Duplicates (same address, ORCPT and NOTIFY) are queued
 * once, as Postfix's cleanup does with enable_original_recipient = yes.
 *
 * Errors answer the whole message and queue nothing: a table that cannot be read (at start-up
 * or at lookup) "451 4.3.0 Error: queue file write error"; an expansion over a limit or a loop
 * "451 4.6.0 Alias expansion error". Each is logged once, in Postfix's words:
 * "<id>: unreasonable virtual_alias_maps map nesting for <a> -- message not accepted, try again
 * later". Nothing is logged for a successful expansion (Postfix's cleanup does not either); the
 * delivery agents' to= lines carry orig_to=. */
#include <ctype.h>
#include <strings.h>

#include "smtpd.h"
#include "basic/strmap.h"
#include "log/log.h"
#include "mail/address.h"
#include "conf/conf-fields.h"
#include "mail/virtual-alias.h"
#include "queue/queue.h"

static const char *const propagate_values[] = {
        "canonical", "virtual", "alias", "forward", "include", "generic", NULL,
};

int smtpd_virtual_settings(Conf *c, const char *listener, SmtpdSettings *settings) {
        SmtpdVirtualAlias *s = &settings->virtual_alias;
        _cleanup_strv_free_ char **propagate = conf_get_list(c, listener, "propagate_unmatched_extensions");
        _cleanup_strv_free_ char **mydestination = conf_get_list(c, listener, "mydestination");
        _cleanup_free_ char *reason = NULL;
        int r;

        if (!propagate || !mydestination)
                return log_oom();
        for (char **p = propagate; *p; p++) {
                bool known = false;
                for (const char *const *k = propagate_values; *k; k++)
                        known = known || strcaseeq(*p, *k);
                if (!known) {
                        log_error("propagate_unmatched_extensions: unknown value \"%s\" (expected canonical, virtual, "
                                  "alias, forward, include or generic)", *p);
                        return -EINVAL;
                }
                s->propagate = s->propagate || strcaseeq(*p, "virtual");
        }
        /* Host names among them match no literal; smtpd-rewrite.c reports them. */
        if ((r = host_addresses_load(&s->own_addresses, c, listener, true, NULL)) < 0)
                return log_oom();
        r = domain_list_init(&s->mydestination, mydestination, false, &reason);
        if (r < 0)
                return log_error_errno(r, "mydestination: %s", reason ? reason : "out of memory");
        free(reason);
        reason = NULL;

        /* TABLE_REGSUB_SAFE: text a regexp: rule copies from the address must not turn one
         * result into several addresses. */
        r = conf_get_table_list(c, listener, "virtual_alias_maps", TABLE_REGSUB_SAFE, &s->maps, &reason);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                /* Like a table that fails at lookup time: mail gets 451 until the table is fixed
                 * and smtpd is reloaded. */
                log_error_errno(r, "%s; answering 451 4.3.0 at the end of every message",
                                reason ? reason : "virtual_alias_maps: cannot open table");
                s->maps_error = r;
        }
        return 0;
}

void smtpd_virtual_settings_done(SmtpdSettings *settings) {
        SmtpdVirtualAlias *s = &settings->virtual_alias;
        table_list_free(s->maps);
        domain_list_done(&s->mydestination);
        host_addresses_done(&s->own_addresses);
        *s = (SmtpdVirtualAlias) {};
}

/* $mydestination, or an address literal of this host ($inet_interfaces, $proxy_interfaces);
 * $myorigin is virtual-alias.c's own test. */
static int local_domain(const char *domain, void *userdata) {
        SmtpdVirtualAlias *s = userdata;
        int r = domain_list_match(&s->mydestination, domain);
        return r != 0 ? r : host_addresses_has_literal(&s->own_addresses, domain);
}

static void table_warning(const char *line, void *userdata) {
        log_warning("%s", line);
}

/* A recipient vector being built: duplicates (address, ORCPT, NOTIFY, state) are dropped, found
 * through a hash map (a message may expand to a million recipients). */
typedef struct RcptVec {
        QueueRecipient *v;
        size_t n;
        StrMap *seen;
} RcptVec;

static void rcpt_fields_free(QueueRecipient *rc) {
        free(rc->address);
        free(rc->orcpt);
        free(rc->dsn_status);
        free(rc->diag);
        free(rc->remote_mta);
        *rc = (QueueRecipient) {};
}

/* Moves *rc into vec (its fields are taken either way; a duplicate is freed). */
static int rcpt_vec_take(RcptVec *vec, QueueRecipient *rc) {
        QueueRecipient t = *rc;
        _cleanup_free_ char *key = NULL;

        *rc = (QueueRecipient) {};
        if (asprintf(&key, "%s\n%s\n%u\n%d", t.address, strempty(t.orcpt), t.notify, (int) t.state) < 0)
                key = NULL;
        QueueRecipient *v = key ? reallocarray(vec->v, vec->n + 1, sizeof(QueueRecipient)) : NULL;
        if (!v) {
                rcpt_fields_free(&t);
                return -ENOMEM;
        }
        vec->v = v;
        for (char *p = key; *p != '\n'; p++)   /* the address compares case-insensitively */
                *p = (char) tolower((unsigned char) *p);
        if (strmap_get(vec->seen, key)) {
                rcpt_fields_free(&t);
                return 0;
        }
        if (strmap_put(vec->seen, key, (void *) 1) < 0) {
                rcpt_fields_free(&t);
                return -ENOMEM;
        }
        v[vec->n++] = t;
        return 0;
}

/* The recipients that replace rc: its expansion list, and the "expanded" record when it asked
 * for NOTIFY=SUCCESS. */
static int add_expansion(RcptVec *vec, QueueRecipient *rc, char **list) {
        _cleanup_free_ char *orcpt = NULL;
        unsigned notify = rc->notify;
        int r;

        orcpt = rc->orcpt ? strdup(rc->orcpt) : address_orcpt(rc->address);
        if (!orcpt)
                return -ENOMEM;
        if (notify & QUEUE_NOTIFY_SUCCESS) {
                QueueRecipient done = {
                        .address = strdup(rc->address), .orcpt = rc->orcpt ? strdup(rc->orcpt) : NULL,
                        .notify = notify, .state = QUEUE_RCPT_DELIVERED, .dsn_status = strdup("2.0.0"),
                        .diag = strdup("alias expanded"), .flags = QUEUE_RCPT_F_EXPANDED,
                };
                if (!done.address || (rc->orcpt && !done.orcpt) || !done.dsn_status || !done.diag) {
                        free(done.address), free(done.orcpt), free(done.dsn_status), free(done.diag);
                        return -ENOMEM;
                }
                if ((r = rcpt_vec_take(vec, &done)) < 0)
                        return r;
                notify = notify == QUEUE_NOTIFY_SUCCESS ? QUEUE_NOTIFY_NEVER : notify & ~QUEUE_NOTIFY_SUCCESS;
        }
        for (char **a = list; *a; a++) {
                QueueRecipient n = { .address = *a, .orcpt = strdup(orcpt), .notify = notify,
                                     .state = QUEUE_RCPT_PENDING };
                *a = NULL;   /* taken, even on failure */
                if (!n.orcpt) {
                        free(n.address);
                        return -ENOMEM;
                }
                if ((r = rcpt_vec_take(vec, &n)) < 0)
                        return r;
        }
        return 0;
}

/* Frees what is left of a NULL-terminated list whose taken entries were set to NULL. */
static void list_free_rest(char **list, size_t n) {
        for (size_t i = 0; list && i < n; i++)
                free(list[i]);
        free(list);
}

VirtualAlias smtpd_virtual_alias(SmtpdSettings *settings) {
        SmtpdVirtualAlias *st = &settings->virtual_alias;
        return (VirtualAlias) {
                .maps = st->maps,
                .delimiters = settings->recipient_delimiter,
                .propagate = st->propagate,
                .recursion_limit = st->recursion_limit,
                .expansion_limit = st->expansion_limit,
                .address_length_limit = st->address_length_limit,
                .myorigin = settings->myorigin,
                .local_domain = local_domain,
                .warn = table_warning,
                .userdata = st,
        };
}

int smtpd_virtual_expand(SmtpdSettings *settings, CommitJob *j, const char **ret_reply) {
        SmtpdVirtualAlias *st = &settings->virtual_alias;
        QueueRecipient *rcpts = j->rcpts;
        LogFields f = { .queue_id = j->queue_id, .sender = ((QueueMessage *) j->message)->sender };
        _cleanup_(strmap_freep) StrMap *seen = NULL;
        RcptVec vec = {};
        int r = 0;

        if (settings->no_address_mappings)
                return 0;   /* receive_override_options: the filter's return listener */
        if (st->maps_error < 0) {
                log_fields(LOG_WARNING, &f, "%s: virtual_alias_maps cannot be opened -- message not accepted, try "
                           "again later", j->queue_id);
                *ret_reply = "451 4.3.0 Error: queue file write error";
                return -EIO;
        }
        if (table_list_size(st->maps) == 0)
                return 0;

        VirtualAlias va = smtpd_virtual_alias(settings);
        if (!(seen = strmap_new(NULL))) {
                log_oom();
                *ret_reply = "451 4.3.0 Error: queue file write error";
                return -ENOMEM;
        }
        vec.seen = seen;
        /* Every recipient's expansion first, then the new list: a run that guessed a lookup
         * (table-async.h: a server table's answer on its way) leaves the job as it was. */
        char ***lists = calloc(j->n_rcpts + 1, sizeof(char **));
        int *found = calloc(j->n_rcpts + 1, sizeof(int));
        if (!lists || !found)
                r = -ENOMEM;
        for (size_t i = 0; i < j->n_rcpts && r >= 0; i++) {
                _cleanup_free_ char *reason = NULL;
                VirtualAliasError e = VIRTUAL_ALIAS_OK;

                r = found[i] = virtual_alias_expand(&va, rcpts[i].address, &lists[i], &e, &reason);
                if (r == -ENOMEM || r == -EINPROGRESS)   /* the caller waits and runs it again */
                        break;
                if (r < 0) {
                        f.recipient = rcpts[i].address;
                        log_fields(LOG_WARNING, &f, "%s: %s -- message not accepted, try again later", j->queue_id,
                                   strna(reason));
                        *ret_reply = e == VIRTUAL_ALIAS_TABLE ? "451 4.3.0 Error: queue file write error"
                                                              : "451 4.6.0 Alias expansion error";
                }
        }
        if (r >= 0 && table_memo_guessing())
                r = -EINPROGRESS;   /* built on guesses: the caller runs it again with the answers */
        for (size_t i = 0; i < j->n_rcpts && lists; i++) {
                size_t n = 0;
                while (lists[i] && lists[i][n])
                        n++;
                if (r >= 0 && lists[i])
                        r = found[i] == 0 ? rcpt_vec_take(&vec, &rcpts[i]) : add_expansion(&vec, &rcpts[i], lists[i]);
                list_free_rest(lists[i], n);
        }
        free(lists);
        free(found);
        if (r < 0) {
                queue_recipients_free(vec.v, vec.n);
                if (r == -ENOMEM) {
                        log_oom();
                        *ret_reply = "451 4.3.0 Error: queue file write error";
                }
                return r;
        }
        queue_recipients_free(j->rcpts, j->n_rcpts);
        j->rcpts = vec.v;
        j->n_rcpts = vec.n;
        return 0;
}
