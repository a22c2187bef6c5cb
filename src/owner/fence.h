/* fence.h - how long an owner may act after its last heartbeat landed.
 *
 * The promise: a host's child stops acting strictly before any other host
 * may start acting for the same dispatcher. Another host may act only after
 * the record's heartbeat is stale on Redis's clock (hb_ms written from
 * Redis TIME, judged against Redis TIME, older than max(its own threshold,
 * the record's ttl_ms) >= the owner's threshold T). So every acting deadline
 * is anchored to the moment S the owner SENT the last heartbeat that landed
 * (the write happens after S, so hb_ms >= S in real time), on the host's
 * CLOCK_BOOTTIME, and is never reset by anything but another landed write:
 *
 *   kill deadline   D = S + W,    W = T - M,    M = 100 ms + T/100
 *   TERM at             D - G,    G = min(stop timeout, (W - I) / 2)
 *
 * Earliest takeover: S + T*(1 - rho), rho the rate difference between this
 * host's clock and Redis's (NTP keeps it under 500 ppm; only rates matter,
 * offsets do not). D is earlier than that by M - rho*T >= 100 ms + T/200:
 * the margin for timer slack (a guard's poll waking late, SIGKILL delivery)
 * and clock rates. No heartbeat round trip needs a margin: S is taken
 * before the request goes out, so the round trip only shortens the window.
 *
 * Refused configurations: heartbeats go out every I from the previous send
 * (fixed rate); a healthy owner's next heartbeat lands by S + I + RTT. It
 * must land before the TERM point, for every accepted (I, T), with room for
 * a round trip of up to I/2:
 *
 *   W - G >= I + I/2   <=>   T >= 2*I + M   (checked by dd_fence_plan)
 *
 * and below it a healthy child would be stopped (the guard "window" equal
 * to the interval that issue 18 found killing healthy children). */
#ifndef DD_OWNER_FENCE_H
#define DD_OWNER_FENCE_H

#include <stddef.h>
#include <stdint.h>

#define DD_FENCE_MIN_INTERVAL_MS 100
#define DD_FENCE_MARGIN_FIXED_MS 100

typedef struct dd_fence_plan {
    int64_t interval_ms;  /* I */
    int64_t threshold_ms; /* T */
    int64_t margin_ms;    /* M */
    int64_t window_ms;    /* W: last landed send -> KILL */
    int64_t term_lead_ms; /* G: TERM this long before the KILL */
} dd_fence_plan;

/* Fills out for heartbeat interval I, stale threshold T and the child's
 * stop timeout (TERM -> KILL). Returns 0, or DD_EINVAL with the reason and
 * the smallest threshold that works in err. */
int dd_fence_plan_make(int64_t interval_ms, int64_t threshold_ms, int64_t stop_timeout_ms,
                       dd_fence_plan *out, char *err, size_t errlen);
/* The smallest threshold accepted for interval I. */
int64_t dd_fence_min_threshold(int64_t interval_ms);

#endif
