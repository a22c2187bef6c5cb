/* hb_workers.c - the worker registry while owning (R9, R10): list, signal the
 * dispatcher, evict stale workers in batches; and the threshold the owner
 * record carries, as a standby sees it (heartbeat_int.h). */
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

/* ---- worker registry (R9, R10) ------------------------------------------ */

static void dd_hb_signal_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (st < 0 && st != DD_ECANCELED)
        dd_warn(h->ctx.log, "workers_signal_failed", "dispatcher=%s error=%s",
                dd_owner_name(h->o), r->message);
    dd_hb__finish_close(h);
}

/* One signal per batch puts registrations and evictions into the
 * dispatcher workflow's own history, readable in Temporal's UI. */
static void dd_hb_signal(dd_heartbeat *h, const char *kind, json_t *ids)
{
    if (!h->opts.t || !h->workers_signal || json_array_size(ids) == 0)
        return;
    json_t *body = json_pack("{s:O, s:s, s:I}", kind, ids, "by", dd_owner_server_id(h->o),
                             "at_ms", (json_int_t)dd_wall_ms());
    char *text = json_dumps(body, JSON_COMPACT);
    if (dd_temporal_signal(h->opts.t, dd_owner_workflow_id(h->o), h->run_id, h->workers_signal,
                           text,
                           dd_hb_signal_done, h, NULL) == 0)
        h->inflight++;
    free(text);
    json_decref(body);
}

static int dd_hb_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void dd_hb__forget_workers(dd_heartbeat *h)
{
    for (size_t i = 0; i < h->nknown; i++)
        free(h->known[i]);
    free(h->known);
    h->known = NULL;
    h->nknown = 0;
    dd_metric_add(h->m_registered, NULL, -(double)h->workers);
    h->workers = 0;
}

static void dd_hb_list_done(int st, const dd_store_workers *w, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing || !h->owning || st < 0) {
        dd_hb__finish_close(h);
        return;
    }
    char **now = dd_xcalloc(w->n + 1, sizeof(char *));
    for (size_t i = 0; i < w->n; i++)
        now[i] = dd_strdup(w->items[i].server_id);
    qsort(now, w->n, sizeof(char *), dd_hb_cmp);
    json_t *added = json_array();
    for (size_t i = 0; i < w->n; i++)
        if (!h->known || !bsearch(&now[i], h->known, h->nknown, sizeof(char *), dd_hb_cmp))
            json_array_append_new(added, json_string(now[i]));
    if (json_array_size(added) > 0) {
        char *list = json_dumps(added, JSON_COMPACT);
        dd_info(h->ctx.log, "workers_registered", "dispatcher=%s count=%zu workers=%s",
                dd_owner_name(h->o), json_array_size(added), list);
        free(list);
        dd_hb_signal(h, "registered", added);
    }
    json_decref(added);
    size_t old = h->workers;
    for (size_t i = 0; i < h->nknown; i++)
        free(h->known[i]);
    free(h->known);
    h->known = now;
    h->nknown = w->n;
    h->workers = w->n;
    dd_metric_add(h->m_registered, NULL, (double)w->n - (double)old);
}

static void dd_hb_evict_done(int st, const dd_store_workers *w, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (h->closing || !h->owning) {
        dd_hb__finish_close(h);
        return;
    }
    if (st == DD_EFENCED)
        return; /* the next heartbeat learns it lost and says so */
    if (st == 0 && w->n > 0) {
        json_t *ids = json_array();
        for (size_t i = 0; i < w->n; i++)
            json_array_append_new(ids, json_string(w->items[i].server_id));
        char *list = json_dumps(ids, JSON_COMPACT);
        dd_info(h->ctx.log, "workers_evicted",
                "dispatcher=%s count=%zu workers=%s threshold_ms=%lld epoch=%lld",
                dd_owner_name(h->o), w->n, list, (long long)h->opts.threshold_ms,
                (long long)h->epoch);
        free(list);
        dd_metric_add(h->m_evictions, NULL, (double)w->n);
        dd_hb_signal(h, "evicted", ids);
        json_decref(ids);
    }
    if (dd_store_worker_list(h->s, dd_owner_workflow_id(h->o), dd_hb_list_done, h) == 0)
        h->inflight++;
}

/* Evict first, then list: the registered count and the "registered"
 * signal never include a worker we are about to evict. A worker is evicted
 * only after threshold_ms without a heartbeat (several missed beats), so one
 * late heartbeat does not flap it out and back in. */
void dd_hb__workers_check(dd_heartbeat *h)
{
    /* workers heartbeat on Redis's clock too: judge them by it */
    if (h->srv_now_ms <= 0)
        return;
    if (dd_store_worker_evict(h->s, dd_owner_workflow_id(h->o), h->run_id, h->epoch,
                              h->srv_now_ms - h->opts.threshold_ms, h->opts.evict_batch,
                              dd_hb_evict_done, h) == 0)
        h->inflight++;
}

size_t dd_heartbeat_workers(const dd_heartbeat *h)
{
    return h->owning ? h->workers : 0;
}

/* A fleet with mixed thresholds still works (a record is stale only past
 * the longer of the reader's and its owner's: no host kills early), but the
 * owner's peers then wait for its threshold, not theirs: an operator wants
 * to know. Logged when the pair changes, not per read. */
void dd_hb__note_ttl(dd_heartbeat *h, int64_t ttl_ms)
{
    if (ttl_ms <= 0 || ttl_ms == h->seen_ttl_ms)
        return;
    bool was = h->seen_ttl_ms > 0 && h->seen_ttl_ms != h->opts.threshold_ms;
    bool is = ttl_ms != h->opts.threshold_ms;
    h->seen_ttl_ms = ttl_ms;
    if (is)
        dd_warn(h->ctx.log, "threshold_mismatch",
                "dispatcher=%s threshold_ms=%lld owner_threshold_ms=%lld judged_by_ms=%lld "
                "note=%s",
                dd_owner_name(h->o), (long long)h->opts.threshold_ms, (long long)ttl_ms,
                (long long)(ttl_ms > h->opts.threshold_ms ? ttl_ms : h->opts.threshold_ms),
                "the fleet runs mixed --stale-threshold values; records are judged by the "
                "longer one: give every host the same value");
    else if (was)
        dd_info(h->ctx.log, "threshold_match", "dispatcher=%s threshold_ms=%lld",
                dd_owner_name(h->o), (long long)ttl_ms);
    if (h->m_mismatch)
        dd_metric_set(h->m_mismatch, DD_L1(dd_owner_name(h->o)), is ? 1 : 0);
}
