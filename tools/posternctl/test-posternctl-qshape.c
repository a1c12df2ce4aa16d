/* test-posternctl-qshape.c — qshape's pure parts: the age buckets at their edges, counting by
 * domain, and the printed table (column widths, TOTAL, order, -n). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/tests.h"
#include "posternctl.h"

#define MIN_USEC (60 * USEC_PER_SEC)

static void test_buckets(void) {
        static const struct { usec_t age; size_t bucket; } cases[] = {
                { 0, 0 }, { 5 * MIN_USEC - 1, 0 }, { 5 * MIN_USEC, 1 }, { 10 * MIN_USEC - 1, 1 },
                { 10 * MIN_USEC, 2 }, { 39 * MIN_USEC, 3 }, { 80 * MIN_USEC, 5 },
                { 1279 * MIN_USEC, 8 }, { 1280 * MIN_USEC, 9 }, { 100000 * MIN_USEC, 9 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                CHECK_INT(qshape_bucket(cases[i].age), cases[i].bucket);
}

static char *print(QShape *s, size_t top) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f);
        qshape_print(f, s, top);
        CHECK_INT(fclose(f), 0);
        return buf;
}

static void test_table(void) {
        QShape s = {};
        char *out;

        out = print(&s, 0);
        CHECK_STR(out, "      T 5 10 20 40 80 160 320 640 1280 1280+\n"
                       "TOTAL 0 0  0  0  0  0   0   0   0    0     0\n");
        free(out);

        CHECK_INT(qshape_add(&s, "example.net", 2000 * MIN_USEC), 0);
        CHECK_INT(qshape_add(&s, "example.com", 1 * MIN_USEC), 0);
        CHECK_INT(qshape_add(&s, "example.com", 2 * MIN_USEC), 0);
        CHECK_INT(qshape_add(&s, "example.com", 300 * MIN_USEC), 0);
        CHECK_INT(qshape_add(&s, "a.example", 7 * MIN_USEC), 0);
        for (int i = 0; i < 12; i++)
                CHECK_INT(qshape_add(&s, "big.example.org", 1300 * MIN_USEC), 0);
        out = print(&s, 0);
        CHECK_STR(out, "                 T 5 10 20 40 80 160 320 640 1280 1280+\n"
                       "          TOTAL 17 2  1  0  0  0   0   1   0    0    13\n"
                       "big.example.org 12 0  0  0  0  0   0   0   0    0    12\n"
                       "    example.com  3 2  0  0  0  0   0   1   0    0     0\n"
                       "      a.example  1 0  1  0  0  0   0   0   0    0     0\n"
                       "    example.net  1 0  0  0  0  0   0   0   0    0     1\n");
        free(out);
        /* -n 2: the two largest; the domain column narrows to what is shown */
        out = print(&s, 2);
        CHECK_STR(out, "                 T 5 10 20 40 80 160 320 640 1280 1280+\n"
                       "          TOTAL 17 2  1  0  0  0   0   1   0    0    13\n"
                       "big.example.org 12 0  0  0  0  0   0   0   0    0    12\n"
                       "    example.com  3 2  0  0  0  0   0   1   0    0     0\n");
        free(out);
        qshape_done(&s);
}

int main(void) {
        test_buckets();
        test_table();
        return 0;
}
