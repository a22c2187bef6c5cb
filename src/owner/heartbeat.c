/* heartbeat.c - the owner's Redis record: claim, heartbeat, release, and
 * the standby's failover watch. See owner.h for the contract.
 *
 * Why heartbeats at all, when Temporal already knows who runs: a host that
 * dies without releasing leaves its run Running forever. The record's age
 * is what tells everyone (the reconciler, the standbys) that the owner is
 * gone. Its writes are fenced by the epoch from claim, so an owner that was
 * paused past the threshold and wakes up cannot refresh a record a newer
 * owner holds (it learns it lost instead). Times in the record are Redis's
 * (TIME inside the scripts), and standbys judge age by Redis's clock too:
 * host clocks never decide who is stale; only their rates matter, through
 * the timers (fence.h).
 *
 * This file: the lifecycle, the timer and the owner's fenced writes; the
 * standby (hb_failover.c), the handoff (hb_handoff.c) and the worker
 * registry (hb_workers.c) share heartbeat_int.h. */
#include "owner/heartbeat_int.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>



/* The dispatcher's failover lease (see dd_hb__try_failover). */
void dd_hb__lease_name(const dd_heartbeat *h, dd_buf *name)
{
    dd_buf_printf(name, DD_STORE_LEASE_FAILOVER, dd_owner_workflow_id(h->o));
}

void dd_hb__give_back_lease(dd_heartbeat *h)
{
    dd_buf name = DD_BUF_INIT;
    dd_hb__lease_name(h, &name);
    if (dd_store_lease_release(h->s, dd_buf_str(&name), dd_owner_server_id(h->o),
                               dd_hb__lease_given_back, h) == 0)
        h->inflight++;
    dd_buf_release(&name);
}

static void dd_hb_tick(uv_timer_t *t);

static void dd_hb_timer_closed(uv_handle_t *t)
{
    dd_heartbeat *h = t->data;
    if (--h->closes > 0)
        return;
    dd_hb__group_leave(h);
    free(h->known);
    free(h->workers_signal);
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

void dd_hb__finish_close(dd_heartbeat *h)
{
    if (!h->closing || h->inflight > 0 || uv_is_closing((uv_handle_t *)&h->timer))
        return;
    h->closes = 3;
    uv_close((uv_handle_t *)&h->timer, dd_hb_timer_closed);
    uv_close((uv_handle_t *)&h->ack_timer, dd_hb_timer_closed);
    uv_close((uv_handle_t *)&h->unsure_timer, dd_hb_timer_closed);
}

/* Every reply: one less in flight. False when closing: the reply is
 * dropped and the close finishes once nothing is in flight. */
bool dd_hb__reply(dd_heartbeat *h)
{
    h->inflight--;
    if (!h->closing)
        return true;
    dd_hb__finish_close(h);
    return false;
}

void dd_hb__arm(dd_heartbeat *h, int64_t delay_ms)
{
    if (h->closing)
        return;
    if (delay_ms < 0)
        delay_ms = 0;
    uv_timer_start(&h->timer, dd_hb_tick, (uint64_t)delay_ms, 0);
}

int dd_heartbeat_new(const dd_ctx *ctx, dd_store *s, dd_owner *o, const dd_heartbeat_opts *opts,
                     dd_heartbeat **out, char *err, size_t errlen)
{
    *out = NULL;
    if (opts->interval_ms <= 0 || opts->threshold_ms <= 0) {
        dd_msgf(err, errlen, "heartbeat: interval and threshold must be above zero");
        return DD_EINVAL;
    }
    if (opts->group && !dd_hb__group_fits(opts->group, s, opts->interval_ms)) {
        dd_msgf(err, errlen, "heartbeat: a beat group serves one store and one interval");
        return DD_EINVAL;
    }
    dd_heartbeat *h = dd_xcalloc(1, sizeof(*h));
    h->ctx = *ctx;
    h->s = s;
    h->o = o;
    h->opts = *opts;
    if (h->opts.interval_ms <= 0)
        h->opts.interval_ms = 5000;
    if (h->opts.threshold_ms <= h->opts.interval_ms)
        h->opts.threshold_ms = 3 * h->opts.interval_ms;
    if (h->opts.evict_batch == 0)
        h->opts.evict_batch = 100;
    dd_rng_seed(&h->rng, 0);
    snprintf(h->nonce, sizeof(h->nonce), "%016llx", (unsigned long long)dd_rng_next(&h->rng));
    h->workers_signal = opts->workers_signal ? dd_strdup(opts->workers_signal) : NULL;
    h->opts.workers_signal = NULL;
    dd_backoff_init(&h->fo_backoff, h->opts.interval_ms,
                    h->opts.threshold_ms > 30000 ? h->opts.threshold_ms : 30000, 0);
    if (ctx->metrics) {
        h->m_evictions = dd_metrics_family(ctx->metrics, DD_COUNTER,
                                           "dispatchd_worker_evictions_total",
                                           "Workers evicted from the registry of a dispatcher "
                                           "this process owns because their heartbeat went stale.",
                                           NULL, NULL, 0);
        h->m_registered = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_workers_registered",
                                            "Workers registered with the dispatchers this process "
                                            "owns.",
                                            NULL, NULL, 0);
        dd_metric_add(h->m_evictions, NULL, 0);
        dd_metric_add(h->m_registered, NULL, 0);
        h->m_notices = dd_metrics_family(ctx->metrics, DD_COUNTER,
                                         "dispatchd_release_notices_total",
                                         "Releases and last wills heard on dd:released for a "
                                         "dispatcher this process stands by for: each makes it "
                                         "look at the record at once.",
                                         NULL, NULL, 0);
        dd_metric_add(h->m_notices, NULL, 0);
        const char *const rl[] = {"result", NULL};
        h->m_taken = dd_metrics_family(ctx->metrics, DD_COUNTER,
                                       "dispatchd_takeover_notices_total",
                                       "Takeover notices (dd:taken) for a dispatcher this process "
                                       "owned under another run, by what reading the record "
                                       "showed: lost (a newer epoch: ownership let go), ignored "
                                       "(still ours), unread (Redis did not answer).",
                                       rl, NULL, 0);
        dd_metric_add(h->m_taken, DD_L1("lost"), 0);
        dd_metric_add(h->m_taken, DD_L1("ignored"), 0);
        dd_metric_add(h->m_taken, DD_L1("unread"), 0);
        h->m_own_threshold = dd_metrics_family(ctx->metrics, DD_GAUGE,
                                               DD_METRIC_STALE_THRESHOLD,
                                               DD_METRIC_STALE_THRESHOLD_HELP, NULL, NULL, 0);
        dd_metric_set(h->m_own_threshold, NULL, (double)h->opts.threshold_ms / 1000.0);
        const char *const lbl[] = {"dispatcher", NULL};
        h->m_mismatch = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_threshold_mismatch",
                                          "1 while the dispatcher's owner record carries a stale "
                                          "threshold (ttl_ms) other than this process's "
                                          "--stale-threshold, else 0.",
                                          lbl, NULL, 0);
        dd_metric_set(h->m_mismatch, DD_L1(dd_owner_name(h->o)), 0);
    }
    uv_timer_init(ctx->loop, &h->timer);
    uv_timer_init(ctx->loop, &h->ack_timer);
    uv_timer_init(ctx->loop, &h->unsure_timer);
    h->timer.data = h->ack_timer.data = h->unsure_timer.data = h;
    if (opts->group)
        dd_hb__group_join(opts->group, h);
    *out = h;
    return 0;
}

/* ---- owner side ------------------------------------------------------- *
 *
 * Self-fencing is the owner's timer (owner.c, fence.h), anchored to the send
 * time of the last write that landed: we report every landing with the time
 * the request went out, and a write that fails or hangs simply reports
 * nothing. Writes go out at a fixed rate, one interval after the previous
 * send, so a slow reply does not push every later heartbeat back. */

/* Arms the next owner write one interval after the last send; in a beat
 * group, a heartbeat the group's next tick sends no later goes with it. */
static void dd_hb_arm_next(dd_heartbeat *h)
{
    if ((h->owning || h->releasing) && h->claimed &&
        dd_hb__group_covers(h, h->sent_us + h->opts.interval_ms * 1000)) {
        uv_timer_stop(&h->timer);
        return;
    }
    int64_t next = (h->sent_us - dd_boot_us()) / 1000 + h->opts.interval_ms;
    dd_hb__arm(h, next);
}

static void dd_hb_write_ok(dd_heartbeat *h, const dd_store_owner *res)
{
    h->srv_now_ms = res ? res->now_ms : 0;
    dd_owner_heartbeat_landed(h->o, h->sent_us); /* may ask for another write */
}

static void dd_hb_released(int st, const dd_store_owner *res, void *arg);

/* The owner let go (release, shutdown) without a claim of ours known to
 * have landed. */
static bool dd_hb_let_go(const dd_heartbeat *h)
{
    dd_owner_state os = dd_owner_get_state(h->o);
    return !h->owning && (os == DD_OWNER_RELEASING || os == DD_OWNER_STOPPED);
}

static void dd_hb_unsure_try(dd_heartbeat *h);
static void dd_hb_unsure_fire(uv_timer_t *t);

/* Not sent or not answered (Redis reconnecting after the timeout that made
 * the claim unsure): again in 100 ms, until unsure_until_ms. The armed
 * timer counts as in flight, so a close waits for it. */
static void dd_hb_unsure_retry(dd_heartbeat *h, int st)
{
    if (dd_mono_ms() < h->unsure_until_ms) {
        h->inflight++;
        uv_timer_start(&h->unsure_timer, dd_hb_unsure_fire, 100, 0);
        return;
    }
    dd_warn(h->ctx.log, "record_release_failed", "dispatcher=%s error=%s note=%s",
            dd_owner_name(h->o), dd_strerror(st),
            "a claim of ours may have landed; the reconciler will clean it up");
}

static void dd_hb_unsure_read(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    /* ours: our run and this process's nonce, whatever epoch the claim got;
     * the release is fenced by that epoch, so a claim that lands between
     * this read and the release (someone else's) keeps its record */
    if (st == 0 && !rec->malformed && rec->run_id && !strcmp(rec->run_id, h->run_id) &&
        rec->nonce && !strcmp(rec->nonce, h->nonce)) {
        dd_info(h->ctx.log, "record_claim_late", "dispatcher=%s run_id=%s epoch=%lld action=%s",
                dd_owner_name(h->o), h->run_id, (long long)rec->epoch, "release");
        if (dd_store_release(h->s, dd_owner_workflow_id(h->o), h->run_id, rec->epoch,
                             dd_hb_released, h) == 0)
            h->inflight++;
    } else if (st < 0 && st != DD_ENOTFOUND) {
        dd_hb_unsure_retry(h, st);
    }
    dd_hb__finish_close(h);
}

static void dd_hb_unsure_fire(uv_timer_t *t)
{
    dd_heartbeat *h = t->data;
    h->inflight--;
    dd_hb_unsure_try(h);
    dd_hb__finish_close(h);
}

static void dd_hb_unsure_try(dd_heartbeat *h)
{
    int rc = dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb_unsure_read, h);
    if (rc == 0)
        h->inflight++;
    else
        dd_hb_unsure_retry(h, rc);
}

/* After we let go: a claim whose answer never came may still have written
 * the record. Read it, and delete it if it is ours (dd_hb_unsure_read). */
static void dd_hb_drop_unsure(dd_heartbeat *h)
{
    if (!h->claim_unsure || h->writing || !dd_hb_let_go(h))
        return;
    h->claim_unsure = false;
    /* bounded: a shutdown waits at most one heartbeat interval for Redis */
    h->unsure_until_ms = dd_mono_ms() + (uint64_t)h->opts.interval_ms;
    dd_hb_unsure_try(h);
}

void dd_hb__claimed(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->writing = false;
    h->claim_unsure = st < 0 && st != DD_ECANCELED;
    if (st == 0 && dd_hb_let_go(h)) {
        /* The owner let go (a shutdown) while this claim was in flight, so
         * dd_heartbeat_owner_changed had no record to keep or delete; but
         * the claim landed after that: the record names us now. Delete it,
         * fenced by the epoch it got (a close waits for this: inflight). */
        dd_info(h->ctx.log, "record_claim_late", "dispatcher=%s run_id=%s epoch=%lld action=%s",
                dd_owner_name(h->o), h->run_id, (long long)res->epoch, "release");
        if (dd_store_release(h->s, dd_owner_workflow_id(h->o), h->run_id, res->epoch,
                             dd_hb_released, h) == 0)
            h->inflight++;
    }
    dd_hb_drop_unsure(h);
    if (!dd_hb__reply(h))
        return;
    if (!h->owning)
        return;
    if (st == 0) {
        h->claimed = true;
        h->epoch = res->epoch;
        if (h->waiting_prev && h->ack_deadline_ms == INT64_MAX)
            h->ack_deadline_ms = (int64_t)dd_mono_ms() + h->opts.threshold_ms;
        dd_hb_arm_next(h);
        dd_hb_write_ok(h, res);
        if (h->lease_after_claim) {
            h->lease_after_claim = false;
            dd_hb__give_back_lease(h);
        }
        dd_info(h->ctx.log, "record_claimed", "dispatcher=%s workflow_id=%s run_id=%s epoch=%lld",
                dd_owner_name(h->o), dd_owner_workflow_id(h->o), h->run_id,
                (long long)h->epoch);
        dd_hb__note_ttl(h, h->opts.threshold_ms); /* the record carries ours now */
        dd_hb__announce_claim(h);     /* the owner we replaced lets go at once */
        dd_hb__taken_after_claim(h);
        return;
    }
    dd_warn(h->ctx.log, "record_claim_failed", "dispatcher=%s error=%s retry_in_ms=%lld",
            dd_owner_name(h->o), dd_strerror(st), (long long)h->opts.interval_ms);
    dd_hb_arm_next(h);
}

void dd_hb__claim(dd_heartbeat *h)
{
    dd_store_claim_args a = {.workflow_id = dd_owner_workflow_id(h->o),
                             .run_id = h->run_id,
                             .server_id = dd_owner_server_id(h->o),
                             .project = dd_owner_project(h->o),
                             .queue = dd_owner_queue(h->o),
                             .now_ms = 0, /* Redis's clock */
                             .ttl_ms = h->opts.threshold_ms,
                             .first_run_id = dd_owner_first_run_id(h->o),
                             .nonce = h->nonce,
                             .wf_type = dd_owner_workflow_type(h->o)};
    int64_t sent = dd_boot_us();
    int rc = dd_store_claim(h->s, &a, dd_hb__claimed, h);
    if (rc == 0) {
        h->inflight++;
        h->writing = true;
        h->sent_us = sent;
        return;
    }
    dd_hb__arm(h, h->opts.interval_ms);
}

void dd_hb__beat_done(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->writing = false;
    if (!dd_hb__reply(h))
        return;
    if (h->releasing) {
        /* keep the record fresh, and our child's deadline with it, until
         * the child has stopped */
        if (st == 0) {
            dd_hb_arm_next(h);
            dd_hb_write_ok(h, res);
        } else {
            dd_hb__group_missed(h); /* sent again at once when Redis is back */
        }
        return;
    }
    if (!h->owning)
        return;
    if (st == DD_EFENCED) {
        char holder[200];
        snprintf(holder, sizeof(holder), "%s", res && res->server_id ? res->server_id : "none");
        dd_warn(h->ctx.log, "heartbeat_fenced",
                "dispatcher=%s run_id=%s epoch=%lld holder=%s holder_run_id=%s",
                dd_owner_name(h->o), h->run_id, (long long)h->epoch, holder,
                res && res->run_id ? res->run_id : "");
        dd_owner_fenced(h->o, holder); /* comes back as owner_changed(false) */
        return;
    }
    dd_hb_arm_next(h);
    if (st < 0) {
        dd_hb__group_missed(h); /* sent again at once when Redis is back */
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(st));
    } else {
        dd_hb_write_ok(h, res);
        if (h->owning)
            dd_hb__workers_check(h);
    }
}

static void dd_hb_tick(uv_timer_t *t)
{
    dd_heartbeat *h = t->data;
    if (h->closing)
        return;
    if (h->owning || h->releasing) {
        if (h->writing)
            return; /* its reply arms the next one */
        if (!h->claimed) {
            dd_hb__claim(h);
            return;
        }
        int64_t sent = dd_boot_us();
        int rc = dd_store_heartbeat_chain(h->s, dd_owner_workflow_id(h->o), h->run_id,
                                          h->first_run_id[0] ? h->first_run_id : NULL, h->epoch,
                                          0 /* Redis's clock */, h->opts.threshold_ms,
                                          dd_hb__beat_done, h);
        if (rc == 0) {
            h->inflight++;
            h->writing = true;
            h->sent_us = sent;
            return;
        }
        dd_hb__group_missed(h); /* sent again at once when Redis is back */
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(rc));
        dd_hb__arm(h, h->opts.interval_ms);
        return;
    }
    /* an owner that let go (release, --on-workflow-exit release) stands by no more */
    if (!h->opts.failover || dd_owner_get_state(h->o) == DD_OWNER_STOPPED)
        return;
    if (h->failing_over && dd_owner_get_state(h->o) == DD_OWNER_LOST) {
        /* Our failover attempt failed: give the lease back at once so the
         * next attempt (ours or another standby's) need not wait it out,
         * and wait a growing while before we try again ourselves. */
        h->failing_over = false;
        dd_hb__give_back_lease(h);
        int64_t delay = dd_backoff_next(&h->fo_backoff);
        h->fo_not_before = dd_mono_ms() + (uint64_t)delay;
        dd_warn(h->ctx.log, "failover_backoff", "dispatcher=%s retry_in_ms=%lld",
                dd_owner_name(h->o), (long long)delay);
    }
    if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb__watch_done, h) == 0) {
        h->inflight++;
        h->watch_reading = true;
    } else {
        dd_hb__arm(h, h->opts.interval_ms);
    }
}

static void dd_hb_released(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (st == 0)
        dd_info(h->ctx.log, "record_released", "dispatcher=%s", dd_owner_name(h->o));
    else if (st != DD_EFENCED)
        dd_warn(h->ctx.log, "record_release_failed", "dispatcher=%s error=%s note=%s",
                dd_owner_name(h->o), dd_strerror(st), "the reconciler will clean it up");
    dd_hb__finish_close(h);
    if (!h->closing && !h->owning)
        dd_hb__arm(h, h->opts.interval_ms);
}

void dd_hb__lease_set(int st, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (st < 0 && st != DD_ECANCELED)
        dd_warn(h->ctx.log, "handoff_ack_failed", "dispatcher=%s error=%s",
                dd_owner_name(h->o), dd_strerror(st));
    dd_hb__finish_close(h);
}

void dd_heartbeat_stopped_acting(dd_heartbeat *h, const char *run_id)
{
    if (h->releasing && strcmp(run_id, h->run_id) == 0) {
        h->releasing = false;
        h->claimed = false;
        uv_timer_stop(&h->timer);
        /* the record goes, the handoff flag is set (unless we still wait
         * for our own predecessor: hb_handoff.c) and the standbys are told
         * at once, as a last will does (hb_handoff.c, dd_heartbeat_will) */
        dd_store_let_go_args a = {.workflow_id = dd_owner_workflow_id(h->o),
                                  .run_id = h->run_id,
                                  .first_run_id = h->first_run_id[0] ? h->first_run_id : NULL,
                                  .epoch = h->epoch,
                                  .ack_holder = h->waiting_prev ? NULL : dd_owner_server_id(h->o),
                                  .ack_ttl_ms = 2 * h->opts.threshold_ms};
        if (dd_store_let_go(h->s, &a, dd_hb_released, h) == 0)
            h->inflight++;
        h->epoch = 0;
        return;
    }
    if (h->closing)
        return;
    if (h->waiting_prev) { /* see the handoff note: say so once our wait is over */
        snprintf(h->fwd_run, sizeof(h->fwd_run), "%s", run_id);
        return;
    }
    dd_hb__publish_ack(h, run_id);
}

void dd_heartbeat_owner_changed(dd_heartbeat *h, bool owning, const char *run_id)
{
    h->taken_pending = h->taken_again = false; /* notices were about the last ownership */
    if (owning) {
        /* A failover's lease is given back once our claim is in Redis (a
         * standby reading the record then sees us, fresh), not before. */
        h->lease_after_claim = h->failing_over;
        h->owning = true;
        h->failing_over = false;
        h->claimed = false;
        h->srv_now_ms = 0;
        /* a new ownership is a new chain in workflow mode */
        snprintf(h->first_run_id, sizeof(h->first_run_id), "%s",
                 dd_owner_workflow_type(h->o) ? run_id : "");
        dd_backoff_reset(&h->fo_backoff);
        h->fo_not_before = 0;
        snprintf(h->run_id, sizeof(h->run_id), "%s", run_id);
        uv_timer_stop(&h->timer);
        /* Read the record we are replacing before claim overwrites it. */
        if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb__prev_record, h) == 0) {
            h->inflight++;
        } else {
            /* cannot tell who was acting: wait for the run we replaced (our
             * child needs a landed claim anyway, so nothing acts before
             * Redis answers) */
            const char *prev = dd_owner_previous_run_id(h->o);
            dd_hb__claim(h);
            if (prev[0] && strcmp(prev, dd_owner_own_previous_run_id(h->o)) != 0)
                dd_hb__wait_for(h, &prev, 1);
            else if (!h->waiting_prev)
                dd_owner_open_gate(h->o, "no previous run");
        }
        return;
    }
    /* a handoff wait goes on after a loss: our own flag waits for it
     * (bounded: without our claim landing, one threshold from now) */
    if (h->waiting_prev && h->ack_deadline_ms == INT64_MAX)
        h->ack_deadline_ms = (int64_t)dd_mono_ms() + h->opts.threshold_ms;
    bool was_claimed = h->owning && h->claimed;
    h->owning = false;
    dd_hb__forget_workers(h);
    if (was_claimed && dd_owner_get_state(h->o) == DD_OWNER_RELEASING) {
        /* A clean release leaves nothing for the reconciler, but the record
         * stays fresh until our child has stopped (dd_heartbeat_stopped_acting):
         * a standby that saw it vanish now could start its child next to ours. */
        h->releasing = true;
        return;
    }
    h->claimed = false;
    dd_hb_drop_unsure(h); /* a claim that timed out may have landed */
    uv_timer_stop(&h->timer);
    if (h->opts.failover)
        dd_hb__arm(h, h->opts.interval_ms); /* lost: become a standby */
    h->epoch = 0;
}

void dd_heartbeat_chain_moved(dd_heartbeat *h, const char *run_id)
{
    if (!h->owning || !strcmp(run_id, h->run_id))
        return;
    /* until a heartbeat lands the record names an earlier run of the chain:
     * the next heartbeat moves it (dd_store_heartbeat_chain, by first run) */
    snprintf(h->run_id, sizeof(h->run_id), "%s", run_id);
    dd_heartbeat_want(h);
}

void dd_heartbeat_want(dd_heartbeat *h)
{
    if (h->closing || !(h->owning || h->releasing) || !h->claimed || h->writing)
        return;
    dd_hb__arm(h, 0);
}

void dd_heartbeat_start(dd_heartbeat *h)
{
    if (!h->owning && h->opts.failover)
        dd_hb__arm(h, h->opts.interval_ms);
}

int64_t dd_heartbeat_epoch(const dd_heartbeat *h)
{
    return h->owning && h->claimed ? h->epoch : 0;
}

void dd_heartbeat_close(dd_heartbeat *h, void (*done)(void *), void *arg)
{
    dd_hb__forget_workers(h);
    if (h->failing_over || h->lease_after_claim) {
        /* a shutdown interrupted our failover (before the takeover ended, or
         * before its claim landed): the lease goes back now, or the next
         * standby would wait out its life (threshold + 2 x the call deadline + 5 s) */
        h->failing_over = h->lease_after_claim = false;
        dd_hb__give_back_lease(h);
    }
    if (h->releasing) /* the owner stopped (its child too): the record goes now */
        dd_heartbeat_stopped_acting(h, h->run_id);
    h->closing = true;
    h->done = done;
    h->done_arg = arg;
    uv_timer_stop(&h->timer);
    uv_timer_stop(&h->ack_timer);
    dd_hb__finish_close(h);
}
