/* posternctl-show.c — `posternctl show [-e] [-h] [-b] ID`: one queued message, as Postfix's
 * `postcat -q ID` shows it:
 *
 *   *** ENVELOPE RECORDS 1LG3CUL2FIPJH4TS ***
 *   message_size: 3000
 *   message_arrival_time: Sat Nov 21 15:08:05 2026
 *   sender: alice@example.org
 *   named_attribute: client_address=192.0.2.7        (client_name, helo_name, protocol, ...)
 *   original_recipient: rfc822;bob@example.com        (only when ORCPT= was given)
 *   recipient: bob@example.com
 *   recipient_status: deferred attempts=2 dsn=4.4.1 (connect to ...: Connection refused)
 *   *** MESSAGE CONTENTS 1LG3CUL2FIPJH4TS ***
 *   Received: ...
 *
 *   Hello.
 *   *** MESSAGE FILE END 1LG3CUL2FIPJH4TS ***
 *
 * -e, -h and -b choose the envelope, the header and the body (any combination; none = all), as
 * postcat's do. A finished recipient is "done_recipient:" (postcat's name for it); the
 * recipient_status line is Postern's own, what Postfix keeps in its defer logs. Lines end in
 * LF whatever the stored text uses. The queue is opened read-only (posternctl_queue_open). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "queue/queue.h"
#include "posternctl.h"

static const char *rcpt_state(QueueRcptState s) {
        switch (s) {
        case QUEUE_RCPT_PENDING:   return "pending";
        case QUEUE_RCPT_DEFERRED:  return "deferred";
        case QUEUE_RCPT_DELIVERED: return "delivered";
        case QUEUE_RCPT_BOUNCED:   return "bounced";
        }
        return "unknown";
}

static void attr(FILE *f, const char *name, const char *value) {
        if (!isempty(value))
                fprintf(f, "named_attribute: %s=%s\n", name, value);
}

static void write_envelope(FILE *f, const QueueMessage *m, const QueueRecipient *rcpts, size_t n) {
        char when[64] = "";
        time_t t = (time_t) (m->arrival_usec / USEC_PER_SEC);
        struct tm tm;

        if (localtime_r(&t, &tm))
                strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm);
        fprintf(f, "message_size: %" PRIu64 "\n", m->size);
        fprintf(f, "message_arrival_time: %s\n", when);
        fprintf(f, "sender: %s\n", m->sender ? m->sender : "");
        attr(f, "client_address", m->client_address);
        attr(f, "client_name", m->client_name);
        attr(f, "helo_name", m->helo);
        attr(f, "protocol_name", m->protocol);
        attr(f, "sasl_username", m->sasl_user);
        attr(f, "body_type", m->body_type);
        attr(f, "envelope_id", m->envid);
        if (m->ret)
                attr(f, "dsn_ret", m->ret == 1 ? "FULL" : "HDRS");
        if (m->smtputf8)
                attr(f, "smtputf8", "yes");
        if (m->requiretls)
                attr(f, "requiretls", "yes");
        attr(f, "content_filter", m->filter);
        if (m->hold)
                fprintf(f, "hold: yes\n");
        for (size_t i = 0; i < n; i++) {
                const QueueRecipient *r = &rcpts[i];
                bool done = r->state == QUEUE_RCPT_DELIVERED || r->state == QUEUE_RCPT_BOUNCED;
                if (r->orcpt)
                        fprintf(f, "original_recipient: %s\n", r->orcpt);
                fprintf(f, "%s: %s\n", done ? "done_recipient" : "recipient", r->address);
                if (r->state == QUEUE_RCPT_PENDING)
                        continue;
                fprintf(f, "recipient_status: %s attempts=%" PRIu32, rcpt_state(r->state), r->attempts);
                if (r->dsn_status)
                        fprintf(f, " dsn=%s", r->dsn_status);
                if (!isempty(r->diag))
                        fprintf(f, " (%s)", r->diag);
                fputc('\n', f);
        }
}

/* Writes the lines of text[0..len) with LF endings (a CR before LF dropped). */
static void write_lines(FILE *f, const char *text, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
                        continue;
                fputc(text[i], f);
        }
        if (len > 0 && text[len - 1] != '\n')
                fputc('\n', f);
}

/* Where the body starts: after the first empty line (LF or CRLF); len when there is none. */
size_t posternctl_show_body_offset(const char *text, size_t len) {
        for (size_t j = 0; j < len;) {   /* j: the start of a line */
                if (text[j] == '\n')
                        return j + 1;
                if (text[j] == '\r' && j + 1 < len && text[j + 1] == '\n')
                        return j + 2;
                const char *nl = memchr(text + j, '\n', len - j);
                if (!nl)
                        break;
                j = (size_t) (nl - text) + 1;
        }
        return len;
}

/* Writes the sections (SHOW_*) of one message in postcat's layout. */
void posternctl_show_write(FILE *f, const QueueMessage *m, const QueueRecipient *rcpts, size_t n,
                           const char *content, size_t len, unsigned sections) {
        if (sections == 0)
                sections = SHOW_ENVELOPE | SHOW_HEADER | SHOW_BODY;
        if (sections & SHOW_ENVELOPE) {
                fprintf(f, "*** ENVELOPE RECORDS %s ***\n", m->queue_id);
                write_envelope(f, m, rcpts, n);
        }
        if (sections & (SHOW_HEADER | SHOW_BODY)) {
                size_t body = posternctl_show_body_offset(content, len);
                fprintf(f, "*** MESSAGE CONTENTS %s ***\n", m->queue_id);
                if (sections & SHOW_HEADER)
                        write_lines(f, content, body);
                if (sections & SHOW_BODY)
                        write_lines(f, content + body, len - body);
        }
        fprintf(f, "*** MESSAGE FILE END %s ***\n", m->queue_id);
}

static void help(void) {
        printf("Usage: posternctl show [-e] [-h] [-b] [--queue-directory DIR] ID\n\n"
               "Shows a queued message like postcat -q ID: its envelope, header and body.\n"
               "  -e   the envelope (sender, client, recipients and their delivery state)\n"
               "  -h   the header\n"
               "  -b   the body\n"
               "Without -e/-h/-b all three. Needs read access to the queue (root or postern).\n");
}

int verb_show(int argc, char *argv[]) {
        static const struct option options[] = {
                { "queue-directory", required_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'H' },
                {}
        };
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_free_ char *content = NULL;
        QueueMessage m = {};
        QueueRecipient *rcpts = NULL;
        const char *dir = NULL;
        unsigned sections = 0;
        size_t n = 0, len = 0;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "ehbq:", options, NULL)) >= 0)
                switch (opt) {
                case 'e': sections |= SHOW_ENVELOPE; break;
                case 'h': sections |= SHOW_HEADER; break;
                case 'b': sections |= SHOW_BODY; break;
                case 'q': dir = optarg; break;
                case 'H': help(); return EX_OK;
                default: return EX_USAGE;
                }
        if (argc - optind != 1) {
                fprintf(stderr, "posternctl show: expected one queue id (see posternctl queue)\n");
                return EX_USAGE;
        }
        char id[QUEUE_ID_MAX + 2];
        if (!posternctl_queue_id_arg(argv[optind], id)) {
                fprintf(stderr, "posternctl show: \"%s\" is not a queue id\n", argv[optind]);
                return EX_USAGE;
        }

        r = posternctl_queue_open("show", dir, &q);
        if (r != EX_OK)
                return r;
        r = q ? queue_load_message(q, id, &m, &rcpts, &n) : -ENOENT;
        if (r >= 0)
                r = queue_load_content(q, id, &content, &len);
        if (r == -ENOENT) {
                fprintf(stderr, "posternctl show: %s: no such message in the queue\n", id);
                r = 1;
        } else if (r < 0) {
                fprintf(stderr, "posternctl show: %s: reading the queue: %s (%s)\n", id, strerror(-r),
                        queue_last_error(q));
                r = EX_SOFTWARE;
        } else {
                posternctl_show_write(stdout, &m, rcpts, n, content, len, sections);
                r = EX_OK;
        }
        queue_message_done(&m);
        queue_recipients_free(rcpts, n);
        return r;
}
