/* test-smtpd-actions.c — unit tests for commit_apply_actions() (smtpd-commit.c): each message
 * action (none, DISCARD, HOLD, FILTER, content_filter and a FILTER over it, BCC with duplicates,
 * REDIRECT over BCC, PREPEND after our Received:) applied to a commit job, which is then written to a real queue in a temporary
 * directory and read back, as the commit thread would write it. */
#include <stdlib.h>
#include <unistd.h>

#include "smtpd.h"
#include "basic/tests.h"
#include "queue/queue.h"

/* smtpd-commit.c's other dependencies, not used by commit_apply_actions(). */
void session_reply(Session *s, const char *fmt, ...) {}
void session_close_after_flush(Session *s) {}
void session_resume(Session *s, SessionResume how) {}
void commit_job_free(CommitJob *j) {
        if (!j)
                return;
        queue_message_done(j->message);
        free(j->message);
        queue_recipients_free(j->rcpts, j->n_rcpts);
        free(j->content);
        free(j);
}

/* smtpd-transaction.c's, not used by message_actions_reset(). */
void data_state_free(DataState *d) {}
SmtpdProxy *smtpd_proxy_free(SmtpdProxy *p) { return NULL; }

#define RECEIVED "Received: from x (localhost [127.0.0.1])\n\tby h (Postern) id 1; date\n"
#define CONTENT RECEIVED "Subject: s\n\nbody\n"

static CommitJob *make_job(const char *const *rcpts) {
        CommitJob *j = calloc(1, sizeof(CommitJob));
        QueueMessage *m = calloc(1, sizeof(QueueMessage));
        CHECK(j && m);
        size_t n = 0;
        while (rcpts[n])
                n++;
        QueueRecipient *rc = calloc(n, sizeof(QueueRecipient));
        CHECK(rc);
        for (size_t i = 0; i < n; i++)
                CHECK((rc[i].address = strdup(rcpts[i])));
        queue_id_new(m->queue_id);
        memcpy(j->queue_id, m->queue_id, QUEUE_ID_MAX);
        CHECK((m->sender = strdup("a@example.org")));
        CHECK((m->protocol = strdup("ESMTP")));
        CHECK((j->content = strdup(CONTENT)));
        j->content_len = strlen(CONTENT);
        m->size = j->content_len;
        j->message = m;
        j->rcpts = rc;
        j->n_rcpts = n;
        return j;
}

static Queue *q;

/* Writes the job to the queue and reads it back. */
static void store_and_load(CommitJob *j, QueueMessage *ret, QueueRecipient **ret_rcpts, size_t *ret_n,
                           char **ret_content) {
        QueueMessage *m = j->message;
        size_t len = 0;
        CHECK_INT(queue_insert_message(q, m, j->rcpts, j->n_rcpts, j->content, j->content_len), 0);
        CHECK_INT(queue_load_message(q, m->queue_id, ret, ret_rcpts, ret_n), 0);
        CHECK_INT(queue_load_content(q, m->queue_id, ret_content, &len), 0);
        CHECK_INT(len, ret->size);
}

int main(void) {
        char dir[] = "/tmp/test-smtpd-actions-XXXXXX";
        CHECK(mkdtemp(dir));
        CHECK_INT(queue_open(dir, QUEUE_OPEN_CREATE, &q), 0);

        Session s = {};
        DataState d = { .rcvd_start = 0 };
        s.tx.data = &d;
        const char *const one[] = { "bob@example.net", NULL };
        QueueMessage m;
        QueueRecipient *rc;
        size_t n;
        char *content;

        /* No actions: the job is stored as it was. */
        CommitJob *j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK(!m.hold && !m.filter);
        CHECK_INT(n, 1);
        CHECK_STR(content, CONTENT);
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);

        /* DISCARD wins over everything else. */
        CHECK((s.tx.actions.discard = strdup("")));
        CHECK((s.tx.actions.hold = strdup("x")));
        j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 1);
        commit_job_free(j);
        message_actions_reset(&s.tx.actions);

        /* HOLD, FILTER, BCC (a duplicate of a recipient and of itself are ignored), PREPEND. */
        CHECK((s.tx.actions.hold = strdup("")));
        CHECK((s.tx.actions.filter = strdup("scan:[127.0.0.1]:10025")));
        s.tx.actions.bcc = calloc(4, sizeof(char *));
        CHECK(s.tx.actions.bcc);
        CHECK((s.tx.actions.bcc[0] = strdup("audit@example.net")));
        CHECK((s.tx.actions.bcc[1] = strdup("BOB@example.net")));
        CHECK((s.tx.actions.bcc[2] = strdup("audit@example.net")));
        CHECK_INT(strbuf_puts(&s.tx.actions.prepend, "X-A: 1\nX-B: 2\n"), 0);
        j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK(m.hold);
        CHECK_STR(m.filter, "scan:[127.0.0.1]:10025");
        CHECK_INT(n, 2);
        CHECK_STR(rc[0].address, "bob@example.net");
        CHECK_STR(rc[1].address, "audit@example.net");
        CHECK_INT(rc[1].notify, QUEUE_NOTIFY_NEVER);
        CHECK_STR(content, "X-A: 1\nX-B: 2\n" RECEIVED "Subject: s\n\nbody\n");
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);

        /* content_filter: every message gets it; a FILTER action wins; empty (the filter's
         * return listener) means none. */
        SmtpdSettings set = { .content_filter = (char *) "smtp-amavis:[127.0.0.1]:10024" };
        s.settings = &set;
        MessageActions kept = s.tx.actions;   /* the actions above go on below */
        s.tx.actions = (MessageActions) {};
        j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK_STR(m.filter, "smtp-amavis:[127.0.0.1]:10024");
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);
        CHECK((s.tx.actions.filter = strdup("scan:")));
        j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK_STR(m.filter, "scan:");
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);
        message_actions_reset(&s.tx.actions);
        set.content_filter = (char *) "";
        j = make_job(one);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK(!m.filter);
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);
        s.settings = NULL;
        s.tx.actions = kept;

        /* REDIRECT replaces every recipient, BCC ones included. */
        CHECK((s.tx.actions.redirect = strdup("boss@example.net")));
        const char *const two[] = { "bob@example.net", "carol@example.net", NULL };
        j = make_job(two);
        CHECK_INT(commit_apply_actions(&s, j), 0);
        store_and_load(j, &m, &rc, &n, &content);
        CHECK_INT(n, 1);
        CHECK_STR(rc[0].address, "boss@example.net");
        CHECK_INT(rc[0].notify, 0);
        queue_message_done(&m), queue_recipients_free(rc, n), free(content), commit_job_free(j);
        message_actions_reset(&s.tx.actions);

        queue_close(q);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK_INT(system(cmd), 0);
        return 0;
}
