/* qmgr-route.c — which transport a recipient goes to.
 *
 * The recipient's domain decides its address class (common/mail/addr-class.h; a recipient
 * without a domain is local), and the class its transport, as Postfix's trivial-rewrite does:
 *
 *   local            (mydestination)            $local_transport, next hop $myhostname
 *   virtual alias    (virtual_alias_domains)    bounced: "5.1.1 User unknown in virtual alias
 *                    table" (every such address should have been rewritten by virtual_alias_maps
 *                    before it was queued; one left over, even aliased to itself, has no mailbox)
 *   virtual mailbox  (virtual_mailbox_domains)  $virtual_transport, next hop the domain
 *   relay            (relay_domains)            $relay_transport
 *   default                                     $default_transport
 *
 * For relay and default routes the next hop is $relayhost, or the recipient domain when
 * relayhost is empty. Address literals ("[192.0.2.1]") are local when they name one of this host's
 * addresses ($inet_interfaces and $proxy_interfaces; "all" means every interface's:
 * common/mail/host-addresses.c).
 *
 * relocated_maps (looked up as relocated(5) says: user@domain, user for local domains and
 * $myorigin, @domain, each also without the recipient_delimiter extension) bounces the recipient
 * with "5.1.6 User has moved to <new location>", in every class. Neither that nor the virtual
 * alias bounce is overridden by transport_maps (as in Postfix).
 *
 * qmgr_route_transport() then applies transport_maps: looked up with the full address, then the
 * domain, then ".parent" domains, then "*"; its "transport:nexthop" replaces either part that is
 * not empty. Transports: "local", "smtp", "relay" (delivered by postern-smtp, as in Postfix's stock
 * master.cf, with its own relay_* scheduler limits), "lmtp", "error" (bounce with the text),
 * "retry" (defer with the text, Postfix's retry(8)) and "discard" (delivered, nothing sent); a
 * pipe(8) transport of master.cf goes to postern-local's "pipe" socket and an smtp or lmtp one
 * to postern-smtp's socket of that protocol, with transport=<name> (qmgr_sched_agent()); a
 * master.cf local, virtual, error or discard entry is routed as that built-in transport
 * (qmgr_route_transport() below); any other name (e.g. "virtual") is sent to the agent socket
 * of that name. A table that fails
 * defers the recipient (4.3.0) rather than guess. A randmap:{...} among transport_maps picks one
 * of its values at random (load balancing).
 *
 * Sender-dependent routing (Postfix's sender_dependent_*_maps), for relay and default routes:
 * sender_dependent_default_transport_maps replaces $default_transport (not $relay_transport) and
 * sender_dependent_relayhost_maps replaces $relayhost (for relay and default routes whose
 * transport names no next hop); both are searched with the envelope sender, then "@domain" (the
 * null sender uses the empty_address_*_lookup_key); a result of DUNNO ends the search without an
 * override. transport_maps still wins over both.
 *
 * A message with a content filter (messages.filter, from a FILTER action: "transport:nexthop")
 * goes there for every recipient, local or not; "transport:" without a next hop goes to
 * $default_filter_nexthop, or when that is empty keeps the next hop normal routing picks and only
 * replaces the transport (Postfix 2.7's sender reputation form, seed 003; Postfix's qmgr does the
 * same with the next hop trivial-rewrite resolved). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf-fields.h"
#include "log/log.h"
#include "mail/addr-find.h"
#include "qmgr.h"

/* The parameters routing reads: qmgr.c loads them with the rest of its settings, `posternctl
 * route` alone (with the address classes). The ones address verification probes replace come
 * in two tables with the same fields: the normal parameters, and Postfix's address_verify_*
 * overrides (each defaults to the parameter it replaces). */
#define F(...) CONF_FIELD(QmgrSettings, __VA_ARGS__)
static const ConfField route_fields[] = {
        F("myhostname", STRING, myhostname),
        F("myorigin", STRING, myorigin),
        F("recipient_delimiter", STRING, recipient_delimiter),
        F("default_filter_nexthop", STRING, default_filter_nexthop),
        F("relocated_maps", TABLES, relocated_maps),
        F("empty_address_relayhost_maps_lookup_key", STRING, empty_relayhost_key),
        F("empty_address_default_transport_maps_lookup_key", STRING, empty_default_transport_key),
};
static const ConfField route_mail_fields[] = {
        F("local_transport", STRING, local_transport),
        F("relay_transport", STRING, relay_transport),
        F("default_transport", STRING, default_transport),
        F("virtual_transport", STRING, virtual_transport),
        F("relayhost", STRING, relayhost),
        F("transport_maps", TABLES, transport_maps, .flags = TABLE_REGSUB_SAFE),
        F("sender_dependent_relayhost_maps", TABLES, sender_relayhost_maps, .flags = TABLE_REGSUB_SAFE),
        F("sender_dependent_default_transport_maps", TABLES, sender_default_transport_maps,
          .flags = TABLE_REGSUB_SAFE),
};
static const ConfField route_probe_fields[] = {
        F("address_verify_local_transport", STRING, local_transport),
        F("address_verify_relay_transport", STRING, relay_transport),
        F("address_verify_default_transport", STRING, default_transport),
        F("address_verify_virtual_transport", STRING, virtual_transport),
        F("address_verify_relayhost", STRING, relayhost),
        F("address_verify_transport_maps", TABLES, transport_maps, .flags = TABLE_REGSUB_SAFE),
        F("address_verify_sender_dependent_relayhost_maps", TABLES, sender_relayhost_maps,
          .flags = TABLE_REGSUB_SAFE),
        F("address_verify_sender_dependent_default_transport_maps", TABLES, sender_default_transport_maps,
          .flags = TABLE_REGSUB_SAFE),
};
#undef F
_Static_assert(ELEMENTSOF(route_mail_fields) == ELEMENTSOF(route_probe_fields), "one override per parameter");

int qmgr_route_fields_load(QmgrSettings *s, Conf *c) {
        int r = conf_fields_load(c, NULL, route_fields, ELEMENTSOF(route_fields), s);
        if (r >= 0)
                r = conf_fields_load(c, NULL, route_mail_fields, ELEMENTSOF(route_mail_fields), s);
        return r;
}

void qmgr_route_fields_done(QmgrSettings *s) {
        qmgr_route_probe_done(s);
        conf_fields_done(route_fields, ELEMENTSOF(route_fields), s);
        conf_fields_done(route_mail_fields, ELEMENTSOF(route_mail_fields), s);
}

/* The settings probes are routed with: a copy of s whose overridden fields are the
 * address_verify_* values (the rest is s's own, borrowed: s->probe lives and dies with s). */
int qmgr_route_probe_load(QmgrSettings *s, Conf *c) {
        QmgrSettings *p = malloc(sizeof(QmgrSettings));
        if (!p)
                return log_oom();
        *p = *s;
        p->probe = NULL;
        for (size_t i = 0; i < ELEMENTSOF(route_probe_fields); i++)
                *(void **) ((char *) p + route_probe_fields[i].offset) = NULL;
        int r = conf_fields_load(c, NULL, route_probe_fields, ELEMENTSOF(route_probe_fields), p);
        if (r < 0) {
                conf_fields_done(route_probe_fields, ELEMENTSOF(route_probe_fields), p);
                free(p);
                return r;
        }
        qmgr_route_probe_done(s);
        s->probe = p;
        return 0;
}

/* Frees s->probe (what qmgr_route_probe_load() allocated). */
void qmgr_route_probe_done(QmgrSettings *s) {
        if (!s->probe)
                return;
        conf_fields_done(route_probe_fields, ELEMENTSOF(route_probe_fields), s->probe);
        free(s->probe);
        s->probe = NULL;
}

void qmgr_route_settings_done(QmgrSettings *s) {
        qmgr_route_fields_done(s);
        addr_classes_done(&s->classes);
        qmgr_sched_settings_done(&s->sched);
        *s = (QmgrSettings) {};
}

/* What `posternctl route` needs: the routing fields, the address classes and the master.cf
 * transports (a master.cf that cannot be used is left out, as qmgr does; posternctl check says
 * why). */
int qmgr_route_settings_load(QmgrSettings *s, Conf *c, char **ret_reason) {
        _cleanup_free_ char *merr = NULL;
        int r = qmgr_route_fields_load(s, c);
        if (r < 0)
                return r;
        if ((r = qmgr_sched_settings_load_master(&s->sched, c, &merr)) < 0)
                return r;
        return addr_classes_load(&s->classes, c, NULL, ret_reason);
}

/* The domain of an external-form address, or NULL when it has none. */
const char *qmgr_address_domain(const char *address) {
        if (isempty(address))
                return NULL;
        size_t l = strlen(address);
        /* "\"a@b\"" is a quoted local part without a domain. */
        if (address[l - 1] == '"')
                return NULL;
        const char *at = strrchr(address, '@');
        if (!at || at[1] == '\0')
                return NULL;
        return at + 1;
}

/* The class of a domain; logs the overlap warning the first time a domain shows one. */
static int route_class(const QmgrSettings *s, const char *domain, AddressClass *ret) {
        _cleanup_free_ char *warning = NULL;
        int r = addr_classes_classify((AddrClasses *) &s->classes, domain, ret, &warning);
        if (warning)
                log_warning("%s", warning);
        if (r < 0 && r != -ENOMEM && r != -EINPROGRESS)
                log_warning_errno(r, "address class lookup of domain %s failed: %m", strempty(domain));
        return r;
}

/* Routes one recipient address: local or not (a domain whose lookup failed is not local). */
QmgrRoute qmgr_route(const QmgrSettings *s, const char *address) {
        AddressClass c;
        if (route_class(s, qmgr_address_domain(address), &c) < 0)
                return QMGR_ROUTE_UNAVAILABLE;
        return c == ADDR_CLASS_LOCAL ? QMGR_ROUTE_LOCAL : QMGR_ROUTE_UNAVAILABLE;
}

/* relocated_maps: 1 with *ret_text ("5.1.6 User has moved to ...") when address moved. */
static int relocated_lookup(const QmgrSettings *s, const char *address, const char *domain, AddressClass c,
                            char **ret_text) {
        if (!s->relocated_maps)
                return 0;
        _cleanup_free_ char *local = domain ? strndup(address, (size_t) (domain - address - 1)) : strdup(address);
        _cleanup_free_ char *where = NULL;
        if (!local)
                return -ENOMEM;
        AddrFindFlags f = c == ADDR_CLASS_LOCAL || (domain && strcaseeq(domain, strempty(s->myorigin))) ?
                          ADDR_FIND_LOCALPART : 0;
        int r = addr_find(s->relocated_maps, local, domain, s->recipient_delimiter, f, &where);
        if (r < 0 && r != -ENOMEM && r != -EINPROGRESS)
                log_warning_errno(r, "relocated_maps lookup of <%s> failed: %m", address);
        if (r <= 0)
                return r;
        if (asprintf(ret_text, "5.1.6 User has moved to %s", where) < 0)
                return -ENOMEM;
        return 1;
}

/* Splits "transport:nexthop" into parts (either may be empty). */
static int split_route(const char *value, char **ret_transport, char **ret_nexthop) {
        const char *colon = strchr(value, ':');
        size_t tl = colon ? (size_t) (colon - value) : strlen(value);
        char *t = strndup(value, tl);
        char *n = strdup(colon ? colon + 1 : "");
        if (!t || !n) {
                free(t);
                free(n);
                return -ENOMEM;
        }
        /* Surrounding blanks are not part of either (table values may carry them). */
        while (*t && isspace((unsigned char) t[strlen(t) - 1]))
                t[strlen(t) - 1] = '\0';
        *ret_transport = t;
        *ret_nexthop = n;
        return 0;
}

/* One lookup in a routing table (opened with TABLE_REGSUB_SAFE in qmgr.c: a regexp:/pcre: rule
 * whose $1..$9 would copy a separator or other unsafe text from the address into a transport or
 * next hop is skipped); logs the rules that were skipped. */
static int route_lookup(TableList *maps, const char *what, const char *key, char **ret_value) {
        _cleanup_(table_notes_done) TableNotes notes = {};
        int r = table_list_lookup_full(maps, key, ret_value, &notes);
        for (char **w = notes.warnings; w && *w; w++)
                log_warning("%s: %s", what, *w);
        return r;
}

/* transport_maps: the first of address, domain, .parent domains, "*" that is found. */
static int transport_lookup(const QmgrSettings *s, const char *address, const char *domain,
                            char **ret_value) {
        if (!s->transport_maps)
                return 0;
        _cleanup_free_ char *lower = strdup(address);
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        int r = route_lookup(s->transport_maps, "transport_maps", lower, ret_value);
        if (r != 0 || !domain)
                return r;
        const char *ld = lower + (domain - address);
        r = route_lookup(s->transport_maps, "transport_maps", ld, ret_value);
        for (const char *p = strchr(ld, '.'); r == 0 && p; p = strchr(p + 1, '.'))
                r = route_lookup(s->transport_maps, "transport_maps", p, ret_value);
        if (r == 0)
                r = route_lookup(s->transport_maps, "transport_maps", "*", ret_value);
        return r;
}

/* A sender_dependent_*_maps lookup: the sender (or the null-sender key), then "@domain".
 * 1 with *ret_value when found (DUNNO counts as not found), 0 when not, <0 on a table error. */
static int sender_lookup(TableList *maps, const char *what, const char *sender, const char *empty_key,
                         char **ret_value) {
        if (!maps)
                return 0;
        _cleanup_free_ char *key = strdup(isempty(sender) ? strempty(empty_key) : sender);
        if (!key)
                return -ENOMEM;
        for (char *p = key; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        _cleanup_free_ char *value = NULL;
        int r = isempty(key) ? 0 : route_lookup(maps, what, key, &value);
        const char *at = isempty(sender) ? NULL : strrchr(key, '@');
        if (r == 0 && at)
                r = route_lookup(maps, what, at, &value);
        if (r <= 0)
                return r;
        /* Values may carry blanks around them. */
        char *v = value;
        while (isspace((unsigned char) *v))
                v++;
        size_t l = strlen(v);
        while (l > 0 && isspace((unsigned char) v[l - 1]))
                l--;
        if (l == 0 || (l == 5 && strncasecmp(v, "DUNNO", 5) == 0))
                return 0;
        char *out = strndup(v, l);
        if (!out)
                return -ENOMEM;
        *ret_value = out;
        return 1;
}

/* Picks transport and next hop for a recipient before master.cf has its say; <0 on a table error. */
static int route_choose(const QmgrSettings *s, const QueueMessage *msg, const char *address,
                        char **ret_transport, char **ret_nexthop) {
        const char *sender = msg ? msg->sender : NULL;
        const char *filter = msg ? msg->filter : NULL;
        bool filter_hop = !isempty(filter) && strchr(filter, ':') && strchr(filter, ':')[1] != '\0';
        if (!isempty(filter) && (filter_hop || !isempty(s->default_filter_nexthop))) {
                /* "transport:nexthop" (or "transport:" with $default_filter_nexthop) overrides every
                 * other routing decision. */
                _cleanup_free_ char *ft = NULL, *fn = NULL;
                int r = split_route(filter, &ft, &fn);
                if (r < 0)
                        return r;
                if (!isempty(ft)) {
                        if (!filter_hop) {
                                free(fn);
                                if (!(fn = strdup(s->default_filter_nexthop)))
                                        return -ENOMEM;
                        }
                        *ret_transport = TAKE_PTR(ft);
                        *ret_nexthop = TAKE_PTR(fn);
                        return 0;
                }
        }
        const char *domain = qmgr_address_domain(address);
        AddressClass c;
        _cleanup_free_ char *t = NULL, *n = NULL, *value = NULL, *sdt = NULL, *sdr = NULL, *moved = NULL;
        int r = route_class(s, domain, &c);
        if (r < 0)
                return r == -ENOMEM ? r : -EIO;
        /* Bounces decided by the address alone: transport_maps and the filter's transport do
         * not change them. */
        r = relocated_lookup(s, address, domain, c, &moved);
        if (r < 0)
                return r == -ENOMEM ? r : -EIO;
        if (r > 0 || c == ADDR_CLASS_VIRTUAL_ALIAS) {
                t = strdup("error");
                n = moved ? TAKE_PTR(moved) : strdup("5.1.1 User unknown in virtual alias table");
                if (!t || !n)
                        return -ENOMEM;
                *ret_transport = TAKE_PTR(t);
                *ret_nexthop = TAKE_PTR(n);
                return 0;
        }
        bool local = c == ADDR_CLASS_LOCAL, remote = c == ADDR_CLASS_RELAY || c == ADDR_CLASS_DEFAULT;
        const char *def = local ? s->local_transport : c == ADDR_CLASS_VIRTUAL_MAILBOX ? s->virtual_transport :
                          c == ADDR_CLASS_RELAY ? s->relay_transport : s->default_transport;
        if (c == ADDR_CLASS_DEFAULT) {
                r = sender_lookup(s->sender_default_transport_maps, "sender_dependent_default_transport_maps",
                                  sender, s->empty_default_transport_key, &sdt);
                if (r < 0)
                        return r == -ENOMEM ? r : -EIO;
                if (r > 0)
                        def = sdt;
        }
        r = split_route(def, &t, &n);
        if (r < 0)
                return r;
        if (isempty(n) && remote) {
                r = sender_lookup(s->sender_relayhost_maps, "sender_dependent_relayhost_maps", sender,
                                  s->empty_relayhost_key, &sdr);
                if (r < 0)
                        return r == -ENOMEM ? r : -EIO;
        }
        const char *relayhost = sdr ? sdr : s->relayhost;
        if (isempty(n)) {
                free(n);
                n = strdup(local ? s->myhostname : remote && !isempty(relayhost) ? relayhost :
                           domain ? domain : s->myhostname);
                if (!n)
                        return -ENOMEM;
        }
        r = transport_lookup(s, address, domain, &value);
        if (r < 0)
                return -EIO;
        if (r > 0) {
                _cleanup_free_ char *mt = NULL, *mn = NULL;
                if ((r = split_route(value, &mt, &mn)) < 0)
                        return r;
                if (!isempty(mt)) {
                        bool was_local = streq(t, "local");
                        free(t);
                        t = TAKE_PTR(mt);
                        /* A transport change without a next hop: the default hop of that kind. */
                        if (isempty(mn) && was_local != streq(t, "local")) {
                                free(n);
                                n = strdup(streq(t, "local") ? s->myhostname :
                                           !isempty(relayhost) ? relayhost : domain ? domain : s->myhostname);
                                if (!n)
                                        return -ENOMEM;
                        }
                }
                if (!isempty(mn)) {
                        free(n);
                        n = TAKE_PTR(mn);
                }
        }
        if (!isempty(filter)) {
                /* "transport:" (no next hop): that transport, the next hop routing chose. */
                _cleanup_free_ char *ft = NULL, *fn = NULL;
                if ((r = split_route(filter, &ft, &fn)) < 0)
                        return r;
                if (!isempty(ft)) {
                        free(t);
                        t = TAKE_PTR(ft);
                }
        }
        *ret_transport = TAKE_PTR(t);
        *ret_nexthop = TAKE_PTR(n);
        return 0;
}

/* Picks transport and next hop for a recipient (see the top of the file); <0 on a table error.
 * A master.cf transport whose command is local, virtual, error or discard becomes that
 * transport (error(8) named "retry" defers); one whose command Postern does not have becomes a
 * 4.3.5 deferral naming the entry. */
int qmgr_route_transport(const QmgrSettings *s, const QueueMessage *msg, const char *address,
                         char **ret_transport, char **ret_nexthop) {
        _cleanup_free_ char *t = NULL, *n = NULL;
        int r = route_choose(s, msg, address, &t, &n);
        if (r < 0)
                return r;
        const QmgrTransportLimits *tl = qmgr_sched_limits(s, t);
        const char *as = tl->builtin ? tl->builtin : tl->unavailable ? "retry" : NULL;
        if (as && !streq(as, t)) {
                free(t);
                if (!(t = strdup(as)))
                        return -ENOMEM;
        }
        if (tl->unavailable) {
                free(n);
                if (!(n = strdup(tl->unavailable)))
                        return -ENOMEM;
        }
        *ret_transport = TAKE_PTR(t);
        *ret_nexthop = TAKE_PTR(n);
        return 0;
}
