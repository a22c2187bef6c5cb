/* sentinel.h - finding the Redis primary through Redis Sentinel, for the
 * store (store.c owns one dd_sentinel per store when --redis-sentinel is
 * set; nothing else uses it).
 *
 * Two jobs, each on its own short-lived or long-lived connection to a
 * sentinel (never to a data node):
 *
 *   resolve    before every data connection attempt: ask the sentinels in
 *              the order given, one at a time, `SENTINEL
 *              get-master-addr-by-name NAME`; the first address answered
 *              wins. Each sentinel gets one try per round (bounded by the
 *              timeout); a round where none answers fails, and the store's
 *              reconnect backoff (with jitter) spaces the rounds.
 *   subscribe  one connection, to the sentinels in turn, subscribed to
 *              `+switch-master`: a switch of NAME is reported at once
 *              (on_switch), so the store drops its data connection instead
 *              of writing until an error tells it. It reconnects with
 *              backoff and jitter when the sentinel goes away.
 *
 * A sentinel's answer can be behind (a failover it has not seen yet), so
 * the store still checks the node's role in its handshake: this module
 * only says where to look.
 *
 * Sentinel authentication: a password (`requirepass` on the sentinels,
 * AUTH PASSWORD) is supported; sentinel ACL users are not (docs/redis.md).
 *
 * I/O: each connection is a dd_store_conn (store/conn.h); the subscription
 * uses its subscribe mode and a PING every 2 x timeout (an unanswered one
 * moves it to the next sentinel: a silent sentinel would hide every switch).
 * dd_store_subscribe (pubsub.c) is refused on a Sentinel store: it copies
 * one address and would not follow a failover. */
#ifndef DD_STORE_SENTINEL_H
#define DD_STORE_SENTINEL_H

#include "core/ctx.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dd_sentinel dd_sentinel;

/* status 0: host/port is what a sentinel named (valid only during the call).
 * DD_EUNAVAIL: no sentinel answered; -ENOENT: every sentinel that answered
 * does not know the master name; -EACCES: authentication refused by every
 * sentinel that answered. dd_sentinel_last_error says which sentinel said
 * what. */
typedef void dd_sentinel_resolve_cb(int status, const char *host, int port, void *arg);
/* A +switch-master for our master name: the new primary. */
typedef void dd_sentinel_switch_cb(const char *host, int port, void *arg);

typedef struct dd_sentinel_opts {
    const char *addrs;        /* "host:port[,host:port...]" (port default 26379) */
    const char *master_name;  /* required */
    const char *password;     /* the sentinels' password, or NULL */
    int64_t timeout_ms;       /* per sentinel, connect + answer; default 1000 */
    uint64_t seed;            /* subscription backoff jitter; 0: from the kernel */
    dd_sentinel_switch_cb *on_switch;
    void *arg;
} dd_sentinel_opts;

/* Checks a --redis-sentinel list: 0, or DD_EINVAL with the reason in err. */
int dd_sentinel_check_addrs(const char *addrs, char *err, size_t errlen);

/* Parses the list, starts the subscription. 0 or DD_EINVAL (err). */
int dd_sentinel_open(const dd_ctx *ctx, const dd_sentinel_opts *opts, dd_sentinel **out,
                     char *err, size_t errlen);
/* Starts a resolution round; cb runs exactly once, later, from the loop,
 * unless dd_sentinel_cancel or dd_sentinel_close comes first. A round
 * already running is cancelled (its cb never runs). */
void dd_sentinel_resolve(dd_sentinel *sn, dd_sentinel_resolve_cb *cb, void *arg);
void dd_sentinel_cancel(dd_sentinel *sn);
/* Cancels everything; frees once its handles have closed. Safe from a cb. */
void dd_sentinel_close(dd_sentinel *sn);
/* "a:1,b:2" as given, and the master name (for messages). */
const char *dd_sentinel_addrs(const dd_sentinel *sn);
const char *dd_sentinel_master_name(const dd_sentinel *sn);
/* What the last failed round heard from each sentinel ("" if none). */
const char *dd_sentinel_last_error(const dd_sentinel *sn);

#endif
