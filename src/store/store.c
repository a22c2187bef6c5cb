/* store.c - URL parsing, the connection state machine and the request core.
 *
 * Connection states (the connection itself: src/store/conn.h):
 *   DOWN        no connection; conn_timer waits out the reconnect backoff
 *   CONNECTING  (Sentinel: first no connection while the sentinels are
 *               asked where the primary is, sentinel.c) then
 *               connection exists, [AUTH] INFO [SELECT] PING in flight;
 *               conn_timer is the connect deadline; user commands are kept,
 *               not sent, so nothing can run unauthenticated or on the
 *               wrong db
 *   READY       user commands go straight to the connection
 *   CLOSING     dd_store_close ran; conn_timer (0 ms) runs the teardown
 * Each new connection gets a new generation number, so a reply or failure
 * that belongs to an older one cannot disturb the current one. When a
 * connection goes, every request still owed a reply on it is failed here
 * (its pending count cleared): the connection never answers them. */
#include "store/store_int.h"
#include "store/conn.h"
#include "store/sentinel.h"

#include "net/tls.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/hostport.h"
#include "core/log.h"
#include "metrics/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- URL ---------------------------------------------------------------- */

static int dd_store_url_fail(char *err, size_t errlen, const char *fmt, const char *subject)
{
    if (err && errlen)
        dd_msgf(err, errlen, fmt, subject);
    return DD_EINVAL;
}

static int dd_store_parse_uint(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int dd_store_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %-decodes s[0..n) into a new string; NULL on a bad escape. */
static char *dd_store_pct_decode(const char *s, size_t n)
{
    char *out = dd_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? dd_store_hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? dd_store_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

void dd_store_url_release(dd_store_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    dd_secret_free(u->password);
    memset(u, 0, sizeof(*u));
}

static int dd_store_parse_unix(const char *p, dd_store_url *u, char *err, size_t errlen)
{
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    if (plen == 0 || p[0] != '/')
        return dd_store_url_fail(err, errlen, "missing socket path in redis url (want %s)",
                        "unix:///path/to/redis.sock");
    u->path = dd_xmalloc(plen + 1);
    memcpy(u->path, p, plen);
    u->path[plen] = '\0';
    if (!q)
        return 0;
    q++;
    if (strncmp(q, "db=", 3) != 0)
        return dd_store_url_fail(err, errlen, "unknown parameter '%s' in redis url (want db=N)", q);
    long db;
    if (dd_store_parse_uint(q + 3, strlen(q + 3), INT_MAX, &db) < 0)
        return dd_store_url_fail(err, errlen, "bad db '%s' in redis url", q + 3);
    u->db = (int)db;
    return 0;
}

static int dd_store_parse_tcp(const char *p, dd_store_url *u, char *err, size_t errlen)
{
    char sub[64];
    const char *slash = strchr(p, '/');
    const char *auth_end = slash ? slash : p + strlen(p);
    /* userinfo ends at the last '@' of the authority: a password may hold
     * '@' unencoded, a host never does. */
    const char *at = NULL;
    for (const char *c = p; c < auth_end; c++)
        if (*c == '@')
            at = c;
    const char *host = p;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return dd_store_url_fail(err, errlen, "missing ':' before the password in redis url%s",
                            " (want redis://[user]:password@host)");
        if (colon > p) {
            u->user = dd_store_pct_decode(p, (size_t)(colon - p));
            if (!u->user)
                return dd_store_url_fail(err, errlen, "bad %%-escape in the %s of the redis url", "user");
        }
        u->password = dd_store_pct_decode(colon + 1, (size_t)(at - colon - 1));
        if (!u->password)
            return dd_store_url_fail(err, errlen, "bad %%-escape in the %s of the redis url", "password");
        host = at + 1;
    }
    dd_hostport hp;
    char msg[160];
    if (dd_hostport_parse(host, (size_t)(auth_end - host), 6379, 0, &hp, msg, sizeof(msg)) < 0)
        return dd_store_url_fail(err, errlen, "redis url: %s", msg);
    u->host = hp.host; /* taken over */
    u->port = hp.port;
    if (slash && slash[1]) {
        long db;
        if (dd_store_parse_uint(slash + 1, strlen(slash + 1), INT_MAX, &db) < 0) {
            dd_msgf(sub, sizeof(sub), "%s", slash + 1);
            return dd_store_url_fail(err, errlen, "bad db '%s' in redis url (want a number)", sub);
        }
        u->db = (int)db;
    }
    return 0;
}

int dd_store_url_parse(const char *url, dd_store_url *out, char *err, size_t errlen)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if (!url || !*url)
        return dd_store_url_fail(err, errlen, "empty redis url%s", "");
    if (strncmp(url, "redis://", 8) == 0) {
        rc = dd_store_parse_tcp(url + 8, out, err, errlen);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        out->tls = true;
        rc = dd_store_parse_tcp(url + 9, out, err, errlen);
    } else if (strncmp(url, "unix://", 7) == 0) {
        rc = dd_store_parse_unix(url + 7, out, err, errlen);
    } else {
        char scheme[32];
        const char *sep = strstr(url, "://");
        if (!sep)
            rc = dd_store_url_fail(err, errlen, "missing scheme in redis url (want %s)",
                          "redis://, rediss:// or unix://");
        else {
            dd_msgf(scheme, sizeof(scheme), "%.*s", (int)(sep - url), url);
            rc = dd_store_url_fail(err, errlen,
                          "unknown scheme '%s' in redis url (want redis://, rediss:// or "
                          "unix://)",
                          scheme);
        }
    }
    if (rc < 0)
        dd_store_url_release(out);
    return rc;
}

/* ---- connection --------------------------------------------------------- */

#define ST_DOWN DD_STORE__DOWN
#define ST_CONNECTING DD_STORE__CONNECTING
#define ST_READY DD_STORE__READY
#define ST_CLOSING DD_STORE__CLOSING

static void dd_store_conn_start(dd_store *s);
static void dd_store_conn_fail(dd_store *s, int status);
static void dd_store_req_release(dd_store__req *r);
static void dd_store_on_reply(void *arg, void *privdata, redisReply *rep);
static void dd_store_on_reconnect_timer(uv_timer_t *t);

struct dd_log *dd_store__log(const dd_store *s)
{
    return s->ctx.log;
}

bool dd_store_ready(const dd_store *s)
{
    return s->state == ST_READY;
}

const char *dd_store_last_error(const dd_store *s)
{
    return s->last_error;
}

const char *dd_store__addr(const dd_store *s, char *buf, size_t len)
{
    if (s->sentinel && !s->url.host)
        dd_msgf(buf, len, "master '%s' (sentinels %s)", dd_sentinel_master_name(s->sentinel),
                dd_sentinel_addrs(s->sentinel));
    else if (s->url.path)
        dd_msgf(buf, len, "unix:%s", s->url.path);
    else
        dd_msgf(buf, len, strchr(s->url.host, ':') ? "%s[%s]:%d" : "%s%s:%d",
                s->url.tls ? "tls:" : "", s->url.host, s->url.port);
    return buf;
}

static void dd_store_maybe_free(dd_store *s)
{
    if (s->state != ST_CLOSING || !s->conn_timer_closed || s->nreqs > 0)
        return;
    void (*done)(void *) = s->close_cb;
    void *arg = s->close_arg;
    dd_store_url_release(&s->url);
    dd_secret_free(s->password);
    free(s->user);
    dd_tls_ctx_unref(s->tls);
    free(s);
    if (done)
        done(arg);
}

/* ---- SENTINEL hooks (sentinel.h) ------------------------------------------ */

/* The primary to connect to next: the sentinels' answer or announcement. */
static void dd_store_set_primary(dd_store *s, const char *host, int port)
{
    free(s->url.host);
    s->url.host = dd_strdup(host);
    s->url.port = port;
    s->resolved = true;
}

static void dd_store_on_resolved(int status, const char *host, int port, void *arg)
{
    dd_store *s = arg;
    if (s->state != ST_CONNECTING || s->conn)
        return;
    if (status < 0) {
        dd_msgf(s->last_error, sizeof(s->last_error), "%s",
                dd_sentinel_last_error(s->sentinel));
        dd_store_conn_fail(s, status);
        return;
    }
    dd_store_set_primary(s, host, port);
    dd_store__subs_primary(s, host, port);
    dd_store_conn_start(s);
}

/* A sentinel announced a new primary for our name: leave the old one now
 * (do not wait for a READONLY) and connect to the new one at once. */
static void dd_store_on_switch(const char *host, int port, void *arg)
{
    dd_store *s = arg;
    if (s->state == ST_CLOSING)
        return;
    if (s->m_switches)
        dd_metric_add(s->m_switches, NULL, 1);
    bool same = (s->state == ST_READY || (s->state == ST_CONNECTING && s->conn)) && s->url.host &&
                !strcmp(s->url.host, host) && s->url.port == port;
    dd_info(s->ctx.log, "redis_primary_switch", "master=%s addr=%s:%d connected=%s",
            dd_sentinel_master_name(s->sentinel), host, port, same ? "already" : "reconnect");
    dd_store__subs_primary(s, host, port);
    if (same)
        return;
    dd_msgf(s->last_error, sizeof(s->last_error), "sentinel announced a new primary %s:%d",
            host, port);
    dd_store_conn_fail(s, DD_EUNAVAIL);
    if (s->state == ST_DOWN) {
        /* straight to the announced primary (its role is still checked):
         * another sentinel asked now may not have switched yet */
        dd_store_set_primary(s, host, port);
        uv_timer_stop(&s->conn_timer);
        uv_timer_start(&s->conn_timer, dd_store_on_reconnect_timer, 0, 0);
    }
}

/* A READONLY reply: the node we write to is a replica now (a failover we
 * were not told about, or the sentinels' answer was behind). Drop the
 * connection so the reconnect asks again; once per connection, however
 * many operations were in flight. */
static void dd_store_on_readonly(dd_store *s, const dd_store__req *r, const char *msg)
{
    char addr[300];
    if (s->m_readonly)
        dd_metric_add(s->m_readonly, NULL, 1);
    if (r->gen != s->gen || s->state != ST_READY)
        return;
    dd_msgf(s->last_error, sizeof(s->last_error),
            "redis at %s is a read-only replica now (%.120s); reconnecting to the primary",
            dd_store__addr(s, addr, sizeof(addr)), msg);
    dd_warn(s->ctx.log, "redis_readonly", "addr=%s op=%s error=%s", addr, r->op->name, msg);
    dd_store_conn_fail(s, DD_EUNAVAIL);
}

int dd_store__add_wait(dd_store__req *r)
{
    dd_store *s = r->s;
    char n[16], ms[24];
    if (s->wait_replicas <= 0)
        return 0;
    snprintf(n, sizeof(n), "%d", s->wait_replicas);
    snprintf(ms, sizeof(ms), "%lld", (long long)(s->cmd_timeout_ms / 2));
    r->wait_reply = r->nreplies + r->pending + r->nqueued + 1;
    return dd_store__cmd(r, "WAIT", n, ms, NULL);
}

int dd_store__wait_result(dd_store__req *r, const redisReply *rep)
{
    dd_store *s = r->s;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= s->wait_replicas)
        return 0;
    if (s->m_wait_short)
        dd_metric_add(s->m_wait_short, NULL, 1);
    dd_msgf(s->last_error, sizeof(s->last_error),
            "WAIT %d: only %lld replica(s) confirmed '%s' within %lld ms", s->wait_replicas,
            rep->type == REDIS_REPLY_INTEGER ? (long long)rep->integer : -1LL, r->op->name,
            (long long)(s->cmd_timeout_ms / 2));
    dd_warn(s->ctx.log, "redis_wait_short", "op=%s want=%d acked=%lld timeout_ms=%lld",
            r->op->name, s->wait_replicas,
            rep->type == REDIS_REPLY_INTEGER ? (long long)rep->integer : -1LL,
            (long long)(s->cmd_timeout_ms / 2));
    return DD_ETIMEOUT;
}

void dd_store_set_on_state(dd_store *s, void (*on_state)(int status, void *arg), void *arg)
{
    s->on_state = on_state;
    s->state_arg = arg;
}

static void dd_store_notify(dd_store *s, int status)
{
    if (s->m_up)
        dd_metric_set(s->m_up, NULL, status == 0);
    if (s->on_state && s->state != ST_CLOSING)
        s->on_state(status, s->state_arg);
}

static void dd_store_on_reconnect_timer(uv_timer_t *t)
{
    dd_store_conn_start(t->data);
}

static void dd_store_on_connect_deadline(uv_timer_t *t)
{
    dd_store *s = t->data;
    dd_msgf(s->last_error, sizeof(s->last_error), "redis connect timed out after %lld ms",
            (long long)s->connect_timeout_ms);
    dd_store_conn_fail(s, DD_ETIMEOUT);
}

static void dd_store_on_conn_fail(void *arg, int status, const char *msg)
{
    dd_store *s = arg;
    bool up = s->state == ST_READY; /* else the handshake (TLS or AUTH...) never finished */
    if (status == DD_ETIMEOUT && !up)
        dd_msgf(s->last_error, sizeof(s->last_error), "redis connect timed out after %lld ms",
                (long long)s->connect_timeout_ms);
    else
        dd_msgf(s->last_error, sizeof(s->last_error), "%s: %s",
                up ? "redis connection lost" : "cannot connect to redis", msg);
    dd_store_conn_fail(s, status);
}

static int dd_store_send_formatted(dd_store__req *r, const char *cmd, size_t len)
{
    dd_store *s = r->s;
    if (dd_store_conn_write(s->conn, cmd, len, true, r) < 0)
        return DD_EUNAVAIL;
    r->pending++;
    r->gen = s->gen;
    return 0;
}

/* INFO cluster: a Cluster node would answer our multi-key scripts with
 * CROSSSLOT and our keys with -MOVED, and SELECT is refused there; say so
 * once, at connect, instead of failing every operation on its own. */
static bool dd_store_handshake_is_cluster(dd_store *s, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_STRING || !strstr(rep->str, "cluster_enabled:1"))
        return false;
    char addr[300];
    dd_msgf(s->last_error, sizeof(s->last_error),
            "redis at %s is a Redis Cluster node (INFO: cluster_enabled:1): dispatchd supports "
            "a standalone Redis or a replicated primary only; point --redis-url at one (see "
            "docs/redis.md)",
            dd_store__addr(s, addr, sizeof(addr)));
    dd_error(s->ctx.log, "redis_cluster_refused", "addr=%s error=%s", addr, s->last_error);
    return true;
}

static void dd_store_handshake_reply(dd_store__req *r, redisReply *rep)
{
    dd_store *s = r->s;
    if (r->gen != s->gen || s->state != ST_CONNECTING)
        return;
    if (r->nreplies == r->info_reply && dd_store_handshake_is_cluster(s, rep)) {
        dd_store__finish(r, -ENOTSUP);
        return;
    }
    /* SENTINEL: a sentinel's answer can be behind; never write to a replica */
    if (r->role_reply && r->nreplies == r->role_reply &&
        (rep->type != REDIS_REPLY_STRING || !strstr(rep->str, "role:master"))) {
        char addr[300], role[64] = "role:unknown";
        const char *rp = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "role:") : NULL;
        if (rp)
            dd_msgf(role, sizeof(role), "%.*s", (int)strcspn(rp, "\r\n"), rp);
        dd_msgf(s->last_error, sizeof(s->last_error),
                "redis at %s is not the primary (INFO replication: %s) although a sentinel "
                "named it for '%s': the sentinels are behind or a failover is under way; asking "
                "them again",
                dd_store__addr(s, addr, sizeof(addr)), role, dd_sentinel_master_name(s->sentinel));
        /* the logger takes no %.*s: role is cut above */
        dd_warn(s->ctx.log, "redis_not_primary", "addr=%s role=%s master=%s", addr, role + 5,
                dd_sentinel_master_name(s->sentinel));
        dd_store__finish(r, DD_EUNAVAIL);
        return;
    }
    if (r->pending > 0)
        return; /* PING is last: AUTH/INFO/SELECT errors finish before it */
    char addr[300];
    dd_store__finish(r, 0);
    s->handshake = NULL;
    s->state = ST_READY;
    uv_timer_stop(&s->conn_timer);
    dd_backoff_reset(&s->backoff);
    s->last_error[0] = '\0';
    if (s->sentinel)
        dd_info(s->ctx.log, "redis_connected", "addr=%s db=%d master=%s role=master",
                dd_store__addr(s, addr, sizeof(addr)), s->url.db,
                dd_sentinel_master_name(s->sentinel));
    else
        dd_info(s->ctx.log, "redis_connected", "addr=%s db=%d",
                dd_store__addr(s, addr, sizeof(addr)), s->url.db);
    /* Now the commands kept while connecting go out, in submission order. */
    for (dd_store__req *q = s->head; q; q = q->next) {
        size_t n = q->nqueued;
        q->nqueued = 0;
        for (size_t i = 0; i < n; i++) {
            if (!q->done && s->state == ST_READY &&
                dd_store_send_formatted(q, q->queued[i], q->queued_len[i]) < 0)
                dd_store__finish(q, DD_EUNAVAIL);
            free(q->queued[i]);
        }
    }
    dd_store_notify(s, 0);
}

static void dd_store_handshake_deliver(dd_store__req *r, int status)
{
    /* Errors reach here from a reply (AUTH/SELECT refused) or from
     * dd_store_conn_fail; only the first matters. */
    dd_store *s = r->s;
    if (status == 0 || r->gen != s->gen || s->state != ST_CONNECTING)
        return;
    s->handshake = NULL;
    dd_store_conn_fail(s, status);
}

static const dd_store__op handshake_op = {"handshake (AUTH/INFO/SELECT/PING)",
                                          dd_store_handshake_reply, dd_store_handshake_deliver,
                                          "AUTH, INFO, SELECT, PING"};

static void dd_store_conn_start(dd_store *s)
{
    char err[256];
    if (s->state == ST_CLOSING)
        return;
    /* SENTINEL: ask where the primary is before every connect */
    if (s->sentinel && !s->resolved) {
        s->gen++;
        s->state = ST_CONNECTING;
        dd_sentinel_resolve(s->sentinel, dd_store_on_resolved, s);
        return;
    }
    s->resolved = false; /* used once: the next reconnect asks again */
    s->gen++;
    dd_store_conn_opts co = {
        .host = s->url.host,
        .port = s->url.port,
        .path = s->url.path,
        .connect_timeout_ms = s->connect_timeout_ms,
        .tls = s->tls,
        .on_reply = dd_store_on_reply,
        .on_fail = dd_store_on_conn_fail,
        .arg = s,
    };
    s->state = ST_CONNECTING;
    if (dd_store_conn_new(s->ctx.loop, &co, &s->conn, err, sizeof(err)) < 0) {
        s->conn = NULL;
        dd_msgf(s->last_error, sizeof(s->last_error), "cannot connect to redis: %s", err);
        dd_store_conn_fail(s, DD_EUNAVAIL);
        return;
    }

    /* The connection sends in order once connected, so the handshake goes
     * out first, before anything the user queued. */
    dd_store__req *h = dd_store__req_new(s, &handshake_op, NULL, NULL);
    h->internal = true;
    s->handshake = h;
    char db[16];
    snprintf(db, sizeof(db), "%d", s->url.db);
    int rc = 0;
    if (s->password && s->user)
        rc = dd_store__cmd(h, "AUTH", s->user, s->password, NULL); /* Redis 6 ACL user */
    else if (s->password)
        rc = dd_store__cmd(h, "AUTH", s->password, NULL);
    /* before SELECT, which a Cluster node refuses with a vaguer error */
    h->info_reply = (s->password ? 1 : 0) + 1;
    if (rc == 0)
        rc = dd_store__cmd(h, "INFO", "cluster", NULL);
    if (rc == 0 && s->sentinel) { /* SENTINEL: the role check */
        h->role_reply = h->info_reply + 1;
        rc = dd_store__cmd(h, "INFO", "replication", NULL);
    }
    if (rc == 0 && s->url.db != 0)
        rc = dd_store__cmd(h, "SELECT", db, NULL);
    if (rc == 0)
        rc = dd_store__cmd(h, "PING", NULL);
    if (rc < 0) {
        dd_store__abort(h);
        s->handshake = NULL;
        dd_msgf(s->last_error, sizeof(s->last_error), "cannot queue the redis handshake");
        dd_store_conn_fail(s, DD_EUNAVAIL);
        return;
    }
    uv_timer_start(&s->conn_timer, dd_store_on_connect_deadline,
                   (uint64_t)s->connect_timeout_ms, 0);
}

/* The connection owes these requests replies it will never send. */
static void dd_store_drop_conn(dd_store *s, int status)
{
    dd_store_conn *c = s->conn;
    s->conn = NULL;
    if (c)
        dd_store_conn_close(c, NULL, NULL);
    /* New requests land at the tail and owe nothing: the walk is safe
     * against callbacks that submit more (or close the store). */
    for (dd_store__req *r = s->head; r; r = r->next) {
        if (r->pending == 0)
            continue;
        r->pending = 0;
        dd_store__finish(r, status);
        dd_store_req_release(r);
    }
}

/* The current connection is unusable: drop it, fail what waited for it,
 * and schedule a reconnect. */
static void dd_store_conn_fail(dd_store *s, int status)
{
    char addr[300];
    if (s->state == ST_CLOSING || s->state == ST_DOWN)
        return;
    s->gen++;
    s->state = ST_DOWN;
    s->resolved = false;
    dd_sentinel_cancel(s->sentinel); /* SENTINEL: a resolution in flight */
    if (s->handshake) {
        dd_store__req *h = s->handshake;
        s->handshake = NULL;
        dd_store__finish(h, status);
    }
    dd_store_drop_conn(s, DD_EUNAVAIL);
    for (dd_store__req *r = s->head; r; r = r->next)
        if (r->nqueued > 0 && !r->internal)
            dd_store__finish(r, status);
    if (s->state == ST_CLOSING)
        return; /* a failed request's owner closed the store */
    int64_t delay = dd_backoff_next(&s->backoff);
    dd_warn(s->ctx.log, "redis_unavailable", "addr=%s err=%s error=%s retry_ms=%lld",
            dd_store__addr(s, addr, sizeof(addr)),
            status == -ENOENT && s->sentinel ? "unknown master name" : dd_strerror(status),
            s->last_error, (long long)delay);
    uv_timer_stop(&s->conn_timer);
    uv_timer_start(&s->conn_timer, dd_store_on_reconnect_timer, (uint64_t)delay, 0);
    dd_store_notify(s, status);
}

/* rediss:// only: the files are read here, so a bad one is a start-up
 * error naming it, not a failure per connect. Nothing TLS (nor OpenSSL's
 * initialisation) happens for redis:// and unix://. */
static int dd_store_tls_setup(dd_store *s, const dd_store_opts *o, char *err, size_t errlen)
{
    bool files = (o->tls_ca_file && *o->tls_ca_file) || (o->tls_cert_file && *o->tls_cert_file) ||
                 (o->tls_key_file && *o->tls_key_file);
    if (!s->url.tls) {
        if (files && s->sentinel) /* not built: docs/redis.md */
            return dd_store_url_fail(err, errlen,
                            "TLS files (--redis-ca-file, --redis-cert-file, --redis-key-file) "
                            "cannot be used with %s: TLS through Sentinel is not supported",
                            "--redis-sentinel");
        if (files)
            return dd_store_url_fail(err, errlen,
                            "TLS files (--redis-ca-file, --redis-cert-file, --redis-key-file) "
                            "were given but the redis url is not %s",
                            "rediss://");
        return 0;
    }
    dd_buf b = DD_BUF_INIT;
    dd_tls_ctx_opts t = {
        .ca_file = o->tls_ca_file && *o->tls_ca_file ? o->tls_ca_file : NULL,
        .cert_file = o->tls_cert_file && *o->tls_cert_file ? o->tls_cert_file : NULL,
        .key_file = o->tls_key_file && *o->tls_key_file ? o->tls_key_file : NULL,
        .opt_prefix = "--redis",
    };
    int rc = dd_tls_ctx_new(&t, &s->tls, &b);
    if (rc < 0)
        dd_msgf(err, errlen, "%s", dd_buf_str(&b));
    dd_buf_release(&b);
    return rc;
}

int dd_store_open(const dd_ctx *ctx, const dd_store_opts *opts, dd_store **out, char *err,
                  size_t errlen)
{
    dd_store *s = NULL;
    int rc;
    *out = NULL;
    if (!ctx || !ctx->loop || !opts)
        return dd_store_url_fail(err, errlen, "dd_store_open: %s", "missing loop or options");
    s = dd_xcalloc(1, sizeof(*s));
    s->ctx = *ctx;
    if (opts->sentinels && *opts->sentinels) {
        /* SENTINEL: the address comes from the sentinels, not a URL */
        if (opts->url && *opts->url) {
            rc = dd_store_url_fail(err, errlen, "give either a redis url or sentinels%s, not both", "");
            goto out;
        }
        dd_sentinel_opts so = {.addrs = opts->sentinels,
                               .master_name = opts->master_name,
                               .password = opts->sentinel_password,
                               /* half the command timeout per sentinel: an
                                * operation waiting for the connection can
                                * outlive one silent sentinel */
                               .timeout_ms = (opts->cmd_timeout_ms > 0 ? opts->cmd_timeout_ms
                                                                       : 2000) / 2,
                               .seed = opts->seed,
                               .on_switch = dd_store_on_switch,
                               .arg = s};
        rc = dd_sentinel_open(ctx, &so, &s->sentinel, err, errlen);
        if (rc < 0)
            goto out;
        s->url.db = opts->db;
    } else {
        rc = dd_store_url_parse(opts->url, &s->url, err, errlen);
        if (rc < 0)
            goto out;
    }
    s->wait_replicas = opts->wait_replicas;
    if (opts->password && *opts->password)
        s->password = dd_strdup(opts->password);
    else if (s->url.password && *s->url.password)
        s->password = dd_strdup(s->url.password);
    if (opts->username && *opts->username)
        s->user = dd_strdup(opts->username);
    else if (s->url.user && *s->url.user)
        s->user = dd_strdup(s->url.user);
    if (s->user && !s->password) {
        /* AUTH user needs a password; sending none would log in as the
         * default user, which is not who was asked for */
        rc = dd_store_url_fail(err, errlen,
                      "redis user '%s' has no password: set DISPATCHD_REDIS_PASSWORD or "
                      "--redis-password-file (or put it in the URL: redis://user:password@host)",
                      s->user);
        goto out;
    }
    if (s->password && s->ctx.log)
        dd_log_add_secret(s->ctx.log, s->password);
    rc = dd_store_tls_setup(s, opts, err, errlen);
    if (rc < 0)
        goto out;
    s->cmd_timeout_ms = opts->cmd_timeout_ms > 0 ? opts->cmd_timeout_ms : 2000;
    s->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                         : s->cmd_timeout_ms;
    s->reconnect_base_ms = opts->reconnect_base_ms > 0 ? opts->reconnect_base_ms : 100;
    s->reconnect_cap_ms = opts->reconnect_cap_ms > 0 ? opts->reconnect_cap_ms : 5000;
    s->seed = opts->seed;
    dd_backoff_init(&s->backoff, s->reconnect_base_ms, s->reconnect_cap_ms, opts->seed);
    s->max_pending = opts->max_pending > 0 ? opts->max_pending : 65536;
    if (ctx->metrics) {
        static const char *const labels[] = {"error", NULL};
        s->m_up = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_redis_connected",
                                    "1 while this process's Redis connection is ready (handshake done), else 0.", NULL, NULL, 0);
        s->m_errors = dd_metrics_family(ctx->metrics, DD_COUNTER,
                                        "dispatchd_redis_command_errors_total",
                                        "Redis operations that failed, by error (timeout, unavailable, ...).", labels, NULL, 0);
        /* all three always (at 0 when unused): the metrics contract is what
         * every process exports (deploy/metrics.txt, test_up) */
        s->m_readonly = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_redis_readonly_total",
            "READONLY replies (the node written to had become a replica); each drops the "
            "connection and asks again where the primary is.",
            NULL, NULL, 0);
        s->m_switches = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_redis_primary_switches_total",
            "+switch-master announcements for our master name heard from a sentinel.", NULL,
            NULL, 0);
        s->m_wait_short = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_redis_wait_short_total",
            "Claims and heartbeats that WAIT did not confirm on --redis-wait-replicas "
            "replicas in time (they did not count).",
            NULL, NULL, 0);
        /* the series exist at 0 from the start (a rate needs a first sample) */
        dd_metric_add(s->m_readonly, NULL, 0);
        dd_metric_add(s->m_switches, NULL, 0);
        dd_metric_add(s->m_wait_short, NULL, 0);
    }
    s->on_state = opts->on_state;
    s->state_arg = opts->state_arg;
    uv_timer_init(ctx->loop, &s->conn_timer);
    s->conn_timer.data = s;
    s->state = ST_DOWN;
    dd_store_conn_start(s);
    *out = s;
    s = NULL;
out:
    if (s) {
        if (s->sentinel)
            dd_sentinel_close(s->sentinel);
        dd_store_url_release(&s->url);
        dd_secret_free(s->password);
        free(s->user);
        dd_tls_ctx_unref(s->tls);
        free(s);
    }
    return rc;
}

static void dd_store_on_conn_timer_closed(uv_handle_t *h)
{
    dd_store *s = h->data;
    s->conn_timer_closed = true;
    dd_store_maybe_free(s);
}

/* From the loop, after dd_store_close: what is still outstanding is
 * answered DD_ECANCELED (its callbacks may do anything, closing included;
 * new operations are refused at once), then the store's last handle goes. */
static void dd_store_on_teardown(uv_timer_t *t)
{
    dd_store *s = t->data;
    for (dd_store__req *r = s->head; r; r = r->next) {
        r->pending = 0; /* the connection is closed: no reply comes */
        dd_store__finish(r, DD_ECANCELED);
        dd_store_req_release(r);
    }
    uv_close((uv_handle_t *)&s->conn_timer, dd_store_on_conn_timer_closed);
}

void dd_store_close(dd_store *s, void (*done)(void *arg), void *arg)
{
    if (!s || s->state == ST_CLOSING)
        return;
    s->state = ST_CLOSING;
    s->close_cb = done;
    s->close_arg = arg;
    s->handshake = NULL;
    s->gen++;
    /* Nothing more comes from the connection or a timeout; the teardown
     * answers the rest, from the loop, never inside this call. */
    if (s->conn) {
        dd_store_conn_close(s->conn, NULL, NULL);
        s->conn = NULL;
    }
    dd_sentinel_close(s->sentinel); /* SENTINEL */
    s->sentinel = NULL;
    dd_store__subs_detach(s);
    for (dd_store__req *r = s->head; r; r = r->next)
        uv_timer_stop(&r->timer);
    uv_timer_stop(&s->conn_timer);
    uv_timer_start(&s->conn_timer, dd_store_on_teardown, 0, 0);
}

/* ---- requests ----------------------------------------------------------- */

static void dd_store_on_req_timeout(uv_timer_t *t)
{
    dd_store__req *r = t->data;
    dd_store *s = r->s;
    bool sent = r->pending > 0 && r->gen == s->gen && s->state == ST_READY;
    dd_warn(s->ctx.log, "redis_timeout", "op=%s timeout_ms=%lld", r->op->name,
            (long long)s->cmd_timeout_ms);
    dd_store__finish(r, DD_ETIMEOUT);
    /* Replies come back in order, so every later command on this pipe is
     * stuck behind the missing one (server paused, network black hole):
     * drop the connection and start over rather than wait on it. */
    if (sent) {
        dd_msgf(s->last_error, sizeof(s->last_error), "redis did not answer '%s' within %lld ms",
                r->op->name, (long long)s->cmd_timeout_ms);
        dd_store_conn_fail(s, DD_ETIMEOUT);
    }
    dd_store_req_release(r);
}

dd_store__req *dd_store__req_new(dd_store *s, const dd_store__op *op, void (*cb)(void), void *arg)
{
    dd_store__req *r = dd_xcalloc(1, sizeof(*r));
    r->s = s;
    r->op = op;
    r->cb = cb;
    r->arg = arg;
    r->gen = s->gen;
    uv_timer_init(s->ctx.loop, &r->timer);
    r->timer.data = r;
    r->prev = s->tail;
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    s->nreqs++;
    return r;
}

static void dd_store_free_result(dd_store__req *r)
{
    dd_store__free_recs(r->recs, r->nrecs);
    for (size_t i = 0; i < r->nworkers; i++)
        free((char *)r->workers[i].server_id);
    free(r->workers);
    free(r->str[0]);
    free(r->str[1]);
}

static void dd_store_on_req_closed(uv_handle_t *h)
{
    dd_store__req *r = h->data;
    dd_store *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->tail = r->prev;
    for (size_t i = 0; i < r->nqueued; i++)
        free(r->queued[i]);
    free(r->queued);
    free(r->queued_len);
    dd_store_free_result(r);
    free(r);
    s->nreqs--;
    dd_store_maybe_free(s);
}

static void dd_store_req_release(dd_store__req *r)
{
    if (!r->done || r->pending > 0 || r->closing)
        return;
    r->closing = true;
    uv_close((uv_handle_t *)&r->timer, dd_store_on_req_closed);
}

static dd_metric *dd_store_s_errors(const dd_store__req *r)
{
    return r->internal ? NULL : r->s->m_errors;
}

void dd_store__finish(dd_store__req *r, int status)
{
    if (r->done)
        return;
    /* closed meanwhile (from a callback of a failing connection): the
     * caller asked for it, so it is a cancel, not a Redis error */
    if (status != 0 && r->s->state == ST_CLOSING)
        status = DD_ECANCELED;
    r->done = true;
    uv_timer_stop(&r->timer);
    if (status < 0 && status != DD_ECANCELED && dd_store_s_errors(r))
        dd_metric_add(dd_store_s_errors(r), DD_L1(status == DD_ETIMEOUT   ? "timeout"
                                         : status == DD_EUNAVAIL ? "unavailable"
                                         : status == -EACCES     ? "auth"
                                         : status == -EPERM      ? "noperm"
                                         : status == -ENOTSUP    ? "cluster"
                                         : status == -ENOENT     ? "sentinel"
                                                                 : "protocol"),
                      1);
    r->op->deliver(r, status);
    dd_store_req_release(r);
}

static void dd_store_on_reply(void *arg, void *privdata, redisReply *rep)
{
    dd_store__req *r = privdata;
    dd_store *s = arg;
    r->pending--;
    r->nreplies++;
    if (!r->done) {
        if (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "READONLY", 8)) {
            /* SENTINEL: a replica; not an error per operation (on_readonly) */
            dd_store__finish(r, DD_EUNAVAIL);
            if (!r->internal)
                dd_store_on_readonly(s, r, rep->str);
        } else if (rep->type == REDIS_REPLY_ERROR) {
            int st = dd_store__reply_error(s, r->op, rep);
            dd_store__finish(r, st);
            /* A Cluster redirect will not go away by retrying: drop the
             * connection, so the reconnect's handshake (INFO cluster) and
             * its backoff decide, and callers meanwhile get DD_EUNAVAIL at
             * once instead of a redirect per call. */
            if (st == -ENOTSUP && !r->internal && r->gen == s->gen && s->state == ST_READY)
                dd_store_conn_fail(s, st);
        } else {
            r->op->reply(r, rep);
        }
    }
    dd_store_req_release(r);
}

/* Redis 7 words a refusal inside a script its own way ("ERR The user
 * executing the script can't run this command ..."), without NOPERM. */
static bool dd_store_reply_is_noperm(const char *e)
{
    return !strncmp(e, "NOPERM", 6) || strstr(e, "executing the script can't") != NULL;
}

static bool dd_store_reply_is_cluster(const char *e)
{
    return !strncmp(e, "MOVED ", 6) || !strncmp(e, "ASK ", 4) ||
           !strncmp(e, "CLUSTERDOWN", 11) || !strncmp(e, "CROSSSLOT", 9);
}

int dd_store__reply_error(dd_store *s, const dd_store__op *op, const redisReply *rep)
{
    int rc = DD_EPROTO;
    if (dd_store_reply_is_noperm(rep->str)) {
        /* Not an authentication problem: the user logged in, but its ACL
         * lacks a command or key this operation needs. Name them all. */
        rc = -EPERM;
        dd_msgf(s->last_error, sizeof(s->last_error),
                "redis ACL user '%s' may not run '%s' (%s): %.160s; give it dispatchd's rule set "
                "(docs/redis.md; ACL LOG on the server names the refused command or key)",
                s->user ? s->user : "default", op->name, op->uses ? op->uses : "?", rep->str);
        dd_error(s->ctx.log, "redis_noperm", "op=%s uses=%s user=%s error=%s", op->name,
                 op->uses ? op->uses : "?", s->user ? s->user : "default", rep->str);
        return rc;
    }
    if (dd_store_reply_is_cluster(rep->str)) {
        char addr[300];
        rc = -ENOTSUP;
        dd_msgf(s->last_error, sizeof(s->last_error),
                "redis at %s answered '%s' with a Redis Cluster reply (%.120s): Redis Cluster is "
                "not supported; point --redis-url at a standalone Redis or a replicated primary "
                "(docs/redis.md)",
                dd_store__addr(s, addr, sizeof(addr)), op->name, rep->str);
        dd_error(s->ctx.log, "redis_cluster_refused", "addr=%s op=%s error=%s", addr, op->name,
                 rep->str);
        return rc;
    }
    if (!strncmp(rep->str, "NOAUTH", 6) || !strncmp(rep->str, "WRONGPASS", 9) ||
        !strncmp(rep->str, "ERR AUTH", 8))
        rc = -EACCES;
    else if (!strncmp(rep->str, "LOADING", 7) || !strncmp(rep->str, "BUSY", 4) ||
             !strncmp(rep->str, "READONLY", 8) || !strncmp(rep->str, "MASTERDOWN", 10))
        rc = DD_EUNAVAIL;
    dd_msgf(s->last_error, sizeof(s->last_error), "redis refused '%s': %.160s", op->name,
            rep->str);
    dd_warn(s->ctx.log, "redis_error", "op=%s error=%s", op->name, rep->str);
    return rc;
}

int dd_store__cmdv(dd_store__req *r, int argc, const char **argv)
{
    dd_store *s = r->s;
    char *cmd = NULL;
    int len;
    if (s->state != ST_READY && s->state != ST_CONNECTING)
        return DD_EUNAVAIL;
    if (s->state == ST_READY || r->internal) {
        if (dd_store_conn_command(s->conn, argc, argv, NULL, true, r) < 0)
            return DD_EUNAVAIL;
        r->pending++;
        r->gen = s->gen;
        return 0;
    }
    len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0)
        return DD_EUNAVAIL;
    r->queued = dd_xrealloc(r->queued, (r->nqueued + 1) * sizeof(*r->queued));
    r->queued_len = dd_xrealloc(r->queued_len, (r->nqueued + 1) * sizeof(*r->queued_len));
    r->queued[r->nqueued] = cmd;
    r->queued_len[r->nqueued++] = (size_t)len;
    return 0;
}

int dd_store__cmd(dd_store__req *r, ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, r);
    for (const char *a; argc < 16 && (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    return dd_store__cmdv(r, argc, argv);
}

void dd_store__submit(dd_store__req *r)
{
    uv_timer_start(&r->timer, dd_store_on_req_timeout, (uint64_t)r->s->cmd_timeout_ms, 0);
}

void dd_store__abort(dd_store__req *r)
{
    /* Commands that did go out still hold r; their replies release it. */
    r->done = true;
    dd_store_req_release(r);
}

int dd_store__check(const dd_store *s)
{
    if (!s)
        return DD_EINVAL;
    if (s->state == ST_CLOSING)
        return DD_ECANCELED;
    if (s->state == ST_DOWN)
        return DD_EUNAVAIL;
    if (s->nreqs >= s->max_pending)
        return DD_EBUSY;
    return 0;
}

const char *dd_store__key(char *buf, const char *kind, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 1000)
        return NULL;
    int k = snprintf(buf, DD_STORE__KEYMAX, "dd:%s:{%s}", kind, id);
    return k > 0 && k < DD_STORE__KEYMAX ? buf : NULL; /* a key is never cut */
}
