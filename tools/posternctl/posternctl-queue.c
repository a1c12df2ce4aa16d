/* posternctl-queue.c — placeholder until implemented. */
#include <stdio.h>
#include "posternctl.h"
int verb_queue(int argc, char *argv[]) { fprintf(stderr, "posternctl: queue is not implemented yet\n"); return 1; }
