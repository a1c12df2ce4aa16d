/* smtpd-check.h — the common head of the asynchronous restriction operations of smtpd-dnsbl.c
 * and smtpd-policy.c, so one smtpd_check_cancel() stops either kind. */
#pragma once

#include "smtpd.h"

struct SmtpdCheck {
        void (*cancel)(SmtpdCheck *op);   /* drops the operation; done() is not called */
};
