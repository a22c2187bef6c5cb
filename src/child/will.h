/* will.h - the last will of a dispatchd that died: what its guard does once
 * it has stopped the child (guard.c).
 *
 * Why: when dispatchd alone dies (kill -9, OOM, a segfault) while its host
 * lives on, its guard sees it go and stops the child; nothing acts for that
 * dispatcher from here any more, and waiting out the stale threshold (15 s
 * by default) would only leave the dispatcher unserved. So the guard, once
 * the child is confirmed stopped, lets go of the record much as a graceful
 * release does (dd_store_let_go: fenced by run id + epoch, the handoff flag
 * set, a PUBLISH that tells the standbys), but makes it stale instead of
 * deleting it: it cannot terminate the run, and a stale record is what the
 * standbys and the reconciler end termination-first (hb_handoff.c). Then it
 * exits.
 *
 * Who owns what: dispatchd packs a will (dd_will_pack) each time it starts
 * a child and hands it to the guard through a pipe (fd 4, filled and closed
 * before the guard starts: never argv, which `ps` shows, nor the
 * environment, which the child would inherit). The guard reads it only when
 * it needs it. Every connection setting the daemon's store uses must be in
 * here (url, user, password, the TLS files, the sentinels): dd_will_pack and
 * dd_will_run are the one place that carries them across.
 *
 * A frozen dispatchd (SIGSTOP, a hung loop) is not dead: its guard stops the
 * child at the acting deadline and writes no will, and the standbys wait out
 * the threshold as before. A whole host gone (every process killed at once,
 * or frozen) leaves no guard to write one either. */
#ifndef DD_CHILD_WILL_H
#define DD_CHILD_WILL_H

#include "core/buf.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dd_log;

typedef struct dd_will_job dd_will_job;

typedef struct dd_will {
    /* the connection (secrets: the packed form is wiped after use) */
    const char *url, *username, *password;
    const char *tls_ca_file, *tls_cert_file, *tls_key_file; /* rediss:// (paths) */
    /* --redis-sentinel: the primary is asked from these (url then unused) */
    const char *sentinels, *master_name, *sentinel_password;
    int db;
    /* the fenced release (dd_store_let_go_args) */
    const char *workflow_id, *run_id, *first_run_id, *server_id;
    int64_t epoch;
    int64_t ack_ttl_ms; /* the handoff flag's life (2 thresholds) */
    bool expire;        /* stale now instead of deleted (what a will does: hb_handoff.c) */
} dd_will;

/* Appends w to out as "key\0value\0" pairs (the fields that are set). */
void dd_will_pack(dd_buf *out, const dd_will *w);
/* Parses len bytes of data, which must stay alive (the strings point into
 * it). 0, or DD_EINVAL for a will without a record to release. */
int dd_will_unpack(char *data, size_t len, dd_will *w);
/* Runs the will on a loop of its own: connects, dd_store_let_go, retrying
 * while Redis cannot be reached, for at most timeout_ms. 0 released,
 * DD_EFENCED a newer owner holds the record (*holder names it, may be ""),
 * else the last error. Logs nothing: the caller says what happened. */
int dd_will_run(const dd_will *w, struct dd_log *log, int64_t timeout_ms, char *holder,
                size_t holderlen, char *err, size_t errlen);

/* The pieces dd_will_run is made of, for the host's will process, which
 * runs many wills on one loop and one connection. */
struct dd_ctx;
struct uv_loop_s;
/* True when a and b name the same Redis connection (every connection
 * field equal): their wills can share one store. */
bool dd_will_same_conn(const dd_will *a, const dd_will *b);
/* A store for w's connection (short timeouts: a will is bounded). */
int dd_will_store_open(const struct dd_ctx *ctx, const dd_will *w, dd_store **out, char *err,
                       size_t errlen);
/* One will on s: dd_store_let_go, again every 100 ms while Redis cannot be
 * reached, for at most timeout_ms; then cb(status, holder) once (status as
 * dd_will_run's; holder "" unless fenced). w and s must outlive it. */
typedef void dd_will_done_cb(int status, const char *holder, void *arg);
void dd_will_job_start(struct uv_loop_s *loop, dd_store *s, const dd_will *w, int64_t timeout_ms,
                       dd_will_done_cb *cb, void *arg);

#endif
