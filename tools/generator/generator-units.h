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

/* unit with "@instance" before its suffix (postern-smtpd.service -> postern-smtpd@NAME.service);
 * a copy of unit when instance is NULL (the default instance). */
int generator_instance_unit(const char *unit, const char *instance, char **ret);
/* The socket unit l gets: its own (MASTER_INET_SOCKET) or, for an instance, also a shipped one's
 * (MASTER_INET_SHIPPED: an instance has no shipped port sockets, so postern-smtpd-<fd
 * name>@NAME.socket); NULL (and 0) when l gets no unit of its own. */
int generator_listener_unit(const MasterInet *l, const char *instance, char **ret);

/* A socket unit of its own for l (generator_listener_unit() names it), read from source; instance
 * NULL for the default instance, else NAME of postern@NAME.target. */
int generator_socket_unit(const MasterInet *l, const char *source, const char *instance, char **ret);
/* A drop-in for a shipped socket (MASTER_INET_SHIPPED) of the default instance whose addresses
 * master.cf or inet_interfaces narrowed; *ret = NULL when the shipped unit is right as it is. */
int generator_socket_dropin(const MasterInet *l, const char *source, char **ret);
/* The drop-in for postern-smtpd.service (postern-smtpd@NAME.service) that adds the sockets of
 * their own to Sockets=, Wants= and After=; *ret = NULL when there are none. */
int generator_service_dropin(const MasterInetPlan *p, const char *source, const char *instance, char **ret);
