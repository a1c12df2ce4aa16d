/* config-doc.c — a build-time stand-in for posternctl that only knows the config verb; meson runs
 * "postern-config-doc config --markdown" to check (and regenerate) docs/parameters.md. */
#include "posternctl.h"

int main(int argc, char *argv[]) {
        if (argc < 2)
                return 2;
        return verb_config(argc - 1, argv + 1);
}
