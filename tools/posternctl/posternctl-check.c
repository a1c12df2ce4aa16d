/* posternctl-check.c — `posternctl check`, like `postfix check`: loads main.cf and prints every
 * warning and error, opens each lookup table named by alias_maps, local_recipient_maps, the
 * other address class tables (virtual_alias_maps, virtual_mailbox_maps, relay_recipient_maps,
 * relocated_maps) and the class domain lists (mydestination, virtual_alias_domains,
 * virtual_mailbox_domains, relay_domains), checks that queue_directory exists, and reads a
 * master.cf next to main.cf (common/conf/master-cf.c): a syntax error is an error, each entry
 * Postern does not act on says "not supported" with the reason, and a pipe(8) entry's attributes
 * are checked (common/conf/master-pipe.c: an unknown flag, a missing or root user=, a missing
 * argv= are errors). Silent with exit 0 when all is well; exit 1 when anything is an error
 * (invalid values, tables that cannot be opened, a missing queue directory, a master.cf that does
 * not parse or a pipe entry that is wrong).
 *
 *   posternctl check [-c DIR]    (DIR/main.cf instead of $POSTERN_CONFIG or the default) */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/conf.h"
#include "conf/master-cf.h"
#include "conf/master-inet.h"
#include "conf/master-pipe.h"
#include "conf/table.h"
#include "mail/addr-class.h"
#include "posternctl.h"

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

/* The transports Postern runs without a master.cf (daemons/qmgr/qmgr-route.c), and the command
 * each stands for in Postfix's stock master.cf. */
static bool own_transport(const MasterEntry *e) {
        static const char *const own[][2] = {
                { "smtp", "smtp" }, { "relay", "smtp" }, { "lmtp", "lmtp" }, { "local", "local" },
                { "virtual", "virtual" }, { "error", "error" }, { "retry", "error" }, { "discard", "discard" },
        };
        for (size_t i = 0; i < ELEMENTSOF(own); i++)
                if (streq(e->service, own[i][0]) && streq(e->command, own[i][1]))
                        return true;
        return false;
}

/* What postern-generator does not make of master.cf's listeners, and why (the classification
 * is common/conf/master-inet.c, shared with the generator); their -o options are reported by
 * conf_load(). */
static int check_master_listeners(Conf *c, const char *path, const MasterCf *m) {
        _cleanup_strv_free_ char **interfaces = conf_get_list(c, NULL, "inet_interfaces");
        MasterInetPlan p = {};
        if (!interfaces || master_inet_plan(m, interfaces, conf_get(c, "inet_protocols"), &p) < 0)
                return fprintf(stderr, "posternctl: out of memory\n"), 1;
        for (size_t i = 0; i < p.n; i++)
                if (p.v[i].note)
                        fprintf(stderr, "posternctl: %s:%u: %s: %s%s\n", path, p.v[i].entry->line, p.v[i].entry->service,
                                p.v[i].map == MASTER_INET_SKIP ? "not supported: " : "", p.v[i].note);
        master_inet_plan_done(&p);
        return 0;
}

/* Reads <config_directory>/master.cf when there is one and says what of it is not used. */
static int check_master_cf(Conf *c) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        MasterCf m = {};

        if (asprintf(&path, "%s/master.cf", conf_get(c, "config_directory")) < 0)
                return fprintf(stderr, "posternctl: out of memory\n"), 1;
        int r = master_cf_load(path, &m, &err);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                fprintf(stderr, "posternctl: %s\n", err ? err : strerror(-r));
                return 1;
        }
        int ret = 0;
        for (size_t i = 0; i < m.n; i++) {
                const MasterEntry *e = &m.entries[i];
                if (e->kind == MASTER_TRANSPORT && streq(e->command, "pipe")) {
                        /* postern-local's pipe socket runs these (daemons/local/README.md) */
                        PipeSpec p = {};
                        _cleanup_free_ char *why = NULL;
                        r = pipe_spec_parse(e, &p, &why);
                        if (r < 0) {
                                fprintf(stderr, "posternctl: %s:%u: %s: %s\n", path, e->line, e->service,
                                        why ? why : strerror(-r));
                                ret = 1;
                        }
                        /* An unknown user= is not reported: Debian's stock master.cf lists entries
                         * for packages most sites never install (maildrop, ifmail, bsmtp); mail
                         * routed to one is deferred with the reason. */
                        pipe_spec_done(&p);
                }
                if (e->kind == MASTER_UNKNOWN)
                        fprintf(stderr, "posternctl: %s:%u: %s: not supported: command \"%s\" (%s) is not "
                                "part of Postern; run it as a service of its own\n", path, e->line, e->service,
                                e->command, e->type);
                else if (e->kind == MASTER_TRANSPORT && !own_transport(e) && !streq(e->command, "pipe"))
                        fprintf(stderr, "posternctl: %s:%u: %s: not supported: transports defined in "
                                "master.cf (here %s) are not used yet; mail routed to %s is deferred\n",
                                path, e->line, e->service, e->command, e->service);
                else if (e->kind == MASTER_TRANSPORT)
                        for (size_t k = 0; k < e->n_options; k++)
                                fprintf(stderr, "posternctl: %s:%u: %s: not supported: -o %s: master.cf "
                                        "options are not applied; set it in main.cf\n", path, e->line,
                                        e->service, e->options[k].name);
        }
        ret |= check_master_listeners(c, path, &m);
        master_cf_done(&m);
        return ret;
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

/* `posternctl check`: report configuration problems; silent when there are none. */
int verb_check(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_free_ char *path = NULL;
        int opt;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0)
                switch (opt) {
                case 'c':
                        free(path);
                        if (asprintf(&path, "%s/main.cf", optarg) < 0)
                                return fprintf(stderr, "posternctl: out of memory\n"), 1;
                        break;
                case 'h':
                        printf("Usage: posternctl check [-c DIR]\n"
                               "Checks main.cf, the alias and local recipient tables, the queue directory and a\n"
                               "master.cf next to main.cf.\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "posternctl: check takes no arguments\n");
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
        ret |= check_directory(c, "queue_directory");
        ret |= check_master_cf(c);
        return ret;
}
