/* Unit tests of src/core: durations, backoff, token bucket, logfmt, config. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/* argv arrays of string literals: -Wwrite-strings makes them const. */
#pragma GCC diagnostic ignored "-Wdiscarded-qualifiers"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static void test_duration_parse(void **state)
{
    int64_t ms;
    assert_int_equal(dd_duration_parse("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(dd_duration_parse("5s", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(dd_duration_parse("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(dd_duration_parse("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(dd_duration_parse("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(dd_duration_parse("7", &ms), 0);
    assert_int_equal(ms, 7000);
    assert_int_equal(dd_duration_parse("", &ms), DD_EINVAL);
    assert_int_equal(dd_duration_parse("-5s", &ms), DD_EINVAL);
    assert_int_equal(dd_duration_parse("5x", &ms), DD_EINVAL);
    assert_int_equal(dd_duration_parse("s", &ms), DD_EINVAL);
    assert_int_equal(dd_duration_parse("5s5", &ms), DD_EINVAL);
    assert_int_equal(dd_duration_parse("99999999999999999999s", &ms), DD_EINVAL);
}

static void test_backoff_bounds(void **state)
{
    dd_backoff b;
    dd_backoff_init(&b, 100, 2000, 42);
    int64_t nominal = 100;
    for (int i = 0; i < 20; i++) {
        int64_t d = dd_backoff_next(&b);
        assert_true(d >= nominal / 2);
        assert_true(d <= nominal);
        nominal = nominal * 2 > 2000 ? 2000 : nominal * 2;
    }
    dd_backoff_reset(&b);
    assert_true(dd_backoff_next(&b) <= 100);
}

static void test_backoff_jitter_spreads(void **state)
{
    /* Two hosts with different seeds must not retry in lockstep. */
    dd_backoff a, b;
    dd_backoff_init(&a, 1000, 60000, 1);
    dd_backoff_init(&b, 1000, 60000, 2);
    int same = 0;
    for (int i = 0; i < 10; i++)
        same += dd_backoff_next(&a) == dd_backoff_next(&b);
    assert_true(same < 3);
}

static void test_token_bucket(void **state)
{
    dd_token_bucket tb;
    dd_token_bucket_init(&tb, 2.0, 2.0, 0);
    assert_true(dd_token_bucket_take(&tb, 0));
    assert_true(dd_token_bucket_take(&tb, 0));
    assert_false(dd_token_bucket_take(&tb, 0));
    uint64_t w = dd_token_bucket_wait_us(&tb, 0);
    assert_true(w > 490000 && w <= 500001);
    assert_false(dd_token_bucket_take(&tb, 400000));
    assert_true(dd_token_bucket_take(&tb, 500001));
    dd_token_bucket_init(&tb, 0, 1, 0); /* unlimited */
    for (int i = 0; i < 100; i++)
        assert_true(dd_token_bucket_take(&tb, 0));
}

/* A rate that is not a number used to reach (uint64_t)NaN, and a tiny one a
 * wait beyond 2^64 us: both undefined. NaN now means unlimited (as <= 0
 * does), and a wait is at most an hour (the caller asks again then). */
static void test_token_bucket_odd_rates(void **state)
{
    dd_token_bucket tb;
    dd_token_bucket_init(&tb, NAN, 1, 0);
    for (int i = 0; i < 10; i++)
        assert_true(dd_token_bucket_take(&tb, (uint64_t)i));
    assert_true(dd_token_bucket_wait_us(&tb, 10) == 0);

    dd_token_bucket_init(&tb, 1e-300, 1, 0);
    assert_true(dd_token_bucket_take(&tb, 0));
    assert_false(dd_token_bucket_take(&tb, 0));
    uint64_t w = dd_token_bucket_wait_us(&tb, 0);
    assert_true(w > 0 && w <= 3600u * 1000000u);
    assert_true((w + 999) / 1000 > 0); /* what the reconciler computes */

    dd_token_bucket_init(&tb, INFINITY, INFINITY, 0);
    for (int i = 0; i < 10; i++)
        assert_true(dd_token_bucket_take(&tb, 0));
    assert_true(dd_token_bucket_wait_us(&tb, 0) == 0);
}

/* strtod reads "nan", "inf", "infinity" and hex floats: a rate option must
 * be a finite number, else the command exits 2 with the reason. */
static void test_config_non_finite_numbers(void **state)
{
    const dd_opt *groups[] = {dd_opts_common, dd_opts_reconcile, NULL};
    static const char *const bad[] = {"nan", "NaN", "-nan", "inf", "+Inf", "infinity", "1e999",
                                      "nan(0x1)"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dd_config cfg;
        dd_config_defaults(&cfg);
        char val[32], err[256] = "";
        snprintf(val, sizeof(val), "%s", bad[i]);
        char *argv[] = {"--terminate-rate", val};
        int npos;
        int rc = dd_config_parse(&cfg, groups, 2, argv, &npos, NULL, err, sizeof(err));
        if (rc != DD_EINVAL || !strstr(err, "--terminate-rate") || !strstr(err, "finite"))
            fail_msg("'%s': rc %d, '%s' (rate %g)", bad[i], rc, err, cfg.terminate_rate);
        dd_config_release(&cfg);
    }
    dd_config cfg;
    dd_config_defaults(&cfg);
    char err[256];
    char *ok[] = {"--terminate-rate", "2.5"};
    int npos;
    assert_int_equal(dd_config_parse(&cfg, groups, 2, ok, &npos, NULL, err, sizeof(err)), 0);
    assert_true(cfg.terminate_rate == 2.5);
    dd_config_release(&cfg);
}

static void test_logfmt_quoting(void **state)
{
    dd_buf b = DD_BUF_INIT;
    dd_logfmt_value(&b, "plain");
    dd_buf_putc(&b, ' ');
    dd_logfmt_value(&b, "two words");
    dd_buf_putc(&b, ' ');
    dd_logfmt_value(&b, "x=1 \"q\"\n");
    dd_buf_putc(&b, ' ');
    dd_logfmt_value(&b, "");
    assert_string_equal(dd_buf_str(&b), "plain \"two words\" \"x=1 \\\"q\\\"\\n\" \"\"");
    dd_buf_release(&b);
}

static void test_log_line_and_secret_scrub(void **state)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    dd_log *log = dd_log_new(f, DD_LOG_INFO);
    dd_log_add_secret(log, "hunter2secret");
    dd_log_add_field(log, "server_id", "host a");
    dd_info(log, "takeover", "workflow_id=%s attempts=%d latency_ms=%lld err=%s",
            "dispatcher-a b", 2, 15LL, "auth hunter2secret rejected");
    dd_debug(log, "hidden", "x=%d", 1);
    dd_log_free(log);
    fclose(f);
    assert_non_null(strstr(mem, "level=info event=takeover server_id=\"host a\" "
                                "workflow_id=\"dispatcher-a b\" attempts=2 latency_ms=15"));
    assert_null(strstr(mem, "hunter2secret"));
    assert_non_null(strstr(mem, "***"));
    assert_null(strstr(mem, "hidden"));
    free(mem);
}

/* The scrub ran over the finished line, after values were escaped: a secret
 * holding '"' or '\' appeared escaped (pa\"ss) and was not found. */
static void test_log_scrub_escaped_secret(void **state)
{
    static const char *const secrets[] = {"pa\"ss\\word", "tab\there", "new\nline!", "sp ace=x"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        char *mem = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&mem, &len);
        dd_log *log = dd_log_new(f, DD_LOG_INFO);
        dd_log_add_secret(log, secrets[i]);
        dd_buf msg = DD_BUF_INIT;
        dd_buf_printf(&msg, "AUTH %s failed", secrets[i]);
        dd_info(log, "redis_error", "error=%s alone=%s", dd_buf_str(&msg), secrets[i]);
        dd_log_add_field(log, "leaky_field", secrets[i]);
        dd_info(log, "again", "x=%d", 1);
        dd_log_free(log);
        fclose(f);
        /* Neither as given nor as the logger would escape it. */
        dd_buf esc = DD_BUF_INIT;
        dd_logfmt_value(&esc, secrets[i]);
        const char *e = dd_buf_str(&esc);
        dd_buf inner = DD_BUF_INIT; /* without the quotes */
        dd_buf_append(&inner, e + (e[0] == '"'), strlen(e) - (e[0] == '"' ? 2 : 0));
        if (strstr(mem, secrets[i]) || strstr(mem, dd_buf_str(&inner)))
            fail_msg("secret %zu leaked: %s", i, mem);
        assert_non_null(strstr(mem, "error=\"AUTH *** failed\" alone=***"));
        assert_non_null(strstr(mem, "leaky_field=***"));
        dd_buf_release(&esc);
        dd_buf_release(&inner);
        dd_buf_release(&msg);
        free(mem);
    }
}

/* free() is wrapped for this test binary (tests/unit/CMakeLists.txt:
 * -Wl,--wrap=free): it keeps a copy of what a watched pointer held when it
 * was freed. */
void __real_free(void *p);
void __wrap_free(void *p);
static const void *watch_ptr;
static size_t watch_len;
static unsigned char watch_seen[64];
static bool watch_hit;

void __wrap_free(void *p)
{
    if (p && p == watch_ptr) {
        memcpy(watch_seen, p, watch_len);
        watch_hit = true;
    }
    __real_free(p);
}

/* A secret is wiped before its memory is freed, in the optimised build too
 * (a memset before free is removed there as a dead store). */
static void test_secret_free_wipes(void **state)
{
    static const char secret[] = "correct-horse-battery-staple";
    char *s = dd_strdup(secret);
    watch_ptr = s;
    watch_len = sizeof(secret) - 1;
    watch_hit = false;
    dd_secret_free(s);
    watch_ptr = NULL;
    assert_true(watch_hit);
    for (size_t i = 0; i < sizeof(secret) - 1; i++)
        if (watch_seen[i] != 0)
            fail_msg("byte %zu still '%c' when freed: the wipe was optimised away", i,
                     watch_seen[i]);
    dd_secret_free(NULL);
}

static void test_config_parse(void **state)
{
    dd_config cfg;
    dd_config_defaults(&cfg);
    const dd_opt *groups[] = {dd_opts_common, dd_opts_state, dd_opts_dispatcher, dd_opts_heartbeat, dd_opts_stale, dd_opts_stack, NULL};
    char *argv[] = {"--stale-threshold=20s", "pos1", "--heartbeat-interval", "2s",
                    "--dispatcher", "p/q", "--redis-port", "7000", "--", "cmd", "--x"};
    int npos, dd;
    char err[256];
    assert_int_equal(dd_config_parse(&cfg, groups, 11, argv, &npos, &dd, err, sizeof(err)), 0);
    assert_int_equal(cfg.stale_threshold_ms, 20000);
    assert_int_equal(cfg.heartbeat_interval_ms, 2000);
    assert_int_equal(cfg.redis_port, 7000);
    assert_int_equal(cfg.ndispatchers, 1);
    assert_string_equal(cfg.dispatchers[0], "p/q");
    assert_int_equal(npos, 3);
    assert_int_equal(dd, 1);
    assert_string_equal(argv[0], "pos1");
    assert_string_equal(argv[1], "cmd");
    assert_string_equal(argv[2], "--x");
    assert_int_equal(dd_config_validate(&cfg, err, sizeof(err)), 0);
    dd_config_release(&cfg);
}

static void test_config_errors(void **state)
{
    dd_config cfg;
    char err[256];
    int npos;
    const dd_opt *groups[] = {dd_opts_common, dd_opts_state, dd_opts_dispatcher, dd_opts_heartbeat, dd_opts_stale, dd_opts_stack, NULL};

    dd_config_defaults(&cfg);
    char *a1[] = {"--nope"};
    assert_int_equal(dd_config_parse(&cfg, groups, 1, a1, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "unknown option '--nope'"));

    char *a2[] = {"--redis-port", "99999"};
    assert_int_equal(dd_config_parse(&cfg, groups, 2, a2, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "not a port"));

    char *a3[] = {"--dispatcher", "noslash"};
    assert_int_equal(dd_config_parse(&cfg, groups, 2, a3, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);

    char *a4[] = {"--heartbeat-interval", "-1s"};
    assert_int_equal(dd_config_parse(&cfg, groups, 2, a4, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "not a duration"));

    char *a5[] = {"--heartbeat-interval", "10s", "--stale-threshold", "5s"};
    assert_int_equal(dd_config_parse(&cfg, groups, 4, a5, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(dd_config_validate(&cfg, err, sizeof(err)), 0); /* no heartbeats here */
    cfg.heartbeats = true;
    assert_int_equal(dd_config_validate(&cfg, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "--stale-threshold"));

    /* the floor holds for every command, heartbeating or not (issue 13) */
    char *a7[] = {"--heartbeat-interval", "100ms", "--stale-threshold", "999ms"};
    assert_int_equal(dd_config_parse(&cfg, groups, 4, a7, &npos, NULL, err, sizeof(err)), 0);
    cfg.heartbeats = false;
    assert_int_equal(dd_config_validate(&cfg, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "--stale-threshold 999ms is below the floor of 1s"));
    char *a8[] = {"--stale-threshold", "1s"};
    assert_int_equal(dd_config_parse(&cfg, groups, 2, a8, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(dd_config_validate(&cfg, err, sizeof(err)), 0);

    char *a6[] = {"--redis-port"};
    assert_int_equal(dd_config_parse(&cfg, groups, 1, a6, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    dd_config_release(&cfg);
}

static void test_config_env(void **state)
{
    dd_config cfg;
    dd_config_defaults(&cfg);
    const dd_opt *groups[] = {dd_opts_common, dd_opts_heartbeat, dd_opts_stale, NULL};
    setenv("DISPATCHD_STALE_THRESHOLD", "45s", 1);
    char *argv[] = {"--heartbeat-interval", "3s"};
    int npos;
    char err[256];
    assert_int_equal(dd_config_parse(&cfg, groups, 2, argv, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg.stale_threshold_ms, 45000);
    setenv("DISPATCHD_STALE_THRESHOLD", "bogus", 1);
    assert_int_equal(dd_config_parse(&cfg, groups, 0, argv, &npos, NULL, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "DISPATCHD_STALE_THRESHOLD"));
    unsetenv("DISPATCHD_STALE_THRESHOLD");
    dd_config_release(&cfg);
}

/* DISPATCHD_DISPATCHER is a comma-separated list; any --dispatcher flag
 * replaces it whole (issue 13 item 8). */
static void test_config_dispatcher_env_list(void **state)
{
    const dd_opt *groups[] = {dd_opts_common, dd_opts_dispatcher, NULL};
    dd_config cfg;
    int npos;
    char err[256];
    char *none[] = {NULL};

    dd_config_defaults(&cfg);
    setenv("DISPATCHD_DISPATCHER", "env/a, env/b ,env/a", 1);
    assert_int_equal(dd_config_parse(&cfg, groups, 0, none, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg.ndispatchers, 2); /* trimmed, the repeat is one dispatcher */
    assert_string_equal(cfg.dispatchers[0], "env/a");
    assert_string_equal(cfg.dispatchers[1], "env/b");
    assert_int_equal(dd_config_source(&cfg, "dispatcher"), DD_SRC_ENV);
    dd_config_release(&cfg);

    /* a flag replaces the list, which is not even read */
    dd_config_defaults(&cfg);
    setenv("DISPATCHD_DISPATCHER", "env/a,,broken", 1);
    char *flag[] = {"--dispatcher", "f/x", "--dispatcher=f/y"};
    assert_int_equal(dd_config_parse(&cfg, groups, 3, flag, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg.ndispatchers, 2);
    assert_string_equal(cfg.dispatchers[0], "f/x");
    assert_string_equal(cfg.dispatchers[1], "f/y");
    assert_int_equal(dd_config_source(&cfg, "dispatcher"), DD_SRC_FLAG);
    dd_config_release(&cfg);

    /* without a flag, an empty entry or a bad one is refused, named */
    const char *bad[][2] = {{"env/a,,env/b", "entry 2 is empty"},
                            {"env/a,", "entry 2 is empty"},
                            {"env/a,nope", "entry 2 'nope'"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dd_config_defaults(&cfg);
        setenv("DISPATCHD_DISPATCHER", bad[i][0], 1);
        assert_int_equal(dd_config_parse(&cfg, groups, 0, none, &npos, NULL, err, sizeof(err)),
                         DD_EINVAL);
        assert_non_null(strstr(err, bad[i][1]));
        assert_non_null(strstr(err, "DISPATCHD_DISPATCHER"));
        dd_config_release(&cfg);
    }
    unsetenv("DISPATCHD_DISPATCHER");
}

/* Two services on one port are refused naming both options (item 5);
 * --redis-port against --redis-url (item 6). */
static void test_config_ports_and_redis(void **state)
{
    const dd_opt *stack[] = {dd_opts_common, dd_opts_stack, NULL};
    dd_config cfg;
    int npos;
    char err[300];

    dd_config_defaults(&cfg);
    char *same[] = {"--redis-port", "7000", "--temporal-port=7000"};
    assert_int_equal(dd_config_parse(&cfg, stack, 3, same, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(dd_config_check_ports(&cfg, stack, NULL, 0, err, sizeof(err)), DD_EINVAL);
    assert_non_null(strstr(err, "--redis-port 7000 and --temporal-port 7000"));
    dd_config_release(&cfg);

    dd_config_defaults(&cfg);
    setenv("DISPATCHD_TEMPORAL_HTTP_PORT", "6379", 1);
    char *none[] = {NULL};
    assert_int_equal(dd_config_parse(&cfg, stack, 0, none, &npos, NULL, err, sizeof(err)), 0);
    assert_int_equal(dd_config_check_ports(&cfg, stack, NULL, 0, err, sizeof(err)), DD_EINVAL);
    assert_non_null(
        strstr(err, "--redis-port (default 6379) and DISPATCHD_TEMPORAL_HTTP_PORT=6379"));
    unsetenv("DISPATCHD_TEMPORAL_HTTP_PORT");
    dd_config_release(&cfg);
    dd_config_defaults(&cfg);
    assert_int_equal(dd_config_parse(&cfg, stack, 0, none, &npos, NULL, err, sizeof(err)), 0);
    dd_port_use metrics = {"metrics-listen", 7233};
    assert_int_equal(dd_config_check_ports(&cfg, stack, &metrics, 1, err, sizeof(err)),
                     DD_EINVAL);
    assert_non_null(strstr(err, "--temporal-port (default 7233) and --metrics-listen"));
    dd_port_use off = {"metrics-listen", 0}; /* 0: a free port is picked */
    assert_int_equal(dd_config_check_ports(&cfg, stack, &off, 1, err, sizeof(err)), 0);
    dd_config_release(&cfg);

    const dd_opt *status[] = {dd_opts_common, dd_opts_redis, dd_opts_redis_port, NULL};
    struct {
        const char *env_port, *env_url;
        char *argv[4];
        int argc, rc;
        const char *url; /* cfg.redis_url afterwards ("" = the port) */
    } cases[] = {
        {NULL, NULL, {"--redis-port", "6380"}, 2, 0, ""},
        {NULL, NULL, {"--redis-port", "6380", "--redis-url", "redis://localhost:6380/2"}, 4, 0,
         "redis://localhost:6380/2"},
        {NULL, NULL, {"--redis-port", "6380", "--redis-url", "redis://u:p@127.0.0.1:6380"}, 4, 0,
         "redis://u:p@127.0.0.1:6380"},
        {NULL, NULL, {"--redis-port", "6380", "--redis-url", "redis://127.0.0.1:63800/0"}, 4,
         DD_EINVAL, NULL},
        {NULL, NULL, {"--redis-port", "6380", "--redis-url", "redis://10.0.0.1:6380/0"}, 4,
         DD_EINVAL, NULL},
        {NULL, "redis://10.0.0.1:6379/0", {"--redis-port", "6380"}, 2, 0, ""},
        {"6380", NULL, {"--redis-url", "redis://10.0.0.1:6379/0"}, 2, 0,
         "redis://10.0.0.1:6379/0"},
        {"6380", "redis://10.0.0.1:6379/0", {NULL}, 0, DD_EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dd_config_defaults(&cfg);
        if (cases[i].env_port)
            setenv("DISPATCHD_REDIS_PORT", cases[i].env_port, 1);
        if (cases[i].env_url)
            setenv("DISPATCHD_REDIS_URL", cases[i].env_url, 1);
        assert_int_equal(dd_config_parse(&cfg, status, cases[i].argc, cases[i].argv, &npos, NULL,
                                         err, sizeof(err)),
                         0);
        int rc = dd_config_resolve_redis(&cfg, status, err, sizeof(err));
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            assert_string_equal(cfg.redis_url, cases[i].url);
        else
            assert_non_null(strstr(err, "name different Redis servers"));
        unsetenv("DISPATCHD_REDIS_PORT");
        unsetenv("DISPATCHD_REDIS_URL");
        dd_config_release(&cfg);
    }
}

static void test_strerror(void **state)
{
    assert_string_equal(dd_strerror(DD_EFENCED), "fenced: held by a newer owner");
    assert_string_equal(dd_strerror(-2), "No such file or directory");
    assert_string_equal(dd_strerror(0), "success");
}

static void test_msgf_marks_cuts(void **state)
{
    char b[12];
    assert_true(dd_msgf(b, sizeof(b), "%s", "fits"));
    assert_string_equal(b, "fits");
    assert_true(dd_msgf(b, sizeof(b), "%s", "exactly 11c"));
    assert_string_equal(b, "exactly 11c");
    assert_false(dd_msgf(b, sizeof(b), "%s", "twelve chars"));
    assert_string_equal(b, "twelve c...");
    /* never half a UTF-8 sequence before the dots: "aaaaaaa" + e-acute x3 */
    assert_false(dd_msgf(b, sizeof(b), "%s", "aaaaaaa\xc3\xa9\xc3\xa9\xc3\xa9"));
    assert_string_equal(b, "aaaaaaa...");
    char t[3];
    assert_false(dd_msgf(t, sizeof(t), "%s", "long"));
    assert_string_equal(t, "..");
    assert_false(dd_msgf(b, 0, "%s", "x"));
}

static void test_strdupf_whole(void **state)
{
    char big[5000];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *s = dd_strdupf("%s/%s.lock", big, "redis");
    assert_int_equal(strlen(s), sizeof(big) - 1 + 11);
    assert_string_equal(s + sizeof(big) - 1, "/redis.lock");
    free(s);
}

static void test_dispatcher_split_whole(void **state)
{
    /* a 1000-byte project is kept whole (the CLI cut at 255 once) */
    char spec[1100];
    memset(spec, 'a', 1000);
    snprintf(spec + 1000, sizeof(spec) - 1000, "/q/with/slashes");
    char *p, *q;
    assert_int_equal(dd_config_dispatcher_split(spec, &p, &q), 0);
    assert_int_equal(strlen(p), 1000);
    assert_string_equal(q, "q/with/slashes");
    free(p);
    free(q);
    static const char *const bad[] = {"noslash", "/q", "p/", "", NULL};
    for (int i = 0; i < 5; i++) {
        p = q = (char *)"x";
        assert_int_equal(dd_config_dispatcher_split(bad[i], &p, &q), DD_EINVAL);
        assert_null(p);
        assert_null(q);
    }
}

static void test_secret_file_whole(void **state)
{
    /* a secret longer than the old 4 KiB line buffer comes back whole */
    char path[] = "/tmp/dd-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 10000; i++)
        fputc('a' + i % 26, f);
    fputs("\r\nsecond line\n", f);
    fclose(f);
    char *out = NULL, err[128];
    unsetenv("DD_TEST_NO_SUCH_SECRET");
    assert_int_equal(dd_config_secret("DD_TEST_NO_SUCH_SECRET", path, &out, err, sizeof(err)), 0);
    assert_int_equal(strlen(out), 10000);
    assert_int_equal(out[9999], 'a' + 9999 % 26);
    free(out);
    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    assert_int_equal(dd_config_secret(NULL, path, &out, err, sizeof(err)), DD_EINVAL);
    assert_null(out);
    unlink(path);
}

/* The child environment: ours replace inherited variables of the same
 * name (and only those: a prefix is not a name), the rest is inherited. */
static void test_env_with(void **state)
{
    (void)state;
    setenv("DD_T_KEEP", "inherited", 1);
    setenv("DD_T_MINE", "inherited", 1);
    setenv("DD_T_MINE_LONGER", "inherited", 1);
    const char *extra[] = {"DD_T_MINE=ours", "DD_T_NEW=x", NULL};
    char **env = dd_env_with(extra);
    int keep = 0, mine = 0, longer = 0, fresh = 0;
    for (char **e = env; *e; e++) {
        keep += !strcmp(*e, "DD_T_KEEP=inherited");
        mine += !strncmp(*e, "DD_T_MINE=", 10);
        longer += !strcmp(*e, "DD_T_MINE_LONGER=inherited");
        fresh += !strcmp(*e, "DD_T_NEW=x");
        if (!strncmp(*e, "DD_T_MINE=", 10))
            assert_string_equal(*e, "DD_T_MINE=ours");
    }
    assert_int_equal(keep, 1);
    assert_int_equal(mine, 1);
    assert_int_equal(longer, 1);
    assert_int_equal(fresh, 1);
    free(env);
    env = dd_env_with(NULL);
    assert_non_null(env);
    free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_jitter_spreads),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_token_bucket_odd_rates),
        cmocka_unit_test(test_config_non_finite_numbers),
        cmocka_unit_test(test_logfmt_quoting),
        cmocka_unit_test(test_log_line_and_secret_scrub),
        cmocka_unit_test(test_log_scrub_escaped_secret),
        cmocka_unit_test(test_secret_free_wipes),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_env),
        cmocka_unit_test(test_config_dispatcher_env_list),
        cmocka_unit_test(test_config_ports_and_redis),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_msgf_marks_cuts),
        cmocka_unit_test(test_strdupf_whole),
        cmocka_unit_test(test_dispatcher_split_whole),
        cmocka_unit_test(test_secret_file_whole),
        cmocka_unit_test(test_env_with),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
