/* test-addr-class.c — unit tests for the address classifier: each class, the order in which
 * the classes decide, relay subdomains, address literals of $inet_interfaces, the overlap
 * warning (once per domain), a broken list (a table or file that did not open) answering errors
 * instead of a class, and a table that fails at lookup time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "addr-class.h"
#include "../basic/tests.h"

#define L(s) ((char *) (s))

static void check_class(AddrClasses *ac, const char *domain, int expect_r, AddressClass expect) {
        AddressClass got = ADDR_CLASS_DEFAULT;
        _cleanup_free_ char *warning = NULL;
        int r = addr_classes_classify(ac, domain, &got, &warning);
        if (r != expect_r || (r == 0 && got != expect)) {
                fprintf(stderr, "%s: got %d/%s, expected %d/%s\n", domain ? domain : "(null)", r,
                        addr_class_name(got), expect_r, addr_class_name(expect));
                exit(1);
        }
}

static void test_classes(void) {
        char *local[] = { L("example.org"), L("localhost"), NULL };
        char *valias[] = { L("alias.example"), L("inline:{ { table-alias.example = x } }"), NULL };
        char *vmailbox[] = { L("mbox.example"), L(".subs.example"), NULL };
        char *relay[] = { L("relay.example"), NULL };
        char *ifaces[] = { L("192.0.2.7"), L("[2001:db8::7]"), L("mail.example.org"), NULL };
        char **const lists[ADDR_CLASS_LISTS] = { local, valias, vmailbox, relay };
        AddrClasses ac = {};
        _cleanup_free_ char *why = NULL;

        CHECK_INT(addr_classes_init(&ac, lists, ifaces, &why), 0);
        static const struct { const char *domain; AddressClass c; } t[] = {
                { NULL, ADDR_CLASS_LOCAL },                   /* no domain: local */
                { "", ADDR_CLASS_LOCAL },
                { "example.org", ADDR_CLASS_LOCAL },
                { "EXAMPLE.Org.", ADDR_CLASS_LOCAL },
                { "sub.example.org", ADDR_CLASS_DEFAULT },    /* mydestination: exact names only */
                { "alias.example", ADDR_CLASS_VIRTUAL_ALIAS },
                { "table-alias.example", ADDR_CLASS_VIRTUAL_ALIAS },
                { "x.alias.example", ADDR_CLASS_DEFAULT },
                { "mbox.example", ADDR_CLASS_VIRTUAL_MAILBOX },
                { "a.subs.example", ADDR_CLASS_VIRTUAL_MAILBOX },
                { "subs.example", ADDR_CLASS_DEFAULT },
                { "relay.example", ADDR_CLASS_RELAY },
                { "deep.sub.relay.example", ADDR_CLASS_RELAY }, /* relay_domains: subdomains too */
                { "elsewhere.example", ADDR_CLASS_DEFAULT },
                { "[192.0.2.7]", ADDR_CLASS_LOCAL },          /* $inet_interfaces literals */
                { "[IPv6:2001:db8::7]", ADDR_CLASS_LOCAL },
                { "[ipv6:2001:DB8:0::7]", ADDR_CLASS_LOCAL },
                { "[192.0.2.8]", ADDR_CLASS_DEFAULT },
                { "[mail.example.org]", ADDR_CLASS_DEFAULT },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                check_class(&ac, t[i].domain, 0, t[i].c);
        CHECK_INT(addr_classes_local(&ac, "example.org"), 1);     /* the local list alone */
        CHECK_INT(addr_classes_local(&ac, "[192.0.2.7]"), 1);
        CHECK_INT(addr_classes_local(&ac, "alias.example"), 0);
        CHECK_INT(addr_classes_local(&ac, NULL), 0);
        CHECK_STR(addr_class_param(ADDR_CLASS_VIRTUAL_MAILBOX), "virtual_mailbox_domains");
        CHECK(addr_class_param(ADDR_CLASS_DEFAULT) == NULL);
        CHECK_STR(addr_class_name(ADDR_CLASS_RELAY), "relay");
        for (AddressClass c = 0; c < ADDR_CLASS_LISTS; c++)
                CHECK(addr_classes_problem(&ac, c) == NULL);
        addr_classes_done(&ac);

        /* loopback-only makes the loopback literals local; "all" the literals of every interface
         * address (Postfix's resolve_local(): this host's addresses) */
        char *lo[] = { L("loopback-only"), NULL };
        char *none[] = { NULL };
        char **const empty[ADDR_CLASS_LISTS] = { none, none, none, none };
        CHECK_INT(addr_classes_init(&ac, empty, lo, NULL), 0);
        check_class(&ac, "[127.0.0.1]", 0, ADDR_CLASS_LOCAL);
        check_class(&ac, "[IPv6:::1]", 0, ADDR_CLASS_LOCAL);
        check_class(&ac, "example.org", 0, ADDR_CLASS_DEFAULT);
        addr_classes_done(&ac);
        char *all[] = { L("all"), NULL };
        CHECK_INT(addr_classes_init(&ac, empty, all, NULL), 0);
        check_class(&ac, "[127.0.0.1]", 0, ADDR_CLASS_LOCAL);
        check_class(&ac, "[192.0.2.99]", 0, ADDR_CLASS_DEFAULT);
        CHECK_INT(addr_classes_local(&ac, "[127.0.0.1]"), 1);
        addr_classes_done(&ac);
}

static void test_overlap(void) {
        char *local[] = { L("both.example"), NULL };
        char *valias[] = { L("both.example"), L("va.example"), NULL };
        char *vmailbox[] = { L("va.example"), L("both.example"), NULL };
        char *relay[] = { L("both.example"), L("vm.example"), NULL };
        char **const lists[ADDR_CLASS_LISTS] = { local, valias, vmailbox, relay };
        AddrClasses ac = {};
        CHECK_INT(addr_classes_init(&ac, lists, NULL, NULL), 0);

        AddressClass c;
        char *w = NULL;
        CHECK_INT(addr_classes_classify(&ac, "both.example", &c, &w), 0);
        CHECK_INT(c, ADDR_CLASS_LOCAL);
        CHECK(w && strstr(w, "both.example is listed in both mydestination and virtual_alias_domains"));
        free(w);
        /* once per domain */
        CHECK_INT(addr_classes_classify(&ac, "BOTH.example", &c, &w), 0);
        CHECK_INT(c, ADDR_CLASS_LOCAL);
        CHECK(w == NULL);
        CHECK_INT(addr_classes_classify(&ac, "va.example", &c, &w), 0);
        CHECK_INT(c, ADDR_CLASS_VIRTUAL_ALIAS);
        CHECK(w && strstr(w, "virtual_alias_domains and virtual_mailbox_domains"));
        free(w);
        /* relay_domains overlapping a class before it is not warned about (it once defaulted
         * to $mydestination) */
        char *vm2[] = { L("vm.example"), NULL };
        char **const lists2[ADDR_CLASS_LISTS] = { local, valias, vm2, relay };
        addr_classes_done(&ac);
        CHECK_INT(addr_classes_init(&ac, lists2, NULL, NULL), 0);
        CHECK_INT(addr_classes_classify(&ac, "vm.example", &c, &w), 0);
        CHECK_INT(c, ADDR_CLASS_VIRTUAL_MAILBOX);
        CHECK(w == NULL);
        /* no ret_warning: still remembered, nothing returned */
        CHECK_INT(addr_classes_classify(&ac, "both.example", &c, NULL), 0);
        CHECK_INT(addr_classes_classify(&ac, "both.example", &c, &w), 0);
        CHECK(w == NULL);
        addr_classes_done(&ac);
}

static void test_errors(void) {
        char dir[] = "/tmp/test-addr-class-XXXXXX";
        CHECK(mkdtemp(dir));
        char path[512], spec[600];
        snprintf(path, sizeof path, "%s/vdomains", dir);
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs("table.example x\n", f);
        CHECK(fclose(f) == 0);

        /* a table that does not open breaks its list: domains that reach it get its error */
        char *local[] = { L("example.org"), NULL };
        char missing[600];
        snprintf(missing, sizeof missing, "texthash:%s/missing", dir);
        char *valias[] = { missing, NULL };
        snprintf(spec, sizeof spec, "texthash:%s", path);
        char *vmailbox[] = { spec, NULL };
        char *none[] = { NULL };
        char **const lists[ADDR_CLASS_LISTS] = { local, valias, vmailbox, none };
        AddrClasses ac = {};
        CHECK_INT(addr_classes_init(&ac, lists, NULL, NULL), 0);
        CHECK(addr_classes_problem(&ac, ADDR_CLASS_VIRTUAL_ALIAS) &&
              strstr(addr_classes_problem(&ac, ADDR_CLASS_VIRTUAL_ALIAS), "virtual_alias_domains: "));
        check_class(&ac, "example.org", 0, ADDR_CLASS_LOCAL);   /* decided before the broken list */
        check_class(&ac, "table.example", -ENOENT, ADDR_CLASS_DEFAULT);
        check_class(&ac, "elsewhere.example", -ENOENT, ADDR_CLASS_DEFAULT);
        addr_classes_done(&ac);

        /* a table that fails at lookup time: an error, never "default" */
        char **const lists2[ADDR_CLASS_LISTS] = { local, none, vmailbox, none };
        CHECK_INT(addr_classes_init(&ac, lists2, NULL, NULL), 0);
        check_class(&ac, "table.example", 0, ADDR_CLASS_VIRTUAL_MAILBOX);
        CHECK(unlink(path) == 0);
        sleep(2);   /* file tables are checked for changes at most once a second */
        AddressClass c;
        CHECK(addr_classes_classify(&ac, "table.example", &c, NULL) < 0);
        CHECK(addr_classes_classify(&ac, "elsewhere.example", &c, NULL) < 0);
        check_class(&ac, "example.org", 0, ADDR_CLASS_LOCAL);
        addr_classes_done(&ac);

        /* a file of domain names that is missing breaks its list too */
        char *files[] = { L("/nonexistent/postfix/vhost"), NULL };
        char **const lists3[ADDR_CLASS_LISTS] = { local, none, files, none };
        CHECK_INT(addr_classes_init(&ac, lists3, NULL, NULL), 0);
        CHECK(addr_classes_problem(&ac, ADDR_CLASS_VIRTUAL_MAILBOX) &&
              strstr(addr_classes_problem(&ac, ADDR_CLASS_VIRTUAL_MAILBOX),
                     "virtual_mailbox_domains: /nonexistent/postfix/vhost: cannot open"));
        check_class(&ac, "example.org", 0, ADDR_CLASS_LOCAL);
        check_class(&ac, "elsewhere.example", -ENOENT, ADDR_CLASS_DEFAULT);
        addr_classes_done(&ac);

        /* entries that cannot mean anything stay fatal: a file naming another file */
        char nested[600];
        snprintf(nested, sizeof nested, "%s/nested", dir);
        f = fopen(nested, "we");
        CHECK(f);
        fputs("/etc/postfix/vhost\n", f);
        CHECK(fclose(f) == 0);
        char *nest[] = { nested, NULL };
        char **const lists4[ADDR_CLASS_LISTS] = { none, nest, none, none };
        _cleanup_free_ char *why = NULL;
        CHECK_INT(addr_classes_init(&ac, lists4, NULL, &why), -EOPNOTSUPP);
        CHECK(why && strstr(why, "virtual_alias_domains: ") && strstr(why, "may not name another file"));
        unlink(nested);
        rmdir(dir);
}

int main(void) {
        test_classes();
        test_overlap();
        test_errors();
        return 0;
}
