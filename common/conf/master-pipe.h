/* master-pipe.h — the command attributes of a master.cf pipe(8) entry (flags=, user=, argv=,
 * size=, eol=, null_sender=), the expansion of its argv macros and the message text the command
 * reads: pure functions shared by postern-local (daemons/local/local-pipe.c) and
 * `posternctl check`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../basic/strbuf.h"
#include "master-cf.h"

/* flags= letters (pipe(8)). */
enum {
        PIPE_F_BLANK = 1 << 0,       /* B: a blank line after the message */
        PIPE_F_DELIVERED = 1 << 1,   /* D: Delivered-To: recipient */
        PIPE_F_FROM = 1 << 2,        /* F: "From sender time" first line */
        PIPE_F_ORIG_TO = 1 << 3,     /* O: X-Original-To: original recipient */
        PIPE_F_RETURN_PATH = 1 << 4, /* R: Return-Path: <sender> */
        PIPE_F_FINAL = 1 << 5,       /* X: final delivery (logged "delivered", not "relayed") */
        PIPE_F_FOLD_HOST = 1 << 6,   /* h: domains (and $nexthop) in lower case */
        PIPE_F_QUOTE = 1 << 7,       /* q: RFC 5322 quoting of local parts in $sender, $recipient ... */
        PIPE_F_FOLD_USER = 1 << 8,   /* u: local parts in lower case */
        PIPE_F_DOT = 1 << 9,         /* .: a "." before every line that starts with "." */
        PIPE_F_QUOTE_FROM = 1 << 10, /* >: a ">" before every line that starts with "From " */
};

typedef struct PipeSpec {
        unsigned flags;
        char *user;                  /* user=user[:group]: the user's name */
        char *group;                 /* the group's name, or NULL: the user's primary group */
        char **argv;                 /* argv= words, macros not yet expanded */
        long long size_limit;        /* size=: bytes, 0 = none */
        char *eol;                   /* eol=, escapes decoded ("\n" by default) */
        char *null_sender;           /* null_sender= ("MAILER-DAEMON" by default) */
} PipeSpec;

/* Reads the command attributes of master.cf pipe entry e. On a configuration error returns
 * -EINVAL with *ret_error naming what is wrong (e.g. "unknown flag 'Z' in flags=Z"); caller
 * frees. */
int pipe_spec_parse(const MasterEntry *e, PipeSpec *ret, char **ret_error);
void pipe_spec_done(PipeSpec *p);

/* What the macros of one delivery expand to. Recipient-dependent macros (recipient,
 * original_recipient, user, extension, mailbox, domain) make an argv word repeat once per
 * recipient. */
typedef struct PipeVars {
        const char *sender;              /* "" for the null sender */
        const char *const *recipients;
        const char *const *orig_recipients;   /* may hold NULLs: the recipient itself */
        size_t n_recipients;
        const char *nexthop;
        const char *recipient_delimiter;
        const char *queue_id;
        uint64_t size;
        const char *client_address, *client_hostname, *client_helo, *client_protocol;
        const char *sasl_method, *sasl_username, *sasl_sender;
} PipeVars;

/* Expands p's argv with v; NULL-terminated. -EINVAL with *ret_error for an unknown macro or a
 * malformed ${...}. */
int pipe_argv_expand(const PipeSpec *p, const PipeVars *v, char ***ret, char **ret_error);

/* The text the command reads: the F R D O lines the flags ask for, the content (LF form) with
 * "." and ">" quoting, lines ended by eol=, and B's blank line. */
int pipe_format_input(const PipeSpec *p, const PipeVars *v, const char *content, size_t len,
                      const char *timestamp, StrBuf *out);

