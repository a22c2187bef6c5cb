/* cli.h - what the subcommands share: option parsing with a true --help,
 * the process-wide logger and metrics, and the exit-code convention.
 *
 * Exit codes (README "Exit codes" is the contract): 0 success, 1 the
 * operation was tried and failed (dependency down, lost a race that matters,
 * timeout, unhealthy), 2 bad usage or bad input: anything the user must
 * change in the command line or environment, found before or after parsing
 * (a malformed value, conflicting options, an unusable path, a port taken by
 * another process). */
#ifndef DD_CLI_CLI_H
#define DD_CLI_CLI_H

#include "core/config.h"
#include "core/ctx.h"
#include "core/log.h"

#include <stddef.h>
#include <stdio.h>

#define DD_EXIT_OK 0
#define DD_EXIT_FAIL 1
#define DD_EXIT_USAGE 2

typedef struct dd_cli_cmd dd_cli_cmd;

typedef struct dd_cli {
    const char *argv0;
    const dd_cli_cmd *cmd;
    dd_config cfg;
    dd_log *log;
    struct dd_metrics *metrics;
    int npos;      /* positional arguments, at argv[0..npos) after parsing */
    char **pos;
    int dashdash;  /* index in pos of the first argument after "--", or -1 */
} dd_cli;

struct dd_cli_cmd {
    const char *name;
    int (*run)(dd_cli *cli);
    const dd_opt *const *groups; /* NULL-terminated; common options are always added */
    const char *usage;           /* e.g. "stack start|stop|status [temporal|redis]" */
    const char *summary;         /* one line */
    const char *details;         /* more lines for --help, or NULL */
};

/* Writes c's option groups to groups (DD_CLI_MAX_GROUPS + 2 slots),
 * dd_opts_common first, NULL-terminated: what --help, the parser and the man
 * page use. More groups than fit is an internal error (abort), never a
 * silent cut (one dropped --child-max-restarts). */
#define DD_CLI_MAX_GROUPS 24
void dd_cli_groups(const dd_cli_cmd *c, const dd_opt **groups);

/* Prints an error "dispatchd: <msg>" to stderr and returns DD_EXIT_USAGE. */
int dd_cli_usage_error(dd_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "dispatchd: <msg>" to stderr and returns DD_EXIT_USAGE: bad input
 * found after parsing (a taken port, an unusable path), where the usage
 * line would not help. */
int dd_cli_refuse(dd_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "dispatchd: <msg>" to stderr and returns DD_EXIT_FAIL. */
int dd_cli_fail(dd_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The directory that holds the running dispatchd binary (for .tools/). Static. */
const char *dd_cli_self_dir(void);
/* The running dispatchd binary's path. Static. */
const char *dd_cli_self_exe(void);

/* This host's identity: --server-id, or "<hostname>-<pid>". Static. */
const char *dd_cli_server_id(dd_cli *cli);
/* What runs under a dispatcher's ID, from --workflow-type, --input... and
 * --marker-task-queue, checked (bad input: the usage error's exit code).
 * *input_owned (free it) holds the final input text wf points to. */
struct dd_owner_workflow;
int dd_cli_workflow(dd_cli *cli, struct dd_owner_workflow *wf, char **input_owned);
/* --temporal-url, or the local dev server's HTTP port. Static. */
const char *dd_cli_temporal_url(const dd_cli *cli);
/* Builds the Temporal client from the configuration (URL, namespace, TLS,
 * API key from env or file). Returns 0, or an exit code after printing why. */
struct dd_temporal;
int dd_cli_temporal_new(dd_cli *cli, const dd_ctx *ctx, struct dd_temporal **out);

/* --redis-url, or the local Redis port. Static. Never print it: */
const char *dd_cli_redis_url(const dd_cli *cli);
/* --redis-sentinel is set: the address comes from the sentinels. */
bool dd_cli_redis_sentinel(const dd_cli *cli);
/* the same with any user:password replaced by "***", for messages (with
 * Sentinel: the master name and the sentinels). Static. */
const char *dd_cli_redis_url_safe(const dd_cli *cli);
/* Opens the Redis store from the configuration (URL, password from env or
 * file). Returns 0, or an exit code after printing why. */
struct dd_store;
int dd_cli_store_open(dd_cli *cli, const dd_ctx *ctx, struct dd_store **out);
/* Once per process: a warning when the Redis URL carries a password and came
 * from the command line (visible to every local user in ps). */
void dd_cli_redis_password_warn(dd_cli *cli);
/* "cannot read WHAT from URL: why (detail); what to do", for a Redis call
 * that failed with st on s (s may be NULL). Returns the exit code (1). */
int dd_cli_redis_fail(dd_cli *cli, struct dd_store *s, int st, const char *what);

struct dd_metrics_http;
/* Serves ctx->metrics, /healthz and /readyz (ready(arg) decides) on listen
 * and logs event=metrics_listening with the port bound. Returns 0, or the
 * exit code after saying why (nothing to close then). */
int dd_cli_metrics_serve(dd_cli *cli, const dd_ctx *ctx, const char *listen,
                         bool (*ready)(void *arg, char *reason, size_t len), void *arg,
                         struct dd_metrics_http **out);

/* dispatchd(1) and the bash completion, from cmds[0..n) and their option
 * groups (man.c; the hidden `__man` and `__completion bash` commands). */
void dd_cli_man(FILE *out, const dd_cli_cmd *cmds, size_t n, const char *version);
void dd_cli_completion_bash(FILE *out, const dd_cli_cmd *cmds, size_t n);

/* Commands (one file each: cmd_<name>.c). */
int dd_cmd_takeover(dd_cli *cli);
int dd_cmd_run(dd_cli *cli);
int dd_cmd_status(dd_cli *cli);
int dd_cmd_worker(dd_cli *cli);
int dd_cmd_reconcile(dd_cli *cli);
int dd_cmd_workers(dd_cli *cli);
int dd_cmd_stack(dd_cli *cli);
int dd_cmd_up(dd_cli *cli);
int dd_cmd_last_will(dd_cli *cli);
int dd_cmd_version(dd_cli *cli);

#endif
