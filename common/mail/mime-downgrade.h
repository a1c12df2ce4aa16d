/* mime-downgrade.h — converting a message with 8-bit body content to 7-bit MIME, as an SMTP
 * client must before sending it to a server that does not announce 8BITMIME (RFC 6152 3).
 *
 * The message is in the queue's LF form. Each leaf MIME entity whose body has 8-bit bytes is
 * re-encoded as quoted-printable (RFC 2045 6.7: lines of at most 76 characters, soft breaks,
 * trailing blanks encoded) and its Content-Transfer-Encoding header replaced or added (with
 * MIME-Version: 1.0 at the top when the message had none); multipart bodies are walked part
 * by part (delimiter lines, preamble and epilogue kept), message/rfc822 parts converted inside and
 * marked 7bit. Entities already in base64 or quoted-printable, and 8-bit bytes in header fields,
 * cannot be converted and are copied as they are. */
#pragma once

#include <stddef.h>

#include "../basic/strbuf.h"

/* Appends the converted message to out: 1 when converted, 0 when the message has no 8-bit
 * byte (out untouched), <0 (-ENOMEM) on failure. */
int mime_downgrade(const char *msg, size_t len, StrBuf *out);

/* Appends p as quoted-printable (LF line ends kept as line breaks). */
int mime_qp_encode(const char *p, size_t n, StrBuf *out);
