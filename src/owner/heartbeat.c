/* heartbeat.c - the owner's Redis record: claim, heartbeat, release, and
 * the standby's failover watch. See owner.h for the contract.
 *
 * Why heartbeats at all, when Temporal already knows who runs: a host that
 * dies without releasing leaves its run Running forever. The record's age
 * is what tells everyone (the reconciler, the standbys) that the owner is
 * gone. Its writes are fenced by the epoch from claim, so an owner that was
 * paused past the threshold and wakes up cannot refresh a record a newer
 * owner holds (it learns it lost instead). Wall-clock time goes into the
 * record because other hosts compare it with theirs: keep clocks in sync
 * (NTP); a skew larger than threshold minus interval makes healthy owners
 * look stale to a host whose clock runs ahead. */
#include "owner/owner.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct dd_heartbeat {
    dd_ctx ctx;
    dd_store *s;
    dd_owner *o;
    dd_heartbeat_opts opts;
    uv_timer_t timer;
    bool owning;
    bool claimed;
    char run_id[DD_RUN_ID_LEN];
    int64_t epoch;
    int inflight;      /* store operations pending */
    bool closing;
    bool watching;     /* standby watch armed */
    bool failing_over; /* we asked the owner to take over; wait for the outcome */
    dd_rng rng;
    void (*done)(void *);
    void *done_arg;
};

static void dd_hb_tick(uv_timer_t *t);

static void dd_hb_timer_closed(uv_handle_t *t)
{
    dd_heartbeat *h = t->data;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

static void dd_hb_finish_close(dd_heartbeat *h)
{
    if (!h->closing || h->inflight > 0 || uv_is_closing((uv_handle_t *)&h->timer))
        return;
    uv_close((uv_handle_t *)&h->timer, dd_hb_timer_closed);
}

static void dd_hb_arm(dd_heartbeat *h, int64_t delay_ms)
{
    if (h->closing)
        return;
    if (delay_ms < 0)
        delay_ms = 0;
    uv_timer_start(&h->timer, dd_hb_tick, (uint64_t)delay_ms, 0);
}

dd_heartbeat *dd_heartbeat_new(const dd_ctx *ctx, dd_store *s, dd_owner *o,
                               const dd_heartbeat_opts *opts)
{
    dd_heartbeat *h = dd_xcalloc(1, sizeof(*h));
    h->ctx = *ctx;
    h->s = s;
    h->o = o;
    h->opts = *opts;
    if (h->opts.interval_ms <= 0)
        h->opts.interval_ms = 5000;
    if (h->opts.threshold_ms <= h->opts.interval_ms)
        h->opts.threshold_ms = 3 * h->opts.interval_ms;
    dd_rng_seed(&h->rng, 0);
    uv_timer_init(ctx->loop, &h->timer);
    h->timer.data = h;
    return h;
}

/* ---- owner side ------------------------------------------------------- */

static void dd_hb_claimed(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing) {
        dd_hb_finish_close(h);
        return;
    }
    if (!h->owning)
        return;
    if (st == 0) {
        h->claimed = true;
        h->epoch = res->epoch;
        dd_info(h->ctx.log, "record_claimed", "dispatcher=%s workflow_id=%s run_id=%s epoch=%lld",
                dd_owner_name(h->o), dd_owner_workflow_id(h->o), h->run_id,
                (long long)h->epoch);
        dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    dd_warn(h->ctx.log, "record_claim_failed", "dispatcher=%s error=%s retry_in_ms=%lld",
            dd_owner_name(h->o), dd_strerror(st), (long long)h->opts.interval_ms);
    dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_claim(dd_heartbeat *h)
{
    dd_store_claim_args a = {.workflow_id = dd_owner_workflow_id(h->o),
                             .run_id = h->run_id,
                             .server_id = dd_owner_server_id(h->o),
                             .project = dd_owner_project(h->o),
                             .queue = dd_owner_queue(h->o),
                             .now_ms = dd_wall_ms(),
                             .ttl_ms = h->opts.threshold_ms};
    if (dd_store_claim(h->s, &a, dd_hb_claimed, h) == 0)
        h->inflight++;
    else
        dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_beat_done(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing) {
        dd_hb_finish_close(h);
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
    if (st < 0)
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(st));
    dd_hb_arm(h, h->opts.interval_ms);
}

/* ---- standby side ----------------------------------------------------- */

static void dd_hb_lease_done(int st, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing) {
        dd_hb_finish_close(h);
        return;
    }
    if (h->owning)
        return;
    if (st == 0) {
        dd_info(h->ctx.log, "failover", "dispatcher=%s action=takeover", dd_owner_name(h->o));
        h->failing_over = true;
        dd_owner_retake(h->o);
        /* If the takeover fails we look again after an interval. */
        dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    if (st == DD_EBUSY)
        dd_info(h->ctx.log, "failover_skipped", "dispatcher=%s reason=%s", dd_owner_name(h->o),
                "another standby holds the failover lease");
    dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_try_failover(dd_heartbeat *h, const char *stale_run)
{
    /* One lease per stale run: exactly one standby takes over that run,
     * and a later failure of the new owner gets a fresh lease name. */
    dd_buf name = DD_BUF_INIT;
    dd_buf_printf(&name, "failover:%s:%s", dd_owner_workflow_id(h->o), stale_run);
    int rc = dd_store_lease_acquire(h->s, dd_buf_str(&name), dd_owner_server_id(h->o),
                                    h->opts.threshold_ms, dd_hb_lease_done, h);
    dd_buf_release(&name);
    if (rc == 0)
        h->inflight++;
    else
        dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_watch_done(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing) {
        dd_hb_finish_close(h);
        return;
    }
    if (h->owning || !h->opts.failover)
        return;
    if (dd_owner_get_state(h->o) == DD_OWNER_TAKING_OVER ||
        dd_owner_get_state(h->o) == DD_OWNER_RELEASING) {
        dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    int64_t now = dd_wall_ms();
    if (st == DD_ENOTFOUND) {
        /* No record: nobody owns it (cleaned after a crash, or Redis lost
         * it). Take it, through the same lease so only one standby does. */
        dd_hb_try_failover(h, "none");
        return;
    }
    if (st < 0 || !rec || rec->malformed) {
        dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    int64_t stale_at = rec->hb_ms + h->opts.threshold_ms;
    if (now > stale_at) {
        dd_info(h->ctx.log, "owner_stale",
                "dispatcher=%s owner=%s run_id=%s heartbeat_age_ms=%lld threshold_ms=%lld",
                dd_owner_name(h->o), rec->server_id ? rec->server_id : "", rec->run_id,
                (long long)(now - rec->hb_ms), (long long)h->opts.threshold_ms);
        dd_hb_try_failover(h, rec->run_id ? rec->run_id : "none");
        return;
    }
    /* Wake when it would turn stale (a little after, with jitter so the
     * standbys do not race in lockstep), or at the next interval. */
    int64_t wait = stale_at - now + 50 + (int64_t)(dd_rng_unit(&h->rng) * 200);
    if (wait > h->opts.interval_ms)
        wait = h->opts.interval_ms;
    dd_hb_arm(h, wait);
}

static void dd_hb_tick(uv_timer_t *t)
{
    dd_heartbeat *h = t->data;
    if (h->closing)
        return;
    if (h->owning) {
        if (!h->claimed) {
            dd_hb_claim(h);
            return;
        }
        if (dd_store_heartbeat(h->s, dd_owner_workflow_id(h->o), h->run_id, h->epoch,
                               dd_wall_ms(), h->opts.threshold_ms, dd_hb_beat_done, h) == 0)
            h->inflight++;
        else
            dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    if (!h->opts.failover)
        return;
    if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb_watch_done, h) == 0)
        h->inflight++;
    else
        dd_hb_arm(h, h->opts.interval_ms);
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
    dd_hb_finish_close(h);
    if (!h->closing && !h->owning)
        dd_hb_arm(h, h->opts.interval_ms);
}

void dd_heartbeat_owner_changed(dd_heartbeat *h, bool owning, const char *run_id)
{
    if (owning) {
        h->owning = true;
        h->failing_over = false;
        h->claimed = false;
        snprintf(h->run_id, sizeof(h->run_id), "%s", run_id);
        uv_timer_stop(&h->timer);
        dd_hb_claim(h);
        return;
    }
    bool was_claimed = h->owning && h->claimed;
    h->owning = false;
    h->claimed = false;
    uv_timer_stop(&h->timer);
    if (was_claimed && dd_owner_get_state(h->o) == DD_OWNER_RELEASING) {
        /* A clean release leaves nothing for the reconciler. */
        if (dd_store_release(h->s, dd_owner_workflow_id(h->o), h->run_id, h->epoch,
                             dd_hb_released, h) == 0)
            h->inflight++;
    } else if (h->opts.failover) {
        dd_hb_arm(h, h->opts.interval_ms); /* lost: become a standby */
    }
    h->epoch = 0;
}

void dd_heartbeat_start(dd_heartbeat *h)
{
    if (!h->owning && h->opts.failover)
        dd_hb_arm(h, h->opts.interval_ms);
}

int64_t dd_heartbeat_epoch(const dd_heartbeat *h)
{
    return h->owning && h->claimed ? h->epoch : 0;
}

void dd_heartbeat_close(dd_heartbeat *h, void (*done)(void *), void *arg)
{
    h->closing = true;
    h->done = done;
    h->done_arg = arg;
    uv_timer_stop(&h->timer);
    dd_hb_finish_close(h);
}
