/* reconcile.h - the stale dispatcher reconciler (R5-R8).
 *
 * A cycle asks the store for heartbeat records older than the stale
 * threshold (a range query on the dd:hb:index ZSET, never a keyspace scan)
 * and, for each candidate (up to max_inflight of them at once, each in its
 * own lane, taken oldest first):
 *
 *   lease "failover:<wid>" (SET NX PX, ~30 s)   busy -> a standby or another host has it
 *   the run (wid, run_id): as the cycle's visibility   must be a dispatchd.dispatcher run
 *     listing shows it (RunId IN (...), 100 per query),
 *     or, when not listed, a describe of exactly it
 *   RUNNING: token bucket -> terminate exactly that run  then compare-and-delete the record
 *   closed / not found:                                  compare-and-delete only
 *   release the lease
 *
 * Terminate first, delete second: the record is the only thing that points
 * at an orphaned run. If we deleted first and then failed to terminate
 * (Temporal down, our process killed), nothing would ever find that run
 * again and it would keep running as a second dispatcher. The other order
 * fails safe: a terminate that fails leaves the record, and the next cycle
 * (ours or another host's) retries.
 *
 * Visibility lags: a run it lists as closed is closed for good (a status
 * never goes back), and one it lists as running is ended by its exact run
 * id (a terminate that finds it closed ends nothing else), but a run it
 * does not list may just not be visible yet: that one is described, never
 * taken as gone (docs/reconcile.md, "Visibility in batches").
 *
 * Compare-and-delete: between the stale query and the delete, the record may
 * have been refreshed (a paused owner woke up and heartbeated) or re-claimed
 * (a new owner took over with a new run id). The delete is a Lua script that
 * removes the record only if run_id and hb_ms are still the ones we
 * classified, so we never remove a record that someone else just wrote;
 * such a record is kept, logged and counted as kept_refreshed.
 *
 * Scheduling: the first cycle runs after a per-host stagger (a hash of the
 * holder, up to 10 % of the interval, plus up to 2 % random jitter) so a
 * fleet restarted together does not query in lockstep; then every interval
 * +/- 10 %. After every cycle the reconciler also asks for the oldest
 * heartbeat that is not stale yet and arms its timer for the moment that
 * record would turn stale (plus 50 ms), so a crashed owner is cleaned up
 * about `threshold` after its last heartbeat instead of up to a full
 * interval later. Early wake-ups are capped at one per second.
 *
 * Sweep (opts.sweep): records lost to a Redis flush or failover leave
 * running dispatchers no cycle can see. Every sweep_interval_ms (default
 * 5 x interval) the cycle also lists running dispatchd.dispatcher workflows
 * in Temporal and terminates those seen without a matching record for more
 * than the threshold (remembered in memory between sweeps) whose run also
 * started more than the threshold ago.
 *
 * Metrics: dispatchd_dispatchers_active, dispatchd_dispatchers_stale,
 * dispatchd_stale_terminations_total, dispatchd_stale_cleanups_total,
 * dispatchd_cleanup_errors_total{stage}, dispatchd_reconcile_cycles_total{result},
 * dispatchd_reconcile_duration_seconds. Logs: event=reconcile_cycle per
 * cycle; stale_terminate, stale_cleanup, stale_kept, reconcile_error,
 * reconcile_malformed per record. */
#ifndef DD_RECONCILE_RECONCILE_H
#define DD_RECONCILE_RECONCILE_H

#include "core/ctx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dd_store;
struct dd_temporal;

typedef struct dd_reconcile_stats {
    int result;             /* 0 ok, else the first error (DD_ECANCELED: closed mid-cycle) */
    int64_t active, stale;  /* fleet-wide counts from the index at cycle start:
                             * active = fresh heartbeats, stale = older than
                             * the threshold (all of them, not just this batch) */
    int candidates;         /* records examined this cycle (<= batch) */
    int terminated;         /* runs we terminated (cycle + sweep) */
    int already_closed;     /* runs found closed or gone: record deleted only */
    int cleaned;            /* records we deleted */
    int kept_refreshed;     /* compare-and-delete refused: refreshed/re-claimed meanwhile */
    int malformed;          /* records with missing/bad fields or not a dispatcher: kept */
    int leased_elsewhere;   /* another host held the candidate's lease */
    int swept;              /* sweep: running dispatchers without a record, terminated */
    int errors;             /* Redis/Temporal failures (any makes result an error) */
    int visible;            /* decided from the batched visibility listing of their run */
    int described;          /* describes sent (not listed, chains, failed listing) */
    bool sweep_ran;
    double duration_ms;
} dd_reconcile_stats;

typedef struct dd_reconciler dd_reconciler;

typedef struct dd_reconciler_opts {
    int64_t stale_threshold_ms;  /* default 15000 */
    int64_t interval_ms;         /* full cycle period, default 60000 */
    double terminate_rate;       /* terminations per second (token bucket), default 10 */
    const char *holder;          /* required: this host's server id (leases, reasons, logs) */
    size_t batch;                /* candidates per cycle, default 1000 */
    /* Candidates worked on at once (lanes), default 16. 1: one at a time.
     * Each lane holds one lease and at most one Redis or Temporal call. */
    size_t max_inflight;
    bool sweep;                  /* also sweep Temporal for dispatchers without a record */
    int64_t sweep_interval_ms;   /* minimum time between sweeps; default 5 x interval_ms */
    int64_t lease_ttl_ms;        /* per-candidate lease; default 30000 */
    uint64_t seed;               /* jitter seed; 0: from the kernel */
    /* Extra visibility clause ANDed to the sweep's query, e.g.
     * "TaskQueue='billing'", for a fleet that shares a namespace with
     * dispatchers whose records live in another Redis. NULL: whole namespace. */
    const char *sweep_scope;
    /* Wall clock in ms (heartbeats are wall-clock stamps); NULL: dd_wall_ms.
     * Tests pin it to check the threshold boundary exactly. Gets arg. */
    int64_t (*clock_ms)(void *arg);
    /* Called after every finished cycle (not for one cut short by close). */
    void (*on_cycle)(const dd_reconcile_stats *st, void *arg);
    /* Observer called after each successful terminate, before the record's
     * compare-and-delete is sent (tests use it to race a refresh). May be NULL. */
    void (*on_terminated)(const char *workflow_id, const char *run_id, void *arg);
    void *arg;
} dd_reconciler_opts;

/* ctx, s and t are borrowed and must outlive the reconciler; opts (and the
 * holder and sweep_scope strings) are copied. 0 and *out, or DD_EINVAL with
 * the reason in err when the holder is missing or an option is negative.
 * Free with dd_reconciler_close(). */
int dd_reconciler_new(const dd_ctx *ctx, struct dd_store *s, struct dd_temporal *t,
                      const dd_reconciler_opts *o, dd_reconciler **out, char *err, size_t errlen);
/* First cycle after the per-host stagger, then periodic (see above). */
void dd_reconciler_start(dd_reconciler *r);
/* One cycle now; done (may be NULL) runs once, from the loop, with the
 * stats (valid during the call). 0, DD_EBUSY while a cycle is in flight,
 * DD_ECANCELED when closing. A started reconciler re-arms its timer after
 * this cycle as after any other. */
int dd_reconciler_run_once(dd_reconciler *r, void (*done)(const dd_reconcile_stats *, void *),
                           void *arg);
/* Stops timers, cancels every in-flight Temporal call (a cycle in progress
 * ends with DD_ECANCELED), drops the lanes waiting for a token, waits for the
 * in-flight store replies (bounded by the store's command timeout, or
 * immediate when the store is closed), closes
 * the handles, then calls done(arg) (may be NULL) from the loop and frees r. */
void dd_reconciler_close(dd_reconciler *r, void (*done)(void *), void *arg);

/* ---- pure parts (exposed for unit tests) -------------------------------- */

/* Delay before the first cycle: hash(holder) mod (interval/10), plus
 * u * interval/50 of jitter (u in [0,1)). Always in [0, interval*12/100). */
int64_t dd_reconcile_stagger_ms(const char *holder, int64_t interval_ms, double u);
/* interval * (0.9 + 0.2 u): in [0.9, 1.1) x interval. */
int64_t dd_reconcile_jitter_ms(int64_t interval_ms, double u);
/* Milliseconds from now until the next cycle: until the periodic deadline
 * (periodic_ms), or sooner when the oldest non-stale heartbeat (oldest_hb_ms,
 * wall clock; < 0 when there is none) turns stale at oldest + threshold + 1
 * (+ 50 ms slack); never sooner than min_gap_ms. */
int64_t dd_reconcile_next_wake_ms(int64_t now_wall_ms, int64_t oldest_hb_ms,
                                  int64_t threshold_ms, int64_t periodic_ms, int64_t min_gap_ms);
/* Whether a running dispatcher without a record is old enough to sweep: seen
 * without one for more than threshold_ms (first_seen_ms) and started more
 * than threshold_ms ago (start_ms), all wall ms. start_ms 0 is unknown (the
 * client could not read it: absent, malformed, or outside 1677-2262 like
 * Go's zero time 0001-01-01): then the first sighting alone decides. A start
 * or sighting in the future (clock skew) is not old. No overflow for any
 * input; threshold_ms >= 0. */
bool dd_reconcile_sweep_due(int64_t now_ms, int64_t first_seen_ms, int64_t start_ms,
                            int64_t threshold_ms);
/* "stale: no heartbeat from <server_id> for <age>" (age as "1m30s"). */
void dd_reconcile_reason(char *out, size_t outlen, const char *server_id, int64_t age_ms);

#endif
