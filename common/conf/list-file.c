/* list-file.c — "/file/name" entries of Postfix list parameters (mydestination, relay_domains,
 * mynetworks, ...): each is replaced by the words of the file, as Postfix reads it in place of the
 * entry — names, networks or type:name tables separated by blanks or commas, "#" comment lines.
 * A file may not name another file. Read each time a list is built, so a reload reads it again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "conf.h"

/* Appends the words of a "/file" entry (names or type:name tables, separated by blanks or
 * commas; "#" comment lines) to *words, as Postfix reads such a file in place of the entry. */
static int list_read_file(const char *path, char ***words, size_t *n, char **ret_reason) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                if (ret_reason && asprintf(ret_reason, "%s: cannot open: %s", path, strerror(-r)) < 0)
                        *ret_reason = NULL;
                return r;
        }
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) >= 0) {
                const char *p = line + strspn(line, " \t");
                if (*p == '#')
                        continue;
                _cleanup_strv_free_ char **v = conf_split_list(p);
                if (!v)
                        return -ENOMEM;
                for (char **w = v; *w; w++) {
                        if ((*w)[0] == '/') {
                                if (ret_reason && asprintf(ret_reason, "%s: %s: a file of list entries may not name "
                                                           "another file", path, *w) < 0)
                                        *ret_reason = NULL;
                                return -EOPNOTSUPP;
                        }
                        char **nv = reallocarray(*words, *n + 2, sizeof(char *));
                        if (!nv)
                                return -ENOMEM;
                        *words = nv;
                        if (!(nv[*n] = strdup(*w)))
                                return -ENOMEM;
                        nv[++*n] = NULL;
                }
        }
        if (ferror(f)) {
                if (ret_reason && asprintf(ret_reason, "%s: cannot read", path) < 0)
                        *ret_reason = NULL;
                return -EIO;
        }
        return 0;
}

int conf_list_expand_files(char **entries, char ***ret, char **ret_reason) {
        _cleanup_strv_free_ char **words = calloc(1, sizeof(char *));
        size_t n = 0;
        if (!words)
                return -ENOMEM;
        for (char **i = entries; i && *i; i++) {
                int r;
                if ((*i)[0] == '/')
                        r = list_read_file(*i, &words, &n, ret_reason);
                else {
                        char **nv = reallocarray(words, n + 2, sizeof(char *));
                        if (!nv)
                                return -ENOMEM;
                        words = nv;
                        r = (words[n] = strdup(*i)) ? 0 : -ENOMEM;
                        if (r == 0)
                                words[++n] = NULL;
                }
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(words);
        return 0;
}

/* The list parameters whose "/file/name" entries their daemons read as files (for posternctl
 * config -x and the documentation); kept in step with the callers of conf_list_expand_files()
 * (domain_list_init(), smtpd_netlist_parse()). */
static const char *const file_lists[] = {
        "mydestination", "mynetworks", "relay_domains", "smtpd_client_event_limit_exceptions",
        "smtpd_forbid_bare_newline_exclusions", "virtual_alias_domains", "virtual_mailbox_domains",
};

bool conf_list_reads_files(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(file_lists); i++)
                if (strcmp(file_lists[i], name) == 0)
                        return true;
        return false;
}
