/* log.h — Postern's one logging interface. Messages go to the journal with sd_journal_send()
 * (SYSLOG_IDENTIFIER=postern/<role>, CODE_FILE/CODE_LINE/CODE_FUNC of the caller, and the
 * POSTERN_* structured fields), or to stderr as "postern/<role>: <level>: <message>" when there is
 * no journal (tests, containers) or POSTERN_LOG_STDERR=1 is set.
 *
 *   log_open("smtpd");
 *   log_info("connect from %s[%s]", name, addr);
 *   log_fields(LOG_INFO, &(LogFields) { .queue_id = id, .client_address = addr },
 *              "%s: client=%s[%s]", id, name, addr);
 *   return log_error_errno(r, "Failed to open queue: %m");   // %m means strerror(-r)
 */
#pragma once

#include <syslog.h>
#include "../basic/macro.h"

typedef struct LogFields {
        const char *queue_id;        /* POSTERN_QUEUE_ID */
        const char *client_address;  /* POSTERN_CLIENT_ADDRESS */
        const char *sender;          /* POSTERN_SENDER */
        const char *recipient;       /* POSTERN_RECIPIENT */
        const char *relay;           /* POSTERN_RELAY */
        const char *dsn;             /* POSTERN_DSN */
        const char *status;          /* POSTERN_STATUS */
        const char *role;            /* NULL, or the role the line is logged under ("pickup":
                                      * SYSLOG_IDENTIFIER=postern/pickup), as Postfix logs it */
} LogFields;

/* Sets the role ("smtpd", "qmgr", ...) and picks journal or stderr. Safe to call again. */
void log_open(const char *role);
/* Messages above this priority (e.g. LOG_DEBUG) are dropped; default LOG_INFO. */
void log_set_max_level(int level);
int log_get_max_level(void);

/* Logs and returns -abs(error) (or 0 if error is 0); "%m" in fmt expands to strerror(abs(error)). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const LogFields *fields, const char *fmt, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, NULL, __VA_ARGS__)
#define log_fields(level, fields, ...) \
        log_internal((level), 0, __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
