/* temporal.h - an asynchronous Temporal client over the HTTP API (/api/v1).
 *
 * Everything runs on the caller's libuv loop, over dispatchd's own HTTP
 * client (src/http/http.h, which says why not libcurl), so no call ever
 * blocks the loop. Each operation takes a callback (NULL: fire and
 * forget) that runs exactly once when the operation returned 0, always from
 * the loop: never inside the call that started it, nor inside
 * dd_temporal_cancel()/dd_temporal_close(). When the
 * operation returns < 0 (bad arguments: DD_EINVAL; client closing:
 * DD_ECANCELED) the callback never runs.
 *
 * Retries: connection failures, timeouts, HTTP 5xx (except 501) and 429 are
 * retried with capped exponential backoff and jitter, at most max_attempts
 * times and never past the per-call deadline. Other 4xx are final and mapped
 * to DD_E* codes with a readable message (see dd_temporal_result).
 *
 * Memory is bounded per operation: a reply over the operation's limit (64
 * KiB start/signal/terminate, 1 MiB describe, 4 MiB wait_close and list, 16
 * MiB a history page) or one that would take over 32 MB to parse fails with
 * DD_EPROTO, unretried (codec.h: DD_TC_MAX_BODY, dd_tc_max_body,
 * DD_TC_MAX_PARSE).
 *
 * Request bodies use proto3 JSON; replies are requested with
 * "Accept: application/json+no-payload-shorthand" so payloads come back in
 * their {"metadata":..,"data":<base64>} form on every server version.
 *
 * Running one call to completion (CLI, tests):
 *
 *     static void done(int st, const dd_temporal_result *r, void *arg) {
 *         *(int *)arg = st;   // copy what you need out of r: it dies after return
 *     }
 *     int st = 1;
 *     dd_temporal_describe(t, "wf", NULL, done, &st, NULL);
 *     while (st == 1 && uv_run(loop, UV_RUN_ONCE)) {}
 *     dd_temporal_close(t, NULL, NULL);
 *     uv_run(loop, UV_RUN_DEFAULT);   // runs the close; uv_loop_close() then returns 0
 */
#ifndef DD_TEMPORAL_TEMPORAL_H
#define DD_TEMPORAL_TEMPORAL_H

#include "core/ctx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dd_temporal dd_temporal;
typedef struct dd_temporal_call dd_temporal_call;

typedef struct dd_temporal_opts {
    const char *base_url;   /* required: "http://127.0.0.1:7243" (no trailing /api) */
    const char *namespace_; /* required */
    const char *identity;   /* sent as "identity"; NULL: "dispatchd@<hostname>" */
    int64_t timeout_ms;     /* per HTTP request; 0: 10 s */
    int64_t deadline_ms;    /* per call, across retries; 0: 30 s */
    int64_t long_poll_ms;   /* per long-poll request (server answers after ~20 s); 0: 70 s */
    int max_attempts;       /* per call; 0: 5 */
    /* Requests on the wire at once, long polls (wait_close) aside; the
     * others wait in line (first those dd_temporal_prioritize marked, then
     * the rest, each in order), their per-call deadline running. 0: 32. A host
     * with 1,000 dispatchers would otherwise send 1,000 starts at once, and
     * a server that answers late makes every one of them a retry. */
    int max_in_flight;
    /* A long poll answered 429 (the namespace's limit of long-running
     * requests) is asked again after 1/2 to 1 of this, not within the
     * usual backoff. 0: 10 s. */
    int64_t long_poll_busy_ms;
    int64_t backoff_base_ms; /* 0: 100 ms */
    int64_t backoff_cap_ms;  /* 0: 2 s */
    const char *ca_file;    /* TLS: CA bundle to verify the server; NULL: system */
    const char *cert_file;  /* TLS client certificate (mTLS), PEM; NULL: none */
    const char *key_file;   /* its key, PEM */
    const char *api_key;    /* sent as "Authorization: Bearer ..."; never logged */
} dd_temporal_opts;

/* Workflow execution status (values as in temporal.api.enums.v1). */
typedef enum dd_temporal_status {
    DD_WF_UNKNOWN = 0,
    DD_WF_RUNNING = 1,
    DD_WF_COMPLETED = 2,
    DD_WF_FAILED = 3,
    DD_WF_CANCELED = 4,
    DD_WF_TERMINATED = 5,
    DD_WF_CONTINUED_AS_NEW = 6,
    DD_WF_TIMED_OUT = 7,
} dd_temporal_status;

/* "RUNNING", "TERMINATED", ... ("UNKNOWN" for anything else). Static. */
const char *dd_temporal_status_name(dd_temporal_status s);

typedef struct dd_temporal_event {
    int64_t id;
    const char *type; /* "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED" */
    int64_t time_ns;  /* Unix time in nanoseconds (0 if absent) */
    const char *reason; /* terminated events: the reason; else NULL */
    const char *identity; /* terminated/started events: who asked; else NULL */
    const char *new_run_id; /* continued-as-new events: the next run of the chain */
} dd_temporal_event;

typedef struct dd_temporal_execution {
    const char *workflow_id;
    const char *run_id;
    const char *type;       /* workflow type name */
    const char *task_queue;
    dd_temporal_status status;
    int64_t start_ns;
    int64_t close_ns;       /* 0 while running */
    const char *server_id;  /* memo field "server_id" decoded (JSON string value), or NULL */
    const char *memo_project; /* memo fields "project" and "queue", or NULL */
    const char *memo_queue;
    const char *first_run_id; /* the first run of its continue-as-new chain, or NULL */
    /* describe only: the pending workflow task. wft_scheduled: one waits for
     * a worker to pick it up (state SCHEDULED); wft_scheduled_ns: since when
     * (its original schedule time). false/0 when none is pending or a worker
     * has it (STARTED). */
    bool wft_scheduled;
    int64_t wft_scheduled_ns;
    int64_t wft_attempt;    /* the pending task's attempt, scheduled or started (> 1:
                             * earlier attempts failed); 0 when none is pending */
    int64_t history_length; /* events in the run's history so far; 0 unknown */
} dd_temporal_execution;

/* Everything an operation learned. Owned by the client and valid only during
 * the callback: copy out what you keep. Pointers are NULL / counts 0 when an
 * operation does not produce them. */
typedef struct dd_temporal_result {
    int err;           /* == the callback's status: 0, DD_E*, or -errno */
    int http_status;   /* of the last attempt; 0 when no HTTP answer came */
    int grpc_code;     /* "code" of an error body (6 = already exists); 0 otherwise */
    const char *message; /* readable error ("" on success), never NULL; e.g.
                          * "namespace 'x' not found",
                          * "workflow 'w' already running as run 'r'",
                          * "temporal at 'http://..' unavailable after 5 attempts: ..." */
    int attempts;      /* HTTP requests made */
    /* start / signal-with-start: the new run; on DD_ECONFLICT (409, legacy
     * conflict policy) the run that is already running. */
    const char *run_id;
    bool started;      /* start: "started" as the server reports it */
    const dd_temporal_execution *execution;   /* describe */
    const dd_temporal_event *events;          /* history, wait_close (the close event) */
    size_t nevents;
    const dd_temporal_execution *executions;  /* list */
    size_t nexecutions;
    const char *next_page_token; /* list: pass back for the next page; NULL at the end */
} dd_temporal_result;

typedef void (*dd_temporal_cb)(int status, const dd_temporal_result *res, void *arg);
typedef void (*dd_temporal_close_cb)(void *arg);

/* Creates a client on ctx->loop (ctx is copied; what it points to is
 * borrowed and must outlive the client). opts strings are copied; the API
 * key is also registered as a log secret. 0 and *out, or DD_EINVAL with the
 * reason in err (no URL or namespace, a bad URL, unreadable TLS files). Free
 * with dd_temporal_close(). */
int dd_temporal_new(const dd_ctx *ctx, const dd_temporal_opts *opts, dd_temporal **out, char *err,
                    size_t errlen);

/* Cancels every in-flight call (their callbacks run with DD_ECANCELED from
 * the loop, after this returns), closes all libuv handles, then calls
 * cb(arg) (may be NULL) from the loop, after every call's callback, and
 * frees t. New calls are refused from here on. */
void dd_temporal_close(dd_temporal *t, dd_temporal_close_cb cb, void *arg);

/* The per-call deadline in force (opts.deadline_ms, or its 30 s default):
 * the longest any call but a long poll can take from the moment it is made,
 * waiting in line (max_in_flight) and retries included. A failover lease
 * is sized from it (owner.h, dd_failover_lease_plan). */
int64_t dd_temporal_call_deadline_ms(const dd_temporal *t);

/* Cancels one call: its callback runs once with DD_ECANCELED from the loop
 * (the next iteration), never inside this call; cancelling again before
 * then does nothing. `call` is the handle an operation wrote to its `out`
 * argument; it is valid until the callback starts, so do not cancel from or
 * after the callback. */
void dd_temporal_cancel(dd_temporal_call *call);

/* Marks a call as one that continues work already begun (a takeover's
 * start after its describe, a release's terminate): while it waits for a
 * slot (max_in_flight) it goes ahead of every call that begins new work,
 * first come first served among such calls, and so do its retries. Call
 * it right after the operation returned 0 and wrote `call` (NULL: no-op);
 * same validity as dd_temporal_cancel(). Why: a takeover is a describe
 * then a start; with one line, 1,000 takeovers begun at once queue 1,000
 * describes, and every start then waits behind all of them
 * (docs/temporal.md, "Two classes in the line"). */
void dd_temporal_prioritize(dd_temporal_call *call);

/* Start or signal-with-start request. All strings borrowed for the call only. */
typedef struct dd_temporal_start_req {
    const char *workflow_id;   /* required; must not contain '/' */
    const char *workflow_type; /* required, e.g. "dispatchd.dispatcher" */
    const char *task_queue;    /* required */
    const char *input_json;    /* a JSON value sent as one json/plain payload; NULL: none */
    const char *memo_json;     /* a JSON object; each field becomes a json/plain memo payload */
    const char *request_id;    /* NULL: a fresh UUID (kept across retries, so a
                                * retried start is deduplicated by the server) */
    /* Enum names, with or without their prefix: "TERMINATE_EXISTING" or
     * "WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING". NULL: not sent (server
     * default). "UNSPECIFIED" gives the legacy behaviour: 409 if running. */
    const char *conflict_policy;
    const char *reuse_policy;  /* "ALLOW_DUPLICATE", ... or NULL */
    const char *signal_name;   /* signal-with-start only: required */
    const char *signal_json;   /* signal-with-start only: signal input or NULL */
} dd_temporal_start_req;

/* `out` (may be NULL) receives a handle for dd_temporal_cancel(). */
int dd_temporal_start(dd_temporal *t, const dd_temporal_start_req *req, dd_temporal_cb cb,
                      void *arg, dd_temporal_call **out);
int dd_temporal_signal_with_start(dd_temporal *t, const dd_temporal_start_req *req,
                                  dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* run_id NULL: the current run. input_json may be NULL. */
int dd_temporal_signal(dd_temporal *t, const char *workflow_id, const char *run_id,
                       const char *signal, const char *input_json, dd_temporal_cb cb, void *arg,
                       dd_temporal_call **out);
/* Terminates exactly run_id (required: never "whatever runs now", so a late
 * terminate cannot kill a successor). 404 "already completed" -> DD_ENOTFOUND. */
int dd_temporal_terminate(dd_temporal *t, const char *workflow_id, const char *run_id,
                          const char *reason, dd_temporal_cb cb, void *arg,
                          dd_temporal_call **out);
/* Terminates within one continue-as-new chain: first_run_id (the chain's
 * first run) makes the server refuse when the ID now runs another chain, so
 * a late terminate can never end a newer chain. run_id NULL: the chain's
 * current run. At least one of the two is required. */
int dd_temporal_terminate_chain(dd_temporal *t, const char *workflow_id, const char *run_id,
                                const char *first_run_id, const char *reason,
                                dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* run_id NULL: the current run. Result: execution. */
int dd_temporal_describe(dd_temporal *t, const char *workflow_id, const char *run_id,
                         dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* The whole history of one run (all pages, at most 51200 events: DD_EPROTO
 * beyond). Result: events. */
int dd_temporal_history(dd_temporal *t, const char *workflow_id, const char *run_id,
                        dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* Long-polls until run_id closes; result: the close event (nevents == 1).
 * Re-polls when the server answers empty (~every 20 s; never sooner than
 * 100 ms after the previous poll started); runs without a deadline until the
 * run closes, the call is cancelled, or max_attempts consecutive failures.
 * Memory stays flat however long it runs. Answers immediately for a run
 * already closed. */
int dd_temporal_wait_close(dd_temporal *t, const char *workflow_id, const char *run_id,
                           dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* One page of a visibility query ("WorkflowType='x' AND ExecutionStatus='Running'").
 * page_token NULL: the first page; page_size 0: server default. Result:
 * executions, next_page_token. Visibility lags writes by up to ~1 s. */
int dd_temporal_list(dd_temporal *t, const char *query, const char *page_token, int page_size,
                     dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* The list query for exact runs: "<cond> AND RunId IN ('r1','r2',...)"
 * (cond NULL or "": "RunId IN (...)"), one page of up to n (at most
 * DD_TEMPORAL_RUNS_MAX) executions. Every run id must be a plain id
 * (letters, digits, '-', at most 64: Temporal's are UUIDs), else DD_EINVAL
 * and cb does not run: nothing from a record is ever pasted into a query
 * unchecked. Match the answer on (workflow id, run id). */
#define DD_TEMPORAL_RUNS_MAX 100
bool dd_temporal_run_id_plain(const char *run_id);
int dd_temporal_list_runs(dd_temporal *t, const char *cond, const char *const *run_ids, size_t n,
                          dd_temporal_cb cb, void *arg, dd_temporal_call **out);
/* The close event of run_id (required), asked once: nevents 1 for a run
 * that has closed. Meant for a run known to be closed (visibility listed
 * it so): for a run still open the server holds the request like a long
 * poll (measured: ~20 s, then an empty answer, nevents 0), bounded here by
 * the usual request timeout and per-call deadline. */
int dd_temporal_close_event(dd_temporal *t, const char *workflow_id, const char *run_id,
                            dd_temporal_cb cb, void *arg, dd_temporal_call **out);

#endif
