/* smtpd-rewrite.c — address rewriting in the queueing step (Postfix's cleanup(8) calling
 * trivial-rewrite's "rewrite" and its canonical and masquerade code), before a message is
 * committed:
 *
 *   envelope  smtpd_rewrite_envelope() rewrites the sender and every recipient of the CommitJob
 *             as it becomes queue records (smtpd-data.c calls it after the message actions);
 *             always in the local context ($myorigin, $mydomain). Virtual alias expansion comes
 *             right after it, so the order is canonical -> masquerade -> virtual alias.
 *   headers   smtpd_rewrite_header() rewrites From:, To:, Cc:, ... (header-address.h's list)
 *             after header_checks saw the original (smtpd-cleanup.c), for clients that match
 *             local_header_rewrite_clients (local submissions always) in the local context; for
 *             other clients only when remote_header_rewrite_domain is set, in the remote
 *             context (that domain completes incomplete addresses); otherwise not at all.
 *
 * Each address goes through addr_rewrite() (common/mail/addr-canonical.h): canonical form,
 * sender_/recipient_canonical_maps, canonical_maps, masquerading, each as its *_classes say. A
 * table that fails refuses the message for now (451 4.3.0), never a guess; a table entry that
 * is not one address, or maps in a loop, leaves the address unchanged with a warning:
 *   ID: warning: canonical entry for a@b is not one address: "x, y"; leaving the address unchanged
 * The settings come from smtpd-settings.c's rows (the maps, the booleans, the domains) plus
 * smtpd_rewrite_settings() here (classes, masquerading, clients, inet_interfaces). */
#include <strings.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "log/log.h"
#include "mail/address.h"
#include "mail/header-address.h"
#include "queue/queue.h"

/* $inet_interfaces as addresses (host-addresses.h), for permit_inet_interfaces; entries that
 * cannot be used are reported. */
static int inet_addrs_load(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **unsupported = NULL;

        if (host_addresses_load(&s->inet_addrs, c, listener, false, &unsupported) < 0)
                return log_oom();
        if (s->inet_addrs.ifaddrs_error < 0)
                log_warning_errno(s->inet_addrs.ifaddrs_error, "inet_interfaces = all: cannot list this host's "
                                  "addresses: %m; only loopback counts as ours");
        for (char **u = unsupported; u && *u; u++)
                log_warning("not supported: inet_interfaces entry \"%s\" (host names are not resolved: only "
                            "numeric addresses, all and loopback-only name this host's addresses, for "
                            "permit_inet_interfaces clients and [address] literals)", *u);
        return 0;
}

/* resolve_local: $mydestination (the local address class, smtpd-recipient.c) or an [address]
 * literal of this host's addresses ($inet_interfaces, $proxy_interfaces). */
static int domain_local(const char *domain, void *userdata) {
        SmtpdSettings *s = userdata;
        return addr_classes_local(&s->addr_classes, domain);
}

/* The domains whose "user" canonical keys apply: $myorigin too. */
static int domain_ours(const char *domain, void *userdata) {
        SmtpdSettings *s = userdata;
        if (!isempty(s->myorigin) && strcaseeq(domain, s->myorigin))
                return 1;
        return domain_local(domain, userdata);
}

static int classes_param(Conf *c, const char *listener, const char *name, unsigned *ret) {
        _cleanup_strv_free_ char **v = conf_get_list(c, listener, name);
        const char *bad = NULL;
        if (!v)
                return log_oom();
        if (addr_classes_parse(v, ret, &bad) < 0)
                return log_error_errno(-EINVAL, "%s: unknown address class \"%s\" (envelope_sender, "
                                       "envelope_recipient, header_sender, header_recipient)", name, bad);
        return 0;
}

static int clients_param(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **v = conf_get_list(c, listener, "local_header_rewrite_clients");
        _cleanup_free_ char *specs = NULL, *why = NULL;
        int r;

        if (!v)
                return log_oom();
        for (char **i = v; *i; i++) {
                const char *spec = NULL;
                if (strcaseeq(*i, "permit_inet_interfaces"))
                        s->header_rewrite_clients |= REWRITE_CLIENTS_INET;
                else if (strcaseeq(*i, "permit_mynetworks"))
                        s->header_rewrite_clients |= REWRITE_CLIENTS_MYNETWORKS;
                else if (strcaseeq(*i, "permit_sasl_authenticated"))
                        s->header_rewrite_clients |= REWRITE_CLIENTS_SASL;
                else if (strcaseeq(*i, "permit_tls_clientcerts"))
                        s->header_rewrite_clients |= REWRITE_CLIENTS_TLS_CERTS;
                else if (strcaseeq(*i, "permit_tls_all_clientcerts"))
                        s->header_rewrite_clients |= REWRITE_CLIENTS_TLS_ALL_CERTS;
                else if (strcaseeq(*i, "check_address_map")) {
                        if (!i[1])
                                return log_error_errno(-EINVAL, "local_header_rewrite_clients: check_address_map "
                                                       "needs a table");
                        spec = *++i;
                } else if (strchr(*i, ':'))
                        spec = *i;
                else
                        return log_error_errno(-EINVAL, "local_header_rewrite_clients: unknown element \"%s\"", *i);
                if (spec) {
                        char *j = NULL;
                        if (asprintf(&j, "%s%s%s", strempty(specs), specs ? " " : "", spec) < 0)
                                return log_oom();
                        free(specs);
                        specs = j;
                }
        }
        if (specs && (r = table_list_open(specs, 0, &s->header_rewrite_maps, &why)) < 0)
                return log_error_errno(r, "local_header_rewrite_clients: %s", why ? why : "cannot open table");
        return 0;
}

int smtpd_rewrite_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        AddrRewrite *rw = &s->rewrite;
        _cleanup_strv_free_ char **masq = conf_get_list(c, listener, "masquerade_domains");
        _cleanup_strv_free_ char **except = conf_get_list(c, listener, "masquerade_exceptions");
        _cleanup_strv_free_ char **prop = conf_get_list(c, listener, "propagate_unmatched_extensions");
        _cleanup_free_ char *why = NULL;
        int r;

        if (!masq || !except || !prop)
                return log_oom();
        if ((r = classes_param(c, listener, "canonical_classes", &rw->canonical_classes)) < 0 ||
            (r = classes_param(c, listener, "sender_canonical_classes", &rw->sender_canonical_classes)) < 0 ||
            (r = classes_param(c, listener, "recipient_canonical_classes", &rw->recipient_canonical_classes)) < 0 ||
            (r = classes_param(c, listener, "masquerade_classes", &rw->masquerade_classes)) < 0)
                return r;
        /* receive_override_options = no_address_mappings: no canonical maps and no masquerading,
         * in the envelope and in headers; the canonical form (user@$myorigin) stays. */
        if (s->no_address_mappings)
                rw->canonical_classes = rw->sender_canonical_classes = rw->recipient_canonical_classes =
                        rw->masquerade_classes = 0;
        r = addr_masquerade_init(&rw->masquerade, masq, except, &why);
        if (r < 0)
                return log_error_errno(r, "masquerade_exceptions: %s", why ? why : "out of memory");
        rw->map.delimiters = s->recipient_delimiter;
        for (char **p = prop; *p; p++)
                rw->map.propagate = rw->map.propagate || strcaseeq(*p, "canonical");
        rw->map.is_ours = domain_ours;
        rw->map.userdata = s;
        if ((r = clients_param(c, listener, s)) < 0)
                return r;
        return inet_addrs_load(c, listener, s);
}

/* The maps and plain values are freed with the rows of smtpd-settings.c. */
void smtpd_rewrite_settings_done(SmtpdSettings *s) {
        addr_masquerade_done(&s->rewrite.masquerade);
        table_list_free(s->header_rewrite_maps);
        s->header_rewrite_maps = NULL;
        host_addresses_done(&s->inet_addrs);
}

int smtpd_rewrite_header_mode(Session *s) {
        const SmtpdSettings *set = s->settings;
        unsigned w = set->header_rewrite_clients;
        int r;

        if (s->listener->kind == LISTENER_SUBMIT)
                return REWRITE_HEADERS_LOCAL;
        if ((w & REWRITE_CLIENTS_INET) && host_addresses_has(&set->inet_addrs, s->client.addr))
                return REWRITE_HEADERS_LOCAL;
        if ((w & REWRITE_CLIENTS_SASL) && s->client.sasl_username)
                return REWRITE_HEADERS_LOCAL;
        if (w & (REWRITE_CLIENTS_TLS_CERTS | REWRITE_CLIENTS_TLS_ALL_CERTS)) {
                r = smtpd_tls_clientcert_permitted(s, w & REWRITE_CLIENTS_TLS_ALL_CERTS);
                if (r == 0 && (w & REWRITE_CLIENTS_TLS_CERTS) && (w & REWRITE_CLIENTS_TLS_ALL_CERTS))
                        r = smtpd_tls_clientcert_permitted(s, false);
                if (r != 0)
                        return r < 0 ? r : REWRITE_HEADERS_LOCAL;
        }
        if (w & REWRITE_CLIENTS_MYNETWORKS) {
                r = smtpd_netlist_match(&set->mynetworks, &s->client);   /* logs its failures */
                if (r != 0)
                        return r < 0 ? r : REWRITE_HEADERS_LOCAL;
        }
        if (set->header_rewrite_maps && s->client.addr[0]) {
                _cleanup_free_ char *v = NULL;
                r = table_list_lookup(set->header_rewrite_maps, s->client.addr, &v);
                if (r < 0)
                        return log_warning_errno(r, "%s: local_header_rewrite_clients: lookup of %s failed: %m",
                                                 s->tx.queue_id, s->client.addr);
                if (r > 0)
                        return REWRITE_HEADERS_LOCAL;
        }
        return isempty(set->remote_header_rewrite_domain) ? REWRITE_HEADERS_NONE : REWRITE_HEADERS_REMOTE;
}

static AddrCanonicalContext context(SmtpdSettings *set, bool remote) {
        return (AddrCanonicalContext) {
                .origin = remote ? set->remote_header_rewrite_domain : set->myorigin,
                .domain = remote ? set->remote_header_rewrite_domain : set->mydomain,
                .append_at_origin = set->append_at_myorigin,
                .append_dot_domain = set->append_dot_mydomain,
                .swap_bangpath = set->swap_bangpath,
                .percent_hack = set->allow_percent_hack,
                .is_local = domain_local,
                .userdata = set,
        };
}

int smtpd_rewrite_canonical(Session *s, const char *addr, char **ret) {
        AddrCanonicalContext ctx = context(s->settings, false);
        return addr_canonical_form(&ctx, addr, ret);
}

int smtpd_rewrite_address(SmtpdSettings *set, AddrClass cls, const char *addr, char **ret, char **ret_warning) {
        AddrCanonicalContext ctx = context(set, false);
        return addr_rewrite(&set->rewrite, &ctx, cls, addr, ret, ret_warning);
}

typedef struct RewriteCall {
        Session *s;
        const AddrCanonicalContext *ctx;
        AddrClass cls;
} RewriteCall;

/* One address; a table error is logged here (with what was being rewritten). */
static int rewrite_one(const RewriteCall *call, const char *addr, char **ret) {
        Session *s = call->s;
        _cleanup_free_ char *warning = NULL;
        int r = addr_rewrite(&s->settings->rewrite, call->ctx, call->cls, addr, ret, &warning);
        if (warning)
                log_warning("%s: %s", s->tx.queue_id, warning);
        if (r < 0 && r != -ENOMEM)
                log_warning_errno(r, "%s: address rewriting of <%s> failed (table lookup): %m", s->tx.queue_id, addr);
        /* -EINVAL would read as "the header does not parse" to header_address_rewrite(). */
        return r == -EINVAL ? -EIO : r;
}

static int header_addr(const char *addr, void *userdata, char **ret_new) {
        return rewrite_one(userdata, addr, ret_new);
}

int smtpd_rewrite_header(Session *s, const char *h, size_t n, StrBuf *out) {
        DataState *d = s->tx.data;
        const char *colon = memchr(h, ':', n);
        if (!colon || d->hdr_rewrite == REWRITE_HEADERS_NONE)
                return 0;
        size_t nl = (size_t) (colon - h);
        while (nl > 0 && (h[nl - 1] == ' ' || h[nl - 1] == '\t'))
                nl--;
        HeaderAddressKind kind = header_address_kind(h, nl);
        if (kind == HEADER_ADDRESS_NONE)
                return 0;

        AddrCanonicalContext ctx = context(s->settings, d->hdr_rewrite == REWRITE_HEADERS_REMOTE);
        RewriteCall call = { s, &ctx, kind == HEADER_ADDRESS_SENDER ? ADDR_CLASS_HEADER_SENDER : ADDR_CLASS_HEADER_RECIPIENT };
        size_t head = (size_t) (colon + 1 - h);
        int r = strbuf_append(out, h, head);
        if (r < 0)
                return r;
        r = header_address_rewrite(colon + 1, n - head, header_addr, &call, out);
        if (r == -EINVAL)
                return 0;   /* not an address list: the header stays as it is */
        return r < 0 ? r : r > 0;
}

static bool same_recipient(const QueueRecipient *a, const QueueRecipient *b) {
        return strcaseeq(a->address, b->address) && a->notify == b->notify &&
                streq(strempty(a->orcpt), strempty(b->orcpt));
}

int smtpd_rewrite_envelope(Session *s, CommitJob *j) {
        QueueMessage *m = j->message;
        QueueRecipient *rc = j->rcpts;
        AddrCanonicalContext ctx = context(s->settings, false);
        RewriteCall call = { s, &ctx, ADDR_CLASS_ENVELOPE_SENDER };
        char *n = NULL;
        int r;

        if ((r = rewrite_one(&call, m->sender, &n)) < 0)
                return r;
        if (r > 0) {
                free(m->sender);
                m->sender = n;
        }
        call.cls = ADDR_CLASS_ENVELOPE_RECIPIENT;
        size_t kept = 0;
        for (size_t i = 0; i < j->n_rcpts; i++) {
                n = NULL;
                if ((r = rewrite_one(&call, rc[i].address, &n)) < 0)
                        return r;
                if (r > 0) {
                        /* DSNs and virtual alias expansion name the address as the client wrote
                         * it, as Postfix's original recipient does. */
                        if (!rc[i].orcpt && !(rc[i].orcpt = address_orcpt(rc[i].address))) {
                                free(n);
                                return -ENOMEM;
                        }
                        free(rc[i].address);
                        rc[i].address = n;
                }
                /* Recipients that now are the same (and ask for the same DSN) are one. */
                bool dup = false;
                for (size_t k = 0; k < kept && !dup; k++)
                        dup = same_recipient(&rc[k], &rc[i]);
                if (dup) {
                        free(rc[i].address);
                        free(rc[i].orcpt);
                        continue;
                }
                if (kept != i)
                        rc[kept] = rc[i];
                kept++;
        }
        j->n_rcpts = kept;
        return 0;
}
