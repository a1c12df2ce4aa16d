/* test-sasl-client.c — the Dovecot auth client against a scripted server on a temporary unix
 * socket: handshake and mechanism flags, OK with tab-escaped user, CONT exchange, FAIL with
 * reason and temp, an overlong server line (connection dropped, pending requests TEMPFAIL,
 * mechanism list kept), request timeout, a missing socket, and values that would break framing. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/tests.h"
#include "sasl-client.h"

static sd_event *ev;
static int n_replies, n_state_ok, n_state_err;
static SaslStatus last_status;
static char last_text[256];
static SaslRequest *cont_req;

static void on_reply(SaslRequest *r, SaslStatus st, const char *text, void *ud) {
        n_replies++;
        last_status = st;
        snprintf(last_text, sizeof(last_text), "%s", text ? text : "(null)");
        cont_req = st == SASL_STATUS_CONTINUE ? r : NULL;
}

static void on_state(SaslClient *c, int error, void *ud) {
        if (error == 0)
                n_state_ok++;
        else
                n_state_err++;
}

/* Runs the loop until cond becomes true (or fails after ~2 s). */
#define RUN_UNTIL(cond) do { \
                for (int _i = 0; _i < 400 && !(cond); _i++) \
                        CHECK(sd_event_run(ev, 5000) >= 0); \
                CHECK(cond); \
        } while (0)

static void srv_send(int fd, const char *s) {
        CHECK(write(fd, s, strlen(s)) == (ssize_t) strlen(s));
}

/* Reads what the client sent until it contains want. */
static void srv_expect(int fd, const char *want) {
        static char buf[65536];
        static size_t len;
        for (int i = 0; i < 400; i++) {
                buf[len] = '\0';
                char *p = strstr(buf, want);
                if (p) {
                        size_t used = (size_t) (p - buf) + strlen(want);
                        memmove(buf, buf + used, len - used);
                        len -= used;
                        return;
                }
                CHECK(sd_event_run(ev, 1000) >= 0);
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                if (poll(&pf, 1, 5) > 0) {
                        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                        CHECK(n > 0);
                        len += (size_t) n;
                }
        }
        fprintf(stderr, "server did not receive \"%s\" (has \"%s\")\n", want, buf);
        exit(1);
}

int main(void) {
        char dir[] = "/tmp/test-sasl-XXXXXX", path[128];
        SaslClient *c = NULL;
        SaslRequest *req = NULL;

        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/auth", dir);
        CHECK(sd_event_new(&ev) >= 0);
        CHECK(sasl_client_new(ev, path, 300 * 1000, &c) == 0);
        sasl_client_set_state_callback(c, on_state, NULL);

        /* No server yet. */
        CHECK_INT(sasl_client_connect(c), -ENOENT);
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp" },
                                   on_reply, NULL, &req), -ENOENT);

        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, path);
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        CHECK(listen(lfd, 4) == 0);

        CHECK_INT(sasl_client_connect(c), 0);
        int sfd = accept(lfd, NULL, NULL);
        CHECK(sfd >= 0);
        srv_expect(sfd, "VERSION\t1\t2\nCPID\t");
        srv_send(sfd, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                 "MECH\tANONYMOUS\tanonymous\nMECH\tSECRET\tprivate\tmutual-auth\n"
                 "SPID\t1\nCUID\t7\nCOOKIE\tabc\nDONE\n");
        RUN_UNTIL(n_state_ok == 1);
        CHECK(sasl_client_ready(c));
        size_t n;
        const SaslMech *m = sasl_client_mechs(c, &n);
        CHECK_INT(n, 4);
        CHECK_STR(m[0].name, "PLAIN");
        CHECK_INT(m[0].flags, SASL_MECH_PLAINTEXT);
        CHECK_INT(m[2].flags, SASL_MECH_ANONYMOUS);
        CHECK_INT(m[3].flags, SASL_MECH_PRIVATE | SASL_MECH_MUTUAL_AUTH);

        /* PLAIN with an initial response, secured; user name tab-escaped. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp",
                                                        .local_ip = "127.0.0.1", .remote_ip = "127.0.0.2",
                                                        .secured = true, .initial_response = "AGEAYg==" },
                                   on_reply, NULL, &req), 0);
        srv_expect(sfd, "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.2\tsecured\tresp=AGEAYg==\n");
        srv_send(sfd, "OK\t1\tuser=a\001tb\n");
        RUN_UNTIL(n_replies == 1);
        CHECK_INT(last_status, SASL_STATUS_OK);
        CHECK_STR(last_text, "a\tb");

        /* LOGIN: two challenges, then FAIL with a reason. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "LOGIN", .service = "smtp" },
                                   on_reply, NULL, &req), 0);
        srv_expect(sfd, "AUTH\t2\tLOGIN\tservice=smtp\tnologin\n");
        srv_send(sfd, "CONT\t2\tVXNlcm5hbWU6\n");
        RUN_UNTIL(n_replies == 2);
        CHECK_INT(last_status, SASL_STATUS_CONTINUE);
        CHECK_STR(last_text, "VXNlcm5hbWU6");
        CHECK(cont_req == req);
        CHECK_INT(sasl_request_continue(req, "YQ=="), 0);
        srv_expect(sfd, "CONT\t2\tYQ==\n");
        srv_send(sfd, "FAIL\t2\treason=bad password\tuser=a\n");
        RUN_UNTIL(n_replies == 3);
        CHECK_INT(last_status, SASL_STATUS_FAIL);
        CHECK_STR(last_text, "bad password");

        /* A temporary failure; a reply for an unknown (cancelled) id is ignored. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp",
                                                        .initial_response = "" }, on_reply, NULL, &req), 0);
        srv_expect(sfd, "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tresp=\n");
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp" },
                                   on_reply, NULL, &req), 0);
        sasl_request_cancel(req);
        srv_send(sfd, "OK\t4\tuser=x\nFAIL\t3\ttemp\n");
        RUN_UNTIL(n_replies == 4);
        CHECK_INT(last_status, SASL_STATUS_TEMPFAIL);

        /* Framing-breaking values are refused before anything is sent. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PL\tAIN", .service = "smtp" },
                                   on_reply, NULL, &req), -EINVAL);
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp",
                                                        .initial_response = "a\nAUTH" },
                                   on_reply, NULL, &req), -EINVAL);

        /* Timeout. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp" },
                                   on_reply, NULL, &req), 0);
        RUN_UNTIL(n_replies == 5);
        CHECK_INT(last_status, SASL_STATUS_TEMPFAIL);

        /* An overlong line drops the connection; the pending request fails temporarily and the
         * mechanism list survives for the next connection. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp" },
                                   on_reply, NULL, &req), 0);
        char *big = malloc(SASL_LINE_MAX + 2);
        memset(big, 'x', SASL_LINE_MAX + 1);
        big[SASL_LINE_MAX + 1] = '\0';
        srv_send(sfd, big);
        free(big);
        RUN_UNTIL(n_replies == 6 && n_state_err == 1);
        CHECK_INT(last_status, SASL_STATUS_TEMPFAIL);
        CHECK(!sasl_client_ready(c));
        m = sasl_client_mechs(c, &n);
        CHECK_INT(n, 4);
        close(sfd);

        /* Reconnects at the next request; a server that closes fails it. */
        CHECK_INT(sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp" },
                                   on_reply, NULL, &req), 0);
        sfd = accept(lfd, NULL, NULL);
        CHECK(sfd >= 0);
        srv_expect(sfd, "AUTH\t");
        close(sfd);
        RUN_UNTIL(n_replies == 7);
        CHECK_INT(last_status, SASL_STATUS_TEMPFAIL);
        CHECK_STR(last_text, "Connection lost to authentication server");

        sasl_client_free(c);
        sd_event_unref(ev);
        close(lfd);
        unlink(path);
        rmdir(dir);
        return 0;
}
