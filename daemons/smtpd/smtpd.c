/* smtpd.c — postern-smtpd's main(): takes the "smtp", "submission" and "submit" sockets from
 * systemd (common/daemon), builds the settings snapshots (one shared by every listener without
 * overrides in main.cf, one each for the others), accepts connections in the sd-event loop until
 * EAGAIN and starts a Session for each, owns the commit worker, rebuilds the settings on SIGHUP
 * (existing sessions keep the snapshot they started with; a reload that fails changes nothing)
 * and on SIGTERM answers every message in the commit path before closing (server_done). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

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

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata);

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        Listener *l = userdata;
        (void) sd_event_source_set_enabled(l->io, SD_EVENT_ON);
        return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        /* Out of descriptors or memory: pause accepting for a moment rather
                         * than spinning on a level-triggered listener. */
                        log_warning_errno(-errno, "accept() on %s failed, pausing for 1s: %m", l->name);
                        (void) sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
                        if (l->retry)
                                l->retry = sd_event_source_disable_unref(l->retry);
                        (void) sd_event_add_time_relative(l->server->event, &l->retry, CLOCK_MONOTONIC,
                                                          USEC_PER_SEC, 0, on_accept_retry, l);
                        return 0;
                }
                (void) session_new(l, cfd);   /* closes cfd itself on failure */
        }
}

static int build_all(Server *srv, Conf *c, SmtpdSettings **ret) {
        _cleanup_free_ char **names = calloc(srv->n_listeners + 1, sizeof(char *));
        if (!names)
                return log_oom();
        for (size_t i = 0; i < srv->n_listeners; i++)
                names[i] = srv->listeners[i].name;
        return smtpd_settings_build(c, names, srv->n_listeners, ret);
}

static int reload(Daemon *d, Conf *nc, void *userdata) {
        Server *srv = userdata;
        _cleanup_free_ SmtpdSettings **fresh = calloc(srv->n_listeners + 1, sizeof(SmtpdSettings *));
        int r;

        if (!fresh)
                return log_oom();
        r = build_all(srv, nc, fresh);
        if (r < 0)
                return r;   /* logged; the daemon keeps the old configuration */
        for (size_t i = 0; i < srv->n_listeners; i++) {
                smtpd_settings_unref(srv->listeners[i].settings);
                srv->listeners[i].settings = fresh[i];
        }
        _cleanup_free_ char *wake = daemon_socket_path(nc, "qmgr");
        if (wake)
                committer_set_wakeup_path(srv->committer, wake);
        _cleanup_free_ char *anvil_path = daemon_socket_path(nc, "anvil");
        smtpd_anvil_set_path(srv->anvil, anvil_path);
        return 0;
}

#define STATUS_INTERVAL_USEC (5 * USEC_PER_SEC)

/* Keeps `systemctl status` informative without a notify message per connection. */
static int on_status_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *srv = userdata;
        daemon_status(srv->daemon, "%zu session(s), %llu message(s) queued since start",
                      srv->n_sessions, (unsigned long long) srv->n_queued);
        (void) sd_event_source_set_time_relative(src, STATUS_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

#define SHUTDOWN_FLUSH_USEC (2 * USEC_PER_SEC)

/* Writes what the remaining sessions have buffered (the answers to their commits), waiting at
 * most until deadline for clients that read slowly. */
static void flush_before_exit(Server *srv, usec_t deadline) {
        for (Session *s = srv->sessions; s; s = s->next) {
                while (s->out.len > 0) {
                        ssize_t n = smtpd_io_write(s, s->out.data, s->out.len);
                        if (n > 0) {
                                strbuf_consume(&s->out, (size_t) n);
                                continue;
                        }
                        if (n == -EINTR)
                                continue;
                        usec_t now = now_usec(CLOCK_MONOTONIC);
                        if (n == 0 || (n != -EAGAIN && n != -EWOULDBLOCK) || now >= deadline)
                                break;
                        struct pollfd p = { .fd = s->fd, .events = POLLOUT };
                        (void) poll(&p, 1, (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                }
        }
}

/* SIGTERM: stop accepting; every message already handed to the writer thread is committed and
 * its client gets the answer (250 or 451) before the connection closes, so a client never sees
 * a queued message go unanswered (and sends it again). Sessions without a message in commit
 * get 421 and are closed: nothing of theirs was queued. */
static void server_done(Server *srv) {
        srv->status_timer = sd_event_source_disable_unref(srv->status_timer);
        srv->stopping = true;
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                l->io = sd_event_source_disable_unref(l->io);
                l->retry = sd_event_source_disable_unref(l->retry);
                l->fd = safe_close(l->fd);
        }
        for (Session *s = srv->sessions; s; s = s->next)
                if (s->phase != PHASE_COMMIT && s->phase != PHASE_CLOSING)
                        /* Includes PHASE_WAIT: the waiting command gets no answer of its own;
                         * session_free() cancels its operation. */
                        session_reply(s, "421 4.3.2 %s Service shutting down", s->settings->myhostname);
        if (srv->committer)
                committer_drain(srv->committer);
        flush_before_exit(srv, now_usec(CLOCK_MONOTONIC) + SHUTDOWN_FLUSH_USEC);
        while (srv->sessions)
                session_free(srv->sessions);
        for (size_t i = 0; i < srv->n_listeners; i++) {
                Listener *l = &srv->listeners[i];
                smtpd_settings_unref(l->settings);
                ipc_peers_done(&l->uids);
                free(l->name);
        }
        free(srv->listeners);
        committer_free(srv->committer);
        srv->resolver = dns_resolver_free(srv->resolver);
        smtpd_policy_shutdown();
        srv->anvil = smtpd_anvil_free(srv->anvil);
}

static int run(void) {
        static const struct { const char *name; ListenerKind kind; } wanted[] = {
                { "smtp", LISTENER_SMTP },
                { "submission", LISTENER_SUBMISSION },
                { "submit", LISTENER_SUBMIT },
                { "submissions", LISTENER_SUBMISSIONS },
        };
        _cleanup_daemon_free_ Daemon *d = NULL;
        _cleanup_free_ char *wake = NULL, *anvil_path = NULL;
        _cleanup_free_ SmtpdSettings **settings = NULL;
        Server srv = {};
        int r;

        r = daemon_new("smtpd", &d);
        if (r < 0)
                return EXIT_FAILURE;
        srv.daemon = d;
        srv.event = daemon_event(d);
        srv.listeners = calloc(ELEMENTSOF(wanted), sizeof(Listener));
        if (!srv.listeners)
                return log_oom(), EXIT_FAILURE;

        for (size_t i = 0; i < ELEMENTSOF(wanted); i++) {
                int fd = daemon_take_fd(d, wanted[i].name);
                if (fd < 0)
                        continue;
                /* Sockets may arrive blocking; accepting until EAGAIN needs them non-blocking. */
                int fl = fcntl(fd, F_GETFL);
                if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                        log_warning_errno(-errno, "Failed to make the %s socket non-blocking: %m",
                                          wanted[i].name);
                Listener *l = &srv.listeners[srv.n_listeners++];
                l->server = &srv;
                l->kind = wanted[i].kind;
                l->fd = fd;
                l->name = strdup(wanted[i].name);
                if (!l->name) {
                        r = log_oom();
                        goto finish;
                }
        }
        if (srv.n_listeners == 0) {
                r = log_error_errno(-ENOENT, "None of the sockets smtp, submission, submit was passed; nothing to do.");
                goto finish;
        }
        settings = calloc(srv.n_listeners + 1, sizeof(SmtpdSettings *));
        if (!settings) {
                r = log_oom();
                goto finish;
        }
        r = build_all(&srv, daemon_conf(d), settings);
        if (r < 0) {
                log_error("Fatal configuration error, refusing to start.");
                goto finish;
        }
        for (size_t i = 0; i < srv.n_listeners; i++) {
                Listener *l = &srv.listeners[i];
                l->settings = settings[i];
                r = sd_event_add_io(srv.event, &l->io, l->fd, EPOLLIN, on_accept, l);
                if (r < 0) {
                        log_error_errno(r, "Failed to watch the %s socket: %m", l->name);
                        goto finish;
                }
        }
        const char *budget_source = NULL;
        srv.data_budget = data_budget_default(&budget_source);
        log_info("message data budget: %llu bytes (%s)", (unsigned long long) srv.data_budget, budget_source);

        const char *qdir = conf_get(daemon_conf(d), "queue_directory");
        wake = daemon_socket_path(daemon_conf(d), "qmgr");
        r = committer_new(&srv, strempty(qdir), wake, &srv.committer);
        if (r < 0)
                goto finish;
        r = dns_resolver_new(srv.event, 0, 0, &srv.resolver);
        if (r < 0) {
                log_error_errno(r, "Failed to start the DNS resolver: %m");
                goto finish;
        }
        anvil_path = daemon_socket_path(daemon_conf(d), "anvil");
        r = smtpd_anvil_new(&srv, anvil_path, &srv.anvil);
        if (r < 0)
                goto finish;

        r = sd_event_add_time_relative(srv.event, &srv.status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       USEC_PER_SEC, on_status_timer, &srv);
        if (r < 0)
                log_warning_errno(r, "Failed to set up the status timer: %m");
        daemon_set_reload(d, reload, &srv);
        daemon_status(d, "Accepting connections on %zu listener(s)", srv.n_listeners);
        r = daemon_run(d);
        server_done(&srv);
        return r;

finish:
        server_done(&srv);
        return EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        return run();
}
