/* smtp.h — postern-smtp's internal interface (Postfix's smtp(8) and lmtp(8) in one binary).
 *
 *   smtp.c          main(): the "smtp" and "lmtp" IPC sockets, delivery requests,
 *                   per-recipient results and the to=<...> log lines
 *   smtp-settings.c the smtp_* and lmtp_* settings, and one variant per master.cf smtp/lmtp
 *                   transport with its -o overrides (also run by `posternctl check`)
 *   smtp-nexthop.c  a next hop ("[192.0.2.1]:25", "unix:/path", ...) to an ordered address list:
 *                   the plug where the DNS resolver (MX lookups) goes
 *   smtp-session*.c one outbound SMTP/LMTP connection (smtp-session.h): connect and the cache
 *                   of idle connections for reuse (smtp-session.c), I/O and timers (-io.c),
 *                   greeting and EHLO/LHLO (-hello.c), STARTTLS, certificate/DANE/MTA-STS checks,
 *                   TLSRPT results and REQUIRETLS (-tls.c), SMTP AUTH (-auth.c), and
 *                   MAIL/RCPT/DATA with PIPELINING, end of data, RSET (-txn.c)
 *   smtp-reply.c    parsing server replies and turning them into DSN status and diagnostics
 *   smtp-tls.c      the smtp_tls_* (lmtp_tls_*) settings, per-destination TLS policy (*_tls_policy_maps),
 *                   certificate name matching lists, SNI, and the "TLS connection" log lines
 *   smtp-remember.c successes already reported, so that a recipient qmgr asks for again
 *                   (its record of the result died with it) is not sent twice
 *   smtp-dane.c     DANE (levels dane, dane-only): TLSA lookups per MX host, the TLS level of
 *                   each address, and the certificate check against the TLSA records
 *   smtp-sasl.c     SMTP AUTH as a client: the smtp_sasl_* (lmtp_sasl_*) settings, which
 *                   username:password (smtp_sasl_password_maps) and which mechanism
 *   smtp-sts*.c     MTA-STS (RFC 8461): policy discovery, fetch, cache and enforcement
 *                   (smtp-sts.h)
 *
 * A delivery (one qmgr request) runs on one session at a time; many sessions share the event
 * loop, nothing blocks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"
#include "basic/strbuf.h"
#include "conf/conf.h"
#include "dns/dns.h"
#include "ipc/ipc.h"
#include "queue/queue.h"
#include "tls/tls.h"

/* A reply longer than this (all lines) is cut; the session is dropped beyond SMTP_LINE_MAX. */
#define SMTP_REPLY_TEXT_MAX 4096
#define SMTP_LINE_MAX 8192
#define SMTP_MAX_RCPT 10000
/* Deliveries one qmgr connection may have outstanding (qmgr's smtp_process_limit is the real
 * bound; this only caps what a misbehaving peer can make us hold). */
#define SMTP_MAX_OUTSTANDING 65536

/* The settings of one side: smtp(8)'s from the smtp_* parameters, lmtp(8)'s from their lmtp_*
 * twins (the same names with "lmtp_", except lmtp_lhlo_name / lmtp_lhlo_timeout). */
typedef struct SmtpSettings {
        const char *prefix;           /* "smtp" or "lmtp" (static) */
        char *transport;              /* a master.cf transport's variant: its name; NULL: the side */
        char *unavailable;            /* a variant whose -o is invalid: the 4.3.5 text its mail gets */
        bool recording;               /* while a variant loads: note the parameters read in read */
        bool record_error;
        char **read;
        char *queue_directory;
        char *myhostname;
        char *helo_name;              /* smtp_helo_name / lmtp_lhlo_name */
        char *bind_address;           /* smtp_bind_address, "" = any */
        usec_t connect_timeout, helo_timeout, mail_timeout, rcpt_timeout, data_init_timeout,
               data_xfer_timeout, data_done_timeout, rset_timeout, quit_timeout;
        usec_t cache_time_limit;      /* smtp_connection_cache_time_limit: idle connections */
        unsigned tcp_port;            /* smtp_tcp_port: MX/A destinations, "[host]"; lmtp_tcp_port:
                                       * "inet:host" */
        char *inet_interfaces;        /* our own addresses (loop detection) */
        char *lmtp_socket_directory;  /* postern_lmtp_socket_directory: base of "unix:relative" */
        usec_t reuse_time_limit;      /* smtp_connection_reuse_time_limit: age of a connection */
        unsigned reuse_count_limit;   /* smtp_connection_reuse_count_limit, 0 = no limit */
        unsigned mx_session_limit;    /* smtp_mx_session_limit, 0 = no limit */
        bool verify_target_data;      /* smtp_address_verify_target = data (else rcpt) */
        bool send_xforward;           /* smtp_send_xforward_command */
        bool requiretls;              /* requiretls_enable (global; -o on a transport): enforce RFC 8689 */
        bool dns_enabled;             /* smtp_dns_support_level != disabled */
        unsigned mx_address_limit;    /* smtp_mx_address_limit, 0 = none */
        bool dnssec;                  /* smtp_dns_support_level = dnssec (smtp-dane.c) */
        int dane_insecure_mx;         /* smtp_tls_dane_insecure_mx_policy as an SmtpTlsLevel */
        struct SmtpTls *tls;          /* smtp_tls_* settings (smtp-tls.c) */
        struct SmtpSasl *sasl;        /* smtp_sasl_* settings (smtp-sasl.c); NULL: no AUTH */
        bool sts_enable;              /* smtp_mta_sts_enable (smtp-sts.c; never on the LMTP side) */
        bool sts_enforce_mx_patterns; /* smtp_tls_enforce_sts_mx_patterns */
        char *sts_ca_file;            /* smtp_mta_sts_CAfile: "" the system trust store */
        usec_t sts_fetch_timeout;     /* smtp_mta_sts_fetch_timeout */
        size_t sts_max_size;          /* smtp_mta_sts_max_policy_size */
        bool tlsrpt_enable;           /* smtp_tlsrpt_enable (smtp-tlsrpt.c; SMTP side only) */
        char **notes;                 /* warnings of the load, for smtp_config_load()'s caller */
} SmtpSettings;

/* One address to try for a next hop. */
typedef struct SmtpTarget {
        struct sockaddr_storage sa;
        socklen_t salen;
        char host[256];               /* name for logs: the literal itself, or the socket path */
        char addr[128];               /* numeric address or socket path */
        unsigned port;                /* 0 for AF_UNIX */
        bool no_tls;                  /* TLS failed here at level may: plaintext (smtp-session-tls.c) */
        bool mx_secure;               /* the MX lookup was DNSSEC-validated (or none was made) */
        bool addr_secure;             /* the address lookup of host was DNSSEC-validated */
        int dane_level;               /* at level dane/dane-only: this address's SmtpTlsLevel */
} SmtpTarget;

/* smtp-nexthop.c */
/* Called once with the ordered targets (caller frees the array) or with a failure described by
 * dsn ("4.4.3", "5.1.2") and diag. */
typedef void (*SmtpResolveHandler)(const char *dsn, const char *diag, SmtpTarget *targets,
                                   size_t n, void *userdata);
/* Turns a next hop into addresses. Asynchronous interface (today's numeric-only version answers
 * before it returns); MX lookups plug in here. Returns <0 only when handler was not called. */
int smtp_resolve(sd_event *e, const char *nexthop, const SmtpSettings *s, SmtpResolveHandler handler,
                 void *userdata);
/* Reads <prefix>_dns_support_level (disable_dns_lookups) and <prefix>_mx_address_limit into s;
 * <0 (logged) on a bad value. */
int smtp_resolve_load(Conf *c, SmtpSettings *s);
/* A query on the process's DNS resolver (dns_query()). */
int smtp_dns_query(const char *name, int type, DnsCallback cb, void *userdata, DnsQuery **ret);
/* Creates / frees the process's DNS resolver. */
int smtp_resolve_init(sd_event *e);
void smtp_resolve_done(void);
/* $myhostname and $inet_interfaces (to find ourselves among MX hosts) and
 * postern_lmtp_socket_directory, from the plain sides. */
void smtp_resolve_configure(const SmtpSettings *smtp, const SmtpSettings *lmtp);
/* "host[addr]:port" or "host[path]" for logs and diagnostics. */
void smtp_target_relay(const SmtpTarget *t, char *buf, size_t size);

/* smtp-reply.c */
typedef struct SmtpReply {
        int code;                     /* 0 until complete */
        char text[SMTP_REPLY_TEXT_MAX]; /* "250 2.0.0 Ok" with continuation lines joined by ' ' */
        size_t len;
        char first_line[512];         /* text of the first line after the code (EHLO hostname) */
        char **lines;                 /* each line's text after "250-" (for EHLO keywords) */
        size_t n_lines;
} SmtpReply;
/* Feeds one line (without CRLF). Returns 1 when the reply is complete, 0 when more lines
 * follow, -EBADMSG for a line that is not a reply line. */
int smtp_reply_feed(SmtpReply *r, const char *line, size_t len);
void smtp_reply_reset(SmtpReply *r);
/* The enhanced status for a reply: its own d.d.d (class forced to the reply's) or X.0.0. */
void smtp_reply_dsn(const SmtpReply *r, char dsn[16]);

/* The result for one recipient. */
typedef struct SmtpRcpt {
        int64_t id;
        char *address;
        char *orcpt;                  /* "rfc822;addr" or NULL */
        unsigned notify;
        bool done;
        bool accepted;                /* RCPT TO answered 2xx in the current transaction */
        bool soft;                    /* dsn/diag hold a 4xx from a server that was not the last
                                       * one to try: provisional, not done */
        bool relayed;                 /* delivered to a server that did not offer DSN */
        bool recalled;                /* the result is one reported earlier (smtp-remember.c) */
        char dsn[16];
        char *diag;
        char *relay;                  /* the server its result came from (NULL: the delivery's) */
} SmtpRcpt;

typedef struct Smtp Smtp;
typedef struct SmtpSession SmtpSession;

/* smtp-settings.c */
typedef struct SmtpConfig {
        SmtpSettings side[2];         /* [0] smtp_*, [1] lmtp_* */
        SmtpSettings *variants;       /* master.cf smtp/lmtp transports with -o overrides */
        size_t n_variants;
} SmtpConfig;
/* Loads both sides and the master.cf variants; *warnings ("not supported: -o ...") and *errors
 * (transports made unavailable) are NULL-terminated lists or NULL, for the caller to report.
 * <0 (logged) only when a plain side is invalid or memory runs out. */
int smtp_config_load(Conf *c, SmtpConfig *ret, char ***warnings, char ***errors);
void smtp_config_done(SmtpConfig *cfg);
void smtp_settings_done(SmtpSettings *s);
SmtpSettings *smtp_config_settings(SmtpConfig *cfg, bool lmtp, const char *transport);
/* A side's parameter "<prefix>_<name>" (name without the prefix) in s's transport context. */
const char *smtp_conf_name(char *buf, size_t size, SmtpSettings *s, const char *name);
const char *smtp_conf_get(Conf *c, SmtpSettings *s, const char *name);
long long smtp_conf_int(Conf *c, SmtpSettings *s, const char *name);
bool smtp_conf_bool(Conf *c, SmtpSettings *s, const char *name);
usec_t smtp_conf_usec(Conf *c, SmtpSettings *s, const char *name);
char **smtp_conf_list(Conf *c, SmtpSettings *s, const char *name);
/* A parameter without the side's prefix (myhostname, disable_dns_lookups). */
const char *smtp_conf_global(Conf *c, SmtpSettings *s, const char *name);
bool smtp_conf_global_bool(Conf *c, SmtpSettings *s, const char *name);

/* Adds note (taken over on success) to a NULL-terminated list, unless the list has it already
 * (then note is freed). */
int smtp_note_add(char ***notes, char *note);

/* smtp-sasl.c */
typedef struct SmtpSasl SmtpSasl;
/* The <prefix>_sasl_* settings (NULL in *ret when <prefix>_sasl_auth_enable = no); warnings
 * ("not supported", a world-readable password file) into *notes. <0 (logged) on a bad value. */
int smtp_sasl_load(Conf *c, SmtpSettings *s, SmtpSasl **ret, char ***notes);
SmtpSasl *smtp_sasl_free(SmtpSasl *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(SmtpSasl *, smtp_sasl_free);
bool smtp_sasl_by_sender(const SmtpSasl *a);
bool smtp_sasl_soft_bounce(const SmtpSasl *a);
/* The password table keys in lookup order (caller frees): with by_sender, sender and @domain;
 * then host; then nexthop. */
int smtp_sasl_keys(bool by_sender, const char *sender, const char *host, const char *nexthop, char ***ret);
/* The "username:password" for a sender (with *_sender_dependent_authentication) or a server;
 * 1 found, 0 none, <0 a table failure described in diag. */
int smtp_sasl_lookup_sender(SmtpSasl *a, const char *sender, char **ret_value, char *diag, size_t size);
int smtp_sasl_lookup_server(SmtpSasl *a, const char *host, const char *nexthop, char **ret_value, char *diag,
                            size_t size);
/* The mechanism to use of the server's list, or NULL with the reason in why. SCRAM-SHA-256-PLUS
 * only with channel_binding (a TLS session that has the data). */
const char *smtp_sasl_choose(const SmtpSasl *a, const char *server_mechs, bool tls, bool channel_binding, char *why,
                             size_t size);
/* Whether mech gets the session's channel binding: -PLUS binds it; SCRAM-SHA-256 says "y" with it
 * unless the server offered -PLUS (then the client just did not use it: "n"). */
bool smtp_sasl_wants_channel_binding(const char *server_mechs, const char *mech);

/* smtp-tls.c */
struct SmtpDelivery;
typedef enum SmtpTlsLevel {
        SMTP_TLS_NONE, SMTP_TLS_MAY, SMTP_TLS_ENCRYPT, SMTP_TLS_VERIFY, SMTP_TLS_SECURE,
        /* A delivery's policy dane / dane-only; a session at SMTP_TLS_DANE checks the server
         * certificate against the host's TLSA records (smtp-dane.c). */
        SMTP_TLS_DANE, SMTP_TLS_DANE_ONLY,
} SmtpTlsLevel;

/* The TLS policy of one delivery (its next hop). */
typedef struct SmtpTlsPolicy {
        SmtpTlsLevel level;
        char **match;                 /* verify/secure: strategies or names to match, else NULL */
        char *servername;             /* SNI setting: NULL/"" none, "hostname", "nexthop", a name */
        char **tafiles;               /* tafile= trust-anchor files (verify/secure), else NULL */
        bool from_table;              /* an smtp_tls_policy_maps entry (it overrides MTA-STS) */
} SmtpTlsPolicy;

typedef struct SmtpTls SmtpTls;
/* Reads the <prefix>_tls_* parameters ("smtp" or "lmtp": TLS credentials, policy tables).
 * Errors are logged. */
int smtp_tls_load(Conf *c, SmtpSettings *s, SmtpTls **ret);
SmtpTls *smtp_tls_free(SmtpTls *t);
/* The policy for a next hop: smtp_tls_policy_maps, else smtp_tls_security_level. On a failed
 * or invalid lookup returns <0 with *ret_dsn and a diagnostic in diag. */
int smtp_tls_policy(SmtpTls *t, const char *nexthop, SmtpTlsPolicy *ret, const char **ret_dsn,
                    char *diag, size_t diag_size);
void smtp_tls_policy_done(SmtpTlsPolicy *p);
const char *smtp_tls_level_name(SmtpTlsLevel l);
/* The TlsClient for a level (mandatory or opportunistic protocols/ciphers) under policy p (its
 * tafile= anchors at verify/secure; p may be NULL); NULL when TLS credentials could not be set up. */
struct TlsClient *smtp_tls_client(SmtpTls *t, const SmtpTlsPolicy *p, SmtpTlsLevel level);
bool smtp_tls_wrappermode(SmtpTls *t);
bool smtp_tls_note_starttls_offer(SmtpTls *t);
int smtp_tls_loglevel(SmtpTls *t);
usec_t smtp_tls_timeout(SmtpTls *t);
/* The names a certificate must match (NULL-terminated, caller frees) for host (the MX host),
 * next hop domain, or NULL when the level does not check names. */
char **smtp_tls_match_names(const SmtpTlsPolicy *p, const char *host, const char *nexthop);
/* The one place where the TLS level of one address of delivery d is decided: the next hop's
 * policy (d->tls), a failed handshake at level may (t->no_tls), then MTA-STS (smtp_sts_target();
 * DANE goes beside it). *ret_sts is the MTA-STS mode applied (STS_MODE_*). False when this
 * address must not be used, with the reason in why. */
bool smtp_tls_target_level(const struct SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel *ret_level,
                           int *ret_sts, char *why, size_t size);
/* The names the certificate of host must match in a session of d under MTA-STS mode sts (from
 * smtp_tls_target_level()), nexthop as TLS sees it; NULL: no name check. */
char **smtp_tls_target_match(const struct SmtpDelivery *d, int sts, const char *host, const char *nexthop);
/* The SNI to send for host / nexthop (NULL: none; IP literals never). Caller frees. */
char *smtp_tls_sni(SmtpTls *t, const SmtpTlsPolicy *p, const char *host, const char *nexthop);
/* The domain part of a next hop: "[host]:port" → "host", "domain:port" → "domain". */
void smtp_nexthop_domain(const char *nexthop, char *buf, size_t size);

/* One delivery request from qmgr. */
typedef struct SmtpDelivery {
        Smtp *smtp;
        IpcConn *conn;
        bool lmtp;
        char *transport;              /* transport= of the request (a master.cf transport), or NULL */
        char queue_id[QUEUE_ID_MAX];
        char *nexthop;
        QueueMessage msg;
        bool have_msg;
        char *content;                /* LF form */
        size_t content_len;
        bool eightbit;                /* the content has bytes >= 0x80 */
        bool downgraded;              /* content converted to 7-bit MIME (mime_downgrade) */
        bool probe;                   /* request=verify: an address probe, nothing delivered */
        usec_t arrival, active, received, conn_usec;
        SmtpRcpt *rcpts;
        size_t n_rcpts;
        SmtpTarget *targets;
        size_t n_targets, next_target;
        char relay[400];              /* of the session in use, "none" before */
        bool retried;                 /* a reused connection failed and a fresh one was tried */
        unsigned sessions;            /* transactions started (smtp_mx_session_limit counts them) */
        bool provisional;             /* 4xx results now are soft: another server follows */
        SmtpTlsPolicy tls;            /* loaded by smtp_session_start() */
        bool tls_loaded;
        struct StsPolicy *sts;        /* the next hop's MTA-STS policy (mode testing or enforce), or NULL */
        char sts_domain[256];         /* its policy domain */
        struct StsLookup *sts_lookup; /* discovery under way (smtp-sts.c) */
        struct SmtpDane *dane;        /* TLSA lookups of the delivery's hosts (smtp-dane.c) */
        struct SmtpLookup *lookup;    /* server-table answers while the first lookups wait (smtp-lookup.c) */
        char *sasl_sender;            /* "username:password" for the sender
                                       * (smtp_sender_dependent_authentication), or NULL */
        SmtpSession *session;
        struct SmtpDelivery *prev, *next;
        /* A request for recipients another delivery of the same message is still working on
         * (qmgr restarted meanwhile) waits for it as one of its followers. */
        struct SmtpDelivery *leader, *followers, *next_follower;
} SmtpDelivery;

/* smtp-dane.c */
typedef struct SmtpDane SmtpDane;
/* smtp_tls_dane_insecure_mx_policy and whether DNSSEC is on; <0 (logged) on a bad value. */
int smtp_dane_load(Conf *c, SmtpSettings *s);
/* Before connecting to t at level dane/dane-only: 1 go (t->dane_level set), 0 a TLSA lookup
 * runs (resume(d) is called from the loop when it answers), <0 this address must not be used,
 * why says why. 1 at once for other levels. */
int smtp_dane_target(SmtpDelivery *d, SmtpTarget *t, void (*resume)(SmtpDelivery *d), char *why, size_t size);
/* The TLS level for a session to t. */
SmtpTlsLevel smtp_dane_level(const SmtpDelivery *d, const SmtpTarget *t);
/* After the handshake at SMTP_TLS_DANE: whether the certificate matches t's TLSA records;
 * *ret_trust Verified (Trusted after an unvalidated MX lookup), *ret_why when not. */
bool smtp_dane_check(SmtpDelivery *d, const SmtpTarget *t, TlsConn *tls, TlsTrust *ret_trust, const char **ret_why);
SmtpDane *smtp_dane_free(SmtpDane *dane);
/* t's TLSA records in presentation form ("3 1 1 ab12...", one per line; "" when none were
 * found), for TLSRPT's policy-string; NULL when out of memory. Caller frees. */
char *smtp_dane_policy_string(const SmtpDelivery *d, const SmtpTarget *t);

/* smtp-remember.c: two generations of remembered successes. */
typedef struct SmtpMemory {
        struct StrMap *gen[2];        /* [0] the newer */
        usec_t gen0_since;            /* CLOCK_MONOTONIC */
        char *dir;                    /* queue_directory: smtp-results.0 and .1 */
        int fd;                       /* smtp-results.0 (append), or <0: memory only */
} SmtpMemory;

struct Smtp {
        sd_event *event;
        IpcServer *server[2];         /* the smtp-client and lmtp-client sockets (smtp.c) */
        SmtpConfig cfg;               /* the sides and master.cf variants (smtp_settings()) */
        Queue *queue;
        SmtpDelivery *deliveries;
        SmtpSession *idle;            /* cached connections, most recent first */
        SmtpMemory memory;            /* results already reported (smtp-remember.c) */
        size_t n_sessions;
};

/* The settings a delivery or session of that side and transport uses. */
static inline SmtpSettings *smtp_settings(Smtp *smtp, bool lmtp, const char *transport) {
        return smtp_config_settings(&smtp->cfg, lmtp, transport);
}

/* smtp-sts.c (MTA-STS; the policy formats, fetch and cache are in smtp-sts.h) */
/* Opens the policy cache ($queue_directory/mta-sts.db) and notes the event loop. */
void smtp_sts_init(sd_event *e, const char *queue_directory);
void smtp_sts_done(void);
/* Reads smtp_mta_sts_* and smtp_tls_enforce_sts_mx_patterns into s (SMTP side only). */
int smtp_sts_load(Conf *c, SmtpSettings *s);
/* Finds d's MTA-STS policy: 0 when none applies (nothing to wait for), 1 when done(d) will be
 * called from the event loop with d->sts set (or NULL). */
int smtp_sts_lookup(SmtpDelivery *d, void (*done)(SmtpDelivery *d));
/* Forgets d's lookup and policy (a fetch under way still fills the cache). */
void smtp_sts_delivery_done(SmtpDelivery *d);
/* What d's policy asks of address t: raises *level (enforce: verify; testing: may); the mode
 * (STS_MODE_*), or <0 when an enforced policy rules the address out (why says so). */
int smtp_sts_target(const SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel *level, char *why, size_t size);
/* The names a certificate of MX host must match under d's policy. */
char **smtp_sts_match_names(const SmtpDelivery *d, const char *host);
/* Logs an MTA-STS failure at MX relay ("... MX mx1.example.com[192.0.2.1]:25: reason"). */
void smtp_sts_log_failure(const SmtpDelivery *d, const char *relay, const char *reason);

/* RFC 8689 5: the message's header section says "TLS-Required: No" (and the message did not ask
 * for REQUIRETLS): recipient-side policies (MTA-STS, DANE) are not applied. (smtp-tls.c) */
bool smtp_tls_required_no(const SmtpDelivery *d);

/* smtp-tlsrpt.c (TLSRPT, RFC 8460; the store and report are common/tls/tlsrpt.h) */
struct TlsrptRecord;
void smtp_tlsrpt_init(const char *queue_directory);
void smtp_tlsrpt_done(void);
/* Counts one result in $queue_directory/tlsrpt.db (opened at the first one). For DANE's "tlsa". */
void smtp_tlsrpt_record(const struct TlsrptRecord *rec);
/* One session of d (with smtp_tlsrpt_enable, after policy discovery) under d's MTA-STS policy, or
 * "no-policy-found"; result is a TlsrptResult. */
void smtp_tlsrpt_session(const SmtpDelivery *d, const char *mx_host, const char *ip, int result);
/* One DANE result of d at address t (policy type "tlsa", with smtp_tlsrpt_enable): under d's
 * next-hop domain, the host's TLSA records as policy-string, the host as mx-host. */
void smtp_tlsrpt_dane(const SmtpDelivery *d, const SmtpTarget *t, int result);
/* d's policy fetch for domain failed (sts-policy-fetch-error, -invalid, sts-webpki-invalid). */
void smtp_tlsrpt_fetch_failed(const SmtpDelivery *d, const char *domain, int result);

/* smtp.c */
/* Records a result for recipient i unless it has one. */
void smtp_rcpt_result(SmtpDelivery *d, size_t i, const char *dsn, const char *fmt, ...) _printf_(4, 5);
/* Records a result for every recipient without one (accepted_only: only those accepted). */
void smtp_all_result(SmtpDelivery *d, bool accepted_only, const char *dsn, const char *fmt, ...) _printf_(4, 5);
/* Called by the session layer when the delivery has a result for every recipient (or must be
 * finished as it is): replies to qmgr and frees d. */
void smtp_delivery_finish(SmtpDelivery *d);

/* smtp-remember.c */
/* Remembers rc's result when it is a success (2xx); relay is the server it came from or NULL. */
/* Loads what an earlier run of postern-smtp remembered in dir and opens the file for appending. */
void smtp_memory_open(SmtpMemory *mem, const char *dir);
void smtp_remember(SmtpMemory *mem, const char *queue_id, const SmtpRcpt *rc, const char *relay);
/* Fills rc (done, recalled) with the result remembered for it; false when there is none. */
bool smtp_recall(SmtpMemory *mem, const char *queue_id, SmtpRcpt *rc);
void smtp_memory_done(SmtpMemory *mem);

/* smtp-lookup.c */
/* The lookups before d connects (the TLS policy for tls_nexthop into d->tls, the sender's SASL
 * password into d->sasl_sender), server tables answered on the lookup workers: 0 when done, 1
 * when an answer is on its way (done(d) is called when they are all there; call again then),
 * <0 with *ret_dsn and diag when a lookup failed. */
int smtp_lookup_start(SmtpDelivery *d, const char *tls_nexthop, void (*done)(SmtpDelivery *d),
                      const char **ret_dsn, char *diag, size_t size);
/* Forgets d's answers and any wait (the delivery ends). */
void smtp_lookup_delivery_done(SmtpDelivery *d);
/* Worker threads for those lookups (each with its own connection to each table it serves). */
#define SMTP_LOOKUP_THREADS 8

/* smtp-session.c (the session's inside: smtp-session.h) */
/* Starts delivery d: reuses an idle connection to its next hop or connects to the next target. */
void smtp_session_start(SmtpDelivery *d);
/* Frees every cached connection and detaches sessions (shutdown). */
void smtp_sessions_done(Smtp *s);
/* Detaches d from its session (which is closed). */
void smtp_session_abort(SmtpDelivery *d);
