/* params.h — the registry of every main.cf parameter Postern supports: name, type, default,
 * limits and a one-line description. `posternctl config -d` and docs/parameters.md are generated
 * from it; conf.c validates values against it. Defaults use Postfix's names and values (and
 * $name references, expanded at lookup time) unless the description says otherwise. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum ParamType {
        PARAM_STRING,   /* free text, $expansions allowed */
        PARAM_INT,      /* decimal integer within [min, max] */
        PARAM_BOOL,     /* yes/no (also true/false, on/off, 1/0 accepted) */
        PARAM_TIME,     /* number with optional unit s/m/h/d/w (default unit in time_unit), seconds */
        PARAM_SIZE,     /* byte count, integer within [min, max] */
        PARAM_LIST,     /* whitespace- and/or comma-separated list */
        PARAM_ENUM,     /* one of the values listed in enum_values ("a|b|c") */
} ParamType;

typedef struct ParamDef {
        const char *name;
        ParamType type;
        const char *def;          /* default text; NULL means computed (see param_default()) */
        long long min, max;       /* INT/SIZE/TIME limits (TIME in seconds); max 0 = unlimited */
        char time_unit;           /* TIME: unit assumed for a bare number ('s', 'm', 'h', 'd') */
        const char *enum_values;  /* ENUM: "normalize|yes|no" */
        const char *description;  /* one line */
} ParamDef;

extern const ParamDef param_table[];
extern const size_t param_table_size;

/* Looks a parameter up by name (without any "listener/" prefix); NULL if unknown. */
const ParamDef *param_lookup(const char *name);

/* A Postfix parameter with no meaning for Postern (params-postfix.c) and what does its job. */
typedef struct ParamIgnored {
        const char *name;
        const char *replaced_by;
} ParamIgnored;
const ParamIgnored *param_ignored_lookup(const char *name);
const ParamIgnored *param_ignored_table(size_t *ret_n);

/* A default that changed at a Postfix compatibility_level (params-compat.c): below level, an
 * unset name has the default old (NULL: a parameter Postern does not have). */
typedef struct ParamCompat {
        const char *name;
        const char *level;
        const char *old;
} ParamCompat;
bool param_compat_level_valid(const char *level);
int param_compat_level_compare(const char *a, const char *b);
const char *param_compat_default(const char *level, const char *name);
const ParamCompat *param_compat_table(size_t *ret_n);
/* The default text for a parameter, computing dynamic ones (myhostname from the host name,
 * mydomain from myhostname, ...). The returned string is static or cached; never NULL for a
 * known parameter. */
const char *param_default(const ParamDef *p);
/* Validates a value (already $-expanded) for p; on error returns -EINVAL and sets *ret_reason to
 * a static or allocated-into-buf text such as "not a number" / "must be at most 100". */
int param_validate(const ParamDef *p, const char *value, char *buf, size_t bufsz);
/* Parses a TIME value into seconds using the parameter's default unit. */
int param_parse_time(const char *value, char default_unit, long long *ret_seconds);
/* Parses a yes/no value. */
int param_parse_bool(const char *value, bool *ret);
