/* posternctl-config.c — placeholder until implemented. */
#include <stdio.h>
#include "posternctl.h"
int verb_config(int argc, char *argv[]) { fprintf(stderr, "posternctl: config is not implemented yet\n"); return 1; }
