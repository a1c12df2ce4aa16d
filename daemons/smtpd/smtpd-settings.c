/* smtpd-settings.c — postern-smtpd's settings snapshots: smtpd_settings_new() builds the
 * settings of one listener from main.cf (with its master.cf-style overrides),
 * smtpd_settings_build() shares one snapshot among listeners without overrides, and the
 * reference counting lets a reload affect only new sessions. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s) {
        if (s)
                s->n_ref++;
        return s;
}

SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        free(s->listener);
        free(s->myhostname);
        free(s->myorigin);
        free(s->banner);
        free(s->recipient_delimiter);
        smtpd_restrictions_done(&s->client_restrictions);
        smtpd_restrictions_done(&s->helo_restrictions);
        smtpd_restrictions_done(&s->sender_restrictions);
        smtpd_restrictions_done(&s->relay_restrictions);
        smtpd_restrictions_done(&s->recipient_restrictions);
        smtpd_restrictions_done(&s->data_restrictions);
        smtpd_restrictions_done(&s->end_of_data_restrictions);
        smtpd_restriction_classes_free(s);
        free(s->null_access_key);
        free(s->reject_footer);
        table_list_free(s->reject_footer_maps);
        table_list_free(s->sender_login_maps);
        smtpd_netlist_done(&s->mynetworks);
        smtpd_netlist_done(&s->bare_newline_exclusions);
        domain_list_done(&s->mydestination);
        domain_list_done(&s->relay_domains);
        table_list_free(s->local_recipient_maps);
        smtpd_anvil_settings_done(&s->anvil);
        smtpd_cleanup_settings_done(s);
        table_list_free(s->ehlo_discard_maps);
        smtpd_check_settings_done(s);
        tls_server_unref(s->tls);
        smtpd_auth_settings_done(s);
        free(s);
        return NULL;
}

/* The registry knows every parameter used here, so conf_get_listener() never returns NULL for
 * them and the typed getters return the registry defaults themselves. */
static char *dup_param(Conf *c, const char *listener, const char *name) {
        return strdup(strempty(conf_get_listener(c, listener, name)));
}

static int restrictions_param(Conf *c, const char *listener, const char *name, SmtpdSettings *s,
                              RestrictionList *ret) {
        _cleanup_strv_free_ char **names = conf_get_list(c, listener, name);
        if (!names)
                return log_oom();
        return smtpd_restrictions_compile(name, names, s->classes, s->n_classes, ret);
}

/* A list of tables (NULL when the parameter is empty); failing to open one is an error. */
static int tables_param(Conf *c, const char *listener, const char *name, TableList **ret) {
        _cleanup_strv_free_ char **specs = conf_get_list(c, listener, name);
        _cleanup_free_ char *joined = NULL, *reason = NULL;
        size_t len = 1;

        if (!specs)
                return log_oom();
        if (!specs[0])
                return 0;
        for (char **i = specs; *i; i++)
                len += strlen(*i) + 1;
        joined = calloc(1, len);
        if (!joined)
                return log_oom();
        for (char **i = specs; *i; i++) {
                if (i != specs)
                        strcat(joined, " ");
                strcat(joined, *i);
        }
        int r = table_list_open(joined, 0, ret, &reason);
        if (r < 0)
                return log_error_errno(r, "%s = %s: %s", name, joined, reason ? reason : "cannot open table");
        return 0;
}

static int code_param(Conf *c, const char *listener, const char *name, int dflt) {
        long long v = conf_get_int(c, listener, name);
        return v >= 400 && v <= 599 ? (int) v : dflt;
}

static int netlist_param(Conf *c, const char *listener, const char *name, NetList *ret) {
        _cleanup_strv_free_ char **entries = conf_get_list(c, listener, name);
        if (!entries)
                return log_oom();
        return smtpd_netlist_parse(name, entries, ret);
}

int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret) {
        _cleanup_(smtpd_settings_unrefp) SmtpdSettings *s = calloc(1, sizeof(SmtpdSettings));
        int r;

        if (!s)
                return log_oom();
        s->n_ref = 1;
        s->listener = strdup(listener ? listener : "smtpd");
        s->myhostname = dup_param(c, listener, "myhostname");
        s->myorigin = dup_param(c, listener, "myorigin");
        s->recipient_delimiter = dup_param(c, listener, "recipient_delimiter");
        s->banner = dup_param(c, listener, "smtpd_banner");
        if (!s->listener || !s->myhostname || !s->myorigin || !s->recipient_delimiter || !s->banner)
                return log_oom();

        s->message_size_limit = (uint64_t) MAX(0, conf_get_int(c, listener, "message_size_limit"));
        s->header_size_limit = (uint64_t) MAX(1, conf_get_int(c, listener, "header_size_limit"));
        s->line_length_limit = (size_t) MAX(80, conf_get_int(c, listener, "line_length_limit"));
        s->recipient_limit = (unsigned) MAX(1, conf_get_int(c, listener, "smtpd_recipient_limit"));
        s->hard_error_limit = (unsigned) MAX(1, conf_get_int(c, listener, "smtpd_hard_error_limit"));
        s->junk_command_limit = (unsigned) MAX(1, conf_get_int(c, listener, "smtpd_junk_command_limit"));
        s->unknown_local_code = (int) conf_get_int(c, listener, "unknown_local_recipient_reject_code");
        if (s->unknown_local_code < 400 || s->unknown_local_code > 599)
                s->unknown_local_code = 550;
        s->timeout_usec = (usec_t) MAX(1, conf_get_time(c, listener, "smtpd_timeout")) * USEC_PER_SEC;
        s->disable_vrfy = conf_get_bool(c, listener, "disable_vrfy_command");
        s->helo_required = conf_get_bool(c, listener, "smtpd_helo_required");
        s->reject_unlisted_recipient = conf_get_bool(c, listener, "smtpd_reject_unlisted_recipient");
        /* "no" (Postfix's old default) is treated as normalize: the end of DATA stays CRLF.CRLF. */
        const char *bn = conf_get_listener(c, listener, "smtpd_forbid_bare_newline");
        s->bare_newline = bn && strcaseeq(bn, "yes") ? BARE_NEWLINE_YES : BARE_NEWLINE_NORMALIZE;
        s->smtputf8_enable = conf_get_bool(c, listener, "smtputf8_enable");
        _cleanup_strv_free_ char **discard = conf_get_list(c, listener, "smtpd_discard_ehlo_keywords");
        if (!discard)
                return log_oom();
        s->ehlo_discard = command_ehlo_mask(discard);
        const char *dmaps = conf_get_listener(c, listener, "smtpd_discard_ehlo_keyword_address_maps");
        if (!isempty(dmaps)) {
                _cleanup_free_ char *reason = NULL;
                r = table_list_open(dmaps, 0, &s->ehlo_discard_maps, &reason);
                if (r < 0)
                        return log_error_errno(r, "smtpd_discard_ehlo_keyword_address_maps = %s: %s", dmaps,
                                               reason ? reason : "cannot open table");
        }
        if ((r = smtpd_tls_settings(c, listener, s)) < 0)
                return r;

        s->delay_reject = conf_get_bool(c, listener, "smtpd_delay_reject");
        s->reject_unlisted_sender = conf_get_bool(c, listener, "smtpd_reject_unlisted_sender");
        s->forbid_unauth_pipelining = conf_get_bool(c, listener, "smtpd_forbid_unauth_pipelining");
        s->soft_bounce = conf_get_bool(c, listener, "soft_bounce");
        s->reject_code = code_param(c, listener, "reject_code", 554);
        s->defer_code = code_param(c, listener, "defer_code", 450);
        s->relay_code = code_param(c, listener, "relay_domains_reject_code", 554);
        s->access_reject_code = code_param(c, listener, "access_map_reject_code", 554);
        s->access_defer_code = code_param(c, listener, "access_map_defer_code", 450);
        s->non_fqdn_code = code_param(c, listener, "non_fqdn_reject_code", 504);
        s->invalid_hostname_code = code_param(c, listener, "invalid_hostname_reject_code", 501);
        s->null_access_key = dup_param(c, listener, "smtpd_null_access_lookup_key");
        /* Unexpanded: $client_address and friends are filled in per reply (smtpd-access.c). */
        _cleanup_free_ char *footer_name = NULL;
        const char *footer = NULL;
        if (listener && asprintf(&footer_name, "%s/smtpd_reject_footer", listener) >= 0)
                footer = conf_get_raw(c, footer_name, NULL);
        if (!footer)
                footer = conf_get_raw(c, "smtpd_reject_footer", NULL);
        s->reject_footer = strdup(strempty(footer));
        if (!s->null_access_key || !s->reject_footer)
                return log_oom();
        _cleanup_strv_free_ char **pdms = conf_get_list(c, listener, "parent_domain_matches_subdomains");
        for (char **i = pdms; i && *i; i++)
                s->parent_matches_access = s->parent_matches_access || streq(*i, "smtpd_access_maps");
        if ((r = tables_param(c, listener, "smtpd_reject_footer_maps", &s->reject_footer_maps)) < 0 ||
            (r = tables_param(c, listener, "smtpd_sender_login_maps", &s->sender_login_maps)) < 0)
                return r;

        if ((r = smtpd_restriction_classes_build(c, listener, s)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_relay_restrictions", s, &s->relay_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_recipient_restrictions", s, &s->recipient_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_client_restrictions", s, &s->client_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_helo_restrictions", s, &s->helo_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_sender_restrictions", s, &s->sender_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_data_restrictions", s, &s->data_restrictions)) < 0 ||
            (r = restrictions_param(c, listener, "smtpd_end_of_data_restrictions", s,
                                    &s->end_of_data_restrictions)) < 0)
                return r;
        s->can_refuse_relay = smtpd_restrictions_can_refuse(&s->relay_restrictions) ||
                smtpd_restrictions_can_refuse(&s->recipient_restrictions);

        if ((r = netlist_param(c, listener, "mynetworks", &s->mynetworks)) < 0 ||
            (r = netlist_param(c, listener, "smtpd_forbid_bare_newline_exclusions",
                               &s->bare_newline_exclusions)) < 0)
                return r;
        if ((r = smtpd_anvil_settings(c, listener, &s->anvil)) < 0)
                return r;

        _cleanup_strv_free_ char **dest = conf_get_list(c, listener, "mydestination");
        _cleanup_strv_free_ char **relay = conf_get_list(c, listener, "relay_domains");
        if (!dest || !relay)
                return log_oom();
        _cleanup_free_ char *why = NULL;
        r = domain_list_init(&s->mydestination, dest, false, &why);
        if (r < 0)
                return log_error_errno(r, "mydestination: %s", why ? why : "out of memory");
        r = domain_list_init(&s->relay_domains, relay, true, &why);
        if (r < 0)
                return log_error_errno(r, "relay_domains: %s", why ? why : "out of memory");

        _cleanup_strv_free_ char **maps = conf_get_list(c, listener, "local_recipient_maps");
        if (!maps)
                return log_oom();
        if (maps[0]) {
                _cleanup_free_ char *joined = NULL, *reason = NULL;
                size_t len = 1;
                for (char **i = maps; *i; i++)
                        len += strlen(*i) + 1;
                joined = calloc(1, len);
                if (!joined)
                        return log_oom();
                for (char **i = maps; *i; i++) {
                        if (i != maps)
                                strcat(joined, " ");
                        strcat(joined, *i);
                }
                r = table_list_open(joined, 0, &s->local_recipient_maps, &reason);
                if (r < 0) {
                        /* Like a table that fails at lookup time: local recipients get 451 until
                         * the table is fixed and smtpd is reloaded; other mail keeps flowing. */
                        log_error_errno(r, "local_recipient_maps = %s: %s; answering 451 4.3.0 for local "
                                        "recipients", joined, reason ? reason : "cannot open table");
                        s->local_recipient_maps_error = r;
                }
        }

        r = smtpd_cleanup_settings(c, listener, s);
        if (r >= 0)
                r = smtpd_dnsbl_settings_load(c, listener, s);
        if (r >= 0)
                r = smtpd_policy_settings_load(c, listener, s);
        if (r >= 0)
                r = smtpd_auth_settings(c, listener, s);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

typedef struct OverrideScan {
        char *const *names;
        size_t n;
        bool *has;
} OverrideScan;

static void note_override(const char *name, const char *raw, void *userdata) {
        OverrideScan *o = userdata;
        const char *slash = strchr(name, '/');
        if (!slash)
                return;
        for (size_t i = 0; i < o->n; i++)
                if (strlen(o->names[i]) == (size_t) (slash - name) && strncmp(name, o->names[i], slash - name) == 0)
                        o->has[i] = true;
}

int smtpd_settings_build(Conf *c, char *const *names, size_t n, SmtpdSettings **ret) {
        _cleanup_free_ bool *has = calloc(n + 1, sizeof(bool));
        _cleanup_(smtpd_settings_unrefp) SmtpdSettings *shared = NULL;
        SmtpdSettings **v = calloc(n + 1, sizeof(SmtpdSettings *));
        int r = 0;

        if (!has || !v) {
                free(v);
                return log_oom();
        }
        /* A listener with any "<listener>/<name>" override in main.cf gets a snapshot of its
         * own; all others share one, so their tables are opened (and kept) once. */
        conf_foreach_explicit(c, note_override, &(OverrideScan) { names, n, has });
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (has[i])
                        r = smtpd_settings_new(c, names[i], &v[i]);
                else {
                        if (!shared)
                                r = smtpd_settings_new(c, NULL, &shared);
                        v[i] = smtpd_settings_ref(shared);
                }
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        smtpd_settings_unref(v[i]);
                free(v);
                return r;
        }
        size_t distinct = 0;
        for (size_t i = 0; i < n; i++) {
                bool seen = false;
                for (size_t k = 0; k < i; k++)
                        seen = seen || v[k] == v[i];
                distinct += !seen;
                ret[i] = v[i];
        }
        free(v);
        log_info("%zu settings snapshot(s) for %zu listener(s)", distinct, n);
        return 0;
}
