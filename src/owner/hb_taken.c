/* hb_taken.c - takeover notices (heartbeat_int.h; docs/ownership.md,
 * "Takeovers are told").
 *
 * A new owner, once its claim has landed, publishes "<wid>\n<run>\n<epoch>"
 * on DD_STORE_CHANNEL_TAKEN. Every run/up hears it on its one subscription
 * (cli/daemon.c) and hands it to the heartbeat of that dispatcher here. An
 * owner of that dispatcher under another run reads the record and lets go
 * (dd_owner_taken: the same loss path as a long poll's close event: child
 * stopped, handoff flag set) only if the record names a newer epoch than
 * its own claim. Why that is safe whatever the message says: epochs only
 * grow (every claim INCRs them), so a record with a newer epoch means our
 * next heartbeat is fenced anyway; we only learn it an interval sooner. A
 * forged, stale or repeated message costs one read and changes nothing
 * while the record is ours. In long-poll mode it is an earlier signal next
 * to the close event; in batch mode (owner/watch.h) it is the fast one.
 *
 * A notice published while this process was not subscribed is lost (Redis
 * keeps none). So after every (re)subscription each owner reads its record
 * once and lets go the same way (dd_hb__taken_resubscribed); the host's
 * owners read theirs together, in one batched read per DD_STORE_GET_MAX
 * (hb_batch.c), not one round trip each. */
#include "owner/heartbeat_int.h"

#include "core/error.h"
#include "core/log.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dd_hb_taken_published(int st, int64_t receivers, void *arg)
{
    dd_heartbeat *h = arg;
    (void)receivers;
    if (st < 0 && st != DD_ECANCELED)
        dd_debug(h->ctx.log, "takeover_notice_failed", "dispatcher=%s error=%s",
                 dd_owner_name(h->o), dd_strerror(st));
    dd_hb__reply(h);
}

void dd_hb__announce_claim(dd_heartbeat *h)
{
    char msg[DD_DISPATCHER_ID_BUFLEN + DD_RUN_ID_LEN + 32];
    snprintf(msg, sizeof(msg), "%s\n%s\n%lld", dd_owner_workflow_id(h->o), h->run_id,
             (long long)h->epoch);
    if (dd_store_publish(h->s, DD_STORE_CHANNEL_TAKEN, msg, dd_hb_taken_published, h) == 0)
        h->inflight++;
    /* not sent (Redis away): the old owner's heartbeat is fenced instead */
}

static void dd_hb_taken_check(dd_heartbeat *h);

void dd_hb__taken_read(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    h->taken_reading = false;
    bool resub = h->taken_resub; /* this read was for a resubscription, not a notice */
    h->taken_resub = false;
    if (!dd_hb__reply(h))
        return;
    if (!h->owning || !h->claimed)
        return;
    bool newer = st == 0 && !rec->malformed && rec->epoch > h->epoch &&
                 !(rec->nonce && !strcmp(rec->nonce, h->nonce) && rec->run_id &&
                   !strcmp(rec->run_id, h->run_id));
    if (!resub) /* the notices counter counts notices */
        dd_metric_add(h->m_taken,
                      DD_L1(newer                                 ? "lost"
                            : st == 0 || st == DD_ENOTFOUND ? "ignored"
                                                              : "unread"),
                      1);
    if (newer) {
        dd_warn(h->ctx.log, "takeover_heard",
                "dispatcher=%s run_id=%s epoch=%lld holder=%s holder_run_id=%s holder_epoch=%lld "
                "via=%s",
                dd_owner_name(h->o), h->run_id, (long long)h->epoch,
                rec->server_id ? rec->server_id : "", rec->run_id ? rec->run_id : "",
                (long long)rec->epoch, resub ? "resubscribed" : "notice");
        dd_owner_taken(h->o, rec->server_id ? rec->server_id : "", rec->run_id);
        return;
    }
    dd_debug(h->ctx.log, "takeover_notice_ignored",
             "dispatcher=%s run_id=%s epoch=%lld status=%s via=%s", dd_owner_name(h->o),
             h->run_id, (long long)h->epoch, dd_strerror(st), resub ? "resubscribed" : "notice");
    if (h->taken_again) { /* another notice came while we read */
        h->taken_again = false;
        dd_hb_taken_check(h);
    }
}

static void dd_hb_taken_check(dd_heartbeat *h)
{
    if (h->taken_reading) {
        h->taken_again = true;
        return;
    }
    if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb__taken_read, h) == 0) {
        h->inflight++;
        h->taken_reading = true;
    }
    /* not sent: the fenced heartbeat is the backstop */
}

void dd_heartbeat_taken(dd_heartbeat *h, const char *run_id)
{
    if (h->closing || !h->owning)
        return; /* a standby: the record's new owner is fresh, nothing to do */
    if (run_id && !strcmp(run_id, h->run_id))
        return; /* our own claim's notice (a forged one naming us changes nothing either) */
    if (!h->claimed) {
        h->taken_pending = true; /* looked at once our claim has landed */
        return;
    }
    dd_hb_taken_check(h);
}

void dd_hb__taken_after_claim(dd_heartbeat *h)
{
    if (!h->taken_pending)
        return;
    h->taken_pending = false;
    dd_hb_taken_check(h);
}

void dd_hb__taken_resubscribed(dd_heartbeat *h)
{
    if (h->closing || !h->owning)
        return;
    if (!h->claimed) {
        h->taken_pending = true; /* looked at once our claim has landed */
        return;
    }
    if (h->taken_reading) { /* its answer may predate what we missed */
        h->taken_again = true;
        return;
    }
    h->taken_resub = true;
    if (h->group) {
        dd_hb__group_look(h); /* with every other owner's, in one read */
        return;
    }
    dd_hb_taken_check(h);
    if (!h->taken_reading)
        h->taken_resub = false; /* not sent */
}
