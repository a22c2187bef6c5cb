/* test_fence.c - the acting-window inequality (src/owner/fence.h), checked
 * for every accepted interval/threshold pair on a grid, and refusal below. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/error.h"
#include "owner/fence.h"

#include <stdio.h>
#include <string.h>

/* What fence.h promises, for a plan p:
 *  1. the KILL (last landed send + W) comes before the earliest moment
 *     anyone may take over (send + T, less what a 500 ppm clock-rate
 *     difference can eat), by at least 100 ms of timer slack;
 *  2. a healthy owner (a heartbeat sent every I from the previous send,
 *     landing within I/2) is never TERMed: the TERM point is >= I + I/2
 *     after the last landed send;
 *  3. the TERM lead never exceeds the stop timeout and is not negative. */
static void check_plan(int64_t i, int64_t t, int64_t stop, const dd_fence_plan *p)
{
    int64_t earliest_takeover = t - (t / 2000 + 1); /* rho = 500 ppm, rounded up */
    if (!(p->window_ms + DD_FENCE_MARGIN_FIXED_MS <= earliest_takeover)) {
        fprintf(stderr, "I=%lld T=%lld: kill at %lld, takeover from %lld\n", (long long)i,
                (long long)t, (long long)p->window_ms, (long long)earliest_takeover);
        fail();
    }
    if (!(p->window_ms - p->term_lead_ms >= i + i / 2)) {
        fprintf(stderr, "I=%lld T=%lld stop=%lld: TERM at %lld < 1.5 I\n", (long long)i,
                (long long)t, (long long)stop, (long long)(p->window_ms - p->term_lead_ms));
        fail();
    }
    assert_true(p->term_lead_ms >= 0);
    assert_true(p->term_lead_ms <= stop);
    assert_int_equal(p->window_ms, t - p->margin_ms);
}

static void test_every_accepted_pair(void **state)
{
    static const int64_t stops[] = {0, 1, 500, 10000, 600000};
    long accepted = 0, refused = 0;
    for (int64_t i = DD_FENCE_MIN_INTERVAL_MS; i <= 120000; i += i < 2000 ? 50 : 1000) {
        for (int64_t t = i; t <= 12 * i + 5000; t += t < 5000 ? 7 : 97) {
            for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
                dd_fence_plan p;
                char err[512];
                int rc = dd_fence_plan_make(i, t, stops[k], &p, err, sizeof(err));
                if (rc == 0) {
                    accepted++;
                    check_plan(i, t, stops[k], &p);
                    assert_true(t >= dd_fence_min_threshold(i));
                } else {
                    refused++;
                    assert_int_equal(rc, DD_EINVAL);
                    assert_true(t < dd_fence_min_threshold(i));
                    assert_non_null(strstr(err, "--stale-threshold"));
                }
            }
        }
    }
    assert_true(accepted > 1000);
    assert_true(refused > 1000);
}

static void test_known_values(void **state)
{
    dd_fence_plan p;
    char err[512];
    /* defaults: 5 s / 15 s, 10 s stop timeout */
    assert_int_equal(dd_fence_plan_make(5000, 15000, 10000, &p, err, sizeof(err)), 0);
    assert_int_equal(p.margin_ms, 250);
    assert_int_equal(p.window_ms, 14750);
    assert_int_equal(p.term_lead_ms, 4875);
    /* 1 s / 4.2 s (issue 18's overlap case) */
    assert_int_equal(dd_fence_plan_make(1000, 4200, 10000, &p, err, sizeof(err)), 0);
    assert_int_equal(p.window_ms, 4200 - 142);
    /* 1 s / 2 s: the guard window would equal the interval -> refused, and
     * the message names the smallest threshold that works */
    assert_int_equal(dd_fence_plan_make(1000, 2000, 10000, &p, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "at least 2122ms"));
    assert_int_equal(dd_fence_min_threshold(1000), 2122);
    assert_int_equal(dd_fence_plan_make(1000, 2122, 10000, &p, err, sizeof(err)), 0);
    assert_int_equal(dd_fence_plan_make(1000, 2121, 10000, &p, err, sizeof(err)), DD_EINVAL);
    /* an interval below the floor */
    assert_int_equal(dd_fence_plan_make(50, 15000, 10000, &p, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "--heartbeat-interval"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_accepted_pair),
        cmocka_unit_test(test_known_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
