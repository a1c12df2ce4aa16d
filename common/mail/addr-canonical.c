/* addr-canonical.c — canonical form, canonical(5) mapping and masquerading (see addr-canonical.h).
 *
 * Addresses stay in external form throughout; "@", "!", "%" and ":" inside a quoted local part
 * are text, never syntax. Table keys are built from the same form (tables compare keys without
 * regard to case). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr-canonical.h"
#include "../basic/macro.h"

#define ADDR_MAP_NESTING_MAX 100
#define ADDR_PERCENT_HOPS_MAX 10

static const struct { const char *name; AddrClass cls; } class_names[] = {
        { "envelope_sender", ADDR_CLASS_ENVELOPE_SENDER },
        { "envelope_recipient", ADDR_CLASS_ENVELOPE_RECIPIENT },
        { "header_sender", ADDR_CLASS_HEADER_SENDER },
        { "header_recipient", ADDR_CLASS_HEADER_RECIPIENT },
};

int addr_classes_parse(char *const *names, unsigned *ret, const char **ret_bad) {
        unsigned bits = 0;
        for (char *const *n = names; n && *n; n++) {
                size_t i = 0;
                while (i < ELEMENTSOF(class_names) && !strcaseeq(*n, class_names[i].name))
                        i++;
                if (i == ELEMENTSOF(class_names)) {
                        *ret_bad = *n;
                        return -EINVAL;
                }
                bits |= class_names[i].cls;
        }
        *ret = bits;
        return 0;
}

/* The first (or last) c in s outside quoted strings, or NULL. */
static char *find_unquoted(const char *s, char c, bool last) {
        const char *hit = NULL;
        bool q = false;
        for (const char *p = s; *p; p++) {
                if (q && *p == '\\' && p[1]) {
                        p++;
                        continue;
                }
                if (*p == '"')
                        q = !q;
                else if (!q && *p == c) {
                        hit = p;
                        if (!last)
                                break;
                }
        }
        return (char *) hit;
}

int addr_domain_at(const char *addr) {
        const char *at = find_unquoted(addr, '@', true);
        return at ? (int) (at - addr) : -1;
}

/* Replaces *a by the concatenation of three pieces. */
static int replace3(char **a, const char *x, size_t xn, const char *y, size_t yn, const char *z) {
        char *n = NULL;
        if (asprintf(&n, "%.*s%.*s%s", (int) xn, x, (int) yn, y, z) < 0)
                return -ENOMEM;
        free(*a);
        *a = n;
        return 0;
}

int addr_canonical_form(const AddrCanonicalContext *ctx, const char *addr, char **ret) {
        _cleanup_free_ char *a = strdup(addr);
        int r = 0;

        if (!a)
                return -ENOMEM;
        /* "@a,@b:user@c": the route goes. */
        char *colon = a[0] == '@' ? find_unquoted(a, ':', false) : NULL;
        if (colon && colon[1])
                memmove(a, colon + 1, strlen(colon + 1) + 1);
        if (streq(a, "@"))
                a[0] = '\0';
        if (a[0] && addr_domain_at(a) < 0) {
                char *bang = ctx->swap_bangpath ? find_unquoted(a, '!', false) : NULL;
                char *pct = ctx->percent_hack ? find_unquoted(a, '%', true) : NULL;
                if (bang && bang > a && bang[1]) {
                        /* "site!rest" -> "rest@site" */
                        *bang = '\0';
                        r = replace3(&a, bang + 1, strlen(bang + 1), "@", 1, a);
                } else if (pct && pct > a && pct[1])
                        *pct = '@';
                else if (ctx->append_at_origin && !isempty(ctx->origin))
                        r = replace3(&a, a, strlen(a), "@", 1, ctx->origin);
                if (r < 0)
                        return r;
        }
        int at = addr_domain_at(a);
        if (at >= 0) {
                char *dom = a + at + 1;
                size_t dl = strlen(dom);
                if (dl > 1 && dom[dl - 1] == '.')
                        dom[--dl] = '\0';
                if (ctx->append_dot_domain && !isempty(ctx->domain) && dl > 0 && dom[0] != '[' && !strchr(dom, '.')) {
                        if ((r = replace3(&a, a, strlen(a), ".", 1, ctx->domain)) < 0)
                                return r;
                }
        }
        /* "user%domain@ours" -> "user@domain", again while the new domain is ours. */
        for (unsigned hop = 0; ctx->percent_hack && ctx->is_local && hop < ADDR_PERCENT_HOPS_MAX; hop++) {
                at = addr_domain_at(a);
                if (at <= 0)
                        break;
                a[at] = '\0';
                char *pct = find_unquoted(a, '%', true);
                if (!pct || pct == a || pct[1] == '\0') {
                        a[at] = '@';
                        break;
                }
                r = ctx->is_local(a + at + 1, ctx->userdata);
                if (r <= 0) {
                        a[at] = '@';
                        if (r < 0)
                                return r;
                        break;
                }
                *pct = '@';   /* and the old domain is cut off at the NUL */
        }
        bool changed = !streq(a, addr);
        *ret = TAKE_PTR(a);
        return changed;
}

/* Where the extension starts in the local part (its delimiter), or -1. Quoted local parts have
 * none; "owner-x" and "x-request" keep their "-" (Postfix's exception for that delimiter). */
static int extension_at(const char *local, size_t n, const char *delims) {
        if (isempty(delims) || n == 0 || local[0] == '"')
                return -1;
        for (size_t i = 1; i < n; i++) {
                if (!strchr(delims, local[i]))
                        continue;
                if (local[i] == '-' && (strncasecmp(local, "owner-", 6) == 0 ||
                                        (n >= 8 && strncasecmp(local + n - 8, "-request", 8) == 0)))
                        return -1;
                return (int) i;
        }
        return -1;
}

/* Trims value and refuses several addresses (or none) in it. */
static int single_value(const char *key, char *value, char **ret_warning) {
        char *s = value;
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        memmove(value, s, n);
        value[n] = '\0';
        if (n == 0 || find_unquoted(value, ',', false) || find_unquoted(value, ' ', false) ||
            find_unquoted(value, '\t', false)) {
                if (ret_warning && asprintf(ret_warning, "canonical entry for %s is not one address: \"%s\"; "
                                            "leaving the address unchanged", key, value) < 0)
                        *ret_warning = NULL;
                return -EBADMSG;
        }
        return 0;
}

int addr_map_once(TableList *maps, const AddrMapOptions *o, const char *addr, char **ret, char **ret_warning) {
        int at = addr_domain_at(addr);
        size_t ln = at >= 0 ? (size_t) at : strlen(addr);
        const char *domain = at >= 0 ? addr + at + 1 : NULL;
        int ext = extension_at(addr, ln, o->delimiters);
        char *value = NULL;
        int r;

        struct { char *key; bool stripped; } keys[5] = {};
        size_t nk = 0;
        if (domain) {
                if (!(keys[nk++].key = strdup(addr)))
                        goto oom;
                if (ext >= 0 && asprintf(&keys[nk].key, "%.*s@%s", ext, addr, domain) >= 0)
                        keys[nk++].stripped = true;
                else if (ext >= 0)
                        goto oom;
        }
        r = !domain ? 1 : o->is_ours ? o->is_ours(domain, o->userdata) : 0;
        if (r < 0)
                goto fail;
        if (r > 0) {
                if (!(keys[nk++].key = strndup(addr, ln)))
                        goto oom;
                if (ext >= 0) {
                        if (!(keys[nk].key = strndup(addr, ext)))
                                goto oom;
                        keys[nk++].stripped = true;
                }
        }
        if (domain) {
                if (asprintf(&keys[nk].key, "@%s", domain) < 0)
                        goto oom;
                keys[nk++].stripped = ext >= 0;
        }

        size_t k = 0;
        for (r = 0; k < nk && r == 0; k++)
                r = table_list_lookup(maps, keys[k].key, &value);
        if (r <= 0)
                goto fail;
        k--;
        if ((r = single_value(keys[k].key, value, ret_warning)) < 0)
                goto fail;
        char *res = NULL;
        if (value[0] == '@')
                r = asprintf(&res, "%.*s%s", (int) ln, addr, value);   /* "@other": the local part stays */
        else if (keys[k].stripped && o->propagate) {
                int vat = addr_domain_at(value);
                size_t vl = vat >= 0 ? (size_t) vat : strlen(value);
                r = asprintf(&res, "%.*s%.*s%s", (int) vl, value, (int) (ln - ext), addr + ext, value + vl);
        } else
                r = (res = strdup(value)) ? 0 : -1;
        if (r < 0)
                goto oom;
        *ret = res;
        r = 1;
fail:
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                free(keys[i].key);
        free(value);
        return r;
oom:
        r = -ENOMEM;
        goto fail;
}

int addr_map_canonical(TableList *maps, const AddrMapOptions *o, const char *addr, char **ret, char **ret_warning) {
        _cleanup_free_ char *cur = strdup(addr);
        int r;

        if (!cur)
                return -ENOMEM;
        for (unsigned step = 0;; step++) {
                if (step == ADDR_MAP_NESTING_MAX) {
                        if (ret_warning && asprintf(ret_warning, "unreasonable canonical map nesting for %s; "
                                                    "leaving the address unchanged", addr) < 0)
                                *ret_warning = NULL;
                        return 0;
                }
                char *next = NULL;
                r = addr_map_once(maps, o, cur, &next, ret_warning);
                if (r == -EBADMSG)
                        return 0;
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                bool same = strcaseeq(next, cur);
                free(cur);
                cur = next;
                if (same)
                        break;
        }
        if (streq(cur, addr))
                return 0;
        *ret = TAKE_PTR(cur);
        return 1;
}

int addr_masquerade_init(AddrMasquerade *m, char *const *domains, char *const *exceptions, char **ret_reason) {
        AddrMasquerade n = {};
        _cleanup_free_ char *specs = NULL;
        size_t nd = 0, ne = 0;
        int r = -ENOMEM;

        for (char *const *d = domains; d && *d; d++)
                nd++;
        for (char *const *e = exceptions; e && *e; e++)
                ne++;
        n.domains = calloc(nd + 1, sizeof(char *));
        n.except_names = calloc(ne + 1, sizeof(char *));
        if (!n.domains || !n.except_names)
                goto fail;
        for (size_t i = 0; i < nd; i++)
                if (!(n.domains[i] = strdup(domains[i])))
                        goto fail;
        ne = 0;
        for (char *const *e = exceptions; e && *e; e++) {
                if (strchr(*e, ':')) {
                        char *s = NULL;
                        if (asprintf(&s, "%s%s%s", strempty(specs), specs ? " " : "", *e) < 0)
                                goto fail;
                        free(specs);
                        specs = s;
                        continue;
                }
                if (!(n.except_names[ne] = strdup(*e)))
                        goto fail;
                for (char *p = n.except_names[ne]; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                ne++;
        }
        if (specs && (r = table_list_open(specs, 0, &n.except_tables, ret_reason)) < 0)
                goto fail;
        *m = n;
        return 0;
fail:
        addr_masquerade_done(&n);
        return r;
}

void addr_masquerade_done(AddrMasquerade *m) {
        strv_free(m->domains);
        strv_free(m->except_names);
        table_list_free(m->except_tables);
        *m = (AddrMasquerade) {};
}

static int masquerade_excepted(const AddrMasquerade *m, const char *local, size_t n) {
        for (char **e = m->except_names; e && *e; e++)
                if (strlen(*e) == n && strncasecmp(*e, local, n) == 0)
                        return 1;
        if (!m->except_tables)
                return 0;
        _cleanup_free_ char *key = strndup(local, n), *value = NULL;
        if (!key)
                return -ENOMEM;
        return table_list_lookup(m->except_tables, key, &value);
}

int addr_masquerade(const AddrMasquerade *m, const char *addr, char **ret) {
        int at = addr_domain_at(addr);
        if (at < 0 || !m->domains)
                return 0;
        const char *dom = addr + at + 1;
        size_t dl = strlen(dom);
        if (dl == 0 || dom[0] == '[')
                return 0;
        for (char **e = m->domains; *e; e++) {
                bool keep = (*e)[0] == '!';
                const char *name = *e + keep;
                size_t nl = strlen(name);
                if (nl == 0 || nl > dl)
                        continue;
                if (nl == dl) {
                        if (strcaseeq(name, dom))
                                return 0;   /* already the masquerade domain (or kept as it is) */
                        continue;
                }
                const char *parent = dom + dl - nl;
                if (parent[-1] != '.' || !strcaseeq(parent, name))
                        continue;
                if (keep)
                        return 0;
                int r = masquerade_excepted(m, addr, (size_t) at);
                if (r != 0)
                        return r < 0 ? r : 0;
                char *res = NULL;
                if (asprintf(&res, "%.*s@%s", at, addr, name) < 0)
                        return -ENOMEM;
                *ret = res;
                return 1;
        }
        return 0;
}

static void add_warning(char **all, char *w) {
        if (!w)
                return;
        if (!*all) {
                *all = w;
                return;
        }
        char *j = NULL;
        if (asprintf(&j, "%s; %s", *all, w) >= 0) {
                free(*all);
                *all = j;
        }
        free(w);
}

/* One step of the chain: cur is replaced when the step changed it. */
/* Takes a step's result into *cur and tells rw->step about it. */
static int step_result(const AddrRewrite *rw, const char *what, int r, char **cur, char *next) {
        if (rw->step && r >= 0)
                rw->step(what, *cur, r > 0 ? next : *cur, rw->step_userdata);
        if (r > 0) {
                free(*cur);
                *cur = next;
        }
        return r < 0 ? r : 0;
}

int addr_rewrite(const AddrRewrite *rw, const AddrCanonicalContext *ctx, AddrClass cls, const char *addr,
                 char **ret, char **ret_warning) {
        _cleanup_free_ char *cur = NULL;
        char *next = NULL, *w = NULL;
        int r;

        if (isempty(addr))
                return 0;
        if ((r = addr_canonical_form(ctx, addr, &cur)) < 0)
                return r;
        if (rw->step)
                rw->step("canonical form", addr, cur, rw->step_userdata);
        bool sender = cls & (ADDR_CLASS_ENVELOPE_SENDER | ADDR_CLASS_HEADER_SENDER);
        TableList *specific = sender ? rw->sender_canonical_maps : rw->recipient_canonical_maps;
        unsigned specific_classes = sender ? rw->sender_canonical_classes : rw->recipient_canonical_classes;
        if (specific && (specific_classes & cls)) {
                r = addr_map_canonical(specific, &rw->map, cur, &next, &w);
                add_warning(ret_warning, TAKE_PTR(w));
                if ((r = step_result(rw, sender ? "sender_canonical_maps" : "recipient_canonical_maps",
                                     r, &cur, next)) < 0)
                        return r;
        }
        if (rw->canonical_maps && (rw->canonical_classes & cls)) {
                r = addr_map_canonical(rw->canonical_maps, &rw->map, cur, &next, &w);
                add_warning(ret_warning, TAKE_PTR(w));
                if ((r = step_result(rw, "canonical_maps", r, &cur, next)) < 0)
                        return r;
        }
        if (rw->masquerade_classes & cls) {
                r = addr_masquerade(&rw->masquerade, cur, &next);
                if ((r = step_result(rw, "masquerade_domains", r, &cur, next)) < 0)
                        return r;
        }
        if (streq(cur, addr))
                return 0;
        *ret = TAKE_PTR(cur);
        return 1;
}
