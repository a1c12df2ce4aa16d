/* sendmail.h — the parts of postern-sendmail (and its postern-mailq / postern-newaliases names)
 * shared between its files:
 *   sendmail.c          options, modes (-bm, -bs, -bp, -bv, -bi, -q), main()
 *   sendmail-message.c  reading the message, header edits (-t, Bcc:, -F), address lists
 *   sendmail-smtp.c     the ESMTP client that talks to postern-smtpd's submit socket
 * Functions return negative errno; callers print one message and map it to a sysexits code. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include "basic/macro.h"
#include "basic/strbuf.h"

/* --- sendmail-message.c --- */

/* Reads a message from fd in LF or CRLF form into *out in LF form. Without ignore_dots a line
 * holding only "." ends the input (sendmail's default; -i / -oi turn that off). A leading
 * mbox "From " line is dropped. limit 0 means unlimited; above it: -EFBIG. */
int sendmail_read_message(int fd, bool ignore_dots, size_t limit, StrBuf *out);

/* Splits an RFC 5322 address-list (a header field value, maybe folded) into the addr-spec of
 * each mailbox: display names, comments, groups ("undisclosed-recipients:;"), quoted strings,
 * route-addrs and domain literals are understood. Returns a strv, possibly empty. */
int sendmail_split_address_list(const char *value, size_t len, char ***ret);

/* Offset of the end of the header section in an LF-form message (the index of the body's first
 * byte; the separating empty line belongs to the header section), and whether an empty line
 * separated them. 0 when the message has no header at all. */
size_t sendmail_header_end(const char *msg, size_t len, bool *ret_has_separator);

/* For -t: appends to *rcpts the addresses of To:, Cc: and Bcc: (or of Resent-To:, Resent-Cc:,
 * Resent-Bcc: when any Resent- header is present) and removes Bcc: / Resent-Bcc: from msg. */
int sendmail_extract_recipients(StrBuf *msg, char ***rcpts);

/* Adds "From: full_name <sender>" at the top when the message has no From: header. */
int sendmail_add_from(StrBuf *msg, const char *full_name, const char *sender);

/* Appends s to the strv *l (copying it); -ENOMEM on failure. */
int strv_push_dup(char ***l, const char *s);
size_t strv_length(char * const *l);

/* --- sendmail-smtp.c --- */

typedef struct SmtpClient {
        int fd;
        StrBuf in;
        bool ext_size, ext_8bitmime, ext_smtputf8, ext_dsn;
} SmtpClient;

#define SMTP_CLIENT_INIT { -1, STRBUF_INIT, false, false, false, false }

void smtp_client_done(SmtpClient *c);
static inline void smtp_client_donep(SmtpClient *c) { smtp_client_done(c); }
#define _cleanup_smtp_client_ _cleanup_(smtp_client_donep)

/* Connects to the AF_UNIX stream socket at path with I/O timeouts of timeout_sec. */
int smtp_client_connect(SmtpClient *c, const char *path, unsigned timeout_sec);
/* Reads one (multi-line) reply: *ret_code is the 3-digit code, *ret_text (caller frees) the
 * text of all lines joined with "\n" without codes ("250 2.0.0 Ok" -> "2.0.0 Ok"). */
int smtp_read_reply(SmtpClient *c, int *ret_code, char **ret_text);
/* Sends one command line (CRLF added) and reads its reply. */
int smtp_command(SmtpClient *c, int *ret_code, char **ret_text, const char *fmt, ...) _printf_(4, 5);
/* EHLO: reads the extensions into the ext_* flags. */
int smtp_ehlo(SmtpClient *c, const char *name, int *ret_code, char **ret_text);
/* Sends an LF-form message as DATA content: CRLF line ends, dot-stuffed, ending with ".". */
int smtp_send_content(SmtpClient *c, const char *msg, size_t len);
/* Writes all of buf. */
int smtp_write_all(int fd, const void *buf, size_t n);
