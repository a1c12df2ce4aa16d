/* smtpd-recipient.c — is an address known? reject_unlisted_recipient and
 * reject_unlisted_sender (and smtpd_reject_unlisted_recipient / _sender) for every address
 * class, and relocated_maps, as Postfix's SMTP server decides them:
 *
 *   1. the domain's class (common/mail/addr-class.h);
 *   2. an address that recipient_canonical_maps, canonical_maps or virtual_alias_maps lists is
 *      known, whatever its class (it is rewritten before delivery);
 *   3. relocated_maps: "5.1.6 ... User has moved to <new location>" (code 550, or
 *      unknown_virtual_alias_reject_code in a virtual alias domain);
 *   4. by class: local — local_recipient_maps (postmaster, MAILER-DAEMON and the
 *      double_bounce_sender local part always pass); virtual alias — unknown (step 2 did not
 *      find it); virtual mailbox — virtual_mailbox_maps; relay — relay_recipient_maps; an empty
 *      table list accepts every address of its class; default — not checked.
 *
 * Tables are searched in Postfix's order (common/mail/addr-find.h: user+ext@domain,
 * user@domain, user and user+ext for local domains and $myorigin, @domain); local_recipient_maps
 * keeps Postern's key, the local part (with and without its extension), in every table. Refusals
 * read "<code> 5.1.1 <addr>: Recipient address rejected: User unknown in <class> table" ("5.1.0
 * ... Sender address rejected" for senders; "User unknown" alone with
 * show_user_unknown_table_name = no). A table or domain list that cannot be read answers
 * "451 4.3.0 <addr>: Temporary lookup failure", never a 5xx. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/addr-find.h"

int smtpd_address_class(const SmtpdSettings *st, const char *domain, AddressClass *ret) {
        _cleanup_free_ char *warning = NULL;
        int r = addr_classes_classify((AddrClasses *) &st->addr_classes, domain, ret, &warning);
        if (warning)
                log_warning("%s", warning);
        if (r < 0 && r != -ENOMEM && r != -EINPROGRESS)
                log_warning_errno(r, "address class lookup of domain %s failed: %m", strempty(domain));
        return r;
}

/* local_recipient_maps with the local part as the key, then without its extension. */
static int local_user_known(const SmtpdSettings *st, const char *local) {
        TableList *maps = st->local_recipient_maps;
        _cleanup_free_ char *key = strdup(local), *v = NULL;
        int r;

        if (st->local_recipient_maps_error < 0)
                return st->local_recipient_maps_error;
        if (!maps)
                return 1;
        if (!key)
                return -ENOMEM;
        for (char *p = key; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        r = table_list_lookup(maps, key, &v);
        if (r != 0)
                return r;
        size_t base = addr_find_base_length(key, st->recipient_delimiter);
        if (base < strlen(key)) {
                key[base] = '\0';
                r = table_list_lookup(maps, key, &v);
        }
        return r;
}

/* Local parts that Postfix never rejects in local domains: mail the system itself sends. */
static bool local_always_known(const SmtpdSettings *st, const char *local) {
        return strcaseeq(local, "postmaster") || strcaseeq(local, "mailer-daemon") ||
               strcaseeq(local, strempty(st->double_bounce_sender));
}

/* An address table: 1 listed, 0 not, <0 error (the table failed now or did not open). */
static int table_has(TableList *maps, int open_error, const Address *a, AddrFindFlags flags,
                     const char *delimiter, char **ret_value) {
        if (open_error < 0)
                return open_error;
        return addr_find(maps, a->local, a->domain, delimiter, flags, ret_value);
}

static int refuse(int code, const char *dsn, const Address *a, bool sender, const char *text, char **ret_reply) {
        *ret_reply = smtpd_reply_build(code, dsn, "<%s>: %s rejected: %s", a->external,
                                       sender ? "Sender address" : "Recipient address", text);
        return *ret_reply ? 1 : -ENOMEM;
}

static int unknown(const SmtpdSettings *st, int code, const Address *a, bool sender, const char *table,
                   char **ret_reply) {
        _cleanup_free_ char *text = NULL;
        if (asprintf(&text, "User unknown%s%s%s", st->show_user_unknown_table_name ? " in " : "",
                     st->show_user_unknown_table_name ? table : "",
                     st->show_user_unknown_table_name ? " table" : "") < 0)
                return -ENOMEM;
        return refuse(code, sender ? "5.1.0" : "5.1.1", a, sender, text, ret_reply);
}

/* 451 4.3.0 for a table that failed; what names it in the log (NULL: already logged). */
static int lookup_failed(const Address *a, const char *what, int error, char **ret_reply) {
        if (error == -ENOMEM || error == -EINPROGRESS)   /* -EINPROGRESS: asked again (table-async.h) */
                return error;
        if (what)
                log_warning_errno(error, "%s lookup of <%s> failed: %m", what, a->external);
        *ret_reply = smtpd_reply_build(451, "4.3.0", "<%s>: Temporary lookup failure", a->external);
        return *ret_reply ? 1 : -ENOMEM;
}

/* The table of a class: an empty list knows everyone; a miss is refused with code and text. */
static int class_table_check(const SmtpdSettings *st, TableList *maps, int open_error, const char *param,
                             int code, const char *table, const Address *a, bool sender, AddrFindFlags f,
                             char **ret_reply) {
        if (!maps && open_error == 0)
                return 0;
        int r = table_has(maps, open_error, a, f, st->recipient_delimiter, NULL);
        if (r < 0)
                return lookup_failed(a, param, r, ret_reply);
        return r > 0 ? 0 : unknown(st, code, a, sender, table, ret_reply);
}

int smtpd_unlisted_check(const SmtpdSettings *st, const Address *a, bool sender, char **ret_reply) {
        AddressClass c;
        int r;

        *ret_reply = NULL;
        if (!a || !a->domain || isempty(a->external))
                return 0;
        r = smtpd_address_class(st, a->domain, &c);
        if (r < 0)
                return lookup_failed(a, NULL, r, ret_reply);   /* smtpd_address_class() logged it */
        const char *delim = st->recipient_delimiter;
        AddrFindFlags f = c == ADDR_CLASS_LOCAL || strcaseeq(a->domain, strempty(st->myorigin)) ?
                          ADDR_FIND_LOCALPART : 0;

        /* The tables that canonical rewriting and virtual alias expansion opened
         * (smtpd-rewrite.c, smtpd-virtual.c): an address they rewrite is known. */
        const struct { TableList *maps; int error; const char *name; } rewriting[] = {
                { st->rewrite.recipient_canonical_maps, 0, "recipient_canonical_maps" },
                { st->rewrite.canonical_maps, 0, "canonical_maps" },
                { st->virtual_alias.maps, st->virtual_alias.maps_error, "virtual_alias_maps" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rewriting); i++) {
                r = table_has(rewriting[i].maps, rewriting[i].error, a, f, delim, NULL);
                if (r < 0)
                        return lookup_failed(a, rewriting[i].name, r, ret_reply);
                if (r > 0)
                        return 0;
        }

        _cleanup_free_ char *moved = NULL;
        r = table_has(st->relocated_maps, st->relocated_maps_error, a, f, delim, &moved);
        if (r < 0)
                return lookup_failed(a, "relocated_maps", r, ret_reply);
        if (r > 0) {
                _cleanup_free_ char *text = NULL;
                if (asprintf(&text, "User has moved to %s", moved) < 0)
                        return -ENOMEM;
                return refuse(c == ADDR_CLASS_VIRTUAL_ALIAS ? st->unknown_virtual_alias_code : 550, "5.1.6",
                              a, sender, text, ret_reply);
        }

        switch (c) {
        case ADDR_CLASS_LOCAL:
                if (local_always_known(st, a->local))
                        return 0;
                r = local_user_known(st, a->local);
                if (r < 0)
                        return lookup_failed(a, "local_recipient_maps", r, ret_reply);
                return r > 0 ? 0 : unknown(st, st->unknown_local_code, a, sender, "local recipient", ret_reply);
        case ADDR_CLASS_VIRTUAL_ALIAS:
                return unknown(st, st->unknown_virtual_alias_code, a, sender, "virtual alias", ret_reply);
        case ADDR_CLASS_VIRTUAL_MAILBOX:
                return class_table_check(st, st->virtual_mailbox_maps, st->virtual_mailbox_maps_error,
                                         "virtual_mailbox_maps", st->unknown_virtual_mailbox_code,
                                         "virtual mailbox", a, sender, f, ret_reply);
        case ADDR_CLASS_RELAY:
                return class_table_check(st, st->relay_recipient_maps, st->relay_recipient_maps_error,
                                         "relay_recipient_maps", st->unknown_relay_code, "relay recipient",
                                         a, sender, f, ret_reply);
        case ADDR_CLASS_DEFAULT:
                break;
        }
        return 0;
}
