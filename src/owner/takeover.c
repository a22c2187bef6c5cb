/* takeover.c - one termination-first takeover of a dispatcher workflow ID. */
#include "owner/owner.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "temporal/temporal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

dd_failover_lease dd_failover_lease_plan(int64_t threshold_ms, int64_t call_deadline_ms)
{
    dd_failover_lease l;
    l.ttl_ms = threshold_ms + 2 * call_deadline_ms + DD_FAILOVER_LEASE_MARGIN_MS;
    l.start_within_ms = l.ttl_ms - call_deadline_ms - DD_FAILOVER_LEASE_MARGIN_MS;
    return l;
}

struct dd_takeover {
    dd_ctx ctx;
    dd_temporal *t;
    char *project, *queue, *server_id;
    char *type, *task_queue; /* what we start */
    bool workflow_mode;
    bool legacy;
    int max_attempts;
    char *input_json, *memo_json;
    dd_takeover_result res;
    uint64_t start_us;
    dd_temporal_call *call; /* in flight, or NULL */
    uv_timer_t *retry;      /* legacy retry delay, or NULL */
    bool cancelling;        /* dd_takeover_cancel was called */
    bool starting;          /* call is the start: it may already have reached Temporal */
    uint64_t start_by_ms;   /* monotonic: no start sent after this (0: no bound) */
    dd_backoff backoff;
    dd_takeover_cb cb;
    void *arg;
};

static void dd_tk_describe_done(int st, const dd_temporal_result *r, void *arg);
static void dd_tk_start_done(int st, const dd_temporal_result *r, void *arg);

static void dd_tk_retry_closed(uv_handle_t *h)
{
    free(h);
}

void dd_takeover_metrics_init(dd_metrics *m)
{
    if (!m || dd_metrics_find(m, "dispatchd_takeovers_total"))
        return;
    const char *const lbl[] = {"outcome", NULL};
    dd_metric *t = dd_metrics_family(m, DD_COUNTER, "dispatchd_takeovers_total",
                                     "Dispatcher takeovers by outcome (started, took_over, "
                                     "legacy_took_over, failed; cancelled: stopped by a "
                                     "shutdown, not a failure).",
                                     lbl, NULL, 0);
    /* every outcome at 0 from the start: the runbook's and alerts' queries
     * on outcome="failed" must find a series before the first failure */
    static const char *const outcomes[] = {"started", "took_over", "legacy_took_over", "failed",
                                           "cancelled"};
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        dd_metric_add(t, DD_L1(outcomes[i]), 0);
    dd_metrics_family(m, DD_HISTOGRAM, "dispatchd_takeover_duration_seconds",
                      "Time from the start of a takeover until this host owns the dispatcher.",
                      NULL, NULL, 0);
}

static void dd_tk_finish(dd_takeover *tk, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dd_tk_finish(dd_takeover *tk, int err, const char *fmt, ...)
{
    dd_takeover_result *res = &tk->res;
    res->err = err;
    res->latency_ms = (double)(dd_mono_us() - tk->start_us) / 1000.0;
    if (err) {
        /* a shutdown is not a failure: the "failed" that must stay 0 */
        res->outcome = err == DD_ECANCELED ? "cancelled" : "failed";
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof(res->message), fmt, ap);
        va_end(ap);
    }
    dd_metrics *m = tk->ctx.metrics;
    if (m) {
        dd_takeover_metrics_init(m);
        dd_metric_add(dd_metrics_find(m, "dispatchd_takeovers_total"), DD_L1(res->outcome), 1);
        if (!err)
            dd_metric_observe(dd_metrics_find(m, "dispatchd_takeover_duration_seconds"), NULL,
                              res->latency_ms / 1000.0);
    }
    dd_logf(tk->ctx.log, err ? DD_LOG_ERROR : DD_LOG_INFO, "takeover",
            "workflow_id=%s outcome=%s run_id=%s previous_run_id=%s previous_server_id=%s "
            "attempts=%d latency_ms=%.1f requester=%s error=%s",
            res->workflow_id, res->outcome, res->run_id, res->previous_run_id,
            res->previous_server_id, res->attempts, res->latency_ms, tk->server_id,
            res->message);
    if (tk->retry) {
        uv_close((uv_handle_t *)tk->retry, dd_tk_retry_closed);
        tk->retry = NULL;
    }
    tk->cb(res, tk->arg);
    free(tk->project);
    free(tk->queue);
    free(tk->server_id);
    free(tk->input_json);
    free(tk->memo_json);
    free(tk->type);
    free(tk->task_queue);
    free(tk);
}

/* A run we are about to replace must be a dispatcher of the same
 * (project, queue): the ID says so for the pair, the memo (project, queue)
 * dispatchd writes on every start says it is ours, and the type must be the
 * one we start or a dispatchd marker (a host moving from marker mode to
 * workflow mode takes over its old marker). Anything else - a workflow a
 * person or program started under this ID, a run of another type - we
 * refuse to terminate. Task queues are not compared: markers moved off the
 * users' queues, and a marker an older dispatchd left on the dispatcher's
 * queue must still be taken over. */
static bool dd_tk_same_dispatcher(const dd_takeover *tk, const dd_temporal_execution *e,
                                  char *why, size_t len)
{
    bool marker = e->type && strcmp(e->type, DD_DISPATCHER_WORKFLOW_TYPE) == 0;
    bool ours = e->type && strcmp(e->type, tk->type) == 0;
    if (!marker && !ours) {
        snprintf(why, len, "its workflow type is '%s', not '%s'%s", e->type ? e->type : "?",
                 tk->type, tk->workflow_mode ? " nor a dispatchd marker" : "");
        return false;
    }
    if (!e->memo_project || !e->memo_queue) {
        /* the oldest markers (before the memo had the pair) ran on the
         * dispatcher's own queue: that still identifies them */
        if (marker && e->task_queue && strcmp(e->task_queue, tk->queue) == 0)
            return true;
        snprintf(why, len, "it has no dispatchd memo (project, queue): something else "
                           "started it under this ID");
        return false;
    }
    if (strcmp(e->memo_project, tk->project) != 0 || strcmp(e->memo_queue, tk->queue) != 0) {
        snprintf(why, len, "its memo names dispatcher '%s/%s', not '%s/%s'", e->memo_project,
                 e->memo_queue, tk->project, tk->queue);
        return false;
    }
    return true;
}

/* Under a failover lease: a write (the start, or the legacy path's
 * terminate) sent now could reach Temporal up to a call deadline later, and
 * by then the lease may have expired and another standby begun a takeover
 * of its own (owner.h, dd_failover_lease_plan). Give up instead (true: tk
 * is finished); the caller gives the lease back and backs off. */
static bool dd_tk_past_lease(dd_takeover *tk, const char *what)
{
    uint64_t now = dd_mono_ms();
    if (!tk->start_by_ms || now <= tk->start_by_ms)
        return false;
    dd_tk_finish(tk, DD_ETIMEOUT,
                 "not %s '%s': the failover lease could expire before the answer (%llu ms "
                 "past the last moment a write may be sent under it; Temporal or this host is "
                 "slow)",
                 what, tk->res.workflow_id, (unsigned long long)(now - tk->start_by_ms));
    return true;
}

static void dd_tk_send_start(dd_takeover *tk)
{
    if (dd_tk_past_lease(tk, "starting"))
        return;
    dd_temporal_start_req req = {
        .workflow_id = tk->res.workflow_id,
        .workflow_type = tk->type,
        .task_queue = tk->task_queue,
        .input_json = tk->input_json,
        .memo_json = tk->memo_json,
        .conflict_policy = tk->legacy ? "UNSPECIFIED" : "TERMINATE_EXISTING",
        .reuse_policy = "ALLOW_DUPLICATE",
    };
    tk->res.attempts++;
    int rc = dd_temporal_start(tk->t, &req, dd_tk_start_done, tk, &tk->call);
    tk->starting = rc == 0;
    /* the second half of a takeover begun with a describe: ahead of the
     * describes of takeovers that have not begun (temporal.h) */
    dd_temporal_prioritize(rc == 0 ? tk->call : NULL);
    if (rc < 0)
        dd_tk_finish(tk, rc, "cannot start workflow '%s': %s", tk->res.workflow_id,
                     dd_strerror(rc));
}

static void dd_tk_retry_fire(uv_timer_t *t)
{
    dd_takeover *tk = t->data;
    uv_close((uv_handle_t *)tk->retry, dd_tk_retry_closed);
    tk->retry = NULL;
    if (tk->cancelling) { /* cannot happen (cancel re-arms the timer): be safe */
        dd_tk_finish(tk, DD_ECANCELED, "cancelled");
        return;
    }
    dd_tk_send_start(tk);
}

static void dd_tk_terminate_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_takeover *tk = arg;
    tk->call = NULL;
    if (st == DD_ECANCELED) {
        dd_tk_finish(tk, st, "cancelled");
        return;
    }
    /* Not found / already closed is fine: it is gone either way. */
    if (st < 0 && st != DD_ENOTFOUND) {
        dd_tk_finish(tk, st, "cannot terminate run '%s' of '%s': %s", tk->res.previous_run_id,
                     tk->res.workflow_id, r->message);
        return;
    }
    if (tk->res.attempts >= tk->max_attempts) {
        dd_tk_finish(tk, DD_ECONFLICT, "workflow '%s' still running after %d attempts",
                     tk->res.workflow_id, tk->res.attempts);
        return;
    }
    /* Back off a little: another host may be doing the same thing. */
    int64_t delay = dd_backoff_next(&tk->backoff);
    tk->retry = dd_xcalloc(1, sizeof(uv_timer_t));
    uv_timer_init(tk->ctx.loop, tk->retry);
    tk->retry->data = tk;
    uv_timer_start(tk->retry, dd_tk_retry_fire, (uint64_t)delay, 0);
}

/* Legacy path: the server named the run that is in our way. */
static void dd_tk_legacy_check_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_takeover *tk = arg;
    tk->call = NULL;
    if (st < 0) {
        dd_tk_finish(tk, st, "cannot describe run '%s' of '%s': %s", tk->res.previous_run_id,
                     tk->res.workflow_id, r->message);
        return;
    }
    char why[256];
    if (!dd_tk_same_dispatcher(tk, r->execution, why, sizeof(why))) {
        dd_tk_finish(tk, DD_ECONFLICT, "refusing to terminate '%s' run '%s': %s",
                     tk->res.workflow_id, tk->res.previous_run_id, why);
        return;
    }
    if (r->execution->server_id)
        snprintf(tk->res.previous_server_id, sizeof(tk->res.previous_server_id), "%s",
                 r->execution->server_id);
    if (dd_tk_past_lease(tk, "terminating the run in the way of"))
        return;
    char reason[256];
    snprintf(reason, sizeof(reason), "takeover by %s", tk->server_id);
    dd_info(tk->ctx.log, "terminate",
            "workflow_id=%s run_id=%s reason=%s requester=%s previous_server_id=%s",
            tk->res.workflow_id, tk->res.previous_run_id, reason, tk->server_id,
            tk->res.previous_server_id);
    int rc = dd_temporal_terminate(tk->t, tk->res.workflow_id, tk->res.previous_run_id, reason,
                                   dd_tk_terminate_done, tk, &tk->call);
    dd_temporal_prioritize(rc == 0 ? tk->call : NULL);
    if (rc < 0)
        dd_tk_finish(tk, rc, "cannot terminate: %s", dd_strerror(rc));
}

static void dd_tk_start_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_takeover *tk = arg;
    tk->call = NULL;
    tk->starting = false;
    if (tk->cancelling) {
        /* Cancelled while the start was in flight (dd_takeover_cancel let it
         * finish): a run Temporal started for us is named in res.run_id, so
         * that the caller ends it instead of leaving it Running. */
        if (st == 0)
            snprintf(tk->res.run_id, sizeof(tk->res.run_id), "%s", r->run_id ? r->run_id : "");
        dd_tk_finish(tk, DD_ECANCELED, "cancelled%s%s",
                     tk->res.run_id[0] ? " after the start of run " : "", tk->res.run_id);
        return;
    }
    if (st == 0) {
        snprintf(tk->res.run_id, sizeof(tk->res.run_id), "%s", r->run_id ? r->run_id : "");
        if (!tk->legacy && tk->res.previous_run_id[0])
            /* The server terminated it as part of our start: log it as ours,
             * now that it really happened. */
            dd_info(tk->ctx.log, "terminate",
                    "workflow_id=%s run_id=%s reason=%s requester=%s previous_server_id=%s "
                    "new_run_id=%s via=conflict_policy",
                    tk->res.workflow_id, tk->res.previous_run_id, "takeover (TERMINATE_EXISTING)",
                    tk->server_id, tk->res.previous_server_id, tk->res.run_id);
        if (tk->legacy && tk->res.previous_run_id[0])
            tk->res.outcome = "legacy_took_over";
        else
            tk->res.outcome = tk->res.previous_run_id[0] ? "took_over" : "started";
        dd_tk_finish(tk, 0, "%s", "");
        return;
    }
    if (st == DD_ECONFLICT && tk->legacy && r->run_id) {
        snprintf(tk->res.previous_run_id, sizeof(tk->res.previous_run_id), "%s", r->run_id);
        int rc = dd_temporal_describe(tk->t, tk->res.workflow_id, tk->res.previous_run_id,
                                      dd_tk_legacy_check_done, tk, &tk->call);
        dd_temporal_prioritize(rc == 0 ? tk->call : NULL);
        if (rc < 0)
            dd_tk_finish(tk, rc, "cannot describe: %s", dd_strerror(rc));
        return;
    }
    dd_tk_finish(tk, st, "cannot start dispatcher '%s': %s", tk->res.workflow_id, r->message);
}

static void dd_tk_describe_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_takeover *tk = arg;
    tk->call = NULL;
    if (st == DD_ECANCELED) {
        dd_tk_finish(tk, st, "cancelled");
        return;
    }
    if (st < 0 && st != DD_ENOTFOUND) {
        dd_tk_finish(tk, st, "%s", r->message);
        return;
    }
    if (st == 0 && r->execution && r->execution->status == DD_WF_RUNNING) {
        char why[256];
        if (!dd_tk_same_dispatcher(tk, r->execution, why, sizeof(why))) {
            dd_tk_finish(tk, DD_ECONFLICT, "refusing to take over '%s' (run '%s'): %s",
                         tk->res.workflow_id, r->execution->run_id, why);
            return;
        }
        snprintf(tk->res.previous_run_id, sizeof(tk->res.previous_run_id), "%s",
                 r->execution->run_id ? r->execution->run_id : "");
        snprintf(tk->res.previous_first_run_id, sizeof(tk->res.previous_first_run_id), "%s",
                 r->execution->first_run_id ? r->execution->first_run_id : "");
        if (r->execution->server_id)
            snprintf(tk->res.previous_server_id, sizeof(tk->res.previous_server_id), "%s",
                     r->execution->server_id);
    }
    dd_tk_send_start(tk);
}

int dd_takeover_start(const dd_ctx *ctx, dd_temporal *t, const dd_takeover_req *req,
                      dd_takeover_cb cb, void *arg, dd_takeover **out, char *err, size_t errlen)
{
    char wid[DD_DISPATCHER_ID_BUFLEN];
    int rc = dd_dispatcher_id_with(req->wf ? req->wf->id_prefix : NULL, req->project, req->queue,
                                   wid, sizeof(wid), err, errlen);
    if (rc < 0)
        return rc;
    if (!req->server_id || !*req->server_id) {
        snprintf(err, errlen, "server id must not be empty");
        return DD_EINVAL;
    }
    dd_takeover *tk = dd_xcalloc(1, sizeof(*tk));
    tk->ctx = *ctx;
    tk->t = t;
    tk->project = dd_strdup(req->project);
    tk->queue = dd_strdup(req->queue);
    tk->server_id = dd_strdup(req->server_id);
    tk->legacy = req->legacy;
    tk->max_attempts = req->max_attempts > 0 ? req->max_attempts : 5;
    tk->cb = cb;
    tk->arg = arg;
    tk->start_us = dd_mono_us();
    tk->start_by_ms = req->start_by_ms;
    dd_backoff_init(&tk->backoff, 50, 1000, 0);
    snprintf(tk->res.workflow_id, sizeof(tk->res.workflow_id), "%s", wid);
    const dd_owner_workflow *wf = req->wf;
    tk->workflow_mode = wf && wf->type && *wf->type;
    json_t *in = json_pack("{s:s, s:s, s:s}", "project", req->project, "queue", req->queue,
                           "server_id", req->server_id);
    /* the memo says whose dispatcher this is, in both modes */
    tk->memo_json = json_dumps(in, JSON_COMPACT);
    if (tk->workflow_mode) {
        tk->type = dd_strdup(wf->type);
        tk->task_queue = dd_strdup(wf->task_queue && *wf->task_queue ? wf->task_queue
                                                                      : req->queue);
        tk->input_json = wf->input_json ? dd_strdup(wf->input_json) : NULL;
    } else {
        tk->type = dd_strdup(DD_DISPATCHER_WORKFLOW_TYPE);
        tk->task_queue = dd_strdup(wf && wf->marker_task_queue && *wf->marker_task_queue
                                       ? wf->marker_task_queue
                                       : DD_MARKER_TASK_QUEUE);
        tk->input_json = json_dumps(in, JSON_COMPACT);
    }
    json_decref(in);
    if (out)
        *out = tk;
    rc = dd_temporal_describe(t, wid, NULL, dd_tk_describe_done, tk, &tk->call);
    if (rc < 0) {
        snprintf(err, errlen, "cannot describe '%s': %s", wid, dd_strerror(rc));
        free(tk->project);
        free(tk->queue);
        free(tk->server_id);
        free(tk->input_json);
        free(tk->memo_json);
        free(tk->type);
        free(tk->task_queue);
        free(tk);
        return rc;
    }
    return 0;
}

static void dd_tk_cancel_fire(uv_timer_t *t)
{
    dd_tk_finish(t->data, DD_ECANCELED, "cancelled");
}

/* cb runs once with DD_ECANCELED from the loop, never inside this call.
 * A start in flight is not cut short: it may already have reached Temporal,
 * which then runs a workflow nobody would know of; its answer (bounded by
 * the client's per-call deadline) finishes tk, naming the run if one was
 * started (dd_tk_start_done). */
void dd_takeover_cancel(dd_takeover *tk)
{
    if (tk->cancelling)
        return;
    tk->cancelling = true;
    if (tk->call && tk->starting)
        return;
    if (tk->call) {
        dd_temporal_cancel(tk->call); /* its callback, from the loop, finishes tk */
        return;
    }
    if (tk->retry) {
        uv_timer_stop(tk->retry);
        uv_timer_start(tk->retry, dd_tk_cancel_fire, 0, 0);
    }
}
