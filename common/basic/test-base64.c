/* test-base64.c — base64_valid() on well-formed and broken input. */
#include "base64.h"
#include "tests.h"

int main(void) {
        static const struct { const char *in; bool ok; } t[] = {
                { "", true }, { "AGFsaWNlAHNlY3JldA==", true }, { "YWxpY2U=", true },
                { "YWJj", true }, { "YW=j", false }, { "YWJ", false }, { "YW==YWJj", false },
                { "Y===", false }, { "YWJj!", false }, { "YW Jj", false }, { "=", false },
                { "VXNlcm5hbWU6", true }, { "*", false }, { "YWJj\r", false },
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                if (base64_valid(t[i].in) != t[i].ok) {
                        fprintf(stderr, "base64_valid(\"%s\") != %d\n", t[i].in, t[i].ok);
                        return 1;
                }
        return 0;
}
