/* test-smtp-sts-policy.c — table-driven tests of smtp-sts-policy.c: the _mta-sts TXT record, the
 * policy file (valid and invalid ones, line endings, max_age cap, unknown keys) and MX pattern
 * matching ("*.example.net" covers exactly one label). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/tests.h"
#include "smtp-sts.h"

static const struct {
        const char *txt;
        int r;
        const char *id;
} txt_cases[] = {
        { "v=STSv1; id=20160831085700Z;", 0, "20160831085700Z" },
        { "v=STSv1; id=abc", 0, "abc" },
        { "v=STSv1;id=abc;", 0, "abc" },
        { "  v=STSv1 ; id=abc ; ext=1;", 0, "abc" },
        { "v=STSv1; foo=bar; id=X1;", 0, "X1" },
        { "v=STSv1;", -EINVAL, NULL },                                /* no id */
        { "v=STSv1; id=;", -EINVAL, NULL },
        { "v=STSv1; id=a-b;", -EINVAL, NULL },                        /* id: letters and digits */
        { "v=STSv1; id=123456789012345678901234567890123;", -EINVAL, NULL },  /* 33 characters */
        { "v=STSv1; id=a; id=b;", -EINVAL, NULL },
        { "v=STSv1 id=abc", -EINVAL, NULL },                          /* no ';' */
        { "v=spf1 -all", -ENOENT, NULL },                             /* not an STS record */
        { "id=abc; v=STSv1;", -ENOENT, NULL },                        /* version not first */
        { "v=STSv10; id=abc;", -ENOENT, NULL },
};

static const struct {
        const char *text;
        int r;
        StsMode mode;
        unsigned long long max_age;
        const char *mx;              /* the patterns joined by ' ' */
} policy_cases[] = {
        { "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n",
          0, STS_MODE_ENFORCE, 86400, "mail.example.com *.example.net" },
        { "version: STSv1\r\nmode: testing\r\nmx: MX.Example.COM.\r\nmax_age: 604800\r\n",
          0, STS_MODE_TESTING, 604800, "mx.example.com" },
        { "version: STSv1\nmode: none\nmax_age: 0", 0, STS_MODE_NONE, 0, "" },   /* none: mx optional, no final LF */
        { "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n", 0, STS_MODE_ENFORCE,
          STS_MAX_AGE_LIMIT, "a.example" },                                     /* capped at a year */
        { "version: STSv1\nmode: enforce\nfoo: bar\nmx: a.example\nmax_age: 60\n\n", 0, STS_MODE_ENFORCE, 60, "a.example" },
        { "version:STSv1\nmode:enforce\nmx:a.example\nmax_age:60\n", 0, STS_MODE_ENFORCE, 60, "a.example" },
        { "", -EINVAL, 0, 0, NULL },
        { "mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 60\n", -EINVAL, 0, 0, NULL },  /* version first */
        { "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 60\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 60\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: enforce\nmax_age: 60\n", -EINVAL, 0, 0, NULL },               /* no mx */
        { "version: STSv1\nmode: enforce\nmx: a.example\n", -EINVAL, 0, 0, NULL },             /* no max_age */
        { "version: STSv1\nmx: a.example\nmax_age: 60\n", -EINVAL, 0, 0, NULL },               /* no mode */
        { "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1x\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: enforce\nmx: a b\nmax_age: 60\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: enforce\nmx: *\nmax_age: 60\n", -EINVAL, 0, 0, NULL },
        { "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 60\n", -EINVAL, 0, 0, NULL },
        { "<html>\nversion: STSv1\n", -EINVAL, 0, 0, NULL },
};

static const struct {
        const char *pattern, *host;
        bool match;
} mx_cases[] = {
        { "mail.example.com", "mail.example.com", true },
        { "mail.example.com", "MAIL.Example.com.", true },
        { "mail.example.com", "mail.example.co", false },
        { "mail.example.com", "xmail.example.com", false },
        { "*.example.net", "mx1.example.net", true },
        { "*.example.net", "MX1.EXAMPLE.NET.", true },
        { "*.example.net", "a.b.example.net", false },   /* one label only */
        { "*.example.net", "example.net", false },
        { "*.example.net", ".example.net", false },
        { "*.example.net", "mx1.example.network", false },
        { "*.example.net", "mx1.other.net", false },
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(txt_cases); i++) {
                char id[STS_ID_MAX + 1] = "";
                int r = sts_txt_parse(txt_cases[i].txt, id);
                if (r != txt_cases[i].r)
                        fprintf(stderr, "TXT \"%s\": %d, expected %d\n", txt_cases[i].txt, r, txt_cases[i].r);
                CHECK(r == txt_cases[i].r);
                if (txt_cases[i].id)
                        CHECK_STR(id, txt_cases[i].id);
        }
        for (size_t i = 0; i < ELEMENTSOF(policy_cases); i++) {
                StsPolicy p;
                char why[200] = "";
                const char *t = policy_cases[i].text;
                int r = sts_policy_parse(t, strlen(t), &p, why, sizeof why);
                if (r != policy_cases[i].r)
                        fprintf(stderr, "policy %zu: %d (%s), expected %d\n", i, r, why, policy_cases[i].r);
                CHECK(r == policy_cases[i].r);
                if (r < 0) {
                        CHECK(why[0] != '\0');
                        CHECK(p.mx == NULL && p.text == NULL);
                        continue;
                }
                CHECK(p.mode == policy_cases[i].mode);
                CHECK(p.max_age == policy_cases[i].max_age);
                char joined[300] = "";
                for (char **m = p.mx; m && *m; m++)
                        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", m == p.mx ? "" : " ", *m);
                CHECK_STR(joined, policy_cases[i].mx);
                CHECK_STR(p.text, t);
                StsPolicy c;
                snprintf(p.id, sizeof p.id, "abc");
                CHECK(sts_policy_copy(&p, &c) == 0);
                CHECK_STR(c.id, "abc");
                CHECK(c.mode == p.mode && c.max_age == p.max_age);
                sts_policy_done(&c);
                sts_policy_done(&p);
        }
        for (size_t i = 0; i < ELEMENTSOF(mx_cases); i++) {
                bool m = sts_mx_matches(mx_cases[i].pattern, mx_cases[i].host);
                if (m != mx_cases[i].match)
                        fprintf(stderr, "mx %s ~ %s: %d\n", mx_cases[i].pattern, mx_cases[i].host, m);
                CHECK(m == mx_cases[i].match);
        }
        StsPolicy p;
        char why[100];
        const char *t = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 60\n";
        CHECK(sts_policy_parse(t, strlen(t), &p, why, sizeof why) == 0);
        CHECK(sts_policy_mx_allowed(&p, "mail.example.com"));
        CHECK(sts_policy_mx_allowed(&p, "mx2.example.net"));
        CHECK(!sts_policy_mx_allowed(&p, "mx.attacker.test"));
        sts_policy_done(&p);
        CHECK_STR(sts_mode_name(STS_MODE_TESTING), "testing");
        return 0;
}
