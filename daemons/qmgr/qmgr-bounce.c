/* qmgr-bounce.c — non-delivery notifications (RFC 3464) and the completion transaction.
 *
 * qmgr_bounce_build() turns a message and its failed recipients into a multipart/report
 * (report-type=delivery-status) in LF form: a plain-text part naming each failed recipient and
 * why, a message/delivery-status part (Reporting-MTA, Arrival-Date, then per recipient
 * Final-Recipient, Original-Recipient, Action: failed, Status, Diagnostic-Code,
 * Last-Attempt-Date), and the original message as message/rfc822 — or only its header section as
 * text/rfc822-headers when the sender asked for RET=HDRS or the message is larger than
 * bounce_size_limit. The notification comes from MAILER-DAEMON@$myhostname with the null sender
 * and is marked is_bounce, so it is never bounced again.
 *
 * qmgr_complete_in_transaction() inserts that notification (when a recipient bounced, the message
 * is not itself a notification, and its sender is not null) and deletes the message, inside the
 * caller's transaction. Recipients that asked for NOTIFY=NEVER, or NOTIFY without FAILURE, are
 * left out of the report. An expired recipient keeps its last 4.x.x status (Action: failed), as
 * Postfix does. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
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

/* Builds an RFC 3464 report in LF form; *ret_8bit says whether it contains 8-bit text. */
int qmgr_bounce_build(const QmgrBounceInput *in, StrBuf *out, bool *ret_8bit) {
        const QueueMessage *m = in->orig;
        char boundary[QUEUE_ID_MAX + 300];
        int r;

        snprintf(boundary, sizeof(boundary), "%s.%lld/%s", in->bounce_id, (long long) in->now,
                 in->myhostname);

        size_t hdr_len = header_section_length(in->content, in->content_len);
        bool full = m->ret != 2 && in->content_len <= in->size_limit;
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
            (r = put_clean(out, m->sender, 512)) < 0 ||
            (r = strbuf_puts(out, "\nSubject: Undelivered Mail Returned to Sender\n")) < 0 ||
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
                                    "Your message could not be delivered to one or more of its\n"
                                    "recipients. Each of them is listed below with the reason.\n"
                                    "The %s of your message is attached.\n"
                                    "\n"
                                    "For help, write to postmaster at this host and include\n"
                                    "this report.\n"
                                    "\n",
                               boundary, eight ? "utf-8" : "us-ascii",
                               eight ? "Content-Transfer-Encoding: 8bit\n" : "",
                               in->myhostname,
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
                    (r = put_clean(out, isempty(b->diag) ? "delivery failed" : b->diag, 900)) < 0 ||
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
                if ((r = strbuf_puts(out, "\nFinal-Recipient: rfc822; ")) < 0 ||
                    (r = put_clean(out, b->address, 512)) < 0 ||
                    (r = strbuf_putc(out, '\n')) < 0)
                        return r;
                if (b->orcpt && (r = put_orcpt(out, b->orcpt)) < 0)
                        return r;
                if ((r = strbuf_printf(out, "Action: failed\nStatus: %s\n",
                                       valid_status(b->dsn) && b->dsn[0] != '2' ? b->dsn
                                                                                : "5.0.0")) < 0 ||
                    (r = strbuf_printf(out, "Diagnostic-Code: %s; ",
                                       b->diag_type ? b->diag_type : "x-unix")) < 0 ||
                    (r = put_clean(out, isempty(b->diag) ? "delivery failed" : b->diag, 900)) < 0 ||
                    (r = strbuf_putc(out, '\n')) < 0 ||
                    (r = put_date(out, "Last-Attempt-Date", in->now)) < 0)
                        return r;
        }

        /* Part 3: the message or its headers. */
        if ((r = strbuf_printf(out, "\n--%s\n", boundary)) < 0)
                return r;
        if (full)
                r = strbuf_printf(out, "Content-Description: Undelivered Message\n"
                                       "Content-Type: message/rfc822\n%s\n",
                                  eight ? "Content-Transfer-Encoding: 8bit\n" : "");
        else
                r = strbuf_printf(out, "Content-Description: Undelivered Message Headers\n"
                                       "Content-Type: text/rfc822-headers\n%s\n",
                                  eight ? "Content-Transfer-Encoding: 8bit\n" : "");
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

static bool wants_failure_notice(const QueueRecipient *r) {
        if (r->notify == 0)
                return true;
        if (r->notify & QUEUE_NOTIFY_NEVER)
                return false;
        return r->notify & QUEUE_NOTIFY_FAILURE;
}

static int insert_bounce(Qmgr *q, QmgrMessage *m, char bounce_id[QUEUE_ID_MAX]) {
        _cleanup_free_ QmgrBounceRcpt *b = calloc(m->n_rcpts, sizeof(QmgrBounceRcpt));
        _cleanup_free_ char *content = NULL;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        size_t content_len = 0, n = 0;
        bool eight = false;
        int r;

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_rcpts; i++) {
                QueueRecipient *rc = &m->rcpts[i];
                if (rc->state != QUEUE_RCPT_BOUNCED || !wants_failure_notice(rc))
                        continue;
                b[n++] = (QmgrBounceRcpt) {
                        .address = rc->address,
                        .orcpt = rc->orcpt,
                        .dsn = rc->dsn_status,
                        .diag = rc->diag,
                        .diag_type = qmgr_route(&q->s, rc->address) == QMGR_ROUTE_LOCAL ? "x-unix"
                                                                                        : "x-postern",
                };
        }
        if (n == 0)
                return 0;

        r = queue_load_content(q->queue, m->queue_id, &content, &content_len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot read the message for its bounce: %s", m->queue_id,
                                       queue_last_error(q->queue));

        char id[QUEUE_ID_MAX];
        queue_id_new(id);
        usec_t now = now_usec(CLOCK_REALTIME);
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
        };
        r = qmgr_bounce_build(&in, &out, &eight);
        if (r < 0)
                return log_error_errno(r, "%s: cannot build the bounce: %m", m->queue_id);

        QueueMessage bm = {
                .sender = (char *) "",
                .arrival_usec = now,
                .size = out.len,
                .protocol = (char *) "LOCAL",
                .body_type = (char *) (eight ? "8BITMIME" : "7BIT"),
                .smtputf8 = m->msg.smtputf8,
                .is_bounce = true,
        };
        memcpy(bm.queue_id, id, sizeof(id));
        QueueRecipient br = {
                .address = m->msg.sender,
                .state = QUEUE_RCPT_PENDING,
        };
        r = queue_insert_message(q->queue, &bm, &br, 1, out.data, out.len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot queue the bounce: %s", m->queue_id,
                                       queue_last_error(q->queue));
        memcpy(bounce_id, id, QUEUE_ID_MAX);
        return 0;
}

/* Inside an open transaction: inserts the notification for the bounced recipients of m (when
 * one is due) and deletes m. ret_bounce_id receives the notification's id or "". */
int qmgr_complete_in_transaction(Qmgr *q, QmgrMessage *m, char ret_bounce_id[QUEUE_ID_MAX]) {
        bool any_bounced = false;
        int r;

        ret_bounce_id[0] = '\0';
        for (size_t i = 0; i < m->n_rcpts; i++)
                if (m->rcpts[i].state == QUEUE_RCPT_BOUNCED)
                        any_bounced = true;

        if (any_bounced && !m->msg.is_bounce && !isempty(m->msg.sender)) {
                r = insert_bounce(q, m, ret_bounce_id);
                if (r < 0)
                        return r;
        }
        r = queue_delete_message(q->queue, m->queue_id);
        if (r < 0)
                return log_error_errno(r, "%s: cannot remove the message: %s", m->queue_id,
                                       queue_last_error(q->queue));
        return 0;
}
