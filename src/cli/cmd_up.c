/* cmd_up.c - `dispatchd up`: the local stack in the foreground.
 *
 * Holds <state>/up.lock for its whole life (so `stack stop` and a second
 * `up` can find it), supervises the services on one loop, and turns SIGINT
 * and SIGTERM into a clean stop of everything. */
#include "cli/cli.h"
#include "cli/daemon.h"
#include "core/buf.h"

#include "core/error.h"
#include "core/time.h"
#include "metrics/http.h"
#include "proc/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct dd_up {
    dd_cli *cli;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup; /* SIGHUP (a closed terminal): like SIGTERM */
    dd_supervisor *sv;
    dd_service svcs[DD_SVC_COUNT];
    int nsvc;
    dd_cancel cancel;
    dd_daemon *daemon; /* the dispatcher owner, once the stack is up */
    bool stack_closing; /* dd_supervisor_close called */
    int exit_code;
} dd_up;

/* The dispatcher `up` owns when no --dispatcher is given. */
#define DD_UP_DEFAULT_DISPATCHER "dev/default"

/* The banner goes out in one write, after the dispatcher owner has started
 * (which logs): printed line by line around it, log lines on a shared
 * terminal split it. */
static void dd_up_daemon_exited(void *arg);
static void dd_up_stop_stack(dd_up *up);

static void dd_up_on_ready(dd_supervisor *sv, void *arg)
{
    dd_up *up = arg;
    dd_buf b = DD_BUF_INIT;
    dd_buf_puts(&b, "dispatchd up: the local stack is ready (Ctrl-C stops it)\n");
    for (int i = 0; i < up->nsvc; i++) {
        char where[128];
        dd_service_describe(&up->svcs[i], where, sizeof(where));
        dd_buf_printf(&b, "  %-9s %s\n", up->svcs[i].name, where);
    }
    dd_buf_printf(&b, "  state     %s\n", up->cli->cfg.state_dir);
    if (!up->daemon && !up->cancel.cancelled) {
        dd_ctx ctx = {.loop = &up->loop, .log = up->cli->log, .metrics = up->cli->metrics,
                      .cfg = &up->cli->cfg, .cancel = &up->cancel};
        int dc = dd_daemon_new(up->cli, &ctx, DD_UP_DEFAULT_DISPATCHER, NULL, &up->daemon);
        if (dc != 0) {
            up->exit_code = dc; /* 2 for bad input (e.g. the metrics port taken) */
            up->cancel.cancelled = true;
            dd_up_stop_stack(up);
        } else {
            dd_daemon_on_exit(up->daemon, dd_up_daemon_exited, up);
            for (int i = 0; i < up->cli->cfg.ndispatchers; i++)
                dd_buf_printf(&b, "  owner     dispatcher %s\n", up->cli->cfg.dispatchers[i]);
            if (up->cli->cfg.ndispatchers == 0)
                dd_buf_printf(&b, "  owner     dispatcher %s\n", DD_UP_DEFAULT_DISPATCHER);
            int port = dd_daemon_metrics_port(up->daemon);
            if (port > 0)
                dd_buf_printf(&b, "  metrics   http://127.0.0.1:%d/metrics\n", port);
        }
    }
    fflush(stdout);
    for (size_t off = 0; off < b.len;) {
        ssize_t n = write(STDOUT_FILENO, b.data + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* stdout gone: nothing to tell anyone */
        off += (size_t)n;
    }
    dd_buf_release(&b);
}

static void dd_up_daemon_closed(void *arg)
{
    dd_up *up = arg;
    up->daemon = NULL;
    /* Dispatchers released while Temporal was still up: now the stack. */
    dd_up_stop_stack(up);
}

/* The owner stopped by itself (its --id-prefix is not the fleet's in this
 * Redis): the stack goes too, with the daemon's exit code. */
static void dd_up_daemon_exited(void *arg)
{
    dd_up *up = arg;
    if (up->cancel.cancelled)
        return;
    up->cancel.cancelled = true;
    int code = dd_daemon_exit_code(up->daemon);
    up->exit_code = code ? code : 1;
    dd_daemon_close(up->daemon, dd_up_daemon_closed, up);
}

static void dd_up_stack_closed(void *arg)
{
    dd_up *up = arg;
    up->sv = NULL;
    uv_close((uv_handle_t *)&up->sigint, NULL);
    uv_close((uv_handle_t *)&up->sigterm, NULL);
    uv_close((uv_handle_t *)&up->sighup, NULL);
}

/* Every way out ends here, once: the services stop, then the loop ends. */
static void dd_up_stop_stack(dd_up *up)
{
    if (up->stack_closing)
        return;
    up->stack_closing = true;
    dd_supervisor_close(up->sv, dd_up_stack_closed, up);
}

static void dd_up_on_signal(uv_signal_t *h, int signum)
{
    dd_up *up = h->data;
    if (up->cancel.cancelled) {
        dd_info(up->cli->log, "signal_ignored", "signal=%d reason=%s", signum,
                "shutdown already in progress");
        return;
    }
    dd_info(up->cli->log, "shutdown_requested", "signal=%d", signum);
    up->cancel.cancelled = true;
    if (up->daemon)
        dd_daemon_close(up->daemon, dd_up_daemon_closed, up);
    else
        dd_up_stop_stack(up);
}

int dd_cmd_up(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "up takes no arguments (got '%s')", cli->pos[0]);
    static dd_up up; /* large; lives for the whole command */
    memset(&up, 0, sizeof(up));
    up.cli = cli;
    char err[512];
    int code = DD_EXIT_OK;

    for (int k = 0; k < DD_SVC_COUNT; k++) {
        int rc = dd_service_init(&up.svcs[k], (dd_service_kind)k, &cli->cfg, dd_cli_self_dir(),
                                 true, err, sizeof(err));
        if (rc < 0) {
            for (int j = 0; j < k; j++)
                dd_service_release(&up.svcs[j]);
            return rc == DD_EINVAL ? dd_cli_refuse(cli, "%s", err) : dd_cli_fail(cli, "%s", err);
        }
        up.nsvc++;
    }
    char *lock_path = dd_strdupf("%s/up.lock", cli->cfg.state_dir);
    char *status_path = dd_strdupf("%s/up.status", cli->cfg.state_dir);
    int upfd = dd_lock_acquire(lock_path);
    if (upfd == DD_EBUSY) {
        dd_status st;
        int pid = dd_status_read(status_path, &st) == 0 ? (int)st.ident.pid : 0;
        printf("dispatchd up is already running (pid %d) for %s; nothing to do\n", pid,
               cli->cfg.state_dir);
        code = DD_EXIT_OK;
        goto out_services;
    }
    if (upfd < 0) {
        code = dd_cli_fail(cli, "cannot take '%s': %s", lock_path, dd_strerror(upfd));
        goto out_services;
    }
    /* Only now (a second `up` of this state dir says "already running"
     * above, whatever ports it holds): a port taken by another process
     * refuses the start before anything runs (exit 2, as `stack start`).
     * Services already running are adopted and hold their own ports. The
     * metrics address is checked here too: it is bound only once the stack
     * is up. */
    if (strcmp(cli->cfg.metrics_listen, "off") != 0 &&
        dd_metrics_http_listen_free(cli->cfg.metrics_listen, err, sizeof(err)) < 0) {
        code = dd_cli_refuse(cli, "%s (--metrics-listen, or \"off\"); nothing was started", err);
        close(upfd);
        goto out_services;
    }
    for (int k = 0; k < up.nsvc; k++) {
        if (dd_lock_held(up.svcs[k].lock_path))
            continue;
        if (dd_service_check_ports(&up.svcs[k], err, sizeof(err)) < 0) {
            code = dd_cli_refuse(cli, "%s; nothing was started", err);
            close(upfd);
            goto out_services;
        }
    }
    dd_status me = {0};
    snprintf(me.service, sizeof(me.service), "up");
    dd_proc_ident_of(getpid(), &me.ident);
    me.started_ms = dd_wall_ms();
    snprintf(me.token, sizeof(me.token), "-");
    snprintf(me.cmd, sizeof(me.cmd), "dispatchd up");
    dd_status_write(status_path, &me);

    uv_loop_init(&up.loop);
    dd_ctx ctx = {.loop = &up.loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg,
                  .cancel = &up.cancel};
    dd_supervisor_opts opts = {.stop_timeout_ms = cli->cfg.stop_timeout_ms,
                               .on_ready = dd_up_on_ready,
                               .arg = &up};
    if (dd_supervisor_new(&ctx, up.svcs, up.nsvc, &opts, &up.sv, err, sizeof(err)) < 0) {
        code = dd_cli_fail(cli, "%s", err);
        uv_loop_close(&up.loop);
        unlink(status_path);
        close(upfd);
        goto out_services;
    }
    uv_signal_init(&up.loop, &up.sigint);
    uv_signal_init(&up.loop, &up.sigterm);
    uv_signal_init(&up.loop, &up.sighup);
    up.sigint.data = up.sighup.data = up.sigterm.data = &up;
    uv_signal_start(&up.sigint, dd_up_on_signal, SIGINT);
    uv_signal_start(&up.sigterm, dd_up_on_signal, SIGTERM);
    uv_signal_start(&up.sighup, dd_up_on_signal, SIGHUP);

    int src = dd_supervisor_start(up.sv, err, sizeof(err));
    if (src < 0) {
        fprintf(stderr, "dispatchd: %s\n", err);
        /* a port taken meanwhile is bad input, as in the check above */
        code = src == DD_EBUSY ? DD_EXIT_USAGE : DD_EXIT_FAIL;
        up.cancel.cancelled = true;
        dd_up_stop_stack(&up);
    }
    uv_run(&up.loop, UV_RUN_DEFAULT);
    if (up.exit_code)
        code = up.exit_code;
    if (uv_loop_close(&up.loop) != 0)
        dd_warn(cli->log, "loop_not_clean", "reason=%s", "handles still open at exit");
    unlink(status_path);
    close(upfd);
out_services:
    for (int i = 0; i < up.nsvc; i++)
        dd_service_release(&up.svcs[i]);
    free(lock_path);
    free(status_path);
    return code;
}
