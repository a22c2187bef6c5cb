/* fence.c - the acting window (see fence.h for the inequality). */
#include "owner/fence.h"

#include "core/error.h"
#include "core/time.h"

#include <stdio.h>

static int64_t dd_fence_margin(int64_t threshold_ms)
{
    return DD_FENCE_MARGIN_FIXED_MS + (threshold_ms + 99) / 100;
}

int64_t dd_fence_min_threshold(int64_t interval_ms)
{
    /* smallest T with T >= 2I + 100 + ceil(T/100) */
    int64_t t = (2 * interval_ms + DD_FENCE_MARGIN_FIXED_MS) * 100 / 99;
    while (t < 2 * interval_ms + dd_fence_margin(t))
        t++;
    return t;
}

int dd_fence_plan_make(int64_t interval_ms, int64_t threshold_ms, int64_t stop_timeout_ms,
                       dd_fence_plan *out, char *err, size_t errlen)
{
    char a[32], b[32];
    if (interval_ms < DD_FENCE_MIN_INTERVAL_MS || interval_ms > INT64_MAX / 4) {
        dd_duration_format(DD_FENCE_MIN_INTERVAL_MS, a, sizeof(a));
        snprintf(err, errlen, "--heartbeat-interval must be at least %s", a);
        return DD_EINVAL;
    }
    if (threshold_ms > INT64_MAX / 4 || threshold_ms < dd_fence_min_threshold(interval_ms)) {
        dd_duration_format(threshold_ms, a, sizeof(a));
        /* exact: a rounded "2.1s" could itself be too short */
        snprintf(b, sizeof(b), "%lldms", (long long)dd_fence_min_threshold(interval_ms));
        char c[32];
        dd_duration_format(interval_ms, c, sizeof(c));
        snprintf(err, errlen,
                 "--stale-threshold %s is too short for --heartbeat-interval %s: an owner must "
                 "stop its child before anyone may call it stale, and a healthy owner's "
                 "heartbeats must land well before that; use at least %s (2 intervals + "
                 "100 ms + 1%%), 3x the interval is a good choice",
                 a, c, b);
        return DD_EINVAL;
    }
    if (stop_timeout_ms < 0)
        stop_timeout_ms = 0;
    dd_fence_plan p = {.interval_ms = interval_ms, .threshold_ms = threshold_ms};
    p.margin_ms = dd_fence_margin(threshold_ms);
    p.window_ms = threshold_ms - p.margin_ms;
    int64_t lead = (p.window_ms - interval_ms) / 2;
    p.term_lead_ms = stop_timeout_ms < lead ? stop_timeout_ms : lead;
    *out = p;
    return 0;
}
