/* queue-id.h — queue ids: short, unique on this host across processes and restarts, sortable
 * by creation time, made of [0-9A-Z] only (they appear in logs and in file names).
 * Example: "4QF2K1C0X7ABZ" — seconds and microseconds since the epoch in base 32, then random
 * bits from getrandom(). */
#pragma once

#include <stdbool.h>

#define QUEUE_ID_MAX 24   /* buffer size including NUL */

void queue_id_new(char ret[QUEUE_ID_MAX]);
bool queue_id_valid(const char *s);
