/* tls-internal.h — what tls.c (server side, record I/O) and tls-client.c share: the session
 * object and the error mapping. Not for use outside common/tls. */
#pragma once

#include <stdbool.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls/tls.h"

#define SNI_NAME_MAX 256

struct TlsConn {
        gnutls_session_t session;
        TlsServer *server;                        /* server sessions */
        TlsClient *client;                        /* client sessions */
        char *cache_key;                          /* client: where to store the session data */
        bool want_write;
        bool established;                         /* client: handshake completed */
        int last_error;                           /* a GnuTLS error code, 0 if none */
        char server_name[SNI_NAME_MAX];
        char protocol[16];
        char peer_cn[256];
        char reason[512];                         /* tls_conn_peer_trust()'s explanation */
};

/* Maps a GnuTLS result to -errno, remembering it for tls_conn_error(). */
int tls_map_error(TlsConn *c, int r);
/* A client session is being freed: keep its session data for resumption, drop the ref. */
void tls_client_conn_done(TlsConn *c);
/* The compiled priority for Postfix-style protocols and a cipher grade (*ret_reason on error). */
/* server_precedence: %SERVER_PRECEDENCE (meaningless for a client). */
int tls_priority_new(const char *protocols, TlsGrade grade, bool server_precedence, const char *removals,
                     gnutls_priority_t *ret, char **ret_reason);

/* Adds the trust anchors of a PEM file and/or a directory of PEM files to cred (tls-peer-cert.c).
 * Either may be NULL or "". A file or directory with no certificate is -EINVAL with a reason. */
int tls_cred_set_trust(gnutls_certificate_credentials_t cred, const char *ca_file, const char *ca_path,
                       char **ret_reason);
/* Loads a certificate (chain) and its private key into cred (tls.c); key may equal cert (a chain
 * file holding both). Root-only files come through systemd credentials. */
int tls_cred_load_key_pair(gnutls_certificate_credentials_t cred, const char *cert, const char *key,
                           char **ret_reason);

/* The DNS names of a certificate (tls-client.c): subjectAltName dNSName entries, or the subject
 * CN when there are none (RFC 6125 fallback); the CN also into cn. */
#define TLS_PEER_NAMES_MAX 64
size_t tls_crt_names(gnutls_x509_crt_t crt, char names[][256], size_t max, char cn[256]);

/* Chain crts[0..ta] verifies with crts[ta] as the only trust anchor, whose own dates do not
 * count (tls-dane.c; RFC 7671 5.2.2). Otherwise reason says why, naming the anchor as what. */
bool tls_chain_verifies_to(gnutls_x509_crt_t *crts, size_t ta, const char *what, char *reason, size_t size);
/* GnuTLS's words for a failed verification: r <0 an error, else the status bits (tls-client.c). */
void tls_status_reason(int r, unsigned status, char *reason, size_t size);

/* The SubjectPublicKeyInfo of crt as DER (tls-anchors.c; caller frees with gnutls_free). */
int tls_crt_spki(gnutls_x509_crt_t crt, gnutls_datum_t *ret);
/* Trust-anchor files (tls-anchors.c): certificates and bare public keys. */
typedef struct TlsAnchors TlsAnchors;
/* Loads the PEM files (NULL-terminated); a file with neither a certificate nor a public key is
 * -EINVAL with a reason. */
int tls_anchors_load(char *const *files, TlsAnchors **ret, char **ret_reason);
TlsAnchors *tls_anchors_free(TlsAnchors *a);
/* Whether a DER chain as the server sent it (leaf first) is anchored (see tls-anchors.c); if not,
 * reason says why. */
bool tls_anchors_verify(const TlsAnchors *a, const gnutls_datum_t *chain, size_t n_chain, char *reason, size_t size);
