/* base64.c — see base64.h. */
#include <string.h>

#include "base64.h"

static bool b64_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '+' || c == '/';
}

bool base64_valid(const char *s) {
        size_t len = strlen(s);
        if (len % 4 != 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (b64_char(s[i]))
                        continue;
                /* '=' only as the last one or two characters. */
                if (s[i] == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '='))
                        continue;
                return false;
        }
        return true;
}
