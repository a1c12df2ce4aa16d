/* tls.h — a small GnuTLS wrapper shared by Postern's TLS servers (postern-smtpd) and its SMTP
 * client (postern-smtp; the client side is in tls-client.c).
 *
 * A TlsServer holds what every server session shares: the certificate credentials (a
 * cert/key pair and/or several "chain files", each holding a private key followed by its
 * certificate chain, e.g. one RSA and one ECDSA — GnuTLS picks by the client's signature
 * algorithms), the priority string compiled from Postfix-style protocol and cipher settings, a
 * session-ticket key generated at creation and kept in memory only (a new TlsServer, e.g. after
 * SIGHUP, means a new key), and optional SNI credentials from a lookup table whose values list
 * chain files. A TlsConn is one non-blocking server session on a socket: drive the handshake
 * with tls_conn_handshake() until it returns 0, then read and write records; -EAGAIN means
 * "wait for the direction tls_conn_want_write() tells". The info functions give the strings
 * Postern logs and writes into Received: ("TLSv1.3", the IANA cipher suite name, bits).
 *
 * Library code: nothing here logs; errors come back as negative errno plus a reason text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/macro.h"
#include "conf/conf.h"

typedef struct TlsServer TlsServer;
typedef struct TlsClient TlsClient;
typedef struct TlsConn TlsConn;

/* Protocol versions as bits (SSLv2 and SSLv3 are parsed so they can be excluded, never enabled). */
enum {
        TLS_PROTO_SSLv2 = 1 << 0,
        TLS_PROTO_SSLv3 = 1 << 1,
        TLS_PROTO_TLSv1 = 1 << 2,
        TLS_PROTO_TLSv1_1 = 1 << 3,
        TLS_PROTO_TLSv1_2 = 1 << 4,
        TLS_PROTO_TLSv1_3 = 1 << 5,
        TLS_PROTO_ALL = (1 << 6) - 1,
};

/* Cipher grades (Postfix's smtpd_tls_ciphers values that Postern supports). */
typedef enum TlsGrade {
        TLS_GRADE_MEDIUM,   /* GnuTLS NORMAL: 128-bit and stronger AEAD/CBC suites */
        TLS_GRADE_HIGH,     /* only 256-bit ciphers (AES-256, ChaCha20) */
} TlsGrade;

typedef struct TlsServerConfig {
        const char *cert_file;       /* PEM certificate chain; with key_file ("" or NULL: none) */
        const char *key_file;        /* PEM private key (NULL or "": cert_file) */
        char **chain_files;          /* NULL-terminated; each: key + certificate chain in PEM */
        const char *protocols;       /* Postfix syntax: ">=TLSv1.2", "!SSLv3, !TLSv1", "TLSv1.3" */
        TlsGrade grade;
        const char *sni_maps;        /* "type:name ..." tables: server name -> chain file list */
        bool server_precedence;      /* tls_preempt_cipherlist: our cipher order, not the client's */
        unsigned options;            /* TLS_OPT_* from tls_ssl_options */
        const char *cipher_removals; /* from *_exclude_ciphers (tls_exclude_ciphers_conf()), or NULL */
        const char *dh_param_file;   /* PEM "DH PARAMETERS" for the DHE suites (smtpd_tls_dh1024_param_file);
                                      * NULL or "": the RFC 7919 groups, also when the file does not load
                                      * (as Postfix; *warning then says why) */
        char **warning;              /* where tls_server_new() puts a problem that does not stop TLS */
        const char *ca_file;         /* trust anchors for client certificates (smtpd_tls_CAfile) */
        const char *ca_path;         /* a directory of them (smtpd_tls_CApath) */
        bool ask_ccert;              /* request a client certificate (smtpd_tls_ask_ccert) */
} TlsServerConfig;

/* tls_ssl_options (Postfix's names, case-insensitive). GnuTLS never compresses, and Postern
 * always refuses renegotiation and keeps TLS 1.3's middlebox compatibility: NO_COMPRESSION,
 * NO_RENEGOTIATION and ENABLE_MIDDLEBOX_COMPAT are accepted as what it does anyway. NO_TICKET
 * turns session tickets off (the server issues none, the client asks for none). */
enum { TLS_OPT_NO_TICKET = 1 << 0 };
/* Parses the words of tls_ssl_options into TLS_OPT_* bits; a word that is not one of the above
 * is left out and returned in *ret_unsupported (NULL-terminated, caller frees; may stay NULL).
 * Only -ENOMEM fails. */
int tls_ssl_options_parse(char *const *words, unsigned *ret, char ***ret_unsupported);
/* tls_ssl_options of c (listener: its override, or NULL) as TLS_OPT_* bits; each word it does
 * not know is logged as not supported. who names the daemon's part in that line. */
unsigned tls_ssl_options_conf(Conf *c, const char *listener, const char *who);

/* Parses Postfix protocol syntax into TLS_PROTO_* bits. Unknown names: -EINVAL with reason. */
int tls_protocols_parse(const char *text, unsigned *ret, char **ret_reason);
/* The GnuTLS priority string for a protocol set and grade, with removals (":-PART..." from
 * tls_exclude_ciphers_parse(), or NULL) at its end (caller frees). */
int tls_priority_string(unsigned protocols, TlsGrade grade, bool server_precedence, const char *removals, char **ret);

/* *_exclude_ciphers (tls-ciphers.c): OpenSSL cipher names as GnuTLS priority removals
 * (":-ARCFOUR-128:-MD5", "" for none; caller frees). A name GnuTLS cannot express (one suite, a
 * combination, an unknown word) is left out and returned in *ret_unsupported. Only -ENOMEM fails. */
int tls_exclude_ciphers_parse(char *const *words, char **ret_removals, char ***ret_unsupported);
/* The removals for the lists of the NULL-terminated params (e.g. smtpd_tls_exclude_ciphers and,
 * for mandatory TLS, smtpd_tls_mandatory_exclude_ciphers), each name it cannot express logged as
 * not supported; NULL only when out of memory. */
char *tls_exclude_ciphers_conf(Conf *c, const char *listener, const char *const *params, const char *who);
/* Logs each of tls_high/medium/low/export/null_cipherlist that is set as not supported. */
void tls_cipherlists_conf(Conf *c, const char *listener, const char *who);

/* Loads credentials and builds the shared server state; *ret_reason says what failed. */
int tls_server_new(const TlsServerConfig *cfg, TlsServer **ret, char **ret_reason);
TlsServer *tls_server_ref(TlsServer *s);
TlsServer *tls_server_unref(TlsServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsServer *, tls_server_unref);

/* Starts a server session on a connected non-blocking socket (the fd stays the caller's). */
int tls_conn_new_server(TlsServer *srv, int fd, TlsConn **ret);
/* Ends the session object without a close_notify (the caller closes the fd). Accepts NULL. */
TlsConn *tls_conn_free(TlsConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsConn *, tls_conn_free);

/* One handshake step: 0 done, -EAGAIN wait (see tls_conn_want_write), other <0 failed. */
int tls_conn_handshake(TlsConn *c);
/* Whether the last -EAGAIN waits for writability (else readability). */
bool tls_conn_want_write(TlsConn *c);
/* Decrypted bytes (>0), 0 at the peer's close_notify or EOF, -EAGAIN, or another -errno. */
ssize_t tls_conn_read(TlsConn *c, void *buf, size_t n);
/* Bytes taken from buf (>0) or -EAGAIN/-errno. After -EAGAIN call again with the same bytes
 * at the front of buf (more may follow them): the record is already encrypted and pending. */
ssize_t tls_conn_write(TlsConn *c, const void *buf, size_t n);
/* Decrypted bytes GnuTLS holds that the socket's readiness will not announce. */
size_t tls_conn_pending(TlsConn *c);
/* Sends close_notify if the socket takes it now; never waits. */
void tls_conn_bye(TlsConn *c);
/* The text of the last error a function above returned (GnuTLS's words). */
const char *tls_conn_error(TlsConn *c);

/* "TLSv1.3", "TLSv1.2", ... */
const char *tls_conn_protocol(TlsConn *c);
/* The cipher suite, IANA name ("TLS_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"). */
const char *tls_conn_cipher(TlsConn *c);
/* Secret bits of the cipher (as both numbers of Postfix's "(256/256 bits)"). */
int tls_conn_cipher_bits(TlsConn *c);
/* Whether the handshake resumed an earlier session (a ticket) instead of a full one. */
bool tls_conn_resumed(TlsConn *c);
/* The server name the client asked for (SNI), or NULL. */
const char *tls_conn_server_name(TlsConn *c);
/* The channel binding of the established session for SCRAM -PLUS: TLS 1.3 "tls-exporter"
 * (RFC 9266), TLS 1.2 and older "tls-unique" (RFC 5929). *ret_type is static; *ret_data (caller
 * frees) holds *ret_len bytes. -EOPNOTSUPP when GnuTLS has none for the session. */
int tls_conn_channel_binding(TlsConn *c, const char **ret_type, unsigned char **ret_data, size_t *ret_len);

/* The certificate the peer presented (tls-peer-cert.c): a server asks for one with ask_ccert. */
#define TLS_FINGERPRINT_MAX 192      /* a SHA-512 as "AB:CD:...", and its NUL */
typedef struct TlsPeerCert {
        bool present;                /* the peer sent a certificate */
        bool trusted;                /* its chain verifies against the trust anchors */
        char subject[256];           /* subject CN ("" when none); '"' and controls become '?' */
        char issuer[256];            /* issuer CN */
        char fingerprint[TLS_FINGERPRINT_MAX];       /* digest of the DER certificate */
        char pkey_fingerprint[TLS_FINGERPRINT_MAX];  /* digest of its SubjectPublicKeyInfo */
} TlsPeerCert;
/* The digest named by *_tls_fingerprint_digest (md5, sha1, sha224, sha256, sha384, sha512), as
 * the id tls_conn_peer_cert() takes; -EINVAL for another name. */
int tls_fingerprint_digest(const char *name);
/* After the handshake: fills *ret (all zero when the peer sent no certificate). 0, or a negative
 * errno when the certificate cannot be parsed or hashed (*ret->present is then true). */
int tls_conn_peer_cert(TlsConn *c, int digest, TlsPeerCert *ret);

/* --- the client side ---
 *
 * A TlsClient holds what every client session shares: the trust anchors (a CA file, or the
 * system trust store when none is named), the priority string and a small bounded cache of
 * session data for resumption, keyed by whatever the caller names a peer by (e.g.
 * "host[addr]:port SNI"). A client TlsConn is driven exactly like a server one; after the
 * handshake tls_conn_peer_trust() checks the certificate chain and names. */

typedef struct TlsClientConfig {
        const char *cert_file;       /* our client certificate (chain), PEM; NULL or "": none */
        const char *key_file;        /* its key (NULL or "": cert_file) */
        char **chain_files;          /* NULL-terminated; each: key + certificate chain in PEM */
        const char *ca_file;         /* PEM trust anchors; with ca_path NULL or "": the system trust store */
        const char *ca_path;         /* a directory of PEM trust anchors, in addition to ca_file */
        const char *protocols;       /* Postfix syntax, as for the server */
        TlsGrade grade;
        unsigned options;            /* TLS_OPT_* from tls_ssl_options */
        const char *cipher_removals; /* from *_exclude_ciphers (tls_exclude_ciphers_conf()), or NULL */
        bool append_default_ca;      /* tls_append_default_CA: the system store too, with ca_file/ca_path */
        char **ta_files;             /* NULL-terminated PEM files of trust-anchor certificates and
                                      * public keys (smtp_tls_trust_anchor_file): when not empty, the
                                      * only anchors (ca_file, ca_path and the system store are not
                                      * used); see tls-anchors.c for what an anchor proves */
} TlsClientConfig;

/* What the peer's certificate proved, in Postfix's words. */
typedef enum TlsTrust {
        TLS_TRUST_UNTRUSTED,         /* "Untrusted": the chain does not verify */
        TLS_TRUST_TRUSTED,           /* "Trusted": the chain verifies, the name was not matched */
        TLS_TRUST_VERIFIED,          /* "Verified": the chain verifies and a name matches */
} TlsTrust;

int tls_client_new(const TlsClientConfig *cfg, TlsClient **ret, char **ret_reason);
/* A client whose chains are checked against the trust-anchor files ta_files (NULL-terminated,
 * not empty) instead of base's anchors, with base's credentials, protocols and ciphers (base is
 * kept referenced) and its own resumption cache. A file without anchors: -EINVAL, *ret_reason. */
int tls_client_with_anchors(TlsClient *base, char *const *ta_files, TlsClient **ret, char **ret_reason);
TlsClient *tls_client_ref(TlsClient *c);
TlsClient *tls_client_unref(TlsClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsClient *, tls_client_unref);

/* Starts a client session on a connected non-blocking socket (the fd stays the caller's).
 * servername: SNI to send (NULL or "": none). cache_key: resume a session stored under this key
 * and store this one under it when it is freed (NULL: no resumption). */
int tls_conn_new_client(TlsClient *cl, int fd, const char *servername, const char *cache_key, TlsConn **ret);
/* After the handshake: checks the peer's chain against the trust anchors and, when match is a
 * non-empty NULL-terminated list, its DNS names against the list. A pattern matches a
 * certificate name equal to it (a "*." wildcard in the certificate covers one label); a pattern
 * starting with "." matches any name below it ("dot-nexthop"). *ret_reason (static or owned by
 * c) says why the result is less than asked for. */
TlsTrust tls_conn_peer_trust(TlsConn *c, char *const *match, const char **ret_reason);
/* Whether certificate name cert_name (possibly "*.x.y") matches pattern (see above). */
bool tls_name_matches(const char *cert_name, const char *pattern);
/* The subject CN of the peer's certificate (for logs), or NULL. */
const char *tls_conn_peer_cn(TlsConn *c);
/* Text of a TlsTrust: "Untrusted", "Trusted", "Verified". */
const char *tls_trust_name(TlsTrust t);

/* --- DANE (tls-dane.c) --- */

/* TLSA certificate usages (RFC 6698 2.1.1); SMTP uses only DANE-TA and DANE-EE (RFC 7672 3.1.3). */
enum { TLS_DANE_PKIX_TA = 0, TLS_DANE_PKIX_EE = 1, TLS_DANE_TA = 2, TLS_DANE_EE = 3 };

typedef struct TlsBlob {
        const unsigned char *data;
        size_t len;
} TlsBlob;

/* One TLSA record: usage, selector (0 Cert, 1 SPKI), matching type (0 Full, 1 SHA2-256,
 * 2 SHA2-512) and the association data. */
typedef struct TlsDaneRecord {
        uint8_t usage, selector, mtype;
        const uint8_t *data;
        size_t len;
} TlsDaneRecord;

/* Whether SMTP can use the record: DANE-TA or DANE-EE with a known selector and matching type. */
bool tls_dane_usable(const TlsDaneRecord *r);
/* Whether the DER certificate matches the record: 1 yes, 0 no (or an unusable record), <0 when
 * the certificate cannot be parsed. */
int tls_dane_match(const TlsBlob *der, const TlsDaneRecord *rec);
/* Checks a DER chain as a server sent it (leaf first) against a TLSA set: VERIFIED when a
 * DANE-EE record matches the leaf, or a DANE-TA record matches a certificate of the chain that
 * the chain verifies up to and the leaf has a name that matches one of names (patterns as for
 * tls_conn_peer_trust); UNTRUSTED otherwise, with the reason in reason (it begins "the certificate
 * names do not match" when a DANE-TA record matched and only the name check failed: TLSRPT's
 * certificate-host-mismatch). */
TlsTrust tls_dane_verify_chain(const TlsBlob *chain, size_t n_chain, const TlsDaneRecord *recs, size_t n_recs,
                               char *const *names, char *reason, size_t size);
/* The same for the peer of a client session after its handshake (reason as tls_conn_peer_trust). */
TlsTrust tls_conn_dane_trust(TlsConn *c, const TlsDaneRecord *recs, size_t n_recs, char *const *names,
                             const char **ret_reason);
