/* posternctl-postfix.h — what Postern makes of a Postfix configuration directory (main.cf and
 * master.cf), item by item: one verdict per main.cf parameter, per master.cf entry and per -o
 * option of an entry. Built by postfix_report_build() from the same loader and checks Postern
 * itself uses (conf_load's messages, the parameter registry, master-cf.c's classification, the
 * table opener); printed by `posternctl check --postfix` and acted on by `posternctl import`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "conf/conf.h"
#include "conf/master-cf.h"

typedef enum PostfixVerdict {
        POSTFIX_SAME,           /* the same meaning as in Postfix */
        POSTFIX_MAPPED,         /* done another way in Postern; detail says how */
        POSTFIX_INFO,           /* no meaning under systemd / accepted and not acted on / a note */
        POSTFIX_LEFT_OUT,       /* a Postfix value that must not carry over (queue_directory, mail_owner) */
        POSTFIX_UNSUPPORTED,    /* read, not acted on: detail says why */
        POSTFIX_UNKNOWN,        /* a name Postern has no parameter for */
        POSTFIX_ERROR,          /* cannot be checked or used on this machine (a table file missing) */
        _POSTFIX_VERDICT_MAX,
} PostfixVerdict;

typedef struct PostfixItem {
        const char *file;       /* "main.cf" or "master.cf" (static) */
        unsigned line;          /* where the parameter or entry starts; 0 when none */
        char *name;             /* parameter, "service/type" of an entry, "service/type -o name" */
        PostfixVerdict verdict;
        char *detail;           /* what Postern does with it, or why not; may be NULL for SAME */
        bool option;            /* a master.cf entry's -o option (not the whole entry) */
        char *setting;          /* a listener's -o option as main.cf's "<fd name>/<name> = <value>" */
} PostfixItem;

typedef struct PostfixReport {
        char *dir;
        PostfixItem *items;     /* main.cf items in file order, then master.cf's */
        size_t n;
        bool have_master_cf;
} PostfixReport;

/* Reads dir/main.cf and dir/master.cf (either may be missing) into *ret. Fails only when dir
 * cannot be read at all or memory runs out; problems of the files are items. */
int postfix_report_build(const char *dir, PostfixReport *ret);
void postfix_report_done(PostfixReport *r);

/* Judges one master.cf entry of m (main.cf c gives the values -o options are judged against, and
 * receives them as "<fd name>/<name>" settings): calls fn for the entry (o NULL), then for each of
 * its -o options that says something of its own (and a maxproc postern-qmgr does not take from
 * master.cf, as an option named "maxproc N" with value NULL). The options of smtp/lmtp transports
 * are judged by smtp's notes; with smtp NULL (plain `posternctl check`, which prints postern-smtp's
 * own messages) they are skipped. fn's negative return ends the walk. */
/* What postern-smtp said when it loaded its master.cf transports (smtp_config_load()). */
typedef struct PostfixSmtpNotes {
        char **warnings, **errors;
        bool failed;            /* its main.cf settings are invalid: nothing was checked */
} PostfixSmtpNotes;
/* Whether e is a transport of postern-smtp (a unix entry running smtp or lmtp). */
bool postfix_master_smtp_transport(const MasterEntry *e);
typedef int (*PostfixMasterFn)(const MasterEntry *e, const MasterOption *o, PostfixVerdict v, const char *detail,
                               void *userdata);
int postfix_master_judge(const MasterEntry *e, Conf *c, const MasterCf *m, const PostfixSmtpNotes *smtp,
                         PostfixMasterFn fn, void *userdata);

/* "same", "mapped", "info", "left-out", "unsupported", "unknown", "error". */
const char *postfix_verdict_name(PostfixVerdict v);
/* "same meaning", "mapped", "informational", ...: the group titles of the text report. */
const char *postfix_verdict_title(PostfixVerdict v);
/* Whether `posternctl import` comments the item out. */
bool postfix_verdict_dropped(PostfixVerdict v);
