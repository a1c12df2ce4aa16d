/* local-forward.c — alias members outside the local domains are forwarded by queueing a new
 * message, as Postfix's local(8) does through cleanup: same content with
 * "Delivered-To: <alias address>" prepended (so a loop back to us is detected), envelope sender
 * owner-<alias> when that alias exists (errors go to the list owner), else the original sender.
 * One message is made for each (sender, alias) group of forward targets, committed before the
 * targets are reported delivered ("forwarded as <new id>").
 *
 * Users passed to mailbox_transport & co (local-pass.c, TARGET_PASS) are queued the same way:
 * one message per route, the content unchanged, the original sender, client attributes and
 * arrival time, the route "transport:nexthop" as the message's filter (postern-qmgr sends every
 * recipient of it to that transport, never back to local), each recipient with the original
 * recipient as ORCPT ("passed to <route> as <new id>").
 *
 * Runs in postern-local's event loop (one short queue transaction per group; see local.c). The
 * new message's queue id is not random: it is a hash of the original queue id, the recipient id,
 * the sender, the alias and the forwarded addresses, so when a crash lost the marker line that
 * records a finished forward, the retry's insert fails with -EEXIST on the same id and counts as
 * "already forwarded" instead of queueing a second copy. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <time.h>

#include "local.h"
#include "log/log.h"

static int address_compare(const void *a, const void *b) {
        return strcmp(((const QueueRecipient *) a)->address, ((const QueueRecipient *) b)->address);
}

/* 16 characters of [0-9A-V] (80 bits of SHA-256) over everything that defines the forwarded copy;
 * the same shape as queue_id_new()'s ids. */
static int forward_queue_id(const QueueMessage *orig, long long rcpt_id, const Target *first,
                            const QueueRecipient *rcpts, size_t n, char ret[QUEUE_ID_MAX]) {
        static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
        _cleanup_strbuf_ StrBuf key = STRBUF_INIT;
        unsigned char hash[32];
        int r;

        /* Netstring-like "<length>:<text>," fields: no two different inputs give the same key. */
        if ((r = strbuf_printf(&key, "postern-local-%s,%zu:%s,%lld,%zu:%s,%zu:%s,",
                               first->kind == TARGET_PASS ? "pass" : "forward", strlen(orig->queue_id),
                               orig->queue_id, rcpt_id, strlen(first->sender), first->sender,
                               strlen(first->via), first->via)) < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if ((r = strbuf_printf(&key, "%zu:%s,", strlen(rcpts[i].address), rcpts[i].address)) < 0)
                        return r;
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, key.data, key.len, hash) < 0)
                return -EIO;
        for (size_t i = 0; i < 16; i++) {
                size_t bit = i * 5;
                unsigned v = ((unsigned) hash[bit / 8] << 8 | hash[bit / 8 + 1]) >> (11 - bit % 8);
                ret[i] = digits[v & 31];
        }
        ret[16] = '\0';
        return 0;
}

bool local_target_is_copy(const Target *t) {
        return t->kind == TARGET_FORWARD || t->kind == TARGET_PASS;
}

char *local_copy_marker_line(const Target *t) {
        char *line = NULL;
        int r = t->kind == TARGET_PASS ? asprintf(&line, "pass:%s %s", t->via, t->address) :
                                         asprintf(&line, "forward:%s", t->address);
        if (r < 0)
                return NULL;
        return line;
}

/* Whether t goes into the same queued copy as first (not yet done, same kind, sender and via). */
static bool same_copy(const Target *t, const Target *first) {
        return t->kind == first->kind && !t->done && streq(t->sender, first->sender) && streq(t->via, first->via);
}

static int forward_group(const LocalSettings *s, Queue *q, const QueueMessage *orig, long long rcpt_id, const char *orcpt,
                         const char *content, size_t content_len, Target **targets, size_t n, Target *first,
                         char ret_id[QUEUE_ID_MAX], bool *ret_existed) {
        _cleanup_strbuf_ StrBuf body = STRBUF_INIT;
        _cleanup_free_ char *rcpt_orcpt = NULL, *filter = NULL;
        QueueRecipient *rcpts = NULL;
        bool pass = first->kind == TARGET_PASS;
        size_t nr = 0;
        int r;

        if (!pass && (r = strbuf_printf(&body, "Delivered-To: %s\n", first->via)) < 0)
                return r;
        if ((r = strbuf_append(&body, content, content_len)) < 0)
                return r;
        if (pass && asprintf(&rcpt_orcpt, "rfc822;%s", orcpt) < 0)
                return -ENOMEM;
        /* A route without a next hop takes local's ($myhostname, as Postfix's pass takes the
         * request's): the copy's route is then complete, and no table of qmgr's changes it. */
        if (pass && asprintf(&filter, "%s%s", first->via, first->via[strlen(first->via) - 1] == ':' ? s->myhostname : "") < 0)
                return -ENOMEM;
        rcpts = calloc(n, sizeof(QueueRecipient));
        if (!rcpts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Target *t = targets[i];
                if (!same_copy(t, first))
                        continue;
                bool dup = false;   /* (an unknown user named twice in an alias list) */
                for (size_t k = 0; k < nr && !dup; k++)
                        dup = strcaseeq(rcpts[k].address, t->address);
                if (!dup)
                        rcpts[nr++] = (QueueRecipient) { .address = t->address, .orcpt = rcpt_orcpt,
                                                         .state = QUEUE_RCPT_PENDING };
        }

        QueueMessage m = {
                .sender = first->sender,
                .arrival_usec = now_usec(CLOCK_REALTIME),
                .size = body.len,
                .protocol = (char *) "LOCAL",
                .body_type = orig->body_type,
                .smtputf8 = orig->smtputf8,
        };
        if (pass) {
                /* The same mail, delivered by another transport: what pipe(8) macros and logs read
                 * about its origin stays the original's. */
                m.arrival_usec = orig->arrival_usec;
                m.client_address = orig->client_address;
                m.client_name = orig->client_name;
                m.helo = orig->helo;
                m.protocol = orig->protocol;
                m.sasl_user = orig->sasl_user;
                m.envid = orig->envid;
                m.ret = orig->ret;
                m.requiretls = orig->requiretls;
                m.filter = filter;
        }
        qsort(rcpts, nr, sizeof(QueueRecipient), address_compare);
        r = forward_queue_id(orig, rcpt_id, first, rcpts, nr, m.queue_id);
        if (r >= 0)
                r = queue_begin(q);
        if (r >= 0) {
                r = queue_insert_message(q, &m, rcpts, nr, body.data, body.len);
                if (r >= 0)
                        r = queue_commit(q);
                else
                        (void) queue_rollback(q);
        }
        free(rcpts);   /* the addresses belong to the targets */
        *ret_existed = r == -EEXIST;   /* queued by an earlier attempt whose marker line was lost */
        if (r < 0 && r != -EEXIST)
                return r;
        memcpy(ret_id, m.queue_id, QUEUE_ID_MAX);
        return 0;
}

int local_forward(const LocalSettings *s, Queue *q, const QueueMessage *orig, long long rcpt_id,
                  const char *orcpt, const char *content, size_t content_len, Target **targets, size_t n) {
        int queued = 0;

        for (size_t i = 0; i < n; i++)
                if (targets[i]->kind == TARGET_PASS && !targets[i]->done && !targets[i]->sender &&
                    !(targets[i]->sender = strdup(strempty(orig->sender))))
                        (void) target_set_result(targets[i], "4.3.0", "out of memory");
        for (size_t i = 0; i < n; i++) {
                Target *first = targets[i];
                char id[QUEUE_ID_MAX];
                bool existed = false;
                if (!local_target_is_copy(first) || first->done)
                        continue;
                bool pass = first->kind == TARGET_PASS;
                int r = q ? forward_group(s, q, orig, rcpt_id, orcpt, content, content_len, targets, n, first, id,
                                          &existed)
                          : -ENOTCONN;
                for (size_t j = n; j-- > i;) {   /* first last: same_copy() compares with it */
                        Target *t = targets[j];
                        if (!same_copy(t, first))
                                continue;
                        if (r < 0)
                                (void) target_set_result(t, "4.3.0", "cannot %s: queue write failed: %s",
                                                         pass ? "pass on" : "forward",
                                                         q ? queue_last_error(q) : "queue unavailable");
                        else if (pass)
                                (void) target_set_result(t, "2.0.0", "passed to %s as %s%s", first->via, id,
                                                         existed ? " (queued by an earlier attempt)" : "");
                        else
                                (void) target_set_result(t, "2.0.0", "forwarded as %s%s", id,
                                                         existed ? " (queued by an earlier attempt)" : "");
                        t->copied = r >= 0;   /* also when found queued: its marker line was lost */
                }
                const char *what = pass ? "passed" : "forwarded";
                if (r < 0)
                        log_error_errno(r, "%s: cannot queue %s copy: %m", orig->queue_id, what);
                else if (existed)
                        log_info("%s: %s copy %s was already queued by an earlier attempt", orig->queue_id, what, id);
                else {
                        if (pass)
                                log_info("%s: passed to new message %s (transport %s)", orig->queue_id, id, first->via);
                        else
                                log_info("%s: forwarded to new message %s (sender=<%s>)", orig->queue_id, id,
                                         first->sender);
                        queued++;
                }
        }
        return queued;
}
