/* local-virtual.c — recipient resolution for the virtual transport (Postfix's virtual(8)), the
 * "virtual" socket of postern-local.
 *
 * local_virtual_resolve() turns one recipient into one Target: the lower-cased address is looked
 * up in virtual_mailbox_maps, virtual_uid_maps and virtual_gid_maps, each searched for the full
 * address, then (with recipient_delimiter) the address without its extension, then "@domain".
 * The mailbox is $virtual_mailbox_base/<result>: a Maildir when the result ends in "/", else an
 * mbox file. Its owner is the uid and gid found (the delivery child takes them, with the gid as
 * its only group); a uid below virtual_minimum_uid, a gid of 0 or a number that is not one defers
 * with 4.3.5 "mail system configuration error" and a warning in the log, as Postfix does, and so
 * does a recipient missing from the uid or gid tables and a virtual_mailbox_base that is not an
 * absolute path. A recipient missing from virtual_mailbox_maps bounces with 5.1.1
 * `unknown user: "<address>"`; a table that fails defers with 4.3.0.
 *
 * Deliveries then go the way of postern-local's other mailbox deliveries (local-child.c: markers,
 * batches, the switch to the owner; local-mbox.c, local-maildir.c), with virtual_mailbox_lock and
 * virtual_mailbox_limit instead of mailbox_delivery_lock and mailbox_size_limit. The lookups run
 * in the event loop, as alias_maps lookups do. virtual_mailbox_maps is opened with
 * TABLE_NO_REGSUB: a regexp:/pcre: rule whose result needs $number is skipped (logged), so no
 * text of an address becomes part of a file name. */
#include <stdio.h>

#include "local.h"
#include "log/log.h"

/* Looks address up in tables as virtual(8) does: the address, the address without its
 * extension, "@domain". >0 found (*ret_value), 0 not found, <0 table failure. */
static int virtual_lookup(const LocalSettings *s, TableList *tables, const char *name, const char *address,
                          char **ret_value) {
        const char *at = strrchr(address, '@');
        size_t local_len = at ? (size_t) (at - address) : strlen(address);
        _cleanup_free_ char *local = strndup(address, local_len), *bare = NULL, *catchall = NULL;
        int r;

        if (!local)
                return -ENOMEM;
        if (!tables)
                return 0;
        size_t base = local_base_length(s, local);
        if (base < local_len && asprintf(&bare, "%.*s%s", (int) base, local, at ? at : "") < 0)
                return -ENOMEM;
        if (at && asprintf(&catchall, "%s", at) < 0)
                return -ENOMEM;

        const char *keys[] = { address, bare, catchall };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_(table_notes_done) TableNotes notes = {};
                if (!keys[i])
                        continue;
                r = table_list_lookup_full(tables, keys[i], ret_value, &notes);
                for (char **w = notes.warnings; w && *w; w++)
                        log_warning("%s: %s", name, *w);
                if (r != 0)
                        return r;
        }
        return 0;
}

static Target *result_new(const char *address, const char *dsn, const char *diag) {
        Target *t = target_new(TARGET_RESULT, address);
        if (t && target_set_result(t, dsn, "%s", diag) < 0)
                t = target_free(t);
        return t;
}

/* A table failed (error r): logged, and the recipient deferred with 4.3.0 (*ret); 0 or -ENOMEM. */
static int lookup_failed(const char *name, const char *address, int r, Target **ret) {
        _cleanup_free_ char *diag = NULL;
        log_warning("table %s: lookup %s: %s", name, address, strerror(-r));
        if (asprintf(&diag, "%s lookup failure for \"%s\": %s", name, address, strerror(-r)) < 0)
                return -ENOMEM;
        return (*ret = result_new(address, "4.3.0", diag)) ? 0 : -ENOMEM;
}

/* Looks up the owner id in tables; 1 with *ret_id, 0 deferred (*ret set), <0 out of memory. */
static int owner_lookup(const LocalSettings *s, TableList *tables, const char *name, const char *address,
                        long long min, unsigned long *ret_id, Target **ret) {
        _cleanup_free_ char *value = NULL;
        int r = virtual_lookup(s, tables, name, address, &value);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return lookup_failed(name, address, r, ret);
        if (r == 0) {
                log_warning("recipient %s: not found in %s", address, name);
                return (*ret = result_new(address, "4.3.5", "mail system configuration error")) ? 0 : -ENOMEM;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-' || id < (unsigned long long) min ||
            id >= (unsigned long long) (uid_t) -1) {
                log_warning("recipient %s: bad %s %s in %s", address, streq(name, "virtual_uid_maps") ? "uid" : "gid",
                            value, name);
                return (*ret = result_new(address, "4.3.5", "mail system configuration error")) ? 0 : -ENOMEM;
        }
        *ret_id = (unsigned long) id;
        return 1;
}

/* The one target for address (lower case). */
static int virtual_target(const LocalSettings *s, const char *address, Target **ret) {
        _cleanup_free_ char *mailbox = NULL, *diag = NULL;
        unsigned long uid = 0, gid = 0;
        int r;

        r = virtual_lookup(s, s->virtual_mailbox_maps, "virtual_mailbox_maps", address, &mailbox);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return lookup_failed("virtual_mailbox_maps", address, r, ret);
        if (r == 0) {
                if (asprintf(&diag, "unknown user: \"%s\"", address) < 0)
                        return -ENOMEM;
                return (*ret = result_new(address, "5.1.1", diag)) ? 0 : -ENOMEM;
        }
        if (s->virtual_mailbox_base[0] != '/') {
                log_warning("do not specify a relative pathname: virtual_mailbox_base = %s",
                            s->virtual_mailbox_base);
                return (*ret = result_new(address, "4.3.5", "mail system configuration error")) ? 0 : -ENOMEM;
        }
        for (const char *p = mailbox; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        /* A path is one line of a delivery marker. */
                        log_warning("recipient %s: virtual_mailbox_maps result has a control character", address);
                        return (*ret = result_new(address, "4.3.5", "mail system configuration error")) ? 0 : -ENOMEM;
                }
        r = owner_lookup(s, s->virtual_uid_maps, "virtual_uid_maps", address, s->virtual_minimum_uid, &uid, ret);
        if (r <= 0)
                return r;
        r = owner_lookup(s, s->virtual_gid_maps, "virtual_gid_maps", address, 1, &gid, ret);
        if (r <= 0)
                return r;

        bool maildir = mailbox[0] && mailbox[strlen(mailbox) - 1] == '/';
        _cleanup_(target_freep) Target *t = target_new(maildir ? TARGET_MAILDIR : TARGET_MBOX, address);
        if (!t || asprintf(&t->path, "%s/%s", s->virtual_mailbox_base, mailbox) < 0) {
                if (t)
                        t->path = NULL;
                return -ENOMEM;
        }
        t->virtual = true;
        t->uid = (uid_t) uid;
        t->gid = (gid_t) gid;
        *ret = TAKE_PTR(t);
        return 0;
}

int local_virtual_resolve(const LocalSettings *s, const char *recipient, Target ***ret, size_t *ret_n) {
        _cleanup_free_ char *address = strdup(recipient);
        _cleanup_free_ Target **v = calloc(1, sizeof(Target *));
        if (!address || !v)
                return -ENOMEM;
        local_ascii_lower(address);
        int r = virtual_target(s, address, &v[0]);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(v);
        *ret_n = 1;
        return 0;
}
