/* credential.c — systemd credentials standing in for files a daemon may not open (credential.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credential.h"
#include "basic/macro.h"
#include "basic/strbuf.h"

int credential_name_for_path(const char *path, char **ret) {
        *ret = NULL;
        if (!path || path[0] != '/')
                return -EINVAL;
        while (*path == '/')
                path++;
        if (!*path)
                return -EINVAL;
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        int r = 0;
        for (const char *p = path; *p && r >= 0; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '/') {
                        while (p[1] == '/')
                                p++;
                        if (p[1])
                                r = strbuf_putc(&b, '-');
                } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           (c == '.' && b.len > 0))
                        r = strbuf_putc(&b, (char) c);
                else
                        r = strbuf_printf(&b, "_%02x", c);
        }
        if (r < 0)
                return r;
        if (b.len > NAME_MAX)
                return -EINVAL;
        *ret = strbuf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

int credential_path_for(const char *path, char **ret) {
        *ret = NULL;
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || dir[0] != '/')
                return 0;
        _cleanup_free_ char *name = NULL;
        int r = credential_name_for_path(path, &name);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        if (access(p, R_OK) < 0) {
                free(p);
                return 0;
        }
        *ret = p;
        return 1;
}
