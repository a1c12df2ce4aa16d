/* test-tls.c — unit tests for common/tls: Postfix protocol syntax, priority strings, credential
 * errors, and real non-blocking handshakes over a socketpair against a GnuTLS client (full,
 * then resumed with the ticket; RSA and ECDSA chain files; a TLS 1.1-only client refused), and
 * the client side (TlsClient against TlsServer: SNI, Untrusted/Trusted/Verified, name patterns,
 * resumption from the client's cache).
 * Keys and certificates are made with certtool at run time; without certtool: skipped (77). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "basic/tests.h"
#include "tls/tls.h"

static char dir[] = "/tmp/test-tls-XXXXXX";

static void remove_dir(void) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
}

/* A key and a self-signed certificate for CN=name, concatenated into <dir>/<name>.pem. */
static void make_chain(const char *name, const char *keytype) {
        char cmd[2048];
        snprintf(cmd, sizeof(cmd),
                 "cd %s && certtool --generate-privkey %s --outfile %s.key >/dev/null 2>&1 && "
                 "printf 'cn = %s\\ndns_name = %s\\nexpiration_days = 30\\ntls_www_server\\nsigning_key\\nencryption_key\\n' > %s.tmpl && "
                 "certtool --generate-self-signed --load-privkey %s.key --template %s.tmpl --outfile %s.crt >/dev/null 2>&1 && "
                 "cat %s.key %s.crt > %s.pem",
                 dir, keytype, name, name, name, name, name, name, name, name, name, name);
        CHECK(system(cmd) == 0);
}

static void test_protocols(void) {
        static const struct { const char *in; int r; unsigned set; } t[] = {
                { ">=TLSv1.2", 0, TLS_PROTO_TLSv1_2 | TLS_PROTO_TLSv1_3 },
                { "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", 0, TLS_PROTO_TLSv1_2 | TLS_PROTO_TLSv1_3 },
                { "TLSv1.3", 0, TLS_PROTO_TLSv1_3 },
                { ">=TLSv1 <=TLSv1.2", 0, TLS_PROTO_TLSv1 | TLS_PROTO_TLSv1_1 | TLS_PROTO_TLSv1_2 },
                { "", 0, TLS_PROTO_TLSv1 | TLS_PROTO_TLSv1_1 | TLS_PROTO_TLSv1_2 | TLS_PROTO_TLSv1_3 },
                { "SSLv3", -EINVAL, 0 },          /* nothing left: SSLv3 is never offered */
                { ">=TLSv1.4", -EINVAL, 0 },
                { "TLSv1.2 !TLSv1.2", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                unsigned set = 0;
                char *why = NULL;
                int r = tls_protocols_parse(t[i].in, &set, &why);
                CHECK_INT(r, t[i].r);
                if (r == 0)
                        CHECK_INT(set, t[i].set);
                else
                        CHECK(why != NULL);
                free(why);
        }
        char *p = NULL;
        CHECK_INT(tls_priority_string(TLS_PROTO_TLSv1_2 | TLS_PROTO_TLSv1_3, TLS_GRADE_MEDIUM, true, NULL, &p), 0);
        CHECK_STR(p, "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.3");
        free(p);
        CHECK_INT(tls_priority_string(TLS_PROTO_TLSv1_3, TLS_GRADE_HIGH, false, NULL, &p), 0);
        CHECK_STR(p, "NORMAL:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-256-CCM:+AES-256-CBC:-VERS-ALL:+VERS-TLS1.3");
        free(p);

        /* tls_ssl_options: NO_TICKET is a bit, what Postern does anyway is accepted, the rest
         * comes back as not supported */
        char *words[] = { "no_compression", "NO_TICKET", "NO_RENEGOTIATION", "PRIORITIZE_CHACHA", "0x40000", NULL };
        unsigned opts = 0;
        char **unsupported = NULL;
        CHECK_INT(tls_ssl_options_parse(words, &opts, &unsupported), 0);
        CHECK_INT(opts, TLS_OPT_NO_TICKET);
        CHECK(unsupported && streq(unsupported[0], "PRIORITIZE_CHACHA") && streq(unsupported[1], "0x40000") &&
              !unsupported[2]);
        strv_free(unsupported);
}

static void set_nonblock(int fd) {
        CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
}

/* Drives the server side step by step and the client side in between, both non-blocking. */
typedef struct Client {
        gnutls_session_t session;
        gnutls_certificate_credentials_t cred;
} Client;

static void client_init(Client *cl, int fd, const char *priority, const char *sni) {
        CHECK(gnutls_certificate_allocate_credentials(&cl->cred) == 0);
        CHECK(gnutls_init(&cl->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK) == 0);
        CHECK(gnutls_priority_set_direct(cl->session, priority, NULL) == 0);
        CHECK(gnutls_credentials_set(cl->session, GNUTLS_CRD_CERTIFICATE, cl->cred) == 0);
        if (sni)
                CHECK(gnutls_server_name_set(cl->session, GNUTLS_NAME_DNS, sni, strlen(sni)) == 0);
        gnutls_transport_set_int(cl->session, fd);
}

static void client_done(Client *cl) {
        gnutls_deinit(cl->session);
        gnutls_certificate_free_credentials(cl->cred);
}

/* Returns 0 when both finished, <0 when the server failed. */
static int handshake(TlsConn *c, Client *cl, int *ret_client) {
        bool sdone = false, cdone = false;
        int cr = GNUTLS_E_AGAIN;
        for (int round = 0; round < 200 && !(sdone && cdone); round++) {
                if (!sdone) {
                        int r = tls_conn_handshake(c);
                        if (r == 0)
                                sdone = true;
                        else if (r != -EAGAIN) {
                                *ret_client = cr;
                                return r;
                        }
                }
                if (!cdone) {
                        cr = gnutls_handshake(cl->session);
                        if (cr == 0)
                                cdone = true;
                        else if (gnutls_error_is_fatal(cr)) {
                                *ret_client = cr;
                                /* let the server see the alert */
                                for (int k = 0; k < 20; k++) {
                                        int r = tls_conn_handshake(c);
                                        if (r != -EAGAIN)
                                                return r;
                                        poll(NULL, 0, 1);
                                }
                                return -ETIMEDOUT;
                        }
                }
                poll(NULL, 0, 1);
        }
        *ret_client = cr;
        return sdone && cdone ? 0 : -ETIMEDOUT;
}

/* One server session: handshake, "hello" both ways; returns whether it was resumed. */
static bool session_once(TlsServer *srv, const char *priority, const char *sni, gnutls_datum_t *ticket,
                         const char *want_proto, char *ret_issuer, size_t issuer_len) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        set_nonblock(sv[0]);
        set_nonblock(sv[1]);
        TlsConn *c = NULL;
        CHECK_INT(tls_conn_new_server(srv, sv[0], &c), 0);
        Client cl;
        client_init(&cl, sv[1], priority, sni);
        if (ticket && ticket->data)
                CHECK(gnutls_session_set_data(cl.session, ticket->data, ticket->size) == 0);
        int cr = 0;
        CHECK_INT(handshake(c, &cl, &cr), 0);
        CHECK_STR(tls_conn_protocol(c), want_proto);
        CHECK(tls_conn_cipher_bits(c) >= 128);
        CHECK(strstr(tls_conn_cipher(c), "TLS_") == tls_conn_cipher(c));

        if (ret_issuer) {
                unsigned n = 0;
                const gnutls_datum_t *certs = gnutls_certificate_get_peers(cl.session, &n);
                CHECK(certs && n > 0);
                gnutls_x509_crt_t crt;
                size_t len = issuer_len;
                CHECK(gnutls_x509_crt_init(&crt) == 0);
                CHECK(gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0);
                CHECK(gnutls_x509_crt_get_dn(crt, ret_issuer, &len) == 0);
                gnutls_x509_crt_deinit(crt);
        }

        /* Data both ways; the client's read also takes the TLS 1.3 tickets. */
        CHECK_INT(gnutls_record_send(cl.session, "hello", 5), 5);
        char buf[64];
        ssize_t n = -EAGAIN;
        for (int k = 0; k < 100 && n == -EAGAIN; k++, poll(NULL, 0, 1))
                n = tls_conn_read(c, buf, sizeof(buf));
        CHECK_INT(n, 5);
        CHECK(memcmp(buf, "hello", 5) == 0);
        CHECK_INT(tls_conn_pending(c), 0);
        CHECK_INT(tls_conn_write(c, "world", 5), 5);
        ssize_t m = GNUTLS_E_AGAIN;
        for (int k = 0; k < 100 && m == GNUTLS_E_AGAIN; k++, poll(NULL, 0, 1))
                m = gnutls_record_recv(cl.session, buf, sizeof(buf));
        CHECK_INT(m, 5);
        bool resumed = tls_conn_resumed(c);
        CHECK_INT(resumed, gnutls_session_is_resumed(cl.session) != 0);
        if (ticket) {
                if (ticket->data)
                        gnutls_free(ticket->data);
                CHECK(gnutls_session_get_data2(cl.session, ticket) == 0);
        }
        tls_conn_free(c);
        client_done(&cl);
        close(sv[0]);
        close(sv[1]);
        return resumed;
}

/* *_exclude_ciphers: class names become GnuTLS removals that GnuTLS accepts, each part once;
 * single OpenSSL suites, combinations and unknown words come back as unsupported. */
static void test_exclude_ciphers(void) {
        char *words[] = { "aNULL", "RC4", "MD5", "PSK", "SRP", "3DES", "eNULL", "EXPORT", "LOW", "DES", "SEED",
                          "CAMELLIA", "SHA1", "EDH-RSA-DES-CBC3-SHA", "ECDHE-RSA-RC4-SHA", "kRSA", "EDH",
                          "AES256-SHA", "RSA+AES", "PSD", NULL };
        char *removals = NULL, **unsupported = NULL;
        CHECK_INT(tls_exclude_ciphers_parse(words, &removals, &unsupported), 0);
        CHECK(strstr(removals, ":-ARCFOUR-128"));
        CHECK(strstr(strstr(removals, ":-ARCFOUR-128") + 1, ":-ARCFOUR-128") == NULL);   /* once */
        CHECK(strstr(removals, ":-3DES-CBC"));
        CHECK(strstr(removals, ":-ANON-DH:-ANON-ECDH"));
        CHECK(strstr(removals, ":-MD5") && strstr(removals, ":-SHA1") && strstr(removals, ":-RSA"));
        CHECK(strstr(removals, ":-CAMELLIA-128-GCM"));
        CHECK(unsupported && streq(unsupported[0], "AES256-SHA") && streq(unsupported[1], "RSA+AES") &&
              streq(unsupported[2], "PSD") && !unsupported[3]);
        char *prio = NULL;
        CHECK_INT(tls_priority_string(TLS_PROTO_TLSv1_2 | TLS_PROTO_TLSv1_3, TLS_GRADE_MEDIUM, true, removals, &prio), 0);
        gnutls_priority_t pc = NULL;
        const char *err = NULL;
        int r = gnutls_priority_init(&pc, prio, &err);
        if (r < 0)
                fprintf(stderr, "priority %s rejected at %s\n", prio, err);
        CHECK(r >= 0);
        if (pc)
                gnutls_priority_deinit(pc);
        free(prio);
        free(removals);
        strv_free(unsupported);
        /* nothing to exclude: no removals */
        char *none[] = { NULL };
        CHECK_INT(tls_exclude_ciphers_parse(none, &removals, NULL), 0);
        CHECK_STR(removals, "");
        free(removals);
}

static void test_sessions(void) {
        make_chain("rsa", "--key-type=rsa --bits=2048");
        make_chain("ecdsa", "--key-type=ecdsa --curve=secp256r1");
        make_chain("sni", "--key-type=ecdsa --curve=secp256r1");
        char rsa[256], ecdsa[256], sni[256], map[256], spec[300];
        snprintf(rsa, sizeof(rsa), "%s/rsa.pem", dir);
        snprintf(ecdsa, sizeof(ecdsa), "%s/ecdsa.pem", dir);
        snprintf(sni, sizeof(sni), "%s/sni.pem", dir);
        snprintf(map, sizeof(map), "%s/sni-map", dir);
        FILE *f = fopen(map, "w");
        CHECK(f);
        fprintf(f, "sni.example %s\n", sni);
        fclose(f);
        snprintf(spec, sizeof(spec), "texthash:%s", map);

        char *chains[] = { rsa, ecdsa, NULL };
        TlsServerConfig cfg = { .chain_files = chains, .protocols = ">=TLSv1.2", .sni_maps = spec };
        TlsServer *srv = NULL;
        char *why = NULL;
        CHECK_INT(tls_server_new(&cfg, &srv, &why), 0);

        /* Full handshake, then resumption with the ticket. */
        gnutls_datum_t ticket = {};
        char dn[256];
        CHECK(!session_once(srv, "NORMAL", NULL, &ticket, "TLSv1.3", NULL, 0));
        CHECK(session_once(srv, "NORMAL", NULL, &ticket, "TLSv1.3", NULL, 0));
        gnutls_free(ticket.data);
        /* TLS 1.2 works; the key type follows the client's signature algorithms. */
        CHECK(!session_once(srv, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256:+SIGN-ECDSA-SHA256",
                            NULL, NULL, "TLSv1.2", dn, sizeof(dn)));
        CHECK_STR(dn, "CN=ecdsa");
        CHECK(!session_once(srv, "NORMAL:-VERS-ALL:+VERS-TLS1.3:-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256",
                            NULL, NULL, "TLSv1.3", dn, sizeof(dn)));
        CHECK_STR(dn, "CN=rsa");
        /* SNI: a name in the map gets its own chain, others the default. */
        CHECK(!session_once(srv, "NORMAL", "sni.example", NULL, "TLSv1.3", dn, sizeof(dn)));
        CHECK_STR(dn, "CN=sni");
        CHECK(!session_once(srv, "NORMAL:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256", "other.example", NULL,
                            "TLSv1.3", dn, sizeof(dn)));
        CHECK_STR(dn, "CN=ecdsa");

        /* A TLS 1.1-only client is refused. */
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        set_nonblock(sv[0]);
        set_nonblock(sv[1]);
        TlsConn *c = NULL;
        CHECK_INT(tls_conn_new_server(srv, sv[0], &c), 0);
        Client cl;
        client_init(&cl, sv[1], "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0", NULL);
        int cr = 0;
        int r = handshake(c, &cl, &cr);
        CHECK(r < 0 || cr < 0);
        CHECK(r != 0);
        tls_conn_free(c);
        client_done(&cl);
        close(sv[0]);
        close(sv[1]);
        tls_server_unref(srv);

        /* Credential errors name the file. */
        char missing[300];
        snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
        char *bad[] = { missing, NULL };
        TlsServerConfig bcfg = { .chain_files = bad, .protocols = ">=TLSv1.2" };
        srv = NULL;
        CHECK(tls_server_new(&bcfg, &srv, &why) < 0);
        CHECK(srv == NULL);
        CHECK(why && strstr(why, "missing.pem"));
        free(why);
        why = NULL;
        TlsServerConfig none = { .protocols = ">=TLSv1.2" };
        CHECK_INT(tls_server_new(&none, &srv, &why), -ENOKEY);
        free(why);
}

static void test_name_matches(void) {
        static const struct { const char *cert, *pattern; bool ok; } t[] = {
                { "mx.example.com", "mx.example.com", true },
                { "MX.Example.COM", "mx.example.com", true },
                { "mx.example.com", "example.com", false },
                { "mx.example.com", ".example.com", true },
                { "a.b.example.com", ".example.com", true },
                { "example.com", ".example.com", false },
                { "badexample.com", ".example.com", false },
                { "*.example.com", "mx.example.com", true },
                { "*.example.com", "a.mx.example.com", false },
                { "*.example.com", "example.com", false },
                { "*.example.com", ".example.com", true },
                { "mx.example.com", "", false },
                { "", "mx.example.com", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (tls_name_matches(t[i].cert, t[i].pattern) != t[i].ok) {
                        fprintf(stderr, "tls_name_matches(%s, %s) != %d\n", t[i].cert, t[i].pattern, t[i].ok);
                        CHECK(false);
                }
}

/* Both ends are TlsConns on a socketpair: steps both handshakes until done or one fails. */
static int pair_handshake(TlsConn *srv, TlsConn *cli) {
        int rs = -EAGAIN, rc = -EAGAIN;
        for (int i = 0; i < 1000 && (rs == -EAGAIN || rc == -EAGAIN); i++) {
                if (rs == -EAGAIN)
                        rs = tls_conn_handshake(srv);
                if (rc == -EAGAIN)
                        rc = tls_conn_handshake(cli);
                if (rs < 0 && rs != -EAGAIN)
                        return rs;
                if (rc < 0 && rc != -EAGAIN)
                        return rc;
                poll(NULL, 0, 1);
        }
        return rs == 0 && rc == 0 ? 0 : -ETIMEDOUT;
}

/* One client session: handshake, trust check against match, a byte from the server (which
 * carries TLS 1.3 tickets to the client). Returns the trust; *ret_resumed from the server side. */
static TlsTrust client_once(TlsServer *srv, TlsClient *cl, const char *sni, char *const *match, bool *ret_resumed) {
        int sv[2];
        TlsConn *s = NULL, *c = NULL;
        const char *why = NULL;
        char buf[4];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        set_nonblock(sv[0]);
        set_nonblock(sv[1]);
        CHECK_INT(tls_conn_new_server(srv, sv[0], &s), 0);
        CHECK_INT(tls_conn_new_client(cl, sv[1], sni, "peer-1", &c), 0);
        CHECK_INT(pair_handshake(s, c), 0);
        if (sni)
                CHECK_STR(strna(tls_conn_server_name(s)), sni);
        else
                CHECK(tls_conn_server_name(s) == NULL);
        TlsTrust t = tls_conn_peer_trust(c, match, &why);
        CHECK(why);
        if (t == TLS_TRUST_UNTRUSTED || (t == TLS_TRUST_TRUSTED && match))
                CHECK(why[0] != '\0');   /* says why it is less than asked for */
        *ret_resumed = tls_conn_resumed(s);
        CHECK(tls_conn_write(s, "x", 1) == 1);
        ssize_t k = -EAGAIN;
        for (int i = 0; i < 1000 && k == -EAGAIN; i++) {
                k = tls_conn_read(c, buf, sizeof(buf));
                if (k == -EAGAIN)
                        poll(NULL, 0, 1);
        }
        CHECK(k == 1);
        tls_conn_free(c);   /* stores the session in cl's cache */
        tls_conn_free(s);
        close(sv[0]);
        close(sv[1]);
        return t;
}

static void test_client(void) {
        char mx[256], mxcrt[256], rsacrt[256];
        make_chain("mx.example.com", "--key-type=ecdsa --curve=secp256r1");
        snprintf(mx, sizeof(mx), "%s/mx.example.com.pem", dir);
        snprintf(mxcrt, sizeof(mxcrt), "%s/mx.example.com.crt", dir);
        snprintf(rsacrt, sizeof(rsacrt), "%s/rsa.crt", dir);
        char *chains[] = { mx, NULL };
        TlsServerConfig scfg = { .chain_files = chains, .protocols = ">=TLSv1.2" };
        TlsServer *srv = NULL;
        char *why = NULL;
        CHECK_INT(tls_server_new(&scfg, &srv, &why), 0);

        TlsClientConfig ccfg = { .ca_file = mxcrt, .protocols = ">=TLSv1" };
        TlsClient *cl = NULL;
        CHECK_INT(tls_client_new(&ccfg, &cl, &why), 0);
        char *host[] = { "mx.example.com", NULL };
        char *dot[] = { "example.com", ".example.com", NULL };
        char *wrong[] = { "other.example.com", NULL };
        bool resumed;
        CHECK_INT(client_once(srv, cl, "mx.example.com", host, &resumed), TLS_TRUST_VERIFIED);
        CHECK(!resumed);
        /* the session stored under "peer-1" is resumed */
        CHECK_INT(client_once(srv, cl, NULL, dot, &resumed), TLS_TRUST_VERIFIED);
        CHECK(resumed);
        CHECK_INT(client_once(srv, cl, NULL, wrong, &resumed), TLS_TRUST_TRUSTED);
        CHECK_INT(client_once(srv, cl, NULL, NULL, &resumed), TLS_TRUST_TRUSTED);
        tls_client_unref(cl);

        /* A trust anchor that did not sign the server's certificate. */
        TlsClientConfig other = { .ca_file = rsacrt, .protocols = ">=TLSv1.2" };
        cl = NULL;
        CHECK_INT(tls_client_new(&other, &cl, &why), 0);
        CHECK_INT(client_once(srv, cl, NULL, host, &resumed), TLS_TRUST_UNTRUSTED);
        tls_client_unref(cl);

        /* A CA directory (smtp_tls_CApath): its certificates are trusted, with no CA file. */
        char capath[300], cmd[1024];
        snprintf(capath, sizeof(capath), "%s/capath", dir);
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s' '%s/mx.pem'", capath, mxcrt, capath);
        CHECK(system(cmd) == 0);
        TlsClientConfig bydir = { .ca_path = capath, .protocols = ">=TLSv1.2" };
        cl = NULL;
        CHECK_INT(tls_client_new(&bydir, &cl, &why), 0);
        CHECK_INT(client_once(srv, cl, NULL, host, &resumed), TLS_TRUST_VERIFIED);
        tls_client_unref(cl);
        /* ... and a directory without certificates is an error naming it */
        snprintf(cmd, sizeof(cmd), "rm -f '%s/mx.pem'", capath);
        CHECK(system(cmd) == 0);
        cl = NULL;
        CHECK(tls_client_new(&bydir, &cl, &why) < 0);
        CHECK(cl == NULL && why && strstr(why, "capath: no certificate found"));
        free(why);
        why = NULL;

        /* A CA file that does not load is an error naming it. */
        char missing[300];
        snprintf(missing, sizeof(missing), "%s/missing-ca.crt", dir);
        TlsClientConfig bad = { .ca_file = missing, .protocols = ">=TLSv1.2" };
        cl = NULL;
        CHECK(tls_client_new(&bad, &cl, &why) < 0);
        CHECK(cl == NULL && why && strstr(why, "missing-ca.crt"));
        free(why);
        tls_server_unref(srv);
        CHECK_STR(tls_trust_name(TLS_TRUST_VERIFIED), "Verified");
}

int main(void) {
        test_protocols();
        test_exclude_ciphers();
        if (system("certtool --version >/dev/null 2>&1") != 0) {
                fprintf(stderr, "certtool not found, skipping the handshake tests\n");
                return TEST_SKIP;
        }
        CHECK(mkdtemp(dir));
        test_sessions();
        test_name_matches();
        test_client();
        remove_dir();
        return 0;
}
