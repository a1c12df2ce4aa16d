/* local-dotforward.c — a user's .forward file, as Postfix's local(8) reads it: after alias
 * expansion, for a name found in passwd, before the mailbox. forward_path is a list of templates
 * ($home/.forward${recipient_delimiter}${extension}, $home/.forward by default, expanded by
 * local-expand.c with values filtered through forward_expansion_filter); an element whose plain
 * $name has no value is skipped, and the first file that exists is the one used — also when it is
 * unusable. It is read with the user's rights (local-userfile.c) and used only if it is a regular
 * file (a symbolic link is not), owned by the user or root, not world-writable and not
 * group-writable unless its group is the user's private group (named after the user, nobody else
 * in it). An unusable file is logged ("file <path> is group writable") and ignored: the mailbox
 * gets the mail. A file that cannot be read (or is over LOCAL_USER_FILE_MAX) defers the recipient
 * (4.3.0).
 *
 * Its lines (those starting with '#' skipped) expand like an alias value, as class "forward" of
 * allow_mail_to_commands / allow_mail_to_files, with the user's uid, gid and home for commands and
 * files (never root: a root .forward's commands run as default_privs). A user met again while
 * their own .forward is being expanded ("\user" or "user" in it) gets the mailbox; a .forward
 * without any destination means the mailbox too. Each .forward is expanded once per recipient. */
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/mac-expand.h"
#include "local-expander.h"
#include "log/log.h"

/* Whether group gid is the user's private group (Debian's user private groups): the user's
 * primary group, named after the user, with no listed member but the user. (A primary group such
 * as "users" that other accounts share is not one.) */
static bool private_group(const struct passwd *pw, gid_t gid) {
        struct group gbuf, *g = NULL;
        char buf[4096];
        if (gid != pw->pw_gid || getgrgid_r(gid, &gbuf, buf, sizeof(buf), &g) != 0 || !g ||
            !streq(g->gr_name, pw->pw_name))
                return false;
        for (char **m = g->gr_mem; m && *m; m++)
                if (!streq(*m, pw->pw_name))
                        return false;
        return true;
}

/* Why a .forward that was read may not be used, or NULL. */
static const char *forward_problem(const struct passwd *pw, const struct stat *st, char *buf, size_t size) {
        if (st->st_uid != 0 && st->st_uid != pw->pw_uid) {
                snprintf(buf, size, "has bad owner uid %ld", (long) st->st_uid);
                return buf;
        }
        if (st->st_mode & S_IWOTH)
                return "is world writable";
        if ((st->st_mode & S_IWGRP) && !private_group(pw, st->st_gid))
                return "is group writable";
        return NULL;
}

/* The first forward_path file that exists: 1 with *ret_path and the outcome of reading it (*ret_read:
 * 0 with *ret_text and *ret_st, or -errno); 0 when none exists. */
static int forward_find(Expander *e, const struct passwd *pw, const char *address, char **ret_path, int *ret_read,
                        char **ret_text, struct stat *ret_st) {
        const LocalSettings *s = e->s;
        _cleanup_strv_free_ char **elems = conf_split_list(s->forward_path);
        if (!elems)
                return -ENOMEM;
        for (char **el = elems; *el; el++) {
                _cleanup_free_ char *path = NULL;
                unsigned flags = 0;
                int r = local_expand(s, *el, pw->pw_name, address, pw, s->forward_expansion_filter, &path, &flags);
                if (r < 0)
                        return r;
                if (flags & (MAC_EXPAND_UNDEF | MAC_EXPAND_ERROR))
                        continue;
                if (path[0] != '/') {
                        log_warning("forward_path element \"%s\" is not an absolute path for %s: ignored", *el,
                                    address);
                        continue;
                }
                r = local_user_file_read(path, pw->pw_uid, pw->pw_gid, false, ret_text, ret_st);
                if (r == -ENOENT || r == -ENOTDIR)
                        continue;
                if (r == -EACCES || r == -EPERM) {
                        log_warning("cannot access forward file %s: %s", path, strerror(-r));
                        continue;
                }
                if (r == -ENOMEM)
                        return r;
                *ret_read = r;
                *ret_path = TAKE_PTR(path);
                return 1;
        }
        return 0;
}

int local_dotforward(Expander *e, const struct passwd *pw, const char *address) {
        const char *sender = e->sender;
        unsigned depth = e->depth;
        _cleanup_free_ char *path = NULL, *text = NULL, *domain = NULL;
        struct stat st;
        char why[64];
        int r, rd = 0;

        if (isempty(e->s->forward_path))
                return 0;
        r = forward_find(e, pw, address, &path, &rd, &text, &st);
        if (r <= 0)
                return r;
        /* Met again inside its own expansion: the mailbox. Already expanded: nothing more. */
        if (local_expander_was_seen(e, "forward:", path))
                return local_expander_was_seen(e, "forward-done:", path) ? 1 : 0;
        if ((r = local_expander_seen(e, "forward:", path)) < 0)
                return r;

        if (rd == -EBADF) {
                log_warning("file %s is not a regular file", path);
                return 0;
        }
        if (rd < 0) {
                const char *err = rd == -EFBIG ? "too large" : strerror(-rd);
                log_warning("cannot read file %s: %s", path, err);
                r = local_expander_result(e, address, "4.3.0", "cannot read forward file %s: %s", path, err);
                return r < 0 ? r : 1;
        }
        const char *problem = forward_problem(pw, &st, why, sizeof(why));
        if (problem) {
                log_warning("file %s %s", path, problem);
                return 0;
        }

        const char *at = strrchr(address, '@');
        if (!(domain = strdup(at ? at + 1 : e->s->myorigin)))
                return -ENOMEM;
        LocalExpClass cls = e->cls;
        const struct passwd *rights = e->rights;
        size_t tokens = e->n_tokens;
        e->cls = LOCAL_EXP_FORWARD;
        e->rights = pw;
        r = local_expander_lines(e, text, address, domain, sender, depth + 1);
        e->cls = cls;
        e->rights = rights;
        if (r < 0)
                return r;
        if (e->n_tokens == tokens)
                return 0;   /* an empty .forward: the mailbox */
        r = local_expander_seen(e, "forward-done:", path);
        return r < 0 ? r : 1;
}
