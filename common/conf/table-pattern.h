/* table-pattern.h — the rule-list lookup tables behind table.c's regexp: and cidr: types
 * (Postfix regexp_table(5) and cidr_table(5) syntax). Internal to common/conf: callers use
 * table.h, which handles opening, reloading and key folding. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

typedef struct TablePatterns TablePatterns;

/* Parses a regexp (cidr false) or cidr (cidr true) table from f. On a bad rule returns -EINVAL
 * and *ret_reason "<path>:<line>: <problem>". */
int table_patterns_parse(FILE *f, bool cidr, const char *path, TablePatterns **ret, char **ret_reason);
TablePatterns *table_patterns_free(TablePatterns *p);
/* First matching rule wins: 1 and *ret_value (caller frees), or 0. */
int table_patterns_lookup(TablePatterns *p, const char *key, char **ret_value);
