/* local-alias.c — recipient resolution for postern-local: main.cf settings (local's and the
 * virtual socket's, local-virtual.c), the Delivered-To loop set, alias_maps expansion and the
 * passwd lookup.
 *
 * A recipient "Local+Ext@domain" is looked up lower-cased, first with its extension and then
 * without (recipient_delimiter), in alias_maps. Alias values ("a, b@remote, \user, |cmd, /file")
 * expand recursively: local names and addresses in mydestination recurse, other addresses become
 * forward targets (sender owner-<alias>@$myorigin when that alias exists and owner_request_special
 * is on; its value instead with expand_owner_alias), an alias that reaches a name already being
 * expanded delivers to the user of that name; ":include:" files are local-include.c's. Duplicates
 * are suppressed (users, forward addresses, commands, files, and aliases: each is expanded once).
 * What is left is a user found with getpwnam(): their .forward (local-dotforward.c), else an mbox
 * in mail_spool_directory, or home_mailbox in the home directory (Maildir when it ends in "/") —
 * unless mailbox_transport & co pass the user to another transport (local-pass.c; for a name not
 * in passwd also fallback_transport & co); a name that is no user and not passed goes to
 * luser_relay (local-luser.c) or bounces. Every outcome is a Target; failures are Targets with a
 * preset result, so resolution itself only fails on out-of-memory. The resolution's state
 * (Expander) is in local-expander.h.
 *
 * alias_maps are opened with TABLE_NO_REGSUB: a regexp:/pcre: rule whose result needs $number is
 * skipped (the tables' warning is logged here), so text from a recipient address never becomes
 * a command, a file or a list separator. A value that was built by substitution all the same
 * (a table type that gained it later) gets no command or file deliveries (5.7.1). */
#include <ctype.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>

#include "local.h"
#include "local-expander.h"
#include "conf/params.h"
#include "conf/conf-fields.h"
#include "log/log.h"
#include "mail/address.h"
#include "mail/rfc822.h"

char *local_ascii_lower(char *s) {
        for (char *p = s; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return s;
}

/* Parameters come with the registry's defaults and limits (common/conf/params.c). */
#define F(...) CONF_FIELD(LocalSettings, __VA_ARGS__)
static const ConfField local_fields[] = {
        F("queue_directory", STRING, queue_directory),
        F("mail_spool_directory", STRING, mail_spool_directory),
        F("home_mailbox", STRING, home_mailbox),
        F("recipient_delimiter", STRING, recipient_delimiter),
        F("myhostname", STRING, myhostname),
        F("myorigin", STRING, myorigin),
        F("default_privs", STRING, default_privs),
        F("allow_mail_to_commands", LIST, allow_mail_to_commands),
        F("allow_mail_to_files", LIST, allow_mail_to_files),
        F("mailbox_size_limit", LLONG, mailbox_size_limit),
        F("deliver_lock_attempts", LLONG, lock_attempts),
        F("deliver_lock_delay", SECONDS, lock_delay),
        F("stale_lock_time", SECONDS, stale_lock_time),
        F("command_time_limit", SECONDS, command_time_limit),
        F("daemon_timeout", SECONDS, daemon_timeout),
        F("alias_maps", TABLES, aliases, .flags = TABLE_ALIASES | TABLE_NO_REGSUB),
        F("mailbox_transport", STRING, mailbox_transport),
        F("mailbox_transport_maps", TABLES, mailbox_transport_maps, .flags = TABLE_NO_REGSUB),
        F("fallback_transport", STRING, fallback_transport),
        F("fallback_transport_maps", TABLES, fallback_transport_maps, .flags = TABLE_NO_REGSUB),
        F("mailbox_command", RAW, mailbox_command),
        /* A command built from text of the address would be a shell injection. */
        F("mailbox_command_maps", TABLES, mailbox_command_maps, .flags = TABLE_NO_REGSUB),
        F("local_command_shell", STRING, local_command_shell),
        F("command_expansion_filter", STRING, command_expansion_filter),
        F("biff", BOOL, biff),
        F("enable_original_recipient", BOOL, enable_original_recipient),
        /* Unexpanded: $user, $home ... are the recipient's (local-expand.c). */
        F("forward_path", RAW, forward_path),
        F("forward_expansion_filter", STRING, forward_expansion_filter),
        F("luser_relay", RAW, luser_relay),
        F("owner_request_special", BOOL, owner_request_special),
        F("expand_owner_alias", BOOL, expand_owner_alias),
        F("virtual_mailbox_base", STRING, virtual_mailbox_base),
        /* The result becomes a file name: no text from the address may be substituted into it. */
        F("virtual_mailbox_maps", TABLES, virtual_mailbox_maps, .flags = TABLE_NO_REGSUB),
        F("virtual_uid_maps", TABLES, virtual_uid_maps),
        F("virtual_gid_maps", TABLES, virtual_gid_maps),
        F("virtual_minimum_uid", LLONG, virtual_minimum_uid),
        F("virtual_mailbox_limit", LLONG, virtual_mailbox_limit),
};
#undef F

/* The LOCAL_LOCK_* methods listed in parameter name (mailbox_delivery_lock, virtual_mailbox_lock). */
static int lock_methods_parse(Conf *c, const char *name, unsigned *ret) {
        _cleanup_strv_free_ char **locks = conf_get_list(c, NULL, name);
        unsigned m = 0;
        if (!locks)
                return -ENOMEM;
        for (char **l = locks; *l; l++) {
                if (strcaseeq(*l, "fcntl"))
                        m |= LOCAL_LOCK_FCNTL;
                else if (strcaseeq(*l, "dotlock"))
                        m |= LOCAL_LOCK_DOTLOCK;
                else if (strcaseeq(*l, "flock"))
                        m |= LOCAL_LOCK_FLOCK;
                else
                        log_warning("%s: ignoring unknown lock method \"%s\"", name, *l);
        }
        *ret = m;
        return 0;
}

/* Reads the parameters postern-local uses from the configuration. */
int local_settings_load(Conf *c, LocalSettings *ret) {
        _cleanup_strv_free_ char **dest = NULL;
        LocalSettings s = {};
        char *reason = NULL;
        int r;

        if ((r = conf_fields_load(c, NULL, local_fields, ELEMENTSOF(local_fields), &s)) < 0)
                goto fail;
        dest = conf_get_list(c, NULL, "mydestination");
        if (!dest) {
                r = -ENOMEM;
                goto fail;
        }
        r = domain_list_init(&s.mydestination, dest, false, &reason);
        if (r < 0) {
                log_error_errno(r, "mydestination: %s", reason ? reason : "out of memory");
                free(reason);
                goto fail;
        }
        if ((r = lock_methods_parse(c, "mailbox_delivery_lock", &s.lock_methods)) < 0 ||
            (r = lock_methods_parse(c, "virtual_mailbox_lock", &s.virtual_lock_methods)) < 0)
                goto fail;
        if ((r = local_pipe_settings_load(c, &s)) < 0)
                goto fail;
        bool hostname_set = false;
        (void) conf_get_raw(c, "myhostname", &hostname_set);
        size_t hl = strlen(s.myhostname);
        if (!hostname_set && hl > 12 && streq(s.myhostname + hl - 12, ".localdomain"))
                /* Under systemd postern-local has no network, so it cannot learn a name that only
                 * DNS qualifies; the other daemons may have. */
                log_warning("myhostname is not set in main.cf and this host's name is not qualified "
                            "locally: using %s; set myhostname so every Postern daemon agrees on it",
                            s.myhostname);
        *ret = s;
        return 0;
fail:
        local_settings_done(&s);
        return r;
}

void local_settings_done(LocalSettings *s) {
        conf_fields_done(local_fields, ELEMENTSOF(local_fields), s);
        domain_list_done(&s->mydestination);
        local_pipe_settings_done(s);
        *s = (LocalSettings) {};
}

Target *target_free(Target *t) {
        if (!t)
                return NULL;
        free(t->address);
        free(t->path);
        free(t->user);
        free(t->home);
        free(t->shell);
        free(t->sender);
        free(t->via);
        free(t->diag);
        sd_event_source_disable_unref(t->child_source);
        sd_event_source_disable_unref(t->result_source);
        strbuf_done(&t->result);
        sd_event_source_disable_unref(t->deadline_source);
        safe_close(t->result_fd);
        free(t->group);
        free(t);
        return NULL;
}

int target_set_result(Target *t, const char *dsn, const char *fmt, ...) {
        char *diag = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&diag, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(t->diag);
        t->diag = diag;
        snprintf(t->dsn, sizeof(t->dsn), "%s", dsn);
        t->done = true;
        return 0;
}

/* --- Delivered-To set --- */

static char *trim_span(const char *p, size_t n) {
        while (n > 0 && isspace((unsigned char) *p))
                p++, n--;
        while (n > 0 && isspace((unsigned char) p[n - 1]))
                n--;
        return strndup(p, n);
}

/* Collects every Delivered-To: header value, unfolded, lower-cased. */
int delivered_set_load(const char *content, size_t len, DeliveredSet *ret) {
        DeliveredSet s = {};
        size_t pos = 0;
        Rfc822Header h;
        int r;

        while ((r = rfc822_next_header(content, len, &pos, &h)) > 0) {
                if (h.name_len != strlen("Delivered-To") || strncasecmp(h.name, "Delivered-To", h.name_len) != 0)
                        continue;
                char *v = trim_span(h.value, h.value_len);
                if (!v)
                        goto oom;
                /* Unfold: drop line breaks inside the value. */
                char *w = v;
                for (char *p = v; *p; p++)
                        if (*p != '\r' && *p != '\n')
                                *w++ = *p;
                *w = '\0';
                char **nv = realloc(s.values, (s.n + 2) * sizeof(char *));
                if (!nv) {
                        free(v);
                        goto oom;
                }
                s.values = nv;
                s.values[s.n++] = local_ascii_lower(v);
                s.values[s.n] = NULL;
        }
        /* A malformed header section still gets the values found so far. */
        *ret = s;
        return 0;
oom:
        delivered_set_done(&s);
        return -ENOMEM;
}

void delivered_set_done(DeliveredSet *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->values[i]);
        free(s->values);
        *s = (DeliveredSet) {};
}

bool delivered_set_has(const DeliveredSet *s, const char *address) {
        for (size_t i = 0; i < s->n; i++) {
                const char *v = s->values[i];
                size_t l = strlen(v);
                /* Accept "<addr>" as well as the plain form Postfix writes. */
                if (l >= 2 && v[0] == '<' && v[l - 1] == '>') {
                        if (strlen(address) == l - 2 && strncasecmp(v + 1, address, l - 2) == 0)
                                return true;
                } else if (strcaseeq(v, address))
                        return true;
        }
        return false;
}

/* --- expansion --- */

static int add_target(Expander *e, Target *t) {
        if (e->n >= LOCAL_MAX_TARGETS) {
                target_free(t);
                return 0;
        }
        Target **nt = realloc(e->targets, (e->n + 1) * sizeof(Target *));
        if (!nt) {
                target_free(t);
                return -ENOMEM;
        }
        e->targets = nt;
        e->targets[e->n++] = t;
        return 0;
}

Target *target_new(TargetKind kind, const char *address) {
        Target *t = calloc(1, sizeof(Target));
        if (!t)
                return NULL;
        t->kind = kind;
        t->result_fd = -1;
        t->address = strdup(address);
        if (!t->address)
                return target_free(t);
        return t;
}

/* The resolver's short name for local_expander_result(). */
#define add_result local_expander_result

int local_expander_result(Expander *e, const char *address, const char *dsn, const char *fmt, ...) {
        Target *t = target_new(TARGET_RESULT, address);
        char *diag = NULL;
        va_list ap;
        if (!t)
                return -ENOMEM;
        va_start(ap, fmt);
        int r = vasprintf(&diag, fmt, ap);
        va_end(ap);
        if (r < 0) {
                target_free(t);
                return -ENOMEM;
        }
        t->diag = diag;
        snprintf(t->dsn, sizeof(t->dsn), "%s", dsn);
        t->done = true;
        return add_target(e, t);
}

/* Returns 1 when key was seen before, else remembers it and returns 0. */
static int seen_before(Expander *e, const char *prefix, const char *key) {
        _cleanup_free_ char *k = NULL;
        if (asprintf(&k, "%s%s", prefix, key) < 0)
                return -ENOMEM;
        local_ascii_lower(k);
        for (size_t i = 0; i < e->n_seen; i++)
                if (streq(e->seen[i], k))
                        return 1;
        char **ns = realloc(e->seen, (e->n_seen + 1) * sizeof(char *));
        if (!ns)
                return -ENOMEM;
        e->seen = ns;
        e->seen[e->n_seen++] = TAKE_PTR(k);
        return 0;
}

static bool is_local_domain(const LocalSettings *s, const char *domain) {
        return isempty(domain) || domain_list_match((DomainList *) &s->mydestination, domain) > 0;
}

static bool list_has(char **l, const char *word) {
        for (; l && *l; l++)
                if (strcaseeq(*l, word))
                        return true;
        return false;
}

size_t local_base_length(const LocalSettings *s, const char *local) {
        if (isempty(s->recipient_delimiter))
                return strlen(local);
        /* owner-list and list-request stay whole when '-' is a delimiter (owner_request_special). */
        size_t n = strlen(local);
        if (s->owner_request_special && strchr(s->recipient_delimiter, '-') &&
            (strncasecmp(local, "owner-", 6) == 0 || (n > 8 && strcasecmp(local + n - 8, "-request") == 0)))
                return n;
        size_t l = strcspn(local + (local[0] ? 1 : 0), s->recipient_delimiter) + (local[0] ? 1 : 0);
        return l;
}

static int deliver_user(Expander *e, const char *name, const char *address) {
        struct passwd pwbuf, *pw = NULL;
        char buf[4096];
        _cleanup_free_ char *lname = strdup(name);
        int r;

        if (!lname)
                return -ENOMEM;
        local_ascii_lower(lname);
        r = getpwnam_r(lname, &pwbuf, buf, sizeof(buf), &pw);
        if (r != 0 && r != ENOENT && r != ESRCH)
                return add_result(e, address, "4.3.0", "user lookup failure for \"%s\": %s", lname, strerror(r));
        Target *pass = NULL;
        if (!pw) {
                if ((r = local_pass_target(e->s, lname, address, false, &pass)) != 0)
                        return r < 0 ? r : add_target(e, pass);
                r = local_luser_relay(e, lname, address);
                if (r != 0)
                        return r < 0 ? r : 0;
                return add_result(e, address, "5.1.1", "unknown user: \"%s\"", lname);
        }
        r = local_dotforward(e, pw, address);
        if (r != 0)
                return r < 0 ? r : 0;

        r = seen_before(e, "u:", pw->pw_name);
        if (r != 0)
                return r < 0 ? r : 0;
        if ((r = local_pass_target(e->s, pw->pw_name, address, true, &pass)) != 0)
                return r < 0 ? r : add_target(e, pass);

        const LocalSettings *s = e->s;
        Target *t = NULL;
        /* mailbox_command_maps, mailbox_command (local-mboxcmd.c) */
        if ((r = local_mailbox_command_target(s, pw, address, &t)) != 0)
                return r < 0 ? r : add_target(e, t);
        bool maildir = !isempty(s->home_mailbox) && s->home_mailbox[strlen(s->home_mailbox) - 1] == '/';
        t = target_new(maildir ? TARGET_MAILDIR : TARGET_MBOX, address);
        if (!t)
                return -ENOMEM;
        t->uid = pw->pw_uid;
        t->gid = pw->pw_gid;
        t->user = strdup(pw->pw_name);
        t->home = strdup(pw->pw_dir);
        t->spool = isempty(s->home_mailbox);
        if (t->spool)
                r = asprintf(&t->path, "%s/%s", s->mail_spool_directory, pw->pw_name);
        else
                r = asprintf(&t->path, "%s/%s", streq(pw->pw_dir, "/") ? "" : pw->pw_dir, s->home_mailbox);
        if (r < 0 || !t->user || !t->home) {
                t->path = NULL;
                target_free(t);
                return -ENOMEM;
        }
        return add_target(e, t);
}

static int expand_address(Expander *e, const char *local, const char *domain, const char *address,
                          const char *sender, unsigned depth);

/* deliver_user() for a name reached with sender and depth (the .forward and luser_relay
 * expansions it may start need them). */
static int deliver_user_from(Expander *e, const char *name, const char *address, const char *sender,
                             unsigned depth) {
        e->sender = sender;
        e->depth = depth;
        return deliver_user(e, name, address);
}

/* A command or file destination: run with the rights of the user whose .forward (or whose
 * :include: file) named it (e->rights), else of default_privs (an alias has no user context);
 * never as root (a root .forward's get default_privs too). */
static int deliver_privileged(Expander *e, TargetKind kind, const char *dest, const char *address) {
        struct passwd pwbuf, *pw = NULL;
        char buf[4096];
        int r;

        if (e->rights && e->rights->pw_uid != 0)
                pw = (struct passwd *) e->rights;
        else if ((r = getpwnam_r(e->s->default_privs, &pwbuf, buf, sizeof(buf), &pw)) != 0 || !pw)
                return add_result(e, address, "4.3.5", "default_privs user \"%s\" not found", e->s->default_privs);
        if (pw->pw_uid == 0)
                return add_result(e, address, "4.3.5", "default_privs must not be a privileged user");
        /* Once per destination and user: two users' .forward files may name the same command. */
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%lu:%s", (unsigned long) pw->pw_uid, dest) < 0)
                return -ENOMEM;
        r = seen_before(e, kind == TARGET_COMMAND ? "c:" : "F:", key);
        if (r != 0)
                return r < 0 ? r : 0;
        Target *t = target_new(kind, address);
        if (!t)
                return -ENOMEM;
        t->uid = pw->pw_uid;
        t->gid = pw->pw_gid;
        t->user = strdup(pw->pw_name);
        t->home = strdup(pw->pw_dir);
        t->path = strdup(dest);
        if (!t->user || !t->home || !t->path) {
                target_free(t);
                return -ENOMEM;
        }
        return add_target(e, t);
}

/* Looks key up in alias_maps and logs the rules the tables skipped. *ret_substituted: the value
 * holds text copied from the key. */
static int alias_lookup(const LocalSettings *s, const char *key, char **ret_value, bool *ret_substituted) {
        _cleanup_(table_notes_done) TableNotes notes = {};
        int r = table_list_lookup_full(s->aliases, key, ret_value, &notes);
        for (char **w = notes.warnings; w && *w; w++)
                log_warning("alias_maps: %s", *w);
        if (ret_substituted)
                *ret_substituted = r > 0 && notes.substituted;
        return r;
}

/* Errors about an alias list go to its owner, as in Postfix: with owner_request_special, when
 * an alias owner-<key> exists (and key is not an owner- alias itself), *ret is the sender for
 * the list's copies — owner-<key>@$myorigin, or with expand_owner_alias the owner alias's value
 * when that is one address (qualified with $myorigin); else NULL. */
static int owner_alias_sender(const LocalSettings *s, const char *key, char **ret) {
        _cleanup_free_ char *owner_key = NULL, *owner = NULL;
        int r;

        *ret = NULL;
        if (!s->owner_request_special || startswith(key, "owner-"))
                return 0;
        if (asprintf(&owner_key, "owner-%s", key) < 0)
                return -ENOMEM;
        r = alias_lookup(s, owner_key, &owner, NULL);
        if (r <= 0)
                return r;
        const char *name = owner_key;
        if (s->expand_owner_alias) {
                static const char seps[] = " \t\r\n,";
                char *v = owner + strspn(owner, seps);
                size_t len = strcspn(v, seps);
                bool single = len > 0 && v[len + strspn(v + len, seps)] == '\0';
                v[len] = '\0';
                if (single && v[0] != '|' && v[0] != '/' && v[0] != ':' && v[0] != '\\')
                        name = v;
                else if (*v)
                        log_warning("expand_owner_alias: the value of %s is not a single address: "
                                    "using %s@%s as the sender", owner_key, owner_key, s->myorigin);
        }
        if (strchr(name, '@'))
                *ret = strdup(name);
        else if (asprintf(ret, "%s@%s", name, s->myorigin) < 0)
                *ret = NULL;
        return *ret ? 1 : -ENOMEM;
}

/* Parses and follows one alias value (comma/space separated, "double quotes" protect).
 * substituted: the value holds text from the address, so none of it may name a command or file. */
static int expand_value(Expander *e, const char *key, const char *value, bool substituted,
                        const char *alias_address, const char *domain, const char *sender, unsigned depth) {
        const char *p = value;
        int r;

        for (;;) {
                while (*p && (*p == ',' || isspace((unsigned char) *p)))
                        p++;
                if (!*p)
                        break;
                _cleanup_strbuf_ StrBuf tok = STRBUF_INIT;
                bool quoted = false;
                for (; *p; p++) {
                        if (*p == '"') {
                                quoted = !quoted;
                                continue;
                        }
                        if (!quoted && (*p == ',' || isspace((unsigned char) *p)))
                                break;
                        if (*p == '\\' && quoted && p[1])
                                p++;
                        if ((r = strbuf_putc(&tok, *p)) < 0)
                                return r;
                }
                const char *t = tok.data ? tok.data : "";
                if (!*t)
                        continue;
                e->n_tokens++;

                /* "~/file" in a .forward: below the user's home directory. */
                _cleanup_free_ char *home_file = NULL;
                if (t[0] == '~' && t[1] == '/' && e->rights && !substituted) {
                        if (asprintf(&home_file, "%s%s", streq(e->rights->pw_dir, "/") ? "" : e->rights->pw_dir,
                                     t + 1) < 0)
                                return -ENOMEM;
                        t = home_file;
                }
                if (t[0] == '~') {
                        r = add_result(e, alias_address, "5.3.5", t[1] == '/' ? "unknown home directory for: %s" :
                                       "bad home directory syntax for: %s", t);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (startswith_no_case(t, ":include:")) {
                        if (substituted)
                                r = add_result(e, alias_address, "5.7.1", "mail to :include: from a $number "
                                               "substitution is not allowed");
                        else
                                r = local_include(e, t + strlen(":include:"), alias_address, domain, sender, depth + 1);
                } else if (t[0] == '|' || t[0] == '/') {
                        bool command = t[0] == '|';
                        char **allow = command ? e->s->allow_mail_to_commands : e->s->allow_mail_to_files;
                        if (substituted)
                                r = add_result(e, alias_address, "5.7.1", "mail to %s from a $number substitution "
                                               "is not allowed", command ? "command" : "file");
                        else if (!list_has(allow, local_exp_class_name(e->cls)))
                                r = add_result(e, alias_address, "5.7.1", "mail to %s is restricted",
                                               command ? "command" : "file");
                        else
                                r = deliver_privileged(e, command ? TARGET_COMMAND : TARGET_FILE, t, alias_address);
                } else if (t[0] == '\\') {
                        /* "\user": deliver to the user's mailbox, no further alias expansion. */
                        _cleanup_free_ char *a = NULL;
                        if (asprintf(&a, "%s@%s", t + 1, domain) < 0)
                                return -ENOMEM;
                        r = deliver_user_from(e, t + 1, local_ascii_lower(a), sender, depth);
                } else
                        r = local_expander_address(e, t, alias_address, sender, depth);
                if (r < 0)
                        return r;
        }
        return 0;
}

int local_expander_address(Expander *e, const char *t, const char *via, const char *sender, unsigned depth) {
        const char *at = strrchr(t, '@');
        _cleanup_free_ char *lp = at ? strndup(t, (size_t) (at - t)) : strdup(t);
        const char *dom = at ? at + 1 : e->s->myorigin;
        int r;

        if (!lp)
                return -ENOMEM;
        if (is_local_domain(e->s, dom)) {
                _cleanup_free_ char *a = NULL;
                if (asprintf(&a, "%s@%s", lp, dom) < 0)
                        return -ENOMEM;
                return expand_address(e, lp, dom, a, sender, depth + 1);
        }
        r = seen_before(e, "f:", t);
        if (r != 0)
                return r < 0 ? r : 0;
        Target *f = target_new(TARGET_FORWARD, t);
        if (!f || !(f->sender = strdup(sender)) || !(f->via = strdup(via))) {
                target_free(f);
                return -ENOMEM;
        }
        return add_target(e, f);
}

const char *local_exp_class_name(LocalExpClass cls) {
        return cls == LOCAL_EXP_FORWARD ? "forward" : cls == LOCAL_EXP_INCLUDE ? "include" : "alias";
}

int local_expander_seen(Expander *e, const char *prefix, const char *key) {
        return seen_before(e, prefix, key);
}

bool local_expander_was_seen(const Expander *e, const char *prefix, const char *key) {
        size_t lp = strlen(prefix);
        for (size_t i = 0; i < e->n_seen; i++)
                if (strncmp(e->seen[i], prefix, lp) == 0 && strcaseeq(e->seen[i] + lp, key))
                        return true;
        return false;
}

int local_expander_lines(Expander *e, const char *text, const char *address, const char *domain,
                         const char *sender, unsigned depth) {
        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *line = strndup(p, n);
                if (!line)
                        return -ENOMEM;
                p += n + (p[n] == '\n');
                if (line[0] == '#')
                        continue;
                int r = expand_value(e, NULL, line, false, address, domain, sender, depth);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int expand_address(Expander *e, const char *local, const char *domain, const char *address,
                          const char *sender, unsigned depth) {
        const LocalSettings *s = e->s;
        _cleanup_free_ char *lower = strdup(local), *base = NULL, *value = NULL;
        const char *key = NULL;
        int r;

        if (!lower)
                return -ENOMEM;
        local_ascii_lower(lower);
        base = strndup(lower, local_base_length(s, lower));
        if (!base)
                return -ENOMEM;

        if (delivered_set_has(e->delivered, address))
                return add_result(e, address, "5.4.6", "mail forwarding loop for %s", address);
        if (depth > LOCAL_MAX_DEPTH)
                return add_result(e, address, "5.4.6", "alias expansion depth limit exceeded for %s", address);

        /* An alias that reaches a name already being expanded means "deliver to that user". */
        for (size_t i = 0; i < e->n_chain; i++)
                if (streq(e->chain[i], lower) || streq(e->chain[i], base))
                        return deliver_user_from(e, base, address, sender, depth);

        if (s->aliases) {
                bool substituted = false;
                r = alias_lookup(s, lower, &value, &substituted);
                key = lower;
                if (r == 0 && !streq(lower, base)) {
                        r = alias_lookup(s, base, &value, &substituted);
                        key = base;
                }
                if (r < 0)
                        return add_result(e, address, "4.3.0", "alias_maps lookup failure for \"%s\": %s",
                                          lower, strerror(-r));
                if (r > 0) {
                        /* Each alias is expanded once per recipient: lists that name the same
                         * alias several times would otherwise expand exponentially with depth. */
                        r = seen_before(e, "a:", key);
                        if (r != 0)
                                return r < 0 ? r : 0;
                        _cleanup_free_ char *owner_sender = NULL;
                        r = owner_alias_sender(s, key, &owner_sender);
                        if (r < 0 && r != -ENOMEM)
                                return add_result(e, address, "4.3.0", "alias_maps lookup failure for "
                                                  "\"owner-%s\": %s", key, strerror(-r));
                        if (r < 0)
                                return r;
                        if (e->n_chain >= ELEMENTSOF(e->chain))
                                return add_result(e, address, "5.4.6", "alias expansion depth limit exceeded for %s",
                                                  address);
                        e->chain[e->n_chain++] = key;
                        r = expand_value(e, key, value, substituted, address, domain,
                                         owner_sender ? owner_sender : sender, depth);
                        e->n_chain--;
                        return r;
                }
        }
        return deliver_user_from(e, base, address, sender, depth);
}

int local_resolve(const LocalSettings *s, const char *recipient, const char *orig_sender,
                  const DeliveredSet *delivered, Target ***ret, size_t *ret_n) {
        Expander e = { .s = s, .delivered = delivered };
        _cleanup_free_ char *local = NULL, *domain = NULL, *address = NULL;
        _cleanup_address_free_ Address *a = NULL;
        const char *reason = NULL;
        int r;

        if (address_parse(recipient, ADDRESS_ALLOW_NO_DOMAIN | ADDRESS_SMTPUTF8, &a, &reason) >= 0 && a) {
                local = strdup(a->local);
                domain = strdup(a->domain ? a->domain : s->myorigin);
        } else {
                const char *at = strrchr(recipient, '@');
                local = at ? strndup(recipient, (size_t) (at - recipient)) : strdup(recipient);
                domain = strdup(at ? at + 1 : s->myorigin);
        }
        address = strdup(recipient);
        if (!local || !domain || !address)
                return -ENOMEM;
        local_ascii_lower(address);

        r = expand_address(&e, local, domain, address, orig_sender, 0);
        if (r >= 0 && e.n == 0)
                /* Everything was a duplicate or over the limit: nothing left to do is a success. */
                r = add_result(&e, address, "2.0.0", "delivered (duplicate suppressed)");
        for (size_t i = 0; i < e.n_seen; i++)
                free(e.seen[i]);
        free(e.seen);
        if (r < 0) {
                for (size_t i = 0; i < e.n; i++)
                        target_free(e.targets[i]);
                free(e.targets);
                return r;
        }
        *ret = e.targets;
        *ret_n = e.n;
        return 0;
}
