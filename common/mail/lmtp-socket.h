/* lmtp-socket.h — the socket path of an LMTP "unix:" next hop: an absolute path as written, a
 * relative one (Postfix's "unix:private/dovecot-lmtp", relative to its queue directory) under
 * postern_lmtp_socket_directory. Used by postern-smtp to connect and by `posternctl route` to
 * show where it would connect. */
#pragma once

#include <stddef.h>

/* path (the text after "unix:") resolved under dir into buf. 0, or -EINVAL when path is empty or
 * relative with dir empty, -ENAMETOOLONG when the result does not fit size (never cut short). */
int lmtp_socket_path(const char *path, const char *dir, char *buf, size_t size);
