/* posternctl.h — the verbs of posternctl, one file each (posternctl-<verb>.c). Each gets argv
 * starting at the verb's name and returns a process exit code. */
#pragma once

#include "conf/conf.h"

/* Loads main.cf (path NULL: $POSTERN_CONFIG or the default) into *ret, printing its warnings and
 * errors on stderr; <0 when it cannot be used (posternctl-check.c). */
int posternctl_load_main_cf(const char *path, Conf **ret);

/* Prints s as a JSON string, quotes included (posternctl-queue.c). */
void posternctl_json_string(const char *s);

int verb_config(int argc, char *argv[]);  /* posternctl-config.c */
int verb_check(int argc, char *argv[]);   /* posternctl-check.c */
int verb_queue(int argc, char *argv[]);   /* posternctl-queue.c */
int verb_flush(int argc, char *argv[]);   /* posternctl-control.c */
int verb_control(int argc, char *argv[]); /* posternctl-control.c: hold, release, delete, requeue */
int verb_route(int argc, char *argv[]);   /* posternctl-route.c */
int verb_import(int argc, char *argv[]);  /* posternctl-import.c */
