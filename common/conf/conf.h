/* conf.h — main.cf: Postfix syntax (comments, continuation lines starting with whitespace,
 * "name = value"), $name / ${name} / ${name?{a}:{b}} / ${name:{a}} expansion at lookup time, and
 * per-listener overrides "<listener>/<name> = value" (e.g. "submission/smtpd_tls_security_level =
 * encrypt"), which replace master.cf -o options.
 *
 * The file is found at $POSTERN_CONFIG if set, else at POSTERN_SYSCONFDIR "-$POSTERN_INSTANCE/main.cf"
 * if POSTERN_INSTANCE is set, else POSTERN_SYSCONFDIR "/main.cf". A main.cf in
 * POSTERN_SYSCONFDIR "-NAME" (/etc/postern-NAME) belongs to the instance NAME (postern@NAME.target):
 * its queue_directory and postern_socket_directory default to the default instance's with "-NAME"
 * appended (/var/spool/postern-NAME, /run/postern-NAME), the paths its units use. A missing
 * file is not an error (all defaults apply). Unknown parameters are warnings; invalid values are
 * errors. Every message reads "<file>:<line>: <parameter>: <what is wrong>".
 *
 * Lookups return expanded values owned by the Conf (valid until conf_free or conf_set).
 * Typed getters assume conf_load validated the value; they fall back to the default otherwise.
 * A daemon's settings struct is better filled by the field-table loader in conf-fields.h. */
#pragma once

#include <stdbool.h>
#include "../basic/macro.h"

typedef struct Conf Conf;

/* Reads a main.cf. path NULL means the default location. On success returns 0 (or 0 with
 * warnings); on an invalid value returns -EINVAL. Either way *ret_messages (if non-NULL) receives a
 * NULL-terminated strv of warning/error lines (possibly empty) for the caller to print or log.
 * *ret is set only on success. */
int conf_load(const char *path, Conf **ret, char ***ret_messages);
/* conf_load for reports (posternctl check --postfix): on -EINVAL *ret is set too, holding every
 * setting that was read, so each can be judged; the messages say which values are invalid.
 * master.cf's listener -o options are not applied (the report judges each itself). */
int conf_load_report(const char *path, Conf **ret, char ***ret_messages);
/* An empty configuration (all defaults), for tests and tools. */
int conf_new(Conf **ret);
Conf *conf_free(Conf *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Conf *, conf_free);
#define _cleanup_conf_free_ _cleanup_(conf_freep)

/* The path the configuration was read from (or would have been). */
const char *conf_path(const Conf *c);
/* The instance name (NAME of /etc/postern-NAME), or NULL for any other directory. */
const char *conf_instance(const Conf *c);
/* Whether name may name an instance: 1-64 of [A-Za-z0-9_.-], not starting with "." or "-". */
bool conf_instance_name_valid(const char *name);

/* Sets a value as if it appeared in main.cf (name may carry a "listener/" prefix). Returns
 * -EINVAL with *ret_reason on an invalid value, -ENOENT for an unknown parameter. */
int conf_set(Conf *c, const char *name, const char *value, char **ret_reason);

/* The expanded value of a parameter (the listener's override first when listener is non-NULL).
 * Unknown parameters that were set in main.cf are returned too (Postfix allows user-defined
 * parameters for $expansion); entirely unknown names return NULL. */
const char *conf_get(Conf *c, const char *name);
const char *conf_get_listener(Conf *c, const char *listener, const char *name);
long long conf_get_int(Conf *c, const char *listener, const char *name);
bool conf_get_bool(Conf *c, const char *listener, const char *name);
/* TIME parameters in seconds. */
long long conf_get_time(Conf *c, const char *listener, const char *name);
/* LIST parameters split on whitespace and commas; caller frees with strv_free(). Entries of the
 * form "{ text with spaces }" keep their inner text as one element. */
char **conf_get_list(Conf *c, const char *listener, const char *name);
/* The raw (unexpanded) text and whether it was set explicitly (for posternctl config -n). */
const char *conf_get_raw(Conf *c, const char *name, bool *ret_explicit);
/* Whether name is set explicitly for listener ("listener/name") or in main.cf: 1 or 0, -ENOMEM. */
int conf_is_explicit(Conf *c, const char *listener, const char *name);
/* The main.cf line that set name (as written, "listener/name" included); 0 when not set there. */
unsigned conf_get_line(Conf *c, const char *name);
/* Calls fn for each explicitly set name (including listener/name forms, and master.cf's listener
 * -o options as "<fd name>/<name>" after main.cf's), in file order. */
void conf_foreach_explicit(Conf *c, void (*fn)(const char *name, const char *raw, void *ud), void *ud);
/* The same for what main.cf itself sets (posternctl config -n). */
void conf_foreach_main_cf(Conf *c, void (*fn)(const char *name, const char *raw, void *ud), void *ud);

typedef enum ConfEditOp {
        CONF_EDIT_SET,          /* name = value, in place of the old setting or at the end */
        CONF_EDIT_COMMENT,      /* "#" in front of each line of the setting (postconf -#) */
        CONF_EDIT_REMOVE,       /* the setting's lines dropped (postconf -X) */
} ConfEditOp;
/* Edits main.cf at path, keeping comments, order and the file's mode and owner; commenting out or
 * removing a name main.cf does not set changes nothing. -EINVAL for a bad name or value. */
int conf_edit_file_op(const char *path, const char *name, const char *value, ConfEditOp op);
/* conf_edit_file_op(..., CONF_EDIT_SET): `posternctl config name=value`. */
int conf_edit_file(const char *path, const char *name, const char *value);

/* Splits a list value like conf_get_list does (exported for table and restriction parsing). */
char **conf_split_list(const char *value);

/* entries with every "/file/name" entry replaced by the words of that file (list-file.c); on
 * failure *ret_reason (caller frees) names the file and the problem. */
int conf_list_expand_files(char **entries, char ***ret, char **ret_reason);
/* Whether name is a list parameter whose "/file/name" entries are read as files. */
bool conf_list_reads_files(const char *name);
