/* local-expand.c — local(8)'s $name attributes for forward_path and luser_relay: $user (the user
 * name, or the local part without its extension for an unknown user), $home and $shell (the
 * user's; nothing for an unknown user), $recipient, $local and $mailbox (the whole local part),
 * $extension, $domain and $recipient_delimiter (the delimiter found in this address), filled into
 * a template by common/basic/mac-expand.c. */
#include <stdio.h>
#include <string.h>

#include "basic/mac-expand.h"
#include "local-expander.h"

typedef struct LocalExpandAttrs {
        const char *user;
        const char *address;
        const struct passwd *pw;
        char *local;
        const char *domain;
        const char *extension;
        char delimiter[2];
} LocalExpandAttrs;

static const char *attr_lookup(const char *name, void *userdata) {
        const LocalExpandAttrs *a = userdata;
        if (streq(name, "user"))
                return a->user;
        if (streq(name, "home"))
                return a->pw ? a->pw->pw_dir : NULL;
        if (streq(name, "shell"))
                return a->pw ? a->pw->pw_shell : NULL;
        if (streq(name, "recipient"))
                return a->address;
        if (streq(name, "local") || streq(name, "mailbox"))
                return a->local;
        if (streq(name, "domain"))
                return a->domain;
        if (streq(name, "extension"))
                return a->extension;
        if (streq(name, "recipient_delimiter"))
                return a->delimiter[0] ? a->delimiter : NULL;
        return NULL;
}

int local_expand(const LocalSettings *s, const char *template, const char *user, const char *address,
                 const struct passwd *pw, const char *filter, char **ret, unsigned *ret_flags) {
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        LocalExpandAttrs a = { .user = user, .address = address, .pw = pw };
        const char *at = strrchr(address, '@');

        a.local = at ? strndup(address, (size_t) (at - address)) : strdup(address);
        if (!a.local)
                return -ENOMEM;
        a.domain = at ? at + 1 : NULL;
        size_t base = local_base_length(s, a.local);
        if (a.local[base]) {
                a.delimiter[0] = a.local[base];
                a.extension = a.local + base + 1;
        }
        int r = mac_expand(template, attr_lookup, &a, filter, &out, ret_flags);
        free(a.local);
        if (r < 0)
                return r;
        *ret = strbuf_steal(&out);
        return *ret ? 0 : -ENOMEM;
}
