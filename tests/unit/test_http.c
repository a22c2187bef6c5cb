/* src/http, end to end over real TCP: a scripted HTTP/1.1 responder on the
 * same libuv loop (127.0.0.1, port 0) answers each request with a scripted
 * action (a reply, a reply in 1-3 byte pieces, silence, FIN, RST, ...) and
 * records what it received, so every test asserts both what the caller got
 * and what went over the wire. Every test ends with dd_http_close() and a
 * loop that closes clean (no leaked handles), and counts callbacks after
 * that, so a late second callback fails the test too. TLS is covered
 * against the real Temporal dev server in tests/integration/test_tls.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "http/http.h"
#include "testsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* ------------------------------------------------------- scripted server */

typedef enum {
    ACT_REPLY,       /* write reply (and `then` delay_ms later); keep the connection */
    ACT_REPLY_CLOSE, /* write reply, then close the connection (FIN) */
    ACT_PIECES,      /* write reply in 1, 2, 3, 1, ... byte pieces, delay_ms apart */
    ACT_PIECES_CLOSE, /* same, then close */
    ACT_SILENT,      /* never answer (keep reading) */
    ACT_EOF,         /* close without answering (FIN) */
    ACT_RESET,       /* close without answering (RST) */
    ACT_HOLD,        /* hold until hold_n requests are held, then answer them in
                      * reverse order, each with its own request target as body */
} act_kind;

typedef struct action {
    act_kind kind;
    const char *reply;
    size_t reply_len; /* 0: strlen(reply) */
    const char *then;  /* ACT_REPLY: written delay_ms after reply */
    int delay_ms;
} action;

#define MAXREQ 16
#define MAXCONN 16

typedef struct conn conn;

typedef struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    const action *acts; /* per request received, the last one repeats */
    int nacts;
    int hold_n;
    int nconn;        /* connections accepted */
    int peer_closed;  /* connections on which we saw EOF or an error from the client */
    int nreq;         /* complete requests received */
    size_t bytes_in;  /* every byte received */
    size_t req_bytes; /* bytes that belonged to complete requests */
    char *reqs[MAXREQ];
    size_t req_len[MAXREQ];
    int req_conn[MAXREQ]; /* which connection (1-based accept order) */
    conn *conns[MAXCONN];
    conn *held[MAXREQ];
    char *held_target[MAXREQ];
    int nheld;
} srv;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    srv *s;
    int id;
    int refs; /* handles not yet closed */
    bool closing;
    dd_buf in;
    /* piecewise or delayed output */
    char *out;
    size_t out_len, out_off;
    int piece;
    bool close_after;
};

typedef struct wreq {
    uv_write_t w;
    conn *c;
    bool close_after;
    char data[];
} wreq;

static void conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->refs > 0)
        return;
    for (int i = 0; i < MAXCONN; i++) {
        if (c->s->conns[i] == c)
            c->s->conns[i] = NULL;
    }
    dd_buf_release(&c->in);
    free(c->out);
    free(c);
}

static void conn_close(conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    if (reset)
        assert_int_equal(uv_tcp_close_reset(&c->tcp, conn_handle_closed), 0);
    else
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void written(uv_write_t *w, int status)
{
    wreq *r = (wreq *)w;
    if (r->close_after)
        conn_close(r->c, false);
    free(r);
}

static void conn_write(conn *c, const char *p, size_t n, bool close_after)
{
    if (c->closing)
        return;
    wreq *r = malloc(sizeof(*r) + (n ? n : 1));
    assert_non_null(r);
    memcpy(r->data, p, n);
    r->c = c;
    r->close_after = close_after;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)n);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, written) != 0) {
        free(r);
        conn_close(c, false);
    }
}

static void pieces_tick(uv_timer_t *t)
{
    conn *c = t->data;
    size_t n = (size_t)(c->piece++ % 3) + 1;
    if (n > c->out_len - c->out_off)
        n = c->out_len - c->out_off;
    bool last = c->out_off + n == c->out_len;
    conn_write(c, c->out + c->out_off, n, last && c->close_after);
    c->out_off += n;
    if (last)
        uv_timer_stop(t);
}

static void then_tick(uv_timer_t *t)
{
    conn *c = t->data;
    conn_write(c, c->out, c->out_len, c->close_after);
}

static void set_out(conn *c, const char *p, size_t n)
{
    free(c->out);
    c->out = malloc(n ? n : 1);
    assert_non_null(c->out);
    memcpy(c->out, p, n);
    c->out_len = n;
    c->out_off = 0;
    c->piece = 0;
}

/* The request target of a request line "METHOD TARGET HTTP/1.1". */
static char *request_target(const char *req)
{
    const char *sp = strchr(req, ' ');
    assert_non_null(sp);
    const char *sp2 = strchr(sp + 1, ' ');
    assert_non_null(sp2);
    size_t n = (size_t)(sp2 - sp - 1);
    char *t = malloc(n + 1);
    memcpy(t, sp + 1, n);
    t[n] = '\0';
    return t;
}

static void answer_held(srv *s)
{
    for (int i = s->nheld - 1; i >= 0; i--) {
        char out[512];
        int n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(s->held_target[i]), s->held_target[i]);
        conn_write(s->held[i], out, (size_t)n, false);
        free(s->held_target[i]);
        s->held_target[i] = NULL;
    }
    s->nheld = 0;
}

static void on_request(conn *c, const char *req, size_t len)
{
    srv *s = c->s;
    int i = s->nreq++;
    if (i < MAXREQ) {
        s->reqs[i] = malloc(len + 1);
        memcpy(s->reqs[i], req, len);
        s->reqs[i][len] = '\0';
        s->req_len[i] = len;
        s->req_conn[i] = c->id;
    }
    const action *a = &s->acts[i < s->nacts ? i : s->nacts - 1];
    size_t rlen = a->reply ? (a->reply_len ? a->reply_len : strlen(a->reply)) : 0;
    switch (a->kind) {
    case ACT_REPLY:
        conn_write(c, a->reply, rlen, false);
        if (a->then) {
            set_out(c, a->then, strlen(a->then));
            c->close_after = false;
            uv_timer_start(&c->timer, then_tick, (uint64_t)a->delay_ms, 0);
        }
        break;
    case ACT_REPLY_CLOSE:
        conn_write(c, a->reply, rlen, true);
        break;
    case ACT_PIECES:
    case ACT_PIECES_CLOSE:
        set_out(c, a->reply, rlen);
        c->close_after = a->kind == ACT_PIECES_CLOSE;
        uv_timer_start(&c->timer, pieces_tick, (uint64_t)a->delay_ms, (uint64_t)a->delay_ms);
        break;
    case ACT_SILENT:
        break;
    case ACT_EOF:
        conn_close(c, false);
        break;
    case ACT_RESET:
        conn_close(c, true);
        break;
    case ACT_HOLD:
        assert_true(s->nheld < MAXREQ);
        s->held[s->nheld] = c;
        s->held_target[s->nheld] = request_target(s->reqs[i < MAXREQ ? i : 0]);
        s->nheld++;
        if (s->nheld == s->hold_n)
            answer_held(s);
        break;
    }
}

static const char *find_crlf2(const char *p, size_t n)
{
    return memmem(p, n, "\r\n\r\n", 4);
}

/* Value of header `name` (case-insensitive) in a header block, "" when
 * absent; *count receives how many times it occurs. */
static const char *header(const char *req, const char *name, int *count, char *out, size_t outsz)
{
    const char *end = strstr(req, "\r\n\r\n");
    size_t nl = strlen(name);
    int n = 0;
    out[0] = '\0';
    assert_non_null(end);
    for (const char *p = strstr(req, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (line >= end + 2)
            break;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *ve = strstr(v, "\r\n");
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (n == 0)
                snprintf(out, outsz, "%.*s", (int)(ve - v), v);
            n++;
        }
    }
    if (count)
        *count = n;
    return out;
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    conn *c = st->data;
    srv *s = c->s;
    if (nread < 0) {
        free(b->base);
        s->peer_closed++;
        conn_close(c, false);
        return;
    }
    dd_buf_append(&c->in, b->base, (size_t)nread);
    s->bytes_in += (size_t)nread;
    free(b->base);
    for (;;) {
        if (c->closing || c->in.len == 0)
            return;
        const char *hend = find_crlf2(c->in.data, c->in.len);
        if (!hend)
            return;
        size_t hlen = (size_t)(hend + 4 - c->in.data);
        /* header() needs a NUL-terminated header block: dd_buf keeps one at
         * the end, copy the head to be safe with pipelined bytes */
        char *head = malloc(hlen + 1);
        memcpy(head, c->in.data, hlen);
        head[hlen] = '\0';
        char v[64];
        int cnt;
        header(head, "content-length", &cnt, v, sizeof(v));
        free(head);
        size_t clen = cnt ? strtoul(v, NULL, 10) : 0;
        if (c->in.len < hlen + clen)
            return;
        size_t total = hlen + clen;
        char *req = malloc(total);
        memcpy(req, c->in.data, total);
        memmove(c->in.data, c->in.data + total, c->in.len - total);
        c->in.len -= total;
        c->in.data[c->in.len] = '\0';
        s->req_bytes += total;
        on_request(c, req, total);
        free(req);
    }
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    b->base = malloc(sz);
    b->len = sz;
}

static void on_conn(uv_stream_t *l, int status)
{
    srv *s = l->data;
    assert_int_equal(status, 0);
    conn *c = calloc(1, sizeof(*c));
    c->s = s;
    c->id = ++s->nconn;
    c->refs = 2;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    for (int i = 0; i < MAXCONN; i++) {
        if (!s->conns[i]) {
            s->conns[i] = c;
            break;
        }
    }
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    uv_tcp_nodelay(&c->tcp, 1); /* small pieces go out as written */
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, conn_read);
}

static void srv_start(uv_loop_t *loop, srv *s, const action *acts, int nacts)
{
    struct sockaddr_in a;
    int len = sizeof(a);
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->acts = acts;
    s->nacts = nacts;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&s->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 16, on_conn), 0);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
}

/* Closes the listener and every connection; the loop then runs them down. */
static void srv_stop(srv *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
    for (int i = 0; i < MAXCONN; i++) {
        if (s->conns[i])
            conn_close(s->conns[i], false);
    }
    for (int i = 0; i < s->nheld; i++)
        free(s->held_target[i]);
    s->nheld = 0;
}

static void srv_free_reqs(srv *s)
{
    for (int i = 0; i < MAXREQ; i++) {
        free(s->reqs[i]);
        s->reqs[i] = NULL;
    }
}

/* --------------------------------------------------------------- client */

/* What a test keeps of one reply (the reply itself dies with the callback). */
typedef struct got {
    int calls;
    int err;
    bool transient;
    int status;
    char *body;
    size_t body_len;
    bool body_terminated;
    char *message;
    uint64_t at_ns; /* uv_hrtime() when the callback ran */
} got;

static void on_reply(const dd_http_reply *r, void *arg)
{
    got *g = arg;
    g->calls++;
    g->at_ns = uv_hrtime();
    g->err = r->err;
    g->transient = r->transient;
    g->status = r->status;
    free(g->body);
    free(g->message);
    assert_non_null(r->body);
    assert_non_null(r->message);
    g->body = malloc(r->body_len + 1);
    memcpy(g->body, r->body, r->body_len + 1);
    g->body_len = r->body_len;
    g->body_terminated = r->body[r->body_len] == '\0';
    g->message = strdup(r->message);
}

static void got_free(got *g)
{
    free(g->body);
    free(g->message);
    g->body = g->message = NULL;
}

typedef struct fx {
    uv_loop_t loop;
    srv s;
    dd_http *h;
    char base[128];
    int closed; /* close callbacks */
} fx;

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

/* A loop, a scripted server, and a client for "http://127.0.0.1:PORT<prefix>". */
static void fx_start_o(fx *f, const action *acts, int nacts, const char *prefix,
                       const dd_http_opts *tmpl)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    srv_start(&f->loop, &f->s, acts, nacts);
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d%s", f->s.port, prefix ? prefix : "");
    dd_http_opts o = *tmpl;
    o.base_url = f->base;
    char err[1024] = "";
    int rc = dd_http_new(&f->loop, &o, &f->h, err, sizeof(err));
    if (rc != 0)
        fail_msg("dd_http_new(%s): %d %s", f->base, rc, err);
    assert_non_null(f->h);
}

static void fx_start(fx *f, const action *acts, int nacts, const char *prefix, size_t max_body)
{
    dd_http_opts o = {.max_body = max_body, .connect_timeout_ms = 2000};
    fx_start_o(f, acts, nacts, prefix, &o);
}

/* Closes the client and the server, runs the loop dry, and checks it closed clean. */
static void fx_stop(fx *f)
{
    if (f->h) {
        dd_http_close(f->h, on_closed, &f->closed);
        assert_int_equal(f->closed, 0); /* never from inside dd_http_close */
        f->h = NULL;
    }
    srv_stop(&f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    srv_free_reqs(&f->s);
}

static dd_http_req *send_req(fx *f, const char *method, const char *target, const char *headers,
                             const char *body, size_t body_len, int64_t timeout_ms, got *g)
{
    dd_http_req *r = NULL;
    int before = g->calls;
    int rc = dd_http_request(f->h, method, target, headers, body, body_len, timeout_ms, on_reply,
                             g, &r);
    assert_int_equal(rc, 0);
    assert_int_equal(g->calls, before); /* never from inside dd_http_request */
    return r;
}

static void guard_fired(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until pred(arg) or ms pass; returns pred(arg). */
static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, int ms)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_fired, (uint64_t)ms, 0);
    while (!pred(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred(arg);
}

static bool got_called(void *arg)
{
    return ((got *)arg)->calls > 0;
}

/* Runs until g's callback ran (at most 5 s), then a little longer so that a
 * second callback would be seen. */
static void wait_reply(fx *f, got *g)
{
    if (!run_until(&f->loop, got_called, g, 5000))
        fail_msg("no callback within 5 s");
    dd_test_sleep_loop(&f->loop, 30);
}

typedef struct nreq_at_least {
    srv *s;
    int n;
} nreq_at_least;

static bool srv_has_nreq(void *arg)
{
    nreq_at_least *w = arg;
    return w->s->nreq >= w->n;
}

static bool srv_has_peer_closed(void *arg)
{
    nreq_at_least *w = arg;
    return w->s->peer_closed >= w->n;
}

static void assert_ok(const got *g, int status, const char *body, size_t body_len)
{
    if (g->err != 0)
        fail_msg("err %d (%s): %s", g->err, dd_strerror(g->err), g->message);
    assert_int_equal(g->calls, 1);
    assert_false(g->transient);
    assert_int_equal(g->status, status);
    assert_int_equal(g->body_len, body_len);
    assert_memory_equal(g->body, body, body_len);
    assert_true(g->body_terminated);
    assert_string_equal(g->message, "");
}

static void assert_failed(const got *g, int err, bool transient)
{
    assert_int_equal(g->calls, 1);
    if (g->err != err)
        fail_msg("err %d (%s), expected %d (%s): %s", g->err, dd_strerror(g->err), err,
                 dd_strerror(err), g->message);
    assert_int_equal(g->transient, transient);
    assert_true(g->body_terminated);
    assert_true(strlen(g->message) > 0);
}

/* The body of a recorded request (after the header block). */
static const char *req_body(const srv *s, int i, size_t *len)
{
    const char *end = strstr(s->reqs[i], "\r\n\r\n");
    assert_non_null(end);
    *len = s->req_len[i] - (size_t)(end + 4 - s->reqs[i]);
    return end + 4;
}

/* One request against a fresh server and client, run to its callback; the
 * client and server are gone when it returns, g holds what the caller got. */
static void one_request(const action *acts, int nacts, size_t max_body, const char *method,
                        const char *target, int64_t timeout_ms, got *g)
{
    fx f;
    fx_start(&f, acts, nacts, NULL, max_body);
    send_req(&f, method, target, NULL, NULL, 0, timeout_ms, g);
    wait_reply(&f, g);
    fx_stop(&f);
    assert_int_equal(g->calls, 1);
}

#define OK_REPLY(body) "HTTP/1.1 200 OK\r\nContent-Length: " #body "\r\n\r\n"

/* ----------------------------------------------------------------- tests */

static void test_content_length_and_request_bytes(void **state)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: 5\r\n\r\nab\0cd";
    const action acts[] = {{ACT_REPLY, reply, sizeof(reply) - 1, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, "/prefix", 0);
    const char *body = "{\"a\":1,\"b\":\"x y\"}";
    send_req(&f, "POST", "/api/x?y=1", "X-Test: one\r\nAuthorization: Bearer abc\r\n", body,
             strlen(body), 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "ab\0cd", 5);

    srv *s = &f.s;
    assert_int_equal(s->nreq, 1);
    const char *req = s->reqs[0];
    if (strncmp(req, "POST /prefix/api/x?y=1 HTTP/1.1\r\n", 33) != 0)
        fail_msg("request line: %.60s", req);
    char v[128], want[64];
    int n;
    snprintf(want, sizeof(want), "127.0.0.1:%d", s->port);
    assert_string_equal(header(req, "host", &n, v, sizeof(v)), want);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want), "%zu", strlen(body));
    assert_string_equal(header(req, "content-length", &n, v, sizeof(v)), want);
    assert_int_equal(n, 1);
    assert_non_null(strstr(req, "\r\nX-Test: one\r\n"));
    assert_non_null(strstr(req, "\r\nAuthorization: Bearer abc\r\n"));
    header(req, "transfer-encoding", &n, v, sizeof(v));
    assert_int_equal(n, 0);
    size_t blen;
    const char *b = req_body(s, 0, &blen);
    assert_int_equal(blen, strlen(body));
    assert_memory_equal(b, body, blen);
    assert_int_equal(s->bytes_in, s->req_bytes); /* nothing after the body */
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_get_without_body(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "hi", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "GET", "/g", NULL, NULL, 0, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "hi", 2);
    assert_int_equal(f.s.nreq, 1);
    assert_true(strncmp(f.s.reqs[0], "GET /g HTTP/1.1\r\n", 17) == 0);
    size_t blen;
    req_body(&f.s, 0, &blen);
    assert_int_equal(blen, 0);
    assert_int_equal(f.s.bytes_in, f.s.req_bytes); /* no body bytes at all */
    char v[64];
    int n;
    header(f.s.reqs[0], "transfer-encoding", &n, v, sizeof(v));
    assert_int_equal(n, 0);
    header(f.s.reqs[0], "content-length", &n, v, sizeof(v));
    if (n)
        assert_string_equal(v, "0");
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_post_without_body(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "hi", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "POST", "/p", NULL, NULL, 0, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "hi", 2);
    assert_int_equal(f.s.nreq, 1);
    assert_true(strncmp(f.s.reqs[0], "POST /p HTTP/1.1\r\n", 18) == 0);
    char v[64];
    int n;
    assert_string_equal(header(f.s.reqs[0], "content-length", &n, v, sizeof(v)), "0");
    assert_int_equal(n, 1);
    assert_int_equal(f.s.bytes_in, f.s.req_bytes);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_chunked_in_pieces(void **state)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                "Content-Type: text/plain\r\n\r\n"
                                "5;foo=bar\r\nhello\r\n"
                                "7\r\n, world\r\n"
                                "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                                "0\r\nX-Trailer: yes\r\n\r\n";
    const action acts[] = {{ACT_PIECES, reply, 0, NULL, 2},
                           {ACT_REPLY, OK_REPLY(4) "next", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "GET", "/chunked", NULL, NULL, 0, 5000, &g);
    wait_reply(&f, &g);
    const char *want = "hello, worldabcdefghijklmnopqrstuvwxyz";
    assert_ok(&g, 200, want, strlen(want));
    /* the framing ended exactly after the trailer: a following request on
     * the same client gets its own reply, not leftovers */
    send_req(&f, "GET", "/after", NULL, NULL, 0, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "next", 4);
    assert_int_equal(f.s.nreq, 2);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    assert_int_equal(g2.calls, 1);
    got_free(&g2);
}

static void test_content_length_in_pieces(void **state)
{
    const action acts[] = {
        {ACT_PIECES, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world", 0,
         NULL, 2}};
    got g = {0};
    one_request(acts, 1, 0, "GET", "/", 5000, &g);
    assert_ok(&g, 200, "hello world", 11);
    got_free(&g);
}

static void test_body_to_eof_connection_close(void **state)
{
    const action acts[] = {
        {ACT_PIECES_CLOSE,
         "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n"
         "the body runs until EOF",
         0, NULL, 2},
        {ACT_REPLY, OK_REPLY(4) "next", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "GET", "/eof", NULL, NULL, 0, 5000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "the body runs until EOF", 23);
    /* the closed connection is not reused */
    send_req(&f, "GET", "/next", NULL, NULL, 0, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "next", 4);
    assert_int_equal(f.s.nconn, 2);
    assert_int_equal(f.s.nreq, 2);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    assert_int_equal(g2.calls, 1);
    got_free(&g2);
}

static void test_http10_reply(void **state)
{
    const action acts[] = {
        {ACT_PIECES_CLOSE, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server", 0,
         NULL, 2},
        {ACT_REPLY_CLOSE, "HTTP/1.0 202 Accepted\r\nContent-Length: 3\r\n\r\nabc", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "GET", "/old", NULL, NULL, 0, 5000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "old server", 10);
    send_req(&f, "GET", "/old2", NULL, NULL, 0, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 202, "abc", 3);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    assert_int_equal(g2.calls, 1);
    got_free(&g2);
}

static void test_100_continue(void **state)
{
    const action acts[] = {{ACT_REPLY, "HTTP/1.1 100 Continue\r\n\r\n", 0,
                            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 30}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "POST", "/c", NULL, "{}", 2, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 201, "ok", 2);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_keepalive_reuse(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(3) "one", 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(3) "two", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "POST", "/1", NULL, "a", 1, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "one", 3);
    send_req(&f, "POST", "/2", NULL, "b", 1, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "two", 3);
    assert_int_equal(f.s.nreq, 2);
    assert_int_equal(f.s.nconn, 1);
    assert_int_equal(f.s.req_conn[0], f.s.req_conn[1]);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    assert_int_equal(g2.calls, 1);
    got_free(&g2);
}

static void test_parallel_requests(void **state)
{
    /* the server answers only once all three are in, last first: requests
     * that were serialised would time out, replies that were mixed up
     * would carry another request's target */
    const action acts[] = {{ACT_HOLD, NULL, 0, NULL, 0}};
    fx f;
    got g[3] = {{0}};
    const char *targets[3] = {"/a", "/bb", "/ccc"};
    fx_start(&f, acts, 1, NULL, 0);
    f.s.hold_n = 3;
    for (int i = 0; i < 3; i++)
        send_req(&f, "POST", targets[i], NULL, "x", 1, 3000, &g[i]);
    for (int i = 0; i < 3; i++)
        wait_reply(&f, &g[i]);
    for (int i = 0; i < 3; i++)
        assert_ok(&g[i], 200, targets[i], strlen(targets[i]));
    assert_int_equal(f.s.nreq, 3);
    assert_int_equal(f.s.nconn, 3);
    fx_stop(&f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_idle_connection_closed_by_server(void **state)
{
    /* a keep-alive reply, then the server closes the idle connection */
    const action acts[] = {{ACT_REPLY_CLOSE, OK_REPLY(3) "one", 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(3) "two", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "POST", "/1", NULL, "a", 1, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "one", 3);
    dd_test_sleep_loop(&f.loop, 50);
    send_req(&f, "POST", "/2", NULL, "b", 1, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "two", 3);
    assert_int_equal(f.s.nconn, 2);
    assert_int_equal(f.s.nreq, 2);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g2.calls, 1);
    got_free(&g);
    got_free(&g2);
}

/* The race browsers know: the client reuses a keep-alive connection that
 * the server closes as the request arrives (no reply byte). The request is
 * sent once more on a fresh connection, and the caller sees one success. */
static void stale_reuse(act_kind how)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(3) "one", 0, NULL, 0},
                           {how, NULL, 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(3) "two", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 3, NULL, 0);
    send_req(&f, "POST", "/1", NULL, "a", 1, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "one", 3);
    send_req(&f, "POST", "/2", "X-N: 2\r\n", "b", 1, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "two", 3);
    assert_int_equal(f.s.nconn, 2);
    assert_int_equal(f.s.nreq, 3);
    assert_int_equal(f.s.req_conn[0], 1);
    assert_int_equal(f.s.req_conn[1], 1); /* reused ... */
    assert_int_equal(f.s.req_conn[2], 2); /* ... then sent again on a fresh one */
    assert_int_equal(f.s.req_len[1], f.s.req_len[2]);
    assert_memory_equal(f.s.reqs[1], f.s.reqs[2], f.s.req_len[1]);
    fx_stop(&f);
    assert_int_equal(g2.calls, 1);
    got_free(&g);
    got_free(&g2);
}

static void test_reused_connection_eof_resent(void **state)
{
    stale_reuse(ACT_EOF);
}

static void test_reused_connection_reset_resent(void **state)
{
    stale_reuse(ACT_RESET);
}

/* On a fresh connection the same failure is reported, not retried. */
static void fresh_connection_dies(act_kind how)
{
    const action acts[] = {{how, NULL, 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "POST", "/x", NULL, "a", 1, 2000, &g);
    wait_reply(&f, &g);
    dd_test_sleep_loop(&f.loop, 100);
    assert_failed(&g, DD_EUNAVAIL, true);
    assert_int_equal(g.status, 0);
    assert_int_equal(f.s.nconn, 1);
    assert_int_equal(f.s.nreq, 1);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_fresh_connection_eof(void **state)
{
    fresh_connection_dies(ACT_EOF);
}

static void test_fresh_connection_reset(void **state)
{
    fresh_connection_dies(ACT_RESET);
}

static void test_connection_refused(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", dd_test_free_port());
    dd_http_opts o = {.base_url = base};
    dd_http *h = NULL;
    char err[1024] = "";
    assert_int_equal(dd_http_new(&loop, &o, &h, err, sizeof(err)), 0);
    got g = {0};
    assert_int_equal(dd_http_request(h, "GET", "/", NULL, NULL, 0, 2000, on_reply, &g, NULL), 0);
    assert_int_equal(g.calls, 0);
    assert_true(run_until(&loop, got_called, &g, 5000));
    dd_test_sleep_loop(&loop, 30);
    assert_failed(&g, DD_EUNAVAIL, true);
    assert_int_equal(g.status, 0);
    if (!strstr(g.message, "refused"))
        fail_msg("message: %s", g.message);
    int closed = 0;
    dd_http_close(h, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(g.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    got_free(&g);
}

static void test_connect_timeout(void **state)
{
    /* a listener whose accept queue is full (backlog 0, one connection
     * never accepted): Linux drops further SYNs, so a connect hangs. The
     * per-attempt connect timeout (200 ms) ends the request long before the
     * request timeout (10 s). */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&a, sizeof(a)), 0);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", ntohs(a.sin_port));
    dd_http_opts o = {.base_url = base, .connect_timeout_ms = 200};
    dd_http *h = NULL;
    char err[1024] = "";
    assert_int_equal(dd_http_new(&loop, &o, &h, err, sizeof(err)), 0);
    got g = {0};
    uv_update_time(&loop);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(dd_http_request(h, "GET", "/", NULL, NULL, 0, 10000, on_reply, &g, NULL), 0);
    assert_true(run_until(&loop, got_called, &g, 12000));
    uint64_t ms = (g.at_ns - t0) / 1000000;
    print_message("connect timeout after %llu ms: %s\n", (unsigned long long)ms, g.message);
    dd_test_sleep_loop(&loop, 30);
    assert_int_equal(g.calls, 1);
    if (g.err != DD_ETIMEOUT && g.err != DD_EUNAVAIL)
        fail_msg("err %d (%s): %s", g.err, dd_strerror(g.err), g.message);
    assert_true(g.transient);
    assert_int_equal(g.status, 0);
    assert_true(ms >= 199);
    assert_true(ms < 5000);
    int closed = 0;
    dd_http_close(h, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(g.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(filler);
    close(lfd);
    got_free(&g);
}

static void test_timeout_silent_server(void **state)
{
    const action acts[] = {{ACT_SILENT, NULL, 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    uv_update_time(&f.loop);
    uint64_t t0 = uv_hrtime();
    send_req(&f, "POST", "/slow", NULL, "a", 1, 300, &g);
    wait_reply(&f, &g);
    assert_failed(&g, DD_ETIMEOUT, true);
    assert_int_equal(g.status, 0);
    uint64_t ms = (g.at_ns - t0) / 1000000;
    print_message("timeout after %llu ms\n", (unsigned long long)ms);
    /* libuv timers have 1 ms resolution on a cached clock: allow 1 ms */
    assert_true(ms >= 299);
    assert_true(ms < 5000);
    assert_int_equal(f.s.nreq, 1);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_timeout_stalled_reply(void **state)
{
    /* timeout_ms bounds the whole request: a reply that starts and stalls */
    const action acts[] = {
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    uv_update_time(&f.loop);
    uint64_t t0 = uv_hrtime();
    send_req(&f, "GET", "/stall", NULL, NULL, 0, 300, &g);
    wait_reply(&f, &g);
    assert_failed(&g, DD_ETIMEOUT, true);
    uint64_t ms = (g.at_ns - t0) / 1000000;
    assert_true(ms >= 299);
    assert_true(ms < 5000);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_max_body_content_length(void **state)
{
    char reply[256], big[101];
    memset(big, 'x', 100);
    big[100] = '\0';
    snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n%s", big);
    const action acts[] = {{ACT_REPLY, reply, 0, NULL, 0}};
    got g = {0};
    one_request(acts, 1, 64, "GET", "/big", 2000, &g);
    assert_failed(&g, DD_EPROTO, false);
    got_free(&g);
}

static void test_max_body_chunked(void **state)
{
    /* 3 chunks of 30: no single chunk is too large, the sum is */
    static const char reply[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "1e\r\n012345678901234567890123456789\r\n"
                                "1e\r\n012345678901234567890123456789\r\n"
                                "1e\r\n012345678901234567890123456789\r\n"
                                "0\r\n\r\n";
    const action acts[] = {{ACT_REPLY, reply, 0, NULL, 0}};
    got g = {0};
    one_request(acts, 1, 64, "GET", "/big", 2000, &g);
    assert_failed(&g, DD_EPROTO, false);
    got_free(&g);
}

static void test_max_body_to_eof(void **state)
{
    char reply[256], big[101];
    memset(big, 'y', 100);
    big[100] = '\0';
    snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%s", big);
    const action acts[] = {{ACT_REPLY_CLOSE, reply, 0, NULL, 0}};
    got g = {0};
    one_request(acts, 1, 64, "GET", "/big", 2000, &g);
    assert_failed(&g, DD_EPROTO, false);
    got_free(&g);
}

static void test_max_body_exactly(void **state)
{
    /* "a larger reply body fails": one of exactly max_body bytes does not */
    char reply[256], body[65];
    memset(body, 'z', 64);
    body[64] = '\0';
    snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n%s", body);
    const action acts[] = {{ACT_REPLY, reply, 0, NULL, 0}};
    got g = {0};
    one_request(acts, 1, 64, "GET", "/64", 2000, &g);
    assert_ok(&g, 200, body, 64);
    got_free(&g);
}

static void test_malformed_status_line(void **state)
{
    /* the server keeps the connection open: the error must come from the
     * status line itself, not from a timeout or EOF */
    const action acts[] = {{ACT_REPLY, "HELLO\r\n\r\n", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "GET", "/", NULL, NULL, 0, 3000, &g);
    wait_reply(&f, &g);
    assert_int_equal(g.calls, 1);
    if (g.err != DD_EPROTO)
        fail_msg("err %d (%s): %s", g.err, dd_strerror(g.err), g.message);
    assert_true(strlen(g.message) > 0);
    assert_int_equal(g.status, 0);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_status_passes_through(void **state)
{
    static const char body[] = "{\"code\":14,\"message\":\"down\"}";
    char reply[256];
    snprintf(reply, sizeof(reply),
             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    const action acts[] = {{ACT_REPLY, reply, 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "POST", "/x", NULL, "{}", 2, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 503, body, strlen(body));
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

static void test_replies_without_body(void **state)
{
    /* 204 and 304 have no body whatever their headers say, and a 1xx other
     * than 100 is skipped too; the connection stays open, so the reply must
     * end at its header block (not at EOF, not by timeout) */
    const action acts[] = {
        {ACT_REPLY, "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", 0, NULL, 0}};
    fx f;
    got g[3] = {{0}};
    fx_start(&f, acts, 3, NULL, 0);
    for (int i = 0; i < 3; i++) {
        send_req(&f, "GET", "/", NULL, NULL, 0, 3000, &g[i]);
        wait_reply(&f, &g[i]);
    }
    assert_ok(&g[0], 204, "", 0);
    assert_ok(&g[1], 304, "", 0);
    assert_ok(&g[2], 200, "next", 4);
    assert_int_equal(f.s.nreq, 3);
    fx_stop(&f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_header_names_any_case(void **state)
{
    const action acts[] = {
        {ACT_REPLY, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nCONTENT-LENGTH:3\r\n\r\nabc", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: \t4 \r\n\r\nabcd", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
         0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast", 0, NULL, 0}};
    static const char *const want[] = {"ok", "abc", "abcd", "hi", "last"};
    fx f;
    got g[5] = {{0}};
    fx_start(&f, acts, 5, NULL, 0);
    for (int i = 0; i < 5; i++) {
        send_req(&f, "GET", "/", NULL, NULL, 0, 3000, &g[i]);
        wait_reply(&f, &g[i]);
        assert_ok(&g[i], 200, want[i], strlen(want[i]));
    }
    fx_stop(&f);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_bad_framing(void **state)
{
    /* each reply is broken in its own way and the connection stays open:
     * the client must notice from the bytes (no EOF, no timeout) */
    const action acts[] = {
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
         0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0,
         NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\n",
         0, NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 0,
         NULL, 0},
        {ACT_REPLY, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", 0, NULL, 0},
    };
    enum { N = sizeof(acts) / sizeof(acts[0]) };
    fx f;
    fx_start(&f, acts, N, NULL, 0);
    got g[N];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++) {
        send_req(&f, "GET", "/", NULL, NULL, 0, 3000, &g[i]);
        wait_reply(&f, &g[i]);
        if (g[i].calls != 1 || g[i].err != DD_EPROTO)
            fail_msg("reply %d: calls %d err %d (%s) status %d: %s", i, g[i].calls, g[i].err,
                     dd_strerror(g[i].err), g[i].status, g[i].message);
        assert_true(strlen(g[i].message) > 0);
    }
    assert_int_equal(f.s.nreq, N);
    fx_stop(&f);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_strict_framing(void **state)
{
    /* Leniencies of the first parser (issue 12), each accepted before as
     * shown: the server closes after writing, so a lenient client gets a
     * "successful" reply; RFC 9112 says each of these is invalid. */
    static const char *const replies[] = {
        /* no status code: " %3d" skipped CR/LF and read "200" from the body */
        "HTTP/1.1 \r\n \r\n\r\n200 OK",
        /* conflicting Content-Length: the last one won ("abcd") */
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 4\r\n\r\nabcd",
        /* not chunked, but "chunked" is a substring */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        /* chunked is not the final coding / a coding we cannot decode */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        /* strtoull(.., 16) took the "0x" prefix */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n",
        /* framing by both: a smuggling pattern (RFC 9112 6.3) */
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhi\r\n0\r\n\r\n",
    };
    enum { N = sizeof(replies) / sizeof(replies[0]) };
    int bad = 0; /* every case is tried, so a failure lists all that pass wrongly */
    for (int i = 0; i < N; i++) {
        const action acts[] = {{ACT_REPLY_CLOSE, replies[i], 0, NULL, 0}};
        got g = {0};
        one_request(acts, 1, 0, "GET", "/", 3000, &g);
        if (g.err != DD_EPROTO || g.transient || !*g.message) {
            print_error("reply %d: err %d (%s) status %d body '%.*s': %s\n", i, g.err,
                        dd_strerror(g.err), g.status, (int)g.body_len, g.body ? g.body : "",
                        g.message);
            bad++;
        }
        got_free(&g);
    }
    assert_int_equal(bad, 0);
}

static void test_identical_content_lengths(void **state)
{
    /* RFC 9110 8.6: the same value repeated is one valid Content-Length */
    const action acts[] = {
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 0,
         NULL, 0},
        {ACT_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", 0, NULL, 0}};
    fx f;
    got g[2] = {{0}};
    fx_start(&f, acts, 2, NULL, 0);
    for (int i = 0; i < 2; i++) {
        send_req(&f, "GET", "/", NULL, NULL, 0, 3000, &g[i]);
        wait_reply(&f, &g[i]);
    }
    assert_ok(&g[0], 200, "ok", 2);
    assert_ok(&g[1], 200, "abc", 3);
    fx_stop(&f);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_header_limit_total(void **state)
{
    /* 64 KiB of status line and headers, however the reads split them:
     * the first parser checked only reads that lacked the end of the
     * headers, so a 70 KiB head whose end came in a later read passed. */
    size_t big = 70u << 10;
    const char *pre = "HTTP/1.1 200 OK\r\nX-Big: ";
    const char *post = "\r\nContent-Length: 2\r\n\r\nok";
    size_t pl = strlen(pre), ql = strlen(post);
    char *reply = malloc(pl + big + ql + 1);
    memcpy(reply, pre, pl);
    memset(reply + pl, 'a', big);
    memcpy(reply + pl + big, post, ql + 1);
    const action acts[] = {{ACT_REPLY_CLOSE, reply, 0, NULL, 0}};
    got g = {0};
    one_request(acts, 1, 0, "GET", "/", 3000, &g);
    assert_failed(&g, DD_EPROTO, false);
    got_free(&g);
    free(reply);
}

static void test_large_bodies(void **state)
{
    /* 1 MiB up, 3 MiB down: many writes and reads */
    size_t up = 1 << 20, down = 3 << 20;
    char *body = malloc(up);
    for (size_t i = 0; i < up; i++)
        body[i] = (char)('a' + i % 23);
    char head[128];
    int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", down);
    char *reply = malloc((size_t)hl + down);
    memcpy(reply, head, (size_t)hl);
    for (size_t i = 0; i < down; i++)
        reply[(size_t)hl + i] = (char)('A' + i % 19);
    const action acts[] = {{ACT_REPLY, reply, (size_t)hl + down, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "POST", "/big", NULL, body, up, 10000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, reply + hl, down);
    size_t blen;
    const char *b = req_body(&f.s, 0, &blen);
    assert_int_equal(blen, up);
    assert_memory_equal(b, body, up);
    fx_stop(&f);
    assert_int_equal(g.calls, 1);
    got_free(&g);
    free(body);
    free(reply);
}

static void test_many_sequential_one_connection(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "ok", 0, NULL, 0}};
    fx f;
    got g[20];
    memset(g, 0, sizeof(g));
    fx_start(&f, acts, 1, NULL, 0);
    for (int i = 0; i < 20; i++) {
        send_req(&f, "POST", "/n", NULL, "x", 1, 2000, &g[i]);
        assert_true(run_until(&f.loop, got_called, &g[i], 5000));
        assert_ok(&g[i], 200, "ok", 2);
    }
    assert_int_equal(f.s.nreq, 20);
    assert_int_equal(f.s.nconn, 1);
    fx_stop(&f);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

static void test_max_idle(void **state)
{
    /* three parallel requests need three connections; with max_idle 1, two
     * are closed once done and the third is reused */
    const action acts[] = {{ACT_HOLD, NULL, 0, NULL, 0},
                           {ACT_HOLD, NULL, 0, NULL, 0},
                           {ACT_HOLD, NULL, 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(4) "more", 0, NULL, 0}};
    dd_http_opts o = {.max_idle = 1, .connect_timeout_ms = 2000};
    fx f;
    got g[4];
    memset(g, 0, sizeof(g));
    fx_start_o(&f, acts, 4, NULL, &o);
    f.s.hold_n = 3;
    for (int i = 0; i < 3; i++)
        send_req(&f, "GET", "/p", NULL, NULL, 0, 3000, &g[i]);
    for (int i = 0; i < 3; i++)
        wait_reply(&f, &g[i]);
    for (int i = 0; i < 3; i++)
        assert_ok(&g[i], 200, "/p", 2);
    assert_int_equal(f.s.nconn, 3);
    nreq_at_least w = {&f.s, 2};
    assert_true(run_until(&f.loop, srv_has_peer_closed, &w, 2000));
    dd_test_sleep_loop(&f.loop, 100);
    assert_int_equal(f.s.peer_closed, 2);
    send_req(&f, "GET", "/q", NULL, NULL, 0, 2000, &g[3]);
    wait_reply(&f, &g[3]);
    assert_ok(&g[3], 200, "more", 4);
    assert_int_equal(f.s.nconn, 3);
    fx_stop(&f);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(g[i].calls, 1);
        got_free(&g[i]);
    }
}

/* A callback that closes the client or sends the next request. */
typedef struct chain {
    fx *f;
    bool close;
    got g, g2;
} chain;

static void on_reply_chain(const dd_http_reply *r, void *arg)
{
    chain *c = arg;
    on_reply(r, &c->g);
    if (c->close) {
        dd_http_close(c->f->h, on_closed, &c->f->closed);
        c->f->h = NULL;
    } else {
        send_req(c->f, "GET", "/second", NULL, NULL, 0, 2000, &c->g2);
    }
}

static void test_close_from_callback(void **state)
{
    /* the common CLI shape: close the client in the last callback, with
     * another request still in flight (its callback must not run) */
    const action acts[] = {{ACT_SILENT, NULL, 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(2) "ok", 0, NULL, 0}};
    fx f;
    got pending = {0};
    chain c = {.f = &f, .close = true};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "GET", "/silent", NULL, NULL, 0, 3000, &pending);
    nreq_at_least w = {&f.s, 1};
    assert_true(run_until(&f.loop, srv_has_nreq, &w, 3000));
    assert_int_equal(dd_http_request(f.h, "GET", "/ok", NULL, NULL, 0, 3000, on_reply_chain, &c,
                                     NULL),
                     0);
    assert_true(run_until(&f.loop, got_called, &c.g, 5000));
    assert_null(f.h);
    assert_ok(&c.g, 200, "ok", 2);
    nreq_at_least w2 = {&f.s, 2};
    assert_true(run_until(&f.loop, srv_has_peer_closed, &w2, 3000));
    fx_stop(&f);
    assert_int_equal(pending.calls, 0);
    assert_int_equal(c.g.calls, 1);
    got_free(&c.g);
}

static void test_request_from_callback(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(5) "first", 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(6) "second", 0, NULL, 0}};
    fx f;
    chain c = {.f = &f, .close = false};
    fx_start(&f, acts, 2, NULL, 0);
    assert_int_equal(dd_http_request(f.h, "GET", "/first", NULL, NULL, 0, 3000, on_reply_chain, &c,
                                     NULL),
                     0);
    assert_true(run_until(&f.loop, got_called, &c.g2, 5000));
    dd_test_sleep_loop(&f.loop, 30);
    assert_ok(&c.g, 200, "first", 5);
    assert_ok(&c.g2, 200, "second", 6);
    assert_int_equal(f.s.nreq, 2);
    fx_stop(&f);
    assert_int_equal(c.g.calls, 1);
    assert_int_equal(c.g2.calls, 1);
    got_free(&c.g);
    got_free(&c.g2);
}

static void test_cancel(void **state)
{
    const action acts[] = {{ACT_SILENT, NULL, 0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(5) "after", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    dd_http_req *r = send_req(&f, "POST", "/c", NULL, "a", 1, 3000, &g);
    assert_non_null(r);
    nreq_at_least w = {&f.s, 1};
    assert_true(run_until(&f.loop, srv_has_nreq, &w, 3000));
    dd_http_abandon(r);
    assert_int_equal(g.calls, 0);
    /* the server sees the connection closed */
    assert_true(run_until(&f.loop, srv_has_peer_closed, &w, 3000));
    dd_test_sleep_loop(&f.loop, 50);
    assert_int_equal(g.calls, 0);
    /* and the client still works */
    send_req(&f, "POST", "/d", NULL, "b", 1, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "after", 5);
    assert_int_equal(f.s.nconn, 2);
    fx_stop(&f);
    assert_int_equal(g.calls, 0);
    assert_int_equal(g2.calls, 1);
    got_free(&g);
    got_free(&g2);
}

static void test_close_with_requests_in_flight(void **state)
{
    const action acts[] = {{ACT_SILENT, NULL, 0, NULL, 0}};
    fx f;
    got g[3] = {{0}};
    fx_start(&f, acts, 1, NULL, 0);
    for (int i = 0; i < 3; i++)
        send_req(&f, "POST", "/x", NULL, "a", 1, 3000, &g[i]);
    nreq_at_least w = {&f.s, 3};
    assert_true(run_until(&f.loop, srv_has_nreq, &w, 3000));
    dd_http_close(f.h, on_closed, &f.closed);
    assert_int_equal(f.closed, 0);
    /* closing: new requests are refused without a callback */
    got late = {0};
    assert_int_equal(
        dd_http_request(f.h, "GET", "/late", NULL, NULL, 0, 1000, on_reply, &late, NULL),
        DD_ECANCELED);
    f.h = NULL;
    /* the client's connections close; then the server's side */
    assert_true(run_until(&f.loop, srv_has_peer_closed, &w, 3000));
    srv_stop(&f.s);
    uv_run(&f.loop, UV_RUN_DEFAULT); /* returns: nothing left open */
    assert_int_equal(f.closed, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(g[i].calls, 0);
    assert_int_equal(late.calls, 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    srv_free_reqs(&f.s);
}

static void test_close_idle_and_unused(void **state)
{
    /* a client with an idle keep-alive connection, and one never used */
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "ok", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    send_req(&f, "GET", "/", NULL, NULL, 0, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "ok", 2);
    fx_stop(&f); /* checks the loop closes clean */

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    dd_http_opts o = {.base_url = "http://127.0.0.1:9"};
    dd_http *h = NULL;
    char err[1024] = "";
    assert_int_equal(dd_http_new(&loop, &o, &h, err, sizeof(err)), 0);
    int closed = 0;
    dd_http_close(h, on_closed, &closed);
    assert_int_equal(closed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(g.calls, 1);
    got_free(&g);
}

/* Bytes after a complete reply (a server that sent more than it announced)
 * must not be taken as the next request's reply: that connection is dropped
 * and the next request gets its own connection and its own answer. */
static void test_bytes_after_reply_not_reused(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "okHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSPOOF",
                            0, NULL, 0},
                           {ACT_REPLY, OK_REPLY(4) "real", 0, NULL, 0}};
    fx f;
    got g = {0}, g2 = {0};
    fx_start(&f, acts, 2, NULL, 0);
    send_req(&f, "GET", "/1", NULL, NULL, 0, 2000, &g);
    wait_reply(&f, &g);
    assert_ok(&g, 200, "ok", 2);
    send_req(&f, "GET", "/2", NULL, NULL, 0, 2000, &g2);
    wait_reply(&f, &g2);
    assert_ok(&g2, 200, "real", 4);
    assert_int_equal(f.s.nconn, 2);
    fx_stop(&f);
    got_free(&g);
    got_free(&g2);
}

typedef struct self_cancel {
    dd_http_req *req;
    int calls;
} self_cancel;

static void on_reply_cancel_self(const dd_http_reply *r, void *arg)
{
    self_cancel *sc = arg;
    sc->calls++;
    dd_http_abandon(sc->req); /* must be a no-op, not a double free */
}

static bool self_cancel_called(void *arg)
{
    return ((self_cancel *)arg)->calls > 0;
}

static void test_cancel_from_own_callback(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "ok", 0, NULL, 0}};
    fx f;
    self_cancel sc = {0};
    fx_start(&f, acts, 1, NULL, 0);
    assert_int_equal(dd_http_request(f.h, "GET", "/", NULL, NULL, 0, 2000,
                                     on_reply_cancel_self, &sc, &sc.req),
                     0);
    assert_true(run_until(&f.loop, self_cancel_called, &sc, 5000));
    dd_test_sleep_loop(&f.loop, 30);
    assert_int_equal(sc.calls, 1);
    fx_stop(&f);
}

static void test_bad_request_arguments(void **state)
{
    const action acts[] = {{ACT_REPLY, OK_REPLY(2) "ok", 0, NULL, 0}};
    fx f;
    got g = {0};
    fx_start(&f, acts, 1, NULL, 0);
    assert_int_equal(dd_http_request(f.h, "GET", "no-slash", NULL, NULL, 0, 1000, on_reply, &g,
                                     NULL),
                     DD_EINVAL);
    assert_int_equal(dd_http_request(f.h, "GET", "/", NULL, NULL, 0, 0, on_reply, &g, NULL),
                     DD_EINVAL);
    /* header lines must each end in CRLF, with no blank line among them:
     * otherwise the request head would end early or run into ours */
    static const char *const bad_headers[] = {"A: x", "A: x\r\nB: y", "A: x\n", "A: x\r\n\r\n",
                                              "A: x\rB: y\r\n", "\r\n"};
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++)
        assert_int_equal(dd_http_request(f.h, "GET", "/", bad_headers[i], NULL, 0, 1000,
                                         on_reply, &g, NULL),
                         DD_EINVAL);
    dd_test_sleep_loop(&f.loop, 50);
    assert_int_equal(g.calls, 0);
    assert_int_equal(f.s.nconn, 0);
    fx_stop(&f);
    assert_int_equal(g.calls, 0);
}

/* Every URL is checked and every problem listed before the test fails, and
 * a client that was (wrongly) created is closed, so a failure here does not
 * also show up as a leak. */
static void test_base_urls(void **state)
{
    static const char *const bad[] = {
        "ftp://x:1",      "http://",       "http://:80",      "http://h:0",
        "http://h:99999", "http://h:12ab", "http://user@h:1", "http://[::1",
        "http://h:1?x=1", "",              NULL,              "http://::1:80",
    };
    static const struct {
        const char *url, *shown;
    } good[] = {
        {"http://127.0.0.1:7243", "http://127.0.0.1:7243"},
        {"http://localhost", "http://localhost:80"},
        {"https://example.test", "https://example.test:443"},
        {"http://[::1]:8080", "http://[::1]:8080"},
        /* http.h: dd_http_base_url() drops the prefix's trailing slash */
        {"http://h:1/prefix/", "http://h:1/prefix"},
    };
    dd_buf problems = DD_BUF_INIT;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *url = bad[i] ? bad[i] : "(null)";
        dd_http_opts o = {.base_url = bad[i]};
        dd_http *h = NULL;
        char err[1024] = "";
        int rc = dd_http_new(&loop, &o, &h, err, sizeof(err));
        if (rc != DD_EINVAL)
            dd_buf_printf(&problems, "\n  '%s' gave %d, want DD_EINVAL", url, rc);
        else if (!err[0])
            dd_buf_printf(&problems, "\n  '%s': rejected without a message", url);
        else
            print_message("rejected '%s': %s\n", url, err);
        if (rc == 0 && h) {
            int closed = 0;
            dd_http_close(h, on_closed, &closed);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        dd_http_opts o = {.base_url = good[i].url};
        dd_http *h = NULL;
        char err[1024] = "";
        int rc = dd_http_new(&loop, &o, &h, err, sizeof(err));
        if (rc != 0 || !h) {
            dd_buf_printf(&problems, "\n  '%s' gave %d: %s", good[i].url, rc, err);
            continue;
        }
        if (strcmp(dd_http_base_url(h), good[i].shown) != 0)
            dd_buf_printf(&problems, "\n  '%s': dd_http_base_url() is '%s', want '%s'",
                          good[i].url, dd_http_base_url(h), good[i].shown);
        /* creating a client starts nothing: no lookup, no connection (an
         * active request or handle here would also keep a CLI's loop alive) */
        if (uv_loop_alive(&loop))
            dd_buf_printf(&problems, "\n  '%s': dd_http_new() left the loop alive", good[i].url);
        int closed = 0;
        dd_http_close(h, on_closed, &closed);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (closed != 1)
            dd_buf_printf(&problems, "\n  '%s': close callback ran %d times", good[i].url, closed);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    if (problems.len) {
        char msg[2048];
        snprintf(msg, sizeof(msg), "%s", dd_buf_str(&problems));
        dd_buf_release(&problems);
        fail_msg("%s", msg);
    }
}

static void test_missing_tls_files(void **state)
{
    static const char *const missing = "/nonexistent/dd-test-http/file.pem";
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (int i = 0; i < 3; i++) {
        dd_http_opts o = {.base_url = "https://127.0.0.1:1"};
        if (i == 0)
            o.ca_file = missing;
        else if (i == 1)
            o.cert_file = missing;
        else {
            o.cert_file = missing;
            o.key_file = missing;
        }
        dd_http *h = NULL;
        char err[1024] = "";
        int rc = dd_http_new(&loop, &o, &h, err, sizeof(err));
        if (rc != DD_EINVAL)
            fail_msg("case %d: rc %d (%s)", i, rc, err);
        if (!strstr(err, missing))
            fail_msg("case %d: message does not name the file: %s", i, err);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_localhost(void **state)
{
    /* the server listens on 127.0.0.1 only; "localhost" may resolve to ::1
     * first, and the client must then try the next address */
    const action acts[] = {{ACT_REPLY, OK_REPLY(5) "local", 0, NULL, 0}};
    uv_loop_t loop;
    srv s;
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_start(&loop, &s, acts, 1);
    char base[64];
    snprintf(base, sizeof(base), "http://localhost:%d", s.port);
    dd_http_opts o = {.base_url = base, .connect_timeout_ms = 2000};
    dd_http *h = NULL;
    char err[1024] = "";
    assert_int_equal(dd_http_new(&loop, &o, &h, err, sizeof(err)), 0);
    got g = {0};
    assert_int_equal(dd_http_request(h, "GET", "/", NULL, NULL, 0, 3000, on_reply, &g, NULL), 0);
    assert_true(run_until(&loop, got_called, &g, 5000));
    dd_test_sleep_loop(&loop, 30);
    assert_ok(&g, 200, "local", 5);
    char v[64], want[64];
    int n;
    snprintf(want, sizeof(want), "localhost:%d", s.port);
    assert_string_equal(header(s.reqs[0], "host", &n, v, sizeof(v)), want);
    int closed = 0;
    dd_http_close(h, on_closed, &closed);
    srv_stop(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(g.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    srv_free_reqs(&s);
    got_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_and_request_bytes),
        cmocka_unit_test(test_get_without_body),
        cmocka_unit_test(test_post_without_body),
        cmocka_unit_test(test_chunked_in_pieces),
        cmocka_unit_test(test_content_length_in_pieces),
        cmocka_unit_test(test_body_to_eof_connection_close),
        cmocka_unit_test(test_http10_reply),
        cmocka_unit_test(test_100_continue),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_parallel_requests),
        cmocka_unit_test(test_idle_connection_closed_by_server),
        cmocka_unit_test(test_reused_connection_eof_resent),
        cmocka_unit_test(test_reused_connection_reset_resent),
        cmocka_unit_test(test_fresh_connection_eof),
        cmocka_unit_test(test_fresh_connection_reset),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_timeout_silent_server),
        cmocka_unit_test(test_timeout_stalled_reply),
        cmocka_unit_test(test_max_body_content_length),
        cmocka_unit_test(test_max_body_chunked),
        cmocka_unit_test(test_max_body_to_eof),
        cmocka_unit_test(test_max_body_exactly),
        cmocka_unit_test(test_malformed_status_line),
        cmocka_unit_test(test_status_passes_through),
        cmocka_unit_test(test_replies_without_body),
        cmocka_unit_test(test_header_names_any_case),
        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_strict_framing),
        cmocka_unit_test(test_identical_content_lengths),
        cmocka_unit_test(test_header_limit_total),
        cmocka_unit_test(test_large_bodies),
        cmocka_unit_test(test_many_sequential_one_connection),
        cmocka_unit_test(test_max_idle),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_request_from_callback),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_requests_in_flight),
        cmocka_unit_test(test_close_idle_and_unused),
        cmocka_unit_test(test_bytes_after_reply_not_reused),
        cmocka_unit_test(test_cancel_from_own_callback),
        cmocka_unit_test(test_bad_request_arguments),
        cmocka_unit_test(test_base_urls),
        cmocka_unit_test(test_missing_tls_files),
        cmocka_unit_test(test_localhost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
