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
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "local-expander.h"
#include "log/log.h"

/* Logs why (printf-style) and bounces the recipient with Postfix's text. */
static int config_error(Expander *e, const char *address, const char *fmt, ...) _printf_(3, 4);
static int config_error(Expander *e, const char *address, const char *fmt, ...) {
        _cleanup_free_ char *why = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&why, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        log_warning("%s", why);
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
        if (path[0] != '/')
                return config_error(e, address, ":include:%s uses a relative path", path);

        r = local_user_file_read(path, uid, rights ? rights->pw_gid : 0, true, &text, &st);
        if (r == -ENOENT || r == -ENOTDIR || r == -EACCES || r == -EPERM)
                return config_error(e, address, "unable to lookup :include: file %s: %s", path, strerror(-r));
        if (r == -EBADF)
                return config_error(e, address, ":include: file %s is not a regular file", path);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                const char *err = r == -EFBIG ? "too large" : strerror(-r);
                log_warning("cannot read include file %s: %s", path, err);
                return local_expander_result(e, address, "4.3.0", "cannot read include file %s: %s", path, err);
        }
        if (st.st_mode & S_IWOTH)
                return config_error(e, address, ":include: file %s is world writable", path);

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
