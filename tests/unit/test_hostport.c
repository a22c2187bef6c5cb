/* Unit tests of src/core/hostport.c: the one HOST[:PORT] / [IPv6][:PORT]
 * parser behind the Temporal base URL, redis:// URLs and --metrics-listen.
 * The cases are the edges the three parsers it replaced had, and their
 * callers' messages are checked in test_http, test_store_url and
 * test_metrics_http. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/hostport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ok(const char *s, int def, unsigned flags, const char *host, int port, bool v6,
               bool has_port)
{
    dd_hostport hp;
    char err[200] = "";
    int rc = dd_hostport_parse(s, strlen(s), def, flags, &hp, err, sizeof(err));
    if (rc != 0)
        fail_msg("'%s' refused: %s", s, err);
    assert_string_equal(hp.host, host);
    assert_int_equal(hp.port, port);
    assert_int_equal(hp.ipv6, v6);
    assert_int_equal(hp.has_port, has_port);
    dd_hostport_release(&hp);
    assert_null(hp.host);
}

static void bad(const char *s, unsigned flags, const char *words)
{
    dd_hostport hp;
    char err[200] = "";
    assert_int_equal(dd_hostport_parse(s, strlen(s), 80, flags, &hp, err, sizeof(err)),
                     DD_EINVAL);
    if (!strstr(err, words))
        fail_msg("'%s': error '%s' lacks '%s'", s, err, words);
    assert_null(hp.host); /* nothing to free after a refusal */
}

static void test_accepted(void **state)
{
    ok("127.0.0.1:7243", 80, 0, "127.0.0.1", 7243, false, true);
    ok("localhost", 80, 0, "localhost", 80, false, false);      /* the default port */
    ok("example.test", 443, 0, "example.test", 443, false, false);
    ok("h:1", 6379, 0, "h", 1, false, true);
    ok("h:65535", 6379, 0, "h", 65535, false, true);
    ok("h:00080", 6379, 0, "h", 80, false, true);               /* 5 digits, leading zeros */
    ok("[::1]:8080", 80, 0, "::1", 8080, true, true);
    ok("[::1]", 6379, 0, "::1", 6379, true, false);
    ok("[fe80::1%eth0]:9", 80, 0, "fe80::1%eth0", 9, true, true); /* a zone */
    ok("[::ffff:127.0.0.1]:1", 80, 0, "::ffff:127.0.0.1", 1, true, true);
    /* listen addresses: port required, 0 allowed (any free port) */
    ok("127.0.0.1:0", 0, DD_HOSTPORT_NEED_PORT | DD_HOSTPORT_PORT_ZERO, "127.0.0.1", 0, false,
       true);
    ok("[::1]:0", 0, DD_HOSTPORT_NEED_PORT | DD_HOSTPORT_PORT_ZERO, "::1", 0, true, true);
}

static void test_refused(void **state)
{
    bad("", 0, "missing host");
    bad(":80", 0, "missing host");
    bad("[]:9464", 0, "missing host");
    bad("[]", 0, "missing host");
    bad("h:", 0, "bad port ''");
    bad("h:0", 0, "bad port '0' (want 1-65535)");
    bad("h:65536", 0, "bad port '65536'");
    bad("h:99999", 0, "bad port '99999'");
    bad("h:123456", 0, "bad port '123456'");
    bad("h:000080", 0, "bad port '000080'");
    bad("h:12ab", 0, "bad port '12ab'");
    bad("h:-1", 0, "bad port '-1'");
    bad("h:+1", 0, "bad port '+1'");
    bad("h: 1", 0, "bad port ' 1'");
    bad("[::1", 0, "unterminated '['");
    bad("[::1:1", 0, "unterminated '['");
    bad("[::1]9464", 0, "unexpected text after ']'");
    bad("[::1]:", 0, "bad port ''");
    bad("[localhost]:1", 0, "not an IPv6 address");
    bad("[127.0.0.1]:1", 0, "not an IPv6 address");
    bad("[fe80::1%]:1", 0, "not an IPv6 address"); /* an empty zone */
    /* bare IPv6: the port would be ambiguous */
    bad("::1", 0, "needs brackets (want [ADDR]:PORT)");
    bad("::1:9464", 0, "needs brackets");
    bad("fe80::1", 0, "needs brackets");
    bad("h:1:2", 0, "needs brackets");
    bad("h x:1", 0, "space or a control character");
    bad("h\r\nX: y:1", 0, "needs brackets"); /* two colons come first */
    bad("h\r\n:1", 0, "space or a control character");
    bad("h]:1", 0, "bracket inside the host");
    /* listen addresses */
    bad("127.0.0.1", DD_HOSTPORT_NEED_PORT, "missing port (want HOST:PORT)");
    bad("[::1]", DD_HOSTPORT_NEED_PORT, "missing port (want [IPv6]:PORT)");
    bad("127.0.0.1:0", DD_HOSTPORT_NEED_PORT, "bad port '0' (want 1-65535)");
    bad("127.0.0.1:65536", DD_HOSTPORT_NEED_PORT | DD_HOSTPORT_PORT_ZERO,
        "bad port '65536' (want 0-65535)");
}

/* s[0..n) only: what follows is never read, and the host is never cut. */
static void test_length_and_whole(void **state)
{
    dd_hostport hp;
    char err[200];
    assert_int_equal(dd_hostport_parse("h:80/path", 4, 1, 0, &hp, err, sizeof(err)), 0);
    assert_string_equal(hp.host, "h");
    assert_int_equal(hp.port, 80);
    dd_hostport_release(&hp);
    assert_int_equal(dd_hostport_parse("[::1]:1]", 7, 1, 0, &hp, err, sizeof(err)), 0);
    assert_int_equal(hp.port, 1);
    dd_hostport_release(&hp);

    size_t n = 5000;
    char *big = malloc(n + 8);
    memset(big, 'a', n);
    strcpy(big + n, ":1");
    assert_int_equal(dd_hostport_parse(big, strlen(big), 1, 0, &hp, err, sizeof(err)), 0);
    assert_int_equal(strlen(hp.host), n); /* whole */
    dd_hostport_release(&hp);

    /* a long bad port: the message shows a marked cut of it */
    memset(big, '9', n);
    big[0] = 'h';
    big[1] = ':';
    big[n] = '\0';
    assert_int_equal(dd_hostport_parse(big, n, 1, 0, &hp, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "...' (want 1-65535)"));
    assert_true(strlen(err) < 100);
    free(big);

    /* no message buffer: still refused, nothing written */
    assert_int_equal(dd_hostport_parse(":1", 2, 1, 0, &hp, NULL, 0), DD_EINVAL);
    char tiny[8] = "xxxxxxx";
    assert_int_equal(dd_hostport_parse(":1", 2, 1, 0, &hp, tiny, sizeof(tiny)), DD_EINVAL);
    assert_true(strlen(tiny) < sizeof(tiny));
    dd_hostport_release(&hp); /* safe on an empty one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_length_and_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
