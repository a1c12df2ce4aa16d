/* params-postfix.c — Postfix parameters that have no meaning for Postern, because systemd (or the
 * way Postern is built) does their job: where programs and documents are installed, the master
 * supervisor's settings, syslog plumbing, debugging hooks. An existing main.cf that sets them is
 * not wrong, so conf_load() reports each one it finds as information naming what replaces it,
 * never as an unknown parameter; `posternctl config --markdown` lists them in
 * docs/parameters.md. Kept in alphabetical order. */
#include <stdlib.h>
#include <string.h>

#include "params.h"

static const ParamIgnored ignored_table[] = {
        { "command_directory", "the commands (posternctl, postern-sendmail) are installed in $sbindir by meson" },
        { "daemon_directory", "the daemons are started by their systemd units (units/postern-*.service)" },
        { "data_directory", "the daemons keep their state in queue_directory and in StateDirectory= of their units" },
        { "debug_peer_level", "debug logging is per daemon: a drop-in with [Service] Environment=POSTERN_LOG_LEVEL=debug" },
        { "debug_peer_list", "debug logging is per daemon: a drop-in with [Service] Environment=POSTERN_LOG_LEVEL=debug" },
        { "debugger_command", "attach a debugger to the unit's process (systemctl show -p MainPID postern-…)" },
        { "fast_flush_dir", "postern-qmgr keeps no per-destination flush logs: a flush (ETRN, posternctl flush DOMAIN) selects the deferred mail of that domain from the queue itself" },
        { "fast_flush_purge_time", "postern-qmgr keeps no per-destination flush logs: a flush (ETRN, posternctl flush DOMAIN) selects the deferred mail of that domain from the queue itself" },
        { "fast_flush_refresh_time", "postern-qmgr keeps no per-destination flush logs: a flush (ETRN, posternctl flush DOMAIN) selects the deferred mail of that domain from the queue itself" },
        { "html_directory", "Postern's documentation is its README.md and docs/, not a directory it reads" },
        { "import_environment", "each unit's environment is set in the unit (Environment=, a drop-in)" },
        { "lmtp_sasl_auth_cache_time", "Postern keeps no cache of rejected logins (see lmtp_sasl_auth_cache_name)" },
        { "lmtp_sasl_path", "Postern's SMTP client has its SASL mechanisms built in: there is no plug-in to configure" },
        { "lmtp_tls_session_cache_database", "postern-smtp keeps TLS sessions for resumption in its own memory (64 per TLS configuration); there is no tlsmgr" },
        { "maillog_file", "log lines go to the journal (journalctl -u postern-smtpd, journalctl POSTERN_QUEUE_ID=…)" },
        { "maillog_file_prefixes", "log lines go to the journal" },
        { "maillog_file_rotate_suffix", "log lines go to the journal, which rotates itself" },
        { "mailq_path", "mailq is postern-mailq, or posternctl queue" },
        { "manpage_directory", "Postern reads no manual page directory" },
        { "master_service_disable", "disable a service with systemctl disable --now postern-….socket" },
        { "max_idle", "Postern's daemons are long-lived event loops that systemd starts once, not processes that master(8) retires when idle" },
        { "max_use", "Postern's daemons are long-lived event loops that systemd starts once, not processes that master(8) retires after N requests" },
        { "meta_directory", "there are no meta files: the units, sysusers.d and tmpfiles.d files are the metadata" },
        { "newaliases_path", "newaliases is postern-newaliases; alias files are read directly, no database is built" },
        { "postlog_service_name", "log lines go to the journal" },
        { "postlogd_watchdog_timeout", "log lines go to the journal" },
        { "process_id_directory", "systemd tracks the processes; there are no pid files" },
        { "proxy_read_maps", "there is no proxymap daemon: each role opens its tables itself, and \"proxy:\" in front of a table is accepted and ignored" },
        { "proxy_write_maps", "there is no proxymap daemon: each role opens its tables itself, and \"proxy:\" in front of a table is accepted and ignored" },
        { "readme_directory", "Postern's documentation is its README.md and docs/, not a directory it reads" },
        { "sample_directory", "Postern reads no sample files; docs/parameters.md lists every parameter with its default" },
        { "sendmail_path", "the sendmail command is postern-sendmail (with postern-mailq and postern-newaliases)" },
        { "service_throttle_time", "systemd restarts units (Restart=, RestartSec= in a drop-in)" },
        { "setgid_group", "local submission goes through a socket, not a setgid program" },
        { "shlib_directory", "Postern is built without private shared libraries" },
        { "smtp_sasl_auth_cache_time", "Postern keeps no cache of rejected logins (see smtp_sasl_auth_cache_name)" },
        { "smtp_sasl_path", "Postern's SMTP client has its SASL mechanisms built in: there is no plug-in to configure" },
        { "smtp_tls_session_cache_database", "postern-smtp keeps TLS sessions for resumption in its own memory (64 per TLS configuration); there is no tlsmgr" },
        { "smtpd_tls_dh512_param_file", "export-grade ciphers no longer exist (nor in Postfix 3.x); the DHE suites use smtpd_tls_dh1024_param_file or GnuTLS's RFC 7919 groups" },
        { "smtpd_tls_eecdh_grade", "GnuTLS negotiates the ECDHE group (X25519, P-256, P-384, ...) with the client, as Postfix 3.6 and later do with this parameter obsolete" },
        { "smtpd_tls_session_cache_database", "postern-smtpd resumes sessions with session tickets (RFC 5077) whose key lives in its memory; there is no tlsmgr" },
        { "syslog_facility", "log lines go to the journal (SYSLOG_FACILITY=mail)" },
        { "tls_eecdh_strong_curve", "GnuTLS negotiates the ECDHE group with the client (obsolete in Postfix 3.6 too)" },
        { "tls_eecdh_ultra_curve", "GnuTLS negotiates the ECDHE group with the client (obsolete in Postfix 3.6 too)" },
        { "tls_random_exchange_name", "GnuTLS seeds itself from the kernel (getrandom); there is no tlsmgr PRNG" },
        { "tls_random_prng_update_period", "GnuTLS seeds itself from the kernel (getrandom); there is no tlsmgr PRNG" },
        { "tls_random_source", "GnuTLS seeds itself from the kernel (getrandom); there is no tlsmgr PRNG" },
};

static int ignored_compare(const void *key, const void *elem) {
        return strcmp(key, ((const ParamIgnored *) elem)->name);
}

const ParamIgnored *param_ignored_lookup(const char *name) {
        return bsearch(name, ignored_table, sizeof ignored_table / sizeof ignored_table[0],
                       sizeof ignored_table[0], ignored_compare);
}

const ParamIgnored *param_ignored_table(size_t *ret_n) {
        *ret_n = sizeof ignored_table / sizeof ignored_table[0];
        return ignored_table;
}
