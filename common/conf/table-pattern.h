/* table-pattern.h — the rule-list lookup tables behind table.c's regexp:, pcre: and cidr: types
 * (Postfix regexp_table(5), pcre_table(5) and cidr_table(5) syntax). Internal to common/conf:
 * callers use table.h, which handles opening, reloading and key folding. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "table.h"

typedef enum TablePatternKind {
        TABLE_PATTERN_REGEXP,
        TABLE_PATTERN_PCRE,
        TABLE_PATTERN_CIDR,
} TablePatternKind;

typedef struct TablePatterns TablePatterns;

/* Whether this build has pcre: tables (libpcre2). */
bool table_patterns_have_pcre(void);

/* Parses a table of the given kind from f. On a bad rule returns -EINVAL and *ret_reason
 * "<path>:<line>: <problem>". */
int table_patterns_parse(FILE *f, TablePatternKind kind, const char *path, TablePatterns **ret,
                         char **ret_reason);
TablePatterns *table_patterns_free(TablePatterns *p);
/* First matching rule wins: 1 and *ret_value (caller frees), 0, or <0 (-ERANGE: a pcre match gave
 * up at its resource limit). flags: TABLE_NO_REGSUB / TABLE_REGSUB_SAFE; label (the table's
 * spec) starts each warning added to notes (may be NULL). */
int table_patterns_lookup(TablePatterns *p, const char *key, TableFlags flags, const char *label,
                          char **ret_value, TableNotes *notes);

/* Adds one formatted warning line to notes (no-op when notes is NULL); defined in table.c. */
int table_notes_add(TableNotes *notes, const char *fmt, ...) _printf_(2, 3);
