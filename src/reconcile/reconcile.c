/* reconcile.c - the reconcile cycle as a chain of loop callbacks, the
 * scheduling timer and the sweep. See reconcile.h for the behaviour and
 * the reasoning behind terminate-then-compare-and-delete.
 *
 * One cycle at a time; within it, up to max_inflight candidates at once,
 * each in its own lane (a slot holding the candidate, its lease name and
 * the one call it waits on). Each lane runs the same chain as before: lease,
 * describe, token, terminate, compare-and-delete, release. Lanes take the
 * candidates in order (oldest first), and tokens are handed out in that
 * order too: a lane that needs one gets it only when every lane holding an
 * older candidate has passed the token point (got its token, or found it
 * needs none), so terminations happen in the same order as one at a time,
 * while the other lanes keep leasing, describing and deleting. The sweep
 * still takes its executions one at a time (one lane).
 *
 * A lane waits on at most one thing at any moment (l->wait), and the cycle
 * itself waits on one thing (cy->wait) only while no lane is busy (the
 * stale query, the sweep's listing, the early-wake query). That is what
 * close needs to know: a Temporal call can be cancelled at once, a token
 * wait is just the shared timer, a store reply must be waited for (the
 * store has no per-operation cancel; its command timeout bounds the wait).
 *
 * Re-entrancy: only loop callbacks (and close) call settle(), and always
 * last; everything settle() calls (starting lanes, granting tokens, a call
 * the store or Temporal refuses at once) just changes lane state, never
 * calls settle() back. settle() is the one place that starts lanes, hands
 * out tokens, moves the cycle to its next phase and finishes it. */
#include "reconcile/reconcile.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "owner/id.h"
#include "owner/owner.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SWEEP_QUERY "WorkflowType='" DD_DISPATCHER_WORKFLOW_TYPE "' AND ExecutionStatus='Running'"
#define SWEEP_PAGE 100
#define SWEEP_MAX_PAGES 100
#define SEEN_MAX 10000      /* bound on the sweep's first-seen map */
#define EARLY_GAP_MS 1000   /* at most one early wake-up per second */
#define WAKE_SLACK_MS 50
#define VIS_CHUNK DD_TEMPORAL_RUNS_MAX /* run ids per visibility query (a ~4 KB query) */
#define VIS_AHEAD 4         /* visibility queries in flight at once */

static const char *const stages[] = {"list", "describe", "terminate", "delete", "lease",
                                     "malformed"};

/* One record (or, for the sweep, one running execution) to look at. All
 * strings owned by the cycle. */
typedef struct cand {
    char *wid, *run_id, *server_id, *project, *queue, *problem;
    char *first_run_id, *wf_type; /* workflow-mode records: the chain and the user's type */
    char *term_run;   /* the chain's current run, as described (workflow mode) */
    int64_t hb_ms;    /* record: as classified; sweep: when first seen without a record */
    int64_t start_ms; /* sweep: run start (wall ms) */
    bool malformed, sweep;
    /* what the cycle's visibility query said about exactly (wid, run_id):
     * VIS_NONE (not asked, not listed, or the query failed: describe it) */
    enum { VIS_NONE, VIS_LISTED } vis;
    dd_temporal_status vis_status;
    char *vis_type;
} cand;

typedef struct seen {
    char *key; /* "<wid>\n<run_id>", owned */
    int64_t first_ms;
    bool live; /* seen in the current sweep */
} seen;

/* One visibility query: the candidates [from, to) of the cycle's list.
 * Queries go out in candidate order and may answer in any order; the lanes
 * take a candidate only once every query up to its own has answered. */
typedef struct vis_q {
    struct cycle *cy;
    size_t from, to;
    dd_temporal_call *call; /* while in flight */
    bool done;
} vis_q;

typedef enum wait_kind { WAIT_NONE, WAIT_STORE, WAIT_TEMPORAL, WAIT_TOKEN, WAIT_LATER } wait_kind;
typedef enum phase { PH_RECORDS, PH_LIST, PH_SWEEP, PH_END } phase;

struct cycle;

/* One candidate being worked on. Free when c is NULL. */
typedef struct lane {
    struct cycle *cy;
    cand *c;          /* points into cy->c or cy->sw */
    size_t seq;       /* the candidate's place in its list: token order */
    char *lease;     /* its lease name while held, owned */
    char reason[256];
    wait_kind wait;
    dd_temporal_call *call; /* while wait == WAIT_TEMPORAL */
    bool gated;       /* before the token point: older than a lane waiting for a token? */
    bool want_token;  /* waiting for a token (wait == WAIT_TOKEN) */
} lane;

typedef struct cycle {
    dd_reconciler *r;
    dd_reconcile_stats st;
    uint64_t start_us;
    int64_t now_ms; /* Redis's clock when the records were listed: ages are measured from it */
    bool listed;    /* the stale query answered: active/stale are real */
    phase ph;
    cand *c; /* records, owned */
    size_t n, i;
    cand *sw; /* sweep executions, owned */
    size_t nsw, capsw, isw;
    bool sweep_failed;
    char *page_token; /* owned */
    int pages;
    lane *lanes;      /* owned, nlanes of them */
    size_t nlanes, busy;
    int hold;         /* > 0: settle() must not run (close is walking the lanes) */
    wait_kind wait;   /* cycle-level call (only while no lane is busy) */
    dd_temporal_call *call; /* while wait == WAIT_TEMPORAL */
    int64_t oldest_hb;      /* oldest non-stale heartbeat, -1 none */
    /* The visibility queries run ahead of the lanes, up to VIS_AHEAD at
     * once: the candidates before vis_upto have their answer (lanes take
     * only those); the queries in the ring cover [vis_upto, vis_next). */
    vis_q vq[VIS_AHEAD]; /* ring, oldest at vq_head, vq_len of them */
    size_t vq_head, vq_len;
    size_t vis_busy;      /* queries in flight */
    size_t vis_upto, vis_next;
    void (*done)(const dd_reconcile_stats *, void *);
    void *done_arg;
} cycle;

struct dd_reconciler {
    dd_ctx ctx;          /* copied; pointees borrowed */
    dd_store *s;         /* borrowed */
    dd_temporal *t;      /* borrowed */
    dd_reconciler_opts o; /* o.holder points at holder */
    char *holder;        /* owned */
    char *sweep_query;   /* owned */
    uv_timer_t tick;     /* next cycle (periodic or early wake) */
    uv_timer_t bucket;   /* waiting for a termination token */
    uv_timer_t later;    /* answers a cycle the store refused synchronously */
    int handles_open;
    dd_token_bucket tb;
    dd_rng rng;
    cycle *cy; /* in flight, or NULL */
    bool started, closing;
    uint64_t next_periodic_ms; /* monotonic deadline of the next full cycle */
    bool tick_periodic;        /* the armed tick is for that deadline (not an early wake) */
    uint64_t last_cycle_ms;    /* monotonic start of the last cycle */
    int64_t srv_now_ms;        /* Redis's clock at the last listing, 0 none */
    uint64_t srv_mono_ms;      /* ... and our monotonic clock then */
    int64_t last_sweep_ms;     /* monotonic, -1 never */
    seen *seen;                /* owned */
    size_t nseen, capseen;
    void (*close_done)(void *);
    void *close_arg;
    /* metric families (owned by ctx.metrics), NULL without metrics */
    dd_metric *m_active, *m_stale, *m_terms, *m_cleanups, *m_errors, *m_cycles, *m_duration;
};

/* ---- pure parts --------------------------------------------------------- */

static uint64_t dd_reconcile_fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int64_t dd_reconcile_stagger_ms(const char *holder, int64_t interval_ms, double u)
{
    if (interval_ms <= 0)
        return 0;
    int64_t spread = interval_ms / 10;
    int64_t base = spread > 0 ? (int64_t)(dd_reconcile_fnv1a(holder ? holder : "") % (uint64_t)spread) : 0;
    return base + (int64_t)(u * (double)(interval_ms / 50));
}

int64_t dd_reconcile_jitter_ms(int64_t interval_ms, double u)
{
    return (int64_t)((double)interval_ms * (0.9 + 0.2 * u));
}

int64_t dd_reconcile_next_wake_ms(int64_t now_wall_ms, int64_t oldest_hb_ms, int64_t threshold_ms,
                                  int64_t periodic_ms, int64_t min_gap_ms)
{
    int64_t d = periodic_ms;
    if (oldest_hb_ms >= 0) {
        /* stale means hb < now - threshold, i.e. from hb + threshold + 1 on */
        int64_t e = oldest_hb_ms + threshold_ms + 1 + WAKE_SLACK_MS - now_wall_ms;
        if (e < d)
            d = e;
    }
    if (d < min_gap_ms)
        d = min_gap_ms;
    return d < 0 ? 0 : d;
}

/* now - t > thr, for any t (t <= now: the difference fits in uint64_t). */
static bool dd_reconcile_older_than(int64_t now, int64_t t, int64_t thr)
{
    return t <= now && (uint64_t)now - (uint64_t)t > (uint64_t)thr;
}

bool dd_reconcile_sweep_due(int64_t now_ms, int64_t first_seen_ms, int64_t start_ms,
                            int64_t threshold_ms)
{
    return dd_reconcile_older_than(now_ms, first_seen_ms, threshold_ms) &&
           (start_ms == 0 || dd_reconcile_older_than(now_ms, start_ms, threshold_ms));
}

void dd_reconcile_reason(char *out, size_t outlen, const char *server_id, int64_t age_ms)
{
    char age[32];
    dd_duration_format(age_ms < 0 ? 0 : age_ms, age, sizeof(age));
    dd_msgf(out, outlen, "stale: no heartbeat from %s for %s", server_id ? server_id : "?", age);
}

/* ---- bookkeeping -------------------------------------------------------- */

static char *dd_reconcile_xdup(const char *s)
{
    return s ? dd_strdup(s) : NULL;
}

static int64_t dd_reconcile_wall_ms(const dd_reconciler *r)
{
    return r->o.clock_ms ? r->o.clock_ms(r->o.arg) : dd_wall_ms();
}

/* What the store judges ages by: Redis's clock (0), or the pinned clock a
 * test gave us. */
static int64_t dd_reconcile_store_now_arg(const dd_reconciler *r)
{
    return r->o.clock_ms ? r->o.clock_ms(r->o.arg) : 0;
}

/* Redis's clock now, estimated from the last listing and our monotonic
 * clock since (only its rate matters); our own clock before any listing. */
static int64_t dd_reconcile_srv_now(const dd_reconciler *r)
{
    if (r->o.clock_ms || r->srv_now_ms <= 0)
        return dd_reconcile_wall_ms(r);
    return r->srv_now_ms + (int64_t)(dd_mono_ms() - r->srv_mono_ms);
}

static void dd_reconcile_cand_free(cand *c)
{
    free(c->wid);
    free(c->run_id);
    free(c->server_id);
    free(c->project);
    free(c->queue);
    free(c->problem);
    free(c->first_run_id);
    free(c->wf_type);
    free(c->term_run);
    free(c->vis_type);
}

static void dd_reconcile_cycle_free(cycle *cy)
{
    for (size_t i = 0; i < cy->n; i++)
        dd_reconcile_cand_free(&cy->c[i]);
    for (size_t i = 0; i < cy->nsw; i++)
        dd_reconcile_cand_free(&cy->sw[i]);
    for (size_t i = 0; i < cy->nlanes; i++)
        free(cy->lanes[i].lease);
    free(cy->c);
    free(cy->sw);
    free(cy->page_token);
    free(cy->lanes);
    free(cy);
}

static void dd_reconcile_maybe_free(dd_reconciler *r)
{
    if (!r->closing || r->handles_open > 0 || r->cy)
        return;
    void (*done)(void *) = r->close_done;
    void *arg = r->close_arg;
    for (size_t i = 0; i < r->nseen; i++)
        free(r->seen[i].key);
    free(r->seen);
    free(r->holder);
    free(r->sweep_query);
    free(r);
    if (done)
        done(arg);
}

static void dd_reconcile_on_handle_closed(uv_handle_t *h)
{
    dd_reconciler *r = h->data;
    r->handles_open--;
    dd_reconcile_maybe_free(r);
}

/* c: the candidate the error is about, NULL for the cycle's own queries. */
static void dd_reconcile_count_error(cycle *cy, const cand *c, const char *stage, int rc, const char *msg)
{
    dd_reconciler *r = cy->r;
    cy->st.errors++;
    if (!cy->st.result)
        cy->st.result = rc ? rc : DD_EPROTO;
    if (r->m_errors)
        dd_metric_add(r->m_errors, DD_L1(stage), 1);
    dd_warn(r->ctx.log, "reconcile_error", "stage=%s workflow_id=%s run_id=%s error=%s holder=%s",
            stage, c ? c->wid : "", c && c->run_id ? c->run_id : "",
            msg && *msg ? msg : dd_strerror(rc), r->holder);
}

static void dd_reconcile_count_malformed(cycle *cy, cand *c, const char *problem, const char *action)
{
    dd_reconciler *r = cy->r;
    cy->st.malformed++;
    if (r->m_errors)
        dd_metric_add(r->m_errors, DD_L1("malformed"), 1);
    dd_warn(r->ctx.log, "reconcile_malformed",
            "workflow_id=%s run_id=%s owner=%s problem=%s action=%s holder=%s", c->wid,
            c->run_id ? c->run_id : "", c->server_id ? c->server_id : "", problem, action,
            r->holder);
}

static void dd_reconcile_schedule(dd_reconciler *r, int64_t oldest_hb);

/* Ends the cycle: metrics, the cycle log line, callbacks, the next timer.
 * May free r (when closing): callers return right after. */
static void dd_reconcile_finish(cycle *cy, int status)
{
    dd_reconciler *r = cy->r;
    dd_reconcile_stats st = cy->st;
    void (*done)(const dd_reconcile_stats *, void *) = cy->done;
    void *done_arg = cy->done_arg;
    int64_t oldest = cy->oldest_hb;
    bool cut = status == DD_ECANCELED;

    st.duration_ms = (double)(dd_mono_us() - cy->start_us) / 1000.0;
    if (status && !st.result)
        st.result = status;
    if (cut)
        st.result = DD_ECANCELED;
    if (!cut && r->ctx.metrics) {
        if (cy->listed) {
            dd_metric_set(r->m_active, NULL, (double)st.active);
            dd_metric_set(r->m_stale, NULL, (double)st.stale);
        }
        dd_metric_add(r->m_cycles, DD_L1(st.result ? "error" : "ok"), 1);
        dd_metric_observe(r->m_duration, NULL, st.duration_ms / 1000.0);
    }
    /* Quiet cycles (nothing stale, nothing failed) are frequent: debug. */
    bool quiet = !cut && !st.result && st.candidates == 0 && st.swept == 0 && st.malformed == 0;
    dd_logf(r->ctx.log, cut ? DD_LOG_INFO : st.result ? DD_LOG_WARN : quiet ? DD_LOG_DEBUG : DD_LOG_INFO,
            "reconcile_cycle",
            "result=%s error=%s active=%lld stale=%lld candidates=%d terminated=%d "
            "already_closed=%d cleaned=%d kept_refreshed=%d malformed=%d leased_elsewhere=%d "
            "swept=%d errors=%d visible=%d described=%d sweep=%s duration_ms=%.1f holder=%s",
            cut ? "canceled" : st.result ? "error" : "ok", st.result ? dd_strerror(st.result) : "",
            (long long)st.active, (long long)st.stale, st.candidates, st.terminated,
            st.already_closed, st.cleaned, st.kept_refreshed, st.malformed, st.leased_elsewhere,
            st.swept, st.errors, st.visible, st.described, st.sweep_ran ? "true" : "false",
            st.duration_ms, r->holder);

    r->cy = NULL; /* before the callbacks: they may start a cycle or close */
    dd_reconcile_cycle_free(cy);
    if (done)
        done(&st, done_arg);
    if (!cut && r->o.on_cycle)
        r->o.on_cycle(&st, r->o.arg);
    if (r->closing) {
        dd_reconcile_maybe_free(r);
        return;
    }
    if (r->started && !dd_ctx_cancelled(&r->ctx) && !r->cy)
        dd_reconcile_schedule(r, oldest);
}

/* ---- lanes --------------------------------------------------------------- */

static void dd_reconcile_settle(cycle *cy);

/* Puts candidate c (number seq in its list) into a free lane. */
static lane *dd_reconcile_lane_start(cycle *cy, cand *c, size_t seq)
{
    for (size_t k = 0; k < cy->nlanes; k++) {
        lane *l = &cy->lanes[k];
        if (l->c)
            continue;
        l->c = c;
        l->seq = seq;
        l->gated = true;
        l->want_token = false;
        l->wait = WAIT_NONE;
        l->call = NULL;
        cy->busy++;
        return l;
    }
    abort(); /* settle() starts lanes only while busy < nlanes */
}

/* The lane is done with its candidate (its lease released, given up, or
 * left to expire when closing). Never calls settle(). */
static void dd_reconcile_lane_end(lane *l)
{
    free(l->lease);
    l->lease = NULL;
    l->c = NULL;
    l->gated = l->want_token = false;
    l->wait = WAIT_NONE;
    l->call = NULL;
    l->cy->busy--;
}

/* Lane callbacks start with this: false when the lane must stop (closing);
 * the lane is then ended and the callback only calls settle(). */
static bool dd_reconcile_lane_resume(lane *l)
{
    l->wait = WAIT_NONE;
    l->call = NULL;
    if (l->cy->r->closing) {
        dd_reconcile_lane_end(l);
        return false;
    }
    return true;
}

/* Cycle-level callbacks (no lane busy) start with this: false when the
 * cycle was finished because we are closing. */
static bool dd_reconcile_resume(cycle *cy)
{
    cy->wait = WAIT_NONE;
    cy->call = NULL;
    if (cy->r->closing) {
        dd_reconcile_finish(cy, DD_ECANCELED);
        return false;
    }
    return true;
}

/* ---- per candidate ------------------------------------------------------ */

static void dd_reconcile_on_release(int st, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    if (dd_reconcile_lane_resume(l)) {
        if (st < 0 && st != DD_ENOTFOUND)
            dd_debug(cy->r->ctx.log, "reconcile_lease_release", "lease=%s error=%s", l->lease,
                     dd_strerror(st));
        dd_reconcile_lane_end(l);
    }
    dd_reconcile_settle(cy);
}

/* Done with l->c: give its lease back (so a retry next cycle need not
 * wait for the TTL), then end the lane. */
static void dd_reconcile_release(lane *l)
{
    l->gated = false;
    if (l->lease) {
        int rc = dd_store_lease_release(l->cy->r->s, l->lease, l->cy->r->holder, dd_reconcile_on_release, l);
        if (rc == 0) {
            l->wait = WAIT_STORE;
            return;
        }
    }
    dd_reconcile_lane_end(l);
}

static void dd_reconcile_on_cad(int st, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    dd_reconciler *r = cy->r;
    cand *c = l->c;
    if (!dd_reconcile_lane_resume(l)) {
        dd_reconcile_settle(cy);
        return;
    }
    if (st == 0) {
        cy->st.cleaned++;
        if (r->m_cleanups)
            dd_metric_add(r->m_cleanups, NULL, 1);
        dd_info(r->ctx.log, "stale_cleanup",
                "workflow_id=%s run_id=%s owner=%s hb_ms=%lld age_ms=%lld requester=%s",
                c->wid, c->run_id, c->server_id ? c->server_id : "", (long long)c->hb_ms,
                (long long)(cy->now_ms - c->hb_ms), r->holder);
    } else if (st == DD_ECONFLICT) {
        /* refreshed or re-claimed since we classified it: someone owns it */
        cy->st.kept_refreshed++;
        dd_info(r->ctx.log, "stale_kept",
                "workflow_id=%s run_id=%s hb_ms=%lld why=\"refreshed or re-claimed meanwhile\" "
                "requester=%s",
                c->wid, c->run_id, (long long)c->hb_ms, r->holder);
    } else if (st == DD_ENOTFOUND) {
        dd_debug(r->ctx.log, "stale_cleanup", "workflow_id=%s run_id=%s note=%s", c->wid,
                 c->run_id ? c->run_id : "", "already gone");
    } else {
        dd_reconcile_count_error(cy, c, "delete", st, NULL);
    }
    dd_reconcile_release(l);
    dd_reconcile_settle(cy);
}

static void dd_reconcile_cad(lane *l)
{
    cand *c = l->c;
    l->gated = false;
    int rc = dd_store_compare_and_delete(l->cy->r->s, c->wid, c->run_id ? c->run_id : "",
                                         c->hb_ms, dd_reconcile_on_cad, l);
    if (rc == 0) {
        l->wait = WAIT_STORE;
        return;
    }
    dd_reconcile_count_error(l->cy, c, "delete", rc, NULL);
    dd_reconcile_release(l);
}

static void dd_reconcile_on_terminate(int st, const dd_temporal_result *res, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    dd_reconciler *r = cy->r;
    cand *c = l->c;
    if (!dd_reconcile_lane_resume(l)) {
        dd_reconcile_settle(cy);
        return;
    }
    if (st == 0) {
        cy->st.terminated++;
        if (c->sweep)
            cy->st.swept++;
        if (r->m_terms)
            dd_metric_add(r->m_terms, NULL, 1);
        dd_info(r->ctx.log, "stale_terminate",
                "workflow_id=%s run_id=%s owner=%s age_ms=%lld reason=%s requester=%s "
                "source=%s",
                c->wid, c->run_id, c->server_id ? c->server_id : "",
                (long long)(cy->now_ms - c->hb_ms), l->reason, r->holder,
                c->sweep ? "sweep" : "record");
        if (c->sweep) {
            dd_reconcile_release(l);
        } else {
            /* may close us: the lane still sends its delete, as before */
            if (r->o.on_terminated)
                r->o.on_terminated(c->wid, c->run_id, r->o.arg);
            dd_reconcile_cad(l);
        }
    } else if (st == DD_ENOTFOUND) {
        /* closed between describe and terminate: nothing left to end */
        cy->st.already_closed++;
        if (c->sweep)
            dd_reconcile_release(l);
        else
            dd_reconcile_cad(l);
    } else {
        /* keep the record: it is how the next cycle finds this run again */
        dd_reconcile_count_error(cy, c, "terminate", st, res ? res->message : NULL);
        dd_reconcile_release(l);
    }
    dd_reconcile_settle(cy);
}

static void dd_reconcile_terminate(lane *l)
{
    dd_reconciler *r = l->cy->r;
    cand *c = l->c;
    int64_t age = l->cy->now_ms - c->hb_ms;
    if (c->sweep) {
        char a[32];
        dd_duration_format(age < 0 ? 0 : age, a, sizeof(a));
        dd_msgf(l->reason, sizeof(l->reason), "stale: no heartbeat record for %s", a);
    } else if (c->hb_ms == DD_STORE_HB_RELEASED) {
        /* hb_ms 0: a dead owner's last will made the record stale
         * (docs/ownership.md); an age since 1970 would mislead */
        dd_msgf(l->reason, sizeof(l->reason), "stale: released by the last will of %s",
                c->server_id ? c->server_id : "?");
    } else {
        dd_reconcile_reason(l->reason, sizeof(l->reason), c->server_id, age);
    }
    /* A workflow-mode record names a chain: end its current run, scoped to
     * the chain (the server refuses if the ID runs a newer chain by now). */
    int rc = c->first_run_id
                 ? dd_temporal_terminate_chain(r->t, c->wid, c->term_run, c->first_run_id,
                                               l->reason, dd_reconcile_on_terminate, l, &l->call)
                 : dd_temporal_terminate(r->t, c->wid, c->run_id, l->reason, dd_reconcile_on_terminate, l,
                                         &l->call);
    if (rc == 0) {
        /* the lane's last call, under the failover lease it holds: ahead of
         * the describes that begin other lanes and takeovers (temporal.h) */
        dd_temporal_prioritize(l->call);
        l->wait = WAIT_TEMPORAL;
        return;
    }
    dd_reconcile_count_error(l->cy, c, "terminate", rc, NULL);
    dd_reconcile_release(l);
}

/* The lane needs a termination token; settle() hands it out (pump_tokens). */
static void dd_reconcile_take_token(lane *l)
{
    l->want_token = true;
    l->wait = WAIT_TOKEN;
}

static void dd_reconcile_on_bucket(uv_timer_t *h)
{
    dd_reconciler *r = h->data;
    if (r->cy && !r->closing)
        dd_reconcile_settle(r->cy);
}

/* Terminations are rate limited per host, across all lanes: one token
 * bucket, waited for on a timer, never blocking the loop. Tokens go in
 * candidate order: to the oldest lane still before its token point, and
 * only if that lane is the one waiting (otherwise its describe decides
 * first). Returns whether a lane was given a token. */
static bool dd_reconcile_pump_tokens(cycle *cy)
{
    dd_reconciler *r = cy->r;
    bool progress = false;
    for (;;) {
        lane *h = NULL;
        for (size_t k = 0; k < cy->nlanes; k++) {
            lane *l = &cy->lanes[k];
            if (l->c && l->gated && (!h || l->seq < h->seq))
                h = l;
        }
        if (!h || !h->want_token)
            return progress;
        uint64_t now = dd_mono_us();
        if (!dd_token_bucket_take(&r->tb, now)) {
            uint64_t us = dd_token_bucket_wait_us(&r->tb, now);
            uv_timer_start(&r->bucket, dd_reconcile_on_bucket, (us + 999) / 1000, 0);
            return progress;
        }
        h->gated = h->want_token = false;
        h->wait = WAIT_NONE;
        dd_reconcile_terminate(h);
        progress = true;
    }
}

/* What to do with the run the record names, once Temporal said what it
 * is (a describe of exactly that run, or the visibility listing of exactly
 * that run id): its type, its chain, its status, and the run to end. */
static void dd_reconcile_decide(lane *l, const char *type, const char *first_run_id,
                   dd_temporal_status status, const char *run_id)
{
    cycle *cy = l->cy;
    dd_reconciler *r = cy->r;
    cand *c = l->c;
    /* The record names a workflow id; make sure the run there really is
     * one of ours before ending it: a wrong record must not kill a
     * stranger. Workflow-mode records name the user's type and a chain. */
    bool type_ok = type && (!strcmp(type, DD_DISPATCHER_WORKFLOW_TYPE) ||
                            (c->wf_type && !strcmp(type, c->wf_type)));
    bool other_chain =
        c->first_run_id && first_run_id && strcmp(first_run_id, c->first_run_id) != 0;
    if (!type_ok) {
        char why[300];
        dd_msgf(why, sizeof(why), "run has workflow type '%s', not a dispatcher%s%s",
                type ? type : "", c->wf_type ? " nor " : "", c->wf_type ? c->wf_type : "");
        dd_reconcile_count_malformed(cy, c, why, "kept");
        dd_reconcile_release(l);
    } else if (other_chain) {
        /* the chain the record names has ended; a newer one runs under
         * the ID (someone else's): never ours to end */
        cy->st.already_closed++;
        dd_info(r->ctx.log, "stale_closed",
                "workflow_id=%s run_id=%s first_run_id=%s status=%s requester=%s", c->wid,
                c->run_id, c->first_run_id, "another chain runs now", r->holder);
        dd_reconcile_cad(l);
    } else if (status == DD_WF_RUNNING) {
        free(c->term_run);
        c->term_run = dd_reconcile_xdup(run_id);
        dd_reconcile_take_token(l);
    } else {
        cy->st.already_closed++;
        dd_info(r->ctx.log, "stale_closed", "workflow_id=%s run_id=%s status=%s requester=%s",
                c->wid, c->run_id, dd_temporal_status_name(status), r->holder);
        dd_reconcile_cad(l);
    }
}

static void dd_reconcile_on_describe(int st, const dd_temporal_result *res, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    cand *c = l->c;
    if (!dd_reconcile_lane_resume(l)) {
        dd_reconcile_settle(cy);
        return;
    }
    /* "Not found" also answers a request for a namespace that does not
     * exist. Taking that for "run gone" would delete every stale record of a
     * misconfigured host while their runs keep running elsewhere, with
     * nothing left to find them by: a configuration error, record kept. */
    if (st == DD_ENOTFOUND && res && res->message && !strncmp(res->message, "namespace ", 10))
        st = DD_EINVAL;
    if (st == DD_ENOTFOUND) {
        cy->st.already_closed++;
        dd_reconcile_cad(l);
    } else if (st < 0 || !res->execution) {
        dd_reconcile_count_error(cy, c, "describe", st < 0 ? st : DD_EPROTO, res ? res->message : NULL);
        dd_reconcile_release(l);
    } else {
        const dd_temporal_execution *e = res->execution;
        dd_reconcile_decide(l, e->type, e->first_run_id, e->status, e->run_id);
    }
    dd_reconcile_settle(cy);
}

static void dd_reconcile_on_lease(int st, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    dd_reconciler *r = cy->r;
    cand *c = l->c;
    if (!dd_reconcile_lane_resume(l)) {
        dd_reconcile_settle(cy);
        return;
    }
    if (st == DD_EBUSY) {
        cy->st.leased_elsewhere++;
        dd_reconcile_lane_end(l);
    } else if (st < 0) {
        dd_reconcile_count_error(cy, c, "lease", st, NULL);
        dd_reconcile_lane_end(l);
    } else if (c->sweep) {
        dd_reconcile_take_token(l);
    } else if (c->vis == VIS_LISTED) {
        /* visibility listed exactly this run: a closed one is closed for
         * good, a running one is ended by its exact run id (a terminate
         * that finds it closed meanwhile changes nothing). reconcile.h */
        cy->st.visible++;
        dd_reconcile_decide(l, c->vis_type, NULL, c->vis_status, c->run_id);
    } else {
        /* not listed (gone, or not visible yet), not asked (a chain, whose
         * current run moves by itself), or the query failed: describe */
        cy->st.described++;
        int rc = dd_temporal_describe(r->t, c->wid, c->first_run_id ? NULL : c->run_id,
                                      dd_reconcile_on_describe, l, &l->call);
        if (rc == 0) {
            l->wait = WAIT_TEMPORAL;
        } else {
            dd_reconcile_count_error(cy, c, "describe", rc, NULL);
            dd_reconcile_release(l);
        }
    }
    dd_reconcile_settle(cy);
}

/* Leases "failover:<wid>" for l->c: the same lease a standby takes to fail
 * the dispatcher over (src/owner/heartbeat.c), so a reconciler and a standby
 * never both terminate one stale run (their requests meeting inside
 * Temporal showed two running executions for a couple of milliseconds).
 * Held elsewhere -> leased_elsewhere: a standby is replacing the run
 * termination-first, or another reconciler has it. 0: waiting for the
 * reply; else counted, and the caller ends the lane. */
static int dd_reconcile_lease(lane *l)
{
    dd_reconciler *r = l->cy->r;
    cand *c = l->c;
    l->lease = dd_strdupf(DD_STORE_LEASE_FAILOVER, c->wid); /* an ID: whole */
    int rc = dd_store_lease_acquire(r->s, l->lease, r->holder, r->o.lease_ttl_ms, dd_reconcile_on_lease, l);
    if (rc == 0) {
        l->wait = WAIT_STORE;
        return 0;
    }
    free(l->lease);
    l->lease = NULL;
    dd_reconcile_count_error(l->cy, c, "lease", rc, NULL);
    return rc;
}

/* ---- sweep -------------------------------------------------------------- */

static seen *dd_reconcile_seen_find(dd_reconciler *r, const char *key)
{
    for (size_t i = 0; i < r->nseen; i++)
        if (!strcmp(r->seen[i].key, key))
            return &r->seen[i];
    return NULL;
}

static void dd_reconcile_seen_drop(dd_reconciler *r, seen *e)
{
    free(e->key);
    *e = r->seen[--r->nseen];
}

static char *dd_reconcile_seen_key(const cand *c)
{
    size_t len = strlen(c->wid) + strlen(c->run_id) + 2;
    char *k = dd_xmalloc(len);
    snprintf(k, len, "%s\n%s", c->wid, c->run_id);
    return k;
}

/* Decides about one listed execution; ends the lane unless it leased. */
static void dd_reconcile_sweep_check(lane *l, int st, const dd_store_hb *rec)
{
    cycle *cy = l->cy;
    dd_reconciler *r = cy->r;
    cand *c = l->c;
    if (st < 0 && st != DD_ENOTFOUND) {
        dd_reconcile_count_error(cy, c, "list", st, NULL);
        dd_reconcile_lane_end(l);
        return;
    }
    char *key = dd_reconcile_seen_key(c);
    seen *e = dd_reconcile_seen_find(r, key);
    if (st == 0 && rec->run_id && !strcmp(rec->run_id, c->run_id)) {
        /* it has its record: the normal cycle owns its fate */
        if (e)
            dd_reconcile_seen_drop(r, e);
        free(key);
        dd_reconcile_lane_end(l);
        return;
    }
    if (!e) {
        if (r->nseen < SEEN_MAX) {
            if (r->nseen == r->capseen) {
                r->capseen = r->capseen ? 2 * r->capseen : 16;
                r->seen = dd_xrealloc(r->seen, r->capseen * sizeof(*r->seen));
            }
            r->seen[r->nseen++] = (seen){key, cy->now_ms, true};
            key = NULL;
            dd_info(r->ctx.log, "sweep_unrecorded", "workflow_id=%s run_id=%s holder=%s",
                    c->wid, c->run_id, r->holder);
        }
        free(key);
        dd_reconcile_lane_end(l);
        return;
    }
    free(key);
    e->live = true;
    if (dd_reconcile_sweep_due(cy->now_ms, e->first_ms, c->start_ms, r->o.stale_threshold_ms)) {
        c->hb_ms = e->first_ms; /* the age in the reason: how long without a record */
        if (dd_reconcile_lease(l) == 0)
            return;
    }
    dd_reconcile_lane_end(l);
}

static void dd_reconcile_on_sweep_get(int st, const dd_store_hb *rec, void *arg)
{
    lane *l = arg;
    cycle *cy = l->cy;
    if (dd_reconcile_lane_resume(l))
        dd_reconcile_sweep_check(l, st, rec);
    dd_reconcile_settle(cy);
}

static void dd_reconcile_sweep_end(cycle *cy)
{
    dd_reconciler *r = cy->r;
    /* forget what was not listed this time (closed or recorded), unless the
     * listing failed and we do not know */
    for (size_t i = 0; !cy->sweep_failed && i < r->nseen;) {
        if (!r->seen[i].live)
            dd_reconcile_seen_drop(r, &r->seen[i]);
        else
            i++;
    }
}

static void dd_reconcile_list_page(cycle *cy);

static void dd_reconcile_on_list_page(int st, const dd_temporal_result *res, void *arg)
{
    cycle *cy = arg;
    dd_reconciler *r = cy->r;
    if (!dd_reconcile_resume(cy))
        return;
    if (st < 0) {
        cy->sweep_failed = true;
        dd_reconcile_count_error(cy, NULL, "list", st, res ? res->message : NULL);
        cy->ph = PH_SWEEP;
        dd_reconcile_settle(cy);
        return;
    }
    for (size_t i = 0; i < res->nexecutions && cy->nsw < r->o.batch; i++) {
        const dd_temporal_execution *e = &res->executions[i];
        if (e->status != DD_WF_RUNNING || !e->type ||
            strcmp(e->type, DD_DISPATCHER_WORKFLOW_TYPE) || !e->workflow_id || !e->run_id)
            continue;
        if (cy->nsw == cy->capsw) {
            cy->capsw = cy->capsw ? 2 * cy->capsw : 16;
            cy->sw = dd_xrealloc(cy->sw, cy->capsw * sizeof(*cy->sw));
        }
        cand *c = &cy->sw[cy->nsw++];
        memset(c, 0, sizeof(*c));
        c->wid = dd_strdup(e->workflow_id);
        c->run_id = dd_strdup(e->run_id);
        c->server_id = dd_reconcile_xdup(e->server_id);
        c->start_ms = e->start_ns / 1000000;
        c->sweep = true;
    }
    free(cy->page_token);
    cy->page_token = dd_reconcile_xdup(res->next_page_token);
    if (cy->page_token && ++cy->pages < SWEEP_MAX_PAGES && cy->nsw < r->o.batch)
        dd_reconcile_list_page(cy);
    else
        cy->ph = PH_SWEEP;
    dd_reconcile_settle(cy);
}

/* Asks for the next page; a refusal ends the listing (counted). */
static void dd_reconcile_list_page(cycle *cy)
{
    int rc = dd_temporal_list(cy->r->t, cy->r->sweep_query, cy->page_token, SWEEP_PAGE,
                              dd_reconcile_on_list_page, cy, &cy->call);
    if (rc == 0) {
        cy->wait = WAIT_TEMPORAL;
        return;
    }
    cy->sweep_failed = true;
    dd_reconcile_count_error(cy, NULL, "list", rc, NULL);
    cy->ph = PH_SWEEP;
}

/* ---- the cycle ---------------------------------------------------------- */

static void dd_reconcile_on_oldest(int st, const char *wid, int64_t hb_ms, void *arg)
{
    cycle *cy = arg;
    if (!dd_reconcile_resume(cy))
        return;
    /* only an optimisation: without it the periodic timer still runs */
    cy->oldest_hb = st == 0 ? hb_ms : -1;
    if (st < 0 && st != DD_ENOTFOUND)
        dd_debug(cy->r->ctx.log, "reconcile_oldest", "error=%s", dd_strerror(st));
    dd_reconcile_finish(cy, 0);
}

/* After the records (and the sweep): learn when the next record can turn
 * stale, for the early wake-up, then finish. May free cy: callers return. */
static void dd_reconcile_end_cycle(cycle *cy)
{
    dd_reconciler *r = cy->r;
    cy->ph = PH_END;
    if (r->started) {
        int rc = dd_store_oldest(r->s, dd_reconcile_srv_now(r) - r->o.stale_threshold_ms, dd_reconcile_on_oldest, cy);
        if (rc == 0) {
            cy->wait = WAIT_STORE;
            return;
        }
    }
    dd_reconcile_finish(cy, 0);
}

/* After the records: starts the sweep's listing if one is due (true), else
 * false (the cycle ends). */
static bool dd_reconcile_start_sweep(cycle *cy)
{
    dd_reconciler *r = cy->r;
    int64_t now = (int64_t)dd_mono_ms();
    if (!r->o.sweep ||
        (r->last_sweep_ms >= 0 && now - r->last_sweep_ms < r->o.sweep_interval_ms))
        return false;
    r->last_sweep_ms = now;
    cy->st.sweep_ran = true;
    for (size_t i = 0; i < r->nseen; i++)
        r->seen[i].live = false;
    cy->ph = PH_LIST;
    dd_reconcile_list_page(cy);
    return true;
}

/* ---- visibility, in batches ---------------------------------------------
 *
 * One list query names up to VIS_CHUNK run ids (RunId IN (...)): what it
 * lists is decided without a describe (decide()); what it does not list, a
 * chain (its current run moves by itself), or a chunk whose query failed
 * is described as before. reconcile.h and docs/reconcile.md argue why that
 * is safe while visibility lags. */

/* A run id that can go into a query as is (Temporal's are UUIDs):
 * dd_temporal_run_id_plain, the check dd_temporal_list_runs makes. */
static bool dd_reconcile_vis_askable(const cand *c)
{
    return !c->malformed && !c->first_run_id && dd_temporal_run_id_plain(c->run_id);
}

static void dd_reconcile_vis_failed(cycle *cy, size_t from, size_t to, int rc, const char *msg)
{
    dd_warn(cy->r->ctx.log, "reconcile_visibility",
            "error=%s candidates=%zu action=describe holder=%s", msg && *msg ? msg : dd_strerror(rc),
            to - from, cy->r->holder);
}

/* Moves vis_upto over the answered queries at the front of the ring. */
static void dd_reconcile_vis_advance(cycle *cy)
{
    while (cy->vq_len && cy->vq[cy->vq_head].done) {
        cy->vis_upto = cy->vq[cy->vq_head].to;
        cy->vq_head = (cy->vq_head + 1) % VIS_AHEAD;
        cy->vq_len--;
    }
}

static void dd_reconcile_on_vis(int st, const dd_temporal_result *res, void *arg)
{
    vis_q *q = arg;
    cycle *cy = q->cy;
    q->call = NULL;
    q->done = true;
    cy->vis_busy--;
    if (cy->r->closing) {
        dd_reconcile_settle(cy);
        return;
    }
    if (st < 0) {
        dd_reconcile_vis_failed(cy, q->from, q->to, st, res ? res->message : NULL);
    } else {
        for (size_t k = 0; k < res->nexecutions; k++) {
            const dd_temporal_execution *e = &res->executions[k];
            if (!e->workflow_id || !e->run_id)
                continue;
            /* exactly the record's (wid, run_id): a run id listed under
             * another workflow id is not this record's run */
            for (size_t j = q->from; j < q->to; j++) {
                cand *c = &cy->c[j];
                if (!dd_reconcile_vis_askable(c) || strcmp(c->run_id, e->run_id) || strcmp(c->wid, e->workflow_id))
                    continue;
                c->vis = VIS_LISTED;
                c->vis_status = e->status;
                free(c->vis_type);
                c->vis_type = dd_reconcile_xdup(e->type);
            }
        }
    }
    dd_reconcile_vis_advance(cy);
    dd_reconcile_settle(cy);
}

/* Sends the next queries, up to VIS_AHEAD in flight. Candidates with
 * nothing to ask are passed over (a query that is done at once). */
static void dd_reconcile_vis_ask(cycle *cy)
{
    dd_reconciler *r = cy->r;
    while (cy->vq_len < VIS_AHEAD && cy->vis_next < cy->n) {
        const char *ids[VIS_CHUNK];
        size_t i = cy->vis_next, k = 0;
        for (; i < cy->n && k < VIS_CHUNK; i++)
            if (dd_reconcile_vis_askable(&cy->c[i]))
                ids[k++] = cy->c[i].run_id;
        vis_q *q = &cy->vq[(cy->vq_head + cy->vq_len) % VIS_AHEAD];
        *q = (vis_q){.cy = cy, .from = cy->vis_next, .to = i, .done = true};
        cy->vq_len++;
        cy->vis_next = i;
        if (k > 0) {
            /* busy before the call: an answer that came back inside it
             * (dd_reconcile_on_vis) must find the slot it settles */
            q->done = false;
            cy->vis_busy++;
            int rc = dd_temporal_list_runs(r->t, NULL, ids, k, dd_reconcile_on_vis, q, &q->call);
            if (rc < 0) {
                q->call = NULL;
                q->done = true;
                cy->vis_busy--;
                dd_reconcile_vis_failed(cy, q->from, q->to, rc, NULL);
            }
        }
    }
    dd_reconcile_vis_advance(cy);
}

/* Cancels every visibility query in flight (their callbacks settle). */
static void dd_reconcile_vis_cancel(cycle *cy)
{
    for (size_t k = 0; k < cy->vq_len; k++) {
        vis_q *q = &cy->vq[(cy->vq_head + k) % VIS_AHEAD];
        if (q->call)
            dd_temporal_cancel(q->call);
    }
}

/* Takes the next candidate of the current phase: into a lane, or dealt
 * with at once (malformed). false when there is none left, or when the
 * next one waits for its visibility answer. */
static bool dd_reconcile_start_next(cycle *cy)
{
    dd_reconciler *r = cy->r;
    if (cy->ph == PH_RECORDS) {
        if (cy->i >= cy->n)
            return false;
        if (cy->i >= cy->vis_upto) {
            dd_reconcile_vis_ask(cy);
            if (cy->i >= cy->vis_upto)
                return false; /* its answer is on the way */
        }
        size_t seq = cy->i;
        cand *c = &cy->c[cy->i++];
        if (c->malformed) {
            if (c->problem && !strncmp(c->problem, "record missing", 14)) {
                /* an index entry without its hash (a crash between two
                 * writes on Cluster): nothing to terminate by, and left
                 * alone it would count as stale forever. Removing the
                 * entry is what compare-and-delete does for a missing
                 * hash; logged, never silent. */
                dd_reconcile_count_malformed(cy, c, c->problem, "index_entry_removed");
                dd_reconcile_cad(dd_reconcile_lane_start(cy, c, seq));
                return true;
            }
            dd_reconcile_count_malformed(cy, c, c->problem ? c->problem : "malformed", "kept");
            return true;
        }
        if (!dd_dispatcher_id_matches(c->wid, c->project, c->queue)) {
            dd_reconcile_count_malformed(cy, c, "workflow_id does not match project/queue", "kept");
            return true;
        }
        lane *l = dd_reconcile_lane_start(cy, c, seq);
        if (dd_reconcile_lease(l) != 0)
            dd_reconcile_lane_end(l);
        return true;
    }
    if (cy->ph == PH_SWEEP) {
        if (cy->isw >= cy->nsw)
            return false;
        size_t seq = cy->isw;
        cand *c = &cy->sw[cy->isw++];
        lane *l = dd_reconcile_lane_start(cy, c, seq);
        int rc = dd_store_get(r->s, c->wid, dd_reconcile_on_sweep_get, l);
        if (rc == 0) {
            l->wait = WAIT_STORE;
            return true;
        }
        dd_reconcile_count_error(cy, c, "list", rc, NULL);
        dd_reconcile_lane_end(l);
        return true;
    }
    return false;
}

/* Moves the cycle on after anything happened: hands out tokens, fills free
 * lanes with the next candidates (the sweep: one at a time), and when
 * nothing is left in flight goes to the next phase or finishes. Called last
 * by every callback; may free cy. */
static void dd_reconcile_settle(cycle *cy)
{
    dd_reconciler *r = cy->r;
    if (cy->hold)
        return;
    for (;;) {
        if (r->closing) {
            /* no new work; the cycle ends when the last lane has stopped */
            if (!cy->busy && cy->wait == WAIT_NONE && !cy->vis_busy)
                dd_reconcile_finish(cy, DD_ECANCELED);
            return;
        }
        if (cy->wait != WAIT_NONE)
            return;
        bool progress = dd_reconcile_pump_tokens(cy);
        bool stopping = dd_ctx_cancelled(&r->ctx);
        size_t limit = cy->ph == PH_SWEEP ? 1 : cy->nlanes;
        if (!stopping && cy->ph == PH_RECORDS)
            dd_reconcile_vis_ask(cy); /* up to VIS_AHEAD queries ahead of the lanes */
        if (!stopping && cy->busy < limit && dd_reconcile_start_next(cy))
            continue;
        if (cy->busy) {
            if (progress)
                continue;
            return;
        }
        if (cy->vis_busy) {
            /* the next candidates wait for them; a stop need not */
            if (stopping)
                dd_reconcile_vis_cancel(cy);
            return;
        }
        if (stopping) {
            dd_reconcile_finish(cy, DD_ECANCELED);
            return;
        }
        if (cy->ph == PH_RECORDS) {
            if (dd_reconcile_start_sweep(cy))
                continue;
            dd_reconcile_end_cycle(cy);
            return;
        }
        if (cy->ph == PH_SWEEP) {
            dd_reconcile_sweep_end(cy);
            dd_reconcile_end_cycle(cy);
            return;
        }
        return; /* PH_LIST/PH_END wait on cy->wait */
    }
}

static void dd_reconcile_on_stale(int st, const dd_store_hb_list *l, void *arg)
{
    cycle *cy = arg;
    dd_reconciler *r = cy->r;
    if (!dd_reconcile_resume(cy))
        return;
    if (st < 0) {
        dd_reconcile_count_error(cy, NULL, "list", st, NULL);
        /* Redis is down: the sweep and the early wake-up would fail too */
        dd_reconcile_finish(cy, 0);
        return;
    }
    cy->listed = true;
    cy->now_ms = l->now_ms;
    r->srv_now_ms = l->now_ms;
    r->srv_mono_ms = dd_mono_ms();
    /* active = fresh ones (deploy/metrics.txt): active + stale = all records */
    cy->st.active = l->total - l->stale;
    cy->st.stale = l->stale;
    cy->c = l->n ? dd_xcalloc(l->n, sizeof(*cy->c)) : NULL;
    cy->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const dd_store_hb *h = &l->items[i];
        /* The index said stale, but the record is read after it: a new
         * owner may have claimed it in between (a failover). Judge by the
         * record itself, or we would terminate a run seconds old. */
        /* A record is stale only past the longer of our threshold and the
         * one its owner heartbeats against (ttl_ms): a reconciler configured
         * shorter than the fleet never terminates a healthy owner. */
        int64_t thr = r->o.stale_threshold_ms;
        if (!h->malformed && h->ttl_ms > thr)
            thr = h->ttl_ms;
        /* and counts from Redis's restart if that is later (store.h) */
        int64_t fresh = dd_store_hb_fresh_since(h);
        if (!h->malformed && fresh >= cy->now_ms - thr) {
            bool own_ttl = fresh < cy->now_ms - r->o.stale_threshold_ms;
            cy->st.kept_refreshed++;
            dd_logf(r->ctx.log, own_ttl ? DD_LOG_DEBUG : DD_LOG_INFO, "stale_skipped",
                    "workflow_id=%s run_id=%s owner=%s reason=%s age_ms=%lld ttl_ms=%lld "
                    "holder=%s",
                    h->workflow_id, h->run_id ? h->run_id : "",
                    h->server_id ? h->server_id : "",
                    own_ttl ? "younger than its owner's own threshold (ttl_ms)"
                            : "record refreshed after the index was read",
                    (long long)(cy->now_ms - h->hb_ms), (long long)h->ttl_ms, r->holder);
            continue;
        }
        cand *c = &cy->c[cy->n++];
        c->wid = dd_strdup(h->workflow_id);
        c->run_id = dd_reconcile_xdup(h->run_id);
        c->server_id = dd_reconcile_xdup(h->server_id);
        c->project = dd_reconcile_xdup(h->project);
        c->queue = dd_reconcile_xdup(h->queue);
        c->problem = dd_reconcile_xdup(h->problem);
        c->hb_ms = h->hb_ms;
        c->malformed = h->malformed;
        c->first_run_id = dd_reconcile_xdup(h->first_run_id);
        c->wf_type = dd_reconcile_xdup(h->wf_type);
    }
    cy->st.candidates = (int)cy->n;
    /* lanes: never more than there are candidates, at least one (the sweep) */
    cy->nlanes = r->o.max_inflight < cy->n ? r->o.max_inflight : cy->n;
    if (cy->nlanes == 0)
        cy->nlanes = 1;
    cy->lanes = dd_xcalloc(cy->nlanes, sizeof(*cy->lanes));
    for (size_t k = 0; k < cy->nlanes; k++)
        cy->lanes[k].cy = cy;
    dd_reconcile_settle(cy);
}

static void dd_reconcile_on_later(uv_timer_t *h)
{
    dd_reconciler *r = h->data;
    if (r->cy && r->cy->wait == WAIT_LATER && dd_reconcile_resume(r->cy))
        dd_reconcile_finish(r->cy, 0);
}

static int dd_reconcile_cycle_begin(dd_reconciler *r, void (*done)(const dd_reconcile_stats *, void *),
                       void *arg)
{
    if (r->closing || dd_ctx_cancelled(&r->ctx))
        return DD_ECANCELED;
    if (r->cy)
        return DD_EBUSY;
    cycle *cy = dd_xcalloc(1, sizeof(*cy));
    cy->r = r;
    cy->start_us = dd_mono_us();
    cy->now_ms = dd_reconcile_wall_ms(r);
    cy->oldest_hb = -1;
    cy->done = done;
    cy->done_arg = arg;
    r->cy = cy;
    r->last_cycle_ms = dd_mono_ms();
    int rc = dd_store_stale(r->s, dd_reconcile_store_now_arg(r), r->o.stale_threshold_ms, r->o.batch, dd_reconcile_on_stale,
                            cy);
    if (rc == 0) {
        cy->wait = WAIT_STORE;
        return 0;
    }
    /* not even queued (store closing, too busy): still one finished cycle,
     * answered from the loop, never from inside the caller */
    dd_reconcile_count_error(cy, NULL, "list", rc, NULL);
    cy->wait = WAIT_LATER;
    uv_timer_start(&r->later, dd_reconcile_on_later, 0, 0);
    return 0;
}

/* ---- scheduling --------------------------------------------------------- */

static void dd_reconcile_on_tick(uv_timer_t *h)
{
    dd_reconciler *r = h->data;
    if (r->closing || r->cy) /* a running cycle re-arms when it ends */
        return;
    uint64_t now = dd_mono_ms();
    /* Not just now >= deadline: libuv's loop clock may trail ours by a
     * millisecond, and a periodic tick taken for an early one would leave the
     * deadline in the past (next cycle one gap later instead of an interval). */
    if (r->tick_periodic || now >= r->next_periodic_ms)
        r->next_periodic_ms =
            now + (uint64_t)dd_reconcile_jitter_ms(r->o.interval_ms, dd_rng_unit(&r->rng));
    (void)dd_reconcile_cycle_begin(r, NULL, NULL);
}

static void dd_reconcile_schedule(dd_reconciler *r, int64_t oldest_hb)
{
    uint64_t now = dd_mono_ms();
    int64_t periodic = r->next_periodic_ms > now ? (int64_t)(r->next_periodic_ms - now) : 0;
    uint64_t gap_end = r->last_cycle_ms + EARLY_GAP_MS;
    int64_t gap = gap_end > now ? (int64_t)(gap_end - now) : 0;
    int64_t d = dd_reconcile_next_wake_ms(dd_reconcile_srv_now(r), oldest_hb, r->o.stale_threshold_ms,
                                          periodic, gap);
    if (oldest_hb < 0) {
        /* No healthy record to time the next look by: one claimed after
         * this cycle (a host that starts, then crashes) would wait for the
         * periodic cycle, up to an interval past its threshold. Look again
         * within a quarter threshold: a quiet cycle is three Redis reads. */
        int64_t watch = r->o.stale_threshold_ms / 4;
        if (watch < EARLY_GAP_MS)
            watch = EARLY_GAP_MS;
        if (watch < gap)
            watch = gap;
        if (d > watch)
            d = watch;
    }
    r->tick_periodic = d >= periodic;
    uv_timer_start(&r->tick, dd_reconcile_on_tick, (uint64_t)d, 0);
}

/* ---- public ------------------------------------------------------------- */

int dd_reconciler_new(const dd_ctx *ctx, dd_store *s, dd_temporal *t,
                      const dd_reconciler_opts *o, dd_reconciler **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!ctx || !s || !t || !o) {
        dd_msgf(err, errlen, "reconciler: context, store, Temporal client and options needed");
        return DD_EINVAL;
    }
    if (!o->holder || !*o->holder) {
        dd_msgf(err, errlen, "reconciler: a holder (the server id) is required");
        return DD_EINVAL;
    }
    if (o->stale_threshold_ms < 0 || o->interval_ms < 0 || !(o->terminate_rate >= 0) ||
        o->sweep_interval_ms < 0 || o->lease_ttl_ms < 0) {
        dd_msgf(err, errlen,
                "reconciler: threshold, interval, terminate rate, sweep interval and lease ttl "
                "must not be negative");
        return DD_EINVAL;
    }
    dd_reconciler *r = dd_xcalloc(1, sizeof(*r));
    r->ctx = *ctx;
    r->s = s;
    r->t = t;
    r->o = *o;
    r->holder = dd_strdup(o->holder);
    r->o.holder = r->holder;
    if (o->sweep_scope && *o->sweep_scope) {
        size_t len = sizeof(SWEEP_QUERY) + strlen(o->sweep_scope) + 8;
        r->sweep_query = dd_xmalloc(len);
        snprintf(r->sweep_query, len, "%s AND (%s)", SWEEP_QUERY, o->sweep_scope);
    } else {
        r->sweep_query = dd_strdup(SWEEP_QUERY);
    }
    r->o.sweep_scope = NULL;
    if (!r->o.stale_threshold_ms)
        r->o.stale_threshold_ms = 15000;
    if (!r->o.interval_ms)
        r->o.interval_ms = 60000;
    if (r->o.terminate_rate == 0)
        r->o.terminate_rate = 10;
    if (!r->o.batch)
        r->o.batch = 1000;
    if (!r->o.max_inflight)
        r->o.max_inflight = 16;
    if (!r->o.sweep_interval_ms)
        r->o.sweep_interval_ms = 5 * r->o.interval_ms;
    if (!r->o.lease_ttl_ms)
        r->o.lease_ttl_ms = 30000;
    r->last_sweep_ms = -1;
    dd_rng_seed(&r->rng, o->seed);
    dd_token_bucket_init(&r->tb, r->o.terminate_rate,
                         r->o.terminate_rate > 1 ? r->o.terminate_rate : 1, dd_mono_us());
    uv_timer_init(ctx->loop, &r->tick);
    uv_timer_init(ctx->loop, &r->bucket);
    uv_timer_init(ctx->loop, &r->later);
    r->tick.data = r->bucket.data = r->later.data = r;
    r->handles_open = 3;

    dd_metrics *m = ctx->metrics;
    if (m) {
        const char *const stage[] = {"stage", NULL}, *const result[] = {"result", NULL};
        dd_metric_set(dd_metrics_family(m, DD_GAUGE, DD_METRIC_STALE_THRESHOLD,
                                        DD_METRIC_STALE_THRESHOLD_HELP, NULL, NULL, 0),
                      NULL, (double)r->o.stale_threshold_ms / 1000.0);
        r->m_active = dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatchers_active",
                                        "Dispatchers with a fresh heartbeat in Redis, as seen "
                                        "by this process's reconciler (a fleet-wide count).",
                                        NULL, NULL, 0);
        r->m_stale = dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatchers_stale",
                                       "Dispatchers whose heartbeat is older than the stale "
                                       "threshold and not yet cleaned up (fleet-wide count).",
                                       NULL, NULL, 0);
        r->m_terms = dd_metrics_family(m, DD_COUNTER, "dispatchd_stale_terminations_total",
                                       "Stale dispatcher workflow runs terminated by the reconciler.",
                                       NULL, NULL, 0);
        r->m_cleanups = dd_metrics_family(m, DD_COUNTER, "dispatchd_stale_cleanups_total",
                                          "Stale heartbeat entries deleted by the reconciler after "
                                          "their run was terminated.",
                                          NULL, NULL, 0);
        r->m_errors = dd_metrics_family(m, DD_COUNTER, "dispatchd_cleanup_errors_total",
                                        "Errors while cleaning up a stale dispatcher, by stage "
                                        "(list, describe, terminate, delete, lease, malformed).",
                                        stage, NULL, 0);
        r->m_cycles = dd_metrics_family(m, DD_COUNTER, "dispatchd_reconcile_cycles_total",
                                        "Reconcile cycles by result (ok, error).", result, NULL,
                                        0);
        r->m_duration = dd_metrics_family(m, DD_HISTOGRAM, "dispatchd_reconcile_duration_seconds",
                                          "Duration of one reconcile cycle.", NULL, NULL, 0);
        /* exported at 0 from the start, so rate() and absent() behave */
        dd_metric_add(r->m_terms, NULL, 0);
        dd_metric_add(r->m_cleanups, NULL, 0);
        for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
            dd_metric_add(r->m_errors, DD_L1(stages[i]), 0);
        dd_metric_add(r->m_cycles, DD_L1("ok"), 0);
        dd_metric_add(r->m_cycles, DD_L1("error"), 0);
    }
    *out = r;
    return 0;
}

void dd_reconciler_start(dd_reconciler *r)
{
    if (r->closing || r->started)
        return;
    r->started = true;
    int64_t d = dd_reconcile_stagger_ms(r->holder, r->o.interval_ms, dd_rng_unit(&r->rng));
    r->next_periodic_ms = dd_mono_ms() + (uint64_t)d;
    dd_info(r->ctx.log, "reconcile_start",
            "holder=%s first_cycle_ms=%lld interval_ms=%lld threshold_ms=%lld rate=%.1f sweep=%s "
            "max_inflight=%zu",
            r->holder, (long long)d, (long long)r->o.interval_ms,
            (long long)r->o.stale_threshold_ms, r->o.terminate_rate,
            r->o.sweep ? "true" : "false", r->o.max_inflight);
    r->tick_periodic = true;
    if (!r->cy)
        uv_timer_start(&r->tick, dd_reconcile_on_tick, (uint64_t)d, 0);
}

int dd_reconciler_run_once(dd_reconciler *r, void (*done)(const dd_reconcile_stats *, void *),
                           void *arg)
{
    return dd_reconcile_cycle_begin(r, done, arg);
}

void dd_reconciler_close(dd_reconciler *r, void (*done)(void *), void *arg)
{
    if (r->closing)
        return;
    r->closing = true;
    r->close_done = done;
    r->close_arg = arg;
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->bucket);
    uv_timer_stop(&r->later);
    uv_close((uv_handle_t *)&r->tick, dd_reconcile_on_handle_closed);
    uv_close((uv_handle_t *)&r->bucket, dd_reconcile_on_handle_closed);
    uv_close((uv_handle_t *)&r->later, dd_reconcile_on_handle_closed);
    cycle *cy = r->cy;
    if (!cy)
        return;
    /* a cycle-level call (no lane busy then) */
    if (cy->wait == WAIT_TEMPORAL) {
        dd_temporal_cancel(cy->call); /* its callback finishes the cycle */
        return;
    }
    if (cy->wait == WAIT_LATER) {
        dd_reconcile_finish(cy, DD_ECANCELED);
        return;
    }
    if (cy->wait == WAIT_STORE)
        return; /* the reply (or the store's close) finishes it */
    /* the lanes: cancel every Temporal call (their callbacks end their lanes
     * at once), drop the token waits; a lane waiting for the store ends when
     * its reply comes; a lane in WAIT_NONE is the one whose callback we are
     * inside (close from on_terminated), which checks r->closing at its next
     * step. The hold keeps those callbacks from finishing (and freeing) the
     * cycle while we walk the lanes. */
    cy->hold++;
    dd_reconcile_vis_cancel(cy); /* their callbacks settle */
    for (size_t k = 0; k < cy->nlanes; k++) {
        lane *l = &cy->lanes[k];
        if (!l->c)
            continue;
        if (l->wait == WAIT_TEMPORAL)
            dd_temporal_cancel(l->call);
        else if (l->wait == WAIT_TOKEN)
            dd_reconcile_lane_end(l);
    }
    cy->hold--;
    dd_reconcile_settle(cy);
}
