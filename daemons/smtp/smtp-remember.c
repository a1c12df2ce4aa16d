/* smtp-remember.c — the successes postern-smtp reported, remembered for a while so that a
 * recipient qmgr asks for again is answered from memory instead of being sent a second time.
 *
 * Why: qmgr records a delivery's results in a group commit after the agent's reply. When qmgr is
 * killed between the server's 250 and that commit (or while the agent is past the message's final
 * "."), the restarted qmgr finds the recipient still pending and asks again: without this, the
 * same message reached the server twice (tests/integration/test_durability.py counted 0.5–2 %
 * duplicates of a relayed stream with qmgr killed four times). Only successes (2xx) of real
 * deliveries are remembered, keyed by queue id and recipient row id (a queue id is never reused,
 * DESIGN.md §2): sending those again is always a duplicate, while a 5xx may still become a retry
 * in qmgr (soft_bounce, *_delivery_status_filter) and asking again costs nothing. Memory: two generations of at most
 * SMTP_REMEMBER_MAX entries each, the older dropped whole when the newer fills or is older than
 * SMTP_REMEMBER_AGE — a restarted qmgr asks again within seconds.
 *
 * Each generation is also a file in queue_directory, smtp-results.0 (newer) and smtp-results.1,
 * one line per result appended with write() and never synced: it survives a kill -9 of
 * postern-smtp (qmgr and the agent killed one after the other), not a crash of the machine,
 * which takes qmgr's unrecorded results with it anyway. What no agent can know stays: a server
 * that took the message while the agent died before reading its 250 gets it again (RFC 1047). */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtp.h"
#include "basic/strmap.h"
#include "log/log.h"

#define SMTP_REMEMBER_MAX 16384
#define SMTP_REMEMBER_AGE (10 * 60 * USEC_PER_SEC)

typedef struct Remembered {
        char dsn[16];
        bool relayed;
        char *diag;
        char *relay;
} Remembered;

static void remembered_free(void *p) {
        Remembered *m = p;
        if (!m)
                return;
        free(m->diag);
        free(m->relay);
        free(m);
}

static void remember_key(char *buf, size_t size, const char *queue_id, int64_t rcpt_id) {
        snprintf(buf, size, "%s/%" PRId64, queue_id, rcpt_id);
}

static void generation_path(char *buf, size_t size, const SmtpMemory *mem, unsigned g) {
        snprintf(buf, size, "%s/smtp-results.%u", mem->dir, g);
}

static int generation_open(SmtpMemory *mem, bool truncate) {
        char path[PATH_MAX];
        generation_path(path, sizeof(path), mem, 0);
        mem->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
        if (mem->fd < 0)
                return log_warning_errno(-errno, "Cannot open %s; results reported are remembered "
                                         "in memory only: %m", path);
        return 0;
}

/* The newer generation, made and rotated as needed; NULL when out of memory. */
static StrMap *generation_for_insert(SmtpMemory *mem) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (mem->gen[0] && (strmap_size(mem->gen[0]) >= SMTP_REMEMBER_MAX ||
                            now - mem->gen0_since > SMTP_REMEMBER_AGE)) {
                strmap_free(mem->gen[1]);
                mem->gen[1] = mem->gen[0];
                mem->gen[0] = NULL;
                if (mem->fd >= 0) {
                        char p0[PATH_MAX], p1[PATH_MAX];
                        generation_path(p0, sizeof(p0), mem, 0);
                        generation_path(p1, sizeof(p1), mem, 1);
                        mem->fd = safe_close(mem->fd);
                        if (rename(p0, p1) < 0)
                                log_warning_errno(-errno, "Cannot rename %s: %m", p0);
                        (void) generation_open(mem, true);
                }
        }
        if (!mem->gen[0]) {
                mem->gen[0] = strmap_new(remembered_free);
                mem->gen0_since = now;
        }
        return mem->gen[0];
}

/* Copies s into buf with tabs and line ends made spaces (they separate fields and records). */
static const char *field(char *buf, size_t size, const char *s) {
        snprintf(buf, size, "%s", strempty(s));
        for (char *p = buf; *p; p++)
                if (*p == '\t' || *p == '\n' || *p == '\r')
                        *p = ' ';
        return buf;
}

/* One line: key, dsn, relayed, relay, diag. A failed write only loses what a restart keeps. */
static void generation_append(int fd, const char *key, const Remembered *r) {
        char line[SMTP_REPLY_TEXT_MAX + 1024], relay[512], diag[SMTP_REPLY_TEXT_MAX];
        int n = snprintf(line, sizeof(line), "%s\t%s\t%d\t%s\t%s\n", key, r->dsn, r->relayed,
                         field(relay, sizeof(relay), r->relay), field(diag, sizeof(diag), r->diag));
        if (n < 0 || (size_t) n >= sizeof(line) || write(fd, line, (size_t) n) != n)
                log_warning_errno(n < 0 ? -EINVAL : -errno, "Cannot record a delivery result: %m");
}

/* Loads one generation's file; a torn last line (the agent killed mid-write) is ignored. */
static void generation_load(SmtpMemory *mem, unsigned g) {
        char path[PATH_MAX], line[SMTP_REPLY_TEXT_MAX + 1024];
        generation_path(path, sizeof(path), mem, g);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return;
        if (!mem->gen[g] && !(mem->gen[g] = strmap_new(remembered_free)))
                return;
        while (fgets(line, sizeof(line), f)) {
                char *fields[5], *p = line;
                size_t n = 0;
                if (!strchr(line, '\n'))
                        break;
                line[strcspn(line, "\n")] = '\0';
                for (; n < 5 && p; n++)
                        fields[n] = strsep(&p, "\t");
                if (n < 5 || strlen(fields[1]) >= sizeof(((Remembered *) NULL)->dsn))
                        continue;
                Remembered *r = calloc(1, sizeof(Remembered));
                if (!r)
                        return;
                snprintf(r->dsn, sizeof(r->dsn), "%s", fields[1]);
                r->relayed = streq(fields[2], "1");
                r->relay = isempty(fields[3]) ? NULL : strdup(fields[3]);
                r->diag = strdup(fields[4]);
                if (!r->diag || strmap_put(mem->gen[g], fields[0], r) < 0) {
                        remembered_free(r);
                        return;
                }
        }
}

void smtp_memory_open(SmtpMemory *mem, const char *dir) {
        mem->fd = -EBADF;
        mem->gen0_since = now_usec(CLOCK_MONOTONIC);
        mem->dir = strdup(dir);
        if (!mem->dir) {
                log_oom();
                return;
        }
        generation_load(mem, 1);
        generation_load(mem, 0);
        (void) generation_open(mem, false);
}

void smtp_remember(SmtpMemory *mem, const char *queue_id, const SmtpRcpt *rc, const char *relay) {
        if (rc->dsn[0] != '2')
                return;
        StrMap *m = generation_for_insert(mem);
        Remembered *r = calloc(1, sizeof(Remembered));
        char key[QUEUE_ID_MAX + 32];
        if (!m || !r)
                goto oom;
        snprintf(r->dsn, sizeof(r->dsn), "%s", rc->dsn);
        r->relayed = rc->relayed;
        r->diag = rc->diag ? strdup(rc->diag) : NULL;
        r->relay = relay ? strdup(relay) : NULL;
        if ((rc->diag && !r->diag) || (relay && !r->relay))
                goto oom;
        remember_key(key, sizeof(key), queue_id, rc->id);
        if (strmap_put(m, key, r) < 0)
                goto oom;
        if (mem->fd >= 0)
                generation_append(mem->fd, key, r);
        return;
oom:
        remembered_free(r);   /* not remembered: a repeated request is delivered again */
        log_oom();
}

bool smtp_recall(SmtpMemory *mem, const char *queue_id, SmtpRcpt *rc) {
        char key[QUEUE_ID_MAX + 32];
        Remembered *r = NULL;

        remember_key(key, sizeof(key), queue_id, rc->id);
        for (size_t g = 0; g < ELEMENTSOF(mem->gen) && !r; g++)
                if (mem->gen[g])
                        r = strmap_get(mem->gen[g], key);
        if (!r)
                return false;
        char *diag = r->diag ? strdup(r->diag) : NULL, *relay = r->relay ? strdup(r->relay) : NULL;
        if ((r->diag && !diag) || (r->relay && !relay)) {
                free(diag);
                free(relay);
                return false;   /* out of memory: delivered again rather than answered wrongly */
        }
        snprintf(rc->dsn, sizeof(rc->dsn), "%s", r->dsn);
        free(rc->diag);
        rc->diag = diag;
        free(rc->relay);
        rc->relay = relay;
        rc->relayed = r->relayed;
        rc->done = rc->recalled = true;
        return true;
}

void smtp_memory_done(SmtpMemory *mem) {
        mem->fd = safe_close(mem->fd);
        free(mem->dir);
        mem->dir = NULL;
        for (size_t g = 0; g < ELEMENTSOF(mem->gen); g++)
                mem->gen[g] = strmap_free(mem->gen[g]);
}
