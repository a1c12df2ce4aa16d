/* test-delay.c — unit tests for the delay= formatting of delivery log lines. */
#include "delay.h"
#include "../basic/tests.h"

#define SEC USEC_PER_SEC

int main(void) {
        static const struct { usec_t d; const char *expect; } t[] = {
                { 0, "0" }, { 9 * USEC_PER_MSEC, "0" }, { 40 * USEC_PER_MSEC, "0.04" },
                { 100 * USEC_PER_MSEC, "0.1" }, { 123 * USEC_PER_MSEC, "0.12" },
                { 1200 * USEC_PER_MSEC, "1.2" }, { 2 * SEC, "2" }, { 73 * SEC, "73" },
                { 3600 * SEC + 400 * USEC_PER_MSEC, "3600" },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                char buf[32];
                CHECK_STR(delay_format(t[i].d, buf, sizeof(buf)), t[i].expect);
        }
        CHECK_INT(delay_between(5, 7), 0);
        CHECK_INT(delay_between(7, 5), 2);
        return 0;
}
