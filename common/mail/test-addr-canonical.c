/* test-addr-canonical.c — unit tests for the canonical form (append_at_myorigin,
 * append_dot_mydomain, swap_bangpath, allow_percent_hack, routes), canonical(5) lookups with
 * extensions, masquerading with exceptions, address classes, and the whole chain. */
#include <errno.h>

#include "addr-canonical.h"
#include "../basic/tests.h"

static int ours(const char *domain, void *userdata) {
        if (strcmp(domain, "fail.test") == 0)
                return -EIO;
        return strcasecmp(domain, "example.com") == 0 || strcasecmp(domain, "localhost") == 0 ||
                strcasecmp(domain, "[127.0.0.1]") == 0;
}

static void form(const AddrCanonicalContext *ctx, const char *in, int expect_r, const char *expect) {
        char *out = NULL;
        int r = addr_canonical_form(ctx, in, &out);
        if (r != expect_r || (r >= 0 && strcmp(out, expect) != 0)) {
                fprintf(stderr, "canonical form of [%s]: r=%d [%s], expected %d [%s]\n", in, r, out ? out : "",
                        expect_r, expect);
                exit(1);
        }
        free(out);
}

static void mapped(TableList *t, const AddrMapOptions *o, const char *in, int expect_r, const char *expect,
                   const char *warning) {
        char *out = NULL, *w = NULL;
        int r = addr_map_canonical(t, o, in, &out, &w);
        if (r != expect_r || (r == 1 && strcmp(out, expect) != 0) || (!warning) != (!w) ||
            (warning && !strstr(w, warning))) {
                fprintf(stderr, "map [%s]: r=%d [%s] warning [%s], expected %d [%s] [%s]\n", in, r, out ? out : "",
                        w ? w : "", expect_r, expect ? expect : "", warning ? warning : "");
                exit(1);
        }
        free(out);
        free(w);
}

static void masq(const AddrMasquerade *m, const char *in, int expect_r, const char *expect) {
        char *out = NULL;
        int r = addr_masquerade(m, in, &out);
        if (r != expect_r || (r == 1 && strcmp(out, expect) != 0)) {
                fprintf(stderr, "masquerade [%s]: r=%d [%s], expected %d [%s]\n", in, r, out ? out : "", expect_r,
                        expect ? expect : "");
                exit(1);
        }
        free(out);
}

static void test_form(void) {
        AddrCanonicalContext c = { .origin = "example.com", .domain = "example.com", .append_at_origin = true,
                                   .append_dot_domain = false, .swap_bangpath = true, .percent_hack = true,
                                   .is_local = ours };
        form(&c, "", 0, "");
        form(&c, "user@example.org", 0, "user@example.org");
        form(&c, "user", 1, "user@example.com");
        form(&c, "MAILER-DAEMON", 1, "MAILER-DAEMON@example.com");
        form(&c, "user@host", 0, "user@host");                  /* append_dot_mydomain = no (default) */
        form(&c, "user@example.org.", 1, "user@example.org");   /* trailing dot */
        form(&c, "@a,@b:user@example.org", 1, "user@example.org");
        form(&c, "@", 1, "");
        form(&c, "site!user", 1, "user@site");
        form(&c, "a!b!user", 1, "b!user@a");
        form(&c, "user%elsewhere.org", 1, "user@elsewhere.org");
        form(&c, "a%b%c", 1, "a%b@c");                          /* the last % */
        form(&c, "user%elsewhere.org@example.com", 1, "user@elsewhere.org");   /* % hack on our domain */
        form(&c, "user%elsewhere.org@remote.org", 0, "user%elsewhere.org@remote.org");
        form(&c, "a%b%example.com@localhost", 1, "a@b");        /* again while the domain is ours */
        form(&c, "u%x@fail.test", -EIO, "");                    /* a table error is not a guess */
        form(&c, "\"a!b\"", 1, "\"a!b\"@example.com");           /* quoted: ! and % are text */
        form(&c, "\"a%b\"@example.com", 0, "\"a%b\"@example.com");
        form(&c, "\"a@b\"", 1, "\"a@b\"@example.com");
        form(&c, "!user", 1, "!user@example.com");               /* no site: not a bang path */

        AddrCanonicalContext d = c;
        d.append_dot_domain = true;
        form(&d, "user@host", 1, "user@host.example.com");
        form(&d, "user@host.sub", 0, "user@host.sub");
        form(&d, "user@[192.0.2.1]", 0, "user@[192.0.2.1]");
        form(&d, "site!user", 1, "user@site.example.com");

        AddrCanonicalContext off = { .origin = "example.com" };
        form(&off, "user", 0, "user");
        form(&off, "site!user", 0, "site!user");
        form(&off, "user%x", 0, "user%x");
        form(&off, "user%x@example.com", 0, "user%x@example.com");

        /* The remote context: only the rewrite domain, and nothing at all when it is empty. */
        AddrCanonicalContext remote = { .origin = "", .domain = "", .append_at_origin = true, .append_dot_domain = true,
                                        .swap_bangpath = true, .percent_hack = true };
        form(&remote, "user", 0, "user");
        form(&remote, "user@host", 0, "user@host");
}

static void test_maps(void) {
        TableList *t = NULL;
        char *why = NULL;
        CHECK_INT(table_list_open("inline:{ joe@example.com=joseph.smith@example.com, "
                                  "bob=robert@example.org, @old.test=@new.test, @catch.test=all@example.net, "
                                  "loop1@x=loop2@x, loop2@x=loop1@x, self@x=SELF@x, "
                                  "{ two@x = a@x, b@y }, chain1@x=chain2@x, chain2@x=done@x, "
                                  "ann+special@example.com=special@example.net }",
                                  0, &t, &why), 0);
        AddrMapOptions o = { .delimiters = "+", .propagate = true, .is_ours = ours };
        mapped(t, &o, "joe@example.com", 1, "joseph.smith@example.com", NULL);
        mapped(t, &o, "JOE@example.com", 1, "joseph.smith@example.com", NULL);        /* keys ignore case */
        mapped(t, &o, "joe+news@example.com", 1, "joseph.smith+news@example.com", NULL);   /* extension kept */
        mapped(t, &o, "bob@example.com", 1, "robert@example.org", NULL);             /* "user" for our domain */
        mapped(t, &o, "bob@localhost", 1, "robert@example.org", NULL);
        mapped(t, &o, "bob@[127.0.0.1]", 1, "robert@example.org", NULL);
        mapped(t, &o, "bob+x@example.com", 1, "robert+x@example.org", NULL);
        mapped(t, &o, "bob@elsewhere.org", 0, NULL, NULL);                          /* not ours: no "user" key */
        mapped(t, &o, "bob", 1, "robert@example.org", NULL);
        mapped(t, &o, "anyone@old.test", 1, "anyone@new.test", NULL);                /* @domain -> @domain */
        mapped(t, &o, "anyone+e@old.test", 1, "anyone+e@new.test", NULL);
        mapped(t, &o, "who@catch.test", 1, "all@example.net", NULL);
        mapped(t, &o, "who+e@catch.test", 1, "all+e@example.net", NULL);
        mapped(t, &o, "ann+special@example.com", 1, "special@example.net", NULL);    /* full key first */
        mapped(t, &o, "chain1@x", 1, "done@x", NULL);                                /* recursive */
        mapped(t, &o, "self@x", 1, "SELF@x", NULL);                                  /* maps to itself: stop */
        mapped(t, &o, "loop1@x", 0, NULL, "unreasonable canonical map nesting for loop1@x");
        mapped(t, &o, "two@x", 0, NULL, "not one address");
        mapped(t, &o, "nobody@nowhere", 0, NULL, NULL);
        mapped(t, &o, "bob@fail.test", -EIO, NULL, NULL);

        AddrMapOptions noprop = { .delimiters = "+", .propagate = false, .is_ours = ours };
        mapped(t, &noprop, "joe+news@example.com", 1, "joseph.smith@example.com", NULL);
        AddrMapOptions multi = { .delimiters = "+-", .propagate = true, .is_ours = ours };
        mapped(t, &multi, "joe-news@example.com", 1, "joseph.smith-news@example.com", NULL);   /* several delimiters */
        mapped(t, &multi, "owner-joe@example.com", 0, NULL, NULL);   /* owner- keeps its "-" */
        AddrMapOptions none = { .delimiters = "", .is_ours = ours };
        mapped(t, &none, "joe+news@example.com", 0, NULL, NULL);
        table_list_free(t);
}

static void test_masquerade(void) {
        AddrMasquerade m = {};
        char *why = NULL;
        char *domains[] = { (char *) "!keep.example.com", (char *) "example.com", NULL };
        char *except[] = { (char *) "Root", (char *) "inline:{ mailer-daemon=yes }", NULL };
        CHECK_INT(addr_masquerade_init(&m, domains, except, &why), 0);
        masq(&m, "user@host.example.com", 1, "user@example.com");
        masq(&m, "user@a.b.example.com", 1, "user@example.com");
        masq(&m, "user@example.com", 0, NULL);
        masq(&m, "user@keep.example.com", 0, NULL);          /* ! : not masqueraded */
        masq(&m, "user@host.keep.example.com", 0, NULL);     /* ... nor its subdomains */
        masq(&m, "user@badexample.com", 0, NULL);            /* a suffix is not a parent */
        masq(&m, "root@host.example.com", 0, NULL);          /* masquerade_exceptions */
        masq(&m, "MAILER-DAEMON@host.example.com", 0, NULL); /* ... from a table */
        masq(&m, "user@[192.0.2.1]", 0, NULL);
        masq(&m, "user", 0, NULL);
        addr_masquerade_done(&m);

        /* Order matters: "example.com" first wins over the later "!keep...". */
        char *order[] = { (char *) "example.com", (char *) "!keep.example.com", NULL };
        CHECK_INT(addr_masquerade_init(&m, order, NULL, &why), 0);
        masq(&m, "user@keep.example.com", 1, "user@example.com");
        addr_masquerade_done(&m);

        char *badt[] = { (char *) "nosuchtype:x", NULL };
        CHECK(addr_masquerade_init(&m, domains, badt, &why) < 0);
        CHECK(why && strstr(why, "nosuchtype"));
        free(why);
}

static void test_classes_and_chain(void) {
        unsigned bits = 0;
        const char *bad = NULL;
        char *ok[] = { (char *) "envelope_sender", (char *) "Header_Recipient", NULL };
        CHECK_INT(addr_classes_parse(ok, &bits, &bad), 0);
        CHECK_INT(bits, ADDR_CLASS_ENVELOPE_SENDER | ADDR_CLASS_HEADER_RECIPIENT);
        char *wrong[] = { (char *) "envelope_sender", (char *) "header", NULL };
        CHECK_INT(addr_classes_parse(wrong, &bits, &bad), -EINVAL);
        CHECK_STR(bad, "header");

        AddrRewrite rw = { .canonical_classes = 0xf, .sender_canonical_classes = 0xf, .recipient_canonical_classes = 0xf,
                           .masquerade_classes = ADDR_CLASS_ENVELOPE_SENDER | ADDR_CLASS_HEADER_SENDER |
                                                 ADDR_CLASS_HEADER_RECIPIENT,
                           .map = { .delimiters = "+", .propagate = true, .is_ours = ours } };
        char *why = NULL;
        CHECK_INT(table_list_open("inline:{ alice@example.com=alice.a@host.example.com }", 0, &rw.sender_canonical_maps, &why), 0);
        CHECK_INT(table_list_open("inline:{ alice.a@host.example.com=wrong@x, bob@example.com=bob.b@example.com }", 0,
                                  &rw.canonical_maps, &why), 0);
        char *domains[] = { (char *) "example.com", NULL };
        CHECK_INT(addr_masquerade_init(&rw.masquerade, domains, NULL, &why), 0);
        AddrCanonicalContext c = { .origin = "example.com", .append_at_origin = true };

        char *out = NULL, *w = NULL;
        /* sender_canonical_maps, then canonical_maps (it has an entry for the result), then masquerading */
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_SENDER, "alice", &out, &w), 1);
        CHECK_STR(out, "wrong@x");
        free(out);
        /* recipients: no sender map; not masqueraded in the envelope by default */
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_RECIPIENT, "carol@host.example.com", &out, &w), 0);
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_HEADER_RECIPIENT, "carol@host.example.com", &out, &w), 1);
        CHECK_STR(out, "carol@example.com");
        free(out);
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_RECIPIENT, "bob", &out, &w), 1);
        CHECK_STR(out, "bob.b@example.com");
        free(out);
        /* the classes decide: no canonical_maps for envelope recipients */
        rw.canonical_classes = ADDR_CLASS_ENVELOPE_SENDER;
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_RECIPIENT, "bob@example.com", &out, &w), 0);
        /* the null sender stays */
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_SENDER, "", &out, &w), 0);
        CHECK(w == NULL);
        table_list_free(rw.sender_canonical_maps);
        table_list_free(rw.canonical_maps);
        addr_masquerade_done(&rw.masquerade);
}

static void record_step(const char *what, const char *before, const char *after, void *userdata) {
        char *buf = userdata;
        size_t l = strlen(buf);
        snprintf(buf + l, 512 - l, "%s: %s -> %s; ", what, before, after);
}

/* AddrRewrite.step sees each step that applies to the class, changed or not, in order. */
static void test_step_hook(void) {
        char steps[512] = "";
        AddrRewrite rw = { .canonical_classes = 0xf, .recipient_canonical_classes = 0xf,
                           .masquerade_classes = ADDR_CLASS_ENVELOPE_SENDER,
                           .map = { .is_ours = ours }, .step = record_step, .step_userdata = steps };
        CHECK_INT(table_list_open("inline:{ bob@example.com=bob.b@example.com }", 0, &rw.canonical_maps, NULL), 0);
        CHECK_INT(table_list_open("inline:{ x@y=z@y }", 0, &rw.recipient_canonical_maps, NULL), 0);
        AddrCanonicalContext c = { .origin = "example.com", .append_at_origin = true };
        char *out = NULL, *w = NULL;
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_RECIPIENT, "bob", &out, &w), 1);
        CHECK_STR(out, "bob.b@example.com");
        CHECK_STR(steps, "canonical form: bob -> bob@example.com; "
                         "recipient_canonical_maps: bob@example.com -> bob@example.com; "
                         "canonical_maps: bob@example.com -> bob.b@example.com; ");
        free(out);
        steps[0] = '\0';
        /* senders: no recipient map; masquerading (no domains) is reported unchanged */
        CHECK_INT(addr_rewrite(&rw, &c, ADDR_CLASS_ENVELOPE_SENDER, "a@b.example", &out, &w), 0);
        CHECK_STR(steps, "canonical form: a@b.example -> a@b.example; canonical_maps: a@b.example -> a@b.example; "
                         "masquerade_domains: a@b.example -> a@b.example; ");
        table_list_free(rw.canonical_maps);
        table_list_free(rw.recipient_canonical_maps);
}

int main(void) {
        test_step_hook();
        test_form();
        test_maps();
        test_masquerade();
        test_classes_and_chain();
        return 0;
}
