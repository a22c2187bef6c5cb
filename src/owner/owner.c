/* owner.c - hold one dispatcher: take over, watch for loss, release.
 *
 *   state \ event   takeover ok     takeover err     close event (long-poll)   release
 *   TAKING_OVER     OWNING,         retry after      -                         cancel, STOPPED
 *                   start child     backoff                                    (a start in flight
 *                                                                              finishes; the run it
 *                                                                              started is ended)
 *   OWNING          -               -                LOST: stop child, count   stop child,
 *                                                    it, do not fight back     terminate own run
 *   LOST            -               -                -                         STOPPED
 *
 * A long-poll error (Temporal unreachable) does not mean we lost: Temporal
 * being down changes nobody's ownership. We keep acting and poll again with
 * backoff; if someone took over meanwhile, the poll answers with the close
 * event as soon as Temporal is back. But our run answering "not found"
 * while our record is still ours and fresh (the acting deadline has not
 * passed) means Temporal lost it (a wiped dev server, a restore from an
 * older state): we start our run again at once, termination-first, one
 * attempt, instead of leaving a threshold-long gap.
 *
 * Acting deadlines (fence.h): the child acts only until the deadline set by
 * the last heartbeat that landed; it starts or restarts only once a
 * heartbeat sent after that decision has landed; our fence timer stops it
 * (TERM at deadline - lead, KILL at the deadline) exactly like its guard
 * would if we were frozen. */
#include "owner/owner.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "child/child.h"
#include "temporal/temporal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char *const dd_owner_state_names[] = {"idle", "taking_over", "owning",
                                                   "lost", "releasing",   "stopped"};

struct dd_owner {
    dd_ctx ctx;
    dd_temporal *t;
    dd_owner_opts opts;
    char *project, *queue, *server_id, *name;
    /* what runs under the ID (owner.h, dd_owner_workflow), strings owned */
    dd_owner_workflow wf;
    char *wf_type, *wf_queue, *wf_input, *marker_queue, *id_prefix;
    bool workflow_mode;
    char first_run_id[DD_RUN_ID_LEN]; /* the chain we own (workflow mode) */
    char **child_argv;
    char wid[DD_DISPATCHER_ID_BUFLEN];
    char run_id[DD_RUN_ID_LEN];
    char prev_run_id[DD_RUN_ID_LEN];
    char own_prev_run_id[DD_RUN_ID_LEN]; /* the run this process owned before, or "" */
    char lost_run_id[DD_RUN_ID_LEN]; /* run we lost; acked once the child stopped */
    bool gate_open;
    dd_owner_state state;
    dd_takeover *takeover;  /* in flight */
    dd_temporal_call *poll; /* close-event long-poll (or, batch mode, one fetch) in flight */
    /* The loss watch's mode (owner.h, dd_owner_set_long_poll; watch.h):
     * long_poll false, our run is watched by the host (visibility checks,
     * takeover notices, the fenced heartbeat), and poll is at most a fetch
     * of a close event the host was told of (poll_once). poll_dropped: the
     * poll in flight was cancelled by a switch of mode, not by a loss. */
    bool long_poll;
    bool poll_once;
    bool poll_dropped;
    dd_temporal_call *term; /* release terminate in flight */
    dd_temporal_call *check; /* "is our run really gone?" describe in flight */
    dd_temporal_call *pickup; /* "did a worker pick up our first task?" describe */
    uv_timer_t pickup_timer;  /* workflow mode: when to ask that */
    bool pickup_warned;       /* said so for this run */
    uv_timer_t retry;       /* takeover / poll retry */
    uv_timer_t child_retry; /* restart of a child that exited by itself */
    uv_timer_t fence_timer; /* TERM point of the acting deadline */
    bool fenced;            /* opts.fence given: deadlines in force */
    dd_fence_plan fence;
    int64_t landed_us;      /* send time of the last landed heartbeat (boot us) */
    int64_t decided_us;     /* last start/stop decision: a start needs a later landing */
    int64_t deadline_ms;    /* acting deadline (boot ms), 0 none */
    bool fence_stopped;     /* our fence timer stopped the child */
    bool stop_requested;    /* we stopped the child while owning: no restart backoff */
    int closing;            /* timer closes pending */
    /* dd_owner_close: retry stays open until then, so that done always
     * comes from its close callback (after the release's own closes) */
    bool close_requested;
    void (*close_done)(void *);
    void *close_arg;
    dd_backoff backoff;
    dd_backoff exit_backoff; /* between restarts of chains that end on their own */
    dd_backoff poll_backoff; /* loss-watch retries: short, so a Temporal that comes
                              * back (or lost our run) is seen within a second */
    dd_backoff child_backoff;
    dd_child *child;
    uint64_t owned_since_us;
    bool child_closed;
    bool stop_reported;
    bool in_release; /* dd_owner_release is still issuing its steps */
    bool release_terminate; /* terminate our run once the child has exited */
    bool ack_after_term;    /* ...and only then let the record go (on_stopped_acting) */
    bool one_shot;          /* failover takeover: on error go back to LOST, no retry */
    uint64_t start_by_ms;   /* set only while dd_owner_retake_by starts its takeover */
    dd_metric *m_owner, *m_lost, *m_exits, *m_chain, *m_unpicked, *m_unpicked_total;
    /* a child that keeps failing (owner.h, child_max_restarts) */
    uint64_t child_started_us; /* monotonic, of the running or last child */
    bool child_failed;        /* it exited on its own; cleared once one outlives "quick" */
    int quick_exits;          /* quick exits in a row */
    int giveups;              /* releases for a failing child in a row */
    bool giving_up;           /* this release ends in LOST (stand by), not STOPPED */
    uint64_t compete_after_ms; /* monotonic: no takeover before this (0: none) */
    dd_metric *m_child_up, *m_child_restarts, *m_child_releases;
};

static void dd_owner_takeover(dd_owner *o);
static void dd_owner_maybe_start_child(dd_owner *o);
static bool dd_owner_chain_step(dd_owner *o, const dd_temporal_event *ev);
static bool dd_owner_chain_exit(dd_owner *o, const dd_temporal_event *ev);
static void dd_owner_check_done(int st, const dd_temporal_result *r, void *arg);
static void dd_owner_release_terminate(dd_owner *o);
static void dd_owner_poll(dd_owner *o);
static void dd_owner_maybe_stopped(dd_owner *o);
static void dd_owner_free(dd_owner *o);

static void dd_owner_set_state(dd_owner *o, dd_owner_state s)
{
    if (o->state == s)
        return;
    dd_debug(o->ctx.log, "owner_state", "dispatcher=%s from=%s to=%s", o->name,
             dd_owner_state_names[o->state], dd_owner_state_names[s]);
    bool was_owning = o->state == DD_OWNER_OWNING;
    o->state = s;
    dd_metric_set(o->m_owner, DD_L1(o->name), s == DD_OWNER_OWNING ? 1 : 0);
    if (was_owning != (s == DD_OWNER_OWNING) && o->opts.on_change)
        o->opts.on_change(o, s == DD_OWNER_OWNING, o->run_id, o->opts.arg);
}

static void dd_owner_start_child(dd_owner *o)
{
    /* heap strings: a server id of any length reaches the child whole */
    char *e1 = dd_strdupf("DISPATCHD_WORKFLOW_ID=%s", o->wid);
    char *e2 = dd_strdupf("DISPATCHD_RUN_ID=%s", o->run_id);
    char *e3 = dd_strdupf("DISPATCHD_SERVER_ID=%s", o->server_id);
    const char *env[] = {e1, e2, e3, NULL};
    char err[512];
    if (o->opts.will) { /* what the guard releases if we die (child/will.h) */
        dd_buf w = DD_BUF_INIT;
        o->opts.will(o, &w, o->opts.arg);
        dd_child_set_will(o->child, w.data, w.len);
        if (w.data)
            explicit_bzero(w.data, w.len);
        dd_buf_release(&w);
    }
    if (dd_child_start(o->child, o->child_argv, env, err, sizeof(err)) < 0) {
        dd_error(o->ctx.log, "child_start_failed", "dispatcher=%s error=%s", o->name, err);
    } else {
        o->child_started_us = dd_mono_us();
        dd_metric_set(o->m_child_up, DD_L1(o->name), 1);
    }
    free(e1);
    free(e2);
    free(e3);
}

/* Starts the child if everything allows it: owning, the gate open, no
 * restart backoff pending, and (with deadlines) a heartbeat sent after the
 * last decision has landed and the deadline is not about to stop it. When
 * only the fresh heartbeat is missing, ask for one now. */
static void dd_owner_maybe_start_child(dd_owner *o)
{
    if (!o->child_argv || o->state != DD_OWNER_OWNING || !o->gate_open || !o->child ||
        dd_child_running(o->child) || uv_is_active((uv_handle_t *)&o->child_retry))
        return;
    if (o->fenced && (o->landed_us <= o->decided_us ||
                      dd_boot_ms() >= o->deadline_ms - o->fence.term_lead_ms)) {
        if (o->opts.want_heartbeat)
            o->opts.want_heartbeat(o, o->opts.arg);
        return;
    }
    if (o->fence_stopped) {
        o->fence_stopped = false;
        dd_info(o->ctx.log, "acting_resumed", "dispatcher=%s run_id=%s reason=%s wall_us=%lld",
                o->name, o->run_id, "a heartbeat landed again", (long long)dd_wall_us());
    }
    dd_owner_start_child(o);
}

static void dd_owner_child_retry(uv_timer_t *t)
{
    dd_owner *o = t->data;
    dd_owner_maybe_start_child(o);
}

/* Our child stops when the acting deadline comes without a later heartbeat
 * having landed, before anyone may call us stale (fence.h). */
static void dd_owner_fence_fire(uv_timer_t *t)
{
    dd_owner *o = t->data;
    int64_t now = dd_boot_ms();
    if (now < o->deadline_ms - o->fence.term_lead_ms) { /* moved meanwhile */
        uv_timer_start(&o->fence_timer, dd_owner_fence_fire,
                       (uint64_t)(o->deadline_ms - o->fence.term_lead_ms - now), 0);
        return;
    }
    o->decided_us = dd_boot_us();
    if (!o->child || !dd_child_running(o->child))
        return;
    if (o->state == DD_OWNER_OWNING) {
        o->fence_stopped = true;
        o->stop_requested = true;
        dd_warn(o->ctx.log, "acting_suspended",
                "dispatcher=%s run_id=%s reason=\"no heartbeat landed for %lld ms\" "
                "kill_in_ms=%lld wall_us=%lld",
                o->name, o->run_id, (long long)(o->decided_us - o->landed_us) / 1000,
                (long long)(o->deadline_ms - now), (long long)dd_wall_us());
    }
    /* while releasing or after a loss it is stopping already: this pulls
     * its KILL in to the deadline */
    dd_child_stop(o->child, o->opts.child_grace_ms);
}

void dd_owner_heartbeat_landed(dd_owner *o, int64_t sent_boot_us)
{
    if (!o->fenced || sent_boot_us <= o->landed_us)
        return;
    o->landed_us = sent_boot_us;
    int64_t d = sent_boot_us / 1000 + o->fence.window_ms;
    if (d > o->deadline_ms) {
        o->deadline_ms = d;
        if (o->child)
            dd_child_set_deadline(o->child, d);
        int64_t term_in = d - o->fence.term_lead_ms - dd_boot_ms();
        uv_timer_start(&o->fence_timer, dd_owner_fence_fire, (uint64_t)(term_in > 0 ? term_in : 0),
                       0);
    }
    dd_owner_maybe_start_child(o);
}

int64_t dd_owner_deadline(const dd_owner *o)
{
    return o->deadline_ms;
}

/* After a loss: once nothing of ours acts any more, say so (handoff). */
static void dd_owner_maybe_stopped_acting(dd_owner *o)
{
    if (!o->lost_run_id[0] || (o->child && dd_child_running(o->child)))
        return;
    char run[DD_RUN_ID_LEN];
    snprintf(run, sizeof(run), "%s", o->lost_run_id);
    o->lost_run_id[0] = '\0';
    dd_info(o->ctx.log, "stopped_acting", "dispatcher=%s run_id=%s wall_us=%lld", o->name, run,
            (long long)dd_wall_us());
    if (o->opts.on_stopped_acting)
        o->opts.on_stopped_acting(o, run, o->opts.arg);
}

/* The child exited on its own while we own: count it, and after too many
 * quick exits in a row let the dispatcher go so that another host (whose
 * command may work) can take it. True when we let go. */
static bool dd_owner_child_failing(dd_owner *o, int64_t status, int sig)
{
    uint64_t ran_ms = (dd_mono_us() - o->child_started_us) / 1000;
    o->child_failed = true;
    if (ran_ms >= DD_CHILD_QUICK_MS) {
        /* it ran for a while: a crash, not a command that cannot start */
        o->quick_exits = 0;
        o->giveups = 0;
        dd_backoff_reset(&o->child_backoff);
        return false;
    }
    o->quick_exits++;
    int max = o->opts.child_max_restarts;
    if (max <= 0 || o->quick_exits <= max)
        return false;
    int64_t wait = DD_CHILD_GIVEUP_BASE_MS;
    for (int i = 0; i < o->giveups && wait < DD_CHILD_GIVEUP_CAP_MS; i++)
        wait *= 2;
    if (wait > DD_CHILD_GIVEUP_CAP_MS)
        wait = DD_CHILD_GIVEUP_CAP_MS;
    o->giveups++;
    o->compete_after_ms = dd_mono_ms() + (uint64_t)wait;
    dd_error(o->ctx.log, "child_failing_released",
             "dispatcher=%s run_id=%s quick_exits=%d quick_ms=%d last_exit_status=%lld "
             "last_signal=%d compete_again_in_ms=%lld note=%s",
             o->name, o->run_id, o->quick_exits, DD_CHILD_QUICK_MS, (long long)status, sig,
             (long long)wait, "the child command keeps exiting at once: releasing so that "
             "another host can run it");
    dd_metric_add(o->m_child_releases, DD_L1(o->name), 1);
    o->quick_exits = 0;
    dd_backoff_reset(&o->child_backoff);
    o->giving_up = true;
    dd_owner_release(o);
    return true;
}

static void dd_owner_child_exit(dd_child *c, int64_t status, int sig, void *arg)
{
    dd_owner *o = arg;
    bool requested = o->stop_requested;
    o->stop_requested = false;
    o->decided_us = dd_boot_us(); /* a new child needs a heartbeat from now on */
    dd_metric_set(o->m_child_up, DD_L1(o->name), 0);
    if (o->state != DD_OWNER_OWNING) {
        dd_owner_maybe_stopped_acting(o);
        dd_owner_release_terminate(o);
        dd_owner_maybe_stopped(o);
        return;
    }
    if (requested) { /* we stopped it (deadline, run started again): no backoff */
        dd_owner_maybe_start_child(o);
        return;
    }
    /* The work ended on its own while we still own: run it again, with
     * backoff so a crashing command does not spin, and only after a
     * heartbeat sent after this exit has landed; unless it keeps failing
     * at once (dd_owner_child_failing). */
    if (dd_owner_child_failing(o, status, sig))
        return;
    int64_t delay = dd_backoff_next(&o->child_backoff);
    dd_metric_add(o->m_child_restarts, DD_L1(o->name), 1);
    dd_warn(o->ctx.log, "child_restart_scheduled",
            "dispatcher=%s delay_ms=%lld quick_exits=%d max_restarts=%d", o->name,
            (long long)delay, o->quick_exits, o->opts.child_max_restarts);
    uv_timer_start(&o->child_retry, dd_owner_child_retry, (uint64_t)delay, 0);
}

int dd_owner_new(const dd_ctx *ctx, dd_temporal *t, const dd_owner_opts *opts, dd_owner **out,
                 char *err, size_t errlen)
{
    char wid[DD_DISPATCHER_ID_BUFLEN];
    *out = NULL;
    int rc = dd_dispatcher_id_with(opts->wf ? opts->wf->id_prefix : NULL, opts->project,
                                   opts->queue, wid, sizeof(wid), err, errlen);
    if (rc < 0)
        return rc;
    dd_owner *o = dd_xcalloc(1, sizeof(*o));
    o->ctx = *ctx;
    o->t = t;
    o->opts = *opts;
    if (o->opts.child_grace_ms <= 0)
        o->opts.child_grace_ms = 10000;
    if (o->opts.retry_base_ms <= 0)
        o->opts.retry_base_ms = 500;
    if (o->opts.retry_cap_ms <= 0)
        o->opts.retry_cap_ms = 30000;
    o->project = dd_strdup(opts->project);
    o->queue = dd_strdup(opts->queue);
    if (opts->wf) {
        o->wf = *opts->wf;
        o->workflow_mode = opts->wf->type && *opts->wf->type;
        o->wf_type = opts->wf->type ? dd_strdup(opts->wf->type) : NULL;
        o->wf_queue = opts->wf->task_queue ? dd_strdup(opts->wf->task_queue) : NULL;
        o->wf_input = opts->wf->input_json ? dd_strdup(opts->wf->input_json) : NULL;
        o->marker_queue =
            opts->wf->marker_task_queue ? dd_strdup(opts->wf->marker_task_queue) : NULL;
        o->wf.type = o->wf_type;
        o->wf.task_queue = o->wf_queue;
        o->wf.input_json = o->wf_input;
        o->wf.marker_task_queue = o->marker_queue;
        o->id_prefix = opts->wf->id_prefix ? dd_strdup(opts->wf->id_prefix) : NULL;
        o->wf.id_prefix = o->id_prefix;
    }
    o->opts.wf = NULL; /* copied above */
    o->server_id = dd_strdup(opts->server_id);
    dd_buf nb = DD_BUF_INIT;
    dd_buf_printf(&nb, "%s/%s", opts->project, opts->queue);
    o->name = dd_buf_detach(&nb);
    snprintf(o->wid, sizeof(o->wid), "%s", wid);
    if (opts->child_argv) {
        int n = 0;
        while (opts->child_argv[n])
            n++;
        o->child_argv = dd_xcalloc((size_t)n + 1, sizeof(char *));
        for (int i = 0; i < n; i++)
            o->child_argv[i] = dd_strdup(opts->child_argv[i]);
    }
    rc = dd_child_new(ctx->loop, ctx->log, o->name, dd_owner_child_exit, o, &o->child, err,
                      errlen);
    if (rc < 0) { /* nothing of the loop's is ours yet */
        dd_owner_free(o);
        return rc;
    }
    o->long_poll = !opts->no_long_poll;
    o->fenced = opts->fence != NULL;
    if (o->fenced)
        o->fence = *opts->fence;
    o->opts.fence = NULL; /* copied above */
    if (opts->guard_exe || o->fenced)
        dd_child_set_guard(o->child, opts->guard_exe, o->opts.child_grace_ms, o->fenced,
                           o->fence.term_lead_ms);
    dd_child_set_will_proc(o->child, opts->will_proc);
    uv_timer_init(ctx->loop, &o->retry);
    uv_timer_init(ctx->loop, &o->child_retry);
    uv_timer_init(ctx->loop, &o->fence_timer);
    uv_timer_init(ctx->loop, &o->pickup_timer);
    o->retry.data = o->child_retry.data = o->fence_timer.data = o->pickup_timer.data = o;
    dd_backoff_init(&o->backoff, o->opts.retry_base_ms, o->opts.retry_cap_ms, 0);
    dd_backoff_init(&o->poll_backoff, 100, 1000, 0);
    dd_backoff_init(&o->exit_backoff, 500, 30000, 0);
    dd_backoff_init(&o->child_backoff, 500, 30000, 0);
    if (ctx->metrics) {
        dd_takeover_metrics_init(ctx->metrics);
        const char *const lbl[] = {"dispatcher", NULL};
        o->m_owner = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_dispatcher_owner",
                                       "1 while this process owns the dispatcher; 0 while it is configured here "
                                       "but owned elsewhere or by nobody.", lbl,
                                       NULL, 0);
        o->m_lost = dd_metrics_family(ctx->metrics, DD_COUNTER, "dispatchd_ownership_lost_total",
                                      "Times this process lost ownership of a dispatcher "
                                      "(terminated, fenced, or taken over).",
                                      NULL, NULL, 0);
        dd_metric_set(o->m_owner, DD_L1(o->name), 0);
        dd_metric_add(o->m_lost, NULL, 0);
        const char *const el[] = {"action", NULL};
        o->m_exits = dd_metrics_family(ctx->metrics, DD_COUNTER, "dispatchd_workflow_exits_total",
                                       "Workflow mode: chains of a dispatcher this process "
                                       "owned that ended on their own (completed, failed, timed "
                                       "out, terminated by someone else), by what was done "
                                       "(restart, release).",
                                       el, NULL, 0);
        dd_metric_add(o->m_exits, DD_L1("restart"), 0);
        dd_metric_add(o->m_exits, DD_L1("release"), 0);
        o->m_chain = dd_metrics_family(ctx->metrics, DD_COUNTER,
                                       "dispatchd_continued_as_new_total",
                                       "Workflow mode: continue-as-new steps of owned chains "
                                       "followed without any change of ownership.",
                                       NULL, NULL, 0);
        dd_metric_add(o->m_chain, NULL, 0);
        o->m_unpicked = dd_metrics_family(
            ctx->metrics, DD_GAUGE, "dispatchd_workflow_task_unpicked",
            "Workflow mode: 1 while the run this process started has had no workflow task "
            "completed: none picked up (no worker polls its task queue) or every attempt failed "
            "(its type not registered?), else 0.",
            lbl, NULL, 0);
        o->m_unpicked_total = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_workflow_task_unpicked_total",
            "Workflow mode: runs this process started that had no workflow task completed half a "
            "stale threshold after their start.",
            NULL, NULL, 0);
        dd_metric_set(o->m_unpicked, DD_L1(o->name), 0);
        dd_metric_add(o->m_unpicked_total, NULL, 0);
        o->m_child_up = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_child_up",
                                          "1 while the dispatcher's child command runs here, "
                                          "else 0.",
                                          lbl, NULL, 0);
        o->m_child_restarts = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_child_restarts_total",
            "Restarts of a dispatcher's child command after it exited on its own.", lbl, NULL,
            0);
        o->m_child_releases = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_child_releases_total",
            "Dispatchers this process released because their child command kept exiting "
            "quickly (--child-max-restarts).",
            lbl, NULL, 0);
        if (o->child_argv) {
            dd_metric_set(o->m_child_up, DD_L1(o->name), 0);
            dd_metric_add(o->m_child_restarts, DD_L1(o->name), 0);
            dd_metric_add(o->m_child_releases, DD_L1(o->name), 0);
        } else { /* no child here: no series */
            o->m_child_up = o->m_child_restarts = o->m_child_releases = NULL;
        }
    }
    *out = o;
    return 0;
}

/* ---- workflow mode: did a worker pick up our run's first task? ----------
 * Temporal accepts a start of any type on any queue; if no worker polls that
 * queue for that type, the run just sits there and the user's dispatcher
 * never runs. Half a stale threshold after each start we describe the run:
 * a workflow task still SCHEDULED (no worker took it) since then is said
 * (a warning, the gauge at 1) and asked again every half threshold until a
 * worker takes it. One describe per start, not a poll while all is well. */
static int64_t dd_owner_pickup_ms(const dd_owner *o)
{
    return o->fenced && o->fence.threshold_ms > 0 ? o->fence.threshold_ms / 2 : 5000;
}

static void dd_owner_pickup_done(int st, const dd_temporal_result *r, void *arg);

static void dd_owner_pickup_fire(uv_timer_t *t)
{
    dd_owner *o = t->data;
    if (o->state != DD_OWNER_OWNING || !o->workflow_mode || o->pickup)
        return;
    if (dd_temporal_describe(o->t, o->wid, o->run_id, dd_owner_pickup_done, o, &o->pickup) < 0) {
        o->pickup = NULL;
        uv_timer_start(&o->pickup_timer, dd_owner_pickup_fire, (uint64_t)dd_owner_pickup_ms(o), 0);
    }
}

static void dd_owner_pickup_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_owner *o = arg;
    o->pickup = NULL;
    if (o->state != DD_OWNER_OWNING) {
        dd_owner_maybe_stopped(o);
        return;
    }
    const dd_temporal_execution *e = st == 0 ? r->execution : NULL;
    if (!e || strcmp(e->run_id, o->run_id) != 0) {
        /* not answered, or the chain moved on meanwhile: ask again later */
        uv_timer_start(&o->pickup_timer, dd_owner_pickup_fire, (uint64_t)dd_owner_pickup_ms(o), 0);
        return;
    }
    int64_t half = dd_owner_pickup_ms(o);
    int64_t waited_ms = e->wft_scheduled && e->wft_scheduled_ns > 0
                            ? (dd_wall_us() * 1000 - e->wft_scheduled_ns) / 1000000
                            : 0;
    if (waited_ms < 0)
        waited_ms = 0;
    /* Never run: the history is still WorkflowExecutionStarted +
     * WorkflowTaskScheduled and the task waits (no worker polls the queue),
     * or the pending task is a retry after failed attempts (a worker polls
     * the queue but fails it: typically the type is not registered there;
     * the Go SDK then holds the retry as STARTED). Judged by the
     * history and the attempt count, not by comparing our clock with
     * Temporal's (waited_ms is only said). */
    bool never_picked = e->wft_scheduled && e->history_length > 0 && e->history_length <= 2;
    bool failing = e->wft_attempt > 1; /* pending, scheduled or held by a worker */
    if (never_picked || failing) {
        if (!o->pickup_warned) {
            o->pickup_warned = true;
            dd_metric_set(o->m_unpicked, DD_L1(o->name), 1);
            dd_metric_add(o->m_unpicked_total, NULL, 1);
            dd_warn(o->ctx.log, "workflow_task_not_picked_up",
                    "dispatcher=%s workflow_id=%s run_id=%s workflow_type=%s task_queue=%s "
                    "waited_ms=%lld attempt=%lld hint=%s",
                    o->name, o->wid, o->run_id, e->type ? e->type : "",
                    e->task_queue ? e->task_queue : "", (long long)waited_ms,
                    (long long)e->wft_attempt,
                    never_picked
                        ? "no worker has taken the run's first workflow task: is a worker "
                          "polling this task queue with this workflow type registered? (check "
                          "--workflow-type and --workflow-task-queue)"
                        : "workers take the run's workflow tasks but fail them: is this "
                          "workflow type registered on the workers of this task queue? (check "
                          "--workflow-type; the run's history names the failure)");
        }
        uv_timer_start(&o->pickup_timer, dd_owner_pickup_fire, (uint64_t)half, 0);
        return;
    }
    if (o->pickup_warned)
        dd_info(o->ctx.log, "workflow_task_picked_up", "dispatcher=%s workflow_id=%s run_id=%s",
                o->name, o->wid, o->run_id);
    o->pickup_warned = false;
    dd_metric_set(o->m_unpicked, DD_L1(o->name), 0);
}

/* Ownership of this run ended: nothing to ask about it any more. */
static void dd_owner_pickup_stop(dd_owner *o)
{
    uv_timer_stop(&o->pickup_timer);
    if (o->pickup)
        dd_temporal_cancel(o->pickup);
    o->pickup_warned = false;
    dd_metric_set(o->m_unpicked, DD_L1(o->name), 0);
}

static void dd_owner_retry_fire(uv_timer_t *t)
{
    dd_owner *o = t->data;
    if (o->state == DD_OWNER_TAKING_OVER)
        dd_owner_takeover(o);
    else if (o->state == DD_OWNER_OWNING && !o->poll && o->long_poll)
        dd_owner_poll(o);
}

static void dd_owner_released(int st, const dd_temporal_result *r, void *arg);

/* A release cancelled our takeover after its start had gone out, and
 * Temporal started the run (dd_takeover_cancel): we never owned it (no
 * claim, no child), but it runs under our memo. End it like a release
 * would, so that a clean exit leaves no Running run of ours behind. */
static void dd_owner_end_unowned(dd_owner *o, const char *run_id)
{
    snprintf(o->run_id, sizeof(o->run_id), "%s", run_id);
    snprintf(o->first_run_id, sizeof(o->first_run_id), "%s", run_id);
    char reason[256];
    snprintf(reason, sizeof(reason), "released by %s", o->server_id);
    dd_info(o->ctx.log, "terminate",
            "workflow_id=%s run_id=%s reason=%s requester=%s note=%s", o->wid, o->run_id,
            reason, o->server_id, "started by a takeover that a release interrupted");
    int rc = o->workflow_mode
                 ? dd_temporal_terminate_chain(o->t, o->wid, NULL, o->first_run_id, reason,
                                               dd_owner_released, o, &o->term)
                 : dd_temporal_terminate(o->t, o->wid, o->run_id, reason, dd_owner_released, o,
                                         &o->term);
    /* work begun: the release (or the takeover it interrupted) ends here */
    dd_temporal_prioritize(rc == 0 ? o->term : NULL);
    if (rc < 0)
        o->term = NULL;
}

static void dd_owner_takeover_done(const dd_takeover_result *r, void *arg)
{
    dd_owner *o = arg;
    o->takeover = NULL;
    if (o->state != DD_OWNER_TAKING_OVER) { /* released meanwhile */
        if (r->run_id[0])
            dd_owner_end_unowned(o, r->run_id);
        dd_owner_maybe_stopped(o);
        return;
    }
    if (r->err && o->one_shot) {
        /* A failover attempt: the standby's lease, not our retries, decides
         * who tries next (a retry loop could outlive the lease and race
         * the next standby). */
        o->one_shot = false;
        dd_warn(o->ctx.log, "failover_failed", "dispatcher=%s error=%s", o->name, r->message);
        dd_owner_set_state(o, DD_OWNER_LOST);
        return;
    }
    if (r->err) {
        int64_t delay = dd_backoff_next(&o->backoff);
        dd_warn(o->ctx.log, "takeover_retry", "dispatcher=%s error=%s retry_in_ms=%lld", o->name,
                r->message, (long long)delay);
        uv_timer_start(&o->retry, dd_owner_retry_fire, (uint64_t)delay, 0);
        return;
    }
    dd_backoff_reset(&o->backoff);
    o->one_shot = false;
    snprintf(o->own_prev_run_id, sizeof(o->own_prev_run_id), "%s", o->run_id);
    snprintf(o->run_id, sizeof(o->run_id), "%s", r->run_id);
    snprintf(o->first_run_id, sizeof(o->first_run_id), "%s", r->run_id); /* a new chain */
    snprintf(o->prev_run_id, sizeof(o->prev_run_id), "%s", r->previous_run_id);
    o->gate_open = !o->opts.child_gate;
    o->child_failed = false; /* a new ownership; quick_exits carry over until it runs well */
    o->owned_since_us = dd_mono_us();
    o->decided_us = dd_boot_us(); /* the child waits for our claim to land */
    o->fence_stopped = false;
    dd_info(o->ctx.log, "owning", "dispatcher=%s workflow_id=%s run_id=%s wall_us=%lld", o->name,
            o->wid, o->run_id, (long long)dd_wall_us());
    dd_owner_set_state(o, DD_OWNER_OWNING);
    if (o->long_poll) /* else the host watches our run (watch.h) */
        dd_owner_poll(o);
    if (o->workflow_mode) {
        o->pickup_warned = false;
        uv_timer_start(&o->pickup_timer, dd_owner_pickup_fire, (uint64_t)dd_owner_pickup_ms(o), 0);
    }
    dd_owner_maybe_start_child(o);
}

void dd_owner_open_gate(dd_owner *o, const char *why)
{
    if (o->state != DD_OWNER_OWNING || o->gate_open)
        return;
    o->gate_open = true;
    dd_info(o->ctx.log, "handoff", "dispatcher=%s run_id=%s previous_run_id=%s reason=%s "
            "waited_ms=%llu",
            o->name, o->run_id, o->prev_run_id, why,
            (unsigned long long)((dd_mono_us() - o->owned_since_us) / 1000));
    dd_owner_maybe_start_child(o);
}

const char *dd_owner_previous_run_id(const dd_owner *o)
{
    return o->prev_run_id;
}

const char *dd_owner_own_previous_run_id(const dd_owner *o)
{
    return o->own_prev_run_id;
}

static void dd_owner_takeover(dd_owner *o)
{
    dd_owner_set_state(o, DD_OWNER_TAKING_OVER);
    dd_takeover_req req = {.project = o->project,
                           .queue = o->queue,
                           .server_id = o->server_id,
                           .legacy = o->opts.legacy,
                           .wf = &o->wf,
                           .start_by_ms = o->start_by_ms};
    char err[256];
    int rc = dd_takeover_start(&o->ctx, o->t, &req, dd_owner_takeover_done, o, &o->takeover, err,
                               sizeof(err));
    if (rc < 0) {
        o->takeover = NULL;
        int64_t delay = dd_backoff_next(&o->backoff);
        dd_error(o->ctx.log, "takeover_retry", "dispatcher=%s error=%s retry_in_ms=%lld",
                 o->name, err, (long long)delay);
        uv_timer_start(&o->retry, dd_owner_retry_fire, (uint64_t)delay, 0);
    }
}

static void dd_owner_lost(dd_owner *o, const dd_temporal_event *ev)
{
    uint64_t held_ms = (dd_mono_us() - o->owned_since_us) / 1000;
    int64_t lag_ms = ev && ev->time_ns ? dd_wall_ms() - ev->time_ns / 1000000 : -1;
    dd_warn(o->ctx.log, "ownership_lost",
            "dispatcher=%s workflow_id=%s run_id=%s close_event=%s reason=%s by=%s held_ms=%llu "
            "detect_lag_ms=%lld wall_us=%lld",
            o->name, o->wid, o->run_id, ev && ev->type ? ev->type : "unknown",
            ev && ev->reason ? ev->reason : "", ev && ev->identity ? ev->identity : "",
            (unsigned long long)held_ms, (long long)lag_ms, (long long)dd_wall_us());
    dd_metric_add(o->m_lost, NULL, 1);
    dd_owner_pickup_stop(o);
    uv_timer_stop(&o->child_retry);
    snprintf(o->lost_run_id, sizeof(o->lost_run_id), "%s", o->run_id);
    dd_child_stop(o->child, o->opts.child_grace_ms);
    dd_owner_set_state(o, DD_OWNER_LOST);
    dd_owner_maybe_stopped_acting(o);
}

/* A loss learned from somewhere other than our poll (the record): the poll
 * in flight, if any, goes too. */
static void dd_owner_lost_elsewhere(dd_owner *o, const dd_temporal_event *ev)
{
    if (o->state != DD_OWNER_OWNING)
        return;
    if (o->poll) {
        dd_temporal_call *c = o->poll;
        dd_owner_lost(o, ev); /* state LOST first: the cancelled poll sees it */
        dd_temporal_cancel(c);
        return;
    }
    dd_owner_lost(o, ev);
}

void dd_owner_taken(dd_owner *o, const char *holder, const char *holder_run_id)
{
    char reason[160];
    snprintf(reason, sizeof(reason), "the record names a newer owner (run %s)",
             holder_run_id && *holder_run_id ? holder_run_id : "?");
    dd_temporal_event ev = {.type = "TAKEOVER_NOTICE", .reason = reason, .identity = holder};
    dd_owner_lost_elsewhere(o, &ev);
}

void dd_owner_fenced(dd_owner *o, const char *holder)
{
    dd_temporal_event ev = {.type = "HEARTBEAT_FENCED", .reason = "a newer owner holds the record",
                            .identity = holder};
    dd_owner_lost_elsewhere(o, &ev);
}

static void dd_owner_poll_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_owner *o = arg;
    bool dropped = o->poll_dropped, once = o->poll_once;
    o->poll = NULL;
    o->poll_dropped = o->poll_once = false;
    if (o->state != DD_OWNER_OWNING) {
        dd_owner_maybe_stopped(o);
        return;
    }
    if (dropped && st == DD_ECANCELED) {
        /* our own switch to batch mode, not a loss; if the mode came back
         * meanwhile, watch again */
        if (o->long_poll)
            dd_owner_poll(o);
        return;
    }
    if (st == 0 && r->nevents >= 1) {
        const dd_temporal_event *ev = &r->events[r->nevents - 1];
        if (dd_owner_chain_step(o, ev) || dd_owner_chain_exit(o, ev))
            return;
        dd_owner_lost(o, ev);
        return;
    }
    if (st == DD_ENOTFOUND && r->grpc_code == 5 && o->fenced && dd_boot_ms() < o->deadline_ms &&
        dd_temporal_describe(o->t, o->wid, NULL, dd_owner_check_done, o, &o->check) == 0) {
        /* Temporal says our run does not exist (a gRPC NotFound, not some
         * proxy's 404) while our fenced record is still ours and fresh: ask
         * what runs under the ID before deciding (dd_owner_check_done),
         * ahead of new work: the second half of the watch's answer */
        dd_temporal_prioritize(o->check);
        return;
    }
    if (st == DD_ENOTFOUND) {
        /* Our run vanished (namespace reset, retention): we do not own it. */
        dd_owner_lost(o, NULL);
        return;
    }
    if (!o->long_poll) {
        /* batch mode: the host asks again at its next check if the run is
         * still listed as closed (nothing held open here) */
        if (st != 0 || once)
            dd_warn(o->ctx.log, "close_event_unread",
                    "dispatcher=%s run_id=%s error=%s note=%s", o->name, o->run_id,
                    st ? r->message : "no close event yet",
                    "asked again at the next visibility check");
        return;
    }
    if (st == 0)
        dd_backoff_reset(&o->poll_backoff);
    int64_t delay = st == 0 ? 0 : dd_backoff_next(&o->poll_backoff);
    if (st != 0)
        dd_warn(o->ctx.log, "loss_watch_retry", "dispatcher=%s error=%s retry_in_ms=%lld",
                o->name, r->message, (long long)delay);
    uv_timer_start(&o->retry, dd_owner_retry_fire, (uint64_t)delay, 0);
}

/* After "not found" for our run: nothing at all under the ID (a wiped or
 * restored server) -> start our run again at once, termination-first, one
 * attempt (a failure leaves us a standby like any lost owner); another run
 * there -> someone else owns it; our run after all -> watch again. */
static void dd_owner_check_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_owner *o = arg;
    o->check = NULL;
    if (o->state != DD_OWNER_OWNING) {
        dd_owner_maybe_stopped(o);
        return;
    }
    if (st == DD_ENOTFOUND && r->grpc_code == 5 && dd_boot_ms() < o->deadline_ms) {
        dd_warn(o->ctx.log, "run_missing",
                "dispatcher=%s workflow_id=%s run_id=%s action=start_again wall_us=%lld",
                o->name, o->wid, o->run_id, (long long)dd_wall_us());
        uv_timer_stop(&o->child_retry);
        o->stop_requested = dd_child_running(o->child);
        dd_child_stop(o->child, o->opts.child_grace_ms);
        o->one_shot = true;
        dd_owner_takeover(o);
        return;
    }
    if (st == 0 && r->execution && r->execution->run_id &&
        strcmp(r->execution->run_id, o->run_id) != 0) {
        dd_temporal_event ev = {.type = "RUN_REPLACED", .reason = "another run holds the ID",
                                .identity = r->execution->server_id};
        dd_owner_lost(o, &ev);
        return;
    }
    uv_timer_start(&o->retry, dd_owner_retry_fire, (uint64_t)dd_backoff_next(&o->poll_backoff),
                   0);
}

/* A close event that only moves our chain on (continue-as-new): follow it,
 * change nothing else. True when handled. */
static bool dd_owner_chain_step(dd_owner *o, const dd_temporal_event *ev)
{
    if (!ev->type || strcmp(ev->type, "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW") != 0 ||
        !ev->new_run_id || !*ev->new_run_id)
        return false;
    dd_info(o->ctx.log, "continued_as_new",
            "dispatcher=%s workflow_id=%s run_id=%s new_run_id=%s first_run_id=%s", o->name,
            o->wid, o->run_id, ev->new_run_id, o->first_run_id);
    dd_metric_add(o->m_chain, NULL, 1);
    snprintf(o->run_id, sizeof(o->run_id), "%s", ev->new_run_id);
    if (o->opts.on_chain)
        o->opts.on_chain(o, o->run_id, o->opts.arg);
    dd_backoff_reset(&o->poll_backoff);
    uv_timer_start(&o->retry, dd_owner_retry_fire, 0, 0);
    return true;
}

/* Was our run ended by dispatchd (a takeover, a release, the reconciler),
 * i.e. someone else owns it now? Those terminations say so in their reason. */
static bool dd_owner_ended_by_dispatchd(const dd_temporal_event *ev)
{
    if (!ev->type || strcmp(ev->type, "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED") != 0)
        return false;
    const char *r = ev->reason ? ev->reason : "";
    return strstr(r, "WorkflowIdReusePolicy") || !strncmp(r, "takeover", 8) ||
           !strncmp(r, "released by ", 12) || !strncmp(r, "stale:", 6);
}

/* Workflow mode: the chain ended on its own (completed, failed, timed out,
 * canceled, or terminated by someone other than dispatchd). Nobody took it
 * from us: apply --on-workflow-exit. True when handled. */
static bool dd_owner_chain_exit(dd_owner *o, const dd_temporal_event *ev)
{
    if (!o->workflow_mode || !ev->type || dd_owner_ended_by_dispatchd(ev))
        return false;
    static const char *const ends[] = {
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED", "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT", "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED"};
    bool end = false;
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]) && !end; i++)
        end = strcmp(ev->type, ends[i]) == 0;
    if (!end)
        return false;
    bool restart = o->wf.on_exit == DD_ON_EXIT_RESTART;
    /* a chain that ran for a minute or more starts the backoff afresh; one
     * that ends at once waits longer each time (500 ms doubling to 30 s) */
    if (dd_mono_us() - o->owned_since_us > 60000000u)
        dd_backoff_reset(&o->exit_backoff);
    int64_t delay = restart ? dd_backoff_next(&o->exit_backoff) : 0;
    dd_warn(o->ctx.log, "workflow_exited",
            "dispatcher=%s workflow_id=%s run_id=%s first_run_id=%s close_event=%s reason=%s "
            "action=%s retry_in_ms=%lld",
            o->name, o->wid, o->run_id, o->first_run_id, ev->type, ev->reason ? ev->reason : "",
            restart ? "restart" : "release", (long long)delay);
    dd_metric_add(o->m_exits, DD_L1(restart ? "restart" : "release"), 1);
    if (!restart) {
        /* let go: child stopped, record deleted, no standby here
         * (the terminate of our closed run answers "not found": fine) */
        dd_owner_release(o);
        return true;
    }
    /* start a new chain after a backoff (a chain that ends at once must not
     * spin); the child stops meanwhile and starts again under the new run */
    uv_timer_stop(&o->child_retry);
    o->stop_requested = o->child && dd_child_running(o->child);
    dd_child_stop(o->child, o->opts.child_grace_ms);
    dd_owner_set_state(o, DD_OWNER_TAKING_OVER);
    uv_timer_start(&o->retry, dd_owner_retry_fire, (uint64_t)delay, 0);
    return true;
}

/* Long-poll mode: hold a long poll on our run's close event. Batch mode:
 * fetch that event once (the host was told the run closed); the answer
 * takes the same path either way (dd_owner_poll_done). */
static void dd_owner_poll(dd_owner *o)
{
    o->poll_once = !o->long_poll;
    o->poll_dropped = false;
    int rc = o->long_poll ? dd_temporal_wait_close(o->t, o->wid, o->run_id, dd_owner_poll_done, o,
                                                   &o->poll)
                          : dd_temporal_close_event(o->t, o->wid, o->run_id, dd_owner_poll_done,
                                                    o, &o->poll);
    /* a fetch follows the host's visibility check that listed the run
     * closed: the second half of that check (temporal.h) */
    dd_temporal_prioritize(rc == 0 && !o->long_poll ? o->poll : NULL);
    if (rc < 0) {
        o->poll = NULL;
        o->poll_once = false;
        if (o->long_poll)
            uv_timer_start(&o->retry, dd_owner_retry_fire,
                           (uint64_t)dd_backoff_next(&o->poll_backoff), 0);
    }
}

void dd_owner_set_long_poll(dd_owner *o, bool on)
{
    if (o->long_poll == on)
        return;
    o->long_poll = on;
    if (o->state != DD_OWNER_OWNING)
        return; /* takeover_done decides when we own */
    if (!on) {
        uv_timer_stop(&o->retry); /* a re-poll waiting for its backoff */
        if (o->poll && !o->poll_once && !o->poll_dropped) {
            o->poll_dropped = true;
            dd_temporal_cancel(o->poll);
        }
        return;
    }
    /* a poll still in flight (a cancelled one, or a fetch) re-polls when
     * it answers; a check in flight starts one (its retry timer) */
    if (!o->poll && !o->check) {
        uv_timer_stop(&o->retry);
        dd_owner_poll(o);
    }
}

bool dd_owner_long_polling(const dd_owner *o)
{
    return o->poll && !o->poll_once && !o->poll_dropped;
}

void dd_owner_run_closed(dd_owner *o, const char *run_id)
{
    if (o->state != DD_OWNER_OWNING || strcmp(run_id, o->run_id) != 0 || o->check)
        return;
    if (o->poll) /* a long poll hears it, or a fetch is on its way */
        return;
    dd_info(o->ctx.log, "run_closed_heard", "dispatcher=%s workflow_id=%s run_id=%s source=%s",
            o->name, o->wid, o->run_id, "visibility");
    bool lp = o->long_poll;
    o->long_poll = false; /* one fetch, whatever the mode */
    dd_owner_poll(o);
    o->long_poll = lp;
}

/* The visibility check did not list our run at all (owner.h): ask Temporal
 * about exactly our run; "not found" takes the long poll's "not found"
 * path (Temporal lost it: start again), closed the close event's. */
static void dd_owner_unlisted_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_owner *o = arg;
    o->check = NULL;
    if (o->state != DD_OWNER_OWNING) {
        dd_owner_maybe_stopped(o);
        return;
    }
    if (st == DD_ENOTFOUND && r->grpc_code == 5) {
        dd_warn(o->ctx.log, "run_not_found", "dispatcher=%s workflow_id=%s run_id=%s source=%s",
                o->name, o->wid, o->run_id, "visibility");
        if (o->fenced && dd_boot_ms() < o->deadline_ms &&
            dd_temporal_describe(o->t, o->wid, NULL, dd_owner_check_done, o, &o->check) == 0) {
            dd_temporal_prioritize(o->check);
            return; /* what runs under the ID? (dd_owner_check_done) */
        }
        dd_owner_lost(o, NULL);
        return;
    }
    if (st == 0 && r->execution && r->execution->status != DD_WF_RUNNING)
        dd_owner_run_closed(o, o->run_id);
    else if (o->long_poll && !o->poll)
        dd_owner_poll(o); /* the host went back to long polls while we asked:
                           * dd_owner_set_long_poll left the poll to us */
    /* else running after all (visibility lagged), or no answer: next round */
}

void dd_owner_run_unlisted(dd_owner *o, const char *run_id)
{
    if (o->state != DD_OWNER_OWNING || strcmp(run_id, o->run_id) != 0 || o->check || o->poll)
        return;
    if (dd_temporal_describe(o->t, o->wid, o->run_id, dd_owner_unlisted_done, o, &o->check) < 0)
        o->check = NULL;
    else /* the second half of the visibility check that did not list it */
        dd_temporal_prioritize(o->check);
}

bool dd_owner_checking(const dd_owner *o)
{
    return o->check != NULL;
}

uint64_t dd_owner_owned_for_ms(const dd_owner *o)
{
    return o->state == DD_OWNER_OWNING ? (dd_mono_us() - o->owned_since_us) / 1000 : 0;
}

void dd_owner_start(dd_owner *o)
{
    if (o->state == DD_OWNER_IDLE || o->state == DD_OWNER_LOST)
        dd_owner_takeover(o);
}

void dd_owner_retake(dd_owner *o)
{
    dd_owner_retake_by(o, 0);
}

void dd_owner_retake_by(dd_owner *o, uint64_t start_by_ms)
{
    if (o->state != DD_OWNER_LOST && o->state != DD_OWNER_IDLE)
        return;
    o->one_shot = true;
    o->start_by_ms = start_by_ms;
    dd_owner_takeover(o);
    o->start_by_ms = 0; /* this attempt only: retries of our own start have no lease */
}

int64_t dd_owner_call_deadline_ms(const dd_owner *o)
{
    return dd_temporal_call_deadline_ms(o->t);
}

static void dd_owner_timer_closed(uv_handle_t *h)
{
    dd_owner *o = h->data;
    o->closing--;
    dd_owner_maybe_stopped(o);
}

/* The last handle: everything is closed, nothing of ours is in flight. */
static void dd_owner_last_closed(uv_handle_t *h)
{
    dd_owner *o = h->data;
    void (*done)(void *) = o->close_done;
    void *arg = o->close_arg;
    dd_owner_free(o);
    if (done)
        done(arg);
}

static void dd_owner_child_closed(void *arg)
{
    dd_owner *o = arg;
    o->child = NULL;
    o->child_closed = true;
    dd_owner_maybe_stopped(o);
}

/* Finishes the release once nothing is in flight. */
static void dd_owner_maybe_stopped(dd_owner *o)
{
    if (o->state != DD_OWNER_RELEASING && o->state != DD_OWNER_STOPPED)
        return;
    if (o->in_release || o->release_terminate || o->takeover || o->poll || o->term || o->check ||
        o->pickup)
        return;
    if (o->child && dd_child_running(o->child))
        return;
    if (o->state == DD_OWNER_RELEASING && o->giving_up) {
        /* released for a failing child: stand by (heartbeat.c watches the
         * record; dd_owner_compete_after holds our next attempt back) */
        o->giving_up = false;
        dd_owner_set_state(o, DD_OWNER_LOST);
        dd_info(o->ctx.log, "standing_by", "dispatcher=%s reason=%s compete_again_in_ms=%lld",
                o->name, "released for a failing child command",
                (long long)(o->compete_after_ms - dd_mono_ms()));
        return;
    }
    if (o->state == DD_OWNER_RELEASING) {
        o->state = DD_OWNER_STOPPED;
        o->closing = 3;
        uv_close((uv_handle_t *)&o->pickup_timer, dd_owner_timer_closed);
        uv_close((uv_handle_t *)&o->child_retry, dd_owner_timer_closed);
        uv_close((uv_handle_t *)&o->fence_timer, dd_owner_timer_closed);
        dd_child_close(o->child, dd_owner_child_closed, o);
        return;
    }
    if (o->closing > 0 || !o->child_closed)
        return;
    if (!o->stop_reported) {
        o->stop_reported = true;
        if (o->opts.on_stopped)
            o->opts.on_stopped(o, o->opts.arg); /* may call dd_owner_close */
    }
    if (o->close_requested && !uv_is_closing((uv_handle_t *)&o->retry))
        uv_close((uv_handle_t *)&o->retry, dd_owner_last_closed);
}

static void dd_owner_released(int st, const dd_temporal_result *r, void *arg)
{
    dd_owner *o = arg;
    o->term = NULL;
    if (st == 0 || st == DD_ENOTFOUND)
        dd_info(o->ctx.log, "released", "dispatcher=%s workflow_id=%s run_id=%s", o->name,
                o->wid, o->run_id);
    else
        dd_warn(o->ctx.log, "release_failed",
                "dispatcher=%s workflow_id=%s run_id=%s error=%s note=%s", o->name, o->wid,
                o->run_id, r->message, "the reconciler will terminate it once it is stale");
    if (o->ack_after_term) { /* the record goes now that our run has (release_terminate) */
        o->ack_after_term = false;
        if (o->opts.on_stopped_acting)
            o->opts.on_stopped_acting(o, o->run_id, o->opts.arg);
    }
    o->run_id[0] = '\0';
    dd_owner_maybe_stopped(o);
}

static void dd_owner_release_terminate(dd_owner *o)
{
    if (!o->release_terminate || (o->child && dd_child_running(o->child)))
        return;
    o->release_terminate = false;
    /* Our child is gone: our run goes now, then the record (heartbeat.c,
     * which also tells the standbys). In that order, so the successor's
     * termination-first start does not meet our terminate in Temporal (the
     * two serialise on the workflow: graceful handovers took twice as long).
     * The record stays fresh meanwhile: we heartbeat until it goes. */
    dd_info(o->ctx.log, "stopped_acting", "dispatcher=%s run_id=%s wall_us=%lld", o->name,
            o->run_id, (long long)dd_wall_us());
    o->ack_after_term = true;
    char reason[256];
    snprintf(reason, sizeof(reason), "released by %s", o->server_id);
    dd_info(o->ctx.log, "terminate", "workflow_id=%s run_id=%s reason=%s requester=%s", o->wid,
            o->run_id, reason, o->server_id);
    /* workflow mode: our chain may have continued as new while the child
     * stopped (nobody watched it then): end its current run, chain-scoped */
    int rc = o->workflow_mode
                 ? dd_temporal_terminate_chain(o->t, o->wid, NULL, o->first_run_id, reason,
                                               dd_owner_released, o, &o->term)
                 : dd_temporal_terminate(o->t, o->wid, o->run_id, reason, dd_owner_released, o,
                                         &o->term);
    /* work begun: the release (or the takeover it interrupted) ends here */
    dd_temporal_prioritize(rc == 0 ? o->term : NULL);
    if (rc < 0) {
        o->term = NULL;
        o->ack_after_term = false;
        if (o->opts.on_stopped_acting)
            o->opts.on_stopped_acting(o, o->run_id, o->opts.arg);
    }
}

void dd_owner_release(dd_owner *o)
{
    if (o->state == DD_OWNER_RELEASING && o->giving_up && !o->in_release) {
        /* a shutdown while we let go of a failing child: end STOPPED */
        o->giving_up = false;
        dd_owner_maybe_stopped(o);
        return;
    }
    if (o->state == DD_OWNER_RELEASING || o->state == DD_OWNER_STOPPED)
        return;
    bool owning = o->state == DD_OWNER_OWNING;
    o->in_release = true;
    dd_owner_set_state(o, DD_OWNER_RELEASING);
    uv_timer_stop(&o->retry);
    uv_timer_stop(&o->child_retry);
    if (o->takeover) /* its callback sees RELEASING, and ends a run it started */
        dd_takeover_cancel(o->takeover);
    if (o->poll)
        dd_temporal_cancel(o->poll);
    if (o->check)
        dd_temporal_cancel(o->check);
    dd_owner_pickup_stop(o);
    /* Stop the work before giving up the run: a successor may start its own
     * child as soon as our run is gone, so the run is terminated only once
     * our child has exited (bounded by the child's grace period). */
    dd_child_stop(o->child, o->opts.child_grace_ms);
    o->release_terminate = owning;
    o->in_release = false;
    dd_owner_release_terminate(o);
    dd_owner_maybe_stopped(o);
}

void dd_owner_close(dd_owner *o, void (*done)(void *arg), void *arg)
{
    o->close_requested = true;
    o->close_done = done;
    o->close_arg = arg;
    if (o->state != DD_OWNER_STOPPED)
        dd_owner_release(o); /* ends in dd_owner_maybe_stopped */
    else
        dd_owner_maybe_stopped(o);
}

static void dd_owner_free(dd_owner *o)
{
    if (o->child_argv) {
        for (int i = 0; o->child_argv[i]; i++)
            free(o->child_argv[i]);
        free(o->child_argv);
    }
    free(o->project);
    free(o->queue);
    free(o->server_id);
    free(o->name);
    free(o->wf_type);
    free(o->wf_queue);
    free(o->wf_input);
    free(o->marker_queue);
    free(o->id_prefix);
    free(o);
}

dd_owner_state dd_owner_get_state(const dd_owner *o)
{
    return o->state;
}

bool dd_owner_owning(const dd_owner *o)
{
    return o->state == DD_OWNER_OWNING;
}

const char *dd_owner_workflow_id(const dd_owner *o)
{
    return o->wid;
}

const char *dd_owner_run_id(const dd_owner *o)
{
    return o->state == DD_OWNER_OWNING ? o->run_id : "";
}

const char *dd_owner_first_run_id(const dd_owner *o)
{
    return o->workflow_mode && o->state == DD_OWNER_OWNING ? o->first_run_id : NULL;
}

const char *dd_owner_workflow_type(const dd_owner *o)
{
    return o->workflow_mode ? o->wf_type : NULL;
}

const char *dd_owner_name(const dd_owner *o)
{
    return o->name;
}

const char *dd_owner_project(const dd_owner *o)
{
    return o->project;
}

const char *dd_owner_queue(const dd_owner *o)
{
    return o->queue;
}

const char *dd_owner_server_id(const dd_owner *o)
{
    return o->server_id;
}

uint64_t dd_owner_compete_after(const dd_owner *o)
{
    return o->compete_after_ms;
}

bool dd_owner_child_ok(const dd_owner *o, char *reason, size_t len)
{
    if (!o->child_argv)
        return true;
    uint64_t now = dd_mono_ms();
    if (o->compete_after_ms > now && o->state != DD_OWNER_OWNING) {
        snprintf(reason, len,
                 "dispatcher %s: child command kept exiting at once; released, competing "
                 "again in %llu s",
                 o->name, (unsigned long long)((o->compete_after_ms - now + 999) / 1000));
        return false;
    }
    if (o->state != DD_OWNER_OWNING || !o->child_failed)
        return true;
    bool running = o->child && dd_child_running(o->child);
    if (running && (dd_mono_us() - o->child_started_us) / 1000 >= DD_CHILD_QUICK_MS)
        return true; /* up long enough again */
    snprintf(reason, len, "dispatcher %s: child command %s (%d quick exits in a row)", o->name,
             running ? "restarted, not yet up for long" : "exited, restart pending",
             o->quick_exits);
    return false;
}
