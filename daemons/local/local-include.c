/* local-include.c — ":include:/path" in an alias value, a .forward file or another :include:
 * file, as Postfix's local(8) does it: the file's lines (those starting with '#' skipped) expand
 * like an alias value, as class "include" of allow_mail_to_commands / allow_mail_to_files (not
 * allowed by default). Inside a .forward the file is read with the user's rights and its commands
 * and files keep them; inside an alias (no user) it is read as root, symbolic links followed, and
 * its commands and files get the rights of the file's owner — default_privs when root owns it.
 * A relative path, a file that does not exist, is not a regular file or is world-writable bounces
 * the recipient (5.3.5 mail system configuration error, the reason logged with the path); a file
 * that cannot be read (or is over LOCAL_USER_FILE_MAX) or whose owner has no passwd entry
 * defers it. Each file is expanded once per recipient and rights; nesting is bounded by
 * LOCAL_MAX_DEPTH. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "local-expander.h"
#include "log/log.h"

/* Postfix's answer for an unusable :include: file (the reason is logged by the caller). */
static int config_error(Expander *e, const char *address) {
        return local_expander_result(e, address, "5.3.5", "mail system configuration error");
}

int local_include(Expander *e, const char *path, const char *address, const char *domain, const char *sender,
                  unsigned depth) {
        const struct passwd *rights = e->rights;
        uid_t uid = rights ? rights->pw_uid : 0;
        _cleanup_free_ char *text = NULL;
        char uidbuf[32];
        struct stat st;
        int r;

        if (depth > LOCAL_MAX_DEPTH) {
                log_warning(":include: nesting limit exceeded for %s", path);
                return local_expander_result(e, address, "5.4.6", ":include: nesting limit exceeded");
        }
        snprintf(uidbuf, sizeof(uidbuf), "%lu:", (unsigned long) uid);
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s%s", uidbuf, path) < 0)
                return -ENOMEM;
        if ((r = local_expander_seen(e, "include:", key)) != 0)
                return r < 0 ? r : 0;
        if (path[0] != '/') {
                log_warning(":include:%s uses a relative path", path);
                return config_error(e, address);
        }

        r = local_user_file_read(path, uid, rights ? rights->pw_gid : 0, true, &text, &st);
        if (r == -ENOENT || r == -ENOTDIR || r == -EACCES || r == -EPERM) {
                log_warning("unable to lookup :include: file %s: %s", path, strerror(-r));
                return config_error(e, address);
        }
        if (r == -EBADF) {
                log_warning(":include: file %s is not a regular file", path);
                return config_error(e, address);
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                const char *err = r == -EFBIG ? "too large" : strerror(-r);
                log_warning("cannot read include file %s: %s", path, err);
                return local_expander_result(e, address, "4.3.0", "cannot read include file %s: %s", path, err);
        }
        if (st.st_mode & S_IWOTH) {
                log_warning(":include: file %s is world writable", path);
                return config_error(e, address);
        }

        /* No user context (an alias): the file's owner answers for its commands and files. */
        struct passwd pwbuf, *owner = NULL;
        char buf[4096];
        if (!rights) {
                int k = getpwuid_r(st.st_uid, &pwbuf, buf, sizeof(buf), &owner);
                if (k != 0 || !owner) {
                        log_warning("%s: cannot find :include: file owner username (uid %ld)", path, (long) st.st_uid);
                        return local_expander_result(e, address, "4.3.5", "mail system configuration error");
                }
                if (owner->pw_uid != 0)
                        e->rights = owner;
        }
        LocalExpClass cls = e->cls;
        e->cls = LOCAL_EXP_INCLUDE;
        r = local_expander_lines(e, text, address, domain, sender, depth + 1);
        e->cls = cls;
        e->rights = rights;
        return r;
}
