/* qmgr-bounce.c — delivery status notifications (RFC 3464) and the completion transaction.
 *
 * qmgr_bounce_build() turns a message and some of its recipients into a multipart/report
 * (report-type=delivery-status) in LF form: a plain-text part naming each recipient and what
 * happened, a message/delivery-status part (Reporting-MTA, Original-Envelope-Id, Arrival-Date,
 * then per recipient Final-Recipient, Original-Recipient, Action, Status, Remote-MTA,
 * Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until for delays), and the original message
 * as message/rfc822 or only its header section as text/rfc822-headers. The kind of notice
 * decides Subject, Action and what is attached: a failure returns what RET asked for (default
 * the message), a delay warning the headers, a success notice the message only with RET=FULL;
 * anything larger than bounce_size_limit is cut to its headers. Notices come from
 * MAILER-DAEMON@$myhostname and are marked is_bounce.
 *
 * qmgr_complete_in_transaction() inserts the notices due when a message is finished and deletes
 * it, inside the caller's transaction: a failure notice to the sender for bounced recipients
 * that want one (NOTIFY not given, or with FAILURE); when the message is itself a notification
 * (or has the null sender), a notice to 2bounce_notice_recipient instead, sent from
 * double_bounce_sender — and nothing at all when the message came from double_bounce_sender,
 * so no notice ever loops; and a success notice for delivered recipients that asked for
 * NOTIFY=SUCCESS (Action: relayed when the agent said so; expanded for an alias that smtpd
 * expanded before queueing, recorded delivered with QUEUE_RCPT_F_EXPANDED) or, with confirm_delay_cleared, were
 * named in the delay warning. An expired recipient keeps its last 4.x.x status (Action: failed),
 * as Postfix does. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log/log.h"
#include "mail/rfc822.h"
#include "qmgr.h"

/* Appends text as one header-safe line: control characters become spaces, length is capped so
 * the line stays well under RFC 5322's 998 octets. */
static int put_clean(StrBuf *out, const char *s, size_t max) {
        size_t n = 0;
        for (const char *p = strempty(s); *p && n < max; p++, n++) {
                unsigned char c = (unsigned char) *p;
                int r = strbuf_putc(out, (c < 0x20 || c == 0x7f) ? ' ' : (char) c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool has_8bit(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] & 0x80)
                        return true;
        return false;
}

/* Length of the header section of content (up to and including the empty line if any). */
static size_t header_section_length(const char *content, size_t len) {
        size_t pos = 0;
        Rfc822Header h;
        int r;
        while ((r = rfc822_next_header(content, len, &pos, &h)) > 0)
                ;
        if (r == 0 && pos <= len)
                return pos;
        /* Malformed headers: fall back to the first empty line. */
        for (size_t i = 0; i + 1 < len; i++)
                if (content[i] == '\n' && content[i + 1] == '\n')
                        return i + 2;
        return len;
}

/* Cuts n bytes of text at the last line end at or before limit. */
static size_t cut_at_line(const char *s, size_t n, size_t limit) {
        if (n <= limit)
                return n;
        for (size_t i = limit; i > 0; i--)
                if (s[i - 1] == '\n')
                        return i;
        return limit;
}

static int put_date(StrBuf *out, const char *name, time_t t) {
        char buf[128];
        rfc822_date(t, buf, sizeof(buf));
        return strbuf_printf(out, "%s: %s\n", name, buf);
}

/* "rfc822;addr" → "rfc822; addr" for Original-Recipient. */
static int put_orcpt(StrBuf *out, const char *orcpt) {
        const char *semi = strchr(orcpt, ';');
        if (!semi)
                return strbuf_printf(out, "Original-Recipient: rfc822; %s\n", orcpt);
        int r = strbuf_puts(out, "Original-Recipient: ");
        if (r >= 0)
                r = strbuf_append(out, orcpt, (size_t) (semi - orcpt));
        if (r >= 0)
                r = strbuf_puts(out, "; ");
        if (r >= 0) {
                const char *a = semi + 1;
                while (*a == ' ')
                        a++;
                r = put_clean(out, a, 512);
        }
        if (r >= 0)
                r = strbuf_putc(out, '\n');
        return r;
}

static const char *orcpt_address(const char *orcpt) {
        const char *semi = orcpt ? strchr(orcpt, ';') : NULL;
        if (!semi)
                return orcpt;
        semi++;
        while (*semi == ' ')
                semi++;
        return semi;
}

static bool valid_status(const char *dsn) {
        /* class "." subject "." detail, RFC 3463 */
        if (!dsn || (dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.')
                return false;
        const char *p = dsn + 2;
        for (int part = 0; part < 2; part++) {
                size_t digits = 0;
                while (isdigit((unsigned char) *p) && digits < 4)
                        p++, digits++;
                if (digits == 0 || digits > 3)
                        return false;
                if (part == 0 && *p++ != '.')
                        return false;
        }
        return *p == '\0';
}

/* What each kind of notice says: subject, the paragraph for humans, the attachment's name. */
static const struct {
        const char *subject;
        const char *text;
        const char *action;
        char status_class;
        const char *fallback_status;
        const char *attached;
} kinds[] = {
        [QMGR_NOTICE_FAILURE] = {
                "Undelivered Mail Returned to Sender",
                "Your message could not be delivered to one or more of its\n"
                "recipients. Each of them is listed below with the reason.\n",
                "failed", '5', "5.0.0", "Undelivered Message",
        },
        [QMGR_NOTICE_DELAY] = {
                "Delayed Mail (still being retried)",
                "This is a warning only: you do not need to send your message again.\n"
                "\n"
                "Your message has not yet been delivered to the recipients listed\n"
                "below. The mail system keeps trying until the time given as\n"
                "Will-Retry-Until in the delivery report.\n",
                "delayed", '4', "4.0.0", "Delayed Message",
        },
        [QMGR_NOTICE_SUCCESS] = {
                "Successful Mail Delivery Report",
                "Your message was delivered to the recipients listed below (or\n"
                "handed to a mail server that does not report delivery status).\n",
                "delivered", '2', "2.0.0", "Delivered Message",
        },
        [QMGR_NOTICE_POSTMASTER] = {
                "Undeliverable Delivery Status Notification",
                "A delivery status notification could not be delivered to its\n"
                "recipient. It is attached; it will not be returned again.\n",
                "failed", '5', "5.0.0", "Undelivered Message",
        },
};

/* Builds an RFC 3464 report in LF form; *ret_8bit says whether it contains 8-bit text. */
int qmgr_bounce_build(const QmgrBounceInput *in, StrBuf *out, bool *ret_8bit) {
        const QueueMessage *m = in->orig;
        QmgrNoticeKind kind = in->kind < ELEMENTSOF(kinds) ? in->kind : QMGR_NOTICE_FAILURE;
        char boundary[QUEUE_ID_MAX + 300];
        int r;

        snprintf(boundary, sizeof(boundary), "%s.%lld/%s", in->bounce_id, (long long) in->now,
                 in->myhostname);

        /* Failures return what RET asked for (default the full message); delay warnings the
         * header section; success notices the full message only with RET=FULL. A REQUIRETLS
         * message's notices carry its header section only: a notice travels without REQUIRETLS
         * (RFC 8689 5), so the body stays where TLS brought it. */
        size_t hdr_len = header_section_length(in->content, in->content_len);
        bool full = in->content_len <= in->size_limit && !m->requiretls &&
                    (kind == QMGR_NOTICE_FAILURE || kind == QMGR_NOTICE_POSTMASTER ? m->ret != 2 :
                     kind == QMGR_NOTICE_SUCCESS ? m->ret == 1 : false);
        size_t attach_len = full ? in->content_len
                                 : cut_at_line(in->content, hdr_len, in->size_limit);
        if (!full && attach_len >= 2 && in->content[attach_len - 1] == '\n' &&
            in->content[attach_len - 2] == '\n')
                attach_len--;   /* the header fields without the empty line that ends them */
        bool eight = has_8bit(in->content, attach_len);
        for (size_t i = 0; i < in->n_rcpts; i++)
                if (has_8bit(strempty(in->rcpts[i].diag), strlen(strempty(in->rcpts[i].diag))) ||
                    has_8bit(in->rcpts[i].address, strlen(in->rcpts[i].address)))
                        eight = true;

        /* Header section. */
        if ((r = strbuf_puts(out, "Auto-Submitted: auto-replied\n")) < 0 ||
            (r = strbuf_printf(out, "From: MAILER-DAEMON@%s (Mail Delivery System)\n",
                               in->myhostname)) < 0 ||
            (r = strbuf_puts(out, "To: ")) < 0 ||
            (r = put_clean(out, in->to ? in->to : m->sender, 512)) < 0 ||
            (r = strbuf_printf(out, "\nSubject: %s\n", kinds[kind].subject)) < 0 ||
            (r = put_date(out, "Date", in->now)) < 0 ||
            (r = strbuf_puts(out, "Message-ID: ")) < 0 ||
            (r = rfc822_message_id(in->bounce_id, in->myhostname, out)) < 0 ||
            (r = strbuf_puts(out, "\nMIME-Version: 1.0\n")) < 0 ||
            (r = strbuf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\n"
                                    "\tboundary=\"%s\"\n", boundary)) < 0)
                return r;
        if (eight && (r = strbuf_puts(out, "Content-Transfer-Encoding: 8bit\n")) < 0)
                return r;
        if ((r = strbuf_puts(out, "\nThis is a MIME-encapsulated message.\n\n")) < 0)
                return r;

        /* Part 1: for humans. */
        if ((r = strbuf_printf(out, "--%s\n"
                                    "Content-Description: Notification\n"
                                    "Content-Type: text/plain; charset=%s\n"
                                    "%s"
                                    "\n"
                                    "This is the mail system at host %s.\n"
                                    "\n"
                                    "%s"
                                    "The %s of your message is attached.\n"
                                    "\n"
                                    "For help, write to postmaster at this host and include\n"
                                    "this report.\n"
                                    "\n",
                               boundary, eight ? "utf-8" : "us-ascii",
                               eight ? "Content-Transfer-Encoding: 8bit\n" : "",
                               in->myhostname, kinds[kind].text,
                               full ? "full text" : "header section")) < 0)
                return r;
        for (size_t i = 0; i < in->n_rcpts; i++) {
                const QmgrBounceRcpt *b = &in->rcpts[i];
                const char *orig = orcpt_address(b->orcpt);
                if ((r = strbuf_putc(out, '<')) < 0 ||
                    (r = put_clean(out, b->address, 512)) < 0 ||
                    (r = strbuf_putc(out, '>')) < 0)
                        return r;
                if (orig && !streq(orig, b->address) &&
                    ((r = strbuf_puts(out, " (originally <")) < 0 ||
                     (r = put_clean(out, orig, 512)) < 0 ||
                     (r = strbuf_puts(out, ">)")) < 0))
                        return r;
                if ((r = strbuf_puts(out, ": ")) < 0 ||
                    (r = put_clean(out, isempty(b->diag) ? kinds[kind].action : b->diag, 900)) < 0 ||
                    (r = strbuf_puts(out, "\n\n")) < 0)
                        return r;
        }

        /* Part 2: for machines. */
        if ((r = strbuf_printf(out, "--%s\n"
                                    "Content-Description: Delivery report\n"
                                    "Content-Type: message/delivery-status\n"
                                    "\n"
                                    "Reporting-MTA: dns; %s\n"
                                    "X-Postern-Queue-ID: %s\n"
                                    "X-Postern-Sender: rfc822; ",
                               boundary, in->myhostname, m->queue_id)) < 0 ||
            (r = put_clean(out, m->sender, 512)) < 0 ||
            (r = strbuf_putc(out, '\n')) < 0)
                return r;
        if (!isempty(m->envid) &&
            ((r = strbuf_puts(out, "Original-Envelope-Id: ")) < 0 ||
             (r = put_clean(out, m->envid, 200)) < 0 ||
             (r = strbuf_putc(out, '\n')) < 0))
                return r;
        if ((r = put_date(out, "Arrival-Date", (time_t) (m->arrival_usec / USEC_PER_SEC))) < 0)
                return r;
        for (size_t i = 0; i < in->n_rcpts; i++) {
                const QmgrBounceRcpt *b = &in->rcpts[i];
                bool status_ok = valid_status(b->dsn) && b->dsn[0] == kinds[kind].status_class;
                if (kind == QMGR_NOTICE_FAILURE || kind == QMGR_NOTICE_POSTMASTER)
                        status_ok = valid_status(b->dsn) && b->dsn[0] != '2';   /* expiry: 4.x.x */
                if ((r = strbuf_puts(out, "\nFinal-Recipient: rfc822; ")) < 0 ||
                    (r = put_clean(out, b->address, 512)) < 0 ||
                    (r = strbuf_putc(out, '\n')) < 0)
                        return r;
                if (b->orcpt && (r = put_orcpt(out, b->orcpt)) < 0)
                        return r;
                if ((r = strbuf_printf(out, "Action: %s\nStatus: %s\n",
                                       b->action ? b->action : kinds[kind].action,
                                       status_ok ? b->dsn : kinds[kind].fallback_status)) < 0)
                        return r;
                if (!isempty(b->remote_mta) &&
                    ((r = strbuf_puts(out, "Remote-MTA: dns; ")) < 0 ||
                     (r = put_clean(out, b->remote_mta, 255)) < 0 ||
                     (r = strbuf_putc(out, '\n')) < 0))
                        return r;
                if ((r = strbuf_printf(out, "Diagnostic-Code: %s; ",
                                       b->diag_type ? b->diag_type : "x-unix")) < 0 ||
                    (r = put_clean(out, isempty(b->diag) ? kinds[kind].action : b->diag, 900)) < 0 ||
                    (r = strbuf_putc(out, '\n')) < 0 ||
                    (r = put_date(out, "Last-Attempt-Date", in->now)) < 0)
                        return r;
                if (kind == QMGR_NOTICE_DELAY && in->retry_until > 0 &&
                    (r = put_date(out, "Will-Retry-Until", in->retry_until)) < 0)
                        return r;
        }

        /* Part 3: the message or its headers. */
        if ((r = strbuf_printf(out, "\n--%s\n", boundary)) < 0)
                return r;
        if (full)
                r = strbuf_printf(out, "Content-Description: %s\n"
                                       "Content-Type: message/rfc822\n%s\n",
                                  kinds[kind].attached, eight ? "Content-Transfer-Encoding: 8bit\n" : "");
        else
                r = strbuf_printf(out, "Content-Description: %s Headers\n"
                                       "Content-Type: text/rfc822-headers\n%s\n",
                                  kinds[kind].attached, eight ? "Content-Transfer-Encoding: 8bit\n" : "");
        if (r < 0)
                return r;
        if ((r = strbuf_append(out, in->content, attach_len)) < 0)
                return r;
        if (attach_len > 0 && in->content[attach_len - 1] != '\n' && (r = strbuf_putc(out, '\n')) < 0)
                return r;
        if ((r = strbuf_printf(out, "\n--%s--\n", boundary)) < 0)
                return r;

        if (ret_8bit)
                *ret_8bit = eight;
        return 0;
}

static bool wants_notice(const QueueRecipient *r, unsigned what) {
        if (r->notify & QUEUE_NOTIFY_NEVER)
                return false;
        if (r->notify == 0)   /* not given: failures and delays, never success (RFC 3461) */
                return what != QUEUE_NOTIFY_SUCCESS;
        return r->notify & what;
}

/* Whether the recipient belongs in a notice of this kind (on completion, or for a delay warning). */
static bool rcpt_in_notice(const Qmgr *q, const QueueRecipient *rc, QmgrNoticeKind kind) {
        switch (kind) {
        case QMGR_NOTICE_FAILURE:
                return rc->state == QUEUE_RCPT_BOUNCED && wants_notice(rc, QUEUE_NOTIFY_FAILURE);
        case QMGR_NOTICE_POSTMASTER:
                return rc->state == QUEUE_RCPT_BOUNCED;
        case QMGR_NOTICE_SUCCESS:
                /* confirm_delay_cleared: a recipient named in the delay warning is told about too. */
                return rc->state == QUEUE_RCPT_DELIVERED &&
                       (wants_notice(rc, QUEUE_NOTIFY_SUCCESS) ||
                        (q->s.confirm_delay_cleared && (rc->flags & QUEUE_RCPT_F_DELAY_WARNED)));
        case QMGR_NOTICE_DELAY:
                return rc->state == QUEUE_RCPT_DEFERRED && wants_notice(rc, QUEUE_NOTIFY_DELAY);
        }
        return false;
}

/* Whether sender is the double_bounce_sender address (ours: no domain or $myhostname). */
bool qmgr_is_double_bounce_sender(const QmgrSettings *s, const char *sender) {
        if (isempty(sender) || isempty(s->double_bounce_sender))
                return false;
        const char *at = strrchr(sender, '@');
        size_t n = at ? (size_t) (at - sender) : strlen(sender);
        if (n != strlen(s->double_bounce_sender) || strncasecmp(sender, s->double_bounce_sender, n) != 0)
                return false;
        return !at || strcaseeq(at + 1, s->myhostname);
}

/* Builds and queues one notice of the given kind about m (inside the caller's transaction).
 * ret_id is "" when no recipient belongs in it. */
int qmgr_notice_insert(Qmgr *q, QmgrMessage *m, QmgrNoticeKind kind, char ret_id[QUEUE_ID_MAX]) {
        _cleanup_free_ QmgrBounceRcpt *b = calloc(m->n_rcpts + 1, sizeof(QmgrBounceRcpt));
        _cleanup_free_ char *content = NULL, *sender = NULL;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        size_t content_len = 0, n = 0;
        bool eight = false;
        int r;

        ret_id[0] = '\0';
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_rcpts; i++) {
                QueueRecipient *rc = &m->rcpts[i];
                if (!rcpt_in_notice(q, rc, kind))
                        continue;
                b[n++] = (QmgrBounceRcpt) {
                        .address = rc->address,
                        .orcpt = rc->orcpt,
                        .dsn = rc->dsn_status,
                        .diag = rc->diag,
                        .diag_type = !isempty(rc->remote_mta) ? "smtp" :
                                     qmgr_route(&q->s, rc->address) == QMGR_ROUTE_LOCAL ? "x-unix"
                                                                                        : "x-postern",
                        .action = kind != QMGR_NOTICE_SUCCESS ? NULL :
                                  (rc->flags & QUEUE_RCPT_F_RELAYED) ? "relayed" :
                                  (rc->flags & QUEUE_RCPT_F_EXPANDED) ? "expanded" : NULL,
                        .remote_mta = rc->remote_mta,
                };
        }
        if (n == 0)
                return 0;

        r = queue_load_content(q->queue, m->queue_id, &content, &content_len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot read the message for its notification: %s",
                                       m->queue_id, queue_last_error(q->queue));

        char id[QUEUE_ID_MAX];
        queue_id_new(id);
        usec_t now = now_usec(CLOCK_REALTIME);
        const char *to = kind == QMGR_NOTICE_POSTMASTER ? q->s.bounce_notice_recipient : m->msg.sender;
        QmgrBounceInput in = {
                .myhostname = q->s.myhostname,
                .bounce_id = id,
                .orig = &m->msg,
                .rcpts = b,
                .n_rcpts = n,
                .content = content,
                .content_len = content_len,
                .size_limit = q->s.bounce_size_limit,
                .now = (time_t) (now / USEC_PER_SEC),
                .kind = kind,
                .to = to,
                .retry_until = (time_t) ((m->msg.arrival_usec + q->s.maximal_queue_lifetime) / USEC_PER_SEC),
        };
        r = qmgr_bounce_build(&in, &out, &eight);
        if (r < 0)
                return log_error_errno(r, "%s: cannot build the notification: %m", m->queue_id);

        /* Notices to the sender go out with the null sender; the postmaster's with
         * double_bounce_sender, whose own failures are discarded, so nothing loops. */
        if (kind == QMGR_NOTICE_POSTMASTER &&
            asprintf(&sender, "%s@%s", q->s.double_bounce_sender, q->s.myhostname) < 0) {
                sender = NULL;
                return log_oom();
        }
        QueueMessage bm = {
                .sender = sender ? sender : (char *) "",
                .arrival_usec = now,
                .size = out.len,
                .protocol = (char *) "LOCAL",
                .body_type = (char *) (eight ? "8BITMIME" : "7BIT"),
                .smtputf8 = m->msg.smtputf8,
                .is_bounce = true,
        };
        memcpy(bm.queue_id, id, sizeof(id));
        QueueRecipient br = {
                .address = (char *) to,
                .state = QUEUE_RCPT_PENDING,
        };
        r = queue_insert_message(q->queue, &bm, &br, 1, out.data, out.len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot queue the notification: %s", m->queue_id,
                                       queue_last_error(q->queue));
        memcpy(ret_id, id, QUEUE_ID_MAX);
        return 0;
}

/* Inside an open transaction: inserts the notifications due for m and deletes m.
 * ret_bounce_id receives the failure notice's id (to the sender, or to the postmaster for an
 * undeliverable notification) or ""; m->success_id the success notice's. */
int qmgr_complete_in_transaction(Qmgr *q, QmgrMessage *m, char ret_bounce_id[QUEUE_ID_MAX]) {
        bool any_bounced = false;
        int r;

        ret_bounce_id[0] = '\0';
        m->success_id[0] = '\0';
        m->postmaster_notice = false;
        for (size_t i = 0; i < m->n_rcpts; i++)
                if (m->rcpts[i].state == QUEUE_RCPT_BOUNCED)
                        any_bounced = true;

        bool notification = m->msg.is_bounce || isempty(m->msg.sender);
        if (m->msg.is_probe) {
                /* An address probe: its result went to postern-verify; no notice of any kind. */
        } else if (any_bounced && !notification) {
                r = qmgr_notice_insert(q, m, QMGR_NOTICE_FAILURE, ret_bounce_id);
                if (r < 0)
                        return r;
        } else if (any_bounced && !qmgr_is_double_bounce_sender(&q->s, m->msg.sender) &&
                   !isempty(q->s.bounce_notice_recipient)) {
                r = qmgr_notice_insert(q, m, QMGR_NOTICE_POSTMASTER, ret_bounce_id);
                if (r < 0)
                        return r;
                m->postmaster_notice = ret_bounce_id[0] != '\0';
        }
        if (!notification && !m->msg.is_probe) {
                r = qmgr_notice_insert(q, m, QMGR_NOTICE_SUCCESS, m->success_id);
                if (r < 0)
                        return r;
        }
        r = queue_delete_message(q->queue, m->queue_id);
        if (r < 0)
                return log_error_errno(r, "%s: cannot remove the message: %s", m->queue_id,
                                       queue_last_error(q->queue));
        return 0;
}
