/* verify-probe.h — how postern-verify sends a probe: a message queued for postern-qmgr
 * (verify-probe.c). */
#pragma once

#include <stddef.h>

#include "conf/conf.h"
#include "verify.h"

typedef struct VerifyProber VerifyProber;

/* Reads the probe sender (address_verify_sender, _sender_ttl, myorigin), the queue directory
 * and qmgr's socket from c. Logs its own errors. */
int verify_prober_new(Conf *c, VerifyProber **ret);
VerifyProber *verify_prober_free(VerifyProber *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(VerifyProber *, verify_prober_free);
/* Queues a probe of address (one durable commit) and wakes postern-qmgr. 0 on success with
 * the probe's queue id in ret_queue_id; <0 when nothing was queued (*ret_reason says why,
 * allocated). The result comes back later as request=update with queue_id=. */
int verify_probe_start(VerifyProber *p, const char *address, char ret_queue_id[QUEUE_ID_MAX], char **ret_reason);
/* How many probes in the queue were not tried yet (address_verify_pending_request_limit). */
int verify_probes_untried(VerifyProber *p, size_t *ret);
