/* Unit tests of the reconciler's pure parts: stagger, jitter bounds, the
 * next wake-up and the termination reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/time.h"
#include "reconcile/reconcile.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void test_stagger_bounds_and_spread(void **state)
{
    const int64_t iv = 60000;
    int64_t lo = iv, hi = 0;
    /* deterministic per holder (u fixed), within 10 % + 2 % of the interval */
    for (int i = 0; i < 1000; i++) {
        char h[32];
        snprintf(h, sizeof(h), "host-%d", i);
        int64_t a = dd_reconcile_stagger_ms(h, iv, 0.0);
        assert_int_equal(a, dd_reconcile_stagger_ms(h, iv, 0.0));
        assert_true(a >= 0 && a < iv / 10);
        int64_t b = dd_reconcile_stagger_ms(h, iv, 0.999999);
        assert_true(b >= a && b < a + iv / 50 + 1);
        assert_true(b < iv * 12 / 100);
        lo = a < lo ? a : lo;
        hi = a > hi ? a : hi;
    }
    /* a fleet spreads over (most of) the window, not one instant */
    assert_true(lo < 600);
    assert_true(hi > 5400);
    /* degenerate intervals do not divide by zero */
    assert_int_equal(dd_reconcile_stagger_ms("h", 0, 0.5), 0);
    assert_int_equal(dd_reconcile_stagger_ms("h", 5, 0.5), 0);
    assert_int_equal(dd_reconcile_stagger_ms(NULL, 1000, 0.0) >= 0, 1);
}

static void test_jitter_bounds(void **state)
{
    dd_rng rng;
    dd_rng_seed(&rng, 42);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 100000; i++) {
        int64_t j = dd_reconcile_jitter_ms(60000, dd_rng_unit(&rng));
        assert_true(j >= 54000 && j < 66000);
        lo = j < lo ? j : lo;
        hi = j > hi ? j : hi;
    }
    assert_true(lo < 54100);
    assert_true(hi > 65900);
    assert_int_equal(dd_reconcile_jitter_ms(60000, 0.0), 54000);
    assert_int_equal(dd_reconcile_jitter_ms(60000, 0.5), 60000);
}

static void test_next_wake(void **state)
{
    const int64_t now = 1000000, thr = 15000;
    /* nothing recorded: the periodic deadline */
    assert_int_equal(dd_reconcile_next_wake_ms(now, -1, thr, 60000, 0), 60000);
    /* a heartbeat 5 s old turns stale in 10 s (+1 ms: strictly older, +50 ms slack) */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - 5000, thr, 60000, 0), 10051);
    /* exactly at the threshold: stale 1 ms later */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - thr, thr, 60000, 0), 51);
    /* the periodic deadline wins when sooner */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - 5000, thr, 3000, 0), 3000);
    /* a heartbeat from the future (clock skew): later, capped by periodic */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now + 600000, thr, 60000, 0), 60000);
    /* early wake-ups never come faster than the minimum gap */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - thr, thr, 60000, 1000), 1000);
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - 5000, thr, 60000, 1000), 10051);
    /* never negative */
    assert_int_equal(dd_reconcile_next_wake_ms(now, now - 10 * thr, thr, 60000, 0), 0);
    assert_int_equal(dd_reconcile_next_wake_ms(now, -1, thr, -5, 0), 0);
}

static void test_reason(void **state)
{
    char buf[128];
    dd_reconcile_reason(buf, sizeof(buf), "host-a", 90000);
    assert_string_equal(buf, "stale: no heartbeat from host-a for 1m30s");
    dd_reconcile_reason(buf, sizeof(buf), "host-b", 250);
    assert_string_equal(buf, "stale: no heartbeat from host-b for 250ms");
    dd_reconcile_reason(buf, sizeof(buf), "h", 15001);
    assert_non_null(strstr(buf, "for 15"));
    dd_reconcile_reason(buf, sizeof(buf), NULL, -5);
    assert_string_equal(buf, "stale: no heartbeat from ? for 0ms");
    /* bounded: never overflows a small buffer */
    char small[16];
    dd_reconcile_reason(small, sizeof(small), "a-very-long-server-id", 1000);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* When an unrecorded running dispatcher is old enough to sweep. A start
 * time the client could not read (0: absent, malformed, or outside
 * 1677-2262 like Go's zero time 0001-01-01) leaves only the first sighting;
 * a start in the future (clock skew) is not old. */
static void test_sweep_due(void **state)
{
    const int64_t now = 1795437185000LL, thr = 15000;
    assert_true(dd_reconcile_sweep_due(now, now - 16000, now - 16000, thr));
    assert_false(dd_reconcile_sweep_due(now, now - 16000, now - 1000, thr)); /* just started */
    assert_false(dd_reconcile_sweep_due(now, now - 1000, now - 60000, thr)); /* just seen */
    assert_false(dd_reconcile_sweep_due(now, now - 15000, now - 60000, thr)); /* not over */
    assert_true(dd_reconcile_sweep_due(now, now - 16000, 0, thr));          /* unknown start */
    assert_false(dd_reconcile_sweep_due(now, now - 1000, 0, thr));
    assert_false(dd_reconcile_sweep_due(now, now - 16000, now + 3600000, thr)); /* future */
    /* No overflow at the extremes. */
    assert_true(dd_reconcile_sweep_due(now, now - 16000, INT64_MIN, thr));
    assert_false(dd_reconcile_sweep_due(now, now - 16000, INT64_MAX, thr));
    assert_false(dd_reconcile_sweep_due(now, INT64_MAX, now - 16000, thr));
    assert_true(dd_reconcile_sweep_due(INT64_MAX, INT64_MIN, INT64_MIN, thr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stagger_bounds_and_spread),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_next_wake),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_sweep_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
