/* watch.c - the host's loss watch (watch.h): picks long-poll or batch mode
 * from the fleet's size, and in batch mode asks Temporal once per interval
 * which of the host's owned runs have closed. */
#include "owner/watch.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Every DD_WATCH_PRESENCE_EVERY-th round asks without the status condition
 * (a presence check): a run long owned that is not listed at all may be a
 * run Temporal lost, which nothing else in batch mode would notice. */
#define DD_WATCH_PRESENCE_EVERY 12

typedef struct dd_watch_query {
    dd_loss_watch *w;
    dd_temporal_call *call; /* in flight, or NULL */
    bool presence;          /* no status condition: unlisted runs are looked at */
    size_t n;               /* the runs asked about, and their owners */
    dd_owner *owners[DD_TEMPORAL_RUNS_MAX];
    size_t idx[DD_TEMPORAL_RUNS_MAX]; /* each owner's index in w->owners */
    char runs[DD_TEMPORAL_RUNS_MAX][DD_RUN_ID_LEN];
} dd_watch_query;

struct dd_loss_watch {
    dd_ctx ctx;
    dd_store *s;
    dd_temporal *t;
    dd_owner **owners;
    size_t n;
    int64_t interval_ms;
    int64_t budget, back_below; /* batch at >= budget, long polls again below back_below */
    bool long_poll;
    int64_t fleet;        /* the last size read (at least n), -1 none yet */
    bool counting;        /* ZCARD in flight */
    bool count_warned;    /* said that it failed, not answered since */
    uint64_t check_fails; /* visibility queries failed since the last answer */
    dd_watch_query *q;    /* one per DD_TEMPORAL_RUNS_MAX owners */
    /* presence checks: owned runs not listed, still to be described (at
     * most DD_WATCH_DESCRIBES_MAX in flight; watch.h) */
    bool *unlisted;
    char (*unlisted_run)[DD_RUN_ID_LEN];
    size_t unlisted_cursor;
    size_t nq, q_busy;    /* slots, queries in flight */
    uint64_t round;       /* batch rounds so far (presence every DD_WATCH_PRESENCE_EVERY) */
    int pending;          /* callbacks still owed to us (ZCARD, queries) */
    uv_timer_t timer;
    bool closing, timer_closed;
    void (*done)(void *);
    void *done_arg;
    dd_metric *m_long_polls, *m_mode, *m_checks, *m_closed;
};

/* Long polls our owners hold now. */
static size_t dd_watch_held(const dd_loss_watch *w)
{
    size_t held = 0;
    for (size_t i = 0; i < w->n; i++)
        held += dd_owner_long_polling(w->owners[i]);
    return held;
}

static void dd_watch_gauges(dd_loss_watch *w)
{
    dd_metric_set(w->m_long_polls, NULL, (double)dd_watch_held(w));
    dd_metric_set(w->m_mode, DD_L1("long_poll"), w->long_poll ? 1 : 0);
    dd_metric_set(w->m_mode, DD_L1("batch"), w->long_poll ? 0 : 1);
}

static void dd_watch_set_mode(dd_loss_watch *w, bool long_poll, const char *why)
{
    size_t held = dd_watch_held(w);
    w->long_poll = long_poll;
    for (size_t i = 0; i < w->n; i++)
        dd_owner_set_long_poll(w->owners[i], long_poll);
    dd_info(w->ctx.log, "loss_watch_mode",
            "mode=%s reason=%s fleet_records=%lld budget=%lld long_polls_below=%lld "
            "dispatchers=%zu long_polls_before=%zu",
            long_poll ? "long_poll" : "batch", why, (long long)w->fleet, (long long)w->budget,
            (long long)w->back_below, w->n, held);
    dd_watch_gauges(w);
}

static void dd_watch_maybe_free(dd_loss_watch *w)
{
    if (!w->closing || w->pending > 0 || !w->timer_closed)
        return;
    void (*done)(void *) = w->done;
    void *arg = w->done_arg;
    free(w->q);
    free(w->owners);
    free(w->unlisted);
    free(w->unlisted_run);
    free(w);
    if (done)
        done(arg);
}

/* ---- batch mode: which of our runs have closed? ------------------------ */

size_t dd_watch_spread(const bool *want, size_t n, size_t *cursor, size_t room, size_t *picked)
{
    size_t k = 0;
    if (n == 0)
        return 0;
    size_t start = *cursor % n;
    for (size_t j = 0; j < n && k < room; j++) {
        size_t i = (start + j) % n;
        if (!want[i])
            continue;
        picked[k++] = i;
        *cursor = (i + 1) % n;
    }
    return k;
}

/* Describes the next unlisted runs, keeping at most DD_WATCH_DESCRIBES_MAX
 * of our owners' reads in flight (watch.h). Each round, and after a
 * presence check's answer. */
static void dd_watch_describe_unlisted(dd_loss_watch *w, bool say)
{
    size_t busy = 0, waiting = 0;
    for (size_t i = 0; i < w->n; i++) {
        busy += dd_owner_checking(w->owners[i]);
        waiting += w->unlisted[i];
    }
    if (waiting == 0)
        return;
    size_t room = busy < DD_WATCH_DESCRIBES_MAX ? DD_WATCH_DESCRIBES_MAX - busy : 0;
    size_t picked[DD_WATCH_DESCRIBES_MAX];
    size_t k = dd_watch_spread(w->unlisted, w->n, &w->unlisted_cursor, room, picked);
    for (size_t j = 0; j < k; j++) {
        size_t i = picked[j];
        w->unlisted[i] = false;
        /* no-op when it no longer owns that run, or already reads it */
        dd_owner_run_unlisted(w->owners[i], w->unlisted_run[i]);
    }
    if (say && waiting > k)
        dd_info(w->ctx.log, "presence_check_spread",
                "unlisted=%zu describing=%zu in_flight_before=%zu later=%zu max_in_flight=%d",
                waiting, k, busy, waiting - k, DD_WATCH_DESCRIBES_MAX);
}

static void dd_watch_query_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_watch_query *q = arg;
    dd_loss_watch *w = q->w;
    q->call = NULL;
    w->q_busy--;
    w->pending--;
    if (w->closing) {
        dd_watch_maybe_free(w);
        return;
    }
    dd_metric_add(w->m_checks, DD_L1(st == 0 ? "ok" : "error"), 1);
    if (st != 0) {
        /* the next interval asks again; the fence and the notices still work.
         * Said once per streak: at 5,000 dispatchers a visibility store that
         * refuses the query would otherwise log 50 lines every interval */
        if (w->check_fails++ == 0)
            dd_warn(w->ctx.log, "loss_watch_check_failed",
                    "error=%s note=\"said once until a query is answered; "
                    "dispatchd_loss_watch_queries_total{result=error} counts each\"",
                    r && *r->message ? r->message : dd_strerror(st));
        return;
    }
    if (w->check_fails) {
        dd_info(w->ctx.log, "loss_watch_check_recovered", "failed_before=%llu",
                (unsigned long long)w->check_fails);
        w->check_fails = 0;
    }
    /* exactly (workflow id, run id) of the runs asked about, each still its
     * owner's current run (the owner checks that too) */
    bool listed[DD_TEMPORAL_RUNS_MAX] = {false};
    for (size_t k = 0; k < r->nexecutions; k++) {
        const dd_temporal_execution *e = &r->executions[k];
        if (!e->workflow_id || !e->run_id)
            continue;
        for (size_t i = 0; i < q->n; i++) {
            if (strcmp(q->runs[i], e->run_id) ||
                strcmp(dd_owner_workflow_id(q->owners[i]), e->workflow_id))
                continue;
            listed[i] = true;
            if (e->status == DD_WF_RUNNING)
                continue; /* a presence check lists running runs too */
            dd_metric_add(w->m_closed, NULL, 1);
            dd_owner_run_closed(q->owners[i], e->run_id);
        }
    }
    bool any = false;
    for (size_t i = 0; q->presence && i < q->n; i++)
        if (!listed[i]) {
            w->unlisted[q->idx[i]] = true;
            snprintf(w->unlisted_run[q->idx[i]], DD_RUN_ID_LEN, "%s", q->runs[i]);
            any = true;
        }
    if (any)
        dd_watch_describe_unlisted(w, true);
}

static void dd_watch_check(dd_loss_watch *w)
{
    dd_watch_describe_unlisted(w, false); /* those a presence check left for later */
    if (w->q_busy > 0)
        return; /* the last round is still out: no pile-up behind a slow server */
    bool presence = ++w->round % DD_WATCH_PRESENCE_EVERY == 0;
    /* a run started within the last two intervals may not be visible yet */
    uint64_t settled_ms = 2 * (uint64_t)w->interval_ms;
    const char *ids[DD_TEMPORAL_RUNS_MAX];
    size_t k = 0, slot = 0;
    dd_watch_query *q = &w->q[0];
    for (size_t i = 0; i <= w->n; i++) {
        if (i < w->n) {
            dd_owner *o = w->owners[i];
            const char *run = dd_owner_run_id(o); /* "" unless owning */
            if (!dd_owner_owning(o) || !dd_temporal_run_id_plain(run) ||
                (presence && dd_owner_owned_for_ms(o) < settled_ms))
                continue;
            q->owners[k] = o;
            q->idx[k] = i;
            snprintf(q->runs[k], sizeof(q->runs[k]), "%s", run);
            ids[k] = q->runs[k];
            k++;
            if (k < DD_TEMPORAL_RUNS_MAX)
                continue;
        }
        if (k == 0)
            break;
        q->n = k;
        q->presence = presence;
        int rc = dd_temporal_list_runs(w->t, presence ? NULL : "ExecutionStatus != 'Running'",
                                       ids, k, dd_watch_query_done, q, &q->call);
        if (rc < 0) {
            q->call = NULL;
            dd_metric_add(w->m_checks, DD_L1("error"), 1);
            if (w->check_fails++ == 0) /* as a failed answer: once per streak */
                dd_warn(w->ctx.log, "loss_watch_check_failed", "error=%s note=%s",
                        dd_strerror(rc), "\"the query could not be sent\"");
        } else {
            w->q_busy++;
            w->pending++;
        }
        q = &w->q[++slot < w->nq ? slot : 0];
        k = 0;
    }
}

/* ---- the fleet's size, the mode ---------------------------------------- */

static void dd_watch_counted(int st, int64_t n, void *arg)
{
    dd_loss_watch *w = arg;
    w->counting = false;
    w->pending--;
    if (w->closing) {
        dd_watch_maybe_free(w);
        return;
    }
    if (st == 0) {
        w->count_warned = false;
        w->fleet = n > (int64_t)w->n ? n : (int64_t)w->n;
        if (w->long_poll && w->fleet >= w->budget)
            dd_watch_set_mode(w, false, "fleet at or above the long-poll budget");
        else if (!w->long_poll && w->fleet < w->back_below)
            dd_watch_set_mode(w, true, "fleet below 90% of the long-poll budget");
    } else if (!w->count_warned) {
        w->count_warned = true;
        dd_warn(w->ctx.log, "loss_watch_count_failed", "error=%s mode=%s note=%s",
                dd_strerror(st), w->long_poll ? "long_poll" : "batch",
                "the mode stays as it is until Redis answers");
    }
    if (!w->long_poll)
        dd_watch_check(w);
    dd_watch_gauges(w);
}

static void dd_watch_tick(uv_timer_t *t)
{
    dd_loss_watch *w = t->data;
    if (w->closing)
        return;
    if (w->budget > 0) {
        if (w->counting)
            return;
        int rc = dd_store_fleet_size(w->s, dd_watch_counted, w);
        if (rc == 0) {
            w->counting = true;
            w->pending++;
            return;
        }
        /* not sent (Redis away): decide nothing, watch as we are */
    }
    if (!w->long_poll)
        dd_watch_check(w);
    dd_watch_gauges(w);
}

dd_loss_watch *dd_loss_watch_new(const dd_ctx *ctx, dd_store *s, dd_temporal *t,
                                 dd_owner *const *owners, size_t n, const dd_loss_watch_opts *o)
{
    dd_loss_watch *w = dd_xcalloc(1, sizeof(*w));
    w->ctx = *ctx;
    w->s = s;
    w->t = t;
    w->n = n;
    w->owners = dd_xcalloc(n ? n : 1, sizeof(*w->owners));
    w->unlisted = dd_xcalloc(n ? n : 1, sizeof(*w->unlisted));
    w->unlisted_run = dd_xcalloc(n ? n : 1, sizeof(*w->unlisted_run));
    if (n)
        memcpy(w->owners, owners, n * sizeof(*owners));
    w->interval_ms = o->interval_ms > 0 ? o->interval_ms : 5000;
    w->budget = o->budget > 0 ? o->budget : 0;
    int64_t hyst = w->budget / 10 > 1 ? w->budget / 10 : 1;
    w->back_below = w->budget - hyst;
    w->nq = n / DD_TEMPORAL_RUNS_MAX + 1;
    w->q = dd_xcalloc(w->nq, sizeof(*w->q));
    for (size_t i = 0; i < w->nq; i++)
        w->q[i].w = w;
    w->fleet = (int64_t)n; /* every dispatcher configured here will have a record */
    if (ctx->metrics) {
        w->m_long_polls = dd_metrics_family(
            ctx->metrics, DD_GAUGE, "dispatchd_loss_watch_long_polls",
            "Long polls on an owned run's close event this process holds now (0 in batch "
            "mode); updated every heartbeat interval and at every change of mode.",
            NULL, NULL, 0);
        const char *const ml[] = {"mode", NULL};
        w->m_mode = dd_metrics_family(
            ctx->metrics, DD_GAUGE, "dispatchd_loss_watch_mode",
            "1 for the loss watch's current mode: long_poll (one long poll per owned "
            "dispatcher) or batch (takeover notices and a visibility check per interval), "
            "chosen from the fleet's size and --long-poll-budget.",
            ml, NULL, 0);
        const char *const rl[] = {"result", NULL};
        w->m_checks = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_loss_watch_queries_total",
            "Batch mode: visibility queries about owned runs (up to 100 runs each: the closed "
            "ones, every 12th round all of them), by result (ok, error).",
            rl, NULL, 0);
        dd_metric_add(w->m_checks, DD_L1("ok"), 0);
        dd_metric_add(w->m_checks, DD_L1("error"), 0);
        w->m_closed = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_loss_watch_closed_runs_total",
            "Batch mode: owned runs a visibility query listed as closed (each then read its "
            "close event and took the loss path a long poll's answer takes).",
            NULL, NULL, 0);
        dd_metric_add(w->m_closed, NULL, 0);
    }
    uv_timer_init(ctx->loop, &w->timer);
    w->timer.data = w;
    w->long_poll = w->budget > 0 && (int64_t)n < w->budget;
    for (size_t i = 0; i < n; i++)
        dd_owner_set_long_poll(w->owners[i], w->long_poll);
    dd_info(w->ctx.log, "loss_watch_mode",
            "mode=%s reason=%s fleet_records=unknown budget=%lld long_polls_below=%lld "
            "dispatchers=%zu",
            w->long_poll ? "long_poll" : "batch",
            w->budget == 0 ? "--long-poll-budget 0"
            : w->long_poll ? "start: fewer dispatchers here than the budget"
                           : "start: as many dispatchers here as the budget or more",
            (long long)w->budget, (long long)w->back_below, n);
    dd_watch_gauges(w);
    return w;
}

void dd_loss_watch_start(dd_loss_watch *w)
{
    if (!w->closing)
        uv_timer_start(&w->timer, dd_watch_tick, 0, (uint64_t)w->interval_ms);
}

bool dd_loss_watch_long_poll(const dd_loss_watch *w)
{
    return w->long_poll;
}

static void dd_watch_timer_closed(uv_handle_t *h)
{
    dd_loss_watch *w = h->data;
    w->timer_closed = true;
    dd_watch_maybe_free(w);
}

void dd_loss_watch_close(dd_loss_watch *w, void (*done)(void *), void *arg)
{
    if (w->closing)
        return;
    w->closing = true;
    w->done = done;
    w->done_arg = arg;
    for (size_t i = 0; i < w->nq; i++)
        if (w->q[i].call)
            dd_temporal_cancel(w->q[i].call);
    uv_close((uv_handle_t *)&w->timer, dd_watch_timer_closed);
}
