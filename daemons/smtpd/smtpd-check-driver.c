/* smtpd-check-driver.c — runs smtpd's asynchronous restriction checks (smtpd-dnsbl.c,
 * smtpd-policy.c) outside postern-smtpd, for tests until the restriction engine calls them:
 *
 *   smtpd-check-driver MAIN.CF CLIENT_ADDR NAME REVERSE_NAME HELO SENDER CHECK...
 *
 * NAME/REVERSE_NAME: a host name (status ok), or "unknown" / "unknown:temp" (lookup failed
 * for good / temporarily), "unknown:forged". Each CHECK is "what|arg|subject" for a DNS check
 * or "check_policy_service|service|state|recipient" for a policy request; the checks run one
 * after another in one event loop (so policy connections are reused) and each result is
 * printed as "<what>: <action or DUNNO>". "sleep|SECONDS" pauses between checks. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd-check.h"
#include "log/log.h"

/* smtpd-peername.c is not linked; the session helpers the checks do not need are absent. */
static sd_event *event;
static char **checks;
static int n_checks, next_check;
static Session *sess;
static SmtpdCheck *current;

static void run_next(void);

static void on_done(Session *s, const char *action, void *userdata) {
        printf("%s: %s\n", (const char *) userdata, action ? action : "DUNNO");
        fflush(stdout);
        current = NULL;
        run_next();
}

static int on_sleep_done(sd_event_source *src, uint64_t usec, void *userdata) {
        sd_event_source_disable_unref(src);
        run_next();
        return 0;
}

static void run_next(void) {
        if (next_check >= n_checks) {
                sd_event_exit(event, 0);
                return;
        }
        char *spec = checks[next_check++];
        char *f[4] = { NULL };
        int n = 0;
        for (char *p = spec; p && n < 4; n++) {
                f[n] = p;
                p = strchr(p, '|');
                if (p)
                        *p++ = '\0';
        }
        for (int i = 0; i < n; i++)
                if (f[i] && !*f[i])
                        f[i] = NULL;
        int r;
        if (streq(f[0], "sleep")) {
                sd_event_source *src = NULL;
                r = sd_event_add_time_relative(event, &src, CLOCK_MONOTONIC,
                                               (uint64_t) (atof(f[1]) * USEC_PER_SEC), 1000, on_sleep_done, NULL);
                if (r < 0)
                        exit(1);
                return;
        }
        if (streq(f[0], "check_policy_service"))
                r = smtpd_check_policy_start(sess, f[1], f[2] ? f[2] : "RCPT", sess->sender, f[3], on_done, f[0], &current);
        else
                r = smtpd_check_dns_start(sess, f[0], f[1], f[2], on_done, f[0], &current);
        if (r < 0) {
                printf("%s: error %s\n", f[0], strerror(-r));
                fflush(stdout);
                run_next();
        }
}

static void set_name(char *buf, size_t size, int *status, const char *arg) {
        const char *colon = strchr(arg, ':');
        snprintf(buf, size, "%.*s", colon ? (int) (colon - arg) : (int) strlen(arg), arg);
        *status = !colon ? (streq(arg, "unknown") ? SMTPD_PEER_PERM : SMTPD_PEER_OK) :
                  streq(colon + 1, "temp") ? SMTPD_PEER_TEMP : SMTPD_PEER_FORGED;
}

int main(int argc, char *argv[]) {
        _cleanup_(conf_freep) Conf *conf = NULL;
        _cleanup_strv_free_ char **msgs = NULL;
        Server srv = { 0 };
        Listener l = { .server = &srv, .kind = LISTENER_SMTP, .name = (char *) "smtp" };
        Session s = { .server = &srv, .listener = &l };
        SmtpdSettings set = { .n_ref = 1 };

        if (argc < 7) {
                fprintf(stderr, "usage: %s MAIN.CF CLIENT_ADDR NAME REVERSE_NAME HELO SENDER CHECK...\n", argv[0]);
                return 2;
        }
        log_open("smtpd");
        if (conf_load(argv[1], &conf, &msgs) < 0)
                return fprintf(stderr, "cannot load %s\n", argv[1]), 1;
        if (smtpd_dnsbl_settings_load(conf, NULL, &set) < 0 || smtpd_policy_settings_load(conf, NULL, &set) < 0)
                return 1;
        set.myhostname = strdup(strempty(conf_get(conf, "myhostname")));
        s.settings = &set;
        if (inet_pton(AF_INET, argv[2], s.addr_bytes) == 1)
                s.family = AF_INET;
        else if (inet_pton(AF_INET6, argv[2], s.addr_bytes) == 1)
                s.family = AF_INET6;
        snprintf(s.addr, sizeof(s.addr), "%s", s.family ? argv[2] : "");
        set_name(s.name, sizeof(s.name), &s.name_status, argv[3]);
        set_name(s.reverse_name, sizeof(s.reverse_name), &s.reverse_name_status, argv[4]);
        snprintf(s.id_text, sizeof(s.id_text), "%s[%s]", s.name, s.addr);
        s.helo = *argv[5] ? argv[5] : NULL;
        s.sender = argv[6];
        s.in_mail = true;
        snprintf(s.queue_id, sizeof(s.queue_id), "%s", "1TESTQUEUEID");
        sess = &s;

        if (sd_event_new(&event) < 0 || dns_resolver_new(event, 2, 0, &srv.resolver) < 0)
                return 1;
        srv.event = event;
        checks = argv + 7;
        n_checks = argc - 7;
        run_next();
        int r = sd_event_loop(event);
        smtpd_check_cancel(current);
        smtpd_policy_shutdown();
        srv.resolver = dns_resolver_free(srv.resolver);
        smtpd_check_settings_done(&set);
        free(set.myhostname);
        event = sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
