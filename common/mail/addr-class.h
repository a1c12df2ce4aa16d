/* addr-class.h — Postfix's address classes (ADDRESS_CLASS_README): the class of a recipient's
 * domain decides the transport that delivers it and the table that lists its valid recipients.
 *
 *   class            domains                                 transport          valid recipients
 *   local            mydestination; [address] literals of   local_transport    local_recipient_maps
 *                    this host's addresses ($inet_interfaces,
 *                    $proxy_interfaces: host-addresses.h);
 *                    no domain
 *   virtual alias    virtual_alias_domains                   (none: aliases)    virtual_alias_maps
 *   virtual mailbox  virtual_mailbox_domains                 virtual_transport  virtual_mailbox_maps
 *   relay            relay_domains (and their subdomains)    relay_transport    relay_recipient_maps
 *   default          anything else                           default_transport  (not checked)
 *
 * The first class in that order that lists the domain wins. A domain in more than one of
 * mydestination, virtual_alias_domains and virtual_mailbox_domains is a configuration mistake
 * Postfix warns about: addr_classes_classify() hands that warning back the first time it sees
 * the domain (the caller logs it; this module never logs). A table that cannot be read is an
 * error (<0), never a class: callers answer 4xx or defer. A list whose table could not even be
 * opened is kept "broken": classifying a domain that reaches it answers its error, and
 * addr_classes_problem() names it so the daemon logs it once at load.
 *
 * Used by postern-smtpd (recipient validation, relay control) and postern-qmgr (routing). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "domain-list.h"
#include "host-addresses.h"
#include "../conf/conf.h"

typedef enum AddressClass {
        ADDR_CLASS_LOCAL,
        ADDR_CLASS_VIRTUAL_ALIAS,
        ADDR_CLASS_VIRTUAL_MAILBOX,
        ADDR_CLASS_RELAY,
        ADDR_CLASS_DEFAULT,
} AddressClass;

#define ADDR_CLASS_LISTS ADDR_CLASS_DEFAULT   /* classes with a domain list */
#define ADDR_CLASS_WARN_MAX 64                /* domains remembered as warned about */

typedef struct AddrClasses {
        DomainList lists[ADDR_CLASS_LISTS];   /* by class */
        int errors[ADDR_CLASS_LISTS];         /* <0: the list is broken (a table did not open) */
        char *problems[ADDR_CLASS_LISTS];     /* ... and why, naming parameter and table */
        HostAddresses own;                    /* $inet_interfaces, $proxy_interfaces: [address] literals */
        char *warned[ADDR_CLASS_WARN_MAX];    /* domains whose overlap was reported */
        size_t n_warned;
} AddrClasses;

/* The parameter that lists the domains of a class ("mydestination", ...; NULL for default). */
const char *addr_class_param(AddressClass c);
/* A short name for logs: "local", "virtual alias", "virtual mailbox", "relay", "default". */
const char *addr_class_name(AddressClass c);

/* Builds the classes from list values (as conf_get_list() returns them, by class; NULL = empty)
 * and inet_interfaces (this host's addresses as host-addresses.h reads them: [address] literals
 * of its numeric entries, of the loopback addresses for loopback-only and of every interface
 * address for "all" are local; host names add nothing).
 * Fails only for -ENOMEM and entries that are not supported at all (-EOPNOTSUPP, *ret_reason
 * names them); a table that does not open breaks its list (see above). */
int addr_classes_init(AddrClasses *ac, char **const lists[ADDR_CLASS_LISTS], char **inet_interfaces,
                      char **ret_reason);
/* The same from main.cf (mydestination, virtual_alias_domains, virtual_mailbox_domains,
 * relay_domains, inet_interfaces and proxy_interfaces; listener overrides apply when listener
 * is not NULL). */
int addr_classes_load(AddrClasses *ac, Conf *c, const char *listener, char **ret_reason);
void addr_classes_done(AddrClasses *ac);
/* Why the list of class c is broken, or NULL. */
const char *addr_classes_problem(const AddrClasses *ac, AddressClass c);

/* Whether mydestination (or an [address] literal of this host's addresses) lists
 * domain, without the other classes: 1 yes, 0 no, <0 the list could not be read. For Postfix's
 * resolve_local() tests (canonical and virtual(5) "user" keys). */
int addr_classes_local(AddrClasses *ac, const char *domain);

/* The class of domain (NULL or "": an address without a domain, which is local): 0 and
 * *ret_class, or <0 when a list that decides could not be read. *ret_warning (may be NULL;
 * caller frees) is set the first time a domain turns out to be in more than one class. */
int addr_classes_classify(AddrClasses *ac, const char *domain, AddressClass *ret_class, char **ret_warning);
