/* milter-spec.c — one entry of smtpd_milters / non_smtpd_milters, and macro name lists.
 *
 * An entry is "unix:/path", "local:/path" (Postfix's name for the same), "inet:host:port",
 * "inet:[ipv6]:port", or the braced form "{ inet:host:port, connect_timeout=10s,
 * default_action=tempfail, command_timeout=..., content_timeout=..., protocol=6 }" whose
 * settings override the milter_* parameters for that milter. */
#include <ctype.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "milter.h"
#include "conf/conf.h"
#include "conf/params.h"

int milter_default_action_parse(const char *s) {
        static const char *const names[] = { "accept", "reject", "tempfail", "quarantine", "shutdown" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (s && strcasecmp(s, names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

const char *milter_default_action_name(int a) {
        static const char *const names[] = { "accept", "reject", "tempfail", "quarantine", "shutdown" };
        return a >= 0 && (size_t) a < ELEMENTSOF(names) ? names[a] : "unset";
}

void milter_spec_done(MilterSpec *s) {
        free(s->name);
        free(s->path);
        free(s->host);
        *s = (MilterSpec) {};
}

static int parse_address(const char *a, MilterSpec *s, char **ret_reason) {
        const char *rest;
        if ((rest = startswith(a, "unix:")) || (rest = startswith(a, "local:"))) {
                if (*rest != '/') {
                        reason_printf(ret_reason, "milter \"%s\": the socket path must be absolute", a);
                        return -EINVAL;
                }
                s->unix_socket = true;
                s->path = strdup(rest);
                return s->path ? 0 : -ENOMEM;
        }
        if (!(rest = startswith(a, "inet:"))) {
                reason_printf(ret_reason, "milter \"%s\": expected unix:/path, local:/path or inet:host:port", a);
                return -EINVAL;
        }
        const char *colon = strrchr(rest, ':');
        if (!colon || colon == rest) {
                reason_printf(ret_reason, "milter \"%s\": no port", a);
                return -EINVAL;
        }
        const char *h = rest, *he = colon;
        if (*h == '[') {
                if (he[-1] != ']' || he - h < 3) {
                        reason_printf(ret_reason, "milter \"%s\": unbalanced [ ] around the host", a);
                        return -EINVAL;
                }
                h++;
                he--;
        } else if (memchr(h, ':', (size_t) (he - h))) {
                reason_printf(ret_reason, "milter \"%s\": an IPv6 address must be written [addr]:port", a);
                return -EINVAL;
        }
        char *end;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (!isdigit((unsigned char) colon[1]) || *end || errno || port == 0 || port > 65535) {
                reason_printf(ret_reason, "milter \"%s\": invalid port \"%s\"", a, colon + 1);
                return -EINVAL;
        }
        s->port = (uint16_t) port;
        s->host = strndup(h, (size_t) (he - h));
        return s->host ? 0 : -ENOMEM;
}

static int parse_setting(const char *entry, char *w, MilterSpec *s, char **ret_reason) {
        char *eq = strchr(w, '=');
        if (!eq) {
                reason_printf(ret_reason, "milter \"%s\": \"%s\" is not name=value", entry, w);
                return -EINVAL;
        }
        *eq = '\0';
        const char *v = eq + 1;
        /* spaces around "=" are allowed: "connect_timeout = 10s" */
        for (char *e = eq - 1; e >= w && isspace((unsigned char) *e); e--)
                *e = '\0';
        while (isspace((unsigned char) *v))
                v++;
        long long *t = streq(w, "connect_timeout") ? &s->connect_timeout :
                       streq(w, "command_timeout") ? &s->command_timeout :
                       streq(w, "content_timeout") ? &s->content_timeout : NULL;
        if (t) {
                if (param_parse_time(v, 's', t) < 0 || *t <= 0) {
                        reason_printf(ret_reason, "milter \"%s\": invalid %s \"%s\"", entry, w, v);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(w, "default_action")) {
                s->default_action = milter_default_action_parse(v);
                if (s->default_action < 0) {
                        reason_printf(ret_reason, "milter \"%s\": invalid default_action \"%s\" (accept, reject, "
                                      "tempfail, quarantine or shutdown)", entry, v);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(w, "protocol")) {
                if (strlen(v) != 1 || v[0] < '2' || v[0] > '6') {
                        reason_printf(ret_reason, "milter \"%s\": invalid protocol \"%s\" (2 to 6)", entry, v);
                        return -EINVAL;
                }
                s->protocol = v[0] - '0';
                return 0;
        }
        reason_printf(ret_reason, "milter \"%s\": unknown setting \"%s\"", entry, w);
        return -EINVAL;
}

int milter_spec_parse(const char *entry, MilterSpec *ret, char **ret_reason) {
        MilterSpec s = { .connect_timeout = -1, .command_timeout = -1, .content_timeout = -1,
                         .default_action = MILTER_DEFAULT_UNSET };
        _cleanup_free_ char *copy = NULL;
        int r;

        while (isspace((unsigned char) *entry))
                entry++;
        copy = strdup(entry);
        if (!copy)
                return -ENOMEM;
        char *p = copy;
        size_t n = strlen(p);
        while (n && isspace((unsigned char) p[n - 1]))
                p[--n] = '\0';
        if (*p == '{') {
                if (n < 2 || p[n - 1] != '}') {
                        reason_printf(ret_reason, "milter \"%s\": missing closing }", entry);
                        return -EINVAL;
                }
                p[n - 1] = '\0';
                p++;
        }
        /* the address, then settings separated by commas */
        char *save = NULL;
        size_t i = 0;
        for (char *w = strtok_r(p, ",", &save); w; w = strtok_r(NULL, ",", &save), i++) {
                while (isspace((unsigned char) *w))
                        w++;
                size_t wl = strlen(w);
                while (wl && isspace((unsigned char) w[wl - 1]))
                        w[--wl] = '\0';
                if (!*w)
                        continue;
                r = i == 0 ? parse_address(w, &s, ret_reason) : parse_setting(entry, w, &s, ret_reason);
                if (r < 0) {
                        milter_spec_done(&s);
                        return r;
                }
        }
        if (!s.path && !s.host) {
                reason_printf(ret_reason, "milter \"%s\": no address", entry);
                milter_spec_done(&s);
                return -EINVAL;
        }
        size_t l = strlen(s.unix_socket ? s.path : s.host) + 16;
        s.name = malloc(l);
        if (s.name && s.unix_socket)
                snprintf(s.name, l, "unix:%s", s.path);
        else if (s.name)
                snprintf(s.name, l, strchr(s.host, ':') ? "inet:[%s]:%u" : "inet:%s:%u", s.host, s.port);
        if (!s.name) {
                milter_spec_done(&s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

char **milter_macro_list(const char *value) {
        char **l = calloc(1, sizeof(char *));
        if (!l)
                return NULL;
        for (const char *p = value ? value : ""; *p; ) {
                size_t skip = strspn(p, " \t\r\n,"), n;
                p += skip;
                if (!*p)
                        break;
                n = strcspn(p, " \t\r\n,");
                char *w = strndup(p, n);
                if (!w || strv_consume(&l, w) < 0)
                        return strv_free(l);
                p += n;
        }
        return l;
}
