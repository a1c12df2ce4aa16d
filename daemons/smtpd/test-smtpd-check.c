/* test-smtpd-check.c — table-driven unit tests for the restriction engine (smtpd-check.c with
 * smtpd-restrictions.c and smtpd-access.c): each row is main.cf settings on top of a base, a
 * client (address, HELO name) and an envelope (sender, recipient), and the replies expected to
 * MAIL and RCPT. A session is built by hand around the real settings, as the fuzz targets do
 * (tests/fuzz/fuzz-smtpd-command.c), greeted with command_greet() and sent EHLO, MAIL and RCPT
 * through session_process_input(): the real engine answers, nothing is mocked. There is no
 * resolver and no socket, so only synchronous elements are covered.
 *
 * TEST_VERBOSE=1 keeps smtpd's log (the reject/warn lines) on stderr. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "smtpd.h"
#include "basic/tests.h"
#include "log/log.h"

typedef struct Row {
        const char *what;
        const char *conf[16];    /* name, value, ... on top of base[] (NULL-terminated) */
        const char *addr;        /* the client's IPv4 address */
        const char *helo, *sender, *rcpt;
        const char *mail_reply;  /* expected reply to MAIL FROM (a prefix) */
        const char *rcpt_reply;  /* ... and to RCPT TO */
} Row;

static const char *const base[] = {
        "myhostname", "mx.example.org",
        "mydestination", "$myhostname, localhost, example.org",
        "relay_domains", "relay.example",
        "mynetworks", "127.0.0.0/8",
        "local_recipient_maps", "inline:{ postmaster=x, alice=x }",
        NULL,
};

/* the client: outside or inside mynetworks, with a fully-qualified HELO name */
#define OUTSIDE "192.0.2.1", "client.example"
#define INSIDE "127.0.0.1", "client.example"
#define MAIL_OK "250 2.1.0 Ok"
#define RCPT_OK "250 2.1.5 Ok"
/* the default smtpd_relay_restrictions end in defer_unauth_destination */
#define RELAY_DEFERRED(r) "454 4.7.1 <" r ">: Relay access denied"

static const Row rows[] = {
        /* the default relay restrictions: permit_mynetworks, reject_unauth_destination */
        { "relay from mynetworks", { NULL }, INSIDE, "a@example.com",
          "x@elsewhere.example", MAIL_OK, RCPT_OK },
        { "relay from outside", { NULL }, OUTSIDE, "a@example.com",
          "x@elsewhere.example", MAIL_OK, RELAY_DEFERRED("x@elsewhere.example") },
        { "local recipient from outside", { NULL }, OUTSIDE, "a@example.com",
          "alice@example.org", MAIL_OK, RCPT_OK },
        { "relay_domains from outside", { NULL }, OUTSIDE, "a@example.com",
          "x@relay.example", MAIL_OK, RCPT_OK },
        { "unknown local user", { NULL }, OUTSIDE, "a@example.com",
          "bob@example.org", MAIL_OK,
          "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in local recipient table" },
        { "mynetworks changed", { "mynetworks", "192.0.2.0/24", NULL }, OUTSIDE,
          "a@example.com", "x@elsewhere.example", MAIL_OK, RCPT_OK },
        { "reject_unauth_destination",
          { "smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination", NULL },
          OUTSIDE, "a@example.com", "x@elsewhere.example", MAIL_OK,
          "554 5.7.1 <x@elsewhere.example>: Relay access denied" },

        /* check_*_access with inline tables */
        { "check_sender_access REJECT",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ spam@bad.example=REJECT }", NULL },
          OUTSIDE, "spam@bad.example", "alice@example.org", MAIL_OK,
          "554 5.7.1 <spam@bad.example>: Sender address rejected: Access denied" },
        { "check_sender_access domain with text",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ { bad.example=550 go away } }", NULL },
          OUTSIDE, "any@bad.example", "alice@example.org", MAIL_OK,
          "550 5.7.1 <any@bad.example>: Sender address rejected: go away" },
        { "check_sender_access no match",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ spam@bad.example=REJECT }", NULL },
          OUTSIDE, "ok@good.example", "alice@example.org", MAIL_OK, RCPT_OK },
        { "check_client_access by address",
          { "smtpd_client_restrictions", "check_client_access inline:{ 192.0.2.1=REJECT }", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied" },
        { "check_client_access OK overrides relay",
          { "smtpd_relay_restrictions", "check_client_access inline:{ 192.0.2.1=OK }, reject_unauth_destination", NULL },
          OUTSIDE, "a@example.com", "x@elsewhere.example", MAIL_OK, RCPT_OK },
        { "check_helo_access DEFER",
          { "smtpd_helo_restrictions", "check_helo_access inline:{ client.example=DEFER }", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "450 4.7.1 <client.example>: Helo command rejected: Access denied" },
        { "check_recipient_access 4NN",
          { "smtpd_recipient_restrictions", "check_recipient_access inline:{ { alice@example.org=452 try later } }", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "452 4.7.1 <alice@example.org>: Recipient address rejected: try later" },

        /* reject_non_fqdn_* */
        { "reject_non_fqdn_sender",
          { "smtpd_sender_restrictions", "reject_non_fqdn_sender", NULL },
          OUTSIDE, "a@localpart", "alice@example.org", MAIL_OK,
          "504 5.5.2 <a@localpart>: Sender address rejected: need fully-qualified address" },
        { "reject_non_fqdn_recipient",
          { "smtpd_recipient_restrictions", "reject_non_fqdn_recipient", NULL },
          INSIDE, "a@example.com", "x@nodots", MAIL_OK,
          "504 5.5.2 <x@nodots>: Recipient address rejected: need fully-qualified address" },
        { "reject_non_fqdn_helo_hostname",
          { "smtpd_helo_restrictions", "reject_non_fqdn_helo_hostname", NULL },
          "192.0.2.1", "client", "a@example.com", "alice@example.org", MAIL_OK,
          "504 5.5.2 <client>: Helo command rejected: need fully-qualified hostname" },
        { "reject_non_fqdn_helo_hostname, a FQDN",
          { "smtpd_helo_restrictions", "reject_non_fqdn_helo_hostname", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK, RCPT_OK },

        /* defer_if_permit, warn_if_reject */
        { "defer_if_permit, then permitted",   /* deferred for the sender list (text not pinned) */
          { "smtpd_sender_restrictions", "defer_if_permit", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "450 4.7.1 <a@example.com>: Sender address rejected: " },
        { "defer_if_permit, then rejected",
          { "smtpd_sender_restrictions", "defer_if_permit", NULL },
          OUTSIDE, "a@example.com", "x@elsewhere.example", MAIL_OK,
          RELAY_DEFERRED("x@elsewhere.example") },
        { "warn_if_reject only logs",
          { "smtpd_sender_restrictions", "warn_if_reject reject_non_fqdn_sender", NULL },
          OUTSIDE, "a@localpart", "alice@example.org", MAIL_OK, RCPT_OK },

        /* restriction classes */
        { "restriction class from a table",
          { "smtpd_restriction_classes", "strict",
            "strict", "check_sender_access inline:{ spam@bad.example=REJECT }",
            "smtpd_recipient_restrictions", "check_recipient_access inline:{ alice@example.org=strict }", NULL },
          INSIDE, "spam@bad.example", "alice@example.org", MAIL_OK,
          "554 5.7.1 <spam@bad.example>: Sender address rejected: Access denied" },
        { "restriction class, other recipient",
          { "smtpd_restriction_classes", "strict",
            "strict", "check_sender_access inline:{ spam@bad.example=REJECT }",
            "smtpd_recipient_restrictions", "check_recipient_access inline:{ alice@example.org=strict }", NULL },
          INSIDE, "spam@bad.example", "postmaster@example.org", MAIL_OK, RCPT_OK },

        /* smtpd_delay_reject = no: each list answers its own command */
        { "smtpd_delay_reject = no, sender refused at MAIL",
          { "smtpd_delay_reject", "no",
            "smtpd_sender_restrictions", "check_sender_access inline:{ spam@bad.example=REJECT }", NULL },
          OUTSIDE, "spam@bad.example", "alice@example.org",
          "554 5.7.1 <spam@bad.example>: Sender address rejected: Access denied",
          "503 5.5.1 Error: need MAIL command" },
        { "smtpd_delay_reject = yes, sender refused at RCPT",
          { "smtpd_delay_reject", "yes",
            "smtpd_sender_restrictions", "check_sender_access inline:{ spam@bad.example=REJECT }", NULL },
          OUTSIDE, "spam@bad.example", "alice@example.org", MAIL_OK,
          "554 5.7.1 <spam@bad.example>: Sender address rejected: Access denied" },
};

/* The last line of each reply in out, in order ("250-..." continuation lines skipped). */
static size_t final_lines(const StrBuf *out, char lines[][512], size_t max) {
        size_t n = 0, i = 0;
        while (i < out->len && n < max) {
                const char *p = out->data + i;
                const char *crlf = memmem(p, out->len - i, "\r\n", 2);
                CHECK(crlf);
                size_t len = (size_t) (crlf - p);
                if (len < 4 || p[3] != '-')
                        snprintf(lines[n++], sizeof lines[0], "%.*s", (int) len, p);
                i += len + 2;
        }
        return n;
}

static unsigned failures;

static void run_row(const Row *r) {
        Conf *c = NULL;
        SmtpdSettings *st = NULL;
        char path[64], **messages = NULL;

        /* a main.cf (restriction class names are parameters of their own, which conf_set()
         * does not know) */
        int fd = memfd_create("main.cf", MFD_CLOEXEC);
        CHECK(fd >= 0);
        FILE *f = fdopen(fd, "w");
        CHECK(f);
        for (const char *const *p = base; *p; p += 2)
                fprintf(f, "%s = %s\n", p[0], p[1]);
        for (const char *const *p = r->conf; *p; p += 2)
                fprintf(f, "%s = %s\n", p[0], p[1]);
        CHECK(fflush(f) == 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        CHECK_INT(conf_load(path, &c, &messages), 0);
        strv_free(messages);
        fclose(f);
        CHECK_INT(smtpd_settings_new(c, "smtp", &st), 0);
        conf_free(c);

        Server srv = { .data_budget = 1 << 20 };
        Listener l = { .server = &srv, .kind = LISTENER_SMTP, .name = (char *) "smtp", .fd = -1,
                       .settings = st };
        Session *s = calloc(1, sizeof(Session));
        CHECK(s);
        s->server = &srv;
        s->listener = &l;
        s->fd = -1;
        s->settings = smtpd_settings_ref(st);
        s->last_cmd = "CONNECT";
        srv.sessions = s;
        srv.n_sessions = 1;
        s->client.family = AF_INET;
        CHECK(inet_pton(AF_INET, r->addr, s->client.addr_bytes) == 1);
        snprintf(s->client.addr, sizeof s->client.addr, "%s", r->addr);
        snprintf(s->client.name, sizeof s->client.name, "unknown");
        snprintf(s->client.reverse_name, sizeof s->client.reverse_name, "unknown");
        s->client.name_status = s->client.reverse_name_status = SMTPD_PEER_PERM;
        snprintf(s->client.id_text, sizeof s->client.id_text, "unknown[%s]", r->addr);
        s->client.bare_newline = st->bare_newline;

        command_greet(s);
        /* EHLO first: MAIL and RCPT may then be pipelined (PIPELINING is offered) */
        char in[1024];
        snprintf(in, sizeof in, "EHLO %s\r\n", r->helo);
        CHECK_INT(strbuf_puts(&s->in, in), 0);
        session_process_input(s);
        snprintf(in, sizeof in, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n", r->sender, r->rcpt);
        CHECK_INT(strbuf_puts(&s->in, in), 0);
        session_process_input(s);
        CHECK(!session_waiting(s));   /* no asynchronous element in these lists */

        char lines[8][512];
        size_t n = final_lines(&s->out, lines, 8);
        if (n != 4 || strncmp(lines[2], r->mail_reply, strlen(r->mail_reply)) != 0 ||
            strncmp(lines[3], r->rcpt_reply, strlen(r->rcpt_reply)) != 0) {
                fprintf(stderr, "%s: got %zu replies:\n", r->what, n);
                for (size_t i = 0; i < n; i++)
                        fprintf(stderr, "  %s\n", lines[i]);
                fprintf(stderr, "expected MAIL \"%s\", RCPT \"%s\"\n", r->mail_reply, r->rcpt_reply);
                failures++;
        } else {
                CHECK(strncmp(lines[0], "220 ", 4) == 0);
                CHECK(strncmp(lines[1], "250 ", 4) == 0);
        }

        session_free(s);
        CHECK_INT(srv.n_sessions, 0);
        smtpd_settings_unref(st);
}

int main(void) {
        log_open("test-smtpd-check");
        if (!getenv("TEST_VERBOSE"))
                log_set_max_level(-1);
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                run_row(&rows[i]);
        if (failures > 0)
                fprintf(stderr, "%u of %zu rows failed\n", failures, ELEMENTSOF(rows));
        return failures > 0;
}
