/* delay.h — formats the delay= and delays=a/b/c/d figures of delivery log lines the way Postfix's
 * log tools expect: "0" below 10 ms, two decimals below 1 s, one below 10 s, whole seconds above,
 * trailing zeros dropped ("0.04", "0.1", "1.2", "73"). */
#pragma once

#include <stddef.h>
#include "../basic/macro.h"

/* Writes the delay d into buf (>= 32 bytes is always enough); returns buf. */
const char *delay_format(usec_t d, char *buf, size_t bufsz);
/* a - b, or 0 when the clock went backwards. */
static inline usec_t delay_between(usec_t later, usec_t earlier) {
        return later > earlier ? later - earlier : 0;
}
