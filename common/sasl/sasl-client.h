/* sasl-client.h — an asynchronous client for Dovecot's authentication ("auth client") protocol
 * on an sd-event loop. One SaslClient is one connection to Dovecot's auth socket, shared by any
 * number of concurrent authentications (requests, told apart by their ids).
 *
 *   sasl_client_new(event, "/run/dovecot/auth-client", 30 * USEC_PER_SEC, &c);
 *   sasl_client_connect(c);                    // handshake runs in the background
 *   sasl_client_auth(c, &(SaslAuthInfo) { .mech = "PLAIN", .service = "smtp",
 *                                         .initial_response = "AGFsaWNlAHNlY3JldA==" },
 *                    on_reply, session, &req);
 *   on_reply(req, SASL_STATUS_CONTINUE, "VXNlcm5hbWU6", ...) -> sasl_request_continue(req, "...")
 *   on_reply(NULL, SASL_STATUS_OK, "alice", ...)            -> the request is finished
 *
 * Replies are never delivered from inside sasl_client_auth() or sasl_request_continue(): a
 * request that cannot be sent (Dovecot unreachable) fails synchronously with a negative errno.
 * After the connection is lost, every pending request gets SASL_STATUS_TEMPFAIL, and the client
 * reconnects (at the next request, and from a backoff timer); the last mechanism list received
 * stays known meanwhile. Each request has a timeout, which runs only while Dovecot has to answer
 * (not while a CONTINUE waits for the client). Lines are bounded (SASL_LINE_MAX); a longer
 * line from the server is a protocol error that drops the connection. The library never logs:
 * connection events reach the owner through the state callback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"

/* Dovecot's own limit on one protocol line. */
#define SASL_LINE_MAX 16384

/* The properties Dovecot announces for a mechanism (MECH lines). */
typedef enum SaslMechFlags {
        SASL_MECH_ANONYMOUS = 1 << 0,
        SASL_MECH_PLAINTEXT = 1 << 1,
        SASL_MECH_DICTIONARY = 1 << 2,
        SASL_MECH_ACTIVE = 1 << 3,
        SASL_MECH_FORWARD_SECRECY = 1 << 4,
        SASL_MECH_MUTUAL_AUTH = 1 << 5,
        SASL_MECH_PRIVATE = 1 << 6,
} SaslMechFlags;

typedef struct SaslMech {
        char *name;
        unsigned flags;
} SaslMech;

typedef enum SaslStatus {
        SASL_STATUS_OK,         /* text: the authenticated user name (NULL if Dovecot sent none) */
        SASL_STATUS_CONTINUE,   /* text: the base64 challenge ("" for an empty one) */
        SASL_STATUS_FAIL,       /* text: Dovecot's reason, or NULL */
        SASL_STATUS_TEMPFAIL,   /* text: why (Dovecot's reason, lost connection, timeout) */
} SaslStatus;

typedef struct SaslClient SaslClient;
typedef struct SaslRequest SaslRequest;

/* With CONTINUE, r is the live request (answer with sasl_request_continue() or cancel it).
 * With OK, FAIL and TEMPFAIL the request is already gone and r is NULL. */
typedef void (*SaslReplyFn)(SaslRequest *r, SaslStatus status, const char *text, void *userdata);
/* error == 0: the handshake completed (mechanisms known); < 0: a connection attempt failed or
 * the connection was lost (negative errno; -EPROTO for a protocol violation). */
typedef void (*SaslStateFn)(SaslClient *c, int error, void *userdata);

typedef struct SaslAuthInfo {
        const char *mech;
        const char *service;            /* "smtp" */
        const char *local_ip;           /* optional */
        const char *remote_ip;          /* optional */
        bool secured;                   /* the client connection is protected by TLS */
        const char *initial_response;   /* base64; "" for an empty one; NULL for none */
} SaslAuthInfo;

int sasl_client_new(sd_event *event, const char *path, uint64_t request_timeout_usec, SaslClient **ret);
SaslClient *sasl_client_free(SaslClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(SaslClient *, sasl_client_free);
void sasl_client_set_state_callback(SaslClient *c, SaslStateFn fn, void *userdata);
const char *sasl_client_path(SaslClient *c);
/* Connects unless connected; 0 or a negative errno from socket()/connect(), after which
 * retries run in the background (1 s, doubling up to 60 s; each failure reaches the state
 * callback). */
int sasl_client_connect(SaslClient *c);
/* True once Dovecot's handshake (up to DONE) completed on the current connection. */
bool sasl_client_ready(SaslClient *c);
/* The mechanisms of the last completed handshake (NULL/0 before the first). */
const SaslMech *sasl_client_mechs(SaslClient *c, size_t *ret_n);
/* Starts an authentication; -EINVAL for a mechanism or argument that cannot be sent, or the
 * errno of a failed connection attempt. */
int sasl_client_auth(SaslClient *c, const SaslAuthInfo *info, SaslReplyFn fn, void *userdata,
                     SaslRequest **ret);
/* Answers a CONTINUE with the client's base64 response ("" for an empty one). */
int sasl_request_continue(SaslRequest *r, const char *response);
/* Forgets a request (the client gave up); its callback is never called. Accepts NULL. */
void sasl_request_cancel(SaslRequest *r);

/* Dovecot's tab-escaping (\001 followed by 0 1 t r n l): decodes in place. */
void sasl_tab_unescape(char *s);
