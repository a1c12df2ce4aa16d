/* sasl-mech-client.c — PLAIN, LOGIN, SCRAM-SHA-256 and -PLUS computed for a SASL client (see
 * sasl-mech-client.h). Hashes, HMAC, PBKDF2, base64 and the nonce come from GnuTLS. Secrets
 * (password, salted password) are wiped when the object is freed. User names are sent as given
 * (no SASLprep: an ASCII name is its own SASLprep form). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "basic/strbuf.h"
#include "sasl-mech-client.h"

#define SCRAM_HASH_LEN 32             /* SHA-256 */
#define SCRAM_MAX_ITERATIONS 1000000  /* a server asking more is refused (CPU, event loop) */

typedef enum MechKind { MECH_PLAIN, MECH_LOGIN, MECH_SCRAM_SHA256 } MechKind;

static const struct {
        const char *name;
        MechKind kind;
        bool plus;                    /* SCRAM with channel binding */
        unsigned props;
} mechs[] = {
        /* Cyrus's ratings: SCRAM resists active attacks (mutual authentication) but a recorded
         * exchange allows an offline dictionary attack. */
        { "SCRAM-SHA-256-PLUS", MECH_SCRAM_SHA256, true, SASL_PROP_DICTIONARY },
        { "SCRAM-SHA-256", MECH_SCRAM_SHA256, false, SASL_PROP_DICTIONARY },
        { "PLAIN", MECH_PLAIN, false, SASL_PROP_PLAINTEXT | SASL_PROP_ACTIVE | SASL_PROP_DICTIONARY | SASL_PROP_ONE_WAY },
        { "LOGIN", MECH_LOGIN, false, SASL_PROP_PLAINTEXT | SASL_PROP_ACTIVE | SASL_PROP_DICTIONARY | SASL_PROP_ONE_WAY },
};

const char *const sasl_mech_client_names[] = { "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN", NULL };

struct SaslMechClient {
        MechKind kind;
        bool plus;
        const char *name;
        char *user, *password;
        unsigned step;
        bool verified;
        /* SCRAM */
        char *nonce;                  /* ours */
        char *client_first_bare;
        char *gs2_header;             /* "p=tls-unique,,", "y,,"; NULL: "n,," */
        unsigned char *cb_data;       /* -PLUS: the channel binding data */
        size_t cb_len;
        unsigned char server_sig[SCRAM_HASH_LEN];
};

bool sasl_mech_client_known(const char *mech, unsigned *ret_props) {
        for (size_t i = 0; i < ELEMENTSOF(mechs); i++)
                if (strcaseeq(mechs[i].name, mech)) {
                        if (ret_props)
                                *ret_props = mechs[i].props;
                        return true;
                }
        return false;
}

int sasl_security_options_parse(char **words, unsigned *ret_forbidden, const char **ret_bad) {
        static const struct { const char *word; unsigned props; } opts[] = {
                { "noplaintext", SASL_PROP_PLAINTEXT }, { "noactive", SASL_PROP_ACTIVE },
                { "nodictionary", SASL_PROP_DICTIONARY }, { "noanonymous", SASL_PROP_ANONYMOUS },
                { "mutual_auth", SASL_PROP_ONE_WAY },
        };
        unsigned forbidden = 0;
        for (char **w = words; w && *w; w++) {
                size_t i = 0;
                while (i < ELEMENTSOF(opts) && !strcaseeq(opts[i].word, *w))
                        i++;
                if (i == ELEMENTSOF(opts)) {
                        *ret_bad = *w;
                        return -EINVAL;
                }
                forbidden |= opts[i].props;
        }
        *ret_forbidden = forbidden;
        return 0;
}

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

SaslMechClient *sasl_mech_client_free(SaslMechClient *m) {
        if (!m)
                return NULL;
        wipe_free(m->password);
        free(m->user);
        free(m->nonce);
        free(m->client_first_bare);
        free(m->gs2_header);
        free(m->cb_data);
        explicit_bzero(m, sizeof(*m));
        free(m);
        return NULL;
}

int sasl_mech_client_new(const char *mech, const char *user, const char *password, SaslMechClient **ret) {
        size_t i = 0;
        while (i < ELEMENTSOF(mechs) && !strcaseeq(mechs[i].name, mech))
                i++;
        if (i == ELEMENTSOF(mechs) || !user || !password)
                return -EINVAL;
        /* PLAIN separates with NUL; no mechanism here carries CR/LF or NUL in a name. */
        if (strpbrk(user, "\r\n") || strpbrk(password, "\r\n"))
                return -EINVAL;
        SaslMechClient *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->kind = mechs[i].kind;
        m->plus = mechs[i].plus;
        m->name = mechs[i].name;
        m->user = strdup(user);
        m->password = strdup(password);
        if (!m->user || !m->password) {
                sasl_mech_client_free(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

const char *sasl_mech_client_name(const SaslMechClient *m) {
        return m->name;
}

int sasl_mech_client_set_nonce(SaslMechClient *m, const char *nonce) {
        if (!nonce || !*nonce || strchr(nonce, ','))
                return -EINVAL;
        char *n = strdup(nonce);
        if (!n)
                return -ENOMEM;
        free(m->nonce);
        m->nonce = n;
        return 0;
}

int sasl_mech_client_set_channel_binding(SaslMechClient *m, const char *type, const void *data, size_t len) {
        if (m->kind != MECH_SCRAM_SHA256 || m->step != 0 || isempty(type) || strspn(type,
            "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(type) || (m->plus && (!data || len == 0)))
                return -EINVAL;
        char *h = NULL;
        unsigned char *d = NULL;
        if (m->plus ? asprintf(&h, "p=%s,,", type) < 0 : !(h = strdup("y,,"))) {
                h = NULL;
                return -ENOMEM;
        }
        if (m->plus && !(d = malloc(len))) {
                free(h);
                return -ENOMEM;
        }
        if (d)
                memcpy(d, data, len);
        free(m->gs2_header);
        free(m->cb_data);
        m->gs2_header = h;
        m->cb_data = d;
        m->cb_len = m->plus ? len : 0;
        return 0;
}

/* GnuTLS's output as a new NUL-terminated string; frees the datum. */
static int datum_take(gnutls_datum_t *d, char **ret, size_t *ret_len) {
        char *s = malloc(d->size + 1);
        if (s) {
                memcpy(s, d->data, d->size);
                s[d->size] = '\0';
        }
        if (ret_len)
                *ret_len = d->size;
        gnutls_free(d->data);
        *d = (gnutls_datum_t) {};
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* base64 of n bytes into a new string ("" for none). */
static int b64_encode(const void *p, size_t n, char **ret) {
        gnutls_datum_t in = { .data = (unsigned char *) p, .size = (unsigned) n }, out = {};
        if (n == 0)
                return (*ret = strdup("")) ? 0 : -ENOMEM;
        if (gnutls_base64_encode2(&in, &out) < 0)
                return -ENOMEM;
        return datum_take(&out, ret, NULL);
}

/* Decodes base64 text into a NUL-terminated buffer (*ret_len without the NUL). */
static int b64_decode(const char *text, char **ret, size_t *ret_len) {
        gnutls_datum_t in = { .data = (unsigned char *) text, .size = (unsigned) strlen(text) }, out = {};
        if (!*text) {
                *ret_len = 0;
                return (*ret = strdup("")) ? 0 : -ENOMEM;
        }
        if (gnutls_base64_decode2(&in, &out) < 0)
                return -EBADMSG;
        return datum_take(&out, ret, ret_len);
}

/* --- SCRAM-SHA-256 --- */

static int scram_first(SaslMechClient *m, char **ret) {
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT;
        int r;
        if (m->plus && !m->cb_data)
                return -EINVAL;   /* -PLUS needs the session's channel binding first */
        if (!m->nonce) {
                unsigned char raw[18];
                if (gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw)) < 0)
                        return -EIO;
                if ((r = b64_encode(raw, sizeof(raw), &m->nonce)) < 0)
                        return r;
        }
        /* saslname: "=" and "," are escaped as "=3D" and "=2C". */
        r = strbuf_puts(&b, "n=");
        for (const char *p = m->user; r >= 0 && *p; p++)
                r = *p == '=' ? strbuf_puts(&b, "=3D") : *p == ',' ? strbuf_puts(&b, "=2C") : strbuf_putc(&b, *p);
        if (r >= 0)
                r = strbuf_printf(&b, ",r=%s", m->nonce);
        if (r < 0)
                return r;
        m->client_first_bare = strbuf_steal(&b);
        _cleanup_free_ char *first = NULL;
        if (asprintf(&first, "%s%s", m->gs2_header ? m->gs2_header : "n,,", m->client_first_bare) < 0)
                return -ENOMEM;
        return b64_encode(first, strlen(first), ret);
}

static int hmac(const void *key, size_t klen, const void *text, size_t tlen, unsigned char out[SCRAM_HASH_LEN]) {
        return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, klen, text, tlen, out) < 0 ? -EIO : 0;
}

/* The value of attribute "<a>=" in a SCRAM message, or NULL. */
static const char *scram_attr(const char *msg, char a, size_t *ret_len) {
        for (const char *p = msg; p && *p; ) {
                const char *end = strchr(p, ',');
                if (p[0] == a && p[1] == '=') {
                        *ret_len = (size_t) ((end ? end : p + strlen(p)) - (p + 2));
                        return p + 2;
                }
                p = end ? end + 1 : NULL;
        }
        return NULL;
}

static int scram_final(SaslMechClient *m, const char *server_first, char **ret) {
        size_t nlen = 0, slen = 0, ilen = 0, n;
        const char *nonce = scram_attr(server_first, 'r', &nlen);
        const char *salt64 = scram_attr(server_first, 's', &slen);
        const char *iter = scram_attr(server_first, 'i', &ilen);
        size_t ours = strlen(m->nonce);
        int r;

        if (strncmp(server_first, "m=", 2) == 0 || !nonce || !salt64 || !iter || nlen <= ours ||
            strncmp(nonce, m->nonce, ours) != 0 || ilen == 0 || ilen > 9)
                return -EBADMSG;
        char ibuf[16];
        memcpy(ibuf, iter, ilen);
        ibuf[ilen] = '\0';
        char *e = NULL;
        unsigned long iterations = strtoul(ibuf, &e, 10);
        if (*e || iterations == 0 || iterations > SCRAM_MAX_ITERATIONS)
                return -EBADMSG;
        _cleanup_free_ char *salt_text = strndup(salt64, slen), *salt = NULL;
        if (!salt_text)
                return -ENOMEM;
        if ((r = b64_decode(salt_text, &salt, &n)) < 0 || n == 0)
                return r < 0 ? r : -EBADMSG;

        unsigned char salted[SCRAM_HASH_LEN], client_key[SCRAM_HASH_LEN], stored_key[SCRAM_HASH_LEN],
                client_sig[SCRAM_HASH_LEN], server_key[SCRAM_HASH_LEN], proof[SCRAM_HASH_LEN];
        gnutls_datum_t key = { .data = (unsigned char *) m->password, .size = (unsigned) strlen(m->password) };
        gnutls_datum_t sd = { .data = (unsigned char *) salt, .size = (unsigned) n };
        /* every cleanup variable is declared before the first goto (no jump into its scope) */
        _cleanup_free_ char *without_proof = NULL, *auth_message = NULL, *proof64 = NULL, *final = NULL,
                *cbind = NULL, *cbind64 = NULL;
        const char *gs2 = m->gs2_header ? m->gs2_header : "n,,";
        size_t gs2_len = strlen(gs2);
        r = -EIO;
        if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &sd, (unsigned) iterations, salted, sizeof(salted)) < 0)
                goto out;
        if (hmac(salted, sizeof(salted), "Client Key", 10, client_key) < 0 ||
            gnutls_hash_fast(GNUTLS_DIG_SHA256, client_key, sizeof(client_key), stored_key) < 0 ||
            hmac(salted, sizeof(salted), "Server Key", 10, server_key) < 0)
                goto out;
        /* c= is base64 of the gs2 header and, with -PLUS, the channel binding data ("n,,": biws) */
        r = -ENOMEM;
        if (!(cbind = malloc(gs2_len + m->cb_len + 1)))
                goto out;
        memcpy(cbind, gs2, gs2_len);
        if (m->cb_len)
                memcpy(cbind + gs2_len, m->cb_data, m->cb_len);
        if ((r = b64_encode(cbind, gs2_len + m->cb_len, &cbind64)) < 0)
                goto out;
        r = -ENOMEM;
        if (asprintf(&without_proof, "c=%s,r=%.*s", cbind64, (int) nlen, nonce) < 0) {
                without_proof = NULL;
                goto out;
        }
        if (asprintf(&auth_message, "%s,%s,%s", m->client_first_bare, server_first, without_proof) < 0) {
                auth_message = NULL;
                goto out;
        }
        r = -EIO;
        if (hmac(stored_key, sizeof(stored_key), auth_message, strlen(auth_message), client_sig) < 0 ||
            hmac(server_key, sizeof(server_key), auth_message, strlen(auth_message), m->server_sig) < 0)
                goto out;
        for (size_t i = 0; i < SCRAM_HASH_LEN; i++)
                proof[i] = client_key[i] ^ client_sig[i];
        if ((r = b64_encode(proof, sizeof(proof), &proof64)) < 0)
                goto out;
        r = -ENOMEM;
        if (asprintf(&final, "%s,p=%s", without_proof, proof64) < 0) {
                final = NULL;
                goto out;
        }
        r = b64_encode(final, strlen(final), ret);
out:
        explicit_bzero(salted, sizeof(salted));
        explicit_bzero(client_key, sizeof(client_key));
        explicit_bzero(stored_key, sizeof(stored_key));
        explicit_bzero(server_key, sizeof(server_key));
        return r;
}

static int scram_check_server(SaslMechClient *m, const char *server_final, char **ret) {
        size_t vlen = 0, n = 0;
        if (strncmp(server_final, "e=", 2) == 0)
                return -EBADMSG;
        const char *v = scram_attr(server_final, 'v', &vlen);
        if (!v)
                return -EBADMSG;
        _cleanup_free_ char *v64 = strndup(v, vlen), *sig = NULL;
        if (!v64)
                return -ENOMEM;
        int r = b64_decode(v64, &sig, &n);
        if (r < 0)
                return r;
        if (n != SCRAM_HASH_LEN || gnutls_memcmp(sig, m->server_sig, SCRAM_HASH_LEN) != 0)
                return -EPERM;
        m->verified = true;
        return (*ret = strdup("")) ? 0 : -ENOMEM;
}

/* --- the interface --- */

int sasl_mech_client_start(SaslMechClient *m, char **ret) {
        switch (m->kind) {
        case MECH_PLAIN: {
                /* authzid (empty) NUL authcid NUL password */
                size_t ul = strlen(m->user), pl = strlen(m->password);
                _cleanup_free_ char *buf = malloc(ul + pl + 2);
                if (!buf)
                        return -ENOMEM;
                buf[0] = '\0';
                memcpy(buf + 1, m->user, ul);
                buf[ul + 1] = '\0';
                memcpy(buf + ul + 2, m->password, pl);
                int r = b64_encode(buf, ul + pl + 2, ret);
                explicit_bzero(buf, ul + pl + 2);
                m->step = 1;
                return r;
        }
        case MECH_LOGIN:
                *ret = NULL;
                return 0;
        case MECH_SCRAM_SHA256:
                m->step = 1;
                return scram_first(m, ret);
        }
        return -EINVAL;
}

int sasl_mech_client_step(SaslMechClient *m, const char *challenge, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        int r = b64_decode(challenge, &text, &n);
        if (r < 0)
                return r;
        if (strlen(text) != n)
                return -EBADMSG;   /* a NUL inside a challenge none of these mechanisms sends */
        switch (m->kind) {
        case MECH_PLAIN:
                return -EBADMSG;   /* everything went with the initial response */
        case MECH_LOGIN:
                /* "Username:" then "Password:"; servers word the prompts differently, so the
                 * order decides, as in every LOGIN client. */
                if (m->step >= 2)
                        return -EBADMSG;
                m->step++;
                return b64_encode(m->step == 1 ? m->user : m->password,
                                  strlen(m->step == 1 ? m->user : m->password), ret);
        case MECH_SCRAM_SHA256:
                if (m->step == 1) {
                        m->step = 2;
                        return scram_final(m, text, ret);
                }
                if (m->step == 2) {
                        m->step = 3;
                        return scram_check_server(m, text, ret);
                }
                return -EBADMSG;
        }
        return -EINVAL;
}

bool sasl_mech_client_verified(const SaslMechClient *m) {
        return m->kind != MECH_SCRAM_SHA256 || m->verified;
}
