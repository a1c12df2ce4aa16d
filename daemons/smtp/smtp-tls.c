/* smtp-tls.c — TLS policy for postern-smtp: the smtp_tls_* settings of a configuration
 * snapshot (two TlsClients: opportunistic and mandatory protocols/ciphers), the per-destination
 * policy from smtp_tls_policy_maps (Postfix's tls_policy(5) keys and the level plus match=,
 * servername= and tafile= attributes; a tafile= set gets its own TlsClients over the same
 * credentials, made at first use and kept with the snapshot), the list of names a server
 * certificate must match (smtp_tls_verify_cert_match / smtp_tls_secure_cert_match strategies: hostname, nexthop,
 * dot-nexthop, literal names) and the SNI to send. The conversation itself (STARTTLS, the
 * handshake, record I/O) is in smtp-session-tls.c; the GnuTLS work in common/tls. The same code
 * reads the lmtp_tls_* twins for the LMTP side (smtp_tls_load's prefix). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include "conf/table.h"
#include "log/log.h"
#include "smtp-sts.h"
#include "smtp.h"
#include "tls/tls.h"

/* The clients of one tafile= set (key: the files, space-separated); NULLs when it did not load. */
typedef struct AnchoredClients {
        char *key;
        TlsClient *opportunistic, *mandatory;
        struct AnchoredClients *next;
} AnchoredClients;

struct SmtpTls {
        SmtpTlsLevel level;                 /* smtp_tls_security_level */
        const char *prefix;                 /* "smtp" or "lmtp" (static) */
        AnchoredClients *anchored;
        TableList *policy_maps;
        char *policy_maps_spec;
        TlsClient *opportunistic, *mandatory;
        bool wrappermode;
        bool note_starttls_offer;
        int loglevel;
        usec_t timeout;
        char *servername;
        char **verify_match, **secure_match;
};

static const char *const level_names[] = {
        [SMTP_TLS_NONE] = "none", [SMTP_TLS_MAY] = "may", [SMTP_TLS_ENCRYPT] = "encrypt",
        [SMTP_TLS_VERIFY] = "verify", [SMTP_TLS_SECURE] = "secure",
        [SMTP_TLS_DANE] = "dane", [SMTP_TLS_DANE_ONLY] = "dane-only",
};

const char *smtp_tls_level_name(SmtpTlsLevel l) {
        return l < ELEMENTSOF(level_names) ? level_names[l] : "unknown";
}

static int level_parse(const char *s, SmtpTlsLevel *ret) {
        if (isempty(s)) {
                *ret = SMTP_TLS_NONE;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0) {
                        *ret = (SmtpTlsLevel) i;
                        return 0;
                }
        return -EINVAL;
}

SmtpTls *smtp_tls_free(SmtpTls *t) {
        if (!t)
                return NULL;
        table_list_free(t->policy_maps);
        free(t->policy_maps_spec);
        tls_client_unref(t->opportunistic);
        tls_client_unref(t->mandatory);
        while (t->anchored) {
                AnchoredClients *a = t->anchored;
                t->anchored = a->next;
                tls_client_unref(a->opportunistic);
                tls_client_unref(a->mandatory);
                free(a->key);
                free(a);
        }
        free(t->servername);
        strv_free(t->verify_match);
        strv_free(t->secure_match);
        free(t);
        return NULL;
}

static TlsClient *client_new(Conf *c, SmtpSettings *s, const char *protocols_param, const char *ciphers_param) {
        const char *prefix = s->prefix;
        const char *grade = smtp_conf_get(c, s, ciphers_param);
        _cleanup_strv_free_ char **chains = conf_split_list(strempty(smtp_conf_get(c, s, "tls_chain_files")));
        _cleanup_strv_free_ char **anchors = conf_split_list(strempty(smtp_conf_get(c, s, "tls_trust_anchor_file")));
        /* *_exclude_ciphers: both lists for mandatory TLS, the first one otherwise (Postfix) */
        char exclude_name[64], mandatory_name[64];
        bool mandatory = strstr(protocols_param, "mandatory");
        const char *exclude[] = { smtp_conf_name(exclude_name, sizeof exclude_name, s, "tls_exclude_ciphers"),
                                  mandatory ? smtp_conf_name(mandatory_name, sizeof mandatory_name, s,
                                                             "tls_mandatory_exclude_ciphers") : NULL, NULL };
        _cleanup_free_ char *removals = tls_exclude_ciphers_conf(c, s->transport, exclude,
                                                                 streq(prefix, "lmtp") ? "LMTP client" : "SMTP client");
        if (!chains || !anchors || !removals) {
                log_oom();
                return NULL;
        }
        TlsClientConfig cfg = {
                .cert_file = smtp_conf_get(c, s, "tls_cert_file"),
                .key_file = smtp_conf_get(c, s, "tls_key_file"),
                .chain_files = chains,
                .ca_file = smtp_conf_get(c, s, "tls_CAfile"),
                .ca_path = smtp_conf_get(c, s, "tls_CApath"),
                .protocols = smtp_conf_get(c, s, protocols_param),
                .grade = grade && strcaseeq(grade, "high") ? TLS_GRADE_HIGH : TLS_GRADE_MEDIUM,
                .options = tls_ssl_options_conf(c, NULL, streq(prefix, "lmtp") ? "LMTP client" : "SMTP client"),
                .cipher_removals = removals,
                .append_default_ca = conf_get_bool(c, s->transport, "tls_append_default_CA"),
                .ta_files = anchors,
        };
        _cleanup_free_ char *why = NULL;
        TlsClient *cl = NULL;
        int r = tls_client_new(&cfg, &cl, &why);
        if (r < 0) {
                /* Like Postfix: a local TLS problem makes "may" plaintext and defers mandatory TLS. */
                log_error_errno(r, "%s client TLS (%s_%s, %s_tls_CAfile, %s_tls_CApath, %s_tls_trust_anchor_file, "
                                "%s_tls_cert_file, %s_tls_chain_files): %s; TLS not available",
                                streq(prefix, "lmtp") ? "LMTP" : "SMTP", prefix, protocols_param, prefix, prefix, prefix, prefix, prefix,
                                why ? why : "out of memory");
                return NULL;
        }
        return cl;
}

int smtp_tls_load(Conf *c, SmtpSettings *s, SmtpTls **ret) {
        const char *prefix = s->prefix;
        SmtpTls *t = calloc(1, sizeof(SmtpTls));
        const char *level = smtp_conf_get(c, s, "tls_security_level");

        if (!t)
                return log_oom();
        t->prefix = prefix;
        if (level_parse(level, &t->level) < 0)
                log_warning("%s_tls_security_level = %s is not supported; using none", prefix, level);
        else if (isempty(level)) {
                /* Postfix's obsolete switches, which count only while the level is empty:
                 * *_enforce_tls (verify, or encrypt without *_tls_enforce_peername), *_use_tls (may) */
                if (smtp_conf_bool(c, s, "enforce_tls"))
                        t->level = smtp_conf_bool(c, s, "tls_enforce_peername") ? SMTP_TLS_VERIFY : SMTP_TLS_ENCRYPT;
                else if (smtp_conf_bool(c, s, "use_tls"))
                        t->level = SMTP_TLS_MAY;
        }
        tls_cipherlists_conf(c, s->transport, streq(prefix, "lmtp") ? "LMTP client" : "SMTP client");
        t->wrappermode = smtp_conf_bool(c, s, "tls_wrappermode");
        t->note_starttls_offer = smtp_conf_bool(c, s, "tls_note_starttls_offer");
        t->loglevel = (int) smtp_conf_int(c, s, "tls_loglevel");
        t->timeout = smtp_conf_usec(c, s, "starttls_timeout");
        t->servername = strdup(strempty(smtp_conf_get(c, s, "tls_servername")));
        t->verify_match = smtp_conf_list(c, s, "tls_verify_cert_match");
        t->secure_match = smtp_conf_list(c, s, "tls_secure_cert_match");
        t->policy_maps_spec = strdup(strempty(smtp_conf_get(c, s, "tls_policy_maps")));
        if (!t->servername || !t->verify_match || !t->secure_match || !t->policy_maps_spec) {
                smtp_tls_free(t);
                return log_oom();
        }
        if (!isempty(t->policy_maps_spec)) {
                _cleanup_free_ char *why = NULL;
                /* An unusable table defers every delivery (below) rather than send in the clear. */
                if (table_list_open(t->policy_maps_spec, 0, &t->policy_maps, &why) < 0)
                        log_error("%s_tls_policy_maps = %s: %s", prefix, t->policy_maps_spec, why ? why : "cannot open");
        }
        /* Credentials only when some TLS can happen (a table or MTA-STS may ask for it at any level). */
        if (t->level != SMTP_TLS_NONE || t->policy_maps || t->wrappermode || s->sts_enable) {
                t->opportunistic = client_new(c, s, "tls_protocols", "tls_ciphers");
                t->mandatory = client_new(c, s, "tls_mandatory_protocols", "tls_mandatory_ciphers");
        }
        *ret = t;
        return 0;
}

/* The clients for a tafile= set, made on first use over the snapshot's two clients. */
static AnchoredClients *anchored_clients(SmtpTls *t, char **files) {
        size_t len = 1;
        for (char **f = files; *f; f++)
                len += strlen(*f) + 1;
        _cleanup_free_ char *key = malloc(len);
        if (!key) {
                log_oom();
                return NULL;
        }
        key[0] = '\0';
        for (char **f = files; *f; f++)
                strcat(strcat(key, f == files ? "" : " "), *f);
        for (AnchoredClients *a = t->anchored; a; a = a->next)
                if (streq(a->key, key))
                        return a;
        AnchoredClients *a = calloc(1, sizeof(AnchoredClients));
        if (!a) {
                log_oom();
                return NULL;
        }
        a->key = TAKE_PTR(key);
        TlsClient *base[2] = { t->opportunistic, t->mandatory }, **out[2] = { &a->opportunistic, &a->mandatory };
        for (size_t i = 0; i < 2; i++) {
                _cleanup_free_ char *why = NULL;
                if (base[i] && tls_client_with_anchors(base[i], files, out[i], &why) < 0) {
                        *out[i] = NULL;
                        /* once per file set and snapshot; mail for it defers ("TLS engine unavailable") */
                        log_error("%s_tls_policy_maps: tafile=%s: %s; TLS not available for that destination",
                                  t->prefix, a->key, why ? why : "out of memory");
                        break;
                }
        }
        a->next = t->anchored;
        t->anchored = a;
        return a;
}

TlsClient *smtp_tls_client(SmtpTls *t, const SmtpTlsPolicy *p, SmtpTlsLevel level) {
        if (p && p->tafiles && (level == SMTP_TLS_VERIFY || level == SMTP_TLS_SECURE)) {
                AnchoredClients *a = anchored_clients(t, p->tafiles);
                return !a ? NULL : level >= SMTP_TLS_ENCRYPT ? a->mandatory : a->opportunistic;
        }
        return level >= SMTP_TLS_ENCRYPT ? t->mandatory : t->opportunistic;
}

bool smtp_tls_wrappermode(SmtpTls *t) {
        return t->wrappermode;
}

bool smtp_tls_note_starttls_offer(SmtpTls *t) {
        return t->note_starttls_offer;
}

int smtp_tls_loglevel(SmtpTls *t) {
        return t->loglevel;
}

usec_t smtp_tls_timeout(SmtpTls *t) {
        return t->timeout;
}

void smtp_nexthop_domain(const char *nexthop, char *buf, size_t size) {
        const char *p = nexthop;
        size_t n;
        if (*p == '[') {
                p++;
                n = strcspn(p, "]");
        } else
                n = strcspn(p, ":");
        snprintf(buf, size, "%.*s", (int) n, p);
}

void smtp_tls_policy_done(SmtpTlsPolicy *p) {
        p->match = strv_free(p->match);
        p->tafiles = strv_free(p->tafiles);
        free(p->servername);
        p->servername = NULL;
}

static char **strv_copy(char **v) {
        size_t n = 0;
        while (v && v[n])
                n++;
        char **c = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; c && i < n; i++)
                if (!(c[i] = strdup(v[i])))
                        return strv_free(c);
        return c;
}

/* "level [match=a:b] [servername=x] [tafile=f ...]" from a policy table. */
static int policy_parse(const char *value, SmtpTlsPolicy *p, char *diag, size_t diag_size) {
        _cleanup_strv_free_ char **w = conf_split_list(value);
        if (!w)
                return -ENOMEM;
        if (!w[0] || level_parse(w[0], &p->level) < 0) {
                snprintf(diag, diag_size, "invalid TLS security level \"%s\"", w[0] ? w[0] : "");
                return -EINVAL;
        }
        for (char **a = w + 1; *a; a++) {
                const char *v;
                if ((v = startswith(*a, "match="))) {
                        if (isempty(v)) {
                                snprintf(diag, diag_size, "empty \"match\" attribute");
                                return -EINVAL;
                        }
                        strv_free(p->match);
                        p->match = calloc(strlen(v) / 2 + 2, sizeof(char *));
                        if (!p->match)
                                return -ENOMEM;
                        size_t n = 0;
                        for (const char *s = v; *s;) {
                                size_t l = strcspn(s, ":");
                                if (l > 0 && !(p->match[n++] = strndup(s, l)))
                                        return -ENOMEM;
                                s += l + (s[l] == ':');
                        }
                } else if ((v = startswith(*a, "tafile="))) {
                        /* one file each, several allowed (the value was split at commas and spaces) */
                        if (isempty(v)) {
                                snprintf(diag, diag_size, "empty \"tafile\" attribute");
                                return -EINVAL;
                        }
                        char *f = strdup(v);
                        if (!f || strv_consume(&p->tafiles, f) < 0)
                                return -ENOMEM;
                } else if ((v = startswith(*a, "servername="))) {
                        free(p->servername);
                        if (!(p->servername = strdup(v)))
                                return -ENOMEM;
                } else {
                        snprintf(diag, diag_size, "unsupported attribute \"%s\"", *a);
                        return -EINVAL;
                }
        }
        return 0;
}

/* Looks up the next hop as given, without its port, then its parent domains as ".domain". */
static int policy_lookup(SmtpTls *t, const char *nexthop, char **ret) {
        char domain[256], key[300];
        int r = table_list_lookup(t->policy_maps, nexthop, ret);
        if (r != 0 || nexthop[0] == '[')
                return r;
        smtp_nexthop_domain(nexthop, domain, sizeof(domain));
        if (!streq(domain, nexthop) && (r = table_list_lookup(t->policy_maps, domain, ret)) != 0)
                return r;
        for (const char *d = strchr(domain, '.'); d; d = strchr(d + 1, '.')) {
                snprintf(key, sizeof(key), "%s", d);
                if ((r = table_list_lookup(t->policy_maps, key, ret)) != 0)
                        return r;
        }
        return 0;
}

int smtp_tls_policy(SmtpTls *t, const char *nexthop, SmtpTlsPolicy *ret, const char **ret_dsn,
                    char *diag, size_t diag_size) {
        SmtpTlsPolicy p = { .level = t->level };
        char why[300] = "";
        int r = 0;

        if (!isempty(t->policy_maps_spec)) {
                _cleanup_free_ char *value = NULL;
                r = t->policy_maps ? policy_lookup(t, nexthop, &value) : -EIO;
                if (r < 0) {
                        *ret_dsn = "4.3.0";
                        snprintf(diag, diag_size, "TLS policy lookup for %s: table lookup error", nexthop);
                        return r;
                }
                p.from_table = r > 0;
                if (r > 0 && (r = policy_parse(value, &p, why, sizeof(why))) < 0) {
                        smtp_tls_policy_done(&p);
                        *ret_dsn = r == -ENOMEM ? "4.3.0" : "4.7.5";
                        snprintf(diag, diag_size, "TLS policy lookup for %s: %s", nexthop,
                                 r == -ENOMEM ? "out of memory" : why);
                        return r;
                }
        }
        if (!p.match && (p.level == SMTP_TLS_VERIFY || p.level == SMTP_TLS_SECURE)) {
                p.match = strv_copy(p.level == SMTP_TLS_VERIFY ? t->verify_match : t->secure_match);
                if (!p.match) {
                        *ret_dsn = "4.3.0";
                        snprintf(diag, diag_size, "out of memory");
                        return -ENOMEM;
                }
        }
        if (!p.servername && !(p.servername = strdup(t->servername))) {
                smtp_tls_policy_done(&p);
                *ret_dsn = "4.3.0";
                snprintf(diag, diag_size, "out of memory");
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

char **smtp_tls_match_names(const SmtpTlsPolicy *p, const char *host, const char *nexthop) {
        char domain[256];
        size_t n = 0;

        if (p->level < SMTP_TLS_VERIFY || !p->match)
                return NULL;
        smtp_nexthop_domain(nexthop, domain, sizeof(domain));
        while (p->match[n])
                n++;
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return NULL;
        n = 0;
        for (char **m = p->match; *m; m++) {
                char *s;
                if (strcaseeq(*m, "hostname"))
                        s = strdup(host);
                else if (strcaseeq(*m, "nexthop"))
                        s = strdup(domain);
                else if (strcaseeq(*m, "dot-nexthop"))
                        s = asprintf(&s, ".%s", domain) < 0 ? NULL : s;
                else
                        s = strdup(*m);
                if (!s)
                        return strv_free(v);
                v[n++] = s;
        }
        return v;
}

char *smtp_tls_sni(SmtpTls *t, const SmtpTlsPolicy *p, const char *host, const char *nexthop) {
        const char *how = p->servername ? p->servername : t->servername;
        char domain[256];
        unsigned char buf[16];
        const char *name;

        if (isempty(how))
                return NULL;
        smtp_nexthop_domain(nexthop, domain, sizeof(domain));
        name = strcaseeq(how, "hostname") ? host : strcaseeq(how, "nexthop") ? domain : how;
        /* RFC 6066 3: no address literals in SNI. */
        if (isempty(name) || inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1)
                return NULL;
        return strdup(name);
}

bool smtp_tls_target_level(const SmtpDelivery *d, const SmtpTarget *t, SmtpTlsLevel *ret_level, int *ret_sts,
                           char *why, size_t size) {
        /* DANE decides first (smtp-dane.c: the host's TLSA records, looked up before); a host it
         * checks against usable TLSA records is not subject to MTA-STS (RFC 8461 section 2). */
        SmtpTlsLevel level = t->no_tls ? SMTP_TLS_NONE : smtp_dane_level(d, t);
        int sts = STS_MODE_NONE;
        if (level != SMTP_TLS_DANE && (sts = smtp_sts_target(d, t, &level, why, size)) < 0)
                return false;
        *ret_level = level;
        *ret_sts = sts;
        return true;
}

char **smtp_tls_target_match(const SmtpDelivery *d, int sts, const char *host, const char *nexthop) {
        if (sts != STS_MODE_NONE)
                return smtp_sts_match_names(d, host);
        return smtp_tls_match_names(&d->tls, host, nexthop);
}

bool smtp_tls_required_no(const SmtpDelivery *d) {
        if (d->msg.requiretls || !d->content)
                return false;   /* RFC 8689 5: with REQUIRETLS too, the header is ignored */
        const char *p = d->content, *end = d->content + d->content_len;
        while (p < end && *p != '\n') {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                if (!eol)
                        eol = end;
                if ((size_t) (eol - p) > 13 && strncasecmp(p, "TLS-Required:", 13) == 0) {
                        const char *v = p + 13, *e = eol;
                        while (v < e && (*v == ' ' || *v == '\t'))
                                v++;
                        while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                                e--;
                        /* the first TLS-Required field decides */
                        return e - v == 2 && strncasecmp(v, "no", 2) == 0;
                }
                p = eol + 1;
        }
        return false;
}
