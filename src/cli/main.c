/* main.c - dispatchd's entry point: picks the subcommand, parses its
 * options (flags, then environment, then defaults), builds the process-wide
 * logger and metrics registry, and hands over. The few process-wide objects
 * live here and nowhere else (R11). */
#include "cli/cli.h"

#include "child/child.h"
#include "child/will_proc.h"
#include "core/buf.h"
#include "core/error.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "owner/fence.h"
#include "proc/proc.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const dd_opt *const dd_groups_stack[] = {dd_opts_state, dd_opts_stack, dd_opts_json, NULL};
static const dd_opt *const dd_groups_up[] = {
    dd_opts_state, dd_opts_stack, dd_opts_dispatcher, dd_opts_server_id, dd_opts_heartbeat, dd_opts_stale,
    dd_opts_reconcile, dd_opts_takeover, dd_opts_loss_watch, dd_opts_metrics, NULL};
static const dd_opt *const dd_groups_run[] = {
    dd_opts_dispatcher, dd_opts_server_id, dd_opts_heartbeat, dd_opts_stale, dd_opts_reconcile,
    dd_opts_takeover, dd_opts_workflow, dd_opts_id_prefix, dd_opts_workflow_run, dd_opts_temporal,
    dd_opts_stack_http, dd_opts_redis, dd_opts_redis_wait, dd_opts_metrics, dd_opts_stop,
    dd_opts_child, dd_opts_loss_watch, NULL};
static const dd_opt *const dd_groups_takeover[] = {dd_opts_server_id, dd_opts_takeover,
                                                  dd_opts_workflow, dd_opts_id_prefix,
                                                  dd_opts_temporal,
                                                  dd_opts_stack_http, NULL};
static const dd_opt *const dd_groups_status[] = {dd_opts_json, dd_opts_redis, dd_opts_redis_port,
                                                dd_opts_stale, NULL};
static const dd_opt *const dd_groups_worker[] = {dd_opts_dispatcher, dd_opts_server_id,
                                                dd_opts_heartbeat, dd_opts_id_prefix,
                                                dd_opts_redis, NULL};
static const dd_opt *const dd_groups_workers[] = {dd_opts_json, dd_opts_id_prefix, dd_opts_redis,
                                                 dd_opts_redis_port,
                                                 NULL};
static const dd_opt *const dd_groups_reconcile[] = {
    dd_opts_stale, dd_opts_reconcile, dd_opts_server_id, dd_opts_temporal, dd_opts_stack_http,
    dd_opts_redis, dd_opts_loop, dd_opts_reconcile_metrics, NULL};
static const dd_opt *const dd_groups_last_will[] = {dd_opts_last_will_server_id, dd_opts_stale,
                                                   dd_opts_redis, NULL};
static const dd_opt *const dd_groups_none[] = {NULL};

static const dd_cli_cmd dd_commands[] = {
    {"up", dd_cmd_up, dd_groups_up, "up [options]",
     "start the local Temporal dev server and Redis, keep them up, stop them on Ctrl-C",
     "Runs in the foreground. A crashed server is restarted at once (with exponential\n"
     "backoff if it keeps crashing); a server that stops answering is restarted too.\n"
     "Servers left running by an earlier dispatchd (e.g. `stack start`) are adopted.\n"
     "Once both answer, it owns the dispatcher dev/default (or each --dispatcher) like\n"
     "`dispatchd run`, and serves /metrics; Ctrl-C releases it, then stops the stack."},
    {"stack", dd_cmd_stack, dd_groups_stack, "stack start|stop|status [temporal|redis]",
     "manage the local Temporal dev server and Redis without staying in the foreground",
     "start   start the services detached (idempotent: a healthy service is left alone)\n"
     "stop    TERM each service's process group, wait --stop-timeout, then KILL it\n"
     "status  lock, process identity (pid + kernel start time) and protocol health;\n"
     "        exits 0 only if every service asked about is healthy (--json for details);\n"
     "        without port options, the ports recorded in --state-dir's status files\n"
     "A port taken by another process refuses the start before anything runs (exit 2);\n"
     "every service needs its own port."},
    {"run", dd_cmd_run, dd_groups_run, "run --dispatcher PROJECT/QUEUE... [options] [-- CMD ARGS...]",
     "own dispatchers: take over, hold, detect loss, release on SIGTERM; serve /metrics",
     "For each --dispatcher, takes over its workflow (termination-first) and holds it.\n"
     "When another host takes over, this one learns within milliseconds (a long-poll on\n"
     "its run's close event, or in a fleet of --long-poll-budget records or more a notice\n"
     "on dd:taken), stops acting and does not fight back. With -- CMD ARGS,\n"
     "CMD runs (own process group; env DISPATCHD_WORKFLOW_ID, DISPATCHD_RUN_ID,\n"
     "DISPATCHD_SERVER_ID) only while this host owns the dispatcher, and is stopped\n"
     "(TERM, --stop-timeout, KILL) as soon as ownership is lost. SIGTERM or Ctrl-C\n"
     "releases every dispatcher: the child is stopped and the own run terminated with\n"
     "reason \"released by <server id>\"."},
    {"status", dd_cmd_status, dd_groups_status, "status [--json] [options]",
     "every dispatcher in Redis: owner, run id, heartbeat age, healthy/stale, workers",
     "A dispatcher is stale when its last heartbeat is older than --stale-threshold.\n"
     "Redis: --redis-url, or --redis-port PORT for the local one (redis://127.0.0.1:PORT/0).\n"
     "Exits 1 when Redis cannot be read, 2 for bad input."},
    {"worker", dd_cmd_worker, dd_groups_worker,
     "worker --dispatcher PROJECT/QUEUE --server-id ID [options]",
     "worker sidecar: register with a dispatcher and heartbeat until stopped",
     "Registers ID with the dispatcher of PROJECT/QUEUE in Redis and refreshes it every\n"
     "--heartbeat-interval; deregisters on SIGTERM or Ctrl-C. The dispatcher's owner evicts\n"
     "workers whose heartbeat is older than its stale threshold. Programs can do the same\n"
     "with include/dispatchd.h and libdispatchd.a."},
    {"workers", dd_cmd_workers, dd_groups_workers, "workers PROJECT/QUEUE [--json]",
     "the workers registered with one dispatcher, and its owner",
     "A dispatcher with workers but no owner is shown as waiting. Exits 1 for a dispatcher\n"
     "Redis knows nothing about. Redis: --redis-url, or --redis-port PORT for the local one."},
    {"reconcile", dd_cmd_reconcile, dd_groups_reconcile, "reconcile [--loop] [options]",
     "clean up stale dispatchers once (or keep going with --loop); prints JSON per cycle",
     "A record whose heartbeat is older than --stale-threshold (or its owner's own threshold,\n"
     "ttl_ms in the record, when that is longer) is stale: its exact run is\n"
     "terminated first (reason \"stale: no heartbeat from <server id> for <age>\"), then the\n"
     "record is deleted only if nobody refreshed it meanwhile. A run already closed: the\n"
     "record is deleted. Running dispatcher workflows without any record for longer than\n"
     "the threshold are terminated too. Exits 1 when the cycle had errors."},
    {"takeover", dd_cmd_takeover, dd_groups_takeover, "takeover PROJECT QUEUE [options]",
     "take over the dispatcher of (PROJECT, QUEUE) once, termination-first; prints JSON",
     "Starts workflow dispatcher-<project>-<queue> with conflict policy TERMINATE_EXISTING\n"
     "(or, with --legacy-takeover, terminate-then-start on 409), and prints\n"
     "{workflow_id, run_id, previous_run_id, outcome, latency_ms, attempts}.\n"
     "Exits 1 when Temporal cannot be reached or refuses, 2 for bad input."},
    {"last-will", dd_cmd_last_will, dd_groups_last_will, "last-will [options]",
     "ExecStopPost= of the unit: release a dead dispatchd's records at once",
     "For systemd's ExecStopPost= (docs/systemd.md). When dispatchd dies on its own, systemd\n"
     "kills the rest of the unit at once, before its guards' last wills go out. This\n"
     "does it for them: every record held by the dead dispatchd's server id (the one\n"
     "`run` wrote to $RUNTIME_DIRECTORY/server_id, or --server-id) is made stale at once,\n"
     "fenced by its run id and epoch (a newer owner's record is left alone), and the\n"
     "standbys are told on dd:released. Use the same Redis settings as `run` (the unit's\n"
     "EnvironmentFile=). It refuses (exit 1) while any other process is in its cgroup\n"
     "(v2; exit 2 where there is none): under ExecStopPost= the unit's processes are all\n"
     "gone by then. Redis unreachable for 5 s: exit 1. No record of that server id\n"
     "(a clean stop released them): exit 0."},
    {"version", dd_cmd_version, dd_groups_none, "version", "print the version", NULL},
};

#define DD_NCOMMANDS (sizeof(dd_commands) / sizeof(dd_commands[0]))

static void dd_main_usage(FILE *out)
{
    fprintf(out, "usage: dispatchd COMMAND [options] [args]\n\n"
                 "Keeps exactly one healthy dispatcher per (project, task queue) and keeps\n"
                 "a local Temporal + Redis stack alive.\n\ncommands:\n");
    for (size_t i = 0; i < DD_NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", dd_commands[i].name, dd_commands[i].summary);
    fprintf(out, "\nRun 'dispatchd COMMAND --help' for the options of one command.\n");
}

/* The option groups of c, dd_opts_common first, NULL-terminated. A command
 * with more groups than fit is a programming error, caught by every test
 * that runs the command (a silent cut once dropped --child-max-restarts). */
void dd_cli_groups(const dd_cli_cmd *c, const dd_opt **groups)
{
    int n = 0;
    groups[n++] = dd_opts_common;
    for (int i = 0; c->groups[i]; i++) {
        if (n > DD_CLI_MAX_GROUPS) {
            fprintf(stderr, "dispatchd: internal error: command '%s' has more than %d option "
                            "groups\n", c->name, DD_CLI_MAX_GROUPS);
            abort();
        }
        groups[n++] = c->groups[i];
    }
    groups[n] = NULL;
}

static void dd_cmd_help(FILE *out, const dd_cli_cmd *c)
{
    fprintf(out, "usage: dispatchd %s\n\n%s\n", c->usage, c->summary);
    if (c->details)
        fprintf(out, "\n%s\n", c->details);
    fprintf(out, "\noptions:\n");
    const dd_opt *groups[DD_CLI_MAX_GROUPS + 2];
    dd_cli_groups(c, groups);
    dd_config_help(out, groups);
}

/* "dispatchd: <msg>" on stderr: the one shape of every CLI error line. */
static void dd_cli_vsay(const char *fmt, va_list ap)
{
    fputs("dispatchd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int dd_cli_usage_error(dd_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dd_cli_vsay(fmt, ap);
    va_end(ap);
    if (cli->cmd)
        fprintf(stderr, "usage: dispatchd %s (see --help)\n", cli->cmd->usage);
    return DD_EXIT_USAGE;
}

int dd_cli_refuse(dd_cli *cli, const char *fmt, ...)
{
    (void)cli;
    va_list ap;
    va_start(ap, fmt);
    dd_cli_vsay(fmt, ap);
    va_end(ap);
    return DD_EXIT_USAGE;
}

int dd_cli_fail(dd_cli *cli, const char *fmt, ...)
{
    (void)cli;
    va_list ap;
    va_start(ap, fmt);
    dd_cli_vsay(fmt, ap);
    va_end(ap);
    return DD_EXIT_FAIL;
}

/* /proc/self/exe, whole (heap), or NULL. readlink() cuts silently when the
 * buffer is too small, so a result that fills it is read again, larger. */
static char *dd_self_exe_path(void)
{
    for (size_t cap = 256; cap <= (1u << 20); cap *= 2) {
        char *buf = dd_xmalloc(cap);
        ssize_t n = readlink("/proc/self/exe", buf, cap);
        if (n > 0 && (size_t)n < cap) {
            buf[n] = '\0';
            return buf;
        }
        free(buf);
        if (n <= 0)
            break;
    }
    return NULL;
}

/* Both are computed once and kept for the life of the process. */
const char *dd_cli_self_dir(void)
{
    static char *dir;
    if (!dir) {
        dir = dd_self_exe_path();
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = '\0';
        else {
            free(dir);
            dir = dd_strdup(".");
        }
    }
    return dir;
}

const char *dd_cli_self_exe(void)
{
    static char *exe;
    if (!exe) {
        exe = dd_self_exe_path();
        if (!exe)
            exe = dd_strdup("/proc/self/exe");
    }
    return exe;
}

/* Checks that need the whole command line and no server: a malformed
 * --metrics-listen, two services on one port, --redis-port against
 * --redis-url. Bad input is refused here, before anything starts (so `up`
 * never starts a stack only to fail on its metrics address). */
static int dd_main_check(dd_config *cfg, const dd_opt *const *groups, char *err, size_t errlen)
{
    const char *listen = NULL;
    for (int i = 0; groups[i]; i++) {
        if (groups[i] == dd_opts_metrics && strcmp(cfg->metrics_listen, "off") != 0)
            listen = cfg->metrics_listen;
        if (groups[i] == dd_opts_reconcile_metrics && cfg->reconcile_metrics_listen &&
            strcmp(cfg->reconcile_metrics_listen, "off") != 0)
            listen = cfg->reconcile_metrics_listen;
    }
    dd_port_use extra[1];
    int nextra = 0;
    if (listen) {
        char e[300];
        int port = 0;
        if (dd_metrics_http_check_listen(listen, &port, e, sizeof(e)) < 0) {
            dd_msgf(err, errlen, "--metrics-listen: %s (or \"off\")", e);
            return DD_EINVAL;
        }
        extra[nextra++] = (dd_port_use){"metrics-listen", port};
    }
    int rc = dd_config_check_ports(cfg, groups, extra, nextra, err, errlen);
    if (rc == 0)
        rc = dd_config_resolve_redis(cfg, groups, err, errlen);
    return rc;
}

int dd_cmd_version(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "version takes no arguments (got '%s')", cli->pos[0]);
    printf("dispatchd %s (commit %s)\n", DD_VERSION, DD_GIT_COMMIT);
    return DD_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        dd_main_usage(stderr);
        return DD_EXIT_USAGE;
    }
    /* Internal: the first process of every owner child command (guard.c). */
    if (!strcmp(argv[1], "__guard"))
        return dd_guard_main(argc - 1, argv + 1);
    /* Internal: the host's will process, started by run/up (will_proc.c). */
    if (!strcmp(argv[1], "__will"))
        return dd_will_main(argc - 1, argv + 1);
    /* Internal: run by the build to write dispatchd.1 and the completion (man.c). */
    if (!strcmp(argv[1], "__man")) {
        dd_cli_man(stdout, dd_commands, DD_NCOMMANDS, DD_VERSION);
        return DD_EXIT_OK;
    }
    if (!strcmp(argv[1], "__completion") && argc == 3 && !strcmp(argv[2], "bash")) {
        dd_cli_completion_bash(stdout, dd_commands, DD_NCOMMANDS);
        return DD_EXIT_OK;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        dd_main_usage(stdout);
        return DD_EXIT_OK;
    }
    static char version_cmd[] = "version";
    if (!strcmp(argv[1], "--version"))
        argv[1] = version_cmd;

    /* A peer that went away (a scraper, Redis, a guard) must be an EPIPE on
     * that write, not the end of the daemon. */
    signal(SIGPIPE, SIG_IGN);

    dd_cli cli = {.argv0 = argv[0], .dashdash = -1};
    for (size_t i = 0; i < DD_NCOMMANDS; i++)
        if (strcmp(argv[1], dd_commands[i].name) == 0)
            cli.cmd = &dd_commands[i];
    if (!cli.cmd) {
        fprintf(stderr, "dispatchd: unknown command '%s'\n", argv[1]);
        dd_main_usage(stderr);
        return DD_EXIT_USAGE;
    }

    dd_config_defaults(&cli.cfg);
    const dd_opt *groups[DD_CLI_MAX_GROUPS + 2];
    dd_cli_groups(cli.cmd, groups);

    char err[512];
    int rc = dd_config_parse(&cli.cfg, groups, argc - 2, argv + 2, &cli.npos, &cli.dashdash,
                             err, sizeof(err));
    if (rc == 0 && cli.cfg.help) {
        dd_cmd_help(stdout, cli.cmd);
        dd_config_release(&cli.cfg);
        return DD_EXIT_OK;
    }
    for (int i = 0; groups[i]; i++)
        if (groups[i] == dd_opts_heartbeat)
            cli.cfg.heartbeats = true;
    if (rc == 0)
        rc = dd_config_validate(&cli.cfg, err, sizeof(err));
    bool owns = false; /* commands that own dispatchers: an acting window */
    for (int i = 0; groups[i]; i++)
        owns = owns || groups[i] == dd_opts_stale; /* run, up (worker has no threshold) */
    if (rc == 0 && cli.cfg.heartbeats && owns) {
        /* an owner's acting window must fit (owner/fence.h) */
        dd_fence_plan plan;
        rc = dd_fence_plan_make(cli.cfg.heartbeat_interval_ms, cli.cfg.stale_threshold_ms,
                                cli.cfg.stop_timeout_ms, &plan, err, sizeof(err));
    }
    if (rc == 0)
        rc = dd_main_check(&cli.cfg, groups, err, sizeof(err));
    if (rc < 0) {
        int code = dd_cli_usage_error(&cli, "%s", err);
        dd_config_release(&cli.cfg);
        return code;
    }
    cli.pos = argv + 2;

    dd_log_level level = DD_LOG_INFO;
    dd_log_level_parse(cli.cfg.log_level, &level);
    cli.log = dd_log_new(stderr, level);
    dd_log_format format = DD_LOG_LOGFMT;
    dd_log_format_parse(cli.cfg.log_format, &format); /* validated above */
    dd_log_set_format(cli.log, format);
    /* the child's guard writes records into our stream: in our format (a
     * flag beats the environment, so the environment says what won) */
    setenv("DISPATCHD_LOG_FORMAT", cli.cfg.log_format, 1);
    cli.metrics = dd_metrics_new();
    const char *const bl[] = {"version", "commit", NULL};
    dd_metric *bi = dd_metrics_family(cli.metrics, DD_GAUGE, "dispatchd_build_info",
                                      "Build information; always 1.", bl, NULL, 0);
    dd_metric_set(bi, (const char *const[]){DD_VERSION, DD_GIT_COMMIT}, 1);
    dd_metrics_process_register(cli.metrics); /* process_*, refreshed per scrape */

    int code = cli.cmd->run(&cli);

    dd_metrics_free(cli.metrics);
    dd_log_free(cli.log);
    dd_config_release(&cli.cfg);
    return code;
}
