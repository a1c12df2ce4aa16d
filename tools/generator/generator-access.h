/* generator-access.h — the drop-ins that let the daemons reach what main.cf names, without an
 * admin's edit of the units (postern-generator writes them as <unit>.d/GENERATOR_ACCESS_DROPIN):
 *   - LoadCredential= on postern-smtpd.service for each TLS certificate or key file (main.cf and
 *     master.cf -o, every listener) that the postern user cannot read, such as Debian's
 *     /etc/ssl/private/ssl-cert-snakeoil.key (common/daemon/credential.h says how smtpd finds it);
 *   - ReadWritePaths= for a queue_directory other than the units' own (every role that writes
 *     the queue), and for virtual_mailbox_base and mail_spool_directory outside what
 *     postern-local.service already may write;
 *   - PrivateNetwork=no, an empty IPAddressDeny= and AF_INET/AF_INET6 on postern-local.service
 *     when one of its tables (alias_maps, virtual_mailbox_maps, virtual_uid_maps, ...) is in a
 *     server reached over the network (table_spec_uses_network(): ldap:// but not ldapi://).
 * Pure apart from the readability check, which the caller passes in (a unit test fakes it). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"

#define GENERATOR_ACCESS_DROPIN "20-access.conf"

typedef struct GeneratorDropin {
        char *unit;     /* "postern-smtpd.service" */
        char *text;     /* the drop-in's content */
} GeneratorDropin;

typedef struct GeneratorDropins {
        GeneratorDropin *v;
        size_t n;
} GeneratorDropins;

/* Fills *ret (empty when the shipped units are right as they are); readable(path, ud) says whether
 * the daemons' user can read path. source names the configuration in the texts' comments. */
int generator_access_dropins(Conf *c, const char *source, bool (*readable)(const char *path, void *ud), void *ud,
                             GeneratorDropins *ret);
void generator_dropins_done(GeneratorDropins *d);
