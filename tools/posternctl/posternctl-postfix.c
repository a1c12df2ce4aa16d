/* posternctl-postfix.c — the report behind `posternctl check --postfix DIR` and `posternctl
 * import DIR`: what Postern does with each main.cf parameter, each master.cf entry and each of its
 * -o options (see posternctl-postfix.h). It judges with Postern's own code, never a parser of its
 * own: main.cf is read by conf_load_report() (common/conf/conf.c) whose messages name the unknown
 * parameters, invalid values and compatibility_level notes; the registry (params.c) and the list
 * of parameters with no meaning here (params-postfix.c) say what each name is; every "type:name"
 * of a Postfix lookup table type in a value is opened with table_open(), and a type Postern lacks
 * (mongodb:, memcache:, ...) is "not supported" with the opener's reason; master.cf is read by
 * master_cf_load() and its entries judged by their classification (master-cf.c) and, for pipe(8)
 * entries, by master-pipe.c.
 *
 * Listeners are judged by the classification postern-generator uses (common/conf/master-inet.c):
 * an inet smtpd entry becomes a shipped socket or one of its own, its -o options the listener
 * settings "<fd name>/<parameter>" (as conf_load() applies them), and what the generator cannot
 * express is "not supported" with its reason. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/master-cf.h"
#include "conf/master-inet.h"
#include "conf/master-pipe.h"
#include "conf/params.h"
#include "conf/table.h"
#include "posternctl-postfix.h"
#include "smtp.h"

/* How the detail of a listener's -o option that maps to a main.cf setting begins. */
#define LISTENER_SETTING "main.cf's "

/* Each verdict's name in --json and its title in the grouped text report. */
static const char *const verdict_names[_POSTFIX_VERDICT_MAX][2] = {
        [POSTFIX_SAME] = { "same", "same meaning" },
        [POSTFIX_MAPPED] = { "mapped", "mapped" },
        [POSTFIX_INFO] = { "info", "informational" },
        [POSTFIX_LEFT_OUT] = { "left-out", "left out (Postfix's own installation)" },
        [POSTFIX_UNSUPPORTED] = { "unsupported", "not supported" },
        [POSTFIX_UNKNOWN] = { "unknown", "unknown" },
        [POSTFIX_ERROR] = { "error", "errors" },
};

const char *postfix_verdict_name(PostfixVerdict v) {
        return v < _POSTFIX_VERDICT_MAX ? verdict_names[v][0] : "?";
}

const char *postfix_verdict_title(PostfixVerdict v) {
        return v < _POSTFIX_VERDICT_MAX ? verdict_names[v][1] : "?";
}

bool postfix_verdict_dropped(PostfixVerdict v) {
        return v == POSTFIX_LEFT_OUT || v == POSTFIX_UNSUPPORTED || v == POSTFIX_UNKNOWN;
}

void postfix_report_done(PostfixReport *r) {
        for (size_t i = 0; i < r->n; i++) {
                free(r->items[i].name);
                free(r->items[i].detail);
                free(r->items[i].setting);
        }
        free(r->items);
        free(r->dir);
        *r = (PostfixReport) {};
}

/* Appends an item; name and detail are printf'd by the caller and taken here (NULL detail ok). */
static int add(PostfixReport *r, const char *file, unsigned line, char *name, PostfixVerdict v, char *detail) {
        if (!name) {
                free(detail);
                return -ENOMEM;
        }
        PostfixItem *n = realloc(r->items, (r->n + 1) * sizeof(PostfixItem));
        if (!n) {
                free(name);
                free(detail);
                return -ENOMEM;
        }
        r->items = n;
        r->items[r->n++] = (PostfixItem) { file, line, name, v, detail, false, NULL };
        return 0;
}

static char *fmt(const char *f, ...) _printf_(1, 2);
static char *fmt(const char *f, ...) {
        va_list ap;
        char *s = NULL;
        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* ---- main.cf ------------------------------------------------------------------------------ */

/* Postfix's lookup table types: a list entry "type:..." with one of these is a table. */
static bool postfix_table_type(const char *entry) {
        static const char *const types[] = {
                "btree", "cdb", "cidr", "dbm", "environ", "fail", "hash", "inline", "internal", "ldap",
                "lmdb", "memcache", "mongodb", "mysql", "netinfo", "nis", "nisplus", "pcre", "pgsql",
                "pipemap", "proxy", "randmap", "regexp", "sdbm", "socketmap", "sqlite", "static", "tcp",
                "texthash", "unionmap",
        };
        const char *colon = strchr(entry, ':');
        if (!colon)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (strlen(types[i]) == (size_t) (colon - entry) && strncmp(entry, types[i], colon - entry) == 0)
                        return true;
        return false;
}

/* The first table in name's value that cannot be opened: *ret_verdict UNSUPPORTED for a table
 * type Postern lacks, ERROR for one that fails here (a missing file); 0 when all open. */
static int judge_tables(Conf *c, const char *listener, const char *base, PostfixVerdict *ret_verdict, char **ret_why) {
        _cleanup_strv_free_ char **entries = conf_get_list(c, listener, base);
        if (!entries)
                return -ENOMEM;
        for (char **e = entries; *e; e++) {
                if (!postfix_table_type(*e))
                        continue;
                _cleanup_(table_freep) Table *t = NULL;
                _cleanup_free_ char *why = NULL;
                int r = table_open(*e, streq(base, "alias_maps") ? TABLE_ALIASES : 0, &t, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *ret_verdict = r == -EPROTONOSUPPORT ? POSTFIX_UNSUPPORTED : POSTFIX_ERROR;
                        *ret_why = why ? TAKE_PTR(why) : fmt("%s: %s", *e, strerror(-r));
                        return *ret_why ? 1 : -ENOMEM;
                }
        }
        return 0;
}

/* conf_load's message about line, with "<path>:<line>: <name>: " removed (caller frees), NULL
 * when none. The message is marked used (emptied): what is left is reported on its own. */
static char *line_message(char **msgs, const char *path, unsigned line, const char *name) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, ":%u: ", line);
        for (char **m = msgs; m && *m; m++) {
                const char *p = startswith(*m, path);
                p = p ? startswith(p, prefix) : NULL;
                p = p ? startswith(p, name) : NULL;
                if (!p || !startswith(p, ": ") || strstr(p, ": overrides the setting at line"))
                        continue;
                char *s = strdup(p + 2);
                if (s)
                        (*m)[0] = '\0';
                return s;
        }
        return NULL;
}

/* Registry parameters that Postern reads and does not act on say so in their description. */
static bool described_unused(const ParamDef *p) {
        return strstr(p->description, "not used") || startswith(p->description, "Accepted and ignored: ");
}

static char *unused_detail(const ParamDef *p) {
        const char *why = startswith(p->description, "Accepted and ignored: ");
        return fmt("accepted, not acted on: %s", why ? why : p->description);
}

/* Main.cf values that name Postfix's own installation and must not become Postern's. */
static const char *left_out_reason(const char *base) {
        if (streq(base, "queue_directory"))
                return "Postern keeps its queue database (queue.db) in this directory, not Postfix's queue files; "
                       "import leaves it out so Postern's own (/var/spool/postern, the units' ReadWritePaths=) applies";
        if (streq(base, "mail_owner"))
                return "Postern's queue and daemons belong to the postern user; import leaves it out";
        return NULL;
}

/* A parameter setting (main.cf's, or an -o option with listener set): its verdict and detail. */
static PostfixVerdict judge_param(Conf *c, const char *listener, const char *base, const MasterCf *m,
                                  char **ret_detail) {
        const ParamDef *p = param_lookup(base);
        if (!p) {
                const ParamIgnored *ig = param_ignored_lookup(base);
                if (ig)
                        return *ret_detail = fmt("no meaning here: %s", ig->replaced_by), POSTFIX_INFO;
                if (!listener && master_cf_transport_param(m, base))
                        return *ret_detail = strdup("a per-transport setting of a master.cf transport, used as in Postfix"),
                               POSTFIX_MAPPED;
                return *ret_detail = strdup("Postern has no parameter of this name"), POSTFIX_UNKNOWN;
        }
        if (streq(base, "address_verify_map") || streq(base, "postscreen_cache_map")) {
                /* the caches are SQLite: Postfix's btree:/hash:/lmdb: maps become a file of the queue directory */
                const char *val = strempty(conf_get_listener(c, listener, base));
                bool verify = streq(base, "address_verify_map");
                if (*val && val[0] != '/' && !startswith(val, "sqlite:"))
                        return *ret_detail = strdup(verify ? "postern-verify keeps its cache in SQLite, "
                                                             "$queue_directory/verify.db" :
                                                    "postern-smtpd keeps the screening cache in SQLite, "
                                                    "$queue_directory/postscreen_cache.db"), POSTFIX_MAPPED;
        }
        PostfixVerdict v = POSTFIX_ERROR;
        char *why = NULL;
        int r = judge_tables(c, listener, base, &v, &why);
        if (r < 0)
                return *ret_detail = NULL, POSTFIX_ERROR;
        if (r > 0)
                return *ret_detail = why, v;
        if (streq(base, "compatibility_level"))
                return *ret_detail = strdup("Postern's defaults are level 3.6's; a lower level keeps the older "
                                            "defaults of the parameters Postern has (a note below says which, when any)"), POSTFIX_INFO;
        const char *not_yet = startswith(p->description, "Accepted and ignored: not supported yet: ");
        if (not_yet)   /* a feature Postern lacks (postscreen's DNSBL, deep protocol tests, ...) */
                return *ret_detail = fmt("not supported yet: %s", not_yet), POSTFIX_UNSUPPORTED;
        if (described_unused(p))
                return *ret_detail = unused_detail(p), POSTFIX_INFO;
        if (!listener && left_out_reason(base))
                return *ret_detail = strdup(left_out_reason(base)), POSTFIX_LEFT_OUT;
        if (listener)
                return *ret_detail = fmt(LISTENER_SETTING "%s/%s", listener, base), POSTFIX_MAPPED;
        return *ret_detail = NULL, POSTFIX_SAME;
}

/* Whether text mentions $name, ${name or $(name. */
static bool text_references(const char *text, const char *name) {
        size_t l = strlen(name);
        for (const char *s = strchr(text, '$'); s; s = strchr(s + 1, '$')) {
                const char *n = s + 1 + (s[1] == '{' || s[1] == '(');
                if (strncmp(n, name, l) == 0 && !(isalnum((unsigned char) n[l]) || n[l] == '_'))
                        return true;
        }
        return false;
}

typedef struct RefCtx {
        const char *name;
        bool found;
} RefCtx;

static void find_reference(const char *name, const char *raw, void *userdata) {
        RefCtx *x = userdata;
        const char *slash = strchr(name, '/');
        if (param_lookup(slash ? slash + 1 : name) && text_references(raw, x->name))
                x->found = true;
}

/* Whether a parameter Postern has (in main.cf or a master.cf -o option) uses $name: then name is
 * the admin's own; a name only other unknown parameters use is a Postfix parameter Postern lacks. */
static bool used_by_known(Conf *c, const MasterCf *m, const char *name) {
        RefCtx x = { name, false };
        conf_foreach_explicit(c, find_reference, &x);
        for (size_t i = 0; i < m->n && !x.found; i++)
                for (size_t k = 0; k < m->entries[i].n_options; k++)
                        if (param_lookup(m->entries[i].options[k].name) &&
                            text_references(m->entries[i].options[k].value, name))
                                x.found = true;
        return x.found;
}

typedef struct MainCtx {
        PostfixReport *r;
        Conf *c;
        const MasterCf *m;
        char **msgs;
        const char *path;
        int error;
} MainCtx;

static void judge_main_entry(const char *name, const char *raw, void *userdata) {
        MainCtx *x = userdata;
        if (x->error < 0)
                return;
        unsigned line = conf_get_line(x->c, name);
        const char *slash = strchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        _cleanup_free_ char *listener = slash ? strndup(name, slash - name) : NULL;
        _cleanup_free_ char *msg = line_message(x->msgs, x->path, line, name);
        char *detail = NULL;
        PostfixVerdict v;

        if (msg && strstr(msg, "unknown parameter") && !slash && used_by_known(x->c, x->m, name)) {
                v = POSTFIX_INFO;   /* used by a master.cf -o option, which conf_load does not read */
                detail = strdup("a name of your own: Postern has no such parameter, and settings use it as $name");
        } else if (msg && strstr(msg, "unknown parameter")) {
                v = POSTFIX_UNKNOWN;
                detail = strdup("Postern has no parameter of this name");
        } else if (msg && (strstr(msg, ": cannot read ") || strstr(msg, ": cannot open"))) {
                v = POSTFIX_ERROR;   /* a file the value names is missing here (myorigin = /etc/mailname) */
                detail = TAKE_PTR(msg);
        } else if (msg && !startswith(msg, "ignored, no meaning here") &&
                   !startswith(msg, "compatibility_level")) {
                /* an invalid value: Postfix takes it, Postern does not */
                v = POSTFIX_UNSUPPORTED;
                detail = TAKE_PTR(msg);
        } else if (!param_lookup(base) && !param_ignored_lookup(base) && !(slash == NULL &&
                   master_cf_transport_param(x->m, base))) {
                /* conf_load said nothing: a name used as $name */
                bool own = used_by_known(x->c, x->m, name);
                v = own ? POSTFIX_INFO : POSTFIX_UNKNOWN;
                detail = strdup(own ? "a name of your own: Postern has no such parameter, and settings use it as $name" :
                                "Postern has no parameter of this name (only other unknown parameters use it as $name)");
        } else if (!slash && streq(base, "myorigin") && raw[0] == '/') {
                /* Debian's "myorigin = /etc/mailname": the file's first line is the domain (a file
                 * that cannot be read is conf_load()'s "cannot read" message, above) */
                v = POSTFIX_SAME;
                detail = fmt("read from %s: %s", raw, conf_get(x->c, "myorigin"));
        } else
                v = judge_param(x->c, listener, base, x->m, &detail);
        x->error = add(x->r, "main.cf", line, strdup(name), v, detail);
}

/* Messages conf_load tied to no judged setting (compatibility_level notes, a setting made twice,
 * a name Postern cannot read): notes, or "not supported" for a name it refuses. */
static int main_leftover_messages(PostfixReport *r, char **msgs, const char *path) {
        for (char **m = msgs; m && *m; m++) {
                if (!**m)
                        continue;
                const char *p = startswith(*m, path);
                unsigned line = 0;
                int off = 0;
                if (p && sscanf(p, ":%u: %n", &line, &off) >= 1 && off > 0)
                        p += off;
                else
                        p = p && startswith(p, ": ") ? p + 2 : *m;
                const char *sep = strstr(p, ": ");
                _cleanup_free_ char *name = sep ? strndup(p, sep - p) : strdup("main.cf");
                if (!name)
                        return -ENOMEM;
                name[strcspn(name, " ")] = '\0';   /* "compatibility_level = 2" */
                PostfixVerdict v = POSTFIX_INFO;
                if (strstr(p, ": invalid parameter name")) {
                        v = POSTFIX_UNSUPPORTED;
                        /* "\"name\"": the quotes go */
                        if (name[0] == '"' && strlen(name) > 2) {
                                memmove(name, name + 1, strlen(name));
                                name[strlen(name) - 1] = '\0';
                        }
                } else if (!strstr(p, "overrides the setting") && !strstr(p, "compatibility_level"))
                        v = POSTFIX_ERROR;
                int e = add(r, "main.cf", line, TAKE_PTR(name), v, strdup(sep ? sep + 2 : p));
                if (e < 0)
                        return e;
        }
        return 0;
}

/* ---- master.cf ---------------------------------------------------------------------------- */

bool postfix_master_smtp_transport(const MasterEntry *e) {
        return e->kind == MASTER_TRANSPORT && (streq(e->command, "smtp") || streq(e->command, "lmtp"));
}

/* What postern-smtp said of option o of smtp/lmtp entry e when it loaded its transports
 * (smtp_config_load()'s messages): *ret_verdict and the text to show; NULL when it applies it. */
static char *smtp_option_note(const PostfixSmtpNotes *n, const MasterEntry *e, const MasterOption *o,
                              PostfixVerdict *ret_verdict) {
        _cleanup_free_ char *warn = fmt(":%u: %s: not supported: -o %s on %s (", e->line, e->service, o->name, e->service);
        _cleanup_free_ char *err = fmt(":%u: %s: -o %s=", e->line, e->service, o->name);
        if (!warn || !err)
                return NULL;
        for (char **w = n->warnings; w && *w; w++) {
                const char *p = strstr(*w, warn);
                if (p) {
                        p += strlen(warn);
                        *ret_verdict = POSTFIX_UNSUPPORTED;
                        return strndup(p, strlen(p) - (strlen(p) > 0 && p[strlen(p) - 1] == ')'));
                }
        }
        for (char **x = n->errors; x && *x; x++) {
                const char *p = strstr(*x, err);
                if (p && (p = strstr(p + strlen(err), ": "))) {
                        *ret_verdict = POSTFIX_UNSUPPORTED;
                        return fmt("%s; mail for that transport is deferred (4.3.5)", p + 2);
                }
        }
        return NULL;
}

/* The shared classification of master.cf's listeners (common/conf/master-inet.c, as
 * postern-generator makes them): the one for e, or NULL when e is no listener. *plan is filled on
 * the first call (caller frees). */
static const MasterInet *listener_of(const MasterEntry *e, Conf *c, const MasterCf *m, MasterInetPlan *plan) {
        if (!plan->v) {
                _cleanup_strv_free_ char **interfaces = conf_get_list(c, NULL, "inet_interfaces");
                if (!interfaces || master_inet_plan(m, interfaces, conf_get(c, "inet_protocols"), plan) < 0)
                        return NULL;
        }
        for (size_t i = 0; i < plan->n; i++)
                if (plan->v[i].entry == e)
                        return &plan->v[i];
        return NULL;
}

int postfix_master_judge(const MasterEntry *e, Conf *c, const MasterCf *m, const PostfixSmtpNotes *smtp,
                         PostfixMasterFn fn, void *userdata) {
        _cleanup_free_ char *detail = NULL;
        const char *unit = NULL, *fdname = NULL;
        PostfixVerdict v;
        bool options_mapped = false;
        _cleanup_(master_inet_plan_done) MasterInetPlan plan = {};
        const MasterInet *l = NULL;
        int r;

        if (e->builtin) {   /* also a fifo or unix-dgram one (older master.cf: pickup, qmgr on fifo) */
                v = POSTFIX_MAPPED;
                detail = fmt("built in: %s", e->builtin);
        } else if (e->kind == MASTER_TRANSPORT && streq(e->command, "pipe")) {
                /* postern-local's pipe socket runs these (daemons/local/README.md) */
                PipeSpec p = {};
                _cleanup_free_ char *why = NULL;
                r = pipe_spec_parse(e, &p, &why);
                pipe_spec_done(&p);
                if (r == -ENOMEM)
                        return r;
                v = r < 0 ? POSTFIX_ERROR : POSTFIX_MAPPED;
                detail = r < 0 ? fmt("%s", why ? why : strerror(-r)) :
                         strdup("a pipe(8) transport: delivered by postern-local's pipe socket (postern-pipe.socket)");
        } else if (postfix_master_smtp_transport(e)) {
                v = POSTFIX_SAME;
                detail = fmt("a transport of postern-smtp, with its -o overrides and maxproc (daemons/smtp/README.md)");
        } else if (e->kind == MASTER_TRANSPORT) {
                v = POSTFIX_SAME;   /* local, virtual, error, discard under any name */
                detail = fmt("Postern's own %s transport", e->command);
        } else if (e->kind == MASTER_UNKNOWN) {
                v = POSTFIX_UNSUPPORTED;
                detail = fmt("command \"%s\" (%s) is not part of Postern; run it as a service of its own%s",
                             e->command, e->type, streq(e->type, "unix") ? "; mail routed to it is deferred (4.3.5)" : "");
        } else if ((l = listener_of(e, c, m, &plan)) && l->map == MASTER_INET_SKIP && streq(e->type, "pass")) {
                v = POSTFIX_INFO;   /* without a postscreen, Postfix does not use it either */
                detail = fmt("not used: %s", l->note);
        } else if (l && l->map == MASTER_INET_SKIP) {
                v = POSTFIX_UNSUPPORTED;
                detail = strdup(l->note);
        } else if (l && l->map == MASTER_INET_USED) {
                v = POSTFIX_MAPPED;
                for (size_t i = 0; i < plan.n; i++)
                        if (plan.v[i].options == e && plan.v[i].entry != e)
                                fdname = plan.v[i].fdname, unit = plan.v[i].unit;
                options_mapped = fdname != NULL;
                detail = fmt("postscreen's hand-off: its -o options apply to %s (fd name %s)", strempty(unit),
                             strempty(fdname));
        } else if (l && streq(e->command, "postscreen")) {
                v = POSTFIX_MAPPED;   /* postern-smtpd screens on the port itself */
                detail = strdup(l->note);
        } else if (l) {
                v = POSTFIX_MAPPED;
                fdname = l->fdname, unit = l->unit;
                options_mapped = l->options == e;   /* a postscreen's own options are in its note */
                detail = fmt("%s%s (fd name %s)%s%s%s%s", l->map == MASTER_INET_SOCKET ? "postern-generator's " : "",
                             unit, fdname, l->narrowed && l->map == MASTER_INET_SHIPPED ? "; postern-generator's drop-in sets its address" : "",
                             e->n_options && options_mapped ? "; its -o options become listener settings" : "",
                             l->note ? "; " : "", strempty(l->note));
        } else {
                v = POSTFIX_UNSUPPORTED;
                detail = fmt("a %s listener running %s: Postern has no such service", e->type, e->command);
        }
        if (!detail)
                return -ENOMEM;
        r = fn(e, NULL, v, detail, userdata);
        if (r < 0)
                return r;

        /* pipe(8)'s -o options are its own business (master-pipe.c); the others are judged one by one */
        if (e->kind == MASTER_TRANSPORT && streq(e->command, "pipe"))
                return 0;
        for (size_t k = 0; k < e->n_options; k++) {
                const MasterOption *o = &e->options[k];
                _cleanup_free_ char *d = NULL;
                PostfixVerdict ov;
                if (options_mapped && streq(fdname, "submissions") && streq(o->name, "smtpd_tls_wrappermode")) {
                        ov = POSTFIX_MAPPED;
                        d = strdup("postern-submissions.socket is implicit TLS already");
                } else if (options_mapped) {
                        /* the option's value, as main.cf's <fd name>/<name>, so its tables are the ones judged */
                        _cleanup_free_ char *key = fmt("%s/%s", fdname, o->name), *why = NULL;
                        if (!key)
                                return -ENOMEM;
                        r = param_lookup(o->name) ? conf_set(c, key, o->value, &why) : 0;
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                ov = POSTFIX_UNSUPPORTED;
                                d = fmt("%s", why ? why : strerror(-r));
                        } else
                                ov = judge_param(c, fdname, o->name, m, &d);
                } else if (postfix_master_smtp_transport(e)) {
                        if (!smtp)
                                continue;   /* plain check: check_smtp_variants() */
                        const ParamDef *p = param_lookup(o->name);
                        ov = POSTFIX_SAME;
                        d = smtp_option_note(smtp, e, o, &ov);
                        if (d && ov == POSTFIX_UNSUPPORTED && p && described_unused(p))
                                ov = POSTFIX_INFO;   /* syslog_name: accepted everywhere, acted on nowhere */
                        if (!d && ov == POSTFIX_SAME)
                                d = strdup(smtp->failed ? "not checked: postern-smtp's own settings are invalid" :
                                           "applied by postern-smtp to this transport");
                } else if (e->kind == MASTER_TRANSPORT) {
                        const ParamDef *p = param_lookup(o->name);
                        ov = p && described_unused(p) ? POSTFIX_INFO : POSTFIX_UNSUPPORTED;
                        d = ov == POSTFIX_INFO ? unused_detail(p) :
                            fmt("Postern's %s transport takes no master.cf overrides; set it in main.cf", e->command);
                } else
                        continue;   /* the entry itself is not used: its options say nothing more */
                if (!d && ov != POSTFIX_SAME)
                        return -ENOMEM;
                r = fn(e, o, ov, d, userdata);
                if (r < 0)
                        return r;
        }
        /* the process limit of Postern's own transports is main.cf's */
        if (e->kind == MASTER_TRANSPORT && e->maxproc > 0 && !postfix_master_smtp_transport(e) &&
            !streq(e->command, "pipe")) {
                _cleanup_free_ char *name = fmt("maxproc %d", e->maxproc);
                _cleanup_free_ char *d = fmt("set %s_process_limit in main.cf", e->command);
                if (!name || !d)
                        return -ENOMEM;
                r = fn(e, &(MasterOption) { .name = name, .value = NULL }, POSTFIX_UNSUPPORTED, d, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_master_item(const MasterEntry *e, const MasterOption *o, PostfixVerdict v, const char *detail,
                           void *userdata) {
        PostfixReport *r = userdata;
        char *name = o && o->value ? fmt("%s/%s -o %s=%s", e->service, e->type, o->name, o->value) :
                     o ? fmt("%s/%s %s", e->service, e->type, o->name) : fmt("%s/%s %s", e->service, e->type, e->command);
        int e2 = add(r, "master.cf", e->line, name, v, detail ? strdup(detail) : NULL);
        if (e2 < 0)
                return e2;
        PostfixItem *it = &r->items[r->n - 1];
        it->option = o != NULL;
        const char *key = o && o->value && v == POSTFIX_MAPPED && detail ? startswith(detail, LISTENER_SETTING) : NULL;
        if (key && !(it->setting = fmt("%s =%s%s", key, *o->value ? " " : "", o->value)))
                return -ENOMEM;
        return 0;
}

/* ---- the report --------------------------------------------------------------------------- */

int postfix_report_build(const char *dir, PostfixReport *ret) {
        _cleanup_free_ char *main_path = NULL, *master_path = NULL, *err = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        _cleanup_conf_free_ Conf *c = NULL;
        PostfixReport r = { .dir = strdup(dir) };
        MasterCf m = {};
        int e;

        if (!r.dir || asprintf(&main_path, "%s/main.cf", dir) < 0 || asprintf(&master_path, "%s/master.cf", dir) < 0) {
                e = -ENOMEM;
                goto fail;
        }
        e = master_cf_load(master_path, &m, &err);
        r.have_master_cf = e != -ENOENT;
        if (e < 0 && e != -ENOENT && e != -EINVAL)
                goto fail;
        if (e == -EINVAL && (e = add(&r, "master.cf", 0, strdup("master.cf"), POSTFIX_ERROR, TAKE_PTR(err))) < 0)
                goto fail;

        if (access(main_path, F_OK) < 0) {
                e = -errno;
                if (add(&r, "main.cf", 0, strdup("main.cf"), POSTFIX_ERROR, fmt("%s: %s", main_path, strerror(-e))) < 0) {
                        e = -ENOMEM;
                        goto fail;
                }
        }
        e = conf_load_report(main_path, &c, &msgs);
        if (e < 0 && e != -EINVAL) {
                _cleanup_free_ char *first = msgs && msgs[0] ? strdup(msgs[0]) : NULL;
                if (e == -ENOMEM || add(&r, "main.cf", 0, strdup("main.cf"), POSTFIX_ERROR,
                                        first ? TAKE_PTR(first) : strdup(strerror(-e))) < 0)
                        goto fail;
        }
        if (c) {
                MainCtx x = { &r, c, &m, msgs, conf_path(c), 0 };
                conf_foreach_explicit(c, judge_main_entry, &x);
                if ((e = x.error) < 0 || (e = main_leftover_messages(&r, msgs, conf_path(c))) < 0)
                        goto fail;
                /* postern-smtp's reading of its transports' -o options (it sets them in c) */
                PostfixSmtpNotes notes = {};
                SmtpConfig cfg = {};
                bool smtp = false;
                for (size_t i = 0; i < m.n; i++)
                        smtp |= postfix_master_smtp_transport(&m.entries[i]);
                if (smtp) {
                        e = smtp_config_load(c, &cfg, &notes.warnings, &notes.errors);
                        if (e == -ENOMEM)
                                goto fail;
                        notes.failed = e < 0;
                        if (e >= 0)
                                smtp_config_done(&cfg);
                }
                for (size_t i = 0; i < m.n && e >= 0; i++)
                        e = postfix_master_judge(&m.entries[i], c, &m, &notes, add_master_item, &r);
                strv_free(notes.warnings);
                strv_free(notes.errors);
                if (e < 0)
                        goto fail;
        }
        master_cf_done(&m);
        *ret = r;
        return 0;
fail:
        master_cf_done(&m);
        postfix_report_done(&r);
        return e;
}
