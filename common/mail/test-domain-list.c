/* test-domain-list.c — unit tests for mydestination/relay_domains matching. */
#include <errno.h>
#include <unistd.h>

#include "domain-list.h"
#include "../basic/tests.h"

static void check(char **entries, bool parent, const char *domain, int expect) {
        DomainList dl = {};
        _cleanup_free_ char *reason = NULL;
        CHECK_INT(domain_list_init(&dl, entries, parent, &reason), 0);
        int r = domain_list_match(&dl, domain);
        if (r != expect) {
                fprintf(stderr, "domain %s (parent=%d): got %d, expected %d\n", domain, parent, r, expect);
                exit(1);
        }
        domain_list_done(&dl);
}

int main(void) {
        char *dest[] = { (char *) "Example.ORG.", (char *) "localhost", (char *) ".sub.test",
                         (char *) "inline:{ table.test=yes }", (char *) "b\xc3\xbc" "cher.example",
                         (char *) ".caf\xc3\xa9.test", NULL };
        static const struct { const char *domain; bool parent; int expect; } t[] = {
                { "example.org", false, 1 },
                { "EXAMPLE.org", false, 1 },
                { "example.org.", false, 1 },       /* trailing dot on either side */
                { "mail.example.org", false, 0 },
                { "mail.example.org", true, 1 },    /* relay_domains: parents match */
                { "badexample.org", true, 0 },      /* not a parent, just a suffix */
                { "localhost", false, 1 },
                { "sub.test", false, 0 },           /* ".sub.test" is subdomains only */
                { "a.sub.test", false, 1 },
                { "table.test", false, 1 },
                { "x.table.test", false, 0 },
                { "x.table.test", true, 1 },
                { "[127.0.0.1]", false, 0 },        /* address literals never match */
                { "", false, 0 },
                { "elsewhere.net", true, 0 },
                /* U-label entries are kept as A-labels, the form addresses are normalised to */
                { "xn--bcher-kva.example", false, 1 },
                { "XN--BCHER-KVA.example", false, 1 },
                { "a.xn--caf-dma.test", false, 1 },
                { "xn--caf-dma.test", false, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                check(dest, t[i].parent, t[i].domain, t[i].expect);

        /* "/file" entries: the names (and tables) written in the file */
        char dir[] = "/tmp/test-domain-list-XXXXXX", path[256], nested[256];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/vhost", dir);
        FILE *f = fopen(path, "we");
        CHECK(f);
        fputs("# docker-mailserver style: one domain per line\nexample.com\n  example.net, .subs.example\n"
              "inline:{ table.example=x }\n", f);
        CHECK(fclose(f) == 0);
        char *file[] = { (char *) "localhost", path, NULL };
        check(file, false, "example.com", 1);
        check(file, false, "Example.NET", 1);
        check(file, false, "a.subs.example", 1);
        check(file, false, "table.example", 1);
        check(file, false, "localhost", 1);
        check(file, false, "#", 0);
        check(file, false, "other.example", 0);

        DomainList dl = {};
        char *reason = NULL;
        char *missing[] = { (char *) "/nonexistent/postern/domains", NULL };
        CHECK_INT(domain_list_init(&dl, missing, false, &reason), -ENOENT);
        CHECK(reason && strstr(reason, "/nonexistent/postern/domains"));
        free(reason);
        reason = NULL;
        snprintf(nested, sizeof nested, "%s/nested", dir);
        f = fopen(nested, "we");
        CHECK(f);
        fprintf(f, "example.org %s\n", path);
        CHECK(fclose(f) == 0);
        char *nest[] = { nested, NULL };
        CHECK_INT(domain_list_init(&dl, nest, false, &reason), -EOPNOTSUPP);
        CHECK(reason && strstr(reason, "may not name another file"));
        free(reason);
        reason = NULL;
        unlink(path);
        unlink(nested);
        rmdir(dir);
        char *bad[] = { (char *) "nosuchtype:/x", NULL };
        CHECK(domain_list_init(&dl, bad, false, &reason) < 0);
        CHECK(reason && strstr(reason, "nosuchtype:/x"));
        free(reason);
        return 0;
}
