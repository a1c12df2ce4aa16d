/* local-forward.c — alias members outside the local domains are forwarded by queueing a new
 * message, as Postfix's local(8) does through cleanup: same content with
 * "Delivered-To: <alias address>" prepended (so a loop back to us is detected), envelope sender
 * owner-<alias> when that alias exists (errors go to the list owner), else the original sender.
 * One message is made for each (sender, alias) group of forward targets, committed before the
 * targets are reported delivered ("forwarded as <new id>"). */
#include <stdio.h>
#include <time.h>

#include "local.h"
#include "log/log.h"

static int forward_group(Queue *q, const QueueMessage *orig, const char *content, size_t content_len,
                         Target **targets, size_t n, Target *first, char ret_id[QUEUE_ID_MAX]) {
        _cleanup_strbuf_ StrBuf body = STRBUF_INIT;
        QueueRecipient *rcpts = NULL;
        size_t nr = 0;
        int r;

        if ((r = strbuf_printf(&body, "Delivered-To: %s\n", first->via)) < 0 ||
            (r = strbuf_append(&body, content, content_len)) < 0)
                return r;
        rcpts = calloc(n, sizeof(QueueRecipient));
        if (!rcpts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Target *t = targets[i];
                if (t->kind != TARGET_FORWARD || t->done || !streq(t->sender, first->sender) ||
                    !streq(t->via, first->via))
                        continue;
                rcpts[nr++] = (QueueRecipient) { .address = t->address, .state = QUEUE_RCPT_PENDING };
        }

        QueueMessage m = {
                .sender = first->sender,
                .arrival_usec = now_usec(CLOCK_REALTIME),
                .size = body.len,
                .protocol = (char *) "LOCAL",
                .body_type = orig->body_type,
                .smtputf8 = orig->smtputf8,
        };
        queue_id_new(m.queue_id);

        r = queue_begin(q);
        if (r >= 0) {
                r = queue_insert_message(q, &m, rcpts, nr, body.data, body.len);
                if (r >= 0)
                        r = queue_commit(q);
                else
                        (void) queue_rollback(q);
        }
        free(rcpts);   /* the addresses belong to the targets */
        if (r < 0)
                return r;
        memcpy(ret_id, m.queue_id, QUEUE_ID_MAX);
        return 0;
}

int local_forward(const LocalSettings *s, Queue *q, const QueueMessage *orig, const char *content,
                  size_t content_len, Target **targets, size_t n) {
        int queued = 0;

        for (size_t i = 0; i < n; i++) {
                Target *first = targets[i];
                char id[QUEUE_ID_MAX];
                if (first->kind != TARGET_FORWARD || first->done)
                        continue;
                int r = q ? forward_group(q, orig, content, content_len, targets, n, first, id) : -ENOTCONN;
                for (size_t j = i; j < n; j++) {
                        Target *t = targets[j];
                        if (t->kind != TARGET_FORWARD || t->done || !streq(t->sender, first->sender) ||
                            !streq(t->via, first->via))
                                continue;
                        if (r < 0)
                                (void) target_set_result(t, "4.3.0", "cannot forward: queue write failed: %s",
                                                         q ? queue_last_error(q) : "queue unavailable");
                        else
                                (void) target_set_result(t, "2.0.0", "forwarded as %s", id);
                }
                if (r < 0)
                        log_error_errno(r, "%s: cannot queue forwarded copy: %m", orig->queue_id);
                else {
                        log_info("%s: forwarded to new message %s (sender=<%s>)", orig->queue_id, id, first->sender);
                        queued++;
                }
        }
        return queued;
}
