/* posternctl-master.c — `posternctl config -M|-F|-P`: the master.cf entries Postern reads, shown
 * the way postconf shows them:
 *
 *   -M [service[/type]...]               each entry on one line, -o options included
 *   -F [service[/type[/field]]...]       "service/type/field = value" for the eight fields
 *   -P [service[/type[/parameter]]...]   "service/type/parameter = value" for the -o options
 *
 * With -h only the values are printed. master.cf is $config_directory/master.cf; editing it
 * (postconf -Me, -Fe, -Pe, -M#, -MX) is not supported: it is a file the admin edits, read by
 * postern-generator and the daemons. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/master-cf.h"
#include "posternctl.h"

static const char *const field_names[] = {
        "service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit", "command",
};

/* Whether pattern ("service", "service/type" or "service/type/name") selects e (and, with a
 * third part, which name: *ret_name, NULL for all). */
static bool master_selects(const MasterEntry *e, const char *pattern, const char **ret_name) {
        *ret_name = NULL;
        size_t sl = strcspn(pattern, "/");
        if (strlen(e->service) != sl || strncmp(pattern, e->service, sl) != 0)
                return false;
        if (!pattern[sl])
                return true;
        const char *type = pattern + sl + 1;
        size_t tl = strcspn(type, "/");
        if (strlen(e->type) != tl || strncmp(type, e->type, tl) != 0)
                return false;
        if (type[tl])
                *ret_name = type + tl + 1;
        return true;
}

static char *master_command_line(const MasterEntry *e) {
        char *line = strdup(e->command);
        for (char **a = e->args; line && a && *a; a++) {
                char *n = NULL;
                bool spaced = strpbrk(*a, " \t") != NULL;
                if (asprintf(&n, spaced ? "%s { %s }" : "%s %s", line, *a) < 0)
                        n = NULL;
                free(line);
                line = n;
        }
        return line;
}

static int master_field(const MasterEntry *e, size_t i, char **ret) {
        char buf[32];
        const char *v = NULL;
        switch (i) {
        case 0: v = e->service; break;
        case 1: v = e->type; break;
        case 2: case 3: case 4: case 5: v = e->fields[i - 2]; break;
        case 6:
                if (e->maxproc < 0)
                        v = "-";
                else {
                        snprintf(buf, sizeof buf, "%d", e->maxproc);
                        v = buf;
                }
                break;
        default:
                return (*ret = master_command_line(e)) ? 0 : -ENOMEM;
        }
        return (*ret = strdup(v ? v : "-")) ? 0 : -ENOMEM;
}

static void master_print(bool values_only, const MasterEntry *e, const char *name, const char *value) {
        if (values_only)
                printf("%s\n", value);
        else
                printf("%s/%s/%s = %s\n", e->service, e->type, name, value);
}

static int master_show_entry(char mode, bool values_only, const MasterEntry *e, const char *only) {
        int found = 0;
        if (mode == 'M') {
                _cleanup_free_ char *cmd = master_command_line(e);
                if (!cmd)
                        return -ENOMEM;
                _cleanup_free_ char *maxproc = NULL;
                if (master_field(e, 6, &maxproc) < 0)
                        return -ENOMEM;
                printf("%-10s %-5s %-7s %-7s %-7s %-7s %-7s %s", e->service, e->type, e->fields[0], e->fields[1],
                       e->fields[2], e->fields[3], maxproc, cmd);
                for (size_t i = 0; i < e->n_options; i++)
                        printf(strpbrk(e->options[i].value, " \t,") ? " -o { %s = %s }" : " -o %s=%s",
                               e->options[i].name, e->options[i].value);
                putchar('\n');
                return 1;
        }
        if (mode == 'F') {
                for (size_t i = 0; i < ELEMENTSOF(field_names); i++) {
                        if (only && !streq(only, field_names[i]))
                                continue;
                        _cleanup_free_ char *v = NULL;
                        if (master_field(e, i, &v) < 0)
                                return -ENOMEM;
                        master_print(values_only, e, field_names[i], v);
                        found++;
                }
                return found;
        }
        for (size_t i = 0; i < e->n_options; i++) {
                if (only && !streq(only, e->options[i].name))
                        continue;
                /* the last -o of a name wins: show only that one */
                if (master_entry_option(e, e->options[i].name) != e->options[i].value)
                        continue;
                master_print(values_only, e, e->options[i].name, e->options[i].value);
                found++;
        }
        return found || !only ? 1 : 0;
}

int posternctl_config_master(Conf *c, char mode, bool values_only, char **args, int nargs) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/master.cf", conf_get(c, "config_directory")) < 0)
                return fprintf(stderr, "posternctl: out of memory\n"), 1;
        MasterCf m = {};
        _cleanup_free_ char *err = NULL;
        int r = master_cf_load(path, &m, &err);
        if (r == -ENOENT) {
                fprintf(stderr, "posternctl: %s: no such file\n", path);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "posternctl: %s\n", err ? err : strerror(-r));
                return 1;
        }
        int ret = 0;
        for (int a = 0; a < (nargs ? nargs : 1) && ret == 0; a++) {
                int shown = 0;
                for (size_t i = 0; i < m.n && r >= 0; i++) {
                        const char *only = NULL;
                        if (nargs && !master_selects(&m.entries[i], args[a], &only))
                                continue;
                        if (mode == 'M' && only)
                                continue;
                        r = master_show_entry(mode, values_only, &m.entries[i], only);
                        shown += r > 0;
                }
                if (r < 0) {
                        fprintf(stderr, "posternctl: out of memory\n");
                        ret = 1;
                } else if (nargs && !shown) {
                        fprintf(stderr, "posternctl: warning: %s: no such master.cf entry%s\n", args[a],
                                mode == 'M' ? "" : mode == 'F' ? " or field" : " or -o parameter");
                        ret = 1;
                }
        }
        master_cf_done(&m);
        return ret;
}
