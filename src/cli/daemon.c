/* daemon.c - the long-running part shared by `run` and `up`. */
#include "cli/daemon.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "owner/owner.h"
#include "reconcile/reconcile.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct dd_daemon {
    dd_cli *cli;
    dd_ctx ctx;
    dd_temporal *t;
    dd_store *store;
    dd_reconciler *rec;
    dd_metrics_http *http;
    dd_owner *owners[DD_MAX_DISPATCHERS];
    dd_heartbeat *hbs[DD_MAX_DISPATCHERS];
    char *wf_input; /* the workflow input every owner starts with (owned) */
    int nowners;
    int owners_stopped;
    int hbs_closed;
    bool stopping;
    bool temporal_closed;
    void (*done)(void *);
    void *done_arg;
    void (*exit_cb)(void *); /* when every owner let go by itself (dd_daemon_on_exit) */
    void *exit_arg;
};

static bool dd_daemon_ready(void *arg, char *reason, size_t len)
{
    dd_daemon *d = arg;
    if (d->stopping) {
        dd_msgf(reason, len, "shutting down");
        return false;
    }
    if (d->store && !dd_store_ready(d->store)) {
        dd_msgf(reason, len, "redis unavailable: %s", dd_store_last_error(d->store));
        return false;
    }
    for (int i = 0; i < d->nowners; i++) {
        dd_owner_state s = dd_owner_get_state(d->owners[i]);
        if (s == DD_OWNER_IDLE || s == DD_OWNER_TAKING_OVER) {
            dd_msgf(reason, len, "dispatcher %s: taking over", dd_owner_name(d->owners[i]));
            return false;
        }
    }
    return true;
}

static void dd_daemon_maybe_done(dd_daemon *d)
{
    if (d->owners_stopped < d->nowners || d->hbs_closed < d->nowners || !d->temporal_closed)
        return;
    if (d->done) {
        void (*done)(void *) = d->done;
        d->done = NULL;
        done(d->done_arg);
    }
}

static void dd_daemon_temporal_closed(void *arg)
{
    dd_daemon *d = arg;
    d->temporal_closed = true;
    dd_daemon_maybe_done(d);
}

static void dd_daemon_close_clients(dd_daemon *d);

static void dd_daemon_rec_closed(void *arg)
{
    dd_daemon *d = arg;
    d->rec = NULL;
    dd_daemon_close_clients(d);
}

static void dd_daemon_hb_closed(void *arg)
{
    dd_daemon *d = arg;
    if (++d->hbs_closed < d->nowners)
        return;
    dd_daemon_close_clients(d);
}

/* Records released and the reconciler stopped: now the clients can go. */
static void dd_daemon_close_clients(dd_daemon *d)
{
    if (d->rec) {
        dd_reconciler_close(d->rec, dd_daemon_rec_closed, d);
        return;
    }
    if (d->store) {
        dd_store_close(d->store);
        d->store = NULL;
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
        if (d->http) {
            dd_metrics_http_close(d->http);
            d->http = NULL;
        }
        if (!d->done) {
            d->done = d->exit_cb;
            d->done_arg = d->exit_arg;
        }
    }
    /* Every run release has been answered; let the heartbeats finish their
     * record releases, then close the clients. */
    for (int i = 0; i < d->nowners; i++)
        dd_heartbeat_close(d->hbs[i], dd_daemon_hb_closed, d);
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

int dd_daemon_start(dd_daemon **out, dd_cli *cli, const dd_ctx *ctx,
                    const char *default_dispatcher, char *const *child_argv)
{
    dd_daemon *d = dd_xcalloc(1, sizeof(*d));
    d->cli = cli;
    d->ctx = *ctx;
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
    const char *disp[DD_MAX_DISPATCHERS];
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
    dd_info(ctx->log, "acting_window",
            "interval_ms=%lld threshold_ms=%lld margin_ms=%lld kill_after_ms=%lld "
            "term_lead_ms=%lld",
            (long long)fence.interval_ms, (long long)fence.threshold_ms,
            (long long)fence.margin_ms, (long long)fence.window_ms,
            (long long)fence.term_lead_ms);
    dd_owner_workflow wf;
    code = dd_cli_workflow(cli, &wf, &d->wf_input);
    if (code != 0)
        goto fail;
    /* marker mode tells the marker about workers; a user's workflow only
     * when asked, under the name it handles */
    const char *wsig = cli->cfg.workers_signal;
    if (!wsig || !*wsig)
        wsig = wf.type ? NULL : "workers";
    else if (!strcmp(wsig, "off"))
        wsig = NULL;
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
                            .want_heartbeat = dd_daemon_want_heartbeat,
                            .child_grace_ms = cli->cfg.stop_timeout_ms,
                            .on_change = dd_daemon_owner_changed,
                            .child_gate = true,
                            .on_stopped_acting = dd_daemon_stopped_acting,
                            .on_stopped = dd_daemon_owner_stopped,
                            .arg = d};
        d->owners[i] = dd_owner_new(ctx, d->t, &oo, err, sizeof(err)); /* copies the names */
        free(project);
        free(queue);
        if (!d->owners[i]) {
            code = dd_cli_usage_error(cli, "--dispatcher '%s': %s", disp[i], err);
            goto fail;
        }
        dd_heartbeat_opts ho = {.interval_ms = cli->cfg.heartbeat_interval_ms,
                                .threshold_ms = cli->cfg.stale_threshold_ms,
                                .failover = true,
                                .t = d->t,
                                .workers_signal = wsig};
        d->hbs[i] = dd_heartbeat_new(ctx, d->store, d->owners[i], &ho);
        d->nowners++;
    }
    dd_reconciler_opts ro = {.stale_threshold_ms = cli->cfg.stale_threshold_ms,
                             .interval_ms = cli->cfg.reconcile_interval_ms,
                             .terminate_rate = cli->cfg.terminate_rate,
                             .holder = dd_cli_server_id(cli),
                             .sweep = true};
    d->rec = dd_reconciler_new(ctx, d->store, d->t, &ro);
    if (!d->rec) {
        code = dd_cli_usage_error(cli, "invalid reconciler settings (see the log)");
        goto fail;
    }
    if (strcmp(cli->cfg.metrics_listen, "off") != 0) {
        code = dd_cli_metrics_serve(cli, ctx, cli->cfg.metrics_listen, dd_daemon_ready, d,
                                    &d->http);
        if (code != 0)
            goto fail;
    }
    for (int i = 0; i < d->nowners; i++) {
        dd_owner_start(d->owners[i]);
        dd_heartbeat_start(d->hbs[i]);
    }
    dd_reconciler_start(d->rec);
    *out = d;
    return 0;
fail:
    /* Undo what was built; the caller runs the loop until it is closed. */
    d->stopping = true;
    if (d->nowners == 0)
        dd_daemon_close_clients(d);
    for (int i = 0; i < d->nowners; i++)
        dd_owner_release(d->owners[i]);
    *out = d;
    return code;
}

void dd_daemon_on_exit(dd_daemon *d, void (*done)(void *), void *arg)
{
    d->exit_cb = done;
    d->exit_arg = arg;
}

void dd_daemon_stop(dd_daemon *d, void (*done)(void *), void *arg)
{
    d->done = done;
    d->done_arg = arg;
    if (d->stopping) {
        dd_daemon_maybe_done(d); /* it may have wound down already */
        return;
    }
    d->stopping = true;
    if (d->http) {
        dd_metrics_http_close(d->http);
        d->http = NULL;
    }
    if (d->nowners == 0) {
        dd_daemon_close_clients(d);
        return;
    }
    for (int i = 0; i < d->nowners; i++)
        dd_owner_release(d->owners[i]);
}

void dd_daemon_free(dd_daemon *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->nowners; i++)
        dd_owner_free(d->owners[i]);
    free(d->wf_input);
    free(d);
}

int dd_daemon_metrics_port(const dd_daemon *d)
{
    return d->http ? dd_metrics_http_port(d->http) : 0;
}
