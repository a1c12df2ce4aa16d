/* test-io-util.c — unit tests for loop_write on pipes, sockets and closed peers. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include "io-util.h"
#include "tests.h"

int main(void) {
        static char big[256 * 1024];
        memset(big, 'x', sizeof(big));

        /* a pipe (not a socket): falls back to write() */
        int p[2];
        CHECK(pipe(p) == 0);
        CHECK_INT(loop_write(p[1], "hello", 5), 0);
        char buf[8] = {};
        CHECK_INT(read(p[0], buf, sizeof(buf)), 5);
        CHECK_STR(buf, "hello");
        close(p[0]);
        /* a pipe without a reader: EPIPE (SIGPIPE ignored, as every Postern program does) */
        signal(SIGPIPE, SIG_IGN);
        CHECK_INT(loop_write(p[1], "x", 1), -EPIPE);
        close(p[1]);

        /* a socket whose peer closed: EPIPE without SIGPIPE even when not ignored */
        signal(SIGPIPE, SIG_DFL);
        int s[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
        close(s[1]);
        CHECK_INT(loop_write(s[0], big, sizeof(big)), -EPIPE);
        close(s[0]);

        /* a full non-blocking socket: -EAGAIN, not a busy loop */
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
        CHECK(fcntl(s[0], F_SETFL, O_NONBLOCK) == 0);
        int r = 0;
        for (int i = 0; i < 100 && r == 0; i++)
                r = loop_write(s[0], big, sizeof(big));
        CHECK_INT(r, -EAGAIN);
        close(s[0]);
        close(s[1]);
        return 0;
}
