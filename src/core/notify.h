/* notify.h - systemd's service notification protocol, without libsystemd.
 *
 * systemd sets NOTIFY_SOCKET for a Type=notify unit; each message
 * ("READY=1", "STATUS=...", "STOPPING=1", "WATCHDOG=1") is one datagram to
 * that AF_UNIX socket (a leading '@' names the abstract namespace). With
 * WATCHDOG_USEC set (and WATCHDOG_PID unset or ours), a timer on the loop
 * sends WATCHDOG=1 every WATCHDOG_USEC/2: a loop that hangs stops the pings,
 * and systemd restarts the service (WatchdogSec=).
 *
 * A send that fails (nobody listens, the path is wrong) is one warning,
 * event=notify_failed, and nothing more: the daemon keeps running, only the
 * supervisor does not hear from it. The three variables are removed from
 * the environment once read, so a child command does not talk to systemd in
 * our name.
 *
 * Owns its socket and its timer; ctx is borrowed and must outlive it. Every
 * function is a no-op when NOTIFY_SOCKET was not set. */
#ifndef DD_CORE_NOTIFY_H
#define DD_CORE_NOTIFY_H

#include "core/ctx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dd_notify dd_notify;

/* Reads the environment and starts the watchdog timer when asked for.
 * Returns 0 (a bad WATCHDOG_USEC or NOTIFY_SOCKET is a warning, not an
 * error: the daemon runs without a supervisor then). */
int dd_notify_new(const dd_ctx *ctx, dd_notify **out, char *err, size_t errlen);
/* NOTIFY_SOCKET was set (messages go somewhere, or at least are tried). */
bool dd_notify_enabled(const dd_notify *n);
/* The watchdog interval in ms (WATCHDOG_USEC/2), 0 when off. */
int64_t dd_notify_watchdog_ms(const dd_notify *n);
/* Sends one message, e.g. "READY=1" or "STATUS=owning a/b". */
void dd_notify_send(dd_notify *n, const char *msg);
/* Stops the watchdog; done(arg) runs from the loop once the timer is
 * closed, then n is freed. */
void dd_notify_close(dd_notify *n, void (*done)(void *arg), void *arg);

#endif
