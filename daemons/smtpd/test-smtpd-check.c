/* test-smtpd-check.c — table-driven unit tests for the restriction engine (smtpd-check.c with
 * smtpd-restrictions.c and smtpd-access.c): each row is main.cf settings on top of a base, a
 * client (address, HELO name) and an envelope (sender, recipient), and the replies expected to
 * MAIL and RCPT. A session is built by hand around the real settings, as the fuzz targets do
 * (tests/fuzz/fuzz-smtpd-command.c), greeted with command_greet() and sent EHLO, MAIL and RCPT
 * through session_process_input(): the real engine answers, nothing is mocked. There is no
 * resolver and no socket, so only synchronous elements are covered. smtpd_hook_access is also
 * run on its own with only a client, as a connect-time stage would.
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
        /* address classes: each class's table, its code and text (smtpd-recipient.c) */
#define VALIAS "virtual_alias_domains", "valias.example", \
               "virtual_alias_maps", "inline:{ known@valias.example=alice@example.org, carol@example.org=alice }"
#define VMBOX "virtual_mailbox_domains", "vmbox.example", \
              "virtual_mailbox_maps", "inline:{ { known@vmbox.example = vmbox.example/known/ } }"
        { "virtual alias domain, known", { VALIAS, NULL }, OUTSIDE, "a@example.com",
          "known@valias.example", MAIL_OK, RCPT_OK },
        { "virtual alias domain, unknown", { VALIAS, NULL }, OUTSIDE, "a@example.com",
          "x@valias.example", MAIL_OK,
          "550 5.1.1 <x@valias.example>: Recipient address rejected: User unknown in virtual alias table" },
        { "virtual alias domain, unknown, own code", { VALIAS, "unknown_virtual_alias_reject_code", "450", NULL },
          OUTSIDE, "a@example.com", "x@valias.example", MAIL_OK,
          "450 4.1.1 <x@valias.example>: Recipient address rejected: User unknown in virtual alias table" },
        { "virtual alias of a local address", { VALIAS, NULL }, OUTSIDE, "a@example.com",
          "carol@example.org", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, known", { VMBOX, NULL }, OUTSIDE, "a@example.com",
          "known@vmbox.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, known with extension", { VMBOX, "recipient_delimiter", "+", NULL }, OUTSIDE,
          "a@example.com", "known+tag@vmbox.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, unknown", { VMBOX, NULL }, OUTSIDE, "a@example.com",
          "x@vmbox.example", MAIL_OK,
          "550 5.1.1 <x@vmbox.example>: Recipient address rejected: User unknown in virtual mailbox table" },
        { "virtual mailbox domain, a virtual alias counts", { VMBOX,
            "virtual_alias_maps", "inline:{ alias@vmbox.example=known@vmbox.example }", NULL },
          OUTSIDE, "a@example.com", "alias@vmbox.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, a canonical mapping counts", { VMBOX,
            "canonical_maps", "inline:{ old@vmbox.example=known@vmbox.example }", NULL },
          OUTSIDE, "a@example.com", "old@vmbox.example", MAIL_OK, RCPT_OK },
        { "relay domain, a recipient_canonical mapping counts", { "relay_recipient_maps", "inline:{ ok@relay.example=x }",
            "recipient_canonical_maps", "inline:{ @relay.example=@elsewhere.example }", NULL },
          OUTSIDE, "a@example.com", "x@relay.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, @domain catch-all", { "virtual_mailbox_domains", "vmbox.example",
            "virtual_mailbox_maps", "inline:{ @vmbox.example=x }", NULL },
          OUTSIDE, "a@example.com", "anyone@vmbox.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, no table: all known", { "virtual_mailbox_domains", "vmbox.example", NULL },
          OUTSIDE, "a@example.com", "anyone@vmbox.example", MAIL_OK, RCPT_OK },
        { "virtual mailbox domain, without the table name", { VMBOX, "show_user_unknown_table_name", "no",
            "unknown_virtual_mailbox_reject_code", "551", NULL },
          OUTSIDE, "a@example.com", "x@vmbox.example", MAIL_OK,
          "551 5.1.1 <x@vmbox.example>: Recipient address rejected: User unknown" },
        { "relay domain, no relay_recipient_maps", { NULL }, OUTSIDE, "a@example.com",
          "anyone@relay.example", MAIL_OK, RCPT_OK },
        { "relay domain, known", { "relay_recipient_maps", "inline:{ ok@relay.example=x }", NULL }, OUTSIDE,
          "a@example.com", "ok@relay.example", MAIL_OK, RCPT_OK },
        { "relay domain, unknown", { "relay_recipient_maps", "inline:{ ok@relay.example=x }", NULL }, OUTSIDE,
          "a@example.com", "x@relay.example", MAIL_OK,
          "550 5.1.1 <x@relay.example>: Recipient address rejected: User unknown in relay recipient table" },
        { "relay domain, unknown, own code", { "relay_recipient_maps", "inline:{ ok@relay.example=x }",
            "unknown_relay_recipient_reject_code", "554", NULL }, OUTSIDE,
          "a@example.com", "x@sub.relay.example", MAIL_OK,
          "554 5.1.1 <x@sub.relay.example>: Recipient address rejected: User unknown in relay recipient table" },
        { "default domain: not checked", { "relay_recipient_maps", "inline:{ ok@relay.example=x }", NULL }, INSIDE,
          "a@example.com", "x@elsewhere.example", MAIL_OK, RCPT_OK },
        { "unknown local user, no table name", { "show_user_unknown_table_name", "no", NULL }, OUTSIDE,
          "a@example.com", "bob@example.org", MAIL_OK,
          "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown" },
        { "local: postmaster and MAILER-DAEMON always known", { "local_recipient_maps", "inline:{ alice=x }", NULL },
          OUTSIDE, "a@example.com", "MAILER-DAEMON@example.org", MAIL_OK, RCPT_OK },
        { "unlisted sender in a virtual mailbox domain",
          { VMBOX, "smtpd_reject_unlisted_sender", "yes", NULL }, OUTSIDE, "x@vmbox.example",
          "alice@example.org", MAIL_OK,
          "550 5.1.0 <x@vmbox.example>: Sender address rejected: User unknown in virtual mailbox table" },
        { "reject_unlisted_recipient off",
          { VMBOX, "smtpd_reject_unlisted_recipient", "no", NULL }, OUTSIDE, "a@example.com",
          "x@vmbox.example", MAIL_OK, RCPT_OK },
        { "reject_unlisted_recipient in a list",
          { VMBOX, "smtpd_reject_unlisted_recipient", "no",
            "smtpd_recipient_restrictions", "reject_unlisted_recipient", NULL }, OUTSIDE, "a@example.com",
          "x@vmbox.example", MAIL_OK,
          "550 5.1.1 <x@vmbox.example>: Recipient address rejected: User unknown in virtual mailbox table" },
        /* relocated_maps */
#define RELOC "relocated_maps", "inline:{ { old@vmbox.example = new@elsewhere.example }, " \
                "{ gone = a street address }, { @moved.example = moved-away.example } }"
        { "relocated, user@domain", { VMBOX, RELOC, NULL }, OUTSIDE, "a@example.com", "old@vmbox.example", MAIL_OK,
          "550 5.1.6 <old@vmbox.example>: Recipient address rejected: User has moved to new@elsewhere.example" },
        { "relocated, user in a local domain", { RELOC, NULL }, OUTSIDE, "a@example.com", "gone@example.org",
          MAIL_OK, "550 5.1.6 <gone@example.org>: Recipient address rejected: User has moved to a street address" },
        { "relocated, user in a relay domain: not looked up", { RELOC, NULL }, OUTSIDE, "a@example.com",
          "gone@relay.example", MAIL_OK, RCPT_OK },
        { "relocated, @domain", { RELOC, "relay_domains", "moved.example", NULL }, OUTSIDE, "a@example.com",
          "x@moved.example", MAIL_OK,
          "550 5.1.6 <x@moved.example>: Recipient address rejected: User has moved to moved-away.example" },
        { "relocated, a virtual alias wins", { RELOC, "virtual_alias_maps", "inline:{ gone=alice }", NULL }, OUTSIDE,
          "a@example.com", "gone@example.org", MAIL_OK, RCPT_OK },
        /* reject_unauth_destination: the virtual classes are ours too */
        { "virtual domains are authorised destinations",
          { VMBOX, "smtpd_relay_restrictions", "reject_unauth_destination", NULL }, OUTSIDE, "a@example.com",
          "known@vmbox.example", MAIL_OK, RCPT_OK },
        /* a table that cannot be read: 451, never 550 */
        { "virtual_mailbox_maps cannot be read", { "virtual_mailbox_domains", "vmbox.example",
            "virtual_mailbox_maps", "texthash:/nonexistent/vmailbox", NULL }, OUTSIDE, "a@example.com",
          "x@vmbox.example", MAIL_OK, "451 4.3.0 <x@vmbox.example>: Temporary lookup failure" },
        { "virtual_mailbox_domains cannot be read", { "virtual_mailbox_domains", "texthash:/nonexistent/domains",
            NULL }, OUTSIDE, "a@example.com", "x@elsewhere.example", MAIL_OK,
          "451 4.3.0 <x@elsewhere.example>: Temporary lookup failure" },
        { "local mail flows while virtual_mailbox_domains cannot be read",
          { "virtual_mailbox_domains", "texthash:/nonexistent/domains", NULL }, OUTSIDE, "a@example.com",
          "alice@example.org", MAIL_OK, RCPT_OK },
        { "relocated_maps cannot be read", { RELOC, "relocated_maps", "texthash:/nonexistent/relocated", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "451 4.3.0 <alice@example.org>: Temporary lookup failure" },
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
        /* the keys smtpd_hook_access builds */
        { "check_client_access by network prefix",
          { "smtpd_client_restrictions", "check_client_access inline:{ 192.0.2=REJECT }", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied" },
        { "check_sender_access parent domain",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ bad.example=REJECT }", NULL },
          OUTSIDE, "any@sub.bad.example", "alice@example.org", MAIL_OK,
          "554 5.7.1 <any@sub.bad.example>: Sender address rejected: Access denied" },
        { "check_sender_access parent domain off",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ bad.example=REJECT }",
            "parent_domain_matches_subdomains", "", NULL },
          OUTSIDE, "any@sub.bad.example", "alice@example.org", MAIL_OK, RCPT_OK },
        { "check_recipient_access without the extension",
          { "recipient_delimiter", "+",
            "smtpd_recipient_restrictions", "check_recipient_access inline:{ alice@example.org=REJECT }", NULL },
          OUTSIDE, "a@example.com", "alice+x@example.org", MAIL_OK,
          "554 5.7.1 <alice+x@example.org>: Recipient address rejected: Access denied" },
        { "check_recipient_access user@",
          { "smtpd_recipient_restrictions", "check_recipient_access inline:{ alice@=REJECT }", NULL },
          OUTSIDE, "a@example.com", "alice@example.org", MAIL_OK,
          "554 5.7.1 <alice@example.org>: Recipient address rejected: Access denied" },
        { "check_sender_access null sender",
          { "smtpd_sender_restrictions", "check_sender_access inline:{ <>=REJECT }", NULL },
          OUTSIDE, "", "alice@example.org", MAIL_OK,
          "554 5.7.1 <>: Sender address rejected: Access denied" },
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

/* smtpd_hook_access with only a client and no transaction, as a connect-time stage would run
 * it: it answers at once with the table value, or NULL when no key matched. */
static void test_access_hook_client_only(void) {
        Conf *c = NULL;
        SmtpdSettings *st = NULL;
        Table *t = NULL;
        char *reason = NULL;

        CHECK_INT(conf_new(&c), 0);
        CHECK_INT(smtpd_settings_new(c, "smtp", &st), 0);
        conf_free(c);
        CHECK_INT(table_open("inline:{ { 192.0.2=REJECT go away }, client.example=HOLD }", 0, &t, &reason), 0);

        const struct { const char *addr, *name, *want; } cases[] = {
                { "192.0.2.7", "unknown", "REJECT go away" },   /* network prefix */
                { "198.51.100.1", "mx.client.example", "HOLD" },   /* parent domain of the name */
                { "198.51.100.1", "unknown", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                SmtpdClient cl = { .family = AF_INET };
                snprintf(cl.addr, sizeof cl.addr, "%s", cases[i].addr);
                snprintf(cl.name, sizeof cl.name, "%s", cases[i].name);
                snprintf(cl.reverse_name, sizeof cl.reverse_name, "%s", cases[i].name);
                const SmtpdHookArgs args = { .settings = st, .stage = STAGE_CONNECT,
                                             .element = "check_client_access", .table = t };
                SmtpdHookOp *op = NULL;
                char *action = (char *) "unset";
                CHECK_INT(smtpd_hook_access.start(&cl, NULL, &args, NULL, NULL, &op, &action), 1);
                CHECK(!op);
                if (cases[i].want) {
                        CHECK_STR(action, cases[i].want);
                        free(action);
                } else
                        CHECK(!action);
        }
        table_free(t);
        smtpd_settings_unref(st);
}

int main(void) {
        log_open("test-smtpd-check");
        if (!getenv("TEST_VERBOSE"))
                log_set_max_level(-1);
        test_access_hook_client_only();
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                run_row(&rows[i]);
        if (failures > 0)
                fprintf(stderr, "%u of %zu rows failed\n", failures, ELEMENTSOF(rows));
        return failures > 0;
}
