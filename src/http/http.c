/* http.c - HTTP/1.1 client on libuv, TLS through src/net/tls.h (memory BIOs).
 *
 * Shape: a client owns connections; a connection carries at most one
 * request at a time and goes RESOLVING -> CONNECTING -> (HANDSHAKE) ->
 * ACTIVE -> IDLE (kept for reuse) or closed. Each connection has one timer:
 * connect / reply deadline while busy, idle expiry while idle. Replies are
 * parsed by src/http/parse.c as the bytes come (reads may split anywhere);
 * a reply it refuses fails the request with DD_EPROTO and closes the
 * connection, whose framing can no longer be trusted.
 *
 * TLS: src/net/tls.h (shared with the Redis store): the socket's bytes are
 * fed to the session and whatever it wants to send is taken out into
 * uv_write(), so TLS never blocks and never owns the socket.
 *
 * Lifetimes: a request is plain memory freed when its callback returns (or
 * when cancelled); a connection is freed once its timer and socket handles
 * are closed and no getaddrinfo is pending; the client once its own timer
 * and every connection are gone. */
#include "http/http.h"

#include "core/error.h"
#include "core/hostport.h"
#include "http/parse.h"
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_MS 30000        /* an unused keep-alive connection is closed after this */

typedef enum conn_state {
    C_RESOLVING,
    C_CONNECTING,
    C_HANDSHAKE,
    C_ACTIVE,
    C_IDLE,
    C_DEAD,
} conn_state;

typedef struct conn conn;

struct dd_http_req {
    dd_http *h;
    conn *c;
    dd_http_cb cb;
    void *arg;
    char *wire; /* the whole request: head and body */
    size_t wire_len;
    bool head_only; /* HEAD: a reply has no body whatever its headers say */
    uint64_t deadline; /* uv_now() */
    int64_t timeout_ms;
    bool resent; /* already sent once more after a stale keep-alive */
    bool delivering; /* its callback is running: cancel is a no-op */
};

struct conn {
    dd_http *h;
    conn *prev, *next; /* every live connection of h */
    conn *idle_next;   /* h->idle stack */
    conn_state state;
    dd_http_req *req;
    uv_timer_t timer;
    uv_tcp_t tcp;
    enum { SK_NONE, SK_OPEN, SK_CLOSING } tcp_state;
    bool reconnect; /* connect to the next address once tcp is closed */
    uv_connect_t connect;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai, *ai_cur;
    int last_err;  /* of the last address tried */
    int defer_err; /* a send/connect error found outside a loop callback */
    uint64_t connect_deadline;
    int handles;  /* open uv handles */
    int writes;   /* uv_write requests not yet completed */
    bool reused;  /* a request already completed on it */
    bool got_bytes; /* reply bytes arrived for the current request */

    dd_tls *tls; /* https: the session */

    dd_http_parser *parser; /* of the current request's reply */
    bool close_after; /* bytes came after the reply: not reusable */
};

struct dd_http {
    uv_loop_t *loop;
    char *url;       /* scheme://host:port/prefix, for messages */
    char *host;      /* without brackets */
    char *port;      /* digits */
    char *authority; /* host (bracketed if IPv6) ":" port, for messages */
    char *host_header; /* the same without a default port (as browsers and curl send it) */
    char *prefix;    /* "" or "/x/y" */
    bool tls, numeric;
    dd_tls_ctx *tls_ctx;
    int max_idle;
    size_t max_body;
    int64_t connect_timeout_ms;
    conn *conns;
    conn *idle;
    int nidle;
    uv_timer_t timer; /* only so the close callback can run from the loop */
    int handles;      /* the timer + one per live connection */
    bool closing;
    dd_http_close_cb close_cb;
    void *close_arg;
    char rbuf[65536];   /* socket reads (one loop thread: one buffer) */
    char tlsbuf[16384]; /* decrypted bytes */
};

static void dd_http_conn_attach(conn *c, dd_http_req *r);
static void dd_http_conn_fail(conn *c, int err, bool transient, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void dd_http_conn_close(conn *c);
static conn *dd_http_conn_new(dd_http *h);
static void dd_http_gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res);
static void dd_http_try_next_addr(conn *c);

/* --------------------------------------------------------------- client */

static void dd_http_client_maybe_free(dd_http *h)
{
    if (!h->closing || h->handles > 0)
        return;
    dd_http_close_cb cb = h->close_cb;
    void *arg = h->close_arg;
    dd_tls_ctx_unref(h->tls_ctx);
    free(h->url);
    free(h->host);
    free(h->port);
    free(h->authority);
    free(h->host_header);
    free(h->prefix);
    free(h);
    if (cb)
        cb(arg);
}

static void dd_http_client_timer_closed(uv_handle_t *hd)
{
    dd_http *h = hd->data;
    h->handles--;
    dd_http_client_maybe_free(h);
}

static int dd_http_tls_setup(dd_http *h, const dd_http_opts *o, dd_buf *err)
{
    dd_tls_ctx_opts t = {
        .ca_file = o->ca_file,
        .cert_file = o->cert_file,
        .key_file = o->key_file,
        .alpn = (const unsigned char *)"\x08http/1.1",
        .alpn_len = 9,
        .opt_prefix = o->tls_opt_prefix,
    };
    return dd_tls_ctx_new(&t, &h->tls_ctx, err);
}

/* scheme://host[:port][/prefix]; no user info, query or fragment. */
static int dd_http_parse_url(dd_http *h, const char *url, dd_buf *err)
{
    const char *p, *auth_end;
    if (!url || !*url) {
        dd_buf_puts(err, "the URL is empty");
        return DD_EINVAL;
    }
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        h->tls = true;
    } else {
        dd_buf_printf(err, "'%s': expected http://HOST:PORT or https://HOST:PORT", url);
        return DD_EINVAL;
    }
    if (strpbrk(p, "?#")) {
        dd_buf_printf(err, "'%s': a query or fragment is not allowed in the base URL", url);
        return DD_EINVAL;
    }
    auth_end = p + strcspn(p, "/");
    if (memchr(p, '@', (size_t)(auth_end - p))) {
        dd_buf_printf(err, "'%s': user info in the URL is not supported", url);
        return DD_EINVAL;
    }
    dd_hostport hp;
    char msg[160];
    if (dd_hostport_parse(p, (size_t)(auth_end - p), h->tls ? 443 : 80, 0, &hp, msg,
                          sizeof(msg)) < 0) {
        dd_buf_printf(err, "'%s': %s", url, msg);
        return DD_EINVAL;
    }
    long port = hp.port;
    dd_buf b = DD_BUF_INIT;
    h->host = hp.host; /* taken over */
    dd_buf_printf(&b, "%ld", port);
    h->port = dd_buf_detach(&b);
    unsigned char addr[sizeof(struct in6_addr)];
    bool v6 = inet_pton(AF_INET6, h->host, addr) == 1;
    h->numeric = v6 || inet_pton(AF_INET, h->host, addr) == 1;
    if (hp.ipv6 && !v6) { /* a "%zone" would need %25 in the Host header */
        dd_buf_printf(err, "'%s': '%s' is not an IPv6 address", url, h->host);
        return DD_EINVAL;
    }
    dd_buf_printf(&b, v6 ? "[%s]:%s" : "%s:%s", h->host, h->port);
    h->authority = dd_buf_detach(&b);
    if (port == (h->tls ? 443 : 80))
        dd_buf_printf(&b, v6 ? "[%s]" : "%s", h->host);
    else
        dd_buf_puts(&b, h->authority);
    h->host_header = dd_buf_detach(&b);
    size_t plen = strlen(auth_end);
    while (plen > 0 && auth_end[plen - 1] == '/')
        plen--;
    dd_buf_append(&b, auth_end, plen);
    h->prefix = dd_buf_detach(&b);
    if (!h->prefix)
        h->prefix = dd_strdup("");
    dd_buf_printf(&b, "%s://%s%s", h->tls ? "https" : "http", h->authority, h->prefix);
    h->url = dd_buf_detach(&b);
    return 0;
}

static int dd_http_new_buf(uv_loop_t *loop, const dd_http_opts *o, dd_http **out, dd_buf *err);

/* The reasons are built in a dd_buf (URLs of any length), then handed over
 * in the caller's buffer, as every constructor does (CONTRIBUTING.md). */
int dd_http_new(uv_loop_t *loop, const dd_http_opts *o, dd_http **out, char *err, size_t errlen)
{
    dd_buf b = DD_BUF_INIT;
    int rc = dd_http_new_buf(loop, o, out, &b);
    if (rc < 0)
        dd_msgf(err, errlen, "%s", dd_buf_str(&b));
    dd_buf_release(&b);
    return rc;
}

static int dd_http_new_buf(uv_loop_t *loop, const dd_http_opts *o, dd_http **out, dd_buf *err)
{
    dd_http *h = dd_xcalloc(1, sizeof(*h));
    int rc;
    *out = NULL;
    h->loop = loop;
    h->max_idle = o->max_idle > 0 ? o->max_idle : 4;
    h->max_body = o->max_body > 0 ? o->max_body : (16u << 20);
    h->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    rc = dd_http_parse_url(h, o->base_url, err);
    if (rc == 0 && h->tls)
        rc = dd_http_tls_setup(h, o, err);
    if (rc == 0 && !h->tls && (o->ca_file || o->cert_file || o->key_file)) {
        dd_buf_printf(err, "'%s': TLS files were given but the URL is not https://", h->url);
        rc = DD_EINVAL;
    }
    if (rc < 0) {
        h->closing = true;
        dd_http_client_maybe_free(h);
        return rc;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->handles = 1;
    *out = h;
    return 0;
}

const char *dd_http_base_url(const dd_http *h)
{
    return h->url;
}

/* ------------------------------------------------------------- requests */

static void dd_http_req_free(dd_http_req *r)
{
    free(r->wire);
    free(r);
}

/* Runs the callback once and frees the request. */
static void dd_http_req_deliver(dd_http_req *r, int err, bool transient, int status, dd_buf *body,
                        const char *msg)
{
    dd_http_reply rep = {
        .err = err,
        .transient = err != 0 && transient,
        .status = status,
        .body = body ? dd_buf_str(body) : "",
        .body_len = body ? body->len : 0,
        .message = msg ? msg : "",
    };
    r->c = NULL;
    r->delivering = true;
    if (r->cb)
        r->cb(&rep, r->arg);
    dd_http_req_free(r);
}

/* Each line ends in CRLF, no bare CR or LF, no blank line. */
static bool dd_http_header_lines_ok(const char *hd)
{
    size_t n = hd ? strlen(hd) : 0;
    if (n == 0)
        return true;
    if (n < 2 || hd[n - 2] != '\r' || hd[n - 1] != '\n' || hd[0] == '\r')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (hd[i] == '\r' && hd[i + 1] != '\n')
            return false;
        if (hd[i] == '\n' && (i == 0 || hd[i - 1] != '\r' || hd[i + 1] == '\r'))
            return false;
    }
    return true;
}

int dd_http_request(dd_http *h, const char *method, const char *target, const char *headers,
                    const char *body, size_t body_len, int64_t timeout_ms, dd_http_cb cb,
                    void *arg, dd_http_req **out)
{
    if (out)
        *out = NULL;
    if (!h || !method || !*method || !target || target[0] != '/' || timeout_ms <= 0 ||
        strpbrk(target, " \r\n") || strpbrk(method, " \r\n") || !dd_http_header_lines_ok(headers))
        return DD_EINVAL;
    if (h->closing)
        return DD_ECANCELED;
    dd_http_req *r = dd_xcalloc(1, sizeof(*r));
    dd_buf w = DD_BUF_INIT;
    bool with_len = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    dd_buf_printf(&w, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: dispatchd\r\n%s", method,
                  h->prefix, target, h->host_header, headers ? headers : "");
    if (with_len)
        dd_buf_printf(&w, "Content-Length: %zu\r\n", body ? body_len : 0);
    dd_buf_puts(&w, "\r\n");
    if (body)
        dd_buf_append(&w, body, body_len);
    r->h = h;
    r->cb = cb;
    r->arg = arg;
    r->wire_len = w.len;
    r->wire = dd_buf_detach(&w);
    r->head_only = strcmp(method, "HEAD") == 0;
    r->timeout_ms = timeout_ms;
    uv_update_time(h->loop); /* the cached loop time is stale after a blocking caller */
    r->deadline = uv_now(h->loop) + (uint64_t)timeout_ms;
    if (out)
        *out = r;

    conn *c = h->idle;
    if (c) { /* newest first: the least likely to have been closed by the server */
        h->idle = c->idle_next;
        h->nidle--;
        c->idle_next = NULL;
        uv_ref((uv_handle_t *)&c->timer);
        uv_ref((uv_handle_t *)&c->tcp);
    } else {
        c = dd_http_conn_new(h);
    }
    dd_http_conn_attach(c, r);
    return 0;
}

void dd_http_abandon(dd_http_req *r)
{
    if (!r || r->delivering)
        return;
    conn *c = r->c;
    if (c) {
        c->req = NULL;
        dd_http_conn_close(c); /* mid-request: the connection's state is unknown */
    }
    dd_http_req_free(r);
}

void dd_http_close(dd_http *h, dd_http_close_cb cb, void *arg)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->req) {
            dd_http_req_free(c->req);
            c->req = NULL;
        }
        dd_http_conn_close(c);
    }
    uv_close((uv_handle_t *)&h->timer, dd_http_client_timer_closed);
}

/* ---------------------------------------------------------- connections */

static void dd_http_conn_maybe_free(conn *c)
{
    if (c->state != C_DEAD || c->handles > 0 || c->gai_pending)
        return;
    dd_http *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->ai)
        freeaddrinfo(c->ai);
    dd_http_parser_free(c->parser);
    free(c);
    h->handles--;
    dd_http_client_maybe_free(h);
}

static void dd_http_conn_handle_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    c->handles--;
    dd_http_conn_maybe_free(c);
}

/* A socket closed: after a failed connect, try the next address. */
static void dd_http_tcp_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    c->tcp_state = SK_NONE;
    c->handles--;
    if (c->reconnect && c->state == C_CONNECTING)
        dd_http_try_next_addr(c);
    else
        dd_http_conn_maybe_free(c);
}

/* Closes the socket of a failed connect attempt and moves to the next address. */
static void dd_http_next_addr_after_close(conn *c, int err)
{
    c->last_err = err;
    c->ai_cur = c->ai_cur->ai_next;
    c->reconnect = true;
    c->tcp_state = SK_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, dd_http_tcp_closed);
}

static void dd_http_conn_timer_cb(uv_timer_t *t);

/* Arms the timer for the current phase. */
static void dd_http_conn_arm(conn *c)
{
    uint64_t now = uv_now(c->h->loop), until;
    if (c->state == C_IDLE) {
        uv_timer_start(&c->timer, dd_http_conn_timer_cb, IDLE_MS, 0);
        return;
    }
    if (!c->req)
        return;
    until = c->req->deadline;
    if (c->state != C_ACTIVE && c->connect_deadline < until)
        until = c->connect_deadline;
    uv_timer_start(&c->timer, dd_http_conn_timer_cb, until > now ? until - now : 0, 0);
}

static conn *dd_http_conn_new(dd_http *h)
{
    conn *c = dd_xcalloc(1, sizeof(*c));
    c->h = h;
    c->parser = dd_http_parser_new(&(dd_http_parser_opts){.max_body = h->max_body});
    c->state = C_RESOLVING;
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->handles++;
    return c;
}

static void dd_http_conn_close(conn *c)
{
    dd_http *h = c->h;
    if (c->state == C_DEAD)
        return;
    if (c->state == C_IDLE) {
        for (conn **pp = &h->idle; *pp; pp = &(*pp)->idle_next) {
            if (*pp == c) {
                *pp = c->idle_next;
                h->nidle--;
                break;
            }
        }
    }
    c->state = C_DEAD;
    c->reconnect = false;
    dd_tls_free(c->tls);
    c->tls = NULL;
    if (c->gai_pending)
        uv_cancel((uv_req_t *)&c->gai);
    if (c->tcp_state == SK_OPEN) {
        c->tcp_state = SK_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, dd_http_tcp_closed);
    }
    uv_close((uv_handle_t *)&c->timer, dd_http_conn_handle_closed);
}

static void dd_http_reset_parser(conn *c)
{
    dd_http_parser_reset(c->parser, c->req && c->req->head_only);
    c->close_after = false;
    c->got_bytes = false;
}

/* A request fails on c: maybe resend it once on a new connection, else
 * report. Always called from a loop callback. */
static void dd_http_conn_fail(conn *c, int err, bool transient, const char *fmt, ...)
{
    dd_http *h = c->h;
    dd_http_req *r = c->req;
    c->req = NULL;
    if (r && c->reused && !c->got_bytes && !r->resent && err == DD_EUNAVAIL && !h->closing) {
        /* The server closed a keep-alive connection as we reused it: the
         * request never reached it, so send it once more on a fresh one. */
        r->resent = true;
        dd_http_conn_close(c);
        dd_http_conn_attach(dd_http_conn_new(h), r);
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    dd_vmsgf(msg, sizeof(msg), fmt, ap); /* a long host name: "..." at the end */
    va_end(ap);
    int status = dd_http_parser_status(c->parser);
    dd_http_conn_close(c);
    if (r)
        dd_http_req_deliver(r, err, transient, status, NULL, msg);
}

typedef struct wr {
    uv_write_t w;
    conn *c;
    char data[];
} wr;

static void dd_http_write_done(uv_write_t *w, int status)
{
    wr *x = (wr *)w;
    conn *c = x->c;
    free(x);
    c->writes--;
    if (status < 0 && status != UV_ECANCELED && c->state != C_DEAD) {
        if (c->req)
            dd_http_conn_fail(c, DD_EUNAVAIL, true, "send to %s: %s", c->h->authority,
                      uv_strerror(status));
        else
            dd_http_conn_close(c); /* idle and broken: not for reuse */
    }
}

static int dd_http_write_bytes(conn *c, const char *data, size_t n)
{
    wr *x = dd_xmalloc(sizeof(*x) + n);
    x->c = c;
    memcpy(x->data, data, n);
    uv_buf_t b = uv_buf_init(x->data, (unsigned)n);
    int rc = uv_write(&x->w, (uv_stream_t *)&c->tcp, &b, 1, dd_http_write_done);
    if (rc < 0)
        free(x);
    else
        c->writes++;
    return rc;
}

/* Sends what TLS queued for the peer. */
static int dd_http_tls_flush(conn *c)
{
    dd_buf out = DD_BUF_INIT;
    int rc = 0;
    if (dd_tls_take_out(c->tls, &out) > 0)
        rc = dd_http_write_bytes(c, out.data, out.len);
    dd_buf_release(&out);
    return rc;
}

/* The request goes out on an ACTIVE connection. Errors come back through
 * the timer so the callback never runs inside dd_http_request(). */
static void dd_http_send_request(conn *c)
{
    dd_http_req *r = c->req;
    int rc;
    if (c->tls) {
        if (dd_tls_write(c->tls, r->wire, r->wire_len) < 0) {
            dd_tls_forget_error(c->tls);
            rc = UV_EIO;
        } else
            rc = dd_http_tls_flush(c);
    } else {
        rc = dd_http_write_bytes(c, r->wire, r->wire_len);
    }
    if (rc < 0) {
        c->defer_err = rc;
        uv_timer_start(&c->timer, dd_http_conn_timer_cb, 0, 0);
    }
}

/* TLS failures name their cause (src/net/tls.c): verification failures,
 * handshake failures and certificate alerts are final (-EACCES); other
 * errors on an established session (a corrupted record) are worth another
 * attempt. */
static void dd_http_tls_fail(conn *c, bool handshake)
{
    char msg[512];
    int st = dd_tls_failure(c->tls, handshake, c->h->authority, msg, sizeof(msg));
    dd_http_conn_fail(c, st, st != -EACCES, "%s", msg);
}

static void dd_http_tls_handshake(conn *c)
{
    int r = dd_tls_handshake(c->tls);
    int rc = dd_http_tls_flush(c);
    if (r == 1) {
        c->state = C_ACTIVE;
        dd_http_conn_arm(c);
        dd_http_send_request(c);
        return;
    }
    if (r == 0 && rc == 0)
        return;
    if (rc < 0) {
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "TLS handshake with %s: %s", c->h->authority,
                  uv_strerror(rc));
        return;
    }
    dd_http_tls_fail(c, true);
}

static void dd_http_conn_attach(conn *c, dd_http_req *r)
{
    c->req = r;
    r->c = c;
    dd_http_reset_parser(c);
    if (c->state == C_IDLE) {
        c->state = C_ACTIVE;
        dd_http_conn_arm(c);
        dd_http_send_request(c);
        return;
    }
    /* a new connection: resolve, then connect */
    dd_http *h = c->h;
    c->connect_deadline = uv_now(h->loop) + (uint64_t)h->connect_timeout_ms;
    dd_http_conn_arm(c);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* no AI_ADDRCONFIG: it hides ::1 for "localhost" on IPv4-only hosts */
    hints.ai_flags = AI_NUMERICSERV;
    if (h->numeric) {
        hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
        int rc = getaddrinfo(h->host, h->port, &hints, &c->ai);
        if (rc != 0) {
            c->ai = NULL;
            c->defer_err = UV_EINVAL;
            uv_timer_start(&c->timer, dd_http_conn_timer_cb, 0, 0);
            return;
        }
        c->ai_cur = c->ai;
        c->state = C_CONNECTING;
        c->reconnect = true;
        uv_timer_start(&c->timer, dd_http_conn_timer_cb, 0, 0); /* connect from the loop */
        return;
    }
    c->gai.data = c;
    int rc = uv_getaddrinfo(h->loop, &c->gai, dd_http_gai_cb, h->host, h->port, &hints);
    if (rc < 0) {
        c->defer_err = rc;
        uv_timer_start(&c->timer, dd_http_conn_timer_cb, 0, 0);
        return;
    }
    c->gai_pending = true;
}

static void dd_http_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void dd_http_alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    conn *c = hd->data;
    *b = uv_buf_init(c->h->rbuf, sizeof(c->h->rbuf));
}

static void dd_http_on_connect(uv_connect_t *cr, int status)
{
    conn *c = cr->data;
    if (status == UV_ECANCELED || c->state == C_DEAD)
        return;
    if (status < 0) {
        dd_http_next_addr_after_close(c, status);
        return;
    }
    dd_http *h = c->h;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, dd_http_alloc_cb, dd_http_on_read);
    if (rc < 0) {
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "receive from %s: %s", h->authority, uv_strerror(rc));
        return;
    }
    if (!h->tls) {
        c->state = C_ACTIVE;
        dd_http_conn_arm(c);
        dd_http_send_request(c);
        return;
    }
    c->state = C_HANDSHAKE;
    char msg[300];
    rc = dd_tls_new(h->tls_ctx, h->host, &c->tls, msg, sizeof(msg));
    if (rc < 0) {
        dd_http_conn_fail(c, rc == -EACCES ? -EACCES : DD_EUNAVAIL, rc != -EACCES, "%s", msg);
        return;
    }
    dd_http_tls_handshake(c);
}

/* Connects to c->ai_cur, or fails with the last error once none is left.
 * Called from the loop only (timer or a closed socket). */
static void dd_http_try_next_addr(conn *c)
{
    dd_http *h = c->h;
    c->reconnect = false;
    if (c->ai_cur) {
        uv_tcp_init(h->loop, &c->tcp);
        c->tcp.data = c;
        c->tcp_state = SK_OPEN;
        c->handles++;
        c->connect.data = c;
        int rc = uv_tcp_connect(&c->connect, &c->tcp, c->ai_cur->ai_addr, dd_http_on_connect);
        if (rc < 0) {
            dd_http_next_addr_after_close(c, rc);
        } else { /* each address gets the whole connect timeout */
            c->connect_deadline = uv_now(h->loop) + (uint64_t)h->connect_timeout_ms;
            dd_http_conn_arm(c);
        }
        return;
    }
    dd_http_conn_fail(c, DD_EUNAVAIL, true, "connect to %s: %s", h->authority,
              uv_strerror(c->last_err ? c->last_err : UV_EADDRNOTAVAIL));
}

static void dd_http_gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    conn *c = g->data;
    c->gai_pending = false;
    if (c->state == C_DEAD) {
        if (res)
            uv_freeaddrinfo(res);
        dd_http_conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "cannot resolve '%s': %s", c->h->host,
                  uv_strerror(status));
        return;
    }
    c->ai = res;
    c->ai_cur = res;
    c->state = C_CONNECTING;
    dd_http_try_next_addr(c);
}

static void dd_http_conn_timer_cb(uv_timer_t *t)
{
    conn *c = t->data;
    dd_http *h = c->h;
    if (c->state == C_DEAD)
        return;
    if (c->state == C_IDLE) {
        dd_http_conn_close(c);
        return;
    }
    if (!c->req)
        return;
    if (c->defer_err) {
        int e = c->defer_err;
        c->defer_err = 0;
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "%s %s: %s",
                  c->state == C_ACTIVE ? "send to" : "connect to", h->authority,
                  uv_strerror(e));
        return;
    }
    if (c->state == C_CONNECTING && c->reconnect && c->tcp_state == SK_NONE) {
        dd_http_try_next_addr(c); /* first address of a numeric host */
        return;
    }
    uint64_t now = uv_now(h->loop);
    if (now >= c->req->deadline) {
        if (c->state == C_ACTIVE)
            dd_http_conn_fail(c, DD_ETIMEOUT, true, "no complete reply from %s within %lld ms",
                      h->authority, (long long)c->req->timeout_ms);
        else
            dd_http_conn_fail(c, DD_ETIMEOUT, true, "connect to %s: timed out after %lld ms",
                      h->authority, (long long)c->req->timeout_ms);
        return;
    }
    if (c->state == C_CONNECTING && now >= c->connect_deadline && c->tcp_state == SK_OPEN &&
        c->ai_cur && c->ai_cur->ai_next) {
        dd_http_next_addr_after_close(c, UV_ETIMEDOUT); /* a black-holed address: try the next */
        return;
    }
    if (c->state != C_ACTIVE && now >= c->connect_deadline) {
        dd_http_conn_fail(c, DD_ETIMEOUT, true, "connect to %s: timed out after %lld ms",
                  h->authority, (long long)h->connect_timeout_ms);
        return;
    }
    dd_http_conn_arm(c);
}

/* ---------------------------------------------------------------- reply */

/* An HTTP/2 frame header of a SETTINGS frame on stream 0: what a gRPC
 * server (Temporal's frontend port, 7233 by default) sends first, whatever
 * it was asked. By far the most common wrong port; worth naming. */
static bool dd_http_looks_http2(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    return n >= 9 && u[3] == 0x04 && (u[4] & ~1u) == 0 && u[5] == 0 && u[6] == 0 && u[7] == 0 &&
           u[8] == 0;
}

/* Feeds reply bytes. Returns 1 when the reply is complete, 0 for more,
 * DD_EPROTO when c has failed (already reported). */
static int dd_http_feed(conn *c, const char *p, size_t n)
{
    size_t used;
    bool first = !c->got_bytes;
    c->got_bytes = c->got_bytes || n > 0;
    int rc = dd_http_parser_feed(c->parser, p, n, &used);
    if (rc < 0) {
        dd_http_conn_fail(c, DD_EPROTO, false, "invalid reply from %s: %s%s", c->h->authority,
                  dd_http_parser_error(c->parser),
                  first && dd_http_looks_http2(p, n)
                      ? ": that is an HTTP/2 (gRPC) port, such as Temporal's 7233; the URL "
                        "must name the Temporal HTTP API port (7243 by default, `temporal "
                        "server start-dev --http-port`)"
                      : "");
        return DD_EPROTO;
    }
    if (rc == DD_HTTP_PARSE_DONE && used < n)
        c->close_after = true; /* bytes after the reply: the stream is not ours to parse */
    return rc == DD_HTTP_PARSE_DONE ? 1 : 0;
}

/* The reply is complete: keep or close the connection, then deliver. */
static void dd_http_complete(conn *c)
{
    dd_http *h = c->h;
    dd_http_req *r = c->req;
    dd_buf body = DD_BUF_INIT; /* the callback may reuse c: take the body along */
    int status = dd_http_parser_status(c->parser);
    dd_http_parser_take_body(c->parser, &body);
    c->req = NULL;
    uv_timer_stop(&c->timer);
    /* Not reusable: the server said so, we have enough idle ones, request
     * bytes are still on their way (an early reply), or more bytes came
     * after the reply (they would be taken for the next request's reply). */
    if (c->close_after || !dd_http_parser_keep_alive(c->parser) || h->closing ||
        h->nidle >= h->max_idle || c->writes > 0 ||
        (c->tls && dd_tls_buffered(c->tls))) {
        dd_http_conn_close(c);
    } else {
        c->state = C_IDLE;
        c->reused = true;
        dd_http_reset_parser(c);
        c->idle_next = h->idle;
        h->idle = c;
        h->nidle++;
        dd_http_conn_arm(c);
        /* an idle connection must not keep the loop running */
        uv_unref((uv_handle_t *)&c->timer);
        uv_unref((uv_handle_t *)&c->tcp);
    }
    dd_http_req_deliver(r, 0, false, status, &body, NULL);
    dd_buf_release(&body);
}

/* The peer closed (err UV_EOF, or TLS close_notify: tls_close) or the read
 * failed. A read-to-EOF body over TLS ends only with close_notify: a bare
 * TCP close could be a truncation. */
static void dd_http_on_eof(conn *c, int err, bool tls_close)
{
    if (c->state == C_IDLE || !c->req) {
        dd_http_conn_close(c);
        return;
    }
    if (err == UV_EOF && (!c->tls || tls_close) &&
        dd_http_parser_eof(c->parser) == DD_HTTP_PARSE_DONE) {
        dd_http_complete(c);
        return;
    }
    if (err == UV_EOF)
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "%s closed the connection %s", c->h->authority,
                  c->got_bytes ? "in the middle of the reply" : "before replying");
    else
        dd_http_conn_fail(c, DD_EUNAVAIL, true, "receive from %s: %s", c->h->authority,
                  uv_strerror(err));
}

static void dd_http_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (c->state == C_DEAD || nread == 0)
        return;
    if (nread < 0) {
        dd_http_on_eof(c, (int)nread, false);
        return;
    }
    if (!c->tls) {
        if (c->state == C_IDLE || !c->req) { /* unasked bytes: drop the connection */
            dd_http_conn_close(c);
            return;
        }
        if (dd_http_feed(c, buf->base, (size_t)nread) == 1)
            dd_http_complete(c);
        return;
    }
    dd_tls_feed(c->tls, buf->base, (size_t)nread);
    if (c->state == C_HANDSHAKE) {
        dd_http_tls_handshake(c);
        if (c->state != C_ACTIVE)
            return;
    }
    for (;;) {
        ssize_t r = dd_tls_read(c->tls, c->h->tlsbuf, sizeof(c->h->tlsbuf));
        if (r > 0) {
            if (c->state == C_IDLE || !c->req) {
                dd_http_conn_close(c);
                return;
            }
            int fr = dd_http_feed(c, c->h->tlsbuf, (size_t)r);
            if (fr < 0)
                return;
            if (fr == 1) {
                dd_http_complete(c);
                return;
            }
            continue;
        }
        if (r == 0) {
            if (dd_http_tls_flush(c) < 0 && c->req)
                dd_http_conn_fail(c, DD_EUNAVAIL, true, "send to %s failed", c->h->authority);
            return;
        }
        if (r == DD_TLS_EOF) { /* close_notify */
            dd_http_on_eof(c, UV_EOF, true);
            return;
        }
        if (c->state == C_IDLE || !c->req) {
            dd_tls_forget_error(c->tls);
            dd_http_conn_close(c);
            return;
        }
        dd_http_tls_fail(c, false);
        return;
    }
}
