/* cmd_reconcile.c - `dispatchd reconcile [--loop]`: one reconcile cycle
 * (stale records: terminate the exact run first, then compare-and-delete
 * the record), printed as JSON; with --loop, keep reconciling until stopped. */
#include "cli/cli.h"

#include "core/error.h"
#include "metrics/http.h"
#include "reconcile/reconcile.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    dd_cli *cli;
    uv_loop_t loop;
    dd_store *s;
    dd_temporal *t;
    dd_reconciler *r;
    uv_signal_t sigint, sigterm, sighup; /* SIGHUP (a closed terminal): like SIGTERM */
    bool signals;
    dd_metrics_http *http; /* --loop --metrics-listen */
    int result;
    int last_result; /* of the last completed cycle (--loop) */
    int cycles;
} dd_rec_cmd;

static void dd_rec_print(const dd_reconcile_stats *st)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
                          "s:b, s:f}",
                          "result", st->result ? dd_strerror(st->result) : "ok", "active",
                          (json_int_t)st->active, "stale", (json_int_t)st->stale, "candidates",
                          st->candidates, "terminated", st->terminated, "already_closed",
                          st->already_closed, "cleaned", st->cleaned, "kept_refreshed",
                          st->kept_refreshed, "malformed", st->malformed, "leased_elsewhere",
                          st->leased_elsewhere, "swept", st->swept, "errors", st->errors,
                          "visible", st->visible, "described", st->described, "sweep_ran",
                          st->sweep_ran, "duration_ms", st->duration_ms);
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", text);
    fflush(stdout);
    free(text);
    json_decref(o);
}

static void dd_rec_closed_all(void *arg)
{
    dd_rec_cmd *c = arg;
    if (c->signals) {
        uv_close((uv_handle_t *)&c->sigint, NULL);
        uv_close((uv_handle_t *)&c->sigterm, NULL);
        uv_close((uv_handle_t *)&c->sighup, NULL);
    }
}

static void dd_rec_closed(void *arg)
{
    dd_rec_cmd *c = arg;
    c->r = NULL;
    dd_store_close(c->s, NULL, NULL);
    dd_temporal_close(c->t, dd_rec_closed_all, c);
}

static void dd_rec_once_done(const dd_reconcile_stats *st, void *arg)
{
    dd_rec_cmd *c = arg;
    dd_rec_print(st);
    c->result = st->result;
    dd_reconciler_close(c->r, dd_rec_closed, c);
}

static void dd_rec_on_cycle(const dd_reconcile_stats *st, void *arg)
{
    dd_rec_cmd *c = arg;
    c->cycles++;
    c->last_result = st->result;
    dd_rec_print(st);
}

/* /readyz: ready once a cycle has completed, and while the last one had no
 * errors (so a probe sees a reconciler that cannot reach Temporal or Redis). */
static bool dd_rec_ready(void *arg, char *reason, size_t len)
{
    dd_rec_cmd *c = arg;
    if (c->cycles == 0) {
        dd_msgf(reason, len, "no reconcile cycle completed yet");
        return false;
    }
    if (c->last_result != 0) {
        dd_msgf(reason, len, "last reconcile cycle failed: %s", dd_strerror(c->last_result));
        return false;
    }
    return true;
}

static void dd_rec_signal(uv_signal_t *h, int signum)
{
    dd_rec_cmd *c = h->data;
    uv_signal_stop(&c->sigint);
    uv_signal_stop(&c->sigterm);
    uv_signal_stop(&c->sighup);
    if (c->http)
        dd_metrics_http_close(c->http, NULL, NULL); /* the loop runs until it is closed */
    c->http = NULL;
    if (c->r)
        dd_reconciler_close(c->r, dd_rec_closed, c);
}

int dd_cmd_reconcile(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "reconcile takes no arguments (got '%s')", cli->pos[0]);
    const char *listen = cli->cfg.reconcile_metrics_listen;
    if (listen && strcmp(listen, "off") == 0)
        listen = NULL;
    if (listen && !cli->cfg.loop)
        return dd_cli_usage_error(cli, "--metrics-listen needs --loop (one cycle has nothing "
                                       "to scrape: read its JSON line)");
    static dd_rec_cmd c;
    c = (dd_rec_cmd){.cli = cli};
    uv_loop_init(&c.loop);
    dd_ctx ctx = {.loop = &c.loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg};
    int code = dd_cli_temporal_new(cli, &ctx, &c.t);
    if (code == 0 && (code = dd_cli_store_open(cli, &ctx, &c.s)) != 0)
        dd_temporal_close(c.t, NULL, NULL);
    if (code == 0) {
        dd_reconciler_opts ro = {.stale_threshold_ms = cli->cfg.stale_threshold_ms,
                                 .interval_ms = cli->cfg.reconcile_interval_ms,
                                 .terminate_rate = cli->cfg.terminate_rate,
                                 .max_inflight = (size_t)cli->cfg.reconcile_lanes,
                                 .holder = dd_cli_server_id(cli),
                                 .sweep = true,
                                 .on_cycle = cli->cfg.loop ? dd_rec_on_cycle : NULL,
                                 .arg = &c};
        char err[256];
        if (dd_reconciler_new(&ctx, c.s, c.t, &ro, &c.r, err, sizeof(err)) < 0) {
            code = dd_cli_usage_error(cli, "%s", err);
            dd_store_close(c.s, NULL, NULL);
            dd_temporal_close(c.t, NULL, NULL);
        } else if (cli->cfg.loop) {
            uv_signal_init(&c.loop, &c.sigint);
            uv_signal_init(&c.loop, &c.sigterm);
            uv_signal_init(&c.loop, &c.sighup);
            c.sigint.data = c.sighup.data = c.sigterm.data = &c;
            c.signals = true;
            uv_signal_start(&c.sigint, dd_rec_signal, SIGINT);
            uv_signal_start(&c.sigterm, dd_rec_signal, SIGTERM);
            uv_signal_start(&c.sighup, dd_rec_signal, SIGHUP);
            if (listen)
                code = dd_cli_metrics_serve(cli, &ctx, listen, dd_rec_ready, &c, &c.http);
            if (code != 0) {
                uv_signal_stop(&c.sigint);
                uv_signal_stop(&c.sigterm);
                uv_signal_stop(&c.sighup);
                dd_reconciler_close(c.r, dd_rec_closed, &c);
            } else {
                dd_reconciler_start(c.r);
            }
        } else if (dd_reconciler_run_once(c.r, dd_rec_once_done, &c) < 0) {
            code = dd_cli_fail(cli, "cannot start a reconcile cycle");
            dd_reconciler_close(c.r, dd_rec_closed, &c);
        }
    }
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uv_loop_close(&c.loop);
    if (code == 0 && !cli->cfg.loop && c.result == -ENOTSUP)
        code = dd_cli_refuse(cli, "%s is a Redis Cluster node (or redirects like one): Redis "
                                  "Cluster is not supported; use a standalone Redis or a "
                                  "replicated primary (docs/redis.md; details in the log)",
                             dd_cli_redis_url_safe(cli));
    else if (code == 0 && !cli->cfg.loop && c.result == -EPERM)
        code = dd_cli_fail(cli, "the reconcile cycle had errors: %s: the Redis ACL user lacks a "
                                "command or key dispatchd needs (event=redis_noperm in the log "
                                "names them; the rule set is in docs/redis.md)",
                           dd_strerror(c.result));
    else if (code == 0 && !cli->cfg.loop && c.result != 0)
        code = dd_cli_fail(cli, "the reconcile cycle had errors: %s (details in the log)",
                           dd_strerror(c.result));
    return code;
}
