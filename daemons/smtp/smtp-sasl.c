/* smtp-sasl.c — the smtp_sasl_* (lmtp_sasl_*) settings of postern-smtp's SMTP AUTH client and
 * the decisions around the exchange: which username:password (smtp_sasl_password_maps, keyed by
 * sender with smtp_sender_dependent_authentication, then server host name, then next hop as
 * written), and which mechanism (the server's AUTH list ∩ smtp_sasl_mechanism_filter ∩ what
 * smtp_sasl_security_options — or smtp_sasl_tls_security_options inside TLS — allows,
 * strongest first: SCRAM-SHA-256-PLUS only inside TLS with channel binding data). The exchange itself runs in smtp-session-auth.c; the mechanisms are
 * common/sasl/sasl-mech-client.c. A password table that other users can read is a warning note
 * at load (it holds passwords). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "conf/table.h"
#include "log/log.h"
#include "sasl/sasl-mech-client.h"
#include "smtp.h"

struct SmtpSasl {
        const char *prefix;           /* "smtp" / "lmtp" */
        TableList *passwd;            /* *_sasl_password_maps */
        char *passwd_spec;
        char *passwd_error;           /* why the tables could not be opened: every lookup fails */
        unsigned forbidden;           /* SaslMechProps excluded without TLS */
        unsigned forbidden_tls;       /* ... and inside TLS */
        char *options, *tls_options;  /* the settings as written, for diagnostics */
        char **filter;                /* *_sasl_mechanism_filter, NULL: any */
        bool by_sender;               /* *_sender_dependent_authentication */
        bool soft_bounce;             /* *_sasl_auth_soft_bounce */
};

SmtpSasl *smtp_sasl_free(SmtpSasl *a) {
        if (!a)
                return NULL;
        table_list_free(a->passwd);
        free(a->passwd_spec);
        free(a->passwd_error);
        free(a->options);
        free(a->tls_options);
        strv_free(a->filter);
        free(a);
        return NULL;
}

static char *join_words(char **v) {
        size_t n = 1;
        for (char **w = v; w && *w; w++)
                n += strlen(*w) + 2;
        char *s = calloc(1, n);
        for (char **w = v; s && w && *w; w++) {
                if (w != v)
                        strcat(s, ", ");
                strcat(s, *w);
        }
        return s;
}

static int options_load(Conf *c, SmtpSettings *s, const char *name, unsigned *ret, char **ret_text) {
        _cleanup_strv_free_ char **words = smtp_conf_list(c, s, name);
        const char *bad = NULL;
        if (sasl_security_options_parse(words, ret, &bad) < 0)
                return log_error_errno(-EINVAL, "%s%s%s_%s: unknown security option \"%s\" (expected noplaintext, "
                                       "noactive, nodictionary, noanonymous or mutual_auth)", strempty(s->transport),
                                       s->transport ? "/" : "", s->prefix, name, bad);
        return (*ret_text = join_words(words)) ? 0 : log_oom();
}

/* A table file other users may read: it holds passwords. Notes "type:/path" entries only. */
static void check_modes(const SmtpSasl *a, char ***notes) {
        _cleanup_strv_free_ char **specs = NULL;
        char *copy = strdup(a->passwd_spec), *save = NULL;
        for (char *w = copy ? strtok_r(copy, ", \t", &save) : NULL; w; w = strtok_r(NULL, ", \t", &save)) {
                const char *colon = strchr(w, ':');
                struct stat st;
                if (!colon || colon[1] != '/' || stat(colon + 1, &st) < 0 || !(st.st_mode & S_IROTH))
                        continue;
                char *note = NULL;
                if (asprintf(&note, "%s_sasl_password_maps: %s is readable by every user of this host, and it holds "
                             "passwords: chown root:postern %s; chmod 640 %s", a->prefix, colon + 1, colon + 1,
                             colon + 1) < 0)
                        continue;
                if (smtp_note_add(notes, note) < 0)
                        free(note);
        }
        free(copy);
}

/* The *_sasl_* settings of s into *ret (NULL when *_sasl_auth_enable = no); notes (warnings) go to
 * *notes. <0 (logged) for an invalid value. */
int smtp_sasl_load(Conf *c, SmtpSettings *s, SmtpSasl **ret, char ***notes) {
        _cleanup_(smtp_sasl_freep) SmtpSasl *a = NULL;
        _cleanup_free_ char *why = NULL, *open_note = NULL;
        int r;

        *ret = NULL;
        if (!smtp_conf_bool(c, s, "sasl_auth_enable"))
                return 0;
        if (!(a = calloc(1, sizeof(*a))))
                return log_oom();
        a->prefix = s->prefix;
        const char *type = strempty(smtp_conf_get(c, s, "sasl_type"));
        if (!strcaseeq(type, "cyrus"))
                return log_error_errno(-EINVAL, "%s_sasl_type = %s: unsupported SASL type; Postern's SMTP client has "
                                       "its own SASL mechanisms and accepts only cyrus (the default) here", s->prefix, type);
        if (!(a->passwd_spec = strdup(strempty(smtp_conf_get(c, s, "sasl_password_maps")))))
                return log_oom();
        /* A table that cannot be opened (a type Postern does not have, such as mysql:) defers the
         * mail that would look it up, rather than send it without a login or stop postern-smtp. */
        if ((r = table_list_open(a->passwd_spec, 0, &a->passwd, &why)) < 0) {
                if (r == -ENOMEM)
                        return log_oom();
                if (asprintf(&a->passwd_error, "%s_sasl_password_maps = %s: %s", s->prefix, a->passwd_spec,
                             why ? why : strerror(-r)) < 0) {
                        a->passwd_error = NULL;
                        return log_oom();
                }
                if (!(open_note = strdup(a->passwd_error)) || smtp_note_add(notes, open_note) < 0)
                        return log_oom();
                open_note = NULL;   /* the list has it (or freed a duplicate) */
        }
        if ((r = options_load(c, s, "sasl_security_options", &a->forbidden, &a->options)) < 0 ||
            (r = options_load(c, s, "sasl_tls_security_options", &a->forbidden_tls, &a->tls_options)) < 0)
                return r;
        a->filter = smtp_conf_list(c, s, "sasl_mechanism_filter");
        if (a->filter && !a->filter[0])
                a->filter = strv_free(a->filter);
        for (char **f = a->filter; f && *f; f++) {
                char *note = NULL;
                if (strchr(*f, ':') && asprintf(&note, "not supported: %s_sasl_mechanism_filter element %s (only "
                                                "mechanism names; a lookup table is not read, so this element "
                                                "matches no mechanism)", s->prefix, *f) >= 0 &&
                    smtp_note_add(notes, note) < 0)
                        free(note);
        }
        a->by_sender = smtp_conf_bool(c, s, "sender_dependent_authentication");
        a->soft_bounce = smtp_conf_bool(c, s, "sasl_auth_soft_bounce");
        if (!isempty(smtp_conf_get(c, s, "sasl_auth_cache_name"))) {
                char *note = NULL;
                if (asprintf(&note, "not supported: %s_sasl_auth_cache_name (Postern keeps no cache of rejected "
                             "logins; after one the queue manager suspends the destination for minimal_backoff_time, "
                             "as after a failed connection)", s->prefix) >= 0 && smtp_note_add(notes, note) < 0)
                        free(note);
        }
        check_modes(a, notes);
        *ret = TAKE_PTR(a);
        return 0;
}

bool smtp_sasl_by_sender(const SmtpSasl *a) {
        return a && a->by_sender;
}

bool smtp_sasl_soft_bounce(const SmtpSasl *a) {
        return a->soft_bounce;
}

/* The lookup keys, in order: with by_sender and a sender, the address and then "@domain"; the
 * server's host name; the next hop as written ("[smtp.example.net]:587"). Duplicates are left
 * out (a "[host]" next hop whose host name is the key already). */
int smtp_sasl_keys(bool by_sender, const char *sender, const char *host, const char *nexthop, char ***ret) {
        char **v = calloc(5, sizeof(char *));
        size_t n = 0;
        if (!v)
                return -ENOMEM;
        const char *at = sender ? strrchr(sender, '@') : NULL;
        const char *cand[4] = { by_sender && !isempty(sender) ? sender : NULL,
                                by_sender && at && at != sender && at[1] ? at : NULL, host, nexthop };
        for (size_t i = 0; i < 4; i++) {
                bool dup = false;
                for (size_t k = 0; k < n; k++)
                        dup = dup || strcaseeq(v[k], cand[i] ? cand[i] : "");
                if (isempty(cand[i]) || dup)
                        continue;
                if (!(v[n++] = strdup(cand[i]))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

/* Looks the keys up in order: 1 with *ret_value ("username:password") and *ret_key, 0 when no
 * key is found, <0 with diag on a table failure. from/to: which keys (the sender's are looked up
 * at the start of a delivery, the server's when it offers AUTH). */
static int lookup_keys(SmtpSasl *a, char **keys, char **ret_value, char *diag, size_t size) {
        if (!a->passwd) {
                snprintf(diag, size, "%s", a->passwd_error);
                return -EIO;
        }
        for (char **k = keys; k && *k; k++) {
                int r = table_list_lookup(a->passwd, *k, ret_value);
                if (r < 0) {
                        snprintf(diag, size, "%s_sasl_password_maps lookup error for \"%s\": %s", a->prefix, *k,
                                 strerror(-r));
                        return r;
                }
                if (r > 0)
                        return 1;
        }
        return 0;
}

int smtp_sasl_lookup_sender(SmtpSasl *a, const char *sender, char **ret_value, char *diag, size_t size) {
        _cleanup_strv_free_ char **keys = NULL;
        *ret_value = NULL;
        if (!a || !a->by_sender || isempty(sender))
                return 0;
        if (smtp_sasl_keys(true, sender, NULL, NULL, &keys) < 0) {
                snprintf(diag, size, "out of memory");
                return -ENOMEM;
        }
        return lookup_keys(a, keys, ret_value, diag, size);
}

int smtp_sasl_lookup_server(SmtpSasl *a, const char *host, const char *nexthop, char **ret_value, char *diag,
                            size_t size) {
        _cleanup_strv_free_ char **keys = NULL;
        *ret_value = NULL;
        if (smtp_sasl_keys(false, NULL, host, nexthop, &keys) < 0) {
                snprintf(diag, size, "out of memory");
                return -ENOMEM;
        }
        return lookup_keys(a, keys, ret_value, diag, size);
}

static bool offered(const char *list, const char *mech) {
        _cleanup_free_ char *copy = strdup(strempty(list));
        char *save = NULL;
        for (char *w = copy ? strtok_r(copy, " \t", &save) : NULL; w; w = strtok_r(NULL, " \t", &save))
                if (strcaseeq(w, mech))
                        return true;
        return false;
}

static bool filtered_out(const SmtpSasl *a, const char *mech) {
        if (!a->filter)
                return false;
        for (char **f = a->filter; *f; f++)
                if (strcaseeq(*f, mech))
                        return false;
        return true;
}

/* The mechanism to use among those the server offers (its AUTH keyword's list), or NULL with
 * why explaining what excluded each. */
bool smtp_sasl_wants_channel_binding(const char *server_mechs, const char *mech) {
        return strcaseeq(mech, "SCRAM-SHA-256-PLUS") ||
               (strcaseeq(mech, "SCRAM-SHA-256") && !offered(server_mechs, "SCRAM-SHA-256-PLUS"));
}

const char *smtp_sasl_choose(const SmtpSasl *a, const char *server_mechs, bool tls, bool channel_binding, char *why,
                             size_t size) {
        unsigned forbidden = tls ? a->forbidden_tls : a->forbidden;
        size_t len = 0;

        for (size_t i = 0; sasl_mech_client_names[i]; i++) {
                const char *m = sasl_mech_client_names[i];
                unsigned props = 0;
                (void) sasl_mech_client_known(m, &props);
                if (!offered(server_mechs, m) || filtered_out(a, m) ||
                    (strcaseeq(m, "SCRAM-SHA-256-PLUS") && !(tls && channel_binding)))
                        continue;
                if (!(props & forbidden))
                        return m;
                if (len < size)
                        len += (size_t) snprintf(why + len, size - len, "%s%s", len ? " " : "", m);
        }
        if (len > 0 && len < size)
                snprintf(why + len, size - len, " excluded by %s_sasl_%ssecurity_options = %s%s; server offers %s",
                         a->prefix, tls ? "tls_" : "", tls ? a->tls_options : a->options, tls ? "" : " (no TLS)",
                         server_mechs);
        else if (len == 0)
                snprintf(why, size, "server offers %s; Postern's client has SCRAM-SHA-256-PLUS (inside TLS) SCRAM-SHA-256 PLAIN LOGIN%s", server_mechs,
                         a->filter ? " (and " : "");
        if (len == 0 && a->filter) {
                _cleanup_free_ char *f = join_words(a->filter);
                size_t l = strlen(why);
                if (l < size)
                        snprintf(why + l, size - l, "%s_sasl_mechanism_filter = %s)", a->prefix, strempty(f));
        }
        return NULL;
}
