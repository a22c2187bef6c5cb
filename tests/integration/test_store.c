/* Integration tests of src/store against a real redis-server (one per test,
 * on a free loopback port). Every test ends with the store closed and
 * uv_loop_close() == 0: no handle, timer or hiredis poller left behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "../support/testsupport.h"

#include <hiredis/hiredis.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD "correct-horse-battery"

/* testsupport keeps a pointer to every server it started (to kill it from
 * atexit/signal handlers), so the server struct must outlive the test. */
static dd_test_server the_server;

typedef struct fx {
    dd_test_server *srvp;
    const char *srv_password;
    uv_loop_t loop;
    FILE *logf;
    char *logbuf;
    size_t loglen;
    dd_log *log;
    dd_ctx ctx;
    dd_store *s;
    int nready, nlost;
} fx;

/* What a callback saw, copied out (results are only valid in the callback). */
typedef struct waiter {
    bool done;
    int status;
    int64_t epoch;
    char holder[64];
    size_t n;
    int64_t total, stale;
    char ids[128][64];
    int64_t hbs[128];
    bool malformed[128];
    char problem[128][64];
} waiter;

static void on_state(int status, void *arg)
{
    fx *f = arg;
    if (status == 0)
        f->nready++;
    else
        f->nlost++;
}

static void status_cb(int status, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
}

static void owner_cb(int status, const dd_store_owner *res, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
    if (res) {
        w->epoch = res->epoch;
        snprintf(w->holder, sizeof(w->holder), "%s", res->server_id ? res->server_id : "");
    }
}

static void copy_rec(waiter *w, size_t i, const dd_store_hb *h)
{
    if (i >= 128)
        return;
    snprintf(w->ids[i], sizeof(w->ids[i]), "%s", h->workflow_id);
    w->hbs[i] = h->hb_ms;
    w->malformed[i] = h->malformed;
    snprintf(w->problem[i], sizeof(w->problem[i]), "%s", h->problem ? h->problem : "");
}

static void hb_cb(int status, const dd_store_hb *rec, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
    if (rec) {
        w->n = 1;
        copy_rec(w, 0, rec);
        w->epoch = rec->epoch;
        snprintf(w->holder, sizeof(w->holder), "%s", rec->server_id ? rec->server_id : "");
    }
}

static void list_cb(int status, const dd_store_hb_list *res, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
    if (res) {
        w->n = res->n;
        w->total = res->total;
        w->stale = res->stale;
        for (size_t i = 0; i < res->n; i++)
            copy_rec(w, i, &res->items[i]);
    }
}

static void oldest_cb(int status, const char *wid, int64_t hb_ms, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
    if (status == 0) {
        snprintf(w->ids[0], sizeof(w->ids[0]), "%s", wid);
        w->hbs[0] = hb_ms;
    }
}

static void workers_cb(int status, const dd_store_workers *res, void *arg)
{
    waiter *w = arg;
    w->status = status;
    w->done = true;
    if (res) {
        w->n = res->n;
        for (size_t i = 0; i < res->n && i < 128; i++) {
            snprintf(w->ids[i], sizeof(w->ids[i]), "%s", res->items[i].server_id);
            w->hbs[i] = res->items[i].hb_ms;
        }
    }
}

/* Runs the loop until *flag or ms pass; returns *flag. */
static bool run_until(fx *f, bool *flag, int ms)
{
    return dd_test_run_until(&f->loop, flag, ms);
}

static void sleep_loop(fx *f, int ms)
{
    dd_test_sleep_loop(&f->loop, ms);
}

/* Waits for one callback; an op refused synchronously counts as answered. */
static int wait_op(fx *f, waiter *w, int rc)
{
    if (rc < 0)
        return rc;
    if (!run_until(f, &w->done, 10000))
        fail_msg("callback never came");
    return w->status;
}

#define W(call) (memset(&w, 0, sizeof(w)), wait_op(f, &w, (call)))

static void open_store(fx *f, const char *url, const char *password, int64_t timeout_ms)
{
    dd_store_opts o = {0};
    char err[256];
    o.url = url;
    o.password = password;
    o.cmd_timeout_ms = timeout_ms;
    o.reconnect_base_ms = 20;
    o.reconnect_cap_ms = 200;
    o.seed = 7;
    o.on_state = on_state;
    o.state_arg = f;
    assert_int_equal(dd_store_open(&f->ctx, &o, &f->s, err, sizeof(err)), 0);
}

static const char *url_of(fx *f, char *buf, size_t len)
{
    snprintf(buf, len, "redis://127.0.0.1:%d/0", f->srvp->port);
    return buf;
}

static int setup_common(void **state, const char *password)
{
    fx *f = calloc(1, sizeof(*f));
    char url[128];
    f->srvp = &the_server;
    if (dd_test_redis_start(f->srvp, password) < 0) {
        free(f);
        return -1;
    }
    f->srv_password = password;
    uv_loop_init(&f->loop);
    f->logf = open_memstream(&f->logbuf, &f->loglen);
    f->log = dd_log_new(f->logf, DD_LOG_DEBUG);
    f->ctx.loop = &f->loop;
    f->ctx.log = f->log;
    f->ctx.metrics = dd_metrics_new();
    if (!password)
        open_store(f, url_of(f, url, sizeof(url)), NULL, 2000);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, NULL);
}

static int setup_auth(void **state)
{
    return setup_common(state, PASSWORD);
}

static int teardown(void **state)
{
    fx *f = *state;
    dd_store_close(f->s, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    dd_log_free(f->log);
    dd_metrics_free(f->ctx.metrics);
    fclose(f->logf);
    free(f->logbuf);
    dd_test_server_stop(f->srvp);
    free(f);
    assert_int_equal(rc, 0); /* the loop closed clean */
    return 0;
}

/* A plain synchronous connection for arranging and inspecting data. */
static redisContext *raw(fx *f)
{
    redisContext *c = redisConnect("127.0.0.1", f->srvp->port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    if (f->srv_password)
        freeReplyObject(redisCommand(c, "AUTH %s", f->srv_password));
    return c;
}

static void raw_cmd(fx *f, const char *fmt, ...)
{
    redisContext *c = raw(f);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

static int claim(fx *f, const char *wid, const char *run, const char *server, int64_t now,
                 int64_t *epoch)
{
    waiter w;
    dd_store_claim_args a = {wid, run, server, "proj", "queue-a", now, 30000, NULL, NULL, NULL};
    int rc = W(dd_store_claim(f->s, &a, owner_cb, &w));
    if (epoch)
        *epoch = w.epoch;
    return rc;
}

/* ---- tests -------------------------------------------------------------- */

static void test_claim_heartbeat_fencing(void **state)
{
    fx *f = *state;
    waiter w;
    int64_t e1, e2, e3;
    assert_int_equal(claim(f, "wf-1", "run-a", "host-a", 1000, &e1), 0);
    assert_int_equal(e1, 1);
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-1", "run-a", e1, 2000, 30000, owner_cb, &w)),
                     0);
    assert_int_equal(W(dd_store_get(f->s, "wf-1", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 2000);
    assert_false(w.malformed[0]);
    assert_string_equal(w.holder, "host-a");

    /* takeover by host-b: a new run and a new epoch */
    assert_int_equal(claim(f, "wf-1", "run-b", "host-b", 3000, &e2), 0);
    assert_int_equal(e2, 2);

    /* host-a wakes up from SIGSTOP and heartbeats: rejected, record unchanged */
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-1", "run-a", e1, 9000, 30000, owner_cb, &w)),
                     DD_EFENCED);
    assert_string_equal(w.holder, "host-b");
    assert_int_equal(w.epoch, 2);
    /* the right run id with an old epoch is not enough either */
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-1", "run-b", e1, 9000, 30000, owner_cb, &w)),
                     DD_EFENCED);
    assert_int_equal(W(dd_store_get(f->s, "wf-1", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 3000);
    assert_string_equal(w.holder, "host-b");
    assert_int_equal(w.epoch, 2);

    /* release: only the holder can */
    assert_int_equal(W(dd_store_release(f->s, "wf-1", "run-a", e1, owner_cb, &w)), DD_EFENCED);
    assert_int_equal(W(dd_store_release(f->s, "wf-1", "run-b", e2, owner_cb, &w)), 0);
    assert_int_equal(W(dd_store_get(f->s, "wf-1", hb_cb, &w)), DD_ENOTFOUND);
    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.total, 0);
    /* a heartbeat for a released record is fenced, not resurrected */
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-1", "run-b", e2, 9000, 30000, owner_cb, &w)),
                     DD_EFENCED);
    assert_int_equal(W(dd_store_get(f->s, "wf-1", hb_cb, &w)), DD_ENOTFOUND);
    /* epochs survive the release: never reused */
    assert_int_equal(claim(f, "wf-1", "run-c", "host-c", 10000, &e3), 0);
    assert_int_equal(e3, 3);
    /* bad arguments are refused synchronously */
    assert_int_equal(dd_store_heartbeat(f->s, "", "r", 1, 1, 1, owner_cb, &w), DD_EINVAL);
}

/* The owner letting go (graceful release, a guard's last will): fenced by
 * run and epoch, so a late will leaves a newer owner's record alone; the
 * handoff flag is set either way; workflow mode expires instead of deleting
 * and follows the chain. */
static void test_let_go(void **state)
{
    fx *f = *state;
    waiter w;
    int64_t e1, e2, e3;
    assert_int_equal(claim(f, "wf-w", "run-a", "host-a", 1000, &e1), 0);
    assert_int_equal(claim(f, "wf-w", "run-b", "host-b", 2000, &e2), 0);
    /* a late will of host-a: fenced, the record untouched, its flag set */
    dd_store_let_go_args a = {.workflow_id = "wf-w", .run_id = "run-a", .epoch = e1,
                              .ack_holder = "host-a", .ack_ttl_ms = 30000};
    assert_int_equal(W(dd_store_let_go(f->s, &a, owner_cb, &w)), DD_EFENCED);
    assert_string_equal(w.holder, "host-b");
    assert_int_equal(W(dd_store_get(f->s, "wf-w", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 2000);
    assert_int_equal(w.epoch, e2);
    assert_int_equal(W(dd_store_lease_held(f->s, "handoff:wf-w:run-a", status_cb, &w)), 0);
    /* the right run with an old epoch is fenced too */
    a.run_id = "run-b";
    a.ack_holder = NULL; /* (without ack_holder: no flag) */
    assert_int_equal(W(dd_store_let_go(f->s, &a, owner_cb, &w)), DD_EFENCED);
    assert_int_equal(W(dd_store_get(f->s, "wf-w", hb_cb, &w)), 0);
    /* the holder's own: deleted, index too */
    a.epoch = e2;
    assert_int_equal(W(dd_store_let_go(f->s, &a, owner_cb, &w)), 0);
    assert_int_equal(W(dd_store_get(f->s, "wf-w", hb_cb, &w)), DD_ENOTFOUND);
    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.total, 0);
    assert_int_equal(W(dd_store_lease_held(f->s, "handoff:wf-w:run-b", status_cb, &w)),
                     DD_ENOTFOUND);
    /* workflow mode: the chain continued as new (run-d), the will names its
     * first run (run-c): the record is expired, not deleted, and the flag of
     * the chain's current run is set as well */
    waiter w2;
    dd_store_claim_args ca = {"wf-w", "run-c", "host-c", "proj", "queue-a", 3000, 30000,
                              "run-c", "MyType", NULL};
    assert_int_equal(W(dd_store_claim(f->s, &ca, owner_cb, &w)), 0);
    e3 = w.epoch;
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(wait_op(f, &w2, dd_store_heartbeat_chain(f->s, "wf-w", "run-d", "run-c", e3,
                                                              4000, 30000, owner_cb, &w2)),
                     0);
    dd_store_let_go_args b = {.workflow_id = "wf-w", .run_id = "run-c", .first_run_id = "run-c",
                              .epoch = e3, .expire = true, .ack_holder = "host-c",
                              .ack_ttl_ms = 30000};
    assert_int_equal(W(dd_store_let_go(f->s, &b, owner_cb, &w)), 0);
    assert_int_equal(W(dd_store_get(f->s, "wf-w", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 0); /* stale at once: whoever takes over ends the chain */
    assert_int_equal(W(dd_store_lease_held(f->s, "handoff:wf-w:run-c", status_cb, &w)), 0);
    assert_int_equal(W(dd_store_lease_held(f->s, "handoff:wf-w:run-d", status_cb, &w)), 0);
    /* bad arguments are refused synchronously */
    b.epoch = 0;
    assert_int_equal(dd_store_let_go(f->s, &b, owner_cb, &w), DD_EINVAL);
}

/* Many heartbeats in one call: each is fenced on its own record. */
typedef struct beat_seen {
    int calls, status;
    int64_t now_ms, epoch;
    char holder[64];
    int order; /* the call's position among all items' callbacks */
} beat_seen;

static int beat_order;

static void beat_cb(int status, const dd_store_owner *res, void *arg)
{
    beat_seen *b = arg;
    b->calls++;
    b->status = status;
    b->order = beat_order++;
    if (res) {
        b->now_ms = res->now_ms;
        b->epoch = res->epoch;
        snprintf(b->holder, sizeof(b->holder), "%s", res->server_id ? res->server_id : "");
    }
}

static bool beats_done(beat_seen *b, int n)
{
    for (int i = 0; i < n; i++)
        if (b[i].calls == 0)
            return false;
    return true;
}

static void test_heartbeat_batch_fencing(void **state)
{
    fx *f = *state;
    waiter w;
    int64_t e1, e2, e3, e4;
    assert_int_equal(claim(f, "wf-1", "run-a", "host-a", 1000, &e1), 0);
    assert_int_equal(claim(f, "wf-2", "run-b", "host-a", 1000, &e2), 0);
    assert_int_equal(claim(f, "wf-3", "run-c", "host-a", 1000, &e3), 0);
    /* wf-2 was taken over by host-b: our run, old epoch */
    assert_int_equal(claim(f, "wf-2", "run-x", "host-b", 1500, &e4), 0);
    /* wf-4 never existed (released, or cleaned up) */
    beat_seen b[4];
    memset(b, 0, sizeof(b));
    beat_order = 0;
    dd_store_beat items[4] = {
        {"wf-1", "run-a", NULL, e1, 30000, beat_cb, &b[0]},
        {"wf-2", "run-b", NULL, e2, 30000, beat_cb, &b[1]},
        {"wf-3", "run-c", NULL, e3, 30000, beat_cb, &b[2]},
        {"wf-4", "run-d", NULL, 1, 30000, beat_cb, &b[3]},
    };
    assert_int_equal(dd_store_heartbeat_batch(f->s, items, 4, 5000), 0);
    for (int i = 0; i < 200 && !beats_done(b, 4); i++)
        sleep_loop(f, 10);
    assert_true(beats_done(b, 4));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b[i].calls, 1);
        assert_int_equal(b[i].order, i); /* item order */
    }
    assert_int_equal(b[0].status, 0);
    assert_int_equal(b[0].now_ms, 5000);
    assert_int_equal(b[1].status, DD_EFENCED);
    assert_string_equal(b[1].holder, "host-b");
    assert_int_equal(b[1].epoch, e4);
    assert_int_equal(b[2].status, 0);
    assert_int_equal(b[3].status, DD_EFENCED);
    assert_string_equal(b[3].holder, "");
    /* the fenced ones are untouched, the others refreshed (hash and index) */
    assert_int_equal(W(dd_store_get(f->s, "wf-1", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 5000);
    assert_int_equal(W(dd_store_get(f->s, "wf-2", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 1500);
    assert_string_equal(w.holder, "host-b");
    assert_int_equal(W(dd_store_get(f->s, "wf-3", hb_cb, &w)), 0);
    assert_int_equal(w.hbs[0], 5000);
    assert_int_equal(W(dd_store_get(f->s, "wf-4", hb_cb, &w)), DD_ENOTFOUND);
    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.total, 3);
    for (size_t i = 0; i < w.n; i++)
        assert_int_equal(w.hbs[i], strcmp(w.ids[i], "wf-2") ? 5000 : 1500);
    /* the right run with an old epoch is fenced too */
    memset(b, 0, sizeof(b));
    dd_store_beat again[2] = {
        {"wf-1", "run-a", NULL, e1 + 10, 30000, beat_cb, &b[0]},
        {"wf-3", "run-c", NULL, e3, 30000, beat_cb, &b[1]},
    };
    assert_int_equal(dd_store_heartbeat_batch(f->s, again, 2, 6000), 0);
    for (int i = 0; i < 200 && !beats_done(b, 2); i++)
        sleep_loop(f, 10);
    assert_int_equal(b[0].status, DD_EFENCED);
    assert_int_equal(b[1].status, 0);
    /* bad arguments are refused synchronously, no callback */
    assert_int_equal(dd_store_heartbeat_batch(f->s, again, 0, 0), DD_EINVAL);
    assert_int_equal(dd_store_heartbeat_batch(f->s, again, DD_STORE_BEAT_MAX + 1, 0), DD_EINVAL);
    again[1].workflow_id = "";
    memset(b, 0, sizeof(b));
    assert_int_equal(dd_store_heartbeat_batch(f->s, again, 2, 0), DD_EINVAL);
    sleep_loop(f, 50);
    assert_int_equal(b[0].calls + b[1].calls, 0);
}

/* dd_store_get_batch: what dd_store_get would give each item, in order,
 * from one command. */
typedef struct got_rec {
    int calls, order, status;
    char server[32], run[32];
    int64_t epoch, now_ms;
    bool malformed;
} got_rec;
static int got_order;

static void got_cb(int st, const dd_store_hb *rec, void *arg)
{
    got_rec *g = arg;
    g->calls++;
    g->order = got_order++;
    g->status = st;
    if (st == 0) {
        snprintf(g->server, sizeof(g->server), "%s", rec->server_id ? rec->server_id : "");
        snprintf(g->run, sizeof(g->run), "%s", rec->run_id ? rec->run_id : "");
        g->epoch = rec->epoch;
        g->now_ms = rec->now_ms;
        g->malformed = rec->malformed;
    }
}

static void test_get_batch(void **state)
{
    fx *f = *state;
    int64_t e1, e2;
    assert_int_equal(claim(f, "wf-1", "run-a", "host-a", 1000, &e1), 0);
    assert_int_equal(claim(f, "wf-2", "run-b", "host-b", 1000, &e2), 0);
    raw_cmd(f, "HSET dd:hb:{wf-bad} workflow_id wf-bad hb_ms 11");
    got_rec g[4];
    memset(g, 0, sizeof(g));
    got_order = 0;
    dd_store_get_item items[4] = {
        {"wf-1", got_cb, &g[0]},
        {"wf-none", got_cb, &g[1]},
        {"wf-2", got_cb, &g[2]},
        {"wf-bad", got_cb, &g[3]},
    };
    assert_int_equal(dd_store_get_batch(f->s, items, 4), 0);
    for (int i = 0; i < 200 && g[3].calls == 0; i++)
        sleep_loop(f, 10);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].order, i);
    }
    assert_int_equal(g[0].status, 0);
    assert_string_equal(g[0].server, "host-a");
    assert_string_equal(g[0].run, "run-a");
    assert_int_equal(g[0].epoch, e1);
    assert_true(g[0].now_ms > 1000); /* Redis's clock, read with it */
    assert_int_equal(g[1].status, DD_ENOTFOUND);
    assert_int_equal(g[2].status, 0);
    assert_string_equal(g[2].server, "host-b");
    assert_int_equal(g[2].epoch, e2);
    assert_int_equal(g[2].now_ms, g[0].now_ms); /* one clock for the batch */
    assert_int_equal(g[3].status, 0);
    assert_true(g[3].malformed);
    /* bad arguments: refused at once, no callback */
    memset(g, 0, sizeof(g));
    assert_int_equal(dd_store_get_batch(f->s, items, 0), DD_EINVAL);
    assert_int_equal(dd_store_get_batch(f->s, items, DD_STORE_GET_MAX + 1), DD_EINVAL);
    items[1].workflow_id = "";
    assert_int_equal(dd_store_get_batch(f->s, items, 2), DD_EINVAL);
    sleep_loop(f, 50);
    assert_int_equal(g[0].calls + g[1].calls, 0);
}

static void batch_closed(void *arg)
{
    *(bool *)arg = true;
}

/* --redis-wait-replicas on a batch: a primary without replicas confirms
 * nothing, so the beats that landed do not count (DD_ETIMEOUT); a fenced one
 * stays fenced. */
static void test_heartbeat_batch_wait(void **state)
{
    fx *f = *state;
    int64_t e1, e2;
    char url[128], err[256];
    assert_int_equal(claim(f, "wf-1", "run-a", "host-a", 1000, &e1), 0);
    assert_int_equal(claim(f, "wf-2", "run-b", "host-a", 1000, &e2), 0);
    dd_store_opts o = {.url = url_of(f, url, sizeof(url)), .cmd_timeout_ms = 400,
                       .wait_replicas = 1, .seed = 7};
    dd_store *s2 = NULL;
    assert_int_equal(dd_store_open(&f->ctx, &o, &s2, err, sizeof(err)), 0);
    beat_seen b[2];
    memset(b, 0, sizeof(b));
    dd_store_beat items[2] = {
        {"wf-1", "run-a", NULL, e1, 30000, beat_cb, &b[0]},
        {"wf-2", "run-b", NULL, e2 + 1, 30000, beat_cb, &b[1]},
    };
    assert_int_equal(dd_store_heartbeat_batch(s2, items, 2, 5000), 0);
    for (int i = 0; i < 300 && !beats_done(b, 2); i++)
        sleep_loop(f, 10);
    /* closed before any assert: a failed one must not leave s2 open for
     * the teardown's loop to wait on */
    bool closed = false;
    dd_store_close(s2, batch_closed, &closed);
    assert_true(run_until(f, &closed, 5000));
    assert_true(beats_done(b, 2));
    assert_int_equal(b[0].status, DD_ETIMEOUT);
    assert_int_equal(b[1].status, DD_EFENCED);
}

/* A batch whose call fails (Redis gone) answers every item once. */
static void test_heartbeat_batch_error(void **state)
{
    fx *f = *state;
    int64_t e1;
    assert_int_equal(claim(f, "wf-1", "run-a", "host-a", 1000, &e1), 0);
    beat_seen b[3];
    memset(b, 0, sizeof(b));
    dd_store_beat items[3] = {
        {"wf-1", "run-a", NULL, e1, 30000, beat_cb, &b[0]},
        {"wf-2", "run-b", NULL, 1, 30000, beat_cb, &b[1]},
        {"wf-3", "run-c", NULL, 1, 30000, beat_cb, &b[2]},
    };
    assert_int_equal(dd_store_heartbeat_batch(f->s, items, 3, 0), 0);
    bool closed = false;
    dd_store_close(f->s, batch_closed, &closed); /* cancels what is in flight, from the loop */
    f->s = NULL;
    for (int i = 0; i < 3; i++) /* never inside the call */
        assert_int_equal(b[i].calls, 0);
    assert_true(run_until(f, &closed, 5000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b[i].calls, 1);
        assert_int_equal(b[i].status, DD_ECANCELED);
    }
}

static void test_compare_and_delete(void **state)
{
    fx *f = *state;
    waiter w;
    int64_t e;
    assert_int_equal(claim(f, "wf-cad", "run-a", "host-a", 1000, &e), 0);
    /* the reconciler classified it at hb 1000; the owner refreshes meanwhile */
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-cad", "run-a", e, 5000, 30000, owner_cb, &w)),
                     0);
    assert_int_equal(W(dd_store_compare_and_delete(f->s, "wf-cad", "run-a", 1000, status_cb, &w)),
                     DD_ECONFLICT);
    assert_int_equal(W(dd_store_get(f->s, "wf-cad", hb_cb, &w)), 0);
    /* a takeover between classify and delete also survives */
    assert_int_equal(claim(f, "wf-cad", "run-b", "host-b", 5000, NULL), 0);
    assert_int_equal(W(dd_store_compare_and_delete(f->s, "wf-cad", "run-a", 5000, status_cb, &w)),
                     DD_ECONFLICT);
    assert_int_equal(W(dd_store_get(f->s, "wf-cad", hb_cb, &w)), 0);
    /* unchanged since classification: deleted, index entry too */
    assert_int_equal(W(dd_store_compare_and_delete(f->s, "wf-cad", "run-b", 5000, status_cb, &w)),
                     0);
    assert_int_equal(W(dd_store_get(f->s, "wf-cad", hb_cb, &w)), DD_ENOTFOUND);
    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.total, 0);
    assert_int_equal(W(dd_store_compare_and_delete(f->s, "wf-cad", "run-b", 5000, status_cb, &w)),
                     DD_ENOTFOUND);
}

static void test_stale_query(void **state)
{
    fx *f = *state;
    waiter w;
    const int64_t now = 1000000, thr = 120000;
    assert_int_equal(claim(f, "wf-old", "r1", "h", now - thr - 1, NULL), 0);
    assert_int_equal(claim(f, "wf-older", "r2", "h", now - thr - 5000, NULL), 0);
    assert_int_equal(claim(f, "wf-boundary", "r3", "h", now - thr, NULL), 0);
    assert_int_equal(claim(f, "wf-fresh", "r4", "h", now - 10, NULL), 0);
    assert_int_equal(claim(f, "wf-future", "r5", "h", now + 60000, NULL), 0); /* clock skew */

    assert_int_equal(W(dd_store_stale(f->s, now, thr, 100, list_cb, &w)), 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.total, 5);
    assert_int_equal(w.stale, 2);
    assert_string_equal(w.ids[0], "wf-older"); /* oldest first */
    assert_string_equal(w.ids[1], "wf-old");
    assert_int_equal(w.hbs[1], now - thr - 1);
    assert_false(w.malformed[0]);

    /* a batch smaller than the stale set: the gauge still counts all */
    assert_int_equal(W(dd_store_stale(f->s, now, thr, 1, list_cb, &w)), 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.stale, 2);
    assert_string_equal(w.ids[0], "wf-older");

    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.n, 5);
    assert_string_equal(w.ids[4], "wf-future");
    assert_int_equal(dd_store_stale(f->s, now, thr, 0, list_cb, &w), DD_EINVAL);

    /* the oldest heartbeat not stale yet (the reconciler's next wake-up):
     * the boundary record is included, stale ones are not */
    assert_int_equal(W(dd_store_oldest(f->s, now - thr, oldest_cb, &w)), 0);
    assert_string_equal(w.ids[0], "wf-boundary");
    assert_int_equal(w.hbs[0], now - thr);
    assert_int_equal(W(dd_store_oldest(f->s, now + 1, oldest_cb, &w)), 0);
    assert_string_equal(w.ids[0], "wf-future");
    assert_int_equal(w.hbs[0], now + 60000);
    assert_int_equal(W(dd_store_oldest(f->s, now + 60001, oldest_cb, &w)), DD_ENOTFOUND);
}

static void test_malformed_records(void **state)
{
    fx *f = *state;
    waiter w;
    raw_cmd(f, "HSET dd:hb:{wf-bad} workflow_id wf-bad run_id r server_id s project p "
               "queue q hb_ms soon ttl_ms 1000 epoch 1");
    raw_cmd(f, "ZADD dd:hb:index 10 wf-bad");
    raw_cmd(f, "HSET dd:hb:{wf-partial} workflow_id wf-partial hb_ms 11");
    raw_cmd(f, "ZADD dd:hb:index 11 wf-partial");
    raw_cmd(f, "ZADD dd:hb:index 12 wf-ghost"); /* index entry, no hash */
    assert_int_equal(claim(f, "wf-good", "r", "h", 13, NULL), 0);

    assert_int_equal(W(dd_store_stale(f->s, 1000000, 1000, 10, list_cb, &w)), 0);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.ids[0], "wf-bad");
    assert_true(w.malformed[0]);
    assert_string_equal(w.problem[0], "'hb_ms' is not a number");
    assert_string_equal(w.ids[1], "wf-partial");
    assert_true(w.malformed[1]);
    assert_string_equal(w.problem[1], "missing 'run_id'");
    assert_string_equal(w.ids[2], "wf-ghost");
    assert_true(w.malformed[2]);
    assert_non_null(strstr(w.problem[2], "record missing"));
    assert_string_equal(w.ids[3], "wf-good");
    assert_false(w.malformed[3]);
    /* a ghost index entry is cleaned by compare-and-delete */
    assert_int_equal(W(dd_store_compare_and_delete(f->s, "wf-ghost", "x", 12, status_cb, &w)),
                     DD_ENOTFOUND);
    assert_int_equal(W(dd_store_list(f->s, 0, list_cb, &w)), 0);
    assert_int_equal(w.total, 3);
}

static void test_redis_killed_and_back(void **state)
{
    fx *f = *state;
    waiter w, w2;
    int64_t e;
    assert_int_equal(claim(f, "wf-k", "run-a", "host-a", 1000, &e), 0);
    assert_int_equal(f->nready, 1);

    /* two commands in flight when redis dies: it is stopped first, so it
     * cannot answer them before the kill (they go out at once) */
    kill(-f->srvp->pid, SIGSTOP);
    memset(&w, 0, sizeof(w));
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(dd_store_heartbeat(f->s, "wf-k", "run-a", e, 2000, 30000, owner_cb, &w), 0);
    assert_int_equal(dd_store_list(f->s, 0, list_cb, &w2), 0);
    dd_test_server_stop(f->srvp);
    assert_true(run_until(f, &w.done, 5000));
    assert_true(run_until(f, &w2.done, 5000));
    assert_true(w.status == DD_EUNAVAIL || w.status == DD_ETIMEOUT);
    assert_true(w2.status == DD_EUNAVAIL || w2.status == DD_ETIMEOUT);
    assert_true(f->nlost >= 1);
    assert_false(dd_store_ready(f->s));

    /* while down: fail fast, either refused now or answered at once */
    int rc = W(dd_store_ping(f->s, status_cb, &w));
    assert_true(rc == DD_EUNAVAIL || rc == DD_ETIMEOUT);
    sleep_loop(f, 300); /* a few reconnect attempts against a closed port */

    assert_int_equal(dd_test_redis_restart(f->srvp, NULL), 0);
    int tries = 0;
    do {
        sleep_loop(f, 50);
        rc = W(dd_store_ping(f->s, status_cb, &w));
    } while (rc != 0 && ++tries < 100);
    assert_int_equal(rc, 0);
    assert_true(f->nready >= 2);
    /* the fresh server lost everything (no persistence): claim again */
    assert_int_equal(claim(f, "wf-k", "run-b", "host-a", 3000, &e), 0);
    assert_int_equal(W(dd_store_heartbeat(f->s, "wf-k", "run-b", e, 4000, 30000, owner_cb, &w)),
                     0);
    assert_non_null(strstr(f->logbuf ? f->logbuf : "", "event=redis_unavailable"));
    dd_metric *up = dd_metrics_find(f->ctx.metrics, "dispatchd_redis_connected");
    dd_metric *errs = dd_metrics_find(f->ctx.metrics, "dispatchd_redis_command_errors_total");
    assert_true(dd_metric_get(up, NULL) == 1);
    assert_true(dd_metric_get(errs, DD_L1("unavailable")) >= 1);
}

static void test_paused_redis_times_out(void **state)
{
    fx *f = *state;
    waiter w;
    char url[128];
    dd_store_close(f->s, NULL, NULL);
    open_store(f, url_of(f, url, sizeof(url)), NULL, 300);
    assert_int_equal(W(dd_store_ping(f->s, status_cb, &w)), 0);

    kill(-f->srvp->pid, SIGSTOP);
    assert_int_equal(W(dd_store_ping(f->s, status_cb, &w)), DD_ETIMEOUT);
    kill(-f->srvp->pid, SIGCONT);
    /* the late PONG belongs to a dropped connection and a finished request:
     * ignored; the store reconnects by itself */
    int rc, tries = 0;
    do {
        sleep_loop(f, 50);
        rc = W(dd_store_ping(f->s, status_cb, &w));
    } while (rc != 0 && ++tries < 100);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(f->logbuf ? f->logbuf : "", "event=redis_timeout"));
}

/* A port nothing listens on: the refusal is reported as such and at once,
 * not as a connect timeout seconds later (hiredis' own libuv adapter dropped
 * the socket error; src/store/conn.c reads libuv's connect status). */
static void test_refused_reported_at_once(void **state)
{
    fx *f = *state;
    char url[128];
    dd_store_close(f->s, NULL, NULL);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", dd_test_free_port());
    uint64_t t0 = dd_mono_ms();
    open_store(f, url, NULL, 5000); /* connect deadline: seconds away */
    /* waited for (bounded), then timed: "at once" is far from the deadline */
    const char *log = "";
    for (int i = 0; i < 80 && !strstr(log, "cannot connect to redis"); i++) {
        sleep_loop(f, 50);
        fflush(f->logf);
        log = f->logbuf ? f->logbuf : "";
    }
    uint64_t took = dd_mono_ms() - t0;
    if (!strstr(log, "cannot connect to redis: Connection refused"))
        fail_msg("no 'Connection refused' within 4 s; log:\n%s", log);
    printf("measure: connection refused reported after %llu ms\n", (unsigned long long)took);
    assert_true(took < 1500);
    assert_null(strstr(log, "timed out"));
    assert_false(dd_store_ready(f->s));
}

static waiter *close_watch[2];
static bool done_saw_answers;

static void close_done(void *arg)
{
    *(bool *)arg = true;
    done_saw_answers = close_watch[0] && close_watch[0]->done && close_watch[1] &&
                       close_watch[1]->done;
}

static void test_close_with_pending(void **state)
{
    fx *f = *state;
    waiter a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    close_watch[0] = &a;
    close_watch[1] = &b;
    bool closed = false;
    assert_int_equal(dd_store_ping(f->s, status_cb, &a), 0);
    assert_int_equal(dd_store_list(f->s, 0, list_cb, &b), 0);
    dd_store_close(f->s, close_done, &closed);
    /* CONTRIBUTING: never inside the call that cancels */
    assert_false(a.done || b.done || closed);
    waiter c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(dd_store_ping(f->s, status_cb, &c), DD_ECANCELED); /* refused at once */
    dd_store_close(f->s, close_done, &closed); /* twice: a no-op */
    assert_true(run_until(f, &closed, 5000));
    /* both answered once, from the loop, before done */
    assert_true(a.done && b.done && !c.done);
    assert_int_equal(a.status, DD_ECANCELED);
    assert_int_equal(b.status, DD_ECANCELED);
    assert_true(done_saw_answers);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->s = NULL;
}

static void test_bounded_pending(void **state)
{
    fx *f = *state;
    waiter w, a, b;
    char url[128];
    dd_store_opts o = {0};
    char err[256];
    dd_store_close(f->s, NULL, NULL);
    o.url = url_of(f, url, sizeof(url));
    o.max_pending = 2;
    assert_int_equal(dd_store_open(&f->ctx, &o, &f->s, err, sizeof(err)), 0);
    assert_int_equal(W(dd_store_ping(f->s, status_cb, &w)), 0);
    sleep_loop(f, 10);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(dd_store_ping(f->s, status_cb, &a), 0);
    assert_int_equal(dd_store_ping(f->s, status_cb, &b), 0);
    assert_int_equal(dd_store_ping(f->s, status_cb, &w), DD_EBUSY);
    assert_true(run_until(f, &b.done, 5000));
    assert_int_equal(b.status, 0);
}

/* unix:// URLs: a second redis-server listening only on a socket (the
 * shared fixture has no socket option), killed before the test returns. */
static void test_unix_socket(void **state)
{
    fx *f = *state;
    waiter w;
    char path[300], url[320];
    snprintf(path, sizeof(path), "%s/redis.sock", f->srvp->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", path, "--save", "",
               "--appendonly", "no", "--dir", f->srvp->dir, (char *)NULL);
        _exit(127);
    }
    /* Up once it answers PING on the socket: the file exists from bind(),
     * before listen(), and a connect in between is refused (seen on a loaded
     * machine: the claim below failed with "unavailable"). Bounded. */
    bool up = false;
    for (int i = 0; i < 750 && !up; i++) {
        redisContext *p = access(path, F_OK) == 0 ? redisConnectUnix(path) : NULL;
        redisReply *pong = p && !p->err ? redisCommand(p, "PING") : NULL;
        up = pong && pong->type == REDIS_REPLY_STATUS && strcmp(pong->str, "PONG") == 0;
        freeReplyObject(pong);
        if (p)
            redisFree(p);
        if (!up)
            usleep(20000);
    }
    if (!up) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("redis-server on '%s' did not answer within 15 s", path);
    }
    dd_store_close(f->s, NULL, NULL);
    snprintf(url, sizeof(url), "unix://%s?db=2", path);
    open_store(f, url, NULL, 2000);
    int64_t e;
    int rc = claim(f, "wf-unix", "r", "h", 1, &e);
    redisContext *c = redisConnectUnix(path);
    redisReply *r = c && !c->err ? redisCommand(c, "SELECT 2") : NULL;
    freeReplyObject(r);
    r = c && !c->err ? redisCommand(c, "EXISTS dd:hb:{wf-unix}") : NULL;
    long long exists = r ? r->integer : -1;
    freeReplyObject(r);
    if (c)
        redisFree(c);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(e, 1);
    assert_int_equal(exists, 1);
    /* the socket's server is gone: the store notices */
    rc = W(dd_store_ping(f->s, status_cb, &w));
    assert_true(rc == DD_EUNAVAIL || rc == DD_ETIMEOUT);
}

typedef struct closer {
    fx *f;
    waiter *other;
    int status, other_status_seen;
    bool done;
} closer;

static void close_from_cb(int status, void *arg)
{
    closer *c = arg;
    c->status = status;
    c->done = true;
    dd_store_close(c->f->s, NULL, NULL);
    /* the other operation is not answered inside close (1: still open) */
    c->other_status_seen = c->other->done ? c->other->status : 1;
}

static void test_close_from_callback(void **state)
{
    fx *f = *state;
    waiter other;
    closer c = {f, &other, 0, 0, false};
    memset(&other, 0, sizeof(other));
    assert_int_equal(dd_store_ping(f->s, close_from_cb, &c), 0);
    assert_int_equal(dd_store_list(f->s, 0, list_cb, &other), 0);
    assert_true(run_until(f, &c.done, 5000));
    assert_int_equal(c.status, 0);
    assert_int_equal(c.other_status_seen, 1);
    assert_true(run_until(f, &other.done, 5000)); /* later, from the loop */
    assert_int_equal(other.status, DD_ECANCELED);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->s = NULL;
}

static void test_auth(void **state)
{
    fx *f = *state;
    waiter w;
    char url[128];
    fflush(f->logf);

    /* wrong password: a clear error, and the password never reaches the log */
    open_store(f, url_of(f, url, sizeof(url)), "wrong-password-123", 2000);
    assert_int_equal(W(dd_store_ping(f->s, status_cb, &w)), -EACCES);
    assert_non_null(strstr(dd_store_last_error(f->s), "WRONGPASS"));
    assert_null(strstr(dd_store_last_error(f->s), "wrong-password-123"));
    dd_store_close(f->s, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    /* no password at all */
    open_store(f, url, NULL, 2000);
    assert_int_equal(W(dd_store_ping(f->s, status_cb, &w)), -EACCES);
    assert_non_null(strstr(dd_store_last_error(f->s), "NOAUTH"));
    dd_store_close(f->s, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    /* the right one, from the URL, and db 3 */
    snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%d/3", PASSWORD, f->srvp->port);
    open_store(f, url, NULL, 2000);
    assert_int_equal(claim(f, "wf-auth", "r", "h", 1, NULL), 0);
    redisContext *c = raw(f);
    redisReply *r = redisCommand(c, "SELECT 3");
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS dd:hb:{wf-auth}");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);

    fflush(f->logf);
    assert_non_null(f->logbuf);
    assert_non_null(strstr(f->logbuf, "event=redis_connected"));
    assert_non_null(strstr(f->logbuf, "WRONGPASS"));
    assert_null(strstr(f->logbuf, "wrong-password-123"));
    assert_null(strstr(f->logbuf, PASSWORD));
}

static void test_lease(void **state)
{
    fx *f = *state;
    waiter w;
    assert_int_equal(W(dd_store_lease_acquire(f->s, "wf-x", "rec-a", 10000, status_cb, &w)), 0);
    assert_int_equal(W(dd_store_lease_acquire(f->s, "wf-x", "rec-b", 10000, status_cb, &w)),
                     DD_EBUSY);
    assert_int_equal(W(dd_store_lease_release(f->s, "wf-x", "rec-b", status_cb, &w)),
                     DD_ENOTFOUND);
    assert_int_equal(W(dd_store_lease_acquire(f->s, "wf-x", "rec-b", 10000, status_cb, &w)),
                     DD_EBUSY);
    assert_int_equal(W(dd_store_lease_release(f->s, "wf-x", "rec-a", status_cb, &w)), 0);
    assert_int_equal(W(dd_store_lease_acquire(f->s, "wf-x", "rec-b", 50, status_cb, &w)), 0);
    /* short leases lapse on their own: a crashed reconciler blocks nobody */
    sleep_loop(f, 120);
    assert_int_equal(W(dd_store_lease_acquire(f->s, "wf-x", "rec-c", 10000, status_cb, &w)), 0);
}

static void test_workers(void **state)
{
    fx *f = *state;
    waiter w;
    int64_t e1, e2;
    assert_int_equal(claim(f, "wf-w", "run-a", "owner-a", 1000, &e1), 0);
    const char *ids[] = {"w1", "w2", "w3", "w4"};
    const int64_t hbs[] = {1000, 2000, 3000, 9000};
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            W(dd_store_worker_heartbeat(f->s, "wf-w", ids[i], hbs[i], status_cb, &w)), 0);
    assert_int_equal(W(dd_store_worker_list(f->s, "wf-w", workers_cb, &w)), 0);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.ids[3], "w4");
    assert_int_equal(w.hbs[3], 9000);

    /* batched: at most two per call, oldest first, strictly older than 5000 */
    assert_int_equal(
        W(dd_store_worker_evict(f->s, "wf-w", "run-a", e1, 5000, 2, workers_cb, &w)), 0);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], "w1");
    assert_string_equal(w.ids[1], "w2");
    assert_int_equal(w.hbs[1], 2000);

    /* w3 refreshes; then a takeover: the old owner can no longer evict */
    assert_int_equal(W(dd_store_worker_heartbeat(f->s, "wf-w", "w3", 3000, status_cb, &w)), 0);
    assert_int_equal(claim(f, "wf-w", "run-b", "owner-b", 4000, &e2), 0);
    assert_int_equal(
        W(dd_store_worker_evict(f->s, "wf-w", "run-a", e1, 5000, 10, workers_cb, &w)),
        DD_EFENCED);
    assert_int_equal(W(dd_store_worker_list(f->s, "wf-w", workers_cb, &w)), 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(
        W(dd_store_worker_evict(f->s, "wf-w", "run-b", e2, 5000, 10, workers_cb, &w)), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.ids[0], "w3");
    assert_int_equal(
        W(dd_store_worker_evict(f->s, "wf-w", "run-b", e2, 5000, 10, workers_cb, &w)), 0);
    assert_int_equal(w.n, 0);
    assert_int_equal(W(dd_store_worker_deregister(f->s, "wf-w", "w4", status_cb, &w)), 0);
    assert_int_equal(W(dd_store_worker_list(f->s, "wf-w", workers_cb, &w)), 0);
    assert_int_equal(w.n, 0);
}

typedef struct counter {
    int left, failed;
    bool done;
} counter;

static void count_cb(int status, const dd_store_owner *res, void *arg)
{
    counter *c = arg;
    c->failed += status != 0;
    c->done = --c->left == 0;
}

static long long hgetall_calls(fx *f)
{
    redisContext *c = raw(f);
    redisReply *r = redisCommand(c, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_hgetall:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_hgetall:calls=")) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void test_big_index(void **state)
{
    fx *f = *state;
    waiter w;
    char url[128];
    /* 10k writes go out at once; on a loaded machine (CI, ASan) the last
     * of them can wait longer than the default 2 s per command. */
    dd_store_close(f->s, NULL, NULL);
    open_store(f, url_of(f, url, sizeof(url)), NULL, 30000);
    const int64_t now = 10000000, thr = 120000;
    enum { N = 10000 };
    counter cnt = {N, 0, false};
    char wid[32], run[32];
    for (int i = 0; i < N; i++) {
        snprintf(wid, sizeof(wid), "wf-%05d", i);
        snprintf(run, sizeof(run), "run-%d", i);
        /* every 100th record is stale (1 %), the rest fresh */
        dd_store_claim_args a = {wid, run, "h", "p", "q", i % 100 ? now - 1000 : now - thr - 1 - i,
                                 thr, NULL, NULL, NULL};
        assert_int_equal(dd_store_claim(f->s, &a, count_cb, &cnt), 0);
    }
    assert_true(run_until(f, &cnt.done, 30000));
    assert_int_equal(cnt.failed, 0);

    raw_cmd(f, "CONFIG RESETSTAT");
    assert_int_equal(W(dd_store_stale(f->s, now, thr, 1000, list_cb, &w)), 0);
    assert_int_equal(w.total, N);
    assert_int_equal(w.stale, N / 100);
    assert_int_equal(w.n, N / 100);
    for (size_t i = 0; i < w.n; i++)
        assert_false(w.malformed[i]);
    /* cost followed the candidates: one HGETALL each, nothing for the rest */
    assert_int_equal(hgetall_calls(f), N / 100);
}


/* ---- publish / subscribe ------------------------------------------------ */

typedef struct subw {
    int nready, nlost, last_status;
    bool ready, lost, got;
    int nmsg;
    char channel[64];
    char data[64];
    size_t len;
} subw;

static void sub_msg(const char *channel, const char *data, size_t len, void *arg)
{
    subw *w = arg;
    w->nmsg++;
    w->got = true;
    snprintf(w->channel, sizeof(w->channel), "%s", channel);
    w->len = len < sizeof(w->data) ? len : sizeof(w->data);
    memcpy(w->data, data, w->len);
}

static void sub_state(int status, void *arg)
{
    subw *w = arg;
    w->last_status = status;
    if (status == 0) {
        w->nready++;
        w->ready = true;
    } else {
        w->nlost++;
        w->lost = true;
    }
}

typedef struct pubw {
    bool done;
    int status;
    int64_t receivers;
} pubw;

static void pub_cb(int status, int64_t receivers, void *arg)
{
    pubw *p = arg;
    p->done = true;
    p->status = status;
    p->receivers = receivers;
}

static int publish(fx *f, const char *ch, const char *msg, int64_t *receivers)
{
    pubw p = {0};
    int rc = dd_store_publish(f->s, ch, msg, pub_cb, &p);
    if (rc < 0)
        return rc;
    if (!run_until(f, &p.done, 10000))
        fail_msg("publish never answered");
    if (receivers)
        *receivers = p.receivers;
    return p.status;
}

static dd_store_sub *subscribe(fx *f, subw *w)
{
    static const char *const chans[] = {"dd:test:a", "dd:test:b"};
    dd_store_sub_opts o = {chans, 2, sub_msg, sub_state, w};
    dd_store_sub *sub = NULL;
    char err[256];
    assert_int_equal(dd_store_subscribe(f->s, &o, &sub, err, sizeof(err)), 0);
    assert_false(w->ready); /* never inside the call */
    return sub;
}

static void sub_closed(void *arg)
{
    *(bool *)arg = true;
}

/* done runs from the loop, not inside the close */
static void close_sub(fx *f, dd_store_sub *sub)
{
    bool closed = false;
    dd_store_sub_close(sub, sub_closed, &closed);
    assert_false(closed);
    assert_true(run_until(f, &closed, 5000));
}

static void test_pubsub(void **state)
{
    fx *f = *state;
    subw w = {0};
    int64_t n = -1;
    dd_store_sub *sub = subscribe(f, &w);
    assert_true(run_until(f, &w.ready, 10000));
    assert_true(dd_store_sub_ready(sub));
    assert_int_equal(publish(f, "dd:test:b", "hello", &n), 0);
    assert_int_equal(n, 1);
    assert_true(run_until(f, &w.got, 10000));
    assert_string_equal(w.channel, "dd:test:b");
    assert_int_equal(w.len, 5);
    assert_memory_equal(w.data, "hello", 5);
    /* binary data from another client (redis-cli's protocol: hiredis) */
    w.got = false;
    redisContext *c = raw(f);
    redisReply *r = redisCommand(c, "PUBLISH %s %b", "dd:test:a", "x\0y", (size_t)3);
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
    assert_true(run_until(f, &w.got, 10000));
    assert_string_equal(w.channel, "dd:test:a");
    assert_int_equal(w.len, 3);
    assert_memory_equal(w.data, "x\0y", 3);
    /* a channel not subscribed: nobody receives it */
    assert_int_equal(publish(f, "dd:test:c", "nope", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(w.nmsg, 2);
    /* the store closes first; the subscription keeps working on its own */
    dd_store_close(f->s, NULL, NULL);
    sleep_loop(f, 20);
    c = raw(f);
    w.got = false;
    freeReplyObject(redisCommand(c, "PUBLISH dd:test:a after"));
    redisFree(c);
    assert_true(run_until(f, &w.got, 10000));
    assert_memory_equal(w.data, "after", 5);
    close_sub(f, sub);
    f->s = NULL;
}

/* A restart of Redis: the subscription says it is lost, comes back and
 * subscribes again by itself; a message after that arrives. */
static void test_pubsub_resubscribe(void **state)
{
    fx *f = *state;
    subw w = {0};
    int64_t n = -1;
    dd_store_sub *sub = subscribe(f, &w);
    assert_true(run_until(f, &w.ready, 10000));
    dd_test_server_stop(f->srvp);
    assert_true(run_until(f, &w.lost, 10000));
    assert_false(dd_store_sub_ready(sub));
    sleep_loop(f, 200); /* a few attempts against a closed port */
    w.ready = false;
    assert_int_equal(dd_test_redis_restart(f->srvp, NULL), 0);
    assert_true(run_until(f, &w.ready, 15000));
    assert_true(w.nready >= 2);
    /* the store came back too */
    int rc, tries = 0;
    while ((rc = publish(f, "dd:test:a", "again", &n)) != 0 && ++tries < 100)
        sleep_loop(f, 50);
    assert_int_equal(rc, 0);
    assert_int_equal(n, 1);
    assert_true(run_until(f, &w.got, 10000));
    assert_memory_equal(w.data, "again", 5);
    assert_non_null(strstr(f->logbuf, "event=redis_subscribe_unavailable"));
    close_sub(f, sub);
}

/* With a password: AUTH first; a wrong one is named -EACCES. */
static void test_pubsub_auth(void **state)
{
    fx *f = *state;
    char url[128];
    subw w = {0}, bad = {0};
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->srvp->port);
    open_store(f, url, "wrong-password", 2000);
    dd_store_sub *sub = subscribe(f, &bad);
    assert_true(run_until(f, &bad.lost, 10000));
    assert_int_equal(bad.last_status, -EACCES);
    close_sub(f, sub);
    dd_store_close(f->s, NULL, NULL);
    open_store(f, url, PASSWORD, 2000);
    sub = subscribe(f, &w);
    assert_true(run_until(f, &w.ready, 10000));
    int64_t n = -1;
    assert_int_equal(publish(f, "dd:test:b", "secret", &n), 0);
    assert_int_equal(n, 1);
    assert_true(run_until(f, &w.got, 10000));
    close_sub(f, sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claim_heartbeat_fencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_let_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_batch_fencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_batch_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_batch_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paused_redis_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_reported_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_resubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_auth, setup_auth, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
