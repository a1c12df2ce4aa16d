/* table-async.h — lookups in server tables (pgsql:, mysql:, ldap:, socketmap:, tcp:) that never
 * block an event loop.
 *
 * A daemon with an sd-event loop starts the lookup workers (table_async_start): a WorkPool whose
 * threads each open their own instance of a server table the first time they serve it, so each
 * table has up to max_threads connections (its connection pool), each used by one thread at a
 * time. Lookups reach the workers only through a TableMemo, a per-session (per-transaction)
 * record of answers:
 *
 *   table_memo_begin(memo, true);   ... code that looks things up ...   waits = table_memo_end(memo);
 *
 * Between begin and end, a lookup in a server table answers from the memo when the memo has the
 * answer (found, not found or the temporary error); otherwise, with may_wait, the key goes to the
 * workers and the lookup answers -EINPROGRESS, which callers pass up as they pass any error. When
 * table_memo_end() says a lookup is on its way, the caller throws away what the code decided,
 * parks (table_memo_wait: no thread waits) and runs the same code again when ready() is called:
 * that time the memo answers. Each run gets one more answer; code that looks up k keys in a row
 * runs k+1 times, which is cheap next to a database round trip. Without may_wait (a caller that
 * cannot run again), or in a process without workers, lookups run on the caller's thread as
 * before and their answers go into the memo. Without a current memo nothing changes.
 *
 * The memo keeps answers until table_memo_clear() (smtpd clears it with each transaction): an
 * answer is reused from RCPT time to queue time, never across transactions (Postfix caches
 * nothing). A lookup that fails is reported (table_error_report_set) from the loop thread. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "table.h"

/* Starts the workers for this process (threads start on the first lookup); idempotent. */
int table_async_start(sd_event *event, unsigned max_threads);
/* Stops them: running lookups finish, queued ones are dropped (their memos never answer). */
void table_async_stop(void);

typedef struct TableMemo TableMemo;
TableMemo *table_memo_new(void);
TableMemo *table_memo_ref(TableMemo *m);
TableMemo *table_memo_unref(TableMemo *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(TableMemo *, table_memo_unref);
/* Forgets every answer; lookups still on their way are ignored when they answer, and a wait
 * ends without a call. */
void table_memo_clear(TableMemo *m);
/* Makes m the current memo of this thread (NULL: none) until table_memo_end(). */
void table_memo_begin(TableMemo *m, bool may_wait);
/* Ends the bracket; true when the run guessed (a lookup went to the workers): the caller throws
 * the run's result away, then waits (table_memo_wait) and runs again, or runs again at once when
 * table_memo_wait() says the answers are there already. */
bool table_memo_end(TableMemo *m);
/* Whether this thread's current run has taken a key for "not found" while it is on its way:
 * code that would change something with the run's result (not only decide) checks it first. */
bool table_memo_guessing(void);
/* Calls ready(userdata) once, from the event loop, when every lookup sent for m has answered.
 * Returns false (and never calls) when nothing is on its way. */
bool table_memo_wait(TableMemo *m, void (*ready)(void *userdata), void *userdata);
void table_memo_unwait(TableMemo *m);
/* Unwaits and unrefs: for an owner that goes away while lookups may be on their way (they keep
 * the memo until they answer, and call nothing). Returns NULL. */
TableMemo *table_memo_drop(TableMemo *m);

/* For table.c: whether the current memo answers key in the server table spec (*ret_r, and
 * *ret_value when found), having sent it to the workers if need be (*ret_r = -EINPROGRESS). */
bool table_memo_lookup(const char *spec, TableFlags flags, const char *key, int *ret_r, char **ret_value);
/* For table.c: an answer found on the caller's thread, for the current memo. */
void table_memo_note(const char *spec, const char *key, int r, const char *value);
/* table.c's, for the workers: a server table's lookup with its failure's reason (not reported),
 * and the reporter of failures. */
int table_lookup_server(Table *t, const char *key, char **ret_value, char **ret_reason);
void table_report_failure(const char *spec, const char *reason);
/* For table.c: a server table was opened (outside the workers), e.g. a reload: the workers close
 * their instances and open them again from the (maybe changed) settings before the next lookup. */
void table_async_opened(void);
