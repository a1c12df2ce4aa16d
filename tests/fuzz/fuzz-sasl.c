/* fuzz-sasl — the Dovecot auth client's reply parser (common/sasl/sasl-client.c): handshake
 * lines (VERSION, MECH, DONE), OK/FAIL/CONT replies with request ids, user=/reason= values with
 * Dovecot's tab escapes, overlong lines, and the connection ending. The input is what the
 * "Dovecot" side of a real unix socket sends; the client runs on an sd-event loop as in smtpd.
 *
 * Input:
 *   byte 0  bits 0-1 requests started before the server speaks (ids 1..n; PLAIN, LOGIN, ...),
 *           bit 2 a CONTINUE is answered with sasl_request_continue(), bit 3 it is cancelled
 *           (bit 2 wins), bit 4 the server keeps the connection open at the end (no EOF)
 *   rest    the server's bytes
 *
 * Checked: CONTINUE comes with the live request, OK/FAIL/TEMPFAIL without; a request gets at
 * most one final answer and nothing after it; after EOF every request that was not cancelled
 * has had its final answer (TEMPFAIL at the latest); the mechanism list holds at most 64
 * names, each a valid RFC 4422 mechanism name (1-20 letters, digits, '-', '_': smtpd puts them
 * into its EHLO reply); the state callback only reports 0 or a negative errno. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "sasl/sasl-client.h"

#define MAX_REQUESTS 3

typedef struct Track {
        SaslRequest *req;
        int finals;
        bool cancelled;
        unsigned flags;
} Track;

static char dir[] = "/tmp/fuzz-sasl-XXXXXX";
static char path[96];
static int listen_fd = -1;
static sd_event *ev;

static void cleanup(void) {
        unlink(path);
        rmdir(dir);
}

static void setup(void) {
        FUZZ_CHECK(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/auth-client", dir);
        atexit(cleanup);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(listen_fd >= 0);
        FUZZ_CHECK(bind(listen_fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        FUZZ_CHECK(listen(listen_fd, 16) == 0);
        FUZZ_CHECK(sd_event_new(&ev) >= 0);
}

static void on_reply(SaslRequest *r, SaslStatus st, const char *text, void *userdata) {
        Track *t = userdata;
        FUZZ_CHECK(t->finals == 0 && !t->cancelled);
        switch (st) {
        case SASL_STATUS_CONTINUE:
                FUZZ_CHECK(r && r == t->req && text);
                if (t->flags & 4) {
                        int k = sasl_request_continue(r, "dGVzdA==");
                        FUZZ_CHECK(k == 0 || k == -ENOTCONN || k == -ENOMEM);
                } else if (t->flags & 8) {
                        sasl_request_cancel(r);
                        t->cancelled = true;
                        t->req = NULL;
                }
                break;
        case SASL_STATUS_OK:
        case SASL_STATUS_FAIL:
        case SASL_STATUS_TEMPFAIL:
                FUZZ_CHECK(!r);
                t->finals++;
                t->req = NULL;
                break;
        default:
                FUZZ_CHECK(!"unknown SASL status");
        }
}

static void on_state(SaslClient *c, int error, void *userdata) {
        FUZZ_CHECK(error <= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const mechs[] = { "PLAIN", "LOGIN", "CRAM-MD5" };

        if (size < 1 || size > 65536)
                return 0;
        if (listen_fd < 0)
                setup();
        unsigned flags = data[0];
        SaslClient *c = NULL;
        FUZZ_CHECK(sasl_client_new(ev, path, 60ULL * 1000 * 1000, &c) == 0);
        sasl_client_set_state_callback(c, on_state, NULL);
        FUZZ_CHECK(sasl_client_connect(c) == 0);
        int srv = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        FUZZ_CHECK(srv >= 0);

        Track tracks[MAX_REQUESTS] = {};
        size_t n = flags & 3;
        for (size_t i = 0; i < n; i++) {
                tracks[i].flags = flags;
                SaslAuthInfo info = { .mech = mechs[i], .service = "smtp", .remote_ip = "192.0.2.1",
                                      .initial_response = i == 0 ? "AGFsaWNlAHNlY3JldA==" : NULL };
                FUZZ_CHECK(sasl_client_auth(c, &info, on_reply, &tracks[i], &tracks[i].req) == 0);
        }

        /* the server's side: everything at once (a unix socket buffers far more than 64 KiB is not
         * guaranteed, so write what fits while the client reads) */
        size_t off = 1;
        bool eof = !(flags & 0x10);
        for (int rounds = 0; rounds < 100000; rounds++) {
                if (off < size) {
                        ssize_t k = send(srv, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (k > 0)
                                off += (size_t) k;
                        else
                                FUZZ_CHECK(k < 0 && (errno == EAGAIN || errno == EPIPE || errno == ECONNRESET));
                        if (k < 0 && errno != EAGAIN)
                                off = size;   /* the client dropped the connection */
                }
                if (off >= size && eof && srv >= 0) {
                        close(srv);
                        srv = -1;
                }
                int r = sd_event_run(ev, 0);
                FUZZ_CHECK(r >= 0);
                if (r == 0 && off >= size)
                        break;
        }

        size_t nm = 0;
        const SaslMech *m = sasl_client_mechs(c, &nm);
        FUZZ_CHECK(nm <= 64);
        for (size_t i = 0; i < nm; i++) {
                /* RFC 4422 mechanism names: smtpd puts them into its EHLO reply and logs */
                FUZZ_CHECK(m[i].name && m[i].name[0] && strlen(m[i].name) <= 20);
                for (const char *p = m[i].name; *p; p++)
                        FUZZ_CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
        }
        if (eof)
                for (size_t i = 0; i < n; i++)
                        FUZZ_CHECK(tracks[i].cancelled || tracks[i].finals == 1);
        sasl_client_free(c);   /* frees what is still pending, without callbacks */
        if (srv >= 0)
                close(srv);
        return 0;
}
