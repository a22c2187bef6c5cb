/* Unit tests of dd_store_url_parse: accepted forms and clear refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/error.h"
#include "store/store.h"

#include <string.h>

static void test_url_tcp(void **state)
{
    dd_store_url u;
    char err[256];
    assert_int_equal(dd_store_url_parse("redis://127.0.0.1:6380/2", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_null(u.password);
    assert_null(u.path);
    dd_store_url_release(&u);

    /* rediss://: the same URL over TLS */
    assert_int_equal(dd_store_url_parse("rediss://u:pw@redis.internal:6380/3", &u, err, sizeof(err)), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "redis.internal");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "u");
    assert_string_equal(u.password, "pw");
    dd_store_url_release(&u);
    assert_int_equal(dd_store_url_parse("redis://localhost", &u, err, sizeof(err)), 0);
    assert_false(u.tls);
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    dd_store_url_release(&u);

    assert_int_equal(dd_store_url_parse("redis://:s3cr%40t@h:1/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "s3cr@t");
    assert_null(u.user);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.db, 0);
    dd_store_url_release(&u);

    /* an unencoded '@' in the password: the last '@' ends the userinfo */
    assert_int_equal(dd_store_url_parse("redis://app:p@ss@h:7/1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 7);
    dd_store_url_release(&u);

    assert_int_equal(dd_store_url_parse("redis://[::1]:6390/3", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 3);
    dd_store_url_release(&u);
}

static void test_url_unix(void **state)
{
    dd_store_url u;
    char err[256];
    assert_int_equal(dd_store_url_parse("unix:///run/redis.sock", &u, err, sizeof(err)), 0);
    assert_string_equal(u.path, "/run/redis.sock");
    assert_null(u.host);
    assert_int_equal(u.db, 0);
    dd_store_url_release(&u);
    assert_int_equal(dd_store_url_parse("unix:///run/r.sock?db=5", &u, err, sizeof(err)), 0);
    assert_string_equal(u.path, "/run/r.sock");
    assert_int_equal(u.db, 5);
    dd_store_url_release(&u);
}

static void expect_error(const char *url, const char *words)
{
    dd_store_url u;
    char err[256] = "";
    assert_int_equal(dd_store_url_parse(url, &u, err, sizeof(err)), DD_EINVAL);
    if (!strstr(err, words))
        fail_msg("'%s': error '%s' lacks '%s'", url, err, words);
    /* released on error: nothing to free, nothing dangling */
    assert_null(u.host);
    assert_null(u.password);
}

static void test_url_errors(void **state)
{
    expect_error("", "empty redis url");
    expect_error("redis://", "missing host");
    expect_error("redis://:6379/0", "missing host");
    expect_error("redis://:pw@/0", "missing host");
    expect_error("redis://h:/0", "bad port ''");
    expect_error("redis://h:abc/0", "bad port 'abc'");
    expect_error("redis://h:0", "bad port '0'");
    expect_error("redis://h:65536", "bad port '65536'");
    expect_error("redis://h:1/x", "bad db 'x'");
    expect_error("redis://h:1/-1", "bad db '-1'");
    expect_error("redis://h:1/99999999999", "bad db");
    expect_error("redis://h:1/1/2", "bad db '1/2'");
    expect_error("http://h:1", "unknown scheme 'http'");
    expect_error("h:6379", "missing scheme");
    expect_error("rediss://h:abc", "bad port 'abc'");
    expect_error("redis://[::1:1", "unterminated");
    expect_error("redis://::1:6379", "needs brackets");
    expect_error("redis://[redis.local]:6379", "not an IPv6 address");
    expect_error("redis://:bad%zzpw@h", "bad %-escape in the password");
    expect_error("unix://", "missing socket path");
    expect_error("unix://rel/path", "missing socket path");
    expect_error("unix:///p?db=x", "bad db 'x'");
    expect_error("unix:///p?foo=1", "unknown parameter 'foo=1'");
}

static void test_url_error_hides_password(void **state)
{
    dd_store_url u;
    char err[256] = "";
    assert_int_equal(dd_store_url_parse("redis://:hunter2@h:99999", &u, err, sizeof(err)),
                     DD_EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(dd_store_url_parse("redis://:hunter2@h:1/zz", &u, err, sizeof(err)),
                     DD_EINVAL);
    assert_null(strstr(err, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_tcp),
        cmocka_unit_test(test_url_unix),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_url_error_hides_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
