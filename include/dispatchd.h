/* dispatchd.h - the public C API for worker processes.
 *
 * A worker registers with a dispatcher (server id + the dispatcher's
 * project/queue), heartbeats while it lives, and deregisters on a clean
 * exit. The dispatcher's owner evicts workers whose heartbeat is older than
 * the stale threshold. Link with libdispatchd.a, libuv, hiredis and OpenSSL
 * (for rediss://; cc prog.c libdispatchd.a $(pkg-config --libs libuv hiredis
 * openssl); the test
 * `embed` builds tests/embed.c exactly so). Installed (`cmake --install`,
 * the .deb): cc prog.c $(pkg-config --cflags --libs --static dispatchd),
 * as the test `install` does.
 *
 * Two ways to run it:
 *  - on your own libuv loop: dispatchd_worker_start / dispatchd_worker_stop;
 *  - blocking: dispatchd_worker_run, until *stop becomes non-zero (set it
 *    from a signal handler).
 * Errors: functions return 0 or a negative code, either -errno or one of the
 * DISPATCHD_E* codes below (dispatchd_strerror names both), and fill err
 * with a sentence for humans.
 *
 * SIGPIPE: the Redis connection writes to sockets; a peer that closed makes
 * the kernel raise SIGPIPE, whose default action ends the process. Ignore it
 * in your program (signal(SIGPIPE, SIG_IGN)) before starting a worker, as
 * dispatchd does. */
#ifndef DISPATCHD_H
#define DISPATCHD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (the same values as inside dispatchd; far below the errno
 * range, so -errno and these never collide). */
enum {
    DISPATCHD_EINVAL = -10001,      /* bad options */
    DISPATCHD_ETIMEOUT = -10002,    /* an operation exceeded its deadline */
    DISPATCHD_EPROTO = -10003,      /* Redis answered something unexpected */
    DISPATCHD_EUNAVAIL = -10009,    /* Redis is down or unreachable */
    DISPATCHD_ECANCELED = -10010,   /* stopped before it finished */
};

/* A static string naming err (-errno or any dispatchd code). Never NULL. */
const char *dispatchd_strerror(int err);

struct uv_loop_s;
typedef struct dispatchd_worker dispatchd_worker;

typedef struct dispatchd_worker_opts {
    const char *redis_url;        /* redis://[[user]:pw@]host:port/db, rediss://... (TLS)
                                   * or unix:///path */
    const char *redis_password;   /* or NULL (never logged) */
    const char *project;          /* the dispatcher this worker serves */
    const char *queue;
    const char *server_id;        /* this worker's identity */
    int64_t heartbeat_interval_ms; /* default 5000; lowered to a third of the owner's
                                   * threshold (its record's ttl_ms) when that is shorter */
    FILE *log;                    /* logfmt lines go here; NULL: stderr */
    const char *id_prefix;        /* the fleet's --id-prefix; NULL: "dispatcher-" */
    const char *redis_username;   /* Redis 6 ACL user (AUTH user pw), needs a password;
                                   * NULL: the URL's user, if any */
    /* rediss:// only (an error with another scheme): the CA bundle that verifies
     * the server (NULL: the system store); a client certificate chain and key for
     * mTLS (key NULL: in the cert file). The server's certificate must name the
     * URL's host; TLS 1.2 at least. */
    const char *redis_ca_file;
    const char *redis_cert_file;
    const char *redis_key_file;
    /* Redis Sentinel (docs/redis.md): with redis_sentinel set, redis_url must
     * be NULL; the primary of redis_master_name is asked from the sentinels
     * before every connect and followed across failovers. */
    const char *redis_sentinel;          /* "host:port[,host:port...]" or NULL */
    const char *redis_master_name;       /* required with redis_sentinel */
    const char *redis_sentinel_password; /* the sentinels' password, or NULL */
    int redis_db;                        /* with redis_sentinel (default 0) */
} dispatchd_worker_opts;

/* Registers at once and then heartbeats on loop. Returns 0, or < 0 with a
 * message in err (bad options). Redis being down is not an error here: the
 * worker keeps retrying and logs it. */
int dispatchd_worker_start(struct uv_loop_s *loop, const dispatchd_worker_opts *opts,
                           dispatchd_worker **out, char *err, size_t errlen);
/* Deregisters (bounded by a short timeout), closes every handle, frees w,
 * then calls done(arg) (may be NULL) from the loop. */
void dispatchd_worker_stop(dispatchd_worker *w, void (*done)(void *arg), void *arg);
/* Heartbeats written successfully so far. */
uint64_t dispatchd_worker_heartbeats(const dispatchd_worker *w);

/* Blocking variant: runs a private loop until *stop != 0, then deregisters.
 * Returns 0, or < 0 with a message in err. */
int dispatchd_worker_run(const dispatchd_worker_opts *opts, volatile sig_atomic_t *stop,
                         char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
