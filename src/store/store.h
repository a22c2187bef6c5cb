/* store.h - dispatchd's Redis store: heartbeat records, fencing, leases and
 * the worker registry, over one Redis connection on the caller's loop
 * (src/store/conn.h: our transport, hiredis' command formatter and reply
 * reader), plus publish/subscribe (a subscription has a connection of its
 * own).
 *
 * Key schema (every key of one dispatcher carries the hash tag {wid}, so on
 * Redis Cluster they share a slot):
 *
 *   dd:hb:{wid}       hash   workflow_id run_id server_id project queue
 *                            hb_ms (Redis's clock when written) ttl_ms epoch
 *   dd:epoch:{wid}    string fencing counter, INCR'd by every claim; never
 *                            deleted, so epochs stay monotonic across
 *                            release/cleanup (bounded: workflow ids are
 *                            deterministic per project/queue)
 *   dd:workers:{wid}  zset   member = worker server id, score = last hb ms
 *                            (Redis's clock)
 *   dd:hb:index       zset   member = wid, score = hb_ms (one global index)
 *   dd:lease:{name}   string holder, SET NX PX (short reconciler leases)
 *   dd:id_prefix      string the fleet's workflow ID prefix (--id-prefix),
 *                            written by the first host, checked by every run
 *
 * No key has a TTL: staleness is decided by the reconciler from hb_ms, never
 * by expiry (an expired key would hide an orphan workflow forever).
 *
 * One clock: heartbeat times are written from Redis's TIME inside the
 * scripts that write them, and every read that judges age (get, stale,
 * list) returns Redis's TIME from the same atomic step (now_ms), so the
 * hosts' wall clocks never enter a staleness decision. Time arguments
 * named now_ms accept 0 for "the server's clock" (every daemon path);
 * another value writes or judges with the caller's time (tests, tools).
 *
 * Cluster trade-off: the owner scripts write dd:hb:{wid} and dd:hb:index in
 * one EVAL, which is atomic and correct on a single node (or a replicated
 * primary) but cross-slot on Cluster. On Cluster the index write would have
 * to become a second call after the fenced script, and a crash between the
 * two leaves the index behind the hash; the reconciler tolerates that (an
 * index entry without a hash is reported as malformed and its
 * compare-and-delete removes it). We run single-node today: a Cluster node
 * is refused at connect (below; docs/redis.md says what support would need).
 *
 * Fencing: an owner can be paused (SIGSTOP, GC, a VM migration) or cut off
 * long enough for the reconciler to declare it stale and for another host
 * to take over. When it wakes up it still believes it owns the dispatcher
 * and keeps heartbeating; if those writes landed, the record would point at
 * a run that was terminated and the new owner's record would be
 * overwritten. So every owner write is a Lua script that first compares the
 * stored run_id AND epoch with the caller's and refuses otherwise
 * (DD_EFENCED); the epoch comes from claim, which increments it atomically
 * with the takeover write. The script runs atomically on the server, so
 * there is no window between the check and the write, and no clock is
 * involved in the decision.
 *
 * Calling convention: every operation either returns a negative error
 * synchronously (DD_EINVAL bad arguments, DD_EUNAVAIL not connected,
 * DD_EBUSY too many operations in flight, DD_ECANCELED store closing) and
 * never calls cb, or returns 0 and calls cb exactly once, later, from the
 * loop. Result pointers passed to callbacks
 * are owned by the store and valid only during the callback: copy what you
 * keep. Errors delivered to callbacks: DD_ETIMEOUT (no reply within the
 * command timeout; the write may or may not have happened), DD_EUNAVAIL
 * (connection lost), -EACCES (authentication refused: NOAUTH, WRONGPASS),
 * -EPERM (NOPERM: the ACL user may not run a command or touch a key the
 * operation needs; dd_store_last_error names the operation, its commands
 * and keys), -ENOTSUP (the server is a Redis Cluster node, or answered
 * -MOVED/-ASK/-CLUSTERDOWN: not supported, see docs/redis.md), DD_EPROTO
 * (an error reply or an unexpected shape), DD_ECANCELED (dd_store_close),
 * -EACCES also for TLS: the server's certificate failed verification (wrong
 * CA, name mismatch) or the server refused ours or wanted one we do not
 * have; dd_store_last_error names which and the option to fix.
 * plus the per-operation codes below. A timeout also drops the connection (replies
 * come in order, so everything behind the missing one is stuck too) and
 * reconnects; a reply arriving after its timeout is ignored.
 *
 * Redis Cluster is refused, not half-supported: the handshake asks INFO
 * cluster and a node with cluster_enabled:1 fails the connection with
 * -ENOTSUP (retried with the usual backoff, so a daemon stays not ready
 * and says why); a -MOVED/-ASK/-CLUSTERDOWN reply later (a proxy that
 * hides INFO) fails the operation the same way and drops the connection
 * rather than let callers retry into a redirect storm.
 *
 * Sentinel (opts.sentinels; sentinel.h): a READONLY reply (we are talking
 * to a replica: a switch we have not heard of) fails that operation with
 * DD_EUNAVAIL and drops the connection, so the reconnect asks the sentinels
 * again; one log line per dropped connection, not one per operation.
 * Without Sentinel a READONLY drops and reconnects the same way (the URL's
 * name may move to the new primary).
 *
 * Metrics (when ctx->metrics is set): dispatchd_redis_connected (gauge),
 * dispatchd_redis_command_errors_total{error=timeout|unavailable|auth|noperm|
 * cluster|sentinel|protocol}, dispatchd_redis_readonly_total,
 * dispatchd_redis_primary_switches_total and dispatchd_redis_wait_short_total. */
#ifndef DD_STORE_STORE_H
#define DD_STORE_STORE_H

#include "core/ctx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- URL ---------------------------------------------------------------- */

/* redis://[[user]:password@]host[:port][/db]   (host may be [v6addr];
 *                                               user: a Redis 6 ACL user;
 *                                               port default 6379, db 0)
 * rediss://...                                  the same over TLS (>= 1.2),
 *                                               the server's certificate
 *                                               checked against the host
 * unix:///path/to/redis.sock[?db=N]
 * The password may be %-encoded.
 * A host name is resolved on every (re)connect, off the loop
 * (uv_getaddrinfo), and each of its addresses is tried in order
 * (src/store/conn.h). */
typedef struct dd_store_url {
    char *host;     /* NULL for unix:// */
    int port;
    char *path;     /* unix socket path, NULL for redis:// */
    int db;
    char *user;     /* NULL unless given */
    char *password; /* NULL unless given; a secret */
    bool tls;       /* rediss:// */
} dd_store_url;

/* Fills out (owned by the caller: dd_store_url_release) or returns DD_EINVAL
 * with a message in err. Messages never quote the password. */
int dd_store_url_parse(const char *url, dd_store_url *out, char *err, size_t errlen);
void dd_store_url_release(dd_store_url *u);

/* ---- connection --------------------------------------------------------- */

typedef struct dd_store dd_store;

typedef struct dd_store_opts {
    const char *url;             /* required */
    const char *password;        /* wins over the URL's; NULL: the URL's, if any */
    const char *username;        /* ACL user (AUTH user password); wins over the
                                  * URL's; NULL or "": the URL's, if any. Needs a
                                  * password (DD_EINVAL otherwise) */
    int64_t cmd_timeout_ms;      /* per operation; default 2000 */
    int64_t connect_timeout_ms;  /* connect + AUTH + SELECT + PING; default cmd_timeout_ms */
    int64_t reconnect_base_ms;   /* default 100 */
    int64_t reconnect_cap_ms;    /* default 5000 */
    uint64_t seed;               /* jitter seed; 0: from the kernel */
    size_t max_pending;          /* live operations before DD_EBUSY; default 65536 */
    /* rediss:// only (DD_EINVAL with another scheme): the CA bundle to verify
     * the server (NULL: the system store), and a client certificate chain
     * and key for mTLS (key NULL: in cert_file). Read at open; a problem
     * with a file is DD_EINVAL naming it. OpenSSL is never initialised for
     * redis:// and unix://. */
    const char *tls_ca_file, *tls_cert_file, *tls_key_file;
    /* Redis Sentinel (docs/redis.md). With sentinels set, url must be NULL:
     * the primary of master_name is asked from the sentinels before every
     * connect (and again on every reconnect), the node must say role:master
     * in the handshake, and a +switch-master drops the connection at once.
     * db, username and password then come from the fields here. */
    const char *sentinels;         /* "host:port[,host:port...]" (port default 26379) */
    const char *master_name;
    const char *sentinel_password; /* AUTH to the sentinels; NULL: none */
    int db;                        /* with sentinels only (a URL carries its own) */
    /* > 0: a claim or heartbeat counts only once WAIT wait_replicas confirms
     * it (timeout: half the command timeout); fewer replicas fail it with
     * DD_ETIMEOUT (written on the primary, maybe not on a replica). */
    int wait_replicas;
    /* Called with 0 whenever the connection becomes ready, and with a
     * negative error when it is lost or an attempt fails. May be NULL. */
    void (*on_state)(int status, void *arg);
    void *state_arg;
} dd_store_opts;

/* Parses the URL, registers the password as a log secret and starts
 * connecting on ctx->loop. ctx (and what it points to) is borrowed and must
 * outlive the store; opts is copied. Operations issued while a connection
 * attempt is in progress (e.g. right after open) wait for it, bounded by
 * their timeout; between attempts (reconnect backoff) they are refused at
 * once with DD_EUNAVAIL. on_state may already run inside this call. Returns
 * 0 or DD_EINVAL (message in err). */
int dd_store_open(const dd_ctx *ctx, const dd_store_opts *opts, dd_store **out, char *err,
                  size_t errlen);
/* Closes the connection at once (no reply or timeout is delivered after
 * this), refuses new operations (DD_ECANCELED, synchronously), and answers
 * every outstanding operation with DD_ECANCELED from the loop, never inside
 * this call; then frees the store and calls done(arg) (may be NULL) from
 * the loop. So what an outstanding callback touches must live until done
 * (or until the loop has run). Safe to call from a callback; a second call
 * is a no-op. */
void dd_store_close(dd_store *s, void (*done)(void *arg), void *arg);
bool dd_store_ready(const dd_store *s);
/* Replaces opts.on_state (the one listener; NULL: none). For a listener
 * made after the store (run's heartbeat group: a Redis that comes back
 * gets the heartbeats that failed at once, not one interval later). */
void dd_store_set_on_state(dd_store *s, void (*on_state)(int status, void *arg), void *arg);
/* The last connection/server error in words ("" if none). Owned by s. */
const char *dd_store_last_error(const dd_store *s);

/* Low-level PING; handy for health checks and tests. */
typedef void dd_store_status_cb(int status, void *arg);
int dd_store_ping(dd_store *s, dd_store_status_cb *cb, void *arg);

/* ---- heartbeat records -------------------------------------------------- */

typedef struct dd_store_hb {
    const char *workflow_id; /* always set (from the index for a missing hash) */
    const char *run_id, *server_id, *project, *queue; /* NULL when missing */
    const char *first_run_id, *wf_type; /* workflow mode only (the chain's first run,
                                         * the user's type); NULL otherwise */
    const char *nonce;            /* the claiming process's nonce, or NULL */
    int64_t hb_ms, ttl_ms, epoch; /* 0 when missing or not a number */
    int64_t now_ms;               /* Redis's clock when this was read (get, lists) */
    int64_t up_since_ms;          /* when Redis (re)started, by its uptime; 0 unknown */
    bool malformed;               /* something above is missing or not numeric */
    const char *problem;          /* why, when malformed ("missing 'run_id'") */
} dd_store_hb;

/* The time a record's age counts from: its last heartbeat, or when Redis
 * (re)started if that is later (nobody could heartbeat while it was down).
 * Every staleness judgement uses this, never hb_ms alone. */
static inline int64_t dd_store_hb_fresh_since(const dd_store_hb *h)
{
    return h->hb_ms > h->up_since_ms ? h->hb_ms : h->up_since_ms;
}

typedef struct dd_store_hb_list {
    const dd_store_hb *items;
    size_t n;
    int64_t total; /* all records in the index (dispatchers_active) */
    int64_t stale; /* all older than the threshold, not just this batch */
    int64_t now_ms; /* Redis's clock the query judged by */
    int64_t up_since_ms; /* when Redis (re)started (stale queries count nothing
                          * older than that); 0 unknown */
} dd_store_hb_list;

/* The owner's view. For claim: the new epoch (holder = the caller). For a
 * DD_EFENCED heartbeat/release: who holds the record now (strings NULL if
 * the record is gone). */
typedef struct dd_store_owner {
    int64_t epoch;
    int64_t now_ms; /* claim/heartbeat: the hb_ms written (Redis's clock) */
    const char *server_id;
    const char *run_id;
} dd_store_owner;

typedef void dd_store_owner_cb(int status, const dd_store_owner *res, void *arg);
typedef void dd_store_hb_cb(int status, const dd_store_hb *rec, void *arg);
typedef void dd_store_hb_list_cb(int status, const dd_store_hb_list *res, void *arg);

typedef struct dd_store_claim_args {
    const char *workflow_id, *run_id, *server_id, *project, *queue;
    int64_t now_ms; /* 0: Redis's clock (daemons); else a chosen time (tests) */
    int64_t ttl_ms; /* the stale threshold the owner heartbeats against */
    const char *first_run_id; /* workflow mode: the chain's first run; NULL otherwise */
    const char *wf_type;      /* workflow mode: the user's workflow type; NULL otherwise */
    const char *nonce;        /* the claiming process (not its server id, which two
                               * processes can share); NULL: none */
} dd_store_claim_args;

/* After a takeover: epoch := epoch + 1, record := args, index updated.
 * Unconditional by design (the takeover itself is decided by Temporal's
 * workflow-id uniqueness, not here); res->epoch is the fencing token for
 * every later owner write. */
int dd_store_claim(dd_store *s, const dd_store_claim_args *a, dd_store_owner_cb *cb, void *arg);
/* Refreshes hb_ms/ttl_ms only if the record still has run_id and epoch;
 * else DD_EFENCED with the current holder in res (the record is untouched). */
int dd_store_heartbeat(dd_store *s, const char *workflow_id, const char *run_id, int64_t epoch,
                       int64_t now_ms, int64_t ttl_ms, dd_store_owner_cb *cb, void *arg);
/* The same, for a chain that continued as new: the record may still name an
 * earlier run of the chain whose first run is first_run_id (as claimed);
 * with the same epoch it then moves to run_id in the same fenced step.
 * first_run_id NULL: plain heartbeat. */
int dd_store_heartbeat_chain(dd_store *s, const char *workflow_id, const char *run_id,
                             const char *first_run_id, int64_t epoch, int64_t now_ms,
                             int64_t ttl_ms, dd_store_owner_cb *cb, void *arg);
/* Many heartbeats in one script call (one round trip, one command for
 * Redis to parse): the host's owners beat together once per interval
 * (owner/heartbeat.c). Each item is fenced on its own, exactly as
 * dd_store_heartbeat_chain (its run id, or its chain's first run, AND its
 * epoch): one fenced-out item is answered DD_EFENCED with its holder and
 * changes nothing for the others. Every item's cb is called exactly once,
 * in item order, with that item's result (an error of the whole call, a
 * timeout or a lost connection, goes to every item). The hb_ms written is
 * one TIME for the batch. At most DD_STORE_BEAT_MAX items (DD_EINVAL
 * beyond): a longer list is several calls, so one script never holds Redis
 * for long (about 2 us per item). */
#define DD_STORE_BEAT_MAX 256
typedef struct dd_store_beat {
    const char *workflow_id, *run_id;
    const char *first_run_id; /* NULL: plain heartbeat */
    int64_t epoch;
    int64_t ttl_ms;
    dd_store_owner_cb *cb;
    void *arg;
} dd_store_beat;
int dd_store_heartbeat_batch(dd_store *s, const dd_store_beat *items, size_t n, int64_t now_ms);
/* Deletes record + index entry only if still ours; DD_EFENCED otherwise. */
int dd_store_release(dd_store *s, const char *workflow_id, const char *run_id, int64_t epoch,
                     dd_store_owner_cb *cb, void *arg);
/* The owner lets go of the record: a graceful release once its child has
 * stopped, or the last will of a dispatchd that died (src/child/will.c).
 * Fenced like heartbeat (run_id or an earlier run of the chain
 * first_run_id, and epoch): DD_EFENCED with the holder when a newer owner
 * has it (untouched). A graceful release deletes it (its run is already
 * terminated); expire (a last will, which cannot terminate the run) sets
 * its heartbeat to 0 instead, so the run, still running, is ended by
 * whoever takes over or by the reconciler, as after a timeout. With
 * ack_holder, the handoff flag of run_id (DD_STORE_LEASE_HANDOFF) is set
 * too, fenced or not. Then PUBLISH workflow_id on
 * DD_STORE_CHANNEL_RELEASED: standbys try at once. */
#define DD_STORE_CHANNEL_RELEASED "dd:released"
/* After a new owner's claim has landed it publishes "<workflow id>\n<run
 * id>\n<epoch>" here (owner/hb_taken.c): a host that owns that dispatcher
 * under another run reads the record and lets go if it names a newer epoch
 * (a message is only ever a reason to look, never trusted by itself). */
#define DD_STORE_CHANNEL_TAKEN "dd:taken"
/* The hb_ms an expired record carries (the let_go script in records.c writes
 * it): readers show it as released by a last will rather than as a
 * heartbeat age since 1970 (status, reconciler). */
#define DD_STORE_HB_RELEASED 0
typedef struct dd_store_let_go_args {
    const char *workflow_id, *run_id;
    const char *first_run_id; /* workflow mode: the chain; NULL otherwise */
    int64_t epoch;
    bool expire;              /* stale now instead of deleted (a last will) */
    const char *ack_holder;   /* the handoff flag's holder (server id); NULL: no flag */
    int64_t ack_ttl_ms;       /* how long the flag lives (2 thresholds) */
} dd_store_let_go_args;
int dd_store_let_go(dd_store *s, const dd_store_let_go_args *a, dd_store_owner_cb *cb, void *arg);
/* For the reconciler, after terminating the stale run: deletes the record
 * and its index entry only if it still has run_id and hb_ms as classified.
 * 0 deleted, DD_ECONFLICT refreshed or re-claimed meanwhile (kept),
 * DD_ENOTFOUND already gone (a dangling index entry is removed). */
int dd_store_compare_and_delete(dd_store *s, const char *workflow_id, const char *run_id,
                                int64_t hb_ms, dd_store_status_cb *cb, void *arg);
/* Records with hb_ms < now - threshold_ms (strictly older than the
 * threshold; a heartbeat from the future is never stale), oldest first, at
 * most limit (> 0), now being Redis's clock (now_ms 0) or now_ms. One script
 * (TIME, ZRANGEBYSCORE, ZCARD, ZCOUNT), then one pipelined HGETALL per
 * candidate: cost follows the candidates, not the total. The
 * hashes are read after the range, so a record refreshed in between shows
 * its new hb_ms: classify on the record, not on its index position. */
int dd_store_stale(dd_store *s, int64_t now_ms, int64_t threshold_ms, size_t limit,
                   dd_store_hb_list_cb *cb, void *arg);
/* Every record via the index, oldest heartbeat first, at most limit (0: all). */
int dd_store_list(dd_store *s, size_t limit, dd_store_hb_list_cb *cb, void *arg);
/* One record; DD_ENOTFOUND if there is none. */
int dd_store_get(dd_store *s, const char *workflow_id, dd_store_hb_cb *cb, void *arg);
/* Many records in one EVAL (one TIME and INFO for all, an HGETALL each):
 * each item's cb runs once, in order, with what dd_store_get would give it
 * (0 and the record, DD_ENOTFOUND, or the batch's error). At most
 * DD_STORE_GET_MAX items; DD_EINVAL (no cb runs) for more, none, an empty
 * id or a missing cb. A host's owners read their records so after a
 * resubscription (owner/hb_batch.c): 1,000 of them are 4 commands, not
 * 1,000. */
#define DD_STORE_GET_MAX 256
typedef struct dd_store_get_item {
    const char *workflow_id; /* copied */
    dd_store_hb_cb *cb;
    void *arg;
} dd_store_get_item;
int dd_store_get_batch(dd_store *s, const dd_store_get_item *items, size_t n);

/* The oldest record whose heartbeat is at or after min_hb_ms (one
 * ZRANGEBYSCORE min +inf LIMIT 0 1 WITHSCORES on the index): the reconciler
 * asks for the oldest non-stale heartbeat to know when the next one can turn
 * stale. cb gets 0 with the workflow id and hb_ms, or DD_ENOTFOUND when
 * there is none. */
/* The fleet's workflow ID prefix: written as prefix when the fleet has none
 * yet; cb gets the one the fleet uses (compare it with yours: two prefixes
 * in one fleet would be two dispatchers per (project, queue)). */
typedef void dd_store_id_prefix_cb(int status, const char *fleet_prefix, void *arg);
int dd_store_id_prefix(dd_store *s, const char *prefix, dd_store_id_prefix_cb *cb, void *arg);

typedef void dd_store_oldest_cb(int status, const char *workflow_id, int64_t hb_ms, void *arg);
int dd_store_oldest(dd_store *s, int64_t min_hb_ms, dd_store_oldest_cb *cb, void *arg);

/* How many records the whole fleet has (ZCARD dd:hb:index: every host's
 * dispatchers, owned or stale, one command): the loss watch decides from
 * it whether owners may hold long polls (owner/watch.h). */
typedef void dd_store_count_cb(int status, int64_t n, void *arg);
int dd_store_fleet_size(dd_store *s, dd_store_count_cb *cb, void *arg);

/* ---- publish / subscribe ------------------------------------------------ */

/* PUBLISH channel message: cb gets the number of subscribers that received
 * it (across the server). Redis keeps no message: one published while a
 * subscriber is disconnected never reaches it (see dd_store_subscribe). */
typedef void dd_store_publish_cb(int status, int64_t receivers, void *arg);
int dd_store_publish(dd_store *s, const char *channel, const char *message,
                     dd_store_publish_cb *cb, void *arg);

/* A subscription to channels on a connection of its own (a subscribed
 * connection can run nothing else), to the store's server with the store's
 * credentials and timeouts, copied at subscribe: the store and the
 * subscription may close in either order. It reconnects with the store's
 * backoff and subscribes again after every reconnect, and sends a PING
 * every command timeout (1 s at least): a PING unanswered by the next one
 * drops the connection (a silent network would leave it deaf).
 *
 * Callbacks run from the loop, never inside a dd_store_* call:
 *   on_message  each message on one of the channels (data is binary, len
 *               bytes, NUL-terminated too; valid during the call);
 *   on_state    0 once every channel is subscribed (after the first
 *               connect and after every reconnect), a negative error when
 *               the connection was lost or an attempt failed (-EACCES
 *               AUTH refused, -EPERM the ACL user may not subscribe to the
 *               channel, DD_EUNAVAIL, DD_ETIMEOUT). Messages published
 *               while not subscribed are lost: after a 0 that follows an
 *               error, look again at whatever the messages announce.
 * channels and their strings are copied. */
typedef struct dd_store_sub dd_store_sub;
typedef struct dd_store_sub_opts {
    const char *const *channels;
    size_t nchannels; /* >= 1 */
    void (*on_message)(const char *channel, const char *data, size_t len, void *arg);
    void (*on_state)(int status, void *arg); /* may be NULL */
    void *arg;
} dd_store_sub_opts;

/* On a store opened through Sentinel the subscription follows the primary:
 * it subscribes where the sentinels' latest answer points, and moves (a
 * new connection, subscribed again) whenever the store hears of a new
 * primary; after the store closed it keeps the last address.
 * 0, DD_EINVAL (no channel, an empty one, no on_message) or DD_ECANCELED
 * (the store is closing), with the reason in err. */
int dd_store_subscribe(dd_store *s, const dd_store_sub_opts *opts, dd_store_sub **out,
                       char *err, size_t errlen);
bool dd_store_sub_ready(const dd_store_sub *sub);
/* No callback but done (may be NULL) runs after this; done runs from the
 * loop once the subscription's handles are closed, then sub is freed. */
void dd_store_sub_close(dd_store_sub *sub, void (*done)(void *arg), void *arg);

/* ---- leases ------------------------------------------------------------- */

/* Lease names shared across modules (printf formats, workflow id first):
 * one per dispatcher guards the termination of its stale run, taken by a
 * failing-over standby and by the reconciler alike, so only one of them
 * ends it; the handoff flag says an ex-owner's child has stopped. */
#define DD_STORE_LEASE_FAILOVER "failover:%s"
#define DD_STORE_LEASE_HANDOFF "handoff:%s:%s"

/* SET dd:lease:{name} holder NX PX ttl_ms: 0 acquired, DD_EBUSY held. */
int dd_store_lease_acquire(dd_store *s, const char *name, const char *holder, int64_t ttl_ms,
                           dd_store_status_cb *cb, void *arg);
/* Whether the lease is held by anyone: 0 held, DD_ENOTFOUND free. Also
 * used as a short-lived flag (the owner handoff acknowledgement). */
int dd_store_lease_held(dd_store *s, const char *name, dd_store_status_cb *cb, void *arg);
/* Deletes the lease only if holder still holds it: 0, or DD_ENOTFOUND. */
int dd_store_lease_release(dd_store *s, const char *name, const char *holder,
                           dd_store_status_cb *cb, void *arg);

/* ---- worker registry ---------------------------------------------------- */

typedef struct dd_store_worker {
    const char *server_id;
    int64_t hb_ms;
} dd_store_worker;

typedef struct dd_store_workers {
    const dd_store_worker *items;
    size_t n;
} dd_store_workers;

typedef void dd_store_workers_cb(int status, const dd_store_workers *res, void *arg);

/* Register or refresh (ZADD, now_ms 0: Redis's clock). Workers are not
 * owners: not fenced. */
int dd_store_worker_heartbeat(dd_store *s, const char *workflow_id, const char *server_id,
                              int64_t now_ms, dd_store_status_cb *cb, void *arg);
/* The worker's heartbeat: the same ZADD, and in the same step the owner
 * record's ttl_ms (the threshold the owner evicts workers by). cb gets
 * added = true when the worker was not in the set (first beat, or evicted
 * since the last one) and owner_ttl_ms (0: no owner record, or no ttl). */
typedef void dd_store_worker_beat_cb(int status, bool added, int64_t owner_ttl_ms, void *arg);
int dd_store_worker_beat(dd_store *s, const char *workflow_id, const char *server_id,
                         int64_t now_ms, dd_store_worker_beat_cb *cb, void *arg);
int dd_store_worker_deregister(dd_store *s, const char *workflow_id, const char *server_id,
                               dd_store_status_cb *cb, void *arg);
int dd_store_worker_list(dd_store *s, const char *workflow_id, dd_store_workers_cb *cb,
                         void *arg);
/* The owner (run_id, epoch; fenced like heartbeat) removes at most
 * max_batch workers with hb_ms < older_than_ms, oldest first, and gets them
 * back. DD_EFENCED if it no longer owns the dispatcher. */
int dd_store_worker_evict(dd_store *s, const char *workflow_id, const char *run_id,
                          int64_t epoch, int64_t older_than_ms, size_t max_batch,
                          dd_store_workers_cb *cb, void *arg);

#endif
