/* smtpd-command.c — the SMTP command state machine (RFC 5321): EHLO/HELO, MAIL, RCPT, DATA,
 * RSET, NOOP, QUIT, HELP, VRFY, and refusals for the extensions not offered yet (STARTTLS, AUTH,
 * BDAT, ETRN). Reply texts follow Postfix's so that clients and log tools see familiar words;
 * every reply carries an enhanced status code. Each command is counted for the session
 * fingerprint logged at disconnect ("ehlo=1 mail=1 rcpt=0/1 ... commands=3/4"). */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/address.h"

static const char *const cmd_names[_CMD_MAX] = {
        [CMD_HELO] = "helo", [CMD_EHLO] = "ehlo", [CMD_STARTTLS] = "starttls", [CMD_AUTH] = "auth",
        [CMD_MAIL] = "mail", [CMD_RCPT] = "rcpt", [CMD_BDAT] = "bdat", [CMD_DATA] = "data",
        [CMD_RSET] = "rset", [CMD_NOOP] = "noop", [CMD_VRFY] = "vrfy", [CMD_ETRN] = "etrn",
        [CMD_HELP] = "help", [CMD_QUIT] = "quit", [CMD_UNKNOWN] = "unknown",
};

static const char *protocol_name(Session *s) {
        return s->esmtp ? "ESMTP" : "SMTP";
}

void command_reset_transaction(Session *s) {
        free(s->sender);
        s->sender = NULL;
        free(s->body_type);
        s->body_type = NULL;
        for (size_t i = 0; i < s->n_rcpts; i++)
                free(s->rcpts[i]);
        free(s->rcpts);
        s->rcpts = NULL;
        s->n_rcpts = 0;
        s->rcpt_attempts = 0;
        s->in_mail = false;
        s->queue_id[0] = '\0';
        data_state_free(s->data);
        s->data = NULL;
        message_actions_reset(&s->actions);
}

void message_actions_reset(MessageActions *a) {
        free(a->hold);
        free(a->discard);
        free(a->redirect);
        free(a->filter);
        strv_free(a->bcc);
        strbuf_done(&a->prepend);
        *a = (MessageActions) {};
}

void command_log_disconnect(Session *s) {
        char buf[512];
        size_t len = 0;
        unsigned ok = 0, total = 0;

        len += (size_t) snprintf(buf, sizeof(buf), "disconnect from %s", s->id_text);
        for (int i = 0; i < _CMD_MAX && len < sizeof(buf); i++) {
                if (s->cmd_total[i] == 0)
                        continue;
                ok += s->cmd_ok[i];
                total += s->cmd_total[i];
                if (s->cmd_ok[i] == s->cmd_total[i])
                        len += (size_t) snprintf(buf + len, sizeof(buf) - len, " %s=%u", cmd_names[i],
                                                 s->cmd_total[i]);
                else
                        len += (size_t) snprintf(buf + len, sizeof(buf) - len, " %s=%u/%u", cmd_names[i],
                                                 s->cmd_ok[i], s->cmd_total[i]);
        }
        if (len < sizeof(buf)) {
                if (ok == total)
                        snprintf(buf + len, sizeof(buf) - len, " commands=%u", total);
                else
                        snprintf(buf + len, sizeof(buf) - len, " commands=%u/%u", ok, total);
        }
        log_fields(LOG_INFO, &(LogFields) { .client_address = s->addr[0] ? s->addr : NULL }, "%s", buf);
}

static bool need_helo(Session *s) {
        if (s->settings->helo_required && !s->helo) {
                session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
                return true;
        }
        return false;
}

static char *skip_spaces(char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

static void trim_right(char *p) {
        size_t l = strlen(p);
        while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
                p[--l] = '\0';
}

static bool set_helo(Session *s, char *arg, const char *cmd) {
        arg = skip_spaces(arg);
        trim_right(arg);
        if (!*arg) {
                session_reply(s, "501 5.5.4 Syntax: %s hostname", cmd);
                return false;
        }
        char *h = strndup(arg, 255);
        if (!h) {
                session_reply(s, "421 4.3.0 %s Error: out of memory", s->settings->myhostname);
                session_close_after_flush(s);
                return false;
        }
        /* Stored in the queue and written into Received:; keep it printable. */
        for (char *p = h; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7f)
                        *p = '?';
        free(s->helo);
        s->helo = h;
        command_reset_transaction(s);
        return true;
}

static bool cmd_ehlo(Session *s, char *arg) {
        if (!set_helo(s, arg, "EHLO"))
                return false;
        s->esmtp = true;

        char buf[512];
        char size[48] = "";
        if (s->settings->message_size_limit)
                snprintf(size, sizeof(size), " %llu", (unsigned long long) s->settings->message_size_limit);
        snprintf(buf, sizeof(buf),
                 "250-%s\r\n"
                 "250-PIPELINING\r\n"
                 "250-SIZE%s\r\n"
                 "%s"
                 "250-ENHANCEDSTATUSCODES\r\n"
                 "250 8BITMIME\r\n",
                 s->settings->myhostname, size, s->settings->disable_vrfy ? "" : "250-VRFY\r\n");
        session_reply_raw(s, buf);
        s->last_code = 250;
        return true;
}

static bool cmd_helo(Session *s, char *arg) {
        if (!set_helo(s, arg, "HELO"))
                return false;
        s->esmtp = false;
        session_reply(s, "250 %s", s->settings->myhostname);
        return true;
}

/* Parses the path after FROM:/TO: and qualifies a bare local part with $myorigin. */
static int parse_path(Session *s, char *arg, AddressFlags flags, Address **ret, char **ret_params,
                      const char **ret_reason) {
        _cleanup_address_free_ Address *a = NULL;
        const char *params = NULL;
        int r;

        r = address_parse_path(arg, flags | ADDRESS_ALLOW_NO_BRACKETS | ADDRESS_ALLOW_NO_DOMAIN,
                               &a, &params, ret_reason);
        if (r < 0)
                return r;
        if (!a->domain && !isempty(a->external)) {
                Address *q = NULL;
                r = address_new(a->local, s->settings->myorigin, &q);
                if (r < 0) {
                        *ret_reason = "Bad domain in $myorigin";
                        return r;
                }
                address_free(a);
                a = q;
        }
        *ret_params = params ? (char *) params : (char *) "";
        *ret = TAKE_PTR(a);
        return 0;
}

/* MAIL after postern-anvil counted it (smtpd_client_message_rate_limit). */
static void mail_after_anvil(Session *s, bool allowed, void *userdata) {
        if (!allowed) {
                command_reset_transaction(s);   /* refused: 450 4.7.1 is already replied */
                return;
        }
        s->cmd_ok[CMD_MAIL]++;
        session_reply(s, "250 2.1.0 Ok");
}

static bool cmd_mail(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        const char *reason = NULL;
        char *params = NULL;
        const char *body = NULL;

        if (need_helo(s))
                return false;
        if (s->in_mail) {
                session_reply(s, "503 5.5.1 Error: nested MAIL command");
                return false;
        }
        char *rest = (char *) startswith_no_case(arg, "FROM:");
        if (!rest) {
                session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
                return false;
        }
        if (parse_path(s, rest, ADDRESS_ALLOW_EMPTY, &a, &params, &reason) < 0) {
                session_reply(s, "501 5.1.7 Bad sender address syntax: %s", strna(reason));
                return false;
        }

        char *save = NULL;
        for (char *p = strtok_r(params, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                const char *v;
                if ((v = startswith_no_case(p, "SIZE="))) {
                        char *end = NULL;
                        errno = 0;
                        unsigned long long n = strtoull(v, &end, 10);
                        if (!isdigit((unsigned char) *v) || *end || errno == ERANGE) {
                                session_reply(s, "501 5.5.4 Bad message size syntax");
                                return false;
                        }
                        if (s->settings->message_size_limit && n > s->settings->message_size_limit) {
                                session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
                                return false;
                        }
                } else if ((v = startswith_no_case(p, "BODY="))) {
                        if (strcaseeq(v, "7BIT"))
                                body = "7BIT";
                        else if (strcaseeq(v, "8BITMIME"))
                                body = "8BITMIME";
                        else {
                                session_reply(s, "501 5.5.4 Unsupported BODY parameter: %.64s", v);
                                return false;
                        }
                } else {
                        session_reply(s, "555 5.5.4 Unsupported option: %.64s", p);
                        return false;
                }
        }

        s->sender = strdup(a->external);
        s->body_type = body ? strdup(body) : NULL;
        if (!s->sender || (body && !s->body_type)) {
                command_reset_transaction(s);
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        s->in_mail = true;
        if (smtpd_anvil_message(s, mail_after_anvil, NULL, NULL))
                return false;   /* answered when postern-anvil has counted it */
        session_reply(s, "250 2.1.0 Ok");
        return true;
}

static void log_reject(Session *s, const char *cmd, const char *reply, const char *rcpt) {
        LogFields f = { .queue_id = s->queue_id[0] ? s->queue_id : NULL,
                        .client_address = s->addr[0] ? s->addr : NULL,
                        .sender = s->sender, .recipient = rcpt };
        log_fields(LOG_INFO, &f, "%s: reject: %s from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                   s->queue_id[0] ? s->queue_id : "NOQUEUE", cmd, s->id_text, reply,
                   strempty(s->sender), rcpt, protocol_name(s), strempty(s->helo));
}

static bool rcpt_accept(Session *s, Address *a);
static void rcpt_after_anvil(Session *s, bool allowed, void *userdata);
static void rcpt_address_free(void *userdata);

static bool cmd_rcpt(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        const char *reason = NULL;
        char *params = NULL;

        if (need_helo(s))
                return false;
        if (!s->in_mail) {
                session_reply(s, "503 5.5.1 Error: need MAIL command");
                return false;
        }
        char *rest = (char *) startswith_no_case(arg, "TO:");
        if (!rest) {
                session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
                return false;
        }
        s->rcpt_attempts++;
        if (parse_path(s, rest, 0, &a, &params, &reason) < 0) {
                session_reply(s, "501 5.1.3 Bad recipient address syntax: %s", strna(reason));
                return false;
        }
        params = skip_spaces(params);
        if (*params) {
                char *sp = strchr(params, ' ');
                if (sp)
                        *sp = '\0';
                session_reply(s, "555 5.5.4 Unsupported option: %.64s", params);
                return false;
        }
        if (s->n_rcpts >= s->settings->recipient_limit) {
                session_reply(s, "452 4.5.3 Error: too many recipients");
                return false;
        }

        if (smtpd_anvil_recipient(s, rcpt_after_anvil, a, rcpt_address_free)) {
                a = NULL;   /* the anvil request owns it until it answers */
                return false;
        }
        return rcpt_accept(s, a);
}

/* The recipient checks and acceptance of one RCPT, after the rate check. */
static bool rcpt_accept(Session *s, Address *a) {
        _cleanup_free_ char *reply = NULL;
        int r;

        if (s->listener->kind != LISTENER_SUBMIT) {
                r = smtpd_check_recipient(s, a->local, a->domain, a->external, &reply);
                if (r != 0) {
                        if (!reply) {
                                session_reply(s, "451 4.3.0 Error: out of memory");
                                return false;
                        }
                        session_reply(s, "%s", reply);
                        log_reject(s, "RCPT", reply, a->external);
                        return false;
                }
        }

        char **n = realloc(s->rcpts, (s->n_rcpts + 1) * sizeof(char *));
        if (!n) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        s->rcpts = n;
        s->rcpts[s->n_rcpts] = strdup(a->external);
        if (!s->rcpts[s->n_rcpts]) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        s->n_rcpts++;

        if (!s->queue_id[0]) {
                queue_id_new(s->queue_id);
                LogFields f = { .queue_id = s->queue_id, .client_address = s->addr[0] ? s->addr : NULL,
                                .sender = s->sender };
                if (s->listener->kind == LISTENER_SUBMIT)
                        log_fields(LOG_INFO, &f, "%s: uid=%ld from=<%s>", s->queue_id,
                                   (long) (int) s->uid, s->sender);
                else
                        log_fields(LOG_INFO, &f, "%s: client=%s", s->queue_id, s->id_text);
        }
        session_reply(s, "250 2.1.5 Ok");
        return true;
}

static void rcpt_address_free(void *userdata) {
        address_free(userdata);
}

/* RCPT after postern-anvil counted it (smtpd_client_recipient_rate_limit). */
static void rcpt_after_anvil(Session *s, bool allowed, void *userdata) {
        Address *a = userdata;
        if (allowed && rcpt_accept(s, a))
                s->cmd_ok[CMD_RCPT]++;
        address_free(a);
}

static bool cmd_data(Session *s, char *arg) {
        if (need_helo(s))
                return false;
        if (*skip_spaces(arg)) {
                session_reply(s, "501 5.5.4 Syntax: DATA");
                return false;
        }
        if (!s->in_mail || (s->n_rcpts == 0 && s->rcpt_attempts == 0)) {
                session_reply(s, "503 5.5.1 Error: need RCPT command");
                return false;
        }
        if (s->n_rcpts == 0) {
                session_reply(s, "554 5.5.1 Error: no valid recipients");
                return false;
        }
        if (data_begin(s) < 0) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
        s->phase = PHASE_DATA;
        return false;   /* counted as ok when the message is queued */
}

static bool cmd_rset(Session *s, char *arg) {
        if (*skip_spaces(arg)) {
                session_reply(s, "501 5.5.4 Syntax: RSET");
                return false;
        }
        command_reset_transaction(s);
        session_reply(s, "250 2.0.0 Ok");
        return true;
}

static bool cmd_noop(Session *s, char *arg) {
        session_reply(s, "250 2.0.0 Ok");
        return true;
}

static bool cmd_quit(Session *s, char *arg) {
        session_reply(s, "221 2.0.0 Bye");
        session_close_after_flush(s);
        return true;
}

static bool cmd_help(Session *s, char *arg) {
        session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP%s",
                      s->settings->disable_vrfy ? "" : " VRFY");
        return true;
}

static bool cmd_vrfy(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        _cleanup_free_ char *reply = NULL;
        const char *reason = NULL, *params = NULL;

        if (s->settings->disable_vrfy) {
                session_reply(s, "502 5.5.1 VRFY command is disabled");
                return false;
        }
        if (need_helo(s))
                return false;
        arg = skip_spaces(arg);
        trim_right(arg);
        if (!*arg) {
                session_reply(s, "501 5.5.4 Syntax: VRFY address");
                return false;
        }
        if (address_parse_path(arg, ADDRESS_ALLOW_NO_BRACKETS | ADDRESS_ALLOW_NO_DOMAIN, &a, &params,
                               &reason) < 0 || !isempty(params)) {
                session_reply(s, "501 5.1.3 Bad recipient address syntax: %s", reason ? reason : "Junk after address");
                return false;
        }
        if (!a->domain) {
                Address *q = NULL;
                if (address_new(a->local, s->settings->myorigin, &q) < 0) {
                        session_reply(s, "501 5.1.3 Bad recipient address syntax");
                        return false;
                }
                address_free(a);
                a = q;
        }
        if (s->listener->kind != LISTENER_SUBMIT) {
                int r = smtpd_check_recipient(s, a->local, a->domain, a->external, &reply);
                if (r != 0) {
                        session_reply(s, "%s", reply ? reply : "451 4.3.0 Error: out of memory");
                        if (reply)
                                log_reject(s, "VRFY", reply, a->external);
                        return false;
                }
        }
        session_reply(s, "252 2.0.0 <%s>", a->external);
        return true;
}

static bool cmd_not_implemented(Session *s, char *arg) {
        session_reply(s, "502 5.5.1 Error: command not implemented");
        return false;
}

static bool cmd_auth(Session *s, char *arg) {
        session_reply(s, "503 5.5.1 Error: authentication not enabled");
        return false;
}

typedef struct CommandDef {
        const char *name;
        SmtpCmd id;
        bool (*fn)(Session *s, char *arg);
        bool junk;   /* counts against smtpd_junk_command_limit */
} CommandDef;

static const CommandDef commands[] = {
        { "EHLO", CMD_EHLO, cmd_ehlo, false },
        { "HELO", CMD_HELO, cmd_helo, false },
        { "MAIL", CMD_MAIL, cmd_mail, false },
        { "RCPT", CMD_RCPT, cmd_rcpt, false },
        { "DATA", CMD_DATA, cmd_data, false },
        { "RSET", CMD_RSET, cmd_rset, true },
        { "NOOP", CMD_NOOP, cmd_noop, true },
        { "QUIT", CMD_QUIT, cmd_quit, false },
        { "HELP", CMD_HELP, cmd_help, true },
        { "VRFY", CMD_VRFY, cmd_vrfy, true },
        { "ETRN", CMD_ETRN, cmd_not_implemented, true },
        { "STARTTLS", CMD_STARTTLS, cmd_not_implemented, false },
        { "AUTH", CMD_AUTH, cmd_auth, false },
        { "BDAT", CMD_BDAT, cmd_not_implemented, false },
};

void command_execute(Session *s, char *line, size_t len) {
        if (memchr(line, '\0', len)) {
                s->cmd_total[CMD_UNKNOWN]++;
                s->last_cmd = "UNKNOWN";
                session_reply(s, "500 5.5.2 Error: bad syntax (NUL character in command)");
                return;
        }
        char *verb = skip_spaces(line);
        size_t vlen = strcspn(verb, " \t");
        char *arg = verb[vlen] ? verb + vlen + 1 : verb + vlen;
        verb[vlen] = '\0';

        const CommandDef *def = NULL;
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcaseeq(verb, commands[i].name)) {
                        def = &commands[i];
                        break;
                }
        if (!def) {
                s->cmd_total[CMD_UNKNOWN]++;
                s->last_cmd = "UNKNOWN";
                if (!*verb)
                        session_reply(s, "500 5.5.2 Error: bad syntax");
                else
                        session_reply(s, "500 5.5.2 Error: command not recognized");
                return;
        }

        s->last_cmd = def->name;
        s->cmd_total[def->id]++;
        if (def->junk && ++s->junk_count > s->settings->junk_command_limit) {
                log_info("too many junk commands after %s from %s", def->name, s->id_text);
                session_reply(s, "421 4.7.0 %s Error: too many errors", s->settings->myhostname);
                session_close_after_flush(s);
                return;
        }
        if (def->fn(s, arg))
                s->cmd_ok[def->id]++;
}
