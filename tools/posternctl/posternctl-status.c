/* posternctl-status.c — `posternctl status`: Postern on one screen.
 *
 *   Units:
 *     postern-qmgr.service       active (running)
 *     postern-smtpd.socket       active (listening)
 *     ...
 *   Queue: 12 messages (34 KiB), 1 on hold
 *     recipients: 3 incoming, 1 active, 8 deferred, 2 on hold
 *   Top deferral reasons:
 *          5  connect to mx.example.com[192.0.2.1]:25: Connection refused
 *          3  host mx.example.net said: 451 4.7.1 greylisted
 *
 * The units are every loaded postern* unit, with systemd's ActiveState and SubState (sd-bus:
 * org.freedesktop.systemd1.Manager.ListUnitsByPatterns); "not under systemd" when the system
 * was not booted with systemd or its bus cannot be reached. The queue part reads queue.db
 * read-only (posternctl_queue_open; root or postern): the states are qshape's
 * (posternctl-qshape.c), the reasons the deferred recipients' last diagnostics, most frequent
 * first (at most five), counted in a QShape keyed by their text. Exit status 0, or the queue's error when it cannot be read. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>

#include "queue/queue.h"
#include "posternctl.h"

#define STATUS_TOP_REASONS 5

static void print_units(void) {
        sd_bus *bus = NULL;
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name, *load, *active, *sub;
        size_t n = 0;
        int r;

        printf("Units:\n");
        if (sd_booted() <= 0) {
                printf("  not under systemd (this system was not booted with it)\n");
                return;
        }
        r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                       "org.freedesktop.systemd1.Manager", "ListUnitsByPatterns",
                                       &error, &reply, "asas", 0, 1, "postern*");
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(ssssssouso)", &name, NULL, &load, &active, &sub,
                                        NULL, NULL, NULL, NULL, NULL)) > 0) {
                printf("  %-30s %s (%s)%s%s\n", name, active, sub, streq(load, "loaded") ? "" : ", ",
                       streq(load, "loaded") ? "" : load);
                n++;
        }
        if (r < 0)
                printf("  not under systemd (cannot ask systemd: %s)\n",
                       sd_bus_error_is_set(&error) ? error.message : strerror(-r));
        else if (n == 0)
                printf("  no postern unit is loaded\n");
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
}

typedef struct StatusCounts {
        usec_t now;
        uint64_t messages, bytes, held;
        uint64_t incoming, active, deferred, on_hold;
        QShape reasons;   /* keyed by diagnostic text; the age column is unused */
} StatusCounts;

static void counts_done(StatusCounts *c) {
        qshape_done(&c->reasons);
}

static int count_one(const QueueMessage *m, const QueueRecipient *rcpts, size_t n, void *ud) {
        StatusCounts *c = ud;
        c->messages++;
        c->bytes += m->size;
        c->held += m->hold;
        for (size_t i = 0; i < n; i++) {
                const QueueRecipient *r = &rcpts[i];
                if (r->state != QUEUE_RCPT_PENDING && r->state != QUEUE_RCPT_DEFERRED)
                        continue;
                if (m->hold)
                        c->on_hold++;
                else if (r->state == QUEUE_RCPT_PENDING)
                        c->incoming++;
                else if (r->next_attempt_usec <= c->now)
                        c->active++;
                else
                        c->deferred++;
                if (r->state == QUEUE_RCPT_DEFERRED &&
                    qshape_add(&c->reasons, isempty(r->diag) ? "(no reason recorded)" : r->diag, 0) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static void help(void) {
        printf("Usage: posternctl status [--queue-directory DIR]\n\n"
               "Shows each role's unit state, the queue's counts and the most frequent reasons\n"
               "for deferred mail. The queue part needs read access to it (root or postern).\n");
}

int verb_status(int argc, char *argv[]) {
        static const struct option options[] = {
                { "queue-directory", required_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_(counts_done) StatusCounts c = { .now = now_usec(CLOCK_REALTIME) };
        const char *dir = NULL;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "q:h", options, NULL)) >= 0)
                switch (opt) {
                case 'q': dir = optarg; break;
                case 'h': help(); return EX_OK;
                default: return EX_USAGE;
                }
        if (optind < argc) {
                fprintf(stderr, "posternctl status: unexpected argument \"%s\"\n", argv[optind]);
                return EX_USAGE;
        }

        print_units();
        fflush(stdout);
        r = posternctl_queue_open("status", dir, &q);
        if (r != EX_OK)
                return r;
        r = q ? queue_list(q, count_one, &c) : 0;
        if (r < 0) {
                fprintf(stderr, "posternctl status: reading the queue: %s (%s)\n", strerror(-r),
                        queue_last_error(q));
                return EX_SOFTWARE;
        }
        printf("Queue: %" PRIu64 " message%s (%" PRIu64 " KiB), %" PRIu64 " on hold\n", c.messages,
               c.messages == 1 ? "" : "s", (c.bytes + 1023) / 1024, c.held);
        printf("  recipients: %" PRIu64 " incoming, %" PRIu64 " active, %" PRIu64 " deferred, %" PRIu64
               " on hold\n", c.incoming, c.active, c.deferred, c.on_hold);
        if (c.reasons.n == 0) {
                printf("Top deferral reasons: none\n");
                return EX_OK;
        }
        qshape_sort(&c.reasons);
        printf("Top deferral reasons:\n");
        for (size_t i = 0; i < c.reasons.n && i < STATUS_TOP_REASONS; i++)
                printf("  %6" PRIu64 "  %s\n", c.reasons.rows[i].total, c.reasons.rows[i].key);
        return EX_OK;
}
