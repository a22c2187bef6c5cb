/* hb_handoff.c - a new owner's child waits until the previous owner has
 * stopped acting (heartbeat_int.h). */
#include "owner/heartbeat_int.h"


#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "child/will.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- handoff ----------------------------------------------------------
 *
 * A graceful takeover has two owners for a moment: ours starts as soon as
 * Temporal has swapped the runs, the old one stops its child only when its
 * long-poll tells it, some milliseconds later. To keep the two children from
 * acting at once, the new owner reads the record before claiming it: if it
 * holds a fresh heartbeat of another run (whichever run: in a quick chain
 * A -> B -> C, C may still read A's record), our child waits until that
 * run's owner says it stopped acting (a short flag in Redis, set once its
 * child has exited), or until the stale threshold, after which it counts as
 * dead anyway (its own deadline stopped its child before that: fence.h).
 * When the record cannot be read, we wait the same way for the run we
 * replaced.
 *
 * The flag must mean "nothing acts from here back": an owner that loses
 * while it is still waiting for its own predecessor (B waiting for A when C
 * takes over) holds its flag back until that wait is over, so C, waiting
 * for B, waits for A too. */

static void dd_hb_ack_poll(uv_timer_t *t);

void dd_hb__publish_ack(dd_heartbeat *h, const char *run_id)
{
    char name[300];
    snprintf(name, sizeof(name), DD_STORE_LEASE_HANDOFF, dd_owner_workflow_id(h->o), run_id);
    if (dd_store_lease_acquire(h->s, name, dd_owner_server_id(h->o), 2 * h->opts.threshold_ms,
                               dd_hb__lease_set, h) == 0)
        h->inflight++;
}

static void dd_hb_wait_over(dd_heartbeat *h, const char *why)
{
    h->waiting_prev = false;
    if (h->owning)
        dd_owner_open_gate(h->o, why);
    if (h->fwd_run[0] && !h->closing) {
        char run[DD_RUN_ID_LEN];
        snprintf(run, sizeof(run), "%s", h->fwd_run);
        h->fwd_run[0] = '\0';
        dd_hb__publish_ack(h, run);
    }
}

static void dd_hb_ack_done(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb__reply(h))
        return;
    if (!h->waiting_prev)
        return;
    if (st == 0 && ++h->iwait >= h->nwait) {
        dd_hb_wait_over(h, "previous owner stopped acting");
        return;
    }
    if ((int64_t)dd_mono_ms() >= h->ack_deadline_ms) {
        dd_warn(h->ctx.log, "handoff_timeout", "dispatcher=%s previous_run_id=%s waited_ms=%lld",
                dd_owner_name(h->o), h->wait_run[h->iwait], (long long)h->opts.threshold_ms);
        dd_hb_wait_over(h, "previous owner did not acknowledge within the threshold");
        return;
    }
    uv_timer_start(&h->ack_timer, dd_hb_ack_poll, st == 0 ? 0 : 10, 0);
}

static void dd_hb_ack_poll(uv_timer_t *t)
{
    dd_heartbeat *h = t->data;
    if (h->closing || !h->waiting_prev)
        return;
    if (dd_store_lease_held(h->s, h->ack_name[h->iwait], dd_hb_ack_done, h) == 0)
        h->inflight++;
    else if ((int64_t)dd_mono_ms() >= h->ack_deadline_ms)
        dd_hb_wait_over(h, "previous owner did not acknowledge within the threshold");
    else
        uv_timer_start(&h->ack_timer, dd_hb_ack_poll, 50, 0);
}

/* Waits for the acknowledgements of runs[0..n), at most one threshold from
 * the moment our claim lands (dd_hb__claimed arms it): until then the
 * previous owner may still land heartbeats, which push its own deadline. */
void dd_hb__wait_for(dd_heartbeat *h, const char *const *runs, int n)
{
    h->nwait = n;
    h->iwait = 0;
    for (int i = 0; i < n; i++) {
        snprintf(h->wait_run[i], sizeof(h->wait_run[i]), "%s", runs[i]);
        snprintf(h->ack_name[i], sizeof(h->ack_name[i]), DD_STORE_LEASE_HANDOFF,
                 dd_owner_workflow_id(h->o), runs[i]);
    }
    h->ack_deadline_ms = h->owning && h->claimed
                             ? (int64_t)dd_mono_ms() + h->opts.threshold_ms
                             : INT64_MAX;
    h->waiting_prev = true;
    dd_hb_ack_poll(&h->ack_timer);
}

void dd_hb__prev_record(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb__reply(h))
        return;
    if (!h->owning)
        return;
    /* Wait for every other owner that may still act: the one the record
     * shows fresh, and the one whose run we replaced when that differs (its
     * claim may still have been in flight when we read). Our own earlier
     * runs need no wait: their child is ours, and a new one starts only once
     * it has exited (owner.c); "ours" is this process (the nonce), not the
     * server id, which two processes can share. */
    const char *prev = dd_owner_previous_run_id(h->o);
    bool prev_ours = prev[0] && !strcmp(prev, dd_owner_own_previous_run_id(h->o));
    char runs[2][DD_RUN_ID_LEN];
    int n = 0;
    const char *shown = NULL;
    if (st == 0 && !rec->malformed && rec->run_id) {
        int64_t thr = rec->ttl_ms > h->opts.threshold_ms ? rec->ttl_ms : h->opts.threshold_ms;
        bool ours = rec->nonce && !strcmp(rec->nonce, h->nonce);
        shown = rec->run_id;
        if (!ours && strcmp(rec->run_id, h->run_id) != 0 && rec->now_ms - rec->hb_ms <= thr)
            snprintf(runs[n++], DD_RUN_ID_LEN, "%s", rec->run_id);
    }
    if (prev[0] && !prev_ours && (!shown || strcmp(shown, prev) != 0) &&
        (st == 0 || st == DD_ENOTFOUND || n == 0))
        snprintf(runs[n++], DD_RUN_ID_LEN, "%s", prev); /* maybe still claiming; or unknown */
    dd_hb__claim(h);
    if (n == 0) {
        if (h->waiting_prev) /* an older wait (ours before we lost) is still on */
            return;
        dd_owner_open_gate(h->o, prev[0] ? "previous owner not heartbeating" : "no previous run");
        return;
    }
    const char *list[2] = {runs[0], runs[1]};
    dd_hb__wait_for(h, list, n);
}

/* The last will: if this process dies while its child runs, the child's
 * guard stops it and then lets go of the record with these (child/will.h):
 * fenced by run and epoch, the handoff flag set, the standbys told. Unlike
 * a graceful release it cannot terminate our run (it has no Temporal
 * client), so it does not delete the record but makes it stale at once
 * (expire): whoever takes over (termination-first) or the reconciler ends
 * our run and then deletes the record, as after a timeout. A deleted record
 * would leave our run running with no record to name it: in workflow mode
 * the user's chain would go on with no owner, and no sweep covers it. */
bool dd_heartbeat_will(const dd_heartbeat *h, dd_will *w)
{
    if (!h->owning || !h->claimed || h->epoch <= 0)
        return false;
    w->workflow_id = dd_owner_workflow_id(h->o);
    w->run_id = h->run_id;
    w->first_run_id = h->first_run_id[0] ? h->first_run_id : NULL;
    w->server_id = dd_owner_server_id(h->o);
    w->epoch = h->epoch;
    w->ack_ttl_ms = 2 * h->opts.threshold_ms; /* as dd_hb__publish_ack */
    w->expire = true;
    return true;
}
