/* dd_watch_spread (owner/watch.h): how the loss watch spreads the describes
 * of runs a presence check did not list, at most a room's worth per round,
 * in turn, none forgotten. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "owner/watch.h"

#include <string.h>

/* 1,000 owners all unlisted at once: every round picks at most the cap,
 * each owner exactly once, all within ceil(1000 / cap) rounds. */
static void test_cap_holds_and_all_go(void **state)
{
    (void)state;
    enum { N = 1000 };
    static bool want[N];
    static int seen[N];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < N; i++)
        want[i] = true;
    size_t cursor = 0, rounds = 0, left = N;
    size_t picked[DD_WATCH_DESCRIBES_MAX];
    while (left > 0) {
        size_t k = dd_watch_spread(want, N, &cursor, DD_WATCH_DESCRIBES_MAX, picked);
        assert_true(k <= DD_WATCH_DESCRIBES_MAX);
        assert_true(k > 0);
        for (size_t j = 0; j < k; j++) {
            assert_true(want[picked[j]]);
            want[picked[j]] = false;
            seen[picked[j]]++;
        }
        left -= k;
        rounds++;
        assert_true(rounds <= (N + DD_WATCH_DESCRIBES_MAX - 1) / DD_WATCH_DESCRIBES_MAX);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
}

/* In turn from where the last round stopped, wrapping; a full room picks
 * nothing and moves nothing. */
static void test_in_turn(void **state)
{
    (void)state;
    bool want[10] = {false};
    want[1] = want[4] = want[8] = true;
    size_t picked[4], cursor = 5;
    assert_int_equal(dd_watch_spread(want, 10, &cursor, 2, picked), 2);
    assert_int_equal(picked[0], 8);
    assert_int_equal(picked[1], 1); /* wrapped */
    assert_int_equal(cursor, 2);
    assert_int_equal(dd_watch_spread(want, 10, &cursor, 0, picked), 0);
    assert_int_equal(cursor, 2);
    assert_int_equal(dd_watch_spread(want, 10, &cursor, 4, picked), 3);
    assert_int_equal(picked[0], 4);
    assert_int_equal(picked[1], 8);
    assert_int_equal(picked[2], 1);
    assert_int_equal(dd_watch_spread(want, 0, &cursor, 4, picked), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_holds_and_all_go),
        cmocka_unit_test(test_in_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
