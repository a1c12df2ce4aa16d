/* posternctl-check.c — `posternctl check`, like `postfix check`: loads main.cf and prints every
 * warning and error, opens each lookup table named by alias_maps, local_recipient_maps, the
 * other address class tables (virtual_alias_maps, virtual_mailbox_maps, relay_recipient_maps,
 * relocated_maps) and the class domain lists (mydestination, virtual_alias_domains,
 * virtual_mailbox_domains, relay_domains), checks that queue_directory exists, and reads a
 * master.cf next to main.cf (common/conf/master-cf.c): a syntax error is an error, each entry
 * Postern does not act on says "not supported" with the reason, a pipe(8) entry's attributes
 * are checked (common/conf/master-pipe.c: an unknown flag, a missing or root user=, a missing
 * argv= are errors), and smtp and lmtp entries are loaded as postern-smtp loads them
 * (daemons/smtp/smtp-settings.c: an -o it does not apply is "not supported", an invalid value an
 * error), and postern-smtpd's content filter settings are read for each of its listeners
 * (content_filter, receive_override_options, smtpd_proxy_*). Silent with exit 0 when all is well; exit 1 when anything is an error
 * (invalid values, tables that cannot be opened, a missing queue directory, a master.cf that does
 * not parse or a pipe entry that is wrong).
 *
 * The master.cf verdicts are those of `posternctl check --postfix` (posternctl-postfix.c).
 *
 *   posternctl check [-c DIR]    (DIR/main.cf instead of $POSTERN_CONFIG or the default)
 *   posternctl check --postfix DIR [--json]
 *                                what Postern does with a Postfix configuration directory, one line
 *                                per main.cf parameter, master.cf entry and -o option, grouped by file
 *                                and verdict, then a summary line; exit 1 when something is not
 *                                supported, unknown or an error (README.md "Coming from Postfix") */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/conf.h"
#include "conf/master-cf.h"
#include "conf/master-inet.h"
#include "conf/table.h"
#include "mail/addr-class.h"
#include "milter/milter.h"
#include "posternctl.h"
#include "posternctl-postfix.h"
#include "smtp.h"
#include "smtpd.h"

static bool check_listed(char **list, const char *s) {
        for (char **i = list; i && *i; i++)
                if (streq(*i, s))
                        return true;
        return false;
}

/* Opens each table of param, skipping those already checked under another parameter. */
static int check_tables(Conf *c, const char *param, TableFlags flags, char **skip) {
        _cleanup_strv_free_ char **specs = conf_get_list(c, NULL, param);
        if (!specs) {
                fprintf(stderr, "posternctl: out of memory\n");
                return 1;
        }
        int ret = 0;
        for (char **s = specs; *s; s++) {
                if (check_listed(skip, *s))
                        continue;
                _cleanup_(table_freep) Table *t = NULL;
                _cleanup_free_ char *reason = NULL;
                int r = table_open(*s, flags, &t, &reason);
                if (r < 0) {
                        fprintf(stderr, "posternctl: %s: %s\n", param, reason ? reason : strerror(-r));
                        ret = 1;
                }
        }
        return ret;
}

/* Each milter entry of param, parsed as postern-smtpd parses it. */
static int check_milters(Conf *c, const char *param) {
        _cleanup_strv_free_ char **entries = conf_get_list(c, NULL, param);
        int ret = 0;
        for (char **e = entries; e && *e; e++) {
                MilterSpec m = {};
                _cleanup_free_ char *reason = NULL;
                if (milter_spec_parse(*e, &m, &reason) < 0) {
                        fprintf(stderr, "posternctl: %s: %s\n", param, reason ? reason : "out of memory");
                        ret = 1;
                }
                milter_spec_done(&m);
        }
        return ret;
}

/* The domain lists of the address classes, as the daemons build them. */
static int check_classes(Conf *c) {
        AddrClasses ac = {};
        _cleanup_free_ char *why = NULL;
        int r = addr_classes_load(&ac, c, NULL, &why);
        if (r < 0) {
                fprintf(stderr, "posternctl: %s\n", why ? why : strerror(-r));
                return 1;
        }
        int ret = 0;
        for (AddressClass k = 0; k < ADDR_CLASS_LISTS; k++)
                if (addr_classes_problem(&ac, k)) {
                        fprintf(stderr, "posternctl: %s\n", addr_classes_problem(&ac, k));
                        ret = 1;
                }
        addr_classes_done(&ac);
        return ret;
}

static int check_directory(Conf *c, const char *param) {
        const char *dir = conf_get(c, param);
        struct stat st;
        if (isempty(dir)) {
                fprintf(stderr, "posternctl: %s: is empty\n", param);
                return 1;
        }
        if (stat(dir, &st) < 0) {
                fprintf(stderr, "posternctl: %s: %s: %s\n", param, dir, strerror(errno));
                return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
                fprintf(stderr, "posternctl: %s: %s: not a directory\n", param, dir);
                return 1;
        }
        return 0;
}

/* Prints what of an entry is not used (verdicts from posternctl-postfix.c); errors count. The smtp
 * and lmtp transports are check_smtp_variants()'s. */
static int print_master_item(const MasterEntry *e, const MasterOption *o, PostfixVerdict v, const char *detail,
                             void *userdata) {
        struct { const char *path; int ret; } *x = userdata;
        const char *path = x->path;
        if (postfix_master_smtp_transport(e))
                return 0;
        if (o && e->kind == MASTER_LISTENER)
                return 0;   /* conf_load() said it, as every daemon does (common/conf/master-inet.h) */
        if (v == POSTFIX_ERROR) {
                fprintf(stderr, "posternctl: %s:%u: %s: %s\n", path, e->line, e->service, detail);
                x->ret = 1;
        } else if ((v == POSTFIX_UNSUPPORTED || v == POSTFIX_UNKNOWN) && !o)
                fprintf(stderr, "posternctl: %s:%u: %s: not supported: %s\n", path, e->line, e->service, detail);
        else if (v == POSTFIX_UNSUPPORTED || v == POSTFIX_UNKNOWN)
                fprintf(stderr, "posternctl: %s:%u: %s: not supported: %s%s on %s (%s)\n", path, e->line,
                        e->service, o->value ? "-o " : "", o->name, e->service, detail);
        return 0;
}

/* The smtp and lmtp transports, as postern-smtp loads them (daemons/smtp/smtp-settings.c): an
 * -o it does not apply is "not supported", an invalid one an error. */
static int check_smtp_variants(Conf *c) {
        _cleanup_strv_free_ char **warnings = NULL, **errors = NULL;
        SmtpConfig cfg = {};
        int r = smtp_config_load(c, &cfg, &warnings, &errors);
        if (r < 0)
                return 1;   /* a plain smtp_* or lmtp_* setting is wrong: logged */
        smtp_config_done(&cfg);
        for (char **w = warnings; w && *w; w++)
                fprintf(stderr, "posternctl: %s\n", *w);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "posternctl: %s; mail for that transport is deferred (4.3.5)\n", *e);
        return errors ? 1 : 0;
}

/* content_filter, receive_override_options and the smtpd_proxy_* settings of main.cf and of each
 * postern-smtpd listener (master.cf's -o included), as postern-smtpd reads them: a malformed one
 * would stop it (smtpd-filter.c logs what is wrong). */
static bool listener_differs(Conf *c, const char *listener) {
        static const char *const names[] = { "content_filter", "receive_override_options", "smtpd_proxy_filter",
                                             "smtpd_proxy_options" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (!streq(strempty(conf_get_listener(c, listener, names[i])), strempty(conf_get(c, names[i]))))
                        return true;
        return false;
}

static int check_smtpd_filters(Conf *c, const MasterCf *m) {
        static const char *const shipped[] = { NULL, "smtp", "submission", "submissions", "submit" };
        MasterInetPlan plan = {};
        int ret = 0;
        if (m && master_inet_plan(m, NULL, NULL, &plan) < 0)
                return fprintf(stderr, "posternctl: out of memory\n"), 1;
        for (size_t i = 0; i < ELEMENTSOF(shipped) + plan.n; i++) {
                const char *l = i < ELEMENTSOF(shipped) ? shipped[i] : plan.v[i - ELEMENTSOF(shipped)].fdname;
                if (i >= ELEMENTSOF(shipped) && (!l || plan.v[i - ELEMENTSOF(shipped)].map != MASTER_INET_SOCKET))
                        continue;
                if (l && !listener_differs(c, l))
                        continue;   /* main.cf's own values, already checked */
                SmtpdSettings s = {};
                ret |= smtpd_filter_settings(c, l, &s) < 0;
                free(s.content_filter);
                free(s.proxy_filter);
        }
        master_inet_plan_done(&plan);
        return ret;
}

/* Reads <config_directory>/master.cf when there is one and says what of it is not used. */
static int check_master_cf(Conf *c) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        MasterCf m = {};

        if (asprintf(&path, "%s/master.cf", conf_get(c, "config_directory")) < 0)
                return fprintf(stderr, "posternctl: out of memory\n"), 1;
        int r = master_cf_load(path, &m, &err);
        if (r == -ENOENT)   /* postern-smtp's and postern-smtpd's own settings all the same */
                return check_smtp_variants(c) | check_smtpd_filters(c, NULL);
        if (r < 0) {
                fprintf(stderr, "posternctl: %s\n", err ? err : strerror(-r));
                return 1;
        }
        struct { const char *path; int ret; } x = { path, 0 };
        for (size_t i = 0; i < m.n && r >= 0; i++)
                r = postfix_master_judge(&m.entries[i], c, &m, NULL, print_master_item, &x);
        if (r < 0)
                fprintf(stderr, "posternctl: %s: %s\n", path, strerror(-r));
        x.ret |= check_smtp_variants(c);
        x.ret |= check_smtpd_filters(c, &m);
        master_cf_done(&m);
        return x.ret || r < 0;
}

int posternctl_load_main_cf(const char *path, Conf **ret) {
        _cleanup_strv_free_ char **msgs = NULL;
        int r = conf_load(path, ret, &msgs);
        for (char **m = msgs; m && *m; m++)
                fprintf(stderr, "posternctl: %s\n", *m);
        if (r < 0 && r != -EINVAL)
                fprintf(stderr, "posternctl: cannot read configuration: %s\n", strerror(-r));
        return r;
}

static void print_report_text(const PostfixReport *r, const size_t count[_POSTFIX_VERDICT_MAX]) {
        static const char *const files[] = { "main.cf", "master.cf" };
        bool any = false;
        for (size_t f = 0; f < ELEMENTSOF(files); f++)
                for (PostfixVerdict v = 0; v < _POSTFIX_VERDICT_MAX; v++) {
                        bool header = false;
                        for (size_t i = 0; i < r->n; i++) {
                                const PostfixItem *it = &r->items[i];
                                if (it->verdict != v || !streq(it->file, files[f]))
                                        continue;
                                if (!header)
                                        printf("%s%s: %s\n", any ? "\n" : "", files[f], postfix_verdict_title(v));
                                header = any = true;
                                if (it->line)
                                        printf("  %s:%u: ", it->file, it->line);
                                else
                                        printf("  %s: ", it->file);
                                printf("%s%s%s\n", it->name, it->detail ? ": " : "", strempty(it->detail));
                        }
                }
        printf("%ssummary: %zu items: %zu same, %zu mapped, %zu informational, %zu left out, %zu not supported, "
               "%zu unknown, %zu errors\n", r->n ? "\n" : "", r->n, count[POSTFIX_SAME], count[POSTFIX_MAPPED],
               count[POSTFIX_INFO], count[POSTFIX_LEFT_OUT], count[POSTFIX_UNSUPPORTED], count[POSTFIX_UNKNOWN],
               count[POSTFIX_ERROR]);
}

static void print_report_json(const PostfixReport *r, const size_t count[_POSTFIX_VERDICT_MAX]) {
        printf("{\"directory\": ");
        posternctl_json_string(r->dir);
        printf(", \"items\": [");
        for (size_t i = 0; i < r->n; i++) {
                const PostfixItem *it = &r->items[i];
                printf("%s\n  {\"file\": \"%s\", \"line\": %u, \"name\": ", i ? "," : "", it->file, it->line);
                posternctl_json_string(it->name);
                printf(", \"verdict\": \"%s\", \"detail\": ", postfix_verdict_name(it->verdict));
                posternctl_json_string(it->detail);
                printf("}");
        }
        printf("],\n \"summary\": {");
        for (PostfixVerdict v = 0; v < _POSTFIX_VERDICT_MAX; v++)
                printf("%s\"%s\": %zu", v ? ", " : "", postfix_verdict_name(v), count[v]);
        printf("}}\n");
}

/* `posternctl check --postfix DIR`: what Postern does with a Postfix configuration directory.
 * Exit 0 when Postern uses all of it, 1 when something is not supported, unknown or an error. */
static int check_postfix(const char *dir, bool json) {
        _cleanup_(postfix_report_done) PostfixReport r = {};
        struct stat st;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                fprintf(stderr, "posternctl: %s: %s\n", dir, errno ? strerror(errno) : "not a directory");
                return 1;
        }
        int e = postfix_report_build(dir, &r);
        if (e < 0) {
                fprintf(stderr, "posternctl: %s: %s\n", dir, strerror(-e));
                return 1;
        }
        size_t count[_POSTFIX_VERDICT_MAX] = {};
        for (size_t i = 0; i < r.n; i++)
                count[r.items[i].verdict]++;
        if (json)
                print_report_json(&r, count);
        else
                print_report_text(&r, count);
        return count[POSTFIX_UNSUPPORTED] + count[POSTFIX_UNKNOWN] + count[POSTFIX_ERROR] > 0;
}

/* `posternctl check`: report configuration problems; silent when there are none. */
int verb_check(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "postfix", required_argument, NULL, 'P' },
                { "json", no_argument, NULL, 'J' },
                {}
        };
        _cleanup_free_ char *path = NULL;
        const char *postfix_dir = NULL;
        bool json = false;
        int opt;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0)
                switch (opt) {
                case 'P':
                        postfix_dir = optarg;
                        break;
                case 'J':
                        json = true;
                        break;
                case 'c':
                        free(path);
                        if (asprintf(&path, "%s/main.cf", optarg) < 0)
                                return fprintf(stderr, "posternctl: out of memory\n"), 1;
                        break;
                case 'h':
                        printf("Usage: posternctl check [-c DIR]\n"
                               "       posternctl check --postfix DIR [--json]\n"
                               "Checks main.cf, the alias and local recipient tables, the queue directory and a\n"
                               "master.cf next to main.cf. With --postfix: says, for each parameter of DIR/main.cf\n"
                               "and each entry of DIR/master.cf, what Postern does with it.\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "posternctl: check takes no arguments\n");
                return 2;
        }
        if (postfix_dir)
                return check_postfix(postfix_dir, json);
        if (json) {
                fprintf(stderr, "posternctl: --json goes with --postfix\n");
                return 2;
        }

        _cleanup_conf_free_ Conf *c = NULL;
        if (posternctl_load_main_cf(path, &c) < 0)
                return 1;

        int ret = 0;
        _cleanup_strv_free_ char **aliases = conf_get_list(c, NULL, "alias_maps");
        ret |= check_tables(c, "alias_maps", TABLE_ALIASES, NULL);
        ret |= check_tables(c, "local_recipient_maps", 0, aliases);
        static const char *const address_maps[] = {
                "virtual_alias_maps", "virtual_mailbox_maps", "relay_recipient_maps", "relocated_maps",
        };
        for (size_t i = 0; i < ELEMENTSOF(address_maps); i++)
                ret |= check_tables(c, address_maps[i], 0, NULL);
        ret |= check_classes(c);
        ret |= check_milters(c, "smtpd_milters");
        ret |= check_milters(c, "non_smtpd_milters");
        ret |= check_directory(c, "queue_directory");
        ret |= check_master_cf(c);
        return ret;
}
