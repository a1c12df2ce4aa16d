/* sendmail.c — postern-sendmail, the Sendmail-compatible command line (also installed as
 * postern-mailq and postern-newaliases, which act by argv[0]).
 *
 *   postern-sendmail [-t] [-i|-oi] [-f sender] [-F name] [-N dsn] [-R ret] [-V envid]
 *                    [-B type] [-C main.cf|dir] [-o<x> ...] [recipient ...]   submit a message
 *   postern-sendmail -bs        speak SMTP on stdin/stdout (relayed to the submit socket)
 *   postern-sendmail -bv addr   ask the server whether it accepts each address, mail the report
 *   postern-sendmail -bp        list the queue (= postern-mailq = posternctl queue)
 *   postern-sendmail -bi        check alias_maps (= postern-newaliases)
 *   postern-sendmail -q         ask postern-qmgr to try all deferred mail now
 *   postern-sendmail -qRsite    ... only the deferred mail for site (postqueue -s, ETRN)
 *   postern-sendmail -qIid      ... only the deferred recipients of message id (postqueue -i)
 *
 * A message is submitted over ESMTP to postern-smtpd's submit socket; the server takes our uid
 * from SO_PEERCRED. Nothing is ever dropped silently: when the server cannot take the message
 * this says so on stderr and exits with a sysexits(3) code (75 EX_TEMPFAIL for "try again"). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "basic/io-util.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "daemon/daemon.h"
#include "ipc/ipc.h"
#include "mail/address.h"
#include "mail/xtext.h"
#include "sendmail.h"

static const char *program = "postern-sendmail";

typedef enum Mode {
        MODE_DELIVER,     /* -bm (default) */
        MODE_SMTP,        /* -bs */
        MODE_VERIFY,      /* -bv */
        MODE_LIST,        /* -bp, mailq */
        MODE_ALIASES,     /* -bi, newaliases */
        MODE_FLUSH,       /* -q */
} Mode;

typedef struct Options {
        Mode mode;
        bool extract;         /* -t */
        bool ignore_dots;     /* -i, -oi */
        bool verbose;         /* -v */
        const char *sender;   /* -f / -r */
        const char *full_name;/* -F */
        const char *notify;   /* -N */
        const char *ret;      /* -R */
        const char *envid;    /* -V */
        const char *body;     /* -B */
        const char *config;   /* -C */
        const char *flush_site; /* -qR site / -qS site */
        const char *flush_id;   /* -qI queueid */
        char **args;          /* recipients (or -bp arguments) */
} Options;

static void usage(void) {
        fprintf(stderr,
                "usage: %s [-t] [-i|-oi] [-f sender] [-F full-name] [-N dsn] [-R full|hdrs] [-V envid]\n"
                "       %*s [-bm|-bs|-bv|-bp|-bi|-q|-qRsite|-qIqueueid] [recipient ...]\n",
                program, (int) strlen(program), "");
}

/* Takes an option's value from the rest of the same argument or the next one. */
static const char *opt_value(int argc, char *argv[], int *i, const char *rest) {
        if (*rest)
                return rest;
        if (*i + 1 < argc)
                return argv[++*i];
        return NULL;
}

/* The options without a value: -t, -i, -v, and the no-ops -n (no aliasing), -m (me too), -U
 * (initial submission), -G (gateway submission). */
static void parse_flag(Options *o, char c) {
        if (c == 't')
                o->extract = true;
        else if (c == 'i')
                o->ignore_dots = true;
        else if (c == 'v')
                o->verbose = true;
}

/* -C names main.cf or, as with Postfix's sendmail, its directory (-C /etc/postern-NAME for an
 * instance). */
static const char *config_file(const char *v) {
        static char path[PATH_MAX];
        struct stat st;
        if (stat(v, &st) < 0 || !S_ISDIR(st.st_mode) ||
            snprintf(path, sizeof path, "%s/main.cf", v) >= (int) sizeof path)
                return v;
        return path;
}

static int parse_options(int argc, char *argv[], Options *o) {
        int i;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (a[0] != '-' || a[1] == '\0')
                        break;
                if (streq(a, "--")) {
                        i++;
                        break;
                }
                /* Flags may be grouped, as getopt allows ("-ti", "-oi -t"); a letter that takes a
                 * value takes the rest of the argument (or the next one) and ends the group. */
                const char *p = a + 1;
                while (strchr("tivnmUG", *p) && p[1] != '\0') {
                        parse_flag(o, *p);
                        p++;
                }
                const char *rest = p + 1, *v;
                switch (*p) {
                case 't': case 'i': case 'v':
                case 'n': case 'm': case 'U': case 'G':
                        parse_flag(o, *p);
                        break;
                case 'f': case 'r':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->sender = v;
                        break;
                case 'F':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->full_name = v;
                        break;
                case 'N':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->notify = v;
                        break;
                case 'R':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->ret = v;
                        break;
                case 'V':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->envid = v;
                        break;
                case 'B':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->body = v;
                        break;
                case 'C':
                        if (!(v = opt_value(argc, argv, &i, rest)))
                                goto missing;
                        o->config = config_file(v);
                        break;
                case 'L': case 'X': case 'h': case 'O': case 'A':
                        /* Syslog label, traffic log, hop count, long options, -Ac/-Am (which
                         * configuration file): accepted, unused. */
                        if (!opt_value(argc, argv, &i, rest))
                                goto missing;
                        break;
                case 'o':
                        /* -oi means -i; -oX... (Sendmail options) are accepted and ignored.
                         * Those that take a separate value (-oA file, -oQ dir) eat it. */
                        if (streq(rest, "i"))
                                o->ignore_dots = true;
                        else if ((streq(rest, "A") || streq(rest, "Q")) && i + 1 < argc)
                                i++;
                        break;
                case 'b':
                        if (streq(rest, "m"))
                                o->mode = MODE_DELIVER;
                        else if (streq(rest, "s"))
                                o->mode = MODE_SMTP;
                        else if (streq(rest, "v"))
                                o->mode = MODE_VERIFY;
                        else if (streq(rest, "p"))
                                o->mode = MODE_LIST;
                        else if (streq(rest, "i"))
                                o->mode = MODE_ALIASES;
                        else {
                                fprintf(stderr, "%s: -b%s is not supported\n", program, rest);
                                return -EINVAL;
                        }
                        break;
                case 'q':
                        o->mode = MODE_FLUSH;
                        /* -qRsite / -qSsite flush one destination; -q<interval> is ignored
                         * (postern-qmgr schedules retries itself). */
                        if (rest[0] == 'R' || rest[0] == 'S') {
                                if (!(v = opt_value(argc, argv, &i, rest + 1)))
                                        goto missing;
                                o->flush_site = v;
                        } else if (rest[0] == 'I') {
                                if (!(v = opt_value(argc, argv, &i, rest + 1)))
                                        goto missing;
                                o->flush_id = v;
                        }
                        break;
                default:
                        fprintf(stderr, "%s: unknown option -%c\n", program, *p);
                        usage();
                        return -EINVAL;
                }
                continue;
        missing:
                fprintf(stderr, "%s: option -%c needs a value\n", program, *p);
                usage();
                return -EINVAL;
        }
        o->args = argv + i;
        return 0;
}

static int load_conf(const Options *o, Conf **ret) {
        _cleanup_strv_free_ char **msgs = NULL;
        int r = conf_load(o->config, ret, &msgs);
        if (r < 0) {
                for (char **m = msgs; m && *m; m++)
                        fprintf(stderr, "%s: %s\n", program, *m);
                fprintf(stderr, "%s: cannot read the configuration: %s\n", program, strerror(-r));
        }
        return r;
}

static const char *origin(Conf *c) {
        const char *s = conf_get(c, "myorigin");
        if (isempty(s))
                s = conf_get(c, "myhostname");
        return isempty(s) ? "localhost" : s;
}

/* Parses an address given by the user; a bare local part gets "@$myorigin". */
static int qualify(Conf *c, const char *text, bool allow_empty, char **ret) {
        _cleanup_address_free_ Address *a = NULL;
        const char *reason = NULL;
        int r;

        if (allow_empty && (isempty(text) || streq(text, "<>"))) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        /* Accept "<addr>" too, as people paste it. */
        size_t n = strlen(text);
        _cleanup_free_ char *bare = n >= 2 && text[0] == '<' && text[n - 1] == '>' ?
                strndup(text + 1, n - 2) : strdup(text);
        if (!bare)
                return -ENOMEM;
        r = address_parse(bare, ADDRESS_ALLOW_NO_DOMAIN | ADDRESS_SMTPUTF8, &a, &reason);
        if (r < 0) {
                fprintf(stderr, "%s: bad address \"%s\": %s\n", program, text, strna(reason));
                return -EINVAL;
        }
        if (a->domain) {
                *ret = strdup(a->external);
                return *ret ? 0 : -ENOMEM;
        }
        _cleanup_address_free_ Address *q = NULL;
        r = address_new(a->local, origin(c), &q);
        if (r < 0) {
                fprintf(stderr, "%s: bad address \"%s\": myorigin \"%s\" is not a domain\n",
                        program, text, origin(c));
                return -EINVAL;
        }
        *ret = strdup(q->external);
        return *ret ? 0 : -ENOMEM;
}

static bool strv_contains_case(char **l, const char *s) {
        for (; l && *l; l++)
                if (strcaseeq(*l, s))
                        return true;
        return false;
}

static bool has_8bit(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] >= 0x80)
                        return true;
        return false;
}

/* Maps a server's rejection to a sysexits code. */
static int sysexit_for(int code, const char *text) {
        if (code >= 400 && code < 500)
                return EX_TEMPFAIL;
        if (code < 500)
                return EX_PROTOCOL;
        if (startswith(text, "5.1.") || startswith(text, "5.2.1"))
                return EX_NOUSER;
        if (startswith(text, "5.7."))
                return EX_NOPERM;
        if (startswith(text, "5.3.4") || startswith(text, "5.2.3") || startswith(text, "5.6."))
                return EX_DATAERR;
        return EX_UNAVAILABLE;
}

static void print_reply(const char *what, int code, const char *text) {
        /* Multi-line replies: one stderr line each. */
        const char *p = text;
        do {
                const char *nl = strchr(p, '\n');
                int n = nl ? (int) (nl - p) : (int) strlen(p);
                fprintf(stderr, "%s: %s: server said: %d %.*s\n", program, what, code, n, p);
                p = nl ? nl + 1 : NULL;
        } while (p);
}

static int connect_submit(Conf *c, SmtpClient *s) {
        _cleanup_free_ char *path = daemon_socket_path(c, "submit");
        int r;

        if (!path)
                return -ENOMEM;
        r = smtp_client_connect(s, path, 300);
        if (r < 0) {
                fprintf(stderr, "%s: cannot connect to %s: %s (is postern-submit.socket running?)\n",
                        program, path, strerror(-r));
                return r;
        }
        return 0;
}

/* How long a sender waits for a place when the submit socket already serves as many sessions
 * of its uid as smtpd_client_connection_count_limit allows (a burst of sendmail runs from one
 * program): there is no local queue to fall back on, so waiting beats failing. */
#define SUBMIT_BUSY_WAIT_USEC (120 * USEC_PER_SEC)

static bool busy_greeting(int code, const char *text) {
        return code == 421 && text && strstr(text, "too many connections from uid");
}

/* Connects, reads the greeting and says EHLO. Returns 0 or a sysexits code. */
static int smtp_open(Conf *c, SmtpClient *s) {
        _cleanup_free_ char *text = NULL;
        usec_t give_up = now_usec(CLOCK_MONOTONIC) + SUBMIT_BUSY_WAIT_USEC, pause = 50 * USEC_PER_MSEC;
        int code, r;

        for (;;) {
                if (connect_submit(c, s) < 0)
                        return EX_TEMPFAIL;
                r = smtp_read_reply(s, &code, &text);
                if (r < 0 || !busy_greeting(code, text) || now_usec(CLOCK_MONOTONIC) + pause > give_up)
                        break;
                smtp_client_done(s);
                free(text);
                text = NULL;
                struct timespec ts = { (time_t) (pause / USEC_PER_SEC), (long) (pause % USEC_PER_SEC) * 1000 };
                (void) nanosleep(&ts, NULL);
                pause = MIN(pause * 2, 2 * USEC_PER_SEC);
        }
        if (r >= 0 && code != 220) {
                print_reply("greeting", code, text);
                return sysexit_for(code, text);
        }
        if (r >= 0) {
                free(text);
                text = NULL;
                r = smtp_ehlo(s, "localhost", &code, &text);
        }
        if (r < 0) {
                fprintf(stderr, "%s: talking to the submit socket: %s\n", program, strerror(-r));
                return EX_TEMPFAIL;
        }
        if (code != 250) {
                print_reply("EHLO", code, text);
                return sysexit_for(code, text);
        }
        return 0;
}

static void smtp_quit(SmtpClient *s) {
        int code;
        (void) smtp_command(s, &code, NULL, "QUIT");
}

/* The envelope sender: -f, else the invoking user at $myorigin. 0, or an exit code (logged). */
static int envelope_sender(Conf *c, const Options *o, char **ret) {
        int r;
        if (o->sender)
                r = qualify(c, o->sender, true, ret);
        else {
                struct passwd *pw = getpwuid(getuid());
                if (!pw) {
                        fprintf(stderr, "%s: uid %u has no passwd entry\n", program, (unsigned) getuid());
                        return EX_NOUSER;
                }
                r = qualify(c, pw->pw_name, false, ret);
        }
        if (r < 0)
                return r == -ENOMEM ? EX_OSERR : EX_USAGE;
        return 0;
}

static int do_deliver(Conf *c, Options *o) {
        _cleanup_strbuf_ StrBuf msg = STRBUF_INIT;
        _cleanup_strv_free_ char **raw = NULL, **rcpts = NULL;
        _cleanup_free_ char *sender = NULL, *text = NULL;
        _cleanup_smtp_client_ SmtpClient s = SMTP_CLIENT_INIT;
        long long limit = conf_get_int(c, NULL, "message_size_limit");
        size_t rejected = 0, accepted = 0;
        int code, r, ex = 0;

        if ((ex = envelope_sender(c, o, &sender)) != 0)
                return ex;

        r = sendmail_read_message(STDIN_FILENO, o->ignore_dots, limit > 0 ? (size_t) limit : 0, &msg);
        if (r == -EFBIG) {
                fprintf(stderr, "%s: message is larger than message_size_limit (%lld bytes); not sent\n",
                        program, limit);
                return EX_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "%s: reading the message: %s; not sent\n", program, strerror(-r));
                return EX_IOERR;
        }

        /* Recipients: the arguments (each may be an address list), plus the header's with -t. */
        for (char **a = o->args; *a; a++) {
                _cleanup_strv_free_ char **l = NULL;
                if ((r = sendmail_split_address_list(*a, strlen(*a), &l)) < 0)
                        return EX_OSERR;
                for (char **x = l; *x; x++)
                        if (strv_push_dup(&raw, *x) < 0)
                                return EX_OSERR;
        }
        if (o->extract && sendmail_extract_recipients(&msg, &raw) < 0)
                return EX_OSERR;
        for (char **a = raw; a && *a; a++) {
                _cleanup_free_ char *q = NULL;
                r = qualify(c, *a, false, &q);
                if (r == -ENOMEM)
                        return EX_OSERR;
                if (r < 0) {
                        ex = EX_DATAERR;
                        continue;
                }
                if (!strv_contains_case(rcpts, q) && strv_push_dup(&rcpts, q) < 0)
                        return EX_OSERR;
        }
        if (ex != 0) {
                fprintf(stderr, "%s: message not sent\n", program);
                return ex;
        }
        if (strv_length(rcpts) == 0) {
                fprintf(stderr, "%s: no recipients %s; message not sent\n", program,
                        o->extract ? "found in the message header or arguments" : "specified");
                return EX_USAGE;
        }

        if (o->full_name && sendmail_add_from(&msg, o->full_name, isempty(sender) ? "MAILER-DAEMON" : sender) < 0)
                return EX_OSERR;

        if ((ex = smtp_open(c, &s)) != 0) {
                fprintf(stderr, "%s: message not sent\n", program);
                return ex;
        }

        /* MAIL FROM with the parameters the server understands. */
        {
                _cleanup_strbuf_ StrBuf cmd = STRBUF_INIT;
                bool utf8 = has_8bit(sender, strlen(sender));
                for (char **a = rcpts; *a; a++)
                        utf8 = utf8 || has_8bit(*a, strlen(*a));
                r = strbuf_printf(&cmd, "MAIL FROM:<%s>", sender);
                if (r >= 0 && s.ext_size) {
                        /* The size on the wire: every LF becomes CRLF. */
                        size_t lines = 0;
                        for (size_t i = 0; i < msg.len; i++)
                                lines += msg.data[i] == '\n';
                        r = strbuf_printf(&cmd, " SIZE=%zu", msg.len + lines);
                }
                if (r >= 0 && s.ext_8bitmime) {
                        if (o->body && (strcaseeq(o->body, "8BITMIME") || strcaseeq(o->body, "7BIT")))
                                r = strbuf_printf(&cmd, " BODY=%s", o->body);
                        else if (msg.data && has_8bit(msg.data, msg.len))
                                r = strbuf_puts(&cmd, " BODY=8BITMIME");
                }
                if (r >= 0 && utf8 && s.ext_smtputf8)
                        r = strbuf_puts(&cmd, " SMTPUTF8");
                if (r >= 0 && s.ext_dsn && o->ret)
                        r = strbuf_printf(&cmd, " RET=%s", strcaseeq(o->ret, "hdrs") ? "HDRS" : "FULL");
                if (r >= 0 && s.ext_dsn && o->envid) {
                        StrBuf x = STRBUF_INIT;
                        r = xtext_encode(o->envid, strlen(o->envid), &x);
                        if (r >= 0)
                                r = strbuf_printf(&cmd, " ENVID=%s", x.data ? x.data : "");
                        strbuf_done(&x);
                }
                if (r < 0)
                        return EX_OSERR;
                if ((o->ret || o->envid || o->notify) && !s.ext_dsn && o->verbose)
                        fprintf(stderr, "%s: the server does not offer DSN; -N/-R/-V ignored\n", program);
                r = smtp_command(&s, &code, &text, "%s", cmd.data);
        }
        if (r < 0)
                goto io_error;
        if (code != 250) {
                print_reply("MAIL FROM", code, text);
                fprintf(stderr, "%s: message not sent\n", program);
                smtp_quit(&s);
                return sysexit_for(code, text);
        }

        for (char **a = rcpts; *a; a++) {
                free(text);
                text = NULL;
                if (s.ext_dsn && o->notify)
                        r = smtp_command(&s, &code, &text, "RCPT TO:<%s> NOTIFY=%s", *a, o->notify);
                else
                        r = smtp_command(&s, &code, &text, "RCPT TO:<%s>", *a);
                if (r < 0)
                        goto io_error;
                if (code == 250 || code == 251) {
                        accepted++;
                        continue;
                }
                print_reply(*a, code, text);
                if (code < 500) {
                        /* Keep the message whole: the caller retries it for everybody. */
                        fprintf(stderr, "%s: message not sent; try again later\n", program);
                        (void) smtp_command(&s, &code, NULL, "RSET");
                        smtp_quit(&s);
                        return EX_TEMPFAIL;
                }
                rejected++;
                if (ex == 0)
                        ex = sysexit_for(code, text);
        }
        if (accepted == 0) {
                fprintf(stderr, "%s: every recipient was rejected; message not sent\n", program);
                smtp_quit(&s);
                return ex ? ex : EX_NOUSER;
        }

        free(text);
        text = NULL;
        r = smtp_command(&s, &code, &text, "DATA");
        if (r < 0)
                goto io_error;
        if (code != 354) {
                print_reply("DATA", code, text);
                fprintf(stderr, "%s: message not sent\n", program);
                smtp_quit(&s);
                return sysexit_for(code, text);
        }
        r = smtp_send_content(&s, msg.data ? msg.data : "", msg.len);
        if (r >= 0) {
                free(text);
                text = NULL;
                r = smtp_read_reply(&s, &code, &text);
        }
        if (r < 0)
                goto io_error;
        if (code != 250) {
                print_reply("end of data", code, text);
                fprintf(stderr, "%s: message not sent\n", program);
                smtp_quit(&s);
                return sysexit_for(code, text);
        }
        if (o->verbose)
                fprintf(stderr, "%s: %s\n", program, text);
        smtp_quit(&s);
        if (rejected > 0)
                fprintf(stderr, "%s: message sent to %zu recipient%s, %zu rejected (see above)\n",
                        program, accepted, accepted == 1 ? "" : "s", rejected);
        return rejected > 0 ? ex : EX_OK;

io_error:
        fprintf(stderr, "%s: talking to the submit socket: %s; message not sent\n", program, strerror(-r));
        return EX_TEMPFAIL;
}

/* -bv's report to the sender, in the open session: "Mail Delivery Status Report" with one line
 * per address (what the server answered). 0, or <0 when the session failed; a refusal is
 * printed and the report dropped. */
static int mail_report(Conf *c, SmtpClient *s, const char *sender, const char *lines) {
        _cleanup_strbuf_ StrBuf msg = STRBUF_INIT;
        _cleanup_free_ char *text = NULL;
        const char *host = strempty(conf_get(c, "myhostname"));
        int code, r;

        r = strbuf_printf(&msg, "From: Mail Delivery System <MAILER-DAEMON@%s>\nTo: <%s>\n"
                          "Subject: Mail Delivery Status Report\nAuto-Submitted: auto-replied\n"
                          "Content-Type: text/plain; charset=utf-8\n\n"
                          "This is the mail system at host %s.\n\n"
                          "Enclosed is the mail delivery report that you requested: what the server\n"
                          "answers for each address (nothing was sent to them).\n\n%s",
                          host, sender, host, lines);
        if (r < 0)
                return r;
        const char *steps[] = { "MAIL FROM:<>", NULL, "DATA" };
        _cleanup_free_ char *rcpt = NULL;
        if (asprintf(&rcpt, "RCPT TO:<%s>", sender) < 0)
                return -ENOMEM;
        steps[1] = rcpt;
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                free(text);
                text = NULL;
                if ((r = smtp_command(s, &code, &text, "%s", steps[i])) < 0)
                        return r;
                if (code != (i == 2 ? 354 : 250)) {
                        print_reply(i == 1 ? sender : steps[i], code, text);
                        fprintf(stderr, "%s: the delivery status report was not sent\n", program);
                        return smtp_command(s, &code, NULL, "RSET");
                }
        }
        if ((r = smtp_send_content(s, msg.data, msg.len)) < 0)
                return r;
        free(text);
        text = NULL;
        if ((r = smtp_read_reply(s, &code, &text)) < 0)
                return r;
        if (code != 250) {
                print_reply("end of data", code, text);
                fprintf(stderr, "%s: the delivery status report was not sent\n", program);
                return 0;
        }
        fprintf(stderr, "Mail Delivery Status Report will be mailed to <%s>.\n", sender);
        return 0;
}

/* -bv: ask the server about each recipient, without sending anything to them; print the answers
 * and mail them to the sender (-f, else the invoking user) as Postfix's sendmail -bv does. */
static int do_verify(Conf *c, Options *o) {
        _cleanup_smtp_client_ SmtpClient s = SMTP_CLIENT_INIT;
        _cleanup_strbuf_ StrBuf lines = STRBUF_INIT;
        _cleanup_free_ char *sender = NULL;
        int code, r, ex;

        if (!*o->args) {
                fprintf(stderr, "%s: -bv needs at least one address\n", program);
                return EX_USAGE;
        }
        if ((ex = envelope_sender(c, o, &sender)) != 0)
                return ex;
        if ((ex = smtp_open(c, &s)) != 0)
                return ex;
        r = smtp_command(&s, &code, NULL, "MAIL FROM:<>");
        if (r < 0 || code != 250) {
                fprintf(stderr, "%s: the server refused the verification session\n", program);
                return r < 0 ? EX_TEMPFAIL : EX_UNAVAILABLE;
        }
        for (char **a = o->args; *a; a++) {
                _cleanup_free_ char *q = NULL, *text = NULL;
                r = qualify(c, *a, false, &q);
                if (r < 0) {
                        ex = EX_DATAERR;
                        continue;
                }
                r = smtp_command(&s, &code, &text, "RCPT TO:<%s>", q);
                if (r < 0)
                        return EX_TEMPFAIL;
                const char *what = code / 100 == 2 ? "deliverable" : code / 100 == 4 ? "deferred" : "undeliverable";
                printf("%s... %s (%d %s)\n", q, what, code, text);
                if (strbuf_printf(&lines, "<%s>: %s (%d %s)\n", q, what, code, text) < 0)
                        return EX_OSERR;
                if (code / 100 != 2 && ex == 0)
                        ex = sysexit_for(code, text);
        }
        (void) smtp_command(&s, &code, NULL, "RSET");
        if (isempty(sender))
                fprintf(stderr, "%s: the null sender gets no delivery status report\n", program);
        else if (lines.len && mail_report(c, &s, sender, lines.data) < 0)
                return EX_TEMPFAIL;
        smtp_quit(&s);
        return ex;
}

/* -bs: relay SMTP between stdin/stdout and the submit socket. */
static int do_smtp(Conf *c) {
        _cleanup_smtp_client_ SmtpClient s = SMTP_CLIENT_INIT;
        bool in_open = true;
        char buf[65536];

        if (connect_submit(c, &s) < 0)
                return EX_TEMPFAIL;
        /* No timeouts while relaying: the client on stdin sets the pace. */
        struct timeval tv = { 0 };
        (void) setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (;;) {
                struct pollfd p[2] = { { .fd = s.fd, .events = POLLIN },
                                       { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return EX_OSERR;
                }
                if (p[0].revents) {
                        ssize_t k = read(s.fd, buf, sizeof buf);
                        if (k <= 0)
                                return k == 0 ? EX_OK : EX_IOERR;
                        if (loop_write(STDOUT_FILENO, buf, (size_t) k) < 0)
                                return EX_IOERR;
                }
                if (in_open && p[1].revents) {
                        ssize_t k = read(STDIN_FILENO, buf, sizeof buf);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                in_open = false;
                                (void) shutdown(s.fd, SHUT_WR);
                                continue;
                        }
                        if (smtp_write_all(s.fd, buf, (size_t) k) < 0)
                                return EX_IOERR;
                }
        }
}

static int do_list(Options *o) {
        const char *ctl = getenv("POSTERN_POSTERNCTL");
        if (isempty(ctl))
                ctl = POSTERN_SBINDIR "/posternctl";
        size_t n = strv_length(o->args);
        char **argv = calloc(n + 3, sizeof(char *));
        if (!argv)
                return EX_OSERR;
        argv[0] = (char *) "posternctl";
        argv[1] = (char *) "queue";
        memcpy(argv + 2, o->args, n * sizeof(char *));
        if (o->config)
                setenv("POSTERN_CONFIG", o->config, 1);
        execv(ctl, argv);
        fprintf(stderr, "%s: cannot run %s: %m\n", program, ctl);
        free(argv);
        return EX_UNAVAILABLE;
}

static int do_aliases(Conf *c) {
        _cleanup_table_list_free_ TableList *l = NULL;
        _cleanup_free_ char *reason = NULL, *value = NULL;
        const char *maps = conf_get(c, "alias_maps");
        int r;

        if (isempty(maps)) {
                printf("%s: alias_maps is empty; nothing to do\n", program);
                return EX_OK;
        }
        r = table_list_open(maps, TABLE_ALIASES, &l, &reason);
        if (r < 0) {
                fprintf(stderr, "%s: alias_maps = %s: %s\n", program, maps, reason ? reason : strerror(-r));
                return EX_CONFIG;
        }
        /* A lookup makes every table read its source now and report what it cannot read. */
        r = table_list_lookup(l, "postmaster", &value);
        if (r < 0) {
                fprintf(stderr, "%s: alias_maps = %s: %s\n", program, maps, strerror(-r));
                return EX_OSFILE;
        }
        printf("%s: alias_maps = %s can be read; nothing to rebuild "
               "(Postern reads the source text and notices changes itself)\n", program, maps);
        return EX_OK;
}

static int do_flush(Conf *c, Options *o) {
        _cleanup_ipc_record_ IpcRecord req = IPC_RECORD_INIT, reply = IPC_RECORD_INIT;
        _cleanup_free_ char *path = daemon_socket_path(c, "qmgr");
        int r;

        if (!path)
                return EX_OSERR;
        r = ipc_record_add(&req, "request", "flush");
        if (r >= 0 && o->flush_site)
                r = ipc_record_add(&req, "site", o->flush_site);
        else if (r >= 0 && o->flush_id)
                r = ipc_record_add(&req, "queue_id", o->flush_id);
        if (r < 0)
                return EX_OSERR;
        r = ipc_call(path, &req, &reply, 30 * USEC_PER_SEC);
        if (r < 0) {
                fprintf(stderr, "%s: cannot ask the queue manager at %s to flush: %s%s\n", program,
                        path, strerror(-r), r == -EACCES ? " (the socket's mode does not allow this user)" : "");
                return EX_UNAVAILABLE;
        }
        const char *st = ipc_record_get(&reply, "status");
        if (!st || !streq(st, "ok")) {
                const char *why = ipc_record_get(&reply, "reason");
                fprintf(stderr, "%s: the queue manager refused to flush: %s\n", program,
                        why ? why : strna(st));
                return EX_UNAVAILABLE;
        }
        return EX_OK;
}

int main(int argc, char *argv[]) {
        _cleanup_conf_free_ Conf *c = NULL;
        Options o = { .mode = MODE_DELIVER };
        const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;

        base = base ? base + 1 : (argv[0] ? argv[0] : "postern-sendmail");
        program = base;
        if (strstr(base, "mailq")) {
                /* mailq's own arguments (--json, ...) belong to posternctl queue. */
                o.mode = MODE_LIST;
                o.args = argv + 1;
                return do_list(&o);
        } else if (strstr(base, "newaliases"))
                o.mode = MODE_ALIASES;

        if (parse_options(argc, argv, &o) < 0)
                return EX_USAGE;
        if (o.mode == MODE_LIST)
                return do_list(&o);
        if (load_conf(&o, &c) < 0)
                return EX_CONFIG;

        switch (o.mode) {
        case MODE_SMTP:
                return do_smtp(c);
        case MODE_VERIFY:
                return do_verify(c, &o);
        case MODE_ALIASES:
                return do_aliases(c);
        case MODE_FLUSH:
                return do_flush(c, &o);
        default:
                return do_deliver(c, &o);
        }
}
