/* header-checks.h — Postfix header_checks(5)/body_checks tables: lookup tables (regexp:, pcre:,
 * or any other type) whose values are content actions such as "REJECT text", "HOLD",
 * "PREPEND X-Tag: 1" or "REDIRECT user@example.com". This module opens the tables, matches one
 * logical header or one body line, and parses the action; applying it (rewriting the message,
 * refusing it, changing its recipients) is the caller's job (smtpd-cleanup.c). */
#pragma once

#include <stdbool.h>

typedef enum HeaderCheckType {
        HEADER_CHECK_DUNNO,      /* DUNNO, OK: no action */
        HEADER_CHECK_REJECT,     /* refuse the message at end of data: "550 5.7.1 text" */
        HEADER_CHECK_DISCARD,    /* claim delivery, store nothing */
        HEADER_CHECK_HOLD,       /* queue on hold */
        HEADER_CHECK_WARN,       /* log "warning: ..." only */
        HEADER_CHECK_INFO,       /* log "info: ..." only */
        HEADER_CHECK_IGNORE,     /* remove the header / body line */
        HEADER_CHECK_PREPEND,    /* insert text (a header / a line) before this one */
        HEADER_CHECK_REPLACE,    /* replace this header / line with text */
        HEADER_CHECK_BCC,        /* add a recipient */
        HEADER_CHECK_REDIRECT,   /* replace all recipients by one */
        HEADER_CHECK_FILTER,     /* content_filter "transport:destination" for this message */
        _HEADER_CHECK_MAX,
} HeaderCheckType;

typedef struct HeaderCheckAction {
        HeaderCheckType type;
        char *text;              /* the action's argument, NULL when it has none */
} HeaderCheckAction;

void header_check_action_done(HeaderCheckAction *a);
/* The lower-case action word as Postfix logs it ("reject", "hold", "prepend", ...). */
const char *header_check_type_name(HeaderCheckType t);

/* Parses a table value ("REJECT no thanks", "BCC a@b", "dunno"). Action words are
 * case-insensitive. for_header: PREPEND/REPLACE text must be a header ("Name: value").
 * An unknown action or a missing/malformed argument is -EINVAL with *ret_why saying what. */
int header_check_parse(const char *value, bool for_header, HeaderCheckAction *ret, const char **ret_why);

typedef struct HeaderChecks HeaderChecks;

/* Opens a list of tables ("regexp:/etc/postern/header_checks pcre:/x"); pcre: tables need a
 * build with libpcre2 and fail to open without it. An empty list gives *ret = NULL (no checks). */
int header_checks_open(const char *specs, HeaderChecks **ret, char **ret_reason);
HeaderChecks *header_checks_free(HeaderChecks *h);
const char *header_checks_spec(const HeaderChecks *h);

/* Matches one logical header (folded lines joined by their "\n") or one body line, first
 * matching table entry wins. Returns 1 with *ret filled (ret->type may be DUNNO), 0 when nothing
 * matched, -EINVAL with *ret_why and *ret_value (the raw table value, caller frees) when the
 * entry's action is invalid, or another negative errno on a table lookup error. */
int header_checks_match(HeaderChecks *h, const char *line, bool for_header, HeaderCheckAction *ret,
                        char **ret_value, const char **ret_why);
