/* master-cf.c — parsing a Postfix master.cf into classified entries. See master-cf.h. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master-cf.h"
#include "../basic/strbuf.h"

#define MASTER_CF_MAX_BYTES (4 * 1024 * 1024)

/* What Postern has in place of each Postfix internal a master.cf names. */
static const struct {
        const char *command;
        MasterKind kind;
        const char *builtin;
} master_commands[] = {
        { "smtp", MASTER_TRANSPORT, NULL },
        { "lmtp", MASTER_TRANSPORT, NULL },
        { "local", MASTER_TRANSPORT, NULL },
        { "virtual", MASTER_TRANSPORT, NULL },
        { "pipe", MASTER_TRANSPORT, NULL },
        { "discard", MASTER_TRANSPORT, NULL },
        { "error", MASTER_TRANSPORT, NULL },
        { "smtpd", MASTER_LISTENER, NULL },
        { "postscreen", MASTER_LISTENER, NULL },
        { "qmqpd", MASTER_LISTENER, NULL },
        { "pickup", MASTER_BUILTIN, "postern-smtpd's submit socket (postern-sendmail)" },
        { "cleanup", MASTER_BUILTIN, "postern-smtpd (its queueing step)" },
        { "qmgr", MASTER_BUILTIN, "postern-qmgr" },
        { "oqmgr", MASTER_BUILTIN, "postern-qmgr" },
        { "trivial-rewrite", MASTER_BUILTIN, "postern-smtpd and postern-qmgr (address rewriting and routing)" },
        { "bounce", MASTER_BUILTIN, "postern-qmgr (notices)" },
        { "flush", MASTER_BUILTIN, "postern-qmgr (posternctl flush)" },
        { "showq", MASTER_BUILTIN, "posternctl queue" },
        { "proxymap", MASTER_BUILTIN, "each daemon opening its own tables" },
        { "anvil", MASTER_BUILTIN, "postern-anvil" },
        { "scache", MASTER_BUILTIN, "postern-smtp's connection cache" },
        { "tlsmgr", MASTER_BUILTIN, "each daemon's own TLS session cache" },
        { "tlsproxy", MASTER_BUILTIN, "postern-smtpd and postern-smtp" },
        { "dnsblog", MASTER_BUILTIN, "postern-smtpd's DNS client" },
        { "postlogd", MASTER_BUILTIN, "the journal" },
        { "verify", MASTER_BUILTIN, "postern-verify" },
};

const char *const master_param_suffixes[_MASTER_PARAM_MAX] = {
        [MASTER_PARAM_CONCURRENCY_LIMIT] = "_destination_concurrency_limit",
        [MASTER_PARAM_RECIPIENT_LIMIT] = "_destination_recipient_limit",
        [MASTER_PARAM_PROCESS_LIMIT] = "_process_limit",
        [MASTER_PARAM_INITIAL_CONCURRENCY] = "_initial_destination_concurrency",
        [MASTER_PARAM_FAILED_COHORT_LIMIT] = "_destination_concurrency_failed_cohort_limit",
        [MASTER_PARAM_POSITIVE_FEEDBACK] = "_destination_concurrency_positive_feedback",
        [MASTER_PARAM_NEGATIVE_FEEDBACK] = "_destination_concurrency_negative_feedback",
        [MASTER_PARAM_RATE_DELAY] = "_destination_rate_delay",
        [MASTER_PARAM_TIME_LIMIT] = "_time_limit",
};

const char *master_kind_name(MasterKind k) {
        switch (k) {
        case MASTER_TRANSPORT: return "transport";
        case MASTER_BUILTIN: return "built in";
        case MASTER_LISTENER: return "listener";
        default: return "unknown";
        }
}

static void entry_done(MasterEntry *e) {
        free(e->service);
        free(e->type);
        free(e->command);
        for (size_t i = 0; i < ELEMENTSOF(e->fields); i++)
                free(e->fields[i]);
        for (size_t i = 0; i < e->n_options; i++) {
                free(e->options[i].name);
                free(e->options[i].value);
        }
        free(e->options);
        strv_free(e->args);
}

void master_cf_done(MasterCf *m) {
        for (size_t i = 0; i < m->n; i++)
                entry_done(&m->entries[i]);
        free(m->entries);
        *m = (MasterCf) {};
}

static int fail(char **ret_error, const char *name, unsigned line, const char *fmt, ...) _printf_(4, 5);
static int fail(char **ret_error, const char *name, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&what, fmt, ap);
        va_end(ap);
        if (r < 0 || asprintf(ret_error, "%s:%u: %s", name, line, what) < 0)
                *ret_error = NULL;
        return -EINVAL;
}

static char *trimmed(const char *p, size_t n) {
        while (n > 0 && isspace((unsigned char) *p))
                p++, n--;
        while (n > 0 && isspace((unsigned char) p[n - 1]))
                n--;
        return strndup(p, n);
}

/* Appends s (taken) to the NULL-terminated *v of *n strings. */
static int strv_push(char ***v, size_t *n, char *s) {
        char **w = realloc(*v, (*n + 2) * sizeof(char *));
        if (!w)
                return -ENOMEM;
        w[(*n)++] = s;
        w[*n] = NULL;
        *v = w;
        return 0;
}

/* Splits an entry's text into tokens; "{ ... }" is one token (its content, trimmed). */
static int tokenize(const char *s, char ***ret, const char **ret_what) {
        _cleanup_strv_free_ char **v = NULL;
        size_t n = 0;

        for (;;) {
                while (isspace((unsigned char) *s))
                        s++;
                if (!*s)
                        break;
                const char *start = s;
                char *tok;
                if (*s == '{') {
                        unsigned depth = 0;
                        for (; *s; s++) {
                                if (*s == '{')
                                        depth++;
                                else if (*s == '}' && --depth == 0)
                                        break;
                        }
                        if (!*s) {
                                *ret_what = "a \"{\" without its \"}\"";
                                return -EINVAL;
                        }
                        s++;
                        if (*s && !isspace((unsigned char) *s)) {
                                *ret_what = "text right after a \"}\"";
                                return -EINVAL;
                        }
                        tok = trimmed(start + 1, (size_t) (s - start) - 2);
                } else {
                        while (*s && !isspace((unsigned char) *s))
                                s++;
                        tok = strndup(start, (size_t) (s - start));
                }
                if (!tok || strv_push(&v, &n, tok) < 0) {
                        free(tok);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(v);
        return 0;
}

static bool valid_flag(const char *f) {
        return streq(f, "y") || streq(f, "n") || streq(f, "-");
}

static bool valid_wakeup(const char *w) {
        if (streq(w, "-"))
                return true;
        size_t d = strspn(w, "0123456789");
        return d > 0 && (w[d] == '\0' || (w[d] == '?' && w[d + 1] == '\0'));
}

static int add_option(MasterEntry *e, const char *spec) {
        const char *eq = strchr(spec, '=');
        if (!eq || eq == spec)
                return -EINVAL;
        MasterOption *o = realloc(e->options, (e->n_options + 1) * sizeof(MasterOption));
        if (!o)
                return -ENOMEM;
        e->options = o;
        o[e->n_options] = (MasterOption) { trimmed(spec, (size_t) (eq - spec)), trimmed(eq + 1, strlen(eq + 1)) };
        if (!o[e->n_options].name || !o[e->n_options].value) {
                free(o[e->n_options].name);
                free(o[e->n_options].value);
                return -ENOMEM;
        }
        if (isempty(o[e->n_options].name) || strpbrk(o[e->n_options].name, " \t")) {
                free(o[e->n_options].name);
                free(o[e->n_options].value);
                return -EINVAL;
        }
        e->n_options++;
        return 0;
}

static void classify(MasterEntry *e) {
        e->kind = MASTER_UNKNOWN;
        for (size_t i = 0; i < ELEMENTSOF(master_commands); i++)
                if (streq(e->command, master_commands[i].command)) {
                        e->kind = master_commands[i].kind;
                        e->builtin = master_commands[i].builtin;
                        break;
                }
        /* Only unix entries define transports; anything else listening is a listener. */
        if (e->kind == MASTER_TRANSPORT && !streq(e->type, "unix"))
                e->kind = MASTER_UNKNOWN;
        if (!streq(e->type, "unix") && e->kind != MASTER_UNKNOWN)
                e->kind = MASTER_LISTENER;
}

/* One entry from its joined text (first line number line). */
static int parse_entry(const char *text, const char *name, unsigned line, MasterCf *m, char **ret_error) {
        _cleanup_strv_free_ char **tok = NULL;
        const char *what = NULL;
        int r = tokenize(text, &tok, &what);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(ret_error, name, line, "%s", what);
        size_t n = 0;
        while (tok[n])
                n++;
        if (n < 8)
                return fail(ret_error, name, line, "expected at least 8 fields (service, type, private, "
                            "unpriv, chroot, wakeup, maxproc, command), found %zu", n);
        static const char *const types[] = { "inet", "unix", "unix-dgram", "fifo", "pass" };
        bool known = false;
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                known = known || streq(tok[1], types[i]);
        if (!known)
                return fail(ret_error, name, line, "%s: unknown service type \"%s\" (expected inet, unix, "
                            "unix-dgram, fifo or pass)", tok[0], tok[1]);
        static const char *const flags[] = { "private", "unpriv", "chroot" };
        for (size_t i = 0; i < 3; i++)
                if (!valid_flag(tok[2 + i]))
                        return fail(ret_error, name, line, "%s: %s field \"%s\" is not y, n or -", tok[0],
                                    flags[i], tok[2 + i]);
        if (!valid_wakeup(tok[5]))
                return fail(ret_error, name, line, "%s: wakeup field \"%s\" is not a number of seconds, N? or -",
                            tok[0], tok[5]);
        int maxproc = -1;
        if (!streq(tok[6], "-")) {
                char *end = NULL;
                errno = 0;
                long v = strtol(tok[6], &end, 10);
                if (errno || !end || *end || v < 0 || v > 1000000 || !isdigit((unsigned char) tok[6][0]))
                        return fail(ret_error, name, line, "%s: maxproc field \"%s\" is not a number or -",
                                    tok[0], tok[6]);
                maxproc = (int) v;
        }
        for (size_t i = 0; i < m->n; i++)
                if (streq(m->entries[i].service, tok[0]) && streq(m->entries[i].type, tok[1]))
                        return fail(ret_error, name, line, "%s/%s: defined again (first at line %u)", tok[0],
                                    tok[1], m->entries[i].line);

        MasterEntry e = { .line = line, .maxproc = maxproc };
        size_t n_args = 0;
        e.service = strdup(tok[0]);
        e.type = strdup(tok[1]);
        e.command = strdup(tok[7]);
        r = e.service && e.type && e.command ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(e.fields); i++)
                if (!(e.fields[i] = strdup(tok[2 + i])))
                        r = -ENOMEM;
        /* The command's options come first, as getopt reads them: from its first other argument
         * on (pipe's "argv=... -oi"), everything is an argument. */
        bool options = true;
        for (size_t i = 8; r >= 0 && i < n; i++) {
                const char *spec = NULL;
                options = options && tok[i][0] == '-';
                if (!options)
                        ;
                else if (streq(tok[i], "-o")) {
                        if (i + 1 == n) {
                                r = fail(ret_error, name, line, "%s: -o without name=value", tok[0]);
                                break;
                        }
                        spec = tok[++i];
                } else if (startswith(tok[i], "-o"))
                        spec = tok[i] + 2;
                if (spec) {
                        r = add_option(&e, spec);
                        if (r == -EINVAL)
                                r = fail(ret_error, name, line, "%s: -o \"%s\" is not name=value", tok[0], spec);
                        continue;
                }
                char *a = strdup(tok[i]);
                if (!a || strv_push(&e.args, &n_args, a) < 0) {
                        free(a);
                        r = -ENOMEM;
                }
        }
        MasterEntry *grown = r >= 0 ? realloc(m->entries, (m->n + 1) * sizeof(MasterEntry)) : NULL;
        if (r >= 0 && !grown)
                r = -ENOMEM;
        if (r < 0) {
                entry_done(&e);
                return r;
        }
        classify(&e);
        m->entries = grown;
        m->entries[m->n++] = e;
        return 0;
}

int master_cf_parse(const char *text, const char *name, MasterCf *ret, char **ret_error) {
        MasterCf m = {};
        StrBuf entry = {};
        unsigned line = 0, entry_line = 0;
        int r = 0;

        *ret_error = NULL;
        for (const char *p = text; r >= 0 && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                line++;
                size_t k = 0;
                while (k < len && isspace((unsigned char) p[k]))
                        k++;
                bool blank = k == len, comment = !blank && p[k] == '#';
                if (!blank && !comment) {
                        if (k > 0) {
                                /* continues the entry above */
                                if (entry_line == 0)
                                        r = fail(ret_error, name, line, "a continuation line (it starts with "
                                                 "white space) with no entry before it");
                                else if (strbuf_append(&entry, " ", 1) < 0 || strbuf_append(&entry, p, len) < 0)
                                        r = -ENOMEM;
                        } else {
                                if (entry_line > 0)
                                        r = parse_entry(entry.data, name, entry_line, &m, ret_error);
                                strbuf_reset(&entry);
                                entry_line = line;
                                if (r >= 0 && strbuf_append(&entry, p, len) < 0)
                                        r = -ENOMEM;
                        }
                }
                p += len + (nl ? 1 : 0);
        }
        if (r >= 0 && entry_line > 0)
                r = parse_entry(entry.data, name, entry_line, &m, ret_error);
        strbuf_done(&entry);
        if (r < 0) {
                master_cf_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int master_cf_load(const char *path, MasterCf *ret, char **ret_error) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        StrBuf text = {};
        char buf[8192];
        size_t k;
        int r = 0;

        *ret_error = NULL;
        if (!f) {
                r = -errno;
                if (r != -ENOENT && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        while (r >= 0 && (k = fread(buf, 1, sizeof buf, f)) > 0) {
                if (text.len + k > MASTER_CF_MAX_BYTES)
                        r = fail(ret_error, path, 0, "larger than %d bytes", MASTER_CF_MAX_BYTES);
                else if (strbuf_append(&text, buf, k) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && ferror(f))
                r = fail(ret_error, path, 0, "read error");
        if (r >= 0)
                r = master_cf_parse(text.data ? text.data : "", path, ret, ret_error);
        strbuf_done(&text);
        return r;
}

const MasterEntry *master_cf_transport(const MasterCf *m, const char *service) {
        for (size_t i = 0; i < m->n; i++)
                if (m->entries[i].kind == MASTER_TRANSPORT && streq(m->entries[i].service, service))
                        return &m->entries[i];
        return NULL;
}

const char *master_entry_option(const MasterEntry *e, const char *name) {
        const char *v = NULL;
        for (size_t i = 0; i < e->n_options; i++)
                if (streq(e->options[i].name, name))
                        v = e->options[i].value;
        return v;
}

bool master_cf_transport_param(const MasterCf *m, const char *name) {
        size_t len = strlen(name);
        for (size_t i = 0; i < _MASTER_PARAM_MAX; i++) {
                size_t sl = strlen(master_param_suffixes[i]);
                if (len <= sl || strcmp(name + len - sl, master_param_suffixes[i]) != 0)
                        continue;
                for (size_t k = 0; k < m->n; k++) {
                        const MasterEntry *e = &m->entries[k];
                        if (e->kind == MASTER_TRANSPORT && strlen(e->service) == len - sl &&
                            strncmp(e->service, name, len - sl) == 0)
                                return true;
                }
        }
        return false;
}
