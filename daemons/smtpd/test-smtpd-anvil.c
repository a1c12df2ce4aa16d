/* test-smtpd-anvil.c — drives the smtpd side of the TLS and AUTH rate limits
 * (smtpd_anvil_newtls_status, smtpd_anvil_newtls, smtpd_anvil_auth) against a real postern-anvil,
 * before STARTTLS and AUTH exist to call them: a real Session on a loopback TCP connection from
 * 127.0.0.2, the real smtpd-session.c/smtpd-anvil.c code and smtpd-settings.c's settings. Run
 * by tests/integration/test_anvil.py, which starts anvil and passes its socket directory:
 * test-smtpd-anvil <postern_socket_directory>. Exit 0 when every check passed. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "basic/tests.h"
#include "log/log.h"
#include "smtpd.h"

static int result;

static void on_done(Session *s, bool allowed, void *userdata) {
        result = allowed;
}

/* Runs the loop until the hook's answer arrived (or the session went away). */
static void wait_answer(sd_event *e) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (result < 0 && now_usec(CLOCK_MONOTONIC) < deadline)
                CHECK(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        CHECK(result >= 0);
}

static void expect_line(FILE *f, const char *want) {
        char line[512];
        CHECK(fgets(line, sizeof line, f));
        line[strcspn(line, "\r\n")] = '\0';
        CHECK_STR(line, want);
}

int main(int argc, char *argv[]) {
        CHECK(argc == 2);
        log_open("smtpd");

        Conf *c = NULL;
        CHECK_INT(conf_new(&c), 0);
        const char *const params[] = {
                "myhostname", "postern.test", "mynetworks", "127.0.0.1/32",
                "smtpd_client_connection_count_limit", "0",
                "smtpd_client_auth_rate_limit", "2",
                "smtpd_client_new_tls_session_rate_limit", "1",
                "postern_socket_directory", argv[1], NULL,
        };
        for (const char *const *p = params; *p; p += 2)
                CHECK_INT(conf_set(c, p[0], p[1], NULL), 0);

        sd_event *e = NULL;
        CHECK(sd_event_new(&e) >= 0);
        Server srv = { .event = e };
        Listener l = { .server = &srv, .kind = LISTENER_SMTP, .name = (char *) "smtp", .fd = -1 };
        CHECK_INT(smtpd_settings_new(c, "smtp", &l.settings), 0);
        srv.listeners = &l;
        srv.n_listeners = 1;
        _cleanup_free_ char *path = daemon_socket_path(c, "anvil");
        CHECK(path);
        CHECK_INT(smtpd_anvil_new(&srv, path, &srv.anvil), 0);

        /* a client at 127.0.0.2 */
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0 && listen(lfd, 4) == 0);
        CHECK(getsockname(lfd, (struct sockaddr *) &sa, &sl) == 0);
        int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002) };
        CHECK(bind(cfd, (struct sockaddr *) &src, sizeof src) == 0);
        CHECK(connect(cfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        int sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        CHECK(sfd >= 0);
        FILE *client = fdopen(cfd, "r");
        CHECK(client);

        /* the connection is reported (a limit is on) and greeted once anvil answered */
        CHECK_INT(session_new(&l, sfd), 0);
        Session *s = srv.sessions;
        CHECK(s && session_phase(s) == PHASE_WAIT);
        while (session_phase(s) == PHASE_WAIT)
                CHECK(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        expect_line(client, "220 postern.test ESMTP Postern");

        /* AUTH: two allowed per time unit, the third refused with Postfix's reply */
        for (int i = 0; i < 3; i++) {
                result = -1;
                CHECK(smtpd_anvil_auth(s, on_done, NULL, NULL));
                CHECK(session_phase(s) == PHASE_WAIT);
                wait_answer(e);
                CHECK_INT(result, i < 2);
                CHECK(session_phase(s) == PHASE_COMMAND);
        }
        expect_line(client, "450 4.7.1 Error: too many AUTH commands from 127.0.0.2");

        /* STARTTLS check (counts nothing), a new session (counted), then both refuse */
        result = -1;
        CHECK(smtpd_anvil_newtls_status(s, on_done, NULL, NULL));
        wait_answer(e);
        CHECK_INT(result, 1);
        result = -1;
        CHECK(smtpd_anvil_newtls(s, on_done, NULL, NULL));
        wait_answer(e);
        CHECK_INT(result, 1);
        result = -1;
        CHECK(smtpd_anvil_newtls_status(s, on_done, NULL, NULL));
        wait_answer(e);
        CHECK_INT(result, 0);
        expect_line(client, "454 4.7.0 Error: too many new TLS sessions from 127.0.0.2");
        CHECK(session_phase(s) == PHASE_COMMAND);
        result = -1;
        CHECK(smtpd_anvil_newtls(s, on_done, NULL, NULL));
        wait_answer(e);
        CHECK_INT(result, 0);
        /* the 421 closes the session */
        for (int i = 0; i < 50 && srv.sessions; i++)
                CHECK(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        CHECK(!srv.sessions);
        expect_line(client, "421 4.7.0 postern.test Error: too many new TLS sessions from 127.0.0.2");
        char rest[16];
        CHECK(!fgets(rest, sizeof rest, client));   /* closed */

        /* let the disconnect reach anvil before the connection closes with us */
        for (int i = 0; i < 3; i++)
                (void) sd_event_run(e, 50 * USEC_PER_MSEC);
        fclose(client);
        safe_close(lfd);
        srv.anvil = smtpd_anvil_free(srv.anvil);
        smtpd_settings_unref(l.settings);
        sd_event_unref(e);
        conf_free(c);
        printf("ok\n");
        return 0;
}
