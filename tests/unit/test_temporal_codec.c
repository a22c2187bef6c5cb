/* Unit tests of src/temporal/codec: payload base64, timestamps, escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "temporal/codec.h"
#include "temporal/temporal.h"

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

static void test_base64(void **state)
{
    const char *in[] = {"", "j", "js", "json/plain", "{\"server_id\":\"h1\"}"};
    const char *out[] = {"", "ag==", "anM=", "anNvbi9wbGFpbg==", "eyJzZXJ2ZXJfaWQiOiJoMSJ9"};
    for (size_t i = 0; i < 5; i++) {
        dd_buf b = DD_BUF_INIT, d = DD_BUF_INIT;
        dd_tc_base64_encode(&b, in[i], strlen(in[i]));
        assert_string_equal(dd_buf_str(&b), out[i]);
        assert_int_equal(dd_tc_base64_decode(&d, dd_buf_str(&b)), 0);
        assert_string_equal(dd_buf_str(&d), in[i]);
        dd_buf_release(&b);
        dd_buf_release(&d);
    }
    dd_buf d = DD_BUF_INIT;
    assert_int_equal(dd_tc_base64_decode(&d, "a*b"), DD_EPROTO);
    dd_buf_release(&d);
}

static void test_time(void **state)
{
    assert_int_equal(dd_tc_parse_time_ns("1970-01-01T00:00:01Z"), 1000000000LL);
    assert_int_equal(dd_tc_parse_time_ns("2026-11-23T12:33:05.835655703Z"),
                     1795437185835655703LL);
    assert_int_equal(dd_tc_parse_time_ns("2026-11-23T12:33:05.8Z"), 1795437185800000000LL);
    assert_int_equal(dd_tc_parse_time_ns("2026-11-23T13:33:05.8+01:00"), 1795437185800000000LL);
    assert_int_equal(dd_tc_parse_time_ns("garbage"), 0);
    assert_int_equal(dd_tc_parse_time_ns(NULL), 0);
    /* Outside what int64 nanoseconds hold: refused (0), not overflowed.
     * Go's zero time is what a server sends for a time it never set. */
    assert_int_equal(dd_tc_parse_time_ns("0001-01-01T00:00:00Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("9999-12-31T23:59:59.999999999Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("1677-09-21T00:12:43.145224191Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("2262-04-11T23:47:16.854775808Z"), 0);
    /* ... and the very edges still parse. */
    assert_true(dd_tc_parse_time_ns("2262-04-11T23:47:16.854775807Z") == INT64_MAX);
    assert_true(dd_tc_parse_time_ns("1677-09-21T00:12:44Z") == -9223372036000000000LL);
    assert_true(dd_tc_parse_time_ns("1969-12-31T23:59:59.5Z") == -500000000LL);
    /* Fields out of range are malformed, not normalised into another day. */
    assert_int_equal(dd_tc_parse_time_ns("2026-13-01T00:00:00Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("2026-01-32T00:00:00Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("2026-01-01T24:00:00Z"), 0);
    assert_int_equal(dd_tc_parse_time_ns("2026-01-01T00:00:00+99:00"), 0);
}

static void test_url_escape(void **state)
{
    dd_buf b = DD_BUF_INIT;
    dd_tc_url_escape(&b, "dispatcher-a%2Db-c ~/?&=+");
    assert_string_equal(dd_buf_str(&b), "dispatcher-a%252Db-c%20~%2F%3F%26%3D%2B");
    dd_buf_release(&b);
}

static void test_uuid_and_enum(void **state)
{
    dd_rng r;
    char a[37], b[37];
    dd_rng_seed(&r, 7);
    dd_tc_uuid4(&r, a);
    dd_tc_uuid4(&r, b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);

    dd_buf e = DD_BUF_INIT;
    assert_int_equal(dd_tc_enum_name(&e, "WORKFLOW_ID_CONFLICT_POLICY_", "terminate_existing"), 0);
    assert_string_equal(dd_buf_str(&e), "WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING");
    dd_buf_reset(&e);
    assert_int_equal(dd_tc_enum_name(&e, "WORKFLOW_ID_CONFLICT_POLICY_",
                                     "WORKFLOW_ID_CONFLICT_POLICY_FAIL"), 0);
    assert_string_equal(dd_buf_str(&e), "WORKFLOW_ID_CONFLICT_POLICY_FAIL");
    dd_buf_reset(&e);
    assert_int_equal(dd_tc_enum_name(&e, "X_", "bad name"), DD_EINVAL);
    assert_int_equal(dd_tc_enum_name(&e, "X_", ""), DD_EINVAL);
    dd_buf_release(&e);
    assert_string_equal(dd_temporal_status_name(DD_WF_TERMINATED), "TERMINATED");
    assert_string_equal(dd_temporal_status_name((dd_temporal_status)99), "UNKNOWN");
}

/* jansson's real peak, counted by an allocator set in main(). */
static size_t j_live, j_peak;

static void *j_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) {
        j_live += malloc_usable_size(p);
        if (j_live > j_peak)
            j_peak = j_live;
    }
    return p;
}

static void j_free(void *p)
{
    if (p)
        j_live -= malloc_usable_size(p);
    free(p);
}

static size_t parse_peak(const char *text, size_t len)
{
    size_t base = j_live;
    j_peak = j_live;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_decref(v);
    return j_peak - base;
}

/* The estimate is above what jansson really takes, for the shapes a hostile
 * server would pick and for an ordinary reply, and not absurdly so for the
 * ordinary one (it must not refuse real replies). */
static void test_json_cost(void **state)
{
    static const char *const unit[] = {"{},", "[],", "1,", "\"\",", "{\"a\":1},", "[[]],",
                                       "\"abcdefghijklmnopqrstuvwxyz0123456789\",", "true,",
                                       "-1.5e3,", "{\"k\":\"v\",\"l\":[1,2,3]},"};
    for (size_t u = 0; u < sizeof(unit) / sizeof(unit[0]); u++) {
        dd_buf b = DD_BUF_INIT;
        dd_buf_putc(&b, '[');
        for (int i = 0; i < 20000; i++)
            dd_buf_puts(&b, unit[u]);
        dd_buf_puts(&b, "0]");
        size_t real = parse_peak(b.data, b.len);
        size_t est = dd_tc_json_cost(b.data, b.len, SIZE_MAX - 1);
        if (est < real)
            fail_msg("'%s' x 20000: estimated %zu, jansson took %zu", unit[u], est, real);
        dd_buf_release(&b);
    }
    /* One big object (its hashtable doubles), and deep nesting. */
    dd_buf b = DD_BUF_INIT;
    dd_buf_putc(&b, '{');
    for (int i = 0; i < 20000; i++)
        dd_buf_printf(&b, "%s\"key-%d\":%d", i ? "," : "", i, i);
    dd_buf_putc(&b, '}');
    size_t real = parse_peak(b.data, b.len);
    assert_true(dd_tc_json_cost(b.data, b.len, SIZE_MAX - 1) >= real);
    dd_buf_reset(&b);
    for (int i = 0; i < 1000; i++)
        dd_buf_puts(&b, "{\"a\":[");
    for (int i = 0; i < 1000; i++)
        dd_buf_puts(&b, "]}");
    real = parse_peak(b.data, b.len);
    assert_true(dd_tc_json_cost(b.data, b.len, SIZE_MAX - 1) >= real);
    dd_buf_release(&b);

    static const char describe[] =
        "{\"executionConfig\":{\"taskQueue\":{\"name\":\"dispatchers\",\"kind\":\"TASK_QUEUE_KIND_"
        "NORMAL\"},\"workflowExecutionTimeout\":\"0s\",\"workflowRunTimeout\":\"0s\","
        "\"defaultWorkflowTaskTimeout\":\"10s\"},\"workflowExecutionInfo\":{\"execution\":{"
        "\"workflowId\":\"dispatcher-billing-emails\",\"runId\":\"0196f0a4-3c1e-7d2a-9b1e-"
        "5f2c8a7d4e10\"},\"type\":{\"name\":\"dispatchd.dispatcher\"},\"startTime\":\"2026-11-"
        "23T12:33:05.835655703Z\",\"status\":\"WORKFLOW_EXECUTION_STATUS_RUNNING\","
        "\"historyLength\":\"2\",\"executionTime\":\"2026-11-23T12:33:05.835655703Z\",\"memo\":{"
        "\"fields\":{\"server_id\":{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"},\"data\":"
        "\"ImgxIg==\"}}},\"taskQueue\":\"dispatchers\",\"stateTransitionCount\":\"1\","
        "\"historySizeBytes\":\"512\"},\"pendingActivities\":[],\"pendingChildren\":[]}";
    real = parse_peak(describe, strlen(describe));
    size_t est = dd_tc_json_cost(describe, strlen(describe), SIZE_MAX - 1);
    if (est < real || est > 4 * real)
        fail_msg("describe reply: estimated %zu, jansson took %zu", est, real);
    /* The limit stops the count early. */
    assert_true(dd_tc_json_cost(describe, strlen(describe), 100) == 101);
    assert_int_equal(dd_tc_json_cost("", 0, 100), 0);
}

int main(void)
{
    json_set_alloc_funcs(j_malloc, j_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_uuid_and_enum),
        cmocka_unit_test(test_json_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
