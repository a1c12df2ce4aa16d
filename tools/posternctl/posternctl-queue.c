/* posternctl-queue.c — `posternctl queue` (also `postern-mailq`, `postern-sendmail -bp`): what is
 * in the queue, in the mailq layout admins and their scripts know:
 *
 *   -Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
 *   1LG3CUL2FIPJH4TS!     3000 Sat Nov 21 15:08:05  alice@example.org
 *           (connect to example.com: Connection refused)
 *                                                   bob@example.com
 *
 *   -- 2 Kbytes in 1 Request.
 *
 * "!" after the id marks a message on hold. An address verification probe (postern-verify's,
 * never delivered) has the line "(address verification probe)" under its sender. Only recipients still waiting (pending or
 * deferred) are listed; a deferred one is preceded by its last diagnostic in parentheses.
 * `--json` prints one JSON object per message instead, for scripts. The queue is opened
 * read-only (QUEUE_OPEN_READONLY) from queue_directory, or from the directory given with
 * --queue-directory. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "posternctl.h"

typedef struct QueueListing {
        bool json;
        size_t messages;
        uint64_t bytes;
} QueueListing;

static const char *state_name(QueueRcptState s) {
        switch (s) {
        case QUEUE_RCPT_PENDING:   return "pending";
        case QUEUE_RCPT_DEFERRED:  return "deferred";
        case QUEUE_RCPT_DELIVERED: return "delivered";
        case QUEUE_RCPT_BOUNCED:   return "bounced";
        }
        return "unknown";
}

/* Prints s as a JSON string (quotes included); bytes >= 0x80 pass through (UTF-8). */
void posternctl_json_string(const char *s) {
        putchar('"');
        for (const unsigned char *p = (const unsigned char *) strempty(s); *p; p++) {
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", stdout);
                else if (*p == '\t')
                        fputs("\\t", stdout);
                else if (*p < 0x20 || *p == 0x7f)
                        printf("\\u%04x", *p);
                else
                        putchar(*p);
        }
        putchar('"');
}

static void print_json(const QueueMessage *m, const QueueRecipient *rcpts, size_t n) {
        printf("{\"queue_id\":");
        posternctl_json_string(m->queue_id);
        printf(",\"hold\":%s,\"size\":%" PRIu64 ",\"arrival_time\":%llu,\"sender\":",
               m->hold ? "true" : "false", m->size, m->arrival_usec / USEC_PER_SEC);
        posternctl_json_string(m->sender);
        printf(",\"is_bounce\":%s,\"is_probe\":%s,\"recipients\":[", m->is_bounce ? "true" : "false",
               m->is_probe ? "true" : "false");
        for (size_t i = 0; i < n; i++) {
                const QueueRecipient *r = &rcpts[i];
                printf("%s{\"address\":", i ? "," : "");
                posternctl_json_string(r->address);
                printf(",\"state\":\"%s\",\"attempts\":%" PRIu32 ",\"next_attempt_time\":%llu",
                       state_name(r->state), r->attempts, r->next_attempt_usec / USEC_PER_SEC);
                if (r->dsn_status) {
                        printf(",\"dsn\":");
                        posternctl_json_string(r->dsn_status);
                }
                if (r->diag) {
                        printf(",\"reason\":");
                        posternctl_json_string(r->diag);
                }
                putchar('}');
        }
        printf("]}\n");
}

static void print_text(const QueueMessage *m, const QueueRecipient *rcpts, size_t n) {
        char when[64] = "";
        time_t t = (time_t) (m->arrival_usec / USEC_PER_SEC);
        struct tm tm;
        char id[QUEUE_ID_MAX + 2];

        if (localtime_r(&t, &tm))
                strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
        snprintf(id, sizeof id, "%s%s", m->queue_id, m->hold ? "!" : "");
        printf("%-17s %8" PRIu64 " %-19.19s  %s\n", id, m->size, when,
               isempty(m->sender) ? "MAILER-DAEMON" : m->sender);
        if (m->is_probe)
                printf("%*s(address verification probe)\n", 8, "");
        for (size_t i = 0; i < n; i++) {
                const QueueRecipient *r = &rcpts[i];
                if (r->state != QUEUE_RCPT_PENDING && r->state != QUEUE_RCPT_DEFERRED)
                        continue;
                if (r->state == QUEUE_RCPT_DEFERRED && !isempty(r->diag))
                        printf("%*s(%s)\n", 8, "", r->diag);
                printf("%*s%s\n", 48, "", r->address);
        }
        putchar('\n');
}

static int list_one(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *ud) {
        QueueListing *l = ud;

        if (l->json)
                print_json(m, rcpts, n);
        else {
                if (l->messages == 0)
                        printf("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
                print_text(m, rcpts, n);
        }
        l->messages++;
        l->bytes += m->size;
        return 0;
}

/* Opens the queue read-only from dir, or from main.cf's queue_directory when dir is NULL. */
int posternctl_queue_open(const char *verb, const char *dir, Queue **ret) {
        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        int r;

        *ret = NULL;
        if (!dir) {
                r = conf_load(NULL, &c, &msgs);
                if (r < 0) {
                        for (char **m = msgs; m && *m; m++)
                                fprintf(stderr, "posternctl %s: %s\n", verb, *m);
                        return EX_CONFIG;
                }
                dir = conf_get(c, "queue_directory");
                if (isempty(dir))
                        dir = "/var/spool/postern";
        }
        r = queue_open(dir, QUEUE_OPEN_READONLY, ret);
        if (r == -ENOENT)
                return EX_OK;
        if (r < 0) {
                fprintf(stderr, "posternctl %s: cannot open the queue in %s: %s%s\n", verb, dir,
                        strerror(-r), r == -EACCES ? " (run as root or as postern)" : "");
                return EX_NOPERM;
        }
        return EX_OK;
}

/* Copies a queue id argument into id, dropping the "!" posternctl queue shows after held ones;
 * false when it is not a queue id. */
bool posternctl_queue_id_arg(const char *arg, char id[QUEUE_ID_MAX + 2]) {
        snprintf(id, QUEUE_ID_MAX + 2, "%s", arg);
        size_t l = strlen(id);
        if (l > 1 && id[l - 1] == '!')
                id[l - 1] = '\0';
        return strlen(arg) <= QUEUE_ID_MAX && queue_id_valid(id);
}

static void help(void) {
        printf("Usage: posternctl queue [--json] [--queue-directory DIR]\n\n"
               "Lists queued messages like mailq: id (\"!\" = on hold), size, arrival time, sender,\n"
               "and the recipients still waiting, with the reason for deferred ones.\n"
               "  --json                  one JSON object per message, for scripts\n"
               "  --queue-directory DIR   read DIR/queue.db instead of $queue_directory\n");
}

int verb_queue(int argc, char *argv[]) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "queue-directory", required_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_queue_close_ Queue *q = NULL;
        QueueListing l = {};
        const char *dir = NULL;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "jq:h", options, NULL)) >= 0)
                switch (opt) {
                case 'j':
                        l.json = true;
                        break;
                case 'q':
                        dir = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return EX_USAGE;
                }
        if (optind < argc) {
                fprintf(stderr, "posternctl queue: unexpected argument \"%s\"\n", argv[optind]);
                return EX_USAGE;
        }

        r = posternctl_queue_open("queue", dir, &q);
        if (r != EX_OK)
                return r;
        if (!q) {
                /* No database yet: nothing was ever queued. */
                if (!l.json)
                        printf("Mail queue is empty\n");
                return 0;
        }
        r = queue_list(q, list_one, &l);
        if (r < 0) {
                fprintf(stderr, "posternctl queue: reading the queue: %s (%s)\n", strerror(-r),
                        queue_last_error(q));
                return EX_SOFTWARE;
        }
        if (l.json)
                return 0;
        if (l.messages == 0)
                printf("Mail queue is empty\n");
        else
                printf("-- %" PRIu64 " Kbytes in %zu Request%s.\n", (l.bytes + 1023) / 1024,
                       l.messages, l.messages == 1 ? "" : "s");
        return 0;
}
