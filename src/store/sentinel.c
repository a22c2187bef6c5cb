/* sentinel.c - see sentinel.h.
 *
 * Each connection to a sentinel is a hiredis async context on the loop
 * (uv_adapter.c), opened and dropped through the three sconn_* functions
 * below, which are the only I/O here. A context's data points to the
 * dd_sentinel while it is the current one and is cleared when we drop it,
 * so every late callback (hiredis NULL-replies pending commands when it
 * frees a context) finds nothing to do. Contexts that hiredis is freeing
 * itself (connect failure, disconnect) are forgotten, never freed twice. */
#include "store/sentinel.h"
#include "store/uv_adapter.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/hostport.h"
#include "core/log.h"

#include <hiredis/async.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_PORT 26379

struct dd_sentinel {
    dd_ctx ctx;
    dd_hostport *addrs;
    size_t n;
    char *addrs_str, *name, *password;
    int64_t timeout_ms;
    dd_sentinel_switch_cb *on_switch;
    void *arg;
    bool closing;
    int open_timers;

    /* resolution round */
    dd_sentinel_resolve_cb *rcb;
    void *rarg;
    bool resolving;
    size_t ridx;
    redisAsyncContext *res_ac;
    uv_timer_t rtimer;
    int nanswered, nunknown, nauth;
    char round_err[1024];
    char last_error[1200];

    /* +switch-master subscription */
    redisAsyncContext *sub_ac;
    size_t sidx;
    uv_timer_t stimer;
    dd_backoff sback;
};

/* ---- I/O ------------------------------------------------------------------ */

static void res_on_connect(const redisAsyncContext *ac, int status);
static void res_on_disconnect(const redisAsyncContext *ac, int status);
static void sub_on_connect(const redisAsyncContext *ac, int status);
static void sub_on_disconnect(const redisAsyncContext *ac, int status);

/* A connecting context to hp, watched on the loop, or NULL (why in err). */
static redisAsyncContext *sconn_open(dd_sentinel *sn, const dd_hostport *hp, bool sub, char *err,
                                     size_t errlen)
{
    redisAsyncContext *ac = redisAsyncConnect(hp->host, hp->port);
    if (!ac || ac->err) {
        dd_msgf(err, errlen, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    /* as in store.c: hiredis 0.14 does not set close-on-exec */
    int fl = fcntl(ac->c.fd, F_GETFD);
    if (fl < 0 || fcntl(ac->c.fd, F_SETFD, fl | FD_CLOEXEC) < 0 ||
        dd_redis_uv_attach(ac, sn->ctx.loop) != REDIS_OK) {
        dd_msgf(err, errlen, "cannot watch the socket");
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = sn;
    redisAsyncSetConnectCallback(ac, sub ? sub_on_connect : res_on_connect);
    redisAsyncSetDisconnectCallback(ac, sub ? sub_on_disconnect : res_on_disconnect);
    return ac;
}

static int sconn_cmd(redisAsyncContext *ac, redisCallbackFn *fn, int tag, int argc,
                     const char **argv)
{
    return redisAsyncCommandArgv(ac, fn, (void *)(intptr_t)tag, argc, argv, NULL) == REDIS_OK
               ? 0
               : DD_EUNAVAIL;
}

/* dying: hiredis is freeing it already (inside its connect/disconnect
 * callback); else it is freed now, or after the reply callback we are in. */
static void sconn_drop(redisAsyncContext *ac, bool dying)
{
    if (!ac)
        return;
    ac->data = NULL;
    if (!dying)
        redisAsyncFree(ac);
}

/* ---- list ------------------------------------------------------------------ */

static int parse_addrs(const char *addrs, dd_hostport **out, size_t *nout, char *err,
                       size_t errlen)
{
    dd_hostport *v = NULL;
    size_t n = 0;
    const char *p = addrs ? addrs : "";
    if (!*p) {
        dd_msgf(err, errlen, "empty sentinel list (want host:port[,host:port...])");
        return DD_EINVAL;
    }
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char msg[200];
        dd_hostport hp;
        if (dd_hostport_parse(p, len, SENTINEL_PORT, 0, &hp, msg, sizeof(msg)) < 0) {
            dd_msgf(err, errlen, "sentinel '%.*s' in the list: %s",
                    (int)(len > 100 ? 100 : len), p, msg);
            for (size_t i = 0; i < n; i++)
                dd_hostport_release(&v[i]);
            free(v);
            return DD_EINVAL;
        }
        v = dd_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = hp;
        if (!c)
            break;
        p = c + 1;
    }
    *out = v;
    *nout = n;
    return 0;
}

int dd_sentinel_check_addrs(const char *addrs, char *err, size_t errlen)
{
    dd_hostport *v;
    size_t n;
    int rc = parse_addrs(addrs, &v, &n, err, errlen);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        dd_hostport_release(&v[i]);
    free(v);
    return 0;
}

const char *dd_sentinel_addrs(const dd_sentinel *sn)
{
    return sn->addrs_str;
}

const char *dd_sentinel_master_name(const dd_sentinel *sn)
{
    return sn->name;
}

const char *dd_sentinel_last_error(const dd_sentinel *sn)
{
    return sn->last_error;
}

static const char *hp_str(const dd_hostport *hp, char *buf, size_t len)
{
    dd_msgf(buf, len, hp->ipv6 ? "[%s]:%d" : "%s:%d", hp->host, hp->port);
    return buf;
}

/* ---- resolution ------------------------------------------------------------ */

static void res_next(dd_sentinel *sn);
static void rtimer_cb(uv_timer_t *t);

static void res_note(dd_sentinel *sn, const char *fmt, const char *what)
{
    char a[300], one[400];
    dd_msgf(one, sizeof(one), fmt, what);
    size_t l = strlen(sn->round_err);
    dd_msgf(sn->round_err + l, sizeof(sn->round_err) - l, "%s%s: %s", l ? "; " : "",
            hp_str(&sn->addrs[sn->ridx], a, sizeof(a)), one);
}

static void res_finish(dd_sentinel *sn, int status, const char *host, int port)
{
    dd_sentinel_resolve_cb *cb = sn->rcb;
    void *arg = sn->rarg;
    sn->resolving = false;
    sn->rcb = NULL;
    uv_timer_stop(&sn->rtimer);
    if (status < 0) {
        if (status == -ENOENT)
            dd_msgf(sn->last_error, sizeof(sn->last_error),
                    "no sentinel of %s knows the master name '%s' (check --redis-master-name "
                    "against `sentinel monitor` in the sentinels' configuration): %s",
                    sn->addrs_str, sn->name, sn->round_err);
        else if (status == -EACCES)
            dd_msgf(sn->last_error, sizeof(sn->last_error),
                    "the sentinels %s refused authentication (DISPATCHD_REDIS_SENTINEL_PASSWORD "
                    "or --redis-sentinel-password-file; sentinel ACL users are not supported): %s",
                    sn->addrs_str, sn->round_err);
        else
            dd_msgf(sn->last_error, sizeof(sn->last_error),
                    "no sentinel of %s named a primary for '%s': %s", sn->addrs_str, sn->name,
                    sn->round_err);
    }
    cb(status, host, port, arg);
}

/* The current sentinel is done with (answered badly or not at all): on to
 * the next one. dying: its context is being freed by hiredis. */
static void res_skip(dd_sentinel *sn, bool dying)
{
    redisAsyncContext *ac = sn->res_ac;
    sn->res_ac = NULL;
    uv_timer_stop(&sn->rtimer);
    sconn_drop(ac, dying);
    sn->ridx++;
    res_next(sn);
}

enum { TAG_AUTH = 1, TAG_ADDR = 2 };

static void res_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    dd_sentinel *sn = ac->data;
    redisReply *rep = reply;
    int tag = (int)(intptr_t)priv;
    if (!sn || ac != sn->res_ac || !rep)
        return; /* a dropped context, or the disconnect callback decides */
    sn->nanswered += tag == TAG_ADDR || rep->type == REDIS_REPLY_ERROR;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (tag == TAG_AUTH || !strncmp(rep->str, "NOAUTH", 6) ||
            !strncmp(rep->str, "WRONGPASS", 9)) {
            sn->nauth++;
            res_note(sn, "authentication refused (%.200s)", rep->str);
        } else {
            res_note(sn, "error reply (%.200s)", rep->str);
        }
        res_skip(sn, false);
        return;
    }
    if (tag == TAG_AUTH)
        return;
    if (rep->type == REDIS_REPLY_NIL) {
        sn->nunknown++;
        res_note(sn, "does not know master '%s'", sn->name);
        res_skip(sn, false);
        return;
    }
    long port = 0;
    char *end = NULL;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_STRING) {
        errno = 0;
        port = strtol(rep->element[1]->str, &end, 10);
    }
    if (!end || *end || errno || port < 1 || port > 65535 || !rep->element[0]->len) {
        res_note(sn, "unexpected answer to SENTINEL %s", "get-master-addr-by-name");
        res_skip(sn, false);
        return;
    }
    char *host = dd_strdup(rep->element[0]->str);
    sn->res_ac = NULL;
    sconn_drop(ac, false); /* freed once this callback returns */
    res_finish(sn, 0, host, (int)port);
    free(host);
}

static void res_on_connect(const redisAsyncContext *ac, int status)
{
    dd_sentinel *sn = ac->data;
    if (!sn || ac != sn->res_ac || status == REDIS_OK)
        return;
    res_note(sn, "cannot connect (%s)", ac->errstr[0] ? ac->errstr : "unknown error");
    res_skip(sn, true);
}

static void res_on_disconnect(const redisAsyncContext *ac, int status)
{
    dd_sentinel *sn = ac->data;
    if (!sn || ac != sn->res_ac)
        return;
    res_note(sn, "connection lost (%s)", ac->errstr[0] ? ac->errstr : "closed by peer");
    res_skip(sn, true);
}

static void res_timeout(dd_sentinel *sn)
{
    char ms[32];
    snprintf(ms, sizeof(ms), "%lld", (long long)sn->timeout_ms);
    res_note(sn, "no answer within %s ms", ms);
    res_skip(sn, false);
}

static void res_next(dd_sentinel *sn)
{
    while (sn->ridx < sn->n) {
        char err[200];
        redisAsyncContext *ac = sconn_open(sn, &sn->addrs[sn->ridx], false, err, sizeof(err));
        if (!ac) {
            res_note(sn, "cannot connect (%s)", err);
            sn->ridx++;
            continue;
        }
        sn->res_ac = ac;
        const char *auth[] = {"AUTH", sn->password};
        const char *q[] = {"SENTINEL", "get-master-addr-by-name", sn->name};
        if ((sn->password && sconn_cmd(ac, res_reply, TAG_AUTH, 2, auth) < 0) ||
            sconn_cmd(ac, res_reply, TAG_ADDR, 3, q) < 0) {
            res_note(sn, "cannot send (%s)", "hiredis refused the command");
            sn->res_ac = NULL;
            sconn_drop(ac, false);
            sn->ridx++;
            continue;
        }
        uv_timer_start(&sn->rtimer, rtimer_cb, (uint64_t)sn->timeout_ms, 0);
        return;
    }
    int st = DD_EUNAVAIL;
    if (sn->nunknown > 0 && sn->nunknown == sn->nanswered)
        st = -ENOENT;
    else if (sn->nauth > 0 && sn->nauth == sn->nanswered)
        st = -EACCES;
    res_finish(sn, st, NULL, 0);
}

void dd_sentinel_cancel(dd_sentinel *sn)
{
    if (!sn || !sn->resolving)
        return;
    redisAsyncContext *ac = sn->res_ac;
    sn->res_ac = NULL;
    sn->resolving = false;
    sn->rcb = NULL;
    uv_timer_stop(&sn->rtimer);
    sconn_drop(ac, false);
}

void dd_sentinel_resolve(dd_sentinel *sn, dd_sentinel_resolve_cb *cb, void *arg)
{
    dd_sentinel_cancel(sn);
    sn->resolving = true;
    sn->rcb = cb;
    sn->rarg = arg;
    sn->ridx = 0;
    sn->nanswered = sn->nunknown = sn->nauth = 0;
    sn->round_err[0] = '\0';
    /* never inside the caller: a 0 ms timer starts the round, so cb cannot
     * run before dd_sentinel_resolve has returned */
    uv_timer_start(&sn->rtimer, rtimer_cb, 0, 0);
}

/* The timer starts the round (dd_sentinel_resolve) and then bounds each
 * sentinel's answer: one callback for both, told apart by res_ac. */
static void rtimer_cb(uv_timer_t *t)
{
    dd_sentinel *sn = t->data;
    if (!sn->resolving)
        return;
    if (sn->res_ac)
        res_timeout(sn);
    else
        res_next(sn);
}

/* ---- +switch-master --------------------------------------------------------- */

static void sub_start(dd_sentinel *sn);

static void stimer_cb(uv_timer_t *t)
{
    sub_start(t->data);
}

static void sub_retry(dd_sentinel *sn, bool dying, const char *why)
{
    char a[300];
    redisAsyncContext *ac = sn->sub_ac;
    sn->sub_ac = NULL;
    sconn_drop(ac, dying);
    if (sn->closing)
        return;
    int64_t delay = dd_backoff_next(&sn->sback);
    dd_warn(sn->ctx.log, "sentinel_subscription_lost", "sentinel=%s error=%s retry_ms=%lld",
            hp_str(&sn->addrs[sn->sidx % sn->n], a, sizeof(a)), why, (long long)delay);
    sn->sidx++; /* the next one in the list */
    uv_timer_start(&sn->stimer, stimer_cb, (uint64_t)delay, 0);
}

static bool is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static void sub_msg(redisAsyncContext *ac, void *reply, void *priv)
{
    dd_sentinel *sn = ac->data;
    redisReply *rep = reply;
    (void)priv;
    if (!sn || ac != sn->sub_ac || !rep)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[300];
        dd_msgf(why, sizeof(why), "%s", rep->str);
        sub_retry(sn, false, why);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || !is_str(rep->element[0]))
        return;
    char a[300];
    if (!strcmp(rep->element[0]->str, "subscribe")) {
        dd_backoff_reset(&sn->sback);
        dd_info(sn->ctx.log, "sentinel_subscribed", "sentinel=%s channel=+switch-master",
                hp_str(&sn->addrs[sn->sidx % sn->n], a, sizeof(a)));
        return;
    }
    if (strcmp(rep->element[0]->str, "message") || !is_str(rep->element[2]))
        return;
    /* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
    char name[256], oldip[64], newip[64];
    int oldport, newport;
    if (sscanf(rep->element[2]->str, "%255s %63s %d %63s %d", name, oldip, &oldport, newip,
               &newport) != 5 ||
        strcmp(name, sn->name) != 0 || newport < 1 || newport > 65535)
        return;
    sn->on_switch(newip, newport, sn->arg);
}

static void sub_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    dd_sentinel *sn = ac->data;
    redisReply *rep = reply;
    (void)priv;
    if (!sn || ac != sn->sub_ac || !rep || rep->type != REDIS_REPLY_ERROR)
        return;
    char why[300];
    dd_msgf(why, sizeof(why), "authentication refused (%s)", rep->str);
    sub_retry(sn, false, why);
}

static void sub_on_connect(const redisAsyncContext *ac, int status)
{
    dd_sentinel *sn = ac->data;
    if (!sn || ac != sn->sub_ac || status == REDIS_OK)
        return;
    sub_retry(sn, true, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void sub_on_disconnect(const redisAsyncContext *ac, int status)
{
    dd_sentinel *sn = ac->data;
    if (!sn || ac != sn->sub_ac)
        return;
    sub_retry(sn, true, ac->errstr[0] ? ac->errstr : "closed by peer");
}

static void sub_start(dd_sentinel *sn)
{
    char err[200];
    if (sn->closing)
        return;
    redisAsyncContext *ac = sconn_open(sn, &sn->addrs[sn->sidx % sn->n], true, err, sizeof(err));
    if (!ac) {
        sub_retry(sn, false, err);
        return;
    }
    sn->sub_ac = ac;
    const char *auth[] = {"AUTH", sn->password};
    const char *sub[] = {"SUBSCRIBE", "+switch-master"};
    if ((sn->password && sconn_cmd(ac, sub_auth, 0, 2, auth) < 0) ||
        sconn_cmd(ac, sub_msg, 0, 2, sub) < 0)
        sub_retry(sn, false, "hiredis refused the command");
}

/* ---- lifetime ---------------------------------------------------------------- */

int dd_sentinel_open(const dd_ctx *ctx, const dd_sentinel_opts *o, dd_sentinel **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!o->master_name || !*o->master_name) {
        dd_msgf(err, errlen, "missing the sentinel master name (--redis-master-name)");
        return DD_EINVAL;
    }
    dd_sentinel *sn = dd_xcalloc(1, sizeof(*sn));
    int rc = parse_addrs(o->addrs, &sn->addrs, &sn->n, err, errlen);
    if (rc < 0) {
        free(sn);
        return rc;
    }
    sn->ctx = *ctx;
    sn->addrs_str = dd_strdup(o->addrs);
    sn->name = dd_strdup(o->master_name);
    sn->password = o->password && *o->password ? dd_strdup(o->password) : NULL;
    if (sn->password && ctx->log)
        dd_log_add_secret(ctx->log, sn->password);
    sn->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 1000;
    sn->on_switch = o->on_switch;
    sn->arg = o->arg;
    dd_backoff_init(&sn->sback, 100, 5000, o->seed);
    uv_timer_init(ctx->loop, &sn->rtimer);
    uv_timer_init(ctx->loop, &sn->stimer);
    sn->rtimer.data = sn->stimer.data = sn;
    sn->open_timers = 2;
    *out = sn;
    if (sn->on_switch)
        sub_start(sn);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    dd_sentinel *sn = h->data;
    if (--sn->open_timers > 0)
        return;
    for (size_t i = 0; i < sn->n; i++)
        dd_hostport_release(&sn->addrs[i]);
    free(sn->addrs);
    free(sn->addrs_str);
    free(sn->name);
    dd_secret_free(sn->password);
    free(sn);
}

void dd_sentinel_close(dd_sentinel *sn)
{
    if (!sn || sn->closing)
        return;
    dd_sentinel_cancel(sn);
    sn->closing = true;
    redisAsyncContext *ac = sn->sub_ac;
    sn->sub_ac = NULL;
    sconn_drop(ac, false);
    uv_close((uv_handle_t *)&sn->rtimer, on_timer_closed);
    uv_close((uv_handle_t *)&sn->stimer, on_timer_closed);
}
