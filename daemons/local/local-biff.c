/* local-biff.c — the comsat ("biff") notification of Postfix's local(8) (parameter biff, default
 * yes): after a message was appended to a user's mbox, one UDP datagram "user@offset" (the
 * offset where the new message starts, terminated by a NUL as Postfix sends it) to localhost's
 * "biff" service (biff/udp in /etc/services, 512 when it is not listed). comsat then tells the
 * user's terminals that mail arrived. Fire and forget: nothing is waited for, and a failure
 * (no comsat listening, no network for the process) never touches the delivery. Called by the
 * delivery child (it does not log). Maildir deliveries, virtual(8) mailboxes, files and commands
 * send nothing, as in Postfix. local_biff_check() says at settings load when the notifications
 * cannot leave the process (the shipped unit gives it no IPv4 sockets). */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "local.h"
#include "log/log.h"

#define BIFF_DEFAULT_PORT 512

void local_biff_notify(const char *user, long long offset) {
        char text[512];
        struct servent sbuf, *se = NULL;
        char buf[1024];
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BIFF_DEFAULT_PORT),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        if (isempty(user))
                return;
        int n = snprintf(text, sizeof(text), "%s@%lld", user, offset);
        if (n < 0 || (size_t) n >= sizeof(text))
                return;
        if (getservbyname_r("biff", "udp", &sbuf, buf, sizeof(buf), &se) == 0 && se)
                sa.sin_port = (in_port_t) se->s_port;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return;
        (void) sendto(fd, text, (size_t) n + 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *) &sa, sizeof(sa));
        close(fd);
}

/* biff = yes is never silently without effect: under postern-local.service
 * (RestrictAddressFamilies=AF_UNIX, PrivateNetwork=yes) no datagram can reach comsat. */
void local_biff_check(bool biff) {
        if (!biff)
                return;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                log_notice("not supported here: biff = yes (postern-local cannot open an IPv4 socket: %s; the unit "
                           "allows it no network). Set biff = no, or give the unit the drop-in in "
                           "daemons/local/README.md (biff) to notify comsat", strerror(errno));
                return;
        }
        close(fd);
}
