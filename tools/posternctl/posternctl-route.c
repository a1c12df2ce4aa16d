/* posternctl-route.c — `posternctl route ADDRESS [SENDER]`: prints each step an address goes
 * through, by running the daemons' own code on it and watching the table lookups it makes
 * (table_trace_set(), common/conf/table.h):
 *
 *   rewrite    postern-smtpd's envelope rewriting (smtpd_rewrite_address(): canonical form,
 *              recipient_/sender_canonical_maps, canonical_maps, masquerading); the sender
 *              only when SENDER is given
 *   RCPT check smtpd_unlisted_check(): what smtpd answers for the rewritten address when
 *              smtpd_reject_unlisted_recipient is on
 *   aliases    virtual_alias_maps expansion (smtpd_virtual_alias() settings, virtual_alias_expand()
 *              with its expanded hook), printed as a tree
 *   routing    for each final address: its address class, relocated_maps, and postern-qmgr's
 *              qmgr_route_transport() (transport_maps, sender_dependent_*_maps, class default)
 *   local      for an address routed to the local transport: postern-local's local_resolve()
 *              (alias_maps, passwd, mailbox_transport & co): where each user's copy goes
 *
 * Every table entry that answered is printed under the step that asked ("texthash:/etc/x: key
 * "a@b" -> "c@d""). A table that fails is printed as such and the exit code is 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/strbuf.h"
#include "conf/conf.h"
#include "local.h"
#include "mail/lmtp-socket.h"
#include "posternctl.h"
#include "qmgr.h"
#include "smtpd.h"

typedef struct Trace {
        StrBuf hits;       /* lines of the lookups since the last flush */
        bool failed;       /* a table failed somewhere */
        /* alias tree: address -> "key\tvalue\0result\0result\0..." of its first expansion */
        char **alias_addr, **alias_line;
        char ***alias_results;
        size_t n_alias;
} Trace;

static void trace_table(const char *spec, const char *key, int r, const char *value, void *userdata) {
        Trace *t = userdata;
        if (r < 0) {
                t->failed = true;
                (void) strbuf_printf(&t->hits, "    %s: lookup of \"%s\" FAILED: %s\n", spec, key, strerror(-r));
        } else
                (void) strbuf_printf(&t->hits, "    %s: key \"%s\" -> \"%s\"\n", spec, key, value);
}

static void flush(Trace *t) {
        if (t->hits.len)
                fputs(t->hits.data, stdout);
        strbuf_reset(&t->hits);
}

static void rewrite_step(const char *what, const char *before, const char *after, void *userdata) {
        if (streq(before, after))
                printf("  %s: %s (unchanged)\n", what, before);
        else
                printf("  %s: %s -> %s\n", what, before, after);
        flush(userdata);
}

/* virtual_alias_expand()'s userdata belongs to smtpd's local domain test: the trace is here. */
static Trace *alias_trace;

static void alias_expanded(const char *address, const char *key, const char *value, char *const *results,
                           size_t n, void *userdata) {
        Trace *t = alias_trace;
        for (size_t i = 0; i < t->n_alias; i++)
                if (strcaseeq(t->alias_addr[i], address))
                        return;
        char **a = reallocarray(t->alias_addr, t->n_alias + 1, sizeof(char *));
        if (a)
                t->alias_addr = a;
        char **l = reallocarray(t->alias_line, t->n_alias + 1, sizeof(char *));
        if (l)
                t->alias_line = l;
        char ***res = reallocarray(t->alias_results, t->n_alias + 1, sizeof(char **));
        if (res)
                t->alias_results = res;
        char **copy = calloc(n + 1, sizeof(char *));
        if (!a || !l || !res || !copy) {
                free(copy);
                return;
        }
        for (size_t i = 0; i < n; i++)
                copy[i] = strdup(results[i]);
        a[t->n_alias] = strdup(address);
        l[t->n_alias] = t->hits.len ? strdup(t->hits.data) : NULL;
        if (!l[t->n_alias])
                (void) asprintf(&l[t->n_alias], "    key \"%s\" -> \"%s\"\n", key, value);
        res[t->n_alias++] = copy;
        strbuf_reset(&t->hits);
}

/* The tree below address, from the expansions recorded (depth guards against loops). */
static void alias_tree(Trace *t, const char *address, unsigned depth) {
        printf("  %*s%s%s\n", (int) depth * 4, "", depth ? "-> " : "", address);
        if (depth > 20)
                return;
        for (size_t i = 0; i < t->n_alias; i++) {
                if (!strcaseeq(t->alias_addr[i], address))
                        continue;
                if (t->alias_line[i])
                        for (char *line = t->alias_line[i], *nl; *line; line = nl + 1) {
                                nl = strchrnul(line, '\n');
                                printf("  %*s    (virtual_alias_maps %.*s)\n", (int) depth * 4, "",
                                       (int) (nl - line) - 4, line + 4);
                                if (!*nl)
                                        break;
                        }
                for (char **r = t->alias_results[i]; *r; r++)
                        if (!strcaseeq(*r, address))
                                alias_tree(t, *r, depth + 1);
                        else
                                printf("  %*s-> %s (itself: delivered as it is)\n", (int) (depth + 1) * 4, "", *r);
                return;
        }
}

static void trace_done(Trace *t) {
        strbuf_done(&t->hits);
        for (size_t i = 0; i < t->n_alias; i++) {
                free(t->alias_addr[i]);
                free(t->alias_line[i]);
                strv_free(t->alias_results[i]);
        }
        free(t->alias_addr);
        free(t->alias_line);
        free(t->alias_results);
}

/* Rewrites one envelope address, printing each step. */
static int rewrite(SmtpdSettings *st, Trace *t, AddrClass cls, const char *what, const char *addr, char **ret) {
        _cleanup_free_ char *out = NULL, *warning = NULL;
        printf("%s <%s>\n", what, addr);
        int r = smtpd_rewrite_address(st, cls, addr, &out, &warning);
        flush(t);
        if (warning)
                printf("  warning: %s\n", warning);
        if (r < 0) {
                printf("  error: rewriting failed (%s): mail would get 451 4.3.0\n", strerror(-r));
                return r;
        }
        *ret = strdup(r > 0 ? out : addr);
        return *ret ? 0 : -ENOMEM;
}

static int rcpt_check(SmtpdSettings *st, Trace *t, const char *addr) {
        _cleanup_address_free_ Address *a = NULL;
        _cleanup_free_ char *reply = NULL;
        const char *why = NULL;
        if (address_parse(addr, ADDRESS_SMTPUTF8, &a, &why) < 0) {
                printf("  RCPT TO check: <%s> is not a valid address: %s\n", addr, strna(why));
                return -EINVAL;
        }
        int r = smtpd_unlisted_check(st, a, false, &reply);
        if (r < 0)
                return r;
        if (reply) {
                size_t l = strlen(reply);
                while (l && (reply[l - 1] == '\n' || reply[l - 1] == '\r'))
                        reply[--l] = '\0';
        }
        if (!reply)
                printf("  RCPT TO check: known\n");
        else if (reply[0] == '4')
                printf("  RCPT TO check: error (would be deferred: %s)\n", reply);
        else
                printf("  RCPT TO check: unknown (would be rejected: %s)%s\n", reply,
                       st->reject_unlisted_recipient ? "" : " -- but smtpd_reject_unlisted_recipient = no");
        flush(t);
        return reply && reply[0] == '4' ? -EIO : 0;
}

/* The socket an lmtp:unix: route reaches (Postfix's relative form under lmtp_dir). */
static void print_lmtp_socket(const char *indent, const char *transport, const char *nexthop, const char *lmtp_dir) {
        const char *unix_path = streq(transport, "lmtp") ? startswith(nexthop, "unix:") : NULL;
        if (!unix_path)
                return;
        char path[108];
        if (lmtp_socket_path(unix_path, lmtp_dir, path, sizeof(path)) < 0)
                printf("%ssocket: bad LMTP socket path (postern_lmtp_socket_directory = %s)\n", indent, lmtp_dir);
        else
                printf("%ssocket: %s%s\n", indent, path, unix_path[0] == '/' ? "" :
                       " (relative: under postern_lmtp_socket_directory)");
}

/* postern-local's resolution of a recipient of the local transport: one line per target. */
static int local_step(const LocalSettings *ls, const char *lmtp_dir, Trace *t, const char *sender, const char *addr) {
        DeliveredSet none = {};
        Target **targets = NULL;
        size_t n = 0;
        int r = local_resolve(ls, addr, sender, &none, &targets, &n);
        if (r < 0)
                return r;
        printf("  local delivery (postern-local):\n");
        flush(t);
        for (size_t i = 0; i < n; i++) {
                const Target *x = targets[i];
                printf("    %s: ", x->address);
                switch (x->kind) {
                case TARGET_PASS: {
                        const char *colon = strchr(x->via, ':');
                        printf("passed to transport %.*s, next hop %s (mailbox_transport or fallback_transport)\n",
                               (int) (colon - x->via), x->via, isempty(colon + 1) ? ls->myhostname : colon + 1);
                        _cleanup_free_ char *tn = strndup(x->via, (size_t) (colon - x->via));
                        if (tn)
                                print_lmtp_socket("      ", tn, colon + 1, lmtp_dir);
                        break;
                }
                case TARGET_MBOX:
                case TARGET_MAILDIR:
                case TARGET_COMMAND:
                case TARGET_FILE:
                        printf("%s %s (%s %s)\n", x->kind == TARGET_MBOX ? "mbox" : x->kind == TARGET_MAILDIR ? "Maildir" :
                               x->kind == TARGET_COMMAND ? "command" : "file", x->path,
                               x->kind == TARGET_MBOX || x->kind == TARGET_MAILDIR ? "user" : "as", x->user);
                        break;
                case TARGET_FORWARD:
                        printf("forwarded (a new message)\n");
                        break;
                case TARGET_RESULT:
                        printf("%s %s\n", x->dsn, strna(x->diag));
                        if (x->dsn[0] == '4')
                                r = -EIO;
                        break;
                default:
                        printf("delivered by postern-local\n");
                }
                target_free(targets[i]);
        }
        free(targets);
        flush(t);
        return r;
}

/* Class, relocation and transport of one final recipient. */
static int route_one(QmgrSettings *qs, const LocalSettings *ls, const char *lmtp_dir, Trace *t, const char *sender,
                     const char *addr) {
        AddressClass c;
        _cleanup_free_ char *warning = NULL, *transport = NULL, *nexthop = NULL;
        const char *domain = qmgr_address_domain(addr);

        printf("%s\n", addr);
        int r = addr_classes_classify(&qs->classes, domain, &c, &warning);
        if (r < 0) {
                printf("  class: error: the domain lists could not be read (%s)\n", strerror(-r));
                flush(t);
                return r;
        }
        if (!domain)
                printf("  class: local (no domain)\n");
        else if (c == ADDR_CLASS_DEFAULT)
                printf("  class: default (%s is in no class list)\n", domain);
        else if (c == ADDR_CLASS_LOCAL && domain[0] == '[')
                printf("  class: local (%s is an address of this host: inet_interfaces, proxy_interfaces)\n", domain);
        else
                printf("  class: %s (%s lists %s)\n", addr_class_name(c), addr_class_param(c), domain);
        if (warning)
                printf("  warning: %s\n", warning);
        flush(t);

        QueueMessage m = { .sender = (char *) strempty(sender) };
        r = qmgr_route_transport(qs, &m, addr, &transport, &nexthop);
        if (r < 0) {
                printf("  route: error: a table lookup failed: mail would be deferred (4.3.0)\n");
                flush(t);
                return r;
        }
        if (streq(transport, "error") && startswith(nexthop, "5.1.6"))
                printf("  relocated_maps: %s\n", nexthop);
        else if (qs->relocated_maps)
                printf("  relocated_maps: no entry\n");
        printf("  transport: %s, next hop: %s\n", transport, nexthop);
        print_lmtp_socket("  ", transport, nexthop, lmtp_dir);
        if (t->hits.len) {
                printf("  decided by:\n");
                flush(t);
        } else {
                const char *param = c == ADDR_CLASS_LOCAL ? "local_transport" :
                                    c == ADDR_CLASS_VIRTUAL_MAILBOX ? "virtual_transport" :
                                    c == ADDR_CLASS_RELAY ? "relay_transport" :
                                    c == ADDR_CLASS_VIRTUAL_ALIAS ? NULL : "default_transport";
                printf("  decided by: %s\n", param ? param : "the virtual alias class (no mailbox)");
        }
        if (ls && streq(transport, "local"))
                return local_step(ls, lmtp_dir, t, sender, addr);
        return 0;
}

int verb_route(int argc, char *argv[]) {
        if (argc < 2 || argc > 3 || streq(argv[1], "-h") || streq(argv[1], "--help")) {
                printf("Usage: posternctl route ADDRESS [SENDER]\n"
                       "Shows how Postern rewrites, expands and routes ADDRESS (and SENDER, when given),\n"
                       "with the table entry that decided each step.\n");
                return argc == 2 ? 0 : 2;
        }
        _cleanup_conf_free_ Conf *c = NULL;
        if (posternctl_load_main_cf(NULL, &c) < 0)
                return 1;
        int r;
        _cleanup_(smtpd_settings_unrefp) SmtpdSettings *st = NULL;
        QmgrSettings qs = {};
        _cleanup_free_ char *why = NULL;
        if (smtpd_settings_new(c, NULL, &st) < 0 || qmgr_route_settings_load(&qs, c, &why) < 0) {
                fprintf(stderr, "posternctl: cannot load the settings%s%s\n", why ? ": " : "", strempty(why));
                qmgr_route_settings_done(&qs);
                return 1;
        }

        Trace t = { .hits = STRBUF_INIT };
        int ret = 0;
        _cleanup_free_ char *rcpt = NULL, *sender = NULL;
        _cleanup_strv_free_ char **list = NULL;
        _cleanup_free_ char *reason = NULL;

        table_trace_set(trace_table, &t);
        st->rewrite.step = rewrite_step;
        st->rewrite.step_userdata = &t;
        alias_trace = &t;

        if (argc > 2 && rewrite(st, &t, ADDR_CLASS_ENVELOPE_SENDER, "sender", argv[2], &sender) < 0)
                ret = 1;
        if (rewrite(st, &t, ADDR_CLASS_ENVELOPE_RECIPIENT, "recipient", argv[1], &rcpt) < 0) {
                ret = 1;
                goto done;
        }
        if (rcpt_check(st, &t, rcpt) < 0)
                ret = 1;

        printf("virtual alias expansion\n");
        VirtualAlias va = smtpd_virtual_alias(st);
        va.expanded = alias_expanded;
        if (st->virtual_alias.maps_error < 0) {
                printf("  error: virtual_alias_maps could not be opened: mail would get 451 4.3.0\n");
                ret = 1;
                goto done;
        }
        VirtualAliasError e = VIRTUAL_ALIAS_OK;
        r = virtual_alias_expand(&va, rcpt, &list, &e, &reason);
        if (r < 0) {
                flush(&t);
                printf("  error: %s: mail would get %s\n", reason ? reason : strerror(-r),
                       e == VIRTUAL_ALIAS_TABLE ? "451 4.3.0" : "451 4.6.0 Alias expansion error");
                ret = 1;
                goto done;
        }
        if (r == 0)
                printf("  %s (not aliased)\n", rcpt);
        else
                alias_tree(&t, rcpt, 0);
        strbuf_reset(&t.hits);

        /* postern-local's settings (alias_maps, the pass parameters): without them (a table
         * that does not open) the local step is left out, as the daemon would not start. */
        LocalSettings ls = {};
        bool have_local = local_settings_load(c, &ls) >= 0;
        if (!have_local)
                printf("(postern-local's settings do not load: its step is left out)\n");
        for (char **a = list; *a; a++)
                if (route_one(&qs, have_local ? &ls : NULL, strempty(conf_get(c, "postern_lmtp_socket_directory")), &t,
                              sender ? sender : "", *a) < 0)
                        ret = 1;
        if (have_local)
                local_settings_done(&ls);
done:
        if (t.failed)
                ret = 1;
        table_trace_set(NULL, NULL);
        trace_done(&t);
        qmgr_route_settings_done(&qs);
        return ret;
}
