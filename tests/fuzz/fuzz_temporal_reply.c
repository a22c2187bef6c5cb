/* fuzz_temporal_reply - what the Temporal client makes of the server's
 * replies: every operation x every HTTP status, JSON bodies of any shape,
 * retries and follow-up pages, up to the callback's result.
 *
 * Drives src/temporal/codec.c's reply decoder (dd_tc_decode) the way
 * temporal.c's on_reply does: one dd_tc_reply per call, fed reply after
 * reply while the decoder asks for another (the next history page,
 * wait_close's re-poll) or calls the error retryable; a transport error is
 * retried when transient. Once the input is used up the call ends as a
 * cancel would. The result (dd_tc_reply_result) is then checked as a
 * callback would see it. The call machinery around it (callback once, from
 * the loop, never inside cancel) is tests/unit/test_temporal_retry.c's.
 *
 * Input: [op][reply]... with reply = [status selector][len u16][body];
 * selector < 0x80 picks from a table of the statuses the client handles
 * (0x00: a transport error instead of a reply), >= 0x80: status 100 + u16 % 500. */
#include "fuzz.h"

#include "core/buf.h"
#include "core/error.h"
#include "temporal/codec.h"

#define MAX_REPLIES 8

typedef struct got {
    bool called;
    int status;
    dd_tc_op op;
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
    touch(e->memo_project);
    touch(e->memo_queue);
    touch(e->first_run_id);
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
        touch(r->events[i].new_run_id);
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
    case DD_TC_START:
    case DD_TC_SWS:
        FUZZ_CHECK(r->run_id != NULL, "started without a run id");
        break;
    case DD_TC_DESCRIBE:
        FUZZ_CHECK(r->execution && r->execution->run_id, "described without a run id");
        break;
    case DD_TC_WAIT_CLOSE:
        FUZZ_CHECK(r->nevents == 1, "wait_close with %zu events", r->nevents);
        break;
    default:
        break;
    }
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
    got g = {.op = (dd_tc_op)(fuzz_byte(&in) % DD_TC_NOPS)};
    /* the run id the call would carry (messages quote it) */
    const char *run = g.op == DD_TC_TERMINATE || g.op == DD_TC_HISTORY ||
                              g.op == DD_TC_WAIT_CLOSE
                          ? "run-1"
                          : NULL;
    dd_tc_reply d;
    dd_tc_reply_init(&d, g.op, "fuzz-ns", "dispatcher-p-q", run);
    int final = 1; /* 1: not decided yet */
    for (int k = 0; k < MAX_REPLIES && final == 1 && in.n > 0; k++) {
        int status = pick_status(&in);
        size_t len = fuzz_u16(&in);
        if (len > in.n)
            len = in.n;
        char *body = malloc(len + 1); /* dd_http hands over a NUL-terminated body */
        memcpy(body, in.p, len);
        body[len] = '\0';
        in.p += len;
        in.n -= len;
        if (status == 0) { /* a transport failure, retryable or not by the first body byte */
            if (len && body[0] & 1) {
                dd_buf_reset(&d.msg);
                dd_buf_puts(&d.msg, "connect to 127.0.0.1:9: connection refused");
                final = DD_EPROTO;
            }
            free(body);
            continue;
        }
        bool retry = true;
        int rc = dd_tc_decode(&d, status, body, len, &retry);
        free(body);
        FUZZ_CHECK(rc <= 1, "rc %d", rc);
        if (rc == 1) {
            FUZZ_CHECK(g.op == DD_TC_HISTORY || g.op == DD_TC_WAIT_CLOSE,
                       "op %s asked for another request", dd_tc_op_name(g.op));
            FUZZ_CHECK(!retry, "another request and a retry");
            if (g.op == DD_TC_HISTORY)
                FUZZ_CHECK(d.page_token && *d.page_token, "next page without a token");
            continue;
        }
        if (rc < 0) {
            FUZZ_CHECK(d.msg.len > 0, "error %d without a message", rc);
            FUZZ_CHECK(!retry || rc == DD_EUNAVAIL || rc == DD_ERATELIMIT,
                       "retry after error %d", rc);
            FUZZ_CHECK(!retry || (status >= 500 && status != 501) || status == 429,
                       "retry after status %d", status);
            if (retry)
                continue;
        }
        FUZZ_CHECK(!retry, "retry after success");
        final = rc;
    }
    if (final == 1) { /* input used up: the call ends as a cancel would */
        final = DD_ECANCELED;
        if (d.msg.len == 0)
            dd_buf_printf(&d.msg, "%s cancelled", dd_tc_op_name(g.op));
    }
    done(final, dd_tc_reply_result(&d, final), &g);
    FUZZ_CHECK(g.called, "result never checked");
    dd_tc_reply_release(&d);
    return 0;
}
