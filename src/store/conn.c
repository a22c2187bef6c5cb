/* conn.c - see conn.h.
 *
 * States: RESOLVING (uv_getaddrinfo) -> CONNECTING (one address at a time;
 * a refused or timed-out address closes its socket and the next one is
 * tried from the close callback, since a handle's memory is reused) ->
 * [HANDSHAKE (TLS; the connect timer runs again)] -> READY (reading,
 * writing) -> FAILED (on_fail delivered) -> CLOSED.
 *
 * Writes: commands are appended to out (plaintext); with TLS they are
 * encrypted into wire once the session is up. The socket gets the bytes
 * with send() while it takes them, the rest with one uv_write at a time
 * (commands queued meanwhile go together in the next one: pipelining for
 * free). Errors found inside a call (a write refused) are reported from
 * the timer, so no callback runs inside a call.
 *
 * Lifetime: the timer and the socket are counted handles, a pending
 * getaddrinfo counts too; the memory goes when all are over. */
#include "store/conn.h"

#include "core/buf.h"
#include "core/error.h"
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CS_RESOLVING, CS_CONNECTING, CS_HANDSHAKE, CS_READY, CS_FAILED, CS_CLOSED };

struct dd_store_conn {
    uv_loop_t *loop;
    char *host, *path;
    char port[8];
    int64_t connect_timeout_ms;
    void (*on_connected)(void *arg);
    void (*on_reply)(void *arg, void *privdata, redisReply *rep);
    void (*on_push)(void *arg, redisReply *rep);
    void (*on_fail)(void *arg, int status, const char *msg);
    void *arg;

    int state;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } sock;
    bool sock_open;  /* initialised and not yet closed */
    bool next_addr;  /* try the next address once the socket has closed */
    uv_connect_t creq;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai, *ai_cur;
    int last_err;     /* libuv error of the last address tried */
    int defer_status; /* a failure found inside a call, reported by the timer */
    int handles;      /* open libuv handles */

    redisReader *reader;
    void **fifo; /* privdata of the replies owed, a ring */
    size_t fifo_cap, fifo_head, fifo_n;

    dd_tls *tls;     /* rediss://: the session (NULL: plain) */
    dd_tls_ctx *tls_ctx;
    char *peer;      /* host:port, for TLS messages */
    bool got_plain;  /* TLS: the session has delivered bytes */
    dd_buf out;      /* plaintext not yet sent (or encrypted) */
    dd_buf wire;     /* TLS: ciphertext not yet handed to the socket */
    char *inflight;  /* the bytes of the uv_write in progress */
    bool writing;
    uv_write_t wreq;

    void (*close_cb)(void *arg);
    void *close_arg;
    char rbuf[16384];
};

static void dd_conn_try_next(dd_store_conn *c);
static void dd_conn_flush(dd_store_conn *c);
static void dd_conn_timer(uv_timer_t *t);

/* ---- lifetime ------------------------------------------------------------ */

static void dd_conn_maybe_free(dd_store_conn *c)
{
    if (c->state != CS_CLOSED || c->handles > 0 || c->gai_pending)
        return;
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    if (c->ai)
        uv_freeaddrinfo(c->ai);
    if (c->reader)
        redisReaderFree(c->reader);
    free(c->fifo);
    dd_buf_release(&c->out);
    dd_buf_release(&c->wire);
    dd_tls_free(c->tls);
    dd_tls_ctx_unref(c->tls_ctx);
    free(c->peer);
    free(c->inflight);
    free(c->host);
    free(c->path);
    free(c);
    if (cb)
        cb(arg);
}

static void dd_conn_handle_closed(uv_handle_t *h)
{
    dd_store_conn *c = h->data;
    c->handles--;
    dd_conn_maybe_free(c);
}

/* The socket of an attempt closed: after a failed address, try the next. */
static void dd_conn_sock_closed(uv_handle_t *h)
{
    dd_store_conn *c = h->data;
    c->handles--;
    if (c->next_addr && c->state == CS_CONNECTING) {
        c->next_addr = false;
        dd_conn_try_next(c);
        return;
    }
    dd_conn_maybe_free(c);
}

static void dd_conn_close_sock(dd_store_conn *c)
{
    if (!c->sock_open)
        return;
    c->sock_open = false;
    uv_close(&c->sock.h, dd_conn_sock_closed);
}

void dd_store_conn_close(dd_store_conn *c, void (*done)(void *arg), void *arg)
{
    if (!c || c->state == CS_CLOSED)
        return;
    c->state = CS_CLOSED;
    c->close_cb = done;
    c->close_arg = arg;
    c->next_addr = false;
    if (c->gai_pending)
        uv_cancel((uv_req_t *)&c->gai);
    dd_conn_close_sock(c);
    uv_close((uv_handle_t *)&c->timer, dd_conn_handle_closed);
}

/* ---- failure ------------------------------------------------------------- */

/* Reports once, from a loop callback; the caller closes. */
static void dd_conn_fail(dd_store_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dd_conn_fail(dd_store_conn *c, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    if (c->state == CS_FAILED || c->state == CS_CLOSED)
        return;
    c->state = CS_FAILED;
    uv_timer_stop(&c->timer);
    if (c->sock_open)
        uv_read_stop(&c->sock.s);
    va_start(ap, fmt);
    dd_vmsgf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->on_fail(c->arg, status, msg);
}

/* libuv's errors are -errno here: strerror words them as hiredis did
 * ("Connection refused"), which the runbook and tests quote. */
static const char *dd_conn_errstr(int uverr)
{
    return uverr < 0 && uverr > -4096 ? strerror(-uverr) : uv_strerror(uverr);
}

static void dd_conn_defer_fail(dd_store_conn *c, int uverr)
{
    if (c->defer_status == 0)
        c->defer_status = uverr;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, dd_conn_timer, 0, 0);
}

/* ---- reading ------------------------------------------------------------- */

static bool dd_conn_is_push(const redisReply *r)
{
    static const char *const kinds[] = {"message",    "pmessage",    "subscribe",
                                        "unsubscribe", "psubscribe", "punsubscribe"};
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return false;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(r->element[0]->str, kinds[i]) == 0)
            return true;
    return false;
}

/* Hands every complete reply in the reader to its owner. */
static void dd_conn_dispatch(dd_store_conn *c)
{
    while (c->state == CS_READY) {
        void *rep = NULL;
        if (redisReaderGetReply(c->reader, &rep) != REDIS_OK) {
            dd_conn_fail(c, DD_EPROTO, "protocol error: %s", c->reader->errstr);
            return;
        }
        if (!rep)
            return;
        redisReply *r = rep;
        if (c->on_push && (dd_conn_is_push(r) ||
                           (c->fifo_n == 0 && r->type == REDIS_REPLY_ERROR))) {
            /* an error no request waits for, on a subscriber's connection: the
             * answer to a refused SUBSCRIBE (sent without a reply slot, as
             * its confirmations are pushes), e.g. an ACL user without it */
            c->on_push(c->arg, r);
        } else if (c->fifo_n == 0) {
            dd_conn_fail(c, DD_EPROTO, "protocol error: a reply nobody asked for (type %d)",
                         r->type);
        } else {
            void *priv = c->fifo[c->fifo_head];
            c->fifo_head = (c->fifo_head + 1) % c->fifo_cap;
            c->fifo_n--;
            c->on_reply(c->arg, priv, r);
        }
        freeReplyObject(r);
    }
}

static void dd_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    dd_store_conn *c = h->data;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

/* The socket failed (a read, a write; UV_EOF: the peer closed). */
static void dd_conn_io_fail(dd_store_conn *c, int uverr)
{
    if (c->tls && !c->got_plain && c->state == CS_READY) {
        /* TLS 1.3: the server checks our certificate after our side of the
         * handshake is done; one that wants a certificate we did not send
         * alerts and closes, and its close (our commands unread) resets
         * the connection, which can destroy the alert before it leaves. So
         * name the likely cause. */
        bool cert = dd_tls_ctx_has_cert(c->tls_ctx);
        dd_conn_fail(c, DD_EUNAVAIL, "TLS: %s%s closed the connection right after the handshake (%s)%s",
                     cert ? "" : "client certificate missing? ", c->peer,
                     uverr == UV_EOF ? "end of file" : dd_conn_errstr(uverr),
                     cert ? "" : "; a server that requires one does that: give one with "
                                 "--redis-cert-file and --redis-key-file");
    } else if (uverr == UV_EOF) {
        dd_conn_fail(c, DD_EUNAVAIL, "the server closed the connection");
    } else {
        dd_conn_fail(c, DD_EUNAVAIL, "%s", dd_conn_errstr(uverr));
    }
}

static void dd_conn_tls_fail(dd_store_conn *c, bool handshake)
{
    char msg[512];
    int st = dd_tls_failure(c->tls, handshake, c->peer, msg, sizeof(msg));
    dd_conn_fail(c, st, "%s", msg);
}

static void dd_conn_ready(dd_store_conn *c)
{
    uv_timer_stop(&c->timer);
    c->state = CS_READY;
    if (c->on_connected)
        c->on_connected(c->arg);
    dd_conn_flush(c);
}

/* TLS: ciphertext in; the handshake, then plaintext to the reader. */
static void dd_conn_tls_in(dd_store_conn *c, const char *p, size_t n)
{
    char plain[16384];
    dd_tls_feed(c->tls, p, n);
    if (c->state == CS_HANDSHAKE) {
        int r = dd_tls_handshake(c->tls);
        if (r < 0) {
            dd_conn_flush(c); /* the alert, if any */
            dd_conn_tls_fail(c, true);
            return;
        }
        dd_conn_flush(c); /* what the handshake wants to send */
        if (r == 0 || c->state != CS_HANDSHAKE)
            return;
        dd_conn_ready(c);
    }
    while (c->state == CS_READY) {
        ssize_t k = dd_tls_read(c->tls, plain, sizeof(plain));
        if (k == 0) {
            dd_conn_flush(c); /* e.g. a key update to answer */
            return;
        }
        if (k == DD_TLS_EOF) {
            dd_conn_fail(c, DD_EUNAVAIL, "the server closed the TLS session");
            return;
        }
        if (k < 0) {
            dd_conn_tls_fail(c, false);
            return;
        }
        c->got_plain = true;
        if (redisReaderFeed(c->reader, plain, (size_t)k) != REDIS_OK) {
            dd_conn_fail(c, DD_EPROTO, "protocol error: %s", c->reader->errstr);
            return;
        }
        dd_conn_dispatch(c);
    }
}

static void dd_conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    dd_store_conn *c = st->data;
    if (nread == 0 || (c->state != CS_READY && c->state != CS_HANDSHAKE))
        return;
    if (nread < 0) {
        if (c->state == CS_HANDSHAKE)
            /* a server that speaks no TLS on this port (or refused us) hangs up */
            dd_conn_fail(c, DD_EUNAVAIL, "TLS handshake with %s: %s", c->peer,
                         nread == UV_EOF ? "the server closed the connection (is that a TLS "
                                           "port? redis-server --tls-port)"
                                         : dd_conn_errstr((int)nread));
        else
            dd_conn_io_fail(c, (int)nread);
        return;
    }
    if (c->tls) {
        dd_conn_tls_in(c, buf->base, (size_t)nread);
        return;
    }
    if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) {
        dd_conn_fail(c, DD_EPROTO, "protocol error: %s", c->reader->errstr);
        return;
    }
    dd_conn_dispatch(c);
}

/* ---- writing ------------------------------------------------------------- */

static void dd_conn_write_done(uv_write_t *w, int status)
{
    dd_store_conn *c = w->data;
    free(c->inflight);
    c->inflight = NULL;
    c->writing = false;
    if (c->state != CS_READY && c->state != CS_HANDSHAKE)
        return;
    if (status < 0) {
        dd_conn_io_fail(c, status);
        return;
    }
    dd_conn_flush(c);
}

/* The bytes go out with send(MSG_NOSIGNAL) while the socket takes them:
 * a peer that has gone answers EPIPE instead of raising SIGPIPE (whose
 * default ends the process; a program embedding the library may not have
 * ignored it), and the common case needs no write request. What the
 * socket does not take at once goes through uv_write. */
static void dd_conn_flush(dd_store_conn *c)
{
    uv_os_fd_t fd;
    dd_buf *w = &c->out;
    if (c->tls) {
        if (c->state == CS_READY && c->out.len > 0) {
            int rc = dd_tls_write(c->tls, c->out.data, c->out.len);
            dd_buf_reset(&c->out);
            if (rc < 0) {
                dd_tls_forget_error(c->tls);
                dd_conn_defer_fail(c, UV_EIO);
                return;
            }
        }
        dd_tls_take_out(c->tls, &c->wire);
        w = &c->wire;
    }
    if ((c->state != CS_READY && c->state != CS_HANDSHAKE) || c->writing || w->len == 0)
        return;
    size_t off = 0;
    if (uv_fileno(&c->sock.h, &fd) == 0) {
        while (off < w->len) {
            ssize_t k = send(fd, w->data + off, w->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0) {
                off += (size_t)k;
                continue;
            }
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                dd_buf_reset(w);
                dd_conn_defer_fail(c, -errno);
                return;
            }
            break;
        }
    }
    if (off == w->len) {
        dd_buf_reset(w);
        return;
    }
    size_t n = w->len - off;
    c->inflight = dd_xmalloc(n);
    memcpy(c->inflight, w->data + off, n);
    dd_buf_reset(w);
    uv_buf_t b = uv_buf_init(c->inflight, (unsigned)n);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, &c->sock.s, &b, 1, dd_conn_write_done);
    if (rc < 0) {
        free(c->inflight);
        c->inflight = NULL;
        dd_conn_defer_fail(c, rc);
        return;
    }
    c->writing = true;
}

static void dd_conn_fifo_push(dd_store_conn *c, void *priv)
{
    if (c->fifo_n == c->fifo_cap) {
        size_t cap = c->fifo_cap ? c->fifo_cap * 2 : 16;
        void **f = dd_xmalloc(cap * sizeof(*f));
        for (size_t i = 0; i < c->fifo_n; i++)
            f[i] = c->fifo[(c->fifo_head + i) % c->fifo_cap];
        free(c->fifo);
        c->fifo = f;
        c->fifo_cap = cap;
        c->fifo_head = 0;
    }
    c->fifo[(c->fifo_head + c->fifo_n) % c->fifo_cap] = priv;
    c->fifo_n++;
}

int dd_store_conn_write(dd_store_conn *c, const char *cmd, size_t len, bool expect_reply,
                        void *privdata)
{
    if (!c || c->state >= CS_FAILED)
        return DD_EUNAVAIL;
    dd_buf_append(&c->out, cmd, len);
    if (expect_reply)
        dd_conn_fifo_push(c, privdata);
    dd_conn_flush(c);
    return 0;
}

int dd_store_conn_command(dd_store_conn *c, int argc, const char **argv, const size_t *argvlen,
                          bool expect_reply, void *privdata)
{
    char *cmd = NULL;
    if (!c || c->state >= CS_FAILED)
        return DD_EUNAVAIL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return DD_EUNAVAIL;
    int rc = dd_store_conn_write(c, cmd, (size_t)len, expect_reply, privdata);
    redisFreeCommand(cmd);
    return rc;
}

bool dd_store_conn_connected(const dd_store_conn *c)
{
    return c && (c->state == CS_READY || c->state == CS_HANDSHAKE);
}

/* ---- connecting ---------------------------------------------------------- */

static void dd_conn_timer(uv_timer_t *t)
{
    dd_store_conn *c = t->data;
    if (c->state >= CS_FAILED)
        return;
    if (c->defer_status) {
        int e = c->defer_status;
        c->defer_status = 0;
        if (c->state == CS_READY || c->state == CS_HANDSHAKE)
            dd_conn_io_fail(c, e);
        else
            dd_conn_fail(c, DD_EUNAVAIL, "%s", dd_conn_errstr(e));
        return;
    }
    if (c->state == CS_CONNECTING && !c->sock_open && !c->next_addr) {
        dd_conn_try_next(c); /* the first address of a numeric host */
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        dd_conn_fail(c, DD_ETIMEOUT, "TLS handshake with %s: no answer within %lld ms", c->peer,
                     (long long)c->connect_timeout_ms);
        return;
    }
    if (c->state == CS_CONNECTING && c->sock_open) {
        /* this address does not answer (a black hole): the next one */
        c->last_err = UV_ETIMEDOUT;
        c->ai_cur = c->ai_cur ? c->ai_cur->ai_next : NULL;
        if (c->ai_cur) {
            c->next_addr = true;
            dd_conn_close_sock(c);
            return;
        }
        dd_conn_fail(c, DD_ETIMEOUT, "no answer within %lld ms",
                     (long long)c->connect_timeout_ms);
    }
}

static void dd_conn_on_connect(uv_connect_t *req, int status)
{
    dd_store_conn *c = req->data;
    if (status == UV_ECANCELED || c->state != CS_CONNECTING)
        return;
    uv_timer_stop(&c->timer);
    if (status < 0) {
        c->last_err = status;
        if (c->path) {
            dd_conn_fail(c, DD_EUNAVAIL, "%s", dd_conn_errstr(status));
            return;
        }
        c->ai_cur = c->ai_cur->ai_next;
        c->next_addr = true;
        dd_conn_close_sock(c);
        return;
    }
    if (!c->path)
        uv_tcp_nodelay(&c->sock.tcp, 1);
    int rc = uv_read_start(&c->sock.s, dd_conn_alloc, dd_conn_on_read);
    if (rc < 0) {
        dd_conn_fail(c, DD_EUNAVAIL, "%s", dd_conn_errstr(rc));
        return;
    }
    if (!c->tls_ctx) {
        dd_conn_ready(c);
        return;
    }
    char msg[300];
    rc = dd_tls_new(c->tls_ctx, c->host, &c->tls, msg, sizeof(msg));
    if (rc < 0) {
        dd_conn_fail(c, rc == -EACCES ? -EACCES : DD_EUNAVAIL, "%s", msg);
        return;
    }
    /* the handshake gets a connect timeout of its own */
    c->state = CS_HANDSHAKE;
    uv_timer_start(&c->timer, dd_conn_timer, (uint64_t)c->connect_timeout_ms, 0);
    if (dd_tls_handshake(c->tls) < 0) {
        dd_conn_tls_fail(c, true);
        return;
    }
    dd_conn_flush(c);
}

/* Connects to c->ai_cur (or the unix socket), or fails with the last
 * error once no address is left. From the loop only. */
static void dd_conn_try_next(dd_store_conn *c)
{
    int rc;
    c->creq.data = c;
    if (c->path) {
        uv_pipe_init(c->loop, &c->sock.pipe, 0);
    } else {
        if (!c->ai_cur) {
            dd_conn_fail(c, DD_EUNAVAIL, "%s",
                         dd_conn_errstr(c->last_err ? c->last_err : UV_EADDRNOTAVAIL));
            return;
        }
        uv_tcp_init(c->loop, &c->sock.tcp);
    }
    c->sock.h.data = c;
    c->sock_open = true;
    c->handles++;
    if (c->path) {
        uv_pipe_connect(&c->creq, &c->sock.pipe, c->path, dd_conn_on_connect);
        rc = 0;
    } else {
        rc = uv_tcp_connect(&c->creq, &c->sock.tcp, c->ai_cur->ai_addr, dd_conn_on_connect);
    }
    if (rc < 0) {
        c->last_err = rc;
        c->ai_cur = c->ai_cur->ai_next;
        c->next_addr = true;
        dd_conn_close_sock(c);
        return;
    }
    uv_timer_start(&c->timer, dd_conn_timer, (uint64_t)c->connect_timeout_ms, 0);
}

static void dd_conn_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    dd_store_conn *c = g->data;
    c->gai_pending = false;
    if (c->state != CS_RESOLVING) {
        if (res)
            uv_freeaddrinfo(res);
        dd_conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        dd_conn_fail(c, DD_EUNAVAIL, "cannot resolve '%s': %s", c->host, uv_strerror(status));
        return;
    }
    c->ai = c->ai_cur = res;
    c->state = CS_CONNECTING;
    dd_conn_try_next(c);
}

int dd_store_conn_new(uv_loop_t *loop, const dd_store_conn_opts *o, dd_store_conn **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    if (!loop || !o || !o->on_reply || !o->on_fail || (!o->path && (!o->host || !*o->host)) ||
        (!o->path && (o->port < 1 || o->port > 65535))) {
        dd_msgf(err, errlen, "redis connection: no socket path, host or valid port");
        return DD_EINVAL;
    }
    if (o->tls && o->path) {
        dd_msgf(err, errlen, "redis connection: TLS over a unix socket is not supported");
        return DD_EINVAL;
    }
    dd_store_conn *c = dd_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->host = o->host ? dd_strdup(o->host) : NULL;
    c->path = o->path ? dd_strdup(o->path) : NULL;
    snprintf(c->port, sizeof(c->port), "%d", o->port);
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    c->on_connected = o->on_connected;
    c->on_reply = o->on_reply;
    c->on_push = o->on_push;
    c->on_fail = o->on_fail;
    c->arg = o->arg;
    c->reader = redisReaderCreate();
    c->tls_ctx = dd_tls_ctx_ref(o->tls);
    if (c->host)
        c->peer = dd_strdupf(strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host, o->port);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    c->state = CS_CONNECTING;
    if (c->path) {
        uv_timer_start(&c->timer, dd_conn_timer, 0, 0); /* connect from the loop */
        *out = c;
        return 0;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* no AI_ADDRCONFIG: it hides ::1 for "localhost" on IPv4-only hosts */
    hints.ai_flags = AI_NUMERICSERV;
    unsigned char a[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, c->host, a) == 1 || inet_pton(AF_INET6, c->host, a) == 1) {
        /* a numeric address needs no resolver thread */
        hints.ai_flags |= AI_NUMERICHOST;
        if (getaddrinfo(c->host, c->port, &hints, &c->ai) != 0) {
            c->ai = NULL;
            dd_conn_defer_fail(c, UV_EINVAL);
        } else {
            c->ai_cur = c->ai;
            uv_timer_start(&c->timer, dd_conn_timer, 0, 0);
        }
        *out = c;
        return 0;
    }
    c->state = CS_RESOLVING;
    c->gai.data = c;
    int rc = uv_getaddrinfo(loop, &c->gai, dd_conn_resolved, c->host, c->port, &hints);
    if (rc < 0)
        dd_conn_defer_fail(c, rc);
    else
        c->gai_pending = true;
    *out = c;
    return 0;
}
