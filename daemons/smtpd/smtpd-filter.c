/* smtpd-filter.c — content filters as the queueing step sees them (Postfix's cleanup(8) reading
 * content_filter and receive_override_options):
 *
 *   content_filter            the "transport:destination" every message queued through this
 *                             listener gets (messages.filter; postern-qmgr routes every recipient
 *                             there, qmgr-route.c), unless an access(5) or header/body_checks
 *                             FILTER action chose another (commit_apply_actions()). Empty on the
 *                             filter's return listener (master.cf -o content_filter=).
 *   receive_override_options  no_unknown_recipient_checks, no_address_mappings,
 *                             no_header_body_checks, no_milters: flags in the settings that
 *                             smtpd-check.c, smtpd-rewrite.c, smtpd-virtual.c, smtpd-cleanup.c
 *                             and the milter client read.
 *
 * smtpd_filter_settings() runs before the content checks and the rewriting settings load (they
 * read the flags); an unknown option or a malformed filter is an error naming it, so smtpd does
 * not start (or a reload keeps the old settings). smtpd_proxy_filter and smtpd_proxy_options
 * (the before-queue proxy, smtpd-proxy-filter.c) are checked and normalised here too. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"

static const struct {
        const char *name;
        size_t offset;
} override_options[] = {
        { "no_unknown_recipient_checks", offsetof(SmtpdSettings, no_unknown_recipient_checks) },
        { "no_address_mappings", offsetof(SmtpdSettings, no_address_mappings) },
        { "no_header_body_checks", offsetof(SmtpdSettings, no_header_body_checks) },
        { "no_milters", offsetof(SmtpdSettings, no_milters) },
};

int smtpd_receive_override_parse(char *const *values, SmtpdSettings *s, const char **ret_bad) {
        for (char *const *v = values; v && *v; v++) {
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(override_options) && !found; i++)
                        if (strcaseeq(*v, override_options[i].name)) {
                                *(bool *) ((char *) s + override_options[i].offset) = true;
                                found = true;
                        }
                if (!found) {
                        *ret_bad = *v;
                        return -EINVAL;
                }
        }
        return 0;
}

bool smtpd_content_filter_valid(const char *value, const char **ret_why) {
        const char *colon = strchr(value, ':');
        size_t tl = colon ? (size_t) (colon - value) : strlen(value);
        if (tl == 0) {
                *ret_why = "no transport before the \":\" (transport:destination)";
                return false;
        }
        for (size_t i = 0; i < tl; i++)
                if (!isalnum((unsigned char) value[i]) && !strchr("-_.", value[i])) {
                        *ret_why = "the transport is not a master.cf service name (transport:destination)";
                        return false;
                }
        for (const char *p = value; *p; p++)
                if (isspace((unsigned char) *p) || iscntrl((unsigned char) *p)) {
                        *ret_why = "blanks in the value (transport:destination)";
                        return false;
                }
        return true;
}

/* smtpd_proxy_filter as smtpd-proxy-filter.c connects to it: "host:port" and "[host]:port" become
 * "inet:..."; NULL with *ret_why when it is not an endpoint. */
char *smtpd_proxy_service(const char *value, const char **ret_why) {
        char *out = NULL;
        if (startswith(value, "unix:")) {
                if (!value[5]) {
                        *ret_why = "unix: without a path";
                        return NULL;
                }
                return strdup(value);
        }
        const char *rest = startswith(value, "inet:") ? value + 5 : value;
        const char *colon = strrchr(rest, ':');
        if (!colon || colon == rest || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
                *ret_why = "expected host:port, inet:host:port or unix:/path";
                return NULL;
        }
        if (asprintf(&out, "inet:%s", rest) < 0)
                return NULL;
        return out;
}

int smtpd_filter_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        _cleanup_strv_free_ char **options = conf_get_list(c, listener, "receive_override_options");
        _cleanup_strv_free_ char **proxy_options = conf_get_list(c, listener, "smtpd_proxy_options");
        const char *filter = conf_get_listener(c, listener, "content_filter");
        const char *proxy = conf_get_listener(c, listener, "smtpd_proxy_filter");
        const char *bad = NULL, *why = NULL;
        /* errors name the setting as written: "name" or "<listener>/name" */
        const char *l = listener ? listener : "", *sl = listener ? "/" : "";

        if (!options || !proxy_options)
                return log_oom();
        if (smtpd_receive_override_parse(options, s, &bad) < 0)
                return log_error_errno(-EINVAL, "%s%sreceive_override_options: unknown option \"%s\" (no_unknown_"
                                       "recipient_checks, no_address_mappings, no_header_body_checks, no_milters)",
                                       l, sl, bad);
        if (!isempty(filter) && !smtpd_content_filter_valid(filter, &why))
                return log_error_errno(-EINVAL, "%s%scontent_filter = %s: %s", l, sl, filter, why);
        if (!(s->content_filter = strdup(strempty(filter))))
                return log_oom();
        for (char **o = proxy_options; *o; o++) {
                if (!strcaseeq(*o, "speed_adjust"))
                        return log_error_errno(-EINVAL, "%s%ssmtpd_proxy_options: unknown option \"%s\" (speed_adjust)",
                                               l, sl, *o);
                s->proxy_speed_adjust = true;
        }
        if (isempty(proxy))
                s->proxy_filter = strdup("");
        else if (!(s->proxy_filter = smtpd_proxy_service(proxy, &why)) && why)
                return log_error_errno(-EINVAL, "%s%ssmtpd_proxy_filter = %s: %s", l, sl, proxy, why);
        return s->proxy_filter ? 0 : log_oom();
}
