/* xtext.h — RFC 3461 xtext: "+XX" hex escapes for '+', '=', and bytes outside 33..126.
 * Used by the IPC protocol for attribute values and by DSN ORCPT/ENVID. */
#pragma once

#include <stddef.h>
#include "../basic/strbuf.h"

int xtext_encode(const char *s, size_t n, StrBuf *out);
/* Returns -EINVAL for a malformed escape. The output may contain NUL bytes; *ret_len tells. */
int xtext_decode(const char *s, size_t n, char **ret, size_t *ret_len);
