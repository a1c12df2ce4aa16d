/* verify-probe.h — how postern-verify probes one address (verify-probe.c). */
#pragma once

#include <systemd/sd-event.h>

#include "conf/conf.h"
#include "verify.h"

typedef struct VerifyProber VerifyProber;
/* The probe's outcome; reason is borrowed for the call. */
typedef void (*VerifyProbeDone)(const char *address, VerifyStatus status, const char *reason, void *userdata);

/* Loads routing as postern-qmgr does, with the address_verify_* overrides applied to c (c is
 * changed: relayhost, transport_maps, ... take the override values). Logs its own errors. */
int verify_prober_new(sd_event *e, Conf *c, VerifyProber **ret);
VerifyProber *verify_prober_free(VerifyProber *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(VerifyProber *, verify_prober_free);
/* Starts a probe of address. 1: decided at once by routing (*ret_status, *ret_reason allocated;
 * done is not called); 0: a probe is on its way, done(address, ...) follows once; <0: nothing
 * started. */
int verify_probe_start(VerifyProber *p, const char *address, VerifyProbeDone done, void *userdata,
                       VerifyStatus *ret_status, char **ret_reason);
/* Probes in flight. */
size_t verify_probes_pending(const VerifyProber *p);
