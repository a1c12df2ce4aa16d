/* base64.h — checks on base64 text (RFC 4648, standard alphabet, with padding), for protocols
 * that pass base64 through without decoding it (SMTP AUTH responses relayed to Dovecot). */
#pragma once

#include <stdbool.h>

/* True for "" and for well-formed padded base64. */
bool base64_valid(const char *s);
