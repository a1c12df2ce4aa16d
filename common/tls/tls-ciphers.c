/* tls-ciphers.c — Postfix's *_exclude_ciphers and *_mandatory_exclude_ciphers (OpenSSL cipher
 * names) as removals from a GnuTLS priority string. GnuTLS builds suites from parts — key
 * exchange, cipher, MAC — and removes parts, never one suite, so a name is mapped when it means
 * a whole class of parts: "RC4" is the ARCFOUR-128 cipher, "MD5" and "SHA1" are MACs, "aNULL"
 * the anonymous key exchanges, "CAMELLIA" its ciphers, "3DES" and any OpenSSL suite name with
 * DES-CBC3 (3DES-CBC), "kRSA" RSA key exchange, "EDH"/"kDHE" the DHE ones. Names of things GnuTLS
 * never offers (EXPORT, LOW, DES, SEED, IDEA, KRB5, static ECDH, ...) need no removal and are
 * accepted. A single suite such as "AES256-SHA" or a combination such as "RSA+AES" cannot be
 * expressed: it comes back as unsupported so that the caller says so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/macro.h"
#include "basic/strbuf.h"
#include "conf/conf.h"
#include "log/log.h"
#include "tls/tls.h"

static const struct {
        const char *name;
        const char *remove;          /* ":"-separated GnuTLS parts; "" when nothing is offered anyway */
} classes[] = {
        { "aNULL", "ANON-DH:ANON-ECDH" },
        { "ADH", "ANON-DH" },
        { "AECDH", "ANON-ECDH" },
        { "eNULL", "NULL" },
        { "NULL", "NULL:ANON-DH:ANON-ECDH" },
        { "COMPLEMENTOFDEFAULT", "" },
        { "EXPORT", "" }, { "EXP", "" }, { "LOW", "" }, { "DES", "" }, { "SEED", "" }, { "IDEA", "" },
        { "KRB5", "" }, { "aECDH", "" }, { "kECDH", "" }, { "aKRB5", "" }, { "kKRB5", "" }, { "RC2", "" },
        { "GOST", "" },
        { "3DES", "3DES-CBC" },
        { "RC4", "ARCFOUR-128" },
        { "MD5", "MD5" },
        { "SHA1", "SHA1" }, { "SHA", "SHA1" },
        { "PSK", "PSK:DHE-PSK:ECDHE-PSK:RSA-PSK" },
        { "SRP", "SRP:SRP-RSA:SRP-DSS" },
        { "CAMELLIA", "CAMELLIA-128-GCM:CAMELLIA-256-GCM:CAMELLIA-128-CBC:CAMELLIA-256-CBC" },
        { "CAMELLIA128", "CAMELLIA-128-GCM:CAMELLIA-128-CBC" },
        { "CAMELLIA256", "CAMELLIA-256-GCM:CAMELLIA-256-CBC" },
        { "kRSA", "RSA" },
        { "EDH", "DHE-RSA:DHE-DSS" }, { "kEDH", "DHE-RSA:DHE-DSS" }, { "kDHE", "DHE-RSA:DHE-DSS" },
        { "DHE", "DHE-RSA:DHE-DSS" },
        { "aDSS", "DHE-DSS" }, { "DSS", "DHE-DSS" },
        { "AESCCM8", "AES-128-CCM-8:AES-256-CCM-8" },
        { "AESCCM", "AES-128-CCM:AES-256-CCM:AES-128-CCM-8:AES-256-CCM-8" },
        { "CHACHA20", "CHACHA20-POLY1305" },
};

/* An OpenSSL suite name that uses DES-CBC3 or RC4 ("EDH-RSA-DES-CBC3-SHA", "ECDHE-RSA-RC4-SHA"):
 * excluding that cipher excludes at least the suite, and every suite with it is as weak. */
static const char *suite_removal(const char *w) {
        if (!strchr(w, '-'))
                return NULL;
        if (strstr(w, "DES-CBC3") || strstr(w, "CBC3-SHA"))
                return "3DES-CBC";
        if (strstr(w, "RC4"))
                return "ARCFOUR-128";
        if (strstr(w, "NULL"))
                return "NULL";
        return NULL;
}

static bool contains_part(const StrBuf *b, const char *part) {
        size_t n = strlen(part);
        for (const char *p = b->data; p && (p = strstr(p, part)); p++)
                if (p > b->data && p[-1] == '-' && p - 1 > b->data && p[-2] == ':' && (p[n] == ':' || p[n] == '\0'))
                        return true;
        return false;
}

int tls_exclude_ciphers_parse(char *const *words, char **ret_removals, char ***ret_unsupported) {
        _cleanup_(strbuf_donep) StrBuf b = STRBUF_INIT;
        for (char *const *w = words; w && *w; w++) {
                const char *remove = suite_removal(*w);
                for (size_t i = 0; !remove && i < ELEMENTSOF(classes); i++)
                        if (strcasecmp(*w, classes[i].name) == 0)
                                remove = classes[i].remove;
                if (!remove) {
                        if (ret_unsupported && strv_consume(ret_unsupported, strdup(*w)) < 0)
                                return -ENOMEM;
                        continue;
                }
                /* each part once, as ":-PART" */
                for (const char *p = remove; *p; ) {
                        size_t n = strcspn(p, ":");
                        char part[64];
                        snprintf(part, sizeof part, "%.*s", (int) n, p);
                        if (!contains_part(&b, part) && strbuf_printf(&b, ":-%s", part) < 0)
                                return -ENOMEM;
                        p += n + (p[n] == ':');
                }
        }
        char *s = strdup(b.data ? b.data : "");
        if (!s)
                return -ENOMEM;
        *ret_removals = s;
        return 0;
}

char *tls_exclude_ciphers_conf(Conf *c, const char *listener, const char *const *params, const char *who) {
        _cleanup_(strbuf_donep) StrBuf all = STRBUF_INIT;
        for (const char *const *p = params; p && *p; p++) {
                _cleanup_strv_free_ char **words = conf_get_list(c, listener, *p), **unsupported = NULL;
                _cleanup_free_ char *removals = NULL;
                if (!words || tls_exclude_ciphers_parse(words, &removals, &unsupported) < 0 ||
                    strbuf_puts(&all, removals) < 0) {
                        log_oom();
                        return NULL;
                }
                for (char **u = unsupported; u && *u; u++)
                        log_warning("%s: not supported: %s element \"%s\" (GnuTLS removes whole ciphers, MACs "
                                    "or key exchanges, not one OpenSSL suite or a combination); it stays allowed",
                                    who, *p, *u);
        }
        return strdup(all.data ? all.data : "");
}

void tls_cipherlists_conf(Conf *c, const char *listener, const char *who) {
        static const char *const lists[] = { "tls_high_cipherlist", "tls_medium_cipherlist", "tls_low_cipherlist",
                                             "tls_export_cipherlist", "tls_null_cipherlist" };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                if (!isempty(conf_get_listener(c, listener, lists[i])))
                        log_warning("%s: not supported: %s (an OpenSSL cipher string; GnuTLS ciphers come from "
                                    "*_tls_ciphers = high/medium and *_exclude_ciphers); ignored", who, lists[i]);
}
