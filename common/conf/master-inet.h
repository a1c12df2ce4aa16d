/* master-inet.h — what becomes of master.cf's listeners (inet smtpd entries and their kin) under
 * systemd: one classification shared by postern-generator (which writes the socket units),
 * conf.c (which turns an entry's -o options into "<fd name>/<name>" listener settings),
 * postern-smtpd (which takes the sockets by those fd names) and `posternctl check` (which says
 * why an entry is skipped). Pure: it reads /etc/services (getservbyname) and nothing else.
 *
 *   MasterInetPlan p = {};
 *   master_inet_plan(&master, interfaces, "all", &p);   // interfaces NULL: no listen addresses
 *   for (size_t i = 0; i < p.n; i++) ... p.v[i].fdname, p.v[i].unit, p.v[i].listen, p.v[i].note
 *   master_inet_plan_done(&p);
 *
 * An inet entry whose command is smtpd becomes a listener. Port 25 (smtp), 587 (submission) and
 * 465 with -o smtpd_tls_wrappermode=yes (smtps, submissions) map onto the shipped socket units
 * (fd names smtp, submission, submissions; the first such entry each); any other becomes
 * postern-smtpd-<fd name>.socket, whose fd name is the entry's service with ":" as "-", "[" and
 * "]" dropped and other characters outside [A-Za-z0-9_.-] as "_" ("127.0.0.1:10025" →
 * "127.0.0.1-10025"), with "-<line>" appended if that name is taken or reserved (submit). A
 * postscreen entry on port 25 maps onto the smtp socket with the options of the "smtpd pass"
 * entry: postern-smtpd runs postscreen's screening there itself (conf.c sets
 * smtp/postern_postscreen_enable, and the entry's own -o postscreen_* options become settings of
 * that listener; the note says so), and the PROXY protocol postscreen would have read there
 * becomes smtpd's (master_inet_postscreen_proxy). Everything else that listens
 * (other postscreen entries, pass entries nothing uses, unix-domain smtpd, qmqpd, host names that
 * would need DNS, unknown service names) is MASTER_INET_SKIP with the reason in note. Built-in
 * entries (pickup fifo, postlog, ...) and unknown commands are not part of the plan. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "master-cf.h"

typedef enum MasterInetMap {
        MASTER_INET_SKIP,       /* cannot be expressed: note says why */
        MASTER_INET_SHIPPED,    /* one of the shipped sockets (fd name smtp, submission, submissions) */
        MASTER_INET_SOCKET,     /* a socket unit of its own, postern-smtpd-<fdname>.socket */
        MASTER_INET_USED,       /* an "smtpd pass" entry whose options a postscreen listener takes */
} MasterInetMap;

typedef struct MasterInet {
        const MasterEntry *entry;       /* borrowed from the MasterCf */
        const MasterEntry *options;     /* whose -o options apply (entry, or the pass entry) */
        MasterInetMap map;
        char *fdname;                   /* SHIPPED, SOCKET */
        char *unit;                     /* SHIPPED, SOCKET: the socket unit's name */
        char *host;                     /* numeric address or "localhost"; NULL: inet_interfaces */
        unsigned port;
        char **listen;                  /* ListenStream= values; NULL when not asked for */
        bool narrowed;                  /* listen is not just the port on every address */
        char *note;                     /* SKIP: why; postscreen: what happens instead */
} MasterInet;

typedef struct MasterInetPlan {
        MasterInet *v;
        size_t n;
} MasterInetPlan;

/* Classifies m's listeners. interfaces (inet_interfaces, split; NULL: listen addresses are not
 * computed) and protocols (inet_protocols) give the listen addresses of entries without a host.
 * Returns 0 or -ENOMEM. */
int master_inet_plan(const MasterCf *m, char *const *interfaces, const char *protocols, MasterInetPlan *ret);
void master_inet_plan_done(MasterInetPlan *p);
/* Whether name is one of master_inet_postscreen_proxy's postscreen names. */
bool master_inet_postscreen_proxy_option(const char *name);
/* The listener (SHIPPED or SOCKET) with FileDescriptorName= fdname, or NULL. */
const MasterInet *master_inet_find(const MasterInetPlan *p, const char *fdname);
/* Whether fdname is the name of a listener of its own (MASTER_INET_SOCKET) in
 * config_dir/master.cf: postern-smtpd takes such sockets besides its shipped ones. */
bool master_inet_socket_known(const char *config_dir, const char *fdname);
/* The port a master.cf service port field names: digits, or a name from /etc/services (tcp), or
 * smtp/submission/submissions/smtps when /etc/services lacks them; 0 when unknown. */
unsigned master_inet_port(const char *name);

/* postscreen's PROXY protocol parameters and smtpd's equivalents: a port-25 postscreen that
 * postern-smtpd replaces gives them (its own -o, else main.cf's) to its listener, as
 * "<fd name>/smtpd_upstream_proxy_*" (conf.c); they are postscreen's only options applied. */
extern const char *const master_inet_postscreen_proxy[2][2];
