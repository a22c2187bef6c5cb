/* backoff.h - capped exponential backoff with jitter, and a token bucket.
 *
 * Backoff: delay(n) = min(cap, base * 2^n), then "equal jitter": half of it
 * fixed, half random, so retries from many hosts spread out but never come
 * back sooner than half the nominal delay. */
#ifndef DD_CORE_BACKOFF_H
#define DD_CORE_BACKOFF_H

#include "core/time.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct dd_backoff {
    int64_t base_ms;
    int64_t cap_ms;
    unsigned attempt; /* failures since the last reset */
    dd_rng rng;
} dd_backoff;

void dd_backoff_init(dd_backoff *b, int64_t base_ms, int64_t cap_ms, uint64_t seed);
/* The delay before the next attempt; counts one more failure. */
int64_t dd_backoff_next(dd_backoff *b);
void dd_backoff_reset(dd_backoff *b);

typedef struct dd_token_bucket {
    double rate;  /* tokens per second; <= 0 (or NaN, inf at init) means unlimited */
    double burst; /* bucket size */
    double tokens;
    uint64_t last_us;
} dd_token_bucket;

void dd_token_bucket_init(dd_token_bucket *tb, double rate, double burst, uint64_t now_us);
/* Takes one token if available at now_us. */
bool dd_token_bucket_take(dd_token_bucket *tb, uint64_t now_us);
/* Microseconds until a token will be available (0 if one is now), at most
 * DD_TOKEN_BUCKET_MAX_WAIT_US (an hour: ask again then). */
#define DD_TOKEN_BUCKET_MAX_WAIT_US 3600000000ull
uint64_t dd_token_bucket_wait_us(dd_token_bucket *tb, uint64_t now_us);

#endif
