/* params.c — the registry of every main.cf parameter Postern supports (param_table), kept in
 * alphabetical order, with Postfix's names and defaults, plus the value checks conf.c applies
 * after $expansion. A few defaults are computed at run time (def == NULL): config_directory,
 * mail_version, myhostname and mydomain; param_default() computes and caches them.
 *
 * To add a parameter: add one line below (keep the order), then regenerate docs/parameters.md
 * with `posternctl config --markdown > docs/parameters.md` (a meson test checks it). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "../basic/macro.h"
#include "params.h"

#define P_STR(n, d, desc)              { n, PARAM_STRING, d, 0, 0, 0, NULL, desc }
#define P_LIST(n, d, desc)             { n, PARAM_LIST, d, 0, 0, 0, NULL, desc }
#define P_INT(n, d, lo, hi, desc)      { n, PARAM_INT, d, lo, hi, 0, NULL, desc }
#define P_BOOL(n, d, desc)             { n, PARAM_BOOL, d, 0, 0, 0, NULL, desc }
#define P_TIME(n, d, u, lo, hi, desc)  { n, PARAM_TIME, d, lo, hi, u, NULL, desc }
#define P_SIZE(n, d, lo, hi, desc)     { n, PARAM_SIZE, d, lo, hi, 0, NULL, desc }
#define P_ENUM(n, d, vals, desc)       { n, PARAM_ENUM, d, 0, 0, 0, vals, desc }

const ParamDef param_table[] = {
        P_STR("2bounce_notice_recipient", "postmaster",
              "Who receives notices about undeliverable bounces (double bounces)."),
        P_INT("access_map_defer_code", "450", 400, 599,
              "SMTP code for a DEFER action in an access(5) table or policy answer."),
        P_INT("access_map_reject_code", "554", 400, 599,
              "SMTP code for a REJECT action in an access(5) table or policy answer."),
        P_TIME("address_verify_cache_cleanup_interval", "12h", 's', 0, 0,
               "How often postern-verify removes expired entries from its cache (in small batches between queries); 0 disables the cleanup."),
        P_STR("address_verify_default_transport", "$default_transport",
              "Overrides default_transport for address verification probes."),
        P_STR("address_verify_local_transport", "$local_transport",
              "Overrides local_transport for address verification probes."),
        P_STR("address_verify_map", "sqlite:$queue_directory/verify.db",
              "postern-verify's cache of probe results: an SQLite file (sqlite:/path or /path); empty keeps it in memory only. Postfix's btree:/hash:/lmdb: (also behind proxy:) are replaced by $queue_directory/verify.db, with a notice."),
        P_BOOL("address_verify_negative_cache", "yes",
               "Cache failed probe results; with no, every query for an undeliverable address sends a new probe (the last result still answers)."),
        P_TIME("address_verify_negative_expire_time", "3d", 'd', 1, 0,
               "How long a failed probe result stays in the cache."),
        P_TIME("address_verify_negative_refresh_time", "3h", 'h', 1, 0,
               "After this time a failed probe result is refreshed by a new probe (the old result answers meanwhile)."),
        P_INT("address_verify_pending_request_limit", "5000", 1, 0,
              "At most this many address probes waiting untried in the queue (Postfix: a quarter of qmgr_message_active_limit); a query over the limit is answered pending and probes on a later query."),
        P_INT("address_verify_poll_count", "3", 1, 0,
              "How many times postern-smtpd asks postern-verify for a result before it answers the client: the first probe may finish within the SMTP session."),
        P_TIME("address_verify_poll_delay", "3s", 's', 1, 0,
               "The delay between postern-smtpd's queries for a pending address verification."),
        P_TIME("address_verify_positive_expire_time", "31d", 'd', 1, 0,
               "How long a successful probe result stays in the cache."),
        P_TIME("address_verify_positive_refresh_time", "7d", 'd', 1, 0,
               "After this time a successful probe result is refreshed by a new probe (the old result answers meanwhile)."),
        P_STR("address_verify_relay_transport", "$relay_transport",
              "Overrides relay_transport for address verification probes."),
        P_STR("address_verify_relayhost", "$relayhost",
              "Overrides relayhost for address verification probes."),
        P_STR("address_verify_sender", "$double_bounce_sender",
              "The envelope sender of address verification probes (@$myorigin is appended to a bare name); empty or <> is the null sender."),
        P_LIST("address_verify_sender_dependent_default_transport_maps", "$sender_dependent_default_transport_maps",
               "Overrides sender_dependent_default_transport_maps for address verification probes."),
        P_LIST("address_verify_sender_dependent_relayhost_maps", "$sender_dependent_relayhost_maps",
               "Overrides sender_dependent_relayhost_maps for address verification probes."),
        P_TIME("address_verify_sender_ttl", "0s", 's', 0, 0,
               "With a value over 0, the probe sender's local part gets a suffix that changes every address_verify_sender_ttl, so remote sites cannot blocklist one fixed probe sender."),
        P_STR("address_verify_service_name", "verify",
              "The name of postern-verify's socket in postern_socket_directory that postern-smtpd asks (and postern-qmgr tells probe results)."),
        P_LIST("address_verify_transport_maps", "$transport_maps",
               "Overrides transport_maps for address verification probes."),
        P_STR("address_verify_virtual_transport", "$virtual_transport",
              "Overrides virtual_transport for address verification probes."),
        P_LIST("alias_database", "hash:/etc/aliases",
               "Alias files that newaliases checks; Postern reads their source text directly, so no database is built."),
        P_LIST("alias_maps", "hash:/etc/aliases",
               "Alias tables the local delivery agent consults (aliases(5) syntax for file tables); regexp:/pcre: rules whose result needs $number substitution are skipped with a warning."),
        P_LIST("allow_mail_to_commands", "alias, forward",
               "Where local delivery may pipe mail into commands: alias, forward and/or include."),
        P_LIST("allow_mail_to_files", "alias, forward",
               "Where local delivery may append mail to files: alias, forward and/or include."),
        P_BOOL("allow_percent_hack", "yes",
               "Rewrite \"user%domain\" to \"user@domain\" (and \"user%domain@<one of our domains>\" to \"user@domain\") as mail is queued."),
        P_BOOL("allow_untrusted_routing", "no",
               "Whether to relay addresses with sender-specified routing (user%domain@host, user!host, @a:b@c) from untrusted clients."),
        P_BOOL("always_add_missing_headers", "no",
               "Add missing From:, Date:, Message-ID: (and To: when there is none) to mail from remote clients too, not only local submissions."),
        P_TIME("anvil_rate_time_unit", "60s", 's', 1, 0,
               "The time unit over which postern-anvil counts connection, message, recipient, new TLS session and AUTH rates."),
        P_TIME("anvil_status_update_time", "600s", 's', 1, 0,
               "How often postern-anvil logs the largest counts and rates it saw (\"statistics: max ...\")."),
        P_BOOL("append_at_myorigin", "yes",
               "Append @$myorigin to addresses without a domain as mail is queued (envelope, and headers of local clients)."),
        P_BOOL("append_dot_mydomain", "no",
               "Append .$mydomain to \"user@host\" addresses whose domain has no dot (Postfix 3.0+ default with compatibility_level >= 1: no)."),
        P_BOOL("biff", "yes",
               "After each local mbox delivery send \"user@offset\" to the comsat (biff) service on localhost's biff/udp port; fire and forget."),
        P_LIST("body_checks", "",
               "Lookup tables (regexp:, pcre:, ...) matched against each message body line; values are header_checks(5) actions."),
        P_SIZE("body_checks_size_limit", "51200", 0, 0,
               "How many bytes of the body body_checks inspect; lines beyond it are not checked."),
        P_STR("bounce_notice_recipient", "postmaster",
              "Who receives postmaster copies of bounces when notify_classes includes bounce."),
        P_TIME("bounce_queue_lifetime", "5d", 'd', 0, 0,
               "How long a bounce message may stay queued before it is given up (bare numbers are days)."),
        P_SIZE("bounce_size_limit", "50000", 1, 0,
               "How many bytes of the original message a bounce includes at most."),
        P_BOOL("broken_sasl_auth_clients", "no",
               "Also announce AUTH in the obsolete form \"AUTH=PLAIN LOGIN\" in the EHLO reply, for old clients (Outlook Express 4, ...) that only understand that one."),
        P_LIST("canonical_classes", "envelope_sender, envelope_recipient, header_sender, header_recipient",
               "Which addresses canonical_maps rewrites: envelope_sender, envelope_recipient, header_sender, header_recipient."),
        P_LIST("canonical_maps", "",
               "canonical(5) tables that replace sender and recipient addresses (after sender_/recipient_canonical_maps) as mail is queued."),
        P_STR("command_expansion_filter", "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
              "Characters allowed in the environment values (SENDER, RECIPIENT, CLIENT_*, ...) of commands that local delivery runs; any other becomes \"_\"."),
        P_TIME("command_time_limit", "1000s", 's', 1, 0,
               "How long a command that local delivery runs (an alias's command, mailbox_command) may take before it is killed."),
        P_STR("compatibility_level", "3.6",
              "The Postfix compatibility level whose defaults this configuration expects; below a level that changed a default, an unset parameter keeps the older one (see Compatibility levels below)."),
        P_STR("config_directory", NULL,
              "The directory holding main.cf (computed: the directory of the file that was read)."),
        P_BOOL("confirm_delay_cleared", "no",
               "After a delay warning, also tell the sender when the delayed recipients are finally delivered."),
        P_STR("content_filter", "",
              "After-queue content filter: every message postern-smtpd queues (SMTP and the submit socket) gets this transport:destination, which postern-qmgr routes all its recipients to (an access(5)/header_checks FILTER action wins); empty on the filter's return listener (master.cf -o content_filter=)."),
        P_TIME("daemon_timeout", "18000s", 's', 1, 0,
               "How long a daemon may work on one request before it gives up."),
        P_STR("default_delivery_status_filter", "",
              "Table that rewrites delivery agents' \"d.d.d text\" results (4.x.x to 5.x.x and back, or the text) before qmgr records them."),
        P_INT("default_destination_concurrency_failed_cohort_limit", "1", 1, 0,
              "How many pseudo-cohorts (deliveries as many as the concurrency) must fail to connect or handshake before a destination is suspended for minimal_backoff_time."),
        P_INT("default_destination_concurrency_limit", "20", 1, 0,
              "How many parallel deliveries to one destination a transport makes by default."),
        P_STR("default_destination_concurrency_negative_feedback", "1",
              "How much a destination's concurrency drops after a connection or handshake failure: a number, a ratio (1/4) or 1/concurrency."),
        P_STR("default_destination_concurrency_positive_feedback", "1",
              "How much a destination's concurrency grows after a delivery without connection or handshake failure: a number, a ratio (1/4) or 1/concurrency."),
        P_TIME("default_destination_rate_delay", "0s", 's', 0, 0,
               "The pause between deliveries to one destination (0: none); above zero a destination gets one delivery at a time."),
        P_INT("default_destination_recipient_limit", "50", 1, 0,
              "The most recipients one remote delivery request (one SMTP/LMTP transaction) carries by default."),
        P_STR("default_filter_nexthop", "",
              "The next hop for a content_filter or FILTER action written \"transport:\" (no destination); empty: the next hop routing chose for the recipient ($myhostname for local mail, $relayhost or the recipient domain otherwise)."),
        P_STR("default_privs", "nobody",
              "The user local delivery runs as for deliveries to files and commands from aliases owned by nobody in particular."),
        P_INT("default_process_limit", "100", 1, 0,
              "The default limit on parallel delivery requests per transport."),
        P_STR("default_rbl_reply", "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}",
              "The reply template for a DNSBL/RHSBL hit without an rbl_reply_maps entry ($rbl_code, $rbl_class, $rbl_what, $rbl_domain, $rbl_reason, $rbl_txt, $client_address, ... are expanded per hit)."),
        P_STR("default_transport", "smtp",
              "Transport for destinations that are neither local, virtual nor relay domains."),
        P_INT("defer_code", "450", 400, 599,
              "SMTP code for the defer and defer_if_permit/defer_if_reject restrictions."),
        P_INT("delay_logging_resolution_limit", "2", 0, 6,
              "Decimal places shown in the delay= and delays= fields of delivery log lines."),
        P_TIME("delay_warning_time", "0h", 'h', 0, 0,
               "After how long the sender is warned that mail is still delayed; 0 turns warnings off (bare numbers are hours)."),
        P_INT("deliver_lock_attempts", "20", 1, 1000,
              "How many times local delivery tries to lock a mailbox before it defers the message."),
        P_TIME("deliver_lock_delay", "1s", 's', 1, 0,
               "How long local delivery waits between attempts to lock a mailbox."),
        P_BOOL("disable_dns_lookups", "no",
               "Make the SMTP and LMTP clients do no DNS lookups (no MX; host names the system's way) when smtp_dns_support_level / lmtp_dns_support_level is empty; often a master.cf -o of a content filter's transport."),
        P_BOOL("disable_vrfy_command", "yes",
               "Refuse the SMTP VRFY command. Postern defaults to yes (Postfix: no) so addresses cannot be harvested."),
        P_STR("double_bounce_sender", "double-bounce",
              "Sender address of postmaster notices; mail to it is discarded, so notices cannot loop."),
        P_STR("empty_address_default_transport_maps_lookup_key", "<>",
              "The sender_dependent_default_transport_maps key for mail with the null sender."),
        P_STR("empty_address_recipient", "MAILER-DAEMON",
              "Recipient used for mail whose recipient address is empty."),
        P_STR("empty_address_relayhost_maps_lookup_key", "<>",
              "The sender_dependent_relayhost_maps key for mail with the null sender."),
        P_BOOL("enable_original_recipient", "yes",
               "Local and virtual delivery prepend \"X-Original-To: <original recipient>\" to mailbox, Maildir, file and command deliveries (smtpd records the original recipient either way)."),
        P_BOOL("expand_owner_alias", "no",
               "With owner_request_special, forward an alias's mail with the envelope sender set to the value of its owner-<alias> (a single address) instead of the name owner-<alias>@$myorigin."),
        P_STR("fallback_transport", "",
              "Transport[:nexthop] that local delivery passes a recipient to when the user is not in passwd (after mailbox_transport, before the unknown user bounce); empty: none."),
        P_LIST("fallback_transport_maps", "",
               "Tables (keyed by the lower-case user name) giving a per-user fallback_transport for users not in passwd; searched before fallback_transport."),
        P_LIST("fast_flush_domains", "$relay_domains",
               "Domains ETRN may ask mail to be sent for now (a flush of their deferred mail); ETRN for any other domain is answered 459."),
        P_STR("forward_expansion_filter", "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
              "Characters local delivery allows in the $name values it fills into forward_path; any other becomes '_'."),
        P_STR("forward_path", "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
              "Where local delivery looks for a user's .forward file, the first that exists wins; $user, $home, $shell, $recipient, $extension, $domain, $local, $recipient_delimiter and ${name?text}/${name:text} are filled in per recipient, an element with an undefined plain $name is skipped; empty: no .forward files."),
        P_LIST("header_checks", "",
               "Lookup tables (regexp:, pcre:, ...) matched against each logical message header; values are header_checks(5) actions."),
        P_SIZE("header_size_limit", "102400", 1, 0,
               "Maximum bytes of one message header (with its continuation lines); the excess is dropped."),
        P_STR("home_mailbox", "",
              "Mailbox path relative to the user's home; ending in / means Maildir (e.g. Maildir/); empty means mail_spool_directory."),
        P_INT("hopcount_limit", "50", 1, 0,
              "Mail with more Received: headers than this is bounced as looping."),
        P_LIST("inet_interfaces", "all",
               "Addresses the mail system regards as its own; the listening sockets themselves are set in the systemd socket units."),
        P_LIST("inet_protocols", "all",
               "Address families used for network mail: all, ipv4, ipv6 or ipv4, ipv6."),
        P_INT("initial_destination_concurrency", "5", 1, 0,
              "How many parallel deliveries a destination gets at first (slow start); it grows with each success up to its concurrency limit."),
        P_INT("invalid_hostname_reject_code", "501", 400, 599,
              "SMTP code for reject_invalid_helo_hostname."),
        P_TIME("ipc_timeout", "3600s", 's', 1, 0,
               "Time limit for one exchange with another Postern role over its IPC socket."),
        P_INT("line_length_limit", "2048", 80, 0,
              "Longest SMTP command line accepted (a longer one is answered 500 5.5.0); longer message lines are accepted and stored whole."),
        P_STR("lmtp_address_verify_target", "rcpt",
              "The stage that decides an address probe over LMTP: rcpt, or data (as smtp_address_verify_target)."),
        P_STR("lmtp_bind_address", "",
              "Local IPv4 or IPv6 address the LMTP client binds to before connecting over TCP (empty: chosen by the kernel)."),
        P_TIME("lmtp_connect_timeout", "0s", 's', 0, 0,
               "How long the LMTP client waits for a TCP connection to be established (0: the kernel's own limit)."),
        P_TIME("lmtp_connection_cache_time_limit", "2s", 's', 0, 0,
               "How long the LMTP client keeps an idle connection open for the next delivery to the same next hop (0: no reuse)."),
        P_INT("lmtp_connection_reuse_count_limit", "0", 0, 0,
              "How many transactions one LMTP client connection may carry (0: no limit)."),
        P_TIME("lmtp_connection_reuse_time_limit", "300s", 's', 1, 0,
               "How long after it was opened an LMTP client connection may still be reused."),
        P_TIME("lmtp_data_done_timeout", "600s", 's', 1, 0,
               "How long the LMTP client waits for each recipient's reply to the end of the message."),
        P_TIME("lmtp_data_init_timeout", "120s", 's', 1, 0,
               "How long the LMTP client waits for the reply to DATA."),
        P_TIME("lmtp_data_xfer_timeout", "180s", 's', 1, 0,
               "How long the LMTP client waits for the server to accept message content."),
        P_STR("lmtp_delivery_status_filter", "$default_delivery_status_filter",
              "Delivery status filter for results of the lmtp transport."),
        P_INT("lmtp_destination_concurrency_limit", "$default_destination_concurrency_limit", 1, 0,
              "How many parallel deliveries to one destination the lmtp transport makes."),
        P_TIME("lmtp_destination_rate_delay", "$default_destination_rate_delay", 's', 0, 0,
               "The pause between deliveries to one destination of the lmtp transport (0: none)."),
        P_INT("lmtp_destination_recipient_limit", "$default_destination_recipient_limit", 1, 0,
              "The most recipients one delivery request of the lmtp transport carries."),
        P_STR("lmtp_dns_support_level", "",
              "DNS use of the LMTP client for inet:host next hops: disabled (host names through /etc/hosts and nsswitch), enabled (empty means this), dnssec (as enabled, and DNSSEC-validated answers count for lmtp_tls_security_level = dane)."),
        P_BOOL("lmtp_enforce_tls", "no",
              "Obsolete (Postfix): with lmtp_tls_security_level empty, yes means level verify (lmtp_tls_enforce_peername = yes) or encrypt."),
        P_STR("lmtp_lhlo_name", "$myhostname",
              "The hostname the LMTP client sends in LHLO."),
        P_TIME("lmtp_lhlo_timeout", "300s", 's', 1, 0,
               "How long the LMTP client waits for the greeting and for the reply to LHLO (and to STARTTLS)."),
        P_TIME("lmtp_mail_timeout", "300s", 's', 1, 0,
               "How long the LMTP client waits for the reply to MAIL FROM."),
        P_INT("lmtp_mx_session_limit", "2", 0, 1000,
              "At most this many LMTP sessions (ones that got past LHLO) per delivery attempt to a next hop with several addresses (0: no limit)."),
        P_INT("lmtp_process_limit", "$default_process_limit", 1, 0,
              "How many delivery requests to the lmtp transport may be in flight at once (Postern's replacement for master.cf's maxproc)."),
        P_TIME("lmtp_quit_timeout", "300s", 's', 1, 0,
               "How long the LMTP client waits for the reply to QUIT (Postern does not wait for it)."),
        P_TIME("lmtp_rcpt_timeout", "300s", 's', 1, 0,
               "How long the LMTP client waits for the reply to RCPT TO."),
        P_TIME("lmtp_rset_timeout", "20s", 's', 1, 0,
               "How long the LMTP client waits for the reply to RSET on a reused connection."),
        P_STR("lmtp_sasl_auth_cache_name", "",
              "Postfix's on-disk cache of rejected SMTP AUTH logins. Not supported: Postern keeps no such cache; after a rejected login the queue manager suspends the destination as after a failed connection (minimal_backoff_time)."),
        P_BOOL("lmtp_sasl_auth_enable", "no",
               "Log in (SMTP AUTH) to servers that offer AUTH when lmtp_sasl_password_maps has a username:password for the sender, server host or next hop."),
        P_BOOL("lmtp_sasl_auth_soft_bounce", "yes",
               "A 5xx reply to AUTH defers the mail (as 4.x.x) instead of bouncing it."),
        P_LIST("lmtp_sasl_mechanism_filter", "",
               "If not empty: only these SASL mechanisms (names) of those the server offers are considered."),
        P_LIST("lmtp_sasl_password_maps", "",
               "Tables with one username:password per sender address (with lmtp_sender_dependent_authentication), server host name or next hop as written (\"[smtp.example.net]:587\"); lookups in that order."),
        P_LIST("lmtp_sasl_security_options", "noplaintext, noanonymous",
               "Which SASL mechanisms the client may use without TLS: noplaintext (no PLAIN/LOGIN), noactive, nodictionary, noanonymous, mutual_auth."),
        P_LIST("lmtp_sasl_tls_security_options", "$lmtp_sasl_security_options",
               "Like lmtp_sasl_security_options, for sessions protected by TLS."),
        P_STR("lmtp_sasl_type", "cyrus",
              "The client SASL implementation: Postern's own (PLAIN, LOGIN, SCRAM-SHA-256, SCRAM-SHA-256-PLUS) stands in for cyrus; other values are refused."),
        P_BOOL("lmtp_send_xforward_command", "no",
               "Send XFORWARD with the original client's name, address, protocol, HELO name, queue id and source before MAIL, when the LMTP server offers it."),
        P_BOOL("lmtp_sender_dependent_authentication", "no",
               "Look the sender address up in lmtp_sasl_password_maps first (full address, then @domain); connections are then reused only for the same login."),
        P_TIME("lmtp_starttls_timeout", "300s", 's', 1, 0,
               "How long the LMTP client waits for the TLS handshake (after STARTTLS, or at connect with lmtp_tls_wrappermode)."),
        P_INT("lmtp_tcp_port", "24", 1, 65535,
              "TCP port of the LMTP client's inet: next hops that name no port."),
        P_STR("lmtp_tls_CAfile", "",
              "PEM file with the CA certificates the LMTP client trusts for server certificates (with lmtp_tls_CApath also empty: the system trust store; Postfix trusts none then)."),
        P_STR("lmtp_tls_CApath", "",
              "Directory of PEM files with CA certificates the LMTP client trusts, in addition to lmtp_tls_CAfile (e.g. /etc/ssl/certs)."),
        P_STR("lmtp_tls_cert_file", "",
              "PEM certificate (chain) the LMTP client presents when a server asks for a client certificate; its key is lmtp_tls_key_file."),
        P_LIST("lmtp_tls_chain_files", "",
              "Files each holding a private key and its certificate chain (PEM) that the LMTP client can present when a server asks for a client certificate (GnuTLS picks by the server's signature algorithms)."),
        P_ENUM("lmtp_tls_ciphers", "medium", "medium|high",
               "Cipher grade of the LMTP client with opportunistic TLS (security level may): medium or high (256-bit ciphers only)."),
        P_BOOL("lmtp_tls_enforce_peername", "yes",
              "Obsolete (Postfix): with lmtp_enforce_tls = yes, whether the server name is verified (level verify) or not (encrypt)."),
        P_LIST("lmtp_tls_exclude_ciphers", "",
              "OpenSSL cipher names the LMTP client never uses, at every TLS level: classes (aNULL, eNULL, RC4, MD5, SHA1, 3DES, PSK, SRP, CAMELLIA, kRSA, EDH, ...) become GnuTLS priority removals; a single suite or combination is logged as not supported."),
        P_STR("lmtp_tls_key_file", "$lmtp_tls_cert_file",
              "PEM private key of lmtp_tls_cert_file (the same file by default)."),
        P_INT("lmtp_tls_loglevel", "0", 0, 4,
              "LMTP client TLS logging, as smtp_tls_loglevel."),
        P_ENUM("lmtp_tls_mandatory_ciphers", "medium", "medium|high",
               "Cipher grade of the LMTP client when TLS is mandatory (security level encrypt and stronger)."),
        P_LIST("lmtp_tls_mandatory_exclude_ciphers", "",
              "More cipher names to exclude when the LMTP client's TLS is mandatory (encrypt and above), as lmtp_tls_exclude_ciphers."),
        P_LIST("lmtp_tls_mandatory_protocols", ">=TLSv1",
               "TLS versions the LMTP client accepts when TLS is mandatory (encrypt and stronger), in Postfix syntax."),
        P_BOOL("lmtp_tls_note_starttls_offer", "no",
               "Log \"Host offered STARTTLS: [name]\" when an LMTP server offers STARTTLS and the LMTP client does not use TLS with it."),
        P_LIST("lmtp_tls_policy_maps", "",
               "Tables of per-destination TLS policy of the LMTP client, keyed by next hop (without inet:), as smtp_tls_policy_maps."),
        P_LIST("lmtp_tls_protocols", ">=TLSv1",
               "TLS versions the LMTP client accepts with opportunistic TLS (security level may), in Postfix syntax."),
        P_LIST("lmtp_tls_secure_cert_match", "nexthop",
               "How the LMTP client matches a server certificate at security level secure: nexthop, dot-nexthop, hostname, or literal names."),
        P_ENUM("lmtp_tls_security_level", "", "|none|may|encrypt|verify|secure|dane|dane-only",
               "LMTP client TLS: empty or none (plaintext), may, encrypt, verify, secure, dane, dane-only (as smtp_tls_security_level; dane for inet:host next hops, with lmtp_dns_support_level = dnssec: the TLSA records at _port._tcp.host)."),
        P_STR("lmtp_tls_servername", "",
              "The server name the LMTP client sends with TLS (SNI): empty for none, hostname, nexthop, or a literal name."),
        P_LIST("lmtp_tls_trust_anchor_file", "",
               "PEM files of trust-anchor certificates and public keys for the LMTP client's verify and secure levels, as smtp_tls_trust_anchor_file."),
        P_LIST("lmtp_tls_verify_cert_match", "hostname",
               "How the LMTP client matches a server certificate at security level verify: hostname, nexthop, dot-nexthop, or literal names."),
        P_BOOL("lmtp_tls_wrappermode", "no",
               "The LMTP client starts TLS as soon as it connects instead of using STARTTLS; TLS is then mandatory."),
        P_BOOL("lmtp_use_tls", "no",
              "Obsolete (Postfix): with lmtp_tls_security_level empty, yes means level may."),
        P_STR("local_command_shell", "",
              "Shell for the commands local delivery runs (e.g. \"/usr/sbin/smrsh -c\"): its words, then the command as one argument; empty runs a command directly, or with /bin/sh -c when it needs a shell."),
        P_STR("local_delivery_status_filter", "$default_delivery_status_filter",
              "Delivery status filter for results of the local transport."),
        P_INT("local_destination_concurrency_limit", "2", 1, 0,
              "Parallel deliveries to one local recipient at most."),
        P_LIST("local_header_rewrite_clients", "permit_inet_interfaces",
               "Clients whose message headers are rewritten like locally posted mail (canonical form, canonical maps, masquerading): permit_inet_interfaces, permit_mynetworks, permit_sasl_authenticated, check_address_map type:table."),
        P_INT("local_process_limit", "$default_process_limit", 1, 0,
              "How many delivery requests to the local transport may be in flight at once (Postern's replacement for master.cf's maxproc)."),
        P_LIST("local_recipient_maps", "unix:passwd.byname $alias_maps",
               "Tables of valid local recipients; unknown ones are rejected at RCPT TO. Empty accepts every local address."),
        P_STR("local_transport", "local:$myhostname",
              "Transport (and next hop) for domains listed in mydestination."),
        P_STR("luser_relay", "",
              "Where local delivery sends mail for a local name that is neither an alias nor a user (instead of bouncing it); $user, $local, $extension, $domain, $recipient, $recipient_delimiter, $home, $shell and ${name?text}/${name:text} are filled in."),
        P_STR("mail_name", "Postern",
              "The name of the mail system, used in the SMTP greeting and in bounces."),
        P_STR("mail_owner", "postern",
              "The unprivileged user that owns the queue and runs the daemons (created by sysusers.d)."),
        P_STR("mail_spool_directory", "/var/mail",
              "Where local delivery keeps mbox mailboxes (one file per user) when home_mailbox is empty."),
        P_STR("mail_version", NULL,
              "The Postern version (computed at build time)."),
        P_STR("mailbox_command", "",
              "Command that local delivery runs, as the recipient in the home directory with the message on stdin, instead of writing the mailbox (not $name-expanded: $EXTENSION etc. are the shell's)."),
        P_LIST("mailbox_command_maps", "",
               "Tables that give a local user (looked up by login name) a mailbox command of its own; a match wins over mailbox_command."),
        P_LIST("mailbox_delivery_lock", "fcntl, dotlock",
               "How mbox files are locked during delivery: fcntl and/or dotlock."),
        P_SIZE("mailbox_size_limit", "51200000", 0, 0,
               "Largest a mailbox or Maildir file (or any file a local delivery command writes) may grow; 0 means no limit."),
        P_STR("mailbox_transport", "",
              "Transport[:nexthop] that local delivery passes every recipient to instead of writing a mailbox, after alias expansion (e.g. lmtp:unix:private/dovecot-lmtp); empty: none."),
        P_LIST("mailbox_transport_maps", "",
               "Tables (keyed by the lower-case user name) giving a per-user mailbox_transport; searched before mailbox_transport."),
        P_INT("maps_rbl_reject_code", "554", 400, 599,
              "The reply code ($rbl_code) for a client, sender, HELO or recipient listed in a reject_rbl_client/reject_rhsbl_* DNS list."),
        P_LIST("masquerade_classes", "envelope_sender, header_sender, header_recipient",
               "Which addresses masquerade_domains strips: envelope_sender, envelope_recipient, header_sender, header_recipient."),
        P_LIST("masquerade_domains", "",
               "Domains whose subdomains are stripped from addresses (host.example.com -> example.com); the first match decides, \"!domain\" keeps that domain and its subdomains."),
        P_LIST("masquerade_exceptions", "",
               "Local parts (or type:table lookups of them) whose addresses are never masqueraded, e.g. root."),
        P_TIME("maximal_backoff_time", "4000s", 's', 1, 0,
               "Longest wait between two delivery attempts for deferred mail."),
        P_TIME("maximal_queue_lifetime", "5d", 'd', 0, 0,
               "How long deferred mail stays queued before it bounces (bare numbers are days)."),
        P_LIST("message_drop_headers", "bcc, content-length, resent-bcc, return-path",
               "Message headers that are removed from every message as it is queued."),
        P_STR("message_reject_characters", "",
              "Characters that make the SMTP server reject a message that contains them (e.g. \\0)."),
        P_SIZE("message_size_limit", "10240000", 0, 0,
               "Largest message accepted, in bytes, including the envelope; 0 means no limit."),
        P_TIME("milter_command_timeout", "30s", 's', 1, 0,
               "How long postern-smtpd waits for a milter to answer one command (connect, HELO, MAIL, RCPT, DATA, a header, end of headers); a milter's own command_timeout= wins."),
        P_STR("milter_connect_macros", "j {daemon_name} {daemon_addr} v _",
              "Macros sent to milters with the connection (names as Sendmail spells them, {long} in braces)."),
        P_TIME("milter_connect_timeout", "30s", 's', 1, 0,
               "How long postern-smtpd waits for a connection to a milter and its option negotiation."),
        P_TIME("milter_content_timeout", "300s", 's', 1, 0,
               "How long postern-smtpd waits for a milter to answer a body chunk or the end of the message."),
        P_STR("milter_data_macros", "i",
              "Macros sent to milters with the DATA command."),
        P_ENUM("milter_default_action", "tempfail", "accept|reject|tempfail|quarantine|shutdown",
               "What happens when a milter cannot be reached, times out or breaks the protocol: accept (go on without it), reject (5xx), tempfail (4xx), quarantine (accept and hold the message), shutdown (421 and disconnect)."),
        P_STR("milter_end_of_data_macros", "i",
              "Macros sent to milters at the end of the message."),
        P_STR("milter_end_of_header_macros", "i",
              "Macros sent to milters at the end of the message headers."),
        P_LIST("milter_header_checks", "",
               "header_checks(5) tables for the headers milters add or change (not for the message's own): the actions DISCARD, FILTER, HOLD, REDIRECT, WARN and INFO apply, others are logged and ignored, as in Postfix. Off with receive_override_options = no_header_body_checks."),
        P_STR("milter_helo_macros", "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
              "Macros sent to milters with HELO/EHLO."),
        P_STR("milter_macro_daemon_name", "$myhostname",
              "The value of the {daemon_name} milter macro."),
        P_STR("milter_macro_v", "$mail_name $mail_version",
              "The value of the v milter macro."),
        P_STR("milter_mail_macros", "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
              "Macros sent to milters with MAIL FROM."),
        P_ENUM("milter_protocol", "6", "2|3|4|6",
               "The milter protocol version postern-smtpd offers (6: all steps and actions; lower versions offer fewer)."),
        P_STR("milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
              "Macros sent to milters with RCPT TO."),
        P_STR("milter_unknown_command_macros", "",
              "Macros sent to milters with an unknown SMTP command."),
        P_LIST("mime_header_checks", "$header_checks",
               "Checks for MIME headers; Postern does not parse MIME structure and applies header_checks to the top-level header section only, so this is accepted and not used separately."),
        P_TIME("minimal_backoff_time", "300s", 's', 1, 0,
               "Shortest wait between two delivery attempts for deferred mail."),
        P_LIST("mydestination", "$myhostname, localhost.$mydomain, localhost",
               "Domains delivered locally by local_transport."),
        P_STR("mydomain", NULL,
              "This system's internet domain (computed: myhostname without its first label, or localdomain)."),
        P_STR("myhostname", NULL,
              "This system's fully qualified host name (computed: the host name, qualified via the resolver when it has no dot)."),
        P_LIST("mynetworks", NULL,
               "Trusted client networks that may relay (permit_mynetworks). Computed when not set: the loopback networks and, per mynetworks_style, this host's addresses (host), its interfaces' networks (subnet) or their class A/B/C networks (class)."),
        P_ENUM("mynetworks_style", "host", "host|subnet|class",
               "What mynetworks trusts when main.cf does not set it: this host only (host), the networks of its interfaces (subnet) or their class A/B/C networks (class)."),
        P_STR("myorigin", "$myhostname",
              "Domain appended to unqualified sender and recipient addresses of locally posted mail."),
        P_LIST("nested_header_checks", "$header_checks",
               "Checks for headers of attached messages; accepted for compatibility, not used (no MIME parsing)."),
        P_INT("non_fqdn_reject_code", "504", 400, 599,
              "SMTP code for reject_non_fqdn_helo_hostname, reject_non_fqdn_sender and reject_non_fqdn_recipient."),
        P_LIST("non_smtpd_milters", "",
               "Milters for mail from the submit socket (postern-sendmail): unix:/path, inet:host:port, or { address, connect_timeout=..., command_timeout=..., content_timeout=..., default_action=... }."),
        P_LIST("notify_classes", "resource, software",
               "Which problems are reported to the postmaster: bounce, 2bounce, delay, policy, protocol, resource, software."),
        P_BOOL("owner_request_special", "yes",
               "Forward an alias's mail with the envelope sender owner-<alias>@$myorigin when an owner-<alias> alias exists, and do not split owner-<name> or <name>-request at a '-' recipient_delimiter."),
        P_LIST("parent_domain_matches_subdomains", "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, qmqpd_authorized_clients, relay_domains, smtpd_access_maps",
               "Features in which a domain name also matches its subdomains; otherwise only \".domain\" entries do (Postern honours smtpd_access_maps here)."),
        P_INT("postern_anvil_client_limit", "100000", 1, 0,
              "Postern: most clients (listener and address) postern-anvil tracks; at the limit the least recently seen client without connections is forgotten."),
        P_STR("postern_lmtp_socket_directory", "/var/spool/postfix",
              "Postern only: the directory a relative LMTP next hop (\"lmtp:unix:private/dovecot-lmtp\") is resolved against, as Postfix resolves it against its queue directory."),
        P_BOOL("postern_postscreen_enable", "no",
               "Runs the screening stage (Postfix's postscreen: postscreen_access_list, the pregreet test, the cache of passed clients) on this smtp listener before its SMTP session: set it as smtp/postern_postscreen_enable = yes (it never applies to submission, submissions or submit)."),
        P_STR("postern_socket_directory", "/run/postern",
              "Postern only: the directory holding the roles' IPC sockets (qmgr, local, ...)."),
        P_LIST("postern_upstream_proxy_networks", "",
               "Postern only: the load balancers that may send a PROXY header on a listener with smtpd_upstream_proxy_protocol (mynetworks syntax: addresses, networks, type:table); empty: any peer. A connection from elsewhere is closed without a greeting."),
        P_LIST("postscreen_access_list", "permit_mynetworks",
               "The screening stage's static allow/deny list, first match decides: permit_mynetworks, or type:table (cidr:, …) keyed by the client address whose values are permit (ALLOWLISTED: no tests), reject (DENYLISTED: postscreen_denylist_action) or dunno (the rest of the list is skipped, the tests run). A table that fails is logged and ends the list undecided."),
        P_LIST("postscreen_allowlist_interfaces", "$postscreen_whitelist_interfaces",
               "The local server addresses (address, network/len, !negated, type:table keyed by the address; first match wins) on which a client that passes the screening stage's tests is cached as passed (temporary allowlist); on other addresses it passes this connection but is tested again at the next."),
        P_ENUM("postscreen_bare_newline_action", "ignore", "ignore|enforce|drop",
               "What the screening stage does with a client that fails the bare newline test: ignore (log it, let the other tests finish; the test is passed until the shortest postscreen_*_ttl runs out), enforce (log it; every RCPT of the engine is refused 550 5.5.1 Protocol error), drop (521 and close)."),
        P_BOOL("postscreen_bare_newline_enable", "no",
               "Runs the bare newline test of the screening stage's SMTP engine after the greeting (a command line ended by LF alone: BARE NEWLINE from [ADDR]:PORT after CMD); a client without a valid cached pass of an enabled deep test talks to that engine, whose RCPT answer is 450 4.3.2 Service currently unavailable: it must come back, and then goes straight on (PASS OLD)."),
        P_TIME("postscreen_bare_newline_ttl", "30d", 'd', 1, 0,
               "How long a client that passed the bare newline test skips it."),
        P_ENUM("postscreen_blacklist_action", "ignore", "ignore|enforce|drop",
               "The old name of postscreen_denylist_action (whose default is this value)."),
        P_TIME("postscreen_cache_cleanup_interval", "12h", 's', 0, 0,
               "How often postern-smtpd removes entries from the screening cache that expired more than postscreen_cache_retention_time ago (in batches between connections); 0 disables the cleanup."),
        P_STR("postscreen_cache_map", "sqlite:$queue_directory/postscreen_cache.db",
              "The screening stage's cache of clients that passed its tests: an SQLite file (sqlite:/path or /path); empty keeps it in memory only. Postfix's btree:/hash:/lmdb: (also behind proxy:) are replaced by $queue_directory/postscreen_cache.db, with a notice."),
        P_TIME("postscreen_cache_retention_time", "7d", 'd', 0, 0,
               "How long an expired entry stays in the screening cache before the cleanup removes it."),
        P_INT("postscreen_client_connection_count_limit", "$smtpd_client_connection_count_limit", 0, 0,
              "How many connections of one client may be in the screening stage at once (counted at connect, before postscreen_access_list, as postscreen does); more get 421 4.7.0 Error: too many connections from ADDR (logged NOQUEUE: reject: CONNECT from [ADDR]:PORT: too many connections); 0: no limit."),
        P_INT("postscreen_command_count_limit", "20", 1, 0,
              "How many commands a client may send to the screening stage's SMTP engine; the next (but QUIT) gets 421 and the connection is closed (COMMAND COUNT LIMIT from [ADDR]:PORT after CMD)."),
        P_LIST("postscreen_command_filter", "$smtpd_command_filter",
               "Tables keyed by each command line a client sends the screening stage's SMTP engine (leading white space and the line end removed); a value found replaces the line before the engine's tests see it (logged: replacing command \"OLD\" with \"NEW\"), as smtpd_command_filter does in the SMTP session."),
        P_TIME("postscreen_command_time_limit", "300s", 's', 1, 0,
               "How long the screening stage's SMTP engine waits for each whole command line (COMMAND TIME LIMIT from [ADDR]:PORT after CMD, 421 and close); Postfix's 10s under stress does not apply (Postern has no stress mode)."),
        P_ENUM("postscreen_denylist_action", "$postscreen_blacklist_action", "ignore|enforce|drop",
               "What the screening stage does with a client postscreen_access_list rejects (DENYLISTED): ignore (test it like any other, never cache it), enforce (test it; every RCPT of its session is refused 550 5.3.2), drop (521 5.3.2 and close)."),
        P_BOOL("postscreen_disable_vrfy_command", "$disable_vrfy_command",
               "The screening stage's SMTP engine neither announces nor takes VRFY (502 5.5.1 VRFY command is disabled); otherwise VRFY gets the reply RCPT would get."),
        P_LIST("postscreen_discard_ehlo_keyword_address_maps", "$smtpd_discard_ehlo_keyword_address_maps",
               "Tables keyed by the client address whose values list EHLO keywords the screening stage's SMTP engine hides from that client; a value found replaces postscreen_discard_ehlo_keywords for it (a failed lookup is logged and the list applies)."),
        P_LIST("postscreen_discard_ehlo_keywords", "$smtpd_discard_ehlo_keywords",
               "EHLO keywords the screening stage's SMTP engine does not announce (its list: SIZE, VRFY, ETRN, ENHANCEDSTATUSCODES, 8BITMIME, DSN; never PIPELINING); silent-discard leaves out the log line."),
        P_ENUM("postscreen_dnsbl_action", "ignore", "ignore|enforce|drop",
               "What the screening stage does with a client whose DNSBL score reaches postscreen_dnsbl_threshold (DNSBL rank N): ignore (let it on, never cache it), enforce (let it on; every RCPT is refused 550 5.7.1 Service unavailable; client [ADDR] blocked using SITE), drop (521 5.7.1 with that text, and close)."),
        P_INT("postscreen_dnsbl_allowlist_threshold", "$postscreen_dnsbl_whitelist_threshold", -1000000, 1000000,
              "A negative score (DNSWL entries with negative weights) at or below this ends the screening at once with PASS NEW, without waiting out postscreen_greet_wait; 0 (the default) turns this off."),
        P_TIME("postscreen_dnsbl_max_ttl", "$postscreen_dnsbl_ttl", 's', 1, 0,
               "The longest time a DNSBL pass is cached: the smallest TTL of the list answers, at least postscreen_dnsbl_min_ttl and at most this (a list that answers NXDOMAIN gives no TTL: this applies)."),
        P_TIME("postscreen_dnsbl_min_ttl", "60s", 's', 1, 0,
               "The shortest time a DNSBL pass is cached, whatever the TTLs of the list answers."),
        P_LIST("postscreen_dnsbl_reply_map", "",
               "Tables that map a postscreen_dnsbl_sites domain to the name the 5xx reply shows (hiding a paid list's query name); the log shows the real one."),
        P_LIST("postscreen_dnsbl_sites", "",
               "The screening stage's DNS lists, domain[=filter][*weight] (filter: 127.0.0.2, 127.0.0.[2..11], 127.0.0.[2;4]; weight default 1, negative for allowlists): all are looked up in parallel when the client connects, each domain once; every entry whose filter matches an answer adds its weight to the client's score."),
        P_INT("postscreen_dnsbl_threshold", "1", 1, 0,
               "The DNSBL score at which the screening stage applies postscreen_dnsbl_action."),
        P_TIME("postscreen_dnsbl_timeout", "10s", 's', 1, 0,
               "How long the screening stage waits for the DNS lists; the wait ends at postscreen_greet_wait anyway, and lists that have not answered by then count as not listed (and the client's DNSBL result is not cached)."),
        P_TIME("postscreen_dnsbl_ttl", "1h", 's', 1, 0,
               "Postfix's name before 3.1 for the DNSBL cache time; the default of postscreen_dnsbl_max_ttl."),
        P_INT("postscreen_dnsbl_whitelist_threshold", "0", -1000000, 1000000,
              "The old name of postscreen_dnsbl_allowlist_threshold (whose default is this value)."),
        P_LIST("postscreen_forbidden_commands", "CONNECT, GET, POST",
               "Command words that fail the non-SMTP command test of the screening stage's SMTP engine (compared without case; an entry \"Word:\" names a header-like word, though every \"Label:\" line fails the test anyway)."),
        P_ENUM("postscreen_greet_action", "ignore", "ignore|enforce|drop",
               "What the screening stage does with a client that talks before the greeting (PREGREET): ignore (let it on, never cache it), enforce (let it on; every RCPT of its session is refused 550 5.5.1), drop (521 5.5.1 and close)."),
        P_STR("postscreen_greet_banner", "$smtpd_banner",
              "The teaser the screening stage sends as \"220-text\" when the greet wait starts (a client that answers it has pregreeted); empty sends nothing."),
        P_TIME("postscreen_greet_ttl", "1d", 'd', 1, 0,
               "How long a client that passed the pregreet test skips the tests (PASS OLD)."),
        P_TIME("postscreen_greet_wait", "6s", 's', 1, 0,
               "How long the screening stage waits for a client to talk out of turn before its SMTP session starts (a timer of the event loop; Postfix's default is 2s under stress, Postern has no stress mode)."),
        P_BOOL("postscreen_helo_required", "$smtpd_helo_required",
               "The screening stage's SMTP engine refuses MAIL and ETRN before HELO/EHLO (503 5.5.1 Error: send HELO/EHLO first)."),
        P_ENUM("postscreen_non_smtp_command_action", "drop", "ignore|enforce|drop",
               "What the screening stage does with a client that fails the non-SMTP command test: ignore (log it, let the other tests finish; the test is passed until the shortest postscreen_*_ttl runs out), enforce (log it; every RCPT of the engine is refused 550 5.5.1 Protocol error), drop (521 and close)."),
        P_BOOL("postscreen_non_smtp_command_enable", "no",
               "Runs the non-SMTP command test of the screening stage's SMTP engine after the greeting (a command of postscreen_forbidden_commands, or a header line such as \"Host: x\": NON-SMTP COMMAND from [ADDR]:PORT after CMD: LINE); a client without a valid cached pass of an enabled deep test talks to that engine, whose RCPT answer is 450 4.3.2 Service currently unavailable: it must come back, and then goes straight on (PASS OLD)."),
        P_TIME("postscreen_non_smtp_command_ttl", "30d", 'd', 1, 0,
               "How long a client that passed the non-SMTP command test skips it."),
        P_ENUM("postscreen_pipelining_action", "enforce", "ignore|enforce|drop",
               "What the screening stage does with a client that fails the pipelining test: ignore (log it, let the other tests finish; the test is passed until the shortest postscreen_*_ttl runs out), enforce (log it; every RCPT of the engine is refused 550 5.5.1 Protocol error), drop (521 and close)."),
        P_BOOL("postscreen_pipelining_enable", "no",
               "Runs the pipelining test of the screening stage's SMTP engine after the greeting (a command sent before the reply to the one before it: the engine does not announce PIPELINING: COMMAND PIPELINING from [ADDR]:PORT after CMD: INPUT); a client without a valid cached pass of an enabled deep test talks to that engine, whose RCPT answer is 450 4.3.2 Service currently unavailable: it must come back, and then goes straight on (PASS OLD)."),
        P_TIME("postscreen_pipelining_ttl", "30d", 'd', 1, 0,
               "How long a client that passed the pipelining test skips it."),
        P_INT("postscreen_post_queue_limit", "$default_process_limit", 0, 0,
              "How many clients of the screened listeners may be in their SMTP session (past the screening stage) at once; a new connection beyond gets 421 4.3.2 All server ports are busy (NOQUEUE: reject: CONNECT from [ADDR]:PORT: all server ports busy); 0: no limit. Postfix counts connections handed to smtpd processes; postern-smtpd counts its own sessions."),
        P_INT("postscreen_pre_queue_limit", "$default_process_limit", 0, 0,
              "How many clients may be in the screening stage (waiting for its decision) at once; a new one that is neither allowlisted nor cached gets 421 4.3.2 All screening ports are busy (NOQUEUE: reject: CONNECT from [ADDR]:PORT: all screening ports busy); 0: no limit."),
        P_STR("postscreen_reject_footer", "$smtpd_reject_footer",
              "A footer added to the 4xx/5xx replies of the screening stage's SMTP engine, as smtpd_reject_footer (\\c, \\n, $client_address, ...)."),
        P_LIST("postscreen_reject_footer_maps", "$smtpd_reject_footer_maps",
               "Tables keyed by the reply text whose value replaces postscreen_reject_footer, as smtpd_reject_footer_maps."),
        P_STR("postscreen_tls_security_level", "$smtpd_tls_security_level",
              "TLS in the screening stage's SMTP engine (the deep tests): none (or empty), may (its EHLO offers STARTTLS when smtpd has TLS credentials, unless postscreen_discard_ehlo_keywords hides it; the tests go on inside TLS), encrypt (MAIL before STARTTLS gets 530 5.7.0 Must issue a STARTTLS command first). Commands pipelined behind STARTTLS are discarded, never run inside TLS."),
        P_ENUM("postscreen_upstream_proxy_protocol", "", "|haproxy",
               "Used on a port-25 postscreen entry of master.cf (its own -o, else this), whose screening postern-smtpd runs itself: it becomes that listener's smtpd_upstream_proxy_protocol (the screening stage reads the header first). Without such an entry it does nothing (reported as not supported)."),
        P_TIME("postscreen_upstream_proxy_timeout", "5s", 's', 1, 0,
               "Likewise: becomes smtpd_upstream_proxy_timeout of the listener that replaces a port-25 postscreen entry of master.cf."),
        P_STR("postscreen_watchdog_timeout", "10s",
              "Accepted and ignored: the screening stage runs inside postern-smtpd, whose unit is watched by systemd (WatchdogSec=), not by a postscreen watchdog."),
        P_LIST("postscreen_whitelist_interfaces", "static:all",
               "The old name of postscreen_allowlist_interfaces (its default)."),
        P_LIST("propagate_unmatched_extensions", "canonical, virtual",
               "Lookups that carry an address extension over when the full address is not matched."),
        P_LIST("proxy_interfaces", "",
               "Addresses of this host behind a proxy or NAT; [address] literals of their numeric entries are local destinations (as those of inet_interfaces)."),
        P_INT("qmgr_message_active_limit", "20000", 1, 0,
              "How many messages the queue manager works on at once at most."),
        P_STR("queue_directory", "/var/spool/postern",
              "Directory of the queue database queue.db (and verify.db)."),
        P_TIME("queue_run_delay", "300s", 's', 1, 0,
               "How often the queue manager scans for deferred mail that is due."),
        P_LIST("rbl_reply_maps", "",
               "Tables keyed by DNS list domain (zone) whose value replaces default_rbl_reply for hits in that list."),
        P_LIST("receive_override_options", "",
               "What postern-smtpd leaves out when it queues mail (typically a master.cf -o of a content filter's return listener): no_unknown_recipient_checks, no_address_mappings (canonical, masquerading, virtual aliases), no_header_body_checks, no_milters."),
        P_LIST("recipient_canonical_classes", "envelope_recipient, header_recipient",
               "Which addresses recipient_canonical_maps rewrites: envelope_recipient, header_recipient."),
        P_LIST("recipient_canonical_maps", "",
               "canonical(5) tables for envelope and header recipient addresses, searched before canonical_maps."),
        P_STR("recipient_delimiter", "",
              "Characters that separate a user name from an address extension (e.g. + for user+ext); empty disables extensions."),
        P_INT("reject_code", "554", 400, 599,
              "SMTP code for the reject restriction."),
        P_ENUM("reject_tempfail_action", "defer_if_permit", "defer_if_permit|defer",
               "What a restriction does when it cannot decide because of a temporary error (DNS, tables)."),
        P_LIST("relay_clientcerts", "",
              "Tables of client certificate or public key fingerprints (in smtpd_tls_fingerprint_digest) that permit_tls_clientcerts permits, as Postfix: the key is the fingerprint, the value is ignored."),
        P_INT("relay_destination_concurrency_limit", "$default_destination_concurrency_limit", 1, 0,
              "How many parallel deliveries to one destination the relay transport makes."),
        P_TIME("relay_destination_rate_delay", "$default_destination_rate_delay", 's', 0, 0,
               "The pause between deliveries to one destination of the relay transport (0: none)."),
        P_INT("relay_destination_recipient_limit", "$default_destination_recipient_limit", 1, 0,
              "The most recipients one delivery request of the relay transport carries."),
        P_LIST("relay_domains", "",
               "Remote domains this system relays mail to from anyone (Postfix 3 default: none)."),
        P_INT("relay_domains_reject_code", "554", 400, 599,
              "SMTP code for reject_unauth_destination (Relay access denied)."),
        P_INT("relay_process_limit", "$default_process_limit", 1, 0,
              "How many delivery requests to the relay transport may be in flight at once (Postern's replacement for master.cf's maxproc)."),
        P_LIST("relay_recipient_maps", "",
               "Lookup tables of the valid recipients of relay_domains (user@domain or @domain); empty accepts every address in those domains."),
        P_STR("relay_transport", "relay",
              "Transport for domains listed in relay_domains."),
        P_STR("relayhost", "",
              "Next hop for remote mail instead of the recipient domain's MX: host, [host]:port or [address]; empty sends directly."),
        P_LIST("relocated_maps", "",
               "Lookup tables mapping an address (user@domain, user for local domains, @domain) to its new location: mail for it is rejected or returned with 5.1.6 \"User has moved to <new location>\"."),
        P_STR("remote_header_rewrite_domain", "",
              "Headers of clients that are not in local_header_rewrite_clients get incomplete addresses completed with this domain; empty: their headers are not rewritten at all."),
        P_BOOL("requiretls_enable", "yes",
              "REQUIRETLS (RFC 8689): postern-smtpd offers it inside TLS and keeps it with the message; postern-smtp sends such a message only over TLS verified at level secure (or verify with a [host] next hop) to a server that offers REQUIRETLS, else returns it with 5.7.30. -o requiretls_enable=no on a client transport delivers without enforcing (Postfix 3.11)."),
        P_LIST("sender_canonical_classes", "envelope_sender, header_sender",
               "Which addresses sender_canonical_maps rewrites: envelope_sender, header_sender."),
        P_LIST("sender_canonical_maps", "",
               "canonical(5) tables for envelope and header sender addresses, searched before canonical_maps."),
        P_LIST("sender_dependent_default_transport_maps", "",
               "Lookup tables keyed by envelope sender, then @domain: a transport[:nexthop] replacing default_transport for that sender's remote mail (DUNNO: no override); transport_maps wins."),
        P_LIST("sender_dependent_relayhost_maps", "",
               "Lookup tables keyed by envelope sender, then @domain: a next hop replacing relayhost for that sender's remote mail (DUNNO: no override); transport_maps and a transport's own next hop win."),
        P_BOOL("show_user_unknown_table_name", "yes",
               "Name the recipient table in \"User unknown in ... table\" replies; with no, the reply says only \"User unknown\"."),
        P_STR("smtp_address_verify_target", "rcpt",
              "The stage that decides an address probe (request=verify): rcpt, or data for servers that reject recipients only at DATA (the connection is then dropped in DATA mode)."),
        P_STR("smtp_bind_address", "",
              "Local IPv4 address the SMTP client binds to before connecting (empty: chosen by the kernel)."),
        P_TIME("smtp_connect_timeout", "30s", 's', 1, 0,
               "How long the SMTP client waits for a TCP connection to be established."),
        P_TIME("smtp_connection_cache_time_limit", "2s", 's', 0, 0,
               "How long the SMTP client keeps an idle connection open for the next delivery to the same next hop (0: no reuse)."),
        P_INT("smtp_connection_reuse_count_limit", "0", 0, 0,
              "How many transactions one SMTP client connection may carry (0: no limit)."),
        P_TIME("smtp_connection_reuse_time_limit", "300s", 's', 1, 0,
               "How long after it was opened an SMTP client connection may still be reused."),
        P_TIME("smtp_data_done_timeout", "600s", 's', 1, 0,
               "How long the SMTP client waits for the reply to the end of the message."),
        P_TIME("smtp_data_init_timeout", "120s", 's', 1, 0,
               "How long the SMTP client waits for the reply to DATA."),
        P_TIME("smtp_data_xfer_timeout", "180s", 's', 1, 0,
               "How long the SMTP client waits for the server to accept message content."),
        P_STR("smtp_delivery_status_filter", "$default_delivery_status_filter",
              "Delivery status filter for results of the smtp transport."),
        P_INT("smtp_destination_concurrency_limit", "$default_destination_concurrency_limit", 1, 0,
              "How many parallel deliveries to one destination the smtp transport makes."),
        P_TIME("smtp_destination_rate_delay", "$default_destination_rate_delay", 's', 0, 0,
               "The pause between deliveries to one destination of the smtp transport (0: none)."),
        P_INT("smtp_destination_recipient_limit", "$default_destination_recipient_limit", 1, 0,
              "The most recipients one delivery request of the smtp transport carries."),
        P_STR("smtp_dns_support_level", "",
              "DNS use of the SMTP client: disabled (no MX lookups; host names through /etc/hosts and nsswitch), enabled (empty means this), dnssec (as enabled, and DANE trusts answers the resolver validated: AD bit; needs a local validating resolver in /etc/resolv.conf)."),
        P_BOOL("smtp_enforce_tls", "no",
              "Obsolete (Postfix): with smtp_tls_security_level empty, yes means level verify (smtp_tls_enforce_peername = yes) or encrypt."),
        P_STR("smtp_helo_name", "$myhostname",
              "The hostname the SMTP client sends in EHLO and HELO (LMTP: lmtp_lhlo_name)."),
        P_TIME("smtp_helo_timeout", "300s", 's', 1, 0,
               "How long the SMTP client waits for the greeting and for the reply to EHLO/HELO (LMTP: lmtp_lhlo_timeout)."),
        P_TIME("smtp_mail_timeout", "300s", 's', 1, 0,
               "How long the SMTP client waits for the reply to MAIL FROM."),
        P_STR("smtp_mta_sts_CAfile", "",
              "Postern: PEM trust anchors for the certificate of an MTA-STS policy server (https://mta-sts.<domain>); empty: the system trust store."),
        P_BOOL("smtp_mta_sts_enable", "no",
               "Postern: MTA-STS (RFC 8461) for SMTP deliveries through MX records: the policy at _mta-sts.<domain> / https://mta-sts.<domain> is fetched, cached in $queue_directory/mta-sts.db and enforced (mode enforce: MX in the policy and a verified certificate, or no delivery; testing: logged only). smtp_tls_policy_maps entries take precedence."),
        P_TIME("smtp_mta_sts_fetch_timeout", "10s", 's', 1, 0,
               "Postern: time limit of one MTA-STS policy fetch (name lookup, connect, TLS handshake, request and reply)."),
        P_SIZE("smtp_mta_sts_max_policy_size", "65536", 1024, 1048576,
               "Postern: an MTA-STS policy file larger than this many bytes is refused (RFC 8461 3.3 suggests 64 KiB)."),
        P_INT("smtp_mx_address_limit", "5", 0, 1000,
              "At most this many IP addresses from an MX lookup (all MX hosts together) are tried per delivery; 0: no limit."),
        P_INT("smtp_mx_session_limit", "2", 0, 1000,
              "At most this many SMTP sessions (ones that got past EHLO) per delivery attempt; a 4xx from one server moves on to the next address until then (0: no limit)."),
        P_INT("smtp_process_limit", "$default_process_limit", 1, 0,
              "How many delivery requests to the smtp transport may be in flight at once (Postern's replacement for master.cf's maxproc)."),
        P_TIME("smtp_quit_timeout", "300s", 's', 1, 0,
               "How long the SMTP client waits for the reply to QUIT (Postern does not wait for it)."),
        P_TIME("smtp_rcpt_timeout", "300s", 's', 1, 0,
               "How long the SMTP client waits for the reply to RCPT TO."),
        P_TIME("smtp_rset_timeout", "20s", 's', 1, 0,
               "How long the SMTP client waits for the reply to RSET on a reused connection."),
        P_STR("smtp_sasl_auth_cache_name", "",
              "Postfix's on-disk cache of rejected SMTP AUTH logins. Not supported: Postern keeps no such cache; after a rejected login the queue manager suspends the destination as after a failed connection (minimal_backoff_time)."),
        P_BOOL("smtp_sasl_auth_enable", "no",
               "Log in (SMTP AUTH) to servers that offer AUTH when smtp_sasl_password_maps has a username:password for the sender, server host or next hop."),
        P_BOOL("smtp_sasl_auth_soft_bounce", "yes",
               "A 5xx reply to AUTH defers the mail (as 4.x.x) instead of bouncing it."),
        P_LIST("smtp_sasl_mechanism_filter", "",
               "If not empty: only these SASL mechanisms (names) of those the server offers are considered."),
        P_LIST("smtp_sasl_password_maps", "",
               "Tables with one username:password per sender address (with smtp_sender_dependent_authentication), server host name or next hop as written (\"[smtp.example.net]:587\"); lookups in that order."),
        P_LIST("smtp_sasl_security_options", "noplaintext, noanonymous",
               "Which SASL mechanisms the client may use without TLS: noplaintext (no PLAIN/LOGIN), noactive, nodictionary, noanonymous, mutual_auth."),
        P_LIST("smtp_sasl_tls_security_options", "$smtp_sasl_security_options",
               "Like smtp_sasl_security_options, for sessions protected by TLS."),
        P_STR("smtp_sasl_type", "cyrus",
              "The client SASL implementation: Postern's own (PLAIN, LOGIN, SCRAM-SHA-256, SCRAM-SHA-256-PLUS) stands in for cyrus; other values are refused."),
        P_BOOL("smtp_send_xforward_command", "no",
               "Send XFORWARD with the original client's name, address, protocol, HELO name, queue id and source before MAIL, when the server offers it (a content filter's transport: -o smtp_send_xforward_command=yes)."),
        P_BOOL("smtp_sender_dependent_authentication", "no",
               "Look the sender address up in smtp_sasl_password_maps first (full address, then @domain); connections are then reused only for the same login."),
        P_TIME("smtp_starttls_timeout", "300s", 's', 1, 0,
               "How long the SMTP client waits for the TLS handshake (after STARTTLS, or at connect with smtp_tls_wrappermode)."),
        P_INT("smtp_tcp_port", "25", 1, 65535,
              "TCP port of the SMTP client's destinations found by MX or A/AAAA lookup, and of [host] next hops without a port."),
        P_STR("smtp_tls_CAfile", "",
              "PEM file with the CA certificates the SMTP client trusts for server certificates (with smtp_tls_CApath also empty: the system trust store; Postfix trusts none then)."),
        P_STR("smtp_tls_CApath", "",
              "Directory of PEM files with CA certificates the SMTP client trusts, in addition to smtp_tls_CAfile (e.g. /etc/ssl/certs)."),
        P_STR("smtp_tls_cert_file", "",
              "PEM certificate (chain) the SMTP client presents when a server asks for a client certificate; its key is smtp_tls_key_file."),
        P_LIST("smtp_tls_chain_files", "",
              "Files each holding a private key and its certificate chain (PEM) that the SMTP client can present when a server asks for a client certificate (GnuTLS picks by the server's signature algorithms)."),
        P_ENUM("smtp_tls_ciphers", "medium", "medium|high",
               "Cipher grade of the SMTP client with opportunistic TLS (security level may): medium or high (256-bit ciphers only)."),
        P_ENUM("smtp_tls_dane_insecure_mx_policy", "dane", "may|encrypt|dane",
               "TLS level at security level dane for an MX host found by an MX lookup that was not DNSSEC-validated: may (ignore its TLSA records), encrypt (TLS without authentication), dane (use its validated TLSA records; a match is logged Trusted, not Verified). Postfix's default is dane only while smtp_tls_security_level = dane; here it only counts then."),
        P_BOOL("smtp_tls_enforce_peername", "yes",
              "Obsolete (Postfix): with smtp_enforce_tls = yes, whether the server name is verified (level verify) or not (encrypt)."),
        P_BOOL("smtp_tls_enforce_sts_mx_patterns", "yes",
               "With an MTA-STS policy: yes, the MX host name must match one of the policy's mx patterns and the certificate must match the MX host name (RFC 8461 4.1); no, the MX host name is not checked and the certificate must match one of the patterns."),
        P_LIST("smtp_tls_exclude_ciphers", "",
              "OpenSSL cipher names the SMTP client never uses, at every TLS level: classes (aNULL, eNULL, RC4, MD5, SHA1, 3DES, PSK, SRP, CAMELLIA, kRSA, EDH, ...) become GnuTLS priority removals; a single suite or combination is logged as not supported."),
        P_STR("smtp_tls_key_file", "$smtp_tls_cert_file",
              "PEM private key of smtp_tls_cert_file (the same file by default)."),
        P_INT("smtp_tls_loglevel", "0", 0, 4,
              "SMTP client TLS logging: 0 errors only, 1 a summary line per handshake and per reused TLS connection, 2 also the handshake start."),
        P_ENUM("smtp_tls_mandatory_ciphers", "medium", "medium|high",
               "Cipher grade of the SMTP client when TLS is mandatory (security level encrypt and stronger)."),
        P_LIST("smtp_tls_mandatory_exclude_ciphers", "",
              "More cipher names to exclude when the SMTP client's TLS is mandatory (encrypt and above), as smtp_tls_exclude_ciphers."),
        P_LIST("smtp_tls_mandatory_protocols", ">=TLSv1",
               "TLS versions the SMTP client accepts when TLS is mandatory (encrypt and stronger), in Postfix syntax (\">=TLSv1.2\", \"!TLSv1, !TLSv1.1\")."),
        P_BOOL("smtp_tls_note_starttls_offer", "no",
               "Log \"Host offered STARTTLS: [name]\" when a server offers STARTTLS and the SMTP client does not use TLS with it."),
        P_LIST("smtp_tls_policy_maps", "",
               "Tables of per-destination TLS policy, keyed by next-hop domain or [host]:port: a level (none, may, encrypt, verify, secure, dane, dane-only) and optional match=name:name, servername=name and tafile=file attributes (tafile=: trust-anchor files for verify and secure that replace smtp_tls_trust_anchor_file for that destination; several allowed)."),
        P_LIST("smtp_tls_protocols", ">=TLSv1",
               "TLS versions the SMTP client accepts with opportunistic TLS (security level may), in Postfix syntax."),
        P_LIST("smtp_tls_secure_cert_match", "nexthop, dot-nexthop",
               "How the SMTP client matches a server certificate at security level secure: nexthop, dot-nexthop, hostname, or literal names (.domain for any name below it)."),
        P_ENUM("smtp_tls_security_level", "", "|none|may|encrypt|verify|secure|dane|dane-only",
               "SMTP client TLS: empty or none (plaintext), may (STARTTLS when offered, plaintext when the handshake fails), encrypt (TLS required), verify (TLS with a certificate that verifies for the MX host name), secure (verified against smtp_tls_secure_cert_match), dane (RFC 7672: DNSSEC-validated TLSA records of the MX host decide; may without them), dane-only (defer without usable TLSA records). dane needs smtp_dns_support_level = dnssec."),
        P_STR("smtp_tls_servername", "",
              "The server name the SMTP client sends with TLS (SNI): empty for none, hostname (the MX host name), nexthop (the next-hop domain), or a literal name."),
        P_LIST("smtp_tls_trust_anchor_file", "",
               "PEM files of trust anchors (CERTIFICATE and PUBLIC KEY blocks) for the SMTP client's verify and secure levels: when set they replace smtp_tls_CAfile, smtp_tls_CApath and the system store, and an anchor need not be a root: a certificate in the server's chain or one that issued its top certificate, or a public key that a certificate of the chain carries or was signed with, is enough (as DANE-TA); the name check of the level still applies. A tafile= policy attribute replaces it per destination."),
        P_LIST("smtp_tls_verify_cert_match", "hostname",
               "How the SMTP client matches a server certificate at security level verify: hostname, nexthop, dot-nexthop, or literal names."),
        P_BOOL("smtp_tls_wrappermode", "no",
               "The SMTP client starts TLS as soon as it connects (SMTPS/submissions, port 465) instead of using STARTTLS; TLS is then mandatory."),
        P_STR("smtp_tlsrpt_CAfile", "",
              "Postern: PEM trust anchors for the certificate of a TLSRPT https: rua server `posternctl tlsrpt send` POSTs reports to; empty: the system trust store."),
        P_STR("smtp_tlsrpt_contact_info", "postmaster@$mydomain",
              "Postern: the contact-info of the TLSRPT (RFC 8460) reports `posternctl tlsrpt send` mails."),
        P_BOOL("smtp_tlsrpt_enable", "no",
               "TLSRPT (RFC 8460): postern-smtp counts the TLS results of deliveries that went through MTA-STS policy discovery (sts, no-policy-found) per policy domain and day in $queue_directory/tlsrpt.db; `posternctl tlsrpt send` (the postern-tlsrpt.timer) mails the daily reports to the domains' _smtp._tls rua addresses."),
        P_TIME("smtp_tlsrpt_https_timeout", "60s", 's', 1, 0,
               "Postern: time limit of one POST of a TLSRPT report to an https: rua (name lookup, connect, TLS handshake, request and reply)."),
        P_STR("smtp_tlsrpt_organization_name", "$mydomain",
              "Postern: the organization-name (and the Submitter of the Subject) of the TLSRPT reports."),
        P_STR("smtp_tlsrpt_report_sender", "postmaster@$mydomain",
              "Postern: the From: address and envelope sender of the TLSRPT report mail."),
        P_STR("smtp_tlsrpt_socket_name", "",
              "Accepted and ignored: not supported: Postfix hands results to an outside tlsrpt daemon through this socket; postern-smtp records them itself (smtp_tlsrpt_enable) and logs not supported when it is set."),
        P_BOOL("smtp_use_tls", "no",
              "Obsolete (Postfix): with smtp_tls_security_level empty, yes means level may."),
        P_LIST("smtpd_authorized_xforward_hosts", "",
               "Clients (networks, as mynetworks) that may send XFORWARD to name the original client of mail they pass back, typically a content filter's reinjection; the transaction's logs, Received: header and queue record then show that client."),
        P_STR("smtpd_banner", "$myhostname ESMTP $mail_name",
              "Text after 220 in the SMTP greeting; it must start with $myhostname."),
        P_INT("smtpd_client_auth_rate_limit", "0", 0, 0,
              "AUTH commands a client may send per anvil_rate_time_unit (0: no limit)."),
        P_INT("smtpd_client_connection_count_limit", "50", 0, 0,
              "Simultaneous connections a client may have to one listener (0: no limit)."),
        P_INT("smtpd_client_connection_rate_limit", "0", 0, 0,
              "Connections a client may make to one listener per anvil_rate_time_unit (0: no limit)."),
        P_LIST("smtpd_client_event_limit_exceptions", "$mynetworks",
               "Clients exempt from the smtpd_client_*_limit settings (same syntax as mynetworks)."),
        P_INT("smtpd_client_message_rate_limit", "0", 0, 0,
              "MAIL commands a client may send per anvil_rate_time_unit (0: no limit)."),
        P_INT("smtpd_client_new_tls_session_rate_limit", "0", 0, 0,
              "New (not resumed) TLS sessions a client may negotiate per anvil_rate_time_unit (0: no limit)."),
        P_BOOL("smtpd_client_port_logging", "no",
               "Log the client's TCP port along with its address."),
        P_INT("smtpd_client_recipient_rate_limit", "0", 0, 0,
              "RCPT commands a client may send per anvil_rate_time_unit (0: no limit)."),
        P_LIST("smtpd_client_restrictions", "",
               "Access restrictions applied to the client's address and name."),
        P_LIST("smtpd_command_filter", "",
               "Tables keyed by each SMTP command line as the client sent it (leading white space and the line end removed; not AUTH responses, not the message); a value found replaces the line before it is parsed (logged: replacing command \"OLD\" with \"NEW\"). A failed lookup is logged and the line is used as sent. For clients with known protocol bugs; a pcre: or regexp: table is the usual choice."),
        P_LIST("smtpd_data_restrictions", "",
               "Access restrictions applied at the DATA command."),
        P_BOOL("smtpd_delay_reject", "yes",
               "Evaluate client, HELO and sender restrictions only at RCPT TO, so rejections name the recipient."),
        P_LIST("smtpd_discard_ehlo_keyword_address_maps", "",
               "Tables keyed by the client address whose values list EHLO keywords to hide from that client (as smtpd_discard_ehlo_keywords)."),
        P_LIST("smtpd_discard_ehlo_keywords", "",
               "EHLO keywords the SMTP server does not announce (chunking, dsn, smtputf8, pipelining, size, vrfy, ...); their commands and parameters are then refused. silent-discard suppresses the log line."),
        P_LIST("smtpd_end_of_data_restrictions", "",
               "Access restrictions applied when the client has sent the message content (before it is queued)."),
        P_BOOL("smtpd_enforce_tls", "no",
              "Obsolete (Postfix): when smtpd_tls_security_level is not set (main.cf or the listener), yes means level encrypt."),
        P_TIME("smtpd_error_sleep_time", "1s", 's', 0, 0,
               "Pause before answering an error once a client reaches smtpd_soft_error_limit."),
        P_LIST("smtpd_etrn_restrictions", "",
               "Access restrictions applied at the ETRN command (with smtpd_delay_reject = yes, after the client and HELO restrictions)."),
        P_ENUM("smtpd_forbid_bare_newline", "normalize", "normalize|yes|no",
               "Handling of lines ending in a bare LF: normalize stores them as ordinary lines, yes rejects them; no is accepted for Postfix compatibility and behaves like normalize (only CRLF.CRLF ever ends DATA)."),
        P_LIST("smtpd_forbid_bare_newline_exclusions", "$mynetworks",
               "Clients to which smtpd_forbid_bare_newline = yes does not apply: they get normalize instead (same syntax as mynetworks)."),
        P_BOOL("smtpd_forbid_unauth_pipelining", "yes",
               "Disconnect clients that send commands ahead of time where RFC 2920 does not allow it (554 5.5.0 Error: SMTP protocol synchronization)."),
        P_INT("smtpd_hard_error_limit", "20", 1, 0,
              "Errors a client may cause before the SMTP server disconnects."),
        P_BOOL("smtpd_helo_required", "no",
               "Require HELO or EHLO before MAIL FROM."),
        P_LIST("smtpd_helo_restrictions", "",
               "Access restrictions applied to the HELO/EHLO name."),
        P_INT("smtpd_junk_command_limit", "100", 1, 0,
              "NOOP, RSET, VRFY, ETRN and HELP commands a client may send before they count as errors."),
        P_LIST("smtpd_milter_maps", "",
               "Lookup tables keyed by the client address: a list of milters used for that client instead of smtpd_milters, or DISABLE for none."),
        P_LIST("smtpd_milters", "",
               "Milters for mail received over SMTP: unix:/path, local:/path, inet:host:port, or { address, connect_timeout=..., command_timeout=..., content_timeout=..., default_action=... }, in the order they are asked."),
        P_STR("smtpd_null_access_lookup_key", "<>",
              "The key check_sender_access looks up for the null sender address."),
        P_BOOL("smtpd_peername_lookup", "yes",
               "Look up the client's host name in DNS (otherwise it is logged as unknown)."),
        P_STR("smtpd_policy_service_default_action", "451 4.3.5 Server configuration problem",
              "The action used when a check_policy_service server cannot be reached or answers nonsense after smtpd_policy_service_try_limit attempts."),
        P_TIME("smtpd_policy_service_max_idle", "300s", 's', 1, 0,
               "How long an unused connection to a policy server stays open for reuse."),
        P_TIME("smtpd_policy_service_max_ttl", "1000s", 's', 1, 0,
               "How long a connection to a policy server is reused at most, counted from its opening."),
        P_STR("smtpd_policy_service_policy_context", "",
              "Text sent to policy servers as policy_context=, so one server can tell several configurations apart."),
        P_INT("smtpd_policy_service_request_limit", "0", 0, 0,
              "How many requests one connection to a policy server carries before it is closed (0: no limit)."),
        P_TIME("smtpd_policy_service_retry_delay", "1s", 's', 0, 0,
               "How long to wait between attempts to reach a policy server."),
        P_TIME("smtpd_policy_service_timeout", "100s", 's', 1, 0,
               "How long one policy request (connect, send, answer) may take."),
        P_INT("smtpd_policy_service_try_limit", "2", 1, 0,
              "How many times a policy request is tried (connection or protocol errors) before smtpd_policy_service_default_action applies."),
        P_STR("smtpd_proxy_ehlo", "$myhostname",
              "The EHLO name postern-smtpd sends to smtpd_proxy_filter."),
        P_STR("smtpd_proxy_filter", "",
              "Before-queue content filter: an SMTP proxy (host:port, inet:host:port, unix:/path) that every SMTP mail transaction of the listener passes through (not the submit socket); the filter's replies become the client's, and it relays the mail to a listener that queues it."),
        P_LIST("smtpd_proxy_options", "",
               "speed_adjust: postern-smtpd receives the whole message (answering MAIL, RCPT and DATA itself) before it contacts smtpd_proxy_filter."),
        P_TIME("smtpd_proxy_timeout", "100s", 's', 1, 0,
               "Time limit for connecting to smtpd_proxy_filter and for each of its replies; past it the client gets 451 4.3.0."),
        P_INT("smtpd_recipient_limit", "1000", 1, 0,
              "Recipients accepted per message at most."),
        P_LIST("smtpd_recipient_restrictions", "",
               "Access restrictions applied at RCPT TO, after smtpd_relay_restrictions."),
        P_STR("smtpd_reject_footer", "",
              "Text appended to every 4xx/5xx reply of the restriction engine (\\n starts a new line, a leading \\c continues the last; $client_address, $client_name, $localtime, $server_name expand)."),
        P_LIST("smtpd_reject_footer_maps", "",
               "Tables searched with the reply text for a footer that replaces smtpd_reject_footer."),
        P_BOOL("smtpd_reject_unlisted_recipient", "yes",
               "Reject recipients that the table of their address class does not list (local_recipient_maps, virtual_alias_maps, virtual_mailbox_maps, relay_recipient_maps) and relocated ones, as reject_unlisted_recipient does."),
        P_BOOL("smtpd_reject_unlisted_sender", "no",
               "Reject sender addresses that the table of their address class does not list, as reject_unlisted_sender does, without naming it in a restriction list."),
        P_LIST("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
               "Relay control at RCPT TO; mail may be relayed only when these permit it."),
        P_LIST("smtpd_restriction_classes", "",
               "Names of user-defined restriction classes; each is a main.cf parameter holding a restriction list."),
        P_BOOL("smtpd_sasl_auth_enable", "no",
               "Offer SMTP AUTH (RFC 4954) through the SASL server of smtpd_sasl_type."),
        P_BOOL("smtpd_sasl_authenticated_header", "no",
               "Name the SASL login of an authenticated client in the Received: header (\"Authenticated sender: user\")."),
        P_STR("smtpd_sasl_path", "smtpd",
              "Dovecot's auth client socket; a relative path is taken relative to queue_directory (as Postfix, e.g. private/auth)."),
        P_INT("smtpd_sasl_response_limit", "12288", 64, 0,
              "Longest SASL response line (in bytes) a client may send during AUTH."),
        P_LIST("smtpd_sasl_security_options", "noanonymous",
               "Which SASL mechanisms may be offered without TLS: noanonymous and/or noplaintext exclude those kinds."),
        P_STR("smtpd_sasl_service", "smtp",
              "The service name smtpd gives the SASL server (Dovecot's %s and service=)."),
        P_LIST("smtpd_sasl_tls_security_options", "$smtpd_sasl_security_options",
               "Like smtpd_sasl_security_options, for sessions protected by TLS."),
        P_STR("smtpd_sasl_type", "dovecot",
              "The SASL server smtpd uses; only dovecot is supported (Postfix's default, cyrus, is not)."),
        P_LIST("smtpd_sender_login_maps", "",
               "Tables of MAIL FROM addresses (or @domain) and the SASL login names that own them, for reject_*_sender_login_mismatch."),
        P_LIST("smtpd_sender_restrictions", "",
               "Access restrictions applied to the MAIL FROM address."),
        P_INT("smtpd_soft_error_limit", "10", 1, 0,
              "Errors after which the SMTP server pauses smtpd_error_sleep_time before each reply."),
        P_TIME("smtpd_starttls_timeout", "300s", 's', 1, 0,
               "How long the TLS handshake after STARTTLS (or on the submissions port) may take."),
        P_TIME("smtpd_timeout", "300s", 's', 1, 0,
               "How long the SMTP server waits for a client to send a command or data before it disconnects."),
        P_STR("smtpd_tls_CAfile", "",
              "PEM file of CA certificates that verify client certificates (smtpd_tls_ask_ccert); their names are sent with the certificate request."),
        P_STR("smtpd_tls_CApath", "",
              "Directory of PEM CA certificates that verify client certificates, in addition to smtpd_tls_CAfile."),
        P_BOOL("smtpd_tls_ask_ccert", "no",
              "Ask TLS clients for a certificate (for permit_tls_clientcerts, check_ccert_access, the Received: header and milters' {cert_subject}/{cert_issuer})."),
        P_BOOL("smtpd_tls_auth_only", "yes",
               "Offer and accept AUTH only after STARTTLS (or on implicit TLS). Postern defaults to yes (Postfix: no) so passwords never cross the network in the clear."),
        P_STR("smtpd_tls_cert_file", "",
              "PEM file with the SMTP server's certificate (and its chain); see also smtpd_tls_chain_files."),
        P_LIST("smtpd_tls_chain_files", "",
               "PEM files, each with a private key followed by its certificate chain (e.g. one RSA and one ECDSA); the key type is chosen by the client's signature algorithms."),
        P_ENUM("smtpd_tls_ciphers", "medium", "medium|high",
               "Cipher grade with opportunistic TLS (security level may): medium (128 bits and more) or high (256-bit ciphers only)."),
        P_STR("smtpd_tls_dh1024_param_file", "",
              "PEM DH parameters (openssl dhparam, or Postfix's ffdhe files) for the DHE suites; empty, or a file that does not load (logged), gives GnuTLS's RFC 7919 groups."),
        P_LIST("smtpd_tls_exclude_ciphers", "",
              "OpenSSL cipher names postern-smtpd never uses: classes (aNULL, eNULL, RC4, MD5, SHA1, 3DES, PSK, SRP, CAMELLIA, kRSA, EDH, ...) become GnuTLS priority removals; a single suite (AES256-SHA) or combination (RSA+AES) is logged as not supported."),
        P_ENUM("smtpd_tls_fingerprint_digest", "sha256", "md5|sha1|sha224|sha256|sha384|sha512",
               "Digest of client certificate and public key fingerprints (relay_clientcerts, check_ccert_access, the policy service's ccert_* attributes)."),
        P_STR("smtpd_tls_key_file", "$smtpd_tls_cert_file",
              "PEM file with the private key of smtpd_tls_cert_file."),
        P_INT("smtpd_tls_loglevel", "0", 0, 4,
              "TLS logging: 0 errors only, 1 a summary line per handshake, 2 also handshake start and resumption."),
        P_ENUM("smtpd_tls_mandatory_ciphers", "medium", "medium|high",
               "Cipher grade when TLS is mandatory (security level encrypt)."),
        P_LIST("smtpd_tls_mandatory_exclude_ciphers", "",
              "More cipher names to exclude at smtpd_tls_security_level = encrypt, as smtpd_tls_exclude_ciphers."),
        P_LIST("smtpd_tls_mandatory_protocols", ">=TLSv1.2",
               "TLS versions accepted when TLS is mandatory (security level encrypt), in Postfix syntax (\">=TLSv1.2\", \"!TLSv1, !TLSv1.1\"). Postern's default excludes TLS 1.0 and 1.1."),
        P_LIST("smtpd_tls_protocols", ">=TLSv1.2",
               "TLS versions accepted with opportunistic TLS (security level may), in Postfix syntax. Postern's default excludes TLS 1.0 and 1.1."),
        P_BOOL("smtpd_tls_received_header", "yes",
               "Record the TLS version and cipher in the Received: header (Postern's default is yes; Postfix's is no)."),
        P_BOOL("smtpd_tls_req_ccert", "no",
              "With smtpd_tls_security_level = encrypt: a client without a trusted certificate gets 421 4.7.1 after the handshake (implies smtpd_tls_ask_ccert); at other levels ignored with a warning, as Postfix."),
        P_ENUM("smtpd_tls_security_level", "none", "none|may|encrypt",
               "SMTP server TLS: none (no STARTTLS), may (offer STARTTLS) or encrypt (require STARTTLS before MAIL). The submissions listener always uses TLS."),
        P_BOOL("smtpd_tls_wrappermode", "no",
               "Implicit TLS (RFC 8314) from the first byte on this listener, as master.cf's smtps entries set it (-o smtpd_tls_wrappermode=yes); the submissions listener always has it."),
        P_ENUM("smtpd_upstream_proxy_protocol", "", "|haproxy",
               "Empty, or haproxy: every connection on this listener starts with a PROXY protocol v1 or v2 header from a load balancer, and the client and server addresses it names are used for every check and log line (set it per listener, e.g. master.cf -o smtpd_upstream_proxy_protocol=haproxy)."),
        P_TIME("smtpd_upstream_proxy_timeout", "5s", 's', 1, 0,
               "How long smtpd waits for the complete PROXY protocol header before it closes the connection without a greeting."),
        P_BOOL("smtpd_use_tls", "no",
              "Obsolete (Postfix): when smtpd_tls_security_level is not set (main.cf or the listener), yes means level may."),
        P_BOOL("smtputf8_enable", "yes",
               "Offer SMTPUTF8 (RFC 6531) and accept UTF-8 addresses and headers."),
        P_BOOL("soft_bounce", "no",
               "Turn permanent (5xx) failures into temporary ones, for safe testing of a new configuration."),
        P_TIME("stale_lock_time", "500s", 's', 1, 0,
               "Age after which a mailbox dotlock file is considered stale and removed."),
        P_BOOL("strict_rfc821_envelopes", "no",
               "Require <> around MAIL FROM / RCPT TO addresses and reject comments and phrases in them."),
        P_BOOL("swap_bangpath", "yes",
               "Rewrite UUCP-style \"site!user\" to \"user@site\" as mail is queued."),
        P_STR("syslog_name", "postern",
              "Accepted and ignored: Postern logs to the journal as postern/<role>, so the identifier is fixed (also as a master.cf -o of a transport: not supported)."),
        P_BOOL("tls_append_default_CA", "no",
              "The SMTP/LMTP client trusts the system CA store in addition to *_tls_CAfile/_CApath (with both empty it always does)."),
        P_STR("tls_export_cipherlist", "",
              "not supported: an OpenSSL cipher string, which GnuTLS cannot take (smtpd_tls_ciphers/smtp_tls_ciphers = high or medium and *_exclude_ciphers choose ciphers); a value is logged as not supported."),
        P_STR("tls_high_cipherlist", "",
              "not supported: an OpenSSL cipher string, which GnuTLS cannot take (smtpd_tls_ciphers/smtp_tls_ciphers = high or medium and *_exclude_ciphers choose ciphers); a value is logged as not supported."),
        P_STR("tls_low_cipherlist", "",
              "not supported: an OpenSSL cipher string, which GnuTLS cannot take (smtpd_tls_ciphers/smtp_tls_ciphers = high or medium and *_exclude_ciphers choose ciphers); a value is logged as not supported."),
        P_STR("tls_medium_cipherlist", "",
              "not supported: an OpenSSL cipher string, which GnuTLS cannot take (smtpd_tls_ciphers/smtp_tls_ciphers = high or medium and *_exclude_ciphers choose ciphers); a value is logged as not supported."),
        P_STR("tls_null_cipherlist", "",
              "not supported: an OpenSSL cipher string, which GnuTLS cannot take (smtpd_tls_ciphers/smtp_tls_ciphers = high or medium and *_exclude_ciphers choose ciphers); a value is logged as not supported."),
        P_BOOL("tls_preempt_cipherlist", "yes",
               "postern-smtpd chooses the cipher by its own order of preference (GnuTLS %SERVER_PRECEDENCE) instead of the client's. Postfix's default is no; Postern's is yes, so that a client cannot pick the weakest suite both sides allow (testssl.sh reports the other as a finding)."),
        P_LIST("tls_server_sni_maps", "",
               "Tables mapping a server name the client asks for (SNI) to files holding a private key and its certificate chain; other names get the default certificate."),
        P_LIST("tls_ssl_options", "",
               "TLS options by Postfix's (OpenSSL's) names: NO_TICKET turns session tickets off in postern-smtpd and postern-smtp; NO_COMPRESSION, NO_RENEGOTIATION and ENABLE_MIDDLEBOX_COMPAT are what Postern does anyway; any other name is reported as not supported."),
        P_LIST("transport_maps", "",
               "Lookup tables mapping recipient addresses or domains to transport:nexthop (error:text, discard:text, local:, smtp:[address]:port, lmtp:unix:/path)."),
        P_STR("undisclosed_recipients_header", "To: undisclosed-recipients:;",
              "The header added when a message has no To:, Cc: or Bcc: header (with always_add_missing_headers for remote clients; empty: none)."),
        P_INT("unknown_address_reject_code", "450", 400, 599,
              "The reply code for reject_unknown_sender_domain / reject_unknown_recipient_domain when the domain has no MX, A or AAAA record."),
        P_ENUM("unknown_address_tempfail_action", "$reject_tempfail_action", "defer_if_permit|defer",
               "What reject_unknown_sender_domain / reject_unknown_recipient_domain do when DNS fails temporarily."),
        P_INT("unknown_client_reject_code", "450", 400, 599,
              "The reply code for reject_unknown_client_hostname / reject_unknown_reverse_client_hostname."),
        P_ENUM("unknown_helo_hostname_tempfail_action", "$reject_tempfail_action", "defer_if_permit|defer",
               "What reject_unknown_helo_hostname does when DNS fails temporarily."),
        P_INT("unknown_hostname_reject_code", "450", 400, 599,
              "The reply code for reject_unknown_helo_hostname when the HELO name has no A, AAAA or MX record."),
        P_INT("unknown_local_recipient_reject_code", "550", 400, 599,
              "SMTP code for a rejected unknown local recipient (450 while testing)."),
        P_INT("unknown_relay_recipient_reject_code", "550", 400, 599,
              "SMTP code for a recipient of a relay domain that relay_recipient_maps does not list."),
        P_INT("unknown_virtual_alias_reject_code", "550", 400, 599,
              "SMTP code for a recipient of a virtual alias domain that virtual_alias_maps does not list."),
        P_INT("unknown_virtual_mailbox_reject_code", "550", 400, 599,
              "SMTP code for a recipient of a virtual mailbox domain that virtual_mailbox_maps does not list."),
        P_INT("unverified_recipient_defer_code", "450", 400, 599,
              "SMTP code when reject_unverified_recipient has no result yet (a probe pending or a temporary failure)."),
        P_INT("unverified_recipient_reject_code", "450", 400, 599,
              "SMTP code when reject_unverified_recipient finds the recipient undeliverable."),
        P_STR("unverified_recipient_reject_reason", "",
              "Text that replaces the probe's reply in reject_unverified_recipient's refusal; empty keeps the reply."),
        P_ENUM("unverified_recipient_tempfail_action", "$reject_tempfail_action", "defer_if_permit|defer",
               "What reject_unverified_recipient does when postern-verify cannot be asked: defer_if_permit or defer (never a 5xx)."),
        P_INT("unverified_sender_defer_code", "450", 400, 599,
              "SMTP code when reject_unverified_sender has no result yet (a probe pending or a temporary failure)."),
        P_INT("unverified_sender_reject_code", "450", 400, 599,
              "SMTP code when reject_unverified_sender finds the sender undeliverable."),
        P_STR("unverified_sender_reject_reason", "",
              "Text that replaces the probe's reply in reject_unverified_sender's refusal; empty keeps the reply."),
        P_ENUM("unverified_sender_tempfail_action", "$reject_tempfail_action", "defer_if_permit|defer",
               "What reject_unverified_sender does when postern-verify cannot be asked: defer_if_permit or defer (never a 5xx)."),
        P_INT("virtual_alias_address_length_limit", "1000", 1, 0,
              "Longest address a virtual alias expansion may produce; a longer one gives the message a temporary failure (4.6.0)."),
        P_LIST("virtual_alias_domains", "$virtual_alias_maps",
               "Domains whose every recipient is an alias in virtual_alias_maps (the virtual alias address class)."),
        P_INT("virtual_alias_expansion_limit", "1000", 1, 0,
              "Most addresses one recipient's virtual alias expansion may produce; more gives the message a temporary failure (4.6.0)."),
        P_LIST("virtual_alias_maps", "",
               "Lookup tables that map addresses and domains to one or more other addresses (virtual(5)), applied to every recipient when a message is queued."),
        P_INT("virtual_alias_recursion_limit", "1000", 1, 0,
              "Most nested virtual alias lookups for one address; deeper nesting gives the message a temporary failure (4.6.0)."),
        P_INT("virtual_destination_concurrency_limit", "$default_destination_concurrency_limit", 1, 0,
              "Parallel deliveries to one destination (next hop) of the virtual transport at most."),
        P_INT("virtual_destination_recipient_limit", "$default_destination_recipient_limit", 1, 0,
              "Recipients per delivery request of the virtual transport at most."),
        P_LIST("virtual_gid_maps", "",
               "Lookup tables (often static:N) giving the group id that owns a virtual mailbox, searched like virtual_mailbox_maps."),
        P_STR("virtual_mailbox_base", "",
              "The absolute directory that the paths found in virtual_mailbox_maps are relative to."),
        P_LIST("virtual_mailbox_domains", "$virtual_mailbox_maps",
               "Domains delivered by virtual_transport (the virtual mailbox address class)."),
        P_SIZE("virtual_mailbox_limit", "51200000", 0, 0,
               "Largest a virtual mbox file or Maildir file may grow; 0 means no limit."),
        P_LIST("virtual_mailbox_lock", "fcntl, dotlock",
               "How virtual mbox files are locked during delivery: fcntl, flock and/or dotlock (Maildir needs no lock)."),
        P_LIST("virtual_mailbox_maps", "",
               "Lookup tables of the valid recipients of virtual mailbox domains and their mailbox paths relative to virtual_mailbox_base."),
        P_INT("virtual_minimum_uid", "100", 1, 0,
              "The smallest user id virtual_uid_maps may give; a smaller one defers the delivery."),
        P_STR("virtual_transport", "virtual",
              "Transport (and optional next hop) for domains listed in virtual_mailbox_domains, e.g. lmtp:unix:/run/dovecot/lmtp; the next hop defaults to the recipient domain."),
        P_LIST("virtual_uid_maps", "",
               "Lookup tables (often static:N) giving the user id that owns a virtual mailbox, searched like virtual_mailbox_maps."),
};

const size_t param_table_size = ELEMENTSOF(param_table);

static int param_compare(const void *key, const void *elem) {
        return strcmp(key, ((const ParamDef *) elem)->name);
}

/* Looks a parameter up by name (the table is sorted, see test-params.c). */
const ParamDef *param_lookup(const char *name) {
        if (!name)
                return NULL;
        return bsearch(name, param_table, param_table_size, sizeof(ParamDef), param_compare);
}

/* The host name, made fully qualified. The lookup runs on a thread of our own with a short
 * deadline, so a slow or absent resolver cannot stall a daemon's start; when it answers in time
 * the thread is joined, and the daemon is single-threaded again. (getaddrinfo_a() leaves glibc's
 * helper thread behind for seconds: a daemon that forks delivery children meanwhile — under
 * ASan, whose allocator locks are not fork-safe — could fork while that thread held a lock, and
 * the child then hung on its next allocation.) */
static char param_hostname[256];
static char param_domain[256];
static pthread_once_t param_hostname_once = PTHREAD_ONCE_INIT;

typedef struct CanonLookup {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned refs;          /* the caller and the thread; the last one frees */
        bool done;
        char host[256];
        char result[256];       /* "" when there is no qualified canonical name */
} CanonLookup;

static void canon_lookup_unref(CanonLookup *c) {
        pthread_mutex_lock(&c->lock);
        bool last = --c->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (last) {
                pthread_cond_destroy(&c->cond);
                pthread_mutex_destroy(&c->lock);
                free(c);
        }
}

static void *canon_lookup_thread(void *userdata) {
        CanonLookup *c = userdata;
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_flags = AI_CANONNAME }, *ai = NULL;
        char found[256] = "";

        if (getaddrinfo(c->host, NULL, &hints, &ai) == 0 && ai && ai->ai_canonname &&
            strchr(ai->ai_canonname, '.') && strlen(ai->ai_canonname) < sizeof found)
                snprintf(found, sizeof found, "%s", ai->ai_canonname);
        if (ai)
                freeaddrinfo(ai);
        pthread_mutex_lock(&c->lock);
        snprintf(c->result, sizeof c->result, "%s", found);
        c->done = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        canon_lookup_unref(c);
        return NULL;
}

static bool param_canonical_name(const char *host, char *buf, size_t bufsz) {
        CanonLookup *c = calloc(1, sizeof(CanonLookup));
        if (!c)
                return false;
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        c->refs = 2;
        snprintf(c->host, sizeof c->host, "%s", host);

        pthread_t thread;
        if (pthread_create(&thread, NULL, canon_lookup_thread, c) != 0) {
                c->refs = 1;
                canon_lookup_unref(c);
                return false;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += 1;
        pthread_mutex_lock(&c->lock);
        while (!c->done && pthread_cond_timedwait(&c->cond, &c->lock, &deadline) != ETIMEDOUT)
                ;
        bool done = c->done, ok = done && c->result[0] && strlen(c->result) < bufsz;
        if (ok)
                snprintf(buf, bufsz, "%s", c->result);
        pthread_mutex_unlock(&c->lock);
        if (done)
                (void) pthread_join(thread, NULL);   /* gone before we return */
        else
                (void) pthread_detach(thread);       /* the resolver hangs: it ends when it answers */
        canon_lookup_unref(c);
        return ok;
}

static void param_compute_hostname(void) {
        char h[256] = "";
        if (gethostname(h, sizeof h - 1) < 0 || h[0] == '\0')
                snprintf(h, sizeof h, "localhost");
        h[sizeof h - 1] = '\0';

        if (strchr(h, '.'))
                snprintf(param_hostname, sizeof param_hostname, "%s", h);
        else if (!param_canonical_name(h, param_hostname, sizeof param_hostname))
                /* Like Postfix: an unqualified name gets the default domain. */
                snprintf(param_hostname, sizeof param_hostname, "%.200s.localdomain", h);

        const char *dot = strchr(param_hostname, '.');
        snprintf(param_domain, sizeof param_domain, "%s", dot && dot[1] ? dot + 1 : "localdomain");
}

/* The default text for p, computing the dynamic ones once. */
const char *param_default(const ParamDef *p) {
        if (p->def)
                return p->def;
        if (streq(p->name, "config_directory"))
                return POSTERN_SYSCONFDIR;
        if (streq(p->name, "mail_version"))
                return POSTERN_VERSION;
        if (streq(p->name, "mynetworks"))
                return "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128";   /* conf.c computes the rest */
        if (streq(p->name, "myhostname") || streq(p->name, "mydomain")) {
                pthread_once(&param_hostname_once, param_compute_hostname);
                return streq(p->name, "myhostname") ? param_hostname : param_domain;
        }
        return "";
}

static int param_parse_ll(const char *value, long long *ret) {
        if (isempty(value))
                return -EINVAL;
        const char *s = value;
        if (*s == '+' || *s == '-')
                s++;
        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        char *end;
        long long v = strtoll(value, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Parses a yes/no value (yes/no, true/false, on/off, 1/0; any case). */
int param_parse_bool(const char *value, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };
        if (!value)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcaseeq(value, yes[i]))
                        return *ret = true, 0;
                if (strcaseeq(value, no[i]))
                        return *ret = false, 0;
        }
        return -EINVAL;
}

static long long param_unit_seconds(char unit) {
        switch (tolower((unsigned char) unit)) {
        case 's': return 1;
        case 'm': return 60;
        case 'h': return 3600;
        case 'd': return 86400;
        case 'w': return 604800;
        default: return 0;
        }
}

/* Parses "<number>[s|m|h|d|w]" into seconds; a bare number uses default_unit. */
int param_parse_time(const char *value, char default_unit, long long *ret_seconds) {
        if (isempty(value) || !isdigit((unsigned char) value[0]))
                return -EINVAL;
        errno = 0;
        char *end;
        long long n = strtoll(value, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        char unit = default_unit ? default_unit : 's';
        if (*end != '\0') {
                if (end[1] != '\0')
                        return -EINVAL;
                unit = *end;
        }
        long long mult = param_unit_seconds(unit);
        if (mult == 0)
                return -EINVAL;
        if (n > LLONG_MAX / mult)
                return -ERANGE;
        *ret_seconds = n * mult;
        return 0;
}

static bool param_braces_balanced(const char *value) {
        long depth = 0;
        for (const char *s = value; *s; s++) {
                if (*s == '{')
                        depth++;
                else if (*s == '}' && --depth < 0)
                        return false;
        }
        return depth == 0;
}

static int param_check_range(const ParamDef *p, long long v, const char *unit, char *buf, size_t bufsz) {
        if (v < p->min) {
                snprintf(buf, bufsz, "must be at least %lld%s", p->min, unit);
                return -EINVAL;
        }
        if (p->max != 0 && v > p->max) {
                snprintf(buf, bufsz, "must be at most %lld%s", p->max, unit);
                return -EINVAL;
        }
        return 0;
}

/* Checks an expanded value against p's type and limits; the reason goes to buf. */
int param_validate(const ParamDef *p, const char *value, char *buf, size_t bufsz) {
        long long v;
        bool b;

        if (!value) {
                snprintf(buf, bufsz, "must not be missing");
                return -EINVAL;
        }
        switch (p->type) {
        case PARAM_STRING:
                return 0;
        case PARAM_LIST:
                if (!param_braces_balanced(value)) {
                        snprintf(buf, bufsz, "must have matching { and } braces");
                        return -EINVAL;
                }
                return 0;
        case PARAM_BOOL:
                if (param_parse_bool(value, &b) < 0) {
                        snprintf(buf, bufsz, "must be yes or no");
                        return -EINVAL;
                }
                return 0;
        case PARAM_INT:
        case PARAM_SIZE:
                if (param_parse_ll(value, &v) < 0) {
                        snprintf(buf, bufsz, "must be %s",
                                 p->type == PARAM_SIZE ? "a number of bytes" : "a whole number");
                        return -EINVAL;
                }
                return param_check_range(p, v, "", buf, bufsz);
        case PARAM_TIME:
                if (param_parse_time(value, p->time_unit, &v) < 0) {
                        snprintf(buf, bufsz, "must be a time: a number with an optional unit s, m, h, d or w (default %c)",
                                 p->time_unit ? p->time_unit : 's');
                        return -EINVAL;
                }
                return param_check_range(p, v, "s", buf, bufsz);
        case PARAM_ENUM: {
                const char *vals = strempty(p->enum_values);
                size_t n = strlen(value);
                for (const char *s = vals; *s;) {
                        const char *bar = strchrnul(s, '|');
                        if ((size_t) (bar - s) == n && strncmp(s, value, n) == 0)
                                return 0;
                        s = *bar ? bar + 1 : bar;
                }
                /* "one of: a, b" */
                int k = snprintf(buf, bufsz, "must be one of: ");
                for (const char *s = vals; *s && k >= 0 && (size_t) k < bufsz;) {
                        const char *bar = strchrnul(s, '|');
                        k += snprintf(buf + k, bufsz - k, "%s%.*s", s == vals ? "" : ", ", (int) (bar - s), s);
                        s = *bar ? bar + 1 : bar;
                }
                return -EINVAL;
        }
        }
        snprintf(buf, bufsz, "has an unknown type");
        return -EINVAL;
}
