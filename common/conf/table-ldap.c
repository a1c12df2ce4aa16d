/* table-ldap.c — ldap:/path/to/file.cf lookup tables (libldap), configured as Postfix's
 * ldap_table(5). Settings (Postfix's names and, except version, defaults):
 *
 *   server_host = ldap://a.example ldap://b.example:3389 ldapi://%2Frun%2Fslapd%2Fldapi ldaps://c
 *                 (several, tried in order: the first that answers serves; a bare host name or
 *                 host:port means ldap://; default localhost)
 *   server_port = 389            (for bare host names)
 *   search_base = dc=example,dc=org       (%-escapes allowed, inserted DN-escaped)
 *   query_filter = (mailacceptinggeneralid=%s)   (%-escapes inserted RFC 4515-escaped)
 *   result_attribute = maildrop  (values returned from every entry found)
 *   special_result_attribute =   (values are DNs whose entries are searched in turn: groups)
 *   leaf_result_attribute =      (returned only from entries without special attributes)
 *   terminal_result_attribute =  (an entry that has one returns only those, no recursion)
 *   result_format = %s           (%s %u %d of each value; %S %U %D %1..%9 of the key)
 *   scope = sub | one | base;  dereference = 0..3;  chase_referrals = no
 *   bind = yes (simple) | no (none);  bind_dn = ;  bind_pw =   (a .cf file holding bind_pw must
 *                 not be world-readable: it is refused at open)
 *   version = 3 (Postfix's default 2 is refused by current OpenLDAP servers)
 *   start_tls = no;  tls_ca_cert_file = ;  tls_ca_cert_dir = ;  tls_require_cert = no
 *   timeout = 10 (seconds, for connecting, binding and each search)
 *   size_limit = expansion_limit;  expansion_limit = 0 (more values than this is an error)
 *   domain = example.org, example.net   (only user@domain keys of these domains are searched)
 *   recursion_limit = 1000 (depth of special_result_attribute recursion)
 *   cache, cache_expiry, cache_size, debuglevel: accepted and ignored; bind = sasl, sasl_*,
 *   tls_cert, tls_key, tls_random_file, tls_cipher_suite: refused as "not supported"; any other
 *   name: refused as unknown (a typo must not silently change what is looked up).
 *
 * The connection is made at the first lookup and kept. A lookup that cannot reach the server,
 * times out or gets an error answer drops the connection and fails with -EIO (a temporary error:
 * callers answer 4.3.0 or defer); the next lookup connects again. A kept connection that turns
 * out dead is retried once at once with a new one, so a restarted server costs no failure. The
 * server's reason is kept for table_ldap_last_error(): table.c reports it as it does for the SQL
 * tables (every daemon logs it, at most once a minute per table unless it changes). A search base that does not exist
 * means "not found". A forked child makes a connection of its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conf.h"
#include "table-cf.h"
#include "table-ldap.h"

bool table_ldap_uses_network(const char *path) {
        return !table_cf_servers_local(path, "server_host", "localhost", "ldapi://");
}

#if HAVE_LDAP

#include <ldap.h>

#include "../basic/strbuf.h"

#define LDAP_MAX_RESULT (1024 * 1024)

struct TableLdap {
        char *path;
        char *uris;              /* space-separated, as ldap_initialize() takes them */
        char *search_base, *query_filter, *result_format;
        char **result_attrs, **special_attrs, **leaf_attrs, **terminal_attrs;
        char **search_attrs;     /* all of the above, what a search asks for */
        int scope, deref, version, timeout, size_limit;
        long expansion_limit;
        unsigned recursion_limit;
        bool bind, start_tls, chase_referrals, tls_require_cert;
        char *bind_dn, *bind_pw, *tls_ca_cert_file, *tls_ca_cert_dir;
        char **domains;
        LDAP *ld;
        pid_t ld_pid;            /* the process that made ld */
        char *last_error;       /* why the last lookup failed (table.c reports it) */
};

bool table_ldap_supported(void) {
        return true;
}

static void tldap_disconnect(TableLdap *t) {
        if (t->ld && t->ld_pid == getpid())
                ldap_unbind_ext_s(t->ld, NULL, NULL);
        t->ld = NULL;
}

/* Closes the connection; accepts NULL. */
TableLdap *table_ldap_free(TableLdap *t) {
        if (!t)
                return NULL;
        tldap_disconnect(t);
        free(t->path);
        free(t->uris);
        free(t->search_base);
        free(t->query_filter);
        free(t->result_format);
        strv_free(t->result_attrs);
        strv_free(t->special_attrs);
        strv_free(t->leaf_attrs);
        strv_free(t->terminal_attrs);
        strv_free(t->search_attrs);
        free(t->bind_dn);
        if (t->bind_pw)
                explicit_bzero(t->bind_pw, strlen(t->bind_pw));
        free(t->bind_pw);
        free(t->tls_ca_cert_file);
        free(t->tls_ca_cert_dir);
        strv_free(t->domains);
        free(t->last_error);
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TableLdap *, table_ldap_free);

static int tldap_dup(char **slot, const char *value) {
        free(*slot);
        *slot = strdup(value);
        return *slot ? 0 : -ENOMEM;
}

static int tldap_bool(const char *v, bool *ret) {
        if (strcaseeq(v, "yes") || strcaseeq(v, "true") || streq(v, "1") || strcaseeq(v, "on"))
                *ret = true;
        else if (strcaseeq(v, "no") || strcaseeq(v, "false") || streq(v, "0") || strcaseeq(v, "off"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int tldap_number(const char *v, long min, long max, long *ret) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < min || n > max)
                return -EINVAL;
        *ret = n;
        return 0;
}

/* server_host entries become URLs: a bare "host" or "host:port" means ldap://. */
static int tldap_build_uris(TableLdap *t, const char *hosts, long port) {
        _cleanup_strv_free_ char **v = conf_split_list(hosts);
        if (!v)
                return -ENOMEM;
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        for (char **h = v; *h; h++) {
                int r = b.len ? strbuf_putc(&b, ' ') : 0;
                if (r >= 0 && strstr(*h, "://"))
                        r = strbuf_puts(&b, *h);
                else if (r >= 0 && strchr(*h, ':'))
                        r = strbuf_printf(&b, "ldap://%s", *h);
                else if (r >= 0)
                        r = strbuf_printf(&b, "ldap://%s:%ld", *h, port);
                if (r < 0)
                        return r;
        }
        if (b.len == 0)
                return -EINVAL;
        t->uris = strbuf_steal(&b);
        return t->uris ? 0 : -ENOMEM;
}

static int tldap_add_attrs(char ***all, char **attrs) {
        for (char **a = attrs; a && *a; a++) {
                bool have = false;
                for (char **o = *all; o && *o; o++)
                        have = have || strcaseeq(*o, *a);
                if (have)
                        continue;
                char *c = strdup(*a);
                if (!c || strv_consume(all, c) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Reads every setting of the .cf file into t. */
static int tldap_configure(TableLdap *t, TableCf *cf, char **ret_reason) {
        const char *path = t->path, *v;
        int r;
#define BAD(name, what) do { \
                reason_printf(ret_reason, "%s: %s = %s: %s", path, name, v, what); \
                return -EINVAL; \
        } while (0)

        static const struct { const char *name, *def; size_t off; } strings[] = {
                { "search_base", "", offsetof(TableLdap, search_base) },
                { "query_filter", "(mailacceptinggeneralid=%s)", offsetof(TableLdap, query_filter) },
                { "result_format", "%s", offsetof(TableLdap, result_format) },
                { "bind_dn", "", offsetof(TableLdap, bind_dn) },
                { "bind_pw", NULL, offsetof(TableLdap, bind_pw) },
                { "tls_ca_cert_file", NULL, offsetof(TableLdap, tls_ca_cert_file) },
                { "tls_ca_cert_dir", NULL, offsetof(TableLdap, tls_ca_cert_dir) },
        };
        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                v = table_cf_get(cf, strings[i].name);
                if (!v)
                        v = strings[i].def;
                if (v && (r = tldap_dup((char **) ((char *) t + strings[i].off), v)) < 0)
                        return r;
        }
        /* Postfix's result_filter is the old name of result_format */
        if (!table_cf_get(cf, "result_format") && (v = table_cf_get(cf, "result_filter")) &&
            (r = tldap_dup(&t->result_format, v)) < 0)
                return r;
        _cleanup_free_ char *why = NULL;
        if (table_cf_check_format(t->query_filter, "query_filter", &why) < 0 ||
            table_cf_check_format(t->search_base, "search_base", &why) < 0 ||
            table_cf_check_format(t->result_format, "result_format", &why) < 0) {
                reason_printf(ret_reason, "%s: %s", path, strempty(why));
                return -EINVAL;
        }
        if (t->bind_pw && table_cf_world_readable(cf)) {
                reason_printf(ret_reason, "%s holds bind_pw and is readable by everyone: refusing to use it (chmod o-r %s)",
                              path, path);
                return -EPERM;
        }

        static const struct { const char *name, *def; size_t off; } lists[] = {
                { "result_attribute", "maildrop", offsetof(TableLdap, result_attrs) },
                { "special_result_attribute", "", offsetof(TableLdap, special_attrs) },
                { "leaf_result_attribute", "", offsetof(TableLdap, leaf_attrs) },
                { "terminal_result_attribute", "", offsetof(TableLdap, terminal_attrs) },
                { "domain", "", offsetof(TableLdap, domains) },
        };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                v = table_cf_get(cf, lists[i].name);
                char ***slot = (char ***) ((char *) t + lists[i].off);
                if (!(*slot = conf_split_list(v ? v : lists[i].def)))
                        return -ENOMEM;
                if (lists[i].off != offsetof(TableLdap, domains) && (r = tldap_add_attrs(&t->search_attrs, *slot)) < 0)
                        return r;
        }
        if (!t->search_attrs || !t->search_attrs[0]) {
                reason_printf(ret_reason, "%s: no result_attribute, leaf_result_attribute or terminal_result_attribute", path);
                return -EINVAL;
        }

        long port = 389;
        if ((v = table_cf_get(cf, "server_port")) && tldap_number(v, 1, 65535, &port) < 0)
                BAD("server_port", "not a port number");
        v = table_cf_get(cf, "server_host");
        if ((r = tldap_build_uris(t, v ? v : "localhost", port)) < 0) {
                if (r == -EINVAL)
                        BAD("server_host", "no server");
                return r;
        }

        t->scope = LDAP_SCOPE_SUBTREE;
        if ((v = table_cf_get(cf, "scope"))) {
                if (strcaseeq(v, "sub"))
                        t->scope = LDAP_SCOPE_SUBTREE;
                else if (strcaseeq(v, "one"))
                        t->scope = LDAP_SCOPE_ONELEVEL;
                else if (strcaseeq(v, "base"))
                        t->scope = LDAP_SCOPE_BASE;
                else
                        BAD("scope", "expected sub, one or base");
        }
        t->bind = true;
        if ((v = table_cf_get(cf, "bind"))) {
                if (strcaseeq(v, "simple"))
                        t->bind = true;
                else if (strcaseeq(v, "none"))
                        t->bind = false;
                else if (strcaseeq(v, "sasl"))
                        BAD("bind", "not supported: bind = sasl (Postern binds with none or simple)");
                else if (tldap_bool(v, &t->bind) < 0)
                        BAD("bind", "expected yes (simple), no (none) or simple");
        }
        static const struct { const char *name; bool def; size_t off; } bools[] = {
                { "start_tls", false, offsetof(TableLdap, start_tls) },
                { "chase_referrals", false, offsetof(TableLdap, chase_referrals) },
                { "tls_require_cert", false, offsetof(TableLdap, tls_require_cert) },
        };
        for (size_t i = 0; i < ELEMENTSOF(bools); i++) {
                bool *slot = (bool *) ((char *) t + bools[i].off);
                *slot = bools[i].def;
                if ((v = table_cf_get(cf, bools[i].name)) && tldap_bool(v, slot) < 0)
                        BAD(bools[i].name, "expected yes or no");
        }
        static const struct { const char *name; long def, min, max; } nums[] = {
                { "version", 3, 2, 3 },
                { "timeout", 10, 1, 3600 },
                { "dereference", 0, 0, 3 },
                { "expansion_limit", 0, 0, 1000000 },
                { "size_limit", -1, 0, 1000000 },
                { "recursion_limit", 1000, 1, 100000 },
        };
        long got[ELEMENTSOF(nums)];
        for (size_t i = 0; i < ELEMENTSOF(nums); i++) {
                got[i] = nums[i].def;
                if ((v = table_cf_get(cf, nums[i].name)) && tldap_number(v, nums[i].min, nums[i].max, &got[i]) < 0)
                        BAD(nums[i].name, "not a number in the allowed range");
        }
        t->version = (int) got[0];
        t->timeout = (int) got[1];
        t->deref = (int) got[2];
        t->expansion_limit = got[3];
        t->size_limit = (int) (got[4] < 0 ? got[3] : got[4]);
        t->recursion_limit = (unsigned) got[5];

        /* Postfix settings that do not apply here, accepted so a Postfix .cf works as it is. */
        static const char *const ignored[] = { "cache", "cache_expiry", "cache_size", "debuglevel", NULL };
        for (const char *const *i = ignored; *i; i++)
                (void) table_cf_get(cf, *i);
        /* Postfix settings Postern does not act on: refused by name rather than ignored. */
        static const char *const unsupported[] = {
                "tls_cert", "tls_key", "tls_random_file", "tls_cipher_suite", "sasl_mechs", "sasl_realm",
                "sasl_authz_id", "sasl_minssf", NULL };
        unsigned line = 0;
        const char *unknown = table_cf_unknown(cf, &line);
        if (unknown) {
                bool known = false;
                for (const char *const *i = unsupported; *i; i++)
                        known = known || streq(*i, unknown);
                if (known)
                        reason_printf(ret_reason, "%s:%u: not supported: %s (Postern binds with none or simple, and "
                                      "uses no client certificate)", path, line, unknown);
                else
                        reason_printf(ret_reason, "%s:%u: %s: unknown or unsupported setting", path, line, unknown);
                return -EINVAL;
        }
        return 0;
#undef BAD
}

/* Reads path's settings; no connection yet. */
int table_ldap_open(const char *path, TableLdap **ret, char **ret_reason) {
        _cleanup_(table_ldap_freep) TableLdap *t = calloc(1, sizeof(TableLdap));
        if (!t || !(t->path = strdup(path)))
                return -ENOMEM;
        _cleanup_(table_cf_freep) TableCf *cf = NULL;
        int r = table_cf_read(path, &cf, ret_reason);
        if (r < 0)
                return r;
        r = tldap_configure(t, cf, ret_reason);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

/* Notes why the lookup fails, with the server's words, for table.c's error reporter. */
static void tldap_failure(TableLdap *t, const char *what, int rc) {
        char *diag = NULL;
        if (t->ld)
                (void) ldap_get_option(t->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
        free(t->last_error);
        if (asprintf(&t->last_error, "%s (server %s): %s%s%s", what, t->uris, ldap_err2string(rc),
                     !isempty(diag) ? ": " : "", strempty(diag)) < 0)
                t->last_error = NULL;
        ldap_memfree(diag);
}

const char *table_ldap_last_error(const TableLdap *t) {
        return t ? t->last_error : NULL;
}

static int tldap_connect(TableLdap *t) {
        t->ld_pid = getpid();
        int rc = ldap_initialize(&t->ld, t->uris);
        if (rc != LDAP_SUCCESS) {
                tldap_failure(t, "cannot set up the connection", rc);
                t->ld = NULL;
                return -EIO;
        }
        struct timeval tv = { .tv_sec = t->timeout };
        int deref = t->deref, version = t->version;
        if (ldap_set_option(t->ld, LDAP_OPT_PROTOCOL_VERSION, &version) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_DEREF, &deref) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_RESTART, LDAP_OPT_ON) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_REFERRALS, t->chase_referrals ? LDAP_OPT_ON : LDAP_OPT_OFF) != LDAP_OPT_SUCCESS) {
                tldap_failure(t, "cannot set connection options", LDAP_OTHER);
                tldap_disconnect(t);
                return -EIO;
        }
        int require = t->tls_require_cert ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER, zero = 0;
        if ((t->tls_ca_cert_file && ldap_set_option(t->ld, LDAP_OPT_X_TLS_CACERTFILE, t->tls_ca_cert_file) != LDAP_OPT_SUCCESS) ||
            (t->tls_ca_cert_dir && ldap_set_option(t->ld, LDAP_OPT_X_TLS_CACERTDIR, t->tls_ca_cert_dir) != LDAP_OPT_SUCCESS) ||
            ldap_set_option(t->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require) != LDAP_OPT_SUCCESS ||
            ldap_set_option(t->ld, LDAP_OPT_X_TLS_NEWCTX, &zero) != LDAP_OPT_SUCCESS) {
                tldap_failure(t, "cannot set up TLS", LDAP_OTHER);
                tldap_disconnect(t);
                return -EIO;
        }
        if (t->start_tls && (rc = ldap_start_tls_s(t->ld, NULL, NULL)) != LDAP_SUCCESS) {
                tldap_failure(t, "STARTTLS failed", rc);
                tldap_disconnect(t);
                return -EIO;
        }
        if (t->bind) {
                struct berval cred = { .bv_val = t->bind_pw ? t->bind_pw : (char *) "",
                                       .bv_len = t->bind_pw ? strlen(t->bind_pw) : 0 };
                rc = ldap_sasl_bind_s(t->ld, t->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
                if (rc != LDAP_SUCCESS) {
                        tldap_failure(t, "bind failed", rc);
                        tldap_disconnect(t);
                        return -EIO;
                }
        }
        return 0;
}

typedef struct LdapResult {
        StrBuf out;
        long count;
        const char *key;
        int rc;          /* the LDAP result code of a search that failed */
} LdapResult;

static int tldap_add_values(TableLdap *t, LdapResult *res, LDAPMessage *entry, const char *attr) {
        struct berval **vals = ldap_get_values_len(t->ld, entry, attr);
        int r = 0;
        for (size_t i = 0; vals && vals[i] && r >= 0; i++) {
                if (vals[i]->bv_len == 0 || memchr(vals[i]->bv_val, '\0', vals[i]->bv_len))
                        continue;
                _cleanup_free_ char *v = strndup(vals[i]->bv_val, vals[i]->bv_len);
                if (!v) {
                        r = -ENOMEM;
                        break;
                }
                r = table_cf_result_add(t->result_format, v, res->key, &res->out);
                if (r > 0 && t->expansion_limit && ++res->count > t->expansion_limit) {
                        tldap_failure(t, "more results than expansion_limit", LDAP_SIZELIMIT_EXCEEDED);
                        r = -EIO;
                }
        }
        ldap_value_free_len(vals);
        return r == -EMSGSIZE ? -EIO : r;
}

static int tldap_search(TableLdap *t, const char *base, int scope, const char *filter, unsigned depth, LdapResult *res);

/* What one entry gives: terminal attributes alone when it has one; else result attributes, leaf
 * attributes when it is no group, and the entries its special attributes name. */
static int tldap_entry(TableLdap *t, LDAPMessage *entry, unsigned depth, LdapResult *res) {
        for (char **a = t->terminal_attrs; a && *a; a++) {
                struct berval **vals = ldap_get_values_len(t->ld, entry, *a);
                bool terminal = ldap_count_values_len(vals) > 0;
                ldap_value_free_len(vals);
                if (terminal) {
                        for (char **b = t->terminal_attrs; *b; b++) {
                                int r = tldap_add_values(t, res, entry, *b);
                                if (r < 0)
                                        return r;
                        }
                        return 0;
                }
        }
        bool group = false;
        for (char **a = t->special_attrs; a && *a; a++) {
                struct berval **dns = ldap_get_values_len(t->ld, entry, *a);
                group = group || ldap_count_values_len(dns) > 0;
                int r = 0;
                for (size_t i = 0; dns && dns[i] && r >= 0; i++) {
                        if (depth + 1 >= t->recursion_limit) {
                                tldap_failure(t, "special_result_attribute recursion deeper than recursion_limit", LDAP_LOOP_DETECT);
                                r = -EIO;
                                break;
                        }
                        _cleanup_free_ char *dn = strndup(dns[i]->bv_val, dns[i]->bv_len);
                        r = dn ? tldap_search(t, dn, LDAP_SCOPE_BASE, "(objectclass=*)", depth + 1, res) : -ENOMEM;
                }
                ldap_value_free_len(dns);
                if (r < 0)
                        return r;
        }
        for (char **a = t->result_attrs; a && *a; a++) {
                int r = tldap_add_values(t, res, entry, *a);
                if (r < 0)
                        return r;
        }
        for (char **a = t->leaf_attrs; !group && a && *a; a++) {
                int r = tldap_add_values(t, res, entry, *a);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int tldap_search(TableLdap *t, const char *base, int scope, const char *filter, unsigned depth, LdapResult *res) {
        struct timeval tv = { .tv_sec = t->timeout };
        LDAPMessage *msg = NULL;
        int rc = ldap_search_ext_s(t->ld, base, scope, filter, t->search_attrs, 0, NULL, NULL, &tv,
                                   t->size_limit, &msg);
        if (rc == LDAP_NO_SUCH_OBJECT) {
                ldap_msgfree(msg);
                return 0;
        }
        if (rc != LDAP_SUCCESS) {
                ldap_msgfree(msg);
                res->rc = rc;
                return -EIO;
        }
        int r = 0;
        for (LDAPMessage *e = ldap_first_entry(t->ld, msg); e && r >= 0; e = ldap_next_entry(t->ld, e))
                r = tldap_entry(t, e, depth, res);
        ldap_msgfree(msg);
        return r;
}

/* Searches for key. */
int table_ldap_lookup(TableLdap *t, const char *key, char **ret_value) {
        if (!table_cf_domain_ok(t->domains, key))
                return 0;
        _cleanup_strbuf_ StrBuf filter = STRBUF_INIT, base = STRBUF_INIT;
        filter.limit = base.limit = 64 * 1024;
        int r = table_cf_expand(t->query_filter, key, NULL, TABLE_ESCAPE_LDAP_FILTER, &filter);
        if (r == 0)
                r = table_cf_expand(t->search_base, key, NULL, TABLE_ESCAPE_LDAP_DN, &base);
        if (r != 0)
                return r > 0 ? 0 : r == -EMSGSIZE ? 0 : r;

        /* A forked child never talks over its parent's connection (the replies would go to
         * either process), nor closes it (an unbind or TLS close would reach the server on the
         * parent's behalf): it leaves the handle alone and makes its own. */
        if (t->ld && t->ld_pid != getpid())
                t->ld = NULL;
        free(t->last_error);
        t->last_error = NULL;
        for (int attempt = 0;; attempt++) {
                bool reused = t->ld != NULL;
                if (!t->ld && (r = tldap_connect(t)) < 0)
                        return r;
                LdapResult res = { .out = STRBUF_INIT, .key = key };
                res.out.limit = LDAP_MAX_RESULT;
                r = tldap_search(t, strempty(base.data), t->scope, filter.data, 0, &res);
                if (r >= 0) {
                        if (res.out.len == 0) {
                                strbuf_done(&res.out);
                                return 0;
                        }
                        if (ret_value && !(*ret_value = strbuf_steal(&res.out)))
                                return -ENOMEM;
                        strbuf_done(&res.out);
                        return 1;
                }
                strbuf_done(&res.out);
                int rc = res.rc;
                if (rc == LDAP_SUCCESS)   /* not the server's answer: out of memory, too many results */
                        return r;
                if (reused && attempt == 0 && (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)) {
                        tldap_disconnect(t);    /* a dead kept connection: try once with a new one */
                        continue;
                }
                tldap_failure(t, "search failed", rc);
                tldap_disconnect(t);
                return -EIO;
        }
}

#else /* !HAVE_LDAP */

struct TableLdap {
        int unused;
};

bool table_ldap_supported(void) {
        return false;
}

int table_ldap_open(const char *path, TableLdap **ret, char **ret_reason) {
        return -EPROTONOSUPPORT;
}

TableLdap *table_ldap_free(TableLdap *t) {
        free(t);
        return NULL;
}

int table_ldap_lookup(TableLdap *t, const char *key, char **ret_value) {
        return -EPROTONOSUPPORT;
}

const char *table_ldap_last_error(const TableLdap *t) {
        return NULL;
}

#endif
