/* http.c - see http.h.
 *
 * One connection = one request. Its life is a small state machine:
 *
 *   READING  -> (head complete or too big) -> WRITING -> (write done)
 *            -> DRAINING (FIN sent, discard input until the peer's EOF)
 *            -> CLOSING (both handles closing; freed in the last close cb)
 *
 * Draining matters: closing a socket that still has unread input makes the
 * kernel send RST, and an RST can destroy the response the client has not
 * read yet (typical with an oversized header answered by 431 while the client
 * is still sending). The per-connection timer bounds every state, so a client
 * that never closes costs at most timeout_ms, and one that has not sent its
 * whole request head within header_timeout_ms is closed then.
 *
 * Slow clients (slowloris): deadlines alone do not keep the endpoint up. A
 * peer holding max_conns connections, one byte at a time and reconnecting
 * when cut off, would own every slot for as long as it likes, and /healthz
 * would go unanswered: a liveness probe failing because of the network, not
 * the process. So a connection at the limit is not refused; it takes the slot
 * of the oldest connection still reading its head (dd_http_victim). A real
 * client (Prometheus, a health probe) sends its whole head at once and is
 * answered on its first read, so it is never the one reading slowly; a slow
 * one is. Evicting the oldest, not the least advanced, also means a probe
 * (the newest connection when it arrives) survives until max_conns - 1 more
 * connections came after it. Its first read must come before that, so
 * accepting pauses for a loop iteration after DD_HTTP_ACCEPT_BURST
 * connections: libuv accepts until the backlog is empty, and clients that
 * reconnect as fast as they are evicted keep it from ever being empty (a
 * measured 26k reconnects/s on loopback reset 1 probe in 9), so without the
 * pause no read would run in between. (Sparing "fresh" connections not read
 * from yet was tried instead: a burst of reconnecting slow clients then fills
 * every slot with fresh ones and the probe is refused.)
 * Connections, fds and memory stay bounded: at most max_conns live, each
 * with a head buffer of at most max_header_bytes that grows only as bytes
 * arrive. An evicted connection's socket is closed at once (uv_close); its
 * memory goes in the next loop iteration, and at most DD_HTTP_MAX_CLOSING
 * wait for that (beyond it new connections are refused). */
#include "metrics/http.h"

#include "core/buf.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/hostport.h"
#include "core/log.h"
#include "metrics/http_parse.h"
#include "metrics/metrics.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

typedef enum dd_http_state {
    DD_HTTP_READING,
    DD_HTTP_WRITING,
    DD_HTTP_DRAINING,
    DD_HTTP_CLOSING,
} dd_http_state;

typedef struct dd_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    struct dd_metrics_http *srv;
    dd_http_state state;
    int open_handles; /* handles not yet closed; freed at 0 */
    bool peer_eof;
    uint64_t accepted_ms; /* uv_now() at accept */
    char *head; /* request head as received (not NUL-terminated); NULL until the first read */
    size_t len;
    size_t cap; /* allocated, grows up to max */
    size_t max; /* max_header_bytes at accept */
    dd_buf resp;
    struct dd_http_conn *prev, *next; /* in accept order */
} dd_http_conn;

/* Connections closed but not yet freed (their close callbacks run in the next
 * loop iteration): one burst of reconnecting clients can evict many in one
 * iteration. About 1.5 KB each. */
#define DD_HTTP_MAX_CLOSING 1024
/* Connections accepted before accepting pauses for one loop iteration, so
 * that reads run in between. Well under max_conns / 2: a probe accepted in
 * one burst reads in the next iteration, after at most two bursts. */
#define DD_HTTP_ACCEPT_BURST 16
/* The listen backlog. Deeper than a pool of slow clients waiting to get back
 * in: on a full accept queue the kernel drops a new SYN, and a probe whose
 * SYN was dropped retries only after 1 s (measured: 128 let 2 probes in 47
 * take 1.03 s under 1,000 reconnecting slow clients). The kernel caps it at
 * net.core.somaxconn (4096 by default since Linux 5.4). */
#define DD_HTTP_BACKLOG 4096
/* At most one eviction warning per this many ms (an attack evicts thousands). */
#define DD_HTTP_EVICT_LOG_MS 60000
/* First head buffer; doubled as needed up to max_header_bytes. */
#define DD_HTTP_HEAD_INITIAL 512

struct dd_metrics_http {
    uv_tcp_t tcp;
    uv_timer_t resume; /* resumes accepting after a pause (DD_HTTP_ACCEPT_BURST) */
    int burst;         /* connections accepted since the last pause */
    bool paused;       /* a connection waits in libuv for uv_accept() */
    uv_loop_t *loop;
    dd_log *log;
    dd_metrics *m;
    dd_metrics_http_ready_fn ready;
    void *ready_arg;
    dd_metrics_http_limits lim;
    char addr[80]; /* as given by the caller, for messages */
    int port;
    dd_http_conn *conns, *last; /* oldest first */
    int nconns;                 /* including those closing */
    int nclosing;
    int nhandles; /* listener, resume timer, connections, rejected sockets still closing */
    bool closing;
    void (*done)(void *); /* dd_metrics_http_close */
    void *done_arg;
    bool full_logged;       /* one warning per burst of rejected connections */
    bool accept_err_logged; /* one warning per burst of accept errors (EMFILE) */
    uint64_t evictions;     /* since the last eviction warning */
    uint64_t evict_log_ms;  /* uv_now() of that warning; 0: none yet */
};

static void dd_http_maybe_free(dd_metrics_http *h)
{
    if (!h->closing || h->nhandles > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

/* ---- listen address ---------------------------------------------------- */

/* Only IP literals: resolving a name here would block the loop, and a
 * metrics endpoint bound to "whatever localhost resolves to" is a surprise.
 * Port 0 asks for any free port. */
static int dd_http_parse_listen(const char *listen, struct sockaddr_storage *ss, char *err,
                                size_t errlen)
{
    dd_hostport hp;
    char msg[160];
    if (dd_hostport_parse(listen, strlen(listen), 0,
                          DD_HOSTPORT_NEED_PORT | DD_HOSTPORT_PORT_ZERO, &hp, msg,
                          sizeof(msg)) < 0) {
        dd_msgf(err, errlen, "invalid listen address '%s': %s", listen, msg);
        return DD_EINVAL;
    }
    /* h->addr holds the whole string; uv_ip6_addr cuts an address before a
     * "%zone" to 39 characters: refuse both rather than cut. */
    const char *pct = strchr(hp.host, '%');
    size_t n = strlen(hp.host);
    int rc = UV_EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (n < 64 && (!pct || pct - hp.host < 40))
        rc = hp.ipv6 ? uv_ip6_addr(hp.host, hp.port, (struct sockaddr_in6 *)ss)
                     : uv_ip4_addr(hp.host, hp.port, (struct sockaddr_in *)ss);
    dd_hostport_release(&hp);
    if (rc == 0)
        return 0;
    dd_msgf(err, errlen,
            "invalid listen address '%s': host must be an IP literal (127.0.0.1, [::1])", listen);
    return DD_EINVAL;
}

/* ---- connections ------------------------------------------------------- */

static void dd_http_conn_closed(uv_handle_t *handle)
{
    dd_http_conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    dd_metrics_http *h = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->last = c->prev;
    h->nconns--;
    h->nclosing--;
    h->nhandles--;
    if (h->nconns < h->lim.max_conns)
        h->full_logged = false;
    dd_buf_release(&c->resp);
    free(c->head);
    free(c);
    dd_http_maybe_free(h);
}

static void dd_http_conn_close(dd_http_conn *c)
{
    if (c->state == DD_HTTP_CLOSING)
        return;
    c->state = DD_HTTP_CLOSING;
    c->srv->nclosing++;
    /* Pending write/shutdown requests are cancelled by uv_close and their
     * callbacks run (with UV_ECANCELED) before the close callback. */
    uv_close((uv_handle_t *)&c->timer, dd_http_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, dd_http_conn_closed);
}

static void dd_http_on_timeout(uv_timer_t *t)
{
    dd_http_conn *c = t->data;
    dd_debug(c->srv->log, "metrics_http_timeout", "state=%d received=%zu", (int)c->state, c->len);
    dd_http_conn_close(c);
}

static void dd_http_on_shutdown(uv_shutdown_t *req, int status)
{
    dd_http_conn *c = req->data;
    if (status < 0 && c->state != DD_HTTP_CLOSING)
        dd_http_conn_close(c);
}

static void dd_http_on_write(uv_write_t *req, int status)
{
    dd_http_conn *c = req->data;
    if (c->state == DD_HTTP_CLOSING)
        return;
    if (status < 0 || c->peer_eof) {
        dd_http_conn_close(c);
        return;
    }
    /* Send our FIN, then wait (bounded by the timer) for the peer's. */
    c->state = DD_HTTP_DRAINING;
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, dd_http_on_shutdown) < 0)
        dd_http_conn_close(c);
}

static const char *dd_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

#define DD_HTTP_TEXT "text/plain; charset=utf-8"
#define DD_HTTP_PROM "text/plain; version=0.0.4; charset=utf-8"

static void dd_http_respond(dd_http_conn *c, int status, const char *ctype, const char *body,
                            size_t bodylen, bool head_only)
{
    dd_buf *r = &c->resp;
    dd_buf_printf(r, "HTTP/1.1 %d %s\r\n", status, dd_http_reason(status));
    dd_buf_printf(r, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, bodylen);
    if (status == 405)
        dd_buf_puts(r, "Allow: GET, HEAD\r\n");
    dd_buf_puts(r, "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
    if (!head_only)
        dd_buf_append(r, body, bodylen);

    if (c->state == DD_HTTP_READING && c->srv->lim.header_timeout_ms < c->srv->lim.timeout_ms) {
        /* The head came in time: the rest of the whole-connection deadline. */
        uint64_t spent = uv_now(c->srv->loop) - c->accepted_ms;
        uint64_t whole = (uint64_t)c->srv->lim.timeout_ms;
        uv_timer_start(&c->timer, dd_http_on_timeout, spent < whole ? whole - spent : 1, 0);
    }
    c->state = DD_HTTP_WRITING;
    c->wr.data = c;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)r->len);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, dd_http_on_write) < 0)
        dd_http_conn_close(c);
}

static void dd_http_respond_text(dd_http_conn *c, int status, const char *body, bool head_only)
{
    dd_http_respond(c, status, DD_HTTP_TEXT, body, strlen(body), head_only);
}

/* Answers a complete, valid request head (req points into c->head). */
static void dd_http_handle(dd_http_conn *c, const dd_metrics_request *req)
{
    dd_metrics_http *h = c->srv;
    bool head_only = dd_metrics_slice_eq(req->method, req->method_len, "HEAD");
    bool get = head_only || dd_metrics_slice_eq(req->method, req->method_len, "GET");
    bool metrics = dd_metrics_slice_eq(req->path, req->path_len, "/metrics");
    bool healthz = dd_metrics_slice_eq(req->path, req->path_len, "/healthz");
    bool readyz = dd_metrics_slice_eq(req->path, req->path_len, "/readyz");
    int status;
    if (!metrics && !healthz && !readyz) {
        status = 404;
        dd_http_respond_text(c, status, "not found\n", head_only);
    } else if (!get) {
        status = 405;
        dd_http_respond_text(c, status, "method not allowed\n", false);
    } else if (metrics) {
        status = 200;
        dd_buf body = DD_BUF_INIT;
        dd_metrics_process_update(h->m); /* process_*: as of this scrape */
        dd_metrics_render(h->m, &body);
        dd_http_respond(c, status, DD_HTTP_PROM, dd_buf_str(&body), body.len, head_only);
        dd_buf_release(&body);
    } else if (healthz) {
        status = 200;
        dd_http_respond_text(c, status, "ok\n", head_only);
    } else {
        char reason[128] = "";
        bool ok = h->ready ? h->ready(h->ready_arg, reason, sizeof(reason)) : true;
        reason[sizeof(reason) - 1] = '\0';
        /* One line only: the body is read by humans and probes alike. */
        reason[strcspn(reason, "\r\n")] = '\0';
        status = ok ? 200 : 503;
        dd_buf body = DD_BUF_INIT;
        dd_buf_puts(&body, reason[0] ? reason : (ok ? "ok" : "not ready"));
        dd_buf_putc(&body, '\n');
        dd_http_respond(c, status, DD_HTTP_TEXT, dd_buf_str(&body), body.len, head_only);
        dd_buf_release(&body);
    }
    /* The slices are not NUL-terminated: copies for the (escaping) logger. */
    dd_buf method = DD_BUF_INIT, path = DD_BUF_INIT;
    dd_buf_append(&method, req->method, req->method_len);
    dd_buf_append(&path, req->path, req->path_len);
    dd_debug(h->log, "metrics_http_request", "method=%s path=%s status=%d", dd_buf_str(&method),
             dd_buf_str(&path), status);
    dd_buf_release(&method);
    dd_buf_release(&path);
}

static void dd_http_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    dd_http_conn *c = handle->data;
    if (!c->head || (c->state == DD_HTTP_READING && c->len == c->cap)) {
        /* Grown as bytes arrive: a slow client costs what it sent. */
        size_t cap = c->cap ? c->cap * 2 : DD_HTTP_HEAD_INITIAL;
        c->cap = cap < c->max ? cap : c->max;
        c->head = dd_xrealloc(c->head, c->cap);
    }
    if (c->state == DD_HTTP_READING) {
        *buf = uv_buf_init(c->head + c->len, (unsigned)(c->cap - c->len));
    } else {
        /* After the request: read only to discard. */
        *buf = uv_buf_init(c->head, (unsigned)c->cap);
    }
}

static void dd_http_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    dd_http_conn *c = s->data;
    if (nread == 0 || c->state == DD_HTTP_CLOSING)
        return;
    if (nread < 0) {
        /* A half-closed peer (shutdown after sending) still gets its answer. */
        if (nread == UV_EOF && c->state == DD_HTTP_WRITING) {
            c->peer_eof = true;
            uv_read_stop(s);
            return;
        }
        dd_http_conn_close(c);
        return;
    }
    if (c->state != DD_HTTP_READING)
        return;
    c->len += (size_t)nread;
    dd_metrics_request req;
    switch (dd_metrics_parse_request(c->head, c->len, &req)) {
    case DD_METRICS_PARSE_COMPLETE:
        dd_http_handle(c, &req);
        return;
    case DD_METRICS_PARSE_BAD:
        dd_debug(c->srv->log, "metrics_http_request", "status=400 received=%zu", c->len);
        dd_http_respond_text(c, 400, "bad request\n", false);
        return;
    case DD_METRICS_PARSE_NEED_MORE:
        break;
    }
    if (c->len >= c->max) {
        dd_debug(c->srv->log, "metrics_http_request", "status=431 received=%zu", c->len);
        dd_http_respond_text(c, 431, "request header too large\n", false);
    }
}

static void dd_http_reject_closed(uv_handle_t *handle)
{
    dd_metrics_http *h = handle->data;
    free(handle);
    h->nhandles--;
    dd_http_maybe_free(h);
}

/* At the limit: the connection whose slot a new one takes (see the top of
 * the file), or NULL. In this order, oldest first: one that sent part of a
 * head and stalled (the slowloris signature); one that sent nothing yet (it
 * may be a probe whose request is still on its way); one draining (its
 * answer is sent); one writing (a slow reader). */
static dd_http_conn *dd_http_victim(dd_metrics_http *h)
{
    dd_http_conn *idle = NULL, *draining = NULL, *writing = NULL;
    for (dd_http_conn *c = h->conns; c; c = c->next) { /* bounded by nconns */
        switch (c->state) {
        case DD_HTTP_READING:
            if (c->len > 0)
                return c;
            if (!idle)
                idle = c;
            break;
        case DD_HTTP_DRAINING:
            if (!draining)
                draining = c;
            break;
        case DD_HTTP_WRITING:
            if (!writing)
                writing = c;
            break;
        case DD_HTTP_CLOSING:
            break;
        }
    }
    return idle ? idle : draining ? draining : writing;
}

/* Takes the connection libuv accepted (server->accepted_fd): a slot, by
 * eviction if need be, or refused. */
static void dd_http_accept(dd_metrics_http *h)
{
    uv_stream_t *server = (uv_stream_t *)&h->tcp;
    if (h->nconns - h->nclosing >= h->lim.max_conns) {
        dd_http_conn *v = dd_http_victim(h);
        if (v) {
            uint64_t now = uv_now(h->loop);
            h->evictions++;
            if (h->evict_log_ms == 0 || now - h->evict_log_ms >= DD_HTTP_EVICT_LOG_MS) {
                dd_warn(h->log, "metrics_http_connection_evicted",
                        "addr=%s max=%d evicted=%llu state=%d received=%zu note=%s", h->addr,
                        h->lim.max_conns, (unsigned long long)h->evictions, (int)v->state,
                        v->len, "at the connection limit: the oldest slow connection makes room");
                h->evict_log_ms = now ? now : 1;
                h->evictions = 0;
            }
            dd_http_conn_close(v);
        }
    }
    if (h->nconns - h->nclosing >= h->lim.max_conns || h->nclosing >= DD_HTTP_MAX_CLOSING) {
        /* Nothing to evict, or too many still closing. Accept and close at
         * once: leaving it in the backlog would make libuv call us again
         * and again, and the client would hang. */
        uv_tcp_t *t = dd_xmalloc(sizeof(*t));
        uv_tcp_init(h->loop, t);
        t->data = h;
        h->nhandles++;
        uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, dd_http_reject_closed);
        if (!h->full_logged) {
            dd_warn(h->log, "metrics_http_too_many_connections", "addr=%s max=%d", h->addr,
                    h->lim.max_conns);
            h->full_logged = true;
        }
        return;
    }
    dd_http_conn *c = dd_xcalloc(1, sizeof(*c));
    c->srv = h;
    c->max = h->lim.max_header_bytes;
    c->accepted_ms = uv_now(h->loop);
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->prev = h->last;
    if (h->last)
        h->last->next = c;
    else
        h->conns = c;
    h->last = c;
    h->nconns++;
    h->nhandles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, dd_http_alloc, dd_http_on_read) < 0) {
        dd_http_conn_close(c);
        return;
    }
    int deadline = h->lim.header_timeout_ms < h->lim.timeout_ms ? h->lim.header_timeout_ms
                                                                 : h->lim.timeout_ms;
    uv_timer_start(&c->timer, dd_http_on_timeout, (uint64_t)deadline, 0);
}

static void dd_http_on_resume(uv_timer_t *t)
{
    dd_metrics_http *h = t->data;
    h->burst = 0;
    if (h->paused && !h->closing) {
        h->paused = false;
        dd_http_accept(h); /* uv_accept() makes libuv watch the listener again */
    }
}

static void dd_http_on_connection(uv_stream_t *server, int status)
{
    dd_metrics_http *h = server->data;
    if (status < 0) {
        /* EMFILE comes once per pending connection: warn once per burst. */
        if (!h->accept_err_logged)
            dd_warn(h->log, "metrics_http_accept_failed", "addr=%s error=%s", h->addr,
                    uv_strerror(status));
        h->accept_err_logged = true;
        return;
    }
    if (h->closing)
        return;
    h->accept_err_logged = false;
    if (++h->burst > DD_HTTP_ACCEPT_BURST) {
        /* Not calling uv_accept() makes libuv stop watching the listener and
         * keep this connection; the timer runs in the next loop iteration,
         * after this iteration's reads. */
        h->paused = true;
        uv_timer_start(&h->resume, dd_http_on_resume, 0, 0);
        return;
    }
    dd_http_accept(h);
}

/* ---- server ------------------------------------------------------------ */

static void dd_http_listener_closed(uv_handle_t *handle)
{
    dd_metrics_http *h = handle->data;
    h->nhandles--;
    dd_http_maybe_free(h);
}

void dd_metrics_http_set_limits(dd_metrics_http *h, const dd_metrics_http_limits *limits)
{
    if (limits->max_header_bytes)
        h->lim.max_header_bytes = limits->max_header_bytes;
    if (limits->max_conns > 0)
        h->lim.max_conns = limits->max_conns;
    if (limits->timeout_ms > 0)
        h->lim.timeout_ms = limits->timeout_ms;
    if (limits->header_timeout_ms > 0)
        h->lim.header_timeout_ms = limits->header_timeout_ms;
}

int dd_metrics_http_port(const dd_metrics_http *h)
{
    return h->port;
}

int dd_metrics_http_check_listen(const char *listen, int *port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int rc = dd_http_parse_listen(listen, &ss, err, errlen);
    if (rc < 0)
        return rc;
    *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int dd_metrics_http_listen_free(const char *listen, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int rc = dd_http_parse_listen(listen, &ss, err, errlen);
    if (rc < 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        return rc;
    }
    /* as libuv binds: SO_REUSEADDR, so only a live listener counts as taken */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
    }
    close(fd);
    return rc;
}

int dd_metrics_http_new(const dd_ctx *ctx, const char *listen, dd_metrics *m,
                        dd_metrics_http_ready_fn ready, void *arg, dd_metrics_http **out,
                        char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    dd_metrics_http *h = NULL;
    int rc;

    *out = NULL;
    if (!listen || !ctx || !ctx->loop || !m) {
        snprintf(err, errlen, "metrics endpoint needs a loop, a registry and a listen address");
        return DD_EINVAL;
    }
    rc = dd_http_parse_listen(listen, &ss, err, errlen);
    if (rc < 0)
        return rc;

    h = dd_xcalloc(1, sizeof(*h));
    h->loop = ctx->loop;
    h->log = ctx->log;
    h->m = m;
    h->ready = ready;
    h->ready_arg = arg;
    h->lim.max_header_bytes = DD_METRICS_HTTP_MAX_HEADER;
    h->lim.max_conns = DD_METRICS_HTTP_MAX_CONNS;
    h->lim.timeout_ms = DD_METRICS_HTTP_TIMEOUT_MS;
    h->lim.header_timeout_ms = DD_METRICS_HTTP_HEADER_TIMEOUT_MS;
    snprintf(h->addr, sizeof(h->addr), "%s", listen);
    rc = uv_tcp_init(h->loop, &h->tcp);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        free(h);
        return rc;
    }
    h->tcp.data = h;
    uv_timer_init(h->loop, &h->resume);
    h->resume.data = h;
    h->nhandles = 2;

    /* libuv reports EADDRINUSE from listen(), not always from bind(). */
    rc = uv_tcp_bind(&h->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->tcp, DD_HTTP_BACKLOG, dd_http_on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        goto out;
    }
    struct sockaddr_storage bound;
    int blen = (int)sizeof(bound);
    rc = uv_tcp_getsockname(&h->tcp, (struct sockaddr *)&bound, &blen);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        goto out;
    }
    h->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    dd_info(h->log, "metrics_http_listen", "addr=%s port=%d", listen, h->port);
    *out = h;
    h = NULL;
out:
    if (h) {
        /* The handle is initialised: only its close callback may free h. */
        h->closing = true;
        uv_close((uv_handle_t *)&h->tcp, dd_http_listener_closed);
        uv_close((uv_handle_t *)&h->resume, dd_http_listener_closed);
    }
    return rc;
}

void dd_metrics_http_close(dd_metrics_http *h, void (*done)(void *arg), void *arg)
{
    if (h->closing)
        return;
    h->closing = true;
    h->done = done;
    h->done_arg = arg;
    uv_close((uv_handle_t *)&h->tcp, dd_http_listener_closed);
    uv_close((uv_handle_t *)&h->resume, dd_http_listener_closed);
    for (dd_http_conn *c = h->conns; c; c = c->next)
        dd_http_conn_close(c);
}
