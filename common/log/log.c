/* log.c — journal logging with structured POSTERN_* fields and a stderr fallback. See log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static char log_identifier[64] = "postern";
static bool log_to_journal;
static int log_max_level = LOG_INFO;

void log_open(const char *role) {
        snprintf(log_identifier, sizeof(log_identifier), "postern/%s", role);
        const char *e = getenv("POSTERN_LOG_STDERR");
        if (e && streq(e, "1")) {
                log_to_journal = false;
                return;
        }
        /* Under systemd (JOURNAL_STREAM set, or the journal socket exists) log natively. */
        struct stat st;
        log_to_journal = getenv("JOURNAL_STREAM") ||
                         stat("/run/systemd/journal/socket", &st) == 0;
        e = getenv("POSTERN_LOG_LEVEL");
        if (e && streq(e, "debug"))
                log_max_level = LOG_DEBUG;
}

void log_set_max_level(int level) { log_max_level = level; }
int log_get_max_level(void) { return log_max_level; }

static const char *level_name(int level) {
        switch (level) {
        case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: return "fatal";
        case LOG_ERR: return "error";
        case LOG_WARNING: return "warning";
        case LOG_NOTICE: return "notice";
        case LOG_DEBUG: return "debug";
        default: return "info";
        }
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const LogFields *f, const char *fmt, ...) {
        int saved_errno = errno;
        error = abs(error);
        if (level > log_max_level)
                return -error;

        /* Expand %m ourselves so that it means the passed error, not errno. */
        char fmtbuf[1024];
        if (error && strstr(fmt, "%m")) {
                const char *msg = strerror(error);
                size_t o = 0;
                for (const char *p = fmt; *p && o < sizeof(fmtbuf) - 1; p++) {
                        if (p[0] == '%' && p[1] == '%') {
                                if (o + 2 >= sizeof(fmtbuf)) break;
                                fmtbuf[o++] = '%'; fmtbuf[o++] = '%'; p++;
                        } else if (p[0] == '%' && p[1] == 'm') {
                                for (const char *m = msg; *m && o < sizeof(fmtbuf) - 2; m++) {
                                        if (*m == '%') fmtbuf[o++] = '%';
                                        fmtbuf[o++] = *m;
                                }
                                p++;
                        } else
                                fmtbuf[o++] = *p;
                }
                fmtbuf[o] = '\0';
                fmt = fmtbuf;
        }

        char message[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        if (!log_to_journal) {
                fprintf(stderr, "%s: %s: %s\n", log_identifier, level_name(level), message);
                errno = saved_errno;
                return -error;
        }

        char b_msg[sizeof(message) + 16], b_prio[32], b_id[96], b_file[256], b_line[32], b_func[128],
             b_errno[32];
        char b_f[7][1100];
        struct iovec iov[20];
        size_t n = 0;
#define IOV_PRINTF(buf, ...) do { \
                int _l = snprintf(buf, sizeof(buf), __VA_ARGS__); \
                if (_l < 0) _l = 0; \
                if ((size_t) _l >= sizeof(buf)) _l = sizeof(buf) - 1; \
                iov[n++] = (struct iovec) { .iov_base = buf, .iov_len = (size_t) _l }; \
        } while (0)
        IOV_PRINTF(b_msg, "MESSAGE=%s", message);
        IOV_PRINTF(b_prio, "PRIORITY=%d", level);
        if (f && f->role)
                IOV_PRINTF(b_id, "SYSLOG_IDENTIFIER=postern/%s", f->role);
        else
                IOV_PRINTF(b_id, "SYSLOG_IDENTIFIER=%s", log_identifier);
        IOV_PRINTF(b_file, "CODE_FILE=%s", file);
        IOV_PRINTF(b_line, "CODE_LINE=%d", line);
        IOV_PRINTF(b_func, "CODE_FUNC=%s", func);
        if (error)
                IOV_PRINTF(b_errno, "ERRNO=%d", error);
        if (f) {
                const char *names[7] = { "POSTERN_QUEUE_ID", "POSTERN_CLIENT_ADDRESS", "POSTERN_SENDER",
                                         "POSTERN_RECIPIENT", "POSTERN_RELAY", "POSTERN_DSN",
                                         "POSTERN_STATUS" };
                const char *values[7] = { f->queue_id, f->client_address, f->sender, f->recipient,
                                          f->relay, f->dsn, f->status };
                for (size_t i = 0; i < 7; i++)
                        if (values[i])
                                IOV_PRINTF(b_f[i], "%s=%s", names[i], values[i]);
        }
#undef IOV_PRINTF
        if (sd_journal_sendv(iov, (int) n) < 0)
                fprintf(stderr, "%s: %s: %s\n", log_identifier, level_name(level), message);
        errno = saved_errno;
        return -error;
}
