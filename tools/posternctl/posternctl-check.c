/* posternctl-check.c — placeholder until implemented. */
#include <stdio.h>
#include "posternctl.h"
int verb_check(int argc, char *argv[]) { fprintf(stderr, "posternctl: check is not implemented yet\n"); return 1; }
