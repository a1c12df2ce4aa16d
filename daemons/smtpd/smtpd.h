/* smtpd.h — postern-smtpd's internal interface, shared by its files:
 *
 *   smtpd.c              main(): the role, listeners, accept loop, SIGHUP reload, shutdown
 *   smtpd-settings.c     the settings snapshots: a field table plus the code for lists and objects
 *   smtpd-session.c      one client connection: buffers, reading, replying, timeouts, closing
 *   smtpd-command.c      the SMTP command state machine (EHLO ... QUIT) and the fingerprint
 *   smtpd-transaction.c  the transaction part of a session (MAIL ... commit): reset, recipients,
 *                        the message actions
 *   smtpd-restrictions.c compiling restriction lists; mynetworks, local domains and users
 *   smtpd-check.c        the resumable restriction evaluator (all classes); drives the hooks of
 *                        restriction elements (access, DNS, policy)
 *   smtpd-access.c       access(5) actions, refusal replies with footers, their log lines;
 *                        check_*_access lookups (hook: smtpd_hook_access)
 *   smtpd-data.c         the DATA phase: end-of-data rule, dot-unstuffing, headers, Received:
 *   smtpd-bdat.c         BDAT (RFC 3030 CHUNKING): exact-count chunks into the same content code
 *   smtpd-commit.c       group commit: a writer thread that owns its own Queue handle
 *   smtpd-virtual.c      virtual alias expansion of the recipients when a message is queued
 *   smtpd-anvil.c        client connection/rate limits through postern-anvil (hook:
 *                        smtpd_hook_anvil; smtpd_anvil_check() runs it for a session)
 *   smtpd-cleanup.c      header/body checks, dropped headers, hop count (the cleanup step);
 *                        its end-of-data decision is smtpd_hook_cleanup
 *   smtpd-screen.c       the screening stage (postscreen): access list, cache, pregreet test,
 *                        before the session starts; smtpd-screen-cache.c is its SQLite cache
 *   smtpd-screen-engine.c  the stage's SMTP engine of the deep tests after the greeting
 *   smtpd-proxy.c        the PROXY protocol header of a load balancer, before anything else:
 *                        the client and server addresses it names replace the connection's
 *   smtpd-peername.c     the client's name: PTR, forward-confirmed, before the greeting
 *   smtpd-dnsbl.c        DNS lists and unknown domain/HELO/client checks (hook: smtpd_hook_dns)
 *   smtpd-policy.c       check_policy_service: the policy delegation protocol (hook:
 *                        smtpd_hook_policy)
 *   smtpd-verify.c       reject_unverified_recipient / _sender through postern-verify (hook:
 *                        smtpd_hook_verify)
 *   smtpd-tls.c          STARTTLS and implicit TLS: settings, handshake, record I/O, logging
 *   smtpd-auth.c         SMTP AUTH through Dovecot (common/sasl)
 *   smtpd-rewrite.c      address rewriting of the queueing step: canonical form, canonical
 *                        maps and masquerading of the envelope and of address headers
 *   smtpd-milter.c       the milter client: one connection per session and milter, every SMTP
 *                        stage sent and awaited without blocking (common/milter is the protocol)
 *   smtpd-milter-edit.c  the milters' message edits (recipients and sender; headers and body via
 *                        common/milter/milter-edit.c), applied to the job before it is committed
 *
 * The checks of a client or a transaction are hooks behind one interface, SmtpdHook; the table
 * of hooks (stages, what each needs) is above its declaration, further down.
 *
 * Everything except the commit worker runs in the one sd-event loop thread. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"
#include "basic/strbuf.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "conf/table-async.h"
#include "ipc/ipc.h"
#include "mail/addr-canonical.h"
#include "mail/addr-class.h"
#include "mail/address.h"
#include "mail/domain-list.h"
#include "mail/header-checks.h"
#include "mail/host-addresses.h"
#include "mail/virtual-alias.h"
#include "daemon/daemon.h"
#include "dns/dns.h"
#include "mail/queue-id.h"
#include "milter/milter.h"
#include "tls/tls.h"
#include "sasl/sasl-client.h"
#include "smtpd-screen.h"

typedef enum ListenerKind {
        LISTENER_SMTP,        /* port 25: relay restrictions apply */
        LISTENER_SUBMISSION,  /* port 587: same code, its own listener overrides */
        LISTENER_SUBMIT,      /* AF_UNIX from sendmail: uid from SO_PEERCRED, no restrictions */
        LISTENER_SUBMISSIONS, /* port 465: like submission, TLS from the first byte (RFC 8314) */
} ListenerKind;

/* One entry of an address list (mynetworks, smtpd_forbid_bare_newline_exclusions): a network
 * (family, bytes, prefix length) or a lookup table keyed by the client address, maybe negated. */
typedef struct NetEntry {
        int family;
        uint8_t addr[16];
        unsigned prefix;
        bool negate;
        Table *table;            /* "type:name" entries; NULL for networks */
} NetEntry;

typedef struct NetList {
        NetEntry *v;
        size_t n;
} NetList;

/* smtpd_forbid_bare_newline: "no" is accepted for Postfix compatibility and behaves like
 * normalize (CRLF.CRLF stays the only end of DATA in every mode). */
enum { BARE_NEWLINE_NORMALIZE, BARE_NEWLINE_YES };

/* EHLO keywords (smtpd-command.c's ehlo_keywords[] table): smtpd_discard_ehlo_keywords hides
 * them, and the command or parameter of a hidden keyword is then refused. */
enum {
        EHLO_PIPELINING = 1 << 0,
        EHLO_SIZE = 1 << 1,
        EHLO_VRFY = 1 << 2,
        EHLO_ETRN = 1 << 3,
        EHLO_STARTTLS = 1 << 4,
        EHLO_AUTH = 1 << 5,
        EHLO_ENHANCEDSTATUSCODES = 1 << 6,
        EHLO_8BITMIME = 1 << 7,
        EHLO_DSN = 1 << 8,
        EHLO_SMTPUTF8 = 1 << 9,
        EHLO_CHUNKING = 1 << 10,
        EHLO_XFORWARD = 1 << 11,
        EHLO_REQUIRETLS = 1 << 12,
        EHLO_SILENT_DISCARD = 1 << 30,   /* "silent-discard": do not log what was hidden */
};

/* Restriction elements, compiled from their names when the settings are built
 * (smtpd-restrictions.c); evaluated by smtpd-check.c. */
typedef enum Restriction {
        RESTRICT_PERMIT_MYNETWORKS,
        RESTRICT_PERMIT_SASL_AUTHENTICATED,
        RESTRICT_REJECT_UNAUTH_DESTINATION,
        RESTRICT_DEFER_UNAUTH_DESTINATION,
        RESTRICT_REJECT_UNLISTED_RECIPIENT,
        RESTRICT_PERMIT,
        RESTRICT_REJECT,
        RESTRICT_DEFER,
        RESTRICT_DEFER_IF_PERMIT,
        RESTRICT_DEFER_IF_REJECT,
        RESTRICT_WARN_IF_REJECT,
        RESTRICT_PERMIT_AUTH_DESTINATION,
        RESTRICT_REJECT_UNLISTED_SENDER,
        RESTRICT_REJECT_NON_FQDN_HELO,
        RESTRICT_REJECT_INVALID_HELO,
        RESTRICT_REJECT_NON_FQDN_SENDER,
        RESTRICT_REJECT_NON_FQDN_RECIPIENT,
        RESTRICT_CHECK_CLIENT_ACCESS,       /* check_*_access: smtpd_hook_access (answers at once) */
        RESTRICT_CHECK_REVERSE_CLIENT_ACCESS,
        RESTRICT_CHECK_HELO_ACCESS,
        RESTRICT_CHECK_SENDER_ACCESS,
        RESTRICT_CHECK_RECIPIENT_ACCESS,
        RESTRICT_CHECK_CCERT_ACCESS,        /* the client certificate's fingerprints */
        RESTRICT_CHECK_SASL_ACCESS,         /* the SASL login name, looked up as an address */
        RESTRICT_PERMIT_TLS_CLIENTCERTS,    /* fingerprint listed in relay_clientcerts */
        RESTRICT_PERMIT_TLS_ALL_CLIENTCERTS, /* any trusted client certificate */
        RESTRICT_SENDER_LOGIN_MISMATCH,
        RESTRICT_AUTH_SENDER_LOGIN_MISMATCH,
        RESTRICT_KNOWN_SENDER_LOGIN_MISMATCH,
        RESTRICT_UNAUTH_SENDER_LOGIN_MISMATCH,
        RESTRICT_REJECT_UNAUTH_PIPELINING,
        RESTRICT_DNS,            /* asynchronous: smtpd_hook_dns (element name, arg) */
        RESTRICT_POLICY,         /* asynchronous: smtpd_hook_policy (arg) */
        RESTRICT_VERIFY,         /* asynchronous: smtpd_hook_verify (element name) */
        RESTRICT_CLASS,          /* a name from smtpd_restriction_classes */
} Restriction;

typedef struct RestrictionElem {
        Restriction kind;
        const char *name;        /* the element's name as Postfix spells it (static) */
        char *arg;               /* DNS zone, policy service, class name; NULL if none */
        Table *table;            /* check_*_access */
        size_t class_index;      /* RESTRICT_CLASS: index into SmtpdSettings.classes */
} RestrictionElem;

typedef struct RestrictionList {
        RestrictionElem *v;
        size_t n;
} RestrictionList;

/* smtpd_restriction_classes: a name that stands for a restriction list. */
typedef struct RestrictionClass {
        char *name;
        RestrictionList list;
} RestrictionClass;
/* smtpd_client_*_limit (0 = off) and smtpd_client_event_limit_exceptions (smtpd-anvil.c). */
typedef struct SmtpdAnvilLimits {
        unsigned connection_count;
        unsigned connection_rate;
        unsigned message_rate;
        unsigned recipient_rate;
        unsigned newtls_rate;
        unsigned auth_rate;
        NetList exceptions;
} SmtpdAnvilLimits;

/* Virtual alias expansion at queueing time (smtpd-virtual.c). It keeps its own copies of the
 * tables and domain lists it reads, so it does not depend on how recipient validation holds them. */
typedef struct SmtpdVirtualAlias {
        TableList *maps;                   /* virtual_alias_maps; NULL when they failed to open */
        int maps_error;                    /* <0: they failed to open: 451 4.3.0 for every message */
        unsigned recursion_limit, expansion_limit, address_length_limit;
        bool propagate;                    /* propagate_unmatched_extensions lists "virtual" */
        DomainList mydestination;          /* "user" keys: $mydestination ... */
        HostAddresses own_addresses;       /* ... and literals of $inet_interfaces, $proxy_interfaces */
} SmtpdVirtualAlias;

/* reject_unverified_recipient / _sender: unverified_*_{reject,defer}_code, _tempfail_action,
 * _reject_reason (index 0 recipient, 1 sender), address_verify_poll_*, and the path of
 * postern-verify's socket (address_verify_service_name). */
typedef struct SmtpdVerifySettings {
        int reject_code[2], defer_code[2];
        char *tempfail_action[2], *reject_reason[2];
        unsigned poll_count;
        usec_t poll_delay_usec;
        char *socket;
} SmtpdVerifySettings;
/* The milter client's settings (smtpd-milter.c). Both lists are kept: a snapshot may be shared by
 * the SMTP listeners and the submit socket, which uses non_smtpd_milters. */
typedef struct SmtpdMilterSettings {
        MilterSpec *smtpd, *non_smtpd;     /* smtpd_milters, non_smtpd_milters */
        size_t n_smtpd, n_non_smtpd;
        TableList *maps;                   /* smtpd_milter_maps (client address), or NULL */
        usec_t connect_timeout_usec, command_timeout_usec, content_timeout_usec;
        int default_action;                /* MILTER_DEFAULT_* */
        int protocol;                      /* milter_protocol: 2, 3, 4 or 6 */
        char **macros[_MILTER_M_MAX];      /* milter_*_macros */
        char *daemon_name, *macro_v;       /* milter_macro_daemon_name, milter_macro_v */
} SmtpdMilterSettings;

/* A configuration snapshot, shared by all listeners without overrides in main.cf; sessions
 * keep a reference so a reload affects only new sessions. */
typedef struct SmtpdSettings {
        unsigned n_ref;
        char *listener;       /* "smtp", "submission", "submissions", "submit" */
        char *myhostname;
        char *myorigin;
        char *banner;
        uint64_t message_size_limit;   /* 0 = unlimited */
        uint64_t header_size_limit;
        size_t line_length_limit;
        unsigned recipient_limit;
        unsigned hard_error_limit;
        unsigned junk_command_limit;
        usec_t timeout_usec;
        bool disable_vrfy;
        bool helo_required;
        bool reject_unlisted_recipient;
        int bare_newline;
        int unknown_local_code;
        int unknown_virtual_alias_code, unknown_virtual_mailbox_code, unknown_relay_code;
        bool show_user_unknown_table_name;
        char *double_bounce_sender;
        char *recipient_delimiter;
        RestrictionList client_restrictions;
        RestrictionList helo_restrictions;
        RestrictionList sender_restrictions;
        RestrictionList relay_restrictions;
        RestrictionList recipient_restrictions;
        RestrictionList data_restrictions;
        RestrictionList end_of_data_restrictions;
        RestrictionList etrn_restrictions;  /* smtpd_etrn_restrictions (smtpd-etrn.c) */
        DomainList fast_flush_domains;     /* ETRN is served for these (smtpd-etrn.c) */
        int fast_flush_domains_error;      /* <0: the list did not build; ETRN answers 458 */
        char *qmgr_socket;                 /* where ETRN's flush goes */
        RestrictionClass *classes;         /* smtpd_restriction_classes */
        size_t n_classes;
        bool delay_reject;
        bool reject_unlisted_sender;
        bool forbid_unauth_pipelining;
        bool soft_bounce;                  /* the engine's 5xx refusals become 4xx */
        bool parent_matches_access;        /* smtpd_access_maps in parent_domain_matches_subdomains */
        int reject_code, defer_code, relay_code, access_reject_code, access_defer_code;
        int non_fqdn_code, invalid_hostname_code;
        char *null_access_key;             /* smtpd_null_access_lookup_key */
        char *reject_footer;               /* smtpd_reject_footer */
        TableList *reject_footer_maps;
        TableList *sender_login_maps;
        bool can_refuse_relay;             /* relay or recipient list holds a refusing element */
        NetList mynetworks;
        NetList bare_newline_exclusions;   /* clients that get normalize instead of "yes" */
        AddrClasses addr_classes;          /* mydestination, virtual_*_domains, relay_domains */
        /* The tables of the address classes (smtpd-recipient.c): NULL when empty; *_error < 0
         * when they failed to open (the addresses they decide get 451 until a reload fixes it). */
        TableList *local_recipient_maps;
        int local_recipient_maps_error;
        TableList *virtual_mailbox_maps, *relay_recipient_maps, *relocated_maps;
        int virtual_mailbox_maps_error, relay_recipient_maps_error, relocated_maps_error;
        /* virtual_alias_maps: virtual_alias.maps below (smtpd-virtual.c opens them) */
        SmtpdAnvilLimits anvil;
        /* content checks (smtpd-cleanup.c) */
        HeaderChecks *header_checks;       /* NULL: none */
        HeaderChecks *body_checks;
        HeaderChecks *milter_header_checks; /* for the headers milters add or change */
        uint64_t body_checks_size_limit;
        char **drop_headers;               /* message_drop_headers */
        unsigned hopcount_limit;
        bool always_add_missing_headers;
        char *undisclosed_recipients_header;
        /* address rewriting (smtpd-rewrite.c) */
        AddrRewrite rewrite;               /* canonical maps (rows), classes, masquerading */
        bool append_at_myorigin, append_dot_mydomain, swap_bangpath, allow_percent_hack;
        char *mydomain;
        char *remote_header_rewrite_domain;
        unsigned header_rewrite_clients;   /* REWRITE_CLIENTS_* from local_header_rewrite_clients */
        TableList *header_rewrite_maps;    /* its check_address_map tables (client address), or NULL */
        HostAddresses inet_addrs;          /* $inet_interfaces (permit_inet_interfaces clients) */
        bool smtputf8_enable;
        bool requiretls_enable;            /* REQUIRETLS (RFC 8689) offered inside TLS */
        unsigned ehlo_discard;             /* EHLO_* bits from smtpd_discard_ehlo_keywords */
        TableList *ehlo_discard_maps;      /* smtpd_discard_ehlo_keyword_address_maps, or NULL */
        TableList *command_filter;         /* smtpd_command_filter, or NULL */
        /* DNS checks and client names (smtpd-dnsbl.c, smtpd-peername.c) */
        bool peername_lookup;
        int maps_rbl_reject_code, unknown_address_reject_code;
        int unknown_client_reject_code, unknown_hostname_reject_code;
        char *default_rbl_reply;           /* unexpanded: $rbl_* are filled in per hit */
        char *unknown_address_tempfail_action, *unknown_helo_hostname_tempfail_action;
        TableList *rbl_reply_maps;
        /* policy delegation (smtpd-policy.c) */
        char *policy_default_action, *policy_context;
        usec_t policy_timeout_usec, policy_max_idle_usec, policy_max_ttl_usec, policy_retry_delay_usec;
        unsigned policy_request_limit, policy_try_limit;
        /* reject_unverified_* (smtpd-verify.c) */
        SmtpdVerifySettings verify;
        /* TLS (smtpd-tls.c) */
        int tls_level;                     /* TLS_LEVEL_* (smtpd_tls_security_level) */
        TlsServer *tls;                    /* NULL: TLS not available (level none, or failed) */
        int tls_loglevel;
        bool tls_received_header;
        bool tls_wrappermode;              /* implicit TLS like the submissions listener */
        bool tls_ask_ccert, tls_req_ccert; /* client certificates (req: only at level encrypt) */
        int tls_fingerprint_digest;        /* smtpd_tls_fingerprint_digest (tls_fingerprint_digest()) */
        TableList *relay_clientcerts;      /* fingerprints permit_tls_clientcerts permits; NULL: none */
        usec_t starttls_timeout_usec;
        /* PROXY protocol from a load balancer (smtpd-proxy.c) */
        int upstream_proxy;                /* UPSTREAM_PROXY_* (smtpd_upstream_proxy_protocol) */
        usec_t upstream_proxy_timeout_usec;
        NetList upstream_proxy_networks;   /* postern_upstream_proxy_networks; empty: any peer */
        /* SMTP AUTH (smtpd-auth.c) */
        bool sasl_enable;
        bool tls_auth_only;
        bool sasl_authenticated_header;
        bool broken_sasl_auth_clients;
        unsigned sasl_exclude, sasl_require;          /* SaslMechFlags, without TLS */
        unsigned sasl_tls_exclude, sasl_tls_require;  /* ... and under TLS */
        size_t sasl_response_limit;
        char *sasl_service;
        SaslClient *sasl;                  /* this snapshot's Dovecot connection; NULL: AUTH off */
        SmtpdVirtualAlias virtual_alias;   /* virtual alias expansion (smtpd-virtual.c) */
        /* content filters (smtpd-filter.c) */
        char *content_filter;              /* content_filter: every queued message's filter; "" none */
        bool no_unknown_recipient_checks;  /* receive_override_options ... */
        bool no_address_mappings;
        bool no_header_body_checks;
        bool no_milters;                   /* the milter client skips this listener's mail */
        char *proxy_filter;                /* smtpd_proxy_filter as "inet:host:port"/"unix:path", "" none */
        char *proxy_ehlo;                  /* smtpd_proxy_ehlo */
        usec_t proxy_timeout_usec;         /* smtpd_proxy_timeout */
        bool proxy_speed_adjust;           /* smtpd_proxy_options = speed_adjust */
        NetList xforward_hosts;            /* smtpd_authorized_xforward_hosts (smtpd-xforward.c) */
        SmtpdMilterSettings milter;        /* smtpd-milter.c */
        SmtpdScreenSettings screen;        /* the screening stage (smtpd-screen.c) */
        NetList screen_allowlist_if;       /* postscreen_allowlist_interfaces (server addresses) */
} SmtpdSettings;

enum { TLS_LEVEL_NONE, TLS_LEVEL_MAY, TLS_LEVEL_ENCRYPT };

SmtpdSettings *smtpd_settings_ref(SmtpdSettings *s);
SmtpdSettings *smtpd_settings_unref(SmtpdSettings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(SmtpdSettings *, smtpd_settings_unref);
/* Builds the settings of one listener (NULL: the main.cf values without listener overrides)
 * from a configuration; logs its own errors, naming parameter and offending entry. */
int smtpd_settings_new(Conf *c, const char *listener, SmtpdSettings **ret);
/* Builds the settings of every listener, sharing one snapshot among listeners without
 * overrides in main.cf. ret[i] belongs to names[i]; all or nothing. */
int smtpd_settings_build(Conf *c, char *const *names, size_t n, SmtpdSettings **ret);

typedef struct Server Server;
typedef struct Session Session;
typedef struct CommitJob CommitJob;
typedef struct Committer Committer;
typedef struct SmtpdAuth SmtpdAuth;
typedef struct SmtpdAnvil SmtpdAnvil;
typedef struct SmtpdScreen SmtpdScreen;

typedef struct Listener {
        Server *server;
        ListenerKind kind;
        char *name;
        int fd;
        sd_event_source *io;
        sd_event_source *retry;      /* re-enables accepting after EMFILE */
        SmtpdSettings *settings;
        IpcPeers uids;               /* submit: sessions per peer uid (smtpd-session.c) */
        IpcLogLimit refusals;        /* submit: log lines about refused uids */
} Listener;

struct Server {
        Daemon *daemon;
        sd_event *event;
        Listener *listeners;
        size_t n_listeners;
        SmtpdSettings **settings;    /* one per listener, NULL-terminated; Listener.settings borrows */
        Committer *committer;
        DnsResolver *resolver;       /* client names, DNS lists, unknown-domain checks */
        Session *sessions;           /* all live sessions, freed at shutdown */
        size_t n_sessions;
        uint64_t n_queued;           /* messages committed since start */
        uint64_t n_transactions;     /* MAIL commands taken since start (Session.tx.number) */
        sd_event_source *status_timer;
        uint64_t data_budget;        /* bytes of message content all sessions may buffer */
        uint64_t data_in_use;        /* bytes buffered now: DATA in progress + awaiting commit */
        bool stopping;               /* SIGTERM: answer commits, read no further input */
        SmtpdAnvil *anvil;           /* the connection to postern-anvil (smtpd-anvil.c) */
        /* the screening stage's cache of passed clients (smtpd-screen.c) */
        ScreenCache *screen_cache;   /* opened on first use; NULL: none (yet) */
        SmtpdSettings *screen_settings;   /* the snapshot that opened it (cleanup times) */
        char *screen_cache_failed;   /* the path that could not be opened (not retried) */
        sd_event_source *screen_cleanup;
        unsigned screen_stage;       /* sessions in the screening stage (postscreen_pre_queue_limit) */
        unsigned screen_post;        /* sessions the stage let on (postscreen_post_queue_limit) */
        unsigned screen_dropped;     /* entries deleted by the cleanup pass in progress */
};

/* The fingerprint counters, in Postfix's logging order. */
typedef enum SmtpCmd {
        CMD_HELO, CMD_EHLO, CMD_STARTTLS, CMD_AUTH, CMD_XFORWARD, CMD_MAIL, CMD_RCPT, CMD_BDAT, CMD_DATA,
        CMD_RSET, CMD_NOOP, CMD_VRFY, CMD_ETRN, CMD_HELP, CMD_QUIT, CMD_UNKNOWN, _CMD_MAX,
} SmtpCmd;

typedef enum SessionPhase {
        PHASE_COMMAND,
        PHASE_DATA,
        PHASE_BDAT,      /* reading the bytes of a BDAT chunk (smtpd-bdat.c) */
        PHASE_COMMIT,    /* message handed to the committer; input paused until it answers */
        PHASE_WAIT,      /* waiting for an asynchronous answer (DNS, policy, anvil, SASL, ...):
                          * input paused until session_resume(); see session_wait() */
        PHASE_CLOSING,   /* flush output, then close */
        PHASE_TLS,       /* TLS handshake in progress (smtpd-tls.c); no SMTP input */
        PHASE_PROXY,     /* reading the load balancer's PROXY header (smtpd-proxy.c): no reply yet */
        PHASE_SCREEN,    /* the screening stage (smtpd-screen.c): before "connect from" */
} SessionPhase;

/* What access(5) restrictions and header/body checks decided for the message of the current
 * transaction, applied when it is committed (smtpd-commit.c) and reset with the transaction.
 * Restrictions (smtpd-restrictions.c) and content checks (smtpd-data.c) only set fields here. */
typedef struct MessageActions {
        char *hold;              /* HOLD [text]: queued on hold; the text ("" if none) is logged */
        char *discard;           /* DISCARD [text]: answered 250 as if queued, nothing queued */
        char *redirect;          /* REDIRECT addr: the message goes to addr instead of all rcpts */
        char *filter;            /* FILTER transport:destination: content_filter for this message */
        char **bcc;              /* BCC addr: extra recipients (NULL-terminated, may be NULL) */
        StrBuf prepend;          /* PREPEND header lines, each ending in "\n", put at the top */
} MessageActions;
void message_actions_reset(MessageActions *a);
/* BCC addr: adds an extra recipient unless it is there already. */
int message_actions_add_bcc(MessageActions *a, const char *addr);

/* The DATA phase state (allocated at DATA, freed at its end). */
typedef struct DataState {
        Server *server;          /* whose data budget the content is charged to */
        struct CommitJob *expanding;   /* the message, while its virtual alias expansion waits for
                                        * a server table (smtpd-data.c) */
        int expanding_actions;   /* commit_apply_actions()'s answer for it */
        StrBuf content;          /* LF form, starting with our Received: header */
        size_t charged;          /* bytes of the budget this content holds (its allocation) */
        uint64_t bytes;          /* message bytes received (without our headers) */
        size_t hdr_end;          /* offset in content where the header section ends */
        size_t header_bytes;
        bool in_headers;
        bool seen_header;        /* at least one header line so far */
        bool blank_after_headers;
        bool has_from, has_date, has_message_id;
        bool prev_crlf;          /* the previous line ended in CRLF */
        bool mid_line;           /* a long line was split; the next bytes continue it */
        bool too_big;
        bool no_storage;         /* the data budget ran out: content dropped, answer 452 4.3.1 */
        bool bad_utf8_header;    /* SMTPUTF8 message with malformed UTF-8 in a header: 554 5.6.0 */
        bool bdat;               /* content arrives in BDAT chunks (no dot-stuffing) */
        bool proxied;            /* for smtpd_proxy_filter: no header/body checks here (the
                                  * listener that queues it after the filter runs them) */
        uint64_t bdat_bytes;     /* BDAT: bytes of all chunks so far, as sent */
        StrBuf carry;            /* BDAT: the start of a line whose end is in a later read/chunk */
        char *message_id;
        /* content checks (smtpd-cleanup.c) */
        size_t hdr_start;        /* content offset of the logical header being collected */
        bool hdr_pending;        /* content[hdr_start..] is a header not checked yet */
        size_t rcvd_start;       /* where our Received: header starts (later PREPENDs go here) */
        bool has_to;             /* a To:, Cc: or Bcc: header was seen */
        unsigned hops;           /* Received: headers, ours included */
        bool hops_exceeded;
        uint64_t body_bytes;     /* body bytes seen by body_checks */
        char *reject;            /* "550 5.7.1 text" from a REJECT action: refused at end of data */
        bool out_of_memory;      /* a content-check action could not be recorded: 451 4.3.0 */
        int hdr_rewrite;         /* REWRITE_HEADERS_*: how this client's address headers are rewritten */
} DataState;

/* The client: what the handshake established (address, names, submit uid) and what the client
 * told us about itself (HELO, TLS, SASL); a screening stage or a connect-time restriction needs
 * only this part. Set by smtpd-session.c/-peername.c (connect), -command.c (HELO/EHLO), -tls.c
 * and -auth.c; read everywhere. */
typedef struct SmtpdClient {
        char addr[64];           /* "127.0.0.2", or "" for a local submission */
        char name[DNS_NAME_MAX]; /* verified client name, "unknown", or "local" */
        char reverse_name[DNS_NAME_MAX];   /* the PTR name even if it does not verify, or "unknown" */
        int name_status, reverse_name_status;   /* SMTPD_PEER_*: why a name is "unknown" */
        char id_text[DNS_NAME_MAX + 72];   /* "name[addr]" for logs; "local uid=1000" for submit */
        int family;
        uint8_t addr_bytes[16];
        unsigned port;           /* the client's TCP port, 0 if unknown (policy: client_port) */
        char server_addr[64];    /* the address it connected to, "" if unknown or local */
        unsigned server_port;
        uid_t uid;               /* submit only */
        bool uid_counted;        /* submit: holds a place in listener->uids (else: refused) */
        bool uid_trusted;        /* ... counted as root */
        int bare_newline;        /* smtpd_forbid_bare_newline after its exclusions */
        unsigned ehlo_discard;   /* EHLO_* bits hidden for this client */
        char *screen_refusal;    /* the screening stage failed it ("enforce"): every RCPT gets this */

        char *helo;
        bool esmtp;
        char *sasl_username;     /* set by a successful AUTH (smtpd-auth.c), else NULL */
        char *sasl_method;
        TlsConn *tls;            /* the TLS session once STARTTLS (or implicit TLS) began */
        bool tls_active;         /* the handshake completed: all I/O is inside TLS */
        bool tls_new_session;    /* full handshake (not resumed from a ticket); anvil's "newtls"
                                  * event is reported in tls_established() (smtpd-tls.c) */
        TlsPeerCert *ccert;      /* the client's certificate when one was asked for and sent, else NULL */
} SmtpdClient;

/* One recipient of a transaction, as RCPT gave it. */
typedef struct SmtpdRecipient {
        char *address;           /* the external form */
        char *orcpt;             /* ORCPT "type;addr" (decoded) or NULL */
        unsigned notify;         /* QUEUE_NOTIFY_* bits, 0 when not given */
} SmtpdRecipient;
void smtpd_recipient_done(SmtpdRecipient *r);

typedef struct SmtpdProxy SmtpdProxy;   /* smtpd-proxy-filter.c: a transaction's smtpd_proxy_filter session */

/* XFORWARD attributes of the transaction (smtpd-xforward.c); NULL: not given or unavailable. */
enum { XFORWARD_NAME, XFORWARD_ADDR, XFORWARD_PORT, XFORWARD_PROTO, XFORWARD_HELO, XFORWARD_IDENT,
       XFORWARD_SOURCE, _XFORWARD_MAX };
typedef struct SmtpdXforward {
        bool set;                /* an XFORWARD command was accepted in this transaction */
        char *attr[_XFORWARD_MAX];
} SmtpdXforward;
void smtpd_xforward_done(SmtpdXforward *x);

/* A mail transaction, from MAIL to its commit (or RSET, or a refusal): everything here is
 * forgotten by smtpd_transaction_reset() (smtpd-transaction.c). */
typedef struct SmtpdTransaction {
        bool in_mail;
        char *sender;
        char *body_type;
        bool smtputf8;           /* MAIL FROM ... SMTPUTF8 */
        bool requiretls;         /* MAIL FROM ... REQUIRETLS (RFC 8689) */
        int dsn_ret;             /* RET=: 0 none, 1 FULL, 2 HDRS */
        char *dsn_envid;         /* ENVID= (decoded), or NULL */
        char *auth_author;       /* AUTH= (decoded; "<>" as given), or NULL: milters' {auth_author} */
        SmtpdRecipient *rcpts;   /* accepted recipients */
        size_t n_rcpts;
        size_t rcpt_attempts;    /* RCPT commands in this transaction */
        SmtpdRecipient rcpt_pending;   /* RCPT's NOTIFY/ORCPT while its restrictions run */
        char queue_id[QUEUE_ID_MAX];
        uint64_t number;         /* this transaction's number (from MAIL on; policy "instance") */
        DataState *data;
        uint64_t bdat_left;      /* bytes of the current BDAT chunk still to read */
        bool bdat_last;          /* the current chunk is BDAT ... LAST */
        bool bdat_active;        /* this transaction received BDAT chunks: DATA/MAIL/RCPT refused */
        const char *bdat_error;  /* the current chunk is discarded and answered with this */
        MessageActions actions;  /* this transaction's access/content-check decisions */
        SmtpdProxy *proxy;       /* the smtpd_proxy_filter connection, or NULL (smtpd-proxy-filter.c) */
        SmtpdXforward xforward;  /* the original client a content filter names (XFORWARD) */
        TableMemo *lookups;      /* server table answers of this transaction (smtpd_lookups());
                                  * a reset forgets them, the memo itself stays */
} SmtpdTransaction;
/* Forgets the transaction (frees what it holds; the struct is reusable). */
void smtpd_transaction_reset(SmtpdTransaction *t);
/* Appends a recipient (taking over what r holds; r is cleared). -ENOMEM leaves r as it was. */
int smtpd_transaction_add_rcpt(SmtpdTransaction *t, SmtpdRecipient *r);

/* One client connection: its machinery (socket, buffers, timers, the phase owned by
 * smtpd-session.c), its client and its current transaction. */
struct Session {
        Session *prev, *next;
        Server *server;
        Listener *listener;
        SmtpdSettings *settings;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        SessionPhase phase;      /* written only by smtpd-session.c: read it with session_phase() */

        SmtpdClient client;
        SmtpdTransaction tx;

        StrBuf in, out;
        bool skip_line;          /* discarding the rest of an overlong command line */
        bool want_write;         /* output pending: EPOLLOUT armed, input paused */
        bool output_full;        /* processing stopped at the output high-water mark */

        SmtpdAuth *auth;         /* an AUTH exchange in progress (smtpd-auth.c), else NULL */
        CommitJob *job;          /* while PHASE_COMMIT (the transaction was reset already) */
        SessionPhase wait_prev;  /* while PHASE_WAIT: the phase to return to */
        void (*wait_cancel)(void *userdata);   /* while PHASE_WAIT: called if the session ends */
        void *wait_userdata;

        struct SmtpdEval *eval;  /* a restriction evaluation in progress (smtpd-check.c) */
        char *deferred_permit;   /* smtpd_delay_reject = no: a DEFER_IF_PERMIT reply of the
                                  * client/HELO/sender stage, applied when a recipient passes */
        char *filtered_command;  /* the last command line smtpd_command_filter replaced */
        char *access_denied;     /* client restrictions refused at connect: every command but
                                  * QUIT gets 503 */
        bool ill_pipelining;     /* the client sent commands ahead of time where not allowed */
        const char *ill_after;   /* the command after which it did */

        unsigned error_count;
        unsigned junk_count;
        unsigned cmd_ok[_CMD_MAX], cmd_total[_CMD_MAX];
        unsigned anvil_generation; /* anvil connection that counted this session (0: none) */
        const char *last_cmd;    /* for "timeout after X" */
        int last_code;
        struct SmtpdMilters *milters;   /* the session's milter connections (smtpd-milter.c), or NULL */
        SmtpdScreen *screen;     /* while in the screening stage (smtpd-screen.c), else NULL */
        bool screen_post;        /* let on by the stage: counted in Server.screen_post */
};

/* How a client name lookup ended (Postfix: name_status / reverse_name_status). */
enum { SMTPD_PEER_OK, SMTPD_PEER_TEMP, SMTPD_PEER_PERM, SMTPD_PEER_FORGED };

/* smtpd-session.c */
int session_new(Listener *l, int fd);
/* The PROXY header named the endpoints (family AF_INET or AF_INET6, addresses in network byte
 * order), or local: keep the connection's own. Sets the client's address, port, name and the
 * server's address and port, then goes on as a connection without a proxy does (client name
 * lookup, "connect from", anvil, greeting). */
void session_proxy_done(Session *s, bool local, int family, const uint8_t *client_addr, unsigned client_port,
                        const uint8_t *server_addr, unsigned server_port);
/* After the client name is known: logs "connect from", asks postern-anvil whether the client
 * may connect, then queues the 220 greeting (through the connect restrictions) or, for implicit
 * TLS, sets PHASE_TLS so that the next session_flush() starts the handshake. May leave the
 * session waiting (PHASE_WAIT). */
void session_start(Session *s);
void session_free(Session *s);
/* Appends one reply line ("250 2.0.0 Ok"); counts 4xx/5xx replies as errors. */
void session_reply(Session *s, const char *fmt, ...) _printf_(2, 3);
/* Appends raw text (multi-line replies) without error accounting. */
void session_reply_raw(Session *s, const char *text);
/* Writes what is buffered and re-arms the event source; may free the session (returns false). */
bool session_flush(Session *s);
/* Ends the session after the output drained. */
void session_close_after_flush(Session *s);
/* Processes buffered input until it runs out or the session pauses. */
void session_process_input(Session *s);

/* The phase belongs to this file: other files read it with session_phase() and ask for a
 * transition with the functions below. Each applies to the phase the session is in or, while it
 * waits, to the phase it returns to when the wait ends (a finish callback may run inside one). */
SessionPhase session_phase(const Session *s);
bool session_waiting(const Session *s);
/* DATA/BDAT content is read (or the TLS handshake completed): back to reading commands. */
void session_enter_command(Session *s);
/* The 354 to DATA is queued: the input is message content. */
void session_enter_data(Session *s);
/* BDAT: the next bytes are the chunk (smtpd-bdat.c counts them). */
void session_enter_bdat(Session *s);
/* The message went to the committer: input pauses until session_resume() (the session holds
 * job until then; session_free() tells the job the client went away). */
void session_enter_commit(Session *s, CommitJob *job);
/* The screening stage begins: no SMTP input; the session timer becomes the greet wait. */
void session_enter_screen(Session *s, usec_t wait_usec);
/* The screening stage let the client on: the SMTP session starts (name lookup, "connect
 * from", anvil, greeting). May free the session. */
void session_screen_done(Session *s);
/* The 220 to STARTTLS is queued (or implicit TLS): the next session_flush() starts the handshake. */
void session_enter_tls(Session *s);

/* Asynchronous work inside a command (a DNS lookup, a policy or anvil query, a SASL step):
 * the command handler starts the operation, calls session_wait() and returns without a reply.
 * Input stays paused (pipelined commands wait in the buffer) and the idle timer does not run.
 * If the session ends first (client gone, shutdown), cancel(userdata) is called once so the
 * operation drops its pointer to the session; its completion must then not run for it. Only one
 * wait at a time.
 * The completion ends the wait with session_resume(): SESSION_RESUME_INPUT returns to the
 * previous phase and goes on with buffered input (or, shutting down, closes after the output);
 * SESSION_RESUME_ONLY just returns to the previous phase, so that the caller can reply and
 * maybe start another wait; unless it did, it then calls session_resume(SESSION_RESUME_INPUT).
 * A commit (session_enter_commit) ends the same way, back in PHASE_COMMAND.
 * While a session waits or commits, the replies it queued before (earlier commands of a
 * pipelined batch) are held and go out with the answer's, in one write: written alone, the
 * answer's later small segment met Nagle and the client's delayed ACK (40 ms per batch). The
 * client waits for the answer's reply anyway (a wait never depends on its input), so nothing
 * it needs is held longer than the command it waits for; a non-pipelined client has nothing
 * queued when a wait starts. Postfix's smtpd, which blocks with its replies buffered, does the
 * same. Output that fills the buffer still goes out at once. */
typedef enum SessionResume { SESSION_RESUME_INPUT, SESSION_RESUME_ONLY } SessionResume;
void session_wait(Session *s, void (*cancel)(void *userdata), void *userdata);
void session_resume(Session *s, SessionResume how);

/* smtpd-tls.c */
/* Loads the TLS credentials of a settings snapshot (its level is already set); a credential
 * failure is logged and leaves TLS unavailable (STARTTLS answers 454) rather than failing the
 * snapshot. */
int smtpd_tls_settings(Conf *c, const char *listener, SmtpdSettings *s);
/* Whether STARTTLS is offered now (level may/encrypt, credentials loaded, not yet active). */
bool smtpd_tls_offer(Session *s);
/* Level encrypt without TLS yet: answers 530 5.7.0 and returns true. */
bool smtpd_tls_required(Session *s);
/* The STARTTLS command. */
bool smtpd_tls_starttls(Session *s, char *arg);
/* Whether TLS starts with the first byte (the submissions listener, smtpd_tls_wrappermode). */
bool smtpd_tls_implicit(const Session *s);
/* permit_tls_clientcerts (all = false: the certificate's or its public key's fingerprint is in
 * relay_clientcerts) and permit_tls_all_clientcerts (all: its chain verifies): 1, 0, or a
 * negative errno when the table cannot be read. */
int smtpd_tls_clientcert_permitted(Session *s, bool all);
/* Starts the handshake (after the 220 to STARTTLS went out, or at connect on submissions);
 * false when the session was freed. */
bool smtpd_tls_start(Session *s);
/* Handshake progress on socket events (PHASE_TLS). */
void smtpd_tls_on_io(Session *s);
/* Plain or TLS record I/O on the session's socket: bytes, 0 at EOF, or -errno (-EAGAIN). */
ssize_t smtpd_io_read(Session *s, void *buf, size_t n);
ssize_t smtpd_io_write(Session *s, const void *buf, size_t n);
/* The Received: clause "\n\t(using TLSv1.3 with cipher ... (256/256 bits))", or nothing. */
int smtpd_tls_received_clause(Session *s, StrBuf *b);
/* The handshake timeout or the TLS session went wrong: logs, closes. */
void smtpd_tls_timeout(Session *s);

/* smtpd-command.c */
/* The EHLO_* bits hidden for this session (smtpd_discard_ehlo_keywords and the address maps). */
unsigned command_ehlo_discard(Session *s);
/* The EHLO_* bits to hide from this client: the value maps (named param) give for its address,
 * else mask (also when the lookup fails: logged). */
unsigned command_ehlo_discard_for(Session *s, unsigned mask, TableList *maps, const char *param);
/* smtpd_command_filter and postscreen_command_filter (param names filter): the replacement
 * filter gives for command line, kept in s->filtered_command until the next; NULL: none (or the
 * lookup failed: logged, the line stands). who names the client in the log lines. */
char *command_filtered(Session *s, TableList *filter, const char *param, const char *line, const char *who);
/* EHLO_* bits for a list of keyword names (case-insensitive; unknown names are logged). */
unsigned command_ehlo_mask(char **words);
void command_execute(Session *s, char *line, size_t len);
/* Sends the greeting (or, with smtpd_delay_reject = no, the client restrictions' refusal). */
void command_greet(Session *s);
void command_log_disconnect(Session *s);

/* smtpd-restrictions.c */
/* Parses an address list; any entry it cannot honour is an error (logged with param). */
int smtpd_netlist_parse(const char *param, char **list, NetList *ret);
void smtpd_netlist_done(NetList *l);
/* 1 when the client matches the list, 0 when not, <0 on a table lookup error. */
int smtpd_netlist_match(const NetList *l, const SmtpdClient *c);
/* Compiles a restriction list (words from conf_split_list(): names and their arguments); an
 * unknown name or a missing argument is an error logged with param and word. classes may be
 * NULL (no named classes known yet). */
int smtpd_restrictions_compile(const char *param, char **words, const RestrictionClass *classes,
                               size_t n_classes, RestrictionList *ret);
void smtpd_restrictions_done(RestrictionList *l);
/* Builds smtpd_restriction_classes into s (each name is itself a parameter). */
int smtpd_restriction_classes_build(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_restriction_classes_free(SmtpdSettings *s);
bool smtpd_restrictions_can_refuse(const RestrictionList *l);
/* smtpd-check.c: checks one recipient synchronously against the relay and recipient lists
 * (VRFY; asynchronous elements are skipped): 0 when accepted, or sets *ret_reply (allocated)
 * and returns 1. */
int smtpd_check_recipient(Session *s, const char *local, const char *domain, const char *external,
                          char **ret_reply);
/* smtpd-recipient.c: the address class of domain (the overlap warning and a failed lookup
 * are logged); <0 when a list could not be read. */
int smtpd_address_class(const SmtpdSettings *st, const char *domain, AddressClass *ret);
/* reject_unlisted_recipient / reject_unlisted_sender for a: 0 when it is known (or its class
 * is not checked), 1 with *ret_reply (allocated, complete: the 5xx refusal, or 451 4.3.0 when a
 * table could not be read), -ENOMEM. */
int smtpd_unlisted_check(const SmtpdSettings *st, const Address *a, bool sender, char **ret_reply);

/* smtpd-policy.c: closes the policy connections kept for reuse (shutdown). */
void smtpd_policy_shutdown(void);

/* smtpd-proxy.c: smtpd_upstream_proxy_protocol (the values of the ENUM). */
enum { UPSTREAM_PROXY_NONE, UPSTREAM_PROXY_HAPROXY };
/* Whether connections of this session's listener start with a PROXY header (never on submit). */
bool smtpd_proxy_expected(const Session *s);
/* A new session of such a listener (in PHASE_PROXY): a peer outside
 * postern_upstream_proxy_networks is logged and the session freed (returns false). */
bool smtpd_proxy_start(Session *s);
/* PHASE_PROXY: reads what the socket has towards the header, never past its end (the bytes
 * after it, a TLS ClientHello on an implicit-TLS listener, stay in the socket). A complete
 * header hands its addresses to session_proxy_done(); bad input, end of file or an I/O error is
 * logged and the session is freed without a reply. */
void smtpd_proxy_on_io(Session *s);
/* PHASE_PROXY's timer (smtpd_upstream_proxy_timeout) fired: logs, frees the session. */
void smtpd_proxy_timeout(Session *s);

/* smtpd-dnsbl.c: whether an IPv4 list answer a matches a reply filter ("127.0.0.2",
 * "127.0.0.[2..11]", "127.0.[0..255].[2;4]"), for reject_rbl_client and the screening stage. */
bool smtpd_dnsbl_filter_match(const char *filter, const uint8_t *a);

/* smtpd-screen.c: the screening stage (postscreen), see its top comment. */
int smtpd_screen_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_screen_settings_done(SmtpdSettings *s);
/* At connect (client address final): true when the stage took the session (it is in
 * PHASE_SCREEN, or closing, or freed); false: go on to the SMTP session now. */
bool smtpd_screen_start(Session *s);
/* PHASE_SCREEN: input (a pregreet, or the client hung up); may free the session. */
void smtpd_screen_on_io(Session *s);
/* PHASE_SCREEN: the greet wait ended: the verdict, then session_screen_done(); may free it. */
void smtpd_screen_timeout(Session *s);
/* The session ends inside the stage: logs DISCONNECT, frees the stage's state. */
void smtpd_screen_session_free(Session *s);
/* Closes the cache and stops its cleanup (shutdown, or before opening another file). */
void smtpd_screen_shutdown(Server *srv);
/* For the engine (smtpd-screen-engine.c): a log line in the stage's form; the client as
 * "[ADDR]:PORT"; seconds since connect as postscreen writes them ("0.12"); "drop" (the reply,
 * then close; may free the session); the client reached RCPT: passed and ignored (SCREEN_TEST_*)
 * are cached when no test failed (failed: a deep test failed), and PASS NEW is logged. */
void smtpd_screen_log(Session *s, const char *fmt, ...) _printf_(2, 3);
const char *smtpd_screen_peer(Session *s);
void smtpd_screen_elapsed(Session *s, char *buf, size_t n);
void smtpd_screen_drop(Session *s, const char *reply);
void smtpd_screen_deep_done(Session *s, unsigned passed, unsigned ignored, bool failed);
/* For smtpd-tls.c: a STARTTLS handshake the stage's engine began has completed. */
void smtpd_screen_tls_established(Session *s);

/* smtpd-screen-engine.c: postscreen's small SMTP engine of the deep tests, see its top comment. */
typedef struct ScreenEngine ScreenEngine;
/* Sends the 220 (not to a client that pregreeted) and runs the tests of todo; refusal: the RCPT
 * reply an earlier "enforce" failure left, or NULL. NULL when out of memory. May not free s. */
ScreenEngine *screen_engine_start(Session *s, unsigned todo, const char *refusal, bool greet);
ScreenEngine *screen_engine_free(ScreenEngine *e);
/* Input, and postscreen_command_time_limit; both may free the session. */
void screen_engine_on_io(Session *s, ScreenEngine *e);
void screen_engine_timeout(Session *s, ScreenEngine *e);
/* The engine's STARTTLS handshake completed (smtpd-tls.c): back to the tests, HELO forgotten. */
void screen_engine_tls_established(Session *s, ScreenEngine *e);

/* smtpd-screen-dnsbl.c: the stage's DNS list scoring, see its top comment. */
typedef struct ScreenDnsbl ScreenDnsbl;
typedef struct ScreenDnsblResult {
        int score;
        bool complete;                  /* every list answered in time */
        const char *site;               /* the listing domain with the largest weight, or NULL */
        int64_t ttl;                    /* the smallest TTL of the answers; -1: none */
} ScreenDnsblResult;
int smtpd_screen_dnsbl_settings(Conf *c, const char *listener, SmtpdScreenSettings *st);
void smtpd_screen_dnsbl_settings_done(SmtpdScreenSettings *st);
/* Starts the lookups of s's client (NULL: no lists, or out of memory); done(s) runs in the event
 * loop when the last answer is in. */
ScreenDnsbl *screen_dnsbl_start(Session *s, void (*done)(Session *s));
/* Cancels what is still pending; NULL. */
ScreenDnsbl *screen_dnsbl_free(ScreenDnsbl *d);
ScreenDnsblResult screen_dnsbl_result(const ScreenDnsbl *d);
/* The name a refusal shows for site (postscreen_dnsbl_reply_map, else site). Allocated. */
char *screen_dnsbl_display_name(const SmtpdScreenSettings *st, const char *site);

/* smtpd-peername.c: looks the client's name up (PTR, then forward-confirmed) before the
 * greeting, when smtpd_peername_lookup is on. Returns 1 when a lookup runs (the session waits;
 * the greeting follows its end), 0 when the names are final now. */
int smtpd_peername_start(Session *s);

/* smtpd-etrn.c: ETRN (RFC 1985), handed to postern-qmgr as a flush of the domain. */
/* Loads smtpd_etrn_restrictions, fast_flush_domains and the qmgr socket path (after the
 * restriction classes are built); logs its own errors. */
int smtpd_etrn_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_etrn_settings_done(SmtpdSettings *s);
/* The ETRN command (not called when the keyword is hidden by smtpd_discard_ehlo_keywords). */
bool smtpd_etrn_command(Session *s, char *arg);

/* smtpd-check.c: the resumable restriction evaluator. */
typedef enum CheckStage {
        STAGE_CONNECT, STAGE_HELO, STAGE_MAIL, STAGE_RCPT, STAGE_DATA, STAGE_EOD, STAGE_ETRN,
} CheckStage;

/* Hooks: the checks of a client or a transaction behind one interface, so that the restriction
 * engine, the command handlers and (later) a milter client or a screening stage drive them
 * alike. A hook sees only the client and the transaction, never the session: a connect-time
 * stage can run the hooks that need only the client before any SMTP command.
 *
 *   hook                stage(s) (run by)                        needs                     answers
 *   smtpd_hook_access   any restriction stage (smtpd-check.c)    client; the subject       at once
 *   smtpd_hook_dns      any restriction stage (smtpd-check.c)    client; the subject       later
 *   smtpd_hook_policy   any restriction stage (smtpd-check.c)    client + transaction      later
 *   smtpd_hook_verify   any restriction stage (smtpd-check.c)    client; the subject       later, or at once
 *   smtpd_hook_anvil    connect, MAIL, RCPT, STARTTLS, new TLS,   client only               later, or at
 *                       AUTH (smtpd_anvil_check())                                          once ("go on")
 *   smtpd_hook_cleanup  end of data (smtpd-data.c)               transaction (its data)    at once
 * "client only" hooks can run before any SMTP command (a screening stage: a list of them); they
 * accept t == NULL.
 *
 * start() begins the check with the element's argument and what is being checked, and says
 * how it ends:
 *   <0  nothing started (done() is never called; outputs untouched);
 *   1   decided now: *ret_action is the answer (allocated; NULL means "go on", like DUNNO), no
 *       event, no added latency, nothing to cancel; done() is never called;
 *   0   pending: *ret_op is set and done(action, userdata) is called exactly once, later,
 *       never from inside start() (the action is borrowed for the call).
 * cancel(op) stops a pending operation whose session went away (done() is then not called);
 * a hook that always answers at once has no cancel, and logs its own failures (for the others
 * the caller logs that the check could not start). The client and transaction must outlive
 * the operation (the session cancels it before it frees them). An operation bounds its own
 * time (DNS, policy and anvil timeouts). The action is:
 *   - access tables (smtpd_hook_access): the table value as it is ("REJECT text", "HOLD",
 *     "permit_mynetworks, reject", ...), or NULL when no key matched; -EIO when a lookup failed
 *     (logged by the hook, with table and key);
 *   - DNS checks (smtpd_hook_dns, "final" wording): NULL or "DUNNO" to go on, "OK" (a DNSWL
 *     hit), a complete reply sent as it is ("554 5.7.1 Service unavailable; Client host [a]
 *     blocked using zone", "450 4.1.8 <a@b>: Sender address rejected: Domain not found"), or
 *     "DEFER_IF_PERMIT " followed by a complete reply for temporary DNS failures;
 *   - policy services (smtpd_hook_policy): an access(5) action ("DUNNO", "OK", "REJECT text",
 *     "DEFER_IF_PERMIT text", "450 4.7.1 text", "PREPEND hdr: v", ...).
 *   The restriction engine (smtpd-check.c) applies access and policy actions alike with
 *   smtpd_access_apply() (worded for the lookup's subject, or for a policy answer the restriction
 *   class's), so message-wide actions (HOLD, DISCARD, REDIRECT, BCC, FILTER, PREPEND) land in
 *   the transaction's MessageActions, and one that cannot be recorded answers 451 4.3.0;
 *   - anvil (smtpd_hook_anvil, the event in args->anvil_event): NULL when allowed, else the
 *     complete refusal ("421 4.7.0 host Error: too many connections from a"), already logged;
 *   - cleanup (smtpd_hook_cleanup): NULL, or the complete end-of-data refusal of the content
 *     checks (already logged where it was decided).
 * Anvil and cleanup are not restriction elements: the command handlers and the DATA path run
 * them at fixed points through smtpd_anvil_check() and data_finish(). The content checks
 * themselves run per header and body line as direct calls (cleanup_header_end(),
 * cleanup_body_line()): an indirect call and an args block per line would slow the DATA path
 * for no gain, since nothing else would ever run there; only their end-of-data decision, the
 * one place a milter's end-of-message answer would join, is a hook. */
typedef struct SmtpdHookOp SmtpdHookOp;   /* opaque: each hook casts its own operation */
/* postern-anvil's events (smtpd-anvil.c); "disconnect" is sent without a hook (no answer). */
typedef enum SmtpdAnvilEvent {
        ANVIL_EVENT_CONNECT,        /* session start: connection count and rate */
        ANVIL_EVENT_MESSAGE,        /* MAIL */
        ANVIL_EVENT_RECIPIENT,      /* RCPT */
        ANVIL_EVENT_NEWTLS,         /* after a new (not resumed) TLS handshake */
        ANVIL_EVENT_NEWTLS_STATUS,  /* STARTTLS, before the handshake: nothing counted */
        ANVIL_EVENT_AUTH,           /* AUTH */
} SmtpdAnvilEvent;
typedef struct SmtpdHookArgs {
        const SmtpdSettings *settings;
        Server *server;          /* the event loop, the DNS resolver, the anvil connection */
        CheckStage stage;
        const char *element;     /* the restriction element ("reject_rbl_client", ...) */
        const char *arg;         /* its argument: "zone[=d.d.d.d]" for DNS lists, the policy
                                  * service (unix:path, inet:host:port or a path); or NULL */
        const char *subject;     /* DNS, access: the address or name checked (sender,
                                  * recipient, HELO name); NULL for client checks, which use
                                  * the client */
        const char *recipient;   /* policy: the recipient in question, or NULL */
        Table *table;            /* access: the check_*_access table */
        const char *service;     /* anvil: the listener's name ("smtp", "submission", ...) */
        SmtpdAnvilEvent anvil_event;
} SmtpdHookArgs;
typedef void (*SmtpdHookDone)(const char *action, void *userdata);
typedef struct SmtpdHook {
        const char *name;
        int (*start)(const SmtpdClient *c, const SmtpdTransaction *t, const SmtpdHookArgs *a,
                     SmtpdHookDone done, void *userdata, SmtpdHookOp **ret_op, char **ret_action);
        void (*cancel)(SmtpdHookOp *op);   /* NULL: the hook never returns 0 */
} SmtpdHook;
/* smtpd-dnsbl.c. Elements: "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender",
 * "reject_rhsbl_helo", "reject_rhsbl_recipient", "reject_rhsbl_reverse_client",
 * "permit_dnswl_client", "reject_unknown_sender_domain", "reject_unknown_recipient_domain",
 * "reject_unknown_helo_hostname", "reject_unknown_client_hostname",
 * "reject_unknown_reverse_client_hostname". */
extern const SmtpdHook smtpd_hook_dns;
/* smtpd-policy.c: check_policy_service, with the stage as protocol_state ("RCPT", "DATA",
 * "END-OF-MESSAGE", ...) and the transaction's sender. */
extern const SmtpdHook smtpd_hook_policy;
/* smtpd-access.c: check_client_access, check_reverse_client_hostname_access,
 * check_helo_access, check_sender_access, check_recipient_access (args->element, ->table; the
 * subject is the HELO name, sender or recipient). Keys as Postfix builds them: the address,
 * user+ext@ stripped, the domain and its parents, user@; the client name, address and its
 * network prefixes. */
extern const SmtpdHook smtpd_hook_access;
/* smtpd-anvil.c: one anvil event (args->anvil_event, ->service) of the client. */
extern const SmtpdHook smtpd_hook_anvil;
/* smtpd-verify.c: "reject_unverified_recipient" / "reject_unverified_sender" for args->subject
 * (the address); answers in the DNS checks' final wording. */
extern const SmtpdHook smtpd_hook_verify;
/* smtpd-verify.c: loads s->verify (after the field table); logs its own errors. */
int smtpd_verify_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_verify_settings_done(SmtpdSettings *s);
/* Closes the connection to postern-verify (shutdown). */
void smtpd_verify_shutdown(void);
/* smtpd-cleanup.c: the content checks' end-of-data decision (t->data). */
extern const SmtpdHook smtpd_hook_cleanup;
/* Called once with the outcome (accepted or not; a refusal was already answered and logged).
 * May run from the event loop after an asynchronous element; the wait has then ended and the
 * session goes on with buffered input after finish returns (unless finish waits again). */
typedef void (*SmtpdCheckFinish)(Session *s, const char *rcpt, bool accepted);
/* Evaluates the restrictions of stage (rcpt: the recipient at STAGE_RCPT, else NULL). */
void smtpd_check_run(Session *s, CheckStage stage, const char *rcpt, SmtpdCheckFinish finish);
void smtpd_check_session_done(Session *s);
/* The transaction's memo of server table answers (common/conf/table-async.h), made when first
 * needed; NULL without memory (lookups then block the loop, as without workers). */
TableMemo *smtpd_lookups(Session *s);

/* smtpd-access.c: access(5) actions, reply building and reject footers. */
typedef enum AccessVerdict {
        ACCESS_DUNNO, ACCESS_OK, ACCESS_REJECT, ACCESS_DEFER_IF_PERMIT, ACCESS_DEFER_IF_REJECT,
        ACCESS_LIST,             /* the value is a restriction list: *ret_text holds it */
} AccessVerdict;
/* Applies an access(5) value found for entity (e.g. "user@example.org") in a lookup of class
 * label ("Sender address"). Sets *ret_text (allocated) to the reply for REJECT/DEFER_IF_*, or
 * to the list for ACCESS_LIST. Message-wide actions (HOLD, BCC, ...) go to s->tx.actions. */
AccessVerdict smtpd_access_apply(Session *s, CheckStage stage, const char *rcpt, const char *value,
                                 const char *entity, const char *label, char **ret_text);
/* "554 5.7.1 text": builds a reply; the enhanced code from text if it starts with one
 * (its class forced to the code's), else dsn. NULL when out of memory. */
char *smtpd_reply_build(int code, const char *dsn, const char *fmt, ...) _printf_(3, 4);
/* Appends reply plus footer (or the footer footer_maps, named maps_name in warnings, finds for
 * the reply text) to out as CRLF-terminated lines: smtpd_reject_footer, postscreen_reject_footer. */
int smtpd_reply_with_footer(Session *s, const char *reply, const char *footer, TableList *footer_maps,
                            const char *maps_name, StrBuf *out);
/* Sends a 4xx/5xx reply with smtpd_reject_footer(_maps) and logs it as Postfix does
 * ("NOQUEUE: reject: RCPT from ...; from=<> to=<> proto=ESMTP helo=<>"). */
void smtpd_reply_reject(Session *s, CheckStage stage, const char *rcpt, const char *reply);
/* Logs an action ("hold", "warn", "info", "discard", "reject_warning", ...) the same way. */
void smtpd_log_action(Session *s, CheckStage stage, const char *rcpt, const char *what,
                      const char *text);

/* smtpd-auth.c */
/* Checks the SASL type and security options and opens the Dovecot connection when AUTH is
 * enabled (the other AUTH values are already set); logs its own errors. */
int smtpd_auth_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_auth_settings_done(SmtpdSettings *s);
/* Whether AUTH is offered in this session (enabled, not the submit socket, and TLS active
 * unless smtpd_tls_auth_only = no). */
bool smtpd_auth_offered(Session *s);
/* EHLO keyword table hooks: "AUTH PLAIN LOGIN" when mechanisms are offered, and
 * "AUTH=PLAIN LOGIN" too with broken_sasl_auth_clients. */
#define SMTPD_EHLO_ARG_MAX 512
bool smtpd_auth_ehlo_offered(Session *s);
bool smtpd_auth_ehlo_broken_offered(Session *s);
void smtpd_auth_ehlo_arg(Session *s, char *buf, size_t n);
void smtpd_auth_ehlo_broken_arg(Session *s, char *buf, size_t n);
bool smtpd_auth_command(Session *s, char *arg);
/* While s->auth is set the next input line is an AUTH response, not a command. */
void smtpd_auth_response(Session *s, char *line, size_t len);
size_t smtpd_auth_line_limit(Session *s);
void smtpd_auth_line_too_long(Session *s);
void smtpd_auth_session_done(Session *s);
/* MAIL FROM's AUTH= parameter; replies and returns false when it is refused. */
bool smtpd_auth_mail_param(Session *s, const char *value);

/* smtpd-anvil.c: client limits through postern-anvil (one shared connection, see the file).
 * smtpd_anvil_check() reports an event of the session's client through smtpd_hook_anvil; it
 * returns true when the session now waits for anvil's answer (session_wait() was called):
 * done(s, allowed, userdata) then runs later, after the wait ended (session_resume(s,
 * SESSION_RESUME_ONLY)), and the session goes on with its input afterwards unless done() started
 * another wait. When allowed is false the refusal has been replied and logged in Postfix's words
 * (and for connect/newtls the session is closing); when true the caller goes on. false means no
 * wait (exempt client, limit off, anvil unavailable): the caller goes on at once and done is not
 * called. If the session ends while waiting, free_userdata(userdata) is called instead of done
 * (either may be NULL). The refusals:
 *   connect        421 4.7.0 HOST Error: too many connections from ADDR (count and rate)
 *   message        450 4.7.1 Error: too much mail from ADDR
 *   recipient      452 4.7.1 Error: too many recipients from ADDR
 *   newtls         421 4.7.0 HOST Error: too many new TLS sessions from ADDR (closes)
 *   newtls_status  454 4.7.0 Error: too many new TLS sessions from ADDR, at STARTTLS before the
 *                  handshake (nothing counted) when the client already reached the limit; the
 *                  session goes on without TLS
 *   auth           450 4.7.1 Error: too many AUTH commands from ADDR */
typedef void (*SmtpdAnvilDone)(Session *s, bool allowed, void *userdata);
/* Parses smtpd_client_event_limit_exceptions into l (the limits are already set). */
int smtpd_anvil_settings(Conf *c, const char *listener, SmtpdAnvilLimits *l);
void smtpd_anvil_settings_done(SmtpdAnvilLimits *l);
int smtpd_anvil_new(Server *srv, const char *path, SmtpdAnvil **ret);
SmtpdAnvil *smtpd_anvil_free(SmtpdAnvil *a);
void smtpd_anvil_set_path(SmtpdAnvil *a, const char *path);
bool smtpd_anvil_check(Session *s, SmtpdAnvilEvent event, SmtpdAnvilDone done, void *userdata,
                       void (*free_userdata)(void *));
/* Session end: no answer awaited. */
void smtpd_anvil_disconnect(Session *s);

/* smtpd-data.c */
/* The data budget: $POSTERN_SMTPD_DATA_BUDGET (tests only), else min(1 GiB, half of the
 * cgroup's memory.max), else 1 GiB. */
uint64_t data_budget_default(const char **ret_source);
int data_begin(Session *s);
/* Consumes DATA bytes from s->in; returns when more input is needed or the message ended. */
void data_process(Session *s);
void data_state_free(DataState *d);
/* The content processing DATA and BDAT share: one line without its line end (or, partial, a
 * piece of an overlong one; the next call continues it), already un-dot-stuffed. */
void data_content_line(Session *s, const char *p, size_t n, bool partial);
/* The end of the message: answers 552/452 or hands the message to the committer. */
void data_finish(Session *s);

/* smtpd-bdat.c */
/* BDAT count [LAST]: validates, then reads the chunk (PHASE_BDAT) and answers once it is read. */
bool bdat_command(Session *s, char *arg);
/* Consumes chunk bytes from s->in; returns when more input is needed or the chunk ended. */
void bdat_process(Session *s);

/* Appends content bytes within the data budget (used by the content checks). */
void data_content_add(Session *s, const void *p, size_t n);

/* smtpd-cleanup.c: the content checks, called from the content path of smtpd-data.c.
 * smtpd_cleanup_settings() opens header_checks and body_checks. */
int smtpd_cleanup_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_cleanup_settings_done(SmtpdSettings *s);
/* A logical header starts at the current end of the content. */
void cleanup_header_begin(Session *s);
/* The header that began last is complete: hop count, header_checks, message_drop_headers. */
void cleanup_header_end(Session *s);
/* One complete body line: true when the caller stores it, false when it was stored (or
 * dropped) by body_checks. */
bool cleanup_body_line(Session *s, const char *p, size_t n);
/* milter_header_checks on one header a milter added or changed: its message-wide action goes to
 * s->tx.actions. 0, or a negative errno when the message must not be accepted (lookup error). */
int cleanup_milter_header(Session *s, const char *name, const char *value);
/* Appends undisclosed_recipients_header when no To:/Cc:/Bcc: was seen. */
int cleanup_missing_to(Session *s, StrBuf *add);
/* At end of data: smtpd_hook_cleanup (above) answers the refusal of header/body checks or the
 * hop count. */

/* smtpd-rewrite.c: Postfix's cleanup address rewriting (canonical form, sender_/recipient_/
 * canonical_maps, masquerading); the pure parts are common/mail/addr-canonical.c and
 * header-address.c. */
enum { REWRITE_CLIENTS_INET = 1 << 0, REWRITE_CLIENTS_MYNETWORKS = 1 << 1, REWRITE_CLIENTS_SASL = 1 << 2,
       REWRITE_CLIENTS_TLS_CERTS = 1 << 3, REWRITE_CLIENTS_TLS_ALL_CERTS = 1 << 4 };
enum { REWRITE_HEADERS_NONE, REWRITE_HEADERS_LOCAL, REWRITE_HEADERS_REMOTE };
/* Classes, masquerading, local_header_rewrite_clients, inet_interfaces (the maps and plain
 * values are rows of smtpd-settings.c); logs its own errors. */
int smtpd_rewrite_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_rewrite_settings_done(SmtpdSettings *s);
/* The canonical form of addr in the local context ($myorigin, $mydomain, swap_bangpath, ...);
 * MAIL and RCPT use it for bare local parts. Returns as addr_canonical_form(). */
int smtpd_rewrite_canonical(Session *s, const char *addr, char **ret);
/* addr_rewrite() of one envelope address (ADDR_CLASS_ENVELOPE_SENDER or _RECIPIENT) in the local
 * context, as smtpd_rewrite_envelope() does it, without logging (for `posternctl route`). */
int smtpd_rewrite_address(SmtpdSettings *set, AddrClass cls, const char *addr, char **ret, char **ret_warning);
/* REWRITE_HEADERS_* for the session's client (local submissions are local), or <0 when a
 * check_address_map lookup failed (logged). */
int smtpd_rewrite_header_mode(Session *s);
/* The logical header h (n bytes, no final newline): 1 when it is an address header whose
 * addresses changed, with the whole new header in out; 0 when unchanged (also for a value
 * that does not parse); <0 on a table error (logged). */
int smtpd_rewrite_header(Session *s, const char *h, size_t n, StrBuf *out);
/* The envelope of a job made from s's message, as it becomes queue records: the sender and every
 * recipient rewritten, recipients that became equal merged. Returns 0, or <0 when a table failed
 * (logged; answer 451 4.3.0). Virtual alias expansion comes right after it. */
int smtpd_rewrite_envelope(Session *s, CommitJob *j);

/* smtpd-commit.c */
/* Applies s->tx.actions to the job built from s's message: hold, filter, redirect (replaces all
 * recipients), bcc (adds recipients, NOTIFY=NEVER), prepend (after our Received:). Returns 1
 * when the message is to be discarded (answered 250, not queued), 0, or -ENOMEM. */
int commit_apply_actions(Session *s, CommitJob *j);
struct CommitJob {
        CommitJob *next;
        Server *server;
        size_t charged;          /* data budget bytes held by content, released when freed */
        Session *session;        /* NULL once the client went away */
        char queue_id[QUEUE_ID_MAX];
        void *message;           /* QueueMessage */
        void *rcpts;             /* QueueRecipient[] */
        size_t n_rcpts;
        char *content;
        size_t content_len;
        int result;
        SmtpCmd cmd;             /* CMD_DATA or CMD_BDAT: counted ok in the fingerprint when queued */
};
int committer_new(Server *srv, const char *queue_dir, const char *wakeup_path, Committer **ret);
Committer *committer_free(Committer *c);
void committer_set_wakeup_path(Committer *c, const char *path);
/* Shutdown: lets the writer thread finish every job it has, then answers their sessions
 * (replies are only queued in their output buffers) and stops the thread. */
void committer_drain(Committer *c);
/* Hands a job to the writer thread (takes ownership). */
void committer_submit(Committer *c, CommitJob *job);
void commit_job_free(CommitJob *j);

/* smtpd-filter.c: content_filter and receive_override_options. smtpd_filter_settings() checks
 * and parses them (before the content checks and rewriting load, which read the flags); a bad
 * value is an error naming it. smtpd_receive_override_parse() is the pure parser: *ret_bad is
 * the value it does not know. */
int smtpd_filter_settings(Conf *c, const char *listener, SmtpdSettings *s);
int smtpd_receive_override_parse(char *const *values, SmtpdSettings *s, const char **ret_bad);
/* Whether a content_filter value is "transport:destination", "transport:" or "transport"; *ret_why
 * says what is wrong otherwise. */
bool smtpd_content_filter_valid(const char *value, const char **ret_why);
/* smtpd_proxy_filter as an endpoint: "host:port"/"[host]:port"/"inet:host:port" become
 * "inet:host:port", "unix:/path" stays; NULL with *ret_why when malformed (NULL alone: ENOMEM). */
char *smtpd_proxy_service(const char *value, const char **ret_why);

/* smtpd-proxy-filter.c: the before-queue proxy filter. A run sends steps to the transaction's filter
 * connection (opened, greeted and EHLO'd first when there is none) and makes the session wait;
 * done(s, reply, ok) runs once, with the filter's reply to the last step (or to the first that
 * was refused, ok false), or with our 451 when the filter failed; it may run before
 * smtpd_proxy_run() returns (no wait then). The steps' recipients are taken over. */
typedef enum SmtpdProxyStepKind {
        PROXY_STEP_GREETING, PROXY_STEP_EHLO, PROXY_STEP_MAIL, PROXY_STEP_RCPT, PROXY_STEP_DATA, PROXY_STEP_MESSAGE,
} SmtpdProxyStepKind;
typedef struct SmtpdProxyStep {
        SmtpdProxyStepKind kind;
        SmtpdRecipient rcpt;     /* PROXY_STEP_RCPT */
} SmtpdProxyStep;
typedef void (*SmtpdProxyDone)(Session *s, const char *reply, bool ok);
void smtpd_proxy_run(Session *s, SmtpdProxyStep *steps, size_t n, SmtpdProxyDone done);
SmtpdProxy *smtpd_proxy_free(SmtpdProxy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(SmtpdProxy *, smtpd_proxy_free);
/* Whether s's transactions go through smtpd_proxy_filter (SMTP listeners; not the submit socket). */
bool smtpd_proxy_active(const Session *s);
/* A filter reply on one line for the log (CRLFs become blanks); NULL: out of memory. */
char *smtpd_proxy_log_text(const char *reply);
/* smtpd-command.c: a reply of the before-queue filter (lines joined by CRLF) as the client's. */
void command_reply_proxied(Session *s, const char *reply);
/* smtpd-policy.c: a non-blocking connection to "unix:/path", "inet:host:port" (numeric host or
 * localhost) or a plain path; *ret_connected false until EPOLLOUT says so. */
int smtpd_service_connect(const char *service, int *ret_fd, bool *ret_connected);

/* smtpd-xforward.c: XFORWARD from smtpd_authorized_xforward_hosts. smtpd_client_view() is the
 * client a transaction shows in its logs, Received: header and queue record: the forwarded one
 * after XFORWARD (id_text NULL then: format "name[addr]"), else the real one. */
typedef struct SmtpdClientView {
        const char *name, *addr, *helo, *proto, *id_text;
        bool ipv6;
} SmtpdClientView;
bool smtpd_xforward_offered(Session *s);
bool smtpd_xforward_command(Session *s, char *arg);
SmtpdClientView smtpd_client_view(const Session *s);
/* smtpd-metrics.c: one call per event counted for the metrics endpoint. smtpd_metrics_queued()
 * writes into q's open transaction (the group commit's: one call per batch), the others are
 * kept in memory. */
void smtpd_metrics_connect(void);
void smtpd_metrics_disconnect(void);
void smtpd_metrics_reject(const char *command, const char *reply);
void smtpd_metrics_sasl_failure(void);
void smtpd_metrics_tls(const char *protocol, const char *cipher);
void smtpd_metrics_anvil_reject(const char *limit);
/* One decision of a milter: accept (also "continue" at the end of the message), reject,
 * tempfail, discard, quarantine, failed (it could not be asked; its default_action applied). */
void smtpd_metrics_milter(const char *milter, const char *action);
struct Queue;
int smtpd_metrics_queued(struct Queue *q, uint64_t messages, uint64_t bytes);

/* smtpd-virtual.c: virtual_alias_maps (virtual(5)). smtpd_virtual_settings() reads mydestination,
 * propagate_unmatched_extensions, the interface addresses and opens the tables (a table that
 * does not open is logged, and every message then gets 451 4.3.0). */
int smtpd_virtual_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_virtual_settings_done(SmtpdSettings *s);
/* Replaces j's recipients by their virtual alias expansion (after canonical rewriting and the
 * access actions, before the commit). Returns 0, or <0 with *ret_reply the refusal for the
 * whole message (451 4.3.0 for a table failure or no memory, 451 4.6.0 for a limit or a loop,
 * already logged); j is then to be freed, not queued. */
int smtpd_virtual_expand(SmtpdSettings *s, CommitJob *j, const char **ret_reply);
/* The expansion as smtpd_virtual_expand() runs it (tables, limits, local domains), for
 * `posternctl route`; maps are NULL when virtual_alias.maps_error says they did not open. */
VirtualAlias smtpd_virtual_alias(SmtpdSettings *s);

/* smtpd-milter.c: the milter client. Every stage runs the session's milters in order; done(s,
 * arg, reply) is called exactly once — at once when no milter takes part, else later from the
 * event loop after the session's wait ended (session_resume(SESSION_RESUME_ONLY); the session
 * then goes on with its input unless done() waits again). reply is NULL to go on, else the
 * complete refusal to send (already logged as milter-reject); arg is the stage's argument
 * (HELO name, recipient, command line). Discard and quarantine land in s->tx.actions (logged as
 * milter-discard / milter-hold), edits in the session's milter state for smtpd_milter_apply(). */
typedef enum SmtpdMilterStage {
        MILTER_STAGE_CONNECT, MILTER_STAGE_HELO, MILTER_STAGE_MAIL, MILTER_STAGE_RCPT,
        MILTER_STAGE_DATA, MILTER_STAGE_UNKNOWN, MILTER_STAGE_EOM,
} SmtpdMilterStage;
typedef void (*SmtpdMilterDone)(Session *s, const char *arg, const char *reply);
/* Parses smtpd_milters, non_smtpd_milters, the macro lists and smtpd_milter_maps; logs its errors. */
int smtpd_milter_settings(Conf *c, const char *listener, SmtpdSettings *s);
void smtpd_milter_settings_done(SmtpdSettings *s);
void smtpd_milter_run(Session *s, SmtpdMilterStage stage, const char *arg, SmtpdMilterDone done);
/* Sends a refusal done() received (a milter's reply may have several lines). */
void smtpd_milter_reply(Session *s, const char *reply);
/* Whether the session talks to milters at all (after the connect stage chose them). */
bool smtpd_milter_active(Session *s);
/* RSET, a new MAIL, the end of a refused message: the milters forget the transaction (ABORT). */
void smtpd_milter_abort(Session *s);
/* Session end: QUIT to every milter, connections closed. */
void smtpd_milter_session_free(Session *s);
/* smtpd-milter-edit.c: applies the collected edits (and chgfrom, recipients, body) to the job
 * of s's message; 0 or -ENOMEM. Edits are forgotten with the transaction. */
int smtpd_milter_apply(Session *s, CommitJob *j);
/* milter_header_checks on the headers the milters added or changed (cleanup_milter_header()),
 * before the job is made: 0, or a negative errno (the message is refused with a 451). */
int smtpd_milter_header_checks(Session *s);
/* The edits the session's milters sent for the current message (smtpd-milter.c), or NULL. */
MilterEdits *smtpd_milter_edits(Session *s);
