/* temporal.c - Temporal HTTP API client on the libuv loop.
 *
 * Plumbing (curl's multi-socket API, as in curl's docs/examples/multi-uv.c):
 * curl tells us which sockets to watch (sock_cb) and when to wake it
 * (timer_cb); we keep one uv_poll_t per socket and one uv_timer_t, and hand
 * readiness back with curl_multi_socket_action(). Finished transfers are
 * collected by process_done() after every socket_action, i.e. never inside a
 * curl callback, so user callbacks may start or cancel calls freely.
 *
 * A call (dd_temporal_call) is one logical operation: it may take several
 * HTTP attempts (retries, history pages, long-poll re-polls). Each attempt
 * uses a fresh easy handle; connections are still reused because the
 * connection cache lives in the multi handle. A call owns a uv_timer_t for
 * its retry delay, so a call is freed from that timer's close callback, and
 * the client is freed once its last handle has closed. */
#include "temporal/temporal.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"
#include "temporal/codec.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define MAX_BODY (16u << 20) /* a reply larger than this is refused */
#define MAX_PAGES 1000       /* history pages followed by one call */

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

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    dd_temporal *t;
    struct sock_ctx *next;
} sock_ctx;

struct dd_temporal {
    dd_ctx ctx;
    char *base; /* base_url + "/api/v1/namespaces/<ns>" */
    char *base_url, *ns, *identity, *ca_file, *cert_file, *key_file;
    int64_t timeout_ms, deadline_ms, long_poll_ms, backoff_base_ms, backoff_cap_ms;
    int max_attempts;
    struct curl_slist *headers; /* shared by every easy handle; holds the API key */
    CURLM *multi;
    uv_timer_t timer;
    sock_ctx *socks;
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

    CURL *easy;
    char curl_err[CURL_ERROR_SIZE];
    dd_buf resp;
    uv_timer_t timer; /* retry delay */
    dd_backoff bo;
    int failures;       /* consecutive failed attempts */
    uint64_t deadline;  /* dd_mono_ms(); 0: none (long-poll) */
    char *page_token;
    int pages;
    bool done;

    /* Result storage: parsed replies and decoded strings are kept in `keep`
     * so the result's const char * stay valid until the callback returns. */
    json_t *keep;
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
    curl_slist_free_all(t->headers);
    free(t->base);
    free(t->base_url);
    free(t->ns);
    free(t->identity);
    free(t->ca_file);
    free(t->cert_file);
    free(t->key_file);
    free(t);
    curl_global_cleanup(); /* balances the init in dd_temporal_new */
    if (cb)
        cb(arg);
}

static void handle_closed(uv_handle_t *h)
{
    dd_temporal *t = h->data;
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
    json_t *sid = json_object_get(json_object_get(json_object_get(info, "memo"), "fields"),
                                  "server_id");
    e->server_id = sid ? payload_text(c, sid) : NULL;
}

static void add_events(dd_temporal_call *c, json_t *events)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        if (c->nevents == c->capevents) {
            c->capevents = c->capevents ? c->capevents * 2 : 16;
            c->events = dd_xrealloc(c->events, c->capevents * sizeof(*c->events));
        }
        dd_temporal_event *e = &c->events[c->nevents++];
        memset(e, 0, sizeof(*e));
        e->id = jint(ev, "eventId");
        e->type = jstr(ev, "eventType");
        e->time_ns = dd_tc_parse_time_ns(jstr(ev, "eventTime"));
        json_t *ta = json_object_get(ev, "workflowExecutionTerminatedEventAttributes");
        if (!ta)
            ta = json_object_get(ev, "workflowExecutionStartedEventAttributes");
        e->reason = jstr(ta, "reason");
        e->identity = jstr(ta, "identity");
    }
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
        if (!c->exec.run_id) {
            dd_buf_printf(&c->msg, "describe of workflow '%s' answered without a run id",
                          c->workflow_id);
            return DD_EPROTO;
        }
        c->res.execution = &c->exec;
        return 0;
    case OP_HISTORY:
    case OP_WAIT_CLOSE:
        add_events(c, json_object_get(json_object_get(root, "history"), "events"));
        tok = jstr(root, "nextPageToken");
        free(c->page_token);
        c->page_token = xdup(tok);
        if (c->op == OP_WAIT_CLOSE) {
            if (c->nevents > 0) {
                /* filter type 2 = close event only: keep just the last one */
                c->events[0] = c->events[c->nevents - 1];
                c->nevents = 1;
                return 0;
            }
            return 1; /* empty long-poll answer: ask again from the token */
        }
        if (tok && ++c->pages < MAX_PAGES)
            return 1;
        return 0;
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

static void detach_easy(dd_temporal_call *c)
{
    if (c->easy) {
        curl_multi_remove_handle(c->t->multi, c->easy);
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
}

/* Runs the callback once and frees the call (asynchronously). */
static void call_finish(dd_temporal_call *c, int err)
{
    dd_temporal *t = c->t;
    if (c->done)
        return;
    c->done = true;
    detach_easy(c);
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
    count(t, c->op, err == 0 ? "ok" : "error");
    if (err < 0 && err != DD_ECANCELED)
        dd_debug(t->ctx.log, "temporal_call_failed", "op=%s workflow_id=%s error=%s message=%s",
                 op_names[c->op], c->workflow_id ? c->workflow_id : "", dd_strerror(err),
                 c->res.message);
    if (c->cb) /* NULL: fire and forget (e.g. a best-effort terminate) */
        c->cb(err, &c->res, c->arg);

    json_decref(c->keep);
    free(c->events);
    free(c->execs);
    free(c->url);
    free(c->body);
    free(c->workflow_id);
    free(c->run_id);
    free(c->page_token);
    dd_buf_release(&c->resp);
    dd_buf_release(&c->msg);
    uv_close((uv_handle_t *)&c->timer, call_closed);
}

static void retry_timer_cb(uv_timer_t *h)
{
    call_attempt(h->data);
}

static bool transient_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
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

static void on_transfer_done(dd_temporal_call *c, CURLcode cc)
{
    long http = 0;
    bool retry = false;
    int rc;
    json_t *root = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &http);
    detach_easy(c);
    c->res.http_status = (int)http;
    dd_buf_reset(&c->msg);

    if (cc != CURLE_OK) {
        rc = cc == CURLE_OPERATION_TIMEDOUT ? DD_ETIMEOUT : DD_EUNAVAIL;
        dd_buf_printf(&c->msg, "%s", c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
        call_failed(c, rc, transient_curl(cc));
        return;
    }
    json_error_t je;
    root = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, &je);
    if (http >= 200 && http < 300) {
        if (!root) {
            dd_buf_printf(&c->msg, "cannot parse temporal reply to %s: %s", op_names[c->op],
                          je.text);
            call_finish(c, DD_EPROTO);
            return;
        }
        json_array_append_new(c->keep, root); /* results point into it */
        rc = parse_ok(c, root);
        if (rc == 1) {
            c->failures = 0;
            dd_backoff_reset(&c->bo);
            if (dd_ctx_cancelled(&c->t->ctx))
                call_finish(c, DD_ECANCELED);
            else
                call_attempt(c);
            return;
        }
        call_finish(c, rc);
        return;
    }
    rc = parse_error(c, http, root, &retry);
    if (root) /* the result may point into it (409: the running run id) */
        json_array_append_new(c->keep, root);
    call_failed(c, rc, retry);
}

static void process_done(dd_temporal *t)
{
    CURLMsg *m;
    int left;
    /* Stop as soon as a callback closed the client: the multi is gone. */
    while (!t->closing && (m = curl_multi_info_read(t->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode cc = m->data.result; /* m dies with remove_handle: copy first */
        dd_temporal_call *c = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        on_transfer_done(c, cc);
    }
}

static size_t write_cb(char *ptr, size_t size, size_t n, void *arg)
{
    dd_temporal_call *c = arg;
    if (c->resp.len + size * n > MAX_BODY)
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    dd_buf_append(&c->resp, ptr, size * n);
    return size * n;
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
    dd_buf_reset(&c->resp);
    c->curl_err[0] = '\0';
    CURL *e = curl_easy_init();
    if (!e) {
        dd_buf_printf(&c->msg, "cannot create a curl handle");
        dd_buf_release(&url);
        call_finish(c, -ENOMEM);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, dd_buf_str(&url));
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)tmo);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(tmo < 5000 ? tmo : 5000));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body); /* c->body outlives e */
    if (t->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
    if (t->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file);
    if (t->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file);
    dd_buf_release(&url);
    c->easy = e;
    c->res.attempts++;
    dd_debug(t->ctx.log, "temporal_request", "op=%s workflow_id=%s attempt=%d",
             op_names[c->op], c->workflow_id ? c->workflow_id : "", c->res.attempts);
    CURLMcode mc = curl_multi_add_handle(t->multi, e);
    if (mc != CURLM_OK) {
        c->easy = NULL;
        curl_easy_cleanup(e);
        dd_buf_printf(&c->msg, "curl: %s", curl_multi_strerror(mc));
        call_finish(c, DD_EUNAVAIL);
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

/* ------------------------------------------------------- curl <-> libuv */

static void sock_closed(uv_handle_t *h)
{
    sock_ctx *s = h->data;
    dd_temporal *t = s->t;
    free(s);
    t->open_handles--;
    maybe_free_client(t);
}

static void sock_release(dd_temporal *t, sock_ctx *s)
{
    for (sock_ctx **pp = &t->socks; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = h->data;
    dd_temporal *t = s->t;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(t->multi, s->fd, flags, &running);
    process_done(t);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    dd_temporal *t = userp;
    sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(t->multi, fd, NULL);
            sock_release(t, s);
        }
        return 0;
    }
    if (!s) {
        s = dd_xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->t = t;
        if (uv_poll_init_socket(t->ctx.loop, &s->poll, fd) < 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        t->open_handles++;
        s->next = t->socks;
        t->socks = s;
        curl_multi_assign(t->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, poll_cb);
    return 0;
}

static void timeout_cb(uv_timer_t *h)
{
    dd_temporal *t = h->data;
    int running;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    process_done(t);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    dd_temporal *t = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&t->timer);
    else /* 0 means "now": still go through the loop, never recurse into curl */
        uv_timer_start(&t->timer, timeout_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------ client lifecycle */

dd_temporal *dd_temporal_new(const dd_ctx *ctx, const dd_temporal_opts *o)
{
    if (!o->base_url || !*o->base_url || !o->namespace_ || !*o->namespace_) {
        dd_error(ctx->log, "temporal_config", "message=%s",
                 "temporal base url and namespace are required");
        return NULL;
    }
    /* Process-wide by libcurl's design; idempotent and reference-counted
     * in 7.88, so every client calling it is fine. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        dd_error(ctx->log, "temporal_config", "message=%s", "curl_global_init failed");
        return NULL;
    }
    dd_temporal *t = dd_xcalloc(1, sizeof(*t));
    dd_buf b = DD_BUF_INIT;
    t->ctx = *ctx;
    t->base_url = dd_strdup(o->base_url);
    size_t n = strlen(t->base_url);
    while (n > 0 && t->base_url[n - 1] == '/')
        t->base_url[--n] = '\0';
    t->ns = dd_strdup(o->namespace_);
    dd_buf_printf(&b, "%s/api/v1/namespaces/", t->base_url);
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
    t->ca_file = xdup(o->ca_file);
    t->cert_file = xdup(o->cert_file);
    t->key_file = xdup(o->key_file);
    dd_rng_seed(&t->rng, 0);

    t->headers = curl_slist_append(NULL, "Content-Type: application/json");
    t->headers = curl_slist_append(t->headers, "Accept: application/json+no-payload-shorthand");
    t->headers = curl_slist_append(t->headers, "Expect:"); /* no 100-continue stall */
    if (o->api_key && *o->api_key) {
        if (ctx->log)
            dd_log_add_secret(ctx->log, o->api_key);
        dd_buf_printf(&b, "Authorization: Bearer %s", o->api_key);
        t->headers = curl_slist_append(t->headers, dd_buf_str(&b));
        /* wipe our transient copy; the slist keeps the only one */
        memset(b.data, 0, b.len);
        dd_buf_release(&b);
    }

    t->multi = curl_multi_init();
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    uv_timer_init(ctx->loop, &t->timer);
    t->timer.data = t;
    t->open_handles = 1;

    if (ctx->metrics)
        t->m_requests = dd_metrics_family(
            ctx->metrics, DD_COUNTER, "dispatchd_temporal_calls_total",
            "Temporal API calls and retries by operation and outcome (ok, retry, error).",
            (const char *const[]){"op", "outcome", NULL}, NULL, 0);
    return t;
}

void dd_temporal_cancel(dd_temporal_call *c)
{
    if (c && !c->done)
        call_finish(c, DD_ECANCELED);
}

void dd_temporal_close(dd_temporal *t, dd_temporal_close_cb cb, void *arg)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_arg = arg;
    while (t->calls)
        call_finish(t->calls, DD_ECANCELED);
    /* Cleanup closes cached connections and may report CURL_POLL_REMOVE. */
    curl_multi_cleanup(t->multi);
    t->multi = NULL;
    while (t->socks)
        sock_release(t, t->socks);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, handle_closed);
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
    dd_buf msg = DD_BUF_INIT;
    int rc = t->closing ? DD_ECANCELED : check_wf(wf, &msg);
    if (rc == 0 && (!run || !*run)) {
        dd_buf_printf(&msg, "terminate of workflow '%s' needs an exact run id", wf);
        rc = DD_EINVAL;
    }
    if (rc < 0)
        return refuse(t, "terminate", wf, rc, &msg);
    json_t *body = json_pack("{s:s}", "reason", reason ? reason : "");
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
