/* cmd_run.c - `dispatchd run`: the production daemon. */
#include "cli/daemon.h"

#include "core/error.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

typedef struct {
    dd_cli *cli;
    dd_daemon *d;
    uv_signal_t sigint, sigterm, sighup; /* SIGHUP (a closed terminal): like SIGTERM */
    dd_cancel cancel;
} dd_run;

static void dd_run_stopped(void *arg)
{
    dd_run *r = arg;
    if (uv_is_closing((uv_handle_t *)&r->sigint))
        return;
    r->cancel.cancelled = true;
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
}

static void dd_run_on_signal(uv_signal_t *h, int signum)
{
    dd_run *r = h->data;
    if (r->cancel.cancelled)
        return;
    dd_info(r->cli->log, "shutdown_requested", "signal=%d", signum);
    r->cancel.cancelled = true;
    dd_daemon_stop(r->d, dd_run_stopped, r);
}

int dd_cmd_run(dd_cli *cli)
{
    char *const *child = NULL;
    if (cli->dashdash >= 0) {
        if (cli->dashdash != 0)
            return dd_cli_usage_error(cli, "unexpected argument '%s' before --", cli->pos[0]);
        if (cli->npos == 0)
            return dd_cli_usage_error(cli, "-- must be followed by a command to run");
        child = cli->pos;
        cli->pos[cli->npos] = NULL; /* argv stays NULL-terminated after the move */
    } else if (cli->npos > 0) {
        return dd_cli_usage_error(cli, "unexpected argument '%s' (a command goes after --)",
                                  cli->pos[0]);
    }
    if (cli->cfg.ndispatchers == 0)
        return dd_cli_usage_error(cli, "run needs at least one --dispatcher PROJECT/QUEUE");

    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_run r = {.cli = cli};
    dd_ctx ctx = {.loop = &loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg,
                  .cancel = &r.cancel};
    dd_log_add_field(cli->log, "server_id", dd_cli_server_id(cli));
    int code = dd_daemon_start(&r.d, cli, &ctx, NULL, child);
    if (code == 0) {
        uv_signal_init(&loop, &r.sigint);
        uv_signal_init(&loop, &r.sigterm);
        uv_signal_init(&loop, &r.sighup);
        r.sigint.data = r.sighup.data = r.sigterm.data = &r;
        uv_signal_start(&r.sigint, dd_run_on_signal, SIGINT);
        uv_signal_start(&r.sigterm, dd_run_on_signal, SIGTERM);
        uv_signal_start(&r.sighup, dd_run_on_signal, SIGHUP);
        dd_daemon_on_exit(r.d, dd_run_stopped, &r);
        dd_info(cli->log, "started", "dispatchers=%d temporal_url=%s namespace=%s",
                cli->cfg.ndispatchers, dd_cli_temporal_url(cli), cli->cfg.namespace_);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (code == 0)
        code = dd_daemon_exit_code(r.d);
    dd_daemon_free(r.d);
    if (uv_loop_close(&loop) != 0)
        dd_warn(cli->log, "loop_not_clean", "reason=%s", "handles still open at exit");
    else if (code == 0)
        dd_info(cli->log, "stopped", "clean=%s", "true");
    return code;
}
