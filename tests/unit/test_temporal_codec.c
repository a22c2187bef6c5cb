/* Unit tests of src/temporal/codec: payload base64, timestamps, escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/buf.h"
#include "temporal/codec.h"
#include "temporal/temporal.h"

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
    assert_int_equal(dd_tc_base64_decode(&d, "a*b"), -1);
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
    assert_int_equal(dd_tc_enum_name(&e, "X_", "bad name"), -1);
    assert_int_equal(dd_tc_enum_name(&e, "X_", ""), -1);
    dd_buf_release(&e);
    assert_string_equal(dd_temporal_status_name(DD_WF_TERMINATED), "TERMINATED");
    assert_string_equal(dd_temporal_status_name((dd_temporal_status)99), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_uuid_and_enum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
