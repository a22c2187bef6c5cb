/* Unit tests of src/owner/id: the dispatcher workflow ID (R1). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "owner/id.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *id_of(const char *p, const char *q)
{
    static char buf[DD_DISPATCHER_ID_BUFLEN];
    char err[256];
    int rc = dd_dispatcher_id(p, q, buf, sizeof(buf), err, sizeof(err));
    if (rc != 0)
        fail_msg("dd_dispatcher_id('%s','%s'): %s", p, q, err);
    return buf;
}

/* --id-prefix: valid prefixes build and parse back; IDs stay injective
 * across prefixes (an ID says which prefix built it); bad prefixes are
 * refused with the rule in the message. */
static void test_id_prefix(void **state)
{
    (void)state;
    char a[DD_DISPATCHER_ID_BUFLEN], b[DD_DISPATCHER_ID_BUFLEN], err[256];
    char p[DD_DISPATCHER_ID_BUFLEN], q[DD_DISPATCHER_ID_BUFLEN];
    assert_int_equal(dd_dispatcher_id_with("acme.dd_1-", "billing", "emails", a, sizeof(a), err,
                                           sizeof(err)),
                     0);
    assert_string_equal(a, "acme.dd_1-billing-emails");
    assert_int_equal(dd_dispatcher_id_parse(a, p, sizeof(p), q, sizeof(q), err, sizeof(err)), 0);
    assert_string_equal(p, "billing");
    assert_string_equal(q, "emails");
    assert_true(dd_dispatcher_id_matches(a, "billing", "emails"));
    /* NULL and "" are the default */
    assert_int_equal(dd_dispatcher_id_with(NULL, "p", "q", b, sizeof(b), err, sizeof(err)), 0);
    assert_string_equal(b, "dispatcher-p-q");
    assert_int_equal(dd_dispatcher_id_with("", "p", "q", b, sizeof(b), err, sizeof(err)), 0);
    assert_string_equal(b, "dispatcher-p-q");
    /* the trap across prefixes: ("x-", "a", "b-c") vs ("x-a-", "b", "c") cannot
     * happen: a prefix holds one '-', so "x-a-" is refused */
    assert_int_equal(dd_dispatcher_id_with("x-a-", "b", "c", b, sizeof(b), err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "followed by one '-'"));
    const char *bad[] = {"-", "x", "x--", "a b-", "a/b-", "a%b-", "a~b-", "é-", "dispatcher"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (dd_id_prefix_check(bad[i], err, sizeof(err)) != DD_EINVAL)
            fail_msg("prefix '%s' accepted", bad[i]);
        assert_int_equal(dd_dispatcher_id_with(bad[i], "p", "q", b, sizeof(b), err, sizeof(err)),
                         DD_EINVAL);
    }
    char longp[80];
    memset(longp, 'a', 63);
    strcpy(longp + 63, "-");
    assert_int_equal(dd_id_prefix_check(longp, err, sizeof(err)), 0);
    memset(longp, 'a', 64);
    strcpy(longp + 64, "-");
    assert_int_equal(dd_id_prefix_check(longp, err, sizeof(err)), DD_EINVAL);
    /* the same names under two prefixes are two IDs, each matching only
     * its own names, and a long ID keeps its prefix when shortened */
    assert_int_equal(dd_dispatcher_id_with("one-", "p", "q", a, sizeof(a), err, sizeof(err)), 0);
    assert_int_equal(dd_dispatcher_id_with("two-", "p", "q", b, sizeof(b), err, sizeof(err)), 0);
    assert_string_not_equal(a, b);
    assert_true(dd_dispatcher_id_matches(a, "p", "q") && dd_dispatcher_id_matches(b, "p", "q"));
    assert_false(dd_dispatcher_id_matches(a, "p", "q-"));
    char big[400];
    memset(big, 'z', 300);
    big[300] = '\0';
    assert_int_equal(dd_dispatcher_id_with(longp + 1, big, "q", a, sizeof(a), err, sizeof(err)),
                     0); /* 63 'a' + '-' */
    assert_int_equal(strlen(a), DD_DISPATCHER_ID_MAX);
    assert_int_equal(strncmp(a, longp + 1, 64), 0);
    assert_true(dd_dispatcher_id_matches(a, big, "q"));
    assert_int_equal(dd_dispatcher_id_parse(a, p, sizeof(p), q, sizeof(q), err, sizeof(err)),
                     -ENOTSUP);
}

static void test_readable_common_case(void **state)
{
    assert_string_equal(id_of("billing", "emails"), "dispatcher-billing-emails");
    assert_string_equal(id_of("a.b_c", "q:1 x"), "dispatcher-a.b_c-q:1 x");
    assert_string_equal(id_of("projé", "队列"), "dispatcher-projé-队列");
}

static void test_dash_trap(void **state)
{
    char a[DD_DISPATCHER_ID_BUFLEN], b[DD_DISPATCHER_ID_BUFLEN];
    strcpy(a, id_of("a-b", "c"));
    strcpy(b, id_of("a", "b-c"));
    assert_string_not_equal(a, b);
    assert_string_equal(a, "dispatcher-a%2Db-c");
    assert_string_equal(b, "dispatcher-a-b%2Dc");
    /* escaping itself cannot be forged: a literal "%2D" is escaped again */
    strcpy(a, id_of("a%2Db", "c"));
    assert_string_equal(a, "dispatcher-a%252Db-c");
    assert_string_not_equal(a, id_of("a-b", "c"));
    assert_string_equal(id_of("x/y~z", "q"), "dispatcher-x%2Fy%7Ez-q");
}

static void test_injective_exhaustive(void **state)
{
    /* Every pair of short names over an alphabet full of separators and
     * escape characters maps to a distinct ID. */
    const char alpha[] = {'a', '-', '%', '2', 'D', '~', '/'};
    enum { NA = sizeof(alpha) };
    char names[NA + NA * NA][3];
    int n = 0;
    for (int i = 0; i < NA; i++, n++)
        snprintf(names[n], 3, "%c", alpha[i]);
    for (int i = 0; i < NA; i++)
        for (int j = 0; j < NA; j++, n++)
            snprintf(names[n], 3, "%c%c", alpha[i], alpha[j]);
    static char ids[(NA + NA * NA) * (NA + NA * NA)][64];
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++, k++)
            snprintf(ids[k], 64, "%.40s", id_of(names[i], names[j]));
    for (int x = 0; x < k; x++)
        for (int y = x + 1; y < k; y++)
            if (strcmp(ids[x], ids[y]) == 0)
                fail_msg("collision: %s", ids[x]);
}

static void test_round_trip(void **state)
{
    const char *pairs[][2] = {{"billing", "emails"}, {"a-b", "c"}, {"a", "b-c"},
                              {"%", "-"},            {"~/~", "--%%"}, {"projé", "队-列"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        char p[128], q[128], err[256];
        const char *id = id_of(pairs[i][0], pairs[i][1]);
        assert_int_equal(dd_dispatcher_id_parse(id, p, sizeof(p), q, sizeof(q), err, sizeof(err)),
                         0);
        assert_string_equal(p, pairs[i][0]);
        assert_string_equal(q, pairs[i][1]);
        assert_true(dd_dispatcher_id_matches(id, pairs[i][0], pairs[i][1]));
        assert_false(dd_dispatcher_id_matches(id, pairs[i][1], pairs[i][0]) &&
                     strcmp(pairs[i][0], pairs[i][1]) != 0);
    }
}

static void test_parse_rejects(void **state)
{
    char p[64], q[64], err[256];
    /* "worker-a-b" is an ID under the prefix "worker-" (test_id_prefix);
     * a prefix outside [A-Za-z0-9_.] is not */
    const char *bad[] = {"dispatcher-a",        "dispatcher-a-b-c", "wörker-a-b", "-a-b",
                         "dispatcher--b",       "dispatcher-a-",    "dispatcher-a%2-b",
                         "dispatcher-a%41-b",   "dispatcher-a%2d-b", "dispatcher-a/b-c",
                         "dispatcher-a\x01-b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = dd_dispatcher_id_parse(bad[i], p, sizeof(p), q, sizeof(q), err, sizeof(err));
        if (rc != DD_EINVAL)
            fail_msg("'%s' parsed (rc=%d)", bad[i], rc);
        assert_true(strlen(err) > 0);
    }
    /* too small output buffer */
    assert_int_equal(dd_dispatcher_id_parse("dispatcher-abcdef-q", p, 4, q, sizeof(q), err,
                                            sizeof(err)),
                     DD_EINVAL);
}

static void test_invalid_input(void **state)
{
    char out[DD_DISPATCHER_ID_BUFLEN], err[256];
    assert_int_equal(dd_dispatcher_id("", "q", out, sizeof(out), err, sizeof(err)), DD_EINVAL);
    assert_string_equal(err, "project name is empty");
    assert_int_equal(dd_dispatcher_id("p", "", out, sizeof(out), err, sizeof(err)), DD_EINVAL);
    assert_string_equal(err, "task queue name is empty");
    assert_int_equal(dd_dispatcher_id(NULL, "q", out, sizeof(out), err, sizeof(err)), DD_EINVAL);
    assert_int_equal(dd_dispatcher_id("p\n", "q", out, sizeof(out), err, sizeof(err)),
                     DD_EINVAL);
    assert_string_equal(err, "project name contains a control character");
    assert_int_equal(dd_dispatcher_id("p", "q\x7f", out, sizeof(out), err, sizeof(err)),
                     DD_EINVAL);
    assert_int_equal(dd_dispatcher_id("p\xff", "q", out, sizeof(out), err, sizeof(err)),
                     DD_EINVAL);
    assert_string_equal(err, "project name is not valid UTF-8");
    assert_int_equal(dd_dispatcher_id("\xc0\xaf", "q", out, sizeof(out), err, sizeof(err)),
                     DD_EINVAL); /* overlong '/' */
    assert_int_equal(dd_dispatcher_id("\xed\xa0\x80", "q", out, sizeof(out), err, sizeof(err)),
                     DD_EINVAL); /* surrogate */
    assert_int_equal(dd_dispatcher_id("p", "q", out, 5, err, sizeof(err)), DD_EINVAL);
    /* err may be NULL */
    assert_int_equal(dd_dispatcher_id("", "q", out, sizeof(out), NULL, 0), DD_EINVAL);
}

static void test_sha256(void **state)
{
    char hex[65];
    dd_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    dd_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    dd_sha256_hex(s, strlen(s), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_long_ids(void **state)
{
    char p[400], q[400], a[DD_DISPATCHER_ID_BUFLEN], b[DD_DISPATCHER_ID_BUFLEN], err[256];
    memset(p, 'p', 300);
    p[300] = '\0';
    strcpy(q, "queue");
    assert_int_equal(dd_dispatcher_id(p, q, a, sizeof(a), err, sizeof(err)), 0);
    assert_int_equal(strlen(a), DD_DISPATCHER_ID_MAX);
    assert_non_null(strchr(a, '~'));
    assert_int_equal(strncmp(a, "dispatcher-ppp", 14), 0);
    /* deterministic */
    assert_int_equal(dd_dispatcher_id(p, q, b, sizeof(b), err, sizeof(err)), 0);
    assert_string_equal(a, b);
    /* differs when only the cut-off tail differs */
    strcpy(q, "queuf");
    assert_int_equal(dd_dispatcher_id(p, q, b, sizeof(b), err, sizeof(err)), 0);
    assert_string_not_equal(a, b);
    assert_true(dd_dispatcher_id_matches(b, p, q));
    assert_false(dd_dispatcher_id_matches(a, p, q));
    /* shortened IDs are not parseable */
    assert_int_equal(dd_dispatcher_id_parse(a, p, sizeof(p), q, sizeof(q), err, sizeof(err)),
                     -ENOTSUP);
    /* exactly at the limit: not shortened */
    char p2[300];
    size_t plen = DD_DISPATCHER_ID_MAX - strlen("dispatcher-") - strlen("-q");
    memset(p2, 'x', plen);
    p2[plen] = '\0';
    assert_int_equal(dd_dispatcher_id(p2, "q", a, sizeof(a), err, sizeof(err)), 0);
    assert_int_equal(strlen(a), DD_DISPATCHER_ID_MAX);
    assert_null(strchr(a, '~'));
    p2[plen] = 'x';
    p2[plen + 1] = '\0';
    assert_int_equal(dd_dispatcher_id(p2, "q", a, sizeof(a), err, sizeof(err)), 0);
    assert_int_equal(strlen(a), DD_DISPATCHER_ID_MAX);
    assert_non_null(strchr(a, '~'));
}

static void test_long_cli_names_stay_distinct(void **state)
{
    /* Issue 12: the CLI copied project and queue into 256-byte buffers, so
     * "--dispatcher P/Q1" and "--dispatcher P/Q2" with the same first 255
     * bytes became one dispatcher. The names now go whole from the option
     * value to the ID: distinct pairs keep distinct IDs at any length. */
    static const size_t lens[] = {255, 256, 300, 1000, 4000};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t n = lens[k];
        char *s1 = malloc(n + 9), *s2 = malloc(n + 9); /* "ppp/" q... "-one" NUL */
        memset(s1, 'p', 3);
        s1[3] = '/';
        memset(s1 + 4, 'q', n);
        strcpy(s1 + 4 + n, "-one");
        memcpy(s2, s1, n + 4);
        strcpy(s2 + 4 + n, "-two");
        char *p1, *q1, *p2, *q2, a[DD_DISPATCHER_ID_BUFLEN], b[DD_DISPATCHER_ID_BUFLEN];
        assert_int_equal(dd_config_dispatcher_split(s1, &p1, &q1), 0);
        assert_int_equal(dd_config_dispatcher_split(s2, &p2, &q2), 0);
        assert_int_equal(strlen(q1), n + 4);
        assert_int_equal(dd_dispatcher_id(p1, q1, a, sizeof(a), NULL, 0), 0);
        assert_int_equal(dd_dispatcher_id(p2, q2, b, sizeof(b), NULL, 0), 0);
        assert_string_not_equal(a, b);
        assert_true(dd_dispatcher_id_matches(a, p1, q1));
        assert_false(dd_dispatcher_id_matches(a, p2, q2));
        /* and what the old 256-byte copy made of them was one name */
        char c1[256], c2[256];
        snprintf(c1, sizeof(c1), "%s", q1);
        snprintf(c2, sizeof(c2), "%s", q2);
        assert_string_equal(c1, c2);
        free(p1);
        free(q1);
        free(p2);
        free(q2);
        free(s1);
        free(s2);
    }
}

static void test_long_ids_cut_cleanly(void **state)
{
    /* Names of escapes and multi-byte characters: the readable prefix never
     * ends inside a %XX escape or a UTF-8 sequence. */
    char p[600], a[DD_DISPATCHER_ID_BUFLEN];
    for (int shift = 0; shift < 4; shift++) {
        size_t n = 0;
        for (int i = 0; i < shift; i++)
            p[n++] = 'x';
        while (n < 500) {
            memcpy(p + n, "-\xe9\x98\x9f", 4); /* '-' and a 3-byte character */
            n += 4;
        }
        p[n] = '\0';
        assert_int_equal(dd_dispatcher_id(p, "q", a, sizeof(a), NULL, 0), 0);
        char *tilde = strchr(a, '~');
        assert_non_null(tilde);
        assert_int_equal(strlen(tilde), 17);
        /* the prefix is valid UTF-8 and its escapes are complete */
        char *pct = strrchr(a, '%');
        assert_true(pct == NULL || tilde - pct >= 3);
        size_t i = 0, plen = (size_t)(tilde - a);
        while (i < plen) {
            unsigned char c = (unsigned char)a[i];
            size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            assert_true(c < 0x80 || c >= 0xc0);
            assert_true(i + len <= plen);
            i += len;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readable_common_case),
        cmocka_unit_test(test_id_prefix),
        cmocka_unit_test(test_dash_trap),
        cmocka_unit_test(test_injective_exhaustive),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_long_ids),
        cmocka_unit_test(test_long_ids_cut_cleanly),
        cmocka_unit_test(test_long_cli_names_stay_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
