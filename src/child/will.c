/* will.c - pack, unpack and run a dispatchd's last will (will.h). */
#include "child/will.h"

#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static void dd_will_put(dd_buf *out, const char *key, const char *val)
{
    if (!val)
        return;
    dd_buf_append(out, key, strlen(key) + 1);
    dd_buf_append(out, val, strlen(val) + 1);
}

/* The string fields, each packed under its name when set and not empty (an
 * empty one means the same as none everywhere it is used): adding a
 * connection setting is one line here and one in will.h. */
static const struct dd_will_str {
    const char *key;
    size_t off;
} dd_will_strs[] = {
    {"url", offsetof(dd_will, url)},
    {"username", offsetof(dd_will, username)},
    {"password", offsetof(dd_will, password)},
    {"tls_ca_file", offsetof(dd_will, tls_ca_file)},
    {"tls_cert_file", offsetof(dd_will, tls_cert_file)},
    {"tls_key_file", offsetof(dd_will, tls_key_file)},
    {"sentinels", offsetof(dd_will, sentinels)},
    {"master_name", offsetof(dd_will, master_name)},
    {"sentinel_password", offsetof(dd_will, sentinel_password)},
    {"workflow_id", offsetof(dd_will, workflow_id)},
    {"run_id", offsetof(dd_will, run_id)},
    {"first_run_id", offsetof(dd_will, first_run_id)},
    {"server_id", offsetof(dd_will, server_id)},
};
#define DD_WILL_NSTRS (sizeof(dd_will_strs) / sizeof(dd_will_strs[0]))

static const char *dd_will_str_get(const dd_will *w, size_t i)
{
    return *(const char *const *)((const char *)w + dd_will_strs[i].off);
}

static void dd_will_str_set(dd_will *w, size_t i, const char *v)
{
    *(const char **)((char *)w + dd_will_strs[i].off) = v;
}

void dd_will_pack(dd_buf *out, const dd_will *w)
{
    char n[24];
    for (size_t i = 0; i < DD_WILL_NSTRS; i++) {
        const char *v = dd_will_str_get(w, i);
        dd_will_put(out, dd_will_strs[i].key, v && *v ? v : NULL);
    }
    if (w->sentinels && *w->sentinels) { /* the db only matters through them */
        snprintf(n, sizeof(n), "%d", w->db);
        dd_will_put(out, "db", n);
    }
    snprintf(n, sizeof(n), "%lld", (long long)w->epoch);
    dd_will_put(out, "epoch", n);
    snprintf(n, sizeof(n), "%lld", (long long)w->ack_ttl_ms);
    dd_will_put(out, "ack_ttl_ms", n);
    dd_will_put(out, "mode", w->expire ? "expire" : "delete");
}

int dd_will_unpack(char *data, size_t len, dd_will *w)
{
    memset(w, 0, sizeof(*w));
    size_t i = 0;
    while (i < len) {
        char *key = data + i;
        char *kend = memchr(key, '\0', len - i);
        if (!kend || (size_t)(kend - data) + 1 >= len)
            return DD_EINVAL;
        char *val = kend + 1;
        char *vend = memchr(val, '\0', len - (size_t)(val - data));
        if (!vend)
            return DD_EINVAL;
        i = (size_t)(vend - data) + 1;
        size_t f = 0;
        while (f < DD_WILL_NSTRS && strcmp(key, dd_will_strs[f].key) != 0)
            f++;
        if (f < DD_WILL_NSTRS)
            dd_will_str_set(w, f, val);
        else if (!strcmp(key, "db"))
            w->db = atoi(val);
        else if (!strcmp(key, "epoch"))
            w->epoch = atoll(val);
        else if (!strcmp(key, "ack_ttl_ms"))
            w->ack_ttl_ms = atoll(val);
        else if (!strcmp(key, "mode"))
            w->expire = !strcmp(val, "expire");
        /* an unknown key is a newer dispatchd's: ignored */
    }
    if (!w->url || !w->workflow_id || !w->run_id || !w->server_id || w->epoch <= 0)
        return DD_EINVAL;
    return 0;
}

/* ---- running it --------------------------------------------------------- */

bool dd_will_same_conn(const dd_will *a, const dd_will *b)
{
    /* every connection field (the strings before workflow_id in dd_will_strs) */
    for (size_t i = 0; i < DD_WILL_NSTRS && strcmp(dd_will_strs[i].key, "workflow_id"); i++) {
        const char *x = dd_will_str_get(a, i), *y = dd_will_str_get(b, i);
        if (strcmp(x ? x : "", y ? y : ""))
            return false;
    }
    return a->db == b->db;
}

int dd_will_store_open(const dd_ctx *ctx, const dd_will *w, dd_store **out, char *err,
                       size_t errlen)
{
    dd_store_opts so = {.url = w->sentinels && *w->sentinels ? NULL : w->url,
                        .username = w->username,
                        .password = w->password,
                        .tls_ca_file = w->tls_ca_file,
                        .tls_cert_file = w->tls_cert_file,
                        .tls_key_file = w->tls_key_file,
                        .sentinels = w->sentinels,
                        .master_name = w->master_name,
                        .sentinel_password = w->sentinel_password,
                        .db = w->db,
                        .cmd_timeout_ms = 1000,
                        .reconnect_base_ms = 50,
                        .reconnect_cap_ms = 200};
    return dd_store_open(ctx, &so, out, err, errlen);
}

struct dd_will_job {
    const dd_will *w;
    dd_store *s;
    uv_timer_t retry;
    uint64_t end_ms; /* monotonic */
    int status;
    char holder[200];
    dd_will_done_cb *cb;
    void *arg;
};

static void dd_will_try(dd_will_job *j);

static void dd_will_job_closed(uv_handle_t *h)
{
    dd_will_job *j = h->data;
    dd_will_done_cb *cb = j->cb;
    void *arg = j->arg;
    int st = j->status;
    char holder[sizeof(j->holder)];
    memcpy(holder, j->holder, sizeof(holder));
    free(j);
    cb(st, holder, arg);
}

static void dd_will_job_end(dd_will_job *j, int st)
{
    j->status = st;
    uv_timer_stop(&j->retry);
    uv_close((uv_handle_t *)&j->retry, dd_will_job_closed);
}

static void dd_will_retry_fire(uv_timer_t *t)
{
    dd_will_try(t->data);
}

static void dd_will_again(dd_will_job *j, int st)
{
    if (dd_mono_ms() + 100 >= j->end_ms) {
        dd_will_job_end(j, st);
        return;
    }
    uv_timer_start(&j->retry, dd_will_retry_fire, 100, 0);
}

static void dd_will_answer(int st, const dd_store_owner *res, void *arg)
{
    dd_will_job *j = arg;
    if (st == DD_EUNAVAIL || st == DD_ETIMEOUT) { /* Redis away: again, bounded */
        dd_will_again(j, st);
        return;
    }
    if (st == DD_EFENCED && res)
        snprintf(j->holder, sizeof(j->holder), "%s", res->server_id ? res->server_id : "");
    dd_will_job_end(j, st);
}

static void dd_will_try(dd_will_job *j)
{
    const dd_will *w = j->w;
    dd_store_let_go_args a = {.workflow_id = w->workflow_id,
                              .run_id = w->run_id,
                              .first_run_id = w->first_run_id,
                              .epoch = w->epoch,
                              .expire = w->expire,
                              .ack_holder = w->server_id,
                              .ack_ttl_ms = w->ack_ttl_ms};
    int rc = dd_store_let_go(j->s, &a, dd_will_answer, j);
    if (rc == DD_EUNAVAIL || rc == DD_EBUSY) /* between connection attempts */
        dd_will_again(j, rc);
    else if (rc < 0)
        dd_will_job_end(j, rc);
}

void dd_will_job_start(uv_loop_t *loop, dd_store *s, const dd_will *w, int64_t timeout_ms,
                       dd_will_done_cb *cb, void *arg)
{
    dd_will_job *j = dd_xcalloc(1, sizeof(*j));
    *j = (dd_will_job){.w = w, .s = s, .end_ms = dd_mono_ms() + (uint64_t)timeout_ms,
                       .status = DD_ETIMEOUT, .cb = cb, .arg = arg};
    uv_timer_init(loop, &j->retry);
    j->retry.data = j;
    dd_will_try(j);
}

typedef struct dd_will_one {
    bool done;
    int status;
    char *holder;
    size_t holderlen;
} dd_will_one;

static void dd_will_one_done(int st, const char *holder, void *arg)
{
    dd_will_one *one = arg;
    one->status = st;
    if (one->holder && one->holderlen)
        snprintf(one->holder, one->holderlen, "%s", holder);
    one->done = true;
}

int dd_will_run(const dd_will *w, dd_log *log, int64_t timeout_ms, char *holder,
                size_t holderlen, char *err, size_t errlen)
{
    if (holder && holderlen)
        holder[0] = '\0';
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) {
        snprintf(err, errlen, "cannot make an event loop");
        return DD_EINVAL;
    }
    dd_ctx ctx = {.loop = &loop, .log = log};
    dd_store *s = NULL;
    int rc = dd_will_store_open(&ctx, w, &s, err, errlen);
    if (rc == 0) {
        dd_will_one one = {.holder = holder, .holderlen = holderlen};
        dd_will_job_start(&loop, s, w, timeout_ms, dd_will_one_done, &one);
        /* bounded: every step has a timeout, and the retries end at end_ms */
        while (!one.done && uv_run(&loop, UV_RUN_ONCE))
            ;
        rc = one.done ? one.status : DD_ETIMEOUT;
        if (rc < 0 && rc != DD_EFENCED)
            snprintf(err, errlen, "%s%s%s", dd_strerror(rc),
                     *dd_store_last_error(s) ? ": " : "", dd_store_last_error(s));
        dd_store_close(s, NULL, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* the store's and our handles close */
    uv_loop_close(&loop);
    return rc;
}
