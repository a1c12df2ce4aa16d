/* conf-fields.c — the field-table settings loader and the list helpers declared in
 * conf-fields.h. Values come from conf_get_listener()/conf_get_raw() and are checked once more
 * with param_validate() (a value conf_load accepted can still expand differently for one
 * listener), then converted to the field's C type. Limits are the registry's alone; the only
 * adjustment here is saturating a value that does not fit the field's C type. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/strbuf.h"
#include "../log/log.h"
#include "conf-fields.h"
#include "params.h"

int conf_get_joined(Conf *c, const char *listener, const char *name, char **ret) {
        _cleanup_strv_free_ char **v = conf_get_list(c, listener, name);
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;

        if (!v)
                return -ENOMEM;
        for (char **i = v; *i; i++)
                if ((i != v && strbuf_putc(&b, ' ') < 0) || strbuf_puts(&b, *i) < 0)
                        return -ENOMEM;
        char *s = strbuf_steal(&b);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int conf_get_table_list(Conf *c, const char *listener, const char *name, TableFlags flags, TableList **ret,
                        char **ret_reason) {
        _cleanup_free_ char *specs = NULL, *why = NULL;
        TableList *l = NULL;

        int r = conf_get_joined(c, listener, name, &specs);
        if (r < 0)
                return r;
        if (specs[0]) {
                r = table_list_open(specs, flags, &l, &why);
                if (r < 0) {
                        if (ret_reason && asprintf(ret_reason, "%s = %s: %s", name, specs,
                                                   why ? why : "cannot open table") < 0)
                                *ret_reason = NULL;
                        return r;
                }
        }
        *ret = l;
        return 0;
}

/* Whether map names every value the registry allows for an ENUM parameter. */
static bool enum_covers(const ConfFieldEnum *map, const char *allowed) {
        if (!map)
                return false;
        for (const char *s = strempty(allowed);;) {
                const char *bar = strchrnul(s, '|');
                bool found = false;
                for (const ConfFieldEnum *e = map; e->name && !found; e++)
                        found = strlen(e->name) == (size_t) (bar - s) && strncmp(e->name, s, bar - s) == 0;
                if (!found)
                        return false;
                if (!*bar)
                        return true;
                s = bar + 1;
        }
}

/* Whether a row's C type can hold every value the registry allows for p. */
static bool field_fits(const ConfField *f, const ParamDef *p) {
        bool number = p->type == PARAM_INT || p->type == PARAM_SIZE;

        switch (f->kind) {
        case CONF_FIELD_STRING:
                return p->type == PARAM_STRING || p->type == PARAM_ENUM;
        case CONF_FIELD_RAW:
                return p->type == PARAM_STRING;
        case CONF_FIELD_BOOL:
                return p->type == PARAM_BOOL;
        case CONF_FIELD_INT:
                return p->type == PARAM_INT && p->min >= INT_MIN && p->max != 0 && p->max <= INT_MAX;
        case CONF_FIELD_REPLY_CODE:
                return p->type == PARAM_INT && p->min >= 400 && p->max != 0 && p->max <= 599;
        case CONF_FIELD_UINT:
        case CONF_FIELD_SIZE:
        case CONF_FIELD_U64:
                return number && p->min >= 0;
        case CONF_FIELD_LLONG:
                return number;
        case CONF_FIELD_USEC:
                return p->type == PARAM_TIME && p->min >= 0;
        case CONF_FIELD_SECONDS:
                return p->type == PARAM_TIME;
        case CONF_FIELD_ENUM:
                return p->type == PARAM_ENUM && enum_covers(f->values, p->enum_values);
        case CONF_FIELD_LIST:
                return p->type == PARAM_LIST;
        case CONF_FIELD_TABLES:
                return p->type == PARAM_LIST || p->type == PARAM_STRING;
        case _CONF_FIELD_KIND_MAX:
                break;
        }
        return false;
}

static int field_load_raw(Conf *c, const char *listener, const ConfField *f, char **field) {
        _cleanup_free_ char *key = NULL;

        /* "listener/name" gives the override's text, or the global text without one. */
        if (listener && asprintf(&key, "%s/%s", listener, f->name) < 0)
                return log_oom();
        char *s = strdup(strempty(conf_get_raw(c, key ? key : f->name, NULL)));
        if (!s)
                return log_oom();
        free(*field);
        *field = s;
        return 0;
}

static int field_load_tables(Conf *c, const char *listener, const ConfField *f, TableList **field) {
        _cleanup_free_ char *reason = NULL;
        TableList *l;

        int r = conf_get_table_list(c, listener, f->name, f->flags, &l, &reason);
        if (r < 0)
                return log_error_errno(r, "%s", reason ? reason : f->name);
        table_list_free(*field);
        *field = l;
        return 0;
}

/* Converts a value param_validate() accepted; n is the parsed number for the numeric kinds. */
static int field_store(const ConfField *f, const char *v, long long n, void *field) {
        switch (f->kind) {
        case CONF_FIELD_STRING: {
                char *s = strdup(v);
                if (!s)
                        return log_oom();
                free(*(char **) field);
                *(char **) field = s;
                return 0;
        }
        case CONF_FIELD_BOOL: {
                bool b = false;
                (void) param_parse_bool(v, &b);
                *(bool *) field = b;
                return 0;
        }
        case CONF_FIELD_INT:
        case CONF_FIELD_REPLY_CODE:
                *(int *) field = (int) n;
                return 0;
        case CONF_FIELD_UINT:
                *(unsigned *) field = (unsigned) MIN((unsigned long long) n, (unsigned long long) UINT_MAX);
                return 0;
        case CONF_FIELD_SIZE:
                *(size_t *) field = (size_t) MIN((unsigned long long) n, (unsigned long long) SIZE_MAX);
                return 0;
        case CONF_FIELD_U64:
                *(uint64_t *) field = (uint64_t) n;
                return 0;
        case CONF_FIELD_LLONG:
        case CONF_FIELD_SECONDS:
                *(long long *) field = n;
                return 0;
        case CONF_FIELD_USEC:
                *(usec_t *) field = (unsigned long long) n > UINT64_MAX / USEC_PER_SEC ? UINT64_MAX :
                        (usec_t) n * USEC_PER_SEC;
                return 0;
        case CONF_FIELD_ENUM:
                for (const ConfFieldEnum *e = f->values; e->name; e++)
                        if (streq(e->name, v)) {
                                *(int *) field = e->value;
                                return 0;
                        }
                break;
        case CONF_FIELD_LIST: {
                char **l = conf_split_list(v);
                if (!l)
                        return log_oom();
                strv_free(*(char ***) field);
                *(char ***) field = l;
                return 0;
        }
        case CONF_FIELD_RAW:
        case CONF_FIELD_TABLES:
        case _CONF_FIELD_KIND_MAX:
                break;
        }
        return log_error_errno(-EINVAL, "%s: unexpected value \"%s\"", f->name, v);
}

static int field_load(Conf *c, const char *listener, const ConfField *f, void *base) {
        void *field = (char *) base + f->offset;
        const ParamDef *p = param_lookup(f->name);
        char why[256];
        long long n = 0;

        if (!p || !field_fits(f, p))
                return log_error_errno(-EINVAL, "%s: the settings table and the parameter registry disagree "
                                       "about this parameter", f->name);
        if (f->kind == CONF_FIELD_RAW)
                return field_load_raw(c, listener, f, field);

        const char *v = conf_get_listener(c, listener, f->name);
        if (!v)
                return log_error_errno(-EINVAL, "%s: no value for listener %s", f->name, strna(listener));
        if (param_validate(p, v, why, sizeof why) < 0)
                return log_error_errno(-EINVAL, "%s = %s: %s", f->name, v, why);
        if (f->kind == CONF_FIELD_TABLES)
                return field_load_tables(c, listener, f, field);
        if (p->type == PARAM_TIME)
                (void) param_parse_time(v, p->time_unit, &n);
        else if (p->type == PARAM_INT || p->type == PARAM_SIZE)
                n = strtoll(v, NULL, 10);
        return field_store(f, v, n, field);
}

int conf_fields_load(Conf *c, const char *listener, const ConfField *fields, size_t n, void *base) {
        for (size_t i = 0; i < n; i++) {
                int r = field_load(c, listener, fields + i, base);
                if (r < 0)
                        return r;
        }
        return 0;
}

void conf_fields_done(const ConfField *fields, size_t n, void *base) {
        for (size_t i = 0; i < n; i++) {
                void *field = (char *) base + fields[i].offset;
                switch (fields[i].kind) {
                case CONF_FIELD_STRING:
                case CONF_FIELD_RAW:
                        free(*(char **) field);
                        *(char **) field = NULL;
                        break;
                case CONF_FIELD_LIST:
                        *(char ***) field = strv_free(*(char ***) field);
                        break;
                case CONF_FIELD_TABLES:
                        *(TableList **) field = table_list_free(*(TableList **) field);
                        break;
                default:
                        break;
                }
        }
}
