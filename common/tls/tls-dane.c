/* tls-dane.c — DANE (RFC 6698, RFC 7671, RFC 7672) certificate checks with GnuTLS's x509
 * functions: which TLSA records SMTP can use (DANE-TA(2) and DANE-EE(3) with selector Cert(0)
 * or SPKI(1) and matching type Full(0), SHA2-256(1) or SHA2-512(2); PKIX-TA/PKIX-EE are
 * "unusable" for SMTP, RFC 7672 3.1.3), whether a DER certificate matches a record, and the
 * check of a server's chain against a TLSA set: DANE-EE matches the leaf with no name check and
 * no validity dates (RFC 7672 3.1.1); DANE-TA matches a certificate of the chain the server
 * sent, which then serves as the trust anchor the rest of the chain must verify up to, and the
 * leaf must carry one of the reference names (RFC 7672 3.1.2). Library code: nothing here logs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls/tls.h"
#include "tls/tls-internal.h"

#define DANE_CHAIN_MAX 16

bool tls_dane_usable(const TlsDaneRecord *r) {
        return (r->usage == TLS_DANE_TA || r->usage == TLS_DANE_EE) && r->selector <= 1 && r->mtype <= 2 &&
               (r->mtype != 0 || r->len > 0);
}

/* The bytes a record's selector picks from crt (caller frees with gnutls_free). */
static int selected_bytes(gnutls_x509_crt_t crt, const TlsBlob *der, uint8_t selector, gnutls_datum_t *ret) {
        if (selector == 0) {
                ret->data = gnutls_malloc(der->len);
                if (!ret->data)
                        return -ENOMEM;
                memcpy(ret->data, der->data, der->len);
                ret->size = (unsigned) der->len;
                return 0;
        }
        return tls_crt_spki(crt, ret);
}

static int match_crt(gnutls_x509_crt_t crt, const TlsBlob *der, const TlsDaneRecord *rec) {
        gnutls_datum_t sel = {};
        unsigned char digest[64];
        int r = selected_bytes(crt, der, rec->selector, &sel);
        if (r < 0)
                return r;
        bool match;
        if (rec->mtype == 0)
                match = rec->len == sel.size && memcmp(rec->data, sel.data, sel.size) == 0;
        else {
                gnutls_digest_algorithm_t alg = rec->mtype == 1 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA512;
                size_t dlen = rec->mtype == 1 ? 32 : 64;
                r = gnutls_hash_fast(alg, sel.data, sel.size, digest);
                match = r >= 0 && rec->len == dlen && memcmp(rec->data, digest, dlen) == 0;
        }
        gnutls_free(sel.data);
        return match;
}

int tls_dane_match(const TlsBlob *der, const TlsDaneRecord *rec) {
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t d = { .data = (unsigned char *) der->data, .size = (unsigned) der->len };
        if (!tls_dane_usable(rec))
                return 0;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        int r = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0 ? -EBADMSG : match_crt(crt, der, rec);
        gnutls_x509_crt_deinit(crt);
        return r;
}

bool tls_chain_verifies_to(gnutls_x509_crt_t *crts, size_t ta, const char *what, char *reason, size_t size) {
        gnutls_x509_trust_list_t list = NULL;
        unsigned status = 0;
        if (gnutls_x509_trust_list_init(&list, 0) < 0)
                return false;
        gnutls_x509_crt_t anchor = NULL;
        gnutls_datum_t der = {};
        bool ok = false;
        /* The list takes the anchor over: give it a copy, the chain keeps its own. */
        if (gnutls_x509_crt_export2(crts[ta], GNUTLS_X509_FMT_DER, &der) >= 0 && gnutls_x509_crt_init(&anchor) >= 0 &&
            gnutls_x509_crt_import(anchor, &der, GNUTLS_X509_FMT_DER) >= 0 &&
            gnutls_x509_trust_list_add_cas(list, &anchor, 1, 0) == 1) {
                anchor = NULL;
                /* RFC 7671 5.2.2: the trust anchor's own dates do not count. */
                int r = gnutls_x509_trust_list_verify_crt(list, crts, (unsigned) ta + 1,
                                                          GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS, &status, NULL);
                ok = r >= 0 && status == 0;
                if (!ok) {
                        char why[300];
                        tls_status_reason(r, status, why, sizeof(why));
                        snprintf(reason, size, "chain does not verify up to %s: %s", what, why);
                }
        }
        if (anchor)
                gnutls_x509_crt_deinit(anchor);
        gnutls_free(der.data);
        gnutls_x509_trust_list_deinit(list, 1);
        return ok;
}

static bool leaf_name_matches(gnutls_x509_crt_t leaf, char *const *names) {
        char certnames[TLS_PEER_NAMES_MAX][256], cn[256];
        size_t n = tls_crt_names(leaf, certnames, TLS_PEER_NAMES_MAX, cn);
        for (char *const *m = names; m && *m; m++)
                for (size_t i = 0; i < n; i++)
                        if (tls_name_matches(certnames[i], *m))
                                return true;
        return false;
}

TlsTrust tls_dane_verify_chain(const TlsBlob *chain, size_t n_chain, const TlsDaneRecord *recs, size_t n_recs,
                               char *const *names, char *reason, size_t size) {
        gnutls_x509_crt_t crts[DANE_CHAIN_MAX] = {};
        size_t n = 0;
        TlsTrust trust = TLS_TRUST_UNTRUSTED;

        snprintf(reason, size, "no TLSA record matches the server certificate chain");
        if (n_chain == 0) {
                snprintf(reason, size, "the server sent no certificate");
                return trust;
        }
        for (; n < MIN(n_chain, (size_t) DANE_CHAIN_MAX); n++) {
                gnutls_datum_t d = { .data = (unsigned char *) chain[n].data, .size = (unsigned) chain[n].len };
                if (gnutls_x509_crt_init(&crts[n]) < 0 || gnutls_x509_crt_import(crts[n], &d, GNUTLS_X509_FMT_DER) < 0) {
                        if (crts[n])
                                gnutls_x509_crt_deinit(crts[n]);
                        crts[n] = NULL;
                        if (n == 0) {
                                snprintf(reason, size, "the server's certificate cannot be parsed");
                                goto done;
                        }
                        break;   /* the usable part of the chain is what came before */
                }
        }
        /* DANE-EE: the leaf, nothing else about it matters. */
        for (size_t k = 0; k < n_recs; k++)
                if (recs[k].usage == TLS_DANE_EE && tls_dane_usable(&recs[k]) && match_crt(crts[0], &chain[0], &recs[k]) > 0) {
                        trust = TLS_TRUST_VERIFIED;
                        reason[0] = '\0';
                        goto done;
                }
        /* DANE-TA: a certificate the server sent, the chain up to it, the name. */
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < n_recs; k++) {
                        if (recs[k].usage != TLS_DANE_TA || !tls_dane_usable(&recs[k]) ||
                            match_crt(crts[i], &chain[i], &recs[k]) <= 0)
                                continue;
                        if (!tls_chain_verifies_to(crts, i, "the DANE-TA certificate", reason, size))
                                continue;
                        if (!leaf_name_matches(crts[0], names)) {
                                snprintf(reason, size, "the certificate names do not match %s%s",
                                         names && names[0] ? names[0] : "(no name)", names && names[0] && names[1] ? ", ..." : "");
                                continue;
                        }
                        trust = TLS_TRUST_VERIFIED;
                        reason[0] = '\0';
                        goto done;
                }
done:
        for (size_t i = 0; i < n; i++)
                if (crts[i])
                        gnutls_x509_crt_deinit(crts[i]);
        return trust;
}

TlsTrust tls_conn_dane_trust(TlsConn *c, const TlsDaneRecord *recs, size_t n_recs, char *const *names,
                             const char **ret_reason) {
        unsigned n_chain = 0;
        const gnutls_datum_t *peers = gnutls_certificate_get_peers(c->session, &n_chain);
        TlsBlob chain[DANE_CHAIN_MAX];
        size_t n = 0;

        for (; peers && n < MIN(n_chain, (unsigned) DANE_CHAIN_MAX); n++)
                chain[n] = (TlsBlob) { .data = peers[n].data, .len = peers[n].size };
        *ret_reason = c->reason;
        /* For the log's "CN" as tls_conn_peer_trust() gives it. */
        if (n > 0) {
                gnutls_x509_crt_t crt = NULL;
                char names_buf[1][256];
                if (gnutls_x509_crt_init(&crt) >= 0) {
                        if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0)
                                (void) tls_crt_names(crt, names_buf, 1, c->peer_cn);
                        gnutls_x509_crt_deinit(crt);
                }
        }
        return tls_dane_verify_chain(chain, n, recs, n_recs, names, c->reason, sizeof(c->reason));
}
