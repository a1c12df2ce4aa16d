/* fuzz-smtpd-command — postern-smtpd's SMTP command state machine and DATA phase, without a
 * socket. A Session is built by hand around the real per-listener settings (smtpd-settings.c),
 * the input is appended to its input buffer the way on_io() does, and session_process_input() runs the real
 * code of smtpd-session.c, smtpd-command.c, smtpd-restrictions.c, smtpd-data.c and smtpd-bdat.c.
 * Variant 1 also turns smtputf8_enable off; variant 3 discards EHLO keywords (globally and, for
 * 192.0.2.1, through smtpd_discard_ehlo_keyword_address_maps). The commit
 * worker (smtpd-commit.c, a thread and SQLite) is replaced by stubs below that answer the way
 * complete_job() does, immediately.
 *
 * Input:
 *   byte 0  bits 0-1 settings variant (see variants[]), bits 2-3 listener (smtp, submission,
 *           submit, smtp), bits 4-5 client address (127.0.0.1, 192.0.2.1, ::1, 2001:db8::1),
 *           bit 6 the queue write fails (451), bit 7 feed in chunks of byte 1 + 1 bytes
 *   byte 1  bits 0-6 chunk size - 1, bit 7 a small data budget (4 KiB: 452 4.3.1 paths)
 *   rest    what the client sends
 *
 * Checked: every reply is one or more "NNN[ -]text\r\n" lines without stray CR/LF; a committed
 * message is LF-form text starting with our Received: header, and none of its recipients is the
 * null address; buffered input stays bounded (line_length_limit in the command phase, one piece
 * in DATA, nothing but a bounded line carry in BDAT); the data budget is never exceeded and is fully given back at the end; no leaks
 * (LeakSanitizer).
 * FUZZ_TRACE=1 prints the replies and committed messages; FUZZ_VERBOSE=1 keeps smtpd's log.
 *
 * fuzz-dsn.c and fuzz-smtpd-access.c include this file to reuse the harness: they rename the
 * entry point with SMTPD_FUZZ_ENTRY and see every final reply line and every committed job
 * through SMTPD_FUZZ_REPLY_HOOK(line, len) and SMTPD_FUZZ_JOB_HOOK(job); fuzz-smtpd-access.c
 * also replaces the listener's settings through SMTPD_FUZZ_SETTINGS(settings) and, with
 * SMTPD_FUZZ_ALLOW_PREPEND, lets PREPEND headers stand above Received:. */
#include <arpa/inet.h>
#include <errno.h>

#include "fuzz.h"
#include "smtpd.h"
#include "log/log.h"
#include "queue/queue.h"

/* ---- stubs for smtpd-commit.c ------------------------------------------------------------- */

static CommitJob *pending_job;
static bool fail_commits;

int committer_new(Server *srv, const char *queue_dir, const char *wakeup_path, Committer **ret) {
        return -EOPNOTSUPP;
}

Committer *committer_free(Committer *c) {
        return NULL;
}

void committer_set_wakeup_path(Committer *c, const char *path) {
}

void committer_drain(Committer *c) {
}

/* No message actions are set without restrictions or content checks configured. */
int commit_apply_actions(Session *s, CommitJob *j) {
        return s->tx.actions.discard ? 1 : 0;
}

void committer_submit(Committer *c, CommitJob *job) {
        FUZZ_CHECK(!pending_job);
        FUZZ_CHECK(job && job->session && job->session->job == job);
        pending_job = job;
}

/* ---- settings ----------------------------------------------------------------------------- */

static const char *const base_settings[] = {
        "myhostname", "mx.example.org",
        "mydestination", "$myhostname, localhost, example.org",
        "relay_domains", "relay.example",
        "local_recipient_maps", "inline:{ postmaster=x, alice=x, bob=x, { white space = x } }",
        "recipient_delimiter", "+",
        "mynetworks", "127.0.0.0/8 [::1]/128",
        NULL,
};

static const char *const variant_settings[4][24] = {
        { NULL },
        { "smtpd_forbid_bare_newline", "yes", "disable_vrfy_command", "no",
          "smtpd_forbid_bare_newline_exclusions", "192.0.2.0/24", "smtputf8_enable", "no", NULL },
        { "line_length_limit", "80", "message_size_limit", "600", "header_size_limit", "120",
          "smtpd_recipient_limit", "2", "smtpd_helo_required", "yes", "disable_vrfy_command", "no",
          "smtpd_hard_error_limit", "8", "smtpd_junk_command_limit", "4", NULL },
        { "submission/smtpd_relay_restrictions", "", "submission/smtpd_recipient_restrictions",
          "permit_mynetworks, reject_unlisted_recipient, reject_unauth_destination",
          "smtp/smtpd_relay_restrictions", "permit", "disable_vrfy_command", "no",
          "smtpd_client_restrictions", "permit_mynetworks, reject",
          "smtpd_discard_ehlo_keywords", "dsn, enhancedstatuscodes, size",
          "smtpd_discard_ehlo_keyword_address_maps", "inline:{ { 192.0.2.1 = chunking silent-discard } }", NULL },
};

static const char *const listener_names[] = { "smtp", "submission", "submit", "smtp" };
static const ListenerKind listener_kinds[] = { LISTENER_SMTP, LISTENER_SUBMISSION, LISTENER_SUBMIT, LISTENER_SMTP };

static SmtpdSettings *settings[4][4];   /* [variant][listener] */

static void setup(void) {
        log_open("smtpd");
        if (!getenv("FUZZ_VERBOSE"))
                log_set_max_level(-1);
        for (int v = 0; v < 4; v++) {
                Conf *c = NULL;
                FUZZ_CHECK(conf_new(&c) == 0);
                for (const char *const *p = base_settings; *p; p += 2)
                        FUZZ_CHECK(conf_set(c, p[0], p[1], NULL) == 0);
                for (const char *const *p = variant_settings[v]; *p; p += 2)
                        FUZZ_CHECK(conf_set(c, p[0], p[1], NULL) == 0);
                for (int l = 0; l < 4; l++)
                        FUZZ_CHECK(smtpd_settings_new(c, listener_names[l], &settings[v][l]) == 0);
                conf_free(c);
        }
}

/* ---- checks ------------------------------------------------------------------------------- */

static void check_replies(const StrBuf *out) {
        static int trace = -1;
        size_t i = 0;

        if (trace < 0)
                trace = !!getenv("FUZZ_TRACE");
        if (trace && out->len)
                fwrite(out->data, 1, out->len, stderr);
        while (i < out->len) {
                const char *line = out->data + i;
                const char *crlf = memmem(line, out->len - i, "\r\n", 2);
                FUZZ_CHECK(crlf);
                size_t n = (size_t) (crlf - line);
                FUZZ_CHECK(n >= 3);
                for (size_t k = 0; k < 3; k++)
                        FUZZ_CHECK(line[k] >= '0' && line[k] <= '9');
                FUZZ_CHECK(line[0] >= '2' && line[0] <= '5');
                FUZZ_CHECK(n == 3 || line[3] == ' ' || line[3] == '-');
                FUZZ_CHECK(!memchr(line, '\n', n) && !memchr(line, '\r', n) && !memchr(line, '\0', n));
#ifdef SMTPD_FUZZ_REPLY_HOOK
                if (n == 3 || line[3] == ' ')
                        SMTPD_FUZZ_REPLY_HOOK(line, n);
#endif
                i += n + 2;
        }
}

static void check_job(const CommitJob *j) {
        FUZZ_CHECK(j->content && j->content_len > 0);
        FUZZ_CHECK(j->content[j->content_len] == '\0');
        FUZZ_CHECK(j->content[j->content_len - 1] == '\n');
#ifdef SMTPD_FUZZ_ALLOW_PREPEND   /* PREPEND actions decided before DATA go above Received: */
        FUZZ_CHECK(strncmp(j->content, "Received: ", 10) == 0 || strstr(j->content, "\nReceived: "));
#else
        FUZZ_CHECK(strncmp(j->content, "Received: ", 10) == 0);
#endif
        FUZZ_CHECK(j->n_rcpts >= 1);
        const QueueRecipient *rc = j->rcpts;
        for (size_t i = 0; i < j->n_rcpts; i++)
                FUZZ_CHECK(rc[i].address && rc[i].address[0]);   /* never the null address */
        FUZZ_CHECK(j->queue_id[0]);
#ifdef SMTPD_FUZZ_JOB_HOOK
        SMTPD_FUZZ_JOB_HOOK(j);
#endif
}

/* What complete_job() in smtpd-commit.c does once the writer thread is done. */
static void complete_pending(Session *s) {
        CommitJob *j = pending_job;
        pending_job = NULL;
        check_job(j);
        if (getenv("FUZZ_TRACE"))
                fprintf(stderr, "[content %zu bytes]\n%s[end]\n", j->content_len, j->content);
        FUZZ_CHECK(session_phase(s) == PHASE_COMMIT && s->job == j);
        j->result = fail_commits ? -EIO : 0;
        session_resume(s, SESSION_RESUME_ONLY);   /* back to PHASE_COMMAND */
        if (j->result >= 0) {
                s->cmd_ok[CMD_DATA]++;
                s->junk_count = 0;
                session_reply(s, "250 2.0.0 Ok: queued as %s", j->queue_id);
        } else
                session_reply(s, "451 4.3.0 Error: queue file write error");
        commit_job_free(j);
}

/* session_run() without the write(): process, "send" the replies, repeat while paused on
 * output or on a commit. Returns false once the session is closing. */
static bool run(Session *s) {
        for (;;) {
                s->output_full = false;
                session_process_input(s);
                check_replies(&s->out);
                strbuf_done(&s->out);
                if (pending_job) {
                        complete_pending(s);
                        continue;
                }
                if (session_phase(s) == PHASE_CLOSING)
                        return false;
                if (s->output_full)
                        continue;
                break;
        }
        FUZZ_CHECK(session_phase(s) == PHASE_COMMAND || session_phase(s) == PHASE_DATA || session_phase(s) == PHASE_BDAT);
        FUZZ_CHECK(s->server->data_in_use <= s->server->data_budget);
        if (session_phase(s) == PHASE_COMMAND && !s->skip_line)
                FUZZ_CHECK(s->in.len <= s->settings->line_length_limit);
        if (session_phase(s) == PHASE_DATA)
                FUZZ_CHECK(s->in.len <= MAX(s->settings->line_length_limit, (size_t) 2048));
        if (session_phase(s) == PHASE_BDAT)   /* chunk bytes are consumed as they come; the carry is bounded */
                FUZZ_CHECK(s->in.len == 0 && (!s->tx.data || s->tx.data->carry.len <=
                           MAX(s->settings->line_length_limit, (size_t) 2048) + 1));
        return true;
}

#ifndef SMTPD_FUZZ_ENTRY
#define SMTPD_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
int SMTPD_FUZZ_ENTRY(const uint8_t *data, size_t size) {
        static bool initialised;
        static const uint8_t addrs[4][16] = {
                { 127, 0, 0, 1 }, { 192, 0, 2, 1 }, { [15] = 1 }, { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 },
        };

        if (size < 2 || size > 256 * 1024)
                return 0;
        if (!initialised) {
                setup();
                initialised = true;
        }
        unsigned variant = data[0] & 3, li = (data[0] >> 2) & 3, ai = (data[0] >> 4) & 3;
        fail_commits = data[0] & 0x40;
        size_t chunk = data[0] & 0x80 ? (size_t) (data[1] & 0x7f) + 1 : SIZE_MAX;
        const char *in = (const char *) data + 2;
        size_t n = size - 2;

        Server srv = { .data_budget = data[1] & 0x80 ? 4096 : 1ULL << 30 };
        Listener l = { .server = &srv, .kind = listener_kinds[li], .name = (char *) listener_names[li],
                       .fd = -1, .settings = settings[variant][li] };
#ifdef SMTPD_FUZZ_SETTINGS
        l.settings = SMTPD_FUZZ_SETTINGS(l.settings);   /* the includer's own settings */
#endif
        Session *s = calloc(1, sizeof(Session));
        FUZZ_CHECK(s);
        s->server = &srv;
        s->listener = &l;
        s->fd = -1;
        s->settings = smtpd_settings_ref(l.settings);
        s->last_cmd = "CONNECT";
        srv.sessions = s;
        srv.n_sessions = 1;
        if (l.kind == LISTENER_SUBMIT) {
                s->client.uid = ai == 0 ? 0 : ai == 1 ? 65534 : (uid_t) 4242;
                snprintf(s->client.name, sizeof s->client.name, "local");
                snprintf(s->client.id_text, sizeof s->client.id_text, "local[uid=%u]", (unsigned) s->client.uid);
        } else {
                s->client.family = ai < 2 ? AF_INET : AF_INET6;
                memcpy(s->client.addr_bytes, addrs[ai], 16);
                inet_ntop(s->client.family, s->client.addr_bytes, s->client.addr, sizeof s->client.addr);
                bool loopback = ai == 0 || ai == 2;
                snprintf(s->client.name, sizeof s->client.name, "%s", loopback ? "localhost" : "unknown");
                snprintf(s->client.id_text, sizeof s->client.id_text, "%s[%s]", s->client.name, s->client.addr);
        }
        /* session_new(): smtpd_forbid_bare_newline after its exclusions */
        s->client.bare_newline = s->settings->bare_newline;
        if (s->client.bare_newline == BARE_NEWLINE_YES &&
            smtpd_netlist_match(&s->settings->bare_newline_exclusions, &s->client) > 0)
                s->client.bare_newline = BARE_NEWLINE_NORMALIZE;
        session_reply(s, "220 %s", s->settings->banner);
        check_replies(&s->out);
        strbuf_done(&s->out);

        for (size_t off = 0; off < n;) {
                size_t k = MIN(chunk, n - off);
                /* on_io(): the rest of an overlong command line is dropped unbuffered */
                if (!(s->skip_line && session_phase(s) == PHASE_COMMAND && !memchr(in + off, '\n', k)))
                        FUZZ_CHECK(strbuf_append(&s->in, in + off, k) == 0);
                off += k;
                if (!run(s))
                        break;
        }
        session_free(s);
        FUZZ_CHECK(srv.n_sessions == 0 && !srv.sessions);
        FUZZ_CHECK(!pending_job);
        FUZZ_CHECK(srv.data_in_use == 0);   /* every byte charged to the budget came back */
        return 0;
}
