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
 * last handle (the calls' timers and the HTTP client) has closed. */
#include "temporal/temporal.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "temporal/codec.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* Memory per operation. A reply is buffered whole (at most MAX_BODY, the
 * transport's limit: the largest any operation takes), then checked against
 * the operation's own limit (op_max_body) before it is parsed, and parsed
 * only if jansson's cost for it stays within MAX_PARSE (dd_tc_json_cost):
 * 16 MiB of "{}," costs ~1.6 GB parsed. A hostile 16 MiB reply thus costs
 * at most MAX_BODY + MAX_PARSE (< 64 MB, bench/hostile/RESULTS.md). History
 * pages are dropped once their events are copied out, so a call holds one
 * page at a time, and at most MAX_EVENTS events. */
#define MAX_BODY (16u << 20)
#define MAX_PARSE (32u << 20)
#define MAX_PAGES 1000   /* history pages followed by one call */
#define MAX_EVENTS 51200 /* Temporal's own default limit of events per history */

/* The loss watch re-polls no sooner than this after the start of the
 * previous poll. A real server holds an empty long poll ~20 s, so this never
 * delays a healthy watch; a server (or proxy, or peer) that answers empty at
 * once would otherwise be asked again in a hot loop (~70k requests/s were
 * measured). 100 ms caps that at 10 requests/s per watch while adding at
 * most 100 ms to noticing a close in that degenerate case. */
#define REPOLL_FLOOR_MS 100

typedef enum op_kind {
    OP_START,
    OP_SWS,
    OP_SIGNAL,
    OP_TERMINATE,
    OP_DESCRIBE,
    OP_HISTORY,
    OP_WAIT_CLOSE,
    OP_LIST,
} op_kind;

static const char *const op_names[] = {"start", "signal_with_start", "signal", "terminate",
                                       "describe", "history", "wait_close", "list"};

/* The largest reply body an operation accepts (error replies included). */
static size_t op_max_body(op_kind op)
{
    switch (op) {
    case OP_START:
    case OP_SWS:
    case OP_SIGNAL:
    case OP_TERMINATE:
        return 64u << 10; /* a run id, or nothing; an error is a message and details */
    case OP_DESCRIBE:
        return 1u << 20; /* one execution, its memo, pending activities and children */
    case OP_WAIT_CLOSE:
    case OP_LIST:
        return 4u << 20; /* one close event (a result payload is at most 2 MB by
                          * default: 2.7 MB in base64); one page of executions */
    case OP_HISTORY:
        return MAX_BODY; /* one page of events, payloads included */
    }
    return 64u << 10;
}

/* Strings a result points to that outlive the reply they came from (history
 * events: each page is freed once read). Blocks never move. */
typedef struct strblock {
    struct strblock *next;
    size_t used, cap;
    char data[];
} strblock;

struct dd_temporal {
    dd_ctx ctx;
    char *base; /* "/api/v1/namespaces/<ns>": request paths start with it */
    char *base_url, *ns, *identity;
    int64_t timeout_ms, deadline_ms, long_poll_ms, backoff_base_ms, backoff_cap_ms;
    int max_attempts;
    dd_buf headers; /* extra header lines of every request; holds the API key */
    dd_http *http;
    dd_temporal_call *calls; /* in flight, doubly linked */
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
    op_kind op;
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
    char *page_token;
    int pages;
    bool done;
    bool cancelling; /* cancelled: finishes with DD_ECANCELED from the loop */

    /* Result storage, valid until the callback returns: the parsed reply of
     * single-reply operations and strings decoded from it in `keep`; strings
     * of history events (whose pages are freed as they are read) in `strs`. */
    json_t *keep;
    strblock *strs;
    dd_temporal_event *events;
    size_t nevents, capevents;
    dd_temporal_execution *execs;
    size_t nexecs;
    dd_temporal_execution exec;
    dd_buf msg;
    dd_temporal_result res;
};

static void call_attempt(dd_temporal_call *c);

/* ---------------------------------------------------------------- helpers */

static char *xdup(const char *s)
{
    return s ? dd_strdup(s) : NULL;
}

static void maybe_free_client(dd_temporal *t)
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

static void http_closed(void *arg)
{
    dd_temporal *t = arg;
    t->http = NULL;
    t->open_handles--;
    maybe_free_client(t);
}

static void count(dd_temporal *t, op_kind op, const char *outcome)
{
    if (t->m_requests)
        dd_metric_add(t->m_requests, (const char *const[]){op_names[op], outcome}, 1);
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* proto3 JSON writes int64 as a string; accept both. */
static int64_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

/* A copy of s in c->strs (NULL for NULL), alive until the call is freed. */
static const char *arena_str(dd_temporal_call *c, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    strblock *b = c->strs;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        b = dd_xmalloc(sizeof(*b) + cap);
        b->next = c->strs;
        b->used = 0;
        b->cap = cap;
        c->strs = b;
    }
    char *d = b->data + b->used;
    memcpy(d, s, n);
    b->used += n;
    return d;
}

/* A string the result points to: kept alive in c->keep. */
static const char *keep_str(dd_temporal_call *c, const char *s, size_t n)
{
    json_t *js = json_stringn_nocheck(s, n);
    json_array_append_new(c->keep, js);
    return json_string_value(js);
}

/* ------------------------------------------------------------- payloads */

/* One json/plain payload object for a JSON value. */
static json_t *payload(json_t *value)
{
    dd_buf enc = DD_BUF_INIT, data = DD_BUF_INIT;
    char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    dd_tc_base64_encode(&enc, "json/plain", 10);
    dd_tc_base64_encode(&data, s, strlen(s));
    json_t *p = json_pack("{s:{s:s},s:s}", "metadata", "encoding", dd_buf_str(&enc), "data",
                          dd_buf_str(&data));
    free(s);
    dd_buf_release(&enc);
    dd_buf_release(&data);
    return p;
}

static int payloads(const char *json_text, const char *what, json_t **out, dd_buf *err)
{
    json_error_t je;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, &je);
    if (!v) {
        dd_buf_printf(err, "%s is not valid JSON: %s", what, je.text);
        return DD_EINVAL;
    }
    *out = json_pack("{s:[o]}", "payloads", payload(v));
    json_decref(v);
    return 0;
}

/* Decodes a json/plain payload; a JSON string yields its value, anything
 * else its JSON text. NULL if undecodable. A server that ignored our Accept
 * header sends the "shorthand" form (the JSON value itself): take it as is. */
static const char *payload_text(dd_temporal_call *c, json_t *p)
{
    dd_buf raw = DD_BUF_INIT;
    const char *res = NULL;
    json_t *v = NULL;
    if (json_is_object(p) && json_object_get(p, "metadata")) {
        const char *data = jstr(p, "data");
        if (!data || dd_tc_base64_decode(&raw, data) < 0)
            goto out;
        v = json_loadb(raw.data ? raw.data : "", raw.len, JSON_DECODE_ANY, NULL);
    } else {
        v = json_incref(p);
    }
    if (json_is_string(v)) {
        res = keep_str(c, json_string_value(v), json_string_length(v));
    } else if (v) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        res = keep_str(c, text, strlen(text));
        free(text);
    }
out:
    json_decref(v);
    dd_buf_release(&raw);
    return res;
}

/* -------------------------------------------------------------- parsing */

static dd_temporal_status parse_status(json_t *v)
{
    static const char *const names[] = {"UNSPECIFIED", "RUNNING", "COMPLETED", "FAILED",
                                        "CANCELED", "TERMINATED", "CONTINUED_AS_NEW",
                                        "TIMED_OUT"};
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n >= 0 && n <= 7 ? (dd_temporal_status)n : DD_WF_UNKNOWN;
    }
    const char *s = json_string_value(v);
    const char *pfx = "WORKFLOW_EXECUTION_STATUS_";
    if (!s)
        return DD_WF_UNKNOWN;
    if (strncmp(s, pfx, strlen(pfx)) == 0)
        s += strlen(pfx);
    for (int i = 1; i < 8; i++) {
        if (strcmp(s, names[i]) == 0)
            return (dd_temporal_status)i;
    }
    return DD_WF_UNKNOWN;
}

const char *dd_temporal_status_name(dd_temporal_status s)
{
    static const char *const names[] = {"UNKNOWN", "RUNNING", "COMPLETED", "FAILED",
                                        "CANCELED", "TERMINATED", "CONTINUED_AS_NEW",
                                        "TIMED_OUT"};
    return (unsigned)s < 8 ? names[s] : "UNKNOWN";
}

/* WorkflowExecutionInfo (describe's workflowExecutionInfo, list's executions[]). */
static void parse_exec(dd_temporal_call *c, json_t *info, dd_temporal_execution *e)
{
    json_t *ex = json_object_get(info, "execution");
    json_t *tq = json_object_get(info, "taskQueue");
    memset(e, 0, sizeof(*e));
    e->workflow_id = jstr(ex, "workflowId");
    e->run_id = jstr(ex, "runId");
    e->type = jstr(json_object_get(info, "type"), "name");
    e->task_queue = json_is_string(tq) ? json_string_value(tq) : jstr(tq, "name");
    e->status = parse_status(json_object_get(info, "status"));
    e->start_ns = dd_tc_parse_time_ns(jstr(info, "startTime"));
    e->close_ns = dd_tc_parse_time_ns(jstr(info, "closeTime"));
    e->first_run_id = jstr(info, "firstRunId");
    json_t *fields = json_object_get(json_object_get(info, "memo"), "fields");
    json_t *sid = json_object_get(fields, "server_id");
    json_t *mp = json_object_get(fields, "project");
    json_t *mq = json_object_get(fields, "queue");
    e->server_id = sid ? payload_text(c, sid) : NULL;
    e->memo_project = mp ? payload_text(c, mp) : NULL;
    e->memo_queue = mq ? payload_text(c, mq) : NULL;
}

/* Appends a page's events, their strings copied out (the page is freed
 * after this); last_only: just the page's last event, in place of any
 * before (wait_close asks for the close event only). DD_EPROTO past
 * MAX_EVENTS. */
static int add_events(dd_temporal_call *c, json_t *events, bool last_only)
{
    size_t i, n = json_array_size(events);
    json_t *ev;
    json_array_foreach(events, i, ev) {
        if (last_only && i + 1 < n)
            continue;
        if (last_only)
            c->nevents = 0;
        if (c->nevents == MAX_EVENTS) {
            dd_buf_printf(&c->msg, "history of workflow '%s' has more than %d events",
                          c->workflow_id ? c->workflow_id : "", MAX_EVENTS);
            return DD_EPROTO;
        }
        if (c->nevents == c->capevents) {
            c->capevents = c->capevents ? c->capevents * 2 : 16;
            c->events = dd_xrealloc(c->events, c->capevents * sizeof(*c->events));
        }
        dd_temporal_event *e = &c->events[c->nevents++];
        memset(e, 0, sizeof(*e));
        e->id = jint(ev, "eventId");
        e->type = arena_str(c, jstr(ev, "eventType"));
        e->time_ns = dd_tc_parse_time_ns(jstr(ev, "eventTime"));
        json_t *ta = json_object_get(ev, "workflowExecutionTerminatedEventAttributes");
        if (!ta)
            ta = json_object_get(ev, "workflowExecutionStartedEventAttributes");
        e->reason = arena_str(c, jstr(ta, "reason"));
        e->identity = arena_str(c, jstr(ta, "identity"));
        json_t *ca = json_object_get(ev, "workflowExecutionContinuedAsNewEventAttributes");
        e->new_run_id = arena_str(c, jstr(ca, "newExecutionRunId"));
    }
    return 0;
}

/* Parses a 2xx reply. Returns 0 (done), 1 (send another request: next page
 * or re-poll), or < 0 with c->msg set. */
static int parse_ok(dd_temporal_call *c, json_t *root)
{
    const char *tok;
    switch (c->op) {
    case OP_START:
    case OP_SWS:
        c->res.run_id = jstr(root, "runId");
        /* signal-with-start on 1.2x omits "started" when it only signalled */
        c->res.started = json_is_true(json_object_get(root, "started"));
        if (!c->res.run_id) {
            dd_buf_printf(&c->msg, "start of workflow '%s' answered without a run id",
                          c->workflow_id ? c->workflow_id : "");
            return DD_EPROTO;
        }
        return 0;
    case OP_SIGNAL:
    case OP_TERMINATE:
        return 0;
    case OP_DESCRIBE:
        parse_exec(c, json_object_get(root, "workflowExecutionInfo"), &c->exec);
        {
            json_t *wft = json_object_get(root, "pendingWorkflowTask");
            const char *st = jstr(wft, "state");
            c->exec.wft_scheduled = st && !strcmp(st, "PENDING_WORKFLOW_TASK_STATE_SCHEDULED");
            if (c->exec.wft_scheduled) {
                const char *t = jstr(wft, "originalScheduledTime");
                c->exec.wft_scheduled_ns = dd_tc_parse_time_ns(t ? t : jstr(wft, "scheduledTime"));
            }
        }
        if (!c->exec.run_id) {
            dd_buf_printf(&c->msg, "describe of workflow '%s' answered without a run id",
                          c->workflow_id);
            return DD_EPROTO;
        }
        c->res.execution = &c->exec;
        return 0;
    case OP_HISTORY:
    case OP_WAIT_CLOSE: {
        /* filter type 2 = close event only: wait_close keeps just the last */
        int rc = add_events(c, json_object_get(json_object_get(root, "history"), "events"),
                            c->op == OP_WAIT_CLOSE);
        if (rc < 0)
            return rc;
        tok = jstr(root, "nextPageToken");
        free(c->page_token);
        c->page_token = xdup(tok);
        if (c->op == OP_WAIT_CLOSE)
            return c->nevents > 0 ? 0 : 1; /* empty long-poll answer: ask again */
        if (tok && ++c->pages < MAX_PAGES)
            return 1;
        return 0;
    }
    case OP_LIST: {
        json_t *arr = json_object_get(root, "executions"), *ex;
        size_t i;
        c->nexecs = json_array_size(arr);
        c->execs = dd_xcalloc(c->nexecs ? c->nexecs : 1, sizeof(*c->execs));
        json_array_foreach(arr, i, ex) parse_exec(c, ex, &c->execs[i]);
        c->res.next_page_token = jstr(root, "nextPageToken");
        return 0;
    }
    }
    return 0;
}

/* Maps an error reply. Sets *retry for statuses worth another attempt. */
static int parse_error(dd_temporal_call *c, long http, json_t *root, bool *retry)
{
    const char *smsg = jstr(root, "message");
    json_t *details = json_object_get(root, "details"), *d;
    const char *dtype = NULL, *drun = NULL;
    size_t i;
    json_array_foreach(details, i, d) {
        dtype = jstr(d, "@type");
        if (!drun)
            drun = jstr(d, "runId");
    }
    c->res.grpc_code = (int)json_integer_value(json_object_get(root, "code"));
    if (!smsg)
        smsg = "(no message)";
    *retry = false;
    if (http == 404 && ((dtype && strstr(dtype, "NamespaceNotFound")) ||
                        (strstr(smsg, "amespace") && strstr(smsg, "not found")))) {
        dd_buf_printf(&c->msg, "namespace '%s' not found", c->t->ns);
        return DD_ENOTFOUND;
    }
    if (http == 404) {
        dd_buf_printf(&c->msg, "workflow '%s'%s%s%s: %s", c->workflow_id ? c->workflow_id : "",
                      c->run_id ? " run '" : "", c->run_id ? c->run_id : "",
                      c->run_id ? "'" : "", smsg);
        return DD_ENOTFOUND;
    }
    if (http == 409) {
        c->res.run_id = drun;
        dd_buf_printf(&c->msg, "workflow '%s' already running as run '%s'",
                      c->workflow_id ? c->workflow_id : "", drun ? drun : "?");
        return DD_ECONFLICT;
    }
    if (http == 400) {
        dd_buf_printf(&c->msg, "bad request (%s): %s", op_names[c->op], smsg);
        return DD_EINVAL;
    }
    if (http == 401 || http == 403) {
        dd_buf_printf(&c->msg, "permission denied by temporal (%ld): %s", http, smsg);
        return -EACCES;
    }
    if (http == 429) {
        *retry = true;
        dd_buf_printf(&c->msg, "rate limited by temporal: %s", smsg);
        return DD_ERATELIMIT;
    }
    if (http >= 500 && http != 501) {
        *retry = true;
        dd_buf_printf(&c->msg, "temporal error (http %ld): %s", http, smsg);
        return DD_EUNAVAIL;
    }
    dd_buf_printf(&c->msg, "unexpected http status %ld from temporal: %s", http, smsg);
    return DD_EHTTP;
}

/* ------------------------------------------------------- call lifecycle */

static void call_closed(uv_handle_t *h)
{
    dd_temporal_call *c = h->data;
    dd_temporal *t = c->t;
    free(c);
    t->open_handles--;
    maybe_free_client(t);
}

static void abandon_attempt(dd_temporal_call *c)
{
    if (c->req) {
        dd_http_abandon(c->req);
        c->req = NULL;
    }
}

/* Runs the callback once and frees the call (asynchronously). */
static void call_finish(dd_temporal_call *c, int err)
{
    dd_temporal *t = c->t;
    if (c->done)
        return;
    c->done = true;
    abandon_attempt(c);
    uv_timer_stop(&c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;

    c->res.err = err;
    if (err == DD_ECANCELED && c->msg.len == 0)
        dd_buf_printf(&c->msg, "%s cancelled", op_names[c->op]);
    c->res.message = dd_buf_str(&c->msg);
    if (err == 0) {
        c->res.message = "";
        c->res.events = c->nevents ? c->events : NULL;
        c->res.nevents = c->nevents;
        c->res.executions = c->nexecs ? c->execs : NULL;
        c->res.nexecutions = c->nexecs;
    }
    /* "not found" answers a question (is anything running under this ID?)
     * and is how every fresh takeover's describe ends: not an error */
    count(t, c->op,
          err == 0                ? "ok"
          : err == DD_ENOTFOUND   ? "not_found"
          : err == DD_ECANCELED   ? "cancelled"
                                  : "error");
    if (err < 0 && err != DD_ECANCELED)
        dd_debug(t->ctx.log, "temporal_call_failed", "op=%s workflow_id=%s error=%s message=%s",
                 op_names[c->op], c->workflow_id ? c->workflow_id : "", dd_strerror(err),
                 c->res.message);
    if (c->cb) /* NULL: fire and forget (e.g. a best-effort terminate) */
        c->cb(err, &c->res, c->arg);

    json_decref(c->keep);
    while (c->strs) {
        strblock *b = c->strs;
        c->strs = b->next;
        free(b);
    }
    free(c->events);
    free(c->execs);
    free(c->url);
    free(c->body);
    free(c->workflow_id);
    free(c->run_id);
    free(c->page_token);
    dd_buf_release(&c->msg);
    uv_close((uv_handle_t *)&c->timer, call_closed);
}

static void retry_timer_cb(uv_timer_t *h)
{
    call_attempt(h->data);
}

/* After a failed attempt: schedule another or finish. */
static void call_failed(dd_temporal_call *c, int err, bool retry)
{
    dd_temporal *t = c->t;
    c->failures++;
    if (retry && c->failures < t->max_attempts && !dd_ctx_cancelled(&t->ctx)) {
        int64_t delay = dd_backoff_next(&c->bo);
        if (!c->deadline || dd_mono_ms() + (uint64_t)delay < c->deadline) {
            count(t, c->op, "retry");
            dd_warn(t->ctx.log, "temporal_retry",
                    "op=%s workflow_id=%s attempt=%d delay_ms=%lld http_status=%d error=%s "
                    "message=%s",
                    op_names[c->op], c->workflow_id ? c->workflow_id : "", c->res.attempts,
                    (long long)delay, c->res.http_status, dd_strerror(err),
                    dd_buf_str(&c->msg));
            dd_buf_reset(&c->msg);
            uv_timer_start(&c->timer, retry_timer_cb, (uint64_t)delay, 0);
            return;
        }
    }
    if (retry) {
        /* Say that we tried, and why we stopped. */
        char *last = dd_buf_detach(&c->msg);
        dd_buf_printf(&c->msg, "temporal at '%s' unavailable after %d attempt%s: %s",
                      t->base_url, c->res.attempts, c->res.attempts == 1 ? "" : "s",
                      last ? last : "");
        free(last);
        if (dd_ctx_cancelled(&t->ctx))
            err = DD_ECANCELED;
    }
    call_finish(c, err);
}

static void on_reply(const dd_http_reply *rep, void *arg)
{
    dd_temporal_call *c = arg;
    long http = rep->status;
    bool retry = false;
    int rc;
    json_t *root = NULL;
    c->req = NULL;
    c->res.http_status = rep->status;
    dd_buf_reset(&c->msg);

    if (rep->err != 0) {
        dd_buf_puts(&c->msg, rep->message);
        call_failed(c, rep->err, rep->transient);
        return;
    }
    /* Bounded before parsing (see MAX_BODY): refused, not retried. */
    size_t max = op_max_body(c->op);
    if (rep->body_len > max) {
        dd_buf_printf(&c->msg, "temporal reply to %s too large (%zu bytes, limit %zu)",
                      op_names[c->op], rep->body_len, max);
        call_finish(c, DD_EPROTO);
        return;
    }
    if (dd_tc_json_cost(rep->body, rep->body_len, MAX_PARSE) > MAX_PARSE) {
        dd_buf_printf(&c->msg,
                      "temporal reply to %s (%zu bytes) would take over %u MB to parse",
                      op_names[c->op], rep->body_len, MAX_PARSE >> 20);
        call_finish(c, DD_EPROTO);
        return;
    }
    json_error_t je;
    root = json_loadb(rep->body, rep->body_len, 0, &je);
    if (http >= 200 && http < 300) {
        if (!root) {
            dd_buf_printf(&c->msg, "cannot parse temporal reply to %s: %s", op_names[c->op],
                          je.text);
            call_finish(c, DD_EPROTO);
            return;
        }
        rc = parse_ok(c, root);
        if (c->op == OP_HISTORY || c->op == OP_WAIT_CLOSE)
            json_decref(root); /* its events were copied out: one page at a time */
        else
            json_array_append_new(c->keep, root); /* results point into it */
        if (rc == 1) {
            c->failures = 0;
            dd_backoff_reset(&c->bo);
            uint64_t since = dd_mono_ms() - c->sent_ms;
            if (dd_ctx_cancelled(&c->t->ctx))
                call_finish(c, DD_ECANCELED);
            else if (c->op == OP_WAIT_CLOSE && since < REPOLL_FLOOR_MS)
                uv_timer_start(&c->timer, retry_timer_cb, REPOLL_FLOOR_MS - since, 0);
            else
                call_attempt(c);
            return;
        }
        call_finish(c, rc);
        return;
    }
    rc = parse_error(c, http, root, &retry);
    /* The result may point into it (409: the running run id; never retried).
     * A retried error's root is not needed: keeping it would grow a long
     * loss watch with every error it rides out. */
    if (root && !retry)
        json_array_append_new(c->keep, root);
    else
        json_decref(root);
    call_failed(c, rc, retry);
}

static void call_attempt(dd_temporal_call *c)
{
    dd_temporal *t = c->t;
    dd_buf url = DD_BUF_INIT;
    int64_t tmo = c->op == OP_WAIT_CLOSE ? t->long_poll_ms : t->timeout_ms;
    if (c->deadline) {
        uint64_t now = dd_mono_ms();
        if (now >= c->deadline) {
            dd_buf_reset(&c->msg);
            dd_buf_printf(&c->msg, "%s of workflow '%s' exceeded its deadline",
                          op_names[c->op], c->workflow_id ? c->workflow_id : "");
            call_finish(c, DD_ETIMEOUT);
            return;
        }
        if ((int64_t)(c->deadline - now) < tmo)
            tmo = (int64_t)(c->deadline - now);
    }
    dd_buf_puts(&url, c->url);
    if (c->page_token) {
        dd_buf_putc(&url, strchr(c->url, '?') ? '&' : '?');
        dd_buf_puts(&url, "nextPageToken=");
        dd_tc_url_escape(&url, c->page_token);
    }
    c->res.attempts++;
    c->sent_ms = dd_mono_ms();
    dd_debug(t->ctx.log, "temporal_request", "op=%s workflow_id=%s attempt=%d",
             op_names[c->op], c->workflow_id ? c->workflow_id : "", c->res.attempts);
    int rc = dd_http_request(t->http, c->body ? "POST" : "GET", dd_buf_str(&url),
                             dd_buf_str(&t->headers), c->body, c->body ? strlen(c->body) : 0,
                             tmo, on_reply, c, &c->req);
    dd_buf_release(&url);
    if (rc < 0) {
        dd_buf_reset(&c->msg);
        dd_buf_printf(&c->msg, "cannot send %s request: %s", op_names[c->op], dd_strerror(rc));
        call_finish(c, rc);
    }
}

static dd_temporal_call *call_new(dd_temporal *t, op_kind op, const char *wf, const char *run,
                                  dd_temporal_cb cb, void *arg)
{
    dd_temporal_call *c = dd_xcalloc(1, sizeof(*c));
    c->t = t;
    c->op = op;
    c->cb = cb;
    c->arg = arg;
    c->workflow_id = xdup(wf);
    c->run_id = xdup(run);
    c->keep = json_array();
    dd_backoff_init(&c->bo, t->backoff_base_ms, t->backoff_cap_ms, dd_rng_next(&t->rng));
    c->deadline = op == OP_WAIT_CLOSE ? 0 : dd_mono_ms() + (uint64_t)t->deadline_ms;
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

dd_temporal *dd_temporal_new(const dd_ctx *ctx, const dd_temporal_opts *o)
{
    if (!o->base_url || !*o->base_url || !o->namespace_ || !*o->namespace_) {
        dd_error(ctx->log, "temporal_config", "message=%s",
                 "temporal base url and namespace are required");
        return NULL;
    }
    if (o->api_key && strpbrk(o->api_key, "\r\n")) {
        dd_error(ctx->log, "temporal_config", "message=%s",
                 "the Temporal API key contains a line break");
        return NULL;
    }
    dd_buf b = DD_BUF_INIT;
    dd_http *http = NULL;
    dd_http_opts ho = {
        .base_url = o->base_url,
        .ca_file = o->ca_file,
        .cert_file = o->cert_file,
        .key_file = o->key_file,
        .max_body = MAX_BODY,
    };
    if (dd_http_new(ctx->loop, &ho, &http, &b) < 0) {
        dd_error(ctx->log, "temporal_config", "message=%s", dd_buf_str(&b));
        dd_buf_release(&b);
        return NULL;
    }
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
    return t;
}

static void cancel_fire(uv_timer_t *h)
{
    call_finish(h->data, DD_ECANCELED);
}

/* The one meaning of cancel (CONTRIBUTING.md): the attempt in flight is
 * dropped now, and the callback runs once with DD_ECANCELED from the loop,
 * never inside the cancel call, so no caller has to order its state around
 * a callback that runs under its feet. */
static void call_cancel(dd_temporal_call *c)
{
    if (c->done || c->cancelling)
        return;
    c->cancelling = true;
    abandon_attempt(c);
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, cancel_fire, 0, 0);
}

void dd_temporal_cancel(dd_temporal_call *c)
{
    if (c)
        call_cancel(c);
}

void dd_temporal_close(dd_temporal *t, dd_temporal_close_cb cb, void *arg)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_arg = arg;
    for (dd_temporal_call *c = t->calls; c; c = c->next)
        call_cancel(c);
    dd_http_close(t->http, http_closed, t);
}

/* ------------------------------------------------------------ operations */

static int check_wf(const char *wf, dd_buf *msg)
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

static void wf_url(dd_temporal *t, dd_buf *u, const char *wf, const char *suffix)
{
    dd_buf_printf(u, "%s/workflows/", t->base);
    dd_tc_url_escape(u, wf);
    if (suffix)
        dd_buf_puts(u, suffix);
}

static int refuse(dd_temporal *t, const char *op, const char *wf, int rc, dd_buf *msg)
{
    if (t->closing)
        dd_buf_puts(msg, "temporal client is closing");
    dd_warn(t->ctx.log, "temporal_call_refused", "op=%s workflow_id=%s message=%s", op,
            wf ? wf : "", dd_buf_str(msg));
    dd_buf_release(msg);
    return rc;
}

/* Starts the call and hands its handle out. */
static int launch(dd_temporal_call *c, dd_temporal_call **out)
{
    if (out)
        *out = c;
    call_attempt(c);
    return 0;
}

static int start_common(dd_temporal *t, op_kind op, const dd_temporal_start_req *r,
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
    if ((rc = check_wf(r->workflow_id, &msg)) < 0)
        goto fail;
    rc = DD_EINVAL;
    if (!r->workflow_type || !*r->workflow_type || !r->task_queue || !*r->task_queue) {
        dd_buf_printf(&msg, "workflow '%s': workflow type and task queue are required",
                      r->workflow_id);
        goto fail;
    }
    if (op == OP_SWS && (!r->signal_name || !*r->signal_name)) {
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
        if ((rc = payloads(r->input_json, "workflow input", &p, &msg)) < 0)
            goto fail;
        json_object_set_new(body, "input", p);
    }
    if (op == OP_SWS && r->signal_json) {
        if ((rc = payloads(r->signal_json, "signal input", &p, &msg)) < 0)
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
        json_object_foreach(m, k, v) json_object_set_new(fields, k, payload(v));
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
    dd_temporal_call *c = call_new(t, op, r->workflow_id, NULL, cb, arg);
    if (op == OP_SWS) {
        wf_url(t, &u, r->workflow_id, "/signal-with-start/");
        dd_tc_url_escape(&u, r->signal_name);
    } else {
        wf_url(t, &u, r->workflow_id, NULL);
    }
    c->url = dd_buf_detach(&u);
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    dd_buf_release(&e);
    return launch(c, out);
fail:
    json_decref(body);
    dd_buf_release(&u);
    dd_buf_release(&e);
    return refuse(t, op_names[op], r->workflow_id, rc, &msg);
}

int dd_temporal_start(dd_temporal *t, const dd_temporal_start_req *req, dd_temporal_cb cb,
                      void *arg, dd_temporal_call **out)
{
    return start_common(t, OP_START, req, cb, arg, out);
}

int dd_temporal_signal_with_start(dd_temporal *t, const dd_temporal_start_req *req,
                                  dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    return start_common(t, OP_SWS, req, cb, arg, out);
}

/* Shared by signal and terminate: POST .../workflows/{id}/<suffix>. */
static int post_exec(dd_temporal *t, op_kind op, const char *wf, const char *run,
                     const char *suffix, json_t *body, dd_temporal_cb cb, void *arg,
                     dd_temporal_call **out)
{
    dd_buf u = DD_BUF_INIT;
    json_t *ex = json_pack("{s:s}", "workflowId", wf);
    if (run && *run)
        json_object_set_new(ex, "runId", json_string(run));
    json_object_set_new(body, "workflowExecution", ex);
    json_object_set_new(body, "identity", json_string(t->identity));
    dd_temporal_call *c = call_new(t, op, wf, run, cb, arg);
    wf_url(t, &u, wf, suffix);
    c->url = dd_buf_detach(&u);
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return launch(c, out);
}

int dd_temporal_signal(dd_temporal *t, const char *wf, const char *run, const char *signal,
                       const char *input_json, dd_temporal_cb cb, void *arg,
                       dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, sfx = DD_BUF_INIT;
    json_t *p = NULL;
    char rid[37];
    int rc = t->closing ? DD_ECANCELED : check_wf(wf, &msg);
    if (rc == 0 && (!signal || !*signal)) {
        dd_buf_printf(&msg, "workflow '%s': signal name is empty", wf);
        rc = DD_EINVAL;
    }
    if (rc == 0 && input_json)
        rc = payloads(input_json, "signal input", &p, &msg);
    if (rc < 0)
        return refuse(t, "signal", wf, rc, &msg);
    dd_tc_uuid4(&t->rng, rid);
    json_t *body = json_pack("{s:s}", "requestId", rid);
    if (p)
        json_object_set_new(body, "input", p);
    dd_buf_puts(&sfx, "/signal/");
    dd_tc_url_escape(&sfx, signal);
    rc = post_exec(t, OP_SIGNAL, wf, run, dd_buf_str(&sfx), body, cb, arg, out);
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
    int rc = t->closing ? DD_ECANCELED : check_wf(wf, &msg);
    if (rc == 0 && (!run || !*run) && (!first_run || !*first_run)) {
        dd_buf_printf(&msg, "terminate of workflow '%s' needs an exact run id or chain", wf);
        rc = DD_EINVAL;
    }
    if (rc < 0)
        return refuse(t, "terminate", wf, rc, &msg);
    json_t *body = json_pack("{s:s}", "reason", reason ? reason : "");
    if (first_run && *first_run)
        json_object_set_new(body, "firstExecutionRunId", json_string(first_run));
    return post_exec(t, OP_TERMINATE, wf, run, "/terminate", body, cb, arg, out);
}

static int get_exec(dd_temporal *t, op_kind op, const char *wf, const char *run,
                    const char *suffix, const char *query, dd_temporal_cb cb, void *arg,
                    dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, u = DD_BUF_INIT;
    int rc = t->closing ? DD_ECANCELED : check_wf(wf, &msg);
    if (rc == 0 && op == OP_WAIT_CLOSE && (!run || !*run)) {
        dd_buf_printf(&msg, "waiting for the close of workflow '%s' needs a run id", wf);
        rc = DD_EINVAL;
    }
    if (rc < 0)
        return refuse(t, op_names[op], wf, rc, &msg);
    dd_temporal_call *c = call_new(t, op, wf, run, cb, arg);
    wf_url(t, &u, wf, suffix);
    dd_buf_putc(&u, '?');
    if (run && *run) {
        dd_buf_puts(&u, "execution.runId=");
        dd_tc_url_escape(&u, run);
    }
    if (query)
        dd_buf_puts(&u, query);
    c->url = dd_buf_detach(&u);
    return launch(c, out);
}

int dd_temporal_describe(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                         void *arg, dd_temporal_call **out)
{
    return get_exec(t, OP_DESCRIBE, wf, run, NULL, NULL, cb, arg, out);
}

int dd_temporal_history(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                        void *arg, dd_temporal_call **out)
{
    return get_exec(t, OP_HISTORY, wf, run, "/history", NULL, cb, arg, out);
}

int dd_temporal_wait_close(dd_temporal *t, const char *wf, const char *run, dd_temporal_cb cb,
                           void *arg, dd_temporal_call **out)
{
    /* Enum values in query strings must be numbers: 2 = CLOSE_EVENT. */
    return get_exec(t, OP_WAIT_CLOSE, wf, run, "/history",
                    "&waitNewEvent=true&historyEventFilterType=2", cb, arg, out);
}

int dd_temporal_list(dd_temporal *t, const char *query, const char *page_token, int page_size,
                     dd_temporal_cb cb, void *arg, dd_temporal_call **out)
{
    dd_buf msg = DD_BUF_INIT, u = DD_BUF_INIT;
    if (t->closing)
        return refuse(t, "list", NULL, DD_ECANCELED, &msg);
    dd_temporal_call *c = call_new(t, OP_LIST, NULL, NULL, cb, arg);
    dd_buf_printf(&u, "%s/workflows?query=", t->base);
    dd_tc_url_escape(&u, query ? query : "");
    if (page_size > 0)
        dd_buf_printf(&u, "&pageSize=%d", page_size);
    c->url = dd_buf_detach(&u);
    c->page_token = xdup(page_token);
    return launch(c, out);
}
