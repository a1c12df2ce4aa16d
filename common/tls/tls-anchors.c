/* tls-anchors.c — trust-anchor files as Postfix's *_tls_trust_anchor_file and the tafile= policy
 * attribute take them: PEM files of certificates ("CERTIFICATE" blocks) and bare public keys
 * ("PUBLIC KEY" blocks, a SubjectPublicKeyInfo), other blocks ignored. A server chain is trusted
 * when it verifies up to a certificate anchor (one that the server sends in its chain, or that
 * issued the top certificate it sends; an anchor need not be a root), or when a certificate of the
 * chain carries one of the public keys (the leaf itself included) or was signed by one (within its
 * dates), and the chain verifies up to that certificate. Anchors are not subject to expiry (as Postfix: they are configuration).
 * Names are the caller's check (tls_conn_peer_trust). Library code: nothing here logs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls/tls.h"
#include "tls/tls-internal.h"

#define ANCHOR_CHAIN_MAX 16

struct TlsAnchors {
        gnutls_x509_trust_list_t certs;
        unsigned n_certs;
        gnutls_datum_t *keys;         /* SubjectPublicKeyInfo, DER */
        gnutls_pubkey_t *pubs;        /* the same keys, for signatures */
        size_t n_keys;
};

TlsAnchors *tls_anchors_free(TlsAnchors *a) {
        if (!a)
                return NULL;
        if (a->certs)
                gnutls_x509_trust_list_deinit(a->certs, 1);
        for (size_t i = 0; i < a->n_keys; i++) {
                gnutls_free(a->keys[i].data);
                gnutls_pubkey_deinit(a->pubs[i]);
        }
        free(a->keys);
        free(a->pubs);
        free(a);
        return NULL;
}

int tls_crt_spki(gnutls_x509_crt_t crt, gnutls_datum_t *ret) {
        gnutls_pubkey_t pub = NULL;
        int r = gnutls_pubkey_init(&pub);
        if (r < 0)
                return -ENOMEM;
        r = gnutls_pubkey_import_x509(pub, crt, 0);
        if (r >= 0)
                r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, ret);
        gnutls_pubkey_deinit(pub);
        return r < 0 ? -EBADMSG : 0;
}

/* Each "PUBLIC KEY" block of text, parsed and re-encoded as DER so that it compares with
 * tls_crt_spki()'s output. */
static int add_keys(TlsAnchors *a, const char *file, const gnutls_datum_t *text, char **ret_reason) {
        static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
        const char *p = (const char *) text->data, *stop = p + text->size;

        while ((p = memmem(p, (size_t) (stop - p), begin, sizeof(begin) - 1))) {
                const char *e = memmem(p, (size_t) (stop - p), end, sizeof(end) - 1);
                if (!e) {
                        reason_printf(ret_reason, "%s: a PUBLIC KEY block without its END line", file);
                        return -EINVAL;
                }
                e += sizeof(end) - 1;
                gnutls_datum_t block = { .data = (unsigned char *) p, .size = (unsigned) (e - p) }, der = {}, norm = {};
                gnutls_pubkey_t pub = NULL;
                int r = gnutls_pem_base64_decode2("PUBLIC KEY", &block, &der);
                if (r >= 0 && (r = gnutls_pubkey_init(&pub)) >= 0 &&
                    (r = gnutls_pubkey_import(pub, &der, GNUTLS_X509_FMT_DER)) >= 0)
                        r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &norm);
                gnutls_free(der.data);
                if (r < 0) {
                        if (pub)
                                gnutls_pubkey_deinit(pub);
                        reason_printf(ret_reason, "%s: public key: %s", file, gnutls_strerror(r));
                        return -EINVAL;
                }
                gnutls_datum_t *n = realloc(a->keys, (a->n_keys + 1) * sizeof(gnutls_datum_t));
                if (n)
                        a->keys = n;
                gnutls_pubkey_t *np = n ? realloc(a->pubs, (a->n_keys + 1) * sizeof(gnutls_pubkey_t)) : NULL;
                if (!np) {
                        gnutls_pubkey_deinit(pub);
                        gnutls_free(norm.data);
                        return -ENOMEM;
                }
                a->pubs = np;
                a->pubs[a->n_keys] = pub;
                a->keys[a->n_keys++] = norm;
                p = e;
        }
        return 0;
}

static int add_file(TlsAnchors *a, const char *file, char **ret_reason) {
        gnutls_datum_t text = {};
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        size_t keys_before = a->n_keys;

        int r = gnutls_load_file(file, &text);
        if (r < 0) {
                reason_printf(ret_reason, "%s: %s", file, gnutls_strerror(r));
                return -EINVAL;
        }
        if (memmem(text.data, text.size, "-----BEGIN CERTIFICATE-----", 27)) {
                r = gnutls_x509_crt_list_import2(&crts, &n, &text, GNUTLS_X509_FMT_PEM, 0);
                if (r < 0) {
                        reason_printf(ret_reason, "%s: %s", file, gnutls_strerror(r));
                        gnutls_free(text.data);
                        return -EINVAL;
                }
                /* the list owns the certificates from here */
                if (gnutls_x509_trust_list_add_cas(a->certs, crts, n, 0) != (int) n) {
                        gnutls_free(crts);
                        gnutls_free(text.data);
                        return -ENOMEM;
                }
                gnutls_free(crts);
                a->n_certs += n;
        }
        r = add_keys(a, file, &text, ret_reason);
        gnutls_free(text.data);
        if (r < 0)
                return r;
        if (n == 0 && a->n_keys == keys_before) {
                reason_printf(ret_reason, "%s: no certificate or public key found", file);
                return -EINVAL;
        }
        return 0;
}

int tls_anchors_load(char *const *files, TlsAnchors **ret, char **ret_reason) {
        TlsAnchors *a = calloc(1, sizeof(TlsAnchors));
        if (!a)
                return -ENOMEM;
        if (gnutls_x509_trust_list_init(&a->certs, 0) < 0) {
                a->certs = NULL;
                tls_anchors_free(a);
                return -ENOMEM;
        }
        for (char *const *f = files; f && *f; f++) {
                int r = add_file(a, *f, ret_reason);
                if (r < 0) {
                        tls_anchors_free(a);
                        return r;
                }
        }
        *ret = a;
        return 0;
}

/* A DER SEQUENCE header at p: its length and that of its contents; false when malformed. */
static bool der_sequence(const unsigned char *p, size_t avail, size_t *ret_hdr, size_t *ret_len) {
        if (avail < 2 || p[0] != 0x30)
                return false;
        size_t hdr = 2, len = p[1];
        if (len & 0x80) {
                size_t k = len & 0x7f;
                if (k == 0 || k > 4 || avail < 2 + k)
                        return false;
                len = 0;
                for (size_t i = 0; i < k; i++)
                        len = (len << 8) | p[2 + i];
                hdr += k;
        }
        if (len > avail - hdr)
                return false;
        *ret_hdr = hdr;
        *ret_len = len;
        return true;
}

/* Whether key signed crt (der: its encoding), and crt is within its dates. GnuTLS has no trust
 * list entry for a bare key, so the signature over the tbsCertificate is checked here. */
static bool key_signed(gnutls_pubkey_t key, gnutls_x509_crt_t crt, const gnutls_datum_t *der) {
        size_t h1, l1, h2, l2;
        unsigned char sig[2048];
        size_t sig_size = sizeof(sig);
        time_t now = time(NULL);

        if (!der_sequence(der->data, der->size, &h1, &l1) || !der_sequence(der->data + h1, l1, &h2, &l2))
                return false;
        int algo = gnutls_x509_crt_get_signature_algorithm(crt);
        if (algo < 0 || gnutls_x509_crt_get_signature(crt, (char *) sig, &sig_size) < 0)
                return false;
        if (gnutls_x509_crt_get_activation_time(crt) > now || gnutls_x509_crt_get_expiration_time(crt) < now)
                return false;
        gnutls_datum_t tbs = { .data = der->data + h1, .size = (unsigned) (h2 + l2) },
                       s = { .data = sig, .size = (unsigned) sig_size };
        return gnutls_pubkey_verify_data2(key, (gnutls_sign_algorithm_t) algo, 0, &tbs, &s) >= 0;
}

/* A certificate of the chain that carries an anchor key or was signed by one, and the chain
 * verifies up to it. */
static bool key_anchored(const TlsAnchors *a, gnutls_x509_crt_t *crts, const gnutls_datum_t *chain, size_t n,
                         char *reason, size_t size) {
        for (size_t i = 0; i < n; i++) {
                gnutls_datum_t spki = {};
                if (tls_crt_spki(crts[i], &spki) < 0)
                        continue;
                bool match = false;
                for (size_t k = 0; k < a->n_keys && !match; k++)
                        match = (a->keys[k].size == spki.size && memcmp(a->keys[k].data, spki.data, spki.size) == 0) ||
                                key_signed(a->pubs[k], crts[i], &chain[i]);
                gnutls_free(spki.data);
                if (match && tls_chain_verifies_to(crts, i, "the trust-anchor public key", reason, size))
                        return true;
        }
        return false;
}

bool tls_anchors_verify(const TlsAnchors *a, const gnutls_datum_t *chain, size_t n_chain, char *reason, size_t size) {
        gnutls_x509_crt_t crts[ANCHOR_CHAIN_MAX] = {};
        size_t n = 0;
        bool ok = false;

        for (; n < MIN(n_chain, (size_t) ANCHOR_CHAIN_MAX); n++)
                if (gnutls_x509_crt_init(&crts[n]) < 0 || gnutls_x509_crt_import(crts[n], &chain[n], GNUTLS_X509_FMT_DER) < 0) {
                        if (crts[n])
                                gnutls_x509_crt_deinit(crts[n]);
                        crts[n] = NULL;
                        break;   /* the usable part of the chain is what came before */
                }
        if (n == 0) {
                snprintf(reason, size, "the server's certificate cannot be parsed");
                return false;
        }
        snprintf(reason, size, "no trust anchor matches the server certificate chain");
        if (a->n_certs > 0) {
                unsigned status = 0;
                int r = gnutls_x509_trust_list_verify_crt(a->certs, crts, (unsigned) n,
                                                          GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS, &status, NULL);
                ok = r >= 0 && status == 0;
                if (!ok)
                        tls_status_reason(r, status, reason, size);
        }
        if (!ok && a->n_keys > 0) {
                char why[256] = "";
                ok = key_anchored(a, crts, chain, n, why, sizeof(why));
                if (!ok && why[0])
                        snprintf(reason, size, "%s", why);
        }
        for (size_t i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        return ok;
}
