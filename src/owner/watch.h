/* watch.h - the host's loss watch: how the owners of one `run`/`up` learn
 * that they lost a dispatcher, and the choice between the two ways
 * (docs/scale.md, "The loss watch"; docs/ownership.md, "Holding it").
 *
 *   long-poll mode  each owner holds one long poll on its run's close event
 *                   (owner.c): milliseconds for any end of the run. Costs
 *                   the server one held request per dispatcher, and Temporal
 *                   allows ~1,200 per namespace per frontend, fleet-wide.
 *   batch mode      no long polls. Takeovers by another host are told on
 *                   dd:taken (hb_taken.c: milliseconds), runs ended outside
 *                   dispatchd (an operator's terminate, a workflow-mode run
 *                   that fails) are found by this watch's visibility check
 *                   once per heartbeat interval (ExecutionStatus !=
 *                   'Running' AND RunId IN (...), 100 runs per query), and
 *                   the fenced heartbeat stays the backstop. Every 12th
 *                   round drops the status condition: a long-owned run not
 *                   listed at all may be one Temporal lost (owner.h,
 *                   dd_owner_run_unlisted), described at most
 *                   DD_WATCH_DESCRIBES_MAX at a time (below).
 *
 * Which one: every heartbeat interval the watch reads the fleet's size
 * (ZCARD dd:hb:index, one command per host; at least the number of
 * dispatchers configured here, which will all have records). At or above
 * the budget (--long-poll-budget) the host's owners drop their long polls;
 * they take them again only below 90 % of it (budget - max(1, budget/10)),
 * so a fleet at the boundary does not flap. Budget 0: never long-poll.
 *
 * The watch owns nothing of the owners: they must outlive it (close it
 * first). */
#ifndef DD_OWNER_WATCH_H
#define DD_OWNER_WATCH_H

#include "core/ctx.h"
#include "owner/owner.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dd_store;
struct dd_temporal;
typedef struct dd_loss_watch dd_loss_watch;

typedef struct dd_loss_watch_opts {
    int64_t interval_ms; /* the heartbeat interval */
    int64_t budget;      /* fleet records below which owners long-poll; 0: never */
} dd_loss_watch_opts;

/* Presence checks (every 12th round) may find many owned runs unlisted at
 * once (a wiped server, a visibility store that lost its index): each is
 * described by run id, and those describes go ahead of new work in the
 * Temporal client's line (temporal.h, dd_temporal_prioritize). So at most
 * DD_WATCH_DESCRIBES_MAX of the host's owners have such a read in flight;
 * the rest wait, marked, and go in later rounds (one every interval), in
 * turn from where the last round stopped. */
#define DD_WATCH_DESCRIBES_MAX 16

/* Picks up to room indices i < n with want[i] set, in turn from *cursor
 * (wrapping), into picked (room entries at least); returns how many and
 * moves *cursor past the last one picked. Clears nothing. */
size_t dd_watch_spread(const bool *want, size_t n, size_t *cursor, size_t room, size_t *picked);

/* Sets every owner's initial mode (owners not yet started: from the number
 * configured here alone) and returns the watch; owners are borrowed. */
dd_loss_watch *dd_loss_watch_new(const dd_ctx *ctx, struct dd_store *s, struct dd_temporal *t,
                                 dd_owner *const *owners, size_t n, const dd_loss_watch_opts *o);
/* First look now, then every interval. */
void dd_loss_watch_start(dd_loss_watch *w);
/* true: long-poll mode. */
bool dd_loss_watch_long_poll(const dd_loss_watch *w);
/* Stops the timer, cancels its queries; done(arg) (may be NULL) from the
 * loop once nothing of it is in flight, then w is freed. Touches no owner
 * after this call. */
void dd_loss_watch_close(dd_loss_watch *w, void (*done)(void *arg), void *arg);

#endif
