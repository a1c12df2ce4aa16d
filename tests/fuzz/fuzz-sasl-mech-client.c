/* fuzz-sasl-mech-client — the client mechanisms postern-smtp logs in with
 * (common/sasl/sasl-mech-client.c): a server's challenges ("334 <base64>") are outside input, and
 * SCRAM parses them (nonce, salt, iteration count, server signature).
 *
 * Input:
 *   byte 0  bits 0-1 the mechanism (0 SCRAM-SHA-256, 1 PLAIN, 2 LOGIN, 3 SCRAM-SHA-256-PLUS with
 *           tls-unique channel binding data);
 *           bit 7: the challenges are passed as written (base64 text), else base64-encoded first
 *   rest    challenges separated by LF (at most 4)
 *
 * Checked: every response is NUL-terminated base64 text; a mechanism never answers after it
 * failed (the caller stops); SCRAM reports the server verified only after a step succeeded on a
 * challenge that carried a matching signature, never before its final step. */
#include <ctype.h>
#include <errno.h>
#include <gnutls/gnutls.h>

#include "fuzz.h"
#include "sasl/sasl-mech-client.h"

static bool base64_text(const char *s) {
        size_t n = strlen(s);
        for (size_t i = 0; i < n; i++)
                if (!(isalnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '/' || s[i] == '='))
                        return false;
        return n % 4 == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 4096)
                return 0;
        static const char *const names[] = { "SCRAM-SHA-256", "PLAIN", "LOGIN", "SCRAM-SHA-256-PLUS" };
        static const char cb[] = "0123456789ab";   /* 12 bytes, as a TLS 1.2 Finished */
        const char *mech = names[data[0] & 3];
        bool raw = data[0] & 0x80;
        SaslMechClient *m = NULL;
        char *resp = NULL;
        FUZZ_CHECK(sasl_mech_client_new(mech, "user", "pencil", &m) == 0);
        FUZZ_CHECK(sasl_mech_client_set_nonce(m, "rOprNGfwEbeRWgbNEkqO") == 0);
        if ((data[0] & 3) == 3)
                FUZZ_CHECK(sasl_mech_client_set_channel_binding(m, "tls-unique", cb, sizeof(cb) - 1) == 0);
        FUZZ_CHECK(sasl_mech_client_start(m, &resp) == 0);
        FUZZ_CHECK(!resp || base64_text(resp));
        free(resp);

        size_t pos = 1;
        for (int steps = 0; steps < 4 && pos <= size; steps++) {
                const uint8_t *nl = memchr(data + pos, '\n', size - pos);
                size_t len = nl ? (size_t) (nl - (data + pos)) : size - pos;
                char *challenge = NULL;
                if (raw) {
                        /* (not strndup(): the input is not NUL-terminated, and ASan's
                         * strict_string_checks reads strndup()'s argument as a string) */
                        challenge = memdup_suffix0(data + pos, len);
                } else if (len == 0) {
                        challenge = strdup("");
                } else {
                        gnutls_datum_t in = { .data = (unsigned char *) data + pos, .size = (unsigned) len }, out = {};
                        if (gnutls_base64_encode2(&in, &out) >= 0) {
                                challenge = memdup_suffix0(out.data, out.size);
                                gnutls_free(out.data);
                        }
                }
                pos += len + 1;
                if (!challenge || strlen(challenge) != (raw ? len : strlen(challenge))) {
                        free(challenge);
                        break;   /* a NUL inside raw text: not a line an SMTP reply can carry */
                }
                bool before = sasl_mech_client_verified(m);
                resp = NULL;
                int r = sasl_mech_client_step(m, challenge, &resp);
                free(challenge);
                if (r < 0) {
                        FUZZ_CHECK(r == -EBADMSG || r == -EPERM || r == -ENOMEM);
                        FUZZ_CHECK(!resp);
                        FUZZ_CHECK(sasl_mech_client_verified(m) == before);
                        break;
                }
                FUZZ_CHECK(resp && base64_text(resp));
                /* SCRAM: verified only by the step whose answer is empty (the last one) */
                if (!before && sasl_mech_client_verified(m))
                        FUZZ_CHECK(resp[0] == '\0' && !strncmp(sasl_mech_client_name(m), "SCRAM-SHA-256", 13));
                free(resp);
        }
        sasl_mech_client_free(m);
        return 0;
}
