/* master-inet.c — master.cf listeners classified for systemd socket units. See master-inet.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master-inet.h"
#include "../basic/strbuf.h"

/* The shipped socket units a master.cf entry may stand for (units/). */
static const struct {
        const char *fdname, *unit;
        unsigned port;
        bool wrappermode;       /* only an entry with -o smtpd_tls_wrappermode=yes */
} shipped[] = {
        { "smtp", "postern-smtpd.socket", 25, false },
        { "submission", "postern-submission.socket", 587, false },
        { "submissions", "postern-submissions.socket", 465, true },
};

/* fd names of postern-smtpd a derived name must not take. */
static const char *const reserved[] = { "smtp", "submission", "submissions", "submit" };

unsigned master_inet_port(const char *name) {
        static const struct { const char *name; unsigned port; } known[] = {
                { "smtp", 25 }, { "submission", 587 }, { "submissions", 465 }, { "smtps", 465 },
        };
        if (isempty(name))
                return 0;
        if (strspn(name, "0123456789") == strlen(name)) {
                unsigned long v = strtoul(name, NULL, 10);
                return strlen(name) <= 5 && v >= 1 && v <= 65535 ? (unsigned) v : 0;
        }
        struct servent *s = getservbyname(name, "tcp");
        if (s)
                return ntohs((uint16_t) s->s_port);
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (streq(name, known[i].name))
                        return known[i].port;
        return 0;
}

static void inet_done(MasterInet *l) {
        free(l->fdname);
        free(l->unit);
        free(l->host);
        strv_free(l->listen);
        free(l->note);
}

void master_inet_plan_done(MasterInetPlan *p) {
        for (size_t i = 0; i < p->n; i++)
                inet_done(&p->v[i]);
        free(p->v);
        *p = (MasterInetPlan) {};
}

static bool host_numeric(const char *h) {
        unsigned char buf[16];
        return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Splits "[host]:port", "host:port" or "port"; *ret_host NULL when there is none. Returns a
 * reason (static) when the host cannot be used without DNS. */
static int split_service(const char *service, char **ret_host, char **ret_port) {
        const char *colon = strrchr(service, ':');
        *ret_host = NULL;
        *ret_port = strdup(colon ? colon + 1 : service);
        if (!*ret_port)
                return -ENOMEM;
        if (!colon)
                return 0;
        const char *h = service;
        size_t n = (size_t) (colon - service);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']')
                h++, n -= 2;
        *ret_host = strndup(h, n);
        return *ret_host ? 0 : -ENOMEM;
}

/* The fd name for a listener of its own: the service with ":" as "-", brackets dropped, other
 * characters outside [A-Za-z0-9_.-] as "_"; "-<line>" appended when taken or reserved. */
static char *derive_fdname(const MasterInetPlan *p, const MasterEntry *e) {
        _cleanup_(strbuf_donep) StrBuf b = {};
        for (const char *s = e->service; *s; s++) {
                char c = *s;
                if (c == '[' || c == ']')
                        continue;
                if (c == ':')
                        c = '-';
                else if (!isalnum((unsigned char) c) && c != '_' && c != '-' && c != '.')
                        c = '_';
                if (strbuf_putc(&b, c) < 0)
                        return NULL;
        }
        bool taken = b.len == 0 || b.len > 200;
        for (size_t i = 0; !taken && i < ELEMENTSOF(reserved); i++)
                taken = streq(b.data, reserved[i]);
        for (size_t i = 0; !taken && i < p->n; i++)
                taken = p->v[i].fdname && streq(p->v[i].fdname, b.data);
        if (taken && strbuf_printf(&b, "%s%u", b.len ? "-" : "line", e->line) < 0)
                return NULL;
        return strbuf_steal(&b);
}

/* Appends one ListenStream= value: the port alone (addr NULL), "a.b.c.d:port" or "[v6]:port". */
static int push(char ***v, size_t *n, const char *addr, unsigned port) {
        char *s = NULL;
        int k = !addr ? asprintf(&s, "%u", port)
                : strchr(addr, ':') ? asprintf(&s, "[%s]:%u", addr, port) : asprintf(&s, "%s:%u", addr, port);
        if (k < 0)
                return -ENOMEM;
        char **w = realloc(*v, (*n + 2) * sizeof(char *));
        if (!w) {
                free(s);
                return -ENOMEM;
        }
        w[(*n)++] = s;
        w[*n] = NULL;
        *v = w;
        return 0;
}

/* One address (numeric, or localhost/loopback-only) as ListenStream= values; a reason when it
 * is a name that would need DNS. */
static int listen_add(char ***v, size_t *n, const char *addr, unsigned port, const char *protocols,
                      const char **ret_why) {
        bool v4 = !protocols || strstr(protocols, "all") || strstr(protocols, "ipv4");
        bool v6 = !protocols || strstr(protocols, "all") || strstr(protocols, "ipv6");
        unsigned char buf[16];
        int r = 0;
        if (streq(addr, "localhost") || streq(addr, "loopback-only")) {
                if (v4)
                        r = push(v, n, "127.0.0.1", port);
                if (r >= 0 && v6)
                        r = push(v, n, "::1", port);
        } else if (inet_pton(AF_INET, addr, buf) == 1 || inet_pton(AF_INET6, addr, buf) == 1)
                r = push(v, n, addr, port);
        else
                *ret_why = "the generator does not resolve host names (no network at boot); use the address";
        return r;
}

/* listen for l: its own host, else every inet_interfaces address, else the port on all. */
static int plan_listen(MasterInet *l, char *const *interfaces, const char *protocols, StrBuf *why) {
        char **v = NULL;
        size_t n = 0;
        int r = 0;
        const char *bad = NULL;
        if (l->host) {
                r = listen_add(&v, &n, l->host, l->port, protocols, &bad);
                if (bad)
                        r = strbuf_printf(why, "host \"%s\": %s", l->host, bad);
        } else {
                bool all = !interfaces || !interfaces[0];
                for (char *const *i = interfaces; i && *i; i++)
                        all = all || streq(*i, "all");
                if (all) {
                        bool only4 = protocols && !strstr(protocols, "all") && !strstr(protocols, "ipv6");
                        r = push(&v, &n, only4 ? "0.0.0.0" : NULL, l->port);
                } else
                        for (char *const *i = interfaces; r >= 0 && *i; i++) {
                                bad = NULL;
                                r = listen_add(&v, &n, *i, l->port, protocols, &bad);
                                if (bad && r >= 0)
                                        r = strbuf_printf(why, "%sinet_interfaces \"%s\" left out: %s",
                                                          why->len ? "; " : "", *i, bad);
                        }
        }
        /* anything but the bare port on every address needs the shipped unit's ListenStream= replaced */
        l->narrowed = !(v && v[0] && !v[1] && strspn(v[0], "0123456789") == strlen(v[0]));
        if (r < 0) {
                strv_free(v);
                return r;
        }
        l->listen = v;
        return 0;
}

static bool option_yes(const MasterEntry *e, const char *name) {
        const char *v = master_entry_option(e, name);
        return v && (streq(v, "yes") || streq(v, "true") || streq(v, "1"));
}

static const MasterEntry *pass_entry(const MasterCf *m) {
        for (size_t i = 0; i < m->n; i++)
                if (streq(m->entries[i].type, "pass") && streq(m->entries[i].service, "smtpd") &&
                    streq(m->entries[i].command, "smtpd"))
                        return &m->entries[i];
        return NULL;
}

const char *const master_inet_postscreen_proxy[2][2] = {
        { "postscreen_upstream_proxy_protocol", "smtpd_upstream_proxy_protocol" },
        { "postscreen_upstream_proxy_timeout", "smtpd_upstream_proxy_timeout" },
};

bool master_inet_postscreen_proxy_option(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(master_inet_postscreen_proxy); i++)
                if (streq(name, master_inet_postscreen_proxy[i][0]))
                        return true;
        return false;
}

/* Classifies one listener entry into l (entry and options already set). */
static int plan_entry(const MasterCf *m, MasterInetPlan *p, MasterInet *l, StrBuf *why) {
        const MasterEntry *e = l->entry;
        bool smtpd = streq(e->command, "smtpd"), postscreen = streq(e->command, "postscreen");
        if (streq(e->type, "pass"))
                return strbuf_printf(why, "%s entries take connections from a postscreen process, which Postern does "
                                     "not have (postern-smtpd screens and answers on its ports itself)", e->type);
        if (!streq(e->type, "inet"))
                return strbuf_printf(why, "%s listeners (%s) are not supported; only inet entries become socket units",
                                     e->type, e->command);
        if (!smtpd && !postscreen)
                return strbuf_printf(why, "command \"%s\" on inet is not part of Postern", e->command);

        _cleanup_free_ char *port = NULL;
        int r = split_service(e->service, &l->host, &port);
        if (r < 0)
                return r;
        l->port = master_inet_port(port);
        if (!l->port)
                return strbuf_printf(why, "port \"%s\" is neither a number nor a tcp service in /etc/services", port);
        if (l->host && !host_numeric(l->host) && !streq(l->host, "localhost"))
                return strbuf_printf(why, "host \"%s\": the generator does not resolve host names (no network at "
                                     "boot); use the address", l->host);

        for (size_t i = 0; i < ELEMENTSOF(shipped); i++) {
                if (shipped[i].port != l->port || master_inet_find(p, shipped[i].fdname))
                        continue;
                if (postscreen && !streq(shipped[i].fdname, "smtp"))
                        continue;
                if (shipped[i].wrappermode && !option_yes(l->options, "smtpd_tls_wrappermode"))
                        continue;
                l->map = MASTER_INET_SHIPPED;
                l->fdname = strdup(shipped[i].fdname);
                l->unit = strdup(shipped[i].unit);
                break;
        }
        if (postscreen && l->map != MASTER_INET_SHIPPED)
                return strbuf_printf(why, "postscreen's screening runs only inside postern-smtpd's port-25 "
                                     "listener (postern-smtpd.socket); a postscreen on another port is not replaced");
        if (postscreen) {
                const MasterEntry *pass = pass_entry(m);
                l->options = pass;
                r = pass ? asprintf(&l->note, "postscreen's screening runs inside postern-smtpd on this port "
                                    "(smtp/postern_postscreen_enable = yes), with the -o options of the smtpd pass "
                                    "entry at line %u", pass->line)
                         : asprintf(&l->note, "postscreen's screening runs inside postern-smtpd on this port "
                                    "(smtp/postern_postscreen_enable = yes)");
                if (r < 0)
                        return -ENOMEM;
                _cleanup_(strbuf_donep) StrBuf applied = {};
                for (size_t i = 0; i < e->n_options; i++) {
                        const char *name = e->options[i].name;
                        int k = master_inet_postscreen_proxy_option(name) ?
                                strbuf_printf(&applied, "; -o %s applies as smtpd_%s", name, name + strlen("postscreen_")) :
                                startswith(name, "postscreen_") ?
                                strbuf_printf(&applied, "; -o %s applies to the smtp listener", name) :
                                strbuf_printf(why, "%s-o %s (postscreen's own)", why->len ? ", " : "not applied: ", name);
                        if (k < 0)
                                return -ENOMEM;
                }
                if (applied.len) {
                        char *n = NULL;
                        if (asprintf(&n, "%s%s", l->note, applied.data) < 0)
                                return -ENOMEM;
                        free(l->note);
                        l->note = n;
                }
                if (why->len) {
                        char *n = NULL;
                        if (asprintf(&n, "%s; %s", l->note, why->data) < 0)
                                return -ENOMEM;
                        free(l->note);
                        l->note = n;
                        strbuf_reset(why);
                }
        }
        if (l->map != MASTER_INET_SHIPPED) {
                l->map = MASTER_INET_SOCKET;
                l->fdname = derive_fdname(p, e);
                if (l->fdname && asprintf(&l->unit, "postern-smtpd-%s.socket", l->fdname) < 0)
                        l->unit = NULL;
        }
        return l->fdname && l->unit ? 0 : -ENOMEM;
}

int master_inet_plan(const MasterCf *m, char *const *interfaces, const char *protocols, MasterInetPlan *ret) {
        MasterInetPlan p = {};
        int r = 0;
        p.v = calloc(m->n + 1, sizeof(MasterInet));
        if (!p.v)
                return -ENOMEM;
        for (size_t i = 0; r >= 0 && i < m->n; i++) {
                const MasterEntry *e = &m->entries[i];
                if (e->kind != MASTER_LISTENER || e->builtin)
                        continue;
                MasterInet *l = &p.v[p.n++];
                *l = (MasterInet) { .entry = e, .options = e };
                _cleanup_(strbuf_donep) StrBuf why = {};
                r = plan_entry(m, &p, l, &why);
                if (r >= 0 && why.len > 0) {
                        l->map = MASTER_INET_SKIP;
                        free(l->fdname), l->fdname = NULL;
                        free(l->unit), l->unit = NULL;
                        l->note = strbuf_steal(&why);
                        r = l->note ? 0 : -ENOMEM;
                }
                if (r >= 0 && l->map != MASTER_INET_SKIP && interfaces) {
                        r = plan_listen(l, interfaces, protocols, &why);
                        if (r >= 0 && why.len > 0) {
                                if (!l->listen || !l->listen[0]) {
                                        l->map = MASTER_INET_SKIP;
                                        free(l->fdname), l->fdname = NULL;
                                        free(l->unit), l->unit = NULL;
                                }
                                free(l->note);
                                l->note = strbuf_steal(&why);
                                r = l->note ? 0 : -ENOMEM;
                        }
                }
        }
        /* a pass entry a postscreen listener uses is not skipped */
        for (size_t i = 0; r >= 0 && i < p.n; i++) {
                if (!streq(p.v[i].entry->type, "pass"))
                        continue;
                for (size_t k = 0; k < p.n; k++)
                        if (p.v[k].map != MASTER_INET_SKIP && p.v[k].options == p.v[i].entry) {
                                p.v[i].map = MASTER_INET_USED;
                                free(p.v[i].note);
                                p.v[i].note = NULL;
                        }
        }
        if (r < 0) {
                master_inet_plan_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

const MasterInet *master_inet_find(const MasterInetPlan *p, const char *fdname) {
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].fdname && streq(p->v[i].fdname, fdname))
                        return &p->v[i];
        return NULL;
}

bool master_inet_socket_known(const char *config_dir, const char *fdname) {
        _cleanup_free_ char *path = NULL, *err = NULL;
        MasterCf m = {};
        MasterInetPlan p = {};
        if (!config_dir || asprintf(&path, "%s/master.cf", config_dir) < 0 || master_cf_load(path, &m, &err) < 0)
                return false;
        bool known = false;
        if (master_inet_plan(&m, NULL, NULL, &p) >= 0) {
                const MasterInet *l = master_inet_find(&p, fdname);
                known = l && l->map == MASTER_INET_SOCKET;
                master_inet_plan_done(&p);
        }
        master_cf_done(&m);
        return known;
}
