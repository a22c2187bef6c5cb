/* store_int.h - internals shared by store.c (connection, requests) and
 * records.c (scripts, operations). Not installed, not for other modules.
 *
 * A request (dd_store__req) is one user operation: one or more Redis
 * commands, one timeout timer, one user callback. The connection
 * (store/conn.h) keeps a pointer to it per command until the reply comes
 * back (or the connection goes, and store.c clears what it owed), and the
 * timer handle must be closed before its memory goes, so a request lives
 * until all three are over: the user has been answered (done), no reply is
 * owed (pending == 0), and the timer has closed. That is what makes a late
 * reply after a timeout harmless: it finds a request marked done and only
 * drops a reference. */
#ifndef DD_STORE_STORE_INT_H
#define DD_STORE_STORE_INT_H

#include "store/store.h"

#include "core/backoff.h"
#include "metrics/metrics.h"

#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct dd_store_conn dd_store_conn;

typedef struct dd_store__req dd_store__req;

enum { DD_STORE__DOWN, DD_STORE__CONNECTING, DD_STORE__READY, DD_STORE__CLOSING };

/* Shared with pubsub.c, which opens its own connections to the same
 * server with the same credentials and timeouts. */
struct dd_store {
    dd_ctx ctx;
    dd_store_url url;
    char *password; /* effective one (opts or URL); NULL: no AUTH */
    char *user;     /* effective ACL user (opts or URL); NULL: AUTH password */
    struct dd_tls_ctx *tls; /* rediss://: shared with the connections; NULL: plain */
    int64_t cmd_timeout_ms, connect_timeout_ms;
    int64_t reconnect_base_ms, reconnect_cap_ms;
    uint64_t seed;
    size_t max_pending;
    void (*on_state)(int status, void *arg);
    void *state_arg;

    int state;
    dd_store_conn *conn;
    uint64_t gen;
    dd_store__req *handshake;
    void (*close_cb)(void *arg); /* dd_store_close's done */
    void *close_arg;
    dd_backoff backoff;
    uv_timer_t conn_timer;
    bool conn_timer_closed;

    dd_metric *m_up, *m_errors; /* NULL without ctx->metrics */

    /* SENTINEL: NULL without --redis-sentinel (store.c, sentinel.h) */
    struct dd_sentinel *sentinel;
    bool resolved; /* url.host/port is the sentinels' fresh answer */
    struct dd_store_sub *subs; /* its subscriptions, told where the primary is */
    int wait_replicas;
    dd_metric *m_readonly, *m_switches, *m_wait_short;

    dd_store__req *head, *tail; /* every live request, in submission order */
    size_t nreqs;
    char last_error[512];
};

typedef struct dd_store__op {
    const char *name;
    /* One reply arrived (never NULL, never an error reply: those finish the
     * request before). May send more commands or call dd_store__finish. */
    void (*reply)(dd_store__req *r, redisReply *rep);
    /* Answers the user: status 0 with the result built so far, or an error
     * with res NULL. Called exactly once. */
    void (*deliver)(dd_store__req *r, int status);
    /* The Redis commands (also those its scripts run) and the keys it
     * touches: a NOPERM names them, since Redis does not say which command
     * of a script or which key was refused (docs/redis.md has the rules). */
    const char *uses;
} dd_store__op;

struct dd_store__req {
    dd_store *s;
    dd_store__req *prev, *next;
    const dd_store__op *op;
    uv_timer_t timer;
    unsigned pending;  /* replies the connection still owes */
    unsigned nreplies; /* replies received so far (they come in order) */
    unsigned info_reply; /* handshake: which reply (1-based) is INFO cluster's */
    unsigned role_reply; /* handshake with Sentinel: INFO replication's; 0 none */
    unsigned wait_reply; /* claim/heartbeat with --redis-wait-replicas: WAIT's; 0 none */
    uint64_t gen;      /* connection the commands went out on */
    bool done, closing, internal;
    /* commands formatted while not yet connected, sent once ready */
    char **queued;
    size_t *queued_len;
    size_t nqueued;

    void (*cb)(void); /* the user callback, cast back by op->deliver */
    void *arg;

    /* per-operation state (only what the op uses is set) */
    int status;       /* result code decided by a reply (e.g. DD_EFENCED) */
    dd_store_owner owner;
    char *str[2];     /* owned strings for owner results */
    dd_store_hb *recs; /* owned, with strdup'd strings */
    size_t nrecs;
    int64_t total, stale;
    int64_t up_since_ms; /* range queries: when Redis (re)started */
    dd_store_worker *workers; /* owned, with strdup'd server ids */
    size_t nworkers;
};

/* Allocates a request for op on s; counted by s until its timer closes. */
dd_store__req *dd_store__req_new(dd_store *s, const dd_store__op *op, void (*cb)(void), void *arg);
/* Adds one command (NULL-terminated string arguments): sends it now when
 * ready, keeps it for later while connecting. 0 or DD_EUNAVAIL. */
int dd_store__cmd(dd_store__req *r, ...);
int dd_store__cmdv(dd_store__req *r, int argc, const char **argv);
/* Starts the timeout: call once all first-round commands are added. On
 * error instead, call dd_store__abort (no user callback). */
void dd_store__submit(dd_store__req *r);
void dd_store__abort(dd_store__req *r);
/* Answers the user once (later calls are ignored) and stops the timer. */
void dd_store__finish(dd_store__req *r, int status);
/* A synchronous refusal, before any request exists. */
int dd_store__check(const dd_store *s);
/* Frees records parse_record filled (records.c: it knows every field). */
void dd_store__free_recs(dd_store_hb *recs, size_t n);
/* Maps an error reply to a code and records it as the last error. */
int dd_store__reply_error(dd_store *s, const dd_store__op *op, const redisReply *rep);

/* Builds "dd:<kind>:{id}" into buf; NULL when id is empty or too long
 * (Temporal caps workflow ids at 1000 bytes). */
#define DD_STORE__KEYMAX 1100
const char *dd_store__key(char *buf, const char *kind, const char *id);
/* "host:port" or "unix:path", for messages. */
const char *dd_store__addr(const dd_store *s, char *buf, size_t len);
struct dd_log *dd_store__log(const dd_store *s);
/* SENTINEL: WAIT after a fenced write (records.c): adds "WAIT n timeout" to
 * r when --redis-wait-replicas is set (r->wait_reply says which reply), and
 * judges its reply: 0, or DD_ETIMEOUT when fewer replicas confirmed. */
int dd_store__add_wait(dd_store__req *r);
/* SENTINEL: the primary is (now) at host:port: every subscription of s
 * follows (pubsub.c); one connected elsewhere reconnects at once. */
void dd_store__subs_primary(dd_store *s, const char *host, int port);
/* The store is going: its subscriptions keep their last address. */
void dd_store__subs_detach(dd_store *s);
int dd_store__wait_result(dd_store__req *r, const redisReply *rep);

#endif
