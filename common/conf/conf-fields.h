/* conf-fields.h — declarative settings. A daemon describes the plain part of its settings struct
 * as a table of rows {parameter, kind, offsetof(struct, field)}; conf_fields_load() fills every
 * row for one listener (its "<listener>/<name>" overrides first, as conf_get_listener) and
 * conf_fields_done() frees what the rows own (strings, lists, tables).
 *
 *   static const ConfField fields[] = {
 *           CONF_FIELD(SmtpdSettings, "smtpd_timeout", USEC, timeout_usec),
 *           CONF_FIELD(SmtpdSettings, "reject_code", REPLY_CODE, reject_code),
 *   };
 *   r = conf_fields_load(c, listener, fields, ELEMENTSOF(fields), s);
 *
 * The registry (params.h) is the only source of types, defaults and limits: a row's kind must
 * fit the parameter's registry type (checked at load), and values are not clamped again here.
 * conf_fields_load() is the point where settings are decided, so it logs its errors itself, one
 * line naming the parameter ("smtpd_timeout = x: must be a time ..."), and returns -EINVAL or
 * -ENOMEM. Fields loaded before a failure stay set; conf_fields_done() frees them.
 *
 * conf_get_joined() and conf_get_table_list() are the two list helpers for code that needs more
 * than a row: a LIST parameter joined into one space-separated spec, or opened as a TableList.
 * They do not log; a failure comes back with a reason "<name> = <specs>: <why>". */
#pragma once

#include <stddef.h>

#include "conf.h"
#include "table.h"

typedef enum ConfFieldKind {
        CONF_FIELD_STRING,      /* char *: the expanded value of a STRING or ENUM parameter */
        CONF_FIELD_RAW,         /* char *: the unexpanded text ($names filled in later, per use) */
        CONF_FIELD_BOOL,        /* bool: BOOL */
        CONF_FIELD_INT,         /* int: INT */
        CONF_FIELD_REPLY_CODE,  /* int: INT whose registry limits are within 400..599 */
        CONF_FIELD_UINT,        /* unsigned: INT or SIZE with a registry minimum >= 0 */
        CONF_FIELD_SIZE,        /* size_t: likewise */
        CONF_FIELD_U64,         /* uint64_t: likewise */
        CONF_FIELD_LLONG,       /* long long: INT or SIZE */
        CONF_FIELD_USEC,        /* usec_t: TIME (seconds in main.cf) in microseconds */
        CONF_FIELD_SECONDS,     /* long long: TIME in seconds */
        CONF_FIELD_ENUM,        /* int: ENUM, mapped through .values (which must cover the registry's) */
        CONF_FIELD_LIST,        /* char **: LIST split as conf_get_list (strv) */
        CONF_FIELD_TABLES,      /* TableList *: LIST (or STRING) of table specs opened with .flags;
                                 * NULL when empty */
        _CONF_FIELD_KIND_MAX,
} ConfFieldKind;

/* One value of an ENUM parameter and the int it becomes; arrays end with { NULL }. */
typedef struct ConfFieldEnum {
        const char *name;
        int value;
} ConfFieldEnum;

typedef struct ConfField {
        const char *name;               /* the parameter, without "listener/" */
        ConfFieldKind kind;
        size_t offset;                  /* offsetof the field in the struct */
        TableFlags flags;               /* CONF_FIELD_TABLES */
        const ConfFieldEnum *values;    /* CONF_FIELD_ENUM */
} ConfField;

/* A row of a table for struct type: CONF_FIELD(Settings, "smtpd_timeout", USEC, timeout_usec);
 * extra designated initialisers (.flags = ..., .values = ...) may follow. A file usually defines
 * #define F(...) CONF_FIELD(Settings, __VA_ARGS__) for its table. */
#define CONF_FIELD(type, param, k, member, ...) \
        { .name = (param), .kind = CONF_FIELD_##k, .offset = offsetof(type, member), __VA_ARGS__ }

/* Loads every row from c for listener (NULL: the main.cf values without overrides) into base.
 * Logs and returns -EINVAL for a value the registry refuses, a table that cannot be opened or a
 * row that does not fit its parameter; -ENOMEM when out of memory. */
int conf_fields_load(Conf *c, const char *listener, const ConfField *fields, size_t n, void *base);
/* Frees the strings, lists and tables the rows filled, and clears those fields. */
void conf_fields_done(const ConfField *fields, size_t n, void *base);

/* A LIST parameter's elements joined with single spaces ("" when empty) into *ret (caller
 * frees). Returns 0 or -ENOMEM. */
int conf_get_joined(Conf *c, const char *listener, const char *name, char **ret);
/* A LIST parameter of table specs opened as one TableList; *ret is NULL when the list is empty.
 * On failure returns negative errno, leaves *ret alone and sets *ret_reason (if non-NULL) to
 * "<name> = <specs>: <why>" (caller frees; NULL when out of memory). */
int conf_get_table_list(Conf *c, const char *listener, const char *name, TableFlags flags, TableList **ret,
                        char **ret_reason);
