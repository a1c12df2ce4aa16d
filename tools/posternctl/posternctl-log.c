/* posternctl-log.c — `posternctl log ID`: what every role logged about one message, from the
 * journal (the POSTERN_QUEUE_ID field log_fields() attaches, common/log), oldest first, in
 * journalctl's short format:
 *
 *   Dec 07 11:48:01 mx postern/smtpd[812]: 1LG3CUL2FIPJH4TS: client=client.example[192.0.2.7]
 *   Dec 07 11:48:02 mx postern/smtp[815]: 1LG3CUL2FIPJH4TS: to=<bob@example.com>, ... status=sent
 *
 * The same as `journalctl POSTERN_QUEUE_ID=ID`, and like it also for a message long delivered
 * (the journal keeps what the queue forgets). -D DIR reads the journal files in DIR instead of
 * the system's (journalctl -D). Without a journal (no journald socket: a container, daemons
 * run by hand, where the daemons log to stderr) it says so and where the lines went instead
 * (stderr, as "postern/<role>: ..."), exit status 1; 1 also when no entry names the message. Reading
 * every role's entries needs root or the systemd-journal (or adm) group. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "mail/queue-id.h"
#include "posternctl.h"

/* The value of field in the current entry (not NUL-terminated in the journal): into buf. */
static const char *field(sd_journal *j, const char *name, char *buf, size_t size) {
        const void *d;
        size_t l, nl = strlen(name);

        if (sd_journal_get_data(j, name, &d, &l) < 0 || l <= nl + 1)
                return NULL;
        l -= nl + 1;
        if (l >= size)
                l = size - 1;
        memcpy(buf, (const char *) d + nl + 1, l);
        buf[l] = '\0';
        return buf;
}

static void print_entry(sd_journal *j) {
        char when[32] = "", host[256], ident[64], pid[16], msg[8192];
        uint64_t usec = 0;
        struct tm tm;

        if (sd_journal_get_realtime_usec(j, &usec) >= 0) {
                time_t t = (time_t) (usec / USEC_PER_SEC);
                if (localtime_r(&t, &tm))
                        strftime(when, sizeof when, "%b %d %H:%M:%S", &tm);
        }
        const char *h = field(j, "_HOSTNAME", host, sizeof host);
        const char *i = field(j, "SYSLOG_IDENTIFIER", ident, sizeof ident);
        const char *p = field(j, "_PID", pid, sizeof pid);
        const char *m = field(j, "MESSAGE", msg, sizeof msg);
        printf("%s %s %s%s%s%s: %s\n", when, h ? h : "localhost", i ? i : "postern",
               p ? "[" : "", p ? p : "", p ? "]" : "", m ? m : "");
}

/* The test log.c uses to log natively: journald's socket (a journal directory alone may be a
 * leftover nobody writes to). */
static bool journal_available(void) {
        return access("/run/systemd/journal/socket", F_OK) == 0;
}

static void help(void) {
        printf("Usage: posternctl log [-D DIR] ID\n\n"
               "Shows what every role logged about one message (journalctl POSTERN_QUEUE_ID=ID),\n"
               "also for a message already delivered.\n"
               "  -D DIR   read the journal files in DIR (like journalctl -D)\n");
}

int verb_log(int argc, char *argv[]) {
        static const struct option options[] = {
                { "directory", required_argument, NULL, 'D' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        sd_journal *j = NULL;
        const char *dir = NULL;
        char match[64];
        size_t n = 0;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "D:h", options, NULL)) >= 0)
                switch (opt) {
                case 'D': dir = optarg; break;
                case 'h': help(); return EX_OK;
                default: return EX_USAGE;
                }
        if (argc - optind != 1) {
                fprintf(stderr, "posternctl log: expected one queue id\n");
                return EX_USAGE;
        }
        const char *id = argv[optind];
        if (strlen(id) >= QUEUE_ID_MAX || !queue_id_valid(id)) {
                fprintf(stderr, "posternctl log: \"%s\" is not a queue id\n", id);
                return EX_USAGE;
        }
        if (!dir && !journal_available()) {
                fprintf(stderr, "posternctl log: no journal on this system (journald is not running): "
                        "the daemons log to their standard error as \"postern/<role>: ...\"; look for "
                        "\"%s\" there, or use -D DIR for journal files\n", id);
                return 1;
        }
        r = dir ? sd_journal_open_directory(&j, dir, 0) : sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0) {
                fprintf(stderr, "posternctl log: cannot open the journal%s%s: %s\n", dir ? " in " : "",
                        strempty(dir), strerror(-r));
                return EX_UNAVAILABLE;
        }
        snprintf(match, sizeof match, "POSTERN_QUEUE_ID=%s", id);
        r = sd_journal_add_match(j, match, 0);
        if (r >= 0) {
                SD_JOURNAL_FOREACH(j) {
                        print_entry(j);
                        n++;
                }
        }
        sd_journal_close(j);
        if (r < 0) {
                fprintf(stderr, "posternctl log: reading the journal: %s\n", strerror(-r));
                return EX_SOFTWARE;
        }
        if (n == 0) {
                fprintf(stderr, "posternctl log: no journal entry names %s%s\n", id,
                        geteuid() == 0 ? "" : " (only root and the systemd-journal group see every role's)");
                return 1;
        }
        return EX_OK;
}
