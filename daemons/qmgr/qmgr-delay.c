/* qmgr-delay.c — the delay warning (delay_warning_time, RFC 3464 Action: delayed).
 *
 * After a delivery attempt leaves a message with deferred recipients, qmgr_delay_warning()
 * checks whether the message has been queued for delay_warning_time (0 = never) and its
 * warning was not sent yet; then, in one transaction, it queues a notice to the sender naming
 * the deferred recipients that want delay notices (NOTIFY not given, or with DELAY; never
 * NOTIFY=NEVER), marks those recipients QUEUE_RCPT_F_DELAY_WARNED (for confirm_delay_cleared)
 * and marks the message delay_warned, so the warning is sent once per message as in Postfix.
 * Notifications and null-sender mail get no warning. The check happens when qmgr has just
 * tried the message: like Postfix, a message waiting out a long backoff is warned at its next
 * attempt, not at the very moment it becomes due. */
#include <string.h>

#include "log/log.h"
#include "qmgr.h"

/* After an attempt left m with deferred recipients: sends the one delay warning when
 * delay_warning_time has passed since arrival (its own transaction). */
void qmgr_delay_warning(Qmgr *q, QmgrMessage *m) {
        usec_t now = now_usec(CLOCK_REALTIME);
        char id[QUEUE_ID_MAX] = "";
        int r;

        if (q->s.delay_warning_time == 0 || m->msg.delay_warned || m->msg.is_bounce || m->msg.is_probe ||
            isempty(m->msg.sender) || now < m->msg.arrival_usec ||
            now - m->msg.arrival_usec < q->s.delay_warning_time)
                return;

        if ((r = queue_begin(q->queue)) < 0) {
                log_error_errno(r, "%s: cannot start a transaction: %s", m->queue_id,
                                queue_last_error(q->queue));
                return;
        }
        r = qmgr_notice_insert(q, m, QMGR_NOTICE_DELAY, id);
        for (size_t i = 0; r >= 0 && id[0] && i < m->n_rcpts; i++) {
                QueueRecipient *rc = &m->rcpts[i];
                if (rc->state != QUEUE_RCPT_DEFERRED ||
                    (rc->notify & QUEUE_NOTIFY_NEVER) || (rc->notify && !(rc->notify & QUEUE_NOTIFY_DELAY)))
                        continue;
                rc->flags |= QUEUE_RCPT_F_DELAY_WARNED;
                r = queue_update_recipient(q->queue, rc);
        }
        if (r >= 0)
                r = queue_set_delay_warned(q->queue, m->queue_id);
        if (r >= 0)
                r = queue_commit(q->queue);
        if (r < 0) {
                (void) queue_rollback(q->queue);
                for (size_t i = 0; i < m->n_rcpts; i++)
                        m->rcpts[i].flags &= ~(unsigned) QUEUE_RCPT_F_DELAY_WARNED;
                log_error_errno(r, "%s: cannot queue the delay warning: %s", m->queue_id,
                                queue_last_error(q->queue));
                return;
        }
        m->msg.delay_warned = true;
        if (id[0]) {
                LogFields f = { .queue_id = m->queue_id, .sender = m->msg.sender };
                log_fields(LOG_INFO, &f, "%s: sender delay notification: %s", m->queue_id, id);
                qmgr_schedule_scan(q, 0);
        }
}
