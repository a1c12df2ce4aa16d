/* posternctl.h — the verbs of posternctl, one file each (posternctl-<verb>.c). Each gets argv
 * starting at the verb's name and returns a process exit code. */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "queue/queue.h"

/* Loads main.cf (path NULL: $POSTERN_CONFIG or the default) into *ret, printing its warnings and
 * errors on stderr; <0 when it cannot be used (posternctl-check.c). */
int posternctl_load_main_cf(const char *path, Conf **ret);

/* Opens the queue read-only: from dir, or main.cf's queue_directory when dir is NULL. Returns
 * EX_OK with *ret set, or with *ret NULL when there is no queue.db yet (nothing was ever
 * queued); another exit code after printing why (posternctl-queue.c). */
int posternctl_queue_open(const char *verb, const char *dir, Queue **ret);

/* A queue id argument, with posternctl queue's "!" (on hold) dropped; false if it is none. */
bool posternctl_queue_id_arg(const char *arg, char id[QUEUE_ID_MAX + 2]);

/* Prints s as a JSON string, quotes included (posternctl-queue.c). */
void posternctl_json_string(const char *s);

int verb_config(int argc, char *argv[]);  /* posternctl-config.c */
/* config -M, -F or -P (mode): master.cf's entries, fields or -o parameters selected by args
 * ("service[/type[/name]]"; none = all); values_only for -h (posternctl-master.c). */
int posternctl_config_master(Conf *c, char mode, bool values_only, char **args, int nargs);
int verb_check(int argc, char *argv[]);   /* posternctl-check.c */
int verb_queue(int argc, char *argv[]);   /* posternctl-queue.c */
int verb_flush(int argc, char *argv[]);   /* posternctl-control.c */
int verb_control(int argc, char *argv[]); /* posternctl-control.c: hold, release, delete, requeue */
/* posternctl-show.c: postcat's sections, and the pure parts its unit test checks. */
enum { SHOW_ENVELOPE = 1 << 0, SHOW_HEADER = 1 << 1, SHOW_BODY = 1 << 2 };
int verb_show(int argc, char *argv[]);
/* Where the body of text[0..len) starts: after the first empty line; len when there is none. */
size_t posternctl_show_body_offset(const char *text, size_t len);
/* Writes the chosen sections (SHOW_*; 0 = all) of one message in postcat's layout. */
void posternctl_show_write(FILE *f, const QueueMessage *m, const QueueRecipient *rcpts, size_t n,
                           const char *content, size_t len, unsigned sections);
/* posternctl-qshape.c: the table of qshape, and its pure parts for the unit test. */
#define QSHAPE_BUCKETS 10   /* 5 10 20 40 80 160 320 640 1280 1280+ minutes */
typedef struct QShapeRow {
        char *key;                      /* the domain (status: a deferral reason) */
        uint64_t total;
        uint64_t counts[QSHAPE_BUCKETS];
} QShapeRow;
typedef struct QShape {
        QShapeRow all;                  /* the TOTAL row */
        QShapeRow *rows;
        size_t n, allocated;
        struct StrMap *index;           /* key -> row index + 1 */
} QShape;
int verb_qshape(int argc, char *argv[]);
/* The age bucket (column) of an age: 0 under 5 minutes, ..., QSHAPE_BUCKETS - 1 from 1280. */
size_t qshape_bucket(usec_t age_usec);
/* Counts one recipient (or message, for -s) at domain with this age; -ENOMEM. */
int qshape_add(QShape *s, const char *domain, usec_t age_usec);
/* Orders the rows largest total first, ties by key. */
void qshape_sort(QShape *s);
/* Prints the header, TOTAL and the top domains (0 = all), largest first (sorts). */
void qshape_print(FILE *f, QShape *s, size_t top);
void qshape_done(QShape *s);

int verb_log(int argc, char *argv[]);     /* posternctl-log.c */
int verb_status(int argc, char *argv[]);  /* posternctl-status.c */
int verb_route(int argc, char *argv[]);   /* posternctl-route.c */
int verb_verify(int argc, char *argv[]);  /* posternctl-verify.c */
int verb_tlsrpt(int argc, char *argv[]);  /* posternctl-tlsrpt.c */
int verb_import(int argc, char *argv[]);  /* posternctl-import.c */
