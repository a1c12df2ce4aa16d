/* local-pipe.h — pipe(8) transports as postern-local serves them (local-pipe.c); the master.cf
 * attributes themselves are common/conf/master-pipe.h's. */
#pragma once

#include "conf/master-pipe.h"

/* A pipe transport of master.cf as postern-local serves it: its attributes, or why they are
 * wrong (then every delivery to it is deferred with that text). */
typedef struct PipeTransport {
        char *name;                  /* master.cf's service name: "dovecot" */
        PipeSpec spec;
        char *error;                 /* a configuration error, or NULL */
        long long time_limit;        /* <name>_time_limit, else command_time_limit (seconds) */
} PipeTransport;
