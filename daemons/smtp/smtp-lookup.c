/* smtp-lookup.c — the table lookups at the start of a delivery without waiting on the event loop
 * for a server table.
 *
 * smtp_session_start() needs the next hop's TLS policy (smtp_tls_policy_maps) and, with
 * smtp_sender_dependent_authentication, the sender's smtp_sasl_password_maps entry before it
 * connects. Both are looked up inside the delivery's TableMemo (common/conf/table-async.h, the
 * workers started in smtp.c): a key in a server table (pgsql:, mysql:, ldap:, socketmap:, tcp:)
 * that the memo does not have goes to a worker with the keys the same lookups go on to ask for,
 * the results are thrown away and the delivery waits (no thread does) until the answers are
 * there, then smtp_session_start() runs again and the memo answers. Other deliveries go on
 * meanwhile. A failed lookup ends the delivery as it did on the loop (4.3.0). The answers are
 * dropped once the lookups are done (nothing is cached between deliveries). The server's
 * password lookup when it offers AUTH runs the same way in smtp-session-auth.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/table-async.h"
#include "smtp.h"

typedef struct SmtpLookup {
        TableMemo *memo;
        SmtpDelivery *d;
        void (*done)(SmtpDelivery *d);
} SmtpLookup;

static void secret_free(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

static void on_answers(void *userdata) {
        SmtpLookup *l = userdata;
        l->done(l->d);
}

int smtp_lookup_start(SmtpDelivery *d, const char *tls_nexthop, void (*done)(SmtpDelivery *d),
                      const char **ret_dsn, char *diag, size_t size) {
        const SmtpSettings *s = smtp_settings(d->smtp, d->lmtp, d->transport);
        if (!d->lookup && (d->lookup = calloc(1, sizeof(SmtpLookup))) && !(d->lookup->memo = table_memo_new())) {
                free(d->lookup);
                d->lookup = NULL;   /* no memory for the memo: looked up on the loop, as before */
        }
        TableMemo *memo = d->lookup ? d->lookup->memo : NULL;
        for (;;) {
                SmtpTlsPolicy p = {};
                char *sender_pw = NULL;
                table_memo_begin(memo, true);
                int r = smtp_tls_policy(s->tls, tls_nexthop, &p, ret_dsn, diag, size);
                if (r >= 0 && (r = smtp_sasl_lookup_sender(s->sasl, d->msg.sender, &sender_pw, diag, size)) < 0)
                        *ret_dsn = "4.3.0";
                if (!table_memo_end(memo)) {
                        smtp_lookup_delivery_done(d);
                        if (r < 0) {
                                smtp_tls_policy_done(&p);
                                secret_free(sender_pw);
                                return r;
                        }
                        d->tls = p;
                        d->sasl_sender = sender_pw;
                        return 0;
                }
                /* a guess: thrown away; wait for the answers, or run again when they came at once */
                smtp_tls_policy_done(&p);
                secret_free(sender_pw);
                if (table_memo_wait(memo, on_answers, d->lookup)) {
                        d->lookup->d = d;
                        d->lookup->done = done;
                        return 1;
                }
        }
}

void smtp_lookup_delivery_done(SmtpDelivery *d) {
        SmtpLookup *l = d->lookup;
        if (!l)
                return;
        table_memo_drop(l->memo);
        free(l);
        d->lookup = NULL;
}
