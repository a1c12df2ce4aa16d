/* generator-units.h — the text of the units postern-generator writes, from the listeners
 * common/conf/master-inet.h classified: pure functions, no file system (postern-generator.c
 * writes what they return). Every text starts with a comment naming the master.cf it came
 * from, and "%" in that path is escaped as systemd specifiers require. */
#pragma once

#include "basic/strbuf.h"
#include "conf/master-inet.h"

/* The drop-in file name, in <unit>.d/, for every drop-in the generator writes. It sorts before
 * an admin's override.conf (systemctl edit), so the admin's settings win. */
#define GENERATOR_DROPIN "10-master-cf.conf"

/* Appends text to b as a unit file value: "%" doubled so that systemd reads no specifier. */
int generator_put_escaped(StrBuf *b, const char *text);

/* A socket unit of its own (MASTER_INET_SOCKET) for l, read from source. */
int generator_socket_unit(const MasterInet *l, const char *source, char **ret);
/* A drop-in for a shipped socket (MASTER_INET_SHIPPED) whose addresses master.cf or
 * inet_interfaces narrowed; *ret = NULL when the shipped unit is right as it is. */
int generator_socket_dropin(const MasterInet *l, const char *source, char **ret);
/* The drop-in for postern-smtpd.service that adds the sockets of their own to Sockets=, Wants=
 * and After=; *ret = NULL when there are none. */
int generator_service_dropin(const MasterInetPlan *p, const char *source, char **ret);
