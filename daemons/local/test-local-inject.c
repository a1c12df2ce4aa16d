/* test-local-inject.c — a test helper (not installed): puts one message into the queue with the
 * real queue module, so tests/integration/test_local.py can drive postern-local without smtpd.
 *
 *   test-local-inject QUEUE_DIR SENDER RCPT... < content     (content in LF form)
 *
 * Creates the queue if needed and prints "<queue id> <rcpt id>..." on stdout. */
#include <stdio.h>
#include <time.h>

#include "basic/strbuf.h"
#include "queue/queue.h"

int main(int argc, char **argv) {
        _cleanup_queue_close_ Queue *q = NULL;
        _cleanup_strbuf_ StrBuf content = STRBUF_INIT;
        char buf[65536];
        size_t n;
        int r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s QUEUE_DIR SENDER RCPT... < content\n", argv[0]);
                return 2;
        }
        while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
                if (strbuf_append(&content, buf, n) < 0)
                        return 1;
        size_t nr = (size_t) argc - 3;
        QueueRecipient *rcpts = calloc(nr, sizeof(QueueRecipient));
        if (!rcpts)
                return 1;
        for (size_t i = 0; i < nr; i++)
                rcpts[i] = (QueueRecipient) { .address = argv[3 + i], .state = QUEUE_RCPT_PENDING };
        QueueMessage m = {
                .sender = argv[2],
                .arrival_usec = now_usec(CLOCK_REALTIME),
                .size = content.len,
                .protocol = (char *) "ESMTP",
        };
        queue_id_new(m.queue_id);
        if ((r = queue_open(argv[1], QUEUE_OPEN_CREATE, &q)) < 0 ||
            (r = queue_begin(q)) < 0 ||
            (r = queue_insert_message(q, &m, rcpts, nr, content.data ? content.data : "", content.len)) < 0 ||
            (r = queue_commit(q)) < 0) {
                fprintf(stderr, "queue error: %s (%s)\n", strerror(-r), q ? queue_last_error(q) : "");
                free(rcpts);
                return 1;
        }
        printf("%s", m.queue_id);
        for (size_t i = 0; i < nr; i++)
                printf(" %lld", (long long) rcpts[i].id);
        printf("\n");
        free(rcpts);
        return 0;
}
