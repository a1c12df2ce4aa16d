/* test-sasl-mech-client.c — the client mechanisms: SCRAM-SHA-256 against RFC 7677's example
 * exchange (user "user", password "pencil"), a wrong server signature, a nonce the server did not
 * extend, a server error; SCRAM-SHA-256-PLUS with tls-exporter and tls-unique data and the "y"
 * flag over the same exchange (vectors computed independently with Python's hashlib/hmac, whose
 * "n,," case gives RFC 7677's proof); PLAIN's initial response; LOGIN's two answers; names that
 * cannot be carried; the property table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/tests.h"
#include "sasl-mech-client.h"

static char *b64(const char *s) {
        /* the few strings the tests need, precomputed */
        static const struct { const char *text, *b64; } t[] = {
                { "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                  "cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=" },
                { "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
                  "dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ==" },
                { "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
                  "dj1BQUFBVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ==" },
                { "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                  "cj1zb21lb25lZWxzZSxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=" },
                { "e=invalid-proof", "ZT1pbnZhbGlkLXByb29m" },
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                if (strcmp(t[i].text, s) == 0)
                        return strdup(t[i].b64);
        abort();
}

static SaslMechClient *scram_after_first(void) {
        SaslMechClient *m = NULL;
        char *ir = NULL;
        CHECK(sasl_mech_client_new("scram-sha-256", "user", "pencil", &m) == 0);
        CHECK_STR(sasl_mech_client_name(m), "SCRAM-SHA-256");
        CHECK(sasl_mech_client_set_nonce(m, "rOprNGfwEbeRWgbNEkqO") == 0);
        CHECK(sasl_mech_client_start(m, &ir) == 0);
        /* base64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO") */
        CHECK_STR(ir, "biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=");
        free(ir);
        return m;
}

/* One SCRAM exchange over RFC 7677's server-first message, with the channel binding set when
 * type is not NULL. */
static void scram_bound(const char *mech, const char *type, const void *cb, size_t cb_len, const char *first,
                        const char *final, const char *v64) {
        SaslMechClient *m = NULL;
        char *ir = NULL, *resp = NULL;
        char *c = b64("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        CHECK(sasl_mech_client_new(mech, "user", "pencil", &m) == 0);
        CHECK(sasl_mech_client_set_nonce(m, "rOprNGfwEbeRWgbNEkqO") == 0);
        if (type)
                CHECK(sasl_mech_client_set_channel_binding(m, type, cb, cb_len) == 0);
        CHECK(sasl_mech_client_start(m, &ir) == 0);
        CHECK_STR(ir, first);
        CHECK(sasl_mech_client_step(m, c, &resp) == 0);
        CHECK_STR(resp, final);
        free(resp);
        CHECK(!sasl_mech_client_verified(m));
        CHECK(sasl_mech_client_step(m, v64, &resp) == 0);
        CHECK_STR(resp, "");
        CHECK(sasl_mech_client_verified(m));
        free(resp);
        free(ir);
        free(c);
        sasl_mech_client_free(m);
}

static void test_scram_rfc7677(void) {
        /* "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"; then
         * "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,
         *  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=" — RFC 7677 section 3 */
        char *v = b64("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        scram_bound("scram-sha-256", NULL, NULL, 0, "biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=",
                    "Yz1iaXdzLHI9ck9wck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1kSHpi"
                    "WmFwV0lrNGpVaE4rVXRlOXl0YWc5empmTUhnc3FtbWl6N0FuZFZRPQ==", v);
        free(v);
}

static void test_scram_plus(void) {
        unsigned char exporter[32], unique[12];
        for (size_t i = 0; i < sizeof(exporter); i++)
                exporter[i] = (unsigned char) i;
        for (size_t i = 0; i < sizeof(unique); i++)
                unique[i] = (unsigned char) (0x40 + i);
        /* "p=tls-exporter,,n=user,r=…", then c=base64("p=tls-exporter,," + 00 01 … 1f) */
        scram_bound("SCRAM-SHA-256-PLUS", "tls-exporter", exporter, sizeof(exporter),
                    "cD10bHMtZXhwb3J0ZXIsLG49dXNlcixyPXJPcHJOR2Z3RWJlUldnYk5Fa3FP",
                    "Yz1jRDEwYkhNdFpYaHdiM0owWlhJc0xBQUJBZ01FQlFZSENBa0tDd3dORGc4UUVSSVRGQlVXRnhnWkdoc2NIUjRmLHI9ck9w"
                    "ck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1RQzZDUzIwcXVBRFFSYjNtVDk5WVVI"
                    "K24zVkp4VXZ6dUswSzBFMVZyczJNPQ==",
                    "dj0yR2lBZ2FwRXBwTFZsVVhieFVEa3NMM1ZnWUh6dXFpSzV0UjRtaEpHZ3ZzPQ==");
        /* tls-unique, 12 bytes (a TLS 1.2 Finished) */
        scram_bound("scram-sha-256-plus", "tls-unique", unique, sizeof(unique),
                    "cD10bHMtdW5pcXVlLCxuPXVzZXIscj1yT3ByTkdmd0ViZVJXZ2JORWtxTw==",
                    "Yz1jRDEwYkhNdGRXNXBjWFZsTEN4QVFVSkRSRVZHUjBoSlNrcz0scj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJS"
                    "YVRDQWZ1eEZJbGopaE5sRiRrMCxwPXU2VnpXNTVPMHQyT2ZJRHBZWWdJQlBoeEltUHJiY2Y4Nk5uV0tTSUZWS009",
                    "dj0yOWUrZzZ4N3dBc05qRGpLaUI2RWs0aCtpVHpJR3ptRktrZWp4bjY1UnFFPQ==");
        /* plain SCRAM on a session that could bind: "y,," and c=eSws; the data is not sent */
        scram_bound("SCRAM-SHA-256", "tls-unique", unique, sizeof(unique),
                    "eSwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=",
                    "Yz1lU3dzLHI9ck9wck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1Gb3FpSFR0UUVE"
                    "RThsejFDZGFFZTN0SzRtUytpTURUbDc3U1B5RFM1M0RZPQ==",
                    "dj1kSTRLcGlRSndCcjErVitLNlUxZEE2bDZJNEk5RFVOWFdORDRwY3BSVTNVPQ==");

        /* -PLUS without the data cannot start; no binding for PLAIN; odd type names refused */
        SaslMechClient *m = NULL;
        char *ir = NULL;
        CHECK(sasl_mech_client_new("SCRAM-SHA-256-PLUS", "user", "pencil", &m) == 0);
        CHECK_STR(sasl_mech_client_name(m), "SCRAM-SHA-256-PLUS");
        CHECK_INT(sasl_mech_client_start(m, &ir), -EINVAL);
        CHECK_INT(sasl_mech_client_set_channel_binding(m, "tls-unique", NULL, 0), -EINVAL);
        CHECK_INT(sasl_mech_client_set_channel_binding(m, "tls unique,", unique, sizeof(unique)), -EINVAL);
        sasl_mech_client_free(m);
        CHECK(sasl_mech_client_new("PLAIN", "user", "pencil", &m) == 0);
        CHECK_INT(sasl_mech_client_set_channel_binding(m, "tls-unique", unique, sizeof(unique)), -EINVAL);
        sasl_mech_client_free(m);
}

static void test_scram_bad_server(void) {
        char *resp = NULL, *c;
        SaslMechClient *m = scram_after_first();
        c = b64("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        CHECK(sasl_mech_client_step(m, c, &resp) == 0);
        free(resp);
        free(c);
        c = b64("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        CHECK_INT(sasl_mech_client_step(m, c, &resp), -EPERM);
        CHECK(!sasl_mech_client_verified(m));
        free(c);
        sasl_mech_client_free(m);

        m = scram_after_first();
        c = b64("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        CHECK_INT(sasl_mech_client_step(m, c, &resp), -EBADMSG);
        free(c);
        sasl_mech_client_free(m);

        m = scram_after_first();
        c = b64("e=invalid-proof");
        CHECK_INT(sasl_mech_client_step(m, c, &resp), -EBADMSG);
        CHECK_INT(sasl_mech_client_step(m, "not base64!", &resp), -EBADMSG);
        free(c);
        sasl_mech_client_free(m);
}

static void test_scram_random_nonce(void) {
        SaslMechClient *m = NULL;
        char *a = NULL, *b = NULL;
        CHECK(sasl_mech_client_new("SCRAM-SHA-256", "a=b,c", "x", &m) == 0);
        CHECK(sasl_mech_client_start(m, &a) == 0);
        sasl_mech_client_free(m);
        CHECK(sasl_mech_client_new("SCRAM-SHA-256", "a=b,c", "x", &m) == 0);
        CHECK(sasl_mech_client_start(m, &b) == 0);
        sasl_mech_client_free(m);
        CHECK(strcmp(a, b) != 0);
        /* "n,,n=a=3Db=2Cc,r=" is the start of both: the name is escaped */
        CHECK(strncmp(a, "biwsbj1hPTNEYj0yQ2Mscj", 22) == 0);
        free(a);
        free(b);
}

static void test_plain_login(void) {
        SaslMechClient *m = NULL;
        char *r = NULL;
        CHECK(sasl_mech_client_new("PLAIN", "alice", "secret", &m) == 0);
        CHECK(sasl_mech_client_start(m, &r) == 0);
        CHECK_STR(r, "AGFsaWNlAHNlY3JldA==");   /* "\0alice\0secret" */
        free(r);
        CHECK_INT(sasl_mech_client_step(m, "", &r), -EBADMSG);
        CHECK(sasl_mech_client_verified(m));
        sasl_mech_client_free(m);

        CHECK(sasl_mech_client_new("login", "alice", "secret", &m) == 0);
        CHECK(sasl_mech_client_start(m, &r) == 0);
        CHECK(r == NULL);
        CHECK(sasl_mech_client_step(m, "VXNlcm5hbWU6", &r) == 0);
        CHECK_STR(r, "YWxpY2U=");
        free(r);
        CHECK(sasl_mech_client_step(m, "UGFzc3dvcmQ6", &r) == 0);
        CHECK_STR(r, "c2VjcmV0");
        free(r);
        CHECK_INT(sasl_mech_client_step(m, "UGFzc3dvcmQ6", &r), -EBADMSG);
        sasl_mech_client_free(m);

        CHECK_INT(sasl_mech_client_new("CRAM-MD5", "alice", "secret", &m), -EINVAL);
        CHECK_INT(sasl_mech_client_new("PLAIN", "alice\r\nQUIT", "secret", &m), -EINVAL);
}

static void test_props(void) {
        unsigned p = 0;
        CHECK(sasl_mech_client_known("plain", &p) && (p & SASL_PROP_PLAINTEXT));
        CHECK(sasl_mech_client_known("LOGIN", &p) && (p & SASL_PROP_PLAINTEXT));
        CHECK(sasl_mech_client_known("SCRAM-SHA-256", &p) && !(p & SASL_PROP_PLAINTEXT) &&
              !(p & SASL_PROP_ACTIVE) && (p & SASL_PROP_DICTIONARY));
        CHECK(sasl_mech_client_known("SCRAM-SHA-256-PLUS", &p) && p == SASL_PROP_DICTIONARY);
        CHECK(!sasl_mech_client_known("SCRAM-SHA-1-PLUS", &p));
        CHECK_STR(sasl_mech_client_names[0], "SCRAM-SHA-256-PLUS");
        CHECK_STR(sasl_mech_client_names[1], "SCRAM-SHA-256");

        char *def[] = { "noplaintext", "noanonymous", NULL }, *bad[] = { "noactive", "nosuch", NULL },
             *none[] = { NULL };
        const char *w = NULL;
        CHECK(sasl_security_options_parse(def, &p, &w) == 0);
        CHECK_INT(p, SASL_PROP_PLAINTEXT | SASL_PROP_ANONYMOUS);
        CHECK_INT(sasl_security_options_parse(bad, &p, &w), -EINVAL);
        CHECK_STR(w, "nosuch");
        CHECK(sasl_security_options_parse(none, &p, &w) == 0 && p == 0);
}

int main(void) {
        test_scram_rfc7677();
        test_scram_plus();
        test_scram_bad_server();
        test_scram_random_nonce();
        test_plain_login();
        test_props();
        return 0;
}
