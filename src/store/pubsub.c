/* pubsub.c - dd_store_subscribe (store.h): a subscription on a connection
 * of its own (store/conn.h in subscribe mode).
 *
 * A connection that has sent SUBSCRIBE can run nothing but (P)SUBSCRIBE,
 * UNSUBSCRIBE and PING, so it cannot be the store's command connection.
 * States: DOWN (timer: reconnect backoff) -> CONNECTING ([AUTH] SUBSCRIBE
 * ch...; timer: connect deadline) -> READY once every channel's
 * confirmation came (timer: PING interval; a PING unanswered by the next
 * tick drops the connection, since a silent network would otherwise leave
 * the subscription deaf for good) -> DOWN on any failure -> ... A message
 * published while the subscription is down is lost (Redis keeps none), so
 * users treat on_state(0) after a loss as "look again at what you waited
 * for".
 *
 * Everything it needs from the store is copied at subscribe, so the store
 * and the subscription close in either order. The timer is the only handle
 * of its own; connections close on their own (conn.h: nothing is delivered
 * after close). */
#include "store/conn.h"
#include "store/store_int.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "net/tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SUB_DOWN, SUB_CONNECTING, SUB_READY, SUB_CLOSED };

/* privdata of the replies a subscription waits for */
#define SUB_AUTH ((void *)(uintptr_t)1)
#define SUB_PING ((void *)(uintptr_t)2)

struct dd_store_sub {
    /* SENTINEL: the store that tells it where the primary is (NULL once
     * the store closed, or without sentinels), and the next of its subs */
    dd_store *store;
    dd_store_sub *next;
    uv_loop_t *loop;
    struct dd_log *log;
    char *host, *path, *password, *user;
    int port;
    dd_tls_ctx *tls; /* a reference to the store's; NULL: plain */
    int64_t connect_timeout_ms, ping_ms;
    dd_backoff backoff;
    char **channels;
    size_t nchannels;
    dd_store_sub_opts o;

    int state;
    dd_store_conn *conn;
    size_t confirmed; /* channels Redis confirmed on this connection */
    bool ping_out;
    uv_timer_t timer;
    void (*done)(void *arg);
    void *done_arg;
};

static void dd_sub_start(dd_store_sub *sub);

static const char *dd_sub_addr(const dd_store_sub *sub, char *buf, size_t len)
{
    if (sub->path)
        dd_msgf(buf, len, "unix:%s", sub->path);
    else
        dd_msgf(buf, len, "%s:%d", sub->host, sub->port);
    return buf;
}

static void dd_sub_on_reconnect(uv_timer_t *t)
{
    dd_sub_start(t->data);
}

/* The connection is gone or unusable: report, and try again later. */
static void dd_sub_fail(dd_store_sub *sub, int status, const char *msg)
{
    char addr[300];
    if (sub->state == SUB_CLOSED || sub->state == SUB_DOWN)
        return;
    if (sub->conn)
        dd_store_conn_close(sub->conn, NULL, NULL);
    sub->conn = NULL;
    sub->state = SUB_DOWN;
    int64_t delay = dd_backoff_next(&sub->backoff);
    dd_warn(sub->log, "redis_subscribe_unavailable", "addr=%s err=%s error=%s retry_ms=%lld",
            dd_sub_addr(sub, addr, sizeof(addr)), dd_strerror(status), msg, (long long)delay);
    uv_timer_stop(&sub->timer);
    uv_timer_start(&sub->timer, dd_sub_on_reconnect, (uint64_t)delay, 0);
    if (sub->o.on_state)
        sub->o.on_state(status, sub->o.arg);
}

static void dd_sub_on_fail(void *arg, int status, const char *msg)
{
    dd_store_sub *sub = arg;
    dd_sub_fail(sub, status, msg);
}

static void dd_sub_on_timer(uv_timer_t *t)
{
    dd_store_sub *sub = t->data;
    if (sub->state == SUB_CONNECTING) {
        dd_sub_fail(sub, DD_ETIMEOUT, "not subscribed within the connect timeout");
        return;
    }
    if (sub->state != SUB_READY)
        return;
    if (sub->ping_out) {
        dd_sub_fail(sub, DD_ETIMEOUT, "no answer to PING within the ping interval");
        return;
    }
    const char *argv[] = {"PING"};
    if (dd_store_conn_command(sub->conn, 1, argv, NULL, true, SUB_PING) == 0)
        sub->ping_out = true;
    uv_timer_start(&sub->timer, dd_sub_on_timer, (uint64_t)sub->ping_ms, 0);
}

static void dd_sub_on_reply(void *arg, void *privdata, redisReply *rep)
{
    dd_store_sub *sub = arg;
    if (rep->type == REDIS_REPLY_ERROR) {
        char msg[300];
        int st = !strncmp(rep->str, "NOAUTH", 6) || !strncmp(rep->str, "WRONGPASS", 9) ||
                         !strncmp(rep->str, "ERR AUTH", 8)
                     ? -EACCES
                 : !strncmp(rep->str, "NOPERM", 6) ? -EPERM
                                                   : DD_EPROTO;
        dd_msgf(msg, sizeof(msg), "redis refused %s: %s",
                privdata == SUB_AUTH ? "AUTH" : "PING", rep->str);
        dd_sub_fail(sub, st, msg);
        return;
    }
    if (privdata == SUB_PING)
        sub->ping_out = false;
}

static void dd_sub_on_push(void *arg, redisReply *rep)
{
    dd_store_sub *sub = arg;
    if (rep->type == REDIS_REPLY_ERROR) { /* conn.c: the SUBSCRIBE was refused */
        char msg[400];
        bool noperm = !strncmp(rep->str, "NOPERM", 6);
        dd_msgf(msg, sizeof(msg), "redis refused SUBSCRIBE: %s%s", rep->str,
                noperm ? " (the ACL user needs +subscribe and the channels &dd:*: docs/redis.md)"
                       : "");
        dd_sub_fail(sub, noperm ? -EPERM : DD_EPROTO, msg);
        return;
    }
    if (rep->elements < 3 || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        if (sub->state == SUB_READY || sub->state == SUB_CONNECTING)
            sub->o.on_message(rep->element[1]->str, rep->element[2]->str,
                              (size_t)rep->element[2]->len, sub->o.arg);
        return;
    }
    if (strcmp(kind, "subscribe") != 0 || sub->state != SUB_CONNECTING)
        return;
    if (++sub->confirmed < sub->nchannels)
        return;
    char addr[300];
    sub->state = SUB_READY;
    dd_backoff_reset(&sub->backoff);
    dd_info(sub->log, "redis_subscribed", "addr=%s channels=%zu", dd_sub_addr(sub, addr, sizeof(addr)),
            sub->nchannels);
    uv_timer_stop(&sub->timer);
    uv_timer_start(&sub->timer, dd_sub_on_timer, (uint64_t)sub->ping_ms, 0);
    if (sub->o.on_state)
        sub->o.on_state(0, sub->o.arg);
}

static void dd_sub_start(dd_store_sub *sub)
{
    char err[256];
    if (sub->state != SUB_DOWN)
        return;
    if (!sub->host && !sub->path) { /* SENTINEL: no answer from them yet */
        sub->state = SUB_CONNECTING;
        dd_sub_fail(sub, DD_EUNAVAIL, "the sentinels have not named the primary yet");
        return;
    }
    dd_store_conn_opts co = {
        .host = sub->host,
        .port = sub->port,
        .path = sub->path,
        .connect_timeout_ms = sub->connect_timeout_ms,
        .tls = sub->tls,
        .on_reply = dd_sub_on_reply,
        .on_push = dd_sub_on_push,
        .on_fail = dd_sub_on_fail,
        .arg = sub,
    };
    sub->state = SUB_CONNECTING;
    sub->confirmed = 0;
    sub->ping_out = false;
    if (dd_store_conn_new(sub->loop, &co, &sub->conn, err, sizeof(err)) < 0) {
        sub->conn = NULL;
        dd_sub_fail(sub, DD_EINVAL, err);
        return;
    }
    int rc = 0;
    if (sub->password) {
        const char *argv[] = {"AUTH", sub->user ? sub->user : sub->password, sub->password};
        rc = dd_store_conn_command(sub->conn, sub->user ? 3 : 2, argv, NULL, true, SUB_AUTH);
    }
    /* one SUBSCRIBE for all: Redis confirms each channel with a push */
    const char **argv = dd_xmalloc((sub->nchannels + 1) * sizeof(*argv));
    argv[0] = "SUBSCRIBE";
    for (size_t i = 0; i < sub->nchannels; i++)
        argv[i + 1] = sub->channels[i];
    if (rc == 0)
        rc = dd_store_conn_command(sub->conn, (int)sub->nchannels + 1, argv, NULL, false, NULL);
    free(argv);
    uv_timer_stop(&sub->timer);
    uv_timer_start(&sub->timer, dd_sub_on_timer, (uint64_t)sub->connect_timeout_ms, 0);
}

int dd_store_subscribe(dd_store *s, const dd_store_sub_opts *o, dd_store_sub **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (!s || !o || !o->on_message || o->nchannels == 0 || !o->channels) {
        dd_msgf(err, errlen, "dd_store_subscribe: no store, channel or on_message");
        return DD_EINVAL;
    }
    for (size_t i = 0; i < o->nchannels; i++) {
        if (!o->channels[i] || !*o->channels[i]) {
            dd_msgf(err, errlen, "dd_store_subscribe: channel %zu is empty", i);
            return DD_EINVAL;
        }
    }
    if (s->state == DD_STORE__CLOSING) {
        dd_msgf(err, errlen, "dd_store_subscribe: the store is closing");
        return DD_ECANCELED;
    }
    dd_store_sub *sub = dd_xcalloc(1, sizeof(*sub));
    if (s->sentinel) {
        /* SENTINEL: the store tells it where the primary is, every time the
         * sentinels answer or announce a switch (dd_store__subs_primary) */
        sub->store = s;
        sub->next = s->subs;
        s->subs = sub;
    }
    sub->loop = s->ctx.loop;
    sub->log = s->ctx.log;
    sub->host = s->url.host ? dd_strdup(s->url.host) : NULL;
    sub->path = s->url.path ? dd_strdup(s->url.path) : NULL;
    sub->port = s->url.port;
    sub->tls = dd_tls_ctx_ref(s->tls);
    sub->password = s->password ? dd_strdup(s->password) : NULL;
    sub->user = s->user ? dd_strdup(s->user) : NULL;
    sub->connect_timeout_ms = s->connect_timeout_ms;
    sub->ping_ms = s->cmd_timeout_ms > 1000 ? s->cmd_timeout_ms : 1000;
    dd_backoff_init(&sub->backoff, s->reconnect_base_ms, s->reconnect_cap_ms, s->seed + 1);
    sub->nchannels = o->nchannels;
    sub->channels = dd_xcalloc(o->nchannels, sizeof(*sub->channels));
    for (size_t i = 0; i < o->nchannels; i++)
        sub->channels[i] = dd_strdup(o->channels[i]);
    sub->o = *o;
    sub->o.channels = NULL;
    uv_timer_init(sub->loop, &sub->timer);
    sub->timer.data = sub;
    sub->state = SUB_DOWN;
    /* connect from the loop: no callback inside this call */
    uv_timer_start(&sub->timer, dd_sub_on_reconnect, 0, 0);
    *out = sub;
    return 0;
}

bool dd_store_sub_ready(const dd_store_sub *sub)
{
    return sub && sub->state == SUB_READY;
}

static void dd_sub_closed(uv_handle_t *h)
{
    dd_store_sub *sub = h->data;
    void (*done)(void *) = sub->done;
    void *arg = sub->done_arg;
    for (size_t i = 0; i < sub->nchannels; i++)
        free(sub->channels[i]);
    free(sub->channels);
    free(sub->host);
    free(sub->path);
    dd_secret_free(sub->password);
    free(sub->user);
    dd_tls_ctx_unref(sub->tls);
    free(sub);
    if (done)
        done(arg);
}

void dd_store_sub_close(dd_store_sub *sub, void (*done)(void *arg), void *arg)
{
    if (!sub || sub->state == SUB_CLOSED)
        return;
    if (sub->store) { /* unlink */
        dd_store_sub **pp = &sub->store->subs;
        while (*pp && *pp != sub)
            pp = &(*pp)->next;
        if (*pp)
            *pp = sub->next;
        sub->store = NULL;
    }
    sub->state = SUB_CLOSED;
    sub->done = done;
    sub->done_arg = arg;
    if (sub->conn)
        dd_store_conn_close(sub->conn, NULL, NULL);
    sub->conn = NULL;
    uv_close((uv_handle_t *)&sub->timer, dd_sub_closed);
}

void dd_store__subs_primary(dd_store *s, const char *host, int port)
{
    for (dd_store_sub *sub = s->subs; sub; sub = sub->next) {
        if (sub->host && !strcmp(sub->host, host) && sub->port == port)
            continue;
        free(sub->host);
        sub->host = dd_strdup(host);
        sub->port = port;
        if (sub->state == SUB_READY || sub->state == SUB_CONNECTING) {
            /* subscribed to the old primary (a replica now, or gone):
             * messages published on the new one would never come */
            dd_sub_fail(sub, DD_EUNAVAIL, "the primary moved: subscribing there");
            dd_backoff_reset(&sub->backoff);
            uv_timer_stop(&sub->timer);
            uv_timer_start(&sub->timer, dd_sub_on_reconnect, 0, 0);
        } else if (sub->state == SUB_DOWN) {
            /* waiting to retry (maybe for an address): go now */
            uv_timer_stop(&sub->timer);
            uv_timer_start(&sub->timer, dd_sub_on_reconnect, 0, 0);
        }
    }
}

void dd_store__subs_detach(dd_store *s)
{
    for (dd_store_sub *sub = s->subs, *next; sub; sub = next) {
        next = sub->next;
        sub->store = NULL;
        sub->next = NULL;
    }
    s->subs = NULL;
}
