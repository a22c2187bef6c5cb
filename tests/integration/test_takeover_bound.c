/* A failover's takeover sends no start its lease might not cover (issue 16
 * follow-up): dd_failover_lease_plan's arithmetic, and dd_takeover_start
 * with a start_by_ms bound against the REAL Temporal dev server (ctest
 * fixture `temporal`, no stand-in). The takeover's describe is made to wait
 * in the client's own line (max_in_flight 1, its one slot held by another
 * call), as calls do on a busy host (docs/scale.md): when the describe is
 * answered the bound has passed, and no start may reach Temporal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "owner/id.h"
#include "owner/owner.h"
#include "temporal/temporal.h"
#include "testsupport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct fx {
    uv_loop_t loop;
    dd_log *log;
    FILE *logf;
    dd_metrics *metrics;
    dd_ctx ctx;
    dd_temporal *t;
} fx;

static int setup(void **state)
{
    const char *url = dd_test_temporal_url();
    if (!url) {
        fprintf(stderr, "temporal fixture not running (DD_FIXTURE_DIR unset?)\n");
        return -1;
    }
    fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    f->logf = tmpfile();
    f->log = dd_log_new(f->logf, DD_LOG_DEBUG);
    f->metrics = dd_metrics_new();
    f->ctx = (dd_ctx){.loop = &f->loop, .log = f->log, .metrics = f->metrics};
    /* one request on the wire at a time: the takeover's describe can be
     * made to wait in line behind another call */
    dd_temporal_opts o = {.base_url = url,
                          .namespace_ = "default",
                          .identity = "test_takeover_bound",
                          .max_in_flight = 1};
    char err[256];
    if (dd_temporal_new(&f->ctx, &o, &f->t, err, sizeof(err)) < 0)
        fail_msg("dd_temporal_new: %s", err);
    *state = f;
    return 0;
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

static int teardown(void **state)
{
    fx *f = *state;
    bool closed = false;
    dd_temporal_close(f->t, closed_cb, &closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(closed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    dd_test_echo_log(f->logf);
    dd_log_free(f->log);
    dd_metrics_free(f->metrics);
    free(f);
    return 0;
}

typedef struct call_got {
    bool done;
    int st;
    char run_id[64];
    dd_temporal_status status;
} call_got;

static void call_cb(int st, const dd_temporal_result *r, void *arg)
{
    call_got *g = arg;
    g->done = true;
    g->st = st;
    snprintf(g->run_id, sizeof(g->run_id), "%s", r->run_id ? r->run_id : "");
    if (r->execution)
        g->status = r->execution->status;
}

typedef struct tk_got {
    bool done;
    int err, attempts;
    char outcome[32], message[512], run_id[64];
} tk_got;

static void tk_cb(const dd_takeover_result *r, void *arg)
{
    tk_got *g = arg;
    g->done = true;
    g->err = r->err;
    g->attempts = r->attempts;
    snprintf(g->outcome, sizeof(g->outcome), "%s", r->outcome ? r->outcome : "");
    snprintf(g->message, sizeof(g->message), "%s", r->message);
    snprintf(g->run_id, sizeof(g->run_id), "%s", r->run_id);
}

/* The lease outlives the takeover's two calls, and the start may go out
 * only while it would still be answered a margin before the lease ends. */
static void test_lease_plan(void **state)
{
    (void)state;
    static const int64_t thr[] = {2000, 15000, 60000};
    static const int64_t dl[] = {1000, 10000, 30000};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            dd_failover_lease l = dd_failover_lease_plan(thr[i], dl[j]);
            assert_true(l.ttl_ms >= thr[i] + 2 * dl[j] + DD_FAILOVER_LEASE_MARGIN_MS);
            /* a start sent at the last allowed moment is answered (or
             * given up by the client) a margin before the lease expires */
            assert_true(l.start_within_ms + dl[j] + DD_FAILOVER_LEASE_MARGIN_MS <= l.ttl_ms);
            /* and the describe before it has at least a whole deadline */
            assert_true(l.start_within_ms >= dl[j]);
        }
    dd_failover_lease d = dd_failover_lease_plan(15000, 30000); /* the defaults */
    assert_int_equal(d.ttl_ms, 80000);
    assert_int_equal(d.start_within_ms, 45000);
}

static void unique_project(char *p, size_t n, const char *tag)
{
    snprintf(p, n, "p-tkb-%s-%d-%u", tag, (int)getpid(), (unsigned)(dd_mono_us() % 1000000u));
}

/* Runs a takeover of (project, q) with the given bound while the client's
 * only slot is held for hold_ms by a close-event read of an open run
 * (`blocker`, a workflow started for the purpose). */
static void takeover_behind(fx *f, const char *project, const char *blocker_wid,
                            const char *blocker_run, int hold_ms, uint64_t start_by,
                            tk_got *g)
{
    call_got hold = {0};
    dd_temporal_call *hc = NULL;
    /* the server holds this request open (the run is still running) */
    assert_int_equal(dd_temporal_close_event(f->t, blocker_wid, blocker_run, call_cb, &hold, &hc),
                     0);
    dd_test_sleep_loop(&f->loop, 100); /* it has the slot */
    dd_takeover_req req = {.project = project,
                           .queue = "q",
                           .server_id = "test-standby",
                           .start_by_ms = start_by};
    char err[256];
    dd_takeover *tk = NULL;
    assert_int_equal(dd_takeover_start(&f->ctx, f->t, &req, tk_cb, g, &tk, err, sizeof(err)), 0);
    dd_test_sleep_loop(&f->loop, hold_ms);
    assert_false(g->done); /* its describe waited in line all along */
    dd_temporal_cancel(hc);
    assert_true(dd_test_run_until(&f->loop, &g->done, 30000));
    assert_true(dd_test_run_until(&f->loop, &hold.done, 5000));
}

static void terminate(fx *f, const char *wid, const char *run)
{
    call_got g = {0};
    assert_int_equal(dd_temporal_terminate(f->t, wid, run, "test cleanup", call_cb, &g, NULL), 0);
    assert_true(dd_test_run_until(&f->loop, &g.done, 30000));
}

static void start_blocker(fx *f, char *wid, size_t wlen, call_got *g)
{
    char p[96], err[128];
    unique_project(p, sizeof(p), "blk");
    assert_int_equal(dd_dispatcher_id(p, "q", wid, wlen, err, sizeof(err)), 0);
    dd_temporal_start_req sr = {.workflow_id = wid,
                                .workflow_type = DD_DISPATCHER_WORKFLOW_TYPE,
                                .task_queue = "dd-test-takeover-bound"};
    assert_int_equal(dd_temporal_start(f->t, &sr, call_cb, g, NULL), 0);
    assert_true(dd_test_run_until(&f->loop, &g->done, 30000));
    assert_int_equal(g->st, 0);
}

/* The bound passes while the describe waits: no start, nothing runs. */
static void test_no_start_past_the_bound(void **state)
{
    fx *f = *state;
    char bwid[DD_DISPATCHER_ID_BUFLEN];
    call_got b = {0};
    start_blocker(f, bwid, sizeof(bwid), &b);

    char p[96], wid[DD_DISPATCHER_ID_BUFLEN], err[128];
    unique_project(p, sizeof(p), "late");
    assert_int_equal(dd_dispatcher_id(p, "q", wid, sizeof(wid), err, sizeof(err)), 0);
    tk_got g = {0};
    takeover_behind(f, p, bwid, b.run_id, 800, dd_mono_ms() + 300, &g);
    assert_int_equal(g.err, DD_ETIMEOUT);
    assert_string_equal(g.outcome, "failed");
    assert_int_equal(g.attempts, 0); /* no start request was made */
    assert_non_null(strstr(g.message, "failover lease could expire"));
    assert_string_equal(g.run_id, "");
    /* Temporal agrees: nothing was started under the ID */
    call_got d = {0};
    assert_int_equal(dd_temporal_describe(f->t, wid, NULL, call_cb, &d, NULL), 0);
    assert_true(dd_test_run_until(&f->loop, &d.done, 30000));
    assert_int_equal(d.st, DD_ENOTFOUND);
    terminate(f, bwid, b.run_id);
}

/* The same wait within the bound: the start goes out and runs. */
static void test_start_within_the_bound(void **state)
{
    fx *f = *state;
    char bwid[DD_DISPATCHER_ID_BUFLEN];
    call_got b = {0};
    start_blocker(f, bwid, sizeof(bwid), &b);

    char p[96], wid[DD_DISPATCHER_ID_BUFLEN], err[128];
    unique_project(p, sizeof(p), "ok");
    assert_int_equal(dd_dispatcher_id(p, "q", wid, sizeof(wid), err, sizeof(err)), 0);
    tk_got g = {0};
    takeover_behind(f, p, bwid, b.run_id, 800, dd_mono_ms() + 60000, &g);
    assert_int_equal(g.err, 0);
    assert_string_equal(g.outcome, "started");
    assert_int_equal(g.attempts, 1);
    call_got d = {0};
    assert_int_equal(dd_temporal_describe(f->t, wid, NULL, call_cb, &d, NULL), 0);
    assert_true(dd_test_run_until(&f->loop, &d.done, 30000));
    assert_int_equal(d.st, 0);
    assert_int_equal(d.status, DD_WF_RUNNING);
    terminate(f, wid, g.run_id);
    terminate(f, bwid, b.run_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_plan),
        cmocka_unit_test_setup_teardown(test_no_start_past_the_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_within_the_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
