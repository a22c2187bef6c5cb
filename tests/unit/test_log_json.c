/* Unit tests of --log-format json (src/core/log.c): every line is one JSON
 * object that jansson parses back to the logfmt record's keys and values;
 * escapes, bytes that are not UTF-8, secrets, fields, literals and a format
 * string that is not key=value pairs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Logs through fn into memory in JSON; returns the lines parsed (a JSON array). */
static json_t *dd_test_json_lines(void (*fn)(dd_log *log))
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    dd_log *log = dd_log_new(f, DD_LOG_INFO);
    dd_log_set_format(log, DD_LOG_JSON);
    fn(log);
    dd_log_free(log);
    fclose(f);
    json_t *arr = json_array();
    char *save = NULL;
    for (char *line = strtok_r(mem, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        if (!o || !json_is_object(o))
            fail_msg("not one JSON object: %s (%s)", line, err.text);
        json_array_append_new(arr, o);
    }
    free(mem);
    return arr;
}

static void dd_test_log_basic(dd_log *log)
{
    const char *volatile none = NULL; /* a NULL %s, as a caller's unset field logs */
    dd_log_add_field(log, "server_id", "host a");
    dd_info(log, "takeover", "workflow_id=%s attempts=%d latency_ms=%.1f big=%lld ok=%s none=%s",
            "dispatcher-a b", 3, 36.6, -12345678901LL, "true", none);
    dd_debug(log, "hidden", "x=%d", 1);
}

static void test_json_basic(void **state)
{
    json_t *a = dd_test_json_lines(dd_test_log_basic);
    assert_int_equal(json_array_size(a), 1);
    json_t *o = json_array_get(a, 0);
    assert_true(json_is_string(json_object_get(o, "ts")));
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "takeover");
    assert_string_equal(json_string_value(json_object_get(o, "server_id")), "host a");
    assert_string_equal(json_string_value(json_object_get(o, "workflow_id")), "dispatcher-a b");
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 3);
    assert_true(json_is_real(json_object_get(o, "latency_ms")));
    assert_int_equal(json_integer_value(json_object_get(o, "big")), -12345678901LL);
    assert_true(json_is_true(json_object_get(o, "ok")));
    assert_true(json_is_null(json_object_get(o, "none")));
    json_decref(a);
}

static const char dd_test_nasty[] = "q\"b\\s\nn\tt\x01 \xc3\xa9 =x";

static void dd_test_log_escapes(dd_log *log)
{
    dd_warn(log, "odd", "v=%s bad=%s num=%s lead0=%s exp=%s", dd_test_nasty, "a\xff" "b\xed\xa0\x80",
            "1.5e3", "007", "1e");
}

static void test_json_escapes(void **state)
{
    json_t *a = dd_test_json_lines(dd_test_log_escapes);
    assert_int_equal(json_array_size(a), 1);
    json_t *o = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "v")), dd_test_nasty);
    /* not UTF-8 (a stray byte, a surrogate): U+FFFD each byte, the rest kept */
    assert_string_equal(json_string_value(json_object_get(o, "bad")),
                        "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_true(json_is_real(json_object_get(o, "num")));
    assert_string_equal(json_string_value(json_object_get(o, "lead0")), "007");
    assert_string_equal(json_string_value(json_object_get(o, "exp")), "1e");
    json_decref(a);
}

static void dd_test_log_secret(dd_log *log)
{
    dd_log_add_secret(log, "pa\"ss\\word");
    dd_log_add_secret(log, "hunter2secret");
    dd_error(log, "auth", "err=%s url=%s", "rejected pa\"ss\\word", "redis://:hunter2secret@h");
}

static void test_json_secrets_scrubbed(void **state)
{
    json_t *a = dd_test_json_lines(dd_test_log_secret);
    json_t *o = json_array_get(a, 0);
    char *text = json_dumps(o, 0);
    assert_null(strstr(text, "hunter2secret"));
    assert_null(strstr(text, "ss\\\\word"));
    assert_null(strstr(text, "pa\\\"ss"));
    assert_string_equal(json_string_value(json_object_get(o, "err")), "rejected ***");
    assert_string_equal(json_string_value(json_object_get(o, "url")), "redis://:***@h");
    free(text);
    json_decref(a);
}

static void dd_test_log_not_pairs(dd_log *log)
{
    dd_info(log, "loose", "note=see the docs count=%d", 2); /* "the docs": no '=' */
    dd_info(log, "empty", "%s", "");
    dd_info(log, "bare", NULL);
}

static void test_json_not_pairs_stays_one_object(void **state)
{
    json_t *a = dd_test_json_lines(dd_test_log_not_pairs);
    assert_int_equal(json_array_size(a), 3);
    json_t *o = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(o, "event")), "loose");
    assert_non_null(strstr(json_string_value(json_object_get(o, "logfmt")), "note=see the docs"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "event")), "bare");
    json_decref(a);
}

static void test_format_parse(void **state)
{
    dd_log_format f = DD_LOG_JSON;
    assert_int_equal(dd_log_format_parse("logfmt", &f), 0);
    assert_int_equal(f, DD_LOG_LOGFMT);
    assert_int_equal(dd_log_format_parse("json", &f), 0);
    assert_int_equal(f, DD_LOG_JSON);
    assert_int_equal(dd_log_format_parse("JSON", &f), DD_EINVAL);
    assert_int_equal(dd_log_format_parse("", &f), DD_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_basic),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_secrets_scrubbed),
        cmocka_unit_test(test_json_not_pairs_stays_one_object),
        cmocka_unit_test(test_format_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
