/* milter.h — the Sendmail milter protocol (version 6) as pure code, and milter specifications.
 *
 *   milter-proto.c  packet framing (4-byte big-endian length, then a command byte and its data),
 *                   encoding every command the MTA sends, parsing every reply a milter sends,
 *                   option negotiation and the macro lists of each stage
 *   milter-edit.c   the edits of the end of message (headers, body) applied to a message
 *   milter-spec.c   "unix:/path", "local:/path", "inet:host:port", "inet:[::1]:port" and the
 *                   "{ inet:host:port, connect_timeout=10s, default_action=tempfail, ... }" form
 *
 * Nothing here does I/O or logs: a malformed packet is -EBADMSG with err[] naming what was wrong.
 * The client (postern-smtpd's smtpd-milter.c) does the sockets, timeouts and actions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/strbuf.h"

#define MILTER_VERSION 6
/* The largest packet either side may send (a body replacement chunk of 1 MiB plus framing);
 * anything larger is a protocol error. */
#define MILTER_PACKET_MAX (1024 * 1024 + 16)
#define MILTER_CHUNK_MAX 65535          /* body chunks the MTA sends */
#define MILTER_ERR_MAX 256

/* Commands the MTA sends. */
enum {
        MILTER_CMD_ABORT = 'A', MILTER_CMD_BODY = 'B', MILTER_CMD_CONNECT = 'C', MILTER_CMD_MACRO = 'D',
        MILTER_CMD_EOB = 'E', MILTER_CMD_HELO = 'H', MILTER_CMD_QUIT_NC = 'K', MILTER_CMD_HEADER = 'L',
        MILTER_CMD_MAIL = 'M', MILTER_CMD_EOH = 'N', MILTER_CMD_OPTNEG = 'O', MILTER_CMD_QUIT = 'Q',
        MILTER_CMD_RCPT = 'R', MILTER_CMD_DATA = 'T', MILTER_CMD_UNKNOWN = 'U',
};

/* Replies a milter sends. */
enum {
        MILTER_R_ADDRCPT = '+', MILTER_R_DELRCPT = '-', MILTER_R_ADDRCPT_PAR = '2',
        MILTER_R_ACCEPT = 'a', MILTER_R_REPLBODY = 'b', MILTER_R_CONTINUE = 'c', MILTER_R_DISCARD = 'd',
        MILTER_R_CHGFROM = 'e', MILTER_R_ADDHEADER = 'h', MILTER_R_INSHEADER = 'i',
        MILTER_R_SETSYMLIST = 'l', MILTER_R_CHGHEADER = 'm', MILTER_R_PROGRESS = 'p',
        MILTER_R_QUARANTINE = 'q', MILTER_R_REJECT = 'r', MILTER_R_SKIP = 's', MILTER_R_TEMPFAIL = 't',
        MILTER_R_REPLYCODE = 'y', MILTER_R_OPTNEG = 'O',
};

/* Protocol flags (what the milter does not want, or will not answer). */
enum {
        MILTER_P_NOCONNECT = 0x1, MILTER_P_NOHELO = 0x2, MILTER_P_NOMAIL = 0x4, MILTER_P_NORCPT = 0x8,
        MILTER_P_NOBODY = 0x10, MILTER_P_NOHDRS = 0x20, MILTER_P_NOEOH = 0x40, MILTER_P_NR_HDR = 0x80,
        MILTER_P_NOUNKNOWN = 0x100, MILTER_P_NODATA = 0x200, MILTER_P_SKIP = 0x400,
        MILTER_P_RCPT_REJ = 0x800, MILTER_P_NR_CONN = 0x1000, MILTER_P_NR_HELO = 0x2000,
        MILTER_P_NR_MAIL = 0x4000, MILTER_P_NR_RCPT = 0x8000, MILTER_P_NR_DATA = 0x10000,
        MILTER_P_NR_UNKN = 0x20000, MILTER_P_NR_EOH = 0x40000, MILTER_P_NR_BODY = 0x80000,
        MILTER_P_HDR_LEADSPC = 0x100000,
        MILTER_P_ALL = 0x1FFFFF,        /* everything the client offers */
};

/* Action flags (what the milter may do at end of message). */
enum {
        MILTER_A_ADDHDRS = 0x1, MILTER_A_CHGBODY = 0x2, MILTER_A_ADDRCPT = 0x4, MILTER_A_DELRCPT = 0x8,
        MILTER_A_CHGHDRS = 0x10, MILTER_A_QUARANTINE = 0x20, MILTER_A_CHGFROM = 0x40,
        MILTER_A_ADDRCPT_PAR = 0x80, MILTER_A_SETSYMLIST = 0x100,
        MILTER_A_ALL = 0x1FF,
};

/* The stages that carry macros, in the order of setsymlist's index. */
typedef enum MilterMacroStage {
        MILTER_M_CONNECT, MILTER_M_HELO, MILTER_M_MAIL, MILTER_M_RCPT, MILTER_M_DATA, MILTER_M_EOM,
        MILTER_M_EOH, MILTER_M_UNKNOWN, _MILTER_M_MAX,
} MilterMacroStage;
/* The command byte a stage's macros are sent for ('C', 'H', 'M', 'R', 'T', 'E', 'N', 'U'). */
char milter_macro_stage_cmd(MilterMacroStage st);

/* Framing: the next complete packet in buf. Returns 0 when more bytes are needed, 1 with
 * *ret_cmd, *ret_data and *ret_len (the data after the command byte) and *ret_used (bytes to
 * consume), or -EBADMSG with err naming what was wrong (zero length, larger than
 * MILTER_PACKET_MAX). */
int milter_frame_next(const void *buf, size_t len, char *ret_cmd, const uint8_t **ret_data,
                      size_t *ret_len, size_t *ret_used, char err[MILTER_ERR_MAX]);

/* Encoders: each appends one whole packet; 0 or -ENOMEM. */
int milter_put_packet(StrBuf *b, char cmd, const void *data, size_t n);
int milter_put_optneg(StrBuf *b, uint32_t version, uint32_t actions, uint32_t protocol);
/* 'D' for cmd: names[i] with the value get(name, userdata) returns; names without a value
 * (NULL) are left out; nothing is appended when no name has a value. names may be NULL. */
int milter_put_macros(StrBuf *b, char cmd, char *const *names,
                      const char *(*get)(const char *name, void *userdata), void *userdata);
/* 'C': host name, then family ('4', '6', 'L' with the path, 'U' unknown), port and address. */
int milter_put_connect(StrBuf *b, const char *hostname, char family, uint16_t port, const char *addr);
/* A command whose data is NUL-terminated strings (HELO, MAIL, RCPT, UNKNOWN): args NULL-terminated. */
int milter_put_strings(StrBuf *b, char cmd, const char *const *args);
int milter_put_header(StrBuf *b, const char *name, const char *value);
/* The same from a name and a value that are not NUL-terminated (slices of the message). */
int milter_put_header_n(StrBuf *b, const char *name, size_t name_len, const char *value, size_t value_len);
/* One 'B' packet of body content in LF form p[0..len) turned into CRLF, at most
 * MILTER_CHUNK_MAX bytes of data; *ret_used is how much of p it took (len when all). */
int milter_put_body_crlf(StrBuf *b, const char *p, size_t len, size_t *ret_used);
/* Body content in 'B' packets of at most MILTER_CHUNK_MAX bytes (nothing for n == 0). */
int milter_put_body(StrBuf *b, const void *p, size_t n);

/* The milter's answer to OPTNEG. */
typedef struct MilterNeg {
        uint32_t version, actions, protocol;
        char *symlist[_MILTER_M_MAX];   /* the milter's macro requests per stage ("i {mail_addr}") or NULL */
} MilterNeg;
void milter_neg_done(MilterNeg *n);
/* Parses an OPTNEG reply against what was offered: a version below 2 or above offered, actions
 * or protocol flags not offered, a truncated packet or a malformed symbol list is -EBADMSG. */
int milter_neg_parse(const uint8_t *p, size_t n, uint32_t offered_actions, uint32_t offered_protocol,
                     MilterNeg *ret, char err[MILTER_ERR_MAX]);

/* One reply packet, parsed. Strings point into an allocation of the reply (milter_reply_done). */
typedef struct MilterReply {
        char cmd;                /* MILTER_R_* */
        char *text;              /* replycode: the whole reply, lines joined by "\r\n"; quarantine
                                  * reason; chgfrom/addrcpt/delrcpt: the address */
        int code;                /* replycode: 4xx/5xx */
        char *name, *value;      /* add/ins/chgheader; addrcpt_par/chgfrom: value = ESMTP args or NULL */
        uint32_t index;          /* insheader/chgheader */
        const uint8_t *body;     /* replbody: points into the packet */
        size_t body_len;
        char *storage;
} MilterReply;
void milter_reply_done(MilterReply *r);
/* Parses a reply packet (cmd and the data after it). Unknown commands, missing NULs, a reply code
 * that is not 4xx/5xx, inconsistent multi-line replies and empty names are -EBADMSG. */
int milter_reply_parse(char cmd, const uint8_t *p, size_t n, MilterReply *ret, char err[MILTER_ERR_MAX]);
/* A readable name for a reply command ("reject", "addheader", ...). */
const char *milter_reply_name(char cmd);

/* The edits of a message's milters (milter-edit.c), in the order they came. */
typedef struct MilterEdit {
        char cmd;                /* MILTER_R_ADDHEADER, ..._CHGFROM */
        uint32_t index;
        char *name, *value;      /* header name and value (LF form); or address and ESMTP args */
} MilterEdit;
typedef struct MilterEdits {
        MilterEdit *v;
        size_t n;
        StrBuf body;             /* replbody, CRLF as received */
        bool body_replaced;
} MilterEdits;
/* Records an edit reply (header, body, recipient, sender); 0 or -ENOMEM. */
int milter_edits_add(MilterEdits *e, const MilterReply *r);
void milter_edits_reset(MilterEdits *e);
/* The header and body edits applied to content (LF form): 0 with *ret (allocated) and *ret_len,
 * 1 when they change nothing, -ENOMEM. */
int milter_edits_apply_content(const MilterEdits *e, const char *content, size_t len, char **ret,
                               size_t *ret_len);

/* A milter from smtpd_milters / non_smtpd_milters. */
typedef enum MilterDefaultAction {
        MILTER_DEFAULT_UNSET = -1, MILTER_DEFAULT_ACCEPT, MILTER_DEFAULT_REJECT, MILTER_DEFAULT_TEMPFAIL,
        MILTER_DEFAULT_QUARANTINE, MILTER_DEFAULT_SHUTDOWN,
} MilterDefaultAction;
int milter_default_action_parse(const char *s);
const char *milter_default_action_name(int a);

typedef struct MilterSpec {
        char *name;              /* the address as written ("inet:127.0.0.1:8891") */
        bool unix_socket;
        char *path;              /* unix */
        char *host;              /* inet, without brackets */
        uint16_t port;
        long long connect_timeout, command_timeout, content_timeout;   /* seconds, -1: unset */
        int default_action;      /* MILTER_DEFAULT_*, UNSET: milter_default_action */
        int protocol;            /* 2..6, 0: milter_protocol */
} MilterSpec;
void milter_spec_done(MilterSpec *s);
/* One list entry (as conf_get_list() returns it, braces already removed, or still "{ ... }").
 * -EINVAL with *ret_reason (allocated) naming what was wrong. */
int milter_spec_parse(const char *entry, MilterSpec *ret, char **ret_reason);

/* Splits a macro list ("i {auth_type} {client_addr}" or "i, j") into names, braces kept as
 * Sendmail names them ("{auth_type}"); NULL-terminated, strv_free(). */
char **milter_macro_list(const char *value);
