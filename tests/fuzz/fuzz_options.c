/* fuzz_options - what the user types: src/core/time.c durations,
 * src/core/config.c option parsing (argv and validation), the
 * project/queue split, the bounded-message helper, and src/http's base URL
 * check (dd_http_new, no connection).
 *   - a duration parses to >= 0 or is refused; a plain "<n>ms"/"<n>s"/...
 *     built from the input's number parses to exactly that many ms (or is
 *     refused as an overflow, never wrapped);
 *   - option parsing never keeps a pointer outside argv and accepts only
 *     known options; whatever it accepts, validation answers;
 *   - dd_msgf never writes past n and marks every cut with "...".
 *
 * Input: [selector][payload...]; for argv the payload is NUL-separated. */
#include "fuzz.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "core/time.h"
#include "http/http.h"

#include <inttypes.h>
#include <uv.h>

static void duration(fuzz_in *in, const char *s)
{
    int64_t ms = -1;
    if (dd_duration_parse(s, &ms) == 0) {
        FUZZ_CHECK(ms >= 0, "'%s' parsed to %" PRId64, s, ms);
        char out[32];
        dd_duration_format(ms, out, sizeof(out));
        FUZZ_CHECK(strlen(out) < sizeof(out) - 1, "'%s' formats to '%s'", s, out);
    }
    /* a single unit: exact, or refused when it does not fit */
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && i < in->n; i++)
        v = v << 8 | in->p[i];
    v >>= v & 63; /* small numbers too */
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1000}};
    int u = in->n ? in->p[0] % 5 : 0;
    char text[48];
    snprintf(text, sizeof(text), "%" PRIu64 "%s", v, units[u].unit);
    int rc = dd_duration_parse(text, &ms);
    if (v <= (uint64_t)(INT64_MAX / units[u].mult))
        FUZZ_CHECK(rc == 0 && ms == (int64_t)v * units[u].mult, "'%s' parsed to %" PRId64 " (rc %d)",
                   text, ms, rc);
    else
        FUZZ_CHECK(rc == DD_EINVAL, "'%s' (overflow) parsed to %" PRId64, text, ms);
}

static void args(fuzz_in *in)
{
    static const dd_opt *const groups[] = {
        dd_opts_common,  dd_opts_state,      dd_opts_json,      dd_opts_stack,
        dd_opts_temporal, dd_opts_redis,     dd_opts_metrics,   dd_opts_dispatcher,
        dd_opts_server_id, dd_opts_heartbeat, dd_opts_stale,    dd_opts_reconcile,
        dd_opts_takeover, dd_opts_stop,      dd_opts_loop,      NULL};
    char *argv[33], *keep[33];
    int argc = 0;
    while (in->n > 0 && argc < 32)
        argv[argc] = keep[argc] = fuzz_cstr(in), argc++;
    argv[argc] = NULL;
    dd_config cfg;
    dd_config_defaults(&cfg);
    char err[256];
    int npos = -1, dashdash = -2;
    int rc = dd_config_parse(&cfg, groups, argc, argv, &npos, &dashdash, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == DD_EINVAL, "rc %d", rc);
    if (rc == 0) {
        FUZZ_CHECK(npos >= 0 && npos <= argc, "npos %d of %d", npos, argc);
        FUZZ_CHECK(dashdash >= -1 && dashdash <= npos, "dashdash %d, npos %d", dashdash, npos);
        FUZZ_CHECK(cfg.ndispatchers >= 0 && cfg.ndispatchers <= DD_MAX_DISPATCHERS, "%d",
                   cfg.ndispatchers);
        for (int i = 0; i < cfg.ndispatchers; i++) {
            char *p, *q;
            FUZZ_CHECK(dd_config_dispatcher_split(cfg.dispatchers[i], &p, &q) == 0,
                       "accepted dispatcher '%s' does not split", cfg.dispatchers[i]);
            FUZZ_CHECK(strlen(p) + 1 + strlen(q) == strlen(cfg.dispatchers[i]), "split lost bytes");
            free(p);
            free(q);
        }
        FUZZ_CHECK(cfg.heartbeat_interval_ms >= 0 && cfg.stale_threshold_ms >= 0 &&
                       cfg.terminate_rate >= 0,
                   "a negative knob was accepted");
        if (dd_config_validate(&cfg, err, sizeof(err)) < 0)
            FUZZ_CHECK(*err, "refused without a reason");
    } else {
        FUZZ_CHECK(*err && strlen(err) < sizeof(err), "refused without a reason");
    }
    dd_config_release(&cfg);
    for (int i = 0; i < argc; i++)
        free(keep[i]);
}

static void msgf(fuzz_in *in, const char *s)
{
    size_t n = in->n ? in->p[0] % 40 : 0;
    char buf[48];
    memset(buf, 'Z', sizeof(buf));
    bool fit = dd_msgf(buf, n, "<%s>", s);
    for (size_t i = n; i < sizeof(buf); i++)
        FUZZ_CHECK(buf[i] == 'Z', "wrote byte %zu of a %zu-byte buffer", i, n);
    if (n == 0)
        return;
    size_t len = strlen(buf), want = strlen(s) + 2;
    FUZZ_CHECK(len < n, "%zu bytes in a %zu-byte buffer", len, n);
    FUZZ_CHECK(fit == (want < n), "fit %d for %zu bytes in %zu", fit, want, n);
    if (!fit && n >= 4)
        FUZZ_CHECK(len >= 3 && strcmp(buf + len - 3, "...") == 0, "cut without '...': '%s'", buf);
}

static uv_loop_t loop;

static void base_url(const char *s)
{
    dd_http *h = NULL;
    char err[1024] = "";
    dd_http_opts o = {.base_url = s};
    /* https would load the system CA store each time: the URL check comes
     * first either way, so only plain http goes past it */
    if (strncmp(s, "https", 5) == 0)
        return;
    int rc = dd_http_new(&loop, &o, &h, err, sizeof(err));
    if (rc == 0) {
        FUZZ_CHECK(h && strncmp(dd_http_base_url(h), "http://", 7) == 0, "base '%s'",
                   h ? dd_http_base_url(h) : "");
        dd_http_close(h, NULL, NULL);
        uv_run(&loop, UV_RUN_NOWAIT);
    } else {
        FUZZ_CHECK(rc == DD_EINVAL && err[0], "rc %d, '%s'", rc, err);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uv_loop_init(&loop);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t sel = fuzz_byte(&in);
    char *s = malloc(in.n + 1);
    memcpy(s, in.p, in.n);
    s[in.n] = '\0';
    switch (sel % 5) {
    case 0: duration(&in, s); break;
    case 1: args(&in); break;
    case 2: {
        char *p, *q;
        if (dd_config_dispatcher_split(s, &p, &q) == 0) {
            FUZZ_CHECK(*p && *q && !strchr(p, '/'), "split '%s' into '%s' and '%s'", s, p, q);
            free(p);
            free(q);
        }
        break;
    }
    case 3: msgf(&in, s); break;
    default: base_url(s); break;
    }
    free(s);
    return 0;
}
