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
 * the timers (fence.h). */
#include "owner/owner.h"

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

struct dd_heartbeat {
    dd_ctx ctx;
    dd_store *s;
    dd_owner *o;
    dd_heartbeat_opts opts;
    uv_timer_t timer;
    uv_timer_t ack_timer;   /* handoff: polls for the previous owner's ack */
    int64_t ack_deadline_ms; /* monotonic */
    char ack_name[2][300];
    char wait_run[2][DD_RUN_ID_LEN]; /* the runs whose acks we wait for, in order */
    int nwait, iwait;        /* how many, and the one polled now */
    char nonce[20];          /* this process: tells our own records from a namesake's */
    bool waiting_prev;      /* handoff wait in progress (also after we lost) */
    char fwd_run[DD_RUN_ID_LEN]; /* our own ack, held until that wait is over */
    int closes;             /* timer closes pending */
    bool owning;
    bool claimed;
    bool claim_unsure; /* a claim failed without an answer (timeout, lost connection):
                        * it may have landed, and we do not know its epoch */
    uv_timer_t unsure_timer;   /* retries the read of such a record after we let go */
    uint64_t unsure_until_ms;  /* monotonic: give up then (Redis still away) */
    char run_id[DD_RUN_ID_LEN];
    char first_run_id[DD_RUN_ID_LEN]; /* workflow mode: our chain ("" marker mode) */
    int64_t epoch;
    int inflight;      /* store operations pending */
    bool closing;
    bool watching;     /* standby watch armed */
    bool failing_over; /* we asked the owner to take over; wait for the outcome */
    bool releasing;    /* owner releasing: keep heartbeating until its child stopped */
    int64_t sent_us;     /* boot clock: when the write in flight went out */
    bool writing;        /* a claim or heartbeat is in flight */
    int64_t srv_now_ms;  /* Redis's clock at our last landed write */
    bool lease_after_claim; /* we hold the failover lease: release it after the claim */
    dd_backoff fo_backoff;   /* between failover attempts that were refused */
    char *workers_signal;    /* owned copy of opts.workers_signal, or NULL */
    uint64_t fo_not_before;  /* monotonic ms: no failover attempt before this */
    dd_rng rng;
    /* worker registry, while owning */
    char **known;      /* worker server ids seen at the last check (sorted) */
    size_t nknown;
    size_t workers;    /* what we added to dispatchd_workers_registered */
    dd_metric *m_evictions, *m_registered;
    /* the owner record's threshold as last seen (ttl_ms; 0 none yet) and
     * whether it differs from ours: logged once per change, exported */
    int64_t seen_ttl_ms;
    dd_metric *m_own_threshold, *m_mismatch;
    void (*done)(void *);
    void *done_arg;
};

static void dd_hb_workers_check(dd_heartbeat *h);
static void dd_hb_lease_given_back(int st, void *arg);
static void dd_hb_note_ttl(dd_heartbeat *h, int64_t ttl_ms);

/* The dispatcher's failover lease (see dd_hb_try_failover). */
static void dd_hb_lease_name(const dd_heartbeat *h, dd_buf *name)
{
    dd_buf_printf(name, DD_STORE_LEASE_FAILOVER, dd_owner_workflow_id(h->o));
}

static void dd_hb_give_back_lease(dd_heartbeat *h)
{
    dd_buf name = DD_BUF_INIT;
    dd_hb_lease_name(h, &name);
    if (dd_store_lease_release(h->s, dd_buf_str(&name), dd_owner_server_id(h->o),
                               dd_hb_lease_given_back, h) == 0)
        h->inflight++;
    dd_buf_release(&name);
}
static void dd_hb_forget_workers(dd_heartbeat *h);

static void dd_hb_tick(uv_timer_t *t);

static void dd_hb_timer_closed(uv_handle_t *t)
{
    dd_heartbeat *h = t->data;
    if (--h->closes > 0)
        return;
    free(h->known);
    free(h->workers_signal);
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
    h->closes = 3;
    uv_close((uv_handle_t *)&h->timer, dd_hb_timer_closed);
    uv_close((uv_handle_t *)&h->ack_timer, dd_hb_timer_closed);
    uv_close((uv_handle_t *)&h->unsure_timer, dd_hb_timer_closed);
}

/* Every reply: one less in flight. False when closing: the reply is
 * dropped and the close finishes once nothing is in flight. */
static bool dd_hb_reply(dd_heartbeat *h)
{
    h->inflight--;
    if (!h->closing)
        return true;
    dd_hb_finish_close(h);
    return false;
}

static void dd_hb_arm(dd_heartbeat *h, int64_t delay_ms)
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

/* Arms the next owner write one interval after the last send. */
static void dd_hb_arm_next(dd_heartbeat *h)
{
    int64_t next = (h->sent_us - dd_boot_us()) / 1000 + h->opts.interval_ms;
    dd_hb_arm(h, next);
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
    dd_hb_finish_close(h);
}

static void dd_hb_unsure_fire(uv_timer_t *t)
{
    dd_heartbeat *h = t->data;
    h->inflight--;
    dd_hb_unsure_try(h);
    dd_hb_finish_close(h);
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

static void dd_hb_claimed(int st, const dd_store_owner *res, void *arg)
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
    if (!dd_hb_reply(h))
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
            dd_hb_give_back_lease(h);
        }
        dd_info(h->ctx.log, "record_claimed", "dispatcher=%s workflow_id=%s run_id=%s epoch=%lld",
                dd_owner_name(h->o), dd_owner_workflow_id(h->o), h->run_id,
                (long long)h->epoch);
        dd_hb_note_ttl(h, h->opts.threshold_ms); /* the record carries ours now */
        return;
    }
    dd_warn(h->ctx.log, "record_claim_failed", "dispatcher=%s error=%s retry_in_ms=%lld",
            dd_owner_name(h->o), dd_strerror(st), (long long)h->opts.interval_ms);
    dd_hb_arm_next(h);
}

static void dd_hb_claim(dd_heartbeat *h)
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
    int rc = dd_store_claim(h->s, &a, dd_hb_claimed, h);
    if (rc == 0) {
        h->inflight++;
        h->writing = true;
        h->sent_us = sent;
        return;
    }
    dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_beat_done(int st, const dd_store_owner *res, void *arg)
{
    dd_heartbeat *h = arg;
    h->writing = false;
    if (!dd_hb_reply(h))
        return;
    if (h->releasing) {
        /* keep the record fresh, and our child's deadline with it, until
         * the child has stopped */
        if (st == 0) {
            dd_hb_arm_next(h);
            dd_hb_write_ok(h, res);
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
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(st));
    } else {
        dd_hb_write_ok(h, res);
        if (h->owning)
            dd_hb_workers_check(h);
    }
}

/* ---- worker registry (R9, R10) ------------------------------------------ */

static void dd_hb_signal_done(int st, const dd_temporal_result *r, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (st < 0 && st != DD_ECANCELED)
        dd_warn(h->ctx.log, "workers_signal_failed", "dispatcher=%s error=%s",
                dd_owner_name(h->o), r->message);
    dd_hb_finish_close(h);
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

static void dd_hb_forget_workers(dd_heartbeat *h)
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
        dd_hb_finish_close(h);
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
        dd_hb_finish_close(h);
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
static void dd_hb_workers_check(dd_heartbeat *h)
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
static void dd_hb_note_ttl(dd_heartbeat *h, int64_t ttl_ms)
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
    if (!dd_hb_reply(h))
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
        dd_hb_give_back_lease(h);
        dd_hb_arm(h, h->opts.interval_ms);
        return;
    }
    dd_info(h->ctx.log, "failover", "dispatcher=%s action=takeover", dd_owner_name(h->o));
    h->failing_over = true;
    dd_owner_retake(h->o);
    /* If the takeover fails we give the lease back and look again. */
    dd_hb_arm(h, h->opts.interval_ms / 2);
}

static void dd_hb_lease_done(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb_reply(h))
        return;
    if (h->owning)
        return;
    if (st == 0) {
        if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb_confirm_done, h) == 0) {
            h->inflight++;
        } else {
            dd_hb_give_back_lease(h);
            dd_hb_arm(h, h->opts.interval_ms);
        }
        return;
    }
    /* debug: a standby that lost the race would say so every interval */
    if (st == DD_EBUSY)
        dd_debug(h->ctx.log, "failover_skipped", "dispatcher=%s reason=%s", dd_owner_name(h->o),
                 "another standby holds the failover lease");
    dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_try_failover(dd_heartbeat *h, const char *stale_run)
{
    /* One lease per dispatcher: exactly one standby takes over, whether it
     * saw the stale record or (after the reconciler removed it) no record
     * at all. By the time the lease expires the winner has been
     * heartbeating for a while, so a later failure of the new owner finds
     * it free again. */
    dd_buf name = DD_BUF_INIT;
    dd_hb_lease_name(h, &name);
    dd_info(h->ctx.log, "failover_attempt", "dispatcher=%s stale_run_id=%s",
            dd_owner_name(h->o), stale_run);
    /* Held past the longest the takeover call can take (the Temporal
     * client's 30 s per-call deadline), so a slow attempt is never raced by
     * a second standby; a winner that dies costs the next one that long. */
    int rc = dd_store_lease_acquire(h->s, dd_buf_str(&name), dd_owner_server_id(h->o),
                                    h->opts.threshold_ms + 30000, dd_hb_lease_done, h);
    dd_buf_release(&name);
    if (rc == 0)
        h->inflight++;
    else
        dd_hb_arm(h, h->opts.interval_ms);
}

static void dd_hb_watch_done(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb_reply(h))
        return;
    if (h->owning || !h->opts.failover)
        return;
    if (dd_owner_get_state(h->o) == DD_OWNER_STOPPED) /* let go: no standby here */
        return;
    if (dd_owner_get_state(h->o) == DD_OWNER_TAKING_OVER ||
        dd_owner_get_state(h->o) == DD_OWNER_RELEASING) {
        dd_hb_arm(h, h->opts.interval_ms);
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
        dd_hb_arm(h, left < (uint64_t)h->opts.interval_ms ? (int64_t)left : h->opts.interval_ms);
        return;
    }
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
    /* Judged on Redis's clock (rec->now_ms, read with the record), against
     * the longer of our threshold and the owner's own (ttl_ms): a standby
     * configured shorter than the owner never calls it stale early. */
    dd_hb_note_ttl(h, rec->ttl_ms);
    int64_t now = rec->now_ms;
    int64_t stale_at = 0;
    if (dd_hb_rec_stale(h, rec, &stale_at)) {
        dd_info(h->ctx.log, "owner_stale",
                "dispatcher=%s owner=%s run_id=%s heartbeat_age_ms=%lld threshold_ms=%lld",
                dd_owner_name(h->o), rec->server_id ? rec->server_id : "", rec->run_id,
                (long long)(now - rec->hb_ms), (long long)(stale_at - rec->hb_ms));
        dd_hb_try_failover(h, rec->run_id ? rec->run_id : "none");
        return;
    }
    /* Wake when it would turn stale (a little after, with jitter so the
     * standbys do not race in lockstep), or at the next interval. The wait
     * runs on our timer: only the rate of our clock matters, not its
     * offset from Redis's. */
    int64_t wait = stale_at - now + 50 + (int64_t)(dd_rng_unit(&h->rng) * 200);
    if (wait > h->opts.interval_ms)
        wait = h->opts.interval_ms;
    dd_hb_arm(h, wait);
}

static void dd_hb_lease_given_back(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb_reply(h))
        return;
    dd_info(h->ctx.log, "failover_lease_released", "dispatcher=%s status=%s",
            dd_owner_name(h->o), st == 0 ? "released" : dd_strerror(st));
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
            dd_hb_claim(h);
            return;
        }
        int64_t sent = dd_boot_us();
        int rc = dd_store_heartbeat_chain(h->s, dd_owner_workflow_id(h->o), h->run_id,
                                          h->first_run_id[0] ? h->first_run_id : NULL, h->epoch,
                                          0 /* Redis's clock */, h->opts.threshold_ms,
                                          dd_hb_beat_done, h);
        if (rc == 0) {
            h->inflight++;
            h->writing = true;
            h->sent_us = sent;
            return;
        }
        dd_warn(h->ctx.log, "heartbeat_failed", "dispatcher=%s error=%s", dd_owner_name(h->o),
                dd_strerror(rc));
        dd_hb_arm(h, h->opts.interval_ms);
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
        dd_hb_give_back_lease(h);
        int64_t delay = dd_backoff_next(&h->fo_backoff);
        h->fo_not_before = dd_mono_ms() + (uint64_t)delay;
        dd_warn(h->ctx.log, "failover_backoff", "dispatcher=%s retry_in_ms=%lld",
                dd_owner_name(h->o), (long long)delay);
    }
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

static void dd_hb_lease_set(int st, void *arg)
{
    dd_heartbeat *h = arg;
    h->inflight--;
    if (st < 0 && st != DD_ECANCELED)
        dd_warn(h->ctx.log, "handoff_ack_failed", "dispatcher=%s error=%s",
                dd_owner_name(h->o), dd_strerror(st));
    dd_hb_finish_close(h);
}

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

static void dd_hb_publish_ack(dd_heartbeat *h, const char *run_id)
{
    char name[300];
    snprintf(name, sizeof(name), DD_STORE_LEASE_HANDOFF, dd_owner_workflow_id(h->o), run_id);
    if (dd_store_lease_acquire(h->s, name, dd_owner_server_id(h->o), 2 * h->opts.threshold_ms,
                               dd_hb_lease_set, h) == 0)
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
        dd_hb_publish_ack(h, run);
    }
}

static void dd_hb_ack_done(int st, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb_reply(h))
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
 * the moment our claim lands (dd_hb_claimed arms it): until then the
 * previous owner may still land heartbeats, which push its own deadline. */
static void dd_hb_wait_for(dd_heartbeat *h, const char *const *runs, int n)
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

static void dd_hb_prev_record(int st, const dd_store_hb *rec, void *arg)
{
    dd_heartbeat *h = arg;
    if (!dd_hb_reply(h))
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
    dd_hb_claim(h);
    if (n == 0) {
        if (h->waiting_prev) /* an older wait (ours before we lost) is still on */
            return;
        dd_owner_open_gate(h->o, prev[0] ? "previous owner not heartbeating" : "no previous run");
        return;
    }
    const char *list[2] = {runs[0], runs[1]};
    dd_hb_wait_for(h, list, n);
}

void dd_heartbeat_stopped_acting(dd_heartbeat *h, const char *run_id)
{
    if (h->releasing && strcmp(run_id, h->run_id) == 0) {
        h->releasing = false;
        h->claimed = false;
        uv_timer_stop(&h->timer);
        if (dd_store_release(h->s, dd_owner_workflow_id(h->o), h->run_id, h->epoch,
                             dd_hb_released, h) == 0)
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
    dd_hb_publish_ack(h, run_id);
}

void dd_heartbeat_owner_changed(dd_heartbeat *h, bool owning, const char *run_id)
{
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
        if (dd_store_get(h->s, dd_owner_workflow_id(h->o), dd_hb_prev_record, h) == 0) {
            h->inflight++;
        } else {
            /* cannot tell who was acting: wait for the run we replaced (our
             * child needs a landed claim anyway, so nothing acts before
             * Redis answers) */
            const char *prev = dd_owner_previous_run_id(h->o);
            dd_hb_claim(h);
            if (prev[0] && strcmp(prev, dd_owner_own_previous_run_id(h->o)) != 0)
                dd_hb_wait_for(h, &prev, 1);
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
    dd_hb_forget_workers(h);
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
        dd_hb_arm(h, h->opts.interval_ms); /* lost: become a standby */
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
    dd_hb_arm(h, 0);
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
    dd_hb_forget_workers(h);
    if (h->failing_over || h->lease_after_claim) {
        /* a shutdown interrupted our failover (before the takeover ended, or
         * before its claim landed): the lease goes back now, or the next
         * standby would wait it out (threshold + 30 s) */
        h->failing_over = h->lease_after_claim = false;
        dd_hb_give_back_lease(h);
    }
    if (h->releasing) /* the owner stopped (its child too): the record goes now */
        dd_heartbeat_stopped_acting(h, h->run_id);
    h->closing = true;
    h->done = done;
    h->done_arg = arg;
    uv_timer_stop(&h->timer);
    uv_timer_stop(&h->ack_timer);
    dd_hb_finish_close(h);
}
