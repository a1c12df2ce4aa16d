/* test-lmtp-socket.c — unit tests for lmtp_socket_path(): the socket of an LMTP "unix:" next hop,
 * absolute as written, Postfix's relative form under postern_lmtp_socket_directory. */
#include <errno.h>

#include "lmtp-socket.h"
#include "../basic/macro.h"
#include "../basic/tests.h"

static const struct {
        const char *path, *dir, *want;
        int r;
} table[] = {
        { "/run/dovecot/lmtp", "/var/spool/postfix", "/run/dovecot/lmtp", 0 },
        { "private/dovecot-lmtp", "/var/spool/postfix", "/var/spool/postfix/private/dovecot-lmtp", 0 },
        { "private/dovecot-lmtp", "/srv/spool/", "/srv/spool/private/dovecot-lmtp", 0 },
        { "/abs", "", "/abs", 0 },
        { "private/dovecot-lmtp", "", NULL, -EINVAL },
        { "", "/var/spool/postfix", NULL, -EINVAL },
};

int main(void) {
        char buf[108];
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = lmtp_socket_path(table[i].path, table[i].dir, buf, sizeof(buf));
                CHECK_INT(r, table[i].r);
                if (table[i].want)
                        CHECK_STR(buf, table[i].want);
        }
        /* A result longer than a socket address holds is refused, never cut short. */
        char dir[120];
        memset(dir, 'd', sizeof(dir) - 1);
        dir[0] = '/';
        dir[sizeof(dir) - 1] = '\0';
        CHECK_INT(lmtp_socket_path("private/x", dir, buf, sizeof(buf)), -ENAMETOOLONG);
        CHECK_INT(lmtp_socket_path("private/x", "/var/spool/postfix", buf, 20), -ENAMETOOLONG);
        return 0;
}
