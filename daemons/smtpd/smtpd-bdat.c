/* smtpd-bdat.c — BDAT, the CHUNKING extension (RFC 3030) without BINARYMIME.
 *
 * "BDAT <count> [LAST]" is followed by exactly count bytes of message content: no dot-stuffing
 * and no end-of-data line. The chunk is always read to its end before it is answered, also when
 * the command is refused (so its bytes are never taken for commands). Chunk bytes go through the
 * content processing DATA uses (smtpd-data.c: header section, added headers, size, data budget):
 * they are split into lines as they arrive, CRLF and bare LF both end a line and are stored as
 * LF, a bare CR stays content; a line still open at the end of the bytes read so far is carried
 * over (at most max(line_length_limit, 2048) bytes, then passed on in pieces), so a chunk is
 * never buffered whole. A non-final chunk is answered "250 2.0.0 Ok: N bytes" (N: all chunks so
 * far); BDAT ... LAST ends the message like "." ends DATA (250 after the commit).
 *
 * Refusals (replies as Postfix words them): an unreadable count "521 5.5.4 Syntax: BDAT count
 * [LAST]" and the session ends (the chunk length is unknown); junk after the count 501 5.5.4;
 * CHUNKING hidden by smtpd_discard_ehlo_keywords 502 5.5.1; no MAIL/RCPT 503 5.5.1 / no valid
 * recipients 554 5.5.1; "BDAT 0" without LAST "551 5.7.1 Null BDAT request"; chunks beyond
 * message_size_limit "552 5.3.4 Chunk exceeds message size limit". Any refusal ends the
 * transaction (RFC 3030 §2: the client must not send more chunks of it; ones already pipelined
 * are read, discarded and refused). DATA, MAIL and RCPT during a BDAT transaction get 503 5.5.1
 * (smtpd-command.c). */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"

#define BDAT_SYNTAX "Syntax: BDAT count [LAST]"

/* One complete line p[0..n) ending in '\n'; false when the session ends (bare LF refused). */
static bool bdat_line(Session *s, const char *p, size_t n) {
        bool crlf = n >= 2 && p[n - 2] == '\r';

        if (!crlf && s->client.bare_newline == BARE_NEWLINE_YES) {
                session_reply(s, "521 5.5.2 %s Error: bare <LF> received", s->settings->myhostname);
                log_info("disconnect: bare <LF> received from %s", s->client.id_text);
                smtpd_transaction_reset(&s->tx);
                strbuf_reset(&s->in);
                session_close_after_flush(s);
                return false;
        }
        data_content_line(s, p, n - 1 - (crlf ? 1 : 0), false);
        return true;
}

/* Feeds chunk bytes to the content processing, line by line. */
static bool bdat_feed(Session *s, const char *p, size_t n) {
        DataState *d = s->tx.data;
        size_t piece = MAX(s->settings->line_length_limit, (size_t) 2048);

        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                if (!nl) {
                        if (strbuf_append(&d->carry, p, n) < 0) {
                                log_oom();
                                d->no_storage = true;   /* answered 452 4.3.1 at the end */
                                strbuf_done(&d->carry);
                                return true;
                        }
                        if (d->carry.len > piece) {
                                /* an overlong line: pass a piece on, keep a trailing CR for its LF */
                                size_t take = d->carry.len - (d->carry.data[d->carry.len - 1] == '\r' ? 1 : 0);
                                data_content_line(s, d->carry.data, take, true);
                                strbuf_consume(&d->carry, take);
                        }
                        return true;
                }
                size_t l = (size_t) (nl - p) + 1;
                bool ok;
                if (d->carry.len > 0) {
                        if (strbuf_append(&d->carry, p, l) < 0) {
                                log_oom();
                                d->no_storage = true;
                                strbuf_done(&d->carry);
                                return true;
                        }
                        ok = bdat_line(s, d->carry.data, d->carry.len);
                        if (s->tx.data)
                                strbuf_reset(&s->tx.data->carry);
                } else
                        ok = bdat_line(s, p, l);
                if (!ok)
                        return false;
                p += l;
                n -= l;
        }
        return true;
}

/* Why this BDAT is refused (its chunk is then read and discarded), or NULL. */
static const char *bdat_check(Session *s, uint64_t count, bool last) {
        if (command_ehlo_discard(s) & EHLO_CHUNKING)
                return "502 5.5.1 Error: command not implemented";
        if (s->settings->helo_required && !s->client.helo)
                return "503 5.5.1 Error: send HELO/EHLO first";
        if (!s->tx.in_mail || (s->tx.n_rcpts == 0 && s->tx.rcpt_attempts == 0))
                return "503 5.5.1 Error: need RCPT command";
        if (s->tx.n_rcpts == 0)
                return "554 5.5.1 Error: no valid recipients";
        if (count == 0 && !last)
                return "551 5.7.1 Null BDAT request";
        uint64_t sofar = s->tx.data ? s->tx.data->bdat_bytes : 0, limit = s->settings->message_size_limit;
        if (limit && (count > limit || sofar + count > limit))
                return "552 5.3.4 Chunk exceeds message size limit";
        return NULL;
}

bool bdat_command(Session *s, char *arg) {
        char *p = arg, *end = NULL;

        while (*p == ' ' || *p == '\t')
                p++;
        errno = 0;
        unsigned long long count = isdigit((unsigned char) *p) ? strtoull(p, &end, 10) : 0;
        if (!end || errno == ERANGE || (*end && *end != ' ' && *end != '\t')) {
                /* Without a count the chunk cannot be skipped: the session cannot go on. */
                session_reply(s, "521 5.5.4 %s", BDAT_SYNTAX);
                log_info("disconnect: bad BDAT syntax from %s", s->client.id_text);
                smtpd_transaction_reset(&s->tx);
                strbuf_reset(&s->in);
                session_close_after_flush(s);
                return false;
        }
        while (*end == ' ' || *end == '\t')
                end++;
        bool last = false;
        const char *error = NULL;
        if (strncasecmp(end, "LAST", 4) == 0) {
                last = true;
                end += 4;
                while (*end == ' ' || *end == '\t')
                        end++;
        }
        if (*end)
                error = "501 5.5.4 " BDAT_SYNTAX;
        if (!error)
                error = bdat_check(s, count, last);
        if (!error && !s->tx.data) {
                if (data_begin(s) < 0)
                        error = "451 4.3.0 Error: out of memory";
                else
                        s->tx.data->bdat = true;
        }
        if (!error) {
                s->tx.bdat_active = true;
                s->tx.data->bdat_bytes += count;
        }
        s->tx.bdat_left = count;
        s->tx.bdat_last = last;
        s->tx.bdat_error = error;
        session_enter_bdat(s);
        return false;   /* counted as ok when the chunk is read (the last one: when queued) */
}

/* The chunk is read: answer it, or end the message after the last one. */
static void bdat_chunk_end(Session *s) {
        session_enter_command(s);
        if (s->tx.bdat_error) {
                const char *error = s->tx.bdat_error;
                s->tx.bdat_error = NULL;
                if (s->tx.in_mail && s->tx.n_rcpts > 0) {
                        LogFields f = { .queue_id = s->tx.queue_id[0] ? s->tx.queue_id : NULL,
                                        .client_address = s->client.addr[0] ? s->client.addr : NULL, .sender = s->tx.sender };
                        log_fields(LOG_INFO, &f, "%s: reject: BDAT from %s: %s; from=<%s> proto=%s helo=<%s>",
                                   s->tx.queue_id[0] ? s->tx.queue_id : "NOQUEUE", s->client.id_text, error,
                                   strempty(s->tx.sender), s->client.esmtp ? "ESMTP" : "SMTP", strempty(s->client.helo));
                }
                smtpd_transaction_reset(&s->tx);
                session_reply(s, "%s", error);
                return;
        }
        DataState *d = s->tx.data;
        if (!s->tx.bdat_last) {
                s->cmd_ok[CMD_BDAT]++;
                session_reply(s, "250 2.0.0 Ok: %llu bytes", (unsigned long long) d->bdat_bytes);
                return;
        }
        /* A last line without a line end still ends in LF in the stored form. */
        if (d->carry.len > 0) {
                size_t n = d->carry.len - (d->carry.data[d->carry.len - 1] == '\r' ? 1 : 0);
                data_content_line(s, d->carry.data, n, false);
                strbuf_done(&d->carry);
        } else if (d->mid_line)
                data_content_line(s, "", 0, false);
        data_finish(s);
}

void bdat_process(Session *s) {
        while (session_phase(s) == PHASE_BDAT) {
                if (s->tx.bdat_left == 0) {
                        bdat_chunk_end(s);
                        return;
                }
                if (s->in.len == 0)
                        return;
                size_t take = (size_t) MIN((uint64_t) s->in.len, s->tx.bdat_left);
                if (!s->tx.bdat_error && !bdat_feed(s, s->in.data, take))
                        return;   /* the session ends */
                strbuf_consume(&s->in, take);
                s->tx.bdat_left -= take;
        }
}
