/* tls-peer-cert.c — the certificate a TLS peer presented, as Postfix's smtpd sees a client's:
 * present or not, whether its chain verifies against the trust anchors of the session's
 * credentials, the subject and issuer common names, and the fingerprints of the certificate and
 * of its public key (SubjectPublicKeyInfo) as upper-case hex pairs joined by ':' with the digest
 * that smtpd_tls_fingerprint_digest names. Also the trust-anchor loading that the server (client
 * certificates) and the client (server certificates) share. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <gnutls/abstract.h>

#include "basic/macro.h"
#include "tls/tls.h"
#include "tls/tls-internal.h"

int tls_cred_set_trust(gnutls_certificate_credentials_t cred, const char *ca_file, const char *ca_path,
                       char **ret_reason) {
        int r;
        if (!isempty(ca_file)) {
                r = gnutls_certificate_set_x509_trust_file(cred, ca_file, GNUTLS_X509_FMT_PEM);
                if (r <= 0) {
                        reason_printf(ret_reason, "%s: %s", ca_file, r < 0 ? gnutls_strerror(r) : "no certificate found");
                        return -EINVAL;
                }
        }
        if (!isempty(ca_path)) {
                r = gnutls_certificate_set_x509_trust_dir(cred, ca_path, GNUTLS_X509_FMT_PEM);
                if (r <= 0) {
                        reason_printf(ret_reason, "%s: %s", ca_path,
                                      r < 0 ? gnutls_strerror(r) : "no certificate found in the directory");
                        return -EINVAL;
                }
        }
        return 0;
}

int tls_fingerprint_digest(const char *name) {
        static const struct {
                const char *name;
                gnutls_digest_algorithm_t alg;
        } digests[] = {
                { "md5", GNUTLS_DIG_MD5 },
                { "sha1", GNUTLS_DIG_SHA1 },
                { "sha224", GNUTLS_DIG_SHA224 },
                { "sha256", GNUTLS_DIG_SHA256 },
                { "sha384", GNUTLS_DIG_SHA384 },
                { "sha512", GNUTLS_DIG_SHA512 },
        };
        for (size_t i = 0; name && i < ELEMENTSOF(digests); i++)
                if (strcaseeq(name, digests[i].name))
                        return (int) digests[i].alg;
        return -EINVAL;
}

/* "AB:CD:..." of n bytes into out (TLS_FINGERPRINT_MAX holds a SHA-512). */
static void hex_pairs(const unsigned char *p, size_t n, char out[TLS_FINGERPRINT_MAX]) {
        static const char hex[] = "0123456789ABCDEF";
        size_t k = 0;
        for (size_t i = 0; i < n && k + 3 < TLS_FINGERPRINT_MAX; i++) {
                if (i)
                        out[k++] = ':';
                out[k++] = hex[p[i] >> 4];
                out[k++] = hex[p[i] & 15];
        }
        out[k] = '\0';
}

static void common_name(gnutls_x509_crt_t crt, bool issuer, char out[256]) {
        size_t size = 256;
        int r = issuer ? gnutls_x509_crt_get_issuer_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &size) :
                         gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &size);
        if (r < 0)
                out[0] = '\0';
        /* logged and put into Received: — no control characters */
        for (char *p = out; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '"')
                        *p = '?';
}

int tls_conn_peer_cert(TlsConn *c, int digest, TlsPeerCert *ret) {
        unsigned n_chain = 0, status = 0;
        const gnutls_datum_t *chain = gnutls_certificate_get_peers(c->session, &n_chain);
        gnutls_x509_crt_t crt = NULL;
        gnutls_pubkey_t pub = NULL;
        gnutls_datum_t spki = {};
        unsigned char md[64];
        size_t mdlen = sizeof(md);
        int r = 0;

        *ret = (TlsPeerCert) {};
        if (!chain || n_chain == 0)
                return 0;
        if (digest < 0 || (size_t) gnutls_hash_get_len((gnutls_digest_algorithm_t) digest) > sizeof(md))
                return -EINVAL;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) < 0) {
                r = -EBADMSG;
                goto done;
        }
        ret->present = true;
        common_name(crt, false, ret->subject);
        common_name(crt, true, ret->issuer);
        if (gnutls_fingerprint((gnutls_digest_algorithm_t) digest, &chain[0], md, &mdlen) < 0) {
                r = -EIO;
                goto done;
        }
        hex_pairs(md, mdlen, ret->fingerprint);
        if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
            gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0 ||
            gnutls_hash_fast((gnutls_digest_algorithm_t) digest, spki.data, spki.size, md) < 0) {
                r = -EIO;
                goto done;
        }
        hex_pairs(md, (size_t) gnutls_hash_get_len((gnutls_digest_algorithm_t) digest), ret->pkey_fingerprint);
        /* the chain against the trust anchors of the credentials the session used */
        ret->trusted = gnutls_certificate_verify_peers2(c->session, &status) >= 0 && status == 0;
done:
        gnutls_free(spki.data);
        if (pub)
                gnutls_pubkey_deinit(pub);
        gnutls_x509_crt_deinit(crt);
        return r;
}
