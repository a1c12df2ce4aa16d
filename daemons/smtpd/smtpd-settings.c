/* smtpd-settings.c — postern-smtpd's settings snapshots: smtpd_settings_new() builds the
 * settings of one listener from main.cf (with its master.cf-style overrides),
 * smtpd_settings_build() shares one snapshot among listeners without overrides, and the
 * reference counting lets a reload affect only new sessions.
 *
 * The plain values are rows of smtpd_fields (common/conf/conf-fields.h: the registry's types,
 * defaults and limits); code is left only for what needs it: restriction lists and classes,
 * network and domain lists, the table whose failure means 451, TLS, SASL and content checks. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "log/log.h"

/* "no" (Postfix's old default) is treated as normalize: the end of DATA stays CRLF.CRLF. */
static const ConfFieldEnum bare_newline_values[] = {
        { "normalize", BARE_NEWLINE_NORMALIZE }, { "no", BARE_NEWLINE_NORMALIZE }, { "yes", BARE_NEWLINE_YES }, {},
};
static const ConfFieldEnum upstream_proxy_values[] = {
        { "", UPSTREAM_PROXY_NONE }, { "haproxy", UPSTREAM_PROXY_HAPROXY }, {},
};
static const ConfFieldEnum tls_level_values[] = {
        { "none", TLS_LEVEL_NONE }, { "may", TLS_LEVEL_MAY }, { "encrypt", TLS_LEVEL_ENCRYPT }, {},
};

#define F(...) CONF_FIELD(SmtpdSettings, __VA_ARGS__)
static const ConfField smtpd_fields[] = {
        F("myhostname", STRING, myhostname),
        F("myorigin", STRING, myorigin),
        F("recipient_delimiter", STRING, recipient_delimiter),
        F("smtpd_banner", STRING, banner),
        F("message_size_limit", U64, message_size_limit),
        F("header_size_limit", U64, header_size_limit),
        F("line_length_limit", SIZE, line_length_limit),
        F("smtpd_recipient_limit", UINT, recipient_limit),
        F("smtpd_hard_error_limit", UINT, hard_error_limit),
        F("smtpd_junk_command_limit", UINT, junk_command_limit),
        F("smtpd_timeout", USEC, timeout_usec),
        F("disable_vrfy_command", BOOL, disable_vrfy),
        F("smtpd_helo_required", BOOL, helo_required),
        F("smtpd_reject_unlisted_recipient", BOOL, reject_unlisted_recipient),
        F("smtpd_forbid_bare_newline", ENUM, bare_newline, .values = bare_newline_values),
        F("smtputf8_enable", BOOL, smtputf8_enable),
        F("requiretls_enable", BOOL, requiretls_enable),
        F("smtpd_discard_ehlo_keyword_address_maps", TABLES, ehlo_discard_maps),
        F("smtpd_command_filter", TABLES, command_filter),
        F("smtpd_delay_reject", BOOL, delay_reject),
        F("smtpd_reject_unlisted_sender", BOOL, reject_unlisted_sender),
        F("smtpd_forbid_unauth_pipelining", BOOL, forbid_unauth_pipelining),
        F("soft_bounce", BOOL, soft_bounce),
        F("unknown_local_recipient_reject_code", REPLY_CODE, unknown_local_code),
        F("unknown_virtual_alias_reject_code", REPLY_CODE, unknown_virtual_alias_code),
        F("unknown_virtual_mailbox_reject_code", REPLY_CODE, unknown_virtual_mailbox_code),
        F("unknown_relay_recipient_reject_code", REPLY_CODE, unknown_relay_code),
        F("show_user_unknown_table_name", BOOL, show_user_unknown_table_name),
        F("double_bounce_sender", STRING, double_bounce_sender),
        F("reject_code", REPLY_CODE, reject_code),
        F("defer_code", REPLY_CODE, defer_code),
        F("relay_domains_reject_code", REPLY_CODE, relay_code),
        F("access_map_reject_code", REPLY_CODE, access_reject_code),
        F("access_map_defer_code", REPLY_CODE, access_defer_code),
        F("non_fqdn_reject_code", REPLY_CODE, non_fqdn_code),
        F("invalid_hostname_reject_code", REPLY_CODE, invalid_hostname_code),
        F("smtpd_null_access_lookup_key", STRING, null_access_key),
        /* Unexpanded: $client_address and friends are filled in per reply (smtpd-access.c). */
        F("smtpd_reject_footer", RAW, reject_footer),
        F("smtpd_reject_footer_maps", TABLES, reject_footer_maps),
        F("smtpd_sender_login_maps", TABLES, sender_login_maps),
        /* client limits (smtpd-anvil.c) */
        F("smtpd_client_connection_count_limit", UINT, anvil.connection_count),
        F("smtpd_client_connection_rate_limit", UINT, anvil.connection_rate),
        F("smtpd_client_message_rate_limit", UINT, anvil.message_rate),
        F("smtpd_client_recipient_rate_limit", UINT, anvil.recipient_rate),
        F("smtpd_client_new_tls_session_rate_limit", UINT, anvil.newtls_rate),
        F("smtpd_client_auth_rate_limit", UINT, anvil.auth_rate),
        /* content checks (smtpd-cleanup.c) */
        F("message_drop_headers", LIST, drop_headers),
        F("undisclosed_recipients_header", STRING, undisclosed_recipients_header),
        F("body_checks_size_limit", U64, body_checks_size_limit),
        F("hopcount_limit", UINT, hopcount_limit),
        F("always_add_missing_headers", BOOL, always_add_missing_headers),
        /* address rewriting (smtpd-rewrite.c) */
        F("mydomain", STRING, mydomain),
        F("append_at_myorigin", BOOL, append_at_myorigin),
        F("append_dot_mydomain", BOOL, append_dot_mydomain),
        F("swap_bangpath", BOOL, swap_bangpath),
        F("allow_percent_hack", BOOL, allow_percent_hack),
        F("remote_header_rewrite_domain", STRING, remote_header_rewrite_domain),
        F("canonical_maps", TABLES, rewrite.canonical_maps),
        F("sender_canonical_maps", TABLES, rewrite.sender_canonical_maps),
        F("recipient_canonical_maps", TABLES, rewrite.recipient_canonical_maps),
        /* DNS checks and client names (smtpd-dnsbl.c, smtpd-peername.c) */
        F("smtpd_peername_lookup", BOOL, peername_lookup),
        F("maps_rbl_reject_code", REPLY_CODE, maps_rbl_reject_code),
        F("unknown_address_reject_code", REPLY_CODE, unknown_address_reject_code),
        F("unknown_client_reject_code", REPLY_CODE, unknown_client_reject_code),
        F("unknown_hostname_reject_code", REPLY_CODE, unknown_hostname_reject_code),
        /* Unexpanded: $rbl_code and friends belong to the reply, not to main.cf. */
        F("default_rbl_reply", RAW, default_rbl_reply),
        F("unknown_address_tempfail_action", STRING, unknown_address_tempfail_action),
        F("unknown_helo_hostname_tempfail_action", STRING, unknown_helo_hostname_tempfail_action),
        F("rbl_reply_maps", TABLES, rbl_reply_maps),
        /* policy delegation (smtpd-policy.c) */
        F("smtpd_policy_service_default_action", STRING, policy_default_action),
        F("smtpd_policy_service_policy_context", STRING, policy_context),
        F("smtpd_policy_service_timeout", USEC, policy_timeout_usec),
        F("smtpd_policy_service_max_idle", USEC, policy_max_idle_usec),
        F("smtpd_policy_service_max_ttl", USEC, policy_max_ttl_usec),
        F("smtpd_policy_service_retry_delay", USEC, policy_retry_delay_usec),
        F("smtpd_policy_service_request_limit", UINT, policy_request_limit),
        F("smtpd_policy_service_try_limit", UINT, policy_try_limit),
        /* reject_unverified_* (smtpd-verify.c) */
        F("unverified_recipient_reject_code", REPLY_CODE, verify.reject_code[0]),
        F("unverified_sender_reject_code", REPLY_CODE, verify.reject_code[1]),
        F("unverified_recipient_defer_code", REPLY_CODE, verify.defer_code[0]),
        F("unverified_sender_defer_code", REPLY_CODE, verify.defer_code[1]),
        F("unverified_recipient_tempfail_action", STRING, verify.tempfail_action[0]),
        F("unverified_sender_tempfail_action", STRING, verify.tempfail_action[1]),
        F("unverified_recipient_reject_reason", STRING, verify.reject_reason[0]),
        F("unverified_sender_reject_reason", STRING, verify.reject_reason[1]),
        F("address_verify_poll_count", UINT, verify.poll_count),
        F("address_verify_poll_delay", USEC, verify.poll_delay_usec),
        /* TLS (smtpd-tls.c) */
        F("smtpd_tls_security_level", ENUM, tls_level, .values = tls_level_values),
        F("smtpd_tls_loglevel", INT, tls_loglevel),
        F("smtpd_tls_received_header", BOOL, tls_received_header),
        F("smtpd_tls_wrappermode", BOOL, tls_wrappermode),
        F("smtpd_starttls_timeout", USEC, starttls_timeout_usec),
        /* PROXY protocol (smtpd-proxy.c) */
        F("smtpd_upstream_proxy_protocol", ENUM, upstream_proxy, .values = upstream_proxy_values),
        F("smtpd_upstream_proxy_timeout", USEC, upstream_proxy_timeout_usec),
        /* SMTP AUTH (smtpd-auth.c) */
        F("smtpd_sasl_auth_enable", BOOL, sasl_enable),
        F("smtpd_tls_auth_only", BOOL, tls_auth_only),
        F("smtpd_sasl_authenticated_header", BOOL, sasl_authenticated_header),
        F("broken_sasl_auth_clients", BOOL, broken_sasl_auth_clients),
        F("smtpd_sasl_response_limit", SIZE, sasl_response_limit),
        F("smtpd_sasl_service", STRING, sasl_service),
        /* virtual alias expansion (smtpd-virtual.c) */
        F("virtual_alias_recursion_limit", UINT, virtual_alias.recursion_limit),
        F("virtual_alias_expansion_limit", UINT, virtual_alias.expansion_limit),
        F("virtual_alias_address_length_limit", UINT, virtual_alias.address_length_limit),
        /* the before-queue proxy filter (smtpd-proxy-filter.c; smtpd_proxy_filter itself: smtpd-filter.c) */
        F("smtpd_proxy_ehlo", STRING, proxy_ehlo),
        F("smtpd_proxy_timeout", USEC, proxy_timeout_usec),
};
#undef F

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s) {
        if (s)
                s->n_ref++;
        return s;
}

SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        conf_fields_done(smtpd_fields, ELEMENTSOF(smtpd_fields), s);
        free(s->listener);
        free(s->content_filter);
        free(s->proxy_filter);
        smtpd_restrictions_done(&s->client_restrictions);
        smtpd_restrictions_done(&s->helo_restrictions);
        smtpd_restrictions_done(&s->sender_restrictions);
        smtpd_restrictions_done(&s->relay_restrictions);
        smtpd_restrictions_done(&s->recipient_restrictions);
        smtpd_restrictions_done(&s->data_restrictions);
        smtpd_restrictions_done(&s->end_of_data_restrictions);
        smtpd_etrn_settings_done(s);
        smtpd_verify_settings_done(s);
        smtpd_restriction_classes_free(s);
        smtpd_netlist_done(&s->mynetworks);
        smtpd_netlist_done(&s->bare_newline_exclusions);
        smtpd_netlist_done(&s->upstream_proxy_networks);
        smtpd_netlist_done(&s->xforward_hosts);
        addr_classes_done(&s->addr_classes);
        table_list_free(s->local_recipient_maps);
        table_list_free(s->virtual_mailbox_maps);
        table_list_free(s->relay_recipient_maps);
        table_list_free(s->relocated_maps);
        smtpd_anvil_settings_done(&s->anvil);
        smtpd_cleanup_settings_done(s);
        smtpd_rewrite_settings_done(s);
        tls_server_unref(s->tls);
        table_list_free(s->relay_clientcerts);
        smtpd_auth_settings_done(s);
        smtpd_virtual_settings_done(s);
        smtpd_milter_settings_done(s);
        smtpd_screen_settings_done(s);
        free(s);
        return NULL;
}

static int restrictions_param(Conf *c, const char *listener, const char *name, SmtpdSettings *s,
                              RestrictionList *ret) {
        _cleanup_strv_free_ char **names = conf_get_list(c, listener, name);
        if (!names)
                return log_oom();
        return smtpd_restrictions_compile(name, names, s->classes, s->n_classes, ret);
}

static int netlist_param(Conf *c, const char *listener, const char *name, NetList *ret) {
        _cleanup_strv_free_ char **entries = conf_get_list(c, listener, name);
        if (!entries)
                return log_oom();
        return smtpd_netlist_parse(name, entries, ret);
}

/* An address table of a class (local_recipient_maps, ...): one that does not open is logged
 * and remembered, so the addresses it decides get 451 4.3.0 while other mail keeps flowing. */
static int address_maps_param(Conf *c, const char *listener, const char *name, TableList **ret,
                              int *ret_error) {
        _cleanup_free_ char *reason = NULL;
        int r = conf_get_table_list(c, listener, name, 0, ret, &reason);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error_errno(r, "%s; answering 451 4.3.0 for the addresses it decides",
                                reason ? reason : name);
                *ret = NULL;
                *ret_error = r;
        }
        return 0;
}

/* The address classes: a list whose table does not open answers 451 for what it decides. */
static int address_classes_param(Conf *c, const char *listener, AddrClasses *ret) {
        _cleanup_free_ char *why = NULL;
        int r = addr_classes_load(ret, c, listener, &why);
        if (r < 0)
                return log_error_errno(r, "%s", why ? why : "address classes: out of memory");
        for (AddressClass k = 0; k < ADDR_CLASS_LISTS; k++)
                if (addr_classes_problem(ret, k))
                        log_error("%s; answering 451 4.3.0 for the domains this list would decide",
                                  addr_classes_problem(ret, k));
        return 0;
}

/* The settings that are more than a value: each logs its own errors. */
static int settings_compile(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **discard = conf_get_list(c, listener, "smtpd_discard_ehlo_keywords");
        _cleanup_strv_free_ char **pdms = conf_get_list(c, listener, "parent_domain_matches_subdomains");
        int r;

        if (!discard || !pdms)
                return log_oom();
        /* first: the content checks and the rewriting read receive_override_options */
        if ((r = smtpd_filter_settings(c, listener, s)) < 0)
                return r;
        s->ehlo_discard = command_ehlo_mask(discard);
        for (char **i = pdms; *i; i++)
                s->parent_matches_access = s->parent_matches_access || streq(*i, "smtpd_access_maps");
        if ((r = smtpd_tls_settings(c, listener, s)) < 0)
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
                               &s->bare_newline_exclusions)) < 0 ||
            (r = netlist_param(c, listener, "postern_upstream_proxy_networks", &s->upstream_proxy_networks)) < 0 ||
            (r = netlist_param(c, listener, "smtpd_authorized_xforward_hosts", &s->xforward_hosts)) < 0 ||
            (r = smtpd_anvil_settings(c, listener, &s->anvil)) < 0 ||
            (r = address_classes_param(c, listener, &s->addr_classes)) < 0 ||
            (r = address_maps_param(c, listener, "local_recipient_maps", &s->local_recipient_maps,
                                    &s->local_recipient_maps_error)) < 0 ||
            (r = address_maps_param(c, listener, "virtual_mailbox_maps", &s->virtual_mailbox_maps,
                                    &s->virtual_mailbox_maps_error)) < 0 ||
            (r = address_maps_param(c, listener, "relay_recipient_maps", &s->relay_recipient_maps,
                                    &s->relay_recipient_maps_error)) < 0 ||
            (r = address_maps_param(c, listener, "relocated_maps", &s->relocated_maps,
                                    &s->relocated_maps_error)) < 0)
                return r;

        if ((r = smtpd_cleanup_settings(c, listener, s)) < 0 ||
            (r = smtpd_rewrite_settings(c, listener, s)) < 0 ||
            (r = smtpd_etrn_settings(c, listener, s)) < 0 ||
            (r = smtpd_verify_settings(c, listener, s)) < 0 ||
            (r = smtpd_milter_settings(c, listener, s)) < 0 ||
            (r = smtpd_screen_settings(c, listener, s)) < 0)
                return r;
        return smtpd_auth_settings(c, listener, s);
}

int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret) {
        _cleanup_(smtpd_settings_unrefp) SmtpdSettings *s = calloc(1, sizeof(SmtpdSettings));
        int r;

        if (!s)
                return log_oom();
        s->n_ref = 1;
        s->listener = strdup(listener ? listener : "smtpd");
        if (!s->listener)
                return log_oom();
        if ((r = conf_fields_load(c, listener, smtpd_fields, ELEMENTSOF(smtpd_fields), s)) < 0 ||
            (r = settings_compile(c, listener, s)) < 0 ||
            (r = smtpd_virtual_settings(c, listener, s)) < 0)
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
