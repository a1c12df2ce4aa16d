/* smtpd-transaction.c — the transaction part of a session (SmtpdTransaction in smtpd.h): what
 * MAIL, RCPT, DATA/BDAT and the restrictions collect for one message, and its recipients.
 *
 *   smtpd_transaction_reset()     forgets it all (RSET, HELO/EHLO, STARTTLS, a new MAIL's failure,
 *                                 the end of a message, the session's end)
 *   smtpd_transaction_add_rcpt()  appends an accepted recipient (RCPT, after its restrictions)
 *   message_actions_*()           the access(5)/content-check decisions for the message
 *
 * It owns the strings and arrays it holds; the transaction number (policy "instance") and the
 * state of a BDAT chunk being read outlive a reset, as they describe the session's progress. */
#include "smtpd.h"

void smtpd_recipient_done(SmtpdRecipient *r) {
        free(r->address);
        free(r->orcpt);
        *r = (SmtpdRecipient) {};
}

void smtpd_transaction_reset(SmtpdTransaction *t) {
        t->proxy = smtpd_proxy_free(t->proxy);   /* QUIT to the before-queue filter */
        smtpd_xforward_done(&t->xforward);
        free(t->sender);
        t->sender = NULL;
        free(t->body_type);
        t->body_type = NULL;
        free(t->dsn_envid);
        free(t->auth_author);
        t->auth_author = NULL;
        t->dsn_envid = NULL;
        t->dsn_ret = 0;
        t->smtputf8 = false;
        t->requiretls = false;
        t->bdat_active = false;
        for (size_t i = 0; i < t->n_rcpts; i++)
                smtpd_recipient_done(&t->rcpts[i]);
        free(t->rcpts);
        t->rcpts = NULL;
        t->n_rcpts = 0;
        t->rcpt_attempts = 0;
        t->in_mail = false;
        t->queue_id[0] = '\0';
        data_state_free(t->data);
        t->data = NULL;
        message_actions_reset(&t->actions);
        smtpd_recipient_done(&t->rcpt_pending);
        table_memo_clear(t->lookups);   /* no answer is reused by the next transaction */
}

int smtpd_transaction_add_rcpt(SmtpdTransaction *t, SmtpdRecipient *r) {
        SmtpdRecipient *v = reallocarray(t->rcpts, t->n_rcpts + 1, sizeof(SmtpdRecipient));
        if (!v)
                return -ENOMEM;
        t->rcpts = v;
        v[t->n_rcpts++] = *r;
        *r = (SmtpdRecipient) {};
        return 0;
}

int message_actions_add_bcc(MessageActions *a, const char *addr) {
        size_t n = 0;
        /* Once per address (case-insensitive), as in Postfix: with smtpd_delay_reject the
         * client/HELO/sender lists run at every RCPT, and header checks may match repeatedly. */
        for (; a->bcc && a->bcc[n]; n++)
                if (strcaseeq(a->bcc[n], addr))
                        return 0;
        char **v = reallocarray(a->bcc, n + 2, sizeof(char *));
        if (!v)
                return -ENOMEM;
        a->bcc = v;
        if (!(v[n] = strdup(addr)))
                return -ENOMEM;
        v[n + 1] = NULL;
        return 0;
}

void message_actions_reset(MessageActions *a) {
        free(a->hold);
        free(a->discard);
        free(a->redirect);
        free(a->filter);
        strv_free(a->bcc);
        strbuf_done(&a->prepend);
        *a = (MessageActions) {};
}
