/* conf.c — main.cf reader (Postfix syntax), $expansion at lookup time, per-listener overrides,
 * validation against the parameter registry, and in-place editing for `posternctl config`.
 *
 * Syntax: a logical line is "name = value"; physical lines that begin with whitespace continue
 * the previous logical line; blank lines and lines whose first non-blank character is "#" are
 * skipped (they do not end a logical line). Names are [A-Za-z0-9_]+, optionally prefixed by a
 * listener (fd name) and "/". The last setting of a name wins.
 *
 * Expansion: $name, ${name}, $(name), $$ (a literal $), ${name?text} / ${name?{text}} (text when
 * name is non-empty), ${name:text} / ${name:{text}} (text when name is empty or unset) and
 * ${name?{a}:{b}}. Undefined names expand to nothing. Expansion is recursive with a depth limit;
 * loops are reported with the chain of names. Results are cached per (listener, name) until the
 * next conf_set. In a listener's context every $name prefers that listener's override, just as a
 * master.cf -o option changes the parameter for the whole process.
 *
 * Diagnostics read "<file>:<line>: <name>: <problem>" (no line for defaults). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "../basic/io-util.h"
#include "../basic/strbuf.h"
#include "conf.h"
#include "my-networks.h"
#include "master-cf.h"
#include "master-inet.h"
#include "params.h"
#include "../basic/strmap.h"

#define CONF_MAX_DEPTH 32               /* nested $name references */
#define CONF_MAX_NESTING 64             /* nested ${...} expressions within one value */
#define CONF_MAX_EXPANDED (1024 * 1024) /* one expanded value, bytes */
#define CONF_MAX_LINE (1024 * 1024)     /* one logical line, bytes */
#define CONF_SHOW_VALUE 200             /* value bytes quoted in a diagnostic */

typedef struct ConfEntry {
        char *name;     /* as written: "name" or "listener/name" */
        char *raw;
        unsigned line;
        char *file;     /* NULL: main.cf; else the master.cf whose -o option this is */
} ConfEntry;

struct Conf {
        char *path;
        char *config_dir;
        char *instance;         /* NAME when config_dir is <sysconfdir>/postern-NAME, else NULL */
        char *instance_queue;   /* that instance's default queue_directory and ... */
        char *instance_sockets; /* ... postern_socket_directory (NULL without an instance) */
        ConfEntry **order;      /* explicit settings in file order (owned) */
        size_t n_order, cap_order;
        StrMap *entries;        /* name -> ConfEntry* (borrowed from order) */
        StrMap *cache;          /* "name" or "listener/name" -> expanded char* (owned) */
        StrMap *mynetworks;     /* mynetworks_style -> the computed default of mynetworks (owned) */
};

typedef struct ConfExpand {
        Conf *c;
        const char *listener;
        const char *stack[CONF_MAX_DEPTH];
        unsigned depth;         /* entries in stack */
        unsigned nesting;
        StrBuf *err;            /* the reason of the first failure */
} ConfExpand;

static int conf_expand_text(ConfExpand *x, const char *text, size_t len, StrBuf *out);

/* A growing strv for diagnostics. */
typedef struct ConfMessages {
        char **v;
        size_t n, cap;
        bool oom;
} ConfMessages;

static void conf_messages_add(ConfMessages *m, const char *fmt, ...) _printf_(2, 3);
static void conf_messages_add(ConfMessages *m, const char *fmt, ...) {
        if (m->n + 2 > m->cap) {
                size_t ncap = m->cap ? m->cap * 2 : 8;
                char **nv = realloc(m->v, ncap * sizeof(char *));
                if (!nv) {
                        m->oom = true;
                        return;
                }
                m->v = nv;
                m->cap = ncap;
        }
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s) {
                m->oom = true;
                return;
        }
        m->v[m->n++] = s;
        m->v[m->n] = NULL;
}

static char **conf_messages_steal(ConfMessages *m) {
        if (!m->v)
                return calloc(1, sizeof(char *));
        char **v = m->v;
        *m = (ConfMessages) {};
        return v;
}

static bool conf_name_char(char ch) {
        return isalnum((unsigned char) ch) || ch == '_';
}

static bool conf_listener_char(char ch) {
        return isalnum((unsigned char) ch) || ch == '_' || ch == '-' || ch == '.';
}

/* "name" or "listener/name"; on success *ret_base points at name. */
static bool conf_name_valid(const char *name, const char **ret_base) {
        const char *slash = strchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        if (slash) {
                if (slash == name)
                        return false;
                for (const char *s = name; s < slash; s++)
                        if (!conf_listener_char(*s))
                                return false;
        }
        if (*base == '\0' || strlen(name) > 256)
                return false;
        /* A '-' as in "smtp-amavis_destination_recipient_limit": the per-transport parameters of a
         * master.cf service whose name has one (a $reference still ends at the '-'). */
        for (const char *s = base; *s; s++)
                if (!conf_name_char(*s) && !(*s == '-' && s > base))
                        return false;
        if (ret_base)
                *ret_base = base;
        return true;
}

static void conf_entry_free(ConfEntry *e) {
        if (!e)
                return;
        free(e->name);
        free(e->raw);
        free(e->file);
        free(e);
}

/* Frees the configuration and every value it handed out; accepts NULL. */
Conf *conf_free(Conf *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_order; i++)
                conf_entry_free(c->order[i]);
        free(c->order);
        strmap_free(c->entries);
        strmap_free(c->cache);
        strmap_free(c->mynetworks);
        free(c->path);
        free(c->config_dir);
        free(c->instance);
        free(c->instance_queue);
        free(c->instance_sockets);
        free(c);
        return NULL;
}

/* $POSTERN_CONFIG; else $POSTERN_INSTANCE's main.cf; else the default instance's. */
static const char *conf_default_path(void) {
        static char path[PATH_MAX];
        const char *e = getenv("POSTERN_CONFIG");
        if (!isempty(e))
                return e;
        e = getenv("POSTERN_INSTANCE");
        if (conf_instance_name_valid(e) &&
            snprintf(path, sizeof path, "%s-%s/main.cf", POSTERN_SYSCONFDIR, e) < (int) sizeof path)
                return path;
        return POSTERN_SYSCONFDIR "/main.cf";
}

bool conf_instance_name_valid(const char *name) {
        if (isempty(name) || strlen(name) > 64 || name[0] == '.' || name[0] == '-')
                return false;
        for (const char *s = name; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("_.-", *s))
                        return false;
        return true;
}

/* Sets c->instance and its default directories when config_dir is <sysconfdir>/postern-NAME
 * (the directory postern@NAME.target's units name in POSTERN_CONFIG). */
static int conf_find_instance(Conf *c) {
        static const char prefix[] = POSTERN_SYSCONFDIR "-";
        if (!startswith(c->config_dir, prefix) || !conf_instance_name_valid(c->config_dir + strlen(prefix)))
                return 0;
        c->instance = strdup(c->config_dir + strlen(prefix));
        if (!c->instance ||
            asprintf(&c->instance_queue, "%s-%s", param_default(param_lookup("queue_directory")), c->instance) < 0 ||
            asprintf(&c->instance_sockets, "%s-%s", param_default(param_lookup("postern_socket_directory")),
                     c->instance) < 0) {
                c->instance_queue = c->instance_sockets = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* config_directory, and an instance's queue and socket directories: defaults that are computed. */
static const char *conf_computed_default(const Conf *c, const char *name) {
        if (streq(name, "config_directory"))
                return c->config_dir;
        if (c->instance && streq(name, "queue_directory"))
                return c->instance_queue;
        if (c->instance && streq(name, "postern_socket_directory"))
                return c->instance_sockets;
        return NULL;
}

const char *conf_instance(const Conf *c) {
        return c->instance;
}

static int conf_new_at(const char *path, Conf **ret) {
        _cleanup_conf_free_ Conf *c = calloc(1, sizeof(Conf));
        if (!c)
                return -ENOMEM;
        c->path = strdup(path ? path : conf_default_path());
        c->entries = strmap_new(NULL);
        c->cache = strmap_new(free);
        if (!c->path || !c->entries || !c->cache)
                return -ENOMEM;
        _cleanup_free_ char *copy = strdup(c->path);
        if (!copy)
                return -ENOMEM;
        c->config_dir = strdup(dirname(copy));
        if (!c->config_dir || conf_find_instance(c) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

/* An empty configuration (all defaults). */
int conf_new(Conf **ret) {
        return conf_new_at(NULL, ret);
}

/* The file the configuration came from (or would have). */
const char *conf_path(const Conf *c) {
        return c->path;
}

/* Records name = raw; replaces an earlier setting in place. *ret_previous gets the old line. */
static int conf_store(Conf *c, const char *name, const char *raw, unsigned line, unsigned *ret_previous) {
        ConfEntry *e = strmap_get(c->entries, name);
        if (e) {
                char *v = strdup(raw);
                if (!v)
                        return -ENOMEM;
                if (ret_previous)
                        *ret_previous = e->line;
                free(e->raw);
                e->raw = v;
                e->line = line;
                return 0;
        }
        if (c->n_order == c->cap_order) {
                size_t ncap = c->cap_order ? c->cap_order * 2 : 32;
                ConfEntry **n = realloc(c->order, ncap * sizeof(ConfEntry *));
                if (!n)
                        return -ENOMEM;
                c->order = n;
                c->cap_order = ncap;
        }
        e = calloc(1, sizeof(ConfEntry));
        if (!e)
                return -ENOMEM;
        e->name = strdup(name);
        e->raw = strdup(raw);
        e->line = line;
        if (!e->name || !e->raw || strmap_put(c->entries, name, e) < 0) {
                conf_entry_free(e);
                return -ENOMEM;
        }
        c->order[c->n_order++] = e;
        return 0;
}

static void conf_remove_entry(Conf *c, ConfEntry *e) {
        /* Rare (only a failed conf_set of a new name): rebuild the index. */
        for (size_t i = 0; i < c->n_order; i++)
                if (c->order[i] == e) {
                        memmove(c->order + i, c->order + i + 1, (c->n_order - i - 1) * sizeof(ConfEntry *));
                        c->n_order--;
                        break;
                }
        strmap_clear(c->entries);
        for (size_t i = 0; i < c->n_order; i++)
                (void) strmap_put(c->entries, c->order[i]->name, c->order[i]);
        conf_entry_free(e);
}

/* ---- expansion ---------------------------------------------------------------------------- */

static void conf_expand_fail(ConfExpand *x, const char *fmt, ...) _printf_(2, 3);
static void conf_expand_fail(ConfExpand *x, const char *fmt, ...) {
        if (!x->err || x->err->len > 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        (void) strbuf_vprintf(x->err, fmt, ap);
        va_end(ap);
}

/* main.cf's compatibility_level, or NULL when it is not set (Postern's defaults are level 3.6's). */
static const char *conf_compat_level(Conf *c) {
        ConfEntry *e = strmap_get(c->entries, "compatibility_level");
        return e ? e->raw : NULL;
}

/* An older compatibility_level: says which defaults of that level are in effect, and which
 * changes of Postfix defaults concern parameters Postern does not have. */
static void conf_compat_report(Conf *c, ConfMessages *m, int *ret) {
        ConfEntry *e = strmap_get(c->entries, "compatibility_level");
        if (!e)
                return;
        if (!param_compat_level_valid(e->raw)) {
                conf_messages_add(m, "%s:%u: compatibility_level: invalid level \"%s\" (a number, or "
                                  "major.minor[.patch] such as 3.6)", c->path, e->line, e->raw);
                *ret = -EINVAL;
                return;
        }
        size_t n;
        const ParamCompat *t = param_compat_table(&n);
        _cleanup_strbuf_ StrBuf used = STRBUF_INIT, absent = STRBUF_INIT;
        for (size_t i = 0; i < n; i++) {
                if (param_compat_level_compare(e->raw, t[i].level) >= 0 || strmap_get(c->entries, t[i].name))
                        continue;
                if (t[i].old)
                        (void) strbuf_printf(&used, "%s%s = %s", used.len ? ", " : "", t[i].name,
                                             t[i].old[0] ? t[i].old : "(empty)");
                else
                        (void) strbuf_printf(&absent, "%s%s", absent.len ? ", " : "", t[i].name);
        }
        if (used.len)
                conf_messages_add(m, "%s:%u: compatibility_level = %s: using backwards-compatible default settings "
                                  "%s (set them in main.cf to keep them, then raise compatibility_level)",
                                  c->path, e->line, e->raw, used.data);
        if (absent.len)
                conf_messages_add(m, "%s:%u: compatibility_level = %s: not applied: the older defaults of %s "
                                  "(Postern has no such parameter)", c->path, e->line, e->raw, absent.data);
}

/* mynetworks when main.cf leaves it unset: computed from mynetworks_style (in x's listener
 * context) once per style and kept; the loopback networks when that fails. */
static const char *conf_mynetworks_default(ConfExpand *x) {
        Conf *c = x->c;
        const char *style = x->listener ? conf_get_listener(c, x->listener, "mynetworks_style")
                                        : conf_get(c, "mynetworks_style");
        const char *fallback = param_default(param_lookup("mynetworks"));
        if (isempty(style))
                return fallback;
        const char *have = c->mynetworks ? strmap_get(c->mynetworks, style) : NULL;
        if (have)
                return have;
        char *text = NULL;
        if (mynetworks_compute(style, &text) < 0)
                return fallback;
        if ((!c->mynetworks && !(c->mynetworks = strmap_new(free))) || strmap_put(c->mynetworks, style, text) < 0) {
                free(text);
                return fallback;
        }
        return text;
}

/* The unexpanded text for name in x's context, or NULL when it is undefined. Computed defaults
 * that depend on other parameters (mydomain, config_directory) are produced in *ret_computed. */
static const char *conf_raw_for(ConfExpand *x, const char *name, bool *ret_explicit) {
        Conf *c = x->c;
        ConfEntry *e = NULL;
        *ret_explicit = false;
        if (x->listener) {
                char key[600];
                if (snprintf(key, sizeof key, "%s/%s", x->listener, name) < (int) sizeof key)
                        e = strmap_get(c->entries, key);
        }
        if (!e)
                e = strmap_get(c->entries, name);
        if (e) {
                *ret_explicit = true;
                return e->raw;
        }
        const ParamDef *p = param_lookup(name);
        if (!p)
                return NULL;
        const char *computed = conf_computed_default(c, name);
        if (computed)
                return computed;
        if (streq(name, "mynetworks"))
                return conf_mynetworks_default(x);
        const char *old = param_compat_default(conf_compat_level(c), name);
        return old ? old : param_default(p);
}

/* Replaces *v, "/file/name", by the file's first line that is neither empty nor a "#" comment,
 * trimmed: "myorigin = /etc/mailname", as Debian's Postfix reads it. */
static int conf_value_from_file(ConfExpand *x, const char *name, StrBuf *v) {
        _cleanup_fclose_ FILE *f = fopen(v->data, "re");
        if (!f) {
                int r = -errno;
                conf_expand_fail(x, "$%s: cannot read %s: %s", name, v->data, strerror(-r));
                return r;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
                char *s = strstrip(line);
                if (*s && *s != '#') {
                        strbuf_reset(v);
                        return strbuf_puts(v, s);
                }
        }
        conf_expand_fail(x, "$%s: %s holds no name", name, v->data);
        return -EINVAL;
}

static int conf_expand_name(ConfExpand *x, const char *name, StrBuf *out) {
        char key[600];
        if (snprintf(key, sizeof key, "%s%s%s", x->listener ? x->listener : "", x->listener ? "/" : "", name) >= (int) sizeof key) {
                conf_expand_fail(x, "parameter name too long");
                return -ENAMETOOLONG;
        }
        const char *cached = strmap_get(x->c->cache, key);
        if (cached)
                return strbuf_puts(out, cached);

        for (unsigned i = 0; i < x->depth; i++)
                if (streq(x->stack[i], name)) {
                        _cleanup_strbuf_ StrBuf chain = STRBUF_INIT;
                        for (unsigned j = i; j < x->depth; j++)
                                (void) strbuf_printf(&chain, "$%s -> ", x->stack[j]);
                        (void) strbuf_printf(&chain, "$%s", name);
                        conf_expand_fail(x, "parameter expansion loop: %s", strempty(chain.data));
                        return -ELOOP;
                }
        if (x->depth >= CONF_MAX_DEPTH) {
                conf_expand_fail(x, "parameter expansion nested more than %d levels deep", CONF_MAX_DEPTH);
                return -ELOOP;
        }

        bool expl;
        const char *raw = conf_raw_for(x, name, &expl);
        if (!raw)
                return 0;   /* undefined: expands to nothing */

        _cleanup_strbuf_ StrBuf v = STRBUF_INIT;
        v.limit = CONF_MAX_EXPANDED;
        x->stack[x->depth++] = name;
        int r;
        if (!expl && streq(name, "mydomain")) {
                /* Postfix: myhostname minus its first label. */
                r = conf_expand_name(x, "myhostname", &v);
                if (r >= 0) {
                        const char *dot = v.data ? strchr(v.data, '.') : NULL;
                        _cleanup_free_ char *d = strdup(dot && dot[1] ? dot + 1 : "localdomain");
                        strbuf_reset(&v);
                        r = d ? strbuf_puts(&v, d) : -ENOMEM;
                }
        } else
                r = conf_expand_text(x, raw, strlen(raw), &v);
        if (r >= 0 && streq(name, "myorigin") && v.data && v.data[0] == '/')
                r = conf_value_from_file(x, name, &v);
        x->depth--;
        if (r == -EMSGSIZE)
                conf_expand_fail(x, "expansion of $%s is longer than %d bytes", name, CONF_MAX_EXPANDED);
        if (r < 0)
                return r;

        char *val = strdup(strempty(v.data));
        if (!val)
                return -ENOMEM;
        if (strmap_put(x->c->cache, key, val) < 0) {
                free(val);
                return -ENOMEM;
        }
        return strbuf_puts(out, val);
}

/* Index of the bracket closing the one opened just before text[i], or len when none. */
static size_t conf_find_close(const char *text, size_t i, size_t len, char close) {
        int depth = 0;
        for (; i < len; i++) {
                char ch = text[i];
                if (depth == 0 && ch == close)
                        return i;
                if (ch == '{' || ch == '(')
                        depth++;
                else if ((ch == '}' || ch == ')') && depth > 0)
                        depth--;
        }
        return len;
}

static size_t conf_skip_space(const char *text, size_t i, size_t len) {
        while (i < len && isspace((unsigned char) text[i]))
                i++;
        return i;
}

static int conf_unterminated(ConfExpand *x, const char *name, char close, char op) {
        conf_expand_fail(x, "missing '%c' in \"$%c%s%c...\"", close, close == '}' ? '{' : '(', name, op);
        return -EINVAL;
}

/* Parses "${name?...}" etc. starting at text[i] == '{' or '('; *ret_end is past the closer. */
static int conf_expand_braced(ConfExpand *x, const char *text, size_t i, size_t len, StrBuf *out, size_t *ret_end) {
        char close = text[i] == '{' ? '}' : ')';
        size_t start = ++i;
        while (i < len && conf_name_char(text[i]))
                i++;
        size_t nlen = i - start;
        if (nlen == 0 || nlen > 255) {
                conf_expand_fail(x, "bad parameter name in \"$%c...\"", close == '}' ? '{' : '(');
                return -EINVAL;
        }
        char name[256];
        memcpy(name, text + start, nlen);
        name[nlen] = '\0';

        if (i < len && text[i] == close) {
                *ret_end = i + 1;
                return conf_expand_name(x, name, out);
        }
        i = conf_skip_space(text, i, len);
        if (i >= len || (text[i] != '?' && text[i] != ':')) {
                conf_expand_fail(x, "missing '%c' after \"$%c%s\"", close, close == '}' ? '{' : '(', name);
                return -EINVAL;
        }

        /* Conditional: find the "when set" and "when empty" texts. */
        const char *t_set = NULL, *t_empty = NULL;
        size_t l_set = 0, l_empty = 0;
        char op = text[i++];
        size_t j = conf_skip_space(text, i, len);
        if (j < len && text[j] == '{') {
                /* ${name?{a}:{b}}, ${name?{a}}, ${name:{b}} */
                size_t e = conf_find_close(text, j + 1, len, '}');
                if (e >= len)
                        return conf_unterminated(x, name, close, op);
                if (op == '?')
                        t_set = text + j + 1, l_set = e - j - 1;
                else
                        t_empty = text + j + 1, l_empty = e - j - 1;
                j = conf_skip_space(text, e + 1, len);
                if (op == '?' && j < len && text[j] == ':') {
                        j = conf_skip_space(text, j + 1, len);
                        if (j >= len || text[j] != '{') {
                                conf_expand_fail(x, "expected '{' after ':' in \"${%s?{...}:\"", name);
                                return -EINVAL;
                        }
                        e = conf_find_close(text, j + 1, len, '}');
                        if (e >= len)
                                return conf_unterminated(x, name, close, op);
                        t_empty = text + j + 1, l_empty = e - j - 1;
                        j = conf_skip_space(text, e + 1, len);
                }
                if (j >= len || text[j] != close) {
                        conf_expand_fail(x, "missing '%c' after the {text} of \"$%c%s%c\"", close, close == '}' ? '{' : '(', name, op);
                        return -EINVAL;
                }
                *ret_end = j + 1;
        } else {
                /* ${name?text}, ${name:text} */
                size_t e = conf_find_close(text, i, len, close);
                if (e >= len)
                        return conf_unterminated(x, name, close, op);
                if (op == '?')
                        t_set = text + i, l_set = e - i;
                else
                        t_empty = text + i, l_empty = e - i;
                *ret_end = e + 1;
        }

        _cleanup_strbuf_ StrBuf v = STRBUF_INIT;
        v.limit = CONF_MAX_EXPANDED;
        int r = conf_expand_name(x, name, &v);
        if (r < 0)
                return r;
        bool set = v.len > 0;
        if (set && t_set)
                return conf_expand_text(x, t_set, l_set, out);
        if (!set && t_empty)
                return conf_expand_text(x, t_empty, l_empty, out);
        return 0;
}

static int conf_expand_text(ConfExpand *x, const char *text, size_t len, StrBuf *out) {
        if (x->nesting >= CONF_MAX_NESTING) {
                conf_expand_fail(x, "expressions nested more than %d levels deep", CONF_MAX_NESTING);
                return -ELOOP;
        }
        x->nesting++;
        int r = 0;
        size_t i = 0;
        while (i < len && r >= 0) {
                const char *dollar = memchr(text + i, '$', len - i);
                size_t lit = dollar ? (size_t) (dollar - (text + i)) : len - i;
                r = strbuf_append(out, text + i, lit);
                i += lit;
                if (r < 0 || i >= len)
                        break;
                i++;    /* the '$' */
                if (i >= len) {
                        r = strbuf_putc(out, '$');
                        break;
                }
                char ch = text[i];
                if (ch == '$') {
                        r = strbuf_putc(out, '$');
                        i++;
                } else if (ch == '{' || ch == '(') {
                        size_t end = len;
                        r = conf_expand_braced(x, text, i, len, out, &end);
                        i = end;
                } else if (conf_name_char(ch)) {
                        size_t start = i;
                        while (i < len && conf_name_char(text[i]))
                                i++;
                        char name[256];
                        if (i - start >= sizeof name) {
                                conf_expand_fail(x, "parameter name too long after '$'");
                                r = -EINVAL;
                                break;
                        }
                        memcpy(name, text + start, i - start);
                        name[i - start] = '\0';
                        r = conf_expand_name(x, name, out);
                } else
                        r = strbuf_putc(out, '$');   /* a lone '$' stays literal */
        }
        x->nesting--;
        if (r == -EMSGSIZE)
                conf_expand_fail(x, "expanded value is longer than %d bytes", CONF_MAX_EXPANDED);
        return r;
}

/* Expands text in a listener's context into *ret (caller frees); on failure *ret_reason. */
static int conf_expand_string(Conf *c, const char *listener, const char *self, const char *text,
                              char **ret, char **ret_reason) {
        _cleanup_strbuf_ StrBuf err = STRBUF_INIT;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        out.limit = CONF_MAX_EXPANDED;
        ConfExpand x = { .c = c, .listener = listener, .err = &err };
        if (self)
                x.stack[x.depth++] = self;
        int r = conf_expand_text(&x, text, strlen(text), &out);
        if (r < 0) {
                if (ret_reason)
                        *ret_reason = strdup(err.len ? err.data : strerror(-r));
                return r == -ENOMEM ? r : -EINVAL;
        }
        char *s = strbuf_steal(&out);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* The expanded value of name in listener's context; cached in c. */
static const char *conf_lookup(Conf *c, const char *listener, const char *name) {
        if (!name)
                return NULL;
        const char *slash = strchr(name, '/');
        char lbuf[256];
        if (slash) {
                size_t l = (size_t) (slash - name);
                if (l >= sizeof lbuf)
                        return NULL;
                memcpy(lbuf, name, l);
                lbuf[l] = '\0';
                listener = lbuf;
                name = slash + 1;
        }
        if (!conf_name_valid(name, NULL) || (listener && strlen(listener) > 255))
                return NULL;
        char key[600];
        snprintf(key, sizeof key, "%s%s%s", listener ? listener : "", listener ? "/" : "", name);
        const char *v = strmap_get(c->cache, key);
        if (v)
                return v;   /* the common case: a daemon asking again */

        ConfExpand probe = { .c = c, .listener = listener };
        bool expl;
        const char *raw = conf_raw_for(&probe, name, &expl);
        if (!raw)
                return NULL;

        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        out.limit = CONF_MAX_EXPANDED;
        ConfExpand x = { .c = c, .listener = listener };
        if (conf_expand_name(&x, name, &out) < 0)
                return raw;   /* conf_load reports such values; never crash a lookup */
        v = strmap_get(c->cache, key);
        return v ? v : raw;
}

/* The expanded value of a parameter. */
const char *conf_get(Conf *c, const char *name) {
        return conf_lookup(c, NULL, name);
}

/* The expanded value, with listener's override first. */
const char *conf_get_listener(Conf *c, const char *listener, const char *name) {
        return conf_lookup(c, listener, name);
}

static long long conf_int_default(const ParamDef *p) {
        long long v = 0;
        if (p->type == PARAM_TIME)
                (void) param_parse_time(param_default(p), p->time_unit, &v);
        else {
                char *end;
                v = strtoll(param_default(p), &end, 10);
        }
        return v;
}

/* An INT or SIZE parameter; falls back to the default when the value does not parse. */
long long conf_get_int(Conf *c, const char *listener, const char *name) {
        const ParamDef *p = param_lookup(name);
        const char *v = conf_lookup(c, listener, name);
        char reason[160];
        if (v && (!p || param_validate(p, v, reason, sizeof reason) == 0)) {
                char *end;
                errno = 0;
                long long n = strtoll(v, &end, 10);
                if (errno == 0 && end != v && *end == '\0')
                        return n;
        }
        return p ? conf_int_default(p) : 0;
}

/* A BOOL parameter; falls back to the default. */
bool conf_get_bool(Conf *c, const char *listener, const char *name) {
        const ParamDef *p = param_lookup(name);
        const char *v = conf_lookup(c, listener, name);
        bool b = false;
        if (v && param_parse_bool(v, &b) == 0)
                return b;
        if (p && param_parse_bool(param_default(p), &b) == 0)
                return b;
        return false;
}

/* A TIME parameter in seconds; falls back to the default. */
long long conf_get_time(Conf *c, const char *listener, const char *name) {
        const ParamDef *p = param_lookup(name);
        const char *v = conf_lookup(c, listener, name);
        char unit = p && p->time_unit ? p->time_unit : 's';
        long long s;
        if (v && param_parse_time(v, unit, &s) == 0 && (!p || s >= p->min))
                return s;
        return p ? conf_int_default(p) : 0;
}

/* A LIST parameter, split; NULL only on ENOMEM (an unset name gives an empty list). */
char **conf_get_list(Conf *c, const char *listener, const char *name) {
        return conf_split_list(strempty(conf_lookup(c, listener, name)));
}

/* Splits on whitespace and commas outside braces; "{ a b }" becomes "a b". */
char **conf_split_list(const char *value) {
        size_t n = 0, cap = 8;
        char **v = calloc(cap, sizeof(char *));
        if (!v)
                return NULL;
        const char *s = strempty(value);
        for (;;) {
                while (*s && (isspace((unsigned char) *s) || *s == ','))
                        s++;
                if (!*s)
                        break;
                const char *start = s;
                int depth = 0;
                while (*s && (depth > 0 || !(isspace((unsigned char) *s) || *s == ','))) {
                        if (*s == '{')
                                depth++;
                        else if (*s == '}' && depth > 0)
                                depth--;
                        s++;
                }
                const char *a = start, *b = s;
                if (*a == '{' && b - a >= 2 && b[-1] == '}' &&
                    conf_find_close(a, 1, (size_t) (b - a), '}') == (size_t) (b - a - 1)) {
                        a++, b--;
                        while (a < b && isspace((unsigned char) *a))
                                a++;
                        while (b > a && isspace((unsigned char) b[-1]))
                                b--;
                }
                if (n + 2 > cap) {
                        cap *= 2;
                        char **nv = realloc(v, cap * sizeof(char *));
                        if (!nv)
                                return strv_free(v);
                        v = nv;
                }
                v[n] = strndup(a, (size_t) (b - a));
                if (!v[n])
                        return strv_free(v);
                v[++n] = NULL;
        }
        return v;
}

/* The raw text (explicit setting, else default) and whether it was set. */
int conf_is_explicit(Conf *c, const char *listener, const char *name) {
        bool explicit_set = false;
        if (listener) {
                _cleanup_free_ char *full = NULL;
                if (asprintf(&full, "%s/%s", listener, name) < 0)
                        return -ENOMEM;
                (void) conf_get_raw(c, full, &explicit_set);
        }
        if (!explicit_set)
                (void) conf_get_raw(c, name, &explicit_set);
        return explicit_set;
}

const char *conf_get_raw(Conf *c, const char *name, bool *ret_explicit) {
        if (!name)
                return NULL;
        ConfEntry *e = strmap_get(c->entries, name);
        if (ret_explicit)
                *ret_explicit = !!e;
        if (e)
                return e->raw;
        const char *base = strchr(name, '/');
        base = base ? base + 1 : name;
        const ParamDef *p = param_lookup(base);
        if (!p)
                return NULL;
        if (base != name)   /* "listener/name" without an override: the global text */
                return conf_get_raw(c, base, NULL);
        const char *computed = conf_computed_default(c, name);
        if (computed)
                return computed;
        if (streq(name, "mydomain") || streq(name, "mynetworks"))
                return conf_get(c, name);      /* computed: what the daemons use */
        return param_default(p);
}

/* Calls fn for each explicit setting in file order (master.cf's -o options after main.cf's). */
void conf_foreach_explicit(Conf *c, void (*fn)(const char *name, const char *raw, void *ud), void *ud) {
        for (size_t i = 0; i < c->n_order; i++)
                fn(c->order[i]->name, c->order[i]->raw, ud);
}

/* The same for main.cf's own settings only. */
void conf_foreach_main_cf(Conf *c, void (*fn)(const char *name, const char *raw, void *ud), void *ud) {
        for (size_t i = 0; i < c->n_order; i++)
                if (!c->order[i]->file)
                        fn(c->order[i]->name, c->order[i]->raw, ud);
}

static const char *conf_split_listener(const char *name, char *lbuf, size_t lsz, const char **ret_listener) {
        const char *slash = strchr(name, '/');
        *ret_listener = NULL;
        if (!slash)
                return name;
        snprintf(lbuf, lsz, "%.*s", (int) (slash - name), name);
        *ret_listener = lbuf;
        return slash + 1;
}

/* Expands and validates one setting; fills reason on failure. */
static int conf_check_entry(Conf *c, const char *name, char **ret_reason) {
        char lbuf[260];
        const char *listener;
        const char *base = conf_split_listener(name, lbuf, sizeof lbuf, &listener);
        ConfExpand probe = { .c = c, .listener = listener };
        bool expl;
        const char *raw = conf_raw_for(&probe, base, &expl);
        if (!raw)
                return 0;
        _cleanup_free_ char *value = NULL;
        /* "myorigin = /etc/mailname" is the file's name: check it as the daemons read it. */
        bool from_file = streq(base, "myorigin");
        int r = conf_expand_string(c, listener, from_file ? NULL : base, from_file ? "${myorigin}" : raw,
                                   &value, ret_reason);
        if (r < 0)
                return r;
        const ParamDef *p = param_lookup(base);
        if (!p)
                return 0;
        char why[256];
        if (param_validate(p, value, why, sizeof why) < 0) {
                size_t l = strlen(value);
                if (asprintf(ret_reason, "invalid value \"%.*s%s\": %s", CONF_SHOW_VALUE, value,
                             l > CONF_SHOW_VALUE ? "..." : "", why) < 0)
                        *ret_reason = NULL;
                return -EINVAL;
        }
        return 0;
}

/* Sets a value as if it were in main.cf, after validating it. */
int conf_set(Conf *c, const char *name, const char *value, char **ret_reason) {
        const char *base;
        if (!name || !value || !conf_name_valid(name, &base)) {
                if (ret_reason)
                        *ret_reason = strdup("invalid parameter name");
                return -EINVAL;
        }
        if (!param_lookup(base)) {
                if (ret_reason)
                        *ret_reason = strdup("unknown parameter");
                return -ENOENT;
        }
        ConfEntry *old = strmap_get(c->entries, name);
        _cleanup_free_ char *saved = NULL;
        unsigned saved_line = 0;
        if (old) {
                saved = strdup(old->raw);
                if (!saved)
                        return -ENOMEM;
                saved_line = old->line;
        }
        int r = conf_store(c, name, value, 0, NULL);
        if (r < 0)
                return r;
        strmap_clear(c->cache);
        _cleanup_free_ char *reason = NULL;
        r = conf_check_entry(c, name, &reason);
        if (r < 0) {
                if (old) {
                        free(old->raw);
                        old->raw = TAKE_PTR(saved);
                        old->line = saved_line;
                } else
                        conf_remove_entry(c, strmap_get(c->entries, name));
                strmap_clear(c->cache);
                if (ret_reason)
                        *ret_reason = TAKE_PTR(reason);
                return r == -ENOMEM ? r : -EINVAL;
        }
        return 0;
}

/* Whether raw mentions $name / ${name / $(name. */
static bool conf_text_references(const char *raw, const char *name) {
        size_t l = strlen(name);
        for (const char *s = strchr(raw, '$'); s; s = strchr(s + 1, '$')) {
                const char *n = s + 1;
                if (*n == '{' || *n == '(')
                        n++;
                if (strncmp(n, name, l) == 0 && !conf_name_char(n[l]))
                        return true;
        }
        return false;
}

static bool conf_is_referenced(Conf *c, const char *name) {
        for (size_t i = 0; i < c->n_order; i++)
                if (conf_text_references(c->order[i]->raw, name))
                        return true;
        for (size_t i = 0; i < param_table_size; i++)
                if (param_table[i].def && conf_text_references(param_table[i].def, name))
                        return true;
        return false;
}

/* Handles one logical line; returns -EINVAL on a syntax error (reported in m). */
static int conf_parse_logical(Conf *c, const char *file, unsigned line, char *text, ConfMessages *m) {
        char *eq = strchr(text, '=');
        if (!eq) {
                conf_messages_add(m, "%s:%u: syntax error: expected \"name = value\", got \"%.60s%s\"",
                                  file, line, text, strlen(text) > 60 ? "..." : "");
                return -EINVAL;
        }
        *eq = '\0';
        char *name = strstrip(text);
        char *value = strstrip(eq + 1);
        if (!conf_name_valid(name, NULL)) {
                conf_messages_add(m, "%s:%u: \"%.60s\": invalid parameter name", file, line, name);
                return -EINVAL;
        }
        unsigned previous = 0;
        int r = conf_store(c, name, value, line, &previous);
        if (r < 0)
                return r;
        if (previous)
                conf_messages_add(m, "%s:%u: %s: overrides the setting at line %u", file, line, name, previous);
        return 0;
}

static int conf_read_file(Conf *c, FILE *f, ConfMessages *m) {
        _cleanup_free_ char *buf = NULL;
        size_t bufsz = 0;
        _cleanup_strbuf_ StrBuf logical = STRBUF_INIT;
        logical.limit = CONF_MAX_LINE;
        unsigned lineno = 0, start = 0;
        bool have = false, too_long = false;
        int ret = 0;

        for (;;) {
                ssize_t n = getline(&buf, &bufsz, f);
                bool eof = n < 0;
                if (!eof)
                        lineno++;
                char *s = eof ? NULL : buf;
                if (s) {
                        size_t l = strlen(s);   /* a NUL byte ends the line */
                        while (l > 0 && isspace((unsigned char) s[l - 1]))
                                s[--l] = '\0';
                        const char *first = s + strspn(s, " \t\r\f\v");
                        if (*first == '\0' || *first == '#')
                                continue;
                        if (isspace((unsigned char) s[0])) {
                                if (!have) {
                                        conf_messages_add(m, "%s:%u: line starts with whitespace but continues nothing; ignored",
                                                          c->path, lineno);
                                        continue;
                                }
                                if (strbuf_putc(&logical, ' ') < 0 || strbuf_puts(&logical, first) < 0)
                                        too_long = true;
                                continue;
                        }
                }
                if (have) {
                        if (too_long) {
                                conf_messages_add(m, "%s:%u: logical line longer than %d bytes", c->path, start, CONF_MAX_LINE);
                                ret = -EINVAL;
                        } else {
                                int r = conf_parse_logical(c, c->path, start, logical.data, m);
                                if (r == -ENOMEM)
                                        return r;
                                if (r < 0)
                                        ret = r;
                        }
                }
                if (eof)
                        break;
                strbuf_reset(&logical);
                too_long = strbuf_puts(&logical, s) < 0;
                have = true;
                start = lineno;
        }
        if (ferror(f)) {
                conf_messages_add(m, "%s: read error: %m", c->path);
                return -EIO;
        }
        return ret;
}

static bool conf_braces_balanced(const char *s) {
        int depth = 0;
        for (; *s && depth >= 0; s++)
                depth += *s == '{' ? 1 : *s == '}' ? -1 : 0;
        return depth == 0;
}

/* $config_directory/master.cf, or an empty one (its errors are reported where it is used). */
static void conf_master_load(Conf *c, MasterCf *ret) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        const char *dir = conf_get(c, "config_directory");
        if (!dir || asprintf(&path, "%s/master.cf", dir) < 0 || master_cf_load(path, ret, &err) < 0)
                *ret = (MasterCf) {};
        strmap_clear(c->cache);
}

/* Stores "<fd name>/<name> = value" from master.cf unless main.cf sets it itself. */
static int conf_store_listener(Conf *c, const char *path, const MasterInet *l, const char *name, const char *v) {
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s/%s", l->fdname, name) < 0)
                return -ENOMEM;
        ConfEntry *e = strmap_get(c->entries, key);
        if (e && !e->file)
                return 0;   /* main.cf's own listener setting wins */
        _cleanup_free_ char *value = strdup(v);
        if (!value)
                return -ENOMEM;
        int r = conf_store(c, key, value, l->entry->line, NULL);
        e = r >= 0 ? strmap_get(c->entries, key) : NULL;
        if (e && !e->file && !(e->file = strdup(path)))
                r = -ENOMEM;
        return r;
}

/* A port-25 postscreen that postern-smtpd replaces: the listener runs the screening stage
 * (postern_postscreen_enable), with postscreen's own -o postscreen_* options as its settings;
 * the PROXY protocol its load balancer speaks (postscreen's own -o, else main.cf's
 * postscreen_upstream_proxy_*) becomes smtpd's on that listener. main.cf's own
 * "<fd name>/<name>" settings win. */
static int conf_postscreen_proxy(Conf *c, const char *path, const MasterInet *l, ConfMessages *m) {
        int r = conf_store_listener(c, path, l, "postern_postscreen_enable", "yes");
        for (size_t i = 0; r >= 0 && i < l->entry->n_options; i++) {
                const MasterOption *o = &l->entry->options[i];
                if (!startswith(o->name, "postscreen_") || master_inet_postscreen_proxy_option(o->name))
                        continue;
                if (!param_lookup(o->name))
                        conf_messages_add(m, "%s:%u: %s: not supported: -o %s on %s (Postern has no parameter of "
                                          "this name)", path, l->entry->line, l->entry->service, o->name,
                                          l->entry->service);
                else
                        r = conf_store_listener(c, path, l, o->name, o->value);
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(master_inet_postscreen_proxy); i++) {
                const char *ps = master_inet_postscreen_proxy[i][0], *smtpd = master_inet_postscreen_proxy[i][1];
                const char *v = master_entry_option(l->entry, ps);
                ConfEntry *g = strmap_get(c->entries, ps);
                if (!v && g && !g->file)
                        v = g->raw;
                if (!v)
                        continue;
                if ((r = conf_store_listener(c, path, l, smtpd, v)) < 0)
                        return r;
        }
        return 0;
}

/* main.cf's postscreen_upstream_proxy_* without a postscreen that smtpd replaces: accepted,
 * and said to do nothing. */
static void conf_postscreen_proxy_unused(Conf *c, const MasterCf *master, ConfMessages *m) {
        MasterInetPlan p = {};
        bool replaced = false;
        if (master->n > 0 && master_inet_plan(master, NULL, NULL, &p) >= 0) {
                for (size_t i = 0; i < p.n; i++)
                        if (streq(p.v[i].entry->command, "postscreen") && p.v[i].map == MASTER_INET_SHIPPED)
                                replaced = true;
                master_inet_plan_done(&p);
        }
        for (size_t i = 0; !replaced && i < ELEMENTSOF(master_inet_postscreen_proxy); i++) {
                ConfEntry *g = strmap_get(c->entries, master_inet_postscreen_proxy[i][0]);
                if (g && !g->file)
                        conf_messages_add(m, "%s:%u: %s: not supported: %s (master.cf has no port-25 postscreen entry "
                                          "for it to apply to; set %s on the listener "
                                          "the load balancer talks to)", c->path, g->line, g->name, g->name,
                                          master_inet_postscreen_proxy[i][1]);
        }
}

/* The -o options of master.cf's listeners (common/conf/master-inet.h) as "<fd name>/<name>"
 * settings, unless main.cf sets that name itself: main.cf's listener settings win, then
 * master.cf's -o, then main.cf's global ones. Options naming a parameter Postern lacks are
 * reported, never dropped silently. */
static int conf_master_overrides(Conf *c, const MasterCf *master, ConfMessages *m) {
        MasterInetPlan p = {};
        if (master->n == 0)
                return 0;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/master.cf", strempty(conf_get(c, "config_directory"))) < 0)
                return -ENOMEM;
        strmap_clear(c->cache);
        int r = master_inet_plan(master, NULL, NULL, &p);
        for (size_t i = 0; r >= 0 && i < p.n; i++) {
                const MasterInet *l = &p.v[i];
                if (l->map == MASTER_INET_SHIPPED && streq(l->entry->command, "postscreen"))
                        r = conf_postscreen_proxy(c, path, l, m);   /* with or without a pass entry */
                if (r < 0 || (l->map != MASTER_INET_SHIPPED && l->map != MASTER_INET_SOCKET) || !l->options)
                        continue;
                for (char **a = l->options->args; a && *a; a++)
                        conf_messages_add(m, "%s:%u: %s: not supported: \"%s\" on %s (an argument; smtpd entries take "
                                          "only -o name=value)", path, l->options->line, l->entry->service, *a,
                                          l->entry->service);
                for (size_t k = 0; r >= 0 && k < l->options->n_options; k++) {
                        const MasterOption *o = &l->options->options[k];
                        const ParamIgnored *ignored = param_lookup(o->name) ? NULL : param_ignored_lookup(o->name);
                        _cleanup_free_ char *key = NULL;
                        if (ignored) {
                                conf_messages_add(m, "%s:%u: %s: -o %s on %s: ignored, no meaning here: %s", path,
                                                  l->options->line, l->entry->service, o->name, l->entry->service,
                                                  ignored->replaced_by);
                                continue;
                        }
                        if (!param_lookup(o->name)) {
                                conf_messages_add(m, "%s:%u: %s: not supported: -o %s on %s (Postern has no parameter of "
                                                  "this name)", path, l->options->line, l->entry->service, o->name,
                                                  l->entry->service);
                                continue;
                        }
                        if (!conf_braces_balanced(o->value)) {
                                /* "-o name={a b}" splits into words; Postfix's form is "-o { name = a b }" */
                                conf_messages_add(m, "%s:%u: %s: not supported: -o %s on %s (unbalanced \"{\" or \"}\" "
                                                  "in \"%s\"; write -o { %s = value with spaces })", path,
                                                  l->options->line, l->entry->service, o->name, l->entry->service,
                                                  o->value, o->name);
                                continue;
                        }
                        if (asprintf(&key, "%s/%s", l->fdname, o->name) < 0)
                                return master_inet_plan_done(&p), -ENOMEM;
                        ConfEntry *e = strmap_get(c->entries, key);
                        if (e && !e->file)
                                continue;   /* main.cf's own listener setting wins */
                        r = conf_store(c, key, o->value, l->options->line, NULL);
                        e = r >= 0 ? strmap_get(c->entries, key) : NULL;
                        if (e && !e->file && !(e->file = strdup(path)))
                                r = -ENOMEM;
                }
        }
        master_inet_plan_done(&p);
        return r;
}

static void conf_validate_all(Conf *c, const MasterCf *master, ConfMessages *m, int *ret) {
        for (size_t i = 0; i < c->n_order; i++) {
                ConfEntry *e = c->order[i];
                const char *base;
                if (!conf_name_valid(e->name, &base))
                        continue;
                const ParamIgnored *ignored = param_lookup(base) ? NULL : param_ignored_lookup(base);
                if (ignored)
                        conf_messages_add(m, "%s:%u: %s: ignored, no meaning here: %s", c->path, e->line, e->name,
                                          ignored->replaced_by);
                else if (!param_lookup(base) && !(base == e->name && conf_is_referenced(c, e->name)) &&
                         !(base == e->name && master_cf_transport_param(master, e->name)))
                        conf_messages_add(m, "%s:%u: %s: unknown parameter", c->path, e->line, e->name);
                _cleanup_free_ char *reason = NULL;
                int r = conf_check_entry(c, e->name, &reason);
                if (r < 0) {
                        conf_messages_add(m, "%s:%u: %s: %s", e->file ? e->file : c->path, e->line, e->name,
                                          reason ? reason : strerror(-r));
                        *ret = -EINVAL;
                }
        }
        conf_postscreen_proxy_unused(c, master, m);
        conf_compat_report(c, m, ret);
        /* Defaults can reference explicit settings ($myhostname in smtpd_banner, ...); when an
         * explicit setting is already wrong, its knock-on effects would only add noise. */
        if (*ret < 0)
                return;
        for (size_t i = 0; i < param_table_size; i++) {
                const char *name = param_table[i].name;
                if (strmap_get(c->entries, name))
                        continue;
                _cleanup_free_ char *reason = NULL;
                if (conf_check_entry(c, name, &reason) < 0) {
                        conf_messages_add(m, "%s: %s: default value: %s", c->path, name, reason ? reason : "invalid");
                        *ret = -EINVAL;
                }
        }
}

/* Values that name Postfix's own installation, as Postfix's stock main.cf and Debian's set them:
 * Postfix's queue directory (whose files Postern cannot read, and which is not the postern
 * user's) and Postfix's user. They are dropped with a note, so an unchanged Postfix main.cf runs
 * Postern with its own queue and user; posternctl import leaves them out for the same reason. */
static void conf_drop_postfix_installation(Conf *c, ConfMessages *m) {
        static const struct {
                const char *name, *value, *why;
        } install[] = {
                { "queue_directory", "/var/spool/postfix", "Postfix's queue, not Postern's: the queue stays in " },
                { "mail_owner", "postfix", "Postfix's user: Postern's daemons and queue belong to " },
        };
        for (size_t i = 0; i < ELEMENTSOF(install); i++) {
                ConfEntry *e = strmap_get(c->entries, install[i].name);
                if (!e || !streq(e->raw, install[i].value))
                        continue;
                conf_messages_add(m, "%s:%u: %s = %s: ignored, %s%s", c->path, e->line, e->name, e->raw, install[i].why,
                                  conf_computed_default(c, e->name) ? conf_computed_default(c, e->name) :
                                  param_default(param_lookup(e->name)));
                conf_remove_entry(c, e);
        }
}

/* Reads and validates a main.cf; keep_invalid hands the Conf out also when a value is invalid. */
static int conf_load_internal(const char *path, bool keep_invalid, Conf **ret, char ***ret_messages) {
        _cleanup_conf_free_ Conf *c = NULL;
        ConfMessages m = {};
        int r = conf_new_at(path, &c);
        if (r < 0)
                return r;

        _cleanup_fclose_ FILE *f = fopen(c->path, "re");
        if (!f && errno != ENOENT) {
                r = -errno;
                conf_messages_add(&m, "%s: cannot open: %s", c->path, strerror(-r));
                goto finish;
        }
        if (f) {
                r = conf_read_file(c, f, &m);
                if (r == -ENOMEM)
                        goto finish;
        }
        if (!keep_invalid)
                conf_drop_postfix_installation(c, &m);
        MasterCf master = {};
        conf_master_load(c, &master);
        /* a report judges master.cf's -o options itself (posternctl-postfix.c), one by one */
        int q = keep_invalid ? 0 : conf_master_overrides(c, &master, &m);
        if (q < 0)
                r = q;
        else
                conf_validate_all(c, &master, &m, &r);
        master_cf_done(&master);
        strmap_clear(c->cache);   /* drop expansions of values that failed */

finish:
        if (m.oom && r >= 0)
                r = -ENOMEM;
        if (ret_messages)
                *ret_messages = conf_messages_steal(&m);
        else
                strv_free(m.v);
        if (r < 0 && !(keep_invalid && r == -EINVAL))
                return r;
        *ret = TAKE_PTR(c);
        return r < 0 ? r : 0;
}

/* Reads and validates a main.cf. */
int conf_load(const char *path, Conf **ret, char ***ret_messages) {
        return conf_load_internal(path, false, ret, ret_messages);
}

/* The same, keeping what was read when a value is invalid (for reports). */
int conf_load_report(const char *path, Conf **ret, char ***ret_messages) {
        return conf_load_internal(path, true, ret, ret_messages);
}

/* The line of main.cf that set name, 0 when it was not set there. */
unsigned conf_get_line(Conf *c, const char *name) {
        ConfEntry *e = strmap_get(c->entries, name);
        return e ? e->line : 0;
}

/* ---- editing ------------------------------------------------------------------------------ */

/* Whether a physical line starts the logical line "name = ...". */
static bool conf_line_sets(const char *line, const char *name) {
        size_t l = strlen(name);
        if (strncmp(line, name, l) != 0)
                return false;
        const char *s = line + l;
        while (*s == ' ' || *s == '\t')
                s++;
        return *s == '=';
}

static bool conf_line_continues(const char *line) {
        if (line[0] != ' ' && line[0] != '\t')
                return false;
        const char *s = line + strspn(line, " \t\r\n\f\v");
        return *s != '\0';
}

/* Rewrites main.cf: CONF_EDIT_SET puts name = value where name was set (or at the end),
 * CONF_EDIT_COMMENT turns the setting (with its continuation lines) into "#" lines,
 * CONF_EDIT_REMOVE drops it; everything else is kept as it is. */
int conf_edit_file_op(const char *path, const char *name, const char *value, ConfEditOp op) {
        if (!path || !name || !conf_name_valid(name, NULL) ||
            (op == CONF_EDIT_SET && (!value || strpbrk(value, "\n\r"))))
                return -EINVAL;

        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        struct stat st = { .st_mode = 0644 };
        bool found = false, skipping = false, exists = false;
        int r;

        _cleanup_free_ char *trimmed_value = strdup(value ? value : "");
        if (!trimmed_value)
                return -ENOMEM;
        const char *v = strstrip(trimmed_value);

        /* Edit the file a symlink points to rather than replacing the link. */
        _cleanup_free_ char *real = realpath(path, NULL);
        if (real)
                path = real;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f && (errno != ENOENT || op != CONF_EDIT_SET))
                return -errno;
        if (f) {
                exists = true;
                if (fstat(fileno(f), &st) < 0)
                        return -errno;
                _cleanup_free_ char *buf = NULL;
                size_t bufsz = 0;
                ssize_t n;
                while ((n = getline(&buf, &bufsz, f)) >= 0) {
                        bool setting = conf_line_sets(buf, name);
                        if (!setting && skipping && conf_line_continues(buf)) {
                                if (op == CONF_EDIT_COMMENT && ((r = strbuf_putc(&out, '#')) < 0 ||
                                                                (r = strbuf_append(&out, buf, (size_t) n)) < 0))
                                        return r;
                                continue;
                        }
                        skipping = setting;
                        if (setting && op == CONF_EDIT_SET) {
                                if (found)
                                        continue;   /* a later duplicate would win: drop it */
                                r = strbuf_printf(&out, "%s = %s\n", name, v);
                        } else if (setting && op == CONF_EDIT_COMMENT) {
                                r = strbuf_putc(&out, '#');
                                if (r >= 0)
                                        r = strbuf_append(&out, buf, (size_t) n);
                        } else if (setting)
                                r = 0;      /* CONF_EDIT_REMOVE */
                        else
                                r = strbuf_append(&out, buf, (size_t) n);
                        found = found || setting;
                        if (r < 0)
                                return r;
                }
                if (ferror(f))
                        return -EIO;
        }
        if (!found && op != CONF_EDIT_SET)
                return 0;       /* nothing to comment out or remove */
        if (!found) {
                if (out.len > 0 && out.data[out.len - 1] != '\n' && (r = strbuf_putc(&out, '\n')) < 0)
                        return r;
                if ((r = strbuf_printf(&out, "%s = %s\n", name, v)) < 0)
                        return r;
        }

        bool chown_it = exists && geteuid() == 0;
        return write_file_atomic(path, out.data, out.len, st.st_mode, chown_it ? st.st_uid : (uid_t) -1,
                                 chown_it ? st.st_gid : (gid_t) -1);
}

int conf_edit_file(const char *path, const char *name, const char *value) {
        return conf_edit_file_op(path, name, value, CONF_EDIT_SET);
}
