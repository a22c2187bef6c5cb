#include "core/backoff.h"

#include <math.h>

void dd_backoff_init(dd_backoff *b, int64_t base_ms, int64_t cap_ms, uint64_t seed)
{
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
    b->attempt = 0;
    dd_rng_seed(&b->rng, seed);
}

int64_t dd_backoff_next(dd_backoff *b)
{
    int64_t d = b->base_ms;
    for (unsigned i = 0; i < b->attempt && d < b->cap_ms; i++)
        d *= 2;
    if (d > b->cap_ms)
        d = b->cap_ms;
    if (b->attempt < 64)
        b->attempt++;
    int64_t half = d / 2;
    return half + (int64_t)(dd_rng_unit(&b->rng) * (double)(d - half + 1));
}

void dd_backoff_reset(dd_backoff *b)
{
    b->attempt = 0;
}

void dd_token_bucket_init(dd_token_bucket *tb, double rate, double burst, uint64_t now_us)
{
    /* NaN or infinite: unlimited, like <= 0 (NaN would poison every sum). */
    tb->rate = isfinite(rate) && rate > 0 ? rate : 0;
    tb->burst = burst >= 1 && isfinite(burst) ? burst : 1;
    tb->tokens = tb->burst;
    tb->last_us = now_us;
}

static void dd_token_bucket_refill(dd_token_bucket *tb, uint64_t now_us)
{
    if (now_us > tb->last_us) {
        tb->tokens += (double)(now_us - tb->last_us) / 1e6 * tb->rate;
        if (tb->tokens > tb->burst)
            tb->tokens = tb->burst;
    }
    tb->last_us = now_us;
}

bool dd_token_bucket_take(dd_token_bucket *tb, uint64_t now_us)
{
    if (tb->rate <= 0)
        return true;
    dd_token_bucket_refill(tb, now_us);
    if (tb->tokens >= 1.0) {
        tb->tokens -= 1.0;
        return true;
    }
    return false;
}

uint64_t dd_token_bucket_wait_us(dd_token_bucket *tb, uint64_t now_us)
{
    if (tb->rate <= 0)
        return 0;
    dd_token_bucket_refill(tb, now_us);
    if (tb->tokens >= 1.0)
        return 0;
    /* A tiny rate makes this any size: compare before converting (a double
     * beyond uint64_t's range converts to anything). The caller asks again
     * when the wait is over. */
    double us = (1.0 - tb->tokens) / tb->rate * 1e6;
    if (!(us < (double)DD_TOKEN_BUCKET_MAX_WAIT_US))
        return DD_TOKEN_BUCKET_MAX_WAIT_US;
    return (uint64_t)us + 1;
}
