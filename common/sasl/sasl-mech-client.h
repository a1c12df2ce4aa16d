/* sasl-mech-client.h — the client side of SASL mechanisms, for logging in to another server
 * (postern-smtp's SMTP AUTH): PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login),
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) and SCRAM-SHA-256-PLUS (channel binding: RFC 5929
 * tls-unique, RFC 9266 tls-exporter; the caller gets the data from its TLS session). Without
 * channel binding the gs2 header is "n,,"; with SCRAM-SHA-256 on a TLS session that could have
 * bound it is "y,," (the server did not offer -PLUS: a server that did sees the downgrade);
 * -PLUS sends "p=<type>,," and c= is base64(header + data). Pure computation:
 * challenges and responses are base64 text as they travel in "334 ..." replies and AUTH lines;
 * the caller does the I/O.
 *
 *   sasl_mech_client_new("SCRAM-SHA-256", "user", "pencil", &m);
 *   sasl_mech_client_start(m, &ir);              // initial response (base64) or NULL: none
 *   sasl_mech_client_step(m, "cj1yT3By...", &r); // each 334 challenge -> the next response
 *   sasl_mech_client_verified(m)                 // after 235: the server proved itself (SCRAM)
 *
 * Errors: -EINVAL (unknown mechanism, or a user name / password the mechanism cannot carry),
 * -EBADMSG (a challenge that is not what the mechanism expects: bad base64, a SCRAM nonce that
 * does not extend ours, an iteration count out of range, a server error "e=..."), -EPERM (the
 * SCRAM server signature is wrong: the server does not know the password), -ENOMEM. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "basic/macro.h"

/* What a mechanism exposes, in Postfix's (Cyrus's) smtp_sasl_security_options terms. */
typedef enum SaslMechProps {
        SASL_PROP_PLAINTEXT = 1 << 0,   /* the password travels (encoded, not protected) */
        SASL_PROP_ACTIVE = 1 << 1,      /* open to active (non-dictionary) attacks */
        SASL_PROP_DICTIONARY = 1 << 2,  /* open to passive dictionary attacks */
        SASL_PROP_ANONYMOUS = 1 << 3,   /* allows anonymous login */
        SASL_PROP_ONE_WAY = 1 << 4,     /* the server does not prove who it is (no mutual auth) */
} SaslMechProps;

/* The words of a *_sasl_security_options list (noplaintext, noactive, nodictionary,
 * noanonymous, mutual_auth) as the SaslMechProps a mechanism must not have. -EINVAL with
 * *ret_bad pointing at an unknown word. */
int sasl_security_options_parse(char **words, unsigned *ret_forbidden, const char **ret_bad);

typedef struct SaslMechClient SaslMechClient;

/* The mechanisms this module implements, strongest first (NULL-terminated). */
extern const char *const sasl_mech_client_names[];
/* True with *ret_props for a mechanism this module implements (case-insensitive name). */
bool sasl_mech_client_known(const char *mech, unsigned *ret_props);

int sasl_mech_client_new(const char *mech, const char *user, const char *password, SaslMechClient **ret);
SaslMechClient *sasl_mech_client_free(SaslMechClient *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(SaslMechClient *, sasl_mech_client_free);
/* The mechanism's canonical name ("SCRAM-SHA-256"). */
const char *sasl_mech_client_name(const SaslMechClient *m);
/* For tests: the SCRAM client nonce to use instead of a random one (printable, no ','). */
int sasl_mech_client_set_nonce(SaslMechClient *m, const char *nonce);
/* SCRAM, before start: the TLS session's channel binding (type "tls-exporter" or "tls-unique",
 * data, len). SCRAM-SHA-256-PLUS binds it (required: start fails with -EINVAL without it);
 * SCRAM-SHA-256 only says "y" (call it only when the server did not offer -PLUS). -EINVAL for
 * other mechanisms. */
int sasl_mech_client_set_channel_binding(SaslMechClient *m, const char *type, const void *data, size_t len);
/* The initial response (base64, caller frees; "=" stands for an empty one in SMTP) or NULL in
 * *ret when the mechanism starts with a server challenge. */
int sasl_mech_client_start(SaslMechClient *m, char **ret);
/* The response (base64, caller frees, "" for an empty one) to a challenge (base64, "" empty). */
int sasl_mech_client_step(SaslMechClient *m, const char *challenge, char **ret);
/* After the server said the authentication succeeded: false when the mechanism authenticates
 * the server too (SCRAM) and the server never proved it (no valid server signature). */
bool sasl_mech_client_verified(const SaslMechClient *m);
