/* fuzz_temporal_reply - what the Temporal client makes of the server's
 * replies: every operation x every HTTP status, JSON bodies of any shape,
 * retries and follow-up pages, up to the callback's result.
 *
 * The decoding (on_reply, parse_ok, parse_error, parse_exec, add_events,
 * payload_text) is file-local to src/temporal/temporal.c and entangled with
 * the call state, so this file includes temporal.c itself and drives it the
 * way src/http would: an operation is started through the public API, its
 * HTTP request is cancelled before it leaves, and on_reply() gets a reply
 * built from the input instead. When the client asks for more (a retry or
 * the next page) the next reply comes from the input too; once the input
 * is used up, the call is cancelled. The result is checked in the callback.
 * (Moving that decoding into codec.c would let this link dd_temporal
 * instead; temporal.c is being changed elsewhere right now.)
 *
 * Input: [op][reply]... with reply = [status selector][len u16][body];
 * selector < 0x80 picks from a table of the statuses the client handles
 * (0x00: a transport error instead of a reply), >= 0x80: status 100 + u16 % 500. */
#include "fuzz.h"

#include "temporal/temporal.c" /* the file under test */

#define MAX_REPLIES 8

static uv_loop_t loop;
static dd_temporal *client;
static FILE *devnull;
static dd_log *logger;

typedef struct got {
    bool called;
    int status;
    op_kind op;
} got;

static void touch(const char *s)
{
    if (s) /* each string must be a valid C string until the callback returns */
        FUZZ_CHECK(strlen(s) < (32u << 20), "a string longer than any reply");
}

static void check_exec(const dd_temporal_execution *e)
{
    touch(e->workflow_id);
    touch(e->run_id);
    touch(e->type);
    touch(e->task_queue);
    touch(e->server_id);
    FUZZ_CHECK((unsigned)e->status <= DD_WF_TIMED_OUT, "status %d", (int)e->status);
    touch(dd_temporal_status_name(e->status));
}

static void done(int st, const dd_temporal_result *r, void *arg)
{
    got *g = arg;
    FUZZ_CHECK(!g->called, "callback ran twice");
    g->called = true;
    g->status = st;
    FUZZ_CHECK(r && r->err == st, "result err %d, status %d", r ? r->err : 0, st);
    FUZZ_CHECK(r->message != NULL, "message is NULL");
    touch(r->message);
    FUZZ_CHECK(st <= 0, "status %d", st);
    if (st == 0)
        FUZZ_CHECK(*r->message == '\0', "success with message '%s'", r->message);
    else
        FUZZ_CHECK(*r->message != '\0', "error %d without a message", st);
    touch(r->run_id);
    touch(r->next_page_token);
    FUZZ_CHECK((r->events == NULL) == (r->nevents == 0), "events %p, %zu", (void *)r->events,
               r->nevents);
    for (size_t i = 0; i < r->nevents; i++) {
        touch(r->events[i].type);
        touch(r->events[i].reason);
        touch(r->events[i].identity);
    }
    FUZZ_CHECK((r->executions == NULL) == (r->nexecutions == 0), "executions %zu",
               r->nexecutions);
    for (size_t i = 0; i < r->nexecutions; i++)
        check_exec(&r->executions[i]);
    if (r->execution)
        check_exec(r->execution);
    if (st != 0)
        return;
    switch (g->op) {
    case OP_START:
    case OP_SWS:
        FUZZ_CHECK(r->run_id != NULL, "started without a run id");
        break;
    case OP_DESCRIBE:
        FUZZ_CHECK(r->execution && r->execution->run_id, "described without a run id");
        break;
    case OP_WAIT_CLOSE:
        FUZZ_CHECK(r->nevents == 1, "wait_close with %zu events", r->nevents);
        break;
    default:
        break;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    devnull = fopen("/dev/null", "w");
    logger = dd_log_new(devnull, DD_LOG_DEBUG); /* hostile text goes through logfmt too */
    uv_loop_init(&loop);
    dd_ctx ctx = {.loop = &loop, .log = logger};
    dd_temporal_opts o = {.base_url = "http://127.0.0.1:9",
                          .namespace_ = "fuzz-ns",
                          .identity = "fuzz",
                          .max_attempts = 4};
    client = dd_temporal_new(&ctx, &o);
    if (!client)
        abort();
    return 0;
}

static int start(op_kind op, got *g, dd_temporal_call **c)
{
    dd_temporal_start_req sr = {.workflow_id = "dispatcher-p-q",
                                .workflow_type = "dispatchd.dispatcher",
                                .task_queue = "q",
                                .input_json = "{\"a\":1}",
                                .memo_json = "{\"server_id\":\"host-1\"}",
                                .conflict_policy = "TERMINATE_EXISTING",
                                .signal_name = "sig"};
    switch (op) {
    case OP_START:
        return dd_temporal_start(client, &sr, done, g, c);
    case OP_SWS:
        return dd_temporal_signal_with_start(client, &sr, done, g, c);
    case OP_SIGNAL:
        return dd_temporal_signal(client, "dispatcher-p-q", NULL, "sig", "[1]", done, g, c);
    case OP_TERMINATE:
        return dd_temporal_terminate(client, "dispatcher-p-q", "run-1", "fuzz", done, g, c);
    case OP_DESCRIBE:
        return dd_temporal_describe(client, "dispatcher-p-q", NULL, done, g, c);
    case OP_HISTORY:
        return dd_temporal_history(client, "dispatcher-p-q", "run-1", done, g, c);
    case OP_WAIT_CLOSE:
        return dd_temporal_wait_close(client, "dispatcher-p-q", "run-1", done, g, c);
    case OP_LIST:
        return dd_temporal_list(client, "WorkflowType='dispatchd.dispatcher'", NULL, 10, done, g,
                                c);
    }
    return DD_EINVAL;
}

static int pick_status(fuzz_in *in)
{
    static const int table[] = {0,   200, 200, 200, 201, 204, 400, 401, 403, 404,
                                409, 429, 500, 501, 502, 503, 504, 302, 418, 100};
    uint8_t sel = fuzz_byte(in);
    if (sel >= 0x80)
        return 100 + fuzz_u16(in) % 500;
    return table[sel % (sizeof(table) / sizeof(table[0]))];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    got g = {.op = (op_kind)(fuzz_byte(&in) % 8)};
    dd_temporal_call *c = NULL;
    FUZZ_CHECK(start(g.op, &g, &c) == 0 && c, "cannot start op %d", (int)g.op);
    for (int k = 0; k < MAX_REPLIES && !g.called && in.n > 0; k++) {
        if (!c->req) { /* waiting to retry: the timer fires now */
            uv_timer_stop(&c->timer);
            call_attempt(c);
            if (g.called)
                break;
        }
        FUZZ_CHECK(c->req != NULL, "no request in flight");
        dd_http_abandon(c->req); /* it never leaves: on_reply gets the input instead */
        c->req = NULL;
        int status = pick_status(&in);
        size_t len = fuzz_u16(&in);
        if (len > in.n)
            len = in.n;
        char *body = malloc(len + 1); /* dd_http hands over a NUL-terminated body */
        memcpy(body, in.p, len);
        body[len] = '\0';
        in.p += len;
        in.n -= len;
        dd_http_reply rep = {.status = status, .body = body, .body_len = len, .message = ""};
        if (status == 0) /* a transport failure, retryable or not by the first body byte */
            rep = (dd_http_reply){.err = len && body[0] & 1 ? DD_EPROTO : DD_EUNAVAIL,
                                  .transient = !(len && body[0] & 1),
                                  .body = "",
                                  .message = "connect to 127.0.0.1:9: connection refused"};
        on_reply(&rep, c);
        free(body);
    }
    if (!g.called) {
        dd_temporal_cancel(c);
        FUZZ_CHECK(!g.called, "callback ran inside cancel");
        uv_run(&loop, UV_RUN_NOWAIT); /* the cancelled call calls back from the loop */
    }
    FUZZ_CHECK(g.called, "callback never ran");
    uv_run(&loop, UV_RUN_NOWAIT); /* close the call's timer and the cancelled connections */
    return 0;
}
