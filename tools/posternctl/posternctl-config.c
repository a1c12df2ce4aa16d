/* posternctl-config.c — `posternctl config`, Postern's postconf:
 *
 *   posternctl config                 every parameter as "name = value" (raw, unexpanded)
 *   posternctl config -n              only what main.cf sets (listener/name forms included)
 *   posternctl config -d              the built-in defaults
 *   posternctl config -x ...          expand $name references in the values shown
 *   posternctl config name...         only those parameters
 *   posternctl config name=value...   validate, then edit main.cf (comments and order kept; -e
 *                                     says the same explicitly, as postconf -e)
 *   posternctl config -# name...      comment the settings out in main.cf (postconf -#)
 *   posternctl config -X name...      remove the settings from main.cf (postconf -X)
 *   -h / -H                           values only / names only
 *   -j                                one JSON object per line: {"name": ..., "value": ...}
 *   -M / -F / -P [pattern...]         master.cf entries, fields, -o parameters (posternctl-master.c)
 *   posternctl config --markdown      the registry as docs/parameters.md
 *   posternctl config --man           the registry as the manual page postern.conf(5)
 *   -c DIR                            use DIR/main.cf instead of $POSTERN_CONFIG or the default
 *
 * Exit status: 0 on success, 1 when something was unknown or invalid, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "basic/strbuf.h"
#include "config.h"
#include "conf/params.h"
#include "posternctl.h"

typedef struct ConfigArgs {
        bool non_default, defaults, expand, markdown, man, edit;
        char master;            /* 'M', 'F', 'P' or 0 */
        ConfEditOp op;          /* with -# or -X */
        bool remove_op;
} ConfigArgs;

/* How a parameter is printed: "name = value", -h, -H, -j. */
static enum { STYLE_NAME_VALUE, STYLE_VALUE, STYLE_NAME, STYLE_JSON } config_style;

static void config_help(void) {
        printf("Usage: posternctl config [-n|-d] [-x] [-h|-H|-j] [-c DIR] [name...]\n"
               "       posternctl config [-e] [-c DIR] name=value...\n"
               "       posternctl config -#|-X [-c DIR] name...\n"
               "       posternctl config -M|-F|-P [-h] [-c DIR] [service[/type[/name]]...]\n"
               "       posternctl config --markdown\n\n"
               "  -n          show only parameters set in main.cf\n"
               "  -d          show built-in defaults\n"
               "  -x          expand $name references (and /file/name entries of lists)\n"
               "  -h, -H      show values only, names only\n"
               "  -j          one JSON object per parameter and line\n"
               "  -e          edit main.cf (name=value arguments)\n"
               "  -#, -X      comment out, remove the named settings in main.cf\n"
               "  -M, -F, -P  show master.cf entries, their fields, their -o parameters\n"
               "  -c DIR      read DIR/main.cf (and DIR/master.cf)\n"
               "  --markdown  print the parameter registry as a Markdown document\n"
               "  --man       print the parameter registry as the manual page postern.conf(5)\n");
}

static const char *config_type_name(const ParamDef *p, char *buf, size_t bufsz) {
        switch (p->type) {
        case PARAM_STRING:
                return "string";
        case PARAM_LIST:
                return "list";
        case PARAM_BOOL:
                return "yes/no";
        case PARAM_INT:
        case PARAM_SIZE:
                if (p->max)
                        snprintf(buf, bufsz, "%s, %lld..%lld", p->type == PARAM_INT ? "integer" : "bytes", p->min, p->max);
                else
                        snprintf(buf, bufsz, "%s, at least %lld", p->type == PARAM_INT ? "integer" : "bytes", p->min);
                return buf;
        case PARAM_TIME:
                snprintf(buf, bufsz, "time, bare number in %s",
                         p->time_unit == 'd' ? "days" : p->time_unit == 'h' ? "hours" :
                         p->time_unit == 'm' ? "minutes" : p->time_unit == 'w' ? "weeks" : "seconds");
                return buf;
        case PARAM_ENUM: {
                size_t k = 0;
                buf[0] = '\0';
                for (const char *s = p->enum_values; s && *s && k < bufsz;) {
                        const char *bar = strchrnul(s, '|');
                        int n = snprintf(buf + k, bufsz - k, "%s`%.*s`", k ? " or " : "", (int) (bar - s), s);
                        if (n < 0)
                                break;
                        k += (size_t) n;
                        s = *bar ? bar + 1 : bar;
                }
                return buf;
        }
        }
        return "?";
}

/* Markdown table cells: "|" would end the cell. */
static void config_md_cell(const char *s) {
        for (; *s; s++) {
                if (*s == '|')
                        fputs("\\|", stdout);
                else
                        putchar(*s);
        }
}

static int config_markdown(void) {
        printf("# Postern configuration parameters\n"
               "\n"
               "<!-- Generated by `posternctl config --markdown` from the registry in common/conf/params.c.\n"
               "     Do not edit by hand: a meson test fails when this file and the registry disagree. -->\n"
               "\n"
               "Postern reads `main.cf` (`$POSTERN_CONFIG`, else `/etc/postern/main.cf`) in Postfix syntax:\n"
               "`name = value` lines, `#` comment lines, and lines starting with whitespace that continue the\n"
               "previous one. Values may refer to other parameters as `$name` or `${name}`;\n"
               "`${name?{text}:{other}}` gives `text` when `name` is non-empty and `other` otherwise, and\n"
               "`${name:{text}}` gives `text` only when `name` is empty. References are expanded when a value\n"
               "is used, so later settings count too.\n"
               "\n"
               "A setting written `listener/name = value` (for example `submission/smtpd_helo_required = yes`)\n"
               "applies only to the SMTP listener whose systemd socket has that `FileDescriptorName=`\n"
               "(`smtp`, `submission`, `submissions`, `submit`); it takes the place of master.cf `-o` options.\n"
               "\n"
               "Unknown names draw a warning (they may still be used in `$name` references); values that do\n"
               "not fit their type stop the daemons with an error naming the file, line and parameter.\n"
               "`posternctl config` shows the current values, `posternctl config -d` the defaults, and\n"
               "`posternctl config name=value` edits main.cf. Lists take commas and/or whitespace; write\n"
               "`{ text }` for an element containing either. Times are a number with an optional unit\n"
               "`s`, `m`, `h`, `d` or `w`.\n"
               "\n"
               "As in Postfix, a `/file/name` entry of a domain list (`mydestination`, `relay_domains`,\n"
               "`virtual_alias_domains`, `virtual_mailbox_domains`) or a network list (`mynetworks`,\n"
               "`smtpd_client_event_limit_exceptions`, `smtpd_forbid_bare_newline_exclusions`) stands for the\n"
               "entries written in that file (blanks or commas between them, `#` comment lines), read again\n"
               "on reload; `myorigin = /etc/mailname` is the first line of that file, as in Debian's Postfix.\n"
               "\n"
               "Lookup tables (`alias_maps`, `local_recipient_maps`, access maps) are written `type:name`:\n"
               "`inline:{ key=value, ... }`, `static:value`, `texthash:/file` and `hash:/file` (both read the\n"
               "text file itself, so no postmap or newaliases step is needed; `hash:` and `btree:` read postmap's\n"
               "`.db` file only where the text is gone, `lmdb:` and `cdb:` its `.lmdb`/`.cdb` file when there is\n"
               "one), `regexp:/file`, `pcre:/file` (libpcre2), `cidr:/file`, `sqlite:/file.cf`, `ldap:/file.cf`,\n"
               "`unionmap:{...}`, `pipemap:{...}`, `randmap:{...}` and `unix:passwd.byname`. Files named `...aliases` use aliases(5) syntax.\n"
               "Tables are re-read when their file changes; keys match case-insensitively.\n"
               "\n"
               "| Parameter | Type | Default | Description |\n"
               "|---|---|---|---|\n");
        for (size_t i = 0; i < param_table_size; i++) {
                const ParamDef *p = &param_table[i];
                char tbuf[256];
                printf("| `%s` | ", p->name);
                config_md_cell(config_type_name(p, tbuf, sizeof tbuf));
                fputs(" | ", stdout);
                if (!p->def)
                        fputs("*(computed)*", stdout);
                else if (p->def[0] == '\0')
                        fputs("*(empty)*", stdout);
                else {
                        putchar('`');
                        config_md_cell(p->def);
                        putchar('`');
                }
                fputs(" | ", stdout);
                config_md_cell(p->description);
                fputs(" |\n", stdout);
        }
        size_t n;
        const ParamCompat *compat = param_compat_table(&n);
        printf("\n## Compatibility levels\n"
               "\n"
               "As Postfix's safety net: with `compatibility_level` below the level where a default changed,\n"
               "a parameter main.cf leaves unset keeps its older default, and each load says which\n"
               "(`compatibility_level = 0: using backwards-compatible default settings ...`). Without\n"
               "`compatibility_level`, or at 3.6 and above, the defaults are those in the table above.\n"
               "\n"
               "| Parameter | Changed at level | Default below that level |\n"
               "|---|---|---|\n");
        for (size_t i = 0; i < n; i++) {
                printf("| `%s` | %s | ", compat[i].name, compat[i].level);
                if (!compat[i].old)
                        fputs("not applied: Postern has no such parameter", stdout);
                else if (compat[i].old[0] == '\0')
                        fputs("*(empty)*", stdout);
                else
                        printf("`%s`", compat[i].old);
                fputs(" |\n", stdout);
        }
        const ParamIgnored *ig = param_ignored_table(&n);
        printf("\n## Postfix parameters with no meaning here\n"
               "\n"
               "A main.cf taken from Postfix may set these. systemd, the units or the package do their job, so\n"
               "Postern reports each one it finds once, as information naming what replaces it\n"
               "(`main.cf:LINE: NAME: ignored, no meaning here: ...`), never as an unknown parameter.\n"
               "\n"
               "| Parameter | What does its job |\n"
               "|---|---|\n");
        for (size_t i = 0; i < n; i++) {
                printf("| `%s` | ", ig[i].name);
                config_md_cell(ig[i].replaced_by);
                fputs(" |\n", stdout);
        }
        return fflush(stdout) == 0 ? 0 : 1;
}

/* Text in a roff line: backslashes escaped, a leading "." or "'" kept from being a request,
 * "-" as a minus sign (so that option names can be searched and copied), backquotes (the
 * registry's Markdown code spans) dropped. */
static void config_roff(const char *s) {
        if (*s == '.' || *s == '\'')
                fputs("\\&", stdout);
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\e", stdout);
                else if (*s == '-')
                        fputs("\\-", stdout);
                else if (*s != '`')
                        putchar(*s);
        }
}

static int config_man(void) {
        printf(".\\\" Generated by `posternctl config --man` from common/conf/params.c.\n"
               ".TH POSTERN.CONF 5 \"\" \"Postern %s\" \"File Formats\"\n"
               ".SH NAME\n"
               "postern.conf \\- Postern's main.cf: configuration parameters\n"
               ".SH SYNOPSIS\n"
               "/etc/postern/main.cf\n"
               ".SH DESCRIPTION\n"
               "Postern reads main.cf in Postfix's syntax: \\fIname\\fR = \\fIvalue\\fR lines, \\(dq#\\(dq\n"
               "comment lines, and lines starting with white space that continue the previous one.\n"
               "Values may refer to other parameters as $name or ${name}; references are expanded\n"
               "when a value is used.\n"
               ".PP\n"
               "A setting written \\fIlistener\\fR/\\fIname\\fR applies only to the SMTP listener whose\n"
               "systemd socket has that FileDescriptorName=; it takes the place of master.cf's \\-o options.\n"
               ".PP\n"
               "Unknown names draw a warning; values that do not fit their type stop the daemons with an\n"
               "error naming the file, line and parameter.\n"
               "Lists take commas and/or white space; times are a number with an optional unit s, m, h, d\n"
               "or w.\n"
               ".BR posternctl (8)\n"
               "shows (config), edits (config name=value) and checks (check) the file.\n"
               ".SH PARAMETERS\n", POSTERN_VERSION);
        for (size_t i = 0; i < param_table_size; i++) {
                const ParamDef *p = &param_table[i];
                char tbuf[256];
                fputs(".TP\n.B ", stdout);
                config_roff(p->name);
                fputs("\n(", stdout);
                config_roff(config_type_name(p, tbuf, sizeof tbuf));
                fputs("; default: ", stdout);
                if (!p->def)
                        fputs("computed", stdout);
                else if (p->def[0] == '\0')
                        fputs("empty", stdout);
                else
                        config_roff(p->def);
                fputs(")\n.br\n", stdout);
                config_roff(p->description);
                putchar('\n');
        }
        size_t n;
        const ParamIgnored *ig = param_ignored_table(&n);
        printf(".SH POSTFIX PARAMETERS WITH NO MEANING HERE\n"
               "A main.cf taken from Postfix may set these; Postern reports each one it finds as\n"
               "information naming what replaces it.\n");
        for (size_t i = 0; i < n; i++) {
                fputs(".TP\n.B ", stdout);
                config_roff(ig[i].name);
                putchar('\n');
                config_roff(ig[i].replaced_by);
                putchar('\n');
        }
        printf(".SH FILES\n"
               ".TP\n/etc/postern/main.cf\nthe parameters ($POSTERN_CONFIG names another file)\n"
               ".TP\n/etc/postern/master.cf\nan existing Postfix master.cf: transports and listeners\n"
               ".SH SEE ALSO\n"
               ".BR posternctl (8),\n.BR postern\\-generator (8),\n.BR postern\\-smtpd (8),\n"
               ".BR postern\\-qmgr (8),\n.BR postern\\-smtp (8),\n.BR postern\\-local (8),\n"
               ".BR postern\\-sendmail (1)\n");
        return fflush(stdout) == 0 ? 0 : 1;
}

static void config_print(const char *name, const char *value) {
        switch (config_style) {
        case STYLE_VALUE:
                printf("%s\n", strempty(value));
                break;
        case STYLE_NAME:
                printf("%s\n", name);
                break;
        case STYLE_JSON:
                fputs("{\"name\": ", stdout);
                posternctl_json_string(name);
                fputs(", \"value\": ", stdout);
                posternctl_json_string(strempty(value));
                fputs("}\n", stdout);
                break;
        default:
                printf("%s =%s%s\n", name, isempty(value) ? "" : " ", strempty(value));
        }
}

/* -x: the expanded value; for a list whose "/file/name" entries stand for the file's entries,
 * those entries (or, when a file cannot be read, the value with the reason on stderr). */
static void config_print_expanded(Conf *c, const char *name) {
        const char *value = conf_get(c, name);
        const char *base = strchr(name, '/');
        if (!conf_list_reads_files(base ? base + 1 : name) || !value || !strchr(value, '/')) {
                config_print(name, value);
                return;
        }
        _cleanup_strv_free_ char **given = conf_split_list(value), **entries = NULL;
        _cleanup_free_ char *why = NULL;
        int r = given ? conf_list_expand_files(given, &entries, &why) : -ENOMEM;
        if (r < 0) {
                fprintf(stderr, "posternctl: warning: %s: %s\n", name, why ? why : strerror(-r));
                config_print(name, value);
                return;
        }
        _cleanup_strbuf_ StrBuf joined = STRBUF_INIT;
        for (char **e = entries; *e && r >= 0; e++)
                r = strbuf_printf(&joined, "%s%s", e == entries ? "" : ", ", *e);
        if (r < 0) {
                fprintf(stderr, "posternctl: out of memory\n");
                return;
        }
        config_print(name, joined.data);
}

static int config_show_one(Conf *c, const ConfigArgs *a, const char *name) {
        const char *base = strchr(name, '/');
        base = base ? base + 1 : name;
        const ParamDef *p = param_lookup(base);
        bool expl = false;
        const char *raw = conf_get_raw(c, name, &expl);

        if (a->defaults) {
                if (!p) {
                        fprintf(stderr, "posternctl: warning: %s: unknown parameter\n", name);
                        return 1;
                }
                /* c is then an empty configuration: expansion uses defaults only */
                config_print(name, a->expand ? conf_get(c, name) : param_default(p));
                return 0;
        }
        if (!raw) {
                fprintf(stderr, "posternctl: warning: %s: unknown parameter\n", name);
                return 1;
        }
        if (a->non_default && !expl)
                return 0;
        if (a->expand)
                config_print_expanded(c, name);
        else
                config_print(name, raw);
        return 0;
}

typedef struct ExplicitList {
        char **names;
        size_t n, cap;
        bool oom;
} ExplicitList;

static void config_collect(const char *name, const char *raw, void *ud) {
        ExplicitList *l = ud;
        if (l->oom)
                return;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 32;
                char **n = realloc(l->names, ncap * sizeof(char *));
                if (!n) {
                        l->oom = true;
                        return;
                }
                l->names = n;
                l->cap = ncap;
        }
        l->names[l->n] = strdup(name);
        if (!l->names[l->n])
                l->oom = true;
        else
                l->n++;
}

static int config_strcmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int config_show_all(Conf *c, const ConfigArgs *a) {
        if (!a->non_default) {
                for (size_t i = 0; i < param_table_size; i++)
                        (void) config_show_one(c, a, param_table[i].name);
                return 0;
        }
        ExplicitList l = {};
        conf_foreach_main_cf(c, config_collect, &l);
        int r = 0;
        if (l.oom) {
                fprintf(stderr, "posternctl: out of memory\n");
                r = 1;
        } else {
                if (l.n)
                        qsort(l.names, l.n, sizeof(char *), config_strcmp);
                for (size_t i = 0; i < l.n; i++)
                        if (a->expand)
                                config_print_expanded(c, l.names[i]);
                        else
                                config_print(l.names[i], conf_get_raw(c, l.names[i], NULL));
        }
        for (size_t i = 0; i < l.n; i++)
                free(l.names[i]);
        free(l.names);
        return r;
}

static int config_edit(Conf *c, const char *path, char **args, int n) {
        int ret = 0;
        /* Validate every assignment first, so a bad one leaves main.cf untouched. */
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *name = strndup(args[i], strcspn(args[i], "="));
                if (!name)
                        return fprintf(stderr, "posternctl: out of memory\n"), 1;
                const char *value = strchr(args[i], '=') + 1;
                _cleanup_free_ char *trimmed = strdup(value);
                if (!trimmed)
                        return fprintf(stderr, "posternctl: out of memory\n"), 1;
                char *v = trimmed + strspn(trimmed, " \t");
                size_t l = strlen(v);
                while (l > 0 && (v[l - 1] == ' ' || v[l - 1] == '\t'))
                        v[--l] = '\0';
                size_t nl = strlen(name);
                while (nl > 0 && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
                        name[--nl] = '\0';
                if (strpbrk(v, "\r\n")) {
                        fprintf(stderr, "posternctl: %s: a value cannot contain a line break\n", name);
                        ret = 1;
                        continue;
                }
                _cleanup_free_ char *reason = NULL;
                int r = conf_set(c, name, v, &reason);
                if (r == -ENOENT)
                        fprintf(stderr, "posternctl: warning: %s: unknown parameter (set anyway)\n", name);
                else if (r < 0) {
                        fprintf(stderr, "posternctl: %s: %s\n", name, reason ? reason : strerror(-r));
                        ret = 1;
                }
        }
        if (ret)
                return ret;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *name = strndup(args[i], strcspn(args[i], "="));
                if (!name)
                        return fprintf(stderr, "posternctl: out of memory\n"), 1;
                size_t nl = strlen(name);
                while (nl > 0 && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
                        name[--nl] = '\0';
                int r = conf_edit_file(path, name, strchr(args[i], '=') + 1);
                if (r < 0) {
                        fprintf(stderr, "posternctl: cannot set %s in %s: %s\n", name, path, strerror(-r));
                        return 1;
                }
        }
        return 0;
}

/* -# and -X: each name's setting commented out or removed; names main.cf does not set are left. */
static int config_uncomment_or_remove(const char *path, char **names, int n, ConfEditOp op) {
        for (int i = 0; i < n; i++) {
                int r = conf_edit_file_op(path, names[i], NULL, op);
                if (r == -EINVAL) {
                        fprintf(stderr, "posternctl: %s: not a parameter name\n", names[i]);
                        return 1;
                }
                if (r < 0) {
                        fprintf(stderr, "posternctl: cannot edit %s: %s\n", path, strerror(-r));
                        return 1;
                }
        }
        return 0;
}

/* `posternctl config`: show or edit main.cf parameters, like postconf. */
int verb_config(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 256 },
                { "markdown", no_argument, NULL, 257 },
                { "man", no_argument, NULL, 258 },
                {}
        };
        ConfigArgs a = {};
        _cleanup_free_ char *path = NULL;
        int opt;

        optind = 0;
        config_style = STYLE_NAME_VALUE;
        while ((opt = getopt_long(argc, argv, "+ndxc:hHjeMFP#X", options, NULL)) >= 0)
                switch (opt) {
                case 'n': a.non_default = true; break;
                case 'd': a.defaults = true; break;
                case 'x': a.expand = true; break;
                case 'h': config_style = STYLE_VALUE; break;
                case 'H': config_style = STYLE_NAME; break;
                case 'j': config_style = STYLE_JSON; break;
                case 'e': a.edit = true; break;
                case 'M': case 'F': case 'P':
                        if (a.master && a.master != opt) {
                                fprintf(stderr, "posternctl: -M, -F and -P cannot be combined\n");
                                return 2;
                        }
                        a.master = (char) opt;
                        break;
                case '#': a.remove_op = true; a.op = CONF_EDIT_COMMENT; break;
                case 'X': a.remove_op = true; a.op = CONF_EDIT_REMOVE; break;
                case 257: a.markdown = true; break;
                case 258: a.man = true; break;
                case 'c':
                        free(path);
                        if (asprintf(&path, "%s/main.cf", optarg) < 0)
                                return fprintf(stderr, "posternctl: out of memory\n"), 1;
                        break;
                case 256: config_help(); return 0;
                default: return 2;
                }
        if (a.markdown)
                return config_markdown();
        if (a.man)
                return config_man();
        if (!path) {
                _cleanup_conf_free_ Conf *probe = NULL;
                if (conf_new(&probe) < 0 || !(path = strdup(conf_path(probe))))
                        return fprintf(stderr, "posternctl: out of memory\n"), 1;
        }
        if (a.non_default && a.defaults) {
                fprintf(stderr, "posternctl: -n and -d cannot be combined\n");
                return 2;
        }

        char **args = argv + optind;
        int nargs = argc - optind;
        int nassign = 0;
        for (int i = 0; i < nargs; i++)
                if (strchr(args[i], '='))
                        nassign++;
        if (nassign && (nassign != nargs || a.non_default || a.defaults || a.expand)) {
                fprintf(stderr, "posternctl: name=value cannot be mixed with names or -n/-d/-x\n");
                return 2;
        }
        if (a.edit && (nassign == 0 || nassign != nargs)) {
                fprintf(stderr, "posternctl: -e takes name=value arguments\n");
                return 2;
        }
        if (a.master && (a.edit || a.remove_op || nassign)) {
                fprintf(stderr, "posternctl: not supported: editing master.cf (-M, -F, -P with -e, -# or -X); "
                        "edit the file, then run postern-generator\n");
                return 2;
        }
        if (a.remove_op && (nargs == 0 || nassign || a.non_default || a.defaults || a.expand)) {
                fprintf(stderr, "posternctl: -# and -X take parameter names\n");
                return 2;
        }

        _cleanup_conf_free_ Conf *c = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        int r;
        if (a.defaults) {
                /* defaults only; still report where main.cf would be */
                r = conf_new(&c);
        } else {
                r = conf_load(path, &c, &msgs);
                for (char **m = msgs; m && *m; m++)
                        fprintf(stderr, "posternctl: %s\n", *m);
                if (r == -EINVAL && (nassign || a.remove_op)) {
                        /* a broken main.cf can still be repaired with name=value, -# or -X */
                        r = conf_new(&c);
                } else if (r == -EINVAL) {
                        fprintf(stderr, "posternctl: %s has errors; fix them first\n", path);
                        return 1;
                }
        }
        if (r < 0) {
                fprintf(stderr, "posternctl: cannot read configuration: %s\n", strerror(-r));
                return 1;
        }

        if (nassign)
                return config_edit(c, path, args, nargs);
        if (a.remove_op)
                return config_uncomment_or_remove(path, args, nargs, a.op);
        if (a.master)
                return posternctl_config_master(c, a.master, config_style == STYLE_VALUE, args, nargs);

        if (nargs == 0)
                return config_show_all(c, &a);
        int ret = 0;
        for (int i = 0; i < nargs; i++)
                ret |= config_show_one(c, &a, args[i]);
        return ret;
}
