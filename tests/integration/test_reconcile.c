/* Integration tests of src/reconcile against a REAL redis-server (one per
 * test, on a free loopback port) and the REAL Temporal dev server of the
 * ctest fixture `temporal`. Dispatcher workflows are started through the
 * Temporal client; nothing polls them, so they stay Running until
 * terminated. Records are written with dd_store_claim and an old now_ms to
 * make them stale. Every test ends with uv_loop_close() == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "owner/id.h"
#include "owner/owner.h"
#include "reconcile/reconcile.h"
#include "store/store.h"
#include "temporal/temporal.h"
#include "../support/testsupport.h"

#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define THR 15000 /* stale threshold in most tests */

/* testsupport tracks the server until exit: keep it static */
static dd_test_server the_server;

typedef struct fx {
    uv_loop_t loop;
    FILE *logf;
    dd_log *log;
    dd_metrics *metrics;
    dd_ctx ctx;
    dd_store *s;
    dd_temporal *t;
    char queue[64]; /* unique per test: scopes the sweep */
    int64_t clock;  /* pinned wall clock when clock_pinned */
    bool clock_pinned;
    /* on_terminated hook actions */
    int hook_calls;
    bool hook_heartbeat, hook_reclaim, hook_stop_redis;
    int64_t hook_epoch;
    uv_timer_t *hook_kill_timer;
    dd_reconciler *hook_close; /* close this reconciler from the hook */
    int closed_from_hook;
    char private_dir[512]; /* a private Temporal to stop in teardown, if any */
    int cycles;
    dd_reconcile_stats last; /* from on_cycle */
    dd_reconciler *open[4];  /* closed by teardown if a failed assertion left them */
    uint64_t first_cycle_ms, last_cycle_ms; /* dd_mono_ms of on_cycle calls */
    uint64_t min_gap_ms, max_gap_ms;        /* between on_cycle calls */
} fx;

/* ---- plumbing ----------------------------------------------------------- */

static void stop_private_temporal(const char *dir);

/* Runs the loop until *flag or ms pass; returns *flag. */
static bool run_until(fx *f, bool *flag, int ms)
{
    return dd_test_run_until(&f->loop, flag, ms);
}

static void sleep_loop(fx *f, int ms)
{
    dd_test_sleep_loop(&f->loop, ms);
}

static dd_store *open_store(fx *f, int64_t timeout_ms)
{
    dd_store_opts o = {0};
    char url[128], err[256];
    dd_store *s;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", the_server.port);
    o.url = url;
    o.cmd_timeout_ms = timeout_ms;
    o.reconnect_base_ms = 20;
    o.reconnect_cap_ms = 200;
    o.seed = 7;
    assert_int_equal(dd_store_open(&f->ctx, &o, &s, err, sizeof(err)), 0);
    return s;
}

static dd_temporal *open_temporal(fx *f, const char *url, int attempts, int64_t timeout_ms)
{
    dd_temporal_opts o = {
        .base_url = url,
        .namespace_ = "default",
        .identity = "test_reconcile",
        .timeout_ms = timeout_ms,
        .deadline_ms = attempts == 1 ? timeout_ms : 0,
        .max_attempts = attempts,
        .backoff_base_ms = 50,
        .backoff_cap_ms = 200,
    };
    dd_temporal *t = NULL;
    char terr[512];
    assert_int_equal(dd_temporal_new(&f->ctx, &o, &t, terr, sizeof(terr)), 0);
    assert_non_null(t);
    return t;
}

static int setup(void **state)
{
    const char *url = dd_test_temporal_url();
    if (!url) {
        fprintf(stderr, "temporal fixture not running (DD_FIXTURE_DIR unset?)\n");
        return -1;
    }
    if (dd_test_redis_start(&the_server, NULL) < 0)
        return -1;
    fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    f->logf = tmpfile();
    f->log = dd_log_new(f->logf, DD_LOG_DEBUG);
    f->metrics = dd_metrics_new();
    f->ctx = (dd_ctx){.loop = &f->loop, .log = f->log, .metrics = f->metrics};
    f->s = open_store(f, 2000);
    f->t = open_temporal(f, url, 0, 0);
    snprintf(f->queue, sizeof(f->queue), "%s", dd_test_unique("q"));
    *state = f;
    return 0;
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

static int teardown(void **state)
{
    fx *f = *state;
    int closed = 0;
    for (int i = 0; i < 4; i++)
        if (f->open[i]) {
            dd_reconciler_close(f->open[i], NULL, NULL);
            f->open[i] = NULL;
        }
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (f->private_dir[0])
        stop_private_temporal(f->private_dir); /* also after a failed assertion */
    dd_temporal_close(f->t, count_cb, &closed);
    dd_store_close(f->s, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    dd_test_echo_log(f->logf); /* what the reconciler logged, for the test output */
    dd_log_free(f->log);
    dd_metrics_free(f->metrics);
    dd_test_server_stop(&the_server);
    free(f);
    assert_int_equal(closed, 1);
    assert_int_equal(rc, 0); /* the loop closed clean */
    return 0;
}

/* ---- Temporal and Redis helpers ---------------------------------------- */

typedef struct got {
    bool done;
    int status;
    char run_id[64];
    dd_temporal_status wf;
} got;

static void t_cb(int st, const dd_temporal_result *r, void *arg)
{
    got *g = arg;
    g->done = true;
    g->status = st;
    snprintf(g->run_id, sizeof(g->run_id), "%s", r->run_id ? r->run_id : "");
    if (r->execution)
        g->wf = r->execution->status;
}

/* Starts a running dispatcher for (project, f->queue); fills wid and run. */
static void start_dispatcher(fx *f, const char *project, const char *server_id, char *wid,
                             char *run)
{
    char err[128], memo[128];
    got g = {0};
    assert_int_equal(dd_dispatcher_id(project, f->queue, wid, DD_DISPATCHER_ID_BUFLEN, err,
                                      sizeof(err)),
                     0);
    snprintf(memo, sizeof(memo), "{\"server_id\":\"%s\"}", server_id);
    dd_temporal_start_req r = {
        .workflow_id = wid,
        .workflow_type = DD_DISPATCHER_WORKFLOW_TYPE,
        .task_queue = f->queue,
        .memo_json = memo,
        .conflict_policy = "TERMINATE_EXISTING",
    };
    assert_int_equal(dd_temporal_start(f->t, &r, t_cb, &g, NULL), 0);
    assert_true(run_until(f, &g.done, 30000));
    assert_int_equal(g.status, 0);
    snprintf(run, 64, "%s", g.run_id);
}

static dd_temporal_status wf_status(fx *f, const char *wid, const char *run)
{
    got g = {0};
    assert_int_equal(dd_temporal_describe(f->t, wid, run, t_cb, &g, NULL), 0);
    assert_true(run_until(f, &g.done, 30000));
    assert_int_equal(g.status, 0);
    return g.wf;
}

static void terminate_now(fx *f, const char *wid, const char *run)
{
    got g = {0};
    assert_int_equal(dd_temporal_terminate(f->t, wid, run, "test", t_cb, &g, NULL), 0);
    assert_true(run_until(f, &g.done, 30000));
    assert_int_equal(g.status, 0);
}

typedef struct sgot {
    bool done;
    int status;
    int64_t epoch, hb_ms;
    char run_id[64];
} sgot;

static void owner_cb(int st, const dd_store_owner *o, void *arg)
{
    sgot *g = arg;
    g->done = true;
    g->status = st;
    if (o)
        g->epoch = o->epoch;
}

static void hb_cb(int st, const dd_store_hb *h, void *arg)
{
    sgot *g = arg;
    g->done = true;
    g->status = st;
    if (h) {
        g->hb_ms = h->hb_ms;
        g->epoch = h->epoch;
        snprintf(g->run_id, sizeof(g->run_id), "%s", h->run_id ? h->run_id : "");
    }
}

/* A record as an owner heartbeating against ttl_ms writes it. */
static int64_t claim_ttl(fx *f, const char *project, const char *wid, const char *run,
                         const char *server, int64_t now_ms, int64_t ttl_ms)
{
    sgot g = {0};
    dd_store_claim_args a = {wid, run, server, project, f->queue, now_ms, ttl_ms, NULL, NULL, NULL};
    assert_int_equal(dd_store_claim(f->s, &a, owner_cb, &g), 0);
    assert_true(run_until(f, &g.done, 10000));
    assert_int_equal(g.status, 0);
    return g.epoch;
}

static int64_t claim(fx *f, const char *project, const char *wid, const char *run,
                     const char *server, int64_t now_ms)
{
    return claim_ttl(f, project, wid, run, server, now_ms, THR);
}

/* DD_ENOTFOUND when the record is gone; else 0 with hb/run in *out. */
static int get_record(fx *f, const char *wid, sgot *out)
{
    memset(out, 0, sizeof(*out));
    assert_int_equal(dd_store_get(f->s, wid, hb_cb, out), 0);
    assert_true(run_until(f, &out->done, 10000));
    return out->status;
}

static void raw_cmd(const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", the_server.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* ---- reconciler helpers ------------------------------------------------ */

static int64_t pinned_clock(void *arg)
{
    fx *f = arg;
    return f->clock_pinned ? f->clock : dd_wall_ms();
}

static void on_kill_timer(uv_timer_t *h);
static void forget(fx *f, dd_reconciler *r);

static void on_terminated(const char *wid, const char *run, void *arg)
{
    fx *f = arg;
    f->hook_calls++;
    if (f->hook_heartbeat) {
        /* the paused owner wakes up: its fenced heartbeat goes out on the
         * same connection before the reconciler's compare-and-delete */
        static sgot g;
        memset(&g, 0, sizeof(g));
        assert_int_equal(dd_store_heartbeat(f->s, wid, run, f->hook_epoch, dd_wall_ms(), THR,
                                            owner_cb, &g),
                         0);
    }
    if (f->hook_reclaim) {
        static sgot g;
        static char runbuf[64];
        memset(&g, 0, sizeof(g));
        snprintf(runbuf, sizeof(runbuf), "%s", "new-owner-run");
        dd_store_claim_args a = {wid, runbuf, "host-new", "p", f->queue, dd_wall_ms(), THR, NULL, NULL, NULL};
        assert_int_equal(dd_store_claim(f->s, &a, owner_cb, &g), 0);
    }
    if (f->hook_kill_timer)
        uv_timer_start(f->hook_kill_timer, on_kill_timer, 300, 0);
    if (f->hook_close) {
        forget(f, f->hook_close);
        dd_reconciler_close(f->hook_close, count_cb, &f->closed_from_hook);
        f->hook_close = NULL;
    }
    if (f->hook_stop_redis)
        dd_test_server_stop(&the_server); /* Redis dies mid-cycle */
}

static void on_cycle(const dd_reconcile_stats *st, void *arg)
{
    fx *f = arg;
    uint64_t now = dd_mono_ms();
    if (f->cycles > 0 && (f->min_gap_ms == 0 || now - f->last_cycle_ms < f->min_gap_ms))
        f->min_gap_ms = now - f->last_cycle_ms;
    if (f->cycles > 0 && now - f->last_cycle_ms > f->max_gap_ms)
        f->max_gap_ms = now - f->last_cycle_ms;
    if (f->cycles == 0)
        f->first_cycle_ms = now;
    f->last_cycle_ms = now;
    f->cycles++;
    f->last = *st;
}

static dd_reconciler *reconciler(fx *f, dd_store *s, dd_temporal *t, const char *holder,
                                 dd_reconciler_opts *o)
{
    dd_reconciler_opts d = {0};
    if (!o)
        o = &d;
    o->holder = holder;
    if (!o->stale_threshold_ms)
        o->stale_threshold_ms = THR;
    o->seed = 11;
    o->clock_ms = pinned_clock;
    o->on_terminated = on_terminated;
    o->on_cycle = on_cycle;
    o->arg = f;
    dd_reconciler *r = NULL;
    char err[256];
    assert_int_equal(dd_reconciler_new(&f->ctx, s ? s : f->s, t ? t : f->t, o, &r, err,
                                       sizeof(err)),
                     0);
    assert_non_null(r);
    for (int i = 0; i < 4; i++)
        if (!f->open[i]) {
            f->open[i] = r;
            break;
        }
    return r;
}

typedef struct cyc {
    bool done;
    dd_reconcile_stats st;
} cyc;

static void cycle_done(const dd_reconcile_stats *st, void *arg)
{
    cyc *c = arg;
    c->done = true;
    c->st = *st;
}

static dd_reconcile_stats run_cycle(fx *f, dd_reconciler *r)
{
    cyc c = {0};
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    assert_true(run_until(f, &c.done, 60000));
    return c.st;
}

static void forget(fx *f, dd_reconciler *r)
{
    for (int i = 0; i < 4; i++)
        if (f->open[i] == r)
            f->open[i] = NULL;
}

static void close_reconciler(fx *f, dd_reconciler *r)
{
    int closed = 0;
    forget(f, r);
    dd_reconciler_close(r, count_cb, &closed);
    bool flag = false;
    for (int i = 0; i < 300 && !closed; i++)
        run_until(f, &flag, 100);
    assert_int_equal(closed, 1);
}

static double metric(fx *f, const char *name, const char *label)
{
    dd_metric *m = dd_metrics_find(f->metrics, name);
    assert_non_null(m);
    return dd_metric_get(m, label ? DD_L1(label) : NULL);
}

/* ---- tests -------------------------------------------------------------- */

/* stale + running -> terminated, then its record deleted; a healthy record
 * and one from the future (clock skew) untouched; the threshold boundary
 * exact (pinned clock): exactly threshold old is kept, 1 ms more is stale. */
static void test_classify_terminate_delete(void **state)
{
    fx *f = *state;
    char w_stale[DD_DISPATCHER_ID_BUFLEN], r_stale[64], w_ok[DD_DISPATCHER_ID_BUFLEN],
        r_ok[64], w_skew[DD_DISPATCHER_ID_BUFLEN], r_skew[64], w_edge[DD_DISPATCHER_ID_BUFLEN],
        r_edge[64], w_over[DD_DISPATCHER_ID_BUFLEN], r_over[64];
    int64_t now = dd_wall_ms();
    f->clock = now;
    f->clock_pinned = true;

    /* before anything: every counter already exported at 0 */
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    dd_buf b = DD_BUF_INIT;
    dd_metrics_render(f->metrics, &b);
    assert_non_null(strstr(dd_buf_str(&b), "dispatchd_stale_terminations_total 0"));
    assert_non_null(strstr(dd_buf_str(&b), "dispatchd_stale_cleanups_total 0"));
    assert_non_null(
        strstr(dd_buf_str(&b), "dispatchd_cleanup_errors_total{stage=\"terminate\"} 0"));
    assert_non_null(strstr(dd_buf_str(&b), "dispatchd_reconcile_cycles_total{result=\"error\"} 0"));
    dd_buf_release(&b);

    start_dispatcher(f, "p-stale", "host-dead", w_stale, r_stale);
    start_dispatcher(f, "p-ok", "host-live", w_ok, r_ok);
    start_dispatcher(f, "p-skew", "host-skew", w_skew, r_skew);
    start_dispatcher(f, "p-edge", "host-edge", w_edge, r_edge);
    start_dispatcher(f, "p-over", "host-over", w_over, r_over);
    claim(f, "p-stale", w_stale, r_stale, "host-dead", now - THR - 60000);
    claim(f, "p-ok", w_ok, r_ok, "host-live", now - 1000);
    claim(f, "p-skew", w_skew, r_skew, "host-skew", now + 600000);
    claim(f, "p-edge", w_edge, r_edge, "host-edge", now - THR);
    claim(f, "p-over", w_over, r_over, "host-over", now - THR - 1);

    dd_reconcile_stats st = run_cycle(f, r);
    printf("measure: cycle with 2 stale of 5: %.1f ms\n", st.duration_ms);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.active, 3); /* fresh: healthy, future, edge */
    assert_int_equal(st.stale, 2);
    assert_int_equal(st.candidates, 2);
    assert_int_equal(st.terminated, 2);
    assert_int_equal(st.cleaned, 2);
    assert_int_equal(st.errors, 0);
    assert_int_equal(f->hook_calls, 2);

    sgot g;
    assert_int_equal(wf_status(f, w_stale, r_stale), DD_WF_TERMINATED);
    assert_int_equal(get_record(f, w_stale, &g), DD_ENOTFOUND);
    assert_int_equal(wf_status(f, w_over, r_over), DD_WF_TERMINATED);
    assert_int_equal(get_record(f, w_over, &g), DD_ENOTFOUND);
    /* untouched: healthy, future, exactly at the threshold */
    assert_int_equal(wf_status(f, w_ok, r_ok), DD_WF_RUNNING);
    assert_int_equal(get_record(f, w_ok, &g), 0);
    assert_int_equal(wf_status(f, w_skew, r_skew), DD_WF_RUNNING);
    assert_int_equal(get_record(f, w_skew, &g), 0);
    assert_int_equal(wf_status(f, w_edge, r_edge), DD_WF_RUNNING);
    assert_int_equal(get_record(f, w_edge, &g), 0);

    /* metrics and the cycle line */
    assert_int_equal(metric(f, "dispatchd_stale_terminations_total", NULL), 2);
    assert_int_equal(metric(f, "dispatchd_stale_cleanups_total", NULL), 2);
    assert_int_equal(metric(f, "dispatchd_dispatchers_active", NULL), 3);
    assert_int_equal(metric(f, "dispatchd_dispatchers_stale", NULL), 2);
    assert_int_equal(metric(f, "dispatchd_reconcile_cycles_total", "ok"), 1);
    assert_int_equal(metric(f, "dispatchd_reconcile_duration_seconds", NULL), 1);

    /* 1 ms later the edge record is stale too */
    f->clock = now + 1;
    st = run_cycle(f, r);
    assert_int_equal(st.terminated, 1);
    assert_int_equal(st.cleaned, 1);
    assert_int_equal(wf_status(f, w_edge, r_edge), DD_WF_TERMINATED);

    /* and a cycle with nothing to do is quiet */
    st = run_cycle(f, r);
    assert_int_equal(st.candidates, 0);
    assert_int_equal(st.active, 2);
    close_reconciler(f, r);

    /* the termination was logged with who, what, why */
    fflush(f->logf);
    rewind(f->logf);
    char line[2048];
    bool seen = false;
    while (fgets(line, sizeof(line), f->logf))
        if (strstr(line, "event=stale_terminate") && strstr(line, r_stale)) {
            assert_non_null(strstr(line, "owner=host-dead"));
            assert_non_null(
                strstr(line, "reason=\"stale: no heartbeat from host-dead for 1m15s\""));
            assert_non_null(strstr(line, "requester=host-rec"));
            assert_non_null(strstr(line, "age_ms=75000"));
            seen = true;
        }
    assert_true(seen);
    fseek(f->logf, 0, SEEK_END);
    terminate_now(f, w_ok, r_ok);
    terminate_now(f, w_skew, r_skew);
}

/* The record is refreshed (fenced heartbeat of the same run) or re-claimed
 * by a new owner between classification and delete: it must survive. */
static void test_compare_and_delete_race(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64], w2[DD_DISPATCHER_ID_BUFLEN], run2[64];
    int64_t now = dd_wall_ms();
    start_dispatcher(f, "p-race", "host-paused", w, run);
    f->hook_epoch = claim(f, "p-race", w, run, "host-paused", now - THR - 5000);

    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    f->hook_heartbeat = true;
    dd_reconcile_stats st = run_cycle(f, r);
    f->hook_heartbeat = false;
    assert_int_equal(st.result, 0);
    assert_int_equal(st.terminated, 1);
    assert_int_equal(st.kept_refreshed, 1);
    assert_int_equal(st.cleaned, 0);
    sgot g;
    assert_int_equal(get_record(f, w, &g), 0);
    assert_true(g.hb_ms >= now); /* the refreshed one */
    assert_string_equal(g.run_id, run);

    /* re-claimed by a new owner with a new run */
    start_dispatcher(f, "p-race2", "host-old", w2, run2);
    claim(f, "p-race2", w2, run2, "host-old", now - THR - 5000);
    f->hook_reclaim = true;
    st = run_cycle(f, r);
    f->hook_reclaim = false;
    assert_int_equal(st.terminated, 1);
    assert_int_equal(st.kept_refreshed, 1);
    assert_int_equal(get_record(f, w2, &g), 0);
    assert_string_equal(g.run_id, "new-owner-run");
    close_reconciler(f, r);
}

/* A run already closed (or unknown to Temporal): the record is deleted,
 * nothing is terminated. */
static void test_already_closed(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64], w2[DD_DISPATCHER_ID_BUFLEN], run2[64];
    int64_t now = dd_wall_ms();
    start_dispatcher(f, "p-closed", "host-x", w, run);
    terminate_now(f, w, run);
    claim(f, "p-closed", w, run, "host-x", now - THR - 1000);
    /* a run id Temporal never saw */
    start_dispatcher(f, "p-ghost", "host-y", w2, run2);
    claim(f, "p-ghost", w2, "4b1e8f6a-0000-4000-8000-000000000000", "host-y", now - THR - 1000);

    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    dd_reconcile_stats st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.terminated, 0);
    assert_int_equal(st.already_closed, 2);
    assert_int_equal(st.cleaned, 2);
    assert_int_equal(f->hook_calls, 0);
    sgot g;
    assert_int_equal(get_record(f, w, &g), DD_ENOTFOUND);
    assert_int_equal(get_record(f, w2, &g), DD_ENOTFOUND);
    /* the real current run of w2 was not touched (exact run id only) */
    assert_int_equal(wf_status(f, w2, run2), DD_WF_RUNNING);
    close_reconciler(f, r);
    terminate_now(f, w2, run2);
}

/* Visibility in batches: stale records of running, closed and unknown runs.
 * The running and closed ones are decided from one visibility listing of
 * their exact run ids (no describe); the one Temporal never saw is not
 * listed, and is described before anything is decided about it. */
typedef struct vis_wait {
    bool done;
    int status;
    size_t n;
    int running;
} vis_wait;

static void vis_cb(int st, const dd_temporal_result *r, void *arg)
{
    vis_wait *v = arg;
    v->done = true;
    v->status = st;
    v->n = st == 0 ? r->nexecutions : 0;
    v->running = 0;
    for (size_t i = 0; st == 0 && i < r->nexecutions; i++)
        v->running += r->executions[i].status == DD_WF_RUNNING;
}

static void test_visibility_batch(void **state)
{
    fx *f = *state;
    enum { NRUN = 3, NCLOSED = 2 };
    char w[NRUN + NCLOSED + 1][DD_DISPATCHER_ID_BUFLEN], run[NRUN + NCLOSED + 1][64];
    int64_t now = dd_wall_ms();
    dd_buf q = DD_BUF_INIT;
    for (int i = 0; i < NRUN + NCLOSED; i++) {
        char p[32];
        snprintf(p, sizeof(p), "p-vis-%d", i);
        start_dispatcher(f, p, "host-gone", w[i], run[i]);
        if (i >= NRUN)
            terminate_now(f, w[i], run[i]);
        claim(f, p, w[i], run[i], "host-gone", now - THR - 1000 - i);
        dd_buf_printf(&q, "%s'%s'", i ? "," : "RunId IN (", run[i]);
    }
    dd_buf_puts(&q, ")");
    /* a run id Temporal never saw */
    char err[64];
    assert_int_equal(dd_dispatcher_id("p-vis-ghost", f->queue, w[NRUN + NCLOSED],
                                      sizeof(w[0]), err, sizeof(err)),
                     0);
    claim(f, "p-vis-ghost", w[NRUN + NCLOSED], "4b1e8f6a-0000-4000-8000-00000000beef",
          "host-gone", now - THR - 2000);
    /* visibility lags writes: wait until it shows what we did (bounded) */
    vis_wait v = {0};
    for (int i = 0; i < 100; i++) {
        memset(&v, 0, sizeof(v));
        assert_int_equal(dd_temporal_list(f->t, dd_buf_str(&q), NULL, 10, vis_cb, &v, NULL), 0);
        assert_true(run_until(f, &v.done, 30000));
        if (v.status == 0 && v.n == NRUN + NCLOSED && v.running == NRUN)
            break;
        sleep_loop(f, 100);
    }
    assert_int_equal(v.n, NRUN + NCLOSED);
    assert_int_equal(v.running, NRUN);
    dd_buf_release(&q);

    dd_reconciler_opts o = {.terminate_rate = 1000};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);
    dd_reconcile_stats st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.candidates, NRUN + NCLOSED + 1);
    assert_int_equal(st.visible, NRUN + NCLOSED);
    assert_int_equal(st.described, 1);
    assert_int_equal(st.terminated, NRUN);
    assert_int_equal(st.already_closed, NCLOSED + 1);
    assert_int_equal(st.cleaned, NRUN + NCLOSED + 1);
    for (int i = 0; i < NRUN; i++)
        assert_int_equal(wf_status(f, w[i], run[i]), DD_WF_TERMINATED);
    sgot g;
    for (int i = 0; i <= NRUN + NCLOSED; i++)
        assert_int_equal(get_record(f, w[i], &g), DD_ENOTFOUND);
    close_reconciler(f, r);
}

/* A fake Temporal whose visibility lags: it lists the record's run as
 * RUNNING, but the run has closed since (terminate answers "already
 * completed"), and the ID may run a newer run by now. The reconciler ends
 * only the exact run it listed (the terminate names that run id), finds it
 * closed, deletes the record; nothing is decided from the listing alone
 * that a terminate scoped to the run could get wrong. With the listing
 * failing, it falls back to describes. */
/* A scripted stand-in's listener on a free loopback port (this test's
 * fake and slow servers): returns the port. */
static int stub_listen(fx *f, uv_tcp_t *tcp, void *data, uv_connection_cb on_conn)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, tcp);
    tcp->data = data;
    assert_int_equal(uv_tcp_bind(tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)tcp, 128, on_conn), 0);
    int sl = sizeof(sa);
    assert_int_equal(uv_tcp_getsockname(tcp, (struct sockaddr *)&sa, &sl), 0);
    return ntohs(sa.sin_port);
}

typedef struct fake_conn fake_conn;
typedef struct fake_srv {
    uv_tcp_t tcp;
    int port, conns, lists, describes, terminates;
    bool closed, fail_list;
    char wid[DD_DISPATCHER_ID_BUFLEN], run[64];
    char term_body[1024];
    /* hold_lists > 1: list requests are held unanswered until that many
     * are held at once, then all answered (test_visibility_ahead); a client
     * that sends one at a time times out on each instead */
    int hold_lists, max_held;
    fake_conn *held[8];
    int nheld;
} fake_srv;

struct fake_conn {
    uv_tcp_t tcp;
    fake_srv *srv;
    char buf[16384];
    size_t len;
};

static void fake_conn_closed(uv_handle_t *h)
{
    fake_conn *c = h->data;
    fake_srv *srv = c->srv;
    for (int i = 0; i < srv->nheld; i++)
        if (srv->held[i] == c)
            srv->held[i] = srv->held[--srv->nheld];
    srv->conns--;
    free(c);
}

static void fake_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void fake_reply(fake_conn *c, int code, const char *body)
{
    size_t cap = strlen(body) + 256;
    char *resp = malloc(cap);
    int len = snprintf(resp, cap,
                       "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       code, strlen(body), body);
    uv_write_t *w = malloc(sizeof(*w));
    w->data = resp;
    uv_buf_t b = uv_buf_init(resp, (unsigned)len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, fake_written) < 0) {
        free(resp);
        free(w);
    }
}

/* Answers every complete request in the buffer (head + Content-Length body). */
static void fake_serve(fake_conn *c)
{
    fake_srv *srv = c->srv;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t head = (size_t)(end + 4 - c->buf), body = 0;
        char *cl = memmem(c->buf, head, "Content-Length: ", 16);
        if (cl)
            body = strtoul(cl + 16, NULL, 10);
        if (c->len < head + body)
            return;
        char line[4096];
        size_t ll = (size_t)((char *)memchr(c->buf, '\r', head) - c->buf);
        snprintf(line, sizeof(line), "%.*s", (int)(ll < sizeof(line) - 1 ? ll : sizeof(line) - 1),
                 c->buf);
        if (strstr(line, "/terminate")) {
            srv->terminates++;
            snprintf(srv->term_body, sizeof(srv->term_body), "%.*s", (int)body, c->buf + head);
            fake_reply(c, 404, "{\"code\":5,\"message\":\"workflow execution already completed\"}");
        } else if (strstr(line, "/workflows?query=")) {
            srv->lists++;
            if (srv->fail_list) {
                fake_reply(c, 400, "{\"code\":3,\"message\":\"invalid query\"}");
            } else {
                char b[1024];
                snprintf(b, sizeof(b),
                         "{\"executions\":[{\"execution\":{\"workflowId\":\"%s\",\"runId\":\"%s\"},"
                         "\"type\":{\"name\":\"dispatchd.dispatcher\"},"
                         "\"status\":\"WORKFLOW_EXECUTION_STATUS_RUNNING\"}]}",
                         srv->wid, srv->run);
                if (srv->hold_lists > 1 && srv->nheld < (int)(sizeof(srv->held) / sizeof(srv->held[0]))) {
                    srv->held[srv->nheld++] = c;
                    if (srv->nheld > srv->max_held)
                        srv->max_held = srv->nheld;
                    if (srv->nheld >= srv->hold_lists) {
                        for (int i = 0; i < srv->nheld; i++)
                            fake_reply(srv->held[i], 200, b);
                        srv->nheld = 0;
                    }
                } else {
                    fake_reply(c, 200, b);
                }
            }
        } else {
            srv->describes++;
            fake_reply(c, 404, "{\"code\":5,\"message\":\"workflow execution not found\"}");
        }
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
    }
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    fake_conn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    fake_conn *c = st->data;
    if (n < 0 || c->len + (size_t)n >= sizeof(c->buf)) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
        return;
    }
    c->len += (size_t)n;
    fake_serve(c);
}

static void fake_accept(uv_stream_t *ls, int status)
{
    fake_srv *srv = ls->data;
    if (status < 0)
        return;
    fake_conn *c = calloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(ls->loop, &c->tcp);
    c->tcp.data = c;
    srv->conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read) < 0)
        uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
}

static void fake_listener_closed(uv_handle_t *h)
{
    ((fake_srv *)h->data)->closed = true;
}

/* Listens on a free loopback port; a client with 1 attempt and a 2 s
 * timeout talks to it. */
static dd_temporal *fake_start(fx *f, fake_srv *srv)
{
    srv->port = stub_listen(f, &srv->tcp, srv, fake_accept);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv->port);
    return open_temporal(f, url, 1, 2000);
}

/* Closes the client, then the fake (it lives on the test's stack). */
static void fake_stop(fx *f, fake_srv *srv, dd_temporal *t)
{
    int closed = 0;
    dd_temporal_close(t, count_cb, &closed);
    bool never = false;
    for (int i = 0; i < 100 && !closed; i++)
        run_until(f, &never, 20);
    uv_close((uv_handle_t *)&srv->tcp, fake_listener_closed);
    for (int i = 0; i < 100 && (srv->conns > 0 || !srv->closed); i++)
        run_until(f, &never, 20);
    assert_int_equal(srv->conns, 0);
}

static void test_visibility_lags(void **state)
{
    fx *f = *state;
    fake_srv srv;
    memset(&srv, 0, sizeof(srv));
    char err[64];
    dd_temporal *t = fake_start(f, &srv);

    assert_int_equal(dd_dispatcher_id("p-lag", f->queue, srv.wid, sizeof(srv.wid), err,
                                      sizeof(err)),
                     0);
    snprintf(srv.run, sizeof(srv.run), "%s", "4b1e8f6a-0000-4000-8000-00000000a11a");
    int64_t now = dd_wall_ms();
    claim(f, "p-lag", srv.wid, srv.run, "host-gone", now - THR - 1000);
    dd_reconciler_opts o = {.terminate_rate = 1000};
    dd_reconciler *r = reconciler(f, NULL, t, "host-rec", &o);
    dd_reconcile_stats st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(srv.lists, 1);
    assert_int_equal(st.visible, 1);
    assert_int_equal(st.described, 0);
    assert_int_equal(srv.describes, 0);
    /* the listing said RUNNING: a terminate of exactly that run, which
     * found it closed */
    assert_int_equal(srv.terminates, 1);
    assert_non_null(strstr(srv.term_body, srv.run));
    assert_int_equal(st.terminated, 0);
    assert_int_equal(st.already_closed, 1);
    assert_int_equal(st.cleaned, 1);
    sgot g;
    assert_int_equal(get_record(f, srv.wid, &g), DD_ENOTFOUND);

    /* the listing fails: every candidate is described instead */
    srv.fail_list = true;
    claim(f, "p-lag", srv.wid, srv.run, "host-gone", now - THR - 1000);
    st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(srv.lists, 2);
    assert_int_equal(st.visible, 0);
    assert_int_equal(st.described, 1);
    assert_int_equal(srv.describes, 1);
    assert_int_equal(srv.terminates, 1);
    assert_int_equal(st.already_closed, 1);
    assert_int_equal(st.cleaned, 1);
    close_reconciler(f, r);
    fake_stop(f, &srv, t);
}

/* The visibility queries go out ahead of the lanes, several at once (not
 * one, then the next when it answered): 300 stale records are three
 * queries of 100 run ids, and this fake answers none of them until it holds
 * all three. One query at a time would wait out the client's 2 s timeout
 * on each (then describe) and never have more than one held. */
static void test_visibility_ahead(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    fake_srv srv;
    memset(&srv, 0, sizeof(srv));
    srv.hold_lists = 3;
    char err[64];
    dd_temporal *t = fake_start(f, &srv);
    snprintf(srv.wid, sizeof(srv.wid), "%s", "dispatcher-none");
    snprintf(srv.run, sizeof(srv.run), "%s", "none");
    int64_t old = dd_wall_ms() - THR - 1000;
    for (int i = 0; i < N; i++) {
        char p[32], wid[DD_DISPATCHER_ID_BUFLEN], run[64];
        snprintf(p, sizeof(p), "p-ahead-%d", i);
        assert_int_equal(dd_dispatcher_id(p, f->queue, wid, sizeof(wid), err, sizeof(err)), 0);
        snprintf(run, sizeof(run), "00000000-0000-4000-8000-%012d", i);
        claim(f, p, wid, run, "host-gone", old - i);
    }
    dd_reconciler_opts o = {.terminate_rate = 1000};
    dd_reconciler *r = reconciler(f, NULL, t, "host-rec", &o);
    dd_reconcile_stats st = run_cycle(f, r);
    printf("measure: %d candidates, queries held at once: %d, cycle %.0f ms\n", N, srv.max_held,
           st.duration_ms);
    /* the fake lives on this stack: close it before any assertion can
     * leave this frame */
    close_reconciler(f, r);
    fake_stop(f, &srv, t);
    assert_int_equal(srv.lists, 3);
    assert_int_equal(srv.max_held, 3);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.errors, 0);
    /* none listed (the fake lists a stranger): all described, found gone */
    assert_int_equal(st.visible, 0);
    assert_int_equal(st.described, N);
    assert_int_equal(srv.describes, N);
    assert_int_equal(st.cleaned, N);
}

/* Malformed records are counted and kept, never silently deleted; a
 * record whose workflow id does not match its project/queue, and a run
 * that is not a dispatcher, are not terminated. */
static void test_malformed(void **state)
{
    fx *f = *state;
    int64_t old = dd_wall_ms() - THR - 1000;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    /* missing run_id */
    raw_cmd("HSET dd:hb:{dispatcher-bad-q} workflow_id dispatcher-bad-q server_id h project bad "
            "queue q hb_ms %lld ttl_ms 1 epoch 1",
            (long long)old);
    raw_cmd("ZADD dd:hb:index %lld dispatcher-bad-q", (long long)old);
    /* project/queue do not produce this id: never terminate what it names */
    start_dispatcher(f, "p-mismatch", "host-m", w, run);
    claim(f, "someone-else", w, run, "host-m", old);

    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    dd_reconcile_stats st = run_cycle(f, r);
    assert_int_equal(st.candidates, 2);
    assert_int_equal(st.malformed, 2);
    assert_int_equal(st.terminated, 0);
    assert_int_equal(st.cleaned, 0);
    assert_int_equal(st.result, 0); /* a data problem, not a failed cycle */
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "malformed"), 2);
    sgot g;
    assert_int_equal(get_record(f, "dispatcher-bad-q", &g), 0);
    assert_int_equal(get_record(f, w, &g), 0);
    assert_int_equal(wf_status(f, w, run), DD_WF_RUNNING);

    /* an index entry whose hash is gone: reported, and the dangling entry removed */
    raw_cmd("ZADD dd:hb:index %lld dispatcher-gone-q", (long long)old);
    st = run_cycle(f, r);
    assert_int_equal(st.malformed, 3);
    assert_int_equal(st.stale, 3);
    st = run_cycle(f, r);
    assert_int_equal(st.stale, 2);
    close_reconciler(f, r);
    terminate_now(f, w, run);
}

/* Redis dies mid-cycle (after the terminate, before the delete): errors
 * counted, cycle result error, no crash; Redis back (with the record, as a
 * persistent Redis would keep it) -> the next cycle cleans up. Redis down
 * at cycle start -> a list error. */
static void test_redis_down(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    int64_t old = dd_wall_ms() - THR - 1000;
    dd_store_close(f->s, NULL, NULL);
    f->s = open_store(f, 500);
    start_dispatcher(f, "p-redis", "host-z", w, run);
    claim(f, "p-redis", w, run, "host-z", old);

    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    f->hook_stop_redis = true;
    dd_reconcile_stats st = run_cycle(f, r);
    f->hook_stop_redis = false;
    assert_int_equal(st.terminated, 1);
    assert_true(st.errors >= 1);
    assert_int_not_equal(st.result, 0);
    assert_int_equal(st.cleaned, 0);
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "delete"), 1);
    assert_int_equal(metric(f, "dispatchd_reconcile_cycles_total", "error"), 1);

    /* still down: the stale query fails */
    st = run_cycle(f, r);
    assert_int_not_equal(st.result, 0);
    assert_true(metric(f, "dispatchd_cleanup_errors_total", "list") >= 1);

    assert_int_equal(dd_test_redis_restart(&the_server, NULL), 0);
    bool never = false;
    for (int i = 0; i < 50 && !dd_store_ready(f->s); i++)
        run_until(f, &never, 100);
    assert_true(dd_store_ready(f->s));
    claim(f, "p-redis", w, run, "host-z", old);
    st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.already_closed, 1);
    assert_int_equal(st.cleaned, 1);
    sgot g;
    assert_int_equal(get_record(f, w, &g), DD_ENOTFOUND);
    close_reconciler(f, r);
}

/* Temporal unreachable: errors counted, the record kept for the next cycle. */
static void test_temporal_down(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64], url[64];
    start_dispatcher(f, "p-tdown", "host-t", w, run);
    claim(f, "p-tdown", w, run, "host-t", dd_wall_ms() - THR - 1000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dd_test_free_port());
    dd_temporal *dead = open_temporal(f, url, 1, 500);

    dd_reconciler *r = reconciler(f, NULL, dead, "host-rec", NULL);
    dd_reconcile_stats st = run_cycle(f, r);
    assert_int_not_equal(st.result, 0);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.terminated, 0);
    assert_int_equal(st.cleaned, 0);
    /* the describe (which must vouch for a dispatcher before any terminate) fails first */
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "describe"), 1);
    sgot g;
    assert_int_equal(get_record(f, w, &g), 0);
    close_reconciler(f, r);
    int closed = 0;
    dd_temporal_close(dead, count_cb, &closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);

    /* a client for a namespace that does not exist: "not found" must not
     * read as "run gone" (that would delete the record of a running run) */
    dd_temporal_opts no = {.base_url = dd_test_temporal_url(), .namespace_ = "no-such-ns",
                           .identity = "test_reconcile", .max_attempts = 1};
    dd_temporal *wrong = NULL;
    char werr[512];
    assert_int_equal(dd_temporal_new(&f->ctx, &no, &wrong, werr, sizeof(werr)), 0);
    assert_non_null(wrong);
    r = reconciler(f, NULL, wrong, "host-rec", NULL);
    st = run_cycle(f, r);
    assert_int_not_equal(st.result, 0);
    assert_int_equal(st.already_closed, 0);
    assert_int_equal(st.cleaned, 0);
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "describe"), 2);
    assert_int_equal(get_record(f, w, &g), 0);
    close_reconciler(f, r);
    dd_temporal_close(wrong, count_cb, &closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);

    /* Temporal back: the next cycle (with the lease released) finishes the job */
    r = reconciler(f, NULL, NULL, "host-rec", NULL);
    st = run_cycle(f, r);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.terminated, 1);
    assert_int_equal(st.cleaned, 1);
    close_reconciler(f, r);
    assert_int_equal(closed, 2);
}

/* A private Temporal dev server (same fixture script, own directory and
 * ports), so this test can kill it without disturbing the shared one. Its
 * directory is in the test's scratch dir, removed at exit (it was left in
 * the build's fixture dir, one per run). */
static int private_temporal(char *dir, size_t dirlen, char *url, size_t urllen)
{
    const char *src = getenv("DD_SOURCE_DIR");
    char cmd[1024];
    static unsigned seq;
    if (!src)
        return -1;
    snprintf(dir, dirlen, "%s/temporal-%u", dd_test_tmpdir(), seq++);
    snprintf(cmd, sizeof(cmd), "bash '%s/tests/fixtures/temporal.sh' start '%s' >/dev/null", src,
             dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "%s/url", dir);
    FILE *fp = fopen(cmd, "r");
    if (!fp || !fgets(url, (int)urllen, fp)) {
        if (fp)
            fclose(fp);
        return -1;
    }
    fclose(fp);
    url[strcspn(url, "\n")] = '\0';
    return 0;
}

/* SIGKILL to the server's whole process group: Temporal dies mid-cycle. */
static void kill_private_temporal(const char *dir)
{
    char path[512];
    long pid = 0;
    snprintf(path, sizeof(path), "%s/pid", dir);
    FILE *fp = fopen(path, "r");
    if (fp) {
        if (fscanf(fp, "%ld", &pid) != 1)
            pid = 0;
        fclose(fp);
    }
    if (pid > 0)
        kill(-(pid_t)pid, SIGKILL);
}

static void stop_private_temporal(const char *dir)
{
    char cmd[1024];
    /* --any: a test may have killed it (kill_private_temporal) */
    snprintf(cmd, sizeof(cmd),
             "bash '%s/tests/fixtures/temporal.sh' stop '%s' --any >/dev/null 2>&1",
             getenv("DD_SOURCE_DIR"), dir);
    if (system(cmd) != 0)
        fprintf(stderr, "stopping the private temporal failed\n");
}

static void on_kill_timer(uv_timer_t *h)
{
    kill_private_temporal(h->data);
}

/* Temporal dies after the describe vouched for the run and while the
 * terminate waits for its token: the terminate fails, is counted with stage
 * "terminate", and the record is kept for the next cycle. */
static void test_temporal_dies_before_terminate(void **state)
{
    fx *f = *state;
    char *dir = f->private_dir, url[128], w[2][DD_DISPATCHER_ID_BUFLEN], run[2][64];
    assert_int_equal(private_temporal(dir, sizeof(f->private_dir), url, sizeof(url)), 0);
    dd_temporal *pt = open_temporal(f, url, 1, 1000);
    dd_temporal *shared = f->t;
    f->t = pt; /* start the dispatchers on the private server */
    int64_t old = dd_wall_ms() - THR - 1000;
    start_dispatcher(f, "p-die-0", "host-dead", w[0], run[0]);
    start_dispatcher(f, "p-die-1", "host-dead", w[1], run[1]);
    f->t = shared;
    claim(f, "p-die-0", w[0], run[0], "host-dead", old);
    claim(f, "p-die-1", w[1], run[1], "host-dead", old - 1); /* older: goes first */

    /* 1 token per second, burst 1: the second terminate waits ~1 s, and
     * Temporal is killed 300 ms after the first one succeeded */
    uv_timer_t killer;
    uv_timer_init(&f->loop, &killer);
    killer.data = dir;
    dd_reconciler_opts o = {.terminate_rate = 1};
    dd_reconciler *r = reconciler(f, NULL, pt, "host-rec", &o);
    f->hook_kill_timer = &killer;
    dd_reconcile_stats st = run_cycle(f, r);
    f->hook_kill_timer = NULL;
    uv_close((uv_handle_t *)&killer, NULL);
    assert_int_equal(st.terminated, 1);
    assert_int_equal(st.cleaned, 1);
    assert_int_equal(st.errors, 1);
    assert_int_not_equal(st.result, 0);
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "terminate"), 1);
    assert_int_equal(metric(f, "dispatchd_cleanup_errors_total", "describe"), 0);
    sgot g;
    assert_int_equal(get_record(f, w[1], &g), DD_ENOTFOUND);
    assert_int_equal(get_record(f, w[0], &g), 0); /* kept: retried next cycle */
    assert_string_equal(g.run_id, run[0]);
    close_reconciler(f, r);
    int closed = 0;
    dd_temporal_close(pt, count_cb, &closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    stop_private_temporal(dir);
    dir[0] = '\0';
    assert_int_equal(closed, 1);
}

/* Two reconcilers (two hosts: own store connections) at once: each stale
 * run terminated exactly once, every record cleaned. */
static void test_two_reconcilers(void **state)
{
    fx *f = *state;
    enum { N = 8 };
    char w[N][DD_DISPATCHER_ID_BUFLEN], run[N][64];
    int64_t old = dd_wall_ms() - THR - 1000;
    for (int i = 0; i < N; i++) {
        char p[32];
        snprintf(p, sizeof(p), "p-two-%d", i);
        start_dispatcher(f, p, "host-dead", w[i], run[i]);
        claim(f, p, w[i], run[i], "host-dead", old);
    }
    dd_store *s2 = open_store(f, 2000);
    dd_reconciler *a = reconciler(f, NULL, NULL, "host-a", NULL);
    dd_reconciler *b = reconciler(f, s2, NULL, "host-b", NULL);
    cyc ca = {0}, cb = {0};
    assert_int_equal(dd_reconciler_run_once(a, cycle_done, &ca), 0);
    assert_int_equal(dd_reconciler_run_once(b, cycle_done, &cb), 0);
    assert_true(run_until(f, &ca.done, 60000));
    assert_true(run_until(f, &cb.done, 60000));
    printf("measure: two reconcilers: a terminated=%d cleaned=%d leased_elsewhere=%d "
           "already_closed=%d; b terminated=%d cleaned=%d leased_elsewhere=%d already_closed=%d\n",
           ca.st.terminated, ca.st.cleaned, ca.st.leased_elsewhere, ca.st.already_closed,
           cb.st.terminated, cb.st.cleaned, cb.st.leased_elsewhere, cb.st.already_closed);
    assert_int_equal(ca.st.terminated + cb.st.terminated, N);
    assert_int_equal(f->hook_calls, N);
    assert_int_equal(ca.st.errors + cb.st.errors, 0);
    for (int i = 0; i < N; i++) {
        sgot g;
        assert_int_equal(wf_status(f, w[i], run[i]), DD_WF_TERMINATED);
        assert_int_equal(get_record(f, w[i], &g), DD_ENOTFOUND);
    }
    /* each candidate went to exactly one of them first */
    assert_int_equal(ca.st.terminated + ca.st.leased_elsewhere + ca.st.already_closed +
                         ca.st.kept_refreshed,
                     ca.st.candidates);
    close_reconciler(f, a);
    close_reconciler(f, b);
    dd_store_close(s2, NULL, NULL);
}

/* Terminations are rate limited by the token bucket (waiting on a timer). */
static void test_rate_limit(void **state)
{
    fx *f = *state;
    enum { N = 5 };
    char w[N][DD_DISPATCHER_ID_BUFLEN], run[N][64];
    int64_t old = dd_wall_ms() - THR - 1000;
    for (int i = 0; i < N; i++) {
        char p[32];
        snprintf(p, sizeof(p), "p-rate-%d", i);
        start_dispatcher(f, p, "host-dead", w[i], run[i]);
        claim(f, p, w[i], run[i], "host-dead", old);
    }
    dd_reconciler_opts o = {.terminate_rate = 2};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);
    dd_reconcile_stats st = run_cycle(f, r);
    printf("measure: %d terminations at 2/s (burst 2): cycle %.0f ms\n", st.terminated,
           st.duration_ms);
    assert_int_equal(st.terminated, N);
    /* 2 at once, then one per 500 ms */
    assert_true(st.duration_ms >= 1400);
    close_reconciler(f, r);
}

/* The sweep terminates a running dispatcher without a record, but only
 * after it has been seen without one for longer than the threshold (and
 * the run is older than that); one with a record is left alone. */
static void test_sweep(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64], wk[DD_DISPATCHER_ID_BUFLEN], rk[64], scope[128];
    const int64_t thr = 1500;
    start_dispatcher(f, "p-orphan", "host-lost", w, run);
    int64_t started = dd_wall_ms();
    start_dispatcher(f, "p-kept", "host-live", wk, rk);
    snprintf(scope, sizeof(scope), "TaskQueue='%s'", f->queue);

    dd_reconciler_opts o = {.sweep = true, .sweep_interval_ms = 1, .stale_threshold_ms = thr,
                            .sweep_scope = scope};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);

    int64_t swept_at = 0;
    int sweeps = 0;
    for (int i = 0; i < 60 && !swept_at; i++) {
        /* the live one heartbeats */
        claim(f, "p-kept", wk, rk, "host-live", dd_wall_ms());
        dd_reconcile_stats st = run_cycle(f, r);
        assert_true(st.sweep_ran);
        assert_int_equal(st.errors, 0);
        sweeps++;
        if (st.swept) {
            assert_int_equal(st.swept, 1);
            swept_at = dd_wall_ms();
        } else {
            sleep_loop(f, 250);
        }
    }
    printf("measure: sweep terminated the unrecorded run %lld ms after its start "
           "(threshold %lld, visibility lag included), %d sweeps\n",
           (long long)(swept_at - started), (long long)thr, sweeps);
    assert_true(swept_at > 0);
    assert_true(swept_at - started > thr);
    assert_true(sweeps >= 2); /* never on first sight */
    assert_int_equal(wf_status(f, w, run), DD_WF_TERMINATED);
    assert_int_equal(wf_status(f, wk, rk), DD_WF_RUNNING);
    close_reconciler(f, r);
    terminate_now(f, wk, rk);
}

/* The early wake-up: with a 60 s interval, a record that turns stale
 * mid-interval is cleaned about threshold after its last heartbeat. */
static void test_early_wake(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    const int64_t thr = 2000;
    start_dispatcher(f, "p-crash", "host-crashed", w, run);
    int64_t hb = dd_wall_ms();
    /* its last heartbeat (an owner on the same threshold), then kill -9 */
    claim_ttl(f, "p-crash", w, run, "host-crashed", hb, thr);

    dd_reconciler_opts o = {.interval_ms = 60000, .stale_threshold_ms = thr};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);
    dd_reconciler_start(r);
    cyc c = {0};
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    assert_true(run_until(f, &c.done, 10000));
    assert_int_equal(c.st.cleaned, 0);
    for (int i = 0; i < 100 && f->last.cleaned == 0; i++) {
        bool never = false;
        run_until(f, &never, 100);
    }
    int64_t latency = dd_wall_ms() - hb;
    printf("measure: early wake cleaned the record %lld ms after its last heartbeat "
           "(threshold %lld ms, interval 60 s), %d cycles\n",
           (long long)latency, (long long)thr, f->cycles);
    assert_int_equal(f->last.cleaned, 1);
    assert_int_equal(f->last.terminated, 1);
    assert_true(latency > thr);
    assert_true(latency <= thr + 1200);
    assert_true(f->cycles <= 4); /* no busy loop */
    assert_int_equal(wf_status(f, w, run), DD_WF_TERMINATED);
    close_reconciler(f, r);
}

/* A record is stale only past the longer of the reconciler's threshold and
 * the one its owner heartbeats against (ttl_ms): a reconciler run with a far
 * too small threshold never terminates an owner whose heartbeats are within
 * its own. Once the record is older than its own ttl, it is cleaned. */
static void test_record_ttl_respected(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    start_dispatcher(f, "p-ttl", "host-slow", w, run);
    /* 3 s old, owner on 15 s: healthy for its owner, stale for a 300 ms reconciler */
    claim_ttl(f, "p-ttl", w, run, "host-slow", dd_wall_ms() - 3000, THR);
    dd_reconciler_opts o = {.interval_ms = 60000, .stale_threshold_ms = 300};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);
    cyc c = {0};
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    assert_true(run_until(f, &c.done, 10000));
    assert_int_equal(c.st.terminated, 0);
    assert_int_equal(c.st.cleaned, 0);
    assert_int_equal(c.st.kept_refreshed, 1);
    assert_int_equal(wf_status(f, w, run), DD_WF_RUNNING);
    /* past its own ttl: stale for everyone */
    claim_ttl(f, "p-ttl", w, run, "host-slow", dd_wall_ms() - THR - 1000, THR);
    cyc c2 = {0};
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c2), 0);
    assert_true(run_until(f, &c2.done, 10000));
    assert_int_equal(c2.st.terminated, 1);
    assert_int_equal(wf_status(f, w, run), DD_WF_TERMINATED);
    close_reconciler(f, r);
}

/* Closing mid-cycle cancels the Temporal call and still closes clean. */
static void test_close_mid_cycle(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    start_dispatcher(f, "p-close", "host-c", w, run);
    claim(f, "p-close", w, run, "host-c", dd_wall_ms() - THR - 1000);
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    cyc c = {0};
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), DD_EBUSY);
    /* let it get somewhere (lease, describe in flight), then close */
    for (int i = 0; i < 3; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    close_reconciler(f, r);
    assert_true(c.done);
    assert_int_equal(c.st.result, DD_ECANCELED);
    terminate_now(f, w, run);
}

/* Started: the first cycle after the stagger, then periodic within the
 * jitter bounds (no records: no early wake-ups). */
static void test_periodic(void **state)
{
    fx *f = *state;
    dd_reconciler_opts o = {.interval_ms = 1500};
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-periodic", &o);
    uint64_t t0 = dd_mono_ms();
    dd_reconciler_start(r);
    /* Waits for the fourth cycle (bounded) instead of counting the cycles of
     * a fixed window: on a loaded machine a slow cycle moved one across the
     * window's edge. The schedule is asserted from the cycles' times. */
    for (int i = 0; i < 200 && f->cycles < 4; i++)
        sleep_loop(f, 50);
    printf("measure: interval 1.5 s: first cycle after %llu ms, gaps %llu-%llu ms\n",
           (unsigned long long)(f->first_cycle_ms - t0), (unsigned long long)f->min_gap_ms,
           (unsigned long long)f->max_gap_ms);
    assert_true(f->cycles >= 4);
    /* the first after the stagger (<= 180 ms; slack for the cycle itself) */
    assert_true(f->first_cycle_ms - t0 < 1000);
    /* then every 1.35-1.65 s: never sooner than 0.9 x interval after the
     * previous one, and never much later than 1.1 x (slack for the cycle) */
    assert_true(f->min_gap_ms >= 1350);
    assert_true(f->max_gap_ms < 2500);
    close_reconciler(f, r);
}

/* Per-candidate cost when nothing needs terminating (lease, describe ->
 * not found, compare-and-delete, release): sizing for batch. */
static void test_many_closed(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    int64_t old = dd_wall_ms() - THR - 1000;
    for (int i = 0; i < N; i++) {
        char p[32], wid[DD_DISPATCHER_ID_BUFLEN], err[64], run[64];
        snprintf(p, sizeof(p), "p-many-%d", i);
        assert_int_equal(dd_dispatcher_id(p, f->queue, wid, sizeof(wid), err, sizeof(err)), 0);
        snprintf(run, sizeof(run), "00000000-0000-4000-8000-%012d", i);
        claim(f, p, wid, run, "host-gone", old);
    }
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    dd_reconcile_stats st = run_cycle(f, r);
    printf("measure: %d stale records of closed/unknown runs: cycle %.0f ms (%.2f ms each)\n", N,
           st.duration_ms, st.duration_ms / N);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.already_closed, N);
    assert_int_equal(st.cleaned, N);
    st = run_cycle(f, r);
    assert_int_equal(st.stale, 0);
    close_reconciler(f, r);
}

/* ---- a slow stand-in for Temporal ---------------------------------------
 * Answers every request (GET, HTTP/1.1 keep-alive, one at a time per
 * connection, as the client sends them) with Temporal's "not found" after a
 * fixed delay: a remote Temporal's round trip that costs no CPU here. The
 * lanes test uses it so that what it measures is how well lanes overlap the
 * waits, not how many describes per second the local dev server manages on
 * a (shared, busy) machine. Runs on the test's loop. */
#define SLOW_BODY "{\"code\":5,\"message\":\"workflow execution not found\"}"

typedef struct slow_srv slow_srv;
typedef struct slow_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    slow_srv *srv;
    char buf[16384];
    size_t len;
    int open; /* handles not yet closed */
} slow_conn;

struct slow_srv {
    uv_tcp_t tcp;
    int port, delay_ms, conns, requests;
    bool closed;
};

static void slow_conn_closed(uv_handle_t *h)
{
    slow_conn *c = h->data;
    if (--c->open == 0) {
        c->srv->conns--;
        free(c);
    }
}

static void slow_conn_close(slow_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, slow_conn_closed);
        uv_close((uv_handle_t *)&c->timer, slow_conn_closed);
    }
}

static void slow_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_slow_timer(uv_timer_t *t);

/* A complete request head in the buffer: consume it, answer after the delay. */
static void slow_next(slow_conn *c)
{
    if (uv_is_active((uv_handle_t *)&c->timer))
        return;
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return;
    size_t n = (size_t)(end + 4 - c->buf);
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    uv_timer_start(&c->timer, on_slow_timer, (uint64_t)c->srv->delay_ms, 0);
}

static void on_slow_timer(uv_timer_t *t)
{
    slow_conn *c = t->data;
    static char resp[512];
    int len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       strlen(SLOW_BODY), SLOW_BODY);
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(resp, (unsigned)len);
    c->srv->requests++;
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, slow_written) < 0) {
        free(w);
        slow_conn_close(c);
        return;
    }
    slow_next(c);
}

static void slow_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    slow_conn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void slow_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    slow_conn *c = st->data;
    if (n < 0 || c->len + (size_t)n >= sizeof(c->buf)) {
        slow_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    slow_next(c);
}

static void slow_accept(uv_stream_t *ls, int status)
{
    slow_srv *srv = ls->data;
    if (status < 0)
        return;
    slow_conn *c = calloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(ls->loop, &c->tcp);
    uv_timer_init(ls->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    srv->conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, slow_alloc, slow_read) < 0)
        slow_conn_close(c);
}

static void slow_start(fx *f, slow_srv *srv, int delay_ms)
{
    memset(srv, 0, sizeof(*srv));
    srv->delay_ms = delay_ms;
    srv->port = stub_listen(f, &srv->tcp, srv, slow_accept);
}

static void slow_listener_closed(uv_handle_t *h)
{
    ((slow_srv *)h->data)->closed = true;
}

/* After the client using it was closed (its connections hang up). */
static void slow_stop(fx *f, slow_srv *srv)
{
    uv_close((uv_handle_t *)&srv->tcp, slow_listener_closed);
    bool never = false;
    for (int i = 0; i < 100 && (srv->conns > 0 || !srv->closed); i++)
        run_until(f, &never, 20);
    assert_int_equal(srv->conns, 0);
    assert_true(srv->closed);
}

/* Lanes: 200 stale records of closed/unknown runs, cleaned by a cycle with
 * 8 lanes against the real dev server: every record exactly once (one
 * stale_cleanup line per record and run, nothing found "already gone").
 * How much faster lanes are is a benchmark question (bench/reconcile), not
 * a timed assertion here. */
static void lanes_round(fx *f, dd_temporal *t, size_t inflight, double *ms)
{
    enum { N = 200 };
    int64_t old = dd_wall_ms() - THR - 1000;
    char wids[N][DD_DISPATCHER_ID_BUFLEN];
    for (int i = 0; i < N; i++) {
        char p[32], err[64], run[64];
        snprintf(p, sizeof(p), "p-lane-%d", i);
        assert_int_equal(dd_dispatcher_id(p, f->queue, wids[i], sizeof(wids[i]), err,
                                          sizeof(err)),
                         0);
        snprintf(run, sizeof(run), "00000000-0000-4000-8000-%06zu%06d", inflight, i);
        claim(f, p, wids[i], run, "host-gone", old - i);
    }
    fflush(f->logf);
    long from = ftell(f->logf);
    dd_reconciler_opts o = {.max_inflight = inflight};
    dd_reconciler *r = reconciler(f, NULL, t, "host-rec", &o);
    dd_reconcile_stats st = run_cycle(f, r);
    printf("measure: %d stale records of closed/unknown runs, "
           "max_inflight %zu: cycle %.0f ms (%.2f ms each)\n",
           N, inflight, st.duration_ms, st.duration_ms / N);
    assert_int_equal(st.result, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.candidates, N);
    assert_int_equal(st.already_closed, N);
    assert_int_equal(st.cleaned, N);
    assert_int_equal(st.terminated, 0);
    *ms = st.duration_ms;
    /* each record cleaned exactly once, by its own run id */
    int *seen = calloc(N, sizeof(int));
    char line[2048], want[DD_DISPATCHER_ID_BUFLEN + 64];
    fflush(f->logf);
    assert_int_equal(fseek(f->logf, from, SEEK_SET), 0);
    while (fgets(line, sizeof(line), f->logf)) {
        assert_null(strstr(line, "already gone"));
        if (!strstr(line, "event=stale_cleanup "))
            continue;
        int hits = 0;
        for (int i = 0; i < N; i++) {
            /* a cut pattern would match a prefix of another record's line */
            int wl = snprintf(want, sizeof(want),
                              "workflow_id=%s run_id=00000000-0000-4000-8000-%06zu%06d ", wids[i],
                              inflight, i);
            assert_true(wl > 0 && (size_t)wl < sizeof(want));
            if (strstr(line, want)) {
                seen[i]++;
                hits++;
            }
        }
        assert_int_equal(hits, 1);
    }
    fseek(f->logf, 0, SEEK_END);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    st = run_cycle(f, r);
    assert_int_equal(st.stale, 0);
    close_reconciler(f, r);
}

static void test_lanes_exactly_once(void **state)
{
    fx *f = *state;
    double ms;
    lanes_round(f, f->t, 8, &ms);
}

/* Close with lanes busy: once right after the start (the stale query or the
 * lanes' lease replies pending: the store is waited for), once while 8
 * describes hang on the slow stand-in (all cancelled at once). The cycle
 * answers DD_ECANCELED, close completes, nothing was deleted, and the loop
 * closes clean (teardown). */
static void test_close_with_lanes(void **state)
{
    fx *f = *state;
    enum { N = 40 };
    slow_srv srv;
    char url[64], wids[N][DD_DISPATCHER_ID_BUFLEN];
    slow_start(f, &srv, 2000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
    dd_temporal *slow = open_temporal(f, url, 1, 10000);
    int64_t old = dd_wall_ms() - THR - 1000;
    for (int i = 0; i < N; i++) {
        char p[32], err[64], run[64];
        snprintf(p, sizeof(p), "p-lclose-%d", i);
        assert_int_equal(dd_dispatcher_id(p, f->queue, wids[i], sizeof(wids[i]), err,
                                          sizeof(err)),
                         0);
        snprintf(run, sizeof(run), "00000000-0000-4000-8000-%012d", i);
        claim(f, p, wids[i], run, "host-gone", old - i);
    }
    for (int round = 0; round < 2; round++) {
        char holder[32];
        /* the cancelled lanes keep their leases until the TTL: a new holder */
        snprintf(holder, sizeof(holder), "host-rec-%d", round);
        dd_reconciler_opts o = {.max_inflight = 8};
        dd_reconciler *r = reconciler(f, NULL, slow, holder, &o);
        cyc c = {0};
        assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
        if (round == 0) {
            for (int i = 0; i < 2; i++)
                uv_run(&f->loop, UV_RUN_ONCE);
        } else {
            sleep_loop(f, 300);
        }
        assert_false(c.done);
        uint64_t t0 = dd_mono_ms();
        close_reconciler(f, r);
        uint64_t took = dd_mono_ms() - t0;
        printf("measure: close with 8 busy lanes (%s): %llu ms\n",
               round ? "describes hanging" : "right after the start", (unsigned long long)took);
        assert_true(c.done);
        assert_int_equal(c.st.result, DD_ECANCELED);
        assert_int_equal(c.st.cleaned, 0);
        assert_true(took < 1000);
    }
    int closed = 0;
    dd_temporal_close(slow, count_cb, &closed);
    slow_stop(f, &srv);
    assert_int_equal(closed, 1);
    for (int i = 0; i < N; i++) {
        sgot g;
        assert_int_equal(get_record(f, wids[i], &g), 0);
    }
}

static void on_close_timer(uv_timer_t *h)
{
    fx *f = h->data;
    forget(f, f->hook_close);
    dd_reconciler_close(f->hook_close, count_cb, &f->closed_from_hook);
    f->hook_close = NULL;
}

/* Close while the cycle waits for a termination token: ends at once,
 * the waiting record untouched. */
static void test_close_waiting_for_token(void **state)
{
    fx *f = *state;
    char w[2][DD_DISPATCHER_ID_BUFLEN], run[2][64];
    int64_t old = dd_wall_ms() - THR - 1000;
    start_dispatcher(f, "p-tok-0", "host-dead", w[0], run[0]);
    start_dispatcher(f, "p-tok-1", "host-dead", w[1], run[1]);
    claim(f, "p-tok-0", w[0], run[0], "host-dead", old - 1);
    claim(f, "p-tok-1", w[1], run[1], "host-dead", old);
    dd_reconciler_opts o = {.terminate_rate = 0.2}; /* the 2nd token comes after 5 s */
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", &o);
    cyc c = {0};
    uv_timer_t tm;
    uv_timer_init(&f->loop, &tm);
    tm.data = f;
    f->hook_close = r;
    uint64_t t0 = dd_mono_ms();
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    uv_timer_start(&tm, on_close_timer, 500, 0);
    assert_true(run_until(f, &c.done, 10000));
    uint64_t took = dd_mono_ms() - t0;
    assert_int_equal(c.st.result, DD_ECANCELED);
    assert_true(took < 2000);
    bool never = false;
    for (int i = 0; i < 50 && !f->closed_from_hook; i++)
        run_until(f, &never, 20);
    assert_int_equal(f->closed_from_hook, 1);
    uv_close((uv_handle_t *)&tm, NULL);
    sgot g;
    assert_int_equal(get_record(f, w[1], &g), 0);
    assert_int_equal(wf_status(f, w[1], run[1]), DD_WF_RUNNING);
    terminate_now(f, w[1], run[1]);
}

/* Close from inside the reconciler's own callback (the on_terminated
 * observer): the cycle stops at its next step, no use after free. */
static void test_close_from_callback(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64];
    start_dispatcher(f, "p-cb", "host-dead", w, run);
    claim(f, "p-cb", w, run, "host-dead", dd_wall_ms() - THR - 1000);
    dd_reconciler *r = reconciler(f, NULL, NULL, "host-rec", NULL);
    cyc c = {0};
    f->hook_close = r;
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    assert_true(run_until(f, &c.done, 10000));
    assert_int_equal(c.st.result, DD_ECANCELED);
    bool never = false;
    for (int i = 0; i < 50 && !f->closed_from_hook; i++)
        run_until(f, &never, 20);
    assert_int_equal(f->closed_from_hook, 1);
    assert_int_equal(wf_status(f, w, run), DD_WF_TERMINATED);
}

/* Close while a describe hangs (a peer that accepts and never answers):
 * the Temporal call is cancelled at once. */
static void test_close_during_describe(void **state)
{
    fx *f = *state;
    char w[DD_DISPATCHER_ID_BUFLEN], run[64], url[64];
    start_dispatcher(f, "p-hang", "host-dead", w, run);
    claim(f, "p-hang", w, run, "host-dead", dd_wall_ms() - THR - 1000);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 8), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    dd_temporal *hang = open_temporal(f, url, 1, 10000);
    dd_reconciler *r = reconciler(f, NULL, hang, "host-rec", NULL);
    cyc c = {0};
    uv_timer_t tm;
    uv_timer_init(&f->loop, &tm);
    tm.data = f;
    f->hook_close = r;
    uint64_t t0 = dd_mono_ms();
    assert_int_equal(dd_reconciler_run_once(r, cycle_done, &c), 0);
    uv_timer_start(&tm, on_close_timer, 300, 0);
    assert_true(run_until(f, &c.done, 10000));
    uint64_t took = dd_mono_ms() - t0;
    printf("measure: close during a hung describe answered after %llu ms\n",
           (unsigned long long)took);
    assert_int_equal(c.st.result, DD_ECANCELED);
    assert_true(took < 1500);
    bool never = false;
    for (int i = 0; i < 50 && !f->closed_from_hook; i++)
        run_until(f, &never, 20);
    assert_int_equal(f->closed_from_hook, 1);
    uv_close((uv_handle_t *)&tm, NULL);
    int closed = 0;
    dd_temporal_close(hang, count_cb, &closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    close(ls);
    sgot g;
    assert_int_equal(get_record(f, w, &g), 0);
    assert_int_equal(closed, 1);
    terminate_now(f, w, run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_classify_terminate_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare_and_delete_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_already_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_lags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temporal_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temporal_dies_before_terminate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_reconcilers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_ttl_respected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_mid_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lanes_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_lanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waiting_for_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_during_describe, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
