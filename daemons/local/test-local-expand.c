/* test-local-expand.c — unit test of local-expand.c (local(8)'s $user, $home, $extension,
 * $recipient_delimiter ... for forward_path and luser_relay) and of local_base_length()'s
 * owner_request_special rule. */
#include <pwd.h>

#include "basic/mac-expand.h"
#include "basic/tests.h"
#include "local-expander.h"

static const char FILTER[] = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

static void check(const LocalSettings *s, const char *template, const char *user, const char *address,
                  const struct passwd *pw, const char *filter, const char *expect, unsigned expect_flags) {
        char *out = NULL;
        unsigned flags = 99;
        CHECK_INT(local_expand(s, template, user, address, pw, filter, &out, &flags), 0);
        if (strcmp(out, expect) != 0 || flags != expect_flags) {
                fprintf(stderr, "\"%s\" for %s: got \"%s\" flags %u, expected \"%s\" flags %u\n", template, address,
                        out, flags, expect, expect_flags);
                exit(1);
        }
        free(out);
}

int main(void) {
        struct passwd pw = { .pw_name = (char *) "bob", .pw_dir = (char *) "/home/bob",
                             .pw_shell = (char *) "/bin/bash", .pw_uid = 1000, .pw_gid = 1000 };
        LocalSettings s = { .recipient_delimiter = (char *) "+-", .owner_request_special = true };
        const char *fp = "$home/.forward${recipient_delimiter}${extension}";

        /* forward_path: the element with an extension only when the address has one */
        check(&s, fp, "bob", "bob+lists@example.com", &pw, FILTER, "/home/bob/.forward+lists", 0);
        check(&s, fp, "bob", "bob-lists@example.com", &pw, FILTER, "/home/bob/.forward-lists", 0);
        check(&s, fp, "bob", "bob@example.com", &pw, FILTER, "/home/bob/.forward", MAC_EXPAND_UNDEF);
        check(&s, "$home/.forward", "bob", "bob@example.com", &pw, FILTER, "/home/bob/.forward", 0);
        /* the filter: values only */
        check(&s, "/x/$extension;", "bob", "bob+a;b|c@example.com", &pw, FILTER, "/x/a_b_c;", 0);
        /* every attribute */
        check(&s, "$user|$local|$mailbox|$domain|$recipient|$shell", "bob", "bob+x@example.com", &pw, NULL,
              "bob|bob+x|bob+x|example.com|bob+x@example.com|/bin/bash", 0);
        /* luser_relay for an unknown name: no home, no shell */
        check(&s, "admin+$user${extension?-$extension}", "who", "who+ext@example.com", NULL, NULL,
              "admin+who-ext", 0);
        check(&s, "$home", "who", "who@example.com", NULL, NULL, "", MAC_EXPAND_UNDEF);
        check(&s, "${domain:none}@x", "who", "who", NULL, NULL, "none@x", 0);
        /* owner_request_special: owner-x and x-request stay whole when '-' is a delimiter */
        check(&s, "[$user][${extension}]", "owner-list", "owner-list@example.com", NULL, NULL, "[owner-list][]",
              MAC_EXPAND_UNDEF);
        CHECK_INT(local_base_length(&s, "owner-list"), 10);
        CHECK_INT(local_base_length(&s, "list-request"), 12);
        CHECK_INT(local_base_length(&s, "list-other"), 4);
        CHECK_INT(local_base_length(&s, "owner+x"), 5);   /* not at '-' though */
        s.owner_request_special = false;
        CHECK_INT(local_base_length(&s, "owner-list"), 5);
        CHECK_INT(local_base_length(&s, "list-request"), 4);
        s.recipient_delimiter = (char *) "+";
        s.owner_request_special = true;
        CHECK_INT(local_base_length(&s, "list-request"), 12);
        CHECK_INT(local_base_length(&s, "owner-list+x"), 10);
        return 0;
}
