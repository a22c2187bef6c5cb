/* probe.c - protocol-level health checks (S2): connect to 127.0.0.1:port,
 * send one request, and look at the first bytes of the reply. Redis gets
 * "PING" and must say "+PONG"; Temporal gets an HTTP GET of
 * /api/v1/system-info and must say "HTTP/1.1 200". Everything runs on the
 * loop with a deadline, so a hung server costs one timer, not a thread. */
#include "proc/proc.h"

#include "core/buf.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct dd_probe {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    char *req;
    char *expect;
    size_t expect_len;
    char reply[64];
    size_t reply_len;
    int pending_close;
    bool done;
    int status;
    dd_probe_cb cb;
    void *arg;
} dd_probe;

static void dd_probe_closed(uv_handle_t *h)
{
    dd_probe *p = h->data;
    if (--p->pending_close > 0)
        return;
    p->cb(p->status, p->arg);
    free(p->req);
    free(p->expect);
    free(p);
}

static void dd_probe_finish(dd_probe *p, int status)
{
    if (p->done)
        return;
    p->done = true;
    p->status = status;
    p->pending_close = 2;
    uv_close((uv_handle_t *)&p->tcp, dd_probe_closed);
    uv_close((uv_handle_t *)&p->timer, dd_probe_closed);
}

static void dd_probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    dd_probe *p = h->data;
    buf->base = p->reply + p->reply_len;
    buf->len = sizeof(p->reply) - p->reply_len;
}

static void dd_probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    dd_probe *p = s->data;
    if (n < 0) {
        dd_probe_finish(p, n == UV_EOF ? DD_EUNHEALTHY : (int)n);
        return;
    }
    p->reply_len += (size_t)n;
    size_t cmp = p->reply_len < p->expect_len ? p->reply_len : p->expect_len;
    if (memcmp(p->reply, p->expect, cmp) != 0)
        dd_probe_finish(p, DD_EUNHEALTHY);
    else if (p->reply_len >= p->expect_len)
        dd_probe_finish(p, 0);
    else if (p->reply_len == sizeof(p->reply))
        dd_probe_finish(p, DD_EUNHEALTHY);
}

static void dd_probe_written(uv_write_t *w, int status)
{
    dd_probe *p = w->data;
    if (status < 0)
        dd_probe_finish(p, status);
}

static void dd_probe_connected(uv_connect_t *c, int status)
{
    dd_probe *p = c->data;
    if (p->done)
        return;
    if (status < 0) {
        dd_probe_finish(p, status);
        return;
    }
    uv_buf_t b = uv_buf_init(p->req, (unsigned)strlen(p->req));
    p->write.data = p;
    int rc = uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, dd_probe_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&p->tcp, dd_probe_alloc, dd_probe_read);
    if (rc < 0)
        dd_probe_finish(p, rc);
}

static void dd_probe_timeout(uv_timer_t *t)
{
    dd_probe_finish(t->data, DD_ETIMEOUT);
}

int dd_probe_start(uv_loop_t *loop, int port, const char *req, const char *expect,
                   int64_t timeout_ms, dd_probe_cb cb, void *arg)
{
    dd_probe *p = dd_xcalloc(1, sizeof(*p));
    p->req = dd_strdup(req);
    p->expect = dd_strdup(expect);
    p->expect_len = strlen(expect);
    if (p->expect_len > sizeof(p->reply))
        p->expect_len = sizeof(p->reply);
    p->cb = cb;
    p->arg = arg;
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p->timer.data = p->connect.data = p;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_timer_start(&p->timer, dd_probe_timeout, (uint64_t)timeout_ms, 0);
    int rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&addr,
                            dd_probe_connected);
    if (rc < 0)
        dd_probe_finish(p, rc); /* cb still runs, from the close callbacks */
    return 0;
}

static void dd_probe_sync_cb(int status, void *arg)
{
    *(int *)arg = status;
}

int dd_probe_run(int port, const char *req, const char *expect, int64_t timeout_ms)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    int status = DD_ETIMEOUT;
    dd_probe_start(&loop, port, req, expect, timeout_ms, dd_probe_sync_cb, &status);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return status;
}
