/* hb_batch.c - the host's beat group: one timer per host, and every owned
 * dispatcher's heartbeat in one store call per interval (see owner.h,
 * dd_heartbeat_group_new).
 *
 * Why: with one timer and one EVAL per dispatcher, 1,000 dispatchers are
 * 1,000 wake-ups and 1,000 commands for Redis to parse every interval. The
 * group makes that one wake-up and ceil(n / DD_STORE_BEAT_MAX) commands,
 * sent back to back (one flush). What must not change is the fencing: each
 * record is still compared on its own run id and epoch (inside the batch
 * script), each member gets its own answer (dd_hb__beat_done, the same
 * path as an individual heartbeat), and each member's acting deadline is
 * anchored to the send time of the batch its last landed heartbeat went
 * in. The group owns nothing of its members: it holds a list of them, and
 * they hold a reference to it.
 *
 * The group also batches the owners' look at their records after a
 * (re)subscription (hb_taken.c): every owner asks in the same loop turn,
 * and one timer turn later the group reads all their records with
 * dd_store_get_batch, DD_STORE_GET_MAX per command. */
#include "owner/heartbeat_int.h"

#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <stdlib.h>
#include <string.h>

struct dd_heartbeat_group {
    uv_timer_t timer;
    uv_timer_t look;  /* the owners' batched record read (dd_hb__group_look) */
    int closes;       /* handles still to close once the last reference went */
    dd_store *s;
    int64_t interval_ms;
    int64_t next_tick_us; /* boot clock: when the timer fires next (at the latest
                           * what libuv will do; it may fire later under load) */
    int refs;
    bool missed; /* a heartbeat failed since the last tick (dd_heartbeat_group_kick) */
    dd_heartbeat *head;
};

static void dd_hb_group_closed(uv_handle_t *t)
{
    dd_heartbeat_group *g = t->data;
    if (--g->closes == 0)
        free(g);
}

void dd_heartbeat_group_unref(dd_heartbeat_group *g)
{
    if (!g || --g->refs > 0)
        return;
    g->closes = 2;
    uv_close((uv_handle_t *)&g->timer, dd_hb_group_closed);
    uv_close((uv_handle_t *)&g->look, dd_hb_group_closed);
}

static void dd_hb_group_look_send(dd_heartbeat_group *g, dd_store_get_item *items,
                                  dd_heartbeat **hs, size_t n)
{
    if (n == 0)
        return;
    int rc = dd_store_get_batch(g->s, items, n);
    for (size_t i = 0; i < n; i++) {
        dd_heartbeat *h = hs[i];
        if (rc == 0) {
            h->inflight++;
            h->taken_reading = true;
            continue;
        }
        /* not sent (Redis away): the next resubscription looks again, and
         * the fenced heartbeat is the backstop */
        h->taken_resub = false;
        dd_debug(h->ctx.log, "takeover_look_failed", "dispatcher=%s error=%s",
                 dd_owner_name(h->o), dd_strerror(rc));
    }
}

static void dd_hb_group_look_fire(uv_timer_t *t)
{
    dd_heartbeat_group *g = t->data;
    dd_store_get_item items[DD_STORE_GET_MAX];
    dd_heartbeat *hs[DD_STORE_GET_MAX];
    size_t n = 0;
    for (dd_heartbeat *h = g->head; h; h = h->grp_next) {
        if (!h->look_wanted)
            continue;
        h->look_wanted = false;
        if (h->closing || !h->owning || !h->claimed) { /* let go meanwhile */
            h->taken_resub = false;
            continue;
        }
        if (h->taken_reading) { /* a notice's read went out meanwhile: one more after it */
            h->taken_resub = false;
            h->taken_again = true;
            continue;
        }
        items[n] = (dd_store_get_item){.workflow_id = dd_owner_workflow_id(h->o),
                                       .cb = dd_hb__taken_read,
                                       .arg = h};
        hs[n++] = h;
        if (n == DD_STORE_GET_MAX) {
            dd_hb_group_look_send(g, items, hs, n);
            n = 0;
        }
    }
    dd_hb_group_look_send(g, items, hs, n);
}

void dd_hb__group_look(dd_heartbeat *h)
{
    dd_heartbeat_group *g = h->group;
    h->look_wanted = true;
    if (!uv_is_active((uv_handle_t *)&g->look))
        uv_timer_start(&g->look, dd_hb_group_look_fire, 0, 0);
}

/* A member whose heartbeat goes in this tick's batch: it owns (or keeps
 * its record fresh while its child stops), its claim landed, and no write
 * of its own is in flight (that write's reply schedules the next one). */
static bool dd_hb_group_due(const dd_heartbeat *h)
{
    return !h->closing && (h->owning || h->releasing) && h->claimed && !h->writing;
}

static void dd_hb_group_send(dd_heartbeat_group *g, dd_store_beat *items, dd_heartbeat **hs,
                             size_t n)
{
    if (n == 0)
        return;
    int64_t sent = dd_boot_us(); /* before the request goes out (fence.h) */
    int rc = dd_store_heartbeat_batch(g->s, items, n, 0 /* Redis's clock */);
    for (size_t i = 0; i < n; i++) {
        dd_heartbeat *h = hs[i];
        if (rc == 0) {
            h->inflight++;
            h->writing = true;
            h->sent_us = sent;
            continue;
        }
        /* not sent (Redis reconnecting): the next tick tries again, one
         * interval from now, or at once when Redis is back (kick) */
        g->missed = true;
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(rc));
    }
}

static void dd_hb_group_tick(uv_timer_t *t)
{
    dd_heartbeat_group *g = t->data;
    g->next_tick_us = dd_boot_us() + g->interval_ms * 1000;
    g->missed = false;
    dd_store_beat items[DD_STORE_BEAT_MAX];
    dd_heartbeat *hs[DD_STORE_BEAT_MAX];
    size_t n = 0;
    for (dd_heartbeat *h = g->head; h; h = h->grp_next) {
        if (!dd_hb_group_due(h))
            continue;
        uv_timer_stop(&h->timer); /* its own beat, if one was armed, goes now */
        items[n] = (dd_store_beat){.workflow_id = dd_owner_workflow_id(h->o),
                                   .run_id = h->run_id,
                                   .first_run_id = h->first_run_id[0] ? h->first_run_id : NULL,
                                   .epoch = h->epoch,
                                   .ttl_ms = h->opts.threshold_ms,
                                   .cb = dd_hb__beat_done,
                                   .arg = h};
        hs[n++] = h;
        if (n == DD_STORE_BEAT_MAX) {
            dd_hb_group_send(g, items, hs, n);
            n = 0;
        }
    }
    dd_hb_group_send(g, items, hs, n);
}

void dd_heartbeat_group_kick(dd_heartbeat_group *g)
{
    if (!g || !g->missed || g->refs == 0)
        return;
    g->missed = false;
    uv_timer_stop(&g->timer);
    dd_hb_group_tick(&g->timer); /* members with a write in flight skip it */
    uv_timer_start(&g->timer, dd_hb_group_tick, (uint64_t)g->interval_ms,
                   (uint64_t)g->interval_ms);
}

void dd_hb__group_missed(dd_heartbeat *h)
{
    if (h->group)
        h->group->missed = true;
}

dd_heartbeat_group *dd_heartbeat_group_new(struct uv_loop_s *loop, dd_store *s,
                                           int64_t interval_ms)
{
    dd_heartbeat_group *g = dd_xcalloc(1, sizeof(*g));
    g->s = s;
    g->interval_ms = interval_ms > 0 ? interval_ms : 5000;
    g->refs = 1;
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    uv_timer_init(loop, &g->look);
    g->look.data = g;
    g->next_tick_us = dd_boot_us() + g->interval_ms * 1000;
    uv_timer_start(&g->timer, dd_hb_group_tick, (uint64_t)g->interval_ms,
                   (uint64_t)g->interval_ms);
    return g;
}

void dd_hb__group_join(dd_heartbeat_group *g, dd_heartbeat *h)
{
    g->refs++;
    h->group = g;
    h->grp_prev = NULL;
    h->grp_next = g->head;
    if (g->head)
        g->head->grp_prev = h;
    g->head = h;
}

void dd_hb__group_leave(dd_heartbeat *h)
{
    dd_heartbeat_group *g = h->group;
    if (!g)
        return;
    if (h->grp_prev)
        h->grp_prev->grp_next = h->grp_next;
    else
        g->head = h->grp_next;
    if (h->grp_next)
        h->grp_next->grp_prev = h->grp_prev;
    h->group = NULL;
    h->grp_prev = h->grp_next = NULL;
    dd_heartbeat_group_unref(g);
}

bool dd_hb__group_covers(const dd_heartbeat *h, int64_t due_us)
{
    return h->group && h->group->next_tick_us <= due_us;
}

bool dd_hb__group_fits(const dd_heartbeat_group *g, const dd_store *s, int64_t interval_ms)
{
    return g->s == s && g->interval_ms == interval_ms;
}
