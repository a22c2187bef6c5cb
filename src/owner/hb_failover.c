/* hb_failover.c - the standby side: watch the owner record on Redis's clock
 * and take over through the shared failover lease once it is stale
 * (heartbeat_int.h). */
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

/* ---- standby side ----------------------------------------------------- */

/* Judged on Redis's clock, against the longer of our threshold and the
 * owner's own (ttl_ms): a standby configured shorter than the owner never
 * calls it stale early. Also the stale_at of a fresh record (for the wait). */
static bool dd_hb_rec_stale(const dd_heartbeat *h, const dd_store_hb *rec, int64_t *stale_at)
{
    int64_t thr = rec->ttl_ms > h->opts.threshold_ms ? rec->ttl_ms : h->opts.threshold_ms;
    *stale_at = dd_store_hb_fresh_since(rec) + thr; /* not before Redis was up a threshold */
    return rec->now_ms > *stale_at;
}

/* The lease is ours: the record is read again before the takeover. The
 * judgement that brought us here came from a read made before we asked for
 * the lease; the previous lease holder gives the lease back as soon as its
 * claim is in Redis, so in between another standby may have taken over and
 * claimed. Its record is fresh then, and a takeover now would terminate a
 * healthy chain (TERMINATE_EXISTING) that has just started: seen in the fleet
 * bench in workflow mode (bench/RESULTS.md, "Fleet chaos in workflow mode").
 * Only a record that is still missing or still stale is taken over. */
static void dd_hb_confirm_done(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb__reply(h))
        return;
    if (h->owning)
        return;
    int64_t stale_at = 0;
    bool go = st == DD_ENOTFOUND ||
              (st == 0 && rec && !rec->malformed && dd_hb_rec_stale(h, rec, &stale_at));
    if (!go) {
        if (st == 0 && rec && !rec->malformed)
            dd_info(h->ctx.log, "failover_skipped",
                    "dispatcher=%s reason=\"owned again\" owner=%s run_id=%s heartbeat_age_ms=%lld",
                    dd_owner_name(h->o), rec->server_id ? rec->server_id : "",
                    rec->run_id ? rec->run_id : "", (long long)(rec->now_ms - rec->hb_ms));
        else
            dd_warn(h->ctx.log, "failover_skipped", "dispatcher=%s reason=\"cannot read the record again\" error=%s",
                    dd_owner_name(h->o), st < 0 ? dd_strerror(st) : "malformed record");
        dd_hb__give_back_lease(h);
        dd_hb__arm(h, h->opts.interval_ms);
        return;
    }
    /* The start must go out while the lease still covers its answer
     * (owner.h, dd_failover_lease_plan): counted from when we asked for
     * the lease, which Redis set no earlier than that. */
    uint64_t start_by = h->fo_lease_asked_ms + (uint64_t)h->fo_lease.start_within_ms;
    dd_info(h->ctx.log, "failover", "dispatcher=%s action=takeover start_within_ms=%lld",
            dd_owner_name(h->o), (long long)((int64_t)start_by - (int64_t)dd_mono_ms()));
    h->failing_over = true;
    dd_owner_retake_by(h->o, start_by);
    /* If the takeover fails we give the lease back and look again. */
    dd_hb__arm(h, h->opts.interval_ms / 2);
}

static void dd_hb_lease_done(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb__reply(h))
        return;
    if (h->owning)
        return;
    if (st == 0) {
        if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb_confirm_done, h) == 0) {
            h->inflight++;
        } else {
            dd_hb__give_back_lease(h);
            dd_hb__arm(h, h->opts.interval_ms);
        }
        return;
    }
    /* debug: a standby that lost the race would say so every interval */
    if (st == DD_EBUSY) {
        dd_debug(h->ctx.log, "failover_skipped", "dispatcher=%s reason=%s", dd_owner_name(h->o),
                 "another standby or a reconciler holds the failover lease");
        /* Look again soon, not an interval later: the holder is often a
         * reconciler (this host's own, woken at the same stale moment)
         * that ends the stale run and deletes the record in ~100 ms, and
         * then nobody takes over until we look (bench/scale: +1 interval
         * on every failover). A standby that holds it claims within a
         * second or so; reading the record every ~300 ms meanwhile is
         * cheap, and its fresh record then arms us as usual. */
        int64_t soon = 200 + (int64_t)(dd_rng_unit(&h->rng) * 200);
        dd_hb__arm(h, soon < h->opts.interval_ms ? soon : h->opts.interval_ms);
        return;
    }
    dd_hb__arm(h, h->opts.interval_ms);
}

void dd_hb__try_failover(dd_heartbeat *h, const char *stale_run)
{
    /* One lease per dispatcher: exactly one standby takes over, whether it
     * saw the stale record or (after the reconciler removed it) no record
     * at all. By the time the lease expires the winner has been
     * heartbeating for a while, so a later failure of the new owner finds
     * it free again. */
    dd_buf name = DD_BUF_INIT;
    dd_hb__lease_name(h, &name);
    /* Held past the longest a takeover can take (its describe and its
     * start, each bounded by the Temporal client's per-call deadline), so a
     * slow attempt is never raced by a second standby; the takeover sends
     * no start the lease might not cover (dd_hb_confirm_done). A winner
     * that dies costs the next one that long. */
    h->fo_lease = dd_failover_lease_plan(h->opts.threshold_ms, dd_owner_call_deadline_ms(h->o));
    h->fo_lease_asked_ms = dd_mono_ms();
    dd_info(h->ctx.log, "failover_attempt", "dispatcher=%s stale_run_id=%s lease_ms=%lld",
            dd_owner_name(h->o), stale_run, (long long)h->fo_lease.ttl_ms);
    int rc = dd_store_lease_acquire(h->s, dd_buf_str(&name), dd_owner_server_id(h->o),
                                    h->fo_lease.ttl_ms, dd_hb_lease_done, h);
    dd_buf_release(&name);
    if (rc == 0)
        h->inflight++;
    else
        dd_hb__arm(h, h->opts.interval_ms);
}

void dd_hb__watch_done(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    h->watch_reading = false;
    bool told = h->told_while_reading; /* this read may predate what we were told */
    h->told_while_reading = false;
    if (!dd_hb__reply(h))
        return;
    if (h->owning || !h->opts.failover)
        return;
    if (dd_owner_get_state(h->o) == DD_OWNER_STOPPED) /* let go: no standby here */
        return;
    if (dd_owner_get_state(h->o) == DD_OWNER_TAKING_OVER ||
        dd_owner_get_state(h->o) == DD_OWNER_RELEASING) {
        dd_hb__arm(h, h->opts.interval_ms);
        return;
    }
    /* A refused attempt (a run of another type holds the ID, Temporal
     * down) backs off like the start path does, instead of retrying every
     * tick; one log line per attempt. */
    uint64_t mono = dd_mono_ms();
    /* after we released it for a failing child, others go first */
    uint64_t not_before = h->fo_not_before > dd_owner_compete_after(h->o)
                              ? h->fo_not_before
                              : dd_owner_compete_after(h->o);
    if (mono < not_before) {
        uint64_t left = not_before - mono;
        dd_hb__arm(h, left < (uint64_t)h->opts.interval_ms ? (int64_t)left : h->opts.interval_ms);
        return;
    }
    if (st == DD_ENOTFOUND) {
        /* No record: nobody owns it (cleaned after a crash, or Redis lost
         * it). Take it, through the same lease so only one standby does. */
        dd_hb__try_failover(h, "none");
        return;
    }
    if (st < 0 || !rec || rec->malformed) {
        dd_hb__arm(h, h->opts.interval_ms);
        return;
    }
    /* Judged on Redis's clock (rec->now_ms, read with the record), against
     * the longer of our threshold and the owner's own (ttl_ms): a standby
     * configured shorter than the owner never calls it stale early. */
    dd_hb__note_ttl(h, rec->ttl_ms);
    int64_t now = rec->now_ms;
    int64_t stale_at = 0;
    if (dd_hb_rec_stale(h, rec, &stale_at)) {
        dd_info(h->ctx.log, "owner_stale",
                "dispatcher=%s owner=%s run_id=%s heartbeat_age_ms=%lld threshold_ms=%lld",
                dd_owner_name(h->o), rec->server_id ? rec->server_id : "", rec->run_id,
                (long long)(now - rec->hb_ms), (long long)(stale_at - rec->hb_ms));
        dd_hb__try_failover(h, rec->run_id ? rec->run_id : "none");
        return;
    }
    /* Wake when it would turn stale (a little after, with jitter so the
     * standbys do not race in lockstep), or at the next interval. The wait
     * runs on our timer: only the rate of our clock matters, not its
     * offset from Redis's. */
    int64_t wait = stale_at - now + 50 + (int64_t)(dd_rng_unit(&h->rng) * 200);
    if (wait > h->opts.interval_ms)
        wait = h->opts.interval_ms;
    dd_hb__arm(h, told ? 0 : wait); /* told meanwhile: read it again now */
}

void dd_heartbeat_notified(dd_heartbeat *h, const char *why)
{
    if (!strcmp(why, "resubscribed") && h->owning) {
        dd_hb__taken_resubscribed(h); /* an owner may have missed a takeover notice */
        return;
    }
    if (h->closing || h->owning || h->releasing || !h->opts.failover || h->failing_over)
        return;
    dd_owner_state os = dd_owner_get_state(h->o);
    if (os != DD_OWNER_LOST) /* not yet started (the ID prefix gate), taking over, letting go */
        return;
    /* Standing by means: the watch timer is armed, or its read is in
     * flight. Otherwise a lease attempt and its re-read decide by
     * themselves. */
    bool reading = h->watch_reading;
    if (!reading && !uv_is_active((uv_handle_t *)&h->timer))
        return;
    if (!strcmp(why, "release")) {
        dd_metric_add(h->m_notices, NULL, 1);
        dd_info(h->ctx.log, "release_heard", "dispatcher=%s action=look_now",
                dd_owner_name(h->o));
    }
    if (reading) { /* its answer may be older than the release */
        h->told_while_reading = true;
        return;
    }
    dd_hb__arm(h, 0);
}

void dd_hb__lease_given_back(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb__reply(h))
        return;
    dd_info(h->ctx.log, "failover_lease_released", "dispatcher=%s status=%s",
            dd_owner_name(h->o), st == 0 ? "released" : dd_strerror(st));
}
