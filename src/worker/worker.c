/* worker.c - the worker side of the registry (include/dispatchd.h).
 *
 * A worker is deliberately simple: ZADD its server id with the current time
 * into the dispatcher's worker set every interval. It is not fenced (it
 * owns nothing); the owner decides who is dead.
 *
 * The owner evicts a worker whose heartbeat is older than the owner's own
 * stale threshold, which is in its record (ttl_ms); every heartbeat reads it
 * in the same step. A worker configured slower than a third of that would
 * be evicted and re-registered over and over (a `workers` signal each time),
 * so it heartbeats at min(configured interval, ttl_ms / 3) and says so once
 * per change. A heartbeat that finds itself missing from the set after the
 * first means the owner evicted it: logged as a warning. */
#include "dispatchd.h"

#include "core/buf.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "owner/id.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct dispatchd_worker {
    uv_loop_t *loop;
    dd_log *log;
    dd_ctx ctx;
    dd_store *s;
    char wid[DD_DISPATCHER_ID_BUFLEN];
    char *server_id;
    int64_t interval_ms;  /* configured */
    int64_t effective_ms; /* what the timer runs at: min(configured, owner ttl / 3) */
    int64_t owner_ttl_ms; /* last seen in the owner's record (0: none yet) */
    uv_timer_t timer;
    uv_timer_t stop_deadline;
    uint64_t beats;
    int inflight;
    int open_handles; /* timers not yet closed: w is freed when the last one is */
    bool stopping;
    bool logged_down;
    void (*done)(void *);
    void *done_arg;
};

static void dd_worker_tick(uv_timer_t *t);

/* The interval that keeps three heartbeats inside the owner's threshold. */
static int64_t dd_worker_interval_for(const dispatchd_worker *w, int64_t owner_ttl_ms)
{
    if (owner_ttl_ms <= 0)
        return w->interval_ms;
    int64_t fit = owner_ttl_ms / 3;
    if (fit < 100) /* the owners' own floor (owner/fence.h); a smaller ttl is not ours to fix */
        fit = 100;
    return fit < w->interval_ms ? fit : w->interval_ms;
}

static void dd_worker_learn_ttl(dispatchd_worker *w, int64_t owner_ttl_ms)
{
    if (owner_ttl_ms <= 0 || owner_ttl_ms == w->owner_ttl_ms)
        return;
    w->owner_ttl_ms = owner_ttl_ms;
    int64_t e = dd_worker_interval_for(w, owner_ttl_ms);
    if (e == w->effective_ms)
        return;
    if (e < w->interval_ms)
        dd_warn(w->log, "worker_interval_adjusted",
                "workflow_id=%s worker=%s configured_interval_ms=%lld owner_threshold_ms=%lld "
                "interval_ms=%lld note=%s",
                w->wid, w->server_id, (long long)w->interval_ms, (long long)owner_ttl_ms,
                (long long)e,
                "the owner evicts workers silent for its threshold: heartbeating a third of it; "
                "set --heartbeat-interval at most that to silence this");
    else
        dd_info(w->log, "worker_interval_adjusted",
                "workflow_id=%s worker=%s configured_interval_ms=%lld owner_threshold_ms=%lld "
                "interval_ms=%lld",
                w->wid, w->server_id, (long long)w->interval_ms, (long long)owner_ttl_ms,
                (long long)e);
    bool sooner = e < w->effective_ms;
    w->effective_ms = e;
    uv_timer_set_repeat(&w->timer, (uint64_t)e);
    if (sooner) /* the next beat is due within the new interval, not the old one */
        uv_timer_start(&w->timer, dd_worker_tick, (uint64_t)e, (uint64_t)e);
}

static void dd_worker_beat_done(int st, bool added, int64_t owner_ttl_ms, void *arg)
{
    dispatchd_worker *w = arg;
    w->inflight--;
    if (w->stopping)
        return;
    if (st == 0) {
        if (w->beats > 0 && added)
            dd_warn(w->log, "worker_evicted",
                    "workflow_id=%s worker=%s interval_ms=%lld owner_threshold_ms=%lld "
                    "note=%s",
                    w->wid, w->server_id, (long long)w->effective_ms, (long long)owner_ttl_ms,
                    w->logged_down ? "Redis was unreachable longer than the owner's threshold; "
                                     "registered again"
                                   : "the owner found no heartbeat within its threshold; "
                                     "registered again");
        else if (w->beats == 0 || w->logged_down)
            dd_info(w->log, "worker_registered", "workflow_id=%s worker=%s interval_ms=%lld",
                    w->wid, w->server_id, (long long)w->effective_ms);
        w->beats++;
        w->logged_down = false;
        dd_worker_learn_ttl(w, owner_ttl_ms);
    } else if (!w->logged_down) {
        dd_warn(w->log, "worker_heartbeat_failed", "workflow_id=%s worker=%s error=%s", w->wid,
                w->server_id, dd_strerror(st));
        w->logged_down = true;
    }
}

static void dd_worker_tick(uv_timer_t *t)
{
    dispatchd_worker *w = t->data;
    if (w->stopping)
        return;
    if (dd_store_worker_beat(w->s, w->wid, w->server_id, 0, dd_worker_beat_done, w) == 0)
        w->inflight++;
}

int dispatchd_worker_start(uv_loop_t *loop, const dispatchd_worker_opts *o,
                           dispatchd_worker **out, char *err, size_t errlen)
{
    if (!o->server_id || !*o->server_id) {
        snprintf(err, errlen, "worker server id must not be empty");
        return DD_EINVAL;
    }
    char wid[DD_DISPATCHER_ID_BUFLEN];
    const char *project = o->project ? o->project : "";
    const char *queue = o->queue ? o->queue : "";
    int rc = dd_dispatcher_id_with(o->id_prefix, project, queue, wid, sizeof(wid), err, errlen);
    if (rc < 0)
        return rc;
    dispatchd_worker *w = dd_xcalloc(1, sizeof(*w));
    w->loop = loop;
    FILE *logf = o->log ? o->log : stderr;
    w->log = dd_log_new(logf, DD_LOG_INFO);
    if (o->redis_password)
        dd_log_add_secret(w->log, o->redis_password);
    if (o->redis_sentinel_password)
        dd_log_add_secret(w->log, o->redis_sentinel_password);
    w->ctx = (dd_ctx){.loop = loop, .log = w->log};
    snprintf(w->wid, sizeof(w->wid), "%s", wid);
    w->server_id = dd_strdup(o->server_id);
    w->interval_ms = o->heartbeat_interval_ms > 0 ? o->heartbeat_interval_ms : 5000;
    w->effective_ms = w->interval_ms;
    /* back within one interval of Redis's return (cli/common.c says why) */
    dd_store_opts so = {.url = o->redis_url,
                        .password = o->redis_password,
                        .username = o->redis_username,
                        .tls_ca_file = o->redis_ca_file,
                        .tls_cert_file = o->redis_cert_file,
                        .tls_key_file = o->redis_key_file,
                        .sentinels = o->redis_sentinel,
                        .master_name = o->redis_master_name,
                        .sentinel_password = o->redis_sentinel_password,
                        .db = o->redis_db,
                        .reconnect_cap_ms = w->interval_ms < 5000 ? w->interval_ms : 5000};
    rc = dd_store_open(&w->ctx, &so, &w->s, err, errlen);
    if (rc < 0) {
        dd_log_free(w->log);
        free(w->server_id);
        free(w);
        return rc;
    }
    uv_timer_init(loop, &w->timer);
    uv_timer_init(loop, &w->stop_deadline);
    w->timer.data = w->stop_deadline.data = w;
    uv_timer_start(&w->timer, dd_worker_tick, 0, (uint64_t)w->interval_ms);
    *out = w;
    return 0;
}

/* The public codes are the internal ones (checked at compile time). */
_Static_assert((int)DISPATCHD_EINVAL == (int)DD_EINVAL &&
                   (int)DISPATCHD_ETIMEOUT == (int)DD_ETIMEOUT &&
                   (int)DISPATCHD_EPROTO == (int)DD_EPROTO &&
                   (int)DISPATCHD_EUNAVAIL == (int)DD_EUNAVAIL &&
                   (int)DISPATCHD_ECANCELED == (int)DD_ECANCELED,
               "include/dispatchd.h error codes must equal src/core/error.h's");

const char *dispatchd_strerror(int err)
{
    return dd_strerror(err);
}

uint64_t dispatchd_worker_heartbeats(const dispatchd_worker *w)
{
    return w->beats;
}

/* libuv runs close callbacks in the reverse order of the uv_close calls, so
 * which one comes last is not known here: count, and free in the last. */
static void dd_worker_release(dispatchd_worker *w)
{
    if (--w->open_handles > 0)
        return;
    void (*done)(void *) = w->done;
    void *arg = w->done_arg;
    dd_log_free(w->log);
    free(w->server_id);
    free(w);
    if (done)
        done(arg);
}

static void dd_worker_closed(uv_handle_t *h)
{
    dd_worker_release(h->data);
}

/* The store answers what is still in flight (DD_ECANCELED, touching w)
 * before it calls this: w lives until then. */
static void dd_worker_store_closed(void *arg)
{
    dd_worker_release(arg);
}

static void dd_worker_finish(dispatchd_worker *w)
{
    if (uv_is_closing((uv_handle_t *)&w->stop_deadline))
        return;
    w->open_handles = 3; /* two timers and the store */
    dd_store_close(w->s, dd_worker_store_closed, w); /* cancels anything still in flight */
    uv_close((uv_handle_t *)&w->timer, dd_worker_closed);
    uv_close((uv_handle_t *)&w->stop_deadline, dd_worker_closed);
}

static void dd_worker_deregistered(int st, void *arg)
{
    dispatchd_worker *w = arg;
    if (st == 0)
        dd_info(w->log, "worker_deregistered", "workflow_id=%s worker=%s", w->wid,
                w->server_id);
    else if (st != DD_ECANCELED)
        dd_warn(w->log, "worker_deregister_failed", "workflow_id=%s worker=%s error=%s note=%s",
                w->wid, w->server_id, dd_strerror(st), "the owner will evict it when stale");
    if (st != DD_ECANCELED)
        dd_worker_finish(w);
}

static void dd_worker_deadline(uv_timer_t *t)
{
    dd_worker_finish(t->data);
}

void dispatchd_worker_stop(dispatchd_worker *w, void (*done)(void *), void *arg)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->done = done;
    w->done_arg = arg;
    uv_timer_stop(&w->timer);
    if (dd_store_worker_deregister(w->s, w->wid, w->server_id, dd_worker_deregistered, w) < 0) {
        dd_worker_finish(w);
        return;
    }
    /* Redis may be down: do not hang the caller's shutdown on it. */
    uv_timer_start(&w->stop_deadline, dd_worker_deadline, 2000, 0);
}

typedef struct {
    volatile sig_atomic_t *stop;
    dispatchd_worker *w;
} dd_worker_blocking;

static void dd_worker_check_stop(uv_timer_t *t)
{
    dd_worker_blocking *b = t->data;
    if (*b->stop) {
        uv_close((uv_handle_t *)t, NULL);
        dispatchd_worker_stop(b->w, NULL, NULL);
    }
}

int dispatchd_worker_run(const dispatchd_worker_opts *o, volatile sig_atomic_t *stop, char *err,
                         size_t errlen)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_worker_blocking b = {.stop = stop};
    int rc = dispatchd_worker_start(&loop, o, &b.w, err, errlen);
    if (rc == 0) {
        /* A signal handler can only set a flag; look at it a few times a
         * second (the blocking API has no loop of the caller to wake). */
        uv_timer_t t;
        uv_timer_init(&loop, &t);
        t.data = &b;
        uv_timer_start(&t, dd_worker_check_stop, 100, 100);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
