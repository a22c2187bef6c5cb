/* owner.h - dispatcher ownership: termination-first takeover (R2, R4) and
 * the ownership loop with fast loss detection.
 *
 * Takeover: describe the workflow ID's current run (to know what we
 * replace and to be sure it is a dispatcher of the same (project, queue)),
 * then start with conflict policy TERMINATE_EXISTING: the server terminates
 * the old run and starts ours in one step, so the old run's history ends
 * with WorkflowExecutionTerminated before our WorkflowExecutionStarted.
 * Legacy mode (servers or callers without conflict policy): start with the
 * server's default; on 409 terminate exactly the run the server named, then
 * start again, bounded and backed off. Every termination is logged with
 * workflow id, run id, reason and requester.
 *
 * Ownership: while owning, a long-poll on our run's close event is always
 * outstanding, so when someone else takes over (terminating our run) the
 * server answers within milliseconds and we stop acting: the child command
 * is stopped and nothing fights back. In batch mode (a fleet too large for
 * one long poll per dispatcher: owner/watch.h) there is no long poll; the
 * host's takeover notices (dd_owner_taken), visibility checks
 * (dd_owner_run_closed) and the fenced heartbeat (dd_owner_fenced) tell
 * the owner instead, and each leads to the same loss path. */
#ifndef DD_OWNER_OWNER_H
#define DD_OWNER_OWNER_H

#include "core/ctx.h"
#include "owner/fence.h"
#include "owner/id.h"

#include <stdbool.h>
#include <stdint.h>

struct dd_temporal;

#define DD_DISPATCHER_WORKFLOW_TYPE "dispatchd.dispatcher"
#define DD_MARKER_TASK_QUEUE "dispatchd"
#define DD_RUN_ID_LEN 64
/* Registered by the owner's heartbeat and by the reconciler (same family
 * either way, so name and help live in one place). */
#define DD_METRIC_STALE_THRESHOLD "dispatchd_stale_threshold_seconds"
#define DD_METRIC_STALE_THRESHOLD_HELP                                                             \
    "This process's --stale-threshold. Compare across the fleet (min vs max): every host "        \
    "should run the same value."
#define DD_CHILD_QUICK_MS 10000       /* an exit sooner than this after start is "quick" */
#define DD_CHILD_GIVEUP_BASE_MS 30000 /* first stand-by after releasing a failing child */
#define DD_CHILD_GIVEUP_CAP_MS 600000 /* longest */

/* What runs under the dispatcher's workflow ID (docs/workflows.md).
 * Marker mode (type NULL): a dispatchd.dispatcher marker on a task queue
 * dispatchd owns (marker_task_queue, never a worker's). Workflow mode: the
 * user's own workflow type on its task queue with its input; dispatchd
 * follows its continue-as-new chain. Strings borrowed for the call. */
typedef enum dd_on_exit {
    DD_ON_EXIT_RESTART, /* the chain ended on its own: start it again (backoff) */
    DD_ON_EXIT_RELEASE, /* ... let go of it: record deleted, no standby here */
} dd_on_exit;

typedef struct dd_owner_workflow {
    const char *marker_task_queue; /* marker mode; NULL: DD_MARKER_TASK_QUEUE */
    const char *type;              /* NULL or "": marker mode */
    const char *task_queue;        /* workflow mode; NULL or "": the dispatcher's queue */
    const char *input_json;        /* workflow mode: the input (final JSON text) or NULL */
    dd_on_exit on_exit;
    const char *id_prefix;         /* --id-prefix; NULL or "": DD_DISPATCHER_ID_PREFIX */
} dd_owner_workflow;

/* ---- one takeover (takeover.c) ---------------------------------------- */

typedef struct dd_takeover_req {
    const char *project;
    const char *queue;
    const char *server_id;
    bool legacy;      /* no conflict policy: 409 -> terminate -> retry */
    int max_attempts; /* legacy starts; 0: 5 */
    const dd_owner_workflow *wf; /* NULL: marker mode on DD_MARKER_TASK_QUEUE */
    /* Monotonic ms (dd_mono_ms) after which no start request is sent: a
     * failover under a lease (dd_failover_lease_plan), whose start must
     * have reached Temporal before the lease can expire. A start due later
     * is not sent: the takeover fails (DD_ETIMEOUT, outcome failed) and says
     * so. 0: no bound (a host's own start, the takeover command). */
    uint64_t start_by_ms;
} dd_takeover_req;

/* How long a failover lease (failover:<wid>) is held, and until when the
 * takeover begun under it may still send its start. A takeover is two
 * Temporal calls (a describe, then the termination-first start), each
 * bounded by the client's per-call deadline (call_deadline_ms, queue wait
 * and retries included: dd_temporal_call_deadline_ms). The lease lives
 * threshold + 2 x deadline + DD_FAILOVER_LEASE_MARGIN_MS; a start may be
 * sent only while it would still be answered (or given up) a margin before
 * the lease can expire: up to ttl - deadline - margin after the lease was
 * asked for (= threshold + deadline). Past that, a second standby could
 * take the lease while our start is still on its way. */
#define DD_FAILOVER_LEASE_MARGIN_MS 5000
typedef struct dd_failover_lease {
    int64_t ttl_ms;          /* the lease's life in Redis */
    int64_t start_within_ms; /* from the moment the lease was asked for */
} dd_failover_lease;
dd_failover_lease dd_failover_lease_plan(int64_t threshold_ms, int64_t call_deadline_ms);

typedef struct dd_takeover_result {
    int err;               /* 0 or DD_E* / -errno */
    char message[512];     /* "" on success */
    const char *outcome;   /* "started", "took_over", "legacy_took_over", "failed" */
    char workflow_id[DD_DISPATCHER_ID_BUFLEN];
    char run_id[DD_RUN_ID_LEN];
    char previous_run_id[DD_RUN_ID_LEN]; /* "" when nothing was running */
    char previous_server_id[128];        /* who owned it, from its memo, or "" */
    char previous_first_run_id[DD_RUN_ID_LEN]; /* the chain it belonged to, or "" */
    int attempts;          /* start requests made */
    double latency_ms;
} dd_takeover_result;

typedef struct dd_takeover dd_takeover;
typedef void (*dd_takeover_cb)(const dd_takeover_result *res, void *arg);

/* Starts a takeover on ctx->loop. Returns 0 (cb will run once), or DD_EINVAL
 * with a message in err for a bad project/queue (cb will not run). Records
 * dispatchd_takeovers_total{outcome} and dispatchd_takeover_duration_seconds.
 * out (may be NULL) gets a handle for dd_takeover_cancel, valid until cb. */
int dd_takeover_start(const dd_ctx *ctx, struct dd_temporal *t, const dd_takeover_req *req,
                      dd_takeover_cb cb, void *arg, dd_takeover **out, char *err, size_t errlen);
/* cb runs once with DD_ECANCELED from the loop (the next iteration), never
 * inside this call; cancelling again does nothing. A start request already
 * sent is not abandoned (Temporal may have started the run): cb waits for
 * its answer, bounded by the Temporal client's per-call deadline, and if
 * the run was started res->run_id names it (err is still DD_ECANCELED):
 * the caller ends it. */
void dd_takeover_cancel(dd_takeover *tk);
/* Registers dispatchd_takeovers_total (every outcome at 0) and
 * dispatchd_takeover_duration_seconds in m, once; dd_owner_new calls it. */
struct dd_metrics;
void dd_takeover_metrics_init(struct dd_metrics *m);

/* ---- the ownership loop (owner.c) --------------------------------------- */

typedef struct dd_owner dd_owner;
struct dd_buf;

typedef enum dd_owner_state {
    DD_OWNER_IDLE,
    DD_OWNER_TAKING_OVER,
    DD_OWNER_OWNING,
    DD_OWNER_LOST,      /* someone else took over: standing by, not fighting back */
    DD_OWNER_RELEASING,
    DD_OWNER_STOPPED,
} dd_owner_state;

typedef struct dd_owner_opts {
    const char *project;
    const char *queue;
    const char *server_id;
    bool legacy;
    const dd_owner_workflow *wf; /* copied; NULL: marker mode */
    char *const *child_argv;  /* command run only while owning, or NULL */
    const char *guard_exe;    /* binary with the __guard command (dies-with-us), or NULL */
    /* Acting deadlines (fence.h): with fence set, the child runs only within
     * fence->window_ms of the send time of the last heartbeat that landed
     * (dd_owner_heartbeat_landed), starts or restarts only after a heartbeat
     * sent after that decision has landed, and is stopped by our timer and
     * by its guard before the deadline. NULL: no deadlines (tests, tools). */
    const dd_fence_plan *fence;
    /* Asked when the child could start but needs a fresh landed heartbeat
     * first: send one now rather than at the next interval. */
    void (*want_heartbeat)(dd_owner *o, void *arg);
    int64_t child_grace_ms;   /* TERM -> KILL (default 10 s), never past the deadline */
    /* A child that can never start (docs/ownership.md "A child that keeps
     * failing"): a quick exit is one on its own within DD_CHILD_QUICK_MS of
     * its start (exit 0 included: the command is meant to run while we
     * own). After child_max_restarts restarts each ended by a quick exit,
     * the next quick exit releases the dispatcher like dd_owner_release
     * (child stopped, own run terminated, record deleted) and this host
     * stands by, competing again only after a growing back-off
     * (DD_CHILD_GIVEUP_BASE_MS doubling to DD_CHILD_GIVEUP_CAP_MS; reset
     * once a child outlives DD_CHILD_QUICK_MS). 0: never release. */
    int child_max_restarts;
    int64_t retry_base_ms;    /* takeover retry backoff (default 500 ms) */
    int64_t retry_cap_ms;     /* (default 30 s) */
    /* Called on every change of ownership (owning true/false) with our run. */
    void (*on_change)(dd_owner *o, bool owning, const char *run_id, void *arg);
    /* Called once, from the loop, when the owner has let go for good (a
     * dd_owner_release, or its own on --on-workflow-exit release): child
     * stopped, own run terminated, state STOPPED. Close it after this. */
    void (*on_stopped)(dd_owner *o, void *arg);
    /* Handoff (see heartbeat.c): with child_gate, the child starts only
     * when dd_owner_open_gate is called, not as soon as we own; and
     * on_stopped_acting runs once our child has stopped after a loss. */
    bool child_gate;
    void (*on_stopped_acting)(dd_owner *o, const char *run_id, void *arg);
    /* Asked each time the child starts: append the packed last will
     * (child/will.h) its guard runs if this process dies while the child
     * runs; nothing appended: no will. May be NULL. */
    void (*will)(dd_owner *o, struct dd_buf *out, void *arg);
    /* The host's will process (child/will_proc.h; borrowed, outlives the
     * owner): the child's guard hands the will to it. NULL: the guard
     * runs the will itself. */
    const struct dd_will_proc *will_proc;
    /* Workflow mode: our chain continued as new; run_id is its new current
     * run (the owner keeps owning; wire to dd_heartbeat_chain_moved). */
    void (*on_chain)(dd_owner *o, const char *run_id, void *arg);
    /* Start in batch mode (dd_owner_set_long_poll false): no long poll. */
    bool no_long_poll;
    void *arg;
} dd_owner_opts;

/* Strings in opts are copied. 0 and *out, or DD_EINVAL with a message in err
 * for a bad project/queue. */
int dd_owner_new(const dd_ctx *ctx, struct dd_temporal *t, const dd_owner_opts *opts,
                 dd_owner **out, char *err, size_t errlen);
/* Takes over, retrying with backoff while Temporal is unreachable. */
void dd_owner_start(dd_owner *o);
/* Takes over again after a loss (failover decided by the caller). */
void dd_owner_retake(dd_owner *o);
/* The same under a failover lease: no start is sent after start_by_ms
 * (monotonic; dd_takeover_req.start_by_ms). */
void dd_owner_retake_by(dd_owner *o, uint64_t start_by_ms);
/* The Temporal client's per-call deadline (dd_temporal_call_deadline_ms). */
int64_t dd_owner_call_deadline_ms(const dd_owner *o);
/* Graceful stop: stops the child, terminates our own run with reason
 * "released by <server_id>" (so nothing is left for the reconciler), then
 * on_stopped. Safe in any state. o stays valid (the heartbeat that borrows
 * it may still be finishing its record) until dd_owner_close. */
void dd_owner_release(dd_owner *o);
/* Releases first if that has not happened (as dd_owner_release, on_stopped
 * included), closes every handle, then frees o and calls done(arg) (may be
 * NULL) from the loop, never inside this call. Call once. */
void dd_owner_close(dd_owner *o, void (*done)(void *arg), void *arg);

dd_owner_state dd_owner_get_state(const dd_owner *o);
bool dd_owner_owning(const dd_owner *o);
const char *dd_owner_workflow_id(const dd_owner *o);
const char *dd_owner_run_id(const dd_owner *o); /* "" when not owning */
/* Workflow mode: the first run of the chain we own, and the user's type
 * (NULL in marker mode). */
const char *dd_owner_first_run_id(const dd_owner *o);
const char *dd_owner_workflow_type(const dd_owner *o);
const char *dd_owner_name(const dd_owner *o);   /* "project/queue" */
const char *dd_owner_project(const dd_owner *o);
const char *dd_owner_queue(const dd_owner *o);
const char *dd_owner_server_id(const dd_owner *o);


/* Lets the child start (child_gate): the previous owner has stopped acting,
 * or there is no live previous owner to wait for. No-op unless owning. */
void dd_owner_open_gate(dd_owner *o, const char *why);
/* A fenced write of ours (claim or heartbeat) that was sent at sent_boot_us
 * (CLOCK_BOOTTIME, taken before the request went out) has landed: the
 * acting deadline moves to sent + fence->window_ms (ours and the guard's),
 * and a child waiting for a fresh heartbeat may start. */
void dd_owner_heartbeat_landed(dd_owner *o, int64_t sent_boot_us);
/* False (with a reason for /readyz) while the child command is down: it
 * exited on its own and has not yet outlived DD_CHILD_QUICK_MS since, or we
 * released the dispatcher because it kept failing and are still backing
 * off. True without a child command. */
bool dd_owner_child_ok(const dd_owner *o, char *reason, size_t len);
/* Monotonic ms before which this host must not take the dispatcher over
 * again (after releasing it for a failing child); 0: no such wait. */
uint64_t dd_owner_compete_after(const dd_owner *o);

/* The acting deadline (CLOCK_BOOTTIME ms; 0 before the first landing). */
int64_t dd_owner_deadline(const dd_owner *o);
/* The run our last takeover replaced ("" if none). */
const char *dd_owner_previous_run_id(const dd_owner *o);
/* The run this process owned before the current one ("" if none): when our
 * takeover replaced it, there is no other owner to wait for. */
const char *dd_owner_own_previous_run_id(const dd_owner *o);

/* Marks ownership lost for a reason other than our run's close event (our
 * heartbeat was fenced: a newer owner holds the record). Stops the child
 * like a close event does. No-op unless owning. */
void dd_owner_fenced(dd_owner *o, const char *holder);
/* The same, learned from a takeover notice (owner/hb_taken.c): the record,
 * read after the notice, names a newer epoch (holder, its run). */
void dd_owner_taken(dd_owner *o, const char *holder, const char *holder_run_id);

/* The loss watch's mode (owner/watch.h decides it for the host). true (the
 * default): while owning, one long poll on our run's close event. false
 * (batch mode): none; the host tells us instead. A switch cancels or
 * starts the poll at once; a poll cancelled by a switch is never read as
 * a loss. */
void dd_owner_set_long_poll(dd_owner *o, bool on);
/* A long poll of ours is held now (for dispatchd_loss_watch_long_polls). */
bool dd_owner_long_polling(const dd_owner *o);
/* The host's visibility check listed run_id as closed: if it is still our
 * run, fetch its close event once and take the path a long poll's answer
 * takes (a takeover: LOST; continue-as-new: follow it; the chain ended on
 * its own: --on-workflow-exit). A run not listed proves nothing. */
void dd_owner_run_closed(dd_owner *o, const char *run_id);
/* A presence check (the same query without the status condition) did not
 * list run_id at all, long after it started: if it is still our run, ask
 * Temporal about exactly that run; "not found" is Temporal having lost it
 * (docs/ownership.md, "Temporal loses the run": started again while our
 * record is fresh), closed goes as dd_owner_run_closed, running (visibility
 * lagged) changes nothing. */
void dd_owner_run_unlisted(dd_owner *o, const char *run_id);
/* A describe or close-event read of the owned run is in flight (the loss
 * watch counts them against its cap, watch.c). */
bool dd_owner_checking(const dd_owner *o);
/* How long the current ownership has lasted (0 unless owning). */
uint64_t dd_owner_owned_for_ms(const dd_owner *o);

/* ---- heartbeats, fencing and failover (heartbeat.c) ---------------------- */

/* Keeps one dispatcher's Redis record in step with its owner:
 *  - when the owner starts owning: claim the record (a new fencing epoch),
 *    then heartbeat every interval; a fenced heartbeat means a newer owner
 *    exists, and the owner is told it lost (dd_owner_fenced);
 *  - when it stops owning on release: delete the record if still ours;
 *  - while NOT owning (a standby): read the record and arm a timer for the
 *    moment it turns stale; when it is stale (or gone) take the
 *    dispatcher's failover lease (held for a threshold), so exactly one
 *    standby takes over, and take over termination-first. */
struct dd_store;
typedef struct dd_heartbeat dd_heartbeat;
typedef struct dd_heartbeat_group dd_heartbeat_group;

typedef struct dd_heartbeat_opts {
    int64_t interval_ms;  /* default 5000 */
    int64_t threshold_ms; /* stale threshold, default 15000 */
    bool failover;        /* standbys take over stale dispatchers */
    /* Worker eviction (R10): while owning, each interval removes (fenced by
     * our epoch) at most evict_batch workers whose heartbeat is older than
     * threshold_ms, and tells the dispatcher workflow about registrations
     * and evictions with one "workers" signal per batch. NULL t: no signals. */
    struct dd_temporal *t;
    const char *workers_signal; /* signal name (copied); NULL: no signals */
    size_t evict_batch;   /* default 100 */
    /* The host's beat group (dd_heartbeat_group_new), or NULL: this
     * dispatcher's heartbeats then go out on a timer of its own. With a
     * group they go out together with every other owned dispatcher's, in
     * one store call per interval; same store and interval required. */
    dd_heartbeat_group *group;
} dd_heartbeat_opts;

/* s and o are borrowed. Wire dd_heartbeat_owner_changed into the owner's
 * on_change callback. 0 and *out, or DD_EINVAL (reason in err) for an
 * interval or threshold that is not above zero. */
int dd_heartbeat_new(const dd_ctx *ctx, struct dd_store *s, dd_owner *o,
                     const dd_heartbeat_opts *opts, dd_heartbeat **out, char *err, size_t errlen);
void dd_heartbeat_owner_changed(dd_heartbeat *h, bool owning, const char *run_id);
/* Wire to the owner's on_chain: the record moves to the chain's new run. */
void dd_heartbeat_chain_moved(dd_heartbeat *h, const char *run_id);
/* Wire to the owner's on_stopped_acting: tells the next owner (handoff). */
void dd_heartbeat_stopped_acting(dd_heartbeat *h, const char *run_id);
/* Begins watching as a standby (call after the owner's first takeover
 * attempt failed to own, or right away: owning cancels the watch). */
void dd_heartbeat_start(dd_heartbeat *h);
/* A standby was told (dd:released: a graceful release or a last will of
 * the dispatcher's owner; why "release"), or may have missed such a message
 * (why "resubscribed"): it reads the record now instead of at its timer,
 * and fails over through the lease if it is stale or gone. No-op unless
 * standing by, except that on "resubscribed" an owner reads its own record
 * (a takeover notice may have been lost meanwhile; the host's owners read
 * theirs in one batched read) and lets go if it names a newer epoch, as
 * dd_heartbeat_taken does. */
void dd_heartbeat_notified(dd_heartbeat *h, const char *why);
/* A takeover notice (dd:taken) for this dispatcher naming run_id: if we own
 * it under another run, read the record and let go if it names a newer
 * epoch (hb_taken.c; a notice is only a reason to look). No-op otherwise. */
void dd_heartbeat_taken(dd_heartbeat *h, const char *run_id);
/* Sends a heartbeat now if we own and none is in flight (wire to the
 * owner's want_heartbeat). */
void dd_heartbeat_want(dd_heartbeat *h);
/* Stops timers; gives back a failover lease a takeover did not finish with;
 * waits for every Redis request in flight (a claim that lands after the
 * owner let go is deleted first, and one whose answer never came is read
 * and deleted if it is ours: docs/ownership.md, "Shutdown during a
 * takeover"); then done(arg) and frees h. */
void dd_heartbeat_close(dd_heartbeat *h, void (*done)(void *arg), void *arg);
/* One timer per host for the heartbeats of all its owned dispatchers
 * (hb_batch.c): every interval, every member that owns (or is releasing)
 * and has no write in flight is heartbeated in one
 * dd_store_heartbeat_batch call (chunks of DD_STORE_BEAT_MAX), each fenced
 * on its own run id and epoch and answered on its own: the deadlines
 * (fence.h) stay per dispatcher, anchored to the batch's send time. A
 * member whose own schedule (last send + interval) comes before the
 * group's next tick (its claim landed just after a tick) sends that one
 * heartbeat alone, so no heartbeat is ever later than it would be without
 * the group. Claims, failover reads and out-of-turn heartbeats (a child
 * that needs a fresh landing) stay individual. The group lives while its
 * creator's reference or any member does: call dd_heartbeat_group_unref
 * once the members are made (each member holds its own reference). */
dd_heartbeat_group *dd_heartbeat_group_new(struct uv_loop_s *loop, struct dd_store *s,
                                           int64_t interval_ms);
void dd_heartbeat_group_unref(dd_heartbeat_group *g);
/* Redis is reachable again (the store's on_state(0)): when a heartbeat
 * failed since the last tick, send the batch now and count the interval
 * from now. Why: after an outage the next tick can come up to one interval
 * later, past the acting deadline of a child whose heartbeats failed
 * during it (seen: a Sentinel switch of 1.2 s stopped every child at a 1 s
 * interval, 70 ms before the tick that would have landed). */
void dd_heartbeat_group_kick(dd_heartbeat_group *g);

/* The fencing epoch of the current ownership (0 when none). */
int64_t dd_heartbeat_epoch(const dd_heartbeat *h);
/* The fenced part of the last will for the current ownership
 * (child/will.h: workflow id, run, chain, epoch, server id, the handoff
 * flag's life, expire in workflow mode); false while no claim of ours has
 * landed (no will then). The connection part is the caller's. */
struct dd_will;
bool dd_heartbeat_will(const dd_heartbeat *h, struct dd_will *w);
/* Workers registered at the last check while owning (0 when not owning). */
size_t dd_heartbeat_workers(const dd_heartbeat *h);

#endif
