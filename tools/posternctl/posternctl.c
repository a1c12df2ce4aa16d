/* posternctl.c — Postern's administration command: dispatches to one verb per file. */
#include <stdio.h>
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
        printf("Usage: posternctl VERB [ARGS...]\n\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %s\n", verbs[i].help);
        printf("\nposternctl %s. main.cf is read from $POSTERN_CONFIG or %s/main.cf.\n",
               POSTERN_VERSION, POSTERN_SYSCONFDIR);
        return 0;
}

int main(int argc, char *argv[]) {
        log_open("posternctl");
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
