/* test-https.c — https_url_parse() (https.c): host, port and path of the https: URIs a TLSRPT
 * record names; anything that could not be a host name or would break the request line refused.
 * The requests themselves are tested against a real HTTPS server in tests/integration
 * (test_smtp_mta_sts.py, test_tlsrpt.py). */
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/tests.h"
#include "https.h"

int main(void) {
        static const struct {
                const char *url;
                int r;
                const char *host;
                unsigned port;
                const char *path;
        } cases[] = {
                { "https://reports.example.com/tlsrpt", 0, "reports.example.com", 443, "/tlsrpt" },
                { "HTTPS://r.example.com", 0, "r.example.com", 443, "/" },
                { "https://r.example.com:8443/a/b?c=d#frag", 0, "r.example.com", 8443, "/a/b?c=d" },
                { "https://r.example.com:8443", 0, "r.example.com", 8443, "/" },
                { "http://r.example.com/", -1, NULL, 0, NULL },
                { "https:///path", -1, NULL, 0, NULL },
                { "https://user@r.example.com/", -1, NULL, 0, NULL },
                { "https://r.example.com:0/", -1, NULL, 0, NULL },
                { "https://r.example.com:99999/", -1, NULL, 0, NULL },
                { "https://r.example.com:x/", -1, NULL, 0, NULL },
                { "https://r.example.com/a b", -1, NULL, 0, NULL },
                { "https://r.example.com/a\r\nX: y", -1, NULL, 0, NULL },
                { "https://r.example.com?q", -1, NULL, 0, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char host[256] = "", path[512] = "";
                unsigned port = 0;
                int r = https_url_parse(cases[i].url, host, sizeof host, &port, path, sizeof path);
                if (cases[i].r < 0) {
                        CHECK(r < 0);
                        continue;
                }
                CHECK(r == 0);
                CHECK_STR(host, cases[i].host);
                CHECK(port == cases[i].port);
                CHECK_STR(path, cases[i].path);
        }
        char small[8], path[512];
        unsigned port;
        CHECK(https_url_parse("https://long-name.example/", small, sizeof small, &port, path, sizeof path) < 0);
        return 0;
}
