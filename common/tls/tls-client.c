/* tls-client.c — the client side of common/tls: shared trust anchors and priorities
 * (TlsClient), client sessions with SNI and resumption from a small bounded cache, and the
 * check of the peer's certificate (chain, then names) that gives Postfix's
 * Untrusted/Trusted/Verified. A client with trust-anchor files checks chains against them
 * (tls-anchors.c) instead of the CA file/path; tls_client_with_anchors() makes such a client
 * over another one's credentials (a per-destination tafile=). See tls.h. Library code: nothing
 * here logs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls/tls.h"
#include "tls/tls-internal.h"

#define TLS_CACHE_SIZE 64           /* sessions kept for resumption, per TlsClient */

typedef struct CachedSession {
        char *key;
        gnutls_datum_t data;
        unsigned long long stamp;   /* last use, for replacement */
} CachedSession;

struct TlsClient {
        unsigned n_ref;
        TlsClient *base;        /* tls_client_with_anchors(): cred and priority are the base's */
        gnutls_certificate_credentials_t cred;
        gnutls_priority_t priority;
        TlsAnchors *anchors;    /* trust-anchor files: they decide, not cred's trust */
        CachedSession cache[TLS_CACHE_SIZE];
        unsigned long long clock;
        bool no_tickets;        /* tls_ssl_options = NO_TICKET */
};

int tls_client_new(const TlsClientConfig *cfg, TlsClient **ret, char **ret_reason) {
        _cleanup_(tls_client_unrefp) TlsClient *cl = calloc(1, sizeof(TlsClient));
        int r;

        if (!cl)
                return -ENOMEM;
        cl->n_ref = 1;
        r = tls_priority_new(cfg->protocols, cfg->grade, false, cfg->cipher_removals, &cl->priority, ret_reason);
        if (r < 0)
                return r;
        cl->no_tickets = cfg->options & TLS_OPT_NO_TICKET;
        if (gnutls_certificate_allocate_credentials(&cl->cred) < 0) {
                cl->cred = NULL;
                return -ENOMEM;
        }
        if (cfg->ta_files && cfg->ta_files[0]) {
                if ((r = tls_anchors_load(cfg->ta_files, &cl->anchors, ret_reason)) < 0)
                        return r;
        } else if ((r = tls_cred_set_trust(cl->cred, cfg->ca_file, cfg->ca_path, ret_reason)) < 0)
                return r;
        /* a client certificate (smtp_tls_cert_file / _key_file / _chain_files), offered when the
         * server asks for one */
        if (!isempty(cfg->cert_file)) {
                r = tls_cred_load_key_pair(cl->cred, cfg->cert_file, isempty(cfg->key_file) ? cfg->cert_file : cfg->key_file,
                                           ret_reason);
                if (r < 0)
                        return r;
        }
        for (char **f = cfg->chain_files; f && *f; f++)
                if ((r = tls_cred_load_key_pair(cl->cred, *f, *f, ret_reason)) < 0)
                        return r;
        if (!(cfg->ta_files && cfg->ta_files[0]) && ((isempty(cfg->ca_file) && isempty(cfg->ca_path)) || cfg->append_default_ca))
                /* No trust store on the machine only means nothing verifies: not an error. */
                (void) gnutls_certificate_set_x509_system_trust(cl->cred);
        *ret = TAKE_PTR(cl);
        return 0;
}

int tls_client_with_anchors(TlsClient *base, char *const *ta_files, TlsClient **ret, char **ret_reason) {
        _cleanup_(tls_client_unrefp) TlsClient *cl = calloc(1, sizeof(TlsClient));
        if (!cl)
                return -ENOMEM;
        cl->n_ref = 1;
        int r = tls_anchors_load(ta_files, &cl->anchors, ret_reason);
        if (r < 0)
                return r;
        while (base->base)
                base = base->base;
        cl->base = tls_client_ref(base);
        cl->no_tickets = base->no_tickets;
        *ret = TAKE_PTR(cl);
        return 0;
}

TlsClient *tls_client_ref(TlsClient *cl) {
        if (cl)
                cl->n_ref++;
        return cl;
}

TlsClient *tls_client_unref(TlsClient *cl) {
        if (!cl || --cl->n_ref > 0)
                return NULL;
        if (cl->cred)
                gnutls_certificate_free_credentials(cl->cred);
        if (cl->priority)
                gnutls_priority_deinit(cl->priority);
        tls_anchors_free(cl->anchors);
        tls_client_unref(cl->base);
        for (size_t i = 0; i < TLS_CACHE_SIZE; i++) {
                free(cl->cache[i].key);
                gnutls_free(cl->cache[i].data.data);
        }
        free(cl);
        return NULL;
}

static CachedSession *cache_find(TlsClient *cl, const char *key) {
        for (size_t i = 0; i < TLS_CACHE_SIZE; i++)
                if (cl->cache[i].key && streq(cl->cache[i].key, key))
                        return &cl->cache[i];
        return NULL;
}

/* Stores the session data under c->cache_key, replacing the least recently used entry. */
void tls_client_conn_done(TlsConn *c) {
        TlsClient *cl = c->client;
        gnutls_datum_t data = {};

        if (c->established && c->cache_key && gnutls_session_get_data2(c->session, &data) >= 0 && data.size > 0) {
                CachedSession *e = cache_find(cl, c->cache_key);
                if (!e) {
                        e = &cl->cache[0];
                        for (size_t i = 1; i < TLS_CACHE_SIZE && e->key; i++)
                                if (!cl->cache[i].key || cl->cache[i].stamp < e->stamp)
                                        e = &cl->cache[i];
                        free(e->key);
                        e->key = strdup(c->cache_key);
                }
                gnutls_free(e->data.data);
                e->data = (gnutls_datum_t) {};
                if (e->key) {
                        e->data = data;
                        e->stamp = ++cl->clock;
                        data.data = NULL;
                }
        }
        gnutls_free(data.data);
        free(c->cache_key);
        c->cache_key = NULL;
        c->client = tls_client_unref(cl);
}

int tls_conn_new_client(TlsClient *cl, int fd, const char *servername, const char *cache_key, TlsConn **ret) {
        TlsConn *c = calloc(1, sizeof(TlsConn));
        int r;

        if (!c)
                return -ENOMEM;
        r = gnutls_init(&c->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK | (cl->no_tickets ? GNUTLS_NO_TICKETS : 0));
        if (r < 0) {
                free(c);
                return -ENOMEM;
        }
        c->client = tls_client_ref(cl);
        gnutls_session_set_ptr(c->session, c);
        TlsClient *own = cl->base ? cl->base : cl;   /* the credentials and priority */
        if ((r = gnutls_priority_set(c->session, own->priority)) < 0 ||
            (r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, own->cred)) < 0) {
                tls_conn_free(c);
                return -EINVAL;
        }
        if (!isempty(servername)) {
                snprintf(c->server_name, sizeof(c->server_name), "%s", servername);
                if (gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, servername, strlen(servername)) < 0) {
                        tls_conn_free(c);
                        return -EINVAL;
                }
        }
        if (cache_key) {
                c->cache_key = strdup(cache_key);
                if (!c->cache_key) {
                        tls_conn_free(c);
                        return -ENOMEM;
                }
                CachedSession *e = cache_find(cl, cache_key);
                if (e && e->data.data) {
                        (void) gnutls_session_set_data(c->session, e->data.data, e->data.size);
                        e->stamp = ++cl->clock;
                }
        }
        gnutls_handshake_set_timeout(c->session, 0);   /* the caller's event loop times it */
        gnutls_transport_set_int(c->session, fd);
        *ret = c;
        return 0;
}

bool tls_name_matches(const char *cert, const char *pattern) {
        if (isempty(cert) || isempty(pattern))
                return false;
        if (pattern[0] == '.') {
                /* "*.example.com" covers names below example.com: compare ".example.com". */
                const char *c = startswith(cert, "*.") ? cert + 1 : cert;
                size_t lc = strlen(c), lp = strlen(pattern);
                return lc >= lp && strcasecmp(c + lc - lp, pattern) == 0 && (lc > lp || c[0] == '.');
        }
        if (strcasecmp(cert, pattern) == 0)
                return true;
        if (startswith(cert, "*.")) {
                const char *dot = strchr(pattern, '.');
                return dot && dot != pattern && strcasecmp(cert + 1, dot) == 0;
        }
        return false;
}

size_t tls_crt_names(gnutls_x509_crt_t crt, char names[][256], size_t max, char cn[256]) {
        size_t n = 0;
        char buf[256];
        size_t size = sizeof(buf) - 1;

        cn[0] = '\0';
        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) >= 0) {
                buf[MIN(size, sizeof(buf) - 1)] = '\0';
                snprintf(cn, 256, "%s", buf);
        }
        for (unsigned i = 0; n < max; i++) {
                unsigned critical;
                size = sizeof(names[n]) - 1;
                int t = gnutls_x509_crt_get_subject_alt_name(crt, i, names[n], &size, &critical);
                if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (t == GNUTLS_SAN_DNSNAME && size < sizeof(names[n])) {
                        names[n][size] = '\0';
                        n++;
                } else if (t < 0 && t != GNUTLS_E_SHORT_MEMORY_BUFFER)
                        break;
        }
        if (n == 0 && cn[0] && max > 0)
                snprintf(names[n++], sizeof(names[0]), "%s", cn);
        return n;
}

void tls_status_reason(int r, unsigned status, char *reason, size_t size) {
        gnutls_datum_t out = {};
        if (r < 0)
                snprintf(reason, size, "%s", gnutls_strerror(r));
        else if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                snprintf(reason, size, "%s", (const char *) out.data);
                gnutls_free(out.data);
        } else
                snprintf(reason, size, "certificate verification failed");
        for (size_t l = strlen(reason); l > 0 && reason[l - 1] == ' '; l--)
                reason[l - 1] = '\0';   /* GnuTLS ends its sentences with a space */
}

TlsTrust tls_conn_peer_trust(TlsConn *c, char *const *match, const char **ret_reason) {
        const gnutls_datum_t *chain;
        unsigned n_chain = 0, status = 0;
        gnutls_x509_crt_t crt = NULL;

        c->reason[0] = '\0';
        *ret_reason = c->reason;
        chain = gnutls_certificate_get_peers(c->session, &n_chain);
        if (!chain || n_chain == 0) {
                snprintf(c->reason, sizeof(c->reason), "the server sent no certificate");
                return TLS_TRUST_UNTRUSTED;
        }
        if (gnutls_x509_crt_init(&crt) < 0 || gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) < 0) {
                if (crt)
                        gnutls_x509_crt_deinit(crt);
                snprintf(c->reason, sizeof(c->reason), "the server's certificate cannot be parsed");
                return TLS_TRUST_UNTRUSTED;
        }
        char names[TLS_PEER_NAMES_MAX][256];
        size_t n_names = tls_crt_names(crt, names, TLS_PEER_NAMES_MAX, c->peer_cn);
        gnutls_x509_crt_deinit(crt);

        if (c->client && c->client->anchors) {
                if (!tls_anchors_verify(c->client->anchors, chain, n_chain, c->reason, sizeof(c->reason)))
                        return TLS_TRUST_UNTRUSTED;
        } else {
                int r = gnutls_certificate_verify_peers2(c->session, &status);
                if (r < 0 || status != 0) {
                        tls_status_reason(r, status, c->reason, sizeof(c->reason));
                        return TLS_TRUST_UNTRUSTED;
                }
        }
        if (!match || !match[0])
                return TLS_TRUST_TRUSTED;
        for (char *const *m = match; *m; m++)
                for (size_t i = 0; i < n_names; i++)
                        if (tls_name_matches(names[i], *m))
                                return TLS_TRUST_VERIFIED;
        size_t l = (size_t) snprintf(c->reason, sizeof(c->reason), "certificate names (");
        for (size_t i = 0; i < n_names && l < sizeof(c->reason); i++)
                l += (size_t) snprintf(c->reason + l, sizeof(c->reason) - l, "%s%s", i ? ", " : "", names[i]);
        if (l < sizeof(c->reason))
                l += (size_t) snprintf(c->reason + l, sizeof(c->reason) - l, ") do not match ");
        for (char *const *m = match; *m && l < sizeof(c->reason); m++)
                l += (size_t) snprintf(c->reason + l, sizeof(c->reason) - l, "%s%s", m == match ? "" : ", ", *m);
        return TLS_TRUST_TRUSTED;
}

const char *tls_conn_peer_cn(TlsConn *c) {
        return c->peer_cn[0] ? c->peer_cn : NULL;
}

const char *tls_trust_name(TlsTrust t) {
        return t == TLS_TRUST_VERIFIED ? "Verified" : t == TLS_TRUST_TRUSTED ? "Trusted" : "Untrusted";
}
