/* local-expander.h — the state of one recipient's local(8) resolution (local-alias.c), shared with
 * the modules that expand more text into it: .forward files (local-dotforward.c), :include: files
 * (local-include.c) and luser_relay (local-luser.c). Internal to postern-local.
 *
 * While a value is expanded, cls says where it came from (alias_maps, a .forward file or an
 * :include: file: the classes of allow_mail_to_commands / allow_mail_to_files) and rights whose
 * uid, gid and home "|command" and "/file" destinations get (NULL: default_privs, as for
 * aliases). A module that changes them restores them before it returns. */
#pragma once

#include <pwd.h>
#include <sys/stat.h>

#include "local.h"

typedef enum LocalExpClass {
        LOCAL_EXP_ALIAS,
        LOCAL_EXP_FORWARD,
        LOCAL_EXP_INCLUDE,
} LocalExpClass;

typedef struct Expander {
        const LocalSettings *s;
        const DeliveredSet *delivered;
        Target **targets;
        size_t n;
        char **seen;            /* dedup keys: "u:<user>", "f:<address>", "forward:<path>" ... */
        size_t n_seen;
        const char *chain[LOCAL_MAX_DEPTH + 2];   /* alias names being expanded */
        size_t n_chain;
        LocalExpClass cls;
        const struct passwd *rights;
        size_t n_tokens;        /* destinations read so far (a .forward with none is not used) */
        bool in_luser_relay;    /* expanding luser_relay's address: no second luser_relay */
        /* the sender and depth of the deliver_user() call in progress (deliver_user_from()) */
        const char *sender;
        unsigned depth;
} Expander;

/* "alias", "forward" or "include": the allow_mail_to_* class of cls. */
const char *local_exp_class_name(LocalExpClass cls);

/* Adds a target with a final result (dsn, diagnostic) for address. 0 or -ENOMEM. */
int local_expander_result(Expander *e, const char *address, const char *dsn, const char *fmt, ...) _printf_(4, 5);
/* 1 when prefix+key was seen in this resolution before, else remembers it and returns 0; <0. */
int local_expander_seen(Expander *e, const char *prefix, const char *key);
/* Whether prefix+key was seen before, without remembering it. */
bool local_expander_was_seen(const Expander *e, const char *prefix, const char *key);
/* Expands the lines of a .forward or :include: file's text (lines starting with '#' skipped). */
int local_expander_lines(Expander *e, const char *text, const char *address, const char *domain,
                         const char *sender, unsigned depth);
/* One address (no commands, files or lists): local ones are resolved again, others forwarded. */
int local_expander_address(Expander *e, const char *addr, const char *via, const char *sender, unsigned depth);

/* A user's .forward (forward_path): 1 when it decided where the mail goes (its destinations
 * expanded, or a deferral), 0 when the mailbox gets the mail (no forward_path, no file, an
 * unusable file — logged —, an empty one, or the user met again inside its own .forward). */
int local_dotforward(Expander *e, const struct passwd *pw, const char *address);
/* ":include:path" in a value of class e->cls. */
int local_include(Expander *e, const char *path, const char *address, const char *domain, const char *sender,
                  unsigned depth);
/* The unknown-user case: 1 when luser_relay took the recipient (as name@...), 0 when not set. */
int local_luser_relay(Expander *e, const char *name, const char *address);

/* Reads a .forward or :include: file with the file-system rights of uid/gid (setfsuid: root's
 * capabilities do not apply, as Postfix opens them as the user; uid 0: as root), never blocking on
 * a FIFO or device: regular files only (follow: symbolic links are followed, else a link is not
 * a regular file), at most LOCAL_USER_FILE_MAX bytes. Returns 0 with *ret_text (NUL-terminated)
 * and *ret_st; -ENOENT/-ENOTDIR when it does not exist; -EBADF when it is not a regular file;
 * -EFBIG when too large; another -errno when it cannot be read. */
#define LOCAL_USER_FILE_MAX (1024 * 1024)
int local_user_file_read(const char *path, uid_t uid, gid_t gid, bool follow, char **ret_text, struct stat *ret_st);

/* Postfix's local(8) attributes for $name expansion: user, home, shell, recipient, extension,
 * domain, local (= mailbox), recipient_delimiter, from the recipient address and the user
 * (pw NULL for an unknown one: no home, no shell). */
/* Expands template with the attributes (values filtered through filter unless NULL) into *ret;
 * *ret_flags as mac_expand(). 0 or -ENOMEM. */
int local_expand(const LocalSettings *s, const char *template, const char *user, const char *address,
                 const struct passwd *pw, const char *filter, char **ret, unsigned *ret_flags);
