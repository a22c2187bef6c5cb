/* daemon.c - the long-running part shared by `run` and `up`. */
#include "cli/daemon.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/notify.h"
#include "child/will.h"
#include "child/will_proc.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "owner/owner.h"
#include "owner/watch.h"
#include "reconcile/reconcile.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

struct dd_daemon {
    dd_cli *cli;
    dd_ctx ctx;
    dd_temporal *t;
    dd_store *store;
    dd_heartbeat_group *group; /* our reference, for the store's on_state */
    dd_reconciler *rec;
    dd_metrics_http *http;
    dd_owner *owners[DD_MAX_DISPATCHERS];
    dd_heartbeat *hbs[DD_MAX_DISPATCHERS];
    char *wf_input; /* the workflow input every owner starts with (owned) */
    int nowners;
    int owners_stopped;
    int hbs_closed;
    int owners_closed;
    bool stopping;
    bool temporal_closed;
    bool http_closed; /* the /metrics endpoint, or none */
    /* dd_daemon_close: life is open from new to close, so that done always
     * comes from its close callback, also after a wind-down of its own */
    uv_timer_t life;
    bool close_requested;
    void (*done)(void *);
    void *done_arg;
    void (*exit_cb)(void *); /* wound down by itself (dd_daemon_on_exit) */
    void *exit_arg;
    bool exit_reported;
    /* The ID prefix check runs before any owner starts (dd_daemon_gate). */
    uv_timer_t gate;
    dd_backoff gate_backoff;
    bool gate_open, gate_closed, gate_warned;
    int exit_code; /* nonzero: why the daemon stopped by itself */
    /* systemd (Type=notify): READY=1 once, STATUS= on changes, STOPPING=1 */
    dd_notify *notify;
    uv_timer_t notify_poll; /* while NOTIFY_SOCKET is set and not stopping */
    char *notify_status;    /* the STATUS= text last sent (owned) */
    bool notify_ready, notify_closed, notify_poll_closed;
    /* standbys are told of releases and last wills (dd:released) */
    dd_store_sub *sub;
    bool sub_closed; /* true when there is none, or once it has closed */
    bool sub_warned; /* release_channel_lost said, not subscribed since */
    dd_metric *m_subscribed;
    /* the loss watch: long polls or batch mode (owner/watch.h) */
    dd_loss_watch *watch;
    bool watch_closed; /* true when there is none, or once it has closed */
    /* the last will's connection part (child/will.h): what the store uses */
    char *will_url, *will_user, *will_password; /* secrets: wiped when freed */
    char *will_sentinel_password;               /* the same */
    /* the host's will process (child/will_proc.h): the guards hand their
     * wills to it, one Redis connection for all of them */
    dd_will_proc *will_proc;
    bool will_proc_closed; /* true when there is none, or once it has exited */
};

static bool dd_daemon_ready(void *arg, char *reason, size_t len)
{
    dd_daemon *d = arg;
    if (d->stopping) {
        dd_msgf(reason, len, "shutting down");
        return false;
    }
    if (d->store && !dd_store_ready(d->store)) {
        const char *why = dd_store_last_error(d->store);
        dd_msgf(reason, len, "redis unavailable: %s", *why ? why : "not connected yet");
        return false;
    }
    for (int i = 0; i < d->nowners; i++) {
        dd_owner_state s = dd_owner_get_state(d->owners[i]);
        if (s == DD_OWNER_IDLE || s == DD_OWNER_TAKING_OVER) {
            dd_msgf(reason, len, "dispatcher %s: taking over", dd_owner_name(d->owners[i]));
            return false;
        }
        if (!dd_owner_child_ok(d->owners[i], reason, len))
            return false;
    }
    return true;
}

static void dd_daemon_notify_close(dd_daemon *d);
static void dd_daemon_notify_stopping(dd_daemon *d);

static void dd_daemon_life_closed(uv_handle_t *h)
{
    dd_daemon *d = h->data;
    void (*done)(void *) = d->done;
    void *arg = d->done_arg;
    free(d->wf_input);
    free(d->notify_status);
    dd_secret_free(d->will_url);
    dd_secret_free(d->will_user);
    dd_secret_free(d->will_password);
    dd_secret_free(d->will_sentinel_password);
    free(d);
    if (done)
        done(arg);
}

static void dd_daemon_maybe_done(dd_daemon *d)
{
    if (d->owners_closed < d->nowners || d->hbs_closed < d->nowners || !d->temporal_closed ||
        !d->gate_closed || !d->http_closed || !d->sub_closed || !d->watch_closed ||
        !d->will_proc_closed)
        return;
    if (!d->notify_closed || !d->notify_poll_closed) {
        dd_daemon_notify_close(d); /* last, so the watchdog pings through shutdown */
        return;
    }
    if (d->close_requested) {
        if (!uv_is_closing((uv_handle_t *)&d->life))
            uv_close((uv_handle_t *)&d->life, dd_daemon_life_closed);
        return;
    }
    if (!d->exit_reported) { /* wound down by itself */
        d->exit_reported = true;
        if (d->exit_cb)
            d->exit_cb(d->exit_arg);
    }
}

static void dd_daemon_temporal_closed(void *arg)
{
    dd_daemon *d = arg;
    d->temporal_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_close_clients(dd_daemon *d);

/* ---- standbys are told (docs/ownership.md, "Standbys are told") --------
 * One subscription per process to dd:released: an owner's graceful release
 * and a guard's last will publish the dispatcher's workflow id there, and
 * the standby of that dispatcher looks at the record at once instead of at
 * its next timer. The timer stays: a message published while we were not
 * subscribed is lost, so after every (re)subscription every standby looks
 * again. */
static void dd_daemon_taken(dd_daemon *d, const char *data, size_t len);

static void dd_daemon_released(const char *channel, const char *data, size_t len, void *arg)
{
    dd_daemon *d = arg;
    if (d->stopping)
        return;
    if (!strcmp(channel, DD_STORE_CHANNEL_TAKEN)) {
        dd_daemon_taken(d, data, len);
        return;
    }
    for (int i = 0; i < d->nowners; i++)
        if (d->hbs[i] && strlen(dd_owner_workflow_id(d->owners[i])) == len &&
            !memcmp(dd_owner_workflow_id(d->owners[i]), data, len))
            dd_heartbeat_notified(d->hbs[i], "release");
}

/* A takeover notice "<wid>\n<run>\n<epoch>" (owner/hb_taken.c): the owner
 * of that dispatcher here, if it owns another run, looks at the record. */
static void dd_daemon_taken(dd_daemon *d, const char *data, size_t len)
{
    const char *nl = memchr(data, '\n', len);
    if (!nl)
        return; /* not ours to parse: ignored */
    size_t wlen = (size_t)(nl - data);
    char run[DD_RUN_ID_LEN];
    size_t rlen = len - wlen - 1;
    const char *re = memchr(nl + 1, '\n', rlen);
    if (re)
        rlen = (size_t)(re - nl - 1);
    if (rlen >= sizeof(run))
        return;
    memcpy(run, nl + 1, rlen);
    run[rlen] = '\0';
    for (int i = 0; i < d->nowners; i++)
        if (d->hbs[i] && strlen(dd_owner_workflow_id(d->owners[i])) == wlen &&
            !memcmp(dd_owner_workflow_id(d->owners[i]), data, wlen))
            dd_heartbeat_taken(d->hbs[i], run);
}

static void dd_daemon_sub_state(int status, void *arg)
{
    dd_daemon *d = arg;
    dd_metric_set(d->m_subscribed, NULL, status == 0 ? 1 : 0);
    if (status != 0) {
        if (!d->sub_warned) /* once per loss, not per reconnect attempt */
            dd_warn(d->ctx.log, "release_channel_lost", "channel=%s error=%s note=%s",
                    DD_STORE_CHANNEL_RELEASED, dd_strerror(status),
                    "until it is back standbys fall back to their stale timers, and owners hear "
                    "of a takeover from their fenced heartbeat or long poll");
        d->sub_warned = true;
        return;
    }
    d->sub_warned = false;
    dd_info(d->ctx.log, "release_channel_subscribed", "channels=%s,%s", DD_STORE_CHANNEL_RELEASED,
            DD_STORE_CHANNEL_TAKEN);
    if (d->stopping)
        return;
    /* what was published while we were away is lost: look again */
    for (int i = 0; i < d->nowners; i++)
        if (d->hbs[i])
            dd_heartbeat_notified(d->hbs[i], "resubscribed");
}

static void dd_daemon_sub_closed(void *arg)
{
    dd_daemon *d = arg;
    d->sub_closed = true;
    dd_daemon_maybe_done(d);
}

/* Before the heartbeats close (a message must never reach a freed one). */
static void dd_daemon_sub_close(dd_daemon *d)
{
    if (!d->sub)
        return;
    dd_store_sub *sub = d->sub;
    d->sub = NULL;
    dd_metric_set(d->m_subscribed, NULL, 0);
    dd_store_sub_close(sub, dd_daemon_sub_closed, d);
}

static void dd_daemon_watch_closed(void *arg)
{
    dd_daemon *d = arg;
    d->watch_closed = true;
    dd_daemon_maybe_done(d);
}

/* Before the owners close (it reads them) and the clients (it uses them). */
static void dd_daemon_watch_close(dd_daemon *d)
{
    if (!d->watch)
        return;
    dd_loss_watch *w = d->watch;
    d->watch = NULL;
    dd_loss_watch_close(w, dd_daemon_watch_closed, d);
}

static void dd_daemon_http_closed(void *arg)
{
    dd_daemon *d = arg;
    d->http_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_http_close(dd_daemon *d)
{
    if (d->http) {
        dd_metrics_http_close(d->http, dd_daemon_http_closed, d);
        d->http = NULL;
    }
}

static void dd_daemon_rec_closed(void *arg)
{
    dd_daemon *d = arg;
    d->rec = NULL;
    dd_daemon_close_clients(d);
}

static void dd_daemon_owner_closed(void *arg)
{
    dd_daemon *d = arg;
    if (++d->owners_closed < d->nowners)
        return;
    dd_daemon_close_clients(d);
}

/* The heartbeats have finished with their owners: now the owners can go. */
static void dd_daemon_hb_closed(void *arg)
{
    dd_daemon *d = arg;
    if (++d->hbs_closed < d->nowners)
        return;
    for (int i = 0; i < d->nowners; i++)
        dd_owner_close(d->owners[i], dd_daemon_owner_closed, d);
}

static void dd_daemon_store_state(int status, void *arg)
{
    dd_daemon *d = arg;
    if (status == 0)
        dd_heartbeat_group_kick(d->group);
}

static void dd_daemon_store_closed(void *arg)
{
    dd_daemon_close_clients(arg);
}

static void dd_daemon_will_proc_closed(void *arg)
{
    dd_daemon *d = arg;
    d->will_proc_closed = true;
    dd_daemon_maybe_done(d);
}

/* Records released and the reconciler stopped: now the clients can go. */
static void dd_daemon_close_clients(dd_daemon *d)
{
    if (d->will_proc) { /* every child has stopped: no will is due ("bye") */
        dd_will_proc *p = d->will_proc;
        d->will_proc = NULL;
        dd_will_proc_close(p, dd_daemon_will_proc_closed, d);
    }
    if (d->rec) {
        dd_reconciler_close(d->rec, dd_daemon_rec_closed, d);
        return;
    }
    dd_daemon_sub_close(d);
    if (d->store) {
        dd_store *s = d->store;
        d->store = NULL;
        dd_store_set_on_state(s, NULL, NULL);
        dd_heartbeat_group_unref(d->group);
        d->group = NULL;
        dd_store_close(s, dd_daemon_store_closed, d); /* comes back here */
        return;
    }
    dd_temporal_close(d->t, dd_daemon_temporal_closed, d);
}

static void dd_daemon_owner_stopped(dd_owner *o, void *arg)
{
    dd_daemon *d = arg;
    if (++d->owners_stopped < d->nowners)
        return;
    if (!d->stopping) {
        /* every dispatcher let go by itself (--on-workflow-exit release):
         * nothing is left to do here, so the process winds down and exits */
        d->stopping = true;
        dd_info(d->ctx.log, "all_released", "dispatchers=%d", d->nowners);
        dd_daemon_sub_close(d);
        dd_daemon_watch_close(d);
        dd_daemon_notify_stopping(d);
        dd_daemon_http_close(d);
    }
    /* Every run release has been answered; let the heartbeats finish their
     * record releases, then close the owners and the clients. */
    dd_daemon_sub_close(d);
    for (int i = 0; i < d->nowners; i++) {
        if (d->hbs[i])
            dd_heartbeat_close(d->hbs[i], dd_daemon_hb_closed, d);
        else
            dd_daemon_hb_closed(d); /* dd_daemon_new failed at its heartbeat */
    }
}

static void dd_daemon_stopped_acting(dd_owner *o, const char *run_id, void *arg)
{
    dd_daemon *d = arg;
    for (int i = 0; i < d->nowners; i++)
        if (d->owners[i] == o && d->hbs[i])
            dd_heartbeat_stopped_acting(d->hbs[i], run_id);
}

static void dd_daemon_want_heartbeat(dd_owner *o, void *arg)
{
    dd_daemon *d = arg;
    for (int i = 0; i < d->nowners; i++)
        if (d->owners[i] == o && d->hbs[i])
            dd_heartbeat_want(d->hbs[i]);
}

/* The will a child's guard runs if we die (child/will.h): the connection
 * our store uses and the current ownership's fence. */
static void dd_daemon_will(dd_owner *o, dd_buf *out, void *arg)
{
    dd_daemon *d = arg;
    for (int i = 0; i < d->nowners; i++) {
        dd_will w = {.url = d->will_url,
                     .username = d->will_user,
                     .password = d->will_password,
                     .tls_ca_file = d->cli->cfg.redis_ca_file,
                     .tls_cert_file = d->cli->cfg.redis_cert_file,
                     .tls_key_file = d->cli->cfg.redis_key_file};
        if (dd_cli_redis_sentinel(d->cli)) {
            w.sentinels = d->cli->cfg.redis_sentinel;
            w.master_name = d->cli->cfg.redis_master_name;
            w.sentinel_password = d->will_sentinel_password;
            w.db = d->cli->cfg.redis_db;
        }
        if (d->owners[i] == o && d->hbs[i] && d->will_url && dd_heartbeat_will(d->hbs[i], &w))
            dd_will_pack(out, &w);
    }
}

static void dd_daemon_chain(dd_owner *o, const char *run_id, void *arg)
{
    dd_daemon *d = arg;
    for (int i = 0; i < d->nowners; i++)
        if (d->owners[i] == o && d->hbs[i])
            dd_heartbeat_chain_moved(d->hbs[i], run_id);
}

static void dd_daemon_owner_changed(dd_owner *o, bool owning, const char *run_id, void *arg)
{
    dd_daemon *d = arg;
    for (int i = 0; i < d->nowners; i++)
        if (d->owners[i] == o && d->hbs[i])
            dd_heartbeat_owner_changed(d->hbs[i], owning, run_id);
}

static void dd_daemon_gate_closed(uv_handle_t *h)
{
    dd_daemon *d = h->data;
    d->gate_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_gate_close(dd_daemon *d)
{
    if (!d->gate_closed && !uv_is_closing((uv_handle_t *)&d->gate))
        uv_close((uv_handle_t *)&d->gate, dd_daemon_gate_closed);
}

static void dd_daemon_gate_try(dd_daemon *d);
static void dd_daemon_wind_down(dd_daemon *d);

static void dd_daemon_gate_retry(uv_timer_t *t)
{
    dd_daemon_gate_try(t->data);
}

/* Every host of a fleet must build the same workflow IDs: a host with
 * another --id-prefix would start a second dispatcher for each (project,
 * queue) next to the fleet's. So no owner starts before Redis has said
 * which prefix the fleet uses (the first host writes it); a mismatch stops
 * this process with exit 2. Until Redis answers nothing starts, which is
 * also what fencing needs. */
static void dd_daemon_gated(int st, const char *fleet, void *arg)
{
    dd_daemon *d = arg;
    if (d->stopping)
        return;
    const char *ours = d->cli->cfg.id_prefix;
    if (st == 0 && !strcmp(fleet, ours)) {
        d->gate_open = true;
        dd_info(d->ctx.log, "id_prefix_checked", "id_prefix=%s", ours);
        dd_daemon_gate_close(d);
        for (int i = 0; i < d->nowners; i++) {
            dd_owner_start(d->owners[i]);
            dd_heartbeat_start(d->hbs[i]);
        }
        return;
    }
    if (st == 0) {
        dd_error(d->ctx.log, "id_prefix_mismatch",
                 "id_prefix=%s fleet_id_prefix=%s hint=%s", ours, fleet,
                 "every host sharing this Redis must use the same --id-prefix (a second prefix "
                 "would start a second dispatcher per project/queue); use the fleet's, or "
                 "delete the key dd:id_prefix only after every host has moved");
        d->exit_code = 2;
        dd_daemon_wind_down(d);
        return;
    }
    int64_t delay = dd_backoff_next(&d->gate_backoff);
    if (!d->gate_warned || st != DD_EUNAVAIL)
        dd_warn(d->ctx.log, "id_prefix_check_failed", "error=%s retry_ms=%lld note=%s",
                dd_strerror(st), (long long)delay,
                "no dispatcher starts before Redis answers");
    d->gate_warned = true;
    uv_timer_start(&d->gate, dd_daemon_gate_retry, (uint64_t)delay, 0);
}

static void dd_daemon_gate_try(dd_daemon *d)
{
    if (d->stopping)
        return;
    int rc = dd_store_id_prefix(d->store, d->cli->cfg.id_prefix, dd_daemon_gated, d);
    if (rc != 0)
        dd_daemon_gated(rc, NULL, d); /* not sent (Redis down): the same retry path */
}

/* ---- systemd notification (core/notify.h) ------------------------------ */

static void dd_daemon_notify_stopping(dd_daemon *d)
{
    dd_notify_send(d->notify, "STOPPING=1");
    dd_notify_send(d->notify, "STATUS=releasing every dispatcher");
    if (d->notify && !d->notify_poll_closed)
        uv_timer_stop(&d->notify_poll);
}

/* What this host does, for `systemctl status`: "owning a/b, c/d; standby:
 * e/f; taking over: g/h" (whole names, in a dd_buf). */
static void dd_daemon_notify_status(dd_daemon *d, dd_buf *b)
{
    static const struct {
        dd_owner_state st;
        const char *label;
    } groups[] = {{DD_OWNER_OWNING, "owning"},
                  {DD_OWNER_LOST, "standby"},
                  {DD_OWNER_TAKING_OVER, "taking over"},
                  {DD_OWNER_IDLE, "waiting for redis"}};
    dd_buf_puts(b, "STATUS=");
    size_t start = b->len;
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        int k = 0;
        for (int i = 0; i < d->nowners; i++) {
            if (dd_owner_get_state(d->owners[i]) != groups[g].st)
                continue;
            if (k++ == 0)
                dd_buf_printf(b, "%s%s: ", b->len > start ? "; " : "", groups[g].label);
            else
                dd_buf_puts(b, ", ");
            dd_buf_puts(b, dd_owner_name(d->owners[i]));
        }
    }
}

/* Polled (cheap: a walk over at most DD_MAX_DISPATCHERS owners) rather than
 * hooked into every state change: a standby arming is no on_change. */
static void dd_daemon_notify_tick(uv_timer_t *t)
{
    dd_daemon *d = t->data;
    if (d->stopping)
        return;
    dd_buf b = DD_BUF_INIT;
    dd_daemon_notify_status(d, &b);
    if (!d->notify_status || strcmp(d->notify_status, dd_buf_str(&b)) != 0) {
        dd_notify_send(d->notify, dd_buf_str(&b));
        free(d->notify_status);
        d->notify_status = dd_buf_detach(&b);
    }
    dd_buf_release(&b);
    if (d->notify_ready || !d->gate_open)
        return;
    /* ready: every dispatcher's first takeover attempt has finished (owning)
     * or its standby is armed (lost to another host) */
    for (int i = 0; i < d->nowners; i++) {
        dd_owner_state s = dd_owner_get_state(d->owners[i]);
        if (s == DD_OWNER_IDLE || s == DD_OWNER_TAKING_OVER)
            return;
    }
    d->notify_ready = true;
    dd_notify_send(d->notify, "READY=1");
    dd_info(d->ctx.log, "notified_ready", "dispatchers=%d", d->nowners);
}

static void dd_daemon_notify_closed(void *arg)
{
    dd_daemon *d = arg;
    d->notify = NULL;
    d->notify_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_notify_poll_closed(uv_handle_t *h)
{
    dd_daemon *d = h->data;
    d->notify_poll_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_notify_close(dd_daemon *d)
{
    if (!d->notify_poll_closed && !uv_is_closing((uv_handle_t *)&d->notify_poll))
        uv_close((uv_handle_t *)&d->notify_poll, dd_daemon_notify_poll_closed);
    if (d->notify) {
        dd_notify *n = d->notify;
        d->notify = NULL; /* closing: nothing more is sent */
        dd_notify_close(n, dd_daemon_notify_closed, d);
    }
}

static void dd_daemon_notify_start(dd_daemon *d)
{
    char err[256];
    dd_notify_new(&d->ctx, &d->notify, err, sizeof(err));
    d->notify_closed = false;
    uv_timer_init(d->ctx.loop, &d->notify_poll);
    d->notify_poll.data = d;
    d->notify_poll_closed = false;
    if (dd_notify_enabled(d->notify))
        uv_timer_start(&d->notify_poll, dd_daemon_notify_tick, 0, 100);
}

int dd_daemon_exit_code(const dd_daemon *d)
{
    return d ? d->exit_code : 0;
}

/* Under systemd (RuntimeDirectory=), our server id goes to
 * $RUNTIME_DIRECTORY/server_id: `dispatchd last-will`, the unit's
 * ExecStopPost=, reads it to find our records once we are dead (the default
 * id has our pid in it, which it cannot know). Write-then-rename: a reader
 * never sees half an id. Several directories: the first. A failure is a
 * warning: the records then wait out the threshold, as before. */
static void dd_daemon_write_server_id(dd_cli *cli, const dd_ctx *ctx)
{
    const char *rd = getenv("RUNTIME_DIRECTORY");
    if (!rd || !*rd)
        return;
    dd_buf dir = DD_BUF_INIT, tmp = DD_BUF_INIT, path = DD_BUF_INIT;
    dd_buf_printf(&dir, "%.*s", (int)strcspn(rd, ":"), rd);
    dd_buf_printf(&path, "%s/server_id", dd_buf_str(&dir));
    dd_buf_printf(&tmp, "%s/.server_id.%d", dd_buf_str(&dir), (int)getpid());
    const char *id = dd_cli_server_id(cli);
    FILE *f = fopen(dd_buf_str(&tmp), "w");
    int err = 0;
    if (!f)
        err = errno;
    else {
        if (fprintf(f, "%s\n", id) < 0)
            err = errno ? errno : EIO;
        if (fclose(f) != 0 && !err)
            err = errno;
        if (!err && rename(dd_buf_str(&tmp), dd_buf_str(&path)) < 0)
            err = errno;
        if (err)
            unlink(dd_buf_str(&tmp));
    }
    if (err)
        dd_warn(ctx->log, "server_id_file_failed", "path=%s error=%s note=%s", dd_buf_str(&path),
                strerror(err), "`dispatchd last-will` cannot find this host's records");
    else
        dd_info(ctx->log, "server_id_file_written", "path=%s", dd_buf_str(&path));
    dd_buf_release(&dir);
    dd_buf_release(&tmp);
    dd_buf_release(&path);
}

int dd_daemon_new(dd_cli *cli, const dd_ctx *ctx, const char *default_dispatcher,
                  char *const *child_argv, dd_daemon **out)
{
    *out = NULL;
    dd_daemon *d = dd_xcalloc(1, sizeof(*d));
    d->sub_closed = true; /* until there is a subscription */
    d->watch_closed = true; /* until there is a loss watch */
    d->cli = cli;
    d->ctx = *ctx;
    d->gate_closed = true; /* until the timer exists */
    d->http_closed = true; /* until it exists */
    d->notify_closed = d->notify_poll_closed = true; /* until they exist */
    d->will_proc_closed = true;                      /* until it exists */
    dd_daemon_write_server_id(cli, ctx);
    int code = dd_cli_temporal_new(cli, ctx, &d->t);
    if (code) {
        free(d);
        return code;
    }
    code = dd_cli_store_open(cli, ctx, &d->store);
    if (code) {
        dd_temporal_close(d->t, NULL, NULL);
        free(d);
        return code;
    }
    {
        /* the same connection settings for the guards' last wills; read
         * again (dd_cli_store_open checked them): the store keeps no copy
         * it hands out */
        char werr[256];
        char *pw = NULL;
        if (dd_config_secret("DISPATCHD_REDIS_PASSWORD", cli->cfg.redis_password_file, &pw,
                             werr, sizeof(werr)) == 0) {
            d->will_url = dd_strdup(dd_cli_redis_url(cli));
            d->will_user = cli->cfg.redis_username && *cli->cfg.redis_username
                               ? dd_strdup(cli->cfg.redis_username)
                               : NULL;
            d->will_password = pw;
        }
        if (dd_cli_redis_sentinel(cli) &&
            dd_config_secret("DISPATCHD_REDIS_SENTINEL_PASSWORD",
                             cli->cfg.redis_sentinel_password_file, &pw, werr, sizeof(werr)) == 0)
            d->will_sentinel_password = pw;
    }
    uv_timer_init(ctx->loop, &d->life);
    d->life.data = d;
    const char *disp[DD_MAX_DISPATCHERS];
    dd_heartbeat_group *group = NULL;
    int n = cli->cfg.ndispatchers;
    for (int i = 0; i < n; i++)
        disp[i] = cli->cfg.dispatchers[i];
    if (n == 0 && default_dispatcher)
        disp[n++] = default_dispatcher;
    /* Which dispatchers, and from where: --dispatcher flags replace the
     * DISPATCHD_DISPATCHER list (README), and this line shows which won. */
    static const char *const srcname[] = {"default", "environment", "flag"};
    for (int i = 0; i < n; i++)
        dd_info(ctx->log, "dispatcher_configured", "dispatcher=%s source=%s", disp[i],
                srcname[cli->cfg.ndispatchers ? dd_config_source(&cli->cfg, "dispatcher") : 0]);

    char err[512];
    /* Every child acts only within its acting window (owner/fence.h). */
    dd_fence_plan fence;
    if (dd_fence_plan_make(cli->cfg.heartbeat_interval_ms, cli->cfg.stale_threshold_ms,
                           cli->cfg.stop_timeout_ms, &fence, err, sizeof(err)) < 0) {
        code = dd_cli_usage_error(cli, "%s", err);
        goto fail;
    }
    dd_owner_workflow wf;
    code = dd_cli_workflow(cli, &wf, &d->wf_input);
    if (code != 0)
        goto fail;
    if (child_argv && child_argv[0] && d->will_url) {
        /* One will process for every guard of this host (child/will_proc.h).
         * After our death a guard's stop ends by the acting deadline at the
         * latest: the process waits that long for their wills, and more. */
        if (dd_will_proc_start(ctx->loop, ctx->log, dd_cli_self_exe(), dd_cli_server_id(cli),
                               fence.window_ms + 10000, &d->will_proc, err, sizeof(err)) == 0)
            d->will_proc_closed = false;
        else
            dd_warn(ctx->log, "will_process_failed", "error=%s note=%s", err,
                    "each guard runs its own will");
    }
    dd_info(ctx->log, "acting_window",
            "interval_ms=%lld threshold_ms=%lld margin_ms=%lld kill_after_ms=%lld "
            "term_lead_ms=%lld",
            (long long)fence.interval_ms, (long long)fence.threshold_ms,
            (long long)fence.margin_ms, (long long)fence.window_ms,
            (long long)fence.term_lead_ms);
    /* marker mode tells the marker about workers; a user's workflow only
     * when asked, under the name it handles */
    const char *wsig = cli->cfg.workers_signal;
    if (!wsig || !*wsig)
        wsig = wf.type ? NULL : "workers";
    else if (!strcmp(wsig, "off"))
        wsig = NULL;
    /* one heartbeat timer and one Redis call per interval for all of them
     * (owner.h, dd_heartbeat_group_new); each heartbeat holds it */
    group = dd_heartbeat_group_new(ctx->loop, d->store, cli->cfg.heartbeat_interval_ms);
    for (int i = 0; i < n; i++) {
        /* whole names (heap): the workflow ID is built from (project, queue)
         * only, so a cut name could make two dispatchers one */
        char *project, *queue;
        if (dd_config_dispatcher_split(disp[i], &project, &queue) < 0) {
            code = dd_cli_usage_error(cli, "--dispatcher '%s': expected PROJECT/QUEUE", disp[i]);
            goto fail;
        }
        dd_owner_opts oo = {.project = project,
                            .queue = queue,
                            .server_id = dd_cli_server_id(cli),
                            .legacy = cli->cfg.legacy_takeover,
                            .child_argv = child_argv,
                            .guard_exe = dd_cli_self_exe(),
                            .fence = &fence,
                            .wf = &wf,
                            .on_chain = dd_daemon_chain,
                            .will = dd_daemon_will,
                            .will_proc = d->will_proc,
                            .want_heartbeat = dd_daemon_want_heartbeat,
                            .child_grace_ms = cli->cfg.stop_timeout_ms,
                            .child_max_restarts = cli->cfg.child_max_restarts,
                            .on_change = dd_daemon_owner_changed,
                            .child_gate = true,
                            .on_stopped_acting = dd_daemon_stopped_acting,
                            .on_stopped = dd_daemon_owner_stopped,
                            .arg = d};
        int orc = dd_owner_new(ctx, d->t, &oo, &d->owners[i], err, sizeof(err)); /* copies */
        free(project);
        free(queue);
        if (orc < 0) {
            code = dd_cli_usage_error(cli, "--dispatcher '%s': %s", disp[i], err);
            goto fail;
        }
        d->nowners++; /* closed with the others from here on */
        dd_heartbeat_opts ho = {.interval_ms = cli->cfg.heartbeat_interval_ms,
                                .threshold_ms = cli->cfg.stale_threshold_ms,
                                .failover = true,
                                .t = d->t,
                                .workers_signal = wsig,
                                .group = group};
        if (dd_heartbeat_new(ctx, d->store, d->owners[i], &ho, &d->hbs[i], err, sizeof(err)) < 0) {
            d->hbs[i] = NULL;
            code = dd_cli_usage_error(cli, "--dispatcher '%s': %s", disp[i], err);
            goto fail;
        }
    }
    if (ctx->metrics)
        d->m_subscribed = dd_metrics_family(
            ctx->metrics, DD_GAUGE, "dispatchd_release_channel_subscribed",
            "1 while this process is subscribed to dd:released and dd:taken (standbys hear of "
            "releases and last wills, owners of takeovers, at once), else 0 (standbys fall back "
            "to their stale timers, owners to their fenced heartbeat or long poll).",
            NULL, NULL, 0);
    dd_metric_set(d->m_subscribed, NULL, 0);
    /* long polls or batch mode, chosen from the fleet's size */
    dd_loss_watch_opts wo = {.interval_ms = cli->cfg.heartbeat_interval_ms,
                             .budget = cli->cfg.long_poll_budget};
    d->watch = dd_loss_watch_new(ctx, d->store, d->t, d->owners, (size_t)d->nowners, &wo);
    d->watch_closed = false;
    const char *channels[] = {DD_STORE_CHANNEL_RELEASED, DD_STORE_CHANNEL_TAKEN};
    dd_store_sub_opts subo = {.channels = channels,
                              .nchannels = 2,
                              .on_message = dd_daemon_released,
                              .on_state = dd_daemon_sub_state,
                              .arg = d};
    if (dd_store_subscribe(d->store, &subo, &d->sub, err, sizeof(err)) == 0)
        d->sub_closed = false;
    else
        dd_warn(ctx->log, "release_channel_lost", "channel=%s error=%s note=%s",
                DD_STORE_CHANNEL_RELEASED, err,
                "standbys fall back to their stale timers");
    /* kept: a Redis that comes back gets the failed heartbeats at once */
    d->group = group;
    group = NULL;
    dd_store_set_on_state(d->store, dd_daemon_store_state, d);
    dd_reconciler_opts ro = {.stale_threshold_ms = cli->cfg.stale_threshold_ms,
                             .interval_ms = cli->cfg.reconcile_interval_ms,
                             .terminate_rate = cli->cfg.terminate_rate,
                             .max_inflight = (size_t)cli->cfg.reconcile_lanes,
                             .holder = dd_cli_server_id(cli),
                             .sweep = true};
    if (dd_reconciler_new(ctx, d->store, d->t, &ro, &d->rec, err, sizeof(err)) < 0) {
        code = dd_cli_usage_error(cli, "%s", err);
        goto fail;
    }
    if (strcmp(cli->cfg.metrics_listen, "off") != 0) {
        code = dd_cli_metrics_serve(cli, ctx, cli->cfg.metrics_listen, dd_daemon_ready, d,
                                    &d->http);
        if (code != 0)
            goto fail;
        d->http_closed = false;
    }
    uv_timer_init(ctx->loop, &d->gate);
    d->gate.data = d;
    d->gate_closed = false;
    dd_backoff_init(&d->gate_backoff, 250, 5000, 0);
    dd_daemon_notify_start(d);
    dd_daemon_gate_try(d); /* owners start once the fleet's ID prefix is known */
    dd_loss_watch_start(d->watch);
    dd_reconciler_start(d->rec);
    *out = d;
    return 0;
fail:
    dd_heartbeat_group_unref(group); /* NULL once the heartbeats hold it */
    /* Undo what was built; it frees itself, the caller runs the loop. */
    d->close_requested = true;
    dd_daemon_wind_down(d);
    return code;
}

void dd_daemon_on_exit(dd_daemon *d, void (*done)(void *), void *arg)
{
    d->exit_cb = done;
    d->exit_arg = arg;
}

/* Releases every owner (then heartbeats, owners and clients close, in
 * dd_daemon_owner_stopped) or, with none, closes the clients. */
static void dd_daemon_wind_down(dd_daemon *d)
{
    d->stopping = true;
    dd_daemon_notify_stopping(d);
    dd_daemon_gate_close(d);
    dd_daemon_sub_close(d);
    dd_daemon_watch_close(d);
    dd_daemon_http_close(d);
    if (d->nowners == 0) {
        dd_daemon_close_clients(d);
        return;
    }
    for (int i = 0; i < d->nowners; i++)
        dd_owner_release(d->owners[i]);
}

void dd_daemon_close(dd_daemon *d, void (*done)(void *), void *arg)
{
    d->close_requested = true;
    d->done = done;
    d->done_arg = arg;
    if (d->stopping)
        dd_daemon_maybe_done(d); /* it may have wound down already */
    else
        dd_daemon_wind_down(d);
}

int dd_daemon_metrics_port(const dd_daemon *d)
{
    return d->http ? dd_metrics_http_port(d->http) : 0;
}
