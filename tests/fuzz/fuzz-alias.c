/* fuzz-alias — postern-local's recipient resolution (daemons/local/local-alias.c): the aliases(5)
 * file as a texthash: table with TABLE_ALIASES, alias values split into addresses, "\user",
 * "|command", "/file", ":include:" and remote addresses, recursion, owner- aliases, duplicate
 * suppression, the depth and target limits, and the Delivered-To: loop check
 * (delivered_set_load()). local_resolve() only looks names up (getpwnam) and builds Targets; it
 * never forks or delivers, so it is called directly with hand-built LocalSettings.
 *
 * Input:
 *   byte 0  bit 0 allow_mail_to_commands = alias, bit 1 allow_mail_to_files = alias,
 *           bits 2-3 recipient_delimiter ("", "+", "+-", "."), bit 4 home_mailbox = Maildir/,
 *           bit 5 a header section follows the recipient line
 *   line 1  the envelope recipient
 *   [lines  a header section (with Delivered-To: fields), up to an empty line]
 *   rest    the aliases file
 * local_resolve() runs for the recipient and for the first alias names of the file.
 *
 * Checked: resolution succeeds with 1..LOCAL_MAX_TARGETS targets; a finished target has a
 * status d.d.d of class 2, 4 or 5 and a diagnostic; a mailbox target has a user and a path under
 * the spool (mbox) or ending in "/" (Maildir); "|command" and "/file" targets exist only when
 * allowed and never run as root; a forward target is a remote address with a sender and the
 * alias it came from; no user, forward address, command or file appears twice; a recipient
 * already listed in Delivered-To: resolves to exactly one 5.4.6 loop result. */
#include <ctype.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "local.h"
#include "log/log.h"

#define MAX_RESOLVE 4

static const char *const delimiters[] = { "", "+", "+-", "." };

static bool dsn_ok(const char *d) {
        return (d[0] == '2' || d[0] == '4' || d[0] == '5') && d[1] == '.' && isdigit((unsigned char) d[2]) &&
               strchr(d + 2, '.') && isdigit((unsigned char) strchr(d + 2, '.')[1]);
}

static void check_targets(const LocalSettings *s, const DeliveredSet *ds, const char *recipient,
                          Target **t, size_t n) {
        FUZZ_CHECK(n >= 1 && n <= LOCAL_MAX_TARGETS);
        char *lower = strdup(recipient);
        FUZZ_CHECK(lower);
        local_ascii_lower(lower);
        if (delivered_set_has(ds, lower))
                FUZZ_CHECK(n == 1 && t[0]->kind == TARGET_RESULT && streq(t[0]->dsn, "5.4.6"));
        free(lower);

        for (size_t i = 0; i < n; i++) {
                const Target *a = t[i];
                FUZZ_CHECK(a->address);
                switch (a->kind) {
                case TARGET_RESULT:
                        FUZZ_CHECK(a->done && dsn_ok(a->dsn) && a->diag);
                        break;
                case TARGET_MBOX:
                        FUZZ_CHECK(!a->done && a->user && a->path && a->home);
                        FUZZ_CHECK(a->spool == !*s->home_mailbox);
                        if (a->spool)
                                FUZZ_CHECK(strncmp(a->path, "/var/mail/", 10) == 0 && !strchr(a->path + 10, '/'));
                        break;
                case TARGET_MAILDIR:
                        FUZZ_CHECK(!a->done && a->user && a->path && a->path[strlen(a->path) - 1] == '/');
                        break;
                case TARGET_COMMAND:
                        FUZZ_CHECK(a->path && a->path[0] == '|' && a->uid != 0 && a->gid != 0);
                        FUZZ_CHECK(s->allow_mail_to_commands[0]);
                        break;
                case TARGET_FILE:
                        FUZZ_CHECK(a->path && a->path[0] == '/' && a->uid != 0 && a->gid != 0);
                        FUZZ_CHECK(s->allow_mail_to_files[0]);
                        break;
                case TARGET_FORWARD: {
                        FUZZ_CHECK(a->sender && a->via);
                        const char *at = strrchr(a->address, '@');
                        FUZZ_CHECK(at && at[1]);
                        FUZZ_CHECK(domain_list_match((DomainList *) &s->mydestination, at + 1) == 0);
                        break;
                }
                default:
                        FUZZ_CHECK(!"unknown target kind");
                }
                /* duplicates are suppressed (case-insensitively, as the expander compares) */
                for (size_t j = 0; j < i; j++) {
                        const Target *b = t[j];
                        if (a->kind != b->kind)
                                continue;
                        if (a->kind == TARGET_MBOX || a->kind == TARGET_MAILDIR)
                                FUZZ_CHECK(!streq(a->user, b->user));
                        else if (a->kind == TARGET_FORWARD)
                                FUZZ_CHECK(!strcaseeq(a->address, b->address));
                        else if (a->kind == TARGET_COMMAND || a->kind == TARGET_FILE)
                                FUZZ_CHECK(!strcaseeq(a->path, b->path));
                }
        }
}

static void resolve(const LocalSettings *s, const DeliveredSet *ds, const char *recipient) {
        Target **t = NULL;
        size_t n = 0;
        int r = local_resolve(s, recipient, "sender@remote.example", ds, &t, &n);
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        if (r < 0)
                return;
        check_targets(s, ds, recipient, t, n);
        for (size_t i = 0; i < n; i++)
                target_free(t[i]);
        free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fd = -1;
        static char spec[80];
        static char *allow_alias[] = { "alias", NULL }, *allow_none[] = { NULL };

        if (size < 1 || size > 16384 || memchr(data + 1, '\0', size - 1))
                return 0;
        if (fd < 0) {
                log_open("local");
                if (!getenv("FUZZ_VERBOSE"))
                        log_set_max_level(-1);
                fd = memfd_create("aliases", MFD_CLOEXEC);
                FUZZ_CHECK(fd >= 0);
                snprintf(spec, sizeof spec, "texthash:/proc/self/fd/%d", fd);
        }
        unsigned flags = data[0];
        char *text = fuzz_strndup(data + 1, size - 1);
        char *p = text;

        char *nl = strchrnul(p, '\n');
        char *recipient = strndup(p, (size_t) (nl - p));
        FUZZ_CHECK(recipient);
        p = *nl ? nl + 1 : nl;
        char *header = NULL;
        if (flags & 0x20) {
                char *end = strstr(p, "\n\n");
                header = strndup(p, end ? (size_t) (end - p) + 1 : strlen(p));
                FUZZ_CHECK(header);
                p = end ? end + 2 : p + strlen(p);
        }
        FUZZ_CHECK(ftruncate(fd, 0) == 0);
        size_t alen = strlen(p);
        FUZZ_CHECK(alen == 0 || pwrite(fd, p, alen, 0) == (ssize_t) alen);

        LocalSettings s = {
                .mail_spool_directory = (char *) "/var/mail",
                .home_mailbox = (char *) (flags & 0x10 ? "Maildir/" : ""),
                .recipient_delimiter = (char *) delimiters[(flags >> 2) & 3],
                .myhostname = (char *) "mx.example.org",
                .myorigin = (char *) "example.org",
                .default_privs = (char *) "nobody",
                .allow_mail_to_commands = flags & 1 ? allow_alias : allow_none,
                .allow_mail_to_files = flags & 2 ? allow_alias : allow_none,
        };
        char *dest[] = { (char *) "example.org", (char *) "mx.example.org", (char *) "localhost", NULL };
        char *why = NULL;
        FUZZ_CHECK(domain_list_init(&s.mydestination, dest, false, &why) == 0);
        int r = table_list_open(spec, TABLE_ALIASES, &s.aliases, &why);
        FUZZ_CHECK(r == 0);   /* a texthash: file always loads */

        DeliveredSet ds = {};
        if (header)
                FUZZ_CHECK(delivered_set_load(header, strlen(header), &ds) == 0);

        resolve(&s, &ds, recipient);
        /* and the first few alias names of the file, as local recipients */
        unsigned done = 0;
        for (char *line = p; *line && done < MAX_RESOLVE; ) {
                char *end = strchrnul(line, '\n');
                char *colon = memchr(line, ':', (size_t) (end - line));
                if (colon && colon > line && !isspace((unsigned char) line[0]) && line[0] != '#') {
                        char *name = NULL;
                        FUZZ_CHECK(asprintf(&name, "%.*s@example.org", (int) (colon - line), line) >= 0);
                        resolve(&s, &ds, name);
                        free(name);
                        done++;
                }
                line = *end ? end + 1 : end;
        }

        delivered_set_done(&ds);
        table_list_free(s.aliases);
        domain_list_done(&s.mydestination);
        free(why);
        free(header);
        free(recipient);
        free(text);
        return 0;
}
