/* Unit tests of the metrics registry and its Prometheus text exposition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/buf.h"
#include "metrics/metrics.h"

#include <string.h>

static void test_counter_gauge_render(void **state)
{
    dd_metrics *m = dd_metrics_new();
    const char *const lbl[] = {"outcome", NULL};
    dd_metric *c = dd_metrics_family(m, DD_COUNTER, "dispatchd_takeovers_total",
                                     "Takeovers by outcome.", lbl, NULL, 0);
    dd_metric_add(c, DD_L1("started"), 1);
    dd_metric_add(c, DD_L1("started"), 2);
    dd_metric_add(c, DD_L1("a\"b\\c\nd"), 1);
    dd_metric *g = dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatchers_active", "Active.",
                                     NULL, NULL, 0);
    dd_metric_set(g, NULL, 0.5);
    assert_true(dd_metric_get(c, DD_L1("started")) == 3);
    dd_buf b = DD_BUF_INIT;
    dd_metrics_render(m, &b);
    const char *s = dd_buf_str(&b);
    assert_non_null(strstr(s, "# HELP dispatchd_takeovers_total Takeovers by outcome.\n"
                              "# TYPE dispatchd_takeovers_total counter\n"
                              "dispatchd_takeovers_total{outcome=\"started\"} 3\n"));
    assert_non_null(strstr(s, "dispatchd_takeovers_total{outcome=\"a\\\"b\\\\c\\nd\"} 1\n"));
    assert_non_null(strstr(s, "# TYPE dispatchd_dispatchers_active gauge\n"
                              "dispatchd_dispatchers_active 0.5\n"));
    dd_metric_remove(c, DD_L1("started"));
    assert_true(dd_metric_get(c, DD_L1("started")) == 0);
    dd_buf_release(&b);
    dd_metrics_free(m);
}

/* Values beyond long long used to be cast before the range check (undefined
 * behaviour, caught by UBSan); they render in exponent form. */
static void test_render_huge_values(void **state)
{
    dd_metrics *m = dd_metrics_new();
    const char *const lbl[] = {"v", NULL};
    dd_metric *g = dd_metrics_family(m, DD_GAUGE, "dispatchd_test_value", "Test.", lbl, NULL, 0);
    dd_metric_set(g, DD_L1("big"), 1e300);
    dd_metric_set(g, DD_L1("neg"), -1e300);
    dd_metric_set(g, DD_L1("edge"), 9223372036854775808.0); /* 2^63 */
    dd_metric_set(g, DD_L1("int"), 1e14);
    dd_buf b = DD_BUF_INIT;
    dd_metrics_render(m, &b);
    const char *s = dd_buf_str(&b);
    assert_non_null(strstr(s, "dispatchd_test_value{v=\"big\"} 1e+300\n"));
    assert_non_null(strstr(s, "dispatchd_test_value{v=\"neg\"} -1e+300\n"));
    assert_non_null(strstr(s, "dispatchd_test_value{v=\"edge\"} 9.2233720368547758e+18\n"));
    assert_non_null(strstr(s, "dispatchd_test_value{v=\"int\"} 100000000000000\n"));
    dd_buf_release(&b);
    dd_metrics_free(m);
}

static void test_histogram_render(void **state)
{
    dd_metrics *m = dd_metrics_new();
    const double buckets[] = {0.1, 1};
    dd_metric *h = dd_metrics_family(m, DD_HISTOGRAM, "x_seconds", "X.", NULL, buckets, 2);
    dd_metric_observe(h, NULL, 0.05);
    dd_metric_observe(h, NULL, 0.5);
    dd_metric_observe(h, NULL, 5);
    dd_buf b = DD_BUF_INIT;
    dd_metrics_render(m, &b);
    assert_non_null(strstr(dd_buf_str(&b), "x_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(dd_buf_str(&b), "x_seconds_bucket{le=\"1\"} 2\n"
                                           "x_seconds_bucket{le=\"+Inf\"} 3\n"
                                           "x_seconds_sum 5.55\n"
                                           "x_seconds_count 3\n"));
    dd_buf_release(&b);
    dd_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_render),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_render_huge_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
