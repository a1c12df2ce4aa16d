/* test-tls-dane.c — DANE matching and chain checks (tls-dane.c), table-driven: DANE-EE and
 * DANE-TA, Cert and SPKI selectors, Full/SHA2-256/SHA2-512, mismatches, unusable usages, the
 * DANE-TA name check and a chain that does not reach the matched certificate. A test CA, a
 * server certificate it signs (mx.test) and an unrelated self-signed one are made with certtool;
 * the expected association data are computed with openssl, independently of the code tested.
 * Without certtool or openssl: skipped (77). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "tls/tls.h"

static char dir[] = "/tmp/test-tls-dane-XXXXXX";

/* Runs cmd with $D set to a (a directory, or a path prefix). */
static void sh(const char *cmd, const char *a) {
        CHECK(setenv("D", a, 1) == 0);
        CHECK(system(cmd) == 0);
}

/* The whole file (a DER certificate or raw digest bytes). */
static TlsBlob slurp(const char *name) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "rb");
        CHECK(f);
        unsigned char *buf = malloc(65536);
        CHECK(buf);
        size_t n = fread(buf, 1, 65536, f);
        fclose(f);
        CHECK(n > 0);
        return (TlsBlob) { .data = buf, .len = n };
}

int main(void) {
        if (system("command -v certtool >/dev/null && command -v openssl >/dev/null") != 0)
                return 77;
        CHECK(mkdtemp(dir));
        /* CA, a leaf it signs for mx.test, an unrelated self-signed leaf for mx.test */
        sh("cd $D && certtool --generate-privkey --outfile ca.key >/dev/null 2>&1 && "
           "printf 'cn = Test CA\\nca\\ncert_signing_key\\nexpiration_days = 30\\n' > ca.tmpl && "
           "certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.crt >/dev/null 2>&1 && "
           "certtool --generate-privkey --outfile mx.key >/dev/null 2>&1 && "
           "printf 'cn = mx.test\\ndns_name = mx.test\\ntls_www_server\\nexpiration_days = 30\\n' > mx.tmpl && "
           "certtool --generate-certificate --load-privkey mx.key --load-ca-certificate ca.crt --load-ca-privkey ca.key "
           "--template mx.tmpl --outfile mx.crt >/dev/null 2>&1 && "
           "certtool --generate-privkey --outfile other.key >/dev/null 2>&1 && "
           "certtool --generate-self-signed --load-privkey other.key --template mx.tmpl --outfile other.crt >/dev/null 2>&1",
           dir);
        const char *certs[] = { "ca", "mx", "other" };
        for (size_t i = 0; i < ELEMENTSOF(certs); i++) {
                char d[600];
                snprintf(d, sizeof(d), "%s/%s", dir, certs[i]);
                sh("openssl x509 -in $D.crt -outform DER -out $D.der && "
                   "openssl x509 -in $D.crt -noout -pubkey | openssl pkey -pubin -outform DER -out $D.spki && "
                   "openssl dgst -sha256 -binary -out $D.der.256 $D.der && openssl dgst -sha512 -binary -out $D.der.512 $D.der && "
                   "openssl dgst -sha256 -binary -out $D.spki.256 $D.spki && openssl dgst -sha512 -binary -out $D.spki.512 $D.spki", d);
        }
        TlsBlob ca = slurp("ca.der"), mx = slurp("mx.der"), other = slurp("other.der");

        /* tls_dane_match: selector x matching type on the leaf */
        static const struct { uint8_t usage, selector, mtype; const char *file; const char *cert; int want; } m[] = {
                { 3, 0, 0, "mx.der", "mx", 1 },
                { 3, 0, 1, "mx.der.256", "mx", 1 },
                { 3, 0, 2, "mx.der.512", "mx", 1 },
                { 3, 1, 0, "mx.spki", "mx", 1 },
                { 3, 1, 1, "mx.spki.256", "mx", 1 },
                { 3, 1, 2, "mx.spki.512", "mx", 1 },
                { 3, 1, 1, "other.spki.256", "mx", 0 },     /* another key */
                { 3, 0, 1, "mx.spki.256", "mx", 0 },        /* SPKI digest under the Cert selector */
                { 3, 1, 2, "mx.spki.256", "mx", 0 },        /* SHA-256 bytes as SHA-512 */
                { 2, 0, 1, "ca.der.256", "ca", 1 },
                { 1, 1, 1, "mx.spki.256", "mx", 0 },        /* PKIX-EE: unusable, never matches */
                { 0, 0, 1, "ca.der.256", "ca", 0 },         /* PKIX-TA: unusable */
                { 3, 2, 1, "mx.spki.256", "mx", 0 },        /* unknown selector */
                { 3, 1, 3, "mx.spki.256", "mx", 0 },        /* unknown matching type */
        };
        for (size_t i = 0; i < ELEMENTSOF(m); i++) {
                TlsBlob data = slurp(m[i].file);
                TlsDaneRecord rec = { m[i].usage, m[i].selector, m[i].mtype, data.data, data.len };
                TlsBlob *c = streq(m[i].cert, "ca") ? &ca : streq(m[i].cert, "mx") ? &mx : &other;
                CHECK_INT(tls_dane_match(c, &rec), m[i].want);
                CHECK_INT(tls_dane_usable(&rec), m[i].usage >= 2 && m[i].selector <= 1 && m[i].mtype <= 2);
                free((void *) data.data);
        }

        /* tls_dane_verify_chain: what the server sends, the TLSA set, the reference names */
        TlsBlob chain_ok[] = { mx, ca }, chain_leaf[] = { mx }, chain_other[] = { other, ca };
        char *mxname[] = { "mx.test", NULL }, *wrongname[] = { "mail.example", NULL };
        TlsBlob mx_spki256 = slurp("mx.spki.256"), ca_der256 = slurp("ca.der.256"), ca_spki512 = slurp("ca.spki.512"),
                other_spki256 = slurp("other.spki.256");
        static const struct {
                int chain;              /* 0 mx+ca, 1 mx alone, 2 other+ca */
                uint8_t usage, selector, mtype;
                int data;               /* 0 mx spki256, 1 ca der256, 2 ca spki512, 3 other spki256 */
                int names;              /* 0 mx.test, 1 mail.example */
                TlsTrust want;
        } v[] = {
                { 0, 3, 1, 1, 0, 1, TLS_TRUST_VERIFIED },   /* DANE-EE: no name check */
                { 1, 3, 1, 1, 0, 1, TLS_TRUST_VERIFIED },
                { 0, 3, 1, 1, 3, 0, TLS_TRUST_UNTRUSTED },  /* DANE-EE of another key */
                { 0, 2, 0, 1, 1, 0, TLS_TRUST_VERIFIED },   /* DANE-TA 2 0 1, CA sent in the chain */
                { 0, 2, 1, 2, 2, 0, TLS_TRUST_VERIFIED },   /* DANE-TA 2 1 2 */
                { 0, 2, 0, 1, 1, 1, TLS_TRUST_UNTRUSTED },  /* DANE-TA: name mismatch */
                { 1, 2, 0, 1, 1, 0, TLS_TRUST_UNTRUSTED },  /* DANE-TA: the CA not in the chain */
                { 2, 2, 0, 1, 1, 0, TLS_TRUST_UNTRUSTED },  /* CA sent, but the leaf is not its */
                { 0, 1, 1, 1, 0, 0, TLS_TRUST_UNTRUSTED },  /* PKIX-EE: unusable */
                { 0, 2, 1, 1, 0, 0, TLS_TRUST_VERIFIED },   /* DANE-TA matching the leaf itself (its key) */
        };
        const TlsBlob *datas[] = { &mx_spki256, &ca_der256, &ca_spki512, &other_spki256 };
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                const TlsBlob *chain = v[i].chain == 0 ? chain_ok : v[i].chain == 1 ? chain_leaf : chain_other;
                size_t n = v[i].chain == 1 ? 1 : 2;
                TlsDaneRecord rec = { v[i].usage, v[i].selector, v[i].mtype, datas[v[i].data]->data, datas[v[i].data]->len };
                char reason[512];
                TlsTrust t = tls_dane_verify_chain(chain, n, &rec, 1, v[i].names ? wrongname : mxname, reason, sizeof(reason));
                if (t != v[i].want)
                        fprintf(stderr, "case %zu: %d, want %d (%s)\n", i, t, v[i].want, reason);
                CHECK_INT(t, v[i].want);
                if (t != TLS_TRUST_VERIFIED)
                        CHECK(reason[0] != '\0');
        }
        /* A set: one unusable and one matching record verify; no certificate: untrusted. */
        TlsDaneRecord set[] = { { 1, 1, 1, mx_spki256.data, mx_spki256.len }, { 3, 1, 1, mx_spki256.data, mx_spki256.len } };
        char reason[512];
        CHECK_INT(tls_dane_verify_chain(chain_ok, 2, set, 2, mxname, reason, sizeof(reason)), TLS_TRUST_VERIFIED);
        CHECK_INT(tls_dane_verify_chain(chain_ok, 0, set, 2, mxname, reason, sizeof(reason)), TLS_TRUST_UNTRUSTED);

        const TlsBlob *blobs[] = { &ca, &mx, &other, &mx_spki256, &ca_der256, &ca_spki512, &other_spki256 };
        for (size_t i = 0; i < ELEMENTSOF(blobs); i++)
                free((void *) blobs[i]->data);

        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        return 0;
}
