/* smtpd-command.c — the SMTP command state machine (RFC 5321): EHLO/HELO, MAIL, RCPT, DATA,
 * RSET, NOOP, QUIT, HELP, VRFY, ETRN (STARTTLS is in smtpd-tls.c, AUTH in smtpd-auth.c, BDAT in
 * smtpd-bdat.c). The EHLO keywords come from one table (ehlo_keywords[]) that
 * smtpd_discard_ehlo_keywords filters; MAIL/RCPT parse the ESMTP parameters SIZE, BODY,
 * SMTPUTF8, RET, ENVID, NOTIFY and ORCPT. Reply texts follow Postfix's so that clients and log
 * tools see familiar words; every reply carries an enhanced status code. Each command is
 * counted for the session fingerprint logged at disconnect
 * ("ehlo=1 mail=1 rcpt=0/1 ... commands=3/4"). */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/address.h"
#include "mail/xtext.h"
#include "queue/queue.h"

static const char *const cmd_names[_CMD_MAX] = {
        [CMD_HELO] = "helo", [CMD_EHLO] = "ehlo", [CMD_STARTTLS] = "starttls", [CMD_AUTH] = "auth",
        [CMD_XFORWARD] = "xforward", [CMD_MAIL] = "mail", [CMD_RCPT] = "rcpt", [CMD_BDAT] = "bdat", [CMD_DATA] = "data",
        [CMD_RSET] = "rset", [CMD_NOOP] = "noop", [CMD_VRFY] = "vrfy", [CMD_ETRN] = "etrn",
        [CMD_HELP] = "help", [CMD_QUIT] = "quit", [CMD_UNKNOWN] = "unknown",
};

static const char *protocol_name(Session *s) {
        return s->client.esmtp ? "ESMTP" : "SMTP";
}

void command_log_disconnect(Session *s) {
        char buf[512];
        size_t len = 0;
        unsigned ok = 0, total = 0;

        smtpd_metrics_disconnect();
        len += (size_t) snprintf(buf, sizeof(buf), "disconnect from %s", s->client.id_text);
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
        log_fields(LOG_INFO, &(LogFields) { .client_address = s->client.addr[0] ? s->client.addr : NULL }, "%s", buf);
}

static bool need_helo(Session *s) {
        if (s->settings->helo_required && !s->client.helo) {
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
        free(s->client.helo);
        s->client.helo = h;
        smtpd_transaction_reset(&s->tx);
        return true;
}

/* The EHLO keywords in Postfix's order. offered() (NULL: always) says whether this session
 * gets the keyword at all; arg() (NULL: none) appends its argument. Add a line to offer more. */
typedef struct EhloKeyword {
        const char *name;        /* as announced; lower case in smtpd_discard_ehlo_keywords */
        unsigned bit;
        bool (*offered)(Session *s);
        void (*arg)(Session *s, char *buf, size_t n);
} EhloKeyword;

static bool ehlo_vrfy_offered(Session *s) {
        return !s->settings->disable_vrfy;
}

static bool ehlo_smtputf8_offered(Session *s) {
        return s->settings->smtputf8_enable;
}

/* RFC 8689: REQUIRETLS only inside TLS (it is a promise about how the message travels on). */
static bool ehlo_requiretls_offered(Session *s) {
        return s->settings->requiretls_enable && s->client.tls_active;
}

static void ehlo_size_arg(Session *s, char *buf, size_t n) {
        if (s->settings->message_size_limit)
                snprintf(buf, n, " %llu", (unsigned long long) s->settings->message_size_limit);
}

static void ehlo_xforward_arg(Session *s, char *buf, size_t n) {
        snprintf(buf, n, " NAME ADDR PORT PROTO HELO IDENT SOURCE");
}

static const EhloKeyword ehlo_keywords[] = {
        { "PIPELINING", EHLO_PIPELINING, NULL, NULL },
        { "SIZE", EHLO_SIZE, NULL, ehlo_size_arg },
        { "VRFY", EHLO_VRFY, ehlo_vrfy_offered, NULL },
        { "ETRN", EHLO_ETRN, NULL, NULL },
        { "STARTTLS", EHLO_STARTTLS, smtpd_tls_offer, NULL },
        { "AUTH", EHLO_AUTH, smtpd_auth_ehlo_offered, smtpd_auth_ehlo_arg },
        { "AUTH=", EHLO_AUTH, smtpd_auth_ehlo_broken_offered, smtpd_auth_ehlo_broken_arg },
        { "ENHANCEDSTATUSCODES", EHLO_ENHANCEDSTATUSCODES, NULL, NULL },
        { "8BITMIME", EHLO_8BITMIME, NULL, NULL },
        { "DSN", EHLO_DSN, NULL, NULL },
        { "SMTPUTF8", EHLO_SMTPUTF8, ehlo_smtputf8_offered, NULL },
        { "REQUIRETLS", EHLO_REQUIRETLS, ehlo_requiretls_offered, NULL },
        { "CHUNKING", EHLO_CHUNKING, NULL, NULL },
        { "XFORWARD", EHLO_XFORWARD, smtpd_xforward_offered, ehlo_xforward_arg },
};

unsigned command_ehlo_mask(char **words) {
        unsigned mask = 0;

        for (char **w = words; w && *w; w++) {
                bool found = false;
                if (strcaseeq(*w, "silent-discard")) {
                        mask |= EHLO_SILENT_DISCARD;
                        continue;
                }
                for (size_t i = 0; i < ELEMENTSOF(ehlo_keywords); i++)
                        if (strcaseeq(*w, ehlo_keywords[i].name)) {
                                mask |= ehlo_keywords[i].bit;
                                found = true;
                        }
                if (!found)
                        log_warning("smtpd_discard_ehlo_keywords: unknown EHLO keyword \"%s\" ignored", *w);
        }
        return mask;
}

#define EHLO_DISCARD_KNOWN (1u << 31)   /* s->client.ehlo_discard has been computed */

unsigned command_ehlo_discard_for(Session *s, unsigned mask, TableList *maps, const char *param) {
        if (!maps || !s->client.addr[0])
                return mask;
        _cleanup_free_ char *v = NULL;
        int r = table_list_lookup(maps, s->client.addr, &v);
        if (r < 0)
                log_warning("%s: lookup of %s failed; using the keyword list", param, s->client.addr);
        else if (r > 0) {
                /* the table's value replaces the global list for this client, as in Postfix */
                _cleanup_strv_free_ char **w = conf_split_list(v);
                if (w)
                        mask = command_ehlo_mask(w);
        }
        return mask;
}

unsigned command_ehlo_discard(Session *s) {
        if (s->client.ehlo_discard & EHLO_DISCARD_KNOWN)
                return s->client.ehlo_discard & ~EHLO_DISCARD_KNOWN;
        unsigned mask = command_ehlo_discard_for(s, s->settings->ehlo_discard, s->settings->ehlo_discard_maps,
                                                 "smtpd_discard_ehlo_keyword_address_maps");
        s->client.ehlo_discard = mask | EHLO_DISCARD_KNOWN;
        return mask;
}

char *command_filtered(Session *s, TableList *filter, const char *param, const char *line, const char *who) {
        if (!filter)
                return NULL;
        line = skip_spaces((char *) line);
        _cleanup_free_ char *v = NULL;
        int r = table_list_lookup(filter, line, &v);
        if (r < 0) {
                log_warning("%s: lookup of \"%.100s\" from %s failed; the command is used as sent", param, line, who);
                return NULL;
        }
        if (r == 0 || streq(v, line))
                return NULL;
        log_info("%s: replacing command \"%.100s\" with \"%.100s\"", who, line, v);
        free(s->filtered_command);
        return (s->filtered_command = TAKE_PTR(v));
}

static bool ehlo_hidden(Session *s, unsigned bit) {
        return command_ehlo_discard(s) & bit;
}

static void ehlo_reply(Session *s, const char *arg, const char *refusal);

static void ehlo_finish(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                free(s->client.helo);   /* a refused name is not remembered, as in Postfix */
                s->client.helo = NULL;
                return;
        }
        s->client.esmtp = true;
        smtpd_milter_run(s, MILTER_STAGE_HELO, s->client.helo, ehlo_reply);
}

/* A milter refused HELO/EHLO: its reply; the name is not remembered (as for a refusal by the
 * restrictions). True when it did. */
static bool helo_milter_refused(Session *s, const char *refusal) {
        if (!refusal)
                return false;
        smtpd_milter_reply(s, refusal);
        free(s->client.helo);
        s->client.helo = NULL;
        return true;
}

/* After the milters: the refusal, or the EHLO keywords. */
static void ehlo_reply(Session *s, const char *arg, const char *refusal) {
        if (helo_milter_refused(s, refusal))
                return;

        unsigned discard = command_ehlo_discard(s);
        char hidden[256] = "";
        size_t hl = 0;
        const EhloKeyword *last = NULL;
        for (size_t i = 0; i < ELEMENTSOF(ehlo_keywords); i++) {
                const EhloKeyword *k = &ehlo_keywords[i];
                if (k->offered && !k->offered(s))
                        continue;
                if (discard & k->bit) {
                        if (hl < sizeof(hidden))
                                hl += (size_t) snprintf(hidden + hl, sizeof(hidden) - hl, "%s%s",
                                                        hl ? " " : "", k->name);
                        continue;
                }
                last = k;
        }
        if (hidden[0] && !(discard & EHLO_SILENT_DISCARD))
                log_info("discarding EHLO keywords: %s", hidden);

        session_reply_raw(s, "250");
        session_reply_raw(s, last ? "-" : " ");
        session_reply_raw(s, s->settings->myhostname);
        session_reply_raw(s, "\r\n");
        for (size_t i = 0; i < ELEMENTSOF(ehlo_keywords) && last; i++) {
                const EhloKeyword *k = &ehlo_keywords[i];
                char line[SMTPD_EHLO_ARG_MAX + 64], argbuf[SMTPD_EHLO_ARG_MAX] = "";
                if ((k->offered && !k->offered(s)) || (discard & k->bit))
                        continue;
                if (k->arg)
                        k->arg(s, argbuf, sizeof(argbuf));
                snprintf(line, sizeof(line), "250%c%s%s\r\n", k == last ? ' ' : '-', k->name, argbuf);
                session_reply_raw(s, line);
        }
        s->last_code = 250;
        s->cmd_ok[CMD_EHLO]++;
}

static bool cmd_ehlo(Session *s, char *arg) {
        if (!set_helo(s, arg, "EHLO"))
                return false;
        s->client.esmtp = true;
        if (s->listener->kind == LISTENER_SUBMIT)
                ehlo_finish(s, NULL, true);
        else
                smtpd_check_run(s, STAGE_HELO, NULL, ehlo_finish);
        return false;   /* counted by ehlo_finish */
}

static void helo_reply(Session *s, const char *arg, const char *refusal) {
        if (helo_milter_refused(s, refusal))
                return;
        session_reply(s, "250 %s", s->settings->myhostname);
        s->cmd_ok[CMD_HELO]++;
}

static void helo_finish(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                free(s->client.helo);
                s->client.helo = NULL;
                return;
        }
        s->client.esmtp = false;
        smtpd_milter_run(s, MILTER_STAGE_HELO, s->client.helo, helo_reply);
}

static bool cmd_helo(Session *s, char *arg) {
        if (!set_helo(s, arg, "HELO"))
                return false;
        s->client.esmtp = false;
        if (s->listener->kind == LISTENER_SUBMIT)
                helo_finish(s, NULL, true);
        else
                smtpd_check_run(s, STAGE_HELO, NULL, helo_finish);
        return false;   /* counted by helo_finish */
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
                /* The canonical form ("site!user" -> "user@site", "user" -> "user@$myorigin",
                 * smtpd-rewrite.c), so the checks see what will be queued; with
                 * append_at_myorigin = no a bare name is still checked as user@$myorigin. */
                _cleanup_free_ char *canon = NULL;
                const char *why = NULL;
                if (smtpd_rewrite_canonical(s, a->external, &canon) >= 0 && addr_domain_at(canon) >= 0 &&
                    address_parse(canon, flags & ADDRESS_SMTPUTF8, &q, &why) >= 0) {
                        address_free(a);
                        a = q;
                        goto done;
                }
                r = address_new(a->local, s->settings->myorigin, &q);
                if (r < 0) {
                        *ret_reason = "Bad domain in $myorigin";
                        return r;
                }
                address_free(a);
                a = q;
        }
done:
        *ret_params = params ? (char *) params : (char *) "";
        *ret = TAKE_PTR(a);
        return 0;
}

/* True when the path text [p, end) holds non-ASCII bytes (a UTF-8 local part or U-label). */
static bool has_8bit(const char *p, const char *end) {
        for (; p < end && *p; p++)
                if ((unsigned char) *p >= 0x80)
                        return true;
        return false;
}

/* The before-queue filter's reply (smtpd-proxy-filter.c; lines joined by CRLF) as ours. */
void command_reply_proxied(Session *s, const char *reply) {
        const char *last = reply;
        for (const char *e; (e = strstr(last, "\r\n")); last = e + 2) {
                _cleanup_free_ char *line = strndup(last, (size_t) (e - last + 2));
                if (line)
                        session_reply_raw(s, line);
        }
        session_reply(s, "%s", last);
}

static void log_reject(Session *s, const char *cmd, const char *reply, const char *rcpt);

/* A refusal by the before-queue filter: the client's reply, and Postfix's reject line. */
static void reject_proxied(Session *s, const char *cmd, const char *reply, const char *rcpt) {
        _cleanup_free_ char *line = smtpd_proxy_log_text(reply);
        command_reply_proxied(s, reply);
        log_reject(s, cmd, line ? line : reply, rcpt);
}

/* The filter's answer to MAIL (smtpd_proxy_filter without speed_adjust). */
static void mail_proxied(Session *s, const char *reply, bool ok) {
        if (!ok) {
                reject_proxied(s, "MAIL", reply, "");
                smtpd_transaction_reset(&s->tx);
                return;
        }
        command_reply_proxied(s, reply);
        s->cmd_ok[CMD_MAIL]++;
}

/* MAIL is accepted here: 250, or first the before-queue filter's word. */
static void mail_accepted(Session *s) {
        if (smtpd_proxy_active(s) && !s->settings->proxy_speed_adjust) {
                SmtpdProxyStep step = { .kind = PROXY_STEP_MAIL };
                smtpd_proxy_run(s, &step, 1, mail_proxied);
                return;
        }
        s->cmd_ok[CMD_MAIL]++;
        session_reply(s, "250 2.1.0 Ok");
}

/* MAIL after postern-anvil counted it (smtpd_client_message_rate_limit). */
static void mail_after_anvil(Session *s, bool allowed, void *userdata) {
        if (!allowed) {
                smtpd_transaction_reset(&s->tx);   /* refused: 450 4.7.1 is already replied */
                return;
        }
        mail_accepted(s);
}

static void mail_milter_done(Session *s, const char *arg, const char *refusal);

static void mail_finish(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                smtpd_transaction_reset(&s->tx);
                return;
        }
        smtpd_milter_run(s, MILTER_STAGE_MAIL, NULL, mail_milter_done);
}

/* After the milters: the refusal, or on to postern-anvil's message count. */
static void mail_milter_done(Session *s, const char *arg, const char *refusal) {
        if (refusal) {
                smtpd_milter_reply(s, refusal);
                smtpd_transaction_reset(&s->tx);
                return;
        }
        s->tx.in_mail = true;
        if (smtpd_anvil_check(s, ANVIL_EVENT_MESSAGE, mail_after_anvil, NULL, NULL))
                return;   /* answered when postern-anvil has counted it */
        mail_accepted(s);
}

enum { DSN_RET_FULL = 1, DSN_RET_HDRS = 2 };   /* QueueMessage.ret */
#define DSN_ENVID_MAX 100    /* RFC 3461 §4.4 */
#define DSN_ORCPT_MAX 500    /* RFC 3461 §4.2, the encoded parameter */

/* Decodes an xtext value that must be printable US-ASCII once decoded (ENVID, ORCPT rfc822). */
static int dsn_decode(const char *v, char **ret) {
        _cleanup_free_ char *d = NULL;
        size_t n = 0;

        if (!*v || xtext_decode(v, strlen(v), &d, &n) < 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) d[i] < 0x20 || (unsigned char) d[i] >= 0x7f)
                        return -EINVAL;
        *ret = TAKE_PTR(d);
        return 0;
}

/* MAIL FROM parameters (RFC 1870 SIZE, 6152 BODY, 6531 SMTPUTF8, 3461 RET/ENVID, 8689
 * REQUIRETLS). Returns
 * false after replying. */
static bool mail_params(Session *s, char *params, const char **ret_body) {
        char *save = NULL;
        bool seen_utf8 = false;

        for (char *p = strtok_r(params, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                const char *v;
                if ((v = startswith_no_case(p, "SIZE=")) && !ehlo_hidden(s, EHLO_SIZE)) {
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
                } else if ((v = startswith_no_case(p, "BODY=")) && !ehlo_hidden(s, EHLO_8BITMIME)) {
                        if (strcaseeq(v, "7BIT"))
                                *ret_body = "7BIT";
                        else if (strcaseeq(v, "8BITMIME"))
                                *ret_body = "8BITMIME";
                        else {
                                session_reply(s, "501 5.5.4 Unsupported BODY parameter: %.64s", v);
                                return false;
                        }
                } else if (strcaseeq(p, "SMTPUTF8") && s->settings->smtputf8_enable &&
                           !ehlo_hidden(s, EHLO_SMTPUTF8)) {
                        seen_utf8 = true;
                } else if (strcaseeq(p, "REQUIRETLS") && ehlo_requiretls_offered(s) &&
                           !ehlo_hidden(s, EHLO_REQUIRETLS)) {
                        /* kept with the message: postern-smtp sends it on only over verified TLS
                         * to servers that offer REQUIRETLS, or returns it (5.7.30) */
                        s->tx.requiretls = true;
                } else if ((v = startswith_no_case(p, "RET=")) || (v = startswith_no_case(p, "ENVID="))) {
                        bool ret = toupper((unsigned char) p[0]) == 'R';
                        if (ehlo_hidden(s, EHLO_DSN)) {
                                session_reply(s, "501 5.7.1 DSN support is disabled");
                                return false;
                        }
                        if (ret) {
                                if (s->tx.dsn_ret) {
                                        session_reply(s, "501 5.5.4 Duplicate RET parameter");
                                        return false;
                                }
                                if (strcaseeq(v, "FULL"))
                                        s->tx.dsn_ret = DSN_RET_FULL;
                                else if (strcaseeq(v, "HDRS"))
                                        s->tx.dsn_ret = DSN_RET_HDRS;
                                else {
                                        session_reply(s, "501 5.5.4 Bad RET parameter syntax");
                                        return false;
                                }
                        } else {
                                if (s->tx.dsn_envid) {
                                        session_reply(s, "501 5.5.4 Duplicate ENVID parameter");
                                        return false;
                                }
                                if (strlen(v) > DSN_ENVID_MAX * 3 || dsn_decode(v, &s->tx.dsn_envid) < 0 ||
                                    strlen(s->tx.dsn_envid) > DSN_ENVID_MAX) {
                                        free(s->tx.dsn_envid);
                                        s->tx.dsn_envid = NULL;
                                        session_reply(s, "501 5.5.4 Bad ENVID parameter syntax");
                                        return false;
                                }
                        }
                } else if ((v = startswith_no_case(p, "AUTH="))) {
                        if (!smtpd_auth_mail_param(s, v))
                                return false;
                } else {
                        session_reply(s, "555 5.5.4 Unsupported option: %.64s", p);
                        return false;
                }
        }
        s->tx.smtputf8 = seen_utf8;
        return true;
}

static bool cmd_mail(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        const char *reason = NULL;
        char *params = NULL;
        const char *body = NULL;

        if (need_helo(s))
                return false;
        if (smtpd_tls_required(s))
                return false;
        if (s->tx.bdat_active) {
                session_reply(s, "503 5.5.1 Error: MAIL after BDAT");
                return false;
        }
        if (s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: nested MAIL command");
                return false;
        }
        char *rest = (char *) startswith_no_case(arg, "FROM:");
        if (!rest) {
                session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
                return false;
        }
        AddressFlags utf8 = s->settings->smtputf8_enable ? ADDRESS_SMTPUTF8 : 0;
        if (parse_path(s, rest, ADDRESS_ALLOW_EMPTY | utf8, &a, &params, &reason) < 0) {
                session_reply(s, "501 5.1.7 Bad sender address syntax: %s", strna(reason));
                return false;
        }
        bool unicode = has_8bit(rest, params);
        if (!mail_params(s, params, &body)) {
                smtpd_transaction_reset(&s->tx);
                return false;
        }
        if (unicode && !s->tx.smtputf8) {
                smtpd_transaction_reset(&s->tx);
                session_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
                return false;
        }

        s->tx.sender = strdup(a->external);
        s->tx.body_type = body ? strdup(body) : NULL;
        if (!s->tx.sender || (body && !s->tx.body_type)) {
                smtpd_transaction_reset(&s->tx);
                session_reply(s, "451 4.3.0 Error: out of memory");
                return false;
        }
        s->tx.number = ++s->server->n_transactions;
        smtpd_milter_abort(s);   /* a transaction the milters saw and that ended early */
        if (s->listener->kind == LISTENER_SUBMIT)
                mail_finish(s, NULL, true);
        else
                smtpd_check_run(s, STAGE_MAIL, NULL, mail_finish);
        return false;   /* counted by mail_finish */
}

static void log_reject(Session *s, const char *cmd, const char *reply, const char *rcpt) {
        LogFields f = { .queue_id = s->tx.queue_id[0] ? s->tx.queue_id : NULL,
                        .client_address = s->client.addr[0] ? s->client.addr : NULL,
                        .sender = s->tx.sender, .recipient = rcpt };
        log_fields(LOG_INFO, &f, "%s: reject: %s from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                   s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE", cmd, s->client.id_text, reply,
                   strempty(s->tx.sender), rcpt, protocol_name(s), strempty(s->client.helo));
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (each once); 0 when malformed. */
static unsigned dsn_notify_parse(const char *v) {
        unsigned bits = 0;

        while (*v) {
                size_t l = strcspn(v, ",");
                unsigned b = 0;
                if (l == 5 && strncasecmp(v, "NEVER", 5) == 0)
                        b = QUEUE_NOTIFY_NEVER;
                else if (l == 7 && strncasecmp(v, "SUCCESS", 7) == 0)
                        b = QUEUE_NOTIFY_SUCCESS;
                else if (l == 7 && strncasecmp(v, "FAILURE", 7) == 0)
                        b = QUEUE_NOTIFY_FAILURE;
                else if (l == 5 && strncasecmp(v, "DELAY", 5) == 0)
                        b = QUEUE_NOTIFY_DELAY;
                if (!b || (bits & b))
                        return 0;
                bits |= b;
                v += l;
                if (*v == ',' && !*++v)
                        return 0;   /* trailing comma */
        }
        if ((bits & QUEUE_NOTIFY_NEVER) && bits != QUEUE_NOTIFY_NEVER)
                return 0;
        return bits;
}

/* ORCPT=addr-type;xtext: returns "type;address" decoded, or NULL with errno-style r<0. */
static int dsn_orcpt_parse(Session *s, const char *v, char **ret) {
        const char *semi = strchr(v, ';');
        _cleanup_free_ char *addr = NULL;

        if (!semi || semi == v || strlen(v) > DSN_ORCPT_MAX)
                return -EINVAL;
        for (const char *c = v; c < semi; c++)   /* addr-type is an atom */
                if (!isalnum((unsigned char) *c) && *c != '-')
                        return -EINVAL;
        bool utf8 = (semi - v == 5 && strncasecmp(v, "utf-8", 5) == 0);
        if (utf8 && !s->tx.smtputf8)
                return -EINVAL;
        if (utf8) {
                /* RFC 6533 utf-8-addr-xtext: UTF-8 characters stand for themselves. */
                const char *a = semi + 1;
                if (!*a || !utf8_is_valid(a, strlen(a)))
                        return -EINVAL;
                for (const char *c = a; *c; c++)
                        if ((unsigned char) *c <= ' ' || *c == 0x7f)
                                return -EINVAL;
                addr = strdup(a);
                if (!addr)
                        return -ENOMEM;
        } else if (dsn_decode(semi + 1, &addr) < 0)
                return -EINVAL;
        if (asprintf(ret, "%.*s;%s", (int) (semi - v), v, addr) < 0)
                return -ENOMEM;
        return 0;
}

/* RCPT TO parameters (RFC 3461 NOTIFY, ORCPT). Returns false after replying. */
static bool rcpt_params(Session *s, char *params, unsigned *ret_notify, char **ret_orcpt) {
        char *save = NULL;

        for (char *p = strtok_r(params, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                const char *v;
                bool notify = (v = startswith_no_case(p, "NOTIFY="));
                if (!notify && !(v = startswith_no_case(p, "ORCPT="))) {
                        session_reply(s, "555 5.5.4 Unsupported option: %.64s", p);
                        return false;
                }
                if (ehlo_hidden(s, EHLO_DSN)) {
                        session_reply(s, "501 5.7.1 DSN support is disabled");
                        return false;
                }
                if (notify) {
                        if (*ret_notify) {
                                session_reply(s, "501 5.5.4 Error: Duplicate NOTIFY parameter");
                                return false;
                        }
                        *ret_notify = dsn_notify_parse(v);
                        if (!*ret_notify) {
                                session_reply(s, "501 5.5.4 Error: Bad NOTIFY parameter syntax");
                                return false;
                        }
                } else {
                        if (*ret_orcpt) {
                                session_reply(s, "501 5.5.4 Error: Duplicate ORCPT parameter");
                                return false;
                        }
                        int r = dsn_orcpt_parse(s, v, ret_orcpt);
                        if (r < 0) {
                                session_reply(s, r == -ENOMEM ? "451 4.3.0 Error: out of memory"
                                              : "501 5.5.4 Error: Bad ORCPT parameter syntax");
                                return false;
                        }
                }
        }
        return true;
}

static void rcpt_added(Session *s, SmtpdRecipient *r, const char *proxy_reply);

/* The filter's answer to RCPT: the recipient waited in tx.rcpt_pending. */
static void rcpt_proxied(Session *s, const char *reply, bool ok) {
        _cleanup_(smtpd_recipient_done) SmtpdRecipient r = s->tx.rcpt_pending;
        s->tx.rcpt_pending = (SmtpdRecipient) {};
        if (!ok) {
                reject_proxied(s, "RCPT", reply, strempty(r.address));
                return;
        }
        rcpt_added(s, &r, reply);
}

static void rcpt_milter_done(Session *s, const char *rcpt, const char *refusal);

static void rcpt_finish(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                smtpd_recipient_done(&s->tx.rcpt_pending);
                return;
        }
        smtpd_milter_run(s, MILTER_STAGE_RCPT, rcpt, rcpt_milter_done);
}

/* After the milters: the refusal of this recipient, or it is added. */
static void rcpt_milter_done(Session *s, const char *rcpt, const char *refusal) {
        /* the recipient whose NOTIFY/ORCPT waited for the restrictions' and milters' answers */
        _cleanup_(smtpd_recipient_done) SmtpdRecipient r = s->tx.rcpt_pending;

        s->tx.rcpt_pending = (SmtpdRecipient) {};
        if (refusal) {
                smtpd_milter_reply(s, refusal);
                return;
        }
        if (!(r.address = strdup(rcpt))) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return;
        }
        if (smtpd_proxy_active(s) && !s->settings->proxy_speed_adjust) {
                /* the filter decides too; the recipient waits in tx.rcpt_pending meanwhile */
                SmtpdProxyStep step = { .kind = PROXY_STEP_RCPT, .rcpt = { .address = strdup(r.address),
                                        .orcpt = r.orcpt ? strdup(r.orcpt) : NULL, .notify = r.notify } };
                if (!step.rcpt.address || (r.orcpt && !step.rcpt.orcpt)) {
                        smtpd_recipient_done(&step.rcpt);
                        session_reply(s, "451 4.3.0 Error: out of memory");
                        return;
                }
                s->tx.rcpt_pending = r;
                r = (SmtpdRecipient) {};
                smtpd_proxy_run(s, &step, 1, rcpt_proxied);
                return;
        }
        rcpt_added(s, &r, NULL);
}

/* An accepted recipient joins the transaction; 250 (or the filter's reply). */
static void rcpt_added(Session *s, SmtpdRecipient *r, const char *proxy_reply) {
        if (smtpd_transaction_add_rcpt(&s->tx, r) < 0) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return;
        }

        if (!s->tx.queue_id[0]) {
                queue_id_new(s->tx.queue_id);
                LogFields f = { .queue_id = s->tx.queue_id, .client_address = s->client.addr[0] ? s->client.addr : NULL,
                                .sender = s->tx.sender };
                if (s->listener->kind == LISTENER_SUBMIT) {
                        /* Postfix's pickup logs the arrival of local mail: log summaries
                         * (pflogsumm) count it under that name */
                        f.role = "pickup";
                        log_fields(LOG_INFO, &f, "%s: uid=%ld from=<%s>", s->tx.queue_id,
                                   (long) (int) s->client.uid, s->tx.sender);
                } else if (s->client.sasl_username)
                        log_fields(LOG_INFO, &f, "%s: client=%s, sasl_method=%s, sasl_username=%s",
                                   s->tx.queue_id, s->client.id_text, s->client.sasl_method, s->client.sasl_username);
                else if (s->tx.xforward.set) {   /* the original client a content filter names */
                        SmtpdClientView v = smtpd_client_view(s);
                        const char *oid = s->tx.xforward.attr[XFORWARD_IDENT];
                        log_fields(LOG_INFO, &f, "%s: client=%s%s%s, orig_client=%s[%s]", s->tx.queue_id,
                                   s->client.id_text, oid ? ", orig_queue_id=" : "", strempty(oid), v.name, v.addr);
                } else
                        log_fields(LOG_INFO, &f, "%s: client=%s", s->tx.queue_id, s->client.id_text);
        }
        if (proxy_reply)
                command_reply_proxied(s, proxy_reply);
        else
                session_reply(s, "250 2.1.5 Ok");
        s->cmd_ok[CMD_RCPT]++;
}

/* The recipient restrictions (not for local submissions), then rcpt_finish(). */
static void rcpt_check(Session *s, const char *rcpt) {
        if (s->client.screen_refusal) {
                /* the screening stage's "enforce": this client delivers nothing */
                smtpd_reply_reject(s, STAGE_RCPT, rcpt, s->client.screen_refusal);
                smtpd_recipient_done(&s->tx.rcpt_pending);
                return;
        }
        if (s->listener->kind == LISTENER_SUBMIT)
                rcpt_finish(s, rcpt, true);
        else
                smtpd_check_run(s, STAGE_RCPT, rcpt, rcpt_finish);
}

static void rcpt_address_free(void *userdata) {
        address_free(userdata);
}

/* RCPT after postern-anvil counted it (smtpd_client_recipient_rate_limit): refused with its
 * 452 already replied, or on to the restrictions. */
static void rcpt_after_anvil(Session *s, bool allowed, void *userdata) {
        Address *a = userdata;
        if (allowed)
                rcpt_check(s, a->external);
        else
                smtpd_recipient_done(&s->tx.rcpt_pending);
        address_free(a);
}

static bool cmd_rcpt(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        _cleanup_free_ char *orcpt = NULL;
        const char *reason = NULL;
        char *params = NULL;
        unsigned notify = 0;

        if (need_helo(s))
                return false;
        if (s->tx.bdat_active) {
                session_reply(s, "503 5.5.1 Error: RCPT after BDAT");
                return false;
        }
        if (!s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: need MAIL command");
                return false;
        }
        char *rest = (char *) startswith_no_case(arg, "TO:");
        if (!rest) {
                session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
                return false;
        }
        s->tx.rcpt_attempts++;
        AddressFlags utf8 = s->settings->smtputf8_enable ? ADDRESS_SMTPUTF8 : 0;
        if (parse_path(s, rest, utf8, &a, &params, &reason) < 0) {
                session_reply(s, "501 5.1.3 Bad recipient address syntax: %s", strna(reason));
                return false;
        }
        if (has_8bit(rest, params) && !s->tx.smtputf8) {
                session_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
                return false;
        }
        if (!rcpt_params(s, params, &notify, &orcpt))
                return false;
        if (s->tx.n_rcpts >= s->settings->recipient_limit) {
                session_reply(s, "452 4.5.3 Error: too many recipients");
                return false;
        }

        /* NOTIFY/ORCPT wait with the session until the recipient restrictions have answered. */
        smtpd_recipient_done(&s->tx.rcpt_pending);
        s->tx.rcpt_pending = (SmtpdRecipient) { .orcpt = TAKE_PTR(orcpt), .notify = notify };
        if (smtpd_anvil_check(s, ANVIL_EVENT_RECIPIENT, rcpt_after_anvil, a, rcpt_address_free)) {
                a = NULL;   /* the anvil request owns it until it answers */
                return false;
        }
        rcpt_check(s, a->external);
        return false;   /* counted by rcpt_finish */
}

static void data_start(Session *s, const char *proxy_reply) {
        if (data_begin(s) < 0) {
                session_reply(s, "451 4.3.0 Error: out of memory");
                return;
        }
        if (proxy_reply)
                command_reply_proxied(s, proxy_reply);
        else
                session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
        session_enter_data(s);
}

/* The filter's answer to DATA: its 354 starts the content. */
static void data_proxied(Session *s, const char *reply, bool ok) {
        if (!ok) {
                reject_proxied(s, "DATA", reply, s->tx.n_rcpts == 1 ? s->tx.rcpts[0].address : "");
                return;
        }
        data_start(s, reply);
}

/* After the milters' DATA stage: the before-queue filter's DATA, or our 354. */
static void data_milter_done(Session *s, const char *arg, const char *refusal) {
        if (refusal) {
                smtpd_milter_reply(s, refusal);
                return;
        }
        if (smtpd_proxy_active(s) && !s->settings->proxy_speed_adjust) {
                SmtpdProxyStep step = { .kind = PROXY_STEP_DATA };
                smtpd_proxy_run(s, &step, 1, data_proxied);
                return;
        }
        data_start(s, NULL);
}

static void data_cmd_finish(Session *s, const char *rcpt, bool accepted) {
        if (accepted)
                smtpd_milter_run(s, MILTER_STAGE_DATA, NULL, data_milter_done);
}

static bool cmd_data(Session *s, char *arg) {
        if (need_helo(s))
                return false;
        if (*skip_spaces(arg)) {
                session_reply(s, "501 5.5.4 Syntax: DATA");
                return false;
        }
        if (s->tx.bdat_active) {
                session_reply(s, "503 5.5.1 Error: DATA after BDAT");
                return false;
        }
        if (!s->tx.in_mail || (s->tx.n_rcpts == 0 && s->tx.rcpt_attempts == 0)) {
                session_reply(s, "503 5.5.1 Error: need RCPT command");
                return false;
        }
        if (s->tx.n_rcpts == 0) {
                session_reply(s, "554 5.5.1 Error: no valid recipients");
                return false;
        }
        if (s->listener->kind == LISTENER_SUBMIT)
                data_cmd_finish(s, NULL, true);
        else
                smtpd_check_run(s, STAGE_DATA, s->tx.n_rcpts == 1 ? s->tx.rcpts[0].address : NULL, data_cmd_finish);
        return false;   /* counted as ok when the message is queued */
}

static bool cmd_rset(Session *s, char *arg) {
        if (*skip_spaces(arg)) {
                session_reply(s, "501 5.5.4 Syntax: RSET");
                return false;
        }
        smtpd_transaction_reset(&s->tx);
        smtpd_milter_abort(s);
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
        session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP%s",
                      s->settings->disable_vrfy ? "" : " VRFY");
        return true;
}

static bool cmd_vrfy(Session *s, char *arg) {
        _cleanup_address_free_ Address *a = NULL;
        _cleanup_free_ char *reply = NULL;
        const char *reason = NULL, *params = NULL;

        if (s->settings->disable_vrfy || ehlo_hidden(s, EHLO_VRFY)) {
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

static bool cmd_etrn(Session *s, char *arg) {
        if (ehlo_hidden(s, EHLO_ETRN))
                return cmd_not_implemented(s, arg);
        return smtpd_etrn_command(s, arg);
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
        { "ETRN", CMD_ETRN, cmd_etrn, true },
        { "STARTTLS", CMD_STARTTLS, smtpd_tls_starttls, false },
        { "AUTH", CMD_AUTH, smtpd_auth_command, false },
        { "BDAT", CMD_BDAT, bdat_command, false },
        { "XFORWARD", CMD_XFORWARD, smtpd_xforward_command, false },
};

/* RFC 2920: these commands end a pipelined group; input after them, or any pipelining by a client
 * that was not offered PIPELINING (no EHLO yet, or HELO), is "unauthorised pipelining". */
static bool ends_group(SmtpCmd id) {
        switch (id) {
        case CMD_EHLO: case CMD_HELO: case CMD_DATA: case CMD_VRFY: case CMD_NOOP: case CMD_QUIT:
        case CMD_STARTTLS: case CMD_AUTH: case CMD_ETRN:
                return true;
        default:
                return false;
        }
}

/* smtpd_forbid_unauth_pipelining: answers 554 and disconnects; true when it did. */
static bool forbid_pipelining(Session *s, const char *pending, size_t len) {
        if (!s->ill_pipelining || !s->settings->forbid_unauth_pipelining || s->listener->kind == LISTENER_SUBMIT)
                return false;
        size_t show = strcspn(pending, "\r\n");
        log_info("improper command pipelining after %s from %s: %.*s", s->ill_after, s->client.id_text,
                 (int) MIN(MIN(show, len), (size_t) 100), pending);
        session_reply(s, "554 5.5.0 Error: SMTP protocol synchronization");
        smtpd_transaction_reset(&s->tx);
        strbuf_reset(&s->in);
        session_close_after_flush(s);
        return true;
}

static void note_pipelining(Session *s, const CommandDef *def) {
        if (s->ill_pipelining || s->listener->kind == LISTENER_SUBMIT || s->in.len == 0 || def->id == CMD_QUIT)
                return;
        if (!ends_group(def->id) && s->client.esmtp)
                return;
        s->ill_pipelining = true;
        s->ill_after = def->name;
        /* Message content sent before the 354 reply is checked here: nothing follows to trip
         * the check at the next command. */
        if (def->id == CMD_DATA && session_phase(s) == PHASE_DATA)
                (void) forbid_pipelining(s, s->in.data, s->in.len);
}

/* After the milters' connect stage: a refusal answers every later command but QUIT (a 421
 * closes the session at once, see smtpd-milter.c). */
static void greet_milter_done(Session *s, const char *arg, const char *refusal) {
        if (refusal && !startswith(refusal, "421")) {
                free(s->access_denied);
                s->access_denied = strdup(refusal);
        }
        if (!refusal || !startswith(refusal, "421"))
                session_reply(s, "220 %s", s->settings->banner);
        else
                smtpd_milter_reply(s, refusal);
}

static void greet_finish(Session *s, const char *rcpt, bool accepted) {
        if (!accepted) {
                /* Client restrictions refused the client at connect (smtpd_delay_reject = no). */
                free(s->access_denied);
                s->access_denied = strdup("denied");
                return;
        }
        smtpd_milter_run(s, MILTER_STAGE_CONNECT, NULL, greet_milter_done);
}

void command_greet(Session *s) {
        char c;
        if (s->listener->kind == LISTENER_SUBMIT) {
                greet_finish(s, NULL, true);
                return;
        }
        /* Input before the greeting is the first pipelining violation a client can commit. */
        if (recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
                s->ill_pipelining = true;
                s->ill_after = "CONNECT";
        }
        smtpd_check_run(s, STAGE_CONNECT, NULL, greet_finish);
}

/* An unknown command after the milters saw it: their refusal, else ours. */
static void unknown_milter_done(Session *s, const char *arg, const char *refusal) {
        smtpd_milter_reply(s, refusal ? refusal : "500 5.5.2 Error: command not recognized");
}

void command_execute(Session *s, char *line, size_t len) {
        if (forbid_pipelining(s, line, len))
                return;
        if (s->auth) {
                smtpd_auth_response(s, line, len);   /* the client's answer to a 334 challenge */
                return;
        }
        if (memchr(line, '\0', len)) {
                s->cmd_total[CMD_UNKNOWN]++;
                s->last_cmd = "UNKNOWN";
                session_reply(s, "500 5.5.2 Error: bad syntax (NUL character in command)");
                return;
        }
        if (s->settings->smtputf8_enable && !utf8_is_valid(line, len)) {
                s->cmd_total[CMD_UNKNOWN]++;
                s->last_cmd = "UNKNOWN";
                session_reply(s, "500 5.5.2 Error: bad UTF-8 syntax");
                return;
        }
        char *filtered = command_filtered(s, s->settings->command_filter, "smtpd_command_filter", line,
                                          s->client.id_text);
        if (filtered)
                line = filtered;
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
                else if (smtpd_milter_active(s)) {
                        verb[vlen] = arg > verb + vlen ? ' ' : '\0';   /* the whole line again */
                        smtpd_milter_run(s, MILTER_STAGE_UNKNOWN, verb, unknown_milter_done);
                } else
                        session_reply(s, "500 5.5.2 Error: command not recognized");
                return;
        }

        s->last_cmd = def->name;
        s->cmd_total[def->id]++;
        if (s->access_denied && def->id != CMD_QUIT) {
                if (s->access_denied[0] >= '4' && s->access_denied[0] <= '5')
                        smtpd_milter_reply(s, s->access_denied);   /* a milter's refusal at connect */
                else
                        session_reply(s, "503 5.7.0 Error: access denied for %s", s->client.id_text);
                return;
        }
        if (def->junk && ++s->junk_count > s->settings->junk_command_limit) {
                log_info("too many junk commands after %s from %s", def->name, s->client.id_text);
                session_reply(s, "421 4.7.0 %s Error: too many errors", s->settings->myhostname);
                session_close_after_flush(s);
                return;
        }
        if (def->fn(s, arg))
                s->cmd_ok[def->id]++;
        note_pipelining(s, def);
}
