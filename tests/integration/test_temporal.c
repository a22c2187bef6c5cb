/* Integration tests of src/temporal against the REAL Temporal dev server
 * started by the ctest fixture `temporal` (no mocks). No Temporal worker
 * exists, so started dispatcher workflows stay Running until terminated. */
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
#include "temporal/temporal.h"
#include "testsupport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define WF_TYPE "dispatchd.dispatcher"
#define MAXEV 64

/* What a test keeps of one result (the result itself dies with the callback). */
typedef struct got {
    bool done;
    int status, http, attempts;
    char msg[512];
    char run_id[64];
    bool started;
    dd_temporal_status wf_status;
    char exec_run[64], server_id[64], type[64];
    int nevents;
    char ev_type[MAXEV][64];
    int64_t ev_time[MAXEV], ev_id[MAXEV];
    int nexecs;
    char exec_wf[8][256];
    dd_temporal_status exec_status[8];
    bool has_next;
    uint64_t done_ms;
} got;

static void capture(int st, const dd_temporal_result *r, void *arg)
{
    got *g = arg;
    memset(g, 0, sizeof(*g));
    g->done = true;
    g->done_ms = dd_mono_ms();
    g->status = st;
    g->http = r->http_status;
    g->attempts = r->attempts;
    assert_int_equal(r->err, st);
    assert_non_null(r->message);
    snprintf(g->msg, sizeof(g->msg), "%s", r->message);
    snprintf(g->run_id, sizeof(g->run_id), "%s", r->run_id ? r->run_id : "");
    g->started = r->started;
    if (r->execution) {
        g->wf_status = r->execution->status;
        snprintf(g->exec_run, sizeof(g->exec_run), "%s", r->execution->run_id);
        snprintf(g->server_id, sizeof(g->server_id), "%s",
                 r->execution->server_id ? r->execution->server_id : "");
        snprintf(g->type, sizeof(g->type), "%s", r->execution->type ? r->execution->type : "");
    }
    for (size_t i = 0; i < r->nevents && i < MAXEV; i++, g->nevents++) {
        snprintf(g->ev_type[i], 64, "%s", r->events[i].type ? r->events[i].type : "");
        g->ev_time[i] = r->events[i].time_ns;
        g->ev_id[i] = r->events[i].id;
    }
    for (size_t i = 0; i < r->nexecutions && i < 8; i++, g->nexecs++) {
        snprintf(g->exec_wf[i], 256, "%s", r->executions[i].workflow_id);
        g->exec_status[i] = r->executions[i].status;
    }
    g->has_next = r->next_page_token != NULL;
}

typedef struct fx {
    uv_loop_t loop;
    dd_log *log;
    dd_metrics *metrics;
    dd_ctx ctx;
    dd_temporal *t;
    FILE *logf; /* everything the client logged, checked for secrets */
} fx;

static dd_temporal *client_max(fx *f, const char *url, int attempts, int64_t timeout_ms,
                               int max_in_flight);
static dd_temporal *client(fx *f, const char *url, const char *ns, int attempts,
                           int64_t timeout_ms, const char *api_key)
{
    dd_temporal_opts o = {
        .base_url = url,
        .namespace_ = ns,
        .identity = "test_temporal",
        .timeout_ms = timeout_ms,
        .max_attempts = attempts,
        .backoff_base_ms = 50,
        .backoff_cap_ms = 400,
        .api_key = api_key,
    };
    dd_temporal *t = NULL;
    char err[512];
    if (dd_temporal_new(&f->ctx, &o, &t, err, sizeof(err)) < 0)
        fail_msg("dd_temporal_new: %s", err);
    return t;
}

static dd_temporal *client_max(fx *f, const char *url, int attempts, int64_t timeout_ms,
                               int max_in_flight)
{
    dd_temporal_opts o = {
        .base_url = url,
        .namespace_ = "default",
        .identity = "test_temporal",
        .timeout_ms = timeout_ms,
        .max_attempts = attempts,
        .max_in_flight = max_in_flight,
    };
    dd_temporal *t = NULL;
    char err[512];
    if (dd_temporal_new(&f->ctx, &o, &t, err, sizeof(err)) < 0)
        fail_msg("dd_temporal_new: %s", err);
    return t;
}

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
    f->t = client(f, url, "default", 0, 0, NULL);
    assert_non_null(f->t);
    *state = f;
    return 0;
}

static void closed_cb(void *arg)
{
    (*(int *)arg)++;
}

static void close_client(fx *f, dd_temporal *t)
{
    int closed = 0;
    dd_temporal_close(t, closed_cb, &closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->t)
        close_client(f, f->t);
    /* The loop must close clean: no handle leaked by the client. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    dd_test_echo_log(f->logf); /* the client's log lines, for the test output */
    dd_log_free(f->log);
    dd_metrics_free(f->metrics);
    free(f);
    return 0;
}

static void wait_for(fx *f, got *g)
{
    uint64_t until = dd_mono_ms() + 100000;
    while (!g->done && dd_mono_ms() < until)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(g->done);
}

/* Runs a uv timer for ms without blocking the loop. */
static void timer_noop(uv_timer_t *h)
{
    *(bool *)h->data = true;
}

static void sleep_loop(fx *f, uint64_t ms)
{
    uv_timer_t tm;
    bool fired = false;
    uv_timer_init(&f->loop, &tm);
    tm.data = &fired;
    uv_timer_start(&tm, timer_noop, ms, 0);
    while (!fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void unique_id(char *out, const char *project)
{
    char err[128];
    /* a project with dashes: exercises the escaped ID in URL paths */
    assert_int_equal(dd_dispatcher_id(dd_test_unique(project), "queue-1", out,
                                      DD_DISPATCHER_ID_BUFLEN, err, sizeof(err)),
                     0);
}

static void do_start(fx *f, const char *wf, const char *server_id, const char *policy, got *g)
{
    char input[128];
    snprintf(input, sizeof(input), "{\"server_id\":\"%s\",\"epoch\":1}", server_id);
    char memo[128];
    snprintf(memo, sizeof(memo), "{\"server_id\":\"%s\"}", server_id);
    dd_temporal_start_req r = {
        .workflow_id = wf,
        .workflow_type = WF_TYPE,
        .task_queue = "queue-1",
        .input_json = input,
        .memo_json = memo,
        .conflict_policy = policy,
    };
    memset(g, 0, sizeof(*g));
    assert_int_equal(dd_temporal_start(f->t, &r, capture, g, NULL), 0);
    wait_for(f, g);
}

static void do_op(fx *f, got *g, int rc)
{
    assert_int_equal(rc, 0);
    wait_for(f, g);
}

static void test_start_takeover(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, b, h, d;
    unique_id(wf, "proj-take");

    do_start(f, wf, "host-1", "TERMINATE_EXISTING", &a);
    assert_int_equal(a.status, 0);
    assert_true(a.started);
    assert_true(strlen(a.run_id) > 10);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(f->t, wf, a.run_id, capture, &d, NULL));
    assert_int_equal(d.status, 0);
    assert_int_equal(d.wf_status, DD_WF_RUNNING);
    assert_string_equal(d.exec_run, a.run_id);
    assert_string_equal(d.server_id, "host-1");
    assert_string_equal(d.type, WF_TYPE);

    uint64_t t0 = dd_mono_ms();
    do_start(f, wf, "host-2", "WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING", &b);
    printf("measure: takeover start (TERMINATE_EXISTING) took %llu ms\n",
           (unsigned long long)(dd_mono_ms() - t0));
    assert_int_equal(b.status, 0);
    assert_true(b.started);
    assert_string_not_equal(a.run_id, b.run_id);

    /* the old run ended with a termination, before the new run started */
    memset(&h, 0, sizeof(h));
    do_op(f, &h, dd_temporal_history(f->t, wf, a.run_id, capture, &h, NULL));
    assert_int_equal(h.status, 0);
    assert_true(h.nevents >= 2);
    assert_string_equal(h.ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED");
    assert_string_equal(h.ev_type[h.nevents - 1], "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED");
    int64_t terminated_ns = h.ev_time[h.nevents - 1];
    assert_true(h.ev_id[h.nevents - 1] > h.ev_id[0]);

    memset(&h, 0, sizeof(h));
    do_op(f, &h, dd_temporal_history(f->t, wf, b.run_id, capture, &h, NULL));
    assert_int_equal(h.status, 0);
    assert_string_equal(h.ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED");
    printf("measure: old run terminated at %lld ns, new run started at %lld ns (delta %lld us)\n",
           (long long)terminated_ns, (long long)h.ev_time[0],
           (long long)(h.ev_time[0] - terminated_ns) / 1000);
    assert_true(terminated_ns > 0 && terminated_ns <= h.ev_time[0]);

    /* describe without a run id: the current (new) run, with its memo */
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(f->t, wf, NULL, capture, &d, NULL));
    assert_string_equal(d.exec_run, b.run_id);
    assert_int_equal(d.wf_status, DD_WF_RUNNING);
    assert_string_equal(d.server_id, "host-2");
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(f->t, wf, a.run_id, capture, &d, NULL));
    assert_int_equal(d.wf_status, DD_WF_TERMINATED);

    /* terminate exactly the old run: it is closed, the new run is untouched */
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, a.run_id, "late", capture, &d, NULL));
    assert_int_equal(d.status, DD_ENOTFOUND);
    assert_int_equal(d.http, 404);
    assert_int_equal(d.attempts, 1);
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(f->t, wf, b.run_id, capture, &d, NULL));
    assert_int_equal(d.wf_status, DD_WF_RUNNING);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, b.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

static void test_legacy_conflict(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, b, d;
    unique_id(wf, "proj-legacy");

    do_start(f, wf, "host-1", NULL, &a);
    assert_int_equal(a.status, 0);
    do_start(f, wf, "host-2", "unspecified", &b);
    assert_int_equal(b.status, DD_ECONFLICT);
    assert_int_equal(b.http, 409);
    assert_int_equal(b.attempts, 1); /* 4xx: not retried */
    assert_string_equal(b.run_id, a.run_id);
    assert_non_null(strstr(b.msg, "already running"));
    assert_non_null(strstr(b.msg, a.run_id));
    printf("409 message: %s\n", b.msg);

    /* R4 fallback: terminate exactly the existing run, then start again */
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, b.run_id, "takeover by host-2", capture, &d,
                                       NULL));
    assert_int_equal(d.status, 0);
    do_start(f, wf, "host-2", "unspecified", &b);
    assert_int_equal(b.status, 0);
    assert_string_not_equal(b.run_id, a.run_id);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_history(f->t, wf, a.run_id, capture, &d, NULL));
    assert_string_equal(d.ev_type[d.nevents - 1], "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED");

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, b.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

static void test_signal_and_signal_with_start(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, d;
    unique_id(wf, "proj-sws");
    dd_temporal_start_req r = {
        .workflow_id = wf,
        .workflow_type = WF_TYPE,
        .task_queue = "queue-1",
        .memo_json = "{\"server_id\":\"host-s\"}",
        .conflict_policy = "TERMINATE_EXISTING",
        .signal_name = "owner",
        .signal_json = "{\"epoch\":7}",
    };
    memset(&a, 0, sizeof(a));
    do_op(f, &a, dd_temporal_signal_with_start(f->t, &r, capture, &a, NULL));
    assert_int_equal(a.status, 0);
    assert_true(strlen(a.run_id) > 10);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_signal(f->t, wf, a.run_id, "ping", "[1,2]", capture, &d, NULL));
    assert_int_equal(d.status, 0);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_history(f->t, wf, a.run_id, capture, &d, NULL));
    int signals = 0;
    for (int i = 0; i < d.nevents; i++)
        signals += strcmp(d.ev_type[i], "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") == 0;
    assert_int_equal(signals, 2);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_signal(f->t, "no-such-workflow-xyz", NULL, "ping", NULL, capture,
                                    &d, NULL));
    assert_int_equal(d.status, DD_ENOTFOUND);
    assert_non_null(strstr(d.msg, "'no-such-workflow-xyz'"));

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, a.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

/* Terminates after `after_ms` from a second client, as another host would. */
typedef struct killer {
    fx *f;
    dd_temporal *t2;
    const char *wf, *run;
    uint64_t sent_ms;
    got res;
} killer;

static void killer_fire(uv_timer_t *h)
{
    killer *k = h->data;
    k->sent_ms = dd_mono_ms();
    assert_int_equal(dd_temporal_terminate(k->t2, k->wf, k->run, "taken over", capture, &k->res,
                                           NULL),
                     0);
}

static void wait_close_after(fx *f, uint64_t after_ms, double *latency_ms, double *reply_ms)
{
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, w;
    unique_id(wf, "proj-wait");
    do_start(f, wf, "host-1", "TERMINATE_EXISTING", &a);
    assert_int_equal(a.status, 0);

    memset(&w, 0, sizeof(w));
    assert_int_equal(dd_temporal_wait_close(f->t, wf, a.run_id, capture, &w, NULL), 0);

    killer k = {.f = f, .wf = wf, .run = a.run_id};
    k.t2 = client(f, dd_test_temporal_url(), "default", 0, 0, NULL);
    uv_timer_t tm;
    uv_timer_init(&f->loop, &tm);
    tm.data = &k;
    uv_timer_start(&tm, killer_fire, after_ms, 0);
    wait_for(f, &w);
    wait_for(f, &k.res);
    uv_close((uv_handle_t *)&tm, NULL);
    close_client(f, k.t2);

    assert_int_equal(k.res.status, 0);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.nevents, 1);
    assert_string_equal(w.ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED");
    assert_true(w.done_ms >= k.sent_ms);
    *latency_ms = (double)(w.done_ms - k.sent_ms);
    *reply_ms = (double)k.res.done_ms - (double)k.sent_ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_wait_close_latency(void **state)
{
    fx *f = *state;
    enum { N = 10 };
    double lat[N], rep[N];
    for (int i = 0; i < N; i++) {
        wait_close_after(f, 200, &lat[i], &rep[i]);
        /* within a few hundred ms of the terminate request */
        assert_true(lat[i] < 1000);
    }
    qsort(lat, N, sizeof(double), cmp_double);
    qsort(rep, N, sizeof(double), cmp_double);
    printf("measure: close event seen by the long-poll, ms after terminate was sent "
           "(n=%d): min=%.0f p50=%.0f max=%.0f; terminate reply ms: p50=%.0f max=%.0f\n",
           N, lat[0], lat[N / 2], lat[N - 1], rep[N / 2], rep[N - 1]);
}

static void test_wait_close_repolls(void **state)
{
    /* The server answers an idle long-poll empty after ~20 s; the call must
     * poll again (from the page token) and still see the termination. */
    fx *f = *state;
    double lat, rep;
    uint64_t t0 = dd_mono_ms();
    wait_close_after(f, 23000, &lat, &rep);
    printf("measure: after %llu ms of waiting (one empty long-poll reply), close seen %.0f ms "
           "after terminate\n",
           (unsigned long long)(dd_mono_ms() - t0), lat);
    assert_true(lat < 1000);
    dd_metric *m = dd_metrics_find(f->metrics, "dispatchd_temporal_calls_total");
    assert_non_null(m);
    assert_true(dd_metric_get(m, (const char *const[]){"wait_close", "ok"}) >= 1);
    assert_int_equal(dd_metric_get(m, (const char *const[]){"wait_close", "retry"}), 0);
}

static void test_wait_close_already_closed_and_cancel(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, w, d;
    unique_id(wf, "proj-wc");
    do_start(f, wf, "h", "TERMINATE_EXISTING", &a);

    /* a pending long-poll can be cancelled; its callback says so */
    dd_temporal_call *call = NULL;
    memset(&w, 0, sizeof(w));
    assert_int_equal(dd_temporal_wait_close(f->t, wf, a.run_id, capture, &w, &call), 0);
    sleep_loop(f, 100);
    assert_false(w.done);
    dd_temporal_cancel(call);
    assert_false(w.done); /* the callback never runs inside cancel ... */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_true(w.done); /* ... but once, from the loop */
    assert_int_equal(w.status, DD_ECANCELED);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, a.run_id, "done", capture, &d, NULL));
    /* a run already closed: answered at once */
    uint64_t t0 = dd_mono_ms();
    memset(&w, 0, sizeof(w));
    do_op(f, &w, dd_temporal_wait_close(f->t, wf, a.run_id, capture, &w, NULL));
    assert_int_equal(w.status, 0);
    assert_string_equal(w.ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED");
    assert_true(dd_mono_ms() - t0 < 2000);

    /* closing the client cancels an in-flight long-poll */
    dd_temporal_start_req r = {.workflow_id = wf, .workflow_type = WF_TYPE,
                               .task_queue = "queue-1"};
    memset(&a, 0, sizeof(a));
    do_op(f, &a, dd_temporal_start(f->t, &r, capture, &a, NULL));
    assert_int_equal(a.status, 0);
    char run[64];
    snprintf(run, sizeof(run), "%s", a.run_id);
    memset(&w, 0, sizeof(w));
    assert_int_equal(dd_temporal_wait_close(f->t, wf, run, capture, &w, NULL), 0);
    sleep_loop(f, 100);
    close_client(f, f->t);
    assert_true(w.done);
    assert_int_equal(w.status, DD_ECANCELED);

    /* clean up with a fresh client */
    f->t = client(f, dd_test_temporal_url(), "default", 0, 0, NULL);
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, run, "done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

static void test_list(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN], q[512];
    got a, l, d;
    unique_id(wf, "proj-list");
    do_start(f, wf, "h", "TERMINATE_EXISTING", &a);
    assert_int_equal(a.status, 0);
    snprintf(q, sizeof(q), "WorkflowId='%s' AND ExecutionStatus='Running'", wf);
    uint64_t t0 = dd_mono_ms();
    int tries = 0;
    do {
        if (tries)
            sleep_loop(f, 100);
        memset(&l, 0, sizeof(l));
        do_op(f, &l, dd_temporal_list(f->t, q, NULL, 0, capture, &l, NULL));
        assert_int_equal(l.status, 0);
    } while (l.nexecs == 0 && ++tries < 50);
    printf("measure: visible in list after %llu ms (%d tries)\n",
           (unsigned long long)(dd_mono_ms() - t0), tries + 1);
    assert_int_equal(l.nexecs, 1);
    assert_string_equal(l.exec_wf[0], wf);
    assert_int_equal(l.exec_status[0], DD_WF_RUNNING);

    /* paging: one execution per page gives a token while more remain */
    memset(&l, 0, sizeof(l));
    do_op(f, &l, dd_temporal_list(f->t, "WorkflowType='" WF_TYPE "'", NULL, 1, capture, &l,
                                  NULL));
    assert_int_equal(l.status, 0);
    assert_int_equal(l.nexecs, 1);
    assert_true(l.has_next);

    memset(&l, 0, sizeof(l));
    do_op(f, &l, dd_temporal_list(f->t, "NoSuchAttribute='x'", NULL, 0, capture, &l, NULL));
    assert_int_equal(l.status, DD_EINVAL);
    printf("bad query message: %s\n", l.msg);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, a.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

/* The batched loss watch's two calls (owner/watch.c): exact runs listed by
 * status, and a closed run's close event read without a long poll. */
static void test_list_runs_and_close_event(void **state)
{
    fx *f = *state;
    char wf[DD_DISPATCHER_ID_BUFLEN];
    got a, b, l, d;
    unique_id(wf, "proj-runs");
    do_start(f, wf, "h", "TERMINATE_EXISTING", &a);
    assert_int_equal(a.status, 0);
    do_start(f, wf, "h2", "TERMINATE_EXISTING", &b); /* terminates a's run */
    assert_int_equal(b.status, 0);
    const char *ids[] = {a.run_id, b.run_id};
    int tries = 0;
    do { /* visibility lags: a's run shows as closed within a second or so */
        if (tries)
            sleep_loop(f, 100);
        memset(&l, 0, sizeof(l));
        do_op(f, &l, dd_temporal_list_runs(f->t, "ExecutionStatus != 'Running'", ids, 2, capture,
                                           &l, NULL));
        assert_int_equal(l.status, 0);
    } while (l.nexecs == 0 && ++tries < 50);
    assert_int_equal(l.nexecs, 1); /* a's run only: b's runs */
    assert_string_equal(l.exec_wf[0], wf);
    assert_int_equal(l.exec_status[0], DD_WF_TERMINATED);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_close_event(f->t, wf, a.run_id, capture, &d, NULL));
    assert_int_equal(d.status, 0);
    assert_int_equal(d.nevents, 1);
    assert_string_equal(d.ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED");

    /* nothing unchecked goes into a query; no call, no callback */
    const char *bad[] = {"x') OR ('1'='1"};
    assert_int_equal(dd_temporal_list_runs(f->t, NULL, bad, 1, capture, &l, NULL), DD_EINVAL);
    assert_int_equal(dd_temporal_list_runs(f->t, NULL, ids, 0, capture, &l, NULL), DD_EINVAL);
    assert_int_equal(dd_temporal_close_event(f->t, wf, NULL, capture, &d, NULL), DD_EINVAL);

    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, b.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

static void test_concurrent_calls(void **state)
{
    /* many calls in flight on one client: sockets multiplexed on the loop */
    fx *f = *state;
    enum { N = 24 };
    char wf[DD_DISPATCHER_ID_BUFLEN];
    static got g[N];
    got a, d;
    unique_id(wf, "proj-conc");
    do_start(f, wf, "h", "TERMINATE_EXISTING", &a);
    assert_int_equal(a.status, 0);
    memset(g, 0, sizeof(g));
    uint64_t t0 = dd_mono_ms();
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            assert_int_equal(dd_temporal_history(f->t, wf, a.run_id, capture, &g[i], NULL), 0);
        else
            assert_int_equal(dd_temporal_describe(f->t, wf, a.run_id, capture, &g[i], NULL), 0);
    }
    for (int i = 0; i < N; i++)
        wait_for(f, &g[i]);
    printf("measure: %d concurrent describe/history calls on one client took %llu ms\n", N,
           (unsigned long long)(dd_mono_ms() - t0));
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].status, 0);
        if (i % 3 == 0)
            assert_string_equal(g[i].ev_type[0], "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED");
        else
            assert_string_equal(g[i].exec_run, a.run_id);
    }
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_terminate(f->t, wf, a.run_id, "test done", capture, &d, NULL));
    assert_int_equal(d.status, 0);
}

static void test_unknown_namespace(void **state)
{
    fx *f = *state;
    got d;
    dd_temporal *t = client(f, dd_test_temporal_url(), "no-such-ns", 0, 0, NULL);
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(t, "wf", NULL, capture, &d, NULL));
    assert_int_equal(d.status, DD_ENOTFOUND);
    assert_int_equal(d.http, 404);
    assert_int_equal(d.attempts, 1);
    assert_string_equal(d.msg, "namespace 'no-such-ns' not found");
    dd_temporal_start_req r = {.workflow_id = "wf", .workflow_type = WF_TYPE,
                               .task_queue = "q"};
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_start(t, &r, capture, &d, NULL));
    assert_string_equal(d.msg, "namespace 'no-such-ns' not found");
    close_client(f, t);
}

static void test_connection_refused(void **state)
{
    fx *f = *state;
    got d;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dd_test_free_port());
    dd_temporal *t = client(f, url, "default", 4, 0, NULL);
    dd_temporal_start_req r = {.workflow_id = "wf", .workflow_type = WF_TYPE,
                               .task_queue = "q"};
    uint64_t t0 = dd_mono_ms();
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_start(t, &r, capture, &d, NULL));
    uint64_t took = dd_mono_ms() - t0;
    printf("measure: connection refused, gave up after %d attempts in %llu ms: %s\n",
           d.attempts, (unsigned long long)took, d.msg);
    assert_int_equal(d.status, DD_EUNAVAIL);
    assert_int_equal(d.attempts, 4);
    assert_int_equal(d.http, 0);
    assert_non_null(strstr(d.msg, "unavailable after 4 attempts"));
    assert_non_null(strstr(d.msg, url));
    /* three backoff delays: each at least half its nominal 50/100/200 ms */
    assert_true(took >= 175);
    close_client(f, t);
    /* the retries were logged */
    rewind(f->logf);
    char line[2048];
    int retries = 0;
    while (fgets(line, sizeof(line), f->logf))
        retries += strstr(line, "event=temporal_retry") != NULL;
    assert_int_equal(retries, 3);
}

static void test_request_timeout(void **state)
{
    /* A server that accepts connections but never answers. */
    fx *f = *state;
    got d;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    dd_temporal *t = client(f, url, "default", 2, 300, NULL);
    uint64_t t0 = dd_mono_ms();
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(t, "wf", NULL, capture, &d, NULL));
    uint64_t took = dd_mono_ms() - t0;
    printf("measure: silent server, gave up after %d attempts in %llu ms: %s\n", d.attempts,
           (unsigned long long)took, d.msg);
    assert_int_equal(d.status, DD_ETIMEOUT);
    assert_int_equal(d.attempts, 2);
    assert_true(took >= 600 && took < 3000);
    close_client(f, t);
    close(fd);
}

/* Requests in flight are capped (max_in_flight), long polls aside: the
 * rest wait in order and go out as slots free up; a waiting call can be
 * cancelled. A server that accepts but never answers shows how many
 * requests were sent at once: each connection carries one. */
static int accept_all(int fd)
{
    int n = 0, c;
    while ((c = accept(fd, NULL, NULL)) >= 0) {
        n++;
        /* kept open (the client times out), closed at the end */
    }
    return n;
}

static void test_max_in_flight(void **state)
{
    fx *f = *state;
    enum { N = 8, M = 3 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 64), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    dd_temporal *t = client_max(f, url, 1, 400, M);
    static got g[N + 2];
    memset(g, 0, sizeof(g));
    dd_temporal_call *last = NULL;
    uint64_t t0 = dd_mono_ms();
    for (int i = 0; i < N; i++)
        assert_int_equal(dd_temporal_describe(t, "wf", NULL, capture, &g[i], i == N - 1 ? &last : NULL),
                         0);
    /* a long poll is not held back by the cap */
    assert_int_equal(dd_temporal_wait_close(t, "wf", "r", capture, &g[N], NULL), 0);
    sleep_loop(f, 200);
    int seen = accept_all(fd);
    printf("measure: %d describes + 1 long poll with max_in_flight %d: %d connections at once\n",
           N, M, seen);
    assert_int_equal(seen, M + 1);
    /* the last one waits in line: cancelled there, it answers DD_ECANCELED */
    dd_temporal_cancel(last);
    for (int i = 0; i < N; i++)
        wait_for(f, &g[i]);
    uint64_t took = dd_mono_ms() - t0;
    int timeouts = 0;
    for (int i = 0; i < N - 1; i++)
        timeouts += g[i].status == DD_ETIMEOUT;
    assert_int_equal(timeouts, N - 1);
    assert_int_equal(g[N - 1].status, DD_ECANCELED);
    /* 7 answered by their 400 ms timeout, 3 at a time: three rounds */
    printf("measure: 7 silent describes, 3 at a time, 400 ms timeout: %llu ms\n",
           (unsigned long long)took);
    assert_true(took >= 3 * 400 * 9 / 10);
    assert_int_equal(accept_all(fd) + seen, N - 1 + 1);
    close_client(f, t);
    close(fd);
}

static void test_bad_arguments(void **state)
{
    fx *f = *state;
    got d = {0};
    dd_temporal_start_req r = {.workflow_id = "a/b", .workflow_type = WF_TYPE,
                               .task_queue = "q"};
    assert_int_equal(dd_temporal_start(f->t, &r, capture, &d, NULL), DD_EINVAL);
    r.workflow_id = "ok";
    r.input_json = "{not json";
    assert_int_equal(dd_temporal_start(f->t, &r, capture, &d, NULL), DD_EINVAL);
    r.input_json = NULL;
    r.memo_json = "[1]";
    assert_int_equal(dd_temporal_start(f->t, &r, capture, &d, NULL), DD_EINVAL);
    r.memo_json = NULL;
    r.conflict_policy = "terminate existing";
    assert_int_equal(dd_temporal_start(f->t, &r, capture, &d, NULL), DD_EINVAL);
    r.conflict_policy = NULL;
    assert_int_equal(dd_temporal_signal_with_start(f->t, &r, capture, &d, NULL), DD_EINVAL);
    assert_int_equal(dd_temporal_terminate(f->t, "wf", NULL, "x", capture, &d, NULL),
                     DD_EINVAL);
    assert_int_equal(dd_temporal_wait_close(f->t, "wf", "", capture, &d, NULL), DD_EINVAL);
    assert_int_equal(dd_temporal_describe(f->t, "", NULL, capture, &d, NULL), DD_EINVAL);
    assert_false(d.done); /* no callback for refused calls */
    dd_temporal_opts bad = {.base_url = "", .namespace_ = "default"};
    dd_temporal *none = NULL;
    char why[512] = "";
    assert_int_equal(dd_temporal_new(&f->ctx, &bad, &none, why, sizeof(why)), DD_EINVAL);
    assert_null(none);
    assert_true(why[0] != '\0');
}

static void test_api_key_never_logged(void **state)
{
    fx *f = *state;
    got d;
    const char *key = "sk-test-0123456789abcdef";
    /* the dev server ignores the Authorization header: the call succeeds */
    dd_temporal *t = client(f, dd_test_temporal_url(), "default", 0, 0, key);
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_list(t, "", NULL, 1, capture, &d, NULL));
    assert_int_equal(d.status, 0);
    /* and an erroring call with retries logs nothing secret either */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dd_test_free_port());
    dd_temporal *t2 = client(f, url, "default", 2, 0, key);
    memset(&d, 0, sizeof(d));
    do_op(f, &d, dd_temporal_describe(t2, "wf", NULL, capture, &d, NULL));
    assert_int_equal(d.status, DD_EUNAVAIL);
    assert_null(strstr(d.msg, key));
    close_client(f, t);
    close_client(f, t2);
    fflush(f->logf);
    rewind(f->logf);
    char line[2048];
    int lines = 0;
    while (fgets(line, sizeof(line), f->logf)) {
        lines++;
        assert_null(strstr(line, key));
    }
    assert_true(lines > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_and_signal_with_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_close_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_close_already_closed_and_cancel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_runs_and_close_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_key_never_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_close_repolls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
