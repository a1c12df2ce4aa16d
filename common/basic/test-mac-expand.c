/* test-mac-expand.c — unit tests for Postfix-style $name expansion: plain and bracketed names,
 * the conditional forms, $$, filters, undefined names and bad syntax. */
#include "mac-expand.h"
#include "tests.h"

static const char *lookup(const char *name, void *userdata) {
        static const char *const vars[][2] = {
                { "user", "bob" }, { "home", "/home/bob" }, { "extension", "lists" },
                { "recipient_delimiter", "+" }, { "empty", "" }, { "odd", "a b;c|d$e" },
        };
        (void) userdata;
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                if (strcmp(vars[i][0], name) == 0)
                        return vars[i][1];
        return NULL;
}

static const struct {
        const char *template, *filter, *expect;
        unsigned flags;
} cases[] = {
        { "plain text", NULL, "plain text", 0 },
        { "$home/.forward", NULL, "/home/bob/.forward", 0 },
        { "${home}/.forward$(user)", NULL, "/home/bob/.forwardbob", 0 },
        { "$home/.forward${recipient_delimiter}${extension}", NULL, "/home/bob/.forward+lists", 0 },
        { "$home/.forward${nothing}${extension}", NULL, "/home/bob/.forwardlists", MAC_EXPAND_UNDEF },
        { "$nothing", NULL, "", MAC_EXPAND_UNDEF },
        { "$empty", NULL, "", MAC_EXPAND_UNDEF },
        { "a$$b $", NULL, "a$b $", 0 },
        { "cost: $5", NULL, "cost: ", MAC_EXPAND_UNDEF },
        { "x${extension?+$extension}y", NULL, "x+listsy", 0 },
        { "x${nothing?+$extension}y", NULL, "xy", 0 },
        { "x${empty?yes}y", NULL, "xy", 0 },
        { "x${nothing:none}y", NULL, "xnoney", 0 },
        { "x${user:none}y", NULL, "xy", 0 },
        { "${user?{set $user}:{unset}}", NULL, "set bob", 0 },
        { "${nothing?{set}:{unset $user}}", NULL, "unset bob", 0 },
        { "${user ? {a} : {b}}", NULL, "a", 0 },
        { "${user?{$(home)}}", NULL, "/home/bob", 0 },
        { "${nothing:{x}}", NULL, "x", 0 },
        { "${user?${extension?$extension}}", NULL, "lists", 0 },
        { "$odd", "abcdefghijklmnopqrstuvwxyz", "a_b_c_d_e", 0 },
        { "keep;$user", "abc", "keep;b_b", 0 },
        { "${user", NULL, "", MAC_EXPAND_ERROR },
        { "${}", NULL, "", MAC_EXPAND_ERROR },
        { "${user!x}", NULL, "", MAC_EXPAND_ERROR },
        { "${user?{a}:b}", NULL, "", MAC_EXPAND_ERROR },
        { "${user?{a}x}", NULL, "", MAC_EXPAND_ERROR },
        { "${a?${a?${a?${a?${a?${a?${a?${a?${a?${a?${a?${a?x}}}}}}}}}}}}", NULL, "", 0 },
        { "${user?${user?${user?${user?${user?${user?${user?${user?${user?${user?${user?${user?x}}}}}}}}}}}}",
          NULL, "", MAC_EXPAND_ERROR },
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
                unsigned flags = 99;
                CHECK_INT(mac_expand(cases[i].template, lookup, NULL, cases[i].filter, &out, &flags), 0);
                if (strcmp(out.data, cases[i].expect) != 0 || flags != cases[i].flags) {
                        fprintf(stderr, "case %zu \"%s\": got \"%s\" flags %u, expected \"%s\" flags %u\n", i,
                                cases[i].template, out.data, flags, cases[i].expect, cases[i].flags);
                        return 1;
                }
        }
        /* NULL template, and the buffer's limit. */
        _cleanup_strbuf_ StrBuf e = STRBUF_INIT;
        CHECK_INT(mac_expand(NULL, lookup, NULL, NULL, &e, NULL), 0);
        CHECK_STR(e.data, "");
        StrBuf small = STRBUF_INIT;
        small.limit = 4;
        CHECK_INT(mac_expand("$home", lookup, NULL, NULL, &small, NULL), -EMSGSIZE);
        strbuf_done(&small);
        return 0;
}
