/* addr-class.c — Postfix's address classes. See addr-class.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr-class.h"

static const char *const class_params[ADDR_CLASS_LISTS] = {
        [ADDR_CLASS_LOCAL] = "mydestination",
        [ADDR_CLASS_VIRTUAL_ALIAS] = "virtual_alias_domains",
        [ADDR_CLASS_VIRTUAL_MAILBOX] = "virtual_mailbox_domains",
        [ADDR_CLASS_RELAY] = "relay_domains",
};

static const char *const class_names[] = {
        [ADDR_CLASS_LOCAL] = "local",
        [ADDR_CLASS_VIRTUAL_ALIAS] = "virtual alias",
        [ADDR_CLASS_VIRTUAL_MAILBOX] = "virtual mailbox",
        [ADDR_CLASS_RELAY] = "relay",
        [ADDR_CLASS_DEFAULT] = "default",
};

const char *addr_class_param(AddressClass c) {
        return c < ADDR_CLASS_LISTS ? class_params[c] : NULL;
}

const char *addr_class_name(AddressClass c) {
        return c <= ADDR_CLASS_DEFAULT ? class_names[c] : "?";
}

int addr_classes_init(AddrClasses *ac, char **const lists[ADDR_CLASS_LISTS], char **inet_interfaces,
                      char **ret_reason) {
        AddrClasses n = {};
        int r;

        for (AddressClass c = 0; c < ADDR_CLASS_LISTS; c++) {
                _cleanup_free_ char *why = NULL;
                r = domain_list_init(&n.lists[c], lists[c], c == ADDR_CLASS_RELAY, &why);
                if (r == -ENOMEM || r == -EOPNOTSUPP) {
                        if (ret_reason && asprintf(ret_reason, "%s: %s", class_params[c],
                                                   why ? why : strerror(-r)) < 0)
                                *ret_reason = NULL;
                        addr_classes_done(&n);
                        return r;
                }
                if (r < 0) {
                        n.errors[c] = r;
                        if (asprintf(&n.problems[c], "%s: %s", class_params[c], why ? why : strerror(-r)) < 0) {
                                n.problems[c] = NULL;
                                addr_classes_done(&n);
                                return -ENOMEM;
                        }
                }
        }
        if ((r = host_addresses_add(&n.own, inet_interfaces, NULL)) < 0) {
                addr_classes_done(&n);
                return r;
        }
        *ac = n;
        return 0;
}

int addr_classes_load(AddrClasses *ac, Conf *c, const char *listener, char **ret_reason) {
        char **lists[ADDR_CLASS_LISTS] = {};
        int r = 0;

        for (AddressClass k = 0; k < ADDR_CLASS_LISTS && r >= 0; k++)
                if (!(lists[k] = conf_get_list(c, listener, class_params[k])))
                        r = -ENOMEM;
        if (r >= 0)
                r = addr_classes_init(ac, lists, NULL, ret_reason);
        if (r >= 0 && (r = host_addresses_load(&ac->own, c, listener, true, NULL)) < 0)
                addr_classes_done(ac);
        for (AddressClass k = 0; k < ADDR_CLASS_LISTS; k++)
                strv_free(lists[k]);
        return r;
}

void addr_classes_done(AddrClasses *ac) {
        for (AddressClass c = 0; c < ADDR_CLASS_LISTS; c++) {
                domain_list_done(&ac->lists[c]);
                free(ac->problems[c]);
        }
        host_addresses_done(&ac->own);
        for (size_t i = 0; i < ac->n_warned; i++)
                free(ac->warned[i]);
        *ac = (AddrClasses) {};
}

const char *addr_classes_problem(const AddrClasses *ac, AddressClass c) {
        return c < ADDR_CLASS_LISTS ? ac->problems[c] : NULL;
}

/* 1 = the list of class c has domain, 0 = not, <0 = it could not be read. */
static int list_match(AddrClasses *ac, AddressClass c, const char *domain) {
        if (ac->errors[c] < 0)
                return ac->errors[c];
        if (c == ADDR_CLASS_LOCAL && domain[0] == '[')
                return host_addresses_has_literal(&ac->own, domain);
        return domain_list_match(&ac->lists[c], domain);
}

int addr_classes_local(AddrClasses *ac, const char *domain) {
        return isempty(domain) ? 0 : list_match(ac, ADDR_CLASS_LOCAL, domain);
}

/* The overlap warning, once per domain (the first ADDR_CLASS_WARN_MAX domains are remembered;
 * later ones are not warned about at all rather than on every message). */
static int overlap_warning(AddrClasses *ac, const char *domain, AddressClass won, AddressClass also,
                           char **ret_warning) {
        for (size_t i = 0; i < ac->n_warned; i++)
                if (strcaseeq(ac->warned[i], domain))
                        return 0;
        if (ac->n_warned >= ADDR_CLASS_WARN_MAX)
                return 0;
        char *d = strdup(domain);
        if (!d)
                return -ENOMEM;
        ac->warned[ac->n_warned++] = d;
        if (!ret_warning)
                return 0;
        if (asprintf(ret_warning, "domain %s is listed in both %s and %s: a domain belongs to one "
                     "address class; treating it as %s (remove it from %s)", domain, class_params[won],
                     class_params[also], class_names[won], class_params[also]) < 0) {
                *ret_warning = NULL;
                return -ENOMEM;
        }
        return 0;
}

int addr_classes_classify(AddrClasses *ac, const char *domain, AddressClass *ret_class, char **ret_warning) {
        if (ret_warning)
                *ret_warning = NULL;
        if (isempty(domain)) {
                *ret_class = ADDR_CLASS_LOCAL;
                return 0;
        }
        for (AddressClass c = 0; c < ADDR_CLASS_LISTS; c++) {
                int r = list_match(ac, c, domain);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                /* Postfix warns about a domain in two of the first three classes (relay_domains
                 * once defaulted to $mydestination, so that overlap is ordinary). Whether a later
                 * list can be read does not change the answer, so its errors are ignored here. */
                for (AddressClass o = c + 1; o < ADDR_CLASS_RELAY; o++)
                        if (list_match(ac, o, domain) > 0) {
                                if ((r = overlap_warning(ac, domain, c, o, ret_warning)) < 0)
                                        return r;
                                break;
                        }
                *ret_class = c;
                return 0;
        }
        *ret_class = ADDR_CLASS_DEFAULT;
        return 0;
}
