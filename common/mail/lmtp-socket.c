/* lmtp-socket.c — the socket path of an LMTP "unix:" next hop (lmtp-socket.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lmtp-socket.h"
#include "../basic/macro.h"

int lmtp_socket_path(const char *path, const char *dir, char *buf, size_t size) {
        int n;
        if (isempty(path))
                return -EINVAL;
        if (path[0] == '/')
                n = snprintf(buf, size, "%s", path);
        else if (isempty(dir))
                return -EINVAL;
        else
                n = snprintf(buf, size, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}
