/* ipc-internal.h — what the IPC client, the multiplexed client and the server share and no
 * caller sees: the IpcCall object (one pending asynchronous call, on its own connection or on a
 * multiplexed one), the non-blocking connect, and the codec for a record tagged with "id=". */
#pragma once

#include <stdint.h>
#include "ipc.h"

#define IPC_CONNECT_RETRY_USEC (10ULL * USEC_PER_MSEC)

struct IpcCall {
        sd_event *event;
        IpcReplyHandler handler;
        void *userdata;
        sd_event_source *timer;
        usec_t deadline;     /* 0 = none */
        bool dispatching, cancelled;

        StrBuf out;                   /* the request, until it is written */

        /* a call on its own connection (ipc_client_call_async) */
        char *path;
        int fd;
        sd_event_source *io, *retry;
        IpcParser parser;

        /* a call on a multiplexed connection (ipc_mux_call_async) */
        IpcMux *mux;
        uint64_t id;
        uint64_t generation;          /* the mux connection it was sent on */
        IpcCall *hash_next;           /* in the mux's id table */
        IpcCall *prev, *next;         /* in the mux's list, oldest first */
};

/* Starts a non-blocking connect to an AF_UNIX stream socket. Returns the fd, -EAGAIN when the
 * listener's backlog is full (retry later), or another negative errno. */
int ipc_connect_nonblock(const char *path);

/* Appends r's wire form with "id=<id>" added as its last attribute; -EMSGSIZE when the result
 * would exceed IPC_RECORD_MAX, -EINVAL when r has an "id" of its own. out is unchanged on
 * failure. */
int ipc_record_format_tagged(const IpcRecord *r, const char *id, StrBuf *out);

/* Drops a multiplexed call without running its handler (ipc_call_cancel for mux calls). */
void ipc_mux_call_cancel(IpcCall *c);
