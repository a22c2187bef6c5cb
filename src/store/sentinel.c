/* sentinel.c - see sentinel.h.
 *
 * Each connection to a sentinel is a dd_store_conn (store/conn.h) on the
 * loop: one short-lived per sentinel asked in a resolution round, one
 * long-lived in subscribe mode for +switch-master. A closed connection
 * delivers nothing more, so dropping one is all it takes to ignore it. */
#include "store/sentinel.h"
#include "store/conn.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/hostport.h"
#include "core/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
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
    dd_store_conn *res;
    bool res_up; /* res is connected (else a failure is "cannot connect") */
    uv_timer_t rtimer;
    int nanswered, nunknown, nauth;
    char round_err[1024];
    char last_error[1200];

    /* +switch-master subscription */
    dd_store_conn *sub;
    bool sub_ok;     /* SUBSCRIBE confirmed */
    bool ping_owed;  /* a keepalive PING not answered yet */
    size_t sidx;
    uv_timer_t stimer; /* reconnect backoff, or the keepalive PING */
    dd_backoff sback;
};

/* ---- list ------------------------------------------------------------------ */

static int dd_sentinel_parse_addrs(const char *addrs, dd_hostport **out, size_t *nout, char *err,
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
    int rc = dd_sentinel_parse_addrs(addrs, &v, &n, err, errlen);
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

static const char *dd_sentinel_hp_str(const dd_hostport *hp, char *buf, size_t len)
{
    dd_msgf(buf, len, hp->ipv6 ? "[%s]:%d" : "%s:%d", hp->host, hp->port);
    return buf;
}

/* ---- I/O ------------------------------------------------------------------- */

static dd_store_conn *dd_sentinel_sconn_open(dd_sentinel *sn, const dd_hostport *hp, bool sub, char *err,
                                 size_t errlen);
static void dd_sentinel_sconn_drop(dd_store_conn **c)
{
    if (*c)
        dd_store_conn_close(*c, NULL, NULL);
    *c = NULL;
}

enum { TAG_AUTH = 1, TAG_ADDR = 2, TAG_PING = 3 };

static int dd_sentinel_sconn_cmd(dd_store_conn *c, int tag, bool expect_reply, int argc, const char **argv)
{
    return dd_store_conn_command(c, argc, argv, NULL, expect_reply, (void *)(intptr_t)tag);
}

/* ---- resolution ------------------------------------------------------------ */

static void dd_sentinel_res_next(dd_sentinel *sn);

static void dd_sentinel_res_note(dd_sentinel *sn, const char *fmt, const char *what)
{
    char a[300], one[400];
    dd_msgf(one, sizeof(one), fmt, what);
    size_t l = strlen(sn->round_err);
    dd_msgf(sn->round_err + l, sizeof(sn->round_err) - l, "%s%s: %s", l ? "; " : "",
            dd_sentinel_hp_str(&sn->addrs[sn->ridx], a, sizeof(a)), one);
}

static void dd_sentinel_res_finish(dd_sentinel *sn, int status, const char *host, int port)
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
 * the next one. */
static void dd_sentinel_res_skip(dd_sentinel *sn)
{
    dd_sentinel_sconn_drop(&sn->res);
    uv_timer_stop(&sn->rtimer);
    sn->ridx++;
    dd_sentinel_res_next(sn);
}

static void dd_sentinel_res_reply(void *arg, void *priv, redisReply *rep)
{
    dd_sentinel *sn = arg;
    int tag = (int)(intptr_t)priv;
    sn->nanswered += tag == TAG_ADDR || rep->type == REDIS_REPLY_ERROR;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (tag == TAG_AUTH || !strncmp(rep->str, "NOAUTH", 6) ||
            !strncmp(rep->str, "WRONGPASS", 9)) {
            sn->nauth++;
            dd_sentinel_res_note(sn, "authentication refused (%.200s)", rep->str);
        } else {
            dd_sentinel_res_note(sn, "error reply (%.200s)", rep->str);
        }
        dd_sentinel_res_skip(sn);
        return;
    }
    if (tag == TAG_AUTH)
        return;
    if (rep->type == REDIS_REPLY_NIL) {
        sn->nunknown++;
        dd_sentinel_res_note(sn, "does not know master '%s'", sn->name);
        dd_sentinel_res_skip(sn);
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
        dd_sentinel_res_note(sn, "unexpected answer to SENTINEL %s", "get-master-addr-by-name");
        dd_sentinel_res_skip(sn);
        return;
    }
    char *host = dd_strdup(rep->element[0]->str); /* rep goes with the connection */
    dd_sentinel_sconn_drop(&sn->res);
    dd_sentinel_res_finish(sn, 0, host, (int)port);
    free(host);
}

static void dd_sentinel_res_fail(void *arg, int status, const char *msg)
{
    dd_sentinel *sn = arg;
    (void)status;
    dd_sentinel_res_note(sn, sn->res_up ? "connection lost (%s)" : "cannot connect (%s)", msg);
    dd_sentinel_res_skip(sn);
}

static void dd_sentinel_res_connected(void *arg)
{
    ((dd_sentinel *)arg)->res_up = true;
}

static void dd_sentinel_res_timeout(dd_sentinel *sn)
{
    char ms[32];
    snprintf(ms, sizeof(ms), "%lld", (long long)sn->timeout_ms);
    dd_sentinel_res_note(sn, "no answer within %s ms", ms);
    dd_sentinel_res_skip(sn);
}

/* The timer starts the round (dd_sentinel_resolve) and then bounds each
 * sentinel's answer: one callback for both, told apart by res. */
static void dd_sentinel_rtimer_cb(uv_timer_t *t)
{
    dd_sentinel *sn = t->data;
    if (!sn->resolving)
        return;
    if (sn->res)
        dd_sentinel_res_timeout(sn);
    else
        dd_sentinel_res_next(sn);
}

static void dd_sentinel_res_next(dd_sentinel *sn)
{
    while (sn->ridx < sn->n) {
        char err[200];
        dd_store_conn *c = dd_sentinel_sconn_open(sn, &sn->addrs[sn->ridx], false, err, sizeof(err));
        if (!c) {
            dd_sentinel_res_note(sn, "cannot connect (%s)", err);
            sn->ridx++;
            continue;
        }
        sn->res = c;
        sn->res_up = false;
        const char *auth[] = {"AUTH", sn->password};
        const char *q[] = {"SENTINEL", "get-master-addr-by-name", sn->name};
        if ((sn->password && dd_sentinel_sconn_cmd(c, TAG_AUTH, true, 2, auth) < 0) ||
            dd_sentinel_sconn_cmd(c, TAG_ADDR, true, 3, q) < 0) {
            dd_sentinel_res_note(sn, "cannot send (%s)", "the connection refused the command");
            dd_sentinel_sconn_drop(&sn->res);
            sn->ridx++;
            continue;
        }
        uv_timer_start(&sn->rtimer, dd_sentinel_rtimer_cb, (uint64_t)sn->timeout_ms, 0);
        return;
    }
    int st = DD_EUNAVAIL;
    if (sn->nunknown > 0 && sn->nunknown == sn->nanswered)
        st = -ENOENT;
    else if (sn->nauth > 0 && sn->nauth == sn->nanswered)
        st = -EACCES;
    dd_sentinel_res_finish(sn, st, NULL, 0);
}

void dd_sentinel_cancel(dd_sentinel *sn)
{
    if (!sn || !sn->resolving)
        return;
    dd_sentinel_sconn_drop(&sn->res);
    sn->resolving = false;
    sn->rcb = NULL;
    uv_timer_stop(&sn->rtimer);
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
    uv_timer_start(&sn->rtimer, dd_sentinel_rtimer_cb, 0, 0);
}

/* ---- +switch-master --------------------------------------------------------- */

static void dd_sentinel_sub_start(dd_sentinel *sn);
static void dd_sentinel_sub_retry(dd_sentinel *sn, const char *why);

static void dd_sentinel_stimer_cb(uv_timer_t *t)
{
    dd_sentinel *sn = t->data;
    const char *ping[] = {"PING"};
    if (!sn->sub) {
        dd_sentinel_sub_start(sn);
        return;
    }
    /* connected: the keepalive. A sentinel that went silent (a black-holed
     * network keeps the socket open) would hide every switch from us. */
    if (sn->ping_owed) {
        dd_sentinel_sub_retry(sn, "no answer to PING");
        return;
    }
    sn->ping_owed = true;
    if (dd_sentinel_sconn_cmd(sn->sub, TAG_PING, true, 1, ping) < 0) {
        dd_sentinel_sub_retry(sn, "cannot send PING");
        return;
    }
    uv_timer_start(&sn->stimer, dd_sentinel_stimer_cb, (uint64_t)(sn->timeout_ms * 2), 0);
}

static void dd_sentinel_sub_retry(dd_sentinel *sn, const char *why)
{
    char a[300];
    dd_sentinel_sconn_drop(&sn->sub);
    sn->sub_ok = false;
    sn->ping_owed = false;
    if (sn->closing)
        return;
    int64_t delay = dd_backoff_next(&sn->sback);
    dd_warn(sn->ctx.log, "sentinel_subscription_lost", "sentinel=%s error=%s retry_ms=%lld",
            dd_sentinel_hp_str(&sn->addrs[sn->sidx % sn->n], a, sizeof(a)), why, (long long)delay);
    sn->sidx++; /* the next one in the list */
    uv_timer_stop(&sn->stimer);
    uv_timer_start(&sn->stimer, dd_sentinel_stimer_cb, (uint64_t)delay, 0);
}

static bool dd_sentinel_is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* AUTH's and PING's answers (SUBSCRIBE's come as pushes) */
static void dd_sentinel_sub_reply(void *arg, void *priv, redisReply *rep)
{
    dd_sentinel *sn = arg;
    char why[300];
    if (rep->type == REDIS_REPLY_ERROR) {
        dd_msgf(why, sizeof(why), "%s (%s)",
                (int)(intptr_t)priv == TAG_AUTH ? "authentication refused" : "error reply",
                rep->str);
        dd_sentinel_sub_retry(sn, why);
        return;
    }
    if ((int)(intptr_t)priv == TAG_PING)
        sn->ping_owed = false;
}

static void dd_sentinel_sub_push(void *arg, redisReply *rep)
{
    dd_sentinel *sn = arg;
    if (rep->type == REDIS_REPLY_ERROR) { /* conn.c: the SUBSCRIBE was refused */
        char why[300];
        dd_msgf(why, sizeof(why), "SUBSCRIBE +switch-master refused (%s)", rep->str);
        dd_sentinel_sub_retry(sn, why);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || !dd_sentinel_is_str(rep->element[0]))
        return;
    char a[300];
    if (!strcmp(rep->element[0]->str, "subscribe")) {
        sn->sub_ok = true;
        sn->ping_owed = false;
        dd_backoff_reset(&sn->sback);
        dd_info(sn->ctx.log, "sentinel_subscribed", "sentinel=%s channel=+switch-master",
                dd_sentinel_hp_str(&sn->addrs[sn->sidx % sn->n], a, sizeof(a)));
        uv_timer_stop(&sn->stimer);
        uv_timer_start(&sn->stimer, dd_sentinel_stimer_cb, (uint64_t)(sn->timeout_ms * 2), 0);
        return;
    }
    if (strcmp(rep->element[0]->str, "message") || !dd_sentinel_is_str(rep->element[2]))
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

static void dd_sentinel_sub_fail(void *arg, int status, const char *msg)
{
    (void)status;
    dd_sentinel_sub_retry(arg, msg);
}

static void dd_sentinel_sub_start(dd_sentinel *sn)
{
    char err[200];
    if (sn->closing)
        return;
    dd_store_conn *c = dd_sentinel_sconn_open(sn, &sn->addrs[sn->sidx % sn->n], true, err, sizeof(err));
    if (!c) {
        dd_sentinel_sub_retry(sn, err);
        return;
    }
    sn->sub = c;
    const char *auth[] = {"AUTH", sn->password};
    const char *sub[] = {"SUBSCRIBE", "+switch-master"};
    if ((sn->password && dd_sentinel_sconn_cmd(c, TAG_AUTH, true, 2, auth) < 0) ||
        dd_sentinel_sconn_cmd(c, 0, false, 2, sub) < 0) {
        dd_sentinel_sub_retry(sn, "the connection refused the command");
        return;
    }
    /* not confirmed within the timeout: the next sentinel */
    uv_timer_stop(&sn->stimer);
    sn->ping_owed = true; /* the confirmation stands in for the first PONG */
    uv_timer_start(&sn->stimer, dd_sentinel_stimer_cb, (uint64_t)(sn->timeout_ms * 2), 0);
}

static dd_store_conn *dd_sentinel_sconn_open(dd_sentinel *sn, const dd_hostport *hp, bool sub, char *err,
                                 size_t errlen)
{
    dd_store_conn *c = NULL;
    dd_store_conn_opts o = {.host = hp->host,
                            .port = hp->port,
                            .connect_timeout_ms = sn->timeout_ms,
                            .on_connected = sub ? NULL : dd_sentinel_res_connected,
                            .on_reply = sub ? dd_sentinel_sub_reply : dd_sentinel_res_reply,
                            .on_push = sub ? dd_sentinel_sub_push : NULL,
                            .on_fail = sub ? dd_sentinel_sub_fail : dd_sentinel_res_fail,
                            .arg = sn};
    if (dd_store_conn_new(sn->ctx.loop, &o, &c, err, errlen) < 0)
        return NULL;
    return c;
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
    int rc = dd_sentinel_parse_addrs(o->addrs, &sn->addrs, &sn->n, err, errlen);
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
        uv_timer_start(&sn->stimer, dd_sentinel_stimer_cb, 0, 0); /* sub_start, from the loop */
    return 0;
}

static void dd_sentinel_on_timer_closed(uv_handle_t *h)
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
    dd_sentinel_sconn_drop(&sn->sub);
    uv_close((uv_handle_t *)&sn->rtimer, dd_sentinel_on_timer_closed);
    uv_close((uv_handle_t *)&sn->stimer, dd_sentinel_on_timer_closed);
}
