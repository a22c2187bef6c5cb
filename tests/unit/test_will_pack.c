/* test_will_pack.c - the last will's wire form (src/child/will.c): what dispatchd
 * packs is what the guard unpacks, field by field. */
#include "child/will.h"
#include "core/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static void test_roundtrip(void **state)
{
    (void)state;
    dd_will w = {.url = "rediss://127.0.0.1:6380/3", .username = "dd", .password = "pw",
                 .tls_ca_file = "/ca.pem", .tls_cert_file = "/c.pem", .tls_key_file = "/c.key",
                 .sentinels = "127.0.0.1:26379,127.0.0.1:26380", .master_name = "m",
                 .sentinel_password = "spw", .db = 4, .workflow_id = "dispatcher-p-q",
                 .run_id = "run-1", .first_run_id = "run-0", .server_id = "h1", .epoch = 7,
                 .ack_ttl_ms = 30000, .expire = true};
    dd_buf b = DD_BUF_INIT;
    dd_will_pack(&b, &w);
    dd_will u;
    assert_int_equal(dd_will_unpack(b.data, b.len, &u), 0);
    assert_string_equal(u.url, w.url);
    assert_string_equal(u.username, "dd");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.tls_ca_file, "/ca.pem");
    assert_string_equal(u.tls_cert_file, "/c.pem");
    assert_string_equal(u.tls_key_file, "/c.key");
    assert_string_equal(u.sentinels, w.sentinels);
    assert_string_equal(u.master_name, "m");
    assert_string_equal(u.sentinel_password, "spw");
    assert_int_equal(u.db, 4);
    assert_string_equal(u.workflow_id, "dispatcher-p-q");
    assert_string_equal(u.run_id, "run-1");
    assert_string_equal(u.first_run_id, "run-0");
    assert_string_equal(u.server_id, "h1");
    assert_int_equal(u.epoch, 7);
    assert_int_equal(u.ack_ttl_ms, 30000);
    assert_true(u.expire);
    dd_buf_release(&b);
}

/* Unset and empty settings are not packed (NULL after unpack); without
 * sentinels no db; a will without its record is refused. */
static void test_minimal_and_refused(void **state)
{
    (void)state;
    dd_will w = {.url = "redis://127.0.0.1:6379/0", .username = "", .first_run_id = "",
                 .workflow_id = "wid", .run_id = "r", .server_id = "h", .epoch = 1, .db = 5};
    dd_buf b = DD_BUF_INIT;
    dd_will_pack(&b, &w);
    assert_null(memmem(b.data, b.len, "username", 9));
    assert_null(memmem(b.data, b.len, "db", 3));
    dd_will u;
    assert_int_equal(dd_will_unpack(b.data, b.len, &u), 0);
    assert_null(u.username);
    assert_null(u.password);
    assert_null(u.first_run_id);
    assert_null(u.sentinels);
    assert_int_equal(u.db, 0);
    assert_false(u.expire);
    dd_buf_release(&b);
    w.epoch = 0; /* no record to release */
    dd_will_pack(&b, &w);
    assert_int_equal(dd_will_unpack(b.data, b.len, &u), DD_EINVAL);
    /* cut in the middle of a value */
    assert_int_equal(dd_will_unpack(b.data, 5, &u), DD_EINVAL);
    dd_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_minimal_and_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
