/* temporal.c - Temporal HTTP API client on the libuv loop.
 *
 * Transport: src/http (HTTP/1.1 with keep-alive, optional TLS), whose
 * callbacks run from the loop, so user callbacks may start or cancel calls
 * freely.
 *
 * A call (dd_temporal_call) is one logical operation: it may take several
 * HTTP attempts (retries, history pages, long-poll re-polls), each one
 * dd_http request. A call owns a uv_timer_t for its retry delay, so a call is
 * freed from that timer's close callback, and the client is freed once its
 * last handle (the calls' timers and the HTTP client) has closed.
 *
 * This file sends requests, retries, keeps deadlines and cancels; what a
 * reply means (its size and parse bounds, the result it decodes to, whether
 * an error is worth a retry, whether to ask again) is codec.c's
 * dd_tc_decode(). */
#include "temporal/temporal.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "temporal/codec.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* The loss watch re-polls no sooner than this after the start of the
 * previous poll. A real server holds an empty long poll ~20 s, so this never
 * delays a healthy watch; a server (or proxy, or peer) that answers empty at
 * once would otherwise be asked again in a hot loop (~70k requests/s were
 * measured). 100 ms caps that at 10 requests/s per watch while adding at
 * most 100 ms to noticing a close in that degenerate case. */
#define REPOLL_FLOOR_MS 100

/* Requests in flight at once, long polls aside (temporal.h, max_in_flight):
 * the rest wait in line (below). 1,000 dispatchers starting (or failing over) at
 * once sent 1,000 starts together; the dev server answered the first after
 * 3 s, many after the 10 s request timeout, and the retries of those (1,396)
 * did the same work again (bench/scale, bench/RESULTS.md). */
#define DEFAULT_MAX_IN_FLIGHT 32

/* The line for a slot has two classes, each first come first served:
 * LINE_CONTINUE (dd_temporal_prioritize: a call that finishes work already
 * begun, e.g. a takeover's start after its describe) is served before
 * LINE_BEGIN (everything else: a describe that begins a takeover, a
 * reconciler's describe, a visibility list). One line made 1,000
 * takeovers begun at once queue 1,000 describes, and every start waited
 * behind all of them: the last took 31.8 s, at the edge of the 30 s call
 * deadline, and past it on a slower server (docs/scale.md).
 * The first class cannot starve the second beyond what the herd itself
 * imposes: a call is marked only when it continues an operation already
 * under way, which has one call out at a time (a takeover, a reconciler's
 * lane; a release has its one terminate), and an operation whose first
 * call waits in LINE_BEGIN behind ours has no continuation until that call
 * is served, after ours (first come first served). So what can pass a
 * waiting call is the rest of the operations begun before it, one call
 * each at a time: the herd it joined. Two marked calls are an operation's
 * first (a release's terminate, the describe after a loss watch's "not
 * found"); each owner has at most one such at a time, so those add at
 * most one call per owner: bounded, never a stream growing behind it. */
enum { LINE_BEGIN, LINE_CONTINUE, LINE_CLASSES };

struct dd_temporal {
    dd_ctx ctx;
    char *base; /* "/api/v1/namespaces/<ns>": request paths start with it */
    char *base_url, *ns, *identity;
    int64_t timeout_ms, deadline_ms, long_poll_ms, backoff_base_ms, backoff_cap_ms;
    int max_attempts;
    dd_buf headers; /* extra header lines of every request; holds the API key */
    dd_http *http;
    dd_temporal_call *calls; /* in flight, doubly linked */
    int active, max_active;  /* requests (not long polls) on the wire, and the cap */
    int64_t poll_busy_ms;    /* a long poll refused with 429: asked again after 1/2..1 of this */
    /* calls waiting for a slot, in order, per class (LINE_*) */
    dd_temporal_call *wait_head[LINE_CLASSES], *wait_tail[LINE_CLASSES];
    dd_rng rng;
    dd_metric *m_requests;
    int open_handles; /* uv handles not yet closed: the client is freed at 0 */
    bool closing;
    dd_temporal_close_cb close_cb;
    void *close_arg;
};

struct dd_temporal_call {
    dd_temporal *t;
    dd_temporal_call *prev, *next;
    dd_tc_op op;
    char *url;  /* without page token */
    char *body; /* NULL for GET */
    char *workflow_id, *run_id;
    dd_temporal_cb cb;
    void *arg;

    dd_http_req *req; /* the attempt in flight, if any */
    uv_timer_t timer; /* retry delay */
    dd_backoff bo;
    int failures;       /* consecutive failed attempts */
    uint64_t deadline;  /* dd_mono_ms(); 0: none (long-poll) */
    uint64_t sent_ms;   /* dd_mono_ms() when the attempt in flight was sent */
    bool done;
    bool cancelling; /* cancelled: finishes with DD_ECANCELED from the loop */
    bool slot;       /* holds one of the client's max_active slots */
    bool queued;     /* waiting for one (in t->wait_head[line]..) */
    int line;        /* LINE_BEGIN, or LINE_CONTINUE (dd_temporal_prioritize) */
    dd_temporal_call *wprev, *wnext;

    /* The decoded replies (codec.h): the result, the strings and events it
     * points to (valid until the callback returns), the message, and the
     * page token the next request sends. */
    dd_tc_reply dec;
};

static void dd_temporal_call_attempt(dd_temporal_call *c);

/* ---------------------------------------------------------------- helpers */

static char *dd_temporal_xdup(const char *s)
{
    return s ? dd_strdup(s) : NULL;
}

static void dd_temporal_maybe_free_client(dd_temporal *t)
{
    if (!t->closing || t->open_handles > 0)
        return;
    dd_temporal_close_cb cb = t->close_cb;
    void *arg = t->close_arg;
    if (t->headers.data) /* wipe the API key */
        explicit_bzero(t->headers.data, t->headers.len);
    dd_buf_release(&t->headers);
    free(t->base);
    free(t->base_url);
    free(t->ns);
    free(t->identity);
    free(t);
    if (cb)
        cb(arg);
}

static void dd_temporal_http_closed(void *arg)
{
    dd_temporal *t = arg;
    t->http = NULL;
    t->open_handles--;
    dd_temporal_maybe_free_client(t);
}

static void dd_temporal_count(dd_temporal *t, dd_tc_op op, const char *outcome)
{
    if (t->m_requests)
        dd_metric_add(t->m_requests, (const char *const[]){dd_tc_op_name(op), outcome}, 1);
}

const char *dd_temporal_status_name(dd_temporal_status s)
{
    static const char *const names[] = {"UNKNOWN", "RUNNING", "COMPLETED", "FAILED",
                                        "CANCELED", "TERMINATED", "CONTINUED_AS_NEW",
                                        "TIMED_OUT"};
    return (unsigned)s < 8 ? names[s] : "UNKNOWN";
}

/* ------------------------------------------------------- call lifecycle */

static void dd_temporal_call_closed(uv_handle_t *h)
{
    dd_temporal_call *c = h->data;
    dd_temporal *t = c->t;
    free(c);
    t->open_handles--;
    dd_temporal_maybe_free_client(t);
}

static void dd_temporal_retry_timer_cb(uv_timer_t *h);

static void dd_temporal_unqueue(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    if (!c->queued)
        return;
    c->queued = false;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        t->wait_head[c->line] = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    else
        t->wait_tail[c->line] = c->wprev;
    c->wprev = c->wnext = NULL;
}

/* At the end of its class's line. */
static void dd_temporal_enqueue(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    c->queued = true;
    c->wnext = NULL;
    c->wprev = t->wait_tail[c->line];
    if (c->wprev)
        c->wprev->wnext = c;
    else
        t->wait_head[c->line] = c;
    t->wait_tail[c->line] = c;
}

/* Gives the call's slot back: straight to the first waiting call, whose
 * attempt then starts from the loop (its own timer), never inside this. */
static void dd_temporal_slot_put(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    if (!c->slot)
        return;
    c->slot = false;
    dd_temporal_call *w = t->wait_head[LINE_CONTINUE];
    if (!w)
        w = t->wait_head[LINE_BEGIN];
    if (!w) {
        t->active--;
        return;
    }
    dd_temporal_unqueue(w);
    w->slot = true;
    uv_timer_start(&w->timer, dd_temporal_retry_timer_cb, 0, 0);
}

/* A slot for the next attempt: true to send now, false when it waits in
 * line (its attempt starts when a slot is handed to it). */
static bool dd_temporal_slot_take(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    if (c->slot || c->op == DD_TC_WAIT_CLOSE)
        return true;
    if (t->active < t->max_active) {
        t->active++;
        c->slot = true;
        return true;
    }
    dd_temporal_enqueue(c);
    return false;
}

static void dd_temporal_abandon_attempt(dd_temporal_call *c)
{
    if (c->req) {
        dd_http_abandon(c->req);
        c->req = NULL;
    }
    dd_temporal_slot_put(c);
}

/* Runs the callback once and frees the call (asynchronously). */
static void dd_temporal_call_finish(dd_temporal_call *c, int err)
{
    dd_temporal *t = c->t;
    if (c->done)
        return;
    c->done = true;
    dd_temporal_unqueue(c);
    dd_temporal_abandon_attempt(c);
    uv_timer_stop(&c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;

    if (err == DD_ECANCELED && c->dec.msg.len == 0)
        dd_buf_printf(&c->dec.msg, "%s cancelled", dd_tc_op_name(c->op));
    const dd_temporal_result *res = dd_tc_reply_result(&c->dec, err);
    /* "not found" answers a question (is anything running under this ID?)
     * and is how every fresh takeover's describe ends: not an error */
    dd_temporal_count(t, c->op,
          err == 0                ? "ok"
          : err == DD_ENOTFOUND   ? "not_found"
          : err == DD_ECANCELED   ? "cancelled"
                                  : "error");
    if (err < 0 && err != DD_ECANCELED)
        dd_debug(t->ctx.log, "temporal_call_failed", "op=%s workflow_id=%s error=%s message=%s",
                 dd_tc_op_name(c->op), c->workflow_id ? c->workflow_id : "", dd_strerror(err),
                 res->message);
    if (c->cb) /* NULL: fire and forget (e.g. a best-effort terminate) */
        c->cb(err, res, c->arg);

    dd_tc_reply_release(&c->dec);
    free(c->url);
    free(c->body);
    free(c->workflow_id);
    free(c->run_id);
    uv_close((uv_handle_t *)&c->timer, dd_temporal_call_closed);
}

static void dd_temporal_retry_timer_cb(uv_timer_t *h)
{
    dd_temporal_call_attempt(h->data);
}

/* After a failed attempt: schedule another or finish. */
static void dd_temporal_call_failed(dd_temporal_call *c, int err, bool retry)
{
    dd_temporal *t = c->t;
    c->failures++;
    if (retry && c->failures < t->max_attempts && !dd_ctx_cancelled(&t->ctx)) {
        int64_t delay = dd_backoff_next(&c->bo);
        /* A long poll refused with 429: the namespace is at its limit of
         * long-running requests (frontend.namespaceCount, 1,200 per
         * frontend by default; docs/scale.md). Asking again within a
         * second, as for other errors, only adds to the load that refused
         * it (5,000 watches on one host drew 431,447 such answers in four
         * minutes); the watch buys latency, the fenced heartbeat is the
         * backstop, so it waits seconds. */
        if (c->op == DD_TC_WAIT_CLOSE && c->dec.res.http_status == 429 && delay < t->poll_busy_ms)
            delay = t->poll_busy_ms / 2 +
                    (int64_t)(dd_rng_unit(&t->rng) * (double)(t->poll_busy_ms / 2));
        if (!c->deadline || dd_mono_ms() + (uint64_t)delay < c->deadline) {
            dd_temporal_count(t, c->op, "retry");
            dd_warn(t->ctx.log, "temporal_retry",
                    "op=%s workflow_id=%s attempt=%d delay_ms=%lld http_status=%d error=%s "
                    "message=%s",
                    dd_tc_op_name(c->op), c->workflow_id ? c->workflow_id : "", c->dec.res.attempts,
                    (long long)delay, c->dec.res.http_status, dd_strerror(err),
                    dd_buf_str(&c->dec.msg));
            dd_buf_reset(&c->dec.msg);
            uv_timer_start(&c->timer, dd_temporal_retry_timer_cb, (uint64_t)delay, 0);
            return;
        }
    }
    if (retry) {
        /* Say that we tried, and why we stopped. */
        char *last = dd_buf_detach(&c->dec.msg);
        dd_buf_printf(&c->dec.msg, "temporal at '%s' unavailable after %d attempt%s: %s",
                      t->base_url, c->dec.res.attempts, c->dec.res.attempts == 1 ? "" : "s",
                      last ? last : "");
        free(last);
        if (dd_ctx_cancelled(&t->ctx))
            err = DD_ECANCELED;
    }
    dd_temporal_call_finish(c, err);
}

static void dd_temporal_on_reply(const dd_http_reply *rep, void *arg)
{
    dd_temporal_call *c = arg;
    bool retry = false;
    c->req = NULL;
    dd_temporal_slot_put(c);
    c->dec.res.http_status = rep->status;
    dd_buf_reset(&c->dec.msg);

    if (rep->err != 0) {
        dd_buf_puts(&c->dec.msg, rep->message);
        dd_temporal_call_failed(c, rep->err, rep->transient);
        return;
    }
    int rc = dd_tc_decode(&c->dec, rep->status, rep->body, rep->body_len, &retry);
    if (rc == 1) { /* the next history page, or wait_close's re-poll */
        c->failures = 0;
        dd_backoff_reset(&c->bo);
        uint64_t since = dd_mono_ms() - c->sent_ms;
        if (dd_ctx_cancelled(&c->t->ctx))
            dd_temporal_call_finish(c, DD_ECANCELED);
        else if (c->op == DD_TC_WAIT_CLOSE && since < REPOLL_FLOOR_MS)
            uv_timer_start(&c->timer, dd_temporal_retry_timer_cb, REPOLL_FLOOR_MS - since, 0);
        else
            dd_temporal_call_attempt(c);
        return;
    }
    if (rc < 0)
        dd_temporal_call_failed(c, rc, retry); /* finishes unless retry */
    else
        dd_temporal_call_finish(c, 0);
}

static void dd_temporal_call_attempt(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    dd_buf url = DD_BUF_INIT;
    int64_t tmo = c->op == DD_TC_WAIT_CLOSE ? t->long_poll_ms : t->timeout_ms;
    if (c->deadline) {
        uint64_t now = dd_mono_ms();
        if (now >= c->deadline) {
            dd_temporal_slot_put(c);
            dd_buf_reset(&c->dec.msg);
            dd_buf_printf(&c->dec.msg, "%s of workflow '%s' exceeded its deadline",
                          dd_tc_op_name(c->op), c->workflow_id ? c->workflow_id : "");
            dd_temporal_call_finish(c, DD_ETIMEOUT);
            return;
        }
        if ((int64_t)(c->deadline - now) < tmo)
            tmo = (int64_t)(c->deadline - now);
    }
    if (!dd_temporal_slot_take(c))
        return; /* in line: slot_put starts this attempt */
    dd_buf_puts(&url, c->url);
    if (c->dec.page_token) {
        dd_buf_putc(&url, strchr(c->url, '?') ? '&' : '?');
        dd_buf_puts(&url, "nextPageToken=");
        dd_tc_url_escape(&url, c->dec.page_token);
    }
    c->dec.res.attempts++;
    c->sent_ms = dd_mono_ms();
    dd_debug(t->ctx.log, "temporal_request", "op=%s workflow_id=%s attempt=%d",
             dd_tc_op_name(c->op), c->workflow_id ? c->workflow_id : "", c->dec.res.attempts);
    int rc = dd_http_request(t->http, c->body ? "POST" : "GET", dd_buf_str(&url),
                             dd_buf_str(&t->headers), c->body, c->body ? strlen(c->body) : 0,
                             tmo, dd_temporal_on_reply, c, &c->req);
    dd_buf_release(&url);
    if (rc < 0) {
        dd_buf_reset(&c->dec.msg);
        dd_buf_printf(&c->dec.msg, "cannot send %s request: %s", dd_tc_op_name(c->op),
                      dd_strerror(rc));
        dd_temporal_call_finish(c, rc);
    }
}

static dd_temporal_call *dd_temporal_call_new(dd_temporal *t, dd_tc_op op, const char *wf, const char *run,
                                  dd_temporal_cb cb, void *arg)
{
    dd_temporal_call *c = dd_xcalloc(1, sizeof(*c));
    c->t = t;
    c->op = op;
    c->cb = cb;
    c->arg = arg;
    c->workflow_id = dd_temporal_xdup(wf);
    c->run_id = dd_temporal_xdup(run);
    dd_tc_reply_init(&c->dec, op, t->ns, c->workflow_id, c->run_id);
    dd_backoff_init(&c->bo, t->backoff_base_ms, t->backoff_cap_ms, dd_rng_next(&t->rng));
    c->deadline = op == DD_TC_WAIT_CLOSE ? 0 : dd_mono_ms() + (uint64_t)t->deadline_ms;
    uv_timer_init(t->ctx.loop, &c->timer);
    c->timer.data = c;
    t->open_handles++;
    c->next = t->calls;
    if (t->calls)
        t->calls->prev = c;
    t->calls = c;
    return c;
}

/* ------------------------------------------------------ client lifecycle */

int dd_temporal_new(const dd_ctx *ctx, const dd_temporal_opts *o, dd_temporal **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (!o->base_url || !*o->base_url || !o->namespace_ || !*o->namespace_) {
        dd_msgf(err, errlen, "temporal base url and namespace are required");
        return DD_EINVAL;
    }
    if (o->api_key && strpbrk(o->api_key, "\r\n")) {
        dd_msgf(err, errlen, "the Temporal API key contains a line break");
        return DD_EINVAL;
    }
    dd_buf b = DD_BUF_INIT;
    dd_http *http = NULL;
    dd_http_opts ho = {
        .base_url = o->base_url,
        .ca_file = o->ca_file,
        .cert_file = o->cert_file,
        .key_file = o->key_file,
        .tls_opt_prefix = "--temporal",
        .max_body = DD_TC_MAX_BODY,
    };
    int rc = dd_http_new(ctx->loop, &ho, &http, err, errlen);
    if (rc < 0)
        return rc;
    dd_temporal *t = dd_xcalloc(1, sizeof(*t));
    t->http = http;
    t->ctx = *ctx;
    t->base_url = dd_strdup(o->base_url);
    size_t n = strlen(t->base_url);
    while (n > 0 && t->base_url[n - 1] == '/')
        t->base_url[--n] = '\0';
    t->ns = dd_strdup(o->namespace_);
    dd_buf_puts(&b, "/api/v1/namespaces/");
    dd_tc_url_escape(&b, t->ns);
    t->base = dd_buf_detach(&b);
    if (o->identity) {
        t->identity = dd_strdup(o->identity);
    } else {
        char host[256] = "unknown";
        gethostname(host, sizeof(host) - 1);
        dd_buf_printf(&b, "dispatchd@%s", host);
        t->identity = dd_buf_detach(&b);
    }
    t->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    t->deadline_ms = o->deadline_ms > 0 ? o->deadline_ms : 30000;
    t->long_poll_ms = o->long_poll_ms > 0 ? o->long_poll_ms : 70000;
    t->max_attempts = o->max_attempts > 0 ? o->max_attempts : 5;
    t->backoff_base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 100;
    t->backoff_cap_ms = o->backoff_cap_ms > 0 ? o->backoff_cap_ms : 2000;
    t->max_active = o->max_in_flight > 0 ? o->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    t->poll_busy_ms = o->long_poll_busy_ms > 0 ? o->long_poll_busy_ms : 10000;
    dd_rng_seed(&t->rng, 0);

    dd_buf_puts(&t->headers, "Content-Type: application/json\r\n"
                             "Accept: application/json+no-payload-shorthand\r\n");
    if (o->api_key && *o->api_key) {
        if (ctx->log)
            dd_log_add_secret(ctx->log, o->api_key);
        dd_buf_printf(&t->headers, "Authorization: Bearer %s\r\n", o->api_key);
    }
    t->open_handles = 1; /* the HTTP client */

    if (ctx->metrics)
        t->m_requests = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_temporal_calls_total",
            "Temporal API calls and retries by operation and outcome (ok, not_found, "
            "cancelled, retry, error; not_found is a normal answer, e.g. the describe before a "
            "fresh takeover, and cancelled is our own doing, e.g. the loss watch on release).",
            (const char *const[]){"op", "outcome", NULL}, NULL, 0);
    *out = t;
    return 0;
}

static void dd_temporal_cancel_fire(uv_timer_t *h)
{
    dd_temporal_call_finish(h->data, DD_ECANCELED);
}

/* The one meaning of cancel (CONTRIBUTING.md): the attempt in flight is
 * dropped now, and the callback runs once with DD_ECANCELED from the loop,
 * never inside the cancel call, so no caller has to order its state around
 * a callback that runs under its feet. */
static void dd_temporal_call_cancel(dd_temporal_call *c)
{
    if (c->done || c->cancelling)
        return;
    c->cancelling = true;
    dd_temporal_unqueue(c); /* never handed a slot now */
    dd_temporal_abandon_attempt(c);
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, dd_temporal_cancel_fire, 0, 0);
}

void dd_temporal_cancel(dd_temporal_call *c)
{
    if (c)
        dd_temporal_call_cancel(c);
}

void dd_temporal_prioritize(dd_temporal_call *c)
{
    if (!c || c->done || c->line == LINE_CONTINUE)
        return;
    bool queued = c->queued;
    dd_temporal_unqueue(c);
    c->line = LINE_CONTINUE;
    if (queued) /* its first attempt waits: at the end of the first class */
        dd_temporal_enqueue(c);
}

void dd_temporal_close(dd_temporal *t, dd_temporal_close_cb cb, void *arg)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_arg = arg;
    for (dd_temporal_call *c = t->calls; c; c = c->next)
        dd_temporal_call_cancel(c);
    dd_http_close(t->http, dd_temporal_http_closed, t);
}

/* ------------------------------------------------------------ operations */

static int dd_temporal_check_wf(const char *wf, dd_buf *msg)
{
    if (!wf || !*wf) {
        dd_buf_puts(msg, "workflow id is empty");
        return DD_EINVAL;
    }
    if (strchr(wf, '/')) {
        /* grpc-gateway cannot route a path segment containing an escaped '/' */
        dd_buf_printf(msg, "workflow id '%s' contains '/', which the HTTP API cannot address",
                      wf);
        return DD_EINVAL;
    }
    return 0;
}

static void dd_temporal_wf_url(dd_temporal *t, dd_buf *u, const char *wf, const char *suffix)
{
    dd_buf_printf(u, "%s/workflows/", t->base);
    dd_tc_url_escape(u, wf);
    if (suffix)
        dd_buf_puts(u, suffix);
}

static int dd_temporal_refuse(dd_temporal *t, const char *op, const char *wf, int rc, dd_buf *msg)
{
    if (t->closing)
        dd_buf_puts(msg, "temporal client is closing");
    dd_warn(t->ctx.log, "temporal_call_refused", "op=%s workflow_id=%s message=%s", op,
            wf ? wf : "", dd_buf_str(msg));
    dd_buf_release(msg);
    return rc;
}

/* Starts the call and hands its handle out. */
static int dd_temporal_launch(dd_temporal_call *c, dd_temporal_call **out)
{
    if (out)
        *out = c;
    dd_temporal_call_attempt(c);
    return 0;
}

static int dd_temporal_start_common(dd_temporal *t, dd_tc_op op, const dd_temporal_start_req *r,
                        dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, u = DD_BUF_INIT, e = DD_BUF_INIT;
    json_t *body = NULL, *p = NULL;
    char rid[37];
    int rc = DD_EINVAL;
    if (t->closing) {
        rc = DD_ECANCELED;
        goto fail;
    }
    if ((rc = dd_temporal_check_wf(r->workflow_id, &msg)) < 0)
        goto fail;
    rc = DD_EINVAL;
    if (!r->workflow_type || !*r->workflow_type || !r->task_queue || !*r->task_queue) {
        dd_buf_printf(&msg, "workflow '%s': workflow type and task queue are required",
                      r->workflow_id);
        goto fail;
    }
    if (op == DD_TC_SWS && (!r->signal_name || !*r->signal_name)) {
        dd_buf_printf(&msg, "workflow '%s': signal-with-start needs a signal name",
                      r->workflow_id);
        goto fail;
    }
    if (!r->request_id)
        dd_tc_uuid4(&t->rng, rid);
    body = json_pack("{s:{s:s},s:{s:s},s:s,s:s}", "workflowType", "name", r->workflow_type,
                     "taskQueue", "name", r->task_queue, "identity", t->identity, "requestId",
                     r->request_id ? r->request_id : rid);
    if (r->input_json) {
        if ((rc = dd_tc_payloads(r->input_json, "workflow input", &p, &msg)) < 0)
            goto fail;
        json_object_set_new(body, "input", p);
    }
    if (op == DD_TC_SWS && r->signal_json) {
        if ((rc = dd_tc_payloads(r->signal_json, "signal input", &p, &msg)) < 0)
            goto fail;
        json_object_set_new(body, "signalInput", p);
    }
    if (r->memo_json) {
        json_t *m = json_loads(r->memo_json, 0, NULL), *fields = json_object(), *v;
        const char *k;
        if (!json_is_object(m)) {
            json_decref(m);
            json_decref(fields);
            dd_buf_puts(&msg, "memo is not a JSON object");
            rc = DD_EINVAL;
            goto fail;
        }
        json_object_foreach(m, k, v) json_object_set_new(fields, k, dd_tc_payload(v));
        json_object_set_new(body, "memo", json_pack("{s:o}", "fields", fields));
        json_decref(m);
    }
    if (r->conflict_policy) {
        if (dd_tc_enum_name(&e, "WORKFLOW_ID_CONFLICT_POLICY_", r->conflict_policy) < 0) {
            dd_buf_printf(&msg, "bad conflict policy '%s'", r->conflict_policy);
            goto fail;
        }
        json_object_set_new(body, "workflowIdConflictPolicy", json_string(dd_buf_str(&e)));
        dd_buf_reset(&e);
    }
    if (r->reuse_policy) {
        if (dd_tc_enum_name(&e, "WORKFLOW_ID_REUSE_POLICY_", r->reuse_policy) < 0) {
            dd_buf_printf(&msg, "bad reuse policy '%s'", r->reuse_policy);
            goto fail;
        }
        json_object_set_new(body, "workflowIdReusePolicy", json_string(dd_buf_str(&e)));
    }
    dd_temporal_call *c = dd_temporal_call_new(t, op, r->workflow_id, NULL, cb, arg);
    if (op == DD_TC_SWS) {
        dd_temporal_wf_url(t, &u, r->workflow_id, "/signal-with-start/");
        dd_tc_url_escape(&u, r->signal_name);
    } else {
        dd_temporal_wf_url(t, &u, r->workflow_id, NULL);
    }
    c->url = dd_buf_detach(&u);
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    dd_buf_release(&e);
    return dd_temporal_launch(c, out);
fail:
    json_decref(body);
    dd_buf_release(&u);
    dd_buf_release(&e);
    return dd_temporal_refuse(t, dd_tc_op_name(op), r->workflow_id, rc, &msg);
}

int dd_temporal_start(dd_temporal *t, const dd_temporal_start_req *req, dd_temporal_cb cb,
                      void *arg, dd_temporal_call **out)
{
    return dd_temporal_start_common(t, DD_TC_START, req, cb, arg, out);
}

int dd_temporal_signal_with_start(dd_temporal *t, const dd_temporal_start_req *req,
                                  dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    return dd_temporal_start_common(t, DD_TC_SWS, req, cb, arg, out);
}

/* Shared by signal and terminate: POST .../workflows/{id}/<suffix>. */
static int dd_temporal_post_exec(dd_temporal *t, dd_tc_op op, const char *wf, const char *run,
                     const char *suffix, json_t *body, dd_temporal_cb cb, void *arg,
                     dd_temporal_call **out)
{
    dd_buf u = DD_BUF_INIT;
    json_t *ex = json_pack("{s:s}", "workflowId", wf);
    if (run && *run)
        json_object_set_new(ex, "runId", json_string(run));
    json_object_set_new(body, "workflowExecution", ex);
    json_object_set_new(body, "identity", json_string(t->identity));
    dd_temporal_call *c = dd_temporal_call_new(t, op, wf, run, cb, arg);
    dd_temporal_wf_url(t, &u, wf, suffix);
    c->url = dd_buf_detach(&u);
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return dd_temporal_launch(c, out);
}

int dd_temporal_signal(dd_temporal *t, const char *wf, const char *run, const char *signal,
                       const char *input_json, dd_temporal_cb cb, void *arg,
                       dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, sfx = DD_BUF_INIT;
    json_t *p = NULL;
    char rid[37];
    int rc = t->closing ? DD_ECANCELED : dd_temporal_check_wf(wf, &msg);
    if (rc == 0 && (!signal || !*signal)) {
        dd_buf_printf(&msg, "workflow '%s': signal name is empty", wf);
        rc = DD_EINVAL;
    }
    if (rc == 0 && input_json)
        rc = dd_tc_payloads(input_json, "signal input", &p, &msg);
    if (rc < 0)
        return dd_temporal_refuse(t, "signal", wf, rc, &msg);
    dd_tc_uuid4(&t->rng, rid);
    json_t *body = json_pack("{s:s}", "requestId", rid);
    if (p)
        json_object_set_new(body, "input", p);
    dd_buf_puts(&sfx, "/signal/");
    dd_tc_url_escape(&sfx, signal);
    rc = dd_temporal_post_exec(t, DD_TC_SIGNAL, wf, run, dd_buf_str(&sfx), body, cb, arg, out);
    dd_buf_release(&sfx);
    return rc;
}

int dd_temporal_terminate(dd_temporal *t, const char *wf, const char *run, const char *reason,
                          dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    return dd_temporal_terminate_chain(t, wf, run, NULL, reason, cb, arg, out);
}

int dd_temporal_terminate_chain(dd_temporal *t, const char *wf, const char *run,
                                const char *first_run, const char *reason, dd_temporal_cb cb,
                                void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT;
    int rc = t->closing ? DD_ECANCELED : dd_temporal_check_wf(wf, &msg);
    if (rc == 0 && (!run || !*run) && (!first_run || !*first_run)) {
        dd_buf_printf(&msg, "terminate of workflow '%s' needs an exact run id or chain", wf);
        rc = DD_EINVAL;
    }
    if (rc < 0)
        return dd_temporal_refuse(t, "terminate", wf, rc, &msg);
    json_t *body = json_pack("{s:s}", "reason", reason ? reason : "");
    if (first_run && *first_run)
        json_object_set_new(body, "firstExecutionRunId", json_string(first_run));
    return dd_temporal_post_exec(t, DD_TC_TERMINATE, wf, run, "/terminate", body, cb, arg, out);
}

static int dd_temporal_get_exec(dd_temporal *t, dd_tc_op op, const char *wf, const char *run,
                    const char *suffix, const char *query, dd_temporal_cb cb, void *arg,
                    dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, u = DD_BUF_INIT;
    int rc = t->closing ? DD_ECANCELED : dd_temporal_check_wf(wf, &msg);
    if (rc == 0 && op == DD_TC_WAIT_CLOSE && (!run || !*run)) {
        dd_buf_printf(&msg, "waiting for the close of workflow '%s' needs a run id", wf);
        rc = DD_EINVAL;
    }
    if (rc < 0)
        return dd_temporal_refuse(t, dd_tc_op_name(op), wf, rc, &msg);
    dd_temporal_call *c = dd_temporal_call_new(t, op, wf, run, cb, arg);
    dd_temporal_wf_url(t, &u, wf, suffix);
    dd_buf_putc(&u, '?');
    if (run && *run) {
        dd_buf_puts(&u, "execution.runId=");
        dd_tc_url_escape(&u, run);
    }
    if (query)
        dd_buf_puts(&u, query);
    c->url = dd_buf_detach(&u);
    return dd_temporal_launch(c, out);
}

int dd_temporal_describe(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                         void *arg, dd_temporal_call **out)
{
    return dd_temporal_get_exec(t, DD_TC_DESCRIBE, wf, run, NULL, NULL, cb, arg, out);
}

int dd_temporal_history(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                        void *arg, dd_temporal_call **out)
{
    return dd_temporal_get_exec(t, DD_TC_HISTORY, wf, run, "/history", NULL, cb, arg, out);
}

int dd_temporal_wait_close(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                           void *arg, dd_temporal_call **out)
{
    /* Enum values in query strings must be numbers: 2 = CLOSE_EVENT. */
    return dd_temporal_get_exec(t, DD_TC_WAIT_CLOSE, wf, run, "/history",
                    "&waitNewEvent=true&historyEventFilterType=2", cb, arg, out);
}

int dd_temporal_list(dd_temporal *t, const char *query, const char *page_token, int page_size,
                     dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, u = DD_BUF_INIT;
    if (t->closing)
        return dd_temporal_refuse(t, "list", NULL, DD_ECANCELED, &msg);
    dd_temporal_call *c = dd_temporal_call_new(t, DD_TC_LIST, NULL, NULL, cb, arg);
    dd_buf_printf(&u, "%s/workflows?query=", t->base);
    dd_tc_url_escape(&u, query ? query : "");
    if (page_size > 0)
        dd_buf_printf(&u, "&pageSize=%d", page_size);
    c->url = dd_buf_detach(&u);
    c->dec.page_token = dd_temporal_xdup(page_token);
    return dd_temporal_launch(c, out);
}

/* ---- exact runs, for the batched loss watch (owner/watch.c) ------------ */

bool dd_temporal_run_id_plain(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++, n++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-'))
            return false;
    return n > 0 && n <= 64;
}

int dd_temporal_list_runs(dd_temporal *t, const char *cond, const char *const *run_ids, size_t n,
                          dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, q = DD_BUF_INIT;
    if (n == 0 || n > DD_TEMPORAL_RUNS_MAX) {
        dd_buf_printf(&msg, "a query for exact runs names 1 to %d run ids, not %zu",
                      DD_TEMPORAL_RUNS_MAX, n);
        return dd_temporal_refuse(t, "list", NULL, DD_EINVAL, &msg);
    }
    for (size_t i = 0; i < n; i++)
        if (!dd_temporal_run_id_plain(run_ids[i])) {
            dd_buf_printf(&msg, "run id '%.80s' is not a plain id (letters, digits, '-')",
                          run_ids[i] ? run_ids[i] : "");
            return dd_temporal_refuse(t, "list", NULL, DD_EINVAL, &msg);
        }
    if (cond && *cond)
        dd_buf_printf(&q, "%s AND ", cond);
    for (size_t i = 0; i < n; i++)
        dd_buf_printf(&q, "%s'%s'", i ? "," : "RunId IN (", run_ids[i]);
    dd_buf_puts(&q, ")");
    int rc = dd_temporal_list(t, dd_buf_str(&q), NULL, (int)n, cb, arg, out);
    dd_buf_release(&q);
    return rc;
}

int dd_temporal_close_event(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                            void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT;
    if (!run || !*run) {
        dd_buf_printf(&msg, "the close event of workflow '%s' needs a run id", wf ? wf : "");
        return dd_temporal_refuse(t, "history", wf, DD_EINVAL, &msg);
    }
    /* 2 = CLOSE_EVENT; no waitNewEvent: one page, one event */
    return dd_temporal_get_exec(t, DD_TC_HISTORY, wf, run, "/history",
                                "&historyEventFilterType=2", cb, arg, out);
}

int64_t dd_temporal_call_deadline_ms(const dd_temporal *t)
{
    return t->deadline_ms;
}
