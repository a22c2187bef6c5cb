/* daemon.h - what `dispatchd run` runs (and `dispatchd up` runs beside the
 * local stack): one owner per configured dispatcher, the /metrics endpoint,
 * all on the caller's loop. */
#ifndef DD_CLI_DAEMON_H
#define DD_CLI_DAEMON_H

#include "cli/cli.h"

typedef struct dd_daemon dd_daemon;

/* Starts everything for cli->cfg's dispatchers (or default_dispatcher when
 * none is configured; may be NULL). child_argv (may be NULL) runs while
 * owning. Returns 0 and *out, or an exit code after printing why (the CLI's
 * rule: cli.h) and *out NULL; then what was built is closing: run the loop
 * before uv_loop_close(). */
int dd_daemon_new(dd_cli *cli, const dd_ctx *ctx, const char *default_dispatcher,
                  char *const *child_argv, dd_daemon **out);
/* done(arg) runs once, from the loop, when the daemon has wound down by
 * itself: every owner let go (--on-workflow-exit release), or this host's
 * --id-prefix is not the fleet's (dd_daemon_exit_code). Close it then. Not
 * called once dd_daemon_close was. */
void dd_daemon_on_exit(dd_daemon *d, void (*done)(void *), void *arg);
/* Releases every dispatcher (own runs terminated with "released by"), stops
 * children, closes clients and the endpoint (or finishes a wind-down under
 * way), then frees d and calls done(arg) (may be NULL) from the loop, never
 * inside this call. Call once; read dd_daemon_exit_code before. */
void dd_daemon_close(dd_daemon *d, void (*done)(void *arg), void *arg);
/* Nonzero when the daemon stopped by itself for a reason that is an exit
 * code (2: this host's --id-prefix is not the fleet's). */
int dd_daemon_exit_code(const dd_daemon *d);
/* The port /metrics listens on (0 when off). */
int dd_daemon_metrics_port(const dd_daemon *d);

#endif
