/* smtp-sts-policy.c — the two text formats of MTA-STS (RFC 8461 3.1, 3.2) and the MX pattern
 * match (4.1). Pure functions: no I/O, nothing logged; the unit test is test-smtp-sts-policy.c. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp-sts.h"

static const char *const mode_names[] = {
        [STS_MODE_NONE] = "none", [STS_MODE_TESTING] = "testing", [STS_MODE_ENFORCE] = "enforce",
};

const char *sts_mode_name(StsMode m) {
        return m < ELEMENTSOF(mode_names) ? mode_names[m] : "unknown";
}

static const char *skip_wsp(const char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

/* sts-text-record = sts-version 1*(*WSP ";" *WSP sts-field) [*WSP ";"]; the version comes first,
 * "id" is required (1-32 letters and digits), other fields are ignored. */
int sts_txt_parse(const char *txt, char *id) {
        const char *p = skip_wsp(txt);
        bool have_id = false;

        if (strncmp(p, "v=STSv1", 7) != 0 || (p[7] != ';' && p[7] != ' ' && p[7] != '\t' && p[7] != '\0'))
                return -ENOENT;
        p = skip_wsp(p + 7);
        while (*p) {
                if (*p != ';')
                        return -EINVAL;
                p = skip_wsp(p + 1);
                if (!*p)
                        break;
                const char *name = p;
                while (isalnum((unsigned char) *p) || *p == '_' || *p == '.' || *p == '-')
                        p++;
                size_t nlen = (size_t) (p - name);
                if (nlen == 0 || *p != '=')
                        return -EINVAL;
                const char *value = ++p;
                while (*p && *p != ';' && *p != ' ' && *p != '\t' && (unsigned char) *p > 0x20 && *p != '=')
                        p++;
                size_t vlen = (size_t) (p - value);
                if (vlen == 0)
                        return -EINVAL;
                if (nlen == 2 && strncmp(name, "id", 2) == 0) {
                        if (have_id || vlen > STS_ID_MAX)
                                return -EINVAL;
                        for (size_t i = 0; i < vlen; i++)
                                if (!isalnum((unsigned char) value[i]))
                                        return -EINVAL;
                        memcpy(id, value, vlen);
                        id[vlen] = '\0';
                        have_id = true;
                }
                p = skip_wsp(p);
        }
        return have_id ? 0 : -EINVAL;
}

void sts_policy_done(StsPolicy *p) {
        p->mx = strv_free(p->mx);
        free(p->text);
        p->text = NULL;
}

static int strv_push(char ***v, size_t *n, char *s) {
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

/* An mx value: a host name, optionally "*." and a name; lower-cased. */
static bool valid_pattern(const char *s) {
        const char *p = startswith(s, "*.") ? s + 2 : s;
        if (!*p || *p == '.' || strlen(p) > 253)
                return false;
        for (; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
                        return false;
        return true;
}

#define FAIL(...) do { snprintf(why, why_size, __VA_ARGS__); sts_policy_done(ret); return -EINVAL; } while (0)

/* Lines "key: value" ending in LF or CRLF; version (STSv1) first, then mode, max_age and mx
 * (repeated) in any order; unknown keys are ignored (3.2). */
int sts_policy_parse(const char *text, size_t len, StsPolicy *ret, char *why, size_t why_size) {
        bool have_version = false, have_mode = false, have_age = false;
        size_t n_mx = 0, lineno = 0;
        *ret = (StsPolicy) {};

        if (memchr(text, '\0', len))
                FAIL("NUL byte in the policy");
        for (const char *p = text, *end = text + len; p < end;) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                const char *next = eol ? eol + 1 : end;
                if (!eol)
                        eol = end;
                size_t l = (size_t) (eol - p);
                if (l > 0 && p[l - 1] == '\r')
                        l--;
                lineno++;
                char line[1024];
                if (l >= sizeof line)
                        FAIL("line %zu too long", lineno);
                memcpy(line, p, l);
                line[l] = '\0';
                p = next;
                if (l == 0)
                        continue;
                char *colon = strchr(line, ':');
                if (!colon)
                        FAIL("line %zu: no \"key: value\"", lineno);
                *colon = '\0';
                char *key = line, *value = (char *) skip_wsp(colon + 1);
                for (size_t e = strlen(value); e > 0 && (value[e - 1] == ' ' || value[e - 1] == '\t'); e--)
                        value[e - 1] = '\0';
                if (!have_version) {
                        if (!streq(key, "version") || !streq(value, "STSv1"))
                                FAIL("the first line is not \"version: STSv1\"");
                        have_version = true;
                } else if (streq(key, "mode")) {
                        if (have_mode)
                                FAIL("mode given twice");
                        if (streq(value, "enforce"))
                                ret->mode = STS_MODE_ENFORCE;
                        else if (streq(value, "testing"))
                                ret->mode = STS_MODE_TESTING;
                        else if (streq(value, "none"))
                                ret->mode = STS_MODE_NONE;
                        else
                                FAIL("unknown mode \"%.40s\"", value);
                        have_mode = true;
                } else if (streq(key, "max_age")) {
                        if (have_age || !*value || strlen(value) > 10 || strspn(value, "0123456789") != strlen(value))
                                FAIL("invalid max_age \"%.40s\"", value);
                        unsigned long long a = strtoull(value, NULL, 10);
                        ret->max_age = a > STS_MAX_AGE_LIMIT ? STS_MAX_AGE_LIMIT : a;
                        have_age = true;
                } else if (streq(key, "mx")) {
                        if (!valid_pattern(value))
                                FAIL("invalid mx \"%.80s\"", value);
                        char *s = strdup(value);
                        if (!s) {
                                sts_policy_done(ret);
                                return -ENOMEM;
                        }
                        for (char *c = s; *c; c++)
                                *c = (char) tolower((unsigned char) *c);
                        size_t sl = strlen(s);
                        if (sl > 1 && s[sl - 1] == '.')
                                s[sl - 1] = '\0';
                        if (strv_push(&ret->mx, &n_mx, s) < 0) {
                                sts_policy_done(ret);
                                return -ENOMEM;
                        }
                } else if (streq(key, "version"))
                        FAIL("version given twice");
                /* other keys: extensions, ignored */
        }
        if (!have_version)
                FAIL("empty policy");
        if (!have_mode)
                FAIL("no mode");
        if (!have_age)
                FAIL("no max_age");
        if (n_mx == 0 && ret->mode != STS_MODE_NONE)
                FAIL("no mx");
        if (!(ret->text = strndup(text, len))) {
                sts_policy_done(ret);
                return -ENOMEM;
        }
        return 0;
}

int sts_policy_copy(const StsPolicy *p, StsPolicy *ret) {
        char why[8];
        int r = sts_policy_parse(p->text, strlen(p->text), ret, why, sizeof why);
        if (r < 0)
                return r;
        memcpy(ret->id, p->id, sizeof ret->id);
        ret->fetched = p->fetched;
        return 0;
}

bool sts_mx_matches(const char *pattern, const char *host) {
        size_t hl = strlen(host);
        if (hl > 0 && host[hl - 1] == '.')
                hl--;
        const char *suffix = startswith(pattern, "*.");
        if (!suffix)
                return strlen(pattern) == hl && strncasecmp(pattern, host, hl) == 0;
        /* "*.example.net": one label, then ".example.net" */
        const char *dot = memchr(host, '.', hl);
        if (!dot || dot == host)
                return false;
        size_t rest = hl - (size_t) (dot + 1 - host);
        return strlen(suffix) == rest && strncasecmp(suffix, dot + 1, rest) == 0;
}

bool sts_policy_mx_allowed(const StsPolicy *p, const char *host) {
        for (char **m = p->mx; m && *m; m++)
                if (sts_mx_matches(*m, host))
                        return true;
        return false;
}
