/* queue-id.c — queue ids: 16 characters of base 32 ([0-9A-V], whose ASCII order matches the
 * numeric order): 7 for the seconds since the epoch, 4 for the microseconds, 5 for 25 random
 * bits from getrandom(). Ids sort by creation time. Within a process the timestamp part is made
 * strictly increasing (a clock that stands still or steps back is bumped by 1 µs), so ids of one
 * process never collide and sort in generation order; ids of different processes made in the
 * same microsecond differ in their random part. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "queue-id.h"
#include "../basic/macro.h"

#define QUEUE_ID_LEN 16

static const char queue_id_digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

static void queue_id_put(char *out, uint64_t v, int ndigits) {
        for (int i = ndigits - 1; i >= 0; i--) {
                out[i] = queue_id_digits[v & 31];
                v >>= 5;
        }
}

static uint32_t queue_id_random(void) {
        uint32_t r = 0;
        ssize_t k;
        do
                k = getrandom(&r, sizeof r, GRND_NONBLOCK);
        while (k < 0 && errno == EINTR);
        if (k != (ssize_t) sizeof r) {
                /* no entropy pool yet (early boot): fall back to a weaker mix */
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                r = (uint32_t) ts.tv_nsec ^ ((uint32_t) getpid() << 12) ^ (uint32_t) (uintptr_t) &ts;
        }
        return r;
}

/* Makes a new id; ret gets a NUL-terminated string of QUEUE_ID_LEN characters. */
void queue_id_new(char ret[QUEUE_ID_MAX]) {
        static _Atomic uint64_t last = 0;
        uint64_t now = now_usec(CLOCK_REALTIME);
        uint64_t prev = atomic_load(&last), t;

        do
                t = now > prev ? now : prev + 1;
        while (!atomic_compare_exchange_weak(&last, &prev, t));

        queue_id_put(ret, t / USEC_PER_SEC, 7);
        queue_id_put(ret + 7, t % USEC_PER_SEC, 4);
        queue_id_put(ret + 11, queue_id_random() & ((1u << 25) - 1), 5);
        ret[QUEUE_ID_LEN] = '\0';
}

/* Whether s looks like a queue id: 1..20 characters of [0-9A-Z]. */
bool queue_id_valid(const char *s) {
        if (!s)
                return false;
        size_t n = 0;
        for (; s[n]; n++) {
                if (n >= 20)
                        return false;
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'A' && s[n] <= 'Z')))
                        return false;
        }
        return n > 0;
}
