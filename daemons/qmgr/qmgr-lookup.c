/* qmgr-lookup.c — routing a message without waiting on the event loop for a server table.
 *
 * Routing reads transport_maps, relocated_maps, the sender_dependent_*_maps and the address
 * class tables (virtual_mailbox_domains, relay_domains, ...). When one of them is a server table
 * (pgsql:, mysql:, ldap:, socketmap:, tcp:) its lookups go to the lookup workers
 * (common/conf/table-async.h, started in qmgr.c) through a TableMemo of the message being
 * routed: each recipient is routed inside table_memo_begin()/table_memo_end(); a key the memo
 * does not have is sent (with the keys the same routing goes on to ask for, in one job) and the
 * recipient's route is thrown away. qmgr_deliver_message() routes every due recipient that way,
 * so the jobs of all its recipients are on their way at once (on different workers), then sets
 * the message aside: no thread waits, the rest of the queue keeps moving. When every answer is
 * there, qmgr_deliver_message() runs again and the memo answers (a routing whose next key
 * depends on an answer takes one more round). A failed lookup answers as it did on the loop
 * (the recipient is deferred, 4.3.0; the server's reason is logged by the table code).
 *
 * The answers live as long as the routing of one activation (Postfix's trivial-rewrite caches
 * nothing either): they are forgotten when the message's jobs are queued, or when it is deleted
 * or released while set aside. */
#include <errno.h>
#include <stdlib.h>

#include "conf/table-async.h"
#include "qmgr.h"

typedef struct QmgrLookup {
        TableMemo *memo;
        Qmgr *q;
        bool force;
        bool parked;
} QmgrLookup;

int qmgr_lookup_route(QmgrMessage *m, const QmgrSettings *rs, const char *address, char **ret_transport,
                      char **ret_nexthop) {
        if (!m->lookup && (m->lookup = calloc(1, sizeof(QmgrLookup))) && !(m->lookup->memo = table_memo_new())) {
                free(m->lookup);
                m->lookup = NULL;
        }
        if (!m->lookup)   /* no memory for the memo: looked up on the loop, as before */
                return qmgr_route_transport(rs, &m->msg, address, ret_transport, ret_nexthop);
        TableMemo *memo = m->lookup->memo;
        for (;;) {
                char *t = NULL, *n = NULL;
                table_memo_begin(memo, true);
                int r = qmgr_route_transport(rs, &m->msg, address, &t, &n);
                if (!table_memo_end(memo)) {
                        if (r >= 0) {
                                *ret_transport = t;
                                *ret_nexthop = n;
                        }
                        return r;
                }
                /* a guess: an answer is on its way, or came at once (the workers could not take the
                 * keys: they failed) and the routing runs again */
                free(t);
                free(n);
                if (table_memo_wait(memo, NULL, NULL))
                        return -EINPROGRESS;
        }
}

static void on_answers(void *userdata) {
        QmgrMessage *m = userdata;
        QmgrLookup *l = m->lookup;
        l->parked = false;
        qmgr_deliver_message(l->q, m, l->force);
}

bool qmgr_lookup_park(Qmgr *q, QmgrMessage *m, bool force) {
        QmgrLookup *l = m->lookup;
        if (!l || !table_memo_wait(l->memo, on_answers, m))
                return false;
        l->q = q;
        l->force = force;
        l->parked = true;
        return true;
}

bool qmgr_lookup_parked(const QmgrMessage *m) {
        return m->lookup && m->lookup->parked;
}

void qmgr_lookup_done(QmgrMessage *m) {
        QmgrLookup *l = m->lookup;
        if (!l)
                return;
        table_memo_drop(l->memo);
        free(l);
        m->lookup = NULL;
}
