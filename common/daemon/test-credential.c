/* test-credential.c — credential names derived from paths (unambiguous, no characters that
 * LoadCredential= or a file name would take apart) and the lookup in $CREDENTIALS_DIRECTORY. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credential.h"
#include "../basic/tests.h"

static void check_name(const char *path, const char *want) {
        char *name = NULL;
        CHECK_INT(credential_name_for_path(path, &name), 0);
        CHECK_STR(name, want);
        free(name);
}

int main(void) {
        check_name("/etc/ssl/private/ssl-cert-snakeoil.key", "etc-ssl-private-ssl_2dcert_2dsnakeoil.key");
        check_name("//etc//postern/key_file.pem", "etc-postern-key_5ffile.pem");
        check_name("/.hidden/a b:c", "_2ehidden-a_20b_3ac");
        check_name("/dir/", "dir");
        /* "-" and "/" differ, "_" is escaped too: these cannot collide */
        char *a = NULL, *b = NULL;
        CHECK_INT(credential_name_for_path("/a-b", &a), 0);
        CHECK_INT(credential_name_for_path("/a/b", &b), 0);
        CHECK(strcmp(a, b) != 0);
        free(a);
        free(b);
        char *none = NULL;
        CHECK_INT(credential_name_for_path("relative/key.pem", &none), -EINVAL);
        CHECK_INT(credential_name_for_path("/", &none), -EINVAL);
        char longpath[400];
        memset(longpath, 'x', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        CHECK_INT(credential_name_for_path(longpath, &none), -EINVAL);
        CHECK(!none);

        /* the lookup: only when $CREDENTIALS_DIRECTORY has the file */
        char dir[] = "/tmp/postern-cred.XXXXXX";
        CHECK(mkdtemp(dir));
        char *found = NULL;
        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK_INT(credential_path_for("/etc/ssl/private/k.key", &found), 0);
        CHECK(setenv("CREDENTIALS_DIRECTORY", dir, 1) == 0);
        CHECK_INT(credential_path_for("/etc/ssl/private/k.key", &found), 0);
        CHECK(!found);
        char file[200];
        snprintf(file, sizeof file, "%s/etc-ssl-private-k.key", dir);
        FILE *f = fopen(file, "w");
        CHECK(f && fputs("key\n", f) >= 0 && fclose(f) == 0);
        CHECK_INT(credential_path_for("/etc/ssl/private/k.key", &found), 1);
        CHECK_STR(found, file);
        free(found);
        unlink(file);
        rmdir(dir);
        return 0;
}
