/* smtp-session-txn.c — the mail transaction of a session.
 *
 * [RSET when reused] [XFORWARD] MAIL FROM (SIZE, BODY=8BITMIME, SMTPUTF8, RET/ENVID,
 * REQUIRETLS), RCPT TO... (NOTIFY/ORCPT), DATA — all in one write when the server offers
 * PIPELINING, else one at a time — → the message, CRLF and dot-stuffed, with the final "." in
 * the same write → one reply (SMTP) or one per accepted recipient (LMTP). Before it: the size
 * limit, 8-bit content converted for a server without 8BITMIME, SMTPUTF8 required of the server
 * for UTF-8 addresses. Every reply that is not a success becomes the result of the recipients it
 * concerns, in Postfix's wording ("host X[Y] said: 550 5.1.1 ... (in reply to RCPT TO
 * command)"). Address probes stop at RCPT (or DATA). Afterwards the connection goes to the cache
 * or is closed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "mail/mime-downgrade.h"
#include "mail/xtext.h"
#include "smtp-session.h"

static const char *cmd_phase(const Cmd *c) {
        switch (c->kind) {
        case CMD_RSET: return "sending RSET";
        case CMD_XFORWARD: return "sending XFORWARD";
        case CMD_MAIL: return "sending MAIL FROM";
        case CMD_RCPT: return "sending RCPT TO";
        default: return "sending DATA command";
        }
}

static usec_t cmd_timeout(const SmtpSession *s, const Cmd *c) {
        const SmtpSettings *st = cfg(s);
        switch (c->kind) {
        case CMD_RSET: return st->rset_timeout;
        case CMD_XFORWARD: return st->mail_timeout;
        case CMD_MAIL: return st->mail_timeout;
        case CMD_RCPT: return st->rcpt_timeout;
        default: return st->data_init_timeout;
        }
}

/* Sends the next command (without PIPELINING) or all of them (with). */
static void send_commands(SmtpSession *s) {
        while (s->sent < s->n_cmds && (s->pipelining || s->sent == s->replied)) {
                Cmd *c = &s->cmds[s->sent];
                if (c->kind == CMD_DATA && !s->pipelining && (!s->mail_ok || s->n_accepted == 0))
                        break;   /* nothing to send DATA for */
                if (smtp_session_send_text(s, s->cmdtext.data + c->start, c->end - c->start) < 0) {
                        smtp_session_failed(s, "out of memory while %s", cmd_phase(c));
                        return;
                }
                s->sent++;
        }
        if (s->replied < s->n_cmds)
                smtp_session_set_timer(s, cmd_timeout(s, &s->cmds[s->replied]), cmd_phase(&s->cmds[s->replied]));
        int r = smtp_session_flush(s);
        if (r < 0)
                smtp_session_failed(s, "lost connection with %s while %s", s->relay, strna(s->phase));
}

/* The transaction is over: hand the results back, then cache or close the connection. */
static void transaction_end(SmtpSession *s, bool clean) {
        smtp_session_release(s, false);
        s->uses++;
        if (!clean || !smtp_session_reuse_allowed(s) || cfg(s)->cache_time_limit == 0) {
                smtp_session_quit(s);
                return;
        }
        s->state = ST_IDLE;
        s->reused = false;
        s->next = s->smtp->idle;
        s->smtp->idle = s;
        smtp_session_set_timer(s, cfg(s)->cache_time_limit, "idle");
}

static int append_body(StrBuf *out, const char *p, size_t n) {
        size_t i = 0;
        int r = 0;
        while (i < n && r >= 0) {
                const char *nl = memchr(p + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (p + i)) : n - i;
                if (p[i] == '.')
                        r = strbuf_putc(out, '.');
                if (r >= 0)
                        r = strbuf_append(out, p + i, len);
                if (r >= 0)
                        r = strbuf_append(out, "\r\n", 2);
                i += len + (nl ? 1 : 0);
        }
        if (r >= 0)
                r = strbuf_append(out, ".\r\n", 3);
        return r;
}

static void send_message(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (append_body(&s->out, d->content, d->content_len) < 0) {
                smtp_all_result(d, false, "4.3.0", "out of memory while sending the message to %s", s->relay);
                transaction_end(s, false);
                return;
        }
        s->state = ST_DOT;
        s->dot_replies = 0;
        smtp_session_set_timer(s, cfg(s)->data_xfer_timeout, "sending message body");
        int r = smtp_session_flush(s);
        if (r < 0) {
                smtp_session_failed(s, "lost connection with %s while sending message body", s->relay);
                return;
        }
        if (s->out.len == 0)
                smtp_session_set_timer(s, cfg(s)->data_done_timeout,
                          "sending end of data -- message may be sent more than once");
}

static int add_cmd(SmtpSession *s, CmdKind kind, size_t rcpt, const char *fmt, ...) _printf_(4, 5);
static int add_cmd(SmtpSession *s, CmdKind kind, size_t rcpt, const char *fmt, ...) {
        va_list ap;
        size_t start = s->cmdtext.len;
        va_start(ap, fmt);
        int r = strbuf_vprintf(&s->cmdtext, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        s->cmds[s->n_cmds++] = (Cmd) { .kind = kind, .rcpt = rcpt, .start = start, .end = s->cmdtext.len };
        return 0;
}

static int append_xtext_param(StrBuf *b, const char *name, const char *value) {
        int r = strbuf_printf(b, " %s=", name);
        return r < 0 ? r : xtext_encode(value, strlen(value), b);
}

static int build_mail(SmtpSession *s, StrBuf *b) {
        SmtpDelivery *d = s->d;
        int r = strbuf_printf(b, "MAIL FROM:<%s>", strempty(d->msg.sender));
        if (r >= 0 && s->size_limit != UINT64_MAX)
                r = strbuf_printf(b, " SIZE=%llu", (unsigned long long) d->content_len);
        if (r >= 0 && d->eightbit && s->eightbitmime)
                r = strbuf_puts(b, " BODY=8BITMIME");
        if (r >= 0 && d->msg.smtputf8 && s->smtputf8)
                r = strbuf_puts(b, " SMTPUTF8");
        if (r >= 0 && s->dsn && d->msg.ret)
                r = strbuf_puts(b, d->msg.ret == 1 ? " RET=FULL" : " RET=HDRS");
        if (r >= 0 && s->dsn && !isempty(d->msg.envid))
                r = append_xtext_param(b, "ENVID", d->msg.envid);
        if (r >= 0 && d->msg.requiretls && cfg(s)->requiretls && s->requiretls)
                r = strbuf_puts(b, " REQUIRETLS");
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

/* XFORWARD with the message's original client (smtp_send_xforward_command): what postern-smtpd
 * recorded when it queued the message; "[UNAVAILABLE]" for what it does not know. */
static int build_xforward(SmtpSession *s, StrBuf *b) {
        const QueueMessage *m = &s->d->msg;
        bool local = !m->client_address;
        const char *addr = local ? NULL : m->client_address;
        _cleanup_free_ char *v6 = NULL;
        if (addr && strchr(addr, ':') && asprintf(&v6, "IPv6:%s", addr) < 0)
                return -ENOMEM;
        const struct { const char *name, *value; } a[] = {
                { "NAME", local ? "localhost" : m->client_name },
                { "ADDR", local ? "127.0.0.1" : v6 ? v6 : addr },
                { "PROTO", m->protocol },
                { "HELO", m->helo },
                { "IDENT", s->d->queue_id },
                { "SOURCE", local ? "LOCAL" : "REMOTE" },
        };
        int r = strbuf_puts(b, "XFORWARD");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(a); i++)
                r = append_xtext_param(b, a[i].name, isempty(a[i].value) ? "[UNAVAILABLE]" : a[i].value);
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

static int build_rcpt(SmtpSession *s, StrBuf *b, const SmtpRcpt *rc) {
        int r = strbuf_printf(b, "RCPT TO:<%s>", rc->address);
        if (r >= 0 && s->dsn && rc->notify) {
                if (rc->notify & QUEUE_NOTIFY_NEVER)
                        r = strbuf_puts(b, " NOTIFY=NEVER");
                else
                        r = strbuf_printf(b, " NOTIFY=%s%s%s",
                                          rc->notify & QUEUE_NOTIFY_SUCCESS ? "SUCCESS" : "",
                                          (rc->notify & QUEUE_NOTIFY_SUCCESS) && (rc->notify & (QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY)) ? "," : "",
                                          (rc->notify & QUEUE_NOTIFY_FAILURE) && (rc->notify & QUEUE_NOTIFY_DELAY) ? "FAILURE,DELAY" :
                                          rc->notify & QUEUE_NOTIFY_FAILURE ? "FAILURE" :
                                          rc->notify & QUEUE_NOTIFY_DELAY ? "DELAY" : "");
        }
        if (r >= 0 && s->dsn && rc->orcpt) {
                const char *semi = strchr(rc->orcpt, ';');
                if (semi && semi > rc->orcpt) {
                        r = strbuf_printf(b, " ORCPT=%.*s;", (int) (semi - rc->orcpt), rc->orcpt);
                        if (r >= 0)
                                r = xtext_encode(semi + 1, strlen(semi + 1), b);
                }
        }
        return r >= 0 ? strbuf_puts(b, "\r\n") : r;
}

static bool has_non_ascii(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] >= 0x80)
                        return true;
        return false;
}

/* RFC 6531 3.2: a message that needs SMTPUTF8 is not sent to a server without it. The sender or
 * a header with UTF-8 needs it for every recipient; otherwise only recipients whose own address
 * is UTF-8 do (the others go as plain SMTP). A message marked SMTPUTF8 that is all ASCII goes
 * out without the parameter. Returns whether a recipient is left to send to. */
static bool check_smtputf8(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (!d->msg.smtputf8 || s->smtputf8)
                return true;
        const char *hdr_end = d->content_len >= 1 && d->content[0] == '\n' ? d->content :
                              memmem(d->content, d->content_len, "\n\n", 2);
        size_t hdr_len = hdr_end ? (size_t) (hdr_end - d->content) : d->content_len;
        bool all = has_non_ascii(strempty(d->msg.sender), strlen(strempty(d->msg.sender))) ||
                   has_non_ascii(d->content, hdr_len);
        bool left = false;
        for (size_t i = 0; i < d->n_rcpts; i++) {
                SmtpRcpt *rc = &d->rcpts[i];
                if (rc->done)
                        continue;
                if (all || has_non_ascii(rc->address, strlen(rc->address)))
                        smtp_rcpt_result(d, i, "5.6.7", "SMTPUTF8 is required, but was not offered by host %s",
                                         s->relay);
                else
                        left = true;
        }
        return left;
}

void smtp_session_transaction_start(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        if (d->msg.requiretls && cfg(s)->requiretls && !d->probe) {
                const char *why = smtp_session_requiretls_unmet(s);
                if (why) {
                        /* another address may do; the last one's failure returns the message */
                        smtp_session_tls_failed(s, "5.7.30", "REQUIRETLS support required: %s (host %s)", why, s->relay);
                        return;
                }
        }
        _cleanup_(strbuf_donep) StrBuf line = STRBUF_INIT;
        int r = 0;

        d->conn_usec = now_usec(CLOCK_REALTIME);
        snprintf(d->relay, sizeof(d->relay), "%s", s->relay);
        d->sessions++;
        d->provisional = smtp_session_more_servers(d);
        for (size_t i = 0; i < d->n_rcpts; i++)
                d->rcpts[i].accepted = false;
        if (s->size_limit > 0 && s->size_limit != UINT64_MAX && d->content_len > s->size_limit) {
                smtp_all_result(d, false, "5.3.4", "message size %zu exceeds size limit %llu of server %s",
                                d->content_len, (unsigned long long) s->size_limit, s->relay);
                transaction_end(s, !s->reused);
                return;
        }
        if (d->eightbit && !s->eightbitmime && !d->downgraded) {
                /* RFC 6152 3: 8-bit bodies become quoted-printable for this server (and stay so
                 * for any later one: 7-bit content is good everywhere). */
                _cleanup_(strbuf_donep) StrBuf conv = STRBUF_INIT;
                if (mime_downgrade(d->content, d->content_len, &conv) < 0) {
                        smtp_all_result(d, false, "4.3.0", "out of memory");
                        transaction_end(s, false);
                        return;
                }
                d->downgraded = true;
                if (conv.len > 0) {
                        free(d->content);
                        d->content_len = conv.len;
                        d->content = strbuf_steal(&conv);
                        log_info("%s: converted 8-bit content to quoted-printable for %s (no 8BITMIME)",
                                 d->queue_id, s->relay);
                }
        }
        if (!check_smtputf8(s)) {
                transaction_end(s, !s->reused);
                return;
        }

        free(s->cmds);
        free(s->accepted);
        s->cmds = calloc(d->n_rcpts + 4, sizeof(Cmd));
        s->accepted = calloc(d->n_rcpts + 1, sizeof(size_t));
        if (!s->cmds || !s->accepted) {
                smtp_all_result(d, false, "4.3.0", "out of memory");
                transaction_end(s, false);
                return;
        }
        strbuf_reset(&s->cmdtext);
        s->n_cmds = s->sent = s->replied = s->n_accepted = 0;
        s->mail_ok = false;
        s->rset_ok = !s->reused;
        s->state = ST_TXN;
        if (s->reused)
                r = add_cmd(s, CMD_RSET, 0, "RSET\r\n");
        if (r >= 0 && s->xforward && cfg(s)->send_xforward && !d->probe && (r = build_xforward(s, &line)) >= 0) {
                r = add_cmd(s, CMD_XFORWARD, 0, "%s", line.data);
                strbuf_reset(&line);
        }
        if (r >= 0 && (r = build_mail(s, &line)) >= 0)
                r = add_cmd(s, CMD_MAIL, 0, "%s", line.data);
        for (size_t i = 0; r >= 0 && i < d->n_rcpts; i++) {
                if (d->rcpts[i].done)
                        continue;
                strbuf_reset(&line);
                if ((r = build_rcpt(s, &line, &d->rcpts[i])) >= 0)
                        r = add_cmd(s, CMD_RCPT, i, "%s", line.data);
        }
        /* An address probe stops at RCPT, or at DATA with smtp_address_verify_target = data. */
        if (r >= 0 && (!d->probe || cfg(s)->verify_target_data))
                r = add_cmd(s, CMD_DATA, 0, "DATA\r\n");
        if (r < 0) {
                smtp_all_result(d, false, "4.3.0", "out of memory");
                transaction_end(s, false);
                return;
        }
        send_commands(s);
}

/* A reply to the command cmds[replied]. */
void smtp_session_txn_reply(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        Cmd *c = &s->cmds[s->replied++];
        int cls = s->reply.code / 100;

        switch (c->kind) {
        case CMD_RSET:
                if (cls != 2) {
                        smtp_session_failed(s, "host %s said: %s (in reply to RSET command)", s->relay, s->reply.text);
                        return;
                }
                s->rset_ok = true;
                break;
        case CMD_XFORWARD:
                if (cls != 2) {
                        smtp_session_failed(s, "host %s said: %s (in reply to XFORWARD command)", s->relay, s->reply.text);
                        return;
                }
                break;
        case CMD_MAIL:
                s->rset_ok = true;
                if (cls == 2)
                        s->mail_ok = true;
                else
                        smtp_session_said(s, false, "MAIL FROM command");
                break;
        case CMD_RCPT:
                if (!s->mail_ok)
                        break;
                if (cls == 2) {
                        d->rcpts[c->rcpt].accepted = true;
                        s->accepted[s->n_accepted++] = c->rcpt;
                        if (d->probe && !cfg(s)->verify_target_data)
                                smtp_rcpt_result(d, c->rcpt, "2.1.5", "host %s said: %s (in reply to RCPT TO command)",
                                                 s->relay, s->reply.text);
                } else {
                        char dsn[16];
                        smtp_reply_dsn(&s->reply, dsn);
                        smtp_rcpt_result(d, c->rcpt, dsn, "host %s said: %s (in reply to RCPT TO command)",
                                         s->relay, s->reply.text);
                }
                break;
        case CMD_DATA:
                if (!s->mail_ok || s->n_accepted == 0) {
                        /* The pipelined DATA of a transaction without recipients: its 503/554 is
                         * expected and means nothing; RSET makes the connection usable again. */
                        transaction_end(s, cls != 2 && cls != 3);
                        return;
                }
                if (s->reply.code == 354 && d->probe) {
                        /* Deliverable; the connection in DATA mode is dropped, never ended with
                         * "." (that would deliver an empty message). */
                        smtp_all_result(d, true, "2.0.0", "host %s said: %s (in reply to DATA command)",
                                        s->relay, s->reply.text);
                        smtp_session_release(s, false);
                        smtp_session_free(s);
                        return;
                }
                if (s->reply.code == 354 && ipc_conn_peer_gone(d->conn)) {
                        /* qmgr went away (kill -9, restart) and will deliver this message again:
                         * sending it now would deliver it twice. The connection is dropped in
                         * DATA mode, never ended with ".", so the server discards it. */
                        log_info("%s: delivery to %s abandoned before the message was sent: the queue "
                                 "manager went away (it tries again)", d->queue_id, s->relay);
                        smtp_all_result(d, true, "4.3.0", "delivery abandoned: the queue manager went away");
                        smtp_session_release(s, false);
                        smtp_session_free(s);
                        return;
                }
                if (s->reply.code == 354) {
                        send_message(s);
                        return;
                }
                smtp_session_said(s, true, "DATA command");
                transaction_end(s, true);
                return;
        }
        if (d->probe && s->replied == s->n_cmds) {
                transaction_end(s, true);   /* a probe without DATA: every RCPT answered */
                return;
        }
        if (s->replied == s->sent && s->sent < s->n_cmds &&
            s->cmds[s->sent].kind == CMD_DATA && (!s->mail_ok || s->n_accepted == 0)) {
                transaction_end(s, true);   /* not pipelining: nothing accepted, DATA not sent */
                return;
        }
        send_commands(s);
}

void smtp_session_dot_reply(SmtpSession *s) {
        SmtpDelivery *d = s->d;
        char dsn[16];
        smtp_reply_dsn(&s->reply, dsn);
        if (!s->lmtp) {
                for (size_t i = 0; s->reply.code / 100 == 2 && i < d->n_rcpts; i++)
                        if (d->rcpts[i].accepted && !d->rcpts[i].done)
                                d->rcpts[i].relayed = !s->dsn;   /* for Action: relayed */
                if (s->reply.code / 100 == 2)
                        smtp_all_result(d, true, dsn, "%s", s->reply.text);
                else
                        smtp_session_said(s, true, "end of DATA command");
                transaction_end(s, true);
                return;
        }
        size_t i = s->accepted[s->dot_replies++];
        if (s->reply.code / 100 == 2 && !d->rcpts[i].done)
                d->rcpts[i].relayed = !s->dsn;
        if (s->reply.code / 100 == 2)
                smtp_rcpt_result(d, i, dsn, "%s", s->reply.text);
        else
                smtp_rcpt_result(d, i, dsn, "host %s said: %s (in reply to end of DATA command)", s->relay,
                                 s->reply.text);
        if (s->dot_replies == s->n_accepted)
                transaction_end(s, true);
        else
                smtp_session_set_timer(s, cfg(s)->data_done_timeout, "sending end of data -- message may be sent more than once");
}
