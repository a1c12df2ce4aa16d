/* ipc.h — the attribute protocol between Postern's roles (DESIGN.md §3).
 *
 * A record is lines "name=value\n" with values xtext-encoded (RFC 3461), ended by an empty line.
 * A request carries "request=<verb>" first; every reply carries "status=" (ok, error, or a
 * verb-specific word). Unknown attributes are ignored by receivers; a missing required attribute
 * is answered with status=error and reason=. A record larger than IPC_RECORD_MAX is an error.
 * Repeated items use indexed names: "rcpt.0=", "rcpt.1=" ...
 *
 * Three layers:
 *   IpcRecord + ipc_record_format()/IpcParser — the codec, no I/O;
 *   ipc_call() — a blocking request/reply for tools (posternctl, sendmail, tests);
 *   IpcServer / ipc_client_call_async() — non-blocking use inside an sd-event loop;
 *   IpcMux — many concurrent calls over one connection, for a server that multiplexes.
 *
 * Details every role relies on:
 *   - names are 1..IPC_ATTR_NAME_MAX bytes of [A-Za-z0-9_.-]; ipc_record_add() refuses others
 *     with -EINVAL. Decoded values never contain NUL: "+00" on the wire is -EBADMSG.
 *   - a record's wire form is at most IPC_RECORD_MAX bytes and IPC_RECORD_ATTRS_MAX attributes;
 *     ipc_record_format() refuses bigger ones with -EMSGSIZE, the parser with -EMSGSIZE.
 *   - EOF before a complete record is -ECONNRESET for the blocking calls and the async client.
 *   - the server answers a malformed or oversized record with status=error and closes; it reads
 *     the next request of a connection only after the previous reply was written out, so a
 *     connection holds at most one parsed request and one reply — unless the server multiplexes
 *     (ipc_server_set_multiplex) and the request carries "id=": then requests are read on while
 *     others are outstanding, and each reply carries the request's "id=", in any order.
 *   - the IpcRecord a handler gets is borrowed for the duration of the call; a handler that
 *     replies later copies what it needs and keeps the IpcConn with ipc_conn_ref().
 *   - a server may have smaller limits of its own (ipc_server_set_limits): record size and
 *     attributes, a deadline to finish a record, connections per peer uid and in all. A socket
 *     anyone may connect to (SocketMode=0666: qmgr) must set them (DESIGN.md §10). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>
#include "../basic/strbuf.h"

#define IPC_RECORD_MAX (1024 * 1024)
#define IPC_ATTR_NAME_MAX 64
#define IPC_RECORD_ATTRS_MAX 65536   /* attributes per record (bounds parser memory) */

typedef struct IpcAttr { char *name; char *value; } IpcAttr;
typedef struct IpcRecord { IpcAttr *attrs; size_t n, cap; } IpcRecord;
#define IPC_RECORD_INIT { NULL, 0, 0 }

void ipc_record_done(IpcRecord *r);
static inline void ipc_record_donep(IpcRecord *r) { ipc_record_done(r); }
#define _cleanup_ipc_record_ _cleanup_(ipc_record_donep)
int ipc_record_add(IpcRecord *r, const char *name, const char *value);
int ipc_record_addf(IpcRecord *r, const char *name, const char *fmt, ...) _printf_(3, 4);
/* name built with printf, e.g. ipc_record_add_indexed(r, "rcpt", i, value) -> "rcpt.<i>". */
int ipc_record_add_indexed(IpcRecord *r, const char *name, size_t index, const char *value);
/* The first value for name, or NULL. */
const char *ipc_record_get(const IpcRecord *r, const char *name);
const char *ipc_record_get_indexed(const IpcRecord *r, const char *name, size_t index);
/* Parses a decimal attribute; -ENOENT if missing, -EINVAL if malformed. */
int ipc_record_get_int(const IpcRecord *r, const char *name, long long *ret);
/* Appends the wire form (with the terminating empty line) to out. */
int ipc_record_format(const IpcRecord *r, StrBuf *out);

/* Incremental parser: feed bytes as they arrive. max_size and max_attrs (0: IPC_RECORD_MAX and
 * IPC_RECORD_ATTRS_MAX; never more than those) bound one record; they survive
 * ipc_parser_done(). too_many_attrs tells which limit the last -EMSGSIZE was about. */
typedef struct IpcParser {
        StrBuf line;
        IpcRecord cur;
        size_t size;              /* bytes of the current record so far; 0 between records */
        size_t max_size, max_attrs;
        bool too_many_attrs;
} IpcParser;
#define IPC_PARSER_INIT { STRBUF_INIT, IPC_RECORD_INIT, 0, 0, 0, false }
void ipc_parser_done(IpcParser *p);
/* Consumes bytes from data; returns 1 when a record is complete (moved into *ret, which must be
 * empty; *ret_consumed says how many bytes were used), 0 when all bytes were used and more are
 * needed, -EMSGSIZE for a record over the size or attribute limit, -EBADMSG for a line without
 * '=' or a bad escape. */
int ipc_parser_feed(IpcParser *p, const char *data, size_t n, size_t *ret_consumed, IpcRecord *ret);

/* Blocking: connect to the AF_UNIX stream socket at path, send req, read one reply record.
 * timeout_usec 0 = 30 s. A server that closes before taking all of req may have answered
 * status=error first (e.g. reason="too many connections"): that is the reply then. */
int ipc_call(const char *path, const IpcRecord *req, IpcRecord *ret_reply, usec_t timeout_usec);
/* Blocking helpers on a connected fd, for multi-record conversations. ipc_recv() never reads
 * past the record it returns; timeout_usec 0 = 30 s, -ETIMEDOUT when it passes. */
int ipc_send(int fd, const IpcRecord *r);
int ipc_recv(int fd, IpcRecord *ret, usec_t timeout_usec);

/* --- accounting for sockets anyone may connect to (ipc-peer.c) --- */
/* Open connections per peer uid, for the IpcServer's caps and postern-smtpd's submit listener.
 * Trusted uids (root and caps->trusted_uid) have a cap of their own and do not count towards
 * the ordinary peers' total. */
typedef struct IpcPeerCaps {
        size_t per_uid;                   /* ordinary uid; 0: no cap */
        size_t per_trusted_uid;           /* root or trusted_uid; 0: no cap */
        size_t ordinary_max;              /* all ordinary uids together; 0: no cap */
        uid_t trusted_uid;                /* besides root; 0 (root) when there is none */
} IpcPeerCaps;
typedef struct IpcPeerCount { uid_t uid; size_t n; } IpcPeerCount;
typedef struct IpcPeers {
        IpcPeerCount *v;                  /* sorted by uid; only uids with connections */
        size_t n, cap;
        size_t ordinary;                  /* connections of ordinary uids */
} IpcPeers;
#define IPC_PEERS_INIT { NULL, 0, 0, 0 }
void ipc_peers_done(IpcPeers *p);
/* Open connections of uid. */
size_t ipc_peers_count(const IpcPeers *p, uid_t uid);
/* Counts a new connection from uid, or refuses it: 0, -EUSERS over the uid's cap, -EMFILE over
 * the ordinary peers' total, -ENOMEM. *ret_trusted says how it was counted; pass it back to
 * ipc_peers_release(). */
int ipc_peers_admit(IpcPeers *p, const IpcPeerCaps *caps, uid_t uid, bool *ret_trusted);
void ipc_peers_release(IpcPeers *p, uid_t uid, bool trusted);

/* A rate limit for log lines about refused peers: at most IPC_LOG_BURST lines per
 * IPC_LOG_INTERVAL_USEC. */
#define IPC_LOG_BURST 5
#define IPC_LOG_INTERVAL_USEC (10ULL * 1000000ULL)
typedef struct IpcLogLimit {
        usec_t window_start;
        unsigned in_window;               /* lines logged in this window */
        unsigned suppressed;              /* lines dropped since the last one logged */
} IpcLogLimit;
/* Whether a line may be logged at now (CLOCK_MONOTONIC); when it may, *ret_suppressed is the
 * number of lines dropped before it (then reset). */
bool ipc_log_limit_allow(IpcLogLimit *l, usec_t now, unsigned *ret_suppressed);

/* --- non-blocking server inside sd-event --- */
typedef struct IpcServer IpcServer;
typedef struct IpcConn IpcConn;
/* Called for each request record (borrowed: valid during the call only). The handler replies
 * now or later with ipc_conn_reply(); one request is outstanding per connection (the next is
 * not read until the reply is sent). Return <0 to drop the connection. */
typedef int (*IpcHandler)(IpcConn *c, const IpcRecord *req, void *userdata);

/* Serves a listening AF_UNIX stream socket (takes ownership of listen_fd). */
int ipc_server_new(sd_event *e, int listen_fd, IpcHandler handler, void *userdata, IpcServer **ret);
IpcServer *ipc_server_free(IpcServer *s);
size_t ipc_server_connections(const IpcServer *s);
/* Called once when a connection closes (EOF, error, idle timeout, ipc_server_free), so a server
 * can drop state it keeps per connection (postern-anvil's counts). The IpcConn pointer is only an
 * identity here: it must not be replied to. */
typedef void (*IpcCloseHandler)(IpcConn *c, void *userdata);
void ipc_server_set_close_handler(IpcServer *s, IpcCloseHandler fn);
/* Connections idle (no request outstanding, nothing to write) this long are closed; 0 = never.
 * The default is IPC_IDLE_TIMEOUT_USEC. A connection in the middle of a record is not idle: the
 * record deadline (ipc_server_set_limits) applies instead. */
int ipc_server_set_idle_timeout(IpcServer *s, usec_t usec);
#define IPC_IDLE_TIMEOUT_USEC (300ULL * 1000000ULL)

/* What one server accepts from its peers; 0 in a field means "no limit of this server's own"
 * (records are still bounded by IPC_RECORD_MAX and IPC_RECORD_ATTRS_MAX). Peers are "trusted"
 * when their SO_PEERCRED uid is root or conns.trusted_uid (mail_owner), "ordinary" otherwise. What
 * happens at each limit:
 *   record_max, record_attrs_max  the request is answered status=error reason="record too
 *                  large" / "too many attributes" and the connection closed;
 *   record_deadline  measured from the first byte of a request the server reads to its end
 *                  (bytes trickling in do not extend it): status=error reason="request not
 *                  finished in time", closed. Between requests the idle timeout applies;
 *   conns (IpcPeerCaps)  open connections of one ordinary uid, of one trusted uid, and of all
 *                  ordinary peers together: a connection over a cap is answered status=error
 *                  reason="too many connections" as soon as it is accepted, and closed (nothing
 *                  of it is read).
 * Each event is reported to the limit handler, at most IPC_LOG_BURST times per
 * IPC_LOG_INTERVAL_USEC per server, so that a peer cannot flood the journal. */
typedef struct IpcServerLimits {
        size_t record_max;
        size_t record_attrs_max;
        usec_t record_deadline;
        IpcPeerCaps conns;
} IpcServerLimits;

/* The limits of a socket whose requests are small, such as qmgr's verbs (under 300 bytes with
 * the longest domain name) and anvil's counters: used in an IpcServerLimits initializer,
 * together with IPC_PUBLIC_CONN_LIMITS for a socket anyone may connect to. */
#define IPC_SMALL_RECORD_LIMITS \
        .record_max = 4096, .record_attrs_max = 64, .record_deadline = 10 * USEC_PER_SEC
/* 16 connections per ordinary uid (tools open one at a time), 128 for all of them together,
 * 256 per trusted uid (smtpd's and local's wake-ups, one short connection per commit). */
#define IPC_PUBLIC_CONN_LIMITS \
        .conns = { .per_uid = 16, .per_trusted_uid = 256, .ordinary_max = 128 }

typedef enum IpcLimit {
        IPC_LIMIT_RECORD_SIZE,
        IPC_LIMIT_RECORD_ATTRS,
        IPC_LIMIT_RECORD_TIME,
        IPC_LIMIT_CONNS_PER_UID,
        IPC_LIMIT_CONNS_ORDINARY,
} IpcLimit;

/* A limit was hit. text is one line for the log, naming the peer and the limit, e.g.
 * "peer uid=1001 pid=4242: more than 16 connections from this uid; refused (3 similar events
 * not logged)". Valid during the call only. */
typedef struct IpcLimitEvent {
        IpcLimit limit;
        uid_t uid;                        /* (uid_t) -1 when the peer's credentials are unknown */
        pid_t pid;
        unsigned suppressed;              /* events not reported before this one */
        const char *text;
} IpcLimitEvent;
typedef void (*IpcLimitHandler)(const IpcLimitEvent *ev, void *userdata);

/* Applies limits to connections accepted from now on (call again after a reload; connections
 * already counted keep their place). */
int ipc_server_set_limits(IpcServer *s, const IpcServerLimits *limits);
/* Sets who is told about limit events (with the server's userdata); NULL: nobody. */
void ipc_server_set_limit_handler(IpcServer *s, IpcLimitHandler fn);
/* Lets each connection accepted from now on carry up to max_outstanding concurrent requests
 * tagged "id=" (see IpcMux); 0 = one request at a time (the default). The handler gets a
 * separate IpcConn for each tagged request, used exactly like a connection: reply, ref/unref,
 * peer uid; its reply is tagged with the request's id. */
int ipc_server_set_multiplex(IpcServer *s, size_t max_outstanding);
/* Sends a reply (formats and queues it, writes as the socket allows). */
int ipc_conn_reply(IpcConn *c, const IpcRecord *reply);
/* Convenience: reply status=error reason=<text>. */
int ipc_conn_reply_error(IpcConn *c, const char *reason);
/* Credentials of the peer (SO_PEERCRED). */
int ipc_conn_peer_uid(const IpcConn *c, uid_t *ret);
/* Takes a reference so the connection survives until a delayed reply; unref when done. A closed
 * peer makes ipc_conn_reply() fail with -ECONNRESET instead of crashing. */
IpcConn *ipc_conn_ref(IpcConn *c);
IpcConn *ipc_conn_unref(IpcConn *c);
/* Whether the peer is gone (closed, or hung up even with requests still unread): its reply
 * could not be delivered. For a tagged request, the shared connection's peer. */
bool ipc_conn_peer_gone(const IpcConn *c);

/* --- non-blocking client inside sd-event --- */
/* Called once with the reply (error 0) or a failure (error < 0, reply NULL). */
typedef void (*IpcReplyHandler)(int error, const IpcRecord *reply, void *userdata);
typedef struct IpcCall IpcCall;
/* Connects to path, sends req, waits for one reply up to timeout_usec (0 = none). The IpcCall is
 * freed automatically after the handler ran; ipc_call_cancel() before that drops it silently.
 * A negative return (e.g. -ENOENT, -ECONNREFUSED) means the handler will never be called; a
 * listener whose backlog is full is retried every 10 ms until the timeout. */
int ipc_client_call_async(sd_event *e, const char *path, const IpcRecord *req, usec_t timeout_usec,
                          IpcReplyHandler handler, void *userdata, IpcCall **ret);
void ipc_call_cancel(IpcCall *c);

/* --- multiplexed client inside sd-event --- */
/* One connection to path carrying any number of concurrent calls: each request is tagged
 * "id=<n>" and matched with the reply that carries the same id, in whatever order replies come.
 * The server must multiplex (ipc_server_set_multiplex); a reply without a well-formed "id=" is
 * a protocol error, and a request with an "id" of its own is refused (-EINVAL). A call cancelled
 * or timed out before its request was written never sends it. Calls follow
 * ipc_client_call_async()'s contract: the handler runs once with the reply or an error,
 * ipc_call_cancel() drops a call silently, a negative return means the handler never runs. When
 * the connection fails, the replies already received are dispatched, then every other call sent
 * on it fails with the error (-ECONNRESET for EOF, -EPROTO for a reply that does not belong); the
 * next call opens a new connection. The connection opens on the first call and closes after IPC_MUX_IDLE_USEC without
 * calls, well inside the server's IPC_IDLE_TIMEOUT_USEC. */
typedef struct IpcMux IpcMux;
#define IPC_MUX_IDLE_USEC (60ULL * 1000000ULL)
int ipc_mux_new(sd_event *e, const char *path, IpcMux **ret);
/* Closes the connection; pending calls are dropped without their handlers, so a caller that
 * keeps IpcCall pointers cancels or forgets them first. Not from inside a call's handler. */
IpcMux *ipc_mux_free(IpcMux *m);
const char *ipc_mux_path(const IpcMux *m);
/* Calls waiting for their reply. */
size_t ipc_mux_pending(const IpcMux *m);
/* Whether the connection is open (for tests and statistics). */
bool ipc_mux_connected(const IpcMux *m);
int ipc_mux_call_async(IpcMux *m, const IpcRecord *req, usec_t timeout_usec, IpcReplyHandler handler,
                       void *userdata, IpcCall **ret);

/* Sends a one-way wake-up datagram-free record ("request=wakeup") without waiting for a reply;
 * failures are returned but callers may ignore them (lost wake-ups only delay mail). Non-blocking. */
int ipc_send_oneway(const char *path, const IpcRecord *req);
