/* tls.c — GnuTLS server credentials, priorities, tickets, SNI and non-blocking sessions; see
 * tls.h. One TlsServer per settings snapshot, one TlsConn per connection in TLS. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>

#include "conf/conf.h"
#include "conf/table.h"
#include "daemon/credential.h"
#include "log/log.h"
#include "tls/tls.h"
#include "tls/tls-internal.h"

typedef struct SniCred {
        char *files;                              /* the table value, as the cache key */
        gnutls_certificate_credentials_t cred;
} SniCred;

struct TlsServer {
        unsigned n_ref;
        gnutls_certificate_credentials_t cred;
        gnutls_priority_t priority;
        gnutls_datum_t ticket_key;
        TableList *sni_maps;
        SniCred *sni;
        size_t n_sni;
        bool no_tickets;        /* tls_ssl_options = NO_TICKET */
        bool ask_ccert;         /* request client certificates */
        char *ca_file, *ca_path; /* their trust anchors, also for the SNI credentials */
        gnutls_dh_params_t dh;  /* smtpd_tls_dh1024_param_file's group, or NULL */
};


static const struct {
        const char *name;
        unsigned bit;
        const char *gnutls;                       /* NULL: never enabled */
} protocols[] = {
        { "SSLv2", TLS_PROTO_SSLv2, NULL },
        { "SSLv3", TLS_PROTO_SSLv3, NULL },
        { "TLSv1", TLS_PROTO_TLSv1, "VERS-TLS1.0" },
        { "TLSv1.1", TLS_PROTO_TLSv1_1, "VERS-TLS1.1" },
        { "TLSv1.2", TLS_PROTO_TLSv1_2, "VERS-TLS1.2" },
        { "TLSv1.3", TLS_PROTO_TLSv1_3, "VERS-TLS1.3" },
};

static int protocol_index(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(protocols); i++)
                if (strcasecmp(name, protocols[i].name) == 0)
                        return (int) i;
        return -1;
}

int tls_protocols_parse(const char *text, unsigned *ret, char **ret_reason) {
        _cleanup_strv_free_ char **words = conf_split_list(text ? text : "");
        unsigned include = 0, exclude = 0, ge = TLS_PROTO_ALL, le = TLS_PROTO_ALL;
        bool any_include = false;

        if (!words)
                return -ENOMEM;
        for (char **w = words; *w; w++) {
                const char *p = *w;
                int kind = 0;   /* 0 include, 1 exclude, 2 >=, 3 <= */
                if (*p == '!')
                        kind = 1, p++;
                else if (startswith(p, ">="))
                        kind = 2, p += 2;
                else if (startswith(p, "<="))
                        kind = 3, p += 2;
                int i = protocol_index(p);
                if (i < 0) {
                        reason_printf(ret_reason, "unknown protocol \"%s\"", *w);
                        return -EINVAL;
                }
                unsigned bit = protocols[i].bit;
                switch (kind) {
                case 0: include |= bit; any_include = true; break;
                case 1: exclude |= bit; break;
                case 2: ge = TLS_PROTO_ALL & ~(bit - 1); break;
                case 3: le = (bit << 1) - 1; break;
                }
        }
        unsigned set = (any_include ? include : TLS_PROTO_ALL) & ~exclude & ge & le;
        set &= ~(unsigned) (TLS_PROTO_SSLv2 | TLS_PROTO_SSLv3);   /* never offered */
        if (set == 0) {
                reason_printf(ret_reason, "\"%s\" leaves no protocol enabled", strempty(text));
                return -EINVAL;
        }
        *ret = set;
        return 0;
}

int tls_priority_string(unsigned set, TlsGrade grade, bool server_precedence, const char *removals, char **ret) {
        char buf[256];
        size_t len = 0;

        len += (size_t) snprintf(buf, sizeof(buf), "%s%s:-VERS-ALL",
                                 grade == TLS_GRADE_HIGH ?
                                 "NORMAL:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-256-CCM:+AES-256-CBC" :
                                 "NORMAL", server_precedence ? ":%SERVER_PRECEDENCE" : "");
        for (size_t i = 0; i < ELEMENTSOF(protocols); i++)
                if ((set & protocols[i].bit) && protocols[i].gnutls && len < sizeof(buf))
                        len += (size_t) snprintf(buf + len, sizeof(buf) - len, ":+%s", protocols[i].gnutls);
        if (len >= sizeof(buf))
                return -ENAMETOOLONG;
        char *s = NULL;
        if (asprintf(&s, "%s%s", buf, strempty(removals)) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Loads a certificate (chain) and its private key into cred — from the systemd credentials that
 * postern-generator passes for files the daemon's user may not read (common/daemon/credential.h),
 * else from the files themselves. Errors name the files as main.cf does. */
int tls_cred_load_key_pair(gnutls_certificate_credentials_t cred, const char *cert, const char *key,
                           char **ret_reason) {
        _cleanup_free_ char *cert_cred = NULL, *key_cred = NULL;
        if (credential_path_for(cert, &cert_cred) < 0 || credential_path_for(key, &key_cred) < 0)
                return -ENOMEM;
        int r = gnutls_certificate_set_x509_key_file2(cred, cert_cred ? cert_cred : cert, key_cred ? key_cred : key,
                                                      GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                if (streq(cert, key))
                        reason_printf(ret_reason, "%s%s: %s", cert, key_cred ? " (systemd credential)" : "",
                                      gnutls_strerror(r));
                else
                        reason_printf(ret_reason, "%s, %s%s: %s", cert, key, key_cred ? " (systemd credential)" : "",
                                      gnutls_strerror(r));
                return -EINVAL;
        }
        return 0;
}

/* Loads one file holding a private key and its certificate chain into cred. */
static int load_chain_file(gnutls_certificate_credentials_t cred, const char *path, char **ret_reason) {
        return tls_cred_load_key_pair(cred, path, path, ret_reason);
}

static int cred_new(gnutls_certificate_credentials_t *ret) {
        gnutls_certificate_credentials_t cred;
        if (gnutls_certificate_allocate_credentials(&cred) < 0)
                return -ENOMEM;
        /* RFC 7919 groups for the DHE suites; ECDHE needs nothing. */
        (void) gnutls_certificate_set_known_dh_params(cred, GNUTLS_SEC_PARAM_MEDIUM);
        *ret = cred;
        return 0;
}

/* Credentials from a list of chain files (a table value: names separated by spaces or commas). */
static int cred_from_files(const char *files, gnutls_certificate_credentials_t *ret, char **ret_reason) {
        _cleanup_strv_free_ char **v = conf_split_list(files);
        gnutls_certificate_credentials_t cred;
        int r;

        if (!v)
                return -ENOMEM;
        if (!v[0]) {
                reason_printf(ret_reason, "empty list of chain files");
                return -EINVAL;
        }
        r = cred_new(&cred);
        if (r < 0)
                return r;
        for (char **f = v; *f; f++) {
                r = load_chain_file(cred, *f, ret_reason);
                if (r < 0) {
                        gnutls_certificate_free_credentials(cred);
                        return r;
                }
        }
        *ret = cred;
        return 0;
}

int tls_ssl_options_parse(char *const *words, unsigned *ret, char ***ret_unsupported) {
        static const struct {
                const char *name;
                unsigned bit;
        } known[] = {
                { "NO_TICKET", TLS_OPT_NO_TICKET },
                { "NO_COMPRESSION", 0 },
                { "NO_RENEGOTIATION", 0 },
                { "ENABLE_MIDDLEBOX_COMPAT", 0 },
        };
        unsigned set = 0;
        for (char *const *w = words; w && *w; w++) {
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(known) && !found; i++)
                        if (strcaseeq(*w, known[i].name)) {
                                set |= known[i].bit;
                                found = true;
                        }
                if (!found && ret_unsupported && strv_consume(ret_unsupported, strdup(*w)) < 0)
                        return -ENOMEM;
        }
        *ret = set;
        return 0;
}

unsigned tls_ssl_options_conf(Conf *c, const char *listener, const char *who) {
        _cleanup_strv_free_ char **words = conf_get_list(c, listener, "tls_ssl_options"), **unsupported = NULL;
        unsigned set = 0;
        if (!words || tls_ssl_options_parse(words, &set, &unsupported) < 0) {
                log_oom();
                return 0;
        }
        for (char **u = unsupported; u && *u; u++)
                log_warning("%s: tls_ssl_options: not supported: %s (GnuTLS offers NO_TICKET; NO_COMPRESSION, "
                            "NO_RENEGOTIATION and ENABLE_MIDDLEBOX_COMPAT are always so); ignored", who, *u);
        return set;
}

int tls_priority_new(const char *protos, TlsGrade grade, bool server_precedence, const char *removals,
                     gnutls_priority_t *ret, char **ret_reason) {
        _cleanup_free_ char *prio = NULL;
        const char *err = NULL;
        unsigned set;
        int r = tls_protocols_parse(protos, &set, ret_reason);
        if (r < 0)
                return r;
        r = tls_priority_string(set, grade, server_precedence, removals, &prio);
        if (r < 0)
                return r;
        r = gnutls_priority_init(ret, prio, &err);
        if (r < 0) {
                *ret = NULL;
                reason_printf(ret_reason, "priority \"%s\" rejected at \"%s\": %s", prio, strna(err),
                              gnutls_strerror(r));
                return -EINVAL;
        }
        return 0;
}

int tls_server_new(const TlsServerConfig *cfg, TlsServer **ret, char **ret_reason) {
        _cleanup_(tls_server_unrefp) TlsServer *s = calloc(1, sizeof(TlsServer));
        int r;

        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        r = tls_priority_new(cfg->protocols, cfg->grade, cfg->server_precedence, cfg->cipher_removals, &s->priority,
                             ret_reason);
        if (r < 0)
                return r;
        s->no_tickets = cfg->options & TLS_OPT_NO_TICKET;
        if (r < 0)
                return r;

        r = cred_new(&s->cred);
        if (r < 0)
                return r;
        bool have = false;
        if (!isempty(cfg->cert_file)) {
                const char *key = isempty(cfg->key_file) ? cfg->cert_file : cfg->key_file;
                r = tls_cred_load_key_pair(s->cred, cfg->cert_file, key, ret_reason);
                if (r < 0)
                        return r;
                have = true;
        }
        for (char **f = cfg->chain_files; f && *f; f++) {
                r = load_chain_file(s->cred, *f, ret_reason);
                if (r < 0)
                        return r;
                have = true;
        }
        if (!have) {
                reason_printf(ret_reason, "no certificate configured (smtpd_tls_chain_files or smtpd_tls_cert_file)");
                return -ENOKEY;
        }
        if (!isempty(cfg->dh_param_file)) {
                gnutls_datum_t pem = {};
                r = gnutls_load_file(cfg->dh_param_file, &pem);
                if (r >= 0) {
                        if (gnutls_dh_params_init(&s->dh) < 0)
                                r = GNUTLS_E_MEMORY_ERROR;
                        else
                                r = gnutls_dh_params_import_pkcs3(s->dh, &pem, GNUTLS_X509_FMT_PEM);
                }
                gnutls_free(pem.data);
                if (r >= 0)
                        gnutls_certificate_set_dh_params(s->cred, s->dh);
                else
                        reason_printf(cfg->warning, "cannot load DH parameters from %s: %s; using the RFC 7919 groups",
                                      cfg->dh_param_file, gnutls_strerror(r));
        }
        s->ask_ccert = cfg->ask_ccert;
        if ((!isempty(cfg->ca_file) && !(s->ca_file = strdup(cfg->ca_file))) ||
            (!isempty(cfg->ca_path) && !(s->ca_path = strdup(cfg->ca_path))))
                return -ENOMEM;
        r = tls_cred_set_trust(s->cred, s->ca_file, s->ca_path, ret_reason);
        if (r < 0)
                return r;

        if (!isempty(cfg->sni_maps)) {
                _cleanup_free_ char *why = NULL;
                r = table_list_open(cfg->sni_maps, 0, &s->sni_maps, &why);
                if (r < 0) {
                        reason_printf(ret_reason, "%s: %s", cfg->sni_maps, why ? why : "cannot open table");
                        return r;
                }
        }

        r = gnutls_session_ticket_key_generate(&s->ticket_key);
        if (r < 0) {
                s->ticket_key.data = NULL;
                reason_printf(ret_reason, "session ticket key: %s", gnutls_strerror(r));
                return -EIO;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

TlsServer *tls_server_ref(TlsServer *s) {
        if (s)
                s->n_ref++;
        return s;
}

TlsServer *tls_server_unref(TlsServer *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        if (s->cred)
                gnutls_certificate_free_credentials(s->cred);
        if (s->priority)
                gnutls_priority_deinit(s->priority);
        if (s->ticket_key.data) {
                memset(s->ticket_key.data, 0, s->ticket_key.size);
                gnutls_free(s->ticket_key.data);
        }
        for (size_t i = 0; i < s->n_sni; i++) {
                free(s->sni[i].files);
                gnutls_certificate_free_credentials(s->sni[i].cred);
        }
        free(s->sni);
        table_list_free(s->sni_maps);
        free(s->ca_file);
        free(s->ca_path);
        if (s->dh)
                gnutls_dh_params_deinit(s->dh);
        free(s);
        return NULL;
}

/* The credentials for a table value, loaded once per TlsServer (the table's values are a
 * fixed set, so the cache is bounded by the table). NULL when the files do not load. */
static gnutls_certificate_credentials_t sni_cred(TlsServer *s, const char *files) {
        for (size_t i = 0; i < s->n_sni; i++)
                if (streq(s->sni[i].files, files))
                        return s->sni[i].cred;
        _cleanup_free_ char *why = NULL;
        gnutls_certificate_credentials_t cred = NULL;
        if (cred_from_files(files, &cred, &why) < 0)
                return NULL;
        if (tls_cred_set_trust(cred, s->ca_file, s->ca_path, &why) < 0) {
                gnutls_certificate_free_credentials(cred);
                return NULL;
        }
        SniCred *n = realloc(s->sni, (s->n_sni + 1) * sizeof(SniCred));
        char *key = strdup(files);
        if (!n || !key) {
                if (n)
                        s->sni = n;
                free(key);
                gnutls_certificate_free_credentials(cred);
                return NULL;
        }
        s->sni = n;
        s->sni[s->n_sni++] = (SniCred) { key, cred };
        return cred;
}

/* After the ClientHello: answer a name found in tls_server_sni_maps with its own key and chain;
 * unknown names (and lookup failures) keep the default credentials. */
static int on_client_hello(gnutls_session_t session) {
        TlsConn *c = gnutls_session_get_ptr(session);
        char name[SNI_NAME_MAX];
        size_t len = sizeof(name) - 1;
        unsigned type;

        if (gnutls_server_name_get(session, name, &len, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
                return 0;
        name[MIN(len, sizeof(name) - 1)] = '\0';
        for (char *p = name; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        snprintf(c->server_name, sizeof(c->server_name), "%s", name);
        if (!c->server->sni_maps)
                return 0;
        _cleanup_free_ char *files = NULL;
        if (table_list_lookup(c->server->sni_maps, name, &files) <= 0 || !files)
                return 0;
        gnutls_certificate_credentials_t cred = sni_cred(c->server, files);
        if (cred)
                (void) gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred);
        return 0;
}

int tls_conn_new_server(TlsServer *srv, int fd, TlsConn **ret) {
        TlsConn *c = calloc(1, sizeof(TlsConn));
        int r;

        if (!c)
                return -ENOMEM;
        r = gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK);
        if (r < 0) {
                free(c);
                return -ENOMEM;
        }
        c->server = tls_server_ref(srv);
        gnutls_session_set_ptr(c->session, c);
        if ((r = gnutls_priority_set(c->session, srv->priority)) < 0 ||
            (r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, srv->cred)) < 0 ||
            (!srv->no_tickets && (r = gnutls_session_ticket_enable_server(c->session, &srv->ticket_key)) < 0)) {
                tls_conn_free(c);
                return -EINVAL;
        }
        /* REQUEST, not REQUIRE, even for smtpd_tls_req_ccert: smtpd answers a client without a
         * trusted certificate in SMTP (421), as Postfix does, rather than failing the handshake. */
        gnutls_certificate_server_set_request(c->session, srv->ask_ccert ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_IGNORE);
        gnutls_handshake_set_post_client_hello_function(c->session, on_client_hello);
        gnutls_handshake_set_timeout(c->session, 0);   /* the caller's event loop times it */
        gnutls_transport_set_int(c->session, fd);
        *ret = c;
        return 0;
}

TlsConn *tls_conn_free(TlsConn *c) {
        if (!c)
                return NULL;
        if (c->client)
                tls_client_conn_done(c);
        if (c->session)
                gnutls_deinit(c->session);
        tls_server_unref(c->server);
        free(c);
        return NULL;
}

/* Maps a GnuTLS result to Postern's convention, remembering the error for tls_conn_error(). */
int tls_map_error(TlsConn *c, int r) {
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                c->want_write = gnutls_record_get_direction(c->session) == 1;
                return -EAGAIN;
        }
        c->last_error = r;
        switch (r) {
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_PULL_ERROR:
        case GNUTLS_E_PUSH_ERROR:
                return -ECONNRESET;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        default:
                return -EPROTO;
        }
}

int tls_conn_handshake(TlsConn *c) {
        for (;;) {
                int r = gnutls_handshake(c->session);
                if (r >= 0) {
                        c->established = true;
                        return 0;
                }
                if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED && !gnutls_error_is_fatal(r))
                        continue;   /* a warning alert: go on */
                return tls_map_error(c, r);
        }
}

bool tls_conn_want_write(TlsConn *c) {
        return c->want_write;
}

ssize_t tls_conn_read(TlsConn *c, void *buf, size_t n) {
        for (;;) {
                ssize_t r = gnutls_record_recv(c->session, buf, n);
                if (r >= 0)
                        return r;
                if (r == GNUTLS_E_REHANDSHAKE) {
                        /* A TLS 1.2 renegotiation attempt: refused (a cheap way to make a server
                         * work hard otherwise), the session goes on. */
                        (void) gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
                        continue;
                }
                if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED && !gnutls_error_is_fatal((int) r))
                        continue;
                return tls_map_error(c, (int) r);
        }
}

ssize_t tls_conn_write(TlsConn *c, const void *buf, size_t n) {
        ssize_t r = gnutls_record_send(c->session, buf, n);
        if (r >= 0)
                return r;
        return tls_map_error(c, (int) r);
}

size_t tls_conn_pending(TlsConn *c) {
        return gnutls_record_check_pending(c->session);
}

void tls_conn_bye(TlsConn *c) {
        (void) gnutls_bye(c->session, GNUTLS_SHUT_WR);
}

const char *tls_conn_error(TlsConn *c) {
        return c->last_error ? gnutls_strerror(c->last_error) : "no error";
}

int tls_conn_channel_binding(TlsConn *c, const char **ret_type, unsigned char **ret_data, size_t *ret_len) {
        bool tls13 = gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3;
        gnutls_datum_t cb = {};
        if (gnutls_session_channel_binding(c->session, tls13 ? GNUTLS_CB_TLS_EXPORTER : GNUTLS_CB_TLS_UNIQUE, &cb) < 0 ||
            cb.size == 0) {
                gnutls_free(cb.data);
                return -EOPNOTSUPP;
        }
        unsigned char *d = malloc(cb.size);
        if (!d) {
                gnutls_free(cb.data);
                return -ENOMEM;
        }
        memcpy(d, cb.data, cb.size);
        *ret_len = cb.size;
        gnutls_free(cb.data);
        *ret_type = tls13 ? "tls-exporter" : "tls-unique";
        *ret_data = d;
        return 0;
}

const char *tls_conn_protocol(TlsConn *c) {
        const char *n = gnutls_protocol_get_name(gnutls_protocol_get_version(c->session));
        const char *v;
        if (!n)
                return "unknown";
        /* GnuTLS says "TLS1.3"; logs and Received: use the "TLSv1.3" everyone greps for. */
        if ((v = startswith(n, "TLS")) && !startswith(n, "TLSv")) {
                snprintf(c->protocol, sizeof(c->protocol), "TLSv%s", v);
                return c->protocol;
        }
        return n;
}

const char *tls_conn_cipher(TlsConn *c) {
        const char *n = gnutls_ciphersuite_get(c->session);
        if (!n)
                n = gnutls_cipher_suite_get_name(gnutls_kx_get(c->session), gnutls_cipher_get(c->session),
                                                 gnutls_mac_get(c->session));
        return n ? n : "unknown";
}

int tls_conn_cipher_bits(TlsConn *c) {
        return (int) gnutls_cipher_get_key_size(gnutls_cipher_get(c->session)) * 8;
}

bool tls_conn_resumed(TlsConn *c) {
        return gnutls_session_is_resumed(c->session) != 0;
}

const char *tls_conn_server_name(TlsConn *c) {
        return c->server_name[0] ? c->server_name : NULL;
}
