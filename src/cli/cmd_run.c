/* cmd_run.c - `dispatchd run`: the production daemon. */
#include "cli/daemon.h"

#include "core/buf.h"
#include "core/error.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
    dd_cli *cli;
    dd_daemon *d;
    uv_signal_t sigint, sigterm, sighup; /* SIGHUP (a closed terminal): like SIGTERM */
    dd_cancel cancel;
    int exit_code; /* the daemon's, read before it is closed */
} dd_run;

static void dd_run_closed(void *arg)
{
    dd_run *r = arg;
    r->d = NULL;
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
}

/* A signal, or the daemon wound down by itself: close it (once). */
static void dd_run_close(dd_run *r)
{
    r->cancel.cancelled = true;
    r->exit_code = dd_daemon_exit_code(r->d);
    dd_daemon_close(r->d, dd_run_closed, r);
}

static void dd_run_exited(void *arg)
{
    dd_run *r = arg;
    if (!r->cancel.cancelled)
        dd_run_close(r);
}

static void dd_run_on_signal(uv_signal_t *h, int signum)
{
    dd_run *r = h->data;
    if (r->cancel.cancelled)
        return;
    dd_info(r->cli->log, "shutdown_requested", "signal=%d", signum);
    dd_run_close(r);
}

/* One candidate path: 0 if it is an executable regular file, else why not. */
static int dd_run_exec_ok(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
        return -EACCES;
    return 0;
}

/* Would execvp(cmd) find something to run? It is resolved the same way: a
 * name with a '/' as is, else each $PATH entry in turn (an empty entry is
 * the current directory; no $PATH: the C library's default). A command that
 * can never start would otherwise only be noticed as a child that keeps
 * exiting 127 on every host it reaches. 0, or an exit code after saying why. */
static int dd_run_check_command(dd_cli *cli, const char *cmd)
{
    if (!*cmd)
        return dd_cli_usage_error(cli, "-- CMD: the command is empty");
    if (strchr(cmd, '/')) {
        int rc = dd_run_exec_ok(cmd);
        if (rc == 0)
            return 0;
        return dd_cli_usage_error(cli, "-- %s: cannot run it: %s", cmd,
                                  rc == -ENOENT ? "no such file"
                                  : rc == -EISDIR ? "it is a directory"
                                  : rc == -EACCES ? "not an executable file (chmod +x?)"
                                                  : strerror(-rc));
    }
    const char *path = getenv("PATH");
    char deflt[256] = "/bin:/usr/bin";
    if (!path) {
        size_t n = confstr(_CS_PATH, deflt, sizeof(deflt));
        if (n == 0 || n > sizeof(deflt))
            snprintf(deflt, sizeof(deflt), "/bin:/usr/bin");
        path = deflt;
    }
    bool found_unusable = false;
    for (const char *p = path;;) {
        size_t n = strcspn(p, ":");
        dd_buf cand = DD_BUF_INIT;
        dd_buf_printf(&cand, "%.*s%s%s", (int)n, p, n ? "/" : "", cmd);
        int rc = dd_run_exec_ok(dd_buf_str(&cand));
        dd_buf_release(&cand);
        if (rc == 0)
            return 0;
        if (rc == -EACCES)
            found_unusable = true;
        if (!p[n])
            break;
        p += n + 1;
    }
    return dd_cli_usage_error(cli, "-- %s: %s in PATH (%s); give a full path or fix PATH", cmd,
                              found_unusable ? "no executable file of that name"
                                             : "not found",
                              path);
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
        int bad = dd_run_check_command(cli, child[0]);
        if (bad)
            return bad;
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
    int code = dd_daemon_new(cli, &ctx, NULL, child, &r.d);
    if (code == 0) {
        uv_signal_init(&loop, &r.sigint);
        uv_signal_init(&loop, &r.sigterm);
        uv_signal_init(&loop, &r.sighup);
        r.sigint.data = r.sighup.data = r.sigterm.data = &r;
        uv_signal_start(&r.sigint, dd_run_on_signal, SIGINT);
        uv_signal_start(&r.sigterm, dd_run_on_signal, SIGTERM);
        uv_signal_start(&r.sighup, dd_run_on_signal, SIGHUP);
        dd_daemon_on_exit(r.d, dd_run_exited, &r);
        dd_info(cli->log, "started",
                "dispatchers=%d temporal_url=%s namespace=%s temporal_max_in_flight=%d",
                cli->cfg.ndispatchers, dd_cli_temporal_url(cli), cli->cfg.namespace_,
                cli->cfg.temporal_max_in_flight);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (code == 0)
        code = r.exit_code;
    if (uv_loop_close(&loop) != 0)
        dd_warn(cli->log, "loop_not_clean", "reason=%s", "handles still open at exit");
    else if (code == 0)
        dd_info(cli->log, "stopped", "clean=%s", "true");
    return code;
}
