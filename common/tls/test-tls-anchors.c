/* test-tls-anchors.c — trust-anchor files (tls-anchors.c), table-driven: which files load
 * (certificates, PUBLIC KEY blocks after certtool's text, both in one file; nothing usable, an
 * unterminated block, a missing file do not), and which chains they anchor: the issuing CA as a
 * certificate or as a key, the CA's key in the chain, the leaf's own key, unrelated anchors, and
 * a leaf out of its dates signed by the anchor key. An RSA CA (certtool's default key) signs
 * ECDSA leaves, so the signature check of a bare key is the RSA one. Keys and certificates are
 * made with certtool, the DER chains with openssl; without them: skipped (77). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/tests.h"
#include "tls/tls-internal.h"

static char dir[] = "/tmp/test-tls-anchors-XXXXXX";

static char *in_dir(const char *name) {
        static char path[4][512];
        static int k;
        k = (k + 1) % 4;
        snprintf(path[k], sizeof(path[k]), "%s/%s", dir, name);
        return path[k];
}

int main(void) {
        if (system("command -v certtool >/dev/null && command -v openssl >/dev/null") != 0)
                return 77;
        CHECK(mkdtemp(dir));
        CHECK(setenv("D", dir, 1) == 0);
        CHECK(system("cd $D && exec >/dev/null 2>&1 && "
                     "certtool --generate-privkey --outfile ca.key && "
                     "printf 'cn = Anchor CA\\nca\\ncert_signing_key\\nexpiration_days = 30\\n' > ca.tmpl && "
                     "certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl --outfile ca.crt && "
                     "certtool --generate-privkey --key-type=ecdsa --outfile mx.key && "
                     "printf 'cn = mx.test\\ndns_name = mx.test\\ntls_www_server\\nexpiration_days = 30\\n' > mx.tmpl && "
                     "certtool --generate-certificate --load-privkey mx.key --load-ca-certificate ca.crt "
                     "--load-ca-privkey ca.key --template mx.tmpl --outfile mx.crt && "
                     "printf 'cn = old.test\\ntls_www_server\\nactivation_date = \"2001-01-01 00:00:00 UTC\"\\n"
                     "expiration_date = \"2002-01-01 00:00:00 UTC\"\\n' > old.tmpl && "
                     "certtool --generate-certificate --load-privkey mx.key --load-ca-certificate ca.crt "
                     "--load-ca-privkey ca.key --template old.tmpl --outfile old.crt && "
                     "certtool --generate-privkey --key-type=ecdsa --outfile other.key && "
                     "certtool --generate-self-signed --load-privkey other.key --template ca.tmpl --outfile other.crt && "
                     "for k in ca mx other; do certtool --load-privkey $k.key --pubkey-info --outfile $k.pub; done && "
                     "for c in ca mx old; do openssl x509 -in $c.crt -outform DER -out $c.der; done && "
                     "cat other.crt ca.pub > mixed.pem && echo 'no anchors here' > junk.pem && "
                     "sed -n '/BEGIN/,/END/p' ca.pub | head -n 3 > cut.pem && grep -q BEGIN cut.pem") == 0);

        gnutls_datum_t ca = {}, mx = {}, old = {};
        CHECK(gnutls_load_file(in_dir("ca.der"), &ca) >= 0);
        CHECK(gnutls_load_file(in_dir("mx.der"), &mx) >= 0);
        CHECK(gnutls_load_file(in_dir("old.der"), &old) >= 0);
        const gnutls_datum_t chain_full[] = { mx, ca }, chain_leaf[] = { mx }, chain_old[] = { old };

        static const struct {
                const char *files[3];
                int chain;              /* 0 mx+ca, 1 mx alone, 2 the out-of-date leaf alone */
                int want;               /* 1 anchored, 0 not, -1 the files do not load */
                const char *bad;        /* then: the file the reason names */
        } cases[] = {
                { { "ca.crt" }, 1, 1 },                 /* the issuer, not sent */
                { { "ca.crt" }, 0, 1 },                 /* the issuer, sent */
                { { "ca.pub" }, 1, 1 },                 /* the issuer's key signed the leaf */
                { { "ca.pub" }, 0, 1 },                 /* a certificate sent carries the key */
                { { "mx.pub" }, 1, 1 },                 /* the leaf's own key */
                { { "other.pub" }, 0, 0 },
                { { "other.crt" }, 1, 0 },
                { { "other.pub", "ca.pub" }, 1, 1 },    /* several files: any one */
                { { "mixed.pem" }, 1, 1 },              /* other's certificate and ca's key */
                { { "ca.pub" }, 2, 0 },                 /* signed by the key, but expired */
                { { "ca.crt" }, 2, 0 },
                { { "junk.pem" }, 0, -1, "junk.pem" },
                { { "cut.pem" }, 0, -1, "cut.pem" },
                { { "nonexistent.pem" }, 0, -1, "nonexistent.pem" },
                { { "ca.pub", "junk.pem" }, 0, -1, "junk.pem" },    /* each file must hold an anchor */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *files[4] = {};
                for (size_t f = 0; f < 3 && cases[i].files[f]; f++)
                        CHECK(files[f] = strdup(in_dir(cases[i].files[f])));
                TlsAnchors *a = NULL;
                char *why = NULL;
                int r = tls_anchors_load(files, &a, &why);
                if (cases[i].want < 0) {
                        CHECK(r < 0 && why && strstr(why, cases[i].bad));
                } else {
                        CHECK_INT(r, 0);
                        const gnutls_datum_t *chain = cases[i].chain == 0 ? chain_full : cases[i].chain == 1 ? chain_leaf
                                                                                                              : chain_old;
                        char reason[512] = "";
                        bool ok = tls_anchors_verify(a, chain, cases[i].chain == 0 ? 2 : 1, reason, sizeof(reason));
                        if (ok != (cases[i].want == 1))
                                fprintf(stderr, "case %zu: %d (%s)\n", i, ok, reason);
                        CHECK_INT(ok, cases[i].want == 1);
                        if (!ok)
                                CHECK(reason[0] != '\0');
                }
                tls_anchors_free(a);
                free(why);
                for (size_t f = 0; files[f]; f++)
                        free(files[f]);
        }
        gnutls_free(ca.data);
        gnutls_free(mx.data);
        gnutls_free(old.data);
        CHECK(system("rm -rf $D") == 0);
        return 0;
}
