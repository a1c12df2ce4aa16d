/* mac-expand.h — Postfix-style $name expansion of a template whose values come from a callback
 * (local(8)'s forward_path and luser_relay, and anything else that fills in per-use attributes):
 *
 *   $name  ${name}  $(name)      the value (nothing when it has none)
 *   $$                           a literal $
 *   ${name?text}  ${name?{text}} text when name has a non-empty value, else nothing
 *   ${name:text}  ${name:{text}} text when name has no value (or an empty one), else nothing
 *   ${name?{a}:{b}}              a when name has a non-empty value, else b
 *
 * The texts are expanded in turn (nesting is limited). A name is [A-Za-z0-9_]+. A '$' that is
 * not followed by one of these forms stays as it is. Values (never the template's own text) are
 * passed through an optional filter: each character not listed in it becomes '_' (Postfix's
 * forward_expansion_filter). Pure: no logging, no global state. */
#pragma once

#include "strbuf.h"

/* The value of name, or NULL when it has none. */
typedef const char *(*MacLookup)(const char *name, void *userdata);

enum {
        MAC_EXPAND_UNDEF = 1 << 0,   /* a plain $name had no value (or an empty one) */
        MAC_EXPAND_ERROR = 1 << 1,   /* bad syntax (unbalanced braces, nesting too deep) */
};

/* Appends the expansion of template to out; *ret_flags (if non-NULL) gets MAC_EXPAND_* bits.
 * filter NULL: values are copied as they are. Returns 0, or -ENOMEM / -EMSGSIZE (out's limit). */
int mac_expand(const char *template, MacLookup lookup, void *userdata, const char *filter, StrBuf *out,
               unsigned *ret_flags);
