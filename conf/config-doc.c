/* config-doc.c — a build-time stand-in for posternctl that knows only the verbs this directory's
 * owner maintains (config, check). meson runs "postern-config-doc config --markdown" to check and
 * regenerate docs/parameters.md, and test-posternctl-config.sh drives both verbs. */
#include <string.h>

#include "posternctl.h"

int main(int argc, char *argv[]) {
        if (argc < 2)
                return 2;
        if (strcmp(argv[1], "check") == 0)
                return verb_check(argc - 1, argv + 1);
        return verb_config(argc - 1, argv + 1);
}
