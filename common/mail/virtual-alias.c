/* virtual-alias.c — virtual(5) alias expansion of one recipient. See virtual-alias.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "virtual-alias.h"
#include "addr-find.h"
#include "address.h"
#include "../basic/strbuf.h"
#include "../basic/strmap.h"

#define LIMIT_DEFAULT 1000

/* A growing list of allocated strings. */
typedef struct AddrList {
        char **v;
        size_t n, cap;
} AddrList;

static void addr_list_done(AddrList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (AddrList) {};
}

/* Appends s (taken, even on failure). */
static int addr_list_add(AddrList *l, char *s) {
        if (!s)
                return -ENOMEM;
        if (l->n + 1 >= l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 8;
                char **v = reallocarray(l->v, cap, sizeof(char *));
                if (!v) {
                        free(s);
                        return -ENOMEM;
                }
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = s;
        l->v[l->n] = NULL;
        return 0;
}

/* Sets of addresses compared case-insensitively (ASCII, as strcasecmp()): hash maps, as one
 * expansion may reach thousands of addresses. 1 = present, 0 = not, -ENOMEM. */
static char *fold(const char *s) {
        char *k = strdup(s);
        for (char *p = k; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return k;
}

static int set_has(const StrMap *m, const char *s) {
        _cleanup_free_ char *k = fold(s);
        if (!k)
                return -ENOMEM;
        return strmap_get(m, k) != NULL;
}

/* Adds s; returns 1 when it was there already. */
static int set_add(StrMap *m, const char *s) {
        _cleanup_free_ char *k = fold(s);
        if (!k)
                return -ENOMEM;
        if (strmap_get(m, k))
                return 1;
        return strmap_put(m, k, (void *) 1);
}

/* The '@' that separates local part and domain: the last one outside a quoted local part. */
static const char *domain_at(const char *addr) {
        const char *at = strrchr(addr, '@');
        const char *quote = strrchr(addr, '"');
        return at && (!quote || quote < at) ? at : NULL;
}

static void report_warnings(const VirtualAlias *va, TableNotes *notes) {
        for (char **w = notes->warnings; va->warn && w && *w; w++)
                va->warn(*w, va->userdata);
        table_notes_done(notes);
}

/* "user" keys apply to $myorigin and the domains local_domain() says are ours. */
static int domain_is_local(const char *domain, void *userdata) {
        const VirtualAlias *va = userdata;
        if (!isempty(va->myorigin) && strcaseeq(domain, va->myorigin))
                return 1;
        return va->local_domain ? va->local_domain(domain, va->userdata) : 0;
}

/* One lookup in Postfix's order (addr_find_match()): 1 with *ret_value and, when the key
 * matched only without the extension, *ret_ext (the extension with its delimiter); 0; or <0.
 * *ret_key names the key that matched or failed (or the domain whose test failed). */
static int find(const VirtualAlias *va, const char *addr, char **ret_value, char **ret_ext, char **ret_key) {
        const char *at = domain_at(addr);
        _cleanup_free_ char *local = at ? strndup(addr, (size_t) (at - addr)) : strdup(addr);
        TableNotes notes = {};
        AddrFindMatch m = { .is_local = domain_is_local, .userdata = (void *) va, .notes = &notes };

        *ret_ext = NULL;
        if (!local)
                return -ENOMEM;
        int r = addr_find_match(va->maps, local, at ? at + 1 : NULL, va->delimiters, 0, &m, ret_value);
        report_warnings(va, &notes);
        *ret_key = m.key;
        if (r > 0 && m.without_extension &&
            !(*ret_ext = strdup(local + addr_find_base_length(local, va->delimiters)))) {
                if (ret_value) {
                        free(*ret_value);
                        *ret_value = NULL;
                }
                return -ENOMEM;
        }
        return r;
}

int virtual_alias_find(const VirtualAlias *va, const char *address, char **ret_value) {
        _cleanup_free_ char *ext = NULL, *key = NULL;
        if (table_list_size(va->maps) == 0)
                return 0;
        return find(va, address, ret_value, &ext, &key);
}

/* Splits a lookup result into addresses: commas and white space separate them outside double
 * quotes; one pair of angle brackets around an address is dropped. */
static int split_result(const char *value, AddrList *ret) {
        const char *p = value;
        while (*p) {
                while (*p == ',' || isspace((unsigned char) *p))
                        p++;
                if (!*p)
                        break;
                const char *start = p;
                bool quoted = false;
                for (; *p; p++) {
                        if (*p == '\\' && quoted && p[1])
                                p++;
                        else if (*p == '"')
                                quoted = !quoted;
                        else if (!quoted && (*p == ',' || isspace((unsigned char) *p)))
                                break;
                }
                size_t n = (size_t) (p - start);
                if (n >= 2 && start[0] == '<' && start[n - 1] == '>') {
                        start++;
                        n -= 2;
                }
                if (n > 0 && addr_list_add(ret, strndup(start, n)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Turns the value found for addr into the list of result addresses (virtual-alias.h):
 * @otherdomain, append_at_myorigin, the unmatched extension, parsing. -EBADMSG with *ret_reason
 * when the value holds no usable address. */
static int crunch(const VirtualAlias *va, const char *addr, const char *value, const char *ext,
                  AddrList *ret, char **ret_reason) {
        _cleanup_free_ char *text = NULL;
        _cleanup_(addr_list_done) AddrList tokens = {};
        int r;

        if (value[0] == '@') {
                /* The same user (without an unmatched extension) in another domain. */
                const char *at = domain_at(addr);
                size_t llen = at ? (size_t) (at - addr) : strlen(addr);
                if (ext)
                        llen -= strlen(ext);
                if (asprintf(&text, "%.*s%s", (int) llen, addr, value) < 0)
                        return -ENOMEM;
                value = text;
        }
        if ((r = split_result(value, &tokens)) < 0)
                return r;
        if (tokens.n == 0) {
                reason_printf(ret_reason, "virtual_alias_maps lookup of %s returns non-address result \"%s\"",
                              addr, value);
                return -EBADMSG;
        }
        for (size_t i = 0; i < tokens.n; i++) {
                _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
                const char *t = tokens.v[i], *at = domain_at(t);
                size_t llen = at ? (size_t) (at - t) : strlen(t);
                r = strbuf_append(&b, t, llen);
                if (r >= 0 && va->propagate && ext)
                        r = strbuf_puts(&b, ext);
                if (r >= 0 && at)
                        r = strbuf_puts(&b, at);
                else if (r >= 0 && !isempty(va->myorigin))
                        r = strbuf_printf(&b, "@%s", va->myorigin);
                if (r < 0)
                        return r;

                _cleanup_address_free_ Address *a = NULL;
                const char *why = NULL;
                r = address_parse(b.data, ADDRESS_SMTPUTF8, &a, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        reason_printf(ret_reason, "virtual_alias_maps lookup of %s returns an invalid address \"%s\": %s",
                                      addr, b.data, strna(why));
                        return -EBADMSG;
                }
                if ((r = addr_list_add(ret, strdup(a->external))) < 0)
                        return r;
        }
        return 0;
}

/* "a@x -> b@x -> a@x" from the first occurrence of again in chain, at most about 1000 bytes. */
static char *loop_text(const AddrList *chain, const char *again) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        size_t from = 0;
        while (from < chain->n && !strcaseeq(chain->v[from], again))
                from++;
        for (size_t i = from; i < chain->n; i++) {
                if (b.len > 1000) {
                        if (strbuf_puts(&b, "... -> ") < 0)
                                return NULL;
                        break;
                }
                if (strbuf_printf(&b, "%s -> ", chain->v[i]) < 0)
                        return NULL;
        }
        if (strbuf_puts(&b, again) < 0)
                return NULL;
        return strbuf_steal(&b);
}

static int fail(VirtualAliasError *ret_error, VirtualAliasError e, int r) {
        if (ret_error)
                *ret_error = e;
        return r;
}

int virtual_alias_expand(const VirtualAlias *va, const char *address, char ***ret_list,
                         VirtualAliasError *ret_error, char **ret_reason) {
        _cleanup_(addr_list_done) AddrList list = {}, chain = {}, out = {};
        _cleanup_(strmap_freep) StrMap *self = strmap_new(NULL), *in_chain = strmap_new(NULL),
                                       *seen = strmap_new(NULL);
        unsigned recursion_limit = va->recursion_limit ?: LIMIT_DEFAULT;
        unsigned expansion_limit = va->expansion_limit ?: LIMIT_DEFAULT;
        size_t length_limit = va->address_length_limit ?: LIMIT_DEFAULT;
        int r;

        if (ret_reason)
                *ret_reason = NULL;
        if (ret_error)
                *ret_error = VIRTUAL_ALIAS_OK;
        if (!self || !in_chain || !seen)
                return -ENOMEM;
        if ((r = addr_list_add(&list, strdup(address))) < 0)
                return r;

        for (size_t i = 0; va->maps && i < list.n; i++) {
                if (list.n > expansion_limit) {
                        reason_printf(ret_reason, "unreasonable virtual_alias_maps map expansion size for %s", address);
                        return fail(ret_error, VIRTUAL_ALIAS_EXPANSION, -ELOOP);
                }
                addr_list_done(&chain);
                strmap_clear(in_chain);
                for (unsigned count = 0;; count++) {
                        const char *cur = list.v[i];
                        if ((r = set_has(self, cur)) < 0)
                                return r;
                        if (r > 0)
                                break;   /* it expanded into itself: kept as it is */
                        if (count >= recursion_limit) {
                                reason_printf(ret_reason, "unreasonable virtual_alias_maps map nesting for %s", address);
                                return fail(ret_error, VIRTUAL_ALIAS_NESTING, -ELOOP);
                        }
                        if ((r = set_add(in_chain, cur)) < 0)
                                return r;
                        if (r > 0) {
                                _cleanup_free_ char *loop = loop_text(&chain, cur);
                                if (!loop)
                                        return -ENOMEM;
                                reason_printf(ret_reason, "virtual_alias_maps loop for %s: %s", address, loop);
                                return fail(ret_error, VIRTUAL_ALIAS_LOOP, -ELOOP);
                        }
                        if ((r = addr_list_add(&chain, strdup(cur))) < 0)
                                return r;

                        _cleanup_free_ char *value = NULL, *ext = NULL, *key = NULL;
                        r = find(va, cur, &value, &ext, &key);
                        if (r == -ENOMEM || r == -EINPROGRESS)   /* -EINPROGRESS: table-async.h */
                                return r;
                        if (r < 0) {
                                reason_printf(ret_reason, "virtual_alias_maps map lookup problem for %s (key %s): %s",
                                              address, strna(key), strerror(-r));
                                return fail(ret_error, VIRTUAL_ALIAS_TABLE, -EIO);
                        }
                        if (r == 0)
                                break;

                        _cleanup_(addr_list_done) AddrList results = {};
                        r = crunch(va, cur, value, ext, &results, ret_reason);
                        if (r == -EBADMSG)
                                return fail(ret_error, VIRTUAL_ALIAS_TABLE, -EIO);
                        if (r < 0)
                                return r;
                        if (va->expanded)
                                va->expanded(cur, key, value, results.v, results.n, va->userdata);
                        _cleanup_free_ char *lhs = strdup(cur);
                        if (!lhs)
                                return -ENOMEM;
                        for (size_t k = 0; k < results.n; k++) {
                                if (strlen(results.v[k]) > length_limit) {
                                        reason_printf(ret_reason, "unreasonable virtual_alias_maps result %.300s...",
                                                      results.v[k]);
                                        return fail(ret_error, VIRTUAL_ALIAS_LENGTH, -ELOOP);
                                }
                                if (strcaseeq(results.v[k], lhs) && (r = set_add(self, lhs)) < 0)
                                        return r;
                                char *take = TAKE_PTR(results.v[k]);
                                if (k == 0) {
                                        free(list.v[i]);
                                        list.v[i] = take;
                                } else if ((r = addr_list_add(&list, take)) < 0)
                                        return r;
                        }
                }
        }

        /* Duplicates go, the first one stays. */
        for (size_t i = 0; i < list.n; i++) {
                if ((r = set_add(seen, list.v[i])) < 0)
                        return r;
                if (r == 0 && (r = addr_list_add(&out, TAKE_PTR(list.v[i]))) < 0)
                        return r;
        }
        bool aliased = out.n != 1 || !streq(out.v[0], address);
        *ret_list = TAKE_PTR(out.v);
        out.n = 0;
        return aliased;
}
