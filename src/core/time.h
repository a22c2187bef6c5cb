/* time.h - clocks, durations and a small PRNG for jitter.
 *
 * Monotonic time for every timeout and interval (wall clock jumps must not
 * fire or stall timers); wall-clock milliseconds only for values that leave
 * the process (heartbeat timestamps in Redis, log lines). */
#ifndef DD_CORE_TIME_H
#define DD_CORE_TIME_H

#include <stdint.h>
#include <stddef.h>

uint64_t dd_mono_ms(void);
uint64_t dd_mono_us(void);
/* CLOCK_BOOTTIME: monotonic, shared by every process of the host, and
 * still running while the machine is suspended. Acting deadlines handed
 * from dispatchd to a child's guard use it (src/owner/fence.h): a host
 * that wakes from a suspend finds them passed. */
int64_t dd_boot_ms(void);
int64_t dd_boot_us(void);
int64_t dd_wall_ms(void);
int64_t dd_wall_us(void);

/* Parses "250ms", "5s", "2m", "1h", "1m30s", or a bare number of seconds
 * into milliseconds. Rejects negatives, empty strings, unknown units and
 * overflow with DD_EINVAL. */
int dd_duration_parse(const char *s, int64_t *out_ms);
/* Writes a compact human form ("1m30s", "250ms") into out. */
void dd_duration_format(int64_t ms, char *out, size_t outlen);

/* xorshift64* state; seed with dd_rng_seed (from getrandom) or a fixed value
 * in tests. Not for secrets. */
typedef struct dd_rng {
    uint64_t s;
} dd_rng;

void dd_rng_seed(dd_rng *r, uint64_t seed);   /* seed 0: take one from the kernel */
uint64_t dd_rng_next(dd_rng *r);
double dd_rng_unit(dd_rng *r);                /* uniform in [0, 1) */

#endif
