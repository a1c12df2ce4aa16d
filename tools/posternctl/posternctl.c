/* posternctl.c — Postern's administration command: dispatches to one verb per file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log/log.h"
#include "posternctl.h"

static const struct {
        const char *name;
        int (*fn)(int argc, char *argv[]);
        const char *help;
} verbs[] = {
        { "config", verb_config, "config [-n|-d] [name...] [name=value...]  show or edit main.cf, like postconf (config --help)" },
        { "check",  verb_check,  "check                                    validate main.cf, tables and directories" },
        { "check",  verb_check,  "check --postfix DIR [--json]             what Postern does with a Postfix configuration" },
        { "import", verb_import, "import DIR [--to DEST] [--force]         copy a Postfix main.cf/master.cf, commenting out the rest" },
        { "route",  verb_route,  "route ADDRESS [SENDER]                   show how an address is rewritten, expanded, routed" },
        { "verify", verb_verify, "verify [-p] ADDRESS...                   postern-verify's cached result (-p: probe if unknown)" },
        { "tlsrpt", verb_tlsrpt, "tlsrpt send|show [--day YYYY-MM-DD]      mail (show) yesterday's TLSRPT reports (RFC 8460)" },
        { "queue",  verb_queue,  "queue                                    list queued messages (like mailq)" },
        { "show",   verb_show,   "show [-e] [-h] [-b] ID                   show a queued message (like postcat -q)" },
        { "log",    verb_log,    "log ID                                   the journal of one message, every role" },
        { "qshape", verb_qshape, "qshape [-s] [deferred|active|hold|incoming]  queue by domain and age (like qshape)" },
        { "status", verb_status, "status                                   units, queue counts, top deferral reasons" },
        { "flush",  verb_flush,  "flush [DOMAIN]                           retry deferred mail now, all or DOMAIN's (any user)" },
        { "hold",   verb_control, "hold ID...|ALL                           keep messages out of delivery" },
        { "release", verb_control, "release ID...|ALL                        undo hold, deliver now" },
        { "delete", verb_control, "delete ID...|ALL                         remove messages, notify nobody" },
        { "requeue", verb_control, "requeue ID...|ALL                        retry deferred recipients now" },
};

static int help(void) {
        printf("Usage: posternctl [-c DIR | -i NAME] VERB [ARGS...]\n\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %s\n", verbs[i].help);
        printf("\nposternctl %s. main.cf is read from DIR/main.cf (-c DIR), from %s-NAME/main.cf\n"
               "(-i NAME: the instance postern@NAME.target), from $POSTERN_CONFIG, from\n"
               "%s-$POSTERN_INSTANCE/main.cf, or from %s/main.cf.\n",
               POSTERN_VERSION, POSTERN_SYSCONFDIR, POSTERN_SYSCONFDIR, POSTERN_SYSCONFDIR);
        return 0;
}

/* The options before the verb: -c DIR (postconf's and postqueue's) and -i NAME pick the main.cf
 * every verb reads, through the environment that conf_load() and postern-sendmail read. Returns
 * the number of arguments taken, or -1 after saying what is wrong. */
static int global_options(int argc, char *argv[]) {
        int i = 1;
        while (i + 1 < argc && (streq(argv[i], "-c") || streq(argv[i], "-i"))) {
                const char *v = argv[i + 1];
                if (streq(argv[i], "-i")) {
                        if (!conf_instance_name_valid(v)) {
                                fprintf(stderr, "posternctl: -i %s: not an instance name ([A-Za-z0-9_.-], "
                                        "at most 64, not starting with . or -)\n", v);
                                return -1;
                        }
                        unsetenv("POSTERN_CONFIG");
                        setenv("POSTERN_INSTANCE", v, 1);
                } else {
                        _cleanup_free_ char *path = NULL;
                        if (asprintf(&path, "%s/main.cf", v) < 0)
                                return fprintf(stderr, "posternctl: out of memory\n"), -1;
                        setenv("POSTERN_CONFIG", path, 1);
                }
                i += 2;
        }
        return i - 1;
}

int main(int argc, char *argv[]) {
        log_open("posternctl");
        int skip = global_options(argc, argv);
        if (skip < 0)
                return 2;
        argc -= skip;
        argv += skip;
        if (argc < 2)
                return help(), 2;
        if (streq(argv[1], "help") || streq(argv[1], "--help") || streq(argv[1], "-h"))
                return help();
        if (streq(argv[1], "--version"))
                return printf("posternctl %s\n", POSTERN_VERSION), 0;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[1], verbs[i].name))
                        return verbs[i].fn(argc - 1, argv + 1);
        fprintf(stderr, "posternctl: unknown verb \"%s\"; try \"posternctl help\".\n", argv[1]);
        return 2;
}
