/* daemon.h - what `dispatchd run` runs (and `dispatchd up` runs beside the
 * local stack): one owner per configured dispatcher, the /metrics endpoint,
 * all on the caller's loop. */
#ifndef DD_CLI_DAEMON_H
#define DD_CLI_DAEMON_H

#include "cli/cli.h"

typedef struct dd_daemon dd_daemon;

/* Starts everything for cli->cfg's dispatchers (or default_dispatcher when
 * none is configured; may be NULL). child_argv (may be NULL) runs while
 * owning. Returns 0, or an exit code after printing why. */
int dd_daemon_start(dd_daemon **out, dd_cli *cli, const dd_ctx *ctx,
                    const char *default_dispatcher, char *const *child_argv);
/* Releases every dispatcher (own runs terminated with "released by"), stops
 * children, closes clients and the endpoint; done(arg) when all is closed. */
/* done(arg) runs once the daemon has wound down by itself because every
 * owner let go (--on-workflow-exit release); then the loop can end. */
void dd_daemon_on_exit(dd_daemon *d, void (*done)(void *), void *arg);
void dd_daemon_stop(dd_daemon *d, void (*done)(void *arg), void *arg);
void dd_daemon_free(dd_daemon *d);
/* Nonzero when the daemon stopped by itself for a reason that is an exit
 * code (2: this host's --id-prefix is not the fleet's). */
int dd_daemon_exit_code(const dd_daemon *d);
/* The port /metrics listens on (0 when off). */
int dd_daemon_metrics_port(const dd_daemon *d);

#endif
