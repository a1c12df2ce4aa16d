/* local-mboxcmd.c — mailbox_command_maps and mailbox_command: Postfix's local(8) hands a user's
 * mailbox delivery to a command (procmail, maildrop, a spam filter) instead of writing the mbox
 * or Maildir itself.
 *
 * local_mailbox_command_target() is asked by the resolution (local-alias.c, deliver_user()) for
 * a recipient found in passwd, after aliases and .forward and after mailbox_transport, before
 * home_mailbox and mail_spool_directory — Postfix's order. mailbox_command_maps is searched
 * with the login name; a match wins over mailbox_command, a table that fails defers the
 * recipient (4.3.0, the error logged here), no match falls back to mailbox_command, and without
 * either mailbox delivery goes on. The command's text is used as it is: Postfix does no $name
 * expansion in it ($EXTENSION, $HOME, … are the shell's, from the environment local-command.c
 * sets) and tables give no $number substitution (TABLE_NO_REGSUB). allow_mail_to_commands does
 * not apply: it is the admin's command, not an alias's or a .forward's.
 *
 * The target is a TARGET_COMMAND run as the user — uid, primary gid, supplementary groups (the
 * child's getgrouplist()) — in the home directory, with the user's HOME and SHELL; mail for root
 * runs as default_privs instead (HOME, SHELL and the directory stay root's, as in Postfix). Its
 * delivery (local-child.c, local-command.c) is that of a "|command" alias: a transient unit
 * under systemd, command_time_limit, mailbox_size_limit as the files' size limit, exit status
 * per sysexits.h, the exactly-once marker (its entry is "<uid>:|command", local-child.c). */
#include <pwd.h>
#include <stdio.h>

#include "local.h"
#include "log/log.h"

/* The command for user: from mailbox_command_maps (*ret_value allocated), else mailbox_command
 * (*ret_value NULL, *ret_static it); 1 found, 0 none, <0 a table error (logged). */
static int command_for(const LocalSettings *s, const char *user, char **ret_value, const char **ret_static) {
        *ret_value = NULL;
        *ret_static = NULL;
        if (s->mailbox_command_maps) {
                _cleanup_(table_notes_done) TableNotes notes = {};
                int r = table_list_lookup_full(s->mailbox_command_maps, user, ret_value, &notes);
                for (char **w = notes.warnings; w && *w; w++)
                        log_warning("mailbox_command_maps: %s", *w);
                if (r < 0) {
                        /* As local-virtual.c logs its tables' failures. */
                        log_warning("table mailbox_command_maps: lookup %s: %s", user, strerror(-r));
                        return r;
                }
                if (r > 0 && !isempty(*ret_value))
                        return 1;
                free(*ret_value);
                *ret_value = NULL;
        }
        if (isempty(s->mailbox_command))
                return 0;
        *ret_static = s->mailbox_command;
        return 1;
}

int local_mailbox_command_target(const LocalSettings *s, const struct passwd *pw, const char *address,
                                 Target **ret) {
        _cleanup_free_ char *value = NULL;
        const char *command = NULL;
        struct passwd runbuf, *run = NULL;
        char buf[4096];

        int r = command_for(s, pw->pw_name, &value, &command);
        if (r == 0)
                return 0;
        _cleanup_(target_freep) Target *t = target_new(r < 0 ? TARGET_RESULT : TARGET_COMMAND, address);
        if (!t)
                return -ENOMEM;
        if (r < 0) {
                if (target_set_result(t, "4.3.0", "mailbox_command_maps lookup failure for \"%s\": %s",
                                      pw->pw_name, strerror(-r)) < 0)
                        return -ENOMEM;
                *ret = TAKE_PTR(t);
                return 1;
        }
        if (pw->pw_uid == 0) {
                /* Postfix runs root's mailbox command with default_privs' rights. */
                int k = getpwnam_r(s->default_privs, &runbuf, buf, sizeof(buf), &run);
                if (k != 0 || !run || run->pw_uid == 0) {
                        if (target_set_result(t, "4.3.5", "mail system configuration error: default_privs "
                                              "user \"%s\" %s", s->default_privs,
                                              run ? "is privileged" : "not found") < 0)
                                return -ENOMEM;
                        t->kind = TARGET_RESULT;
                        *ret = TAKE_PTR(t);
                        return 1;
                }
        } else
                run = (struct passwd *) pw;
        t->mailbox_command = true;
        t->uid = run->pw_uid;
        t->gid = run->pw_gid;
        t->user = strdup(run->pw_name);
        t->home = strdup(pw->pw_dir);
        t->shell = strdup(strempty(pw->pw_shell));
        if (asprintf(&t->path, "|%s", value ? value : command) < 0)
                t->path = NULL;
        if (!t->user || !t->home || !t->shell || !t->path)
                return -ENOMEM;
        *ret = TAKE_PTR(t);
        return 1;
}
