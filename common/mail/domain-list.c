/* domain-list.c — mydestination / relay_domains style domain lists. See domain-list.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "../conf/conf.h"

#include "domain-list.h"
#include "address.h"

/* Entries written with U-labels ("bücher.example", ".bücher.example") are kept as A-labels,
 * the form address.c gives every domain, so both spellings of a domain match. */
static int domain_list_alabel(char **name) {
        char *d = *name;
        bool ascii = true;
        for (const char *p = d; *p; p++)
                if ((unsigned char) *p >= 0x80)
                        ascii = false;
        if (ascii)
                return 0;
        bool dot = d[0] == '.';
        _cleanup_free_ char *norm = NULL;
        const char *why = NULL;
        int r = domain_normalise(d + dot, true, &norm, &why);
        if (r < 0)
                return r;
        char *out = NULL;
        if (asprintf(&out, "%s%s", dot ? "." : "", norm) < 0)
                return -ENOMEM;
        free(d);
        *name = out;
        return 0;
}

int domain_list_init(DomainList *dl, char **given, bool parent_matches, char **ret_reason) {
        DomainList n = { .parent_matches = parent_matches };
        _cleanup_strv_free_ char **entries = NULL;
        size_t count = 0;
        int r;

        if ((r = conf_list_expand_files(given, &entries, ret_reason)) < 0)
                return r;
        for (char **i = entries; i && *i; i++)
                count++;
        n.names = calloc(count + 1, sizeof(char *));
        n.tables = calloc(count + 1, sizeof(Table *));
        if (!n.names || !n.tables) {
                domain_list_done(&n);
                return -ENOMEM;
        }
        size_t nn = 0;
        for (char **i = entries; i && *i; i++) {
                if (strchr(*i, ':')) {
                        _cleanup_free_ char *why = NULL;
                        r = table_open(*i, 0, &n.tables[n.n_tables], &why);
                        if (r < 0) {
                                if (ret_reason && asprintf(ret_reason, "%s: %s", *i, why ? why : strerror(-r)) < 0)
                                        *ret_reason = NULL;
                                domain_list_done(&n);
                                return r;
                        }
                        n.n_tables++;
                        continue;
                }
                char *d = strdup(*i);
                if (!d) {
                        domain_list_done(&n);
                        return -ENOMEM;
                }
                for (char *p = d; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                size_t l = strlen(d);
                if (l > 1 && d[l - 1] == '.')
                        d[l - 1] = '\0';
                r = domain_list_alabel(&d);
                if (r < 0) {
                        if (ret_reason && asprintf(ret_reason, "%s: bad internationalised domain name", *i) < 0)
                                *ret_reason = NULL;
                        free(d);
                        domain_list_done(&n);
                        return r;
                }
                n.names[nn++] = d;
        }
        *dl = n;
        return 0;
}

void domain_list_done(DomainList *dl) {
        strv_free(dl->names);
        for (size_t i = 0; i < dl->n_tables; i++)
                table_free(dl->tables[i]);
        free(dl->tables);
        *dl = (DomainList) {};
}

static bool name_matches(const char *name, const char *domain, size_t dl, bool parent) {
        size_t nl = strlen(name);
        if (name[0] == '.')
                return dl > nl && strncasecmp(domain + dl - nl, name, nl) == 0;
        if (dl == nl && strncasecmp(name, domain, dl) == 0)
                return true;
        return parent && dl > nl + 1 && domain[dl - nl - 1] == '.' &&
               strncasecmp(domain + dl - nl, name, nl) == 0;
}

int domain_list_match(DomainList *dl, const char *domain) {
        if (isempty(domain) || domain[0] == '[')
                return 0;
        size_t len = strlen(domain);
        if (len > 1 && domain[len - 1] == '.')
                len--;
        for (char **n = dl->names; n && *n; n++)
                if (name_matches(*n, domain, len, dl->parent_matches))
                        return 1;
        if (dl->n_tables == 0)
                return 0;
        _cleanup_free_ char *key = strndup(domain, len);
        if (!key)
                return -ENOMEM;
        for (size_t i = 0; i < dl->n_tables; i++) {
                const char *d = key;
                while (d) {
                        _cleanup_free_ char *v = NULL;
                        int r = table_lookup(dl->tables[i], d, &v);
                        if (r != 0)
                                return r;
                        if (!dl->parent_matches)
                                break;
                        d = strchr(d, '.');
                        if (d)
                                d++;
                }
        }
        return 0;
}
