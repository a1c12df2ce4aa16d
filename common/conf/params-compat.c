/* params-compat.c — Postfix's backwards-compatibility safety net (compatibility_level): a main.cf
 * written for an older level keeps that level's defaults for the parameters it leaves unset.
 * Postern's registry holds the current defaults (level 3.6); this table holds, for each change of
 * default Postern's parameters have, the level that introduced it and the default before it.
 * Changes of parameters Postern does not have are listed with old == NULL: conf_load() names them
 * as not applied. Levels compare number by number ("3.10" is above "3.9"), as Postfix compares
 * them. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

static const ParamCompat compat_table[] = {
        { "append_dot_mydomain", "1", "yes" },
        { "smtpd_relay_restrictions", "1", "" },
        { "smtputf8_enable", "1", "no" },
        { "mynetworks_style", "2", "subnet" },
        { "relay_domains", "2", "$mydestination" },
        { "lmtp_tls_fingerprint_digest", "3.6", NULL },
        { "smtp_tls_fingerprint_digest", "3.6", NULL },
        { "smtpd_tls_fingerprint_digest", "3.6", NULL },
};

/* The next number of a level at *p, advancing it; -1 when the text is not a number. */
static long level_part(const char **p) {
        if (!isdigit((unsigned char) **p))
                return -1;
        char *end;
        long v = strtol(*p, &end, 10);
        if (v > 100000)
                return -1;
        *p = end;
        return v;
}

bool param_compat_level_valid(const char *level) {
        const char *p = level;
        for (int i = 0; i < 3; i++) {
                if (level_part(&p) < 0)
                        return false;
                if (*p == '\0')
                        return true;
                if (*p++ != '.')
                        return false;
        }
        return false;
}

int param_compat_level_compare(const char *a, const char *b) {
        const char *p = a, *q = b;
        for (int i = 0; i < 3; i++) {
                long x = *p ? level_part(&p) : 0, y = *q ? level_part(&q) : 0;
                if (x != y)
                        return x < y ? -1 : 1;
                if (*p == '.')
                        p++;
                if (*q == '.')
                        q++;
        }
        return 0;
}

const char *param_compat_default(const char *level, const char *name) {
        if (!level || !param_compat_level_valid(level))
                return NULL;
        for (size_t i = 0; i < sizeof compat_table / sizeof compat_table[0]; i++)
                if (compat_table[i].old && strcmp(compat_table[i].name, name) == 0 &&
                    param_compat_level_compare(level, compat_table[i].level) < 0)
                        return compat_table[i].old;
        return NULL;
}

const ParamCompat *param_compat_table(size_t *ret_n) {
        *ret_n = sizeof compat_table / sizeof compat_table[0];
        return compat_table;
}
