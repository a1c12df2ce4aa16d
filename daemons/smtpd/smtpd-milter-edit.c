/* smtpd-milter-edit.c — the milters' end-of-message edits applied to the job of the message
 * before it is committed (smtpd_milter_apply(), from smtpd-data.c), so the 250 still follows a
 * durable commit: recipients (addrcpt / addrcpt_par with NOTIFY= and ORCPT=, delrcpt) and the
 * sender (chgfrom) here, headers and body through common/milter/milter-edit.c. Edits apply in
 * the order the milters sent them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/xtext.h"
#include "queue/queue.h"

static char *strip_brackets(const char *a) {
        size_t n = strlen(a);
        if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
                return strndup(a + 1, n - 2);
        return strdup(a);
}

/* NOTIFY= and ORCPT= of an addrcpt_par; other arguments are ignored. */
static int rcpt_args(const char *args, QueueRecipient *rc) {
        _cleanup_strv_free_ char **w = conf_split_list(args ? args : "");
        if (!w)
                return -ENOMEM;
        for (char **i = w; *i; i++) {
                const char *v;
                if ((v = startswith_no_case(*i, "NOTIFY="))) {
                        _cleanup_strv_free_ char **k = conf_split_list(v);
                        if (!k)
                                return -ENOMEM;
                        for (char **j = k; *j; j++)
                                rc->notify |= strcaseeq(*j, "NEVER") ? QUEUE_NOTIFY_NEVER :
                                              strcaseeq(*j, "SUCCESS") ? QUEUE_NOTIFY_SUCCESS :
                                              strcaseeq(*j, "FAILURE") ? QUEUE_NOTIFY_FAILURE :
                                              strcaseeq(*j, "DELAY") ? QUEUE_NOTIFY_DELAY : 0;
                } else if ((v = startswith_no_case(*i, "ORCPT="))) {
                        char *dec = NULL;
                        size_t dl = 0;
                        if (xtext_decode(v, strlen(v), &dec, &dl) >= 0) {
                                free(rc->orcpt);
                                rc->orcpt = dec;
                        }
                }
        }
        return 0;
}

static int rcpt_edit(CommitJob *j, const MilterEdit *x) {
        _cleanup_free_ char *addr = strip_brackets(x->name);
        QueueRecipient *rc = j->rcpts;
        if (!addr)
                return -ENOMEM;
        if (x->cmd == MILTER_R_DELRCPT) {
                for (size_t i = 0; i < j->n_rcpts; ) {
                        if (strcaseeq(rc[i].address, addr)) {
                                free(rc[i].address);
                                free(rc[i].orcpt);
                                memmove(rc + i, rc + i + 1, (j->n_rcpts - i - 1) * sizeof(QueueRecipient));
                                j->n_rcpts--;
                        } else
                                i++;
                }
                return 0;
        }
        for (size_t i = 0; i < j->n_rcpts; i++)
                if (strcaseeq(rc[i].address, addr))
                        return 0;   /* already a recipient */
        rc = reallocarray(j->rcpts, j->n_rcpts + 1, sizeof(QueueRecipient));
        if (!rc)
                return -ENOMEM;
        j->rcpts = rc;
        QueueRecipient *n = &rc[j->n_rcpts];
        *n = (QueueRecipient) { .state = QUEUE_RCPT_PENDING, .address = TAKE_PTR(addr) };
        j->n_rcpts++;
        return x->cmd == MILTER_R_ADDRCPT_PAR ? rcpt_args(x->value, n) : 0;
}

int smtpd_milter_header_checks(Session *s) {
        MilterEdits *e = smtpd_milter_edits(s);
        for (size_t i = 0; e && i < e->n; i++) {
                const MilterEdit *x = &e->v[i];
                bool header = x->cmd == MILTER_R_ADDHEADER || x->cmd == MILTER_R_INSHEADER ||
                              (x->cmd == MILTER_R_CHGHEADER && !isempty(x->value));   /* not a delete */
                int r = header ? cleanup_milter_header(s, x->name, x->value) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

int smtpd_milter_apply(Session *s, CommitJob *j) {
        MilterEdits *e = smtpd_milter_edits(s);
        QueueMessage *m = j->message;
        int r = 0;

        if (!e || (e->n == 0 && !e->body_replaced))
                return 0;
        for (size_t i = 0; r >= 0 && i < e->n; i++) {
                const MilterEdit *x = &e->v[i];
                if (x->cmd == MILTER_R_ADDRCPT || x->cmd == MILTER_R_ADDRCPT_PAR || x->cmd == MILTER_R_DELRCPT)
                        r = rcpt_edit(j, x);
                else if (x->cmd == MILTER_R_CHGFROM) {
                        char *snd = strip_brackets(x->name);
                        if (!snd)
                                return -ENOMEM;
                        free(m->sender);
                        m->sender = snd;
                }
        }
        if (r < 0)
                return r;
        char *c = NULL;
        size_t len = 0;
        r = milter_edits_apply_content(e, j->content, j->content_len, &c, &len);
        if (r != 0)
                return r < 0 ? r : 0;
        /* the data budget stays charged with what the job held; the new size is close to it */
        free(j->content);
        j->content = c;
        j->content_len = len;
        m->size = len;
        return 0;
}
