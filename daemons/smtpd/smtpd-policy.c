/* smtpd-policy.c — placeholder, replaced below. */
#include "smtpd-check.h"
int smtpd_policy_settings_load(Conf *c, const char *listener, SmtpdSettings *s) { return 0; }
int smtpd_check_policy_start(Session *s, const char *service, const char *protocol_state,
                             const char *sender, const char *recipient,
                             SmtpdCheckDone done, void *userdata, SmtpdCheck **ret) { return -EOPNOTSUPP; }
