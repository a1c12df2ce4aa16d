/* delay.c — Postfix-style delay figures for delivery log lines. See delay.h. */
#include <stdio.h>
#include <string.h>

#include "delay.h"

const char *delay_format(usec_t d, char *buf, size_t bufsz) {
        double s = (double) d / (double) USEC_PER_SEC;
        if (d < 10 * USEC_PER_MSEC) {
                snprintf(buf, bufsz, "0");
                return buf;
        }
        if (s >= 10) {
                snprintf(buf, bufsz, "%.0f", s);
                return buf;
        }
        snprintf(buf, bufsz, s >= 1 ? "%.1f" : "%.2f", s);
        /* "0.10" -> "0.1", "2.0" -> "2" */
        char *dot = strchr(buf, '.');
        if (dot) {
                char *e = buf + strlen(buf);
                while (e > dot + 1 && e[-1] == '0')
                        *--e = '\0';
                if (e == dot + 1)
                        *dot = '\0';
        }
        return buf;
}
