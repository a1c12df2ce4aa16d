/* ipc-peer.c — accounting for sockets that anyone may connect to (DESIGN.md §10): how many
 * connections each peer uid holds, whether one more is allowed, and a rate limit for the log
 * lines about the ones refused.
 *
 * Used by the IpcServer (ipc_server_set_limits) and by postern-smtpd's submit listener, which is
 * SMTP rather than the attribute protocol but has the same peers. The counts are a sorted array
 * of the uids that hold connections: a handful in practice, found by binary search. No I/O and
 * no logging here; callers decide what to say. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

void ipc_peers_done(IpcPeers *p) {
        if (!p)
                return;
        free(p->v);
        *p = (IpcPeers) IPC_PEERS_INIT;
}

/* The index of uid, or where it would be inserted. */
static size_t ipc_peers_find(const IpcPeers *p, uid_t uid) {
        size_t lo = 0, hi = p->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (p->v[mid].uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Open connections of uid. */
size_t ipc_peers_count(const IpcPeers *p, uid_t uid) {
        if (!p)
                return 0;
        size_t i = ipc_peers_find(p, uid);
        return i < p->n && p->v[i].uid == uid ? p->v[i].n : 0;
}

/* Counts one more connection from uid unless a cap forbids it. */
int ipc_peers_admit(IpcPeers *p, const IpcPeerCaps *caps, uid_t uid, bool *ret_trusted) {
        bool trusted = uid == 0 || uid == caps->trusted_uid;
        size_t i = ipc_peers_find(p, uid);
        size_t have = i < p->n && p->v[i].uid == uid ? p->v[i].n : 0;
        size_t cap = trusted ? caps->per_trusted_uid : caps->per_uid;

        if (cap > 0 && have >= cap)
                return -EUSERS;
        if (!trusted && caps->ordinary_max > 0 && p->ordinary >= caps->ordinary_max)
                return -EMFILE;
        if (have == 0) {
                if (p->n == p->cap) {
                        size_t ncap = p->cap ? p->cap * 2 : 8;
                        IpcPeerCount *nv = realloc(p->v, ncap * sizeof *nv);
                        if (!nv)
                                return -ENOMEM;
                        p->v = nv;
                        p->cap = ncap;
                }
                memmove(p->v + i + 1, p->v + i, (p->n - i) * sizeof *p->v);
                p->v[i] = (IpcPeerCount) { uid, 0 };
                p->n++;
        }
        p->v[i].n++;
        if (!trusted)
                p->ordinary++;
        *ret_trusted = trusted;
        return 0;
}

/* Forgets one connection of uid, counted as ipc_peers_admit() said. */
void ipc_peers_release(IpcPeers *p, uid_t uid, bool trusted) {
        size_t i = ipc_peers_find(p, uid);
        if (i >= p->n || p->v[i].uid != uid)
                return;
        if (!trusted && p->ordinary > 0)
                p->ordinary--;
        if (--p->v[i].n == 0) {
                memmove(p->v + i, p->v + i + 1, (p->n - i - 1) * sizeof *p->v);
                p->n--;
        }
}

/* Fixed windows of IPC_LOG_INTERVAL_USEC with IPC_LOG_BURST lines each; the count of dropped
 * lines goes with the next line allowed, so the log still says how much happened. */
bool ipc_log_limit_allow(IpcLogLimit *l, usec_t now, unsigned *ret_suppressed) {
        if (l->in_window == 0 || now >= l->window_start + IPC_LOG_INTERVAL_USEC) {
                l->window_start = now;
                l->in_window = 0;
        }
        if (l->in_window >= IPC_LOG_BURST) {
                l->suppressed++;
                return false;
        }
        l->in_window++;
        *ret_suppressed = l->suppressed;
        l->suppressed = 0;
        return true;
}
